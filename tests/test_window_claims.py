"""A decode window's reserved blocks leave the HBM cache as their steps start (sim.serving.window_claims); only a start
that pushes blocks out of HBM gets an event. The oracle: the same run with an event at every start (the cache, asked
whether its blocks fit, always says no), which is how every start ran before: the reports must be identical, with
starts that push blocks out in both (so the runs judged do reach the case skipped)."""

from __future__ import annotations

import json

import pytest

from sim.cache.multitier import MultiTierCache
from sim.cluster.run import run_cluster
from sim.config import load_config
from sim.serving import window_claims
from sim.serving.instance import Instance
from sim.serving.run import run_serving
from tests.test_cluster import CLUSTER_64, _trace_and_config
from tests.test_serving import _multi_turn_config, _synthetic, make_trace


def _counted(monkeypatch) -> dict[str, int]:
    """Count the starts whose event ran, and those of them that pushed blocks out of HBM."""
    counts = {"events": 0, "pushed_out": 0}
    claim = window_claims.WindowClaims._claim

    def counting(self, k, version):
        if version != self._version:
            return claim(self, k, version)
        top = self.kv.cache.tiers[0]
        before = top.stats.demotions + top.stats.evictions
        claim(self, k, version)
        counts["events"] += 1
        counts["pushed_out"] += top.stats.demotions + top.stats.evictions > before

    monkeypatch.setattr(window_claims.WindowClaims, "_claim", counting)
    return counts


def _same_with_an_event_at_every_start(monkeypatch, run) -> tuple[dict, dict]:
    counts = _counted(monkeypatch)
    lazy = json.dumps(run(), sort_keys=True, default=str)
    lazy_counts = dict(counts)
    counts.update(events=0, pushed_out=0)
    monkeypatch.setattr(MultiTierCache, "fits", lambda self, capacity: False)
    every = json.dumps(run(), sort_keys=True, default=str)
    assert lazy == every
    return lazy_counts, counts


@pytest.mark.parametrize("mode,extra", [
    ("single", ["serving.num_gpu_blocks=600"]),
    ("pd", ["pd.num_prefill=1", "pd.num_decode=2", "serving.num_gpu_blocks=600"]),
    ("single", ["cache.policy=arc", "serving.num_gpu_blocks=500", "cache.tiers.dram.capacity_gib=0.05"]),
    # a data-parallel group: its members' windows share their steps' times
    ("single", ["model=qwen3-30b-a3b", "serving.num_instances=2", "serving.data_parallel_size=2",
                "cluster.router=round-robin", "serving.num_gpu_blocks=600"]),
], ids=["single", "pd", "arc-small-dram", "data-parallel"])
def test_a_serving_run_is_the_same_with_an_event_at_every_start(monkeypatch, mode, extra):
    config = _multi_turn_config(*extra)
    trace = _synthetic(config)
    lazy, every = _same_with_an_event_at_every_start(monkeypatch, lambda: run_serving(trace, config, mode)[0].metrics)
    assert lazy["pushed_out"] == every["pushed_out"] > 0  # the same starts pushed blocks out ...
    assert every["events"] > lazy["events"]  # ... and the others ran no event


def test_a_cluster_run_is_the_same_with_an_event_at_every_start(monkeypatch):
    trace, config = _trace_and_config(["workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=600",
                                       "workload.synthetic.turns_mean=10", *CLUSTER_64, "serving.num_gpu_blocks=300",
                                       "cache.tiers.dram.capacity_gib=0.1"])
    lazy, every = _same_with_an_event_at_every_start(monkeypatch, lambda: run_cluster(trace, config)[0].metrics)
    assert lazy["pushed_out"] == every["pushed_out"] > 0
    assert every["events"] > lazy["events"]


def test_a_window_holds_at_most_one_start_event_and_none_while_hbm_has_room(monkeypatch):
    """A first request's 6 full prompt blocks are cached when it ends; a second, of other blocks, decodes 300 tokens
    in 16-token blocks, a block every 16 steps (18 starts); a third repeats the first's prompt (blocks repeat: the
    pool caches). With 1,000 blocks nothing is pushed out: no event; with 30 (the second holds 7 + 19 by its end) the
    first's cached blocks are pushed out as its last steps start: one event in the heap at a time."""
    prompt = list(range(7))  # 100 tokens: 7 blocks, the last partial
    trace = make_trace([0.0, 100.0, 200.0], [100, 100, 100], [2, 300, 2],
                       block_lists=[prompt, [7 + b for b in prompt], prompt])
    run_window = Instance.run_window
    for blocks, heaped in ((1000, 0), (30, 1)):
        in_heap = []

        def counting(self, window, share=None):
            run_window(self, window, share)
            in_heap.append(sum(getattr(e[3], "__name__", "") == "_claim" for e in self.engine._heap))

        monkeypatch.setattr(Instance, "run_window", counting)
        config = load_config(None, sets=["serving.num_instances=1", f"serving.num_gpu_blocks={blocks}",
                                         "serving.block_size=16"])
        result, _ = run_serving(trace, config, "single")
        assert result.metrics["requests_completed"] == 3
        assert in_heap and max(in_heap) == heaped, (blocks, in_heap)
