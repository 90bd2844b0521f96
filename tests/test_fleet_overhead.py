"""The per-step Python around a fleet's instances costs what changed, with the same results: a decode window's block
claims (each answer one bisection; their events: tests/test_window_claims.py), and the timeline's samples (sums over every
instance read in C, the blocks in use kept as they change, a pool asked for its window's blocks only while one is open)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import sim.serving.timeline as timeline_module
from sim.serving.block_pool import BlockPool, PoolTotals
from sim.serving.compute import StepShape
from sim.serving.decode_windows import DecodeWindow
from sim.serving.engine import Engine
from sim.serving.run import run_serving
from tests.test_serving import _multi_turn_config, _synthetic


def _window(start: float, steps: int) -> DecodeWindow:
    """A window of ``steps`` steps of 1 s each from ``start``: step b (from 1) starts at start + b - 1."""
    times = np.ones(steps)
    return DecodeWindow([], [], StepShape(), times, times.cumsum().tolist(), start, steps)


def test_a_windows_reserved_blocks_are_taken_as_their_steps_start(monkeypatch):
    # blocks of 4 tokens; one job's 2 blocks from step 2 (steps 2 and 6), another's 1 from step 5: steps 2, 5 and 6
    # start at 11, 14 and 15 s (hand-computed from the window's 1 s steps from 10 s)
    monkeypatch.setattr(DecodeWindow, "ended", lambda *a: pytest.fail("a bisection over the claims, not a search"))
    clock = SimpleNamespace(now=0.0)
    pool = BlockPool(100, clock)
    pool.allocate(7)  # 7 blocks in use from 0 s
    clock.now = 10.5
    window = _window(10.0, 8)
    pool.reserve(window, [(2, 2), (5, 1)], 4)
    assert pool.claim_steps == [2, 5, 6] and pool.claim_times() == [11.0, 14.0, 15.0]
    assert (pool.used, pool.reserved, pool.free) == (7, 3, 90)
    assert pool.unused_through(11.0) == 92  # the step starting at 11 s has taken its block by then
    clock.now = 11.0
    assert (pool.used, pool.reserved) == (7, 3)  # at 11 s itself, not yet (a sample sees the instant's state before)
    clock.now = 14.5
    assert (pool.used, pool.reserved, pool.free) == (9, 1, 90)
    window.steps = 5  # cut short after step 5: step 6's block is never taken
    assert (pool.used, pool.reserved, pool.free) == (9, 0, 91)
    assert pool.unused_through(20.0) == 91
    totals, idle = PoolTotals(), BlockPool(50, clock)
    pool.count_into(totals)
    idle.count_into(totals)  # (an idle pool counts its own, none here)
    assert totals.used(clock.now) == 9 and totals.windows == {pool}
    clock.now = 16.0
    pool.finish_window()
    assert (pool.used, pool.free, pool.claim_steps) == (9, 91, [])
    assert totals.used(clock.now) == 9 and not totals.windows
    idle.allocate(4)
    idle.release(1)
    assert totals.used(clock.now) == 12
    # ∫ used dt: 7 blocks over 16 s, one more from 11 s, one more from 14 s
    assert pool.block_seconds_until(16.0) == pytest.approx(7 * 16 + 5 + 2)
    # a window from 16 s: two jobs take a block at step 3 (18 s), one of them another at step 7 (22 s): one event a step
    pool.reserve(_window(16.0, 8), [(3, 1), (3, 2)], 4)
    assert pool.claim_steps == [3, 3, 7] and pool.claim_times() == [18.0, 22.0]
    assert (pool.used, pool.reserved) == (9, 3)
    clock.now = 18.5
    assert (pool.used, pool.reserved) == (11, 1)
    assert totals.used(clock.now) == 14 and totals.windows == {pool}


def test_reserved_sequence_numbers_run_where_they_were_reserved():
    """A chain pushed one event at a time runs in the order it would have had with every event scheduled at once:
    FIFO by the time of reservation among events at the same time and priority."""
    engine, log = Engine(), []
    seq = engine.reserve(2)

    def first() -> None:
        log.append("a")
        engine.at_seq(1.0, seq + 1, log.append, "b")  # reserved before "x" was scheduled: runs before it

    engine.at_seq(1.0, seq, first)
    engine.at(1.0, log.append, "x")
    engine.at(0.5, log.append, "early")
    engine.run()
    assert log == ["early", "a", "b", "x"]
    with pytest.raises(ValueError):
        engine.at_seq(0.5, engine.reserve(1), log.append, "past")


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


@pytest.mark.parametrize("mode,extra", [("single", []), ("pd", []),
                                       # a data-parallel group: its members' dummy steps are no batch scheduled
                                       ("single", ["model=qwen3-30b-a3b", "serving.num_instances=2",
                                                   "serving.data_parallel_size=2", "cluster.router=round-robin"])],
                         ids=["single", "pd", "data-parallel"])
def test_timeline_samples_equal_their_definition_and_ask_only_open_windows(monkeypatch, mode, extra):
    """Each sample's queued, running and KV blocks in use, and per role its work counters, are the sums over the
    instances; a pool's ``used`` (a Python call) is not asked by a sample: its count is read, and only a pool with a
    window open adds the blocks the window's started steps took."""
    config = _multi_turn_config("pd.num_prefill=1", "pd.num_decode=2", "serving.num_instances=3", *extra)
    checked = _checking_samples(monkeypatch, lambda: run_serving(_synthetic(config), config, mode))
    assert checked["samples"] > 100 and checked["busy"] > 50 and checked["open"] > 10
    assert (checked["dummy"] > 0) == bool(extra)  # (the case each is there for)


