"""Prediction error against a measured vLLM run: TTFT, TPOT and E2E (mean, p50, p99), simulated vs measured.

A measured run is a folder in LLMServingSim's ``bench/examples/<GPU>/<model>/`` layout: ``vllm/requests.jsonl``
(per request ``input_toks``, ``output_toks`` and monotonic ``queued_ts``, ``first_token_ts``,
``last_token_ts`` in seconds) and, when LLMServingSim replayed it too, ``validation/summary.txt`` — whose
prediction is then printed beside kvsim's, the peer's error next to ours. The run is replayed in single-node
mode with an overlay that states the engine (``profiles/rtx4090_llama31_8b_vllm.yaml`` is one) and the trace
the server was fed. Definitions as ``tests/test_validation_vllm.py``. Defaults: the bundled RTX 4090 run.
Run from the repository root::

    python benchmarks/replay_vllm.py [--run DIR --overlay YAML --trace JSONL] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data"
STATS = {"mean": np.mean, "p50": np.median, "p99": lambda x: np.percentile(x, 99)}
# validation/summary.txt row names (LLMServingSim's bench/validate.py) for each metric and statistic
PEER_ROWS = {("ttft", "mean"): "TTFT Mean", ("ttft", "p50"): "TTFT Median", ("ttft", "p99"): "TTFT P99",
             ("tpot", "mean"): "TPOT Mean", ("tpot", "p50"): "TPOT Median", ("tpot", "p99"): "TPOT P99",
             ("e2e", "mean"): "Latency Mean", ("e2e", "p50"): "Latency Median", ("e2e", "p99"): "Latency P99"}


def measured_latencies(requests_jsonl: Path) -> dict[str, np.ndarray]:
    """Seconds per request: TTFT = first − queued; TPOT over the tokens after the first; E2E = last − queued."""
    rows = [json.loads(line) for line in requests_jsonl.read_text().splitlines() if line.strip()]
    return {
        "ttft": np.array([r["first_token_ts"] - r["queued_ts"] for r in rows]),
        "tpot": np.array([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1)
                          for r in rows if r["output_toks"] > 1]),
        "e2e": np.array([r["last_token_ts"] - r["queued_ts"] for r in rows]),
    }


def peer_prediction(summary: Path) -> dict[tuple[str, str], float]:
    """LLMServingSim's own prediction (ms) from its ``summary.txt`` table (``Metric vLLM Sim Diff%``), if present."""
    if not summary.is_file():
        return {}
    rows = {}
    for line in summary.read_text().splitlines():
        match = re.match(r"^(\w+ \w+)\s+([\d.]+)\s+([\d.]+)\s+[-+]?[\d.]+%", line.strip())
        if match:
            rows[match.group(1)] = float(match.group(3))
    return {key: rows[name] for key, name in PEER_ROWS.items() if name in rows}


def main() -> None:
    from sim.config import load_config
    from sim.serving.run import run_serving
    from trace.workload import load_workload

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=SHARED / "validation" / "llmservingsim_rtx4090_llama31_8b",
                        help="the measured run's folder (holds vllm/requests.jsonl)")
    parser.add_argument("--overlay", type=Path, default=REPO / "profiles" / "rtx4090_llama31_8b_vllm.yaml",
                        help="calibration overlay stating the served engine (model, GPU, engine limits, profile)")
    parser.add_argument("--trace", type=Path, default=SHARED / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl",
                        help="the workload the server was fed")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override over the overlay, as main.py's --set")
    args = parser.parse_args()
    measured = measured_latencies(args.run / "vllm" / "requests.jsonl")
    peer = peer_prediction(args.run / "validation" / "summary.txt")
    config = load_config(None, overlays=[args.overlay], sets=[f"workload.trace={args.trace}", *args.sets])
    _, requests = run_serving(load_workload(config), config, "single")
    simulated = {"ttft": requests.ttft, "tpot": requests.tpot[requests.output_tokens > 1], "e2e": requests.e2e}
    print(f"{'metric':<6} {'stat':<5} {'measured_ms':>12} {'kvsim_ms':>10} {'error':>8}"
          + (f" {'llmservingsim_ms':>17} {'error':>8}" if peer else ""))
    for metric in ("ttft", "tpot", "e2e"):
        for name, stat in STATS.items():
            m, s = stat(measured[metric]) * 1e3, stat(simulated[metric]) * 1e3
            line = f"{metric:<6} {name:<5} {m:>12.1f} {s:>10.1f} {(s - m) / m:>+8.2%}"
            if (metric, name) in peer:
                line += f" {peer[metric, name]:>17.1f} {(peer[metric, name] - m) / m:>+8.2%}"
            print(line)


if __name__ == "__main__":
    main()
