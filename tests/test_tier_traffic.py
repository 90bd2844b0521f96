"""A serving run's lower-tier traffic (``metrics.tiers``): bytes each DRAM/SSD/EIC read and wrote, and the
busiest copy's share of its bandwidth. A shared device (``shared_read_gbps``: a node's SSD) queues its reads, and its
write-back fills the time they leave (a read waits only for the write in service); elsewhere loads are charged as if
alone and writes take no time, so there the shares are the report's warning that a tier could not keep up."""

from __future__ import annotations

import json

import pytest
from tier_traffic_helpers import BLOCK_TOKENS, KV_BYTES_PER_TOKEN
from tier_traffic_helpers import run_metrics as _run


def test_each_lower_tier_hit_reads_one_block(run_cli, tmp_path):
    metrics = _run(run_cli, tmp_path)
    assert metrics["preemptions"] == 0  # a preempted request would read its blocks again
    block_bytes = BLOCK_TOKENS * KV_BYTES_PER_TOKEN
    for tier in ("dram", "ssd"):
        hits = round(metrics["tier_hit_ratio"][tier] * metrics["accesses"])
        assert hits > 0, tier
        assert metrics["tiers"][tier]["bytes_read"] == hits * block_bytes, tier
        assert metrics["tiers"][tier]["bytes_written"] % block_bytes == 0, tier
    assert "eic" not in metrics["tiers"]  # a tier of capacity 0 is not built


def test_writes_without_a_shared_device_take_no_time(run_cli, tmp_path):
    """Host DRAM has no shared device (each GPU writes over its own PCIe link): halving its write bandwidth
    doubles its write share, of the 4 instances' links together (config.yaml's serving.num_instances, at TP 1),
    and changes nothing else."""
    before = _run(run_cli, tmp_path)
    after = _run(run_cli, tmp_path, sets=("cache.tiers.dram.write_gbps=25",))  # half the default 50 GB/s
    dram_before, dram_after = before["tiers"].pop("dram"), after["tiers"].pop("dram")
    assert dram_before["bytes_written"] > 0
    assert dram_after["write_utilization_max"] == pytest.approx(2 * dram_before["write_utilization_max"], rel=1e-12)
    assert dram_after["write_utilization_max"] == pytest.approx(
        dram_after["bytes_written"] / (4 * 25e9 * after["makespan_s"]), rel=1e-12)
    dram_before.pop("write_utilization_max"), dram_after.pop("write_utilization_max")
    assert dram_after == dram_before
    assert after == before


def test_writes_into_a_shared_ssd_delay_its_loads_by_the_write_in_service(run_cli, tmp_path):
    """One instance over an SSD (no DRAM): the demotions it writes fill the device's idle time, and a load waits
    for the write in service, one block's: 16 tokens x 128 KiB = 2 MiB, 0.4 ms at the default 5 GB/s, 42 ms at
    0.05 GB/s. At 0.05 GB/s the writes need more than the device's write bandwidth (write share above 1: the
    backlog never drains), so a load finds a write in service more often and waits longer, yet by less than one
    block's write on average, not behind the backlog (a read's begin moves by at most one chunk: it waits for one only when
    no read is queued, and a queued read follows the one before it; the run's own timing moves too, hence the
    average). Without a shared device it changes nothing but the write share."""
    ssd_only = ("serving.num_instances=1", "cache.tiers.dram.capacity_gib=0")
    base = _run(run_cli, tmp_path, sets=ssd_only)
    slow = _run(run_cli, tmp_path, sets=(*ssd_only, "cache.tiers.ssd.write_gbps=0.05"))
    assert base["tiers"]["ssd"]["bytes_written"] > 0 and base["tier_hit_ratio"]["ssd"] > 0
    assert slow["tiers"]["ssd"]["write_utilization_max"] > 1
    chunk_s = BLOCK_TOKENS * KV_BYTES_PER_TOKEN / 0.05e9
    assert base["ttft_breakdown_s"]["kv_load"] < slow["ttft_breakdown_s"]["kv_load"]
    assert slow["ttft_breakdown_s"]["kv_load"] < base["ttft_breakdown_s"]["kv_load"] + chunk_s
    unshared = (*ssd_only, "cache.tiers.ssd.shared_read_gbps=null")
    fast, slow = (_run(run_cli, tmp_path, sets=(*unshared, *w)) for w in ((), ("cache.tiers.ssd.write_gbps=0.05",)))
    assert fast["tiers"]["ssd"].pop("write_utilization_max") < slow["tiers"]["ssd"].pop("write_utilization_max")
    assert fast == slow


