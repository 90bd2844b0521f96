"""Network models: analytic and NS-3 lookup times, fair sharing of a contended link."""

from __future__ import annotations

import json

import pytest

from sim.config import NetworkConfig
from sim.errors import ConfigError
from sim.serving.engine import Engine
from sim.serving.network import MIB, AnalyticNetwork, Link, LookupNetwork, network_model
from tests.conftest import ROOT

NS3_TABLE = ROOT / "profiles" / "ns3_kv_transfer_100gbps.json"  # copy of shared/data/profiles' table


def test_analytic_128_mib_over_100_gbps():
    model = network_model(NetworkConfig(bandwidth_gbps=100.0, latency_us=0.0))
    assert model.isolated_time(128 * MIB) * 1e3 == pytest.approx(10.737, abs=5e-4)  # 128·2^20·8 / 1e11


def test_ns3_overlay_128_mib(shared_data):
    model = network_model(NetworkConfig(lookup=str(shared_data / "profiles" / "ns3_kv_transfer_100gbps.json")))
    assert model.isolated_time(128 * MIB) * 1e3 == pytest.approx(10.86)


def test_lookup_interpolates_and_extrapolates():
    model = LookupNetwork.from_json(NS3_TABLE)
    rows = {r["size_mib"]: r["ns3_ms"] for r in json.loads(NS3_TABLE.read_text())["rows"]}
    assert model.isolated_time(96 * MIB) * 1e3 == pytest.approx((rows[64] + rows[128]) / 2)
    slope = (rows[512] - rows[256]) / 256
    assert model.isolated_time(1024 * MIB) * 1e3 == pytest.approx(rows[512] + 512 * slope)


def _run_flows(model, sizes_and_starts):
    engine, finished = Engine(), {}
    link = Link(engine, model)
    for i, (size, start) in enumerate(sizes_and_starts):
        engine.at(start, lambda i=i, size=size: link.send(size, lambda d, i=i: finished.__setitem__(i, engine.now)))
    engine.run()
    return finished


def test_two_concurrent_flows_share_the_link():
    model = AnalyticNetwork(bandwidth=100e9 / 8)
    finished = _run_flows(model, [(128 * MIB, 0.0), (128 * MIB, 0.0)])
    assert finished[0] * 1e3 == pytest.approx(21.47, abs=0.01) and finished[1] == pytest.approx(finished[0])


def test_concurrent_flows_share_the_bandwidth_and_each_pays_the_latency_once():
    """Two 1 s serializations started together over a link of 0.25 s latency: both bytes finish at 2 s (shared),
    each arrives 0.25 s later (a propagation delay, not link time): 2.25 s, not 2 x 1.25 = 2.5 s (the latency was
    processor-shared with the bytes; the cluster's paths already kept it apart)."""
    model = AnalyticNetwork(bandwidth=1.0, latency=0.25)
    assert _run_flows(model, [(1.0, 0.0), (1.0, 0.0)]) == {0: pytest.approx(2.25), 1: pytest.approx(2.25)}
    # alone: latency + bytes / bandwidth, as isolated_time
    assert _run_flows(model, [(1.0, 0.0)]) == {0: pytest.approx(model.isolated_time(1.0))}
    # staggered: B starts when A's bytes are half through; A's bytes end at 1.5 s, B's at 2.0 s, each + 0.25 s
    assert _run_flows(model, [(1.0, 0.0), (1.0, 0.5)]) == {0: pytest.approx(1.75), 1: pytest.approx(2.25)}


def test_staggered_flows_by_hand():
    # 1 s of service each; B starts at 0.5 s: A alone for 0.5 s, then both at half rate,
    # A's last 0.5 s takes 1 s -> A done at 1.5 s; B alone for its last 0.5 s -> 2.0 s.
    model = AnalyticNetwork(bandwidth=1.0)
    finished = _run_flows(model, [(1.0, 0.0), (1.0, 0.5)])
    assert finished == {0: pytest.approx(1.5), 1: pytest.approx(2.0)}


def test_the_bundled_tables_notes_are_accepted():
    # the notes beside the rows (SimAI's _source, bandwidth_gbps and per-row simple_ms; tools/ns3_kv_timing.py's
    # scenario, parameters, ns3_version, ..., per-row handshake_s and wall_s) are known keys, not refused; their times
    # are the rows' own: 128 MiB at 10.86 ms (SimAI) and the ns-3 run's 128 MiB row
    for name, ms in (("ns3_kv_transfer_100gbps.json", 10.86), ("ns3_tcp_p2p_100gbps_mtu9000.json", None)):
        path = ROOT / "profiles" / name
        rows = json.loads(path.read_text())["rows"]
        ms = ms or next(r["ns3_ms"] for r in rows if r["size_mib"] == 128)
        assert LookupNetwork.from_json(path).isolated_time(128 * MIB) * 1e3 == pytest.approx(ms, rel=1e-12)


