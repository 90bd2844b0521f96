"""Bad input, round 4 (helper hfuzz4): combinations, YAML spellings, entry points and outputs the earlier rounds
(tests/test_bad_inputs.py, tests/test_bad_trace_inputs.py, tests/test_bad_inputs_round3.py) did not reach. Each case
was a traceback (exit 1), a run with a silently wrong or dropped input (exit 0), or a misleading message; each is now
one line and exit 2 before the work starts."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from tests.bad_input_helpers import AZURE_OK, MOONCAKE_OK, TRACE_STATS, Case, check_bad_input, mooncake, trace_stats
from tests.conftest import ROOT, SHARED_DATA

# YAML 1.1 (PyYAML) reads an integer with a leading zero as octal: each of these ran with 8, not 10 (exit 0)
OCTAL = ("'010'", "octal (8)", "decimal (10)")

CASES: dict[str, Case] = {
    "set_leading_zero_int": Case([*TRACE_STATS, "--set", "seed=010"], names=("--set 'seed'", *OCTAL)),
    "config_leading_zero_int": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "line 2", *OCTAL),
                                    files={"c.yaml": "serving:\n  num_instances: 010\n"}),
    "sweep_axis_leading_zero_int": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "line 2", *OCTAL),
                                        files={"s.yaml": "mode: cache-only\naxes: {cache.capacity_blocks: [010, 100]}\n"}),
    # a sweep's or a plan's output onto a file its runs read: main.py checked the command line's inputs alone, so the
    # report replaced the trace (or the spec's config, its overlay) and the sweep exited 0
    "sweep_report_over_its_trace": Case(["--sweep", "{tmp}/s.yaml", "--report-json", "{tmp}/t.csv"],
                                        names=("--report-json", "t.csv", "config key 'workload.trace'"),
                                        files={"t.csv": AZURE_OK, "s.yaml": "mode: cache-only\nworkload: {trace: t.csv}\n"
                                                                            "axes: {cache.capacity_blocks: [10, 20]}\n"}),
    "sweep_report_over_an_axis_trace": Case(["--sweep", "{tmp}/s.yaml", "--report-csv", "{tmp}/b.csv"],
                                            names=("--report-csv", "b.csv", "config key 'workload.trace'"),
                                            files={"a.csv": AZURE_OK, "b.csv": AZURE_OK,
                                                   "s.yaml": "mode: cache-only\nset: {cache.capacity_blocks: 10}\n"
                                                             "axes: {workload.trace: [a.csv, b.csv]}\n"}),
    "sweep_html_over_its_config": Case(["--sweep", "{tmp}/s.yaml", "--html", "{tmp}/c.yaml"],
                                       names=("--html", "c.yaml", "s.yaml's 'config'"),
                                       files={"c.yaml": "seed: 1\n", "s.yaml": "mode: cache-only\nconfig: c.yaml\n"
                                                                               "axes: {cache.capacity_blocks: [10, 20]}\n"}),
    "sweep_report_over_its_overlay": Case(["--sweep", "{tmp}/s.yaml", "--report-json", "{tmp}/o.yaml"],
                                          names=("--report-json", "o.yaml", "s.yaml's overlay"),
                                          files={"o.yaml": "seed: 1\n", "s.yaml": "mode: cache-only\noverlays: [o.yaml]\n"
                                                                                   "axes: {cache.capacity_blocks: [10, 20]}\n"}),
    "plan_report_over_its_trace": Case(["--plan", "{tmp}/p.yaml", "--report-json", "{tmp}/t.csv"],
                                       names=("--report-json", "t.csv", "config key 'workload.trace'"),
                                       files={"t.csv": AZURE_OK, "p.yaml": "workload: {trace: t.csv}\ntarget: {hit_ratio: 0.01}\n"
                                                                            "search: {gpu: [h100-sxm]}\n"}),
    # a compressed trace under a text name: the advice "gunzip t.csv" fails ("unknown suffix -- ignored")
    "gzip_under_a_csv_name": Case(trace_stats(), names=("t.csv", "gzip-compressed", "(gunzip -c t.csv > t.decompressed.csv)"),
                                  files={"t.csv": gzip.compress(AZURE_OK.encode(), mtime=0)}),
    "gzip_under_its_own_name": Case(trace_stats(trace="{tmp}/t.csv.gz"), names=("(gunzip t.csv.gz)",),
                                    files={"t.csv.gz": gzip.compress(AZURE_OK.encode(), mtime=0)}),
    # PRESET@MODE is a part of PRESET, not one to pick: prod-eval@cluster would put the 10,240-GPU fleet's keys on
    # a single-node run (reached once --preset took any name the config defines)
    "preset_mode_part_picked": Case([*TRACE_STATS, "--preset", "prod-eval@cluster"],
                                    names=("unknown preset 'prod-eval@cluster'", "valid presets: dev, prod-eval, smoke")),
    # two spellings of one value on an axis: the same run twice under two names (exit 0)
    "sweep_model_and_its_alias": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "point 2 (Llama-3.1-8B) is point 1",
                                                                          "one config"),
                                      files={"s.yaml": "mode: cache-only\nworkload: {limit: 20}\nset: {cache.capacity_blocks: 10}"
                                                       "\naxes: {model: [llama-3.1-8b, meta-llama/Llama-3.1-8B]}\n"}),
    "sweep_gpu_in_capitals": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "point 2 (H100-SXM) is point 1 (h100-sxm)"),
                                  files={"s.yaml": "mode: cache-only\nworkload: {limit: 20}\nset: {cache.capacity_blocks: 10}\n"
                                                   "axes: {hardware.gpu: [h100-sxm, H100-SXM]}\n"}),
    "sweep_int_and_float_of_one_size": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "point 2 (1.0) is point 1 (1)"),
                                            files={"s.yaml": "mode: cache-only\nworkload: {limit: 20}\n"
                                                             "axes: {cache.tiers.dram.capacity_gib: [1, 1.0]}\n"}),
    # a trace replayed as recorded draws nothing from the seed (the synthetic generator, the arrival process and
    # --mrc's sampling do): --seed N ran, a report identical to seed 0's (exit 0); a sweep's seed axis ran N alike
    "seed_of_a_replayed_trace": Case(["--quiet", "--no-plot", "--workload-trace", "{tmp}/t.csv", "--seed", "5"],
                                     names=("--seed", "t.csv", "replayed as recorded"), files={"t.csv": AZURE_OK}),
    "seed_of_a_replayed_trace_cache_only": Case(["--cache-only", "--quiet", "--no-plot", "--workload-trace", "{tmp}/t.csv",
                                                 "--set", "seed=5"], names=("--set seed", "nothing draws from the seed"),
                                                files={"t.csv": AZURE_OK}),
    "sweep_seed_axis_over_a_replayed_trace": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "axis 'seed'", "replayed"),
                                                  files={"t.csv": AZURE_OK, "s.yaml": "mode: single\nworkload: {trace: "
                                                                                      "t.csv}\naxes: {seed: [1, 2]}\n"}),
    # LLMServingSim's arrival_time_ns states its unit: --workload-time-unit ms read a 2 s trace as 2,000,000 s (23
    # days, exit 0: neither the 34-year span nor the rate warning tells it)
    "time_unit_over_a_key_that_names_its_unit": Case(trace_stats("--workload-time-unit", "ms", trace="{tmp}/l.jsonl"),
                                                     names=("l.jsonl", "'arrival_time_ns'", "workload.time_unit=ms"),
                                                     files={"l.jsonl": "".join(
                                                         f'{{"input_toks": 100, "output_toks": 10, "arrival_time_ns": {t}}}\n'
                                                         for t in (0, 10**9, 2 * 10**9))}),
    # a record naming one hash id twice (ids of each block's content, not of its prefix): the replay counted its
    # second naming as a hit of the prompt on itself, 3 hits of 4 accesses for [1, 1, 1, 1] (exit 0, no skip)
    "hash_id_repeated_in_a_record_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"repeated_hash_ids": 1},
                                                 files={"m.jsonl": MOONCAKE_OK + mooncake(30, 2048, 5, [7, 7, 7, 7])}),
    "hash_id_repeated_in_a_record_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                                names=("m.jsonl", "names hash id 7 twice", "repeated hash ids"),
                                                files={"m.jsonl": MOONCAKE_OK + mooncake(30, 2048, 5, [7, 8, 7, 9])}),
    # an empty mapping merges over a section as it is: --set cache.tiers.dram={} (to clear the tier?) ran with the
    # 256 GiB DRAM tier unchanged, exit 0
    "set_an_empty_mapping": Case(["--cache-only", "--quiet", "--no-plot", "--workload-limit", "20", "--set",
                                  "cache.tiers.dram={}"], names=("--set cache.tiers.dram={}", "sets nothing")),
    # the same in a sweep's fixed keys: flattened away, the points ran with the DRAM tier as configured (exit 0)
    "sweep_set_an_empty_mapping": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "'cache.tiers.dram'", "sets nothing"),
                                       files={"s.yaml": "mode: cache-only\nset: {cache.tiers.dram: {}}\n"
                                                        "axes: {cache.capacity_blocks: [10, 20]}\n"}),
    # a TPOT target over a workload of single-token answers: no request has a TPOT, each passed it (slo_attainment 1.0
    # at a 0.1 ms target, and --max-rate searched against nothing), exit 0
    "tpot_target_of_single_token_answers": Case(["--quiet", "--no-plot", "--workload-trace", "{tmp}/t.csv", "--set",
                                                 "slo.tpot_s=0.0001"], names=("slo.tpot_s", "t.csv", "more than one token"),
                                                files={"t.csv": AZURE_OK.replace(",10\n", ",1\n").replace(",11\n", ",1\n")
                                                       .replace(",12\n", ",1\n")}),
    # selective write keeps blocks past the depth (default 64) out of the cache: prompts of at most 2 blocks have none
    # past it, and the replay was the one without it (exit 0)
    "selective_write_past_every_prompt": Case(["--cache-only", "--quiet", "--no-plot", "--capacity-blocks", "10",
                                               "--workload-trace", "{tmp}/m.jsonl", "--set", "cache.admission=selective_write"],
                                              names=("cache.admission", "selective_write", "m.jsonl", "more than 2 blocks",
                                                     "selective_write_depth=64"), files={"m.jsonl": MOONCAKE_OK}),
    # answers that end within their prompt's last block generate no full block: insert_outputs inserted nothing, and
    # the replay was the one without it (exit 0; its generated_blocks metric 0)
    "insert_outputs_with_no_generated_block": Case(["--cache-only", "--quiet", "--no-plot", "--capacity-blocks", "10",
                                                    "--workload-trace", "{tmp}/m.jsonl", "--set", "cache.insert_outputs=true"],
                                                   names=("cache.insert_outputs", "m.jsonl", "full 512-token block"),
                                                   files={"m.jsonl": MOONCAKE_OK}),
    # sessions of one request each have no earlier turn to prefetch: the check looked for session ids alone, and the
    # replay was the one without the prefetch (exit 0)
    "session_prefetch_over_single_request_sessions": Case(
        ["--cache-only", "--quiet", "--no-plot", "--workload-trace", "{tmp}/b.csv", "--set", "cache.prefetch=session",
         "--set", "cache.tiers.hbm.capacity_gib=0.01"], names=("'cache.prefetch'=session", "b.csv", "two requests or more"),
        files={"b.csv": "Timestamp,Session ID,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                        "1,a,GPT-4,100,10,110,c\n2,b,GPT-4,200,10,210,c\n3,c,GPT-4,300,10,310,c\n"}),
    # two columns that each name BurstGPT's session: the first was read and the other dropped without a word (exit 0)
    "burstgpt_two_session_columns": Case(
        [*TRACE_STATS, "--workload-trace", "{tmp}/b.csv"], names=("b.csv", "'Session ID' and 'Conversation ID'"),
        files={"b.csv": "Timestamp,Session ID,Conversation ID,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                        "1,a,x,GPT-4,100,10,110,c\n2,a,y,GPT-4,200,10,210,c\n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_leading_zeros_that_read_alike_in_either_yaml_are_taken():
    """``07`` and ``00`` are 7 and 0 in YAML 1.1 and 1.2 alike; a quoted ``'010'`` is text."""
    from sim.config_yaml import load_yaml

    assert load_yaml("a: 07\nb: 00\nc: '010'\nd: 0\ne: -0\nf: 0x10") == {"a": 7, "b": 0, "c": "010", "d": 0, "e": 0,
                                                                          "f": 16}


def _script(path: str, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / path), *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------- benchmarks

BENCHMARK_CASES = [
    # a value named twice in a comma list ran (and timed) it twice, exit 0
    ("bench_cache.py", ["--policies", "lru,lru"], "--policies names 'lru' twice"),
    ("bench_mrc.py", ["--sizes", "10,10", "--no-check"], "--sizes names 10 twice"),
    ("bench_serving.py", ["--scales", "1", "--modes", "single,single"], "--modes names 'single' twice"),
    ("bench_serving.py", ["--scales", "1,1", "--modes", "single"], "--scales names 1 twice"),
    ("bench_learned.py", ["--workloads", "mooncake,mooncake", "--peers", ""], "--workloads names 'mooncake' twice"),
    ("probe_learned.py", ["law,law"], "probes names 'law' twice"),
    # plain argparse: a flag given twice kept the last (exit 0); a bad value was the usage and a line naming neither
    # the flag nor the value
    ("bench_serving.py", ["--scales", "1", "--repeat", "1", "--repeat", "2"], "--repeat is given twice"),
    ("bench_serving.py", ["--scales", "1", "--modes", "nope"], "--modes: unknown modes ['nope']"),
    ("bench_serving.py", ["--scales", "0"], "--scales and --repeat must be at least 1, got --scales 0"),
    ("bench_trace_load.py", ["--rows", "10", "--rows", "20", "--only", "azure"], "--rows is given twice"),
    # tracebacks: FileExistsError of mkdir, and numpy's refusal of a negative seed in the generator's subprocess
    ("bench_trace_load.py", ["--rows", "10", "--only", "azure", "--dir", "README.md"], "--dir: README.md is not a folder"),
    ("bench_trace_load.py", ["--rows", "10", "--only", "azure", "--seed", "-1"], "--seed must be at least 0, got -1"),
    ("bench_synthetic.py", ["--requests", "10,10"], "--requests names 10 twice"),
    ("bench_synthetic.py", ["--starts", "steady,steady"], "--starts names 'steady' twice"),
    ("bench_synthetic.py", ["--starts", "cold"], "--starts: cold; choose from steady, empty"),
    ("bench_synthetic.py", ["--requests", "0"], "--requests counts and --repeat must be at least 1"),
]


@pytest.mark.parametrize("script, argv, named", BENCHMARK_CASES, ids=[f"{s} {' '.join(a)}" for s, a, _ in BENCHMARK_CASES])
def test_a_bad_benchmark_input_is_exit_2_in_one_line(script, argv, named):
    done = _script(f"benchmarks/{script}", *argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and f"{script}: error: {named}" in done.stderr, done.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="bench_cache replays the public Mooncake trace in ../shared/data")
def test_bench_cache_of_fewer_requests_than_its_warm_up_copy_runs():
    # the kernels' warm-up copy took the first 20 requests of the trace whatever --requests: an IndexError below 20
    done = _script("benchmarks/bench_cache.py", "--requests", "5", "--policies", "lru", "--no-cold", "--no-e2e")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "first 5 requests" in done.stdout and "\nlru " in done.stdout, done.stdout


# ------------------------------------------------------------------------------------------------ tools

@pytest.mark.parametrize("make, why", [(lambda p: p.mkdir(), "is not a file"), (lambda p: p.write_bytes(b""), None),
                                        (lambda p: None, "does not exist")], ids=["folder", "empty", "missing"])
def test_to_mooncake_says_what_the_trace_path_is(tmp_path, make, why):
    # a folder (or a FIFO) given as the trace was "no such file", which the user, who sees it listed, cannot square
    trace = tmp_path / "t.csv"
    make(trace)
    done = _script("tools/to_mooncake.py", "--workload-trace", str(trace), "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, (done.returncode, done.stderr[-2000:])
    assert f"'{trace}' {why}" in done.stderr if why else "empty" in done.stderr, done.stderr


def test_a_sweep_refused_for_its_outputs_leaves_its_trace_as_it_was(run_cli, tmp_path):
    """The refusal comes before any point runs: the trace is byte for byte what it was."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    (tmp_path / "s.yaml").write_text("mode: cache-only\nworkload: {trace: t.csv}\naxes: {cache.capacity_blocks: [10, 20]}\n")
    status, _, err = run_cli("--sweep", tmp_path / "s.yaml", "--report-json", tmp_path / "t.csv", "--quiet", "--no-plot")
    assert status == 2 and (tmp_path / "t.csv").read_text() == AZURE_OK, err


