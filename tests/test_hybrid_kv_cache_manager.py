"""vLLM 0.33's hybrid KV-cache manager for models mixing sliding-window and full-attention layers (gpt-oss, Gemma
2/3): the blocks a sliding group holds, keeps cached and admits with, by hand from vLLM's SlidingWindowManager; PD's
transfers; and decode windows that equal single steps."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.specs import model_spec
from tests.conftest import BUNDLED_AZURE, ROOT

# ---------------------------------------------------------------- vLLM's hybrid KV-cache manager
# gpt-oss-20b at 16-token blocks: one full-attention and one sliding group of 12 layers, window 128, so a sliding
# hit needs cdiv(127, 16) = 8 blocks and a block leaves the window once processed - 127 tokens pass it. The
# expected block counts follow vLLM 0.33's SlidingWindowManager (get_num_skipped_tokens, remove_skipped_blocks,
# find_longest_cache_hit) worked by hand for a 10,000-token prompt (625 blocks).

class Clock:
    now = 0.0


def hybrid_manager(async_scheduling: bool = False, pool_blocks: int = 20_000, ids: int = 1_000, lower: int = 0):
    from sim.serving.block_pool import BlockPool
    from sim.serving.hybrid_kv_cache_manager import HybridKVCacheManager
    from sim.serving.kv_groups import kv_groups
    from tests.cache_helpers import make_cache

    groups = kv_groups(model_spec("gpt-oss-20b"), 16)
    assert (groups.group_size, groups.full_groups, groups.sliding_groups, groups.hit_blocks) == (12, 1, 1, 8)
    pool = BlockPool(pool_blocks, Clock())
    cache = make_cache("lru", [pool_blocks, *([lower] if lower else [])], num_blocks=2 * ids)
    cap = groups.admission_cap(131_072, 8192, async_scheduling)
    return HybridKVCacheManager(pool, cache, 16, True, lambda: 0.0, groups, ids, cap, async_scheduling), pool


def prompt_job(rid: int = 0, tokens: int = 10_000, output: int = 600, first_id: int = 0):
    from sim.serving.job import Job

    blocks = list(range(first_id, first_id + -(-tokens // 16)))
    return Job(rid, tokens, output, blocks, 0, target=tokens)


def admit(kv, job, chunk: int) -> int:
    """The scheduler's admission: look up, allocate the first chunk; returns the tokens the hit served."""
    match = kv.lookup(job)
    job.computed = 0
    kv.allocate(job, match.tokens + chunk)
    job.computed = match.tokens
    return match.tokens


def sliding_held(job) -> int:
    return job.sliding_hi - job.sliding_lo


def test_the_hybrid_manager_holds_a_window_of_sliding_blocks_as_vllm_does():
    kv, pool = hybrid_manager()
    job = prompt_job()
    # vLLM's admission gate (sync): the full group's 625, a sliding group's at most cdiv(127 + 8192, 16) + 1 = 521
    # (its window and one batch); and the first chunk's own blocks, uncapped (all 625 + 625 when it is the prompt)
    assert kv.admission_blocks(job, 8192, True) == 625 + 521
    assert kv.admission_blocks(job, 10_000, True) == 625 + 625
    admit(kv, job, 10_000)  # the whole prompt in one step
    assert (job.held, sliding_held(job), pool.used) == (625, 625, 1250)
    job.computed = 10_000  # first decode step: blocks 0-616 leave the window (floor(9873 / 16) = 617)
    assert kv.new_blocks(job, 10_001) == 1 + 1 - 617
    kv.allocate(job, 10_001)
    assert (job.held + job.anonymous, job.sliding_lo, job.sliding_hi, pool.used) == (626, 617, 626, 626 + 9)
    for c in range(10_001, 10_500):
        job.computed = c
        kv.allocate(job, c + 1)
    assert (job.held + job.anonymous, sliding_held(job)) == (657, 9)  # blocks 648-656: 657 - floor(10372 / 16)
    kv.free(job)
    assert pool.used == 0


