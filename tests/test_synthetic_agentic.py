"""The agentic workload (workload.synthetic.kind agentic): an agent's context stays within the model's window."""

from __future__ import annotations

import numpy as np

from sim.config import SyntheticConfig, load_config
from trace.synthetic import _agentic, _keep_latest


def test_keep_latest_by_hand():
    """Limit 300: a prompt of 100 (+50 out) and of 250 (+50) fit; 420 + 30 keeps its latest 300 - 30 = 270 tokens
    (150 dropped); an output of 400 is cut to 299, leaving room for the latest 1 of 900 prompt tokens."""
    prompt, out, dropped = _keep_latest(np.array([100, 250, 420, 900]), np.array([50, 50, 30, 400]), 300)
    assert prompt.tolist() == [100, 250, 270, 1]
    assert out.tolist() == [50, 50, 30, 299]
    assert dropped.tolist() == [0, 0, 150, 899]


def test_agent_context_keeps_the_latest_tokens_within_the_limit():
    """Four agents of 100 steps (300 new tokens a step, 100 out) reach ~40,000 tokens; at a limit of 3,000 every
    prompt + output fits, and a cut step keeps the session's latest tokens: the tokens dropped plus those kept are the
    whole session so far (the uncapped prompt: the limit draws nothing, so the same seed gives it), and a step is cut
    exactly when its whole session and output would not fit."""
    cfg = SyntheticConfig(kind="agentic", num_requests=400, num_sessions=4, input_tokens_mean=300,
                          output_tokens_mean=100)
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