def test_a_shared_device_serves_reads_ahead_of_its_write_back():
    """Hand-computed, an SSD of 7 GB/s shared reads, 5 GB/s writes, 80 us access, writes of 1 MB it does not
    interrupt (0.2 ms each). 5 MB written at 0: 1 ms of write-back from 0, in chunks ending at 0.2, 0.4, ... 1.0 ms.
    A 7 MB read at 0.5 ms waits for the chunk in service (to 0.6 ms: 0.1 ms), then reads 1 ms: 1.1 ms + 80 us (first
    come first served behind the whole backlog it was 1.5 ms); 0.4 ms of write-back are left, from 1.6 ms. A read at
    1.0 ms queues behind that read (reads first come first served), not behind the writes: 0.6 + 1 ms. The writes
    resume at 2.6 ms (0.4 ms left); a read at 2.7 ms waits 0.1 ms for its chunk: 1.1 ms. At 5 ms all is drained:
    1 ms. A burst of 500 MB (100 ms of writes) at 10 ms: a read 0.05 ms later waits 0.15 ms, whatever the burst."""
    from sim.cache.arena import TierArena
    from sim.cache.arena_layout import BYTES_WRITTEN
    from sim.cache.tiers import new_tier

    def write(tier, nbytes: int, now: float) -> None:  # what a demotion into the tier records
        tier.arena.stats_row(tier.index)[BYTES_WRITTEN] += nbytes
        tier.charge_writes(now)

    def ssd_of(chunk: int):
        tier = new_tier(TierArena(), "ssd", "lru", 10, read_bw=7e9, write_bw=5e9, latency_s=80e-6, shared_read_bw=7e9)
        tier.write_chunk = chunk
        return tier

    ssd = ssd_of(1_000_000)
    write(ssd, 5_000_000, 0.0)
    assert ssd.reserve_read(7_000_000, 0.5e-3) == pytest.approx(1.1e-3 + 80e-6)
    assert ssd.reserve_read(7_000_000, 1.0e-3) == pytest.approx(1.6e-3 + 80e-6)
    assert ssd.reserve_read(7_000_000, 2.7e-3) == pytest.approx(1.1e-3 + 80e-6)
    assert ssd.reserve_read(7_000_000, 5e-3) == pytest.approx(1e-3 + 80e-6)
    write(ssd, 500_000_000, 10e-3)
    assert ssd.reserve_read(7_000_000, 10.05e-3) == pytest.approx(1.15e-3 + 80e-6)
    # a write charged while a read is reserved ahead (20 to 21 ms) starts after it: a read at 21.1 ms waits 0.1 ms
    ssd = ssd_of(1_000_000)
    assert ssd.reserve_read(7_000_000, 20e-3) == pytest.approx(1e-3 + 80e-6)
    write(ssd, 5_000_000, 20.5e-3)
    assert ssd.reserve_read(7_000_000, 21.1e-3) == pytest.approx(1.1e-3 + 80e-6)
    ssd.charge_writes(30e-3)  # nothing new written: nothing charged (the 1 ms from 22.1 ms has drained by 30 ms)
    assert ssd.reserve_read(7_000_000, 30e-3) == pytest.approx(1e-3 + 80e-6)
    # writes the device interrupts at once (no chunk): a read never waits for them
    ssd = ssd_of(0)
    write(ssd, 5_000_000, 0.0)
    assert ssd.reserve_read(7_000_000, 0.5e-3) == pytest.approx(1e-3 + 80e-6)
    charged: list[float] = []
    ssd.write_sink = charged.append
    write(ssd, 10_000_000, 40e-3)
    assert charged == [pytest.approx(2e-3)]
    dram = new_tier(ssd.arena, "dram", "lru", 10, read_bw=50e9, write_bw=50e9, latency_s=5e-6)
    write(dram, 500_000_000, 0.0)
    assert dram.reserve_read(50_000_000, 0.0) == pytest.approx(1e-3 + 5e-6)


