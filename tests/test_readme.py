"""The README: its first screen has exactly two set-up commands, and every capacity-planning example runs."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.conftest import ROOT
from tests.test_planner import README_PLAN

README = (ROOT / "README.md").read_text()


def _commands(section: str) -> list[str]:
    """The shell commands of the section's bash blocks (continuations joined, comments dropped)."""
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        text = block.replace("\\\n", " ")
        commands += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return commands


def test_first_screen_shows_exactly_two_commands():
    first_screen = README.split("\n## ", 1)[0]
    commands = [c for block in re.findall(r"```bash\n(.*?)```", first_screen, flags=re.S)
                for c in block.splitlines() if c.strip() and not c.strip().startswith("#")]
    assert len(commands) == 2 and all(c.startswith("python -m pip install") for c in commands)


EXAMPLES = _commands("Capacity planning")


def test_the_section_shows_a_sweep_max_rate_plan_and_html():
    flags = " ".join(EXAMPLES)
    for flag in ("--sweep", "--max-rate", "--plan", "--html", "--seeds"):
        assert flag in flags, flag
    assert all(c.startswith("python main.py ") for c in EXAMPLES)


@pytest.mark.parametrize("command", EXAMPLES, ids=[shlex.split(c)[2] for c in EXAMPLES])
def test_readme_example_runs(command, run_cli, tmp_path, monkeypatch):
    argv = shlex.split(command)[2:]
    if argv[:2] == README_PLAN[:2]:  # the same command is the planner's acceptance test
        assert [a for a in argv if not a.startswith("out/") and a != "--report-json"] == README_PLAN
        pytest.skip("run and checked by tests/test_planner.py::test_azure_plan_finds_the_least_cost_gpu_count_and_split")
    monkeypatch.chdir(ROOT)
    argv = [a.replace("out/", f"{tmp_path}/") for a in argv]
    if "--plot-dir" not in argv:
        argv += ["--plot-dir", str(tmp_path / "plots")]
    status, stdout, err = run_cli(*argv)
    assert status == 0, err
    for path in (a for a in argv if a.startswith(str(tmp_path)) and "." in a.rsplit("/", 1)[-1]):
        assert (tmp_path / path.rsplit("/", 1)[-1]).stat().st_size > 0, path
    if "--max-rate" in argv:
        report = json.loads((tmp_path / "max_rate.json").read_text())
        assert report["runs"][0]["metrics"]["max_rate_rps"] > 0
    if "--seeds" in argv:
        assert "hit_ratio" in stdout
    if argv[0] == "--plan":  # the fleet plan: some EIC per rack is what reaches the hit ratio
        chosen = next(line for line in stdout.splitlines() if line.startswith("chosen:"))
        assert "eic=" in chosen and "eic=0GiB" not in chosen
