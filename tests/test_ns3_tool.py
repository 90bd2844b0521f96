"""tools/ns3_kv_timing.py: its tables load into kvsim, its input checks, and (with ns-3 installed) a tiny run.

The ns-3 test needs the optional ``ns3`` package (``pip install ns3``; CI does not install it,
so there it is skipped). Importing ns-3 takes ~10-20 s, so both scenarios run in one process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, script_module

TOOL = ROOT / "tools" / "ns3_kv_timing.py"
TOOL_TABLE = ROOT / "profiles" / "ns3_tcp_p2p_100gbps_mtu9000.json"  # made by the tool's default point-to-point run
HEADERS = 52  # IPv4 20 + TCP 20 + timestamp option 12 bytes per segment


@pytest.fixture(scope="module")
def tool():
    with script_module(TOOL) as module:
        yield module


def wire_time(nbytes: int, mtu: int = 9000, gbps: float = 100.0) -> float:
    """Serialisation of ``nbytes`` cut into MTU-sized TCP/IP packets, back to back."""
    packets = math.ceil(nbytes / (mtu - HEADERS))
    return (nbytes + HEADERS * packets) * 8 / (gbps * 1e9)


def test_the_tool_table_drives_a_pd_transfer(run_cli, tmp_path):
    # one request, so its KV transfer has the link alone: the time is the table's, interpolated
    report = tmp_path / "r.json"
    status, _, err = run_cli("--pd", "--workload-limit", "1", "--set", f"network.lookup={TOOL_TABLE}",
                             "--report-json", report, "--no-plot", "--quiet")
    assert status == 0, err
    data = json.loads(report.read_text())
    metrics = data["runs"][0]["metrics"]
    nbytes = metrics["kv_transfer_bytes"] / data["config"]["serving"]["tensor_parallel_size"]
    rows = json.loads(TOOL_TABLE.read_text())["rows"]
    sizes, times = [r["size_bytes"] for r in rows], [r["time_s"] for r in rows]
    assert sizes[0] < nbytes < sizes[-1], "the synthetic request's KV no longer falls inside the table"
    assert metrics["kv_transfer_s"]["mean"] == pytest.approx(np.interp(nbytes, sizes, times), rel=1e-9)


def test_help_works_without_importing_ns3():
    code = ("import runpy, sys; sys.argv = ['ns3_kv_timing.py', '--help']\n"
            f"try: runpy.run_path({str(TOOL)!r}, run_name='__main__')\n"
            "except SystemExit as e: print('exit', e.code, 'ns' in sys.modules, 'cppyy' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip().endswith("exit 0 False False"), proc.stdout + proc.stderr
    assert "point-to-point" in proc.stdout and "incast" in proc.stdout


def test_missing_ns3_exits_2_with_the_install_command(tool, tmp_path, capsys, monkeypatch):
    flows = sys.modules[tool.load_ns3.__module__]  # the tool's ns-3 half (tools/ns3_flows.py) loads ns-3
    monkeypatch.setattr(flows, "ns3_version", lambda: None)
    monkeypatch.setattr(flows, "_NS3", None)
    status = tool.main(["point-to-point", "--sizes-mib", "1,2", "--out", str(tmp_path / "t.json")])
    assert status == 2
    assert "pip install ns3" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("argv, named", [
    (["--mtu", "100"], "--mtu"),
    (["--latency-us", "-1"], "--latency-us"),
    (["--segment-bytes", "9000"], "--segment-bytes"),
    (["--sizes-mib", "4"], "--sizes-mib"),
    (["--out", "/proc/nonexistent-dir/t.json"], "--out"),  # (a missing folder elsewhere is created, as kvsim's)
    # passed the checks: ns-3 then failed on int(nan) / int(inf) (a traceback) or simulated 1e300 MiB
    (["--sizes-mib", "nan,1"], "--sizes-mib: every value must be positive and finite"),
    (["--sizes-mib", "1,inf"], "--sizes-mib: every value must be positive and finite"),
    (["--sizes-mib", "1,1e300"], "--sizes-mib: at most 65,536 MiB"),
    (["incast", "--senders", "100000000"], "--senders: at most 1,024 senders"),
])
def test_bad_input_exits_2_before_ns3_loads(tool, tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.setattr(tool, "load_ns3", lambda: pytest.fail("ns-3 loaded before the input was checked"))
    scenario, argv = (argv[0], argv[1:]) if argv[0] == "incast" else ("point-to-point", argv)
    base = {"--out": str(tmp_path / "t.json"), "--sizes-mib": "1,2"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    try:  # argparse's checks exit; the rest return the status
        status = tool.main([scenario, *[x for kv in base.items() for x in kv]])
    except SystemExit as done:
        status = done.code
    assert status == 2
    assert named in capsys.readouterr().err



@pytest.mark.parametrize("argv, flag", [(["point-to-point", "--sizes-mib", "x"], "--sizes-mib"),
                                        (["incast", "--senders", "0"], "--senders")])
def test_a_list_flag_refusal_names_its_flag_once(tool, capsys, argv, flag):
    """argparse puts "argument FLAG: " before a type's refusal; the type named the flag again
    ("argument --sizes-mib: --sizes-mib: expected ...")."""
    with pytest.raises(SystemExit) as done:
        tool.main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count(flag) == 1, err

def test_socket_buffers_cover_twice_the_bandwidth_delay_product(tool):
    # 100 Gb/s = 12.5e9 B/s. 1 µs: RTT = 2 (1 µs + 0.72 µs per 9000-byte packet) = 3.44 µs, BDP 43 kB,
    # so the 64-segment floor (64 × 8948) wins. 100 µs: RTT 201.44 µs, 2 × BDP = 5,036,000 bytes.
    short = tool.default_tcp(tool.LinkParams(100.0, 1.0, 9000), hops=1)
    long = tool.default_tcp(tool.LinkParams(100.0, 100.0, 9000), hops=1)
    assert (short.segment_bytes, short.socket_buffer_bytes) == (8948, 64 * 8948)
    assert long.socket_buffer_bytes == 5_036_000


def test_kvsim_prediction_for_equal_flows_is_n_times_the_lone_one(tool):
    assert tool.kvsim_max_min(4, 0.25) == pytest.approx([1.0] * 4)


@pytest.mark.skipif(importlib.util.find_spec("ns3") is None,
                    reason="ns3 (ns-3's Python bindings) is not installed: pip install ns3")
def test_tiny_transfers_match_serialisation_plus_propagation(tmp_path):
    p2p, incast = tmp_path / "p2p.json", tmp_path / "incast.json"
    runs = [["point-to-point", "--sizes-mib", "1,2", "--out", str(p2p)],
            ["incast", "--senders", "2", "--sizes-mib", "1", "--out", str(incast)]]
    code = (f"import json, sys; sys.path.insert(0, {str(TOOL.parent)!r}); import ns3_kv_timing as t\n"
            "sys.exit(max(t.main(argv) for argv in json.loads(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(runs)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    latency = 1e-6

    # One 1 µs hop: the first flight (65,535 bytes: a SYN-ACK's window is never scaled, RFC 7323)
    # outlasts the 3.4 µs RTT, so TCP never waits: serialisation of every packet plus one
    # propagation delay, to within 0.1% (rounding to ns-3's nanosecond clock).
    table = json.loads(p2p.read_text())
    assert table["ns3_version"] and table["parameters"]["mtu"] == 9000
    for row in table["rows"]:
        assert row["time_s"] == pytest.approx(wire_time(row["size_bytes"]) + latency, rel=1e-3)

    # Through the switch, two hops: + one more propagation and the last packet's store-and-forward.
    # The ~6 µs RTT now exceeds that 65,535-byte first flight, so the sender may wait once, at most
    # one RTT. Two equal flows share the bottleneck: the last ends after both flows' bytes crossed it.
    doc = json.loads(incast.read_text())
    nbytes = 1 << 20
    last_packet = (nbytes % (9000 - HEADERS) + HEADERS) * 8 / 100e9
    rtt = 2 * 2 * (latency + 9000 * 8 / 100e9)
    (alone,) = doc["rows"]
    (pair,) = doc["incast"]
    for measured, flows in ((alone["time_s"], 1), (max(pair["flow_times_s"]), 2)):
        bound = flows * wire_time(nbytes) + 2 * latency + last_packet
        assert bound * (1 - 1e-4) <= measured <= bound + rtt
    assert pair["switch_drops"] == 0 and pair["unfinished"] == 0
    assert pair["kvsim_times_s"] == pytest.approx([2 * alone["time_s"]] * 2)
