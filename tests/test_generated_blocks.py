"""Generated tokens' blocks: read from the prompt that continues a request (``trace.continuations``), and cached
when the request lets them go, as vLLM caches every full block of a sequence (``KVCacheManager.cache_blocks``,
vllm/v1/core/kv_cache_manager.py; ``BlockPool.free_blocks`` keeps hashed blocks, LRU)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.run import run_serving
from tests.test_serving import make_trace
from trace.continuations import generated_blocks, interleaved

NO_LOWER_TIERS = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]


def _generated(inputs, outputs, block_lists, block_size=16):
    trace = make_trace(np.arange(len(inputs)) * 10.0, inputs, outputs, block_size, block_lists)
    space = max(k for b in block_lists for k in b) + 1
    return generated_blocks(trace, block_size, space), space


def test_a_next_turn_names_the_blocks_its_previous_turn_generated():
    """Blocks of 16. Turn 1: 40 tokens [a b p] (p partial), 30 generated: KV of 69 tokens (the last sampled token is
    never fed back), 4 full blocks, 2 of them filled by generation (p completed, one more). Turn 2 (80 tokens) holds
    turn 1's full blocks a b, then c d e: c d are what turn 1 generated."""
    a, b, p, c, d, e = range(6)
    generated, _ = _generated([40, 80], [30, 1], [[a, b, p], [a, b, c, d, e]])
    assert generated.of(0).tolist() == [c, d]
    assert generated.of(1).tolist() == []  # 80 + 1 - 1 tokens: no block past its prompt's 5
    assert generated.continued == 1


@pytest.mark.parametrize("case", ["branching", "too short", "seen before", "no full block"])
def test_blocks_no_later_prompt_is_known_to_hold_get_ids_of_their_own(case):
    """Turn 1 as above ([a b p], 30 generated: 2 blocks). Not read from a later prompt, each for its reason: block b
    is followed by two different full blocks in the trace (a shared prefix: which one is turn 1's answer is not
    known); the next prompt holds only one of the two blocks (not the whole answer); the block after b occurred before
    turn 1 (not its answer); a prompt shorter than a block (nothing to continue from). New ids, past the trace's."""
    a, b, p, c, d, e, f, g = range(8)
    lists, inputs, outputs = {
        "branching": ([[a, b, p], [a, b, c, d, e], [a, b, f, g]], [40, 80, 64], [30, 1, 1]),
        "too short": ([[a, b, p], [a, b, c, e]], [40, 60], [30, 1]),
        "seen before": ([[a, b, c, f], [a, b, p], [a, b, c, d, e]], [64, 40, 80], [1, 30, 1]),
        "no full block": ([[p], [c, d, e]], [10, 48], [40, 1]),
    }[case]
    generated, space = _generated(inputs, outputs, lists)
    turn = 1 if case == "seen before" else 0
    expected = 2 if case != "no full block" else 3  # (10 + 40 - 1) // 16 - 0
    ids = generated.of(turn)
    assert len(ids) == expected and ids.min() >= space and len(set(ids.tolist())) == expected
    assert generated.continued == 0
    assert generated.num_ids == space + len(generated.ids)


def test_a_regenerated_answer_leaves_the_earlier_one_to_itself():
    """Two requests with the same prompt [a b p] (a retry); the next turn continues the later one: its answer is the
    later one's, the earlier one's blocks are its own."""
    a, b, p, c, d, e = range(6)
    generated, space = _generated([40, 40, 80], [30, 30, 1], [[a, b, p], [a, b, p], [a, b, c, d, e]])
    assert generated.of(1).tolist() == [c, d]
    assert min(generated.of(0)) >= space


def test_the_serving_stream_puts_generated_blocks_after_their_prompt():
    assert interleaved(np.array([1, 2, 3, 4, 5]), np.array([0, 2, 2, 5]), np.array([10, 11, 12]),
                       np.array([0, 1, 1, 3])).tolist() == [1, 2, 10, 3, 4, 5, 11, 12]


@pytest.mark.parametrize("outputs_in_next_turn", [True, False])
def test_a_next_turn_hits_the_blocks_its_previous_turn_generated(outputs_in_next_turn, caplog):
    """Turn 1 [a b p] (40 tokens, 30 generated) finishes long before turn 2 [a b c d e] (80 tokens) arrives: turn 2
    finds a b c d cached (64 tokens: c d are turn 1's completed partial block and its next one), where caching prompt
    blocks only found a b (32). Prompts replayed as recorded (``workload.outputs_in_next_turn=false``: the server's
    answer is not the one in turn 2's prompt): a b only."""
    a, b, p, c, d, e = range(6)
    trace = make_trace([0.0, 100.0], [40, 80], [30, 1], block_lists=[[a, b, p], [a, b, c, d, e]])
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16", *NO_LOWER_TIERS,
                                     f"workload.outputs_in_next_turn={str(outputs_in_next_turn).lower()}"])
    caplog.set_level(logging.WARNING, logger="kvsim")
    result, requests = run_serving(trace, config, "single")
    hit = 4 if outputs_in_next_turn else 2
    assert requests.cached_tokens.tolist() == [0, 16 * hit]
    assert (result.metrics["accesses"], result.metrics["hits"]) == (8, hit)
    assert "turns that continue an earlier request" not in caplog.text  # (turn 2 comes after turn 1's answer)


