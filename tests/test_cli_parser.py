"""The command lines' parser (``sim.cli.OneLineParser``): argparse's own refusals, in one line that says what to do."""

from __future__ import annotations

import pytest

from learned.train import main as train_main
from main import main as kvsim_main


def _status(command, argv: list[str]) -> int:
    """The exit status of ``command(argv)``: main.py's returns it, argparse's refusals raise it."""
    try:
        return command(argv)
    except SystemExit as done:
        return done.code


@pytest.mark.parametrize(("command", "argv", "line"), [
    (kvsim_main, ["--policy", "-x"],
     "kvsim: error: argument --policy: expected one argument ('-x' was read as a flag: write --policy=-x)"),
    (train_main, ["--out", "m.txt", "--range", "-0.1:0.5"],
     "learned.train: error: argument --range: expected one argument ('-0.1:0.5' was read as a flag: "
     "write --range=-0.1:0.5)"),
])
def test_a_value_starting_with_a_dash_is_named_with_the_spelling_that_passes_it(capsys, command, argv, line):
    """argparse takes '-0.1:0.5' for a flag (not a negative number) and said only "expected one argument"."""
    assert _status(command, argv) == 2
    assert capsys.readouterr().err == line + " (see --help)\n"


def test_a_missing_value_before_another_flag_gets_no_such_hint(capsys):
    assert _status(kvsim_main, ["--policy", "--pd"]) == 2  # '--pd' is a flag: the value is missing, not misread
    assert capsys.readouterr().err == "kvsim: error: argument --policy: expected one argument (see --help)\n"


def test_a_flag_with_two_spellings_gets_the_hint_for_the_one_given(capsys):
    """argparse names '-o/--out'; the hint looked for '-o' alone in the command line."""
    from sim.cli import OneLineParser

    parser = OneLineParser(prog="tool")
    parser.add_argument("-o", "--out")
    assert _status(parser.parse_args, ["--out", "-x.json"]) == 2
    assert capsys.readouterr().err == ("tool: error: argument -o/--out: expected one argument ('-x.json' was read as a "
                                       "flag: write --out=-x.json) (see --help)\n")
