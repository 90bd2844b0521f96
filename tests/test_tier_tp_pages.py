"""A lower tier under tensor parallelism: it holds every rank's shard (page) of a block, as vLLM's offloading
connector and LMCache store them, and a TP instance loads every rank's shard."""

from __future__ import annotations

import json

import pytest
from tier_traffic_helpers import BLOCK_TOKENS, KV_BYTES_PER_TOKEN
from tier_traffic_helpers import run_metrics as _run


@pytest.mark.parametrize("mode", ["--cache-only", "--cluster"])
def test_a_lower_tier_holds_every_tp_ranks_shard_of_a_block(run_cli, tmp_path, mode):
    """A node's DRAM/SSD and a rack's EIC hold each block's KV from every TP rank (each rank offloads its
    shard), so 1 GiB holds 1 GiB / (KV per token x 16 tokens) blocks whatever the TP degree: 512 blocks of
    2 MiB for Llama-3.1-8B. Per-rank bytes (1 MiB at TP 2) counted 1,024, twice what fits. HBM is one GPU's:
    it holds one shard per block."""
    full_block = BLOCK_TOKENS * KV_BYTES_PER_TOKEN  # 2 MiB: all 8 KV heads, whichever ranks hold them
    assert 2**30 // full_block == 512
    sets = ("serving.tensor_parallel_size=2", "serving.num_instances=1", "cache.tiers.dram.capacity_gib=1",
            "cache.tiers.eic.capacity_gib=1", "workload.synthetic.num_requests=30")
    if mode == "--cache-only":
        sets = tuple(s for s in sets if not s.startswith("serving.num_instances"))
        metrics = _run(run_cli, tmp_path, mode, sets=sets)
        assert metrics["capacity_blocks"]["dram"] == metrics["capacity_blocks"]["eic"] == 512
        assert metrics["block_bytes"] == full_block  # every rank's shard
    else:
        metrics = _run(run_cli, tmp_path, mode, sets=tuple(s for s in sets if "num_instances" not in s))
        assert metrics["cluster"]["eic_occupancy"]["capacity_blocks_each"] == 512


@pytest.mark.parametrize("sets, stored, loaded, lanes", [
    # DeepSeek-V2-Lite (MLA): one latent of kv_lora_rank 512 + rope 64 = 576 values a layer, 27 layers, bf16, whole
    # on every rank (tests/fixtures/hf_configs/DeepSeek-V2-Lite.json): the same page on both GPUs, stored once (vLLM's
    # replicated_layout: one rank stores it) and loaded by both, each its own copy over its own link
    # (CanonicalPageMapping: "runs cover the full local page in both directions")
    (("model=deepseek-v2-lite", "serving.tensor_parallel_size=2"), 16 * 27 * 576 * 2, 2 * 16 * 27 * 576 * 2, 2),
    # Llama-3.1-8B's 8 KV heads at TP 16: each rank holds one head, each head on two ranks; every rank stores its
    # own page (vLLM CPUOffloadingSpec: num_copies = world_size): 16 one-head pages, twice the model's KV
    (("serving.tensor_parallel_size=16", "hardware.gpus_per_node=16", "serving.num_instances=1"),
     2 * 16 * KV_BYTES_PER_TOKEN, 2 * 16 * KV_BYTES_PER_TOKEN, 16),
    (("serving.tensor_parallel_size=2",), 16 * KV_BYTES_PER_TOKEN, 16 * KV_BYTES_PER_TOKEN, 2),
    # Qwen3-30B-A3B (48 layers, 4 KV heads of 128, bf16) at TP 8: a rank's page holds one head, 16 tokens x 2 (K, V)
    # x 48 x 128 x 2 B = 393,216 B; 8 ranks' pages: 3,145,728 B, each head stored by the 2 ranks that hold it
    (("model=qwen3-30b-a3b", "serving.tensor_parallel_size=8", "hardware.gpus_per_node=8"),
     8 * 16 * 2 * 48 * 128 * 2, 8 * 16 * 2 * 48 * 128 * 2, 8),
])
def test_a_lower_tier_stores_every_ranks_page(sets, stored, loaded, lanes):
    """A lower tier stores a block as vLLM's OffloadingConnector does: every TP rank's page, a KV head replicated past
    the head count included (each rank offloads its own GPU blocks), MLA's latent once; a load reads each rank's page
    over that rank's link, side by side (MLA: each rank its own read of the one latent)."""
    from sim.cache.tiers import kv_block_bytes, read_copies, read_lanes, stored_block_bytes
    from sim.config import load_config

    config = load_config(None, sets=list(sets))
    loaded_block_bytes = stored_block_bytes(config) * read_copies(config)  # what a load reads, every rank's page
    assert (stored_block_bytes(config), loaded_block_bytes, read_lanes(config)) == (stored, loaded, lanes)
    assert loaded_block_bytes == lanes * kv_block_bytes(config)  # a load: one page per link


