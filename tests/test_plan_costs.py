"""--plan's costs: prices with their sources, an amortization's arithmetic, the tiers and GPUs a plan prices
(configured tiers the search does not vary, a GPU spec file beside the plan)."""

from __future__ import annotations

import json

import pytest
import yaml

from experiments.prices import load_prices
from sim.specs import PROFILES_DIR
from tests.conftest import ROOT
from tests.test_planner import _plan


def test_prices_cite_sources_and_plan_overrides_apply(run_cli, tmp_path):
    table = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())
    for section in ("gpus", "tiers"):
        for name, entry in table[section].items():
            assert len(entry.get("source", "")) > 20, f"{section}.{name} has no source"
    prices = load_prices({"gpus": {"h100-sxm": {"usd_per_gpu_hour": 1.0}}})
    assert prices.gpu_hour("h100-sxm") == 1.0 and prices.gpu_hour("a100-80gb") == table["gpus"]["a100-80gb"]["usd_per_gpu_hour"]
    # 1 GPU + 100 GiB DRAM: GPU-hours plus the DRAM's price spread over the amortisation period
    years = table["amortization_years"]
    expected = 1.0 + 100 * table["tiers"]["dram"]["usd_per_gib"] / (years * 8766)
    assert prices.cost("h100-sxm", 1, {"dram": 100.0}) == pytest.approx(expected)


@pytest.mark.parametrize("prices, named", [
    ({"gpus": {"h100-sxm": {"usd_per_gpu_hour": float("nan")}}}, "prices.gpus.h100-sxm.usd_per_gpu_hour"),
    ({"gpus": {"h100-sxm": {"usd_per_gpu_hour": 1e308}}}, "prices.gpus.h100-sxm.usd_per_gpu_hour"),
    ({"tiers": {"dram": {"usd_per_gib": float("inf")}}}, "prices.tiers.dram.usd_per_gib"),
    ({"amortization_years": float("nan")}, "prices.amortization_years"),
    # a denormal period (1e-310 years) passed "> 0": a GiB-hour of 6.25 / (1e-310 x 8,766) USD, a cost of inf, and
    # the report's JSON writer refused it: ValueError, exit 1 (hfuzz9). At least an hour
    ({"amortization_years": 1e-310}, "prices.amortization_years must be a number of at least one hour"),
    ({"amortization_years": 1 / 8766 / 2}, "prices.amortization_years must be a number of at least one hour"),
])
def test_a_price_beyond_any_hardwares_is_refused(prices, named):
    """NaN and 1e308 passed a ">= 0" check: a 300-digit cost per hour, matplotlib's overflow warning."""
    from sim.errors import ConfigError

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_prices(prices)


def test_an_amortization_of_one_hour_is_kept():
    """The shortest period: a GiB of a tier costs its price per hour (by hand: 6.25 USD a GiB of DRAM, 6.25 USD/h)."""
    assert load_prices({"amortization_years": 1 / 8766}).gib_hour("dram") == pytest.approx(6.25)


def test_cost_counts_the_configured_tiers_the_search_does_not_vary(run_cli, tmp_path):
    """Every candidate runs with the tiers its config gives it, so it pays for them: a plan that searches DRAM only
    still runs each candidate with the config's SSD (here 100 GiB per node) and is charged for it. By hand from
    profiles/prices.yaml: 1 H100-hour + (dram GiB x DRAM + 100 GiB x SSD price per GiB) / (5 years x 8,766 h)."""
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": {"kind": "multi-turn", "num_requests": 60, "input_tokens_mean": 128}},
        "set": {"serving.num_gpu_blocks": 100, "cache.tiers.ssd.capacity_gib": 100},
        "target": {"hit_ratio": 0.01}, "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0, 8]}},
    })
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    candidates = json.loads(out.read_text())["plan"]["candidates"]
    by_dram = {c["overrides"]["cache.tiers.dram.capacity_gib"]: c["cost_usd_per_hour"] for c in candidates}
    hours = 5 * 8766  # amortization_years in profiles/prices.yaml
    assert by_dram[0.0] == pytest.approx(12.29 + 100 * 0.099 / hours)
    assert by_dram[8.0] == pytest.approx(12.29 + (8 * 6.25 + 100 * 0.099) / hours)