def test_a_next_turn_before_the_answer_ends_computes_the_answer_itself(caplog):
    """Turn 2 arrives while turn 1 still decodes (a server slower than the one traced): turn 1's generated blocks
    become cached prefixes when it lets them go (vLLM: as they fill; a real trace's next turn comes after the answer),
    so turn 2 finds a b only (32 tokens) and computes c d itself. Turn 3 ([a b c d e f], after both) finds every
    full block but its last (a prefix hit stops a token short): 80 tokens."""
    a, b, p, c, d, e, f = range(7)
    trace = make_trace([0.0, 0.01, 100.0], [40, 80, 96], [30, 200, 1],
                       block_lists=[[a, b, p], [a, b, c, d, e], [a, b, c, d, e, f]])
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16", *NO_LOWER_TIERS])
    caplog.set_level(logging.WARNING, logger="kvsim")  # (an in-process main --quiet earlier leaves it at ERROR)
    _, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 32, 80]
    # and the run says so (turn 3 continues nothing: turn 2's answer, 200 tokens, is not all in its prompt)
    assert "kvsim: note: 1 of 1 turns that continue an earlier request were looked up before it finished" in caplog.text


def test_a_next_turn_that_waits_for_its_turn_finds_the_answer_and_is_not_noted(caplog):
    """Turn 2 arrives while turn 1 still decodes, but one sequence at a time (serving.max_num_seqs=1) keeps it
    waiting until turn 1 has finished and let its blocks go: its lookup, when it is scheduled, finds a b c d (64
    tokens, as if it had come later). It arrived early, yet lost nothing: the note counts the turns looked up before
    the answer they hold was cached, not those that merely arrived before it (it said this one was computed)."""
    a, b, p, c, d, e = range(6)
    trace = make_trace([0.0, 0.01], [40, 80], [30, 1], block_lists=[[a, b, p], [a, b, c, d, e]])
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16", "serving.max_num_seqs=1",
                                     *NO_LOWER_TIERS])
    caplog.set_level(logging.WARNING, logger="kvsim")
    _, requests = run_serving(trace, config, "single")
    assert requests.arrival[1] < requests.last_token[0] <= requests.scheduled[1]
    assert requests.cached_tokens.tolist() == [0, 64]
    assert "turns that continue an earlier request" not in caplog.text


def test_generated_blocks_take_cache_space_as_prompt_blocks_do():
    """By hand, blocks of 16, 5 usable (num_gpu_blocks 6), no lower tier, requests far apart. R1 [a0 a1] (32 tokens,
    1 generated) leaves a1, a0 cached. R2 [c0 c1] (24 tokens) generates 40: KV of 63 tokens in 4 blocks, so its growth
    evicts a1; its 2 generated full blocks (c1 completed, g2; no later prompt holds them) are cached with c0 when it
    finishes: a0 g2 g1 c0, least recent first. R3 (48 new tokens) takes 3 blocks and evicts a0 and g2. R4 [a0 e1 e2]
    finds nothing. vLLM's free queue gives the same: R2's unhashed partial last block first, then a0, then g2. With
    generated blocks dropped R3 took them, and R4 found a0 (16 tokens)."""
    a0, a1, c0, c1, d0, d1, d2, e1, e2 = range(9)
    trace = make_trace([0.0, 10.0, 20.0, 30.0], [32, 24, 48, 48], [1, 40, 1, 1],
                       block_lists=[[a0, a1], [c0, c1], [d0, d1, d2], [a0, e1, e2]])
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=6", "serving.block_size=16",
                                     *NO_LOWER_TIERS])
    _, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 0, 0, 0]


