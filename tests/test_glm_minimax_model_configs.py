"""GLM-4.5 / GLM-4.5-Air / GLM-4.6 (glm4_moe) and MiniMax-M2 (minimax_m2) from their published config.json
(tests/glm_minimax_configs.py): layers, parameters, weight bytes and KV bytes per token summed here by hand from the
config's shapes, layer by layer as vLLM 0.33 builds them (vllm/model_executor/models/glm4_moe.py, minimax_m2.py),
against the figures their publishers and the Hugging Face Hub give; not read back from kvsim."""

from __future__ import annotations

import json

import pytest

from sim.config import load_config
from sim.specs import model_spec
from tests.glm_minimax_configs import GLM_45, GLM_45_AIR, GLM_46, MINIMAX_M2
from tests.test_model_config import refused, write_config

FP8_PER_WEIGHT = 1 + 4 / (128 * 128)  # one FP8 byte and 1/16384 of a 128 x 128 block's fp32 scale


def spec_of(tmp_path, config: dict, name: str = "m"):
    return model_spec(str(write_config(tmp_path / name, config)))


# ---------------------------------------------------------------- GLM-4.5 / GLM-4.6 / GLM-4.5-Air


def glm_layers(hidden: int, experts: int, moe_width: int, qk_norm: bool) -> tuple[int, int, int]:
    """One layer's attention and norms, one dense MLP (caller's width aside: returned per unit width), one MoE
    layer: 96 query heads and 8 KV heads of 128 with q/k/v biases, two RMSNorms, q/k norms over head_dim when
    use_qk_norm; a router (hidden x experts) and its e_score_correction_bias, the experts and one shared expert."""
    attention = hidden * 96 * 128 * 2 + hidden * 8 * 128 * 2 + (96 * 128 + 2 * 8 * 128) + 2 * hidden
    attention += 2 * 128 if qk_norm else 0
    moe = hidden * experts + experts + experts * 3 * hidden * moe_width + 3 * hidden * moe_width
    return attention, 3 * hidden, moe


def test_glm_45_counts_by_hand(tmp_path):
    spec = spec_of(tmp_path, GLM_45)
    attention, mlp_per_width, moe = glm_layers(5120, 160, 1536, qk_norm=True)
    # layers 0-2 a dense MLP 12288 wide (first_k_dense_replace 3), layers 3-91 MoE; untied embedding and LM head
    total = 2 * 151552 * 5120 + 92 * attention + 3 * mlp_per_width * 12288 + 89 * moe + 5120
    assert spec.num_parameters == total == 352_797_829_024
    assert (spec.num_layers, spec.num_moe_layers, spec.num_experts, spec.num_experts_per_tok) == (92, 89, 160, 8)
    assert (spec.shared_expert_intermediate_size, spec.head_dim, spec.num_kv_heads) == (1536, 128, 8)
    # model card: "32 billion active parameters": the 8 routed experts, the shared one, attention and the dense
    # layers, without the embedding and the LM head (32.08B; 33.63B with both)
    active = spec.active_parameters - 2 * 151552 * 5120
    assert active == total - 89 * 152 * 3 * 5120 * 1536 - 2 * 151552 * 5120
    assert 31.5e9 <= active < 32.5e9
    # the checkpoint also holds the MTP layer (model.layers.92: a MoE decoder layer, enorm, hnorm, eh_proj 10240 ->
    # 5120, shared_head.norm, and its own embed_tokens and shared_head.head): the Hub's "358B params"; not counted
    # here, as vLLM skips it (skip_spec_layers) unless it serves MTP speculative decoding
    mtp = attention + moe + 2 * 5120 * 5120 + 3 * 5120 + 2 * 151552 * 5120
    assert 357.5e9 <= total + mtp < 358.5e9
    # the published card's 355B is within 1% of the main model (0.62%)
    assert total == pytest.approx(355e9, rel=0.01)
    no_mtp = spec_of(tmp_path, {k: v for k, v in GLM_45.items() if k != "num_nextn_predict_layers"}, "n")
    assert no_mtp.num_parameters == spec.num_parameters


