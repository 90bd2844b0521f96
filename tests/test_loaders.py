"""Trace loaders against independent expectations.

Expected values are either computed by hand (small fixture files written to ``tmp_path``)
or recomputed here from the raw files with Python's ``csv``/``json``/``hashlib`` modules
and numpy — never with the loader's own helpers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

import main  # noqa: F401  (puts the project root first: kvsim's ``trace`` package, not the stdlib one)
from sim.config import WorkloadConfig
from sim.errors import ConfigError, TraceError
from trace import loaders
from trace.loaders import load_trace
from trace.stats import trace_stats

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"


def load(path, block_size: int = 16, **workload) -> "loaders.Trace":
    return load_trace(WorkloadConfig(trace=str(path), **workload), block_size=block_size)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def request_blocks(trace) -> list[list[int]]:
    return [trace.blocks(i).tolist() for i in range(len(trace))]


def first_appearance_ids(keys) -> list[int]:
    """Dense ids in order of first appearance, computed with a plain dict."""
    seen: dict = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def assert_bijection(keys, ids) -> None:
    """Equal key <=> equal id, over all positions."""
    assert len(keys) == len(ids)
    key_to_id: dict = {}
    id_to_key: dict = {}
    for k, i in zip(keys, ids):
        assert key_to_id.setdefault(k, i) == i, f"key {k!r} got two ids"
        assert id_to_key.setdefault(i, k) == k, f"id {i} given to two different keys"


# ----------------------------------------------------------------------------------------------
# 1. Azure conversation 2023: the published figures (bundled copy, no shared/ needed)


def test_azure_conv_2023_published_figures():
    trace = load(BUNDLED_AZURE)
    stats = trace_stats(trace)
    assert trace.provenance.format == "azure"
    assert stats["requests"] == 19_366
    assert stats["duration_s"] == pytest.approx(3_501.7, abs=0.05)
    assert round(stats["input_tokens"]["mean"], 1) == 1_154.7
    assert stats["input_tokens"]["p50"] == 1_020
    assert stats["input_tokens"]["p99"] == 4_142
    assert round(stats["output_tokens"]["mean"], 1) == 211.1
    assert stats["output_tokens"]["p50"] == 129
    prov = trace.provenance
    assert (prov.rows_read, prov.rows_used, prov.rows_skipped, prov.skip_reasons) == (19_366, 19_366, 0, {})
    assert prov.block_ids == "unique"


# ----------------------------------------------------------------------------------------------
# 2. The other real traces: auto-detected, values recomputed here with json/csv + numpy


def _jsonl_records(path: Path) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _expected_stats(arrival_s, inputs, outputs) -> dict:
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    return {
        "requests": len(arrival_s),
        "duration_s": float(arrival_s.max() - arrival_s.min()),
        "input_mean": float(np.mean(inputs)),
        "input_p50": float(np.median(inputs)),
        "output_mean": float(np.mean(outputs)),
        "output_p50": float(np.median(outputs)),
    }


def _check_stats(trace, expected: dict) -> None:
    stats = trace_stats(trace)
    assert stats["requests"] == expected["requests"]
    assert stats["duration_s"] == pytest.approx(expected["duration_s"], rel=1e-9, abs=1e-9)
    assert stats["input_tokens"]["mean"] == pytest.approx(expected["input_mean"], rel=1e-12)
    assert stats["input_tokens"]["p50"] == expected["input_p50"]
    assert stats["output_tokens"]["mean"] == pytest.approx(expected["output_mean"], rel=1e-12)
    assert stats["output_tokens"]["p50"] == expected["output_p50"]
    assert trace.provenance.rows_used == expected["requests"]
    assert trace.provenance.rows_skipped == 0
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.arrival_s[0] == 0.0


@pytest.fixture(scope="module")
def mooncake_records(shared_data) -> list[dict]:
    return _jsonl_records(shared_data / "traces" / "mooncake_conversation.jsonl")


@pytest.fixture(scope="module")
def mooncake_512(shared_data):
    return load(shared_data / "traces" / "mooncake_conversation.jsonl", block_size=512)


def test_mooncake_detected_and_stats(mooncake_records, mooncake_512):
    assert mooncake_512.provenance.format == "mooncake"
    assert mooncake_512.provenance.block_ids == "hash_ids"
    r = mooncake_records
    _check_stats(
        mooncake_512,
        _expected_stats([x["timestamp"] / 1000 for x in r], [x["input_length"] for x in r], [x["output_length"] for x in r]),
    )
    assert mooncake_512.provenance.rows_read == len(r) == 12_031


def test_mooncake_block_reuse(mooncake_records, mooncake_512):
    total = sum(len(x["hash_ids"]) for x in mooncake_records)
    distinct = len({h for x in mooncake_records for h in x["hash_ids"]})
    assert (total, distinct) == (288_500, 182_790)  # figures from shared/data/README.md
    stats = trace_stats(mooncake_512)
    assert stats["accesses"] == total
    assert stats["unique_blocks"] == distinct
    assert stats["infinite_cache_hit_ratio"] == pytest.approx(1 - 182_790 / 288_500, rel=1e-12)


def test_mooncake_block_ids_relabel_hash_ids(mooncake_records, mooncake_512):
    # Requests in arrival order (stable: equal timestamps keep file order).
    ordered = sorted(mooncake_records, key=lambda x: x["timestamp"])
    assert mooncake_512.input_tokens.tolist() == [x["input_length"] for x in ordered]
    got = request_blocks(mooncake_512)
    assert [len(b) for b in got] == [len(x["hash_ids"]) for x in ordered]
    flat_hash = [h for x in ordered for h in x["hash_ids"]]
    flat_ids = [i for b in got for i in b]
    assert_bijection(flat_hash, flat_ids)  # equal hash id <=> equal dense id
    assert flat_ids == first_appearance_ids(flat_hash)  # dense, in order of first appearance


@pytest.fixture(scope="module")
def sharegpt(shared_data):
    path = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    return _jsonl_records(path), load(path, block_size=16)


def test_llmservingsim_detected_and_stats(sharegpt):
    records, trace = sharegpt
    assert trace.provenance.format == "llmservingsim"
    assert trace.provenance.block_ids == "chained"
    _check_stats(
        trace,
        _expected_stats(
            [x["arrival_time_ns"] / 1e9 for x in records], [x["input_toks"] for x in records], [x["output_toks"] for x in records]
        ),
    )


def test_llmservingsim_chained_blocks_match_token_prefixes(sharegpt):
    records, trace = sharegpt
    ordered = sorted(records, key=lambda x: x["arrival_time_ns"])
    keys, lengths = [], []
    for rec in ordered:
        toks = rec["input_tok_ids"]
        assert len(toks) == rec["input_toks"]
        running = hashlib.sha256()
        n_blocks = math.ceil(len(toks) / 16)
        for j in range(n_blocks):
            block = toks[16 * j : 16 * (j + 1)]
            running.update(struct.pack(f"<{len(block)}q", *block))  # fixed width: bytes <-> token prefix
            # digest of the whole prefix up to and including block j (its length is implied by the bytes)
            keys.append(running.copy().digest())
        lengths.append(n_blocks)
    got = request_blocks(trace)
    assert [len(b) for b in got] == lengths
    flat_ids = [i for b in got for i in b]
    assert_bijection(keys, flat_ids)  # same dense id <=> identical token prefix through that block
    stats = trace_stats(trace)
    assert stats["accesses"] == len(keys)
    assert stats["unique_blocks"] == len(set(keys))
    assert len(set(keys)) < len(keys)  # the trace does reuse some prefixes: the check is not vacuous


def test_splitwise_detected_and_stats(shared_data):
    path = shared_data / "traces" / "splitwise_test_trace.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    trace = load(path)
    assert trace.provenance.format == "splitwise"
    _check_stats(
        trace,
        _expected_stats(
            [float(r["arrival_timestamp"]) for r in rows], [int(r["prompt_size"]) for r in rows], [int(r["token_size"]) for r in rows]
        ),
    )
    assert trace.provenance.block_ids == "unique"
    assert trace.num_accesses == sum(math.ceil(int(r["prompt_size"]) / 16) for r in rows)


def test_azure_shared_copy_matches_csv_module(shared_data):
    from datetime import datetime

    path = shared_data / "traces" / "azure_conv_2023.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    times = [datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp() for r in rows]
    trace = load(path)
    assert trace.provenance.format == "azure"
    _check_stats(
        trace, _expected_stats(times, [int(r["ContextTokens"]) for r in rows], [int(r["GeneratedTokens"]) for r in rows])
    )


# ----------------------------------------------------------------------------------------------
# 3. Bad rows are counted per reason, good rows survive with their values

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE_BAD = AZURE_HEADER + (
    "2023-11-16 18:15:46.0000000,100,10\n"  # row 1: good
    "2023-11-16 18:15:47.0000000,,20\n"  # row 2: missing_value
    "2023-11-16 18:15:48.0000000,abc,20\n"  # row 3: non_numeric
    "2023-11-16 18:15:49.0000000,NaN,20\n"  # row 4: nan_value
    "2023-11-16 18:15:50.0000000,200,-5\n"  # row 5: negative_value
    "2023-11-16 18:15:51.0000000,12.5,20\n"  # row 6: non_integer
    "not-a-time,300,30\n"  # row 7: bad_timestamp
    "2023-11-16 18:15:52.5000000,200,20\n"  # row 8: good
    "2023-11-16 18:15:53.0000000,0,20\n"  # row 9: zero_input_tokens
    "2023-11-16 18:15:54.0000000,300,30,99\n"  # row 10: malformed_row (4 fields)
    "2023-11-16 18:15:56.2500000,300,30\n"  # row 11: good
)
AZURE_BAD_REASONS = {
    "missing_value": 1,
    "non_numeric": 1,
    "nan_value": 1,
    "negative_value": 1,
    "non_integer": 1,
    "bad_timestamp": 1,
    "zero_input_tokens": 1,
    "malformed_row": 1,
}


@pytest.fixture(params=[None, 1, 2, 3], ids=["one-chunk", "chunk1", "chunk2", "chunk3"])
def chunk_rows(request, monkeypatch):
    """Run a test with the default chunk size and with tiny chunks (chunk-boundary bookkeeping)."""
    if request.param is not None:
        monkeypatch.setattr(loaders, "CHUNK_ROWS", request.param)
    return request.param


def test_azure_bad_rows_counted(tmp_path, chunk_rows):
    trace = load(write(tmp_path, "bad.csv", AZURE_BAD))
    prov = trace.provenance
    assert prov.format == "azure"
    assert prov.skip_reasons == AZURE_BAD_REASONS
    assert (prov.rows_read, prov.rows_used, prov.rows_skipped) == (11, 3, 8)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 6.5, 10.25], abs=1e-6)
    assert trace.input_tokens.tolist() == [100, 200, 300]
    assert trace.output_tokens.tolist() == [10, 20, 30]
    assert trace.num_accesses == math.ceil(100 / 16) + math.ceil(200 / 16) + math.ceil(300 / 16)


def test_azure_too_many_fields_in_first_data_row(tmp_path):
    """An extra field on the first data row must not shift the columns (pandas' implicit index)."""
    text = AZURE_HEADER + "2023-11-16 18:15:46.0000000,100,10,7\n2023-11-16 18:15:47.0000000,200,20\n2023-11-16 18:15:49.0000000,300,30\n"
    trace = load(write(tmp_path, "first.csv", text))
    prov = trace.provenance
    assert prov.skip_reasons == {"malformed_row": 1}
    assert (prov.rows_read, prov.rows_used, prov.rows_skipped) == (3, 2, 1)
    assert trace.input_tokens.tolist() == [200, 300]
    assert trace.output_tokens.tolist() == [20, 30]
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 2.0])


