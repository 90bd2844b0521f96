"""Compute models against measurements: roofline vs RTX 5090 prefill, profiled vs held-out Vidur rows."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from sim.compute import RooflineCompute, StepShape, VidurProfile, compute_model
from sim.config import load_config
from sim.specs import gpu_spec, model_spec
from tests.conftest import ROOT

OVERLAY = ROOT / "profiles" / "rtx5090_llama3_8b_pd_study.yaml"


def _rtx5090_rows():
    with (ROOT / "profiles" / "rtx5090_llama3_8b_prefill_per_layer.csv").open() as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    return [(int(r["num_tokens"]), float(r["per_layer_ms"]) / 1e3) for r in rows]


def test_roofline_within_15_percent_of_rtx5090_prefill():
    config = load_config(None, overlays=[OVERLAY])
    model = compute_model(config)
    assert isinstance(model, RooflineCompute) and model.gpu.name == "rtx5090"
    for tokens, measured in _rtx5090_rows():
        shape = StepShape()
        shape.add_prefill(tokens, 0, samples=False)
        per_layer = (model.step_time(shape) - model.lm_head_time(shape.output_seqs)) / model.model.num_layers
        assert per_layer == pytest.approx(measured, rel=0.15), tokens


def test_roofline_flop_count_by_hand():
    m = model_spec("llama-3-8b")
    r = RooflineCompute(m, gpu_spec("h100-sxm"), 2, 2, flops_efficiency=1.0, bandwidth_efficiency=1.0)
    # 2 x params of the 32 layers' linear layers per token, counted once
    assert 2 * r.layer_params * m.num_layers == pytest.approx(2 * (m.num_parameters - 2 * m.vocab_size * m.hidden_size), rel=1e-4)
    # a big prefill is compute-bound: time -> FLOPs / peak
    tokens = 16384
    assert r.linear_layer_time(tokens) == pytest.approx(2 * r.layer_params * tokens / 989.4e12, rel=0.01)
    # one decode token is weight-bandwidth-bound: time -> weight bytes / bandwidth
    assert r.linear_layer_time(1) == pytest.approx(r.layer_params * 2 / 3.35e12, rel=0.01)


def test_attention_grows_with_context_and_tp_splits_work():
    m, g = model_spec("llama-3-70b"), gpu_spec("h100-sxm")
    r1 = RooflineCompute(m, g, 2, 2, 1)
    short, long = StepShape(), StepShape()
    short.add_decode(1000)
    long.add_decode(100_000)
    assert r1.step_time(long) > r1.step_time(short)
    r8 = RooflineCompute(m, g, 2, 2, 8)
    prefill = StepShape()
    prefill.add_prefill(8192, 0, samples=True)
    assert r8.step_time(prefill) < r1.step_time(prefill) / 4


def test_profiled_predicts_held_out_vidur_rows(shared_data):
    path = shared_data / "profiles" / "vidur_a100_llama3_8b" / "mlp.csv"
    frame = pd.read_csv(path)
    ops = [c for c in frame.columns if c.startswith("time_stats.") and c.endswith(".median") and ".emb." not in c]
    held_out = np.random.default_rng(0).random(len(frame)) < 0.2
    errors = []
    for tp in sorted(frame["num_tensor_parallel_workers"].unique()):
        profile = VidurProfile.load(path, model_spec("llama-3-8b"), int(tp), rows=np.flatnonzero(~held_out))
        test = frame[held_out & (frame["num_tensor_parallel_workers"] == tp)]
        for tokens, actual_ms in zip(test["num_tokens"], test[ops].sum(axis=1)):
            errors.append(abs(profile.layer_time(tokens) * 1e3 - actual_ms) / actual_ms)
    assert len(errors) > 300
    assert np.mean(errors) <= 0.05  # MAPE


def test_profiled_backend_selected_by_config(shared_data):
    config = load_config(None, sets=["compute.backend=profiled", "model=llama-3-8b", "hardware.gpu=a100-80gb",
                                     f"compute.profile={shared_data / 'profiles' / 'vidur_a100_llama3_8b'}"])
    model = compute_model(config)
    assert model.name == "profiled"
    shape = StepShape()
    shape.add_prefill(2048, 0, samples=True)
    assert 0 < model.step_time(shape) < 1.0
