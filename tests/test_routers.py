"""The single-node mode's routers (``sim.serving.routers``) and a prefix-aware PD decode router, worked by hand.

``prefix-aware`` is SGLang's cache-aware rule over each worker's own HBM: the worker with the longest prefix of the
prompt (ties: the least loaded) if it covers more than ``cluster.cache_threshold`` (0.5) of the prompt and loads are
balanced, else the least loaded; loads are imbalanced when max - min > ``cluster.balance_abs_threshold`` (32) and max
> ``cluster.balance_rel_threshold`` (1.0001) x min. A case worked by hand: two workers, blocks of 16 tokens, every
prompt two blocks, the first a system prompt S every prompt shares (as every prompt of Mooncake's conversation trace
begins with block 0). R0 (1 token out) arrives at 0 and ends within 0.1 s: worker 0 keeps S cached, worker 1 holds
nothing. R1..R60 arrive 0.05 s apart from 1 s (each computed before the next arrives) and each runs 2,000 tokens out,
so none ends before the last arrives: loads only grow.
- Defaults: S is half of each prompt, not more than the threshold: every request goes to the least loaded (ties: the
  lower index): R1 to 0 (loads 0, 0), R2 to 1, R3 to 0, ...
- Threshold 0.4 (S counts): R1..R33 find S on worker 0 alone and go there (loads 33, 0); R34 finds 33 - 0 > 32,
  imbalanced, and goes to worker 1, which then holds S too; R35..R60 find S on both and go to the less loaded, 1.
- Threshold 0.4 without the balance check (absolute gap 1,000): every request goes to worker 0, the other idle,
  whatever the load: what a run on the later half of Mooncake's trace did before the rule (every request on one of
  four workers, mean TTFT 934 s against 24 s)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.routers import CacheAwareThresholds
from sim.serving.run import ServingRun
from tests.test_serving import make_trace

S = 0  # the system prompt's block
N = 60
ARRIVAL = [0.0] + [1.0 + 0.05 * i for i in range(N)]
BLOCKS = [[S, 1 + i] for i in range(N + 1)]
INPUTS, OUTPUTS = [32] * (N + 1), [1] + [2000] * N
BASE = ["serving.num_instances=2", "serving.block_size=16"]
# (one node's precise-prefix router ranks the longest prefix in any tier first: the lower tiers are the node's,
# shared, so only HBM tells the workers apart, and it checks balance too)
ROUTERS = ["prefix-aware", "precise-prefix"]


def _instances(router: str, *sets: str) -> list[int]:
    sets = [*BASE, f"cluster.router={router}", *sets]
    run = ServingRun(make_trace(ARRIVAL, INPUTS, OUTPUTS, block_lists=BLOCKS), load_config(None, sets=sets), "single")
    run.run()
    assert run.completed == N + 1
    assert run.table.last_token[0] < ARRIVAL[1]  # (R0 ended: worker 0 holds S cached)
    assert run.table.first_token[1:].max() < 1.0 + 0.05 * N < run.table.last_token[1:].min()  # (loads only grow)
    return run.table.instance.tolist()


ALTERNATING = [0] + [0, 1] * (N // 2)
CACHE_FIRST = [0] + [0] * 33 + [1] * 27


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("sets, expected", [
    ((), ALTERNATING),
    (("cluster.cache_threshold=0.4",), CACHE_FIRST),
    (("cluster.cache_threshold=0.4", "cluster.balance_abs_threshold=1000"), [0] * (N + 1)),
], ids=["defaults", "shared_prefix_counts", "shared_prefix_counts_without_the_balance_check"])
def test_a_prefix_every_prompt_shares_sends_requests_as_sglang_s_rule_says(router, sets, expected):
    assert _instances(router, *sets) == expected


@pytest.mark.parametrize("most, least, abs_gap, rel_gap, imbalanced", [
    (33, 0, 32, 1.0001, True), (32, 0, 32, 1.0001, False),  # the absolute gap must be exceeded
    (41, 1, 0, 40.0, True), (40, 1, 0, 40.0, False),  # and the most loaded above rel x the least
    (5, 5, 0, 1.0, False),
])
def test_the_balance_check_is_sglangs(most, least, abs_gap, rel_gap, imbalanced):
    """sgl-router's CacheAwarePolicy: imbalanced when max - min > balance_abs_threshold and max > balance_rel_threshold
    x min (both strict)."""
    thresholds = CacheAwareThresholds(cache=0.5, balance_abs=abs_gap, balance_rel=rel_gap)
    assert thresholds.imbalanced(most, least) is imbalanced


@pytest.mark.parametrize("sets, decode", [
    ((), None),  # (the least loaded each time: the counts never differ by more than one)
    (("cluster.cache_threshold=0.4",), [1] * 34 + [2] * 27),
    (("cluster.cache_threshold=0.4", "cluster.balance_abs_threshold=1000"), [1] * (N + 1)),
], ids=["defaults", "shared_prefix_counts", "shared_prefix_counts_without_the_balance_check"])
def test_a_prefix_aware_decode_router_follows_the_same_rule(sets, decode):
    """--pd, one prefill instance (0) and two decode instances (1, 2), ``pd.decode_router: prefix-aware`` (the longest
    usable prefix in a decode instance's HBM, loads being requests bound and not finished): the case above on the
    decode side. R0 is bound to 1 (both idle: the lower index), which keeps S. By default S (half the prompt) does not
    count: the less loaded (ties: the less KV in use, which the decode progress sets), so the two counts bound never
    differ by more than one; where it counts, R1..R33 go to 1, which alone holds S, at R34 the loads are 33
    and 0, imbalanced: 2, then S is on both and 2 is less loaded; without the check every request is bound to 1."""
    sets = ["pd.num_prefill=1", "pd.num_decode=2", "pd.decode_router=prefix-aware", "serving.block_size=16", *sets]
    run = ServingRun(make_trace(ARRIVAL, INPUTS, OUTPUTS, block_lists=BLOCKS), load_config(None, sets=sets), "pd")
    run.run()
    assert run.completed == N + 1
    assert run.table.last_token[1:].min() > 1.0 + 0.05 * N  # (loads only grow)
    bound = run.table.decode_instance.tolist()
    if decode is None:
        assert bound[0] == 1
        gaps = np.cumsum([1 if d == 1 else -1 for d in bound[1:]])
        assert set(bound) == {1, 2} and np.abs(gaps).max() <= 1
    else:
        assert bound == decode


@pytest.mark.parametrize("mode", [[], ["--cluster"]], ids=["single", "cluster"])
def test_session_affinity_on_a_trace_without_sessions_says_it_routes_as_least_loaded(run_cli, caplog, mode):
    """Azure's trace has no session ids: session-affinity sends every request to the least loaded (README: Routers),
    the run least-loaded would be; a note says so. A synthetic multi-turn workload has them: no note."""
    note = "no session ids: every request goes to the least loaded instance"
    status, _, err = run_cli(*mode, "--preset", "smoke", "--workload-trace", "trace/data/azure_conv_2023.csv",
                             "--router", "session-affinity", "--no-plot")
    told = [r.getMessage() for r in caplog.records if note in r.getMessage()]
    assert status == 0 and len(told) == 1 and "azure_conv_2023.csv" in told[0], err[-2000:]
    caplog.clear()
    status, _, err = run_cli(*mode, "--preset", "smoke", "--router", "session-affinity", "--no-plot")
    assert status == 0 and not [r for r in caplog.records if note in r.getMessage()], err[-2000:]