def test_glm_45_routers_whole_on_every_rank():
    spec = model_spec("glm-4.5")
    # 89 MoE layers' routers, 5120 x 160, and their e_score_correction_bias, 160: fp32 (GateLinear with
    # params_dtype=torch.float32, glm4_moe.py Glm4MoE), a ReplicatedLinear: whole on each of 8 ranks, 4 bytes each
    routers = 89 * (5120 * 160 + 160)
    assert spec.fp32_parameters == routers == 72_923_040
    assert spec.weight_bytes_per_gpu(2, 8) == pytest.approx((352_797_829_024 - routers) * 2 / 8 + routers * 4,
                                                            rel=1e-15)
    # before, the fp32 routers were split over the 8 ranks: 7/8 of their 291.7 MB more a GPU now
    assert routers * 4 * 7 / 8 == 255_230_640


def test_glm_45_air_counts_by_hand(tmp_path):
    spec = spec_of(tmp_path, GLM_45_AIR)
    attention, mlp_per_width, moe = glm_layers(4096, 128, 1408, qk_norm=False)  # use_qk_norm false
    total = 2 * 151552 * 4096 + 46 * attention + 1 * mlp_per_width * 10944 + 45 * moe + 4096
    assert spec.num_parameters == total == 106_852_251_264
    assert (spec.num_moe_layers, spec.num_experts, spec.shared_expert_intermediate_size) == (45, 128, 1408)
    # model card: "106 billion total parameters and 12 billion active" (12.18B without embedding and LM head)
    assert 11.5e9 <= spec.active_parameters - 2 * 151552 * 4096 < 12.5e9
    assert total == pytest.approx(106e9, rel=0.01)
    # with the MTP layer (layer 46, its embedding and head) the checkpoint's 110.47B: the Hub's "110B"
    mtp = attention + moe + 2 * 4096 * 4096 + 3 * 4096 + 2 * 151552 * 4096
    assert 109.5e9 <= total + mtp < 110.5e9
    # use_qk_norm true adds q_norm and k_norm (head_dim 128 each) to every layer
    assert spec_of(tmp_path, {**GLM_45_AIR, "use_qk_norm": True}, "q").num_parameters - total == 46 * 2 * 128


def test_glm_46_is_glm_45_with_a_longer_context(tmp_path):
    glm45, glm46 = spec_of(tmp_path, GLM_45, "a"), spec_of(tmp_path, GLM_46, "b")
    assert glm46.max_position_embeddings == 202752 and glm45.max_position_embeddings == 131072
    assert glm46.num_parameters == glm45.num_parameters and glm46.kv_bytes_per_token(2) == glm45.kv_bytes_per_token(2)


def test_glm_layout_follows_vllm(tmp_path):
    full = spec_of(tmp_path, GLM_45, "f")
    # vLLM's Glm4MoeDecoderLayer: MoE from first_k_dense_replace on, every layer; it never reads moe_layer_freq
    assert spec_of(tmp_path, {**GLM_45, "moe_layer_freq": 2}, "q").num_parameters == full.num_parameters
    # Glm4MoeConfig's defaults: first_k_dense_replace 1, n_shared_experts 1; a null n_shared_experts: none
    bare = {k: v for k, v in GLM_45_AIR.items() if k not in ("first_k_dense_replace", "n_shared_experts")}
    assert spec_of(tmp_path, bare, "d").num_parameters == spec_of(tmp_path, GLM_45_AIR, "a").num_parameters
    no_shared = spec_of(tmp_path, {**GLM_45, "n_shared_experts": None}, "n")
    assert no_shared.shared_expert_intermediate_size is None
    assert full.num_parameters - no_shared.num_parameters == 89 * 3 * 5120 * 1536
    # attention_bias: q, k and v only (o_proj has none in vLLM's Glm4MoeAttention)
    unbiased = spec_of(tmp_path, {**GLM_45, "attention_bias": False}, "b")
    assert full.num_parameters - unbiased.num_parameters == 92 * (96 * 128 + 2 * 8 * 128)
    # the router's e_score_correction_bias is there without topk_method (Glm4MoE builds it always); the routers
    # and their biases are held in fp32 by vLLM: 89 x (5120 x 160 + 160)
    assert full.fp32_parameters == 89 * (5120 * 160 + 160)


