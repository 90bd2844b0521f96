"""The planner's search space by hand: the prefill:decode splits of a GPU count, and the miss-ratio-curve levels count each tier's copies as the candidate's shape has them: HBM once per
instance that holds prefixes (PD: the prefill instances), DRAM and SSD once per node, EIC once per rack
(``experiments.plan_candidates.mrc_levels``). Checked against a brute-force LRU over a stream whose hit ratio at
capacity c is c / 20, so every level names its capacity."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest

from tests.test_planner import _chain_trace, _curve_candidate

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
