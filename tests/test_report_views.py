"""What a user reads: the HTML report's tables hold the JSON report's numbers, and the plots draw what their
legends and labels say (read from matplotlib's artists, not from pixels)."""

from __future__ import annotations

import json
import math
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from sim.report.document import flatten
from sim.report.html import render_html
from tests.conftest import BUNDLED_AZURE

matplotlib.use("Agg")


class _Tables(HTMLParser):
    """Every table of a page as (section id, header cells, body rows of cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[str], list[list[str]]]] = []
        self.section = ""
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id", "")
        elif tag == "table":
            self.tables.append((self.section, [], []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            _, header, rows = self.tables[-1]
            (rows.append(self._row) if header else header.extend(self._row))
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str, section: str) -> list[tuple[list[str], list[list[str]]]]:
    parser = _Tables()
    parser.feed(page)
    return [(header, rows) for sid, header, rows in parser.tables if sid == section]


def _shown_equals(cell: str, value) -> bool:
    """A cell shows ``value`` to the page's precision: 4 significant digits, whole numbers from 1,000 on."""
    shown = float(cell.replace(",", ""))
    if isinstance(value, int) or abs(value) >= 1e3:
        return abs(shown - value) <= 0.5
    return math.isclose(shown, value, rel_tol=5e-4, abs_tol=0.0)


def _assert_runs_table_is_the_json(page: str, report: dict) -> list[str]:
    [(header, rows)] = _tables(page, "runs")
    assert header[:2] == ["run", "overrides"]
    metric_columns = header[2:]
    assert metric_columns, "a runs table with no metric column"
    for run, row in zip(report["runs"], rows, strict=True):
        flat = flatten(run["metrics"])
        assert row[0] == run["name"]
        for key, cell in zip(metric_columns, row[2:], strict=True):
            assert _shown_equals(cell.split(" [")[0], flat[key]), (run["name"], key, cell, flat[key])
    return metric_columns


def test_trace_stats_html_shows_the_statistics_the_json_holds(run_cli, tmp_path):
    # Before: the trace-stats runs table had no metric column at all (its metrics were none of the serving keys),
    # so the page's answer (rates, lengths, the reuse ceiling) was only in a collapsed list.
    page, report = tmp_path / "stats.html", tmp_path / "stats.json"
    status, _, err = run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "200",
                             "--no-plot", "--html", page, "--report-json", report, "--quiet")
    assert status == 0, err
    columns = _assert_runs_table_is_the_json(page.read_text(), json.loads(report.read_text()))
    assert {"requests", "rate_mean_rps", "rate_peak_rps", "input_tokens.p99", "infinite_cache_hit_ratio"} <= set(columns)


def test_cache_only_html_runs_table_is_the_json(run_cli, tmp_path):
    page, report = tmp_path / "c.html", tmp_path / "c.json"
    status, _, err = run_cli("--cache-only", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "200",
                             "--policy", "lru,fifo", "--capacity-blocks", "300", "--no-plot", "--html", page,
                             "--report-json", report, "--quiet")
    assert status == 0, err
    columns = _assert_runs_table_is_the_json(page.read_text(), json.loads(report.read_text()))
    assert "hit_ratio" in columns


def _report(runs: list[dict], **extra) -> dict:
    return {"schema_version": 1, "kvsim_version": "test", "mode": "single", "config": {"seed": 0},
            "trace": {"path": "t.csv", "rows_used": 10}, "runs": runs, "timing": {"wall_s": 1.0}, **extra}


def test_large_floats_are_whole_numbers_not_scientific():
    # Before: 87,328.97 tokens was shown as "8.733e+04" (4 significant digits below 1e5).
    page = render_html(_report([{"name": "r", "overrides": {}, "metrics": {
        "requests": 10, "input_tokens": {"p50": 8873.0, "p99": 87328.97}, "rate_mean_rps": 0.123456}}]), [])
    [(header, [row])] = _tables(page, "runs")
    cells = dict(zip(header, row, strict=True))
    assert cells["input_tokens.p99"] == "87,329" and cells["input_tokens.p50"] == "8,873"
    assert cells["rate_mean_rps"] == "0.1235" and cells["requests"] == "10"


def test_seeds_runs_table_shows_each_mean_with_its_interval():
    # Before: under --seeds the runs table showed bare means; the intervals were only in the collapsed metric list.
    run = {"name": "single", "overrides": {}, "metrics": {"ttft_s": {"p99": 0.1059}, "hit_ratio": 0.5},
           "metrics_ci95": {"ttft_s.p99": [0.1051, 0.1068], "hit_ratio": [0.25, 0.75]}}
    page = render_html(_report([run]), [])
    [(header, [row])] = _tables(page, "runs")
    cells = dict(zip(header, row, strict=True))
    assert cells["ttft_s.p99"] == "0.1059 [0.1051, 0.1068]"
    assert cells["hit_ratio"] == "0.5 [0.25, 0.75]"
    assert "mean over the seeds, its 95% interval in brackets" in page


def test_plain_runs_table_has_no_interval_note():
    page = render_html(_report([{"name": "a", "overrides": {}, "metrics": {"hit_ratio": 0.5}}]), [])
    [(header, [row])] = _tables(page, "runs")
    assert row == ["a", "", "0.5"] and "95% interval" not in page


def test_plan_proof_table_names_what_was_measured():
    # Before: the proof table's column was "measured", which for a rate target is the SLO attainment at the target rate.
    plan = {"target": {"slo": {"ttft_s": 0.3}, "rate_rps": 40.0}, "measure": "max_rate_rps",
            "chosen": {"name": "big", "cost_usd_per_hour": 2.0},
            "proof": {"meets": {"name": "big", "cost_usd_per_hour": 2.0, "measured": 0.99, "meets": True},
                      "fails": {"name": "small", "cost_usd_per_hour": 1.0, "measured": 0.455, "meets": False}},
            "candidates": [{"name": "small", "cost_usd_per_hour": 1.0, "max_rate_rps": 17.5, "status": "timed"},
                           {"name": "big", "cost_usd_per_hour": 2.0, "max_rate_rps": 40.0, "status": "timed",
                            "chosen": True}]}
    page = render_html(_report([], plan=plan, mode="plan"), [])
    proof, candidates = _tables(page, "plan")
    assert proof[0] == ["role", "candidate", "USD/h", "measured SLO attainment", "meets"]
    assert proof[1] == [["meets", "big", "2", "0.99", "yes"], ["fails", "small", "1", "0.455", "no"]]
    hit_plan = {**plan, "measure": "hit_ratio", "target": {"hit_ratio": 0.25}}
    proof, _ = _tables(render_html(_report([], plan=hit_plan, mode="plan"), []), "plan")
    assert proof[0][3] == "measured hit ratio"


def test_wide_tables_scroll_inside_the_page():
    # Before: a plan's runs table (14 metric columns) ran off the right edge of the page, its last columns cut.
    page = render_html(_report([{"name": "a", "overrides": {}, "metrics": {"hit_ratio": 0.5}}]), [])
    assert page.count('<div class="wide"><table>') == page.count("<table>") > 0
    assert "div.wide { overflow-x: auto;" in page
