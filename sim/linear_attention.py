"""Gated DeltaNet linear-attention layers (Qwen3-Next, Qwen3.5) beside full-attention ones: their shapes, weights,
per-sequence state and the config.json keys that give them.

A Gated DeltaNet layer (vLLM 0.33 ``model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py``
``QwenGatedDeltaNetAttention``) replaces the q/k/v/o projections and the KV cache of an attention layer with
in_proj_qkvz (hidden → 2 key_dim + 2 value_dim: q, k, v and the output gate z), in_proj_ba (hidden → 2 value heads:
the delta rule's beta and the decay's a), a depthwise causal conv1d over q, k and v (conv_dim = 2 key_dim + value_dim
channels, kernel taps, no bias), dt_bias and A_log (one each per value head), a gated RMSNorm over value_head_dim and
out_proj (value_dim → hidden), all but the norm split over TP. Its cache is a per-sequence state of constant size
(``MambaStateShapeCalculator.gated_delta_net_state_shape``, mamba_utils.py): the conv state, conv_dim × (kernel − 1)
values, and the recurrent state, value_heads × value_head_dim × key_head_dim, each divided over the TP ranks; in the
model dtype, the recurrent one in ``state_dtype`` where the config says so (Qwen3.5's mamba_ssm_dtype "float32":
vLLM model_executor/models/config.py ``Qwen3_5ForConditionalGenerationConfig.verify_and_update_config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.errors import ConfigError, quote

# layer_types of a Gated DeltaNet family (transformers' names; vLLM Qwen3NextDecoderLayer builds either)
LINEAR_KINDS = ("linear_attention", "full_attention")
# transformers' Qwen3NextConfig: full_attention_interval 4 when layer_types is absent (configuration_qwen3_next.py:
# layer i is "linear_attention" if (i + 1) % interval else "full_attention")
FULL_ATTENTION_INTERVAL = 4
STATE_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # mamba_ssm_dtype → kvsim's dtype names
STATE_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# FLA's chunked gated delta rule (vLLM's prefill, fla/ops chunk_gated_delta_rule) runs 64-token chunks
GDN_CHUNK = 64


@dataclass(frozen=True, slots=True)
class GatedDeltaNet:
    """The Gated DeltaNet layers of a hybrid model: how many, and their shape."""

    layers: int
    num_key_heads: int  # linear_num_key_heads
    num_value_heads: int  # linear_num_value_heads
    key_head_dim: int  # linear_key_head_dim
    value_head_dim: int  # linear_value_head_dim
    conv_kernel: int  # linear_conv_kernel_dim
    state_dtype: str | None = None  # the recurrent state's dtype (None: the model dtype)

    def __post_init__(self) -> None:
        for name in ("layers", "num_key_heads", "num_value_heads", "key_head_dim", "value_head_dim", "conv_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"linear_attention.{name} must be a positive integer (got {value!r})")
        if self.num_value_heads % self.num_key_heads:
            raise ConfigError(f"linear_attention: num_value_heads {self.num_value_heads} must be a multiple of "
                              f"num_key_heads {self.num_key_heads}")
        if self.state_dtype is not None and self.state_dtype not in STATE_DTYPE_BYTES:
            raise ConfigError(f"linear_attention.state_dtype must be one of {', '.join(STATE_DTYPE_BYTES)} or absent "
                              f"(got {self.state_dtype!r})")

    @property
    def key_dim(self) -> int:
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv1d: q, k and v (2 key_dim + value_dim)."""
        return 2 * self.key_dim + self.value_dim

    def projection_parameters(self, hidden: int) -> int:
        """One layer's linear weights: in_proj_qkvz, in_proj_ba and out_proj (split over TP, FP8 in an FP8 file)."""
        return hidden * (2 * self.key_dim + 2 * self.value_dim) + hidden * 2 * self.num_value_heads \
            + self.value_dim * hidden

    def parameters(self, hidden: int) -> int:
        """One layer's parameters: the projections, the conv1d's weights, dt_bias, A_log and the gated norm."""
        return (self.projection_parameters(hidden) + self.conv_dim * self.conv_kernel + 2 * self.num_value_heads
                + self.value_head_dim)

    def conv_state_bytes(self, dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """One sequence's conv state in one layer on one TP rank: conv_dim / TP × (kernel − 1) values."""
        return self.conv_dim // tensor_parallel_size * (self.conv_kernel - 1) * dtype_bytes

    def recurrent_state_bytes(self, dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """One sequence's recurrent state in one layer on one TP rank: value_heads / TP × dv × dk values."""
        size = STATE_DTYPE_BYTES[self.state_dtype] if self.state_dtype is not None else dtype_bytes
        return self.num_value_heads // tensor_parallel_size * self.value_head_dim * self.key_head_dim * size

    def state_bytes(self, dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """One sequence's state in one layer on one TP rank (vLLM ``MambaSpec.page_size_bytes`` before padding)."""
        return (self.conv_state_bytes(dtype_bytes, tensor_parallel_size)
                + self.recurrent_state_bytes(dtype_bytes, tensor_parallel_size))

    def core_flops_per_token(self, prefill: bool) -> float:
        """The delta rule's FLOPs per token and layer (all heads, before TP), conv1d included. The recurrent form
        (decode) per value head: S·k, the rank-one update and S·q, three dk × dv products, 6 dk dv FLOPs; the chunked
        form (prefill, ``GDN_CHUNK``-token chunks) adds the intra-chunk products K Kᵀ, Q Kᵀ, A·K, A·V and their
        use, about 2 C (3 dk + 2 dv) FLOPs a token (FLA chunk_gated_delta_rule's WY representation)."""
        dk, dv = self.key_head_dim, self.value_head_dim
        per_head = 6 * dk * dv + (2 * GDN_CHUNK * (3 * dk + 2 * dv) if prefill else 0)
        return self.num_value_heads * per_head + 2 * self.conv_dim * self.conv_kernel


def gated_delta_net(keys: Any, layers: int, model_type: str | None) -> GatedDeltaNet:
    """The Gated DeltaNet layers a config.json gives (``keys``: ``sim.hf_config._Keys``): layer_types when given,
    else every full_attention_interval-th layer full (transformers Qwen3NextConfig); the linear_* keys with the config
    class's defaults (Qwen3NextConfig: 16 key heads, 32 value heads, 128 wide each, kernel 4); mamba_ssm_dtype, when
    given, the recurrent state's dtype."""
    config, path = keys.config, keys.path
    kinds = config.get("layer_types")
    if kinds is not None:
        if not isinstance(kinds, list) or len(kinds) != layers:
            raise ConfigError(f"model config {path}: key {keys.prefix + 'layer_types'!r} must be a list of one kind per "
                              f"layer ({layers}), got {quote(kinds)}")
        other = [kind for kind in kinds if kind not in LINEAR_KINDS]
        if other:
            raise ConfigError(f"model config {path}: layer_types {quote(other[0])} is not modelled for model_type "
                              f"{quote(model_type)} (only {' and '.join(LINEAR_KINDS)})")
        linear = sum(kind == "linear_attention" for kind in kinds)
    else:
        interval = keys.positive("full_attention_interval", FULL_ATTENTION_INTERVAL)
        linear = sum(1 for i in range(layers) if (i + 1) % interval)
    if not 0 < linear < layers:
        raise ConfigError(f"model config {path}: {linear} of {layers} layers are linear attention; kvsim models Gated "
                          "DeltaNet layers beside full-attention ones (at least one of each)")
    dtype = config.get("mamba_ssm_dtype")
    if dtype is not None and dtype not in STATE_DTYPES:
        raise ConfigError(f"model config {path}: key {keys.prefix + 'mamba_ssm_dtype'!r} must be one of "
                          f"{', '.join(STATE_DTYPES)}, got {quote(dtype)}")
    return GatedDeltaNet(linear, keys.positive("linear_num_key_heads", 16), keys.positive("linear_num_value_heads", 32),
                         keys.positive("linear_key_head_dim", 128), keys.positive("linear_value_head_dim", 128),
                         keys.positive("linear_conv_kernel_dim", 4), STATE_DTYPES.get(dtype))


def as_gated_delta_net(value: Any, model: str) -> GatedDeltaNet | None:
    """A ``ModelSpec.linear_attention`` as given (a mapping, from profiles/models.yaml) made a ``GatedDeltaNet``."""
    if value is None or isinstance(value, GatedDeltaNet):
        return value
    fields = set(GatedDeltaNet.__dataclass_fields__)
    if not isinstance(value, dict) or not set(value) <= fields:
        raise ConfigError(f"model {model!r}: linear_attention must be a mapping of {', '.join(sorted(fields))} "
                          f"(got {quote(value)})")
    return GatedDeltaNet(**value)
