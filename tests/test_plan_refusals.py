"""Plans refused before any candidate runs (exit 2 naming the key or the plan's field): the plan file's own fields
(``experiments.plan_file``) and the settings its runs would not read or that it replaces (``experiments.plan_checks``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_AZURE
from tests.test_planner import _plan


@pytest.mark.parametrize("body, needle", [
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "extra": 1}, "unknown key 'extra'"),
    ({"target": {"hit_ratio": 0.2, "slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"]}}, "exactly one target"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "gpus": [16]}}, "search.racks"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "racks": [1], "gpus": [8]}},
     "'search.gpus' does not apply to a fleet plan"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "nodes_per_rack": [0]}}, "search.nodes_per_rack"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["rtx4090"]}}, "no price for GPU 'rtx4090'"),
    # every unpriced GPU in one message: it named the first alone, and a second run found the next (hexplore7)
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm", "rtx4090", "l4"]},
      "prices": {"gpus": {"h100-sxm": {"usd_per_gpu_hour": 1, "source": "test"}}}},
     "no price for GPUs 'rtx4090', 'l4': add prices: {gpus: {rtx4090: {usd_per_gpu_hour: X, source: ...}, "
     "l4: {usd_per_gpu_hour: X, source: ...}}} to the plan"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "pd_split": ["2-1"]}}, "pd_split"),
    # a ratio's parts are ASCII digits: '²' passed str.isdigit and int() raised (exit 1), '١' (Arabic-Indic one) was
    # read as 1 (hfuzz9)
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "pd_split": ["²:1"]}},
     "'search.pd_split': '²:1' is not 'aggregated', 'all' or a ratio like '1:3'"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "pd_split": ["١:1"]}},
     "'search.pd_split': '١:1' is not 'aggregated', 'all' or a ratio like '1:3'"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "tiers": {"hbm": [1]}}}, "search.tiers.hbm"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"]}, "prices": {"gpus": {"h100-sxm": {"usd": 1}}}},
     "prices.gpus.h100-sxm.usd"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"]}, "set": {"slo.ttft_z": 1}}, "slo.ttft_z"),
    # a misspelt GPU's price left every candidate at the bundled one, exit 0 (hfuzz8)
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"]},
      "prices": {"gpus": {"h100-sx": {"usd_per_gpu_hour": 1}}}},
     "'prices.gpus.h100-sx': no candidate runs on it (search.gpu: h100-sxm)"),
    # an entry merged over the bundled one: {} or a source alone left the bundled price standing, exit 0; a list or
    # a number was read as no prices (hfuzz8); null is none given, as a null 'workload' or 'search.tiers' is
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": {"gpus": {"h100-sxm": {}}}},
     "'prices.gpus.h100-sxm' gives no 'usd_per_gpu_hour'"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": {"gpus": {"h100-sxm": {"source": "x"}}}},
     "'prices.gpus.h100-sxm' gives no 'usd_per_gpu_hour'"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": {"tiers": {"dram": {}}}},
     "'prices.tiers.dram' gives no 'usd_per_gib'"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": {"gpus": {}}},
     "'prices.gpus' is an empty mapping, which sets nothing"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": {}},
     "'prices' is an empty mapping, which sets nothing"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": []}, "'prices' must be a mapping, got []"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "prices": 0}, "'prices' must be a mapping, got 0"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"], "gpus": [1, 2]}}, "does not apply to a hit-ratio"),
    # a value given twice (two spellings of one GPU too) made two candidates of one name
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm", "H100"]}}, "'search.gpu' names 'h100-sxm' twice"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "gpus": [2, 2]}}, "'search.gpus' names 2 twice"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "pd_split": ["1:1", "1:1"]}},
     "'search.pd_split' names '1:1' twice"),
    # the curve that prunes a hit-ratio plan's candidates is of prompt blocks: answers inserted would not be in it
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "set": {"cache.insert_outputs": True}},
     "'cache.insert_outputs' under 'set'/'workload': a plan replays prompt blocks alone"),
    # one cache of fixed blocks replaces the tiers a plan searches: every mix measured the same (hplan)
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "set": {"cache.capacity_blocks": 50}},
     "'cache.capacity_blocks' under 'set'/'workload': a plan sizes the tiers it searches"),
    # a searched value outside its config key's domain is the plan's error (every candidate was "infeasible", exit 0)
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "racks": [1, 100_000_000],
                                                   "nodes_per_rack": [1]}}, "search.racks: config key 'cluster.num_racks'"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 1e30]}}},
     "search.tiers.dram: config key 'cache.tiers.dram.capacity_gib' must be >= 0 and <="),
    # an attainment beside a hit-ratio target was ignored (the replay has no clock)
    # "how much HBM?": the tier a capacity question names first is no searched tier; the error says what sizes it
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"], "tiers": {"hbm": [80]}}},
     "unknown key 'search.tiers.hbm'; valid keys: dram, ssd, eic (HBM is each GPU's memory: search 'gpu' types"),
    ({"target": {"hit_ratio": 0.2, "slo": {"attainment": 0.9}}, "search": {"gpu": ["h100-sxm"]}},
     "'target.slo.attainment' goes with latency targets"),
    # a split that needs more instances than the GPU counts make: not a TP that divides none
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "gpus": [1], "pd_split": ["1:3"]}},
     "the search space is empty: no 'search.pd_split' fits the instances of its GPU counts"),
    ({"target": {"slo": {"ttft_s": 1}}, "search": {"gpu": ["h100-sxm"], "gpus": [1], "tensor_parallel_size": [2]}},
     "the search space is empty: no GPU count of 'search.gpus' is a multiple of a 'search.tensor_parallel_size'"),
    # judged per candidate as a command-line run judges its own (sim.mode_settings.check_settings_given)
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "set": {"workload.outputs_in_next_turn": True}},
     "'workload.outputs_in_next_turn' under 'set'/'workload': the cache-only replay reads it only with"),
    ({"target": {"hit_ratio": 0.2}, "search": {"gpu": ["h100-sxm"]}, "set": {"cache.learned_model": str(BUNDLED_AZURE)}},
     "'cache.learned_model' under 'set'/'workload': no run uses the learned policy"),
])
def test_bad_plans_exit_2_naming_the_key(run_cli, tmp_path, body, needle):
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, **body}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot")
    assert status == 2 and needle in err, err


def test_a_null_prices_is_none_given(tmp_path):
    """``prices: null`` (a key left with every entry commented out) is no overrides, as a null 'workload', 'set' or
    'search.tiers' is: the plan's prices are the bundled ones, as with no key at all."""
    from experiments.plan_file import load_plan
    from experiments.prices import load_prices

    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "target": {"hit_ratio": 0.2},
            "search": {"gpu": ["h100-sxm"]}}
    plans = [load_plan(_plan(tmp_path, {**body, "prices": None}, "null.yaml")), load_plan(_plan(tmp_path, body))]
    assert [p.prices for p in plans] == [{}, {}]
    assert load_prices(plans[0].prices).to_dict() == load_prices(None).to_dict()


