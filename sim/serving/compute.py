"""Compute models: the time of one forward step of a batch, behind one interface.

A step is described by ``StepShape`` aggregates so the per-step cost is O(1) whatever
the batch size. ``RooflineCompute`` derives times from model and GPU specs;
``ProfiledCompute`` interpolates measured operator times (Vidur's ``mlp.csv``) and
uses the roofline for what the profile lacks (attention, when no attention table is
given).

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
from sim.serving.network import AnalyticNetwork, NetworkModel
from sim.specs import DTYPE_BYTES, GPUSpec, ModelSpec, gpu_spec, model_spec


@dataclass(slots=True)
class StepShape:
    """Aggregates of one step's batch."""

    prefill_tokens: int = 0  # new prompt tokens computed this step (all chunks)
    prefill_pairs: float = 0.0  # Σ over chunks of n × (context + (n + 1) / 2): causal (query, key) pairs
    prefill_kv_tokens: int = 0  # Σ over chunks of (context + n): KV tokens read by prefill attention
    decode_seqs: int = 0  # sequences decoding one token
    decode_kv_tokens: int = 0  # Σ over decodes of their KV length (keys each new token attends to)
    output_seqs: int = 0  # sequences that sample a token this step (LM head rows)

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    def add_prefill(self, chunk: int, context: int, samples: bool) -> None:
        self.prefill_tokens += chunk
        self.prefill_pairs += chunk * (context + (chunk + 1) / 2)
        self.prefill_kv_tokens += context + chunk
        self.output_seqs += samples

    def add_decode(self, kv_len: int) -> None:
        self.decode_seqs += 1
        self.decode_kv_tokens += kv_len
        self.output_seqs += 1


class ComputeModel(Protocol):
    name: str

    def step_time(self, shape: StepShape) -> float: ...

    def decode_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Times of consecutive decode-only steps of ``seqs`` sequences whose summed KV lengths are
        ``kv_tokens`` (one entry per step); equals ``step_time`` of each such step."""
        ...


def _combine(compute_s: float, memory_s: float) -> float:
    return math.hypot(compute_s, memory_s)


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
    allreduce: NetworkModel | None = None  # intra-node link for TP all-reduces
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

    def allreduce_time(self, tokens: int) -> float:
        """Two ring all-reduces of the hidden states per layer (after attention and after the MLP)."""
        tp = self.tensor_parallel_size
        if tp == 1 or self.allreduce is None or tokens == 0:
            return 0.0
        nbytes = tokens * self.model.hidden_size * self.dtype_bytes
        return 2 * self.allreduce.isolated_time(2 * (tp - 1) / tp * nbytes)

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        per_layer = self.linear_layer_time(tokens) + self.attention_layer_time(shape) + self.allreduce_time(tokens)
        return self.model.num_layers * per_layer + self.lm_head_time(shape.output_seqs)

    def decode_attention_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        """``attention_layer_time`` of decode-only steps, vectorised over steps."""
        flops = self.attn_flops_per_pair * kv_tokens
        kv_bytes = self.kv_bytes_per_token_layer * (kv_tokens + seqs)
        return np.hypot(flops / self.peak, kv_bytes / self.bandwidth)

    def decode_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        fixed = self.linear_layer_time(seqs) + self.allreduce_time(seqs)
        layers = self.model.num_layers
        return layers * (fixed + self.decode_attention_times(seqs, kv_tokens)) + self.lm_head_time(seqs)


@dataclass
class VidurProfile:
    """Per-layer time of everything but the attention kernel, from Vidur's ``mlp.csv`` (ms, medians)."""

    tokens: np.ndarray
    seconds: np.ndarray
    source: str

    @classmethod
    def load(cls, path: Path, model: ModelSpec, tensor_parallel_size: int, rows: np.ndarray | None = None) -> "VidurProfile":
        frame = pd.read_csv(path)
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
        ops = [c for c in frame.columns if c.startswith("time_stats.") and c.endswith(".median") and ".emb." not in c]
        frame = frame.assign(total_ms=frame[ops].sum(axis=1)).groupby("num_tokens", as_index=False)["total_ms"].mean()
        return cls(frame["num_tokens"].to_numpy(float), frame["total_ms"].to_numpy(float) / 1e3, str(path))

    def layer_time(self, tokens: float) -> float:
        """Interpolated linearly between profiled token counts; linear extrapolation beyond the largest."""
        x, y = self.tokens, self.seconds
        if tokens > x[-1]:
            return float(y[-1] + (tokens - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2]))
        return float(np.interp(tokens, x, y))


