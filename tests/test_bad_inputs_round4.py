"""Bad input, round 4 (helper hfuzz4): combinations, YAML spellings, entry points and outputs the earlier rounds
(tests/test_bad_inputs.py, tests/test_bad_trace_inputs.py, tests/test_bad_inputs_round3.py) did not reach. Each case
was a traceback (exit 1), a run with a silently wrong or dropped input (exit 0), or a misleading message; each is now
one line and exit 2 before the work starts."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import TRACE_STATS, Case, check_bad_input

# YAML 1.1 (PyYAML) reads an integer with a leading zero as octal: each of these ran with 8, not 10 (exit 0)
OCTAL = ("'010'", "octal (8)", "decimal (10)")

CASES: dict[str, Case] = {
    "set_leading_zero_int": Case([*TRACE_STATS, "--set", "seed=010"], names=("--set 'seed'", *OCTAL)),
    "config_leading_zero_int": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "line 2", *OCTAL),
                                    files={"c.yaml": "serving:\n  num_instances: 010\n"}),
    "sweep_axis_leading_zero_int": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "line 2", *OCTAL),
                                        files={"s.yaml": "mode: cache-only\naxes: {cache.capacity_blocks: [010, 100]}\n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_leading_zeros_that_read_alike_in_either_yaml_are_taken():
    """``07`` and ``00`` are 7 and 0 in YAML 1.1 and 1.2 alike; a quoted ``'010'`` is text."""
    from sim.config_yaml import load_yaml

    assert load_yaml("a: 07\nb: 00\nc: '010'\nd: 0\ne: -0\nf: 0x10") == {"a": 7, "b": 0, "c": "010", "d": 0, "e": 0,
                                                                          "f": 16}
