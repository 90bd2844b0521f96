"""An instance's KV-cache manager, as vLLM v1's ``KVCacheManager``: prefix lookup, allocation
and freeing of a request's blocks, and prefix-hit accounting.

The instance's cache is a ``MultiTierCache`` whose top tier is the instance's HBM (the free
blocks that still hold a prefix) over lower tiers that may be shared with other instances
(the node's DRAM/SSD, the rack's EIC). Its capacity follows the block pool's free count,
so allocating a block evicts (demotes) cached content, and freeing a request's blocks
returns its full prompt blocks to the cache deepest first (vLLM frees in reverse order), keeping
prefixes whole; a partial last block holds nothing once freed (vLLM hashes full blocks only). A block
in use by a running request is an HBM hit for another request.

Besides its capacity (``resize_top``, through the ``TieredCache`` protocol), four operations reach
the cache, each a named method here (the only places that do):
``cached_prefix_blocks`` and ``lookup`` (read the longest cached prefix), ``_take_cached``
(a cached copy becomes a newly allocated block) and ``_return_to_cache`` (freed blocks
become cached prefixes). A lookup returns a narrow ``PrefixMatch``; callers never see the
tiers.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sim.serving.block_pool import BlockPool
from sim.serving.freed_positions import freed_positions, latest_positions, note_uses
from sim.serving.job import Job
from sim.serving.prefix_match import PrefixMatch, prefix_hit, usable_prefix_blocks
from sim.serving.received_copies import ReceivedCopies


class TierView(Protocol):
    """One tier as the manager sees it: how long reading bytes from it takes, from a start time (a
    device its readers share queues them), and the device time of what was written into it."""

    def reserve_read(self, nbytes: int, start: float, lanes: int | None = None) -> float: ...

    def count_read(self, nbytes: int) -> None: ...

    def charge_writes(self, now: float) -> None: ...


class TieredCache(Protocol):
    """What the manager needs of the cache below it (``sim.cache.multitier.MultiTierCache`` today;
    a node's or rack's shared tiers in the cluster): tier 0 is this instance's HBM."""

    tiers: Sequence[TierView]
    block_bytes: int
    copy_bytes: int  # a hybrid's other groups' copy in a lower tier: a sliding block's, a state's (unpadded)
    read_copies: int  # reads of a stored block or copy one load makes (MLA's latent: one per rank)

    def lookup_prefix(self, keys: Sequence[int], held: Container[int] = ()) -> np.ndarray: ...

    def lower_level(self, key: int) -> int: ...

    def find(self, key: int) -> int: ...

    def take_chain(self, keys: Sequence[int]) -> np.ndarray: ...

    def touch_chain(self, keys: Sequence[int], positions: np.ndarray, freed: bool = False) -> np.ndarray: ...

    def resize_top(self, capacity: int) -> bool | None: ...  # False: nothing demoted

    def fits(self, capacity: int) -> bool: ...  # resize_top(capacity) would demote nothing now

    def settled(self, capacity: int) -> bool: ...  # resize_top(capacity) is known to change nothing


@dataclass(slots=True)
class PrefixCacheStats:
    """Prefix-cache hits of one instance, counted once per request (at its first admission)."""

    accesses: int = 0  # prompt blocks looked up
    hits: int = 0
    tier_hits: dict[int, int] = field(default_factory=dict)  # tier index -> hits (0 includes in-use blocks)
    prompt_tokens: int = 0
    cached_tokens: int = 0


