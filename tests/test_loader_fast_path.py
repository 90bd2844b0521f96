"""The fast readers (pyarrow) give exactly what the reference readers (pandas, orjson) give.

The oracle is the same loader with the fast readers switched off: every CSV then goes through
pandas as a whole file, every JSONL line through orjson. Files mix plain rows with odd ones
(blanks, quotes, signs, NaN, huge numbers, bad dates, wrong field counts, nulls, nesting, ...)
drawn by a seeded generator; the trace arrays, the provenance and any error must be equal, with
the default chunk size and with tiny chunks (fast and reference chunks side by side).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from sim.errors import InputError
from tests.loader_helpers import load
from trace import csv_reader, jsonl_reader, readers
from trace.datetimes import datetime_ns
from trace.formats import FORMATS

PLAIN_TS = ["2023-11-16 18:15:46.6805900", "2023-11-16 18:15:47.0000000", "2023-11-16T18:15:48.123456789",
            "2023-11-16 18:15:49", "2024-02-29 00:00:00.5"]
ODD_TS = [" 2023-11-16 18:15:50.1", "2023-02-29 00:00:00", "2023-11-16 24:00:00", "2023-11-16 18:15:51.1234567891",
          "2023-11-16 18:15", "2023-11-16T18:15:52Z", "2023-11-16 18:15:53+01:00", "", "not-a-time", "2023-11-16 18:15:54.",
          "1600-01-01 00:00:00", "2023-11-16\t18:15:55"]
PLAIN_INT = ["100", "7", "4096", "512", "1"]
ODD_INT = ["", " 12", "12 ", "+5", "-5", "0", "-0", "007", "1e3", "12.5", "12.0", "NaN", "inf", "0x10", "abc",
           "99999999999999999999999", "1000000000000", "\t3"]
ODD_LINES = ["", "   ", "\t", "x", ",,", ",,,,", '"2023-11-16 18:15:56",100,10', '"a\nb",1,2', "2023-11-16 18:15:57,1,2,3",
             "2023-11-16 18:15:58,1", "caf\u00e9,1,2", "2023-11-16 18:15:59,\x00,1"]


def _csv_text(rng: random.Random, rows: int, odd: float) -> str:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for _ in range(rows):
        if rng.random() < odd / 3:
            lines.append(rng.choice(ODD_LINES))
            continue
        fields = [rng.choice(ODD_TS if rng.random() < odd else PLAIN_TS)]
        fields += [rng.choice(ODD_INT if rng.random() < odd else PLAIN_INT) for _ in range(2)]
        lines.append(",".join(fields))
    newline = "\r\n" if rng.random() < 0.2 else "\n"
    return newline.join(lines) + ("" if rng.random() < 0.2 else newline)


def _mooncake_record(rng: random.Random, odd: float) -> str:
    length = rng.choice([1, 100, 512, 513, 1024, 1500])
    record = {"timestamp": rng.choice([0, 5, 10, 1_000, 2_000]), "input_length": length,
              "output_length": rng.choice([1, 20, 300]), "hash_ids": [rng.randrange(50) for _ in range(-(-length // 512))]}
    if rng.random() < odd:
        key = rng.choice(list(record))
        record[key] = rng.choice([None, -1, -0.0, 1.5, 1e400 if key != "hash_ids" else [1, -2], "7", True, [], {},
                                  2**63, 2**64 + 5, 10**12, 12.0, [1, 2**63], [1, "x"], [1, None], [[1]], [1.0, 2.0]])
    if rng.random() < odd:
        record[rng.choice(["extra", "note"])] = rng.choice([1, "NaN", "caf\u00e9", [1, [2]], {"a": None}, "\\"])
    if rng.random() < odd / 2:
        del record[rng.choice(list(record))]
    try:
        text = json.dumps(record)
    except ValueError:
        text = '{"timestamp": 1}'
    if rng.random() < odd / 3:
        text = rng.choice([text[:-1] + ",}", text + " " + text, "  " + text, text.replace("1", "NaN", 1), "[1, 2]", "{",
                           text.replace('"timestamp"', '"\\u0074imestamp"'), text.replace('"timestamp": 0,', '"timestamp": -0,'),
                           text + "\t", "\ufeff" + text, text.replace("]", "]\n"), text[:-1] + ', "x":\n{"y": 1}}'])
    return text


def _mooncake_text(rng: random.Random, rows: int, odd: float) -> str:
    lines = [_mooncake_record(rng, odd) if rng.random() > odd / 4 else rng.choice(["", "   ", "\r"]) for _ in range(rows)]
    return "\n".join(lines) + "\n"


def _load_outcome(path, monkeypatch, fast: bool, chunk_rows: int | None, **workload):
    with monkeypatch.context() as patch:
        if chunk_rows is not None:
            patch.setattr(readers, "CHUNK_ROWS", chunk_rows)
        if not fast:  # the reference readers only: whole-file pandas for CSV, orjson line by line for JSONL
            patch.setattr(csv_reader, "_csv_layout", lambda *_args: None)
            patch.setattr(jsonl_reader, "_fast_jsonl", lambda *_args: None)
        try:
            trace = load(path, **workload)
        except InputError as exc:
            return ("error", str(exc))
    arrays = {name: getattr(trace, name) for name in ("arrival_s", "input_tokens", "output_tokens", "session_id",
                                                      "block_offsets", "answer_offsets", "answer_ids")}
    arrays["block_ids"] = trace.access_stream() if trace.has_block_ids else None  # (held flat or as runs)
    return ("trace", {k: None if v is None else (v.dtype.str, v.tobytes()) for k, v in arrays.items()},
            trace.num_unique_blocks, trace.provenance.to_dict())


def _assert_same(path, monkeypatch, **workload):
    for chunk_rows in (None, 3):
        fast = _load_outcome(path, monkeypatch, True, chunk_rows, **workload)
        reference = _load_outcome(path, monkeypatch, False, chunk_rows, **workload)
        assert fast == reference, (path.read_bytes()[:3000], chunk_rows, fast[:2], reference[:2])


@pytest.mark.parametrize("seed", range(40))
def test_csv_fast_equals_reference(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    odd = [0.0, 0.02, 0.1, 0.3][seed % 4]
    path = tmp_path / "t.csv"
    path.write_bytes(_csv_text(rng, rng.randrange(1, 40), odd).encode("utf-8" if seed % 7 else "latin-1"))
    _assert_same(path, monkeypatch)
    if seed % 5 == 0:
        _assert_same(path, monkeypatch, strict_validation=True)
        _assert_same(path, monkeypatch, limit=rng.randrange(1, 10))


@pytest.mark.parametrize("seed", range(40))
def test_jsonl_fast_equals_reference(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    odd = [0.0, 0.02, 0.1, 0.3][seed % 4]
    path = tmp_path / "m.jsonl"
    path.write_text(_mooncake_text(rng, rng.randrange(1, 40), odd))
    _assert_same(path, monkeypatch, block_size=512, format="mooncake")
    if seed % 5 == 0:
        _assert_same(path, monkeypatch, block_size=512, format="mooncake", strict_validation=True)
        _assert_same(path, monkeypatch, block_size=16, format="mooncake", block_mismatch="split", limit=rng.randrange(1, 10))


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4])
def test_csv_quoted_newline_across_chunks(tmp_path, monkeypatch, chunk_rows):
    """A quoted field holding a newline may straddle a chunk's end: pandas reads on from there."""
    text = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "0,ChatGPT,100,10,110,Conversation log\n"
            '1,"Chat\nGPT",200,10,210,Conversation log\n'
            '2,"a,\n\nb",-300,10,-290,Conversation log\n'
            "3,ChatGPT,400,10,410,Conversation log\n")
    path = tmp_path / "b.csv"
    path.write_text(text)
    expected = _load_outcome(path, monkeypatch, False, None)
    assert expected[0] == "trace" and expected[3]["skip_reasons"] == {"negative_value": 1}
    assert _load_outcome(path, monkeypatch, True, chunk_rows) == expected
    strict = _load_outcome(path, monkeypatch, True, chunk_rows, strict_validation=True)
    assert strict == ("error", f"{path}: row 3 (line 5) column 'Request tokens': negative value")


