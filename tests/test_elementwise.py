"""Each layer's elementwise kernels (sim.serving.elementwise): counted by hand from vLLM's Llama layer, priced in
series with the GEMMs, and the roofline's batch-1 decode against published measurements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import RooflineCompute, StepShape
from sim.serving.compute_backend import gpu_compute_model
from sim.serving.elementwise import ElementwiseCost, elementwise_cost
from sim.serving.kernel_floors import KernelFloors
from sim.specs import gpu_spec, model_spec

US = 1e-6


@pytest.mark.parametrize("tp, elements", [
    # two fused add + RMSNorms (input and residual read, both written: 4 x 4,096 each), SiluAndMul (gate and up read,
    # product written: 3 x 14,336 / TP), the rotary embedding over q and k in place (2 x (32 + 8) heads x 128 / TP)
    (1, 2 * 4 * 4096 + 3 * 14336 + 2 * 40 * 128),
    (2, 2 * 4 * 4096 + 3 * 14336 // 2 + 2 * 40 * 128 // 2),
])
def test_llama_layer_elementwise_kernels_and_bytes_by_hand(tp, elements):
    cost = elementwise_cost(model_spec("llama-3.1-8b"), 2, tp)
    assert cost == ElementwiseCost(4, elements * 2)


def test_mla_adds_its_latent_norms():
    """DeepSeek-V2-Lite (no q_lora_rank): kv_a_layernorm is one more kernel, reading and writing the 512-wide latent;
    its rotary embedding turns the 64-wide rope part of 16 query heads and of the one shared key."""
    m = model_spec("deepseek-v2-lite")
    cost = elementwise_cost(m, 2, 1)
    assert cost.kernels == 5
    width = ((m.num_layers - m.moe_layers) * m.intermediate_size
             + m.moe_layers * (m.num_experts_per_tok * m.moe_intermediate_size + m.shared_expert_intermediate_size)
             ) / m.num_layers
    assert cost.bytes_per_token == pytest.approx(2 * (8 * 2048 + 2 * 512 + 3 * width + 2 * 17 * 64))


def test_a_step_adds_the_elementwise_kernels_in_series():
    """A 4,096-token prefill of Llama-3.1-8B on an H100: the kernels add 32 layers x (4 x the kernel floor + 4,096 x
    172,032 bytes at 0.82 of 3.35 TB/s) = 8.6 ms to the step, whatever the GEMMs' 2-norm of compute and memory;
    the decode windows carry them as each step alone does."""
    floors = KernelFloors.from_us(3.1, 11.1, 4.5)
    priced = RooflineCompute(model_spec("llama-3.1-8b"), gpu_spec("h100-sxm"), 2, 2, flops_efficiency=0.77,
                             bandwidth_efficiency=0.82, floors=floors)
    without = dataclasses.replace(priced)
    without.elementwise = ElementwiseCost(0, 0.0)
    shape = StepShape()
    shape.add_prefill(4096, 0)
    expected = 32 * (4 * 3.1 * US + 4096 * 172032 / (3.35e12 * 0.82))
    assert priced.step_time(shape) - without.step_time(shape) == pytest.approx(expected, rel=1e-9)
    lengths = [7, 800, 3000]
    times = priced.decode_times(StepShape.decode_batch(np.array(lengths)), 20)
    assert times[19] == pytest.approx(priced.step_time(StepShape.decode_batch(np.array(lengths) + 19)), rel=1e-12)


@pytest.mark.parametrize("model, tokens_per_s", [("llama-2-7b", 104.9), ("llama-3.1-8b", 93.83)])
def test_batch_one_decode_against_gpt_fast_on_an_a100(model, tokens_per_s):
    """gpt-fast's published batch-1 decode on one A100-80GB (github.com/pytorch-labs/gpt-fast README, Benchmarks:
    bf16, torch.compile with CUDA graphs, 5-token prompt; the GPU power-limited to 330 W): kvsim's default step at a
    ~100-token KV within 10% (measured 9.53 and 10.66 ms a token; kvsim 9.09 and 10.14 ms)."""
    config = load_config(None, sets=["hardware.gpu=a100-80gb", f"model={model}"])
    step = gpu_compute_model(config).step_time(StepShape.decode_batch(np.array([100])))
    assert step == pytest.approx(1 / tokens_per_s, rel=0.10)


def test_rotary_turns_a_replicated_kv_head_on_every_rank():
    """Qwen3-30B-A3B at TP 8: 32 query heads and 4 KV heads, so each rank holds 4 query heads and one KV head whole
    (vLLM replicates a KV head when TP exceeds their count); the rotary embedding reads and writes 2 x (4 + 1) x 128
    elements a token there, not 2 x (32 + 4) x 128 / 8 (half a KV head)."""
    m = model_spec("qwen3-30b-a3b")
    with_rope = elementwise_cost(m, 2, 8)
    without = elementwise_cost(dataclasses.replace(m, position_encoding="learned"), 2, 8)
    assert with_rope.kernels - without.kernels == 1
    assert with_rope.bytes_per_token - without.bytes_per_token == pytest.approx(2 * 2 * (4 + 1) * 128)
