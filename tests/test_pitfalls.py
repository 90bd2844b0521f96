"""Bugs peer simulators shipped (/work/shared/PITFALLS.md), each reintroduced into kvsim by hand (hpitmut's mutation
audit) where no test failed on it: each test here fails on that mutant and holds on kvsim's code. Expectations are
worked out by hand from the trace and the documented rules, not read off a run."""

from __future__ import annotations

from sim.config import load_config
from sim.serving.run import run_serving
from tests.test_serving import make_trace


def test_a_preempted_request_readmitted_with_cached_blocks_counts_its_hits_once():
    """BLIS #1121: prefix hits of re-admitted preempted requests were counted, inflating the hit rate. vLLM counts a
    request's prefix-cache queries and hits at its admission; a preempted one's re-admission finds its own freed
    blocks, which serve its recompute but are no new request's hits. By hand: 4 usable blocks of 16; A (block 0, 16
    tokens, 2 out) and B (blocks 1 2, 32 tokens, 3 out) prefill together (3 blocks); step 2: A's 17th token takes the
    4th, B's 33rd finds none and B is preempted, its 2 blocks cached; B re-admitted finds both (32 tokens); C (blocks
    1 2) at 50 s hits block 1 only (a 32-token prompt recomputes its last token: (32 - 1) // 16 = 1 block). Looked up
    once per request: 1 + 2 + 2 = 5 blocks, 1 hit, B's cached tokens 0 (its first admission's)."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=5", "serving.block_size=16"])
    trace = make_trace([0.0, 0.0, 50.0], [16, 32, 32], [2, 3, 2], block_lists=[[0], [1, 2], [1, 2]])
    result, requests = run_serving(trace, config, "single")
    assert requests.preemptions.tolist() == [0, 1, 0]  # (the premise: B was preempted and re-admitted)
    assert (result.metrics["accesses"], result.metrics["hits"]) == (5, 1)
    assert requests.cached_tokens.tolist() == [0, 0, 16]
