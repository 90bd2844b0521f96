"""Fetching a prompt's cached prefix by location, when its instance's scheduler admits the request.

vLLM's order (``PrefixFetch._connect``, the scheduler's ``connector``): its scheduler asks its KV connector for the
external hit of the request at the head of the waiting queue (``get_num_new_matched_tokens``), allocates its blocks
(every KV-cache group's: a hybrid's sliding groups' blocks of the prefix's end, a Gated DeltaNet hybrid's state groups'
state blocks there, ``KVCacheManager.external_match``) and parks it (WAITING_FOR_REMOTE_KVS) until the load lands; the
blocks go straight to the request, so none is evicted before use.

The prefix loaded is each block of the prompt's longest prefix held anywhere, as far as the scheduler can use it
(``prefix_match.prefix_hit``: full blocks; a block-aligned prompt's last block only from below this HBM, a
copy there or at another location too where HBM holds it, ``KVCacheManager.prefix_levels``: the rule of the
scheduler's lookup; under vLLM's hybrid KV-cache manager, cut back as far as every sliding group can serve it,
``HybridKVCacheManager.reachable_prefix``, whose sliding copies of its end are loaded with it; a Gated DeltaNet
hybrid's, cut back to the deepest block whose state every state group holds somewhere,
``AlignStateKVCacheManager.reachable_prefix``, whose states are loaded with it), classified once, by where its
cheapest copy is:

- ``instance``: the instance's HBM (cached, or in use by a running request);
- ``node``: its node's DRAM or SSD;
- ``rack``: its rack's EIC pool, or another node's DRAM/SSD in the rack;
- ``cross_rack``: another rack's EIC or a node's DRAM/SSD there;

and loaded over the links it crosses (the source tier, which is a link too, the source node's
NIC, the rack uplinks, the destination node's NIC, the GPU's PCIe; ``sim.serving.paths``), all
with max-min sharing, each source's blocks and copies in one transfer (a state crosses unpadded: ``copy_bytes``; MLA's
latent, stored once, is read and sent once per rank of the instance: ``load_bytes``).
Loaded blocks enter the request's own HBM blocks (a copy: remote holders keep theirs; a copy in the
instance's own lower tier moves up, unread again). The hits are the blocks the scheduler serves the request at
admission (as on a single node), each in the class the fetch gave it; every other block of the prompt is a miss, so
every block access is exactly one of {hit in tier T at location L, miss}.

A Gated DeltaNet hybrid's states: vLLM 0.33's OffloadingConnector (offloading/scheduler.py ``_lookup_complete_chunks``:
a Mamba group looked up as a one-chunk window, the hit at most round_down(tokens - 1, block)) finds states in its own
node's offload tiers, and its MooncakeStoreConnector (mooncake/store/scheduler.py: align mode required) keeps the
core's boundary states in a store shared across nodes, a hit needing every group's; kvsim's modelling choice is the
GPU cache's hit rule applied across locations (as for the sliding copies): a state held in any node's DRAM/SSD or
rack's EIC is found and fetched as the attention blocks are. A state held only in another instance's HBM is no
source, as a block there is none.

``PrefixFetch`` is mixed into ``ClusterRun`` (``sim.cluster.run``): it reads the run's tier places, links, arena,
prefix index and counters, and charges the links a fetch crosses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from sim.cache.tiers import stored_copy_bytes
from sim.serving.align_state_manager import state_key_offsets
from sim.serving.instance import Instance, Job
from sim.serving.network import Link, latency_of
from sim.serving.paths import Path, PathModel
from sim.serving.prefix_match import PrefixMatch, prefix_hit, usable_prefix_blocks
from sim.serving.scheduler import PREFILL, UNIFIED

HBM, DRAM, SSD, EIC = range(4)  # tier kinds, as TIER_NAMES
LOCATIONS = ("instance", "node", "rack", "cross_rack")
INSTANCE, NODE, RACK, CROSS_RACK = range(4)
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(slots=True, eq=False)
class FetchPlan:
    """A prompt's held prefix as a fetch would load it: the blocks it serves (``hits``, the prompt's first), each one's
    ``hit_blocks`` cell, the blocks (and copies) to load per source tier and what reading them counts."""

    hits: int
    codes: np.ndarray = field(default_factory=lambda: _EMPTY)  # per served block, its hit_blocks cell (kind x location)
    sources: dict[int, list[int]] = field(default_factory=dict)  # source tier -> [blocks, bytes]
    reads: list = field(default_factory=list)  # (a local Tier, or an arena tier index, bytes) to count as read
    start: Callable[[Callable[[], None]], None] | None = None  # (``_connect``) read and send it, then call back
    first: bool = True  # for the request's first admission (False: a preempted one's, whose hits are counted)

    def loaded_positions(self) -> np.ndarray:
        """The served blocks the fetch loads (positions in the prompt): those not already in the instance's HBM (a
        ``codes`` cell of another kind or location than HBM at the instance), which its scheduler keeps as being
        loaded until the fetch lands (``Scheduler._park``)."""
        return np.flatnonzero(self.codes != HBM * len(LOCATIONS) + INSTANCE)


def level_cells(kinds: list[int]) -> np.ndarray:
    """Per level of an instance's cache (its tiers' ``kinds``), the ``hit_blocks`` cell of a block held there (one
    table per instance, built with it: ``PrefixFetch._local_codes`` reads it per request)."""
    kinds_array = np.asarray(kinds, dtype=np.int64)
    scopes = np.where(kinds_array == HBM, INSTANCE, np.where(kinds_array == EIC, RACK, NODE))
    return kinds_array * len(LOCATIONS) + scopes


def _add(sources: dict[int, list[int]], tier: int, blocks: int, nbytes: int) -> None:
    """Count ``blocks`` of ``nbytes`` more to load from source ``tier``."""
    entry = sources.setdefault(tier, [0, 0])
    entry[0] += blocks
    entry[1] += nbytes


class PrefixFetch:
    """A prompt's held prefix classified by location, loaded over the links it crosses, then the job submitted; the
    hits counted at admission where the fetch found them."""

    def _init_fetch(self) -> None:
        """The fetch's own settings and counters (``ClusterRun._build``)."""
        self.copy_bytes = stored_copy_bytes(self.store_config)
        # what a fetch of one block (one copy) reads out of its source and sends to the front instance's ranks: the
        # stored bytes once per rank reading them (MLA's latent: every rank its own copy, ``read_copies``); the same
        # from an EIC of distinct pages, each rank GETting its own page (``sim.cache.tiers.tier_block_bytes``)
        copies = self.shapes[PREFILL if self._pd else UNIFIED].read_copies  # (fetches serve the front instances)
        self.load_bytes, self.copy_load_bytes = self.stored_bytes * copies, self.copy_bytes * copies
        self.moved_bytes = dict.fromkeys(("node", "rack", "cross_rack"), 0)  # fetched bytes by links crossed
        # a Gated DeltaNet hybrid's state keys of a block (the instances' AlignStateKVCacheManager.offsets)
        self._state_offsets = (state_key_offsets(self.states.state_groups, self.num_blocks)
                               if self.states is not None and self.prefix_caching else [])

    def _scope(self, kind: int, rack: int, node: int, inst_id: int) -> int:
        """Where a copy in tier (kind, rack, node) is, seen from instance ``inst_id``."""
        if kind == HBM:
            return INSTANCE
        if rack != self.topo.rack_of(inst_id):
            return CROSS_RACK
        if kind == EIC or node != self.topo.node_of(inst_id):
            return RACK
        return NODE

    def _path_seconds(self, tier: int, inst_id: int, nbytes: float) -> float:
        """Seconds to bring ``nbytes`` from ``tier`` into instance ``inst_id``'s HBM as one transfer, alone: the
        path's hops' latency (once, as ``_start_fetch`` sends a source's blocks together) plus its slowest link's
        serialization (``PathModel``)."""
        kind, _, _, holder = self._place[tier]
        if kind == HBM:
            return 0.0 if holder == inst_id else float("inf")
        # the path's models (the instance and its node may not be built yet)
        models = [self.tier_link[tier].model, self.pcie_models[self.role_of(inst_id)]]
        if self._crosses_nodes(tier, inst_id):
            models.append(self.net)
        return PathModel(tuple(models), self._path_latency(tier, inst_id)).isolated_time(nbytes)

    def _crosses_nodes(self, tier: int, inst_id: int) -> bool:
        """Whether a copy in ``tier`` reaches instance ``inst_id`` over the network (a rack's EIC pool, another
        node's DRAM/SSD)."""
        kind, _, node, _ = self._place[tier]
        return kind == EIC or node != self.topo.node_of(inst_id)

    def _path_latency(self, tier: int, inst_id: int) -> float:
        """One-way latency of the path from ``tier`` into ``inst_id``'s HBM, the sum of its hops': the tier's access,
        the network between nodes (``network.latency_us``, once: NIC to NIC), the leaf -> spine -> leaf crossing
        between racks (``cluster.uplink_latency_us``), the PCIe link's."""
        _, rack, _, _ = self._place[tier]
        latency = latency_of(self.tier_link[tier].model) + latency_of(self.pcie_models[self.role_of(inst_id)])
        if self._crosses_nodes(tier, inst_id):
            latency += latency_of(self.net)
        if rack != self.topo.rack_of(inst_id):
            latency += latency_of(self.uplink_model)
        return latency

    def _cheapest_holders(self, offsets: np.ndarray, tiers: np.ndarray, inst_id: int,
                          nbytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(cost, tier) per key of a CSR of holders: each key's cheapest holder seen from ``inst_id`` (ties: the
        first listed) and its seconds per key of ``nbytes`` (default a block's; inf: only other instances' HBM hold
        it)."""
        unique = np.unique(tiers)
        nbytes = self.load_bytes if nbytes is None else nbytes
        cost = np.array([self._path_seconds(int(t), inst_id, nbytes) for t in unique])
        ranked = cost[np.searchsorted(unique, tiers)]
        best_cost = np.minimum.reduceat(ranked, offsets[:-1])
        pos = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        first = np.flatnonzero(ranked == best_cost[pos])
        _, take = np.unique(pos[first], return_index=True)
        return best_cost, tiers[first[take]]

    def estimated_ttft_s(self, inst_id: int, offsets: np.ndarray, tiers: np.ndarray, prompt_tokens: int,
                         keys: np.ndarray | None = None) -> float:
        """Mooncake's conductor estimate of a prompt's TTFT at ``inst_id``, from the held prefix (CSR of
        holders): its queued prompt tokens and this prompt's tokens past the prefix it can reach (blocks
        in its HBM, or fetchable from a DRAM/SSD/EIC holder, up to the first that is neither; a Gated DeltaNet
        hybrid's, given the prompt's block ids ``keys``, only up to the deepest block whose states it can reach too:
        ``_state_reach``) over the prefill rate, plus the time to fetch the reachable blocks (and states), each from
        its cheapest holder (one transfer per holder)."""
        reachable, fetch_s = 0, 0.0
        if len(tiers):
            per_block, best = self._cheapest_holders(offsets, tiers, inst_id)
            unreachable = np.flatnonzero(~np.isfinite(per_block))
            reachable = int(unreachable[0]) if len(unreachable) else len(per_block)
            state_tiers: list[int] = []
            if self._state_offsets and keys is not None:
                reachable, state_tiers = self._state_reach(inst_id, keys, reachable, prompt_tokens)
            # one transfer per source tier, as ``_start_fetch`` sends them: a path's latency counts once, not per block
            moved: dict[int, int] = {}
            for t, count in zip(*np.unique(best[:reachable], return_counts=True), strict=True):
                moved[int(t)] = int(count) * self.load_bytes
            for t in state_tiers:
                moved[t] = moved.get(t, 0) + self.copy_load_bytes
            for t, nbytes in moved.items():
                fetch_s += self._path_seconds(t, inst_id, nbytes)
        compute = max(1, prompt_tokens - reachable * self.serving.block_size)  # the last token is always computed
        return (int(self.queued_tokens[inst_id]) + compute) / self.prefill_rate + fetch_s

    def _state_reach(self, inst_id: int, keys: np.ndarray, limit: int, prompt_tokens: int) -> tuple[int, list[int]]:
        """Of a Gated DeltaNet hybrid's prefix reachable from ``inst_id`` for ``limit`` blocks, the blocks up to the
        deepest (short of the prompt's last token's) whose state every state group holds where ``inst_id`` can reach
        it (its HBM, a DRAM/SSD/EIC), and each state's cheapest holder there. O(blocks scanned) index probes."""
        wanted = self.all_tier_candidates()
        for i in range(min(limit, usable_prefix_blocks(prompt_tokens, self.serving.block_size)) - 1, -1, -1):
            state_keys = np.array([int(keys[i]) + offset for offset in self._state_offsets], dtype=np.int64)
            found, offsets, tiers = self.holders(state_keys, wanted)
            if found < len(state_keys):
                continue
            cost, best = self._cheapest_holders(offsets, tiers, inst_id, self.copy_load_bytes)
            if np.isfinite(cost).all():
                return i + 1, best.tolist()
        return 0, []

    def _path_links(self, tier: int, inst_id: int) -> list[Link]:
        """Links a block from ``tier`` crosses into instance ``inst_id``'s HBM."""
        kind, rack, node, _ = self._place[tier]
        dest_node, dest_rack = self.topo.node_of(inst_id), self.topo.rack_of(inst_id)
        links = [self.reader_link(tier, inst_id)]
        if kind != EIC and node != dest_node:
            links.append(self.nic[node])
        if rack != dest_rack:
            links += [self.uplink[rack], self.uplink[dest_rack]]
        if kind == EIC or node != dest_node:
            links.append(self.nic[dest_node])
        links.append(self.pcie[inst_id])
        return links

    def _connect(self, inst: Instance, job: Job) -> FetchPlan | None:
        """The scheduler's KV connector (vLLM's ``get_num_new_matched_tokens``), asked when ``job`` heads the waiting
        queue at its first admission and after a preemption (vLLM asks whenever ``num_computed_tokens`` is 0; the chain
        asked for is the prompt's full blocks: a preempted request whose own lookup reaches its generated blocks is
        served by that lookup, ``Scheduler._plan``): the prefix it would load (its instance's lower tiers' blocks, and those other
        nodes' DRAM/SSD or a rack's EIC hold), None when nothing is to be loaded (the scheduler's own lookup serves it).
        Nothing is read or sent until the scheduler admits it (``FetchPlan.start``)."""
        plan = self._fetch_plan(inst, job, np.asarray(job.prompt_ids, dtype=np.int64))
        if plan is None or not plan.sources:
            return None
        plan.start = partial(self._start_fetch, inst, job, plan)
        plan.first = not job.admitted_once
        return plan

    def _fetch_plan(self, inst: Instance, job: Job, keys: np.ndarray) -> FetchPlan | None:
        """Classify the prompt's held prefix by location (nothing read, sent or counted yet); None: no prefix."""
        # only the blocks the request can be served, as the scheduler's lookup finds them (``prefix_levels``,
        # ``prefix_hit``): the prompt's full blocks, the last of a block-aligned prompt not from this HBM (it is
        # recomputed) but from a copy below it, which the connector loads (vLLM's OffloadingConnector looks up the
        # blocks past the GPU's hit up to tokens // block_size)
        full = keys[: job.input_tokens // inst.kv.block_size]
        levels = np.asarray(inst.kv.prefix_levels(job, full), dtype=np.int64)
        # (a preempted request's target holds its generated tokens too: its prompt's last block may be served)
        served, _ = prefix_hit(levels, job.target, job.input_tokens, inst.kv.block_size)
        if served < len(levels):
            # that last block is in this HBM and in none of its lower tiers: the connector (vLLM's OffloadingConnector,
            # or a store shared across nodes such as Mooncake's or LMCache's) is asked for it all the same, and the
            # prefix index below finds a copy elsewhere (another node's DRAM/SSD, a rack's EIC) if there is one
            levels = levels[:served]
        found, offsets, tiers = 0, None, None
        if len(levels) < len(full):
            found, offsets, tiers = self.holders(full[len(levels):], self.shared_tier_candidates())
        copies: list[int] = []
        if self.kv_groups is not None or self._state_offsets:
            # vLLM's hybrid manager: each sliding group must serve the prefix's end too; a Gated DeltaNet hybrid's
            # state groups must each hold the state at its end: those copies are fetched with it
            reach, copies = inst.kv.reachable_prefix(job, len(levels) + found, self._copy_finder(inst))
            if reach < len(levels):
                levels, found = levels[:reach], 0
            elif reach - len(levels) < found:
                found = reach - len(levels)
                offsets, tiers = offsets[:found + 1], tiers[:offsets[found]]
        plan = FetchPlan(hits=len(levels) + found)
        codes = [self._local_codes(inst, levels)]  # where each block of the prefix is, for the hits at admission
        # the blocks of each level below HBM, by level (counted in C: ``np.unique`` sorted them, 6% of a fleet's run)
        for level, count in enumerate(np.bincount(levels).tolist()):
            if level > 0 and count:
                tier = inst.kv.cache.tiers[level]
                _add(plan.sources, tier.index, count, count * self.load_bytes)
                plan.reads.append((tier, count * self.load_bytes))
        if found:
            best = self._cheapest_holders(offsets, tiers, inst.index)[1]  # the first holder at the best cost
            holders, which, counts = np.unique(best, return_inverse=True, return_counts=True)
            cells = np.empty(len(holders), dtype=np.int64)
            for k, (t, count) in enumerate(zip(holders.tolist(), counts.tolist(), strict=True)):
                kind, t_rack, t_node, _ = self._place[t]
                cells[k] = kind * len(LOCATIONS) + self._scope(kind, t_rack, t_node, inst.index)
                _add(plan.sources, t, count, count * self.load_bytes)
                plan.reads.append((t, count * self.load_bytes))  # read out of that copy, which keeps the blocks
            codes.append(cells[which.reshape(-1)])
        self._fetch_copies(inst, copies, plan)
        if not plan.hits:
            return None
        plan.codes = np.concatenate(codes)
        return plan

    def _start_fetch(self, inst: Instance, job: Job, plan: FetchPlan, landed: Callable[[], None]) -> None:
        """A planned fetch goes ahead (``FetchPlan.start``): its reads are counted (a local tier's here, not at load:
        ``KVCacheManager.load`` reads nothing for it), its blocks' locations kept for the hits at admission
        (``_admitted``), and its sources sent over their links, each source's blocks as one transfer; ``landed`` when
        all have arrived."""
        for where, nbytes in plan.reads:
            if isinstance(where, int):
                self.arena.count_read(where, nbytes)
            else:
                where.count_read(nbytes)
        if plan.first:  # (a preempted request's hits were counted at its first admission)
            self._hit_codes[job.rid] = plan.codes
        pending = [len(plan.sources)]

        def arrived(_duration: float) -> None:
            pending[0] -= 1
            if not pending[0]:
                landed()

        for tier, (count, nbytes) in plan.sources.items():
            kind, t_rack, t_node, _ = self._place[tier]
            scope = LOCATIONS[self._scope(kind, t_rack, t_node, inst.index)]
            self.moved_blocks[scope] += count
            self.moved_bytes[scope] += nbytes
            Path(self._path_links(tier, inst.index), scope, self._path_latency(tier, inst.index)).send(nbytes, arrived)

    def _copy_finder(self, inst: Instance):
        """Where a sliding group's copy or a state is, seen from ``inst``: its level in the instance's own tiers, else
        0 when a shared tier elsewhere holds it (fetchable), else -1."""
        wanted = self.shared_tier_candidates()

        def find(key: int) -> int:
            level = inst.kv.find(key)
            if level >= 0:
                return level
            return 0 if self.holders(np.array([key], dtype=np.int64), wanted)[0] else -1

        def each(keys: np.ndarray) -> np.ndarray:
            """``find`` of each of ``keys`` in two compiled passes (``HybridKVCacheManager._sliding_run``)."""
            levels = inst.kv.find_each(keys)
            missing = np.flatnonzero(levels < 0)
            if len(missing):
                levels[missing[self.arena.held_each(keys[missing], wanted)]] = 0
            return levels

        if getattr(inst.kv, "find_each", None) is not None:
            find.each = each  # type: ignore[attr-defined]
        return find

    def _fetch_copies(self, inst: Instance, keys: list[int], plan: FetchPlan) -> None:
        """The sliding copies or states a fetched prefix needs that are not in ``inst``'s HBM (``copy_bytes`` each):
        each read from its instance's lower tier, else from the cheapest shared tier holding it (counted in the
        plan's ``sources`` and ``reads``)."""
        sources = plan.sources
        remote = []
        nbytes = self.copy_load_bytes
        for key in keys:
            level = inst.kv.find(key)
            if level > 0:
                tier = inst.kv.cache.tiers[level]
                _add(sources, tier.index, 1, nbytes)
                plan.reads.append((tier, nbytes))
            elif level < 0:
                remote.append(key)
        if remote:
            chain = np.array(remote, dtype=np.int64)
            found, offsets, tiers = self.holders(chain, self.shared_tier_candidates())
            assert found == len(remote), "a copy the prefix's reach found went missing"
            for t in self._cheapest_holders(offsets, tiers, inst.index, nbytes)[1].tolist():
                _add(sources, t, 1, nbytes)
                plan.reads.append((t, nbytes))

    def _local_codes(self, inst: Instance, levels: np.ndarray) -> np.ndarray:
        """The ``hit_blocks`` cells of blocks held at ``levels`` of ``inst``'s own cache."""
        return inst.level_cells[np.asarray(levels, dtype=np.int64)]

    def _admitted(self, inst: Instance, job: Job, match: PrefixMatch) -> None:
        """A request's hits are the blocks the scheduler serves it at admission (as on a single node), each where
        the fetch found it; a block cached there since the fetch, where it is now."""
        codes = self._hit_codes.pop(job.rid, _EMPTY)[: match.blocks]
        if len(codes) < match.blocks:
            codes = np.concatenate([codes, self._local_codes(inst, np.asarray(match.tier_of_each[len(codes):]))])
        np.add.at(self.hit_blocks.reshape(-1), codes, 1)
        self.rack_hits[self.topo.rack_of(inst.index)] += match.blocks
