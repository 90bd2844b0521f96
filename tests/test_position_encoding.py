"""Models without a rotary embedding (``ModelSpec.position_encoding``): BLOOM's ALiBi and OPT's learned table.

vLLM 0.33 builds no ``RotaryEmbedding`` for either (model_executor/models/bloom.py passes per-head ``alibi_slopes`` to
``Attention``; opt.py adds ``OPTLearnedPositionalEmbedding``, an ``nn.Embedding`` of max_position_embeddings + 2 rows,
"replicated (not sharded)"), so no cos/sin cache is loaded with their weights, and OPT's table is whole on every TP
rank. A rope model's cache is max positions x head_dim x 2 B in bf16 (Llama-2-70B: 4,096 x 128 x 2 B = 1 MiB).
"""

from __future__ import annotations

import dataclasses

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.model_shape import ModelSpec
from sim.rope_caches import RopeCache
from sim.serving.memory_profile import memory_budget, rope_cache_bytes
from sim.specs import model_spec

LLAMA_2_70B = model_spec("llama-2-70b")
LLAMA_PARAMETERS = 68_976_648_192  # profiles/models.yaml (the Hub's safetensors total)


def _as(encoding: str, **change) -> ModelSpec:
    return dataclasses.replace(LLAMA_2_70B, name=f"llama-2-70b-{encoding}", position_encoding=encoding, **change)


def test_rope_is_the_default_and_its_cache_is_unchanged():
    assert LLAMA_2_70B.position_encoding == "rope"
    assert rope_cache_bytes(LLAMA_2_70B, "bf16") == 4096 * 128 * 2 == 1024**2


@pytest.mark.parametrize("encoding", ["alibi", "learned"])
def test_no_rotary_cache_without_a_rotary_embedding(encoding):
    assert rope_cache_bytes(_as(encoding), "bf16") == 0
    assert rope_cache_bytes(_as(encoding), "fp32") == 0


def test_a_learned_table_is_whole_on_every_rank():
    # OPT's nn.Embedding of (positions + 2) x hidden on every rank; the rest split over TP (bf16: 2 B a weight)
    learned, table = _as("learned"), (4096 + 2) * 8192
    assert learned.position_embedding_parameters == table
    for tp in (1, 2, 8):
        assert learned.weight_bytes_per_gpu(2, tp) == pytest.approx(((LLAMA_PARAMETERS - table) / tp + table) * 2,
                                                                   rel=1e-15)
    # ALiBi has no position parameters (the slopes are a list of floats handed to the attention backend)
    assert _as("alibi").position_embedding_parameters == 0 == LLAMA_2_70B.position_embedding_parameters
    assert _as("alibi").weight_bytes_per_gpu(2, 8) == LLAMA_PARAMETERS * 2 / 8 == LLAMA_2_70B.weight_bytes_per_gpu(2, 8)


def test_memory_budget_weights_drop_only_the_cache(monkeypatch):
    """At TP 8 on an A100-80GB the weights term is the weights per GPU plus the rotary cache: 1 MiB for the rope
    model, nothing for an ALiBi one (patched in under the same name, so every other term is the same)."""
    import sim.serving.memory_profile as profile

    config = load_config(None, sets=["model=llama-2-70b", "hardware.gpu=a100-80gb", "serving.tensor_parallel_size=8"])
    rope = memory_budget(config)
    assert rope.weights == LLAMA_PARAMETERS * 2 // 8 + 1024**2
    alibi = _as("alibi")
    monkeypatch.setattr(profile, "model_spec", lambda name: alibi if name == "llama-2-70b" else model_spec(name))
    budget = memory_budget(config)
    assert budget.weights == LLAMA_PARAMETERS * 2 // 8
    assert budget.kv_bytes - rope.kv_bytes == 1024**2


@pytest.mark.parametrize("change, words", [
    ({"position_encoding": "sinusoidal"}, "position_encoding must be rope, alibi or learned"),
    ({"position_encoding": True}, "position_encoding must be rope, alibi or learned"),
    ({"position_encoding": "alibi", "rotary_dim": 64}, "rotary_dim and rope_caches need position_encoding rope"),
    ({"position_encoding": "learned", "rope_caches": [RopeCache(4096, 128)]},
     "rotary_dim and rope_caches need position_encoding rope"),
])
def test_nonsense_is_refused_in_one_line(change, words):
    with pytest.raises(ConfigError, match=words) as refused:
        dataclasses.replace(LLAMA_2_70B, **change)
    assert "\n" not in str(refused.value) and "'llama-2-70b'" in str(refused.value)


def test_latent_attention_rotates():
    # DeepSeek's MLA caches a rotary part (qk_rope_head_dim) beside the latent: it is a rope model
    with pytest.raises(ConfigError, match="multi-head latent attention"):
        dataclasses.replace(model_spec("deepseek-v3"), position_encoding="alibi")
