"""Bad sweep specs and plan files: each one short line naming the file and key (exit 2), before any point runs.

The cases' table format is ``tests/bad_input_helpers.py``'s; other bad inputs are in ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import Case, check_bad_input

SLO_TARGET = "target: {slo: {ttft_s: 0.3}}\n"
HIT_TARGET = "target: {hit_ratio: 0.5}\n"


def plan(text: str, *names: str) -> Case:
    """A plan file ``text`` refused (exit 2) with a line naming the plan and ``names``."""
    return Case(["--plan", "{tmp}/p.yaml", "--workload-limit", "50"], names=("p.yaml", *names), files={"p.yaml": text})


def sweep_section(text: str, *names: str) -> Case:
    """A sweep spec of one axis with ``text`` beside it, refused (exit 2) with a line naming the spec and ``names``."""
    return Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", *names),
                files={"s.yaml": "mode: cache-only\naxes: {cache.policy: [lru]}\n" + text})


CASES: dict[str, Case] = {
    "sweep_axis_value_repeated": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "point 2 repeats point 1", "lru"),
                                      files={"s.yaml": "mode: cache-only\naxes: {cache.policy: [lru, lru]}\n"}),
    "sweep_points_same_name": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "both be named 'x'"),
                                   files={"s.yaml": "mode: cache-only\naxes: {workload.trace: [a/x.csv, b/x.csv]}\n"}),
    # a product of a million points was expanded and each validated (~14 ms) before the first ran: hours, no output
    "sweep_points_beyond_bound": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "1,000,000 points", "10,000"),
                                      files={"s.yaml": "mode: cache-only\naxes:\n  cache.capacity_blocks: ["
                                             + ", ".join(map(str, range(1, 1001))) + "]\n  seed: ["
                                             + ", ".join(map(str, range(1000))) + "]\n"}),
    "sweep_key_fixed_and_varied": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "'cache.policy'", "fixed"),
                                       files={"s.yaml": "mode: cache-only\nset: {cache.policy: arc}\n"
                                                        "axes: {cache.policy: [lru, fifo]}\n"}),
    "plan_syntax_error_one_line": Case(["--plan", "{tmp}/p.yaml"], names=("p.yaml", "line 2"), files={"p.yaml": "target: {slo: [\n"}),
    "plan_empty": Case(["--plan", "{tmp}/p.yaml"], names=("p.yaml", "empty"), files={"p.yaml": "# nothing yet\n"}),
    # '2:2' is the ratio '1:1': it added no candidate, unsaid (as two spellings of one GPU are refused)
    "plan_split_twice_in_other_terms": plan(SLO_TARGET + "search: {gpu: [h100-sxm], pd_split: ['1:1', '2:2']}\n",
                                            "'search.pd_split'", "'1:1' and '2:2'"),
    # a plan's target and search values are judged in the plan, by its key: they were found as a run's override
    # ("override: config key 'slo.ttft_s' must be > 0"), naming neither the plan nor its key
    "plan_slo_negative": Case(["--plan", "{tmp}/p.yaml", "--workload-limit", "50"], names=("p.yaml", "'target.slo.ttft_s'", "-1"),
                              files={"p.yaml": "target: {slo: {ttft_s: -1}}\nsearch: {gpu: [h100-sxm], gpus: [1]}\n"}),
    # a finite target kvsim's config reads as infinite (1e308 or more) was found as a run's override, naming neither
    # the plan nor its key (hfuzz9)
    "plan_slo_past_the_largest_config_number": plan("target: {slo: {ttft_s: 1, tpot_s: 1.7e308}}\n"
                                                    "search: {gpu: [h100-sxm]}\n", "'target.slo.tpot_s'", "1.7e+308"),
    # a rate whose scale underflows to 0 (5e-324 req/s over the workload's own) divided by zero: internal error, exit 1
    # a price's source (the text the report cites beside it) as a number, a list or empty: cited as written, exit 0
    "plan_price_source_not_text": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {gpus: {h100-sxm: "
                                       "{usd_per_gpu_hour: 3, source: 5}}}\n", "prices.gpus.h100-sxm.source must be text",
                                       "got 5"),
    "plan_price_source_empty": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {tiers: {dram: "
                                    "{usd_per_gib: 3, source: ''}}}\n", "prices.tiers.dram.source must be text"),
    "plan_rate_underflows": plan(SLO_TARGET.replace("}}", "}, rate_rps: 5e-324}") + "search: {gpu: [h100-sxm]}\n",
                                 "'target.rate_rps' 4.941e-324 req/s", "spreads its arrivals over inf s"),
    "plan_rate_nan": Case(["--plan", "{tmp}/p.yaml", "--workload-limit", "50"], names=("p.yaml", "'target.rate_rps'"),
                          files={"p.yaml": "target: {slo: {ttft_s: 0.3}, rate_rps: .nan}\nsearch: {gpu: [h100-sxm], gpus: [1]}\n"}),
    "plan_tier_nan": Case(["--plan", "{tmp}/p.yaml", "--workload-limit", "50"], names=("p.yaml", "'search.tiers.dram'", "nan"),
                          files={"p.yaml": "target: {slo: {ttft_s: 0.3}}\nsearch: {gpu: [h100-sxm], gpus: [1], tiers: {dram: [.nan]}}\n"}),
    # search.rate_tolerance and search.mrc_epsilon were read with float() and never checked: a word was a traceback
    # (exit 1), a tolerance of 0 or below bisected the rate for ever, NaN skipped the bisection unsaid
    "plan_rate_tolerance_zero": plan(SLO_TARGET + "search: {gpu: [h100-sxm], rate_tolerance: 0}\n",
                                     "'search.rate_tolerance'", "got 0"),
    "plan_rate_tolerance_word": plan(SLO_TARGET + "search: {gpu: [h100-sxm], rate_tolerance: abc}\n",
                                     "'search.rate_tolerance'", "'abc'"),
    "plan_rate_tolerance_nan": plan(SLO_TARGET + "search: {gpu: [h100-sxm], rate_tolerance: .nan}\n",
                                    "'search.rate_tolerance'", "nan"),
    "plan_mrc_epsilon_word": plan(HIT_TARGET + "search: {gpu: [h100-sxm], mrc_epsilon: [0.1]}\n",
                                  "'search.mrc_epsilon'", "[0.1]"),
    "plan_mrc_epsilon_negative": plan(HIT_TARGET + "search: {gpu: [h100-sxm], mrc_epsilon: -1}\n",
                                      "'search.mrc_epsilon'", "-1"),
    # a hit-ratio target's candidates are cache-only replays: no rate is searched, the tolerance was ignored (exit 0)
    "plan_rate_tolerance_with_hit_target": plan(HIT_TARGET + "search: {gpu: [h100-sxm], rate_tolerance: 0.05}\n",
                                                "'search.rate_tolerance'", "hit-ratio target"),
    "plan_hit_ratio_bool": plan("target: {hit_ratio: true}\nsearch: {gpu: [h100-sxm]}\n", "'target.hit_ratio'", "true, a boolean"),
    # prices.gpus as a list: AttributeError, exit 1; an unknown key's quotes took the plan's path in as part of the key
    "plan_prices_gpus_list": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {gpus: [1]}\n",
                                  "'prices.gpus'", "mapping"),
    "plan_prices_tiers_list": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {tiers: [dram]}\n",
                                   "'prices.tiers'", "mapping"),
    # one GPU priced under two spellings (h100-sxm and its alias H100; a spec file as g.yaml and ./g.yaml): the later
    # price replaced the earlier, unsaid, and the plan was costed at it (exit 0)
    "plan_prices_gpu_twice": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {gpus: {h100-sxm: {usd_per_gpu_hour: "
                                  "1, source: a}, H100: {usd_per_gpu_hour: 2, source: b}}}\n",
                                  "'prices.gpus' prices h100-sxm twice, as 'h100-sxm' and 'H100'"),
    "plan_prices_unknown_key": plan(SLO_TARGET + "search: {gpu: [h100-sxm]}\nprices: {h100-sxm: 5}\n",
                                    "p.yaml: unknown key 'prices.h100-sxm'"),
    # a falsy value of the wrong shape was read as the key not given, exit 0 (as 'prices: []' was: hfuzz8): an
    # SLO list beside a hit-ratio target, a tiers list (no tier searched), an overlays mapping or number (none merged)
    # (hfuzz9)
    "plan_slo_list_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: []}\nsearch: {gpu: [h100-sxm]}\n",
                                           "'target.slo' must be a mapping"),
    "plan_slo_zero": plan("target: {hit_ratio: 0.5, slo: 0}\nsearch: {gpu: [h100-sxm]}\n",
                          "'target.slo' must be a mapping"),
    "plan_tiers_list": plan(HIT_TARGET + "search: {gpu: [h100-sxm], tiers: []}\n", "'search.tiers' must be a mapping"),
    "plan_tiers_false": plan(HIT_TARGET + "search: {gpu: [h100-sxm], tiers: false}\n",
                             "'search.tiers' must be a mapping"),
    "plan_overlays_mapping": plan("overlays: {}\n" + HIT_TARGET + "search: {gpu: [h100-sxm]}\n",
                                  "'overlays' must be a list of file paths"),
    # a section given as an empty mapping or list set nothing and was read as the key not given, exit 0, where a
    # plan's 'prices: {}' was refused (hfuzz8): refused as it is, null staying none given (hfuzz9's leftovers)
    "sweep_set_empty": sweep_section("set: {}\n", "'set' is an empty mapping, which sets nothing"),
    "sweep_workload_empty": sweep_section("workload: {}\n", "'workload' is an empty mapping, which sets nothing"),
    "sweep_zip_empty": sweep_section("zip: []\n", "'zip' is an empty list, which sets nothing"),
    "sweep_axes_empty_beside_a_zip": Case(["--sweep", "{tmp}/s.yaml"],
                                          names=("s.yaml", "'axes' is an empty mapping, which sets nothing"),
                                          files={"s.yaml": "mode: cache-only\naxes: {}\n"
                                                           "zip: [{cache.policy: [lru, fifo]}]\n"}),
    "sweep_overlays_empty": sweep_section("overlays: []\n", "'overlays' is an empty list, which sets nothing"),
    "plan_set_empty": plan("set: {}\n" + HIT_TARGET + "search: {gpu: [h100-sxm]}\n",
                           "'set' is an empty mapping, which sets nothing"),
    "plan_workload_empty": plan("workload: {}\n" + HIT_TARGET + "search: {gpu: [h100-sxm]}\n",
                                "'workload' is an empty mapping, which sets nothing"),
    "plan_tiers_empty": plan(HIT_TARGET + "search: {gpu: [h100-sxm], tiers: {}}\n",
                             "'search.tiers' is an empty mapping, which sets nothing"),
    "plan_slo_empty_beside_hit_ratio": plan("target: {hit_ratio: 0.5, slo: {}}\nsearch: {gpu: [h100-sxm]}\n",
                                            "'target.slo' is an empty mapping, which sets nothing"),
    # a NUL byte in a path a YAML file gives ("\0" in YAML): pathlib's ValueError was an internal error (exit 1) where
    # a file was opened (an overlay, a GPU spec) or the cache path resolved (hfuzz9)
    "sweep_overlay_path_with_a_nul": Case(["--sweep", "{tmp}/s.yaml"],
                                          names=("cannot read calibration profile", "a\\x00b.yaml",
                                                 "embedded null byte"),
                                          files={"s.yaml": 'mode: cache-only\noverlays: ["a\\0b.yaml"]\n'
                                                           "axes: {cache.policy: [lru]}\n"}),
    "plan_gpu_spec_path_with_a_nul": plan(HIT_TARGET + 'search: {gpu: ["./a\\0b"]}\n', "cannot read GPU spec",
                                          "a\\x00b", "embedded null byte"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_plan_or_sweep_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
