"""Combinations of a mode with the flags that multiply runs (--seeds, --max-rate, --sweep, --plan, lists in
--policy/--router, --set, presets): each run in the report is the one the command line asked for, or the
combination is refused (exit 2, one line naming the flags) before any work. Each test compares a combined run
with the standalone runs it must equal, or names the setting the run would have dropped."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE, ROOT

# 60 requests of the bundled trace on two workers, arrivals drawn from the seed (a trace's own arrival times
# draw nothing from it): round-robin and least-loaded routing give different runs here.
SMALL = ["--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "60", "--set", "serving.num_instances=2",
         "--set", "workload.arrivals.process=poisson", "--no-plot", "--quiet"]
ROUTERS = ["round-robin", "least-loaded"]


def _report(run_cli, tmp_path, *argv: str) -> dict:
    out = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    status, _, err = run_cli(*argv, "--report-json", out)
    assert status == 0, err
    return json.loads(out.read_text())


def test_router_list_with_seeds_gives_one_run_per_router(run_cli, tmp_path):
    """--router a,b --seeds N ran only the first router (the experiments' runner built its runs without the router
    list: one run, named 'single', of round-robin). Each router is a run named by it, whose mean is the mean of that
    router's own runs at seeds 0 and 1."""
    seeds = _report(run_cli, tmp_path, *SMALL, "--router", ",".join(ROUTERS), "--seeds", "2")
    assert [(r["name"], r["overrides"]) for r in seeds["runs"]] == [(r, {"cluster.router": r}) for r in ROUTERS]
    for run, router in zip(seeds["runs"], ROUTERS, strict=True):
        alone = [_report(run_cli, tmp_path, *SMALL, "--router", router, "--seed", s)["runs"][0]["metrics"]
                 for s in ("0", "1")]
        assert run["metrics"]["ttft_s"]["mean"] == pytest.approx(
            (alone[0]["ttft_s"]["mean"] + alone[1]["ttft_s"]["mean"]) / 2, rel=1e-12)
    assert seeds["runs"][0]["metrics"]["ttft_s"]["mean"] != seeds["runs"][1]["metrics"]["ttft_s"]["mean"]


def test_router_list_with_max_rate_searches_each_router(run_cli, tmp_path):
    """--router a,b --max-rate searched only the first router. Each router is searched, its answer the one its own
    --router X --max-rate gives; with --policy a,b too, the runs are the product named policy/router in flag order
    (the Contract), single-node runs named '<mode>-<policy>/<router>' as without --max-rate."""
    slo = ["--set", "slo.ttft_s=0.05"]
    small = [item.replace("process=poisson", "process=trace") for item in SMALL]  # (a key is given once)
    both = _report(run_cli, tmp_path, *small, *slo, "--router", ",".join(ROUTERS), "--max-rate")
    assert [(r["name"], r["overrides"]) for r in both["runs"]] == [(r, {"cluster.router": r}) for r in ROUTERS]
    for run, router in zip(both["runs"], ROUTERS, strict=True):
        alone = _report(run_cli, tmp_path, *small, *slo, "--router", router, "--max-rate")["runs"][0]["metrics"]
        assert run["metrics"]["max_rate_scale"] == alone["max_rate_scale"]
        assert run["metrics"]["max_rate_search"] == alone["max_rate_search"]
    product = _report(run_cli, tmp_path, *small, *slo, "--policy", "lru,arc", "--router", ",".join(ROUTERS),
                      "--max-rate")
    plain = _report(run_cli, tmp_path, *small, *slo, "--policy", "lru,arc", "--router", ",".join(ROUTERS))
    assert [(r["name"], r["overrides"]) for r in product["runs"]] == \
        [(r["name"], r["overrides"]) for r in plain["runs"]] == \
        [(f"{p}/{r}", {"cache.policy": p, "cluster.router": r}) for p in ("lru", "arc") for r in ROUTERS]


def _spec(tmp_path, **body) -> str:
    path = tmp_path / f"spec{len(list(tmp_path.glob('spec*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


AZURE_60 = {"trace": str(BUNDLED_AZURE), "limit": 60}


