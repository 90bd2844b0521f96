"""Serving metrics: per-request records and their summary (TTFT, TPOT, ITL, E2E, breakdown, SLOs)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from sim.config import SLOConfig
from sim.errors import InputError
from sim.report.output import atomic_write
from trace.stats import distribution as summarize

BREAKDOWN = ("queue", "kv_load", "prefill", "kv_transfer", "first_decode")


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One request's life. Times are simulated seconds; the breakdown components sum to its TTFT:

    queue (arrival → first scheduled) + kv_load (cached prefix read from lower tiers) +
    prefill (first chunk → prefill done) + kv_transfer (prefill done → KV at the decode
    node; PD only) + first_decode (KV complete on the decoding node → first token; PD only,
    since an aggregated node samples the first token in the prefill's last step).
    """

    request_id: int
    arrival: float
    input_tokens: int
    output_tokens: int
    scheduled: float = math.nan
    kv_load: float = 0.0
    prefill_done: float = math.nan
    kv_ready: float = math.nan
    first_token: float = math.nan
    last_token: float = math.nan
    cached_tokens: int = 0  # prompt tokens served from the prefix cache at first admission
    preemptions: int = 0
    kv_transfer_bytes: int = 0
    instance: int = -1
    decode_instance: int = -1

    @property
    def ttft(self) -> float:
        return self.first_token - self.arrival

    @property
    def tpot(self) -> float:
        """Mean time per output token after the first (NaN for single-token outputs)."""
        if self.output_tokens <= 1:
            return math.nan
        return (self.last_token - self.first_token) / (self.output_tokens - 1)

    def breakdown(self) -> dict[str, float]:
        kv_ready = self.prefill_done if math.isnan(self.kv_ready) else self.kv_ready
        return {
            "queue": self.scheduled - self.arrival,
            "kv_load": self.kv_load,
            "prefill": self.prefill_done - self.scheduled - self.kv_load,
            "kv_transfer": kv_ready - self.prefill_done,
            "first_decode": self.first_token - kv_ready,
        }


def distribution(values: np.ndarray) -> dict[str, float]:
    """Latency summary: mean / p50 / p90 / p99 of the finite values (none: NaN, null in JSON)."""
    return summarize(values, (50, 90, 99), with_max=False, empty=math.nan)


def slo_pass(records: list[RequestRecord], slo: SLOConfig) -> np.ndarray | None:
    """Per request: meets every configured target. None when no target is configured.

    A request is judged only against targets that exist; a TPOT target cannot be judged
    on a single-token output, which then passes on TTFT alone.
    """
    if slo.ttft_s is None and slo.tpot_s is None:
        return None
    ok = np.ones(len(records), dtype=bool)
    if slo.ttft_s is not None:
        ok &= np.array([r.ttft <= slo.ttft_s for r in records], dtype=bool)
    if slo.tpot_s is not None:
        ok &= np.array([r.output_tokens <= 1 or r.tpot <= slo.tpot_s for r in records], dtype=bool)
    return ok


def serving_metrics(records: list[RequestRecord], itl: np.ndarray, slo: SLOConfig) -> dict[str, Any]:
    """The Contract's latency metrics for completed requests."""
    if not records:
        raise InputError("no request completed: nothing to report (is the trace empty?)")
    ttft = np.array([r.ttft for r in records])
    e2e = np.array([r.last_token - r.arrival for r in records])
    tpot = np.array([r.tpot for r in records])
    parts = {k: np.array([r.breakdown()[k] for r in records]) for k in BREAKDOWN}
    start = min(r.arrival for r in records)
    end = max(r.last_token for r in records)
    makespan = end - start
    output_tokens = sum(r.output_tokens for r in records)
    metrics: dict[str, Any] = {
        "requests_completed": len(records),
        "ttft_s": distribution(ttft),
        "tpot_s": distribution(tpot),
        "itl_s": distribution(itl),
        "e2e_s": distribution(e2e),
        "ttft_breakdown_s": {k: float(v.mean()) for k, v in parts.items()},
        "throughput_tokens_per_s": output_tokens / makespan if makespan > 0 else math.nan,  # generated tokens
        "total_throughput_tokens_per_s": (output_tokens + sum(r.input_tokens for r in records)) / makespan
        if makespan > 0 else math.nan,  # prompt + generated tokens, as some simulators report
        "makespan_s": makespan,
        "preemptions": sum(r.preemptions for r in records),
        "kv_transfer_s": distribution(parts["kv_transfer"]) if any(r.kv_transfer_bytes for r in records) else None,
        "kv_transfer_bytes": sum(r.kv_transfer_bytes for r in records),
    }
    if metrics["kv_transfer_s"] is None:
        del metrics["kv_transfer_s"]
    ok = slo_pass(records, slo)
    if ok is not None:
        metrics["slo_attainment"] = float(ok.mean())
        metrics["goodput_rps"] = float(ok.sum()) / makespan if makespan > 0 else math.nan
    return metrics


def request_columns(records: list[RequestRecord]) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT and E2E (s) and the TTFT breakdown as arrays (for plots and pooling seeds)."""
    columns = {
        "ttft_s": np.array([r.ttft for r in records]),
        "tpot_s": np.array([r.tpot for r in records]),
        "e2e_s": np.array([r.last_token - r.arrival for r in records]),
    }
    breakdowns = [r.breakdown() for r in records]
    for key in BREAKDOWN:
        columns[f"{key}_s"] = np.array([b[key] for b in breakdowns])
    return columns


def write_requests_csv(records: list[RequestRecord], path: str | Path) -> None:
    """One row per request: its timestamps, TTFT/TPOT/E2E and breakdown."""
    names = [f.name for f in fields(RequestRecord)]
    with atomic_write(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names + ["ttft_s", "tpot_s", "e2e_s"] + [f"{k}_s" for k in BREAKDOWN])
        for r in records:
            b = r.breakdown()
            writer.writerow([getattr(r, n) for n in names] + [r.ttft, r.tpot, r.last_token - r.arrival]
                            + [b[k] for k in BREAKDOWN])
