"""An MoE layer's activation kernels as vLLM 0.33 runs them (sim.serving.elementwise), by hand: the shared experts
are their own MLP with their own SiluAndMul (qwen2_moe.py Qwen2MoeMLP, deepseek_v2.py DeepseekV2MLP), one kernel
beside the routed experts' at any data-parallel degree."""

from __future__ import annotations

import dataclasses

import pytest

from sim.serving.elementwise import ElementwiseKernel, elementwise_cost, moe_block_cost
from tests.test_moe import TINY

# TINY (tests/test_moe.py) with shared experts of width 4, bf16, at TP 2 (experts split by width at D = 1), per token:
# two fused add + RMSNorms 2 x 4 x 8 x 2 B = 128 (2 kernels), the rotary embedding 2 x 2 x 4 x 2 B = 32 (1), the
# shared experts' SiluAndMul 3 x 4 / 2 x 2 B = 12 (1), the routed experts' over 2 pairs 3 x 2 x 6 / 2 x 2 B = 36 (1),
# the top-k 8 x 2 + 2 x (4 + 4) = 32 (1), align and sort 2 x 12 = 24 (2), moe_sum 3 x 8 x 2 = 48 (1), the shared
# experts' add 3 x 8 x 2 = 48 (1): 360 B in 10 kernels (both layers MoE)
SHARED = dataclasses.replace(TINY, shared_expert_intermediate_size=4)


def test_shared_experts_activation_is_its_own_kernel_at_one_rank():
    cost = elementwise_cost(SHARED, 2, 2)
    assert cost.group is None
    assert cost.bytes_per_token == 360
    assert cost.kernels == 10
    # the L2 holds each activation's own bytes: the shared experts' 12 B and the routed experts' 36 B a token
    assert ElementwiseKernel(1, 12) in cost.cached and ElementwiseKernel(1, 36) in cost.cached
    # at 1 µs a kernel and no bytes' time, one layer is the 10 kernels' floors
    assert cost.layer_time(1, 1e-6, float("inf")) == pytest.approx(10e-6)


def test_one_rank_and_a_group_count_the_same_activation_kernels():
    """The same kernels at D = 1 and D = 2: own + group kernels agree (only the tokens they run on differ)."""
    solo, grouped = elementwise_cost(SHARED, 2, 2), elementwise_cost(SHARED, 2, 2, data_parallel_size=2)
    assert solo.kernels == grouped.kernels + grouped.group.kernels == 10


def test_a_bundles_moe_block_counts_the_shared_activation_apart():
    """moe.csv's block: the two activations 12 + 36, top-k 32, align and sort 24, moe_sum 48, the add 48: 200 B in
    7 kernels."""
    block = moe_block_cost(SHARED, 2, 2)
    assert (block.bytes_per_token, block.kernels) == (200, 7)
