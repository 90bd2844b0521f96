"""Cluster mode: routers, the rack EIC pool, conservation of block accesses, the prefix index, lazy scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.cache.arena_layout import CAP, RESIDENT
from sim.cluster.run import HBM, LOCATIONS, ClusterRun, run_cluster
from sim.cluster.topology import Topology
from sim.config import load_config, replace
from sim.errors import ConfigError
from sim.serving.admission import admit
from trace.workload import load_workload, with_trace_block_size

# 2 racks x 4 nodes x 8 GPUs = 64 GPUs, as the acceptance test says


CLUSTER_64 = ["cluster.num_racks=2", "cluster.nodes_per_rack=4", "hardware.gpus_per_node=8"]


def _trace_and_config(sets: list[str]):
    config = load_config(None, sets=sets)
    trace = load_workload(config)
    config = with_trace_block_size(config, trace)
    admit(trace, config)
    return trace, config


@pytest.fixture(scope="module")
def mooncake(shared_data):
    path = shared_data / "traces" / "mooncake_conversation.jsonl"
    return _trace_and_config([f"workload.trace={path}", "workload.limit=2000", *CLUSTER_64])


def _hit_ratio(trace, config, **overrides) -> dict:
    result, _ = run_cluster(trace, replace(config, **overrides))
    return result.metrics


def test_prefix_routers_beat_round_robin_on_mooncake(mooncake):
    trace, config = mooncake
    base = _hit_ratio(trace, config, **{"cluster.router": "round-robin"})["hit_ratio"]
    for router in ("prefix-aware", "precise-prefix"):
        assert _hit_ratio(trace, config, **{"cluster.router": router})["hit_ratio"] > base, router


def test_rack_eic_pool_raises_hits_when_hbm_is_small(shared_data):
    path = shared_data / "traces" / "mooncake_conversation.jsonl"
    trace, config = _trace_and_config([f"workload.trace={path}", "workload.limit=2000", *CLUSTER_64,
                                       "serving.num_gpu_blocks=200"])  # requests that never fit are skipped
    small = {"cache.tiers.dram.capacity_gib": 0.0, "cache.tiers.ssd.capacity_gib": 0.0, "cluster.router": "round-robin"}
    without = _hit_ratio(trace, config, **small, **{"cache.tiers.eic.capacity_gib": 0.0})
    with_eic = _hit_ratio(trace, config, **small, **{"cache.tiers.eic.capacity_gib": 64.0})
    assert without["tier_hit_ratio"]["eic"] == 0.0
    assert with_eic["tier_hit_ratio"]["eic"] > 0.0
    assert with_eic["hit_ratio"] > without["hit_ratio"]


def test_topology_ids_round_trip_and_bad_shapes_are_config_errors():
    topo = Topology(num_racks=3, nodes_per_rack=2, gpus_per_node=8, tensor_parallel_size=2)
    assert topo.num_instances == 3 * 2 * 4 and topo.num_gpus == 48
    for i in range(topo.num_instances):
        assert topo.instance_id(*topo.locate(i)) == i
        rack, node, _ = topo.locate(i)  # (node_of and rack_of read the slots' nodes kept as Python ints)
        assert topo.node_of(i) == rack * 2 + node and topo.rack_of(i) == rack == i // 8
    config = load_config(None, sets=["hardware.gpus_per_node=6", "serving.tensor_parallel_size=4", "serving.num_instances=1"])
    with pytest.raises(ConfigError, match="hardware.gpus_per_node"):
        Topology.from_config(config)
    config = load_config(None, sets=["cluster.nodes_per_rack=1", "hardware.gpus_per_node=2", "pd.num_prefill=2",
                                     "pd.num_decode=1"])
    with pytest.raises(ConfigError, match="pd.num_prefill"):
        Topology.from_config(config, pd=True)


class CheckedRun(ClusterRun):
    """Checks the invariants after every arrival: no tier over capacity, the prefix index equals
    the union of the tiers' contents and, under precise-prefix (the router that reads blocks in use), of the blocks
    each instance's running requests hold (its pool's references), those under its HBM tier. Counts the hits served
    from below HBM that the KV connector's plan did not load (``late_lower_hits``: none, since the connector reads
    the prefix by the scheduler lookup's rule at the same admission, ``KVCacheManager.prefix_levels``)."""

    late_lower_hits = 0

    def _admitted(self, inst, job, match):
        # a lower-tier block the scheduler's lookup served past the connector's plan (its own tier read, as on a
        # single node, not counted as fetched)
        found = min(len(self._hit_codes.get(job.rid, ())), match.blocks)
        kinds = np.asarray(inst.kinds)[np.asarray(match.tier_of_each[found:match.blocks], dtype=np.int64)]
        self.late_lower_hits += int((kinds != HBM).sum())
        super()._admitted(inst, job, match)

    def _dispatch(self, job, keys, i):
        chosen = super()._dispatch(job, keys, i)
        meta = self.arena.state.meta
        wanted = self.all_tier_candidates()
        tiers = np.flatnonzero(wanted)
        assert all(meta[t, RESIDENT] <= max(meta[t, CAP], 0) for t in tiers)
        contents = {int(t): set(self.arena.resident_keys(int(t)).tolist()) for t in tiers}
        for inst in self.insts.values() if self.in_use is not None else ():
            contents[inst.kv.cache.tiers[0].index] |= set(inst.pool.refs)
        for key in np.asarray(keys)[:3].tolist():
            found, offsets, holders = self.holders(np.array([key]), wanted)
            expected = sorted(t for t, held in contents.items() if key in held)
            assert sorted(holders.tolist()) == expected
        return chosen

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(racks=st.integers(1, 3), nodes=st.integers(1, 2), gpus=st.sampled_from([1, 2]),
       router=st.sampled_from(["round-robin", "least-loaded", "session-affinity", "prefix-aware", "precise-prefix"]),
       eic=st.sampled_from([0.0, 0.002]), dram=st.sampled_from([0.0, 0.002]), seed=st.integers(0, 50),
       pd=st.booleans(), lower_policy=st.sampled_from(["lru", "s3fifo", "lfu"]))
