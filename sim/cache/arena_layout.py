"""The layout of the tier arena's arrays (column and scalar indices), the compiled-function
decorators every cache kernel uses, and the tuples compiled code receives: ``Arena`` (``sim.cache.arena``
explains what the arrays hold) and a cache's ``CacheView`` of it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.jit import njit
from trace.request import KEY_LIMIT  # noqa: F401  (the arena's bound is the trace's: re-exported)

# ---- meta columns (per tier)
KIND, CAP, PCAP, BOUND, HEAP0, HEAPCAP, HEAPED, RESIDENT, HEAPN, USERS = range(10)
HEAD, TAIL, SIZE = 10, 14, 18  # + list id (0..3)
X0 = 22  # first of the policy's own scalars
STAT0 = X0 + 8  # the tier's counters (``STAT_FIELDS`` of them, in ``TierStats``' order)
# blocks taken out of the tier by running requests whose policy history it keeps (``operations.take``)
TAKEN = STAT0 + 8
META_FIELDS = TAKEN + 1
# BOUND: slots the tier's policy may hold at most; HEAP0/HEAPCAP: its heap region in ``heap``
# (HEAPED: its policy keeps a heap)

# ---- slot columns
KEY, PLACE, CHAIN, PREV, NEXT, COUNT, PRIO, HPOS = range(8)  # NEXT also chains the free pool
# PLACE packs a slot's tier, its pin and where it is in its tier's policy: tier << TIER_SHIFT | pinned << WHERE_BITS |
# (where + 1) (``tier_of``, ``pinned``, ``where_of``): where is -1 (free), a list id 0..3 or TAKEN_WHERE, so three
# bits; one column instead of three is a seventh of an LRU slot, and the pool is most of a fleet's memory.
WHERE_BITS = 3
PIN = 1 << WHERE_BITS  # a pinned slot: its block is held by the request being replayed, no victim (``pinned``)
TIER_SHIFT = WHERE_BITS + 1
TAKEN_WHERE = 4  # where of a taken block's slot: filed in the directory, in no list, its policy history in PREV
SLOT_FIELDS = 8  # KEY, PLACE and CHAIN first: a directory probe reads them together
BASE_FIELDS = NEXT + 1  # the columns every policy uses; COUNT, PRIO, HPOS only policies that declare them
# A policy module's ``SLOT_FIELDS`` says how many leading columns it uses; the pool is as wide as the widest
# policy of its tiers (an LRU fleet's slot is 20 bytes, not 32: the pool is most of a cluster's memory).
# CHAIN: the slot's links in the holder chain of its block id (other tiers' slots; ``sim.cache.block_index``): -1 when
# it has none; else, where the directory hashes members, a *link row*: another row of the pool, no slot (KEY -1),
# whose LINK_PREV and LINK_NEXT hold the neighbours (two links out of line for the few slots that have neighbours:
# 4% of a fleet's at 1 M prod-eval requests, not in every slot); where it walks them (few tiers), the next member.
SLOT_DTYPE = np.int32  # every column fits: slot numbers, block ids and stream positions are below KEY_LIMIT
# Block ids (and the arena's block-id space ``max_keys``) and a Belady stream's positions are below KEY_LIMIT (the
# trace's bound on its int32 block ids: ``trace.request``); a position with no next use is stored as it (``rank``).
# Half the bytes of int64 columns: a fleet's arena holds a slot for nearly every block it has seen.

LINK_PREV, LINK_NEXT = PREV, NEXT  # a link row's columns: the previous and next slots of a holder chain (-1: none)

# ---- arena-wide scalars (the first ``GLOB_FIELDS`` entries of ``aux``)
FREE, IN_USE, ENTRIES, SHIFT, HEAP_END, WANT, ABSENT, HEADS, LINK_ROWS = range(9)
GLOB_FIELDS = 9
# FREE: first free slot (-1: none); IN_USE: slots taken; ENTRIES: entries of the directory's hashed region;
# SHIFT: 64 - log2(the hashed region's cells); HEADS: the directory's direct-mapped cells before it (a chain head per
# block id, ``sim.cache.block_index``), 0: none (all hashed); HEAP_END: used length of ``heap``; WANT: uses an entry
# point asked room for; ABSENT: a block id that no tier tracks, as the last lookup found
# (NONE: unknown), so filing it right after a miss takes no second search; LINK_ROWS: the slots in use as link rows

# ---- stats columns, from ``STAT0`` in a tier's ``meta`` row (the order of TierStats' fields)
HITS, INSERTIONS, PROMOTIONS, DEMOTIONS, EVICTIONS, PREFETCHES, BYTES_READ, BYTES_WRITTEN = range(8)
STAT_FIELDS = 8

GROWTH = 3  # slots one block use may add to one tier (LFU: a block and its bucket, and a hit's new bucket)
NONE = -(1 << 62)  # "no key" in policy scalars (block ids are >= 0; -1 is a legal "incoming" key)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's multiplier: spreads (block id, tier) pairs
MAX_SLOTS = (1 << 31) - 1  # the directory and the slots' links hold int32 slot numbers


def kernel(fn):
    """A small compiled cache function, inlined into its callers. No reference counting
    (``_nrt=False``): kernels never allocate, and counting references to the arena's arrays on
    every call costs more than the work.

    Inlined by LLVM (``forceinline``: its ``alwaysinline``), not by numba (``inline="always"``):
    numba's inliner deep-copies the callee's IR at every call site, recursively, which made a
    cold compile of the ARC replay take 190 s (LRU 42 s) on a 2-core machine, for machine code
    no faster than LLVM's (15 s; ``benchmarks/bench_cache.py``)."""
    return njit(_nrt=False, forceinline=True)(fn)


