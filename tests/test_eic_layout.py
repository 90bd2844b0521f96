"""``cache.tiers.eic.layout``: an EIC that stores every TP rank's page of a block (``per-rank``, vLLM's
OffloadingConnector's layout, the default) or each distinct page once (``distinct``, vLLM's MooncakeStoreConnector:
ranks holding identical bytes share one key and stripe its PUT, every rank GETs its own page).

Expectations are hand-computed from the model's shapes: Qwen3-30B-A3B (48 layers, 4 KV heads of 128, bf16) at TP 8
holds each KV head on 2 ranks, so a 16-token block is 8 pages of 2 x 48 x 1 x 128 x 2 x 16 = 393,216 B per-rank
(3,145,728 B) and 4 distinct pages, the TP-1 block 2 x 48 x 4 x 128 x 2 x 16 = 1,572,864 B, distinct.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

PAGE = 2 * 48 * 1 * 128 * 2 * 16  # one TP-8 rank's page of a Qwen3-30B-A3B block (one of its 4 KV heads)
PER_RANK = 8 * PAGE  # 3,145,728 B: every rank's page
DISTINCT = 4 * PAGE  # 1,572,864 B: each KV head once (the TP-1 block)
QWEN_TP8 = ["model=qwen3-30b-a3b", "serving.tensor_parallel_size=8", "hardware.gpus_per_node=8"]
EIC_ONLY = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]


def _config(*sets: str):
    from sim.config import load_config

    return load_config(None, sets=list(sets))


def test_hand_computed_page():
    assert (PAGE, PER_RANK, DISTINCT) == (393_216, 3_145_728, 1_572_864)


@pytest.mark.parametrize("layout, block, blocks", [("per-rank", PER_RANK, 341), ("distinct", DISTINCT, 682)])
def test_qwen3_30b_tp8_eic_holds_twice_the_blocks_distinct(layout, block, blocks):
    """1 GiB of EIC: 2**30 // 3,145,728 = 341 blocks per-rank, 2**30 // 1,572,864 = 682 distinct; DRAM and SSD keep
    every rank's page whatever the EIC's layout."""
    from sim.cache.tiers import configured_tier_blocks, tier_block_bytes

    config = _config(*QWEN_TP8, "cache.tiers.eic.capacity_gib=1", "cache.tiers.dram.capacity_gib=1",
                     f"cache.tiers.eic.layout={layout}")
    assert tier_block_bytes("eic", config) == block
    assert configured_tier_blocks("eic", config) == blocks == 2**30 // block
    assert tier_block_bytes("dram", config) == PER_RANK and configured_tier_blocks("dram", config) == 341


def _replay(layout: str, policy: str = "lru"):
    """Seven one-block requests 0 1 2 3 4 5 0 (plain semantics, exclusive) over an HBM of 2 blocks and an EIC of
    2 per-rank blocks (6,291,456 B = 0.005859375 GiB, which holds 4 distinct ones). Returns the EIC tier and each
    access's hit tier."""
    from sim.cache.access import next_use_index
    from sim.cache.multitier import build_cache
    from sim.cache.tiers import build_tiers, read_copies, stored_block_bytes

    config = _config(*QWEN_TP8, *EIC_ONLY, "serving.num_gpu_blocks=2", "cache.tiers.eic.capacity_gib=0.005859375",
                     f"cache.tiers.eic.layout={layout}")
    blocks = np.array([0, 1, 2, 3, 4, 5, 0], dtype=np.int64)
    tiers = build_tiers(config, policy, next_use=next_use_index(blocks) if policy.startswith("belady") else None)
    assert [t.name for t in tiers] == ["hbm", "eic"]
    cache = build_cache(tiers, stored_block_bytes(config), read_copies=read_copies(config))
    hit_tier = np.full(len(blocks), -2, dtype=np.int64)
    cache.replay(blocks, np.arange(len(blocks) + 1, dtype=np.int64), hit_tier, 0, len(blocks), prefix=False)
    return tiers[1], hit_tier.tolist()


