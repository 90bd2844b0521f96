"""The learned policy's real cache hedges while the evidence is thin: of the blocks only one of the leader and its
likeliest challenger holds (the contested ones), the challenger gets the share the evidence gives it, Phi(z) of
McNemar's z (``learned.real_victim._challenger``), so that a switch costs less convergence (learned/README.md,
"Workloads it was never tuned on": a wrong model cost the detection lag plus one whole convergence). Hand-built
states: four blocks in a cache of four, which expert holds which set by hand, the evidence set by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learned.predictions import Predictions
from learned.shadow_experts import out_set
from learned.state_layout import ARC, EXPERTS, LRU, MODEL, S3FIFO, X_DISCORD, X_SIGMAS
from sim.cache.policies import make_policy


def _cache(won: float, lost: float):
    """Blocks 0-3 in a cache of 4, the model leading. Block 0: every expert holds it; 1: all but the model (the
    challenger ARC's, not the leader's); 2: the model's alone; 3: LRU's and S3-FIFO's (neither the leader's nor
    ARC's). ``won``/``lost``: the decayed accesses ARC hit and the model missed / the other way round."""
    policy = make_policy("learned", 4, predicted=Predictions.perfect(np.full(8, 50.0), 8))
    for key in range(4):
        policy.on_insert(key, key)
    ints, floats = policy.state["ints"], policy.state["floats"]
    blocks = policy.state["blocks"]
    out_set(blocks, ints, 1, 1 << MODEL, False)
    out_set(blocks, ints, 2, (1 << ARC) | (1 << LRU) | (1 << S3FIFO), False)
    out_set(blocks, ints, 3, (1 << MODEL) | (1 << ARC), False)
    floats[X_DISCORD:X_DISCORD + EXPERTS * EXPERTS] = 0.0
    floats[X_DISCORD + ARC * EXPERTS + MODEL] = won
    floats[X_DISCORD + MODEL * EXPERTS + ARC] = lost
    return policy


def _victims(policy, n: int) -> list[int]:
    taken = []
    for _ in range(n):
        key = policy.victim(7)
        taken.append(key)
        policy.on_remove(key)
    return taken


def test_a_challenger_ahead_but_not_yet_significant_keeps_its_share_of_the_contested_blocks():
    """ARC ahead of the model by 30 to 20 accesses only one of the two hit: z = 10 / sqrt(51) = 1.40, short of the
    3 sigma that would make it the leader; the chance it is the better expert, Phi(1.40) = 0.92, is its share of the
    contested blocks (1: ARC's, 2: the model's). Block 3, which neither of the two holds, goes first (as before);
    then the model's block 2, not ARC's block 1: one of two contested slots is below ARC's share. Before the hedge the
    cache evicted every block its leader does not hold first (3, then 1)."""
    policy = _cache(30.0, 20.0)
    z = 10.0 / math.sqrt(51.0)
    assert policy.state["floats"][X_SIGMAS] == 3.0 and z < 3.0 and 0.5 * (1 + math.erf(z / math.sqrt(2))) > 0.5
    assert _victims(policy, 2) == [3, 2]
    assert policy.summary()["leader"] == "model"


@pytest.mark.parametrize("won, lost, why", [
    (20.0, 30.0, "the leader ahead: Phi(-1.40) = 0.08 of the capacity, 4 blocks, is under one block"),
    (3.0, 0.0, "3 accesses: fewer than the 10 that 3 sigma needs before any test could switch (n > 3 sqrt(n + 1))"),
])
def test_without_evidence_against_the_leader_the_cache_is_the_leader_s(won, lost, why):
    """Where the evidence is for the leader, or too thin to be any (a switch at 3 sigma needs n > 3 sqrt(n + 1): 10
    discordant accesses), the cache evicts first what its leader does not hold, as before: 3, then ARC's 1."""
    assert _victims(_cache(won, lost), 2) == [3, 1], why


def test_a_leader_held_in_place_is_never_hedged_against():
    """With the switch threshold out of reach (infinite sigma: no evidence can ever make another expert the leader),
    no evidence is thin, and the cache is its leader's whatever the discordant counts say."""
    policy = _cache(300.0, 0.0)
    policy.state["floats"][X_SIGMAS] = np.inf
    assert _victims(policy, 2) == [3, 1]