def test_a_sliding_group_keeps_only_its_replay_tail_cached_so_a_resent_prompt_hits_up_to_it():
    kv, pool = hybrid_manager()
    first = prompt_job()
    admit(kv, first, 10_000)
    first.computed = 10_000
    for c in range(10_000, 10_100):
        first.computed = c
        kv.allocate(first, c + 1)
    kv.free(first)
    again = prompt_job(rid=1)
    # the full group holds 624 blocks (short of the last token); the sliding group's tail, blocks 616-623, was kept
    assert admit(kv, again, 16) == 624 * 16 == 9_984
    assert (again.sliding_lo, again.sliding_hi) == (616, 625)


@pytest.mark.parametrize("dram", [0, 5_000])
def test_a_shared_prefix_hits_from_the_third_request_on_through_the_junction(dram):
    """Two prompts sharing 300 blocks then diverging: the second finds the full group's 300 blocks but no sliding
    run (the first kept only its own tail), so it is served from block 0's run only; it keeps the blocks ending at
    the junction, and the third prompt sharing the prefix is served all 300 (vLLM's shared_prefix_boundary). A
    tier below HBM changes nothing: it gets only the sliding copies HBM kept, as vLLM's offloading connector stores
    only a sliding group's reachable tails (the mask its GPU cache hashes by)."""
    kv, pool = hybrid_manager(lower=dram)
    shared = list(range(300))

    def job(rid: int):
        from sim.serving.job import Job

        blocks = shared + list(range(300 + 100 * rid, 300 + 100 * rid + 100))
        return Job(rid, 400 * 16, 10, blocks, 0, target=400 * 16)

    served = []
    for rid in range(3):
        j = job(rid)
        served.append(admit(kv, j, 400 * 16))
        j.computed = 400 * 16
        kv.allocate(j, 400 * 16 + 1)
        kv.free(j)
    assert served == [0, 0, 300 * 16]


def test_asynchronous_scheduling_frees_sliding_blocks_a_step_late():
    """The 10,000-token prompt in 8,192-token chunks, asynchronously: the second chunk's plan does not see the
    first as computed, so the sliding group still holds every block; the first decode step frees up to
    floor((8192 - 127) / 16) = 504, the second up to 617."""
    kv, pool = hybrid_manager(async_scheduling=True)
    job = prompt_job()
    kv.begin_step()
    assert kv.admission_blocks(job, 8192, True) == 625 + 625  # (cap cdiv(127 + 2 x 8192, 16) + 1 = 1033)
    admit(kv, job, 8192)
    assert (job.held, sliding_held(job)) == (512, 512)
    job.computed = 8192
    kv.begin_step()
    kv.allocate(job, 10_000)
    assert sliding_held(job) == 625
    job.computed = 10_000
    kv.begin_step()
    kv.allocate(job, 10_001)
    assert (job.sliding_lo, job.sliding_hi) == (504, 626)  # 122 blocks
    job.computed = 10_001
    kv.begin_step()
    kv.allocate(job, 10_002)
    assert (job.sliding_lo, job.sliding_hi) == (617, 626)


def test_a_request_left_out_of_the_step_in_flight_frees_on_all_it_computed():
    """Asynchronously vLLM frees on the tokens computed less those of the step in flight, which holds none of a
    request it left out (vLLM's num_in_flight_tokens): after its 8,192-token chunk and a step without it, its next
    chunk's plan frees up to floor((8192 - 127) / 16) = 504 at once."""
    kv, pool = hybrid_manager(async_scheduling=True)
    job = prompt_job()
    kv.begin_step()
    admit(kv, job, 8192)
    job.computed = 8192
    kv.begin_step()  # a step without it
    kv.begin_step()
    kv.allocate(job, 10_000)
    assert (job.sliding_lo, job.sliding_hi) == (504, 625)


SHAREGPT_16 = ROOT / "tests" / "fixtures" / "llmservingsim_rtxpro6000" / "workloads" / "sharegpt-qwen3-300-sps10.hash16.jsonl"


