"""Learned eviction: features never see the future, training is reproducible, no train/test leakage,
and on the held-out half of the Mooncake trace the learned policy beats LRU where LRU trails Belady."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learned.features import FEATURES, access_features, next_use_labels
from sim.cache.replay import run_cache_only
from sim.config import load_config
from tests.test_serving import make_trace


def _chained_trace(block_lists, arrival=None, sessions=None):
    n = len(block_lists)
    t = make_trace(arrival if arrival is not None else np.arange(n, dtype=float), [16 * len(b) for b in block_lists],
                   [1] * n, block_lists=block_lists)
    if sessions is not None:
        t.session_id = np.asarray(sessions)
    return t


prompts = st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=5), min_size=2, max_size=25)


@settings(max_examples=60, deadline=None)
@given(prompts, prompts)
def test_features_use_no_future(past, future):
    """The features of the first accesses do not change whatever requests follow them."""
    alone = access_features(_chained_trace(past))
    extended = access_features(_chained_trace(past + future))
    np.testing.assert_array_equal(alone, extended[: len(alone)])


def test_features_and_labels_by_hand():
    # stream: [1, 2] [1, 3] [1, 2]; block 1 at depth 0 is reused at distances 2 and 2
    t = _chained_trace([[1, 2], [1, 3], [1, 2]])
    f = access_features(t)
    col = {name: f[:, i] for i, name in enumerate(FEATURES)}
    assert np.isnan(col["log_gap1"][0]) and col["log_gap1"][2] == pytest.approx(np.log1p(2))
    assert col["log_count"].tolist() == pytest.approx(np.log1p([0, 0, 1, 0, 2, 1]).tolist())
    assert col["log_children"][4] == pytest.approx(np.log1p(2))  # block 1 has been followed by 2 and 3
    labels = next_use_labels(t.access_stream())
    # block 1 at t=0 is next used at t=2; block 3 (t=3) never again: censored at the rest of the stream (6-3)
    assert labels[0] == pytest.approx(np.log1p(2)) and labels[3] == pytest.approx(np.log1p(3))


@pytest.fixture(scope="module")
def mooncake_model(shared_data, tmp_path_factory):
    from learned.train import main as train_main

    out = tmp_path_factory.mktemp("model") / "model.txt"
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    assert train_main(["--workload-trace", str(trace), "--out", str(out), "--set", "serving.block_size=512"]) == 0
    return trace, out


def test_training_is_reproducible(mooncake_model, tmp_path):
    from learned.train import main as train_main

    trace, out = mooncake_model
    again = tmp_path / "again.txt"
    assert train_main(["--workload-trace", str(trace), "--out", str(again), "--set", "serving.block_size=512"]) == 0
    assert again.read_bytes() == out.read_bytes()
    meta = json.loads((tmp_path / "again.txt.json").read_text())
    assert meta["train"]["request_range"] == [0, 6016] and meta["train_seconds"] < 120


def test_evaluating_on_the_training_range_is_refused(mooncake_model, run_cli):
    trace, out = mooncake_model
    argv = ["--cache-only", "--workload-trace", trace, "--set", "serving.block_size=512", "--policy", "learned",
            "--set", f"cache.learned_model={out}", "--capacity-blocks", "1000", "--no-plot", "--quiet"]
    status, _, err = run_cli(*argv)
    assert status == 2 and "trained on requests [0, 6016)" in err
    assert run_cli(*argv, "--allow-train-test-overlap")[0] == 0
    assert run_cli(*argv, "--set", "workload.range_start=0.5")[0] == 0


@pytest.mark.parametrize("capacity", [1000, 3000, 5000])
def test_learned_beats_lru_on_the_held_out_half(mooncake_model, capacity):
    from trace.workload import load_workload

    trace, out = mooncake_model
    config = load_config(None, sets=["serving.block_size=512", f"workload.trace={trace}", "workload.range_start=0.5",
                                     f"cache.learned_model={out}", f"cache.capacity_blocks={capacity}"])
    runs = {r.name: r.metrics for r in run_cache_only(load_workload(config), config, ["lru", "learned", "belady"])}
    lru, learned, belady = (runs[p]["hit_ratio"] for p in ("lru", "learned", "belady"))
    assert lru < learned <= belady
    assert runs["learned"]["learned_model"]["train_request_range"] == [0, 6016]
