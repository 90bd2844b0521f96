"""The rotary embedding's cos/sin cache at the model's real rotary width
(``sim.serving.memory_profile.rope_cache_bytes``).

vLLM 0.33 builds one ``RotaryEmbedding`` per distinct key (model_executor/layers/rotary_embedding/__init__.py
``get_rope``: ``_ROPE_DICT``) whose ``cos_sin_cache`` is max positions × rotary_dim in the model dtype (base.py
``_compute_cos_sin_cache``: cos and sin of rotary_dim / 2 frequencies each), rotary_dim = int(head_size ×
partial_rotary_factor), the factor from the config's rope_parameters (transformers' ``standardize_rope_params`` copies
partial_rotary_factor there). Models that rotate part of each head: Qwen3-Next and Qwen3.5 (0.25 of 256), GLM-4.5/4.6
(0.5 of 128, glm4_moe.py ``setdefault("partial_rotary_factor", 0.5)``), MiniMax-M2 (rotary_dim 64 of 128, minimax_m2.py
``rotary_dim / head_dim``), Phi-2 (0.4 of 80). Every figure below is by hand from the published config.json."""

from __future__ import annotations

import dataclasses

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.memory_profile import memory_budget, rope_cache_bytes
from sim.specs import model_spec
from tests.glm_minimax_configs import GLM_45, GLM_45_AIR, MINIMAX_M2
from tests.linear_attention_configs import QWEN3_5_9B_TEXT, QWEN3_NEXT_80B
from tests.test_model_config import LLAMA_31_8B, PHI_2, refused, write_config
from tests.test_vision_towers import FIXTURE, PUBLISHED


@pytest.mark.parametrize("name, positions, rotary", [
    ("qwen3-next-80b-a3b", 262_144, 64),  # partial_rotary_factor 0.25 x head_dim 256
    ("glm-4.5", 131_072, 64),  # partial_rotary_factor 0.5 x head_dim 128
    ("glm-4.6", 202_752, 64),
    ("glm-4.5-air", 131_072, 64),
    ("minimax-m2", 196_608, 64),  # rotary_dim 64 of head_dim 128
    ("phi-2", 2048, 32),  # partial_rotary_factor 0.4 x head_dim 80
    ("llama-3.1-8b", 131_072, 128),  # full rotary: head_dim
    ("deepseek-v3", 163_840, 64),  # MLA: qk_rope_head_dim
])
def test_cache_bytes_by_hand(name, positions, rotary):
    assert rope_cache_bytes(model_spec(name), "bf16") == positions * rotary * 2


def test_qwen3_next_cache_is_a_quarter_of_the_full_width():
    # 262,144 x 64 x 2 B = 32 MiB, not 262,144 x 256 x 2 B = 128 MiB
    assert rope_cache_bytes(model_spec("qwen3-next-80b-a3b"), "bf16") == 33_554_432 == 32 * 1024**2


