"""The per-step Python around a fleet's instances costs what changed, with the same results: the timeline's samples
(sums over every instance read in C, a pool asked its claimed blocks only while a window is open)."""

from __future__ import annotations

import numpy as np
import pytest

import sim.serving.timeline as timeline_module
from sim.serving.block_pool import BlockPool
from sim.serving.run import run_serving
from tests.test_serving import _multi_turn_config, _synthetic


def _plain_sample(timeline) -> tuple[tuple[int, int, int], np.ndarray]:
    """A sample's figures by their definition: a loop over the instances."""
    queued, running, used = timeline.extra_queued(), 0, 0
    work = np.zeros((len(timeline.roles), 3), dtype=np.int64)
    for inst in timeline.instances:
        s, w = inst.scheduler, inst.work
        queued += len(s.inbox) + len(s.waiting) + len(s.ready) + s.loading
        running += len(s.running)
        used += inst.pool.used
        work[timeline.roles.index(inst.role)] += (w.steps - w.dummy_steps, w.prefill_tokens + w.decode_tokens,
                                                  w.logit_rows)
    return (queued, running, used), work


@pytest.mark.parametrize("mode", ["single", "pd"])
def test_timeline_samples_equal_their_definition_and_ask_only_open_windows(monkeypatch, mode):
    """Each sample's queued, running and KV blocks in use, and per role its work counters, are the sums over the
    instances; a pool's ``used`` (a Python call) is not asked by a sample: its count is read, and only a pool with a
    window open adds the blocks the window's started steps took."""
    config = _multi_turn_config("pd.num_prefill=1", "pd.num_decode=2", "serving.num_instances=3")
    checked = {"samples": 0, "busy": 0, "open": 0}
    sample = timeline_module.Timeline._sample
    used = BlockPool.used

    def checking(self):
        expected, work = _plain_sample(self)  # (before the sample: what it reads is the same)
        checked["busy"] += expected[0] + expected[1] > 0
        checked["open"] += sum(inst.pool._window is not None for inst in self.instances)
        n = self.n
        monkeypatch.setattr(BlockPool, "used", property(lambda pool: pytest.fail("a pool's used asked")))
        sample(self)
        monkeypatch.setattr(BlockPool, "used", used)
        if self.n == n + 1:  # (else the grid was thinned, this sample dropped)
            checked["samples"] += 1
            assert tuple(self.state[:, n].tolist()) == expected
            assert (self.work[:, :, n] == work).all()

    monkeypatch.setattr(timeline_module.Timeline, "_sample", checking)
    run_serving(_synthetic(config), config, mode)
    assert checked["samples"] > 100 and checked["busy"] > 50 and checked["open"] > 10
