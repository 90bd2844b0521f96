"""``--check-calibration OVERLAY.yaml``: how well each table an overlay provides fits its own measured points.

For every table (compute: a Vidur ``mlp.csv``/``attention.csv`` or an LLMServingSim bundle's
``dense.csv``/``attention.csv``/``per_sequence.csv``/``skew.csv``/``moe.csv`` (a mixture of experts); collectives: Vidur
``all_reduce.csv``/``send_recv.csv``, a bundle ``hardware.yaml``'s NCCL samples or an AIConfigurator
``custom_allreduce_perf.txt``; network: an
NS-3 lookup JSON) two predictions of every measured point are compared with it:

- the model the table drives, which interpolates the table: each point is predicted from its two
  neighbours along each axis of the table with the point itself left out (leave-one-out, averaged
  over the axes where the point has a neighbour on both sides). A table interpolates its own points
  exactly, so this is the honest measure of how well it predicts shapes between them; points with no
  such neighbours (the grid's corners) are left out of both errors. The skew fit is the exception:
  its prediction is the fitted alpha of the shot's bucket (in-sample, as the fit was made on these shots);
- the analytic model the table replaces, on the same points: the roofline (compute), NCCL's ring over
  the GPU's link (collectives; for an AIConfigurator table, the engine's own all-reduce, kvsim's model of that
  engine's collectives), latency + bytes / bandwidth (network); for the skew fit, no correction.

Reported per table: points, MAPE and the largest errors of each. A report (``--report-json``) has
one run per table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sim.config import Config
from sim.errors import ConfigError, InputError
from sim.report.document import RunResult
from sim.serving.collectives import COLLECTIVES, RingCollectives
from sim.serving.compute import RooflineCompute, StepShape
from sim.serving.compute_backend import (
    analytic_collectives,
    attention_efficiency,
    bundle_dtype_misfit,
    bundle_gpu_misfit,
    bundle_model_misfit,
    gpu_link,
    profile_misfit,
    roofline_compute,
)
from sim.serving.elementwise import elementwise_cost, moe_block_cost
from sim.serving.engine_limits import block_size
from sim.serving.llmservingsim_compute import bundle_attention_rows, read_bundle_layers
from sim.serving.measured_collectives import MeasuredCollectives, bundle_hardware_yaml, vidur_collective_rows
from sim.serving.network import AnalyticNetwork, LookupNetwork
from sim.serving.profile_files import LOG, read_bundle_table, read_profile_yaml, too_few_rows
from sim.serving.skew_calibration import SCHEMA, RuntimeSkewFit
from sim.serving.skew_fit import SkewFit, skew_fit_enabled
from sim.serving.vidur_compute import VidurAttention, VidurProfile, read_vidur_table, vidur_layer_ms, vidur_op_columns
from sim.specs import model_spec

WORST_ROWS = 5


@dataclass
class TableFit:
    """Measured points of one table with the table-driven model's and the analytic reference's predictions."""

    kind: str  # compute | collectives | network
    table: str
    source: str
    keys: pd.DataFrame  # the columns naming each point
    measured: np.ndarray  # seconds
    model: np.ndarray  # seconds; NaN where the table cannot predict the point from its neighbours
    reference: np.ndarray  # seconds
    model_method: str
    reference_method: str
    notes: dict[str, Any] = field(default_factory=dict)

    def _errors(self, predicted: np.ndarray, used: np.ndarray) -> dict[str, Any]:
        error = (predicted[used] - self.measured[used]) / self.measured[used]
        order = np.argsort(-np.abs(error), kind="stable")[:WORST_ROWS]
        rows = self.keys.iloc[np.flatnonzero(used)[order]].to_dict("records")
        worst = [{**{k: _plain(v) for k, v in row.items()}, "measured_s": float(self.measured[used][i]),
                  "predicted_s": float(predicted[used][i]), "error": float(error[i])}
                 for row, i in zip(rows, order, strict=True)]
        return {"mape": float(np.mean(np.abs(error))), "max_ape": float(np.max(np.abs(error))),
                "bias": float(np.mean(error)), "worst": worst}

    def metrics(self) -> dict[str, Any]:
        used = np.isfinite(self.model) & np.isfinite(self.reference) & (self.measured > 0)
        if not used.any():
            raise too_few_rows(self.source, self.table, "no point has measured neighbours on both sides to be checked "
                                                        "against")
        return {"kind": self.kind, "table": self.table, "source": self.source, "points": int(used.sum()),
                "points_in_table": int(len(self.measured)),
                "model": {"method": self.model_method, **self._errors(self.model, used)},
                "reference": {"method": self.reference_method, **self._errors(self.reference, used)},
                **({"notes": self.notes} if self.notes else {})}


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def leave_one_out(frame: pd.DataFrame, axes: list[str], value: str, groups: tuple[str, ...] = ()) -> np.ndarray:
    """Each point predicted linearly from its two neighbours along each axis (the point left out), averaged over
    the axes where it has neighbours on both sides; NaN where it has none. ``frame`` holds one row per point;
    ``groups`` are columns that are not interpolated over (e.g. the TP degree)."""
    y = frame[value].to_numpy(float)
    total, count = np.zeros(len(frame)), np.zeros(len(frame))
    for axis in axes:
        by = [*groups, *(a for a in axes if a != axis)]
        buckets = frame.groupby(by, sort=False).indices.values() if by else [np.arange(len(frame))]
        x_all = frame[axis].to_numpy(float)
        for idx in buckets:
            idx = np.asarray(idx)
            if len(idx) < 3:
                continue
            idx = idx[np.argsort(x_all[idx], kind="stable")]
            x = x_all[idx]
            x0, x1, x2 = x[:-2], x[1:-1], x[2:]
            inside = (x0 < x1) & (x1 < x2)
            guess = y[idx[:-2]] + (x1 - x0) / np.where(inside, x2 - x0, 1) * (y[idx[2:]] - y[idx[:-2]])
            target = idx[1:-1][inside]
            np.add.at(total, target, guess[inside])
            np.add.at(count, target, 1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ------------------------------------------------------------------------------------------- compute


def _roofline(config: Config, tensor_parallel_size: int) -> RooflineCompute:
    """The roofline alone, no collectives, and one instance (no data-parallel group): a table's reference."""
    return roofline_compute(replace(config, serving=replace(config.serving, data_parallel_size=1)),
                            tensor_parallel_size)


