"""Bad-input round 16 (hfuzz10): a plan's all-null SLO section, a Mooncake number too large for a float, --max-rate's
answer where no rate meets, and the surfaces earlier rounds touched least (--trace-stats, --seeds with --max-rate,
sweep zips with overlays, cluster keys at their edges, model entries, profile overlays)."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import AZURE_HEADER, MOONCAKE_OK, Case, check_bad_input, mooncake, trace_stats
from tests.test_bad_inputs import plan

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
    "mooncake_beyond_float_with_nan_literal": Case(trace_stats(trace="{tmp}/m.jsonl"), skips={"malformed_row": 1},
                                                   files={"m.jsonl": MOONCAKE_OK + mooncake(30, "1e400", 5, [4, 5],
                                                                                            ', "x": NaN')}),
    # resampling gaps that are all 0 (0 / 0): a RuntimeWarning, then "arrivals span nan s ... rate_rps=2 is too low"
    "resample_gaps_all_zero": Case(trace_stats("--set", "workload.arrivals.process=resample", "--set",
                                               "workload.arrivals.rate_rps=2"),
                                   names=("'workload.arrivals.process'=resample", "all arrive at the same time"),
                                   files={"t.csv": AZURE_HEADER + "2023-11-16 18:15:50,300,10\n" * 3}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
