"""The roofline's efficiencies and kernel floors from measured operators: NVIDIA AIConfigurator's tables of vLLM.

AIConfigurator (github.com/ai-dynamo/aiconfigurator) measures vLLM's own operators on a GPU, each replayed in a CUDA
graph: GEMMs (``gemm/vllm/<version>/gemm_perf.parquet``: m, n, k, ms) and the attention layer call, KV-cache write
included (``attention/vllm/<version>/{generation,context}_attention_perf.parquet``: batch, heads, KV heads, KV
length, ms); its collector writes the same columns as CSV (``*_perf.txt``). From them this builds a layer's measured
parts, as kvsim's roofline divides a layer, for a few real shapes (``SETUPS``: Llama-3.1-8B, Qwen3-32B, Llama-3.1-70B
at the TP degrees they are served at; decode batches and KV lengths, prefills): the linear part (the four GEMMs of
q/k/v, o, gate/up and down) and the attention call. Then it fits the constants the roofline has for them
(``FIT_KEYS``; the attention efficiency once per attention kernel among the GPUs, ``attention_waves.attention_kernel``)
by least squares on log(predicted / measured) of the linear part, the attention and their sum, and judges each GPU by
a fit to the others: what kvsim's defaults give a GPU it was not fitted to.

The roofline's parts are decomposed once per point into FLOP time and byte time at full efficiency (its own
counting, ``RooflineCompute``), so a fit's evaluations are array arithmetic: linear = GEMMs × gemm floor +
hypot(C / flops_efficiency, M / bandwidth_efficiency), attention = attention floor + hypot(C / attention_efficiency,
M / bandwidth_efficiency).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from sim.errors import InputError, quote
from sim.serving.attention_waves import KERNEL_ATTENTION_EFFICIENCY, attention_kernel
from sim.serving.compute import RooflineCompute
from sim.serving.kernel_floors import US, attention_projection_kernels, mlp_kernels
from sim.serving.profile_files import MAX_PROFILED_TIME_S
from sim.serving.step_shape import StepShape
from sim.specs import gpu_spec, model_spec

FIT_KEYS = ("flops_efficiency", "bandwidth_efficiency", "attention_efficiency", "gemm_floor_us", "attention_floor_us",
            "attention_tile_us")
ATTENTION_KEY = "attention_efficiency"  # fitted once per attention kernel
SHARED_KEYS = tuple(k for k in FIT_KEYS if k != ATTENTION_KEY)
BOUNDS = {"flops_efficiency": (1e-2, 1.0), "bandwidth_efficiency": (1e-2, 1.0), ATTENTION_KEY: (1e-2, 1.0),
          "gemm_floor_us": (0.0, 100.0), "attention_floor_us": (0.0, 500.0), "attention_tile_us": (0.0, 100.0)}
SOFT_L1_SCALE = 0.1
MIN_LATENCY_MS = 1e-6  # a nanosecond: no GPU kernel is faster
MAX_SHAPE = 2**40  # a table's batch, length, head or GEMM dimension beyond this is not a shape
# (model, TP): real shapes at the TP degrees they are served at, their heads per rank in AIConfigurator's grids
SETUPS = (("llama-3.1-8b", 1), ("qwen3-32b", 2), ("llama-3.1-70b", 4), ("llama-3.1-70b", 8))
DECODE_BATCHES = (1, 8, 32, 128, 256)
DECODE_KV = (512, 2048, 8192)
PREFILL_BATCHES = (1, 4)  # prompts prefilled together, each of PREFILL_TOKENS
PREFILL_TOKENS = (256, 512, 1024, 2048, 4096, 8192, 16384)
# AIConfigurator's systems/data folder names of the GPUs profiles/gpus.yaml has
GPU_FOLDERS = {"a100_sxm": "a100-80gb", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200",
               "l40s": "l40s", "rtx_pro_6000_server": "rtxpro6000"}
TEXT_COLUMNS = ("gemm_dtype", "kv_cache_dtype")  # the tables' other columns read are numbers
TABLES = {"gemm": ("gemm", "gemm_perf", ("gemm_dtype", "m", "n", "k", "latency")),
          "generation": ("attention", "generation_attention_perf",
                         ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype",
                          "step", "latency")),
          "context": ("attention", "context_attention_perf",
                      ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype",
                       "step", "latency"))}


@dataclass(frozen=True)
class LayerPoint:
    """One layer of one step as measured: its GEMMs and its attention call (seconds)."""

    gpu: str
    model: str
    tensor_parallel_size: int
    phase: str  # "decode" or "prefill": ``sequences`` of ``tokens`` KV tokens (decode) or prompt tokens each
    sequences: int
    tokens: int
    linear_s: float
    attention_s: float


def version_key(text: str) -> tuple:
    """A version folder's name as a sort key (0.24.0 after 0.14.0; a name that is not all numbers sorts by text,
    after them, and never fails to compare)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", text))


