"""FP8 checkpoints (config.json quantization_config quant_method "fp8"): which weights are one byte, their scales,
the KV cache dtype (the model's, not the weights'), and the roofline's FP8 GEMMs.

Fixtures: tests/fixtures/hf_configs/DeepSeek-V3.json is the published huggingface.co/deepseek-ai/DeepSeek-V3
config.json (quantization_config: activation_scheme dynamic, fmt e4m3, quant_method fp8, weight_block_size
[128, 128]); Qwen3-32B-FP8 is the published Qwen3-32B config.json (tests/test_model_config.py QWEN3_32B) with the
quantization_config of huggingface.co/Qwen/Qwen3-32B-FP8 config.json (the same four keys, block [128, 128]).
Which modules vLLM quantizes: vllm/model_executor/layers/quantization/fp8.py ``Fp8Config.get_quant_method``
(``LinearBase`` -> Fp8LinearMethod, ``FusedMoE`` -> Fp8MoEMethod); the embedding, the LM head, norms and the MoE
router (fused_moe/router/gate_linear.py ``GateLinear``: ``quant_config=None``) stay in the model dtype.
Every expectation below is a hand sum over the config.json's shapes, not read back from kvsim.
"""

from __future__ import annotations

import math

import pytest

from sim.config import load_config
from sim.serving.compute import RooflineCompute
from sim.specs import gpu_spec, model_spec
from tests.test_model_config import QWEN3_32B, refused, write_config
from tests.test_shared_experts_mla import published, spec_of

FP8_BLOCK = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
QWEN3_32B_FP8 = {**QWEN3_32B, "quantization_config": FP8_BLOCK}
PER_WEIGHT = 1 + 4 / (128 * 128)  # one FP8 byte and 1/16384 of an fp32 scale

# DeepSeek-V3 (61 layers, 3 dense, 58 MoE): the weights that stay in the model dtype
V3_EMBEDDINGS = 2 * 129280 * 7168  # embed_tokens and lm_head (untied)
V3_NORMS = 61 * (1536 + 512 + 2 * 7168) + 7168  # q_a_layernorm, kv_a_layernorm, two RMSNorms a layer; the final norm
V3_ROUTERS = 58 * (256 * 7168 + 256)  # the gate and its e_score_correction_bias
V3_PLAIN = V3_EMBEDDINGS + V3_NORMS + V3_ROUTERS
V3_REPLICATED = 61 * 7168 * (1536 + 576)  # q_a_proj and kv_a_proj_with_mqa, whole on every TP rank
# the routers' gates (GateLinear, a ReplicatedLinear: whole on every TP rank, in bf16; their biases are counted as split)
V3_GATES = 58 * 256 * 7168


def test_the_published_deepseek_v3_fp8_config_is_read(tmp_path):
    spec = spec_of(tmp_path, published("DeepSeek-V3"))
    assert (spec.weight_quantization, spec.weight_block_size) == ("fp8", (128, 128))
    assert spec.num_parameters == 671_026_419_200  # the shapes are the unquantized ones
    # linear weights: per layer q_a 7168x1536, q_b 1536x24576, kv_a 7168x576, kv_b 512x32768, o 16384x7168; the
    # 3 dense MLPs 3x7168x18432; per MoE layer 256 experts and one shared, 3x7168x2048 each
    attention = 7168 * 1536 + 1536 * 24576 + 7168 * 576 + 512 * 32768 + 16384 * 7168
    linear = 61 * attention + 3 * 3 * 7168 * 18432 + 58 * 257 * 3 * 7168 * 2048
    assert spec.linear_parameters == linear == 671_026_419_200 - V3_PLAIN
    # one of 8 TP ranks: the sharded linear weights / 8 and the replicated ones whole at 1 + 4/16384 bytes,
    # the embeddings, norms and routers at bf16, the routers' gates whole on every rank
    expected = ((linear - V3_REPLICATED) * PER_WEIGHT + (V3_PLAIN - V3_GATES) * 2) / 8 + V3_REPLICATED * PER_WEIGHT \
        + V3_GATES * 2
    assert spec.weight_bytes_per_gpu(2, 8) == pytest.approx(expected, rel=1e-12)
    assert 85.1e9 < expected < 85.2e9  # vs 167.9e9 as a BF16 checkpoint; 84.95e9 with the routers split 8 ways
    # data parallel 2: the routed experts over 16 GPUs
    routed = 58 * 256 * 3 * 7168 * 2048
    dp2 = (((linear - V3_REPLICATED - routed + routed / 2) * PER_WEIGHT + (V3_PLAIN - V3_GATES) * 2) / 8
           + V3_REPLICATED * PER_WEIGHT + V3_GATES * 2)
    assert spec.weight_bytes_per_gpu(2, 8, data_parallel_size=2) == pytest.approx(dp2, rel=1e-12)


