"""Cluster routers' ties: equal loads spread by the tokens routed, then round robin (``sim.cluster.routers``), and the
same seed still routes the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.cluster.run import run_cluster
from tests.test_cluster import _mooncake_file, _trace_and_config

IDLE_GAP_MS = 600_000  # requests 10 minutes apart: each is done before the next arrives, so every load is 0


def _spaced(tmp_path, lengths: list[int]):
    """A trace of prompts of ``lengths`` tokens (512-token blocks, none shared), one every 10 minutes."""
    rows, next_id = [], 0
    for k, n in enumerate(lengths):
        blocks = -(-n // 512)
        rows.append((k * IDLE_GAP_MS, n, list(range(next_id, next_id + blocks))))
        next_id += blocks
    return _mooncake_file(tmp_path / "spaced.jsonl", rows, output_length=2)


HBM_ONLY = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"]


def _precise_prefix_pair(path, *sets: str):
    """The trace at ``path`` on 1 node x 2 GPUs, HBM only, routed by precise-prefix (``sets``: more settings)."""
    return _trace_and_config([f"workload.trace={path}", "cluster.num_racks=1", "cluster.nodes_per_rack=1",
                              "hardware.gpus_per_node=2", "cluster.router=precise-prefix", *HBM_ONLY, *sets])


def _watch_precise_prefix(monkeypatch, observe) -> list:
    """What ``observe(run, keys, rid)`` sees at each precise-prefix decision, before the router picks."""
    from sim.cluster.routers import PrecisePrefix

    seen, pick = [], PrecisePrefix.pick

    def spy(self, keys, rid, session):
        seen.append(observe(self.run, keys, rid))
        return pick(self, keys, rid, session)

    monkeypatch.setattr(PrecisePrefix, "pick", spy)
    return seen


def _estimates(run, keys, rid) -> tuple[int, list[int], list[float]]:
    """(blocks held, their tiers, the TTFT estimate at instances 0 and 1) of a decision."""
    found, offsets, tiers = run.holders(keys, run.all_tier_candidates())
    prompt = int(run.trace.input_tokens[rid])
    return found, tiers.tolist(), [run.estimated_ttft_s(c, offsets, tiers, prompt, keys) for c in (0, 1)]


def test_equal_loads_go_round_robin(tmp_path):
    # 1 rack x 1 node x 4 GPUs, least-loaded, 8 equal idle-time requests: every load and every routed-token count
    # ties in turn, so the instances take them round robin, 2 each (it was instance 0 all 8 times)
    trace, config = _trace_and_config([f"workload.trace={_spaced(tmp_path, [1024] * 8)}", "cluster.num_racks=1",
                                       "cluster.nodes_per_rack=1", "hardware.gpus_per_node=4",
                                       "cluster.router=least-loaded", *HBM_ONLY])
    _, table = run_cluster(trace, config)
    assert table.instance.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_equal_loads_go_to_the_fewest_routed_tokens_first(tmp_path):
    # 3 instances, idle at every arrival. Hand-worked (tokens routed per instance after each pick; ties then go to the
    # first after the last pick): 2048 -> 0 [2048,0,0]; 1024 -> 1 (ties 1,2; after 0) [2048,1024,0];
    # 1024 -> 2 [2048,1024,1024]; 512 -> 1 (ties 1,2; none after 2: wrap) [2048,1536,1024]; 512 -> 2; 512 -> 1
    lengths = [2048, 1024, 1024, 512, 512, 512]
    trace, config = _trace_and_config([f"workload.trace={_spaced(tmp_path, lengths)}", "cluster.num_racks=1",
                                       "cluster.nodes_per_rack=1", "hardware.gpus_per_node=3",
                                       "cluster.router=least-loaded", *HBM_ONLY])
    _, table = run_cluster(trace, config)
    assert table.instance.tolist() == [0, 1, 2, 1, 2, 1]


def test_prefix_aware_pd_spreads_an_idle_fleet_evenly(tmp_path):
    # --cluster --pd, 3 racks x 1 node x 8 GPUs, 3 prefill + 3 decode per rack (8 slots a rack, so rack r's prefill
    # instances are 8r, 8r+1, 8r+2), prefix-aware, 18 unshared equal prompts with the fleet idle at each: the racks
    # take them in turn, and each rack's prefill instances in turn: 2 each (it was 18 for instance 0)
    trace, config = _trace_and_config([f"workload.trace={_spaced(tmp_path, [1024] * 18)}", "cluster.num_racks=3",
                                       "cluster.nodes_per_rack=1", "hardware.gpus_per_node=8", "pd.num_prefill=3",
                                       "pd.num_decode=3", "cluster.router=prefix-aware", *HBM_ONLY])
    result, table = run_cluster(trace, config, pd=True)
    expected = [8 * (k % 3) + (k // 3) % 3 for k in range(18)]
    assert table.instance.tolist() == expected
    assert np.bincount(table.instance)[[0, 1, 2, 8, 9, 10, 16, 17, 18]].tolist() == [2] * 9
    assert result.metrics["cluster"]["router"]["requests_per_instance_max"] == 2


def test_same_seed_routes_the_same_way(tmp_path, run_cli):
    # a synthetic multi-turn workload routed by every tie-breaking router twice: byte-identical reports but timing
    argv = ["--cluster", "--set", "workload.synthetic.kind=multi-turn", "--set", "workload.synthetic.num_requests=150",
            "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=2",
            "--router", "least-loaded,prefix-aware,precise-prefix", "--seed", "7"]
    reports = []
    for k in range(2):
        assert run_cli(*argv, "--quiet", "--report-json", str(tmp_path / f"r{k}.json"))[0] == 0
        report = json.loads((tmp_path / f"r{k}.json").read_text())
        report.pop("timing")
        reports.append(json.dumps(report, sort_keys=True))
    assert reports[0] == reports[1]


def test_precise_prefix_drops_a_prompt_from_the_queue_once_prefilled(tmp_path, monkeypatch):
    # 1 node x 2 GPUs, HBM only, precise-prefix. A (2,048 tokens, 4,000 output tokens) goes to instance 0 (both idle:
    # the tie's first) and is still decoding 5 s later, its prompt prefilled in the first tenth of a second, when B
    # (2,560 tokens, no shared block) arrives. The conductor's estimate counts queued prompt tokens (Mooncake: the
    # prefill work ahead of B): none on either instance, so B's estimate is 2,560 / prefill rate at both. (A's prompt
    # was still counted at instance 0 while it decoded: (2,048 + 2,560) / rate there, as if A were still to prefill.)
    rows = [{"timestamp": 0, "input_length": 2048, "output_length": 4000, "hash_ids": [1, 2, 3, 4]},
            {"timestamp": 5000, "input_length": 2560, "output_length": 4, "hash_ids": [11, 12, 13, 14, 15]}]
    path = tmp_path / "ab.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trace, config = _precise_prefix_pair(path)
    seen = _watch_precise_prefix(monkeypatch, lambda run, keys, rid: (
        run.queued_tokens.tolist(), run.inst_load.tolist(), _estimates(run, keys, rid)[2], run.prefill_rate))
    _, table = run_cluster(trace, config)
    assert table.first_token[0] < 1.0 and table.last_token[0] > 5.0  # A prefilled, and decoding when B came
    queued, load, estimates, rate = seen[1]
    assert (queued, load) == ([0, 0], [1, 0])  # A still in instance 0's load, its prompt no longer queued there
    assert estimates == [pytest.approx(2560 / rate, rel=1e-12)] * 2
    assert np.all(np.array(seen[0][0]) == 0)


def test_precise_prefix_sees_the_blocks_a_running_request_holds(tmp_path, monkeypatch):
    # 1 node x 2 GPUs, HBM only, precise-prefix. A (2,048 tokens: blocks 1-4, 4,000 output tokens) goes to instance 0
    # and is still decoding 5 s later when B (2,560 tokens: A's 4 blocks + block 5) arrives. A's blocks are in use on
    # instance 0, out of its HBM tier's cache but in its HBM (vLLM keeps them in its prefix-cache map: the KV-event
    # routers see them), so instance 0 holds B's prefix. Hand-worked estimates: instance 0 computes 2,560 - 4 x 512 =
    # 512 tokens, nothing queued, nothing to fetch: 512 / rate; instance 1 all 2,560: 2,560 / rate. B goes to
    # instance 0 and hits its 4 blocks. (The index saw no holder: B went to the least loaded, instance 1, no hit.)
    from sim.cluster.run import ClusterRun

    rows = [(0, 2048, [1, 2, 3, 4]), (5000, 2560, [1, 2, 3, 4, 5])]
    trace, config = _precise_prefix_pair(_mooncake_file(tmp_path / "ab.jsonl", rows, output_length=4000))
    seen = _watch_precise_prefix(monkeypatch, lambda run, keys, rid: (*_estimates(run, keys, rid), run.prefill_rate))
    run = ClusterRun(trace, config)
    result = run.run()
    assert run.table.first_token[0] < 1.0 and run.table.last_token[0] > 5.0  # A prefilled, and decoding when B came
    hbm0 = run.insts[0].kv.cache.tiers[0].index
    found, tiers, estimates, rate = seen[1]
    assert (found, tiers) == (4, [hbm0] * 4)  # B's first 4 blocks, each held by instance 0's HBM (in use)
    assert estimates == [pytest.approx(512 / rate, rel=1e-12), pytest.approx(2560 / rate, rel=1e-12)]
    assert run.table.instance.tolist() == [0, 0]
    assert (result.metrics["accesses"], result.metrics["hits"]) == (9, 4)
    assert result.metrics["location_hit_ratio"]["instance"] == pytest.approx(4 / 9)
    assert len(run.in_use) == 0 and not run.in_use.held.any()  # both done: every block taken was freed


def test_in_use_record_matches_the_pools_and_empties(monkeypatch):
    # a synthetic multi-turn workload (shared prefixes, turns overlapping) on 2 racks x 2 nodes x 2 GPUs: at every
    # routing decision the record lists exactly the blocks each built instance's pool holds (the oracle: the pools'
    # reference counts), under that instance's HBM tier, and it is empty once every request is done
    from sim.cluster.routers import PrecisePrefix
    from sim.cluster.run import ClusterRun

    trace, config = _trace_and_config(["workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=150",
                                       "cluster.num_racks=2", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2",
                                       "cluster.router=precise-prefix"])
    checks = []
    pick = PrecisePrefix.pick

    def spy(self, keys, rid, session):
        run = self.run
        expected: dict[int, set[int]] = {}
        for inst in run.insts.values():
            for key in inst.pool.refs:
                expected.setdefault(key, set()).add(inst.kv.cache.tiers[0].index)
        assert {key: set(run.in_use.tiers_of(key)) for key in run.in_use.where} == expected
        assert set(np.flatnonzero(run.in_use.held).tolist()) == set(expected)
        checks.append(len(expected))
        return pick(self, keys, rid, session)

    monkeypatch.setattr(PrecisePrefix, "pick", spy)
    run = ClusterRun(trace, config)
    run.run()
    assert len(checks) == 150 and max(checks) > 0  # some decisions saw blocks in use
    assert len(run.in_use) == 0 and not run.in_use.held.any()


def test_precise_prefix_passes_over_a_holder_whose_kv_memory_cannot_take_the_prompt(tmp_path, monkeypatch):
    # 1 node x 2 GPUs, HBM only, 10 usable KV blocks of 512 tokens each (serving.num_gpu_blocks=11: vLLM's null block
    # aside), precise-prefix. A (4,096 tokens: blocks 1-8, 1,000 output tokens: 10 blocks at most) goes to instance 0
    # and is decoding 2 s later, holding its 8 prompt blocks and at least a 9th (token 4,097 on): at most 10 - 9 = 1
    # block not in use. B (4,608 tokens: A's blocks 1-6 + blocks 9-11, 4 output tokens) arrives. Hand-worked costs.
    # Instance 0: estimate (4,608 - 6 x 512) / rate = 1,536 / rate, but B needs 9 blocks, 6 of them in use by A there
    # (shared), so 3 new blocks > 1 not in use: short of KV memory (its scheduler would keep B waiting until A frees
    # blocks, up to 1,000 decode steps on). Instance 1 (idle, not built): 4,608 / rate, 9 blocks needed of 10 free:
    # it fits. Pricing the memory, B goes to instance 1 and gets its first token while A still decodes; pricing the
    # queue alone (1,536 < 4,608) sent it to instance 0.
    from sim.cluster.run import ClusterRun

    path = tmp_path / "ab.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in (
        {"timestamp": 0, "input_length": 4096, "output_length": 1000, "hash_ids": list(range(1, 9))},
        {"timestamp": 2000, "input_length": 4608, "output_length": 4, "hash_ids": [1, 2, 3, 4, 5, 6, 9, 10, 11]})))
    trace, config = _precise_prefix_pair(path, "serving.num_gpu_blocks=11")

    def observe(run, keys, rid):
        pool = run.insts[0].pool if 0 in run.insts else None
        prompt = int(run.trace.input_tokens[rid])
        return (_estimates(run, keys, rid)[2], [run.kv_short(c, keys, prompt) for c in (0, 1)],
                None if pool is None else (pool.total, pool.used), run.prefill_rate)

    seen = _watch_precise_prefix(monkeypatch, observe)
    run = ClusterRun(trace, config)
    run.run()
    estimates, short, (total, used), rate = seen[1]
    assert estimates == [pytest.approx(1536 / rate, rel=1e-12), pytest.approx(4608 / rate, rel=1e-12)]
    assert total == 10 and used >= 9 and short == [True, False]
    assert run.table.instance.tolist() == [0, 1]
    assert run.table.first_token[1] < run.table.last_token[0]  # B did not wait for A to free its memory


def test_precise_prefix_ties_go_to_the_fewest_routed_tokens_then_round_robin(tmp_path, monkeypatch):
    # 1 node x 2 GPUs, HBM only, precise-prefix. A and B (2,048 tokens each: blocks 1-4) arrive together: no holder
    # yet, so the least-loaded fallback sends A to 0 and B to 1, and both HBMs then hold blocks 1-4. C..F (2,560
    # tokens: blocks 1-4 + one of their own) come 10 minutes apart with the fleet idle: both instances hold the
    # prefix, nothing is queued, so the estimates tie. Hand-worked with the least-loaded routers' tie-break (tokens
    # routed [A, B] = [2048, 2048]): C: tokens tie, first after the last pick (1) wraps to 0 -> [4608, 2048];
    # D -> 1 (fewer) [4608, 4608]; E: tie, after 1 -> 0; F -> 1. The lowest id took C..F all.
    from sim.cluster.run import ClusterRun

    rows = [(0, 2048, [1, 2, 3, 4]), (0, 2048, [1, 2, 3, 4])]
    rows += [((k + 1) * IDLE_GAP_MS, 2560, [1, 2, 3, 4, 10 + k]) for k in range(4)]
    trace, config = _precise_prefix_pair(_mooncake_file(tmp_path / "tie.jsonl", rows, output_length=2))
    seen = _watch_precise_prefix(monkeypatch, lambda run, keys, rid: (*_estimates(run, keys, rid),
                                                                       run.queued_tokens.tolist()))
    run = ClusterRun(trace, config)
    result = run.run()
    for found, _, (e0, e1), queued in seen[2:]:
        assert found == 4 and e0 == e1 and queued == [0, 0]  # a true tie at C..F
    assert run.table.instance.tolist() == [0, 1, 0, 1, 0, 1]
    assert (result.metrics["accesses"], result.metrics["hits"]) == (28, 16)  # C..F each hit their 4-block prefix


def test_prefix_aware_follows_a_match_only_past_the_threshold_and_to_its_deepest_block(tmp_path):
    # SGLang's cache-aware router goes to the match's worker only when the matched fraction exceeds cache_threshold
    # (sgl-router CacheAwarePolicy: match_rate > cache_threshold; 0.5 here). 2 idle instances, 512-token blocks:
    # [1, 2] -> 0 (idle fleet); [1, 3] matches 1 of 2 blocks, exactly 0.5, not past it: the least loaded, which ties
    # at load 0 and has the fewer tokens routed -> 1 (and block 1 is recorded there); [1, 2, 4] matches 2 of 3 (block
    # 1 now recorded at 1, block 2 at 0): the instance of the deepest matched block, 2 -> 0
    rows = [(0.0, 1024, [1, 2]), (IDLE_GAP_MS, 1024, [1, 3]), (2 * IDLE_GAP_MS, 1536, [1, 2, 4])]
    path = _mooncake_file(tmp_path / "prefix.jsonl", rows, output_length=2)
    trace, config = _trace_and_config([f"workload.trace={path}", "cluster.num_racks=1", "cluster.nodes_per_rack=1",
                                       "hardware.gpus_per_node=2", "cluster.router=prefix-aware",
                                       "cluster.cache_threshold=0.5", *HBM_ONLY])
    _, table = run_cluster(trace, config)
    assert table.instance.tolist() == [0, 1, 0]
