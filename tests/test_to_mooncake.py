"""tools/to_mooncake.py: a trace written as Mooncake-format hash ids reads back as the same requests and blocks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from sim.config import load_config
from tests.conftest import BUNDLED_AZURE, ROOT

TOOL = ROOT / "tools" / "to_mooncake.py"


def _load(path, block_size=16):
    from trace.workload import load_workload

    return load_workload(load_config(None, sets=[f"workload.trace={path}", f"serving.block_size={block_size}"]))


def test_token_ids_written_as_hash_ids_read_back_as_the_same_blocks(shared_data, tmp_path):
    """The bundled LLMServingSim workload (token ids) and its Mooncake form: same arrivals (to the microsecond the
    milliseconds keep), lengths and block sharing, block for block."""
    source = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    out = tmp_path / "hashes.jsonl"
    done = subprocess.run([sys.executable, str(TOOL), "--workload-trace", str(source), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    original, written = _load(source), _load(out)
    assert np.allclose(written.arrival_s, original.arrival_s, atol=1e-6)
    assert (written.input_tokens == original.input_tokens).all() and (written.output_tokens == original.output_tokens).all()
    ids = original.access_stream()
    assert (written.block_offsets == original.block_offsets).all() and (written.access_stream() == ids).all()
    assert len(np.unique(ids)) < len(ids)  # (the workload does share prefixes)


def test_a_trace_without_blocks_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL), "--workload-trace", str(BUNDLED_AZURE), "--out",
                           str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert done.returncode == 2 and "names no blocks" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_an_unwritable_out_is_refused_before_the_trace_is_read(tmp_path):
    """Found before the work starts, in one line (the trace's own notes, printed as it loads, would come first)."""
    (tmp_path / "file").write_text("")
    done = subprocess.run([sys.executable, str(TOOL), "--workload-trace", str(BUNDLED_AZURE), "--out",
                           str(tmp_path / "file" / "x.jsonl")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "--out" in done.stderr


def test_an_out_that_is_the_trace_itself_is_refused_and_the_trace_kept(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 32, "output_length": 4, "hash_ids": [1, 2]}\n')
    before = trace.read_bytes()
    done = subprocess.run([sys.executable, str(TOOL), "--workload-trace", str(trace), "--out", str(trace)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "is also the path of --workload-trace" in done.stderr
    assert trace.read_bytes() == before