@pytest.mark.parametrize("setting, said, why", [
    ("capacity_blocks: 50", "config key 'cache.capacity_blocks'=50", "a plan sizes the tiers"),
    ("insert_outputs: true", "config key 'cache.insert_outputs'=True", "a plan replays prompt blocks alone")])
def test_a_plan_refuses_a_cache_setting_from_its_base_config(run_cli, tmp_path, setting, said, why):
    """cache.capacity_blocks from a config file (not 'set' or --set) replaced the tiers searched as well: both tier
    mixes replayed one cache of 50 blocks and measured the same hit ratio, exit 0; cache.insert_outputs there put
    generated blocks in caches the pruning curve (of prompt blocks) does not have, exit 0."""
    config = tmp_path / "fixed.yaml"
    config.write_text(f"cache:\n  {setting}\n")
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "target": {"hit_ratio": 0.2},
            "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 256]}}}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--config", config, "--no-plot")
    assert status == 2 and said in err and why in err, err


@pytest.mark.parametrize("pd_split, modes, refused", [
    (["aggregated"], ["single"], True), (["1:1"], ["pd"], False), (["aggregated", "1:1"], ["single", "pd"], False)])
def test_a_setting_is_refused_only_when_none_of_the_plans_modes_reads_it(tmp_path, pd_split, modes, refused):
    """pd.transfer is read by PD runs alone: a plan of aggregated splits (single-node runs) refuses it, one with a PD
    split keeps it, aggregated beside it included (its PD candidates read it)."""
    from experiments.plan_checks import candidate_modes, check_settings_read
    from experiments.plan_file import load_plan
    from sim.cli import build_parser
    from sim.config import load_config
    from sim.errors import ConfigError

    path = _plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "target": {"slo": {"ttft_s": 1}},
                            "search": {"gpu": ["h100-sxm"], "pd_split": pd_split}, "set": {"pd.transfer": "pull"}})
    plan = load_plan(path)
    assert candidate_modes(plan) == modes
    args = build_parser().parse_args(["--plan", path])
    if refused:
        with pytest.raises(ConfigError, match="'pd.transfer' under 'set'/'workload': not read by this plan's runs"):
            check_settings_read(plan, args, load_config(None))
    else:
        check_settings_read(plan, args, load_config(None))


