"""Which lower-tier copies a serving run reads: only those that serve a hit (not a partial last block, not a block
HBM holds), each once where it was found."""

from __future__ import annotations

import json

import pytest
from report_invariants import check_run
from tier_traffic_helpers import BLOCK_TOKENS, KV_BYTES_PER_TOKEN

# Reads that serve no hit. One instance of 4 HBM blocks (5 less vLLM's null block), blocks of 16 tokens, a DRAM of
# 1 GiB (no SSD or EIC), one output token per request, requests 50 s apart (each runs alone). A block is
# 16 x KV_BYTES_PER_TOKEN = 2 MiB; a load from DRAM: 5 us + bytes / 50 GB/s (config.yaml's DRAM).


BLOCK_BYTES = BLOCK_TOKENS * KV_BYTES_PER_TOKEN


def _tiny(prompts: list[int], blocks: list[list[int]], inclusion: str, gpu_blocks: int = 5):
    from sim.config import load_config
    from sim.serving.run import run_serving
    from tests.test_serving import make_trace

    trace = make_trace([50.0 * i for i in range(len(prompts))], prompts, [1] * len(prompts), BLOCK_TOKENS, blocks)
    config = load_config(None, sets=["serving.num_instances=1", f"serving.block_size={BLOCK_TOKENS}",
                                     f"serving.num_gpu_blocks={gpu_blocks}", "cache.tiers.dram.capacity_gib=1",
                                     "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0",
                                     f"cache.inclusion={inclusion}"])
    result, requests = run_serving(trace, config, "single")
    metrics = result.metrics
    traffic = {k: metrics[k] for k in ("accesses", "hits", "hit_ratio", "tier_hit_ratio", "tiers", "preemptions")}
    assert check_run(traffic, None, "single", block_bytes=BLOCK_BYTES) == []  # bytes read = hits x block bytes
    hits = {t: round(r * metrics["accesses"]) for t, r in metrics["tier_hit_ratio"].items() if r}
    return metrics, requests, hits


@pytest.mark.parametrize("inclusion", ["exclusive", "inclusive"])
def test_a_partial_last_block_in_a_lower_tier_is_not_read(inclusion):
    """r0 (40 tokens: blocks 10, 11 and the partial 12) leaves its 2 full blocks cached in HBM (12 holds nothing once
    freed); r1's 4 blocks take
    all of HBM, so they are in DRAM only (exclusive: demoted; inclusive: written through when r0 ended, dropped
    from HBM). r2 repeats r0: DRAM serves its 2 full blocks (a partial block never hits, ``prefix_hit``), 32
    tokens cached, 2 blocks loaded and read; its partial block is computed, so nothing more is read out of DRAM,
    also when r2 ends and its blocks return to HBM. (Before: 3 blocks read, exclusive; 6, inclusive.)"""
    a = [10, 11, 12]
    metrics, requests, hits = _tiny([40, 64, 40], [a, [20, 21, 22, 23], a], inclusion)
    assert requests.cached_tokens.tolist() == [0, 0, 32]
    assert hits == {"dram": 2}
    assert requests.kv_load.tolist()[2] == pytest.approx(5e-6 + 2 * BLOCK_BYTES / 50e9, rel=1e-12)
    assert metrics["tiers"]["dram"]["bytes_read"] == 2 * BLOCK_BYTES


def test_an_hbm_hit_reads_nothing_from_a_lower_tier():
    """Inclusive tiers, HBM roomy (9 blocks): r0's 2 full blocks are written through to DRAM when it ends (its
    partial third holds nothing once freed: vLLM hashes, and its offloading connector stores, full blocks only); r1
    (the same 40 tokens) is served 2 blocks from HBM, loads nothing, and when it ends its blocks return to HBM, where
    their content is: DRAM's copies are not read (before: 3 blocks read) nor written again."""
    c = [30, 31, 32]
    metrics, requests, hits = _tiny([40, 40], [c, c], "inclusive", gpu_blocks=10)
    assert requests.cached_tokens.tolist() == [0, 32] and requests.kv_load.tolist() == [0.0, 0.0]
    assert hits == {"hbm": 2}
    assert metrics["tiers"]["dram"]["bytes_read"] == 0
    assert metrics["tiers"]["dram"]["bytes_written"] == 2 * BLOCK_BYTES


