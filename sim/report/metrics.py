"""Serving metrics: per-request columns and their summary (TTFT, TPOT, ITL, E2E, breakdown, SLOs).

A run keeps one ``RequestTable`` (a numpy column per field, indexed by request id) instead
of an object per request, and its inter-token latencies as ``WeightedSamples`` (each
distinct gap once, with the number of tokens that saw it) instead of a float per token:
every token produced in one step shares that step's gap, so the memory grows with the
distinct gaps, not with the tokens, and the percentiles stay exact.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sim.config import SLOConfig
from sim.errors import InputError, UnreadSetting
from sim.report.output import atomic_write
from trace.stats import distribution as summarize

BREAKDOWN = ("queue", "kv_load", "prefill", "kv_transfer", "first_decode")
PERCENTILES = (50, 90, 99)

# name -> (dtype, value before it is known). Times are simulated seconds.
REQUEST_COLUMNS: dict[str, tuple[type, float | int]] = {
    "arrival": (np.float64, math.nan),
    "input_tokens": (np.int64, 0),
    "output_tokens": (np.int64, 0),
    # taken in by its (first) instance's engine: at arrival when it is idle, else when the step in flight ends
    # (vLLM's engine core reads new requests between steps: its RequestStateStats.queued_ts)
    "queued": (np.float64, math.nan),
    "scheduled": (np.float64, math.nan),  # first admitted to a batch (vLLM's SCHEDULED event)
    "kv_load": (np.float64, 0.0),  # seconds loading the cached prefix from lower tiers in its first step
    # cluster: seconds its KV connector loaded the prefix before it was scheduled (vLLM's WAITING_FOR_REMOTE_KVS)
    "fetch": (np.float64, 0.0),
    "prefill_done": (np.float64, math.nan),
    # PD: KV sent to a decode instance, once one had memory for it (and, under pull, a sequence slot)
    "kv_sent": (np.float64, math.nan),
    "kv_ready": (np.float64, math.nan),  # PD: KV arrived at the decode instance
    "first_token": (np.float64, math.nan),
    "last_token": (np.float64, math.nan),
    "cached_tokens": (np.int64, 0),  # prompt tokens served from the prefix cache at first admission
    "preemptions": (np.int32, 0),
    "kv_transfer_bytes": (np.int64, 0),
    "instance": (np.int32, -1),
    "decode_instance": (np.int32, -1),
}


class RequestTable:
    """Every request's life as columns indexed by request id. The breakdown components sum to
    its TTFT:

    queue (arrival → first scheduled, less a cluster's fetch before it; in PD also prefill done → KV sent, the wait
    for a decode instance's memory) + kv_load (cached prefix read from lower tiers or, in a cluster, loaded from
    other locations: the fetch before scheduling and the loads in its first step) + prefill (first chunk → prefill
    done) + kv_transfer (KV sent → KV at the decode node, the link's time; PD only) + first_decode (KV complete on
    the decoding node → first token; PD only, since an aggregated node samples the first token in the prefill's
    last step).
    """

    arrival: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    queued: np.ndarray
    scheduled: np.ndarray
    kv_load: np.ndarray
    fetch: np.ndarray
    prefill_done: np.ndarray
    kv_sent: np.ndarray
    kv_ready: np.ndarray
    first_token: np.ndarray
    last_token: np.ndarray
    cached_tokens: np.ndarray
    preemptions: np.ndarray
    kv_transfer_bytes: np.ndarray
    instance: np.ndarray
    decode_instance: np.ndarray

    def __init__(self, arrival: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray):
        n = len(arrival)
        for name, (dtype, initial) in REQUEST_COLUMNS.items():
            setattr(self, name, np.full(n, initial, dtype=dtype))
        self.arrival[:] = arrival
        self.input_tokens[:] = input_tokens
        self.output_tokens[:] = output_tokens

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def ttft(self) -> np.ndarray:
        return self.first_token - self.arrival

    @property
    def tpot(self) -> np.ndarray:
        """Mean time per output token after the first (NaN for single-token outputs)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = (self.last_token - self.first_token) / (self.output_tokens - 1)
        return np.where(self.output_tokens > 1, tpot, math.nan)

    @property
    def e2e(self) -> np.ndarray:
        return self.last_token - self.arrival

    def breakdown(self) -> dict[str, np.ndarray]:
        kv_ready = np.where(np.isnan(self.kv_ready), self.prefill_done, self.kv_ready)
        kv_sent = np.where(np.isnan(self.kv_sent), self.prefill_done, self.kv_sent)
        return {  # (waiting for decode memory is queueing, not the link's time: more bandwidth does not shorten it)
            "queue": self.scheduled - self.arrival - self.fetch + (kv_sent - self.prefill_done),
            "kv_load": self.fetch + self.kv_load,
            "prefill": self.prefill_done - self.scheduled - self.kv_load,
            "kv_transfer": kv_ready - kv_sent,
            "first_decode": self.first_token - kv_ready,
        }


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pandas.factorize(values, use_na_sentinel=False)`` of a float array, in numpy: each value's code and the
    distinct values in order of first appearance (NaNs are one value; 0.0 and -0.0 one, as the first seen).
    numpy's ``unique`` sorts stably, so each distinct value's index is its first appearance; ranking those
    indexes gives pandas' order."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], values[first[order]]


