"""An instance's scheduler, as vLLM v1's: a token budget per step, running and waiting queues,
preemption, and decode windows.

One token budget per step (``max_num_batched_tokens``) is spent on running requests first
(a decode takes 1 token, an unfinished prefill its next chunk), then on waiting requests in
FCFS order up to ``max_num_seqs``, each admitted only when its whole sequence fits the free
blocks (``scheduler_reserve_full_isl``; the queue waits behind one that does not; one waiting for blocks another
request's KV connector load has not brought is passed over, ``_waits_for_load``); a new request
skips the compute of its longest cached prefix in whole blocks, short of its last token
(``prefix_match.prefix_hit``: a prompt cached to a block boundary recomputes its whole last
block, unless a lower tier holds that block) and loads the part held in lower tiers at their
bandwidth and latency. When a running request needs a block and none is free, the
most recently admitted request is preempted: its blocks are freed and it is recomputed
later (prompt + tokens generated so far).

Decode windows (``sim.serving.decode_windows``, mixed in): when every running request is decoding and nothing
waits, K steps of the same batch are planned at once (same result as K single steps).

Intake: a request arriving while a step runs waits in ``inbox`` until the engine reads its input, between steps
(vLLM's engine core: ``queued``). With ``async_scheduling`` (vLLM's default) the engine plans step k+1 while step k
runs; kvsim plans it as step k ends, with what vLLM's plan saw then: the arrivals of step k are taken in only after
the plan (they join step k+2), and the requests that finished in step k keep their slots and blocks through it
(``leaving``), so they free for step k+2. Without it both happen before the plan (vLLM's synchronous loop).

Token gaps go to a ``WeightedSamples``: every decoding request in a step sees that step's
duration as its gap, so a step adds one (gap, count) entry, a window one per step.

Roles: ``unified`` (aggregated: prefill and decode), ``prefill`` (PD: a request leaves when
its prefill is done) and ``decode`` (PD: requests arrive with their KV and wait in ``ready``
for a sequence slot; a preempted one is recomputed here). In a cluster a unified or prefill instance's request whose
KV connector load landed waits in ``ready`` too (``connector``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.config import ServingConfig
from sim.errors import InputError
from sim.report.metrics import RequestTable, WeightedSamples
from sim.serving.compute import StepShape
from sim.serving.decode_windows import DecodeWindows
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager
from sim.serving.prefix_match import PrefixMatch

UNIFIED, PREFILL, DECODE = "unified", "prefill", "decode"


def kv_tokens_held(role: str, prompt: int | np.ndarray, output: int | np.ndarray) -> int | np.ndarray:
    """The tokens of KV a request ever holds on an instance of ``role`` (ints or arrays; ``output`` at least 1): every
    token fed to the model, the prompt and the generated tokens but the last (sampled, never fed: vLLM schedules no
    step past ``max_tokens``); on a prefill instance the prompt alone (its one token is not fed there); on a decode
    instance the same as a unified one: its first step feeds the prompt's last token again over the KV sent
    (``Instance.reserve``). The admission (``sim.serving.admission``) and a waiting request's could-it-ever-fit check
    both ask it."""
    if role == PREFILL:
        return prompt
    return prompt + output - 1


@dataclass(slots=True, eq=False)
class StepBatch:
    """One scheduled step: (job, tokens) per request, the step's shape and the lower-tier load time;
    ``start`` and ``duration`` are set when the step is priced."""

    jobs: list[tuple[Job, int]]
    shape: StepShape
    load_s: float
    start: float = 0.0
    duration: float = 0.0


class Scheduler(DecodeWindows):
    """Queues and the per-step decision of which requests compute how many tokens."""

    def __init__(self, index: int, role: str, serving: ServingConfig, kv: KVCacheManager, table: RequestTable,
                 itl: WeightedSamples, window: int = 0):
        self.index = index
        self.window = window  # a hybrid model's sliding window, which step shapes are built with (0: none)
        self.role = role
        self.kv = kv
        self.block_size = serving.block_size
        self.max_tokens = serving.max_num_batched_tokens
        self.max_seqs = serving.max_num_seqs
        self.reserve_full_isl = serving.scheduler_reserve_full_isl
        self.async_scheduling = serving.async_scheduling
        self.table = table
        self.itl = itl
        self.inbox: deque[Job] = deque()  # arrived while a step ran: not seen by a plan yet (each read at ``read_at``)
        self.waiting: deque[Job] = deque()  # to be (re)computed, FCFS
        # how many jobs at ``waiting``'s front a plan's scan passed over and no scan has taken off it since (vLLM's
        # ``skipped_waiting``, which FCFS scans before ``waiting``): a preempted job goes in behind them (``_preempt``)
        self._skipped = 0
        # holding their blocks, waiting for a sequence slot: a decode role's whose KV arrived, a connector load's landed
        self.ready: deque[Job] = deque()
        self.running: list[Job] = []
        self.leaving: list[Job] = []  # async: finished in the step just ended, holding slots and blocks until planned
        self._joined = 0  # jobs that joined ``running`` so far (each job's ``order``)
        self.on_prefilled: Callable[[Job], None] | None = None  # a unified job's prompt is done (cluster's router)
        # (cluster) vLLM's KV connector: asked at a request's admission (its first, and again after a preemption, as
        # vLLM asks it whenever a request has no computed token) for the prefix it would load from lower
        # tiers or other locations (a plan with ``hits``, ``start``; None: nothing); the request then waits for it
        # holding its blocks, out of the batch and without a sequence slot (vLLM's WAITING_FOR_REMOTE_KVS), and is
        # read in again when it lands (``take_in``: it holds blocks, so it joins the running batch with its prefix
        # computed as soon as a slot is free; it is *scheduled* then, as vLLM records its SCHEDULED event)
        self.connector: Callable[[Job], object] | None = None
        self.loading = 0  # admitted requests whose connector load is in flight (blocks held, no sequence slot)
        # the prompt block ids those loads bring into this HBM, each with how many of them load it: blocks held but
        # holding no KV yet, which no other request is served until the load lands (``_waits_for_load``)
        self.being_loaded: dict[int, int] = {}
        self._load_changes = 0  # how many times ``being_loaded`` changed (the key of ``_clear``)
        self._clear: tuple[Job | None, int] = (None, -1)  # a job whose prompt takes no block being loaded, and when
        self.on_landed: Callable[[Job], None] | None = None  # a connector's load landed (its instance's ``submit``)
        # (PD decode) a plan admitted the last of its waiting (preempted) requests: KV waiting for this instance's
        # memory may take what they left, behind them (``Instance.reserve``)
        self.on_drained: Callable[[], None] | None = None

    @property
    def load(self) -> int:
        """Requests queued or running here."""
        return len(self.inbox) + len(self.waiting) + len(self.ready) + len(self.running) + self.loading

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.ready or self.inbox)

    @property
    def occupied_seqs(self) -> int:
        """Sequence slots in use: running requests and those whose finish the engine has not processed yet. A request
        whose connector load is in flight holds none (vLLM keeps it in the waiting queue, WAITING_FOR_REMOTE_KVS, and
        its admission loop stops at ``len(self.running) == self.max_num_running_reqs``: vllm/v1/core/sched/scheduler.py
        ``Scheduler.schedule``; vllm-project/vllm#42568, open, would count them); it takes one when it lands
        (``admit_ready``)."""
        return len(self.running) + len(self.leaving)

    def take_in(self, upto: float, before: bool = False) -> bool:
        """The engine's plans from now on see the requests it read (new ones, or, on a decode instance, those whose
        KV came) by ``upto`` (``before``: strictly before it); returns whether there were any."""
        inbox = self.inbox
        queue = self.ready if self.role == DECODE else self.waiting
        queued = self.table.queued
        taken = False
        while inbox and (inbox[0].read_at < upto if before else inbox[0].read_at <= upto):  # (read in arrival order)
            job = inbox.popleft()
            if math.isnan(queued[job.rid]):  # its first instance (a PD decode side keeps the prefill's)
                queued[job.rid] = job.read_at
            if job.held and queue is self.waiting:  # its connector load landed: it joins with its blocks
                self.loading -= 1
                self.ready.append(job)
            else:
                queue.append(job)
            taken = True
        if taken:
            self.admit_ready(upto)
        return taken

    def admit_ready(self, now: float) -> None:
        """Requests holding their blocks (a decode instance's whose KV came, a connector load's that landed) join the
        running batch while sequence slots are free."""
        scheduled = self.table.scheduled
        while self.ready and self.occupied_seqs < self.max_seqs:
            job = self.ready.popleft()
            if math.isnan(scheduled[job.rid]):  # a connector's load landed: scheduled now (its load was before)
                scheduled[job.rid] = now
            self._join(job)

    def _join(self, job: Job) -> None:
        self._joined += 1
        job.order = self._joined
        self.running.append(job)

    def _victim(self) -> Job:
        """Who gives up its blocks when a running request needs one: vLLM's ``self.running.pop()``, the request that
        joined last, where ``running`` still holds those whose last token is in the step in flight (async: skipped by
        ``schedule`` but preemptible; their output finishes them all the same, ``stopped_preempted_reqs`` in
        ``update_from_output``, vllm/v1/core/sched/scheduler.py): here the ``leaving`` that still hold blocks."""
        victim = self.running[-1]
        for job in self.leaving:
            if job.order > victim.order and (job.held or job.anonymous):
                victim = job
        return victim

    def _preempt(self, job: Job) -> None:
        """``job`` gives up its blocks and waits to be recomputed: first in the queue after the jobs the last scan
        passed over (``_skipped``). vLLM's ``_preempt_request`` puts it at ``self.waiting``'s front
        (``self.waiting.prepend_request``), while the requests a scan skipped (its connector deferred them,
        ``get_num_new_matched_tokens`` None: ``_waits_for_load``) wait in ``self.skipped_waiting``, which FCFS looks
        at first (``_select_waiting_queue_for_scheduling``: ``self.skipped_waiting or self.waiting``;
        vllm/v1/core/sched/scheduler.py since vllm-project/vllm#35781; before it the skipped ones were prepended to
        ``self.waiting`` at the scan's end, so a later preemption went ahead of them). Several preemptions before a
        scan: the latest first, as repeated prepends give. O(skipped): a deque's insert."""
        self.running.remove(job)
        self.kv.free(job)
        self.table.preemptions[job.rid] += 1
        job.target = job.input_tokens + job.generated  # recompute prompt and generated tokens
        job.computed = 0
        self.waiting.insert(self._skipped, job)

    # --------------------------------------------------------------- single steps

    def schedule(self, now: float) -> StepBatch | None:
        """The next step's batch (None: nothing to run).

        A step whose preemptions left it empty is planned again: the freed slots and blocks go to the
        requests that can use them (a decode instance's ``ready`` ones hold their blocks and can finish),
        else the instance would go idle with work queued and nothing to wake it. A plan that admitted the last waiting
        request tells ``on_drained`` (PD decode: a remote-KV request is admitted in vLLM's waiting loop behind the
        preempted requests ``_preempt_request`` prepended to ``self.waiting``, in the same ``Scheduler.schedule``)."""
        self.kv.begin_step()
        took = False  # whether a plan admitted a waiting request
        while True:
            batch, preempted, admitted = self._plan(now)
            took |= admitted
            if batch is not None or not preempted:
                break
            self.admit_ready(now)
        if took and not self.waiting and self.on_drained is not None:
            self.on_drained()
        return batch

    def _plan_running(self, shape: StepShape, batch: list[tuple[Job, int]]) -> tuple[int, bool]:
        """The running requests' part of a step's plan (into ``shape`` and ``batch``): the token budget left, and
        whether it preempted a request."""
        kv = self.kv
        pool = kv.pool
        budget = self.max_tokens
        preempted = False
        running = self.running
        holds = kv.holds
        settled = None  # whether the manager is settled (``KVCacheManager.settled``), asked when needed
        window = self.window
        # the decodes planned without ``allocate``, added to the shape at the end: count, Σ, max and min KV length,
        # Σ of it cut to a sliding window
        seqs = kv_sum = kv_max = windowed = 0
        kv_min = -1
        i = 0
        while i < len(running) and budget > 0:
            job = running[i]
            computed = job.computed
            decoding = computed >= job.target
            if decoding and holds(job, computed + 1):  # its next token fits its blocks: nothing to take or check
                if settled is None:
                    settled = kv.settled()
                if settled:
                    batch.append((job, 1))
                    budget -= 1
                    kv_len = computed + 1
                    seqs += 1
                    kv_sum += kv_len
                    if kv_len > kv_max:
                        kv_max = kv_len
                    if kv_len < kv_min or kv_min < 0:
                        kv_min = kv_len
                    if window:
                        windowed += kv_len if kv_len < window else window
                    i += 1
                    continue
            settled = None  # (what follows may change the pool and the cache)
            n = 1 if decoding else kv.split_chunk(job, computed, min(job.target - computed, budget))
            if not n:  # (a chunk that must end at a block boundary the budget does not reach: next step)
                i += 1
                continue
            short = False  # (only a preemption can take the job out of ``running``)
            while kv.new_blocks(job, job.computed + n) > pool.free:
                short = preempted = True
                victim = self._victim()
                if victim is not running[-1]:  # finished in the step in flight: its blocks go now, it leaves after
                    kv.free(victim)
                    self.table.preemptions[victim.rid] += 1
                    continue
                self._preempt(victim)
                if victim is job:
                    break
            if short and job not in running:
                continue
            kv.allocate(job, job.computed + n)
            if job.prompt_copies and job.computed < job.input_tokens:  # (copies of its own its prompt's chunk
                kv.computed(job, job.computed + n)  # computes: ``KVCacheManager.computed``)
            batch.append((job, n))
            budget -= n
            if decoding:
                shape.add_decode(job.computed + 1)
            else:
                shape.add_prefill(n, job.computed)
            i += 1
        if seqs:
            shape.add_decodes(seqs, kv_sum, kv_max, kv_min, windowed)
        return budget, preempted

    def _plan(self, now: float) -> tuple[StepBatch | None, bool, bool]:
        """One attempt at the next step's batch, whether it preempted a request and whether it admitted a waiting
        one."""
        kv = self.kv
        pool = kv.pool
        shape = StepShape(window=self.window)
        batch: list[tuple[Job, int]] = []
        load_total = 0.0
        budget, preempted = self._plan_running(shape, batch)
        waiting = self.waiting
        skipped: list[Job] = []  # passed over this step (waiting for another request's load), back in front after
        admitted = False
        while not preempted and waiting and budget > 0 and self.occupied_seqs < self.max_seqs:
            job = waiting[0]
            # the blocks the admission needs: the whole sequence's (vLLM's scheduler_reserve_full_isl), else the
            # chunk's; known before the lookup when the hit does not change them (a queue waiting behind a request
            # that does not fit looks nothing up, unless its prompt takes a block being loaded: it may be one waiting
            # for that load, which is passed over before its fit is asked)
            need = kv.admission_before_lookup(job, self.reserve_full_isl)
            if need is not None and need > pool.free and not (self.being_loaded and self._may_wait_for_load(job)):
                job.computed = 0
                self._check_fits_alone(job)
                break
            match = kv.lookup(job)
            plan = self.connector(job) if self.connector is not None else None
            if plan is not None and job.admitted_once and plan.hits < match.blocks:
                plan = None  # (preempted: its own lookup reaches further, into its generated blocks: served by it)
            if plan is not None:  # what the connector loads is a hit, as vLLM counts its external tokens (a hybrid's
                match = kv.external_match(job, plan.hits)  # other groups take that prefix's blocks at admission too)
            if self.being_loaded and self._waits_for_load(job, match.blocks):
                skipped.append(waiting.popleft())
                if self._skipped:  # (a job taken off the front: one passed over before leaves the count)
                    self._skipped -= 1
                continue
            if need is not None and need > pool.free:
                job.computed = 0
                self._check_fits_alone(job)
                break
            cached = match.tokens
            n = kv.split_chunk(job, cached, min(job.target - cached, budget))
            if not n:
                break
            job.computed = 0
            if need is None and kv.admission_blocks(job, cached + n, self.reserve_full_isl) > pool.free:
                self._check_fits_alone(job)
                break
            waiting.popleft()
            admitted = True
            if self._skipped:
                self._skipped -= 1
            if plan is not None:
                self._park(job, match, cached + n, plan, now)
                continue
            load = kv.load(match, now + load_total)  # after the step's earlier loads, before the writes
            kv.allocate(job, cached + n)  # that taking its blocks demotes
            if job.prompt_copies:  # (copies of its own past its hit, computed by this step)
                kv.computed(job, cached + n)
            job.computed = cached
            if not job.admitted_once:  # hits count once per request, not again after a preemption
                job.admitted_once = True
                kv.record_admission(job, match)
                table, rid = self.table, job.rid
                table.scheduled[rid] = now
                table.kv_load[rid] = load
                table.cached_tokens[rid] = cached
                table.instance[rid] = self.index
            load_total += load
            self._join(job)
            batch.append((job, n))
            budget -= n
            shape.add_prefill(n, cached)
        if skipped:  # back to the queue's front in their order (vLLM: ``skipped_waiting``, scanned first next step)
            waiting.extendleft(reversed(skipped))
            self._skipped += len(skipped)
        if not batch:
            return None, preempted, admitted
        return StepBatch(batch, shape, load_total), preempted, admitted

    def _may_wait_for_load(self, job: Job) -> bool:
        """Whether a waiting ``job``'s prompt takes a block being loaded (before its lookup: it may wait for that
        load); a no is kept while ``being_loaded`` stays, as a queue behind a request that does not fit asks at every
        step."""
        key = (job, self._load_changes)
        if self._clear == key:
            return False
        if self._waits_for_load(job):
            return True
        self._clear = key
        return False

    def _waits_for_load(self, job: Job, blocks: int | None = None) -> bool:
        """Whether the prefix a waiting ``job`` would be served (its match's first ``blocks``; None: its whole prompt,
        a bound known before the lookup) takes a block a parked
        request's connector load has not brought yet (``being_loaded``): its KV is not there, so the job is passed
        over this step (it keeps its place at the queue's front) and the requests behind it are admitted as they fit;
        after the load lands it is admitted with those blocks as HBM hits. vLLM's OffloadingConnector defers such a
        request (``get_num_new_matched_tokens`` returns None while a hit block is in ``_blocks_being_loaded``,
        vllm/distributed/kv_transfer/kv_connector/v1/offloading/scheduler.py) before its blocks are allocated, and its
        scheduler puts it aside and scans on (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``:
        ``step_skipped_waiting``, then ``self.skipped_waiting``, which FCFS scans before ``self.waiting`` the next
        step; ``skipped_waiting_requests`` prepended to ``self.waiting`` before vllm-project/vllm#35781). It is asked
        before the fit, so a deferred request that would not fit is passed over too. O(blocks) set probes (in C)."""
        ids = job.prompt_ids if blocks is None else job.prompt_ids[:blocks]
        return not self.being_loaded.keys().isdisjoint(ids.tolist() if isinstance(ids, np.ndarray) else ids)

    def _park(self, job: Job, match: PrefixMatch, tokens: int, plan, now: float) -> None:
        """Admit ``job`` to wait for its connector's load: its blocks for ``tokens`` tokens taken (the prefix's and
        its first chunk's, as an admission takes them; a hybrid's sliding groups' blocks of the prefix's end or its
        state groups' states there too, ``external_match``: vLLM allocates every group's blocks for the external
        tokens), its hits counted; the load starts now and, when it lands, the job is read in again (``take_in``)
        with its prefix computed, and scheduled when a sequence slot is free (``admit_ready``). The load's time is
        the request's ``fetch`` (KV loading before it was scheduled: the breakdown's kv_load); the waits before and
        after it are queueing. The blocks it loads (not already in this HBM: ``FetchPlan.loaded_positions``) are
        ``being_loaded`` until it lands: vLLM caches a loading request's blocks only then (``allocate_slots(...,
        delay_cache_blocks=load_kv_async)``, ``_update_waiting_for_remote_kv``).

        A preempted request is parked the same way (vLLM: ``num_computed_tokens`` is 0 again, so its connector is
        asked afresh and its load goes through WAITING_FOR_REMOTE_KVS; "We must be loading for a resumed
        preemption"), but counts no hit, cached token or ``fetch`` again: its hits are its first admission's
        (``record_admission``, as vLLM's ``num_cached_tokens`` is set once), and ``fetch`` is the load before it was
        first scheduled, so the breakdown's queue (arrival to scheduled, less fetch) stays that wait; this load's
        time falls after it, in the prefill (or decode) time it delays, as a single node's re-admission load does."""
        kv = self.kv
        first = not job.admitted_once
        kv.allocate(job, tokens)
        job.computed = match.tokens
        job.admitted_once = True
        table, rid = self.table, job.rid
        if first:
            table.cached_tokens[rid] = match.tokens
            table.instance[rid] = self.index
        self.loading += 1
        being_loaded = self.being_loaded
        loaded = np.asarray(job.prompt_ids)[plan.loaded_positions()].tolist()
        for key in loaded:
            being_loaded[key] = being_loaded.get(key, 0) + 1
        self._load_changes += 1

        def landed() -> None:
            for key in loaded:
                count = being_loaded[key] - 1
                if count:
                    being_loaded[key] = count
                else:
                    del being_loaded[key]
            self._load_changes += 1
            if first:
                table.fetch[rid] = kv.clock() - now
            self.on_landed(job)

        plan.start(landed)  # (the hits' locations first: the plan's, counted below)
        if first:
            kv.record_admission(job, match)

    def _check_fits_alone(self, job: Job) -> None:
        """A waiting ``job`` does not fit now: an input error if it could never fit, even alone: its tokens so far and
        its next one's slot, within the KV it ever holds here (``kv_tokens_held``, as the admission asks)."""
        last = kv_tokens_held(self.role, job.input_tokens, job.output_tokens)
        alone = self.kv.blocks_alone(job.target + 1 if job.target < last else job.target)
        pool = self.kv.pool
        if alone > pool.total:
            raise InputError(
                f"request {job.rid} ({job.target} tokens) needs {alone} KV blocks, more than instance "
                f"{self.index} has ({pool.total} blocks of {self.block_size} tokens); raise "
                f"gpu_memory_utilization, serving.num_gpu_blocks or tensor_parallel_size, or cap prompt lengths")

    def finish_step(self, batch: StepBatch, now: float) -> list[Job]:
        """The step is done: chunks and tokens recorded; returns the jobs that leave (finished, or
        prefilled on a prefill instance)."""
        finished = []
        table = self.table
        start = batch.start
        in_step = 0  # decoding requests whose previous token ended the step before: their gap is this step
        for job, n in batch.jobs:
            decoding = job.computed >= job.target
            job.computed += n
            if not decoding:
                if job.computed < job.target:
                    continue  # more prefill chunks to go
                if math.isnan(table.prefill_done[job.rid]):
                    table.prefill_done[job.rid] = now
                    if self.role == PREFILL:
                        finished.append(job)
                        continue
                    if self.on_prefilled is not None:
                        self.on_prefilled(job)
            job.generated += 1
            if job.generated == 1:
                table.first_token[job.rid] = now
            elif job.last_token_time == start:
                in_step += 1
            else:
                self.itl.add(now - job.last_token_time)  # e.g. recomputed after a preemption
            job.last_token_time = now
            if job.generated >= job.output_tokens:
                finished.append(job)
        if in_step:
            self.itl.add(batch.duration, in_step)
        return finished