@kernel
def tier_of(slots, s: int) -> int:
    """The tier slot ``s`` belongs to (``PLACE``'s high bits)."""
    return slots[s, PLACE] >> TIER_SHIFT


@kernel
def where_of(slots, s: int) -> int:
    """Where slot ``s`` is in its tier's policy: a list id, ``TAKEN_WHERE``, or -1 (free)."""
    return (slots[s, PLACE] & ((1 << WHERE_BITS) - 1)) - 1


@kernel
def set_where(slots, s: int, where: int) -> None:
    slots[s, PLACE] = (slots[s, PLACE] >> WHERE_BITS << WHERE_BITS) | (where + 1)


@kernel
def pinned(slots, s: int) -> bool:
    """Whether slot ``s`` is pinned: its block is one the request being replayed found cached (a hit of its prefix),
    held until that request touches it, so no policy picks it as a victim (vLLM: a block with ``ref_cnt`` > 0 is
    not in the free queue that allocation evicts from)."""
    return slots[s, PLACE] & PIN != 0


@kernel
def set_pin(slots, s: int, on: bool) -> None:
    """Pin slot ``s`` (``on``) or unpin it."""
    slots[s, PLACE] = slots[s, PLACE] | PIN if on else slots[s, PLACE] & ~PIN


@kernel
def place(t: int, where: int) -> int:
    """``PLACE`` of a slot of tier ``t`` at ``where``, unpinned."""
    return (t << TIER_SHIFT) | (where + 1)


@kernel
def alloc_slot(a, t: int) -> int:
    """Take a slot from the free pool for tier ``t`` (not entered in the directory)."""
    s = a.aux[FREE]
    if s < 0:
        raise RuntimeError("tier arena slot pool exhausted (an entry point without a room check?)")
    a.aux[FREE] = a.slots[s, NEXT]
    a.aux[IN_USE] += 1
    a.slots[s, PLACE] = place(t, -1)
    a.slots[s, PREV] = -1
    a.slots[s, NEXT] = -1
    return s