def test_splitwise_too_many_fields_in_first_data_row(tmp_path):
    text = (
        "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
        "0,2,0,1,1,4096,32,9\n"
        "1,2,0,3,1,2048,8\n"
        "2,2,0,4,1,1000,16\n"
    )
    trace = load(write(tmp_path, "sw.csv", text))
    assert trace.provenance.skip_reasons == {"malformed_row": 1}
    assert trace.input_tokens.tolist() == [2048, 1000]
    assert trace.output_tokens.tolist() == [8, 16]
    assert trace.arrival_s.tolist() == [0.0, 1.0]


def _mooncake_line(ts, inp, out, hashes) -> str:
    return json.dumps({"timestamp": ts, "input_length": inp, "output_length": out, "hash_ids": hashes}) + "\n"


MOONCAKE_BAD = (
    _mooncake_line(0, 1000, 5, [1, 2])  # record 1: good (ceil(1000/512) = 2)
    + _mooncake_line(10, 100, 5, [])  # record 2: empty_hash_ids
    + _mooncake_line(20, 600, 5, [1])  # record 3: hash_ids_length_mismatch (needs 2)
    + '{"timestamp": 30, "input_length": 700, "output_length"\n'  # record 4: malformed_row
    + _mooncake_line(40, 1100, 7, [1, 2, 3])  # record 5: good
    + _mooncake_line(50, 512, 9, [1])  # record 6: good
)