def test_a_tiny_sequence_per_rank():
    """HBM (LRU, 2 blocks) demotes 0, 1, 2, 3 on the uses of 2-5; the EIC (2 blocks) evicts 0 and 1 to take 2 and 3,
    so the last use of 0 misses and demotes 4 (evicting 2): 5 blocks of 3,145,728 B written, none read."""
    eic, hit_tier = _replay("per-rank")
    stats = eic.stats
    assert eic.capacity == 2
    assert hit_tier == [-1] * 7
    assert (stats.insertions, stats.evictions, stats.hits) == (5, 3, 0)
    assert (stats.bytes_written, stats.bytes_read) == (5 * PER_RANK, 0) == (15_728_640, 0)


def test_a_tiny_sequence_distinct():
    """The same uses, the EIC holding 4 distinct blocks: 0-3 stay, the last use of 0 hits there (every one of the 8
    ranks GETs its own 393,216 B page: 3,145,728 B read) and HBM demotes 4 into its room: 5 blocks of 1,572,864 B
    written, no eviction."""
    eic, hit_tier = _replay("distinct")
    stats = eic.stats
    assert eic.capacity == 4
    assert hit_tier == [-1] * 6 + [1]
    assert (stats.insertions, stats.evictions) == (5, 0)
    assert (stats.bytes_written, stats.bytes_read) == (5 * DISTINCT, 8 * PAGE) == (7_864_320, 3_145_728)


def test_the_generic_path_writes_distinct_pages_too():
    """A policy without a compiled kernel (``sim.cache.hooked``): each block it writes into the EIC is 1,572,864 B."""
    eic, _ = _replay("distinct", "belady-bypass")
    stats = eic.stats
    assert eic.capacity == 4 and stats.insertions > 0
    assert stats.bytes_written == stats.insertions * DISTINCT


@pytest.mark.parametrize("sets", [
    ["model=qwen3-30b-a3b", "serving.tensor_parallel_size=4", "hardware.gpus_per_node=8"],  # TP = KV heads
    ["model=qwen3-30b-a3b", "serving.tensor_parallel_size=2", "hardware.gpus_per_node=8"],  # TP < KV heads
    ["model=llama-3.1-8b"],  # TP 1
    # MLA: the latent, the same on every rank, is stored once in both (vLLM: one MLA page, TP readers)
    ["model=deepseek-v2-lite", "serving.tensor_parallel_size=2", "hardware.gpus_per_node=8"],
    ["model=deepseek-v3", "serving.tensor_parallel_size=8", "hardware.gpus_per_node=8"],
], ids=["qwen3-tp4", "qwen3-tp2", "llama-tp1", "mla-v2-lite-tp2", "mla-v3-tp8"])
def test_no_replicated_page_no_difference(sets):
    """At TP <= the KV heads no rank replicates a page, and MLA's latent is stored once already: both layouts store the
    same block, the same capacity."""
    from sim.cache.tiers import configured_tier_blocks, stored_block_bytes, tier_block_bytes, tier_copy_bytes

    per_rank = _config(*sets, "cache.tiers.eic.capacity_gib=64")
    distinct = _config(*sets, "cache.tiers.eic.capacity_gib=64", "cache.tiers.eic.layout=distinct")
    assert tier_block_bytes("eic", distinct) == tier_block_bytes("eic", per_rank) == stored_block_bytes(per_rank)
    assert tier_copy_bytes("eic", distinct) == tier_copy_bytes("eic", per_rank)
    assert configured_tier_blocks("eic", distinct) == configured_tier_blocks("eic", per_rank)


