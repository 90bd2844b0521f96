"""--plan: least-cost configuration for a target, MRC pruning, proving runs, prices with sources."""

from __future__ import annotations

import json

import pytest
import yaml

from experiments.prices import load_prices
from sim.specs import PROFILES_DIR
from tests.conftest import BUNDLED_AZURE, ROOT

# The README's planner example, exactly (tests/test_readme.py checks the README still shows it).
README_PLAN = ["--plan", "experiments/examples/plan_azure.yaml", "--workload-limit", "300"]


def _plan(tmp_path, body: dict, name="plan.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def _attainment(run_cli, tmp_path, overrides: dict, rate_scale: float, slo: dict) -> float:
    """An independent single run through the ordinary command line at the target rate."""
    out = tmp_path / "check.json"
    mode = ["--pd"] if "pd.num_prefill" in overrides else []
    # (the targets the run reports its slo_attainment against; the attainment itself is --max-rate's alone)
    slo = {f"slo.{k}": v for k, v in slo.items() if k != "attainment"}
    sets = [f"{k}={v}" for k, v in {**overrides, **slo}.items()]
    argv = [*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "300", "--rate-scale", repr(rate_scale),
            "--report-json", out, "--no-plot", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    assert run_cli(*argv)[0] == 0
    return json.loads(out.read_text())["runs"][0]["metrics"]["slo_attainment"]


def test_azure_plan_finds_the_least_cost_gpu_count_and_split(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "plan.json"
    status, stdout, err = run_cli(*README_PLAN, "--jobs", "2", "--report-json", out, "--plot-dir", tmp_path)
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    chosen, proof, target = plan["chosen"], plan["proof"], plan["target"]
    assert target["slo"] == {"ttft_s": 0.3, "attainment": 0.99}  # TTFT p99 <= 0.3 s
    # what it prints: the GPU count and split of the answer, the Pareto front and both proving runs
    chosen_line = next(line for line in stdout.splitlines() if line.startswith("chosen:"))
    gpus = chosen["overrides"].get("serving.num_instances") or \
        chosen["overrides"]["pd.num_prefill"] + chosen["overrides"]["pd.num_decode"]
    assert f"{gpus} GPUs" in chosen_line
    assert ("aggregated" in chosen_line) == ("serving.num_instances" in chosen["overrides"])
    assert "Pareto front" in stdout and "proof (meets)" in stdout and "proof (fails)" in stdout
    # the answer is the cheapest candidate whose searched max rate reaches the target ...
    timed = [c for c in plan["candidates"] if c["status"] == "timed"]
    cheaper = [c for c in timed if c["cost_usd_per_hour"] < chosen["cost_usd_per_hour"] - 1e-9]
    assert chosen["max_rate_rps"] >= target["rate_rps"]
    assert cheaper and all(c["max_rate_rps"] < target["rate_rps"] for c in cheaper)
    # ... and the proving runs hold when rerun independently through the ordinary command line
    assert proof["meets"]["name"] == chosen["name"] and proof["fails"]["cost_usd_per_hour"] < chosen["cost_usd_per_hour"]
    slo = {"ttft_s": 0.3, "attainment": 0.99}
    assert _attainment(run_cli, tmp_path, proof["meets"]["overrides"], target["rate_scale"], slo) >= 0.99
    assert _attainment(run_cli, tmp_path, proof["fails"]["overrides"], target["rate_scale"], slo) < 0.99
    # the Azure conversation trace has no block reuse, so the curve prunes every extra DRAM option
    assert all(c["status"] == "pruned" for c in plan["candidates"] if "dram=256GiB" in c["name"])
    assert all(c["status"] != "pruned" for c in plan["candidates"] if "dram=0GiB" in c["name"])
    assert (tmp_path / "plan_pareto.png").stat().st_size > 10_000


def test_hit_ratio_plan_uses_the_exact_curve_and_replays_agree(run_cli, tmp_path, shared_data):
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    plan_path = _plan(tmp_path, {
        "workload": {"trace": str(trace), "limit": 3000}, "set": {"serving.block_size": 512},
        "target": {"hit_ratio": 0.2},
        "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 256, 1024], "ssd": [0, 2048]}},
    })
    out = tmp_path / "plan.json"
    status, stdout, err = run_cli("--plan", plan_path, "--jobs", "2", "--report-json", out, "--no-plot")
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    timed = [c for c in plan["candidates"] if c["status"] == "timed"]
    assert timed
    for c in timed:  # an exclusive LRU hierarchy is one LRU stack: the replay equals the one-pass curve
        assert c["hit_ratio"] == pytest.approx(c["mrc_hit_ratio"][-1], abs=1e-12)
    meeting = sorted((c for c in plan["candidates"] if c["mrc_hit_ratio"][-1] >= 0.2),
                     key=lambda c: c["cost_usd_per_hour"])
    assert plan["chosen"]["name"] == meeting[0]["name"]
    assert all(c["status"] == "pruned" for c in plan["candidates"] if c["mrc_hit_ratio"][-1] < 0.2)
    assert plan["proof"]["fails"]["meets"] is False and plan["proof"]["fails"]["measured"] < 0.2


def _cluster_hit_ratio(run_cli, tmp_path, base: list[str], overrides: dict) -> float:
    """An independent run of the fleet through the ordinary command line (``--cluster``)."""
    out = tmp_path / "fleet.json"
    argv = ["--cluster", *base, "--report-json", out, "--no-plot", "--quiet"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    assert run_cli(*argv)[0] == 0
    return json.loads(out.read_text())["runs"][0]["metrics"]["hit_ratio"]


def test_fleet_plan_sizes_rack_eic_for_a_hit_ratio(run_cli, tmp_path, shared_data):
    # Small HBM and no node tiers: only the rack's EIC pool can lift the hit ratio. The plan searches
    # racks x nodes and EIC GiB per rack; costs are GPUs plus EIC per rack, as priced in profiles/prices.yaml.
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    # 259 usable blocks of 512 tokens (one is vLLM's null block) hold the longest of these 2,000 requests, 123,783 tokens
    # with its output: a candidate that cannot run every request is no answer
    fixed = {"serving.num_gpu_blocks": 260, "cache.tiers.dram.capacity_gib": 0, "cache.tiers.ssd.capacity_gib": 0,
             "cluster.router": "round-robin"}
    plan_path = _plan(tmp_path, {
        "workload": {"trace": str(trace), "limit": 2000}, "set": fixed, "target": {"hit_ratio": 0.1},
        "search": {"gpu": ["h100-sxm"], "racks": [1, 2], "nodes_per_rack": [2], "tiers": {"eic": [0, 256]}},
    })
    out = tmp_path / "plan.json"
    status, stdout, err = run_cli("--plan", plan_path, "--jobs", "2", "--report-json", out, "--no-plot")
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    table = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    gib_hour = table["tiers"]["eic"]["usd_per_gib"] / (table["amortization_years"] * 8766)
    for c in plan["candidates"]:
        racks, eic = c["overrides"]["cluster.num_racks"], c["overrides"]["cache.tiers.eic.capacity_gib"]
        gpus = racks * 2 * 8  # hardware.gpus_per_node defaults to 8
        assert c["mode"] == "cluster"
        assert c["cost_usd_per_hour"] == pytest.approx(gpus * table["gpus"]["h100-sxm"]["usd_per_gpu_hour"]
                                                       + eic * racks * gib_hour)
    meeting = sorted((c for c in plan["candidates"] if (c["hit_ratio"] or 0) >= 0.1), key=lambda c: c["cost_usd_per_hour"])
    chosen = plan["chosen"]
    assert meeting and chosen["name"] == meeting[0]["name"]
    assert chosen["overrides"]["cache.tiers.eic.capacity_gib"] > 0  # without EIC no fleet reaches it
    assert "1 rack x 2 nodes" in next(line for line in stdout.splitlines() if line.startswith("chosen:"))
    base = ["--workload-trace", str(trace), "--workload-limit", "2000"] + [a for k, v in fixed.items()
                                                                           for a in ("--set", f"{k}={v}")]
    meets, fails = plan["proof"]["meets"], plan["proof"]["fails"]
    assert meets["measured"] >= 0.1 > fails["measured"] and fails["cost_usd_per_hour"] < meets["cost_usd_per_hour"]
    assert _cluster_hit_ratio(run_cli, tmp_path, base, meets["overrides"]) == pytest.approx(meets["measured"])
    assert _cluster_hit_ratio(run_cli, tmp_path, base, fails["overrides"]) == pytest.approx(fails["measured"])


def test_a_fleet_plan_replays_what_the_curve_pruned_when_nothing_timed_meets(run_cli, tmp_path):
    """Round-robin instances each keep their own HBM, so a rack's EIC gains in the runs where the curve, which pools
    the instances' HBMs into one LRU stack, shows none: it pruned EIC 256 GiB beside 64, and a target between the
    two fleets' measured hit ratios was answered "chosen: none" (hhunt6). The target here is set between the two
    from independent --cluster runs; the plan replays the pruned candidate and chooses it, the cheaper one the
    proof that fails."""
    fixed = {"serving.num_gpu_blocks": 2000, "serving.max_model_len": 6384, "cache.tiers.dram.capacity_gib": 0,
             "cache.tiers.ssd.capacity_gib": 0, "cluster.router": "round-robin"}
    synthetic = {"kind": "multi-turn", "num_requests": 1500, "rate_rps": 20, "input_tokens_mean": 128,
                 "think_time_median_s": 20}
    base = [a for k, v in {**fixed, **{f"workload.synthetic.{k}": v for k, v in synthetic.items()},
                           "cluster.num_racks": 1, "cluster.nodes_per_rack": 2}.items() for a in ("--set", f"{k}={v}")]
    small, large = (_cluster_hit_ratio(run_cli, tmp_path, base, {"cache.tiers.eic.capacity_gib": gib})
                    for gib in (64, 256))
    assert large > small + 0.001  # (the plan's mrc_epsilon: the gain the curve would have had to show)
    target = (small + large) / 2
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": synthetic}, "set": fixed, "target": {"hit_ratio": target},
        "search": {"gpu": ["h100-sxm"], "racks": [1], "nodes_per_rack": [2], "tiers": {"eic": [0, 64, 256]}},
    })
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "2", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    by_gib = {c["overrides"]["cache.tiers.eic.capacity_gib"]: c for c in plan["candidates"]}
    # (what this test is about: the curve pruned the answer; run, it is timed, and on the front, as the others run)
    assert by_gib[256]["reason"].startswith("pruned by the miss-ratio curve (no tier level gains over")
    assert by_gib[256]["status"] == "timed" and by_gib[256]["pareto"]
    meets, fails = plan["proof"]["meets"], plan["proof"]["fails"]
    assert plan["chosen"]["overrides"]["cache.tiers.eic.capacity_gib"] == 256
    assert meets["measured"] == pytest.approx(large) and fails["measured"] == pytest.approx(small)


def _serving_metrics(run_cli, tmp_path, sets: dict, *flags: str) -> dict:
    """An independent single-node run (``--max-rate``, ``--rate-scale X``) through the ordinary command line."""
    out = tmp_path / "single.json"
    argv = [*flags, "--report-json", out, "--no-plot", "--quiet"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    assert run_cli(*argv)[0] == 0
    return json.loads(out.read_text())["runs"][0]["metrics"]


def test_an_slo_plan_runs_what_the_curve_pruned_when_nothing_timed_meets(run_cli, tmp_path):
    """The curve pools the instances' HBMs into one LRU stack: 4 system prompts of 4,096 tokens (1,024 blocks of 16)
    fit two round-robin instances' 600 blocks each pooled, so it shows 16 GiB of DRAM gaining nothing and prunes it;
    but each instance sees every prompt and holds about two, so in the runs the DRAM serves prefixes that would be
    prefilled again, and its max rate meeting TTFT <= 0.2 s for 90% of requests is higher. The target rate is set
    between the two candidates' max rates from independent --max-rate runs: the plan answered "chosen: none", the
    candidate that meets unrun. It runs it, chooses it (timed, on the Pareto front: its status, not "pruned"), and the
    cheaper candidate is the proof that fails; the chosen one meets at the target in an independent run too."""
    synthetic = {"kind": "system-prompt", "num_requests": 300, "rate_rps": 5, "num_prefixes": 4,
                 "prefix_tokens": 4096, "input_tokens_mean": 64, "output_tokens_mean": 32}
    fixed = {"serving.num_gpu_blocks": 600, "cache.tiers.ssd.capacity_gib": 0, "cluster.router": "round-robin"}
    slo = {"ttft_s": 0.2, "attainment": 0.9}
    sets = {**fixed, **{f"workload.synthetic.{k}": v for k, v in synthetic.items()},
            **{f"slo.{k}": v for k, v in slo.items()}, "serving.num_instances": 2, "hardware.gpu": "h100-sxm"}
    small, large = (_serving_metrics(run_cli, tmp_path, {**sets, "cache.tiers.dram.capacity_gib": gib}, "--max-rate")
                    for gib in (0, 16))
    assert large["max_rate_rps"] > 1.1 * small["max_rate_rps"]  # (a gap well past the 2% search bracket)
    target = (small["max_rate_rps"] * large["max_rate_rps"]) ** 0.5
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": synthetic}, "set": fixed, "target": {"slo": slo, "rate_rps": target},
        "search": {"gpu": ["h100-sxm"], "gpus": [2], "tensor_parallel_size": [1], "pd_split": ["aggregated"],
                   "tiers": {"dram": [0, 16]}},
    })
    out = tmp_path / "plan.json"
    status, stdout, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot")
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    by_gib = {c["overrides"]["cache.tiers.dram.capacity_gib"]: c for c in plan["candidates"]}
    assert by_gib[16]["mrc_hit_ratio"] == by_gib[0]["mrc_hit_ratio"]  # the curve shows no gain: it pruned the answer
    assert plan["chosen"] is not None and plan["chosen"]["name"] == by_gib[16]["name"]
    assert by_gib[16]["status"] == "timed"
    assert by_gib[16]["reason"].startswith("pruned by the miss-ratio curve (no tier level gains over")
    assert by_gib[16]["max_rate_rps"] >= target and by_gib[16]["pareto"] and by_gib[16]["name"] in plan["pareto"]
    meets, fails = plan["proof"]["meets"], plan["proof"]["fails"]
    assert meets["name"] == by_gib[16]["name"] and fails["name"] == by_gib[0]["name"]
    assert meets["measured"] >= 0.9 > fails["measured"]
    at_target = {k: v for k, v in sets.items() if k != "slo.attainment"}  # (read by --max-rate alone)
    assert _serving_metrics(run_cli, tmp_path, {**at_target, "cache.tiers.dram.capacity_gib": 16}, "--rate-scale",
                            repr(plan["target"]["rate_scale"]))["slo_attainment"] >= 0.9
    assert f"chosen: {by_gib[16]['name']}" in stdout
    # its run is in the report's runs, as every timed candidate's is
    assert by_gib[16]["name"] in [r["name"] for r in json.loads(out.read_text())["runs"]]


def test_moe_data_parallel_groups_rule_out_candidates_before_any_run(tmp_path):
    from experiments.plan_candidates import enumerate_candidates
    from experiments.plan_file import load_plan
    from sim.config import load_config

    plan = load_plan(_plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE)}, "target": {
        "slo": {"ttft_s": 0.3, "attainment": 0.99}, "rate_rps": 40}, "search": {
        "gpu": ["h100-sxm"], "gpus": [1, 2, 4], "tensor_parallel_size": [1, 4], "pd_split": ["aggregated", "all"]}}))
    base = load_config(None, sets=["model=qwen3-30b-a3b", "serving.data_parallel_size=2", "hardware.gpus_per_node=4"])
    candidates = enumerate_candidates(plan, base, load_prices({}))
    feasible = {c.name for c in candidates if c.status != "infeasible"}
    # groups of 2 instances: 1 GPU cannot hold one, and a pool of 1 or 3 instances does not split into groups;
    # at TP 4 a group needs 8 GPUs of a 4-GPU node (refused by the config rules: infeasible, not a failed plan)
    assert feasible == {"2xh100-sxm tp1 aggregated", "4xh100-sxm tp1 aggregated", "4xh100-sxm tp1 2P:2D"}
    assert "needs 8 GPUs" in next(c.reason for c in candidates if c.name == "4xh100-sxm tp4 aggregated")


