"""Mixture-of-experts models: distinct experts per step, the roofline's MoE layer and a bundle's moe.csv, by hand
(bundles whose layers differ, DeepSeek's: tests/test_bundle_layers.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.model_shape import ModelSpec
from sim.serving.collectives import RingCollectives, TensorParallelComm
from sim.serving.compute import RooflineCompute, StepShape
from sim.serving.compute_backend import gpu_compute_model
from sim.serving.llmservingsim_compute import LLMServingSimCompute
from sim.serving.moe import dispatch_bytes, expected_distinct_experts
from sim.serving.utilization import WorkCounter, WorkTotals
from sim.specs import gpu_spec, model_spec
from tests.conftest import ROOFLINE_EFFICIENCIES

# A tiny MoE: attention 8 x (2 x 8 + 2 x 4) = 192 parameters a layer; router 8 x 8 = 64; one expert 3 x 8 x 6 = 144.
TINY = ModelSpec(name="tiny-moe", num_layers=2, hidden_size=8, num_attention_heads=2, num_kv_heads=1, head_dim=4,
                 intermediate_size=10, vocab_size=16, num_parameters=0, max_position_embeddings=1024, source="test",
                 num_experts=8, num_experts_per_tok=2, moe_intermediate_size=6, num_moe_layers=2)


def test_expected_distinct_experts_by_hand():
    assert expected_distinct_experts(0, 2, 8) == 0
    assert expected_distinct_experts(1, 8, 128) == pytest.approx(8)  # one token: its k experts
    assert expected_distinct_experts(2, 2, 8) == pytest.approx(3.5)  # 8 x (1 - (3/4)^2) = 8 x 7/16
    assert expected_distinct_experts(5, 8, 8) == 8  # every token takes every expert
    assert expected_distinct_experts(10**6, 8, 128) == pytest.approx(128)


@pytest.mark.parametrize("tokens, k, experts", [(2, 2, 4), (3, 2, 5), (2, 3, 6)])
def test_expected_distinct_experts_equals_enumeration(tokens, k, experts):
    """Mean over every equally likely routing (each token a k-subset of the experts) of the experts touched."""
    subsets = list(itertools.combinations(range(experts), k))
    routings = list(itertools.product(subsets, repeat=tokens))
    mean = sum(len(set().union(*routing)) for routing in routings) / len(routings)
    assert expected_distinct_experts(tokens, k, experts) == pytest.approx(mean, rel=1e-12)


def test_active_parameters_by_hand():
    # Mixtral-8x7B: 46,702,792,704 in all, less 32 layers x 6 idle experts x 3 x 4096 x 14336
    assert model_spec("mixtral-8x7b").active_parameters == 46_702_792_704 - 32 * 6 * 3 * 4096 * 14336
    assert model_spec("llama-3-8b").active_parameters == model_spec("llama-3-8b").num_parameters


@pytest.mark.parametrize("fields", [
    dict(num_experts=8, num_experts_per_tok=None, moe_intermediate_size=None, num_moe_layers=None),  # partial
    dict(num_experts_per_tok=9),  # more experts per token than experts
    dict(num_moe_layers=3),  # more MoE layers than layers
])
def test_inconsistent_moe_fields_are_refused(fields):
    with pytest.raises(ConfigError, match="tiny-moe"):
        dataclasses.replace(TINY, **fields)


def _unit_gpu():
    """1 kFLOP/s and 1 kB/s: times in ms are FLOPs and bytes."""
    return dataclasses.replace(gpu_spec("h100-sxm"), peak_flops=1e3, memory_bandwidth=1e3)


def test_roofline_moe_layer_by_hand():
    r = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    # 2 tokens: FLOPs 2 x 192 x 2 tokens + 2 x 64 (router) x 2 = 768 + 256; the experts' rows padded to the fused-MoE
    # block (2 tokens <= 8 experts: 16): an expert is touched with probability 1 - (3/4)^2 = 7/16 and then computes 16
    # rows, 8 x 16 x 7/16 = 56 rows (for 4 routed pairs) x 2 x 144 = 16128: 17152 FLOPs
    # bytes: (192 + 64 + 3.5 distinct experts x 144) x 2 B = 1520; the experts' GEMMs' activations: each token's 8-wide
    # input read, each of its 2 pairs' gate and up (12) written, activation (6) read and output (8) written, 2 tokens x
    # (8 + 2 x 26) x 2 B = 240
    assert r.moe_layer_time(2) == pytest.approx(((17152 / 1e3) ** 2 + (1760 / 1e3) ** 2) ** 0.5)
    assert r.linear_layer_time(2) == pytest.approx(r.moe_layer_time(2))
    # TP 2: projections, experts and activations halve, the router is replicated:
    # FLOPs (768 + 16128) / 2 + 256 = 8704; bytes (96 + 64) x 2 + 3.5 x 144 x 2 / 2 = 824 and the activations, the
    # experts' widths halved but each pair's output whole (partial sums): 2 x (8 + 2 x (6 + 3 + 8)) x 2 B = 168
    r2 = RooflineCompute(TINY, _unit_gpu(), 2, 2, 2, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    assert r2.moe_layer_time(2) == pytest.approx(((8704 / 1e3) ** 2 + (992 / 1e3) ** 2) ** 0.5)


def test_roofline_mixes_dense_and_moe_layers():
    """One dense layer and one MoE layer: the step's linear time is the sum of the two layers' (the mean x 2)."""
    mixed = dataclasses.replace(TINY, num_moe_layers=1)
    r = RooflineCompute(mixed, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    # the dense layer: 192 + 3 x 8 x 10 = 432 parameters; 2 tokens: 1728 FLOPs, 864 + 2 x 2 x (8 + 10) x 2 = 1008 bytes
    dense = ((1728 / 1e3) ** 2 + (1008 / 1e3) ** 2) ** 0.5
    assert r.dense_layer_time(2) == pytest.approx(dense)
    assert 2 * r.linear_layer_time(2) == pytest.approx(dense + r.moe_layer_time(2))


def test_roofline_moe_step_and_decode_window_agree():
    r = RooflineCompute(model_spec("qwen3-30b-a3b"), gpu_spec("h100-sxm"), 2, 2, 1, **ROOFLINE_EFFICIENCIES)
    first = StepShape.decode_batch([100, 200, 300])
    times = r.decode_times(first, 3)
    for step in range(3):
        assert times[step] == pytest.approx(r.step_time(StepShape.decode_batch([100 + step, 200 + step, 300 + step])))


def test_decode_reads_few_experts_and_prefill_reads_all():
    """Qwen3-30B-A3B: one decode token reads its 8 experts' weights, a 4096-token prefill every expert's."""
    m = model_spec("qwen3-30b-a3b")
    r = RooflineCompute(m, gpu_spec("h100-sxm"), 2, 2, 1, **ROOFLINE_EFFICIENCIES)
    fixed = (m.hidden_size * (2 * 4096 + 2 * 512) + m.hidden_size * 128) * 2  # projections + router, bf16
    assert r.moe_weight_bytes(1) == pytest.approx(fixed + 8 * 3 * 2048 * 768 * 2)
    assert r.moe_weight_bytes(4096) == pytest.approx(fixed + 128 * 3 * 2048 * 768 * 2)


def test_utilization_counts_the_moe_roofline():
    """The work counter's FLOPs and bytes of one step are the roofline's own of that step."""
    r = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    work = WorkTotals()
    shape = StepShape()
    shape.add_prefill(2, 0)
    work.add_step(shape, 1.0)
    counter = WorkCounter(r)
    head = 2 * 16 * 8  # LM head FLOPs for one sequence: 2 x vocab x hidden
    assert counter.flops(work) == pytest.approx(2 * 2176 + head + 2 * r.attn_flops_per_pair * shape.prefill_pairs)
    kv = r.kv_bytes_per_token_layer * 2
    # and each layer's elementwise kernels for the 2 tokens, 2 B x (two fused add + RMSNorms 2 x 4 x 8, the 2 experts'
    # SiluAndMul 3 x 2 x 6, the rotary embedding over 2 query heads and 1 KV head 2 x 3 x 4) = 248 B a token, and the
    # MoE's: the top-k reads 8 bf16 logits and writes 2 fp32 weights and 2 int32 ids (16 + 16), moe_align_block_size
    # reads the 2 ids twice and writes 2 slots (24), moe_sum reads 2 x 8 and writes 8 bf16 values (48): 104 B a token
    elementwise = 2 * (2 * (2 * 4 * 8 + 3 * 2 * 6 + 2 * 3 * 4) + (16 + 16) + 24 + 48)
    assert counter.bytes(work) == pytest.approx(2 * (1760 + kv + elementwise) + 16 * 8 * 2)


def test_utilization_counts_the_moe_roofline_at_data_parallel_2():
    """At D = 2 (expert parallel) the counter's bytes of one step are still the roofline's: each rank's fused experts
    write every group token's pairs (vLLM's write_zeros_to_output for the other rank's experts), so the activation
    bytes per own token are not D = 1's (the counter kept D = 1's: 240 B where the roofline priced 432); and the
    experts' elementwise kernels run on the group's tokens too (sim.serving.elementwise)."""
    r = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0,
                        data_parallel_size=2)
    work = WorkTotals()
    shape = StepShape()
    shape.add_prefill(2, 0)
    work.add_step(shape, 1.0)
    # weights: (192 + 64) x 2 B = 512 and the rank's half of the group's 4 tokens' distinct experts,
    # 8 x (1 - (3/4)^4) / 2 = 2.734375 x 144 x 2 B = 787.5; the group's 4 tokens' GEMM activations, each token's
    # 8-wide input read, its 2 pairs' gate and up (2 x 6) and output (8) written on every rank and this rank's half of
    # the pairs' 6-wide activation read: 4 x (8 + 2 x 20 + 2 x 6 / 2) x 2 B = 432
    kv = r.kv_bytes_per_token_layer * 2
    # the elementwise kernels: on the 2 own tokens the norms and rotary embedding (2 B x (2 x 4 x 8 + 2 x 3 x 4)) and
    # the top-k (32 B), on the group's 4 the experts' SiluAndMul (2 B x 3 x 2 x 6), align and sort (24) and moe_sum (48)
    elementwise = 2 * (2 * (2 * 4 * 8 + 2 * 3 * 4) + 32) + 4 * (2 * 3 * 2 * 6 + 24 + 48)
    assert WorkCounter(r).bytes(work) == pytest.approx(2 * (512 + 787.5 + 432 + kv + elementwise) + 16 * 8 * 2)


# ---------------------------------------------------------------- a bundle's moe.csv

MOE_CSV = "tokens,activated_experts,time_us\n1,2,10\n4,2,40\n2,4,50\n4,4,70\n"


def _bundle(root: Path, tp: int, moe_in: int | None) -> Path:
    """Per-layer operators of 1 us each (two norms, qkv, o), attention 5 us, LM head and sampler free."""
    folder = root / f"tp{tp}"
    folder.mkdir(parents=True)
    (root / "meta.yaml").write_text(f"tp_degrees: [{tp}]\n")
    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "o_proj"]
    (folder / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},100,1\n" for op in ops))
    (folder / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,0\nlm_head,9,0\nsampler,1,0\n"
                                             "sampler,9,0\n")
    (folder / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                          "0,0,1,16,5\n0,0,1,32,5\n0,0,8,16,5\n0,0,8,32,5\n")
    if moe_in is not None:
        (root / f"tp{moe_in}").mkdir(exist_ok=True)
        (root / f"tp{moe_in}" / "moe.csv").write_text(MOE_CSV)
    return root


def test_bundle_moe_step_by_hand(tmp_path):
    model = LLMServingSimCompute.load(_bundle(tmp_path, 1, 1), TINY, 1)
    shape = StepShape.decode_batch([16, 16])
    # 2 tokens touch 8 x (1 - (3/4)^2) = 3.5 experts: between the 2- and 4-expert rows (weight 3/4); at 2 tokens the
    # 2-expert row gives 20 us (between 10 at 1 and 40 at 4), the 4-expert row 50 us: 20 + 0.75 x 30 = 42.5 us
    assert model.experts.layer_time(2) == pytest.approx(42.5e-6)
    # per layer: 4 operators (two norms, qkv, o) + attention 5 + MoE 42.5; 2 layers; embedding + final norm 2
    assert model.step_time(shape) == pytest.approx((2 * (4 + 5 + 42.5) + 2) * 1e-6)
    assert model.decode_times(shape, 1)[0] == pytest.approx(model.step_time(shape))
    # below the grid the nearest row (1 token touches 2 experts: 10 us), above it the last segment extended
    assert model.experts.layer_time(1) == pytest.approx(10e-6)
    # 8 tokens: 8 x (1 - (3/4)^8) = 7.20 experts, past the 4-expert row: extrapolated from the 2- and 4-expert rows
    # at 8 tokens (2: 40 + 4 x 10 = 80 us; 4: 70 + 4 x 10 = 110 us)
    activated = 8 * (1 - 0.75**8)
    assert model.experts.layer_time(8) == pytest.approx((80 + (activated - 2) / 2 * 30) * 1e-6)


def test_bundle_at_tp2_shares_the_tp1_moe_table(tmp_path):
    """LLMServingSim profiles moe.csv at TP 1 only; at TP 2 each rank takes half the tokens and half the experts."""
    model = LLMServingSimCompute.load(_bundle(tmp_path, 2, 1), TINY, 2)
    # 4 tokens touch 8 x (1 - (3/4)^4) = 5.46875 experts; a rank: 2 tokens over 2.734375 experts, between the
    # 2- and 4-expert rows with weight 0.3671875: 20 + 0.3671875 x 30 us
    assert model.experts.layer_time(4) == pytest.approx((20 + 0.3671875 * 30) * 1e-6)
    # a table measured at TP 2 itself is read as it is, like the bundle's other tp2 tables
    own = LLMServingSimCompute.load(_bundle(tmp_path / "own", 2, 2), TINY, 2)
    assert own.experts.layer_time(2) == pytest.approx(42.5e-6)


def test_bundle_and_model_must_agree_on_experts(tmp_path):
    with pytest.raises(ConfigError, match="moe.csv: missing: tiny-moe is a mixture of experts"):
        LLMServingSimCompute.load(_bundle(tmp_path / "a", 1, None), TINY, 1)
    with pytest.raises(ConfigError, match="moe.csv: the bundle profiles a mixture of experts, but llama-3-8b is dense"):
        LLMServingSimCompute.load(_bundle(tmp_path / "b", 1, 1), model_spec("llama-3-8b"), 1)
    with pytest.raises(ConfigError, match="up to 4 activated experts, but .* has 2 experts"):
        LLMServingSimCompute.load(_bundle(tmp_path / "c", 1, 1), dataclasses.replace(TINY, num_experts=2), 1)
    with pytest.raises(ConfigError, match=r"tp1/dense.csv: bundle lacks operator\(s\) act_fn, down_proj, gate_up_proj \(for the 1 dense MLP layers\)"):
        LLMServingSimCompute.load(_bundle(tmp_path / "d", 1, 1), dataclasses.replace(TINY, num_moe_layers=1), 1)



# ---------------------------------------------------------------- data-parallel groups sharing the experts


def test_data_parallel_rank_reads_its_share_of_the_groups_experts():
    r = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0,
                        data_parallel_size=2)
    # 2 tokens in the group: 3.5 experts touched, half of them on this GPU: (192 + 64 + 1.75 x 144) x 2 B
    assert r.moe_weight_bytes(2) == pytest.approx((192 + 64 + 1.75 * 144) * 2)
    # FLOPs are this rank's share of the group's pairs: the same as without the group
    alone = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    assert r.moe_flops_per_token == alone.moe_flops_per_token


def test_data_parallel_exchange_replaces_the_moe_all_reduce():
    ring = RingCollectives(bandwidth=1e9, step_latency=0.0)
    # TP 1, D 2: no all-reduces; per MoE layer an all-gather and a reduce-scatter of the group's 2 x 3 tokens x 16 B
    # over 2 GPUs, one ring step of 48 B each: 2 layers x 2 x 48 ns
    comm = TensorParallelComm(ring, 1, 2, 16, 32, moe_layers=2, data_parallel_size=2)
    assert comm.step_time(3, 1) == pytest.approx(2 * 2 * 48e-9)
    # TP 2, D 2: the attention all-reduces (2) and the embedding's (1) over 2 GPUs: 2 steps of 24 B; the logits'
    # all-gather: 1 step of 16 B; per MoE layer the exchange over 4 GPUs of each TP rank's ceil(3 / 2) = 2 tokens
    # (vLLM's MoE sequence parallelism pads 3 to 4): an all-gather and a reduce-scatter of 3 steps of 32 B, then
    # the TP ranks' all-gather of the MoE output, 1 step of 32 B
    comm = TensorParallelComm(ring, 2, 2, 16, 32, moe_layers=2, data_parallel_size=2)
    assert comm.step_time(3, 1) == pytest.approx((3 * 2 * 24 + 16 + 2 * (2 * 3 * 32 + 32)) * 1e-9)
    # a dense model's comm ignores the group
    dense = TensorParallelComm(ring, 2, 2, 16, 32)
    assert dense.step_time(3, 1) == pytest.approx((5 * 2 * 24 + 16) * 1e-9)


def test_an_fp8_groups_dispatch_gathers_fp8_states_and_their_scales():
    """vLLM 0.33's naive DP/EP prepare step quantizes the experts' input before the all-gather and gathers the FP8
    values with their per-block scales and the top-k weights and ids (prepare_finalize/naive_dp_ep.py,
    all2all.py AgRsAll2AllManager.dispatch); the combine reduce-scatters the experts' output in the model dtype."""
    # MiniMax-M2 (hidden 3,072, 128 x 128 blocks, top 8): 3,072 FP8 bytes and 24 fp32 scales; per-tensor FP8 (TINY,
    # hidden 8, top 2): a byte a value, its one scale not gathered; bf16: 2 B a value; each with its k fp32 top-k
    # weights and k int32 expert ids
    assert dispatch_bytes(model_spec("minimax-m2"), 2) == 3072 + 24 * 4 + 8 * 8
    assert dispatch_bytes(dataclasses.replace(TINY, weight_quantization="fp8"), 2) == 8 + 2 * 8
    assert dispatch_bytes(TINY, 2) == 16 + 2 * 8
    # TP 1, D 2, 2 MoE layers of 16-byte states gathered as 10 bytes: per layer an all-gather of 2 x 3 tokens x 10 B
    # over 2 GPUs (one ring step of 30 B) and a reduce-scatter of 2 x 3 x 16 B (one step of 48 B)
    ring = RingCollectives(bandwidth=1e9, step_latency=0.0)
    comm = TensorParallelComm(ring, 1, 2, 16, 32, moe_layers=2, data_parallel_size=2, dispatch_bytes=10)
    assert comm.step_time(3, 1) == pytest.approx(2 * (30 + 48) * 1e-9)
    # the run's comm takes the model's: MiniMax-M2 at D = 2 gathers 3,232 B a token, reduce-scatters 6,144
    config = load_config(None, sets=["model=minimax-m2", "serving.data_parallel_size=2",
                                     "serving.tensor_parallel_size=4"])
    run = gpu_compute_model(config).comm
    assert (run.dispatch_bytes, run.hidden_bytes) == (3232, 6144)


