"""Bad-input round 16 (hfuzz10): a plan's all-null SLO section, a Mooncake number too large for a float, --max-rate's
answer where no rate meets, and the surfaces earlier rounds touched least (--trace-stats, --seeds with --max-rate,
sweep zips with overlays, cluster keys at their edges, model entries, profile overlays)."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import Case, check_bad_input
from tests.test_bad_inputs import plan

CASES: dict[str, Case] = {
    # every entry null is none given, as `slo: {}` is: beside a hit ratio it loaded silently (sets nothing)
    "plan_slo_all_null_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: {ttft_s: null}}\n"
                                               "search: {gpu: [h100-sxm]}\n", "'target.slo'", "sets nothing"),
    "plan_slo_two_nulls_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: {ttft_s: null, tpot_s: null}}\n"
                                                "search: {gpu: [h100-sxm]}\n", "'target.slo'", "sets nothing"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
