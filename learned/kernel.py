"""Compiled per-access bookkeeping of the learned policy, over arrays indexed by dense block id.

The policy is five caches of the same capacity fed the same accesses:
- the *model expert*, a shadow cache (ids only) that evicts by hit density computed from the
  model's predicted next-use distribution (see ``_hit_density``) and declines blocks whose
  hit density is below that of its would-be victim (admission);
- three classic experts: a shadow ARC (Megiddo & Modha, FAST 2003; the same cases as
  ``sim.cache.policies.arc``), a shadow LRU (where recency is all there is to know, LRU beats ARC,
  e.g. chat sessions that come back after a think time) and a shadow S3-FIFO (Yang et al., SOSP
  2023; the cases of ``sim.cache.policies.s3fifo``: where one-time blocks dominate it beats both);
- the *real* cache, which follows whichever expert has had the most hits recently (exponentially
  decayed over a few of the model expert's horizons; LeCaR/Cacheus's idea, FAST 2018/2021, with
  shadow caches instead of regret weights), once its lead is significant by McNemar's test on the
  accesses only one of the two hit (most hits are common to all experts and say nothing). It evicts
  first the blocks it holds and the leader does not (kept per set of experts not holding them as a
  linked list), so it converges to the leader's contents and its hit ratio to the leader's. A weak
  model therefore costs at most the switching lag against the best classic expert, and a good one
  is followed.

Hit density (LHD, Beckmann et al., NSDI 2018): a block's expected hits per unit of cache space
it will occupy, P(next use within the horizon | idle so far) / E[space-time until then], from its
class's predicted distribution of the distance to its next use. The horizon is a few of the
model expert's own mean eviction ages, so predictions far beyond what the cache can hold do not
matter (LRB's "Belady boundary"). Victims come from a sample of resident blocks (LRB and LHD
sample 64; 32 here), drawn by a seeded xorshift generator: runs are deterministic.

State layout (what the kernel framework holds for this policy):
- ``blocks``: int32 [ids, BLOCK_FIELDS]: per-block fields named ``B_*`` below;
- ``last``: int64 [ids]: stream position of the block's last access;
- ``real_ids``: int64 [capacity]: the real cache's resident ids, in slots (``B_REAL`` holds a
  block's slot); ``model_slots``: int64 [2, capacity]: the model expert's resident ids (row 0) and
  their last access and class packed as ``last << CLASS_BITS | class`` (row 1: one cache line per
  sampled candidate);
- ``ints``: int64 scalars ``S_*``; ``floats``: float64 scalars ``X_*``;
- ``table``: float64 [classes, AGE_BUCKETS]: hit density by predicted class and age bucket for
  the current horizon, each entry computed on first use (NaN until then); ``dist``, ``edges``: the classes' distance distributions.
Hooks follow the tier protocol (``victim`` is a pure peek; ``on_access``/``on_insert`` feed the
experts after the real cache's own move), so the per-request kernel ``replay_plain`` and the
hook-by-hook path give identical results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.cache.policies import s3fifo
from sim.cache.policies.s3fifo import (GHOST_RATIO as S3_GHOST_RATIO, MAX_FREQ as S3_MAX_FREQ,
                                       MOVE_TO_MAIN_THRESHOLD as S3_TO_MAIN, SMALL_RATIO as S3_SMALL_RATIO)
from sim.jit import cached_functions, flush_when_sources_change, njit

MODEL, ARC, LRU, S3FIFO = 0, 1, 2, 3
EXPERTS = 4
EXPERT_NAMES = ("model", "arc", "lru", "s3fifo")
NONE_HOLDS = (1 << EXPERTS) - 1  # out-list of blocks no expert holds
OUT_LISTS = NONE_HOLDS

# Per-block fields (a row per block id).
B_REAL = 0  # slot in real_ids, -1: not in the real cache
B_MODEL = 1  # slot in model_slots, -1: not held by the model expert
B_ARC = 2  # ARC list: 0 none, 1 T1, 2 T2, 3 B1, 4 B2
B_ARC_PREV = 3
B_ARC_NEXT = 4
B_OUT_PREV = 5  # links of the block's out-list
B_OUT_NEXT = 6
B_OUT = 7  # out-list of a block in the real cache: bit e set: expert e does not hold it (0: all do)
B_CLASS = 8  # predicted class of the block's last access
B_LRU_PREV = 9  # links of the LRU expert's list (-2: not held by it)
B_LRU_NEXT = 10
B_S3 = 11  # the S3-FIFO expert's queue << 2 | its 2-bit frequency (queue 0: none)
B_S3_PREV = 12
B_S3_NEXT = 13
BLOCK_FIELDS = 14

# Integer scalars.
S_CAP = 0  # capacity of the experts (the policy's nominal capacity)
S_NREAL = 1
S_NMODEL = 2
S_CLOCK = 3  # position of the last access seen
S_RNG = 4
S_LEADER = 5  # the expert the real cache follows
S_ARC_HEAD = 6  # + list - 1 (T1, T2, B1, B2)
S_ARC_TAIL = S_ARC_HEAD + 4
S_ARC_SIZE = S_ARC_TAIL + 4
S_OUT_HEAD = S_ARC_SIZE + 4  # + out-list - 1 (the list's bit e set: expert e does not hold the block)
S_OUT_TAIL = S_OUT_HEAD + OUT_LISTS
S_OUT_SIZE = S_OUT_TAIL + OUT_LISTS
S_SAMPLES = S_OUT_SIZE + OUT_LISTS
S_NEXT_TABLE = S_SAMPLES + 1  # clock after which the hit-density table may be recomputed
S_REMOVALS = S_SAMPLES + 2  # real-cache removals so far (seeds the victim peek's sample)
S_TABLES = S_SAMPLES + 3  # hit-density tables computed
S_SWITCHES = S_SAMPLES + 4  # leader changes
S_LRU_HEAD = S_SAMPLES + 5  # the LRU expert's least recent block
S_LRU_TAIL = S_SAMPLES + 6
S_LRU_SIZE = S_SAMPLES + 7
S_S3_HEAD = S_SAMPLES + 8  # + queue - 1 (small, main, ghost)
S_S3_TAIL = S_S3_HEAD + 3
S_S3_SIZE = S_S3_TAIL + 3
S_S3_CAPS = S_S3_SIZE + 3  # + queue - 1: the queues' capacities
S_S3_EVICTED = S_S3_CAPS + 3  # 1 after the S3-FIFO expert's first eviction
INT_SLOTS = S_S3_EVICTED + 1

# Float scalars.
X_P = 0  # ARC's target size of T1
X_SCORE = 1  # + expert: decayed hits
X_SIGMAS = X_SCORE + EXPERTS  # lead (in standard deviations of the discordant hits) needed to switch experts
X_AGE = X_SIGMAS + 1  # running mean eviction age of the model expert (accesses)
X_AGE_WEIGHT = X_SIGMAS + 2  # weight of one eviction in that mean
X_HORIZON = X_SIGMAS + 3  # horizon the current table was computed for
X_HORIZON_AGES = X_SIGMAS + 4  # horizon = this many mean eviction ages
X_DISCORD = X_SIGMAS + 5  # + a * EXPERTS + b: decayed count of accesses expert a hit and expert b missed
FLOAT_SLOTS = X_DISCORD + EXPERTS * EXPERTS

T1, T2, B1, B2 = 1, 2, 3, 4
SMALL, MAIN, GHOST = 1, 2, 3  # the S3-FIFO expert's queues
AGES_PER_OCTAVE = 4  # age_bucket's bit arithmetic assumes 4
AGE_BUCKETS = AGES_PER_OCTAVE * 36  # ages up to 2^36 accesses
CLASS_BITS = 16  # classes < 65,536 (a table per retrained model; positions < 2^47)
CLASS_MASK = (1 << CLASS_BITS) - 1
SAMPLES = 32  # victim candidates per eviction (LRB, LHD: 64)
HORIZON_AGES = 4.0  # a block's hit chance is judged over this many mean eviction ages (2-8 measured alike)
# Experts' hits decay over this many of the model expert's mean eviction ages: four of its horizons, as its
# choices pay off only within one (a window of 4 capacities switched to the classic experts' short-term
# leads and back, at a cost: synthetic multi-turn mean gap 0.045 against 0.083; learned/README.md round 5).
SCORE_WINDOW_AGES = 16.0
HORIZON_STEP = np.log(1.5)  # recompute the table when the horizon has moved by 1.5x (2x-8x measured alike)
SWITCH_SIGMAS = 3.0  # another expert takes over when its lead is 3 sigma of the accesses only one of the two hit (not noise)


def _new_blocks(size: int) -> np.ndarray:
    blocks = np.full((size, BLOCK_FIELDS), -1, dtype=np.int32)
    blocks[:, [B_ARC, B_OUT, B_CLASS, B_S3]] = 0
    blocks[:, B_LRU_PREV] = -2
    return blocks


def new_state(capacity: int, num_ids: int, dist: np.ndarray, edges: np.ndarray, seed: int = 0) -> dict:
    """Fresh state arrays for a policy of ``capacity`` blocks over ids ``[0, num_ids)``."""
    blocks = _new_blocks(max(1, num_ids))
    ints = np.zeros(INT_SLOTS, dtype=np.int64)
    ints[S_CAP] = max(1, capacity)
    ints[S_CLOCK] = -1
    ints[S_RNG] = (seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & 0x7FFFFFFFFFFFFFFF or 1
    ints[S_LEADER] = MODEL  # trusted until another expert has had significantly more hits
    ints[S_ARC_HEAD:S_ARC_HEAD + 4] = -1
    ints[S_ARC_TAIL:S_ARC_TAIL + 4] = -1
    ints[S_OUT_HEAD:S_OUT_HEAD + OUT_LISTS] = -1
    ints[S_OUT_TAIL:S_OUT_TAIL + OUT_LISTS] = -1
    ints[S_LRU_HEAD] = -1
    ints[S_LRU_TAIL] = -1
    ints[S_S3_HEAD:S_S3_HEAD + 3] = -1
    ints[S_S3_TAIL:S_S3_TAIL + 3] = -1
    small = max(1, int(ints[S_CAP] * S3_SMALL_RATIO))  # the queues' sizes as sim.cache.policies.s3fifo's
    ints[S_S3_CAPS:S_S3_CAPS + 3] = small, ints[S_CAP] - small, int(ints[S_CAP] * S3_GHOST_RATIO)
    ints[S_SAMPLES] = SAMPLES
    floats = np.zeros(FLOAT_SLOTS, dtype=np.float64)
    floats[X_SIGMAS] = SWITCH_SIGMAS
    floats[X_AGE] = float(capacity)  # before any eviction: the time to fill the cache once
    floats[X_AGE_WEIGHT] = 1.0 / max(capacity, 1)
    floats[X_HORIZON_AGES] = HORIZON_AGES
    table = np.full((len(dist), AGE_BUCKETS), np.nan)  # filled lazily (``_density``)
    floats[X_HORIZON] = floats[X_HORIZON_AGES] * floats[X_AGE]
    return {
        "blocks": blocks, "last": np.zeros(max(1, num_ids), dtype=np.int64),
        "real_ids": np.zeros(max(1, capacity), dtype=np.int64), "model_slots": np.zeros((2, max(1, capacity)), dtype=np.int64),
        "ints": ints, "floats": floats, "table": table,
        "dist": np.ascontiguousarray(dist, dtype=np.float64), "edges": np.ascontiguousarray(edges, dtype=np.float64),
    }


def grow(state: dict, num_ids: int) -> None:
    """Make room for ids below ``num_ids`` (serving adds blocks as requests arrive)."""
    old = state["blocks"].shape[0]
    if num_ids <= old:
        return
    size = max(num_ids, 2 * old)
    blocks = _new_blocks(size)
    blocks[:old] = state["blocks"]
    last = np.zeros(size, dtype=np.int64)
    last[:old] = state["last"]
    state["blocks"], state["last"] = blocks, last


# ----------------------------------------------------------------------------- hit density


@njit(cache=True)
def _cdf(dist, edges, x):
    """P(distance <= x): buckets (edges[j], edges[j+1]], log-linear inside; the last bucket
    (beyond the model's horizon) never arrives."""
    k = len(edges) - 1
    if x <= edges[0]:
        return 0.0
    acc = 0.0
    for j in range(k):
        lo = edges[j]
        hi = edges[j + 1]
        if x >= hi:
            acc += dist[j]
        else:
            return acc + dist[j] * (np.log(x / lo) / np.log(hi / lo))
    return acc


@njit(cache=True)
def _hit_density(dist, edges, idle, horizon):
    alive = 1.0 - _cdf(dist, edges, idle)
    if alive <= 1e-12:
        return 0.0
    hit = _cdf(dist, edges, idle + horizon) - (1.0 - alive)
    occupancy = 0.0  # integral of the survival function over (idle, idle + horizon]
    x0, s0 = idle, alive
    points = 8
    for i in range(1, points + 1):
        x1 = idle + horizon * (i / points) ** 2
        s1 = 1.0 - _cdf(dist, edges, x1)
        occupancy += 0.5 * (s0 + s1) * (x1 - x0)
        x0, s0 = x1, s1
    return hit / max(occupancy, 1e-9)


@njit(cache=True)
def age_bucket(age):
    """Bucket of an idle time in accesses: four steps per power of two of age + 1 (integer ops only)."""
    if age < 1:  # (a lower tier may see a demoted block's older position: no negative ages)
        return 0
    x = age + 1
    y, e = x, 0  # e = floor(log2(x))
    if y >> 32:
        y >>= 32
        e += 32
    if y >> 16:
        y >>= 16
        e += 16
    if y >> 8:
        y >>= 8
        e += 8
    if y >> 4:
        y >>= 4
        e += 4
    if y >> 2:
        y >>= 2
        e += 2
    if y >> 1:
        e += 1
    b = e * AGES_PER_OCTAVE + (((x << 2) >> e) & 3)  # the two bits after the leading one
    return b if b < AGE_BUCKETS else AGE_BUCKETS - 1


@njit(cache=True)
def bucket_age(b):
    """A representative idle time of age bucket ``b`` (its midpoint)."""
    octave, step = b // AGES_PER_OCTAVE, b % AGES_PER_OCTAVE
    return 2.0 ** octave * (1.0 + (step + 0.5) / AGES_PER_OCTAVE) - 1.0 if b > 0 else 0.0


@njit(cache=True)
def _density(table, dist, edges, floats, c, a):
    """``table[c, a]``, computed on first use after the horizon changed (NaN: not yet)."""
    hd = table[c, a]
    if hd != hd:
        hd = _hit_density(dist[c], edges, bucket_age(a), floats[X_HORIZON])
        table[c, a] = hd
    return hd


# ----------------------------------------------------------------------------- linked lists


# A family of ``lists`` linked lists keeps its heads, tails and sizes in three runs of ``ints`` (the list
# whose head is ``ints[head]`` has its tail at ``ints[head + lists]`` and its size at ``ints[head + 2 * lists]``);
# a block is linked through two adjacent fields of its row, ``link`` (previous) and ``link + 1`` (next).


@njit(cache=True)
def _append(blocks, ints, key, link, head, lists):
    """Link ``key`` at the tail of a list (the end evicted last)."""
    tail = ints[head + lists]
    blocks[key, link] = tail
    blocks[key, link + 1] = -1
    if tail >= 0:
        blocks[tail, link + 1] = key
    else:
        ints[head] = key
    ints[head + lists] = key
    ints[head + 2 * lists] += 1


@njit(cache=True)
def _prepend(blocks, ints, key, link, head, lists):
    """Link ``key`` at the head of a list (the end evicted first)."""
    first = ints[head]
    blocks[key, link] = -1
    blocks[key, link + 1] = first
    if first >= 0:
        blocks[first, link] = key
    else:
        ints[head + lists] = key
    ints[head] = key
    ints[head + 2 * lists] += 1


@njit(cache=True)
def _unlink(blocks, ints, key, link, head, lists):
    """Take ``key`` out of the list it is linked in."""
    prev, nxt = blocks[key, link], blocks[key, link + 1]
    if prev >= 0:
        blocks[prev, link + 1] = nxt
    else:
        ints[head] = nxt
    if nxt >= 0:
        blocks[nxt, link] = prev
    else:
        ints[head + lists] = prev
    ints[head + 2 * lists] -= 1


@njit(cache=True)
def _arc_push(blocks, ints, lst, key):
    """Append ``key`` at the MRU end of ARC list ``lst``."""
    blocks[key, B_ARC] = lst
    _append(blocks, ints, key, B_ARC_PREV, S_ARC_HEAD + lst - 1, 4)


@njit(cache=True)
def _arc_unlink(blocks, ints, key):
    _unlink(blocks, ints, key, B_ARC_PREV, S_ARC_HEAD + blocks[key, B_ARC] - 1, 4)
    blocks[key, B_ARC] = 0


@njit(cache=True)
def _out_unlink(blocks, ints, key):
    """Take ``key`` off the out-list it is on, if any."""
    lst = blocks[key, B_OUT]
    if lst == 0:
        return
    _unlink(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)
    blocks[key, B_OUT] = 0


@njit(cache=True)
def _out_set(blocks, ints, key, lst, front):
    """Put ``key`` (in the real cache) on out-list ``lst`` (bit e: expert e does not hold it; 0: all
    hold it, no list); ``front``: it will be evicted before the others."""
    if blocks[key, B_OUT] == lst:
        return
    _out_unlink(blocks, ints, key)
    if lst == 0:
        return
    blocks[key, B_OUT] = lst
    if front:
        _prepend(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)
    else:
        _append(blocks, ints, key, B_OUT_PREV, S_OUT_HEAD + lst - 1, OUT_LISTS)


@njit(cache=True)
def _expert_gains(blocks, ints, e, key):
    """Expert ``e`` now holds ``key``: if the real cache holds it too, one reason fewer to evict it."""
    if blocks[key, B_REAL] >= 0:
        _out_set(blocks, ints, key, blocks[key, B_OUT] & ~(1 << e), False)


@njit(cache=True)
def _expert_drops(blocks, ints, e, key):
    """Expert ``e`` evicted ``key``: if the real cache holds it, it joins the matching out-list (last)."""
    if blocks[key, B_REAL] >= 0:
        _out_set(blocks, ints, key, blocks[key, B_OUT] | (1 << e), False)


# ----------------------------------------------------------------------------- experts


@njit(cache=True)
def _arc_step(blocks, ints, floats, key):
    """The ARC expert sees an access to ``key``; returns True on a hit."""
    where = blocks[key, B_ARC]
    if where == T1 or where == T2:
        _arc_unlink(blocks, ints, key)
        _arc_push(blocks, ints, T2, key)
        return True
    c = ints[S_CAP]
    t1, t2 = ints[S_ARC_SIZE], ints[S_ARC_SIZE + 1]
    b1, b2 = ints[S_ARC_SIZE + 2], ints[S_ARC_SIZE + 3]
    if where == B1:
        floats[X_P] = min(floats[X_P] + max(b2 / b1, 1.0), float(c))
    elif where == B2:
        floats[X_P] = max(floats[X_P] - max(b1 / b2, 1.0), 0.0)
    elif t1 + b1 >= c:
        if t1 < c and b1 > 0:
            _arc_unlink(blocks, ints, ints[S_ARC_HEAD + 2])
    elif t1 + b1 + t2 + b2 >= 2 * c and b2 > 0:
        _arc_unlink(blocks, ints, ints[S_ARC_HEAD + 3])
    t1, t2, b1 = ints[S_ARC_SIZE], ints[S_ARC_SIZE + 1], ints[S_ARC_SIZE + 2]
    if t1 + t2 >= c:
        in_ghost = where == B1 or where == B2
        if not in_ghost and t1 + b1 >= c and t1 >= c:
            victim = ints[S_ARC_HEAD]
            _arc_unlink(blocks, ints, victim)  # case IV.A: no ghost entry
        elif (t1 > 0 and (t1 > floats[X_P] or (where == B2 and t1 == floats[X_P]))) or t2 == 0:
            victim = ints[S_ARC_HEAD]
            _arc_unlink(blocks, ints, victim)
            _arc_push(blocks, ints, B1, victim)
        else:
            victim = ints[S_ARC_HEAD + 1]
            _arc_unlink(blocks, ints, victim)
            _arc_push(blocks, ints, B2, victim)
        _expert_drops(blocks, ints, ARC, victim)
    if where == B1 or where == B2:
        _arc_unlink(blocks, ints, key)
        _arc_push(blocks, ints, T2, key)
    else:
        _arc_push(blocks, ints, T1, key)
    _expert_gains(blocks, ints, ARC, key)
    return False


@njit(cache=True)
def _lru_step(blocks, ints, key):
    """The LRU expert sees an access to ``key``; returns True on a hit."""
    hit = blocks[key, B_LRU_PREV] != -2
    if hit:
        _unlink(blocks, ints, key, B_LRU_PREV, S_LRU_HEAD, 1)
    elif ints[S_LRU_SIZE] >= ints[S_CAP]:
        victim = ints[S_LRU_HEAD]
        _unlink(blocks, ints, victim, B_LRU_PREV, S_LRU_HEAD, 1)
        blocks[victim, B_LRU_PREV] = -2
        _expert_drops(blocks, ints, LRU, victim)
    _append(blocks, ints, key, B_LRU_PREV, S_LRU_HEAD, 1)
    if not hit:
        _expert_gains(blocks, ints, LRU, key)
    return hit


@njit(cache=True)
def _s3_push(blocks, ints, queue, key):
    """Append ``key`` at the tail of S3-FIFO queue ``queue`` (its frequency restarts at 0)."""
    blocks[key, B_S3] = queue << 2
    _append(blocks, ints, key, B_S3_PREV, S_S3_HEAD + queue - 1, 3)


@njit(cache=True)
def _s3_unlink(blocks, ints, key):
    _unlink(blocks, ints, key, B_S3_PREV, S_S3_HEAD + (blocks[key, B_S3] >> 2) - 1, 3)
    blocks[key, B_S3] = 0


@njit(cache=True)
def _s3_evict(blocks, ints):
    """The S3-FIFO expert frees one place (the cases of ``sim.cache.policies.s3fifo.victim``/``remove``)."""
    while True:
        if ints[S_S3_SIZE + MAIN - 1] > ints[S_S3_CAPS + MAIN - 1] or ints[S_S3_SIZE + SMALL - 1] == 0:
            key = ints[S_S3_HEAD + MAIN - 1]
            while blocks[key, B_S3] & 3:  # reinserted with its frequency decremented
                freq = (blocks[key, B_S3] & 3) - 1
                _s3_unlink(blocks, ints, key)
                _s3_push(blocks, ints, MAIN, key)
                blocks[key, B_S3] |= freq
                key = ints[S_S3_HEAD + MAIN - 1]
            _s3_unlink(blocks, ints, key)
            _expert_drops(blocks, ints, S3FIFO, key)
            return
        while ints[S_S3_SIZE + SMALL - 1] > 0:  # reused while in the small queue: on to main (frequency 0)
            key = ints[S_S3_HEAD + SMALL - 1]
            freq = blocks[key, B_S3] & 3
            _s3_unlink(blocks, ints, key)
            if freq >= S3_TO_MAIN:
                _s3_push(blocks, ints, MAIN, key)
                continue
            if ints[S_S3_CAPS + GHOST - 1] > 0:
                _s3_push(blocks, ints, GHOST, key)
                if ints[S_S3_SIZE + GHOST - 1] > ints[S_S3_CAPS + GHOST - 1]:
                    _s3_unlink(blocks, ints, ints[S_S3_HEAD + GHOST - 1])
            _expert_drops(blocks, ints, S3FIFO, key)
            return


@njit(cache=True)
def _s3_step(blocks, ints, key):
    """The S3-FIFO expert sees an access to ``key``; returns True on a hit."""
    state = blocks[key, B_S3]
    queue = state >> 2
    if queue == SMALL or queue == MAIN:
        if state & 3 < S3_MAX_FREQ:
            blocks[key, B_S3] = state + 1
        return True
    if queue == GHOST:  # a returning key leaves the ghost before any eviction (libCacheSim's find)
        _s3_unlink(blocks, ints, key)
    if ints[S_S3_SIZE + SMALL - 1] + ints[S_S3_SIZE + MAIN - 1] >= ints[S_CAP]:
        ints[S_S3_EVICTED] = 1
        _s3_evict(blocks, ints)
    if queue == GHOST:
        _s3_push(blocks, ints, MAIN, key)
    elif ints[S_S3_EVICTED] == 0 and ints[S_S3_SIZE + SMALL - 1] >= ints[S_S3_CAPS + SMALL - 1]:
        _s3_push(blocks, ints, MAIN, key)
    else:
        _s3_push(blocks, ints, SMALL, key)
    _expert_gains(blocks, ints, S3FIFO, key)
    return False


@njit(cache=True)
def _draw(x):
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    return x


@njit(cache=True)
def _model_victim(model_slots, n, ints, floats, table, dist, edges, now):
    """Slot of the lowest hit density among SAMPLES random slots of the model expert, and that density."""
    best, best_hd = 0, np.inf
    x = np.uint64(ints[S_RNG])
    for _ in range(ints[S_SAMPLES]):
        x = _draw(x)
        slot = np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))  # Lemire's range reduction
        meta = model_slots[1, slot]
        hd = _density(table, dist, edges, floats, meta & CLASS_MASK, age_bucket(now - (meta >> CLASS_BITS)))
        if hd < best_hd:
            best, best_hd = slot, hd
    ints[S_RNG] = np.int64(x >> np.uint64(1)) | 1
    return best, best_hd


