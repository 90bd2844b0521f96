"""Compiled per-access bookkeeping of the learned policy, over arrays indexed by dense block id.

The policy is five caches of the same capacity fed the same accesses:
- the *model expert*, a shadow cache (ids only) that evicts by hit density computed from the
  model's predicted next-use distribution (``learned.hit_density``) and declines blocks whose
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
  model therefore costs the switching lag against the best classic expert plus one convergence to it (the real
  cache gains the new leader's blocks only as it misses them: learned/README.md, "Workloads it was never tuned
  on"), and a good one is followed. While the evidence is thin, the real cache hedges: of the blocks only one of
  the leader and its likeliest challenger holds, it keeps the challenger's share Phi(z) (z: McNemar's, as
  tested here), so that part of a switch's convergence is paid before it (``real_victim._hedged``). A copy that
  sees only part of the stream the model predicts (``Predictions.private``: an instance's HBM among several) runs
  the classic experts alone, and where every block it holds is its leader's it evicts them in the leader's own
  order, so that following a classic expert is being it. The experts see the tier's own moves as their policies would (a readmission of a block it holds is each
  policy's ``readmit``; a block promoted out of the tier is its hit and leaves each expert: ``_readmit``,
  ``_leave``), so that in a lower tier shared by instances too, following a classic expert is being it.

The model expert's hit densities come from ``learned.hit_density``, the classic experts are
``learned.shadow_experts``, the arrays' layout is ``learned.state_layout``. Hooks follow the tier protocol
(``victim`` is a pure peek; ``on_access``/``on_insert`` feed the experts after the real cache's own move),
so the per-request kernel ``replay_plain`` and the hook-by-hook path give identical results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from learned.hit_density import AGE_BUCKETS, age_bucket, density
from learned.real_victim import _child_slot, _draw, victim
from learned.shadow_experts import (
    _append,
    _unlink,
    arc_step,
    expert_drops,
    expert_gains,
    holds,
    leave,
    lru_step,
    out_set,
    out_unlink,
    readmit,
    s3_step,
)
from learned.state_layout import (
    ARC,
    B_ARC,
    B_CLASS,
    B_LRU_PREV,
    B_MLRU_PREV,
    B_MODEL,
    B_OUT,
    B_REAL,
    B_S3,
    BLOCK_FIELDS,
    CLASS_BITS,
    CLASS_MASK,
    EXPERTS,
    FLOAT_SLOTS,
    INT_SLOTS,
    LRU,
    MODEL,
    OUT_LISTS,
    S3FIFO,
    S_ARC_HEAD,
    S_ARC_TAIL,
    S_CAP,
    S_CLOCK,
    S_ELECT_FROM,
    S_LEADER,
    S_LRU_HEAD,
    S_LRU_SIZE,
    S_LRU_TAIL,
    S_MLRU_HEAD,
    S_NEXT_TABLE,
    S_NMODEL,
    S_NREAL,
    S_OUT_HEAD,
    S_OUT_TAIL,
    S_PLEN,
    S_REMOVALS,
    S_REQ,
    S_RNG,
    S_S3_CAPS,
    S_S3_HEAD,
    S_S3_TAIL,
    S_SAMPLES,
    S_SWITCHES,
    S_TABLES,
    X_AGE,
    X_AGE_WEIGHT,
    X_DISCORD,
    X_HORIZON,
    X_HORIZON_AGES,
    X_SCORE,
    X_SIGMAS,
)
from sim.cache.policies import s3fifo
from sim.cache.policies.s3fifo import GHOST_RATIO as S3_GHOST_RATIO
from sim.cache.policies.s3fifo import SMALL_RATIO as S3_SMALL_RATIO
from sim.jit import flush_when_sources_change, njit

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
    ints[S_REQ] = -1
    ints[S_LEADER] = MODEL  # trusted until another expert has had significantly more hits
    ints[S_ARC_HEAD:S_ARC_HEAD + 4] = -1
    ints[S_ARC_TAIL:S_ARC_TAIL + 4] = -1
    ints[S_OUT_HEAD:S_OUT_HEAD + OUT_LISTS] = -1
    ints[S_OUT_TAIL:S_OUT_TAIL + OUT_LISTS] = -1
    ints[S_LRU_HEAD] = -1
    ints[S_MLRU_HEAD] = -1
    ints[S_MLRU_HEAD + 1] = -1
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
    table = np.full((len(dist), AGE_BUCKETS), np.nan)  # filled lazily (``density``)
    floats[X_HORIZON] = floats[X_HORIZON_AGES] * floats[X_AGE]
    return {
        "blocks": blocks, "last": np.zeros(max(1, num_ids), dtype=np.int64),
        "real_ids": np.zeros(max(1, capacity), dtype=np.int64), "model_slots": np.zeros((2, max(1, capacity)), dtype=np.int64),
        "ints": ints, "floats": floats, "table": table,
        # copies: the state owns its arrays (a caller that edits its table later must not reach into a run)
        "dist": np.array(dist, dtype=np.float64, order="C"), "edges": np.array(edges, dtype=np.float64, order="C"),
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


# ----------------------------------------------------------------------------- the model expert


@njit(cache=True)
def _model_victim(blocks, model_slots, n, ints, floats, table, dist, edges, now):
    """Slot of the lowest hit density among SAMPLES random slots of the model expert and, where it is idle past
    the model's label horizon (the last finite bucket edge), its least recent block; and that density.

    Past the label horizon every class's remaining law is the same (the model says only "not within the horizon",
    spread log-uniformly beyond: ``learned.model.BEYOND_SPAN``), so there blocks differ only in age and the least
    recent has the lowest density: near the knee, where the expert's eviction age passes that horizon (Mooncake,
    33,727 blocks: 43,000-45,000 accesses against 38,251), the oldest of a sample (four age buckets an octave, a tie
    to the first drawn) is not the oldest block, and LRU, which evicts exactly that one, did better. Short of the
    horizon a class's law may make an older block the likelier back (a perfect predictor's one-hot buckets):
    there the sample alone decides."""
    best, best_hd = 0, np.inf
    x = np.uint64(ints[S_RNG])
    for i in range(ints[S_SAMPLES] + 1):
        if i == 0:  # the least recent block, past the label horizon (first: it wins a tie)
            slot = np.int64(blocks[ints[S_MLRU_HEAD], B_MODEL])
            if now - (model_slots[1, slot] >> CLASS_BITS) <= edges[len(edges) - 2]:
                continue
        else:
            x = _draw(x)
            slot = np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))  # Lemire's range reduction
        meta = model_slots[1, slot]
        hd = density(table, dist, edges, floats, meta & CLASS_MASK, age_bucket(now - (meta >> CLASS_BITS)))
        if hd < best_hd:
            best, best_hd = slot, hd
    ints[S_RNG] = np.int64(x >> np.uint64(1)) | 1
    return best, best_hd


@njit(cache=True)
def _model_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, now, pkeys, pstart, pnext):
    """The model expert sees an access to ``key`` at stream position ``at`` (predicted class ``klass``, its
    idle time counted from ``at``) when the clock reads ``now`` (>= ``at``); returns True on a hit.

    By prefix semantics (``pstart`` covers ``at``) a block is of use only while its parent is held (a lookup stops
    at the first block missing), so the expert keeps its holdings prefix-closed along the requests it saw: it
    admits a block whose child (the next block of its request) it holds, and evicts, instead of a sampled victim,
    the deepest block it holds of the chain that followed the victim at its last access (a leaf's worth is at
    most its parent's, and evicting the parent would lose both)."""
    meta = (at << CLASS_BITS) | klass
    slot = blocks[key, B_MODEL]
    if slot >= 0:
        model_slots[1, slot] = meta
        _unlink(blocks, ints, key, B_MLRU_PREV, S_MLRU_HEAD, 1)
        _append(blocks, ints, key, B_MLRU_PREV, S_MLRU_HEAD, 1)
        return True
    n = ints[S_NMODEL]
    prefix = at < len(pstart)
    if n >= ints[S_CAP]:
        slot, victim_hd = _model_victim(blocks, model_slots, n, ints, floats, table, dist, edges, now)
        if density(table, dist, edges, floats, klass, age_bucket(now - at)) < victim_hd and not (
                prefix and _child_slot(blocks, B_MODEL, pkeys, pnext, at) >= 0):
            return False  # admission: the newcomer is worth less than what it would displace
        if prefix:  # leaf first: down the chain that followed the victim at its last access
            p = model_slots[1, slot] >> CLASS_BITS
            while p < len(pstart):
                child = _child_slot(blocks, B_MODEL, pkeys, pnext, p)
                if child < 0:
                    break
                slot = child
                p = pnext[p]
        victim = model_slots[0, slot]
        floats[X_AGE] += floats[X_AGE_WEIGHT] * ((now - (model_slots[1, slot] >> CLASS_BITS)) - floats[X_AGE])
        blocks[victim, B_MODEL] = -1
        _unlink(blocks, ints, victim, B_MLRU_PREV, S_MLRU_HEAD, 1)
        expert_drops(blocks, ints, MODEL, victim)
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
    _append(blocks, ints, key, B_MLRU_PREV, S_MLRU_HEAD, 1)
    expert_gains(blocks, ints, MODEL, key)
    return False


@njit(cache=True)
def _prefix_scan(blocks, ints, pkeys, pstart, lo):
    """A request (its blocks from stream position ``lo`` on) is first touched: how many of its blocks, from its first,
    each expert holds now, before any of its touches changes them: what that expert, were it the cache, would serve
    the request by prefix semantics (its lookup stops at the first block it lacks)."""
    ints[S_REQ] = lo
    n = len(pkeys)
    for e in range(EXPERTS):
        p = lo
        while p < n and pstart[p] == lo and holds(blocks, e, pkeys[p]):
            p += 1
        ints[S_PLEN + e] = p - lo


@njit(cache=True)
def _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext):
    """Every expert sees the access at stream position ``at``; the leader is re-elected on their decayed hit
    counts: the expert with the most hits takes over when its lead is significant (``X_SIGMAS`` of a Poisson count).

    ``pkeys``, ``pstart`` (each position's block and its request's first position; empty: plain scoring): the run
    looks blocks up by prefix semantics, so an expert's hit is a prefix hit, counted as its lookup would have found
    the request when its first touch came (``_prefix_scan``), not whether it holds this block: touches come deepest
    first and go on past the real cache's first miss, and an expert that kept a request's deep blocks but lost a
    shallow one held blocks its lookup would never reach (Mooncake, 30,000 blocks: the model expert led on such
    holdings and served 0.3063 against LRU's 0.3107).

    ``at`` is which access the block's class came from, and its idle time counts from there (``last``); the clock
    (``S_CLOCK``: eviction ages, idle times, the horizon's schedule) is the latest position seen, as positions
    need not come in order: serving returns a request's blocks at their own accesses when it frees them, a
    cluster fetch brings a block up as of its previous access, a lower tier takes a demoted block as of its last
    use. Taken as the time, an earlier position wound every other block's idle time back."""
    now = max(ints[S_CLOCK], at)
    prefix = at < len(pstart)
    if prefix and pstart[at] != ints[S_REQ]:
        _prefix_scan(blocks, ints, pkeys, pstart, pstart[at])
    if ints[S_ELECT_FROM] == MODEL:
        hit_model = _model_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, now, pkeys,
                                pstart, pnext)
    else:  # a private copy (``Predictions.private``): no model expert, neither to lead nor among the holders that
        # order the real cache's victims (Mooncake's model on the multi-turn workload, 4 x 200 HBM blocks with
        # DRAM/SSD, seed 3: 0.4457 -> 0.4548, ARC 0.4642); the score window's clock is the LRU expert's eviction age
        hit_model = False
        _lru_age(blocks, last, ints, floats, key, now)
    hit_arc = arc_step(blocks, ints, floats, key)
    hit_lru = lru_step(blocks, ints, key)
    hit_s3 = s3_step(blocks, ints, key)
    if prefix:
        depth = at - ints[S_REQ]
        hit_model = depth < ints[S_PLEN + MODEL]
        hit_arc = depth < ints[S_PLEN + ARC]
        hit_lru = depth < ints[S_PLEN + LRU]
        hit_s3 = depth < ints[S_PLEN + S3FIFO]
    _score(ints, floats, (hit_model, hit_arc, hit_lru, hit_s3))
    last[key] = at
    blocks[key, B_CLASS] = klass
    ints[S_CLOCK] = now