def _roofline_name(config: Config, what: str) -> str:
    c = config.compute
    return (f"roofline {what} ({config.hardware.gpu}, flops_efficiency {c.flops_efficiency}, "
            f"bandwidth_efficiency {c.bandwidth_efficiency}, attention_efficiency {attention_efficiency(config)}, "
            f"gemm_floor_us {c.gemm_floor_us}, attention_floor_us {c.attention_floor_us}, "
            f"attention_tile_us {c.attention_tile_us})")


LOO = "table interpolation, leave-one-out"


def _vidur_mlp(path: Path, config: Config) -> TableFit:
    model = model_spec(config.model)
    frame = read_vidur_table(path, "mlp.csv", {"num_tokens"})
    if "num_tensor_parallel_workers" not in frame.columns:
        raise ConfigError(f"{path}: not a Vidur mlp.csv (needs num_tensor_parallel_workers)")
    tps = sorted(int(t) for t in frame["num_tensor_parallel_workers"].unique())
    for tp in tps:  # shape checks as the serving model makes them
        VidurProfile.load(path, model, tp)
    points = (frame.assign(seconds=vidur_layer_ms(frame, path) * 1e-3)
              .groupby(["num_tensor_parallel_workers", "num_tokens"], as_index=False)["seconds"].mean())
    rooflines = {tp: _roofline(config, tp) for tp in tps}
    reference = np.array([_layer_but_attention(rooflines[int(tp)])(int(t))
                          for tp, t in zip(points["num_tensor_parallel_workers"], points["num_tokens"], strict=True)])
    return TableFit("compute", "mlp.csv (one layer but attention)", str(path),
                    points[["num_tensor_parallel_workers", "num_tokens"]], points["seconds"].to_numpy(),
                    leave_one_out(points, ["num_tokens"], "seconds", ("num_tensor_parallel_workers",)), reference,
                    LOO, _roofline_name(config, "linear layers and elementwise kernels"))


