"""The multi-turn workload opens on the conversations a stationary process has under way (workload.synthetic.start
steady): requests arrive at rate_rps from the first second, and prompts carry the history the stationary law gives.

Expectations come from renewal theory, not from the generator: in a stationary process, the k-th turns of
conversations starting at rate lambda arrive at rate lambda P(T >= k), so requests come at lambda E[T] = rate_rps and
a request has k - 1 earlier turns with chance P(T >= k) / E[T]."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from sim.config_workload import SyntheticConfig
from trace.synthetic import _length_biased_turns, _multi_turn, _under_way


def _rounded_mean(mean: float) -> float:
    """E[max(1, rint(X))] for X exponential of this mean: 1 + sum over j >= 2 of P(X >= j - 1/2)."""
    return 1.0 + math.exp(-1.5 / mean) / (1.0 - math.exp(-1.0 / mean))


@pytest.mark.parametrize("start", ["steady", "empty"])
def test_requests_arrive_at_rate_rps_from_the_start_only_when_steady(start):
    """The defaults (2 turns, think time median 93 s, sigma 1.3: mean 216 s, longer than the window): a stationary
    point process of intensity r has E[N(0, W)] = r W. An empty start falls short (~3.5 a second over 200 s)."""
    window, counts = 200.0, []
    for seed in range(30):
        drawn = _multi_turn(SyntheticConfig(num_requests=2000, start=start), np.random.default_rng(seed), 16)
        assert drawn.arrival[-1] > window  # the window is inside the drawn requests
        counts.append(int((drawn.arrival < window).sum()))
    rate = np.mean(counts) / window
    if start == "steady":
        assert rate == pytest.approx(5.0, rel=0.03)
    else:
        assert rate < 5.0 * 0.85


def test_prompts_carry_the_stationary_history():
    """Geometric turns (concentration 1e6: every conversation goes on with chance p = 2/3, mean 3 turns): a request
    has k - 1 earlier turns with chance P(T >= k) / E[T] = p^(k-1) (1 - p), so E[earlier turns] = p / (1 - p) = 2, and
    its prompt holds them (new and output tokens each) plus its own new tokens. The window (100 s) is about three
    think times: an empty start would see mostly first turns (mean prompt ~220, not 400)."""
    new, out, p = 100, 50, 2.0 / 3.0
    expected = _rounded_mean(new) + p / (1.0 - p) * (_rounded_mean(new) + _rounded_mean(out))
    cfg = SyntheticConfig(num_requests=2000, rate_rps=20.0, turns_mean=3.0, turns_concentration=1e6,
                          think_time_median_s=30.0, think_time_sigma=0.5, input_tokens_mean=new, output_tokens_mean=out)
    means = [_multi_turn(cfg, np.random.default_rng(seed), 16).prompt.mean() for seed in range(40)]
    assert np.mean(means) == pytest.approx(expected, rel=0.03)


def test_under_way_turns_are_length_biased():
    """A conversation is under way with chance proportional to its span, (T - 1) think times: P(T = k) (k - 1) /
    E[T - 1]. At the defaults (Beta(1.5, 2.5), E[T - 1] = 1): P(T = 2) = P(T >= 2) b / (a + b + 1) = 0.375 x 2.5 / 5
    = 0.1875, P(T = 3) = 2 x 0.1875 x 2.5 / 6 = 0.15625; none has one turn."""
    turns = _length_biased_turns(SyntheticConfig(), np.random.default_rng(0), 400_000)
    assert turns.min() == 2
    assert (turns == 2).mean() == pytest.approx(0.1875, abs=0.004)
    assert (turns == 3).mean() == pytest.approx(0.15625, abs=0.004)


@pytest.mark.parametrize("median", [20.0, 1e7])
def test_under_way_conversations_next_turns_follow_the_think_time_tail(median):
    """Next turns of under-way conversations come at rate lambda E[T - 1] P(G > t) at t >= 0 (the gap straddling 0
    ends at t): on [0, H), their count has mean lambda E[T - 1] integral_0^H P(G > t) dt and their mean time is
    integral t P(G > t) / integral P(G > t), both integrated numerically over the log-normal's tail. Think times far
    past H (median 1e7 s) cost only the conversations due before H (~rate_rps x H), not rate_rps x E[G] (5e7)."""
    cfg = SyntheticConfig(think_time_median_s=median, think_time_sigma=1.3)
    horizon, rate_starts, turns_left = 400.0, 5.0 / 2.0, 1.0  # E[T] = 2 (drawn: 1.99998), E[T - 1] = 1
    tail = stats.lognorm(s=1.3, scale=median).sf
    mass = integrate.quad(tail, 0.0, horizon, limit=200)[0]
    mean_time = integrate.quad(lambda t: t * tail(t), 0.0, horizon, limit=200)[0] / mass
    counts, times = [], []
    for seed in range(200):  # ~110 a draw at median 20 s, Poisson: the mean of 200 within 1% (1 sd)
        turns, taken, next_turn = _under_way(cfg, np.random.default_rng(seed), horizon)
        assert np.all((taken >= 1) & (taken < turns)) and np.all((next_turn >= 0) & (next_turn < horizon))
        counts.append(len(turns))
        times.append(next_turn)
    assert np.mean(counts) == pytest.approx(rate_starts * turns_left * mass, rel=0.03)
    assert np.concatenate(times).mean() == pytest.approx(mean_time, rel=0.03)


def test_a_constant_think_time_puts_next_turns_uniformly_before_it():
    """sigma 0: every gap is the median G. Under way at 0 means a gap straddles 0, so the next turn is uniform on
    [0, G); with G past the horizon H, uniform on [0, H): rate_rps (1 - 1 / E[T]) min(G, H) of them on average."""
    for median, horizon in ((30.0, 400.0), (1e6, 400.0)):
        cfg = SyntheticConfig(think_time_median_s=median, think_time_sigma=0.0)
        span = min(median, horizon)
        next_turn = [_under_way(cfg, np.random.default_rng(seed), horizon)[2] for seed in range(20)]
        assert np.mean([len(t) for t in next_turn]) == pytest.approx(5.0 / 2.0 * span, rel=0.05)
        every = np.concatenate(next_turn)
        assert every.max() < span and every.mean() == pytest.approx(span / 2, rel=0.05)


def test_one_turn_conversations_leave_nothing_under_way():
    assert len(_under_way(SyntheticConfig(turns_mean=1.0), np.random.default_rng(0), 100.0)[0]) == 0