def test_a_shared_device_link_serves_transfers_ahead_of_its_write_back():
    """The cluster's copy link, by hand: 7 GB/s, writes of 0.2 ms it does not interrupt. 59 demotions of 10 ms
    each at 0 are one write-back of 590 ms (chunks ending at 0.2, 0.4, ... ms), not 59 flows (each its own flow,
    a transfer beside them got 1/60 of the link: 7 MB in 60 ms). A 7 MB transfer at 1.05 ms waits for the chunk in
    service (to 1.2 ms); another at 1.1 ms waits for the same chunk, and the two share the link from 1.2 ms (3.5 GB/s
    each; the write-back waits): both done at 3.2 ms. The write-back resumes there; a transfer at 3.25 ms waits
    0.15 ms for its chunk, then has the link alone: done at 4.4 ms."""
    from sim.serving.engine import Engine
    from sim.serving.network import AnalyticNetwork, Link

    engine = Engine()
    link = Link(engine, AnalyticNetwork(7e9))
    link.write_chunk = 0.2e-3
    for _ in range(59):
        link.write_back(10e-3)
    done: dict[str, float] = {}

    def send(name: str, at: float) -> None:
        engine.at(at, lambda: link.send(7_000_000, lambda _d: done.setdefault(name, engine.now)))

    send("a", 1.05e-3)
    send("b", 1.1e-3)
    send("c", 3.25e-3)
    engine.run()
    assert done == {"a": pytest.approx(3.2e-3), "b": pytest.approx(3.2e-3), "c": pytest.approx(4.4e-3)}
    unshared = Link(engine, AnalyticNetwork(7e9), shared=False)  # no contention: writes take no transfer's time
    unshared.write_back(10e-3)
    unshared.send(7_000_000, lambda _d: done.setdefault("d", engine.now))
    start = engine.now
    engine.run()
    assert done["d"] - start == pytest.approx(1e-3)


