"""One policy spanning one serving instance's tiers (``sim.cache.span``) through a whole run: the scheduler's takes,
frees, top-tier resizes and preemptions, checked against the pure-Python reference policy spanning the same tiers on
the generic path (tests/reference), report for report, and against each tier's own counters."""

from __future__ import annotations

import json

import pytest

import sim.serving.run as serving_run
from sim.cache.hooked import HookedMultiTierCache
from sim.cache.multitier import build_cache
from tests.reference import REFERENCE

# 100 system-prompt requests on one instance of 150 KV blocks over DRAM 32, SSD 128 and EIC 32 blocks (2 MiB blocks
# of Llama-3.1-8B): preemptions, hits in every tier
ARGV = ["--preset", "smoke", "--workload-limit", "100", "--set", "workload.synthetic.kind=system-prompt",
        "--set", "workload.synthetic.input_tokens_mean=1024", "--set", "serving.num_instances=1",
        "--set", "serving.num_gpu_blocks=150", "--set", "serving.max_num_seqs=8",
        "--set", "cache.tiers.dram.capacity_gib=0.0625", "--set", "cache.tiers.ssd.capacity_gib=0.25",
        "--set", "cache.tiers.eic.capacity_gib=0.0625"]


def _run(run_cli, path, policy: str) -> dict:
    status, _, err = run_cli(*ARGV, "--policy", policy, "--quiet", "--no-plot", "--report-json", path)
    assert status == 0, err
    report = json.loads(path.read_text())
    report.pop("timing")
    return report


@pytest.mark.parametrize("policy", ["arc", "s3fifo", "sieve", "lfu", "fifo", "belady"])
def test_a_serving_run_spanning_its_tiers_equals_the_reference_policy_spanning_them(run_cli, tmp_path, monkeypatch,
                                                                                    policy):
    caches = []

    def recorded(*args, **kwargs):
        caches.append(build_cache(*args, **kwargs))
        return caches[-1]

    monkeypatch.setattr(serving_run, "build_cache", recorded)
    compiled = _run(run_cli, tmp_path / "compiled.json", policy)
    (cache,) = caches
    assert cache.span >= 0
    metrics = compiled["runs"][0]["metrics"]
    assert metrics["preemptions"] > 0 and all(metrics["tier_hit_ratio"][t] > 0 for t in ("hbm", "dram", "ssd"))
    # each tier holds what entered it less what left it by a counted move (a take out of HBM is counted nowhere)
    for level, tier in enumerate(cache.tiers[1:], 1):
        s = tier.stats
        assert len(cache.resident(level)) == s.insertions - s.evictions - s.demotions - s.promotions - s.prefetches
    assert sum(len(cache.resident(level)) for level in range(len(cache.tiers))) == cache.arena.resident_count(
        cache.span)

    def generic(tiers, block_bytes, inclusive=False, track_positions=False, num_blocks=None, copy_from=None,
                copy_bytes=None, read_copies=1, span=False):
        assert span and copy_from is None
        cls = REFERENCE[tiers[0].policy]
        total = sum(t.arena.built_capacity(t.index) for t in tiers)
        hook = cls(total, next_use=tiers[0].next_use) if cls.needs_future else cls(total)
        cache = HookedMultiTierCache(tiers, block_bytes, inclusive, track_positions, read_copies=read_copies,
                                     span=True, span_hook=hook)
        assert cache.spanned is not None
        return cache

    monkeypatch.setattr(serving_run, "build_cache", generic)
    assert _run(run_cli, tmp_path / "reference.json", policy) == compiled
