"""A cluster transfer's path: its one-way latency is the sum of its hops' latencies, its bandwidth its narrowest
link's (``sim.serving.paths``; the latency-bandwidth model of a cut-through path, Hennessy & Patterson, appendix F.3)."""

from __future__ import annotations

import pytest

from sim.serving.engine import Engine
from sim.serving.network import AnalyticNetwork, Link
from sim.serving.paths import Path
from tests.test_cluster import cross_rack_run


def test_a_path_adds_its_hops_latencies_and_takes_its_narrowest_bandwidth():
    # NIC 12.5 GB/s + 5 us, uplink 50 GB/s + 20 us, PCIe 63 GB/s, a 10 us hop: 1 MB alone takes
    # 5 + 20 + 10 us + 1e6 / 12.5e9 s = 35 us + 80 us = 115 us (the old max-of-links: 85 us).
    engine = Engine()
    nic = Link(engine, AnalyticNetwork(12.5e9, 5e-6))
    uplink = Link(engine, AnalyticNetwork(50e9, 20e-6))
    pcie = Link(engine, AnalyticNetwork(63e9))
    path = Path([nic, uplink, pcie], "cross_rack", latency=5e-6 + 20e-6 + 10e-6)
    assert path.model.isolated_time(1e6) == pytest.approx(115e-6, rel=1e-12)
    done = []
    path.send(1e6, done.append)
    engine.run()
    assert done == [pytest.approx(115e-6, rel=1e-12)]


def test_two_transfers_share_a_paths_bandwidth_not_its_latency():
    # two 1 MB transfers started together on one 12.5 GB/s, 5 us link path: each serializes at half the rate
    # (160 us), then the 5 us latency: 165 us each (latency is a delay, not a share of the link)
    engine = Engine()
    nic = Link(engine, AnalyticNetwork(12.5e9, 5e-6))
    done = []
    for _ in range(2):
        Path([nic], "rack", latency=5e-6).send(1e6, done.append)
    engine.run()
    assert done == [pytest.approx(165e-6, rel=1e-12)] * 2


@pytest.mark.parametrize("uplink_us", [1.0, 4.9, 20.0])
def test_a_cross_rack_fetch_pays_every_hops_latency(tmp_path, uplink_us):
    # 2 racks x 1 node x 1 GPU, round-robin: request 3 (rack 1) fetches request 0's 3 blocks from rack 0's EIC
    # across the uplinks: EIC access 10 us + NIC to NIC 5 us + leaf -> spine -> leaf `uplink_us` + 3 blocks over
    # the narrowest link, the 100 Gb/s NIC (EIC 50 GB/s, uplinks 100 Gb/s x 1 node, PCIe 63 GB/s). Before, the
    # latency was the slowest link's: 1 and 4.9 us gave the same fetch, and 20 us replaced the NIC's 5 us.
    result, table = cross_rack_run(tmp_path, "cache.tiers.eic.capacity_gib=1", f"cluster.uplink_latency_us={uplink_us}")
    block = 2 * 32 * 8 * 128 * 2 * 512  # llama-3.1-8b bf16, 512-token blocks
    assert result.metrics["cluster"]["fetched_blocks"]["cross_rack"] == 3
    expected = (10 + 5 + uplink_us) * 1e-6 + 3 * block / (100e9 / 8)
    assert table.fetch[3] == pytest.approx(expected, rel=1e-9)  # (loaded before it is scheduled: its fetch)


def test_a_share_of_a_transfer_pays_that_share_of_the_serialization_and_of_the_latency():
    # a layer-wise PD transfer's exposed part (``ServingRun._layerwise``): a quarter of 1 MB over a 12.5 GB/s + 5 us
    # path is a quarter of 80 us on the link, then a quarter of the 5 us: 20 + 1.25 = 21.25 us (the whole latency
    # would be 25 us)
    engine = Engine()
    done = []
    Path([Link(engine, AnalyticNetwork(12.5e9, 5e-6))], "rack", latency=5e-6).occupy_share(1e6, 0.25, done.append)
    engine.run()
    assert done == [pytest.approx(21.25e-6, rel=1e-12)]
