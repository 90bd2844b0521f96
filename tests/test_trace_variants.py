"""Published variants of the trace formats (tests/samples/README.md names each sample's source), and the block size
a ``hash_ids`` trace's records tell: each against a hand-computed expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.errors import TraceError
from tests.loader_helpers import _mooncake_line, load, request_blocks, write
from trace.stats import trace_stats

SAMPLES = Path(__file__).resolve().parent / "samples"


def test_bailian_variant_seconds_16_token_blocks_sessions():
    """Bailian's records carry Mooncake's keys: read as Mooncake (ms, 512-token blocks) all but one were
    skipped as hash_ids_length_mismatch and the times were 1,000x too short. Its publisher documents
    seconds and 16-token blocks; sessions follow parent_chat_id to the first turn."""
    trace = load(SAMPLES / "bailian_qwen_blksz_16.jsonl", block_size=16)
    prov = trace.provenance
    assert (prov.format, prov.variant, prov.time_unit) == ("mooncake", "bailian", "s")
    assert (prov.rows_read, prov.rows_used, prov.skip_reasons) == (5, 5, {})
    assert (prov.block_ids, prov.block_tokens) == ("hash_ids", 16)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 1.25, 61.114, 90.5, 120.0])
    # chats 0 <- 2 <- 3 are one session; chats 1 and 4 are their own
    assert trace.session_id.tolist() == [0, 1, 0, 0, 2]
    # hash ids 0..31 are the first chat's 32 blocks; 32..37 are new: 38 distinct of 32 + 3 + 33 + 35 + 1
    assert (trace.num_accesses, trace.num_unique_blocks) == (104, 38)
    assert trace_stats(trace)["duration_s"] == pytest.approx(120.0)


def test_bailian_limit_and_orphan_parent(tmp_path):
    """A parent outside the trace (the limit cut it, or it came before the trace's start) roots a session of its
    own: the records that share it share it."""
    lines = (SAMPLES / "bailian_qwen_blksz_16.jsonl").read_text().splitlines(keepends=True)
    path = write(tmp_path, "b.jsonl", "".join(lines[2:4]) + lines[1])  # chats 2 (parent 0, absent), 3 (parent 2), 1
    trace = load(path)
    # in arrival order: chat 1 (1.25 s), chat 2, chat 3; sessions numbered in that order (chat 1's first), not in
    # the file's (chat 2's first): tests/test_metamorphic_traces.py, a file out of time order
    assert trace.session_id.tolist() == [0, 1, 1]
    assert load(path, limit=1).session_id.tolist() == [0]


def test_bailian_child_before_its_parent_is_skipped(tmp_path):
    """A record names the chat it continues (parent_chat_id, Bailian's README), so it follows its parent; one that
    arrives first was taken as its parent's turn. It is skipped as malformed (child_before_parent), its hash_ids
    with it, and its own child roots a session, as a child of any skipped record does."""
    from tests.bad_input_helpers import bailian

    # chat 2 (1 s) names chat 1 (2 s); chat 3 (3 s) names chat 2; chat 1 names chat 0
    path = write(tmp_path, "b.jsonl", bailian(0, -1, 0.0) + bailian(2, 1, 1.0) + bailian(1, 0, 2.0)
                 + bailian(3, 2, 3.0))
    trace = load(path)
    prov = trace.provenance
    assert (prov.rows_read, prov.rows_used, prov.rows_skipped, prov.skip_reasons) == (4, 3, 1, {"child_before_parent": 1})
    assert trace.arrival_s.tolist() == [0.0, 2.0, 3.0]
    assert trace.session_id.tolist() == [0, 0, 1]  # chats 0 <- 1, then chat 3 alone
    assert trace.num_unique_blocks == 9  # three records of three ids each, chat 2's not among them
    with pytest.raises(TraceError, match=r"chat_id 2 \(timestamp 1 s\) comes before its parent, chat_id 1"):
        load(path, strict_validation=True)


def test_bailian_repeated_chat_ids_are_told(tmp_path, caplog):
    """Two Bailian files each count chats from 0: concatenated, chats 0 and 1 of each merged into one session, and
    the second file's turn (parent 0) joined the first file's chat, with nothing said. The sessions stay as they
    were (a repeated first turn shares the earlier chat's session); a note counts the repeats and names one."""
    lines = (SAMPLES / "bailian_qwen_blksz_16.jsonl").read_text().splitlines(keepends=True)
    path = write(tmp_path, "b.jsonl", "".join(lines[:3]) + "".join(lines[:2]))  # chats 0, 1, 2 (parent 0), 0, 1
    with caplog.at_level("WARNING", logger="kvsim.trace"):
        trace = load(path)
    assert trace.provenance.rows_used == 5
    assert trace.session_id.tolist() == [0, 0, 1, 1, 0]  # arrival order: chats 0, 0, 1, 1 (0 s, 1.25 s), then 2 (parent 0)
    notes = [r.getMessage() for r in caplog.records if "records repeat" in r.getMessage()]
    assert len(notes) == 1 and "2 records repeat" in notes[0] and "chat_id (e.g. 0)" in notes[0], notes
    caplog.clear()
    with caplog.at_level("WARNING", logger="kvsim.trace"):
        load(SAMPLES / "bailian_qwen_blksz_16.jsonl")
    assert not [r for r in caplog.records if "records repeat" in r.getMessage()]


def test_block_size_inferred_from_hash_ids(tmp_path):
    """Mooncake's keys over 16-token blocks, no Bailian keys: the size is the one whose ceil(input_length / size)
    matches len(hash_ids) in the most records; a record that fits no size is still counted as a mismatch.
    The time unit stays Mooncake's (ms)."""
    text = (_mooncake_line(0, 40, 5, [1, 2, 3])  # 16: 3 blocks (32: 2)
            + _mooncake_line(500, 100, 5, [1, 2, 3, 4, 5, 6, 7])  # 16: 7 (8: 13, 32: 4)
            + _mooncake_line(1000, 100, 5, [1, 2]))  # fits 64 or 128 only: skipped
    trace = load(write(tmp_path, "m16.jsonl", text))
    prov = trace.provenance
    assert (prov.block_tokens, prov.variant, prov.time_unit) == (16, None, "ms")
    assert prov.skip_reasons == {"hash_ids_length_mismatch": 1}
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.5])
    assert request_blocks(trace) == [[0, 1, 2], [0, 1, 2, 3, 4, 5, 6]]


def test_block_size_512_kept_when_it_fits_as_many(tmp_path):
    """512 (Mooncake's documented size) is kept whenever it fits as many records as any other size."""
    trace = load(write(tmp_path, "m.jsonl", _mooncake_line(0, 600, 5, [1, 2]) + _mooncake_line(10, 100, 5, [1])),
                 block_size=512)
    assert trace.provenance.block_tokens == 512


def test_block_size_told_by_a_later_chunk_when_the_first_is_all_one_block(tmp_path, monkeypatch):
    """A first chunk whose records are each one block long fits every size from their lengths up, so it cannot
    tell 16 from 512: the size was 512 (the tie's default) and every longer record after it was skipped as
    hash_ids_length_mismatch, the same file read whole giving 16 and no skip. The chunks up to the first holding a
    longer record decide: here 16 (ceil(100 / 16) = 7 hash ids, ceil(100 / 512) = 1), at any chunk size."""
    from trace import readers

    text = ("".join(_mooncake_line(i, 10, 5, [i]) for i in range(4))  # 10 tokens, 1 id: every size >= 16 fits
            + "".join(_mooncake_line(10 + i, 100, 5, list(range(100 + 7 * i, 107 + 7 * i))) for i in range(4)))
    path = write(tmp_path, "m16.jsonl", text)
    for rows in (None, 4, 1):
        if rows is not None:
            monkeypatch.setattr(readers, "CHUNK_ROWS", rows)
        prov = load(path, block_size=16).provenance
        assert (prov.block_tokens, prov.rows_used, prov.skip_reasons) == (16, 8, {}), rows
    # Mooncake's own 512 over the same chunking: one-block records first, then 600 tokens in 2 ids
    mooncake = "".join(_mooncake_line(i, 300, 5, [i]) for i in range(4)) + _mooncake_line(9, 600, 5, [7, 8])
    prov = load(write(tmp_path, "m512.jsonl", mooncake), block_size=512).provenance
    assert (prov.block_tokens, prov.rows_used, prov.skip_reasons) == (512, 5, {})
    # every record one block long, to the end: the tie's default, as before
    prov = load(write(tmp_path, "one.jsonl", mooncake.rsplit("\n", 2)[0] + "\n"), block_size=512).provenance
    assert (prov.block_tokens, prov.rows_used) == (512, 4)


def test_azure_2024_week_trace_utc_offsets():
    """The 2024 week-long traces write times with a +00:00 offset, some without a fraction (CRLF ends)."""
    trace = load(SAMPLES / "azure_llm_2024_1week.csv")
    assert (trace.provenance.format, trace.provenance.rows_used) == ("azure", 5)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.007405, 0.012384, 0.99007, 1.07396], abs=1e-6)  # epoch seconds in float64: ~0.2 us apart
    assert trace.input_tokens.tolist() == [2162, 2399, 76, 2376, 7670]