@pytest.mark.parametrize("body, extra, needle", [
    # pd.* in a single-node sweep: every point ran the same single-node run (identical metrics), exit 0
    ({"mode": "single", "axes": {"pd.num_prefill": [1, 2]}}, [],
     "axis 'pd.num_prefill' is not used by the sweep's mode 'single'"),
    # a sweep's cluster mode is --cluster without --pd: no pools to size
    ({"mode": "cluster", "zip": [{"pd.num_prefill": [1, 2], "pd.num_decode": [2, 1]}]}, [],
     "axis 'pd.num_prefill' is not used by the sweep's mode 'cluster'"),
    ({"mode": "single", "axes": {"cluster.num_racks": [1, 2]}}, [],
     "axis 'cluster.num_racks' is not used by the sweep's mode 'single'"),
    ({"mode": "cache-only", "axes": {"compute.backend": ["roofline", "profiled"]}}, [],
     "axis 'compute.backend' is not used by the sweep's mode 'cache-only'"),
    ({"mode": "single", "set": {"network.bandwidth_gbps": 100}, "axes": {"cache.policy": ["lru", "arc"]}}, [],
     "fixed key 'network.bandwidth_gbps' is not used by the sweep's mode 'single'"),
    ({"mode": "cache-only", "axes": {"cache.policy": ["lru", "arc"]}}, ["--set", "slo.ttft_s=1"],
     "--set slo.ttft_s is not used by the sweep's mode 'cache-only'"),
    # the prefix-aware router's threshold under a round-robin cluster: every point routed alike
    ({"mode": "cluster", "set": {"cluster.router": "round-robin"}, "axes": {"cluster.cache_threshold": [0.2, 0.5]}},
     [], "axis 'cluster.cache_threshold': read only by the prefix-aware router (routers here: round-robin)"),
])
def test_sweep_keys_its_mode_does_not_read_are_refused(run_cli, tmp_path, body, extra, needle):
    """A sweep's axes, fixed keys and --set were never checked against its mode, as the command line checks --set:
    an axis the mode ignores gave points that all ran alike, exit 0. Refused before the first point, naming the key."""
    spec = _spec(tmp_path, workload=AZURE_60, **body)
    status, out, err = run_cli("--sweep", spec, *extra, "--jobs", "1", "--report-json", tmp_path / "s.json",
                               "--no-plot", "--quiet")
    assert status == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s.json").exists()
    assert not (tmp_path / "s.journal.jsonl").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--rate-scale", "2"], "--rate-scale: the cache-only replay has no clock"),
    (["--set", "workload.rate_scale=2"], "--set workload.rate_scale: the cache-only replay has no clock"),
    (["--allow-train-test-overlap"], "--allow-train-test-overlap: applies only to a learned policy"),
    (["--workload-format", "azure"], "--workload-format: applies to a trace file"),
    (["--strict-workload-validation"], "--strict-workload-validation: applies to a trace file"),
])
def test_sweep_flags_no_point_reads_are_refused(run_cli, tmp_path, extra, needle):
    """The flags the command line refuses in the mode (each ran the cache-only sweep on its synthetic workload
    unchanged, exit 0): refused before the first point, as the command line refuses them."""
    spec = _spec(tmp_path, mode="cache-only", set={"workload.synthetic.num_requests": 40},
                 axes={"cache.policy": ["lru", "arc"]})
    status, _, err = run_cli("--sweep", spec, *extra, "--jobs", "1", "--no-plot", "--quiet",
                             "--report-json", tmp_path / "s.json")
    assert status == 2 and needle in err and "point 'lru'" in err, err
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("file_key", ["--sweep", "--plan"])
def test_config_flag_beside_the_files_own_config_is_refused(run_cli, tmp_path, file_key):
    """A spec's (a plan's) 'config:' and --config: the flag's file replaced the spec's, silently (its seed and
    tiers gone from every point)."""
    (tmp_path / "mine.yaml").write_text("seed: 7\n")
    if file_key == "--sweep":
        path = _spec(tmp_path, mode="cache-only", config="mine.yaml", set={"workload.synthetic.num_requests": 40},
                     axes={"cache.policy": ["lru", "arc"]})
    else:
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump({"config": "mine.yaml", "search": {"gpu": ["h100-sxm"]},
                                        "target": {"hit_ratio": 0.1}}))
    status, _, err = run_cli(file_key, path, "--config", ROOT / "config.yaml", "--no-plot", "--quiet")
    assert status == 2 and "both name the base config" in err and "mine.yaml" in err, err


