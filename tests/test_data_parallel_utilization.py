"""MFU and MBU of a data-parallel group's instances: MFU counts model FLOPs (each rank its own tokens' and a 1/D share of
the group's tokens' experts, as D lone instances would), MBU the bytes its steps were priced with (padding and dummy
steps included), so under the roofline neither exceeds 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sim.config import load_config
from sim.serving.cudagraph import CudagraphSizes, config_cudagraph_sizes
from sim.serving.data_parallel import LockstepGroup
from sim.serving.engine import Engine
from sim.serving.engine_limits import block_size
from sim.serving.moe import DataParallelShare, sequence_parallel_size
from sim.serving.run import run_serving
from sim.serving.step_shape import StepShape
from sim.serving.utilization import WorkCounter, WorkTotals, work_counter
from sim.specs import gpu_spec, model_spec
from tests.test_data_parallel import GROUP
from tests.test_serving import make_trace


def test_an_idle_rank_and_its_peer_each_count_half_the_groups_expert_pairs():
    """Qwen3-30B-A3B (profiles/models.yaml: 48 layers, all MoE, hidden 2,048, 32 query and 4 KV heads of 128, 128
    experts of width 768, 8 a token, vocabulary 151,936), D = 2, TP 1: an 8-token prompt on rank 0, rank 1 idle. Both
    run the CUDA graph of 8 tokens (rank 1's dummy padded to it) and are priced with the fused-MoE kernel's padded rows
    of G = 16 tokens, but the model's work is the prompt's: 8 tokens x 8 experts = 64 (token, expert) pairs of
    2 x 3 x 2,048 x 768 FLOPs, half on each GPU (each holds 64 experts: uniform routing's expectation). The busy rank
    adds its 8 tokens' projections and router, 36 causal (query, key) pairs of attention and one LM-head row; the
    dummy's padded tokens are no model work."""
    result, _ = run_serving(make_trace([0.0], [8], [1]), load_config(None, sets=GROUP), "single")
    busy, idle = result.metrics["instances"]["each"]
    layers, hidden, vocab = 48, 2048, 151_936
    own = 2 * (hidden * 32 * 128 + 2 * hidden * 4 * 128 + 32 * 128 * hidden + hidden * 128)  # q, k, v, o, router
    experts = 8 * 8 / 2 * 2 * 3 * hidden * 768
    attention = 4 * 32 * 128 * 8 * 9 / 2  # 36 causal (query, key) pairs
    head = 2 * vocab * hidden  # the prompt's last token
    assert busy["flops"] == pytest.approx(layers * (8 * own + experts + attention) + head, rel=1e-12)
    # the dummy step: its GPU's half of the prompt's expert pairs; no own token, attention or LM head
    assert idle["flops"] == pytest.approx(layers * experts, rel=1e-12)
    # a forward pass as long as the group's step: a step and busy time of its own
    assert idle["steps"] == busy["steps"] == 1
    assert idle["busy_fraction"] == busy["busy_fraction"] > 0
    assert idle["mfu_busy"] is not None and 0 < idle["mfu_busy"] < busy["mfu_busy"]


def test_a_dummy_step_reads_the_experts_its_share_of_the_group_touches():
    """The idle rank's bytes: per layer the weights of the projections and router, and its 64 experts' share of those
    the group's 16 tokens touch, 128 x (1 - (15/16)^16) / 2, each 3 x 2,048 x 768 bf16 weights."""
    config = load_config(None, sets=GROUP)
    counter = work_counter(config)
    work = WorkTotals()
    share = DataParallelShare(8, 16, 16, 8)
    work.add_dummy_steps(share, 1, 1e-3)
    alone = WorkTotals()
    alone.add_dummy_steps(DataParallelShare(8, 8, 8, 0), 1, 1e-3)  # the same tokens, no peer's: fewer experts touched
    hidden = 2048
    fixed = (hidden * 32 * 128 + 2 * hidden * 4 * 128 + 32 * 128 * hidden + hidden * 128) * 2
    experts = 128 * (1 - (15 / 16) ** 16) / 2 * 3 * hidden * 768 * 2
    assert counter.weight_bytes(work) == pytest.approx(fixed + experts, rel=1e-12)
    assert counter.weight_bytes(alone) < counter.weight_bytes(work)


def test_an_instance_steps_alone_or_in_its_group():
    counter = work_counter(load_config(None, sets=GROUP))
    work = WorkTotals()
    work.add_dummy_steps(DataParallelShare(1, 2, 2, 0), 1, 1e-3)
    work.add_step(StepShape.decode_batch(np.array([10])), 1e-3)
    with pytest.raises(ValueError, match="alone or in its group"):
        counter.flops(work)


# MoE models of several kinds: plain (Qwen3, Mixtral), shared experts and MLA (DeepSeek-V2-Lite), shared experts with a
# gate (Qwen1.5-MoE), sliding-window attention and MXFP4 experts (gpt-oss), block-wise FP8 (MiniMax-M2)
MOE_MODELS = ["qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v2-lite", "qwen1.5-moe-a2.7b", "gpt-oss-20b", "minimax-m2"]


def _counter(model: str, dp: int, tp: int, ep: bool, eager: bool) -> WorkCounter:
    return work_counter(load_config(None, sets=[
        f"model={model}", f"serving.data_parallel_size={dp}", f"serving.tensor_parallel_size={tp}",
        f"hardware.gpus_per_node={dp * tp}", f"serving.num_instances={dp}",
        f"serving.enable_expert_parallel={str(ep).lower()}", f"serving.enforce_eager={str(eager).lower()}"]))


def _step(prefill: int, decodes: int) -> StepShape:
    """A prompt chunk of ``prefill`` tokens after 50 cached ones beside ``decodes`` decodes of 100 to 100 + 7 (k - 1)
    keys (none of either: a dummy step)."""
    shape = StepShape()
    if prefill:
        shape.add_prefill(prefill, 50)
    for k in range(decodes):
        shape.add_decode(100 + 7 * k)
    return shape


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(MOE_MODELS), dp=st.sampled_from([2, 4]), tp=st.sampled_from([1, 2]), ep=st.booleans(),
       eager=st.booleans(), loads=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 40)), min_size=4, max_size=4),
       window=st.integers(2, 6))
