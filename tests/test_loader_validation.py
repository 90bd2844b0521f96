"""Trace validation: bad rows are counted per reason; strict mode names the first bad row."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sim.errors import TraceError

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"

from tests.conftest import ROOT
from tests.loader_helpers import (
    AZURE_BAD,
    AZURE_BAD_REASONS,
    AZURE_HEADER,
    MOONCAKE_BAD,
    _mooncake_line,
    load,
    request_blocks,
    write,
)

SPLITWISE_HEADER = "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"

# ----------------------------------------------------------------------------------------------
# 3. Bad rows are counted per reason, good rows survive with their values
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


@pytest.mark.parametrize("header", [AZURE_HEADER, SPLITWISE_HEADER], ids=["azure", "splitwise"])
def test_old_mac_line_ends_read_as_line_ends(tmp_path, header):
    """Lone carriage returns end lines for pandas and the csv module: the header is sniffed from the
    first of them (it was the whole file as one header line, refused when a signature column came last)."""
    rows = ("2023-11-16 18:15:4{i}.0000000,{p},{o}\n" if header == AZURE_HEADER else "{i},2,0,{i},1,{p},{o}\n")
    text = header + "".join(rows.format(i=i, p=100 * (i + 1), o=10 + i) for i in range(3))
    unix, mac = load(write(tmp_path, "unix.csv", text)), load(write(tmp_path, "mac.csv", text.replace("\n", "\r")))
    assert mac.provenance.format == unix.provenance.format
    assert (mac.provenance.rows_read, mac.provenance.rows_skipped) == (3, 0)
    for attr in ("arrival_s", "input_tokens", "output_tokens"):
        assert getattr(mac, attr).tolist() == getattr(unix, attr).tolist()


def test_trailing_delimiter_rows_read_unshifted_extra_value_malformed(tmp_path):
    """A trailing comma on every data row but not the header: no row may be read one column to the
    left (pandas' readers take the first field as an index). The field past the header's is empty, so the
    named fields are as written and the rows are read (they were all malformed_row: "no valid requests");
    a row whose field past the header's holds a value is malformed (which field is extra cannot be told)."""
    rows = "".join(f"{i},2,0,{i},1,{1000 + i},{10 + i},\n" for i in range(3))
    trace = load(write(tmp_path, "sw.csv", SPLITWISE_HEADER + rows))
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (3, {})
    assert (trace.input_tokens.tolist(), trace.output_tokens.tolist()) == ([1000, 1001, 1002], [10, 11, 12])
    assert trace.arrival_s.tolist() == [0.0, 1.0, 2.0]
    mixed = rows + "3,2,0,3,1,2000,40\n" + "4,2,0,4,1,3000,50,7\n" + "5,2,0,5,1,4000,60, ,\n"
    trace = load(write(tmp_path, "sw2.csv", SPLITWISE_HEADER + mixed))
    assert trace.provenance.skip_reasons == {"malformed_row": 1}
    assert (trace.input_tokens.tolist(), trace.output_tokens.tolist()) == ([1000, 1001, 1002, 2000, 4000],
                                                                           [10, 11, 12, 40, 60])
    with pytest.raises(TraceError, match=r"row 5 \(line 6\): malformed row"):
        load(write(tmp_path, "sw3.csv", SPLITWISE_HEADER + mixed), strict_validation=True)


@pytest.mark.parametrize("damage, line", [
    ('"2023-11-16 18:15:48.0000000,300,30\n2023-11-16 18:15:49.0000000,400,40\n', "line 4"),  # a quote never closed: not the rest of the file as one field
    ("2023-11-16 18:15:48.0000000,300,30," + "9" * 200_000 + "\n", "line 4"),  # beyond the csv module's field limit
], ids=["unclosed_quote", "field_above_csv_limit"])
def test_csv_damage_after_a_long_row_is_exit_2(tmp_path, damage, line):
    """A row with too many fields sends the file to the tolerant reader; damage it cannot read is
    bad input naming the line, not an internal error or rows silently lost."""
    text = AZURE_HEADER + "2023-11-16 18:15:46.0000000,100,10,7\n2023-11-16 18:15:47.0000000,200,20\n" + damage
    with pytest.raises(TraceError, match=f"malformed CSV: .*{line}"):
        load(write(tmp_path, "t.csv", text))


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


@pytest.mark.parametrize("chunk", [None, 1])
def test_datetimes_beyond_nanosecond_range_are_bad(tmp_path, monkeypatch, chunk):
    """Years outside 1677-2262 do not fit nanosecond timestamps: a bad timestamp, whatever else
    shares the chunk (pandas parses a chunk of whole seconds in seconds, where they do fit)."""
    from trace import readers

    if chunk is not None:
        monkeypatch.setattr(readers, "CHUNK_ROWS", chunk)
    text = AZURE_HEADER + ("2023-11-16 18:15:46.0000000,100,10\n1600-01-01 00:00:00,100,10\n"
                           "2300-01-01 00:00:00,100,10\n2023-11-16 18:15:47,200,20\n")
    trace = load(write(tmp_path, "t.csv", text))
    assert trace.provenance.skip_reasons == {"bad_timestamp": 2}
    assert trace.arrival_s.tolist() == [0.0, 1.0]


def test_llmservingsim_token_ids_are_optional(tmp_path):
    """A trace without input_tok_ids has token counts only (unique blocks); one whose first record
    has them uses them, and a later record without them is missing a value."""
    without = '{"input_toks": 20, "output_toks": 5, "arrival_time_ns": 0}\n{"input_toks": 40, "output_toks": 5, "arrival_time_ns": 1000}\n'
    trace = load(write(tmp_path, "a.jsonl", without))
    assert trace.provenance.format == "llmservingsim" and trace.provenance.block_ids == "unique"
    assert (trace.input_tokens.tolist(), trace.num_accesses) == ([20, 40], 2 + 3)
    with_ids = ('{"input_toks": 3, "output_toks": 5, "arrival_time_ns": 0, "input_tok_ids": [7, 8, 9]}\n'
                '{"input_toks": 40, "output_toks": 5, "arrival_time_ns": 1000}\n')
    trace = load(write(tmp_path, "b.jsonl", with_ids))
    assert trace.provenance.block_ids == "chained" and trace.provenance.skip_reasons == {"missing_value": 1}


_WITH_IDS = '{"input_toks": 3, "output_toks": 5, "arrival_time_ns": %d, "input_tok_ids": [7, 8, 9]}\n'
_WITHOUT_IDS = '{"input_toks": 3, "output_toks": 5, "arrival_time_ns": %d}\n'


@pytest.mark.parametrize("missing_at", [0, 1, 2])
def test_llmservingsim_record_without_token_ids_is_missing_wherever_it_lies(tmp_path, chunk_rows, missing_at):
    """A trace whose records carry input_tok_ids: the one record without them is missing a value in
    any position, the first included (its ids were once ignored for the whole trace: every block
    unique). The two others share their 3 one-token blocks: 6 accesses, 3 unique."""
    text = "".join((_WITHOUT_IDS if i == missing_at else _WITH_IDS) % (1000 * i) for i in range(3))
    trace = load(write(tmp_path, "t.jsonl", text), block_size=1)
    prov = trace.provenance
    assert (prov.block_ids, prov.skip_reasons, prov.rows_used) == ("chained", {"missing_value": 1}, 2)
    assert request_blocks(trace) == [[0, 1, 2], [0, 1, 2]]
    with pytest.raises(TraceError, match=f"record {missing_at + 1} .*'input_tok_ids': missing value"):
        load(tmp_path / "t.jsonl", block_size=1, strict_validation=True)


@pytest.mark.parametrize("line", [
    '{"input_toks": 3, "output_toks": 5, "arrival_time_ns": 9, "note": "input_tok_ids"}\n',  # a value, not a key
    '{"input_toks": 3, "output_toks": 5, "arrival_time_ns": 9, "x": "\\u0041"}\n',  # an escape, no such key
])
def test_llmservingsim_key_name_outside_a_key_is_no_token_ids(tmp_path, line):
    """Only a record's key counts: the name in a string value, or an escape that spells another key,
    leaves a trace of token counts only."""
    trace = load(write(tmp_path, "t.jsonl", _WITHOUT_IDS % 0 + line), block_size=1)
    assert (trace.provenance.block_ids, trace.provenance.skip_reasons) == ("unique", {})


def test_llmservingsim_escaped_key_counts(tmp_path):
    """A later record's key spelled with a JSON escape is the same key (orjson decodes it)."""
    escaped = '{"input_toks": 3, "output_toks": 5, "arrival_time_ns": 9, "input\\u005ftok_ids": [7, 8, 9]}\n'
    trace = load(write(tmp_path, "t.jsonl", _WITHOUT_IDS % 0 + escaped), block_size=1)
    assert (trace.provenance.block_ids, trace.provenance.skip_reasons) == ("chained", {"missing_value": 1})


@pytest.mark.parametrize("unit, warned", [("ms", False), ("us", True)])
def test_implausible_arrival_rate_warns_of_the_time_unit(tmp_path, unit, warned):
    """200 Mooncake requests 300 timestamp units apart: 0.3 s apart in ms (3.3 a second, as Mooncake's own
    trace), 0.3 ms apart in us (the same trace read in a unit 1,000x too fine: 3,300 a second) — a
    warning naming the flag and the unit, and the run goes on."""
    records = "".join(f'{{"timestamp": {300 * i}, "input_length": 512, "output_length": 8, "hash_ids": [{i}]}}\n'
                      for i in range(200))
    (tmp_path / "m.jsonl").write_text(records)
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--no-plot", "--workload-trace",
                           str(tmp_path / "m.jsonl"), "--workload-time-unit", unit],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # the warning names the coarser unit that makes the rate plausible: 300 us apart read as ms, 3.3 a second
    warning = "requests/s on average): are its timestamps in another unit? (--workload-time-unit ms, if they are in ms)"
    assert (warning in done.stderr) == warned, done.stderr


