"""--cluster's KV connector (``sim.cluster.fetch.PrefixFetch._connect``): a request's prefix held below its instance's
HBM or at another location is loaded when the scheduler takes the request, as vLLM's scheduler asks its connector
(WAITING_FOR_REMOTE_KVS); by hand: what it loads, when the request is scheduled, what it holds meanwhile."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.cluster.run import ClusterRun, run_cluster
from sim.config import load_config
from tests.test_cluster import ONE_GPU_CLUSTER, _mooncake_file, _trace_and_config
from tests.tier_traffic_helpers import KV_BYTES_PER_TOKEN


@pytest.mark.parametrize("inclusion", ["exclusive", "inclusive"])
def test_cluster_serves_a_fetched_last_block_as_a_lower_tier_does(inclusion):
    """A block-aligned prompt whose last block is fetched from DRAM is served whole, its last token recomputed, as
    on a single node (prefix_hit's lower-tier case; vLLM's OffloadingConnector loads tokens // block_size blocks).
    By hand, 6 usable HBM blocks of 16 (num_gpu_blocks 7 less vLLM's null block): A (32 tokens, blocks 1-2) finishes; B (64 tokens, 4 blocks + 1 for its output)
    pushes A's blocks down, so A's prompt again finds block 1 in HBM and block 2 in DRAM: 2 hits (1 HBM, 1 DRAM)
    of 2 + 4 + 2 lookups, 31 tokens cached. The cluster loaded block 2 and then recomputed it (16 tokens cached)."""
    from tests.test_serving import make_trace

    a, b = [1, 2], [3, 4, 5, 6]
    trace = make_trace([0.0, 50.0, 100.0], [32, 64, 32], [2] * 3, block_lists=[a, b, a])
    result, requests = run_cluster(trace, load_config(None, sets=[*ONE_GPU_CLUSTER, "serving.num_gpu_blocks=7",
                                                                  f"cache.inclusion={inclusion}"]))
    m = result.metrics
    assert requests.cached_tokens.tolist() == [0, 0, 31]
    assert m["token_hit_ratio"] == pytest.approx(31 / 128)
    assert (m["hits"], m["cluster"]["hit_blocks"]["hbm"]["instance"], m["cluster"]["hit_blocks"]["dram"]["node"],
            m["cluster"]["fetched_blocks"]["node"]) == (2, 1, 1, 1)


def test_the_connector_loads_a_last_block_the_lookup_serves_from_a_copy_below():
    """A block-aligned prompt whose last block is in HBM with a copy in DRAM (inclusive tiers): vLLM's GPU lookup stops
    a token short (get_computed_blocks: max_cache_hit_length = num_tokens - 1), and its OffloadingConnector, asked for
    the blocks past that hit up to num_tokens // block_size, finds the copy and loads it. By hand, blocks of 16,
    llama-3.1-8b (2 x 32 layers x 8 KV heads x 128 x 2 bytes x 16 tokens = 2,097,152 bytes a block): A ([1, 2], 32
    tokens) finishes, leaving both blocks in HBM and DRAM; A's prompt again: block 1 from HBM, block 2 loaded from
    DRAM by the connector (1 block fetched, 31 tokens cached), over the DRAM link (5 us + bytes / 50 GB/s, slower
    than PCIe's 63 GB/s) before scheduling (``fetch``, no kv_load). The connector planned nothing and the
    scheduler's own lookup read it as a single node does: no block fetched, the read charged as kv_load."""
    from tests.test_serving import make_trace

    trace = make_trace([0.0, 50.0], [32, 32], [2, 2], block_lists=[[1, 2], [1, 2]])
    result, requests = run_cluster(trace, load_config(None, sets=[*ONE_GPU_CLUSTER, "cache.inclusion=inclusive"]))
    m = result.metrics
    assert requests.cached_tokens.tolist() == [0, 31]
    assert (m["hits"], m["cluster"]["hit_blocks"]["hbm"]["instance"], m["cluster"]["hit_blocks"]["dram"]["node"],
            m["cluster"]["fetched_blocks"]["node"]) == (2, 1, 1, 1)
    assert requests.kv_load[1] == 0.0
    assert requests.fetch[1] == pytest.approx(5e-6 + 2_097_152 / 50e9, rel=1e-9)


def test_the_connector_loads_a_last_block_held_in_this_hbm_from_another_nodes_dram():
    """A block-aligned prompt whose blocks are all in this instance's HBM and whose last block's only other copy is
    in another node's DRAM: vLLM's GPU lookup stops a token short (get_computed_blocks: max_cache_hit_length =
    num_tokens - 1) and its connector, asked for the blocks past that hit up to num_tokens // block_size (an
    OffloadingConnector, or a store shared across nodes such as Mooncake's), loads that copy. By hand, 1 rack x 2
    nodes x 1 GPU, round-robin (request k to instance k mod 2, instance i on node i), exclusive tiers, 6 usable HBM
    blocks of 16 (num_gpu_blocks 7 less vLLM's null block), llama-3.1-8b (2,097,152 bytes a block): r0 A ([1, 2])
    finishes on instance 0; r2 B (80 tokens + 2 out = 6 blocks) there pushes both of A's blocks into node 0's DRAM;
    r3 A on instance 1 loads both from node 0's DRAM (rack); r5 A on instance 1 finds both in its HBM, its last block
    also in node 0's DRAM (node 1's DRAM holds nothing): block 1 from HBM, block 2 loaded from node 0's DRAM (31
    tokens cached, 1 block fetched), one transfer over DRAM (5 us) -> NIC to NIC (5 us, 100 Gb/s, the narrowest)
    -> PCIe. The plan asked the prefix index only for blocks past the lookup's: r5 recomputed block 2 (16 tokens)."""
    from tests.test_serving import make_trace

    a, x, b, y = [1, 2], [10, 11], [3, 4, 5, 6, 7], [20]
    trace = make_trace([0.0, 50.0, 100.0, 150.0, 200.0, 250.0], [32, 32, 80, 32, 16, 32], [2] * 6,
                       block_lists=[a, x, b, a, y, a])
    result, requests = run_cluster(trace, load_config(None, sets=[
        "cluster.num_racks=1", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=1", "serving.block_size=16",
        "cluster.router=round-robin", "serving.num_gpu_blocks=7", "cache.inclusion=exclusive"]))
    m = result.metrics
    block = 2 * 32 * 8 * 128 * 2 * 16
    assert requests.instance.tolist() == [0, 1, 0, 1, 0, 1]
    assert requests.cached_tokens.tolist() == [0, 0, 0, 31, 0, 31]
    assert (m["hits"], m["cluster"]["hit_blocks"]["hbm"]["instance"], m["cluster"]["hit_blocks"]["dram"]["rack"],
            m["cluster"]["fetched_blocks"]["rack"]) == (4, 1, 3, 3)
    assert m["cluster"]["fetched_bytes"]["rack"] == 3 * block
    assert requests.kv_load[5] == 0.0
    assert requests.fetch[5] == pytest.approx(10e-6 + block / (100e9 / 8), rel=1e-9)
    assert requests.fetch[3] == pytest.approx(10e-6 + 2 * block / (100e9 / 8), rel=1e-9)


def test_the_connector_serves_a_prefix_as_the_scheduler_lookup_does():
    """The connector's plan and the scheduler's lookup read one prefix by one rule. By hand, inclusive tiers, blocks of
    16: block 1 only in DRAM, block 2 in HBM with a DRAM copy; a 32-token prompt [1, 2] finds no GPU hit (block 1 is
    not there), so vLLM's OffloadingConnector looks up blocks 0 .. 32 // 16 from DRAM, finds both and loads them:
    2 blocks, 31 tokens (the last recomputed), as the lookup serves them. The plan stopped at block 1 (16 tokens),
    one block short of the lookup, since it read the last block's tier as HBM."""
    from sim.serving.job import Job
    from tests.test_serving import make_trace

    trace = make_trace([0.0, 50.0], [32, 32], [2, 2], block_lists=[[1, 2], [1, 2]])
    run = ClusterRun(trace, load_config(None, sets=[*ONE_GPU_CLUSTER, "cache.inclusion=inclusive",
                                                    "serving.num_gpu_blocks=8"]))
    inst = run.instance(0)
    cache = inst.kv.cache
    cache.touch_chain([2, 1], np.array([0, 1]), freed=True)  # both cached in HBM, copied below (inclusive)
    cache.touch_chain([2], np.array([2]), freed=True)  # block 2 used last
    cache.resize_top(1)  # HBM keeps one block: block 1 leaves it (LRU), its copies stay
    assert (cache.resident(0), cache.resident(1)) == ({2}, {1, 2})
    job = Job(0, 32, 2, [1, 2], 0, target=32)
    lookup = inst.kv.lookup(job)
    plan = run._connect(inst, job)
    served = inst.kv.external_match(job, plan.hits)
    assert (lookup.blocks, lookup.tokens, lookup.tier_of_each) == (2, 31, [1, 1])
    assert (plan.hits, served.tokens) == (2, 31)
    assert [count for count, _ in plan.sources.values()] == [2]  # both blocks from the one DRAM


def test_a_prefix_evicted_while_its_request_queues_is_no_hit():
    """Hits are the blocks the scheduler serves at admission, not those held when the request arrived. By hand, one
    GPU, 6 usable HBM blocks of 16 (num_gpu_blocks 7), one sequence at a time, no lower tier: r0 ([1, 2], 32 tokens)
    finishes and leaves blocks 1, 2 cached; r1 ([3, 4, 5, 6], 64 tokens, 20 out: 84 tokens, 6 blocks) starts, and r2
    ([1, 2, 7], 48 tokens) arrives while r1 prefills, finds 1 and 2 cached and queues; r1's decode grows into all 6
    blocks, evicting 1 and 2, so r2 is served nothing: 0 hits of 2 + 4 + 3 lookups, as the single node counts
    (the cluster counted 2, the blocks held at r2's arrival)."""
    from sim.serving.run import run_serving
    from tests.test_serving import make_trace

    trace = make_trace([0.0, 10.0, 10.001], [32, 64, 48], [1, 20, 1], block_lists=[[1, 2], [3, 4, 5, 6], [1, 2, 7]])
    config = load_config(None, sets=[*ONE_GPU_CLUSTER, "serving.num_gpu_blocks=7", "serving.max_num_seqs=1",
                                     "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0",
                                     "cache.tiers.eic.capacity_gib=0"])
    cluster, _ = run_cluster(trace, config)
    single, _ = run_serving(trace, config, "single")
    for result in (cluster, single):
        assert (result.metrics["accesses"], result.metrics["hits"]) == (9, 0)
    assert cluster.metrics["cluster"]["hit_blocks"]["hbm"]["instance"] == 0


def test_a_prefix_below_hbm_is_loaded_once_when_its_request_is_admitted():
    """vLLM's order (Scheduler.schedule: the KV connector's load starts when the request is taken from the waiting
    queue, its blocks allocated, WAITING_FOR_REMOTE_KVS till it lands): by hand, one GPU, 6 usable HBM blocks of 16,
    DRAM on, one sequence at a time. r0 ([1, 2], 32 tokens) leaves blocks 1, 2 cached; r1 (90 tokens, 6 blocks)
    takes every block at t = 10, pushing 1 and 2 into DRAM; r2 ([1, 2, 7]) arrives while r1 runs and is admitted when
    r1 leaves, its 2 blocks read once from DRAM then: 2 MiB blocks (Llama-3.1-8B, 2 x 32 layers x 8 KV heads x 128 x
    2 bytes x 16 tokens) at DRAM's 50 GB/s after its 5 us (config.yaml), PCIe faster. Fetched at arrival into a full
    HBM, they were evicted at once and loaded again at admission: DRAM read 4 blocks."""
    from tests.test_serving import make_trace

    trace = make_trace([0.0, 10.0, 10.0005], [32, 90, 40], [1, 2, 1],
                       block_lists=[[1, 2], [3, 4, 5, 6, 8, 9], [1, 2, 7]])
    config = load_config(None, sets=[*ONE_GPU_CLUSTER, "serving.num_gpu_blocks=7", "serving.max_num_seqs=1",
                                     "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"])
    result, table = run_cluster(trace, config)
    m = result.metrics
    block = 2 * 32 * 8 * 128 * 2 * 16
    assert (m["hits"], m["accesses"], m["cluster"]["hit_blocks"]["dram"]["node"]) == (2, 2 + 6 + 3, 2)
    assert m["tiers"]["dram"]["bytes_read"] == 2 * block  # each block read once
    # taken as r1 leaves (one sequence at a time: r1 runs), then scheduled when its load lands
    assert table.fetch[2] == pytest.approx(5e-6 + 2 * block / 50e9, rel=1e-12)
    assert table.scheduled[2] == pytest.approx(table.last_token[1] + table.fetch[2], rel=1e-12)
    assert table.kv_load[2] == 0.0 and table.first_token[2] > table.scheduled[2]


def test_a_request_waiting_for_its_connector_load_counts_as_queued():
    """The timeseries' ``queued`` counts a request whose KV connector load is in flight (vLLM keeps it in the waiting
    queue, WAITING_FOR_REMOTE_KVS, and its num_waiting gauge counts it), not ``running``. The case above with node
    DRAM at 0.004194304 GB/s: r2's 2 blocks (2 x 2,097,152 B = 4,194,304 B) take 5 us + 1 s to load once r1 leaves,
    while nothing runs: at every sample in that second (every 10.0005 s / 250 = 0.04 s) one request is queued and
    none runs. (Counted neither as queued nor as running, the samples read 0 and 0.)"""
    from tests.test_serving import make_trace

    trace = make_trace([0.0, 10.0, 10.0005], [32, 90, 40], [1, 2, 1],
                       block_lists=[[1, 2], [3, 4, 5, 6, 8, 9], [1, 2, 7]])
    config = load_config(None, sets=[*ONE_GPU_CLUSTER, "serving.num_gpu_blocks=7", "serving.max_num_seqs=1",
                                     "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0",
                                     "cache.tiers.dram.read_gbps=0.004194304"])
    result, table = run_cluster(trace, config)
    assert table.fetch[2] == pytest.approx(5e-6 + 1.0, rel=1e-9)
    series = result.metrics["timeseries"]
    t = np.asarray(series["t_s"])
    loading = (t > table.last_token[1]) & (t < table.scheduled[2])
    assert loading.sum() >= 20  # (1 s of 0.04 s samples: 24 or 25)
    assert np.asarray(series["queued"])[loading].tolist() == [1] * int(loading.sum())
    assert np.asarray(series["running"])[loading].tolist() == [0] * int(loading.sum())


def _pending_load_run(tmp_path, *sets: str, y_own: int = 1, more: tuple[tuple[int, list[int]], ...] = ()):
    """One GPU, DRAM 4 GiB: r0 (hash ids 1..20) at 0 s, three fillers of 25 blocks at 1, 2, 3 s, X (1..20 + [500]) at
    10 s and Y (1..20 + ``y_own`` blocks from 501) at 10.001 s, then ``more`` (ms, hash ids), each of 512 x its blocks
    - 10 tokens, answered in 2 tokens."""
    ids = list(range(1, 21))
    rows = [(0, ids), *((1000 * k, list(range(1000 * k, 1000 * k + 25))) for k in (1, 2, 3)),
            (10_000, [*ids, 500]), (10_001, [*ids, *range(501, 501 + y_own)]), *more]
    path = _mooncake_file(tmp_path / "pending.jsonl", [(t, 512 * len(h) - 10, h) for t, h in rows], output_length=2)
    trace, config = _trace_and_config([
        f"workload.trace={path}", "hardware.gpus_per_node=1", "cluster.nodes_per_rack=1",
        "cache.tiers.dram.capacity_gib=4", "cache.tiers.ssd.capacity_gib=0", *sets])
    return run_cluster(trace, config)


def test_a_request_is_not_served_blocks_another_requests_load_has_not_brought(tmp_path):
    """vLLM caches a loading request's blocks only when its load lands (``allocate_slots(..., delay_cache_blocks=
    load_kv_async)``, ``_update_waiting_for_remote_kv``) and its OffloadingConnector defers a request whose hit blocks
    are being loaded (``_blocks_being_loaded``: ``get_num_new_matched_tokens`` returns None). One GPU, HBM of 30
    blocks of 512 tokens, DRAM 4 GiB: r0 (hash ids 1..20, 10,230 tokens) caches its 19 full blocks; three fillers of
    25 blocks push them to DRAM; X (1..20 + [500], 10,742 tokens) at 10 s loads those 19 blocks from DRAM: Llama-3.1-8B
    blocks of 2 x 32 layers x 8 KV heads x 128 x 2 bytes x 512 tokens = 64 MiB, 19 at DRAM's 50 GB/s after its 5 us
    (config.yaml; PCIe faster). Y (1..20 + [501]) at 10.001 s waits for that load (it took X's blocks as HBM hits
    at once before, prefill done at 10.0185 s, before X's KV had come), then is admitted in the step X is scheduled
    in: served 20 blocks (10,741 // 512) from HBM, X's 19 loaded and X's block 20, which X's own chunk in that step
    computes (vLLM caches a scheduled chunk's full blocks as it allocates them, before Y's lookup)."""
    result, table = _pending_load_run(tmp_path, "serving.num_gpu_blocks=30")
    x, y = 4, 5
    landed = 10.0 + 5e-6 + 19 * 2 * 32 * 8 * 128 * 2 * 512 / 50e9
    assert table.fetch[x] == pytest.approx(landed - 10.0, rel=1e-9)
    assert table.scheduled[x] == pytest.approx(landed, rel=1e-12)
    assert table.scheduled[y] >= table.scheduled[x] and table.prefill_done[y] > landed
    assert (table.cached_tokens[x], table.cached_tokens[y]) == (19 * 512, 20 * 512)
    assert table.fetch[y] == 0.0 and table.kv_load[y] == 0.0
    hits = result.metrics["cluster"]["hit_blocks"]
    assert (hits["dram"]["node"], hits["hbm"]["instance"]) == (19, 20)


@pytest.mark.parametrize("y_own", [1, 9])
def test_a_request_behind_one_waiting_for_a_load_is_admitted_past_it(tmp_path, y_own):
    """vLLM's scheduler passes over a request its connector defers (``get_num_new_matched_tokens`` None: a hit block
    in ``_blocks_being_loaded``) and scans on (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``:
    ``step_skipped_waiting``), the deferred one keeping its place in front; the connector is asked before the blocks
    are allocated, so a deferred request that would not fit is passed over too. The case above with Z (hash ids 600,
    601: 1,014 tokens + 2 out, 2 blocks, nothing held anywhere) at 10.002 s: X is loading (its 21 blocks held, of 29
    usable: 8 free), Y waits for that load, and the instance is idle, so the plan at Z's arrival passes Y over and
    schedules Z then, at 10.002 s, 0 tokens cached; Y is still served its 20 blocks from HBM after X's load lands
    (10 s + 5 us + 19 x 64 MiB / 50 GB/s = 10.0255 s). Y with 9 blocks of its own (29 blocks, 20 of them X's: 9 new
    of the 8 free) does not fit, and is passed over all the same. (Before: the queue stopped at Y, and Z was
    scheduled at 10.0255 s, after X's load landed; asking Y's fit first, at 10.21 s.)"""
    result, table = _pending_load_run(tmp_path, "serving.num_gpu_blocks=30", y_own=y_own, more=((10_002, [600, 601]),))
    x, y, z = 4, 5, 6
    landed = 10.0 + 5e-6 + 19 * 2 * 32 * 8 * 128 * 2 * 512 / 50e9
    assert table.fetch[x] == pytest.approx(landed - 10.0, rel=1e-9)
    assert table.scheduled[z] == pytest.approx(10.002, rel=1e-12) and table.cached_tokens[z] == 0
    assert table.scheduled[x] >= landed and table.scheduled[y] >= landed and table.cached_tokens[y] == 20 * 512
    assert table.fetch[y] == 0.0 and table.fetch[z] == 0.0


def test_a_request_passed_over_for_a_load_goes_before_one_preempted_after():
    """vLLM keeps the requests its scan passed over (connector deferral: ``get_num_new_matched_tokens`` None) in
    ``skipped_waiting``, which FCFS looks at before ``waiting`` (``_select_waiting_queue_for_scheduling``), while
    ``_preempt_request`` prepends a preempted one to ``waiting`` (vllm/v1/core/sched/scheduler.py): a request passed
    over goes before one preempted after it. By hand, one GPU, 10 usable HBM blocks of 16 tokens (11 less the null
    block), llama-3.1-8b (2,097,152 bytes a block), DRAM read at 16,777,216 B/s: r0 ([1, 2]) is cached, r1 (10 blocks)
    pushes it to DRAM. At 20 s C ([11], 16 tokens, 60 out), B ([12, 13, 14], 40 tokens, 60 out) and X ([1, 2, 7], 40
    tokens, 1 out) arrive, A ([1, 2, 8], 40 tokens, 1 out) at 20.001 s. C and B are admitted (1 + 3 blocks); X holds
    3 blocks and loads blocks 1, 2 from DRAM: 5 us + 2 x 2,097,152 / 16,777,216 s = 0.250005 s; A's prefix takes
    blocks being loaded, so A is passed over. C's 17th and 33rd tokens and B's 49th take the 3 free blocks; B's 65th
    needs a 5th: none is free, and B, admitted last, is preempted (vLLM's ``self.running.pop()``) with 25 tokens
    generated, 24 decode steps (about 0.17 s) in, before the load lands; C's 49th token takes one of B's 4 blocks.
    When the load lands 3 are free: A needs 1 (block 8; 1, 2 are X's), B 5 (65 tokens). A, first, is admitted in the
    plan that reads X in, served its 32 tokens from the HBM X's load filled; B waits. (Before: B went ahead of A; its
    5 blocks did not fit, the queue waited behind it, and A was admitted 0.5 s later, after its blocks had gone to
    DRAM again and been loaded a second time.)"""
    from tests.test_serving import make_trace

    rows = [(0.0, 32, 1, [1, 2]), (10.0, 150, 2, list(range(21, 31))), (20.0, 16, 60, [11]),
            (20.0, 40, 60, [12, 13, 14]), (20.0, 40, 1, [1, 2, 7]), (20.001, 40, 1, [1, 2, 8])]
    arrival, inputs, outputs, blocks = (list(x) for x in zip(*rows, strict=True))
    trace = make_trace(arrival, inputs, outputs, block_lists=blocks)
    _, table = run_cluster(trace, load_config(None, sets=[
        *ONE_GPU_CLUSTER, "serving.num_gpu_blocks=11", "cache.tiers.dram.read_gbps=0.016777216",
        "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"]))
    c, b, x, a = 2, 3, 4, 5
    load = 5e-6 + 2 * 2_097_152 / 16_777_216
    assert table.fetch[x] == pytest.approx(load, rel=1e-9)
    assert table.preemptions[b] >= 1 and table.preemptions[a] == 0
    assert table.last_token[c] > 20.0 + load  # (C holds its blocks past the landing: nothing else frees B's 5)
    assert table.scheduled[a] == table.scheduled[x] >= 20.0 + load
    assert table.cached_tokens[a] == 32 and table.fetch[a] == 0.0


def test_a_hybrid_request_waits_for_blocks_another_requests_load_has_not_brought(tmp_path):
    """The case above under vLLM's hybrid manager (gpt-oss-20b: its sliding groups' blocks taken at admission too,
    ``external_match``; 70 blocks so that r0's full blocks still leave HBM): X loads its 19 blocks (and their sliding
    copies) from DRAM; Y waits for that load and is then served the same 20 blocks from HBM. (Before: Y was
    scheduled at its arrival, 10.001 s, before X's load landed at 10.005 s.)"""
    _, table = _pending_load_run(tmp_path, "model=gpt-oss-20b", "serving.num_gpu_blocks=70")
    x, y = 4, 5
    assert table.fetch[x] > 0 and table.fetch[y] == 0.0
    assert table.scheduled[y] >= table.arrival[x] + table.fetch[x]
    assert (table.cached_tokens[x], table.cached_tokens[y]) == (19 * 512, 20 * 512)


REMOTE_ROWS = [(0, 1500, [1, 2, 3]), (10_000, 1000, [20, 21]), (20_000, 2000, [30, 31, 32, 33]),
               (30_000, 1500, [1, 2, 3])]


def _remote_run(run_cli, tmp_path, *extra: str) -> dict:
    """REMOTE_ROWS on 2 nodes x 1 GPU (round-robin: r0, r2 -> node 0; r1, r3 -> node 1), 4 HBM blocks (5 less
    vLLM's null block)."""
    trace = tmp_path / "remote.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids}) + "\n"
                             for t, n, ids in REMOTE_ROWS))
    out = tmp_path / "r.json"
    status, _, err = run_cli("--cluster", "--workload-trace", trace, "--router", "round-robin", "--quiet", "--no-plot",
                             "--report-json", out, "--set", "cluster.num_racks=1", "--set", "cluster.nodes_per_rack=2",
                             "--set", "hardware.gpus_per_node=1", "--set", "serving.num_gpu_blocks=5", *extra)
    assert status == 0, err[-2000:]
    return json.loads(out.read_text())["runs"][0]["metrics"]


def test_cluster_a_request_loads_its_prefix_then_is_scheduled(run_cli, tmp_path):
    """README Reports: ``scheduling_delay_s`` is arrival to first admission to a batch (the requests CSV's
    ``scheduled``). In the cluster the prefix is loaded once the scheduler takes the request (vLLM's KV connector:
    its blocks allocated, it waits for the load out of the batch, WAITING_FOR_REMOTE_KVS) and it is scheduled when the
    load lands (vLLM's SCHEDULED event), so r3 of REMOTE_ROWS, alone on node 1, loads 2 blocks from node 0's DRAM
    (its 1,500 tokens fill 2 blocks; the partial third never hits, as on a single node) from its arrival: 2 x 64 MiB
    over the 100 Gb/s NICs, its slowest links (12.5 GB/s; the links' microsecond latencies aside). The load is its
    ``fetch`` and the TTFT breakdown's kv_load, not queue."""
    requests = tmp_path / "req.csv"
    metrics = _remote_run(run_cli, tmp_path, "--requests-csv", str(requests))
    import pandas as pd  # noqa: PLC0415
    r3 = pd.read_csv(requests).iloc[3]
    load = 2 * 512 * KV_BYTES_PER_TOKEN / 12.5e9
    assert r3["fetch"] == pytest.approx(load, abs=20e-6)
    assert r3["kv_load"] == 0 and r3["scheduled"] == pytest.approx(r3["arrival"] + r3["fetch"], abs=1e-9)
    assert r3["queue_s"] == pytest.approx(0.0, abs=1e-9) and r3["kv_load_s"] == r3["fetch"]
    assert metrics["scheduling_delay_s"]["mean"] == pytest.approx(r3["fetch"] / 4, abs=1e-9)  # (the others: 0)
    assert metrics["ttft_breakdown_s"]["queue"] == pytest.approx(0.0, abs=1e-9)


SLOT_ROWS = [(0, 1500, [1, 2, 3]), (10_000, 100, [50]), (20_000, 2000, [30, 31, 32, 33]), (30_000, 100, [51]),
             (40_000, 2000, [40, 41, 42, 43]), (50_000, 600, [1, 2]), (50_000, 100, [60]), (50_000, 700, [30, 31])]


def test_cluster_a_request_waiting_for_its_load_holds_no_sequence_slot(run_cli, tmp_path):
    """vLLM keeps a request whose KV connector load is in flight in the waiting queue (WAITING_FOR_REMOTE_KVS); only
    ``running`` counts against max_num_seqs (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``). SLOT_ROWS on 2
    nodes x 1 GPU, round-robin (even rows -> node 0, odd -> node 1), 4 HBM blocks, max_num_seqs 1: node 0's r2 and
    r4 push r0's full blocks [1, 2] and then r2's [30, 31, 32] down to its DRAM; r5 ([1, 2], 600 tokens: block 1
    full) and r7 ([30, 31], 700 tokens: block 30 full) reach node 1 together, 2 blocks each (4 free). Both are taken
    at once and load one block each at the same time, sharing the NICs (12.5 GB/s): each load takes 2 x 64 MiB /
    12.5 GB/s (one after the other, as when a load held the one slot, 64 MiB / 12.5 GB/s each); then they run one
    at a time in the one slot."""
    trace = tmp_path / "slot.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids})
                             + "\n" for t, n, ids in SLOT_ROWS))
    requests = tmp_path / "req.csv"
    status, _, err = run_cli("--cluster", "--workload-trace", trace, "--router", "round-robin", "--quiet", "--no-plot",
                             "--requests-csv", requests, "--set", "cluster.num_racks=1",
                             "--set", "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=1",
                             "--set", "serving.num_gpu_blocks=5", "--set", "serving.max_num_seqs=1")
    assert status == 0, err[-2000:]
    import pandas as pd  # noqa: PLC0415
    table = pd.read_csv(requests)
    r5, r7 = table.iloc[5], table.iloc[7]
    shared = 2 * 512 * KV_BYTES_PER_TOKEN / 12.5e9
    assert (r5["instance"], r7["instance"]) == (1, 1)
    assert (r5["cached_tokens"], r7["cached_tokens"]) == (512, 512)
    assert r5["fetch"] == pytest.approx(shared, abs=20e-6) and r7["fetch"] == pytest.approx(shared, abs=20e-6)
    assert r7["scheduled"] >= r5["first_token"]  # one slot: r7 waits for r5's, after its load, as queueing
    assert r7["queue_s"] == pytest.approx(r7["scheduled"] - r7["arrival"] - r7["fetch"], abs=1e-9)
    assert r7["queue_s"] > 0