def test_clairvoyant_policies_see_when_a_generated_block_is_used_next():
    """Belady over the serving stream (each request's prompt blocks, then its generated ones). Blocks of 16, 7 usable,
    no lower tier, requests far apart. Turn 1 [a b p] (40 tokens, 30 generated: c d) caches d c b a (least recent
    first); R2 [z0 z1] caches z1 z0 after them; R3 (48 new tokens) leaves room for 4. LRU keeps b a z1 z0 and turn 2
    [a b c d e] finds 32 tokens; Belady evicts z0 z1 (never used again) and keeps c d, used by turn 2: 64 tokens."""
    a, b, p, c, d, e, z0, z1, y0, y1, y2 = range(11)
    trace = make_trace([0.0, 10.0, 20.0, 100.0], [40, 32, 48, 80], [30, 1, 1, 1],
                       block_lists=[[a, b, p], [z0, z1], [y0, y1, y2], [a, b, c, d, e]])
    base = ["serving.num_instances=1", "serving.num_gpu_blocks=8", "serving.block_size=16", *NO_LOWER_TIERS]
    cached = {policy: run_serving(trace, load_config(None, sets=[*base, f"cache.policy={policy}"]), "single")[1]
              .cached_tokens.tolist() for policy in ("lru", "belady")}
    assert cached == {"lru": [0, 0, 0, 32], "belady": [0, 0, 0, 64]}


def test_the_serving_reuse_ceiling_counts_generated_blocks():
    """Turn 1 [a b p] (40 tokens, 30 generated: c d), turn 2 [a b c d e]: 8 prompt blocks, 6 distinct. Replaying prompts
    (cache-only) only a b can hit again: 2 / 8; the serving modes also find c d: 4 / 8."""
    from trace.stats import trace_stats

    a, b, p, c, d, e = range(6)
    trace = make_trace([0.0, 100.0], [40, 80], [30, 1], block_lists=[[a, b, p], [a, b, c, d, e]])
    stats = trace_stats(trace)
    assert (stats["infinite_cache_hit_ratio"], stats["infinite_cache_hit_ratio_serving"]) == (2 / 8, 4 / 8)
    assert trace_stats(trace, outputs_in_next_turn=False)["infinite_cache_hit_ratio_serving"] == 2 / 8


def test_the_serving_ceiling_counts_no_partial_last_block():
    """Blocks of 16. The same 40-token prompt [a b p] twice, far apart, one output token (no generated block): 6 block
    accesses. The second finds a b (a hit stops a token short: 39 // 16 = 2 blocks) and never p, a partial block vLLM
    does not hash: the ceiling is 2 / 6 (it counted p too: 3 / 6, a bound no run reached), with the answers counted
    or not, and an unbounded cache reaches it, with lower tiers or without."""
    from trace.stats import serving_reuse_ceiling

    a, b, p = range(3)
    trace = make_trace([0.0, 100.0], [40, 40], [1, 1], block_lists=[[a, b, p], [a, b, p]])
    assert serving_reuse_ceiling(trace) == serving_reuse_ceiling(trace, outputs_in_next_turn=False) == 2 / 6
    base = ["serving.num_instances=1", "serving.num_gpu_blocks=64", "serving.block_size=16"]
    for tiers in ([], NO_LOWER_TIERS):
        metrics = run_serving(trace, load_config(None, sets=[*base, *tiers]), "single")[0].metrics
        assert (metrics["hits"], metrics["accesses"]) == (2, 6)
    # the cache-only replay looks every block up, p too (libCacheSim's view of a hash_ids trace; README says so):
    # the repeated prompt finds all three, plain or prefix
    from sim.cache.replay import run_cache_only

    for semantics in ("plain", "prefix"):
        config = load_config(None, sets=["cache.capacity_blocks=64", f"cache.access_semantics={semantics}"])
        (replayed,) = run_cache_only(trace, config, ["lru"])
        assert (replayed.metrics["hits"], replayed.metrics["accesses"]) == (3, 6)


def test_a_serving_run_stays_under_its_reuse_ceiling_and_passes_the_prompt_only_one(run_cli, tmp_path):
    """A synthetic multi-turn workload with room for every block, one instance (the ceilings are of one cache: behind
    a router a turn sent to another instance than its conversation's misses): the serving run's hit ratio is at most
    the serving ceiling (a hit is a block an earlier prompt held or an earlier request generated), and above the
    prompt-only one (the answers it caches are found by the next turns)."""
    import json

    # an empty start: a stationary one opens on long chats under way, 505k distinct blocks, past the room given
    sets = ["workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=400",
            "workload.synthetic.turns_mean=6", "workload.synthetic.think_time_median_s=3",
            "serving.block_size=16"]
    argv = [a for s in sets for a in ("--set", s)]
    reports = {}
    for name, mode in (("stats", ["--trace-stats"]),
                       ("single", ["--set", "serving.num_gpu_blocks=200000", "--set", "serving.num_instances=1"])):
        out = tmp_path / f"{name}.json"
        status, _, err = run_cli(*mode, *argv, "--quiet", "--no-plot", "--report-json", out)
        assert status == 0, err
        reports[name] = json.loads(out.read_text())["runs"][0]["metrics"]
    stats, served = reports["stats"], reports["single"]["hit_ratio"]
    assert stats["infinite_cache_hit_ratio"] < served <= stats["infinite_cache_hit_ratio_serving"]