@pytest.mark.parametrize("seed", range(6))
def test_burstgpt_sessions_fast_equals_reference(tmp_path, monkeypatch, seed):
    """Session labels: blank ones are none, a blank before a label is dropped (pandas' skipinitialspace),
    non-ASCII blanks count as blank; a byte that is not UTF-8 in a column not read is still an error."""
    rng = random.Random(seed)
    sessions = ["A", "B", "", "  ", "A ", " A", "C", "c\u00e9", "\u00a0", "\x1f"]
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID"]
    for i in range(60):
        label = rng.choice(sessions[:7] if i < 30 else sessions)  # the first chunk of 3-row chunks: ASCII labels only
        model = "Chat\udce9" if i == 50 and seed % 2 == 0 else "ChatGPT"  # written as the byte 0xe9
        tokens = (rng.choice([0, 16, 40, 70]), rng.choice([0, 5]))
        lines.append(f"{i},{model},{tokens[0]},{tokens[1]},{sum(tokens)},Conversation log,{label}")
    path = tmp_path / "b.csv"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    _assert_same(path, monkeypatch)


def test_plain_traces_take_the_fast_readers(tmp_path):
    """The shortcut is taken for plain files (else the speed-up would silently vanish)."""
    azure = b"2023-11-16 18:15:46.6805900,1137,509\n2023-11-16 18:15:46.8641174,4074,30\n"
    names = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    frame = csv_reader._fast_csv(azure, names, names)
    assert frame is not None and datetime_ns(frame["TIMESTAMP"]) is not None
    mooncake = b'{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n' * 3
    raw = jsonl_reader._fast_jsonl(mooncake, 1, 1, FORMATS["mooncake"].signature, FORMATS["mooncake"].id_lists)
    assert raw is not None and raw.rows == 3 and raw.frame["hash_ids"].values.tolist() == [1, 2] * 3


