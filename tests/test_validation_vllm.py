"""Against a real server: replay a measured vLLM 0.19 run (RTX 4090, Llama-3.1-8B, 300 ShareGPT requests)
with the LLMServingSim profile bundle it was calibrated with; TTFT, TPOT and latency within 5%."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.run import run_serving
from tests.conftest import ROOT

OVERLAY = ROOT / "profiles" / "rtx4090_llama31_8b_vllm.yaml"


def _measured(shared_data):
    path = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm" / "requests.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # definitions from the data README: TTFT = first - queued; TPOT over tokens after the first; latency = last - queued
    ttft = np.array([r["first_token_ts"] - r["queued_ts"] for r in rows])
    tpot = np.array([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1) for r in rows if r["output_toks"] > 1])
    latency = np.array([r["last_token_ts"] - r["queued_ts"] for r in rows])
    return {"ttft": ttft, "tpot": tpot, "latency": latency}


def test_replay_matches_measured_vllm_within_5_percent(shared_data):
    from trace.workload import load_workload

    trace_path = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    config = load_config(None, overlays=[OVERLAY], sets=[f"workload.trace={trace_path}"])
    trace = load_workload(config)
    assert trace.provenance.block_ids == "chained"  # real token ids give exact prefix sharing
    _, requests = run_serving(trace, config, "single")
    simulated = {
        "ttft": requests.ttft,
        "tpot": requests.tpot[requests.output_tokens > 1],
        "latency": requests.e2e,
    }
    measured = _measured(shared_data)
    assert len(measured["ttft"]) == len(simulated["ttft"]) == 300
    for metric in ("ttft", "tpot", "latency"):
        for stat in (np.mean, np.median, lambda x: np.percentile(x, 99)):
            assert stat(simulated[metric]) == pytest.approx(stat(measured[metric]), rel=0.05), metric


def test_the_engine_read_from_meta_json_is_the_hand_written_overlay(shared_data, tmp_path):
    """benchmarks/replay_vllm.py states a measured run's engine from its vllm/meta.json; for the bundled run that
    is the engine profiles/rtx4090_llama31_8b_vllm.yaml was written to state (model, GPU, engine limits, KV)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_vllm", ROOT / "benchmarks" / "replay_vllm.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    run = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b"
    overlay = tmp_path / "engine.yaml"
    bundle = shared_data / "profiles" / "llmservingsim_rtx4090_llama31_8b"
    overlay.write_text(json.dumps(replay.engine_overlay(run, bundle)))
    derived, written = load_config(None, overlays=[overlay]), load_config(None, overlays=[OVERLAY])
    assert (derived.model, derived.hardware, derived.cache) == (written.model, written.hardware, written.cache)
    assert derived.serving == written.serving
    assert Path(derived.compute.profile).resolve() == Path(written.compute.profile).resolve()
