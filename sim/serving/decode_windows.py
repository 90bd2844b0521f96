"""Decode windows of an instance's scheduler (``sim.serving.scheduler``): when every running request is decoding and
nothing waits, each step is the same batch with one more token each, so K steps are planned at once (same result as
K single steps) until the first request finishes or blocks run out. Planning, starting and finishing a window cost
O(batch) in plain arithmetic, whatever K. ``DecodeWindows`` is mixed into ``Scheduler``: it reads the scheduler's
queues, KV cache manager, request table and token-gap samples."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from sim.serving.compute import StepShape
from sim.serving.job import Job

MAX_WINDOW_STEPS = 4096


@dataclass(slots=True, eq=False)
class DecodeWindow:
    """K consecutive decode-only steps planned at once (same result as K single steps)."""

    jobs: list[Job]
    computed: list[int]  # each job's computed tokens at the window start
    first: StepShape  # the first step's shape
    times: np.ndarray  # each step's duration
    ends: list[float]  # cumulative step end times from the start (a list: read one at a time, many times)
    start: float
    steps: int
    # per job whose private blocks grow after the first step: the step its first such block is needed at (2 or
    # later) and how many, one every block_size steps; reserved at the window's start, each in use from its
    # step's start (``BlockPool.reserve``)
    growth: list[tuple[int, int]] = field(default_factory=list)
    # a stepwise manager's (``KVCacheManager.stepwise_windows``): per later step (1 … steps - 1, from 0), the jobs
    # (their indices) whose blocks change as it starts, allocated then (``Instance.run_window``)
    allocations: dict[int, list[int]] = field(default_factory=dict)

    def ended(self, t: float, among: int, inclusive: bool = True) -> int:
        """How many of the first ``among`` steps end before ``t`` (or at it, ``inclusive``). Step ends are compared as
        absolute times, computed as their events are scheduled (start + offset), which stays exact at any magnitude
        of simulated time: located on the offsets, then settled on absolute times."""
        start, ends = self.start, self.ends
        i = (bisect_right if inclusive else bisect_left)(ends, t - start, 0, among)
        if inclusive:
            while i and start + ends[i - 1] > t:
                i -= 1
            while i < among and start + ends[i] <= t:
                i += 1
        else:
            while i and start + ends[i - 1] >= t:
                i -= 1
            while i < among and start + ends[i] < t:
                i += 1
        return i


class DecodeWindows:
    """The scheduler's decode windows: how many steps can run back to back, their blocks, their tokens."""

    def window_steps(self) -> int:
        """How many decode-only steps can run back to back now (0 or 1: take a single step instead)."""
        running = self.running
        if self.waiting or self.ready or self.inbox or not running or len(running) > self.max_tokens:
            return 0  # (arrivals not read yet: their step ends the window, take single steps until it)
        steps = MAX_WINDOW_STEPS
        for job in running:
            if job.computed < job.target:
                return 0
            left = job.output_tokens - job.generated
            if left < steps:
                steps = left
        if steps <= 1:
            return steps
        free = self.kv.pool.free
        # A running request's blocks cover its computed tokens, so k more tokens need at most
        # ceil(k / block_size) new blocks each (in each group that grows): when that fits, the exact count is not
        # needed.
        if (len(running) * -(-steps // self.block_size) * self.kv.groups_growing > free
                and self._window_blocks(steps) > free):
            lo, hi = 0, steps
            while lo < hi:  # largest k whose new blocks fit
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if self._window_blocks(mid) <= free else (lo, mid - 1)
            steps = lo
        return steps

    def _window_blocks(self, steps: int) -> int:
        """New blocks the running batch needs for ``steps`` more tokens each (at most)."""
        window_blocks = self.kv.window_blocks
        return sum(window_blocks(job, steps) for job in self.running)

    def start_window(self, steps: int, now: float, decode_times) -> DecodeWindow:
        """Allocate the blocks of ``steps`` decode steps of the running batch; ``decode_times`` prices them."""
        jobs = self.running.copy()
        kv = self.kv
        computed = [job.computed for job in jobs]
        allocations: dict[int, list[int]] = {}
        if kv.stepwise_windows:  # the first step allocates as a single step would; the later ones as they start
            kv.begin_step()
            for job, c in zip(jobs, computed, strict=True):
                kv.allocate(job, c + 1)
            allocations = kv.window_changes(jobs, computed, steps)
            now_blocks, growth = 0, []
        else:
            now_blocks, growth = self._plan_growth(jobs, computed, steps)
        # each new token attends to the KV before it and itself
        if self.window:
            first = StepShape.decode_batch(np.array(computed) + 1, self.window)
        else:
            first = StepShape(decode_seqs=len(jobs), decode_kv_tokens=sum(computed) + len(jobs),
                              decode_kv_max=max(computed) + 1, decode_kv_min=min(computed) + 1)
        times = decode_times(first, steps)
        window = DecodeWindow(jobs, computed, first, times, times.cumsum().tolist(), now, steps, growth, allocations)
        if now_blocks:
            kv.pool.allocate(now_blocks)
            kv.sync_free()
        return window

    def _plan_growth(self, jobs: list[Job], computed: list[int], steps: int) -> tuple[int, list[tuple[int, int]]]:
        """The window's private blocks, planned at its start: how many its first step takes, and per job growing after
        it, (first later step, blocks) to reserve (``BlockPool.reserve``)."""
        kv, bs = self.kv, self.block_size
        now_blocks = 0  # new private blocks the first step takes
        growth = []  # (first later step, blocks) per job growing after the first step
        for job, c in zip(jobs, computed):
            need = -(-(c + steps) // bs)
            prompt = len(job.blocks)
            held = job.held
            if need > prompt and held == prompt:  # only private blocks grow (the usual case)
                private = need - prompt
                anonymous = job.anonymous
                if private > anonymous:
                    # the block past its (prompt + anonymous) × bs tokens is needed from step (prompt + anonymous)
                    # × bs - c + 1 on (the first step at the earliest), each next one bs steps later
                    step, blocks = (prompt + anonymous) * bs - c + 1, private - anonymous
                    if step == 1:
                        now_blocks += 1
                        step, blocks = step + bs, blocks - 1
                    if blocks:
                        growth.append((step, blocks))
                    job.anonymous = private
            elif need > held:  # a prompt not wholly held yet (else its next tokens fit in its prompt's blocks)
                kv.allocate(job, c + steps)
        return now_blocks, growth

    def release_planned(self, window: DecodeWindow) -> None:
        """Give back the private blocks planned for the window's steps after its ``steps`` (cut short by an
        interruption): single steps would not have taken them."""
        if window.steps == len(window.times):
            return  # not cut short: every block it reserved is in use
        bs, steps = self.block_size, window.steps
        for job, c in zip(window.jobs, window.computed, strict=True):
            needed = -(-(c + steps) // bs) - len(job.blocks)  # private blocks the steps' tokens fill
            if job.anonymous > needed:  # (the pool counts only the blocks of the steps that ran)
                job.anonymous = max(0, needed)

    def finish_window(self, window: DecodeWindow, now: float) -> list[Job]:
        """The window's ``steps`` steps are done: tokens emitted, unused planned blocks returned."""
        k = window.steps
        first_token = window.start + window.ends[0]
        table_first = self.table.first_token
        finished = []
        newcomers = 0
        jobs = window.jobs
        kv = self.kv
        stepwise = kv.stepwise_windows
        # blocks planned for steps an interruption cut off go back (in the loop below where nothing reads them first)
        cut = k != len(window.times)
        if cut and stepwise:
            self.release_planned(window)
        kv.pool.finish_window()  # (reads the window's growth, not its jobs)
        if stepwise:
            kv.end_window(jobs, window.computed, k)
        cut = cut and not stepwise
        bs = self.block_size
        for job, c in zip(jobs, window.computed):
            if cut:  # ``release_planned``
                needed = -(-(c + k) // bs) - len(job.blocks)  # private blocks the steps' tokens fill
                if job.anonymous > needed:
                    job.anonymous = needed if needed > 0 else 0
            generated = job.generated
            if not generated:
                table_first[job.rid] = first_token
                newcomers += 1
            job.computed = c + k
            job.generated = generated = generated + k
            job.last_token_time = now
            if generated >= job.output_tokens:
                finished.append(job)
        batch = len(jobs)
        self.itl.add_steps(window.times, k, batch, batch - newcomers)  # a first token has no gap before it
        return finished