@dataclass
class ProfiledCompute:
    """Measured per-layer operator times for linear layers; roofline for attention and the LM head."""

    profile: VidurProfile
    roofline: RooflineCompute
    name: str = "profiled"

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        r = self.roofline
        per_layer = self.profile.layer_time(tokens) + r.attention_layer_time(shape) + r.allreduce_time(tokens)
        return r.model.num_layers * per_layer + r.lm_head_time(shape.output_seqs)

    def decode_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        r = self.roofline
        fixed = self.profile.layer_time(seqs) + r.allreduce_time(seqs)
        return r.model.num_layers * (fixed + r.decode_attention_times(seqs, kv_tokens)) + r.lm_head_time(seqs)


def _interp_extrapolate(x: np.ndarray, y: np.ndarray, value):
    """Linear interpolation over sorted ``x``; linear extrapolation from the top two samples above it."""
    if len(x) == 1:
        return y[0] + 0 * np.asarray(value, dtype=float)
    value = np.asarray(value, dtype=float)
    slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    return np.where(value > x[-1], y[-1] + (value - x[-1]) * slope, np.interp(value, x, y))


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
            return float(_interp_extrapolate(self.keys, self.leaf, x))
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


# LLMServingSim's dense operators: those run once per model; "layernorm" runs twice per decoder layer
# (before attention and before the MLP); every other operator in dense.csv runs once per layer.
_MODEL_OPS = ("embedding", "final_layernorm")
_REQUIRED_LAYER_OPS = ("layernorm", "qkv_proj", "o_proj", "down_proj")


