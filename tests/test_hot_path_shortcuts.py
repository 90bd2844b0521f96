"""Speed-ups on paths every serving run and every config build takes: each skips work whose result is known, and the
results stay those of the work skipped (hand-worked expectations below)."""

from __future__ import annotations

import os
import typing

from sim.cache import multitier
from sim.cache.arena import TierArena
from sim.cache.multitier import MultiTierCache
from sim.cache.tiers import new_tier
from sim.config import Config, load_config
from sim.config_workload import WorkloadConfig
from trace import cache as trace_cache
from trace.request import file_sha256


def _hbm_over_dram(hbm: int, dram: int) -> MultiTierCache:
    arena = TierArena(max_keys=64, few_tiers=True)
    tiers = [new_tier(arena, "hbm", "lru", hbm, 1.0, 1.0, 0.0), new_tier(arena, "dram", "lru", dram, 1.0, 1.0, 0.0)]
    return MultiTierCache(tiers, 1, num_blocks=64, track_positions=True)


def test_a_resize_that_demotes_nothing_calls_no_compiled_code_sets_the_capacity_and_says_so(monkeypatch):
    cache = _hbm_over_dram(4, 10)
    for now, key in enumerate((1, 2)):
        cache.touch(key, now)
    calls = []
    compiled = multitier.engine.resize_top
    monkeypatch.setattr(multitier.engine, "resize_top", lambda *args: calls.append(args[2]) or compiled(*args))

    # 2 blocks under a capacity of 3: nothing to demote (False: nothing written below), a store
    assert cache.fits(3) and cache.fits(2) and not cache.fits(1)
    assert cache.resize_top(3) is False
    assert calls == []
    assert cache.arena.capacity(cache.tiers[0].index) == 3
    assert cache.resize_top(3) is False and cache.settled(3)  # settled: asking again changes nothing

    # the capacity holds: two more blocks make 4 under 3, the least recently used (1) goes down to DRAM
    cache.touch(3, 2)
    cache.touch(4, 3)
    assert cache.resident(0) == {2, 3, 4} and cache.resident(1) == {1}

    # 3 blocks over a capacity of 1: the compiled resize demotes the two least recently used (2, then 3)
    assert not cache.fits(1)
    assert cache.resize_top(1) is True
    assert calls == [1]
    assert cache.resident(0) == {4} and cache.resident(1) == {1, 2, 3}
    assert cache.tiers[0].stats.demotions == 1 + 2


def test_a_config_build_resolves_each_section_type_s_hints_once(monkeypatch):
    sets = ["cache.policy=arc", "serving.max_num_seqs=7"]
    first = load_config(None, sets=sets)  # (the section types these keys reach, resolved once)
    calls = []
    resolve = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda cls, *a, **k: calls.append(cls) or resolve(cls, *a, **k))
    config = load_config(None, sets=sets)
    assert calls == []  # resolved before: none again
    assert config.cache.policy == "arc" and config.serving.max_num_seqs == 7
    assert config == first and isinstance(config, Config)


AZURE_ROWS = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
              "2023-11-16 18:15:46.0000000,100,10\n"
              "2023-11-16 18:15:47.5000000,40,20\n"
              "2023-11-16 18:15:49.0000000,33,30\n")


def test_traces_loaded_in_turn_are_each_parsed_once_while_they_fit_the_bound(tmp_path, monkeypatch):
    # Before: one trace kept, so a sweep over two traces (its up-front check reads each, then each point) parsed
    # every file twice (hrev24: 20 traces, 40 reads); past KEPT_TRACE_BYTES the least recently used goes, the last
    # loaded always stays
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        path.write_text(AZURE_ROWS)
    paths[1].write_text(AZURE_ROWS.replace(",100,10", ",101,10"))  # (other content: another trace)
    monkeypatch.setattr(trace_cache, "_LAST", {}, raising=False)
    parses = []
    parse = trace_cache.load_trace
    monkeypatch.setattr(trace_cache, "load_trace",
                        lambda w, *a, **k: parses.append(w.trace.rsplit("/", 1)[-1]) or parse(w, *a, **k))
    for name in ("a", "b", "a", "b", "a"):
        loaded = trace_cache.load_trace_cached(WorkloadConfig(trace=str(tmp_path / f"{name}.csv")), 16)
        assert loaded.input_tokens.tolist()[0] == (100 if name == "a" else 101)
    assert parses == ["a.csv", "b.csv"]
    # a bound of two traces' arrays (3 requests each, a few hundred bytes): after a, b, a, b, a, then c, the least
    # recently used, b, goes (parsed again), and c, used since, stays
    one = trace_cache._array_bytes(trace_cache._LAST[next(iter(trace_cache._LAST))])
    monkeypatch.setattr(trace_cache, "KEPT_TRACE_BYTES", 2 * one)
    (tmp_path / "c.csv").write_text(AZURE_ROWS.replace(",100,10", ",102,10"))
    parses.clear()
    for name in ("c", "b", "c"):
        trace_cache.load_trace_cached(WorkloadConfig(trace=str(tmp_path / f"{name}.csv")), 16)
    assert parses == ["c.csv", "b.csv"]


def test_a_trace_loaded_again_in_one_process_is_parsed_once_and_each_run_gets_its_own(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text(AZURE_ROWS)
    monkeypatch.setattr(trace_cache, "_LAST", {}, raising=False)
    parses = []
    parse = trace_cache.load_trace
    monkeypatch.setattr(trace_cache, "load_trace", lambda *a, **k: parses.append(a) or parse(*a, **k))
    workload = WorkloadConfig(trace=str(path))

    first = trace_cache.load_trace_cached(workload, 16)
    assert first.arrival_s.tolist() == [0.0, 1.5, 3.0] and first.input_tokens.tolist() == [100, 40, 33]
    first.select_range(0.0, 2 / 3)  # what a run does to its copy ...
    first.provenance.skip_reasons["seen"] = 1
    again = trace_cache.load_trace_cached(workload, 16)
    assert len(parses) == 1  # ... a second load neither parses nor sees
    assert again.arrival_s.tolist() == [0.0, 1.5, 3.0] and again.output_tokens.tolist() == [10, 20, 30]
    assert again.provenance.rows_used == 3 and again.provenance.skip_reasons == {}
    assert again.provenance.request_range is None and again.provenance.sha256 == file_sha256(path)

    # another setting, then other content at the same path: parsed again, and read as they say
    assert len(trace_cache.load_trace_cached(WorkloadConfig(trace=str(path), limit=2), 16)) == 2
    path.write_text(AZURE_ROWS.replace(",33,30", ",7,30"))
    os.utime(path, ns=(1, 1))  # (an old mtime: the content is hashed, not the stat trusted)
    edited = trace_cache.load_trace_cached(workload, 16)
    assert len(parses) == 3 and edited.input_tokens.tolist() == [100, 40, 7]
