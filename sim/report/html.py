"""A self-contained HTML report (``--html PATH``): one file that opens offline.

Plots are embedded as base64 PNG, styles are inline, there is no script and no
external resource. Sections (each an element with an ``id``): summary, runs, plan or
sweep when present, plots, metrics, config, trace.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import yaml

from sim.report.document import answer_caveats, flatten, sweep_point_notes
from sim.report.output import atomic_write_text

# The runs table's columns, each shown where some run has it: the answer to the mode's question first
# (--plan: cost; --max-rate: the rate; --trace-stats: load and reuse ceiling), then latency, throughput and SLO.
KEY_METRICS = ("cost_usd_per_hour", "max_rate_rps", "max_rate_scale",
               "requests", "duration_s", "rate_mean_rps", "rate_peak_rps", "input_tokens.p50", "input_tokens.p99",
               "output_tokens.p50", "output_tokens.p99", "unique_blocks", "infinite_cache_hit_ratio",
               "infinite_cache_hit_ratio_serving",
               "requests_completed", "hit_ratio", "ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99",
               "e2e_s.p99", "throughput_tokens_per_s", "slo_attainment", "goodput_rps")

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: right; }
th { background: #eef; } td.l, th.l { text-align: left; }
tr.err td { background: #fee; } tr.chosen td { background: #efe; font-weight: bold; }
pre { background: #f6f6fa; padding: 1em; overflow: auto; font-size: .8em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #dde; }
figcaption { font-size: .85em; color: #555; }
div.wide { overflow-x: auto; max-width: 100%; }
ul.warn { background: #fff6e0; border-left: 4px solid #e0a000; padding: .5em 1em .5em 2em; font-size: .9em; }
td .ci { color: #555; font-size: .9em; white-space: nowrap; }
.small { font-size: .85em; color: #555; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):  # 4 significant digits, and whole numbers from 1,000 on (never 8.733e+04)
        return f"{value:.4g}" if abs(value) < 1e3 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):  # (an empty one, as a trace's skip_reasons with nothing skipped: "none", as the
        if not value:              # terminal says it, not a blank cell)
            return "none"
        return ", ".join(f"{html.escape(str(k))}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return html.escape(str(value))


class Cell(str):
    """Markup already built for a table cell (``_fmt`` would escape it)."""


def _table(header: list[str], rows: list[list[Any]], left: int = 1, row_classes: list[str] | None = None) -> str:
    """A table in a horizontally scrolling box: a wide one (many metrics) scrolls instead of running off the page."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="{"l" if i < left else ""}">{v if isinstance(v, Cell) else _fmt(v)}</td>'
                        for i, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _with_interval(value: Any, interval: list | None) -> Any:
    """A value and, under --seeds, its 95% interval beside it (the runs table shows means over the seeds)."""
    if not interval:
        return value
    return Cell(f'{_fmt(value)} <span class="ci">[{_fmt(interval[0])}, {_fmt(interval[1])}]</span>')


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _runs(report: dict) -> str:
    runs = report["runs"]
    flat = [flatten(r.get("metrics") or {}) for r in runs]
    keys = [k for k in KEY_METRICS if any(k in f for f in flat)]
    has_error = any(r.get("error") for r in runs)
    header = ["run", "overrides", *keys, *(["error"] if has_error else [])]
    rows = [[r["name"], r.get("overrides") or {},
             *(_with_interval(f.get(k), (r.get("metrics_ci95") or {}).get(k)) for k in keys),
             *([r.get("error")] if has_error else [])]
            for r, f in zip(runs, flat, strict=True)]
    note = ('<p class="small">--seeds: each value is the mean over the seeds, its 95% interval in brackets.</p>'
            if any(r.get("metrics_ci95") for r in runs) else "")
    # a sweep's notes as its terminal says them after the table; a run's, its answer's caveats
    said = (sweep_point_notes(report) if report.get("sweep")
            else [(r["name"], c) for r in runs for c in answer_caveats(r.get("metrics") or {})])
    caveats = [f"<li><b>{html.escape(name)}</b>: {html.escape(note)}</li>" for name, note in said]
    warn = f'<ul class="warn">{"".join(caveats)}</ul>' if caveats else ""
    return note + _table(header, rows, left=2, row_classes=["err" if r.get("error") else "" for r in runs]) + warn


def _metrics(report: dict) -> str:
    parts = []
    for run in report["runs"]:
        flat = flatten(run.get("metrics") or {})
        ci = run.get("metrics_ci95") or {}
        header = ["metric", "value", *(["95% interval"] if ci else [])]
        rows = [[k, v, *([f"[{_fmt(ci[k][0])}, {_fmt(ci[k][1])}]" if k in ci else None] if ci else [])]
                for k, v in flat.items()]
        parts.append(f"<details><summary>{html.escape(run['name'])} ({len(rows)} metrics)</summary>"
                     f"{_table(header, rows)}{_lists(run.get('metrics') or {})}</details>")
    return "".join(parts) or "<p>no runs</p>"