def test_a_preempted_request_finds_what_it_generated():
    """vLLM looks up every full block of a resumed sequence (``Request.block_hashes`` cover the output too). Blocks of
    16: [a b p] (40 tokens) has computed 69 (29 generated: c d full) when it is preempted; its blocks go back to the
    cache, generated ones included; resumed with 69 tokens to recompute, it finds a b c d (64 tokens; a hit stops a
    token short: (69 - 1) // 16 = 4 blocks), takes c d out of the cache again, and holds 5 blocks."""
    from sim.serving.block_pool import BlockPool
    from sim.serving.job import Job
    from sim.serving.kv_cache_manager import KVCacheManager
    from tests.cache_helpers import make_cache

    class Clock:
        now = 0.0

    a, b, p, c, d = range(5)
    pool = BlockPool(50, Clock())
    cache = make_cache("lru", [50], num_blocks=16)
    kv = KVCacheManager(pool, cache, 16, True, lambda: 0.0)
    job = Job(0, 40, 31, [a, b, p], 0, target=40, generated_ids=[c, d])
    assert kv.lookup(job).tokens == 0
    kv.allocate(job, 69)
    job.computed = 69
    kv.free(job)  # preempted
    assert kv.cached_prefix_blocks([a, b]) == 2
    job.target, job.computed = 69, 0
    match = kv.lookup(job)
    assert (match.blocks, match.tokens) == (4, 64)
    kv.allocate(job, 69)
    assert pool.used == 5 and cache.lookup_prefix([c, d]).tolist() == []


def test_any_trace_gives_each_request_its_generated_blocks_from_a_later_prompt_or_new_ids():
    """Property: for any prompts (ids, lengths, outputs, even rows listing fewer ids than their tokens fill) each
    request has (input + output - 1) // 16 - input // 16 generated ids; an id taken from the trace sits in a later
    prompt right after the request's own full blocks; the others are new, past the trace's ids, each used once."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    request = st.tuples(st.lists(st.integers(0, 12), min_size=1, max_size=6), st.integers(1, 120), st.integers(1, 60))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(request, min_size=1, max_size=12))
    def check(requests):
        lists = [r[0] for r in requests]
        inputs, outputs = [r[1] for r in requests], [r[2] for r in requests]
        generated, space = _generated(inputs, outputs, lists)
        new = generated.ids[generated.ids >= space]
        assert len(set(new.tolist())) == len(new) and generated.num_ids == space + len(new)
        for r, (blocks, tokens, out) in enumerate(requests):
            ids = generated.of(r).tolist()
            assert len(ids) == max(0, (tokens + out - 1) // 16 - tokens // 16)
            if ids and ids[0] < space:
                full = min(tokens // 16, len(blocks))
                assert any(later[:full] == blocks[:full] and later[full:full + len(ids)] == ids
                           for later in lists[r + 1:])

    check()


def test_the_serving_ceiling_leaves_out_the_requests_a_serving_run_skips_as_too_long(run_cli, tmp_path):
    """The shape of Mooncake's FAST'25 synthetic trace, whose requests over a model's context (10 of 3,993, up to
    191,378 tokens) the serving modes skip (exceeds_max_model_len): 512-token blocks, max_model_len 2,048. Prompts
    [1 2] (1,024 tokens), [7 8 9 10] (2,048 + 1 output token: too long) and [1 2 5] (1,536 tokens), one output token
    each (no generated block). Over every request 9 accesses, 2 hits (the third prompt's 1 2): 2 / 9 both ceilings,
    below what a run reaches. A run serves the first and the third alone: 5 accesses, the same 2 hits (1,535 tokens
    past the first: 2 whole blocks), 2 / 5, and that is the serving ceiling over the requests it serves (it was 2 / 9);
    the prompt-only ceiling stays over every request, as the cache-only replay takes them all."""
    import json

    rows = [(0, 1024, [1, 2]), (1000, 2048, [7, 8, 9, 10]), (2000, 1536, [1, 2, 5])]
    trace = tmp_path / "m.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids}) + "\n"
                             for t, n, ids in rows))
    common = ["--workload-trace", trace, "--set", "serving.max_model_len=2048", "--quiet", "--no-plot"]
    reports = {}
    for name, mode in (("stats", ["--trace-stats"]), ("single", ["--set", "serving.num_instances=1"])):
        out = tmp_path / f"{name}.json"
        status, _, err = run_cli(*mode, *common, "--report-json", out)
        assert status == 0, err
        reports[name] = json.loads(out.read_text())["runs"][0]["metrics"]
    stats, single = reports["stats"], reports["single"]
    assert (single["requests_completed"], single["hits"], single["accesses"]) == (2, 2, 5)
    assert stats["infinite_cache_hit_ratio"] == 2 / 9
    assert stats["infinite_cache_hit_ratio_serving"] == 2 / 5 == single["hit_ratio"]
