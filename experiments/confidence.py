"""Confidence intervals over repeated runs (``--seeds N``): means and Student-t 95% intervals.

A run repeated with seeds s, s+1, ..., s+N−1 gives N samples of every numeric metric;
the report keeps their mean in ``metrics`` and ``[mean − h, mean + h]`` in
``metrics_ci95`` with h = t(0.975, N−1) · sd / √N (sd with N−1 in the denominator).

The interval is symmetric, so with few seeds and a wide spread it can reach values a metric cannot take: its
lower bound is clipped at 0 for a metric that cannot be negative (every metric kvsim reports: latencies, rates,
counts, sizes, ratios), and the upper bound at 1 for a fraction of a whole (``AT_MOST_ONE``: hit ratios, SLO
attainment, busy and KV-usage fractions). ``clipped`` says which.

Dicts whose keys vary by run are aggregated over the union of their keys, by kind (``_mean_tree``): a count of events
a seed did not see is 0 there (``COUNTS_BY_KEY``, ``TRACE_COUNTS``); any other value a seed lacks (a ratio whose
denominator is 0 there, which the run omits) is undefined over the seeds and omitted, as a null one is null. Every
mean is over the sorted values, so the metrics do not depend on the seeds' order (names, notes and curves excepted:
the first run's).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from sim.report.document import RunResult

# The most seeds ``--seeds`` runs. Each seed is a whole simulation whose per-request values are kept until they
# are pooled, so the count bounds both time and memory; and at 1,000 seeds the interval is already tight:
# t(0.975, 999) is within 0.2% of the normal 1.960, and the half-width 1.962 sd / sqrt(1000) is 6% of one run's
# spread (sd), so more seeds buy almost nothing a user could act on.
MAX_SEEDS = 1_000


def t_critical(df: int) -> float:
    """t(0.975, df): the two-sided 95% critical value of Student's t with ``df`` degrees of freedom (scipy's inverse
    of the t distribution function, exact where a printed table has 3 decimals and interpolates between rows)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    from scipy.special import stdtrit  # (0.3 s to import: only a run over several seeds asks)

    return float(stdtrit(df, 0.975))


# Metrics that may be negative keep their interval's lower bound as computed: none of kvsim's reports has one (its
# metrics are latencies and durations between ordered events, rates, counts, sizes and ratios). A metric with a
# negative sample is kept as computed too, whatever its name.
SIGNED: tuple[str, ...] = ()
# Fractions of a whole, at most 1 by their definition (dotted names, fnmatch patterns, wherever in the metrics: a
# --max-rate bracket's too): hits over accesses (hit_ratio, token_hit_ratio, tier_hit_ratio.<tier>, and the cluster's
# per-location and per-rack ones), requests meeting the SLO over requests, busy time over the makespan, KV blocks held
# over the pool (sim/serving/utilization.py), a rack's EIC blocks held over its capacity (sim/cluster/run.py). MFU and
# MBU are measured against a datasheet peak, not bounded by definition: not clipped.
AT_MOST_ONE = ("*hit_ratio", "*hit_ratio.*", "*slo_attainment", "*.busy_fraction_mean", "*.kv_usage_mean",
               "*.kv_usage_peak", "*eic_occupancy.mean", "*eic_occupancy.max")


def clipped(name: str, values: list[float], bounds: list[float]) -> list[float]:
    """``bounds`` of the metric ``name`` held to the values it can take: not below 0 unless it may be negative
    (``SIGNED``, or a negative sample), not above 1 for a fraction of a whole (``AT_MOST_ONE``, every sample at most 1).
    The mean lies inside either way."""
    lo, hi = bounds
    if not any(fnmatchcase(name, p) for p in SIGNED) and min(values) >= 0:
        lo = max(lo, 0.0)
    if any(fnmatchcase(name, p) for p in AT_MOST_ONE) and max(values) <= 1:
        hi = min(hi, 1.0)
    return [lo, hi]


