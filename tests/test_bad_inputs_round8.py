"""Bad input, round 8 (helper hfuzz7): what the earlier rounds (tests/test_bad_inputs*.py, test_bad_trace_inputs.py,
test_bad_calibration_inputs.py) left. Each case was a traceback (exit 1), a message that said something untrue, or a
run that went ahead and failed (or answered absurdly) where one line and exit 2 belonged before the work."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input, setting
from tests.conftest import ROOT, script_module

SERVE = ("--quiet", "--no-plot")
CACHE_ONLY = ("--cache-only", "--no-plot", "--quiet")
AZURE_TRACE = "{tmp}/t.csv"


def sweep(axes: str) -> Case:
    """A cache-only sweep spec over the three-request Azure trace, its axes as given."""
    text = f"mode: cache-only\nworkload: {{trace: t.csv}}\naxes:\n{axes}"
    return Case(["--sweep", "{tmp}/s.yaml", "--quiet", "--no-plot", "--jobs", "1"], names=("s.yaml",),
                files={"s.yaml": text, "t.csv": AZURE_OK})


def plan(target: str, *names: str) -> Case:
    """A plan over the bundled Azure trace's first 20 requests with ``target``, refused naming ``names``."""
    text = f"target: {target}\nsearch: {{gpu: [h100-sxm], gpus: [1]}}\n"
    return Case(["--plan", "{tmp}/p.yaml", "--workload-trace", "{azure}", "--workload-limit", "20", "--quiet",
                 "--no-plot", "--jobs", "1"],
                names=("p.yaml", *names), files={"p.yaml": text})


def _with(case: Case, *names: str) -> Case:
    return Case(case.argv, names=(*case.names, *names), files=case.files)


# 1e308 is a finite float (math.isfinite), which config_fields reads as infinite on purpose (the first product with
# it overflows): the message said "must be a finite number, got 1e+308", untrue of the number it quoted
assert math.isfinite(1e308) and math.isfinite(-1.5e308)

