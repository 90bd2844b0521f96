"""Bad-input round 16 (hfuzz10): a plan's all-null SLO section, a Mooncake number too large for a float, --max-rate's
answer where no rate meets, and the surfaces earlier rounds touched least (--trace-stats, --seeds with --max-rate,
sweep zips with overlays, cluster keys at their edges, model entries, profile overlays)."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import AZURE_HEADER, MOONCAKE_OK, TRACE_STATS, Case, check_bad_input, mooncake, trace_stats
from tests.test_bad_plan_sweep_inputs import plan

CASES: dict[str, Case] = {
    # every entry null is none given, as `slo: {}` is: beside a hit ratio it loaded silently (sets nothing)
    "plan_slo_all_null_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: {ttft_s: null}}\n"
                                               "search: {gpu: [h100-sxm]}\n", "'target.slo'", "sets nothing"),
    "plan_slo_two_nulls_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: {ttft_s: null, tpot_s: null}}\n"
                                                "search: {gpu: [h100-sxm]}\n", "'target.slo'", "sets nothing"),
    # a number past a double's range is valid JSON (RFC 8259 leaves the range to the parser): Python's json reads
    # 1e400 as inf; orjson refused the line, charged malformed_row where the CSV loaders say infinite_value
    "mooncake_timestamp_beyond_float": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"infinite_value": 2},
                                            files={"m.jsonl": MOONCAKE_OK + mooncake("1e400", 600, 5, [4, 5])
                                                   + mooncake("-1E400", 600, 5, [4, 5])}),
    "mooncake_tokens_beyond_float": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"infinite_value": 3},
                                         files={"m.jsonl": MOONCAKE_OK + mooncake(30, "1e400", 5, [4, 5])
                                                + mooncake(30, 600, "1e400", [4, 5])
                                                + mooncake(30, "1" + "0" * 400, 5, [4, 5])}),
    "mooncake_beyond_float_with_nan_literal": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 2},
                                                   files={"m.jsonl": MOONCAKE_OK + mooncake(30, "1e400", 5, [4, 5],
                                                                                            ', "x": NaN')
                                                          + mooncake(30, "1e400", 5, [4, 5], ', "x": "\\ud800"')}),
    # resampling gaps that are all 0 (0 / 0): a RuntimeWarning, then "arrivals span nan s ... rate_rps=2 is too low"
    "resample_gaps_all_zero": Case(trace_stats("--set", "workload.arrivals.process=resample", "--set",
                                               "workload.arrivals.rate_rps=2"),
                                   names=("'workload.arrivals.process'=resample", "all arrive at the same time"),
                                   files={"t.csv": AZURE_HEADER + "2023-11-16 18:15:50,300,10\n" * 3}),
    # a rate the search's 2^24 doublings carry past a float: an infinite answer (null in the report, "at inf req/s")
    "max_rate_drawn_rate_past_a_float": Case(["--max-rate", "--workload-trace", "{tmp}/m.jsonl", "--no-plot", "--set",
                                              "workload.arrivals.process=poisson", "--set",
                                              "workload.arrivals.rate_rps=1e302", "--set", "slo.ttft_s=0.5"],
                                             names=("--max-rate", "'workload.arrivals.rate_rps'=1e+302"),
                                             files={"m.jsonl": MOONCAKE_OK}),
    "max_rate_synthetic_rate_past_a_float": Case(["--max-rate", "--no-plot", "--set",
                                                  "workload.synthetic.rate_rps=1e302", "--set",
                                                  "workload.synthetic.num_requests=10", "--set", "slo.ttft_s=0.5"],
                                                 names=("--max-rate", "'workload.synthetic.rate_rps'=1e+302")),
    # the start the search doubles is the rate x rate_scale, and where no key set the rate the trace's own mean rate is
    # named: the largest float / 2^24 = 1.0715e301 req/s is the highest start, so a scale of 1e301 (a config file's:
    # --set of it is refused with --max-rate) on the synthetic workload's 5 req/s leaves a rate below 1.07 req/s, and
    # two requests 1e-301 s apart (2e301 req/s: finite, so the trace loads) a scale below 0.536 (hmut9: the check
    # without the scale, and the branch of the trace's own rate, passed the two cases above)
    "max_rate_scaled_rate_past_a_float": Case(["--max-rate", "--config", "{tmp}/c.yaml", "--no-plot", "--set",
                                               "workload.synthetic.num_requests=10", "--set", "slo.ttft_s=0.5"],
                                              names=("--max-rate: 'workload.synthetic.rate_rps'=5, x workload.rate_scale="
                                                     "1e+301, doubled up to 2^24 times", "give a rate below 1.07 req/s"),
                                              files={"c.yaml": "workload: {rate_scale: 1.0e+301}\n"}),
    "max_rate_trace_rate_past_a_float": Case(["--max-rate", "--workload-trace", "{tmp}/m.jsonl", "--no-plot", "--set",
                                              "slo.ttft_s=0.5"],
                                             names=("--max-rate: the workload's own rate, 2e+301 req/s doubled up to "
                                                    "2^24 times", "give a workload.rate_scale below 0.536"),
                                             files={"m.jsonl": mooncake(0, 600, 5, [1, 2]) + mooncake(1e-298, 600, 5, [3, 4])}),
    # arrivals packed past a float's rate: rates written null after numpy's overflow warning on stderr
    "trace_stats_rate_scale_past_a_float": Case(trace_stats("--rate-scale", "1e307", trace="{tmp}/m.jsonl"),
                                                names=("m.jsonl", "'workload.rate_scale'=1e+307", "3 requests"),
                                                files={"m.jsonl": MOONCAKE_OK}),
    # a searched tier size that holds no block (64 MiB: Mooncake's 512-token block of Llama-3.1-8B, 128 KiB a token):
    # its candidate was pruned as "no tier level gains" or, in a fleet, failed its run, and the plan exited 0
    "plan_tier_holds_no_block": Case(["--plan", "{tmp}/p.yaml", "--no-plot", "--quiet", "--jobs", "1"],
                                     names=("p.yaml", "search.tiers.dram", "0.001 GiB holds no KV block",
                                            "67,108,864 bytes"),
                                     files={"m.jsonl": MOONCAKE_OK,
                                            "p.yaml": "workload: {trace: m.jsonl}\ntarget: {hit_ratio: 0.1}\n"
                                                      "search: {gpu: [h100-sxm], tiers: {dram: [0, 0.001]}}\n"}),
    # a tier price no candidate pays (no EIC anywhere): unread, exit 0, as a misspelt GPU's price was before it
    "plan_price_of_a_tier_no_candidate_runs": plan("target: {hit_ratio: 0.5}\nsearch: {gpu: [h100-sxm]}\n"
                                                   "prices: {tiers: {eic: {usd_per_gib: 1, source: mine}}}\n",
                                                   "'prices.tiers.eic'", "prices nothing"),
    # an id past 64 bits reaches the check as the float orjson reads it as: it was "not a list of integers" (as 2.5
    # is) where an id of 2^63 in a token list was id_out_of_range, the reason README and trace.validation name for it
    "hash_ids_past_64_bits": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"id_out_of_range": 2, "bad_hash_ids": 1},
                                  files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [4, 2**64])
                                         + mooncake(30, 600, 5, [4, -2**63 - 1]) + mooncake(30, 600, 5, [4, 2.5])}),
    "token_ids_past_64_bits": Case(trace_stats(trace="{tmp}/l.jsonl"), skips={"id_out_of_range": 2,
                                                                               "negative_value": 1},
                                   files={"l.jsonl": "".join(
                                       f'{{"input_toks": 2, "output_toks": 5, "arrival_time_ns": {t}, '
                                       f'"input_tok_ids": [1, {i}]}}\n'
                                       for t, i in ((0, 2), (10, 2**63), (20, 2**64), (30, -2**64), (40, 3)))}),
    # an integer id past a double's range too (400 digits: Python's parser reads it as inf), as 2^64 is: it was
    # bad_hash_ids (non_numeric for a token id), "not a list of integers"
    "hash_ids_past_a_double": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"id_out_of_range": 2},
                                   files={"m.jsonl": MOONCAKE_OK + mooncake(30, 600, 5, [4, int("1" + "0" * 400)])
                                          + mooncake(30, 600, 5, [4, -int("1" + "0" * 400)])}),
    "token_ids_past_a_double": Case(trace_stats(trace="{tmp}/l.jsonl"), skips={"id_out_of_range": 1,
                                                                                "negative_value": 1},
                                    files={"l.jsonl": "".join(
                                        f'{{"input_toks": 2, "output_toks": 5, "arrival_time_ns": {t}, '
                                        f'"input_tok_ids": [1, {i}]}}\n'
                                        for t, i in ((0, 2), (10, 10**400), (20, -10**400), (40, 3)))}),
    # every tier with its own policy: cache.policy evicts from none (--policy lru,fifo: two runs so named, one policy)
    "policy_beside_every_tier_own": Case(["--cache-only", "--workload-trace", "{tmp}/m.jsonl", "--no-plot",
                                          "--capacity-blocks", "50", "--policy", "lru,fifo", "--set",
                                          "cache.tiers.hbm.policy=arc"],
                                         names=("--policy", "hbm arc", "cache.policy evicts from none"),
                                         files={"m.jsonl": MOONCAKE_OK}),
    "set_policy_beside_every_serving_tier_own": Case(["--workload-trace", "{tmp}/m.jsonl", "--no-plot",
                                                      *(x for t in ("hbm", "dram", "ssd")
                                                        for x in ("--set", f"cache.tiers.{t}.policy=arc")),
                                                      "--set", "cache.policy=fifo"],
                                                     names=("--set cache.policy", "hbm arc, dram arc, ssd arc"),
                                                     files={"m.jsonl": MOONCAKE_OK}),
    # a local checkpoint's folder written as a path, not there: its spelling without "./" and "/" is an entry's, and
    # the bundled llama-3.1-8b ran unsaid where an absolute path said "does not exist"
    "model_dot_slash_folder_absent": Case([*TRACE_STATS, "--workload-trace", "{tmp}/m.jsonl", "--set",
                                           "model=./Llama-3.1-8B/"],
                                          names=("'model'", "Llama-3.1-8B", "does not exist"),
                                          files={"m.jsonl": MOONCAKE_OK}),
    "model_hf_id_as_a_folder_absent": Case([*TRACE_STATS, "--workload-trace", "{tmp}/m.jsonl", "--set",
                                            "model=meta-llama/Llama-3.1-8B/"], names=("'model'", "does not exist"),
                                           files={"m.jsonl": MOONCAKE_OK}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_an_interval_of_values_whose_squares_pass_a_float_is_the_same_interval_scaled():
    """--seeds over --max-rate answers near 1e307 req/s (a drawn rate of 1e300): numpy's std squared them, overflowed
    (a RuntimeWarning on stderr, an internal error under -W error) and the interval's upper bound was inf, written as
    null. The interval of c·x is c times the interval of x (mean and standard deviation are both homogeneous)."""
    import warnings

    from experiments.confidence import interval

    small = [1.0, 1.2, 1.7]
    mean, (lo, hi) = interval(small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big_mean, (big_lo, big_hi) = interval([x * 1e307 for x in small])
    assert big_mean == pytest.approx(mean * 1e307, rel=1e-12)
    assert (big_lo, big_hi) == pytest.approx((lo * 1e307, hi * 1e307), rel=1e-12)


def test_a_sweep_point_whose_offered_rate_passes_a_float_fails_alone(run_cli, tmp_path):
    """A rate-scale axis of [1, 1e307] over a trace of 150 requests/s: the second point's offered_rps (the workload's
    rate x its scale) was infinite, and writing the report raised "Out of range float values are not JSON compliant"
    after every point had run (exit 1, a traceback). The point fails alone, naming the key, as a point does."""
    import json

    (tmp_path / "m.jsonl").write_text(MOONCAKE_OK)
    spec = tmp_path / "s.yaml"
    spec.write_text("mode: single\nworkload: {trace: m.jsonl}\naxes: {workload.rate_scale: [1, 1e307]}\n")
    report = tmp_path / "r.json"
    status, out, err = run_cli("--sweep", spec, "--no-plot", "--quiet", "--jobs", "1", "--report-json", report)
    assert "Traceback" not in out + err
    assert status == 2, err
    runs = json.loads(report.read_text())["runs"]
    assert runs[0]["metrics"]["offered_rps"] == pytest.approx(150.0)  # 3 requests over 0.02 s (Mooncake's ms)
    assert "'workload.rate_scale'=1e+307" in runs[1]["error"]
