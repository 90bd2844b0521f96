"""The stream positions a serving run gives the blocks a request lets go (``KVCacheManager.free``): each block's own
(its request's first position plus its index in the prompt), whatever other requests still hold. Clairvoyant
policies read a block's next use at that position (Belady) and the learned policy its predicted class."""

from __future__ import annotations

import json

import numpy as np

from sim.serving.block_pool import BlockPool
from sim.serving.freed_positions import freed_positions
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager
from tests.cache_helpers import make_cache


class _Clock:
    now = 0.0


def _recording_manager():
    """A manager over a one-tier LRU cache whose ``touch_chain`` calls (keys, positions) are recorded."""
    cache = make_cache("lru", [50], num_blocks=16)
    calls = []
    touch_chain = cache.touch_chain

    def recording(keys, positions, freed=False):
        calls.append((list(map(int, keys)), list(map(int, positions))))
        return touch_chain(keys, positions, freed=freed)

    cache.touch_chain = recording
    return KVCacheManager(BlockPool(50, _Clock()), cache, 16, True, lambda: 0.0), calls


def test_a_request_freed_while_another_holds_its_prefix_gives_its_blocks_their_own_positions():
    # by hand: A = [s0 s1 a0 a1] at stream positions 0..3, B = [s0 s1 b0 b1] at 4..7 (64-token prompts, 16-token
    # blocks). B still holds s0 s1 when A lets go: a1 and a0 return to the cache at A's positions 3 and 2 (their
    # next uses are A's blocks', never); numbering the freed blocks from A's first position gave them 1 and 0, the
    # positions of s1 and s0, whose next uses are B's (5 and 4): Belady kept them as if reused next.
    s0, s1, a0, a1, b0, b1 = range(6)
    kv, calls = _recording_manager()
    a = Job(0, 64, 1, [s0, s1, a0, a1], 0, target=64)
    b = Job(1, 64, 1, [s0, s1, b0, b1], 4, target=64)
    kv.allocate(a, 64)
    kv.allocate(b, 64)
    kv.free(a)
    assert calls[-1] == ([a1, a0], [3, 2])
    kv.free(b)  # the last holder: every block of B, deepest first, at B's positions
    assert calls[-1] == ([b1, b0, s1, s0], [7, 6, 5, 4])


def test_freed_positions_skip_the_blocks_still_held():
    # keys deepest first at positions 9, 8, 7, 6, 5 (first = 9); 8 and 6 still held elsewhere
    keys = [40, 30, 20, 10, 0]
    assert freed_positions(keys, [40, 20, 0], 9).tolist() == [9, 7, 5]
    assert freed_positions(keys, keys, 9).tolist() == [9, 8, 7, 6, 5]
    assert freed_positions(keys, [], 9).tolist() == []
    # a key twice in one chain is freed where its count reaches zero: its last occurrence (the shallower one)
    assert freed_positions([7, 3, 7], [3, 7], 2).tolist() == [1, 0]
    assert isinstance(freed_positions(keys, [0], 9), np.ndarray)


def test_belady_bounds_the_other_policies_on_one_instance_spanning_its_tiers(run_cli, tmp_path):
    # Belady's MIN is the upper bound of the policies on one stream (DESIGN: tests that can fail). 300 system-prompt
    # requests on one instance of 150 KV blocks over DRAM 32, SSD 128 and EIC 32 blocks (2 MiB blocks of
    # Llama-3.1-8B): with freed blocks at shifted positions Belady kept blocks never used again as if reused next and
    # hit 4,980 blocks, below S3-FIFO's 7,021, LFU's 6,554 and ARC's 5,996
    out = tmp_path / "r.json"
    status, _, err = run_cli(
        "--preset", "smoke", "--workload-limit", "300", "--policy", "belady,s3fifo,lfu,arc",
        "--set", "workload.synthetic.kind=system-prompt", "--set", "workload.synthetic.input_tokens_mean=1024",
        "--set", "serving.num_instances=1", "--set", "serving.num_gpu_blocks=150",
        "--set", "cache.tiers.dram.capacity_gib=0.0625", "--set", "cache.tiers.ssd.capacity_gib=0.25",
        "--set", "cache.tiers.eic.capacity_gib=0.0625", "--quiet", "--no-plot", "--report-json", out)
    assert status == 0, err
    hits = {run["name"]: run["metrics"]["hits"] for run in json.loads(out.read_text())["runs"]}
    assert all(hits["belady"] >= h for h in hits.values()), hits


def test_a_prefix_let_go_by_the_earlier_of_its_holders_returns_at_its_latest_access():
    # by hand: A = [s0 s1 a0 a1] at stream positions 0..3, B = [s0 s1 b0 b1] at 4..7. B ends first (a shorter
    # answer): b1, b0 return at 7, 6; A still holds s0 s1. When A lets go, s1 and s0 were last used by B, at 5 and
    # 4: returned at A's own 1 and 0, their next uses read there would be B's accesses, already past, and Belady
    # would keep them as if used next however long they then stay unused
    s0, s1, a0, a1, b0, b1 = range(6)
    kv, calls = _recording_manager()
    kv.latest_use = {}  # (the run sets it where a policy reads positions)
    a = Job(0, 64, 1, [s0, s1, a0, a1], 0, target=64)
    b = Job(1, 64, 1, [s0, s1, b0, b1], 4, target=64)
    kv.allocate(a, 64)
    kv.allocate(b, 64)
    kv.free(b)
    assert calls[-1] == ([b1, b0], [7, 6])
    kv.free(a)
    assert calls[-1] == ([a1, a0, s1, s0], [3, 2, 5, 4])
    assert kv.latest_use == {}  # nothing is held any more
