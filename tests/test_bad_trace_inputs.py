"""Every bad trace file is one short line naming the file and row (exit 2), or a counted skip (exit 0): a table of
command lines and their outcomes, as ``tests/test_bad_inputs.py``'s (``tests/bad_input_helpers.py``)."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from tests.bad_input_helpers import (
    AZURE_HEADER,
    AZURE_OK,
    MOONCAKE_OK,
    Case,
    bailian,
    check_bad_input,
    mooncake,
    trace_stats,
)


def _zip(*members: str) -> bytes:
    """A zip archive of empty members, in order (an Office Open XML workbook's first is [Content_Types].xml)."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name in members:
            archive.writestr(name, "")
    return data.getvalue()


# LLMServingSim's JSONL (docs/docs/workloads/jsonl-format.md): a flat record, and an agentic session of two calls
LSS_FLAT = '{"input_toks": 100, "output_toks": 5, "arrival_time_ns": 0}\n'
LSS_SESSION = ('{"session_id": "s0", "arrival_time_ns": 1000, "sub_requests": [{"input_toks": 100, "output_toks": 5, '
               '"tool_duration_ns": 10}, {"input_toks": 120, "output_toks": 5}]}\n')

CASES: dict[str, Case] = {
    # ---- trace files
    "binary_with_explicit_format": Case(trace_stats("--workload-format", "azure", trace="{tmp}/t.bin"),
                                        names=("t.bin", "binary"), files={"t.bin": bytes(range(256)) * 64}),
    # UTF-16 (Windows PowerShell 5's ">", Excel's "Unicode Text"): named with the way out, not "binary data"
    "utf16_with_bom_sniffed": Case(trace_stats(), names=("t.csv", "UTF-16 text, not UTF-8", "iconv"),
                                   files={"t.csv": AZURE_OK.replace("\n", "\r\n").encode("utf-16")}),
    "utf16be_without_bom_explicit_format": Case(trace_stats("--workload-format", "mooncake", trace="{tmp}/m.jsonl"),
                                                names=("m.jsonl", "UTF-16 text"),
                                                files={"m.jsonl": MOONCAKE_OK.encode("utf-16-be")}),
    "utf32_with_bom_sniffed": Case(trace_stats(), names=("t.csv", "UTF-32 text"), files={"t.csv": AZURE_OK.encode("utf-32")}),
    # a table saved in a binary format: named with the way to a text trace (a workbook was sent to unzip)
    "excel_workbook": Case(trace_stats(trace="{tmp}/t.xlsx"), names=("t.xlsx", "an Excel workbook", "save it as CSV"),
                           files={"t.xlsx": _zip("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml")}),
    "zipped_csv_still_zip": Case(trace_stats(trace="{tmp}/t.csv.zip"), names=("t.csv.zip", "zip-compressed", "unzip"),
                                 files={"t.csv.zip": _zip("t.csv")}),
    "parquet_file": Case(trace_stats("--workload-format", "azure", trace="{tmp}/t.parquet"),
                         names=("t.parquet", "an Apache Parquet file", "CSV or JSON Lines"),
                         files={"t.parquet": b"PAR1\x15\x04\x15" + bytes(64) + b"PAR1"}),
    "latin1_with_explicit_format": Case(trace_stats("--workload-format", "azure"), names=("t.csv", "UTF-8"),
                                        files={"t.csv": (AZURE_HEADER + "2023-11-16 18:15:10,100,10 caf\xe9\n").encode("latin-1")}),
    "latin1_after_the_sniffed_part": Case(trace_stats(), names=("t.csv", "UTF-8"),
                                          files={"t.csv": (AZURE_OK * 9000 + "2023-11-16 18:15:10,1\xe9,10\n").encode("latin-1")}),
    "empty_file": Case(trace_stats(), names=("t.csv", "empty"), files={"t.csv": ""}),
    # blank lines only (a BOM too): said so, not "unrecognised trace header ''" or "missing column(s)...; header: ''"
    "blank_lines_only_sniffed": Case(trace_stats(), names=("t.csv", "only blank lines"), files={"t.csv": "\n \r\n\t\n"}),
    "bom_and_blank_line_explicit_format": Case(trace_stats("--workload-format", "azure"), names=("t.csv", "only blank lines"),
                                               files={"t.csv": "\ufeff\n\n"}),
    "header_only": Case(trace_stats(), names=("no valid requests", "t.csv", "0 rows"), files={"t.csv": AZURE_HEADER}),
    # a path's control characters escaped: a newline in the file's name split the message in two lines, an escape
    # sequence reached the terminal (hfuzz8)
    "header_only_named_with_a_newline": Case(trace_stats(trace="{tmp}/nl\nname.csv"),
                                             names=("{tmp}/nl\\nname.csv: 0 rows read", "no valid requests"),
                                             files={"nl\nname.csv": AZURE_HEADER}),
    "named_with_an_escape_sequence": Case(trace_stats(trace="{tmp}/e\x1b[2Jx.csv"),
                                          names=("{tmp}/e\\x1b[2Jx.csv", "no valid requests"),
                                          files={"e\x1b[2Jx.csv": AZURE_HEADER}),
    "every_row_bad": Case(trace_stats(), names=("no valid requests", "t.csv", "non_numeric: 2"),
                          files={"t.csv": AZURE_HEADER + "2023-11-16 18:15:10,x,1\n2023-11-16 18:15:11,y,1\n"}),
    # a file of another format (its header or first record sniffed) says which, and the way out
    "azure_read_as_mooncake": Case(trace_stats("--workload-format", "mooncake"), names=(
        "t.csv", "not a trace in mooncake format",
        "; the file looks like azure: give format auto (detects it) or azure"),
        files={"t.csv": AZURE_OK}),
    "mooncake_read_as_azure": Case(trace_stats("--workload-format", "azure", trace="{tmp}/m.jsonl"), names=(
        "m.jsonl", "not a trace in azure format", "TIMESTAMP", "; the file looks like mooncake: give format auto",
        "or mooncake"), files={"m.jsonl": MOONCAKE_OK}),
    "mooncake_read_as_llmservingsim": Case(trace_stats("--workload-format", "llmservingsim", trace="{tmp}/m.jsonl"),
                                           names=("m.jsonl", "no record has key(s) input_toks", "looks like mooncake"),
                                           files={"m.jsonl": MOONCAKE_OK}),
    "mooncake_key_absent": Case(trace_stats("--workload-format", "mooncake", trace="{tmp}/m.jsonl"),
                                names=("m.jsonl", "hash_ids"), files={"m.jsonl": '{"timestamp": 0, "input_length": 5, "output_length": 1}\n'}),
    # a JSON array where JSON Lines are expected: said so, with the file and line, not a generic "not a JSON object"
    "json_array_file_sniffed": Case(trace_stats(trace="{tmp}/m.json"), names=("m.json", "line 1 is a JSON array", "JSON Lines"),
                                    files={"m.json": "[" + MOONCAKE_OK.replace("\n", ",", 2).rstrip() + "]\n"}),
    "json_array_over_lines_sniffed": Case(trace_stats(trace="{tmp}/m.json"),
                                          names=("m.json", "line 1 is part of a JSON array", "JSON Lines"),
                                          files={"m.json": "[\n" + MOONCAKE_OK.replace("}\n", "},\n", 2) + "]\n"}),
    "json_array_file_explicit": Case(trace_stats("--workload-format", "mooncake", trace="{tmp}/m.json"),
                                     names=("m.json", "JSON Lines", "line 1 is a JSON array"),
                                     files={"m.json": "[" + MOONCAKE_OK.replace("\n", ",", 2).rstrip() + "]\n"}),
    "strict_json_array_line": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                   names=("m.jsonl", "record 2 (line 2)", "a JSON array", "one JSON object per line"),
                                   files={"m.jsonl": mooncake(0, 600, 5, [1, 2]) + "[0, 600, 5, [1, 2]]\n"}),
    "strict_json_number_line": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                    names=("m.jsonl", "record 3 (line 4)", "a JSON number"),
                                    files={"m.jsonl": MOONCAKE_OK[:MOONCAKE_OK.index("\n", MOONCAKE_OK.index("\n") + 1) + 1]
                                           + "\n17\n"}),
    "json_array_line_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                                    files={"m.jsonl": MOONCAKE_OK + "[0, 600, 5, [1, 2]]\n"}),
    # LLMServingSim's agentic sessions (calls released as earlier ones complete): refused by line, not read as one
    # row missing input_toks whose calls were lost (a file of sessions only was an "unrecognised trace header")
    "llmservingsim_agentic_sessions_sniffed": Case(trace_stats(trace="{tmp}/a.jsonl"),
                                                   names=("a.jsonl", "line 1 is an LLMServingSim agentic session",
                                                          "sub_requests"),
                                                   files={"a.jsonl": LSS_SESSION + LSS_SESSION}),
    "llmservingsim_agentic_among_flat": Case(trace_stats("--workload-format", "llmservingsim", trace="{tmp}/a.jsonl"),
                                             names=("a.jsonl", "line 3 is an LLMServingSim agentic session"),
                                             files={"a.jsonl": LSS_FLAT + "\n" + LSS_SESSION + LSS_FLAT}),
    "unrecognised_header": Case(trace_stats(), names=("t.csv", "unrecognised"), files={"t.csv": "a,b,c\n1,2,3\n"}),
    "huge_header_line": Case(trace_stats(), names=("t.csv", "MiB"), files={"t.csv": "x" * (17 << 20) + "\n1,2,3\n"}),
    "long_header_explicit_format": Case(trace_stats("--workload-format", "azure"), names=("t.csv", "ContextTokens"),
                                        files={"t.csv": "TIMESTAMP," + "y" * 2_000_000 + "\n1,2\n"}),
    "strict_trailing_comma_json": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                       names=("m.jsonl", "record 2", "line 3", "malformed"),
                                       files={"m.jsonl": mooncake(0, 600, 5, [1, 2]) + "\n" + mooncake(10, 600, 5, [1, 2], tail=",")}),
    "strict_line_after_blank_lines": Case(trace_stats("--strict-workload-validation"), names=("t.csv", "row 3", "line 6"),
                                          files={"t.csv": AZURE_HEADER + "2023-11-16 18:15:10,100,10\n"
                                                 "2023-11-16 18:15:11,200,20\n\n  \n2023-11-16 18:15:40,-5,1\n"}),
    "strict_line_after_quoted_newline": Case(trace_stats("--strict-workload-validation"), names=("t.csv", "row 3", "line 5"),
                                             files={"t.csv": "Timestamp,Model,Request tokens,Response tokens,Total tokens,"
                                                    "Log Type\n0,ChatGPT,100,10,110,Conversation log\n"
                                                    '1,"Chat\nGPT",100,10,110,Conversation log\n'
                                                    "2,ChatGPT,-100,10,110,Conversation log\n"}),
    "no_requests_in_range": Case(trace_stats("--set", "workload.range_end=0.1", trace="{azure}", ) + ["--workload-limit", "3"],
                                 names=("no valid requests", "3 rows read, 3 dropped by workload.range_end=0.1")),
    # the range took one request and KV capacity the rest: the line accounts for all three rows (it left the range out)
    "range_and_kv_leave_no_request": Case(["--workload-trace", "{tmp}/t.csv", "--set", "workload.range_start=0.34",
                                           "--set", "serving.num_gpu_blocks=2", "--quiet", "--no-plot"],
                                          names=("no valid requests", "3 rows read, 1 dropped by workload.range_start=0.34, "
                                                 "2 skipped (exceeds_kv_capacity: 2)"), files={"t.csv": AZURE_OK}),
    "all_requests_exceed_kv": Case(["--pd", "--workload-trace", "{tmp}/t.csv", "--set", "serving.num_gpu_blocks=2", "--quiet"],
                                   names=("no valid requests", "exceeds_kv_capacity: 3"), files={"t.csv": AZURE_OK}),
    # a synthetic workload names no file: the line names the setting the KV capacity and the length limit come from
    "synthetic_requests_exceed_kv": Case(["--set", "workload.synthetic.kind=system-prompt", "--set",
                                          "serving.num_gpu_blocks=4", "--workload-limit", "5", "--quiet"],
                                         names=("no valid requests", "synthetic", "serving.num_gpu_blocks=4",
                                                "exceeds_kv_capacity: 5")),
    "requests_exceed_max_model_len": Case(["--pd", "--workload-trace", "{tmp}/t.csv", "--set", "serving.max_model_len=100",
                                           "--quiet"], names=("no valid requests", "serving.max_model_len 100",
                                                              "exceeds_max_model_len: 3"), files={"t.csv": AZURE_OK}),
    "strict_request_exceeds_kv": Case(["--pd", "--workload-trace", "{tmp}/t.csv", "--set", "serving.num_gpu_blocks=19",
                                       "--strict-workload-validation"], names=("t.csv", "300 prompt", "exceeds kv capacity"),
                                      files={"t.csv": AZURE_OK}),
    # requests that all arrive at once have no rate to scale: --max-rate doubled the scale 24 times (25 runs, each
    # alike) and answered a scale of 16,777,216 with no rate (exit 0)
    "max_rate_requests_at_once": Case(["--max-rate", "--set", "slo.ttft_s=1", "--quiet", "--no-plot",
                                       "--workload-trace", "{tmp}/m.jsonl"],
                                      names=("--max-rate", "m.jsonl", "3 requests that all arrive at once"),
                                      files={"m.jsonl": mooncake(5, 600, 5, [1, 2]) * 3}),
    # ---- counted skips (exit 0): the reason and its count are in the report
    "trailing_comma_json_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                                        files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1, 2], tail=",")}),
    # a key read twice in one record (orjson would keep the last value, silently): a malformed row, said which key;
    # spelled with an escape too; a key no format reads may repeat
    "json_repeated_key_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                                      files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1, 2], tail=', "input_length": 50')}),
    "json_repeated_escaped_key_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                                              files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1], tail=', "input\\u005flength": 5')}),
    "json_repeated_unread_key_used": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={},
                                          files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1, 2], tail=', "note": 1, "note": 2')}),
    # a record nested deeper than Python's recursion limit, with an escape (the reference reader, which asks the
    # standard library's parser whether a key repeats): its RecursionError was an internal error (exit 1); orjson
    # reads the record, whose unread key may nest as deep as it likes (the fast reader used it already)
    "json_nested_past_the_recursion_limit_used": Case(
        trace_stats(trace="{tmp}/m.jsonl"), skips={},
        files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1, 2], tail=', "note": "\\u0041", "x": '
                                                 + "[" * 100_000 + "]" * 100_000)}),
    "strict_json_repeated_key": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                     names=("m.jsonl", "record 4 (line 4)", "naming 'input_length' twice"),
                                     files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1], tail=', "input_length": 50')}),
    "json_nan_counted": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                             files={"m.jsonl": MOONCAKE_OK + '{"timestamp": NaN, "input_length": 5, "output_length": 1, "hash_ids": [1]}\n'}),
    # (a hash id from 2^63 to 2^64 - 1 is an unsigned hash's, read: tests/test_trace_variants.py)
    "hash_id_beyond_uint64": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"id_out_of_range": 1},
                                  files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [1, 2**70])}),
    "trillion_tokens": Case(trace_stats(), skips={"too_many_tokens": 1},
                            files={"t.csv": AZURE_OK + "2023-11-16 18:16:00,1000000000000,10\n"}),
    # an infinite count was charged as nan_value (hfuzz9's leftovers): its own reason, NaN's kept apart
    "tokens_beyond_float": Case(trace_stats(), skips={"infinite_value": 1},
                                files={"t.csv": AZURE_OK + "2023-11-16 18:16:00,1e400,10\n"}),
    "tokens_infinite_and_nan": Case(trace_stats(), skips={"infinite_value": 2, "nan_value": 1},
                                    files={"t.csv": AZURE_OK + "2023-11-16 18:16:00,inf,10\n"
                                                               "2023-11-16 18:16:01,10,-Infinity\n"
                                                               "2023-11-16 18:16:02,NaN,10\n"}),
    "tokens_infinite_strict": Case(trace_stats("--strict-workload-validation"),
                                   names=("t.csv", "row 4 (line 5)", "infinite value"),
                                   files={"t.csv": AZURE_OK + "2023-11-16 18:16:00,inf,10\n"}),
    "trillion_tokens_mooncake": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"hash_ids_length_mismatch": 1},
                                     files={"m.jsonl": MOONCAKE_OK + mooncake(30, 10**12, 5, [1, 2])}),
    "max_request_tokens_setting": Case(trace_stats("--set", "workload.max_request_tokens=250"), skips={"too_many_tokens": 1},
                                       files={"t.csv": AZURE_OK}),
    "prompt_exceeds_kv_capacity_pd": Case(["--pd", "--workload-trace", "{tmp}/t.csv", "--set", "serving.num_gpu_blocks=19",
                                           "--quiet"], skips={"exceeds_kv_capacity": 1}, files={"t.csv": AZURE_OK}),
    "output_exceeds_kv_capacity_single": Case(["--workload-trace", "{tmp}/t.csv", "--set", "serving.num_gpu_blocks=8",
                                               "--set", "serving.num_instances=1", "--quiet"],
                                              skips={"exceeds_kv_capacity": 1},
                                              files={"t.csv": AZURE_HEADER + "2023-11-16 18:15:10,100,10\n"
                                                     "2023-11-16 18:15:11,100,40\n"}),
    "exceeds_max_model_len": Case(["--workload-trace", "{tmp}/t.csv", "--set", "serving.max_model_len=150", "--quiet"],
                                  skips={"exceeds_max_model_len": 2}, files={"t.csv": AZURE_OK}),
    # ---- published variants and their look-alikes (tests/samples/README.md)
    "gzip_trace_named": Case(trace_stats(trace="{tmp}/t.csv.gz"), names=("t.csv.gz", "gzip-compressed", "gunzip"),
                             files={"t.csv.gz": gzip.compress(AZURE_OK.encode(), mtime=0)}),
    "duplicate_column_read": Case(trace_stats(), names=("t.csv", "'ContextTokens' 2 times"),
                                  files={"t.csv": "TIMESTAMP,ContextTokens,GeneratedTokens,ContextTokens\n"
                                         "2023-11-16 18:15:10,100,10,7\n"}),
    "json_string_numbers": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"non_numeric": 2},
                                files={"m.jsonl": MOONCAKE_OK + mooncake(30, '"600"', 5, [1, 2])
                                       + mooncake('"40"', 600, 5, [1, 2])}),
    "json_string_number_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/m.jsonl"),
                                      names=("m.jsonl", "record 4", "'input_length'", "non numeric"),
                                      files={"m.jsonl": MOONCAKE_OK + mooncake(30, '"600"', 5, [1, 2])}),
    # a chat its own parent: no record comes before its parent, yet its chain never reaches a first turn
    "bailian_parent_chain_loops": Case(trace_stats(trace="{tmp}/b.jsonl"), names=("b.jsonl", "parent_chat_id", "loop"),
                                       files={"b.jsonl": bailian(0, -1, 0.0) + bailian(1, 1, 1.5)}),
    # chat 5's chain runs into a loop of chat ids repeated (a chat follows its id's first record, the first of chat
    # 0 here names chat 1 its parent, chat 1 names 0), each with a record of its parent's id before it: a chat in the
    # loop is named, not 5
    "bailian_parent_chain_runs_into_a_loop": Case(trace_stats(trace="{tmp}/b.jsonl"),
                                                  names=("b.jsonl", "parent_chat_id", "chat 0 is its own ancestor"),
                                                  files={"b.jsonl": bailian(0, 1, 5.0) + bailian(1, 0, 1.0)
                                                         + bailian(0, -1, 0.0) + bailian(5, 0, 6.0)}),
    # a turn before the chat it continues (Bailian's README: parent_chat_id is the chat it follows) is malformed:
    # chat 2 (1 s) names chat 1 (2 s); chat 3 follows chat 2, and chat 4's parent is before the trace (kept)
    "bailian_child_before_parent": Case(trace_stats(trace="{tmp}/b.jsonl"), skips={"child_before_parent": 1},
                                        files={"b.jsonl": bailian(0, -1, 0.0) + bailian(2, 1, 1.0) + bailian(1, 0, 2.0)
                                               + bailian(3, 2, 3.0) + bailian(4, 99, 4.0)}),
    # each of a loop 0 <-> 1 names the other: the first to arrive comes before its parent
    "bailian_loop_of_two_chats": Case(trace_stats(trace="{tmp}/b.jsonl"), skips={"child_before_parent": 1},
                                      files={"b.jsonl": bailian(0, 1, 0.0) + bailian(1, 0, 1.5)}),
    "bailian_child_before_parent_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/b.jsonl"),
                                               names=("b.jsonl", "chat_id 2 (timestamp 1 s)", "chat_id 1 (timestamp 2 s)",
                                                      "child before parent"),
                                               files={"b.jsonl": bailian(0, -1, 0.0) + bailian(2, 1, 1.0)
                                                      + bailian(1, 0, 2.0)}),
    # epoch milliseconds: each time as written (with :g both read 1.7e+12 ms, the child's and its parent's alike)
    "bailian_child_before_parent_strict_epoch_ms": Case(
        trace_stats("--strict-workload-validation", "--set", "workload.time_unit=ms", trace="{tmp}/b.jsonl"),
        names=("chat_id 2 (timestamp 1700000001237 ms)", "chat_id 1 (timestamp 1700000002500 ms)"),
        files={"b.jsonl": bailian(0, -1, 1_700_000_000_000) + bailian(2, 1, 1_700_000_001_237)
               + bailian(1, 0, 1_700_000_002_500)}),
    "bailian_parent_not_a_number": Case(trace_stats(trace="{tmp}/b.jsonl"), skips={"negative_value": 1, "non_numeric": 1},
                                        files={"b.jsonl": bailian(0, -1, 0.0) + bailian(1, -2, 1.5)
                                               + bailian(2, '"0"', 2.0) + bailian(3, 0, 3.0)}),
    "bailian_chat_id_beyond_exact": Case(trace_stats(trace="{tmp}/b.jsonl"), skips={"id_out_of_range": 1},
                                         files={"b.jsonl": bailian(0, -1, 0.0) + bailian(1, 0, 1.5)
                                                + bailian(2**60, 0, 2.0)}),
    # 2^53 + 1 reads as 2^53 (float64): the two were one chat, and the third record's parent ambiguous
    "bailian_chat_id_rounded_to_2_pow_53": Case(trace_stats(trace="{tmp}/b.jsonl"), skips={"id_out_of_range": 3},
                                                files={"b.jsonl": bailian(0, -1, 0.0) + bailian(2**53, -1, 1.0)
                                                       + bailian(2**53 + 1, -1, 1.5) + bailian(7, 2**53 + 1, 2.0)}),
    "hash_ids_block_size_ambiguous": Case(trace_stats(trace="{tmp}/m.jsonl"), names=("m.jsonl", "1024 or 2048 or more tokens"),
                                          files={"m.jsonl": mooncake(0, 600, 5, [1]) + mooncake(9, 1000, 5, [2])}),
    # 1e17 ms: float64 steps there are 16 ms, so arrivals 3 ms apart were rounded together (makespan off); written as
    # decimals (integers are read exactly: test_loader_validation's epoch-nanosecond tests)
    "timestamps_beyond_millisecond_precision": Case(trace_stats(trace="{tmp}/m.jsonl"),
                                                    names=("m.jsonl", "1e+17 ms", "rounded to 0.016 s"),
                                                    files={"m.jsonl": mooncake("100000000000000000.0", 600, 5, [1, 2])
                                                           + mooncake("100000000000000003.0", 600, 5, [1, 3])}),
    "bom_is_not_a_bad_row": Case(trace_stats(), skips={}, files={"t.csv": "\ufeff" + AZURE_OK}),
    "workload_cache_damaged_is_rebuilt": Case(trace_stats("--workload-cache", "{tmp}/c.npz"), skips={},
                                              files={"t.csv": AZURE_OK, "c.npz": b"kvsim-workload-cache\n damaged"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_trace_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_file_of_no_known_format_or_of_the_format_given_gets_no_other_format_hint(tmp_path):
    from trace.sniff import other_format_hint

    (tmp_path / "m.jsonl").write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\n')  # no hash_ids
    (tmp_path / "t.csv").write_text(AZURE_OK)
    assert other_format_hint(tmp_path / "m.jsonl", "mooncake") == ""  # (sniffing recognises nothing either)
    assert other_format_hint(tmp_path / "t.csv", "azure") == ""
    assert other_format_hint(tmp_path / "t.csv", "burstgpt").startswith("; the file looks like azure:")


def test_an_errors_control_characters_are_escaped_and_nothing_else():
    """``one_line``: the C0/C1 controls and the Unicode line separators as Python escapes them; printable text,
    non-ASCII and a no-break space included, as it was (a path in French or Chinese is printed as named)."""
    from sim.errors import one_line

    assert one_line("t/a\nb\r\tc\x1b[0m\x85\u2028.csv") == "t/a\\nb\\r\\tc\\x1b[0m\\x85\\u2028.csv"
    assert one_line("données/追踪 v\u00a01.csv: row 2") == "données/追踪 v\u00a01.csv: row 2"


def test_a_paths_control_characters_are_escaped_on_standard_output_too(run_cli, tmp_path):
    """The summary's trace line and a sweep's table name the trace as errors do (one line, ``one_line``): a newline in
    the file's name split the line in two, an escape sequence in it reached the terminal (hfuzz9; errors: hfuzz8)."""
    rows = AZURE_HEADER + "".join(f"2023-11-16 18:15:{10 + i},300,10\n" for i in range(3))
    for name in ("nl\nname.csv", "e\x1b[2Jx.csv"):
        (tmp_path / name).write_text(rows)
    status, out, err = run_cli("--cache-only", "--workload-trace", tmp_path / "nl\nname.csv", "--no-plot")
    assert status == 0, err
    assert out.splitlines()[0].startswith(f"trace {tmp_path}/nl\\nname.csv (azure): 3 requests used"), out
    spec = tmp_path / "s.yaml"
    spec.write_text('mode: cache-only\naxes: {workload.trace: ["nl\\nname.csv", "e\\e[2Jx.csv"]}\n')
    status, out, err = run_cli("--sweep", spec, "--jobs", "1", "--report-json", tmp_path / "s.json", "--no-plot")
    assert status == 0, err
    assert "\x1b" not in out and "nl\\nname " in out and "e\\x1b[2Jx " in out, out
    assert [line.split()[0] for line in out.splitlines()[:3]] == ["workload.trace", "nl\\nname", "e\\x1b[2Jx"], out


def test_a_sweeps_and_a_plans_own_lines_and_notes_name_paths_in_one_line(run_cli, tmp_path, monkeypatch):
    """The lines a sweep and a plan print themselves, 'sweep PATH: N points ...' and 'plan PATH: N candidates ...' on
    standard error, their 'report: PATH' and the plan's table, and kvsim's logged notes ('kvsim: note: --resume: no
    journal at PATH'), printed paths as written: a newline in one split the line, an escape sequence reached the
    terminal (hfuzz9's leftovers; errors and the run summary: hfuzz8, hfuzz9)."""
    import logging

    import yaml

    monkeypatch.setattr(logging.root, "handlers", [])  # (as in a program: no handler but kvsim's own; pytest's gone)
    rows = AZURE_HEADER + "".join(f"2023-11-16 18:15:{10 + i},300,10\n" for i in range(3))
    (tmp_path / "t.csv").write_text(rows)
    spec = tmp_path / "s\ne\x1b[2J.yaml"
    spec.write_text('mode: cache-only\nworkload: {trace: t.csv}\naxes: {cache.policy: [lru, fifo]}\n')
    status, out, err = run_cli("--sweep", spec, "--jobs", "1", "--report-json", tmp_path / "r\nx.json", "--no-plot",
                               "--resume")
    assert status == 0, err
    assert err.splitlines() == [
        f"kvsim: note: --resume: no journal at {tmp_path}/r\\nx.journal.jsonl, so every point runs",
        f"sweep {tmp_path}/s\\ne\\x1b[2J.yaml: 2 points (cache-only); running 2 on local with 1 job; journal "
        f"{tmp_path}/r\\nx.journal.jsonl"], err
    assert out.splitlines()[-1] == f"report: {tmp_path}/r\\nx.json" and "\x1b" not in out, out
    plan = tmp_path / "p\ne\x1b[2J.yaml"
    plan.write_text(yaml.safe_dump({"workload": {"trace": "t.csv"}, "target": {"hit_ratio": 0.01},
                                    "search": {"gpu": ["h100-sxm"]}}))
    status, out, err = run_cli("--plan", plan, "--jobs", "1", "--report-json", tmp_path / "q\ny.json", "--no-plot")
    assert status == 0, err
    assert err.splitlines()[0].startswith(f"plan {tmp_path}/p\\ne\\x1b[2J.yaml: 1 candidates, "), err
    assert out.splitlines()[-1] == f"report: {tmp_path}/q\\ny.json" and "\x1b" not in out + err, out


def test_a_note_is_one_line_where_kvsim_writes_it_and_left_to_a_handler_that_takes_it(monkeypatch, capsys, caplog):
    """kvsim's notes go through the "kvsim" logger; with no handler of the program's own, Python's last resort wrote
    them as logged. Its handler (``sim.errors.OneLineNotes``) writes them where that would, each one line; once a
    handler of the program's takes them (pytest's here), it writes nothing: no note twice."""
    import logging

    from sim.errors import notes_one_line

    caplog.set_level(logging.NOTSET, logger="kvsim")  # (an in-process --quiet run before left it at ERROR)
    notes_one_line()
    notes_one_line()  # (once a process: a second command in it adds none)
    logger = logging.getLogger("kvsim.trace")
    with monkeypatch.context() as patch:
        patch.setattr(logging.root, "handlers", [])
        logger.warning("kvsim: note: %s: read", "a\nb\x1b[0m.csv")
        logger.info("kvsim: info")  # (below WARNING: as the last resort, not written)
    assert capsys.readouterr().err == "kvsim: note: a\\nb\\x1b[0m.csv: read\n"
    logger.warning("kvsim: note: taken by pytest's handler")
    assert capsys.readouterr().err == ""
