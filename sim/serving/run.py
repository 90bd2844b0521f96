"""Serving runs: single-node (aggregated workers) and prefill/decode-disaggregated, on one event engine.

Both modes are configurations of the same parts: instances (``sim.serving.instance``), a router,
per-instance HBM tiers over shared lower tiers (the node's DRAM/SSD and the rack EIC),
and, for PD, links that carry KV from prefill to decode instances.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from tqdm import tqdm

from sim.cache.access import access_semantics, block_id_space, learned_predictions, next_use_index
from sim.cache.arena import TierArena
from sim.cache.multitier import build_cache
from sim.serving.compute import compute_model
from sim.config import Config
from sim.serving.engine import Engine
from sim.errors import ConfigError
from sim.serving.instance import DECODE, PREFILL, UNIFIED, Instance, Job
from sim.report.metrics import RequestRecord, serving_metrics
from sim.serving.network import Link, network_model
from sim.cache.policies import POLICIES
from sim.report.document import RunResult
from sim.serving.routers import router
from sim.cache.tiers import TIER_NAMES, build_tiers, hbm_capacity_blocks, kv_block_bytes, tier_from_config
from sim.specs import model_spec
from trace.request import Trace


class ServingRun:
    """Builds the instances for a mode, feeds the trace's arrivals and collects records."""

    def __init__(self, trace: Trace, config: Config, mode: str, progress: bool = False):
        if access_semantics(config, "prefix") != "prefix":
            raise ConfigError("serving modes use prefix semantics; cache.access_semantics=plain applies to --cache-only")
        self.trace, self.config, self.mode = trace, config, mode
        self.engine = Engine()
        self.records: list[RequestRecord] = []
        self.itl: list[float] = []
        self.block_bytes = kv_block_bytes(config)
        policy = config.cache.policy
        kind = POLICIES.get(policy)
        next_use = next_use_index(trace.access_stream()) if kind and kind.needs_future else None
        self._predicted = learned_predictions(trace, config)[1] if kind and kind.needs_predictions else None
        # Every tier of the run (each instance's HBM, the shared lower tiers) lives in one arena,
        # whose arrays are sized by the trace's block-id space.
        self.num_blocks = block_id_space(trace)
        self.arena = TierArena(future=next_use, max_keys=self.num_blocks)
        self.shared_tiers = build_tiers(config, policy, next_use=next_use, predicted=self._predicted, arena=self.arena,
                                        top=False)
        self.hbm_blocks = hbm_capacity_blocks(config)
        # A trace whose blocks never repeat cannot hit: skip cache bookkeeping (same timing and hits).
        reusable = trace.num_unique_blocks < trace.num_accesses
        self.prefix_caching = config.serving.enable_prefix_caching and reusable
        self.prefix_cache_note = ("on" if self.prefix_caching else "off: serving.enable_prefix_caching is false"
                                  if not config.serving.enable_prefix_caching else "off: no block repeats in this trace")
        self._next_use = next_use
        compute = compute_model(config)
        serving = config.serving
        if mode == "pd":
            if config.pd.num_prefill <= 0 or config.pd.num_decode <= 0:
                raise ConfigError("pd.num_prefill and pd.num_decode must be positive")
            self.prefill = [self._instance(i, PREFILL, compute) for i in range(config.pd.num_prefill)]
            self.decode = [self._instance(config.pd.num_prefill + i, DECODE, compute)
                           for i in range(config.pd.num_decode)]
            self.front = self.prefill
            self.route = router(config.pd.router, "pd.router")
            model = network_model(config.network)
            self.links = [Link(self.engine, model, shared=config.network.contention) for _ in self.prefill]
            self.pending: deque[Job] = deque()  # prefilled, waiting for decode memory
            self.tp = serving.tensor_parallel_size
        else:
            if serving.num_instances <= 0:
                raise ConfigError("serving.num_instances must be positive")
            self.front = [self._instance(i, UNIFIED, compute) for i in range(serving.num_instances)]
            self.decode = []
            self.route = router(config.cluster.router, "cluster.router")
        self.progress = tqdm(total=len(trace), desc=mode, unit="req", disable=not progress, leave=False)
        self.model_layers = model_spec(config.model).num_layers

    def _instance(self, index: int, role: str, compute) -> Instance:
        hbm = tier_from_config(self.arena, "hbm", self.config.cache.tiers.hbm, self.config.cache.policy,
                               self.hbm_blocks, self._next_use, self._predicted)
        cache = build_cache([hbm, *self.shared_tiers], self.block_bytes,
                            inclusive=self.config.cache.inclusion == "inclusive",
                            track_positions=self._next_use is not None or self._predicted is not None,
                            num_blocks=self.num_blocks)
        return Instance(index, role, self.engine, self.config.serving, self.hbm_blocks, cache, compute,
                        on_prefill_done=self._prefill_done, on_finish=self._finished, itl_sink=self.itl,
                        prefix_caching=self.prefix_caching)

    # ------------------------------------------------------------- arrivals

    def _arrive(self, i: int) -> None:
        trace = self.trace
        record = RequestRecord(i, float(trace.arrival_s[i]), int(trace.input_tokens[i]), max(1, int(trace.output_tokens[i])))
        lo = int(trace.block_offsets[i])
        chain = trace.blocks(i)
        job = Job(record, chain.tolist(), chain, lo, target=record.input_tokens)
        self.route(self.front, chain, i).submit(job)
        if i + 1 < len(trace):
            self.engine.at(float(trace.arrival_s[i + 1]), self._arrive, i + 1, priority=-1)

    def _finished(self, job: Job) -> None:
        self.records.append(job.record)
        self.progress.update(1)
        if self.mode == "pd":
            self._start_transfers()

    # ------------------------------------------------------------------ PD

    def _prefill_done(self, job: Job) -> None:
        self.pending.append(job)
        self._start_transfers()

    def _start_transfers(self) -> None:
        """Send prefilled KV, oldest first, to the least-loaded decode instance that has room."""
        while self.pending:
            job = self.pending[0]
            targets = sorted(self.decode, key=lambda d: (d.used / d.total_blocks, d.load, d.index))
            if self.config.pd.transfer == "pull":  # the decode side pulls only when it has a sequence slot
                targets = [d for d in targets if len(d.running) + len(d.ready) < d.max_seqs]
            prefill_instance = self.prefill[job.record.instance - self.prefill[0].index]
            source_job = job
            dest_job = Job(job.record, job.blocks, job.chain, job.position, target=job.record.input_tokens)
            for dest in targets:
                blocks = dest.reserve(dest_job)
                if blocks is not None:
                    break
            else:
                return  # no decode memory: retry when a decode instance frees blocks
            self.pending.popleft()
            dest_job.generated = 0
            nbytes = blocks * self.block_bytes
            job.record.kv_transfer_bytes = nbytes * self.tp
            job.record.decode_instance = dest.index
            link = self.links[prefill_instance.index]
            if self.config.pd.transfer == "layerwise":
                self._layerwise(link, nbytes, prefill_instance, source_job, dest, dest_job)
            else:
                link.send(nbytes, lambda _d, s=source_job, p=prefill_instance, d=dest, j=dest_job: self._arrived(p, s, d, j))

    def _layerwise(self, link: Link, nbytes: int, src: Instance, job: Job, dest: Instance, dest_job: Job) -> None:
        """Layer i's KV is sent while layer i+1 computes: only the part the compute does not hide is exposed."""
        layers = self.model_layers
        prefill_compute = max(0.0, job.record.prefill_done - job.record.scheduled - job.record.kv_load)
        per_layer_compute = prefill_compute / layers
        hidden_s = (layers - 1) * per_layer_compute  # transfer time the compute of layers 2..L can hide
        full = link.model.isolated_time(nbytes)
        exposed = max(full / layers, full - hidden_s)
        self.engine.after(exposed, self._arrived, src, job, dest, dest_job)
        link.bytes_sent += nbytes

    def _arrived(self, src: Instance, job: Job, dest: Instance, dest_job: Job) -> None:
        job.record.kv_ready = self.engine.now
        src.release(job)
        src._kick()
        dest.submit(dest_job)

    # ------------------------------------------------------------------ run

    def run(self) -> RunResult:
        if len(self.trace):
            self.engine.at(float(self.trace.arrival_s[0]), self._arrive, 0, priority=-1)
        self.engine.run()
        self.progress.close()
        if len(self.records) != len(self.trace):
            raise RuntimeError(f"{len(self.trace) - len(self.records)} requests never completed (scheduler stall)")
        self.records.sort(key=lambda r: r.request_id)
        return RunResult(name=self.mode, metrics=self.metrics(), overrides={})

    def metrics(self) -> dict[str, Any]:
        metrics = serving_metrics(self.records, np.array(self.itl), self.config.slo)
        instances = [*self.front, *self.decode]
        front_stats = [inst.stats for inst in self.front]
        accesses = sum(s.accesses for s in front_stats)
        hits = sum(s.hits for s in front_stats)
        tier_hits = {name: 0 for name in TIER_NAMES}
        names = ["hbm"] + [t.name for t in self.shared_tiers]
        for s in front_stats:
            for level, count in s.tier_hits.items():
                tier_hits[names[level]] += count
        prompt_tokens = sum(s.prompt_tokens for s in front_stats)
        metrics.update({
            "prefix_cache": self.prefix_cache_note,
            "access_semantics": "prefix",
            "accesses": accesses,
            "hits": hits,
            "hit_ratio": hits / accesses if accesses else 0.0,
            "token_hit_ratio": sum(s.cached_tokens for s in front_stats) / prompt_tokens if prompt_tokens else 0.0,
            "tier_hit_ratio": {k: v / accesses if accesses else 0.0 for k, v in tier_hits.items()},
            "instances": {
                "count": len(instances),
                "kv_blocks_each": self.hbm_blocks,
                "busy_fraction_mean": float(np.mean([i.stats.busy_s for i in instances])) / metrics["makespan_s"]
                if metrics["makespan_s"] > 0 else math.nan,
                "steps": sum(i.stats.steps for i in instances),
            },
        })
        return metrics


def run_serving(trace: Trace, config: Config, mode: str, progress: bool = False) -> tuple[RunResult, list[RequestRecord]]:
    """Simulate ``mode`` ("single" or "pd") over the trace; the run's metrics and per-request records."""
    run = ServingRun(trace, config, mode, progress)
    result = run.run()
    return result, run.records