def test_burstgpt_v2_release_sessions():
    """BurstGPT v2.0's 8 columns (Session ID, Elapsed time between Timestamp and Model), read by name. The 5th row,
    an API-log row with no session, is a failure (Response tokens 0, which BurstGPT_without_fails_3.csv drops): it was
    replayed as a request of 120 prompt tokens; it is skipped as failed_request (tests/test_trace_variants_round2.py)."""
    trace = load(SAMPLES / "burstgpt_3.csv")
    prov = trace.provenance
    assert (prov.format, prov.rows_used, prov.skip_reasons, prov.block_ids) == (
        "burstgpt", 4, {"failed_request": 1}, "synthetic-sessions")
    assert trace.arrival_s.tolist() == [0.0, 51.0, 82.0, 144.0]
    assert trace.input_tokens.tolist() == [906, 36, 1779, 935]
    assert trace.output_tokens.tolist() == [446, 29, 123, 178]
    assert trace.session_id.tolist() == [0, 1, 2, 3]


def test_mooncake_arxiv_records():
    trace = load(SAMPLES / "mooncake_arxiv.jsonl")
    assert (trace.provenance.block_tokens, trace.provenance.rows_used) == (512, 2)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 3.053])
    assert (trace.num_accesses, trace.num_unique_blocks) == (27, 15)


