"""Reports as in the Contract: a JSON document and a flat CSV with one row per run."""

from __future__ import annotations

import csv
import json
import math
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sim
from sim.config import Config
from sim.report.output import atomic_write

SCHEMA_VERSION = 1


@dataclass
class RunResult:
    """One simulated run (one policy, one override set) and its metrics."""

    name: str
    metrics: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    metrics_ci95: dict[str, list[float]] | None = None  # --seeds N: dotted metric -> [low, high]
    per_request: dict[str, np.ndarray] | None = field(default=None, repr=False)  # serving: for plots, not reports


def _plain(value: Any) -> Any:
    """numpy scalars/arrays → Python; NaN/inf → None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def build_report(mode: str, config: Config, trace: dict[str, Any] | None, runs: list[RunResult], wall_s: float) -> dict[str, Any]:
    """The report document; everything but ``timing`` is a function of config, trace and seed."""
    return _plain(
        {
            "schema_version": SCHEMA_VERSION,
            "kvsim_version": sim.__version__,
            "mode": mode,
            "config": config.to_dict(),
            "trace": trace,
            "runs": [run_entry(r) for r in runs],
            "timing": {"wall_s": wall_s, "peak_rss_bytes": peak_rss_bytes()},
        }
    )


def run_entry(run: RunResult) -> dict[str, Any]:
    """One run as the report lists it, JSON-ready (``metrics_ci95`` only with ``--seeds``)."""
    entry = {"name": run.name, "overrides": run.overrides, "metrics": run.metrics}
    if run.metrics_ci95 is not None:
        entry["metrics_ci95"] = run.metrics_ci95
    return _plain(entry)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics → ``{"ttft_s.p99": x}``."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            continue  # curves and per-request series live in the JSON only
        else:
            out[name] = value
    return out


# A serving run's ``prefix_cache`` metric where no block of its workload occurs twice (nothing can hit)
NO_REPEAT_PREFIX_CACHE = "off: no block repeats in this trace"


def no_repeat_note(block_ids: str) -> str:
    """What a hit ratio of a workload whose blocks never repeat says (nothing): printed beside a cache-only run's
    policies and a sweep's hit_ratio column."""
    return (f"no block of this workload repeats (block ids: {block_ids}): every policy at every capacity hits "
            "nothing; a token-count trace without sessions has no prefix reuse to study: replay one with hash_ids "
            "(Mooncake, Bailian) or sessions, or a synthetic one")


OVERLOAD_BACKLOG = 0.10  # a tenth of the requests still in the system when the last one arrives: a run still filling
# then (``still_filling``: a max-rate answer's or a plan's proof run), its arrivals and completions out of balance.
# The overload caveat judges the waiting line: its mean over the last quarter of the arrival window at least this many
# requests longer than over the first half. A queue that grows with the arrivals ends longer than it began; a steady
# one, or one that drains after a start-up burst, does not. The grid of tools/overload_grid.py (serving runs, each
# labelled by its own 4x and 16x longer twins) set the figure: a rise of one request sits between the steady runs and
# the overloaded ones there (README: Overload).
OVERLOAD_WAITING_RISE = 1.0
# Where the sequence slots bound the run (all of them full at some sample of the arrival window), the rise must also
# come with a waiting line that stays: non-empty in at least this share of the last quarter's samples. A stable
# queue's line empties often: in a single-server queue it is non-empty only while the server is busy and another
# waits, P(N >= 2) < rho (M/M/1: rho^2; M/D/1: rho - (1 - rho)(e^rho - 1), Pollaczek-Khinchine's distribution),
# so 9 in 10 is reached on average only from a load of ~0.95 (M/M/1) or ~0.96 (M/D/1); an overloaded one, its line
# grown, empties ever more rarely. (A continuous-batching server whose slots never fill meets an overload with a
# larger batch instead: its line is the per-step admission queue, which empties at steps overloaded or not.)
OVERLOAD_LINE_STAYS = 0.9