def table_files(folder: Path) -> dict[str, Path]:
    """The newest vLLM version's GEMM, generation and context attention tables under an AIConfigurator
    ``systems/data/<gpu>`` folder (parquet, or the collector's CSV ``*_perf.txt``)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (an AIConfigurator systems/data/<gpu> folder)")
    found: dict[str, Path] = {}
    for name, (kind, stem, _) in TABLES.items():
        candidates = [p for p in (folder / kind / "vllm").glob(f"*/{stem}.*") if p.suffix in (".parquet", ".txt")]
        if not candidates:
            raise InputError(f"{folder}: no vLLM {stem} table ({kind}/vllm/<version>/{stem}.parquet or .txt)")
        found[name] = max(candidates, key=lambda p: (version_key(p.parent.name), p.suffix == ".parquet"))
    return found


def _shown(value: object) -> str:
    """A table cell as an error message shows it: text quoted, a number as written."""
    return quote(value) if isinstance(value, str) else f"{float(value):g}"


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """An AIConfigurator table with ``columns`` (its ``latency`` in ms), refused naming the file and column."""
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the table: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} (AIConfigurator's vLLM table columns: "
                         f"{', '.join(columns)})")
    latency = pd.to_numeric(frame["latency"], errors="coerce")
    bad = np.flatnonzero(~((latency >= MIN_LATENCY_MS) & (latency <= MAX_PROFILED_TIME_S * 1e3)))
    if len(bad):
        raise InputError(f"{path}: row {bad[0] + 2}: latency {_shown(frame['latency'].iloc[bad[0]])} is not a "
                         f"number of milliseconds from {MIN_LATENCY_MS:g} to {MAX_PROFILED_TIME_S * 1e3:g}")
    for column in (c for c in columns if c not in TEXT_COLUMNS and c != "latency"):  # shapes: whole numbers
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(~((values >= 0) & (values % 1 == 0) & (values < MAX_SHAPE)))
        if len(bad):
            raise InputError(f"{path}: row {bad[0] + 2}: {column} {_shown(frame[column].iloc[bad[0]])} is not a whole "
                             "number")
        frame[column] = values.astype(np.int64)
    return frame


class GemmTable:
    """Measured bf16 GEMM times, interpolated log-linearly in n and k between the table's grid points."""

    def __init__(self, frame: pd.DataFrame):
        frame = frame[frame["gemm_dtype"] == "bfloat16"]
        self.ms, self.repeated = measured_ms(frame[["m", "n", "k"]], frame["latency"])
        self.ns = np.array(sorted({key[1] for key in self.ms}))
        self.ks = np.array(sorted({key[2] for key in self.ms}))

    @staticmethod
    def _bracket(value: int, grid: np.ndarray) -> list[tuple[int, float]]:
        i = int(np.searchsorted(grid, value))
        if i < len(grid) and grid[i] == value:
            return [(int(grid[i]), 1.0)]
        if i == 0 or i == len(grid):
            return []
        lo, hi = grid[i - 1], grid[i]
        w = (np.log(value) - np.log(lo)) / (np.log(hi) - np.log(lo))
        return [(int(lo), 1 - w), (int(hi), w)]

    def seconds(self, m: int, n: int, k: int) -> float | None:
        """An (m × k) · (k × n) GEMM's time; None outside the table."""
        log_ms = 0.0
        ns, ks = self._bracket(n, self.ns), self._bracket(k, self.ks)
        if not ns or not ks:
            return None
        for n_at, wn in ns:
            for k_at, wk in ks:
                ms = self.ms.get((m, n_at, k_at))
                if ms is None:
                    return None
                log_ms += wn * wk * np.log(ms)
        return float(np.exp(log_ms)) * 1e-3


def measured_ms(keys: pd.DataFrame, latency: pd.Series) -> tuple[dict[tuple[int, ...], float], int]:
    """Each shape's time (ms) and how many shapes were measured more than once: their rows' geometric mean (the
    A100's context table repeats shapes; a table is never read as its last row of a shape, silently)."""
    frame = keys.astype(np.int64).assign(log_ms=np.log(latency.to_numpy(dtype=float)))
    grouped = frame.groupby(list(keys.columns), sort=False)["log_ms"]
    means, counts = grouped.mean(), grouped.size()
    return ({tuple(int(v) for v in (key if isinstance(key, tuple) else (key,))): float(np.exp(v))
             for key, v in means.items()}, int((counts > 1).sum()))