CLUSTER = ("cluster.num_racks=2", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2", "cache.tiers.eic.capacity_gib=1")


def test_cluster_counts_every_copy(run_cli, tmp_path):
    metrics = _run(run_cli, tmp_path, "--cluster", sets=CLUSTER)
    cluster = metrics["cluster"]
    assert metrics["tiers"]["dram"]["copies"] == metrics["tiers"]["ssd"]["copies"] == cluster["nodes_used"]
    assert metrics["tiers"]["eic"]["copies"] == cluster["racks_used"]
    assert cluster["nodes_used"] > 1


def test_cluster_tier_link_is_the_shared_bandwidth(run_cli, tmp_path):
    """In the cluster every transfer crosses links shared max-min fairly: a tier copy's link carries its
    shared bandwidth, or its read bandwidth when it has none (so the SSD's default, equal to its read
    bandwidth, changes nothing). 700 HBM blocks an instance: the 8 instances' HBM spills to DRAM and SSD (with
    1,500 the router's balanced load left every block in HBM)."""
    sets = (*CLUSTER, "serving.num_gpu_blocks=700")
    base = _run(run_cli, tmp_path, "--cluster", sets=sets)
    scarce = _run(run_cli, tmp_path, "--cluster", sets=(*sets, "cache.tiers.dram.shared_read_gbps=0.05"))
    assert base["tier_hit_ratio"]["dram"] > 0
    assert scarce["ttft_breakdown_s"]["kv_load"] > base["ttft_breakdown_s"]["kv_load"]
    # a shared device's writes share its link: scarce SSD writes slow the SSD's loads
    slow_writes = _run(run_cli, tmp_path, "--cluster", sets=(*sets, "cache.tiers.ssd.write_gbps=0.05"))
    assert base["tier_hit_ratio"]["ssd"] > 0 and base["tiers"]["ssd"]["bytes_written"] > 0
    assert slow_writes["ttft_breakdown_s"]["kv_load"] > base["ttft_breakdown_s"]["kv_load"]


def test_summary_flags_a_tier_that_could_not_keep_up():
    """Shares of bandwidth the run did not queue for are flagged, and a shared device's write share above 1: its
    reads queued (their share stays within the device's), but its write-back, served after them, could not drain
    (a run's own overrides count)."""
    from sim.report.console import oversubscribed_tiers

    tiers = {"dram": {"shared_read_gbps": None}, "ssd": {"shared_read_gbps": 7.0}}
    metrics = {"tiers": {"dram": {"read_utilization_max": 2.5, "write_utilization_max": 1.5},
                         "ssd": {"read_utilization_max": 0.5, "write_utilization_max": 7.46}}}
    assert oversubscribed_tiers({"metrics": metrics}, tiers) == [
        "  ! dram reads needed 2.50x its readers' links (cache.tiers.dram.read_gbps a link) over the run; loads of "
        "different readers were not queued (cache.tiers.dram.shared_read_gbps queues both), so load times are optimistic",
        "  ! dram writes needed 1.50x its writers' links (cache.tiers.dram.write_gbps a link) over the run; writes took "
        "no time "
        "(cache.tiers.dram.shared_read_gbps queues both), so load times are optimistic",
        "  ! ssd writes needed 7.46x its write bandwidth (cache.tiers.ssd.write_gbps) over the run; its write-back, "
        "served after its reads, could not keep up (the backlog grew; no demotion was dropped or delayed), so load "
        "times are optimistic"]
    unshared_ssd = {"metrics": metrics, "overrides": {"cache.tiers.ssd.shared_read_gbps": None}}
    assert oversubscribed_tiers(unshared_ssd, tiers)[2:] == [
        "  ! ssd writes needed 7.46x its writers' links (cache.tiers.ssd.write_gbps a link) over the run; writes took "
        "no time "
        "(cache.tiers.ssd.shared_read_gbps queues both), so load times are optimistic"]
    cache_only = {"metrics": {"tiers": {"hbm": {"hits": 3, "bytes_read": 0}}}}  # cache-only tiers carry no time
    assert oversubscribed_tiers(cache_only, tiers) == []


def test_a_shared_device_queues_its_readers_first_come_first_served():
    """Hand-computed: 7 MB reads from an SSD of 7 GB/s shared by its readers (80 us access): alone 1 ms +
    80 us; a second read issued at the same time waits for the first (2 ms + 80 us); a reader whose own
    link is slower (1 GB/s: 7 ms) is bound by its link, not the queue; after the queue drains, no wait."""
    from sim.cache.arena import TierArena
    from sim.cache.tiers import new_tier

    ssd = new_tier(TierArena(), "ssd", "lru", 10, read_bw=7e9, write_bw=5e9, latency_s=80e-6, shared_read_bw=7e9)
    assert ssd.reserve_read(7_000_000, 0.0) == pytest.approx(1e-3 + 80e-6)
    assert ssd.reserve_read(7_000_000, 0.0) == pytest.approx(2e-3 + 80e-6)
    assert ssd.reserve_read(7_000_000, 10e-3) == pytest.approx(1e-3 + 80e-6)  # the queue drained at 2 ms
    ssd.read_bw = 1e9  # one reader's link at 1 GB/s: its 7 ms exceed the device's queue (11 ms + 1 ms - 10.5 ms)
    assert ssd.reserve_read(7_000_000, 10.5e-3) == pytest.approx(7e-3 + 80e-6)
    private = new_tier(TierArena(), "dram", "lru", 10, read_bw=50e9, write_bw=50e9, latency_s=5e-6)
    assert [private.reserve_read(50_000_000, 0.0) for _ in range(2)] == [pytest.approx(1e-3 + 5e-6)] * 2
    assert ssd.reserve_read(0, 0.0) == private.reserve_read(0, 0.0) == 0.0


def test_instances_loading_from_one_ssd_wait_for_each_other(run_cli, tmp_path):
    """Four instances over one node's SSD: when its shared bandwidth is scarce, loads queue and the
    TTFT's kv_load grows."""
    ssd_only = ("cache.tiers.dram.capacity_gib=0",)
    private = _run(run_cli, tmp_path, sets=(*ssd_only, "cache.tiers.ssd.shared_read_gbps=null"))
    scarce = _run(run_cli, tmp_path, sets=(*ssd_only, "cache.tiers.ssd.shared_read_gbps=0.5"))
    assert private["instances"]["count"] > 1 and private["tier_hit_ratio"]["ssd"] > 0
    assert scarce["ttft_breakdown_s"]["kv_load"] > private["ttft_breakdown_s"]["kv_load"]


@pytest.mark.parametrize("path", ["compiled", "generic", "generic-over-kernel-hooks"])
def test_a_shared_tier_already_holding_a_block_readmits_it(path):
    """Two instances' HBM (1 block each) over one shared LRU DRAM of 2 blocks. Both compute block 1; the first
    demotes 2, then 1 (the DRAM is full: {2, 1}); when the second demotes its own copy of 1, the DRAM already
    holds that content: a readmission (the policy sees it) that inserts, writes and evicts nothing — block 2
    stays. Block bytes = 1."""
    from sim.cache.arena import TierArena
    from sim.cache.hooked import HookedMultiTierCache
    from sim.cache.multitier import build_cache
    from tests.cache_helpers import make_tiers
    from tests.reference import REFERENCE

    arena = TierArena(max_keys=16)
    (dram,) = make_tiers(["lru"], [2], arena=arena, names=["dram"])
    tops = [make_tiers(["lru"], [1], arena=arena)[0] for _ in range(2)]
    if path == "compiled":
        caches = [build_cache([top, dram], 1, track_positions=True, num_blocks=16) for top in tops]
    elif path == "generic":  # the reference Python policies
        shared_hook = REFERENCE["lru"](2)
        caches = [HookedMultiTierCache([top, dram], 1, track_positions=True, hooks=[REFERENCE["lru"](1), shared_hook])
                  for top in tops]
    else:  # the compiled LRU driven through its Python hooks (as under a learned tier)
        caches = [HookedMultiTierCache([top, dram], 1, track_positions=True) for top in tops]
    first, second = caches
    first.touch(2, 0)
    first.touch(1, 1)  # demotes 2
    assert second.touch(1, 2) == -1  # the second computes its own block 1 (the first's HBM is private)
    first.touch(5, 3)  # demotes 1: the DRAM is full
    assert (set(first.resident(1)), dram.stats.insertions, dram.stats.bytes_written) == ({1, 2}, 2, 2)
    second.touch(3, 4)  # demotes its copy of 1
    assert set(second.resident(1)) == {1, 2}
    assert (dram.stats.insertions, dram.stats.bytes_written, dram.stats.evictions) == (2, 2, 0)
    assert second.touch(2, 5) == 1  # block 2 is still there to hit


def _write_rows(path, rows) -> None:
    """A Mooncake trace of (timestamp ms, hash ids, input tokens) rows, one token out each."""
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids}) + "\n"
                            for t, ids, n in rows))