# a 1-token prompt beside three idle ranks: the group's graph pads the four to 4 tokens, the experts' block to 16 rows
@example(model="qwen3-30b-a3b", dp=4, tp=1, ep=True, eager=False, loads=[(1, 0), (0, 0), (0, 0), (0, 0)], window=2)
def test_a_groups_ranks_count_the_model_flops_of_as_many_lone_instances(model, dp, tp, ep, eager, loads, window):
    """Theorem (model FLOPs are a sum over tokens, and a group's experts' work is its tokens' k experts each, a 1/D
    share on each rank): D ranks of a data-parallel group, each with its own step (or a dummy step), then a decode
    window of the ranks with decodes (the others dummies), count together the FLOPs that D = 1 instances count for the
    same steps alone, whatever padding (CUDA graphs, dummy tokens, the fused-MoE blocks) the group's steps were priced
    with; expert parallel or the experts split by width over the D x TP GPUs."""
    loads = loads[:dp]
    assume(any(p or d for p, d in loads))
    group, alone = _counter(model, dp, tp, ep, eager), _counter(model, 1, tp, ep, eager)
    graphs = CudagraphSizes() if eager else config_cudagraph_sizes(load_config(None, sets=[f"model={model}"]))
    lockstep = LockstepGroup(Engine(), dp, graphs, sequence_parallel_size(tp, ep))
    ranks, lone = [WorkTotals() for _ in loads], [WorkTotals() for _ in loads]
    shapes = [_step(p, d) for p, d in loads]
    for work, solo, shape, share in zip(ranks, lone, shapes, lockstep.shares([s.tokens or None for s in shapes])):
        if shape.tokens:
            work.add_step(shape, 1e-3, share)
            solo.add_step(shape, 1e-3)
        else:
            work.add_dummy_steps(share, 1, 1e-3)
    firsts = [StepShape.decode_batch(np.arange(d) * 7 + 100) if d else None for _, d in loads]
    if any(firsts):
        shares = lockstep.shares([None if f is None else f.decode_seqs for f in firsts])
        for work, solo, first, share in zip(ranks, lone, firsts, shares):
            if first is None:
                work.add_dummy_steps(share, window, 1e-3)
            else:
                work.add_decode_window(first, window, 1e-3, share)
                solo.add_decode_window(first, window, 1e-3)
    assert sum(group.flops(w) for w in ranks) == pytest.approx(sum(alone.flops(w) for w in lone), rel=1e-12)


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(model=st.sampled_from(MOE_MODELS), gpu=st.sampled_from(["h100-sxm", "a100-80gb"]),
       dp=st.sampled_from([2, 4]), tp=st.sampled_from([1, 2]), pd=st.booleans(), eager=st.booleans(),
       input_mean=st.sampled_from([8, 300, 3000, 8000]), output_mean=st.sampled_from([1, 30]),
       rate=st.sampled_from([0.5, 50.0]), ep=st.booleans())
