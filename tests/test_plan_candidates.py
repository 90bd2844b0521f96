"""The planner's search space by hand: the prefill:decode splits of a GPU count, and the miss-ratio-curve levels
count each tier's copies as the candidate's shape has them: HBM once per instance that holds prefixes (PD: the
prefill instances), DRAM and SSD once per node, EIC once per rack (``experiments.plan_candidates.mrc_levels``).
Checked against a brute-force LRU over a stream whose hit ratio at capacity c is c / 20, so every level names its
capacity; and each candidate's curve is of the lookups its own runs make, each level a cache-only replay."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# blocks 1..10, then 10 down to 1: the second visit of block k has a stack distance of 11 - k, so an LRU cache of c
# blocks (c <= 10) hits exactly c of the 20 accesses
PROMPTS = [[b] for b in range(1, 11)] + [[b] for b in range(10, 0, -1)]


def _lru_hit_ratio(stream: list[int], capacity: int) -> float:
    """Hits / accesses of one LRU cache of ``capacity`` blocks (the oracle: no curve)."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for block in stream:
        if block in cache:
            hits += 1
            cache.move_to_end(block)
        else:
            cache[block] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / len(stream)


def _levels_at(capacities: list[int]) -> list[float]:
    stream = [b for p in PROMPTS for b in p]
    return [_lru_hit_ratio(stream, c) for c in capacities]


def test_a_fleet_candidates_curve_counts_dram_per_node_and_eic_per_rack():
    """One rack of two one-GPU nodes: HBM 1 block x 2 instances = 2, DRAM 1 block x 2 nodes -> 4, SSD none -> 4,
    EIC 3 blocks x 1 rack -> 7 (a copy of EIC per node would have been 10)."""
    from experiments.plan_candidates import mrc_levels

    c = _curve_candidate("cluster", 1, {"dram": 1, "eic": 3}, "hardware.gpus_per_node=1")
    c.gpus, c.racks, c.nodes = 2, 1, 2
    mrc_levels([c], _chain_trace(PROMPTS))
    assert list(c.mrc_levels) == pytest.approx(_levels_at([2, 4, 4, 7]))
    assert list(c.mrc_levels) == pytest.approx([0.1, 0.2, 0.2, 0.35])  # c / 20 by hand


def test_a_pd_candidates_curve_counts_the_prefill_instances_hbm():
    """1 prefill : 3 decode instances of 2 HBM blocks: the prefixes live in the prefill instance's HBM alone, 2
    blocks (the decode instances' 6 would have been the wrong count), then 1 DRAM block on the node -> 3."""
    from experiments.plan_candidates import mrc_levels

    c = _curve_candidate("pd", 2, {"dram": 1})
    c.gpus, c.split = 4, (1, 3)
    mrc_levels([c], _chain_trace(PROMPTS))
    assert list(c.mrc_levels) == pytest.approx(_levels_at([2, 3, 3, 3]))
    assert list(c.mrc_levels) == pytest.approx([0.1, 0.15, 0.15, 0.15])


@pytest.mark.parametrize("split, instances, expected", [
    ("all", 4, [(1, 3), (2, 2), (3, 1)]),  # every split of 4 instances with at least one of each role
    ("all", 1, []),  # one instance cannot be split
    ("1:1", 4, [(2, 2)]),
    ("1:3", 8, [(2, 6)]),
    ("1:3", 6, []),  # 6 is no multiple of 1 + 3
    ("aggregated", 4, [None]),
])
def test_the_pd_splits_of_a_gpu_count(split, instances, expected):
    from experiments.plan_candidates import _splits

    assert _splits(SimpleNamespace(pd_split=[split]), instances) == expected


# ------------------------------------------------------------------ the curve of each candidate's own lookups


def _curve_candidate(mode: str, hbm: int, lower: dict[str, int], *sets: str):
    """A candidate of one instance (``mode``) with ``hbm`` blocks of HBM and ``lower`` blocks of each lower tier (the
    others off), as ``enumerate_candidates`` makes one: its searched tiers, its config, a cost that grows with them."""
    from experiments.plan_candidates import Candidate
    from experiments.prices import TIERS
    from sim.cache.tiers import tier_slot_bytes
    from sim.config import load_config, replace
    from sim.specs import GIB

    base = load_config(None, sets=[f"serving.num_gpu_blocks={hbm}", *sets])
    gib = {t: lower.get(t, 0) * tier_slot_bytes(t, base) / GIB for t in TIERS}
    c = Candidate("h100-sxm", 1, 1, None, gib, mode=mode, name=f"{mode} {hbm} {lower}", cost=hbm + sum(lower.values()))
    c.config, c.run_tier_gib = replace(base, **{f"cache.tiers.{t}.capacity_gib": g for t, g in gib.items()}), gib
    return c


def _chain_trace(prompts):
    from tests.test_serving import make_trace

    n = len(prompts)
    return make_trace(np.arange(n, dtype=float), [16 * len(p) for p in prompts], [1] * n, block_lists=prompts)