@njit(cache=True)
def _score(ints, floats, hits):
    """Each expert's decayed hits (and the pairwise discordant ones) take one lookup's ``hits``; the leader is
    re-elected on them: the expert with the most hits takes over when its lead is significant (``X_SIGMAS`` of a
    Poisson count)."""
    decay = 1.0 - 1.0 / (SCORE_WINDOW_AGES * max(floats[X_AGE], 256.0))
    for a in range(EXPERTS):
        floats[X_SCORE + a] = floats[X_SCORE + a] * decay + hits[a]
        for b in range(EXPERTS):
            d = X_DISCORD + a * EXPERTS + b
            floats[d] = floats[d] * decay + (hits[a] and not hits[b])
    leader = ints[S_LEADER]
    best = leader
    for e in range(ints[S_ELECT_FROM], EXPERTS):
        if floats[X_SCORE + e] > floats[X_SCORE + best]:
            best = e
    # best's lead = accesses only it hit - accesses only the leader hit; under "no difference" each
    # discordant access is a fair coin (McNemar's test), so the lead's spread is that of their sum
    won = floats[X_DISCORD + best * EXPERTS + leader]
    lost = floats[X_DISCORD + leader * EXPERTS + best]
    if best != leader and won - lost > floats[X_SIGMAS] * np.sqrt(won + lost + 1.0):
        ints[S_LEADER] = best
        ints[S_SWITCHES] += 1


