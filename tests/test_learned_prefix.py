"""The learned policy under prefix semantics (vLLM: a request reuses only its longest cached prefix, and a prefix
replay touches its blocks deepest first): the safety net scores each expert on the prefix hits it would have served,
and the model expert keeps its holdings prefix-closed (a block is of use only while its parent is held)."""

from __future__ import annotations

import numpy as np
import pytest

from learned import kernel
from learned.predictions import Predictions
from learned.state_layout import B_MODEL, LRU, MODEL, X_SCORE
from sim.cache.policies.learned import Learned

# buckets (0.5, 1], (1, 2], (2, 4], (4, 8], (8, 16], (16, inf): the last never arrives (as in test_learned_clock)
EDGES = np.array([0.5, 1, 2, 4, 8, 16, np.inf])
SOON, NEVER = 0, 1  # class 0: next use 4-8 accesses after this one; class 1: never again
NO_REQUESTS = np.zeros(0, dtype=np.int64)  # plain semantics: experts scored on the blocks they hold


def _policy(capacity: int, klass, keys=None, offsets=None, nexts=None) -> Learned:
    dist = np.zeros((2, len(EDGES) - 1))
    dist[SOON, 3] = 1.0
    dist[NEVER, -1] = 1.0
    predicted = Predictions(np.asarray(klass, dtype=np.int32), dist, EDGES, num_ids=16)
    if keys is not None:
        predicted = predicted.with_requests(np.asarray(keys), np.asarray(offsets), nexts)
    return Learned(capacity, predicted)


def _step(policy: Learned, key: int, at: int, prefix: bool) -> None:
    """Every expert sees ``key`` at position ``at`` (the safety net's step, without the real cache)."""
    s = policy.state
    pkeys, pstart, pnext = ((policy._pkeys, policy._pstart, policy._pnext) if prefix
                            else (NO_REQUESTS, NO_REQUESTS, NO_REQUESTS))
    kernel._experts_step(s["blocks"], s["last"], s["model_slots"], s["ints"], s["floats"], s["table"], s["dist"],
                         s["edges"], key, int(policy.klass[at]), at, pkeys, pstart, pnext)


def test_requests_of_the_stream_give_each_position_its_request_start():
    predicted = _policy(2, [SOON] * 5, keys=[7, 8, 9, 7, 3], offsets=[0, 3, 5])
    assert predicted._pkeys.tolist() == [7, 8, 9, 7, 3]
    assert predicted._pstart.tolist() == [0, 0, 0, 3, 3]
    assert predicted._pnext.tolist() == [1, 2, -1, 4, -1]  # (by default each request's next position)
    assert len(_policy(2, [SOON] * 5)._pstart) == 0  # plain semantics: none


def test_a_prompts_partial_block_is_no_parent_of_the_blocks_its_request_generates():
    """``CacheStream.chain_next``, test_cache_only_outputs' two turns (16-token blocks): turn 1 is a b p (p: 8 tokens,
    partial) and generates 30 tokens, completing p as c, then d; turn 2's prompt is a b c d e. The stream is
    a b p c d | a b c d e: vLLM's next lookup reads b, then c (the completed block), never p, so b's child is c
    (position 3) and p is a leaf; a turn without a partial block or generated ones keeps its positions in order."""
    from sim.cache.replay import cache_stream
    from sim.config import load_config
    from tests.test_cache_only_outputs import _two_turns

    trace = _two_turns()
    stream = cache_stream(trace, load_config(None, sets=["cache.insert_outputs=true"]))
    assert stream.blocks.tolist() == [0, 1, 2, 3, 4, 0, 1, 3, 4, 5]
    nexts = stream.chain_next()
    assert nexts.tolist() == [1, 3, -1, 4, -1, 6, 7, 8, 9, -1]
    # every link is one a later lookup follows: turn 2 reads each linked pair of turn 1 in a row
    turn2 = stream.blocks[5:].tolist()
    pairs = {(turn2[i], turn2[i + 1]) for i in range(len(turn2) - 1)}
    assert all((stream.blocks[p], stream.blocks[q]) in pairs for p, q in enumerate(nexts[:5]) if q >= 0)
    prompts_only = cache_stream(trace, load_config(None)).chain_next()  # (no generated block: positions in order)
    assert prompts_only.tolist() == [1, 2, -1, 4, 5, 6, 7, -1]


