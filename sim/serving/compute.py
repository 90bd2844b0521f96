"""Compute models: the time of one forward step of a batch, behind one interface.

A step is described by ``StepShape`` aggregates so the per-step cost is O(1) whatever
the batch size. ``RooflineCompute`` derives times from model and GPU specs;
``ProfiledCompute`` interpolates Vidur's measured operator tables (``mlp.csv``, and
``attention.csv`` when given; the roofline otherwise); ``LLMServingSimCompute`` reads an
LLMServingSim profile bundle. Every model adds the tensor-parallel collectives of the step
(``sim.serving.collectives``) and runs the LM head and sampler on every scheduled sequence:
vLLM v1 computes logits at the last scheduled token of each request, partial prefill chunks
included, and discards the tokens those sample (``gpu_model_runner``: ``logits_indices =
query_start_loc[1:] - 1``).

Roofline per operator group (linear layers, attention, LM head), per layer:
  C = FLOPs / (peak × flops_efficiency),  M = bytes / (bandwidth × bandwidth_efficiency),
  t = sqrt(C² + M²).
The plain roofline takes max(C, M); near the ridge point real kernels overlap compute
and memory traffic only partly, and the 2-norm (equal to the max at either extreme, at
most √2 × it at the ridge) models that without another parameter.
FLOPs: linear layers 2 × parameters × tokens (once); attention 4 × heads × head_dim ×
(query, key) pairs, causal within a prefill chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from sim.config import Config
from sim.errors import ConfigError
from sim.serving.profile_files import read_bundle_table, read_profile_csv, read_profile_yaml
from sim.serving.collectives import (MeasuredCollectives, RingCollectives, TensorParallelComm, bundle_hardware_yaml,
                                     interpolate)
from sim.specs import DTYPE_BYTES, GPUSpec, LinkSpec, ModelSpec, gpu_spec, model_spec


@dataclass(slots=True)
class StepShape:
    """Aggregates of one step's batch."""

    prefill_seqs: int = 0  # sequences computing a prefill chunk this step
    prefill_tokens: int = 0  # new prompt tokens computed this step (all chunks)
    prefill_pairs: float = 0.0  # Σ over chunks of n × (context + (n + 1) / 2): causal (query, key) pairs
    prefill_kv_tokens: int = 0  # Σ over chunks of (context + n): KV tokens read by prefill attention
    prefill_chunk_sq: float = 0.0  # Σ over chunks of n²: Vidur's aggregate of several prefills
    decode_seqs: int = 0  # sequences decoding one token
    decode_kv_tokens: int = 0  # Σ over decodes of their KV length (keys each new token attends to)
    decode_kv_max: int = 0  # longest decode KV length
    decode_kv_min: int = 0  # shortest decode KV length

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    @property
    def logit_rows(self) -> int:
        """Sequences whose last token goes through the LM head and sampler: all scheduled ones."""
        return self.prefill_seqs + self.decode_seqs

    @property
    def prefill_context(self) -> int:
        """Σ over chunks of the KV history before the chunk."""
        return self.prefill_kv_tokens - self.prefill_tokens

    def add_prefill(self, chunk: int, context: int) -> None:
        self.prefill_seqs += 1
        self.prefill_tokens += chunk
        self.prefill_pairs += chunk * (context + (chunk + 1) / 2)
        self.prefill_kv_tokens += context + chunk
        self.prefill_chunk_sq += chunk * chunk

    def add_decode(self, kv_len: int) -> None:
        self.decode_kv_max = max(self.decode_kv_max, kv_len)
        self.decode_kv_min = kv_len if self.decode_seqs == 0 else min(self.decode_kv_min, kv_len)
        self.decode_seqs += 1
        self.decode_kv_tokens += kv_len

    @classmethod
    def decode_batch(cls, kv_lens: np.ndarray) -> "StepShape":
        """A decode-only step of sequences with these KV lengths."""
        kv_lens = np.asarray(kv_lens, dtype=np.int64)
        return cls(decode_seqs=len(kv_lens), decode_kv_tokens=int(kv_lens.sum()),
                   decode_kv_max=int(kv_lens.max()), decode_kv_min=int(kv_lens.min()))


