"""A binary heap of a tier's slots, largest PRIO first, ties to the smallest block id (Belady's order), kept in
the tier's region of the arena's ``aux`` (``TierArena`` moves the region as the tier grows; ``room`` checks it has
room). Compiled kernels, inlined into their callers, as the lists of ``sim.cache.arena`` are."""

from __future__ import annotations

from sim.cache.arena_layout import HEAP0, HEAPCAP, HEAPN, HPOS, KEY, PRIO, Arena, kernel, pinned


@kernel
def _before(a: Arena, x: int, y: int) -> bool:
    px, py = a.slots[x, PRIO], a.slots[y, PRIO]
    return px > py or (px == py and a.slots[x, KEY] < a.slots[y, KEY])


@kernel
def _sift_up(a: Arena, t: int, i: int) -> None:
    base = a.meta[t, HEAP0]
    s = a.aux[base + i]
    while i > 0:
        parent = (i - 1) >> 1
        p = a.aux[base + parent]
        if not _before(a, s, p):
            break
        a.aux[base + i] = p
        a.slots[p, HPOS] = i
        i = parent
    a.aux[base + i] = s
    a.slots[s, HPOS] = i


@kernel
def _sift_down(a: Arena, t: int, i: int) -> None:
    base = a.meta[t, HEAP0]
    n = a.meta[t, HEAPN]
    s = a.aux[base + i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        c = a.aux[base + child]
        if child + 1 < n:
            c2 = a.aux[base + child + 1]
            if _before(a, c2, c):
                child += 1
                c = c2
        if not _before(a, c, s):
            break
        a.aux[base + i] = c
        a.slots[c, HPOS] = i
        i = child
    a.aux[base + i] = s
    a.slots[s, HPOS] = i


@kernel
def heap_push(a: Arena, t: int, s: int) -> None:
    n = a.meta[t, HEAPN]
    if n >= a.meta[t, HEAPCAP]:
        raise RuntimeError("tier heap region full (an entry point without a room check?)")
    a.aux[a.meta[t, HEAP0] + n] = s
    a.slots[s, HPOS] = n
    a.meta[t, HEAPN] = n + 1
    _sift_up(a, t, n)


@kernel
def heap_fix(a: Arena, t: int, s: int) -> None:
    """Restore the heap after slot ``s``'s PRIO changed."""
    _sift_up(a, t, a.slots[s, HPOS])
    _sift_down(a, t, a.slots[s, HPOS])


@kernel
def heap_remove(a: Arena, t: int, s: int) -> None:
    base = a.meta[t, HEAP0]
    i = a.slots[s, HPOS]
    n = a.meta[t, HEAPN] - 1
    a.meta[t, HEAPN] = n
    a.slots[s, HPOS] = -1
    if i == n:
        return
    last = a.aux[base + n]
    a.aux[base + i] = last
    a.slots[last, HPOS] = i
    heap_fix(a, t, last)


@kernel
def heap_top(a: Arena, t: int) -> int:
    return a.aux[a.meta[t, HEAP0]]


@kernel
def heap_top_unpinned(a: Arena, t: int) -> int:
    """The first slot in the heap's order that is not pinned (``arena_layout.pinned``), -1: none. The top, unless it
    is pinned; then a scan of the heap (O(n), only while the request replayed holds blocks that rank first)."""
    base = a.meta[t, HEAP0]
    s = a.aux[base]
    if not pinned(a.slots, s):
        return s
    best = -1
    for i in range(1, a.meta[t, HEAPN]):
        x = a.aux[base + i]
        if not pinned(a.slots, x) and (best < 0 or _before(a, x, best)):
            best = x
    return best