def test_glm_experts_left_out_are_the_config_class_defaults(tmp_path):
    """A glm4_moe config.json without n_routed_experts, num_experts_per_tok or moe_intermediate_size gets
    Glm4MoeConfig's defaults (transformers configuration_glm4_moe.py: 128 experts, 8 a token, 1408 wide: GLM-4.5-Air's
    own), which vLLM's Glm4MoeDecoderLayer builds as MoE layers; only a null n_routed_experts means no experts."""
    air = spec_of(tmp_path, GLM_45_AIR, "a")
    keys = ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size")
    bare = spec_of(tmp_path, {k: v for k, v in GLM_45_AIR.items() if k not in keys}, "b")
    assert (bare.num_moe_layers, bare.num_experts, bare.num_experts_per_tok, bare.moe_intermediate_size) \
        == (45, 128, 8, 1408)
    assert bare.num_parameters == air.num_parameters == 106_852_251_264
    dense = spec_of(tmp_path, {**GLM_45_AIR, "n_routed_experts": None}, "d")
    assert not dense.is_moe and dense.num_parameters < 0.2 * air.num_parameters


# ---------------------------------------------------------------- MiniMax-M2

M2_ATTENTION_LINEAR = 3072 * 48 * 128 * 2 + 3072 * 8 * 128 * 2  # q, o; k, v (no biases)
M2_EXPERTS = 256 * 3 * 3072 * 1536  # w1, w3 and w2 of 256 experts
M2_ROUTER = 3072 * 256 + 256  # the gate and its e_score_correction_bias (use_routing_bias)
M2_NORMS = 48 * 128 + 8 * 128 + 2 * 3072  # q_norm over all query heads, k_norm over all key heads, two RMSNorms


def test_minimax_m2_counts_by_hand(tmp_path):
    spec = spec_of(tmp_path, MINIMAX_M2)
    total = 2 * 200064 * 3072 + 62 * (M2_ATTENTION_LINEAR + M2_NORMS + M2_ROUTER + M2_EXPERTS) + 3072
    assert spec.num_parameters == total == 228_689_764_864
    assert (spec.num_moe_layers, spec.num_experts, spec.moe_intermediate_size, spec.shared_expert_intermediate_size) \
        == (62, 256, 1536, None)
    # the Hub's safetensors count of the FP8 checkpoint (as a public MiniMax-M2.5 parameter-count test quotes it,
    # MINIMAX_SAFETENSORS_TRUTH = 228,703,644,928 "from HF API"; M2.5 has M2's config shapes) also counts the fp32
    # scale of every 128 x 128 block of the linear weights: no MTP module in the checkpoint
    scales = 62 * (M2_ATTENTION_LINEAR + M2_EXPERTS) // (128 * 128)
    assert total + scales == 228_703_644_928
    # model card: "230 billion total parameters with 10 billion active" (10.42B without the input embedding)
    assert total == pytest.approx(230e9, rel=0.01)
    assert 9.5e9 <= spec.active_parameters - 200064 * 3072 < 10.5e9
    # vLLM builds q_norm and k_norm whatever use_qk_norm says, and the router's bias only with use_routing_bias
    assert spec_of(tmp_path, {**MINIMAX_M2, "use_qk_norm": False}, "q").num_parameters == total
    assert total - spec_of(tmp_path, {**MINIMAX_M2, "use_routing_bias": False}, "r").num_parameters == 62 * 256


def test_minimax_m2_weights_are_its_checkpoints_bytes(tmp_path):
    spec = spec_of(tmp_path, MINIMAX_M2)
    assert (spec.weight_quantization, spec.weight_block_size) == ("fp8", (128, 128))
    linear = 62 * (M2_ATTENTION_LINEAR + M2_EXPERTS)
    plain = 2 * 200064 * 3072 + 62 * M2_NORMS + 3072  # embedding, LM head, norms: bf16
    routers = 62 * M2_ROUTER  # fp32, as the checkpoint stores them and vLLM's GateLinear holds them
    assert spec.linear_parameters == linear and spec.fp32_parameters == routers
    by_hand = linear * FP8_PER_WEIGHT + plain * 2 + routers * 4
    # hf_mem (the sum of the safetensors tensors' bytes) for MiniMaxAI/MiniMax-M2: memory=230121630720
    assert spec.weight_bytes_per_gpu(2, 1) == by_hand == 230_121_630_720
    # over 4 ranks, but the fp32 routers (GateLinear, a ReplicatedLinear) whole on each: 3/4 of their 195.1 MB more a GPU
    assert spec.weight_bytes_per_gpu(2, 4) == pytest.approx((by_hand - routers * 4) / 4 + routers * 4, rel=1e-15)
    assert routers * 4 * 3 / 4 == 146_323_968
    assert model_spec("minimax-m2").weight_bytes_per_gpu(2, 1) == 230_121_630_720  # the named entry's too