@njit(cache=True)
def _lru_age(blocks, last, ints, floats, key, now):
    """A private copy's eviction age (its score window's clock) is the LRU expert's: its least recent block's idle time
    as an access of ``key`` it does not hold makes it evict."""
    if blocks[key, B_LRU_PREV] == -2 and ints[S_LRU_SIZE] >= ints[S_CAP]:
        floats[X_AGE] += floats[X_AGE_WEIGHT] * ((now - last[ints[S_LRU_HEAD]]) - floats[X_AGE])


@njit(cache=True)
def _readmit(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext):
    """``key``, held by the real cache, enters it again (a lower tier shared by instances receives the same block from
    another one): nothing was looked up, so no expert is scored; each classic expert readmits it as its policy does
    (``shadow_experts.readmit``: LRU keeps its place, as ``sim.cache.policies.lru``'s ``keep_place``), so that the
    real cache, following one, is that policy's tier. The model expert takes it as a use (its class, from ``at``)."""
    now = max(ints[S_CLOCK], at)
    if ints[S_ELECT_FROM] == MODEL:
        _model_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, now, pkeys, pstart,
                    pnext)
    else:
        _lru_age(blocks, last, ints, floats, key, now)
    for e in range(ARC, EXPERTS):
        readmit(blocks, ints, floats, e, key)
    last[key] = at
    blocks[key, B_CLASS] = klass
    ints[S_CLOCK] = now