def test_a_candidate_the_config_rules_refuse_is_infeasible_in_a_whole_plan(run_cli, tmp_path):
    """A candidate the config rules refuse (TP 16 on an 8-GPU node) has no config: the check that no output path is
    one of the candidates' input files read a setting of None (AttributeError, exit 1, before hfuzz8). It is listed
    as infeasible, naming the rule, and the plan runs the others (exit 0)."""
    plan_path = _plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE), "limit": 20},
                                 "target": {"hit_ratio": 0.01},
                                 "search": {"gpu": ["h100-sxm"], "tensor_parallel_size": [1, 16]}})
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    status_of = {c["name"]: (c["status"], c.get("reason", "")) for c in json.loads(out.read_text())["plan"]["candidates"]}
    assert status_of["16xh100-sxm tp16 aggregated"] == (
        "infeasible", "config key 'serving.tensor_parallel_size'=16 exceeds 'hardware.gpus_per_node'=8")
    assert status_of["1xh100-sxm tp1 aggregated"][0] != "infeasible"


def test_curve_counts_the_configured_tiers_the_search_does_not_vary(run_cli, tmp_path):
    """The miss-ratio curve's tier levels are the candidate's tiers as it runs: a plan searching SSD only, over a
    config with 16 GiB of DRAM, must not price the curve as if DRAM were absent and prune (as an exact miss) a
    candidate whose replay meets the target. The expectation is an independent cache-only run of the same config."""
    synthetic = {"kind": "multi-turn", "num_requests": 300, "rate_rps": 20, "input_tokens_mean": 512,
                 "think_time_median_s": 20}
    fixed = {"serving.num_gpu_blocks": 300, "cache.tiers.dram.capacity_gib": 16, "cache.tiers.ssd.capacity_gib": 0}
    out = tmp_path / "alone.json"
    argv = ["--cache-only", "--report-json", out, "--no-plot", "--quiet"]
    for key, value in {**{f"workload.synthetic.{k}": v for k, v in synthetic.items()}, **fixed}.items():
        argv += ["--set", f"{key}={value}"]
    assert run_cli(*argv)[0] == 0
    alone = json.loads(out.read_text())["runs"][0]["metrics"]["hit_ratio"]
    assert alone > 0.05  # the DRAM holds the conversations: without it HBM alone gets well under 0.01
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": synthetic}, "set": {k: v for k, v in fixed.items() if "ssd" not in k},
        "target": {"hit_ratio": round(alone - 0.005, 4)}, "search": {"gpu": ["h100-sxm"], "tiers": {"ssd": [0, 1]}},
    })
    plan_out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", plan_out, "--no-plot", "--quiet")
    assert status == 0, err
    plan = json.loads(plan_out.read_text())["plan"]
    assert plan["chosen"] is not None and plan["chosen"]["overrides"]["cache.tiers.ssd.capacity_gib"] == 0
    assert plan["chosen"]["hit_ratio"] == pytest.approx(alone)