class WeightedSamples:
    """Values with multiplicities; equal values are merged as they accumulate (memory grows with
    the distinct values). Summaries are exact: the same as over the expanded sample."""

    def __init__(self, compact_at: int = 1 << 17) -> None:
        self.compact_at = compact_at  # pending entries before equal values are merged (at least as many as merged ones)
        self._values: list[float] = []
        self._counts: list[int] = []
        self._chunks: list[tuple[np.ndarray, int, int, int]] = []
        self._chunked = 0
        self._merged = (np.empty(0), np.empty(0, dtype=np.int64))
        self._limit = compact_at

    def add(self, value: float, count: int = 1) -> None:
        self._values.append(value)
        self._counts.append(count)
        if len(self._values) >= self._limit:
            self._compact()

    def add_steps(self, times: np.ndarray, steps: int, count: int, first_count: int) -> None:
        """The first ``steps`` of ``times``: ``count`` times each, the first one ``first_count`` times
        (a decode window: every request sees each step's duration, but a request's first token has
        no gap before it)."""
        if steps <= 0:  # (no step: nothing to add; its first-step slot would be the next chunk's)
            return
        self._chunks.append((times, steps, count, first_count))
        self._chunked += steps
        if self._chunked >= self._limit:
            self._compact()

    def _compact(self) -> None:
        """Merge equal values; the next merge waits for as many new entries as there are distinct
        values, so merging costs O(1) amortised per entry and memory stays within twice the distinct."""
        chunks = self._chunks
        steps = np.array([c[1] for c in chunks], dtype=np.int64)
        chunk_counts = np.repeat(np.array([c[2] for c in chunks], dtype=np.int64), steps)
        chunk_counts[np.cumsum(steps) - steps] = [c[3] for c in chunks]
        values = np.concatenate([self._merged[0], np.array(self._values, dtype=np.float64),
                                 *(times[:k] for times, k, _, _ in chunks)])
        counts = np.concatenate([self._merged[1], np.array(self._counts, dtype=np.int64), chunk_counts])
        codes, unique = factorize(values)
        merged = np.bincount(codes, weights=counts, minlength=len(unique))
        self._merged = (unique, merged.astype(np.int64))  # counts stay exact below 2**53
        self._values, self._counts, self._chunks, self._chunked = [], [], [], 0
        self._limit = max(self.compact_at, len(unique))

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values in increasing order and how many times each occurred (zero counts dropped)."""
        self._compact()
        values, counts = self._merged
        order = np.argsort(values, kind="stable")
        keep = order[counts[order] > 0]
        return values[keep], counts[keep]

    def distribution(self, percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, float]:
        return weighted_distribution(*self.sorted(), percentiles)


def weighted_distribution(values: np.ndarray, counts: np.ndarray,
                          percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, float]:
    """mean and percentiles of a sample given as sorted distinct finite ``values`` and their ``counts``,
    exactly as numpy's default (linear) percentile of the expanded sample computes them."""
    keys = ["mean", *(f"p{p}" for p in percentiles)]
    finite = np.isfinite(values)
    values, counts = values[finite], counts[finite]
    n = int(counts.sum())
    if n == 0:
        return dict.fromkeys(keys, math.nan)
    ends = np.cumsum(counts)  # the expanded sample's index of each value's last copy, plus one
    # the products (each rounded once) summed exactly (math.fsum): no summation order, so no machine, changes it;
    # np.dot went through BLAS, whose threads (the core count, OMP_NUM_THREADS: a Ray worker runs one) and CPU kernel
    # chose the order, so one config gave another last digit elsewhere
    out = {"mean": math.fsum(np.multiply(values, counts, dtype=np.float64)) / n}
    for p, q in zip(percentiles, np.true_divide(percentiles, 100).tolist(), strict=True):
        virtual = (n - 1) * q
        below = math.floor(virtual)
        a, b = (float(values[int(np.searchsorted(ends, i, side="right"))]) for i in (below, min(below + 1, n - 1)))
        t = virtual - below
        diff = b - a  # numpy's _lerp, term by term
        out[f"p{p}"] = b - diff * (1 - t) if t >= 0.5 else a + diff * t
    return out


def histogram_distribution(histograms: list[dict[int, int]]) -> dict[str, float]:
    """mean / p50 / p90 / p99 / max of a sample given as value -> count histograms (added together)."""
    total: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            total[value] = total.get(value, 0) + count
    values = np.array(sorted(total), dtype=np.float64)
    summary = weighted_distribution(values, np.array([total[v] for v in sorted(total)], dtype=np.int64))
    summary["max"] = float(values[-1]) if len(values) else math.nan
    return summary