def test_a_dense_fp8_checkpoint_keeps_embeddings_and_norms_in_the_model_dtype(tmp_path):
    spec = spec_of(tmp_path, QWEN3_32B_FP8)
    # 64 layers of q/k/v/o (5120 x (8192 + 1024 + 1024) and 8192 x 5120) and the 25600-wide gated MLP
    linear = 64 * (5120 * (2 * 8192 + 2 * 1024) + 3 * 5120 * 25600)
    plain = 2 * 151936 * 5120 + 64 * (2 * 5120 + 2 * 128) + 5120  # embeddings, RMSNorms and q/k norms, final norm
    assert spec.num_parameters == linear + plain == 32_762_123_264  # profiles/models.yaml qwen3-32b
    assert spec.linear_parameters == linear
    assert spec.weight_bytes_per_gpu(2, 1) == pytest.approx(linear * PER_WEIGHT + plain * 2, rel=1e-12)
    assert spec.weight_bytes_per_gpu(2, 2) == pytest.approx((linear * PER_WEIGHT + plain * 2) / 2, rel=1e-12)
    # per-tensor FP8 (no weight_block_size): one byte a weight, a scale per matrix (not counted)
    per_tensor = spec_of(tmp_path, {**QWEN3_32B, "quantization_config": {"quant_method": "fp8",
                                                                           "activation_scheme": "static"}}, "t")
    assert per_tensor.weight_block_size is None
    assert per_tensor.weight_bytes_per_gpu(2, 1) == linear + plain * 2
    # the LM head and embedding named as unquantized change nothing (they are not quantized anyway)
    listed = spec_of(tmp_path, {**QWEN3_32B, "quantization_config": {
        **FP8_BLOCK, "modules_to_not_convert": ["lm_head", "model.embed_tokens"]}}, "l")
    assert listed.weight_bytes_per_gpu(2, 1) == spec.weight_bytes_per_gpu(2, 1)