def test_kv_bytes_per_token_by_hand(tmp_path):
    # 2 (K and V) x layers x KV heads x head_dim x dtype bytes
    assert spec_of(tmp_path, GLM_45, "g").kv_bytes_per_token(2) == 2 * 92 * 8 * 128 * 2 == 376_832
    assert spec_of(tmp_path, GLM_45_AIR, "a").kv_bytes_per_token(2) == 2 * 46 * 8 * 128 * 2 == 188_416
    minimax = spec_of(tmp_path, MINIMAX_M2, "m")
    assert minimax.kv_bytes_per_token(2) == 2 * 62 * 8 * 128 * 2 == 253_952  # FP8 weights, bf16 cache under auto
    # hf_mem's kv_cache for MiniMax-M2 (fp8 cache, its 196,608 positions): 24,964,497,408 bytes
    assert minimax.kv_bytes_per_token(1) * 196_608 == 24_964_497_408
    # TP 8: one KV head a rank
    assert model_spec("glm-4.5").kv_bytes_per_token(2, tensor_parallel_size=8) == 2 * 92 * 1 * 128 * 2


def test_hbm_capacity_of_minimax_m2_on_four_h200():
    from sim.cache.tiers import hbm_capacity_blocks
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes

    config = load_config(None, sets=["model=minimax-m2", "hardware.gpu=h200", "serving.tensor_parallel_size=4"])
    routers = 62 * M2_ROUTER * 4  # fp32, whole on every rank (GateLinear, a ReplicatedLinear)
    weights = (230_121_630_720 - routers) / 4 + routers  # the FP8 checkpoint over 4 ranks (the vLLM recipe's 4x H200)
    budget = memory_budget(config)  # the budget's terms: tests/test_specs.py, tests/test_memory_profile.py
    assert budget.weights - rope_cache_bytes(model_spec(config.model), "bf16") == pytest.approx(weights, rel=1e-12)
    free = budget.kv_bytes
    assert hbm_capacity_blocks(config) == int(free // (16 * 2 * 62 * 2 * 128 * 2))  # 2 of 8 KV heads a rank, bf16


@pytest.mark.parametrize("config, words", [
    ({**MINIMAX_M2, "attn_type_list": [0] + [1] * 61}, "attn_type_list entry 0"),  # MiniMax-Text-01's lightning
    ({**MINIMAX_M2, "attn_type_list": [1] * 61}, "'attn_type_list'"),
    ({**MINIMAX_M2, "use_routing_bias": "yes"}, "'use_routing_bias'"),
    ({**MINIMAX_M2, "quantization_config": {**MINIMAX_M2["quantization_config"],
                                            "modules_to_not_convert": ["self_attn"]}}, "'self_attn'"),
    ({k: v for k, v in GLM_45.items() if k != "head_dim"}, "head_dim"),  # 5120 / 96 is no integer
    ({**GLM_45, "n_routed_experts": "160"}, "'n_routed_experts'"),
    ({**GLM_45, "first_k_dense_replace": -1}, "'first_k_dense_replace'"),
    ({**GLM_45, "use_qk_norm": 1}, "'use_qk_norm'"),
], ids=["lightning", "kinds-length", "bias-flag", "fp8-module", "no-head-dim", "experts-string", "dense-negative",
        "qk-norm-flag"])
def test_bad_keys_are_named(config, words, tmp_path, run_cli):
    path = write_config(tmp_path, config)
    message = refused(run_cli, path)
    assert str(path) in message and words in message


def test_a_glm_run_serves_its_requests(tmp_path, run_cli):
    out = tmp_path / "r.json"
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", "model=zai-org/GLM-4.5-Air",
                             "--set", "hardware.gpu=h200", "--set", "serving.tensor_parallel_size=2",
                             "--set", "workload.synthetic.num_requests=60", "--report-json", out)
    assert status == 0, err
    report = json.loads(out.read_text())
    metrics = report["runs"][0]["metrics"]
    assert report["config"]["model"] == "glm-4.5-air" and metrics["requests_completed"] == 60
    assert metrics["tpot_s"]["mean"] > 0
