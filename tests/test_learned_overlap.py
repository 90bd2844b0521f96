"""A learned model is not judged on the requests it was trained on, whatever file holds them: the content
fingerprint (``learned.fingerprint``) finds a copy, a slice or a re-timed copy of the training requests, lets
other requests through, and a sweep refuses such a point before any point runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from learned import fingerprint as fp
from learned.model import LearnedModel, sidecar_path
from sim.errors import InputError
from tests.test_serving import make_trace

MASK = (1 << 64) - 1


def _trace(inputs, outputs=None, arrival=None):
    n = len(inputs)
    return make_trace(np.arange(n, dtype=float) if arrival is None else arrival, inputs,
                      [7] * n if outputs is None else outputs)


def _splitmix(x: int) -> int:
    """SplitMix64's finaliser in Python integers (the reference the numpy version is checked against)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def test_a_gram_is_the_chained_hash_of_its_requests_lengths():
    inputs, outputs = [100, 2000, 35, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    grams = fp.request_grams(_trace(inputs, outputs))
    assert len(grams) == 10 - 8 + 1
    for start in range(3):
        expected = 0
        for i, o in zip(inputs[start:start + 8], outputs[start:start + 8], strict=True):
            expected = _splitmix(expected ^ _splitmix(_splitmix(i) ^ o))
        assert int(grams[start]) == expected
    assert len(fp.request_grams(_trace(inputs[:7], outputs[:7]))) == 0  # fewer requests than a gram


def test_grams_survive_slicing_and_retiming_and_change_only_around_an_edit():
    rng = np.random.default_rng(5)
    inputs, outputs = rng.integers(1, 5000, 20), rng.integers(1, 500, 20)
    whole = fp.request_grams(_trace(inputs, outputs))
    late = fp.request_grams(_trace(inputs[6:], outputs[6:], arrival=1e6 + np.arange(14.0) * 3))
    assert np.array_equal(late, whole[6:])  # a slice, re-timed: the same grams from its start on
    edited = outputs.copy()
    edited[10] += 1
    changed = np.flatnonzero(fp.request_grams(_trace(inputs, edited)) != whole)
    assert changed.tolist() == list(range(3, 11))  # the 8 grams that hold request 10 (of 13)


def test_repeated_grams_are_left_out_and_the_sample_is_content_defined(monkeypatch):
    assert fp.distinct_once(np.array([5, 3, 5, 7], dtype=np.uint64)).tolist() == [3, 7]
    alike = _trace([512] * 30)  # every request the same: every gram the same, so no identity
    assert fp.fingerprint(alike)["hashes"] == []
    rng = np.random.default_rng(1)
    trace = _trace(rng.integers(1, 10**6, 107))  # 100 grams
    monkeypatch.setattr(fp, "MAX_HASHES", 10)
    made = fp.fingerprint(trace)
    assert made["modulus"] == 16  # the smallest power of two M with 100 <= 10 M
    kept = [int(h, 16) for h in made["hashes"]]
    grams = fp.request_grams(trace)
    assert kept == sorted(int(g) for g in grams if int(g) % 16 == 0) and all(h % 16 == 0 for h in kept)


def test_the_share_is_that_of_the_run_grams_inside_the_training_requests():
    """Trained on 100 requests; the run: the last 50 of them, then 50 others. Of its 93 grams, the 43 that
    start at its first 43 requests lie wholly in the training requests, 7 straddle, 43 are new."""
    rng = np.random.default_rng(2)
    inputs, outputs = rng.integers(1, 10**5, 150), rng.integers(1, 10**3, 150)
    made = fp.fingerprint(_trace(inputs[:100], outputs[:100]))
    assert made["modulus"] == 1 and len(made["hashes"]) == 93
    hashes = np.array([int(h, 16) for h in made["hashes"]], dtype=np.uint64)
    assert fp.overlap(hashes, 1, _trace(inputs[50:], outputs[50:])) == (43, 93)
    assert fp.overlap(hashes, 1, _trace(inputs[100:], outputs[100:])) == (0, 43)


def test_a_workload_of_few_lengths_gets_grams_long_enough_to_tell_runs_apart():
    """Five prompt sizes and one response size: 8-request grams recur by chance (an independent run of the same
    process shared 18% of them with the training range: refused as a copy). The gram grows until the training
    range's own grams are 99% distinct; then an independent run shares next to none, a copy all."""
    rng = np.random.default_rng(3)
    sizes = [256, 512, 1024, 2048, 4096]
    train, other = (_trace(rng.choice(sizes, n), np.full(n, 128)) for n in (100_000, 20_000))
    made = fp.fingerprint(train)
    assert made["gram"] > 8
    every = fp.request_grams(train, made["gram"])
    assert len(fp.distinct_once(every)) >= 0.99 * len(every)
    hashes = np.array([int(h, 16) for h in made["hashes"]], dtype=np.uint64)
    found, sampled = fp.overlap(hashes, made["modulus"], other, made["gram"])
    assert sampled > 100 and found / sampled < 0.01 < fp.REFUSE_SHARE
    copy = _trace(train.input_tokens[:20_000], train.output_tokens[:20_000])
    found, sampled = fp.overlap(hashes, made["modulus"], copy, made["gram"])
    assert found / sampled > 0.9


def test_training_prints_the_fingerprint_as_a_count_and_writes_it_whole(tmp_path, capsys):
    """400 synthetic requests: 393 grams, all kept (fewer than MAX_HASHES: modulus 1); the summary printed counts
    them (it printed every hash)."""
    from learned.train import main as train_main

    out = tmp_path / "m.txt"
    assert train_main(["--out", str(out), "--range", "0:1", "--rounds", "2", "--set",
                       "workload.synthetic.num_requests=400"]) == 0
    printed = json.loads(capsys.readouterr().out)["train"]["fingerprint"]
    written = json.loads(sidecar_path(out).read_text())["train"]["fingerprint"]
    assert printed == {**written, "hashes": 393} and written["modulus"] == 1 and len(written["hashes"]) == 393


# --- the run's guard, on the Mooncake conversation trace ---

@pytest.fixture(scope="module")
def mooncake(shared_data, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A small model of the trace's first half (requests [0, 6016)), the trace's lines and a folder."""
    from learned.train import main as train_main

    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    out = tmp_path_factory.mktemp("mooncake") / "model.txt"
    assert train_main(["--workload-trace", str(trace), "--out", str(out), "--rounds", "2", "--max-rows", "5000"]) == 0
    return trace, out, trace.read_text().splitlines(keepends=True)


def _judge(run_cli, trace, model, *more):
    return run_cli("--cache-only", "--workload-trace", trace, "--policy", "learned", "--set",
                   f"cache.learned_model={model}", "--capacity-blocks", "500", "--no-plot", "--quiet", *more)


def _retimed(lines: list[str], shift: float) -> str:
    rows = [json.loads(line) for line in lines]
    return "".join(json.dumps({**row, "timestamp": row["timestamp"] + shift}) + "\n" for row in rows)


@pytest.mark.parametrize("cut", ["head 3000", "requests 5000-6016 re-timed", "whole first half re-timed"])
def test_a_copy_of_training_requests_is_refused_in_one_line(cut, mooncake, run_cli, tmp_path):
    _, model, lines = mooncake
    text = {"head 3000": "".join(lines[:3000]), "requests 5000-6016 re-timed": _retimed(lines[5000:6016], 7.5e5),
            "whole first half re-timed": _retimed(lines[:6016], 1e3)}[cut]
    copy = tmp_path / "copy.jsonl"
    copy.write_text(text)
    status, _, err = _judge(run_cli, copy, model)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert str(model) in err and "trained on 100% of this run's sampled 8-request sequences" in err, err
    assert "--allow-train-test-overlap" in err
    assert _judge(run_cli, copy, model, "--allow-train-test-overlap")[0] == 0


def test_a_copy_of_the_held_out_half_is_judged(mooncake, run_cli, tmp_path):
    """The later half as a file of its own (another hash; no request trained on): judged, exit 0."""
    _, model, lines = mooncake
    copy = tmp_path / "later.jsonl"
    copy.write_text("".join(lines[6016:]))
    status, _, err = _judge(run_cli, copy, model)
    assert status == 0, err


def test_a_sidecar_without_a_fingerprint_loads_and_checks_source_and_range_only(mooncake, run_cli, tmp_path):
    trace, model, lines = mooncake
    old = tmp_path / "old.txt"
    old.write_bytes(model.read_bytes())
    meta = json.loads(sidecar_path(model).read_text())
    del meta["train"]["fingerprint"]
    sidecar_path(old).write_text(json.dumps(meta))
    assert LearnedModel.load(old)._fingerprint is None
    copy = tmp_path / "copy.jsonl"
    copy.write_text("".join(lines[:3000]))
    assert _judge(run_cli, copy, old)[0] == 0  # (what the fingerprint is for)
    status, _, err = _judge(run_cli, trace, old)
    assert status == 2 and "trained on requests [0, 6016)" in err


# --- sweeps: refused before the first point runs ---

def _sweep(run_cli, tmp_path, **body):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    return spec, run_cli("--sweep", spec, "--report-json", tmp_path / "out.json", "--no-plot", "--quiet")


@pytest.mark.parametrize("copied", [False, True], ids=["training trace", "a re-timed copy of it"])
def test_a_sweep_point_on_training_requests_is_refused_before_any_point_runs(copied, mooncake, run_cli, tmp_path):
    """Point 0.5 (the held-out half) is judged and 0.0 (the whole trace) is not: refused before 0.5 runs."""
    trace, model, lines = mooncake
    if copied:
        trace = tmp_path / "copy.jsonl"
        trace.write_text(_retimed(lines, 1e3))  # (an exact copy has the same hash: the same source)
    spec, (status, _, err) = _sweep(run_cli, tmp_path, mode="cache-only", workload={"trace": str(trace)},
                                    set={"cache.policy": "learned", "cache.learned_model": str(model),
                                         "cache.capacity_blocks": 500},
                                    axes={"workload.range_start": [0.5, 0.0]})
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"sweep spec {spec}: point '0.0': learned model {model}" in err
    assert ("of this run's sampled 8-request sequences" if copied else "trained on requests [0, 6016)") in err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.json").exists()


def test_a_sweep_loads_each_workload_once_and_none_without_a_learned_point(small_learned_model, monkeypatch):
    """Six learned points over two seeds: two loads (one per seed); the same points with LRU: none."""
    import trace.workload
    from experiments.execute import RunOptions, check_learned_points
    from sim.config import load_config

    real, loads = trace.workload.load_workload, []
    monkeypatch.setattr(trace.workload, "load_workload", lambda config: loads.append(config.seed) or real(config))
    sets = ["serving.block_size=512", "workload.synthetic.num_requests=300", f"cache.learned_model={small_learned_model}"]
    points = [(f"point {seed}/{capacity}", "cache-only",
               load_config(None, sets=[*sets, f"seed={seed}", f"cache.capacity_blocks={capacity}"]))
              for seed in (1, 2) for capacity in (100, 200, 300)]
    check_learned_points(points, RunOptions(policies=("lru",)))
    assert loads == []
    check_learned_points(points, RunOptions(policies=("learned", "lru")))
    assert loads == [1, 2]


def test_a_plan_candidate_on_training_requests_is_refused_before_any_candidate_runs(mooncake, run_cli, tmp_path):
    """(It ran its candidates for over ten minutes, each then failing on its own.)"""
    trace, model, _ = mooncake
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "workload": {"trace": str(trace), "limit": 3000},
        "set": {"serving.block_size": 512, "cache.policy": "learned", "cache.learned_model": str(model)},
        "target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 256]}}}))
    status, _, err = run_cli("--plan", plan, "--report-json", tmp_path / "out.json", "--no-plot", "--quiet")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"plan {plan}: candidate " in err and "trained on requests [0, 6016)" in err and "[0, 3000)" in err
    assert not (tmp_path / "out.json").exists()


def _check_run(train_range: tuple[int, int], run_range: tuple[int, int], run_block_tokens: int = 16) -> None:
    """``LearnedModel.check`` of a model trained on requests ``train_range`` of a file, with 16-token blocks, for a
    run over ``run_range`` of the same file (its content check aside: the ranges alone decide here)."""
    from types import SimpleNamespace

    model = SimpleNamespace(path="m.txt", meta={"block_tokens": 16, "train": {"source": "sha", "request_range":
                                                                               list(train_range)}},
                            _check_content=lambda trace: None)
    trace = SimpleNamespace(provenance=SimpleNamespace(block_tokens=run_block_tokens, sha256="sha",
                                                       request_range=run_range, rows_used=run_range[1] - run_range[0]))
    config = SimpleNamespace(cache=SimpleNamespace(allow_train_test_overlap=False))
    LearnedModel.check(model, trace, config)


def test_one_shared_request_is_an_overlap_and_adjacent_ranges_are_not():
    """Half-open ranges: [0, 100) and [99, 200) share request 99, so the run is refused; [100, 200) shares none."""
    shared = r"trained on requests \[0, 100\) of this workload and the run uses \[99, 200\)"
    with pytest.raises(InputError, match=shared):
        _check_run((0, 100), (99, 200))
    _check_run((0, 100), (100, 200))
    with pytest.raises(InputError, match="trained on 16-token blocks and this run uses 32-token blocks"):
        _check_run((0, 100), (100, 200), run_block_tokens=32)


def test_a_synthetic_overlap_names_the_seed_and_asks_for_another(small_learned_model, run_cli, tmp_path):
    """--seeds runs the synthetic generator at several seeds: the refusal said "requests [0, 400) of this workload",
    not which draw (hfuzz11). The model is of seed 0's 400 requests; seeds 0 and 1 from seed 0: seed 0's is refused;
    from seed 5 none overlaps."""
    common = ["--cache-only", "--policy", "learned", "--set", "serving.block_size=512", "--set",
              "workload.synthetic.num_requests=400", "--set", f"cache.learned_model={small_learned_model}",
              "--no-plot", "--quiet"]
    status, _, err = run_cli(*common, "--seeds", "2")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "[0, 400) of this synthetic workload at seed 0 and the run uses [0, 400)" in err and "another seed" in err
    status, _, err = run_cli(*common, "--seeds", "2", "--set", "seed=5", "--report-json", tmp_path / "r.json")
    assert status == 0, err
