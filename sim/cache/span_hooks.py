"""One policy over a cache's tiers on the generic path (``sim.cache.span``'s counterpart for Python hooks): a
policy without a compiled kernel (the learned one) spanning the tiers where they allow it (``multitier.spannable``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from sim.cache.arena_layout import BYTES_READ, BYTES_WRITTEN, DEMOTIONS, EVICTIONS, INSERTIONS, PREFETCHES, PROMOTIONS
from sim.cache.policies import EvictionPolicy

if TYPE_CHECKING:
    from sim.cache.hooked import HookedMultiTierCache


class SpanHooks:
    """``sim.cache.span`` on the generic path: one policy's Python hooks over a cache's tiers, which keep their
    blocks in recency order (``OrderedDict``s, least recent first) beside the cache's resident sets."""

    def __init__(self, cache: HookedMultiTierCache, hook: EvictionPolicy | None = None):
        from sim.cache.policies import make_policy

        self.cache = cache
        top = cache.tiers[0]
        total = sum(t.arena.built_capacity(t.index) for t in cache.tiers)
        self.policy = hook if hook is not None else make_policy(top.policy, total, top.next_use, top.predicted)
        self.order: list[OrderedDict[int, None]] = [OrderedDict.fromkeys(r) for r in cache.residents]
        self.count = sum(len(r) for r in cache.residents)

    def _capacity(self) -> int:
        return sum(self.cache._capacity(i) for i in range(len(self.cache.tiers)))

    def _below(self, level: int) -> int:
        level += 1
        while level < len(self.cache.tiers) and self.cache._capacity(level) <= 0:
            level += 1
        return level

    def _leave(self, level: int, key: int) -> None:
        self.cache.residents[level].remove(key)
        del self.order[level][key]

    def _enter(self, level: int, key: int, written: bool = True) -> None:
        self.cache.residents[level].add(key)
        self.order[level][key] = None
        if written:
            counters = self.cache._counters(level)
            counters[INSERTIONS] += 1
            counters[BYTES_WRITTEN] += self.cache._written[level]

    def _evict(self, incoming: int) -> bool:
        """The policy's victim leaves; False: none (every block pinned, or one a policy without pins names)."""
        victim = self.policy.victim(incoming)
        if victim < 0 or victim in self.cache._span_held:
            return False
        self.policy.on_remove(victim)
        self.count -= 1
        level = self.cache.find(victim)
        self._leave(level, victim)
        self.cache._counters(level)[EVICTIONS] += 1
        return True

    def settle(self, evict: bool = False) -> None:
        """``evict``: first the policy's victims leave until the union fits its capacity (the top tier's changed);
        then each tier's overflow moves down, least recent first."""
        while evict and self.count > self._capacity() and self._evict(-1):
            pass
        n = len(self.cache.tiers)
        for level in range(n - 1):
            while len(self.cache.residents[level]) > max(0, self.cache._capacity(level)):
                held = self.cache._held[level]  # (passed over: a tier over its capacity holds the unpinned block that entered)
                key = next((k for k in self.order[level] if k not in held), None) if held else None
                key = next(iter(self.order[level])) if key is None else key
                self._leave(level, key)
                below = self._below(level)
                if below == n:  # (not reached: the union holds at most the tiers' capacities)
                    self.cache._counters(level)[EVICTIONS] += 1
                    self.policy.on_remove(key)
                    self.count -= 1
                else:
                    self.cache._counters(level)[DEMOTIONS] += 1
                    self._enter(below, key)

    def _place(self, key: int, origin: int, prefetch: bool) -> None:
        top = self._below(-1)
        if 0 <= origin <= top:  # no tier above has room: back where it was, unwritten, not moved
            self._enter(origin, key, written=False)
            counters = self.cache._counters(origin)
            counters[PREFETCHES if prefetch else PROMOTIONS] -= 1
            if prefetch:
                counters[BYTES_READ] -= self.cache._read_bytes
            return
        self._enter(top, key)
        self.settle()

    def touch(self, key: int, now: int, admit: bool, read: bool, prefetch: bool = False) -> int:
        cache, policy = self.cache, self.policy
        level = cache.find(key)
        if prefetch and level <= 0:
            return level
        kept = cache._taken.pop(key, -1) if cache._taken else -1
        if cache.last_pos is not None:
            cache.last_pos[key] = now
        if level == 0:
            policy.on_access(key, now)
            self.order[0].move_to_end(key)
            return 0
        if level > 0:
            if not prefetch:
                policy.on_access(key, now)
            counters = cache._counters(level)
            counters[PREFETCHES if prefetch else PROMOTIONS] += 1
            if read:
                counters[BYTES_READ] += cache._read_bytes
            with cache._hold_where_it_lands(key, level):
                self._leave(level, key)
                self._place(key, level, prefetch)
            return level
        if not admit or self._capacity() <= 0:
            return -1
        if self.count >= self._capacity():
            admit_hook = getattr(policy, "admit", None)
            if admit_hook is not None and not admit_hook(key, now):  # declined: not cached
                return -1
            if not self._evict(key):  # every block pinned: not cached
                return -1
        policy.on_insert(key, now)
        self.count += 1
        if kept >= 0:  # taken, now freed: seen again
            policy.carry(key, kept)
            policy.on_access(key, now)
        self._place(key, -1, prefetch)
        return -1

    def take(self, key: int) -> int:
        cache = self.cache
        level = cache.find(key)
        if level < 0:
            return -1
        if level > 0:
            cache._counters(level)[PROMOTIONS] += 1
        self._leave(level, key)
        kept = self.policy.history(key)
        self.policy.on_take(key)  # (freed back into the tiers this policy spans)
        self.count -= 1
        if kept >= 0:
            cache._taken[key] = kept
        return level