def test_datetimes_match_pandas():
    """The fast datetime reader's nanoseconds equal pandas' ISO 8601 ones (leap days, 1-9 fraction digits, T)."""
    import pandas as pd
    import pyarrow as pa

    rng = np.random.default_rng(3)
    seconds = rng.integers(np.datetime64("1900-01-01", "s").astype(int), np.datetime64("2200-12-31", "s").astype(int), 400)
    texts = []
    for i, s in enumerate(seconds):
        stamp = str(np.datetime64(int(s), "s")).replace("T", " " if i % 3 else "T")
        digits = i % 10
        texts.append(stamp + ("." + "".join(str(d) for d in rng.integers(0, 10, digits)) if digits else ""))
    texts += ["2024-02-29 23:59:59.999999999", "2000-02-29 00:00:00", "1970-01-01 00:00:00"]
    got = datetime_ns(pa.array(texts))
    expected = pd.to_datetime(pd.Series(texts), format="ISO8601", utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    assert got is not None and got.tolist() == expected.tolist()
    # Azure's 2024 traces: "+00:00" on every time (with and without a fraction), the same instants
    with_offset = datetime_ns(pa.array([t + "+00:00" for t in texts]))
    assert with_offset is not None and with_offset.tolist() == expected.tolist()
    assert datetime_ns(pa.array([texts[0] + "+00:00", texts[1]])) is None  # mixed: pandas decides
    assert datetime_ns(pa.array([t + "+01:00" for t in texts[:3]])) is None  # another zone: pandas decides


@pytest.mark.parametrize("zero", ["-0", "-0.0", "0.0", "-0e0"])
def test_jsonl_negative_zero_timestamp(tmp_path, monkeypatch, zero):
    """``-0`` is read by orjson as the integer 0 but ``-0.0`` as a negative zero: arrivals keep that sign."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5, "hash_ids": [1]}\n'
                    f'{{"timestamp": {zero}, "input_length": 100, "output_length": 5, "hash_ids": [2]}}\n')
    _assert_same(path, monkeypatch, block_size=512)


GOOD = '{"timestamp": 10, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}'
ADVERSARIAL_JSONL = {
    "object_left_open_then_two": '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [3], "x":\n'
                                 '{"y": 1}} {"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": [4]}',
    "null_id": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, null]}',
    "nested_object_ignored": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2], "x": {"y": [1]}}',
    "nested_arrays_ignored": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2], "x": '
                             + "[" * 50 + "]" * 50 + "}",
    "lone_surrogate": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2], "x": "\\udc00"}',
    "nan_in_ignored": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2], "x": [NaN]}',
    "minus_infinity": '{"timestamp": -Infinity, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}',
    "escaped_duplicate_key": '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2], "\\u0074imestamp": 7}',
    "two_objects": GOOD + " " + GOOD,
    "key_missing": '{"timestamp": 0, "input_length": 600, "hash_ids": [1, 2]}',
    "crlf": GOOD + "\r\n" + GOOD + "\r",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_JSONL))
def test_jsonl_adversarial_lines(tmp_path, monkeypatch, name):
    path = tmp_path / "m.jsonl"
    path.write_text(GOOD + "\n" + ADVERSARIAL_JSONL[name] + "\n" + GOOD + "\n")
    _assert_same(path, monkeypatch, block_size=512, format="mooncake")
    _assert_same(path, monkeypatch, block_size=512, format="mooncake", strict_validation=True)


@pytest.mark.parametrize("seed", range(10))
def test_llmservingsim_fast_equals_reference(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    lines = []
    for i in range(30):
        n = rng.choice([1, 3, 17, 40])
        record = {"input_toks": n, "output_toks": rng.choice([1, 9]), "arrival_time_ns": rng.choice([0, 10**6, 10**9 + i])}
        if seed % 3 or i:  # a third of the files: no token ids in the first record
            if rng.random() > 0.1:
                record["input_tok_ids"] = [rng.randrange(4) for _ in range(n if rng.random() > 0.1 else n + 1)]
            if seed % 2 and rng.random() > 0.1:  # half the files: recorded answers, one in ten of another length
                out = record["output_toks"]
                record["output_tok_ids"] = [rng.randrange(4) for _ in range(out if rng.random() > 0.1 else out - 1)]
        if rng.random() < 0.1:
            record[rng.choice(list(record))] = rng.choice([None, -3, 2.5, "x", [-1]])
        lines.append(json.dumps(record))
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _assert_same(path, monkeypatch, block_size=4)


@pytest.mark.parametrize("seed", range(12))
def test_bailian_fast_equals_reference(tmp_path, monkeypatch, seed):
    """Bailian's records (tests/samples/README.md): chat ids, parent chains (-1: a first turn), odd values."""
    rng = random.Random(seed)
    lines = []
    for chat in range(rng.randrange(1, 30)):
        tokens = rng.randrange(1, 200)
        record = {"chat_id": chat, "parent_chat_id": rng.choice([-1, -1, rng.randrange(0, chat + 3)]),
                  "timestamp": round(chat * 0.7 + rng.random(), 3), "input_length": tokens, "output_length": 5,
                  "type": rng.choice(["text", "search"]), "turn": 1, "hash_ids": list(range(chat, chat + -(-tokens // 16)))}
        if rng.random() < [0.0, 0.1, 0.3][seed % 3]:
            record[rng.choice(["chat_id", "parent_chat_id"])] = rng.choice(["7", -2, 1.5, None, True, "x"])
        lines.append(json.dumps(record))
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _assert_same(path, monkeypatch)


def test_block_size_look_ahead_fast_equals_reference(tmp_path, monkeypatch):
    """A first chunk of one-block records sends the block size's inference to the later chunks
    (trace.scan.Established.later): read alike by both readers, odd records among them."""
    lines = [json.dumps({"timestamp": i, "input_length": 9, "output_length": 2, "hash_ids": [i]}) for i in range(3)]
    lines += ['{"timestamp": 5, "input_length": "40", "output_length": 2, "hash_ids": [1, 2, 3]}', "not json",
              json.dumps({"timestamp": 6, "input_length": 40, "output_length": 2, "hash_ids": [7, 8, 9]}),
              json.dumps({"timestamp": 7, "input_length": 40, "output_length": 2, "hash_ids": [7, 8]})]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _assert_same(path, monkeypatch, block_size=16, format="mooncake")
    _assert_same(path, monkeypatch, block_size=16, format="mooncake", limit=2)