def test_a_replicated_head_fills_dram_once_per_rank(run_cli, tmp_path):
    """Qwen3-30B-A3B at TP 8 (4 KV heads, each on 2 ranks): 8 GiB of DRAM holds 8 GiB // (8 x 393,216 B) = 2,730
    blocks, not the 5,461 a store of each head once would give, and a replay's demotions write 3,145,728 B each."""
    from sim.cache.tiers import lower_tier_blocks
    from sim.config import load_config

    sets = ["model=qwen3-30b-a3b", "serving.tensor_parallel_size=8", "hardware.gpus_per_node=8"]
    assert lower_tier_blocks(8, load_config(None, sets=sets)) == 8 * 2**30 // (8 * 393_216) == 2730
    metrics = _run(run_cli, tmp_path, "--cache-only",
                   sets=(*sets, "serving.num_gpu_blocks=50", "cache.tiers.dram.capacity_gib=8",
                         "workload.synthetic.num_requests=30"))
    assert metrics["block_bytes"] == 3_145_728
    dram = metrics["tiers"]["dram"]
    assert dram["insertions"] > 0 and dram["bytes_written"] == dram["insertions"] * 3_145_728


def test_the_tp_beside_capacity_blocks_is_read_where_it_replicates_a_head(run_cli, tmp_path):
    """--capacity-blocks counts its blocks whole (every rank's page), so the TP is read there where a rank replicates
    a KV head: Qwen3-30B-A3B's 4 heads at TP 8 make a block 8 x 393,216 B (48 layers x 1 head x 128 x K,V x 2 B x 16
    tokens a rank) = 3,145,728 B, twice TP 1's 1,572,864, with the same hits. It was refused as unread (exit 2). At
    TP 4 (one head a rank, none replicated) the block is TP 1's, and the TP is still refused."""
    def run(tp: int | None) -> tuple[int, str, dict | None]:
        out = tmp_path / f"tp{tp}.json"
        argv = ["--cache-only", "--capacity-blocks", "50", "--preset", "smoke", "--quiet", "--no-plot",
                "--report-json", out, "--set", "model=qwen3-30b-a3b", "--set", "serving.block_size=16"]
        status, _, err = run_cli(*argv, *(["--set", f"serving.tensor_parallel_size={tp}"] if tp else []))
        return status, err, json.loads(out.read_text())["runs"][0]["metrics"] if status == 0 else None

    (_, _, one), (status, err, eight) = run(None), run(8)
    assert status == 0, err
    assert (one["block_bytes"], eight["block_bytes"]) == (1_572_864, 3_145_728)
    assert eight["hits"] == one["hits"] and eight["accesses"] == one["accesses"]
    insertions = eight["tiers"]["hbm"]["insertions"]
    assert insertions > 0 and eight["tiers"]["hbm"]["bytes_written"] == insertions * 3_145_728
    status, err, _ = run(4)
    assert status == 2 and "serving.tensor_parallel_size" in err and "--capacity-blocks" in err


def test_a_tp_instance_loads_every_ranks_shard_from_the_one_ssd(run_cli, tmp_path):
    """At TP 2 each GPU reads its half of a block over its own PCIe link, but the node's one SSD (a shared
    device, 7 GB/s) serves both halves. Hand-made trace on one instance of 4 HBM blocks (512 tokens; 5 less vLLM's
    null block), no DRAM:
    r1's 4 blocks push r0's 3 full blocks [1, 2, 3] to the SSD; r2 asks for them 10 s later (the queue of writes
    has drained): its kv_load is 80 us + 3 x 64 MiB / 7 GB/s (Llama-3.1-8B: 64 MiB per 512-token block, both
    shards), and the SSD reads 3 x 64 MiB. (Whole blocks: a lower tier serves a prompt's full blocks, the last
    one too, and its last token is recomputed, as vLLM's OffloadingConnector; a partial block would not hit.)"""
    trace = tmp_path / "ssd.jsonl"
    rows = [(0, 1536, [1, 2, 3]), (10_000, 2000, [20, 21, 22, 23]), (20_000, 1536, [1, 2, 3])]
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 1, "hash_ids": ids}) + "\n"
                             for t, n, ids in rows))
    out, requests = tmp_path / "r.json", tmp_path / "req.csv"
    status, _, err = run_cli("--workload-trace", trace, "--quiet", "--no-plot", "--report-json", out,
                             "--requests-csv", requests, "--set", "serving.tensor_parallel_size=2",
                             "--set", "serving.num_instances=1", "--set", "serving.num_gpu_blocks=5",
                             "--set", "cache.tiers.dram.capacity_gib=0")
    assert status == 0, err[-2000:]
    metrics = json.loads(out.read_text())["runs"][0]["metrics"]
    block = 512 * KV_BYTES_PER_TOKEN  # both ranks' shards
    assert metrics["tiers"]["ssd"]["bytes_read"] == 3 * block
    import pandas as pd  # noqa: PLC0415
    kv_load = pd.read_csv(requests)["kv_load"].tolist()
    assert kv_load[:2] == [0.0, 0.0]
    assert kv_load[2] == pytest.approx(80e-6 + 3 * block / 7e9, rel=1e-9)
    assert pd.read_csv(requests)["cached_tokens"].tolist()[2] == 1535
