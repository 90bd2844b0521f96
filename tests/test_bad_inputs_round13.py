"""Bad-input round 13: the bug-hunting tools' own command lines (tools/edge_runs.py, tools/overload_grid.py).

Bad usage is exit 2 with one line naming the flag (or the file and line), before any run; an --out whose folder is
still to be made is made, as kvsim's own outputs make theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EDGE = [sys.executable, str(ROOT / "tools" / "edge_runs.py")]
GRID = [sys.executable, str(ROOT / "tools" / "overload_grid.py")]
# the cheapest real selections: one key's two smoke runs (~4 s), one synthetic grid point of 40 requests (~3 s)
KEY = "serving.enforce_eager"
POINT = "multi-turn 5/s out 1000 n40 seed 0"


def _run(argv: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _one_line(done: subprocess.CompletedProcess) -> str:
    """The refusal's message, once it is checked to be exit 2 and one line with no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    message = done.stderr.strip()
    assert "Traceback" not in done.stderr and "\n" not in message, message
    return message


@pytest.mark.parametrize("flag, value", [("--timeout", "nan"), ("--timeout", "inf"), ("--memory-gib", "nan"),
                                         ("--memory-gib", "inf")])
def test_edge_runs_refuses_a_limit_that_is_no_number(flag, value, tmp_path):
    """nan passed ``<= 0`` and inf any bound: every run of the tool was then a finding (no answer within nan s of
    CPU; a child that died setting its address-space limit to int(inf)), exit 1, the tool's bugs reported as kvsim's."""
    assert flag in _one_line(_run([*EDGE, flag, value, "--only", "seed", "--list"], tmp_path))


@pytest.mark.parametrize("content", ["garbage\n", '{"key": "seed"}\n', "[1]\n"])
def test_edge_runs_resume_names_a_line_of_out_that_is_no_run(content, tmp_path):
    """--resume read --out's lines as records without a check: a JSONDecodeError or KeyError traceback, exit 1."""
    (tmp_path / "runs.jsonl").write_text(content)
    message = _one_line(_run([*EDGE, "--resume", "--out", "runs.jsonl", "--only", "seed", "--list"], tmp_path))
    assert "runs.jsonl" in message and "line 1" in message, message


def test_edge_runs_makes_the_folder_of_its_out(tmp_path):
    """check_writable takes an --out whose folders are still to be made (kvsim's outputs make them); the tool opened
    the file without them: a FileNotFoundError traceback, exit 1."""
    done = _run([*EDGE, "--only", KEY, "--out", "new/folder/runs.jsonl"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = (tmp_path / "new" / "folder" / "runs.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["command"] for line in runs) == [  # its two edge values, in either order
        f"python main.py --preset smoke --set {KEY}={value}" for value in ("false", "true")], runs


@pytest.mark.parametrize("argv, names", [
    (["run", "--out", "g.jsonl", "--jobs", "0", "--only", POINT], ("--jobs",)),  # a ValueError traceback
    (["run", "--out", "sub", "--only", POINT], ("--out", "directory")),  # IsADirectoryError traceback
    (["run"], ("--out",)),  # argparse's usage block and error: two lines
    (["run", "--out", "g.jsonl", "--out", "h.jsonl", "--only", POINT], ("--out",)),  # the last taken, unsaid
    (["judge"], ("grid",)),
    (["bogus"], ("bogus",)),
])
def test_overload_grid_refuses_bad_usage_in_one_line(argv, names, tmp_path):
    (tmp_path / "sub").mkdir()
    done = _run([*GRID, *argv], tmp_path)
    message = _one_line(done)
    assert all(name in message for name in names), (names, message)
    assert done.stderr.startswith("overload_grid.py: error: "), done.stderr
    assert not (tmp_path / "g.jsonl").exists()


@pytest.mark.parametrize("content", ["garbage\n", '{"class": "single"}\n', "[1]\n"])
def test_overload_grid_names_a_line_of_out_that_is_no_point(content, tmp_path):
    """run reads the points --out holds to skip them: a line that is none was a traceback (exit 1)."""
    (tmp_path / "g.jsonl").write_text(content)
    message = _one_line(_run([*GRID, "run", "--out", "g.jsonl", "--only", POINT], tmp_path))
    assert "g.jsonl" in message and "line 1" in message, message


def test_overload_grid_makes_the_folder_of_its_out(tmp_path):
    done = _run([*GRID, "run", "--out", "new/folder/g.jsonl", "--only", POINT], tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    points = (tmp_path / "new" / "folder" / "g.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in points] == [POINT]


def test_overload_grid_refuses_a_rule_from_a_folder_without_kvsim(tmp_path):
    """judge --rule-from FOLDER put FOLDER first on the path; where it holds no kvsim, the import fell through to
    this checkout's rule and the tool printed that rule's scores as FOLDER's, exit 0."""
    (tmp_path / "g.jsonl").write_text("")
    (tmp_path / "empty").mkdir()
    message = _one_line(_run([*GRID, "judge", "g.jsonl", "--rule-from", "empty"], tmp_path))
    assert all(part in message for part in ("--rule-from", "empty", "not a kvsim checkout")), message


@pytest.mark.parametrize("argv", [[*EDGE, "--skip", "", "--list"], [*EDGE, "--only", "", "--list"],
                                  [*GRID, "run", "--out", "grid.jsonl", "--only", ""]])
def test_an_empty_name_part_is_refused(argv, tmp_path):
    """Every name contains the empty string: edge_runs' --skip '' left out every run ("0 runs, 0 findings", exit 0)
    and overload_grid's --only '' ran the whole grid."""
    assert "--only" in _one_line(_run(argv, tmp_path))


@pytest.mark.parametrize("argv, names", [
    ([*EDGE, "--only", "serving.enforce_eagre"], ("--only 'serving.enforce_eagre'", "124 keys", "cache, cluster")),
    ([*GRID, "run", "--out", "g.jsonl", "--only", "multi turn"], ("--only 'multi turn'", "179 points", "multi-turn")),
])
def test_an_only_that_picks_nothing_is_refused_naming_what_there_is(argv, names, tmp_path):
    """A misspelt --only ran nothing at exit 0 ("0 runs, 0 findings"; the grid silently): refused before any run or
    --out, naming the filter and the names there are (edge_runs: 124 keys under 11 sections; the grid: 179 points)."""
    message = _one_line(_run(argv, tmp_path))
    assert all(name in message for name in names), (names, message)
    assert not (tmp_path / "g.jsonl").exists()
