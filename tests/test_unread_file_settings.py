"""A setting the loaded workload leaves unread (``sim.errors.UnreadSetting``) follows the rule of the settings a mode
never reads (``sim.mode_settings``): refused where the command line gave it (``--set``, a flag), left alone where a
config file holds it (the run is the one without it, and the report echoes the file's value). A file's value was
refused (exit 2) while the same file's keys a mode never reads were taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE

ROOT = Path(__file__).resolve().parents[1]


def _config_file(tmp_path: Path, key: str, value: object) -> Path:
    """The bundled config.yaml with ``workload.<key>`` changed."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["workload"][key] = value
    out = tmp_path / f"{key}.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def _report(run_cli, tmp_path: Path, name: str, *argv) -> dict:
    out = tmp_path / f"{name}.json"
    status, _, err = run_cli(*argv, "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    return json.loads(out.read_text())


def _differences(with_file: dict, without: dict, key: str, value: object) -> list[str]:
    """What tells the run with the file's setting from the run without it (none expected): the report parts that
    differ, once the config's echo of the file's value (which must be there) is set aside."""
    echoed, default = with_file["config"]["workload"][key], without["config"]["workload"][key]
    if echoed != value or default == value:
        return [f"workload.{key} echoed {echoed!r}, default {default!r}"]
    with_file["config"]["workload"][key] = default
    return [part for part in ("config", "trace", "runs") if with_file[part] != without[part]]


@pytest.mark.parametrize("mode", [[], ["--pd"], ["--cluster"], ["--trace-stats"],
                                  ["--cache-only", "--set", "cache.insert_outputs=true"]],
                         ids=["single", "pd", "cluster", "trace-stats", "cache-only"])
def test_a_files_outputs_in_next_turn_false_without_continuations_is_left_alone(run_cli, tmp_path, mode):
    # the bundled Azure trace has no sessions: every answer has blocks of its own with true and false alike
    common = [*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30"]
    path = _config_file(tmp_path, "outputs_in_next_turn", False)
    assert _differences(_report(run_cli, tmp_path, "file", *common, "--config", path),
                        _report(run_cli, tmp_path, "default", *common), "outputs_in_next_turn", False) == []


@pytest.mark.parametrize("mode", [[], ["--trace-stats"]], ids=["single", "trace-stats"])
def test_a_files_rate_scale_over_one_request_is_left_alone(run_cli, tmp_path, mode):
    # one request: no inter-arrival time to divide
    common = [*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "1"]
    path = _config_file(tmp_path, "rate_scale", 2.0)
    assert _differences(_report(run_cli, tmp_path, "file", *common, "--config", path),
                        _report(run_cli, tmp_path, "default", *common), "rate_scale", 2.0) == []


def test_the_same_rate_scale_given_on_the_command_line_is_still_refused(run_cli, tmp_path):
    path = _config_file(tmp_path, "rate_scale", 2.0)  # (the file's value is not what is refused: the flag's is)
    status, _, err = run_cli("--config", path, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "1",
                             "--rate-scale", "3", "--no-plot", "--quiet")
    assert (status, err) == (2, "kvsim: error: config key 'workload.rate_scale'=3 changes nothing: the workload holds "
                                "one request; drop it\n")