@kernel
def release_slot(a, t: int, s: int) -> None:
    """Return a slot that is not in the directory to the free pool."""
    a.slots[s, KEY] = -1
    set_where(a.slots, s, -1)
    a.slots[s, NEXT] = a.aux[FREE]
    a.aux[FREE] = s
    a.aux[IN_USE] -= 1


def step(fn):
    """A compiled multi-tier operation: a ``kernel`` not inlined (it is called from several places)."""
    return njit(_nrt=False)(fn)


def entry(fn):
    """A compiled function called from Python: a ``kernel`` whose machine code is cached on disk."""
    return njit(cache=True, _nrt=False)(fn)


class Arena(NamedTuple):
    """The arrays of a ``TierArena``, passed to compiled code as one argument.

    This class serves arenas whose tiers run different policies (the policy is looked up per
    tier at run time). An arena whose kernel tiers all run one policy uses that policy's own
    class of the same fields (``arena_type``), so compiled code is specialised to the policy
    with no per-access dispatch. ``meta`` and ``real`` have rows to spare beyond the tiers
    added (the arrays grow by doubling). Few arrays on purpose: compiled calls pass each
    array's fields, and every extra array slows every non-inlined call.
    """

    meta: np.ndarray  # int64 [tier rows, META_FIELDS]: a tier's settings, state and counters
    real: np.ndarray  # float64 [tier rows]: a policy's real-valued scalar (ARC's target p)
    slots: np.ndarray  # SLOT_DTYPE [pool, SLOT_FIELDS]; KEY -1 and where -1 when free
    table: np.ndarray  # int32 [HEADS + a power of two]: the directory (``sim.cache.block_index``); a slot, -1 empty
    aux: np.ndarray  # int64: the arena-wide scalars, then the tiers' heap regions (entry i of tier t at HEAP0 + i)
    future: np.ndarray  # int64 [stream]: next use of the block accessed at each position (Belady)


class CacheView(NamedTuple):
    """One cache's tiers in an arena and its settings, as compiled code sees them."""

    tiers: np.ndarray  # int64 tier indices, top down
    inclusive: bool
    block_bytes: int
    last_pos: np.ndarray  # int64, per block id: its last use position (-1: none); empty when not tracked
    copy_from: int  # keys from this one on are a hybrid model's other groups' entries (``copy_bytes`` each)
    copy_bytes: int
    read_copies: int  # reads of a stored key a load makes: TP for MLA's latent, stored once (``tiers.read_copies``)
    # int64 [levels, 2]: the bytes the tier at each level stores and writes for a block (column 0) and for a copy (1);
    # ``block_bytes``/``copy_bytes`` but where a tier stores fewer (an EIC of distinct pages: ``Tier.stored_block``)
    stored: np.ndarray
    span: int  # the arena tier of the one policy spanning the tiers (``sim.cache.span``); -1: a policy per tier
    guard: np.ndarray  # int64: the tiers an operation may add slots to (``room``): the span's first, then ``tiers``


@kernel
def key_bytes(c, level, key):
    """Bytes the tier at ``level`` stores and writes for ``key``: a block's, or a copy's (a Gated DeltaNet state,
    unpadded)."""
    return c.stored[level, 1] if key >= c.copy_from else c.stored[level, 0]


@kernel
def read_bytes(c, key):
    """Bytes a tier reads for ``key`` when it serves a load: every rank's page, each read by its own rank (a block's
    ``block_bytes``, whichever layout its tier stores: ``sim.cache.tiers.tier_block_bytes``), the stored bytes once
    per rank that reads them."""
    return (c.copy_bytes if key >= c.copy_from else c.block_bytes) * c.read_copies


def arena_type(name: str, module: str) -> type:
    """A class with ``Arena``'s fields, for one policy's arenas (defined as ``module.name``)."""
    cls = NamedTuple(name, list(Arena.__annotations__.items()))
    cls.__module__ = module
    return cls
