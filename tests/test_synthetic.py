"""Synthetic workloads: seeded, and with the prefix structure each kind promises."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import SyntheticConfig
from sim.config import load_config
from sim.errors import ConfigError
from trace.synthetic import generate


def _gen(seed=1, **kw):
    return generate(SyntheticConfig(**kw), 16, np.random.default_rng(seed))


@pytest.mark.parametrize("kind", ["multi-turn", "system-prompt", "rag", "agentic"])
def test_same_seed_same_trace_other_seed_differs(kind):
    kw = dict(kind=kind, num_requests=300, num_sessions=30)
    a, b, c = _gen(1, **kw), _gen(1, **kw), _gen(2, **kw)
    assert len(a) == 300
    assert np.array_equal(a.block_ids, b.block_ids) and np.array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.input_tokens, c.input_tokens)
    assert a.arrival_s[0] == 0.0 and np.all(np.diff(a.arrival_s) >= 0)
    # every kind has reuse, and block ids are dense
    assert 0 < a.num_unique_blocks < a.num_accesses
    assert a.block_ids.max() + 1 == a.num_unique_blocks


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
        for prev, cur in zip(idx[:-1], idx[1:]):
            # a turn's prompt holds the previous prompt and its output, then new tokens
            assert t.input_tokens[cur] > t.input_tokens[prev] + t.output_tokens[prev]
            full_prev = t.input_tokens[prev] // 16
            assert np.array_equal(t.blocks(cur)[:full_prev], t.blocks(prev)[:full_prev])


def test_limit_and_bad_parameters():
    assert len(generate(SyntheticConfig(kind="rag", num_requests=100), 16, np.random.default_rng(0), limit=10)) == 10
    for bad in ("rate_rps=0", "num_sessions=0", "documents_per_request=0", "kind=chat"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):  # the config's domains, before generation
            load_config(None, sets=[f"workload.synthetic.{bad}"])