def test_mooncake_bad_records_counted(tmp_path, chunk_rows):
    trace = load(write(tmp_path, "bad.jsonl", MOONCAKE_BAD), block_size=512)
    prov = trace.provenance
    assert prov.format == "mooncake"
    assert prov.skip_reasons == {"empty_hash_ids": 1, "hash_ids_length_mismatch": 1, "malformed_row": 1}
    assert (prov.rows_read, prov.rows_used, prov.rows_skipped) == (6, 3, 3)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.04, 0.05])
    assert trace.input_tokens.tolist() == [1000, 1100, 512]
    assert trace.output_tokens.tolist() == [5, 7, 9]
    # hash ids 1, 2, 3 -> dense ids 0, 1, 2 in order of first appearance
    assert request_blocks(trace) == [[0, 1], [0, 1, 2], [0]]
    assert (trace.num_accesses, trace.num_unique_blocks) == (6, 3)


def test_mooncake_bad_values(tmp_path):
    text = (
        _mooncake_line(0, 600, 5, [1, 2])  # good
        + _mooncake_line(1, "abc", 5, [3])  # non_numeric
        + _mooncake_line(2, 600, 5.5, [4, 5])  # non_integer
        + _mooncake_line(3, 600, -1, [6, 7])  # negative_value
        + _mooncake_line(4, 0, 5, [])  # zero_input_tokens (checked before the hash ids)
        + _mooncake_line(5, 600, 5, [8, "x"])  # bad_hash_ids
        + json.dumps({"timestamp": 6, "input_length": 600, "output_length": 5}) + "\n"  # missing hash_ids
        + _mooncake_line(7, 600, 6, [1, 9])  # good
    )
    trace = load(write(tmp_path, "vals.jsonl", text), block_size=512)
    assert trace.provenance.skip_reasons == {
        "non_numeric": 1,
        "non_integer": 1,
        "negative_value": 1,
        "zero_input_tokens": 1,
        "bad_hash_ids": 1,
        "missing_value": 1,
    }
    assert trace.output_tokens.tolist() == [5, 6]
    assert request_blocks(trace) == [[0, 1], [0, 2]]