def test_within_the_window_the_hybrid_manager_serves_as_full_attention_does(run_cli, tmp_path):
    """Gemma-2-9B's window is 4,096 tokens; with every request within it (max_model_len 4,096: longer ones are
    refused alike) no block ever leaves a sliding group, every prompt's sliding copies are its replay tail, and
    the pool (twice the blocks, each half the layers) never fills on an H200: the hybrid manager must then serve
    exactly as vLLM with it off — every request's times, the hits and the KV occupancy. The prompts are replayed as
    recorded (``workload.outputs_in_next_turn=false``): a next turn that finds its previous answer cached is served
    it with the manager off but not under it, whose sliding groups keep no answer (tests/test_hybrid_generated_blocks.py)."""
    reports, requests = [], []
    for disable in ("false", "true"):
        report, rows = tmp_path / f"r-{disable}.json", tmp_path / f"q-{disable}.csv"
        status, _, err = run_cli("--set", "model=gemma-2-9b", "--set", f"serving.disable_hybrid_kv_cache_manager={disable}",
                                 "--set", "hardware.gpu=h200", "--set", "serving.num_instances=1",
                                 "--set", "serving.max_model_len=4096", "--set", "workload.outputs_in_next_turn=false",
                                 "--workload-trace", SHAREGPT_16,
                                 "--workload-limit", "80", "--no-plot", "--quiet", "--report-json", report,
                                 "--requests-csv", rows)
        assert status == 0, err
        reports.append(json.loads(report.read_text())["runs"][0]["metrics"])
        requests.append(pd.read_csv(rows))
    on, off = reports
    assert on["instances"]["kv_blocks_each"] // 2 == off["instances"]["kv_blocks_each"]  # half the bytes a block
    assert on["hits"] > 0
    for key in ("hits", "hit_ratio", "preemptions", "requests_completed"):
        assert on[key] == off[key], key
    # (decode steps one at a time here, in windows there: the same times up to rounding)
    pd.testing.assert_frame_equal(requests[0], requests[1], rtol=1e-9)
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert on[key] == pytest.approx(off[key], rel=1e-9), key
    assert on["instances"]["kv_usage_mean"] == pytest.approx(off["instances"]["kv_usage_mean"], rel=1e-3)


@pytest.mark.parametrize("async_scheduling", ["true", "false"])
def test_under_memory_pressure_the_hybrid_manager_preempts_and_gives_every_block_back(async_scheduling):
    """Conversations whose turns extend the one before (shared prefixes), longer than gpt-oss's window, on a pool
    too small for them and a DRAM tier below: requests are preempted and blocks evicted and demoted, and at the
    end every block is back in the pool, none ever above its size, every request served once."""
    from sim.config import load_config
    from sim.serving.run import ServingRun
    from tests.test_serving import make_trace

    rng = np.random.default_rng(7)
    arrival, inputs, outputs, chains = [], [], [], []
    next_id = 0
    for conversation in range(12):
        chain: list[int] = []
        t = conversation * 0.02  # (all twelve in a quarter second: the pool is short of blocks at once)
        for turn in range(4):
            new = int(rng.integers(10, 60))
            chain = chain + list(range(next_id, next_id + new))
            next_id += new
            arrival.append(t)
            inputs.append(len(chain) * 16 - int(rng.integers(0, 16)))
            outputs.append(int(rng.integers(20, 400)))
            chains.append(chain)
            t += 0.5
    order = np.argsort(arrival, kind="stable")
    trace = make_trace([arrival[i] for i in order], [inputs[i] for i in order], [outputs[i] for i in order],
                       block_lists=[chains[i] for i in order])
    config = load_config(None, sets=["model=gpt-oss-20b", "serving.num_instances=1", "serving.num_gpu_blocks=900",
                                     f"serving.async_scheduling={async_scheduling}", "serving.max_num_batched_tokens=1024",
                                     "cache.tiers.dram.capacity_gib=0.2", "cache.tiers.ssd.capacity_gib=0"])
    run = ServingRun(trace, config, "single")
    result = run.run()
    (inst,) = run.instances
    assert result.metrics["requests_completed"] == len(trace)
    assert result.metrics["preemptions"] > 0 and result.metrics["hits"] > 0
    assert result.metrics["tier_hit_ratio"]["dram"] > 0
    assert inst.pool.used == 0 and not inst.pool.refs and inst.pool.peak <= inst.pool.total