def test_each_candidates_curve_is_of_blocks_of_its_own_size(run_cli, tmp_path):
    """vLLM serves an MLA model in 16-token blocks on an H100 and in 32-token ones on a B200 (FlashInfer-MLA's
    kernels: sim.serving.attention_backend), so the two candidates replay different block streams, each its own
    2,000 HBM blocks. Each one's miss-ratio curve must be read off its own stream: with HBM the only tier an LRU
    replay equals the one-pass curve at its capacity (as for one block size above), and a B200 whose replay meets
    the target is not pruned as an exact miss by the H100's 16-token curve."""
    synthetic = {"kind": "multi-turn", "num_requests": 300, "rate_rps": 20, "input_tokens_mean": 512,
                 "think_time_median_s": 20, "start": "empty"}  # the target below lies between this workload's ratios
    fixed = {"model": "deepseek-v2-lite", "serving.num_gpu_blocks": 2000, "cache.tiers.dram.capacity_gib": 0,
             "cache.tiers.ssd.capacity_gib": 0}
    alone = {}
    for gpu in ("h100-sxm", "b200"):  # independent cache-only runs of each candidate's config
        out = tmp_path / f"{gpu}.json"
        argv = ["--cache-only", "--report-json", out, "--no-plot", "--quiet", "--set", f"hardware.gpu={gpu}"]
        for key, value in {**{f"workload.synthetic.{k}": v for k, v in synthetic.items()}, **fixed}.items():
            argv += ["--set", f"{key}={value}"]
        assert run_cli(*argv)[0] == 0
        alone[gpu] = json.loads(out.read_text())["runs"][0]["metrics"]["hit_ratio"]
    target = 0.03
    assert alone["h100-sxm"] < target < alone["b200"]
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": synthetic}, "set": fixed, "target": {"hit_ratio": target},
        "search": {"gpu": ["h100-sxm", "b200"]},
        "prices": {"gpus": {"b200": {"usd_per_gpu_hour": 6.0, "source": "test"}}},
    })
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    plan = json.loads(out.read_text())["plan"]
    curve = {c["overrides"]["hardware.gpu"]: c["mrc_hit_ratio"][-1] for c in plan["candidates"]}
    assert curve == pytest.approx(alone, abs=1e-12)
    assert plan["chosen"] is not None and plan["chosen"]["overrides"]["hardware.gpu"] == "b200"


