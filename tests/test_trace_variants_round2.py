"""Published trace variants, round 2 (tests/samples/README.md names each sample's source): each loaded against
values computed by hand from its rows or taken from its publisher's README, not from kvsim's output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import trace.blocks as bm
from sim.errors import TraceError
from tests.loader_helpers import load, write
from trace.stats import trace_stats

SAMPLES = Path(__file__).resolve().parent / "samples"


def test_azure_2023_code_naive_7_digit_times_crlf_no_final_newline():
    """AzureLLMInferenceTrace_code.csv (2023): naive times with 7 fraction digits, CRLF, and no line end after its
    last row (8,819 rows in the published file; the sample keeps its first 24 and last 6)."""
    trace = load(SAMPLES / "azure_llm_2023_code.csv")
    prov = trace.provenance
    assert (prov.format, prov.rows_read, prov.rows_used, prov.skip_reasons, prov.block_ids) == (
        "azure", 30, 30, {}, "unique")
    # 18:17:04.0319600 - 18:17:03.9799600 = 0.052 s; 18:17:05.2792970 - 03.9799600 = 1.299337 s (100 ns apart
    # from the row before it: 05.2792720)
    assert trace.arrival_s[:2].tolist() == pytest.approx([0.0, 0.052], abs=1e-9)
    assert trace.arrival_s[9] - trace.arrival_s[8] == pytest.approx(25e-6, abs=1e-9)
    # the last row, 19:14:19.9280160, without a line end: 57 min 15.948056 s after the first
    assert trace.arrival_s[-1] == pytest.approx(57 * 60 + 15.948056, abs=1e-9)
    assert (trace.input_tokens[[0, -1]].tolist(), trace.output_tokens[[0, -1]].tolist()) == ([4808, 549], [10, 173])
    assert trace_stats(trace)["duration_s"] == pytest.approx(3435.948056, abs=1e-9)


def test_azure_lmm_2025_multimodal_iso_z_times_and_an_extra_column():
    """AzureLMMInferenceTrace_multimodal.csv (2025): ``2024-10-15T12:00:00.269Z`` times (a T, milliseconds, Z) and
    NumImages between TIMESTAMP and ContextTokens: read by name, ignored. A week: 7 days less 0.305 s."""
    trace = load(SAMPLES / "azure_lmm_2025_multimodal.csv")
    prov = trace.provenance
    assert (prov.format, prov.rows_used, prov.skip_reasons) == ("azure", 10, {})
    week = 7 * 86400
    assert trace.arrival_s.tolist() == pytest.approx(
        [0.0, 5.55, 6.244, 7.063, 7.297, week - 0.73, week - 0.556, week - 0.438, week - 0.307, week - 0.305], abs=1e-9)
    assert trace.input_tokens.tolist() == [770, 949, 964, 78, 1724, 4564, 1133, 664, 1172, 841]  # not NumImages
    assert trace.output_tokens.tolist() == [491, 126, 79, 5, 28, 137, 64, 326, 76, 63]


BURSTGPT_1_FAILED_AT = (1106, 4525, 4608, 4725)  # the sample's rows with Response tokens 0 (all 0, 0, 0)


def test_burstgpt_1_failures_are_skipped_as_failures_even_when_strict():
    """BurstGPT_1.csv marks a failed request by Response tokens 0 (HPMLL/BurstGPT README: its without_fails file is
    the others). Its first 42 rows hold 4, each 0, 0, 0: they were counted as zero_input_tokens, and
    --strict-workload-validation stopped at row 21 of a published file. They are failed_request now, not an error."""
    rows = [line.split(",") for line in (SAMPLES / "burstgpt_1.csv").read_text().splitlines()[1:]]
    served = [r for r in rows if int(r[0]) not in BURSTGPT_1_FAILED_AT]
    for strict in (False, True):
        trace = load(SAMPLES / "burstgpt_1.csv", strict_validation=strict)
        prov = trace.provenance
        assert (prov.rows_read, prov.rows_used, prov.skip_reasons) == (42, 38, {"failed_request": 4})
        assert trace.arrival_s.tolist() == [int(r[0]) - 5 for r in served]  # seconds, from the first (5)
        assert trace.input_tokens.tolist() == [int(r[2]) for r in served]
        assert trace.output_tokens.tolist() == [int(r[3]) for r in served]
    assert trace.arrival_s[-1] == 4574 - 5


def test_burstgpt_with_and_without_fails_files_are_one_workload(tmp_path):
    """BurstGPT_N.csv less its failures is BurstGPT_without_fails_N.csv: both load as one workload. BurstGPT_3.csv's
    failures include prompts of more tokens than 0 (an API-log row of 120 and 0); such a row was replayed as a
    request (5 of 5 rows used)."""
    pairs = [(SAMPLES / "burstgpt_1.csv", SAMPLES / "burstgpt_without_fails_1.csv")]
    lines = (SAMPLES / "burstgpt_3.csv").read_text().splitlines(keepends=True)
    pairs.append((SAMPLES / "burstgpt_3.csv", write(tmp_path, "BurstGPT_without_fails_3.csv", "".join(lines[:5]))))
    for with_fails, without in pairs:
        a, b = load(with_fails), load(without)
        assert b.provenance.skip_reasons == {}
        assert a.provenance.rows_used == b.provenance.rows_used == b.provenance.rows_read
        for name in ("arrival_s", "input_tokens", "output_tokens", "session_id"):
            assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert load(SAMPLES / "burstgpt_3.csv").provenance.skip_reasons == {"failed_request": 1}


def test_a_bad_row_is_still_an_error_when_strict_beside_failures(tmp_path):
    """Failures are recorded rows, not bad input; a malformed row among them is still strict validation's error."""
    head, *rows = (SAMPLES / "burstgpt_1.csv").read_text().splitlines(keepends=True)
    path = write(tmp_path, "b.csv", head + "".join(rows[:22]) + "1130,ChatGPT,abc,1,1,Conversation log\n")
    with pytest.raises(TraceError, match=r"row 23 .*column 'Request tokens': non numeric"):
        load(path, strict_validation=True)
    assert load(path).provenance.skip_reasons == {"failed_request": 1, "non_numeric": 1}


