"""tools/to_mooncake.py, tools/ns3_kv_timing.py (with tools/ns3_flows.py) and tools/profile_gpu.py: bad input is one
line and exit 2 before any work, skipped rows are reported, Ctrl-C (even while the modules load) is exit 130 and
leaves no partial output. Nothing here needs ns-3 or a GPU (profile_gpu's checks need PyTorch, on CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, interrupted_while_importing, script_module

TOOLS = ROOT / "tools"
TO_MOONCAKE = TOOLS / "to_mooncake.py"
NS3_TOOL = TOOLS / "ns3_kv_timing.py"
PROFILE_GPU = TOOLS / "profile_gpu.py"

@pytest.mark.parametrize("tool, module", [
    (TO_MOONCAKE, "json"), (TO_MOONCAKE, "sim.cli"), (TO_MOONCAKE, "sim.report.output"),
    (NS3_TOOL, "argparse"), (NS3_TOOL, "ns3_flows"), (NS3_TOOL, "sim.serving.engine"),
    (PROFILE_GPU, "argparse"), (PROFILE_GPU, "gpu_timing"),
])
def test_ctrl_c_while_a_tool_loads_its_modules_is_an_interruption(tool, module):
    done = interrupted_while_importing(tool, module)  # (answered by sim.script_start: named as the file is run)
    assert (done.returncode, done.stderr) == (130, f"{tool.name}: interrupted\n")


# ------------------------------------------------------------------------------------ to_mooncake


def _to_mooncake(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TO_MOONCAKE), *argv], capture_output=True, text=True, timeout=300,
                          check=False)


def _llmservingsim(path, rows: int = 51, bad_row: int | None = 7, tokens: int = 40):
    with open(path, "w") as fh:
        for i in range(rows):
            ids = [(i * 7 + j) % 5 for j in range(tokens + i % 30)]
            fh.write(json.dumps({"input_toks": len(ids), "output_toks": 4, "input_tok_ids": ids,
                                 "arrival_time_ns": -1 if i == bad_row else i * 1000}) + "\n")
    return path


def _mooncake(path, trailing_comma: bool = True):
    lines = [json.dumps({"timestamp": i, "input_length": 1000, "output_length": 4, "hash_ids": [i, i + 1]})
             for i in range(5)]
    if trailing_comma:
        lines.append('{"timestamp": 9, "input_length": 1000, "output_length": 4, "hash_ids": [1, 2],}')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_skipped_rows_of_a_token_id_trace_are_reported(tmp_path):
    done = _to_mooncake("--workload-trace", str(_llmservingsim(tmp_path / "t.jsonl")),
                        "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "50 requests, 16-token blocks; 1 row of 51 skipped (negative value: 1)" in done.stdout
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 50


def test_skipped_rows_of_a_mooncake_trace_are_reported_with_its_own_block_size(tmp_path):
    done = _to_mooncake("--workload-trace", str(_mooncake(tmp_path / "m.jsonl")), "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "5 requests, 512-token blocks; 1 row of 6 skipped (malformed row: 1)" in done.stdout


def test_block_size_on_a_trace_of_hash_ids_is_refused(tmp_path):
    """It did nothing (the output was the 512-token input's) while the message said 16-token blocks."""
    done = _to_mooncake("--workload-trace", str(_mooncake(tmp_path / "m.jsonl", False)), "--block-size", "16",
                        "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and "--block-size" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("size, named", [
    ("1000000", "--block-size must be a power of two from 1 to 1,048,576"),  # wrote a file kvsim could not read
    ("0", "--block-size must be a power of two"), ("48", "--block-size must be a power of two"),
    ("1048576", "--block-size 1048576: kvsim would read them back as 512-token blocks"),  # every prompt one block
])
def test_a_block_size_kvsim_cannot_read_back_is_refused(tmp_path, size, named):
    done = _to_mooncake("--workload-trace", str(_llmservingsim(tmp_path / "t.jsonl", bad_row=None)), "--block-size",
                        size, "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_a_block_size_given_reads_back_as_that_size(tmp_path):
    from sim.config import load_config
    from trace.workload import load_workload

    out = tmp_path / "o.jsonl"
    done = _to_mooncake("--workload-trace", str(_llmservingsim(tmp_path / "t.jsonl", bad_row=None)),
                        "--block-size", "32", "--out", str(out))
    assert done.returncode == 0 and "51 requests, 32-token blocks" in done.stdout and "skipped" not in done.stdout
    back = load_workload(load_config(None, sets=[f"workload.trace={out}", "serving.block_size=32"]))
    assert back.provenance.block_tokens == 32 and len(back) == 51


# ------------------------------------------------------------------------------------ ns3_kv_timing


@pytest.fixture(scope="module")
def ns3_tool():
    with script_module(NS3_TOOL) as module:
        yield module


@pytest.mark.parametrize("argv, named", [
    (["--bandwidth-gbps", "1e300"], "--bandwidth-gbps must be within 0.001..1e+06"),  # OverflowError in default_tcp
    (["--bandwidth-gbps", "1e-9"], "--bandwidth-gbps must be within"),
    (["--bandwidth-gbps", "nan"], "--bandwidth-gbps must be within"),
    (["--latency-us", "1e300"], "--latency-us must be within 0..3.6e+09"),
    (["--delayed-ack-ms", "500"], "--delayed-ack-ms must be positive and below --min-rto-ms (200)"),
    (["--delayed-ack-ms", "200"], "--delayed-ack-ms must be positive and below --min-rto-ms (200)"),
    (["--min-rto-ms", "1e300"], "--min-rto-ms must be positive and at most"),
    (["--socket-buffer-kib", "99999999999"], "--socket-buffer-kib must be within"),
    (["--out", "/proc/x.json"], "--out '/proc/x.json'"),
    (["--out", "/sys/x.json"], "--out '/sys/x.json'"),
    (["--out", "-"], "--out -: give a file path"),
    (["incast", "--switch-buffer-kib", "99999999999"], "--switch-buffer-kib must be within"),
])
def test_ns3_bad_input_exits_2_in_one_line_before_ns3_loads(ns3_tool, tmp_path, capsys, monkeypatch, argv, named):
    monkeypatch.setattr(ns3_tool, "load_ns3", lambda: pytest.fail("ns-3 loaded before the input was checked"))
    scenario, argv = (argv[0], argv[1:]) if argv[0] == "incast" else ("point-to-point", argv)
    base = {"--out": str(tmp_path / "t.json"), "--sizes-mib": "1,2"}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    assert ns3_tool.main([scenario, *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "\n" not in err and "Traceback" not in err, err


def test_default_tcp_refuses_an_unbounded_link(ns3_tool):
    from sim.errors import InputError

    with pytest.raises(InputError, match="--bandwidth-gbps"):
        ns3_tool.default_tcp(ns3_tool.LinkParams(1e300, 1.0, 9000), hops=1)


def test_an_out_that_fails_as_it_is_written_is_one_line(ns3_tool, tmp_path):
    from sim.errors import InputError

    with pytest.raises(InputError, match="cannot write /dev/full"):
        ns3_tool._write_json({"rows": []}, ns3_tool.Path("/dev/full"))
    ns3_tool._write_json({"rows": []}, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == {"rows": []}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


# ------------------------------------------------------------------------------------ profile_gpu


@pytest.fixture
def profile_gpu(monkeypatch):
    pytest.importorskip("torch", reason="PyTorch is not installed (optional extra: pip install 'kvsim[torch]')")
    monkeypatch.syspath_prepend(str(TOOLS))
    import profile_gpu

    return profile_gpu


@pytest.mark.parametrize("argv, named", [
    (["--block-size", "99999999999"], "--block-size must be at most 65,536"),  # 12.8 TB asked after profiling
    (["--max-context", "999999999999"], "--max-context must be at most 1,048,576"),  # ran for minutes
    (["--max-batch", "100000"], "--max-batch must be at most 512"),
    (["--max-kv-tokens", "99999999999"], "--max-kv-tokens must be at most"),
    (["--tp", "99999999999"], "--tp must be at most"),
    (["--tiny", "--max-tokens", "64"], "--max-tokens does nothing with --tiny"),  # were silently ignored
    (["--tiny", "--max-context", "64"], "--max-context does nothing with --tiny"),
    (["--tiny", "--max-batch", "4"], "--max-batch does nothing with --tiny"),
    (["--tiny", "--max-kv-tokens", "64"], "--max-kv-tokens does nothing with --tiny"),
])
def test_profile_gpu_bad_sizes_are_refused_before_any_timing(profile_gpu, tmp_path, capsys, argv, named):
    with pytest.raises(SystemExit) as done:
        profile_gpu.main(["--device", "cpu", "--out", str(tmp_path / "out"), *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def _fake_rows(monkeypatch, tool):
    """Profiling replaced by one row each (the tests are about the output folder, not the timings)."""
    monkeypatch.setattr(tool, "profile_mlp", lambda *a, **k: [{"num_tokens": 1, "time_stats.add.mean": 0.1}])
    monkeypatch.setattr(tool, "profile_attention", lambda *a, **k: [{"batch_size": 1, "is_prefill": True}])


@pytest.mark.parametrize("when", ["profiling", "after mlp.csv"])
def test_profile_gpu_interrupted_leaves_nothing_new(profile_gpu, tmp_path, capsys, monkeypatch, when):
    out = tmp_path / "deep" / "out"
    if when == "profiling":
        monkeypatch.setattr(profile_gpu, "profile_mlp", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    else:
        _fake_rows(monkeypatch, profile_gpu)
        write_csv = profile_gpu.write_csv

        def interrupted_after_first(path, *a, **k):
            write_csv(path, *a, **k)
            raise KeyboardInterrupt

        monkeypatch.setattr(profile_gpu, "write_csv", interrupted_after_first)
    status = profile_gpu.main(["--device", "cpu", "--tiny", "--out", str(out)])
    assert status == 130 and "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not the folder, nor its parent, nor a temporary one


def test_profile_gpu_interrupted_keeps_a_previous_profile(profile_gpu, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _fake_rows(monkeypatch, profile_gpu)
    assert profile_gpu.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"mlp.csv", "attention.csv", "meta.yaml"}
    assert f"in {out} " in capsys.readouterr().out  # the folder named is --out, not the temporary one
    monkeypatch.setattr(profile_gpu, "write_csv", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert profile_gpu.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and [p.name for p in tmp_path.iterdir()] == ["out"]
