"""Common runs start without the libraries they do not use (pandas ~0.4 s, matplotlib ~0.5 s to import), and the
numpy stand-ins for pandas on their path give pandas' numbers exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.report.metrics import REQUEST_COLUMNS, RequestTable, factorize, request_columns, write_requests_csv
from tests.conftest import BUNDLED_AZURE, ROOT
from trace.synthetic import _running_sums

PLAN = ROOT / "experiments" / "examples" / "plan_azure.yaml"
MOONCAKE = ROOT / "tests" / "samples" / "mooncake_arxiv.jsonl"

RUNS = {
    "readme-pd": ["--pd", "--preset", "smoke", "--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "200"],
    "cluster-pd-synthetic": ["--cluster", "--pd", "--set", "workload.synthetic.num_requests=100"],
    "agentic": ["--set", "workload.synthetic.kind=agentic", "--set", "workload.synthetic.num_requests=100"],
    "cache-only": ["--cache-only", "--workload-trace", str(MOONCAKE), "--policy", "lru,arc"],
    "plan": ["--plan", str(PLAN), "--workload-limit", "20"],
}


@pytest.mark.parametrize("name", list(RUNS))
def test_common_runs_import_neither_pandas_nor_matplotlib(name, tmp_path):
    """A run that reads no profile table, asks for no plot and writes no per-request CSV never imports pandas or
    matplotlib (collectives.py imported pandas for every serving run; the planner matplotlib under --no-plot)."""
    argv = [*RUNS[name], "--no-plot", "--quiet", "--report-json", str(tmp_path / "report.json")]
    code = ("import sys, main\n"
            f"status = main.main({argv!r})\n"
            "loaded = sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules)\n"
            "print(status, loaded)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr


def test_a_requests_csv_needs_no_pandas(tmp_path):
    """--requests-csv is written without pandas (importing it was ~0.25 s of the run)."""
    argv = [*RUNS["readme-pd"], "--no-plot", "--quiet", "--requests-csv", str(tmp_path / "requests.csv")]
    code = ("import sys, main\n"
            f"status = main.main({argv!r})\n"
            "print(status, 'pandas' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stdout + done.stderr
    assert len((tmp_path / "requests.csv").read_text().splitlines()) == 1 + 200  # the header and the 200 requests


def test_requests_csv_is_pandas_to_csv(tmp_path):
    """Differential: the per-request CSV is byte for byte what pandas' DataFrame.to_csv (the writer it replaces)
    writes for the same columns, on values full of NaNs, signed zeros, infinities, tiny and huge floats and ints."""
    rng = np.random.default_rng(11)
    pool = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-5, 1.5e-7, 1e16, 123456789.125, 0.1 + 0.2, 5e-324])
    for n in (0, 1, 7, 300):
        table = RequestTable(rng.choice(pool, n), rng.integers(0, 2**40, n), rng.integers(1, 5000, n))
        for name, (dtype, _) in REQUEST_COLUMNS.items():
            if name in ("arrival", "input_tokens", "output_tokens"):
                continue
            if np.dtype(dtype).kind == "f":
                values = np.where(rng.random(n) < 0.5, rng.choice(pool, n), rng.random(n) * 10.0 ** rng.integers(-8, 9, n))
            else:
                values = rng.integers(-1, 2**31, n)
            setattr(table, name, values.astype(dtype))
        with np.errstate(all="ignore"):  # (inf - inf in the derived columns: a NaN, as a run may have)
            write_requests_csv(table, tmp_path / "requests.csv")
            frame = pd.DataFrame({"request_id": np.arange(n),
                                  **{name: getattr(table, name) for name in REQUEST_COLUMNS}, **request_columns(table)})
        want = frame.to_csv(index=False, lineterminator="\n", na_rep="nan")
        assert (tmp_path / "requests.csv").read_text() == want


def test_factorize_by_hand():
    """Codes in order of first appearance; NaNs are one value, and 0.0 and -0.0 one (the first seen kept)."""
    codes, unique = factorize(np.array([2.5, -0.0, np.nan, 2.5, 0.0, np.nan, 1.0]))
    assert codes.tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert unique.tobytes() == np.array([2.5, -0.0, np.nan, 1.0]).tobytes()


def test_factorize_is_pandas_factorize():
    """Differential: pandas.factorize(use_na_sentinel=False), the reference it replaces, on draws full of ties,
    signed zeros, NaNs and infinities; the distinct values compared bit for bit."""
    rng = np.random.default_rng(7)
    pool = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.5, 2.5, 5e-324, 7.0])
    for n in [0, 1, 2, *rng.integers(3, 300, 200)]:
        values = np.where(rng.random(n) < 0.5, rng.choice(pool, n), np.round(rng.random(n), 2))
        want_codes, want_unique = pd.factorize(values, use_na_sentinel=False)
        codes, unique = factorize(values)
        assert np.array_equal(codes, want_codes)
        assert unique.tobytes() == want_unique.tobytes()


def test_running_sums_compensate_as_kahan_by_hand():
    """Per group, floats summed with Kahan's compensation: 1e16 + 1 + 1 + 1 + 1 - 1e16 is 4 (a plain running sum
    loses each 1 below 1e16's ulp of 2 and ends at 0); a NaN is NaN and skipped; integers add exactly."""
    values = np.array([1e16, 5.0, 1.0, 1.0, np.nan, 1.0, 1.0, -1e16, 2.0])
    group = np.array([0, 1, 0, 0, 0, 0, 0, 0, 1])
    got = _running_sums(values, group)
    assert got[0] == 1e16 and np.isnan(got[4])
    assert got[7] == 4.0 and np.cumsum(values[[0, 2, 3, 5, 6, 7]])[-1] == 0.0
    assert got[[1, 8]].tolist() == [5.0, 7.0]
    ints = _running_sums(np.array([3, 4, 5, 6], dtype=np.int64), np.array([1, 0, 1, 0]))
    assert ints.dtype == np.int64 and ints.tolist() == [3, 4, 8, 10]
    assert _running_sums(np.zeros(0), np.zeros(0, dtype=np.int64)).size == 0
    assert _running_sums(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)).size == 0


def test_running_sums_are_pandas_groupby_cumsum():
    """Differential: ``pd.Series(values).groupby(group).cumsum()``, the reference it replaces, bit for bit, on floats
    of every magnitude with NaN and inf (whose compensation turns NaN, as pandas' does) and on integers."""
    rng = np.random.default_rng(11)
    for trial in range(300):
        n, groups = int(rng.integers(1, 300)), int(rng.integers(1, 20))
        group = rng.integers(0, groups, n)
        if trial % 2:
            group = np.sort(group)  # contiguous runs, as the generators pass them
        if trial % 3 == 0:
            values = rng.integers(0, 10**9, n)
        else:
            values = rng.lognormal(3, 4, n) * rng.choice([1.0, -1.0], n)
            values[rng.random(n) < 0.05] = np.nan
            values[rng.random(n) < 0.02] = np.inf
        want = pd.Series(values).groupby(group, sort=False).cumsum().to_numpy()
        got = _running_sums(values, group)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