def distribution(values: np.ndarray) -> dict[str, float]:
    """Latency summary: mean / p50 / p90 / p99 of the finite values (none: NaN, null in JSON)."""
    return summarize(values, PERCENTILES, with_max=False, empty=math.nan)


def slo_pass(table: RequestTable, slo: SLOConfig) -> np.ndarray | None:
    """Per request: meets every configured target. None when no target is configured.

    A request is judged only against targets that exist; a TPOT target cannot be judged
    on a single-token output, which then passes on TTFT alone.
    """
    if slo.ttft_s is None and slo.tpot_s is None:
        return None
    ok = np.ones(len(table), dtype=bool)
    if slo.ttft_s is not None:
        ok &= table.ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= (table.output_tokens <= 1) | (table.tpot <= slo.tpot_s)
    return ok


def check_tpot_target_read(output_tokens: np.ndarray, slo: SLOConfig, source: str) -> None:
    """A TPOT target is judged on requests of two or more output tokens (``slo_pass``): where the workload (``source``)
    has none, every request passes it, slo_attainment is 1 and --max-rate searches a rate against nothing. Refused
    when the run finds it, as the other settings a workload leaves unread are (``UnreadSetting``)."""
    if slo.tpot_s is not None and len(output_tokens) and not (np.asarray(output_tokens) > 1).any():
        raise UnreadSetting(f"config key 'slo.tpot_s'={slo.tpot_s:g} changes nothing: no request of {source} generates "
                            "more than one token, so none has a TPOT to judge", "slo.tpot_s", None)


def serving_metrics(table: RequestTable, itl: WeightedSamples, slo: SLOConfig) -> dict[str, Any]:
    """The Contract's latency metrics for completed requests."""
    if len(table) == 0:
        raise InputError("no request completed: nothing to report (is the trace empty?)")
    parts = table.breakdown()
    makespan = float(table.last_token.max() - table.arrival.min())
    output_tokens = int(table.output_tokens.sum())
    transferred = int(table.kv_transfer_bytes.sum())
    metrics: dict[str, Any] = {
        "requests_completed": len(table),
        "ttft_s": distribution(table.ttft),
        "tpot_s": distribution(table.tpot),
        "itl_s": itl.distribution(),
        "e2e_s": distribution(table.e2e),
        "ttft_breakdown_s": {k: float(v.mean()) for k, v in parts.items()},
        "throughput_tokens_per_s": output_tokens / makespan if makespan > 0 else math.nan,  # generated tokens
        "total_throughput_tokens_per_s": (output_tokens + int(table.input_tokens.sum())) / makespan
        if makespan > 0 else math.nan,  # prompt + generated tokens, as some simulators report
        "makespan_s": makespan,
        "preemptions": int(table.preemptions.sum()),
    }
    if table.kv_transfer_bytes.any():
        metrics["kv_transfer_s"] = distribution(parts["kv_transfer"])
    metrics["kv_transfer_bytes"] = transferred
    ok = slo_pass(table, slo)
    if ok is not None:
        metrics["slo_attainment"] = float(ok.mean())
        metrics["goodput_rps"] = float(ok.sum()) / makespan if makespan > 0 else math.nan
    return metrics


def request_columns(table: RequestTable) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT and E2E (s) and the TTFT breakdown as arrays (for plots and pooling seeds)."""
    columns = {"ttft_s": table.ttft, "tpot_s": table.tpot, "e2e_s": table.e2e}
    columns.update({f"{key}_s": values for key, values in table.breakdown().items()})
    return columns


def write_requests_csv(table: RequestTable, path: str | Path) -> None:
    """One row per request: its timestamps, TTFT/TPOT/E2E and breakdown. Written as pandas' ``DataFrame.to_csv(
    index=False, lineterminator="\\n", na_rep="nan")`` wrote it, byte for byte: each value is numpy's ``astype(str)``
    (pandas' own formatting of int and float columns: ``get_values_for_csv``; a NaN is ``nan`` either way) and no
    value holds a comma or quote to escape. Without pandas: importing it was ~0.25 s of a run that asks for this file.
    Formatted ``REQUESTS_CSV_CHUNK`` rows at a time, as pandas did (its chunksize): all rows' texts at once were ~2 GB
    of Python strings for a million requests."""
    columns = {"request_id": np.arange(len(table)), **{name: getattr(table, name) for name in REQUEST_COLUMNS},
               **request_columns(table)}
    arrays = []
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind not in "iuf":  # (every column is a number: REQUEST_COLUMNS' dtypes, request_columns)
            raise TypeError(f"requests CSV column {name}: {values.dtype} is not a number")
        arrays.append(values)
    with atomic_write(path) as fh:
        fh.write(",".join(columns) + "\n")
        for start in range(0, len(table), REQUESTS_CSV_CHUNK):
            texts = [values[start:start + REQUESTS_CSV_CHUNK].astype(str).tolist() for values in arrays]
            fh.writelines(",".join(row) + "\n" for row in zip(*texts))


REQUESTS_CSV_CHUNK = 4096  # rows formatted at once: a few MB of text, as fast as all at once (tests shrink it)
