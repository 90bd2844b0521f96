"""Bad input, round 3 (helper hfuzz2): entry points and settings the earlier rounds (tests/test_bad_inputs.py,
tests/test_benchmark_flags.py, tests/test_tools_inputs.py) did not reach. Each case was a traceback (exit 1), a
silently ignored flag or setting (exit 0), or an output made after long work that kvsim then refuses; each is now one
line and exit 2 before that work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import BUNDLED_AZURE, ROOT, SHARED_DATA

SPLITWISE_PERF = SHARED_DATA / "profiles" / "splitwise_perf_model_a100.csv"


def _script(path: str, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / path), *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------- benchmarks

BENCHMARK_CASES = [
    # a ValueError traceback
    ("bench_serving.py", ["--scales", "x"], "--scales: expected comma-separated positive integers, got 'x'"),
    # FileNotFoundError tracebacks once the timed runs had started
    ("bench_serving.py", ["--scales", "1", "--modes", "single", "--trace", "/nonexistent.csv"],
     "--trace: not a file: /nonexistent.csv"),
    ("bench_serving.py", ["--scales", "1", "--modes", "single", "--compare", "/nonexistent"],
     "--compare: not a kvsim checkout (no main.py): /nonexistent"),
    # ran no part at all, exit 0
    ("bench_trace_load.py", ["--rows", "10", "--only", "nope"], "--only: unknown parts ['nope']"),
    # ignored without --trace, exit 0 after every bundled workload ran
    ("bench_learned.py", ["--block-size", "16", "--workloads", "", "--peers", ""], "--block-size applies to --trace only"),
    # a ConfigError traceback after the bundled workloads named before it had run
    ("bench_learned.py", ["--trace", "/nonexistent.jsonl", "--workloads", "", "--peers", ""],
     "--trace: not a file: /nonexistent.jsonl"),
    ("probe_learned.py", ["law", "--trace", "/nonexistent.jsonl"], "--trace: not a file: /nonexistent.jsonl"),
    # a flag of one value given twice: argparse kept the last (bench_cache timed capacity 20 alone)
    ("bench_cache.py", ["--capacity", "10", "--capacity", "20"], "--capacity is given twice: give it once"),
    ("bench_mrc.py", ["--sizes", "10", "--sizes", "20", "--no-check"], "--sizes is given twice: give it once"),
    ("bench_cluster.py", ["--requests", "5", "--requests", "6"], "--requests is given twice: give it once"),
]


@pytest.mark.parametrize("script, argv, named", BENCHMARK_CASES, ids=[f"{s} {' '.join(a)}" for s, a, _ in BENCHMARK_CASES])
def test_a_bad_benchmark_input_is_exit_2_in_one_message(script, argv, named):
    done = _script(f"benchmarks/{script}", *argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert f"{script}: error: {named}" in done.stderr, done.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="bench_cache replays the public Mooncake trace in ../shared/data")
def test_bench_cache_block_size_that_does_not_split_the_trace_is_one_line():
    # 7 does not divide Mooncake's 512-token blocks: load_trace's ConfigError was a traceback, exit 1
    done = _script("benchmarks/bench_cache.py", "--block-size", "7", "--requests", "10", "--no-cold", "--no-e2e")
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and "serving.block_size is 7" in done.stderr, done.stderr


def test_aiconfigurator_all_reduce_of_a_folder_without_its_tables_is_refused(tmp_path):
    # a folder with no GPU's all-reduce table printed the table's header alone, exit 0
    (tmp_path / "h100_sxm" / "gemm").mkdir(parents=True)
    done = _script("benchmarks/aiconfigurator_all_reduce.py", str(tmp_path))
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith(f"aiconfigurator_all_reduce.py: error: {tmp_path}: no ") and \
        "custom_allreduce_perf" in done.stderr and done.stderr.count("\n") == 1, done.stderr


# ------------------------------------------------------------------------------------------------ tools

@pytest.mark.skipif(not SPLITWISE_PERF.is_file(), reason="the Splitwise table is in ../shared/data")
def test_fit_roofline_set_of_a_key_it_fits_is_refused(tmp_path):
    # the fit replaced the value given, in the overlay as well: --set compute.flops_efficiency=0.5 wrote 0.596
    out = tmp_path / "o.yaml"
    done = _script("tools/fit_roofline.py", str(SPLITWISE_PERF), "--only", "llama2-70b", "--holdout", "none",
                   "--set", "compute.flops_efficiency=0.5", "--out", str(out))
    assert done.returncode == 2 and not out.exists(), (done.returncode, done.stderr[-2000:])
    assert done.stderr == ("fit_roofline: error: --set compute.flops_efficiency: --fit fits it (to hold it at the "
                           "value given, leave it out of --fit)\n")


@pytest.mark.skipif(not SPLITWISE_PERF.is_file(), reason="the Splitwise table is in ../shared/data")
def test_fit_roofline_holds_a_key_set_and_left_out_of_fit(tmp_path):
    out = tmp_path / "o.yaml"
    done = _script("tools/fit_roofline.py", str(SPLITWISE_PERF), "--only", "llama2-70b", "--holdout", "none",
                   "--set", "compute.flops_efficiency=0.5", "--fit", "bandwidth_efficiency", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "  flops_efficiency: 0.5\n" in out.read_text()


@pytest.mark.parametrize("model", ["gemma-2-9b", "gemma-3-12b"])
def test_profile_gpu_refuses_a_model_no_profile_can_time_before_timing(tmp_path, model, monkeypatch, capsys):
    # a sliding-window/full-attention mix: the whole profile was timed and written, and every
    # serving run then refused it (sim.serving.compute_backend.profile_misfit)
    pytest.importorskip("torch", reason="PyTorch is not installed (optional extra: pip install 'kvsim[torch]')")
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import profile_gpu

    assert profile_gpu.main(["--device", "cpu", "--tiny", "--model", model, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"profile_gpu: error: {model} has sliding-window and full-attention layers: kvsim refuses any "
                   "profile for it (a profile times full attention only); use compute.backend 'roofline'"), err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- the report checker

def test_checker_counts_the_decode_ranks_copies_of_an_mla_latent(run_cli, tmp_path):
    # --cluster --pd at decode TP 4, serving TP 1: tests/report_invariants.py took the copies from
    # serving.tensor_parallel_size and flagged a consistent report (found by a random draw of this round)
    import json

    from tests.report_invariants import check_report

    out = tmp_path / "r.json"
    status, _, err = run_cli("--cluster", "--pd", "--preset", "smoke", "--set", "workload.synthetic.num_requests=30",
                             "--set", "model=deepseek-v2-lite", "--set", "hardware.gpu=h200",
                             "--set", "pd.prefill_tensor_parallel_size=1", "--set", "pd.decode_tensor_parallel_size=4",
                             "--set", "cluster.nodes_per_rack=2", "--no-plot", "--quiet", "--report-json", out)
    assert status == 0, err
    report = json.loads(out.read_text())
    cluster = report["runs"][0]["metrics"]["cluster"]
    # by hand: DeepSeek-V2-Lite's latent, 27 layers x (512 + 64) values x 2 bytes x 16 tokens, whole on each of the
    # 4 decode ranks (README: MLA's latent from one rank; kv_transfer_bytes counts every decode rank's shard)
    assert cluster["block_bytes"] == 27 * 576 * 2 * 16
    assert cluster["kv_transfer_bytes"]["node"] == cluster["kv_transfer_blocks"]["node"] * 27 * 576 * 2 * 16 * 4 > 0
    assert check_report(report) == []


# ------------------------------------------------------------------------------------------------ main.py

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("rows, named", [
    (["2023-11-16 18:15:50,300,10"] * 3, "has 3 requests that all arrive at once"),
    (["2023-11-16 18:15:50,300,10"], "holds one request"),
])
def test_a_rate_scale_with_no_gap_to_divide_is_refused(run_cli, tmp_path, rows, named):
    # no inter-arrival time to divide: the run was the unscaled one, exit 0 (--max-rate already refused these)
    trace = tmp_path / "t.csv"
    trace.write_text(AZURE_HEADER + "\n".join(rows) + "\n")
    status, _, err = run_cli("--workload-trace", trace, "--rate-scale", "2", "--no-plot", "--quiet")
    assert status == 2 and err == (f"kvsim: error: config key 'workload.rate_scale'=2 changes nothing: the workload "
                                   f"{named}; drop it" + ("" if len(rows) == 1 else ", or draw arrivals at a rate "
                                                          "(workload.arrivals.process, rate_rps)") + "\n"), err


@pytest.mark.parametrize("process", ["poisson", "gamma", "resample"])
def test_an_arrival_process_over_one_request_is_refused(run_cli, tmp_path, process):
    # one request has no gap to draw: its arrival stood as the trace's, exit 0, and --seeds N ran N equal runs, a
    # zero-width "interval" (a trace at its own times is refused there for that), where --rate-scale is refused (hfuzz9)
    trace = tmp_path / "t.csv"
    trace.write_text(AZURE_HEADER + "2023-11-16 18:15:50,300,10\n")
    for seeds in ([], ["--seeds", "3"]):
        status, _, err = run_cli("--workload-trace", trace, "--set", f"workload.arrivals.process={process}", *seeds,
                                 "--no-plot", "--quiet")
        assert status == 2 and err == (f"kvsim: error: config key 'workload.arrivals.process'={process} changes "
                                       "nothing: the workload holds one request, which has no gap to draw; "
                                       "drop it\n"), err


def test_a_rate_scale_over_drawn_arrivals_still_scales(run_cli, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(AZURE_HEADER + "2023-11-16 18:15:50,300,10\n" * 3)
    status, _, err = run_cli("--workload-trace", trace, "--rate-scale", "2", "--set", "workload.arrivals.process=poisson",
                             "--set", "workload.arrivals.rate_rps=3", "--no-plot", "--quiet")
    assert status == 0, err


# Settings a run never read, each taken and the report byte for byte as without it (exit 0), checked by hand on the
# bundled trace; README Configuration: a --set key the mode never reads, or another setting leaves unread, is an error
UNREAD_CASES = {
    # SHARDS sampling of --mrc's curve: the serving modes draw no curve (cache-only without --mrc refused it already)
    "mrc_sample_rate_in_single": (["--set", "cache.mrc_sample_rate=0.5"],
                                  "--set cache.mrc_sample_rate: not used by the single-node mode (default) (it "
                                  "applies to --cache-only)"),
    "mrc_sample_rate_in_pd": (["--pd", "--set", "cache.mrc_sample_rate=0.5"],
                              "--set cache.mrc_sample_rate: not used by --pd (it applies to --cache-only)"),
    # vLLM's hybrid manager groups sliding-window and full layers (sim.serving.kv_groups reads the flag for those
    # alone): Llama has one kind of layer
    "disable_hybrid_manager_of_a_plain_model": (
        ["--set", "serving.disable_hybrid_kv_cache_manager=true"],
        "--set serving.disable_hybrid_kv_cache_manager: model llama-3.1-8b has one kind of attention layer: there is "
        "no hybrid KV-cache manager to disable (it applies to sliding-window/full or Gated DeltaNet mixes)"),
    # drawn arrival times keep the requests' order, and the replay reads no time (as --rate-scale, refused already)
    "arrival_process_in_cache_only": (
        ["--cache-only", "--set", "workload.arrivals.process=gamma", "--set", "workload.arrivals.cv=3"],
        "--set workload.arrivals.process: the cache-only replay has no clock (of arrival times only the learned "
        "policy's features read any; runs: lru); drop it"),
    # two settings of HBM's size: num_gpu_blocks wins (sim.cache.tiers.hbm_capacity_blocks), the GiB were dropped
    # (at 300 requests, rate x5: TTFT mean 5.730 s with both as with num_gpu_blocks alone; 10.298 s with the GiB alone)
    "hbm_capacity_beside_num_gpu_blocks": (
        ["--set", "serving.num_gpu_blocks=400", "--set", "cache.tiers.hbm.capacity_gib=0.5"],
        "--set cache.tiers.hbm.capacity_gib: serving.num_gpu_blocks=400 sets HBM's KV blocks, overriding the capacity "
        "in GiB; give one of them"),
    "hbm_capacity_beside_num_gpu_blocks_cache_only": (
        ["--cache-only", "--set", "serving.num_gpu_blocks=400", "--set", "cache.tiers.hbm.capacity_gib=0.5"],
        "--set cache.tiers.hbm.capacity_gib: serving.num_gpu_blocks=400 sets HBM's KV blocks, overriding the capacity "
        "in GiB; give one of them"),
    # PD's router picks a prefill instance (sim.serving.run); decode takes the least loaded with room whatever it says
    "pd_router_of_one_prefill_instance": (
        ["--pd", "--set", "pd.router=round-robin"],
        "--set pd.router: pd.num_prefill is 1: every request goes to that prefill instance, whatever the router"),
}


@pytest.mark.parametrize("name", UNREAD_CASES)
def test_a_setting_the_run_leaves_unread_is_refused(run_cli, name):
    argv, message = UNREAD_CASES[name]
    status, _, err = run_cli(*argv, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet")
    assert (status, err) == (2, f"kvsim: error: {message}\n")


@pytest.mark.parametrize("argv", [
    ["--mrc", "--set", "cache.mrc_sample_rate=0.5"],
    ["--set", "model=gemma-2-9b", "--set", "serving.disable_hybrid_kv_cache_manager=true"],
    ["--pd", "--set", "pd.router=round-robin", "--set", "pd.num_prefill=2"],
    ["--set", "cache.tiers.hbm.capacity_gib=0.5"],
], ids=["mrc", "hybrid-model", "two-prefill", "hbm-gib-alone"])
def test_the_same_settings_where_they_are_read_are_taken(run_cli, argv):
    status, _, err = run_cli(*argv, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet")
    assert status == 0, err


@pytest.mark.parametrize("mode", [[], ["--pd"], ["--cluster"], ["--trace-stats"],
                                  ["--cache-only", "--set", "cache.insert_outputs=true"]])
def test_outputs_in_next_turn_false_where_no_prompt_continues_another_is_refused(run_cli, mode):
    # the bundled Azure trace has no sessions (block ids "unique"): no later prompt holds an answer, so the answers'
    # blocks were their own with true and false alike, and the report was the same (exit 0)
    status, _, err = run_cli(*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet",
                             "--set", "workload.outputs_in_next_turn=false")
    assert (status, err) == (2, "kvsim: error: config key 'workload.outputs_in_next_turn'=false changes nothing: no "
                                f"prompt of {BUNDLED_AZURE} holds another request's answer, so every "
                                "answer has blocks of its own either way\n")


def test_outputs_in_next_turn_false_over_conversations_is_taken(run_cli):
    # an empty start: 60 requests (12 s) of a stationary one are mostly single turns of conversations under way
    status, _, err = run_cli("--preset", "smoke", "--set", "workload.synthetic.num_requests=60", "--no-plot", "--quiet",
                             "--set", "workload.synthetic.start=empty", "--set", "workload.outputs_in_next_turn=false")
    assert status == 0, err


BUNDLE = SHARED_DATA / "profiles" / "llmservingsim_rtx4090_llama31_8b"


@pytest.mark.skipif(not BUNDLE.is_dir(), reason="the LLMServingSim bundle is in ../shared/data")
@pytest.mark.parametrize("mode", [[], ["--pd"]])
@pytest.mark.parametrize("setting", ["compute.flops_efficiency=0.5", "compute.bandwidth_efficiency=0.5",
                                     "compute.attention_efficiency=0.3", "compute.gemm_floor_us=20",
                                     "compute.attention_floor_us=50", "compute.attention_tile_us=20"])
def test_roofline_constants_beside_a_bundle_are_refused(run_cli, mode, setting):
    # the bundle times every operator (LLMServingSimCompute has no roofline): each was taken and the report came out
    # byte for byte as without it, exit 0; the host's costs (compute.host_step_us, ...) are still read
    key = setting.partition("=")[0]
    status, _, err = run_cli(*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet",
                             "--set", "compute.backend=profiled", "--set", f"compute.profile={BUNDLE}",
                             "--set", "hardware.gpu=rtx4090", "--set", setting)
    assert (status, err) == (2, f"kvsim: error: --set {key}: compute.profile {BUNDLE} is an LLMServingSim bundle, which "
                                "times every operator from its tables: the roofline's constants price none of a step\n")


@pytest.mark.skipif(not BUNDLE.is_dir(), reason="the LLMServingSim bundle is in ../shared/data")
def test_host_costs_beside_a_bundle_are_taken(run_cli):
    status, _, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet",
                             "--set", "compute.backend=profiled", "--set", f"compute.profile={BUNDLE}",
                             "--set", "hardware.gpu=rtx4090", "--set", "compute.host_step_us=20")
    assert status == 0, err


@pytest.mark.parametrize("argv, key, sized", [
    (["--set", "serving.num_gpu_blocks=400", "--set", "serving.gpu_memory_utilization=0.5"],
     "serving.gpu_memory_utilization", "serving.num_gpu_blocks"),
    (["--pd", "--set", "cache.tiers.hbm.capacity_gib=2", "--set", "serving.gpu_memory_utilization=0.5"],
     "serving.gpu_memory_utilization", "cache.tiers.hbm.capacity_gib"),
    (["--cache-only", "--set", "serving.num_gpu_blocks=400", "--set", "serving.enforce_eager=true"],
     "serving.enforce_eager", "serving.num_gpu_blocks"),
])
def test_memory_budget_keys_beside_an_hbm_size_given_are_refused(run_cli, argv, key, sized):
    # HBM sized outright draws no memory budget (sim.cache.tiers.hbm_capacity_blocks): the utilization (every mode)
    # and the CUDA graphs' estimate (the replay, which times no step) were taken, the report as without them (exit 0)
    status, _, err = run_cli(*argv, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet")
    assert (status, err) == (2, f"kvsim: error: --set {key}: {sized} sizes HBM outright: no memory budget is drawn to "
                                "read it\n")


def test_enforce_eager_beside_num_gpu_blocks_still_times_steps(run_cli):
    status, _, err = run_cli("--set", "serving.num_gpu_blocks=400", "--set", "serving.enforce_eager=true",
                             "--workload-trace", BUNDLED_AZURE, "--workload-limit", "30", "--no-plot", "--quiet")
    assert status == 0, err


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the public Mooncake trace is in ../shared/data")
def test_checker_lets_a_hybrid_models_sliding_copies_be_read_beside_its_hits(run_cli, tmp_path):
    # Gemma 2 under vLLM's hybrid manager, inclusive DRAM: sliding copies are loaded from DRAM while tier_hit_ratio
    # counts the full group's blocks, found in HBM (README Configuration); the checker flagged "bytes_read ... is not a
    # whole number of blocks per hit (0 hits)" (found by a random draw of round 3)
    import json

    from tests.report_invariants import check_report

    out = tmp_path / "r.json"
    status, _, err = run_cli("--workload-trace", SHARED_DATA / "traces" / "mooncake_conversation.jsonl",
                             "--workload-limit", "35", "--rate-scale", "0.1", "--set", "model=gemma-2-9b",
                             "--set", "hardware.gpu=a100-80gb", "--set", "serving.tensor_parallel_size=2",
                             "--set", "cache.tiers.dram.capacity_gib=8", "--set", "cache.inclusion=inclusive",
                             "--no-plot", "--quiet", "--report-json", out)
    assert status == 0, err
    report = json.loads(out.read_text())
    metrics = report["runs"][0]["metrics"]
    # by hand: a sliding group's block is Gemma 2 9B's 21 sliding layers x 8 KV heads x 256 x (K, V) x 2 bytes x 16
    # tokens, every TP rank's shard (a lower tier holds the whole block)
    sliding_block = 21 * 8 * 256 * 2 * 2 * 16
    assert metrics["tier_hit_ratio"]["dram"] == 0 and metrics["tiers"]["dram"]["bytes_read"] > 0
    assert metrics["tiers"]["dram"]["bytes_read"] % sliding_block == 0
    assert check_report(report) == []


@pytest.mark.parametrize("tool, argv, prefix", [
    # (each starts as the tool's other errors do: fit_roofline's "fit_roofline: error: --set ...", above)
    # argparse kept the last: --fit a --fit b fitted b alone, two --out wrote the second only
    ("fit_roofline.py", ["{table}", "--fit", "flops_efficiency", "--fit", "bandwidth_efficiency"],
     "fit_roofline: error: --fit is given twice"),
    ("fit_roofline.py", ["{table}", "--holdout", "none", "--holdout", "tp"], "fit_roofline: error: --holdout is given twice"),
    ("fit_kernel_floors.py", ["tests/fixtures/aiconfigurator/h100_sxm", "--out", "{tmp}/a.yaml", "--out", "{tmp}/b.yaml"],
     "fit_kernel_floors: error: --out is given twice"),
    ("ns3_kv_timing.py", ["point-to-point", "--out", "{tmp}/a.json", "--out", "{tmp}/b.json"],
     "ns3_kv_timing: error: --out is given twice"),
])
def test_a_tool_flag_of_one_value_given_twice_is_refused(tmp_path, tool, argv, prefix):
    argv = [a.replace("{table}", str(SPLITWISE_PERF)).replace("{tmp}", str(tmp_path)) for a in argv]
    done = _script(f"tools/{tool}", *argv)
    assert done.returncode == 2 and done.stderr == f"{prefix}: give it once (see --help)\n", done.stderr
    assert list(tmp_path.iterdir()) == []


def test_profile_gpu_model_given_twice_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed (optional extra: pip install 'kvsim[torch]')")
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import profile_gpu

    with pytest.raises(SystemExit) as done:  # profiled the second model, qwen2-7b, alone
        profile_gpu.main(["--device", "cpu", "--tiny", "--model", "llama-3.1-8b", "--model", "qwen2-7b",
                          "--out", str(tmp_path / "out")])
    assert done.value.code == 2
    assert capsys.readouterr().err == "profile_gpu: error: --model is given twice: give it once (see --help)\n"
    assert not (tmp_path / "out").exists()
