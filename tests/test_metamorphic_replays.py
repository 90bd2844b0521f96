"""Metamorphic relations of one workload replayed twice, split into finer blocks, spread over racks, served one
request at a time or in more HBM: whole runs whose results must relate as the definitions fix (tests/
test_metamorphic.py holds the relations between runs of one trace; each test says which definition makes it hold)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import BUNDLED_AZURE
from metamorphic_helpers import MOONCAKE
from metamorphic_helpers import checked_run as _run
from metamorphic_helpers import metrics_of as _metrics


def _mooncake_records(shared_data, n: int) -> list[dict]:
    lines = (shared_data / MOONCAKE).read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def _write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _twice(records: list[dict], gap_ms: float | None = None) -> list[dict]:
    """The records, then the same records again after the last (their own times, or ``gap_ms`` apart)."""
    if gap_ms is not None:
        records = [{**r, "timestamp": i * gap_ms} for i, r in enumerate(records)]
    shift = records[-1]["timestamp"] + (gap_ms or 1000)
    return records + [{**r, "timestamp": r["timestamp"] + shift} for r in records]


def test_a_trace_replayed_twice_in_a_cache_of_all_its_blocks_hits_every_second_pass_access(run_cli, tmp_path,
                                                                                          shared_data):
    """A cache with room for every distinct block never evicts (each policy evicts only when full: DESIGN, "the tier
    decides when to evict"), so a trace replayed a second time, back to back, hits every access of the second pass,
    whatever the policy and the access semantics. The first pass hits, by hand from the file: with ``plain`` every
    access after a block's first, with ``prefix`` each request's longest prefix of blocks seen before. At exactly the
    distinct block count (the tightest such cache) a policy that evicted a slot early would miss."""
    records = _mooncake_records(shared_data, 100)
    seen: set[int] = set()
    accesses = plain_hits = prefix_hits = 0
    for r in records:
        ids = r["hash_ids"]
        accesses += len(ids)
        plain_hits += sum(i in seen for i in ids)
        prefix_hits += next((k for k, i in enumerate(ids) if i not in seen), len(ids))
        seen.update(ids)
    path = _write_jsonl(tmp_path / "twice.jsonl", _twice(records))
    policies = ("lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady", "belady-bypass")
    for semantics, first in (("plain", plain_hits), ("prefix", prefix_hits)):
        report, _ = _run(run_cli, tmp_path, "--cache-only", "--workload-trace", path, "--policy", ",".join(policies),
                         "--capacity-blocks", str(len(seen)), sets=(f"cache.access_semantics={semantics}",),
                         name=semantics)
        assert [run["name"] for run in report["runs"]] == list(policies)
        for run in report["runs"]:
            m = run["metrics"]
            assert (m["accesses"], m["hits"]) == (2 * accesses, first + accesses), (semantics, run["name"])


@pytest.mark.parametrize("mode,sets", [
    ((), ("serving.num_gpu_blocks=20000", "cache.tiers.dram.capacity_gib=0")),
    ((), ("serving.num_gpu_blocks=300", "cache.tiers.dram.capacity_gib=1024")),  # the second pass loads from DRAM
    (("--pd",), ("serving.num_gpu_blocks=20000", "cache.tiers.dram.capacity_gib=0")),
], ids=["single-hbm", "single-dram", "pd"])
def test_a_trace_replayed_twice_in_room_for_all_its_blocks_serves_every_second_prompt_from_the_cache(
        run_cli, tmp_path, shared_data, mode, sets):
    """The same relation in the serving modes (README Serving: a request skips the compute of its longest cached
    prefix, whole blocks short of its last token). Requests 1,000 s apart never meet, one instance holds every block
    (HBM, or HBM over a DRAM tier), so each second-pass request is served its whole prompt but the block of its
    last token: ((input_length - 1) // 512) x 512 tokens (the trace's 512-token blocks)."""
    records = _mooncake_records(shared_data, 100)
    path = _write_jsonl(tmp_path / "twice.jsonl", _twice(records, gap_ms=1e6))
    one = ("serving.num_instances=1",) if not mode else ()
    report, table = _run(run_cli, tmp_path, *mode, "--workload-trace", path,
                         sets=(*sets, *one, "cache.tiers.ssd.capacity_gib=0"), requests=True)
    assert (table.queue_s == 0).all()
    second = table.iloc[len(records):]
    want = [(r["input_length"] - 1) // 512 * 512 for r in records]
    assert second.cached_tokens.tolist() == want
    if "cache.tiers.dram.capacity_gib=1024" in sets:
        assert _metrics(report)["tier_hit_ratio"]["dram"] > 0.4


def test_blocks_split_in_k_pieces_hit_k_times_as_often_in_k_times_the_lru_and_fifo_capacity(run_cli, tmp_path,
                                                                                            shared_data):
    """``workload.block_mismatch: split`` cuts each 512-token trace block into 512 / block_size pieces (README Block
    model). With every prompt a whole number of blocks, each block's k pieces are used together, in order, every
    time; an LRU or FIFO cache of k x c pieces then holds exactly the pieces of the blocks a cache of c blocks
    holds (evicting a block's pieces one after the other), so every hit and access is counted k times."""
    records = [{**r, "input_length": 512 * len(r["hash_ids"])} for r in _mooncake_records(shared_data, 200)]
    path = _write_jsonl(tmp_path / "aligned.jsonl", records)
    for capacity in (10, 60):
        whole, _ = _run(run_cli, tmp_path, "--cache-only", "--workload-trace", path, "--policy", "lru,fifo",
                        "--capacity-blocks", str(capacity), name="whole")
        for k in (2, 4):
            split, _ = _run(run_cli, tmp_path, "--cache-only", "--workload-trace", path, "--policy", "lru,fifo",
                            "--capacity-blocks", str(k * capacity),
                            sets=("workload.block_mismatch=split", f"serving.block_size={512 // k}"), name=f"split{k}")
            assert split["trace"]["block_tokens"] == 512 // k
            for a, b in zip(whole["runs"], split["runs"]):
                assert b["metrics"]["accesses"] == k * a["metrics"]["accesses"]
                assert b["metrics"]["hits"] == k * a["metrics"]["hits"] > 0, (capacity, k, a["name"])


@pytest.mark.parametrize("mode", [(), ("--pd",)], ids=["cluster", "cluster-pd"])
def test_two_disjoint_workloads_on_two_racks_run_as_each_alone_on_one_rack(run_cli, tmp_path, shared_data, mode):
    """Racks share nothing a request of another rack's workload could touch (README Cluster: HBM per instance,
    DRAM/SSD per node, EIC per rack; a rack's own decode pool first): two workloads with no block in common,
    interleaved so that round-robin sends one to each rack (request k to rack k mod 2), run request for request as
    each alone on a one-rack cluster, at a load that queues them (decode instances with room for every transfer)."""
    records = [{**r, "timestamp": 100 * i} for i, r in enumerate(_mooncake_records(shared_data, 60))]
    other = [{**r, "timestamp": r["timestamp"] + 50, "hash_ids": [h + 10**12 for h in r["hash_ids"]]} for r in records]
    paths = {name: _write_jsonl(tmp_path / f"{name}.jsonl", recs)
             for name, recs in (("a", records), ("b", other), ("both", [x for pair in zip(records, other) for x in pair]))}
    sets = ("cluster.router=round-robin", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2",
            "serving.num_gpu_blocks=3000", "cache.tiers.dram.capacity_gib=4", "cache.tiers.eic.capacity_gib=16")
    _, both = _run(run_cli, tmp_path, "--cluster", *mode, "--workload-trace", paths["both"],
                   sets=(*sets, "cluster.num_racks=2"), name="both", requests=True)
    # (alone, --pd's one rack has one prefill instance: its router picks nothing and is refused as unread)
    alone_sets = tuple(s for s in sets if not (mode and s.startswith("cluster.router=")))
    for name, rows in (("a", both.iloc[0::2]), ("b", both.iloc[1::2])):
        _, alone = _run(run_cli, tmp_path, "--cluster", *mode, "--workload-trace", paths[name],
                        sets=(*alone_sets, "cluster.num_racks=1"), name=name, requests=True)
        rows = rows.reset_index(drop=True)
        assert (alone.queue_s > 0).sum() > 20 and alone.cached_tokens.sum() > 0
        for column in ("cached_tokens", "preemptions", "kv_transfer_bytes"):
            assert rows[column].tolist() == alone[column].tolist(), (name, column)
        for column in ("ttft_s", "e2e_s", "queue_s", "kv_load_s", "prefill_s", "kv_transfer_s", "first_decode_s"):
            # (times from arrivals 50 ms later in the file: equal to float rounding)
            np.testing.assert_allclose(rows[column], alone[column], rtol=0, atol=1e-9, err_msg=f"{name} {column}")


def test_one_request_at_a_time_on_one_instance_is_lindleys_queue_of_the_requests_alone(run_cli, tmp_path):
    """``serving.max_num_seqs=1`` on one instance serves requests one at a time in arrival order: a FIFO single
    server whose service time of request i is its time alone on the system, S_i (its E2E when requests are 10^4 x
    further apart). So its finish times follow Lindley's recursion, F_i = max(A_i, F_(i-1)) + S_i, with no prefix
    reuse in the Azure trace to make the service depend on what ran before."""
    argv = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "60")
    sets = ("serving.num_instances=1", "serving.max_num_seqs=1")
    _, alone = _run(run_cli, tmp_path, *argv, "--rate-scale", "0.0001", sets=sets, name="alone", requests=True)
    _, loaded = _run(run_cli, tmp_path, *argv, sets=sets, name="loaded", requests=True)
    assert (alone.queue_s == 0).all() and (loaded.queue_s > 0).sum() > 40
    finish, previous = [], -math.inf
    for arrival, service in zip(loaded.arrival, alone.e2e_s):
        previous = max(arrival, previous) + service
        finish.append(previous)
    np.testing.assert_allclose(loaded.last_token, finish, rtol=0, atol=1e-9)
    np.testing.assert_allclose(loaded.ttft_s - loaded.queue_s, alone.ttft_s, rtol=0, atol=1e-9)


@pytest.mark.parametrize("router", ["round-robin", "precise-prefix"])
def test_a_one_node_cluster_with_a_dram_tier_serves_an_unloaded_trace_as_the_single_node_mode(run_cli, tmp_path,
                                                                                             shared_data, router):
    """README Cluster: a node's DRAM is shared by its instances, as the single-node mode's is, and a fetch from it is
    the single node's load (the tier's latency and bandwidth, PCIe being faster than DRAM's 50 GB/s); with requests
    never queued the fetch at arrival is the load at admission. So a one-rack, one-node cluster of two instances and
    the single-node mode with two instances, under the same router, serve each request alike (tests/test_cluster.py
    checks one instance without a lower tier)."""
    records = [{**r, "timestamp": i * 1e6} for i, r in enumerate(_mooncake_records(shared_data, 300))]  # 1,000 s apart
    trace = ("--workload-trace", _write_jsonl(tmp_path / "spaced.jsonl", records))
    sets = ("serving.num_gpu_blocks=300", "cache.tiers.dram.capacity_gib=512", "cache.tiers.ssd.capacity_gib=0",
            f"cluster.router={router}")
    single, a = _run(run_cli, tmp_path, *trace, sets=(*sets, "serving.num_instances=2"), name="single", requests=True)
    cluster, b = _run(run_cli, tmp_path, "--cluster", *trace,
                      sets=(*sets, "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2",
                            "cache.tiers.eic.capacity_gib=0"), name="cluster", requests=True)
    assert _metrics(single)["tier_hit_ratio"]["dram"] > 0 and (a.queue_s == 0).all()
    for key in ("accesses", "hits", "tier_hit_ratio", "token_hit_ratio"):
        assert _metrics(single)[key] == _metrics(cluster)[key], key
    assert a.instance.tolist() == b.instance.tolist() and a.cached_tokens.tolist() == b.cached_tokens.tolist()
    for column in ("ttft_s", "kv_load_s", "prefill_s", "e2e_s"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9, err_msg=column)


def test_more_hbm_never_lowers_the_prefix_hits_of_requests_that_never_meet(run_cli, tmp_path, shared_data):
    """vLLM's prefix cache evicts free blocks in the order their requests released them (README Serving: free blocks
    that still hold a prefix form the HBM tier), an order that does not depend on the pool's size when requests
    never overlap (1,000 s apart). Each larger pool then holds every block a smaller one holds (Mattson's inclusion
    property), so the blocks served from HBM never fall as ``serving.num_gpu_blocks`` grows."""
    records = [{**r, "timestamp": i * 1e6} for i, r in enumerate(_mooncake_records(shared_data, 300))]
    path = _write_jsonl(tmp_path / "spaced.jsonl", records)
    hits = []
    for blocks in (300, 1000, 3000, 6000):
        report, _ = _run(run_cli, tmp_path, "--workload-trace", path, name=f"b{blocks}",
                         sets=(f"serving.num_gpu_blocks={blocks}", "serving.num_instances=1",
                               "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"))
        assert _metrics(report)["accesses"] == sum(len(r["hash_ids"]) for r in records)
        hits.append(_metrics(report)["hits"])
    assert hits == sorted(hits) and hits[0] < hits[-1], hits


# ----------------------------------------------------------------------------- trace time offsets


def test_numeric_timestamps_shifted_by_the_unix_epoch_give_the_same_arrivals_and_runs(run_cli, tmp_path, shared_data):
    """Arrivals are times from the first request (DESIGN: the loader fixes units; README: ``duration_s`` is first to
    last arrival), so adding a constant to every timestamp changes no run. A log's Unix-epoch milliseconds
    (1,700,000,000,000 ms is November 2023) are integers a float64 holds exactly, as are their differences: the
    arrivals must be the relative times / 1000 to the last bit, as tests/test_metamorphic_traces.py holds Azure's
    datetimes. Divided by 1000 before the first was subtracted, every arrival was off by up to 0.19 us (one float64
    step at 1.7e9 s is 238 ns)."""
    records = _mooncake_records(shared_data, 60)
    gaps_ms = [1237 * i + 3 * (i % 4) for i in range(len(records))]  # by hand: whole milliseconds, increasing
    runs, want = [], [g / 1000 for g in gaps_ms]
    for offset in (0, 1_700_000_000_000):
        shifted = [{**r, "timestamp": offset + g} for r, g in zip(records, gaps_ms)]
        report, table = _run(run_cli, tmp_path, "--workload-trace", _write_jsonl(tmp_path / f"t{offset}.jsonl", shifted),
                             name=f"t{offset}", requests=True)
        assert table.arrival.tolist() == want, offset
        runs.append(json.dumps(report["runs"], sort_keys=True))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("mode", [(), ("--pd",), ("--cluster", "--set", "cluster.num_racks=2")],
                         ids=["single", "pd", "cluster"])
def test_a_request_that_ends_before_the_cut_is_served_as_in_the_longer_trace(run_cli, tmp_path, shared_data, mode):
    """Causality: a request can be touched only by requests that arrive while it is in the system, so the first 60
    Mooncake requests (200 HBM blocks and a DRAM tier: evictions, lower-tier hits) and the first 150 serve every
    request that ends before request 60 arrives identically, row for row; a difference would be a future request
    reaching into the past (a router, policy or scheduler reading the trace ahead). Belady is left out: it reads
    the future by definition."""
    sets = ("serving.num_gpu_blocks=200", "cache.tiers.dram.capacity_gib=4", "cache.tiers.ssd.capacity_gib=0")
    trace = ("--workload-trace", str(shared_data / MOONCAKE), *mode)
    _, cut = _run(run_cli, tmp_path, *trace, "--workload-limit", "60", sets=sets, name="cut", requests=True)
    _, whole = _run(run_cli, tmp_path, *trace, "--workload-limit", "150", sets=sets, name="whole", requests=True)
    next_arrival = whole.arrival.iloc[60]
    done = cut.last_token.to_numpy() <= next_arrival
    assert done.sum() >= 10 and (cut.last_token > next_arrival).any()  # both kinds of rows are there
    pd.testing.assert_frame_equal(cut[done].reset_index(drop=True), whole.iloc[:60][done].reset_index(drop=True),
                                  check_exact=True)  # (NaN where a mode has no such time, equal as missing)
