"""Every ``python main.py ...`` example in README.md and in ``--help`` names files that exist and runs
as printed (on the first 50 requests, outputs redirected to tmp_path, no plots)."""

from __future__ import annotations

import re
import shlex

import pytest

from sim.cli import build_parser
from tests.conftest import ROOT, SHARED_DATA

INPUT_FLAGS = ("--workload-trace", "--config", "--calibration-profile")
PATH_SETTINGS = ("workload.trace", "network.lookup", "compute.profile", "cache.learned_model")


def _commands(text: str) -> list[str]:
    """``python main.py`` commands in shell blocks (continuations joined, ``&&`` chains split) and inline code."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        for span in [line.strip(), *re.findall(r"`([^`]+)`", line)]:
            if "OVERLAY.yaml" in span:
                continue  # the flag's synopsis, not an example
            for part in span.split("&&"):
                part = part.strip()
                if part.startswith("python main.py") and part not in found:
                    found.append(part)
    return found


README_COMMANDS = _commands((ROOT / "README.md").read_text())
HELP_COMMANDS = _commands(build_parser().epilog)


def test_examples_are_found():
    assert len(README_COMMANDS) >= 4 and len(HELP_COMMANDS) >= 5


def _inputs(argv: list[str]) -> list[str]:
    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in INPUT_FLAGS]
    for i, a in enumerate(argv[:-1]):
        if a == "--set" and argv[i + 1].split("=", 1)[0] in PATH_SETTINGS:
            paths.append(argv[i + 1].split("=", 1)[1])
    return paths


@pytest.mark.parametrize("command", README_COMMANDS + HELP_COMMANDS)
def test_example_runs_as_printed(command, run_cli, tmp_path, monkeypatch):
    argv = shlex.split(command)[2:]
    if argv == ["--help"]:
        status, out, _ = run_cli(*argv)
        assert status == 0 and "examples:" in out
        return
    for path in _inputs(argv):
        if path.startswith("../shared/") and not SHARED_DATA.is_dir():
            pytest.skip(f"{path}: the public data folder is absent")
        assert (ROOT / path).exists(), f"{command!r} names {path}, which does not exist"
    monkeypatch.chdir(ROOT)  # the examples are written to run from the repository root
    argv = [str(tmp_path / a[len("out/"):]) if a.startswith("out/") else a for a in argv]
    # short runs: 50 requests, in place of the example's own --workload-limit (a flag is given once); none where
    # --check-calibration reads no workload
    if "--workload-limit" in argv:
        argv[argv.index("--workload-limit") + 1] = "50"
    limit = [] if "--check-calibration" in argv or "--workload-limit" in argv else ["--workload-limit", "50"]
    plots = ["--no-plot"]
    if "--plot-dir" in argv or "--html" in argv:  # the example asks for its plots: in tmp_path, not the checkout
        plots = [] if "--plot-dir" in argv else ["--plot-dir", str(tmp_path / "plots")]
    status, _, err = run_cli(*argv, *limit, *plots, "--quiet")
    assert status == 0, f"{command!r}: {err[-2000:]}"
    for a in argv:
        if a.startswith(str(tmp_path)):
            assert (tmp_path / a).stat().st_size > 0
