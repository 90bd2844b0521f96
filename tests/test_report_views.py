"""What a user reads: the HTML report's tables hold the JSON report's numbers, and the plots draw what their
legends and labels say (read from matplotlib's artists, not from pixels)."""

from __future__ import annotations

import json
import math
import warnings
from html.parser import HTMLParser

import matplotlib
import pytest

from sim.report.document import RunResult, flatten
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
        ci = run.get("metrics_ci95") or {}
        for key, cell in zip(metric_columns, row[2:], strict=True):
            shown, _, interval = cell.partition(" [")
            assert _shown_equals(shown, flat[key]), (run["name"], key, cell, flat[key])
            if key in ci:  # --seeds: "[lo, hi]" beside the mean
                lo, hi = interval.rstrip("]").split(", ")
                assert _shown_equals(lo, ci[key][0]) and _shown_equals(hi, ci[key][1]), (key, cell, ci[key])
            else:
                assert not interval, (key, cell)
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


@pytest.mark.parametrize("flags", [["--pd", "--set", "slo.ttft_s=0.5"],
                                   ["--seeds", "2", "--set", "workload.arrivals.process=poisson"]], ids=["pd", "seeds"])
def test_serving_html_runs_table_is_the_json(run_cli, tmp_path, flags):
    page, report = tmp_path / "s.html", tmp_path / "s.json"
    status, _, err = run_cli(*flags, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "60", "--no-plot",
                             "--html", page, "--report-json", report, "--quiet")
    assert status == 0, err
    doc = json.loads(report.read_text())
    columns = _assert_runs_table_is_the_json(page.read_text(), doc)
    assert {"ttft_s.p50", "ttft_s.p99", "tpot_s.p99", "e2e_s.p99", "throughput_tokens_per_s"} <= set(columns)
    assert ("metrics_ci95" in doc["runs"][0]) == ("--seeds" in flags)


def _report(runs: list[dict], **extra) -> dict:
    return {"schema_version": 1, "kvsim_version": "test", "mode": "single", "config": {"seed": 0},
            "trace": {"path": "t.csv", "rows_used": 10}, "runs": runs, "timing": {"wall_s": 1.0}, **extra}


def test_the_metrics_section_shows_per_instance_lists_as_tables_and_no_blank_cells():
    """README: --html writes "every table". The metrics section flattened dicts only, so a --cluster --pd run's
    per-instance list (prefill busy 0.895 over 481 steps, decode 0.996 over 11,095: hexplore7) was in the JSON alone;
    it is a table, a row per instance, and the lists it cannot show (the time series) are named with their lengths.
    An empty dict (no skip reason, no override) was a blank cell; the terminal says "none", and so does the page."""
    each = [{"index": 0, "role": "prefill", "steps": 481, "busy_fraction": 0.8948},
            {"index": 1, "role": "decode", "steps": 11095, "busy_fraction": 0.996}]
    run = {"name": "r", "overrides": {}, "metrics": {"hit_ratio": 0.08, "instances": {"busy_mean": 0.95, "each": each},
                                                     "timeseries": {"t_s": [0.0, 0.4, 0.8], "queued": [0, 5, 3]}}}
    report = _report([run])
    report["trace"]["skip_reasons"] = {}
    page = render_html(report, [])
    tables = _tables(page, "metrics")
    [(header, rows)] = [t for t in tables if t[0][:2] == ["index", "role"]]
    assert header == ["index", "role", "steps", "busy_fraction"]
    assert rows == [["0", "prefill", "481", "0.8948"], ["1", "decode", "11,095", "0.996"]]
    assert "timeseries.t_s (3), timeseries.queued (3)" in page
    [(_, trace_rows)] = _tables(page, "trace")
    assert ["skip_reasons", "none"] in trace_rows
    [(_, run_rows)] = _tables(page, "runs")
    assert run_rows[0][:2] == ["r", "none"]
    for _, rows in _tables(page, "metrics") + _tables(page, "trace") + _tables(page, "runs"):
        assert all(cell.strip() for row in rows for cell in row)

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
    assert row == ["a", "none", "0.5"] and "95% interval" not in page


