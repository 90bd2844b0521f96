"""CSV traces as other tools write them — spreadsheets in other locales, database exports, R and pandas — read as
the comma-separated files they stand for: each against a hand-computed expectation, in every CSV reader (pyarrow;
pandas, under quotes; the csv module, after a row with too many fields)."""

from __future__ import annotations

import pytest

from sim.errors import TraceError
from tests.loader_helpers import AZURE_HEADER, BURST_HEADER, load, write


def _assert_three_burstgpt_rows(trace, malformed: int) -> None:
    """The three BurstGPT rows both header tests write (t 5, 9, 12; sessions A, none, A), and ``malformed`` rows."""
    prov = trace.provenance
    assert (prov.format, prov.rows_used, prov.block_ids) == ("burstgpt", 3, "synthetic-sessions")
    assert prov.skip_reasons == ({"malformed_row": malformed} if malformed else {})
    assert trace.arrival_s.tolist() == [0.0, 4.0, 7.0]
    assert (trace.input_tokens.tolist(), trace.output_tokens.tolist()) == ([40, 50, 70], [7, 3, 1])
    assert trace.session_id.tolist() == [0, -1, 0]


@pytest.mark.parametrize("reader", ["fast", "quoted", "tolerant"])
def test_header_names_in_another_letter_case(tmp_path, reader):
    """A database export lowercases identifiers (BurstGPT's "request tokens", Azure's "timestamp"): the header was
    an "unrecognised trace header", or with --workload-format "missing column(s)". A name that matches a column but
    for letter case is that column, in each reader (pyarrow; pandas, under a quoted header; the csv module, after
    a row with too many fields); two names folding to one column are refused as missing it."""
    header = "timestamp,model,request tokens,response tokens,total tokens,log type,session id\n"
    if reader == "quoted":
        header = ",".join(f'"{name.upper()}"' for name in header.strip().split(",")) + "\n"
    rows = "5,ChatGPT,40,7,47,Conversation log,A\n9,GPT-4,50,3,53,API log,\n12,ChatGPT,70,1,71,Conversation log,A\n"
    if reader == "tolerant":
        rows += "13,ChatGPT,70,1,71,Conversation log,A,extra\n"
    trace = load(write(tmp_path, "b.csv", header + rows))
    _assert_three_burstgpt_rows(trace, malformed=int(reader == "tolerant"))
    azure = load(write(tmp_path, "a.csv", "timestamp,contexttokens,generatedtokens\n"
                                          "2023-11-16 18:15:46.5,100,10\n2023-11-16 18:15:48.0,200,20\n"), format="azure")
    assert (azure.arrival_s.tolist(), azure.input_tokens.tolist()) == ([0.0, 1.5], [100, 200])
    with pytest.raises(TraceError, match="missing column.*TIMESTAMP"):
        load(write(tmp_path, "two.csv", "timestamp,Timestamp,ContextTokens,GeneratedTokens\n"
                                        "2023-11-16 18:15:46,2023-11-16 18:15:47,100,10\n"), format="azure")


@pytest.mark.parametrize("reader", ["fast", "quoted", "tolerant"])
@pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_fields_separated_by_another_delimiter(tmp_path, delimiter, reader):
    """A spreadsheet in a locale with a decimal comma saves "CSV" with semicolons; tab-separated text and pipe-
    separated database dumps are as common. The header was an "unrecognised trace header" though it names the
    columns under its own separator. Read in each reader (pyarrow; pandas, under quotes; the csv module, after a
    row with too many fields, which stays malformed), with a strict error naming its row and line."""
    rows = [["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type", "Session ID"],
            ["5", "ChatGPT", "40", "7", "47", "Conversation log", "A"],
            ["9", "GPT-4", "50", "3", "53", "API log", ""],
            ["12", "ChatGPT", "70", "1", "71", "Conversation log", "A"]]
    if reader == "tolerant":
        rows.append(["13", "ChatGPT", "70", "1", "71", "Conversation log", "A", "extra"])
    quote = '"' if reader == "quoted" else ""
    text = "".join(delimiter.join(f"{quote}{field}{quote}" for field in row) + "\n" for row in rows)
    trace = load(write(tmp_path, "b.csv", text))
    _assert_three_burstgpt_rows(trace, malformed=int(reader == "tolerant"))
    if reader == "tolerant":
        with pytest.raises(TraceError, match=r"row 4 \(line 5\): malformed row"):
            load(write(tmp_path, "b.csv", text), strict_validation=True)
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,100,10\n2023-11-16 18:15:48.0,200,20\n"
    trace = load(write(tmp_path, "a.csv", azure.replace(",", delimiter)), format="azure")
    assert (trace.arrival_s.tolist(), trace.input_tokens.tolist()) == ([0.0, 1.5], [100, 200])


