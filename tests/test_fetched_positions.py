"""A cluster fetch's blocks and the policies that rank by stream position (``sim.cluster.fetch``): a prefix loaded at
its request's admission goes into the request's own blocks, so no policy can evict it before use, whoever ranks it;
Belady bounds the others in a one-instance cluster; a hybrid's sliding copies and states, cached at their request's
first position, run beside no policy that reads positions. (``previous_use_index``, the inverse of ``next_use_index``, feeds the learned
policy's features.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.cache.access import NEVER, next_use_index, previous_use_index
from sim.cluster.run import run_cluster
from sim.config import load_config
from sim.serving.admission import admit
from trace.workload import load_workload, with_trace_block_size


def test_previous_use_index_by_hand_and_as_next_uses_inverse():
    stream = np.array([5, 3, 5, 5, 7, 3])
    assert previous_use_index(stream).tolist() == [-1, -1, 0, 2, -1, 1]
    assert previous_use_index(np.zeros(0, dtype=np.int64)).tolist() == []
    assert previous_use_index(np.array([10**12, 4, 10**12])).tolist() == [-1, -1, 0]  # sparse ids: by rank
    # theorem: t's next use is u exactly when u's previous use is t
    rng = np.random.default_rng(7)
    stream = rng.integers(0, 40, 500)
    nxt, prev = next_use_index(stream), previous_use_index(stream)
    used = nxt != NEVER
    np.testing.assert_array_equal(prev[nxt[used]], np.flatnonzero(used))
    assert (prev == -1).sum() == len(np.unique(stream))  # each block's first access has none


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_cluster_fetch_is_served_whoever_ranks_it(tmp_path, nodes):
    # by hand: Mooncake rows of 1,100 tokens (512-token blocks: two full and a partial one), one GPU per node with 4
    # HBM blocks and 4 DRAM blocks (0.25 GiB of 64 MiB Llama-3.1-8B blocks), round-robin. A = [1 2 3] at stream
    # positions 0..2. One node: B = [4 5 6] (3..5) pushes A's blocks into DRAM, C = [1 2 7] (6..8) fetches blocks 1
    # and 2 from there. Two nodes: B goes to node 1, X = [8 9 10] (6..8) pushes A's blocks into node 0's DRAM, and
    # C (9..11), on node 1, fetches them from node 0's. Either way C is served blocks 1 and 2 from that DRAM (2 hits
    # there): loaded at C's admission into C's own blocks, no policy can evict them first. (Loaded at arrival into the
    # cache, they had to enter as of A's accesses, positions 1 and 0, for Belady to keep them.)
    rows = [(0, [1, 2, 3]), (10_000, [4, 5, 6]), *([(20_000, [8, 9, 10])] if nodes == 2 else []), (30_000, [1, 2, 7])]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": 1100, "output_length": 1, "hash_ids": ids})
                            + "\n" for t, ids in rows))
    config = load_config(None, sets=[
        f"workload.trace={path}", "cluster.num_racks=1", f"cluster.nodes_per_rack={nodes}", "hardware.gpus_per_node=1",
        "cluster.router=round-robin", "serving.num_gpu_blocks=4", "cache.tiers.dram.capacity_gib=0.25",
        "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0", "cache.policy=belady"])
    trace = load_workload(config)
    config = with_trace_block_size(config, trace)
    admit(trace, config)
    result, _ = run_cluster(trace, config)
    # loaded when the scheduler admits C (vLLM's order), the blocks go straight to C, which holds them: none enters
    # the cache to wait there (where Belady, given C's first position, saw them as never used again)
    where = "node" if nodes == 1 else "rack"  # (from this node's DRAM, or the other node's in the rack)
    assert result.metrics["location_hit_ratio"][where] * result.metrics["accesses"] == pytest.approx(2)


def test_belady_bounds_the_other_policies_in_a_one_instance_cluster(run_cli, tmp_path):
    # Belady's MIN is the upper bound of the policies on one instance's stream (DESIGN: tests that can fail); in a
    # cluster of one GPU a prompt's blocks in the node's DRAM/SSD or the rack's EIC are loaded into its own HBM blocks
    # at admission. 300 system-prompt requests, 150 HBM blocks over DRAM 32, SSD 128 and EIC 32 blocks (2 MiB blocks of
    # Llama-3.1-8B). (Fetched blocks at their request's first position: Belady 8,150 hits; as of their previous
    # accesses 8,443; S3-FIFO, LFU, ARC and LRU 4,189 to 4,931 either way.)
    out = tmp_path / "r.json"
    status, _, err = run_cli(
        "--cluster", "--preset", "smoke", "--workload-limit", "300", "--policy", "belady,s3fifo,lfu,arc,lru",
        "--set", "workload.synthetic.kind=system-prompt", "--set", "workload.synthetic.input_tokens_mean=1024",
        "--set", "cluster.num_racks=1", "--set", "cluster.nodes_per_rack=1", "--set", "hardware.gpus_per_node=1",
        "--set", "serving.num_gpu_blocks=150", "--set", "cache.tiers.dram.capacity_gib=0.0625",
        "--set", "cache.tiers.ssd.capacity_gib=0.25", "--set", "cache.tiers.eic.capacity_gib=0.0625",
        "--quiet", "--no-plot", "--report-json", out)
    assert status == 0, err
    hits = {run["name"].split("/")[0]: run["metrics"]["hits"] for run in json.loads(out.read_text())["runs"]}
    assert all(hits["belady"] >= h for h in hits.values()), hits


@pytest.mark.parametrize("mode", [[], ["--cluster"]])
def test_no_policy_reads_a_sliding_copys_position(run_cli, tmp_path, mode):
    # a hybrid's sliding copies and a Gated DeltaNet hybrid's states enter the cache at their request's first position
    # (``copy_positions``), which is right only because a policy reading positions is refused beside them: this run
    # must stop before the trace loads (exit 2, one line naming the policy and the way out)
    out = tmp_path / "r.json"
    status, _, err = run_cli(*mode, "--policy", "lru,learned", "--set", "model=gpt-oss-20b",
                             "--set", "workload.synthetic.num_requests=20", "--quiet", "--no-plot", "--report-json", out)
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert "policy learned" in err and "serving.disable_hybrid_kv_cache_manager=true" in err
    assert not out.exists()