# 21 lower-tier hits, from the node's SSD, each loaded by the KV connector at admission (21 node blocks fetched)
@example(racks=1, nodes=1, gpus=1, router="round-robin", eic=0.0, dram=0.0, seed=1, pd=False, lower_policy="lru")
def test_every_block_access_is_one_hit_or_a_miss(racks, nodes, gpus, router, eic, dram, seed, pd, lower_policy):
    # (``lower_policy`` runs the node and rack tiers: a wider policy's tier, built lazily mid-run, widens the
    # arena's slot pool under the HBM tiers' blocks)
    if pd and nodes * gpus < 2:
        pd = False
    trace, config = _trace_and_config([
        f"cluster.num_racks={racks}", f"cluster.nodes_per_rack={nodes}", f"hardware.gpus_per_node={gpus}",
        "serving.num_instances=1", f"cluster.router={router}", f"cache.tiers.eic.capacity_gib={eic}",
        f"cache.tiers.dram.capacity_gib={dram}", "cache.tiers.ssd.capacity_gib=0.01", "serving.num_gpu_blocks=400",
        *(f"cache.tiers.{tier}.policy={lower_policy}" for tier in ("dram", "ssd", "eic")),
        "workload.synthetic.num_requests=60", "workload.synthetic.turns_mean=6", "workload.synthetic.think_time_median_s=0.2", "workload.synthetic.rate_rps=50",
        "workload.synthetic.input_tokens_mean=200", "workload.synthetic.output_tokens_mean=8", f"seed={seed}"])
    run = CheckedRun(trace, config, pd=pd)
    metrics = run.run().metrics
    cluster = metrics["cluster"]
    assert metrics["accesses"] == trace.num_accesses  # every prompt block looked up once
    split = sum(cluster["hit_blocks"][tier][loc] for tier in cluster["hit_blocks"] for loc in LOCATIONS)
    assert split == metrics["hits"] <= metrics["accesses"]
    assert sum(metrics["tier_hit_ratio"].values()) == pytest.approx(metrics["hit_ratio"])
    assert sum(metrics["location_hit_ratio"].values()) == pytest.approx(metrics["hit_ratio"])
    for kind in ("fetched", "kv_transfer"):
        for scope, blocks in cluster[f"{kind}_blocks"].items():
            assert cluster[f"{kind}_bytes"][scope] == blocks * cluster["block_bytes"]
    # every hit not in the instance's HBM is loaded by the KV connector at admission, into the request's own blocks,
    # once (README, cluster mode): nothing fetched is evicted before use, and no lower-tier hit is read past it
    fetched = sum(cluster["fetched_blocks"].values())
    assert fetched == metrics["hits"] - sum(cluster["hit_blocks"]["hbm"].values()), (fetched, run.late_lower_hits)
    assert run.late_lower_hits == 0
    if eic == 0.0:
        assert metrics["tier_hit_ratio"]["eic"] == 0.0