LARGE = 1e150  # values past it are scaled before their sum and squares (interval)


def interval(values: list[float]) -> tuple[float, list[float]]:
    """Mean and its 95% Student-t interval of ``values`` (at least two)."""
    v = np.asarray(values, dtype=np.float64)
    # in units of the largest magnitude: the sum and the squares of values past ~1e154 (a --max-rate answer over a
    # drawn rate of 1e300 req/s) overflowed, a RuntimeWarning and an infinite bound, where the interval is finite
    # (only there: elsewhere the same floats as ever, to the last bit)
    unit = float(np.abs(v).max()) if np.abs(v).max() > LARGE else 1.0
    mean = float((v / unit).mean()) * unit
    half = t_critical(len(v) - 1) * float((v / unit).std(ddof=1)) / math.sqrt(len(v)) * unit
    return mean, [mean - half, mean + half]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


# Counts of events a run reports only once they occur (dotted leaf names, fnmatch patterns, wherever in the metrics):
# one a seed lacks is a count of 0 in that seed, not a value it could not give. A router counts a decision's reason
# only once it happens (sim/cluster/routers.py ``_count``).
COUNTS_BY_KEY: tuple[str, ...] = ("cluster.router.decisions.*", "*.cluster.router.decisions.*")
# The same in the report's ``trace`` section (trace/request.py ``TraceProvenance.to_dict``): rows skipped by reason
# (a synthetic workload's admission skips differ by seed), and the truncated prompts and reordered rows it lists only
# when there are some.
TRACE_COUNTS: tuple[str, ...] = ("skip_reasons.*", "inputs_truncated", "rows_reordered")

_ABSENT = object()  # a key a seed's dict does not have


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def _natural(key: Any) -> tuple:
    """Numbers (rack ids are their digits) by value, before other keys by their text."""
    text = str(key)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _union_keys(dicts: list[dict]) -> list[Any]:
    """Every key of ``dicts``, in an order each dict's own order agrees with (a topological order of "comes after"
    in some dict; keys no dict orders against each other in ``_natural`` order), so the same whatever the dicts'
    order. Dicts that order two keys both ways (none of kvsim's): every key in ``_natural`` order."""
    import networkx as nx  # (only --seeds aggregates: not loaded on every run)

    follows = nx.DiGraph()
    for d in dicts:
        keys = list(d)
        follows.add_nodes_from(keys)
        follows.add_edges_from(zip(keys, keys[1:]))
    try:
        return list(nx.lexicographical_topological_sort(follows, key=_natural))
    except nx.NetworkXUnfeasible:
        return sorted(follows, key=_natural)


def _mean_tree(trees: list[dict], path: str, ci: dict[str, list[float]],
               counts: tuple[str, ...] = COUNTS_BY_KEY) -> dict:
    """Mean over the seeds of nested metric dicts, over the union of their keys whatever the seeds' order; CIs into
    ``ci``. A key some seed lacks: a count of 0 there where it is a count of events (``counts``), else a value
    that seed could not give (a rack no request reached has no hit ratio: the run omits it), so undefined over the
    seeds and omitted as the run omits it. A part some seed gave as None (a --max-rate bracket it did not find): None."""
    out = {}
    for key in _union_keys(trees):
        same = [t.get(key, _ABSENT) for t in trees]
        if _matches(f"{path}{key}", counts):
            same = [0 if s is _ABSENT else s for s in same]
        if any(s is _ABSENT for s in same):
            continue
        if all(isinstance(s, dict) for s in same):
            out[key] = _mean_tree(same, f"{path}{key}.", ci, counts)
        elif any(isinstance(s, dict) for s in same) and any(s is None for s in same):
            out[key] = None  # a part some seeds could not give (a --max-rate bracket): undefined, as a leaf is
        else:
            out[key] = _mean_leaf(same, f"{path}{key}", ci)
    return out


