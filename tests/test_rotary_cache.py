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
from pathlib import Path

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



# Several caches (sim/rope_caches.py): vLLM 0.33's get_rope builds one per distinct _ROPE_DICT key, at the rows its
# rope type gives and in the dtype the model asks for. Every figure by hand from the published config.json.
GEMMA_3_27B_CACHES = 131_072 * 128 * 2 + 131_072 * 8 * 128 * 2  # sliding (no scaling) + full (linear factor 8)
GPT_OSS_CACHE = 4096 * 32 * 64 * 4  # yarn: original 4,096 x factor 32 rows of head_dim 64, fp32 (gpt_oss.py)
V32_FIXTURE = Path(__file__).parent / "fixtures" / "hf_configs" / "DeepSeek-V3.2-Exp-16L64E.json"
V32_CACHES = 2 * 4096 * 40 * 64 * 2  # deepseek_yarn 4,096 x 40 rows of qk_rope_head_dim 64: the MLA's and the indexer's


def _v32() -> dict:
    """DeepSeek-V3.2's config.json: DeepSeek-V3's with the indexer's keys (no indexer_rope_interleave)."""
    from tests.test_sparse_attention import published
    return {**published("DeepSeek-V3"), "model_type": "deepseek_v32", "architectures": ["DeepseekV32ForCausalLM"],
            "index_topk": 2048, "index_n_heads": 64, "index_head_dim": 128}


@pytest.mark.parametrize("name, nbytes, old", [
    # sliding layers: 131,072 x 128 x 2 B = 32 MiB (rope_local_base_freq 10,000); full attention: rope_scaling linear
    # factor 8, linear_scaling_rope.py's 131,072 x 8 = 1,048,576 rows x 128 x 2 B = 256 MiB (head_dim 128 on 27B)
    ("gemma-3-27b", GEMMA_3_27B_CACHES, 131_072 * 128 * 2),
    ("gemma-3-12b", 131_072 * 9 * 256 * 2, 131_072 * 256 * 2),  # 64 MiB + 512 MiB (head_dim 256)
    ("gemma-3-4b", 131_072 * 9 * 256 * 2, 131_072 * 256 * 2),
    ("gpt-oss-20b", GPT_OSS_CACHE, 131_072 * 64 * 2),  # 32 MiB, not 16 MiB
    ("gpt-oss-120b", GPT_OSS_CACHE, 131_072 * 64 * 2),
    ("gemma-2-9b", 8192 * 256 * 2, 8192 * 256 * 2),  # one rope_parameters for every layer (gemma2.py): one cache
    ("llama-3.1-8b", 131_072 * 128 * 2, 131_072 * 128 * 2),  # llama3: max positions rows
    ("deepseek-v3", 163_840 * 64 * 2, 163_840 * 64 * 2),  # yarn 4,096 x 40 = max_position_embeddings
])
def test_every_cache_at_its_rows_and_dtype(name, nbytes, old):
    spec = model_spec(name)
    tower = spec.vision_tower.rope_cache_values * 2 if spec.vision_tower is not None else 0
    assert rope_cache_bytes(spec, "bf16") - tower == nbytes
    assert rope_cache_bytes(dataclasses.replace(spec, rope_caches=None), "bf16") - tower == old


@pytest.mark.parametrize("config, named", [
    ("GEMMA_3_27B", "gemma-3-27b"), ("GEMMA_3_12B", "gemma-3-12b"), ("GEMMA_3_4B", "gemma-3-4b"),
    ("GPT_OSS_20B", "gpt-oss-20b"), ("GPT_OSS_120B", "gpt-oss-120b"), ("GEMMA_2_27B", "gemma-2-27b"),
])
def test_config_json_gives_the_named_entries_caches(config, named, tmp_path):
    import tests.hybrid_configs as published
    assert model_spec(str(write_config(tmp_path, getattr(published, config)))).rope_caches == \
        model_spec(named).rope_caches


def test_deepseek_v32_indexer_builds_its_own_cache(tmp_path):
    # deepseek_v2.py: indexer_rope_emb is_neox_style = not indexer_rope_interleave (absent: True), the MLA's False
    assert rope_cache_bytes(model_spec(str(write_config(tmp_path / "a", _v32()))), "bf16") == V32_CACHES == 40 * 2**20
    # GLM-5 style: indexer_rope_interleave true gives the MLA's key, so the one cache is shared
    shared = model_spec(str(write_config(tmp_path / "b", {**_v32(), "indexer_rope_interleave": True})))
    assert rope_cache_bytes(shared, "bf16") == V32_CACHES // 2 and shared.rope_caches is None


@pytest.mark.parametrize("config, nbytes", [
    # Gemma-3-1b: rope_theta 1e6 (full) and rope_local_base_freq 1e4 (sliding) differ: two 32,768 x 256 x 2 B caches
    ("GEMMA_3_1B", 2 * 32_768 * 256 * 2),
    # the same thetas: one key, one cache
    ({"rope_local_base_freq": 1000000}, 32_768 * 256 * 2),
    # transformers 5 nested rope_parameters
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, 5 * 32_768 * 256 * 2),
], ids=["gemma-3-1b", "same-theta", "nested"])
def test_gemma_3_text_caches(config, nbytes, tmp_path):
    from tests.hybrid_configs import GEMMA_3_1B
    config = GEMMA_3_1B if config == "GEMMA_3_1B" else {**GEMMA_3_1B, **config}
    assert rope_cache_bytes(model_spec(str(write_config(tmp_path, config))), "bf16") == nbytes