@njit(cache=True)
def _model_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now):
    """The model expert sees an access to ``key`` (predicted class ``klass``); returns True on a hit."""
    meta = (now << CLASS_BITS) | klass
    slot = blocks[key, B_MODEL]
    if slot >= 0:
        model_slots[1, slot] = meta
        return True
    n = ints[S_NMODEL]
    if n >= ints[S_CAP]:
        slot, victim_hd = _model_victim(model_slots, n, ints, floats, table, dist, edges, now)
        if _density(table, dist, edges, floats, klass, 0) < victim_hd:
            return False  # admission: the newcomer is worth less than what it would displace
        victim = model_slots[0, slot]
        floats[X_AGE] += floats[X_AGE_WEIGHT] * ((now - (model_slots[1, slot] >> CLASS_BITS)) - floats[X_AGE])
        blocks[victim, B_MODEL] = -1
        _expert_drops(blocks, ints, MODEL, victim)
        horizon = floats[X_HORIZON_AGES] * floats[X_AGE]
        if now >= ints[S_NEXT_TABLE] and abs(np.log(horizon / floats[X_HORIZON])) > HORIZON_STEP:
            floats[X_HORIZON] = horizon
            table[:] = np.nan  # recomputed lazily, entry by entry
            ints[S_TABLES] += 1
            ints[S_NEXT_TABLE] = now + max(ints[S_CAP], 4096)
    else:
        slot = n  # filling up; afterwards the newcomer takes its victim's slot
        ints[S_NMODEL] = n + 1
    model_slots[0, slot] = key
    model_slots[1, slot] = meta
    blocks[key, B_MODEL] = slot
    _expert_gains(blocks, ints, MODEL, key)
    return False


