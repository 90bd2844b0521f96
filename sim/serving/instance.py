"""One serving instance (a TP group of GPUs) with vLLM v1's scheduler and KV block pool.

Block pool, as vLLM's ``BlockPool``: ``num_gpu_blocks`` physical blocks, each either in
use by running requests (ref-counted: requests sharing a prefix hold its blocks once)
or free. Free blocks that still hold a prefix are the HBM tier of the instance's
``MultiTierCache``; its capacity follows the free count, so allocating a block evicts
(demotes) cached content, and freeing a request's blocks returns them to the cache
deepest first (vLLM frees in reverse order), keeping prefixes whole.

Scheduler, as vLLM v1: one token budget per step (``max_num_batched_tokens``) spent on
running requests first (a decode takes 1 token, an unfinished prefill its next chunk),
then on waiting requests in FCFS order up to ``max_num_seqs``; a new request skips the
compute of its longest cached prefix (at least its last token is recomputed) and loads
the part held in lower tiers at their bandwidth and latency. When a running request
needs a block and none is free, the most recently admitted request is preempted: its
blocks are freed and it is recomputed later (prompt + tokens generated so far).

Roles: ``unified`` (aggregated: prefill and decode), ``prefill`` (PD: a request leaves
when its prefill is done, keeping its blocks until its KV is sent) and ``decode`` (PD:
requests arrive with their KV; a preempted one is recomputed here).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sim.cache.multitier import MultiTierCache
from sim.serving.compute import ComputeModel, StepShape
from sim.config import ServingConfig
from sim.serving.engine import Engine
from sim.errors import InputError
from sim.report.metrics import RequestRecord

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
class Job:
    """A request's state on one instance."""

    record: RequestRecord
    blocks: list[int]  # prompt block ids (prefix-chained)
    chain: np.ndarray  # the same ids as an array (the cache's chain operations take it without a copy)
    position: int  # stream position of the prompt's first block (for clairvoyant policies)
    target: int  # tokens whose KV must exist before the next token: prompt (+ generated, after preemption)
    computed: int = 0  # tokens with KV on this instance
    generated: int = 0  # output tokens produced so far
    held: int = 0  # prompt blocks held (blocks[:held] are in the pool's in-use map)
    anonymous: int = 0  # blocks past the prompt's (generated tokens)
    admitted_once: bool = False
    last_token_time: float = math.nan


@dataclass(slots=True)
class InstanceStats:
    """Prefix-cache and scheduling counters of one instance."""

    accesses: int = 0  # prompt blocks looked up at first admission
    hits: int = 0
    tier_hits: dict[int, int] = field(default_factory=dict)  # tier index -> hits (0 includes in-use blocks)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    steps: int = 0
    busy_s: float = 0.0


