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
    assert log == [1] and engine.now == 2.0
    with pytest.raises(ValueError):
        engine.at(1.5, log.append, "past")