def _layer_but_attention(roofline: RooflineCompute, moe: bool = False) -> Callable[[int], float]:
    """The roofline's price of what a table of a layer's operators but attention times, for a number of tokens: its
    GEMMs and its elementwise kernels, as a step adds them (Vidur's mlp.csv and a bundle's dense.csv time the norms,
    the rotary embedding and the activation as operators of their own). An MoE bundle's dense.csv has no MLP (moe.csv
    times it): the attention projections, the norms and the rotary embedding."""
    if not moe:
        return lambda tokens: roofline.linear_layer_time(tokens) + roofline.elementwise_time(tokens)
    side = elementwise_cost(roofline.model, roofline.dtype_bytes, roofline.tensor_parallel_size, activation=False)
    return lambda tokens: (roofline.projections_time(tokens)
                           + side.layer_time(tokens, roofline.floors.gemm_s, roofline.bandwidth, roofline.gpu.l2_bytes,
                                             roofline.gpu.cache_bandwidth * roofline.bandwidth_efficiency))


def _attention_reference(roofline: RooflineCompute, chunk: int, context: float, decodes: int, kv: float) -> float:
    shape = StepShape()
    if chunk:
        shape.add_prefill(int(chunk), int(round(context)))
    if decodes:  # (a profile's decodes share one KV length: ``kv`` is each one's)
        each = int(round(kv))
        shape.add_decodes(int(decodes), int(round(decodes * kv)), each, each, 0)
    return roofline.attention_layer_time(shape)


def _vidur_attention(path: Path, config: Config) -> TableFit:
    model = model_spec(config.model)
    frame = read_vidur_table(path, "attention.csv", {"batch_size", "prefill_chunk_size", "kv_cache_size"})
    tps = sorted(int(t) for t in frame["num_tensor_parallel_workers"].unique())
    for tp in tps:
        VidurAttention.load(path, model, tp, block_size(config))
    frame = frame.assign(seconds=frame[vidur_op_columns(frame)].sum(axis=1, min_count=1) * 1e-3,
                         prefill=frame["is_prefill"].astype(str).str.lower() == "true")
    keys = ["num_tensor_parallel_workers", "prefill", "batch_size", "prefill_chunk_size", "kv_cache_size"]
    points = frame.groupby(keys, as_index=False)["seconds"].mean()
    model_s = np.full(len(points), np.nan)
    for prefill, axes in ((True, ["prefill_chunk_size", "kv_cache_size"]), (False, ["batch_size", "kv_cache_size"])):
        part = points["prefill"] == prefill
        if part.any():
            model_s[part.to_numpy()] = leave_one_out(points[part].reset_index(drop=True), axes, "seconds",
                                                     ("num_tensor_parallel_workers",))
    rooflines = {tp: _roofline(config, tp) for tp in tps}
    reference = np.array([
        _attention_reference(rooflines[int(r.num_tensor_parallel_workers)], r.prefill_chunk_size if r.prefill else 0,
                             r.kv_cache_size, 0 if r.prefill else r.batch_size, r.kv_cache_size + 1)
        for r in points.itertuples(index=False)])
    return TableFit("compute", "attention.csv", str(path), points[keys], points["seconds"].to_numpy(), model_s,
                    reference, LOO, _roofline_name(config, "attention"))