def test_a_trace_replayed_in_its_own_blocks_sizes_the_curve_in_them(run_cli, tmp_path, shared_data):
    """Mooncake's 512-token blocks are the run's by default (workload.block_mismatch=trace): a candidate's capacity
    on the curve is counted in them, as its replay counts it, not in the 16-token blocks of a null
    serving.block_size (32 times as many). HBM the only tier: the replay equals the curve."""
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    plan_path = _plan(tmp_path, {
        "workload": {"trace": str(trace), "limit": 3000},
        "set": {"cache.tiers.dram.capacity_gib": 0, "cache.tiers.ssd.capacity_gib": 0},
        "target": {"hit_ratio": 0.01}, "search": {"gpu": ["h100-sxm"]},
    })
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    (candidate,) = json.loads(out.read_text())["plan"]["candidates"]
    assert candidate["status"] == "timed"
    assert candidate["hit_ratio"] == pytest.approx(candidate["mrc_hit_ratio"][-1], abs=1e-12)


def test_a_long_candidate_note_is_printed_whole_on_a_line_under_its_row():
    # The candidates table gave a note 90 characters, then cut it at a word with "…": "no rate tried meets ... even
    # at the lowest load tried…" lost the load, "not a sustained rate: ... were still…" its "replay more requests",
    # and without --report-json the rest was nowhere. A note that does not fit is now printed whole on its own line.
    from experiments.planner import NOTE_WIDTH, _candidate_rows

    long = ("not a sustained rate: at 22.53 req/s at least 95 of the 300 requests (32%) were still queued or running "
            "when the last arrived (a steady state's arrivals and completions balance): the run ended while it "
            "filled, and a longer one answers lower; replay more requests")
    short = "miss-ratio curve: no tier level gains over 1xh100 (cheaper)"
    edge = (short + "; " + "x" * NOTE_WIDTH)[:NOTE_WIDTH]
    entry = {"cost_usd_per_hour": 24.585, "pareto": True, "chosen": True, "status": "timed", "max_rate_rps": 22.53}
    rows = _candidate_rows([{**entry, "name": "2xh100", "reason": long},
                            {**entry, "name": "1xh100", "reason": short, "pareto": False, "chosen": False},
                            {**entry, "name": "4xh100", "pareto": False, "chosen": False},
                            {**entry, "name": "8xh100", "reason": edge, "pareto": False, "chosen": False}],
                           "max_rate_rps", 6)
    assert len(short) < len(edge) == NOTE_WIDTH < len(long)  # (a note of exactly the width fits on its row)
    assert rows == ["  2xh100    24.585          22.53  timed (Pareto) <- chosen",
                    " " * 35 + "↳ " + long,
                    "  1xh100    24.585          22.53  timed: " + short,
                    "  4xh100    24.585          22.53  timed",
                    "  8xh100    24.585          22.53  timed: " + edge]
    assert not any("…" in row for row in rows)