def test_wide_tables_scroll_inside_the_page():
    # Before: a plan's runs table (14 metric columns) ran off the right edge of the page, its last columns cut.
    page = render_html(_report([{"name": "a", "overrides": {}, "metrics": {"hit_ratio": 0.5}}]), [])
    assert page.count('<div class="wide"><table>') == page.count("<table>") > 0
    assert "div.wide { overflow-x: auto;" in page


# ---- plots: read the figure's artists before it is written and closed ----

def _legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_mrc_policy_points_with_equal_hit_ratios_all_stay_visible(figures, tmp_path):
    # Before: every policy point was a filled circle, so LRU's point at 500 blocks was hidden under ARC's (equal
    # hit ratio): the legend named a series the reader could not see.
    from sim.report.plots import plot_mrc

    curve = {"method": "exact", "capacity_blocks": [1, 10, 100, 1000], "hit_ratio": [0.0, 0.1, 0.3, 0.4]}
    runs = [{"name": "lru", "metrics": {"capacity_blocks": {"hbm": 500}, "hit_ratio": 0.35}},
            {"name": "arc", "metrics": {"capacity_blocks": {"hbm": 500}, "hit_ratio": 0.35}},
            {"name": "lru-mrc", "metrics": {"mrc": curve}}]
    plot_mrc(runs, tmp_path / "m.png", "t")
    [ax] = figures[0].axes
    assert _legend_labels(ax) == ["lru", "arc", "LRU (exact MRC)"]
    points = ax.collections
    assert [tuple(p.get_offsets()[0]) for p in points] == [(500, 0.35), (500, 0.35)]
    assert all(p.get_facecolor().size == 0 or p.get_facecolor()[0][3] == 0 for p in points)  # hollow: see-through
    assert len({p.get_paths()[0].vertices.tobytes() for p in points}) == 2  # a marker shape each


def _run(name: str, tiers: dict) -> RunResult:
    return RunResult(name=name, metrics={"tier_hit_ratio": tiers})


def test_tier_hits_legend_lists_the_drawn_tiers_and_bars_state_the_hit_ratio(figures, tmp_path):
    # Before: HBM, DRAM, SSD and EIC were always in the legend, even with no hits in three of them, and a hit
    # ratio of a few % was an unreadable sliver on the 0..1 axis.
    from sim.report.serving_plots import plot_tier_hits

    plot_tier_hits([_run("lru", {"hbm": 0.03, "dram": 0.0125, "ssd": 0.0, "eic": 0.0}),
                    _run("arc", {"hbm": 0.05, "dram": 0.0, "ssd": 0.0, "eic": 0.0})], tmp_path / "t.png", "cache-only")
    [ax] = figures[0].axes
    assert _legend_labels(ax) == ["HBM", "DRAM", "miss"]
    assert "no hits in SSD, EIC" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == ["hits 4.25%", "hits 5.00%"]  # 0.03 + 0.0125; 0.05
    assert ax.get_ylim() == (0.0, 1.0)  # the bar chart's axis still starts at zero


def test_tier_hits_with_no_hit_at_all_has_only_the_miss_series(figures, tmp_path):
    from sim.report.serving_plots import plot_tier_hits

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_tier_hits([_run("single", {"hbm": 0.0, "dram": 0.0, "ssd": 0.0, "eic": 0.0})], tmp_path / "t.png", "s")
    [ax] = figures[0].axes
    assert _legend_labels(ax) == ["miss"] and [t.get_text() for t in ax.texts] == ["hits 0.00%"]