def _bundle_tables(directory: Path, config: Config) -> list[TableFit]:
    meta = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file")
    fits = []
    for tp_dir in sorted(directory.glob("tp[0-9]*")):
        tp = int(tp_dir.name[2:])
        roofline = _roofline(config, tp)
        label = f"tp{tp}/"
        model = roofline.model
        dense, per_seq, layer_ops, _, kernels = read_bundle_layers(directory, tp_dir, model)
        common = sorted(set.intersection(*(set(dense[op][0].tolist()) for op in layer_ops)))
        per_layer = pd.DataFrame({"tokens": common, "seconds": [
            sum(float(np.interp(t, *dense[op])) for op in layer_ops) for t in common]})
        moe = model.is_moe  # every layer's operators without an MLP: moe.csv times the MoE block
        linear = _layer_but_attention(roofline, moe)
        fits.append(TableFit("compute", label + "dense.csv (one layer's operators)", str(tp_dir / "dense.csv"),
                             per_layer[["tokens"]], per_layer["seconds"].to_numpy(),
                             leave_one_out(per_layer, ["tokens"], "seconds"),
                             np.array([linear(int(t)) for t in common]),
                             LOO, _roofline_name(config, "attention projections, norms and rotary embedding" if moe
                                                       else "linear layers and elementwise kernels")))
        if moe and (tp_dir / "moe.csv").is_file():
            fits.extend(_moe_fit(tp_dir, roofline, config))

        points = bundle_attention_rows(kernels)
        axes = ["prefill_chunk", "prefill_key", "n_decode", "kv_decode"]
        # a layer's attention is its kernels' sum, measured where every kernel was: the other points are counted
        unshared = sum(len(rows[axes].drop_duplicates()) for rows in kernels.values()) - len(kernels) * len(points)
        if points.empty:
            raise ConfigError(f"{tp_dir / 'attention.csv'}: kernels {', '.join(repr(k) for k in kernels)} share no "
                              "grid point, so no point measures a layer's attention (their sum) to check")
        context = points["prefill_key"] - points["prefill_chunk"] / 2  # undo the relabelling: the cached history
        reference = np.array([_attention_reference(roofline, pc, ctx, n, kv) for pc, ctx, n, kv in
                              zip(points["prefill_chunk"], context, points["n_decode"], points["kv_decode"],
                                  strict=True)])
        fits.append(TableFit("compute", label + "attention.csv", str(tp_dir / "attention.csv"), points[axes],
                             points["time_s"].to_numpy(), leave_one_out(points, axes, "time_s"), reference,
                             LOO, _roofline_name(config, "attention"),
                             {"kernel_points_not_shared": unshared} if unshared else {}))

        seqs = sorted(set(per_seq["lm_head"][0].tolist()) & set(per_seq["sampler"][0].tolist()))
        head = pd.DataFrame({"sequences": seqs, "seconds": [
            float(np.interp(s, *per_seq["lm_head"]) + np.interp(s, *per_seq["sampler"])) for s in seqs]})
        fits.append(TableFit("compute", label + "per_sequence.csv (LM head + sampler)", str(tp_dir / "per_sequence.csv"),
                             head[["sequences"]], head["seconds"].to_numpy(), leave_one_out(head, ["sequences"], "seconds"),
                             np.array([roofline.lm_head_time(int(s)) for s in seqs]), LOO,
                             _roofline_name(config, "LM head")))

        skew = SkewFit.load(tp_dir, meta, tp)
        if isinstance(skew, RuntimeSkewFit):  # (its references are attention.csv lookups, not skew.csv's controls)
            LOG.warning(f"kvsim: note: {skew.source}: a {SCHEMA} fit, read and applied as LLMServingSim does, "
                        "but not evaluated here")
        elif skew is not None and (tp_dir / "skew.csv").is_file():
            fits.append(_skew_fit(tp_dir, skew, meta, config))
    return fits


