"""LLMServingSim's newer skew fit, ``runtime-skew-calibration-v1``: the correction of decode attention for batches of
unequal KV lengths, picked from compiled cells instead of the unversioned fit's buckets (``sim.serving.skew_fit``).

Source: LLMServingSim ``profiler/core/skew_calibration.py`` (``lookup``, ``read_table``, ``_anchor_index``) and
``docs/docs/profiler/skew-alpha-fit.md``. A step's correction, per attention kernel, is
    t = m + alpha × (M − m),  m, M: the kernel at the mean and at the longest decode KV length,
with alpha picked by (decode count n, prefill tokens pc, relative gap lev = (M − m) / m):
- a kernel (``layer|q=1``: kvsim prices one query a decode) without a fit: 0, no correction;
- n outside the kernel's measured range, or a (pc, lev) cell without supported anchors: the kernel's pooled fallback;
- else the alpha of the anchor nearest n on a logarithmic scale (a tie: the smaller anchor). No interpolation.
``meta.yaml::skew_fit.per_tp.<tp>`` holds the schema, the axes (pc and lev bins and labels), the clipping range, the
support floor, per-kernel fallbacks and measured n ranges, and the cells' table (``bucket_table``, with its sha256);
the cells are checked once, as LLMServingSim's ``read_table`` does, and the cells' table and the attention.csv the fit
was made against must match the sha256 meta.yaml records for them (LLMServingSim refuses a stale fit too; its lookup
code's own fingerprint is not kvsim's to check).
"""

from __future__ import annotations

import hashlib
import math
import os
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.errors import ConfigError, quote
from sim.serving.profile_files import read_profile_csv

SCHEMA = "runtime-skew-calibration-v1"
CELL_COLUMNS = ("layer", "decode_q_len", "pc_label", "lev_label", "n_anchor", "alpha", "direct_rows", "pooled_rows")
DECODE_Q = 1  # kvsim's decodes compute one query token each: the q=1 slices


