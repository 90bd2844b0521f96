"""One serving instance (a TP group of GPUs): vLLM v1's engine core in simulated time.

An instance puts together a ``BlockPool`` (its ``num_gpu_blocks`` physical KV blocks), a
``KVCacheManager`` (prefix lookups and allocation over its multi-tier cache), a
``Scheduler`` (queues, token budget, preemption, decode windows) and a compute model that
prices each step; the engine's events drive it: a step is scheduled, priced, and finished
when its time has passed. Roles (``unified``, ``prefill``, ``decode``) are described in
``sim.serving.scheduler``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Callable

from sim.config import ServingConfig
from sim.errors import InputError
from sim.report.metrics import RequestTable, WeightedSamples
from sim.serving.block_pool import BlockPool
from sim.serving.compute_model import ComputeModel
from sim.serving.data_parallel import LockstepGroup
from sim.serving.decode_windows import DecodeWindow
from sim.serving.engine import Engine
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager, TieredCache
from sim.serving.moe import DataParallelShare
from sim.serving.scheduler import DECODE, PREFILL, UNIFIED, Scheduler, StepBatch
from sim.serving.utilization import WorkTotals
from sim.serving.window_claims import CLAIM_PRIORITY, WindowClaims

__all__ = ["DECODE", "PREFILL", "UNIFIED", "Instance", "Job"]

class Instance:
    """A scheduler, a block pool with its prefix cache, and a compute model, driven by the engine."""

    def __init__(self, index: int, role: str, engine: Engine, serving: ServingConfig, total_blocks: int,
                 cache: TieredCache, compute: ComputeModel, table: RequestTable, itl: WeightedSamples,
                 on_prefill_done: Callable[[Job], None] | None = None,
                 on_finish: Callable[[Job], None] | None = None, prefix_caching: bool | None = None,
                 shared_blocks: bool = True, kv_manager: Callable[..., KVCacheManager] = KVCacheManager,
                 on_drained: Callable[[Instance], None] | None = None):
        if total_blocks <= 0:
            raise InputError(f"instance {index}: no KV blocks fit in GPU memory (num_gpu_blocks={total_blocks})")
        self.index = index
        self.role = role
        self.engine = engine
        self.compute = compute
        self.on_prefill_done = on_prefill_done
        self.on_finish = on_finish
        # Off when disabled, or when the caller knows no block can repeat (nothing could ever hit);
        # ``shared_blocks`` False: no block id occurs in two requests, so the pool only counts.
        caching = serving.enable_prefix_caching if prefix_caching is None else prefix_caching
        # without prefix caching no block is found by its hash, so two requests never share one (vLLM's
        # KVCacheCoordinatorNoPrefixCache): the pool only counts
        self.pool = BlockPool(total_blocks, engine, shared=shared_blocks and caching)
        # (``kv_manager``: a hybrid model's, ``sim.serving.hybrid_kv_cache_manager``, where vLLM's hybrid one runs)
        self.kv = kv_manager(self.pool, cache, serving.block_size, caching, clock=lambda: engine.now)
        self.claims = WindowClaims(engine, self.pool, self.kv)  # a decode window's reserved blocks leaving the cache
        if caching:
            self.kv.on_change = self.claims.recheck
        self.scheduler = Scheduler(index, role, serving, self.kv, table, itl, window=compute.sliding_window)
        self.scheduler.on_landed = self.submit  # a connector's load landed: read in as a new request is
        # (PD decode: its preempted requests are back, ``reserve`` may take KV waiting for it)
        self.scheduler.on_drained = None if on_drained is None else partial(on_drained, self)
        self.busy = False
        self.batch_tokens = 0  # tokens in the step in progress (0: idle)
        self.work = WorkTotals()
        self.window: DecodeWindow | None = None
        self._window_share: DataParallelShare | None = None  # its part in its group's steps of the window
        self._window_version = 0
        self.group: LockstepGroup | None = None  # its data-parallel group, which then drives its steps
        self._batch_end = 0.0  # when the single step in flight ends

    # ------------------------------------------------------------------ load

    @property
    def load(self) -> int:
        """Requests queued or running here (the least-loaded router's measure)."""
        return self.scheduler.load

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV blocks in use."""
        return self.pool.used / self.pool.total

    @property
    def has_free_slot(self) -> bool:
        """A decode instance can take one more sequence now."""
        s = self.scheduler
        return s.occupied_seqs + len(s.ready) + len(s.inbox) < s.max_seqs

    def cached_prefix_blocks(self, blocks: Sequence[int]) -> int:
        """Length of the longest prefix of ``blocks`` held in this instance's HBM (in use or cached)."""
        return self.kv.cached_prefix_blocks(blocks)

    # --------------------------------------------------------------- arrivals

    def submit(self, job: Job) -> None:
        """A new request (unified/prefill) or one whose KV has arrived (decode): read by the engine now when it is
        idle, else when its step in flight ends, and seen by the plan after that (asynchronously: by the one after,
        the next step having been planned already; a decode window runs on through that step)."""
        scheduler = self.scheduler
        now = self.engine.now
        scheduler.inbox.append(job)
        if not self.in_flight:
            job.read_at = now
            self._cut_window(ahead=False)
            scheduler.take_in(now)
        else:
            window = self.window
            through = None if window is None else self._steps_through_now(window)  # its step in progress
            job.read_at = self._batch_end if window is None else window.start + window.ends[through - 1]
            self._cut_window(ahead=scheduler.async_scheduling, through=through)
            if window is not None and scheduler.async_scheduling:
                # single steps read it as the step in progress ends, just after planning the next one
                # (``after_plan``): one holding its blocks (``ready``) joins the running list there, counted running
                # (a landed load's scheduled) from then, not from the end of the step the window runs on through
                self.engine.at(job.read_at, self._read_in_window, window, priority=CLAIM_PRIORITY)
        self._kick()

    def _read_in_window(self, window: DecodeWindow) -> None:
        """``after_plan``'s reading at a step boundary of a window that runs on through the next step (``submit``)."""
        if self.window is window and window.start + window.ends[window.steps - 1] > self.engine.now:
            self.scheduler.take_in(self.engine.now)

    @property
    def in_flight(self) -> bool:
        """A step or decode window of this instance is running (the engine waits for its output)."""
        return self.batch_tokens > 0

    def reserve(self, job: Job, backoff: int = 0) -> int | None:
        """Decode role: hold blocks for a job's prompt KV before it is sent here.

        ``backoff``: the prompt's last tokens the prefill side left to this side (a Gated DeltaNet hybrid's one,
        ``sim.serving.state_transfer``): the blocks of the tokens sent are held, the step computing the rest takes
        its own; where this instance holds every block sent already, nothing is sent and it computes from the hit
        its state groups agree on (``AlignStateKVCacheManager.local_hit``). Returns the prompt blocks that must be
        transferred (those not already held here), or None when memory is short (the caller retries after a release)
        or this instance's own waiting (preempted) requests are ahead of it (the caller retries when a plan has
        admitted them all: ``on_drained``). vLLM's decode side admits a remote-KV request in its waiting loop
        (``get_num_new_matched_tokens`` -> ``allocate_slots`` for the external tokens -> WAITING_FOR_REMOTE_KVS),
        FCFS behind the preempted ones ``_preempt_request`` prepended, and stops at the first that does not fit
        (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``).
        """
        if self.scheduler.waiting:
            return None
        kv = self.kv
        tokens = job.input_tokens
        if kv.stepwise_windows and self.window is not None:
            # its later steps take their blocks as they start, unchecked: single steps would plan them after these
            # blocks are taken, so the window ends with its step in progress
            self._cut_window(ahead=False)
        present = kv.receive(job, tokens)  # (none of the blocks still on their way here for another request)
        loaded = tokens - backoff  # the prompt tokens whose KV the prefill side sends
        # the first step here feeds the prompt's last token to sample the first output: recomputed over the whole
        # prompt's KV it was sent (vLLM's scheduler counts a received prompt one token short,
        # ``Scheduler._update_waiting_for_remote_kv``: "num_computed_tokens -= 1"), so it writes no new slot; a
        # hybrid's prefill side that leaves the last tokens unsent (``backoff``) sends them as decodes here
        computed = target = tokens - 1 if not backoff else loaded
        slots = tokens if not backoff else loaded
        if backoff:
            if present * kv.block_size >= loaded:  # nothing to send: computed here from the agreed hit
                computed = kv.local_hit(job, present) * kv.block_size
                slots, target, loaded = computed + 1, tokens, 0
            job.computed = computed  # (a state group's blocks follow the computed tokens: AlignStateKVCacheManager)
        need = kv.new_blocks(job, slots)
        pool = self.pool
        free = pool.free
        if free < need <= free + pool.reserved:
            self.settle()  # the blocks a decode window reserved for later steps are free as single steps see them
            free = pool.free
        if need > free:
            return None
        kv.allocate(job, slots)
        job.computed, job.target = computed, target
        if not loaded:
            return 0
        sent = kv.sent_blocks(job, present)
        if sent:
            kv.expect(job, present)
        return sent

    def landed(self, job: Job) -> None:
        """Decode role: the KV ``reserve`` held blocks for has arrived: its blocks are found by later requests."""
        self.kv.landed(job)

    def release(self, job: Job) -> None:
        """Free a job's blocks (PD: a prefilled job once its KV has been sent) and look for work."""
        self.kv.free(job)
        self._kick()

    def _kick(self) -> None:
        group = self.group
        if group.stepping if group is not None else self.busy:
            return  # a step (its group's) is planned or running: its next plan takes what is there
        if not self.scheduler.has_work:
            self.after_plan()  # nothing to plan: the finished leave now
        elif group is not None:
            group.wake()
        else:
            self.busy = True
            self.engine.after(0.0, self._step)

    # --------------------------------------------------------------- stepping

    def before_plan(self) -> None:
        """The plan sees what the engine read: everything read by now (synchronous), or, asynchronously, only what it
        read before its previous plan (the next step was planned before the one in flight's arrivals were read)."""
        scheduler = self.scheduler
        if scheduler.inbox:
            scheduler.take_in(self.engine.now, before=scheduler.async_scheduling)

    def after_plan(self) -> bool:
        """Asynchronous scheduling: what the plan just made could not see happens now (the requests that finished
        in the step before leave, freeing their slots and blocks; what arrived is read). Returns whether anything did."""
        scheduler = self.scheduler
        leaving = scheduler.leaving
        if leaving:
            scheduler.leaving = []
            self._leave(leaving)
        return (bool(scheduler.inbox) and scheduler.take_in(self.engine.now)) or bool(leaving)

    def _step(self) -> None:
        scheduler = self.scheduler
        if scheduler.inbox:  # (``before_plan``)
            scheduler.take_in(self.engine.now, before=scheduler.async_scheduling)
        steps = scheduler.window_steps()
        if steps > 1:
            self.run_window(scheduler.start_window(steps, self.engine.now, self.compute.decode_times))
            self.after_plan()  # (a window starts only when nothing waits to be read)
            return
        batch = scheduler.schedule(self.engine.now)
        if batch is not None:
            self.run_batch(batch, self.compute.step_time(batch.shape) + batch.load_s)
            self.after_plan()
            return
        self.busy = False
        if self.after_plan():  # slots, blocks or requests the empty plan could not see: plan again now
            self._kick()

    def run_batch(self, batch: StepBatch, duration: float, share: DataParallelShare | None = None) -> None:
        """Run a planned step that takes ``duration`` seconds from now (its own time, or its group's: ``share``, its
        part in the group's step)."""
        self.busy = True
        batch.start = self.engine.now
        batch.duration = duration
        self._batch_end = batch.start + duration
        self.work.add_step(batch.shape, duration, share)
        self.batch_tokens = batch.shape.tokens
        self.engine.after(duration, self._step_done, batch)

    def _step_done(self, batch: StepBatch) -> None:
        self.batch_tokens = 0
        self._finish(self.scheduler.finish_step(batch, self.engine.now))

    def run_window(self, window: DecodeWindow, share: DataParallelShare | None = None) -> None:
        """Run a planned decode window (its steps priced by this instance, or by its group with ``share``). The blocks
        it took for later steps leave the prefix cache as those steps start, as single steps would take them."""
        self.busy = True
        self.window = window
        self._window_share = share
        self.batch_tokens = len(window.jobs)
        self._window_version += 1
        if window.growth:  # the later steps' blocks, reserved until each step starts (at its group's pace)
            pool = self.pool
            pool.reserve(window, window.growth, self.scheduler.block_size)
            if self.kv.prefix_caching:  # the cache gives them up as their steps start (after the instant's other
                # events, as a single step plans itself last: CLAIM_PRIORITY), an event only where one pushes blocks
                # out of HBM
                self.claims.start()
        # a stepwise manager's steps allocate as they start (CLAIM_PRIORITY)
        for step in (sorted(window.allocations) if window.allocations else ()):
            self.engine.at(window.start + window.ends[step - 1], self._window_allocations, window, step,
                           priority=CLAIM_PRIORITY)
        self.engine.at(window.start + window.ends[-1], self._window_done, self._window_version)

    def _window_allocations(self, window: DecodeWindow, step: int) -> None:
        """Step ``step`` (from 0) of a stepwise manager's window starts: its jobs whose blocks change allocate as a
        single step plans them (none if the window was cut short before it)."""
        if self.window is window and step < window.steps:
            self.kv.window_step(window.jobs, window.computed, step, window.allocations[step])

    def settle(self) -> None:
        """Bring a decode window in progress to what single steps hold now: it ends with its step in progress and the
        blocks reserved beyond are returned. Asynchronous scheduling or not: single steps take a step's blocks as it is
        planned, when the step before it ends (``_step``), so blocks taken now (``reserve``) are gone before the next
        step's plan, which may then preempt; a window running on through that step would have taken its blocks
        already (unlike an arrival, which the next step's plan does not see either: ``submit``'s ``ahead``)."""
        if self.window is None:
            return
        self._cut_window(ahead=False)
        self.scheduler.release_planned(self.window)

    def _cut_window(self, ahead: bool, through: int | None = None) -> None:
        """End the window in progress with its step in progress, or with the one after it (``ahead``: planned
        already); the whole group's, in a data-parallel group (whose members' windows share their steps' times, so
        ``through``, the steps up to the one in progress when known, is every member's)."""
        if self.group is not None:
            self.group.interrupt(ahead, through)
        else:
            self.interrupt_window(ahead, through)

    def interrupt_window(self, ahead: bool = False, through: int | None = None) -> None:
        """Work arrived: end the window with the step in progress, so it joins the next step (``ahead``: with the
        step after it, which the engine planned before reading the work, so it joins the one after)."""
        window = self.window
        if window is None:
            return
        steps = (self._steps_through_now(window) if through is None else through) + (1 if ahead else 0)
        if steps < window.steps:
            window.steps = steps  # the later steps' reserved blocks are never taken
            self._window_version += 1
            self.engine.at(window.start + window.ends[steps - 1], self._window_done, self._window_version)

    def _steps_through_now(self, window: DecodeWindow) -> int:
        """The window's steps up to the one in progress now (the one ending now, at a step boundary)."""
        now = self.engine.now
        done = window.ended(now, window.steps)
        return done if done and window.start + window.ends[done - 1] == now else done + 1

    def _window_done(self, version: int) -> None:
        if version != self._window_version:
            return  # superseded by an interruption
        window, self.window = self.window, None
        self.batch_tokens = 0
        finished = self.scheduler.finish_window(window, self.engine.now)
        self.work.add_decode_window(window.first, window.steps, window.ends[window.steps - 1], self._window_share,
                                    window)
        self._finish(finished)

    def _finish(self, finished: list[Job]) -> None:
        """A step or window ended: its finished requests leave the batch (with asynchronous scheduling after the
        next plan, which vLLM made before this step's output) and the next step is planned."""
        scheduler = self.scheduler
        running = scheduler.running
        if finished:
            for job in finished:
                running.remove(job)
            if scheduler.async_scheduling:
                scheduler.leaving.extend(finished)
            else:
                self._leave(finished)
        if scheduler.ready:
            scheduler.admit_ready(self.engine.now)
        self.busy = False
        self._kick()

    def _leave(self, finished: list[Job]) -> None:
        """Finished requests give up their slots: a prefilled one goes on to its decode instance (its blocks held
        until its KV is sent), a completed one frees its blocks."""
        last_token = self.scheduler.table.last_token
        for job in finished:
            if self.role == PREFILL:
                self.on_prefill_done(job)
            else:
                last_token[job.rid] = job.last_token_time
                self.kv.free(job)
                if self.on_finish is not None:
                    self.on_finish(job)
        self.scheduler.admit_ready(self.engine.now)
