"""A learned lower tier shared by instances (issue 14): held to a classic expert, its copy is that classic policy's tier.

A shared DRAM/SSD sees two moves no cache-only replay makes: a readmission (the prefill and the decode instance both
demote the same block into it; the policy's ``readmit``: LRU keeps the block's place) and a removal that is not its
victim (a block promoted up out of the exclusive tier; the policy's ``remove``: gone, no ghost). hexplore6 found the
learned copy held to LRU 1 hit off LRU in ``--pd`` and in a 2-rack ``--cluster``: it ran a readmission as an access
(LRU expert: most recent) and its experts kept the promoted blocks (so the LRU expert evicted blocks the tier still
held, and the copy's victims followed its out-lists, not recency).
"""

from __future__ import annotations

import numpy as np
import pytest

from learned import state_layout
from learned.predictions import Predictions
from sim.cache.policies import make_policy

PUT, UP = "put", "up"  # a block demoted into the tier (a readmission where it holds it); promoted up out of it


def _held(leader: str, capacity: int, positions: int, ids: int):
    """A learned copy whose leader is ``leader`` and stays (its switch threshold out of reach; no model expert)."""
    policy = make_policy("learned", capacity, predicted=Predictions.perfect(np.full(positions, 1e9), ids).private())
    policy.state["ints"][state_layout.S_LEADER] = state_layout.EXPERT_NAMES.index(leader)
    policy.state["floats"][state_layout.X_SIGMAS] = np.inf
    return policy


def _drive(policy, capacity: int, ops) -> tuple[list[int], set[int]]:
    """The tier's moves through the policy's hooks, as ``HookedMultiTierCache._insert`` and ``take`` make them: its
    victims, in order, and what it holds at the end."""
    resident: set[int] = set()
    victims = []
    for now, (op, key) in enumerate(ops):
        if op == PUT:
            if key not in resident and len(resident) >= capacity:
                victim = policy.victim(key)
                policy.on_remove(victim)
                resident.remove(victim)
                victims.append(victim)
            policy.on_insert(key, now)  # (already held: a readmission)
            resident.add(key)
        elif key in resident:
            policy.on_remove(key)
            resident.remove(key)
    return victims, resident


def test_held_to_lru_a_readmission_keeps_the_block_s_place_and_a_promoted_block_leaves():
    """By hand, 3 blocks of LRU. Blocks 0 1 2 enter; 0 is demoted again by another instance (LRU keeps its place: 0 is
    still least recent), so 3 evicts 0. Then 1 is promoted up out of the tier and 4 enters the place it left: no
    victim; 5 evicts 2, the least recent. (Before, the readmission was an access: 0 most recent, and the copy
    evicted 1, then 2, then 0.)"""
    ops = [(PUT, 0), (PUT, 1), (PUT, 2), (PUT, 0), (PUT, 3), (UP, 1), (PUT, 4), (PUT, 5)]
    victims, held = _drive(_held("lru", 3, len(ops), 6), 3, ops)
    assert victims == [0, 2] and held == {3, 4, 5}
    assert _drive(make_policy("lru", 3), 3, ops) == (victims, held)  # sim's own LRU agrees


@pytest.mark.parametrize("leader", ["lru", "arc", "s3fifo"])
def test_a_copy_held_to_a_classic_expert_evicts_as_that_policy_in_a_shared_lower_tier(leader):
    """Random demotions (a quarter of them of blocks the tier may hold: readmissions) and promotions (15%) over a small set of
    blocks: the copy held to each classic expert names the victims sim's own policy names, in order (the
    oracle: ``sim.cache.policies``' LRU, ARC and S3-FIFO driven through the same hooks)."""
    for seed, capacity, ids in ((1, 4, 12), (2, 8, 30), (3, 16, 60)):
        rng = np.random.default_rng(seed)
        ops, held = [], set()
        for _ in range(3000):
            draw = rng.random()
            if held and draw < 0.15:
                key = int(rng.choice(sorted(held)))
                ops.append((UP, key))
                held.discard(key)
            else:
                key = int(rng.choice(sorted(held))) if held and draw < 0.4 else int(rng.integers(ids))
                ops.append((PUT, key))
                held.add(key)
        oracle = _drive(make_policy(leader, capacity), capacity, ops)
        held_copy = _drive(_held(leader, capacity, len(ops), ids), capacity, ops)
        assert len(oracle[0]) > 1000
        assert held_copy == oracle, (seed, capacity)