def _mean_leaf(values: list[Any], name: str, ci: dict[str, list[float]]) -> Any:
    """The mean of one metric's values over the seeds (sorted first, so the same float whatever their order) and its
    interval into ``ci``; undefined (None) where a seed's is; a value that is no number as in the first run."""
    numbers = [_is_number(v) for v in values]
    if any(numbers) and all(n or v is None for n, v in zip(numbers, values, strict=True)) and not all(numbers):
        return None  # a number some seeds could not give (None: undefined there): undefined over the seeds
    if not all(numbers):
        return values[0]  # names, notes, curves: as in the first run
    floats = sorted(float(v) for v in values)
    if not all(math.isfinite(f) for f in floats):
        return float(np.mean(floats))  # NaN (a seed's is undefined) or an infinity, whatever the seeds' order; no CI
    mean, bounds = interval(floats)
    ci[name] = clipped(name, floats, bounds)
    if all(isinstance(v, (int, np.integer)) for v in values) and len(set(values)) == 1:
        return values[0]  # an integer that did not vary stays an integer
    return mean


def aggregate(runs: list[RunResult], seeds: list[int] | None = None) -> RunResult:
    """One run from the same run repeated over seeds (``seeds``: each run's, for its notes; default 0, 1, ...): mean
    metrics, ``metrics_ci95``, pooled per-request values."""
    if len(runs) < 2:
        raise ValueError("an interval needs at least two runs")
    ci: dict[str, list[float]] = {}
    metrics = _mean_tree([r.metrics for r in runs], "", ci)
    _merge_search_caveats(metrics, runs, seeds if seeds is not None else list(range(len(runs))))
    per_request = None
    if all(r.per_request is not None for r in runs):
        per_request = {k: np.concatenate([r.per_request[k] for r in runs]) for k in runs[0].per_request}
    first = runs[0]
    # an override the seeds ran at different values of (--max-rate: each seed's answer, its rate scale) is their mean,
    # as the metrics measured there are; the first seed's alone sat beside the other seeds' means
    overrides = {key: value if all(r.overrides.get(key) == value for r in runs) else
                 _mean_leaf([r.overrides.get(key) for r in runs], key, {}) for key, value in first.overrides.items()}
    return RunResult(name=first.name, metrics=metrics, overrides=overrides,
                     metrics_ci95=ci, per_request=per_request)


def aggregate_trace(traces: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The report's ``trace`` section over the seeds: its counts (rows read, used and skipped, skips by reason) are
    means as the metrics are, a reason a seed did not skip for counting 0 there (``TRACE_COUNTS``); its names (path,
    format, block ids) are every seed's. The first seed's alone said nothing of the others' skips."""
    if any(t is None for t in traces):
        return traces[0]
    return _mean_tree(list(traces), "", {}, TRACE_COUNTS)


def _merge_search_caveats(metrics: dict[str, Any], runs: list[RunResult], seeds: list[int]) -> None:
    """``--max-rate``'s caveats over the seeds: every seed's ``note`` (no rate met the target, every rate did, a burst),
    named by its seed, and ``steady_state`` false when any seed's answer is not steady. The first seed's alone were kept
    (a note is a string, taken from the first run, and a key only later seeds had was dropped): a seed whose search met
    no rate was averaged into max_rate_scale as 0 and the report said nothing of it."""
    search = metrics.get("max_rate_search")
    if not isinstance(search, dict):
        return
    searches = [r.metrics.get("max_rate_search") or {} for r in runs]
    notes = [f"seed {seed}: {s['note']}" for seed, s in sorted(zip(seeds, searches, strict=True), key=lambda p: p[0])
             if s.get("note")]  # (by seed: the same note whatever the runs' order)
    search.pop("note", None)
    search.pop("steady_state", None)
    if notes:
        search["note"] = "; ".join(notes)
    if any(s.get("steady_state") is False for s in searches):
        search["steady_state"] = False