def _anchor_index(anchors: list[int], n: int) -> int:
    """The anchor nearest ``n`` on a log scale, the smaller on a tie (squared integer midpoints, exact)."""
    lo, hi = 0, len(anchors) - 1
    square = n * n
    while lo < hi:
        mid = (lo + hi) // 2
        if square <= anchors[mid] * anchors[mid + 1]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class RuntimeSkewFit:
    """A ``runtime-skew-calibration-v1`` fit of one TP degree (see the module)."""

    cells: dict[tuple[str, str, str], tuple[list[int], list[float]]]  # (kernel, pc label, lev label): anchors, alphas
    pc_axis: tuple[list[float], list[str]]  # upper bin edges, labels
    lev_axis: tuple[list[float], list[str]]
    defaults: dict[str, float]  # per kernel: the pooled fallback
    n_ranges: dict[str, tuple[int, int]]  # per kernel: the decode counts measured
    source: str

    @property
    def kernels(self) -> set[str]:
        return set(self.defaults)

    @property
    def default(self) -> float:
        """The attention kernel's fallback alpha."""
        return self.defaults.get("attention", 0.0)

    def refuse_beyond(self, largest: dict[str, float], horizon: float) -> None:
        """``refuse_far_alpha`` for each cell's alphas (within the fit's own alpha_clip, which may be as wide) and each
        kernel's fallback."""
        for (kernel, pc, lev), (anchors, alphas) in self.cells.items():
            for anchor, alpha in zip(anchors, alphas):
                refuse_far_alpha(f"{self.source}: cell {kernel}|{pc}|{lev} n_anchor {anchor}", "alpha", alpha, kernel,
                                 largest, horizon)
        for kernel, alpha in self.defaults.items():
            refuse_far_alpha(self.source, f"the {kernel!r} kernel's fallback alpha (meta.yaml alpha_default_by_kernel)",
                             alpha, kernel, largest, horizon)

    @staticmethod
    def _label(axis: tuple[list[float], list[str]], value: float) -> str:
        uppers, labels = axis
        i = bisect_left(uppers, value)  # the first bin whose upper edge is at least the value; past all: the last
        return labels[min(i, len(labels) - 1)]

    def _pick(self, kernel: str, n: int, pc: float, lev_label: str) -> float:
        bounds = self.n_ranges.get(kernel)
        if bounds is None:
            return 0.0  # no fit for this kernel: no correction (never borrowed from another)
        if not bounds[0] <= n <= bounds[1]:
            return self.defaults[kernel]
        cell = self.cells.get((kernel, self._label(self.pc_axis, pc), lev_label))
        if cell is None:
            return self.defaults[kernel]
        anchors, alphas = cell
        return alphas[_anchor_index(anchors, n)]

    def alpha(self, pc: float, n: int, skew_rate: float, kv_big: float, kp: float, kernel: str = "attention",
              lev: float = 0.0) -> float:
        """The step's alpha for ``kernel`` (``lev``: (M − m) / m; the unversioned fit's skew rate, longest KV and
        prefill history are not this fit's coordinates)."""
        return self._pick(kernel, n, pc, self._label(self.lev_axis, lev))

    def alphas_along(self, pc: float, n: int, skew_rates: np.ndarray, kv_bigs: np.ndarray, kp: float,
                     kernel: str = "attention", levs: np.ndarray | None = None) -> np.ndarray:
        """``alpha`` of each step of a decode window (n and pc fixed, ``levs`` varying)."""
        uppers, labels = self.lev_axis
        at = np.minimum(np.searchsorted(np.asarray(uppers, dtype=float), levs, side="left"), len(labels) - 1)
        out = np.empty(len(levs))
        for i in np.unique(at).tolist():
            out[at == i] = self._pick(kernel, n, pc, labels[i])
        return out

    @classmethod
    def load(cls, tp_dir: Path, entry: dict, meta_path: Path) -> "RuntimeSkewFit":
        """The fit of ``tp_dir``'s TP degree from its ``meta.yaml`` entry and cells' table, each part checked."""
        where = f"{meta_path}: skew_fit ({SCHEMA})"

        def need(key: str) -> object:
            if key not in entry:
                raise ConfigError(f"{where}: no {key}")
            return entry[key]

        axes = need("axes")
        if not isinstance(axes, dict):
            raise ConfigError(f"{where}: axes must be a mapping, got {quote(axes)}")
        pc_axis, lev_axis = (_axis(axes, name, where) for name in ("pc", "lev"))
        clip = need("alpha_clip")
        if (not isinstance(clip, list) or len(clip) != 2 or not all(_finite(v) for v in clip)
                or float(clip[0]) > float(clip[1])):
            raise ConfigError(f"{where}: alpha_clip must be [low, high], got {quote(clip)}")
        min_rows = need("min_rows")
        if type(min_rows) is not int or min_rows < 1:
            raise ConfigError(f"{where}: min_rows must be a positive integer, got {quote(min_rows)}")
        defaults_raw, ranges_raw = need("alpha_default_by_kernel"), need("n_range_by_kernel")
        if (not isinstance(defaults_raw, dict) or not isinstance(ranges_raw, dict)
                or set(defaults_raw) != set(ranges_raw)):
            raise ConfigError(f"{where}: alpha_default_by_kernel and n_range_by_kernel must be mappings of the same "
                              f"kernels, got {quote(_kernel_names(defaults_raw))} and {quote(_kernel_names(ranges_raw))}")
        defaults, n_ranges = {}, {}
        for name, value in defaults_raw.items():
            bounds = ranges_raw[name]
            if (not _finite(value) or not isinstance(bounds, list) or len(bounds) != 2
                    or any(type(b) is not int for b in bounds) or not 2 <= bounds[0] <= bounds[1]):
                raise ConfigError(f"{where}: kernel {quote(name)}: fallback {quote(value)} or measured n range "
                                  f"{quote(bounds)} is not a finite number and [low, high] integers from 2")
            layer, _, query = str(name).rpartition("|q=")
            if layer and query == str(DECODE_Q):
                defaults[layer], n_ranges[layer] = float(value), (bounds[0], bounds[1])
        table = _bucket_table(tp_dir, entry, where)
        reference = entry.get("reference")
        if reference is not None and not isinstance(reference, dict):  # (its checksums would go unchecked)
            raise ConfigError(f"{where}: reference must be a mapping (attention_sha256, ...), got {quote(reference)}")
        attention = (reference or {}).get("attention_sha256")
        for path, digest, key in ((table, entry.get("bucket_table_sha256"), "bucket_table_sha256"),
                                  (tp_dir / "attention.csv", attention, "reference.attention_sha256")):
            if digest is not None and not isinstance(digest, str):
                raise ConfigError(f"{where}: {key} must be a sha256 hex digest, got {quote(digest)}")
            if digest is not None and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise ConfigError(f"{path}: does not match meta.yaml's skew_fit {key} (a stale fit: rebuild it with "
                                  "LLMServingSim's `profiler refit-skew`)")
        frame = read_profile_csv(table, needed=CELL_COLUMNS, numeric=("decode_q_len", "n_anchor", "alpha",
                                 "direct_rows", "pooled_rows"), what=f"LLMServingSim skew_fit.csv ({SCHEMA})",
                                 keys=("decode_q_len", "n_anchor", "direct_rows", "pooled_rows"), signed=("alpha",),
                                 positive=("decode_q_len",))
        # every row is checked, the multi-query ones too, as LLMServingSim's read_table does (each query length's
        # cells on their own); kvsim keeps the one-query cells
        checked: dict[tuple[str, int, str, str], tuple[list[int], list[float]]] = {}
        low, high = float(clip[0]), float(clip[1])
        for row, r in enumerate(frame.itertuples(index=False), start=1):
            kernel = f"{r.layer}|q={int(r.decode_q_len)}"
            if kernel not in defaults_raw or r.pc_label not in pc_axis[1] or r.lev_label not in lev_axis[1]:
                raise ConfigError(f"{table}: row {row}: kernel {quote(kernel)} or cell ({quote(r.pc_label)}, "
                                  f"{quote(r.lev_label)}) not in meta.yaml's fallbacks and axes")
            anchor, alpha = int(r.n_anchor), float(r.alpha)
            lo_n, hi_n = ranges_raw[kernel]
            anchors, alphas = checked.setdefault((str(r.layer), int(r.decode_q_len), str(r.pc_label),
                                                  str(r.lev_label)), ([], []))
            if (not lo_n <= anchor <= hi_n or (anchors and anchor <= anchors[-1]) or not math.isfinite(alpha)
                    or not low <= alpha <= high or r.direct_rows < min_rows or r.pooled_rows < r.direct_rows):
                raise ConfigError(f"{table}: row {row}: anchor {anchor} / alpha {alpha} is not a supported cell "
                                  f"(n in {lo_n}..{hi_n} increasing within its cell, alpha in [{low}, {high}], "
                                  f"direct_rows >= min_rows {min_rows}, pooled_rows >= direct_rows)")
            anchors.append(anchor)
            alphas.append(alpha)
        # multi-query (speculative verification) slices: kvsim prices one query a decode
        cells = {(layer, pc, lev): cell for (layer, q, pc, lev), cell in checked.items() if q == DECODE_Q}
        return cls(cells, pc_axis, lev_axis, defaults, n_ranges, str(table))