@pytest.mark.parametrize("target_rate, said", [
    (100 / 2**30 / 2, "spreads its arrivals over 2.15e+09 s, more than 1.07e+09 s"), (100 / 2**30, None),
    (1e308 / 2**24, "its 24 doublings pass the largest rate scale, 1e+308"), (1e308 / 2**25, None)])
def test_a_target_rate_no_run_can_replay_is_refused_before_any_candidate_runs(tmp_path, target_rate, said):
    """By hand, a workload of 100 s at 1 req/s: a target rate r stretches its arrivals over 100 / r s, refused past
    MAX_TRACE_SPAN_S = 2^30 s (r = 100 / 2^31; 100 / 2^30 spans 2^30 s exactly and is kept); the max-rate search
    doubles the scale up to 24 times (maxrate.MAX_EXPANSIONS), refused where that reaches 1e308, the largest config
    number (r = 1e308 / 2^24; half of it is kept)."""
    from experiments.plan_checks import check_target_scale
    from experiments.plan_file import load_plan
    from sim.errors import ConfigError

    plan = load_plan(_plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE)}, "search": {"gpu": ["h100-sxm"]},
                                      "target": {"slo": {"ttft_s": 1}, "rate_rps": target_rate}}))
    if said is None:
        check_target_scale(plan, 100.0, 1.0, target_rate)
    else:
        with pytest.raises(ConfigError, match=re.escape(f"'target.rate_rps' {target_rate:.4g} req/s") + ".*" + re.escape(said)):
            check_target_scale(plan, 100.0, 1.0, target_rate)


def test_a_plan_whose_target_rate_spreads_its_arrivals_past_34_years_exits_2(run_cli, tmp_path):
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "search": {"gpu": ["h100-sxm"]},
            "target": {"slo": {"ttft_s": 1}, "rate_rps": 1e-12}}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot")
    assert status == 2 and "'target.rate_rps' 1e-12 req/s" in err and "spreads its arrivals over" in err, err



@pytest.mark.parametrize("pd_split, gpus, refused", [(["aggregated", "1:1"], 2, True),
                                                     (["aggregated", "1:2"], 3, False)])
def test_a_setting_only_another_modes_candidates_read_and_they_do_not_is_refused(run_cli, tmp_path, pd_split, gpus,
                                                                                 refused):
    """pd.decode_router is read by PD runs alone, and there only with two decode instances or more: beside an
    aggregated split (single-node runs, which never read it) the 1:1 split's one decode instance left it unread in
    every candidate, and the plan ran both, exit 0 (hfuzz9); 1:2 reads it. A run alone refuses both halves:
    --pd with pd.num_decode 1, and any single-node run."""
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "target": {"slo": {"ttft_s": 1}},
            "search": {"gpu": ["h100-sxm"], "gpus": [gpus], "pd_split": pd_split},
            "set": {"pd.decode_router": "prefix-aware"}}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot", "--quiet")
    if refused:
        assert status == 2 and "'pd.decode_router' under 'set'/'workload'" in err and "pd.num_decode is 1" in err, err
    else:
        assert status == 0, err


