"""kvsim's default roofline against a published, measured vLLM V1 batch-1 decode on a GPU no profile covers."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import StepShape
from sim.serving.compute_backend import gpu_compute_model


def test_h100_batch1_decode_matches_vllm_021_measurement():
    """InferenceBench's concurrency sweep (yobitelcomm.github.io/bench/recipes/concurrency-sweep/: one H100-80GB-HBM3,
    vLLM 0.21.0, Llama-3.1-8B-Instruct fp16, concurrency 1): TPOT p50 6.48 ms. A chat prompt's KV of ~300 tokens is
    39 MB beside 16 GB of weights, so the step hardly depends on the exact prompt; kvsim 6.63 ms (+2.3%)."""
    config = load_config(None, sets=["hardware.gpu=h100-sxm", "model=llama-3.1-8b"])
    step = gpu_compute_model(config).step_time(StepShape.decode_batch(np.array([300])))
    assert step == pytest.approx(6.48e-3, rel=0.10)