@pytest.mark.parametrize("times, warned", [
    (["18:15", "18:15", "18:15", "18:16", "18:16", "18:17"], "whole minute (6 requests at 3 distinct times)"),
    (["18:15:01", "18:15:01", "18:15:02", "18:15:02", "18:15:03", "18:15:03"], "whole second (6 requests at 3"),
    (["18:15:01.5", "18:15:01.5", "18:15:02.5", "18:15:02.5", "18:15:03.5", "18:15:03.5"], "whole second"),
    (["18:15:01", "18:15:02", "18:15:03", "18:15:04", "18:15:05", "18:15:06"], None),  # whole seconds, one at each
    (["18:15:01.2", "18:15:01.2", "18:15:02.7", "18:15:02.7", "18:15:03.1", "18:15:03.1"], None),  # finer than seconds
], ids=["minutes", "seconds", "seconds_apart", "one_a_second", "fine"])
def test_datetimes_cut_to_whole_minutes_warn(run_cli, caplog, tmp_path, times, warned):
    """An Azure trace saved from a spreadsheet with a "yyyy-mm-dd hh:mm" cell format keeps the minutes only: every
    request of a minute arrives at once, a burst the trace never had, with exit 0 and nothing said. Datetimes that
    are all whole minutes (seconds) from the first, several requests at each, now warn; the run goes on."""
    rows = "".join(f"2023-11-16 {t},{100 + i},{10 + i}\n" for i, t in enumerate(times))
    path = write(tmp_path, "t.csv", AZURE_HEADER + rows)
    with caplog.at_level("WARNING", logger="kvsim.workload"):
        status, _, err = run_cli("--trace-stats", "--no-plot", "--workload-trace", str(path))
    assert status == 0, err
    notes = [r.getMessage() for r in caplog.records if "every timestamp is a whole" in r.getMessage()]
    if warned is None:
        assert notes == []
    else:
        assert len(notes) == 1 and f"{path}: every timestamp is a {warned}" in notes[0], notes