def test_data_parallel_group_holds_the_experts_once():
    m = model_spec("qwen3-30b-a3b")
    experts = 48 * 128 * 3 * 2048 * 768  # 28,991,029,248 routed-expert parameters
    assert m.weight_bytes_per_gpu(2, 1, 4) == pytest.approx((30_532_122_624 - experts + experts / 4) * 2)
    router = 48 * 2048 * 128  # 12,582,912: GateLinear (a ReplicatedLinear), whole on both TP ranks
    assert m.weight_bytes_per_gpu(2, 2, 4) == pytest.approx(
        ((30_532_122_624 - experts - router + experts / 4) / 2 + router) * 2)
    assert model_spec("llama-3-8b").weight_bytes_per_gpu(2, 2, 4) == 8_030_261_248  # dense: TP only


def test_bundle_data_parallel_rank_looks_up_its_share(tmp_path):
    model = LLMServingSimCompute.load(_bundle(tmp_path, 1, 1), TINY, 1, data_parallel_size=2)
    # 2 tokens here, 4 in the group: 5.46875 experts, 2.734375 on this rank, looked up at this rank's 2 tokens
    assert model.experts.layer_time(2) == pytest.approx((20 + 0.3671875 * 30) * 1e-6)


def test_check_calibration_fits_moe_csv_against_the_router_and_experts(tmp_path):
    """A bundle's moe.csv is checked like its other tables; its roofline reference is the router, the row's experts
    and the block's activation and routing kernels (moe.csv times the whole block), and dense.csv's (no MLP in an MoE
    bundle) the attention projections, norms and rotary embedding."""
    from sim.config import load_config
    from sim.serving.calibration import _bundle_tables

    bundle = _bundle(tmp_path, 1, None)
    (bundle / "tp1" / "moe.csv").write_text("tokens,activated_experts,time_us\n1,8,50\n2,8,56\n4,8,57\n2,16,135\n")
    config = load_config(None, sets=["model=qwen3-30b-a3b", "compute.backend=profiled", f"compute.profile={bundle}",
                                     "compute.flops_efficiency=0.6", "compute.bandwidth_efficiency=0.8",
                                     "compute.gemm_floor_us=4"])
    fits = {fit.table: fit for fit in _bundle_tables(bundle, config)}
    moe = fits["tp1/moe.csv (one MoE block)"]
    assert len(moe.measured) == 4 and moe.measured[0] == pytest.approx(50e-6)
    # 1 token, 8 experts (H100 at 0.6 x 989.4 TFLOP/s, 0.8 x 3.35 TB/s): the fused experts compute each of the 8
    # experts' one row padded to a block of 16 (1 token <= 128 experts), 128 rows: FLOPs 2 x (128 x 3 x 2048 x 768
    # + 2048 x 128) = 1,208,483,840; bytes (2048 x 128 + 8 x 4,718,592) x 2 and the GEMMs' activations (2048 +
    # 8 x (1536 + 768 + 2048)) x 2 = 76,095,488; and three GEMM kernels' floors (the router, the fused experts' two) of
    # 4 us each; then the block's
    # own elementwise kernels, 5 floors (SiluAndMul, the top-k, moe_align_block_size's two, moe_sum) and their bytes,
    # all in the L2 (3,133 / 900 of the 3.35 TB/s, sim/specs.py's L2/DRAM ratio, at 0.8): SiluAndMul 3 x 8 x 768 x 2
    # = 36,864, the top-k 128 x 2 + 8 x 8 = 320, the align 96, moe_sum 9 x 2,048 x 2 = 36,864
    expected = (3 * 4e-6 + np.hypot(1_208_483_840 / (0.6 * 989.4e12), 76_095_488 / (0.8 * 3350e9))
                + 5 * 4e-6 + (36_864 + 320 + 96 + 36_864) / (0.8 * 3350e9 * 3133 / 900))
    first = moe.keys.to_dict("records").index({"activated_experts": 8, "tokens": 1})
    assert moe.reference[first] == pytest.approx(expected)
    # the 8-expert row's middle point, predicted from its neighbours at 1 and 4 tokens: 50 + (57 - 50) / 3 us
    second = moe.keys.to_dict("records").index({"activated_experts": 8, "tokens": 2})
    assert moe.model[second] == pytest.approx((50 + (57 - 50) / 3) * 1e-6)
    dense = fits["tp1/dense.csv (one layer's operators)"]
    assert "attention projections" in dense.reference_method
    # a table of expert-parallel grids: its ep = 1 rows are the whole block checked above; a higher degree's grid is
    # one rank's share of a shrunk block, which the roofline does not price: with no ep = 1 rows, no moe.csv check
    (bundle / "tp1" / "moe.csv").write_text("ep,tokens,activated_experts,time_us\n1,1,8,50\n1,2,8,56\n1,4,8,57\n"
                                           "1,2,16,135\n2,1,4,30\n2,4,4,33\n")
    again = {fit.table: fit for fit in _bundle_tables(bundle, config)}["tp1/moe.csv (one MoE block)"]
    assert list(again.measured) == list(moe.measured) and list(again.reference) == list(moe.reference)
    (bundle / "tp1" / "moe.csv").write_text("ep,tokens,activated_experts,time_us\n2,1,4,30\n2,4,4,33\n")
    assert "tp1/moe.csv (one MoE block)" not in {fit.table for fit in _bundle_tables(bundle, config)}


