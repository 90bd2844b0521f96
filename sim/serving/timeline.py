"""Time series of a serving run on a fixed grid of simulated time, bounded whatever the run length.

A sampling event every ``interval`` seconds reads the instances' state (requests queued for
admission or, in PD, for decode memory or their KV in transfer, in a cluster for their KV connector's load; requests
running; KV blocks in use) and their
cumulative work counters (steps, tokens and sequences scheduled, per instance role). When
the samples would exceed ``max_points``, every other one is dropped and the interval
doubles, so the grid stays regular (start + i × interval) and its size stays within
``max_points`` for any run. Per-interval figures (arrivals and completions from the request
table; steps, tokens and sequences from the counters' differences) are derived at the end:
nothing is recorded per event. A decode window's steps count when the window ends.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from sim.report.metrics import RequestTable
from sim.serving.engine import Engine
from sim.serving.instance import Instance

MAX_POINTS = 1000
# Before every other event at the same instant (arrivals run at -1): a sample sees the state up to,
# not including, its instant, so the counters' differences are the work of [t_i, t_i+1) exactly.
SAMPLE_PRIORITY = -2


class Timeline:
    """Sums over ``instances`` sampled every ``interval`` seconds from ``start``."""

    def __init__(self, engine: Engine, instances: Sequence[Instance], start: float, span: float,
                 extra_queued: Callable[[], int] = lambda: 0, max_points: int = MAX_POINTS):
        if max_points < 2 or max_points % 2:
            raise ValueError("max_points must be an even number >= 2")
        self.engine = engine
        self.instances = list(instances)
        self.roles = list(dict.fromkeys(inst.role for inst in self.instances))
        self.extra_queued = extra_queued
        self.start = start
        self.interval = max(span, 1e-3) / (max_points // 4)  # the arrivals fill a quarter of the grid
        self.max_points = max_points
        self.total_blocks = sum(inst.pool.total for inst in self.instances)
        self.state = np.zeros((3, max_points), dtype=np.int64)  # queued, running, KV blocks used
        self.work = np.zeros((len(self.roles), 3, max_points), dtype=np.int64)  # steps, tokens, seqs so far
        self.n = 0

    def add(self, instance: Instance) -> None:
        """An instance created during the run (the cluster builds them lazily)."""
        self.instances.append(instance)
        self.total_blocks += instance.pool.total
        if instance.role not in self.roles:
            self.roles.append(instance.role)
            self.work = np.concatenate([self.work, np.zeros((1, *self.work.shape[1:]), dtype=np.int64)])

    def begin(self) -> None:
        self.engine.at(self.start, self._sample, priority=SAMPLE_PRIORITY)

    def _work_now(self) -> np.ndarray:
        work = np.zeros((len(self.roles), 3), dtype=np.int64)
        for inst in self.instances:
            w = inst.work
            work[self.roles.index(inst.role)] += (w.steps - w.dummy_steps, w.prefill_tokens + w.decode_tokens,
                                                  w.logit_rows)  # (the batches scheduled: no dummy step)
        return work

    def _sample(self) -> None:
        queued = self.extra_queued()
        running = used = 0
        for inst in self.instances:
            s = inst.scheduler
            queued += len(s.inbox) + len(s.waiting) + len(s.ready) + s.loading  # (vLLM: WAITING_FOR_REMOTE_KVS waits)
            running += len(s.running)
            used += inst.pool.used
        n = self.n
        self.state[:, n] = (queued, running, used)
        self.work[:, :, n] = self._work_now()
        self.n = n + 1
        if self.n == self.max_points:  # keep every other sample: the grid of twice the interval
            half = self.max_points // 2
            self.state[:, :half] = self.state[:, ::2]
            self.work[:, :, :half] = self.work[:, :, ::2]
            self.n, self.interval = half, self.interval * 2
        if self.engine.pending:  # other events remain: the run goes on
            self.engine.at(self.start + self.n * self.interval, self._sample, priority=SAMPLE_PRIORITY)

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
