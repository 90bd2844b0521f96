"""The cache-only replay with generated blocks (``cache.insert_outputs``): each request's generated full blocks enter
the cache after its prompt, as a vLLM server caches them (``KVCacheManager.cache_blocks`` hashes every full block of a
sequence; ``BlockPool.free_blocks`` keeps them), so the policy study sees the cache a server holds; hit ratios count
prompt blocks only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.cache.replay import run_cache_only
from sim.config import load_config
from tests.test_serving import make_trace
from trace.stats import serving_reuse_ceiling
from trace.workload import load_workload

# Blocks of 16. Turn 1: 40 tokens [a b p] (p partial), 30 generated: KV of 69 tokens, 4 full blocks, the last 2
# filled by generation (p completed = c, then d). Turn 2: 80 tokens [a b c d e].
A, B, P, C, D, E = range(6)


def _two_turns():
    return make_trace([0.0, 100.0], [40, 80], [30, 1], block_lists=[[A, B, P], [A, B, C, D, E]])


def _replay(trace, capacity, *sets, policy="lru"):
    config = load_config(None, sets=[f"cache.capacity_blocks={capacity}", *sets])
    (run,) = run_cache_only(trace, config, [policy])
    return run.metrics


def test_the_next_turn_finds_the_answer_its_previous_turn_generated():
    """Plenty of room: turn 2 finds a b (prompt blocks of turn 1), and with the answer inserted c d too; the accesses
    (8 prompt blocks) are the same either way."""
    without = _replay(_two_turns(), 100)
    with_outputs = _replay(_two_turns(), 100, "cache.insert_outputs=true")
    assert (without["accesses"], without["hits"]) == (8, 2)
    assert (with_outputs["accesses"], with_outputs["hits"]) == (8, 4)
    assert with_outputs["generated_blocks"] == 2  # turn 1's two; turn 2's KV (80 tokens) fills no block past its prompt
    assert with_outputs["tiers"]["hbm"]["insertions"] == without["tiers"]["hbm"]["insertions"]  # c d: now, not later


def test_an_answer_no_later_prompt_holds_takes_cache_space():
    """Prompts replayed as recorded (``workload.outputs_in_next_turn=false``): turn 1's answer gets ids of its own. An
    LRU cache of 3 blocks holds a b p after turn 1; the two generated blocks then push a and b out, so turn 2 hits
    nothing (prompt blocks alone: a b)."""
    assert _replay(_two_turns(), 3)["hits"] == 2
    metrics = _replay(_two_turns(), 3, "cache.insert_outputs=true", "workload.outputs_in_next_turn=false")
    assert metrics["hits"] == 0 and metrics["generated_blocks"] == 2


def _multi_turn(seed):
    config = load_config(None, sets=["workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=300",
                                     "workload.synthetic.rate_rps=20", "workload.synthetic.input_tokens_mean=300",
                                     "workload.synthetic.output_tokens_mean=120", f"seed={seed}",
                                     "serving.block_size=16"])
    return load_workload(config)


@pytest.mark.parametrize("seed", [1, 2])
def test_belady_bounds_every_policy_and_an_unbounded_cache_reaches_the_serving_ceiling(seed):
    """Generated blocks are misses for every policy (new ids), so Belady's MIN over the whole stream maximises the
    prompt hits too: no policy finds more. An unbounded cache hits every prompt block an earlier prompt held or an
    earlier request generated: ``--trace-stats``' ``infinite_cache_hit_ratio_serving``, counted apart."""
    trace = _multi_turn(seed)
    hits = {p: _replay(trace, 400, "cache.insert_outputs=true", policy=p)["hits"]
            for p in ("belady", "lru", "arc", "s3fifo", "sieve", "fifo", "lfu")}
    assert hits["belady"] == max(hits.values()) and hits["belady"] > hits["lru"]
    unbounded = _replay(trace, 10**6, "cache.insert_outputs=true")
    assert unbounded["hit_ratio"] == pytest.approx(serving_reuse_ceiling(trace), abs=1e-12)
    assert unbounded["hit_ratio"] > _replay(trace, 10**6)["hit_ratio"]  # the answers were found