def test_one_workload_cache_for_a_trace_axis_is_refused_naming_the_zip(run_cli, tmp_path):
    """--workload-cache beside a workload.trace axis: refused as if no trace were given (the base config has none);
    one cache cannot keep two traces. Zipped with the traces, each point keeps its own."""
    short = tmp_path / "short.csv"
    short.write_text("".join(BUNDLED_AZURE.read_text().splitlines(keepends=True)[:31]))
    traces = [str(BUNDLED_AZURE), str(short)]
    spec = _spec(tmp_path, mode="cache-only", set={"cache.capacity_blocks": 100, "workload.limit": 60},
                 axes={"workload.trace": traces})
    common = ["--jobs", "1", "--no-plot", "--quiet"]
    status, _, err = run_cli("--sweep", spec, "--workload-cache", tmp_path / "c.bin", *common)
    assert status == 2 and "a workload cache keeps one trace, and its 'workload.trace' axis has several" in err, err
    crossed = _spec(tmp_path, mode="cache-only", set={"cache.capacity_blocks": 100},
                    axes={"workload.trace": traces, "workload.cache": [str(tmp_path / "a.bin"), str(tmp_path / "b.bin")]})
    status, _, err = run_cli("--sweep", crossed, *common)  # (each cache would see both traces)
    assert status == 2 and "(one zip group)" in err, err
    zipped = _spec(tmp_path, mode="cache-only", set={"cache.capacity_blocks": 100, "workload.limit": 60},
                   zip=[{"workload.trace": traces, "workload.cache": [str(tmp_path / "a.bin"), str(tmp_path / "b.bin")]}])
    runs = _report(run_cli, tmp_path, "--sweep", zipped, *common)["runs"]
    assert [r["metrics"]["requests_completed"] for r in runs] == [60, 30]
    # one axis of mappings that set both: each point its trace and its cache, as the zip group
    pairs = [{"trace": t, "cache": str(tmp_path / c)} for t, c in zip(traces, ["a.bin", "b.bin"], strict=True)]
    paired = _spec(tmp_path, mode="cache-only", set={"cache.capacity_blocks": 100, "workload.limit": 60},
                   axes={"workload": pairs})
    runs = _report(run_cli, tmp_path, "--sweep", paired, *common)["runs"]
    assert [r["metrics"]["requests_completed"] for r in runs] == [60, 30]
    # a fixed cache beside a fixed trace in the spec: judged with the trace (it was judged alone: "no trace given")
    fixed = _spec(tmp_path, mode="cache-only", workload={"trace": traces[1], "cache": str(tmp_path / "f.bin")},
                  axes={"cache.capacity_blocks": [100, 200]})
    assert [r["metrics"]["requests_completed"] for r in _report(run_cli, tmp_path, "--sweep", fixed, *common)["runs"]] \
        == [30, 30]
    # the cache from the spec's config file beside a trace axis: the same refusal (was "no workload.trace is given",
    # the base config judged without the axis), and with the trace fixed it runs
    (tmp_path / "cached.yaml").write_text(f"workload:\n  cache: {tmp_path / 'g.bin'}\n")
    from_file = _spec(tmp_path, mode="cache-only", config="cached.yaml", set={"cache.capacity_blocks": 100},
                      axes={"workload.trace": traces})
    status, _, err = run_cli("--sweep", from_file, *common)
    assert status == 2 and "a workload cache keeps one trace, and its 'workload.trace' axis has several" in err, err
    from_file = _spec(tmp_path, mode="cache-only", config="cached.yaml", set={"workload.trace": traces[1]},
                      axes={"cache.capacity_blocks": [100, 200]})
    assert [r["metrics"]["requests_completed"] for r in _report(run_cli, tmp_path, "--sweep", from_file, *common)["runs"]] \
        == [30, 30]
    # a base no axis completes is refused as the command line refuses it, naming no point
    lacking = _spec(tmp_path, mode="cache-only", config="cached.yaml", axes={"cache.capacity_blocks": [100, 200]})
    status, _, err = run_cli("--sweep", lacking, *common)
    assert status == 2 and "no workload.trace is given" in err and "point" not in err, err