def test_the_hybrid_managers_pool_holds_blocks_of_one_group_and_is_not_divided_among_groups():
    """vLLM's pool under the hybrid manager: a block is 16 tokens of one group's 12 layers, 16 × 12 × 8 KV heads
    × 64 × 2 (K, V) × 2 bytes = 393,216 (half a whole-model block), and the GPU's KV budget (13,761,264,768 bytes
    of weights and gpt-oss's rotary cache, which vLLM builds in fp32: 131,072 × 64 × 4 = 32 MiB; sim.serving.
    memory_profile, at vLLM's default utilization 0.92) // 393,216 = 154,622 blocks (154,665 with the cache counted
    in bf16, 16 MiB: 43 blocks fewer; 154,630 with the sampler's top-k/top-p buffer at 128 rows, not the H100's 132
    SMs: gpt-oss's 201,088-token vocabulary makes the sampler the profile's peak), shared by both groups (PITFALLS:
    not divided by their number)."""
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes, lower_tier_blocks
    from sim.config import load_config
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes

    config = load_config(None, sets=["model=gpt-oss-20b"])
    assert kv_block_bytes(config) == 393_216
    budget = memory_budget(config)  # the budget's terms: tests/test_specs.py, tests/test_memory_profile.py
    assert budget.weights - rope_cache_bytes(model_spec(config.model), "bf16") == 13_761_264_768
    assert rope_cache_bytes(model_spec(config.model), "bf16") == 131_072 * 64 * 4
    assert hbm_capacity_blocks(config) == budget.kv_bytes // 393_216 == 154_622
    assert (budget.kv_bytes + 131_072 * 64 * 2) // 393_216 == 154_665
    assert lower_tier_blocks(3.0, config) == 3 * 1024**3 // 393_216  # a DRAM tier holds one group's blocks too
    gemma = load_config(None, sets=["model=gemma-3-27b"])
    # 62 layers: 10 full, 52 sliding -> groups of 10 (52 >= 1.5 x 10): 1 full, 6 sliding; a block 10 layers'
    # 16 tokens x 16 KV heads x 128 x 2 x 2 bytes
    assert kv_block_bytes(gemma) == 10 * 16 * 16 * 128 * 2 * 2


@pytest.mark.parametrize("disable,blocks,block_bytes", [("false", 625 + 8, 393_216), ("true", 625, 786_432)])
def test_pd_sends_the_full_groups_prompt_and_each_sliding_groups_window(disable, blocks, block_bytes):
    """A 10,000-token prompt of gpt-oss-20b sent from its prefill to its decode instance: under the hybrid manager
    the full group's 625 blocks and the sliding group's blocks of the window the first decoded token sees, tokens
    9,873 … 9,999, blocks 617 … 624 (vLLM never allocates the skipped ones), each a block of 12 layers; with the
    manager off every layer's 625 blocks."""
    from sim.config import load_config
    from sim.serving.run import run_serving
    from tests.test_serving import make_trace

    config = load_config(None, sets=["model=gpt-oss-20b", f"serving.disable_hybrid_kv_cache_manager={disable}"])
    result, table = run_serving(make_trace([0.0], [10_000], [5]), config, "pd")
    assert result.metrics["requests_completed"] == 1
    assert table.kv_transfer_bytes[0] == blocks * block_bytes