def test_the_kv_cache_of_an_fp8_checkpoint_is_the_model_dtype(tmp_path):
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes

    path = write_config(tmp_path / "v3", published("DeepSeek-V3"))
    config = load_config(None, sets=[f"model={path}", "hardware.gpu=h200", "serving.tensor_parallel_size=8",
                                     "serving.num_instances=1"])
    # serving.dtype bf16, kv_cache_dtype auto: a bf16 latent (vLLM: cache_dtype auto is the model dtype)
    assert kv_block_bytes(config) == 16 * 61 * 576 * 2
    weights = (((671_026_419_200 - V3_PLAIN - V3_REPLICATED) * PER_WEIGHT + (V3_PLAIN - V3_GATES) * 2) / 8
               + V3_REPLICATED * PER_WEIGHT + V3_GATES * 2)
    budget = memory_budget(config)  # the budget's terms: tests/test_specs.py, tests/test_memory_profile.py
    assert budget.weights - rope_cache_bytes(model_spec(config.model), "bf16") == pytest.approx(weights, rel=1e-12)
    free = budget.kv_bytes
    assert hbm_capacity_blocks(config) == int(free // (16 * 61 * 576 * 2))
    fp8_cache = load_config(None, sets=[f"model={path}", "hardware.gpu=h200", "serving.tensor_parallel_size=8",
                                        "serving.num_instances=1", "serving.kv_cache_dtype=fp8"])
    assert kv_block_bytes(fp8_cache) == 16 * 61 * 576


def test_fp8_linear_layers_stream_fp8_weights_at_the_fp8_peak(tmp_path):
    spec = spec_of(tmp_path, QWEN3_32B_FP8)
    h100 = gpu_spec("h100-sxm")
    assert h100.fp8_peak_flops == 1979e12  # H100 SXM datasheet: FP8 3,958 TFLOPS with sparsity
    r = RooflineCompute(spec, h100, 2, 2, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    layer = 5120 * (2 * 8192 + 2 * 1024) + 3 * 5120 * 25600
    assert r.layer_weight_bytes == pytest.approx(layer * PER_WEIGHT, rel=1e-12)
    tokens = 4096
    flops = 2 * layer * tokens
    traffic = layer * PER_WEIGHT + tokens * 2 * (5120 + 25600) * 2  # weights; the MLP's bf16 activations
    assert r.dense_layer_time(tokens) == pytest.approx(math.hypot(flops / 1979e12, traffic / 3350e9), rel=1e-12)
    # attention and the LM head stay at the BF16 peak and bf16 weights
    assert r.lm_head_time(1) == pytest.approx(math.hypot(2 * 151936 * 5120 / 989.4e12, 151936 * 5120 * 2 / 3350e9),
                                              rel=1e-12)
    # a GPU without FP8 tensor cores (A100: vLLM's Marlin W8A16) keeps the BF16 peak, with one-byte weights
    a100 = RooflineCompute(spec, gpu_spec("a100-80gb"), 2, 2, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    assert gpu_spec("a100-80gb").fp8_peak_flops is None
    assert a100.dense_layer_time(tokens) == pytest.approx(math.hypot(flops / 312e12, traffic / 2039e9), rel=1e-12)


def test_fp8_moe_layers_keep_the_router_in_the_model_dtype(tmp_path):
    spec = spec_of(tmp_path, published("DeepSeek-V3"))
    r = RooflineCompute(spec, gpu_spec("h200"), 2, 2, 8, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    sharded = 1536 * 24576 + 512 * 32768 + 16384 * 7168 + 3 * 7168 * 2048  # q_b, kv_b, o, the shared expert
    replicated = 7168 * (1536 + 576)
    assert r.moe_fixed_bytes == pytest.approx((sharded / 8 + replicated) * PER_WEIGHT + 7168 * 256 * 2, rel=1e-12)
    assert r.expert_bytes == pytest.approx(3 * 7168 * 2048 * PER_WEIGHT / 8, rel=1e-12)
    assert r.linear_peak == 1979e12


@pytest.mark.parametrize("quantization, words", [
    ({"quant_method": "awq", "bits": 4}, "quantization_config 'awq'"),
    ({"quant_method": "compressed-tensors"}, "quantization_config 'compressed-tensors'"),
    ({**FP8_BLOCK, "weight_block_size": [128]}, "'quantization_config.weight_block_size'"),
    ({**FP8_BLOCK, "weight_block_size": [128, 0]}, "'quantization_config.weight_block_size'"),
    ({**FP8_BLOCK, "ignored_layers": ["model.layers.0.self_attn.o_proj"]}, "'model.layers.0.self_attn.o_proj'"),
    ({**FP8_BLOCK, "modules_to_not_convert": "lm_head"}, "'quantization_config.modules_to_not_convert'"),
    # a false, 0 or "" was read as no names (``or []``): none is a list of module names
    ({**FP8_BLOCK, "ignored_layers": False}, "'quantization_config.ignored_layers' must be a list of module names"),
    ({**FP8_BLOCK, "modules_to_not_convert": ""}, "'quantization_config.modules_to_not_convert' must be a list"),
    # not an object: crashed with an AttributeError (a string "fp8" passed the method check)
    ("fp8", "key 'quantization_config' must be an object"),
    (["fp8"], "key 'quantization_config' must be an object"),
    # vLLM's Fp8Config refuses these (fp8.py: ACTIVATION_SCHEMES, block-wise needs dynamic, from_config requires the
    # key); kvsim ran them
    ({**FP8_BLOCK, "activation_scheme": "static"}, "'quantization_config.activation_scheme' must be 'dynamic' with a "
                                                   "weight_block_size (as vLLM's Fp8Config reads it), got 'static'"),
    ({"quant_method": "fp8", "activation_scheme": "Dynamic"}, "must be 'dynamic' or 'static'"),
    ({"quant_method": "fp8"}, "'quantization_config.activation_scheme' must be 'dynamic' or 'static' (as vLLM's "
                              "Fp8Config reads it), got None"),
    # no method at all: was "quantization_config None is not modelled"
    ({}, "key 'quantization_config' has no 'quant_method'"),
    ({"weight_block_size": [128, 128]}, "key 'quantization_config' has no 'quant_method'"),
], ids=["awq", "compressed-tensors", "block-one", "block-zero", "ignored-attention", "names-not-list",
        "names-false", "names-empty-string", "config-string", "config-list", "static-blocks", "scheme-case",
        "scheme-missing", "method-missing", "method-missing-block"])
def test_what_an_fp8_config_does_not_describe_is_refused(quantization, words, tmp_path, run_cli):
    path = write_config(tmp_path, {**QWEN3_32B, "quantization_config": quantization})
    message = refused(run_cli, str(path))
    assert str(path) in message and words in message