@pytest.mark.parametrize("pd", [False, True], ids=["aggregated", "pd"])
def test_a_clusters_timeline_samples_equal_their_definition(monkeypatch, pd):
    """As above for a cluster, whose instances are built as requests first reach them: a sample sums those built."""
    from sim.cluster.run import run_cluster
    from tests.test_cluster import _trace_and_config

    trace, config = _trace_and_config([
        "cluster.num_racks=3", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2", "cluster.router=least-loaded",
        *(["pd.num_prefill=1", "pd.num_decode=1"] if pd else []),
        "workload.synthetic.num_requests=200", "workload.synthetic.think_time_median_s=0.5",
        "workload.synthetic.rate_rps=40", "workload.synthetic.input_tokens_mean=512",
        "workload.synthetic.output_tokens_mean=64", "serving.num_gpu_blocks=400"])
    built = []
    checked = _checking_samples(monkeypatch, lambda: run_cluster(trace, config, pd=pd), built)
    assert checked["samples"] > 100 and checked["busy"] > 50 and checked["open"] > 10
    assert len(set(built)) > 1  # (instances were built as the run went)


def _checking_samples(monkeypatch, run, built: list | None = None) -> dict:
    """Run ``run`` with every timeline sample checked against ``_plain_sample``; counts of what was checked."""
    checked = {"samples": 0, "busy": 0, "open": 0, "dummy": 0}
    sample = timeline_module.Timeline._sample
    used = BlockPool.used

    def checking(self):
        expected, work = _plain_sample(self)  # (before the sample: what it reads is the same)
        checked["busy"] += expected[0] + expected[1] > 0
        checked["open"] += sum(inst.pool._window is not None for inst in self.instances)
        checked["dummy"] = sum(inst.work.dummy_steps for inst in self.instances)
        if built is not None:
            built.append(len(self.instances))
        n = self.n
        monkeypatch.setattr(BlockPool, "used", property(lambda pool: pytest.fail("a pool's used asked")))
        sample(self)
        monkeypatch.setattr(BlockPool, "used", used)
        if self.n == n + 1:  # (else the grid was thinned, this sample dropped)
            checked["samples"] += 1
            assert tuple(self.state[:, n].tolist()) == expected
            assert (self.work[:, :, n] == work).all()

    monkeypatch.setattr(timeline_module.Timeline, "_sample", checking)
    run()
    return checked


def test_an_instances_level_cells_are_its_tiers_hit_locations():
    """HBM is the instance's own, DRAM and SSD its node's, EIC its rack's: cells kind x 4 + location (``LOCATIONS``:
    instance, node, rack, cross_rack), one table per instance for every request's hits."""
    from sim.cluster.fetch import DRAM, EIC, HBM, SSD, level_cells

    assert level_cells([HBM, DRAM, SSD, EIC]).tolist() == [0 * 4 + 0, 1 * 4 + 1, 2 * 4 + 1, 3 * 4 + 2]
    assert level_cells([HBM, EIC]).tolist() == [0, 14]


