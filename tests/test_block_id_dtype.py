"""A trace's block ids are int32 (a fleet's 140 M of them: 0.53 GiB, not 1.07), below ``KEY_LIMIT`` as the tier
arena's slots hold them: every loader and generator makes them so, the workload cache keeps them so, an id space past
the bound is refused up front (exit 2), and each compiled kernel that reads them compiles for int32 only (an int64
copy would be a second compile at a cold start, and a fleet's int64 copy held beside them)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sim.cluster.routers import instance_id_dtype
from sim.config import load_config
from sim.config_workload import WorkloadConfig
from sim.errors import TraceError
from tests.conftest import ROOT
from tests.loader_helpers import write
from tests.test_serving import make_trace
from trace import request
from trace.continuations import generated_blocks
from trace.loaders import load_trace
from trace.workload import load_workload

MOONCAKE = ROOT / "tests" / "samples" / "mooncake_arxiv.jsonl"
# two requests of 512-token blocks: hash ids 7 9 then 7 9 4 (3 distinct blocks; dense ids 0 1 then 0 1 2)
TWO_TURNS = ('{"timestamp": 0, "input_length": 1000, "output_length": 600, "hash_ids": [7, 9]}\n'
             '{"timestamp": 5, "input_length": 1500, "output_length": 5, "hash_ids": [7, 9, 4]}\n')


@pytest.mark.parametrize("settings", [{}, {"block_mismatch": "split"}])
def test_hash_ids_are_interned_to_int32_by_hand(tmp_path, settings):
    """Mooncake hash ids 7 9 | 7 9 4 are dense ids 0 1 | 0 1 2 in order of first appearance; split into 256-token
    blocks, (7,0) (7,1) (9,0) (9,1) | the same, then (4,0) (4,1): ids 0 1 2 3 | 0 1 2 3 4 5 (the second turn's 1500
    tokens fill 6 blocks: 3 trace blocks of two). Int32 either way."""
    path = write(tmp_path, "two.jsonl", TWO_TURNS)
    trace = load_trace(WorkloadConfig(trace=str(path), **settings), 256 if settings else 512)
    assert trace.access_stream().dtype == np.int32
    want = [0, 1, 2, 3, 0, 1, 2, 3, 4, 5] if settings else [0, 1, 0, 1, 2]
    assert trace.access_stream().tolist() == want and trace.num_unique_blocks == max(want) + 1


@pytest.mark.parametrize("kind", ["multi-turn", "agentic", "system-prompt", "rag"])
def test_synthetic_workloads_hold_int32_ids_and_keep_them_when_cut(kind):
    """Every generator's ids are int32, dense from 0; dropping requests, a request range and truncated prompts keep
    int32 ids (the values of the rows kept, as a slice of the int64 ids they were would give)."""
    config = load_config(None, preset="smoke", sets=[f"workload.synthetic.kind={kind}"])
    trace = load_workload(config)
    ids = trace.access_stream()
    assert ids.dtype == np.int32 and ids.min() == 0 and ids.max() + 1 == trace.num_unique_blocks
    wide, counts = ids.astype(np.int64), np.diff(trace.block_offsets)
    keep = np.arange(len(trace)) % 3 != 0
    trace.drop(~keep, "test")
    assert trace.access_stream().dtype == np.int32
    assert trace.access_stream().tolist() == wide[np.repeat(keep, counts)].tolist()
    trace.truncate_inputs(100)
    trace.select_range(0.25, 0.75)
    assert trace.access_stream().dtype == np.int32 and trace.blocks(0).dtype == np.int32


def test_unique_kind_streams_are_int32():
    """A trace of token counts only names no ids; its stream (block j is id j) and a request's blocks are int32."""
    trace = make_trace([0.0, 1.0], [40, 20], [1, 1])
    assert not trace.has_block_ids
    assert trace.access_stream().tolist() == [0, 1, 2, 3, 4] and trace.access_stream().dtype == np.int32
    assert trace.blocks(1).tolist() == [3, 4] and trace.blocks(1).dtype == np.int32  # (blocks of 16: 3 + 2)


def test_ids_given_in_another_dtype_are_held_as_int32_or_refused():
    """A Trace built with int64 ids (a test, a tool) holds them as int32; ids int32 cannot hold are refused."""
    trace = make_trace([0.0, 1.0], [32, 32], [1, 1], block_lists=[[0, 5], [0, 7]])
    assert trace.access_stream().dtype == np.int32 and trace.access_stream().tolist() == [0, 5, 0, 7]
    with pytest.raises(TraceError, match=r"block ids must be in \[0, 2,147,483,647\)"):
        make_trace([0.0], [32], [1], block_lists=[[0, 2**31]])