# ----------------------------------------------------------------------------------------------
# 4. Strict validation: the first bad row is an error naming file, row and line


def test_strict_azure_names_first_bad_row(tmp_path, chunk_rows):
    path = write(tmp_path, "bad.csv", AZURE_BAD)
    with pytest.raises(TraceError) as info:
        load(path, strict_validation=True)
    msg = str(info.value)
    assert str(path) in msg
    assert "row 2 " in msg and "(line 3)" in msg
    assert "ContextTokens" in msg and "missing value" in msg


def test_strict_malformed_row_is_first_bad_row(tmp_path, chunk_rows):
    text = AZURE_HEADER + (
        "2023-11-16 18:15:46.0000000,100,10\n"
        "2023-11-16 18:15:47.0000000,100,10\n"
        "2023-11-16 18:15:48.0000000,100,10,5\n"  # row 3: malformed
        "2023-11-16 18:15:49.0000000,abc,10\n"  # row 4: non-numeric
    )
    path = write(tmp_path, "malformed.csv", text)
    with pytest.raises(TraceError) as info:
        load(path, strict_validation=True)
    msg = str(info.value)
    assert str(path) in msg
    assert "row 3 " in msg and "(line 4)" in msg and "malformed" in msg


def test_strict_mooncake_names_first_bad_record(tmp_path, chunk_rows):
    path = write(tmp_path, "bad.jsonl", MOONCAKE_BAD)
    with pytest.raises(TraceError) as info:
        load(path, block_size=512, strict_validation=True)
    msg = str(info.value)
    assert str(path) in msg
    assert "record 2 " in msg and "(line 2)" in msg and "empty hash ids" in msg


