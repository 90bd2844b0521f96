"""The learned policy's real cache: which block it evicts (a pure peek, ``victim``).

It evicts first the blocks it holds that no expert holds, then those its leader does not (held by fewer experts
first), so it converges to the leader's contents; while another expert's evidence against the leader is thin, it keeps
that expert's share of the blocks only one of the two holds (``_hedged``), so that a switch costs less convergence;
where every block it holds is the leader's, a private copy takes the first in its leader's own eviction order and a
copy the model may lead the lowest hit density of a sample (``learned.kernel`` has the experts and the per-access
bookkeeping; ``learned.state_layout`` the arrays)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from learned.hit_density import age_bucket, density
from learned.shadow_experts import arc_replaces_t1, arc_target
from learned.state_layout import (
    ARC,
    B_ARC,
    B_ARC_PREV,
    B_CLASS,
    B_LRU_PREV,
    B_OUT_NEXT,
    B_REAL,
    B_S3,
    B_S3_PREV,
    EXPERTS,
    LRU,
    MAIN,
    MODEL,
    NONE_HOLDS,
    OUT_LISTS,
    S_ARC_HEAD,
    S_CAP,
    S_CLOCK,
    S_ELECT_FROM,
    S_LEADER,
    S_LRU_HEAD,
    S_NREAL,
    S_OUT_HEAD,
    S_OUT_SIZE,
    S_REMOVALS,
    S_S3_CAPS,
    S_S3_HEAD,
    S_S3_SIZE,
    S_SAMPLES,
    SMALL,
    T1,
    T2,
    X_DISCORD,
    X_SIGMAS,
)
from sim.cache.policies import s3fifo
from sim.cache.policies.s3fifo import MOVE_TO_MAIN_THRESHOLD as S3_TO_MAIN
from sim.jit import flush_when_sources_change, njit


@njit(cache=True)
def _draw(x):
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    return x


@njit(cache=True)
def _child_slot(blocks, column, pkeys, pnext, at):
    """The slot in ``column`` (``B_MODEL``: the model expert's, ``B_REAL``: the real cache's) of the block after
    position ``at`` in the chain a lookup follows (``pnext``: its request's next position, but past a partial
    block no later lookup reads; -1: none, or not held)."""
    q = pnext[at]
    if q < 0 or pkeys[q] >= blocks.shape[0]:
        return -1
    return blocks[pkeys[q], column]


@njit(cache=True)
def _pinned(pins, key):
    """Whether ``key`` is among ``pins`` (a request's held hits: a few dozen at most, usually none)."""
    for p in pins:
        if p == key:
            return True
    return False


@njit(cache=True)
def _real_fallback(blocks, last, real_ids, ints, floats, table, dist, edges, pkeys, pstart, pnext, pins):
    """A side-effect-free pick among the real cache's blocks not in ``pins``: the lowest hit density in a sample
    drawn from a generator seeded by the clock and the removal count (so a repeated peek gives the same); -1 when
    every block is pinned. Only where the model may lead: a private copy (``Predictions.private``) takes its
    leader's own pick (``_leader_pick``), whose lists hold every block the out-lists do not.

    By prefix semantics (``pstart`` given) the real cache keeps its blocks prefix-closed as the model expert does:
    the deepest block it holds of the chain that followed the pick at its last access (serving, 1 instance, Mooncake:
    0.3252 -> 0.3284; LRU's least recent block when LRU leads instead: 0.3252), short of a pinned one."""
    x = (np.uint64(ints[S_CLOCK] + 2) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64(ints[S_REMOVALS]) * np.uint64(0xBF58476D1CE4E5B9)) | np.uint64(1)
    n = ints[S_NREAL]
    now = ints[S_CLOCK]
    best, best_hd = -1, np.inf
    for _ in range(ints[S_SAMPLES]):
        x = _draw(x)
        key = real_ids[np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))]
        if len(pins) and _pinned(pins, key):
            continue
        hd = density(table, dist, edges, floats, blocks[key, B_CLASS], age_bucket(now - last[key]))
        if hd < best_hd or best < 0:
            best, best_hd = key, hd
    if best < 0:  # (every block sampled pinned: the first that is not)
        for i in range(n):
            if not _pinned(pins, real_ids[i]):
                return real_ids[i]
        return -1
    if len(pstart):
        p = last[best]
        while _child_slot(blocks, B_REAL, pkeys, pnext, p) >= 0 and not (len(pins) and _pinned(pins, pkeys[pnext[p]])):
            p = pnext[p]
            best = pkeys[p]
    return best


