"""Trace statistics and the reuse ceiling (``--trace-stats``)."""

from __future__ import annotations

import numpy as np

from trace.request import Trace

RATE_BIN_S = 10.0  # Contract: peak request rate over 10 s bins


def distribution(values: np.ndarray) -> dict[str, float]:
    """mean / p50 / p95 / p99 / max (numpy linear percentiles)."""
    if len(values) == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    v = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"mean": float(v.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(v.max())}


def arrival_rate_bins(arrival_s: np.ndarray, bin_s: float = RATE_BIN_S) -> np.ndarray:
    """Requests per second in consecutive ``bin_s`` bins from the first arrival."""
    if len(arrival_s) == 0:
        return np.zeros(0)
    counts = np.bincount((np.asarray(arrival_s) // bin_s).astype(np.int64))
    return counts / bin_s


def trace_stats(trace: Trace) -> dict[str, object]:
    """The Contract's ``--trace-stats`` metrics for one trace."""
    n = len(trace)
    duration = float(trace.arrival_s[-1] - trace.arrival_s[0]) if n else 0.0
    accesses = trace.num_accesses
    rates = arrival_rate_bins(trace.arrival_s)
    return {
        "requests": n,
        "duration_s": duration,
        "rate_mean_rps": n / duration if duration > 0 else 0.0,
        "rate_peak_rps": float(rates.max()) if len(rates) else 0.0,
        "input_tokens": distribution(trace.input_tokens),
        "output_tokens": distribution(trace.output_tokens),
        "accesses": accesses,
        "unique_blocks": trace.num_unique_blocks,
        # An infinite cache misses each distinct block once (its first use) and hits every reuse.
        "infinite_cache_hit_ratio": (accesses - trace.num_unique_blocks) / accesses if accesses else 0.0,
    }