def test_strict_mooncake_malformed_first(tmp_path):
    text = _mooncake_line(0, 1000, 5, [1, 2]) + "{not json\n" + _mooncake_line(5, 100, 5, [])
    path = write(tmp_path, "m.jsonl", text)
    with pytest.raises(TraceError) as info:
        load(path, block_size=512, strict_validation=True)
    msg = str(info.value)
    assert str(path) in msg and "line 2" in msg and "malformed" in msg


def test_strict_clean_file_loads(tmp_path):
    text = AZURE_HEADER + "2023-11-16 18:15:46.0000000,100,10\n2023-11-16 18:15:47.0000000,200,20\n"
    trace = load(write(tmp_path, "ok.csv", text), strict_validation=True)
    assert trace.input_tokens.tolist() == [100, 200]


def test_cli_strict_exit_2_names_row(tmp_path, run_cli):
    path = write(tmp_path, "bad.csv", AZURE_BAD)
    status, out, err = run_cli("--trace-stats", "--workload-trace", path, "--strict-workload-validation", "--no-plot")
    assert status == 2
    assert str(path) in err and "row 2 " in err and "(line 3)" in err


def test_cli_lenient_reports_skips(tmp_path, run_cli):
    path = write(tmp_path, "bad.csv", AZURE_BAD)
    status, out, err = run_cli("--trace-stats", "--workload-trace", path, "--no-plot")
    assert status == 0, err
    assert "3 requests used" in out and "8 skipped" in out
    assert "malformed_row: 1" in out


# ----------------------------------------------------------------------------------------------
# 5. BurstGPT (no real sample: fixtures from the published schema)

BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def test_burstgpt_detected_and_values(tmp_path):
    text = (
        BURST_HEADER + "\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,ChatGPT,1087,366,1453,Conversation log\n"
        "118,GPT-4,417,0,417,Conversation log\n"
        "120,ChatGPT,1360,172,1532,API log\n"
        "121,GPT-4,abc,20,20,API log\n"  # non_numeric
    )
    path = write(tmp_path, "burst.csv", text)
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Request tokens"].isdigit()]
    trace = load(path)
    prov = trace.provenance
    assert prov.format == "burstgpt"
    assert prov.block_ids == "unique"
    assert prov.skip_reasons == {"non_numeric": 1}
    assert (prov.rows_read, prov.rows_used) == (5, 4)
    assert trace.arrival_s.tolist() == [float(r["Timestamp"]) - 5 for r in rows] == [0.0, 40.0, 113.0, 115.0]
    assert trace.input_tokens.tolist() == [int(r["Request tokens"]) for r in rows]
    assert trace.output_tokens.tolist() == [int(r["Response tokens"]) for r in rows]
    assert (trace.session_id == -1).all()
    assert trace.num_unique_blocks == trace.num_accesses == 30 + 68 + 27 + 85


def test_burstgpt_sessions_share_full_blocks(tmp_path):
    # block_size 16. Session A: 40 tokens (2 full + 8), 70 (4 full + 6), 32 (2 full);
    # session B: 50 tokens (3 full + 2); one row without a session: 20 tokens (1 full + 4).
    text = (
        BURST_HEADER + ",Session ID\n"
        "0,ChatGPT,40,10,50,Conversation log,A\n"
        "1,ChatGPT,50,10,60,Conversation log,B\n"
        "2,ChatGPT,70,10,80,Conversation log,A\n"
        "3,ChatGPT,20,10,30,API log,\n"
        "4,ChatGPT,32,10,42,Conversation log,A\n"
    )
    trace = load(write(tmp_path, "sessions.csv", text))
    prov = trace.provenance
    assert prov.format == "burstgpt"
    assert prov.block_ids == "synthetic-sessions"
    a1, b1, a2, none, a3 = request_blocks(trace)
    assert [len(x) for x in (a1, b1, a2, none, a3)] == [3, 4, 5, 2, 2]
    # Hand-computed sharing: a full block at depth i of session A has one id in every turn.
    assert a2[:2] == a1[:2]  # turn 2 shares turn 1's two full blocks ...
    assert a2[2] != a1[2]  # ... but not turn 1's partial third block
    assert a3 == a2[:2] == a1[:2]  # turn 3 (exactly 2 full blocks) shares both
    ids = [i for x in (a1, b1, a2, none, a3) for i in x]
    assert len(ids) == trace.num_accesses == 16
    # distinct: A full blocks 4 (depths 0-3) + B full 3 + none's full 1 + partials (a1, b1, a2, none) 4 = 12
    assert len(set(ids)) == trace.num_unique_blocks == 12
    assert not set(b1) & (set(a1) | set(a2) | set(a3))  # different sessions never share
    assert not set(none) & (set(ids) - set(none))  # no session: nothing shared
    shared = lambda x, y: len(set(x) & set(y))  # noqa: E731
    assert (shared(a1, a2), shared(a2, a3), shared(a1, a3)) == (2, 2, 2)
    assert sorted(set(trace.session_id.tolist())) == [-1, 0, 1]
    assert trace.session_id[3] == -1 and trace.session_id[0] == trace.session_id[2] == trace.session_id[4]