def test_a_preset_the_config_file_defines_is_applied(run_cli, tmp_path):
    """README Configuration: presets may be defined in --config (load_config applies any it defines), but --preset
    took only smoke, dev or prod-eval (argparse's choices): "invalid choice: 'mine'", so a file's own preset could
    never be used, while the message for editing presets with --set says to define them in --config."""
    (tmp_path / "c.yaml").write_text("presets:\n  mine: {seed: 3}\n")
    report = tmp_path / "r.json"
    status, _, err = run_cli(*TRACE_STATS, "--config", tmp_path / "c.yaml", "--preset", "mine", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["config"]["seed"] == 3


def test_sweep_points_of_two_hugging_face_ids_keep_their_names(run_cli, tmp_path):
    """A point is named by a path's file stem: meta-llama/Llama-3.1-8B and meta-llama/Llama-3.2-3B were both
    'Llama-3' (the dot read as a file suffix), and the sweep was refused as two paths with one file name."""
    spec = tmp_path / "s.yaml"
    spec.write_text("mode: cache-only\nworkload: {limit: 20}\nset: {cache.capacity_blocks: 10}\n"
                    "axes: {model: [meta-llama/Llama-3.1-8B, meta-llama/Llama-3.2-3B]}\n")
    report = tmp_path / "r.json"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--quiet", "--no-plot", "--report-json", report)
    assert status == 0, err
    assert [run["name"] for run in json.loads(report.read_text())["runs"]] == ["Llama-3.1-8B", "Llama-3.2-3B"]


@pytest.mark.parametrize("argv", [
    ["--seed", "5", "--set", "workload.arrivals.process=poisson", "--set", "workload.arrivals.rate_rps=2"],
    ["--cache-only", "--mrc", "--mrc-sample-rate", "0.5", "--seed", "5"],
], ids=["drawn-arrivals", "mrc-sampling"])
def test_a_seed_something_draws_from_is_taken(run_cli, tmp_path, argv):
    """The seed beside a trace where it draws: the arrival process's times, the miss-ratio curve's SHARDS sample."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    status, _, err = run_cli(*argv, "--workload-trace", tmp_path / "t.csv", "--quiet", "--no-plot")
    assert status == 0, err


def test_the_unit_a_key_names_may_be_given(run_cli, tmp_path):
    """--workload-time-unit ns over arrival_time_ns says what the key says: taken (2 s of arrivals)."""
    (tmp_path / "l.jsonl").write_text("".join(f'{{"input_toks": 100, "output_toks": 10, "arrival_time_ns": {t}}}\n'
                                              for t in (0, 10**9, 2 * 10**9)))
    report = tmp_path / "r.json"
    status, _, err = run_cli(*trace_stats("--workload-time-unit", "ns", "--report-json", str(report),
                                          trace=str(tmp_path / "l.jsonl")))
    assert status == 0, err
    assert json.loads(report.read_text())["runs"][0]["metrics"]["duration_s"] == 2.0


def test_a_record_repeating_a_hash_id_adds_no_hit(run_cli, tmp_path):
    """Hand count: the three records of MOONCAKE_OK are [1, 2], [1, 2], [3] (5 accesses, the second record's 2 hits);
    a fourth, [7, 7, 7, 7], is skipped, not 4 accesses and 3 hits of its own."""
    (tmp_path / "m.jsonl").write_text(MOONCAKE_OK + mooncake(30, 2048, 5, [7, 7, 7, 7]))
    report = tmp_path / "r.json"
    status, _, err = run_cli("--cache-only", "--capacity-blocks", "100", "--workload-trace", tmp_path / "m.jsonl",
                             "--report-json", report, "--quiet", "--no-plot")
    assert status == 0, err
    metrics = json.loads(report.read_text())["runs"][0]["metrics"]
    assert (metrics["accesses"], metrics["hits"]) == (5, 2)


def test_check_moe_kernels_refuses_two_tables_for_one_gpu(tmp_path):
    # the summary is keyed by GPU: a second table for it replaced the first, which the summary left out (exit 0)
    table = ROOT / "tests" / "fixtures" / "aiconfigurator_moe" / "rtx_pro_6000_server_moe_perf.txt"
    copy = tmp_path / "b.txt"
    copy.write_bytes(table.read_bytes())
    done = _script("tools/check_moe_kernels.py", f"{table}=rtxpro6000", f"{copy}=rtxpro6000")
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout[-2000:])
    assert done.stderr.count("\n") == 1 and f"{copy}=rtxpro6000: GPU 'rtxpro6000' is given a table twice" in done.stderr


def test_check_moe_kernels_names_gpus_as_the_config_does(tmp_path):
    # an unknown GPU is refused, naming the known ones, before any table is read (here: none exists); a spelling
    # hardware.gpu takes (RTXPRO6000, 'RTX PRO 6000': profiles/gpus.yaml's rtxpro6000) was refused as unknown
    done = _script("tools/check_moe_kernels.py", f"{tmp_path / 'none.txt'}=not-a-gpu")
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert "unknown GPU 'not-a-gpu'; known GPUs (profiles/gpus.yaml): " in done.stderr and "rtxpro6000" in done.stderr
    table = ROOT / "tests" / "fixtures" / "aiconfigurator_moe" / "rtx_pro_6000_server_moe_perf.txt"
    canonical = _script("tools/check_moe_kernels.py", f"{table}=rtxpro6000")
    assert canonical.returncode == 0, canonical.stderr[-2000:]
    for spelling in ("RTXPRO6000", "RTX PRO 6000"):
        done = _script("tools/check_moe_kernels.py", f"{table}={spelling}")
        assert (done.returncode, done.stdout) == (0, canonical.stdout), done.stderr[-2000:]
    done = _script("tools/check_moe_kernels.py", f"{table}=rtxpro6000", f"{table}=RTXPRO6000")  # one GPU twice
    assert done.returncode == 2 and "GPU 'rtxpro6000' is given a table twice" in done.stderr, done.stderr[-2000:]


def test_a_tpot_target_with_one_multi_token_answer_is_judged(run_cli, tmp_path):
    """One answer of two tokens or more gives the target a TPOT to judge: taken."""
    (tmp_path / "t.csv").write_text(AZURE_OK.replace(",10\n", ",1\n").replace(",11\n", ",1\n"))
    report = tmp_path / "r.json"
    status, _, err = run_cli("--quiet", "--no-plot", "--workload-trace", tmp_path / "t.csv", "--set", "slo.tpot_s=1",
                             "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["runs"][0]["metrics"]["slo_attainment"] == 1.0


def test_selective_write_within_a_prompt_is_taken(run_cli, tmp_path):
    """Depth 1 over records [1, 2], [1, 2], [3]: block 2 is never cached, so the second record hits block 1 alone
    (1 hit of 5 accesses, by hand; 2 without the plug-in)."""
    (tmp_path / "m.jsonl").write_text(MOONCAKE_OK)
    report = tmp_path / "r.json"
    status, _, err = run_cli("--cache-only", "--quiet", "--no-plot", "--capacity-blocks", "10", "--workload-trace",
                             tmp_path / "m.jsonl", "--set", "cache.admission=selective_write", "--set",
                             "cache.selective_write_depth=1", "--report-json", report)
    assert status == 0, err
    metrics = json.loads(report.read_text())["runs"][0]["metrics"]
    assert (metrics["hits"], metrics["accesses"]) == (1, 5)
