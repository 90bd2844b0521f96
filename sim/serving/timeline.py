"""Time series of a serving run on a fixed grid of simulated time, bounded whatever the run length.

A sampling event every ``interval`` seconds reads the instances' state (requests queued for
admission or, in PD, for decode memory or their KV in transfer, in a cluster for their KV connector's load; requests
running; KV blocks in use) and their
cumulative work counters (steps, tokens and sequences scheduled, per instance role). When
the samples would exceed ``max_points``, every other one is dropped and the interval
doubles, so the grid stays regular (start + i × interval) and its size stays within
``max_points`` for any run. Per-interval figures (arrivals and completions from the request
table; steps, tokens and sequences from the counters' differences) are derived at the end:
nothing is recorded per event. A step counts in the interval it starts in, as a single step adds itself to the
counters when it starts; a decode window's steps are added when it ends, and the samples taken while it ran are then
given the steps that had started before each (``book_back``, from the window's own step times), so its steps count
where they ran, as the same steps taken singly would (a window that spans samples costs, as it ends, a compiled
loop over them and its steps: ~3 us a window in a fleet's run).

A sample sums over every instance built (a cluster's 10,240), so it reads them with ``map`` over flat lists of the
objects it reads (each instance's queues and scheduler, none of them ever rebound): the loops run in C, with the same
integer sums; the KV blocks in use (``PoolTotals``) and the work counters' sums per role (``WorkTotals.tally``) are
kept as they change.
"""

from __future__ import annotations

from functools import partial
from operator import attrgetter
from typing import Callable, Sequence

import numpy as np

from sim.jit import njit
from sim.report.metrics import RequestTable
from sim.serving.block_pool import PoolTotals
from sim.serving.decode_windows import DecodeWindow
from sim.serving.engine import Engine
from sim.serving.instance import Instance
from sim.serving.scheduler import Scheduler
from sim.serving.utilization import ScheduledWork

MAX_POINTS = 1000
# Before every other event at the same instant (arrivals run at -1): a sample sees the state up to,
# not including, its instant, so the counters' differences are the work of [t_i, t_i+1) exactly.
SAMPLE_PRIORITY = -2

_LOADING = attrgetter("loading")


