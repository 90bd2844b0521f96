"""Synthetic workloads: seeded, and with the prefix structure each kind promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config import load_config
from sim.config_workload import SyntheticConfig
from sim.errors import ConfigError
from trace.synthetic import generate


def _gen(seed=1, **kw):
    return generate(SyntheticConfig(**kw), 16, np.random.default_rng(seed))


@pytest.mark.parametrize("kind", ["multi-turn", "system-prompt", "rag", "agentic"])
def test_same_seed_same_trace_other_seed_differs(kind):
    kw = dict(kind=kind, num_requests=300, num_sessions=30)
    a, b, c = _gen(1, **kw), _gen(1, **kw), _gen(2, **kw)
    assert len(a) == 300
    assert np.array_equal(a.access_stream(), b.access_stream()) and np.array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.input_tokens, c.input_tokens)
    assert a.arrival_s[0] == 0.0 and np.all(np.diff(a.arrival_s) >= 0)
    # every kind has reuse, and block ids are dense
    assert 0 < a.num_unique_blocks < a.num_accesses
    assert a.access_stream().max() + 1 == a.num_unique_blocks


def test_system_prompt_requests_share_exactly_the_prompt_blocks():
    t = _gen(kind="system-prompt", num_requests=400, num_prefixes=3, prefix_tokens=100, zipf_alpha=0.5)
    prefix_blocks = 100 // 16  # 6 full blocks; the 7th straddles into the user's tokens
    first = {}
    for i in range(len(t)):
        blocks = t.blocks(i)
        first.setdefault(int(blocks[0]), blocks[:prefix_blocks])
        assert np.array_equal(blocks[:prefix_blocks], first[int(blocks[0])])
    assert len(first) == 3  # three distinct system prompts
    # the straddling block and the user's blocks are never shared
    tails = np.concatenate([t.blocks(i)[prefix_blocks:] for i in range(len(t))])
    assert len(np.unique(tails)) == len(tails)


def test_multi_turn_prompts_grow_by_earlier_context():
    t = _gen(kind="multi-turn", num_requests=500, num_sessions=20)
    for s in range(20):
        idx = np.flatnonzero(t.session_id == s)
        for prev, cur in zip(idx[:-1], idx[1:], strict=True):
            # a turn's prompt holds the previous prompt and its output, then new tokens
            assert t.input_tokens[cur] > t.input_tokens[prev] + t.output_tokens[prev]
            full_prev = t.input_tokens[prev] // 16
            assert np.array_equal(t.blocks(cur)[:full_prev], t.blocks(prev)[:full_prev])


def test_limit_and_bad_parameters():
    assert len(generate(SyntheticConfig(kind="rag", num_requests=100), 16, np.random.default_rng(0), limit=10)) == 10
    for bad in ("rate_rps=0", "num_sessions=0", "documents_per_request=0", "kind=chat"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):  # the config's domains, before generation
            load_config(None, sets=[f"workload.synthetic.{bad}"])


@pytest.mark.parametrize("kind", ["multi-turn", "agentic"])
def test_session_block_ids_equal_the_hashed_chain(kind):
    """The compiled id assignment gives exactly the ids of hashing (session, depth) keys along the chain."""
    from trace import blocks as bm

    t = _gen(3, kind=kind, num_requests=1500, num_sessions=40, think_time_median_s=5.0)
    keys = bm.session_keys(t.block_offsets, t.input_tokens, t.session_id, 16)
    ids, unique = bm.intern(bm.chain(t.block_offsets, keys))
    assert np.array_equal(ids, t.access_stream()) and unique == t.num_unique_blocks


def test_multi_turn_context_cap_drops_the_oldest_tokens():
    """Past the context limit a turn keeps the latest tokens: prompt + output fit, and its blocks (shifted
    content) are new; before it, each turn extends the previous one. (A turn that fits the limit to the token,
    none dropped, extends the previous one: told apart by its blocks, not by its length alone.)"""
    limit = 3000
    t = generate(SyntheticConfig(num_requests=4000, input_tokens_mean=300, output_tokens_mean=100, turns_mean=6,
                                 think_time_median_s=2.0), 16, np.random.default_rng(5), context_tokens=limit)
    assert np.all(t.input_tokens + t.output_tokens <= limit)
    capped = 0
    for s in np.unique(t.session_id):
        idx = np.flatnonzero(t.session_id == s)
        for prev, cur in zip(idx[:-1], idx[1:], strict=True):
            full_prev = t.input_tokens[prev] // 16
            if np.array_equal(t.blocks(cur)[:full_prev], t.blocks(prev)[:full_prev]):
                assert t.input_tokens[cur] > t.input_tokens[prev] + t.output_tokens[prev]
            else:  # its context was cut to fit
                assert t.input_tokens[cur] + t.output_tokens[cur] == limit
                capped += 1
                earlier = np.concatenate([t.blocks(i) for i in idx[idx < cur]])
                assert not np.isin(t.blocks(cur), earlier).any()
    assert capped > 100


def test_multi_turn_turns_follow_the_beta_geometric_law():
    """Turns per conversation: mean turns_mean; the chance of another turn after k turns is (a + k - 1) /
    (a + b + k - 1) for the Beta(a, b) of the config (the posterior mean of a conversation's chance)."""
    from trace.synthetic import _conversation_turns

    cfg = SyntheticConfig(turns_mean=2.0, turns_concentration=4.0)
    b = (4.0 + 1.0) / 2.0
    a = 4.0 - b  # mean 1 + a / (b - 1) = 2
    turns = _conversation_turns(cfg, np.random.default_rng(0), 400_000)
    assert turns.mean() == pytest.approx(2.0, rel=0.03)
    for k in (1, 2, 3):
        assert (turns > k).sum() / (turns >= k).sum() == pytest.approx((a + k - 1) / (a + b + k - 1), abs=0.01)
    assert np.all(_conversation_turns(SyntheticConfig(turns_mean=1.0), np.random.default_rng(0), 100) == 1)


def test_multi_turn_think_times_and_rate():
    """Gaps between a conversation's turns are log-normal(median, sigma); requests arrive at rate_rps."""
    t = _gen(2, num_requests=40_000, rate_rps=20.0, input_tokens_mean=20, output_tokens_mean=5,
             think_time_median_s=30.0, think_time_sigma=0.8)
    order = np.lexsort((t.arrival_s, t.session_id))
    same = t.session_id[order][1:] == t.session_id[order][:-1]
    gaps = np.diff(t.arrival_s[order])[same]
    assert np.median(gaps) == pytest.approx(30.0, rel=0.05)
    assert np.log(gaps).std() == pytest.approx(0.8, rel=0.05)
    assert len(t) / t.arrival_s[-1] == pytest.approx(20.0, rel=0.05)


@pytest.mark.parametrize("sigma", [40.0, 1000.0])
@pytest.mark.parametrize("start", ["empty", "steady"])
def test_multi_turn_wide_think_times_keep_poisson_conversation_starts(sigma, start):
    """Conversations start as a Poisson process at rate_rps / turns_mean whatever the think times:
    astronomically long (sigma 40) or overflowing (sigma 1000: inf) gaps of one conversation must not
    move another's start (they did: a running sum over every conversation lost the starts' digits,
    and an inf made them NaN and the generator looped for ever). (The first requests of conversations under way
    are no starts: the starts are checked from an empty start.)"""
    t = _gen(3, num_requests=4000, rate_rps=10.0, turns_mean=2.0, think_time_sigma=sigma, start=start)
    assert len(t) == 4000 and np.isfinite(t.arrival_s).all()
    if start == "steady":
        return
    first_turn = np.unique(t.session_id, return_index=True)[1]
    starts = np.sort(t.arrival_s[first_turn])
    assert np.diff(starts).mean() == pytest.approx(2.0 / 10.0, rel=0.1)


def test_multi_turn_context_is_vllms_max_model_len():
    from trace.workload import load_workload

    config = load_config(None, sets=["serving.max_model_len=2000", "workload.synthetic.num_requests=3000",
                                     "workload.synthetic.think_time_median_s=5", "workload.synthetic.turns_mean=8"])
    t = load_workload(config)
    total = t.input_tokens + t.output_tokens
    assert total.max() == 2000 and len(t) == 3000  # capped, none dropped as too long


# A changed value for every workload.synthetic key but the kind (a new key must be added here, and classified).
ALTERED = {"num_requests": 250, "rate_rps": 9.0, "input_tokens_mean": 333, "output_tokens_mean": 77, "num_sessions": 7,
           "turns_mean": 4.0, "turns_concentration": 9.0, "think_time_median_s": 20.0, "think_time_sigma": 0.4,
           "num_prefixes": 3, "prefix_tokens": 300, "num_documents": 40, "document_tokens": 700,
           "documents_per_request": 3, "zipf_alpha": 0.3, "start": "empty"}


@pytest.mark.parametrize("kind", ["multi-turn", "system-prompt", "rag", "agentic"])
def test_the_keys_each_kind_reads_are_the_ones_the_config_rule_allows(kind):
    """Changing a key changes a kind's trace exactly when the rule lets that kind set it (else the rule
    would reject a key that matters, or let a user set one the generator ignores)."""
    import dataclasses

    from sim.config_rules import SYNTHETIC_KIND_KEYS

    assert sorted(ALTERED) == sorted(f.name for f in dataclasses.fields(SyntheticConfig) if f.name != "kind")
    base = _gen(1, kind=kind, num_requests=200)
    for key, value in ALTERED.items():
        other = _gen(1, kind=kind, **{"num_requests": 200, key: value})
        same = (len(base) == len(other) and np.array_equal(base.arrival_s, other.arrival_s)
                and np.array_equal(base.input_tokens, other.input_tokens)
                and np.array_equal(base.output_tokens, other.output_tokens) and np.array_equal(base.access_stream(), other.access_stream()))
        assert same == (kind not in SYNTHETIC_KIND_KEYS.get(key, (kind,))), key


def test_a_steep_zipf_draws_the_first_item_without_a_numpy_warning():
    """zipf_alpha=1e6: 2^alpha overflows to inf, so every weight past the first is 1/inf = 0 (the first item always),
    but numpy's overflow RuntimeWarning went to stderr beside a run that succeeded."""
    import warnings

    from trace.synthetic import _zipf_choice

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = _zipf_choice(np.random.default_rng(0), 5, 1e6, 100)
    assert (drawn == 0).all()


def test_rag_requests_share_exactly_the_blocks_inside_their_documents():
    """One 31-token document in every prompt, 16-token blocks: block 0 (tokens 0-15) lies inside it, shared by every
    request; block 1 (tokens 16-31) ends on the request's own first token (31), so it is never shared, nor any after."""
    t = _gen(kind="rag", num_requests=200, num_documents=1, documents_per_request=1, document_tokens=31)
    heads = {int(t.blocks(i)[0]) for i in range(len(t))}
    assert len(heads) == 1
    tails = np.concatenate([t.blocks(i)[1:] for i in range(len(t))])
    assert len(np.unique(tails)) == len(tails)


def test_lengths_are_exponential_with_the_configured_mean_rounded_to_the_nearest_token():
    """max(1, round(X)) for X ~ Exp(mean 100): E[round X] = sum over k >= 1 of P(X >= k - 1/2) = e^(1/200) / (e^(1/100)
    - 1) = 100.0000, and the floor at 1 adds P(X < 1/2) = 1 - e^(-1/200) = 0.0050: 100.005. Over 4 M draws the mean's
    standard error is 0.05; truncating (floor) would give 99.51, ten of them off."""
    from trace.synthetic import _lengths

    expected = math.exp(1 / 200) / math.expm1(1 / 100) - math.expm1(-1 / 200)
    assert expected == pytest.approx(100.005, abs=1e-3)
    assert _lengths(np.random.default_rng(0), 100.0, 4_000_000).mean() == pytest.approx(expected, abs=0.2)
