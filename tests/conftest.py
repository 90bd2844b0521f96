"""Shared fixtures: the public data folder ``../shared/data`` and a CLI runner."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from sim.config import ComputeConfig

# A default config's roofline efficiencies (compute.*, sim.config.ComputeConfig), for the tests that build a
# RooflineCompute whose expectations do not depend on them; a hand-computed case passes its own
ROOFLINE_EFFICIENCIES = {"flops_efficiency": ComputeConfig.flops_efficiency,
                         "bandwidth_efficiency": ComputeConfig.bandwidth_efficiency}

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KVSIM_SHARED_DATA", ROOT.parent / "shared" / "data"))
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"


@pytest.fixture(scope="session", autouse=True)
def _kernels_compiled_once_between_workers(request, tmp_path_factory) -> None:
    """Under pytest-xdist, for the whole suite (or folders of it, unfiltered), each worker first compiles its share of
    the policies' kernels (``tests.kernel_warmup``: groups claimed in a folder beside the workers' temporary folders);
    a run of some files or tests (or ``-n 0``) compiles only what its tests use, as they come."""
    config = request.config
    whole = all(Path(arg.split("::")[0]).is_dir() for arg in config.args) and not config.option.keyword \
        and not config.option.markexpr
    if whole and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 and "PYTEST_XDIST_WORKER" in os.environ:
        from tests.kernel_warmup import warm_share

        warm_share(tmp_path_factory.getbasetemp().parent / "kernel-warmup-claims")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: skipped when absent on a newcomer's clone, a failure under CI=true."""
    if not SHARED_DATA.is_dir():
        message = f"public data folder {SHARED_DATA} not found (set KVSIM_SHARED_DATA or clone beside shared/)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — required under CI=true")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture
def run_cli(tmp_path, capsys):
    """Run ``main.main(argv)`` in-process; returns (exit status, stdout, stderr)."""
    import main

    def run(*argv: str) -> tuple[int, str, str]:
        status = main.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture(params=[None, 1, 2, 3], ids=["one-chunk", "chunk1", "chunk2", "chunk3"])
def chunk_rows(request, monkeypatch):
    """Run a test with the default chunk size and with tiny chunks (chunk-boundary bookkeeping)."""
    from trace import readers  # noqa: PLC0415  (after main has put the project root first)

    if request.param is not None:
        monkeypatch.setattr(readers, "CHUNK_ROWS", request.param)
    return request.param


@contextmanager
def script_module(path: Path):
    """A script (tools/, benchmarks/) as a module, registered in sys.modules while in use: dataclasses look their
    module up while their class is built."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def replay_module():
    """benchmarks/replay_vllm.py as a module (a script, not a package): its engine overlay and latency definitions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_vllm", ROOT / "benchmarks" / "replay_vllm.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    return replay


def identical_reruns(run_cli, tmp_path: Path, *argv) -> dict:
    """Run the command line twice with ``--report-json``; both reports are byte-identical but for ``timing`` (the
    Contract's determinism). Returns the report."""
    import json

    texts = []
    for name in ("a", "b"):
        out = tmp_path / f"rerun-{name}.json"
        status, _, err = run_cli(*argv, "--report-json", out)
        assert status == 0, err
        report = json.loads(out.read_text())
        report.pop("timing")
        texts.append(json.dumps(report, sort_keys=True))
    assert texts[0] == texts[1]
    return json.loads(texts[0])


def assert_cluster_serves_as_single_node(config, keys=("requests_completed", "accesses", "hits", "ttft_s",
                                                        "tpot_s")) -> None:
    """A one-instance cluster with no lower tier serves ``config``'s workload as the single-node mode does (the
    independent path: no fetch, no location): every request's times and cached tokens, and the metrics ``keys``."""
    import numpy as np

    from sim.cluster.run import run_cluster
    from sim.serving.admission import admit
    from sim.serving.run import run_serving
    from trace.workload import load_workload

    trace = load_workload(config)
    admit(trace, config)
    cluster, cluster_table = run_cluster(trace, config)
    single, single_table = run_serving(trace, config, "single")
    assert cluster.metrics["hits"] > 0 and cluster.metrics["ttft_breakdown_s"]["queue"] > 0
    for name in ("scheduled", "first_token", "last_token", "cached_tokens"):
        np.testing.assert_array_equal(getattr(cluster_table, name), getattr(single_table, name), err_msg=name)
    for key in keys:
        assert cluster.metrics[key] == single.metrics[key], key


IMPORT_INTERRUPTED = """
import os, runpy, sys
class Interrupt:  # Ctrl-C (or the signal ``signum``, sent to the process) arriving while ``name`` is being imported
    def find_spec(self, name, path=None, target=None):
        if name == {name!r}:
            {stop}
sys.meta_path.insert(0, Interrupt())
sys.argv = [{script!r}, *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def interrupted_while_importing(script: Path, module: str, signum: int | None = None,
                                args: tuple[str, ...] = ("--help",)):
    """``script args`` (``--help``) run as a program, with Ctrl-C (or the signal ``signum``, as ``kill`` sends it)
    arriving while it imports ``module``: the finished process."""
    import subprocess
    import sys

    stop = "raise KeyboardInterrupt" if signum is None else f"os.kill(os.getpid(), {int(signum)})"
    code = IMPORT_INTERRUPTED.format(name=module, script=str(script), stop=stop, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)


@pytest.fixture(scope="module")
def small_learned_model(tmp_path_factory) -> Path:
    """A learned model of the synthetic multi-turn workload at 512-token blocks (trained in about a second)."""
    from learned.train import main as train_main

    out = tmp_path_factory.mktemp("model") / "model.txt"
    assert train_main(["--out", str(out), "--range", "0:1", "--rounds", "3", "--set", "serving.block_size=512",
                       "--set", "workload.synthetic.num_requests=400"]) == 0
    return out


def atomic_leftovers(directory: Path) -> list[str]:
    """The temporary files an interrupted ``atomic_write`` would have left in ``directory``."""
    from sim.report.output import TEMP_PREFIX

    return [p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def figures(monkeypatch):
    """The figures sim.report's plot functions make, kept open (their ``save`` is replaced by one that records
    them)."""
    from sim.report import plots, serving_plots, sweep_plots

    made = []

    def keep(fig, path, source=None):
        fig.tight_layout()  # lay out as plots.save does before writing
        fig.canvas.draw()
        made.append(fig)
        return path

    for module in (plots, serving_plots, sweep_plots):
        monkeypatch.setattr(module, "save", keep)
    yield made
    import matplotlib.pyplot as plt

    for fig in made:
        plt.close(fig)