def _lists(metrics: dict, prefix: str = "") -> str:
    """A run's list metrics, which ``flatten`` leaves out: a list of records (``instances.each``: role, steps,
    busy_fraction, MFU ... per instance) as a table of its own, a row each; the rest (``timeseries``' columns, up to
    1,000 points each, drawn in the timelines plot; a miss-ratio curve) named with their lengths, in the JSON."""
    tables, series = [], []

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}.{key}" if name else key)
        elif isinstance(value, list):
            if value and all(isinstance(v, dict) for v in value):
                flat = [flatten(v) for v in value]
                columns = list(dict.fromkeys(k for f in flat for k in f))
                tables.append(f"<p><b>{html.escape(name)}</b> ({len(value):,} rows)</p>"
                              + _table(columns, [[f.get(k) for k in columns] for f in flat], left=0))
            else:
                series.append(f"{html.escape(name)} ({len(value):,})")

    walk({k: v for k, v in metrics.items() if k != "notes"}, prefix)  # (a run's notes: said under the runs table)
    listed = (f'<p class="small">lists in the JSON report only (values each): {", ".join(series)}</p>'
              if series else "")
    return "".join(tables) + listed


def _plots(plots: list[Path], undrawn: list[str] = ()) -> str:
    """The plots, embedded; ``undrawn``: a plot asked for and not drawn, each with why (in place of an empty frame)."""
    figures = [f'<p class="small">{html.escape(why)}</p>' for why in undrawn]
    for path in plots:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        name = html.escape(Path(path).name)
        figures.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>')
    return "".join(figures) or '<p class="small">no plots (run without --no-plot to draw them)</p>'


def _plan(plan: dict) -> str:
    out = [f"<p>target: {_fmt(plan['target'])}</p>"]
    chosen = plan.get("chosen")
    proof = plan.get("proof") or {}
    burst = (" — met as a burst, not at a sustained rate (its proof below)"
             if (proof.get("meets") or {}).get("steady_state") is False else "")
    out.append(f"<p><b>chosen:</b> {html.escape(chosen['name'])} at {chosen['cost_usd_per_hour']:.2f} USD/h{burst}</p>"
               if chosen else "<p><b>no candidate meets the target</b></p>")
    rows = [[role, p["name"], p["cost_usd_per_hour"], p.get("measured"), p.get("meets")]
            for role, p in proof.items() if p]
    # what "measured" is: the SLO attainment at the target rate (a rate target), else the hit ratio
    quantity = "SLO attainment" if plan["measure"] == "max_rate_rps" else "hit ratio"
    if rows:
        notes = [f"<li><b>{html.escape(role)}</b>: {html.escape(p['note'])}</li>"
                 for role, p in proof.items() if p and p.get("note")]
        out.append("<h3>runs that prove the boundary</h3>"
                   + _table(["role", "candidate", "USD/h", f"measured {quantity}", "meets"], rows, 2)
                   + (f'<ul class="warn">{"".join(notes)}</ul>' if notes else ""))
    cands = plan["candidates"]
    measure = plan["measure"]
    rows = [[c["name"], c["cost_usd_per_hour"], c.get(measure), c.get("status"), c.get("pareto"), c.get("reason")]
            for c in cands]  # the reason, as the printed plan gives it: why infeasible, pruned, or not sustained
    out.append("<h3>candidates</h3>" + _table(["candidate", "USD/h", measure, "status", "Pareto", "reason"], rows, 1,
                                              ["chosen" if c.get("chosen") else "" for c in cands]))
    return "".join(out)


def render_html(report: dict, plots: list[Path], title: str | None = None, cluster_pd: bool = False,
                undrawn: list[str] = ()) -> str:
    """The report document as one HTML page. ``cluster_pd``: a cluster run with prefill/decode pools
    (``--cluster --pd``), whose report's ``mode`` is ``cluster`` (Contract); its title and summary name PD too.
    The page leaves out the report's ``timing`` (wall time, peak memory: the JSON and the terminal give them), so the
    same config, trace and seed give the same bytes, as the JSON's other fields."""
    trace = report.get("trace") or {}
    mode = report.get("mode", "")
    title = title or f"kvsim {mode}{' PD' if cluster_pd else ''} report"
    shown_mode = f"{mode} (PD: --cluster --pd)" if cluster_pd else mode
    # --seeds: the trace's counts are means over the seeds (experiments/confidence.aggregate_trace), said as the
    # terminal says them (sim/report/console.py): 12.67 requests used was read as a count
    seeded = any("metrics_ci95" in run for run in report["runs"])
    means = '<p class="small">--seeds: the row counts are means over the seeds.</p>' if seeded else ""
    summary = _table(["item", "value"], [["mode", shown_mode], ["kvsim version", report.get("kvsim_version")],
                                ["runs", len(report["runs"])],
                                ["trace", trace.get("path") or trace.get("format")],
                                ["requests used (mean over the seeds)" if seeded else "requests used",
                                 trace.get("rows_used")]])
    sections = [_section("summary", "Summary", summary)]
    if report.get("plan"):
        sections.append(_section("plan", "Plan", _plan(report["plan"])))
    if report.get("sweep"):
        sweep = report["sweep"]
        sections.append(_section("sweep", "Sweep", _table(["item", "value"], [[k, v] for k, v in sweep.items()])))
    sections += [
        _section("runs", "Runs", _runs(report)),
        _section("plots", "Plots", _plots(plots, undrawn)),
        _section("metrics", "Metrics", _metrics(report)),
        _section("config", "Resolved configuration", f"<pre>{html.escape(yaml.safe_dump(report['config'], sort_keys=False))}</pre>"),
        _section("trace", "Trace provenance", means + _table(["field", "value"], [[k, v] for k, v in trace.items()])
                 if trace else "<p>none</p>"),
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n")


def write_html(report: dict, plots: list[Path], path: str | Path, cluster_pd: bool = False,
               undrawn: list[str] = ()) -> Path:
    return atomic_write_text(path, render_html(report, plots, cluster_pd=cluster_pd, undrawn=undrawn))
