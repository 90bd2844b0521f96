"""An instance's scheduler, as vLLM v1's: a token budget per step, running and waiting queues,
preemption, and decode windows.

One token budget per step (``max_num_batched_tokens``) is spent on running requests first
(a decode takes 1 token, an unfinished prefill its next chunk), then on waiting requests in
FCFS order up to ``max_num_seqs``; a new request skips the compute of its longest cached
prefix (at least its last token is recomputed) and loads the part held in lower tiers at
their bandwidth and latency. When a running request needs a block and none is free, the
most recently admitted request is preempted: its blocks are freed and it is recomputed
later (prompt + tokens generated so far).

Decode windows: when every running request is decoding and nothing waits, each step is the
same batch with one more token each, so K steps are planned at once (same result as K
single steps) until the first request finishes or blocks run out.

Roles: ``unified`` (aggregated: prefill and decode), ``prefill`` (PD: a request leaves when
its prefill is done) and ``decode`` (PD: requests arrive with their KV and wait in ``ready``
for a sequence slot; a preempted one is recomputed here).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim.config import ServingConfig
from sim.errors import InputError
from sim.serving.compute import StepShape
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager

UNIFIED, PREFILL, DECODE = "unified", "prefill", "decode"
MAX_WINDOW_STEPS = 4096


@dataclass(slots=True, eq=False)
class DecodeWindow:
    """K consecutive decode-only steps planned at once (same result as K single steps)."""

    jobs: list
    computed: np.ndarray  # each job's computed tokens at the window start
    ends: np.ndarray  # cumulative step end times from the start
    start: float
    steps: int


@dataclass(slots=True, eq=False)
class StepBatch:
    """One scheduled step: (job, tokens) per request, the step's shape and the lower-tier load time."""

    jobs: list[tuple[Job, int]]
    shape: StepShape
    load_s: float


