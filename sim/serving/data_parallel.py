"""Data-parallel groups of a mixture of experts: D instances that step in lockstep, as vLLM's DP ranks do.

With ``data_parallel_size`` D > 1 the MoE layers of D instances form one group (``sim.serving.moe``), and vLLM
runs the ranks' forward passes together: every step starts with an all-reduce of each rank's token count
(``vllm/v1/worker/dp_utils.py``, ``coordinate_batch_across_dp``) and each MoE layer exchanges the group's
hidden states, so a step lasts as long as its slowest rank's, and a rank with nothing to run takes a dummy
step of one token (``execute_dummy_batch``) so that the others' collectives complete: a forward pass of its own (no
attention or logits), which its GPU runs for the whole step (``WorkTotals.add_dummy_steps``: busy time, a step, its
share's work). When every rank's step
runs as a CUDA graph (at most ``CudagraphSizes.largest`` tokens each), vLLM pads every rank to the group's
largest padded token count, the graph size of the largest rank's (``coordinate_batch_across_dp``, then a re-dispatch
at that count: ``GPUModelRunner._determine_batch_execution_and_padding``, vLLM 0.33; ``sim.serving.cudagraph``); the
layers compute the padding, attention and the LM head do not. A step here is therefore: each
member with work plans its batch; the group's tokens G are the ranks' own (padded); each member's step is
priced with its own shape and G (``DataParallelShare``); all of them end after the slowest. When every member
with work can take a decode window (``Scheduler.window_steps``), the group takes one of the fewest steps, each
step as long as its slowest member's (a decode-only step's shares do not change within it), and work arriving
at any member ends it for all.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from sim.serving.cudagraph import CudagraphSizes
from sim.serving.engine import Engine
from sim.serving.moe import DataParallelShare, sequence_parallel_rows

if TYPE_CHECKING:
    from sim.serving.decode_windows import DecodeWindow
    from sim.serving.instance import Instance
    from sim.serving.scheduler import StepBatch

# Tokens a dummy step runs (vLLM ``EngineCore.execute_dummy_batch`` -> ``_dummy_run(1)``).
DUMMY_STEP_TOKENS = 1
class LockstepGroup:
    """The instances of one data-parallel group; members not built yet (the cluster builds lazily) take dummy
    steps."""

    def __init__(self, engine: Engine, size: int, graphs: CudagraphSizes, sequence_parallel: int = 1):
        self.engine = engine
        self.size = size
        self.graphs = graphs
        # the ways each member's MoE exchange splits its tokens over its TP ranks (moe.sequence_parallel_size)
        self.sequence_parallel = sequence_parallel
        self.members: list[Instance] = []
        self.stepping = False  # a step or window is planned or in progress
        self._end = 0.0  # when the one in progress ends
        self._version = 0  # of its end event (an interruption moves it)
        # a decode window in progress: one member's (the steps all take; cut short by an interruption) and the
        # members taking dummy steps beside it, with their shares, whose work is counted when it ends
        self._window: DecodeWindow | None = None
        self._dummies: list[tuple[Instance, DataParallelShare]] = []

    def add(self, instance: Instance) -> None:
        if len(self.members) == self.size:
            raise ValueError(f"data-parallel group already has its {self.size} instances")
        self.members.append(instance)
        instance.group = self

    def wake(self) -> None:
        """A member has work: the group steps now, or when its step in progress ends."""
        if not self.stepping:
            self.stepping = True
            self.engine.after(0.0, self._step)

    def interrupt(self, ahead: bool = False, through: int | None = None) -> None:
        """Work arrived at a member: a decode window in progress ends, for every member, with its step in
        progress, so the newcomer joins the group's next step (``ahead``: with the step after it, which the
        member had planned already, as the others had)."""
        end = None
        for member in self.members:
            window = member.window
            if window is not None:
                member.interrupt_window(ahead, through)
                end = window.start + window.ends[window.steps - 1]
        if end is not None and end != self._end:
            self._end_at(end)

    def shares(self, own_tokens: list[int | None]) -> list[DataParallelShare]:
        """Each rank's tokens after vLLM's padding, and the group's, routed, exchanged and unpadded (``own_tokens``:
        every rank's, None for one taking a dummy step)."""
        own_tokens = own_tokens + [None] * (self.size - len(own_tokens))  # members not built yet
        run = [DUMMY_STEP_TOKENS if t is None else t for t in own_tokens]
        top = max(run)
        # every rank at its graph's size; all at the largest one's when every rank runs a graph, else (a rank above
        # the largest graph: the synced mode is NONE) each eagerly at its own padded count (dp_utils.py
        # ``_synchronize_dp_ranks``, then ``_determine_batch_execution_and_padding``'s re-dispatch)
        padded = [self.graphs.padded(t) for t in run]
        tokens = [max(padded)] * len(padded) if top <= self.graphs.largest else padded
        group = sum(tokens)
        exchanged = sum(sequence_parallel_rows(t, self.sequence_parallel) for t in tokens)
        unpadded = sum(t for t in own_tokens if t is not None)
        return [DataParallelShare(t, group, exchanged, unpadded) for t in tokens]

    def _step(self) -> None:
        now = self.engine.now
        for member in self.members:
            member.before_plan()
        steps = self._window_steps()
        if steps > 1:
            self._start_window(steps, now)
            self._after_plan()
            return
        batches: list[StepBatch | None] = [m.scheduler.schedule(now) for m in self.members]
        if all(b is None for b in batches):
            self.stepping = False
            if self._after_plan():  # slots, blocks or requests the empty plan could not see: plan again now
                self.wake()
            return
        shares = self.shares([None if b is None else b.shape.tokens for b in batches])
        # a dummy rank's step (one token, or the padding without attention) is never the slowest
        duration = max(m.compute.step_time(b.shape, share) + b.load_s
                       for m, b, share in zip(self.members, batches, shares) if b is not None)
        for member, batch, share in zip(self.members, batches, shares):
            if batch is not None:
                member.run_batch(batch, duration, share)
            else:  # a forward pass of its own as long as the group's (its collectives wait for the slowest)
                member.work.add_dummy_steps(share, 1, duration)
        self._end_at(now + duration)
        self._after_plan()

    def _after_plan(self) -> bool:
        """Each member's finished requests leave and its arrivals are read (``Instance.after_plan``); whether any
        did."""
        return any([member.after_plan() for member in self.members])

    def _window_steps(self) -> int:
        """Decode-only steps every member with work can take back to back (0: take a single step)."""
        steps = 0
        for member in self.members:
            if member.scheduler.has_work:
                own = member.scheduler.window_steps()
                if own < 2:
                    return 0
                steps = own if steps == 0 else min(steps, own)
        return steps

    def _start_window(self, steps: int, now: float) -> None:
        """``steps`` decode steps of the members with work, each step as long as its slowest member's."""
        busy = [m.scheduler.has_work for m in self.members]
        shares = self.shares([len(m.scheduler.running) if b else None for m, b in zip(self.members, busy)])
        running = [(m, m.scheduler.start_window(steps, now, partial(m.compute.decode_times, share=share)), share)
                   for m, b, share in zip(self.members, busy, shares) if b]
        times = np.max([window.times for _, window, _ in running], axis=0)
        ends = times.cumsum().tolist()
        for member, window, share in running:
            window.times, window.ends = times, ends
            member.run_window(window, share)
        self._window = running[0][1]
        self._dummies = [(m, share) for m, b, share in zip(self.members, busy, shares) if not b]
        self._end_at(now + ends[-1])

    def _end_at(self, time: float) -> None:
        """The step or window in progress ends at ``time``: after its members' own ends, scheduled first."""
        self._end = time
        self._version += 1
        self.engine.at(time, self._stepped, self._version)

    def _stepped(self, version: int) -> None:
        if version != self._version:
            return  # moved by an interruption
        window = self._window
        if window is not None:  # the dummy steps beside the window, as many as it took
            self._window = None
            for member, share in self._dummies:
                member.work.add_dummy_steps(share, window.steps, window.ends[window.steps - 1])
        self.stepping = False
        if any(m.scheduler.has_work for m in self.members):
            self.wake()
        else:
            self._after_plan()  # nothing to plan: the finished leave now