def test_bailian_keys_beyond_the_first_record(tmp_path):
    """The variant is told by keys any record carries (as its keys are read): a first record without them is a
    missing_value row, not a reason to read the rest in milliseconds; a file with parents but no chat ids at all
    skips every record by name, with no internal error."""
    lines = (SAMPLES / "bailian_qwen_blksz_16.jsonl").read_text().splitlines(keepends=True)
    bare = json.dumps({"timestamp": 0.5, "input_length": 16, "output_length": 3, "hash_ids": [99]}) + "\n"
    trace = load(write(tmp_path, "b.jsonl", bare + "".join(lines)))
    prov = trace.provenance
    assert (prov.variant, prov.time_unit, prov.skip_reasons) == ("bailian", "s", {"missing_value": 1})
    assert trace.arrival_s[-1] == pytest.approx(120.0)
    no_chat = "".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "chat_id"}) + "\n" for line in lines)
    with pytest.raises(TraceError, match="no valid requests.*missing_value: 5"):
        load(write(tmp_path, "p.jsonl", no_chat))


def test_llmservingsim_agentic_sessions_refused_flat_records_read(tmp_path):
    """LLMServingSim's JSONL may mix flat records with agentic sessions ("sub_requests": calls released as earlier
    ones complete). Read as flat records, each session was one row skipped as missing_value and its calls were
    lost. A session is refused by its line; a flat record whose text merely mentions the key is read."""
    flat = [json.dumps({"input_toks": 100 + i, "output_toks": 5, "arrival_time_ns": 10**9 * i}) for i in range(3)]
    session = json.dumps({"session_id": "s0", "arrival_time_ns": 5, "sub_requests": [
        {"input_toks": 50, "output_toks": 2, "tool_duration_ns": 10}, {"input_toks": 60, "output_toks": 2}]})
    mixed = write(tmp_path, "mixed.jsonl", "\n".join([flat[0], "", flat[1], session, flat[2]]) + "\n")
    for fmt in ("auto", "llmservingsim"):
        with pytest.raises(TraceError, match=r"mixed\.jsonl: line 4 is an LLMServingSim agentic session"):
            load(mixed, format=fmt)
    mention = json.dumps({"input_toks": 7, "output_toks": 1, "arrival_time_ns": 2 * 10**9 + 1, "note": '"sub_requests"'})
    trace = load(write(tmp_path, "flat.jsonl", "\n".join([*flat, mention]) + "\n"))
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (4, {})
    assert trace.input_tokens.tolist() == [100, 101, 102, 7]
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 1.0, 2.0, 2.000000001])


