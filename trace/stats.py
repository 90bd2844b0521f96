"""Trace statistics and the reuse ceiling (``--trace-stats``)."""

from __future__ import annotations

import numpy as np

from trace.request import Trace

RATE_BIN_S = 10.0  # Contract: peak request rate over 10 s bins


def distribution(values: np.ndarray, percentiles: tuple[int, ...] = (50, 95, 99), with_max: bool = True,
                 empty: float = 0.0) -> dict[str, float]:
    """mean, the given percentiles (numpy linear) and optionally the max of the finite values;
    ``empty`` for every entry when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    keys = ["mean", *(f"p{p}" for p in percentiles), *(["max"] if with_max else [])]
    if len(v) == 0:
        return dict.fromkeys(keys, empty)
    stats = [v.mean(), *np.percentile(v, percentiles), *([v.max()] if with_max else [])]
    return {key: float(x) for key, x in zip(keys, stats, strict=True)}


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
