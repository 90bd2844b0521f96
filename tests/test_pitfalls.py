"""Bugs peer simulators shipped (the shared notes' PITFALLS.md), each reintroduced into kvsim by hand
(hpitmut's mutation audit) where no test failed on it: each test here fails on that mutant and holds on kvsim's code.
Expectations are worked out by hand from the trace and the documented rules, not read off a run."""

from __future__ import annotations

import numpy as np

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


def test_a_full_lower_tier_hit_is_not_cut_to_the_free_hbm_blocks():
    """sglang PR#40193: a full L3 hit was cut down to the free L2 capacity and reported as a partial hit. The KV
    connector's plan serves the whole held prefix whatever HBM has free: the blocks already in use there are shared,
    not taken again. By hand, one GPU, 4 usable blocks of 16, exclusive tiers: blocks 1 2 3 pushed to DRAM; a running
    request takes 1 and 2 back (33 tokens: 3 blocks, 1 left free); a 48-token prompt [1, 2, 3] then needs one new block
    (block 3, loaded), fits, and is served all 3 blocks, 47 tokens (its last recomputed), not min(3, 1 free) = 1."""
    from sim.cluster.run import ClusterRun
    from sim.serving.job import Job
    from tests.test_cluster import ONE_GPU_CLUSTER

    trace = make_trace([0.0, 50.0], [48, 32], [1, 2], block_lists=[[1, 2, 3], [1, 2]])
    run = ClusterRun(trace, load_config(None, sets=[*ONE_GPU_CLUSTER, "cache.inclusion=exclusive",
                                                    "serving.num_gpu_blocks=5"]))
    inst = run.instance(0)
    kv = inst.kv
    kv.cache.touch_chain([3, 2, 1], np.array([0, 1, 2]), freed=True)
    kv.cache.resize_top(0)
    kv.allocate(Job(1, 32, 2, [1, 2], 0, target=32), 33)
    job = Job(0, 48, 1, [1, 2, 3], 0, target=48)
    assert (kv.cache.resident(1), kv.pool.free, kv.admission_blocks(job, 48, True)) == ({3}, 1, 1)  # (it fits)
    plan = run._connect(inst, job)
    assert (plan.hits, kv.external_match(job, plan.hits).tokens) == (3, 47)
    assert kv.lookup(job).tier_of_each == [0, 0, 1]


def test_lower_tiers_are_looked_up_past_an_hbm_hit():
    """BLIS #1586: the CPU tier was checked only when the GPU lookup found nothing. The prefix runs on through lower
    tiers after its HBM blocks. By hand, 4 usable blocks of 16, exclusive tiers: A (blocks 1 2 3, 48 tokens) leaves
    them cached; B (block 7, 16 + 18 out: 3 blocks) takes the free one and evicts the two deepest cached, 3 then 2,
    into DRAM; C (blocks 1 2 3 4, 64 tokens) at 50 s is served block 1 from HBM and 2 3 from DRAM: 3 hits of 8
    lookups, 48 tokens cached, a load from DRAM (not 1 block, 16 tokens, and no load)."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=5", "serving.block_size=16",
                                     "cache.inclusion=exclusive"])
    trace = make_trace([0.0, 10.0, 50.0], [48, 16, 64], [1, 18, 1], block_lists=[[1, 2, 3], [7], [1, 2, 3, 4]])
    result, requests = run_serving(trace, config, "single")
    m = result.metrics
    assert (m["accesses"], m["hits"], m["tier_hit_ratio"]["hbm"], m["tier_hit_ratio"]["dram"]) == (8, 3, 1 / 8, 2 / 8)
    assert requests.cached_tokens.tolist() == [0, 0, 48]
    assert requests.kv_load[2] > 0


def test_a_free_cached_block_stays_in_hbm_while_hbm_has_room():
    """BLIS #511: free cached GPU blocks were moved to CPU, the opposite of vLLM, whose offloading never removes a GPU
    prefix hash while its block is not needed. By hand, 4 usable blocks of 16, exclusive tiers: A (blocks 1 2 3, 48
    tokens) leaves them cached with a block to spare; nothing needs HBM, so DRAM is written nothing, and C (blocks 1 2
    3 4, 64 tokens) at 50 s is served all three from HBM with no load."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=5", "serving.block_size=16",
                                     "cache.inclusion=exclusive"])
    trace = make_trace([0.0, 50.0], [48, 64], [1, 1], block_lists=[[1, 2, 3], [1, 2, 3, 4]])
    result, requests = run_serving(trace, config, "single")
    m = result.metrics
    assert (m["hits"], m["tier_hit_ratio"]["hbm"]) == (3, 3 / 7)
    assert m["tiers"]["dram"]["bytes_written"] == 0
    assert (requests.cached_tokens[1], requests.kv_load[1]) == (48, 0.0)


def test_a_chunked_prefill_counts_its_prefix_hits_once():
    """LLMServingSim PR#49, sglang PR#2555: prefix hits were counted once per prefill chunk, not once per request.
    vLLM counts a request's prefix-cache queries and hits when it is admitted, whatever the chunks its prefill takes.
    By hand, blocks of 16, a 16-token step budget: A (blocks 1 2 3, 48 tokens) leaves them cached; C (blocks 1 .. 6,
    96 tokens) at 50 s hits 3 blocks (48 tokens) and prefills the other 48 in three chunks: 3 + 6 = 9 lookups, 3
    hits."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16",
                                     "serving.max_num_batched_tokens=16", "serving.max_model_len=256"])
    trace = make_trace([0.0, 50.0], [48, 96], [1, 1], block_lists=[[1, 2, 3], [1, 2, 3, 4, 5, 6]])
    result, requests = run_serving(trace, config, "single")
    assert (result.metrics["accesses"], result.metrics["hits"]) == (9, 3)
    assert requests.cached_tokens.tolist() == [0, 48]


def test_two_writers_of_one_output_each_write_through_their_own_temporary_file(tmp_path):
    """LLMServingSim PR#43: runs in parallel overwrote each other's temporary files. Two runs writing one report at
    once (a sweep's workers, two shells) each write a temporary file of its own beside it and rename it: both
    succeed and the report is whole, the last rename's. A fixed temporary name made the second writer truncate the
    first's file and the first's rename fail."""
    from sim.report.output import atomic_write

    path = tmp_path / "report.json"
    with atomic_write(path) as first:
        first.write("first run's report\n")
        with atomic_write(path) as second:
            second.write("second run's report\n")
        assert path.read_text() == "second run's report\n"
    assert path.read_text() == "first run's report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]

