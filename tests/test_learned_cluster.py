"""The learned policy in a cluster: its tiers are found where the cluster looks for blocks (the arena's block index:
another node's fetch, precise-prefix) and counted where it reports them (EIC occupancy), as a compiled policy's are.
A tier no run fills evicts nothing, so every policy holds the same blocks there: LRU is the expectation."""

from __future__ import annotations

import json

import numpy as np

from learned.train import main as train_main


def _model(tmp_path, common: list[str]):
    """A small model of the workload ``common`` sets (its whole range: these tests judge no model)."""
    model = tmp_path / "m.txt"
    assert train_main(["--out", str(model), "--range", "0:1", "--rounds", "3", *common]) == 0
    return model


def test_a_learned_dram_s_blocks_are_found_by_another_node_s_fetch(tmp_path, run_cli):
    """A cluster finds where a prefix is held through the arena's block index (another node's DRAM to fetch from);
    the generic path kept a learned tier's blocks in a Python set only, so no other node ever fetched from a learned
    DRAM (two nodes, round robin: 0 blocks fetched within the rack against LRU's 1,656; hit ratio 0.1875 against
    0.2753). With a DRAM no run fills nothing is evicted, so every policy holds the same blocks: the learned DRAM's
    run equals LRU's, fetches and hits."""
    common = ["--set", "serving.block_size=512", "--set", "workload.synthetic.num_requests=300",
              "--set", "workload.synthetic.think_time_median_s=5"]
    model = _model(tmp_path, common)
    cluster = ["--cluster", "--router", "round-robin", "--set", "cluster.nodes_per_rack=2", "--set",
               "serving.num_gpu_blocks=20", "--set", "cache.tiers.ssd.capacity_gib=0", "--seed", "1", *common,
               "--no-plot", "--quiet"]
    runs = {}
    for name, policy in (("lru", []), ("learned", ["--set", "cache.tiers.dram.policy=learned", "--set",
                                                    f"cache.learned_model={model}"])):
        status, _, err = run_cli(*cluster, *policy, "--report-json", tmp_path / f"{name}.json")
        assert status == 0, err
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())["runs"][0]["metrics"]
    assert runs["lru"]["cluster"]["fetched_blocks"]["rack"] > 0  # (turns of a session on the other node fetch)
    assert runs["learned"]["cluster"]["fetched_blocks"] == runs["lru"]["cluster"]["fetched_blocks"]
    written = runs["lru"]["tiers"]["dram"]["bytes_written"]
    assert written < 2 * 256 * 2**30  # (two nodes' default 256 GiB DRAMs: none fills, so none evicts)
    assert runs["learned"]["hits"] == runs["lru"]["hits"]
    assert runs["learned"]["tiers"]["dram"]["bytes_written"] == written


def test_a_learned_eic_s_occupancy_is_its_blocks(tmp_path, run_cli):
    """``cluster.eic_occupancy`` read the arena's resident counter, which only compiled policies keep: a learned EIC
    said 0.0. With an EIC no run fills every policy holds the same blocks, so learned's occupancy is LRU's."""
    common = ["--set", "serving.block_size=512", "--set", "workload.synthetic.num_requests=300"]
    model = _model(tmp_path, common)
    cluster = ["--cluster", "--set", "serving.num_gpu_blocks=20", "--set", "cache.tiers.eic.capacity_gib=64",
               "--set", "cache.tiers.dram.capacity_gib=0", "--set", "cache.tiers.ssd.capacity_gib=0", *common,
               "--no-plot", "--quiet"]
    occupancy = {}
    for name, policy in (("lru", []), ("learned", ["--set", "cache.tiers.eic.policy=learned", "--set",
                                                    f"cache.learned_model={model}",
                                                    "--allow-train-test-overlap"])):  # (its quality is beside it)
        status, _, err = run_cli(*cluster, *policy, "--report-json", tmp_path / f"{name}.json")
        assert status == 0, err
        occupancy[name] = json.loads((tmp_path / f"{name}.json").read_text())["runs"][0]["metrics"]["cluster"][
            "eic_occupancy"]
    assert 0 < occupancy["lru"]["max"] < 1 and occupancy["learned"] == occupancy["lru"]


def test_a_generic_tier_s_blocks_leave_the_index_and_its_count_as_they_leave_its_set():
    """``IndexedResidents`` by hand, two generic tiers of one arena: the tests above fill no tier, so no block ever
    left one; a block removed (or discarded) leaves the block index (``holders``) and its tier's resident count, a
    block held by both tiers leaves only the one it is removed from, discarding an absent block changes nothing, and a
    block may come back. (hmut9: a discard that left the block filed, and a second add of a held block filing it
    twice, passed the cluster tests above.)"""
    from sim.cache.arena import TierArena
    from sim.cache.indexed_residents import IndexedResidents

    arena = TierArena(max_keys=64)
    a, b = arena.add_tier(0, 4, 0), arena.add_tier(0, 4, 0)  # (kind 0: a tier without a compiled kernel)
    in_a, in_b = IndexedResidents(arena, a, [3, 5]), IndexedResidents(arena, b, [5])
    in_a.add(7)
    in_a.add(3)  # (already held: no second slot, no second count)
    assert sorted(in_a) == [3, 5, 7] and arena.resident_keys(a).tolist() == [3, 5, 7]
    assert (arena.resident_count(a), arena.resident_count(b)) == (3, 1)
    assert sorted(arena.holders(5).tolist()) == [a, b]
    in_a.remove(5)
    in_a.discard(11)
    in_a.discard(3)
    assert arena.resident_keys(a).tolist() == [7] and arena.resident_count(a) == 1
    assert arena.holders(5).tolist() == [b] and arena.holders(3).tolist() == []
    in_b.remove(5)
    assert arena.resident_count(b) == 0 and arena.holders(5).tolist() == []
    in_a.add(5)
    assert arena.resident_count(a) == 2 and arena.holders(5).tolist() == [a]


def test_a_tier_s_predictions_are_private_where_it_sees_part_of_the_lookups():
    """``ClusterRun._tier_predicted`` by the rule its docstring gives: a node's DRAM/SSD sees only its node's lookups
    where the cluster has several nodes (racks x nodes per rack), a rack's EIC only its rack's where there are several
    racks; there its copy is private (no model expert leads), elsewhere it sees every lookup and the model may lead.
    By hand for 1 x 1, 1 x 2 and 2 x 1 racks x nodes. (hmut9: 'parts > 0', every tier private, passed every test.)"""
    from types import SimpleNamespace

    from learned.predictions import Predictions
    from sim.cluster.fetch import DRAM, EIC, SSD
    from sim.cluster.run import ClusterRun

    predicted = Predictions.perfect(np.arange(1.0, 6.0), 5)
    expected = {(1, 1): (True, True, True), (1, 2): (False, False, True), (2, 1): (False, False, False)}
    for (racks, nodes), leads in expected.items():
        run = SimpleNamespace(topo=SimpleNamespace(num_racks=racks, nodes_per_rack=nodes), _predicted=predicted)
        got = tuple(ClusterRun._tier_predicted(run, kind).model_leads for kind in (DRAM, SSD, EIC))
        assert got == leads, (racks, nodes)
        run._predicted = None
        assert ClusterRun._tier_predicted(run, EIC) is None