def test_an_incast_tables_notes_as_the_tool_writes_them_are_accepted(tmp_path):
    # tools/ns3_kv_timing.py incast's parameters and an incast point (_incast_row) with an unfinished flow: its time,
    # slowdowns and handshake null, a drop count of zero. Every number checked (>= 0; senders, sizes, buffers above
    # zero) and the nulls, text and lists pass; the table times transfers by its rows alone
    path = tmp_path / "n.json"
    path.write_text(json.dumps({
        "scenario": "incast", "rows": [{"size_mib": 1, "time_s": 1e-4}, {"size_mib": 2, "time_s": 2e-4}],
        "parameters": {"bandwidth_gbps": 100.0, "latency_us": 0.0, "mtu": 9000, "segment_bytes": 8948,
                       "socket_buffer_bytes": 572672, "congestion_control": "TcpCubic", "min_rto_ms": 200.0,
                       "delayed_ack_ms": 40.0, "ns3_attributes": {"ns3::TcpSocket::SegmentSize": "8948"},
                       "switch": "router node", "switch_buffer_bytes": 1048576, "senders": [2, 4]},
        "incast": [{"senders": 2, "size_mib": 1, "size_bytes": MIB, "isolated_s": 1e-4, "flow_times_s": [2e-4, None],
                    "unfinished": 1, "switch_drops": 0, "slowdown_max": None, "slowdown_mean": None,
                    "kvsim_times_s": [2e-4, 2e-4], "kvsim_slowdown": 2.0, "handshakes_s": [2e-6, None],
                    "wall_s": 0.5}]}))
    assert LookupNetwork.from_json(path).isolated_time(1.5 * MIB) == pytest.approx(1.5e-4, rel=1e-12)


def test_a_tables_bandwidth_note_of_the_networks_least_bandwidth_is_accepted(tmp_path):
    # the notes' bandwidths share network.bandwidth_gbps' domain, whose least is MIN_GBPS (0.001 Gb/s) itself: a table
    # noting it (and its parameters') loads, its rows timed as given; a bandwidth just under it is refused. The rows
    # are no faster than that bandwidth (1 MiB at 1 Mb/s: 8.39 s), as a table's rows must be
    from sim.config import MIN_GBPS

    path = tmp_path / "n.json"
    for gbps in (MIN_GBPS, MIN_GBPS * (1 - 1e-9)):
        path.write_text(json.dumps({"bandwidth_gbps": gbps, "parameters": {"bandwidth_gbps": gbps},
                                    "rows": [{"size_mib": 1, "ns3_ms": 9e3}, {"size_mib": 2, "ns3_ms": 17e3}]}))
        if gbps < MIN_GBPS:
            with pytest.raises(ConfigError, match="'bandwidth_gbps' must be a bandwidth of 0.001 Gb/s or more"):
                LookupNetwork.from_json(path)
        else:
            assert LookupNetwork.from_json(path).isolated_time(2 * MIB) == pytest.approx(17.0, rel=1e-12)


def test_a_table_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    # a Windows editor's UTF-8 byte-order mark before the bundled SimAI table: refused ("Unexpected UTF-8 BOM (decode
    # using utf-8-sig)", exit 2) where a trace or YAML file with one is read. Now the same table: 128 MiB at 10.86 ms
    table = tmp_path / "bom.json"
    table.write_bytes(b"\xef\xbb\xbf" + (ROOT / "profiles" / "ns3_kv_transfer_100gbps.json").read_bytes())
    assert LookupNetwork.from_json(table).isolated_time(128 * MIB) * 1e3 == pytest.approx(10.86, rel=1e-12)


def test_bad_tables_are_named(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"rows": [{"size_mib": 1}]}')
    with pytest.raises(ConfigError, match="t.json"):
        LookupNetwork.from_json(bad)


def test_overlay_paths_resolve_relative_to_the_overlay(tmp_path, monkeypatch):
    from sim.config import load_config

    monkeypatch.chdir(tmp_path)  # anywhere: the overlay names its table relative to itself
    config = load_config(None, overlays=[ROOT / "profiles" / "rtx5090_llama3_8b_pd_study.yaml"])
    assert network_model(config.network).isolated_time(128 * MIB) * 1e3 == pytest.approx(10.86)


def test_lookup_below_its_smallest_size_keeps_the_tables_latency(tmp_path):
    # rows 1 MiB -> 1 ms and 3 MiB -> 2 ms: 0.5 ms a MiB over 0.5 ms of latency. Nothing sent takes no time, half a
    # MiB 0.5 + 0.25 ms (the two smallest rows' line: it was 0.5 ms through the origin, the latency lost), 2 MiB the
    # interpolation, 5 MiB the last rows' slope continued
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": [{"size_mib": 3, "ns3_ms": 2.0}, {"size_mib": 1, "ns3_ms": 1.0}]}))
    model = LookupNetwork.from_json(table)
    assert model.isolated_time(0) == 0.0
    assert model.isolated_time(MIB / 2) == pytest.approx(0.75e-3, rel=1e-12)
    assert model.isolated_time(2 * MIB) == pytest.approx(1.5e-3, rel=1e-12)
    assert model.isolated_time(5 * MIB) == pytest.approx(3.0e-3, rel=1e-12)
    # a table steeper than its own smallest row (1 MiB -> 1 ms, 2 MiB -> 3 ms: a line below zero at the origin)
    # keeps the origin's line: half a MiB half the smallest row's time
    table.write_text(json.dumps({"rows": [{"size_mib": 1, "ns3_ms": 1.0}, {"size_mib": 2, "ns3_ms": 3.0}]}))
    assert LookupNetwork.from_json(table).isolated_time(MIB / 2) == pytest.approx(0.5e-3, rel=1e-12)
