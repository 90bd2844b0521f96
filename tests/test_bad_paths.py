"""Every bad input or output path is one short line naming the flag or key and the path (exit 2), found before the
run: missing inputs, empty paths, loops of links, outputs that cannot be written or would overwrite an input or each
other. A table of command lines and their outcomes, as ``tests/test_bad_inputs.py``'s (``tests/bad_input_helpers.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bad_input_helpers import AZURE_OK, TRACE_STATS, Case, check_bad_input, setting, trace_stats
from tests.conftest import BUNDLED_AZURE
from tests.test_model_config import LLAMA_31_8B, write_config
from tests.test_sweep import _spec

CASES: dict[str, Case] = {
    "missing_trace": Case(trace_stats(trace="{tmp}/none.csv"), names=("none.csv",)),
    "trace_is_a_directory": Case(trace_stats(trace="{tmp}"), names=("workload.trace", "not a file")),
    "missing_overlay": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/none.yaml"], names=("none.yaml",)),
    "missing_network_lookup": setting("network.lookup={tmp}/ns3.json", "ns3.json", mode=("--pd",)),
    "missing_learned_model": setting("cache.learned_model={tmp}/m.txt", "m.txt", mode=("--cache-only",)),
    # the model is checked before the trace loads: its error comes first, though the trace is bad too
    "learned_model_checked_before_trace": Case(["--cache-only", "--policy", "learned", "--set",
                                                "cache.learned_model={tmp}/m.txt", "--workload-trace", "{tmp}/t.csv",
                                                "--strict-workload-validation", "--quiet", "--no-plot"],
                                               names=("m.txt.json", "not found"),
                                               files={"m.txt": "not a model\n", "t.csv": AZURE_OK + "not,a,row\n"}),
    "learned_sidecar_nested_too_deep": Case(["--cache-only", "--quiet", "--no-plot", "--policy", "learned", "--set",
                                             "cache.learned_model={tmp}/m.txt"], names=("m.txt.json", "nested too deep"),
                                            files={"m.txt": "x", "m.txt.json": "[" * 100_000 + "]" * 100_000}),
    "report_json_under_a_file": Case([*TRACE_STATS, "--report-json", "{tmp}/f.txt/r.json"], names=("--report-json", "f.txt"),
                                     files={"f.txt": "x"}),
    "report_json_empty_path": Case([*TRACE_STATS, "--report-json", ""], names=("--report-json", "empty")),
    # an empty path is refused by name: as a mode flag it read as "not given" (another mode ran, exit 0), as
    # --config the default config was used, and as a path key (YAML: rebased to the file's folder) the working directory
    "sweep_empty_path": Case(["--sweep", ""], names=("--sweep", "empty path")),
    "plan_empty_path": Case(["--plan", " "], names=("--plan", "empty path")),
    "check_calibration_empty_path": Case(["--check-calibration", ""], names=("--check-calibration", "empty path")),
    "config_empty_path": Case([*TRACE_STATS, "--config", ""], names=("--config", "empty path")),
    "plot_dir_empty_path": Case(["--trace-stats", "--quiet", "--plot-dir", ""], names=("--plot-dir", "empty path")),
    "requests_csv_empty_path": Case(["--pd", "--requests-csv", ""], names=("--requests-csv", "empty path")),
    "trace_empty_path": Case(trace_stats(trace=""), names=("--workload-trace", "empty path")),
    "profile_key_empty_path": setting("compute.profile=", "empty path", mode=("--no-plot",)),
    "profile_key_empty_in_overlay": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/o.yaml"],
                                         names=("compute.profile", "empty path"), files={"o.yaml": "compute: {profile: ''}\n"}),
    "report_json_is_a_directory": Case([*TRACE_STATS, "--report-json", "{tmp}"], names=("--report-json", "directory")),
    "report_csv_unwritable": Case([*TRACE_STATS, "--report-csv", "/proc/kvsim/r.csv"], names=("--report-csv", "/proc")),
    "requests_csv_unwritable": Case(["--pd", "--requests-csv", "/proc/kvsim/r.csv"], names=("--requests-csv",)),
    "plot_dir_is_a_file": Case(["--trace-stats", "--plot-dir", "{tmp}/f.txt"], names=("--plot-dir", "f.txt"),
                               files={"f.txt": "x"}),
    "report_csv_same_as_report_json": Case([*TRACE_STATS, "--report-json", "{tmp}/r", "--report-csv", "{tmp}/r"],
                                           names=("--report-csv", "--report-json")),
    "report_json_overwrites_trace": Case(trace_stats("--report-json", "{tmp}/t.csv"), names=("--report-json", "workload.trace"),
                                         files={"t.csv": AZURE_OK}),
    "report_json_overwrites_config": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml", "--report-json", "{tmp}/c.yaml"],
                                          names=("--report-json", "--config"), files={"c.yaml": "seed: 1\n"}),
    "html_overwrites_sweep_spec": Case(["--sweep", "{tmp}/s.yaml", "--html", "{tmp}/s.yaml"], names=("--html", "--sweep"),
                                       files={"s.yaml": "mode: cache-only\naxes: {cache.policy: [lru]}\n"}),
    "plot_dir_is_the_report_json": Case(["--trace-stats", "--report-json", "{tmp}/p", "--plot-dir", "{tmp}/p"],
                                        names=("--plot-dir", "--report-json")),
    # a plot's name follows the mode and the trace: a .png read or written in the plot folder could be overwritten
    "trace_in_the_plot_folder": Case(["--trace-stats", "--quiet", "--workload-format", "azure", "--workload-trace",
                                      "{tmp}/trace_stats_t.png", "--plot-dir", "{tmp}"],
                                     names=("workload.trace", "a .png file in the plot folder"),
                                     files={"trace_stats_t.png": AZURE_OK}),
    "html_in_the_plot_folder": Case(["--trace-stats", "--quiet", "--plot-dir", "{tmp}/p", "--html", "{tmp}/p/x.png"],
                                    names=("--html", "a .png file in the plot folder", "--no-plot")),
    "report_json_name_too_long": Case([*TRACE_STATS, "--report-json", "{tmp}/" + "x" * 300], names=("--report-json", "too long")),
    "trace_name_too_long": Case(trace_stats(trace="{tmp}/" + "x" * 300), names=("workload.trace", "too long")),
    "config_name_too_long": Case([*TRACE_STATS, "--config", "{tmp}/" + "x" * 300], names=("--config", "too long")),
    "workload_cache_is_a_directory": Case(trace_stats("--workload-cache", "{tmp}"), names=("workload.cache", "directory"),
                                          files={"t.csv": AZURE_OK}),
    "workload_cache_unwritable": Case(trace_stats("--workload-cache", "/proc/kvsim/c.npz"), names=("--workload-cache", "/proc"),
                                      files={"t.csv": AZURE_OK}),
    "workload_cache_is_the_trace": Case(trace_stats("--workload-cache", "{tmp}/t.csv"), names=("workload.cache", "t.csv"),
                                        files={"t.csv": AZURE_OK}),
    "workload_cache_is_the_report": Case(trace_stats("--workload-cache", "{tmp}/r.json", "--report-json", "{tmp}/r.json"),
                                         names=("--workload-cache", "--report-json"), files={"t.csv": AZURE_OK}),
    "workload_cache_without_trace": Case([*TRACE_STATS, "--workload-cache", "{tmp}/c.npz"], names=("workload.cache", "synthetic")),
    "workload_cache_is_another_file": Case(trace_stats("--workload-cache", "{tmp}/notes.txt"),
                                           names=("workload.cache", "notes.txt", "not a kvsim workload cache"),
                                           files={"t.csv": AZURE_OK, "notes.txt": "my notes\n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_outputs_never_overwrite_the_default_config(run_cli, tmp_path, monkeypatch):
    """The config file read without --config (./config.yaml) is an input like any other."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 3\n")
    for flag in ("--html", "--report-json"):
        status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", flag, "config.yaml")
        assert status == 2 and flag in err and "default config file" in err, err
    assert (tmp_path / "config.yaml").read_text() == "seed: 3\n"


