"""Bad input, round 8 (helper hfuzz7): what the earlier rounds (tests/test_bad_inputs*.py, test_bad_trace_inputs.py,
test_bad_calibration_inputs.py) left. Each case was a traceback (exit 1), a message that said something untrue, or a
run that went ahead and failed (or answered absurdly) where one line and exit 2 belonged before the work."""

from __future__ import annotations

import json
import math

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input, setting

SERVE = ("--quiet", "--no-plot")
CACHE_ONLY = ("--cache-only", "--no-plot", "--quiet")
AZURE_TRACE = "{tmp}/t.csv"


def sweep(axes: str) -> Case:
    """A cache-only sweep spec over the three-request Azure trace, its axes as given."""
    text = f"mode: cache-only\nworkload: {{trace: t.csv}}\naxes:\n{axes}"
    return Case(["--sweep", "{tmp}/s.yaml", "--quiet", "--no-plot", "--jobs", "1"], names=("s.yaml",),
                files={"s.yaml": text, "t.csv": AZURE_OK})


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