# a stress run's find: 3,000-token prompts that arrive alone, their rank's 3 peers idle (mfu_busy was 1.26 here: the
# rank was counted all its tokens' expert pairs, priced 1/4 of them and the dummies')
@example(model="mixtral-8x7b", gpu="a100-80gb", dp=4, tp=1, pd=False, eager=False, input_mean=3000, output_mean=1,
         rate=0.5, ep=True)
# the experts split by width over the group's GPUs (serving.enable_expert_parallel false)
@example(model="mixtral-8x7b", gpu="a100-80gb", dp=4, tp=2, pd=False, eager=False, input_mean=3000, output_mean=1,
         rate=0.5, ep=False)
def test_roofline_mfu_and_mbu_while_busy_stay_within_one(model, gpu, dp, tp, pd, eager, input_mean, output_mean,
                                                         rate, ep):
    """Theorem: a roofline step lasts at least its FLOPs at the GPU's peak and its bytes at its bandwidth (each operator
    group's time is at least the larger of the two at efficiencies <= 1), so with bytes counted as priced and model
    FLOPs at most the priced ones (padding priced, not counted), every instance's MFU and MBU while busy are at most 1. (An FP8 checkpoint's GEMMs run at the FP8 peak, MFU is against the BF16 one: the
    bound is their ratio.)"""
    from trace.synthetic import generate

    sets = [f"model={model}", f"hardware.gpu={gpu}", f"serving.data_parallel_size={dp}",
            f"serving.tensor_parallel_size={tp}", f"hardware.gpus_per_node={(2 if pd else 1) * dp * tp}",
            f"serving.num_instances={dp}", f"pd.num_prefill={dp}", f"pd.num_decode={dp}",
            f"serving.enforce_eager={str(eager).lower()}", "serving.num_gpu_blocks=8000",
            f"serving.enable_expert_parallel={str(ep).lower()}",
            "workload.synthetic.kind=agentic", "workload.synthetic.num_requests=16",
            f"workload.synthetic.rate_rps={rate}", f"workload.synthetic.input_tokens_mean={input_mean}",
            f"workload.synthetic.output_tokens_mean={output_mean}",
            "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]
    config = load_config(None, sets=sets)
    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    result, _ = run_serving(trace, config, "pd" if pd else "single")
    spec, device = model_spec(model), gpu_spec(gpu)
    fp8 = spec.weight_quantization == "fp8" and device.fp8_peak_flops
    bound = device.fp8_peak_flops / device.peak_flops if fp8 else 1.0
    each = result.metrics["instances"]["each"]
    assert any(e["steps"] for e in each)
    for e in each:
        if e["steps"]:
            assert e["mfu_busy"] <= bound * (1 + 1e-12), e
            assert e["mbu_busy"] <= 1 + 1e-12, e
