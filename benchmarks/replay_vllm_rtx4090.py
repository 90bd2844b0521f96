"""Prediction error of the RTX 4090 vLLM replay: TTFT, TPOT and E2E (mean, p50, p99), simulated vs measured.

Replays the measured vLLM 0.19 run (RTX 4090, Llama-3.1-8B, 300 ShareGPT requests; shared data folder)
with ``profiles/rtx4090_llama31_8b_vllm.yaml`` and prints each statistic and its signed error.
Definitions as ``tests/test_validation_vllm.py``. Run from the repository root::

    python benchmarks/replay_vllm_rtx4090.py [--shared PATH] [--set compute.skew_correction=always]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from sim.config import load_config
    from sim.serving.run import run_serving
    from trace.workload import load_workload

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override over the overlay, as main.py's --set")
    args = parser.parse_args()
    shared = Path(args.shared)
    run = shared / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm" / "requests.jsonl"
    rows = [json.loads(line) for line in run.read_text().splitlines() if line.strip()]
    measured = {
        "ttft": np.array([r["first_token_ts"] - r["queued_ts"] for r in rows]),
        "tpot": np.array([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1)
                          for r in rows if r["output_toks"] > 1]),
        "e2e": np.array([r["last_token_ts"] - r["queued_ts"] for r in rows]),
    }
    trace = shared / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    config = load_config(None, overlays=[REPO / "profiles" / "rtx4090_llama31_8b_vllm.yaml"],
                         sets=[f"workload.trace={trace}", *args.sets])
    _, requests = run_serving(load_workload(config), config, "single")
    simulated = {
        "ttft": requests.ttft,
        "tpot": requests.tpot[requests.output_tokens > 1],
        "e2e": requests.e2e,
    }
    stats = {"mean": np.mean, "p50": np.median, "p99": lambda x: np.percentile(x, 99)}
    print(f"{'metric':<6} {'stat':<5} {'measured_ms':>12} {'simulated_ms':>13} {'error':>8}")
    for metric in ("ttft", "tpot", "e2e"):
        for name, stat in stats.items():
            m, s = stat(measured[metric]) * 1e3, stat(simulated[metric]) * 1e3
            print(f"{metric:<6} {name:<5} {m:>12.1f} {s:>13.1f} {(s - m) / m:>+8.2%}")


if __name__ == "__main__":
    main()