# ----------------------------------------------------------------------------------------------
# 6. limit, time_unit, block mismatch

LIMIT_CSV = AZURE_HEADER + (
    "2023-11-16 18:15:46.0000000,100,10\n"  # row 1: good (1st)
    "2023-11-16 18:15:47.0000000,abc,10\n"  # row 2: bad
    "2023-11-16 18:15:48.0000000,200,20\n"  # row 3: good (2nd)
    "2023-11-16 18:15:49.0000000,-1,20\n"  # row 4: bad
    "2023-11-16 18:15:50.0000000,300,30\n"  # row 5: good (3rd)
    "2023-11-16 18:15:51.0000000,300,30,1\n"  # row 6: malformed
    "2023-11-16 18:15:52.0000000,400,40\n"  # row 7: good (4th)
)


@pytest.mark.parametrize(
    "limit, rows_read, reasons, inputs",
    [
        (1, 1, {}, [100]),
        (2, 3, {"non_numeric": 1}, [100, 200]),
        (3, 5, {"non_numeric": 1, "negative_value": 1}, [100, 200, 300]),
        (4, 7, {"non_numeric": 1, "negative_value": 1, "malformed_row": 1}, [100, 200, 300, 400]),
        (99, 7, {"non_numeric": 1, "negative_value": 1, "malformed_row": 1}, [100, 200, 300, 400]),
    ],
)
def test_limit_keeps_first_valid_rows(tmp_path, chunk_rows, limit, rows_read, reasons, inputs):
    trace = load(write(tmp_path, "limit.csv", LIMIT_CSV), limit=limit)
    prov = trace.provenance
    assert prov.rows_used == len(inputs)
    assert prov.rows_read == rows_read
    assert prov.skip_reasons == reasons
    assert prov.rows_skipped == sum(reasons.values())
    assert trace.input_tokens.tolist() == inputs


def test_limit_strict_ignores_bad_rows_after_limit(tmp_path, chunk_rows):
    path = write(tmp_path, "limit.csv", LIMIT_CSV)
    assert load(path, limit=1, strict_validation=True).input_tokens.tolist() == [100]
    with pytest.raises(TraceError, match="row 2 "):
        load(path, limit=2, strict_validation=True)


def test_limit_mooncake(tmp_path, chunk_rows):
    trace = load(write(tmp_path, "bad.jsonl", MOONCAKE_BAD), block_size=512, limit=2)
    prov = trace.provenance
    assert (prov.rows_read, prov.rows_used) == (5, 2)
    assert prov.skip_reasons == {"empty_hash_ids": 1, "hash_ids_length_mismatch": 1, "malformed_row": 1}
    assert trace.input_tokens.tolist() == [1000, 1100]


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(ConfigError):
        load(BUNDLED_AZURE, limit=0)


def test_limit_on_bundled_azure():
    with BUNDLED_AZURE.open(newline="") as fh:
        rows = [r for _, r in zip(range(100), csv.DictReader(fh))]
    trace = load(BUNDLED_AZURE, limit=100)
    assert trace.provenance.rows_read == trace.provenance.rows_used == 100
    assert trace.input_tokens.tolist() == [int(r["ContextTokens"]) for r in rows]


def test_time_unit_override_splitwise(shared_data):
    path = shared_data / "traces" / "splitwise_test_trace.csv"
    assert trace_stats(load(path))["duration_s"] == 3.0
    assert trace_stats(load(path, time_unit="ms"))["duration_s"] == pytest.approx(0.003, rel=1e-12)
    assert trace_stats(load(path, time_unit="us"))["duration_s"] == pytest.approx(3e-6, rel=1e-12)


