"""The report's own rules by hand, on made-up metrics: the CSV's columns, the overload and still-filling caveats'
gates (``sim.report.document``), and the terminal summary's wording (``sim.report.console``)."""

from __future__ import annotations

import csv

from sim.report.console import console_summary, fmt
from sim.report.document import overload_caveat, still_filling, write_csv


def test_the_csv_flattens_nested_metrics_and_leaves_lists_to_the_json(tmp_path):
    """Curves and per-request series are lists: a CSV cell cannot hold one, so the CSV has no column for them; nested
    dicts become dotted columns; a column only a later run has is still a column (blank where a run lacks it)."""
    report = {"runs": [{"name": "a", "metrics": {"x": 1, "curve": [0.1, 0.2], "ttft_s": {"p50": 2.0, "cdf": [1, 2]}}},
                       {"name": "b", "metrics": {"x": 2, "curve": [0.3], "ttft_s": {"p50": 3.0}, "late": 7}}]}
    write_csv(report, tmp_path / "r.csv")
    with (tmp_path / "r.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows == [["name", "x", "ttft_s.p50", "late"], ["a", "1", "2.0", ""], ["b", "2", "3.0", "7"]]


def _series(arrivals, completions, queued=None, interval_s=1.0) -> dict:
    return {"ttft_s": {"mean": 1.0}, "e2e_s": {"mean": 2.0},
            "timeseries": {"interval_s": interval_s, "arrivals": arrivals, "completions": completions,
                           "queued": queued if queued is not None else [0] * len(arrivals),
                           "running": [1] * len(arrivals), "kv_usage": [0.1] * len(arrivals)}}


def test_a_tenth_of_the_requests_still_in_the_system_is_still_filling():
    """``OVERLOAD_BACKLOG``: "a tenth or more" of the requests still queued or running at the last arrival. 10
    requests, 5 and 5 in two intervals, 9 completed by the end of the second: 1 left, exactly a tenth: filling; 10
    completed: balanced."""
    assert still_filling(_series([5, 5], [0, 9])) == (1, 10)
    assert still_filling(_series([5, 5], [1, 9])) is None


def test_a_line_that_grew_while_the_system_drained_is_not_overloaded():
    """Eight requests one an interval, completions catching up from the fifth: in the system after each interval 1, 2,
    3, 4, 4, 3, 2, 1. The waiting line rose (0 over the first half, 1.5 over the last quarter: more than
    ``OVERLOAD_WAITING_RISE``), but 1 left at the last arrival is fewer than the 1.5 held on average over the first
    half of the arrivals (samples 0, 1, 2, 3): the backlog shrank, no overload. Held as many as early on, it is."""
    drained = _series([1] * 8, [0, 0, 0, 0, 1, 2, 2, 2], queued=[0, 0, 0, 0, 0, 0, 2, 1])
    assert overload_caveat(drained) is None
    grew = _series([1] * 8, [0, 0, 0, 0, 1, 1, 1, 1], queued=[0, 0, 0, 0, 0, 1, 2, 3])
    assert overload_caveat(grew).startswith("overloaded: at least 4 of 8 requests (50%)")


def test_the_terminal_prints_booleans_as_the_json_does_and_numbers_grouped():
    assert [fmt(True), fmt(False), fmt(12_345), fmt(0.5), fmt(1_234_567.25), fmt("lru")] == [
        "true", "false", "12,345", "0.5000", "1,234,567.2", "lru"]



def test_the_terminal_prints_a_float_past_its_digits_in_significant_figures():
    # Before: a rate of 1.68e308 requests/s (two requests 1.19e-308 s apart) printed 309 digits with commas, all but
    # the first 17 not in the double; 2**53 (9.0e15) is the last float whose '.1f' digits are all held
    assert fmt(1.6823551962632843e308) == "1.682e+308"
    assert fmt(-2.5e20) == "-2.5e+20"
    assert fmt(float(2**53)) == "9,007,199,254,740,992.0"


def _report(**trace) -> dict:
    base = {"path": "t.csv", "format": "azure", "rows_used": 1_200, "rows_skipped": 3,
            "skip_reasons": {"zero_input_tokens": 3}, "block_ids": "synthetic", "block_tokens": 16}
    return {"trace": {**base, **trace}, "runs": [{"name": "lru", "metrics": {"hit_ratio": 0.25, "ok": True}}],
            "config": {"cache": {"tiers": {}}}}


def test_the_terminal_trace_line_says_what_was_skipped_and_reordered():
    assert console_summary(_report()).splitlines() == [
        "trace t.csv (azure): 1,200 requests used, 3 skipped (zero_input_tokens: 3); block ids: synthetic, "
        "16 tokens a block",
        "[lru]", f"  {'hit_ratio':<30} 0.2500", f"  {'ok':<30} true"]
    line = console_summary(_report(rows_reordered=7)).splitlines()[0]
    assert line == ("trace t.csv (azure): 1,200 requests used, 3 skipped (zero_input_tokens: 3), 7 out of time order "
                    "(sorted by arrival); block ids: synthetic, 16 tokens a block")


def test_the_terminal_prints_a_null_metric_as_a_dash():
    """A metric the JSON holds as null (a NaN step time made makespan and the tiers' utilisations unknown: hfuzz8's
    findings 15 and 19) printed "None", and a null utilisation failed the summary (``None > 1``) after the report
    was written: a dash, as the HTML report prints it, and no tier flagged."""
    report = _report()
    report["runs"][0]["metrics"] = {"makespan_s": None, "ttft_s": {"mean": None, "p50": 0.5},
                                    "tiers": {"dram": {"read_utilization_max": None, "write_utilization_max": None}}}
    report["config"]["cache"]["tiers"] = {"dram": {"shared_read_gbps": None}}
    assert console_summary(report).splitlines()[1:] == [
        "[lru]", f"  {'makespan_s':<30} –", f"  {'ttft_s':<30} mean=–  p50=0.5000"]
