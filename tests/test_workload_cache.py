"""The workload cache returns exactly what the loader returns, and is never used stale."""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from sim.config_workload import WorkloadConfig
from sim.errors import InputError
from tests.conftest import BUNDLED_AZURE
from tests.loader_helpers import AZURE_BAD, MOONCAKE_BAD, _mooncake_line, write
from trace import cache as wc
from trace.loaders import load_trace

COLUMNS = ("arrival_s", "input_tokens", "output_tokens", "session_id", "block_offsets")
# three prompts of consecutive hash ids (0-39 | 0-49 | 100-129): dense ids 0-39 | 0-49 | 50-79, held as 3 runs
MOONCAKE_RUNS = (_mooncake_line(0, 40 * 512, 5, list(range(40))) + _mooncake_line(1, 50 * 512, 5, list(range(50)))
                 + _mooncake_line(2, 30 * 512, 5, list(range(100, 130))))
# the first prompt repeats a hash id (dropped by the loader: repeated_hash_ids), so the dense ids kept start at 1
MOONCAKE_DROPPED_FIRST = (_mooncake_line(0, 1024, 10, [5000, 5000]) + _mooncake_line(1, 3072, 20, list(range(6)))
                          + _mooncake_line(2, 2048, 20, [0, 1, 2, 6]))
BURST_SESSIONS = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID\n"
                  "0,ChatGPT,40,10,50,Conversation log,A\n1,ChatGPT,50,10,60,Conversation log,B\n"
                  "2,ChatGPT,70,10,80,Conversation log,A\n3,ChatGPT,20,10,30,API log,\n")


@pytest.fixture(autouse=True)
def _notes(caplog):
    """The cache's notes reach caplog whatever level an earlier in-process --quiet run left on the logger."""
    caplog.set_level(logging.INFO, logger="kvsim")


def _held(trace) -> dict[str, np.ndarray | None]:
    """The trace's arrays: its columns and its block ids as held (flat, or as runs)."""
    runs = trace.id_runs
    return {**{name: getattr(trace, name) for name in COLUMNS}, "flat_ids": trace.flat_ids,
            "run_offsets": None if runs is None else runs.offsets, "run_first": None if runs is None else runs.first,
            "run_length": None if runs is None else runs.length, "answer_offsets": trace.answer_offsets,
            "answer_ids": trace.answer_ids}


DTYPES = {"arrival_s": np.float64, "flat_ids": np.int32, "run_first": np.int32, "run_length": np.int32,
          "answer_ids": np.int32}


def _same(a, b) -> None:
    for name, x in _held(a).items():
        y = _held(b)[name]
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype == DTYPES.get(name, np.int64), name
            assert np.array_equal(x, y), name
    assert np.array_equal(a.access_stream(), b.access_stream())
    assert a.num_unique_blocks == b.num_unique_blocks
    assert a.provenance.to_dict() == b.provenance.to_dict()


def _cached(trace_path, cache_path, block_size=16, **workload):
    return wc.load_trace_cached(WorkloadConfig(trace=str(trace_path), cache=str(cache_path), **workload), block_size)


def _fresh(trace_path, block_size=16, **workload):
    return load_trace(WorkloadConfig(trace=str(trace_path), **workload), block_size)