CASES: dict[str, Case] = {
    "config_number_1e308_said_finite": setting("workload.rate_scale=1e308", "less than 1e+308", "infinite"),
    "config_number_negative_huge": setting("workload.rate_scale=-1.5e308", "less than 1e+308", "-1.5e+308"),
    "config_integer_beyond_a_float": setting("workload.rate_scale=" + "9" * 400, "less than 1e+308", "infinite"),
    # YAML 1.1 (PyYAML) reads an unquoted no/off/yes/on as a boolean: "expected one of 'none', 'selective_write', got
    # False" for `cache.admission=no`, naming neither YAML nor the fix
    "yaml_no_as_a_word": setting("cache.admission=no", "got false", "boolean", "YAML", "quote", mode=CACHE_ONLY),
    "yaml_on_as_a_name": setting("cache.policy=on", "got true", "boolean", "yes/no/on/off", mode=CACHE_ONLY),
    "sweep_axis_value_off": _with(sweep("  cache.admission: [none, off]\n"), "'cache.admission'", "boolean",
                                  "quote"),
    # a dotted key with an empty part was read as holding a key named '': "config key 'cache.policy': expected str, got
    # {'': 'lru'}" of cache.policy., "unknown config key 'cache.'" of cache..policy (the message named another key)
    "set_key_trailing_dot": setting("cache.policy.=lru", "'cache.policy.'", "empty name", mode=CACHE_ONLY),
    "sweep_axis_key_two_dots": _with(sweep("  cache..policy: [lru, arc]\n"), "'cache..policy'", "empty name"),
    "preset_key_leading_dot": Case([*CACHE_ONLY, "--config", "{tmp}/c.yaml", "--workload-trace", "{tmp}/t.csv"],
                                   names=("preset 'p'", "c.yaml", "'.cache.policy'", "empty name"),
                                   files={"c.yaml": "presets:\n  p: {.cache.policy: lru}\n", "t.csv": AZURE_OK}),
    # a synthetic pool's Zipf weights are an array of its size: 2^63 - 1 documents was numpy's "a and p must have same
    # size" (exit 1), 1e9 prefixes some 25 GB of weights (out of memory)
    "rag_documents_beyond_int_arrays": setting("workload.synthetic.num_documents=9223372036854775807", "100,000,000",
                                               mode=("--trace-stats", "--no-plot", "--set",
                                                     "workload.synthetic.kind=rag")),
    "system_prompts_beyond_memory": setting("workload.synthetic.num_prefixes=1000000000", "100,000,000",
                                            mode=("--trace-stats", "--no-plot", "--set",
                                                  "workload.synthetic.kind=system-prompt")),
    # a plan's target rate that stretches the workload past 34 years: each candidate failed at its first run, the plan
    # exited 0 with no choice. 20 requests at 1e-300 req/s span 20 / 1e-300 = 2e301 s, whatever the trace's own rate
    "plan_target_rate_stretches_arrivals": plan("{slo: {ttft_s: 0.5}, rate_rps: 1e-300}", "'target.rate_rps'",
                                                "2e+301 s", "34 years"),
    # from 1e301 req/s (6.5e300 x the workload's 1.5 req/s) the max-rate search doubles 24 times past 1e308: every
    # candidate failed at its last doubling, the plan exited 0 with no choice
    "plan_target_rate_beyond_the_search": plan("{slo: {ttft_s: 0.5}, rate_rps: 1e301}", "'target.rate_rps'",
                                               "24 doublings"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_finite_config_number_below_the_bound_is_kept(run_cli, tmp_path):
    """The bound is the one 1e308 meets, not a smaller one: 9.9e307 is read as the number it is (the value the report
    records), so the message's "less than 1e+308" is the rule."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    report = tmp_path / "r.json"
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", tmp_path / "t.csv",
                             "--set", "workload.rate_scale=9.9e307", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["config"]["workload"]["rate_scale"] == 9.9e307


def test_a_burst_at_an_absurd_rate_is_said_in_a_short_number():
    """Little's law's count at 1e300 req/s was printed with every digit (300 of them) in the max-rate note."""
    from experiments.maxrate import Probe, _burst
    from sim.report.document import RunResult

    run = RunResult("x", {"e2e_s": {"mean": 0.5}, "requests_completed": 20})
    note = _burst(Probe(1.0, 1.0, True, run), 1e300)
    assert "5e+299 in the system" in note and len(note) < 200, note


# A tool's empty path argument: argparse's type=Path read '' as '.', the working folder, and the message named a '.'
# never typed ("--out '.': is a directory, not a file"; ".: a directory, not a table")
@pytest.mark.parametrize("argv, named", [
    (["--workload-trace", "{trace}", "--out", ""], "argument --out: empty path"),
    (["--workload-trace", " ", "--out", "{tmp}/o.jsonl"], "argument --workload-trace: empty path"),
])
def test_to_mooncake_names_an_empty_path(tmp_path, argv, named):
    (tmp_path / "t.csv").write_text(AZURE_OK)
    argv = [a.format(trace=tmp_path / "t.csv", tmp=tmp_path) for a in argv]
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "to_mooncake.py"), *argv], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2 and named in done.stderr and "'.'" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == [tmp_path / "t.csv"]


@pytest.mark.parametrize("tool, argv, named", [
    ("fit_roofline.py", [""], "argument table: empty path"),
    ("fit_roofline.py", ["perf.csv", "--out", ""], "argument --out: empty path"),
    ("fit_roofline.py", ["perf.csv", "--config", ""], "argument --config: empty path"),
    ("fit_kernel_floors.py", ["folder", "--out", ""], "argument --out: empty path"),
    ("fit_kernel_floors.py", ["folder", "--config", ""], "argument --config: empty path"),
])
def test_fitting_tools_name_an_empty_path(tool, argv, named, capsys):
    with script_module(ROOT / "tools" / tool) as module:
        with pytest.raises(SystemExit) as exited:
            module.build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and named in err and "'.'" not in err, err


@pytest.mark.parametrize("assignment, hint", [
    ("serving.max_num_seqs=yes", False),  # int | None: no word would do, quoted or not
    ("slo.ttft_s=on", False),  # float | None
    ("cache.admission=no", True),  # a Literal of names: quoting the word is the fix
])
def test_a_yaml_boolean_is_explained_only_where_a_word_is_meant(assignment, hint):
    """The YAML-boolean hint ("quote it where a word is meant: 'yes'") belongs to a key that takes a word; on a number's
    key it advised quoting 'yes', which that key refuses too ("expected int or null, got 'yes'")."""
    from sim.config import load_config
    from sim.errors import ConfigError

    key = assignment.partition("=")[0]
    with pytest.raises(ConfigError) as refused:
        load_config(None, sets=[assignment])
    message = str(refused.value)
    assert f"'{key}'" in message and "a boolean" in message and "\n" not in message, message
    assert ("quote it" in message) == hint, message


@pytest.mark.parametrize("argv, named", [
    (["--draws", "0"], "--draws and --timeout must be >= 1"),
    (["--draws", "x"], "argument --draws: invalid int value: 'x'"),
    (["--seed", "1", "--seed", "2", "--draws", "0"], "--seed is given twice"),  # (--draws 0: nothing runs)
])
def test_random_runs_refuses_bad_usage_in_one_line(argv, named):
    """tools/random_runs.py's bad usage was argparse's own: its usage block, then the error (five lines), where every
    other kvsim command says one; a repeated --seed ran the last alone."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "random_runs.py"), *argv], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout, done.stderr