@pytest.mark.parametrize("async_scheduling,gate", [(False, 2000 + 0 + 8), (True, 2000 + (1033 - 759) + 8)])
def test_the_admission_gate_counts_a_sliding_group_from_block_0_less_the_hit(async_scheduling, gate):
    """vLLM's gate (get_num_blocks_to_allocate with the admission cap) caps a sliding group's blocks counted from
    block 0, then takes off the hit's blocks, leading nulls included, and adds its run where it leaves the cache. A
    32,000-token prompt (2,000 blocks) after a 760-block one sharing its start: the full group's 2,000 blocks (the
    759 cached ones leave the cache), the sliding group's min(2,000, cap) - 759 (sync: cap 521, none; async: 1,033),
    and its 8-block run. The first 8,192-token chunk alone needs fewer (1,271 + 8 + 512)."""
    from sim.serving.job import Job

    kv, pool = hybrid_manager(async_scheduling=async_scheduling, ids=4_000)
    first = Job(0, 760 * 16, 5, list(range(760)), 0, target=760 * 16)
    admit(kv, first, 760 * 16)
    first.computed = 760 * 16
    kv.allocate(first, 760 * 16 + 1)
    kv.free(first)
    second = Job(1, 32_000, 5, list(range(2000)), 0, target=32_000)
    served = kv.lookup(second).tokens
    assert served == 759 * 16  # the first prompt's tail: blocks 751-758 (its last full block before its last token)
    second.computed = 0
    assert kv.admission_blocks(second, served + 8192, True) == gate
    assert kv.admission_blocks(second, served + 8192, False) == 1271 + 8 + 512


def test_more_than_one_full_attention_group_is_refused_by_name(run_cli, tmp_path):
    """Gemma-3-1B's layout with 4 of its 26 layers sliding: vLLM groups them by 4, so the 22 full ones make 6
    full-attention groups, which kvsim's manager does not model: one line naming the setting, not a traceback."""
    from tests.hybrid_configs import GEMMA_3_1B
    from tests.test_model_config import write_config

    layers = ["sliding_attention"] * 4 + ["full_attention"] * 22
    path = write_config(tmp_path, {**GEMMA_3_1B, "layer_types": layers})
    status, out, err = run_cli("--set", f"model={path}", "--set", "serving.num_instances=1",
                               "--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--no-plot")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "6 full-attention groups" in err and "serving.disable_hybrid_kv_cache_manager=true" in err


def test_blocks_past_the_hit_are_the_requests_own_even_while_another_request_holds_them():
    """vLLM allocates new blocks past a request's hit: with A running (400 blocks, the first 300 shared), B finds
    A's 300 full blocks but no sliding run, so its hit is 0 and it computes all 400 into blocks of its own (review
    helper-58: kvsim shared A's 300, B took 100 + 400 sliding instead of 400 + 400)."""
    from sim.serving.job import Job

    kv, pool = hybrid_manager(ids=2_000)  # (B's own blocks are ids 1000-1099: the id space holds them)
    a = Job(0, 400 * 16, 50, list(range(400)), 0, target=400 * 16)
    admit(kv, a, 400 * 16)
    a.computed = 400 * 16
    kv.allocate(a, 400 * 16 + 1)
    before = pool.used
    b = Job(1, 400 * 16, 50, list(range(300)) + list(range(1000, 1100)), 0, target=400 * 16)
    assert kv.admission_blocks(b, 400 * 16, True) == 400 + 400  # (the whole prompt in its first chunk)
    assert admit(kv, b, 400 * 16) == 0
    assert pool.used - before == 400 + 400 and len(b.prompt_copies) == 300
    kv.free(a)
    kv.free(b)
    assert pool.used == 0 and not pool.refs


@pytest.mark.parametrize("disable,skipped", [("false", 1), ("true", 0)])
def test_a_request_the_hybrid_managers_admission_can_never_grant_is_skipped_before_the_run(disable, skipped):
    """700 usable blocks: a 10,000-token prompt fits whole-layer blocks (626 with its first decoded token), but
    under the hybrid manager its admission asks for 626 full and min(626, 1,033) sliding blocks (async), more than
    the instance has: it is skipped and counted when the trace is admitted, not failed in the middle of the run."""
    from sim.config import load_config
    from sim.serving.admission import admit
    from tests.test_serving import make_trace

    config = load_config(None, sets=["model=gpt-oss-20b", "serving.num_instances=1", "serving.num_gpu_blocks=701",
                                     f"serving.disable_hybrid_kv_cache_manager={disable}"])
    trace = make_trace([0.0, 1.0], [10_000, 500], [5, 5])
    assert admit(trace, config).get("exceeds_kv_capacity", 0) == skipped