def test_time_unit_override_fixture(tmp_path):
    text = "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n0,2,0,1000,1,10,1\n1,2,0,3500,1,10,1\n"
    path = write(tmp_path, "sw.csv", text)
    assert load(path).arrival_s.tolist() == [0.0, 2500.0]
    assert load(path, time_unit="ms").arrival_s.tolist() == pytest.approx([0.0, 2.5])


def test_time_unit_rejected_for_datetime_trace():
    with pytest.raises(ConfigError):
        load(BUNDLED_AZURE, time_unit="s")


MOONCAKE_SPLIT = (
    _mooncake_line(0, 1000, 5, [1, 2])  # blocks cover 512 + 488 tokens -> 32 + 31 sub-blocks
    + _mooncake_line(1000, 1100, 5, [1, 2, 3])  # 512 + 512 + 76 -> 32 + 32 + 5
    + _mooncake_line(2000, 512, 5, [1])  # 512 -> 32
)


def test_mooncake_block_mismatch(tmp_path):
    path = write(tmp_path, "m.jsonl", MOONCAKE_SPLIT)
    with pytest.raises(ConfigError):
        load(path, block_size=16, block_mismatch="error")
    with pytest.raises(ConfigError):
        load(path, block_size=48, block_mismatch="split")  # 48 does not divide 512
    trace = load(path, block_size=16, block_mismatch="split")
    assert trace.provenance.block_conversion
    assert trace.provenance.block_tokens == 16
    assert [len(b) for b in request_blocks(trace)] == [63, 69, 32]
    assert trace.num_accesses == 164
    # (hash id, sub-block) pairs: hash 1 -> 32, hash 2 -> 32 (31 shared with the shorter cover), hash 3 -> 5
    assert trace.num_unique_blocks == 69
    a, b, c = request_blocks(trace)
    assert b[:63] == a  # request 2 starts with request 1's hash ids 1, 2
    assert c == a[:32]


def test_mooncake_split_real_trace(shared_data, mooncake_records):
    path = shared_data / "traces" / "mooncake_conversation.jsonl"
    with pytest.raises(ConfigError):
        load(path, block_size=16, block_mismatch="error")
    trace = load(path, block_size=16, block_mismatch="split")
    assert trace.provenance.block_conversion is not None
    accesses = 0
    most_subs: dict[int, int] = {}  # distinct (hash id, sub-block k) pairs: k < the most sub-blocks seen
    for rec in mooncake_records:
        length = rec["input_length"]
        for j, h in enumerate(rec["hash_ids"]):
            covered = min(512, length - 512 * j)  # tokens of the prompt this trace block covers
            subs = -(-covered // 16)
            accesses += subs
            most_subs[h] = max(most_subs.get(h, 0), subs)
    stats = trace_stats(trace)
    assert stats["accesses"] == accesses
    assert stats["unique_blocks"] == sum(most_subs.values())


# ----------------------------------------------------------------------------------------------
# 7. Unreadable input: unknown header, missing file


def test_unknown_csv_header(tmp_path):
    path = write(tmp_path, "unknown.csv", "foo,bar,baz\n1,2,3\n")
    with pytest.raises(TraceError, match="unrecognised trace header") as info:
        load(path)
    assert str(path) in str(info.value)


def test_unknown_jsonl_keys(tmp_path):
    path = write(tmp_path, "unknown.jsonl", '{"a": 1, "b": 2}\n')
    with pytest.raises(TraceError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_explicit_format_wrong_columns(tmp_path):
    path = write(tmp_path, "azure.csv", AZURE_HEADER + "2023-11-16 18:15:46.0000000,100,10\n")
    with pytest.raises(TraceError, match="missing column") as info:
        load(path, format="splitwise")
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(TraceError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_cli_unknown_header_and_missing_file(tmp_path, run_cli):
    unknown = write(tmp_path, "unknown.csv", "foo,bar\n1,2\n")
    status, _, err = run_cli("--trace-stats", "--workload-trace", unknown, "--no-plot")
    assert status == 2 and str(unknown) in err
    missing = tmp_path / "missing.jsonl"
    status, _, err = run_cli("--trace-stats", "--workload-trace", missing, "--no-plot")
    assert status == 2 and str(missing) in err