@pytest.mark.parametrize("last, unit, names", [
    (2_000_000_000, None, "timestamps in ms read as s? then pass --workload-time-unit ms"),  # 23 days in ms
    (2_000_000_000, "us", None),  # read as us the same file spans 2,000 s: plausible, no error
    (10**15, None, "timestamps in us read as s? then pass --workload-time-unit us"),
    (10**25, None, "a corrupt timestamp? (no --workload-time-unit makes the span plausible)"),
    (10**13, "ms", "timestamps in us read as ms? then pass --workload-time-unit us"),  # from the unit given
])
def test_absurd_arrival_span_names_the_likely_time_unit(tmp_path, run_cli, last, unit, names):
    """Splitwise's arrival_timestamp is seconds (splitwise-sim generate_trace.py: exponential gaps of scale
    1/request_rate, end_time 600 s), so a file of the same columns in milliseconds is told only by its span:
    beyond 34 years the error names the nearest finer unit under which the span fits, or a corrupt timestamp."""
    path = tmp_path / "t.csv"
    path.write_text("request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
                    f"0,2,0,0,1,100,8\n1,2,0,{last},1,100,8\n")
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", str(path),
                             *(["--workload-time-unit", unit] if unit else []))
    if names is None:
        assert status == 0, err
    else:
        assert status == 2 and f"{path}: arrivals span" in err and names in err, err