@pytest.mark.parametrize("inclusion", ["exclusive", "inclusive"])
def test_a_last_block_in_hbm_with_a_lower_copy_is_loaded_from_it(inclusion):
    """HBM roomy (9 blocks), r0 and r1 the same 32 tokens (2 full blocks): both of r0's blocks stay cached in HBM.
    HBM serves r1 its first block only (``get_computed_blocks`` stops at 31 tokens); the second, the last, is in
    HBM alone when exclusive, so it is recomputed (16 tokens cached); inclusive, DRAM has its copy (written
    through when r0 ended) and an offloading connector (vLLM's OffloadingConnector) loads it: 2 hits (HBM 1,
    DRAM 1), 31 tokens cached (the last one recomputed), one block's load read out of DRAM.
    (Before, inclusive: recomputed as when exclusive.)"""
    d = [40, 41]
    metrics, requests, hits = _tiny([32, 32], [d, d], inclusion, gpu_blocks=10)
    if inclusion == "exclusive":
        assert requests.cached_tokens.tolist() == [0, 16] and hits == {"hbm": 1}
        assert requests.kv_load.tolist() == [0.0, 0.0] and metrics["tiers"]["dram"]["bytes_read"] == 0
    else:
        assert requests.cached_tokens.tolist() == [0, 31] and hits == {"hbm": 1, "dram": 1}
        assert requests.kv_load.tolist()[1] == pytest.approx(5e-6 + BLOCK_BYTES / 50e9, rel=1e-12)
        assert metrics["tiers"]["dram"]["bytes_read"] == BLOCK_BYTES


def test_a_cache_only_prefix_replay_reads_each_served_hit_once_where_it_was_found(run_cli, tmp_path):
    """Cache-only, prefix semantics, exclusive LRU over HBM, DRAM and SSD of one block each (HBM
    serving.num_gpu_blocks=1; DRAM and SSD 2 MiB = 1/512 GiB, one block of 16 tokens of Llama-3.1-8B). Blocks
    a=10, b=11, c=12, x=13; a request's blocks are touched deepest first after its prefix lookup.
    r0 [a, b]: misses; b then a enter HBM, b goes down: HBM a, DRAM b. r1 [c]: HBM c, DRAM a, SSD b.
    r2 [a, b]: the lookup serves a from DRAM and b from SSD (2 hits), held until their touches. Touching b first
    moves it up: c goes down past DRAM, where a is held, to SSD, which b left; touching a then promotes it from
    DRAM (HBM a, DRAM b, SSD c). r3 [x, c]: x misses, so nothing is served; touching c finds it in SSD, past the
    first miss: it is recomputed, not read. So DRAM reads its 1 hit and SSD its 1 hit: one block each (before:
    DRAM 0, read as SSD, and SSD 3: b, a and r3's c). Promotions: SSD 2 (b, c), DRAM 1 (a; before the hits were
    held, b's promotion pushed a down to SSD: SSD 3, DRAM 0)."""
    trace = tmp_path / "t.jsonl"
    rows = [(0, [10, 11]), (1000, [12]), (2000, [10, 11]), (3000, [13, 12])]
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": BLOCK_TOKENS * len(ids), "output_length": 1,
                                         "hash_ids": ids}) + "\n" for t, ids in rows))
    out = tmp_path / "r.json"
    one_block_gib = BLOCK_BYTES / 2**30
    argv = ["--cache-only", "--workload-trace", trace, "--quiet", "--no-plot", "--report-json", out]
    for assignment in ("cache.access_semantics=prefix", "cache.policy=lru", "cache.inclusion=exclusive",
                       "model=llama-3.1-8b", f"serving.block_size={BLOCK_TOKENS}", "serving.num_gpu_blocks=1",
                       f"cache.tiers.dram.capacity_gib={one_block_gib!r}", f"cache.tiers.ssd.capacity_gib={one_block_gib!r}",
                       "cache.tiers.eic.capacity_gib=0"):
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    report = json.loads(out.read_text())
    metrics = report["runs"][0]["metrics"]
    assert (metrics["block_bytes"], metrics["capacity_blocks"]) == (BLOCK_BYTES, {"hbm": 1, "dram": 1, "ssd": 1})
    assert (metrics["accesses"], metrics["hits"]) == (7, 2)
    tiers = metrics["tiers"]
    assert {t: (tiers[t]["hits"], tiers[t]["promotions"]) for t in tiers} == {"hbm": (0, 0), "dram": (1, 1),
                                                                             "ssd": (1, 2)}
    assert {t: tiers[t]["bytes_read"] for t in tiers} == {"hbm": 0, "dram": BLOCK_BYTES, "ssd": BLOCK_BYTES}
    from report_invariants import check_report

    assert check_report(report) == []