def test_a_flag_beside_the_specs_own_key_names_the_spec(run_cli, tmp_path):
    """--workload-trace beside the spec's workload.trace was blamed on '--set workload.trace', which the user never
    gave; a bad fixed key was 'sweep spec X: --set: unknown config key'. Each names the spec's key now."""
    spec = _spec(tmp_path, mode="cache-only", workload=AZURE_60, axes={"cache.policy": ["lru", "arc"]})
    status, _, err = run_cli("--sweep", spec, "--workload-trace", BUNDLED_AZURE, "--no-plot", "--quiet")
    assert status == 2 and f"--workload-trace and sweep spec {spec}'s 'workload.trace' both set" in err, err
    spec = _spec(tmp_path, mode="cache-only", workload={"foo": 1}, axes={"cache.policy": ["lru", "arc"]})
    status, _, err = run_cli("--sweep", spec, "--no-plot", "--quiet")
    assert status == 2 and err.startswith(f"kvsim: error: sweep spec {spec}: unknown config key 'workload.foo'"), err


@pytest.mark.parametrize("body, needle", [
    ({"set": {"workload.rate_scale": 2}, "axes": {"cache.policy": ["lru", "arc"]}},
     "fixed key 'workload.rate_scale': the cache-only replay has no clock"),
    ({"axes": {"workload.rate_scale": [1, 2]}}, "axis 'workload.rate_scale': the cache-only replay has no clock"),
    ({"set": {"workload.format": "azure"}, "axes": {"cache.policy": ["lru", "arc"]}},
     "fixed key 'workload.format': applies to a trace file"),
])
def test_sweep_keys_read_only_with_others_are_judged_however_given(run_cli, tmp_path, body, needle):
    """The rules behind the flags are rules of their config keys: a spec's fixed key or axis of them ran to exit 0
    (two points alike), as did --set workload.format on a synthetic workload."""
    body.setdefault("set", {})["workload.synthetic.num_requests"] = 40
    status, _, err = run_cli("--sweep", _spec(tmp_path, mode="cache-only", **body), "--jobs", "1", "--no-plot",
                             "--quiet")
    assert status == 2 and needle in err, err


def test_a_sweep_key_read_by_some_points_is_kept(run_cli, tmp_path):
    """A key is refused when no point reads it: a fixed prefix-aware threshold beside a router axis is read by the
    prefix-aware points (each point was judged alone, and the round-robin one refused the sweep). Those points
    differ by it; the round-robin ones do not."""
    runs = {}
    for threshold in (0.0, 1.0):
        spec = _spec(tmp_path, mode="cluster", set={"cluster.cache_threshold": threshold, "cluster.nodes_per_rack": 2},
                     axes={"cluster.router": ["round-robin", "prefix-aware"]})  # (the synthetic workload shares prefixes)
        report = _report(run_cli, tmp_path, "--sweep", spec, "--preset", "smoke", "--jobs", "1", "--no-plot", "--quiet")
        runs[threshold] = {r["name"]: r["metrics"]["hit_ratio"] for r in report["runs"]}
    assert runs[0.0]["round-robin"] == runs[1.0]["round-robin"]
    assert runs[0.0]["prefix-aware"] != runs[1.0]["prefix-aware"]


def _preset_overlay(tmp_path) -> str:
    """An overlay whose presets (they replace config.yaml's) have a cluster-only part, as prod-eval@cluster is."""
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump({"presets": {
        "smoke": {"workload.limit": 40},
        "smoke@cluster": {"cluster.num_racks": 2, "cluster.nodes_per_rack": 1, "hardware.gpus_per_node": 2}}}))
    return str(path)


