"""An SLO target above ``SLO_UNUSUAL_S`` (TTFT past a minute, TPOT past a second) is legal, but is what a target in
milliseconds written as seconds looks like (``slo.ttft_s=300`` meant 300 ms): one warning line names the key and what
the value means; the run goes on."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE


@pytest.mark.parametrize("key, value, said", [
    ("slo.ttft_s", 300, "kvsim: warning: slo.ttft_s = 300 s (5 min): seconds, not ms; above 60 s is unusual for a "
                        "target (for 300 ms give slo.ttft_s=0.3)"),
    ("slo.tpot_s", 50, "kvsim: warning: slo.tpot_s = 50 s: seconds, not ms; above 1 s is unusual for a target "
                       "(for 50 ms give slo.tpot_s=0.05)"),
    ("target.slo.ttft_s", 90.0, "kvsim: warning: target.slo.ttft_s = 90 s (1.5 min): seconds, not ms; above 60 s"),
    ("slo.ttft_s", 60, None), ("slo.ttft_s", 0.3, None), ("slo.tpot_s", 1.0, None), ("slo.tpot_s", None, None),
    ("slo.attainment", 0.99, None),
])
def test_the_warning_names_the_key_and_what_the_value_means(key, value, said):
    from sim.config_rules import slo_unit_warning

    message = slo_unit_warning(key, value)
    assert message == said if said is None or message is None else message.startswith(said), message


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "seconds, not ms" in r.getMessage()]


def test_a_command_line_target_in_ms_warns_once_and_runs(run_cli, tmp_path, caplog):
    common = ["--workload-trace", BUNDLED_AZURE, "--workload-limit", "20", "--set", "serving.num_instances=1",
              "--no-plot"]
    metrics = []
    for ttft in ("300", "0.3"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="kvsim"):
            status, _, err = run_cli(*common, "--set", f"slo.ttft_s={ttft}", "--report-json", tmp_path / "r.json")
        assert status == 0, err
        metrics.append(json.loads((tmp_path / "r.json").read_text())["runs"][0]["metrics"])
        assert _warnings(caplog) == (["kvsim: warning: slo.ttft_s = 300 s (5 min): seconds, not ms; above 60 s is "
                                      "unusual for a target (for 300 ms give slo.ttft_s=0.3)"] if ttft == "300" else [])
    assert metrics[0]["slo_attainment"] == 1.0  # the target as given, 300 s: not an error, not reinterpreted


def test_sweep_points_warn_once_per_distinct_value(caplog):
    from sim.config import load_config
    from sim.config_rules import warn_slo_units

    configs = [load_config(None, sets=[f"slo.ttft_s={v}"]) for v in (0.5, 200, 200)]
    with caplog.at_level("WARNING", logger="kvsim"):
        warn_slo_units(configs)
    assert [m.split(":")[2] for m in _warnings(caplog)] == [" slo.ttft_s = 200 s (3.33 min)"]


def test_a_plan_target_in_ms_warns_naming_the_plan(tmp_path, caplog):
    from experiments.plan_file import load_plan

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE)},
                                    "target": {"slo": {"ttft_s": 300, "attainment": 0.99}, "rate_rps": 4},
                                    "search": {"gpu": ["h100-sxm"], "gpus": [1]}}))
    with caplog.at_level("WARNING", logger="kvsim"):
        load_plan(path)
    (said,) = _warnings(caplog)
    assert said.startswith("kvsim: warning: target.slo.ttft_s = 300 s (5 min)") and str(path) in said


def test_a_sweep_warns_once_for_each_unusual_value_its_points_take(run_cli, tmp_path, caplog):
    """A sweep axis of TTFT targets (0.5 and 200 s) beside a TPOT target of 50 s set on the command line: one warning
    for each unusual value, and the sweep runs. The TPOT is the base config's, told as it was resolved; every point
    keeps it (each varies the TTFT), and it was told again for them (two lines for one setting)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "workload": {"synthetic": {"kind": "multi-turn",
                                                                                  "num_requests": 20}},
                                    "set": {"serving.num_instances": 1}, "axes": {"slo.ttft_s": [0.5, 200]}}))
    with caplog.at_level("WARNING", logger="kvsim"):
        status, _, err = run_cli("--sweep", spec, "--set", "slo.tpot_s=50", "--jobs", "1", "--report-csv",
                                 tmp_path / "s.csv", "--no-plot")
    assert status == 0, err
    assert [m.split(":")[2] for m in _warnings(caplog)] == [" slo.tpot_s = 50 s", " slo.ttft_s = 200 s (3.33 min)"]