@njit(cache=True)
def _out_head(blocks, ints, lst, pins):
    """The first block of out-list ``lst`` not in ``pins`` (-1: none)."""
    key = ints[S_OUT_HEAD + lst - 1]
    while key >= 0 and len(pins) and _pinned(pins, key):
        key = blocks[key, B_OUT_NEXT]
    return key


@njit(cache=True)
def _first_real(blocks, key, link, pins, most):
    """The first block from ``key`` on along an expert's list (``link``: its previous/next fields) that the real cache
    holds, is not in ``pins`` and whose S3-FIFO frequency is at most ``most`` (-1: none)."""
    while key >= 0:
        if blocks[key, B_REAL] >= 0 and blocks[key, B_S3] & 3 <= most and not (len(pins) and _pinned(pins, key)):
            return key
        key = blocks[key, link + 1]
    return -1


@njit(cache=True)
def _leader_pick(blocks, ints, floats, pins, incoming):
    """A private copy's own pick (every block the real cache holds is the leader's): the first of them in the
    leader's own eviction order, as the leader would evict them to take ``incoming`` (-1: none), not the least recent
    of a sample. LRU: its least recent. ARC: the least recent of T1 or of T2 as REPLACE chooses at the target p that
    ``incoming``'s access sets (a ghost's hit moves p before ARC evicts: at the p before it, 10 blocks of a skewed
    stream served 3,441 hits against ARC's 3,427). S3-FIFO: while the main queue is within its size and the small one
    holds a block, the small queue's first block not reused enough to move to main (else main's first block not
    reused, then the first moved there: small's head); from main, the first of its blocks of the lowest frequency
    (its passes reinsert the reused ones, each one lower, until one is at 0: taking main's head where none was 0
    served 1,719 hits against S3-FIFO's 1,725, 5 blocks)."""
    leader = ints[S_LEADER]
    if leader == LRU:
        return _first_real(blocks, ints[S_LRU_HEAD], B_LRU_PREV, pins, 3)
    if leader == ARC:
        where = blocks[incoming, B_ARC] if 0 <= incoming < blocks.shape[0] else 0
        first = T1 if arc_replaces_t1(ints, arc_target(ints, floats, where), where) else T2
        key = _first_real(blocks, ints[S_ARC_HEAD + first - 1], B_ARC_PREV, pins, 3)
        return key if key >= 0 else _first_real(blocks, ints[S_ARC_HEAD + T1 + T2 - first - 1], B_ARC_PREV, pins, 3)
    small, main = ints[S_S3_HEAD + SMALL - 1], ints[S_S3_HEAD + MAIN - 1]
    if ints[S_S3_SIZE + MAIN - 1] <= ints[S_S3_CAPS + MAIN - 1] and ints[S_S3_SIZE + SMALL - 1] > 0:
        key = _first_real(blocks, small, B_S3_PREV, pins, S3_TO_MAIN - 1)
        if key < 0:  # (every block of small moves to main: main's first not reused, else the first moved)
            key = _first_real(blocks, main, B_S3_PREV, pins, 0)
        if key >= 0:
            return key
        key = _first_real(blocks, small, B_S3_PREV, pins, 3)
        if key >= 0:
            return key
    for most in range(4):  # (main's passes: the first block of its lowest frequency reaches 0 first)
        key = _first_real(blocks, main, B_S3_PREV, pins, most)
        if key >= 0:
            return key
    return _first_real(blocks, small, B_S3_PREV, pins, 3)


@njit(cache=True)
def _popcount(x):
    count = 0
    while x:
        count += x & 1
        x >>= 1
    return count


@njit(cache=True)
def _challenger(ints, floats):
    """The expert likeliest to be better than the leader (-1: none) and the share of the contested blocks (those only
    one of the two holds) its evidence gives it: Phi(z), z its lead in the accesses only one of the two hit over their
    spread (McNemar's, as ``kernel._score`` tests it at ``X_SIGMAS``), the chance it is the better one. 0 until the
    two have disagreed often enough for that test ever to switch (a lead of n in n discordant accesses passes s sigma
    once n > s sqrt(n + 1): 10 at 3 sigma), so that a cold start hedges nothing; 0 too where no evidence can switch
    (infinite sigma: a leader held in place)."""
    leader = ints[S_LEADER]
    s = floats[X_SIGMAS]
    least = 0.5 * (s * s + s * np.sqrt(s * s + 4.0))
    best, best_z, best_n = -1, -np.inf, 0.0
    for e in range(ints[S_ELECT_FROM], EXPERTS):
        if e == leader:
            continue
        won = floats[X_DISCORD + e * EXPERTS + leader]
        lost = floats[X_DISCORD + leader * EXPERTS + e]
        z = (won - lost) / np.sqrt(won + lost + 1.0)
        if z > best_z:
            best, best_z, best_n = e, z, won + lost
    if best < 0 or not best_n >= least:
        return -1, 0.0
    return best, 0.5 * (1.0 + math.erf(best_z / np.sqrt(2.0)))