def test_an_id_space_past_the_limit_is_refused_at_load_exit_2(tmp_path, run_cli, monkeypatch):
    """The bound lowered to 2 ids: the two-turn trace's 3 distinct blocks are refused when it is loaded (before any
    cache is built: --trace-stats builds none), with exit status 2 and a message naming the file; at 3 it loads."""
    path = write(tmp_path, "two.jsonl", TWO_TURNS)
    monkeypatch.setattr(request, "KEY_LIMIT", 2)
    status, out, err = run_cli("--trace-stats", "--workload-trace", path, "--quiet",
                               "--report-json", tmp_path / "r.json")
    assert status == 2, err
    assert str(path) in err and "needs 3 block ids" in err and "below 2 (int32 ids)" in err
    monkeypatch.setattr(request, "KEY_LIMIT", 3)
    assert load_trace(WorkloadConfig(trace=str(path)), 512).num_unique_blocks == 3


def test_generated_ids_past_the_limit_are_refused(monkeypatch):
    """Blocks of 512. The first turn (1000 tokens, 600 generated: KV of 1599 tokens, 3 full blocks) generates 2
    blocks past its prompt's one full block; the second turn's prompt (1500 tokens: 2 full blocks) does not hold all
    3, so they get new ids past the trace's 3: 3 and 4, an id space of 5. At a bound of 4 that is refused, not
    wrapped, whether or not later prompts are searched for them."""
    trace = make_trace([0.0, 5.0], [1000, 1500], [600, 5], 512, [[0, 1], [0, 1, 2]])
    generated = generated_blocks(trace, 512, 3)
    assert generated.ids.dtype == np.int32 and generated.ids.tolist() == [3, 4] and generated.num_ids == 5
    monkeypatch.setattr(request, "KEY_LIMIT", 4)
    for continued in (True, False):
        with pytest.raises(TraceError, match="generated blocks needs 5 block ids but .* below 4 "):
            generated_blocks(trace, 512, 3, continued)


def test_the_router_owner_table_is_int16_while_instance_ids_fit():
    """Instance ids 0 … n - 1 and -1 fit int16 up to n = 32,768 instances; one more and the table is int32."""
    assert instance_id_dtype(1) is np.int16 and instance_id_dtype(32_768) is np.int16
    assert instance_id_dtype(32_769) is np.int32 and instance_id_dtype(10_000_000) is np.int32
    assert np.iinfo(np.int16).max == 32_767  # the largest id of 32,768 instances


KERNELS = """
import json, sys, tempfile, main
out = tempfile.mkdtemp()
mc = sys.argv[1]
runs = [["--trace-stats", "--workload-trace", mc],
        ["--cache-only", "--workload-trace", mc, "--policy", "lru,belady", "--capacity-blocks", "500"],
        ["--cache-only", "--workload-trace", mc, "--policy", "lru"],
        ["--cache-only", "--workload-trace", mc, "--policy", "lru", "--set", "cache.access_semantics=prefix"],
        ["--cache-only", "--workload-trace", mc, "--mrc"],
        ["--cluster", "--set", "workload.synthetic.num_requests=60", "--set", "cluster.num_racks=2"]]
for argv in runs:
    assert main.main([*argv, "--quiet", "--no-plot", "--report-json", out + "/r.json"]) == 0, argv
from trace import blocks, continuations, stats
from sim.cache import access, engine, mrc
at = {"blocks._repeated_within": (blocks._repeated_within, [1]),
      "continuations._generated_ids": (continuations._generated_ids, [1]),
      "stats._hits_in_prompts": (stats._hits_in_prompts, [1, 4]),
      "access._next_uses": (access._next_uses, [0]),
      "mrc._fenwick_distances": (mrc._fenwick_distances, [0]),
      "engine.replay": (engine.replay, [2]), "engine.replay_plain": (engine.replay_plain, [2]),
      "engine.replay_single": (engine.replay_single, [2])}
print(json.dumps({name: sorted({str(sig[i].dtype) for sig in fn.signatures for i in where})
                  for name, (fn, where) in at.items()}))
"""


def test_kernels_reading_block_ids_compile_for_int32_only():
    """Loading a Mooncake trace, its statistics, cache-only replays (one tier, tiered, prefix, Belady's next uses, the
    MRC) and a small cluster run: every compiled kernel that takes the trace's ids (or its stream) got int32 arrays only, one
    specialisation each, no int64 copy of them."""
    done = subprocess.run([sys.executable, "-c", KERNELS, str(MOONCAKE)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {name: ["int32"] for name in seen}, seen