def test_least_loaded_pick_ties_break_by_tokens_then_round_robin():
    """Hand-made: the least loaded; ties: the fewest prompt tokens routed; ties: the first id after the last routed
    to, wrapping round. Then, on random loads, the rule's own definition (numpy masks, as written before the compiled
    pass), ids given as a base plus local offsets as the racks, nodes and instances are."""
    from sim.cluster.routers import least_of

    def least(ids, loads, tokens, last, base=0):
        full_loads, full_tokens = np.full(base + 1000, 99), np.full(base + 1000, 99)  # (other ids: never picked)
        full_loads[base + ids], full_tokens[base + ids] = loads, tokens
        return least_of(base, ids, full_loads, full_tokens, last)

    ids = np.array([3, 5, 7, 9])
    assert least(ids, np.array([1, 0, 2, 2]), np.array([0, 9, 0, 0]), -1) == 5  # one least loaded
    assert least(ids, np.array([1, 0, 0, 0]), np.array([0, 5, 2, 2]), 7) == 9  # 7 and 9 tie: after 7
    assert least(ids, np.array([1, 0, 0, 0]), np.array([0, 5, 2, 2]), 9) == 7  # none after 9: wraps round
    assert least(ids, np.zeros(4, int), np.zeros(4, int), 4) == 5
    assert least(ids, np.zeros(4, int), np.zeros(4, int), 104, base=100) == 105  # the base counts in ids and last
    assert least_of(0, np.zeros(0, np.int64), np.zeros(4, np.int64), np.zeros(4, np.int64), -1) == -1  # no ids
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 200))  # (a node's instances to a fleet's racks)
        ids = np.sort(rng.choice(1000, n, replace=False))
        loads, tokens, last = rng.integers(0, 3, n), rng.integers(0, 3, n), int(rng.integers(-1, 1000))
        base = int(rng.integers(0, 3)) * 1000
        low = loads == loads.min()
        tied = ids[low][tokens[low] == tokens[low].min()]
        after = tied[tied > last - base]
        assert least(ids, loads, tokens, last, base) == base + int(after[0] if len(after) else tied[0])


def test_let_go_of_the_sole_holder_frees_as_the_reference_counts_do():
    """``BlockPool.let_go``'s shortcut (the caller the only holder of every block held: ``refs`` cleared at once) frees
    what one holder fewer per block, counted block by block, frees, and ``count_fresh``'s (no block held) counts what
    asking each block counts: random requests over a small id space (shared
    prefixes, a block repeated within a request, some alone in the pool, some beside others), each pool checked
    against plain reference counts after every let-go: the blocks freed and their order, the counts, blocks in use
    and what the watcher was told."""
    rng = np.random.default_rng(11)
    told: list[tuple[str, list[int]]] = []
    watcher = SimpleNamespace(taken=lambda keys, tier: told.append(("taken", list(keys))),
                              freed=lambda keys, tier: told.append(("freed", list(keys))))
    pool = BlockPool(10_000, SimpleNamespace(now=0.0))
    pool.watch(watcher, 0)
    counts: dict[int, int] = {}
    running: list[list[int]] = []
    shortcuts = empty = 0
    for _ in range(2_000):
        if running and (len(running) > 3 or rng.random() < 0.5):
            keys = running.pop(int(rng.integers(len(running))))[::-1]  # (deepest first, as a request lets go)
            expected = []
            for key in keys:
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]
                    expected.append(key)
            shortcuts += len(pool.refs) == len(keys) and set(pool.refs.values()) <= {1}
            told.clear()
            assert pool.let_go(keys, private=2) == expected
            assert told == ([("freed", expected)] if expected else [])
            assert pool.refs == counts and pool.used == len(counts) + 2 * len(running)
        else:
            keys = rng.integers(0, 40, int(rng.integers(0, 12))).tolist()
            empty += not counts
            assert pool.count_fresh(keys) == sum(key not in counts for key in keys)  # (none held: all of them)
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
            pool.hold(keys, private=2)
            running.append(keys)
    assert shortcuts > 100 and empty > 100  # (the shortcuts were taken, and the loops too)
