"""Metamorphic relations of trace files: one workload written in every token-count format, and the row order of a
file, must give the same runs (tests/test_metamorphic.py holds the relations between runs of one trace)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BUNDLED_AZURE
from metamorphic_helpers import MOONCAKE
from metamorphic_helpers import checked_run as _run
from metamorphic_helpers import metrics_of as _metrics

# ----------------------------------------------------------------------------- one workload, every format

FORMAT_ROWS = [(0.25 * i * (1 + i % 3), 100 + 97 * i % 900, 1 + 37 * i % 60) for i in range(30)]  # (s, prompt, output)


def _write_formats(tmp_path) -> dict[str, str]:
    """The same 30 requests (arrival seconds, prompt and output tokens; no session, no block ids) in each
    token-count format, each in its publisher's time unit (README Inputs)."""
    import datetime as dt

    start = dt.datetime(2023, 11, 16, 18, 15, 46, 680590)  # the bundled Azure trace's first time
    files = {"azure": "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
                 f"{(start + dt.timedelta(seconds=t)).strftime('%Y-%m-%d %H:%M:%S.%f')},{n},{o}\n" for t, n, o in FORMAT_ROWS),
             "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + "".join(
                 f"{t},ChatGPT,{n},{o},{n + o},Conversation log\n" for t, n, o in FORMAT_ROWS),
             "splitwise": "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
                          + "".join(f"{i},2,0,{t},1,{n},{o}\n" for i, (t, n, o) in enumerate(FORMAT_ROWS)),
             "llmservingsim": "".join(json.dumps({"input_toks": n, "output_toks": o, "arrival_time_ns": round(t * 1e9)})
                                      + "\n" for t, n, o in FORMAT_ROWS)}
    paths = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.{'jsonl' if name == 'llmservingsim' else 'csv'}"
        path.write_text(text)
        paths[name] = str(path)
    return paths


@pytest.mark.parametrize("mode", [(), ("--pd",)], ids=["single", "pd"])
def test_one_workload_written_in_every_token_count_format_gives_one_run(run_cli, tmp_path, mode):
    """The loaders turn each format into the same request stream (arrival seconds from the first request, prompt and
    output tokens, unique blocks when a trace has no ids: README Block model), so the runs agree exactly. The
    arrival times are multiples of 1/4 s, exact in every unit. Azure's datetimes once became float seconds since
    the epoch (~1.7e9, where one ulp is 238 ns) before the first was subtracted: 18:15:47.430590 - 18:15:46.680590
    came out 0.7500002384 s, not 0.75 s, and every run from an Azure trace was off by up to 0.24 us an arrival."""
    runs = {}
    for name, path in _write_formats(tmp_path).items():
        report, table = _run(run_cli, tmp_path, *mode, "--workload-trace", path, name=f"run-{name}", requests=True)
        assert report["trace"]["format"] == name and report["trace"]["block_ids"] == "unique"
        np.testing.assert_array_equal(table.arrival, sorted(t for t, _, _ in FORMAT_ROWS), err_msg=name)  # arrival order
        runs[name] = json.dumps(report["runs"], sort_keys=True)
    assert len(set(runs.values())) == 1, [name for name in runs if runs[name] != runs["azure"]]


def test_azure_gaps_keep_their_100_ns_digits(run_cli, tmp_path):
    """The bundled Azure 2023 trace writes 7 fraction digits (100 ns): its first two times, 18:15:46.6805900 and
    18:15:50.9951690, are 4.3145790 s apart (by hand), which the arrivals must hold to float precision."""
    _, table = _run(run_cli, tmp_path, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "2", name="two",
                    requests=True)
    assert table.arrival.tolist() == [0.0, 4.314579]


# ----------------------------------------------------------------------------- row order of a trace file


def _timestamp_groups(path, rows: int) -> list[list[str]]:
    import itertools

    lines = path.read_text().splitlines()[:rows]
    return [list(g) for _, g in itertools.groupby(lines, key=lambda line: json.loads(line)["timestamp"])]


