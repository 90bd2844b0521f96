"""LLMServingSim's fitted correction of decode attention for batches of unequal KV lengths (a bundle's
``skew_fit.csv``, or its ``meta.yaml``'s inlined table), per attention kernel."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.errors import ConfigError, quote
from sim.serving.profile_files import read_bundle_table, read_profile_csv
from sim.serving.skew_calibration import SCHEMA, RuntimeSkewFit, refuse_far_alpha


def _mapping(value: object, where: str, source: object) -> dict:
    """A meta.yaml skew_fit entry that must be a mapping (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {quote(value)}")
    return value


def _alpha(value: object, where: str, source: object) -> float:
    """A finite alpha (a YAML number; a string of one as the fitter may write it)."""
    try:
        alpha = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        alpha = float("nan")
    if isinstance(value, bool) or not np.isfinite(alpha):
        raise ConfigError(f"{source}: {where} must be a finite number, got {quote(value)}")
    return alpha


def _bucket_edges(labels: list[str], source: object = "skew fit") -> tuple[list[float], tuple[str, ...]]:
    """Upper edges of the ``<prefix><=X`` / ``<prefix>=X`` bucket labels LLMServingSim's fitter writes
    (``n<=128``, ``sr<=15%``, ``kvB<=1k``, ``kp=0``; ``k`` = ×1024, ``%`` = /100), ascending. Overflow labels
    (``n>256``) get no edge: a value past the last edge falls in no fitted bucket."""
    edges = []
    for label in set(labels):
        for op in ("<=", "="):
            if op in label:
                raw = label.split(op, 1)[1]
                scale = 1024 if raw.endswith("k") else 0.01 if raw.endswith("%") else 1
                try:
                    edge = float(raw.rstrip("k%")) * scale
                except ValueError:
                    edge = float("nan")
                if not np.isfinite(edge):  # a bucket no value falls in, or a crash on "n<=abc"
                    raise ConfigError(f"{source}: bucket label {quote(label)} is not <axis><=X or <axis>=X with X a "
                                      "finite number (k: x 1024, %: / 100)")
                edges.append((edge, label))
                break
    edges.sort()
    return [e for e, _ in edges], tuple(label for _, label in edges)


# The fits kvsim reads: LLMServingSim's unversioned skew_fit.csv (or meta.yaml's inlined alpha_by_bucket), alphas per
# (pc, n, skew rate, kv_big, kp) bucket (here); its newer ``runtime-skew-calibration-v1`` (profiler/core/
# skew_calibration.py, recorded as meta.yaml ``skew_fit.per_tp.<tp>.schema``, skew_fit.csv
# ``layer,decode_q_len,pc_label,lev_label,n_anchor,alpha,direct_rows,pooled_rows``: sim.serving.skew_calibration).
# Any other schema is refused by name; so is a newer skew_fit.csv whose meta.yaml entry does not name its schema (its
# axes and fallbacks live there).
READ_COLUMNS = ("pc", "n_label", "skew_rate_label", "kv_big_label", "kp_label", "alpha")
NEWER_COLUMNS = ("pc_label", "lev_label", "n_anchor")  # columns of its skew_fit.csv that the unversioned one lacks


def other_schema(source: object, schema: object, how: str = "") -> ConfigError:
    """The refusal of a skew fit written in a schema kvsim does not read, naming the schema found (``how``: how it was
    told) and the one kvsim reads."""
    return ConfigError(f"{source}: skew fit schema {quote(schema)}{how}, which kvsim does not read: it reads "
                       f"LLMServingSim's unversioned fit (skew_fit.csv columns {', '.join(READ_COLUMNS)}) and "
                       f"{SCHEMA} named in meta.yaml's skew_fit.per_tp entry; compute.skew_correction: never runs "
                       "without the fit")


@dataclass
class SkewFit:
    """LLMServingSim's correction of decode attention for batches of unequal KV lengths (``skew_fit.csv``).

    The attention grid was measured with every decode at one KV length; a batch with the same
    mean but a longer tail is slower. LLMServingSim (``docs/docs/profiler/skew-alpha-fit.md``,
    ``serving/core/trace_generator.py``) predicts
        t = t(mean KV) + alpha × (t(max KV) − t(mean KV)),
    alpha per bucket of (prefill chunk ``pc``, decode count ``n``, skew rate (mean − min) / (max − min),
    longest KV ``kv_big``, prefill KV history ``kp``), fitted by weighted least squares on measured
    bimodal batches. ``pc`` is a bucket of its own per profiled chunk size. A batch in no fitted bucket
    (a chunk size between grid points, more decodes or a longer KV than profiled) takes the pooled
    ``alpha_default``, as LLMServingSim's ``_skew_alpha`` does.

    Alphas are per attention kernel (a ``layer`` column, or ``kernel|pc=...`` keys: DeepSeek-V3.2's attention and
    indexer are fitted apart; a table without one is the ``attention`` kernel's), each kernel corrected with its own
    (``_skew_alpha``'s ``{layer}|{bucket}`` key). Outside its buckets a kernel takes
    ``alpha_default_by_layer[kernel]``, the ``attention`` kernel also ``alpha_default``, any other 0 (no correction
    it was not measured for).
    """

    alphas: dict[tuple[str, float, str, str, str, str], float]  # (kernel, pc, n, skew_rate, kv_big, kp labels)
    axes: dict[str, tuple[list[float], tuple[str, ...]]]  # n, skew_rate, kv_big, kp: (upper edges, labels)
    defaults: dict[str, float]  # per kernel, outside its fitted buckets
    source: str
    rows: dict[tuple[str, float, str, str, str, str], str] | None = None  # where each alpha was read (its row)

    @property
    def default(self) -> float:
        """The attention kernel's alpha outside its fitted buckets."""
        return self.defaults.get("attention", 0.0)

    @classmethod
    def load(cls, tp_dir: Path, meta: dict, tensor_parallel_size: int) -> "SkewFit | RuntimeSkewFit | None":
        """The bundle's fit (``tp<N>/skew_fit.csv``, or an ``alpha_by_bucket`` map inlined in ``meta.yaml``), or None.

        Bucket axes and ``alpha_default`` come from ``meta.yaml::skew_fit`` when it records them; else the
        axes from the table's own labels and the default as the fitter defines it (pooled weighted least
        squares over ``skew.csv``: Σ gap·excess / Σ gap², gap = t_max − t_mean, excess = t_skew − t_mean;
        0 without it, LLMServingSim's no-measurement fallback)."""
        import pandas as pd  # here only: a run that reads no table never loads pandas
        meta_path = tp_dir.parent / "meta.yaml"
        fit = _mapping((meta or {}).get("skew_fit"), "skew_fit", meta_path)
        per_tp = _mapping(fit.get("per_tp"), "skew_fit.per_tp", meta_path)
        entry = per_tp.get(tensor_parallel_size)
        entry = _mapping(per_tp.get(str(tensor_parallel_size)) if entry is None else entry,
                         f"skew_fit.per_tp.{tensor_parallel_size}", meta_path)
        if entry.get("schema") == SCHEMA:
            return RuntimeSkewFit.load(tp_dir, entry, meta_path)
        if entry.get("schema") is not None:  # (the unversioned fit records none)
            raise other_schema(meta_path, entry["schema"], f" (skew_fit.per_tp.{tensor_parallel_size}.schema)")
        path = tp_dir / "skew_fit.csv"
        columns = list(READ_COLUMNS)
        if path.is_file():
            table = read_profile_csv(path, numeric=("pc", "alpha"), what="LLMServingSim skew_fit.csv",
                                     keys=("layer", *columns[:-1]), signed=("alpha",))
            if set(NEWER_COLUMNS) <= set(table.columns) and not set(columns) <= set(table.columns):
                raise other_schema(path, SCHEMA, f" by its columns ({', '.join(NEWER_COLUMNS)})")
            if not set(columns) <= set(table.columns):
                raise ConfigError(f"{path}: not an LLMServingSim skew_fit.csv (needs columns {columns})")
            if table["alpha"].isna().any():  # (a blank or NaN alpha would be looked up as NaN)
                row = int(table["alpha"].isna().to_numpy().argmax()) + 1
                raise ConfigError(f"{path} (LLMServingSim skew_fit.csv): row {row} column alpha: missing")
            if "layer" not in table.columns:  # one kernel's fit, from before the layer column
                table = table.assign(layer="attention")
            source = str(path)
        elif entry.get("alpha_by_bucket"):  # older bundles inline the table: "pc=0|n<=8|sr<=5%|kvB<=1k|kp=0": alpha
            source = str(tp_dir.parent / "meta.yaml")
            rows = []
            for key, value in _mapping(entry["alpha_by_bucket"], "skew_fit alpha_by_bucket", source).items():
                parts = str(key).split("|")
                parts = parts if len(parts) == 6 else ["attention", *parts]  # "indexer|pc=0|...": a kernel's own
                try:
                    rows.append([parts[0], float(parts[1].removeprefix("pc=")), *parts[2:], float(value)])
                except (ValueError, TypeError):
                    raise ConfigError(f"{source}: skew_fit alpha_by_bucket entry {key!r}: {value!r} is not "
                                      "[kernel|]pc=N|n|skew rate|kv_big|kp: alpha") from None
                if not np.isfinite(rows[-1][-1]):
                    raise ConfigError(f"{source}: skew_fit alpha_by_bucket entry {key!r}: {value!r} is not "
                                      "[kernel|]pc=N|n|skew rate|kv_big|kp: alpha (a finite number)")
                if len(rows[-1]) != 7:
                    raise ConfigError(f"{source}: skew_fit alpha_by_bucket key {key!r} is not [kernel|]pc=N|n|skew "
                                      "rate|kv_big|kp")
            table = pd.DataFrame(rows, columns=["layer", *columns])
        else:
            return None
        recorded = _mapping(entry.get("bucket_axes") or fit.get("bucket_axes"), "skew_fit bucket_axes", meta_path)
        axes = {}
        for axis, column in (("n", "n_label"), ("skew_rate", "skew_rate_label"), ("kv_big", "kv_big_label"), ("kp", "kp_label")):
            if recorded and f"{axis}_bins" in recorded:
                bins, labels = recorded[f"{axis}_bins"], recorded.get(f"{axis}_labels")
                if not isinstance(bins, list) or not isinstance(labels, list) or len(labels) != len(bins) - 1:
                    raise ConfigError(f"{meta_path}: skew_fit bucket_axes {axis}_bins and {axis}_labels must be lists, "
                                      f"one label a bin (between two edges), got {quote(bins)} and {quote(labels)}")
                edges = [_alpha(b, f"skew_fit bucket_axes {axis}_bins", meta_path) for b in bins[1:]]
                if any(lo >= hi for lo, hi in zip(edges, edges[1:])):  # (a bucket is looked up by bisection)
                    raise ConfigError(f"{meta_path}: skew_fit bucket_axes {axis}_bins must increase, got {quote(bins)}")
                axes[axis] = ([float(e) for e in edges], tuple(str(label) for label in labels))
            else:
                axes[axis] = _bucket_edges(table[column].astype(str).tolist(), source)
        defaults = {str(k): _alpha(v, f"skew_fit alpha_default_by_layer {k!r}", meta_path) for k, v in
                    _mapping(entry.get("alpha_default_by_layer"), "skew_fit alpha_default_by_layer", meta_path).items()}
        if "attention" in defaults:
            pass
        elif "alpha_default" in entry:
            defaults["attention"] = _alpha(entry["alpha_default"], "skew_fit alpha_default", meta_path)
        elif (tp_dir / "skew.csv").is_file():
            shots = read_bundle_table(tp_dir, "skew.csv")  # (blank alphas: counted, set aside)
            gap, excess = shots["t_max_us"] - shots["t_mean_us"], shots["t_skew_us"] - shots["t_mean_us"]
            defaults["attention"] = float((gap * excess).sum() / (gap**2).sum()) if (gap**2).sum() > 0 else 0.0
        alphas, rows = {}, {}
        for i, r in enumerate(table.itertuples(index=False)):
            key = (str(r.layer), float(r.pc), str(r.n_label), str(r.skew_rate_label), str(r.kv_big_label),
                   str(r.kp_label))
            alphas[key] = float(r.alpha)
            rows[key] = f"row {i + 1}" if source == str(path) else "alpha_by_bucket entry " + "|".join(
                [key[0], f"pc={r.pc:g}", *key[2:]])
        return cls(alphas, axes, defaults, source, rows)

    def refuse_beyond(self, largest: dict[str, float], horizon: float) -> None:
        """``refuse_far_alpha`` for each alpha (named by its row) and each kernel's default. A negative corrected time
        is not refused but floored at run time, as LLMServingSim does (the bundled RTX 4090 fit's -2.59 at pc 32,
        n<=2 reaches one: ``LLMServingSimCompute._skewed``)."""
        for key, alpha in self.alphas.items():
            where = (self.rows or {}).get(key, "bucket " + "|".join(map(str, key)))
            refuse_far_alpha(f"{self.source}: {where}", "alpha", alpha, key[0], largest, horizon)
        for kernel, alpha in self.defaults.items():
            refuse_far_alpha(self.source, f"the {kernel!r} kernel's default alpha", alpha, kernel, largest, horizon)

    def _label(self, axis: str, value: float) -> str | None:
        edges, labels = self.axes[axis]
        i = bisect_left(edges, value)  # first edge >= value: the (lo, edge] bucket
        return labels[i] if i < len(labels) else None

    @property
    def kernels(self) -> set[str]:
        """The kernels the fit corrects (by a bucket or a default of their own)."""
        return {k[0] for k in self.alphas} | set(self.defaults)

    def alpha(self, pc: float, n: int, skew_rate: float, kv_big: float, kp: float, kernel: str = "attention",
              lev: float = 0.0) -> float:
        """The step's alpha for ``kernel`` (``lev``, the newer fit's relative gap, is not this fit's coordinate)."""
        labels = (self._label("n", n), self._label("skew_rate", min(1.0, max(0.0, skew_rate))),
                  self._label("kv_big", kv_big), self._label("kp", kp))
        return self.alphas.get((kernel, float(pc), *labels), self.defaults.get(kernel, 0.0))

    def alphas_along(self, pc: float, n: int, skew_rates: np.ndarray, kv_bigs: np.ndarray, kp: float,
                     kernel: str = "attention", levs: np.ndarray | None = None) -> np.ndarray:
        """``alpha`` of each (skew rate, longest KV) pair, the rest fixed (the steps of a decode window)."""
        fixed = (kernel, float(pc), self._label("n", n))
        kp_label, default = self._label("kp", kp), self.defaults.get(kernel, 0.0)
        (rate_edges, rate_labels), (kv_edges, kv_labels) = self.axes["skew_rate"], self.axes["kv_big"]
        rate_at = np.searchsorted(np.asarray(rate_edges, dtype=float), np.clip(skew_rates, 0.0, 1.0), side="left")
        kv_at = np.searchsorted(np.asarray(kv_edges, dtype=float), kv_bigs, side="left")
        out = np.empty(len(skew_rates))
        pairs = rate_at * (len(kv_edges) + 1) + kv_at  # one code a (rate bucket, kv bucket); few along a window
        for code in np.unique(pairs).tolist():
            r, k = divmod(code, len(kv_edges) + 1)
            labels = (rate_labels[r] if r < len(rate_labels) else None, kv_labels[k] if k < len(kv_labels) else None)
            out[pairs == code] = self.alphas.get((*fixed, *labels, kp_label), default)
        return out


def skew_fit_enabled(meta: dict, where: Path) -> bool:
    """Whether a bundle's ``meta.yaml`` (at ``where``) says its skew fit is in force (``skew_fit.enabled``, as
    LLMServingSim reads it: absent means no fit)."""
    fit = meta.get("skew_fit")
    if fit is None:
        return False
    if not isinstance(fit, dict):
        raise ConfigError(f"{where}: skew_fit must be a mapping, got {fit!r:.40}")
    enabled = fit.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: skew_fit.enabled must be true or false, got {enabled!r:.40}")
    return enabled