def test_a_plans_csv_has_a_row_per_run_led_by_the_keys_it_searched(run_cli, tmp_path):
    """``--report-csv`` with ``--plan`` (written by no test before): one row per run of the JSON, named as it, led by
    the GPU, TP, instance layout and the searched tiers' capacities; costs by hand as in the test above."""
    import csv

    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": {"kind": "multi-turn", "num_requests": 60, "input_tokens_mean": 128,
                                   "start": "empty"}},  # reuse within 60 requests: conversations begun in the window
        "set": {"serving.num_gpu_blocks": 100, "cache.tiers.ssd.capacity_gib": 100},
        "target": {"hit_ratio": 0.01}, "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 8]}},
    })
    out, table = tmp_path / "plan.json", tmp_path / "plan.csv"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--report-csv", table,
                             "--no-plot", "--quiet")
    assert status == 0, err
    runs = json.loads(out.read_text())["runs"]
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == [run["name"] for run in runs] and len(rows) >= 2
    assert list(rows[0])[:7] == ["name", "hardware.gpu", "serving.tensor_parallel_size", "serving.num_instances",
                                 "pd.num_prefill", "pd.num_decode", "cache.tiers.dram.capacity_gib"]
    hours = 5 * 8766
    for row in rows:
        dram = float(row["cache.tiers.dram.capacity_gib"])
        assert row["hardware.gpu"] == "h100-sxm"
        assert float(row["cost_usd_per_hour"]) == pytest.approx(12.29 + (dram * 6.25 + 100 * 0.099) / hours)
        assert 0.0 <= float(row["hit_ratio"]) <= 1.0


