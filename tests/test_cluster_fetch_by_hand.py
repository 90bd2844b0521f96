"""A cluster fetch's choice of source and the conductor's TTFT estimate by hand (``sim.cluster.fetch.PrefixFetch``),
on a made-up fleet whose paths cost what a table says."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from sim.cluster.fetch import PrefixFetch


class _Fleet(PrefixFetch):
    """The fetch's arithmetic over a table of seconds per tier (the same for any instance and size: the choice, not
    the path model, is under test)."""

    def __init__(self, seconds: dict[int, float], block_size: int = 16, queued: int = 0, rate: float = 1000.0):
        self.seconds = seconds
        self.load_bytes = self.copy_load_bytes = 1
        self._state_offsets = []
        self.serving = SimpleNamespace(block_size=block_size)
        self.queued_tokens = np.array([queued])
        self.prefill_rate = rate

    def _path_seconds(self, tier: int, inst_id: int, nbytes: float) -> float:
        return self.seconds[tier] * nbytes


def test_each_block_comes_from_its_cheapest_holder_ties_to_the_first_listed():
    """Block 0 held by tiers 3 (5 s) and 1 (1 s): 1. Block 1 only by tier 2, another instance's HBM (no path): inf.
    Block 2 by tiers 4 and 1, both 1 s: the first listed, 4."""
    fleet = _Fleet({1: 1.0, 2: math.inf, 3: 5.0, 4: 1.0})
    offsets, tiers = np.array([0, 2, 3, 5]), np.array([3, 1, 2, 4, 1])
    cost, best = fleet._cheapest_holders(offsets, tiers, 0)
    assert cost.tolist() == [1.0, math.inf, 1.0]
    assert best.tolist() == [1, 2, 4]


def test_the_estimate_computes_the_last_token_even_when_every_block_is_held():
    """A 32-token prompt of two 16-token blocks, both in the instance's own HBM (0 s to fetch), 100 tokens queued
    before it, 1,000 prefill tokens a second: vLLM computes at least the prompt's last token, so (100 + 1) / 1,000 s.
    With one block held: (100 + 16) / 1,000 s, plus that block's fetch, 0.25 s from a DRAM copy."""
    fleet = _Fleet({0: 0.0, 1: 0.25}, queued=100)
    assert fleet.estimated_ttft_s(0, np.array([0, 1, 2]), np.array([0, 0]), 32) == pytest.approx(101 / 1000)
    assert fleet.estimated_ttft_s(0, np.array([0, 1]), np.array([1]), 32) == pytest.approx(116 / 1000 + 0.25)