def refuse_far_alpha(where: str, what: str, alpha: float, kernel: str, largest: dict[str, float],
                     horizon: float) -> None:
    """Refuse an alpha (``what``, at ``where``) whose correction can never be a latency: ``|alpha|`` times the
    largest time of ``kernel``'s attention grid (which bounds any t_max - t_mean it interpolates) past ``horizon`` s,
    the longest span kvsim simulates (an alpha of 1e300 gave a TTFT of 7.8e300 s at exit 0)."""
    if abs(alpha) * largest.get(kernel, 0.0) > horizon:
        raise ConfigError(f"{where}: {what} {alpha:g} is not a skew correction: times the {kernel!r} kernel's "
                          f"largest attention time ({largest[kernel]:.3g} s) it moves a step by more than "
                          f"{horizon:.3g} s (34 years)")


def _finite(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a YAML integer past a float's range (10**400): not a finite number either
        return False


def _bucket_table(tp_dir: Path, entry: dict, where: str) -> Path:
    """The cells' table ``bucket_table`` names, relative to the bundle (LLMServingSim's ``fit_bundle`` writes
    ``tp<N>/skew_fit.csv``, the default when absent): a path inside the bundle to a file. Before, any value was
    ``str()``-ed (``false``, ``0`` and ``''`` read the default table, an absolute path or ``..`` read a file outside the
    bundle, a name too long for the file system was an OSError traceback)."""
    name = entry.get("bucket_table", f"{tp_dir.name}/skew_fit.csv")
    if not isinstance(name, str) or not name.strip() or any(ord(c) < 32 for c in name):
        raise ConfigError(f"{where}: bucket_table must be the path of the cells' table inside the bundle, got "
                          f"{quote(name)}")
    normal = os.path.normpath(name)  # (lexical: a table linked from elsewhere is still the bundle's)
    if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
        raise ConfigError(f"{where}: bucket_table {quote(name)} is outside the bundle {tp_dir.parent} (its cells' "
                          "table is a path inside it, as LLMServingSim writes tp<N>/skew_fit.csv)")
    table = tp_dir.parent / normal
    try:
        found = table.is_file()
    except OSError as exc:  # (a name too long for the file system)
        raise ConfigError(f"{where}: bucket_table {quote(name)}: {exc.strerror or type(exc).__name__}") from None
    if not found:
        raise ConfigError(f"{where}: its cells' table {table} (bucket_table) is "
                          f"{'not a file' if table.exists() else 'missing'}")
    return table


def _kernel_names(value: object) -> object:
    """A kernels' mapping's names, for an error (the value itself when it is not a mapping)."""
    return sorted(map(str, value)) if isinstance(value, dict) else value


def _axis(axes: dict, name: str, where: str) -> tuple[list[float], list[str]]:
    """``<name>_bins`` and ``<name>_labels``: a label a bin, bins finite and increasing; kept as upper edges."""
    bins, labels = axes.get(f"{name}_bins"), axes.get(f"{name}_labels")
    if (not isinstance(bins, list) or not isinstance(labels, list) or not labels or len(bins) != len(labels) + 1
            or not all(_finite(b) for b in bins) or any(a >= b for a, b in zip(bins, bins[1:]))
            or len(set(map(str, labels))) != len(labels)
            or any(not isinstance(label, str) or not label or "|" in label for label in labels)):  # (as read_table)
        raise ConfigError(f"{where}: axes {name}_bins / {name}_labels must be increasing finite edges with one "
                          f"distinct label a bin, got {quote(bins)} and {quote(labels)}")
    return [float(b) for b in bins[1:]], [str(label) for label in labels]