def _moe_fit(tp_dir: Path, roofline: RooflineCompute, config: Config) -> list[TableFit]:
    """A bundle's moe.csv over (activated experts, tokens), against the roofline of the router and those experts
    (a table with an ``ep`` column: its ``ep`` = 1 grid, the whole block as the roofline prices it; none without one:
    a grid at a higher degree is one rank's share of a shrunk block, which the roofline does not price)."""
    table = read_bundle_table(tp_dir, "moe.csv")  # (rows with a blank: counted and set aside there)
    if "ep" in table.columns:
        table = table[table["ep"] == 1]
        if table.empty:
            return []
    axes = ["activated_experts", "tokens"]
    points = table.assign(seconds=table["time_us"] * 1e-6).groupby(axes, as_index=False)["seconds"].mean()
    # the block's activation and routing kernels (top-k, moe_align_block_size, moe_sum) beside its GEMMs, as moe.csv
    # times the whole block
    block = moe_block_cost(roofline.model, roofline.dtype_bytes, roofline.tensor_parallel_size)
    l2_bandwidth = roofline.gpu.cache_bandwidth * roofline.bandwidth_efficiency
    reference = np.array([roofline.moe_block_time(int(t), float(a))
                          + block.layer_time(int(t), roofline.floors.gemm_s, roofline.bandwidth, roofline.gpu.l2_bytes,
                                             l2_bandwidth)
                          for a, t in zip(points["activated_experts"], points["tokens"], strict=True)])
    return [TableFit("compute", f"{tp_dir.name}/moe.csv (one MoE block)", str(tp_dir / "moe.csv"), points[axes],
                     points["seconds"].to_numpy(), leave_one_out(points, axes, "seconds"), reference, LOO,
                     _roofline_name(config, "router, experts and their elementwise kernels"))]


def _skew_fit(tp_dir: Path, skew: SkewFit, meta: dict, config: Config) -> TableFit:
    shots = read_bundle_table(tp_dir, "skew.csv")  # (rows with a blank alpha: counted and set aside there)
    gap = shots["kv_big"] - shots["kvs"]
    rate = ((shots["kv_mean"] - shots["kvs"]) / gap.where(gap > 0, 1)).to_numpy()
    kernels = shots["layer"].astype(str) if "layer" in shots.columns else ["attention"] * len(shots)  # (each its own)
    alpha = np.array([skew.alpha(pc, n, sr, kvb, kp, kernel) for pc, n, sr, kvb, kp, kernel in
                      zip(shots["pc"], shots["n"], rate, shots["kv_big"], shots["kp"], kernels, strict=True)])
    t_mean, t_max = shots["t_mean_us"].to_numpy() * 1e-6, shots["t_max_us"].to_numpy() * 1e-6
    enabled = skew_fit_enabled(meta, tp_dir.parent / "meta.yaml")
    mode = config.compute.skew_correction
    applied = mode == "always" or (mode == "auto" and enabled)
    return TableFit("compute", f"{tp_dir.name}/skew.csv (unequal decode KV lengths)", str(tp_dir / "skew_fit.csv"),
                    shots[["regime", "n", "nb", "pc", "kp", "kvs", "kv_big"]].reset_index(drop=True),
                    shots["t_skew_us"].to_numpy() * 1e-6, t_mean + alpha * (t_max - t_mean), t_mean,
                    "skew_fit.csv alpha of the shot's bucket (in-sample: fitted on these shots)",
                    "no correction (uniform batch at the mean KV length)",
                    {"applied_in_serving": applied, "meta_skew_fit_enabled": enabled,
                     "compute.skew_correction": mode, "alpha_default": skew.default})


# --------------------------------------------------------------------------------------- collectives


def _collective_fits(source: Path, config: Config) -> list[TableFit]:
    link = gpu_link(config)
    ring = RingCollectives.over(link)
    reference_name = f"ring over {config.hardware.gpu}'s link ({link.kind}, {link.bandwidth / 1e9:g} GB/s, " \
                     f"{link.step_latency * 1e6:g} us a step)"
    if source.is_dir():
        tables = [(name, str(source / f"{name}.csv"), vidur_collective_rows(source / f"{name}.csv", name))
                  for name in ("all_reduce", "send_recv") if (source / f"{name}.csv").is_file()]
    else:
        measured = MeasuredCollectives.load(source, ring)
        if not measured.ring_all_reduce:  # the engine's own all-reduce (AIConfigurator's): beside kvsim's model of it
            ring = analytic_collectives(config)
            reference_name = f"kvsim's model of the engine's collectives over {config.hardware.gpu}'s link " \
                             f"({link.kind}; serving.all_reduce={config.serving.all_reduce})"
        tables = []
        for name in COLLECTIVES:
            parts = [pd.DataFrame({"num_workers": ranks if ranks is not None else max(2, config.serving.tensor_parallel_size),
                                   "size": sizes, "seconds": seconds})
                     for (collective, ranks), (sizes, seconds) in measured.tables.items() if collective == name]
            if parts:
                tables.append((name, str(source), pd.concat(parts, ignore_index=True)))
    if not tables:
        raise ConfigError(f"compute.collectives {source}: no collective timings found")
    fits = []
    for name, path, rows in tables:
        points = rows.groupby(["num_workers", "size"], as_index=False)["seconds"].mean()
        if name == "send_recv":
            reference = np.array([ring.send_recv(s) for s in points["size"]])
        elif name == "all_reduce":
            reference = np.array([ring.all_reduce(s, int(n)) for n, s in zip(points["num_workers"], points["size"],
                                                                              strict=True)])
        else:  # a table's size is one rank's share (all-gather's input, reduce-scatter's output): the whole is N times
            price = ring.all_gather if name == "all_gather" else ring.reduce_scatter
            reference = np.array([price(s * n, int(n)) for n, s in zip(points["num_workers"], points["size"],
                                                                        strict=True)])
        fits.append(TableFit("collectives", name, path, points[["num_workers", "size"]], points["seconds"].to_numpy(),
                             leave_one_out(points, ["size"], "seconds", ("num_workers",)), reference, LOO, reference_name))
    return fits


