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
import time
from pathlib import Path

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import ConfigError, TraceError
from trace.stats import trace_stats

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"
from tests.loader_helpers import (
    AZURE_HEADER,
    BURST_HEADER,
    MOONCAKE_BAD,
    _mooncake_line,
    assert_bijection,
    first_appearance_ids,
    load,
    request_blocks,
    write,
)

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
# 5. BurstGPT (no real sample: fixtures from the published schema)


def test_burstgpt_detected_and_values(tmp_path):
    text = (
        BURST_HEADER + "\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,ChatGPT,1087,366,1453,Conversation log\n"
        "118,GPT-4,417,0,417,Conversation log\n"  # failed_request (Response tokens 0: BurstGPT's failure)
        "120,ChatGPT,1360,172,1532,API log\n"
        "121,GPT-4,abc,20,20,API log\n"  # non_numeric
    )
    path = write(tmp_path, "burst.csv", text)
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Request tokens"].isdigit() and r["Response tokens"] != "0"]
    trace = load(path)
    prov = trace.provenance
    assert prov.format == "burstgpt"
    assert prov.block_ids == "unique"
    assert prov.skip_reasons == {"non_numeric": 1, "failed_request": 1}
    assert (prov.rows_read, prov.rows_used) == (5, 3)
    assert trace.arrival_s.tolist() == [float(r["Timestamp"]) - 5 for r in rows] == [0.0, 40.0, 115.0]
    assert trace.input_tokens.tolist() == [int(r["Request tokens"]) for r in rows]
    assert trace.output_tokens.tolist() == [int(r["Response tokens"]) for r in rows]
    assert (trace.session_id == -1).all()
    assert trace.num_unique_blocks == trace.num_accesses == 30 + 68 + 85


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
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match=r"workload\.limit.*>= 1"):
            load_config(None, sets=[f"workload.limit={bad}"])


def test_limit_on_bundled_azure():
    with BUNDLED_AZURE.open(newline="") as fh:
        rows = [r for _, r in zip(range(100), csv.DictReader(fh), strict=False)]
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


def test_millisecond_timestamps_become_the_seconds_written_in_seconds(tmp_path):
    """A trace in ms gives the arrival a trace in s writing the same times gives: 9 ms is 0.009 s exactly, as the
    float nearest 9 / 1000 (9 x 0.001 is 0.009000000000000001, so two spellings of one trace would differ)."""
    rows = "".join(f"{i},2,0,{ms},1,10,1\n" for i, ms in enumerate((1000, 1009, 1013)))
    path = write(tmp_path, "sw.csv", "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,"
                 "token_size\n" + rows)
    assert load(path, time_unit="ms").arrival_s.tolist() == [0.0, 0.009, 0.013]


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
# 7. Row order and file identity (unreadable input: tests/test_trace_headers.py)


def test_rows_out_of_time_order_are_sorted_and_counted(tmp_path):
    """A file whose rows go back in time is read in arrival order (stable), and the rows that were out of order are
    counted in the report's trace section, not sorted unsaid."""
    rows = ["2023-11-16 18:15:46.6805900,100,10", "2023-11-16 18:15:50.0000000,200,20",
            "2023-11-16 18:15:47.0000000,300,30", "2023-11-16 18:15:48.0000000,400,40",
            "2023-11-16 18:15:51.0000000,500,50"]
    trace = load(write(tmp_path, "azure.csv", AZURE_HEADER + "\n".join(rows) + "\n"))
    assert trace.input_tokens.tolist() == [100, 300, 400, 200, 500]
    assert trace.provenance.rows_reordered == 2 and trace.provenance.to_dict()["rows_reordered"] == 2
    in_order = load(write(tmp_path, "sorted.csv", AZURE_HEADER + "\n".join(sorted(rows)) + "\n"))
    assert in_order.provenance.rows_reordered == 0 and "rows_reordered" not in in_order.provenance.to_dict()


def test_a_files_hash_follows_its_contents_when_it_is_read_once_per_process(tmp_path):
    """file_sha256 reads a file once per process (a sweep's fingerprint, then each point's provenance), yet a file
    rewritten since, even to the same size within the filesystem's time granularity, gets its new contents' hash."""
    from trace import request

    path = tmp_path / "t.csv"
    for last in "567":  # same size, new contents, microseconds apart
        path.write_bytes(f"TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,{last}\n".encode())
        assert request.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    old = BUNDLED_AZURE  # (unchanged for longer than RACY_S: read once)
    if max(old.stat().st_mtime, old.stat().st_ctime) < time.time() - 2 * request.RACY_S:
        expected = hashlib.sha256(old.read_bytes()).hexdigest()
        assert request.file_sha256(old) == request.file_sha256(old) == expected
        assert expected in request._HASHED.values()