@njit(cache=True)
def _model_drop(blocks, model_slots, ints, key):
    """The model expert lets ``key`` go (its slot goes to its last one)."""
    slot = blocks[key, B_MODEL]
    n = ints[S_NMODEL] - 1
    moved = model_slots[0, n]
    model_slots[0, slot] = moved
    model_slots[1, slot] = model_slots[1, n]
    blocks[moved, B_MODEL] = slot
    blocks[key, B_MODEL] = -1
    ints[S_NMODEL] = n
    _unlink(blocks, ints, key, B_MLRU_PREV, S_MLRU_HEAD, 1)


@njit(cache=True)
def _leave(blocks, model_slots, ints, floats, key):
    """``key`` left the real cache other than as its victim: promoted up out of an exclusive lower tier. That read is
    the tier's hit, and each expert holding the block would have served it (scored); then each drops it as its
    policy drops a block that leaves (``shadow_experts.leave``: no ghost), so that an expert's holdings are what its
    policy's tier would hold, not blocks the tier gave up (the LRU expert, full of them, evicted blocks the tier
    still held, and its leader's victims followed the out-lists' order, not recency)."""
    hits = (holds(blocks, MODEL, key), holds(blocks, ARC, key), holds(blocks, LRU, key),
            holds(blocks, S3FIFO, key))
    _score(ints, floats, hits)
    if hits[MODEL]:
        _model_drop(blocks, model_slots, ints, key)
    for e in range(ARC, EXPERTS):
        leave(blocks, ints, e, key)