def test_datetime_fraction_after_a_comma(tmp_path):
    """ISO 8601 allows a comma before a time's fraction of a second, as a locale with a decimal comma writes it (and
    a semicolon-separated export from such a spreadsheet): pandas reads only the point, so such rows were skipped as
    bad_timestamp. Both marks read alike; a comma not followed by digits is still a bad timestamp."""
    text = ("TIMESTAMP;ContextTokens;GeneratedTokens\n2023-11-16 18:15:46,68;100;10\n2023-11-16T18:15:47,5;200;20\n"
            "2023-11-16 18:15:49;300;30\n2023-11-16 18:15:50,x;400;40\n")
    trace = load(write(tmp_path, "a.csv", text))
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (3, {"bad_timestamp": 1})
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.82, 2.32], abs=1e-9)
    quoted = AZURE_HEADER + '"2023-11-16 18:15:46,25",100,10\n"2023-11-16 18:15:47,75",200,20\n'
    assert load(write(tmp_path, "q.csv", quoted)).arrival_s.tolist() == [0.0, 1.5]


@pytest.mark.parametrize("spelling", ["NA", "nan", "NULL", "None", '"NA"', " n/a", "#N/A"])
def test_burstgpt_missing_session_spellings_are_no_session(tmp_path, spelling):
    """A missing Session ID written as a word (pandas' .astype(str) "nan", R's "NA", "NULL", ...; quoted: the
    reference reader) was one session label shared by every API-log row: those rows became one conversation
    whose turns shared prefixes that never existed (a 400-row sample's reuse ceiling went from 0.35 to 0.87).
    They have no session, as a blank does. Block size 16: session A as above; rows 1 and 5 (50 tokens, 3 full + 2),
    row 3 (20 tokens, 1 full + 4) without a session, so none of their blocks is shared."""
    text = (
        BURST_HEADER + ",Session ID\n"
        "0,ChatGPT,40,10,50,Conversation log,A\n"
        f"1,ChatGPT,50,10,60,API log,{spelling}\n"
        "2,ChatGPT,70,10,80,Conversation log,A\n"
        f"3,ChatGPT,20,10,30,API log,{spelling}\n"
        "4,ChatGPT,32,10,42,Conversation log,A\n"
        f"5,ChatGPT,50,10,60,API log,{spelling}\n"
    )
    trace = load(write(tmp_path, "sessions.csv", text))
    assert trace.provenance.skip_reasons == {}
    assert trace.session_id.tolist() == [0, -1, 0, -1, 0, -1]
    assert trace.num_accesses == 3 + 4 + 5 + 2 + 2 + 4
    # A's full blocks at depths 0-3 (4) + A's two partial blocks (2) + rows 1, 3, 5, every block their own (4 + 2 + 4)
    assert trace.num_unique_blocks == 16


def test_rows_ending_with_the_delimiter_stay_on_the_fast_reader(tmp_path, chunk_rows, monkeypatch):
    """A writer that ends every row with a delimiter under a plain header: the empty field past the header's is
    dropped (the named fields as written) by pyarrow itself, chunk by chunk, as the csv module drops it; the
    whole file went to the csv module (6x slower on 300k rows). A chunk whose rows mix endings, or hold a value
    past the header's, still leaves pyarrow (that row is malformed: which field is extra cannot be told)."""
    from trace import csv_reader

    rows = "".join(f"2023-11-16 18:15:{46 + i:02d}.0000000,{100 * (i + 1)},{10 + i},\n" for i in range(6))
    tolerant = csv_reader._tolerant_csv

    def refused(*args, **kwargs):
        raise AssertionError("read by the csv module")

    monkeypatch.setattr(csv_reader, "_tolerant_csv", refused)
    trace = load(write(tmp_path, "t.csv", AZURE_HEADER + rows))
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (6, {})
    assert trace.input_tokens.tolist() == [100, 200, 300, 400, 500, 600]
    assert trace.output_tokens.tolist() == [10, 11, 12, 13, 14, 15]
    assert trace.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    monkeypatch.setattr(csv_reader, "_tolerant_csv", tolerant)
    trace = load(write(tmp_path, "v.csv", AZURE_HEADER + rows + "2023-11-16 18:15:52.0000000,700,16,9\n"))
    assert (trace.provenance.rows_used, trace.provenance.skip_reasons) == (6, {"malformed_row": 1})
