"""MLA's lower-tier traffic at TP 1, 2 and 4, by hand. A lower tier stores a block's latent once (it is the same page on
every rank: vLLM's ``replicated_layout``, one rank writing it), but every rank loads its own copy into its own HBM
(vLLM ``CanonicalPageMapping``: "runs cover the full local page in both directions"; MooncakeStoreConnector: every
rank GETs every key; SGLang HiCache: every rank prefetches), so a load reads the latent TP times, each rank over its
own link: ``bytes_read`` grows with TP, a per-rank link (DRAM over each GPU's PCIe) takes the same time at any TP,
and a device the ranks share (the node's SSD, the node's NIC on the way to a rack's EIC) takes TP times as long.

The hand-made trace (512-token blocks, one output token each): r0 (0 s) prompts blocks [1, 2, 3] (1,536 tokens);
r1 (10 s) 2,000 tokens over [20, 21, 22, 23]; r2 (20 s) [1, 2, 3] again. One instance of 4 usable HBM blocks (5 less
vLLM's null block): r1 takes all 4, so r0's 3 cached blocks are demoted into the lower tier (3 writes); r1 leaves 3
full blocks cached (its partial 4th block has no hash) and 1 free; r2's 3 blocks come back from the tier (the last
token recomputed: 1,535 cached tokens) into the free block and 2 of r1's, which are demoted (2 writes). So the tier
reads 3 blocks for r2, each TP times, and writes 5 latents."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from report_invariants import check_report

# DeepSeek-V2-Lite's latent a token: 27 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 B (bf16), whole on every
# TP rank (tests/fixtures/hf_configs/DeepSeek-V2-Lite.json: num_hidden_layers, kv_lora_rank, qk_rope_head_dim)
LATENT_BLOCK = 512 * 27 * (512 + 64) * 2  # 15,925,248 B a 512-token block
ROWS = [(0, 1536, [1, 2, 3]), (10_000, 2000, [20, 21, 22, 23]), (20_000, 1536, [1, 2, 3])]  # ms, tokens, hash ids
# config.yaml's tiers: DRAM 50 GB/s a reader (each GPU's own PCIe link), 5 us; SSD 7 GB/s, 80 us, one device (7 GB/s
# shared by every reader); EIC 50 GB/s, 10 us. network.bandwidth_gbps 100 Gb/s = 12.5 GB/s a node's NIC, 5 us.
DRAM_BW, DRAM_LAT, SSD_BW, SSD_LAT = 50e9, 5e-6, 7e9, 80e-6
NIC_BW, EIC_LAT, NIC_LAT = 100e9 / 8, 10e-6, 5e-6


def _run(run_cli, tmp_path, tier: str, tp: int, *flags: str) -> tuple[dict, pd.DataFrame]:
    trace = tmp_path / "mla.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids})
                             + "\n" for t, n, ids in ROWS))
    out, requests = tmp_path / f"{tier}{tp}.json", tmp_path / f"{tier}{tp}.csv"
    sets = ["model=deepseek-v2-lite", f"serving.tensor_parallel_size={tp}", "serving.num_gpu_blocks=5",
            *(f"cache.tiers.{name}.capacity_gib={1 if name == tier else 0}" for name in ("dram", "ssd", "eic"))]
    sets += (["cluster.num_racks=1", "cluster.nodes_per_rack=1", f"hardware.gpus_per_node={tp}"]
             if "--cluster" in flags else ["serving.num_instances=1"] if "--cache-only" not in flags else [])
    argv = [*flags, "--workload-trace", trace, "--quiet", "--no-plot", "--report-json", out]
    argv += ["--requests-csv", requests] if "--cache-only" not in flags else []
    for assignment in sets:
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    report = json.loads(out.read_text())
    assert check_report(report) == []
    return report["runs"][0]["metrics"], pd.read_csv(requests) if "--cache-only" not in flags else None


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("tier", ["dram", "ssd"])
def test_every_rank_loads_its_own_copy_of_the_latent(run_cli, tmp_path, tier, tp):
    """DRAM: r2's kv_load is 5 us + 3 x TP latents / (TP links x 50 GB/s) = 5 us + 3 x 15,925,248 / 50e9 = 960.5 us
    at every TP. SSD: the one 7 GB/s device serves all TP ranks' reads: 80 us + 3 x TP x 15,925,248 / 7e9 = 6.905 ms
    at TP 1, 13.730 ms at TP 2, 27.380 ms at TP 4 (r0's 3 demotions, 9.6 ms of writes at 5 GB/s, drained long
    before). Before: 3 latents read at any TP, and the SSD load 6.905 ms at any TP."""
    metrics, requests = _run(run_cli, tmp_path, tier, tp)
    assert requests["cached_tokens"].tolist() == [0, 0, 1535]
    traffic = metrics["tiers"][tier]
    assert traffic["bytes_read"] == 3 * tp * LATENT_BLOCK
    assert traffic["bytes_written"] == 5 * LATENT_BLOCK  # stored once: one rank writes each latent
    expected = DRAM_LAT + 3 * LATENT_BLOCK / DRAM_BW if tier == "dram" else SSD_LAT + 3 * tp * LATENT_BLOCK / SSD_BW
    assert requests["kv_load"].tolist()[:2] == [0.0, 0.0]
    assert requests["kv_load"].tolist()[2] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_a_cluster_fetch_from_eic_carries_every_ranks_copy(run_cli, tmp_path, tp):
    """One rack, one node of TP GPUs, one instance; the latents demoted into the rack's EIC are fetched over the EIC's
    link (50 GB/s x TP ranks), the node's NIC (12.5 GB/s, shared by its GPUs) and the PCIe links (63 GB/s x TP): the
    NIC bounds it, so r2's load is 10 + 5 us + 3 x TP x 15,925,248 B / 12.5e9 = 3.837 ms at TP 1, 7.659 ms at TP 2,
    15.303 ms at TP 4 (before: 3.837 ms at any TP), and the EIC reads (and fetched_bytes counts) 3 x TP latents."""
    metrics, requests = _run(run_cli, tmp_path, "eic", tp, "--cluster")
    assert requests["cached_tokens"].tolist() == [0, 0, 1535]
    assert metrics["tiers"]["eic"]["bytes_read"] == 3 * tp * LATENT_BLOCK
    assert metrics["tiers"]["eic"]["bytes_written"] == 5 * LATENT_BLOCK
    cluster = metrics["cluster"]
    assert cluster["block_bytes"] == LATENT_BLOCK  # a block as the EIC stores it
    assert cluster["fetched_blocks"]["rack"] == 3 and cluster["fetched_bytes"]["rack"] == 3 * tp * LATENT_BLOCK
    # loaded when r2 is admitted (vLLM's order): its kv_load
    assert requests["kv_load"].tolist()[2] == pytest.approx(EIC_LAT + NIC_LAT + 3 * tp * LATENT_BLOCK / NIC_BW,
                                                            rel=1e-9)
    assert "fetch" not in requests.columns  # (no fetch ahead of admission is left to time)


@pytest.mark.parametrize("tp", [1, 2])
def test_a_cache_only_replay_reads_a_latent_hit_once_per_rank(run_cli, tmp_path, tp):
    """The policy study counts a hit's read as a serving load does: r0's 3 blocks, pushed to DRAM by r1's 4, hit
    there for r2 and are read TP times: 3 x TP x 15,925,248 B; the report's block_bytes stays the stored latent."""
    metrics, _ = _run(run_cli, tmp_path, "dram", tp, "--cache-only")
    assert metrics["block_bytes"] == LATENT_BLOCK
    assert metrics["tiers"]["dram"]["hits"] == 3
    assert metrics["tiers"]["dram"]["bytes_read"] == 3 * tp * LATENT_BLOCK