def test_a_10240_gpu_cluster_runs_a_small_trace_building_only_what_it_uses():
    trace, config = _trace_and_config([
        "cluster.num_racks=160", "cluster.nodes_per_rack=8", "hardware.gpus_per_node=8", "cluster.router=least-loaded",
        "workload.synthetic.num_requests=300", "workload.synthetic.turns_mean=4", "workload.synthetic.think_time_median_s=0.5", "workload.synthetic.rate_rps=200",
        "workload.synthetic.input_tokens_mean=256", "workload.synthetic.output_tokens_mean=16"])
    result, _ = run_cluster(trace, config)
    cluster = result.metrics["cluster"]
    assert cluster["gpus"] == 10_240 and result.metrics["requests_completed"] == 300
    assert 0 < cluster["instances_used"] <= 300 and cluster["racks_used"] <= 160


def cross_rack_run(tmp_path, *sets: str):
    """2 racks x 1 node x 1 GPU, round-robin (request k to rack k mod 2), HBM of 12 blocks and no DRAM or SSD:
    request 0's three full blocks leave rack 0's HBM when request 2 fills it; request 3, routed to rack 1, shares them
    as its prefix (``sets``: the EIC and more). The run's result and request table."""
    rows = [(0, 2000, [0, 1, 2, 3]), (10_000, 600, [100, 101]), (20_000, 5600, list(range(200, 211))),
            (30_000, 2600, [0, 1, 2, 3, 4, 5])]
    path = _mooncake_file(tmp_path / "cross.jsonl", rows, output_length=1)
    trace, config = _trace_and_config([
        f"workload.trace={path}", "cluster.num_racks=2", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1",
        "cluster.router=round-robin", "serving.num_gpu_blocks=12", "cache.tiers.dram.capacity_gib=0",
        "cache.tiers.ssd.capacity_gib=0", *sets])
    return run_cluster(trace, config)


def _mooncake_file(path, rows, output_length: int):
    """A Mooncake-format trace of ``rows`` (timestamp ms, input tokens, hash ids), each answered in ``output_length``."""
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": output_length,
                                        "hash_ids": ids}) + "\n" for t, n, ids in rows))
    return path


def test_precise_prefix_counts_the_prefill_a_cached_prefix_saves(tmp_path):
    # Two instances, HBM only. Prompt A goes to instance 0; prompt B arrives while A queues there, so to
    # instance 1; long after both finish, B's next turn (B + one block) arrives with both instances idle.
    # The conductor's TTFT estimate there: instance 1 computes one block (512 tokens), instance 0 all five
    # (2,560): it must go to instance 1 and hit B's four blocks, though instance 0 is as idle and has the
    # lower id. (Counting only queues and fetch times, as a router that forgets the prefill it saves,
    # ties them and takes instance 0: no hit at all.)
    lines = [(0.0, 2048, [1, 2, 3, 4]), (1.0, 2048, [5, 6, 7, 8]), (600_000.0, 2560, [5, 6, 7, 8, 9])]
    path = _mooncake_file(tmp_path / "turns.jsonl", lines, output_length=4)
    trace, config = _trace_and_config([
        f"workload.trace={path}", "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2",
        "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0",
        "cluster.router=precise-prefix"])
    metrics = run_cluster(trace, config)[0].metrics
    assert (metrics["accesses"], metrics["hits"]) == (13, 4)


def test_precise_prefix_fetch_estimate_pays_a_sources_latency_once(tmp_path):
    # Mooncake's conductor prices a prefix's transfer as the transfer _start_fetch makes: one per source tier, so
    # the path's latency counts once, not once per block. One node, 1 GPU, its SSD the only lower tier (80 us,
    # 7 GB/s shared read: config.yaml's NVMe Gen4), PCIe 63 GB/s, no queue. A 4-block prompt (block 512,
    # 2,048 tokens) whose first 3 blocks the SSD holds: compute 2,048 - 3 x 512 = 512 tokens, fetch 3 blocks.
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"timestamp": 0, "input_length": 2048, "output_length": 4, "hash_ids": [1, 2, 3, 4]})
                    + "\n")
    trace, config = _trace_and_config([
        f"workload.trace={path}", "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1",
        "cache.tiers.dram.capacity_gib=0", "cache.tiers.eic.capacity_gib=0", "cluster.router=precise-prefix"])
    run = ClusterRun(trace, config)
    run.instance(0)
    (ssd,) = run.node_tiers[0]
    block = run.stored_bytes  # the block's bytes in a lower tier
    fetch = 80e-6 + 3 * block / 7e9  # the SSD is the path's slowest link (PCIe: 63 GB/s, no latency)
    assert max(80e-6 + 3 * block / 7e9, 3 * block / 63e9) == fetch
    expected = 512 / run.prefill_rate + fetch
    got = run.estimated_ttft_s(0, np.array([0, 1, 2, 3]), np.full(3, ssd.index), 2048)
    assert got == pytest.approx(expected, rel=1e-12)
    # (per block, as before: 3 x (80 us + block / 7 GB/s), 160 us more)
    assert got < 512 / run.prefill_rate + 3 * (80e-6 + block / 7e9) - 150e-6


