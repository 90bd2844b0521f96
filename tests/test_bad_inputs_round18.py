"""Bad input, round 18 (helper hfuzz12): the leftovers of round 17 (GPU specs and link overrides, plans and sweeps'
empty sections, hand-edited journals) and the surfaces least fuzzed (trace encodings, output paths, odd flag pairs).
Each case ran at exit 0 on a value no real part or tool has, or crashed, where one line and exit 2 belonged."""

from __future__ import annotations

import pytest

from sim.errors import ConfigError


def test_a_link_override_past_the_gpus_memory_bandwidth_is_refused(run_cli):
    # hardware.gpu_link_gbps had no upper bound: 10^30 GB/s beside an H100 (3,350 GB/s of HBM3) ran its collectives
    # free at exit 0. An RTX 4090's GDDR6X gives 1,008 GB/s (profiles/gpus.yaml, NVIDIA's Ada whitepaper): a link at
    # that rate is the what-if's limit and still runs; a GB/s past it is refused, naming the key and both rates
    from sim.config import load_config
    from sim.serving.compute_backend import compute_model

    base = ["hardware.gpu=rtx4090", "serving.tensor_parallel_size=2"]
    compute_model(load_config(None, sets=[*base, "hardware.gpu_link_gbps=1008"]))
    with pytest.raises(ConfigError, match=r"hardware.gpu_link_gbps 1009 is above rtx4090's memory bandwidth \(1008 "):
        compute_model(load_config(None, sets=[*base, "hardware.gpu_link_gbps=1009"]))
    status, _, err = run_cli("--cluster", "--pd", "--preset", "smoke", "--quiet", "--no-plot",
                             "--set", "hardware.gpu_link_gbps=1e30")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "hardware.gpu_link_gbps 1e+30" in err and "(3350 GB/s)" in err, err
