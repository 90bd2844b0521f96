"""A Ray cluster named for --backend ray (--ray-address, or RAY_ADDRESS in the environment) that is not there is bad
input found in seconds, before any work: exit 2 and one line naming where the address came from.

Before: given a GCS address where nothing listens (127.0.0.1:1), Ray 2.60's ray.init tried ~40 s twenty times (over
13 minutes, three lines of native warnings a try) inside one native call that held off this command's Ctrl-C and
SIGTERM handlers; "auto" with no cluster on the machine, a malformed address ("foo") and a Ray Client address that
timed out were internal errors (exit 1, a traceback). CI has no Ray: the command-line tests run a stand-in whose
``init`` waits as Ray's did, or raises Ray's ConnectionError for "auto"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.runner import RAY_CONNECT_TIMEOUT_S, check_ray_address
from sim.errors import InputError
from tests.conftest import ROOT
from tests.test_sweep import TINY_SYNTHETIC, _spec

STAND_IN = '''
"""ray.init as Ray 2.60 behaves for a cluster that is not there (tests/test_ray_address.py), and nothing else."""
import os, time
from pathlib import Path

MARKS = Path(os.environ["RAY_STAND_IN_MARKS"])


def is_initialized():
    return False


def init(address=None, **options):
    (MARKS / "init").write_text(str(address))
    if address == "auto":
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")
    time.sleep(600)  # a GCS address nothing answers at: Ray's retries


def shutdown():
    (MARKS / "shutdown").write_text("")
'''


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed: a connection to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address", ["foo", "host:", ":6379", "host:0", "host:65536", "host:port", "http://host:80",
                                     "ray://", "", "host:²", "host:١٢٣"])
def test_an_address_of_no_ray_form_is_refused(address):
    """(A port of non-ASCII digits: '²' passed str.isdigit and int() raised ValueError, exit 1; '١٢٣' was read as
    port 123: hfuzz9.)"""
    with pytest.raises(InputError, match=r"^--ray-address 'X': not a Ray cluster address; expected HOST:PORT"):
        check_ray_address(address, "--ray-address 'X'")


def test_a_port_where_nothing_listens_is_refused_at_once():
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"[::1]:{port}" if socket.has_ipv6 else None):
        if address is None:
            continue
        start = time.perf_counter()
        with pytest.raises(InputError, match=r"^RAY_ADDRESS='A' in the environment: no Ray cluster answers there "):
            check_ray_address(address, "RAY_ADDRESS='A' in the environment")
        assert time.perf_counter() - start < RAY_CONNECT_TIMEOUT_S


def test_an_address_that_answers_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_ray_address(f"127.0.0.1:{port}", "--ray-address")
        check_ray_address(f"ray://127.0.0.1:{port}", "--ray-address")
    check_ray_address("auto", "--ray-address")  # (Ray's to find: run_ray reports its error)


def test_no_answer_in_time_and_no_such_host_are_said(monkeypatch):
    def silent(address, timeout):
        assert timeout == RAY_CONNECT_TIMEOUT_S
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(InputError, match=r"no Ray cluster answers there \(no answer within 5 s\)"):
        check_ray_address("10.0.0.1:6379", "--ray-address '10.0.0.1:6379'")

    def unknown(address, timeout):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unknown)
    with pytest.raises(InputError, match=r"^--ray-address 'h': cannot resolve host 'nohost.invalid' \(Name or service"):
        check_ray_address("ray://nohost.invalid", "--ray-address 'h'")


def _run(tmp_path: Path, argv: list[str], ray_address: str = "") -> tuple[int, str, Path]:
    """main.py with the stand-in as ``ray``: status, stderr, and the stand-in's marks."""
    site = tmp_path / "site" / "ray"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(STAND_IN)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
               RAY_STAND_IN_MARKS=str(marks), RAY_ADDRESS=ray_address)
    try:
        done = subprocess.run([sys.executable, "main.py", *argv, "--backend", "ray", "--no-plot", "--quiet"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("still waiting for the Ray cluster after 60 s")
    return done.returncode, done.stderr, marks


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_sweep_on_a_cluster_that_is_not_there_is_refused_before_it_starts(tmp_path, how):
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [300, 600]})
    address = f"127.0.0.1:{_closed_port()}"
    argv = ["--sweep", spec, "--report-csv", str(tmp_path / "s.csv")]
    if how == "flag":
        status, err, marks = _run(tmp_path, [*argv, "--ray-address", address])
        named = f"--ray-address '{address}'"
    else:
        status, err, marks = _run(tmp_path, argv, ray_address=address)
        named = f"RAY_ADDRESS='{address}' in the environment"
    assert (status, err) == (2, f"kvsim: error: {named}: no Ray cluster answers there (Connection refused); start "
                                "one with 'ray start --head', or drop the address to start a Ray for this run\n")
    assert not (marks / "init").exists() and not (tmp_path / "s.journal.jsonl").exists()  # before any work


def test_a_plan_on_a_cluster_that_is_not_there_is_refused_before_it_starts(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"workload: {{trace: {ROOT / 'trace/data/azure_conv_2023.csv'}}}\n"
                    "target: {slo: {ttft_s: 0.3}, rate_rps: 40}\nsearch: {gpu: [h100-sxm], gpus: [1, 2]}\n")
    status, err, marks = _run(tmp_path, ["--plan", str(plan), "--ray-address", "foo"])
    assert (status, err) == (2, "kvsim: error: --ray-address 'foo': not a Ray cluster address; expected HOST:PORT (a "
                                "Ray head's GCS port, 6379 by default), ray://HOST[:PORT] (Ray Client) or auto\n")
    assert not (marks / "init").exists()


def test_auto_with_no_cluster_is_bad_input_not_an_internal_error(tmp_path):
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [300, 600]})
    status, err, marks = _run(tmp_path, ["--sweep", spec, "--ray-address", "auto"])
    assert (status, err) == (2, "kvsim: error: cannot connect to the Ray cluster at auto: Could not find any running "
                                "Ray instance. Please specify the one to connect to by setting `--address` flag or "
                                "`RAY_ADDRESS` environment variable.\n")
    assert (marks / "shutdown").exists()  # whatever Ray had started is shut down