class Scheduler:
    """Queues and the per-step decision of which requests compute how many tokens."""

    def __init__(self, index: int, role: str, serving: ServingConfig, kv: KVCacheManager, itl: list[float]):
        self.index = index
        self.role = role
        self.kv = kv
        self.block_size = serving.block_size
        self.max_tokens = serving.max_num_batched_tokens
        self.max_seqs = serving.max_num_seqs
        self.itl = itl
        self.waiting: deque[Job] = deque()  # to be (re)computed, FCFS
        self.ready: deque[Job] = deque()  # decode role: KV arrived, waiting for a sequence slot
        self.running: list[Job] = []

    @property
    def load(self) -> int:
        """Requests queued or running here."""
        return len(self.waiting) + len(self.ready) + len(self.running)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.ready)

    def add(self, job: Job) -> None:
        """A new request (unified/prefill) or one whose KV has arrived (decode)."""
        if self.role == DECODE:
            self.ready.append(job)
        else:
            self.waiting.append(job)

    def admit_ready(self) -> None:
        while self.ready and len(self.running) < self.max_seqs:
            self.running.append(self.ready.popleft())

    def _preempt(self, job: Job) -> None:
        self.running.remove(job)
        self.kv.free(job)
        job.record.preemptions += 1
        job.target = job.record.input_tokens + job.generated  # recompute prompt and generated tokens
        job.computed = 0
        self.waiting.appendleft(job)

    # ------------------------------------------------------- decode windows

    def window_steps(self) -> int:
        """How many decode-only steps can run back to back now (0: take a single step instead)."""
        running = self.running
        if self.waiting or self.ready or not running or len(running) > self.max_tokens:
            return 0
        if any(job.computed < job.target for job in running):
            return 0
        steps = min(MAX_WINDOW_STEPS, min(job.record.output_tokens - job.generated for job in running))
        computed = np.fromiter((job.computed for job in running), dtype=np.int64, count=len(running))
        current = np.fromiter((job.held + job.anonymous for job in running), dtype=np.int64, count=len(running))
        free = self.kv.pool.free
        bs = self.block_size

        def extra(k: int) -> int:
            return int(np.maximum(0, -(-(computed + k) // bs) - current).sum())

        if extra(steps) > free:  # largest k whose new blocks fit
            lo, hi = 0, steps
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if extra(mid) <= free else (lo, mid - 1)
            steps = lo
        return steps

    def start_window(self, steps: int, now: float, decode_times) -> DecodeWindow:
        """Allocate the blocks of ``steps`` decode steps of the running batch; ``decode_times`` prices them."""
        jobs = list(self.running)
        computed = np.fromiter((job.computed for job in jobs), dtype=np.int64, count=len(jobs))
        for job in jobs:
            self.kv.allocate(job, job.computed + steps)
        first = StepShape.decode_batch(computed + 1)  # each new token attends to the KV before it and itself
        ends = np.cumsum(decode_times(first, steps))
        return DecodeWindow(jobs, computed, ends, now, steps)

    def finish_window(self, window: DecodeWindow, now: float) -> list[Job]:
        """The window's ``steps`` steps are done: tokens emitted, unused planned blocks returned."""
        k, start = window.steps, window.start
        ends = window.ends[:k]
        gaps = ends.copy()
        gaps[1:] -= ends[:-1]
        gaps = gaps.tolist()
        finished = []
        for job, computed in zip(window.jobs, window.computed.tolist()):
            first = job.generated == 0
            job.computed = computed + k
            job.generated += k
            if first:
                job.record.first_token = start + gaps[0]
                self.itl.extend(gaps[1:])
            else:
                self.itl.extend(gaps)
            job.record.last_token = job.last_token_time = now
            self.kv.trim(job)  # blocks planned for steps an interruption cut off
            if job.generated >= job.record.output_tokens:
                finished.append(job)
        self.kv.sync_free()
        return finished

    # --------------------------------------------------------------- single steps

    def schedule(self, now: float) -> StepBatch | None:
        """The next step's batch (None: nothing to run)."""
        kv = self.kv
        budget = self.max_tokens
        shape = StepShape()
        batch: list[tuple[Job, int]] = []
        load_total = 0.0
        preempted = False
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            job = running[i]
            decoding = job.computed >= job.target
            n = 1 if decoding else min(job.target - job.computed, budget)
            while kv.new_blocks(job, job.computed + n) > kv.pool.free:
                victim = running[-1]
                self._preempt(victim)
                preempted = True
                if victim is job:
                    break
            if job not in running:
                continue
            kv.allocate(job, job.computed + n)
            batch.append((job, n))
            budget -= n
            if decoding:
                shape.add_decode(job.computed + 1)
            else:
                shape.add_prefill(n, job.computed)
            i += 1
        while not preempted and self.waiting and budget > 0 and len(running) < self.max_seqs:
            job = self.waiting[0]
            match = kv.lookup(job)
            cached = match.tokens
            n = min(job.target - cached, budget)
            job.computed = 0
            if kv.new_blocks(job, cached + n) > kv.pool.free:
                if -(-(job.target + 1) // self.block_size) > kv.pool.total:  # could never fit, even alone
                    raise InputError(
                        f"request {job.record.request_id} ({job.target} tokens) needs more KV blocks than instance "
                        f"{self.index} has ({kv.pool.total} blocks of {self.block_size} tokens); raise "
                        f"gpu_memory_utilization, serving.num_gpu_blocks or tensor_parallel_size, or cap prompt lengths")
                break
            self.waiting.popleft()
            kv.allocate(job, cached + n)
            job.computed = cached
            if not job.admitted_once:  # hits count once per request, not again after a preemption
                job.admitted_once = True
                kv.record_admission(job, match)
                job.record.scheduled = now
                job.record.kv_load = match.load_s
                job.record.cached_tokens = cached
                job.record.instance = self.index
            load_total += match.load_s
            running.append(job)
            batch.append((job, n))
            budget -= n
            shape.add_prefill(n, cached)
        if not batch:
            return None
        return StepBatch(batch, shape, load_total)

    def _emit(self, job: Job, now: float) -> None:
        job.generated += 1
        record = job.record
        if job.generated == 1:
            record.first_token = now
        else:
            self.itl.append(now - job.last_token_time)
        job.last_token_time = now
        record.last_token = now

    def finish_step(self, batch: StepBatch, now: float) -> list[Job]:
        """The step is done: chunks and tokens recorded; returns the jobs that leave (finished, or
        prefilled on a prefill instance)."""
        finished = []
        for job, n in batch.jobs:
            decoding = job.computed >= job.target
            job.computed += n
            if not decoding and job.computed < job.target:
                continue  # more prefill chunks to go
            if not decoding and math.isnan(job.record.prefill_done):
                job.record.prefill_done = now
                if self.role == PREFILL:
                    finished.append(job)
                    continue
            self._emit(job, now)
            if job.generated >= job.record.output_tokens:
                finished.append(job)
        return finished
