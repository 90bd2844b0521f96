"""LLMServingSim-profiled compute: step times from an LLMServingSim profile bundle.

A bundle (``meta.yaml`` + ``tp<N>/*.csv``, measured with vLLM) holds per-operator dense times,
the attention kernels over a four-axis grid, the LM head and sampler per sequence, for a mixture of
experts the MoE block over (tokens, distinct experts) (``BundleExperts``), and optionally
LLMServingSim's fitted correction for decode batches of unequal KV lengths (``sim.serving.skew_fit``).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.config_fields import MAX_TRACE_SPAN_S
from sim.errors import ConfigError, quote
from sim.model_shape import ModelSpec
from sim.serving.collectives import TensorParallelComm
from sim.serving.moe import DataParallelShare, group_tokens, rank_experts
from sim.serving.profile_files import read_bundle_table, read_profile_yaml, require_points
from sim.serving.profile_grid import GridNode, interpolate
from sim.serving.skew_calibration import RuntimeSkewFit
from sim.serving.skew_fit import SkewFit, skew_fit_enabled
from sim.serving.step_shape import StepShape, window_kv
from trace.request import file_sha256

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class BundleExperts:
    """One MoE layer's time from a bundle's ``moe.csv`` (``tokens, activated_experts, time_us``: the whole
    sparse MoE block, router and fused experts, measured with routing forced onto ``activated_experts``
    distinct experts; LLMServingSim ``docs/docs/profiler/output-bundle.md``, ``profiler/core/categories.py``).

    A step of T tokens is looked up at T and the distinct experts its tokens touch, their uniform-routing
    expectation (``sim.serving.moe``), with LLMServingSim's interpolation (``serving/core/trace_generator.py``
    ``_lookup_moe``: linear in tokens within each profiled expert count, then linear across the two
    neighbouring counts; the nearest row below the grid, the last segment extended above it). Its routing
    default takes min(T × k, E) distinct experts instead, the most a step can touch.

    LLMServingSim's profiler measures moe.csv at TP 1 only and its simulator reads that table at any TP
    (``_lookup_moe``), treating the TP ranks as expert-parallel ranks. At TP N without a ``tp<N>/moe.csv``,
    kvsim does the same with each rank's share of the work: T / N tokens (the rank's 1/N of the T × k token-expert
    pairs, at k each) over 1/N of the distinct experts. (LLMServingSim gives a rank every token with at least
    one expert there, each counted with all k, which overstates a rank's pairs about N-fold when k ≥ N.)
    With ``data_parallel_size`` D the group's D × T tokens are shared by D times as many ranks
    (``sim.serving.moe``): a rank's lookup is at the same T / N tokens over 1/(D × N) of the group's experts.

    Later bundles measure a grid per expert-parallel degree (an ``ep`` column: one rank running E/ep experts and
    k/ep of each token's assignments, ``tokens`` the rows it is given, all the group's under vLLM's all-gather
    dispatch; LLMServingSim docs/docs/profiler/output-bundle.md). A run on D × N GPUs reads the ``ep`` = D × N grid
    as measured: a rank's lookup is at the group's tokens over its 1/(D × N) of their experts. Without that grid
    it reads the ``ep`` = 1 rows as above; with neither, it is an error naming the degrees profiled.
    """

    table: GridNode  # axes activated_experts, tokens -> seconds
    model: ModelSpec
    ranks: int  # ranks sharing the work the table was measured for (1: measured at the TP in use)
    source: str
    data_parallel_size: int = 1
    per_rank: bool = False  # the table is one rank's at this run's expert-parallel degree (``ep`` = D × N)

    @classmethod
    def load(cls, tp_dir: Path, model: ModelSpec, ranks: int, data_parallel_size: int = 1,
             tensor_parallel_size: int = 1) -> "BundleExperts":
        """``tp_dir/moe.csv`` for ``model``, its work shared by ``ranks`` ranks (per data-parallel rank); a
        table with an ``ep`` column is read at the degree ``data_parallel_size`` × ``tensor_parallel_size``."""
        path = tp_dir / "moe.csv"
        frame = read_bundle_table(tp_dir, "moe.csv")  # (rows with a blank: counted and set aside there)
        if frame.empty:
            raise ConfigError(f"{path}: no rows")
        per_rank = False
        if "ep" in frame.columns:
            degree = data_parallel_size * tensor_parallel_size
            degrees = sorted({int(ep) for ep in frame["ep"]})
            per_rank = degree != 1 and degree in degrees
            if not per_rank and 1 not in degrees:
                raise ConfigError(f"{path}: measured at expert-parallel degrees {degrees}, not this run's {degree} "
                                  "(data_parallel_size x tensor_parallel_size) nor 1")
            frame = frame[frame["ep"] == (degree if per_rank else 1)]
            require_points(frame, ["tokens", "activated_experts"], path, "moe.csv",
                           f"at ep {degree if per_rank else 1}")
            if per_rank:
                ranks = tensor_parallel_size  # (the group's experts over D x N ranks: D in rank_experts)
        if (frame[["tokens", "activated_experts"]] <= 0).any().any() or (frame["time_us"] < 0).any():
            raise ConfigError(f"{path}: tokens and activated_experts must be positive, time_us not negative")
        most = int(frame["activated_experts"].max())
        if most > model.num_experts:
            raise ConfigError(f"{path}: profiles up to {most} activated experts, but {model.name} has "
                              f"{model.num_experts} experts: a bundle of another model?")
        frame = frame.assign(time_s=frame["time_us"] * 1e-6)
        return cls(GridNode(frame, ["activated_experts", "tokens"], "time_s"), model, ranks, str(path),
                   data_parallel_size, per_rank)

    def layer_time(self, tokens: float, share: DataParallelShare | None = None) -> float:
        """One MoE layer (router and experts) for a step of ``tokens`` tokens, per rank (``share``: the group's
        tokens in a lockstep step; None: D ranks of ``tokens`` each)."""
        if tokens <= 0:
            return 0.0
        dp = self.data_parallel_size
        routed = group_tokens(tokens, dp, share)
        rows = routed if self.per_rank else routed / dp / self.ranks  # (per rank: k / (D x N) assignments a row)
        return self.table.lookup((rank_experts(routed, self.model, dp) / self.ranks, rows))


# LLMServingSim's dense operators: those run once per model; "layernorm" runs twice per decoder layer
# (before attention and before the MLP); every other operator in dense.csv runs once per layer, the dense MLP's
# on the layers whose MLP is dense only (LLMServingSim profiler/models/*.yaml: ``blocks.mlp.dense``; DeepSeek's
# first_k_dense_replace layers beside its MoE layers, which moe.csv times).
MODEL_OPS = ("embedding", "final_layernorm")
MLP_OPS = ("gate_up_proj", "act_fn", "down_proj")
# a layer's attention projections: q/k/v fused, or multi-head latent attention's fused q_a/kv_a projection
# (profiler/models/deepseek_v32.yaml ``mla_qkv_a_proj``); and the MLP: MLP_OPS in dense.csv (every catalog's
# ``mlp_dense``/``blocks.mlp.dense``: profiler/models/llama.yaml, qwen3.yaml, deepseek_v32.yaml), or moe.csv
_REQUIRED_LAYER_OPS = ("layernorm", "o_proj")
QKV_PROJECTION, MLA_PROJECTION = "qkv_proj", "mla_qkv_a_proj"


# A skew-corrected attention time is floored at 1 ns, as LLMServingSim's _lookup_attention_with_skew
# (serving/core/trace_generator.py) returns max(1, round(t_mean + alpha (t_max - t_mean))) ns: a negative alpha (its
# fitter writes them; the bundled RTX 4090 fit's -2.59 at pc 32, n<=2) past -1/lev would otherwise give a negative
# time ("cannot schedule in the past"). (It rounds to whole ns as well; kvsim keeps times continuous.)
SKEWED_FLOOR_S = 1e-9


@dataclass
class LLMServingSimCompute:
    """Step time from an LLMServingSim profile bundle (µs per layer, measured with vLLM).

    dense.csv: per-operator time over total tokens; attention.csv: the attention kernels (one, or a
    group each run once a layer: ``KernelSum``) over (prefill chunk tokens, query-weighted causal key
    length, decode count, decode KV length), corrected for unequal decode KV lengths by skew_fit.csv
    when enabled (``SkewFit``, or LLMServingSim's newer ``RuntimeSkewFit``); per_sequence.csv: LM head and sampler
    over the step's sequences; moe.csv
    (a mixture of experts): the MoE block in place of the dense MLP operators (``BundleExperts``), which
    then price only the model's dense MLP layers (DeepSeek's first ones). A step is
    layers × (operators + attention) + dense MLP layers × MLP + MoE layers × MoE block + embedding +
    final norm + LM head + sampler + the TP collectives.
    """

    dense: dict[str, tuple[np.ndarray, np.ndarray]]
    per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]
    layer_ops: tuple[str, ...]  # on every layer (a mixture of experts: all but the dense MLP's)
    attention: GridNode | KernelSum
    decode_attention: GridNode | KernelSum
    num_layers: int
    source: str
    skew: SkewFit | RuntimeSkewFit | None = None
    experts: BundleExperts | None = None
    comm: TensorParallelComm | None = None
    name: str = "profiled"
    sliding_window: int = 0  # profiles time full-attention layers: hybrid models are refused (profile_misfit)
    mlp_ops: tuple[str, ...] = ()  # a mixture of experts' dense MLP layers (DeepSeek's first ones)
    dense_mlp_layers: int = 0
    kernels: tuple[str, ...] = ("attention",)  # the attention kernels' names, in the order of the nodes

    @classmethod
    def load(cls, directory: Path, model: ModelSpec, tensor_parallel_size: int,
             skew_correction: str = "auto", data_parallel_size: int = 1) -> "LLMServingSimCompute":
        """``skew_correction``: ``auto`` applies the skew fit when ``meta.yaml::skew_fit.enabled`` says so (as
        LLMServingSim reads a bundle), ``always`` whenever the bundle has one, ``never`` not at all.
        ``data_parallel_size``: instances sharing a mixture of experts' MoE layers (``BundleExperts``)."""
        meta = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file")
        engine = meta.get("engine_effective") or {}
        overrides = engine.get("hf_overrides") or {} if isinstance(engine, dict) else None
        if not isinstance(overrides, dict):
            raise ConfigError(f"{directory}/meta.yaml: engine_effective (and its hf_overrides) must be a mapping")
        # The profiler may record per-shard shapes (e.g. half the heads); a shape must divide the model's. (With
        # multi-head latent attention the config's num_key_value_heads is its head count; the cache holds one latent.)
        kv_heads = model.num_attention_heads if model.is_mla else model.num_kv_heads
        for key, expected in (("num_key_value_heads", kv_heads), ("intermediate_size", model.intermediate_size),
                              ("num_attention_heads", model.num_attention_heads), ("vocab_size", model.vocab_size)):
            value = overrides.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{directory}/meta.yaml: profiled {key} must be a positive whole number, got {value!r:.40}")
            if expected % value:
                raise ConfigError(f"{directory}/meta.yaml: profiled {key}={value} does not fit {model.name} ({expected})")
        tp_dir = directory / f"tp{tensor_parallel_size}"
        if not tp_dir.is_dir():
            raise ConfigError(f"{directory}: no tp{tensor_parallel_size}/ folder (profiled TP degrees: {meta.get('tp_degrees')})")

        dense, per_seq, layer_ops, mlp_ops, kernels = read_bundle_layers(directory, tp_dir, model)
        experts = bundle_experts(directory, tp_dir, model, tensor_parallel_size, data_parallel_size)
        axes = ["prefill_chunk", "prefill_key", "n_decode", "kv_decode"]
        decode_only = {kernel: rows[rows["prefill_chunk"] == 0] for kernel, rows in kernels.items()}
        for tables, kind, grid in ((kernels, "attention", axes),
                                   (decode_only, "pure-decode (prefill_chunk 0)", axes[2:])):
            for kernel, rows in tables.items():
                named = "" if len(tables) == 1 else f" {kernel!r}"
                if rows.empty:
                    raise ConfigError(f"{tp_dir / 'attention.csv'}: no{named} {kind} rows to price a step's attention "
                                      "from")
                # each kernel is interpolated over its own points (the table's check counted them all together)
                require_points(rows, grid, tp_dir / "attention.csv", "attention.csv",
                               f"({kind}{' for kernel' + named if named else ''}) in {tp_dir.name}/")
        skew = None
        if skew_correction == "always" or (skew_correction == "auto" and skew_fit_enabled(meta, directory / "meta.yaml")):
            skew = SkewFit.load(tp_dir, meta, tensor_parallel_size)
            if skew is None and skew_correction == "always":
                raise ConfigError(f"compute.skew_correction is 'always' but {tp_dir} has no skew_fit.csv")
            # a fit for a kernel the bundle does not time would never be applied
            unknown = sorted(skew.kernels - set(kernels)) if skew else []
            if unknown:
                raise ConfigError(f"{skew.source}: skew fit for kernel(s) {', '.join(quote(k) for k in unknown)}, "
                                  f"which attention.csv does not time (it times {', '.join(map(repr, kernels))})")
            if skew is not None:
                skew.refuse_beyond({k: float(rows["time_s"].max()) for k, rows in kernels.items()}, MAX_TRACE_SPAN_S)
        return cls(dense, per_seq, layer_ops, KernelSum.of([GridNode(rows, axes, "time_s") for rows in kernels.values()]),
                   KernelSum.of([GridNode(rows, ["n_decode", "kv_decode"], "time_s") for rows in decode_only.values()]),
                   model.num_layers, str(directory), skew, experts, mlp_ops=mlp_ops,
                   dense_mlp_layers=_dense_mlp_layers(model),
                   kernels=tuple(kernels))

    @classmethod
    def load_kept(cls, directory: Path, model: ModelSpec, tensor_parallel_size: int,
                  skew_correction: str = "auto", data_parallel_size: int = 1) -> "LLMServingSimCompute":
        """``load``, or a copy of the model this process loaded before from the same bundle (every file of
        ``directory`` that ``load`` may read unchanged: ``_bundle_files``, ``trace.request.file_sha256``) with the same arguments (``_KEPT``). A max-rate
        search's probes, a plan's or a sweep's points and ``--seeds`` build a compute model per run: reading and
        checking an RTX 4090 bundle's tables was ~35 ms of each probe. The copy is shallow: its tables and grids are
        read only; what a caller sets on it (``comm``) is its own. A bundle that fails its checks is not kept."""
        try:
            files = _bundle_files(Path(directory))
            state = tuple((p.relative_to(directory).as_posix(), file_sha256(p)) for p in files)
        except OSError:  # (an unreadable file: load's error names it)
            return cls.load(directory, model, tensor_parallel_size, skew_correction, data_parallel_size)
        key = (str(Path(directory).resolve()), state, model, tensor_parallel_size, skew_correction, data_parallel_size)
        kept = _KEPT.get(key)
        if kept is None:
            kept = cls.load(directory, model, tensor_parallel_size, skew_correction, data_parallel_size)
            if len(_KEPT) >= _KEPT_MOST:
                del _KEPT[next(iter(_KEPT))]
            _KEPT[key] = kept
        return copy.copy(kept)

    def _op(self, table: dict, name: str, x):
        xs, ys = table[name]
        return interpolate(xs, ys, x)

    def _dense_layer(self, tokens: int, share: DataParallelShare | None = None) -> float:
        """One layer's operators (per TP shard, as profiled), the MLP included: the MoE block, or a mixture of
        experts' dense MLP layers and MoE layers averaged over its layers."""
        dense = float(sum(self._op(self.dense, op, tokens) for op in self.layer_ops))
        if self.experts is None:
            return dense
        moe = self.experts.layer_time(tokens, share)
        if not self.dense_mlp_layers:
            return dense + moe
        mlp = float(sum(self._op(self.dense, op, tokens) for op in self.mlp_ops))
        return dense + (self.dense_mlp_layers * mlp + (self.num_layers - self.dense_mlp_layers) * moe) / self.num_layers

    def _fixed(self, tokens: int, seqs: int, share: DataParallelShare | None = None) -> float:
        once = sum(self._op(self.dense, op, tokens) for op in MODEL_OPS)
        if seqs:
            once += self._op(self.per_sequence, "lm_head", seqs) + self._op(self.per_sequence, "sampler", seqs)
        if self.comm is not None:
            once += self.comm.step_time(tokens, seqs, share)
        return float(once)

    def _skewed(self, t_mean: float, t_max: float, pc: float, n: int, kv_mean: float, kv_max: float,
                kv_min: float, kp: float, kernel: str = "attention") -> float:
        """``t_mean`` corrected towards ``t_max`` by the bucket's alpha for ``kernel`` (as LLMServingSim's
        ``_lookup_attention_with_skew``: none for one decode, equal lengths, or t_max <= t_mean)."""
        if self.skew is None or n <= 1 or kv_max == kv_mean or t_max <= t_mean:
            return t_mean
        skew_rate = (kv_mean - kv_min) / (kv_max - kv_min)
        lev = (t_max - t_mean) / t_mean if t_mean > 0 else math.inf  # the newer fit's coordinate
        alpha = self.skew.alpha(pc, n, skew_rate, kv_max, kp, kernel, lev)
        return max(SKEWED_FLOOR_S, t_mean + alpha * (t_max - t_mean))

    def attention_time(self, shape: StepShape) -> float:
        """One layer's attention kernels for the step (each skew-corrected with its own alpha)."""
        chunk, n = shape.prefill_tokens, shape.decode_seqs
        key = shape.prefill_pairs / chunk if chunk else 0.0
        kv = shape.decode_kv_tokens / n if n else 0.0
        if self.skew is None or n <= 1 or shape.decode_kv_max == kv:
            return self.attention.lookup((chunk, key, n, kv))
        return sum(self._skewed(node.lookup((chunk, key, n, kv)), node.lookup((chunk, key, n, shape.decode_kv_max)),
                                chunk, n, kv, shape.decode_kv_max, shape.decode_kv_min, shape.prefill_context, kernel)
                   for kernel, node in zip(self.kernels, kernel_nodes(self.attention), strict=True))

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        if shape.tokens == 0:
            return 0.0
        tokens = shape.tokens if share is None else share.tokens  # padded: the layers run on them all
        return self.num_layers * (self._dense_layer(tokens, share) + self.attention_time(shape)) + \
            self._fixed(tokens, shape.logit_rows, share)

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        seqs = first.decode_seqs
        tokens = seqs if share is None else share.tokens
        fixed = self.num_layers * self._dense_layer(tokens, share) + self._fixed(tokens, seqs, share)
        node = self.decode_attention
        kv_tokens, kv_max, kv_min = window_kv(first, steps)
        means = kv_tokens / seqs
        if self.skew is None or seqs <= 1:  # no step is skew-corrected
            return fixed + self.num_layers * node.lookup_last((seqs,), means)
        attention = 0  # each kernel corrected with its own alpha, as ``attention_time`` does a step at a time
        for kernel, kernel_node in zip(self.kernels, kernel_nodes(node), strict=True):
            t_mean, t_max = kernel_node.lookup_last((seqs,), means), kernel_node.lookup_last((seqs,), kv_max)
            attention = attention + self._skewed_along(t_mean, t_max, seqs, means, kv_max, kv_min, kernel)
        return fixed + self.num_layers * attention

    def _skewed_along(self, t_mean: np.ndarray, t_max: np.ndarray, n: int, kv_mean: np.ndarray, kv_max: np.ndarray,
                      kv_min: np.ndarray, kernel: str) -> np.ndarray:
        """``_skewed`` of each step of a decode window (no prefill: pc and kp 0), vectorised."""
        apply = (kv_max != kv_mean) & (t_max > t_mean)
        if not apply.any():
            return t_mean
        rate, lev = np.zeros(len(t_mean)), np.full(len(t_mean), np.inf)
        np.divide(kv_mean - kv_min, kv_max - kv_min, out=rate, where=apply)
        np.divide(t_max - t_mean, t_mean, out=lev, where=apply & (t_mean > 0))
        alpha = self.skew.alphas_along(0, n, rate, kv_max, 0, kernel, lev)
        return np.where(apply, np.maximum(SKEWED_FLOOR_S, t_mean + alpha * (t_max - t_mean)), t_mean)


def _bundle_files(directory: Path) -> list[Path]:
    """The files of a bundle that ``load`` may read, sorted: meta.yaml and each file in a ``tp<N>/`` folder, through
    a symbolic link to a folder as ``load`` reads it (a ``tp1`` linked to shared tables: ``Path.rglob`` did not enter
    it, so an edit there kept the old model). Nothing else is walked (a link to a large tree in the bundle's folder
    would be read every run). An unreadable folder raises OSError."""
    files = [directory / "meta.yaml"] if (directory / "meta.yaml").is_file() else []
    for folder in sorted(directory.iterdir()):
        if _TP_FOLDER.fullmatch(folder.name) and folder.is_dir():
            files.extend(sorted(path for path in folder.iterdir() if path.is_file()))
    return files


_TP_FOLDER = re.compile(r"tp[0-9]+")  # a bundle's tables for one TP degree (``load``: tp{tensor_parallel_size})


# The bundles' compute models this process has loaded (``LLMServingSimCompute.load_kept``), by bundle content and
# load arguments; a plan over several GPUs' bundles keeps each, up to _KEPT_MOST.
_KEPT: dict[tuple, LLMServingSimCompute] = {}
_KEPT_MOST = 8


def read_bundle_layers(directory: Path, tp_dir: Path, model: ModelSpec) -> tuple[dict, dict, tuple[str, ...],
                                                                                 tuple[str, ...], dict[str, pd.DataFrame]]:
    """A ``tp<N>/`` folder's per-layer tables, checked against ``model`` (the serving modes and
    ``--check-calibration`` alike): dense.csv's and per_sequence.csv's operator curves, the operators of every layer
    and of the dense MLP layers (``bundle_layer_ops``), and the attention kernels' rows; a mixture of experts needs a
    moe.csv and a dense model has none (``moe_table``)."""
    dense = bundle_curves(read_bundle_table(tp_dir, "dense.csv"), "tokens")
    per_seq = bundle_curves(read_bundle_table(tp_dir, "per_sequence.csv"), "sequences")
    moe_table(directory, tp_dir, model)
    require_bundle_ops(tp_dir, dense, per_seq, moe=model.is_moe, dense_mlp_layers=_dense_mlp_layers(model),
                       mla=model.is_mla, model_name=model.name)
    layer_ops, mlp_ops = bundle_layer_ops(dense, moe=model.is_moe)
    kernels = bundle_attention_kernels(read_bundle_table(tp_dir, "attention.csv"))
    require_layer_kernels(tp_dir / "attention.csv", kernels, model)
    return dense, per_seq, layer_ops, mlp_ops, kernels


def _dense_mlp_layers(model: ModelSpec) -> int:
    """A mixture of experts' layers whose MLP is dense (DeepSeek's first_k_dense_replace); 0 for a dense model."""
    return model.num_layers - model.moe_layers if model.is_moe else 0


def bundle_experts(directory: Path, tp_dir: Path, model: ModelSpec, tensor_parallel_size: int,
                   data_parallel_size: int) -> BundleExperts | None:
    """The bundle's MoE table for ``model`` (None for a dense model): ``tp<N>/moe.csv``, else ``tp1/moe.csv`` shared
    by the N ranks (LLMServingSim profiles it at TP 1 only)."""
    path = moe_table(directory, tp_dir, model)
    if path is None:
        return None
    ranks = 1 if path.parent == tp_dir else tensor_parallel_size
    return BundleExperts.load(path.parent, model, ranks, data_parallel_size, tensor_parallel_size)


def moe_table(directory: Path, tp_dir: Path, model: ModelSpec) -> Path | None:
    """Where ``model``'s moe.csv is (``tp<N>/``, else ``tp1/``; None for a dense model). A mixture of experts without
    one, or a dense model with one, is an error naming the file."""
    own, tp1 = tp_dir / "moe.csv", directory / "tp1" / "moe.csv"
    if not model.is_moe:
        for path in (own, tp1):
            if path.is_file():
                raise ConfigError(f"{path}: the bundle profiles a mixture of experts, but {model.name} is dense")
        return None
    for path in (own, tp1):
        if path.is_file():
            return path
    where = "tp1/" if tp_dir.name == "tp1" else f"{tp_dir.name}/ or tp1/"
    raise ConfigError(f"{own}: missing: {model.name} is a mixture of experts and the bundle has no moe.csv "
                      f"(in {where}): a bundle profiled for a dense model?")


def require_bundle_ops(tp_dir: Path, dense: dict, per_seq: dict, moe: bool, dense_mlp_layers: int = 0,
                       mla: bool = False, model_name: str = "the model") -> None:
    """The operators a step is priced from must each have rows: a layer's, the model's once, and its dense MLP's
    (``MLP_OPS``, all three, as every layer sums them: a bundle without gate_up_proj or act_fn priced a dense layer
    without them, silently low; ``moe``: moe.csv times the MLP instead, but on the ``dense_mlp_layers`` a mixture of
    experts runs a dense MLP); the attention projections must be the model's kind (``mla``: multi-head latent
    attention's, else q/k/v's): a bundle of the other kind is another model. The refusal names the file(s) and the
    operators they lack."""
    mlp = MLP_OPS if not moe or dense_mlp_layers else ()
    query, other = (MLA_PROJECTION, QKV_PROJECTION) if mla else (QKV_PROJECTION, MLA_PROJECTION)
    if query not in dense and other in dense:
        kind = "multi-head latent attention" if mla else "q/k/v/o attention"
        raise ConfigError(f"{tp_dir}: the bundle times {other} (another attention kind), but {model_name} has "
                          f"{kind}: a bundle of another model?")
    missing = sorted({op for op in (*_REQUIRED_LAYER_OPS, query, *mlp, *MODEL_OPS) if op not in dense})
    per_sequence = [op for op in ("lm_head", "sampler") if op not in per_seq]
    if missing or per_sequence:
        mlp_layers = ("" if not set(mlp) & set(missing) else
                      f" (for the {dense_mlp_layers} dense MLP layers)" if moe else " (of the dense MLP)")
        first, ops = ("dense.csv", missing) if missing else ("per_sequence.csv", per_sequence)
        also = f"; and per_sequence.csv lacks {', '.join(per_sequence)}" if missing and per_sequence else ""
        raise ConfigError(f"{tp_dir / first}: bundle lacks operator(s) {', '.join(ops)}"
                          f"{mlp_layers if missing else ''}{also}")


def bundle_layer_ops(dense: dict, moe: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A bundle's per-layer operators, two layernorms included: those of every layer, and (a mixture of experts) its
    dense MLP's, which run only on its dense layers (a dense model's are among every layer's)."""
    every = tuple(sorted(op for op in dense if op not in MODEL_OPS and not (moe and op in MLP_OPS))) + ("layernorm",)
    return every, tuple(op for op in MLP_OPS if moe and op in dense)


def bundle_curves(frame: pd.DataFrame, axis: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-operator (axis values, seconds) of a bundle's ``dense.csv`` or ``per_sequence.csv``."""
    out = {}
    for layer, group in frame.groupby("layer"):
        g = group.groupby(axis)["time_us"].mean()
        out[str(layer)] = (g.index.to_numpy(float), g.to_numpy(float) * 1e-6)
    return out


class KernelSum:
    """Kernels that each run once per attention layer over the same axes (LLMServingSim's ``attention`` group:
    DeepSeek-V3.2's MLA attention and its sparse-attention indexer, profiler/models/deepseek_v32.yaml); a lookup is
    their sum."""

    def __init__(self, nodes: list[GridNode]):
        self.nodes = nodes

    @staticmethod
    def of(nodes: list[GridNode]) -> "GridNode | KernelSum":
        return nodes[0] if len(nodes) == 1 else KernelSum(nodes)

    def lookup(self, point: tuple[float, ...]) -> float:
        return sum(node.lookup(point) for node in self.nodes)

    def lookup_last(self, point: tuple[float, ...], values: np.ndarray) -> np.ndarray:
        return sum(node.lookup_last(point, values) for node in self.nodes)


def kernel_nodes(table: GridNode | KernelSum) -> list[GridNode]:
    """Each kernel's grid of an attention table (one, or a ``KernelSum``'s)."""
    return table.nodes if isinstance(table, KernelSum) else [table]


def bundle_attention_kernels(attn: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A bundle's attention kernels (a table without a ``layer`` column: one, ``attention``), each's rows with a
    ``prefill_key`` axis and ``time_s``; every kernel runs once per attention layer."""
    if "decode_q_len" in attn.columns:  # speculative-verification rows aside
        attn = attn[attn["decode_q_len"] == 1]
    if "prefill_key" not in attn.columns:  # legacy tables: one prefill per shot (documented relabelling)
        attn = attn.assign(prefill_key=attn["kv_prefill"] + attn["prefill_chunk"] / 2)
    attn = attn.assign(time_s=attn["time_us"] * 1e-6)
    if "layer" not in attn.columns:
        return {"attention": attn}
    return {str(kernel): rows for kernel, rows in attn.groupby("layer", sort=True)}


def require_layer_kernels(path: Path, kernels: dict[str, pd.DataFrame], model: ModelSpec) -> None:
    """The attention kernels a bundle times must be those that run on every layer of ``model``, each once: the
    attention kernel, and with DeepSeek sparse attention its indexer (LLMServingSim profiler/models/deepseek_v32.yaml
    ``blocks.attn.full_attention.pre_attn``). A kernel run on some layers only (MiniMax-M3's ``sparse_attention``
    beside ``attention``: profiler/models/minimax_m3_vl.yaml) or of another model would be summed into every layer,
    and a missing indexer dropped: both refused by name."""
    expected = ("attention", "indexer") if model.is_sparse_attention else ("attention",)
    extra = [kernel for kernel in kernels if kernel not in expected]
    if extra:
        why = ("DeepSeek sparse attention's indexer, which " + model.name + " does not have"
               if extra == ["indexer"] else f"not a kernel every layer of {model.name} runs once")
        raise ConfigError(f"{path}: kernel(s) {', '.join(repr(k) for k in extra)} ({why}; it runs "
                          f"{' and '.join(repr(k) for k in expected)}): a bundle of another model?")
    missing = [kernel for kernel in expected if kernel not in kernels]
    if missing:
        raise ConfigError(f"{path}: no {' or '.join(repr(k) for k in missing)} kernel rows (one decode query a sequence, "
                          f"kernels named in a 'layer' column), but every layer of {model.name} runs {' and '.join(expected)}")


def bundle_attention_rows(kernels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One attention layer's time per grid point: its kernels (``bundle_attention_kernels``) summed at the points every
    kernel was measured at (``--check-calibration``'s table; a run interpolates each kernel over its own points)."""
    axes = ["prefill_chunk", "prefill_key", "n_decode", "kv_decode"]
    means = [rows.groupby(axes, as_index=False)["time_s"].mean() for rows in kernels.values()]
    total = means[0]
    for rows in means[1:]:
        total = total.merge(rows, on=axes, suffixes=("", "_next"))
        total = total.assign(time_s=total["time_s"] + total.pop("time_s_next"))
    return total
