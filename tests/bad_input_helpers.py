"""The bad-input tables' row type and their one check (tests/test_bad_inputs.py, tests/test_bad_trace_inputs.py,
tests/test_bad_calibration_inputs.py, tests/test_bad_paths.py).

A row is a command line (with the files it writes into tmp_path) and its expected outcome: exit 2 with one short
line naming what is wrong, or exit 0 with counted skips. ``{tmp}`` in an argument is the test's tmp_path,
``{azure}`` the bundled Azure trace. No row may print a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.conftest import BUNDLED_AZURE

MAX_MESSAGE = 300
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE_ROWS = "".join(f"2023-11-16 18:15:{10 + i:02d}.0000000,{100 * (i + 1)},{10 + i}\n" for i in range(3))
AZURE_OK = AZURE_HEADER + AZURE_ROWS
TRACE_STATS = ["--trace-stats", "--no-plot", "--quiet"]


def mooncake(ts: int, tokens: int, out: int, ids: list, tail: str = "") -> str:
    return f'{{"timestamp": {ts}, "input_length": {tokens}, "output_length": {out}, "hash_ids": {ids}{tail}}}\n'


def bailian(chat: int, parent, ts: float) -> str:
    """A record in Alibaba Bailian's keys (tests/samples/README.md): 40 tokens, 3 blocks of 16."""
    return (f'{{"chat_id": {chat}, "parent_chat_id": {parent}, "timestamp": {ts}, "input_length": 40, '
            f'"output_length": 5, "type": "text", "turn": 1, "hash_ids": [{chat}, {chat + 100}, {chat + 200}]}}\n')


MOONCAKE_OK = mooncake(0, 600, 5, [1, 2]) + mooncake(10, 1000, 7, [1, 2]) + mooncake(20, 512, 9, [3])


@dataclass
class Case:
    argv: list[str]
    names: tuple[str, ...] = ()  # exit 2: each must appear in the one-line message
    skips: dict[str, int] | None = None  # exit 0: these counts in the report's trace.skip_reasons
    files: dict[str, str | bytes] = field(default_factory=dict)


def trace_stats(*extra: str, trace: str = "{tmp}/t.csv") -> list[str]:
    return [*TRACE_STATS, "--workload-trace", trace, *extra]


def setting(dotted: str, *names: str, mode: tuple[str, ...] = ("--trace-stats", "--no-plot")) -> Case:
    """A config value outside its domain: exit 2 naming the key (and the value)."""
    key, _, value = dotted.partition("=")
    return Case([*mode, "--set", dotted], names=(key, *names))


def _fill(arg: str, tmp_path) -> str:
    return arg.replace("{tmp}", str(tmp_path)).replace("{azure}", str(BUNDLED_AZURE))


def check_bad_input(case: Case, run_cli, tmp_path) -> None:
    for file, content in case.files.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    argv = [_fill(a, tmp_path) for a in case.argv]
    report = tmp_path / "out" / "report.json"
    if case.skips is not None:
        argv += ["--report-json", str(report), "--no-plot"] if "--no-plot" not in argv else ["--report-json", str(report)]
    status, out, err = run_cli(*argv)
    assert "Traceback" not in out + err
    if case.skips is None:
        message = err.strip()
        assert status == 2, (status, err[-2000:])
        assert "\n" not in message and message.startswith("kvsim: error: "), message[:1000]
        own = message.replace(str(tmp_path), "{tmp}")  # the user's path is not the message's verbosity
        assert len(own) < MAX_MESSAGE, (len(own), message[:1000])
        for needle in case.names:
            assert _fill(needle, tmp_path) in message, (needle, message)
    else:
        assert status == 0, err[-2000:]
        reasons = json.loads(report.read_text())["trace"]["skip_reasons"]
        assert reasons == case.skips


def refused_in_one_line(run_cli, argv: list) -> str:
    """The one line ``argv`` exits 2 with."""
    status, _, err = run_cli(*argv)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err
