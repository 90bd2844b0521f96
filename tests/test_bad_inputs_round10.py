"""Bad input, round 10 (helper hfuzz9): round 9's leftovers (an NS-3 table's repeated size, a LightGBM header's
class count, --check-calibration's second read of its overlay, --seeds counts in the HTML report), then the CSV
writers, workload caches, calibration tables and --html paths. Each case was a traceback (exit 1), a crash, a
message that named nothing, or a run that went ahead where one line and exit 2 belonged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input
from tests.conftest import ROOT

LOOKUP_PD = ["--pd", "--quiet", "--no-plot", "--set", "network.lookup={tmp}/n.json"]


def _rows(*rows: tuple[float, float]) -> str:
    """An NS-3 table of (size_mib, ns3_ms) rows, in the order given."""
    return '{"rows": [' + ", ".join(f'{{"size_mib": {s}, "ns3_ms": {t}}}' for s, t in rows) + "]}"


CASES: dict[str, Case] = {
    # a size given twice said only "needs two or more distinct sizes with non-decreasing times", naming no row
    "lookup_repeated_size_names_both_rows": Case(LOOKUP_PD, names=("n.json", "rows 0 and 2", "1048576 bytes", "1 MiB"),
                                                 files={"n.json": _rows((1, 1), (2, 2), (1, 1.5))}),
    "lookup_time_falling_names_its_rows": Case(LOOKUP_PD, names=("n.json", "row 0 (2097152 bytes)", "row 1 (1048576",
                                                                 "takes less time"),
                                               files={"n.json": _rows((2, 1), (1, 2))}),
    "lookup_one_row": Case(LOOKUP_PD, names=("n.json", "two or more distinct sizes, got 1"),
                           files={"n.json": _rows((1, 1))}),
}




# A LightGBM model's header whose num_class is not its trees per round (its sidecar's hash updated to match). LightGBM
# grows one tree per class a round, so a model it wrote has them equal (src/boosting/gbdt.cpp); its prediction buffer
# is num_class long and each round writes num_tree_per_iteration values. 10 or 12 against 11 loaded and ran (exit 0,
# 10 overrunning the heap), 1 aborted the process ("corrupted size vs. prev_size"), 2 crashed it (SIGSEGV).
@pytest.mark.parametrize("old, new", [("num_class=11\n", "num_class=10\n"), ("num_class=11\n", "num_class=12\n"),
                                      ("num_class=11\n", "num_class=2\n"),
                                      ("objective=multiclass num_class:11", "objective=multiclass num_class:10")])
def test_a_class_count_other_than_the_trees_per_round_is_refused(old, new, small_learned_model, tmp_path):
    from learned.model import LearnedModel
    from sim.errors import InputError
    from tests.test_bad_inputs_round9 import _resave

    text = small_learned_model.read_text()
    assert "num_tree_per_iteration=11\n" in text and old in text  # (11 buckets: learned.train's default edges)
    with pytest.raises(InputError) as refused:
        LearnedModel.load(_resave(small_learned_model, tmp_path, text.replace(old, new, 1)))
    said = str(refused.value)
    assert "model.txt" in said and "num_tree_per_iteration (11)" in said and "disagree" in said, said


# --check-calibration read its overlay a second time with a plain yaml.safe_load, outside the strict loader, to see
# which tables it provides: in the locale's encoding (under LANG=C a UTF-8 comment, as in the bundled
# profiles/rtx5090_llama3_8b_pd_study.yaml, was an internal error), and from a file that may have changed since the
# config was read from it (a half-saved file printed PyYAML's error over several lines). It is read once now.
NS3_OVERLAY = f"# timings in µs — from NS-3\nnetwork: {{lookup: {ROOT / 'profiles' / 'ns3_kv_transfer_100gbps.json'}}}\n"


def test_check_calibration_reads_a_utf8_overlay_under_an_ascii_locale(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(NS3_OVERLAY, encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "main.py", "--check-calibration", str(overlay), "--no-plot"], cwd=ROOT,
                          env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "network ns3_kv_transfer_100gbps.json" in done.stdout


def test_check_calibration_judges_the_overlay_its_config_was_read_from(run_cli, tmp_path, monkeypatch):
    """The overlay replaced once the config is resolved (an editor's half-saved file): the check is of what was read."""
    import main

    overlay = tmp_path / "o.yaml"
    overlay.write_text(NS3_OVERLAY, encoding="utf-8")
    resolve = main.resolve_config

    def resolve_then_edit(*args, **kwargs):
        config = resolve(*args, **kwargs)
        overlay.write_text("network: {lookup: [\n")
        return config

    monkeypatch.setattr(main, "resolve_config", resolve_then_edit)
    status, out, err = run_cli("--check-calibration", overlay, "--no-plot")
    assert status == 0 and "Traceback" not in err, err[-1000:]
    assert "network ns3_kv_transfer_100gbps.json" in out


def test_the_html_report_says_the_trace_counts_are_means_over_the_seeds():
    # --seeds 3 where the seeds used 12, 13 and 13 of 18 requests: 12.67 "requests used" read as a count (the terminal
    # says "(means over the seeds)" since bdf14a0); the summary row and the trace section now say it too
    from sim.report.html import render_html

    trace = {"path": None, "format": "synthetic:multi-turn", "rows_read": 18, "rows_used": 38 / 3,
             "rows_skipped": 16 / 3, "skip_reasons": {"exceeds_kv_capacity": 16 / 3}}
    runs = [{"name": "single", "metrics": {"requests_completed": 38 / 3},
             "metrics_ci95": {"requests_completed": [7.5, 17.8]}}]
    page = render_html({"mode": "single", "trace": trace, "config": {}, "runs": runs}, [])
    assert '<td class="l">requests used (mean over the seeds)</td><td class="">12.67</td>' in page
    assert "--seeds: the row counts are means over the seeds" in page
    one = render_html({"mode": "single", "trace": trace, "config": {}, "runs": [{"name": "single", "metrics": {}}]}, [])
    assert "over the seeds" not in one  # one seed's counts are its own


# A file output written as a folder: Path drops a trailing '/', so `--html out/` wrote a file named 'out' (exit 0), and
# `--requests-csv out/` with two policies wrote out.lru.csv and out.arc.csv beside the folder meant
STATS = ["--trace-stats", "--no-plot", "--quiet", "--workload-trace", "{tmp}/t.csv"]
FOLDER_OUTPUTS: dict[str, Case] = {
    "html_ends_with_a_slash": Case([*STATS, "--html", "{tmp}/out/"], names=("--html", "{tmp}/out/", "names a folder"),
                                   files={"t.csv": AZURE_OK}),
    "report_json_ends_with_a_dot": Case([*STATS, "--report-json", "{tmp}/out/."], names=("--report-json", "names a folder"),
                                        files={"t.csv": AZURE_OK}),
    "report_csv_dot_dot": Case([*STATS, "--report-csv", "{tmp}/out/.."], names=("--report-csv", "names a folder"),
                               files={"t.csv": AZURE_OK}),
    "requests_csv_folder_two_policies": Case(["--no-plot", "--quiet", "--workload-trace", "{tmp}/t.csv", "--policy",
                                              "lru,arc", "--requests-csv", "{tmp}/out/"],
                                             names=("--requests-csv", "names a folder"), files={"t.csv": AZURE_OK}),
}


@pytest.mark.parametrize("name", sorted(FOLDER_OUTPUTS))
def test_a_file_output_written_as_a_folder_is_refused(name, run_cli, tmp_path):
    check_bad_input(FOLDER_OUTPUTS[name], run_cli, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # nothing written


def test_a_path_flag_from_the_home_folder_is_there(run_cli, tmp_path, monkeypatch):
    """No shell expands `--report-json=~/r.json` (a tilde after '=' in a word that is not an assignment): it wrote
    ./~/r.json, a folder named '~' in the working directory, while `--workload-trace=~/t.csv` (a config key's flag,
    expanded as config keys are) read the home folder's trace. Every path flag is now in the home folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    (home / "t.csv").write_text(AZURE_OK)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace=~/t.csv", "--report-json=~/r.json",
                             "--html=~/r.html", "--report-csv=~/r.csv")
    assert status == 0, err
    assert sorted(p.name for p in home.iterdir()) == ["r.csv", "r.html", "r.json", "t.csv"]
    assert list(work.iterdir()) == []


# A Vidur attention.csv's is_prefill (Vidur writes pandas' True/False) in another spelling: 1/0 made every row a decode
# row, the prefill rows' times among them, and the run stopped at its first prefill step saying the table had "no
# prefill rows"; yes/no was "not a number". Refused when the profile is read, naming the row.
def _vidur(prefill: str, decode: str) -> dict[str, str]:
    """A Vidur profile of llama-3-8b at TP 1 (tests/test_compute.py's shape): 3x3 decode and prefill grids."""
    shape = "4096,32,8,1"
    rows = [f"{shape},{b},0,{kv},{decode},,{0.01 * b + kv * 1e-5}" for b in (1, 8, 64) for kv in (100, 1000, 100000)]
    rows += [f"{shape},1,{c},{kv},{prefill},{c * 1e-4 + kv * 1e-5}," for c in (64, 512, 8192) for kv in (0, 1000, 100000)]
    ops = ["input_layernorm", "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_act", "mlp_down_proj"]
    return {"v/attention.csv": "n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,prefill_chunk_size,"
                               "kv_cache_size,is_prefill,time_stats.attn_prefill.median,time_stats.attn_decode.median\n"
                               + "\n".join(rows) + "\n",
            "v/mlp.csv": "n_embd,n_head,n_kv_head,n_expanded_embd,use_gated_mlp,num_tensor_parallel_workers,num_tokens,"
                         + ",".join(f"time_stats.{op}.median" for op in ops) + "\n"
                         + "".join(f"4096,32,8,14336,True,1,{t},{','.join([str(t / 6000)] * 6)}\n" for t in (1, 101, 10001))}


VIDUR_RUN = ["--preset", "smoke", "--no-plot", "--quiet", "--set", "model=llama-3-8b", "--set", "compute.backend=profiled",
             "--set", "compute.profile={tmp}/v"]
CASES.update({
    "vidur_is_prefill_one_zero": Case(VIDUR_RUN, names=("attention.csv", "row 1 column is_prefill", "True or False", "'0'"),
                                      files=_vidur("1", "0")),
    "vidur_is_prefill_yes_no": Case(VIDUR_RUN, names=("attention.csv", "row 10 column is_prefill", "'yes'"),
                                    files=_vidur("yes", "False")),
})


def test_vidur_is_prefill_as_vidur_writes_it_runs(run_cli, tmp_path):
    for file, text in _vidur("TRUE", "false").items():  # (pandas reads True, TRUE and true as booleans)
        (tmp_path / file).parent.mkdir(exist_ok=True)
        (tmp_path / file).write_text(text)
    status, _, err = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in VIDUR_RUN])
    assert status == 0, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_distserve_profile_is_read_as_utf8_under_an_ascii_locale(tmp_path):
    """A measured DistServe profile (JSON, UTF-8 by its standard, RFC 8259) naming its model in any script was read in
    the locale's encoding (sim/serving/measured_latency.py): under an ASCII locale a valid file "cannot be read"."""
    path = tmp_path / "profiler-a100-80g.vllm.json"
    path.write_text('{"Qwen 通义": {"1": {"decoding_large_small_bs_threshold": 10, "prefill": [20, 0.1, 1e-5], '
                    '"decoding_smallbs": [20, 0.001, 0.05], "decoding_largebs": [18, 0.002, 0.1]}}}', encoding="utf-8")
    code = ("import sys; from pathlib import Path; from sim.serving.measured_latency import read_distserve; "
            "steps = read_distserve(Path(sys.argv[1])); print(len(steps) > 0)")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=300)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr[-1000:]