@pytest.mark.parametrize("config, rotary", [
    (QWEN3_NEXT_80B, 64),
    ({k: v for k, v in QWEN3_NEXT_80B.items() if k != "partial_rotary_factor"}, 64),  # Qwen3NextConfig's 0.25
    (QWEN3_5_9B_TEXT, 64),  # no key: Qwen3_5TextConfig's default 0.25
    (GLM_45, 64),
    ({k: v for k, v in GLM_45.items() if k != "partial_rotary_factor"}, 64),  # Glm4MoeConfig's and vLLM's 0.5
    (GLM_45_AIR, 64),
    (MINIMAX_M2, 64),  # rotary_dim 64: vLLM's factor 64 / 128
    # a factor given wins: minimax_m2.py fills one in from rotary_dim only where rope_parameters has none
    ({**MINIMAX_M2, "partial_rotary_factor": 1.0}, None),
    (PHI_2, 32),  # int(80 x 0.4)
    ({k: v for k, v in PHI_2.items() if k != "partial_rotary_factor"}, 40),  # PhiConfig's 0.5
    (LLAMA_31_8B, None),  # full rotary
    ({**LLAMA_31_8B, "partial_rotary_factor": 0.5}, 64),  # any model: get_rope reads it from rope_parameters
    ({**LLAMA_31_8B, "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.25}}, 32),  # transformers 5
    ({**LLAMA_31_8B, "rotary_pct": 0.5}, 64),  # vLLM patch_rope_parameters' other names
    ({**LLAMA_31_8B, "partial_rotary_factor": 0.3}, 38),  # int(128 x 0.3), truncated as vLLM does
], ids=["qwen3-next", "qwen3-next-default", "qwen3.5-default", "glm-4.5", "glm-default", "glm-air", "minimax-m2",
        "minimax-factor", "phi-2", "phi-default", "llama", "llama-partial", "rope-parameters", "rotary-pct",
        "truncated"])
def test_config_json_gives_the_rotary_width(config, rotary, tmp_path):
    assert model_spec(str(write_config(tmp_path, config))).rotary_dim == rotary


def test_a_multimodal_file_reads_its_text_config():
    # Qwen3.5-35B-A3B: text_config partial_rotary_factor 0.25 (and in its rope_parameters, with mrope_section
    # [11, 11, 10]: 32 = 64 / 2 frequencies). vLLM's MRotaryEmbedding caches max positions x positions_factor rows,
    # positions_factor 1 unless video pruning is on (qwen3_vl.py ``mrope_positions_factor``), which kvsim does not model
    spec = model_spec(str(FIXTURE))
    assert spec.rotary_dim == 64
    assert rope_cache_bytes(spec, "bf16") == 262_144 * 64 * 2 + 8192 * 36 * 2  # and the vision tower's own cache


@pytest.mark.parametrize("change, words", [
    ({"partial_rotary_factor": 0}, "'partial_rotary_factor'"),
    ({"partial_rotary_factor": 1.5}, "'partial_rotary_factor'"),
    ({"partial_rotary_factor": "0.5"}, "'partial_rotary_factor'"),
    ({"partial_rotary_factor": True}, "'partial_rotary_factor'"),
    ({"partial_rotary_factor": 0.01}, "'partial_rotary_factor'"),  # int(128 x 0.01) = 1: no pair to turn
    ({"rope_parameters": {"partial_rotary_factor": -1}}, "'rope_parameters.partial_rotary_factor'"),
], ids=["zero", "above-one", "string", "bool", "no-pair", "rope-parameters"])
def test_bad_factors_are_named(change, words, tmp_path, run_cli):
    assert words in refused(run_cli, str(write_config(tmp_path, {**LLAMA_31_8B, **change})))


@pytest.mark.parametrize("change, words", [
    ({"rotary_dim": 256}, "'rotary_dim'"),  # wider than head_dim 128
    ({"rotary_dim": 0}, "'rotary_dim'"),
    ({"rotary_dim": 63}, "'rotary_dim'"),  # rotary embeddings turn pairs of values
], ids=["wide", "zero", "odd"])
def test_bad_rotary_dims_are_named(change, words, tmp_path, run_cli):
    assert words in refused(run_cli, str(write_config(tmp_path, {**MINIMAX_M2, **change})))


@pytest.mark.parametrize("rotary", [0, 63, 130, True, 64.0])
def test_a_spec_rotary_dim_is_checked(rotary):
    with pytest.raises(ConfigError, match="rotary_dim"):
        dataclasses.replace(model_spec("glm-4.5"), rotary_dim=rotary)
    with pytest.raises(ConfigError, match="rotary_dim"):  # MLA rotates qk_rope_head_dim
        dataclasses.replace(model_spec("deepseek-v3"), rotary_dim=64)


def _budget(path: str, *sets: str):
    config = load_config(None, sets=[f"model={path}", "hardware.gpu=h200", *sets])
    return config, memory_budget(config)


@pytest.mark.parametrize("name, config, tp, positions, freed_width", [
    ("qwen3-next", QWEN3_NEXT_80B, 2, 262_144, 256 - 64),
    ("glm-4.5-air", GLM_45_AIR, 2, 131_072, 128 - 64),
    ("qwen3.5-35b-a3b", None, 1, 262_144, 256 - 64),
])
def test_kv_blocks_rise_by_the_freed_bytes(name, config, tp, positions, freed_width, tmp_path):
    """The same model rotating every value of each head (partial_rotary_factor 1.0) against its real width: the cache
    shrinks by positions x the width not rotated x 2 B, and the KV budget grows by exactly that (nothing else moves)."""
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes

    if config is None:  # the multimodal file's language model alone (tests/test_vision_towers.py)
        text = {**PUBLISHED["text_config"], "architectures": ["Qwen3_5MoeForCausalLM"]}
        full_text = {**text, "partial_rotary_factor": 1.0,
                     "rope_parameters": {**text["rope_parameters"], "partial_rotary_factor": 1.0}}
        real = str(write_config(tmp_path / "real", text))
        full = str(write_config(tmp_path / "full", full_text))
    else:
        real = str(write_config(tmp_path / "real", config))
        full = str(write_config(tmp_path / "full", {**config, "partial_rotary_factor": 1.0}))
    sets = [f"serving.tensor_parallel_size={tp}"]
    (real_config, real_budget), (full_config, full_budget) = _budget(real, *sets), _budget(full, *sets)
    freed = positions * freed_width * 2
    assert full_budget.weights - real_budget.weights == freed
    assert real_budget.kv_bytes == full_budget.kv_bytes + freed
    block = kv_block_bytes(real_config)
    assert block == kv_block_bytes(full_config)
    assert hbm_capacity_blocks(real_config) == (full_budget.kv_bytes + freed) // block
    assert hbm_capacity_blocks(full_config) == full_budget.kv_bytes // block
    assert hbm_capacity_blocks(real_config) - hbm_capacity_blocks(full_config) >= freed // block