def test_a_request_whose_recompute_after_a_late_preemption_cannot_fit_is_skipped_before_the_run():
    """700 usable blocks, async scheduling (a sliding group's admission cap: cdiv(127 + 2 x 8,192, 16) + 1 = 1,033):
    a 5,000-token prompt asks for 313 full + 313 sliding blocks, but preempted before its last token the request
    is recomputed as one chunk of 5,999 tokens + 1: 375 + 375 = 750 blocks, more than the instance has (vLLM's
    start-up check guarantees this footprint for max_model_len). It is skipped when the trace is admitted; with
    300 output tokens (332 + 332 = 664 blocks) it runs."""
    from sim.config import load_config
    from sim.serving.admission import admit
    from tests.test_serving import make_trace

    config = load_config(None, sets=["model=gpt-oss-20b", "serving.num_instances=1", "serving.num_gpu_blocks=701"])
    assert admit(make_trace([0.0, 1.0], [5_000, 5_000], [1_000, 300]), config) == {"exceeds_kv_capacity": 1}


def test_a_sliding_window_request_preempted_on_a_decode_instance_is_recomputed_not_failed(run_cli):
    """gpt-oss on 300-block instances under --cluster --pd: decode instances preempt and recompute prompt +
    generated tokens as one chunk. Before admission counted that footprint, request 181 (2,385 tokens: 300
    blocks on a 299-block instance) stopped the run with exit 2 mid-way; now such requests are skipped up front,
    counted, and every other request completes."""
    status, out, err = run_cli(
        "--cluster", "--pd", "--router", "precise-prefix", "--no-plot", "--set", "model=gpt-oss-20b",
        "--set", "serving.num_gpu_blocks=300", "--set", "hardware.gpus_per_node=2", "--set", "cluster.num_racks=2",
        "--set", "cluster.nodes_per_rack=1", "--set", "workload.synthetic.rate_rps=200",
        "--set", "workload.synthetic.num_requests=300", "--set", "workload.synthetic.kind=multi-turn",
        "--set", "workload.synthetic.input_tokens_mean=512", "--set", "cache.tiers.eic.capacity_gib=1",
        "--set", "workload.synthetic.think_time_median_s=1")
    assert status == 0, err
    used, skipped = (int(x) for x in
                     re.search(r"(\d+) requests used, (\d+) skipped \(exceeds_kv_capacity", out).groups())
    assert used + skipped == 300 and skipped > 0
    assert re.search(rf"requests_completed\s+{used}\b", out)


# ---------------------------------------------------------------- decode windows under the hybrid manager
_MULTI_TURN = ["workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=300",
               "workload.synthetic.turns_mean=4", "workload.synthetic.think_time_median_s=2",
               "workload.synthetic.rate_rps=10", "workload.synthetic.input_tokens_mean=300",
               "workload.synthetic.output_tokens_mean=120", "serving.num_instances=1", "pd.num_prefill=1",
               "pd.num_decode=2"]


@pytest.mark.parametrize(("model", "extra"), [
    ("gpt-oss-20b", ["serving.num_gpu_blocks=3000"]),  # a 128-token window: blocks leave as others join
    ("gpt-oss-20b", ["serving.num_gpu_blocks=900", "cache.tiers.dram.capacity_gib=0"]),  # PD waits for memory
    ("gemma-3-4b", ["serving.num_gpu_blocks=500", "cache.tiers.dram.capacity_gib=0.05",  # 5 sliding groups,
                    "serving.async_scheduling=false"]),                                  # preemptions, DRAM
    ("gemma-2-9b", ["serving.num_gpu_blocks=900", "cache.tiers.dram.capacity_gib=0"]),  # within its 4,096 window
], ids=["gpt-oss-roomy", "gpt-oss-tight", "gemma-3-sync-preempting", "gemma-2-tight"])
def test_hybrid_decode_windows_equal_single_steps(monkeypatch, model, extra):
    """A decode window's later steps allocate as they start, each request whose blocks change then (a block
    joining at a block boundary, one leaving a sliding group as its window moves on) as a single step plans it:
    timings, hits, preemptions, steps and every instance's KV occupancy are those of single steps, in both modes."""
    from sim.config import load_config
    from sim.serving.admission import admit
    from tests.test_serving import assert_windows_equal_single_steps
    from trace.workload import load_workload

    config = load_config(None, sets=[f"model={model}", *_MULTI_TURN, *extra])
    trace = load_workload(config)
    admit(trace, config)
    assert_windows_equal_single_steps(monkeypatch, trace, config)


