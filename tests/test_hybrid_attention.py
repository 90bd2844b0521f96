"""Models mixing sliding-window and full-attention layers (gpt-oss, Gemma 2/3): what their sliding layers compute,
against the definition of a sliding window (the query at position p attends to keys max(0, p - W + 1) … p), and
how a run of one is set up."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from sim.serving.compute import RooflineCompute
from sim.serving.step_shape import StepShape, window_sliding_kv_tokens
from sim.serving.utilization import WorkCounter, WorkTotals
from sim.specs import gpu_spec, model_spec
from tests.conftest import BUNDLED_AZURE, ROOFLINE_EFFICIENCIES


def hybrid(window: int = 512, sliding: int = 16):
    """Llama-3.1-8B's shape with ``sliding`` of its 32 layers attending within ``window`` tokens."""
    return dataclasses.replace(model_spec("llama-3.1-8b"), name="hybrid", sliding_window=window,
                               num_sliding_layers=sliding)


def brute_force_prefill(chunk: int, context: int, window: int) -> tuple[int, int]:
    """(query, key) pairs of a chunk's queries at positions context … context + chunk - 1, and the distinct keys
    they read, from the window's definition."""
    pairs, keys = 0, set()
    for p in range(context, context + chunk):
        window_keys = range(max(0, p - window + 1), p + 1)
        pairs += len(window_keys)
        keys.update(window_keys)
    return pairs, len(keys)


@pytest.mark.parametrize("chunk,context,window", [
    (1, 0, 4), (3, 0, 4), (4, 0, 4), (9, 0, 4), (5, 2, 4), (5, 3, 4), (5, 4, 4), (7, 10, 4), (1, 10, 4),
    (100, 37, 64), (64, 0, 64), (65, 0, 64), (1, 63, 64), (1, 64, 64), (300, 500, 128),
])
def test_a_sliding_layer_sees_each_prefill_query_within_its_window(chunk, context, window):
    shape = StepShape(window=window)
    shape.add_prefill(chunk, context)
    pairs, keys = brute_force_prefill(chunk, context, window)
    assert shape.sliding.prefill_pairs == pairs
    assert shape.sliding.prefill_kv_tokens == keys
    assert (shape.sliding.prefill_tokens, shape.sliding.prefill_seqs) == (chunk, 1)
    full_pairs, _ = brute_force_prefill(chunk, context, context + chunk)  # a window as wide as the context
    assert shape.prefill_pairs == full_pairs and shape.prefill_kv_tokens == context + chunk


def test_a_decode_window_grows_each_sequence_until_it_fills_the_window():
    window = 50
    kv_lens = np.array([1, 10, 40, 49, 50, 51, 400])  # below, at and beyond the window
    first = StepShape.decode_batch(kv_lens, window)
    assert first.sliding.decode_kv_tokens == np.minimum(kv_lens, window).sum()
    steps = 70
    expected = [np.minimum(kv_lens + k, window).sum() for k in range(steps)]
    assert window_sliding_kv_tokens(first, steps).tolist() == expected
    assert first.decode_kv_tokens == kv_lens.sum()  # the full-attention layers see every key


def test_a_window_wider_than_every_context_changes_nothing():
    wide = hybrid(window=100_000)
    full = model_spec("llama-3.1-8b")
    gpu = gpu_spec("h100-sxm")
    r_wide, r_full = (RooflineCompute(wide, gpu, 2, 2, **ROOFLINE_EFFICIENCIES),
                      RooflineCompute(full, gpu, 2, 2, **ROOFLINE_EFFICIENCIES))
    shape, plain = StepShape(window=r_wide.sliding_window), StepShape()
    for s in (shape, plain):
        s.add_prefill(2048, 3000)
        s.add_decode(900)
        s.add_decode(20_000)
    assert r_wide.step_time(shape) == pytest.approx(r_full.step_time(plain), rel=1e-12)


def test_sliding_layers_beyond_their_window_attend_to_the_window_alone():
    """Decodes far beyond the window: each sliding layer's attention is that of a decode of ``window`` keys; the
    other layers' is unchanged."""
    window, sliding = 512, 16
    spec = hybrid(window, sliding)
    r = RooflineCompute(spec, gpu_spec("h100-sxm"), 2, 2, **ROOFLINE_EFFICIENCIES)
    full = RooflineCompute(model_spec("llama-3.1-8b"), gpu_spec("h100-sxm"), 2, 2, **ROOFLINE_EFFICIENCIES)
    lengths = [5_000, 9_000, 30_000]
    shape = StepShape.decode_batch(np.array(lengths), window)
    plain = StepShape.decode_batch(np.array(lengths))
    at_window = StepShape.decode_batch(np.array([window] * len(lengths)))
    expected = full.step_time(plain) + sliding * (full.attention_layer_time(at_window)
                                                  - full.attention_layer_time(plain))
    assert r.step_time(shape) == pytest.approx(expected, rel=1e-12)
    assert r.step_time(shape) < full.step_time(plain)


