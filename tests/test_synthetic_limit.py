"""A limited synthetic run (``workload.limit`` L below ``num_requests`` N) draws about what it keeps, and keeps the
same workload: the first L requests of the N-request workload, in law.

Expectations come from the processes' definitions, not from the generator: a limited run should draw O(L) random
values; the first L steps of an agentic workload whose sessions have ``ceil(N / num_sessions)`` steps are one
session's when the next session starts, on average, far later than L steps of mean gap ``AGENT_STEP_GAP_MEAN_S``."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config_workload import SyntheticConfig
from trace.synthetic import AGENT_STEP_GAP_MEAN_S, generate

KINDS = [("multi-turn", "steady"), ("multi-turn", "empty"), ("agentic", "steady"), ("agentic", "empty"),
         ("system-prompt", "steady"), ("rag", "steady")]


class CountingRng:
    """A ``numpy.random.Generator`` that counts the values it draws (every draw's output size)."""

    def __init__(self, seed: int):
        self.rng, self.values = np.random.default_rng(seed), 0

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def counted(*args, **kwargs):
            out = method(*args, **kwargs)
            self.values += np.size(out)
            return out
        return counted


@pytest.mark.parametrize("kind,start", KINDS)
def test_a_limited_run_draws_about_what_it_keeps(kind, start):
    """N = 1e6 at a limit of 200: each request needs a handful of draws (arrival or think time, new tokens, output,
    a prefix or documents, a turn count per conversation), so 200 requests need some thousands; before, all 1e6
    requests were drawn (millions of values) and 200 kept."""
    limit = 200
    cfg = SyntheticConfig(kind=kind, num_requests=1_000_000, start=start, documents_per_request=2)
    rng = CountingRng(3)
    trace = generate(cfg, 16, rng, limit=limit)
    assert len(trace) == limit
    assert rng.values < 100 * limit


def test_a_limited_agentic_run_keeps_the_sessions_of_num_requests():
    """N = 1e6 over 2 sessions: 500,000 steps each, so sessions start at rate_rps / 500,000 = 1e-5 a second, ~1e5 s
    apart, and the first 200 requests (~400 s of 2 s gaps) are the first session's (the second starts within 400 s
    of it with chance 1 - exp(-1e-5 x 400) = 0.4%). A limit that read as num_requests = 200 (100 steps a session,
    one starting every 20 s) would mix both sessions."""
    cfg = SyntheticConfig(kind="agentic", num_requests=1_000_000, num_sessions=2, start="empty")
    spans = []
    for seed in range(5):
        trace = generate(cfg, 16, np.random.default_rng(seed), limit=200)
        assert len(trace) == 200 and len(np.unique(trace.session_id)) == 1
        spans.append(trace.arrival_s[-1])
    # 199 gaps of mean 2 s: 398 s, sd 2 x sqrt(199) = 28 s each, 13 s over five
    assert abs(np.mean(spans) - 199 * AGENT_STEP_GAP_MEAN_S) < 4 * 2 * np.sqrt(199 / 5)


@pytest.mark.parametrize("kind,start", KINDS)
def test_a_limited_run_is_the_first_requests_of_the_whole_workload_in_law(kind, start):
    """Over 40 seeds, the first 150 requests drawn at a limit match, within 4.5 standard errors, the first 150 of
    the whole 3,000-request workload drawn and cut (what a limit did before) in mean prompt, mean arrival span and
    distinct sessions (a differential check of the two ways to draw them)."""
    n, limit, seeds = 3000, 150, 40
    cfg = SyntheticConfig(kind=kind, num_requests=n, start=start, num_sessions=20, documents_per_request=2)

    def stats(use_limit: bool) -> np.ndarray:
        rows = []
        for seed in range(seeds):
            trace = generate(cfg, 16, np.random.default_rng(seed), limit=limit if use_limit else None)
            sessions = len(np.unique(trace.session_id[:limit]))
            rows.append([trace.input_tokens[:limit].mean(), trace.arrival_s[limit - 1], sessions])
        return np.array(rows, dtype=np.float64)

    cut, limited = stats(False), stats(True)
    error = np.sqrt((cut.var(axis=0, ddof=1) + limited.var(axis=0, ddof=1)) / seeds)
    difference = np.abs(cut.mean(axis=0) - limited.mean(axis=0))
    assert np.all(difference <= 4.5 * error + 1e-9), (difference, error)
