"""Model and GPU specs: KV size from the architecture, sources present, unknown names rejected."""

from __future__ import annotations

import pytest

from sim.errors import ConfigError
from sim.specs import DTYPE_BYTES, gpu_spec, known_gpus, known_models, model_spec


def test_llama3_8b_kv_bytes_per_token_fp16():
    # 2 (K and V) x 32 layers x 8 KV heads x 128 head dim x 2 bytes = 131,072 B (issue's figure)
    assert model_spec("llama-3-8b").kv_bytes_per_token(DTYPE_BYTES["fp16"]) == 131_072


def test_kv_bytes_scale_with_layers_heads_and_tp():
    m70 = model_spec("llama-3-70b")
    assert m70.kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2  # 327,680
    assert m70.kv_bytes_per_token(2, tensor_parallel_size=8) == 2 * 80 * 1 * 128 * 2  # 1 KV head per rank
    # more ranks than KV heads: heads are replicated, never below one per rank
    assert m70.kv_bytes_per_token(2, tensor_parallel_size=16) == 2 * 80 * 1 * 128 * 2
    assert model_spec("qwen2-7b").kv_bytes_per_token(2) == 2 * 28 * 4 * 128 * 2


def test_required_models_and_gpus_exist_with_sources():
    assert {"llama-3-8b", "llama-3.1-8b", "llama-3-70b", "qwen2-7b"} <= set(known_models())
    assert {"h100-sxm", "h200", "a100-80gb", "rtx5090"} <= set(known_gpus())
    for name in known_models():
        m = model_spec(name)
        assert m.source and m.hidden_size % m.num_attention_heads == 0 and m.num_attention_heads % m.num_kv_heads == 0
    for name in known_gpus():
        assert gpu_spec(name).source


def test_gpu_units_are_si():
    h100 = gpu_spec("h100-sxm")
    assert h100.peak_flops == pytest.approx(989.4e12)
    assert h100.memory_bandwidth == pytest.approx(3.35e12)
    assert h100.memory_bytes == 80 * 1024**3


def test_parameter_count_matches_architecture():
    # Llama: embeddings + lm_head + per layer (q,k,v,o + gate/up/down + 2 norms) + final norm.
    for name in ("llama-3-8b", "llama-3-70b", "llama-3.1-70b"):
        m = model_spec(name)
        kv = m.num_kv_heads * m.head_dim
        per_layer = m.hidden_size * (2 * m.hidden_size + 2 * kv) + 3 * m.hidden_size * m.intermediate_size + 2 * m.hidden_size
        total = 2 * m.vocab_size * m.hidden_size + m.num_layers * per_layer + m.hidden_size
        assert total == m.num_parameters


def test_unknown_names_list_known_ones():
    with pytest.raises(ConfigError, match="llama-3-8b"):
        model_spec("llama-9")
    with pytest.raises(ConfigError, match="h100-sxm"):
        gpu_spec("tpu")
