"""The roofline's efficiencies have one source, the config's ``compute`` section: ``RooflineCompute`` has no default
for them (a caller that forgot them silently got 0.6 and 0.8 where a run's are 0.77 and 0.82)."""

from __future__ import annotations

import pytest

from sim.serving.compute import RooflineCompute
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

