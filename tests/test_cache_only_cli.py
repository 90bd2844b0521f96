"""--cache-only and --mrc through the command line: report contents, determinism, knobs that must matter."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BUNDLED_AZURE


def _report(run_cli, tmp_path, name, *argv):
    out = tmp_path / f"{name}.json"
    status, _, err = run_cli(*argv, "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    report = json.loads(out.read_text())
    report.pop("timing")
    return report


SYNTH = ("--cache-only", "--preset", "smoke", "--set", "workload.synthetic.kind=system-prompt")


def test_policies_and_mrc_in_one_report(run_cli, tmp_path):
    r = _report(run_cli, tmp_path, "a", *SYNTH, "--policy", "lru,arc,belady", "--capacity-blocks", "300", "--mrc")
    assert r["mode"] == "cache-only" and [run["name"] for run in r["runs"]] == ["lru", "arc", "belady", "lru-mrc"]
    lru, arc, belady, mrc = (run["metrics"] for run in r["runs"])
    assert lru["hits"] <= belady["hits"] and arc["hits"] <= belady["hits"]
    assert mrc["hit_ratio"] == lru["hit_ratio"]  # the curve at the run's capacity equals the LRU run
    assert lru["access_semantics"] == "plain" and lru["accesses"] == r["runs"][0]["metrics"]["hits"] + (
        lru["accesses"] - lru["hits"])
    assert "ttft_s" not in lru  # latency metrics are absent (not zero) in cache-only mode
    assert r["runs"][1]["overrides"] == {"cache.policy": "arc"}


@pytest.mark.parametrize("setting, kind", [
    ("cache.policy=arc", "system-prompt"), ("cache.admission=selective_write", "system-prompt"),
    ("cache.inclusion=inclusive", "system-prompt"), ("cache.tiers.dram.capacity_gib=1", "system-prompt"),
    ("cache.prefetch=session", "multi-turn"),  # (a session prefetch needs conversations to be read)
])
def test_mrc_alone_refuses_what_only_a_policy_replay_reads(run_cli, tmp_path, setting, kind):
    """--mrc without --policy replays no policy, only LRU's curve of the block stream: a policy, an admission, tiers,
    a prefetch set beside it were silently unread (an ARC curve asked for came back LRU's). Exit 2 naming the key;
    with --policy the same setting is read by the replays and the run goes on."""
    synth = (*SYNTH, "--set", f"workload.synthetic.kind={kind}")
    status, _, err = run_cli(*synth, "--mrc", "--set", setting, "--no-plot", "--quiet")
    key = setting.split("=")[0]
    assert status == 2 and f"--set {key}:" in err and "--policy" in err and err.count("\n") == 1, err
    policies = "arc" if key == "cache.policy" else "lru"  # (one way to ask for ARC)
    r = _report(run_cli, tmp_path, "p", *synth, "--mrc", "--policy", policies,
                *(() if key == "cache.policy" else ("--set", setting)))
    assert [run["name"] for run in r["runs"]] == [policies, "lru-mrc"]


def test_same_seed_byte_identical_and_seed_matters(run_cli, tmp_path):
    argv = (*SYNTH, "--policy", "s3fifo,sieve", "--capacity-blocks", "200", "--mrc", "--mrc-sample-rate", "0.5")
    a = _report(run_cli, tmp_path, "a", *argv, "--seed", "1")
    b = _report(run_cli, tmp_path, "b", *argv, "--seed", "1")
    c = _report(run_cli, tmp_path, "c", *argv, "--seed", "2")
    assert json.dumps(a) == json.dumps(b)
    assert a["runs"] != c["runs"]


@pytest.mark.parametrize("knob", [
    "cache.tiers.dram.capacity_gib=2", "cache.inclusion=inclusive", "cache.access_semantics=prefix",
    "serving.block_size=32", "cache.policy=fifo", "serving.num_gpu_blocks=100",
])
def test_every_cache_knob_changes_the_result(run_cli, tmp_path, knob):
    base = ("--cache-only", "--preset", "smoke", "--set", "workload.synthetic.kind=multi-turn",
            "--set", "workload.synthetic.start=empty",  # a stationary start at 20 turns: truncated chats, no reuse
            "--set", "workload.synthetic.turns_mean=20", "--set", "workload.synthetic.think_time_median_s=2",
            "--set", "serving.num_gpu_blocks=200", "--set", "cache.tiers.dram.capacity_gib=1",
            "--set", "cache.tiers.ssd.capacity_gib=0")
    before = _report(run_cli, tmp_path, "before", *base)["runs"][0]["metrics"]
    after = _report(run_cli, tmp_path, "after", *base, "--set", knob)["runs"][0]["metrics"]
    assert before != after, knob


def test_multi_tier_report_counts_per_tier(run_cli, tmp_path):
    r = _report(run_cli, tmp_path, "t", "--cache-only", "--preset", "smoke", "--set", "workload.synthetic.kind=multi-turn",
                "--set", "workload.synthetic.think_time_median_s=10", "--set", "serving.num_gpu_blocks=100", "--set", "cache.tiers.dram.capacity_gib=0.5")
    m = r["runs"][0]["metrics"]
    assert set(m["tiers"]) == {"hbm", "dram", "ssd"}  # eic is 0 GiB by default: disabled
    assert m["capacity_blocks"]["dram"] == int(0.5 * 2**30) // (16 * 131072)
    assert abs(sum(m["tier_hit_ratio"].values()) - m["hit_ratio"]) < 1e-12
    assert m["tiers"]["hbm"]["demotions"] > 0 and m["tiers"]["dram"]["hits"] > 0
    # every lookup that misses HBM goes on to DRAM: its hits plus misses are HBM's misses
    assert m["tiers"]["hbm"]["hits"] + m["tiers"]["hbm"]["misses"] == m["accesses"]
    assert m["tiers"]["dram"]["hits"] + m["tiers"]["dram"]["misses"] == m["tiers"]["hbm"]["misses"]


def test_unknown_policy_exits_2(run_cli):
    status, _, err = run_cli("--cache-only", "--workload-trace", BUNDLED_AZURE, "--policy", "lru,bogus", "--no-plot")
    assert status == 2 and "bogus" in err and "valid policies" in err


@pytest.mark.parametrize("mode", ["--cache-only", "--pd"])
def test_a_tier_policy_gets_the_data_it_needs(run_cli, tmp_path, mode):
    # Belady named for a tier only (cache.tiers.hbm.policy, cache.policy lru) once exited 2: the run
    # prepared the future of the stream only for cache.policy. With HBM the only tier, it is the
    # same cache as cache.policy=belady, hit for hit.
    base = (mode, "--preset", "smoke", "--set", "workload.synthetic.kind=multi-turn",
            "--set", "workload.synthetic.num_requests=200", "--set", "workload.synthetic.think_time_median_s=2",
            "--set", "serving.num_gpu_blocks=300", "--set", "cache.tiers.dram.capacity_gib=0",
            "--set", "cache.tiers.ssd.capacity_gib=0")
    everywhere = _report(run_cli, tmp_path, "a", *base, "--set", "cache.policy=belady")["runs"][0]["metrics"]
    # (cache.policy left at its lru: given beside HBM's own policy, the only tier here, it is refused as unread)
    tier_only = _report(run_cli, tmp_path, "b", *base, "--set", "cache.tiers.hbm.policy=belady")["runs"][0]["metrics"]
    lru = _report(run_cli, tmp_path, "c", *base, "--set", "cache.policy=lru")["runs"][0]["metrics"]
    assert tier_only == everywhere and everywhere["hits"] > lru["hits"]


@pytest.mark.parametrize("setting", ["cache.tiers.dram.capacity_gib=64", "cache.tiers.ssd.policy=belady",
                                     "cache.tiers.hbm.capacity_gib=1", "serving.gpu_memory_utilization=0.5",
                                     "serving.num_gpu_blocks=100", "cache.inclusion=inclusive",
                                     "serving.enforce_eager=true"])
@pytest.mark.parametrize("capacity", [("--capacity-blocks", "50"), ("--set", "cache.capacity_blocks=50")])
def test_what_one_tier_of_capacity_blocks_leaves_unread_is_refused(run_cli, tmp_path, setting, capacity):
    """--capacity-blocks replays one HBM tier of that size (``build_tiers``): the other tiers and HBM's size from GPU
    memory are not built, and a DRAM tier given beside it ran as if absent (found by fuzzing: the report the same)."""
    out = tmp_path / "r.json"
    status, _, err = run_cli(*SYNTH, *capacity, "--set", setting, "--report-json", out, "--no-plot", "--quiet")
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert setting.partition("=")[0] in err and "--capacity-blocks" in err and not out.exists()


def test_the_top_tiers_policy_is_read_beside_capacity_blocks(run_cli, tmp_path):
    lru = _report(run_cli, tmp_path, "a", *SYNTH, "--capacity-blocks", "300")
    fifo = _report(run_cli, tmp_path, "b", *SYNTH, "--capacity-blocks", "300", "--set", "cache.tiers.hbm.policy=fifo")
    assert lru["runs"][0]["metrics"]["hits"] != fifo["runs"][0]["metrics"]["hits"]


def test_hand_made_trace_plain_and_prefix_hits(run_cli, tmp_path):
    """Four prompts of 512-token blocks, [1,2,3], [1,2,4], [1,5], [1,2,3], through one tier of 3 blocks, by hand.
    Plain LRU: 1 2 3 miss; 1 2 hit, 4 evicts 3; 1 hit, 5 evicts 2; 1 hit, 2 evicts 4, 3 evicts 5: 4 hits of 11.
    Belady: 4 evicts 3 (next use farthest), 5 evicts 4 (none): 1 2 | 1 | 1 2 hit, 5. FIFO: 1 2 hit, 4 evicts 1,
    1 evicts 2, 5 evicts 3, 1 hit, 2 evicts 4, 3 evicts 1: 3. Prefix LRU touches a request's blocks deepest
    first (vLLM frees them in reverse order): after [1,2,3] the order is 3 2 1, 4 evicts 3, after it 4 2 1;
    5 evicts 4, after it 2 5 1; [1,2,3] hits 1 and 2: 5 hits where touching in prompt order gives 4."""
    trace = tmp_path / "tiny.jsonl"
    prompts = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 512 * len(p), "output_length": 8,
                                         "hash_ids": p}) + "\n" for i, p in enumerate(prompts)))
    argv = ("--cache-only", "--workload-trace", trace, "--capacity-blocks", "3")
    plain = _report(run_cli, tmp_path, "plain", *argv, "--policy", "lru,belady,fifo")
    assert {r["name"]: r["metrics"]["hits"] for r in plain["runs"]} == {"lru": 4, "belady": 5, "fifo": 3}
    assert all(r["metrics"]["accesses"] == 11 for r in plain["runs"])
    prefix = _report(run_cli, tmp_path, "prefix", *argv, "--policy", "lru", "--set", "cache.access_semantics=prefix")
    assert prefix["runs"][0]["metrics"]["hits"] == 5


def test_a_workload_without_repeats_says_why_every_policy_hits_nothing(run_cli):
    """The Azure conversation trace has token counts alone and no sessions: each prompt's blocks are its own, so no
    block repeats and every policy's hit ratio is 0 (a policy study of it said nothing, and said nothing about why)."""
    status, out, err = run_cli("--cache-only", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "50",
                               "--policy", "lru,belady", "--capacity-blocks", "100", "--no-plot")
    assert status == 0, err
    assert "! no block of this workload repeats (block ids: unique)" in out and "hits                           0" in out
    status, out, err = run_cli(*SYNTH, "--policy", "lru", "--capacity-blocks", "100", "--no-plot")
    assert status == 0 and "no block of this workload repeats" not in out, err