@njit(cache=True)
def _real_fallback(blocks, last, real_ids, ints, floats, table, dist, edges):
    """A side-effect-free pick among the real cache's blocks: the lowest hit density in a sample drawn
    from a generator seeded by the clock and the removal count (so a repeated peek gives the same)."""
    x = (np.uint64(ints[S_CLOCK] + 2) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64(ints[S_REMOVALS]) * np.uint64(0xBF58476D1CE4E5B9)) | np.uint64(1)
    n = ints[S_NREAL]
    now = ints[S_CLOCK]
    best, best_hd = real_ids[0], np.inf
    for _ in range(ints[S_SAMPLES]):
        x = _draw(x)
        key = real_ids[np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))]
        hd = _density(table, dist, edges, floats, blocks[key, B_CLASS], age_bucket(now - last[key]))
        if hd < best_hd:
            best, best_hd = key, hd
    return best


@njit(cache=True)
def _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now):
    """Every expert sees the access; the leader is re-elected on their decayed hit counts: the expert
    with the most hits takes over when its lead is significant (``X_SIGMAS`` of a Poisson count)."""
    hit_model = _model_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now)
    hit_arc = _arc_step(blocks, ints, floats, key)
    hit_lru = _lru_step(blocks, ints, key)
    hit_s3 = _s3_step(blocks, ints, key)
    decay = 1.0 - 1.0 / (SCORE_WINDOW_AGES * max(floats[X_AGE], 256.0))
    hits = (hit_model, hit_arc, hit_lru, hit_s3)
    for a in range(EXPERTS):
        floats[X_SCORE + a] = floats[X_SCORE + a] * decay + hits[a]
        for b in range(EXPERTS):
            d = X_DISCORD + a * EXPERTS + b
            floats[d] = floats[d] * decay + (hits[a] and not hits[b])
    leader = ints[S_LEADER]
    best = leader
    for e in range(EXPERTS):
        if floats[X_SCORE + e] > floats[X_SCORE + best]:
            best = e
    # best's lead = accesses only it hit - accesses only the leader hit; under "no difference" each
    # discordant access is a fair coin (McNemar's test), so the lead's spread is that of their sum
    won = floats[X_DISCORD + best * EXPERTS + leader]
    lost = floats[X_DISCORD + leader * EXPERTS + best]
    if best != leader and won - lost > floats[X_SIGMAS] * np.sqrt(won + lost + 1.0):
        ints[S_LEADER] = best
        ints[S_SWITCHES] += 1
    last[key] = now
    blocks[key, B_CLASS] = klass
    ints[S_CLOCK] = now