def test_sweep_applies_the_preset_part_of_its_mode(run_cli, tmp_path):
    """--preset P applies P@MODE in that mode (prod-eval@cluster: kvcache-sim's 10,240-GPU fleet), but a sweep looked
    up P@sweep: a cluster sweep with --preset prod-eval ran config.yaml's 1 x 4 x 8 fleet (32 GPUs). A cluster sweep's
    point is the command line's --cluster run with that preset; a single-node sweep takes no @cluster part."""
    overlay = _preset_overlay(tmp_path)
    common = ["--calibration-profile", overlay, "--preset", "smoke", "--workload-trace", str(BUNDLED_AZURE),
              "--no-plot", "--quiet"]
    spec = _spec(tmp_path, mode="cluster", axes={"cluster.router": ["round-robin", "least-loaded"]})
    swept = _report(run_cli, tmp_path, "--sweep", spec, "--jobs", "1", *common)
    assert swept["config"]["cluster"]["num_racks"] == 2 and swept["config"]["hardware"]["gpus_per_node"] == 2
    alone = _report(run_cli, tmp_path, "--cluster", "--router", "round-robin,least-loaded", *common)
    for point, run in zip(swept["runs"], alone["runs"], strict=True):
        assert point["metrics"]["cluster"]["gpus"] == 2 * 1 * 2 == run["metrics"]["cluster"]["gpus"]
        assert point["metrics"]["requests_completed"] == 40
        assert point["metrics"]["ttft_s"] == run["metrics"]["ttft_s"]
    single = _spec(tmp_path, mode="single", axes={"cache.policy": ["lru"]})
    config = _report(run_cli, tmp_path, "--sweep", single, "--jobs", "1", *common)["config"]
    assert config["cluster"]["num_racks"] == 1 and config["hardware"]["gpus_per_node"] == 8  # config.yaml's


def test_fleet_plan_applies_the_preset_part_of_cluster_mode(run_cli, tmp_path):
    """A fleet plan's candidates are cluster runs: --preset P applies P@cluster to them (it looked up P@plan), so a
    candidate's nodes have the preset's 2 GPUs, not config.yaml's 8 (its name counts them: racks x nodes x GPUs)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE)}, "target": {"hit_ratio": 0.01},
                                    "search": {"gpu": ["h100-sxm"], "racks": [1], "nodes_per_rack": [1]}}))
    report = _report(run_cli, tmp_path, "--plan", plan, "--jobs", "1", "--calibration-profile", _preset_overlay(tmp_path),
                     "--preset", "smoke", "--no-plot", "--quiet")
    assert [c["name"] for c in report["plan"]["candidates"]] == ["1x1x2xh100-sxm tp1"]
    assert report["config"]["hardware"]["gpus_per_node"] == 2


def test_plan_refuses_a_preset_part_for_one_of_its_two_modes(run_cli, tmp_path):
    """Aggregated and PD candidates in one plan cannot both take a preset part for one of the modes: refused."""
    overlay = tmp_path / "presets.yaml"
    overlay.write_text(yaml.safe_dump({"presets": {"smoke": {"workload.limit": 40}, "smoke@pd": {"pd.transfer": "pull"}}}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE)}, "target": {"slo": {"ttft_s": 0.3}},
                                    "search": {"gpu": ["h100-sxm"], "gpus": [2], "pd_split": ["aggregated", "1:1"]}}))
    status, _, err = run_cli("--plan", plan, "--calibration-profile", overlay, "--preset", "smoke", "--no-plot", "--quiet")
    assert status == 2 and "--preset smoke: its part smoke@pd applies to pd runs only" in err, err


@pytest.mark.parametrize("axes, extra, needle", [
    # the points ran 50 and 100 requests: --workload-limit 20 did nothing, exit 0
    ({"workload.limit": [50, 100]}, ["--workload-limit", "20"],
     "--workload-limit (config key 'workload.limit'): sweep spec"),
    ({"cache.policy": ["lru", "arc"]}, ["--set", "cache.policy=sieve"], "--set cache.policy: sweep spec"),
    ({"seed": [0, 1]}, ["--seed", "7"], "--seed (config key 'seed'): sweep spec"),
    ({"workload.rate_scale": [1, 2]}, ["--rate-scale", "4"], "--rate-scale (config key 'workload.rate_scale')"),
    ({"workload.arrivals.process": ["poisson", "gamma"]}, ["--set", "workload.arrivals={process: trace}"],
     "--set workload.arrivals.process: sweep spec"),
])
def test_a_command_line_setting_a_sweep_varies_is_refused(run_cli, tmp_path, axes, extra, needle):
    """A key set on the command line and varied by the spec: each point's value replaced the command line's, which did
    nothing (exit 0). Refused before any point runs, as the spec's own fixed-and-varied key is."""
    workload = {"trace": str(BUNDLED_AZURE), **({} if "workload.limit" in axes else {"limit": 60})}
    spec = _spec(tmp_path, mode="single", workload=workload, axes=axes)
    status, _, err = run_cli("--sweep", spec, *extra, "--jobs", "1", "--report-json", tmp_path / "s.json",
                             "--no-plot", "--quiet")
    assert status == 2 and needle in err and "drop one of them" in err, err
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "s.journal.jsonl").exists()


