"""DeepSeek sparse attention (deepseek_v32: DeepSeek-V3.2; glm_moe_dsa: GLM-5): the indexer's weights and cache, the
fp8_ds_mla latent, and the roofline's indexer and top-k attention.

Fixture: tests/fixtures/hf_configs/DeepSeek-V3.2-Exp-16L64E.json is github.com/casys-kaist/LLMServingSim
configs/model/deepseek-ai/DeepSeek-V3.2-Exp-16L64E.json (commit c1cccdc7), copied byte for byte (sha256 cbde50a1...):
DeepSeek-V3.2-Exp cut to 16 layers and 64 experts, FP8 (block 128 x 128). The full DeepSeek-V3.2-Exp config.json
(huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp) is DeepSeek-V3's shapes (tests/fixtures/hf_configs/DeepSeek-V3.json)
with model_type deepseek_v32 and index_head_dim 128, index_n_heads 64, index_topk 2048, as the 16L64E cut shows.
Sources of the shapes vLLM builds: vllm/model_executor/models/deepseek_v2.py ``Indexer`` (wq_b q_lora_rank x
index_n_heads*index_head_dim, FP8 in an FP8 checkpoint; wk and weights_proj fused as ``wk_weights_proj`` with
quant_config=None, bf16; k_norm a LayerNorm; all replicated) and ``DeepseekV32IndexerCache`` (index_head_dim + 4 bytes
per 128); the latent cache format: fp8_ds_mla, 512 FP8 + 4 fp32 scales + 64 bf16 rope values = 656 bytes.
Every expectation is a hand sum over the shapes, not read back from kvsim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim.config import load_config
from sim.serving.compute import RooflineCompute, StepShape
from sim.specs import gpu_spec, model_spec
from tests.test_model_config import refused, write_config
from tests.test_shared_experts_mla import published, spec_of

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "hf_configs" / "DeepSeek-V3.2-Exp-16L64E.json"
PER_WEIGHT = 1 + 4 / (128 * 128)

# DeepSeek-V3.2-Exp-16L64E, per layer
MLA = 7168 * 1536 + 1536 * 24576 + 7168 * 576 + 512 * 32768 + 16384 * 7168  # q_a, q_b, kv_a, kv_b, o
WQ_B = 1536 * 64 * 128  # the indexer's queries (FP8)
WK_WEIGHTS = 7168 * (128 + 64)  # wk and weights_proj (bf16 in vLLM)
NORMS = 1536 + 512 + 2 * 7168 + 2 * 128  # q_a_layernorm, kv_a_layernorm, two RMSNorms, the indexer's k_norm
DENSE = 3 * 7168 * 18432  # layers 0-2
EXPERTS = 64 * 3 * 7168 * 2048 + 3 * 7168 * 2048  # layers 3-15: 64 routed experts and one shared
ROUTER = 64 * 7168 + 64  # the gate and its e_score_correction_bias (noaux_tc)
EMBEDDINGS = 2 * 129280 * 7168


def dsa_16l64e():
    return model_spec(str(FIXTURE))


def test_the_16l64e_shapes_and_parameters():
    spec = dsa_16l64e()
    assert spec.is_sparse_attention and (spec.index_topk, spec.index_n_heads, spec.index_head_dim) == (2048, 64, 128)
    assert (spec.weight_quantization, spec.weight_block_size) == ("fp8", (128, 128))
    total = EMBEDDINGS + 16 * (MLA + WQ_B + WK_WEIGHTS + NORMS) + 3 * DENSE + 13 * (EXPERTS + ROUTER) + 7168
    assert spec.num_parameters == total == 43_479_674_688
    linear = 16 * (MLA + WQ_B) + 3 * DENSE + 13 * EXPERTS
    assert spec.linear_parameters == linear
    # one GPU: linear weights at one byte and 1/16384 of a scale; embeddings, norms, routers, wk and weights_proj bf16
    plain = EMBEDDINGS + 16 * (NORMS + WK_WEIGHTS) + 13 * ROUTER + 7168
    assert linear + plain == total
    assert spec.weight_bytes_per_gpu(2, 1) == pytest.approx(linear * PER_WEIGHT + plain * 2, rel=1e-12)
    # TP 2: the MLA q_a/kv_a, the whole indexer and the routers' gates (GateLinear, a ReplicatedLinear; their
    # e_score_correction_bias, 64 values a layer, is not counted as replicated) stay whole on each rank
    replicated = 16 * 7168 * (1536 + 576) + 16 * WQ_B
    whole_bf16 = 16 * WK_WEIGHTS + 13 * 64 * 7168
    tp2 = ((linear - replicated) * PER_WEIGHT + (plain - whole_bf16) * 2) / 2 + replicated * PER_WEIGHT \
        + whole_bf16 * 2
    assert spec.weight_bytes_per_gpu(2, 2) == pytest.approx(tp2, rel=1e-12)


def test_kv_bytes_per_token_are_the_latent_and_the_indexer_key():
    spec = dsa_16l64e()
    # kv_cache_dtype auto -> fp8_ds_mla: 512 + 4 x 4 + 64 x 2 = 656 bytes of latent, 128 + 4 of indexer key a layer
    config = load_config(None, sets=[f"model={FIXTURE}", "hardware.gpu=rtxpro6000", "serving.tensor_parallel_size=1",
                                     "serving.num_instances=1", "serving.block_size=64",
                                     "serving.gpu_memory_utilization=0.92"])
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes

    assert kv_block_bytes(config) == 64 * 16 * (656 + 132) == 64 * 12_608
    # serving.kv_cache_dtype bf16: the latent in bf16 (576 x 2), the indexer key unchanged; fp8 as auto
    bf16 = load_config(None, sets=[f"model={FIXTURE}", "serving.block_size=64", "serving.kv_cache_dtype=bf16"])
    assert kv_block_bytes(bf16) == 64 * 16 * (1152 + 132)
    fp8 = load_config(None, sets=[f"model={FIXTURE}", "serving.block_size=64", "serving.kv_cache_dtype=fp8"])
    assert kv_block_bytes(fp8) == kv_block_bytes(config)
    assert spec.kv_bytes_per_token(2, tensor_parallel_size=8) == 16 * (1152 + 132)  # whole on every rank
    # HBM blocks: (96 GiB x 0.92 - weights) / (64 x 12,608). The measured vLLM 0.28 run (RTX PRO 6000, 101,976,440,832
    # bytes, the same 0.92) got 49,181 blocks: 39.7e9 bytes of KV, leaving 54.1e9 for 45.4e9 of weights and ~8.8e9 of
    # activations, CUDA graphs and buffers kvsim does not model; a bf16 latent (64.7e9 of KV) would not have fit.
    plain = EMBEDDINGS + 16 * (NORMS + WK_WEIGHTS) + 13 * ROUTER + 7168
    weights = (16 * (MLA + WQ_B) + 3 * DENSE + 13 * EXPERTS) * PER_WEIGHT + plain * 2
    budget = memory_budget(config)  # the budget's terms: tests/test_specs.py, tests/test_memory_profile.py
    assert budget.weights - rope_cache_bytes(model_spec(config.model), "bf16") == pytest.approx(weights, rel=1e-12)
    assert hbm_capacity_blocks(config) == int(budget.kv_bytes // (64 * 12_608))
    assert 49_181 * 64 * 12_608 + weights < 101_976_440_832 * 0.92 < 49_181 * 64 * 20_544 + weights


def test_the_full_deepseek_v32_count_against_the_model_card(tmp_path):
    v32 = {**published("DeepSeek-V3"), "model_type": "deepseek_v32", "architectures": ["DeepseekV32ForCausalLM"],
           "index_head_dim": 128, "index_n_heads": 64, "index_topk": 2048}
    spec = spec_of(tmp_path, v32)
    indexer = 1536 * 64 * 128 + 7168 * (128 + 64) + 2 * 128  # wq_b, wk, weights_proj, k_norm
    assert spec.num_parameters == 671_026_419_200 + 61 * indexer == 671_877_944_064
    # huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp model card: 685B parameters, the MTP module included; kvsim counts
    # the main model (671.9B): the 13.1B left is DeepSeek-V3's 14B MTP module (its card: 671B + 14B = 685B)
    assert 13e9 < 685e9 - spec.num_parameters < 14e9


def test_glm5_is_built_as_deepseek_sparse_attention(tmp_path):
    config = json.loads(FIXTURE.read_text())
    glm = spec_of(tmp_path, {**config, "model_type": "glm_moe_dsa"})
    assert glm.num_parameters == dsa_16l64e().num_parameters and glm.index_topk == 2048


def roofline(tp: int = 1) -> RooflineCompute:
    return RooflineCompute(dsa_16l64e(), gpu_spec("rtxpro6000"), 2, 1, tp, flops_efficiency=1.0,
                           bandwidth_efficiency=1.0)


def test_decode_attends_to_the_top_k_and_the_indexer_to_everything():
    r = roofline()
    assert r.attn_flops_per_pair == 2 * 128 * (576 + 512)  # MQA over the latent, 128 heads
    assert r.index_flops_per_pair == 2 * 64 * 128  # 64 indexer heads of 128, on every rank
    # attention runs at the BF16 peak (rtxpro6000: 500 TFLOPS), the FP8 one being the linear layers' only
    shape = StepShape.decode_batch([1000, 5000])
    # the attention: 1000 + 2048 keys (the second sequence's top-k), the indexer: all 6000
    flops = (1000 + 2048) * 278_528 + 6000 * 16_384
    memory = (1000 + 2048 + 2) * 656 + (6000 + 2) * 132  # latents read (and the new ones written), indexer keys
    # from the aggregates: min(6000, 2 x 2048) = 4096 selected for the exact 3048 (an upper bound when contexts
    # straddle index_topk); exact when every context is within it or beyond it:
    upper = 4096 * 278_528 + 6000 * 16_384
    assert r.attention_flops(0, 6000, 0, 0, 2) == upper > flops
    assert r.attention_layer_time(shape) == pytest.approx(
        math.hypot(upper / 500e12, ((4096 + 2) * 656 + 6002 * 132) / 1792e9), rel=1e-12)
    beyond = StepShape.decode_batch([3000, 5000])  # both beyond: 2 x 2048, exactly
    assert r.attention_flops(0, 8000, 0, 0, 2) == 4096 * 278_528 + 8000 * 16_384
    within = StepShape.decode_batch([1000, 2000])  # both within: all 3000
    assert r.attention_flops(0, 3000, 0, 0, 2) == 3000 * 278_528 + 3000 * 16_384
    # the vectorised decode windows agree with the step-by-step times
    for first in (shape, beyond, within):
        times = r.decode_times(first, 3)
        kv = [int(v) for v in (first.decode_kv_min, first.decode_kv_max)]
        steps = [r.step_time(StepShape.decode_batch([kv[0] + k, kv[1] + k])) for k in range(3)]
        assert times == pytest.approx(steps, rel=1e-12)
    assert memory < (4096 + 2) * 656 + 6002 * 132


def test_the_indexer_runs_whole_on_every_tensor_parallel_rank():
    """At TP 2 the attention's 128 heads are split over the ranks, the indexer's 64 heads are not (deepseek_v2.py
    Indexer: replicated, wk_weights_proj disable_tp): each rank scores every key with all of them."""
    two = roofline(2)
    assert two.attn_flops_per_pair == 2 * 64 * (576 + 512)
    assert two.index_flops_per_pair == 2 * 64 * 128
    assert two.attention_flops(0, 6000, 0, 0, 2) == 4096 * 2 * 64 * 1088 + 6000 * 2 * 64 * 128


def test_prefill_runs_the_absorbed_form_over_the_top_k():
    r = roofline()
    assert r.prefill_attn_flops_per_pair == r.attn_flops_per_pair and r.context_flops_per_token == 0
    short = StepShape()
    short.add_prefill(1000, 0)  # every query within 2048 keys: 1000 x 1001 / 2 pairs
    assert r.attention_flops(short.prefill_pairs, 0, 0, short.prefill_tokens, 0) == 500_500 * (278_528 + 16_384)
    long = StepShape()
    long.add_prefill(4096, 4096)  # every query beyond: 2048 keys each; the indexer scores all 4096 x (4096 + 2048.5)
    pairs = 4096 * (4096 + 4097 / 2)
    assert r.attention_flops(long.prefill_pairs, 0, long.prefill_context, long.prefill_tokens, 0) == \
        4096 * 2048 * 278_528 + pairs * 16_384
    memory = 8192 * (656 + 132)  # the context's latents and indexer keys, read once
    assert r.attention_layer_time(long) == pytest.approx(
        math.hypot((4096 * 2048 * 278_528 + pairs * 16_384) / 500e12, memory / 1792e9), rel=1e-12)


def test_the_indexer_projections_in_the_linear_layers():
    r = roofline()
    # replicated on every rank: q_a, kv_a, wq_b (FP8) and wk + weights_proj (bf16)
    assert r.replicated_params == 7168 * (1536 + 576) + WQ_B + WK_WEIGHTS
    sharded = 1536 * 24576 + 512 * 32768 + 16384 * 7168 + 3 * 7168 * 18432
    assert r.layer_params == sharded
    assert r.layer_weight_bytes == pytest.approx(
        (sharded + 7168 * (1536 + 576) + WQ_B) * PER_WEIGHT + WK_WEIGHTS * 2, rel=1e-12)
    shared = 3 * 7168 * 2048
    assert r.moe_fixed_bytes == pytest.approx(
        (1536 * 24576 + 512 * 32768 + 16384 * 7168 + shared + 7168 * (1536 + 576) + WQ_B) * PER_WEIGHT
        + (WK_WEIGHTS + 7168 * 64) * 2, rel=1e-12)
    assert r.linear_peak == 1000e12  # profiles/gpus.yaml rtxpro6000 dense_fp8_tflops


def test_utilization_bounds_each_steps_selection():
    """The work counter prices a sparse model's attention as the roofline prices each step: the top-k bound per step
    (min(pairs, queries x index_topk)), summed; the run's totals bound it far more loosely (one short-context and one
    long-context decode step: 16 queries may select 32,768 keys of the 80,800 together, each step alone 800 and
    8 x 2048 = 16,384). Runs give every instance's totals the model's index_topk."""
    from sim.serving.run import ServingRun
    from sim.serving.utilization import WorkCounter, WorkTotals
    from tests.test_serving import make_trace

    counter = WorkCounter(roofline())
    per_step, totals = WorkTotals(index_topk=2048), WorkTotals()
    for work in (per_step, totals):
        work.add_step(StepShape.decode_batch([100] * 8), 1.0)
        work.add_step(StepShape.decode_batch([10_000] * 8), 1.0)
    assert (per_step.decode_selected, per_step.prefill_selected) == (800 + 16_384, 0)
    # 16 layers of 278,528 FLOPs a selected pair (the indexer's 16,384 a pair over all 80,800 either way)
    assert counter.flops(per_step) - counter.flops(totals) == pytest.approx(16 * 278_528 * (17_184 - 32_768))
    # bytes: 656 of latent a selected key, not of every cached one (132 of indexer key each either way)
    assert counter.bytes(per_step) - counter.bytes(totals) == pytest.approx(16 * 656 * (17_184 - 80_800))
    # a decode window crossing the top-k: 8 sequences over 16,376, 16,384 and 16,392 keys: 16,376 + 2 x 16,384
    window = WorkTotals(index_topk=2048)
    window.add_decode_window(StepShape(decode_seqs=8, decode_kv_tokens=16_376), steps=3, duration=1.0)
    assert window.decode_selected == 16_376 + 2 * 16_384
    config = load_config(None, sets=[f"model={FIXTURE}", "hardware.gpu=rtxpro6000", "serving.num_instances=1",
                                     "serving.num_gpu_blocks=1000"])
    run = ServingRun(make_trace([0.0], [100], [2]), config, "single")
    assert [inst.work.index_topk for inst in run.instances] == [2048]


@pytest.mark.parametrize("change, words", [
    ({"index_n_heads": None}, "missing key 'index_n_heads'"),
    ({"index_topk": 0}, "'index_topk'"),
    ({"index_head_dim": 96}, "'index_head_dim'"),
    ({"q_lora_rank": None}, "'index_topk'"),
], ids=["no-heads", "topk-zero", "head-dim", "no-q-lora"])
def test_bad_sparse_attention_keys_are_named(change, words, tmp_path, run_cli):
    path = write_config(tmp_path, {**json.loads(FIXTURE.read_text()), **change})
    message = refused(run_cli, str(path))
    assert str(path) in message and words in message


def test_index_topk_makes_a_deepseek_config_sparse_as_vllm_decides_it(tmp_path, run_cli):
    """vLLM builds the indexer whenever the config has the key index_topk, whatever its model_type
    (vllm-project/vllm vllm/model_executor/models/deepseek_v2.py, DeepseekV2Model: ``self.is_v32 = hasattr(config,
    "index_topk")``, then ``torch.empty(max_num_batched_tokens, config.index_topk)``). A deepseek_v3 config with the
    index keys is DeepSeek-V3.2's model (the hand count above); with index_topk present but null it was read as plain
    V3 (no indexer, no indexer cache): refused, naming the key; index_n_heads and index_head_dim alone (no index_topk)
    build no indexer in vLLM, so the model stays V3."""
    keys = {"index_head_dim": 128, "index_n_heads": 64, "index_topk": 2048}
    v3 = {**published("DeepSeek-V3"), **keys}
    spec = spec_of(tmp_path, v3)
    assert spec.is_sparse_attention and spec.num_parameters == 671_877_944_064  # as deepseek_v32's above
    null = write_config(tmp_path / "null", {**v3, "index_topk": None})
    message = refused(run_cli, str(null))
    assert message == (f"kvsim: error: model config {null}: key 'index_topk' is null, but vLLM builds DeepSeek sparse "
                       "attention's indexer whenever the key is present (deepseek_v2.py: hasattr) and sizes its top-k "
                       "by it: give a positive integer, or drop the key")
    v32_null = write_config(tmp_path / "v32", {**v3, "model_type": "deepseek_v32", "index_topk": None})
    assert "key 'index_topk' is null" in refused(run_cli, str(v32_null))
    lite = write_config(tmp_path / "lite", {**published("DeepSeek-V2-Lite"), "index_topk": None})
    assert "key 'index_topk' is null" in refused(run_cli, str(lite))  # (before the q_lora_rank it would need)
    plain = spec_of(tmp_path, {**published("DeepSeek-V3"), "index_head_dim": 128, "index_n_heads": 64}, "plain")
    assert not plain.is_sparse_attention
    assert plain.num_parameters == spec_of(tmp_path, published("DeepSeek-V3"), "v3").num_parameters
