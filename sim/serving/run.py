"""Serving runs: single-node (aggregated workers) and prefill/decode-disaggregated, on one event engine.

Both modes are configurations of the same parts: instances (``sim.serving.instance``), a router,
per-instance HBM tiers over shared lower tiers (the node's DRAM/SSD and the rack EIC),
and, for PD, links that carry KV from prefill to decode instances. Each role's instances take what depends on their
TP from their role's shape (``sim.serving.roles``: PD's prefill and decode TPs may differ), and a KV transfer's bytes
from vLLM's rank mapping between the two (``sim.serving.tp_transfer``). Requests no instance could run are skipped
beforehand (``sim.serving.admission.admit``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from sim.cache.access import (
    CacheStream,
    block_id_space,
    learned_predictions,
    next_use_index,
    policies_in_use,
    run_semantics,
)
from sim.cache.arena import TierArena
from sim.cache.multitier import build_cache
from sim.cache.policies import POLICIES
from sim.cache.tiers import (
    TIER_NAMES,
    Tier,
    build_tiers,
    stored_block_bytes,
    stored_copy_bytes,
    tier_from_config,
    tier_traffic,
)
from sim.config import Config
from sim.config_rules import pd_node_fits, single_node_fits
from sim.errors import ConfigError
from sim.report.document import NO_REPEAT_PREFIX_CACHE, RunResult
from sim.report.metrics import RequestTable, WeightedSamples, distribution, request_columns, serving_metrics
from sim.serving.align_state_manager import AlignStateKVCacheManager
from sim.serving.attention_backend import check_block_size
from sim.serving.cudagraph import cudagraph_sizes
from sim.serving.data_parallel import LockstepGroup
from sim.serving.decode_queues import DecodeQueues
from sim.serving.engine import Engine
from sim.serving.engine_limits import max_model_len
from sim.serving.hybrid_kv_cache_manager import HybridKVCacheManager
from sim.serving.instance import DECODE, PREFILL, UNIFIED, Instance, Job
from sim.serving.kv_cache_manager import KVCacheManager
from sim.serving.kv_groups import hybrid_manager_groups
from sim.serving.moe import sequence_parallel_size
from sim.serving.network import Link, network_model
from sim.serving.pd_transfers import PDTransfers
from sim.serving.roles import kv_link_read, kv_transfer_plan, role_shapes
from sim.serving.routers import CacheAwareThresholds, router
from sim.serving.run_notes import note_early_turns, note_sessionless_affinity
from sim.serving.state_groups import check_state_model, exports_checkpoints, state_groups
from sim.serving.state_kv_cache_manager import StateKVCacheManager
from sim.serving.state_transfer import prefill_tokens, state_transfer_bytes
from sim.serving.timeline import Timeline
from sim.serving.utilization import batch_metrics, instance_metrics, time_share, utilization_basis, work_counter
from sim.specs import model_spec
from trace.continuations import GeneratedBlocks, check_outputs_in_next_turn_read, generated_blocks
from trace.request import Trace


def check_serving_settings(config: Config) -> None:
    """Refuse the cache settings only the cache-only replay models (the serving modes would ignore them)."""
    if run_semantics(config, "single") != "prefix":  # (every serving mode's)
        raise ConfigError("serving modes use prefix semantics; cache.access_semantics=plain applies to --cache-only")
    for key, value in (("admission", config.cache.admission), ("prefetch", config.cache.prefetch)):
        if value != "none":
            raise ConfigError(f"config key 'cache.{key}'={value} applies to --cache-only; the serving modes do not "
                              "model it (set it to none)")
    if config.cache.capacity_blocks is not None:  # as the --capacity-blocks flag is refused in these modes
        raise ConfigError(f"config key 'cache.capacity_blocks'={config.cache.capacity_blocks} applies to --cache-only; the "
                          "serving modes size HBM from serving.num_gpu_blocks or GPU memory (set it to null)")
    check_block_size(config)  # (sim.serving.attention_backend)



class ServingRun(PDTransfers):
    """Builds the instances for a mode, feeds the trace's arrivals and fills the request table."""

    spans_tiers = False  # whether an instance's cache spans its tiers with one policy (PD, a cluster: shared tiers)

    def __init__(self, trace: Trace, config: Config, mode: str, progress: bool = False, pd: bool | None = None):
        check_serving_settings(config)
        # (again: a trace's own block size may have become the run's)
        given = trace.provenance.block_ids == "hash_ids" and trace.provenance.block_conversion is None  # (not split)
        # (--cluster --pd: a Gated DeltaNet hybrid's transfers as PD's)
        check_state_model(config, "pd" if pd else mode, trace.provenance.block_tokens if given else None)
        self.trace, self.config, self.mode = trace, config, mode
        self._pd = mode == "pd" if pd is None else pd  # prefill/decode pools (cluster: --cluster --pd)
        note_sessionless_affinity(trace, config, config.pd.router if mode == "pd" else config.cluster.router)
        # each role's instances at their TP (PD: prefill and decode may differ; sim.serving.roles)
        self.kv_over_gpu_link = kv_link_read(config, mode, self._pd)  # (--cluster --pd on an NVLink board)
        self.shapes = role_shapes(config, self._pd, self.kv_over_gpu_link)
        front = self.shapes[PREFILL if self._pd else UNIFIED]
        self.serving = front.serving  # the engine's settings, step limits resolved as vLLM does (every role's)
        self.compute = front.compute  # the front instances' (the cluster's routers estimate prefill rates with it)
        self.engine = Engine()
        self.table = RequestTable(trace.arrival_s, trace.input_tokens, np.maximum(trace.output_tokens, 1))
        self.itl = WeightedSamples()  # token gaps with multiplicities
        self.completed = 0
        # PD: how a block crosses from a prefill rank to decode ranks (the busiest rank's bytes time it)
        self.transfer = kv_transfer_plan(config, front, self.shapes.get(DECODE, front))
        # the lower tiers store blocks as the front role's instances do (PD roles may differ in TP: sim.serving.roles)
        self.store_config = front.config
        self.stored_bytes = stored_block_bytes(front.config)  # every rank's page: a block in the tiers' byte counts
        policy = config.cache.policy
        kinds = [POLICIES[p] for p in policies_in_use(config, policy) if p in POLICIES]
        # A trace whose blocks never repeat cannot hit: skip cache bookkeeping (same timing and hits).
        reusable = trace.num_unique_blocks < trace.num_accesses
        self.prefix_caching = config.serving.enable_prefix_caching and reusable
        self.kv_groups = hybrid_manager_groups(config)
        # Every tier of the run (each instance's HBM, the shared lower tiers) lives in one arena, whose arrays are
        # sized by the block-id space: the trace's, and the generated blocks' that no later prompt holds.
        self.generated = self._generated_blocks()
        # (not kept: its stream, when a policy reads one, is the trace's ids built flat, for this setup only)
        stream = CacheStream(trace, self.generated)
        self.num_blocks = stream.num_ids
        self.stream_offsets = stream.offsets
        next_use = next_use_index(stream.blocks) if any(k.needs_future for k in kinds) else None
        # (serving looks blocks up by prefix semantics: the learned policy scores its experts on prefix hits)
        self._learned_model = self._predicted = None
        if any(k.needs_predictions for k in kinds):
            self._learned_model, predicted = learned_predictions(trace, config)
            self._predicted = stream.classes(predicted).with_requests(stream.blocks, stream.offsets,
                                                                     stream.chain_next())
        # an instance's private HBM among several sees only its own requests: its model expert never leads there
        self._hbm_predicted = (self._predicted.private() if self._predicted is not None and self._several_instances()
                               else self._predicted)
        # a hybrid model's sliding groups keep their own copies of prompt blocks, keyed past the trace's ids
        self.states = states = state_groups(config)  # (a Gated DeltaNet hybrid's groups cache states too)
        copies = 1 + (self.kv_groups.sliding_groups if self.kv_groups is not None else
                      states.state_groups if states is not None and config.serving.enable_prefix_caching else 0)
        self.arena = TierArena(future=next_use, max_keys=self.num_blocks * copies)
        self._next_use = next_use
        # a policy reads the stream positions blocks enter the cache at (Belady's next uses, learned's classes)
        self.reads_positions = next_use is not None or self._predicted is not None
        self.shared_tiers = self._lower_tiers()
        self.shared_blocks = reusable  # else no two requests hold the same block: pools only count
        self.prefix_cache_note = ("on" if self.prefix_caching else "off: serving.enable_prefix_caching is false"
                                  if not config.serving.enable_prefix_caching else NO_REPEAT_PREFIX_CACHE)
        # PD: each decode instance's requests bound to it, and those prefilled waiting for its memory
        self.decode_queues = DecodeQueues(self.serving.block_size, config.pd.decode_router,
                                          CacheAwareThresholds.of(config.cluster))
        self.in_transfer = 0  # PD: requests whose KV is on its way to a decode instance
        self.state_bytes = state_transfer_bytes(states) if states is not None else 0  # (PD: a request's states)
        self.groups: dict = {}  # data-parallel groups by ``_group_key``
        self._build()
        self.progress = tqdm(total=len(trace), desc=mode, unit="req", disable=not progress, leave=False)
        spec = model_spec(config.model)
        self.model_layers = spec.num_layers
        self.last_layer_slides = spec.last_layer_slides  # (a hybrid's: its layerwise transfer's last message)
        self.instances = [*self.front, *self.decode]
        span = float(trace.arrival_s[-1] - trace.arrival_s[0]) if len(trace) else 0.0
        self.timeline = Timeline(self.engine, self.instances, float(trace.arrival_s[0]) if len(trace) else 0.0, span,
                                 # (a request whose KV is in transfer waits for it, as vLLM counts one waiting
                                 # for remote KV among its waiting requests)
                                 extra_queued=(lambda: self.decode_queues.waiting + self.in_transfer) if self._pd
                                 else (lambda: 0))

    def _generated_blocks(self) -> GeneratedBlocks | None:
        """The ids of the blocks each request generates, which vLLM caches as it caches prompt blocks (the next turn
        of a conversation finds them; under the hybrid manager its full group keeps them, a sliding group only at a
        junction: ``HybridKVCacheManager``); none when nothing is cached."""
        trace, workload = self.trace, self.config.workload
        if self.config.serving.enable_prefix_caching:  # (off: nothing is cached, and the mode's rules name the key)
            check_outputs_in_next_turn_read(trace, workload)
        if not self.prefix_caching:
            return None
        return generated_blocks(trace, trace.provenance.block_tokens, block_id_space(trace),
                                workload.outputs_in_next_turn)

    def _lower_tiers(self) -> list:
        """The DRAM/SSD/EIC tiers every instance of a single-node or PD run shares (read over a front instance's lanes;
        each instance reads and writes over its own: ``_instance``, whose links their bandwidth shares sum)."""
        return build_tiers(self.store_config, self.config.cache.policy, next_use=self._next_use, predicted=self._predicted,
                           arena=self.arena, top=False)

    def _build(self) -> None:
        """The instances and the router: every instance up front (single: ``serving.num_instances``
        workers; PD: ``pd.num_prefill`` + ``pd.num_decode``). The cluster builds them lazily."""
        config = self.config
        if self.mode == "pd":
            pd_node_fits(config)
            self.prefill = [self._instance(i, PREFILL) for i in range(config.pd.num_prefill)]
            self.decode = [self._instance(config.pd.num_prefill + i, DECODE) for i in range(config.pd.num_decode)]
            self.front = self.prefill
            self.route = router(config.pd.router, "pd.router", config.cluster)
            model = network_model(config.network)
            # each instance's (busiest rank's) link, out of a prefill instance and into a decode instance: a decode
            # instance fed by several prefill instances at once shares its own (incast), as a cluster's NIC does
            self.egress = [Link(self.engine, model, shared=config.network.contention) for _ in self.prefill]
            self.ingress = [Link(self.engine, model, shared=config.network.contention) for _ in self.decode]
        else:
            single_node_fits(config)
            # one instance owns the lower tiers: one policy spans its hierarchy (``sim.cache.span``); several share
            # them, each with a policy per tier
            self.spans_tiers = config.serving.num_instances == 1
            self.front = [self._instance(i, UNIFIED) for i in range(config.serving.num_instances)]
            self.decode = []
            self.route = router(config.cluster.router, "cluster.router", config.cluster)

    def _several_instances(self) -> bool:
        """Whether the run has more than one instance, each with its own HBM."""
        return self._pd or self.config.serving.num_instances > 1

    def _instance(self, index: int, role: str, lower: list | None = None) -> Instance:
        """An instance of ``role`` (at its TP: ``self.shapes``) with its own HBM tier over ``lower`` tiers (default:
        the run's shared ones)."""
        shape = self.shapes[role]
        hbm = tier_from_config(self.arena, "hbm", self.config.cache.tiers.hbm, self.config.cache.policy,
                               shape.usable_blocks, self._next_use, self._hbm_predicted)
        lower = self.shared_tiers if lower is None else lower
        # it writes into them over its own links, and (a front instance: PD's prefill) loads from them
        for tier in lower:
            tier.add_sharer(shape.lanes, reads=role == (PREFILL if self._pd else UNIFIED))
        # a Gated DeltaNet hybrid's states, keyed past the trace's ids, count their own bytes in the tiers
        states = self.states is not None and self.config.serving.enable_prefix_caching
        cache = build_cache([hbm, *lower], self.stored_bytes,
                            inclusive=self.config.cache.inclusion == "inclusive",
                            track_positions=self.reads_positions,
                            num_blocks=self.num_blocks, copy_from=self.num_blocks if states else None,
                            copy_bytes=stored_copy_bytes(self.store_config) if states else None,
                            read_copies=shape.read_copies, span=self.spans_tiers)
        inst = Instance(index, role, self.engine, shape.serving, shape.usable_blocks, cache, shape.compute, self.table,
                        self.itl, on_prefill_done=self._prefill_done, on_finish=self._finished,
                        prefix_caching=self.prefix_caching, shared_blocks=self.shared_blocks,
                        kv_manager=self._kv_manager(), on_drained=self._start_transfers if role == DECODE else None)
        inst.kv.read_lanes = shape.lanes  # its ranks read a lower-tier block's pages side by side
        if self.reads_positions:  # (freed shared prefixes at their latest use: ``KVCacheManager.free``)
            inst.kv.latest_use = {}
        inst.work.index_topk = model_spec(self.config.model).index_topk  # (sparse attention: utilization's bound)
        dp = self.config.serving.data_parallel_size
        if dp > 1:
            key = self._group_key(index)
            if key not in self.groups:
                graphs = cudagraph_sizes(shape.serving, self.config.hardware.gpu)
                self.groups[key] = LockstepGroup(self.engine, dp, graphs, sequence_parallel_size(
                    shape.serving.tensor_parallel_size, shape.serving.enable_expert_parallel))
            self.groups[key].add(inst)
        return inst

    def _kv_manager(self):
        """The instances' KV-cache manager: vLLM's hybrid one for a hybrid model with it on, else the one group's."""
        groups, serving, states = self.kv_groups, self.serving, self.states
        if states is not None and serving.enable_prefix_caching:  # a Gated DeltaNet hybrid in vLLM's align mode
            return partial(AlignStateKVCacheManager, state_groups=states.state_groups, key_offset=self.num_blocks,
                           checkpoints=exports_checkpoints(self.config),
                           max_prefill_tokens=serving.max_num_batched_tokens)
        if states is not None:  # a Gated DeltaNet hybrid: a block in each state group a request
            return partial(StateKVCacheManager, state_blocks=states.state_groups)
        if groups is None:
            return KVCacheManager
        return partial(HybridKVCacheManager, groups=groups, key_offset=self.num_blocks,
                       admission_cap=groups.admission_cap(max_model_len(self.config), serving.max_num_batched_tokens,
                                                          serving.async_scheduling),
                       async_scheduling=serving.async_scheduling)

    def _group_key(self, index: int):
        """Which data-parallel group instance ``index`` belongs to: D consecutive instances of one pool (PD's
        prefill pool comes first and is a whole number of groups)."""
        return index // self.config.serving.data_parallel_size

    # ------------------------------------------------------------- arrivals

    def _prompt(self, i: int, tokens: int) -> tuple[list[int] | range, np.ndarray | None]:
        """Request ``i``'s prompt block ids (a list, or a range when no block can be shared: only the count matters)
        and, when shared, their array: all of them, or, for fewer ``tokens`` than its prompt, those tokens' blocks."""
        trace = self.trace
        lo, hi = int(trace.block_offsets[i]), int(trace.block_offsets[i + 1])
        if tokens < int(self.table.input_tokens[i]):
            hi = min(hi, lo + -(-tokens // self.serving.block_size))
        # the trace's int32 ids widened, per request: the cache's entry points take int64 keys (a request's chain while
        # it is in flight, not an int64 copy of the trace's ids for the run)
        chain = trace.blocks(i)[:hi - lo].astype(np.int64) if self.shared_blocks else None
        return (chain.tolist() if chain is not None else range(lo, hi)), chain

    def _arrive(self, i: int) -> None:
        trace, table = self.trace, self.table
        # PD, a Gated DeltaNet hybrid: the prefill side computes the prompt short of its last token (state_transfer)
        prompt = int(table.input_tokens[i])
        prompt = prefill_tokens(prompt) if self._pd and self.states is not None else prompt
        blocks, chain = self._prompt(i, prompt)
        job = Job(i, prompt, int(table.output_tokens[i]), blocks, int(self.stream_offsets[i]), target=prompt,
                  chain=chain)
        if self.generated is not None:
            job.generated_ids = self.generated.of(i)
        front = self._dispatch(job, job.prompt_ids, i)
        if self._pd:  # its decode instance is bound now, with its prefill instance (``sim.serving.decode_queues``)
            dest = self._decode_for(front, job)
            self.table.decode_instance[i] = dest.index
            self.decode_queues.bind(dest, job)
        front.submit(job)
        if i + 1 < len(trace):
            self.engine.at(float(trace.arrival_s[i + 1]), self._arrive, i + 1, priority=-1)

    def _dispatch(self, job: Job, keys, i: int) -> Instance:
        """The instance the router picks for a new request (``_arrive`` submits it there)."""
        return self.route(self.front, keys, i, int(self.trace.session_id[i]))

    def _finished(self, job: Job) -> None:
        self.completed += 1
        self.progress.update(1)
        if self._pd:  # its decode instance freed its blocks (and, under pull, a sequence slot)
            self._start_transfers(self._decode_of(job))

    # ------------------------------------------------------------------ run

    def run(self) -> RunResult:
        if len(self.trace):
            self.engine.at(float(self.trace.arrival_s[0]), self._arrive, 0, priority=-1)
            self.timeline.begin()
        self.engine.run()
        self.progress.close()
        if self.completed != len(self.trace):
            raise RuntimeError(f"{len(self.trace) - self.completed} requests never completed (scheduler stall)")
        note_early_turns(self.generated, self.table)
        return RunResult(name=self.mode, metrics=self.metrics(), overrides={})

    def lower_tier_copies(self) -> list[Tier]:
        """Every lower tier of the run (single node and PD: the DRAM/SSD/EIC its instances share)."""
        return self.shared_tiers

    def _hit_metrics(self) -> dict[str, Any]:
        """Prefix-cache hits of the front instances, counted once per request at admission."""
        front_stats = [inst.kv.stats for inst in self.front]
        accesses = sum(s.accesses for s in front_stats)
        hits = sum(s.hits for s in front_stats)
        tier_hits = {name: 0 for name in TIER_NAMES}
        names = ["hbm"] + [t.name for t in self.shared_tiers]
        for s in front_stats:
            for level, count in s.tier_hits.items():
                tier_hits[names[level]] += count
        prompt_tokens = sum(s.prompt_tokens for s in front_stats)
        return {
            "accesses": accesses,
            "hits": hits,
            "hit_ratio": hits / accesses if accesses else 0.0,
            "token_hit_ratio": sum(s.cached_tokens for s in front_stats) / prompt_tokens if prompt_tokens else 0.0,
            "tier_hit_ratio": {k: v / accesses if accesses else 0.0 for k, v in tier_hits.items()},
        }

    def metrics(self) -> dict[str, Any]:
        table = self.table
        metrics = serving_metrics(table, self.itl, self.config.slo)
        instances = self.instances
        makespan = metrics["makespan_s"]
        metrics.update({"prefix_cache": self.prefix_cache_note, "access_semantics": "prefix", **self._hit_metrics()})
        shapes = self.shapes
        one = len({id(shape) for shape in shapes.values()}) == 1  # (PD at two TPs: each role's)
        metrics.update({
            "instances": {
                "count": len(instances),
                "kv_blocks_each": next(iter(shapes.values())).hbm_blocks if one else
                {role: shape.hbm_blocks for role, shape in shapes.items()},
                **({} if one else {"tensor_parallel_size": {role: shape.tensor_parallel_size
                                                            for role, shape in shapes.items()}}),
                # the step limits each engine ran with (vLLM's defaults for the GPU where the config leaves them null)
                "max_num_seqs": self.serving.max_num_seqs,
                "max_num_batched_tokens": self.serving.max_num_batched_tokens,
                "block_size": self.serving.block_size,  # vLLM's for the model and GPU where the config leaves it null
                "busy_fraction_mean": time_share(float(np.mean([i.work.busy_s for i in instances])), makespan),
                "steps": sum(i.work.steps for i in instances),
                "utilization_basis": utilization_basis(self.config),
                **instance_metrics(instances, {role: work_counter(shape.config) for role, shape in shapes.items()},
                                   makespan, float(table.arrival.min()) + makespan),
            },
            "batch": batch_metrics(instances),
            "tiers": tier_traffic(self.lower_tier_copies(), makespan),
            "scheduling_delay_s": distribution(table.scheduled - table.arrival),
            "timeseries": self.timeline.series(table),
        })
        if self._learned_model is not None:  # (as a cache-only report: the model judged, and whom its copies follow)
            from sim.cache.policies.learned import copies_summary  # (imported with the policy: ``POLICIES``)

            metrics["learned_model"] = self._learned_model.describe()
            metrics["learned_policy"] = copies_summary(self._cache_policies())
        return metrics

    def _cache_policies(self) -> list:
        """Every eviction policy object of the run's caches: an instance's spanning one, else its tiers' (shared
        lower tiers' objects once per instance)."""
        policies = []
        for inst in [*self.front, *self.decode]:
            cache = inst.kv.cache
            spanned = getattr(cache, "spanned", None)
            policies += [spanned.policy] if spanned is not None else list(getattr(cache, "policies", ()))
        return policies


def run_serving(trace: Trace, config: Config, mode: str, progress: bool = False) -> tuple[RunResult, RequestTable]:
    """Simulate ``mode`` ("single" or "pd") over the trace; the run's metrics and per-request table."""
    run = ServingRun(trace, config, mode, progress)
    result = run.run()
    result.per_request = request_columns(run.table)
    return result, run.table
