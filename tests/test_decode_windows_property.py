"""A seeded property test of the decode-window fast path: a run with windows is the same run as with single steps
(``MAX_WINDOW_STEPS`` 1), every metric but ``timing`` (floats to 1e-9: a window sums its steps' times in another
order), the time series included, over a handful of small configs drawn across the modes, async scheduling on and off,
chunked prefill, tight KV memory (preemptions, PD transfers waiting for decode memory) and DRAM/SSD tiers. The
hand-picked cases are tests/test_serving.py's and tests/test_timeline_windows.py's. 8 draws, ~3 s warm; before e659cca
(a request read during a window joined the running list one step late under async scheduling) 4 of them failed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim.serving.decode_windows
from sim.cluster.run import run_cluster
from sim.serving.run import run_serving
from tests.test_cluster import _trace_and_config

MODES = ("single", "pd", "cluster", "cluster-pd", "single", "pd", "cluster-pd", "pd")


def _draw(index: int) -> tuple[str, list[str]]:
    """The ``index``-th config: its mode in turn, KV memory tight at odd indices (preemptions; PD transfers wait for
    decode memory) with a small DRAM tier before an SSD, async scheduling off at index 1 and 4; the rest drawn (seeded
    by the index)."""
    r = np.random.default_rng([64, index])

    def pick(options):
        return options[int(r.integers(len(options)))]

    mode = MODES[index]
    tight = index % 2 == 1
    sets = ["workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty",
            f"workload.synthetic.num_requests={int(r.integers(40, 81))}",
            f"workload.synthetic.turns_mean={pick([4, 8])}", "workload.synthetic.think_time_median_s=0.5",
            f"workload.synthetic.rate_rps={pick([20, 40, 80])}",
            f"workload.synthetic.input_tokens_mean={pick([150, 300])}",
            f"workload.synthetic.output_tokens_mean={pick([40, 80])}",
            f"serving.num_gpu_blocks={pick([150, 200]) if tight else pick([400, 1000])}",
            f"cache.tiers.dram.capacity_gib={0.02 if tight else pick([0, 8])}",
            f"cache.tiers.ssd.capacity_gib={pick([0.05, 1]) if tight else 0}", f"seed={int(r.integers(1000))}"]
    if index in (1, 4):
        sets.append("serving.async_scheduling=false")
    if r.random() < 0.5:
        sets.append(f"serving.max_num_batched_tokens={pick([128, 256, 512])}")
    if mode == "single":
        sets.append(f"serving.num_instances={int(r.integers(1, 4))}")
    if mode.endswith("pd"):
        sets += [f"pd.transfer={pick(['push', 'pull', 'layerwise'])}", f"pd.num_prefill={int(r.integers(1, 3))}",
                 f"pd.num_decode={int(r.integers(1, 3))}"]
    if mode.startswith("cluster"):
        sets += ["cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=4",
                 f"cluster.router={pick(['prefix-aware', 'least-loaded', 'round-robin'])}"]
    return mode, sets


def _differences(got, want, where: str = "") -> list[str]:
    if isinstance(want, dict):
        keys = set(got) | set(want)
        return [d for k in sorted(keys, key=str) if (where, k) != ("", "timing")
                for d in (_differences(got[k], want[k], f"{where}.{k}") if k in got and k in want
                          else [f"{where}.{k}: in one run only"])]
    if isinstance(want, (list, tuple, np.ndarray)):
        got, want = list(got), list(want)
        if len(got) != len(want):
            return [f"{where}: {len(got)} values != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float):
        same = math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(want))
        return [] if same else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def _window_differences(monkeypatch, mode: str, sets: list[str]) -> list[str]:
    """How a run with decode windows differs from the same run with single steps (none: the invariant holds)."""
    trace, config = _trace_and_config(sets)

    def run():
        if mode.startswith("cluster"):
            return run_cluster(trace, config, pd=mode == "cluster-pd")[0].metrics
        return run_serving(trace, config, mode)[0].metrics

    windowed = run()
    monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", 1)
    stepped = run()
    assert windowed["instances"]["steps"] > 0
    return _differences(windowed, stepped)


@pytest.mark.parametrize("index", range(len(MODES)))
def test_a_drawn_runs_decode_windows_give_what_single_steps_give(monkeypatch, index):
    mode, sets = _draw(index)
    diffs = _window_differences(monkeypatch, mode, sets)
    assert not diffs, (mode, sets, diffs[:10])


def test_blocks_a_window_step_claims_together_leave_a_spanned_cache_one_at_a_time(monkeypatch):
    # A wider search's draw, shrunk: SIEVE spans HBM and a 10-block DRAM, and at one step start two sequences cross a
    # block boundary. Single steps resize the HBM cache at each one's allocation (133 -> 132 -> 131 blocks); the
    # window resized it once by two, and a spanned policy's union victims all leave before the tiers settle, so it
    # wrote one DRAM block fewer (bytes_written 2,168,455,168 vs the single steps' 2,170,552,320)
    sets = ["model=llama-3.1-8b", "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty",
            "workload.synthetic.turns_mean=2", "workload.synthetic.think_time_median_s=0.5",
            "workload.synthetic.rate_rps=20", "workload.synthetic.input_tokens_mean=300",
            "workload.synthetic.output_tokens_mean=20", "workload.synthetic.num_requests=188", "seed=807",
            "serving.num_gpu_blocks=200", "cache.tiers.dram.capacity_gib=0.02", "cache.tiers.ssd.capacity_gib=0",
            "workload.outputs_in_next_turn=false", "cache.policy=sieve", "serving.num_instances=1"]
    assert _window_differences(monkeypatch, "single", sets) == []