def test_the_model_expert_evicts_a_partial_block_before_the_answer_it_does_not_lead_to():
    """Hand case, 3-block model expert: request r a p g (p its partial last block, never read again; g the block its
    answer fills, which completes p: the next turn reads r a g), touched deepest first, fills the expert; r, the
    last touched, needs room. p has the lowest hit density. Read as the request's next position, g is p's child and
    the expert evicted g for p (a leaf first); in the chain a lookup follows p is a leaf and goes, and r a g stay."""
    r, a, p, g = 0, 1, 2, 3
    klass = [SOON, SOON, NEVER, SOON]
    for nexts, kept in ((None, [True, True, True, False]), ([1, 3, -1, -1], [True, True, False, True])):
        policy = _policy(3, klass, keys=[r, a, p, g], offsets=[0, 4], nexts=nexts)
        for at, key in ((3, g), (2, p), (1, a), (0, r)):
            _step(policy, key, at, prefix=True)
        assert [bool(policy.state["blocks"][k, B_MODEL] >= 0) for k in (r, a, p, g)] == kept


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_an_expert_scores_only_the_prefix_its_lookup_would_serve(prefix):
    """Hand case, 4-block experts. Two conversations r1 a1 b1 and r2 a2 b2 (keys 0-5), the roots predicted never
    to come back: the model expert evicts both roots for the deeper blocks (holds a1 b1 a2 b2), LRU holds the last
    four (b1 r2 a2 b2). Then r2 a2 b2 again, touched deepest first (b2, a2, r2). The model expert holds b2 and a2,
    but a prefix cache that were the model expert would serve none of the request (its lookup stops at r2, the
    first block): by plain scoring it earns 2 hits, by prefix scoring 0; LRU serves all three either way."""
    keys = [0, 1, 2, 3, 4, 5, 3, 4, 5]
    policy = _policy(4, [NEVER, SOON, SOON, NEVER, SOON, SOON, SOON, SOON, SOON], keys, offsets=[0, 3, 6, 9])
    for at in range(6):  # the first two requests, in order: as a plain replay (no expert holds any of them yet)
        _step(policy, keys[at], at, prefix=False)
    blocks = policy.state["blocks"]
    assert [bool(blocks[k, B_MODEL] >= 0) for k in range(6)] == [False, True, True, False, True, True]
    before = policy.state["floats"][X_SCORE:X_SCORE + 4].copy()
    for at in (8, 7, 6):  # the third request, deepest first
        _step(policy, keys[at], at, prefix=prefix)
    gained = policy.state["floats"][X_SCORE:X_SCORE + 4] - before
    # (scores decay by 1/4096 an access: at most 6 * 3/4096 = 0.005 lost over three accesses)
    assert gained[MODEL] == pytest.approx(0.0 if prefix else 2.0, abs=0.01)
    assert gained[LRU] == pytest.approx(3.0, abs=0.01)


def test_the_model_expert_evicts_a_leaf_before_its_parent():
    """Hand case, 3-block model expert, prefix semantics. Request r a b (r predicted never to come back) fills it;
    a newcomer x needs room. r has the lowest hit density, but a and b are of use only while r is held (a lookup
    stops at the first block missing): the model expert evicts the deepest block of r's chain, b, and keeps r a."""
    r, a, b, x = 0, 1, 2, 3
    policy = _policy(3, [NEVER, SOON, SOON, SOON], keys=[r, a, b, x], offsets=[0, 3, 4])
    for at, key in ((2, b), (1, a), (0, r), (3, x)):
        _step(policy, key, at, prefix=True)
    blocks = policy.state["blocks"]
    assert [bool(blocks[k, B_MODEL] >= 0) for k in (r, a, b, x)] == [True, True, False, True]


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_the_model_expert_admits_the_parent_of_a_block_it_holds(prefix):
    """Hand case, 3-block model expert: request p q, then r a with r predicted never to come back, touched deepest
    first (a, then r). r is worth less than any block the expert holds, so plain semantics declines it; by prefix
    semantics a, which it holds, is of use only below r, so r is admitted."""
    p, q, r, a = 0, 1, 2, 3
    policy = _policy(3, [SOON, SOON, NEVER, SOON], keys=[p, q, r, a], offsets=[0, 2, 4])
    for at, key in ((1, q), (0, p), (3, a), (2, r)):
        _step(policy, key, at, prefix=prefix)
    assert bool(policy.state["blocks"][r, B_MODEL] >= 0) == prefix


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_the_real_cache_evicts_a_leaf_when_every_block_it_holds_is_the_leaders(prefix):
    """Hand case, 3 blocks. Request r a b (r predicted never to come back) fills the real cache and the model expert
    alike, so no block is outside the leader (the model expert) and the real cache picks by hit density: r by plain
    semantics; by prefix semantics, where a and b are of use only below r, the deepest block of r's chain, b."""
    r, a, b, x = 0, 1, 2, 3
    keys, offsets = ([r, a, b, x], [0, 3, 4]) if prefix else (None, None)
    policy = _policy(3, [NEVER, SOON, SOON, SOON], keys, offsets)
    for at, key in ((2, b), (1, a), (0, r)):
        policy.on_insert(key, at)
    assert all(policy.state["blocks"][k, B_MODEL] >= 0 for k in (r, a, b))
    assert policy.victim(x) == (b if prefix else r)


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_the_victim_passes_over_pinned_blocks(prefix):
    """The hooks' protocol (``policies/base``): ``victim`` never names a pinned block (a prefix replay's request holds
    its hits until their touch), and -1 when every block is. A 4-block cache over a random stream of 10 keys: at
    each miss of a full cache, a random subset of the resident blocks is pinned; the victim is resident and not one
    of them. Its out-lists (blocks an expert does not hold) and its sampled fallback are both met: the victim named
    without pins is pinned in many of the draws."""
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 10, 400)
    offsets = np.arange(0, 401, 4) if prefix else None
    policy = _policy(4, rng.choice([SOON, NEVER], 400), keys if prefix else None, offsets)
    resident, named_pinned = set(), 0
    for at, key in enumerate(keys.tolist()):
        if key in resident:
            policy.on_access(key, at)
            continue
        if len(resident) == 4:
            pinned = set(rng.choice(sorted(resident), int(rng.integers(0, 5)), replace=False).tolist())
            named_pinned += policy.victim(key) in pinned
            policy.pinned = pinned
            victim = policy.victim(key)
            if len(pinned) == 4:
                assert victim == -1
                policy.pinned = set()
                continue
            assert victim in resident and victim not in pinned
            policy.pinned = set()
            policy.on_remove(victim)
            resident.discard(victim)
        policy.on_insert(key, at)
        resident.add(key)
    assert named_pinned > 20  # (the case arises: without pins the victim is often a pinned block)