def test_burstgpt_failure_check_precedes_a_zero_prompt_and_follows_the_total(tmp_path):
    """A row of 0 prompt tokens with a response is no failure (zero_input_tokens); a row whose total is not the sum
    is a corrupt row first (total_tokens_mismatch), whatever its response."""
    text = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "0,ChatGPT,0,5,5,API log\n" "1,ChatGPT,10,0,99,API log\n" "2,ChatGPT,10,0,10,API log\n"
            "3,ChatGPT,10,2,12,API log\n")
    prov = load(write(tmp_path, "b.csv", text)).provenance
    assert prov.skip_reasons == {"zero_input_tokens": 1, "total_tokens_mismatch": 1, "failed_request": 1}


def test_mooncake_synthetic_trace_first_records():
    """FAST'25 synthetic_trace.jsonl's first 60 records (ms, 512-token blocks; its Poisson arrivals keep each
    conversation's turns in order): accesses and distinct blocks counted here with a set."""
    records = [json.loads(line) for line in (SAMPLES / "mooncake_synthetic.jsonl").read_text().splitlines()]
    assert all(len(r["hash_ids"]) == math.ceil(r["input_length"] / 512) for r in records)
    trace = load(SAMPLES / "mooncake_synthetic.jsonl", block_size=512)
    prov = trace.provenance
    assert (prov.format, prov.rows_used, prov.skip_reasons, prov.block_tokens) == ("mooncake", 60, {}, 512)
    assert trace.arrival_s.tolist() == pytest.approx([r["timestamp"] / 1000 for r in records])
    assert trace.num_accesses == sum(len(r["hash_ids"]) for r in records) == 1533
    assert trace.num_unique_blocks == len({h for r in records for h in r["hash_ids"]}) == 1471


def test_mooncake_conversation_trace_matches_its_readme(shared_data):
    """kvcache-ai/Mooncake FAST25-release/README.md, Workloads: conversation_trace.jsonl holds 12,031 requests,
    12,035 input and 343 output tokens on average, sampled from one hour."""
    trace = load(shared_data / "traces" / "mooncake_conversation.jsonl", block_size=512)
    assert (len(trace), trace.provenance.skip_reasons) == (12031, {})
    assert (round(float(trace.input_tokens.mean())), round(float(trace.output_tokens.mean()))) == (12035, 343)
    assert 3500 < trace.arrival_s[-1] <= 3600


def _burstgpt_sessions(tmp_path: Path, rows: int, seed: int) -> Path:
    """A BurstGPT v2.0-shaped file: every other row a conversation turn of one of 500 sessions, the rest API rows."""
    rng = np.random.default_rng(seed)
    lines = ["Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    for i in range(rows):
        prompt, answer = int(rng.integers(1000, 2200)), int(rng.integers(1, 300))
        session = f"s{int(rng.integers(0, 500))}" if i % 2 else ""
        kind = "Conversation log" if session else "API log"
        lines.append(f"{i}.0,{session},3,ChatGPT,{prompt},{answer},{prompt + answer},{kind}")
    return write(tmp_path, "b.csv", "\n".join(lines) + "\n")


def test_session_trace_block_ids_are_the_chained_session_keys(tmp_path):
    """A trace with session ids (BurstGPT v2.0) takes its block ids from the compiled session pass (its memory and
    time: benchmarks/bench_trace_load.py --only sessions); they must be the ids the definition gives: full block i of
    a session's context is one block in every turn (the session's key chained and interned, as before the pass)."""
    path = _burstgpt_sessions(tmp_path, 2_000, seed=1)
    trace = load(path)
    assert trace.num_accesses > 190_000
    offsets = trace.block_offsets
    ids, distinct = bm.intern(bm.chain(offsets, bm.session_keys(offsets, trace.input_tokens, trace.session_id, 16)))
    assert np.array_equal(trace.access_stream(), ids) and trace.num_unique_blocks == distinct
