"""benchmarks/replay_vllm.py reads a measured run's files as the Contract reads inputs: a spoiled file is refused with
exit 2 and one line naming the file and field, before the replay runs; Ctrl-C while it loads is an interruption."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import interrupted_while_importing

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "llmservingsim_rtxpro6000"
RUN = FIXTURE / "bench" / "examples" / "RTXPRO6000" / "Qwen3-32B-vllm-0.28"
TRACE = FIXTURE / "workloads" / "sharegpt-qwen3-300-sps10.hash16.jsonl"
SCRIPT = ROOT / "benchmarks" / "replay_vllm.py"


def _replay(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=300)


def _edit_meta(edit):
    def spoil(run: Path) -> None:
        path = run / "vllm" / "meta.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta))
    return spoil


def _edit_rows(edit):
    def spoil(run: Path) -> None:
        path = run / "vllm" / "requests.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = edit(rows) or rows
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return spoil


def _write(name: str, data: bytes | str):
    def spoil(run: Path) -> None:
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return spoil


def _edit_text(name: str, old: str, new: str):
    def spoil(run: Path) -> None:
        path = run / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return spoil


def _row0(**fields):
    return _edit_rows(lambda rows: rows[0].update(fields))


HEADER = "t,prompt_throughput,prompt_compute_throughput,prompt_cached_throughput,gen_throughput,running,waiting," \
         "preempted,kv_cache_pct"
SPOILED = {
    "meta-duplicate-key": (_edit_text("vllm/meta.json", '"tensor_parallel_size": 2,',
                                      '"tensor_parallel_size": 2, "tensor_parallel_size": 1,'),
                           "meta.json", "tensor_parallel_size"),
    "meta-binary": (_write("vllm/meta.json", b"\xff\xfe\x00\x01"), "meta.json", "not UTF-8"),
    "config-binary": (_write("config.json", b"\xff\xfe\x00\x01"), "config.json", "not UTF-8"),
    "dtype-int8": (_edit_meta(lambda m: m["engine_kwargs"].update(dtype="int8")), "meta.json", "engine_kwargs.dtype"),
    "dtype-number": (_edit_meta(lambda m: m["engine_kwargs"].update(dtype=5)), "meta.json", "engine_kwargs.dtype"),
    "hardware-string": (_edit_meta(lambda m: m.update(hardware="x")), "meta.json", "hardware"),
    "hardware-list": (_edit_meta(lambda m: m.update(hardware=[1])), "meta.json", "hardware"),
    "model-config-string": (_edit_meta(lambda m: m["resolved_config"].update(model_config="x")), "meta.json",
                            "resolved_config.model_config"),
    "scheduler-config-string": (_edit_meta(lambda m: m["resolved_config"].update(scheduler_config="x")), "meta.json",
                                "resolved_config.scheduler_config"),
    "cache-config-string": (_edit_meta(lambda m: m["resolved_config"].update(cache_config="x")), "meta.json",
                            "resolved_config.cache_config"),
    "max-num-seqs-zero": (_edit_meta(lambda m: m["engine_kwargs"].update(max_num_seqs=0)), "meta.json",
                          "engine_kwargs.max_num_seqs"),
    "num-requests-string": (_edit_meta(lambda m: m.update(num_requests="300")), "meta.json", "num_requests"),
    "link-bw-bool": (_edit_text("config.json", '"num_nodes": 1,',
                                '"num_nodes": 1, "link_bw": true, "link_latency": 0,'),
                     "config.json", "link_bw"),
    "requests-short": (_edit_rows(lambda rows: rows[:100]), "requests.jsonl", "num_requests"),
    "requests-duplicated": (_edit_rows(lambda rows: rows[:297] + rows[:3]), "requests.jsonl", "request_id"),
    "output-toks-zero": (_row0(output_toks=0), "requests.jsonl", "output_toks"),
    "output-toks-negative": (_row0(output_toks=-3), "requests.jsonl", "output_toks"),
    "ttft-negative": (_row0(first_token_ts=1.0), "requests.jsonl", "first_token_ts"),
    "last-before-first": (_row0(last_token_ts=273321.5), "requests.jsonl", "last_token_ts"),
    "last-huge": (_row0(last_token_ts=1e308), "requests.jsonl", "last_token_ts"),
    "timeseries-empty": (_write("vllm/timeseries.csv", ""), "timeseries.csv", "empty"),
    "timeseries-no-t": (_edit_text("vllm/timeseries.csv", "t,", "time,"), "timeseries.csv", "column t"),
    "timeseries-text-cell": (_write("vllm/timeseries.csv", f"{HEADER}\nx,1,1,0,1,2,0,0,1.0\n"), "timeseries.csv",
                             "row 2 t"),
    "timeseries-short-row": (_write("vllm/timeseries.csv", f"{HEADER}\n1.0,1,1\n"), "timeseries.csv", "row 2"),
    "timeseries-binary": (_write("vllm/timeseries.csv", b"\xff\xfe\x00\x01"), "timeseries.csv", "not UTF-8"),
    "summary-binary": (_write("validation/summary.txt", b"\xff\xfe\x00\x01"), "summary.txt", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(SPOILED))
def test_a_spoiled_run_file_is_refused_in_one_line_before_the_replay(tmp_path, case):
    spoil, file, field = SPOILED[case]
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    spoil(run)
    done = _replay("--run", str(run), "--trace", str(TRACE))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("replay_vllm.py: error: ") and file in last and field in last, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # found before the trace is read: no note first
    assert done.stdout == ""


def test_a_trace_without_its_run_is_refused():
    """The trace alone was replayed against the bundled RTX 4090 run (the counts matched: 300 requests each)."""
    done = _replay("--trace", str(TRACE))
    assert done.returncode == 2 and "--trace needs --run" in done.stderr and done.stdout == "", done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_profile_with_an_overlay_is_refused(tmp_path):
    """--profile was ignored silently when --overlay stated the engine."""
    (tmp_path / "o.yaml").write_text("{}\n")
    done = _replay("--run", str(RUN), "--trace", str(TRACE), "--overlay", str(tmp_path / "o.yaml"), "--profile",
                   str(tmp_path))
    assert done.returncode == 2 and "--profile and --overlay" in done.stderr, done.stderr


@pytest.mark.parametrize("setting, named", [
    ("pd.num_prefill=2", "(it applies to --pd"),  # a single-node run has no PD pools
    ("cluster.num_racks=2", "(it applies to --cluster"),
    ("slo.ttft_s=0.1", "compared by its latencies"),  # the replay prints latency errors, no attainment
    ("cache.tiers.eic.read_gbps=3", "cache.tiers.eic.capacity_gib is 0"),  # no EIC tier to read it
])
def test_a_setting_the_replay_does_not_read_is_refused(setting, named):
    """Each ran the replay to exit 0 with the same numbers, as if the setting had been applied."""
    done = _replay("--run", str(RUN), "--trace", str(TRACE), "--set", setting)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"--set {setting.split('=')[0]}" in last and named in last, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_tpot_is_not_measurable_when_every_request_has_one_token(tmp_path):
    """Every output_toks 1, in the run and in the workload fed to it (a run of other outputs than the workload's is
    refused): no TPOT on either side (an IndexError from an empty percentile before)."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    _edit_rows(lambda rows: [{**row, "output_toks": 1, "last_token_ts": row["first_token_ts"]} for row in rows])(run)
    trace = tmp_path / "one_token.jsonl"
    trace.write_text("".join(json.dumps({**json.loads(line), "output_length": 1}) + "\n"
                             for line in TRACE.read_text().splitlines()))
    done = _replay("--run", str(run), "--trace", str(trace))
    assert done.returncode == 0, done.stderr
    assert "tpot   all   not measurable" in done.stdout and "ttft   mean" in done.stdout


@pytest.mark.parametrize("module", ["numpy", "sim.cli", "sim.json_input", "sim.specs"])
def test_ctrl_c_while_the_replay_loads_its_modules_is_an_interruption(module):
    done = interrupted_while_importing(SCRIPT, module)
    assert (done.returncode, done.stderr) == (130, "replay_vllm.py: interrupted\n")