@dataclass
class LLMServingSimCompute:
    """Step time from an LLMServingSim profile bundle (µs per layer, measured with vLLM).

    dense.csv: per-operator time over total tokens; attention.csv: the attention kernel over
    (prefill chunk tokens, query-weighted causal key length, decode count, decode KV
    length); per_sequence.csv: LM head and sampler over sequences. A step is
    layers × (dense operators + attention) + embedding + final norm + LM head + sampler.
    """

    dense: dict[str, tuple[np.ndarray, np.ndarray]]
    per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]
    layer_ops: tuple[str, ...]
    attention: _GridNode
    decode_attention: _GridNode
    num_layers: int
    source: str
    hidden_size: int = 0
    tensor_parallel_size: int = 1
    allreduce: NetworkModel | None = None  # bytes -> seconds of one all-reduce across the TP group
    dtype_bytes: int = 2
    name: str = "profiled"

    @staticmethod
    def measured_allreduce(directory: Path) -> NetworkModel | None:
        """All-reduce times measured by LLMServingSim's profiler (``hardware.yaml`` above the bundle), if any."""
        import yaml

        for folder in [directory, *list(directory.parents)[:4]]:
            path = folder / "hardware.yaml"
            if path.is_file():
                data = yaml.safe_load(path.read_text()) or {}
                samples = ((data.get("measured") or {}).get("interconnect") or {}).get("samples") or []
                rows = sorted((float(x["bytes"]), float(x["us"]) * 1e-6) for x in samples
                              if x.get("collective") == "all_reduce")
                if len(rows) >= 2:
                    from sim.serving.network import LookupNetwork

                    return LookupNetwork(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), str(path))
        return None

    @classmethod
    def load(cls, directory: Path, model: ModelSpec, tensor_parallel_size: int) -> "LLMServingSimCompute":
        import yaml

        meta = yaml.safe_load((directory / "meta.yaml").read_text()) or {}
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

        def read(name: str) -> pd.DataFrame:
            path = tp_dir / name
            if not path.is_file():
                raise ConfigError(f"{path}: missing from the LLMServingSim bundle")
            return pd.read_csv(path)

        def curves(frame: pd.DataFrame, axis: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            out = {}
            for layer, group in frame.groupby("layer"):
                g = group.groupby(axis)["time_us"].mean()
                out[str(layer)] = (g.index.to_numpy(float), g.to_numpy(float) * 1e-6)
            return out

        dense, per_seq = curves(read("dense.csv"), "tokens"), curves(read("per_sequence.csv"), "sequences")
        missing = [op for op in (*_REQUIRED_LAYER_OPS, *_MODEL_OPS) if op not in dense] + \
                  [op for op in ("lm_head", "sampler") if op not in per_seq]
        if missing:
            raise ConfigError(f"{tp_dir}: bundle lacks operator(s) {', '.join(sorted(set(missing)))}")
        layer_ops = tuple(sorted(op for op in dense if op not in _MODEL_OPS)) + ("layernorm",)  # two norms a layer
        attn = read("attention.csv")
        if "layer" in attn.columns:  # tables with several kernels: the softmax-attention one
            attn = attn[attn["layer"] == "attention"]
        if "decode_q_len" in attn.columns:  # speculative-verification rows aside
            attn = attn[attn["decode_q_len"] == 1]
        if "prefill_key" not in attn.columns:  # legacy tables: one prefill per shot (documented relabelling)
            attn = attn.assign(prefill_key=attn["kv_prefill"] + attn["prefill_chunk"] / 2)
        attn = attn.assign(time_s=attn["time_us"] * 1e-6)
        axes = ["prefill_chunk", "prefill_key", "n_decode", "kv_decode"]
        decode_only = attn[attn["prefill_chunk"] == 0]
        return cls(dense, per_seq, layer_ops, _GridNode(attn, axes, "time_s"),
                   _GridNode(decode_only, ["n_decode", "kv_decode"], "time_s"), model.num_layers, str(directory),
                   model.hidden_size, tensor_parallel_size, cls.measured_allreduce(directory))

    def _op(self, table: dict, name: str, x):
        xs, ys = table[name]
        return _interp_extrapolate(xs, ys, x)

    def _dense_layer(self, tokens: int) -> float:
        """One layer's operators (per TP shard, as profiled) plus its two all-reduces when TP > 1."""
        ops = float(sum(self._op(self.dense, op, tokens) for op in self.layer_ops))
        if self.tensor_parallel_size > 1 and self.allreduce is not None:
            ops += 2 * self.allreduce.isolated_time(tokens * self.hidden_size * self.dtype_bytes)
        return ops

    def _fixed(self, tokens: int, seqs: int) -> float:
        once = sum(self._op(self.dense, op, tokens) for op in _MODEL_OPS)
        if seqs:
            once += self._op(self.per_sequence, "lm_head", seqs) + self._op(self.per_sequence, "sampler", seqs)
        return float(once)

    def step_time(self, shape: StepShape) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        chunk = shape.prefill_tokens
        key = shape.prefill_pairs / chunk if chunk else 0.0
        kv = shape.decode_kv_tokens / shape.decode_seqs if shape.decode_seqs else 0.0
        attention = self.attention.lookup((chunk, key, shape.decode_seqs, kv))
        return self.num_layers * (self._dense_layer(tokens) + attention) + self._fixed(tokens, shape.output_seqs)

    def decode_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        fixed = self.num_layers * self._dense_layer(seqs) + self._fixed(seqs, seqs)
        node = self.decode_attention
        attention = np.array([node.lookup((seqs, kv / seqs)) for kv in np.asarray(kv_tokens).tolist()])
        return fixed + self.num_layers * attention


def compute_model(config: Config) -> ComputeModel:
    """The compute model that ``compute.backend`` selects."""
    model, gpu = model_spec(config.model), gpu_spec(config.hardware.gpu)
    dtype = DTYPE_BYTES[config.serving.dtype]
    kv = config.serving.dtype if config.serving.kv_cache_dtype == "auto" else config.serving.kv_cache_dtype
    roofline = RooflineCompute(
        model, gpu, dtype, DTYPE_BYTES[kv], config.serving.tensor_parallel_size,
        config.compute.flops_efficiency, config.compute.bandwidth_efficiency,
        allreduce=AnalyticNetwork(bandwidth=config.hardware.intra_node_gbps * 1e9, latency=5e-6),
    )
    if config.compute.backend == "roofline":
        return roofline
    if not config.compute.profile:
        raise ConfigError("compute.backend is 'profiled' but compute.profile (a profile directory) is not set")
    directory = Path(config.compute.profile)
    mlp = directory / "mlp.csv"
    if mlp.is_file():
        return ProfiledCompute(VidurProfile.load(mlp, model, config.serving.tensor_parallel_size), roofline)
    if (directory / "meta.yaml").is_file():
        bundle = LLMServingSimCompute.load(directory, model, config.serving.tensor_parallel_size)
        bundle.dtype_bytes = DTYPE_BYTES[config.serving.dtype]
        if bundle.allreduce is None:  # no measured collectives: the configured intra-node link
            bundle.allreduce = AnalyticNetwork(bandwidth=config.hardware.intra_node_gbps * 1e9, latency=5e-6)
        return bundle
    raise ConfigError(f"compute.profile {directory}: neither a Vidur profile (mlp.csv) nor an LLMServingSim bundle "
                      "(meta.yaml + tpN/*.csv) found there")