@njit(cache=True)
def _group_head(blocks, ints, pins, set_bits, clear_bits):
    """The first block (held by fewest experts first) of the out-lists whose bits include ``set_bits`` and
    exclude ``clear_bits`` (-1: none)."""
    for held_by in range(1, EXPERTS):
        for lst in range(1, OUT_LISTS):
            if lst & set_bits == set_bits and lst & clear_bits == 0 and _popcount(lst) == EXPERTS - held_by:
                head = _out_head(blocks, ints, lst, pins)
                if head >= 0:
                    return head
    return -1


@njit(cache=True)
def _hedged(blocks, ints, floats, pins):
    """The victim while the evidence is thin (-2: it is not; the usual order then). Blocks neither the leader nor its
    likeliest challenger holds go first (fewer holders first); of the contested ones (only one of the two holds
    them) the real cache keeps the challenger's share (``_challenger``) for the challenger's: it evicts the
    challenger's while they are more than that share, else the leader's. A switch then finds part of the new
    leader's blocks already held, and its convergence costs less (learned/README.md, "Workloads it was never tuned
    on": the whole deficit of a wrong model on a short stream was one convergence); while the share of the capacity
    is under one block (Phi(z) < 1 / capacity: the leader ahead by over 3.09 sigma at 1k blocks, 3.89 at 20k, so a
    leader just elected at 3 sigma is still hedged against) the cache is the leader's, as before."""
    c, share = _challenger(ints, floats)
    if c < 0 or share * ints[S_CAP] < 1.0:
        return -2
    lb, cb = 1 << ints[S_LEADER], 1 << c
    head = _group_head(blocks, ints, pins, lb | cb, 0)  # neither holds
    if head >= 0:
        return head
    n_c, n_l = 0, 0  # real blocks only the challenger holds / only the leader holds
    for lst in range(1, OUT_LISTS):
        if lst & lb and not lst & cb:
            n_c += ints[S_OUT_SIZE + lst - 1]
        elif lst & cb and not lst & lb:
            n_l += ints[S_OUT_SIZE + lst - 1]
    if n_c > 0 and n_c > share * (n_c + n_l):
        head = _group_head(blocks, ints, pins, lb, cb)
        if head >= 0:
            return head
    head = _group_head(blocks, ints, pins, cb, lb)
    if head >= 0:
        return head
    return -2


@njit(cache=True)
def victim(blocks, last, real_ids, ints, floats, table, dist, edges, pkeys, pstart, pnext, pins, incoming):
    """The real cache's victim (a peek) to make room for ``incoming`` (-1: none named), never one of ``pins`` (the
    blocks a prefix replay's request holds: its hits not yet touched; -1 when every block is): the oldest block it holds that no expert holds, else,
    while the evidence is thin, the leader's or its challenger's by the challenger's share (``_hedged``), else the
    oldest that the leader does not hold (held by fewer experts first), else, in a private copy, the first in the
    leader's own eviction order (``_leader_pick``), else the lowest hit density among a sample of its blocks."""
    head = _out_head(blocks, ints, NONE_HOLDS, pins)
    if head >= 0:
        return head
    head = _hedged(blocks, ints, floats, pins)
    if head != -2:
        return head
    head = _group_head(blocks, ints, pins, 1 << ints[S_LEADER], 0)  # the leader does not hold it
    if head >= 0:
        return head
    if ints[S_ELECT_FROM] != MODEL:  # a private copy: its leader's pick (-1 only where every block is pinned); the
        return _leader_pick(blocks, ints, floats, pins, incoming)  # model's densities are not of its stream
    return _real_fallback(blocks, last, real_ids, ints, floats, table, dist, edges, pkeys, pstart, pnext, pins)


# the compiled functions inline the layout, the hit density, ARC's rules and S3-FIFO's thresholds
_HERE = Path(__file__).parent
flush_when_sources_change(sys.modules[__name__], [_HERE / "state_layout.py", _HERE / "hit_density.py",
                                                  _HERE / "shadow_experts.py", Path(s3fifo.__file__)])