def test_data_parallel_rank_with_unequal_group_load_by_hand():
    from sim.serving.moe import DataParallelShare

    r = RooflineCompute(TINY, _unit_gpu(), 2, 2, 1, flops_efficiency=1.0, bandwidth_efficiency=1.0,
                        data_parallel_size=2)
    # this rank 2 tokens, the group 10 (the other rank 8): projections 2 x 192 x 2 and router 2 x 64 x 2 on its own
    # tokens (1024 FLOPs); its half of the group's routed rows: 10 tokens > 8 / 2 local experts, so blocks of 64 rows,
    # and an expert with n ~ Binomial(10, 1/4) pairs computes 64 rows unless n = 0: 8 x 64 x (1 - (3/4)^10) / 2 rows
    # x 2 x 144 FLOPs; bytes: (192 + 64) x 2 = 512; half of 8 x (1 - (6/8)^10) distinct experts x 144 x 2 B; the
    # experts' GEMMs' activations over the group's 10 tokens, expert parallel: each token's input (8), every pair's
    # gate and up (12) and output (8) written (zeros for the other rank's experts), this rank's half of the pairs'
    # activations (6) read: 10 x (8 + 2 x 20 + 2 x 6 / 2) x 2 B = 1080
    experts = 8 * (1 - (6 / 8) ** 10) / 2
    flops, traffic = 1024 + 8 * 64 * (1 - 0.75 ** 10) / 2 * 2 * 144, 512 + experts * 144 * 2 + 1080
    assert r.moe_layer_time(2, DataParallelShare(2, 10, 10, 10)) == pytest.approx(math.hypot(flops / 1e3, traffic / 1e3))