def _two_instances_of_one_node(mode: str) -> list[str]:
    """Two instances of one node, routed round robin: the single-node mode's or a one-node cluster's."""
    if mode == "single":
        return ["--set", "serving.num_instances=2", "--router", "round-robin"]
    return ["--cluster", "--set", "cluster.num_racks=1", "--set", "cluster.nodes_per_rack=1",
            "--set", "hardware.gpus_per_node=2", "--set", "cluster.router=round-robin"]


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_a_load_just_after_a_burst_of_demotions_waits_only_for_the_write_in_service(run_cli, tmp_path, mode):
    """Two instances of one node share its SSD (7 GB/s shared, 80 us; no DRAM). At t = 10 s a 20-block prompt on
    instance 0 pushes an earlier prompt's 8 full blocks (8 x 64 MiB: Llama-3.1-8B's KV, 512-token blocks) down to the
    SSD; 1 ms later that prompt again, on instance 1, loads them. By hand: the write-back is 8 blocks of 2**26 / W s
    each, from 10 s; the device serves reads first and does not interrupt a block's write (README: a load waits
    only for the write in service), so the load waits for the first block's write to end (2**26 / W - 1 ms: 12.4 ms
    at W = 5 GB/s, 25.8 ms at 2.5), then reads 8 x 2**26 / 7e9 s (76.7 ms) alone, the rest of the write-back after it:
    kv_load 80 us + 89.1 / 102.5 ms, the same in both modes (first come first served behind the whole burst it was
    183 / 291 ms on a single node; the cluster's writes as flows beside the load gave it half the link: 153 ms)."""
    rows = [(0, [1, 2, 3, 4, 5, 6, 7, 8, 9], 4196), (5000, list(range(101, 110)), 4196),
            (10000, list(range(201, 221)), 9828), (10001, [1, 2, 3, 4, 5, 6, 7, 8, 9], 4196)]
    trace = tmp_path / "burst.jsonl"
    _write_rows(trace, rows)
    flags = _two_instances_of_one_node(mode)
    blocks = 8 * 2**26
    read_s = blocks / 7e9
    for write_gbps in (5, 2.5):
        requests = tmp_path / f"{mode}-{write_gbps}.csv"
        status, _, err = run_cli(*flags, "--workload-trace", trace, "--quiet", "--no-plot", "--requests-csv", requests,
                                 "--set", "model=llama-3.1-8b", "--set", "serving.num_gpu_blocks=21",
                                 "--set", "serving.max_num_batched_tokens=16384",
                                 "--set", "cache.tiers.dram.capacity_gib=0",
                                 "--set", f"cache.tiers.ssd.write_gbps={write_gbps}")
        assert status == 0, err[-2000:]
        lines = requests.read_text().splitlines()
        header, last = lines[0].split(","), lines[4].split(",")
        kv_load = float(last[header.index("kv_load_s")])
        expected = 80e-6 + (10.0 + 2**26 / (write_gbps * 1e9) - 10.001) + read_s
        assert kv_load == pytest.approx(expected, rel=1e-6)


