"""Bad input, round 6 (helper hleft4): what round 5 (tests/test_bad_inputs_round5.py) left. A time unit a sweep's
trace cannot take, refused by every point at run time rather than before the first; rows of one trace each valid but
inconsistent with the others (datetimes with and without a zone offset) or with themselves (a BurstGPT total that
is not its counts' sum); Splitwise rows that splitwise-sim would not replay as one LLM sequence. Each case ran with a silently wrong input (exit 0) or failed after the work started; each is
now one line and exit 2 before the work starts, or a counted skip.
"""

from __future__ import annotations

import json

import pytest

from tests.bad_input_helpers import AZURE_HEADER, AZURE_OK, Case, check_bad_input, trace_stats

BURSTGPT_OK = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
               "0,GPT-4,100,10,110,Conversation log\n1000,GPT-4,200,20,220,Conversation log\n")
SPLITWISE_HEADER = "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
SWEEP = "mode: cache-only\nworkload: {trace: t.csv}\naxes: {cache.policy: [lru, arc]}\n"


def azure(*stamps: str) -> str:
    return AZURE_HEADER + "".join(f"{stamp},{100 * (i + 1)},10\n" for i, stamp in enumerate(stamps))


CASES: dict[str, Case] = {
    # datetimes fix their own unit: a single run refused --workload-time-unit up front, but a sweep ran every point
    # into it ("4 of 4 sweep points failed", exit 2 after the work)
    "sweep_time_unit_flag_over_datetimes": Case(["--sweep", "{tmp}/s.yaml", "--workload-time-unit", "ms"],
                                                names=("s.yaml", "--workload-time-unit", "azure timestamps are datetimes"),
                                                files={"t.csv": AZURE_OK, "s.yaml": SWEEP}),
    "sweep_spec_time_unit_over_datetimes": Case(["--sweep", "{tmp}/s.yaml"],
                                                names=("s.yaml", "fixed key 'workload.time_unit'", "datetimes"),
                                                files={"t.csv": AZURE_OK, "s.yaml": SWEEP.replace(
                                                    "t.csv}", "t.csv, time_unit: ms}")}),
    # a trace axis over formats: the BurstGPT point reads ms, the Azure one cannot (it failed after the other ran)
    "sweep_trace_axis_of_mixed_formats": Case(["--sweep", "{tmp}/s.yaml", "--workload-time-unit", "ms"],
                                              names=("s.yaml", "point 't'", "t.csv", "azure timestamps are datetimes"),
                                              files={"t.csv": AZURE_OK, "b.csv": BURSTGPT_OK,
                                                     "s.yaml": "mode: cache-only\naxes: {workload.trace: [b.csv, t.csv]}\n"}),
    # the single run's message named the key alone, not the flag it was given by
    "time_unit_flag_over_datetimes": Case(trace_stats("--workload-time-unit", "ms"),
                                          names=("--workload-time-unit (workload.time_unit=ms)", "t.csv", "datetimes"),
                                          files={"t.csv": AZURE_OK}),
    # a time with a zone offset beside one without: the one without was read as UTC (exit 0, no skip), hours off
    # against the others if it was a local time
    "datetimes_with_and_without_a_zone": Case(trace_stats(trace="{tmp}/t.csv"), skips={"time_zone_mismatch": 2},
                                              files={"t.csv": azure("2023-11-16T18:15:10Z", "2023-11-16 18:15:11",
                                                                    "2023-11-16 18:15:12+01:00",
                                                                    "2023-11-16 18:15:13.5-05:00",
                                                                    "2023-11-16 18:15:14.0000000")}),
    "datetimes_without_then_with_a_zone_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/t.csv"),
                                                      names=("t.csv", "row 3 (line 4)", "'TIMESTAMP'",
                                                             "time zone mismatch", "states a zone offset"),
                                                      files={"t.csv": azure("2023-11-16 18:15:10", "2023-11-16 18:15:11",
                                                                            "2023-11-16T18:15:12+00:00")}),
    # BurstGPT's Total tokens is Request tokens + Response tokens (HPMLL/BurstGPT README, Schema): a row that says
    # otherwise has a wrong count and was used as written (exit 0, no skip); a row missing its Model field shifted
    # the counts one column left (Request 18, Response 490, Total "Conversation log") and was used so
    "burstgpt_total_is_not_the_sum": Case(trace_stats(trace="{tmp}/b.csv"), skips={"total_tokens_mismatch": 1},
                                          files={"b.csv": BURSTGPT_OK + "2,GPT-4,300,30,999,Conversation log\n"}),
    "burstgpt_row_missing_a_field": Case(trace_stats(trace="{tmp}/b.csv"), skips={"non_numeric": 1},
                                         files={"b.csv": BURSTGPT_OK + "2,472,18,490,Conversation log\n"}),
    "burstgpt_total_is_not_the_sum_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/b.csv"),
                                                 names=("b.csv", "row 3 (line 4)", "'Total tokens'",
                                                        "total tokens mismatch"),
                                                 files={"b.csv": BURSTGPT_OK + "2,GPT-4,300,30,999,Conversation log\n"}),
    # splitwise-sim replays request_type 2 alone and sizes a request's KV cache for batch_size sequences
    # (Mutinifni/splitwise-sim request.py): both columns were ignored, each row replayed as one LLM sequence
    "splitwise_batch_size_not_one": Case(trace_stats(trace="{tmp}/s.csv"), skips={"batch_size_not_one": 1},
                                         files={"s.csv": SPLITWISE_HEADER + "0,2,0,1,4,4096,32\n1,2,0,3,1,2048,8\n"}),
    "splitwise_request_type_not_llm": Case(trace_stats(trace="{tmp}/s.csv"), skips={"unsupported_request_type": 1},
                                           files={"s.csv": SPLITWISE_HEADER + "0,1,0,1,1,4096,32\n1,2,0,3,1,2048,8\n"}),
    "splitwise_batch_size_not_one_strict": Case(trace_stats("--strict-workload-validation", trace="{tmp}/s.csv"),
                                                names=("s.csv", "row 1 (line 2)", "'batch_size'", "batch size not one"),
                                                files={"s.csv": SPLITWISE_HEADER + "0,2,0,1,4,4096,32\n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_refused_sweep_point_runs_no_point(run_cli, tmp_path):
    """The Azure point is refused before the BurstGPT point runs: no journal, no report."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    (tmp_path / "b.csv").write_text(BURSTGPT_OK)
    (tmp_path / "s.yaml").write_text("mode: cache-only\naxes: {workload.trace: [b.csv, t.csv]}\n")
    status, _, err = run_cli("--sweep", tmp_path / "s.yaml", "--workload-time-unit", "ms", "--quiet", "--no-plot",
                             "--report-json", tmp_path / "r.json")
    assert status == 2, err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.journal.jsonl").exists()


def test_a_time_unit_axis_over_a_numeric_trace_is_taken(run_cli, tmp_path):
    """Where the format reads a unit, a sweep over units runs (the check refuses only a format that fixes its own; a
    serving mode, whose clock reads the unit: the cache-only replay has none and refuses it)."""
    (tmp_path / "b.csv").write_text(BURSTGPT_OK)
    (tmp_path / "s.yaml").write_text("mode: single\nworkload: {trace: b.csv}\naxes: {workload.time_unit: [s, ms]}\n")
    status, _, err = run_cli("--sweep", tmp_path / "s.yaml", "--quiet", "--no-plot", "--report-json", tmp_path / "r.json")
    assert status == 0, err
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [(run["name"], run.get("error")) for run in runs] == [("s", None), ("ms", None)]


def test_a_zone_mix_first_seen_in_a_later_chunk_is_counted(tmp_path, chunk_rows):
    """The first valid row's kind holds across the chunked reader's chunks (each chunk alone is all of one kind)."""
    from tests.loader_helpers import load

    path = tmp_path / "t.csv"
    path.write_text(azure("2023-11-16 18:15:10+00:00", "2023-11-16 18:15:11+00:00", "2023-11-16 18:15:12+00:00",
                          "2023-11-16 18:15:13", "2023-11-16 18:15:14"))
    trace = load(path)
    assert trace.provenance.skip_reasons == {"time_zone_mismatch": 2}
    assert trace.arrival_s.tolist() == [0.0, 1.0, 2.0]


def test_a_zone_mix_after_a_bad_first_row_takes_the_first_valid_row(tmp_path, chunk_rows):
    from tests.loader_helpers import load

    path = tmp_path / "t.csv"
    path.write_text(azure("not a time", "2023-11-16 18:15:11", "2023-11-16 18:15:12Z", "2023-11-16 18:15:13"))
    assert load(path).provenance.skip_reasons == {"bad_timestamp": 1, "time_zone_mismatch": 1}



def test_a_blank_burstgpt_total_claims_nothing(tmp_path):
    """A total left blank (or a row ending before it) is no count to check: the row is used."""
    from tests.loader_helpers import load

    path = tmp_path / "b.csv"
    path.write_text(BURSTGPT_OK + "1001,GPT-4,300,30,,Conversation log\n1002,GPT-4,400,40\n")
    trace = load(path)
    assert (trace.provenance.skip_reasons, trace.input_tokens.tolist()) == ({}, [100, 200, 300, 400])


@pytest.mark.parametrize("text", [
    "TIMESTAMP,ContextTokens,GeneratedTokens,Region\n2023-11-16 18:15:10,100,10,eu\n2023-11-16 18:15:11,200,20,us\n",
    "Region,Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Elapsed time\n"
    "eu,0,GPT-4,100,10,110,Conversation log,3\nus,1,GPT-4,200,20,220,API log,4\n",
    "arrival_timestamp,prompt_size,token_size,note\n0,100,10,a\n1,200,20,b\n",
    SPLITWISE_HEADER + "0,2,0,0,1,100,10\n1,2,7,1,,200,20\n",  # (a blank batch size is splitwise-sim's default, 1)
], ids=["azure", "burstgpt", "splitwise-minimal", "splitwise-blank-batch"])
def test_columns_kvsim_does_not_read_are_accepted(tmp_path, text):
    """A column a format does not name (a region, a label) is common in exported traces: it is ignored, every row used."""
    from tests.loader_helpers import load

    path = tmp_path / "t.csv"
    path.write_text(text)
    trace = load(path)
    assert (trace.provenance.skip_reasons, trace.input_tokens.tolist()) == ({}, [100, 200])
