"""The command line: reports per the Contract, byte-identical reruns, exit statuses, --help."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from tests.conftest import BUNDLED_AZURE, ROOT


def _without_timing(path):
    report = json.loads(path.read_text())
    report.pop("timing")
    return report


def test_trace_stats_report_schema(run_cli, tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    status, stdout, _ = run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--report-json", out_json,
                                "--report-csv", out_csv, "--plot-dir", tmp_path / "plots")
    assert status == 0 and "19,366" in stdout
    report = json.loads(out_json.read_text())
    assert report["schema_version"] == 1 and report["mode"] == "trace-stats"
    assert report["config"]["workload"]["trace"] == str(BUNDLED_AZURE)
    tr = report["trace"]
    assert tr["format"] == "azure" and tr["rows_read"] == tr["rows_used"] == 19366 and tr["rows_skipped"] == 0
    assert tr["skip_reasons"] == {} and tr["block_ids"] == "unique" and len(tr["sha256"]) == 64
    metrics = report["runs"][0]["metrics"]
    for key in ("requests", "duration_s", "rate_mean_rps", "rate_peak_rps", "input_tokens", "output_tokens",
                "accesses", "unique_blocks", "infinite_cache_hit_ratio"):
        assert key in metrics
    assert set(metrics["input_tokens"]) == {"mean", "p50", "p95", "p99", "max"}
    assert report["timing"]["wall_s"] > 0 and report["timing"]["peak_rss_bytes"] > 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["name"] == "trace-stats"
    assert float(rows[0]["input_tokens.p50"]) == 1020.0
    assert (tmp_path / "plots" / "trace_stats_azure_conv_2023.png").stat().st_size > 10_000


def test_same_inputs_give_byte_identical_reports(run_cli, tmp_path):
    for name in ("a", "b"):
        assert run_cli("--trace-stats", "--seed", "3", "--preset", "smoke", "--set", "workload.synthetic.kind=rag",
                       "--report-json", tmp_path / f"{name}.json", "--report-csv", tmp_path / f"{name}.csv",
                       "--no-plot", "--quiet")[0] == 0
    a, b = _without_timing(tmp_path / "a.json"), _without_timing(tmp_path / "b.json")
    assert json.dumps(a) == json.dumps(b)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert run_cli("--trace-stats", "--seed", "4", "--preset", "smoke", "--set", "workload.synthetic.kind=rag",
                   "--report-json", tmp_path / "c.json", "--no-plot", "--quiet")[0] == 0
    assert _without_timing(tmp_path / "c.json")["runs"] != a["runs"]  # the seed is not ignored


def test_flags_map_to_config_keys(run_cli, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "100", "--seed", "9",
                   "--report-json", out, "--no-plot", "--quiet")[0] == 0
    report = json.loads(out.read_text())
    assert report["config"]["workload"]["limit"] == 100 and report["config"]["seed"] == 9
    assert report["runs"][0]["metrics"]["requests"] == 100 and report["trace"]["rows_read"] == 100


def test_bad_input_exits_2_with_a_clear_message(run_cli, tmp_path):
    status, _, err = run_cli("--trace-stats", "--workload-trace", tmp_path / "missing.csv")
    assert status == 2 and "missing.csv" in err
    status, _, err = run_cli("--trace-stats", "--config", tmp_path / "nope.yaml")
    assert status == 2 and "nope.yaml" in err


def test_modes_not_built_yet_exit_2(run_cli):
    for flag in ("--cluster",):
        status, _, err = run_cli(flag, "--workload-trace", BUNDLED_AZURE)
        assert status == 2 and "not implemented yet" in err



def test_help_teaches_and_usage_errors_exit_2():
    help_text = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert help_text.returncode == 0
    for needle in ("examples:", "--trace-stats", "--cache-only", "--pd", "--set", "--calibration-profile"):
        assert needle in help_text.stdout
    bad = subprocess.run([sys.executable, "main.py", "--trace-stats", "--pd"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "not allowed with" in bad.stderr


def test_main_runs_from_another_directory(tmp_path):
    """The project's trace package must win over the stdlib's ``trace`` wherever kvsim is started."""
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--workload-trace", str(BUNDLED_AZURE),
                           "--no-plot", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