def test_the_summary_names_the_configured_tiers_the_search_does_not_vary(run_cli, tmp_path, shared_data):
    """A plan searching DRAM alone answered DRAM 0 GiB at hit ratio 0.34 on Mooncake: the config's SSD (config.yaml:
    2,048 GiB a node) served it, unnamed, where the H100's HBM alone holds the LRU curve's 0.04 (1,000 blocks of 512
    tokens: 0.0445, the trace's published figure in tests/test_cache_oracle.py; an H100 holds fewer). The summary
    names every tier a candidate runs with that the search does not vary; none when the plan sets it to 0."""
    ssd = yaml.safe_load((ROOT / "config.yaml").read_text())["cache"]["tiers"]["ssd"]["capacity_gib"]
    body = {"workload": {"trace": str(shared_data / "traces" / "mooncake_conversation.jsonl")},
            "target": {"hit_ratio": 0.15}, "search": {"gpu": ["h100-sxm"], "tiers": {"dram": [0]}}}
    status, stdout, err = run_cli("--plan", _plan(tmp_path, body), "--jobs", "1", "--no-plot")
    assert status == 0, err
    assert f"every candidate also runs with, and pays for, ssd={ssd:g}GiB (the config's; not searched" in stdout
    assert "chosen: 1xh100-sxm tp1 aggregated" in stdout  # (HBM alone, under 0.0445, would not meet it)
    body["set"] = {"cache.tiers.ssd.capacity_gib": 0}
    status, stdout, err = run_cli("--plan", _plan(tmp_path, body, "plan0.yaml"), "--jobs", "1", "--no-plot")
    assert status == 0, err
    assert "every candidate also runs with" not in stdout and "chosen: none" in stdout
    # its one candidate was pruned by the LRU curve (0.0434 < 0.15), never run: no front, said so (it was blank)
    assert "Pareto front (cost vs hit ratio): none (no candidate was run" in stdout


def test_a_gpu_spec_file_beside_the_plan_is_searched_and_priced(run_cli, tmp_path, monkeypatch):
    """search.gpu may name a GPU spec file (hardware.gpu's path form) relative to the plan, priced under the same
    key in the plan's prices; run from elsewhere, the candidate reads that file and costs the plan's price."""
    (tmp_path / "plans" / "gpus").mkdir(parents=True)
    (tmp_path / "plans" / "gpus" / "l40s-like.yaml").write_text(
        "dense_bf16_tflops: 362.05\nmemory_gib: 48\nmemory_bandwidth_gbps: 864\n"
        "link: {kind: pcie4-x16, bandwidth_gbps: 24, step_latency_us: 5.7}\n")
    plan_path = _plan(tmp_path / "plans", {
        "workload": {"synthetic": {"kind": "multi-turn", "num_requests": 60, "input_tokens_mean": 128}},
        "set": {"serving.num_gpu_blocks": 100, "cache.tiers.dram.capacity_gib": 0, "cache.tiers.ssd.capacity_gib": 0},
        "target": {"hit_ratio": 0.01}, "search": {"gpu": ["gpus/l40s-like.yaml"]}, "prices": {"gpus": {"gpus/l40s-like.yaml": {"usd_per_gpu_hour": 1.5}}},
    })
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    (candidate,) = json.loads(out.read_text())["plan"]["candidates"]
    assert candidate["cost_usd_per_hour"] == pytest.approx(1.5)  # one GPU-hour, no lower tier (EIC 0 by default)
    assert candidate["overrides"]["hardware.gpu"].endswith("plans/gpus/l40s-like.yaml")


def test_a_plan_names_gpus_as_hardware_gpu_does(run_cli, tmp_path):
    """search.gpu and prices.gpus take the spellings hardware.gpu takes (Vidur's ``h100``, nvidia-smi's product
    name): they were refused as unknown GPUs. The candidate runs the entry, at the price the plan gave its alias."""
    plan_path = _plan(tmp_path, {
        "workload": {"synthetic": {"kind": "multi-turn", "num_requests": 30, "input_tokens_mean": 128}},
        "set": {"serving.num_gpu_blocks": 100, "cache.tiers.dram.capacity_gib": 0, "cache.tiers.ssd.capacity_gib": 0},
        "target": {"hit_ratio": 0.01}, "search": {"gpu": ["H100", "NVIDIA A100-SXM4-80GB"]},
        "prices": {"gpus": {"h100": {"usd_per_gpu_hour": 2.0}}},
    })
    out = tmp_path / "plan.json"
    status, _, err = run_cli("--plan", plan_path, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    cost = {c["overrides"]["hardware.gpu"]: c["cost_usd_per_hour"] for c in json.loads(out.read_text())["plan"]["candidates"]}
    a100 = yaml.safe_load((PROFILES_DIR / "prices.yaml").read_text())["gpus"]["a100-80gb"]["usd_per_gpu_hour"]
    assert cost == {"h100-sxm": pytest.approx(2.0), "a100-80gb": pytest.approx(a100)}
