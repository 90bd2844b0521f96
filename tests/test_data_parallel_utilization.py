"""MFU and MBU of a data-parallel group's instances: each GPU is counted the work its steps were priced with (its share
of the group's expert rows, dummy steps included), so under the roofline neither exceeds 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sim.config import load_config
from sim.serving.engine_limits import block_size
from sim.serving.moe import DataParallelShare
from sim.serving.run import run_serving
from sim.serving.step_shape import StepShape
from sim.serving.utilization import WorkTotals, work_counter
from sim.specs import gpu_spec, model_spec
from tests.test_data_parallel import GROUP
from tests.test_serving import make_trace


def test_an_idle_rank_and_its_peer_each_count_half_the_groups_padded_expert_rows():
    """Qwen3-30B-A3B (profiles/models.yaml: 48 layers, hidden 2,048, 32 query and 4 KV heads of 128, 128 experts of
    width 768, 8 a token, vocabulary 151,936), D = 2, TP 1: an 8-token prompt on rank 0, rank 1 idle. Both run the
    CUDA graph of 8 tokens (rank 1's dummy padded to it), so the MoE layers route G = 16 tokens. Each rank holds 64
    experts (expert parallel), so vLLM's fused-MoE block is BM = 16 (G <= 64), and an expert's pairs n <= 16 fill one
    block when n > 0: the group's padded rows are 128 x 16 x P(n > 0) = 2,048 x (1 - (15/16)^16) (n ~ Binomial(16,
    8/128)), half of them on each GPU, each row 2 x 3 x 2,048 x 768 FLOPs (the counter credited the busy rank its own
    8 tokens' 64 pairs, the idle one nothing)."""
    result, _ = run_serving(make_trace([0.0], [8], [1]), load_config(None, sets=GROUP), "single")
    busy, idle = result.metrics["instances"]["each"]
    layers, hidden, vocab = 48, 2048, 151_936
    own = 2 * (hidden * 32 * 128 + 2 * hidden * 4 * 128 + 32 * 128 * hidden + hidden * 128)  # q, k, v, o, router
    experts = 2048 * (1 - (15 / 16) ** 16) / 2 * 2 * 3 * hidden * 768
    attention = 4 * 32 * 128 * 8 * 9 / 2  # 36 causal (query, key) pairs
    head = 2 * vocab * hidden  # the prompt's last token
    assert busy["flops"] == pytest.approx(layers * (8 * own + experts + attention) + head, rel=1e-12)
    # the dummy step: the same 8 padded tokens through the layers and the experts' share, no attention, no LM head
    assert idle["flops"] == pytest.approx(layers * (8 * own + experts), rel=1e-12)
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
    group's time is at least the larger of the two at efficiencies <= 1), so counted as priced, every instance's MFU
    and MBU while busy are at most 1. (An FP8 checkpoint's GEMMs run at the FP8 peak, MFU is against the BF16 one: the
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
