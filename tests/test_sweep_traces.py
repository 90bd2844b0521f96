"""A sweep's trace files, read before any point runs: a value of a trace axis that is no trace, or that every point
or a later point would refuse, is refused once, naming it (``experiments.execute.check_trace_files``), and a block
size axis over a trace whose block ids fix the block size is refused."""

from __future__ import annotations

import json

import pytest

from tests.test_sweep import TINY_SYNTHETIC, _spec


def _sweep_of_a_good_trace_and(run_cli, tmp_path, broken, content: bytes) -> tuple[int, str]:
    """A cache-only sweep whose trace axis is a good trace, then ``broken`` holding ``content``: (status, stderr)."""
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"timestamp": t, "input_length": 1000, "output_length": 5,
                                        "hash_ids": [1, 2 + t]}) + "\n" for t in range(4)))
    broken.write_bytes(content)
    spec = _spec(tmp_path, mode="cache-only", set={"cache.capacity_blocks": 100},
                 axes={"workload.trace": [str(good), str(broken)]})
    status, _, err = run_cli("--sweep", spec, "--report-csv", tmp_path / "out.csv", "--no-plot")
    return status, err


@pytest.mark.parametrize("bad,needle", [(b"", "the file is empty"), (b"\x1f\x8b\x08\x00gzip", "gzip-compressed"),
                                        (b'[{"timestamp": 0}]\n', "must be JSON Lines"),
                                        (b"when,who\n1,2\n", "unrecognised trace header")])
def test_a_trace_axis_value_that_is_no_trace_is_refused_before_any_point_runs(run_cli, tmp_path, bad, needle):
    """A trace axis's second file is empty, gzip'd, a JSON array or of no known format: it was found only when its
    point ran, after the first point's run ("1 of 2 sweep points failed", hfuzz8); README: every point is validated
    before the first runs. Now exit 2 naming the point and the file, and nothing written."""
    broken = tmp_path / "broken.jsonl"
    status, err = _sweep_of_a_good_trace_and(run_cli, tmp_path, broken, bad)
    assert status == 2 and needle in err and str(broken) in err and "sweep points failed" not in err, err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("header", [b"TIMESTAMP,ContextTokens,GeneratedTokens\n",
                                    b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\r\n \n\t\n"])
def test_a_trace_axis_value_of_a_header_and_no_row_is_refused_before_any_point_runs(run_cli, tmp_path, header):
    """A header-only CSV (blank lines and a BOM aside) on a trace axis was found only when its point loaded it,
    after the first point had run ("1 of 2 sweep points failed", hfuzz8): refused before, in the load's words."""
    broken = tmp_path / "header.csv"
    status, err = _sweep_of_a_good_trace_and(run_cli, tmp_path, broken, header)
    assert status == 2 and f"point 'header': no valid requests in {broken}: 0 rows read" in err, err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.csv").exists()


def test_a_trace_every_point_would_refuse_is_refused_once_before_any_point_runs(run_cli, tmp_path):
    """A capacity axis over one trace whose third line is no JSON object, read strictly: each point loaded it and
    failed alike ("3 of 3 sweep points failed", a journal of three errors). Its rows are read once before any point
    runs: exit 2 in the load's words, naming the first point and the line, nothing written."""
    trace = tmp_path / "bad.jsonl"
    lines = [json.dumps({"timestamp": t, "input_length": 1000, "output_length": 5, "hash_ids": [1, 2 + t]})
             for t in range(4)]
    trace.write_text("\n".join([*lines[:2], '{"timestamp": 9, "input_length": ', *lines[2:]]) + "\n")
    spec = _spec(tmp_path, mode="cache-only", workload={"trace": str(trace)},
                 axes={"cache.capacity_blocks": [10, 20, 30]})
    status, _, err = run_cli("--sweep", spec, "--report-csv", tmp_path / "out.csv", "--no-plot",
                             "--strict-workload-validation")
    assert status == 2 and f"point '10': {trace}: record 3 (line 3): malformed row" in err, err
    assert "sweep points failed" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.csv").exists()


def test_a_trace_a_later_point_would_refuse_is_refused_before_a_synthetic_or_good_point_runs(run_cli, tmp_path):
    """A trace axis of a synthetic workload (null), a good trace and one whose third line is no JSON object, read
    strictly: every distinct read is made before any point runs, past a point that reads no file and past a first
    trace that reads well, so the bad one is refused first (exit 2 naming its point and line, nothing written). Not
    before: stopping at the synthetic point, or reading only the first trace, ran the first two points and failed
    the third ("1 of 3 sweep points failed")."""
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    lines = [json.dumps({"timestamp": t, "input_length": 1000, "output_length": 5, "hash_ids": [1, 2 + t]})
             for t in range(4)]
    good.write_text("\n".join(lines) + "\n")
    bad.write_text("\n".join([*lines[:2], '{"timestamp": 9, "input_length": ', *lines[2:]]) + "\n")
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, set={"cache.capacity_blocks": 100},
                 axes={"workload.trace": [None, str(good), str(bad)]})
    status, _, err = run_cli("--sweep", spec, "--report-csv", tmp_path / "out.csv", "--no-plot",
                             "--strict-workload-validation")
    assert status == 2 and f"point 'bad': {bad}: record 3 (line 3): malformed row" in err, err
    assert "sweep points failed" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.csv").exists()


def test_a_block_size_axis_over_a_trace_of_hash_ids_is_refused(run_cli, tmp_path):
    """A trace of hash_ids replayed as its own blocks (workload.block_mismatch=trace): every point of a block-size
    axis ran at 512 tokens (points alike, exit 0); with the blocks cut (split) each point is its own."""
    trace = tmp_path / "m.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": 1000, "output_length": 5,
                                         "hash_ids": [1, 2 + t]}) + "\n" for t in range(4)))
    body = {"mode": "cache-only", "workload": {"trace": str(trace)}, "set": {"cache.capacity_blocks": 100},
            "axes": {"serving.block_size": [16, 64]}}
    argv = ["--no-plot", "--quiet", "--report-json", tmp_path / "r.json"]
    status, _, err = run_cli("--sweep", _spec(tmp_path, **body), *argv)
    assert status == 2 and "axis 'serving.block_size' is not used: the trace's hash_ids are its blocks" in err, err
    body["set"]["workload.block_mismatch"] = "split"
    assert run_cli("--sweep", _spec(tmp_path, **body), *argv)[0] == 0
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    # each prompt: a whole 512-token block and one of 488 tokens, cut into ceil(tokens / block size) blocks
    assert [r["metrics"]["accesses"] for r in runs] == [4 * (32 + 31), 4 * (8 + 8)]
