"""The event engine: time order, deterministic ties, no scheduling into the past."""

from __future__ import annotations

import pytest

from sim.serving.engine import Engine


def test_events_run_in_time_then_priority_then_fifo_order():
    engine, log = Engine(), []
    engine.at(2.0, log.append, "late")
    engine.at(1.0, log.append, "b", priority=1)
    engine.at(1.0, log.append, "a", priority=0)
    engine.at(1.0, log.append, "a2", priority=0)
    engine.run()
    assert log == ["a", "a2", "b", "late"] and engine.now == 2.0


def test_run_until_and_past_scheduling():
    engine, log = Engine(), []
    engine.at(1.0, log.append, 1)
    engine.at(3.0, log.append, 3)
    engine.run(until=2.0)
    assert log == [1] and engine.now == 2.0 and engine.events_run == 1  # (the loop counts its events at its end)

    def fail() -> None:
        raise RuntimeError("callback")

    engine.at(2.5, fail)
    with pytest.raises(RuntimeError):
        engine.run()
    assert engine.events_run == 2 and engine.now == 2.5  # an event that raised was run: counted all the same
    engine.run()
    assert log == [1, 3] and engine.events_run == 3
    with pytest.raises(ValueError):
        engine.at(1.5, log.append, "past")


def test_watchdog_turns_a_self_rescheduling_event_into_an_error():
    """An event that keeps rescheduling itself at the same instant (the old link bug) must fail, not hang."""
    from sim.serving.engine import StallError

    engine = Engine(max_events_at_one_time=1000)

    def again() -> None:
        engine.after(0.0, again)

    engine.at(2.0**20, again)
    with pytest.raises(StallError, match="stopped at"):
        engine.run()


def test_link_completes_at_week_scale_times():
    """At now ~ 6e5 s one ulp is ~1e-10 s: finishing transfers must still complete, in order."""
    from sim.serving.network import AnalyticNetwork, Link

    engine = Engine(max_events_at_one_time=1000)
    link = Link(engine, AnalyticNetwork(bandwidth=12.5e9, latency=5e-6))
    done = []
    for k, start in enumerate([604_800.0, 604_800.0, 604_800.000001]):
        engine.at(start, link.send, (k + 1) * 1e6, lambda d, k=k: done.append((k, engine.now)))
    engine.run()
    assert [k for k, _ in done] == [0, 1, 2]
    # Processor sharing by hand: serializations 80, 160, 240 us, then each its 5 us latency (unshared).
    # Flows 0 and 1 share the first microsecond (0.5 us each); then three share, so flow 0's remaining
    # 79.5 us take 3 x 79.5 us; its last byte arrives 5 us later.
    assert done[0][1] - 604_800.0 == pytest.approx(1e-6 + 3 * 79.5e-6 + 5e-6, rel=1e-5)


def test_the_collector_runs_less_often_while_events_run_and_as_before_after():
    """While events run, the collector's first threshold is at least ``GC_THRESHOLD_WHILE_RUNNING``; the caller's
    thresholds are back when the run returns or raises; a threshold of 0 (automatic collection off) stays 0."""
    import gc

    from sim.serving.engine import GC_THRESHOLD_WHILE_RUNNING

    before = gc.get_threshold()
    try:
        for first in (700, 0):
            gc.set_threshold(first, 7, 9)
            engine, seen = Engine(), []
            engine.at(1.0, lambda: seen.append(gc.get_threshold()))
            engine.run()
            assert seen == [(GC_THRESHOLD_WHILE_RUNNING if first else 0, 7, 9)]
            assert gc.get_threshold() == (first, 7, 9)

            def fail() -> None:
                raise RuntimeError("boom")

            engine.at(2.0, fail)
            with pytest.raises(RuntimeError, match="boom"):
                engine.run()
            assert gc.get_threshold() == (first, 7, 9)
    finally:
        gc.set_threshold(*before)