def test_a_decode_window_prices_each_step_as_a_single_step():
    window = 300
    r = RooflineCompute(hybrid(window), gpu_spec("h100-sxm"), 2, 2, **ROOFLINE_EFFICIENCIES)
    kv_lens = np.array([10, 200, 299, 300, 5_000])
    steps = 400
    times = r.decode_times(StepShape.decode_batch(kv_lens, window), steps)
    for k in (0, 1, 89, 90, 100, 290, 399):
        assert times[k] == pytest.approx(r.step_time(StepShape.decode_batch(kv_lens + k, window)), rel=1e-12), k


def test_mfu_counts_the_sliding_layers_flops_as_the_steps_priced_them():
    """The run's FLOPs (WorkCounter over summed steps) equal each step's own count: full layers over every key,
    sliding layers over their window."""
    window, sliding = 256, 16
    spec = hybrid(window, sliding)
    r = RooflineCompute(spec, gpu_spec("h100-sxm"), 2, 2, **ROOFLINE_EFFICIENCIES)
    counter = WorkCounter(r)
    totals = WorkTotals()
    step = StepShape(window=window)
    step.add_prefill(1000, 200)
    step.add_decode(100)
    totals.add_step(step, 0.01)
    first = StepShape.decode_batch(np.array([100, 600]), window)
    totals.add_decode_window(first, 300, 0.5)
    # by hand: 2 x heads x head_dim x 2 FLOPs a (query, key) pair and layer
    per_pair = 4 * spec.num_attention_heads * spec.head_dim
    full_pairs = step.prefill_pairs + step.decode_kv_tokens + sum(100 + 600 + 2 * k for k in range(300))
    window_pairs = (brute_force_prefill(1000, 200, window)[0] + 100
                    + sum(min(100 + k, window) + min(600 + k, window) for k in range(300)))
    tokens = 1000 + 1 + 2 * 300
    expected = (spec.num_layers * counter.linear_flops_per_token * tokens
                + (spec.num_layers - sliding) * per_pair * full_pairs + sliding * per_pair * window_pairs
                + counter.head_flops_per_row * (2 + 2 * 300))
    assert counter.flops(totals) == pytest.approx(expected, rel=1e-12)


def test_a_hybrid_model_under_the_hybrid_manager_is_refused_where_it_is_not_modelled(run_cli):
    """vLLM's hybrid KV-cache manager is modelled in the serving modes (single node, PD, cluster): the cache-only
    replay, which has no requests' lifetimes, refuses the config in one line naming the setting that turns it off."""
    status, out, err = run_cli("--cache-only", "--capacity-blocks", "100", "--set", "model=gpt-oss-20b",
                               "--workload-trace", BUNDLED_AZURE, "--no-plot")
    assert status == 2 and out == ""
    assert "serving.disable_hybrid_kv_cache_manager=true" in err and "12 sliding-window layers (128 tokens)" in err
    assert err.count("\n") == 1 and len(err) < 300  # (one short line: it was 478 characters)


@pytest.mark.parametrize("pd", [[], ["--pd"]])
def test_a_cluster_runs_a_hybrid_model_under_the_hybrid_manager(run_cli, tmp_path, pd):
    report = tmp_path / "r.json"
    status, _, err = run_cli("--cluster", *pd, "--set", "model=gpt-oss-20b", "--set", "cluster.num_racks=1",
                             "--set", "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=2",
                             "--workload-trace", BUNDLED_AZURE, "--workload-limit", "60", "--no-plot", "--quiet",
                             "--report-json", report)
    assert status == 0, err
    metrics = json.loads(report.read_text())["runs"][0]["metrics"]
    assert metrics["requests_completed"] == 60
    # the hybrid manager's blocks of 12 layers: the GPU's KV budget // 393,216 (tests/test_hybrid_kv_cache_manager.py)
    from sim.config import load_config
    from sim.serving.memory_profile import memory_budget

    budget = memory_budget(load_config(None, sets=["model=gpt-oss-20b"]))
    assert metrics["instances"]["kv_blocks_each"] == budget.kv_bytes // 393_216


def test_with_the_hybrid_manager_off_every_layer_keeps_its_kv(run_cli, tmp_path):
    """gpt-oss-20b on one H100 SXM, every layer's KV whole (vLLM with the manager off: one KV group of all 24
    layers, so the capacity is not divided among groups). By hand: a token's KV is 2 (K, V) × 24 layers × 8 KV
    heads × 64 × 2 bytes = 49,152, a 16-token block 786,432 bytes; the checkpoint's weights are 13,761,264,768 bytes
    (its model.safetensors.index.json total_size, checked against the budget's in
    tests/test_hybrid_kv_cache_manager.py); the GPU's KV budget (sim.serving.memory_profile) // block."""
    report = tmp_path / "r.json"
    status, _, err = run_cli("--set", "model=gpt-oss-20b", "--set", "serving.disable_hybrid_kv_cache_manager=true",
                             "--set", "serving.num_instances=1", "--workload-trace", BUNDLED_AZURE,
                             "--workload-limit", "40", "--no-plot", "--quiet", "--report-json", report)
    assert status == 0, err
    metrics = json.loads(report.read_text())["runs"][0]["metrics"]
    from sim.config import load_config
    from sim.serving.memory_profile import memory_budget

    budget = memory_budget(load_config(None, sets=["model=gpt-oss-20b"]))
    assert metrics["instances"]["kv_blocks_each"] == budget.kv_bytes // 786_432
    assert metrics["requests_completed"] == 40