def test_a_one_instance_cluster_serves_as_the_single_node_mode():
    # One rack, one node of one GPU, HBM only, overloaded (the smoke multi-turn workload into 200 blocks):
    # the same instance, scheduler and prefix cache as `--set serving.num_instances=1`, so every request's
    # timing, the prompt tokens its cache served and the hits are the same: both count the blocks the scheduler
    # serves at admission (the cluster's hits counted the blocks held at arrival: 102 against 0 here).
    from sim.serving.run import run_serving

    sets = ["workload.limit=200", "hardware.gpus_per_node=1", "serving.num_gpu_blocks=200",
            "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cluster.router=round-robin",
            "serving.num_instances=1"]
    trace, config = _trace_and_config([*sets, "cluster.num_racks=1", "cluster.nodes_per_rack=1"])
    cluster, cluster_table = run_cluster(trace, config)
    single, single_table = run_serving(trace, config, "single")
    assert cluster.metrics["ttft_breakdown_s"]["queue"] > 1.0  # requests queue: arrival is not admission
    for name in ("scheduled", "first_token", "last_token", "cached_tokens"):
        np.testing.assert_array_equal(getattr(cluster_table, name), getattr(single_table, name), err_msg=name)
    for key in ("requests_completed", "accesses", "hits", "hit_ratio", "token_hit_ratio", "ttft_s", "e2e_s", "tpot_s"):
        assert cluster.metrics[key] == single.metrics[key], key


ONE_GPU_CLUSTER = ["cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1",
                   "serving.num_instances=1", "serving.block_size=16"]


def test_cluster_counts_the_hits_the_scheduler_serves():
    """A one-GPU cluster counts the prefix hits the single-node scheduler does (prefix_match.prefix_hit, vLLM's
    get_computed_blocks): by hand, blocks of 16, HBM only; a 32-token prompt cached whole serves 1 block (its last
    block is recomputed), a 40-token one 2 of its 3 (a partial block never hits): 3 hits of 2 + 2 + 3 + 3 = 10
    lookups. The fetch counted every held block (5 hits) while the scheduler served 3."""
    from tests.test_serving import make_trace

    a, c = [1, 2], [5, 6, 7]
    trace = make_trace([0.0, 50.0, 100.0, 150.0], [32, 32, 40, 40], [2] * 4, block_lists=[a, a, c, c])
    result, requests = run_cluster(trace, load_config(None, sets=ONE_GPU_CLUSTER))
    m = result.metrics
    assert requests.cached_tokens.tolist() == [0, 16, 0, 32]
    assert (m["accesses"], m["hits"], m["cluster"]["hit_blocks"]["hbm"]["instance"]) == (10, 3, 3)
    assert m["hit_ratio"] == pytest.approx(3 / 10)


def test_load_tracker_min_and_max_equal_a_scan_past_its_first_histogram():
    # a router's imbalance test reads the fleet's least and most loaded instance from a histogram of loads changed by
    # ±1; loads past its first 64 entries grow it (no test reached them before): it must agree with a scan throughout
    from sim.cluster.links import LoadTracker

    rng = np.random.default_rng(4)
    loads = np.zeros(5, dtype=np.int64)
    tracker = LoadTracker(len(loads))
    for _ in range(20_000):
        i = int(rng.integers(len(loads)))
        delta = -1 if loads[i] and rng.random() < 0.45 - 0.1 * (i == 0) else 1  # instance 0 drifts up past 64
        tracker.change(int(loads[i]), int(loads[i] + delta))
        loads[i] += delta
        assert (tracker.min, tracker.max) == (loads.min(), loads.max())
    assert loads.max() > 200