def test_shuffling_a_trace_file_keeping_equal_times_in_order_changes_no_run(run_cli, tmp_path, shared_data):
    """The loader puts requests in arrival order, stably (equal timestamps keep file order: trace/loaders.py), and
    nothing may depend on where a row sat in the file (block ids are interned in file order, so no policy, tie
    break or router may depend on the id values). A file whose groups of equal-timestamp rows are shuffled, each
    group kept in order, gives every run of the original, byte for byte."""
    import random

    groups = _timestamp_groups(shared_data / MOONCAKE, 400)
    assert len(groups) > 20
    original, shuffled = tmp_path / "original.jsonl", tmp_path / "shuffled.jsonl"
    original.write_text("".join(line + "\n" for g in groups for line in g))
    random.Random(1).shuffle(groups)
    shuffled.write_text("".join(line + "\n" for g in groups for line in g))
    for mode in (("--cache-only", "--capacity-blocks", "60", "--policy", "lru,fifo,lfu,arc,s3fifo,sieve,belady"),
                 ("--cache-only", "--policy", "belady,lfu", "--set", "serving.num_gpu_blocks=40", "--set",
                  "cache.tiers.dram.capacity_gib=1", "--set", "cache.inclusion=inclusive"),
                 ("--pd",),
                 ("--cluster", "--router", "precise-prefix,prefix-aware", "--set", "cluster.num_racks=2")):
        a, _ = _run(run_cli, tmp_path, *mode, "--workload-trace", original, name="a")
        b, _ = _run(run_cli, tmp_path, *mode, "--workload-trace", shuffled, name="b")
        assert json.dumps(a["runs"], sort_keys=True) == json.dumps(b["runs"], sort_keys=True), mode


def test_reordering_rows_of_equal_time_keeps_the_trace_statistics(run_cli, tmp_path, shared_data):
    """Requests at one timestamp may be served in any order, but what ``--trace-stats`` counts does not depend on
    it: requests, tokens, block accesses, distinct blocks and the infinite-cache hit ratio ((accesses - distinct) /
    accesses, README) are sums and set sizes over the same rows."""
    groups = _timestamp_groups(shared_data / MOONCAKE, 400)
    assert max(len(g) for g in groups) > 1
    forward, backward = tmp_path / "forward.jsonl", tmp_path / "backward.jsonl"
    forward.write_text("".join(line + "\n" for g in groups for line in g))
    backward.write_text("".join(line + "\n" for g in groups for line in reversed(g)))
    a, _ = _run(run_cli, tmp_path, "--trace-stats", "--workload-trace", forward, name="f")
    b, _ = _run(run_cli, tmp_path, "--trace-stats", "--workload-trace", backward, name="b")
    assert json.dumps(_metrics(a), sort_keys=True) == json.dumps(_metrics(b), sort_keys=True)
    m = _metrics(a)
    assert m["infinite_cache_hit_ratio"] == (m["accesses"] - m["unique_blocks"]) / m["accesses"] > 0


def test_a_file_out_of_time_order_routes_each_session_as_the_sorted_file_does(run_cli, tmp_path):
    """Rows earlier in time than a row above them are kept and sorted by arrival (README Inputs), so a file written
    out of order is the sorted file's workload. Session ids were numbered by first appearance in the file, before the
    sort, and session-affinity hashes the number: the same sessions went to other instances (BurstGPT, 120 rows of 12
    sessions at distinct times: TTFT, E2E and per-instance counts moved). They are numbered in arrival order now, so
    every run, the router's included, is the sorted file's. (Equal timestamps keep file order: that is the tie rule.)"""
    import random

    rows = [(round(0.37 * i, 2), 200 + 61 * i % 700, 5 + 13 * i % 40, f"chat-{(7 * i) % 12}") for i in range(120)]
    header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID\n"
    lines = [f"{t},ChatGPT,{n},{o},{n + o},Conversation log,{s}\n" for t, n, o, s in rows]
    shuffled = lines[:]
    random.Random(4).shuffle(shuffled)
    paths = {}
    for name, text in (("sorted", lines), ("shuffled", shuffled)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(header + "".join(text))
    for mode in (("--router", "session-affinity", "--set", "serving.num_instances=3"),
                 ("--cluster", "--router", "session-affinity", "--set", "cluster.num_racks=2")):
        a, _ = _run(run_cli, tmp_path, *mode, "--workload-trace", paths["sorted"], name="a")
        b, _ = _run(run_cli, tmp_path, *mode, "--workload-trace", paths["shuffled"], name="b")
        assert b["trace"]["rows_reordered"] > 0 and a["trace"]["block_ids"] == "synthetic-sessions"
        assert json.dumps(a["runs"], sort_keys=True) == json.dumps(b["runs"], sort_keys=True), mode