@pytest.mark.parametrize("flag, named", [("--report-json", "--report-json"),
                                         ("--workload-cache", "config key 'workload.cache':")])
def test_an_output_that_is_a_loop_of_links_is_named(flag, named, run_cli, tmp_path):
    """loop1 -> loop2 -> loop1: pathlib's RuntimeError was a traceback and "internal error" (exit 1)."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    status, _, err = run_cli(*TRACE_STATS, "--workload-trace", str(BUNDLED_AZURE), flag, str(tmp_path / "loop1"))
    assert status == 2 and "Traceback" not in err
    assert err.strip() == f"kvsim: error: {named} '{tmp_path}/loop1': Too many levels of symbolic links", err


def test_an_input_that_is_a_loop_of_links_says_so(run_cli, tmp_path):
    """A trace path that is a loop of links (or a dangling link) was reported as not existing, which the user, who
    sees the name in the directory, cannot square with it."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    status, _, err = run_cli(*TRACE_STATS, "--workload-trace", str(tmp_path / "loop1"))
    assert status == 2 and err.strip() == (f"kvsim: error: config key 'workload.trace': '{tmp_path}/loop1' is a symbolic "
                                           "link to nothing that exists (or a loop of links)")


@pytest.mark.parametrize("flag, named", [("--sweep", "sweep spec"), ("--plan", "plan"), ("--config", None)])
def test_a_spec_plan_or_config_that_is_a_loop_of_links_says_so(flag, named, run_cli, tmp_path):
    """loop1 -> loop2 -> loop1 as --sweep or --plan: the check that no output is an input resolved it with pathlib,
    whose RuntimeError was a traceback and "internal error" (exit 1, hfuzz9); --config said "not found"."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    argv = [flag, str(tmp_path / "loop1")] + (["--trace-stats", "--no-plot"] if flag == "--config" else [])
    status, _, err = run_cli(*argv)
    said = (f"--config '{tmp_path}/loop1' is a symbolic link to nothing that exists (or a loop of links)"
            if flag == "--config" else f"cannot read {named} {tmp_path}/loop1: Too many levels of symbolic links")
    assert (status, err) == (2, f"kvsim: error: {said}\n"), err


@pytest.mark.parametrize("flag, named", [("--sweep", "sweep spec"), ("--plan", "plan")])
def test_a_spec_or_plan_whose_name_is_too_long_says_so(flag, named, run_cli, tmp_path):
    """A file name past the system's 255 bytes as --sweep or --plan: the check that no output is an input asked
    pathlib whether it is a folder, whose OSError (ENAMETOOLONG) was a traceback and internal error (exit 1, hfuzz9)."""
    path = tmp_path / ("x" * 300)
    status, _, err = run_cli(flag, str(path))
    assert (status, err) == (2, f"kvsim: error: cannot read {named} {path}: File name too long\n"), err


@pytest.mark.parametrize("mode, prefix", [(["--trace-stats"], "trace_stats_"), (["--cache-only", "--mrc"], "mrc_exact_")])
def test_a_long_trace_name_still_names_its_plot(mode, prefix, run_cli, tmp_path):
    """A trace of a 240-byte name (the system's bound: 255) made its plot's name, '<kind>_<trace stem>.png', too long:
    the run's work was done, then 'cannot write .../trace_stats_zzz...png: File name too long', exit 2 (hfuzz9). The
    stem in a plot's name is cut to 200 bytes."""
    trace = tmp_path / ("z" * 240 + ".csv")
    trace.write_bytes(Path(BUNDLED_AZURE).read_bytes())
    status, _, err = run_cli(*mode, "--workload-trace", trace, "--workload-limit", "50", "--quiet",
                             "--plot-dir", tmp_path / "plots")
    assert status == 0, err
    assert [p.name for p in (tmp_path / "plots").iterdir()] == [prefix + "z" * 200 + ".png"]


def test_a_spec_config_that_is_no_file_is_named_as_the_specs(run_cli, tmp_path):
    """A sweep spec's 'config: FOLDER' was refused as "--config 'FOLDER': not a file", naming a flag the command line
    did not give and not the spec (hfuzz9)."""
    spec = tmp_path / "s.yaml"
    spec.write_text(f"mode: cache-only\nconfig: {tmp_path}\naxes: {{cache.capacity_blocks: [100, 200]}}\n")
    status, _, err = run_cli("--sweep", spec, "--no-plot")
    assert (status, err) == (2, f"kvsim: error: sweep spec {spec}'s 'config' '{tmp_path}': not a file (a directory or "
                                "device)\n"), err


@pytest.mark.parametrize("flag, name", [("--report-csv", "config.json"), ("--report-json", "config.json")])
def test_no_output_goes_inside_a_folder_the_run_reads(flag, name, run_cli, tmp_path):
    """A folder input (a Hugging Face model folder, a profile bundle: its files are read) is an input like a file:
    --report-csv PROFILE/mlp.csv replaced a Vidur table with the report (exit 0), and the next run was refused.
    Now exit 2 in one line naming the output and the key, before the run; the folder is left as it was."""
    config = write_config(tmp_path / "model", LLAMA_31_8B)
    status, _, err = run_cli("--preset", "smoke", "--set", f"model={config.parent}", "--quiet", flag,
                             tmp_path / "model" / name)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert flag in err and "config key 'model'" in err, err
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.json"]
    assert json.loads(config.read_text()) == LLAMA_31_8B


def test_outputs_beside_a_model_folders_config_run(run_cli, tmp_path, monkeypatch):
    """A Hugging Face model folder given as the model is read for its config.json alone (``sim.hf_config.config_file``):
    a run from inside it with the default outputs (plots to ./kvsim-plots) and a report beside config.json is not
    refused (it was, exit 2 naming a --plot-dir never given), while config.json itself stays protected (above)."""
    config = write_config(tmp_path / "model", LLAMA_31_8B)
    monkeypatch.chdir(config.parent)
    run = ("--preset", "smoke", "--workload-limit", "20", "--set", "model=./", "--quiet")
    status, _, err = run_cli(*run)
    assert status == 0 and (config.parent / "kvsim-plots").is_dir(), err
    status, _, err = run_cli(*run, "--no-plot", "--report-json", "r.json")
    assert status == 0 and (config.parent / "r.json").is_file(), err
    assert json.loads(config.read_text()) == LLAMA_31_8B


@pytest.mark.parametrize("kind, cache, said", [
    ("sweep", "r.json", "is also the path of --report-json"),
    ("sweep", "spec.yaml", "is also the path of --sweep"),
    ("sweep", "r.journal.jsonl", "is also the path of the sweep's journal"),
    ("plan", "r.json", "is also the path of --report-json"),
])
def test_a_workload_cache_the_spec_names_is_no_other_output_or_input(run_cli, tmp_path, kind, cache, said):
    """The spec's own workload.cache is written as the report, the spec and the journal are: before, one at the
    report's path was written, then replaced by the report (exit 0; the next run refused the 'cache'), and one at the
    spec's or the journal's path failed every point. Now exit 2 in one line before any point runs."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"timestamp": {i}, "input_length": 600, "output_length": 2, "hash_ids": [1, {i + 2}]}}\n'
                             for i in range(6)))
    workload = {"trace": str(trace), "cache": cache}  # (relative to the spec: its folder)
    if kind == "sweep":
        path = _spec(tmp_path, mode="cache-only", workload=workload, axes={"cache.policy": ["lru", "fifo"]})
    else:
        path = _spec(tmp_path, workload=workload, target={"slo": {"ttft_s": 2.0, "attainment": 0.9}, "rate_rps": 2},
                     search={"gpu": ["h100-sxm"], "gpus": [1], "tensor_parallel_size": [1], "pd_split": ["aggregated"]})
    before = sorted(p.name for p in tmp_path.iterdir())
    status, _, err = run_cli(f"--{kind}", path, "--jobs", "1", "--no-plot", "--quiet",
                             "--report-json", tmp_path / "r.json")
    assert status == 2 and "config key 'workload.cache'" in err and said in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