@pytest.mark.parametrize("path", ["compiled", "generic"])
def test_both_cache_paths_read_a_stored_block_once_per_rank(path):
    """An HBM of 1 block over a DRAM of 2, a block stored as 100 B and read by 4 ranks (MLA at TP 4): touching 1, 2,
    then 1 demotes 1 (100 B written), hits it in DRAM (4 x 100 B read) and demotes 2 (100 B written)."""
    from sim.cache.arena import TierArena
    from sim.cache.hooked import HookedMultiTierCache
    from sim.cache.multitier import build_cache
    from tests.cache_helpers import make_tiers

    arena = TierArena(max_keys=16)
    top, dram = make_tiers(["lru", "lru"], [1, 2], arena=arena, names=["hbm", "dram"])
    cache = (build_cache([top, dram], 100, read_copies=4) if path == "compiled"
             else HookedMultiTierCache([top, dram], 100, read_copies=4))
    assert [cache.touch(key, now) for now, key in enumerate([1, 2, 1])] == [-1, -1, 1]
    assert (dram.stats.promotions, dram.stats.bytes_read, dram.stats.bytes_written) == (1, 400, 200)


def test_the_checker_reads_the_front_tp_of_the_mode_that_ran(run_cli, tmp_path):
    """A config file may carry pd.prefill_tensor_parallel_size into a mode that reads no pd key (cache-only here):
    the replay's ranks are serving.tensor_parallel_size's 2, so r2's 3 DRAM hits read 3 x 2 latents (HBM of 4 blocks:
    0.06 GiB // 15,925,248 B), and the checker, which took the pd key's 4 for the front TP, reported the consistent
    report as 'bytes_read != (hits + prefetches) x block_bytes x read_copies'."""
    (tmp_path / "mla.jsonl").write_text("".join(
        json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids}) + "\n"
        for t, n, ids in ROWS))
    (tmp_path / "pd.yaml").write_text("pd:\n  prefill_tensor_parallel_size: 4\n  decode_tensor_parallel_size: 4\n")
    out = tmp_path / "r.json"
    argv = ["--cache-only", "--workload-trace", tmp_path / "mla.jsonl", "--calibration-profile", tmp_path / "pd.yaml",
            "--quiet", "--no-plot", "--report-json", out]
    for assignment in ("model=deepseek-v2-lite", "serving.tensor_parallel_size=2", "cache.tiers.hbm.capacity_gib=0.06",
                       "cache.tiers.dram.capacity_gib=1", "cache.tiers.ssd.capacity_gib=0"):
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    report = json.loads(out.read_text())
    assert report["config"]["pd"]["prefill_tensor_parallel_size"] == 4
    assert report["runs"][0]["metrics"]["tiers"]["dram"]["bytes_read"] == 3 * 2 * LATENT_BLOCK
    assert check_report(report) == []
