"""Hybrid linear-attention models (Qwen3-Next, Qwen3.5: Gated DeltaNet layers beside full-attention ones): shapes,
weights, KV and state bytes from the config.json, each against a hand count from the published shapes and vLLM 0.33's
formulas (model_executor/layers/mamba/mamba_utils.py ``gated_delta_net_state_shape``)."""

from __future__ import annotations

import pytest

from sim.specs import model_spec
from tests.linear_attention_configs import QWEN3_5_9B_TEXT, QWEN3_NEXT_80B
from tests.test_model_config import SHAPE_FIELDS, refused, write_config

HIDDEN, VOCAB, LAYERS = 2048, 151936, 48


# Qwen3-Next-80B-A3B's modules by hand from its config.json and vLLM's qwen3_next.py / qwen_gdn_linear_attn.py
ATTENTION = (HIDDEN * 16 * 256 * 2  # q_proj: 16 heads of 256, and the output gate (attn_output_gate)
             + 2 * HIDDEN * 2 * 256  # k_proj, v_proj: 2 KV heads
             + 16 * 256 * HIDDEN  # o_proj
             + 2 * 256)  # q_norm, k_norm
KEY_DIM, VALUE_DIM = 16 * 128, 32 * 128
GDN = (HIDDEN * (2 * KEY_DIM + 2 * VALUE_DIM)  # in_proj_qkvz
       + HIDDEN * 2 * 32  # in_proj_ba
       + (2 * KEY_DIM + VALUE_DIM) * 4  # conv1d, kernel 4
       + 32 + 32 + 128  # dt_bias, A_log, the gated norm
       + VALUE_DIM * HIDDEN)  # out_proj
MOE = HIDDEN * 512 + 512 * 3 * HIDDEN * 512 + 3 * HIDDEN * 512 + HIDDEN  # router, experts, shared expert, its gate
LAYER_NORMS = 2 * HIDDEN
PARAMETERS = 2 * VOCAB * HIDDEN + 12 * ATTENTION + 36 * GDN + LAYERS * (MOE + LAYER_NORMS) + HIDDEN


def test_qwen3_next_config_json_gives_its_layers_kv_and_state(tmp_path):
    spec = model_spec(str(write_config(tmp_path, QWEN3_NEXT_80B)))
    gdn = spec.linear_attention
    assert (spec.num_layers, spec.attention_layers, gdn.layers) == (48, 12, 36)  # full_attention_interval 4
    # KV: the 12 attention layers only, K and V of 2 heads of 256 in bf16
    assert spec.kv_bytes_per_token(2) == 2 * 12 * 2 * 256 * 2 == 24576
    assert spec.kv_bytes_per_token(2, tensor_parallel_size=2) == 2 * 12 * 1 * 256 * 2
    # state per sequence and GDN layer: conv (2 × 16 × 128 + 32 × 128) × (4 − 1), recurrent 32 × 128 × 128, bf16
    assert gdn.conv_state_bytes(2) == 8192 * 3 * 2 == 49152
    assert gdn.state_bytes(2) == 49152 + 32 * 128 * 128 * 2 == 1097728
    assert gdn.state_bytes(2, tensor_parallel_size=2) == 1097728 // 2  # both split over the ranks
    assert spec.num_moe_layers == 48 and spec.shared_expert_gate and spec.attention_output_gate


def test_qwen3_next_parameters_match_the_hand_count_and_the_hub(tmp_path):
    spec = model_spec(str(write_config(tmp_path, QWEN3_NEXT_80B)))
    assert spec.num_parameters == PARAMETERS == 79_674_391_296
    # Hub: Qwen/Qwen3-Coder-Next (the same shapes, no MTP layer) holds 79,674,391,296 parameters in its safetensors;
    # Qwen3-Next-80B-A3B-Instruct's "81.3B params" count its MTP layer too (one more attention + MoE layer, the fc
    # from 2 × hidden to hidden and three norms), which vLLM loads only for MTP speculative decoding
    mtp = ATTENTION + MOE + LAYER_NORMS + 2 * HIDDEN * HIDDEN + 3 * HIDDEN
    assert spec.num_parameters + mtp == pytest.approx(81.3e9, abs=0.05e9)
    # model card: 3B activated (10 routed experts a token and the shared one); without the idle experts' tensors
    assert spec.active_parameters == 3_874_929_408


def test_a_qwen3_next_config_without_intermediate_size_takes_the_config_class_default(tmp_path):
    """Qwen3NextConfig's intermediate_size defaults to 5632 (transformers configuration_qwen3_next.py), and a file made
    from a Qwen3.5/3.6 MoE text config leaves it out (LLMServingSim 5f18d86 configs/model/Qwen/Qwen3.6-35B-A3B.json,
    whose H100 bundle names it): it loaded in vLLM and was refused here ("missing key 'intermediate_size'"). Every
    layer MoE, the width prices nothing: the weights are those of the file that states it."""
    stated = model_spec(str(write_config(tmp_path / "stated", QWEN3_NEXT_80B)))
    left_out = {k: v for k, v in QWEN3_NEXT_80B.items() if k != "intermediate_size"}
    spec = model_spec(str(write_config(tmp_path / "left_out", left_out)))
    assert spec.intermediate_size == 5632
    assert spec.num_parameters == stated.num_parameters == PARAMETERS


def test_the_named_entry_is_the_config_json(tmp_path):
    spec = model_spec(str(write_config(tmp_path, QWEN3_NEXT_80B)))
    named = model_spec("qwen3-next-80b-a3b")
    assert {f: getattr(spec, f) for f in SHAPE_FIELDS} == {f: getattr(named, f) for f in SHAPE_FIELDS}
    # weights per GPU at TP 2 in bf16: every parameter split over the ranks but the routers (48 layers, 2048 x 512
    # experts) and shared-expert gates (2048 x 1), ReplicatedLinear in vLLM (qwen3_next.py): whole on each rank
    routers = 48 * 2048 * (512 + 1)
    assert named.weight_bytes_per_gpu(2, 2) == (79_674_391_296 - routers) * 2 / 2 + routers * 2


def test_qwen3_5_keeps_its_recurrent_state_in_fp32(tmp_path):
    spec = model_spec(str(write_config(tmp_path, QWEN3_5_9B_TEXT)))
    gdn = spec.linear_attention
    assert (gdn.layers, spec.attention_layers, spec.is_moe) == (24, 8, False)
    assert gdn.state_bytes(2) == 8192 * 3 * 2 + 32 * 128 * 128 * 4 == 2146304  # conv in bf16, recurrent in fp32
    assert spec.kv_bytes_per_token(2) == 2 * 8 * 4 * 256 * 2


@pytest.mark.parametrize(("change", "words"), [
    ({"layer_types": ["sliding_attention"] + ["full_attention"] * 47}, "layer_types 'sliding_attention' is not"),
    ({"full_attention_interval": 1}, "0 of 48 layers are linear attention"),
    ({"linear_num_value_heads": 24}, "num_value_heads 24 must be a multiple of num_key_heads 16"),
    # a multimodal model_type over a text-only file: its language model's keys belong under text_config
    ({"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"]}, "key 'text_config' must be"),
])
def test_what_is_not_modelled_is_refused_by_name(change, words, tmp_path, run_cli):
    message = refused(run_cli, str(write_config(tmp_path, {**QWEN3_NEXT_80B, **change})))
    assert words in message

