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
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
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
    assert run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "100",
                   "--report-json", out, "--no-plot", "--quiet")[0] == 0
    report = json.loads(out.read_text())
    assert report["config"]["workload"]["limit"] == 100
    assert report["runs"][0]["metrics"]["requests"] == 100 and report["trace"]["rows_read"] == 100
    # (the seed beside a synthetic workload, which draws from it: a trace replayed as recorded reads none)
    assert run_cli("--trace-stats", "--workload-limit", "100", "--seed", "9", "--report-json", out, "--no-plot",
                   "--quiet")[0] == 0
    assert json.loads(out.read_text())["config"]["seed"] == 9


def test_bad_input_exits_2_with_a_clear_message(run_cli, tmp_path):
    status, _, err = run_cli("--trace-stats", "--workload-trace", tmp_path / "missing.csv")
    assert status == 2 and "missing.csv" in err
    status, _, err = run_cli("--trace-stats", "--config", tmp_path / "nope.yaml")
    assert status == 2 and "nope.yaml" in err



def test_help_teaches_and_usage_errors_exit_2():
    help_text = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert help_text.returncode == 0
    for needle in ("examples:", "--trace-stats", "--cache-only", "--pd", "--set", "--calibration-profile"):
        assert needle in help_text.stdout
    bad = subprocess.run([sys.executable, "main.py", "--trace-stats", "--pd"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "not allowed with" in bad.stderr and bad.stderr.count("\n") == 1


def test_main_runs_from_another_directory(tmp_path):
    """The project's trace package must win over the stdlib's ``trace`` wherever kvsim is started."""
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--workload-trace", str(BUNDLED_AZURE),
                           "--no-plot", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ flags and modes


def _switch(mode: str) -> list[str]:
    return {"single": [], "trace-stats": ["--trace-stats"], "cache-only": ["--cache-only"], "pd": ["--pd"],
            "cluster": ["--cluster"], "check-calibration": ["--check-calibration", "profiles/vidur_a100_llama3_8b.yaml"],
            "sweep": ["--sweep", "experiments/examples/sweep_policies.yaml"],
            "plan": ["--plan", "experiments/examples/plan_azure.yaml"]}[mode]


def _sample(action) -> list[str]:
    """The flag with a value its own type accepts."""
    flag = action.option_strings[0]
    if action.nargs == 0:
        return [flag]
    if action.choices:
        return [flag, list(action.choices)[0]]
    return [flag, {int: "1", float: "0.5"}.get(action.type, "x.yaml")]


def test_flag_table_lists_every_option():
    from sim.cli import FLAG_MODES, MODE_SWITCHES, build_parser

    dests = {a.dest for a in build_parser()._actions if a.option_strings and a.dest != "help"}
    assert dests == set(FLAG_MODES) | set(MODE_SWITCHES)


def test_every_flag_outside_its_modes_exits_2_naming_it(run_cli):
    """The FLAG_MODES table, row by row: each flag given in each mode that does not use it."""
    from sim.cli import FLAG_MODES, MODES, build_parser

    actions = {a.dest: a for a in build_parser()._actions if a.option_strings}
    checked = 0
    for dest, modes in FLAG_MODES.items():
        for mode in sorted(set(MODES) - modes):
            if dest == "mrc" and mode == "single":
                continue  # --mrc with no mode switch selects --cache-only
            argv = [*_switch(mode), *_sample(actions[dest])]
            status, _, err = run_cli(*argv)
            assert status == 2 and actions[dest].option_strings[0] in err and err.count("\n") == 1, (argv, err)
            checked += 1
    assert checked >= 15


def test_mooncake_replays_its_own_blocks_by_default(run_cli, tmp_path):
    """The Contract: hash_ids are 512-token blocks, used as given unless workload.block_mismatch=split;
    the run's block size is the same for the cache and the block pool, and the report records it."""
    trace = tmp_path / "m.jsonl"
    records = [(0, 1000, 5, [1, 2]), (10, 1100, 7, [1, 2, 3]), (20, 512, 9, [1])]
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": o, "hash_ids": h}) + "\n"
                             for t, n, o, h in records))
    reports = {}
    for name, extra in (("trace", []), ("split", ["--set", "workload.block_mismatch=split"])):
        out = tmp_path / f"{name}.json"
        assert run_cli("--workload-trace", trace, "--report-json", out, "--quiet", *extra)[0] == 0
        reports[name] = json.loads(out.read_text())
    own, split = reports["trace"], reports["split"]
    ran = {k: r["runs"][0]["metrics"]["instances"]["block_size"] for k, r in reports.items()}
    assert own["trace"]["block_tokens"] == own["config"]["serving"]["block_size"] == ran["trace"] == 512
    # split: into the run's own blocks, null in the config (vLLM's for the model and GPU: 16 on an H100)
    assert split["trace"]["block_tokens"] == ran["split"] == 16 and split["config"]["serving"]["block_size"] is None
    assert own["runs"][0]["metrics"]["accesses"] == 2 + 3 + 1  # the hash ids themselves
    assert split["runs"][0]["metrics"]["accesses"] == 63 + 69 + 32  # ceil(covered tokens / 16) per trace block
    # The block pool counts 512-token blocks: the same memory holds 32 times fewer of them.
    kv = {k: r["runs"][0]["metrics"]["instances"]["kv_blocks_each"] for k, r in reports.items()}
    assert kv["trace"] == kv["split"] // 32


def test_a_given_block_size_the_trace_overrides_is_noted(run_cli, tmp_path, caplog):
    """serving.block_size 16 given for a trace of 512-token ids under workload.block_mismatch=trace: the run replays
    at 512 (the Contract) and says so on stderr, naming both sizes and the setting that would cut the blocks; the
    default (null) and an equal size say nothing."""
    trace = tmp_path / "m.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [1, 2]}) + "\n")
    common = ["--cache-only", "--workload-trace", trace, "--capacity-blocks", "10", "--no-plot",
              "--report-json", tmp_path / "r.json"]
    assert run_cli(*common, "--set", "serving.block_size=16")[0] == 0
    assert "serving.block_size 16" in caplog.text and "512-token" in caplog.text and "'split'" in caplog.text
    assert json.loads((tmp_path / "r.json").read_text())["config"]["serving"]["block_size"] == 512
    for extra in ([], ["--set", "serving.block_size=512"]):
        caplog.clear()
        assert run_cli(*common, *extra)[0] == 0 and "serving.block_size" not in caplog.text


def test_plot_names_carry_the_run_kind(run_cli, tmp_path):
    """An exact MRC, a sampled one and the trace statistics never overwrite each other."""
    plots = tmp_path / "plots"
    common = ["--workload-trace", BUNDLED_AZURE, "--workload-limit", "300", "--plot-dir", plots, "--quiet"]
    assert run_cli("--trace-stats", *common)[0] == 0
    assert run_cli("--mrc", *common)[0] == 0
    assert run_cli("--mrc", "--mrc-sample-rate", "0.5", *common)[0] == 0
    assert sorted(p.name for p in plots.iterdir()) == [
        "mrc_exact_azure_conv_2023.png", "mrc_shards-0.5_azure_conv_2023.png", "trace_stats_azure_conv_2023.png"]


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--cache-only", "--policy", "lru,arc",
                           "--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "2000"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""


def test_outputs_go_into_directories_created_on_demand(run_cli, tmp_path):
    out = tmp_path / "a" / "b" / "r.json"
    assert run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--report-json", out, "--no-plot", "--quiet")[0] == 0
    assert json.loads(out.read_text())["mode"] == "trace-stats"