def test_a_candidate_that_cannot_run_every_request_is_no_answer(run_cli, tmp_path, shared_data):
    """A cheap GPU whose KV cache cannot hold the workload's longest requests ran the others only (vLLM refuses a
    request whose KV outgrows an instance: ``exceeds_kv_capacity``) and met a loose SLO on them: it was chosen, its
    runs' skips nowhere in the plan (the report's trace said 300 used, 0 skipped). By hand: an RTX 4090's 24 GiB
    less Llama-3.1-8B's 8,030,261,248 bf16 weights (its model card) leave at most 74,076 tokens of KV at 131,072 B a
    token (32 layers x 8 KV heads x 128 x 2 x 2 B), and 8 of the Mooncake trace's first 300 requests need more
    (prompt + output): the plan must call that candidate infeasible and choose the H100, which runs all 300."""
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    rows = [json.loads(line) for line in trace.read_text().splitlines()[:300]]
    kv_tokens = (24 * 2**30 - 2 * 8_030_261_248) / (32 * 8 * 128 * 2 * 2)
    too_long = sum(r["input_length"] + max(r["output_length"], 1) > kv_tokens for r in rows)
    assert too_long == 8
    plan_path = _plan(tmp_path, {
        "workload": {"trace": str(trace), "limit": 300},
        "target": {"slo": {"ttft_s": 60.0, "attainment": 0.9}, "rate_rps": 0.1},
        "search": {"gpu": ["h100-sxm", "rtx4090"], "gpus": [1], "pd_split": ["aggregated"]},
        "prices": {"gpus": {"rtx4090": {"usd_per_gpu_hour": 0.5, "source": "a test figure, below the H100's"}}},
    })
    out = tmp_path / "plan.json"
    status, stdout, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot")
    assert status == 0, err
    report = json.loads(out.read_text())
    plan = report["plan"]
    cheap = next(c for c in plan["candidates"] if c["overrides"]["hardware.gpu"] == "rtx4090")
    assert cheap["status"] == "infeasible" and "exceeds_kv_capacity" in cheap["reason"]
    assert plan["chosen"]["overrides"]["hardware.gpu"] == "h100-sxm"
    assert "cheapest candidate that can run every request" in stdout
    runs = {r["name"]: r for r in report["runs"]}
    skipped = runs[cheap["name"]]["trace"]["skip_reasons"]["exceeds_kv_capacity"]
    assert skipped >= too_long and runs[cheap["name"]]["trace"]["rows_used"] + skipped == 300
    assert runs[cheap["name"]]["metrics"]["requests_completed"] == 300 - skipped
    assert runs[f"proof-meets: {plan['chosen']['name']}"]["metrics"]["requests_completed"] == 300
    assert "trace" not in runs[plan["chosen"]["name"]]  # the report's own trace section is the chosen one's