def _network_fit(path: Path, config: Config) -> TableFit:
    table = LookupNetwork.from_json(path)
    net = config.network
    analytic = AnalyticNetwork(bandwidth=net.bandwidth_gbps * 1e9 / 8, latency=net.latency_us * 1e-6)
    points = pd.DataFrame({"size_bytes": table.sizes, "seconds": table.times})
    return TableFit("network", Path(path).name, str(path), points[["size_bytes"]], table.times,
                    leave_one_out(points, ["size_bytes"], "seconds"),
                    np.array([analytic.isolated_time(s) for s in table.sizes]), LOO,
                    f"latency + bytes / bandwidth (network.bandwidth_gbps {net.bandwidth_gbps:g}, "
                    f"network.latency_us {net.latency_us:g})")


# ------------------------------------------------------------------------------------------- driver


def overlay_tables(layer: dict[str, Any]) -> dict[str, bool]:
    """Which tables an overlay provides, from its layer as ``load_config`` read it (``layers``). Not read again: a
    second, plain ``yaml.safe_load`` read the file in the locale's encoding (a UTF-8 comment was an internal error
    under LANG=C), printed PyYAML's errors over several lines, and could see another file than the config came from."""
    compute, network = layer.get("compute") or {}, layer.get("network") or {}
    return {"compute": bool(compute.get("profile")), "collectives": bool(compute.get("collectives")),
            "network": bool(network.get("lookup"))}


def _collectives_source(provided: dict[str, bool], config: Config) -> Path | None:
    """The collective timings ``--check-calibration`` fits: the overlay's ``compute.collectives``, else the
    ``hardware.yaml`` above an LLMServingSim bundle it provides (``provided``: ``overlay_tables``)."""
    if provided["collectives"]:
        return Path(config.compute.collectives)
    directory = Path(config.compute.profile) if provided["compute"] else None
    if directory is not None and not (directory / "mlp.csv").is_file() and (directory / "meta.yaml").is_file():
        return bundle_hardware_yaml(directory)
    return None


def unread_serving_keys(provided: dict[str, bool], config: Config) -> dict[str, str]:
    """The serving keys ``--check-calibration`` leaves unread with this overlay, each with why: it compares operators
    and collectives at the group sizes their tables state, so an instance's TP is read only to size a measured
    collective table that states none, its all-reduce setting only for an engine's own all-reduce table (whose
    reference is kvsim's model of that engine's collectives), and data parallelism never."""
    one_rank = "not used by --check-calibration, which compares each table's operators on one data-parallel rank"
    unread = {"serving.data_parallel_size": one_rank, "serving.enable_expert_parallel": one_rank}
    source = _collectives_source(provided, config)
    measured = None
    if source is not None and source.is_file():
        measured = MeasuredCollectives.load(source, RingCollectives.over(gpu_link(config)))
    if measured is None or all(ranks is not None for _, ranks in measured.tables):
        unread["serving.tensor_parallel_size"] = ("not used by --check-calibration here: each table states its own "
                                                  "group sizes (it sizes only a measured collective table that "
                                                  "states none)")
    if measured is None or measured.ring_all_reduce:
        unread["serving.all_reduce"] = ("not used by --check-calibration here: it is read only to model an engine's "
                                        "own all-reduce table (an AIConfigurator custom_allreduce_perf table)")
    return unread