# ----------------------------------------------------------------------------- hooks


@njit(cache=True)
def on_access(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now):
    """A hit in the real cache."""
    _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now)


@njit(cache=True)
def on_insert(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, key, klass, now):
    """``key`` enters the real cache (after any victim left). Already there (a lower tier shared by
    instances receives the same block from two of them): an access."""
    if blocks[key, B_REAL] >= 0:
        _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now)
        return
    n = ints[S_NREAL]
    real_ids[n] = key
    blocks[key, B_REAL] = n
    ints[S_NREAL] = n + 1
    not_model = blocks[key, B_MODEL] < 0
    not_arc = blocks[key, B_ARC] != T1 and blocks[key, B_ARC] != T2
    not_lru = blocks[key, B_LRU_PREV] == -2
    not_s3 = blocks[key, B_S3] >> 2 != SMALL and blocks[key, B_S3] >> 2 != MAIN
    _out_set(blocks, ints, key,
             (1 << MODEL) * not_model + (1 << ARC) * not_arc + (1 << LRU) * not_lru + (1 << S3FIFO) * not_s3, True)
    _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, now)


@njit(cache=True)
def on_remove(blocks, real_ids, ints, key):
    """``key`` leaves the real cache."""
    slot = blocks[key, B_REAL]
    if slot < 0:
        return
    n = ints[S_NREAL] - 1
    moved = real_ids[n]
    real_ids[slot] = moved
    blocks[moved, B_REAL] = slot
    blocks[key, B_REAL] = -1
    ints[S_NREAL] = n
    ints[S_REMOVALS] += 1
    _out_unlink(blocks, ints, key)


