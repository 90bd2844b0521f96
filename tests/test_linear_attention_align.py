"""vLLM 0.33's align-mode prefix caching of Gated DeltaNet states (``sim.serving.align_state_manager``), against a hand
walk-through of its code (v1/core/single_type_kv_cache_manager.py ``MambaManager``, v1/core/kv_cache_coordinator.py
``HybridKVCacheCoordinator.find_longest_cache_hit``, v1/core/sched/scheduler.py ``_mamba_block_aligned_split``) at
Qwen3-Next's 576-token blocks on Hopper (one attention group, three state groups; prefix_cache_retention_interval 0).

A (2,000 tokens: blocks 0-2 full, 3 partial), then B sharing A's first 1,500 tokens (blocks 0 and 1), then C sharing
them too, then A's next turn (2,300 tokens: A's 2,000, its answer and a question; blocks 0-2 are A's)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import load_config
from sim.serving.block_pool import BlockPool
from sim.serving.job import Job
from tests.cache_helpers import make_cache
from tests.report_invariants import check_report

BS, OFFSET, GROUPS = 576, 100, 3


class Clock:
    now = 0.0


def manager(checkpoints: bool = True, block_size: int = BS):
    from sim.serving.align_state_manager import AlignStateKVCacheManager

    pool = BlockPool(200, Clock())
    cache = make_cache("lru", [200], num_blocks=OFFSET * (GROUPS + 1))
    return AlignStateKVCacheManager(pool, cache, block_size, True, lambda: 0.0, state_groups=GROUPS,
                                    key_offset=OFFSET, checkpoints=checkpoints, max_prefill_tokens=8192)


def job(rid: int, tokens: int, blocks: list[int], output: int = 100) -> Job:
    return Job(rid, tokens, output, blocks, 0, target=tokens)


def admit(kv, j: Job) -> tuple[int, int, int]:
    """(hit tokens, first chunk, blocks it takes) as the scheduler admits ``j`` with a budget of 8,192 tokens."""
    match = kv.lookup(j)
    chunk = kv.split_chunk(j, match.tokens, min(j.target - match.tokens, 8192))
    need = kv.admission_blocks(j, match.tokens + chunk, full_sequence=False)
    j.computed = 0
    kv.allocate(j, match.tokens + chunk)
    j.computed = match.tokens + chunk
    return match.tokens, chunk, need


def test_a_prompt_caches_one_state_at_its_replay_boundary_and_holds_one_state_block_when_decoding():
    """A: no hit; one chunk of 2,000 (the checkpoint at 1,728 = (2,000 - 1) // 576 × 576 is exported inside it,
    ``is_mamba_prefill_checkpoint_valid``); 4 attention blocks and in each state group the checkpoint block (index 2)
    and the running one (index 3), ``physical_block_cap`` 1 + 1. At its first decode step the checkpoint block goes
    (``remove_skipped_blocks``: 1,999 // 576 = 3 blocks skipped) and its state (after 1,728 tokens) stays cached."""
    kv = manager()
    a = job(0, 2000, [0, 1, 2, 3])
    assert admit(kv, a) == (0, 2000, 4 + 2 * GROUPS)
    assert kv.pool.used == 10 and a.state_idx == ((2, True), (3, False))
    assert kv.new_blocks(a, 2001) == -GROUPS
    kv.allocate(a, 2001)
    assert kv.pool.used == 4 + GROUPS and a.state_idx == ((3, False),)
    assert all(kv.find(2 + OFFSET * (g + 1)) == 0 for g in range(GROUPS))  # cached (free, in HBM)
    assert all(kv.find(b + OFFSET * (g + 1)) == -1 for b in (0, 1) for g in range(GROUPS))  # no other state


def test_a_hit_is_cut_back_to_a_cached_state_and_the_junction_is_cached_for_the_next():
    """B shares A's blocks 0 and 1: the attention group finds 1,152 tokens but no state group holds a state there
    (A cached only 1,728's) and none before: hit 0, junction 1,152 (``shared_prefix_boundary``). B's first chunk stops
    there (``_mamba_block_aligned_split``) and takes 2 new attention blocks (vLLM does not share blocks past the hit)
    and one state block a group (index 1, its state cached: ``reachable_block_mask``); its second chunk (to 2,000,
    checkpoint at 1,728 exported) takes 2 attention blocks and two state blocks a group, so B holds 3 a group until
    its first decode step. C, sharing the same 1,500 tokens, is then served 1,152 tokens."""
    kv = manager()
    a = job(0, 2000, [0, 1, 2, 3])
    admit(kv, a)
    kv.allocate(a, 2001)
    a.computed = 2001
    b = job(1, 2000, [0, 1, 10, 11])
    assert admit(kv, b) == (0, 1152, 2 + GROUPS)
    assert b.state_junction == 2 and b.state_idx == ((1, True),)
    assert kv.split_chunk(b, 1152, 848) == 848
    assert kv.new_blocks(b, 2000) == 2 + 2 * GROUPS
    kv.allocate(b, 2000)
    b.computed = 2000
    assert b.state_idx == ((1, True), (2, True), (3, False))
    used = kv.pool.used
    kv.allocate(b, 2001)  # the junction's and the checkpoint's state blocks go, cached
    assert kv.pool.used == used - 2 * GROUPS
    c = job(2, 2000, [0, 1, 20, 21])
    assert kv.lookup(c).tokens == 1152 and c.state_junction == 0


def test_a_next_turn_is_served_to_the_previous_prompts_replay_boundary():
    """A's next turn (2,300 tokens, A's blocks 0-2 then its own): attention hit 3 blocks, the state after 1,728 tokens
    cached by A: hit 1,728, no junction; one chunk of 572 (no checkpoint: it starts at 1,728). Blocks: attention
    1 new + 3 cached taken, each state group the hit's cached block and a running one (10)."""
    kv = manager()
    a = job(0, 2000, [0, 1, 2, 3])
    admit(kv, a)
    kv.allocate(a, 2001)
    a.computed = 2001
    kv.free(a)
    assert kv.pool.used == 0
    a2 = job(3, 2300, [0, 1, 2, 30])
    assert admit(kv, a2) == (1728, 572, 4 + 2 * GROUPS)
    assert a2.state_idx == ((2, True), (3, False)) and a2.state_junction == 0
    assert kv.pool.used == 4 + 2 * GROUPS
    kv.allocate(a2, 2301)
    assert kv.pool.used == 4 + GROUPS  # the hit's state block goes at the first decode step


def test_blocks_alone_covers_a_junction_a_checkpoint_and_a_running_state_at_once():
    """B of the walk-through above holds, until its first decode step, 4 attention blocks and 3 state blocks a group
    (the junction's, the checkpoint's, the running one): 13 blocks with A's cached, which admission must leave room
    for (``blocks_alone``). Counting two state blocks a group (10) let such a request pass admission, then wait for
    ever on an instance it could not fit even alone: a scheduler stall, an internal error (found by hstat)."""
    kv = manager()
    a = job(0, 2000, [0, 1, 2, 3])
    admit(kv, a)
    kv.allocate(a, 2001)
    a.computed = 2001
    kv.free(a)  # A's blocks and states cached, the pool otherwise idle
    b = job(1, 2000, [0, 1, 10, 11])
    admit(kv, b)
    kv.allocate(b, 2000)
    assert kv.pool.used == 4 + 3 * GROUPS == kv.blocks_alone(b.target + 1)
    assert manager(checkpoints=False).blocks_alone(2001) == 4 + 2 * GROUPS  # no checkpoint exported: junction, running


def test_a_request_that_needs_three_states_a_group_is_skipped_not_stalled(run_cli, tmp_path):
    """End to end (found by hstat, cluster PD; the same in a single node): a steady-start conversation's 63,693-token
    turn on 119 usable blocks of 576 tokens fits alone with two states a group (111 + 6) but not with three (111 + 9):
    it was admitted, then never scheduled ("37 requests never completed (scheduler stall)", exit 1). Now it is
    skipped as ``exceeds_kv_capacity`` before the run and every other request completes."""
    import json

    out = tmp_path / "r.json"
    status, _, err = run_cli("--no-plot", "--quiet", "--report-json", out, "--cluster", "--pd",
                             "--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h200",
                             "--set", "serving.tensor_parallel_size=2", "--set", "hardware.gpus_per_node=2",
                             "--set", "serving.num_gpu_blocks=120", "--set", "workload.synthetic.num_requests=40",
                             "--set", "workload.synthetic.turns_mean=5", "--set", "workload.synthetic.think_time_median_s=0.5",
                             "--set", "workload.synthetic.rate_rps=8", "--set", "workload.synthetic.input_tokens_mean=900",
                             "--set", "workload.synthetic.output_tokens_mean=30", "--set", "cluster.num_racks=1",
                             "--set", "cluster.nodes_per_rack=2")
    assert status == 0, err
    report = json.loads(out.read_text())
    skipped = report["trace"]["skip_reasons"]
    assert set(skipped) == {"exceeds_kv_capacity"}
    assert report["runs"][0]["metrics"]["requests_completed"] + skipped["exceeds_kv_capacity"] == 40


@pytest.mark.parametrize(("checkpoints", "block_size", "start", "budget", "tokens", "chunk"), [
    (True, 576, 0, 8192, 10_000, 14 * 576),  # a chunk short of the prompt's end ends at a block boundary
    (True, 576, 0, 300, 10_000, 0),  # none this step when the budget reaches no boundary
    (True, 576, 0, 2000, 2000, 2000),  # the last chunk: its checkpoint is exported inside it
    (False, 544, 0, 2000, 2000, 3 * 544),  # Ampere (no GDN checkpoints): stops at (2,000 - 1) // 544 × 544
    (False, 544, 1632, 368, 2000, 368),
])
def test_align_mode_ends_prefill_chunks_where_states_are_cached(checkpoints, block_size, start, budget, tokens, chunk):
    kv = manager(checkpoints, block_size)
    j = job(0, tokens, list(range(-(-tokens // block_size))))
    assert kv.split_chunk(j, start, budget) == chunk


def test_qwen3_next_serves_with_prefix_caching_on(run_cli, tmp_path):
    """vLLM's default (prefix caching on, align mode, 576-token blocks on Hopper) runs; shared prompts hit."""
    import json

    rows = "".join(f"2023-11-16 18:15:{i:02d}.0000000,3000,20\n" for i in range(6))
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    out = tmp_path / "r.json"
    status, _, err = run_cli("--no-plot", "--quiet", "--workload-trace", trace, "--report-json", out,
                             "--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h200",
                             "--set", "serving.tensor_parallel_size=2", "--set", "serving.num_instances=1")
    assert status == 0, err
    report = json.loads(out.read_text())
    assert report["runs"][0]["metrics"]["requests_completed"] == 6
    assert report["runs"][0]["metrics"]["instances"]["block_size"] == 576


def test_a_lower_tier_reads_the_states_of_its_hits_beside_their_blocks(run_cli, tmp_path):
    """Found by a stress run: an exclusive DRAM/SSD hierarchy under a single L40S's Qwen3-Next (544-token blocks on
    Ada: a block 12 layers x 544 tokens x 2 KV heads x 256 x 2 x 2 bytes = 13,369,344 B) serves hits whose states it
    loads too: its bytes_read are more than its hits' blocks (the report checker took them for blocks alone and
    flagged the run), by whole states, each a state group's 12 layers' unpadded states (12 x 1,097,728 =
    13,172,736 B: vLLM's offloading connector copies a MambaSpec page without its padding; kvsim read it as a padded
    block, 13,369,344 B)."""
    import json

    out = tmp_path / "r.json"
    status, _, err = run_cli("--no-plot", "--quiet", "--report-json", out, "--set", "model=qwen3-next-80b-a3b",
                             "--set", "hardware.gpu=l40s", "--set", "workload.synthetic.num_requests=150",
                             "--set", "workload.synthetic.rate_rps=200",
                             "--set", "workload.synthetic.input_tokens_mean=3000",
                             "--set", "workload.synthetic.output_tokens_mean=20",
                             "--set", "workload.synthetic.think_time_median_s=0.5",
                             "--set", "workload.synthetic.turns_mean=5",
                             "--set", "serving.num_gpu_blocks=400", "--set", "cache.tiers.dram.capacity_gib=4",
                             "--set", "cache.inclusion=exclusive")
    assert status == 0, err
    report = json.loads(out.read_text())
    metrics, block = report["runs"][0]["metrics"], 12 * 544 * 2 * 256 * 2 * 2
    assert metrics["instances"]["block_size"] == 544 and metrics["preemptions"] == 0
    ssd = metrics["tiers"]["ssd"]["bytes_read"]
    hits = round(metrics["tier_hit_ratio"]["ssd"] * metrics["accesses"])
    assert (ssd - hits * block) % (12 * 1_097_728) == 0 and ssd > hits * block > 0
    assert check_report(report) == []


def test_at_tp_4_a_lower_tier_counts_each_state_at_its_own_bytes_and_every_ranks_page():
    """Qwen3-Next at TP 4 on one node, two instances (round-robin) over a shared DRAM tier written through (inclusive).
    At TP 4 vLLM's block is 320 tokens (one rank's page, 320 x 1 KV head x 256 x 2 x 2 = 327,680 B a layer, holds one
    rank's state, 1,097,728 / 4 = 274,432 B); a block in DRAM holds every rank's page, as vLLM's OffloadingConnector
    stores it (each rank its own, a KV head on two ranks twice), 4 x 12 x 320 x 256 x 2 x 2 = 15,728,640 B, while a
    state group's state is split over the ranks, 12 x 1,097,728 = 13,172,736 B unpadded (vLLM's offloading connector
    copies a MambaSpec page without its padding), in one block's slot. A (2,000 tokens, 6 full blocks) on instance 0
    writes its 6 blocks and the 3 states after block 6 (its replay boundary); B (2,300 tokens, A's 6 blocks, then its
    own) on instance 1 loads those 6 blocks and 3 states from DRAM: 6 x 15,728,640 + 3 x 13,172,736 = 133,890,048 B
    read, each rank its page and its quarter of a state over its own link: 4 lanes of 50 GB/s after DRAM's 5 us; then
    B writes its block 7 and the 3 states after it: 7 x 15,728,640 + 6 x 13,172,736 = 189,136,896 B written in all."""
    from sim.serving.run import run_serving
    from tests.test_serving import make_trace

    sets = ["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=4",
            "hardware.gpus_per_node=8", "serving.block_size=320", "serving.num_gpu_blocks=200",
            "serving.num_instances=2", "cluster.router=round-robin", "cache.tiers.dram.capacity_gib=4",
            "cache.tiers.ssd.capacity_gib=0", "cache.inclusion=inclusive"]
    trace = make_trace([0.0, 100.0], [2000, 2300], [2, 2], 320, [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 8, 9]])
    config = load_config(None, sets=sets)
    result, requests = run_serving(trace, config, "single")
    block, state = 4 * 12 * 320 * 256 * 2 * 2, 12 * 1_097_728
    assert requests.instance.tolist() == [0, 1] and requests.cached_tokens.tolist() == [0, 6 * 320]
    dram = result.metrics["tiers"]["dram"]
    read = 6 * block + 3 * state
    assert dram["bytes_read"] == read == 133_890_048
    assert dram["bytes_written"] == 7 * block + 6 * state == 189_136_896
    assert float(requests.breakdown()["kv_load"][1]) == pytest.approx(5e-6 + read / (4 * 50e9), rel=1e-12)
    report = {"config": config.to_dict(), "trace": None, "mode": "single",
              "runs": [{"name": "lru", "metrics": result.metrics}]}
    assert check_report(report, block_bytes=block) == []


@pytest.mark.parametrize("policy_args", [("--policy", "lru,belady"), ("--set", "cache.tiers.dram.policy=belady")])
def test_a_policy_ranking_by_next_use_is_refused_beside_cached_states(run_cli, tmp_path, policy_args):
    """Belady's next uses are of the trace's blocks; align mode also caches states, keyed past them (found by
    fuzzing: an internal error, "block id outside the cache's block-id space", once a state was taken)."""
    out = tmp_path / "r.json"
    status, _, err = run_cli("--no-plot", "--quiet", "--report-json", out, *policy_args,
                             "--set", "model=qwen3-next-80b-a3b", "--set", "serving.tensor_parallel_size=4",
                             "--set", "serving.num_instances=1", "--set", "workload.synthetic.num_requests=40",
                             "--set", "workload.synthetic.think_time_median_s=2", "--set", "workload.synthetic.rate_rps=5")
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert "policy belady" in err and "serving.enable_prefix_caching=false" in err
    assert not out.exists()


@pytest.mark.parametrize("state_at_first_block", [False, True])
def test_a_lower_tier_never_serves_a_block_aligned_prompts_last_block_with_its_state(state_at_first_block):
    """B (1,152 tokens: blocks 1 and 2, block-aligned) finds both blocks and the states after block 2 in DRAM only.
    A lower tier may serve an attention-only prompt's last block (the last token is then recomputed), but a state
    cannot be rewound a token: vLLM's connector beside Mamba groups stops at round_down(1,151, 576) = 1 block
    (offloading/scheduler.py ``_lookup_complete_chunks``), so B's hit is the state after block 1, or nothing."""
    from sim.serving.align_state_manager import AlignStateKVCacheManager

    cache = make_cache("lru", [200, 200], num_blocks=OFFSET * (GROUPS + 1))
    kv = AlignStateKVCacheManager(BlockPool(200, Clock()), cache, BS, True, lambda: 0.0, state_groups=GROUPS,
                                  key_offset=OFFSET, checkpoints=True, max_prefill_tokens=8192)
    cache.resize_top(2)  # (HBM in use by others: two blocks to cache in)
    states = [b + OFFSET * (g + 1) for b in ([1, 2] if state_at_first_block else [2]) for g in range(GROUPS)]
    for key in [1, 2, *states, 50, 51]:  # the last two push everything else down to DRAM
        cache.touch(key, 0)
    assert all(cache.find(key) == 1 for key in [1, 2, *states])
    assert kv.lookup(job(1, 2 * BS, [1, 2])).tokens == (BS if state_at_first_block else 0)


@given(st.integers(0, 70), st.lists(st.integers(-1, 2), min_size=97, max_size=97), st.integers(0, 96))
@settings(max_examples=300, deadline=None)
def test_the_deepest_state_probed_in_passes_is_the_deepest_every_state_group_holds(blocks, where, shift):
    """``_deepest_state`` (states asked of the last 8 blocks, then of twice as many before those at each pass, in one
    call each) and its key-by-key form, against the definition computed plainly: the deepest of the first ``blocks``
    blocks whose state every state group holds (a level >= 0), with those states' levels; (0, []) where none does."""
    kv = manager()
    j = job(0, 60 * BS + 5, list(range(60)))
    level = {b + offset: where[(3 * b + g + shift) % len(where)] for b in j.prompt_ids
             for g, offset in enumerate(kv.offsets)}
    held = [i for i in range(min(blocks, 60)) if all(level[j.prompt_ids[i] + o] >= 0 for o in kv.offsets)]
    expected = (held[-1] + 1, [level[j.prompt_ids[held[-1]] + o] for o in kv.offsets]) if held else (0, [])
    asked = []

    def each(keys):
        asked.append(len(keys))
        return np.array([level[k] for k in keys.tolist()], dtype=np.int8)

    assert kv._deepest_state(j, blocks, level.__getitem__, each) == expected
    assert kv._deepest_state(j, blocks, level.__getitem__, None) == expected
    assert sum(asked) <= GROUPS * min(blocks, 60)  # (each key asked at most once)