@pytest.mark.parametrize("times, names", [
    # one row 10^25 s on, the others 0-20 s: the row, not a unit (ms as s would need every gap 1,000x too long)
    ([0, 10, 20, 10**25], "the latest timestamp alone is 1e+25 s from the others, which span 20 s: a corrupt row?"),
    # (read as us the span would fit, yet one row alone makes it: the row)
    ([0, 5 * 10**12, 5 * 10**12 + 10, 5 * 10**12 + 20], "the earliest timestamp alone is 5e+12 s from the others, "
                                                          "which span 20 s"),
    # every gap alike 1,000x too long (ms read as s): the unit, as before
    ([0, 10**9, 2 * 10**9, 3 * 10**9], "timestamps in ms read as s? then pass --workload-time-unit ms"),
])
def test_an_absurd_span_from_one_row_says_so(tmp_path, run_cli, times, names):
    """A single corrupt timestamp in an otherwise plausible trace is named as such, not blamed on the time unit."""
    path = tmp_path / "t.csv"
    path.write_text("request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
                    + "".join(f"{i},2,0,{t},1,100,8\n" for i, t in enumerate(times)))
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", str(path))
    assert status == 2 and f"{path}: arrivals span" in err and names in err, err


@pytest.mark.parametrize("reader", ["fast", "reference"])
def test_a_timestamp_of_2_to_the_63_is_no_negative_time(tmp_path, run_cli, reader):
    """2^63 is past int64 (its largest is 2^63 - 1): a column holding it is read as uint64, which the exact-integer
    path cast to int64, wrapping it to -2^63. The trace then ran with a negative duration (duration_s
    -9.2e15 for Mooncake ms [0, 2^63]) and no span check; 2^63 - 1 and 2^64 were refused as a 34-year span. Now
    2^63 is refused like its neighbours (the reference reader forced by an escape, as test_trace_variants does)."""
    tail = ', "note": "\\u0041"' if reader == "reference" else ""
    path = write(tmp_path, "m.jsonl", _mooncake_line(0, 100, 5, [1])
                 + _mooncake_line(2**63, 100, 5, [2]).replace("}\n", tail + "}\n"))
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", str(path))
    assert status == 2 and f"{path}: arrivals span 9.22e+15 s" in err, err


