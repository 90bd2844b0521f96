"""LLMServingSim's fitted correction of decode attention for batches of unequal KV lengths (a bundle's
``skew_fit.csv``, or its ``meta.yaml``'s inlined table), per attention kernel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import ConfigError
from sim.serving.profile_files import read_bundle_table, read_profile_csv


def _bucket_edges(labels: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Upper edges of the ``<prefix><=X`` / ``<prefix>=X`` bucket labels LLMServingSim's fitter writes
    (``n<=128``, ``sr<=15%``, ``kvB<=1k``, ``kp=0``; ``k`` = ×1024, ``%`` = /100), ascending. Overflow labels
    (``n>256``) get no edge: a value past the last edge falls in no fitted bucket."""
    edges = []
    for label in set(labels):
        for op in ("<=", "="):
            if op in label:
                raw = label.split(op, 1)[1]
                scale = 1024 if raw.endswith("k") else 0.01 if raw.endswith("%") else 1
                edges.append((float(raw.rstrip("k%")) * scale, label))
                break
    edges.sort()
    return np.array([e for e, _ in edges]), tuple(label for _, label in edges)


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
    axes: dict[str, tuple[np.ndarray, tuple[str, ...]]]  # n, skew_rate, kv_big, kp: (upper edges, labels)
    defaults: dict[str, float]  # per kernel, outside its fitted buckets
    source: str

    @property
    def default(self) -> float:
        """The attention kernel's alpha outside its fitted buckets."""
        return self.defaults.get("attention", 0.0)

    @classmethod
    def load(cls, tp_dir: Path, meta: dict, tensor_parallel_size: int) -> "SkewFit | None":
        """The bundle's fit (``tp<N>/skew_fit.csv``, or an ``alpha_by_bucket`` map inlined in ``meta.yaml``), or None.

        Bucket axes and ``alpha_default`` come from ``meta.yaml::skew_fit`` when it records them; else the
        axes from the table's own labels and the default as the fitter defines it (pooled weighted least
        squares over ``skew.csv``: Σ gap·excess / Σ gap², gap = t_max − t_mean, excess = t_skew − t_mean;
        0 without it, LLMServingSim's no-measurement fallback)."""
        fit = (meta or {}).get("skew_fit") or {}
        per_tp = fit.get("per_tp") or {}
        entry = per_tp.get(tensor_parallel_size) or per_tp.get(str(tensor_parallel_size)) or {}
        path = tp_dir / "skew_fit.csv"
        columns = ["pc", "n_label", "skew_rate_label", "kv_big_label", "kp_label", "alpha"]
        if path.is_file():
            table = read_profile_csv(path, numeric=("pc", "alpha"), what="LLMServingSim skew_fit.csv",
                                     keys=("layer", *columns[:-1]), signed=("alpha",))
            if not set(columns) <= set(table.columns):
                raise ConfigError(f"{path}: not an LLMServingSim skew_fit.csv (needs columns {columns})")
            if "layer" not in table.columns:  # one kernel's fit, from before the layer column
                table = table.assign(layer="attention")
            source = str(path)
        elif entry.get("alpha_by_bucket"):  # older bundles inline the table: "pc=0|n<=8|sr<=5%|kvB<=1k|kp=0": alpha
            source = str(tp_dir.parent / "meta.yaml")
            rows = []
            for key, value in entry["alpha_by_bucket"].items():
                parts = str(key).split("|")
                parts = parts if len(parts) == 6 else ["attention", *parts]  # "indexer|pc=0|...": a kernel's own
                try:
                    rows.append([parts[0], float(parts[1].removeprefix("pc=")), *parts[2:], float(value)])
                except (ValueError, TypeError):
                    raise ConfigError(f"{source}: skew_fit alpha_by_bucket entry {key!r}: {value!r} is not "
                                      "[kernel|]pc=N|n|skew rate|kv_big|kp: alpha") from None
                if len(rows[-1]) != 7:
                    raise ConfigError(f"{source}: skew_fit alpha_by_bucket key {key!r} is not [kernel|]pc=N|n|skew "
                                      "rate|kv_big|kp")
            table = pd.DataFrame(rows, columns=["layer", *columns])
        else:
            return None
        recorded = entry.get("bucket_axes") or fit.get("bucket_axes")
        axes = {}
        for axis, column in (("n", "n_label"), ("skew_rate", "skew_rate_label"), ("kv_big", "kv_big_label"), ("kp", "kp_label")):
            if recorded and f"{axis}_bins" in recorded:
                axes[axis] = (np.array(recorded[f"{axis}_bins"][1:], dtype=float), tuple(recorded[f"{axis}_labels"]))
            else:
                axes[axis] = _bucket_edges(table[column].astype(str).tolist())
        defaults = {str(k): float(v) for k, v in (entry.get("alpha_default_by_layer") or {}).items()}
        if "attention" in defaults:
            pass
        elif "alpha_default" in entry:
            defaults["attention"] = float(entry["alpha_default"])
        elif (tp_dir / "skew.csv").is_file():
            shots = read_bundle_table(tp_dir, "skew.csv").dropna(subset=["alpha"])
            gap, excess = shots["t_max_us"] - shots["t_mean_us"], shots["t_skew_us"] - shots["t_mean_us"]
            defaults["attention"] = float((gap * excess).sum() / (gap**2).sum()) if (gap**2).sum() > 0 else 0.0
        alphas = {(str(r.layer), float(r.pc), str(r.n_label), str(r.skew_rate_label), str(r.kv_big_label),
                   str(r.kp_label)): float(r.alpha) for r in table.itertuples(index=False)}
        return cls(alphas, axes, defaults, source)

    def _label(self, axis: str, value: float) -> str | None:
        edges, labels = self.axes[axis]
        i = int(np.searchsorted(edges, value, side="left"))  # first edge >= value: the (lo, edge] bucket
        return labels[i] if i < len(labels) else None

    def alpha(self, pc: float, n: int, skew_rate: float, kv_big: float, kp: float, kernel: str = "attention") -> float:
        labels = (self._label("n", n), self._label("skew_rate", min(1.0, max(0.0, skew_rate))),
                  self._label("kv_big", kv_big), self._label("kp", kp))
        return self.alphas.get((kernel, float(pc), *labels), self.defaults.get(kernel, 0.0))
