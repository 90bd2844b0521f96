"""Cluster mode: racks of nodes of GPU instances behind a hierarchical router, on the serving model.

A ``ClusterRun`` is a ``ServingRun`` whose instances (today's ``Instance``) are built lazily,
the first time the router (or, in PD, a prefill instance's KV) sends one work: its HBM tier,
its node's DRAM and SSD tiers (shared by the node's instances), its rack's EIC pool (shared
by the rack), and the links on the way, each created once, all in the run's one arena. An
idle rack, node or GPU costs nothing but a few counters.

When the scheduler admits a request its cached prefix (a hybrid model's with its sliding copies or Gated DeltaNet
states) is loaded from wherever it is held (``sim.cluster.fetch``, the scheduler's ``connector``: vLLM's order), and
its hits are counted by where they were found.

``--cluster --pd``: each rack has ``pd.num_prefill`` prefill and ``pd.num_decode`` decode
instances, each role's at its own TP (placed by ``sim.cluster.topology``, built from its role's shape: HBM blocks,
compute, PCIe lanes); a request is bound when it is dispatched to a decode instance of its prefill instance's
rack, or of another rack when none of its own has room for its prompt (``_decode_for``), and its KV goes there, over
the links between them, once that instance has memory for it; only the blocks the decode instance
does not already hold are sent (``Instance.reserve``); a Gated DeltaNet hybrid's prompt is prefilled short of its
last token and its states are sent with its blocks (``sim.serving.state_transfer``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.cache.arena_layout import RESIDENT
from sim.cache.tiers import (
    TIER_NAMES,
    Tier,
    configured_tier_blocks,
    tier_block_bytes,
    tier_from_config,
    tier_stored_bytes,
)
from sim.cluster.fetch import DRAM, EIC, HBM, LOCATIONS, SSD, PrefixFetch, level_cells
from sim.cluster.in_use import InUse
from sim.cluster.links import LoadTracker
from sim.cluster.prefix_index import holders_chain
from sim.cluster.routers import CLUSTER_ROUTERS
from sim.cluster.topology import Topology
from sim.config import Config
from sim.serving.compute import StepShape
from sim.serving.compute_backend import gpu_link, pcie_bandwidth
from sim.serving.instance import DECODE, PREFILL, UNIFIED, Instance, Job
from sim.serving.network import AnalyticNetwork, Link, latency_of, network_model
from sim.serving.paths import Path
from sim.serving.run import ServingRun
from sim.specs import LinkSpec
from trace.request import Trace


class ClusterRun(PrefixFetch, ServingRun):
    """Racks x nodes x instances built on demand; routing, fetching and PD transfers across them."""

    def __init__(self, trace: Trace, config: Config, progress: bool = False, pd: bool = False):
        self.topo = Topology.from_config(config, pd)
        super().__init__(trace, config, "cluster", progress, pd=pd)

    # ------------------------------------------------------------------ building

    def _lower_tiers(self) -> list:
        return []  # per node and per rack, built lazily

    def _several_instances(self) -> bool:
        return self.topo.pool_instances > 1

    def _build(self) -> None:
        topo, config = self.topo, self.config
        self.arena.index_generic = True  # (a learned tier's blocks found by other nodes' fetches and the routers)
        self.front, self.decode = [], []
        self.insts: dict[int, Instance] = {}
        self.node_tiers: dict[int, list[Tier]] = {}  # node -> [dram?, ssd?]
        self.rack_tiers: dict[int, list[Tier]] = {}  # rack -> [eic?]
        self.pcie: dict[int, Link] = {}
        self.nic: dict[int, Link] = {}
        self.uplink: dict[int, Link] = {}
        # arena tier index -> its read link (DRAM, SSD, EIC): a shared device's (``shared_read_gbps``), which its
        # readers share; a copy without one is read over each reader's own links (``reader_link``)
        self.tier_link: dict[int, Link] = {}
        self._reader_links: dict[tuple[int, int], Link] = {}
        self._read_over_own_links: set[int] = set()  # tiers without a shared device
        # arena tier index -> (kind, rack, global node or -1, instance or -1)
        self._place: list[tuple[int, int, int, int]] = []
        self._wanted_all = np.zeros(0, dtype=bool)  # per arena tier: part of the fleet (the prefix index's filters)
        self._wanted_shared = np.zeros(0, dtype=bool)  # per arena tier: DRAM, SSD or EIC (a prefix can be fetched)
        self.front_slots = topo.front_slots()
        self.front_nodes = np.unique(topo.nodes_of_slots(self.front_slots))
        # per rack-local node, its front slots (``front_ids_of_node``, asked by every least-loaded pick)
        self._front_slots_of = [self.front_slots[topo.nodes_of_slots(self.front_slots) == local]
                                for local in range(topo.nodes_per_rack)]
        self.inst_load = np.zeros(topo.num_instances, dtype=np.int64)
        self.node_load = np.zeros(topo.num_nodes, dtype=np.int64)
        self.rack_load = np.zeros(topo.num_racks, dtype=np.int64)
        self.load_range = LoadTracker(topo.num_racks * len(self.front_slots))
        self.queued_tokens = np.zeros(topo.num_instances, dtype=np.int64)
        # prompt tokens ever routed to each instance, node and rack (the routers' tie-break: ``ClusterRouter``)
        self.inst_tokens = np.zeros(topo.num_instances, dtype=np.int64)
        self.node_tokens = np.zeros(topo.num_nodes, dtype=np.int64)
        self.rack_tokens = np.zeros(topo.num_racks, dtype=np.int64)
        self._routed_to = np.full(len(self.trace), -1, dtype=np.int64)
        self.hit_blocks = np.zeros((len(TIER_NAMES), len(LOCATIONS)), dtype=np.int64)
        self.accesses = 0
        self.rack_accesses = np.zeros(topo.num_racks, dtype=np.int64)
        self.rack_hits = np.zeros(topo.num_racks, dtype=np.int64)
        self._hit_codes: dict[int, np.ndarray] = {}  # per request fetched, its prefix's hit_blocks cells (_start_fetch)
        self.moved_blocks = dict.fromkeys(("node", "rack", "cross_rack"), 0)  # fetched blocks by links crossed
        self.kv_transfer_blocks = dict.fromkeys(("node", "rack", "cross_rack"), 0)  # PD prefill -> decode
        self.kv_transfer_sent = dict.fromkeys(("node", "rack", "cross_rack"), 0)  # their bytes, every rank's
        self._init_fetch()
        self.net = network_model(config.network)
        uplink_gbps = config.cluster.uplink_gbps or (
            topo.nodes_per_rack * config.network.bandwidth_gbps / config.cluster.oversubscription)
        self.uplink_model = AnalyticNetwork(uplink_gbps * 1e9 / 8, config.cluster.uplink_latency_us * 1e-6)
        # an instance's GPUs each have their PCIe link: its ranks' pages of a block (MLA: each rank's copy of the
        # latent) cross them side by side (each role's instances over their own lanes, one a rank:
        # sim.serving.roles); a lower tier is read over a front instance's lanes, as single-node PD's (``_lower_tiers``;
        # a shared device over its one link: ``reader_link``), and its shares are of its instances' links together
        # (``ServingRun._instance``)
        self.lanes = self.shapes[PREFILL if self._pd else UNIFIED].lanes
        self.pcie_models = {role: AnalyticNetwork(pcie_bandwidth(config) * shape.lanes)
                            for role, shape in self.shapes.items()}
        # a PD transfer between two instances of one node goes GPU to GPU (vLLM's NixlConnector: UCX's cuda_ipc) over
        # the node's NVLink where it joins every GPU of the board (an NVSwitch: profiles/gpus.yaml `kind` nvlink3/4/5,
        # with peer access), each rank over its own link at the rate NCCL plans for it, one hop's latency; a bridge
        # (pairs only) or PCIe board crosses both GPUs' PCIe links (``_kv_link``)
        self.gpu_link: LinkSpec = gpu_link(config)  # (``hardware.gpu_link_*`` applied)
        link = self.gpu_link
        self.gpu_link_models = ({role: AnalyticNetwork(link.bandwidth * shape.lanes, link.step_latency)
                                 for role, shape in self.shapes.items()} if self.kv_over_gpu_link else None)
        self.gpu_links: dict[int, Link] = {}
        self.lower_capacity = {name: configured_tier_blocks(name, self.store_config) for name in ("dram", "ssd", "eic")}
        shape = StepShape(window=self.compute.sliding_window)
        chunk = self.serving.max_num_batched_tokens
        shape.add_prefill(chunk, 0)
        self.prefill_rate = chunk / self.compute.step_time(shape)  # tokens/s of one full prefill step
        self.route_name = config.cluster.router
        self.router = CLUSTER_ROUTERS[self.route_name](self)
        # per block, the instances whose running requests hold it (the prefix index's), kept only for a router that
        # reads the index's whole answer (precise-prefix): the fetch asks only of DRAM/SSD/EIC, where none is
        self.in_use = InUse() if self.router.reads_in_use else None

    def _tier_predicted(self, kind: int):
        """The learned policy's predictions for a tier of ``kind``: private (classic experts only) where the tier sees
        only part of the run's lookups, as an instance's HBM among several does: a node's DRAM/SSD in a cluster of
        several nodes, a rack's EIC in one of several racks (the model predicts a block's next use anywhere)."""
        if kind == HBM:
            return self._hbm_predicted
        parts = self.topo.num_racks * (self.topo.nodes_per_rack if kind in (DRAM, SSD) else 1)
        return self._predicted.private() if self._predicted is not None and parts > 1 else self._predicted

    def _link(self, model) -> Link:
        return Link(self.engine, model, shared=self.config.network.contention)

    def _tier(self, name: str, kind: int, rack: int, node: int, inst: int, capacity: int) -> Tier:
        cfg = getattr(self.config.cache.tiers, name)
        tier = tier_from_config(self.arena, name, cfg, self.config.cache.policy, capacity, self._next_use,
                                self._tier_predicted(kind),
                                lanes=1 if kind == HBM else self.lanes,
                                stored=(0, 0) if kind == HBM else tier_stored_bytes(name, self.store_config))
        self._place_tier(tier.index, (kind, rack, node, inst))
        if kind != HBM:  # the copy's read link: a shared device's, which its readers share (and its writes)
            link = self.tier_link[tier.index] = self._link(AnalyticNetwork(tier.copy_read_bw, tier.latency_s))
            tier.write_chunk = tier_block_bytes(name, self.store_config)  # a demotion writes a block
            link.write_chunk = tier.write_chunk / tier.write_bw
            tier.write_sink = link.write_back  # a shared device's writes: one stream in its idle time, as a node's
            if tier.shared_read_bw is None:
                self._read_over_own_links.add(tier.index)
        return tier

    def reader_link(self, tier: int, inst_id: int) -> Link:
        """The link instance ``inst_id`` reads arena tier ``tier`` over: a shared device's one link (its readers
        share it), else the reader's own (``read_gbps`` x its lanes: a GPU reads host DRAM over its own PCIe link, as
        the single-node mode reads it; built when first used)."""
        shared = self.tier_link[tier]
        if tier not in self._read_over_own_links:
            return shared
        link = self._reader_links.get((tier, inst_id))
        if link is None:
            link = self._reader_links[tier, inst_id] = self._link(shared.model)
        return link

    def _place_tier(self, index: int, place: tuple[int, int, int, int]) -> None:
        """Record where arena tier ``index`` is, and mark it in the prefix index's tier filters
        (grown by doubling, so building a fleet tier by tier stays linear)."""
        while len(self._place) <= index:
            self._place.append((-1, -1, -1, -1))
        self._place[index] = place
        if index >= len(self._wanted_all):
            size = max(64, 2 * (index + 1))
            self._wanted_all = np.concatenate([self._wanted_all, np.zeros(size - len(self._wanted_all), dtype=bool)])
            self._wanted_shared = np.concatenate([self._wanted_shared,
                                                  np.zeros(size - len(self._wanted_shared), dtype=bool)])
        self._wanted_all[index] = place[0] >= 0
        self._wanted_shared[index] = place[0] > HBM

    def _rack(self, rack: int) -> list[Tier]:
        if rack not in self.rack_tiers:
            cap = self.lower_capacity["eic"]
            self.rack_tiers[rack] = [self._tier("eic", EIC, rack, -1, -1, cap)] if cap > 0 else []
            self.uplink[rack] = self._link(self.uplink_model)
        return self.rack_tiers[rack]

    def _node(self, node: int) -> list[Tier]:
        if node not in self.node_tiers:
            rack = node // self.topo.nodes_per_rack
            self.node_tiers[node] = [self._tier(name, kind, rack, node, -1, self.lower_capacity[name])
                                     for name, kind in (("dram", DRAM), ("ssd", SSD)) if self.lower_capacity[name] > 0]
            self.nic[node] = self._link(self.net)
        return self.node_tiers[node]

    def _group_key(self, index: int) -> tuple[int, int]:
        """D consecutive slots of one rack's pool (PD: the prefill slots, a whole number of groups, first)."""
        rack = index // self.topo.instances_per_rack
        return rack, (index - rack * self.topo.instances_per_rack) // self.config.serving.data_parallel_size

    def instance(self, inst_id: int) -> Instance:
        """The instance ``inst_id``, built (with its node's and rack's state) the first time it is needed."""
        inst = self.insts.get(inst_id)
        if inst is not None:
            return inst
        topo = self.topo
        rack, _, _ = topo.locate(inst_id)
        node = topo.node_of(inst_id)
        lower = [*self._node(node), *self._rack(rack)]
        role = self.role_of(inst_id)
        inst = self._instance(inst_id, role, lower)
        hbm = inst.kv.cache.tiers[0]
        self._place_tier(hbm.index, (HBM, rack, node, inst_id))
        if self.in_use is not None:  # the blocks its running requests hold stay its HBM's in the index
            inst.pool.watch(self.in_use, hbm.index)
        inst.kinds = [HBM] + [self._place[t.index][0] for t in lower]  # kind of each level of its cache
        inst.level_cells = level_cells(inst.kinds)  # (the hit_blocks cell of each)
        self.insts[inst_id] = inst
        self.pcie[inst_id] = self._link(self.pcie_models[role])
        if self.gpu_link_models is not None:
            self.gpu_links[inst_id] = self._link(self.gpu_link_models[role])
        (self.decode if role == DECODE else self.front).append(inst)
        if role != DECODE:
            inst.kv.on_admission = lambda job, match, inst=inst: self._admitted(inst, job, match)
            if self.prefix_caching:
                # its prefix held below its HBM or elsewhere is loaded when the scheduler admits it (vLLM's order)
                inst.scheduler.connector = lambda job, inst=inst: self._connect(inst, job)
        if role == UNIFIED:  # its prompt leaves the queued prompt tokens once prefilled, as PD's prefill instance's
            inst.scheduler.on_prefilled = self._prefilled
        if hasattr(self, "timeline"):
            self.instances.append(inst)
            self.timeline.add(inst)
        for peer in self._group_peers(inst_id):  # its data-parallel group steps in lockstep from the first: its
            self.instance(peer)  # idle ranks' dummy steps are among their steps and busy time, and in the report
        return inst

    def _group_peers(self, inst_id: int) -> list[int]:
        """The other instances of ``inst_id``'s data-parallel group (``_group_key``'s D consecutive slots); none at
        D = 1."""
        dp = self.config.serving.data_parallel_size
        if dp == 1:
            return []
        rack, group = self._group_key(inst_id)
        first = rack * self.topo.instances_per_rack + group * dp
        return [peer for peer in range(first, first + dp) if peer != inst_id]

    # ------------------------------------------------------------------ index

    def tier_place(self, tier: int) -> tuple[int, int, int, int]:
        """(kind, rack, global node or -1, instance or -1) of an arena tier."""
        return self._place[tier]

    def all_tier_candidates(self) -> np.ndarray:
        """Per arena tier: True for every tier of the fleet (HBM, DRAM, SSD, EIC)."""
        return self._wanted_all

    def shared_tier_candidates(self) -> np.ndarray:
        """Per arena tier: True for the tiers a prefix can be fetched from (DRAM, SSD, EIC)."""
        return self._wanted_shared

    def holders(self, keys: np.ndarray, wanted: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """The prefix index: the wanted tiers holding each key of the chain's held prefix (CSR); under a router that
        reads blocks in use (``ClusterRouter.reads_in_use``), a block a running request holds is held by its
        instance's HBM tier (``self.in_use``)."""
        # the shared tiers' filter leaves out every HBM tier, where blocks in use are: the record cannot add to it
        in_use = None if wanted is self._wanted_shared else self.in_use
        return holders_chain(self.arena, wanted, keys, in_use)

    def is_front(self, inst_id: int) -> bool:
        return self.topo.is_front(inst_id)

    def role_of(self, inst_id: int) -> str:
        """The role of instance ``inst_id`` (its shape: ``self.shapes``)."""
        return UNIFIED if not self.topo.pd else PREFILL if self.topo.is_front(inst_id) else DECODE

    def front_ids_of_node(self, node: int) -> np.ndarray:
        base, slots = self.front_slots_of_node(node)
        return base + slots

    def front_slots_of_node(self, node: int) -> tuple[int, np.ndarray]:
        """Node ``node``'s front instances as its rack's first instance id and their rack-local slots (increasing)."""
        topo = self.topo
        rack, local = divmod(node, topo.nodes_per_rack)
        return rack * topo.instances_per_rack, self._front_slots_of[local]

    # ------------------------------------------------------------------ arrivals

    def _dispatch(self, job: Job, keys, i: int) -> Instance:
        keys = np.asarray(keys, dtype=np.int64)
        choice = self.router.pick(keys, i, int(self.trace.session_id[i]))
        inst = self.instance(choice)
        self._load(choice, +1, job.input_tokens)
        self.inst_tokens[choice] += job.input_tokens
        self.node_tokens[self.topo.node_of(choice)] += job.input_tokens
        self.rack_tokens[self.topo.rack_of(choice)] += job.input_tokens
        self.router.routed(choice)
        self._routed_to[i] = choice
        self.accesses += len(keys)
        self.rack_accesses[self.topo.rack_of(choice)] += len(keys)
        return inst  # (its prefix held below its HBM or elsewhere is loaded at admission: ``PrefixFetch._connect``)

    def _load(self, inst_id: int, delta: int, tokens: int) -> None:
        old = int(self.inst_load[inst_id])
        self.inst_load[inst_id] = old + delta
        self.node_load[self.topo.node_of(inst_id)] += delta
        self.rack_load[self.topo.rack_of(inst_id)] += delta
        self.queued_tokens[inst_id] += delta * tokens
        self.load_range.change(old, old + delta)

    def kv_short(self, inst_id: int, keys: np.ndarray, prompt_tokens: int) -> bool:
        """Whether instance ``inst_id``'s KV memory cannot take this prompt beside the prompts queued there: their
        blocks (``queued_tokens``, rounded up) and this prompt's, less those of its prefix that running requests hold
        there already (shared, no new block), exceed its blocks not in use (free, or cached and evictable). Such an
        instance's scheduler keeps the request waiting until running requests free blocks (or preempts one), a wait
        no queue of prompt tokens shows: Mooncake's conductor (Algorithm 1) passes over an instance whose load
        breaks the SLO, and llm-d scores KV-cache utilization beside the prefix. Not built yet: all its blocks are
        free."""
        inst = self.insts.get(inst_id)
        if inst is None:
            return False
        bs, pool = self.serving.block_size, inst.pool
        local = inst.cached_prefix_blocks(keys)  # its HBM's prefix, cached or in use
        shared = sum(1 for k in keys[:local].tolist() if k in pool)  # of which held by running requests
        need = -(-prompt_tokens // bs) - shared + -(-int(self.queued_tokens[inst_id]) // bs)
        return need > pool.total - pool.used

    def _prefilled(self, job: Job) -> None:
        """A unified instance computed a prompt: it is no longer queued prompt work (``queued_tokens``, the
        precise-prefix router's TTFT estimate), though the request stays in the instance's load until it finishes."""
        self.queued_tokens[int(self._routed_to[job.rid])] -= job.input_tokens

    def _finished(self, job: Job) -> None:
        if not self._pd:
            self._load(int(self._routed_to[job.rid]), -1, 0)  # (its prompt tokens left at ``_prefilled``)
        super()._finished(job)

    # ------------------------------------------------------------------ PD

    def _prefill_done(self, job: Job) -> None:
        self._load(int(self._routed_to[job.rid]), -1, job.input_tokens)
        super()._prefill_done(job)

    def _prefill_of(self, job: Job) -> Instance:
        return self.insts[int(self._routed_to[job.rid])]

    def _decode_for(self, prefill: Instance, job: Job) -> Instance:
        """The prefill instance's rack's best ranked decode instance (``DecodeQueues.choose``: pd.decode_router)
        among those with room for the prompt (less its prefix there that running requests hold) beside those bound
        to them (``DecodeQueues.has_room``); when none of its own has, another rack's built one that has, the best
        ranked; when none anywhere has, its rack's best. Other racks' are looked at only then: a request's choice
        costs its rack's pool, not a scan of the fleet's decode instances (8,960 of them at 160 racks)."""
        topo, queues = self.topo, self.decode_queues
        rack = topo.rack_of(prefill.index)
        own = [self.instance(rack * topo.instances_per_rack + int(s)) for s in topo.decode_slots()]
        roomy = [d for d in own if queues.has_room(d, job)]
        if not roomy:
            roomy = [d for d in self.decode if topo.rack_of(d.index) != rack and queues.has_room(d, job)]
        return queues.choose(roomy or own, job)

    def _decode_of(self, job: Job) -> Instance:
        return self.insts[int(self.table.decode_instance[job.rid])]

    def _kv_link(self, src: Instance, dest: Instance) -> Path:
        """The links a PD transfer crosses, its latency the hops' sum (``sim.serving.paths``): the network's once
        between nodes (NIC to NIC), the leaf -> spine -> leaf crossing's more between racks."""
        topo = self.topo
        s_node, d_node = topo.node_of(src.index), topo.node_of(dest.index)
        if s_node == d_node:  # within a node: GPU to GPU over NVLink, or through both GPUs' PCIe links
            if self.gpu_link_models is not None:
                return Path([self.gpu_links[src.index], self.gpu_links[dest.index]], "node", self.gpu_link.step_latency)
            pcie = [self.pcie[src.index], self.pcie[dest.index]]
            return Path(pcie, "node", sum(latency_of(link.model) for link in pcie))
        links = [self.nic[s_node], self.nic[d_node]]
        latency = latency_of(self.net)
        s_rack, d_rack = topo.rack_of(src.index), topo.rack_of(dest.index)
        if s_rack != d_rack:
            return Path([*links, self.uplink[s_rack], self.uplink[d_rack]], "cross_rack",
                        latency + latency_of(self.uplink_model))
        return Path(links, "rack", latency)

    def _link_bytes(self, busiest: int, moved: int) -> int:
        """Every rank's bytes: a node's NIC is shared by its GPUs, and an instance's PCIe path has a lane per rank
        (``pcie_models``), so the ranks' shards cross side by side only as far as the lanes allow."""
        return moved

    def _record_transfer(self, link: Path, nbytes: int, moved: int) -> None:
        # (a Gated DeltaNet hybrid's transfer carries its states beside its blocks: sim.serving.state_transfer)
        blocks = (nbytes - (self.state_bytes if nbytes else 0)) // self.transfer.busiest_bytes
        self.kv_transfer_blocks[link.scope] += blocks
        self.kv_transfer_sent[link.scope] += moved

    # ------------------------------------------------------------------ results

    def run(self):
        result = super().run()
        result.name = self.route_name
        return result

    def lower_tier_copies(self) -> list[Tier]:
        """Every node's DRAM/SSD and every rack's EIC the run built."""
        return [t for tiers in (*self.node_tiers.values(), *self.rack_tiers.values()) for t in tiers]

    def _hit_metrics(self) -> dict[str, Any]:
        accesses = self.accesses
        per_tier = self.hit_blocks.sum(axis=1)
        per_location = self.hit_blocks.sum(axis=0)
        hits = int(per_tier.sum())
        ratio = (lambda n: n / accesses if accesses else 0.0)
        stats = [inst.kv.stats for inst in self.front]
        prompt_tokens = sum(s.prompt_tokens for s in stats)
        topo = self.topo
        eic = [tiers[0] for tiers in self.rack_tiers.values() if tiers]
        eic_used = [int(self.arena.state.meta[t.index, RESIDENT]) for t in eic]
        racks = sorted(self.rack_tiers)
        return {
            "accesses": accesses,
            "hits": hits,
            "hit_ratio": ratio(hits),
            "token_hit_ratio": sum(s.cached_tokens for s in stats) / prompt_tokens if prompt_tokens else 0.0,
            "tier_hit_ratio": {name: ratio(int(per_tier[k])) for k, name in enumerate(TIER_NAMES)},
            "location_hit_ratio": {name: ratio(int(per_location[k])) for k, name in enumerate(LOCATIONS)},
            "cluster": {
                "racks": topo.num_racks, "nodes_per_rack": topo.nodes_per_rack, "gpus": topo.num_gpus,
                "instances": topo.pool_instances, "pd": topo.pd,
                "racks_used": len(self.rack_tiers), "nodes_used": len(self.node_tiers), "instances_used": len(self.insts),
                "hit_blocks": {name: {loc: int(self.hit_blocks[k, j]) for j, loc in enumerate(LOCATIONS)}
                               for k, name in enumerate(TIER_NAMES)},
                "rack_hit_ratio": {str(r): float(self.rack_hits[r] / self.rack_accesses[r])
                                   for r in racks if self.rack_accesses[r]},
                "eic_occupancy": {
                    "capacity_blocks_each": self.lower_capacity["eic"],
                    "mean": float(np.mean(eic_used) / self.lower_capacity["eic"]) if eic else 0.0,
                    "max": float(np.max(eic_used) / self.lower_capacity["eic"]) if eic else 0.0,
                },
                "block_bytes": self.stored_bytes,
                "fetched_blocks": dict(self.moved_blocks),
                "fetched_bytes": dict(self.moved_bytes),
                "kv_transfer_blocks": dict(self.kv_transfer_blocks),
                # every rank's shard, as the request table counts a transfer (MLA: each rank's copy of the latent)
                "kv_transfer_bytes": dict(self.kv_transfer_sent),
                "router": {"name": self.route_name, "decisions": dict(sorted(self.router.decisions.items())),
                           "requests_per_instance_max": int(np.max(np.bincount(self._routed_to[self._routed_to >= 0])))
                           if (self._routed_to >= 0).any() else 0},
            },
        }


def run_cluster(trace: Trace, config: Config, pd: bool = False, progress: bool = False):
    """Simulate the cluster (``--cluster``, with ``--pd`` the per-rack prefill/decode pools)."""
    from sim.report.metrics import request_columns

    run = ClusterRun(trace, config, progress, pd=pd)
    result = run.run()
    result.per_request = request_columns(run.table)
    return result, run.table