def answer_caveats(metrics: dict[str, Any]) -> list[str]:
    """What qualifies a run's answer, said beside it wherever the answer is shown (terminal, HTML, plots):
    ``--max-rate``'s note (no rate met the target, every rate did, or the rate is one burst, not sustained), an
    overloaded run's (``overload_caveat``), and the run's own ``notes`` (a list of sentences in its metrics)."""
    note = (metrics.get("max_rate_search") or {}).get("note")
    notes = metrics.get("notes")  # a run's own notes (``--cluster --pd``'s GPUs left without an instance)
    return ([f"max_rate_rps: {note}"] * bool(note) + [c for c in [overload_caveat(metrics)] if c]
            + ([n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []))


def sweep_point_notes(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(who, note) for what qualifies a sweep's points, said after its table on the terminal and under it in the
    HTML: each point's answer caveats, the points whose workload repeats no block (a hit_ratio column of zeros that
    says nothing of the cache) and those whose run skipped requests. "every point" where one note is all of theirs."""
    notes = [(run["name"], caveat) for run in report["runs"] for caveat in answer_caveats(run.get("metrics") or {})]
    notes += [(name, no_repeat_note(block_ids)) for name, block_ids in _not_repeating(report)]
    for name, trace in _skipping(report):  # requests a point's metrics leave out (an instance too small for them)
        reasons = ", ".join(f"{k}: {v:,}" for k, v in trace["skip_reasons"].items())
        notes.append((name, f"{trace['rows_skipped']:,} of {trace['rows_read']:,} requests skipped ({reasons}): "
                            f"{'their' if name == 'every point' else 'its'} metrics are the other "
                            f"{trace['rows_used']:,}'s"))
    return notes


def _not_repeating(report: dict) -> list[tuple[str, str]]:
    """(who, block ids) for the points whose workload repeats no block, so that nothing can hit: a serving run says
    so in its ``prefix_cache`` metric, a cache-only one by its trace's block ids ("unique": no two requests share
    one) and its hits; every point at once when all of them are such (one line, not one per point)."""
    runs = [r for r in report["runs"] if not r.get("error")]
    shared = report.get("trace") or {}

    def block_ids(run: dict) -> str | None:
        ids = (run.get("trace") or shared).get("block_ids") or "unknown"
        metrics = run.get("metrics") or {}
        if metrics.get("prefix_cache") == NO_REPEAT_PREFIX_CACHE:
            return ids
        return ids if report.get("mode") == "cache-only" and ids == "unique" and metrics.get("hits") == 0 else None

    found = [(r["name"], ids) for r in runs if (ids := block_ids(r)) is not None]
    if found and len(found) == len(runs) and len({ids for _, ids in found}) == 1:
        return [("every point", found[0][1])]
    return found


def _skipping(report: dict) -> list[tuple[str, dict]]:
    """(who, trace section) for the points whose run skipped requests: every point at once when none has a trace
    section of its own (the report's is all of theirs), else each point by its name."""
    runs = [r for r in report["runs"] if not r.get("error")]
    shared = report.get("trace") or {}
    if not any("trace" in r for r in runs):
        return [("every point", shared)] if runs and shared.get("rows_skipped") else []
    return [(r["name"], r.get("trace", shared)) for r in runs if r.get("trace", shared).get("rows_skipped")]


def _arrival_series(metrics: dict[str, Any], *names: str) -> tuple[np.ndarray, list[np.ndarray], int, int] | None:
    """The run's time series of arrivals, its columns ``names`` and the intervals of the first and last arrival;
    None without a series that has both (each column as long as the arrivals) and an arrival."""
    series = metrics.get("timeseries") or {}
    arrivals = np.asarray(series.get("arrivals", []), dtype=float)
    columns = [np.asarray(series.get(name, []), dtype=float) for name in names]
    if any(len(column) != len(arrivals) for column in columns) or not np.any(arrivals > 0):
        return None
    at = np.flatnonzero(arrivals > 0)
    return arrivals, columns, int(at[0]), int(at[-1])


def arrival_backlog(metrics: dict[str, Any]) -> tuple[int, int] | None:
    """(requests still queued or running at the end of the interval of the last arrival, a lower bound of those at
    the arrival itself; requests), from the run's time series; None without one."""
    found = _arrival_series(metrics, "completions")
    if found is None:
        return None
    arrivals, (completions,), _, last = found
    return int(np.sum(arrivals[: last + 1]) - np.sum(completions[: last + 1])), int(np.sum(arrivals))


def held_early(metrics: dict[str, Any]) -> float | None:
    """Mean requests in the system (queued or running) over the first half of the arrival window, sampled as
    ``waiting_trend`` samples the line: from the start of the first arrival's interval to the end of the last one's:
    what the run held as it went (Little's law: a steady state holds rate x mean time in system throughout); None
    without a time series. (Sampled at the interval ends alone, a burst within one interval had one sample, its
    whole backlog, and never passed the gate however far beyond the instances it was.)"""
    found = _arrival_series(metrics, "completions")
    if found is None:
        return None
    arrivals, (completions,), first, last = found
    held = np.concatenate([[0.0], np.cumsum(arrivals) - np.cumsum(completions)])[first: last + 2]
    return float(held[: max(1, len(held) // 2)].mean())


def waiting_trend(metrics: dict[str, Any]) -> tuple[float, float] | None:
    """(mean requests waiting over the first half of the arrival window, mean over its last quarter): the time
    series' ``queued`` (queued for admission; in PD also for decode memory or with their KV in transfer) sampled from
    the start of the first arrival's interval to the end of the last one's; None without two such samples."""
    found = _arrival_series(metrics, "queued")
    if found is None:
        return None
    _, (queued,), first, last = found
    window = queued[first: last + 2]  # the sample at an interval's end sees its events
    if len(window) < 2:
        return None
    return float(window[: max(1, len(window) // 2)].mean()), float(window[-max(1, len(window) // 4):].mean())


def line_stays(metrics: dict[str, Any]) -> bool:
    """Whether the waiting line stayed over the last quarter of the arrival window (``waiting_trend``'s samples):
    non-empty in ``OVERLOAD_LINE_STAYS`` of them, or the run's sequence slots (instances x ``max_num_seqs``) never
    all full in the window (then the line is no slot-bound server's queue, and whether it empties says nothing).
    True without the numbers (the rise test alone, as before)."""
    found = _arrival_series(metrics, "queued", "running")
    inst = metrics.get("instances") or {}
    count, seqs = inst.get("count"), inst.get("max_num_seqs")
    if found is None or not isinstance(count, int) or not isinstance(seqs, int):
        return True
    _, (queued, running), first, last = found
    window = slice(first, last + 2)
    if running[window].max() < count * seqs:
        return True
    line = queued[window]
    return bool(np.mean(line[-max(1, len(line) // 4):] > 0) >= OVERLOAD_LINE_STAYS)


def arrival_span_bound(metrics: dict[str, Any]) -> float | None:
    """An upper bound of the time from the first arrival to the last (to the end of the time-series interval of the
    last arrival), None without a time series."""
    series = metrics.get("timeseries") or {}
    arrivals = np.asarray(series.get("arrivals", []), dtype=float)
    interval = series.get("interval_s")
    if not np.any(arrivals > 0) or not isinstance(interval, (int, float)):
        return None
    return (int(np.flatnonzero(arrivals > 0)[-1]) + 1) * float(interval)


def steady_state_fits(metrics: dict[str, Any], in_system: float) -> bool | None:
    """Whether ``in_system`` requests could run at once (Little's law's steady state at the run's rate): no more than
    the instances' sequence slots (``max_num_seqs`` each), and their KV within the blocks, a request holding what a
    running one held on average over the run (the time series' KV in use over requests running: Little's law for
    block-seconds). None without the numbers."""
    inst = metrics.get("instances") or {}
    count, seqs = inst.get("count"), inst.get("max_num_seqs")
    series = metrics.get("timeseries") or {}
    running = np.asarray(series.get("running", []), dtype=float)
    usage = np.asarray(series.get("kv_usage", []), dtype=float)
    if len(running) != len(usage) or not np.any(running):
        return None
    share = float(usage.sum() / running.sum())  # a running request's mean share of all KV blocks over the run
    slots = count * seqs if isinstance(count, int) and isinstance(seqs, int) else None
    return (slots is None or in_system <= slots) and in_system * share <= 1.0


def still_filling(metrics: dict[str, Any]) -> tuple[int, int] | None:
    """(backlog, requests) when a tenth or more of the run's requests (``OVERLOAD_BACKLOG``) were still queued or
    running at its last arrival (``arrival_backlog``): its arrivals and completions did not balance, so its latencies
    are the run's length's, not a steady state's; else None."""
    backlog_total = arrival_backlog(metrics)
    if backlog_total is None or backlog_total[0] < OVERLOAD_BACKLOG * backlog_total[1]:
        return None
    return backlog_total


def overload_caveat(metrics: dict[str, Any]) -> str | None:
    """A run whose requests arrived faster than it served them: its queue grew until the arrivals stopped, so its
    latencies measure the trace's length, not a steady state a deployment would run in. Judged on the run's time
    series: more requests still queued or running at the end of the interval of the last arrival (a lower bound of
    those at the arrival itself) than it held on average over the first half of the arrivals (``held_early``: a
    steady state holds as many throughout, Little's law; a backlog growing at (rate - capacity) is past it however
    small a share of the requests), and the backlog growing across the arrivals -- seen, as the requests waiting
    (``waiting_trend``: in PD also for decode memory or with their KV crossing the link) over the last quarter of the
    arrival window averaging ``OVERLOAD_WAITING_RISE`` more than over its first half (a burst that drained is not a
    growing queue), the line staying there where the sequence slots bound the run (``line_stays``: a stable queue's
    line empties often, one that grows does not), or, where every request arrived within one mean E2E, projected by
    Little's law (a batch that grew with every arrival, whose steady state would not fit at once)."""
    ttft = (metrics.get("ttft_s") or {}).get("mean")
    backlog_total, held = arrival_backlog(metrics), held_early(metrics)
    if not ttft or not np.isfinite(ttft) or backlog_total is None or held is None:
        return None  # (no TTFT: no request completed)
    backlog, total = backlog_total
    found = _arrival_series(metrics)
    if found is not None and found[2] == found[3]:  # every arrival within one interval: a burst, no rate to exceed
        if steady_state_fits(metrics, total) is not False:
            return None  # (the series' halves and quarters of one interval are not a trend)
        interval = (metrics.get("timeseries") or {}).get("interval_s")
        return (f"overloaded: all {total:,} requests arrived at once (within {interval:.3g} s), more than the "
                "instances run at once (sequence slots, KV blocks): latencies measure the burst's queue and grow "
                "with its size (--max-rate finds the rate this deployment sustains)")
    if backlog <= held:
        return None
    trend = waiting_trend(metrics)
    span, e2e = arrival_span_bound(metrics), (metrics.get("e2e_s") or {}).get("mean")
    if trend is not None and trend[1] - trend[0] >= OVERLOAD_WAITING_RISE and line_stays(metrics):
        why = (f"the requests waiting grew across the arrivals ({trend[0]:,.1f} on average over their first half, "
               f"{trend[1]:,.1f} over their last quarter; queued, in PD also for decode memory or with their KV "
               "in transfer)")
    elif (total > 1 and span is not None and isinstance(e2e, (int, float)) and np.isfinite(e2e) and span <= e2e
          and steady_state_fits(metrics, total * e2e / span) is False):
        # Little's law (L = λW): a steady state at this rate would hold rate x mean E2E requests at once, more than
        # the run has; it never got there, and a longer trace at this rate holds more at once (a growing batch) --
        # an overload only where they would not fit at once (sequence slots, KV blocks): a light run shorter than
        # one lifetime (5 requests 1 s apart, each 6.7 s: ~8 at once) is short, not overloaded. One request has no
        # rate: the span bound is then one time-series interval (the run's length / ~1,000), and a lone request
        # was told it came "faster than served", ~700 at once
        why = (f"all arrived within one mean E2E ({span:.3g} s <= {e2e:.3g} s: a steady state at this rate holds "
               f"~{total * e2e / span:,.0f} at once, Little's law)")
    else:
        return None
    return (f"overloaded: at least {backlog:,} of {total:,} requests ({backlog / total:.0%}) were still queued or running when "
            f"the last arrived, more than the {held:,.1f} in the system on average over the first half of the "
            f"arrivals, and {why}: requests came faster than they were "
            "served, so latencies grow with the trace's length (--max-rate finds the rate this deployment sustains)")


def write_json(report: dict[str, Any], path: str | Path) -> None:
    with atomic_write(path) as fh:
        json.dump(report, fh, indent=2, allow_nan=False)
        fh.write("\n")


def write_csv(report: dict[str, Any], path: str | Path) -> None:
    rows = [{"name": run["name"], **flatten(run["metrics"])} for run in report["runs"]]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with atomic_write(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