def _attention_ms(frame: pd.DataFrame, context: bool) -> tuple[dict[tuple[int, ...], float], int]:
    """(batch, KV tokens or prompt tokens, heads, KV heads) -> ms of bf16-KV, head-dim-128, full-attention rows, and
    the shapes measured more than once."""
    keep = (frame["kv_cache_dtype"] == "bfloat16") & (frame["head_dim"] == 128)
    if "window_size" in frame.columns:
        keep &= frame["window_size"] == 0
    if context:
        keep &= frame["step"] == 0
    rows = frame[keep]
    length = rows["isl"] if context else rows["step"] + rows["isl"]  # a decode at step s reads s + 1 KV tokens
    keys = pd.DataFrame({"batch": rows["batch_size"], "length": length, "heads": rows["num_heads"],
                         "kv_heads": rows["num_key_value_heads"]})
    return measured_ms(keys, rows["latency"])


def read_layers(folder: Path, gpu: str, repeated: list[int] | None = None) -> tuple[list[LayerPoint], int]:
    """The layer points an AIConfigurator GPU folder measures (``SETUPS``' shapes), and how many it lacks
    (``repeated``: gets the count of shapes its tables measure more than once, each read as their mean)."""
    files = table_files(folder)
    gemms = GemmTable(read_table(files["gemm"], TABLES["gemm"][2]))
    decode, decode_repeats = _attention_ms(read_table(files["generation"], TABLES["generation"][2]), context=False)
    prefill, prefill_repeats = _attention_ms(read_table(files["context"], TABLES["context"][2]), context=True)
    if repeated is not None:
        repeated.append(gemms.repeated + decode_repeats + prefill_repeats)
    points, missing = [], 0
    for name, tp in SETUPS:
        m = model_spec(name)
        heads, kv_heads = m.num_attention_heads // tp, max(1, m.num_kv_heads // tp)
        shapes = [((heads + 2 * kv_heads) * m.head_dim, m.hidden_size), (m.hidden_size, heads * m.head_dim),
                  (2 * m.intermediate_size // tp, m.hidden_size), (m.hidden_size, m.intermediate_size // tp)]
        wanted = ([("decode", b, n, b, decode) for b in DECODE_BATCHES for n in DECODE_KV]
                  + [("prefill", b, n, b * n, prefill) for b in PREFILL_BATCHES for n in PREFILL_TOKENS])
        for phase, seqs, length, tokens, attention in wanted:
            linear = [gemms.seconds(tokens, n, k) for n, k in shapes]
            attention_ms = attention.get((seqs, length, heads, kv_heads))
            if None in linear or attention_ms is None:
                missing += 1
                continue
            points.append(LayerPoint(gpu, name, tp, phase, seqs, length, sum(linear), attention_ms * 1e-3))
    return points, missing


def layer_step(point: LayerPoint) -> tuple[StepShape, int]:
    """The step a layer point measures, and its tokens."""
    if point.phase == "decode":
        return StepShape.decode_batch(np.full(point.sequences, point.tokens - 1)), point.sequences
    shape = StepShape()
    for _ in range(point.sequences):
        shape.add_prefill(point.tokens, 0)
    return shape, point.sequences * point.tokens


class Decomposed:
    """The roofline's parts of each point at full efficiency: FLOP and byte seconds of the linear part and of the
    attention, the linear part's GEMM kernels, and the attention's thread blocks (``RooflineCompute.attention_terms``:
    tiles over the SMs, the longest tile's walk on one SM in seconds)."""

    def __init__(self, points: Sequence[LayerPoint]):
        # the attention kernel of the points' GPU (a group is one GPU's points)
        self.kernel = attention_kernel(points[0].gpu) if points else ""
        parts, kernels = [], []
        for p in points:
            model = model_spec(p.model)
            exact = RooflineCompute(model, gpu_spec(p.gpu), 2, 2, p.tensor_parallel_size,
                                    flops_efficiency=1.0, bandwidth_efficiency=1.0)
            half = RooflineCompute(model, gpu_spec(p.gpu), 2, 2, p.tensor_parallel_size,
                                   flops_efficiency=0.5, bandwidth_efficiency=1.0)
            shape, tokens = layer_step(p)
            full, halved = exact.linear_layer_time(tokens), half.linear_layer_time(tokens)
            # hypot(C, M) and hypot(2C, M): C² = (halved² − full²) / 3
            flops2 = max((halved ** 2 - full ** 2) / 3, 0.0)
            flops_s, tiles, walk, bytes_s = exact.attention_terms(shape)
            sms = exact.waves.sm_count if exact.waves is not None else 1
            parts.append((np.sqrt(flops2), np.sqrt(max(full ** 2 - flops2, 0.0)), flops_s, bytes_s, tiles / sms,
                          walk / (exact.attention_peak / sms)))
            kernels.append(attention_projection_kernels(model) + mlp_kernels(model, False))
        (self.linear_flops, self.linear_bytes, self.attention_flops, self.attention_bytes, self.waves,
         self.walk) = np.array(parts).T
        self.kernels = np.array(kernels, dtype=float)
        self.linear = np.array([p.linear_s for p in points])
        self.attention = np.array([p.attention_s for p in points])
        self.decode = np.array([p.phase == "decode" for p in points])

    def predict(self, values: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(linear, attention) seconds of each point with ``values`` of ``FIT_KEYS``."""
        v = values
        linear = self.kernels * v["gemm_floor_us"] * US + np.hypot(self.linear_flops / v["flops_efficiency"],
                                                                    self.linear_bytes / v["bandwidth_efficiency"])
        eta, tile = v["attention_efficiency"], v["attention_tile_us"] * US
        compute = np.where(self.walk > 0, np.maximum(self.attention_flops / eta + self.waves * tile,
                                                     self.walk / eta + tile), self.attention_flops / eta)
        attention = v["attention_floor_us"] * US + np.hypot(compute, self.attention_bytes / v["bandwidth_efficiency"])
        return linear, attention

    def log_errors(self, values: dict[str, float]) -> np.ndarray:
        linear, attention = self.predict(values)
        return np.concatenate([np.log(linear / self.linear), np.log(attention / self.attention),
                               np.log((linear + attention) / (self.linear + self.attention))])

    def median_errors(self, values: dict[str, float]) -> dict[str, float]:
        """Median |predicted / measured − 1| of the linear part, the attention, the layer, its decodes and prefills."""
        linear, attention = self.predict(values)
        layer = np.abs((linear + attention) / (self.linear + self.attention) - 1)
        return {"linear": float(np.median(np.abs(linear / self.linear - 1))),
                "attention": float(np.median(np.abs(attention / self.attention - 1))),
                "layer": float(np.median(layer)), "decode": _median(layer[self.decode]),
                "prefill": _median(layer[~self.decode])}


def _median(values: np.ndarray) -> float:
    """The median, NaN for none (a folder whose tables hold no decode, or no prefill, shapes)."""
    return float(np.median(values)) if len(values) else float("nan")


@dataclass(frozen=True)
class KernelFit:
    """Fitted constants: ``shared`` (``SHARED_KEYS``) over every GPU, the attention efficiency per attention kernel;
    a kernel none of the fitted GPUs runs keeps ``unfitted``'s efficiency (the values the fit started from)."""

    shared: dict[str, float]
    attention: dict[str, float]
    unfitted: Mapping[str, float | None]

    def values(self, kernel: str) -> dict[str, float]:
        """The ``FIT_KEYS`` values a GPU running ``kernel`` gets."""
        if kernel not in self.attention:
            return {**kernel_values(self.unfitted, kernel), **self.shared}
        return {**self.shared, ATTENTION_KEY: self.attention[kernel]}


def kernel_values(values: Mapping[str, float | None], kernel: str) -> dict[str, float]:
    """``values`` of ``FIT_KEYS`` (a config's: its attention efficiency None for the kernel's default) for a GPU
    running ``kernel``."""
    attention = values[ATTENTION_KEY]
    return {**{k: float(values[k]) for k in SHARED_KEYS},  # type: ignore[arg-type]
            ATTENTION_KEY: attention if attention is not None else KERNEL_ATTENTION_EFFICIENCY[kernel]}


def fit(groups: Sequence[Decomposed], start: Mapping[str, float | None]) -> KernelFit:
    """The constants that fit every group's points (soft-L1 least squares on log ratios), from ``start``: one value of
    each shared key, one attention efficiency per kernel the groups' GPUs run."""
    kernels = sorted({g.kernel for g in groups})

    def unpack(x: np.ndarray) -> KernelFit:
        return KernelFit(dict(zip(SHARED_KEYS, map(float, x))),
                         dict(zip(kernels, map(float, x[len(SHARED_KEYS):]))), start)

    def residuals(x: np.ndarray) -> np.ndarray:
        values = unpack(x)
        return np.concatenate([g.log_errors(values.values(g.kernel)) for g in groups])

    keys = [*SHARED_KEYS, *[ATTENTION_KEY] * len(kernels)]
    lower, upper = (np.array([BOUNDS[k][i] for k in keys]) for i in (0, 1))
    x0 = [*[start[k] for k in SHARED_KEYS], *[kernel_values(start, k)[ATTENTION_KEY] for k in kernels]]
    result = least_squares(residuals, np.clip(x0, lower, upper), bounds=(lower, upper), loss="soft_l1",
                           f_scale=SOFT_L1_SCALE)
    return unpack(result.x)
