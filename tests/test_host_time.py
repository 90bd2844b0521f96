"""The host's part of a step (sim.serving.host_time): serial costs per step and sequence, kernel launches overlapped
with the GPU, none for a step that replays a CUDA graph. Expectations are computed by hand from the formula
host_step + host_sequence x sequences + max(GPU, launch_layer x layers)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import RooflineCompute
from sim.serving.compute_backend import compute_model, gpu_compute_model
from sim.serving.host_time import HostBoundCompute
from sim.serving.step_shape import StepShape

LAYERS = 32  # llama-3.1-8b (the default model)


def models(*sets: str):
    config = load_config(None, sets=list(sets))
    return compute_model(config), gpu_compute_model(config)


def decode_shape(seqs: int, kv: int) -> StepShape:
    return StepShape(decode_seqs=seqs, decode_kv_tokens=seqs * kv, decode_kv_max=kv, decode_kv_min=kv)


def prefill_shape(tokens: int) -> StepShape:
    shape = StepShape()
    shape.add_prefill(tokens, 0)
    return shape


def test_no_host_costs_leave_the_gpu_model_unwrapped():
    timed, gpu = models("serving.enforce_eager=true")  # (no CUDA graphs either: the roofline itself)
    assert isinstance(timed, RooflineCompute)
    assert timed.step_time(decode_shape(4, 100)) == gpu.step_time(decode_shape(4, 100))
    assert not isinstance(models()[0], HostBoundCompute)


def test_launch_bound_eager_decode_step_is_the_host_formula_alone():
    # 32 layers x 500 us = 16 ms of launches, more than the GPU's ~6 ms for 4 sequences of an 8B model on an H100
    timed, gpu = models("serving.enforce_eager=true", "compute.host_step_us=1000", "compute.host_sequence_us=100",
                        "compute.launch_layer_us=500")
    shape = decode_shape(4, 100)
    assert gpu.step_time(shape) < LAYERS * 500e-6
    assert timed.step_time(shape) == pytest.approx(1e-3 + 4 * 100e-6 + LAYERS * 500e-6, rel=1e-12)


def test_gpu_bound_step_adds_only_the_serial_costs():
    """A synchronous engine pays its host work in series with the GPU; under asynchronous scheduling the next step's
    host work (1.4 ms + 0.32 ms of launches) runs during this step's ~6 ms on the GPU, and costs nothing."""
    host = ["serving.enforce_eager=true", "compute.host_step_us=1000", "compute.host_sequence_us=100",
            "compute.launch_layer_us=10"]
    timed, gpu = models(*host, "serving.async_scheduling=false")
    shape = decode_shape(4, 100)
    assert gpu.step_time(shape) > 1.4e-3 + LAYERS * 10e-6
    assert timed.step_time(shape) == pytest.approx(1e-3 + 4e-4 + gpu.step_time(shape), rel=1e-12)
    overlapped, _ = models(*host)  # serving.async_scheduling: true, vLLM's default
    assert overlapped.step_time(shape) == pytest.approx(gpu.step_time(shape), rel=1e-12)


def test_host_bound_step_under_async_scheduling_is_the_host_work():
    """20 ms of host work a step, more than the GPU's ~6 ms: the step takes the host's 20 ms + 4 x 0.1 ms + 32 x 50 us
    of launches, the GPU's time hidden under it."""
    timed, gpu = models("serving.enforce_eager=true", "compute.host_step_us=20000", "compute.host_sequence_us=100",
                        "compute.launch_layer_us=50")
    shape = decode_shape(4, 100)
    assert gpu.step_time(shape) < 20e-3
    assert timed.step_time(shape) == pytest.approx(20e-3 + 4e-4 + LAYERS * 50e-6, rel=1e-12)


def test_a_captured_step_launches_nothing_and_a_larger_one_does():
    # CUDA graphs on (the default): vLLM captures steps up to min(2 x max_num_seqs, 512, max_num_batched_tokens)
    timed, gpu = models("serving.max_num_seqs=64", "compute.launch_layer_us=2000")
    captured, eager = decode_shape(128, 50), prefill_shape(129)
    assert timed.step_time(captured) == pytest.approx(gpu.step_time(captured), rel=1e-12)
    assert gpu.step_time(eager) < LAYERS * 2e-3
    assert timed.step_time(eager) == pytest.approx(LAYERS * 2e-3, rel=1e-12)


@pytest.mark.parametrize("launch_us", [10, 300])  # GPU-bound throughout; launch-bound while the KV is short
@pytest.mark.parametrize("overlapped", ["true", "false"])
def test_decode_window_prices_each_step_as_step_time(launch_us, overlapped):
    timed, _ = models("serving.enforce_eager=true", "compute.host_step_us=700", "compute.host_sequence_us=20",
                      f"compute.launch_layer_us={launch_us}", f"serving.async_scheduling={overlapped}")
    seqs, kv, steps = 96, 3000, 50
    window = timed.decode_times(decode_shape(seqs, kv), steps)
    singles = [timed.step_time(decode_shape(seqs, kv + k)) for k in range(steps)]
    np.testing.assert_allclose(window, singles, rtol=1e-12)


def test_host_costs_lengthen_a_served_run(run_cli, tmp_path):
    """End to end: the same small synchronous run with 2 ms of host time a step takes longer, request for request."""
    import json

    common = ["--preset", "smoke", "--no-plot", "--quiet", "--set", "workload.synthetic.num_requests=20",
              "--set", "serving.async_scheduling=false"]
    outputs = []
    for extra in ([], ["--set", "compute.host_step_us=2000"]):
        out = tmp_path / f"run{len(outputs)}.json"
        status, _, err = run_cli(*common, *extra, "--report-json", out)
        assert status == 0, err
        outputs.append(json.loads(out.read_text()))
    plain, slow = (o["runs"][0]["metrics"]["tpot_s"]["mean"] for o in outputs)
    assert slow > plain + 1.9e-3  # every decode step pays the 2 ms


@pytest.mark.parametrize("key", ["compute.host_step_us", "compute.host_sequence_us", "compute.launch_layer_us"])
def test_check_calibration_refuses_the_host_costs_it_never_reads(run_cli, key):
    """--check-calibration compares a profile's operators with the roofline's, which have no host part: the keys were
    accepted and left its report as it was (exit 0), while its other unread settings are refused."""
    status, _, err = run_cli("--check-calibration", "profiles/rtx4090_llama31_8b_vllm.yaml", "--no-plot", "--quiet",
                             "--set", f"{key}=2000")
    assert status == 2 and f"--set {key}: not used by --check-calibration" in err and len(err.strip().splitlines()) == 1
