"""A data-parallel group's MoE kernels run on the group's tokens (sim.serving.elementwise), by hand from vLLM 0.33's
modular fused-MoE path: the top-k on the rank's own tokens before the all-gather (MoERunner._apply_quant_method),
then on the gathered tokens the experts' align and sort, activation (their whole G x k-row intermediate, each pair
at the whole expert width: expert parallel) and moe_sum (experts/triton_moe.py TritonExperts.apply), the shared
experts and their add back on the own tokens after the reduce-scatter (MoERunner.forward)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.serving.compute import RooflineCompute, StepShape
from sim.serving.elementwise import ElementwiseCost, elementwise_cost
from sim.serving.moe import DataParallelShare
from sim.specs import gpu_spec
from tests.test_moe import TINY

# TINY (tests/test_moe.py): hidden 8, 2 query heads and 1 KV head of 4, 8 experts, top 2, expert width 6; both
# layers MoE. At TP 2, bf16, per token of the rank's own: two fused add + RMSNorms 2 x 4 x 8 x 2 B = 128, the rotary
# embedding over 1 query head and 1 KV head 2 x 2 x 4 x 2 B = 32, the top-k reading 8 bf16 logits and writing 2 fp32
# weights and 2 int32 ids 16 + 16 = 32: 192 B. Per token of the group's: SiluAndMul reading gate and up and writing
# the product over 2 pairs at the whole width 6 (not 6 / TP: expert parallel), 3 x 2 x 6 x 2 B = 72; align and sort
# each reading the 2 ids and writing 2 slots (the mean of the two: 1.5 x 2 x 4 B each) = 24; moe_sum reading 2 x 8
# and writing 8 bf16 values = 48: 144 B.
OWN, GROUP = 192, 144
# and the shared experts (width 4) of an FP8 checkpoint (per-tensor: a quantization reads the model dtype and writes
# a byte, 3 B an element), on the own tokens: their SiluAndMul 3 x 4 / 2 x 2 B = 12, their add to the routed sum
# (reads both, writes the output) 3 x 8 x 2 B = 48, the quantizations of the inputs of qkv_proj (8), o_proj
# (2 x 4 / 2), the experts' w13 (8, before the gather), the shared gate_up (8) and down (4 / 2): 30 x 3 B = 90;
# on the group's, the experts' w2 input, 2 pairs at the whole width 6: 12 x 3 B = 36
SHARED_FP8 = dataclasses.replace(TINY, shared_expert_intermediate_size=4, weight_quantization="fp8")
SHARED_OWN, SHARED_GROUP = OWN + 12 + 48 + 90, GROUP + 36


def _roofline(model=TINY, data_parallel_size: int = 2) -> RooflineCompute:
    """1 kB/s, no L2 and no kernel floors: a layer's elementwise seconds are its bytes / 1,000."""
    gpu = dataclasses.replace(gpu_spec("h100-sxm"), peak_flops=1e3, memory_bandwidth=1e3, l2_bytes=None)
    return RooflineCompute(model, gpu, 2, 2, 2, flops_efficiency=1.0, bandwidth_efficiency=1.0,
                           data_parallel_size=data_parallel_size)


@pytest.mark.parametrize("model, own, group, kernels", [
    (TINY, OWN, GROUP, (4, 4)),  # own: 2 norms, rotary, top-k; group: activation, align, sort, moe_sum
    (SHARED_FP8, SHARED_OWN, SHARED_GROUP, (11, 5)),  # + the shared activation and add, 5 quantizations; + 1
])
def test_a_groups_moe_layer_by_hand(model, own, group, kernels):
    """Own T = 3 tokens in a group of G = 7: every MoE layer moves 3 x own + 7 x group bytes."""
    cost = elementwise_cost(model, 2, 2, data_parallel_size=2)
    assert (cost.bytes_per_token, cost.group.bytes_per_token) == (own, group)
    assert (cost.kernels, cost.group.kernels) == kernels
    assert cost.step_bytes(3, 7) == 3 * own + 7 * group
    r = _roofline(model)
    assert r.elementwise_time(3, DataParallelShare(3, 7, 7, 7)) == pytest.approx((3 * own + 7 * group) / 1e3, rel=1e-12)


def test_one_rank_alone_keeps_every_kernel_on_its_tokens():
    """D = 1 (and a dense model at any D): no group part; the activation at the TP-split width 6 / 2."""
    solo = elementwise_cost(TINY, 2, 2)
    assert solo.group is None and solo.bytes_per_token == OWN + 3 * 2 * 3 * 2 + 24 + 48
    assert elementwise_cost(dataclasses.replace(TINY, num_experts=None, num_experts_per_tok=None,
                                                moe_intermediate_size=None, num_moe_layers=None),
                            2, 2, data_parallel_size=2).group is None


def test_steps_and_decode_windows_carry_the_groups_kernels():
    """A 3-token prefill and a 3-sequence decode window of a rank whose group runs 7 tokens: each adds 2 layers x
    (3 x 192 + 7 x 144) B at 1 kB/s to the step, the window's every step as the single step; without a share (the
    planner's, calibration's) the group is D = 2 ranks like this one, G = 6."""
    r = _roofline()
    without = dataclasses.replace(r)
    without.elementwise = ElementwiseCost(0, 0.0)
    share = DataParallelShare(3, 7, 7, 7)
    layers = 2 * (3 * OWN + 7 * GROUP) / 1e3
    prefill = StepShape()
    prefill.add_prefill(3, 0)
    assert r.step_time(prefill, share) - without.step_time(prefill, share) == pytest.approx(layers, rel=1e-9)
    decode = StepShape.decode_batch(np.array([5, 9, 20]))
    added = r.decode_times(decode, 4, share) - without.decode_times(decode, 4, share)
    assert added == pytest.approx([layers] * 4, rel=1e-9)
    assert r.elementwise_time(3) == pytest.approx((3 * OWN + 6 * GROUP) / 1e3, rel=1e-12)