@pytest.mark.parametrize("reader", ["fast", "reference"])
def test_signed_64_bit_hash_ids(tmp_path, reader):
    """A Mooncake-format trace built from signed 64-bit block hashes (Python's hash(), vLLM's block hashes: half
    of them negative) had every record holding a negative id skipped as bad_hash_ids. A hash id is a label: ids
    from -2^63 to 2^63 - 1 are read, equal ids one block (dense ids in order of first appearance). A token id is
    not a label: a negative one is still refused, as a negative value (it was counted as non_numeric), by both readers.
    The reference reader is forced by an escape on a line."""
    low = -2**63
    tail = ', "note": "\\u0041"' if reader == "reference" else ""
    text = (_mooncake_line(0, 1000, 5, [-7, low]) + _mooncake_line(10, 1500, 5, [-7, low, 2**63 - 1])
            + _mooncake_line(20, 600, 5, [-7, 3]).replace("}\n", tail + "}\n"))
    trace = load(write(tmp_path, "m.jsonl", text), block_size=512)
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (3, {})
    assert request_blocks(trace) == [[0, 1], [0, 1, 2], [0, 3]]
    tokens = '{"input_toks": 2, "output_toks": 1, "arrival_time_ns": 0, "input_tok_ids": [5, -6]}\n'
    ok = '{"input_toks": 2, "output_toks": 1, "arrival_time_ns": 9, "input_tok_ids": [5, 6]%s}\n' % tail
    assert load(write(tmp_path, "l.jsonl", tokens + ok)).provenance.skip_reasons == {"negative_value": 1}


@pytest.mark.parametrize("reader", ["fast", "reference"])
def test_unsigned_64_bit_hash_ids_are_their_bits(tmp_path, reader):
    """Unsigned 64-bit block hashes (xxHash64 and the like: half of them at or past 2^63) had every record holding one
    skipped as id_out_of_range. A hash id is 64 bits, written signed or unsigned: 2^64 - 7 is the block -7 is, and
    ids in [2^63, 2^64) are read; 2^64 is no 64-bit integer: out of range, as a token id past int64 is (both readers;
    it was a bad id list, orjson reading it as a float). The reference reader is forced by an escape on a line."""
    tail = ', "note": "\\u0041"' if reader == "reference" else ""
    text = (_mooncake_line(0, 1000, 5, [2**64 - 7, 2**63]) + _mooncake_line(10, 1500, 5, [-7, -2**63, 2**64 - 1])
            + _mooncake_line(20, 600, 5, [2**64 - 7, 3]).replace("}\n", tail + "}\n")
            + _mooncake_line(30, 600, 5, [2**64, 3]))
    trace = load(write(tmp_path, "m.jsonl", text), block_size=512)
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (3, {"id_out_of_range": 1})
    assert request_blocks(trace) == [[0, 1], [0, 1, 2], [0, 3]]
    tokens = '{"input_toks": 2, "output_toks": 1, "arrival_time_ns": 0, "input_tok_ids": [5, %d]}\n' % 2**63
    ok = '{"input_toks": 2, "output_toks": 1, "arrival_time_ns": 9, "input_tok_ids": [5, 6]}\n'
    assert load(write(tmp_path, "l.jsonl", tokens + ok.replace("}\n", tail + "}\n"))).provenance.skip_reasons \
        == {"id_out_of_range": 1}


def test_line_numbers_are_counted_in_chunks_as_a_whole_count_would(tmp_path):
    """The line a refused record is on is counted a chunk at a time (no copy of the file before it): chunk edges
    anywhere, the count is bytes.count's."""
    import mmap

    from trace.jsonl_reader import _newlines_before

    text = b'{"a": 1}\n\n{"b": 2}\r\n' * 50
    path = write(tmp_path, "n.jsonl", text.decode())
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for at in (0, 1, 9, 10, 11, 500, len(text)):
            assert _newlines_before(data, at, chunk=7) == text[:at].count(b"\n")