@pytest.mark.parametrize("body", [{"axes": {"seed": [1, 2]}}, {"zip": [{"seed": [1, 5], "cache.policy": ["lru", "arc"]}]}],
                         ids=["axis", "zip"])
def test_seeds_beside_a_seed_axis_is_refused(run_cli, tmp_path, body):
    """--seeds N repeats each point over its seed and the N-1 after it: beside an axis of seeds 1 and 2, at --seeds 3
    the points ran seeds 1-3 and 2-4 (exit 0), two of each point's runs the other's. Both vary the seed, and README
    gives the pair no meaning: refused before any point runs, naming both."""
    spec = _spec(tmp_path, mode="single", workload={"synthetic": {"kind": "multi-turn", "num_requests": 30}}, **body)
    status, _, err = run_cli("--sweep", spec, "--seeds", "3", "--jobs", "1", "--report-json", tmp_path / "s.json",
                             "--no-plot", "--quiet")
    assert status == 2 and f"--seeds 3: sweep spec {spec} varies 'seed' too" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "s.journal.jsonl").exists()


PLAN = {"workload": {"trace": str(BUNDLED_AZURE), "limit": 60}, "target": {"slo": {"ttft_s": 0.3}, "rate_rps": 10},
        "search": {"gpu": ["h100-sxm"], "gpus": [1, 2], "tiers": {"dram": [0, 64]}}}


@pytest.mark.parametrize("extra, body, needle", [
    # every candidate ran search.gpu's h100-sxm: the --set did nothing, exit 0
    (["--set", "hardware.gpu=a100-80gb"], {}, "--set hardware.gpu: the plan sets 'hardware.gpu' on every run"),
    (["--set", "serving.num_instances=2"], {}, "--set serving.num_instances: the plan sets 'serving.num_instances'"),
    (["--set", "cache.tiers.dram.capacity_gib=512"], {}, "the plan sets 'cache.tiers.dram.capacity_gib'"),
    (["--set", "slo.ttft_s=2"], {}, "the plan sets 'slo.ttft_s' on every run, to 'target.slo.ttft_s'"),
    (["--set", "workload.rate_scale=3"], {}, "the plan sets 'workload.rate_scale' on every run, to the scale of "
                                             "'target.rate_rps'"),
    ([], {"set": {"serving.tensor_parallel_size": 2}}, "'serving.tensor_parallel_size' under 'set'/'workload': the plan sets"),
])
def test_a_setting_the_plan_searches_is_refused(run_cli, tmp_path, extra, body, needle):
    """A key every candidate (or the target) sets, given on the command line or in the plan's own 'set': the
    candidate's value replaced it. Refused before any candidate runs."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({**PLAN, **body}))
    status, _, err = run_cli("--plan", plan, *extra, "--report-json", tmp_path / "p.json", "--no-plot", "--quiet")
    assert status == 2 and needle in err and "drop one of them" in err, err
    assert not (tmp_path / "p.json").exists()


def test_a_plan_keeps_settings_it_does_not_search(run_cli, tmp_path):
    """Keys no candidate sets stay the plan's own (not refused): a hit-ratio plan replays at the --set block size."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE), "limit": 60},
                                    "target": {"hit_ratio": 0.01}, "search": {"gpu": ["h100-sxm"]}}))
    report = _report(run_cli, tmp_path, "--plan", plan, "--set", "serving.block_size=32", "--jobs", "1", "--no-plot",
                     "--quiet")
    assert report["config"]["serving"]["block_size"] == 32
    assert [c["status"] for c in report["plan"]["candidates"]] in (["timed"], ["pruned"])  # run, not failed