@pytest.fixture
def traces(tmp_path, shared_data):
    """(path, block size, settings) of every block-id kind, with skipped rows."""
    return [
        (write(tmp_path, "bad.csv", AZURE_BAD), 16, {}),  # unique blocks, skip reasons
        (write(tmp_path, "bad.jsonl", MOONCAKE_BAD), 512, {}),  # hash_ids
        (write(tmp_path, "dropped.jsonl", MOONCAKE_DROPPED_FIRST), 512, {}),  # ids with a gap: bound > count
        (shared_data / "traces" / "mooncake_conversation.jsonl", 16, {"block_mismatch": "split", "limit": 2000}),
        (write(tmp_path, "sessions.csv", BURST_SESSIONS), 16, {}),  # synthetic-sessions
        (shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl", 16, {}),  # chained
    ]


def test_cache_hit_equals_the_loader(tmp_path, traces, caplog):
    for i, (path, block_size, settings) in enumerate(traces):
        cache = tmp_path / f"c{i}.npz"
        fresh = _fresh(path, block_size, **settings)
        built = _cached(path, cache, block_size, **settings)
        assert cache.is_file()
        _same(built, fresh)
        header = _header(cache)  # a JSON header, then raw arrays where it says: nothing pickled
        assert set(header["arrays"]) == {name for name, array in _held(fresh).items() if array is not None}
        _same(_cached(path, cache, block_size, **settings), fresh)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # first builds and hits warn of nothing


@pytest.mark.parametrize("change", [{"block_size": 32}, {"limit": 2}, {"strict_validation": True}, {"time_unit": "ms"},
                                    {"max_request_tokens": 250}, {"format": "splitwise"}])
def test_a_changed_setting_rebuilds(tmp_path, caplog, change):
    path = write(tmp_path, "t.csv", "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,"
                                    "token_size\n0,2,0,1,1,100,8\n1,2,0,3,1,200,80\n2,2,0,7,1,300,8\n")
    cache = tmp_path / "c.npz"
    _cached(path, cache)
    block_size = change.pop("block_size", 16)
    trace = _cached(path, cache, block_size, **change)
    _same(trace, _fresh(path, block_size, **change))
    name = "serving.block_size" if block_size != 16 else f"workload.{next(iter(change))}"
    assert any(name in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    _same(_cached(path, cache, block_size, **change), trace)  # the rebuilt cache is used next time
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_edited_trace_is_never_replayed_stale(tmp_path, caplog):
    """Same size, same modification time, other content: the content hash sees it."""
    path = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,100,10\n")
    cache = tmp_path / "c.npz"
    before = os.stat(path)
    assert _cached(path, cache).input_tokens.tolist() == [100]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,900,10\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    trace = _cached(path, cache)
    assert trace.input_tokens.tolist() == [900]
    _same(trace, _fresh(path))
    assert "trace file" in caplog.text and "rebuilding" in caplog.text


def test_same_content_elsewhere_is_a_hit(tmp_path):
    first = write(tmp_path, "a.csv", BUNDLED_AZURE.read_text()[:5000].rsplit("\n", 1)[0] + "\n")
    moved = tmp_path / "b.csv"
    moved.write_bytes(first.read_bytes())
    cache = tmp_path / "c.npz"
    _cached(first, cache)
    stamp = os.stat(cache).st_mtime_ns
    trace = _cached(moved, cache)
    assert os.stat(cache).st_mtime_ns == stamp  # read, not rewritten
    assert trace.provenance.path == str(moved)
    _same(trace, _fresh(moved))


def _header(cache) -> dict:
    data = cache.read_bytes()
    start = len(wc.MAGIC) + wc.PREFIX.size
    assert data[:len(wc.MAGIC)] == wc.MAGIC
    return json.loads(data[start:start + wc.PREFIX.unpack(data[len(wc.MAGIC):start])[0]])


def _damage(cache, how: str) -> None:
    data = cache.read_bytes()
    start = len(wc.MAGIC) + wc.PREFIX.size
    header_end = start + wc.PREFIX.unpack(data[len(wc.MAGIC):start])[0]
    if how == "truncated":
        cache.write_bytes(data[: len(data) // 2])
    elif how == "truncated_array":  # the header whole, the block ids (the last array: flat, or the runs' lengths) cut
        cache.write_bytes(data[:header_end + _header(cache)["arrays"][_last_ids(cache)]["offset"] + 8])
    elif how == "flipped_byte":  # inside the block ids: their CRC-32 no longer matches
        at = header_end + _header(cache)["arrays"][_last_ids(cache)]["offset"]
        cache.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    elif how == "ids_out_of_range":  # written whole (CRCs match) by the cache's own writer, the header's bound kept
        header = _header(cache)
        trace = wc._read(cache, header["key"])[0]
        bound, computed = trace.block_id_bound(), type(trace).block_id_bound
        if trace.id_runs is not None:
            trace.id_runs.first = trace.id_runs.first + 10**6
        else:
            trace.flat_ids = trace.flat_ids + 10**6
        type(trace).block_id_bound = lambda self: bound
        try:
            wc._write(cache, header["key"], trace)
        finally:
            type(trace).block_id_bound = computed
    elif how == "runs_short":  # the runs' lengths one short of the requests' blocks (CRCs match)
        header = _header(cache)
        trace = wc._read(cache, header["key"])[0]
        trace.id_runs.length = trace.id_runs.length - np.eye(1, len(trace.id_runs.length), dtype=np.int32)[0]
        wc._write(cache, header["key"], trace)
    elif how == "meta_not_json":
        cache.write_bytes(data[:start] + b"{not json" + data[start + 9:])
    elif how == "header_digit_changed":  # the same length, valid JSON: a block size of 256, not 512
        at = data.index(b'"block_tokens": 512', start)
        cache.write_bytes(data[:at] + b'"block_tokens": 256' + data[at + 19:])
    elif how == "empty":
        cache.write_bytes(b"")


def _last_ids(cache) -> str:
    """The name of the last array a cache file holds: its flat block ids, or its runs' lengths."""
    return "flat_ids" if "flat_ids" in _header(cache)["arrays"] else "run_length"


DAMAGE = ("truncated", "truncated_array", "flipped_byte", "ids_out_of_range", "meta_not_json", "header_digit_changed",
          "empty")


@pytest.mark.parametrize("how, held", [(how, held) for held in ("flat", "runs") for how in DAMAGE]
                         + [("runs_short", "runs")])
def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, how, held):
    path = write(tmp_path, "bad.jsonl", MOONCAKE_BAD if held == "flat" else MOONCAKE_RUNS)
    cache = tmp_path / "c.npz"
    assert (_cached(path, cache, 512).id_runs is not None) == (held == "runs")
    _damage(cache, how)
    trace = _cached(path, cache, 512)
    _same(trace, _fresh(path, 512))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and str(cache) in warnings[0]
    caplog.clear()
    _same(_cached(path, cache, 512), trace)  # rewritten whole
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_cache_of_the_previous_format_is_rebuilt_saying_so(tmp_path, caplog):
    """Format 2 (no CRC-32 of the header): its first header bytes were read as the CRC, and the cache rebuilt with
    "the file was changed or damaged"; it says which kvsim built it."""
    path = write(tmp_path, "bad.jsonl", MOONCAKE_BAD)
    cache = tmp_path / "c.npz"
    _cached(path, cache, 512)
    header = _header(cache)
    header["key"]["format_version"] = 2
    raw = json.dumps(header).encode()
    cache.write_bytes(wc.MAGIC + len(raw).to_bytes(8, "little") + raw)  # format 2's layout (its arrays left out)
    _same(_cached(path, cache, 512), _fresh(path, 512))
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("built by another kvsim (workload cache format 2)" in m for m in messages), messages


@pytest.mark.parametrize("older", [3, 4])
def test_a_cache_of_flat_or_int64_block_ids_is_rebuilt_as_runs(tmp_path, caplog, monkeypatch, older):
    """Format 3 held int64 block ids, format 4 int32 ones, both flat, as one array ("block_ids") in this layout: a
    file of either is rebuilt (saying which format built it), never read; the rebuilt cache holds the ids as the
    loader's trace does (here as runs)."""
    path = write(tmp_path, "runs.jsonl", MOONCAKE_RUNS)
    cache = tmp_path / "c.cache"
    old = _fresh(path, 512)
    flat = old.access_stream().astype(np.int64 if older == 3 else np.int32)
    monkeypatch.setattr(wc, "_arrays", lambda trace: {**{name: getattr(trace, name) for name in COLUMNS},
                                                      "block_ids": flat})  # (as formats 3 and 4 wrote them)
    current = wc.FORMAT_VERSION
    monkeypatch.setattr(wc, "FORMAT_VERSION", older)
    wc._write(cache, wc.cache_key(WorkloadConfig(trace=str(path), cache=str(cache)), 512, old.provenance.sha256), old)
    assert _header(cache)["arrays"]["block_ids"]["dtype"] == ("<i8" if older == 3 else "<i4")
    monkeypatch.undo()
    assert wc.FORMAT_VERSION == current
    trace = _cached(path, cache, 512)
    _same(trace, _fresh(path, 512))
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(f"built by another kvsim (workload cache format {older})" in m for m in messages), messages
    assert set(_header(cache)["arrays"]) == {*COLUMNS, "run_offsets", "run_first", "run_length"}
    assert trace.id_runs.first.tolist() == [0, 0, 50] and trace.id_runs.length.tolist() == [40, 50, 30]
    caplog.clear()
    _same(_cached(path, cache, 512), trace)  # and a hit now
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("content", [b"not a cache\n" * 10, b"arrival_timestamp,input_tokens\n", b"kvsim",
                                     b"PK\x03\x04 not a zip", "npz without meta", "format 1"])
def test_a_file_no_kvsim_wrote_is_never_overwritten(tmp_path, content):
    """A cache path naming someone's file (a mistyped --workload-cache): refused with the key named, the file left
    as it was; the start of a cache's magic (a write cut short) and a cache of format 1 are rebuilt."""
    path = write(tmp_path, "bad.jsonl", MOONCAKE_BAD)
    cache = tmp_path / "notes.txt"
    if isinstance(content, str):  # an .npz: kvsim's format 1 held a "meta" array beside the trace's
        arrays = {"block_offsets": np.zeros(2), **({"meta": np.zeros(3, np.uint8)} if content == "format 1" else {})}
        with cache.open("wb") as fh:
            np.savez(fh, **arrays)
        content = cache.read_bytes()
    cache.write_bytes(content)
    if wc.MAGIC.startswith(content) or b"meta.npy" in content:
        _same(_cached(path, cache, 512), _fresh(path, 512))
        return
    with pytest.raises(InputError, match="'workload.cache'.*not a kvsim workload cache"):
        _cached(path, cache, 512)
    assert cache.read_bytes() == content


def test_other_loader_code_rebuilds(tmp_path, caplog, monkeypatch):
    path = write(tmp_path, "bad.csv", AZURE_BAD)
    cache = tmp_path / "c.npz"
    _cached(path, cache)
    monkeypatch.setattr(wc, "SOURCES", wc.SOURCES[:-1])  # as if a module of the loader had changed
    _cached(path, cache)
    assert "loader code sha256" in caplog.text


def test_sources_list_every_trace_module_the_loader_runs():
    """The key hashes the code of every ``trace`` module that ``load_trace`` imports, directly or
    through another (found here by parsing their import statements), so an edit to any of them
    (a reader, a parser) rebuilds the cache instead of replaying a stale workload."""
    folder = Path(wc.__file__).parent
    todo, seen = ["loaders"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "trace":
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trace."):
                todo.append(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("trace.")]
    assert {"loaders", "readers", "formats", "validation", "blocks"} <= seen  # the walk follows imports
    assert sorted(f"{name}.py" for name in seen if f"{name}.py" not in wc.SOURCES) == []


def test_cli_reports_identical_with_and_without_cache(tmp_path, shared_data, run_cli):
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    cache = tmp_path / "c.npz"
    reports = []
    for i, extra in enumerate([[], ["--workload-cache", str(cache)], ["--workload-cache", str(cache)]]):
        out = tmp_path / f"r{i}.json"
        status, _, err = run_cli("--cache-only", "--workload-trace", trace, "--workload-limit", "3000", "--policy", "lru,arc",
                                 "--capacity-blocks", "500", "--no-plot", "--quiet", "--report-json", out, *extra)
        assert status == 0, err
        report = json.loads(out.read_text())
        report.pop("timing")
        report["config"]["workload"].pop("cache")
        reports.append(report)
    assert reports[0] == reports[1] == reports[2]


def test_cli_quiet_silences_the_rebuild_note(tmp_path, run_cli, caplog):
    path = write(tmp_path, "t.csv", AZURE_BAD)
    cache = tmp_path / "c.npz"
    cache.write_bytes(wc.MAGIC + b"garbage")  # a damaged cache
    args = ("--trace-stats", "--workload-trace", path, "--workload-cache", cache, "--no-plot")
    assert run_cli(*args, "--quiet")[0] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    cache.write_bytes(wc.MAGIC + b"garbage")
    assert run_cli(*args)[0] == 0
    assert "rebuilding" in caplog.text


def test_cache_path_in_a_config_file_is_relative_to_it(tmp_path, monkeypatch):
    from sim.config import load_config

    (tmp_path / "cfg").mkdir()
    write(tmp_path / "cfg", "t.csv", AZURE_BAD)
    (tmp_path / "cfg" / "c.yaml").write_text("workload: {trace: t.csv, cache: cache/t.npz}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("cfg/c.yaml")
    assert os.path.normpath(config.workload.cache) == os.path.join("cfg", "cache", "t.npz")


@pytest.mark.parametrize("held", ["flat", "runs"])
def test_a_hit_maps_the_file_copy_on_write(tmp_path, held):
    """A hit's arrays are the file's pages, yet writable: a change stays in the process, never in the file."""
    path = write(tmp_path, "bad.jsonl", MOONCAKE_BAD if held == "flat" else MOONCAKE_RUNS)
    cache = tmp_path / "c.npz"
    _cached(path, cache, 512)
    stored = cache.read_bytes()
    trace = _cached(path, cache, 512)
    ids = trace.flat_ids if held == "flat" else trace.id_runs.first
    assert ids.flags.writeable and ids.flags.aligned
    ids[:] = -7
    assert cache.read_bytes() == stored
    _same(_cached(path, cache, 512), _fresh(path, 512))