def table_fits(overlay: Path, provided: dict[str, bool], config: Config) -> list[TableFit]:
    """The fit of every table the overlay provides (``provided``: ``overlay_tables``; its paths resolved in
    ``config``)."""
    fits: list[TableFit] = []
    collectives = _collectives_source(provided, config)
    if provided["compute"]:
        directory = Path(config.compute.profile)
        bundle = not (directory / "mlp.csv").is_file()
        model = model_spec(config.model)
        unfit = profile_misfit(directory, model, config.model, bundle) or \
            (bundle_gpu_misfit(directory, config.hardware.gpu) or bundle_model_misfit(directory, model, config.model)
             or bundle_dtype_misfit(directory, model, config.serving.dtype) if bundle else None)
        if unfit:  # as the serving modes refuse it: its times are another model's operators
            raise ConfigError(f"--check-calibration {overlay}: {unfit}, so its tables cannot be checked against it")
        if (directory / "mlp.csv").is_file():
            fits.append(_vidur_mlp(directory / "mlp.csv", config))
            if (directory / "attention.csv").is_file():
                fits.append(_vidur_attention(directory / "attention.csv", config))
        elif (directory / "meta.yaml").is_file():
            try:
                fits.extend(_bundle_tables(directory, config))
            except ConfigError as exc:  # a bundle of another model: named as the serving modes name it
                raise ConfigError(f"--check-calibration {overlay}: {exc}") from None
        else:
            raise ConfigError(f"compute.profile {directory}: neither a Vidur profile (mlp.csv) nor an LLMServingSim "
                              "bundle (meta.yaml + tpN/*.csv) found there")
    if collectives is not None:
        fits.extend(_collective_fits(collectives, config))
    if provided["network"]:
        fits.append(_network_fit(Path(config.network.lookup), config))
    if not fits:
        raise InputError(f"--check-calibration {overlay}: the overlay provides no table "
                         "(compute.profile, compute.collectives or network.lookup)")
    return fits


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def format_fits(overlay: Path, config: Config, runs: list[RunResult]) -> str:
    lines = [f"calibration check of {overlay} (model {config.model}, GPU {config.hardware.gpu})",
             f"  {'table':<52} {'points':>7} {'model MAPE':>11} {'reference MAPE':>15}"]
    for run in runs:
        m = run.metrics
        lines.append(f"  {m['kind'] + ' ' + m['table']:<52} {m['points']:>7} {m['model']['mape']:>10.2%} "
                     f"{m['reference']['mape']:>14.2%}")
    for run in runs:
        m = run.metrics
        lines.append(f"[{m['kind']} {m['table']}] {m['source']}")
        for side in ("model", "reference"):
            s = m[side]
            lines.append(f"  {side}: {s['method']}: MAPE {s['mape']:.2%}, bias {s['bias']:+.2%}, worst:")
            for row in s["worst"][:3]:
                where = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("measured_s", "predicted_s", "error"))
                lines.append(f"    {where}: measured {_ms(row['measured_s'])}, predicted {_ms(row['predicted_s'])} "
                             f"({row['error']:+.1%})")
        if "notes" in m:
            lines.append("  notes: " + ", ".join(f"{k}={v}" for k, v in m["notes"].items()))
    return "\n".join(lines)


def calibration_runs(overlay: Path, provided: dict[str, bool], config: Config) -> list[RunResult]:
    """The ``--check-calibration`` mode (``config`` already has the overlay applied, ``provided``:
    ``overlay_tables``): one run per table."""
    return [RunResult(name=f"{fit.kind}/{fit.table.split(' ')[0]}", metrics=fit.metrics())
            for fit in table_fits(overlay, provided, config)]