def test_a_sparse_attention_page_is_stored_once_distinct():
    """DeepSeek-V3.2 (16-layer fixture, 64-token blocks, fp8_ds_mla): a rank's page is 64 x 16 x (656 latent + 132
    indexer key) = 806,912 B, the same on every rank. Per-rank keeps all 4 ranks' pages at TP 4 (vLLM's
    OffloadingConnector refuses such a page as MLA's); vLLM's MooncakeStoreConnector keys it once (the indexer cache is
    an MLAAttentionSpec too, so the group is pure MLA: factor TP), each rank GETting it."""
    from pathlib import Path

    from sim.cache.tiers import read_copies, tier_block_bytes

    fixture = Path(__file__).resolve().parent / "fixtures" / "hf_configs" / "DeepSeek-V3.2-Exp-16L64E.json"
    sets = [f"model={fixture}", "serving.tensor_parallel_size=4", "hardware.gpus_per_node=8", "serving.block_size=64"]
    page = 64 * 16 * (656 + 132)
    assert tier_block_bytes("eic", _config(*sets)) == 4 * page == 3_227_648
    distinct = _config(*sets, "cache.tiers.eic.layout=distinct")
    assert tier_block_bytes("eic", distinct) == page
    assert read_copies(distinct) == 1  # a load still reads 4 pages: every rank's own GET of the one key, 4 x page


def test_sliding_copies_are_distinct_too():
    """Gemma 3 4B (4 KV heads) at TP 8: a sliding group's block (vLLM: a SlidingWindowSpec group, replication factor
    tp // kv_heads = 2) is stored as half the ranks' pages, as a full group's."""
    from sim.cache.tiers import stored_block_bytes, stored_copy_bytes, tier_block_bytes, tier_copy_bytes

    config = _config("model=gemma-3-4b", "serving.tensor_parallel_size=8", "hardware.gpus_per_node=8",
                     "cache.tiers.eic.layout=distinct")
    assert tier_block_bytes("eic", config) * 2 == stored_block_bytes(config)
    assert tier_copy_bytes("eic", config) * 2 == stored_copy_bytes(config)


def test_gated_deltanet_states_stay_every_ranks():
    """Qwen3-Next (2 KV heads) at TP 4: the attention block is stored as 2 of its 4 pages (factor 4 // 2), a state
    every rank's (vLLM: a MambaSpec group's factor is 1); a key's slot is the larger, the state."""
    from sim.cache.tiers import (
        stored_block_bytes,
        stored_copy_bytes,
        tier_block_bytes,
        tier_copy_bytes,
        tier_slot_bytes,
    )

    config = _config("model=qwen3-next-80b-a3b", "serving.tensor_parallel_size=4", "hardware.gpus_per_node=8",
                     "cache.tiers.eic.layout=distinct")
    block, state = tier_block_bytes("eic", config), tier_copy_bytes("eic", config)
    assert block * 2 == stored_block_bytes(config)
    assert state == stored_copy_bytes(config) > block
    assert tier_slot_bytes("eic", config) == state


def _metrics(run_cli, tmp_path, *flags: str, sets=()) -> dict:
    out = tmp_path / "r.json"
    argv = [*flags, "--preset", "smoke", "--quiet", "--no-plot", "--report-json", out]
    for assignment in sets:
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    return json.loads(out.read_text())["runs"][0]["metrics"]


