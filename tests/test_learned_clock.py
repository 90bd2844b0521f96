"""The learned policy's clock when stream positions come out of order (serving: a request's blocks return at their own
accesses when it is freed, a lower tier takes a demoted block as of its last use): the position says which
access a block's class came from and its idle time counts from there; the clock is the latest position seen."""

from __future__ import annotations

import numpy as np
import pytest

from learned.predictions import Predictions
from learned.state_layout import B_CLASS, B_MODEL, S_CLOCK, X_AGE
from sim.cache.policies.learned import Learned

# buckets (0.5, 1], (1, 2], (2, 4], (4, 8], (8, 16], (16, inf): the last never arrives
EDGES = np.array([0.5, 1, 2, 4, 8, 16, np.inf])
SOON, NEVER = 0, 1  # class 0: next use 4-8 accesses after this one; class 1: never again


def _policy(capacity: int, positions: int) -> Learned:
    dist = np.zeros((2, len(EDGES) - 1))
    dist[SOON, 3] = 1.0
    dist[NEVER, -1] = 1.0
    klass = np.full(positions, SOON, dtype=np.int32)
    klass[7] = NEVER
    return Learned(capacity, Predictions(klass, dist, EDGES, num_ids=4))


def test_an_earlier_position_keeps_the_clock_and_counts_idle_time_from_its_own_access():
    policy = _policy(capacity=4, positions=32)
    a, b = 0, 1
    policy.on_insert(a, 20)
    policy.on_insert(b, 7)  # out of order: b enters as of its access at 7, whose class is NEVER
    state = policy.state
    assert state["ints"][S_CLOCK] == 20  # the clock does not run back
    assert state["last"][b] == 7 and state["blocks"][b, B_CLASS] == NEVER  # class and idle time from access 7
    assert state["ints"][S_CLOCK] - state["last"][b] == 13  # b's idle time: 13 accesses
    policy.on_access(a, 25)
    assert state["ints"][S_CLOCK] == 25 and state["last"][a] == 25


def test_a_block_past_its_predicted_reuse_is_the_victim_after_an_out_of_order_arrival():
    # Model expert of 2 blocks; every access predicts a next use 4-8 accesses later. A enters at 20, B at 30, then C
    # arrives as of its access at 25 (a freed or demoted block) while the clock reads 30. A's predicted reuse
    # (24-28) has passed by 30 unseen: its hit density is 0, and the expert evicts it for C (idle 5: its reuse still
    # due). Its eviction age is 30 - 20 = 10, so the mean eviction age, 2 (the capacity) before any eviction with
    # weight 1/2, becomes 2 + (10 - 2) / 2 = 6. Taking 25 as the time, B looked 5 accesses younger than fresh
    # and A 5 accesses old (reuse still due): B was evicted instead, at an eviction age of 25 - 30 = -5 (mean -1.5).
    policy = _policy(capacity=2, positions=32)
    a, b, c = 0, 1, 2
    policy.on_insert(a, 20)
    policy.on_insert(b, 30)
    policy.on_remove(policy.victim(c))  # the tier makes room in the real cache first
    policy.on_insert(c, 25)
    blocks = policy.state["blocks"]
    in_model = {k for k in (a, b, c) if blocks[k, B_MODEL] >= 0}
    assert in_model == {b, c}
    assert policy.state["floats"][X_AGE] == pytest.approx(6.0)
    assert policy.state["ints"][S_CLOCK] == 30


def test_in_order_positions_are_the_clock():
    # cache-only replays pass monotone positions: the clock is each one as it comes, as before
    policy = _policy(capacity=2, positions=32)
    steps = ((policy.on_insert, 0, 3), (policy.on_insert, 1, 4), (policy.on_access, 0, 9))
    for hook, key, at in steps:
        hook(key, at)
        assert policy.state["ints"][S_CLOCK] == at and policy.state["last"][key] == at


def test_the_compiled_replay_and_the_hooks_agree_on_in_order_positions():
    # a replay's positions come in order: the hooks one by one (the tier's order: victim, remove, insert) and the
    # compiled replay_plain make the same decisions (perfect predictor of a random stream, 40 ids, 12 blocks)
    from sim.cache.access import next_use_index

    stream = np.random.default_rng(3).integers(0, 40, 3000)
    hooks, fast = (Learned(12, next_use_index(stream).astype(np.float64)) for _ in range(2))
    resident, hits = set(), []
    for at, key in enumerate(stream.tolist()):
        if key in resident:
            hooks.on_access(key, at)
            hits.append(at)
            continue
        if len(resident) >= 12:
            victim = hooks.victim(key)
            hooks.on_remove(victim)
            resident.remove(victim)
        hooks.on_insert(key, at)
        resident.add(key)
    fast_hits, _ = fast.replay_plain(stream.tolist(), set(), 12, 0)
    assert fast_hits == hits and 0 < len(hits) < len(stream)