def test_sweep_capacity_axis_is_labelled_at_the_swept_values(figures, tmp_path):
    # Before: the log axis carried matplotlib's minor labels (2x10^2, 3x10^2, 4x10^2, 6x10^2 ...) and not the
    # capacities actually run.
    from sim.report.sweep_plots import plot_hit_ratio_vs_capacity

    runs = [{"name": f"{p}/{c}", "overrides": {"cache.policy": p, "cache.capacity_blocks": c},
             "metrics": {"hit_ratio": h}}
            for p, c, h in (("lru", 200, 0.0), ("lru", 800, 0.1), ("lru", 3000, 0.2), ("arc", 200, 0.0),
                            ("arc", 800, 0.12), ("arc", 3000, 0.2))]
    plot_hit_ratio_vs_capacity(runs, ["cache.policy", "cache.capacity_blocks"], tmp_path / "h.png")
    [ax] = figures[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["200", "800", "3,000"]
    assert [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()] == []
    assert _legend_labels(ax) == ["lru", "arc"]


def test_sweep_plot_of_one_point_renders_without_warnings(figures, tmp_path):
    from sim.report.sweep_plots import plot_hit_ratio_vs_capacity

    runs = [{"name": "lru/500", "overrides": {"cache.policy": "lru", "cache.capacity_blocks": 500},
             "metrics": {"hit_ratio": 0.25}}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_hit_ratio_vs_capacity(runs, ["cache.policy", "cache.capacity_blocks"], tmp_path / "h.png")
    [ax] = figures[0].axes
    [line] = ax.get_lines()
    assert list(line.get_xdata()) == [500] and list(line.get_ydata()) == [0.25]


def test_pareto_legend_and_labels_cover_no_point_and_stay_on_the_figure(figures, tmp_path):
    # Before: the legend was placed inside the axes and covered the Pareto points of a hit-ratio plan, and the
    # label of the front's most expensive point ran off the axes' right edge.
    from sim.report.sweep_plots import plot_pareto

    cands = [{"name": "1x2x8xh100-sxm tp1 eic=0GiB", "cost_usd_per_hour": 196.64, "hit_ratio": 0.047, "pareto": True},
             {"name": "1x2x8xh100-sxm tp1 eic=64GiB", "cost_usd_per_hour": 196.65, "hit_ratio": 0.068, "pareto": True},
             {"name": "2x2x8xh100-sxm tp1 eic=0GiB", "cost_usd_per_hour": 393.3, "hit_ratio": 0.048},
             {"name": "2x2x8xh100-sxm tp1 eic=64GiB", "cost_usd_per_hour": 393.31, "hit_ratio": 0.3, "pareto": True,
              "chosen": True}]
    plot_pareto(cands, 0.25, tmp_path / "p.png", "hit_ratio", "block hit ratio")
    fig = figures[0]
    [ax] = fig.axes
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= frame.y0  # entirely below the plotting area
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and legend.y0 >= fig.bbox.y0  # not cut off
    labels = [t for t in ax.texts]
    assert [t.get_text() for t in labels] == [c["name"] for c in cands if c.get("pareto")]
    for label in labels:  # every label inside the axes, the right-hand one running leftwards
        box = label.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, label.get_text()
    assert _legend_labels(ax) == ["candidates", "Pareto front", "chosen: 2x2x8xh100-sxm tp1 eic=64GiB", "target 0.25"]



def test_a_plan_with_no_measured_candidate_draws_no_pareto_frame_and_its_page_says_why(figures, tmp_path):
    """hexplore7: plan_mooncake_tiers.yaml at 300 requests prunes all 9 candidates by the exact curve; the Pareto plot
    was an empty frame on a cost axis from -0.04 to +0.04 USD/h, embedded in the HTML. No candidate has a measure:
    no figure, no file, and the page says why where the plot would be."""
    from sim.report.html import render_html
    from sim.report.sweep_plots import plot_pareto

    cands = [{"name": f"1xh100 dram={g}GiB", "cost_usd_per_hour": 12.3 + g / 1e3, "hit_ratio": None,
              "status": "pruned"} for g in (0, 512)]
    assert plot_pareto(cands, 0.25, tmp_path / "p.png", "hit_ratio", "block hit ratio") is None
    assert figures == [] and not (tmp_path / "p.png").exists()
    why = "plan_pareto.png: no candidate ran to a hit_ratio (each pruned, infeasible or failed: the table says why)"
    page = render_html(_report([]), [], undrawn=[why])
    plots = page[page.index('<section id="plots">'):page.index('<section id="metrics">')]
    assert why in plots and "<img" not in plots and "run without --no-plot" not in plots


def test_a_lower_bound_max_rate_is_clipped_to_the_top_and_does_not_squash_the_others(figures, tmp_path):
    """A search that never failed answers its cap (hexplore7: 2xb200 6.7e8 req/s beside 60-680 req/s), and on a linear
    axis every other candidate lay on 0. The axis now runs to 1.15 x the largest exact value or the target (680 ->
    782), the lower bound drawn at its top as a triangle labelled with its value, the legend saying so."""
    from sim.report.sweep_plots import plot_pareto

    cands = [{"name": "1xh200", "cost_usd_per_hour": 13.0, "max_rate_rps": 60.0},
             {"name": "2xh200", "cost_usd_per_hour": 0.04, "max_rate_rps": 200.0, "pareto": True, "chosen": True},
             {"name": "1xb200", "cost_usd_per_hour": 14.0, "max_rate_rps": 680.0, "pareto": True},
             {"name": "2xb200", "cost_usd_per_hour": 28.0, "max_rate_rps": 6.7e8, "pareto": True, "lower_bound": True}]
    plot_pareto(cands, 40.0, tmp_path / "p.png", "max_rate_rps", "max rate (req/s)")
    [ax] = figures[0].axes
    assert ax.get_ylim() == pytest.approx((0.0, 680.0 * 1.15))
    assert "≥ 6.7e+08" in [t.get_text() for t in ax.texts]
    front = [line for line in ax.get_lines() if line.get_label() == "Pareto front"][0]
    assert list(front.get_ydata()) == pytest.approx([200.0, 680.0, 782.0])
    assert "lower bound: every rate tried met (clipped to the top, value beside it)" in _legend_labels(ax)


def test_a_plan_candidate_whose_search_never_failed_is_marked_a_lower_bound():
    """The plan's JSON marks a max rate no tried rate failed (``lower_bound``), which the plot draws so."""
    from experiments.plan_candidates import Candidate
    from experiments.planner import _candidate_entry

    def entry(fails):
        c = Candidate("b200", 2, 1, None, {}, name="2xb200", status="timed", measured=6.7e8)
        c.metrics = {"max_rate_search": {"meets": {"rate_scale": 1.0}, "fails": fails}}
        return _candidate_entry(c, "max_rate_rps")

    assert entry(None)["lower_bound"] is True and "lower_bound" not in entry({"rate_scale": 2.0})

# ---- --max-rate's caveat (no steady state, no rate met, every rate met) is said wherever the rate is shown ----

BURST = ("not a sustained rate: at 99.89 req/s the 100 requests arrive within one mean E2E (1.72 s; Little's law: "
         "171 in the system at once), one burst; replay more requests")


def _max_rate_run(name: str, rate: float, note: str | None) -> dict:
    search = {"target_attainment": 0.9, **({"note": note, "steady_state": False} if note else {})}
    return {"name": name, "overrides": {}, "metrics": {"max_rate_rps": rate, "max_rate_scale": rate / 2.0,
                                                       "max_rate_search": search}}


def test_max_rate_cli_summary_says_when_the_rate_is_one_burst(run_cli, tmp_path):
    # Before: the note lived only in the JSON (max_rate_search.note): the terminal printed max_rate_rps 118.97
    # for 200 requests that all arrive within one request's lifetime, with no word that it is not sustained.
    status, out, err = run_cli("--max-rate", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "100",
                               "--set", "slo.ttft_s=0.3", "--no-plot", "--report-json", tmp_path / "m.json")
    assert status == 0, err
    note = json.loads((tmp_path / "m.json").read_text())["runs"][0]["metrics"]["max_rate_search"]["note"]
    assert note.startswith("not a sustained rate")  # 100 requests replayed fast enough are one burst
    assert f"  ! max_rate_rps: {note}" in out.splitlines()


def test_html_runs_section_lists_the_max_rate_caveats():
    page = render_html(_report([_max_rate_run("a", 34.37, None), _max_rate_run("b", 99.89, BURST)]), [])
    assert '<ul class="warn"><li><b>b</b>: max_rate_rps: not a sustained rate: at 99.89 req/s' in page
    assert "<b>a</b>" not in page


def test_sweep_summary_prints_each_points_caveat(capsys):
    from experiments.sweep import _print_summary

    _print_summary({"runs": [_max_rate_run("1/lru", 34.37, None), _max_rate_run("2/lru", 99.89, BURST)]}, [])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"! 2/lru: max_rate_rps: {BURST}"
    assert not any(line.startswith("! 1/lru") for line in lines)


def test_max_rate_bars_of_a_burst_are_hatched_and_named_in_the_legend(figures, tmp_path):
    from sim.report.sweep_plots import plot_max_rate

    plot_max_rate([_max_rate_run("1/lru", 34.37, None), _max_rate_run("2/lru", 99.89, BURST)], ["x"], tmp_path / "m.png")
    [ax] = figures[0].axes
    bars = ax.patches
    assert [b.get_height() for b in bars] == [34.37, 99.89] and [b.get_hatch() for b in bars] == [None, "//"]
    assert _legend_labels(ax) == ["sustained", "not sustained: the run is one burst (replay more requests)"]
    assert ax.get_ylim()[0] == 0.0
    legend = ax.get_legend().get_window_extent()
    assert all(not legend.overlaps(b.get_window_extent()) for b in bars)  # the legend covers no bar


def test_max_rate_bars_without_caveat_have_no_legend(figures, tmp_path):
    from sim.report.sweep_plots import plot_max_rate

    plot_max_rate([_max_rate_run("1/lru", 34.37, None)], ["x"], tmp_path / "m.png")
    [ax] = figures[0].axes
    assert ax.get_legend() is None and [b.get_hatch() for b in ax.patches] == [None]


def _breakdown(name: str, **parts) -> RunResult:
    full = {"queue": 0.0, "kv_load": 0.0, "prefill": 0.0, "kv_transfer": 0.0, "first_decode": 0.0, **parts}
    return RunResult(name=name, metrics={"ttft_breakdown_s": full})


def test_ttft_breakdown_bars_state_their_total_and_the_legend_covers_none(figures, tmp_path):
    # Before: the legend sat inside the axes over the bars (over the queue segment of a cluster run), no bar said
    # its total, and parts that were zero everywhere (kv load, kv transfer, first decode off PD) were listed anyway.
    from sim.report.serving_plots import plot_ttft_breakdown

    plot_ttft_breakdown([_breakdown("a", queue=0.002, prefill=0.020),
                         _breakdown("b", queue=0.001, prefill=0.010, kv_transfer=0.004, first_decode=0.003)],
                        tmp_path / "t.png", "pd")
    [ax] = figures[0].axes
    assert _legend_labels(ax) == ["queue", "prefill", "kv transfer", "first decode"]
    assert "zero in every run: kv load" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == ["22 ms", "18 ms"]  # 2 + 20; 1 + 10 + 4 + 3
    assert ax.get_ylabel() == "mean TTFT (ms)" and ax.get_ylim()[0] == 0.0
    legend = ax.get_legend().get_window_extent()
    assert all(not legend.overlaps(p.get_window_extent()) for p in ax.patches)


def test_ttft_breakdown_of_seconds_is_in_seconds(figures, tmp_path):
    from sim.report.serving_plots import plot_ttft_breakdown

    plot_ttft_breakdown([_breakdown("cluster", queue=17.5, prefill=0.8)], tmp_path / "t.png", "cluster")
    [ax] = figures[0].axes
    assert ax.get_ylabel() == "mean TTFT (s)" and [t.get_text() for t in ax.texts] == ["18.3 s"]


def test_terminal_summary_keeps_a_sentence_off_the_numbers_line(run_cli, tmp_path):
    # Before: instances printed "... steps=26,734  utilization_basis=roofline: FLOPs and bytes of each step as the
    # roofline prices them, over simulated time  mfu_mean=0.0133 ..." on one 260-character line.
    status, out, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot",
                               "--report-json", tmp_path / "r.json")
    assert status == 0, err
    basis = json.loads((tmp_path / "r.json").read_text())["runs"][0]["metrics"]["instances"]["utilization_basis"]
    lines = out.splitlines()
    [i] = [n for n, line in enumerate(lines) if line.startswith("  instances ")]
    assert "mfu_mean=" in lines[i] and "utilization_basis" not in lines[i]
    assert lines[i + 1].strip() == f"utilization_basis: {basis}"


CLUSTER_PD = ["--cluster", "--pd", "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=1", "--set",
              "hardware.gpus_per_node=2"]


def test_cluster_pd_html_names_pd_where_the_json_mode_stays_cluster(run_cli, tmp_path):
    """A --cluster --pd run's page said "kvsim cluster report", as a cluster run without PD pools does; its title and
    summary name PD. The JSON report's mode (Contract) stays "cluster"."""
    page, report = tmp_path / "c.html", tmp_path / "c.json"
    status, _, err = run_cli(*CLUSTER_PD, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "60", "--no-plot",
                             "--html", page, "--report-json", report, "--quiet")
    assert status == 0, err
    doc = json.loads(report.read_text())
    assert doc["mode"] == "cluster"
    assert {e["role"] for e in doc["runs"][0]["metrics"]["instances"]["each"]} == {"prefill", "decode"}
    text = page.read_text()
    assert "<title>kvsim cluster PD report</title>" in text and "<h1>kvsim cluster PD report</h1>" in text
    [(_, summary)] = _tables(text, "summary")
    assert ["mode", "cluster (PD: --cluster --pd)"] in summary
    plain = render_html({**doc, "runs": []}, [])  # the same report without --pd: as before
    assert "<title>kvsim cluster report</title>" in plain and ["mode", "cluster"] in _tables(plain, "summary")[0][1]


def test_mrc_plot_gives_capacity_in_gib_too(figures, tmp_path, run_cli):
    """--mrc's plot gave capacity in blocks only; its top axis now reads GiB: a block of Llama-3.1-8B (32 layers, 8 KV
    heads of dimension 128, bf16: 2 x 32 x 8 x 128 x 2 = 131,072 B a token, HF config.json) at 16 tokens is 2 MiB, so
    512 blocks are 1 GiB."""
    from tests.conftest import BUNDLED_AZURE

    status, _, err = run_cli("--cache-only", "--mrc", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "200",
                             "--set", "model=llama-3.1-8b", "--set", "serving.block_size=16",
                             "--set", "serving.tensor_parallel_size=1", "--plot-dir", tmp_path, "--quiet")
    assert status == 0, err
    [ax] = [a for fig in figures for a in fig.axes if "miss-ratio" in a.get_title()]
    [top] = ax.child_axes
    assert top.get_xlabel() == "cache capacity (GiB at 2 MiB a block)"
    assert top.get_xlim() == pytest.approx([x / 512 for x in ax.get_xlim()], rel=1e-12)


def test_html_page_is_the_same_bytes_whatever_the_wall_time():
    # Before: the summary showed timing.wall_s, so two runs of one config, trace and seed wrote different pages
    # (the Contract keeps only the JSON's timing block out of byte-identical reports).
    runs = [{"name": "a", "overrides": {}, "metrics": {"hit_ratio": 0.5}}]
    fast, slow = _report(runs), _report(runs)
    slow["timing"] = {"wall_s": 123.456, "peak_rss_bytes": 7}
    assert render_html(fast, []) == render_html(slow, [])
