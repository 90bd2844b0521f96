"""Random combinations of valid settings across every mode (hypothesis): each draw must exit 0 with a report that
passes the invariant checker (tests/report_invariants.py), or exit 2 with one line naming a key, flag or file
(README: exit status). An exit 1, a traceback, a hang or a violated invariant is a finding.

Each draw is a tiny run (``--preset smoke``, at most 60 requests) of main.main in-process (as ``run_cli`` does;
a subprocess costs ~5 s of imports a draw). The generator and the judgement are tests/random_settings.py's, which
``python tools/random_runs.py --draws N --seed S`` draws from for a hunt of many draws (tools/README.md); the committed
test keeps a small deterministic budget for CI and the generator's lighter form: per-tier policies and the learned
policy are left out here (each new per-tier combination compiles its kernels once, ~40 s, README Policy study).
"""

from __future__ import annotations

import json
import signal

import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.random_settings import DrawChooser, draw_argv, judge

HANG_S = 120  # far above any draw once its kernels are compiled (the hunt's slowest warm draw: ~12 s, --max-rate)


@st.composite
def combinations(draw) -> list[str]:
    """argv of one run (tests/random_settings.py: the generator tools/random_runs.py draws from too)."""
    return draw_argv(DrawChooser(draw))


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="draws use the public traces in ../shared/data")
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=combinations())
def test_every_combination_gives_a_consistent_report_or_a_one_line_error(run_cli, tmp_path, argv):
    out = tmp_path / "r.json"
    out.unlink(missing_ok=True)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        status, _, err = run_cli(*argv, "--quiet", "--no-plot", "--report-json", out)
    except _Hang:
        pytest.fail(f"no answer in {HANG_S} s: {' '.join(argv)}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    report = json.loads(out.read_text()) if status == 0 and out.exists() else None
    problem = judge(status, err, report, argv)
    assert problem is None, (problem, err[-3000:], argv)