@njit(cache=True)
def victim(blocks, last, real_ids, ints, floats, table, dist, edges):
    """The real cache's victim (a peek): the oldest block it holds that no expert holds, else the oldest
    that the leader does not hold (held by fewer experts first), else the lowest hit density among a
    sample of its blocks."""
    head = ints[S_OUT_HEAD + NONE_HOLDS - 1]
    if head >= 0:
        return head
    bit = 1 << ints[S_LEADER]
    for held_by in range(1, EXPERTS):  # other experts holding it: 1, then 2, ...
        for lst in range(1, OUT_LISTS):
            if lst & bit and _popcount(lst) == EXPERTS - held_by and ints[S_OUT_HEAD + lst - 1] >= 0:
                return ints[S_OUT_HEAD + lst - 1]
    return _real_fallback(blocks, last, real_ids, ints, floats, table, dist, edges)


@njit(cache=True)
def _popcount(x):
    count = 0
    while x:
        count += x & 1
        x >>= 1
    return count


@njit(cache=True)
def replay_plain(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, stream, klass, start, capacity,
                 hit):
    """Plain replay of ``stream`` (positions ``start``...) through a single real cache of ``capacity``
    blocks: the hooks above in the tier's order. Sets ``hit[i]``; returns the evictions."""
    evictions = 0
    for i in range(len(stream)):
        key = stream[i]
        now = start + i
        c = klass[now]
        if blocks[key, B_REAL] >= 0:
            hit[i] = True
            on_access(blocks, last, model_slots, ints, floats, table, dist, edges, key, c, now)
            continue
        if ints[S_NREAL] >= capacity:
            v = victim(blocks, last, real_ids, ints, floats, table, dist, edges)
            on_remove(blocks, real_ids, ints, v)
            evictions += 1
        on_insert(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, key, c, now)
    return evictions


# the compiled hooks inline S3-FIFO's thresholds from its policy module
flush_when_sources_change(cached_functions(sys.modules[__name__]), [Path(__file__), Path(s3fifo.__file__)],
                          "learned-kernel.sha256")