def test_the_terminal_summary_states_the_fleet_and_what_the_run_used(run_cli, tmp_path):
    # ``instances count=`` on the terminal counts the instances the run built; the fleet's own shape was in the JSON
    # only, so a 2 x 2 x 4-GPU fleet at TP 2 read as a handful of instances. Its line: GPUs = racks x nodes x GPUs per
    # node, instances = GPUs / TP, and the instances used are those the per-request CSV names.
    import pandas as pd

    requests = tmp_path / "requests.csv"
    status, out, err = run_cli(
        "--cluster", "--no-plot", "--requests-csv", requests, "--set", "cluster.num_racks=2", "--set",
        "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=4", "--set", "serving.tensor_parallel_size=2",
        "--set", "cluster.router=least-loaded", "--set", "workload.synthetic.num_requests=40")
    assert status == 0, err
    line = next(line for line in out.splitlines() if line.split()[:1] == ["cluster"])
    fields = dict(item.split("=") for item in line.split()[1:])
    used = pd.read_csv(requests)["instance"].nunique()
    assert fields["racks"] == "2" and fields["nodes_per_rack"] == "2" and fields["pd"] == "false"
    assert int(fields["gpus"]) == 2 * 2 * 4 and int(fields["instances"]) == 2 * 2 * 4 // 2
    assert int(fields["instances_used"]) == used
    assert f"count={used}" in next(line for line in out.splitlines() if line.split()[:1] == ["instances"])


@pytest.mark.parametrize("eic_gib", [0.0, 1.0])
def test_another_racks_eic_serves_a_prefix_across_the_uplinks(tmp_path, eic_gib):
    # 2 racks x 1 node x 1 GPU, round-robin (request k to rack k mod 2). Request 0's three full blocks leave rack 0's
    # small HBM for its EIC when request 2 fills it; request 3, routed to rack 1, shares them as its prefix: with EIC
    # they are rack 0's EIC's cross-rack hits, read once each and loaded in one transfer whose slowest link is the
    # 100 Gb/s NIC, after its hops' latencies; with no EIC they are misses.
    result, table = cross_rack_run(tmp_path, f"cache.tiers.eic.capacity_gib={eic_gib}")
    metrics = result.metrics
    block = 2 * 32 * 8 * 128 * 2 * 512  # llama-3.1-8b bf16, 512-token blocks (the trace's)
    assert metrics["cluster"]["block_bytes"] == block and metrics["accesses"] == 4 + 2 + 11 + 6
    hits = 3 if eic_gib else 0
    assert metrics["hits"] == hits
    assert metrics["cluster"]["hit_blocks"]["eic"] == {"instance": 0, "node": 0, "rack": 0, "cross_rack": hits}
    assert metrics["cluster"]["fetched_bytes"] == {"node": 0, "rack": 0, "cross_rack": hits * block}
    assert int(table.cached_tokens[3]) == hits * 512
    # (hops: EIC access 10 us + NIC to NIC 5 us + the 1 us leaf -> spine -> leaf crossing)
    # (loaded once the scheduler takes it and before it is scheduled, vLLM's KV connector: its fetch, no step load)
    assert table.fetch[3] == pytest.approx(hits * block / (100e9 / 8) + 16e-6 if hits else 0.0, rel=1e-9)
    assert table.kv_load[3] == 0.0
    if hits:
        assert metrics["tiers"]["eic"]["bytes_read"] == hits * block


def test_a_request_ranks_other_racks_decode_instances_only_when_its_own_have_no_room(monkeypatch):
    """A request is bound to its rack's decode pool when one there has room (issue 15: a choice's cost does not grow
    with the fleet), so the other racks' decode instances are ranked only when none of its own would take it: each
    request here ranks one instance, its rack's. 4 racks of one node of 2 GPUs (1 prefill, 1 decode instance each),
    round-robin, a light load: every rack's decode instance is built, every request is bound in its own rack. (Every
    built decode instance was ranked for each transfer: 4 here, 8,960 a transfer at 160 racks x 56 decode.)"""
    from sim.serving.decode_queues import DecodeQueues

    ranked = []
    rank = DecodeQueues.rank
    monkeypatch.setattr(DecodeQueues, "rank", lambda self, inst: ranked.append(inst.index) or rank(self, inst))
    trace, config = _trace_and_config([
        "cluster.num_racks=4", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2", "pd.num_prefill=1",
        "pd.num_decode=1", "cluster.router=round-robin", "workload.synthetic.num_requests=40",
        "workload.synthetic.rate_rps=4", "workload.synthetic.input_tokens_mean=200",
        "workload.synthetic.output_tokens_mean=8"])
    run = ClusterRun(trace, config, pd=True)
    assert run.run().metrics["requests_completed"] == 40
    topo, table = run.topo, run.table
    prefill_racks = [topo.rack_of(int(i)) for i in table.instance]
    decode_racks = [topo.rack_of(int(i)) for i in table.decode_instance]
    assert decode_racks == prefill_racks and sorted(set(decode_racks)) == [0, 1, 2, 3]
    # its own rack's instance, once a request, as it is dispatched (round-robin: request k to rack k mod 4)
    assert ranked == [int(i) for i in table.decode_instance] and decode_racks == [k % 4 for k in range(40)]