@pytest.mark.parametrize("semantics, said", [(None, "plain"), ("prefix", "prefix")])
def test_a_hit_ratio_plan_says_which_lookups_it_replayed(run_cli, tmp_path, semantics, said):
    """A hit-ratio plan's candidates are cache-only replays, whose "auto" lookups are plain, where a serving run of the
    chosen one looks a prompt up as a prefix (LRU on Mooncake: 0.1104 plain vs 0.1118 prefix): the plan said
    neither. Its summary and JSON target now name the lookups, and how to replay as serving does."""
    import json

    import yaml

    body = {"workload": {"synthetic": {"kind": "multi-turn", "num_requests": 120, "turns_mean": 6,
                                       "think_time_median_s": 2.0, "input_tokens_mean": 200}},
            "target": {"hit_ratio": 0.1}, "search": {"gpu": ["h100-sxm"]}}
    if semantics:
        body["set"] = {"cache.access_semantics": semantics}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(body))
    status, out, err = run_cli("--plan", plan, "--no-plot", "--jobs", "1", "--report-json", tmp_path / "r.json")
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())["plan"]
    assert report["target"]["access_semantics"] == said
    for c in report["candidates"]:  # the curve is of the lookups its replay makes: exact (mrc_is_exact)
        assert c["hit_ratio"] == pytest.approx(c["mrc_hit_ratio"][-1], abs=1e-12)
    [line] = [line for line in out.splitlines() if line.startswith("target: hit ratio")]
    assert (f"{said} lookups" in line) and (("cache.access_semantics=prefix under 'set'" in line) == (said == "plain"))


