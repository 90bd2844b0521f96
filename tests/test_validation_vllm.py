"""Against a real server: replay a measured vLLM 0.19 run (RTX 4090, Llama-3.1-8B, 300 ShareGPT requests)
with the LLMServingSim profile bundle it was calibrated with; TTFT, TPOT and latency within 5%."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import InputError
from sim.serving.run import run_serving
from tests.conftest import ROOT, replay_module

OVERLAY = ROOT / "profiles" / "rtx4090_llama31_8b_vllm.yaml"


def _measured(shared_data):
    path = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm" / "requests.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # definitions from the data README: TTFT = first - queued; TPOT over tokens after the first; latency = last - queued
    ttft = np.array([r["first_token_ts"] - r["queued_ts"] for r in rows])
    tpot = np.array([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1) for r in rows if r["output_toks"] > 1])
    latency = np.array([r["last_token_ts"] - r["queued_ts"] for r in rows])
    return {"ttft": ttft, "tpot": tpot, "latency": latency}


def test_replay_matches_measured_vllm_within_5_percent(shared_data):
    from trace.workload import load_workload

    trace_path = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    config = load_config(None, overlays=[OVERLAY], sets=[f"workload.trace={trace_path}"])
    trace = load_workload(config)
    assert trace.provenance.block_ids == "chained"  # real token ids give exact prefix sharing
    _, requests = run_serving(trace, config, "single")
    # as measured: from when the engine took each request in (vLLM's queued_ts), not from its arrival
    simulated = {
        "ttft": requests.first_token - requests.queued,
        "tpot": requests.tpot[requests.output_tokens > 1],
        "latency": requests.last_token - requests.queued,
    }
    measured = _measured(shared_data)
    assert len(measured["ttft"]) == len(simulated["ttft"]) == 300
    for metric in ("ttft", "tpot", "latency"):
        for stat in (np.mean, np.median, lambda x: np.percentile(x, 99)):
            assert stat(simulated[metric]) == pytest.approx(stat(measured[metric]), rel=0.05), metric


def test_the_replayed_engine_state_follows_the_measured_one(shared_data):
    """The bundled run's timeseries.csv (running and waiting requests, KV cache in use, once a second): the replay's
    timeline stays within 10% of each count's mean and 5 points of KV use, on average over the run's 184 seconds,
    through its phases (a queue of 230 requests waiting on KV memory, then draining)."""
    from trace.workload import load_workload

    replay = replay_module()
    trace_path = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    config = load_config(None, overlays=[OVERLAY], sets=[f"workload.trace={trace_path}"])
    result, _ = run_serving(load_workload(config), config, "single")
    run = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b"
    state = replay.state_comparison(run / "vllm" / "timeseries.csv", result.metrics["timeseries"])
    for column in ("running", "waiting"):
        measured, _, diff = state[column]
        assert diff <= 0.10 * measured, column
    assert state["kv_cache_pct"][2] <= 5.0


def test_a_state_column_zero_at_every_tick_is_not_recorded(tmp_path):
    """A measured column that is 0 at every tick of a run that served requests was not logged (the RTX PRO 6000 runs
    of LLMServingSim's bench/examples log kv_cache_pct 0.0 while 128 requests run): no difference is claimed for it."""
    replay = replay_module()
    timeseries = tmp_path / "timeseries.csv"
    timeseries.write_text("t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n"
                          "1.0,100.0,10.0,2,1,0.0\n2.0,0.0,20.0,4,0,0.0\n")
    timeline = {"t_s": [0.5, 1.5], "running": [2, 3], "queued": [1, 1], "kv_usage": [0.1, 0.2]}
    state = replay.state_comparison(timeseries, timeline)
    assert state["kv_cache_pct"] is None
    # read at the last sample at or before each tick: running 2, 3 against 2, 4; waiting 1, 1 against 1, 0
    assert state["running"] == pytest.approx((3.0, 2.5, 0.5))
    assert state["waiting"] == pytest.approx((0.5, 1.0, 0.5))


def test_the_engine_read_from_meta_json_is_the_hand_written_overlay(shared_data, tmp_path):
    """benchmarks/replay_vllm.py states a measured run's engine from its vllm/meta.json; for the bundled run that
    is the engine profiles/rtx4090_llama31_8b_vllm.yaml was written to state (model, GPU, engine limits, KV)."""
    replay = replay_module()
    run = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b"
    overlay = tmp_path / "engine.yaml"
    bundle = shared_data / "profiles" / "llmservingsim_rtx4090_llama31_8b"
    overlay.write_text(json.dumps(replay.engine_overlay(run, bundle)))
    derived, written = load_config(None, overlays=[overlay]), load_config(None, overlays=[OVERLAY])
    assert (derived.model, derived.hardware, derived.cache) == (written.model, written.hardware, written.cache)
    assert derived.serving == written.serving
    assert Path(derived.compute.profile).resolve() == Path(written.compute.profile).resolve()


def _run_with(shared_data, tmp_path, edit) -> Path:
    """A copy of the bundled run's folder whose meta.json ``edit`` changed."""
    meta = json.loads((shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm" / "meta.json").read_text())
    edit(meta)
    (tmp_path / "vllm").mkdir(parents=True)
    (tmp_path / "vllm" / "meta.json").write_text(json.dumps(meta))
    return tmp_path


@pytest.mark.parametrize("edit, named", [
    (lambda m: m["resolved_config"]["parallel_config"].update(pipeline_parallel_size=2), "pipeline_parallel_size"),
    (lambda m: m["resolved_config"].update(speculative_config={"method": "eagle"}), "speculative"),
    (lambda m: m["resolved_config"]["model_config"].update(quantization="awq"), "'awq'"),
    (lambda m: m["engine_kwargs"].update(kv_cache_dtype="fp8_inc"), "'fp8_inc'"),
])
def test_a_run_with_an_engine_feature_kvsim_does_not_model_is_refused_by_name(shared_data, tmp_path, edit, named):
    """Replaying such a run would compare another engine with the measurement: the replay stops and names it."""
    run = _run_with(shared_data, tmp_path, edit)
    with pytest.raises(InputError, match=re.escape(named)):
        replay_module().engine_overlay(run, None)


def test_the_servers_kv_cache_dtype_and_max_model_len_are_the_replays(shared_data, tmp_path):
    def edit(meta):
        meta["engine_kwargs"].update(kv_cache_dtype="fp8_e4m3", max_model_len=4096)

    serving = replay_module().engine_overlay(_run_with(shared_data, tmp_path, edit), None)["serving"]
    assert (serving["kv_cache_dtype"], serving["max_model_len"]) == ("fp8", 4096)


def test_a_run_naming_its_model_by_the_servers_path_is_replayed_as_that_model(shared_data, tmp_path):
    """Later runs record the server's own checkout (``/data/model/Qwen3-32B``) as the model: the replay names it
    by the checkout's folder; a run whose GPU nothing states is refused by name rather than run on a default."""
    def edit(meta):
        meta["model"] = meta["engine_kwargs"]["model"] = "/data/model/Llama-3.1-8B"

    replay = replay_module()
    assert replay.engine_overlay(_run_with(shared_data, tmp_path / "a", edit), None)["model"] == "Llama-3.1-8B"
    with pytest.raises(InputError, match="the run's GPU is in neither vllm/meta.json"):
        replay.engine_overlay(_run_with(shared_data, tmp_path / "b", lambda meta: meta.pop("hardware")), None)


@pytest.mark.parametrize("flag", ["scheduler_reserve_full_isl", "async_scheduling"])
def test_the_servers_scheduler_behaviour_is_the_replays(shared_data, tmp_path, flag):
    """vLLM 0.19's resolved scheduler config states scheduler_reserve_full_isl (the admission gate) and
    async_scheduling, both true in the bundled run; a resolved scheduler config without one is a vLLM from before it
    (admission on the first chunk alone; a synchronous loop)."""
    replay = replay_module()
    bundled = replay.engine_overlay(shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b", None)["serving"]
    older = replay.engine_overlay(_run_with(shared_data, tmp_path, lambda meta: meta["resolved_config"][
        "scheduler_config"].pop(flag)), None)["serving"]
    assert (bundled[flag], older[flag]) == (True, False)


def test_the_measured_run_plans_each_step_while_the_one_before_runs(shared_data):
    """Why kvsim models async scheduling: in the bundled run a request gets its first token two steps after vLLM
    planned it (its scheduled_ts), not one. While the queue is steady (requests 20-39: every step spends the full
    2048-token budget, about 200 ms, before KV memory runs short), a short prompt (one chunk) waits the step in flight,
    then runs in its own: first - scheduled is typically two step lengths, where a synchronous loop's is one."""
    path = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm" / "requests.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][20:40]
    # step ends: every time the engine emitted a first token (each ends a step)
    ends = np.unique([r["first_token_ts"] for r in rows])
    step = float(np.median(np.diff(ends)))
    short = [r["first_token_ts"] - r["scheduled_ts"] for r in rows if r["input_toks"] < 600]
    assert len(short) >= 10
    assert float(np.median(short)) == pytest.approx(2 * step, rel=0.1)


def test_the_replay_says_what_priced_the_steps_and_the_collectives():
    """The replay's first line names the engine it ran and where its collectives came from (a stated link's ring,
    or a bundle's measured samples), so a reader can tell which one an error belongs to."""
    describe = replay_module().describe_engine
    tp2 = load_config(None, sets=["model=llama-3.1-8b", "hardware.gpu=rtx4090", "serving.tensor_parallel_size=2",
                                  "hardware.gpus_per_node=2", "hardware.gpu_link_gbps=16", "hardware.gpu_link_latency_us=20"])
    assert describe(tp2) == ("replayed as llama-3.1-8b on rtx4090; TP 2; steps: roofline; "
                             "collectives: ring over 16 GB/s, 20 us a step")
    assert describe(load_config(None, sets=["model=llama-3.1-8b", "hardware.gpu=rtx4090"])) == \
        "replayed as llama-3.1-8b on rtx4090; TP 1; steps: roofline"


def test_a_data_parallel_runs_blocks_are_shared_by_its_engines(shared_data, tmp_path):
    """vLLM's front end records the sum of its data-parallel engines' KV blocks (vllm/v1/engine/utils.py
    ``wait_for_engine_startup``: "Sum values from all engines in DP case"), so each replayed engine gets its share;
    a sum that is not a multiple of the engines is refused by name rather than rounded. The engines are fed by load."""
    def data_parallel(total):
        def edit(meta):
            meta["engine_kwargs"]["data_parallel_size"] = 2
            meta["kv_cache"]["num_gpu_blocks"] = total
        return edit

    replay = replay_module()
    overlay = replay.engine_overlay(_run_with(shared_data, tmp_path / "a", data_parallel(5176)), None)
    assert (overlay["serving"]["num_instances"], overlay["serving"]["num_gpu_blocks"]) == (2, 2588)
    # vLLM's balancer picks the engine with the least 4 x waiting + running: by load, not by cached prefix
    assert overlay["cluster"]["router"] == "least-loaded"
    single = replay.engine_overlay(shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b", None)
    assert (single["serving"]["num_instances"], single["serving"]["num_gpu_blocks"]) == (1, 2588)
    assert "cluster" not in single
    with pytest.raises(InputError, match="num_gpu_blocks 5177 is the sum over 2 data-parallel engines"):
        replay.engine_overlay(_run_with(shared_data, tmp_path / "b", data_parallel(5177)), None)


def test_a_model_kvsim_does_not_name_is_read_from_the_runs_llmservingsim_checkout(shared_data, tmp_path):
    """LLMServingSim keeps the Hugging Face config.json of each model it serves under configs/model/<id>.json (its own
    variants too, e.g. DeepSeek-V3.2-Exp-16L64E): a run under bench/examples/<GPU>/<model> of that checkout is
    replayed as that config's model."""
    checkout = tmp_path / "LLMServingSim"
    config = checkout / "configs" / "model" / "acme" / "Lite-MoE.json"
    config.parent.mkdir(parents=True)
    config.write_text((ROOT / "tests" / "fixtures" / "hf_configs" / "DeepSeek-V2-Lite.json").read_text())

    def edit(meta):
        meta["model"] = meta["engine_kwargs"]["model"] = "acme/Lite-MoE"

    run = _run_with(shared_data, checkout / "bench" / "examples" / "RTX4090" / "Lite-MoE", edit)
    overlay = replay_module().engine_overlay(run, None)
    assert overlay["model"] == str(config.resolve())
    assert load_config(None, sets=[f"model={overlay['model']}"]).model == str(config.resolve())
    # a server's own path is no id under configs/model/ (joined there, it named <path>.json wherever that was)
    beside = tmp_path / "data" / "model" / "Lite-MoE.json"
    beside.parent.mkdir(parents=True)
    beside.write_text(config.read_text())

    def server_path(meta):
        meta["model"] = meta["engine_kwargs"]["model"] = str(beside.with_suffix(""))

    run = _run_with(shared_data, checkout / "bench" / "examples" / "RTX4090" / "by-path", server_path)
    with pytest.raises(InputError, match="neither one kvsim names .* give its config.json with --set model=PATH"):
        replay_module().engine_overlay(run, None)
    # the way out: the model stated (main passes --set model=...) is the one replayed, and checked as it
    assert replay_module().engine_overlay(run, None, model=str(beside))["model"] == str(beside)
    assert replay_module()._stated_model(["serving.block_size=16", f"model={beside}"]) == str(beside.resolve())


def test_an_fp8_run_is_replayed_only_as_an_fp8_checkpoint(shared_data, tmp_path):
    """A run serving an FP8 checkpoint (resolved model_config quantization 'fp8') replays when kvsim reads the model
    from its config.json (quantization_config fp8: LLMServingSim's DeepSeek-V3.2-Exp-16L64E), and is refused, with the
    way out, when kvsim's model of that name is unquantized (the named Llama-3.1-8B)."""
    checkout = tmp_path / "LLMServingSim"
    config = checkout / "configs" / "model" / "deepseek-ai" / "DeepSeek-V3.2-Exp-16L64E.json"
    config.parent.mkdir(parents=True)
    config.write_text((ROOT / "tests" / "fixtures" / "hf_configs" / "DeepSeek-V3.2-Exp-16L64E.json").read_text())

    def fp8(model_id):
        def edit(meta):
            meta["model"] = meta["engine_kwargs"]["model"] = model_id
            meta["resolved_config"]["model_config"]["quantization"] = "fp8"
            meta["resolved_config"].setdefault("cache_config", {})["cache_dtype"] = "fp8_ds_mla"
            meta["engine_kwargs"].pop("kv_cache_dtype", None)
        return edit

    replay = replay_module()
    run = _run_with(shared_data, checkout / "bench" / "examples" / "RTXPRO6000" / "DeepSeek-V3.2-Exp-16L64E",
                    fp8("deepseek-ai/DeepSeek-V3.2-Exp-16L64E"))
    overlay = replay.engine_overlay(run, None)
    assert overlay["model"] == str(config.resolve()) and overlay["serving"]["kv_cache_dtype"] == "fp8"
    with pytest.raises(InputError, match="uses quantization 'fp8', .*kvsim's meta-llama/Llama-3.1-8B is no FP8 checkpoint"):
        replay.engine_overlay(_run_with(shared_data, tmp_path / "named", fp8("meta-llama/Llama-3.1-8B")), None)

    def ds_mla_cache(meta):  # the sparse latent format on a model without sparse attention
        meta["resolved_config"].setdefault("cache_config", {})["cache_dtype"] = "fp8_ds_mla"
        meta["engine_kwargs"].pop("kv_cache_dtype", None)

    with pytest.raises(InputError, match="'fp8_ds_mla' is DeepSeek sparse attention's latent format, and kvsim's "
                                         "meta-llama/Llama-3.1-8B has no sparse attention"):
        replay.engine_overlay(_run_with(shared_data, tmp_path / "ds", ds_mla_cache), None)


def _bad_run(shared_data, tmp_path, meta_edit=None, requests_text=None, config_json=None) -> Path:
    """A copy of the bundled run with its meta.json, requests.jsonl or an LLMServingSim config.json spoiled."""
    source = shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b" / "vllm"
    run = tmp_path / "run"
    (run / "vllm").mkdir(parents=True)
    meta = json.loads((source / "meta.json").read_text())
    text = json.dumps(meta)
    if callable(meta_edit):
        meta_edit(meta)
        text = json.dumps(meta)
    elif meta_edit is not None:
        text = meta_edit
    (run / "vllm" / "meta.json").write_text(text)
    (run / "vllm" / "requests.jsonl").write_text(requests_text or (source / "requests.jsonl").read_text())
    if config_json is not None:
        (run / "config.json").write_text(config_json)
    return run


@pytest.mark.parametrize("spoil, named", [
    ({"meta_edit": "{not json"}, "meta.json: the run's engine description (vllm/meta.json) is not JSON"),
    ({"meta_edit": lambda m: m["engine_kwargs"].update(data_parallel_size="x")},
     "meta.json engine_kwargs.data_parallel_size must be a whole number of at least 1, got 'x'"),
    ({"meta_edit": lambda m: m["engine_kwargs"].update(tensor_parallel_size=0)},
     "engine_kwargs.tensor_parallel_size must be a whole number of at least 1, got 0"),
    ({"meta_edit": lambda m: (m["engine_kwargs"].update(data_parallel_size=2), m["kv_cache"].update(num_gpu_blocks="x"))},
     "meta.json kv_cache.num_gpu_blocks must be a whole number"),
    ({"meta_edit": lambda m: m.update(engine_kwargs=[1])}, "meta.json engine_kwargs must be an object, got list"),
    ({"requests_text": '{"queued_ts": 1}\n'}, "requests.jsonl: row 1 is not a request with numbers"),
    ({"config_json": '{"nodes": []}'}, "config.json: no nodes[0].instances[0] object"),
], ids=["meta-not-json", "dp-string", "tp-zero", "blocks-string", "engine-list", "request-row", "cluster-layout"])
def test_a_spoiled_run_is_refused_in_one_line(shared_data, tmp_path, spoil, named):
    """The replay reads a run's files as the Contract reads inputs: exit 2 and one line naming the file and key, never
    a traceback, and never a value read as another (a tensor_parallel_size of 0 was replayed at 1)."""
    import subprocess
    import sys

    run = _bad_run(shared_data, tmp_path, **spoil)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replay_vllm.py"), "--run", str(run), "--trace",
                           str(shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr, done.stderr


def test_a_workload_other_than_the_runs_is_refused_before_the_replay(shared_data, tmp_path):
    """20 of the 300 requests the server was fed: their latencies would be judged against all 300 measured ones
    (TTFT −99%); the count meta.json records is checked first."""
    import subprocess
    import sys

    lines = (shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl").read_text().splitlines()
    part = tmp_path / "first20.jsonl"
    part.write_text("\n".join(lines[:20]) + "\n")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replay_vllm.py"), "--run",
                           str(shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b"), "--trace", str(part)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "20 requests, but the run served 300" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_workload_of_the_runs_count_but_other_requests_is_refused_and_a_few_noted(shared_data, tmp_path, capsys):
    """300 requests, every output quartered (hfuzz8): the count matched, so the replay judged them against the
    measured run's latencies and printed TTFT -83.71% as if a model error. The run's requests.jsonl records each
    request's input_toks and output_toks: most not among the workload's is another workload, refused before the
    replay; a minority (an answer cut short) is noted (check_served, over a stand-in workload)."""
    import subprocess
    import sys

    check_served = replay_module().check_served
    rows = [json.loads(line) for line in
            (shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl").read_text().splitlines()]
    quartered = tmp_path / "quartered.jsonl"
    quartered.write_text("".join(json.dumps({**r, "output_toks": max(1, r["output_toks"] // 4),
                                             "output_tok_ids": r["output_tok_ids"][:max(1, r["output_toks"] // 4)]})
                                 + "\n" for r in rows))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "replay_vllm.py"), "--run",
                           str(shared_data / "validation" / "llmservingsim_rtx4090_llama31_8b"), "--trace",
                           str(quartered)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "of the 300 requests' token counts (input, output) are not among the run's" \
        in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    class Workload:  # the served requests' token counts, as the loader's Trace holds them
        def __init__(self, pairs):
            self.input_tokens = np.array([i for i, _ in pairs])
            self.output_tokens = np.array([o for _, o in pairs])

        def __len__(self):
            return len(self.input_tokens)

    served = [(100, 10), (200, 20), (300, 30), (100, 10)]
    check_served(Workload([(100, 10), (100, 10), (300, 30), (200, 20)]), served, Path("w"), Path("r"))  # (order free)
    assert capsys.readouterr().err == ""
    check_served(Workload([(100, 10), (100, 10), (300, 30), (200, 5)]), served, Path("w"), Path("r"))  # 1 of 4: noted
    assert "note: w: 1 of the 4 requests' token counts" in capsys.readouterr().err
    with pytest.raises(InputError, match="3 of the 4 requests"):
        check_served(Workload([(100, 9), (100, 9), (300, 30), (200, 5)]), served, Path("w"), Path("r"))


def test_the_bundled_replay_runs_where_no_prompt_holds_an_earlier_answer(shared_data):
    """The bundled trace records its answers (output_tok_ids) and no next turn holds one token for token (the chat
    template re-tokenises its first token), so the overlay's outputs_in_next_turn=false changes nothing: the replay
    runs with the default, where it was refused as an unread setting."""
    import subprocess
    import sys

    script = [sys.executable, str(ROOT / "benchmarks" / "replay_vllm.py")]
    done = subprocess.run(script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ttft   mean" in done.stdout
    # one the user states is refused, as main.py refuses it
    done = subprocess.run([*script, "--set", "workload.outputs_in_next_turn=false"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("replay_vllm.py: error: config key 'workload.outputs_in_next_turn'=false changes nothing: "
                           "no prompt of "), line
    assert line.endswith("llmservingsim_sharegpt_llama31_8b_300.jsonl holds another request's answer, "
                         "so every answer has blocks of its own either way"), line
