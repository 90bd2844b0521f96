"""Prefill/decode disaggregation's KV hand-over, as a part of a serving run (``sim.serving.run.ServingRun``): a
prefilled request waits in its decode instance's queue, its KV crosses the links between the two instances (whole,
pulled, or layer by layer behind the prefill's compute) and lands in the decode instance's cache. The cluster
(``sim.cluster.run``) overrides where instances are and which links a transfer crosses."""

from __future__ import annotations

from sim.serving.instance import Instance, Job
from sim.serving.network import latency_of
from sim.serving.paths import Path


class PDTransfers:
    """The PD half of a serving run: the run's engine, request table, decode queues, instances, links (``egress``,
    ``ingress``), transfer plan and model shape are its own (set up by ``ServingRun``)."""

    def _prefill_done(self, job: Job) -> None:
        dest = self._decode_of(job)
        self.decode_queues.prefilled(dest, job)
        self._start_transfers(dest)

    def _start_transfers(self, dest: Instance) -> None:
        """Send prefilled KV to decode instance ``dest`` from its queue, oldest first, while it has room: vLLM's decode
        scheduler admits remote-KV requests FCFS from its own waiting queue, behind its preempted ones, and stops at
        the first that does not fit (``Instance.reserve``). Called as ``dest`` may have room: a prefill bound to it
        ended, a request there finished or its KV landed, its plan readmitted the last of its preempted requests."""
        queues = self.decode_queues
        queue = queues.of(dest)
        jobs, table, transfer = queue.jobs, self.table, self.config.pd.transfer
        while jobs:
            if transfer == "pull" and not dest.has_free_slot:  # the decode side pulls only when it has a sequence slot
                return
            job = jobs[0]
            prompt = int(table.input_tokens[job.rid])  # (the prefill side's may stop short of it: _arrive)
            ids, chain = (job.blocks, job.chain) if prompt == job.input_tokens else self._prompt(job.rid, prompt)
            # admitted (scheduled, hits counted) on the prefill instance: a preemption on the decode
            # instance recomputes it there without recording a second admission over the first
            dest_job = Job(job.rid, prompt, job.output_tokens, ids, job.position, target=prompt,
                           chain=chain, admitted_once=True, generated_ids=job.generated_ids)
            blocks = dest.reserve(dest_job, prompt - job.input_tokens)
            if blocks is None:
                return  # no memory (or its preempted requests wait): retried when it may have some
            queues.reserved(queue)
            prefill_instance = self._prefill_of(job)
            self.in_transfer += 1
            table.kv_sent[job.rid] = self.engine.now
            dest_job.generated = 0
            plan = self.transfer  # the busiest rank's bytes on its link; every decode rank's shard moved
            nbytes = blocks * plan.busiest_bytes + (self.state_bytes if blocks else 0)
            table.kv_transfer_bytes[job.rid] = blocks * plan.moved_bytes + (self.state_bytes * len(plan.received)
                                                                            if blocks else 0)
            link = self._kv_link(prefill_instance, dest)
            moved = int(table.kv_transfer_bytes[job.rid])
            self._record_transfer(link, nbytes, moved)
            wire = self._link_bytes(nbytes, moved)
            if not nbytes and self.states is not None:  # (a GDN hybrid's decode side holds all it would be sent)
                self.engine.after(0.0, self._arrived, prefill_instance, job, dest, dest_job)
            elif transfer == "layerwise":
                self._layerwise(link, wire, self._last_layer_bytes(wire, blocks, dest_job), prefill_instance, job,
                                dest, dest_job)
            else:
                self._send_kv(link, wire, lambda s=job, p=prefill_instance, d=dest, j=dest_job: self._arrived(p, s, d, j))

    def _prefill_of(self, job: Job) -> Instance:
        return self.prefill[int(self.table.instance[job.rid]) - self.prefill[0].index]

    def _decode_for(self, prefill: Instance, job: Job) -> Instance:
        """The decode instance a new request is bound to (its prefill instance's peer): the best ranked
        (``DecodeQueues.choose``: pd.decode_router)."""
        decode = self.decode
        return self.decode_queues.choose(decode, job) if len(decode) > 1 else decode[0]

    def _decode_of(self, job: Job) -> Instance:
        """The decode instance ``job`` was bound to at dispatch."""
        return self.decode[int(self.table.decode_instance[job.rid]) - self.decode[0].index]

    def _kv_link(self, src: Instance, dest: Instance) -> Path:
        """The links a prefill instance's KV crosses to ``dest``: the prefill instance's and the decode instance's,
        each shared by that instance's transfers, the latency paid once (``sim.serving.paths``)."""
        links = [self.egress[src.index], self.ingress[dest.index - self.decode[0].index]]
        return Path(links, "node", latency_of(links[0].model))

    def _record_transfer(self, link, nbytes: int, moved: int) -> None:
        """Count a KV transfer over ``link`` of ``nbytes`` (its busiest rank's; ``moved``: every rank's), whichever way
        it is sent (the cluster counts them by scope)."""

    def _link_bytes(self, busiest: int, moved: int) -> int:
        """The bytes a transfer puts on its links: here each rank has a link of its own (``self.egress``,
        ``self.ingress``: one per instance, its busiest rank's), so its busiest rank's (the cluster's carry every
        rank's)."""
        return busiest

    def _send_kv(self, link, nbytes: int, arrived) -> None:
        link.send(nbytes, lambda _d: arrived())

    def _last_layer_bytes(self, nbytes: int, blocks: int, dest_job: Job) -> float:
        """The last layer's share of a transfer of ``nbytes`` over ``blocks`` blocks: a ``1/layers`` share where every
        layer keeps the same KV; under vLLM's hybrid KV-cache manager a block is one page of each of a group's layers
        (``sim.serving.kv_groups``), and the last layer's pages are its group's blocks sent: the sliding window's
        (``window_sent``) where it slides (Gemma 3's), every full-attention block where it does not (gpt-oss's)."""
        groups = self.kv_groups
        if groups is None or not blocks:
            return nbytes / self.model_layers
        window = dest_job.window_sent
        pages = window if self.last_layer_slides else blocks - groups.sliding_groups * window
        return nbytes * pages / (blocks * groups.group_size)

    def _layerwise(self, link: Path, nbytes: int, last_layer: float, src: Instance, job: Job, dest: Instance,
                   dest_job: Job) -> None:
        """Layer i's KV is sent while layer i+1 computes: only the part the compute does not hide is exposed.

        Each layer is a message of its own, sent back to back, so their latencies overlap (the whole transfer pays
        the link's latency once: ``full``). Where the link keeps up with the compute, what is left after the last
        layer's compute is that layer's message of ``last_layer`` bytes, latency and all (``isolated_time``), not a
        ``1/layers`` share of the whole transfer's latency; where it does not, the transfer less the compute of
        layers 2..L."""
        layers = self.model_layers
        table, rid = self.table, job.rid
        prefill_compute = max(0.0, float(table.prefill_done[rid] - table.scheduled[rid] - table.kv_load[rid]))
        per_layer_compute = prefill_compute / layers
        hidden_s = (layers - 1) * per_layer_compute  # transfer time the compute of layers 2..L can hide
        full = link.model.isolated_time(nbytes)
        exposed = min(full, max(link.model.isolated_time(last_layer), full - hidden_s))
        # the exposed part shares the link with the transfers on it then (the hidden part crossed during compute)
        if full <= 0:
            self.engine.after(0.0, self._arrived, src, job, dest, dest_job)
        else:
            link.occupy_share(nbytes, exposed / full, lambda _d: self._arrived(src, job, dest, dest_job))

    def _arrived(self, src: Instance, job: Job, dest: Instance, dest_job: Job) -> None:
        self.in_transfer -= 1
        self.table.kv_ready[job.rid] = self.engine.now
        src.release(job)
        dest.landed(dest_job)
        self.decode_queues.handed(dest)
        dest.submit(dest_job)
        # its blocks are found now: a transfer waiting for this instance's memory may need fewer (its own copies of
        # them no more: ``KVCacheManager.receive``)
        self._start_transfers(dest)
