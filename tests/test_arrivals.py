"""Load scaling and arrival processes: rate_scale, Poisson, gamma (burstiness), resampled trace gaps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import ConfigError, TraceError
from tests.conftest import BUNDLED_AZURE
from trace.workload import load_workload

SYNTH = ["workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=400", "workload.synthetic.rate_rps=4"]


def _load(*sets: str):
    return load_workload(load_config(None, sets=list(sets)))


@pytest.mark.parametrize("source", [SYNTH, [f"workload.trace={BUNDLED_AZURE}", "workload.limit=500"]],
                         ids=["synthetic", "azure-trace"])
def test_rate_scale_divides_every_inter_arrival_time(source):
    one, three = _load(*source), _load(*source, "workload.rate_scale=3")
    assert np.array_equal(three.arrival_s, one.arrival_s / 3)  # times from the first request, so every gap / 3
    assert three.arrival_s[0] == one.arrival_s[0] == 0.0
    assert np.array_equal(three.input_tokens, one.input_tokens)
    assert np.array_equal(three.access_stream(), one.access_stream())


def test_rate_scale_flag_and_validation(run_cli, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "1000", "--rate-scale", "2",
                   "--report-json", out, "--no-plot", "--quiet")[0] == 0
    report = json.loads(out.read_text())
    assert report["config"]["workload"]["rate_scale"] == 2.0
    base = _load(f"workload.trace={BUNDLED_AZURE}", "workload.limit=1000")
    assert report["runs"][0]["metrics"]["duration_s"] == pytest.approx(base.arrival_s[-1] / 2, rel=1e-12)
    for bad in ("0", "-1"):
        status, _, err = run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, "--rate-scale", bad)
        assert status == 2 and "workload.rate_scale" in err


def _gaps(process: str, *extra: str, n: int = 200_000) -> np.ndarray:
    trace = _load("workload.synthetic.kind=system-prompt", f"workload.synthetic.num_requests={n}",
                  "workload.synthetic.num_prefixes=2", "workload.synthetic.input_tokens_mean=8",
                  "workload.synthetic.prefix_tokens=16", f"workload.arrivals.process={process}", *extra)
    return np.diff(trace.arrival_s)


def test_poisson_arrivals_have_the_rate_and_unit_cv():
    gaps = _gaps("poisson", "workload.arrivals.rate_rps=20")
    n = len(gaps)
    assert abs(gaps.mean() - 1 / 20) < 4 * (1 / 20) / np.sqrt(n)  # 4 standard errors of an exponential mean
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_arrivals_have_the_rate_and_the_requested_burstiness(cv):
    gaps = _gaps("gamma", "workload.arrivals.rate_rps=10", f"workload.arrivals.cv={cv}")
    n = len(gaps)
    assert abs(gaps.mean() - 0.1) < 4 * cv * 0.1 / np.sqrt(n)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_resample_redraws_the_traces_own_gaps_at_the_target_rate():
    own = _load(f"workload.trace={BUNDLED_AZURE}")
    redrawn = _load(f"workload.trace={BUNDLED_AZURE}", "workload.arrivals.process=resample", "workload.arrivals.rate_rps=11")
    own_gaps = np.diff(own.arrival_s)
    scaled = own_gaps / (own_gaps.mean() * 11)  # the trace's own gap distribution with mean 1/11 s
    new_gaps = np.diff(redrawn.arrival_s)
    pool = np.sort(scaled)
    idx = np.clip(np.searchsorted(pool, new_gaps), 1, len(pool) - 1)
    nearest = np.minimum(np.abs(pool[idx] - new_gaps), np.abs(pool[idx - 1] - new_gaps))
    assert nearest.max() < 1e-9  # every drawn gap is one of the trace's own (up to time rounding)
    assert abs(new_gaps.mean() - 1 / 11) < 4 * scaled.std() / np.sqrt(len(new_gaps))
    assert np.array_equal(redrawn.input_tokens, own.input_tokens)  # requests keep their order and sizes
    # rate_rps null: the workload's own mean rate
    same_rate = _load(f"workload.trace={BUNDLED_AZURE}", "workload.arrivals.process=poisson")
    assert np.diff(same_rate.arrival_s).mean() == pytest.approx(own_gaps.mean(), rel=0.05)


def test_drawn_arrivals_are_seeded_and_change_nothing_else():
    a = _load(*SYNTH, "workload.arrivals.process=gamma", "workload.arrivals.cv=2")
    b = _load(*SYNTH, "workload.arrivals.process=gamma", "workload.arrivals.cv=2")
    c = _load(*SYNTH, "workload.arrivals.process=gamma", "workload.arrivals.cv=2", "seed=1")
    plain = _load(*SYNTH)
    assert np.array_equal(a.arrival_s, b.arrival_s) and not np.array_equal(a.arrival_s, c.arrival_s)
    assert not np.array_equal(a.arrival_s, plain.arrival_s)
    assert np.array_equal(a.access_stream(), plain.access_stream())
    assert np.array_equal(a.output_tokens, plain.output_tokens)


@pytest.mark.parametrize("sets, key", [
    (["workload.arrivals.rate_rps=0", "workload.arrivals.process=poisson"], "workload.arrivals.rate_rps"),
    (["workload.arrivals.cv=0", "workload.arrivals.process=gamma"], "workload.arrivals.cv"),
    (["workload.arrivals.rate_rps=5"], "workload.arrivals.rate_rps"),  # ignored by process trace: refused
    (["workload.arrivals.cv=2", "workload.arrivals.process=poisson"], "workload.arrivals.cv"),
    (["workload.arrivals.process=weibull"], "workload.arrivals.process"),
])
def test_bad_arrival_settings_name_the_key(sets, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _load(*SYNTH, *sets)


def test_arrivals_past_a_floats_rate_blame_what_set_them(tmp_path):
    """Two requests 1e-305 ms (1e-308 s) apart: replayed, their rate 2 / 1e-308 passes the largest float (1.8e308),
    and the message blames the timestamps. Drawn by a Poisson process at the trace's own mean rate (1 / 1e-308 s, a
    float) the gap is random: for a seed whose draw is shorter than 2 / 1.8e308 s the drawn rate passes a float too,
    and the message said the timestamps were that close (they are not: the draw is); it names the process and the
    key that would set the rate. With a rate_rps given the key is that."""
    from trace.arrivals import ARRIVALS_STREAM

    trace = tmp_path / "close.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": 100, "output_length": 2, "hash_ids": [i + 1]})
                             + "\n" for i, t in enumerate([0, 1e-305])))
    with pytest.raises(TraceError, match="rate past the largest float: its timestamps are closer than any rate"):
        _load(f"workload.trace={trace}")
    # a seed whose single exponential gap (mean 1e-308 s) is under 2 / max float: by the draw itself
    seed = next(s for s in range(100) if not np.isfinite(
        2 / np.random.default_rng([s, ARRIVALS_STREAM]).exponential(1e-308)))
    with pytest.raises(TraceError) as drawn:
        _load(f"workload.trace={trace}", "workload.arrivals.process=poisson", f"seed={seed}")
    assert "config key 'workload.arrivals.process'=poisson drew them at the trace's own mean rate" in str(drawn.value)
    assert "give workload.arrivals.rate_rps" in str(drawn.value) and "timestamps are closer" not in str(drawn.value)
    seed = next(s for s in range(100) if not np.isfinite(
        2 / np.random.default_rng([s, ARRIVALS_STREAM]).exponential(1 / 9e307)))
    with pytest.raises(TraceError, match=r"config key 'workload.arrivals.rate_rps'=9e\+307 is too high"):
        _load(f"workload.trace={trace}", "workload.arrivals.process=poisson", "workload.arrivals.rate_rps=9e307",
              f"seed={seed}")


def test_a_rate_scale_below_1_is_not_blamed_for_arrivals_too_close(tmp_path):
    """Two requests 1e-306 ms (1e-309 s) apart: a rate of 2e309, past the largest float (1.8e308). A rate scale
    divides the gaps: at 0.5 they are 2e-309 s apart, still past it, and the message blamed the scale for packing
    them ("'workload.rate_scale'=0.5 packs them too close"); the timestamps did (hmut9). At 2 the scale packs them."""
    trace = tmp_path / "closer.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": 100, "output_length": 2, "hash_ids": [i + 1]})
                             + "\n" for i, t in enumerate([0, 1e-306])))
    with pytest.raises(TraceError, match="within 2e-309 s, a rate past the largest float: its timestamps are closer"):
        _load(f"workload.trace={trace}", "workload.rate_scale=0.5")
    with pytest.raises(TraceError, match="within 5e-310 s.*'workload.rate_scale'=2 packs them too close"):
        _load(f"workload.trace={trace}", "workload.rate_scale=2")
