"""The agentic workload (workload.synthetic.kind agentic): an agent's context stays within the model's window, and
the window opens on the agents a long-running service has under way (start steady).

Expectations for the steady start come from the stationary process, not from the generator: sessions start at rate
lambda = rate_rps / S and each has S steps, so the k-th steps of sessions arrive at rate lambda for every k, requests
at lambda S = rate_rps (E[N(0, W)] = rate_rps W), and a request is each step with chance 1 / S: (S - 1) / 2 earlier
steps on average."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config import load_config
from sim.config_workload import SyntheticConfig
from tests.test_synthetic_steady_start import _rounded_mean
from trace.synthetic import AGENT_STEP_GAP_MEAN_S, _agentic, _agents_under_way, _keep_latest, _length_sums, _lengths

# Sessions of S = 10 steps (the defaults' shape at a tenfold rate: ~90 under way), and of S = 100 (4 sessions for
# 400 requests: ~10 under way, each contributing up to 100 requests, so many more seeds for the same precision).
TEN_STEPS = dict(num_requests=20000, num_sessions=2000, rate_rps=50.0)
HUNDRED_STEPS = dict(num_requests=400, num_sessions=4, rate_rps=5.0)


def test_keep_latest_by_hand():
    """Limit 300: a prompt of 100 (+50 out) and of 250 (+50) fit; 420 + 30 keeps its latest 300 - 30 = 270 tokens
    (150 dropped); an output of 400 is cut to 299, leaving room for the latest 1 of 900 prompt tokens."""
    prompt, out, dropped = _keep_latest(np.array([100, 250, 420, 900]), np.array([50, 50, 30, 400]), 300)
    assert prompt.tolist() == [100, 250, 270, 1]
    assert out.tolist() == [50, 50, 30, 299]
    assert dropped.tolist() == [0, 0, 150, 899]


@pytest.mark.parametrize("start", ["steady", "empty"])
def test_agent_context_keeps_the_latest_tokens_within_the_limit(start):
    """Four agents of 100 steps (300 new tokens a step, 100 out) reach ~40,000 tokens; at a limit of 3,000 every
    prompt + output fits, and a cut step keeps the session's latest tokens: the tokens dropped plus those kept are the
    whole session so far (the uncapped prompt: the limit draws nothing, so the same seed gives it), and a step is cut
    exactly when its whole session and output would not fit."""
    cfg = SyntheticConfig(kind="agentic", num_requests=400, num_sessions=4, input_tokens_mean=300,
                          output_tokens_mean=100, start=start)
    limit = 3000
    whole = _agentic(cfg, np.random.default_rng(7), 16)
    cut = _agentic(cfg, np.random.default_rng(7), 16, context_tokens=limit)
    assert whole.prompt.max() > 10 * limit
    assert np.array_equal(cut.arrival, whole.arrival) and np.array_equal(cut.session, whole.session)
    assert np.all(cut.prompt + cut.out <= limit) and np.all(cut.out == whole.out)  # no output near the limit
    assert np.array_equal(cut.context_start + cut.prompt, whole.prompt)
    over = whole.prompt + whole.out > limit
    assert np.array_equal(cut.context_start > 0, over) and np.all(cut.prompt[over] + cut.out[over] == limit)


def test_agent_sessions_fit_vllms_max_model_len():
    """serving.max_model_len is the context an agent keeps: none of its requests is too long to serve (before, a
    4-agent workload's prompts passed the limit and serving skipped most of them as exceeds_max_model_len)."""
    from trace.workload import load_workload

    config = load_config(None, sets=["serving.max_model_len=2000", "workload.synthetic.kind=agentic",
                                     "workload.synthetic.num_requests=400", "workload.synthetic.num_sessions=4"])
    t = load_workload(config)
    assert len(t) == 400 and (t.input_tokens + t.output_tokens).max() <= 2000


@pytest.mark.parametrize("start", ["steady", "empty"])
@pytest.mark.parametrize(("shape", "seeds"), [(TEN_STEPS, 100), (HUNDRED_STEPS, 1500)])
def test_requests_arrive_at_rate_rps_from_the_start_only_when_steady(shape, seeds, start):
    """E[N(0, W)] = rate_rps W over the first W = 30 s (the n-th request comes long after: ~400 s and ~80 s). Seeds
    sized so the mean's standard error is under 1% (a seed's count varies by 7% and 30%, measured: 0.7% and 0.8%).
    An empty start falls short while sessions fill in (each lasts (S - 1) x 2 s on average)."""
    window = 30.0
    cfg = SyntheticConfig(kind="agentic", input_tokens_mean=10, output_tokens_mean=5, start=start, **shape)
    counts = [int((_agentic(cfg, np.random.default_rng(seed), 16).arrival < window).sum()) for seed in range(seeds)]
    rate = np.mean(counts) / window
    if start == "steady":
        assert rate == pytest.approx(cfg.rate_rps, rel=0.03)
    else:
        assert rate < cfg.rate_rps * 0.85


@pytest.mark.parametrize("start", ["steady", "empty"])
@pytest.mark.parametrize(("shape", "seeds"), [(TEN_STEPS, 100), (HUNDRED_STEPS, 1500)])
def test_prompts_carry_the_stationary_history_from_the_start(shape, seeds, start):
    """A request in the first 30 s has (S - 1) / 2 earlier steps on average (new and output tokens each) before its
    own new tokens: the agents under way at 0 bring their earlier steps' tokens into their first prompt in the window.
    From an empty start the first seconds hold mostly early steps. (Standard error 0.2% and 0.5%, measured.)"""
    new, out, window = 100, 50, 30.0
    cfg = SyntheticConfig(kind="agentic", input_tokens_mean=new, output_tokens_mean=out, start=start, **shape)
    steps = -(-cfg.num_requests // cfg.num_sessions)
    expected = _rounded_mean(new) + (steps - 1) / 2 * (_rounded_mean(new) + _rounded_mean(out))
    tokens = count = 0
    for seed in range(seeds):
        drawn = _agentic(cfg, np.random.default_rng(seed), 16)
        tokens += int(drawn.prompt[drawn.arrival < window].sum())
        count += int((drawn.arrival < window).sum())
    if start == "steady":
        assert tokens / count == pytest.approx(expected, rel=0.03)
    else:
        assert tokens / count < expected * 0.9


def test_agents_under_way_follow_the_stationary_law():
    """S = 5 steps, sessions at lambda = 10 / 5 a second: a session's k-th gap (k = 1 .. 4) straddles 0 with rate
    lambda x E[gap], so Poisson(lambda x 4 x g) are under way, the steps taken before 0 uniform on 1 .. 4, and the
    wait for the next step exponential of mean g (memoryless): P(wait > g) = 1/e. (2,000 draws of ~16: the means'
    standard errors are ~0.6%.)"""
    cfg = SyntheticConfig(kind="agentic", rate_rps=10.0)
    g = AGENT_STEP_GAP_MEAN_S
    drawn = [_agents_under_way(cfg, np.random.default_rng(seed), 5) for seed in range(2000)]
    assert np.mean([len(taken) for taken, _ in drawn]) == pytest.approx(10.0 / 5 * 4 * g, rel=0.02)
    taken = np.concatenate([t for t, _ in drawn])
    wait = np.concatenate([w for _, w in drawn])
    assert set(np.unique(taken)) == {1, 2, 3, 4}
    assert np.bincount(taken)[1:] / len(taken) == pytest.approx([0.25] * 4, abs=0.01)
    assert wait.mean() == pytest.approx(g, rel=0.02) and (wait > g).mean() == pytest.approx(math.exp(-1), abs=0.01)
    assert len(_agents_under_way(cfg, np.random.default_rng(0), 1)[0]) == 0  # one-step sessions: none under way


@pytest.mark.parametrize(("shape", "seeds"), [(TEN_STEPS, 100)])
def test_requests_keep_the_stationary_rate_and_history_up_to_the_last(shape, seeds):
    """The stationary law holds late in the window too, where the steps are drawn in rounds up to a growing horizon
    (the first one ~420 s): over [330, 360) s (the 20,000th request comes at ~400 s, spread +-8 s, measured), E[N] =
    rate_rps W and a request carries (S - 1) / 2 earlier steps on average, as in the first 30 s."""
    new, out, low, high = 100, 50, 330.0, 360.0
    cfg = SyntheticConfig(kind="agentic", input_tokens_mean=new, output_tokens_mean=out, **shape)
    steps = -(-cfg.num_requests // cfg.num_sessions)
    tokens = count = 0
    for seed in range(seeds):
        drawn = _agentic(cfg, np.random.default_rng(seed), 16)
        assert drawn.arrival[-1] > high
        inside = (drawn.arrival >= low) & (drawn.arrival < high)
        tokens += int(drawn.prompt[inside].sum())
        count += int(inside.sum())
    assert count / seeds / (high - low) == pytest.approx(cfg.rate_rps, rel=0.03)
    expected = _rounded_mean(new) + (steps - 1) / 2 * (_rounded_mean(new) + _rounded_mean(out))
    assert tokens / count == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(("mean", "count", "samples"), [(2, 3, 200_000), (1024, 1000, 2000)])
def test_length_sums_follow_the_sums_of_drawn_lengths(mean, count, samples):
    """The tokens an agent under way took before 0 are drawn as one sum a session: its law is that of ``count``
    lengths drawn one by one (the oracle). Short lengths (mean 2, 3 of them): every value's frequency within 0.5%
    (standard error ~0.1%); long (mean 1024, 1,000 of them): mean within 0.5% and spread within 6% (standard errors
    ~0.07% and ~1.6%). No steps, no tokens."""
    rng = np.random.default_rng(3)
    summed = _length_sums(rng, mean, np.full(samples, count))
    one_by_one = _lengths(rng, mean, samples * count).reshape(samples, count).sum(axis=1)
    if mean == 2:
        top = max(summed.max(), one_by_one.max()) + 1
        freq = np.bincount(summed, minlength=top) / samples, np.bincount(one_by_one, minlength=top) / samples
        assert np.abs(freq[0] - freq[1]).max() < 0.005
    else:
        assert summed.mean() == pytest.approx(one_by_one.mean(), rel=0.005)
        assert summed.std() == pytest.approx(one_by_one.std(), rel=0.06)
    assert _length_sums(rng, mean, np.zeros(5, dtype=np.int64)).tolist() == [0] * 5


class _CountingRng:
    """A ``numpy.random.Generator`` that counts the values it draws: each step drawn costs a gap and two lengths."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.values = rng, 0

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def counted(*args, **kwargs):
            drawn = method(*args, **kwargs)
            self.values += np.size(drawn)
            return drawn

        return counted


@pytest.mark.parametrize("start", ["steady", "empty"])
@pytest.mark.parametrize("shape", [dict(num_requests=20000, num_sessions=1, rate_rps=100.0), TEN_STEPS,
                                   dict(num_requests=20000, num_sessions=20000, rate_rps=50.0)])
def test_draws_grow_with_the_requests_not_with_the_sessions_steps(shape, start):
    """One session of 20,000 steps at 100 requests a second: ~200 agents are under way (rate_rps x 2 s; each lasts
    ~40,000 s), each with ~10,000 steps to go, but the 20,000 requests end at ~200 s, ~100 steps into each. A steady
    start draws only those (a gap and two lengths each, a few more per agent), at most 5 values a request, where
    drawing every step of every agent under way took ~600 (12 million values; 13.6 GB peak at 200,000 requests).
    An empty start draws its num_sessions x steps, ~3 values a request. The seed fixes the draw."""
    cfg = SyntheticConfig(kind="agentic", start=start, **shape)
    rng = _CountingRng(np.random.default_rng(5))
    drawn = _agentic(cfg, rng, 16)
    assert len(drawn.arrival) == cfg.num_requests and rng.values <= 5 * cfg.num_requests
    again = _agentic(cfg, np.random.default_rng(5), 16)
    assert all(np.array_equal(a, b) for a, b in zip((drawn.arrival, drawn.prompt, drawn.out, drawn.session),
                                                    (again.arrival, again.prompt, again.out, again.session)))
