"""The KV cache's dtype from the serving settings and the model (``serving.dtype``, ``serving.kv_cache_dtype``)."""

from __future__ import annotations

from sim.model_shape import DTYPE_BYTES, ModelSpec


def kv_cache_dtype(model: ModelSpec, dtype: str, kv_cache_dtype: str) -> str:
    """The KV cache's dtype: ``serving.kv_cache_dtype``, or under "auto" the model dtype ``serving.dtype`` (vLLM's
    CacheConfig cache_dtype "auto": the model's dtype, never its weights' quantization; an FP8 checkpoint keeps a
    BF16 cache; DeepSeek sparse attention aside, below). ``serving.dtype`` is the model dtype: activations, the KV
    cache under "auto", and the weights (those a quantized checkpoint stores in FP8 aside:
    ``ModelSpec.linear_weight_bytes``)."""
    if kv_cache_dtype != "auto":
        return kv_cache_dtype
    if model.is_sparse_attention:
        # DeepSeek sparse attention: "auto" is vLLM's fp8_ds_mla (model_executor/models/config.py
        # DeepseekV32ForCausalLM.verify_and_update_config at vllm-project/vllm 0144dd5b: "we use a custom fp8
        # format as default (i.e. "auto")"). Later vLLM (1936cf38) keeps a bf16 cache under "auto" and converts
        # only fp8; the measured vLLM 0.28 run of DeepSeek-V3.2-Exp-16L64E (49,181 blocks of 64 tokens in 93.8 GB
        # with ~45 GB of FP8 weights) only fits the FP8 format. serving.kv_cache_dtype=bf16 gives the bf16 cache.
        return "fp8"
    return dtype


def kv_dtype_bytes(model: ModelSpec, dtype: str, kv_cache_dtype_name: str) -> int:
    """Bytes of one KV cache element (``kv_cache_dtype``)."""
    return DTYPE_BYTES[kv_cache_dtype(model, dtype, kv_cache_dtype_name)]