def test_an_unshared_copy_s_shares_are_of_its_sharers_links():
    """Hand-computed: a node's DRAM (no shared device; 40 GB/s read, 25 GB/s write a link) shared by two prefill
    instances at TP 2, which load from it and write into it, and a decode instance at TP 4, which only writes (its
    demotions): over 10 s, 12 GB written cross 2 + 2 + 4 = 8 links, 12e9 / (25e9 x 8 x 10) = 0.006 of them; 3 GB
    loaded cross the prefill instances' 4 links, 3e9 / (40e9 x 4 x 10) = 0.001875 (one instance's 2 links alone
    would say 0.024 and 0.00375). A shared SSD (7 GB/s read, 5 GB/s write) serves them all from one device:
    1 GB written is 1e9 / (5e9 x 10) = 0.02 of it, 0.7 GB read 0.7e9 / (7e9 x 10) = 0.01, whoever shares it. A copy
    no instance was registered on keeps one instance's lanes."""
    from sim.cache.arena import TierArena
    from sim.cache.arena_layout import BYTES_READ, BYTES_WRITTEN
    from sim.cache.tiers import new_tier, tier_traffic

    arena = TierArena()
    dram = new_tier(arena, "dram", "lru", 10, read_bw=40e9, write_bw=25e9, latency_s=5e-6, lanes=2)
    ssd = new_tier(arena, "ssd", "lru", 10, read_bw=7e9, write_bw=5e9, latency_s=80e-6, shared_read_bw=7e9, lanes=2)
    for tier in (dram, ssd):
        tier.add_sharer(2, reads=True)
        tier.add_sharer(2, reads=True)
        tier.add_sharer(4, reads=False)
    for tier, written, read in ((dram, 12_000_000_000, 3_000_000_000), (ssd, 1_000_000_000, 700_000_000)):
        arena.stats_row(tier.index)[BYTES_WRITTEN] += written
        arena.stats_row(tier.index)[BYTES_READ] += read
    traffic = tier_traffic([dram, ssd], 10.0)
    assert traffic["dram"]["write_utilization_max"] == pytest.approx(0.006, rel=1e-12)
    assert traffic["dram"]["read_utilization_max"] == pytest.approx(0.001875, rel=1e-12)
    assert traffic["ssd"]["write_utilization_max"] == pytest.approx(0.02, rel=1e-12)
    assert traffic["ssd"]["read_utilization_max"] == pytest.approx(0.01, rel=1e-12)
    alone = new_tier(arena, "eic", "lru", 10, read_bw=40e9, write_bw=25e9, latency_s=5e-6, lanes=2)
    arena.stats_row(alone.index)[BYTES_WRITTEN] += 12_000_000_000
    arena.stats_row(alone.index)[BYTES_READ] += 3_000_000_000
    assert tier_traffic([alone], 10.0)["eic"] == {
        "copies": 1, "bytes_read": 3_000_000_000, "bytes_written": 12_000_000_000,
        "read_utilization_max": pytest.approx(0.00375, rel=1e-12), "write_utilization_max": pytest.approx(0.024, rel=1e-12)}