def _one_token_trace(tmp_path) -> str:
    """The bundled Azure trace's first 60 requests, each generating one token: no request has a TPOT."""
    rows = Path(BUNDLED_AZURE).read_text().splitlines()[:61]
    path = tmp_path / "one_token.csv"
    path.write_text("\n".join([rows[0], *(row.rsplit(",", 1)[0] + ",1" for row in rows[1:])]) + "\n")
    return str(path)


@pytest.mark.parametrize("slo", [{"tpot_s": 0.05}, {"ttft_s": 1, "tpot_s": 0.05}])
def test_a_tpot_target_over_a_workload_with_no_tpot_is_refused_before_any_candidate_runs(run_cli, tmp_path, slo):
    """No request generates a second token: a TPOT target judges nothing (a lone --max-rate run refuses it). The plan
    dropped it at each candidate's run: alone, every candidate failed 'needs a latency target: set slo.ttft_s and/or
    slo.tpot_s' (the plan sets one), chosen none, exit 0; beside a TTFT target the plan answered on TTFT alone, unsaid
    (hfuzz9)."""
    body = {"workload": {"trace": _one_token_trace(tmp_path)}, "target": {"slo": slo, "rate_rps": 5},
            "search": {"gpu": ["h100-sxm"], "gpus": [1]}}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot", "--quiet")
    assert (status, err) == (2, f"kvsim: error: plan {tmp_path / 'plan.yaml'}: 'target.slo.tpot_s' 0.05 judges "
                                f"nothing: no request of {tmp_path / 'one_token.csv'} generates more than one token, "
                                "so none has a TPOT\n")


def test_a_ttft_plan_over_a_workload_with_no_tpot_prints_its_proof(run_cli, tmp_path):
    """The proof's line formatted the proof run's TPOT p99, null where no request has a TPOT: a TypeError after the
    report was written (exit 1) for a valid TTFT target (hfuzz9). A dash, as the run summary prints a null."""
    body = {"workload": {"trace": _one_token_trace(tmp_path)}, "target": {"slo": {"ttft_s": 1}, "rate_rps": 5},
            "search": {"gpu": ["h100-sxm"], "gpus": [1]}}
    status, out, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot")
    assert status == 0, err
    proof = next(line for line in out.splitlines() if line.startswith("proof (meets)"))
    assert ", TPOT p99 – s" in proof and ", TTFT p99 " in proof, out


def test_a_plans_target_says_every_latency_target_its_runs_judge(run_cli, tmp_path):
    """slo.tpot_s under 'set' (or from a config file) beside target.slo.ttft_s: every run judged TPOT too, while the
    plan's target, printed and in the report, said TTFT alone (hfuzz9). The target is the runs' resolved SLO."""
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 30}, "set": {"slo.tpot_s": 0.05},
            "target": {"slo": {"ttft_s": 1}, "rate_rps": 5}, "search": {"gpu": ["h100-sxm"], "gpus": [1]}}
    out = tmp_path / "p.json"
    status, stdout, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot", "--report-json", out)
    assert status == 0, err
    report = json.loads(out.read_text())
    assert report["config"]["slo"] == {"ttft_s": 1.0, "tpot_s": 0.05, "attainment": 0.9}
    assert report["plan"]["target"]["slo"] == {"ttft_s": 1.0, "tpot_s": 0.05, "attainment": 0.9}
    assert "target: ttft_s=1, tpot_s=0.05, attainment=0.9 at 5 req/s" in stdout, stdout


def test_a_gpu_spec_name_too_long_is_refused_naming_the_key(run_cli, tmp_path):
    """search.gpu ['./NAME'] of a name past the system's 255 bytes: looking it up as a models.yaml name asked pathlib
    whether it exists, whose OSError (ENAMETOOLONG) was a traceback and internal error (exit 1, hfuzz9)."""
    body = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20}, "target": {"hit_ratio": 0.2},
            "search": {"gpu": ["./" + "x" * 300]}}
    status, _, err = run_cli("--plan", _plan(tmp_path, body), "--no-plot")
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"kvsim: error: plan {tmp_path}/plan.yaml: search.gpu: cannot read GPU spec ") and \
        err.endswith(": File name too long\n"), err