@pytest.mark.parametrize("scaling, rows", [
    # yarn_scaling_rope.py: original_max_position x factor rows, whatever max_position_embeddings (40,960 here)
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32_768}, 131_072),
    # phi3_long_rope_scaled_rope.py: the short (original) and long (max positions) tables together (Phi-3.5-MoE)
    ({"type": "longrope", "short_factor": [1.0] * 64, "long_factor": [1.0] * 64,
      "original_max_position_embeddings": 4096}, 4096 + 40_960),
    ({"rope_type": "dynamic", "factor": 2.0}, 40_960),  # dynamic_ntk_scaling_rope.py: max positions rows
    ({"type": "linear", "factor": 2.0}, 81_920),  # the legacy "type" key (patch_legacy_rope_type)
], ids=["yarn", "longrope", "dynamic", "linear"])
def test_scaled_cache_rows(scaling, rows, tmp_path):
    config = {**LLAMA_31_8B, "max_position_embeddings": 40_960, "rope_scaling": scaling}
    assert rope_cache_bytes(model_spec(str(write_config(tmp_path, config))), "bf16") == rows * 128 * 2


@pytest.mark.parametrize("caches", [[], [{"positions": 0, "width": 64}], [{"positions": 8, "width": 63}],
                                    [{"positions": 8, "width": 64, "fp32": 1}], [{"rows": 8}]])
def test_a_spec_rope_caches_are_checked(caches):
    with pytest.raises(ConfigError, match="rope_caches"):
        dataclasses.replace(model_spec("llama-3.1-8b"), rope_caches=caches)


def test_a_bad_scaling_factor_is_named(tmp_path, run_cli):
    config = {**LLAMA_31_8B, "rope_scaling": {"rope_type": "linear", "factor": "8"}}
    assert "'rope_scaling.factor'" in refused(run_cli, str(write_config(tmp_path, config)))


@pytest.mark.parametrize("key", ["rope_type", "type"])
def test_a_rope_type_vllm_does_not_build_is_named(tmp_path, run_cli, key):
    """vLLM's get_rope raises "Unknown RoPE scaling type" at startup for any other type (it was sized as the default)."""
    config = {**LLAMA_31_8B, "rope_scaling": {key: "wibble", "factor": 8.0}}
    message = refused(run_cli, str(write_config(tmp_path, config)))
    assert f"'rope_scaling.{key}'" in message and "'wibble'" in message


@pytest.mark.parametrize("name, changed", [
    ("gemma-3-27b", GEMMA_3_27B_CACHES - 131_072 * 128 * 2),  # + 256 MiB
    ("gemma-3-4b", 131_072 * 8 * 256 * 2),  # + 512 MiB
    ("gpt-oss-20b", GPT_OSS_CACHE - 131_072 * 64 * 2),  # + 16 MiB
    # the measured DeepSeek-V3.2-Exp-16L64E (tests/fixtures/hf_configs; one H200): the indexer's cache, + 20 MiB
    ("deepseek-v3.2", V32_CACHES // 2),
])
def test_kv_blocks_fall_by_the_added_bytes(name, changed, monkeypatch):
    """Each model on one H100 (the DeepSeek one on an H200) against the same spec with one cache in the model dtype (kvsim before): the KV budget
    shrinks by exactly the added bytes, and the blocks to (old budget - added) // block bytes."""
    import sim.cache.tiers
    import sim.serving.memory_profile
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes

    model, gpu = (str(V32_FIXTURE), "h200") if name == "deepseek-v3.2" else (name, "h100")
    config = load_config(None, sets=[f"model={model}", f"hardware.gpu={gpu}"])
    new_budget, new_blocks, block = memory_budget(config), hbm_capacity_blocks(config), kv_block_bytes(config)
    one = dataclasses.replace(model_spec(model), rope_caches=None)
    for module in (sim.serving.memory_profile, sim.cache.tiers):
        monkeypatch.setattr(module, "model_spec", lambda _name: one)
    old_budget, old_blocks = memory_budget(config), hbm_capacity_blocks(config)
    assert new_budget.weights - old_budget.weights == changed
    assert new_budget.kv_bytes == old_budget.kv_bytes - changed
    assert new_blocks == (old_budget.kv_bytes - changed) // block and old_blocks == old_budget.kv_bytes // block
    print(f"{name}: {old_blocks} -> {new_blocks} blocks of {block} B (-{changed} B)")


def test_an_odd_head_dim_names_its_key(tmp_path, run_cli):
    """A full-width rotary embedding over an odd head_dim (127) turns no whole pairs: the refusal names head_dim (it
    said "key None", no factor key being given)."""
    assert "'head_dim'" in refused(run_cli, str(write_config(tmp_path, {**LLAMA_31_8B, "head_dim": 127})))


@pytest.mark.parametrize("change, key", [
    ({"rope_scaling": [{"rope_type": "linear", "factor": 8.0}]}, "'rope_scaling'"),  # a list: was read as no scaling
    ({"rope_parameters": "default"}, "'rope_parameters'"),
    ({"rope_theta": 0}, "'rope_theta'"),  # vLLM's inv_freq = 1 / base ** (...): a zero base has no frequencies
    ({"rope_theta": "5e5"}, "'rope_theta'"),
])
def test_rope_keys_of_the_wrong_kind_are_named(change, key, tmp_path, run_cli):
    config = {**LLAMA_31_8B, **change}
    assert key in refused(run_cli, str(write_config(tmp_path, config)))