# ----------------------------------------------------------------------------- hooks


@njit(cache=True)
def on_access(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext):
    """A hit in the real cache (``pkeys``, ``pstart``: ``_experts_step``)."""
    _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext)


@njit(cache=True)
def on_insert(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart,
              pnext):
    """``key`` enters the real cache (after any victim left). Already there (a lower tier shared by
    instances receives the same block from two of them): a readmission (``_readmit``)."""
    if blocks[key, B_REAL] >= 0:
        _readmit(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext)
        return
    n = ints[S_NREAL]
    real_ids[n] = key
    blocks[key, B_REAL] = n
    ints[S_NREAL] = n + 1
    out = 0  # the experts that do not hold it
    for e in range(EXPERTS):
        if not holds(blocks, e, key):
            out |= 1 << e
    out_set(blocks, ints, key, out, True)
    _experts_step(blocks, last, model_slots, ints, floats, table, dist, edges, key, klass, at, pkeys, pstart, pnext)


@njit(cache=True)
def on_remove(blocks, real_ids, model_slots, ints, floats, key, leaves):
    """``key`` leaves the real cache: its victim, or taken by a running request that gives it back when freed (the
    experts keep their own view: they evict by their own choices, and a taken block comes back), or, ``leaves``, it
    leaves the tier otherwise (promoted out of an exclusive lower tier: ``_leave``)."""
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
    out_unlink(blocks, ints, key)
    if leaves:
        _leave(blocks, model_slots, ints, floats, key)


@njit(cache=True)
def replay_plain(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, stream, klass, start, capacity,
                 hit):
    """Plain replay of ``stream`` (positions ``start``...) through a single real cache of ``capacity``
    blocks: the hooks above in the tier's order. Sets ``hit[i]``; returns the evictions."""
    evictions = 0
    plain = np.zeros(0, dtype=np.int64)  # (plain semantics: every expert scored on the blocks it holds)
    for i in range(len(stream)):
        key = stream[i]
        now = start + i
        c = klass[now]
        if blocks[key, B_REAL] >= 0:
            hit[i] = True
            on_access(blocks, last, model_slots, ints, floats, table, dist, edges, key, c, now, plain, plain, plain)
            continue
        if ints[S_NREAL] >= capacity:
            v = victim(blocks, last, real_ids, ints, floats, table, dist, edges, plain, plain, plain, plain, key)
            on_remove(blocks, real_ids, model_slots, ints, floats, v, False)
            evictions += 1
        on_insert(blocks, last, real_ids, model_slots, ints, floats, table, dist, edges, key, c, now, plain, plain,
                  plain)
    return evictions


# the compiled hooks inline the layout, the hit density, the experts and S3-FIFO's thresholds
_HERE = Path(__file__).parent
flush_when_sources_change(sys.modules[__name__], [_HERE / "state_layout.py", _HERE / "hit_density.py",
                                                  _HERE / "shadow_experts.py", _HERE / "real_victim.py",
                                                  Path(s3fifo.__file__)])