@pytest.mark.parametrize("mode", [["--pd"], ["--cache-only"], ["--trace-stats"]])
def test_cluster_router_set_where_nothing_reads_it_is_refused(run_cli, tmp_path, mode):
    """--router is refused by the modes that do not route with it, but --set cluster.router was taken and did nothing
    (PD routes with pd.router; the replay and --trace-stats route nothing), exit 0."""
    status, _, err = run_cli(*mode, "--set", "cluster.router=least-loaded", "--workload-trace", str(BUNDLED_AZURE),
                             "--workload-limit", "60", "--no-plot", "--quiet")
    assert status == 2 and "--set cluster.router: not used by" in err, err


def test_cluster_router_set_in_a_routing_mode_routes(run_cli, tmp_path):
    """Where it is read, --set cluster.router routes as --router does (the same run)."""
    by_set = _report(run_cli, tmp_path, *SMALL, "--set", "cluster.router=round-robin")
    by_flag = _report(run_cli, tmp_path, *SMALL, "--router", "round-robin")
    assert by_set["config"]["cluster"]["router"] == "round-robin"
    assert by_set["runs"][0]["metrics"]["ttft_s"] == by_flag["runs"][0]["metrics"]["ttft_s"]


def test_pd_router_set_in_a_cluster_is_refused(run_cli):
    """--cluster --pd routes with cluster.router (its racks' pools), so --set pd.router was taken and did nothing,
    exit 0; the plain PD mode routes with it (among two prefill instances: with one it is refused, round 3)."""
    base = ("--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "60", "--no-plot", "--quiet")
    status, _, err = run_cli("--cluster", "--pd", "--set", "pd.router=round-robin", *base)
    assert status == 2 and "--set pd.router: not used by --cluster --pd" in err, err
    status, _, err = run_cli("--pd", "--set", "pd.router=round-robin", "--set", "pd.num_prefill=2", *base)
    assert status == 0, err


@pytest.mark.parametrize("extra, body, needle", [
    # a hit-ratio plan replays its candidates cache-only: no clock, no SLO
    (["--set", "slo.ttft_s=0.5"], {"target": {"hit_ratio": 0.01}, "search": {"gpu": ["h100-sxm"]}},
     "--set slo.ttft_s: not read by this plan's runs (mode cache-only"),
    # aggregated splits only (PLAN's default): no KV transfer to pull
    (["--set", "pd.transfer=pull"], {}, "--set pd.transfer: not read by this plan's runs (mode single"),
    ([], {"set": {"pd.transfer": "pull"}}, "'pd.transfer' under 'set'/'workload': not read by this plan's runs"),
])
def test_a_setting_no_candidate_reads_is_refused(run_cli, tmp_path, extra, body, needle):
    """A key none of the plan's candidate modes reads (sim.mode_settings.SETTING_MODES, as a sweep checks its keys) was taken
    and did nothing, exit 0."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({**PLAN, **body}))
    status, _, err = run_cli("--plan", plan, *extra, "--report-json", tmp_path / "p.json", "--no-plot", "--quiet")
    assert status == 2 and needle in err and "it would do nothing" in err, err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("mode, setting", [
    # the replay has no scheduler, no clock and no prefix caching to turn off: each ran the same replay, exit 0
    (["--cache-only"], "serving.enable_prefix_caching=false"),
    (["--cache-only"], "serving.max_num_seqs=1"),
    (["--cache-only"], "serving.async_scheduling=false"),
    (["--cache-only"], "cache.tiers.dram.read_gbps=1"),
    (["--mrc"], "cache.tiers.ssd.latency_us=1000"),
    # --trace-stats keeps no cache (as --policy is refused there) and runs no KV-cache manager
    (["--trace-stats"], "cache.policy=arc"),
    (["--trace-stats"], "cache.tiers.dram.capacity_gib=1"),
    (["--trace-stats"], "serving.disable_hybrid_kv_cache_manager=true"),
    # PD's pools are pd.num_prefill/num_decode, a cluster's instances its nodes' GPUs
    (["--pd"], "serving.num_instances=1"),
    (["--cluster"], "serving.num_instances=8"),
])
def test_a_serving_or_cache_key_the_mode_ignores_is_refused(run_cli, mode, setting):
    """Each of these keys was taken and the report came out byte for byte as without it (checked by hand on the
    bundled trace), exit 0: README Configuration, a --set key the mode never reads is an error naming it."""
    status, _, err = run_cli(*mode, "--set", setting, "--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "30",
                             "--no-plot", "--quiet")
    key = setting.partition("=")[0]
    assert status == 2 and f"--set {key}: not used by" in err and len(err.strip().splitlines()) == 1, err


def test_the_keys_the_mode_reads_are_still_taken(run_cli):
    """The other side: the replay sizes its tiers (capacities, the hybrid flag) and the serving modes read the
    scheduler and the tiers' timing."""
    base = ("--workload-trace", str(BUNDLED_AZURE), "--workload-limit", "30", "--no-plot", "--quiet")
    for argv in (("--cache-only", "--set", "cache.tiers.dram.capacity_gib=1", "--set", "model=gpt-oss-20b",
                  "--set", "serving.disable_hybrid_kv_cache_manager=true"),
                 ("--pd", "--set", "serving.max_num_seqs=8", "--set", "cache.tiers.dram.read_gbps=10"),
                 ("--set", "serving.num_instances=1", "--set", "serving.enable_prefix_caching=false")):
        status, _, err = run_cli(*argv, *base)
        assert status == 0, (argv, err)


def test_a_longer_name_than_a_per_mode_key_is_an_unknown_key(run_cli):
    """A typo extending a key the mode table names (serving.num_instancesX) is an unknown key, said so with the
    valid ones, not "not used by" that mode."""
    status, _, err = run_cli("--pd", "--set", "serving.num_instancesX=3", "--workload-limit", "3")
    assert status == 2 and "unknown config key 'serving.num_instancesX'" in err


@pytest.mark.parametrize("argv, needle", [
    (["--policy", "lru", "--policy", "fifo", "--cache-only"], "--policy is given twice: give it once, with a comma"),
    (["--report-json", "{tmp}/a.json", "--report-json={tmp}/b.json", "--trace-stats"], "--report-json is given twice"),
    (["--workload-trace", str(BUNDLED_AZURE), "--workload-trace", str(BUNDLED_AZURE), "--trace-stats"],
     "--workload-trace is given twice"),
    (["--seed", "1", "--seed", "2", "--trace-stats"], "--seed is given twice"),
    # a prefix of a flag's name is not the flag (it got past the check above, and one value was dropped)
    (["--pol", "lru", "--policy", "arc", "--cache-only"], "unrecognized arguments: --pol lru"),
    (["--report-js", "{tmp}/a.json", "--report-json", "{tmp}/b.json", "--trace-stats"], "unrecognized arguments"),
])
def test_a_flag_of_one_value_given_twice_is_refused(run_cli, tmp_path, argv, needle):
    # argparse keeps the last: the first policy's run, the first report, the first trace would be dropped unsaid
    status, _, err = run_cli(*(a.format(tmp=tmp_path) for a in argv), "--workload-limit", "20", "--no-plot")
    assert status == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())