def test_the_learned_classes_cover_generated_blocks(tmp_path):
    """A learned model judged with answers inserted: every position of the stream has a class, a generated block its
    request's deepest full prompt block's (both come back when the conversation goes on), and the run stays within
    Belady's bound."""
    from learned.train import main as train_main
    from sim.cache.access import learned_predictions
    from sim.cache.replay import cache_stream

    out = tmp_path / "m.txt"
    workload = ["workload.synthetic.num_requests=600", "workload.synthetic.rate_rps=2", "serving.block_size=16",
                "workload.synthetic.input_tokens_mean=300"]
    assert train_main([*(arg for s in workload for arg in ("--set", s)), "--range", "0:0.5", "--out", str(out)]) == 0
    config = load_config(None, sets=[*workload, "workload.range_start=0.5", f"cache.learned_model={out}",
                                     "cache.capacity_blocks=300", "cache.insert_outputs=true"])
    trace = load_workload(config)
    stream = cache_stream(trace, config)
    prompt_classes = learned_predictions(trace, config)[1].klass
    classes = stream.classes(learned_predictions(trace, config)[1]).klass
    assert len(classes) == len(stream.blocks) and (classes[stream.prompt] == prompt_classes).all()
    request = int(np.flatnonzero(np.diff(stream.generated.offsets))[0])  # the first request that generated a block
    full = min(int(trace.input_tokens[request]) // 16, int(np.diff(trace.block_offsets)[request]))
    deepest = prompt_classes[trace.block_offsets[request] + max(full, 1) - 1]
    first_generated = stream.offsets[request] + np.diff(trace.block_offsets)[request]
    assert classes[first_generated] == deepest
    learned, belady = run_cache_only(trace, config, ["learned", "belady"])
    assert learned.metrics["accesses"] == trace.num_accesses
    assert learned.metrics["hits"] <= belady.metrics["hits"]


@pytest.mark.parametrize("argv, names", [
    (["--cache-only", "--set", "workload.outputs_in_next_turn=false"], "cache.insert_outputs=true"),
    (["--pd", "--set", "cache.insert_outputs=true"], "--cache-only"),
    (["--cache-only", "--mrc", "--set", "cache.insert_outputs=true"], "prompt blocks alone"),
    # (found by fuzzing: with prefix caching off nothing is cached, and the setting ran as if absent)
    (["--pd", "--set", "serving.enable_prefix_caching=false", "--set", "workload.outputs_in_next_turn=false"],
     "serving.enable_prefix_caching=false"),
])
def test_settings_the_run_would_not_read_are_refused(run_cli, tmp_path, argv, names):
    status, _, err = run_cli(*argv, "--set", "workload.synthetic.num_requests=20", "--no-plot", "--quiet",
                             "--report-json", tmp_path / "r.json")
    assert status == 2 and names in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_a_report_with_outputs_is_byte_identical_on_a_rerun(run_cli, tmp_path):
    argv = ["--cache-only", "--policy", "lru,belady", "--capacity-blocks", "200", "--set", "cache.insert_outputs=true",
            "--set", "workload.synthetic.num_requests=200", "--no-plot", "--quiet"]
    reports = []
    for name in ("a.json", "b.json"):
        assert run_cli(*argv, "--report-json", tmp_path / name)[0] == 0
        report = json.loads((tmp_path / name).read_text())
        report.pop("timing")
        reports.append(report)
    assert reports[0] == reports[1]
    assert all(np.isfinite(run["metrics"]["hit_ratio"]) and run["metrics"]["generated_blocks"] > 0
               for run in reports[0]["runs"])


@pytest.mark.parametrize("policy", ["lru", "arc", "s3fifo"])
def test_the_replay_returns_between_slices_and_the_slices_change_nothing(monkeypatch, policy):
    """A compiled replay sees Ctrl-C or SIGTERM only when it returns: the replay runs in slices of CHUNK accesses
    (with or without a progress bar), and slicing a stream gives the hits of one call over it."""
    import sim.cache.replay as replay_module
    from sim.cache.multitier import MultiTierCache

    rng = np.random.default_rng(7)
    lists = [list(rng.integers(0, 300, size=int(rng.integers(1, 40)))) for _ in range(400)]
    trace = make_trace(np.arange(400.0), [16 * len(b) for b in lists], [1] * 400, block_lists=lists)
    calls = []
    original = MultiTierCache.replay

    def counted(self, *args, **kwargs):
        calls.append(args[3:5])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiTierCache, "replay", counted)
    whole = _replay(trace, 120, f"cache.policy={policy}", policy=policy)
    assert len(calls) == 1  # 400 requests, far fewer accesses than a slice
    monkeypatch.setattr(replay_module, "CHUNK", 64)
    calls.clear()
    sliced = _replay(trace, 120, f"cache.policy={policy}", policy=policy)
    assert len(calls) > 50 and calls[0][0] == 0 and calls[-1][1] == 400
    assert all(a[1] == b[0] for a, b in zip(calls, calls[1:]))  # consecutive slices, every request once
    assert sliced == whole and 0 < whole["hits"] < whole["accesses"]
