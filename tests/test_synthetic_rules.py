"""Synthetic workload keys that relate to each other (``sim.synthetic_rules``) and the key a too-long span blames
(``trace.workload._synthetic_span_cause``): refused with exit 2 naming the key that causes it."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml

from sim.config_workload import SyntheticConfig
from trace.synthetic import _conversation_turns, drawn_turns_mean

SYN = "workload.synthetic."


def _trace_stats(run_cli, *sets: str) -> tuple[int, str]:
    argv = ["--trace-stats", "--no-plot", "--quiet"]
    for s in sets:
        argv += ["--set", SYN + s]
    status, _, err = run_cli(*argv)
    return status, err


def test_think_time_sigma_whose_mean_overflows_is_refused_naming_it(run_cli):
    # sigma 1e300: sigma^2 overflows, every draw exp(+-huge) is 0 or inf; it ran with half the gaps 0, half inf
    status, err = _trace_stats(run_cli, "think_time_sigma=1e300")
    assert status == 2 and "'workload.synthetic.think_time_sigma'=1e+300" in err, err


def test_think_time_mean_past_the_horizon_is_refused_at_the_hand_computed_sigma(run_cli):
    # mean = 93 x exp(sigma^2 / 2) <= 2^30 s (the longest workload span) <=> sigma <= sqrt(2 (30 ln 2 - ln 93)):
    # 30 ln 2 = 20.79442, ln 93 = 4.53260, so sigma_max = sqrt(32.52364) = 5.70295
    sigma_max = 5.70295
    assert math.sqrt(2 * (30 * math.log(2) - math.log(93))) == pytest.approx(sigma_max, abs=1e-5)
    status, err = _trace_stats(run_cli, "think_time_sigma=5.7035", "num_requests=50")
    assert status == 2 and "think_time_sigma'=5.7035" in err and "at most 5.702 " in err, err
    assert _trace_stats(run_cli, "think_time_sigma=5.7025", "num_requests=50")[0] == 0
    status, err = _trace_stats(run_cli, "think_time_median_s=2e9", "think_time_sigma=0")
    assert status == 2 and "'workload.synthetic.think_time_median_s'=2e+09" in err, err


def test_rag_over_a_pool_smaller_than_a_request_repeats_documents(run_cli, tmp_path):
    # each of a request's documents is drawn on its own (README): a pool of 1 gives every prompt that document twice,
    # so a sweep over num_documents [1, 500] at 2 per request runs both points (point 1 was refused). Hand count, one
    # document: every request's 2 x 2048 / 16 = 256 document blocks are the first request's, its question blocks its
    # own (exponential lengths, unique keys): 199 x 256 hits over 200 requests in an HBM that holds them all
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "cache-only", "set": {SYN + "kind": "rag", SYN + "num_requests": 200},
                                    "axes": {SYN + "num_documents": [1, 500]}}))
    out = tmp_path / "s.csv"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")
    assert status == 0, err
    with open(out) as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {"1", "500"} and not any(row.get("error") for row in rows.values())
    assert int(rows["1"]["hits"]) == 199 * (2 * 2048 // 16)
    assert int(rows["500"]["hits"]) < int(rows["1"]["hits"])


@pytest.mark.parametrize("turns_mean", [2.0, 10.0, 100.0, 4096.0])
def test_drawn_turns_mean_matches_the_generators_draws(turns_mean):
    # the exact capped mean against a Monte Carlo of the generator's own draws (4 x 10^6 conversations; 5 standard
    # errors); at turns_mean 2 the cap (4,096) cuts a negligible tail: 2 exactly
    cfg = SyntheticConfig(turns_mean=turns_mean)
    turns = np.concatenate([_conversation_turns(cfg, np.random.default_rng(s), 1_000_000) for s in range(4)])
    exact = drawn_turns_mean(cfg)
    assert abs(turns.mean() - exact) < 5 * turns.std() / math.sqrt(len(turns))
    if turns_mean == 2.0:
        assert exact == pytest.approx(2.0, rel=1e-4)


def test_a_too_long_span_blames_the_key_that_caused_it(run_cli):
    # 2,000 requests at 1e-7 a second: 2e10 s from the rate alone
    status, err = _trace_stats(run_cli, "rate_rps=1e-7", "num_requests=2000")
    assert status == 2 and "'workload.synthetic.rate_rps'=1e-07" in err, err
    # turns_mean 2 (drawn as 2), rate 2e-6: 1e9 s from the rate; gaps of 5e8 s (every conversation's second turn
    # 16 years after its first) leave the first turns to fill the span: 2,000 x 2 / 2e-6 = 2e9 s
    # (an empty start: a stationary one has conversations under way, and requests at rate_rps from the start)
    status, err = _trace_stats(run_cli, "turns_mean=2", "rate_rps=2e-6", "num_requests=2000", "start=empty",
                               "think_time_median_s=5e8", "think_time_sigma=0")
    assert status == 2 and "'workload.synthetic.think_time_median_s'=5e+08" in err and "rate_rps'" not in err, err


# Expected spans by hand against the bound of 2^30 s = 1.074e9 s (34 years): n requests at rate r (times the rate
# scale) span ~(n - 1) / r.
SPANS = [
    # 2,001 requests at 1e-6/s: 2e9 s, refused; 1,001: 1e9 s, within
    ((f"{SYN}num_requests=2001", f"{SYN}rate_rps=1e-6"), "'workload.synthetic.rate_rps'=1e-06"),
    ((f"{SYN}num_requests=1001", f"{SYN}rate_rps=1e-6"), None),
    # 1e8 requests at 1e-6/s, but a limit of 1,000 draws 1,000: 999 / 1e-6 = 1e9 s, within
    ((f"{SYN}num_requests=100000000", "workload.limit=1000", f"{SYN}rate_rps=1e-6"), None),
    ((f"{SYN}num_requests=100000000", "workload.limit=2000", f"{SYN}rate_rps=1e-6"), "workload.limit"),
    # 1,000 requests at 5/s scaled by 2e-7: 999 / 1e-6 = 1e9 s, within; by 1e-7: 2e9 s, refused naming the scale
    ((f"{SYN}num_requests=1000", "workload.rate_scale=2e-7"), None),
    ((f"{SYN}num_requests=1000", "workload.rate_scale=1e-7"), "'workload.rate_scale'=1e-07"),
    # ... unless only half of them are kept (range 0 - 0.5): 499 / 5e-7 = 1e9 s
    ((f"{SYN}num_requests=1000", "workload.rate_scale=1e-7", "workload.range_end=0.5"), None),
    # a drawn process's rate is the one that counts: Poisson at 1e-6/s over 2,000 requests, 2e9 s
    ((f"{SYN}num_requests=2000", "workload.arrivals.process=poisson", "workload.arrivals.rate_rps=1e-6"),
     "'workload.arrivals.rate_rps'=1e-06"),
    # a rate of 1e-200/s scaled by 1e-200: 1e400 s, past any float, refused (the product 1e-400 is 0 in float64: it
    # divided by zero, an internal error)
    ((f"{SYN}num_requests=2", "workload.arrivals.process=poisson", "workload.arrivals.rate_rps=1e-200",
      "workload.rate_scale=1e-200"), "'workload.arrivals.rate_rps'=1e-200"),
]


@pytest.mark.parametrize("sets,named", SPANS)
def test_a_synthetic_span_past_34_years_is_refused_before_drawing(sets, named):
    """The expected span is checked with the config (before, 1e7 requests were drawn, ~10 s, to be refused after)."""
    from sim.config import load_config
    from sim.errors import ConfigError

    if named is None:
        load_config(None, sets=list(sets))
        return
    with pytest.raises(ConfigError, match="34 years") as caught:
        load_config(None, sets=list(sets))
    assert named in str(caught.value)


def test_a_synthetic_span_past_34_years_exits_2_in_one_line(run_cli):
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--set", f"{SYN}num_requests=100000000",
                             "--set", f"{SYN}rate_rps=1e-3")
    assert status == 2 and err.count("\n") == 1 and "'workload.synthetic.rate_rps'=0.001" in err, err


def test_multi_turn_requests_arrive_at_rate_rps_when_the_turn_cap_cuts_the_mean():
    """At turns_mean 100 (concentration 4) the turns drawn, capped at 4,096, average 19.9: conversations started at
    rate_rps / turns_mean brought requests at ~1/s for rate_rps 5. Started at rate_rps / the drawn mean, requests
    arrive at rate_rps (think times of 10 ms: no conversation outlasts a sliver of the 10,000 s window, so the
    window's rate is the steady state's; the turns' heavy tail leaves each seed's rate noisy, hence three)."""
    from sim.config import load_config
    from trace.workload import load_workload

    rates = []
    for seed in range(3):
        config = load_config(None, sets=[f"seed={seed}", f"{SYN}turns_mean=100", f"{SYN}num_requests=50000",
                                         f"{SYN}think_time_median_s=0.01", f"{SYN}think_time_sigma=0",
                                         f"{SYN}input_tokens_mean=16", f"{SYN}output_tokens_mean=16"])
        arrival = load_workload(config).arrival_s
        rates.append((len(arrival) - 1) / (arrival[-1] - arrival[0]))
    assert 3.5 < np.mean(rates) < 6.5, rates