def test_a_serving_candidates_curve_is_the_prefix_one_and_a_cache_only_ones_follows_its_semantics():
    """README Policy study's hand case: LRU over 3 blocks, prompts [1,2,3], [1,2,4], [1,5], [1,2,3]: plain lookups hit
    4 of 11 (the second prompt's 1 and 2, the fourth's 1 and 2: 3 was pushed out by 4 and 5), prefix lookups 5 (the
    prefix 1, 2, 3 of the fourth outlived 4 and 5, touched deepest first). A serving candidate (single, pd, cluster)
    looks prompts up by prefix, so its curve is the prefix one; the planner gave every candidate the plain curve."""
    from experiments.plan_candidates import curve_groups, mrc_levels

    trace = _chain_trace([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]])
    serving = _curve_candidate("single", 3, {})
    plain = _curve_candidate("cache-only", 3, {})
    prefix = _curve_candidate("cache-only", 3, {}, "cache.access_semantics=prefix")
    groups = curve_groups([serving, plain, prefix])
    assert {k: [c.name for c in v] for k, v in groups.items()} == {
        (16, "prefix"): [serving.name, prefix.name], (16, "plain"): [plain.name]}
    mrc_levels([serving, plain, prefix], trace)  # one call over both semantics: each candidate gets its own
    assert serving.mrc_levels[0] == prefix.mrc_levels[0] == 5 / 11
    assert plain.mrc_levels[0] == 4 / 11


# (HBM blocks, lower tiers' blocks): equal totals split differently, and a range of totals
SPLITS = [(1, {}), (2, {"dram": 1}), (1, {"dram": 2}), (3, {"ssd": 4}), (1, {"dram": 1, "ssd": 1, "eic": 5}),
          (4, {"dram": 4, "ssd": 4})]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.integers(0, 25), min_size=1, max_size=8), min_size=1, max_size=40),
       st.sampled_from(["plain", "prefix"]), st.floats(0.0, 0.9))
def test_each_mrc_level_is_a_cache_only_replay_and_target_pruning_keeps_every_candidate_that_meets_it(
        prompts, semantics, target):
    """With exclusive LRU tiers the curve is the cache-only hit ratio exactly, plain or prefix lookups alike
    (``mrc_is_exact``): each level (HBM, +DRAM, +SSD, +EIC) equals the replay of a cache of the tiers down to it, for
    random prompts (a block repeated within one too) and several capacity splits of the same or different totals.
    So pruning on a hit target drops no candidate whose replay meets it, and a tier mix dropped as no better than a
    cheaper one (epsilon 0) leaves one that meets it whenever it would have."""
    from experiments.plan_candidates import mrc_is_exact, mrc_levels, prune_with_mrc
    from experiments.prices import TIERS
    from sim.cache.replay import run_cache_only
    from sim.config import replace

    trace = _chain_trace(prompts)
    sets = [f"cache.access_semantics={semantics}"]
    candidates = [_curve_candidate("cache-only", hbm, lower, *sets) for hbm, lower in SPLITS]
    mrc_levels(candidates, trace)
    replayed, runs = {}, {}
    for c in candidates:
        for level in range(len(TIERS) + 1):  # the tiers below this level off
            tiers = {t: c.run_tier_gib[t] if i < level else 0.0 for i, t in enumerate(TIERS)}
            key = (c.config.serving.num_gpu_blocks, *tiers.values())
            if key not in runs:  # (a split's levels past its last tier are the same cache)
                config = replace(c.config, **{f"cache.tiers.{t}.capacity_gib": g for t, g in tiers.items()})
                (runs[key],) = run_cache_only(trace, config, ["lru"])
            assert runs[key].metrics["access_semantics"] == semantics
            assert c.mrc_levels[level] == runs[key].metrics["hit_ratio"], (c.name, level)
        replayed[c.name] = runs[key].metrics["hit_ratio"]
    assert mrc_is_exact(candidates[0].config, "cache-only")
    prune_with_mrc(candidates, 0.0, target, exact=True)
    by_name = {c.name: c for c in candidates}
    for c in candidates:
        if replayed[c.name] >= target and c.status == "pruned":
            assert "no tier level gains over" in c.reason
            better = by_name[c.reason.split("gains over ")[1].removesuffix(" (cheaper)")]
            assert better.status == "pending" and replayed[better.name] >= target
        if replayed[c.name] < target:
            assert c.status == "pruned"


@pytest.mark.parametrize("mode, sets, exact", [
    ("cache-only", [], True), ("cache-only", ["cache.access_semantics=prefix"], True),
    ("single", [], False), ("cluster", [], False),  # a serving run splits the stream and holds blocks in use
    ("cache-only", ["cache.policy=fifo"], False), ("cache-only", ["cache.inclusion=inclusive"], False),
    ("cache-only", ["cache.tiers.dram.policy=arc"], False), ("cache-only", ["cache.admission=selective_write"], False),
    ("cache-only", ["cache.prefetch=session"], False), ("cache-only", ["cache.insert_outputs=true"], False),
    ("cache-only", ["cache.capacity_blocks=5"], False),
])
def test_when_the_curve_is_exact(mode, sets, exact):
    from experiments.plan_candidates import mrc_is_exact
    from sim.config import load_config

    assert mrc_is_exact(load_config(None, sets=sets), mode) is exact