class ComputeModel(Protocol):
    name: str

    def step_time(self, shape: StepShape) -> float: ...

    def decode_times(self, first: StepShape, steps: int) -> np.ndarray:
        """Times of ``steps`` consecutive decode-only steps, the first of shape ``first`` and each next one with
        one more KV token in every sequence; equals ``step_time`` of each such step."""
        ...


def _combine(compute_s: float, memory_s: float) -> float:
    return math.hypot(compute_s, memory_s)


def _window_kv(first: StepShape, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σ, max and min decode KV length of each step of a decode window."""
    k = np.arange(steps, dtype=np.int64)
    return first.decode_kv_tokens + first.decode_seqs * k, first.decode_kv_max + k, first.decode_kv_min + k


@dataclass
class RooflineCompute:
    """Step time from model shape and GPU peak FLOP/s and memory bandwidth."""

    model: ModelSpec
    gpu: GPUSpec
    dtype_bytes: int
    kv_dtype_bytes: int
    tensor_parallel_size: int = 1
    flops_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8
    comm: TensorParallelComm | None = None  # TP collectives of a step (None: no communication)
    name: str = "roofline"

    def __post_init__(self) -> None:
        m, tp = self.model, self.tensor_parallel_size
        if not 0 < self.flops_efficiency <= 1 or not 0 < self.bandwidth_efficiency <= 1:
            raise ConfigError("compute.flops_efficiency and compute.bandwidth_efficiency must be in (0, 1]")
        kv_dim = m.num_kv_heads * m.head_dim
        q_dim = m.num_attention_heads * m.head_dim  # equals hidden_size except in models like Qwen3-32B
        # q, k, v, o projections and the gated MLP (gate, up, down) of one layer
        self.layer_params = m.hidden_size * (2 * q_dim + 2 * kv_dim) + 3 * m.hidden_size * m.intermediate_size
        self.peak = self.gpu.peak_flops * self.flops_efficiency
        self.bandwidth = self.gpu.memory_bandwidth * self.bandwidth_efficiency
        self.attn_flops_per_pair = 4 * m.num_attention_heads * m.head_dim / tp
        self.kv_bytes_per_token_layer = m.kv_bytes_per_token(self.kv_dtype_bytes, tp) // m.num_layers
        self.layer_weight_bytes = self.layer_params * self.dtype_bytes / tp
        self.act_bytes_per_token = 2 * (m.hidden_size + m.intermediate_size) * self.dtype_bytes

    def linear_layer_time(self, tokens: int) -> float:
        """One layer's projections and MLP for ``tokens`` tokens."""
        flops = 2 * self.layer_params * tokens / self.tensor_parallel_size
        traffic = self.layer_weight_bytes + tokens * self.act_bytes_per_token / self.tensor_parallel_size
        return _combine(flops / self.peak, traffic / self.bandwidth)

    def attention_layer_time(self, shape: StepShape) -> float:
        pairs = shape.prefill_pairs + shape.decode_kv_tokens
        if pairs == 0:
            return 0.0
        flops = self.attn_flops_per_pair * pairs
        kv_bytes = self.kv_bytes_per_token_layer * (shape.prefill_kv_tokens + shape.decode_kv_tokens + shape.decode_seqs)
        return _combine(flops / self.peak, kv_bytes / self.bandwidth)

    def lm_head_time(self, seqs: int) -> float:
        if seqs == 0:
            return 0.0
        m, tp = self.model, self.tensor_parallel_size
        flops = 2 * m.vocab_size * m.hidden_size * seqs / tp
        traffic = m.vocab_size * m.hidden_size * self.dtype_bytes / tp
        return _combine(flops / self.peak, traffic / self.bandwidth)

    def comm_time(self, tokens: int, logit_rows: int) -> float:
        return 0.0 if self.comm is None else self.comm.step_time(tokens, logit_rows)

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        per_layer = self.linear_layer_time(tokens) + self.attention_layer_time(shape)
        rows = shape.logit_rows
        return self.model.num_layers * per_layer + self.lm_head_time(rows) + self.comm_time(tokens, rows)

    def decode_attention_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        """``attention_layer_time`` of decode-only steps, vectorised over steps."""
        flops = self.attn_flops_per_pair * kv_tokens
        kv_bytes = self.kv_bytes_per_token_layer * (kv_tokens + seqs)
        return np.hypot(flops / self.peak, kv_bytes / self.bandwidth)

    def decode_times(self, first: StepShape, steps: int) -> np.ndarray:
        seqs = first.decode_seqs
        kv_tokens, _, _ = _window_kv(first, steps)
        layers = self.model.num_layers
        once = self.lm_head_time(seqs) + self.comm_time(seqs, seqs)
        return layers * (self.linear_layer_time(seqs) + self.decode_attention_times(seqs, kv_tokens)) + once


class _GridNode:
    """A ragged grid over several axes: each value of the first axis holds a sub-grid of the rest.

    Lookup brackets the first axis between its two neighbouring values (linear blend) and
    recurses; rows that exist only for some values of an axis are handled naturally.
    """

    def __init__(self, frame: pd.DataFrame, axes: list[str], value: str):
        self.axis = axes[0]
        self.keys = np.sort(frame[self.axis].unique()).astype(float)
        if len(axes) == 1:
            ordered = frame.groupby(self.axis)[value].mean()
            self.leaf = ordered.reindex(self.keys).to_numpy(float)
            self.children = None
        else:
            self.leaf = None
            self.children = [_GridNode(frame[frame[self.axis] == k], axes[1:], value) for k in self.keys]

    def lookup(self, point: tuple[float, ...]) -> float:
        x = point[0]
        if self.children is None:
            return interpolate(self.keys, self.leaf, x)
        keys = self.keys
        if len(keys) == 1:
            return self.children[0].lookup(point[1:])
        i = int(np.clip(np.searchsorted(keys, x, side="right") - 1, 0, len(keys) - 2))
        lo, hi = keys[i], keys[i + 1]
        w = (x - lo) / (hi - lo)  # > 1 above the grid: linear extrapolation from the top two
        if w <= 0:
            return self.children[i].lookup(point[1:])
        a, b = self.children[i].lookup(point[1:]), self.children[i + 1].lookup(point[1:])
        return a + w * (b - a)


# ---------------------------------------------------------------------------------------------- Vidur


def _vidur_op_columns(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    return [c for c in frame.columns if c.startswith("time_stats.") and c.endswith(".median")
            and c.split(".")[1] not in exclude]


@dataclass
class VidurProfile:
    """Per-layer time of everything but the attention kernel, from Vidur's ``mlp.csv`` (ms, medians)."""

    tokens: np.ndarray
    seconds: np.ndarray
    source: str

    @classmethod
    def load(cls, path: Path, model: ModelSpec, tensor_parallel_size: int, rows: np.ndarray | None = None) -> "VidurProfile":
        frame = read_profile_csv(path, what="Vidur mlp.csv")
        if rows is not None:
            frame = frame.iloc[rows]
        needed = {"num_tokens", "num_tensor_parallel_workers"}
        if not needed <= set(frame.columns):
            raise ConfigError(f"{path}: not a Vidur mlp.csv (needs columns {sorted(needed)})")
        for column, expected in (("n_embd", model.hidden_size), ("n_kv_head", model.num_kv_heads),
                                 ("n_expanded_embd", model.intermediate_size)):
            if column in frame.columns and not (frame[column] == expected).all():
                raise ConfigError(f"{path}: profiled {column}={frame[column].iloc[0]} does not match model {model.name} ({expected})")
        frame = frame[frame["num_tensor_parallel_workers"] == tensor_parallel_size]
        if frame.empty:
            raise ConfigError(f"{path}: no rows for tensor parallel size {tensor_parallel_size}")
        ops = _vidur_op_columns(frame, exclude=("emb",))
        frame = frame.assign(total_ms=frame[ops].sum(axis=1)).groupby("num_tokens", as_index=False)["total_ms"].mean()
        return cls(frame["num_tokens"].to_numpy(float), frame["total_ms"].to_numpy(float) / 1e3, str(path))

    def layer_time(self, tokens: float) -> float:
        """Interpolated linearly between profiled token counts; linear extrapolation beyond the largest."""
        return interpolate(self.tokens, self.seconds, tokens)


@dataclass
class VidurAttention:
    """One layer's attention from Vidur's ``attention.csv`` (ms, medians of every ``time_stats`` operator in a row).

    Prefill rows (batch 1) over (prefill_chunk_size, kv_cache_size); decode rows over (batch_size,
    kv_cache_size). Several prefills in a step are one lookup at Vidur's aggregate: KV history
    Σ kv, chunk sqrt(Σ chunk²) (its ``_get_attention_prefill_execution_time``); decodes at their mean KV history.
    """

    prefill: _GridNode | None
    decode: _GridNode | None
    source: str

    @classmethod
    def load(cls, path: Path, model: ModelSpec, tensor_parallel_size: int, block_size: int) -> "VidurAttention":
        frame = read_profile_csv(path, what="Vidur attention.csv")
        needed = {"num_tensor_parallel_workers", "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill"}
        if not needed <= set(frame.columns):
            raise ConfigError(f"{path}: not a Vidur attention.csv (needs columns {sorted(needed)})")
        for column, expected in (("n_embd", model.hidden_size), ("n_q_head", model.num_attention_heads),
                                 ("n_kv_head", model.num_kv_heads)):
            if column in frame.columns and not (frame[column] == expected).all():
                raise ConfigError(f"{path}: profiled {column}={frame[column].iloc[0]} does not match model {model.name} ({expected})")
        frame = frame[frame["num_tensor_parallel_workers"] == tensor_parallel_size]
        if frame.empty:
            raise ConfigError(f"{path}: no rows for tensor parallel size {tensor_parallel_size}")
        if "block_size" in frame.columns:  # the profiled block size nearest the served one
            sizes = frame["block_size"].unique()
            frame = frame[frame["block_size"] == min(sizes, key=lambda b: (abs(b - block_size), b))]
        frame = frame.assign(time_s=frame[_vidur_op_columns(frame)].sum(axis=1, min_count=1) * 1e-3)
        prefill = frame[frame["is_prefill"].astype(str).str.lower() == "true"]
        decode = frame[frame["is_prefill"].astype(str).str.lower() != "true"]
        return cls(_GridNode(prefill, ["prefill_chunk_size", "kv_cache_size"], "time_s") if len(prefill) else None,
                   _GridNode(decode, ["batch_size", "kv_cache_size"], "time_s") if len(decode) else None, str(path))

    def _missing(self, kind: str) -> ConfigError:
        return ConfigError(f"{self.source}: no {kind} rows, but the step has {kind} sequences")

    def layer_time(self, shape: StepShape) -> float:
        total = 0.0
        if shape.prefill_seqs:
            if self.prefill is None:
                raise self._missing("prefill")
            total += self.prefill.lookup((math.sqrt(shape.prefill_chunk_sq), shape.prefill_context))
        if shape.decode_seqs:
            total += self.decode_time(shape.decode_seqs, shape.decode_kv_tokens / shape.decode_seqs)
        return total

    def decode_time(self, seqs: int, kv_mean: float) -> float:
        """``kv_mean``: keys each new token attends to (its own included); Vidur's axis is the cached history."""
        if self.decode is None:
            raise self._missing("decode")
        return self.decode.lookup((seqs, kv_mean - 1))


@dataclass
class ProfiledCompute:
    """Vidur's measured per-layer operator times (``mlp.csv``; ``attention.csv`` when given, else the roofline's
    attention); the roofline's LM head."""

    profile: VidurProfile
    roofline: RooflineCompute
    attention: VidurAttention | None = None
    name: str = "profiled"

    def _attention_time(self, shape: StepShape) -> float:
        return self.roofline.attention_layer_time(shape) if self.attention is None else self.attention.layer_time(shape)

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        r, rows = self.roofline, shape.logit_rows
        per_layer = self.profile.layer_time(tokens) + self._attention_time(shape)
        return r.model.num_layers * per_layer + r.lm_head_time(rows) + r.comm_time(tokens, rows)

    def decode_times(self, first: StepShape, steps: int) -> np.ndarray:
        r, seqs = self.roofline, first.decode_seqs
        kv_tokens, _, _ = _window_kv(first, steps)
        if self.attention is None:
            attention = r.decode_attention_times(seqs, kv_tokens)
        else:
            attention = np.array([self.attention.decode_time(seqs, kv / seqs) for kv in kv_tokens.tolist()])
        once = r.lm_head_time(seqs) + r.comm_time(seqs, seqs)
        return r.model.num_layers * (self.profile.layer_time(seqs) + attention) + once


# ---------------------------------------------------------------------------------------- LLMServingSim


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
    """

    alphas: dict[tuple[float, str, str, str, str], float]
    axes: dict[str, tuple[np.ndarray, tuple[str, ...]]]  # n, skew_rate, kv_big, kp: (upper edges, labels)
    default: float
    source: str

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
            table = read_profile_csv(path, what="LLMServingSim skew_fit.csv")
            if not set(columns) <= set(table.columns):
                raise ConfigError(f"{path}: not an LLMServingSim skew_fit.csv (needs columns {columns})")
            source = str(path)
        elif entry.get("alpha_by_bucket"):  # older bundles inline the table: "pc=0|n<=8|sr<=5%|kvB<=1k|kp=0": alpha
            keys = [str(k).split("|") for k in entry["alpha_by_bucket"]]
            table = pd.DataFrame([[float(k[0].removeprefix("pc=")), *k[1:], float(v)]
                                  for k, v in zip(keys, entry["alpha_by_bucket"].values())], columns=columns)
            source = str(tp_dir.parent / "meta.yaml")
        else:
            return None
        recorded = entry.get("bucket_axes") or fit.get("bucket_axes")
        axes = {}
        for axis, column in (("n", "n_label"), ("skew_rate", "skew_rate_label"), ("kv_big", "kv_big_label"), ("kp", "kp_label")):
            if recorded and f"{axis}_bins" in recorded:
                axes[axis] = (np.array(recorded[f"{axis}_bins"][1:], dtype=float), tuple(recorded[f"{axis}_labels"]))
            else:
                axes[axis] = _bucket_edges(table[column].astype(str).tolist())
        if "alpha_default" in entry:
            default = float(entry["alpha_default"])
        elif (tp_dir / "skew.csv").is_file():
            shots = read_bundle_table(tp_dir, "skew.csv").dropna(subset=["alpha"])
            gap, excess = shots["t_max_us"] - shots["t_mean_us"], shots["t_skew_us"] - shots["t_mean_us"]
            default = float((gap * excess).sum() / (gap**2).sum()) if (gap**2).sum() > 0 else 0.0
        else:
            default = 0.0
        alphas = {(float(r.pc), str(r.n_label), str(r.skew_rate_label), str(r.kv_big_label), str(r.kp_label)): float(r.alpha)
                  for r in table.itertuples(index=False)}
        return cls(alphas, axes, default, source)

    def _label(self, axis: str, value: float) -> str | None:
        edges, labels = self.axes[axis]
        i = int(np.searchsorted(edges, value, side="left"))  # first edge >= value: the (lo, edge] bucket
        return labels[i] if i < len(labels) else None

    def alpha(self, pc: float, n: int, skew_rate: float, kv_big: float, kp: float) -> float:
        labels = (self._label("n", n), self._label("skew_rate", min(1.0, max(0.0, skew_rate))),
                  self._label("kv_big", kv_big), self._label("kp", kp))
        return self.alphas.get((float(pc), *labels), self.default)


# LLMServingSim's dense operators: those run once per model; "layernorm" runs twice per decoder layer
# (before attention and before the MLP); every other operator in dense.csv runs once per layer.
_MODEL_OPS = ("embedding", "final_layernorm")
_REQUIRED_LAYER_OPS = ("layernorm", "qkv_proj", "o_proj", "down_proj")


@dataclass
class LLMServingSimCompute:
    """Step time from an LLMServingSim profile bundle (µs per layer, measured with vLLM).

    dense.csv: per-operator time over total tokens; attention.csv: the attention kernel over
    (prefill chunk tokens, query-weighted causal key length, decode count, decode KV
    length), corrected for unequal decode KV lengths by skew_fit.csv when enabled (``SkewFit``);
    per_sequence.csv: LM head and sampler over the step's sequences. A step is
    layers × (dense operators + attention) + embedding + final norm + LM head + sampler
    + the TP collectives.
    """

    dense: dict[str, tuple[np.ndarray, np.ndarray]]
    per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]
    layer_ops: tuple[str, ...]
    attention: _GridNode
    decode_attention: _GridNode
    num_layers: int
    source: str
    skew: SkewFit | None = None
    comm: TensorParallelComm | None = None
    name: str = "profiled"

    @classmethod
    def load(cls, directory: Path, model: ModelSpec, tensor_parallel_size: int,
             skew_correction: str = "auto") -> "LLMServingSimCompute":
        """``skew_correction``: ``auto`` applies the skew fit when ``meta.yaml::skew_fit.enabled`` says so (as
        LLMServingSim reads a bundle), ``always`` whenever the bundle has one, ``never`` not at all."""
        meta = read_profile_yaml(directory / "meta.yaml", "LLMServingSim bundle file")
        overrides = (meta.get("engine_effective") or {}).get("hf_overrides") or {}
        # The profiler may record per-shard shapes (e.g. half the heads); a shape must divide the model's.
        for key, expected in (("num_key_value_heads", model.num_kv_heads), ("intermediate_size", model.intermediate_size),
                              ("num_attention_heads", model.num_attention_heads), ("vocab_size", model.vocab_size)):
            value = overrides.get(key)
            if value is not None and (int(value) <= 0 or expected % int(value)):
                raise ConfigError(f"{directory}/meta.yaml: profiled {key}={value} does not fit {model.name} ({expected})")
        tp_dir = directory / f"tp{tensor_parallel_size}"
        if not tp_dir.is_dir():
            raise ConfigError(f"{directory}: no tp{tensor_parallel_size}/ folder (profiled TP degrees: {meta.get('tp_degrees')})")

        dense = bundle_curves(read_bundle_table(tp_dir, "dense.csv"), "tokens")
        per_seq = bundle_curves(read_bundle_table(tp_dir, "per_sequence.csv"), "sequences")
        missing = [op for op in (*_REQUIRED_LAYER_OPS, *_MODEL_OPS) if op not in dense] + \
                  [op for op in ("lm_head", "sampler") if op not in per_seq]
        if missing:
            raise ConfigError(f"{tp_dir}: bundle lacks operator(s) {', '.join(sorted(set(missing)))}")
        layer_ops = tuple(sorted(op for op in dense if op not in _MODEL_OPS)) + ("layernorm",)  # two norms a layer
        attn = bundle_attention_rows(read_bundle_table(tp_dir, "attention.csv"))
        axes = ["prefill_chunk", "prefill_key", "n_decode", "kv_decode"]
        decode_only = attn[attn["prefill_chunk"] == 0]
        skew = None
        if skew_correction == "always" or (skew_correction == "auto" and ((meta.get("skew_fit") or {}).get("enabled"))):
            skew = SkewFit.load(tp_dir, meta, tensor_parallel_size)
            if skew is None and skew_correction == "always":
                raise ConfigError(f"compute.skew_correction is 'always' but {tp_dir} has no skew_fit.csv")
        return cls(dense, per_seq, layer_ops, _GridNode(attn, axes, "time_s"),
                   _GridNode(decode_only, ["n_decode", "kv_decode"], "time_s"), model.num_layers, str(directory), skew)

    def _op(self, table: dict, name: str, x):
        xs, ys = table[name]
        return interpolate(xs, ys, x)

    def _dense_layer(self, tokens: int) -> float:
        """One layer's operators (per TP shard, as profiled)."""
        return float(sum(self._op(self.dense, op, tokens) for op in self.layer_ops))

    def _fixed(self, tokens: int, seqs: int) -> float:
        once = sum(self._op(self.dense, op, tokens) for op in _MODEL_OPS)
        if seqs:
            once += self._op(self.per_sequence, "lm_head", seqs) + self._op(self.per_sequence, "sampler", seqs)
        if self.comm is not None:
            once += self.comm.step_time(tokens, seqs)
        return float(once)

    def _skewed(self, t_mean: float, t_max: float, pc: float, n: int, kv_mean: float, kv_max: float,
                kv_min: float, kp: float) -> float:
        """``t_mean`` corrected towards ``t_max`` by the bucket's alpha (as LLMServingSim's
        ``_lookup_attention_with_skew``: none for one decode, equal lengths, or t_max <= t_mean)."""
        if self.skew is None or n <= 1 or kv_max == kv_mean or t_max <= t_mean:
            return t_mean
        skew_rate = (kv_mean - kv_min) / (kv_max - kv_min)
        return t_mean + self.skew.alpha(pc, n, skew_rate, kv_max, kp) * (t_max - t_mean)

    def attention_time(self, shape: StepShape) -> float:
        """One layer's attention kernel for the step."""
        chunk, n = shape.prefill_tokens, shape.decode_seqs
        key = shape.prefill_pairs / chunk if chunk else 0.0
        kv = shape.decode_kv_tokens / n if n else 0.0
        t_mean = self.attention.lookup((chunk, key, n, kv))
        if self.skew is None or n <= 1 or shape.decode_kv_max == kv:
            return t_mean
        t_max = self.attention.lookup((chunk, key, n, shape.decode_kv_max))
        return self._skewed(t_mean, t_max, chunk, n, kv, shape.decode_kv_max, shape.decode_kv_min, shape.prefill_context)

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        return self.num_layers * (self._dense_layer(tokens) + self.attention_time(shape)) + \
            self._fixed(tokens, shape.logit_rows)

    def decode_times(self, first: StepShape, steps: int) -> np.ndarray:
        seqs = first.decode_seqs
        fixed = self.num_layers * self._dense_layer(seqs) + self._fixed(seqs, seqs)
        node = self.decode_attention
        kv_tokens, kv_max, kv_min = _window_kv(first, steps)
        attention = []
        for total, longest, shortest in zip(kv_tokens.tolist(), kv_max.tolist(), kv_min.tolist()):
            mean = total / seqs
            t_mean = node.lookup((seqs, mean))
            if self.skew is not None and seqs > 1 and longest != mean:
                t_mean = self._skewed(t_mean, node.lookup((seqs, longest)), 0, seqs, mean, longest, shortest, 0)
            attention.append(t_mean)
        return fixed + self.num_layers * np.array(attention)


def bundle_curves(frame: pd.DataFrame, axis: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-operator (axis values, seconds) of a bundle's ``dense.csv`` or ``per_sequence.csv``."""
    out = {}
    for layer, group in frame.groupby("layer"):
        g = group.groupby(axis)["time_us"].mean()
        out[str(layer)] = (g.index.to_numpy(float), g.to_numpy(float) * 1e-6)
    return out


def bundle_attention_rows(attn: pd.DataFrame) -> pd.DataFrame:
    """A bundle's softmax-attention rows with a ``prefill_key`` axis and ``time_s``."""
    if "layer" in attn.columns:  # tables with several kernels: the softmax-attention one
        attn = attn[attn["layer"] == "attention"]
    if "decode_q_len" in attn.columns:  # speculative-verification rows aside
        attn = attn[attn["decode_q_len"] == 1]
    if "prefill_key" not in attn.columns:  # legacy tables: one prefill per shot (documented relabelling)
        attn = attn.assign(prefill_key=attn["kv_prefill"] + attn["prefill_chunk"] / 2)
    return attn.assign(time_s=attn["time_us"] * 1e-6)


# ------------------------------------------------------------------------------------------- selection


def gpu_link(config: Config) -> LinkSpec:
    """The GPU's own link, with ``hardware.gpu_link_*`` overrides applied."""
    link = gpu_spec(config.hardware.gpu).link
    hw = config.hardware
    return LinkSpec(
        kind=link.kind if hw.gpu_link_gbps is None else "override",
        bandwidth=link.bandwidth if hw.gpu_link_gbps is None else hw.gpu_link_gbps * 1e9,
        step_latency=link.step_latency if hw.gpu_link_latency_us is None else hw.gpu_link_latency_us * 1e-6,
        source=link.source if hw.gpu_link_gbps is None and hw.gpu_link_latency_us is None else "hardware.gpu_link_*",
    )


def collectives_model(config: Config, bundle: Path | None = None) -> RingCollectives | MeasuredCollectives:
    """Measured collectives (``compute.collectives``, else a bundle's ``hardware.yaml``) over the ring model of
    the GPU's link; the ring model alone when nothing was measured. A setting that could change nothing
    (any of them at TP 1, or a link override beside a measured table) is an error."""
    ring = RingCollectives.over(gpu_link(config))
    hw = config.hardware
    link_keys = [f"hardware.{k}" for k, v in (("gpu_link_gbps", hw.gpu_link_gbps),
                                              ("gpu_link_latency_us", hw.gpu_link_latency_us)) if v is not None]
    if config.serving.tensor_parallel_size == 1:
        inert = link_keys + (["compute.collectives"] if config.compute.collectives else [])
        if inert:
            raise ConfigError(f"{', '.join(inert)} set, but serving.tensor_parallel_size is 1: no GPU-to-GPU collectives")
    source = config.compute.collectives or (bundle_hardware_yaml(bundle) if bundle is not None else None)
    if source is None:
        return ring
    measured = MeasuredCollectives.load(source, ring)
    if link_keys:
        raise ConfigError(f"{', '.join(link_keys)} set, but collectives are measured ({measured.source}); "
                          "drop the override or the table")
    return measured


def compute_model(config: Config) -> RooflineCompute | ProfiledCompute | LLMServingSimCompute:
    """The compute model that ``compute.backend`` selects."""
    model, gpu = model_spec(config.model), gpu_spec(config.hardware.gpu)
    dtype = DTYPE_BYTES[config.serving.dtype]
    kv = config.serving.dtype if config.serving.kv_cache_dtype == "auto" else config.serving.kv_cache_dtype
    tp = config.serving.tensor_parallel_size
    bundle = None
    if config.compute.backend == "profiled":
        if not config.compute.profile:
            raise ConfigError("compute.backend is 'profiled' but compute.profile (a profile directory) is not set")
        directory = Path(config.compute.profile)
        if not (directory / "mlp.csv").is_file():
            if not (directory / "meta.yaml").is_file():
                raise ConfigError(f"compute.profile {directory}: neither a Vidur profile (mlp.csv) nor an LLMServingSim "
                                  "bundle (meta.yaml + tpN/*.csv) found there")
            bundle = directory
    comm = TensorParallelComm(collectives_model(config, bundle), tp, model.num_layers,
                              model.hidden_size * dtype, model.vocab_size * dtype)
    roofline = RooflineCompute(model, gpu, dtype, DTYPE_BYTES[kv], tp, config.compute.flops_efficiency,
                               config.compute.bandwidth_efficiency, comm=comm)
    if bundle is None and config.compute.skew_correction != "auto":
        raise ConfigError(f"compute.skew_correction is '{config.compute.skew_correction}', but it applies to "
                          "LLMServingSim bundles only (compute.backend 'profiled' with a bundle in compute.profile)")
    if config.compute.backend == "roofline":
        return roofline
    directory = Path(config.compute.profile)
    if bundle is None:
        attention = directory / "attention.csv"
        return ProfiledCompute(VidurProfile.load(directory / "mlp.csv", model, tp), roofline,
                               VidurAttention.load(attention, model, tp, config.serving.block_size)
                               if attention.is_file() else None)
    compute = LLMServingSimCompute.load(directory, model, tp, config.compute.skew_correction)
    compute.comm = comm
    return compute
