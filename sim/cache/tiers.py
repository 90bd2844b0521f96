"""Storage tiers: capacity in blocks, bandwidth, latency, one eviction policy, counters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.cache.arena import TierArena
from sim.cache.arena_layout import BYTES_WRITTEN
from sim.cache.policies import EvictionPolicy, KernelPolicy, check_policy_inputs, make_policy
from sim.config import Config, TierConfig
from sim.errors import ConfigError
from sim.kv_dtype import kv_dtype_bytes
from sim.serving.engine_limits import block_size
from sim.serving.network import write_back_done
from sim.specs import GIB, model_spec

TIER_NAMES = ("hbm", "dram", "ssd", "eic")


@dataclass(slots=True)
class TierStats:
    """What happened in one tier (blocks and bytes)."""

    hits: int = 0  # lookups served from this tier
    insertions: int = 0  # blocks admitted (new, promoted in, demoted in)
    promotions: int = 0  # blocks moved up out of this tier (on a hit, or taken by a request that computes them)
    demotions: int = 0  # blocks moved down out of this tier to make room
    evictions: int = 0  # blocks dropped from the cache by this tier
    prefetches: int = 0  # blocks moved up out of this tier ahead of use
    bytes_read: int = 0  # blocks read out of this tier x block bytes: a serving run's loads, a replay's hits
    bytes_written: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(eq=False)
class Tier:
    """One level of the hierarchy: tier ``index`` of ``arena``, which holds its policy state and counters."""

    name: str
    policy: str  # registry name
    read_bw: float  # B/s
    write_bw: float  # B/s
    latency_s: float
    arena: TierArena
    index: int
    next_use: np.ndarray | None = None  # what the policy's Python hooks need (generic path)
    predicted: np.ndarray | None = None
    resident_set: set = field(default_factory=set)  # the generic path's record of resident blocks
    _hooks: EvictionPolicy | None = None
    # B/s all readers of this copy share (None: each has read_bw); a shared device also serves the copy's writes
    shared_read_bw: float | None = None
    device_free_at: float = 0.0  # simulated time at which the shared device has served the reads reserved so far
    written_charged: int = 0  # bytes written whose device time is charged (``charge_writes``)
    # the shared device's write-back: one stream of the demotions' bytes, served in the device's idle time (reads
    # first: ``reserve_read``); ``write_backlog`` seconds of it are left at ``write_from`` (its chunks' origin)
    write_backlog: float = 0.0
    write_from: float = 0.0
    write_chunk: int = 0  # bytes of one write the device does not interrupt for a read: a block's (0: none)
    write_sink: Callable[[float], None] | None = None  # takes writes' device seconds instead of the backlog (cluster)
    # links one reader reads a block over in parallel: an instance's TP ranks each move their page of it over their
    # own link (PCIe), so its read path is lanes x read_bw; a shared device serves every page (stored × read_copies)
    lanes: int = 1
    # bytes this tier stores and writes for a block and for a hybrid's copy (0: the cache's own, every rank's page:
    # ``stored_block_bytes``); an EIC of ``layout: distinct`` stores each distinct page once (``tier_block_bytes``)
    stored_block: int = 0
    stored_copy: int = 0
    # links of the instances sharing this copy that write into it (each demotes its own blocks over its own ranks'
    # links) and that read it over their own links (not queued: no shared device, not a cluster's copy link);
    # 0: one instance's ``lanes`` (``add_sharer``)
    writer_lanes: int = 0
    reader_lanes: int = 0

    @property
    def compiled(self) -> bool:
        """True when the policy runs as a compiled kernel."""
        return self.arena.kind(self.index) != 0

    @property
    def capacity(self) -> int:
        """Blocks this tier may hold now (the top tier's follows the free HBM blocks)."""
        return self.arena.capacity(self.index)

    @property
    def stats(self) -> TierStats:
        return TierStats(*(int(x) for x in self.arena.stats_row(self.index)))

    @property
    def hooks(self) -> EvictionPolicy:
        """The policy's Python hooks (the generic path); a kernel policy's act on this tier's arena state."""
        if self._hooks is None:
            self._hooks = make_policy(self.policy, self.capacity, self.next_use, self.predicted, arena=self.arena,
                                      tier=self.index)
        return self._hooks

    def read_time(self, nbytes: int, lanes: int | None = None) -> float:
        """Seconds to read ``nbytes`` from this tier alone (latency + bytes / one reader's bandwidth; ``lanes``: the
        reader's own, where readers of this copy differ: PD roles at different TPs)."""
        return self.latency_s + nbytes / self.reader_bandwidth(lanes) if nbytes else 0.0

    def reserve_read(self, nbytes: int, start: float, lanes: int | None = None) -> float:
        """Seconds from ``start`` until ``nbytes`` read from this tier have arrived: ``read_time``, or, on a
        device its readers share (``shared_read_bw``), when its reads queued before (first come, first served) and
        the write in service (``write_chunk``, ahead of the write-back's rest: ``charge_writes``) are done, if
        later. Reserves the device's time."""
        if not nbytes:
            return 0.0
        if self.shared_read_bw is None:
            return self.read_time(nbytes, lanes)
        begin = max(start, self.device_free_at)
        on_device = nbytes / self.shared_read_bw
        backlog, origin = self.write_backlog, self.write_from
        if backlog > 0.0 and origin < begin < origin + backlog:  # a write chunk is in service: the read waits for it
            done = write_back_done(begin - origin, self.write_chunk / self.write_bw, backlog)
            begin = origin + done
            self.write_backlog = backlog - done
        elif backlog > 0.0 and begin >= origin + backlog:
            self.write_backlog = 0.0  # drained in the idle time before this read
        self.device_free_at = begin + on_device
        self.write_from = max(self.write_from, self.device_free_at) if self.write_backlog > 0.0 else self.device_free_at
        return self.latency_s + max(nbytes / self.reader_bandwidth(lanes), begin - start + on_device)

    def reader_bandwidth(self, lanes: int | None = None) -> float:
        """B/s a reader over ``lanes`` links (default: this copy's ``lanes``) reads it at."""
        return self.read_bw * (self.lanes if lanes is None else lanes)

    def count_read(self, nbytes: int) -> None:
        """``nbytes`` read out of this tier (a load that served a request; ``KVCacheManager.load``)."""
        self.arena.count_read(self.index, nbytes)

    def charge_writes(self, now: float) -> None:
        """Charge a shared device for the bytes written into this copy (demotions) since the last call: bytes /
        write bandwidth of device time each, joining the write-back from ``now`` (or handed to ``write_sink``). The
        write-back is one stream, served in the time the device's reads leave idle: a read waits only for the
        write in service, one ``write_chunk`` at most (``reserve_read``), never for the backlog, and nobody waits
        for a write itself. A device whose writes exceed its write bandwidth (``tier_traffic``'s write share above 1)
        never drains it: the backlog grows, reads are still served first, and the summary flags it. A copy without
        a shared device writes over each writer's own link (a GPU's PCIe link carries writes one way, loads the
        other): no time is charged.

        Reads first, as the devices and stores do: Linux's deadline scheduler gives reads preference over writes
        (``writes_starved``: docs.kernel.org/block/deadline-iosched.html), its writeback throttling keeps background
        writes from queueing ahead of reads (blk-wbt, Linux 87760e5eef35: "Background writeback should be, by
        definition, background activity"), and the KV stores write their offloads asynchronously (LMCache's
        architecture: "Asynchronously write KV caches from CPU to disk", docs/developer_guide/architecture)."""
        if self.shared_read_bw is None:
            return
        written = int(self.arena.stats_row(self.index)[BYTES_WRITTEN])
        if written == self.written_charged:
            return
        seconds = (written - self.written_charged) / self.write_bw
        self.written_charged = written
        if self.write_sink is not None:
            self.write_sink(seconds)
            return
        begin = max(now, self.device_free_at)  # (after the reads reserved: they come first)
        if self.write_from + self.write_backlog <= begin:  # the backlog drained before: a new one starts
            self.write_from, self.write_backlog = begin, seconds
        else:
            self.write_backlog += seconds

    @property
    def reader_bw(self) -> float:
        """B/s one reader (an instance: its ``lanes`` GPUs' links together) reads this tier at."""
        return self.reader_bandwidth()

    @property
    def copy_read_bw(self) -> float:
        """B/s of the copy as one link (a cluster's copy link, which its readers share): its shared bandwidth, else one
        reader's."""
        return self.shared_read_bw or self.reader_bw

    @property
    def copy_write_bw(self) -> float:
        """B/s the copy's writes can take: its shared device's write bandwidth, else its writers' links together
        (every instance that demotes into it writes over its own ranks' links: ``writer_lanes``)."""
        return self.write_bw if self.shared_read_bw is not None else self.write_bw * (self.writer_lanes or self.lanes)

    @property
    def copy_load_bw(self) -> float:
        """B/s the copy's loads can take: its shared bandwidth, else its readers' links together (every instance
        that loads from it reads over its own ranks' links: ``reader_lanes``; a cluster's copy, read over one link
        of ``copy_read_bw``, that link's)."""
        return self.shared_read_bw or self.read_bw * (self.reader_lanes or self.lanes)

    def add_sharer(self, lanes: int, reads: bool) -> None:
        """One more instance, over ``lanes`` links of its own (one a rank), shares this copy: it writes into it
        (its demotions), and, where ``reads``, loads from it over those links (``copy_load_bw``)."""
        self.writer_lanes += lanes
        if reads:
            self.reader_lanes += lanes


def tier_traffic(tiers: list[Tier], span_s: float) -> dict[str, dict[str, float | int]]:
    """Bytes each kind of lower tier (DRAM, SSD, EIC) read and wrote over a serving run of ``span_s``
    seconds, summed over its copies (a node's DRAM/SSD, a rack's EIC), and the busiest copy's share of
    its bandwidth: reads of its shared bandwidth if it has one, else of its readers' links together
    (``copy_load_bw``); writes of its device's write bandwidth, else of its writers' links together
    (``copy_write_bw``). On a shared device (``cache.tiers.<tier>.shared_read_gbps`` set) reads queue for it, so
    their share stays near 1 at most, and its write-back fills the time they leave (``Tier.charge_writes``): a write
    share above 1 says it could not keep up; elsewhere loads of different readers are not queued and writes take no
    time, so a share above 1 says the tier could not keep up. Either way the run's load times are optimistic."""
    def share(nbytes: int, bandwidth: float) -> float:
        return nbytes / (bandwidth * span_s) if span_s > 0 else math.nan

    traffic: dict[str, dict[str, float | int]] = {}
    for name in TIER_NAMES[1:]:
        copies = [(t, t.stats) for t in tiers if t.name == name]
        if not copies:
            continue
        traffic[name] = {
            "copies": len(copies),
            "bytes_read": sum(s.bytes_read for _, s in copies),
            "bytes_written": sum(s.bytes_written for _, s in copies),
            "read_utilization_max": max(share(s.bytes_read, t.copy_load_bw) for t, s in copies),
            "write_utilization_max": max(share(s.bytes_written, t.copy_write_bw) for t, s in copies),
        }
    return traffic


def new_tier(arena: TierArena, name: str, policy: str, capacity: int, read_bw: float, write_bw: float,
             latency_s: float, next_use: np.ndarray | None = None, predicted: np.ndarray | None = None,
             shared_read_bw: float | None = None, lanes: int = 1, stored: tuple[int, int] = (0, 0)) -> Tier:
    """Add a tier of ``capacity`` blocks run by ``policy`` to ``arena``; ``stored``: the bytes it stores for a block and
    for a copy (0: the cache's, ``Tier.stored_block``)."""
    cls = check_policy_inputs(policy, next_use, predicted)
    kernel = issubclass(cls, KernelPolicy)
    bound = capacity if arena.max_keys is None else min(capacity, arena.max_keys)
    index = arena.add_tier(cls.kind if kernel else 0, capacity, cls.slots(bound) if kernel else 0)
    return Tier(name, policy, read_bw, write_bw, latency_s, arena, index, next_use, predicted,
                shared_read_bw=shared_read_bw, lanes=lanes, stored_block=stored[0], stored_copy=stored[1])


def kv_block_bytes(config: Config) -> int:
    """Bytes of one KV block on one GPU (per TP rank): tokens per block × KV bytes per token, or, under vLLM's hybrid
    KV-cache manager, one group's layers' (``sim.serving.kv_groups``: a block of the shared pool holds one group);
    a Gated DeltaNet hybrid's page of each of a group's layers."""
    from sim.serving.kv_groups import hybrid_manager_groups
    from sim.serving.state_groups import state_groups

    tensor_parallel_size = config.serving.tensor_parallel_size
    states = state_groups(config, tensor_parallel_size)
    if states is not None:
        return states.block_bytes
    model = model_spec(config.model)
    kv = kv_dtype_bytes(model, config.serving.dtype, config.serving.kv_cache_dtype)
    per_token = model.kv_bytes_per_token(kv, tensor_parallel_size)
    groups = hybrid_manager_groups(config)
    if groups is not None:
        per_token = per_token // model.num_layers * groups.group_size
    return block_size(config) * per_token


def stored_block_bytes(config: Config) -> int:
    """Bytes one KV block takes in a lower tier (a node's DRAM/SSD, a rack's EIC): every TP rank's page of it, a KV
    head a rank only replicates (TP above the KV-head count) included, as vLLM 0.33's OffloadingConnector sizes a CPU
    block (vllm/v1/kv_offload/cpu/spec.py ``CPUOffloadingSpec``: ``num_copies = world_size``, each worker storing its
    own GPU page, vllm-project/vllm@0078e9d2 offloading/worker.py) and LMCache keys a chunk per worker
    (lmcache/v1/token_database.py ``CacheEngineKey(..., world_size, worker_id, ...)``, LMCache/LMCache@00e744e0).
    MLA's latent, the same page on every rank, is stored once: vLLM's ``replicated_layout`` (offloading/config.py
    @006f89ac: one MLA page a layer, TP only; one rank stores it, every rank loads it: ``read_copies``) and LMCache's
    ``save_only_first_rank`` (on by default with MLA). A sparse-attention model's page (latent and indexer keys, two
    per layer) fails vLLM's one-page check: every rank's. The capacity of a lower tier in blocks; HBM, one GPU's,
    holds one rank's page per block (``kv_block_bytes``)."""
    page = kv_block_bytes(config)
    return page if latent_stored_once(config) else page * config.serving.tensor_parallel_size


def latent_stored_once(config: Config) -> bool:
    """Whether a lower tier stores a block's one page for all TP ranks: MLA's latent, the same on every rank (vLLM's
    ``replicated_layout``; not a sparse-attention page, which fails its one-page check)."""
    model = model_spec(config.model)
    return model.is_mla and not model.is_sparse_attention


def read_copies(config: Config) -> int:
    """Reads of a block's stored bytes that one load makes: every TP rank loads its own page into its own HBM, so MLA's
    latent, stored once, is read once per rank (TP times); any other block is stored as every rank's page, each read
    once (1). Each source's MLA path, per loaded block at TP N:

    - vLLM's OffloadingConnector (CPU tier): one canonical latent a block, written by one rank
      (vllm/v1/kv_offload/base.py @0105e232 ``CanonicalPageMapping.is_writer``: ``block_id % num_writers ==
      writer_index``, "rotating by block spreads writes across ranks holding identical bytes";
      offloading/canonical_mapping.py @00e5aa02 ``_layer_mapping``: MLA's ``num_writers = tp_size // dcp_size``),
      loaded by every rank ("runs cover the full local page in both directions"; cpu/shared_offload_region.py
      ``create_next_canonical_view``: every worker gets the identical byte ranges): N latents read out of host
      memory, each over its rank's PCIe link;
    - vLLM's MooncakeStoreConnector (a store shared across nodes): PUTs striped over the ranks holding identical bytes
      (mooncake/store/worker.py @003df296 ``KVCacheStoreSendingThread``: ``put_step``, "e.g., MLA"), and every
      rank's ``KVCacheStoreRecvingThread`` GETs every key into its own buffers (``batch_get_into_multi_buffers``, the
      list rotated by ``tp_rank``): N reads;
    - SGLang HiCache: MLA written to L3 by TP 0 alone (managers/cache_controller.py @001067ff ``backup_skip =
      is_mla_model and tp_rank != 0``), prefetched by every rank's controller into its own host pool
      (``_page_transfer``, no MLA case): N reads;
    - LMCache (``save_only_first_rank``, its MLA default): rank 0 retrieves and broadcasts over the TP group
      (lmcache/v1/cache_engine.py @000620e3 ``retrieve``: ``_is_passive`` ranks skip ``_process_tokens_internal``;
      ``_broadcast_or_receive_memory_objs``): 1 read, then an NVLink broadcast kvsim does not model.

    kvsim follows vLLM's own connectors, as its lower tiers' capacity does (``stored_block_bytes``)."""
    return config.serving.tensor_parallel_size if latent_stored_once(config) else 1


def stored_copy_bytes(config: Config) -> int:
    """Bytes one copy a hybrid model keeps beside a block takes in a lower tier and on the links: a sliding group's
    block (``stored_block_bytes``), or a Gated DeltaNet hybrid's state in one state group, its layers' conv and
    recurrent states unpadded, every rank's (``state_transfer_bytes`` at TP 1, per group: vLLM's offloading
    connector copies a MambaSpec page without its padding, offloading/worker.py ``unpadded_page_size_bytes``). It
    fits in a block's slot, every rank's padded page (Qwen3-Next at TP 4: 13,172,736 B in 4 × 3,932,160 B), as vLLM
    keeps one fixed slot per key."""
    from sim.serving.state_groups import state_groups
    from sim.serving.state_transfer import state_transfer_bytes

    states = state_groups(config, 1)
    return stored_block_bytes(config) if states is None else state_transfer_bytes(states) // states.state_groups


def read_lanes(config: Config) -> int:
    """Links an instance reads a lower-tier block over in parallel: one per rank, each fetching its own page over its
    own link (PCIe), so a load takes a page's bytes / one link's bandwidth (MLA: each rank its own read of the one
    latent, ``read_copies``; a Gated DeltaNet state: each rank its share, as ``stored_copy_bytes`` holds every
    rank's)."""
    return config.serving.tensor_parallel_size


def store_replicas(config: Config) -> int:
    """TP ranks that hold byte-identical pages of a block, whose one key a store of distinct pages (an EIC of
    ``layout: distinct``) keeps for them all: vLLM's MooncakeStoreConnector (vllm-project/vllm@003df296
    distributed/kv_transfer/kv_connector/v1/mooncake/store/worker.py
    ``MooncakeStoreWorker._spec_tp_replication_factor``:
    a pure MLA group TP, any other attention group, full or sliding, ``max(1, tp_size // num_kv_head)``, a group with a
    ``MambaSpec`` 1 (``tier_copy_bytes``)). Each group's keys carry the shard id ``tp_rank // factor``, so the ranks of
    a shard share one key, and ``KVCacheStoreSendingThread`` stripes the shard's PUTs over them (``put_step = factor``,
    block ``i`` by the rank with ``i % put_step == put_step_rank``): each distinct page is stored and written once.
    kvsim's MLA spec has one KV head (the latent), so both rules give TP for it, a sparse-attention page's too (its
    indexer keys are an ``MLAAttentionSpec`` as well: vllm-project/vllm@002d6073 model_executor/models/deepseek_v2.py
    ``DeepseekV32IndexerCache.get_kv_cache_spec``)."""
    return max(1, config.serving.tensor_parallel_size // model_spec(config.model).num_kv_heads)


def _distinct(name: str, config: Config) -> bool:
    """Whether lower tier ``name`` stores each distinct page once (the EIC's ``layout: distinct``)."""
    return name == "eic" and config.cache.tiers.eic.layout == "distinct"


def tier_block_bytes(name: str, config: Config) -> int:
    """Bytes lower tier ``name`` stores and writes for one block: every rank's page (``stored_block_bytes``), or, for an
    EIC of ``layout: distinct``, each distinct page once: TP pages / ``store_replicas`` (Qwen3-30B-A3B, 4 KV heads, at
    TP 8: 4 of its 8 pages of 393,216 B). Loads read the same either way: every rank GETs its own page
    (``KVCacheStoreRecvingThread``: each rank's keys of its shard, the list rotated by ``tp_rank``), so a loaded block
    reads ``stored_block_bytes`` × ``read_copies`` in both layouts."""
    if not _distinct(name, config):
        return stored_block_bytes(config)
    return kv_block_bytes(config) * config.serving.tensor_parallel_size // store_replicas(config)


def tier_copy_bytes(name: str, config: Config) -> int:
    """Bytes lower tier ``name`` stores and writes for one copy a hybrid model keeps beside a block
    (``stored_copy_bytes``): in an EIC of ``layout: distinct`` a sliding group's block as ``tier_block_bytes``; a Gated
    DeltaNet state stays every rank's (vLLM's MooncakeStoreWorker: a ``MambaSpec`` group's replication factor is 1, one
    key namespace a rank)."""
    from sim.serving.state_groups import state_groups

    if not _distinct(name, config) or state_groups(config, 1) is not None:
        return stored_copy_bytes(config)
    return tier_block_bytes(name, config)


def tier_stored_bytes(name: str, config: Config) -> tuple[int, int]:
    """What ``new_tier``'s ``stored`` takes for lower tier ``name``: (0, 0), the cache's bytes, unless it stores
    distinct pages (``tier_block_bytes``, ``tier_copy_bytes``)."""
    return (tier_block_bytes(name, config), tier_copy_bytes(name, config)) if _distinct(name, config) else (0, 0)


def tier_slot_bytes(name: str, config: Config) -> int:
    """Bytes of lower tier ``name`` one key (a block, or a copy) takes of its capacity: a block's stored bytes; in an
    EIC of distinct pages, where a Gated DeltaNet state (every rank's) may exceed a block (its distinct pages), the
    larger of the two, so the tier never holds more bytes than its capacity (the store itself keeps objects of any
    size: the slot is kvsim's, as for ``check_state_fits_slot``)."""
    from sim.serving.state_groups import state_groups

    block = tier_block_bytes(name, config)
    if not _distinct(name, config) or state_groups(config, 1) is None:
        return block
    return max(block, tier_copy_bytes(name, config))


def lower_tier_blocks(capacity_gib: float, config: Config, tier: str | None = None) -> int:
    """KV blocks that ``capacity_gib`` of lower tier ``tier`` holds (``tier_slot_bytes`` each; None: a tier of every
    rank's page, ``stored_block_bytes``)."""
    return int(capacity_gib * GIB // (stored_block_bytes(config) if tier is None else tier_slot_bytes(tier, config)))


def configured_tier_blocks(name: str, config: Config) -> int:
    """KV blocks of the configured lower tier ``name`` (0: off); a capacity that is neither 0 nor a block is refused
    (such a tier was left out unsaid)."""
    capacity = getattr(config.cache.tiers, name).capacity_gib
    if capacity < 0:
        raise ConfigError(f"config key 'cache.tiers.{name}.capacity_gib' must be >= 0, got {capacity}")
    blocks = lower_tier_blocks(capacity, config, name)
    if capacity > 0 and blocks < 1:
        raise ConfigError(f"config key 'cache.tiers.{name}.capacity_gib'={capacity:g} holds no KV block (one is "
                          f"{tier_slot_bytes(name, config):,} bytes): give 0 for no {name} tier")
    return blocks


def check_lower_tiers(config: Config) -> None:
    """Each configured lower tier holds at least one block (``configured_tier_blocks``), checked before a trace loads
    where the config alone gives the block's size: a tier of 1e-9 GiB was refused only after the workload had been
    generated or read (seconds at the smoke preset, minutes for a large trace). A trace whose own block ids set the
    block size (``workload.block_mismatch: trace``) is left to the run, which knows its size."""
    if config.workload.trace is not None and config.workload.block_mismatch == "trace":
        return
    for name in TIER_NAMES:
        if name != "hbm":
            configured_tier_blocks(name, config)


def hbm_capacity_blocks(config: Config) -> int:
    """KV blocks that fit in one GPU's HBM (vLLM's way): ``num_gpu_blocks`` if set, else
    ``cache.tiers.hbm.capacity_gib`` if set, else vLLM 0.33's budget (``sim.serving.memory_profile``: the
    device's reported memory × utilisation − weights − the profile run's activations − non-torch memory − the
    CUDA graphs' estimate) / block bytes."""
    from sim.serving.memory_profile import check_activations_fit, check_fits, memory_budget, note_given_capacity

    tier, block = config.cache.tiers.hbm, kv_block_bytes(config)
    if config.serving.num_gpu_blocks is not None:
        return note_given_capacity(config, config.serving.num_gpu_blocks, block, "serving.num_gpu_blocks")
    if tier.capacity_gib > 0:
        blocks = int(tier.capacity_gib * GIB // block)
        if blocks < 1:
            raise ConfigError(f"config key 'cache.tiers.hbm.capacity_gib'={tier.capacity_gib:g} holds no KV block "
                              f"(one is {block:,} bytes)")
        return note_given_capacity(config, blocks, block, "cache.tiers.hbm.capacity_gib")
    budget = memory_budget(config)
    check_fits(config, budget)
    check_activations_fit(config, budget)
    free = budget.kv_bytes
    blocks = int(free // block) if free > 0 else 0
    if blocks < 1:  # (a cache of no block: every tier below it would be read through nothing)
        # a given block size is named: at serving.block_size=1000000 the block (131 GB) was the cause, while the
        # message advised only a larger TP or utilization
        size = config.serving.block_size
        given = "" if size is None else f" of 'serving.block_size'={size} tokens"
        fix = "serving.tensor_parallel_size or the utilization" + ("" if size is None else ", or lower the block size")
        raise ConfigError(f"{config.hardware.gpu} leaves {free / GIB:.3g} GiB beside model {config.model}'s weights "
                          f"({budget.weights / GIB:.3g} GiB), activations and CUDA graphs at gpu_memory_utilization="
                          f"{config.serving.gpu_memory_utilization}, less than one KV block{given} ({block:,} bytes); "
                          f"raise {fix}")
    return blocks


def tier_from_config(arena: TierArena, name: str, tier_cfg: TierConfig, policy: str, capacity: int,
                     next_use: np.ndarray | None = None, predicted: np.ndarray | None = None, lanes: int = 1,
                     stored: tuple[int, int] = (0, 0)) -> Tier:
    """A tier with ``tier_cfg``'s bandwidths and latency (and policy, if it names one); ``lanes``: the links an
    instance reads it over (its TP degree, for a lower tier); ``stored``: ``tier_stored_bytes``."""
    for key in ("read_gbps", "write_gbps"):
        if getattr(tier_cfg, key) <= 0:
            raise ConfigError(f"config key 'cache.tiers.{name}.{key}' must be positive, got {getattr(tier_cfg, key)}")
    shared = tier_cfg.shared_read_gbps
    return new_tier(arena, name, tier_cfg.policy or policy, capacity, tier_cfg.read_gbps * 1e9,
                    tier_cfg.write_gbps * 1e9, tier_cfg.latency_us * 1e-6, next_use, predicted,
                    shared_read_bw=None if shared is None else shared * 1e9, lanes=lanes, stored=stored)


def build_tiers(config: Config, policy: str, next_use: np.ndarray | None = None,
                capacity_blocks: int | None = None, predicted: np.ndarray | None = None,
                arena: TierArena | None = None, top: bool = True) -> list[Tier]:
    """The enabled tiers, top down, in ``arena`` (a fresh one if None). ``capacity_blocks`` makes a
    single HBM tier of that size; ``top=False`` leaves out HBM (serving: one per instance)."""
    specs: list[tuple[str, TierConfig, int]] = []
    if capacity_blocks is not None:
        if capacity_blocks <= 0:
            raise ConfigError(f"--capacity-blocks must be positive, got {capacity_blocks}")
        specs.append(("hbm", config.cache.tiers.hbm, capacity_blocks))
    else:
        for name in TIER_NAMES:
            tier_cfg: TierConfig = getattr(config.cache.tiers, name)
            if name == "hbm" and tier_cfg.capacity_gib < 0:  # (a lower tier's: configured_tier_blocks)
                raise ConfigError(f"config key 'cache.tiers.hbm.capacity_gib' must be >= 0, got {tier_cfg.capacity_gib}")
            if name == "hbm" and not top:
                continue
            blocks = hbm_capacity_blocks(config) if name == "hbm" else configured_tier_blocks(name, config)
            if blocks > 0:
                specs.append((name, tier_cfg, blocks))
    arena = arena if arena is not None else TierArena(future=next_use)
    tiers = [tier_from_config(arena, name, tier_cfg, policy, blocks, next_use, predicted,
                              lanes=1 if name == "hbm" else read_lanes(config),
                              stored=(0, 0) if name == "hbm" else tier_stored_bytes(name, config))
             for name, tier_cfg, blocks in specs]
    for tier in tiers:
        if tier.name != "hbm":  # a demotion writes a block: a write a read may wait for (``Tier.reserve_read``)
            tier.write_chunk = tier_block_bytes(tier.name, config)
    return tiers