def test_shares_sum_the_links_of_the_instances_that_read_and_write(run_cli, tmp_path):
    """A served run's DRAM (no shared device, 50 GB/s each way a link: config.yaml): single-node PD with two prefill
    instances at TP 1 and one decode instance at TP 2 writes over 1 + 1 + 2 = 4 links (both roles demote into it:
    the decode instance's freed blocks too) and loads over the prefill instances' 2 (decode instances load nothing
    from it); a one-node cluster of 2 instances at TP 1 writes over their 2 links and loads over the copy's one link
    and loads over their 2 links too (each GPU reads host DRAM over its own PCIe link)."""
    pd = _run(run_cli, tmp_path, "--pd", sets=("pd.num_prefill=2", "pd.num_decode=1",
                                               "pd.decode_tensor_parallel_size=2"))
    dram, span = pd["tiers"]["dram"], pd["makespan_s"]
    assert dram["bytes_written"] > 0 and dram["bytes_read"] > 0
    assert dram["write_utilization_max"] == pytest.approx(dram["bytes_written"] / (4 * 50e9 * span), rel=1e-12)
    assert dram["read_utilization_max"] == pytest.approx(dram["bytes_read"] / (2 * 50e9 * span), rel=1e-12)
    one_node = ("cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2",
                "serving.num_gpu_blocks=700")
    cluster = _run(run_cli, tmp_path, "--cluster", sets=one_node)
    dram, span = cluster["tiers"]["dram"], cluster["makespan_s"]
    assert cluster["cluster"]["nodes_used"] == 1 and dram["copies"] == 1
    assert dram["bytes_written"] > 0 and dram["bytes_read"] > 0
    assert dram["write_utilization_max"] == pytest.approx(dram["bytes_written"] / (2 * 50e9 * span), rel=1e-12)
    assert dram["read_utilization_max"] == pytest.approx(dram["bytes_read"] / (2 * 50e9 * span), rel=1e-12)


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_two_instances_load_a_node_s_dram_at_once_each_over_its_own_link(run_cli, tmp_path, mode):
    """Two instances of one node (TP 1), its DRAM with no shared device (50 GB/s a link, 5 us: config.yaml). At 0 s
    each serves a 9-block prompt (8 full blocks of 64 MiB: Llama-3.1-8B, 512-token blocks), at 5 s a 20-block one
    that pushes those 8 down to DRAM (21 HBM blocks); at 10 s each is sent the other's first prompt and loads its 8
    blocks from DRAM at the same instant. By hand: each over its own link, 5e-6 + 8 x 2**26 / 50e9 s, in both modes
    (the cluster's load also crosses the GPU's PCIe link, 63 GB/s, not the narrowest): a node's GPUs read host DRAM
    each over its own PCIe link (config.yaml's ``shared_read_gbps: null``), not one link of one instance's lanes
    (which took twice that for each)."""
    rows = [(0, list(range(1, 10)), 4196), (0, list(range(101, 110)), 4196), (5000, list(range(201, 221)), 9828),
            (5000, list(range(301, 321)), 9828), (10000, list(range(101, 110)), 4196), (10000, list(range(1, 10)), 4196)]
    trace = tmp_path / "pair.jsonl"
    _write_rows(trace, rows)
    flags = _two_instances_of_one_node(mode)
    requests = tmp_path / "requests.csv"
    status, _, err = run_cli(*flags, "--workload-trace", trace, "--quiet", "--no-plot", "--requests-csv", requests,
                             "--set", "model=llama-3.1-8b", "--set", "serving.num_gpu_blocks=21",
                             "--set", "serving.max_num_batched_tokens=16384", "--set", "cache.tiers.ssd.capacity_gib=0")
    assert status == 0, err[-2000:]
    lines = [line.split(",") for line in requests.read_text().splitlines()]
    header, loads = lines[0], lines[5:]
    assert [int(row[header.index("instance")]) for row in loads] == [0, 1]
    for row in loads:
        assert int(row[header.index("cached_tokens")]) == 8 * 512
        assert float(row[header.index("kv_load_s")]) == pytest.approx(5e-6 + 8 * 2**26 / 50e9, rel=1e-9)