class Instance:
    """A scheduler, a block pool with its prefix cache, and a compute model, driven by the engine."""

    def __init__(self, index: int, role: str, engine: Engine, serving: ServingConfig, total_blocks: int,
                 cache: MultiTierCache, compute: ComputeModel, on_prefill_done: Callable[[Job], None] | None = None,
                 on_finish: Callable[[Job], None] | None = None, itl_sink: list[float] | None = None,
                 prefix_caching: bool | None = None):
        if total_blocks <= 0:
            raise InputError(f"instance {index}: no KV blocks fit in GPU memory (num_gpu_blocks={total_blocks})")
        self.index = index
        self.role = role
        self.engine = engine
        self.block_size = serving.block_size
        self.max_tokens = serving.max_num_batched_tokens
        self.max_seqs = serving.max_num_seqs
        # Off when disabled, or when the caller knows no block can repeat (nothing could ever hit).
        self.prefix_caching = serving.enable_prefix_caching if prefix_caching is None else prefix_caching
        self.total_blocks = total_blocks
        self.cache = cache
        self.compute = compute
        self.on_prefill_done = on_prefill_done
        self.on_finish = on_finish
        self.itl = itl_sink if itl_sink is not None else []
        self.in_use: dict[int, int] = {}  # prompt block id -> ref count
        self.used = 0  # physical blocks in use (in-use ids + anonymous + reserved)
        self.waiting: deque[Job] = deque()  # to be (re)computed, FCFS
        self.ready: deque[Job] = deque()  # decode role: KV arrived, waiting for a sequence slot
        self.running: list[Job] = []
        self.busy = False
        self.stats = InstanceStats()
        self.window: DecodeWindow | None = None
        self._window_version = 0
        cache.resize_top(total_blocks)

    # ------------------------------------------------------------------ load

    @property
    def load(self) -> int:
        """Requests queued or running here (the least-loaded router's measure)."""
        return len(self.waiting) + len(self.ready) + len(self.running)

    def cached_prefix_blocks(self, blocks: Sequence[int]) -> int:
        """Length of the longest prefix of ``blocks`` held in this instance's HBM (in use or cached)."""
        levels = self.cache.lookup_prefix(blocks, self.in_use)
        lower = np.flatnonzero(levels)  # held in a lower tier
        return int(lower[0]) if len(lower) else len(levels)

    # ------------------------------------------------------------ block pool

    def _blocks_for(self, job: Job, tokens: int) -> tuple[int, int]:
        """(prompt blocks, anonymous blocks) a job holding KV for ``tokens`` tokens needs."""
        need = -(-tokens // self.block_size)
        prompt = min(need, len(job.blocks))
        return prompt, need - prompt

    def _new_physical(self, job: Job, tokens: int) -> int:
        """Physical blocks that growing ``job`` to ``tokens`` would allocate."""
        prompt, anonymous = self._blocks_for(job, tokens)
        fresh = sum(1 for key in job.blocks[job.held:prompt] if key not in self.in_use)
        return fresh + max(0, anonymous - job.anonymous)

    def _grow(self, job: Job, tokens: int) -> None:
        prompt, anonymous = self._blocks_for(job, tokens)
        in_use = self.in_use
        fresh = []
        for key in job.blocks[job.held:prompt]:
            if key in in_use:
                in_use[key] += 1
            else:
                fresh.append(key)
                in_use[key] = 1
        self.used += len(fresh)
        if self.prefix_caching and fresh:
            self.cache.take_chain(fresh)  # a cached copy (any tier) becomes each block; else it is computed
        job.held = max(job.held, prompt)
        if anonymous > job.anonymous:
            self.used += anonymous - job.anonymous
            job.anonymous = anonymous
        if self.prefix_caching:
            self.cache.resize_top(self.total_blocks - self.used)

    def release(self, job: Job) -> None:
        """Free a job's blocks; its prompt blocks return to the prefix cache, deepest first."""
        in_use = self.in_use
        freed = []
        for key in reversed(job.blocks[: job.held]):
            count = in_use[key] - 1
            if count:
                in_use[key] = count
            else:
                del in_use[key]
                freed.append(key)
        self.used -= len(freed) + job.anonymous
        job.held = job.anonymous = 0
        if self.prefix_caching:
            self.cache.resize_top(self.total_blocks - self.used)
            if freed:
                self.cache.touch_chain(freed, job.position + np.arange(len(freed) - 1, -1, -1))

    def _preempt(self, job: Job) -> None:
        self.running.remove(job)
        self.release(job)
        job.record.preemptions += 1
        job.target = job.record.input_tokens + job.generated  # recompute prompt and generated tokens
        job.computed = 0
        self.waiting.appendleft(job)

    # --------------------------------------------------------------- arrivals

    def submit(self, job: Job) -> None:
        """A new request (unified/prefill) or one whose KV has arrived (decode)."""
        if self.role == DECODE:
            self.ready.append(job)
        else:
            self.waiting.append(job)
        self._interrupt_window()
        if self.role == DECODE and self.window is None:
            self._admit_ready()
        self._kick()

    def reserve(self, job: Job) -> int | None:
        """Decode role: hold blocks for a job's prompt KV before it is sent here.

        Returns the prompt blocks that must be transferred (those not already held here),
        or None when memory is short (the caller retries after a release).
        """
        present = self.cached_prefix_blocks(job.chain) if self.prefix_caching else 0
        tokens = job.record.input_tokens
        if self._new_physical(job, tokens + 1) > self.total_blocks - self.used:
            return None
        self._grow(job, tokens + 1)
        job.computed = job.target = tokens
        return len(job.blocks) - present

    def _admit_ready(self) -> None:
        while self.ready and len(self.running) < self.max_seqs:
            self.running.append(self.ready.popleft())

    def _kick(self) -> None:
        if not self.busy and (self.waiting or self.running or self.ready):
            self.busy = True
            self.engine.after(0.0, self._step)

    # --------------------------------------------------------------- stepping

    def _lookup(self, job: Job) -> tuple[list[int], int, float]:
        """The tier of each block of the longest cached prefix, the tokens it covers, and the
        seconds to load the lower-tier part."""
        levels: list[int] = []
        if self.prefix_caching:  # blocks in use count as HBM hits
            levels = self.cache.lookup_prefix(job.chain, self.in_use).tolist()
        cached = min(len(levels) * self.block_size, job.target - 1)  # vLLM recomputes at least one token
        load = 0.0
        per_tier: dict[int, int] = {}
        for level in levels[: -(-cached // self.block_size) if cached else 0]:
            if level > 0:
                per_tier[level] = per_tier.get(level, 0) + 1
        for level, count in per_tier.items():
            load += self.cache.tiers[level].read_time(count * self.cache.block_bytes)
        return levels, cached, load

    # ------------------------------------------------------- decode windows

    def _window_steps(self) -> int:
        """How many decode-only steps can run back to back now (0: take a single step instead).

        Only when every running request is decoding and nothing waits: then each step is the
        same batch with one more token each, until the first request finishes or blocks run out.
        """
        running = self.running
        if self.waiting or self.ready or not running or len(running) > self.max_tokens:
            return 0
        if any(job.computed < job.target for job in running):
            return 0
        steps = min(MAX_WINDOW_STEPS, min(job.record.output_tokens - job.generated for job in running))
        computed = np.fromiter((job.computed for job in running), dtype=np.int64, count=len(running))
        current = np.fromiter((job.held + job.anonymous for job in running), dtype=np.int64, count=len(running))
        free = self.total_blocks - self.used
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

    def _start_window(self, steps: int) -> None:
        jobs = list(self.running)
        computed = np.fromiter((job.computed for job in jobs), dtype=np.int64, count=len(jobs))
        for job in jobs:
            self._grow(job, job.computed + steps)
        kv_first = int(computed.sum()) + len(jobs)
        kv = kv_first + len(jobs) * np.arange(steps, dtype=np.float64)
        ends = np.cumsum(self.compute.decode_times(len(jobs), kv))
        self.window = DecodeWindow(jobs, computed, ends, self.engine.now, steps)
        self._window_version += 1
        self.engine.at(self.engine.now + float(ends[-1]), self._window_done, self._window_version)

    def _interrupt_window(self) -> None:
        """Work arrived: end the window with the step in progress, so it joins the next step."""
        window = self.window
        if window is None:
            return
        # Step ends as absolute times, computed as their events are scheduled (start + offset):
        # comparing ``now`` with them stays exact at any magnitude of simulated time.
        now = self.engine.now
        step_ends = window.start + window.ends[: window.steps]
        done = int(np.searchsorted(step_ends, now, side="right"))
        steps = done if done and step_ends[done - 1] == now else done + 1
        if steps < window.steps:
            window.steps = steps
            self._window_version += 1
            self.engine.at(window.start + float(window.ends[steps - 1]), self._window_done, self._window_version)

    def _window_done(self, version: int) -> None:
        if version != self._window_version:
            return  # superseded by an interruption
        window, self.window = self.window, None
        k, start, now = window.steps, window.start, self.engine.now
        ends = window.ends[:k]
        gaps = ends.copy()
        gaps[1:] -= ends[:-1]
        gaps = gaps.tolist()
        finished = []
        bs = self.block_size
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
            needed_anonymous = max(0, -(-job.computed // bs) - len(job.blocks)) if job.computed else 0
            if job.anonymous > needed_anonymous:  # blocks planned for steps the interruption cut off
                self.used -= job.anonymous - needed_anonymous
                job.anonymous = needed_anonymous
            if job.generated >= job.record.output_tokens:
                finished.append(job)
        if self.prefix_caching:
            self.cache.resize_top(self.total_blocks - self.used)
        self.stats.steps += k
        self.stats.busy_s += float(window.ends[k - 1])
        self._finish(finished)

    # --------------------------------------------------------------- single steps

    def _step(self) -> None:
        steps = self._window_steps()
        if steps > 1:
            self._start_window(steps)
            return
        now = self.engine.now
        budget = self.max_tokens
        shape = StepShape()
        batch: list[tuple[Job, int]] = []
        load_total = 0.0
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            job = self.running[i]
            decoding = job.computed >= job.target
            n = 1 if decoding else min(job.target - job.computed, budget)
            while self._new_physical(job, job.computed + n) > self.total_blocks - self.used:
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim is job:
                    break
            if job not in self.running:
                continue
            self._grow(job, job.computed + n)
            batch.append((job, n))
            budget -= n
            if decoding:
                shape.add_decode(job.computed + 1)
            else:
                shape.add_prefill(n, job.computed, samples=job.computed + n >= job.target)
            i += 1
        while not preempted and self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            job = self.waiting[0]
            levels, cached, load = self._lookup(job)
            n = min(job.target - cached, budget)
            job.computed = 0
            if self._new_physical(job, cached + n) > self.total_blocks - self.used:
                if -(-(job.target + 1) // self.block_size) > self.total_blocks:  # could never fit, even alone
                    raise InputError(
                        f"request {job.record.request_id} ({job.target} tokens) needs more KV blocks than instance "
                        f"{self.index} has ({self.total_blocks} blocks of {self.block_size} tokens); raise "
                        f"gpu_memory_utilization, serving.num_gpu_blocks or tensor_parallel_size, or cap prompt lengths")
                break
            self.waiting.popleft()
            self._grow(job, cached + n)
            job.computed = cached
            if not job.admitted_once:  # hits count once per request, not again after a preemption
                job.admitted_once = True
                stats = self.stats
                stats.accesses += len(job.blocks)
                stats.hits += len(levels)
                for level in levels:
                    stats.tier_hits[level] = stats.tier_hits.get(level, 0) + 1
                job.record.scheduled = now
                job.record.kv_load = load
                job.record.cached_tokens = cached
                job.record.instance = self.index
                self.stats.prompt_tokens += job.record.input_tokens
                self.stats.cached_tokens += cached
            load_total += load
            self.running.append(job)
            batch.append((job, n))
            budget -= n
            shape.add_prefill(n, cached, samples=cached + n >= job.target)
        if not batch:
            self.busy = False
            return
        duration = self.compute.step_time(shape) + load_total
        self.stats.steps += 1
        self.stats.busy_s += duration
        self.engine.after(duration, self._step_done, batch)

    def _emit(self, job: Job, now: float) -> None:
        job.generated += 1
        record = job.record
        if job.generated == 1:
            record.first_token = now
        else:
            self.itl.append(now - job.last_token_time)
        job.last_token_time = now
        record.last_token = now

    def _step_done(self, batch: list[tuple[Job, int]]) -> None:
        now = self.engine.now
        finished = []
        for job, n in batch:
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
        self._finish(finished)

    def _finish(self, finished: list[Job]) -> None:
        for job in finished:
            self.running.remove(job)
            if self.role == PREFILL:
                self.on_prefill_done(job)  # blocks stay held until its KV has been sent
            else:
                self.release(job)
                if self.on_finish is not None:
                    self.on_finish(job)
        self._admit_ready()
        self.busy = False
        self._kick()
