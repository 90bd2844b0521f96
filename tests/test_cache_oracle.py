"""On the real Mooncake trace, every policy's hit count equals libCacheSim's at three capacities."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sim.cache.access import NEVER, next_use_index
from sim.cache.replay import run_cache_only
from sim.config import load_config
from sim.config_workload import WorkloadConfig
from trace.loaders import load_trace

lcs = pytest.importorskip("libcachesim")
ORACLE = {"lru": "LRU", "fifo": "FIFO", "belady": "Belady", "lfu": "LFU", "arc": "ARC", "s3fifo": "S3FIFO", "sieve": "Sieve"}
CAPACITIES = (1000, 5000, 20000)


@pytest.fixture(scope="module")
def mooncake(shared_data):
    return load_trace(WorkloadConfig(trace=str(shared_data / "traces" / "mooncake_conversation.jsonl")), 512)


@pytest.fixture(scope="module")
def oracle_file(mooncake, tmp_path_factory):
    """The access stream as a libCacheSim oracleGeneral file: <IQIq> = time, id, size, next access index."""
    stream = mooncake.access_stream()
    nxt = next_use_index(stream)
    nxt = np.where(nxt == NEVER, np.iinfo(np.int64).max, nxt)
    records = np.zeros(len(stream), dtype=np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
    records["t"], records["id"], records["size"], records["next"] = np.arange(len(stream)), stream, 1, nxt
    assert records.dtype.itemsize == struct.calcsize("<IQIq")
    path = tmp_path_factory.mktemp("oracle") / "mooncake.oracleGeneral"
    records.tofile(path)
    return path, len(stream)


def libcachesim_hits(policy: str, capacity: int, oracle_file) -> int:
    path, n = oracle_file
    cache = getattr(lcs, ORACLE[policy])(cache_size=capacity, hashpower=max(10, capacity.bit_length() + 1))
    miss_ratio, _ = cache.process_trace(lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE))
    return round((1.0 - miss_ratio) * n)


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_hit_counts_equal_libcachesim(mooncake, oracle_file, capacity):
    config = load_config(None, sets=["serving.block_size=512", f"cache.capacity_blocks={capacity}"])
    runs = run_cache_only(mooncake, config, list(ORACLE))
    ours = {r.name: r.metrics["hits"] for r in runs}
    theirs = {p: libcachesim_hits(p, capacity, oracle_file) for p in ORACLE}
    assert ours == theirs
    # the published figures for this trace (REFERENCE-TOOLS.md): LRU and Belady hit ratios
    published = {1000: (0.0445, 0.1906), 5000: (0.1104, 0.3412), 20000: (0.2875, 0.3664)}[capacity]
    assert round(ours["lru"] / mooncake.num_accesses, 4) == published[0]
    assert round(ours["belady"] / mooncake.num_accesses, 4) == published[1]


def test_tiered_hit_counts_equal_libcachesim_at_the_summed_capacity(mooncake, oracle_file):
    # one policy spans HBM 1,000 + DRAM 1,024 + SSD 2,048 blocks (64 MiB blocks of the default model): each policy's
    # hits are libCacheSim's at 4,072 blocks (before the span, a policy per tier: ARC 0.0875, S3-FIFO 0.0674)
    config = load_config(None, sets=["serving.block_size=512", "serving.num_gpu_blocks=1000",
                                     "cache.tiers.dram.capacity_gib=64", "cache.tiers.ssd.capacity_gib=128"])
    runs = run_cache_only(mooncake, config, list(ORACLE))
    assert runs[0].metrics["capacity_blocks"] == {"hbm": 1000, "dram": 1024, "ssd": 2048}
    assert {r.name: r.metrics["hits"] for r in runs} == {p: libcachesim_hits(p, 4072, oracle_file) for p in ORACLE}