def test_a_plan_replacing_another_plans_pareto_plot_in_one_folder_says_so(run_cli, tmp_path):
    """The Pareto plot is named for its kind (plan_pareto.png), as every mode's plots are: a second plan written into
    one folder replaced the first's silently (hexplore7). The PNG keeps the plan and a digest of its config; a plan
    or config other than the one it holds says it replaced it, the same plan rerun does not."""
    from sim.report.plots import plot_source

    def plan(rate: float) -> str:
        return _plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE)},
                                "target": {"slo": {"ttft_s": 0.3, "attainment": 0.99}, "rate_rps": rate},
                                "search": {"gpu": ["h100-sxm"], "gpus": [1], "tensor_parallel_size": [1],
                                           "pd_split": ["aggregated"]}}, name=f"plan{rate:g}.yaml")

    said = []
    for rate in (4.0, 2.0, 2.0):
        status, out, err = run_cli("--plan", plan(rate), "--workload-limit", "50", "--plot-dir", tmp_path)
        assert status == 0, err
        said.append([line for line in out.splitlines() if "held the Pareto plot" in line])
        assert plot_source(tmp_path / "plan_pareto.png").startswith(f"kvsim --plan {tmp_path / f'plan{rate:g}.yaml'}")
    assert said[0] == [] and said[2] == []
    assert len(said[1]) == 1 and f"(kvsim --plan {tmp_path / 'plan4.yaml'} (config sha256 " in said[1][0]
    assert said[1][0].endswith("replaced; give each plan its own --plot-dir to keep both")


def test_a_plan_file_edited_to_price_its_gpu_otherwise_is_another_plans_pareto_plot(run_cli, tmp_path, monkeypatch):
    """The Pareto plot's digest covers the plan, not its target alone: one plan file rerun after its GPU's price was
    edited (every candidate's cost, so the plot's x axis, changes) says it replaced the other plan's plot; the
    digest of the config and target alone was the same, and the replacement went unsaid. The same plan given by a
    relative path, not the absolute one, is the same plan: nothing said (its path alone differed)."""
    def plan(prices: dict | None) -> str:
        return _plan(tmp_path, {"workload": {"trace": str(BUNDLED_AZURE)},
                                "target": {"slo": {"ttft_s": 0.3, "attainment": 0.99}, "rate_rps": 2.0},
                                "search": {"gpu": ["h100-sxm"], "gpus": [1], "tensor_parallel_size": [1],
                                           "pd_split": ["aggregated"]}, **({"prices": prices} if prices else {})})

    said = []
    for prices in (None, {"gpus": {"h100-sxm": {"usd_per_gpu_hour": 1.5, "source": "a quote"}}}):
        status, out, err = run_cli("--plan", plan(prices), "--workload-limit", "50", "--plot-dir", tmp_path)
        assert status == 0, err
        said.append([line for line in out.splitlines() if "held the Pareto plot" in line])
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("--plan", "plan.yaml", "--workload-limit", "50", "--plot-dir", tmp_path)
    assert status == 0, err
    said.append([line for line in out.splitlines() if "held the Pareto plot" in line])
    assert said[0] == [] and len(said[1]) == 1 and said[2] == []
