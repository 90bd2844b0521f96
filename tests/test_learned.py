"""Learned eviction: features never see the future, training is reproducible and honest, the compiled
experts match their references, a wrong model falls back to ARC, and on the held-out half of the
Mooncake trace the learned policy is at least the best classic policy at every capacity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learned import hit_density, kernel, shadow_experts, state_layout
from learned.features import FEATURES, access_features, next_use_distance
from learned.predictions import Predictions
from sim.cache.access import NEVER, next_use_index
from sim.cache.replay import replay, run_cache_only
from sim.config import load_config
from tests.cache_helpers import evictions, plain_hits
from tests.test_serving import make_trace

CAPACITIES = (1000, 2000, 5000, 10000, 20000)
CLASSIC = ("lru", "arc", "s3fifo", "sieve")


def _chained_trace(block_lists, arrival=None, inputs=None, outputs=None):
    n = len(block_lists)
    return make_trace(arrival if arrival is not None else np.arange(n, dtype=float),
                      inputs if inputs is not None else [16 * len(b) for b in block_lists],
                      outputs if outputs is not None else [7] * n,
                      block_lists=block_lists)


prompts = st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=5), min_size=2, max_size=25)


@settings(max_examples=60, deadline=None)
@given(prompts, prompts, st.lists(st.integers(1, 4000), min_size=50, max_size=50))
def test_features_use_no_future(past, future, outputs):
    """The features of the first accesses do not change whatever requests follow them, their prompts or their
    response lengths (each request's own is known when its blocks can first be evicted; a later one's is not: with
    every response 7 tokens long, a feature reading the next request's passed)."""
    alone = access_features(_chained_trace(past, outputs=outputs[:len(past)]))
    extended = access_features(_chained_trace(past + future, outputs=outputs[:len(past) + len(future)]))
    np.testing.assert_array_equal(alone, extended[: len(alone)])


def test_features_by_hand():
    # Requests [1, 2], [1, 3], [1, 2] at t = 0, 1, 2 s; the last one's second block holds 11 of 16 tokens.
    t = _chained_trace([[1, 2], [1, 3], [1, 2]], inputs=[32, 32, 27])
    col = {name: t_col for name, t_col in zip(FEATURES, access_features(t).T, strict=True)}
    assert np.isnan(col["log_gap1"][0]) and col["log_gap1"][2] == pytest.approx(np.log1p(2))
    assert col["log_count"].tolist() == pytest.approx(np.log1p([0, 0, 1, 0, 2, 1]).tolist())
    assert col["log_children"][4] == pytest.approx(np.log1p(2))  # block 1 has been followed by 2 and 3
    assert col["block_fill"].tolist() == pytest.approx([1, 1, 1, 1, 1, 11 / 16])
    assert col["log_blocks_after"].tolist() == pytest.approx(np.log1p([1, 0, 1, 0, 1, 0]).tolist())
    # Request 2 holds every full block of request 0 (1, 2): it is request 0's next turn, 2 s later.
    # Request 1 shares only block 1 with request 0 (whose prompt has two full blocks): a new session.
    assert col["turn"].tolist() == [0, 0, 0, 0, 1, 1]
    assert np.isnan(col["turn_gap_s"][2]) and col["turn_gap_s"][4] == 2.0
    assert col["seen_fraction"].tolist() == [0, 0, 0.5, 0.5, 1, 1]
    assert col["log_output_tokens"][0] == pytest.approx(np.log1p(7))


def test_sessions_from_session_ids():
    t = _chained_trace([[1], [2], [1, 3]], arrival=np.array([0.0, 5.0, 9.0]))
    t.session_id = np.array([4, -1, 4])
    col = {name: t_col for name, t_col in zip(FEATURES, access_features(t).T, strict=True)}
    assert col["turn"].tolist() == [0, 0, 1, 1] and col["turn_gap_s"][2] == 9.0


def test_next_use_distance_by_hand():
    assert next_use_distance(np.array([5, 6, 5, 7, 6])).tolist() == [2, 3, NEVER, NEVER, NEVER]


def test_perfect_predictions_bucket_the_true_distance():
    # next uses of positions 0..3: 1, 3, never (capped), never; power-of-two buckets (0.5,1], (1,2], (2,4]
    p = Predictions.perfect(np.array([1.0, 3.0, 40.0, 40.0]))
    assert p.klass.tolist() == [0, 1, len(p.edges) - 2, len(p.edges) - 2]
    assert np.array_equal(p.dist, np.eye(len(p.edges) - 1))


def test_belady_bypass_declines_a_block_needed_later_than_every_resident():
    # One block of cache, a b a: Belady must take b (and loses a); with bypass a stays and hits.
    assert plain_hits("belady", [1], [0, 1, 0])[0] == 0
    assert plain_hits("belady-bypass", [1], [0, 1, 0])[0] == 1
    assert evictions("belady-bypass", 2, [0, 1, 2, 0, 1, 2])[0] == []  # 2 is needed last: never admitted


def _expert_hits(step, stream, *state):
    """Hit or miss of one shadow expert's ``step(*state, key)`` for every key of ``stream``."""
    return [bool(step(*state, key)) for key in stream.tolist()]


@settings(deadline=None, max_examples=300)
@given(st.integers(-5, 2**47 - 1))
def test_age_buckets_are_quarter_octaves(age):
    """An idle time's bucket is 4 * floor(log2(age + 1)) plus the two bits after the leading one (capped), and
    the bucket's representative age lies inside it."""
    x = max(age, 0) + 1
    e = x.bit_length() - 1
    expected = min(e * 4 + (((x << 2) >> e) & 3), hit_density.AGE_BUCKETS - 1) if age >= 1 else 0
    assert hit_density.age_bucket(age) == expected
    if 1 <= age and expected < hit_density.AGE_BUCKETS - 1:
        assert hit_density.age_bucket(int(hit_density.bucket_age(expected))) == expected


@pytest.mark.parametrize("capacity", [3, 20, 150])
def test_compiled_arc_expert_equals_the_arc_policy(capacity):
    """The safety net's shadow ARC makes ARC's decisions (``arc`` matches libCacheSim hit for hit)."""
    stream = np.random.default_rng(capacity).zipf(1.3, 4000) % 500
    state = kernel.new_state(capacity, 500, np.eye(2), np.array([0.5, 1.0, np.inf]))
    ours = _expert_hits(shadow_experts.arc_step, stream, state["blocks"], state["ints"], state["floats"])
    assert ours == evictions("arc", capacity, stream.tolist())[1]


def test_compiled_arc_expert_equals_the_arc_policy_where_its_target_reaches_the_capacity():
    """ARC's target p is at most the capacity c (the paper's min(p + delta, c)): 3 blocks over 7 keys drawn evenly, so
    ghost hits push p to c and later B2 hits pull it down from c, not from past it. The zipf streams above never
    reached c (hmut9: p left unbounded passed them)."""
    stream = np.random.default_rng(0).integers(0, 7, 600)
    state = kernel.new_state(3, 7, np.eye(2), np.array([0.5, 1.0, np.inf]))
    ours, targets = [], []
    for key in stream.tolist():
        ours.append(bool(shadow_experts.arc_step(state["blocks"], state["ints"], state["floats"], key)))
        targets.append(state["floats"][state_layout.X_P])
    assert max(targets) == 3.0 and ours == evictions("arc", 3, stream.tolist())[1]


@pytest.mark.parametrize("capacity", [1, 20, 150])
def test_compiled_lru_expert_equals_the_lru_policy(capacity):
    stream = np.random.default_rng(capacity).zipf(1.3, 4000) % 500
    state = kernel.new_state(capacity, 500, np.eye(2), np.array([0.5, 1.0, np.inf]))
    ours = _expert_hits(shadow_experts.lru_step, stream, state["blocks"], state["ints"])
    assert ours == evictions("lru", capacity, stream.tolist())[1]
    assert state["ints"][state_layout.S_LRU_SIZE] == min(capacity, len(np.unique(stream)))


@pytest.mark.parametrize("capacity", [1, 9, 20, 150])
def test_compiled_s3fifo_expert_equals_the_s3fifo_policy(capacity):
    """The safety net's shadow S3-FIFO makes S3-FIFO's decisions (``s3fifo`` matches libCacheSim hit for hit);
    a scan of new keys every 300 accesses sends blocks through the small queue, the ghost and main."""
    rng = np.random.default_rng(capacity)
    stream = rng.zipf(1.2, 5000) % 400
    stream[::300] = 400 + np.arange(len(stream[::300]))
    state = kernel.new_state(capacity, 1000, np.eye(2), np.array([0.5, 1.0, np.inf]))
    ours = _expert_hits(shadow_experts.s3_step, stream, state["blocks"], state["ints"])
    assert ours == evictions("s3fifo", capacity, stream.tolist())[1]
    resident = state["ints"][state_layout.S_S3_SIZE] + state["ints"][state_layout.S_S3_SIZE + 1]
    assert resident == min(capacity, len(np.unique(stream)))


def _mooncake(shared_data, *sets):
    from trace.workload import load_workload

    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    config = load_config(None, sets=["serving.block_size=512", f"workload.trace={trace}", *sets])
    return load_workload(config), config


def test_a_wrong_model_never_costs_more_than_one_percent_against_arc(shared_data):
    """A model that predicts 'soon' for blocks never used again and 'never' for the soonest (a perfect
    predictor turned upside down): the cache follows ARC instead, within 1% of the accesses."""
    trace, config = _mooncake(shared_data, "workload.range_start=0.5")
    stream = trace.access_stream()
    next_use = next_use_index(stream)
    perfect = Predictions.perfect(np.minimum(next_use, 10 * len(stream)).astype(float), int(stream.max()) + 1)
    inverted = Predictions(perfect.klass, perfect.dist[::-1].copy(), perfect.edges, perfect.num_ids)
    for capacity in (1000, 5000, 20000):
        arc = (replay(trace, config, "arc", "plain", capacity)[1] >= 0).mean()
        wrong = (replay(trace, config, "learned", "plain", capacity, predicted=inverted)[1] >= 0).mean()
        right = (replay(trace, config, "learned", "plain", capacity, predicted=perfect)[1] >= 0).mean()
        assert wrong >= arc - 0.01, capacity
        assert right > arc + 0.03, capacity  # and a good model is followed


def test_a_wrong_model_costs_at_most_one_percent_against_arc_under_prefix_semantics(shared_data):
    """The same inverted predictor by prefix semantics. Scored on the blocks they held, the experts were judged on
    hits the real cache does not get (a prefix lookup stops at the first miss), and the wrong model expert held on
    too long: 0.2601 / 0.2941 against ARC's 0.2731 / 0.3082 at 20k / 30k blocks (1.3% and 1.4% below). Scored on the
    prefix hits each would serve, the cache follows LRU: 0.2805 / 0.3087 (measured)."""
    trace, config = _mooncake(shared_data, "workload.range_start=0.5")
    stream = trace.access_stream()
    perfect = Predictions.perfect(np.minimum(next_use_index(stream), 10 * len(stream)).astype(float),
                                  int(stream.max()) + 1)
    inverted = Predictions(perfect.klass, perfect.dist[::-1].copy(), perfect.edges, perfect.num_ids)
    for capacity in (20000, 30000):
        arc = (replay(trace, config, "arc", "prefix", capacity)[1] >= 0).mean()
        wrong = (replay(trace, config, "learned", "prefix", capacity, predicted=inverted)[1] >= 0).mean()
        assert wrong >= arc - 0.01, capacity


def test_a_model_of_another_workload_is_left_quickly_on_a_short_stream(mooncake_model):
    """The Mooncake conversation model judged on the synthetic multi-turn workload at 512-token blocks
    (16,269 accesses: a 5k-block cache holds a third of the stream, so a fallback that waits for the
    experts' total hits to differ by 3 sigma switched only after half of it: 1.2% below ARC at 1k,
    measured). The leader changes on the accesses only one of the two experts hit (McNemar's test)."""
    from trace.workload import load_workload

    _, model = mooncake_model
    sets = ["seed=2", "workload.synthetic.num_requests=4000", "serving.block_size=512",
            f"cache.learned_model={model}"]
    workload = load_workload(load_config(None, sets=sets))
    for capacity in (1000, 2000, 5000):
        config = load_config(None, sets=[*sets, f"cache.capacity_blocks={capacity}"])
        runs = {r.name: r.metrics["hit_ratio"] for r in run_cache_only(workload, config, ["arc", "learned"])}
        assert runs["learned"] >= runs["arc"] - 0.01, (capacity, runs)


@pytest.fixture(scope="module")
def mooncake_model(shared_data, tmp_path_factory):
    from learned.train import main as train_main

    out = tmp_path_factory.mktemp("model") / "model.txt"
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    assert train_main(["--workload-trace", str(trace), "--out", str(out), "--set", "serving.block_size=512"]) == 0
    return trace, out


def test_the_report_says_which_expert_the_cache_followed(mooncake_model):
    """A cache-only report of the learned policy names the expert its safety net followed: on Mooncake's judged
    half at 2,000 blocks the model (0.105 against the best classic policy's 0.069, bench_learned.py) leads from
    start to end, with more recent hits than any classic expert."""
    from learned.state_layout import EXPERT_NAMES
    from trace.workload import load_workload

    trace, model = mooncake_model
    config = load_config(None, sets=[f"workload.trace={trace}", "serving.block_size=512", "workload.range_start=0.5",
                                     f"cache.learned_model={model}", "cache.capacity_blocks=2000"])
    (run,) = run_cache_only(load_workload(config), config, ["learned"])
    summary = run.metrics["learned_policy"]
    assert list(summary["recent_hits"]) == list(EXPERT_NAMES)
    assert summary["leader"] == "model" and summary["leader_switches"] == 0
    assert summary["recent_hits"]["model"] > max(v for k, v in summary["recent_hits"].items() if k != "model")


def test_the_report_of_tiers_says_which_expert_their_one_policy_followed(mooncake_model):
    """Tiers cache-only (HBM 20 GiB, DRAM 40 GiB): one learned policy spans them (``SpanHooks``), and the report reads
    its summary, not the top tier's own policy, which sees no access there (its recent hits were all 0)."""
    from trace.workload import load_workload

    trace, model = mooncake_model
    config = load_config(None, sets=[f"workload.trace={trace}", "serving.block_size=512", "workload.range_start=0.5",
                                     f"cache.learned_model={model}", "cache.tiers.hbm.capacity_gib=20",
                                     "cache.tiers.dram.capacity_gib=40"])
    (run,) = run_cache_only(load_workload(config), config, ["learned"])
    hits = run.metrics["learned_policy"]["recent_hits"]
    assert min(hits.values()) > 0, hits


def test_sidecar_records_what_the_model_means(mooncake_model):
    _, out = mooncake_model
    meta = json.loads((out.parent / "model.txt.json").read_text())
    assert meta["features"] == list(FEATURES) and meta["block_tokens"] == 512
    assert meta["train"]["request_range"] == [0, 6016] and meta["train"]["range"] == [0.0, 0.5]
    assert meta["label"]["horizon_accesses"] == meta["train"]["accesses"] // 4
    assert meta["train"]["rows_fitted"] <= 100_000 and "definition" in meta["label"]


def test_training_is_reproducible(tmp_path):
    from learned.train import main as train_main

    argv = ["--range", "0:1", "--seed", "3", "--set", "workload.synthetic.num_requests=300", "--rounds", "5"]
    assert train_main([*argv, "--out", str(tmp_path / "a.txt")]) == 0
    assert train_main([*argv, "--out", str(tmp_path / "b.txt")]) == 0
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_evaluating_on_the_training_range_is_refused(mooncake_model, run_cli):
    trace, out = mooncake_model
    argv = ["--cache-only", "--workload-trace", trace, "--set", "serving.block_size=512", "--policy", "learned",
            "--set", f"cache.learned_model={out}", "--capacity-blocks", "1000", "--no-plot", "--quiet"]
    status, _, err = run_cli(*argv)
    assert status == 2 and "trained on requests [0, 6016)" in err
    assert run_cli(*argv, "--allow-train-test-overlap")[0] == 0
    assert run_cli(*argv, "--set", "workload.range_start=0.5")[0] == 0


def test_learned_is_at_least_the_best_classic_policy_on_the_held_out_half(mooncake_model):
    """Mooncake conversation trace, trained on the first half, judged on the second, 512-token blocks.
    Measured (learned/README.md): the gap closed averages 0.18 (the issue asks 0.25; see the README); checked
    with a margin for the spread across tree and sampling seeds (about ±0.015): 0.15."""
    from trace.workload import load_workload

    trace, out = mooncake_model
    workload = load_workload(load_config(None, sets=config_sets(trace, out)))
    gaps = []
    for capacity in CAPACITIES:
        config = load_config(None, sets=[*config_sets(trace, out), f"cache.capacity_blocks={capacity}"])
        runs = {r.name: r.metrics["hit_ratio"] for r in run_cache_only(workload, config, [*CLASSIC, "learned", "belady"])}
        best = max(runs[p] for p in CLASSIC)
        assert runs["learned"] >= best, (capacity, runs)
        gaps.append((runs["learned"] - best) / (runs["belady"] - best))
    assert np.mean(gaps) >= 0.15, gaps


def test_learned_under_prefix_semantics_keeps_its_lead_on_the_held_out_half(mooncake_model):
    """The same split by prefix semantics (what every serving mode uses: a request reuses its longest cached prefix).
    LRU and ARC serve the same there as by plain semantics (deepest-first touches keep their prefixes whole), and so
    must the learned policy, within 0.002: measured 0.0738 / 0.2338 / 0.3124 against plain 0.0741 / 0.2348 / 0.3131
    at 1k / 10k / 30k blocks; before its experts were scored on prefix hits and its model expert evicted leaves
    first, 0.0682 / 0.2236 / 0.3063, below LRU's 0.3107 at 30k. Checked: at least the best classic policy."""
    from trace.workload import load_workload

    trace, out = mooncake_model
    workload = load_workload(load_config(None, sets=config_sets(trace, out)))
    for capacity in (1000, 10000, 30000):
        sets = [*config_sets(trace, out), f"cache.capacity_blocks={capacity}"]
        runs = {r.name: r.metrics["hit_ratio"] for r in run_cache_only(
            workload, load_config(None, sets=[*sets, "cache.access_semantics=prefix"]), [*CLASSIC, "learned"])}
        plain = run_cache_only(workload, load_config(None, sets=sets), ["learned"])[0].metrics["hit_ratio"]
        assert runs["learned"] >= max(runs[p] for p in CLASSIC), (capacity, runs)
        assert runs["learned"] >= plain - 0.002, (capacity, runs["learned"], plain)


def test_learned_on_the_synthetic_multi_turn_workload(tmp_path):
    """Synthetic chat with session dynamics (trained on seed 1, judged on seed 2, 10,000 requests each, as in
    ``benchmarks/bench_learned.py``). Measured (learned/README.md, 2026-12-04): above the best classic policy at
    every capacity from 1k to 20k blocks by 0.007-0.020 (0.0090 / 0.0224 / 0.0455 / 0.0828 / 0.1441 against
    0.0019 / 0.0120 / 0.0333 / 0.0629 / 0.1263). Checked: at least the best classic policy at every capacity,
    and the gap to Belady closed by at least 0.05 on average (measured 0.085)."""
    from learned.train import main as train_main
    from trace.workload import load_workload

    model = tmp_path / "m.txt"
    size = "workload.synthetic.num_requests=10000"
    empty = "workload.synthetic.start=empty"  # the start the measured table was run with
    assert train_main(["--out", str(model), "--range", "0:1", "--seed", "1", "--set", size, "--set", empty]) == 0
    sets = ["seed=2", size, empty, f"cache.learned_model={model}"]
    workload = load_workload(load_config(None, sets=sets))
    gaps = []
    for capacity in CAPACITIES:
        config = load_config(None, sets=[*sets, f"cache.capacity_blocks={capacity}"])
        runs = {r.name: r.metrics["hit_ratio"] for r in run_cache_only(workload, config, [*CLASSIC, "learned", "belady"])}
        best = max(runs[p] for p in CLASSIC)
        assert runs["learned"] >= best, (capacity, runs)
        gaps.append((runs["learned"] - best) / (runs["belady"] - best))
    assert np.mean(gaps) >= 0.05, gaps


def config_sets(trace, model) -> list[str]:
    return ["serving.block_size=512", f"workload.trace={trace}", "workload.range_start=0.5",
            f"cache.learned_model={model}"]


def test_a_block_inserted_twice_counts_once():
    """A lower tier shared by instances can receive the same block from two of them."""
    from sim.cache.policies import make_policy

    policy = make_policy("learned", 2, predicted=np.array([5.0, 6.0, 7.0, 8.0]))
    policy.on_insert(1, 0)
    policy.on_insert(1, 1)
    policy.on_insert(2, 2)
    assert policy.state["ints"][state_layout.S_NREAL] == 2 and policy.victim(3) in (1, 2)


@pytest.mark.parametrize("mode", [[], ["--pd"], ["--cluster"]], ids=["single", "pd", "cluster"])
def test_serving_runs_with_the_learned_policy(mode, tmp_path, run_cli):
    """Single-node and PD serving (instances sharing the DRAM/SSD tiers) and a cluster of 4 nodes (each node's
    DRAM/SSD shared by its instances only) with a small model."""
    from learned.train import main as train_main

    model = tmp_path / "m.txt"
    common = ["--set", "serving.block_size=512", "--set", "workload.synthetic.num_requests=300",
              "--set", "workload.synthetic.think_time_median_s=5"]  # conversations come back within the minute
    assert train_main(["--out", str(model), "--range", "0:1", "--rounds", "3", *common]) == 0
    status, out, err = run_cli(*mode, "--policy", "learned", "--set", f"cache.learned_model={model}", "--seed", "1",
                               *common, "--no-plot", "--quiet", "--report-json", tmp_path / "r.json")
    assert status == 0, err
    metrics = json.loads((tmp_path / "r.json").read_text())["runs"][0]["metrics"]
    assert metrics["requests_completed"] == 300 and 0 < metrics["hit_ratio"] < 1
    # the report names the model judged, as a cache-only one does, and whom each learned copy follows: one per
    # instance's HBM and one per tier the instances share (DRAM and SSD), each counted once
    assert metrics["learned_model"]["train_request_range"] == [0, 300]
    assert metrics["learned_model"]["block_tokens"] == 512
    copies = metrics["learned_policy"]
    followed = sum(copies[f"leader_{name}"] for name in ("model", "arc", "lru", "s3fifo"))
    lower = sum(tier["copies"] for tier in metrics["tiers"].values())  # (a cluster's: one per node)
    assert copies["copies"] == metrics["instances"]["count"] + lower == followed
    assert copies["leader_model"] <= lower  # (each instance's HBM is private: ``private``)
    if "--cluster" in mode:  # a node's DRAM/SSD sees only its node's lookups: private too (the model may lead
        assert metrics["cluster"]["nodes_used"] > 1 and copies["leader_model"] == 0  # where a tier sees them all)


def test_a_private_copy_follows_its_classic_experts_even_against_a_perfect_model():
    """An instance's HBM among several sees only its own requests, while the model predicts next uses anywhere in
    the stream (``Predictions.private``): its model expert never leads. A loop of 6 blocks through 4: LRU and ARC
    miss every access, S3-FIFO hits some, a perfect predictor more; the shared copy follows the model, the private
    one the best classic expert, S3-FIFO."""
    from sim.cache.policies import make_policy

    stream = np.tile(np.arange(6), 40)
    predicted = Predictions.perfect(next_use_index(stream).astype(float), 6)
    hits, summary = {}, {}
    for name, predictions in (("shared", predicted), ("private", predicted.private())):
        policy = make_policy("learned", 4, predicted=predictions)
        hits[name] = len(policy.replay_plain(stream.tolist(), set(), 4, 0)[0])
        summary[name] = policy.summary()
    scores = summary["private"]["recent_hits"]
    assert scores["arc"] == scores["lru"] == scores["model"] == 0 < scores["s3fifo"]  # (no model expert runs there)
    assert summary["shared"]["recent_hits"]["model"] > scores["s3fifo"]
    assert summary["shared"]["leader"] == "model" and summary["private"]["leader"] == "s3fifo"
    assert hits["shared"] > hits["private"] > 0


def test_a_private_copy_decides_alike_whatever_its_model_says():
    """A private copy has no model expert: it neither runs nor counts among the holders that order the real cache's
    victims ("held by fewer experts first"), so its choices cannot depend on the model. Before, its holdings did
    (Mooncake's model on the multi-turn workload, 4 x 200 HBM blocks with DRAM/SSD, seed 3: 0.4457 against ARC's
    0.4642, no copy following the model). A skewed stream of 60 blocks through 12: a perfect and an inverted
    predictor give a private copy the same hits, access for access, and a shared copy different ones."""
    from sim.cache.policies import make_policy

    rng = np.random.default_rng(7)
    stream = np.minimum(rng.zipf(1.3, 4000) - 1, 59)
    perfect = Predictions.perfect(next_use_index(stream).astype(float), 60)
    inverted = Predictions(perfect.klass, perfect.dist[::-1].copy(), perfect.edges, perfect.num_ids)
    hits = {}
    for name, predictions in (("perfect", perfect), ("inverted", inverted)):
        for copy, kind in (("shared", predictions), ("private", predictions.private())):
            policy = make_policy("learned", 12, predicted=kind)
            hits[name, copy] = policy.replay_plain(stream.tolist(), set(), 12, 0)[0]
    assert hits["perfect", "private"] == hits["inverted", "private"]
    assert hits["perfect", "shared"] != hits["inverted", "shared"]


def test_a_private_copy_s_own_pick_is_its_leader_s_next_victim():
    """Where every block the real cache holds is the leader's, a private copy evicts the first of them in the leader's
    own order, so that following a classic expert is being it: ARC evicts T1's least recent block while T1 is over
    its target p (here 0), not the least recent block overall. Block 0 used twice (ARC's T2), then 1, 2, 3 (T1):
    ARC's victim is 1, the least recent is 0 (the pick before)."""
    from sim.cache.policies import make_policy

    policy = make_policy("learned", 4, predicted=Predictions.perfect(np.full(6, 50.0), 6).private())
    policy.on_insert(0, 0)
    policy.on_access(0, 1)
    for key in (1, 2, 3):
        policy.on_insert(key, key + 1)
    assert policy.summary()["leader"] == "arc" and policy.victim(4) == 1
    # T1's blocks pinned (a prefix replay's request holds them): the first of T2 instead, 0; -1 only where every block
    # is pinned (hmut9: a pick that stopped at the list REPLACE chose said -1 with block 0 free)
    policy.pinned = {1, 2, 3}
    assert policy.victim(4) == 0
    policy.pinned = {0, 1, 2, 3}
    assert policy.victim(4) == -1


@pytest.mark.parametrize("leader", ["lru", "arc", "s3fifo"])
def test_a_private_copy_that_follows_a_classic_expert_serves_its_hits(leader):
    """A private copy whose leader is a classic expert (and stays: its switch threshold out of reach) serves exactly
    that policy's hits (``tests.cache_helpers.plain_hits``, the simulator's own LRU, ARC and S3-FIFO) on skewed streams;
    the least recent of 32 sampled blocks (before session 62) is often not LRU's victim. ARC's choice is made at the
    target p the incoming block's ghost hit sets (at the p before it, 10 blocks of zipf(1.2) served 3,441 hits against
    ARC's 3,427), S3-FIFO's from main at the first block of main's lowest frequency (main's head served 1,719 against
    1,725 at 5 blocks of zipf(1.3))."""
    from sim.cache.policies import make_policy

    for seed, skew, ids, capacity in ((3, 1.2, 200, 50), (3, 1.2, 200, 10), (9, 1.3, 300, 5)):
        rng = np.random.default_rng(seed)
        stream = np.minimum(rng.zipf(skew, 5000 if ids == 200 else 3000) - 1, ids - 1)
        predicted = Predictions.perfect(next_use_index(stream).astype(float), ids).private()
        policy = make_policy("learned", capacity, predicted=predicted)
        policy.state["ints"][state_layout.S_LEADER] = state_layout.EXPERT_NAMES.index(leader)
        policy.state["floats"][state_layout.X_SIGMAS] = np.inf
        hits = len(policy.replay_plain(stream.tolist(), set(), capacity, 0)[0])
        assert policy.summary()["leader"] == leader
        assert hits == plain_hits(leader, [capacity], stream)[0], (seed, skew, capacity)


def test_the_readme_s_state_layout_gives_the_arrays_sizes():
    """learned/README.md's table of the state arrays: each one's size as ``learned.state_layout`` makes it (the
    README said ints int64 [92] once S_ELECT_FROM, the first expert that may lead, had made them 93)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "learned" / "README.md").read_text()
    fields = re.search(r"\| `blocks` \| int32 \[ids, (\d+)\]", text)
    ints, floats = re.search(r"\| `ints`, `floats` \| int64 \[(\d+)\], float64 \[(\d+)\]", text).groups()
    assert (int(fields.group(1)), int(ints), int(floats)) == (state_layout.BLOCK_FIELDS, state_layout.INT_SLOTS,
                                                              state_layout.FLOAT_SLOTS)


def test_a_private_copy_s_own_pick_is_its_least_recent_block_not_the_model_s():
    """Where every block the real cache holds is the leader's, it picks its victim itself: by the model's hit density
    in a copy the model may lead, by recency in a private one (``Predictions.private``), whose model is not of its
    stream (hexplore3: another workload's model in 4 workers' HBMs served 0.4043 against ARC's 0.4262 through this
    pick alone, no copy following the model). Blocks 0..3 fill 4 slots; block 0 comes back next, the others never."""
    from sim.cache.policies import make_policy

    predicted = Predictions.perfect(np.array([4.0, 50.0, 50.0, 50.0, 50.0]), 5)
    picks = {}
    for name, predictions in (("shared", predicted), ("private", predicted.private())):
        policy = make_policy("learned", 4, predicted=predictions)
        for key in range(4):
            policy.on_insert(key, key)
        picks[name] = policy.victim(4)
    assert picks["shared"] in (1, 2, 3) and picks["private"] == 0