# ----------------------------------------------------------------------------------------------
# Integer timestamps past 2^53 (epoch nanoseconds): read as int64, made relative in integers. As float64 every
# time there was a multiple of 256 ns: requests 100 ns apart read 0, 0, 256, 256, 512, 512 ns.
EPOCH_NS = 1_700_000_000_123_456_789  # 2023-11-14 in ns since the epoch, past 2^53 = 9.007e15
GAPS_NS = [0, 100, 200, 300, 400, 500]  # by hand: 100 ns apart


def _ns(trace) -> list[int]:
    return [round(t * 1e9) for t in trace.arrival_s]


@pytest.mark.parametrize("bad", [None, '"soon"', "null", "NaN", "missing"])
def test_epoch_nanosecond_jsonl_times_are_exact(tmp_path, chunk_rows, bad):
    """LLMServingSim's arrival_time_ns at epoch scale (pyarrow's JSON reader reads floats: such a chunk goes to
    orjson, which keeps integers), with a skipped record among them or not: a text, a null, a NaN (no JSON: a
    malformed line), a record without the key (the last three made pandas' column float64: 256 ns steps)."""
    lines = [json.dumps({"input_toks": 100, "output_toks": 10, "arrival_time_ns": EPOCH_NS + gap}) for gap in GAPS_NS]
    if bad == "missing":
        lines.insert(2, '{"input_toks": 100, "output_toks": 10}')
    elif bad is not None:
        lines.insert(2, '{"input_toks": 100, "output_toks": 10, "arrival_time_ns": %s}' % bad)
    trace = load(write(tmp_path, "t.jsonl", "\n".join(lines) + "\n"))
    assert _ns(trace) == GAPS_NS and trace.provenance.rows_skipped == int(bad is not None)


@pytest.mark.parametrize("quoted", [False, True], ids=["pyarrow", "pandas"])
def test_epoch_nanosecond_csv_times_are_exact(tmp_path, chunk_rows, quoted):
    """A Splitwise CSV in nanoseconds (--workload-time-unit ns), through the fast reader and (a quoted field) pandas'."""
    ts = [f'"{EPOCH_NS + gap}"' if quoted and i == 1 else str(EPOCH_NS + gap) for i, gap in enumerate(GAPS_NS)]
    rows = "".join(f"{i},2,0,{t},1,100,8\n" for i, t in enumerate(ts))
    trace = load(write(tmp_path, "t.csv", SPLITWISE_HEADER + rows), time_unit="ns")
    assert _ns(trace) == GAPS_NS


def test_integer_times_float64_would_round_to_16_ms_are_exact(tmp_path):
    """Mooncake milliseconds offset by 1e17 (float64 steps of 16 ms there): arrivals 3 ms apart were refused as
    rounded together; as integers they are exact (written as decimals they still are refused:
    test_bad_trace_inputs' timestamps_beyond_millisecond_precision)."""
    text = _mooncake_line(10**17, 600, 5, [1, 2]) + _mooncake_line(10**17 + 3, 600, 5, [1, 3])
    assert load(write(tmp_path, "m.jsonl", text)).arrival_s.tolist() == [0.0, 0.003]


def test_a_decimal_among_epoch_nanoseconds_rounds_them_all(tmp_path):
    """A time written as a decimal is no integer to keep: the column is float64, as before (256 ns steps)."""
    lines = [json.dumps({"input_toks": 100, "output_toks": 10, "arrival_time_ns": EPOCH_NS + gap}) for gap in GAPS_NS]
    lines.append(json.dumps({"input_toks": 100, "output_toks": 10, "arrival_time_ns": float(EPOCH_NS + 600)}))
    assert _ns(load(write(tmp_path, "t.jsonl", "\n".join(lines) + "\n"))) == [0, 0, 256, 256, 512, 512, 512]