def test_bundle_with_expert_parallel_grids_reads_the_runs_degree(tmp_path):
    """Later bundles measure one grid per expert-parallel degree (``ep``: one rank running E/ep experts and k/ep of
    each token's assignments over the rows it is given, LLMServingSim docs/docs/profiler/output-bundle.md): a run on
    D x N GPUs reads the ep = D x N grid at the group's rows over its share of their experts; a degree not profiled
    falls back to the ep = 1 grid read as a legacy table; a table without either is refused by name."""
    ep1 = "".join(f"1,{line}\n" for line in MOE_CSV.splitlines()[1:])  # the legacy grid as its ep = 1 rows
    ep2 = "2,2,2,100\n2,8,2,400\n2,2,4,200\n2,8,4,500\n"  # ep 2: rows (tokens) 2..8 over 2..4 local experts
    root = _bundle(tmp_path / "ep", 1, 1)
    (root / "tp1" / "moe.csv").write_text("ep,tokens,activated_experts,time_us\n" + ep1 + ep2)
    model = LLMServingSimCompute.load(root, TINY, 1, data_parallel_size=2)
    # 2 tokens here, 4 in the group: 5.46875 experts, 2.734375 on this rank, at the group's 4 rows: the 2-expert
    # row gives 100 + (4 - 2) / 6 x 300 = 200 us, the 4-expert row 300 us; weight (2.734375 - 2) / 2 = 0.3671875
    assert model.experts.layer_time(2) == pytest.approx((200 + 0.3671875 * 100) * 1e-6)
    # alone (degree 1) the ep = 1 rows as the legacy table: the same 42.5 us as test_bundle_moe_step_by_hand
    assert LLMServingSimCompute.load(root, TINY, 1).experts.layer_time(2) == pytest.approx(42.5e-6)
    # degree 4, not profiled: the ep = 1 rows with each rank's share (test_bundle_data_parallel_rank_looks_up_its_share
    # at D = 4: 2 tokens here, 8 in the group: 7.2 experts, 1.8 on this rank, at its 2 tokens: the 2-expert row, 20 us)
    assert LLMServingSimCompute.load(root, TINY, 1, data_parallel_size=4).experts.layer_time(2) == pytest.approx(20e-6)
    (root / "tp1" / "moe.csv").write_text("ep,tokens,activated_experts,time_us\n" + ep2)
    with pytest.raises(ConfigError, match=r"moe.csv: measured at expert-parallel degrees \[2\], not this run's 4"):
        LLMServingSimCompute.load(root, TINY, 1, data_parallel_size=4)


def test_a_dense_models_roofline_imports_no_scipy_special():
    """scipy.special (the padded rows' binomial tails) is imported by an MoE step alone: at import with the roofline
    it cost every run ~0.2 s of start-up and 11 MiB (bench_serving single x1: 2.1 -> 2.3 s)."""
    code = ("import sys, main\n"
            "from sim.serving.compute import RooflineCompute, StepShape\n"
            "from sim.specs import gpu_spec, model_spec\n"
            f"efficiencies = {ROOFLINE_EFFICIENCIES!r}\n"
            "RooflineCompute(model_spec('llama-3.1-8b'), gpu_spec('h100-sxm'), 2, 2, 1, **efficiencies).step_time("
            "StepShape.decode_batch([100, 200]))\n"
            "assert 'scipy.special' not in sys.modules\n"
            "RooflineCompute(model_spec('qwen3-30b-a3b'), gpu_spec('h100-sxm'), 2, 2, 1, **efficiencies).step_time("
            "StepShape.decode_batch([100, 200]))\n"
            "assert 'scipy.special' in sys.modules\n")  # (the check itself sees the import)
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