class Timeline:
    """Sums over ``instances`` sampled every ``interval`` seconds from ``start``."""

    def __init__(self, engine: Engine, instances: Sequence[Instance], start: float, span: float,
                 extra_queued: Callable[[], int] = lambda: 0, max_points: int = MAX_POINTS):
        if max_points < 2 or max_points % 2:
            raise ValueError("max_points must be an even number >= 2")
        self.engine = engine
        self.instances: list[Instance] = []
        self.roles: list[str] = []
        self.extra_queued = extra_queued
        self.start = start
        self.interval = max(span, 1e-3) / (max_points // 4)  # the arrivals fill a quarter of the grid
        self.max_points = max_points
        self.total_blocks = 0
        self.state = np.zeros((3, max_points), dtype=np.int64)  # queued, running, KV blocks used
        self.work = np.zeros((0, 3, max_points), dtype=np.int64)  # per role: steps, tokens, seqs so far
        self.n = 0
        self._grid = self._times()  # the sample times, as the events have them (``book_back`` reads them)
        # what a sample reads, flat: every instance's queued requests (inbox, waiting, ready), running lists,
        # schedulers (their ``loading``) and pools; per role, its instances' work counters summed
        self._queues: list[Sequence] = []
        self._running: list[Sequence] = []
        self._schedulers: list[Scheduler] = []
        self._pools = PoolTotals()  # every pool's blocks in use, kept as they change
        self._tallies: list[ScheduledWork] = []
        for inst in instances:
            self.add(inst)

    def add(self, instance: Instance) -> None:
        """An instance created during the run (the cluster builds them lazily)."""
        self.instances.append(instance)
        self.total_blocks += instance.pool.total
        if instance.role not in self.roles:
            self.roles.append(instance.role)
            self._tallies.append(ScheduledWork(book_back=partial(self.book_back, len(self.roles) - 1)))
            self.work = np.concatenate([self.work, np.zeros((1, *self.work.shape[1:]), dtype=np.int64)])
        s = instance.scheduler
        self._queues += (s.inbox, s.waiting, s.ready)
        self._running.append(s.running)
        self._schedulers.append(s)
        instance.pool.count_into(self._pools)
        w, tally = instance.work, self._tallies[self.roles.index(instance.role)]
        tally.steps += w.steps - w.dummy_steps  # (the batches scheduled: no dummy step)
        tally.tokens += w.prefill_tokens + w.decode_tokens
        tally.seqs += w.logit_rows
        w.tally = tally  # (its steps from now on add to it)

    def _times(self) -> np.ndarray:
        """The grid's sample times, start + i × interval (i < ``max_points``), each as its sample's event has it."""
        return self.start + self.interval * np.arange(self.max_points)

    def begin(self) -> None:
        self.engine.at(self.start, self._sample, priority=SAMPLE_PRIORITY)

    def _work_now(self) -> np.ndarray:
        return np.array([(t.steps, t.tokens, t.seqs) for t in self._tallies], dtype=np.int64).reshape(-1, 3)

    def _sample(self) -> None:
        # queued: inbox, waiting, ready, and loading (vLLM: WAITING_FOR_REMOTE_KVS waits)
        queued = self.extra_queued() + sum(map(len, self._queues)) + sum(map(_LOADING, self._schedulers))
        running = sum(map(len, self._running))
        used = self._pools.used(self.engine.now)
        n = self.n
        self.state[:, n] = (queued, running, used)
        self.work[:, :, n] = self._work_now()
        self.n = n + 1
        if self.n == self.max_points:  # keep every other sample: the grid of twice the interval
            half = self.max_points // 2
            self.state[:, :half] = self.state[:, ::2]
            self.work[:, :, :half] = self.work[:, :, ::2]
            self.n, self.interval = half, self.interval * 2
            self._grid = self._times()
        last = self.start + (self.n - 1) * self.interval  # the latest sample kept: a window since ends books back
        for tally in self._tallies:
            tally.sampled = last
        if self.engine.pending:  # other events remain: the run goes on
            self.engine.at(self.start + self.n * self.interval, self._sample, priority=SAMPLE_PRIORITY)

    def book_back(self, row: int, window: DecodeWindow, seqs: int) -> None:
        """A decode window of role ``row``'s, of ``seqs`` sequences, just ended, its steps added to the role's counters
        (``ScheduledWork.add_window``): add to each sample kept that was taken while it ran the steps that had started
        before it (a sample sees what started before its instant: the first step, and each later one whose previous
        step ended before it), so that the counters' differences give each interval the window's steps that started
        in it. Times compare as the engine's events have them: a sample's start + i × interval (``_grid``), a step's
        end ``window.start + window.ends[k]`` (``DecodeWindow.ended``), in a compiled loop (``_book_back``)."""
        _book_back(self.work[row], self._grid, self.n, window.start, window.times, window.steps, seqs)

    def series(self, table: RequestTable) -> dict[str, object]:
        """The report's ``timeseries``: the sample times; per grid interval from each sample (the last one
        open-ended), arrivals, completions and, per role, steps, tokens and sequences scheduled; at each
        sample time, requests queued and running and the fraction of KV blocks in use."""
        n, step = self.n, self.interval
        t = self.start + step * np.arange(n)

        def per_interval(times: np.ndarray) -> np.ndarray:
            return np.bincount(np.clip(np.searchsorted(t, times, side="right") - 1, 0, n - 1), minlength=n)

        done = np.diff(np.concatenate([self.work[:, :, :n], self._work_now()[:, :, None]], axis=2), axis=2)
        queued, running, used = self.state[:, :n]
        return {
            "interval_s": step,
            "t_s": t,
            "arrivals": per_interval(table.arrival),
            "completions": per_interval(table.last_token),
            "queued": queued,
            "running": running,
            "kv_usage": used / self.total_blocks,
            "work": {role: {"steps": done[i, 0], "tokens": done[i, 1], "seqs": done[i, 2]}
                     for i, role in enumerate(self.roles)},
        }


@njit(cache=True, _nrt=False)
def _book_back(work: np.ndarray, grid: np.ndarray, n: int, start: float, times: np.ndarray, steps: int,
               seqs: int) -> None:
    """``Timeline.book_back``'s sums into ``work`` (a role's steps, tokens, seqs by sample): to each of the first
    ``n`` samples at ``grid``'s times after ``start``, the window's steps that started before it (of its first
    ``steps``, of ``seqs`` sequences each). Step k > 0 starts as step k - 1 ends, at start + ``ends[k - 1]``:
    ``DecodeWindow.ends`` is ``times.cumsum()``, whose sums (sequential, in order) are made here the same way."""
    lo, hi = 0, n  # the first sample after the start
    while lo < hi:
        mid = (lo + hi) // 2
        if grid[mid] > start:
            hi = mid
        else:
            lo = mid + 1
    started = 1  # the first step starts at ``start``, before every sample after it
    end = times[0]  # ``ends[started - 1]``: the latest step started so far ends there, the next one starts
    for j in range(lo, n):
        t = grid[j]
        while started < steps and start + end < t:
            end += times[started]
            started += 1
        work[0, j] += started
        work[1, j] += started * seqs
        work[2, j] += started * seqs
