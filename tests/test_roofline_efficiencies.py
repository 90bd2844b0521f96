"""The roofline's efficiencies have one source, the config's ``compute`` section: ``RooflineCompute`` has no default
for them (a caller that forgot them silently got 0.6 and 0.8 where a run's are 0.77 and 0.82), the timed roofline
takes the config's, and the work counter's counts are the same whatever they are."""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.compute import RooflineCompute
from sim.serving.compute_backend import roofline_compute
from sim.serving.step_shape import StepShape
from sim.serving.utilization import WorkTotals, work_counter
from sim.specs import gpu_spec, model_spec


def test_a_roofline_without_its_efficiencies_is_refused():
    """Left out, or given by position (tensor_parallel_size's neighbours), the efficiencies are a TypeError, not a
    placeholder value."""
    model, gpu = model_spec("llama-3.1-8b"), gpu_spec("h100-sxm")
    with pytest.raises(TypeError, match="flops_efficiency"):
        RooflineCompute(model, gpu, 2, 2, 1)
    with pytest.raises(TypeError, match="bandwidth_efficiency"):
        RooflineCompute(model, gpu, 2, 2, 1, flops_efficiency=0.77)
    with pytest.raises(TypeError, match="positional"):
        RooflineCompute(model, gpu, 2, 2, 1, 0.77, 0.82)
    r = RooflineCompute(model, gpu, 2, 2, 1, flops_efficiency=0.5, bandwidth_efficiency=0.25)
    assert (r.peak, r.bandwidth) == (gpu.peak_flops * 0.5, gpu.memory_bandwidth * 0.25)


def test_the_timed_roofline_takes_the_configs_efficiencies():
    """``roofline_compute`` (every roofline a run times with) prices at compute.flops_efficiency and
    bandwidth_efficiency: H100 SXM at 0.5 of 989.4 TFLOP/s and 0.25 of 3.35 TB/s (profiles/gpus.yaml's h100-sxm)."""
    sets = ["compute.flops_efficiency=0.5", "compute.bandwidth_efficiency=0.25", "hardware.gpu=h100-sxm"]
    r = roofline_compute(load_config(None, sets=sets), 1)
    assert r.peak == pytest.approx(0.5 * 989.4e12, rel=1e-12)
    assert r.bandwidth == pytest.approx(0.25 * 3350e9, rel=1e-12)


@pytest.mark.parametrize("model, tp", [("llama-3.1-8b", 1), ("qwen3-30b-a3b", 2)])
def test_the_work_counter_counts_the_same_whatever_the_efficiencies(model, tp):
    """MFU and MBU count model FLOPs and bytes: no efficiency or kernel floor of the config changes them."""
    work = WorkTotals()
    step = StepShape()
    step.add_prefill(700, 300)
    step.add_decode(4000)
    work.add_step(step, 0.01)
    work.add_decode_window(StepShape.decode_batch([5, 900, 33]), 40, 0.2)
    base = [f"model={model}", f"serving.tensor_parallel_size={tp}"]
    counts = []
    for sets in ([], ["compute.flops_efficiency=0.3", "compute.bandwidth_efficiency=0.4",
                      "compute.attention_efficiency=0.2", "compute.gemm_floor_us=50", "compute.attention_tile_us=9"]):
        counter = work_counter(load_config(None, sets=base + sets))
        counts.append((counter.flops(work), counter.bytes(work)))
    assert counts[0] == counts[1] and min(counts[0]) > 0