def test_cluster_a_block_fetched_from_another_nodes_dram_is_read_there(run_cli, tmp_path):
    """A prefix held in another node's DRAM is read out of that DRAM (README Cluster: the load crosses the
    source tier's link), so it counts in that tier's ``bytes_read`` as a local DRAM hit does. Hand-made
    trace, 2 nodes x 1 GPU, round-robin (r0, r2 -> node 0; r1, r3 -> node 1), 4 HBM blocks of 512 tokens:
    r2's 4 blocks push r0's 3 blocks [1, 2, 3] down to node 0's DRAM; r3 asks for [1, 2, 3] on node 1 and
    fetches its 2 full blocks from there (1,500 tokens: the partial third never hits): 2 blocks read, none otherwise
    (no preemption, no local DRAM hit)."""
    metrics = _remote_run(run_cli, tmp_path)
    block_bytes = 512 * KV_BYTES_PER_TOKEN
    assert metrics["preemptions"] == 0
    assert metrics["cluster"]["hit_blocks"]["dram"] == {"instance": 0, "node": 0, "rack": 2, "cross_rack": 0}
    assert metrics["tiers"]["dram"]["bytes_read"] == 2 * block_bytes
    # written: r0's 2 full blocks (r2 needs all 4); a partial last block is freed holding nothing (vLLM hashes full
    # blocks only, BlockPool.cache_full_blocks), so r0's third is not written, and on node 1 r1's one full block
    # beside the 2 fetched leaves room for r3's 3 blocks: nothing of r1's is demoted (before: 3 + 1 blocks)
    assert metrics["tiers"]["dram"]["bytes_written"] == 2 * block_bytes
