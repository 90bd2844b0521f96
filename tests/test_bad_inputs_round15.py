"""Bad-input round 15: this session's surfaces (the YAML number checks, the requests CSV written without pandas, the
LLMServingSim bundle kept per process, the plots' save, the cluster scheduler's admissions)."""

from __future__ import annotations

import json

from tests.conftest import BUNDLED_AZURE


def test_an_explicitly_tagged_string_that_looks_like_a_yaml12_octal_reads_as_written(run_cli, tmp_path):
    """``!!str 0o17`` is the string '0o17' in YAML 1.1 and 1.2 alike (the spec's explicit tag: no resolution), so the
    check that refuses an unquoted 0o17 (the versions read it apart) has nothing to refuse: a trace file named 0o17,
    given so, is read. The check looked at the resolved tag, which an explicit !!str shares, and refused it."""
    (tmp_path / "0o17").write_text(BUNDLED_AZURE.read_text())
    config = tmp_path / "c.yaml"
    config.write_text("workload:\n  trace: !!str 0o17\n")
    report = tmp_path / "r.json"
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["trace"]["path"].endswith("0o17")
    config.write_text("workload:\n  trace: 0o17\n")  # unquoted, untagged: still refused at its line
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet")
    assert status == 2 and "'0o17'" in err and "line 2" in err and len(err.strip().splitlines()) == 1, err


def test_a_requests_csv_is_never_held_whole_in_memory(tmp_path):
    """--requests-csv of a large run: the writer formatted every row's text before writing any (~2 GB of Python
    strings for a million requests, where pandas' to_csv, which it replaced, wrote in chunks: +2.0 GB peak RSS against
    +0.3 GB). Each further row may cost a run's numbers (a few 8-byte floats), not its text as Python strings (~60
    bytes a value, several times the row's bytes in the file): the peak grows by well under the file's growth."""
    import tracemalloc

    import numpy as np

    from sim.report.metrics import RequestTable, write_requests_csv

    def peak_and_size(n: int) -> tuple[int, int]:
        rng = np.random.default_rng(3)
        table = RequestTable(np.sort(rng.random(n)) * 1e4, rng.integers(1, 10**5, n), rng.integers(1, 10**3, n))
        for name in ("queued", "scheduled", "prefill_done", "first_token", "last_token"):
            getattr(table, name)[:] = table.arrival + rng.random(n)
        path = tmp_path / f"requests{n}.csv"
        tracemalloc.start()
        try:
            write_requests_csv(table, path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(path.read_text().splitlines()) == 1 + n
        return peak, path.stat().st_size

    (peak_small, size_small), (peak_large, size_large) = peak_and_size(10_000), peak_and_size(40_000)
    assert peak_large - peak_small < (size_large - size_small) / 2, (peak_small, peak_large, size_small, size_large)


def test_a_requests_csv_written_in_chunks_is_pandas_to_csv(tmp_path, monkeypatch):
    """Differential across chunk boundaries (3 rows a chunk, 0 to 10 rows): byte for byte pandas' DataFrame.to_csv,
    NaNs and infinities included."""
    import numpy as np
    import pandas as pd

    import sim.report.metrics as metrics

    monkeypatch.setattr(metrics, "REQUESTS_CSV_CHUNK", 3, raising=False)
    rng = np.random.default_rng(5)
    for n in (0, 1, 3, 4, 10):
        table = metrics.RequestTable(rng.random(n), rng.integers(1, 100, n), rng.integers(1, 9, n))
        table.first_token[:] = np.where(rng.random(n) < 0.5, np.inf, table.arrival + 1.0)
        with np.errstate(all="ignore"):
            metrics.write_requests_csv(table, tmp_path / "r.csv")
            frame = pd.DataFrame({"request_id": np.arange(n), **{k: getattr(table, k) for k in metrics.REQUEST_COLUMNS},
                                  **metrics.request_columns(table)})
        assert (tmp_path / "r.csv").read_text() == frame.to_csv(index=False, lineterminator="\n", na_rep="nan")


def test_a_kept_bundle_model_sees_an_edit_behind_a_linked_folder(tmp_path):
    """A bundle whose tp1/ is a symbolic link to tables kept elsewhere: an edit of those tables between two runs of
    one process (a sweep's or a max-rate search's points) is read, as a fresh ``load`` reads it (tests/test_moe.py's
    hand case: attention 5 us -> 7 us a layer on 2 layers, 105 -> 109 us a step). The files were listed with
    Path.rglob, which does not enter a linked folder, so the model kept from before the edit was returned."""
    import shutil

    import pytest

    from sim.serving.compute import StepShape
    from sim.serving.llmservingsim_compute import LLMServingSimCompute
    from tests.test_moe import TINY, _bundle

    root = _bundle(tmp_path / "bundle", 1, 1)
    shared = tmp_path / "shared_tp1"
    shutil.move(root / "tp1", shared)
    (root / "tp1").symlink_to(shared, target_is_directory=True)
    (shared / "up").symlink_to(root, target_is_directory=True)  # a link back up: not walked, no loop
    shape = StepShape.decode_batch([16, 16])
    assert LLMServingSimCompute.load_kept(root, TINY, 1).step_time(shape) == pytest.approx((2 * 51.5 + 2) * 1e-6)
    table = shared / "attention.csv"
    table.write_text(table.read_text().replace(",5\n", ",7\n"))
    assert LLMServingSimCompute.load_kept(root, TINY, 1).step_time(shape) == pytest.approx((2 * 53.5 + 2) * 1e-6)


def test_a_matplotlibrc_with_constrained_layout_draws_the_same_plots_silently(tmp_path):
    """A user's matplotlibrc saying figure.constrained_layout.use: every figure kvsim made had a constrained layout
    engine, which save's tight_layout replaced with "UserWarning: The figure layout has changed to tight" on stderr,
    one per plot (with a source line of kvsim's). The plot is tight_layout's either way: the same bytes as under
    matplotlib's defaults, and nothing on stderr."""
    import warnings

    import matplotlib
    import matplotlib.pyplot as plt

    from sim.report.plots import save

    def draw(name: str) -> bytes:
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].plot([0, 1, 2], [1, 3, 2])
        axes[1].hist([1, 2, 2, 3, 3, 3], bins=3)
        fig.suptitle("a title")
        return save(fig, tmp_path / name).read_bytes()

    plain = draw("plain.png")
    with matplotlib.rc_context({"figure.constrained_layout.use": True}), warnings.catch_warnings():
        warnings.simplefilter("error")
        constrained = draw("constrained.png")
    assert constrained == plain


def test_an_mplbackend_matplotlib_does_not_know_leaves_the_plots_drawn(tmp_path):
    """kvsim draws its PNGs with Agg whatever the environment says, but matplotlib reads MPLBACKEND when first imported
    and refuses a name it does not know: MPLBACKEND=foo (a typo, or a backend of a notebook's) was a traceback and
    exit 1 after the whole run, its plots not drawn. The run is exit 0 with its plots; the variable is left as it
    was for any other program."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import os, sys, main\n"
            f"status = main.main(['--workload-trace', {str(BUNDLED_AZURE)!r}, '--workload-limit', '30', '--quiet', "
            f"'--plot-dir', {str(tmp_path / 'plots')!r}])\n"
            "print(status, os.environ['MPLBACKEND'])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "foo"})
    assert done.stdout.strip().splitlines()[-1:] == ["0 foo"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")), "no plots drawn"