@pytest.mark.parametrize("flags", [(), ("--cluster",)], ids=["single", "cluster"])
def test_an_eic_that_never_fills_writes_half_the_bytes(run_cli, tmp_path, flags):
    """Qwen3-30B-A3B at TP 8 over an EIC too large to evict (64 GiB, ~34 GB written): the same blocks are demoted,
    hit and loaded in both layouts, so every metric is the same but the EIC's bytes written, half distinct (and its
    write share)."""
    sets = [*QWEN_TP8, *EIC_ONLY, "serving.num_gpu_blocks=600", "cache.tiers.eic.capacity_gib=64",
            "workload.synthetic.num_requests=100", "workload.synthetic.rate_rps=20", "workload.synthetic.turns_mean=6",
            "workload.synthetic.think_time_median_s=3", "workload.synthetic.start=empty",
            *(["cluster.nodes_per_rack=1"] if flags else ["serving.num_instances=1"])]
    per_rank = _metrics(run_cli, tmp_path, *flags, sets=sets)
    distinct = _metrics(run_cli, tmp_path, *flags, sets=[*sets, "cache.tiers.eic.layout=distinct"])
    before, after = per_rank.pop("tiers")["eic"], distinct.pop("tiers")["eic"]
    assert before["bytes_written"] > 0 and before["bytes_read"] > 0  # blocks were demoted and loaded
    assert before["bytes_written"] < 64 * 2**30  # none evicted
    assert before["bytes_written"] % PER_RANK == 0 and after["bytes_written"] == before["bytes_written"] // 2
    assert after["bytes_read"] == before["bytes_read"]  # every rank GETs its own page
    assert after["write_utilization_max"] == pytest.approx(before["write_utilization_max"] / 2)
    assert after["read_utilization_max"] == before["read_utilization_max"]
    if flags:  # a rack's EIC: 64 GiB // 3,145,728 B = 21,845 blocks per-rank, // 1,572,864 B = 43,690 distinct
        occupied, occupied_distinct = per_rank["cluster"].pop("eic_occupancy"), distinct["cluster"].pop("eic_occupancy")
        assert (occupied["capacity_blocks_each"], occupied_distinct["capacity_blocks_each"]) == (21_845, 43_690)
        assert occupied_distinct["max"] == pytest.approx(occupied["max"] / 2)  # the same blocks held
    assert distinct == per_rank


def test_the_layout_is_the_eics_alone(run_cli):
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--set", "cache.tiers.dram.layout=distinct")
    assert status == 2 and "unknown config key 'cache.tiers.dram.layout'" in err, err


def test_the_layout_of_no_eic_is_refused(run_cli):
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--set", "cache.tiers.eic.layout=distinct",
                             "--set", "cache.tiers.eic.capacity_gib=0")
    assert status == 2 and "cache.tiers.eic.layout" in err and "no eic tier" in err, err


@pytest.mark.parametrize("layout, eic_blocks, hit", [("per-rank", 341, 0.0), ("distinct", 682, 0.5)])
def test_the_planner_sizes_an_eic_of_distinct_pages_in_its_blocks(layout, eic_blocks, hit):
    """The planner's miss-ratio curve reads each tier's capacity in blocks: 1 GiB of EIC holds 341 per-rank blocks of
    Qwen3-30B-A3B at TP 8, 682 distinct ones (as the run's EIC: above). A stream of 500 blocks read twice in the same
    order hits LRU only on its second pass, and only if the cache holds all 500 (a smaller one evicts each block
    before its reuse): 2 blocks of HBM + 341 hit nothing, 2 + 682 hit 500 of 1,000."""
    from types import SimpleNamespace

    from experiments.plan_candidates import Candidate, mrc_levels
    from sim.serving.engine_limits import block_size

    config = _config(*QWEN_TP8, *EIC_ONLY, "serving.num_gpu_blocks=2", "cache.tiers.eic.capacity_gib=1",
                     f"cache.tiers.eic.layout={layout}")
    stream = np.concatenate([np.arange(500), np.arange(500)]).astype(np.int64)
    trace = SimpleNamespace(access_stream=lambda: stream, num_unique_blocks=500,
                            provenance=SimpleNamespace(block_tokens=block_size(config)))
    c = Candidate("h200", 8, 8, None, {"eic": 1.0}, mode="cache-only", config=config,
                  run_tier_gib={"dram": 0.0, "ssd": 0.0, "eic": 1.0})
    mrc_levels([c], trace)
    assert eic_blocks == 2**30 // (PER_RANK if layout == "per-rank" else DISTINCT)
    assert c.mrc_levels == (0.0, 0.0, 0.0, hit)  # HBM, + DRAM (none), + SSD (none), + the EIC's blocks