def _sliding_run_by_definition(job, offsets, limit: int, where: list[int]):
    """Each sliding copy's level (``where`` cycled over the prompt's copies), and the sliding run computed plainly:
    the latest end e <= limit whose 8 blocks before it have every copy somewhere, else the run from block 0 up to the
    first block lacking one, with its copies' levels from the run's last block down, each block's groups in order."""
    level = {block + offset: where[(block * len(offsets) + g) % len(where)]
             for block in job.prompt_ids for g, offset in enumerate(offsets)}
    ok = [all(level[block + offset] >= 0 for offset in offsets) for block in job.prompt_ids[:limit]]
    need = 8
    ends = [e for e in range(need, limit + 1) if all(ok[e - need:e])]
    end = ends[-1] if ends else next((i for i, good in enumerate(ok) if not good), limit)
    start = max(0, end - need)
    return level, end, [level[job.prompt_ids[i] + offset] for i in range(end - 1, start - 1, -1) for offset in offsets]


@given(st.integers(0, 60), st.lists(st.integers(-1, 2), min_size=120, max_size=120))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_sliding_run_is_the_last_run_of_a_hit_every_sliding_group_holds(limit, where):
    """``_sliding_run`` (which checks a candidate run from its first block and skips past a block some group lacks)
    against its definition computed plainly: the latest end e <= limit whose ``hit_blocks`` (8) blocks before it have
    every sliding copy somewhere, else the run from block 0 up to the first block lacking one; with the copies' levels,
    block by block from the run's last, each block's groups in order."""
    kv, _ = hybrid_manager()
    job = prompt_job(tokens=60 * 16)
    offsets = kv.offsets
    level, end, expected = _sliding_run_by_definition(job, offsets, limit, where)
    assert kv._sliding_run(job, limit, level.__getitem__) == (end, expected)


@given(st.integers(0, 60), st.lists(st.integers(-1, 2), min_size=1, max_size=120), st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_sliding_run_probed_in_passes_is_the_last_run_every_sliding_group_holds(limit, where, sparse):
    """``_sliding_run`` given a finder of many keys at once (``each``: the cache's ``find_each``, the cluster's
    connector), which probes the last ``hit_blocks`` blocks and then twice as many before them at each pass, against
    the run's definition computed plainly (as above); ``sparse``: copies missing but for a few blocks, as a waiting
    prompt's mostly are (runs found deep in the prompt, after several passes)."""
    kv, _ = hybrid_manager()
    job = prompt_job(tokens=60 * 16)
    offsets = kv.offsets
    if sparse:
        where = [w if w < 0 or (i // len(offsets)) % 13 in (3, 4, 5, 6, 7, 8, 9, 10) else -1
                 for i, w in enumerate(where * (2 * 60 // len(where) + 1))]
    level, end, expected = _sliding_run_by_definition(job, offsets, limit, where)
    asked: list[int] = []

    def present(key: int) -> int:
        raise AssertionError("asked key by key")

    def each(keys: np.ndarray) -> np.ndarray:
        asked.extend(keys.tolist())
        return np.array([level[k] for k in keys.tolist()], dtype=np.int8)

    present.each = each
    assert kv._sliding_run(job, limit, present) == (end, expected)
    assert len(asked) == len(set(asked))  # each copy asked at most once