class KVCacheManager(ReceivedCopies):
    """Blocks of requests on one instance: what a prompt finds cached, what growing a request costs."""

    # a decode window's (``Scheduler.window_steps``) later steps take their blocks as they start, each step's
    # allocations made then as a single step makes them (``window_changes``, ``window_step``), instead of reserving
    # its growth at the start (``BlockPool.reserve``)
    stepwise_windows = False
    groups_growing = 1  # groups whose blocks grow as a request decodes (one block each every block_size tokens)

    def __init__(self, pool: BlockPool, cache: TieredCache, block_size: int, prefix_caching: bool,
                 clock: Callable[[], float]):
        self.pool = pool
        self.cache = cache
        self.clock = clock  # the simulated time now: when demotions made by the cache's changes are written
        self.block_size = block_size
        self.prefix_caching = prefix_caching  # off: no lookups, no cache bookkeeping
        self.stats = PrefixCacheStats()
        # ``find`` of many keys in one pass, where the cache has one (its compiled tiers); None: key by key
        self.find_each: Callable[[np.ndarray], np.ndarray] | None = (
            self._find_each if getattr(cache, "find_each", None) is not None else None)
        self._admission: tuple[tuple, int] = ((), 0)  # ``admission_before_lookup``'s last question and answer
        # told each request's served prefix at its (first) admission: the cluster attributes the hits to where
        # their blocks were fetched from
        self.on_admission: Callable[[Job, PrefixMatch], None] | None = None
        # links this instance reads a lower-tier block over side by side (its ranks' distinct shards); None: the
        # tier's own (PD roles at different TPs read one shared tier over different counts: sim.serving.roles)
        self.read_lanes: int | None = None
        # each held prompt block's latest access among the requests that held it (stream position), kept where a
        # policy reads positions (``ServingRun`` sets it: Belady, learned): see ``free``
        self.latest_use: dict[int, int] | None = None
        # told after an allocation or a free changed the pool or the HBM cache (prefix caching): a decode window's
        # reserved blocks judge again where their steps' starts push blocks out (``WindowClaims.recheck``)
        self.on_change: Callable[[], None] | None = None
        self._init_received()
        cache.resize_top(pool.total)

    # ------------------------------------------------------------- lookups

    def find(self, key: int) -> int:
        """The level of this instance's tiers holding ``key`` (0: HBM, cached or in use), or -1."""
        return 0 if key in self.pool else self.cache.find(key)

    def _find_each(self, keys: np.ndarray) -> np.ndarray:
        """``find`` of each of ``keys`` (an int8 array) in one compiled pass (``MultiTierCache.find_each``)."""
        return self.cache.find_each(keys, self.pool)

    def cached_prefix_blocks(self, blocks: Sequence[int], every_tier: bool = False) -> int:
        """Length of the longest prefix of ``blocks`` held in this instance's HBM (in use or cached),
        or, with ``every_tier``, in any tier of its cache."""
        if not self.prefix_caching and not self.pool.shared:
            return 0  # nothing is cached and no block is shared
        if self._landed_copies:
            self._surface_copies()
        levels = self.cache.lookup_prefix(blocks, self.pool)
        if every_tier:
            return len(levels)
        lower = np.flatnonzero(levels)  # the first block held only in a lower tier ends the HBM prefix
        return int(lower[0]) if len(lower) else len(levels)

    def lookup(self, job: Job) -> PrefixMatch:
        """The longest cached prefix of the job's prompt, across every tier, and the time to load it; after a
        preemption, of its prompt and what it generated (vLLM looks up every full block of the sequence)."""
        if not self.prefix_caching:  # nothing is found (what ``prefix_hit`` makes of no matched block)
            job.generated_hit = 0
            return PrefixMatch([], 0, {})
        chain, chain_tokens = self._sequence_chain(job)
        levels = self.prefix_levels(job, chain)
        hit, tokens = prefix_hit(levels, job.target, chain_tokens, self.block_size)
        job.generated_hit = max(0, hit - job.input_tokens // self.block_size) if chain_tokens > job.input_tokens else 0
        # (a decode instance's preempted request read again while another's KV is on its way: vLLM's lookup stopped
        # short of those blocks, and its ``allocate_slots`` takes new ones past the hit. Set at every lookup: one that
        # did not fit is read again at a later step, perhaps after the landing, and what that read finds is shared)
        job.copies_from = hit if self.landing else -1
        return PrefixMatch.of(levels[:hit], tokens)

    def _sequence_chain(self, job: Job) -> tuple[Sequence[int], int]:
        """The blocks a lookup for ``job`` follows, and the tokens they hold: its prompt's; after a preemption with
        generated blocks cached (``Job.generated_ids``), its prompt's full blocks and then those."""
        bs = self.block_size
        full = job.input_tokens // bs
        more = min(len(job.generated_ids), job.target // bs - full)
        if more <= 0 or not self.prefix_caching:
            return job.prompt_ids, job.input_tokens
        return self._sequence_ids(job, 0, full + more), (full + more) * bs

    def _sequence_ids(self, job: Job, lo: int, hi: int) -> Sequence[int]:
        """The ids of ``job``'s sequence blocks lo … hi - 1: its prompt's full blocks, then the blocks its generated
        tokens fill (``Job.generated_ids``, the prompt's partial block completed first), as vLLM's block hashes
        cover the whole sequence."""
        generated, full = job.generated_ids, job.input_tokens // self.block_size
        if hi <= full or not len(generated):
            return job.prompt_ids[lo:hi]
        if lo >= full:
            return generated[lo - full:hi - full]
        return [*job.prompt_ids[lo:full], *generated[:hi - full]]

    def prefix_levels(self, job: Job, chain: Sequence[int]) -> list[int]:
        """The tier ``job`` is served each block of ``chain``'s held prefix from (0: HBM, cached or in use by running
        requests): the topmost holding it, but a block-aligned request's last block from a lower tier's copy
        (``_last_block_from_below``). The one rule the scheduler's lookups and the cluster's KV connector
        (``PrefixFetch._fetch_plan``) read a prefix by, so the connector loads what the lookup serves."""
        if self._landed_copies:
            self._surface_copies()
        levels = self.cache.lookup_prefix(chain, self.pool).tolist()
        if self.landing:  # (a decode instance with KV on its way here: the lookup stops at the first such block)
            del levels[self._before_landing(chain, len(levels)):]
        self._last_block_from_below(job, levels)
        return levels

    def _last_block_from_below(self, job: Job, levels: list[int]) -> None:
        """A block-aligned request's last block, held in HBM (cached or in use) and copied in a lower tier
        (inclusive tiers): HBM's rule recomputes it, but an offloading connector, asked for the blocks past HBM's
        hit, finds the copy and loads it (``prefix_hit``), so it is served from that tier: ``levels`` says so."""
        bs = self.block_size
        last = job.target // bs - 1
        if (job.target % bs == 0 and last < min(len(levels), job.input_tokens // bs)
                and levels[last] == 0 and len(self.cache.tiers) > 1):
            below = self.cache.lower_level(int(job.prompt_ids[last]))
            if below > 0:
                levels[last] = below

    def usable_prefix(self, keys: Sequence[int], tokens: int) -> int:
        """The blocks of a prompt of ``tokens`` tokens (block ids ``keys``) held in this instance's HBM that a request
        can use: its longest prefix held (in use, cached, or still landing), capped at ``usable_prefix_blocks``; none
        with prefix caching off. PD's decode side: ``receive`` takes it (less the blocks still landing then), and a
        request's decode instance is chosen by it at dispatch (``sim.serving.decode_queues``: its rank and room)."""
        if not self.prefix_caching:
            return 0
        return min(self.cached_prefix_blocks(keys), usable_prefix_blocks(tokens, self.block_size))

    def receive(self, job: Job, tokens: int) -> int:
        """A prompt of ``tokens`` tokens whose KV another instance computed is to be sent here (PD's decode side):
        the prompt blocks found here, as vLLM's ``get_computed_blocks`` finds them (whole blocks, short of the last
        token, none whose KV is still on its way here: ``landing``); the KV connector (e.g.
        NixlConnector.get_num_new_matched_tokens) brings the rest into new blocks: ``allocate_slots`` takes fresh
        ones from the free queue for the external tokens past the hit (vllm/v1/core/kv_cache_manager.py), which the
        connector fills (``update_state_after_alloc``: "Get unhashed blocks to pull from remote"), so a block of the
        rest that another request holds (its KV in flight, or the last block the hit leaves out) is a second copy
        here (``copies_from``), counted as such until the request ends."""
        if not self.prefix_caching:
            return 0
        present = self.usable_prefix(job.prompt_ids, tokens)
        if self.landing and present:
            present = self._before_landing(job.prompt_ids, present)
        job.copies_from = present
        return present

    def sent_blocks(self, job: Job, present: int) -> int:
        """Blocks the connector sends to a job received here (``receive`` found ``present``; its blocks are
        allocated): the prompt's others."""
        return len(job.blocks) - present

    def load(self, match: PrefixMatch, start: float) -> float:
        """Seconds, from ``start``, to read the match's blocks held in lower tiers, one tier after
        another (top first); a shared device's time is reserved, so call it once the job is admitted.
        The one place a served block's read is counted (``tiers.<tier>.bytes_read``): taking the blocks
        (``allocate``) reads nothing, so a lower-tier block the request is not served (a partial last
        block, one past the served prefix) is computed, not read. Each rank reads its own page over its own lane:
        a block's stored bytes ``read_copies`` times (MLA's one latent, once per rank)."""
        seconds = 0.0
        if not match.to_load and not match.copies_to_load:
            return seconds
        cache = self.cache
        tiers, block_bytes, copy_bytes = cache.tiers, cache.block_bytes, cache.copy_bytes
        for level in sorted({*match.to_load, *match.copies_to_load}):
            nbytes = (match.to_load.get(level, 0) * block_bytes
                      + match.copies_to_load.get(level, 0) * copy_bytes) * cache.read_copies
            tiers[level].count_read(nbytes)
            seconds += tiers[level].reserve_read(nbytes, start + seconds, self.read_lanes)
        return seconds

    def external_match(self, job: Job, blocks: int) -> PrefixMatch:
        """The match of a waiting ``job`` whose prompt's first ``blocks`` a KV connector will load (cluster mode:
        ``sim.cluster.fetch.PrefixFetch._connect``), as vLLM counts external tokens computed: HBM blocks once loaded,
        a block-aligned prompt's last block among them served (``prefix_hit``); what they read is the connector's."""
        served, tokens = prefix_hit([0] * blocks, job.target, job.input_tokens, self.block_size, blocks)
        return PrefixMatch([0] * served, tokens, {})

    def record_admission(self, job: Job, match: PrefixMatch) -> None:
        """Count a request's prefix hits (once per request, not again after a preemption)."""
        stats = self.stats
        stats.accesses += len(job.blocks)
        stats.hits += match.blocks
        for level in match.tier_of_each:
            stats.tier_hits[level] = stats.tier_hits.get(level, 0) + 1
        stats.prompt_tokens += job.input_tokens
        stats.cached_tokens += match.tokens
        if self.on_admission is not None:
            self.on_admission(job, match)

    # ------------------------------------------------------------- allocation

    def blocks_alone(self, tokens: int) -> int:
        """Blocks a request of ``tokens`` tokens holds on an otherwise idle instance."""
        return -(-tokens // self.block_size)

    def window_blocks(self, job: Job, steps: int) -> int:
        """New blocks ``steps`` more decode tokens take for ``job`` at most (a decode window fits when the batch's
        fit)."""
        more = -(-(job.computed + steps) // self.block_size) - job.held - job.anonymous
        return more if more > 0 else 0

    def blocks_for(self, job: Job, tokens: int) -> tuple[int, int]:
        """(prompt blocks, private blocks) a job holding KV for ``tokens`` tokens needs."""
        need = -(-tokens // self.block_size)
        prompt = min(need, len(job.blocks))
        return prompt, need - prompt

    def new_blocks(self, job: Job, tokens: int) -> int:
        """Physical blocks that growing ``job`` to ``tokens`` tokens would allocate."""
        if job.copies_from >= 0:
            return self._past_hit_new_blocks(job, tokens, job.copies_from)
        need = -(-tokens // self.block_size)
        prompt = len(job.blocks)
        if need <= prompt:  # within the prompt: no private blocks
            return self.pool.count_fresh(job.blocks[job.held:need]) if need > job.held else 0
        fresh = self.pool.count_fresh(job.blocks[job.held:]) if prompt > job.held else 0
        return fresh + max(0, need - prompt - job.anonymous)

    def holds(self, job: Job, tokens: int) -> bool:
        """Whether a running ``job``'s blocks hold ``tokens`` tokens, so that growing it to them takes no block and,
        when the manager is ``settled``, changes nothing: most decode steps, which the scheduler then plans without
        ``new_blocks`` and ``allocate``. False: it may do something."""
        held = job.held
        return held == len(job.blocks) and tokens <= (held + job.anonymous) * self.block_size and not job.generated_hit

    def settled(self) -> bool:
        """Whether an allocation that takes no block would change nothing: no block is needed free (none is
        overdrawn) and the cache's capacity already follows the pool (``TieredCache.settled``)."""
        pool = self.pool
        return pool.free >= 0 and (not self.prefix_caching or self.cache.settled(pool.unused))

    def begin_step(self) -> None:
        """A step is being planned (the hybrid manager tells which requests the step before had in flight)."""

    def split_chunk(self, job: Job, start: int, tokens: int) -> int:
        """The prefill tokens from ``start`` a step schedules for ``job`` of the ``tokens`` the budget allows (a Gated
        DeltaNet hybrid with prefix caching ends chunks where states are cached; 0: none this step)."""
        return tokens

    def admission_blocks(self, job: Job, tokens: int, full_sequence: bool) -> int:
        """Blocks admitting a waiting ``job`` needs free: its whole sequence's (``full_sequence``: vLLM's
        ``scheduler_reserve_full_isl``), else those of its first ``tokens`` tokens."""
        return self.new_blocks(job, job.target if full_sequence else tokens)

    def admission_before_lookup(self, job: Job, full_sequence: bool) -> int | None:
        """``admission_blocks`` of a waiting ``job`` when its prefix hit does not change them (its whole sequence's,
        ``full_sequence``), known before the lookup (which changes nothing); None: it may (the first chunk's). A queue
        behind a request that does not fit asks at every step: the answer is kept while what it depends on stays (the
        job's fields ``new_blocks`` reads and the pool's set of blocks in use)."""
        if not full_sequence or self.landing:  # (KV on its way here: past the hit, held blocks are copies)
            return None
        if self._landed_copies:
            self._surface_copies()
        job.copies_from = -1  # (as the lookup sets it with no KV landing: a cut an earlier one made is gone)
        key = (job, job.target, job.held, job.anonymous, job.state_held, self.pool.changes)
        if self._admission[0] != key:
            self._admission = (key, self.new_blocks(job, job.target))
        return self._admission[1]

    def allocate(self, job: Job, tokens: int) -> None:
        """Grow ``job``'s blocks to hold ``tokens`` tokens (the caller checked they fit)."""
        prompt, private = self.blocks_for(job, tokens)
        grow = private - job.anonymous if private > job.anonymous else 0
        fresh: Sequence[int] = ()
        grew = grow or prompt > job.held  # (else a step within the blocks it holds: nothing to take)
        if grew:
            fresh = (self.pool.hold(job.blocks[job.held:prompt], grow) if job.copies_from < 0
                     else self._hold_past_hit(job, prompt, grow, job.copies_from))
            if self.latest_use is not None:
                note_uses(self.latest_use, job.blocks, job.held, prompt, job.position)
            job.held = max(job.held, prompt)
            job.anonymous += grow
        if self.prefix_caching:
            self._take_cached(fresh)
            took = bool(len(fresh))
            if job.generated_hit:  # its generated blocks a lookup found cached are its own again
                self._take_cached(job.generated_ids[:job.generated_hit])
                job.generated_hit = 0
                took = True
            # demotions happen only in a resize here (every other change charged its own as it made them): a step
            # within the job's blocks, the capacity unchanged, has nothing to charge
            if self.cache.resize_top(self.pool.unused) is not False or took:
                self._charge_writes()
            if grew and self.on_change is not None:  # (the pool's blocks in use grew)
                self.on_change()

    def free(self, job: Job) -> None:
        """Free a job's blocks; its full blocks return to the prefix cache, deepest first: those its generated tokens
        filled (``Job.generated_ids``: vLLM hashes every full block of a sequence, ``KVCacheManager.cache_blocks``),
        then the prompt's. A partial last block is freed holding nothing: vLLM hashes only full blocks
        (``BlockPool.cache_full_blocks``) and puts an unhashed freed block first in its free queue
        (``BlockPool.free_blocks``), reused before any cached one."""
        if self._admission[0] and self._admission[0][0] is job:  # (its fields change: the answer is stale)
            # the instance's last admitted job was kept here after it finished, its prompt's block-id list with it
            # (a fleet's 10,240 instances: 1.4 M Python ints at 100 k requests)
            self._admission = ((), 0)
        partial = job.held == len(job.blocks) and job.input_tokens % self.block_size != 0
        if self._landed_copies:  # (a copy of a block gone from HBM is its block: let go, it is cached)
            self._surface_copies()
            if job.prompt_copies:
                self._forget_copies(job)
        keys, private = self._held_blocks(job)
        freed = self.pool.let_go(keys, private)
        job_held = job.held
        # (copies held: the blocks held by reference are not consecutive; each at its own stream position)
        at = job.position + self._held_indices(job) if job.prompt_copies else None
        job.held = job.anonymous = 0
        job.prompt_copies, job.copies_from = (), -1
        if self.prefix_caching:
            self.cache.resize_top(self.pool.unused)
            positions = freed_positions(keys, freed, job.position + job_held - 1, at)
            if self.latest_use is not None:
                positions = latest_positions(self.latest_use, freed, positions)
            if partial and len(freed) and freed[0] == job.blocks[-1]:  # (deepest first: the partial one leads)
                freed, positions = freed[1:], positions[1:]
            generated, at = self._generated_full_blocks(job)
            if len(generated):
                freed, positions = [*generated, *freed], np.concatenate((at, positions))
            self._return_to_cache(freed, positions)
            self._charge_writes()
            if self.on_change is not None:  # (the cache grew)
                self.on_change()

    def _generated_full_blocks(self, job: Job) -> tuple[list[int], np.ndarray]:
        """The full blocks ``job``'s generated tokens filled here, deepest first, and their stream positions (they
        follow its prompt's). They become cached prefixes when the job lets them go (vLLM caches them as they fill:
        the same unless the next turn arrives before the answer ends, which a real trace's next turn does not). One a
        running request holds too (a next turn that computed it) is a second copy, as in vLLM's cache, which keeps
        every block of a hash."""
        count = min(len(job.generated_ids), job.computed // self.block_size - job.input_tokens // self.block_size)
        if count <= 0:
            return [], np.zeros(0, dtype=np.int64)
        deepest_first = np.arange(count - 1, -1, -1)
        return np.asarray(job.generated_ids[count - 1::-1]).tolist(), job.position + len(job.blocks) + deepest_first

    def _held_blocks(self, job: Job) -> tuple[Sequence[int], int]:
        """The prompt blocks ``job`` holds by reference, deepest first, and how many blocks it holds privately: the
        copies of blocks others held (``prompt_copies``) are among the private ones."""
        if not job.prompt_copies:
            return (job.blocks[job.held - 1::-1] if job.held else ()), job.anonymous
        return [job.blocks[i] for i in self._held_indices(job)], job.anonymous + len(job.prompt_copies)

    def sync_free(self, unused: int | None = None) -> None:
        """The HBM cache's capacity follows the pool's blocks not in use (``unused``: as of a later instant; a decode
        window's reserved blocks leave it only as their steps start, as single steps would take them)."""
        if self.prefix_caching and self.cache.resize_top(self.pool.unused if unused is None else unused) is not False:
            self._charge_writes()  # (what it demoted: every other change charged its own)

    # ------------------------------------------------------------- the cache engine

    def _take_cached(self, fresh: Sequence[int]) -> None:
        """Newly allocated prompt blocks: a cached copy (any tier) becomes the block; else it is computed."""
        if len(fresh):
            self.cache.take_chain(fresh)

    def _return_to_cache(self, freed: Sequence[int], positions: np.ndarray) -> None:
        """Freed prompt blocks (deepest first) become cached prefixes, used at these stream positions. Their
        content is in HBM: a lower tier's copy (inclusive tiers keep one) is moved or copied up, not read."""
        if len(freed):
            self.cache.touch_chain(freed, positions, freed=True)

    def _charge_writes(self) -> None:
        """The blocks the cache's last change demoted are written into lower tiers now: a shared
        device's time is taken (``Tier.charge_writes``)."""
        now = self.clock()
        for tier in self.cache.tiers[1:]:
            tier.charge_writes(now)
