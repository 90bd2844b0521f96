"""Bad input, round 5 (helper hfuzz5): calibration bundles of another model or precision, settings a mode leaves
unread, and traces as users have them, which the earlier rounds (tests/test_bad_inputs.py,
tests/test_bad_trace_inputs.py, tests/test_bad_inputs_round3.py, tests/test_bad_inputs_round4.py) did not reach. Each
case ran with a silently wrong or dropped input (exit 0), or refused after long work; each is now one line and exit 2
before the work starts."""

from __future__ import annotations

import json

import pytest

from tests.bad_input_helpers import AZURE_OK, TRACE_STATS, Case, check_bad_input
from tests.conftest import SHARED_DATA

# ../shared's RTX 4090 bundle (LLMServingSim profiler output of meta-llama/Llama-3.1-8B in bf16) and its overlay
BUNDLED_4090 = SHARED_DATA / "profiles" / "llmservingsim_rtx4090_llama31_8b"
OVERLAY_4090 = "profiles/rtx4090_llama31_8b_vllm.yaml"
PROFILED = ["--quiet", "--no-plot", "--set", "compute.backend=profiled", "--set", "compute.profile={tmp}/b"]

CASES: dict[str, Case] = {
    # a bundle times one decoder layer of the model it measured (meta.yaml model): Llama 2 7B's layers (32 KV heads)
    # timed Llama 3.1 8B's (8): the bundle's hf_overrides checks see only the counts it states
    "bundle_of_another_model": Case(PROFILED, names=("{tmp}/b", "'meta-llama/Llama-2-7b-hf' (llama-2-7b",
                                                     "of num_kv_heads 32, but model llama-3.1-8b has 8"),
                                    files={"b/meta.yaml": "model: meta-llama/Llama-2-7b-hf\n"}),
    "bundle_of_another_model_in_check": Case(["--check-calibration", "{tmp}/o.yaml"],
                                             names=("'meta-llama/Llama-2-7b-hf' (llama-2-7b", "cannot be checked"),
                                             files={"o.yaml": "compute: {backend: profiled, profile: b}\n",
                                                    "b/meta.yaml": "model: meta-llama/Llama-2-7b-hf\n"}),
    # a bf16 bundle's times at serving.dtype fp32 (or fp8): the steps took the bf16 times, the memory the other width
    "bundle_of_another_precision": Case([*PROFILED, "--set", "serving.dtype=fp32"],
                                        names=("{tmp}/b", "measured in bf16 (meta.yaml variant)", "serving.dtype is fp32"),
                                        files={"b/meta.yaml": "variant: bf16\n"}),
    # the serving modes skip a request above serving.max_model_len (vLLM rejects it); the cache-only replay takes every
    # request of a trace whatever it says (it bounds a synthetic conversation's context). --trace-stats reads it for
    # its serving ceiling, over the requests a serving run admits (tests/test_generated_blocks.py)
    "max_model_len_in_cache_only_over_a_trace": Case(["--cache-only", "--quiet", "--no-plot", "--workload-trace",
                                                      "{tmp}/t.csv", "--set", "serving.max_model_len=200"],
                                                     names=("--set serving.max_model_len", "--cache-only takes every "
                                                            "request", "t.csv"), files={"t.csv": AZURE_OK}),
    # --capacity-blocks gives the one tier's blocks, counted whole: the TP sized nothing (the report was the TP 1 one)
    "tensor_parallel_beside_capacity_blocks": Case(["--cache-only", "--quiet", "--no-plot", "--workload-trace",
                                                    "{tmp}/t.csv", "--capacity-blocks", "5", "--set",
                                                    "serving.tensor_parallel_size=2"],
                                                   names=("--set serving.tensor_parallel_size", "--capacity-blocks"),
                                                   files={"t.csv": AZURE_OK}),
    "gpus_per_node_beside_capacity_blocks": Case(["--cache-only", "--quiet", "--no-plot", "--workload-trace",
                                                  "{tmp}/t.csv", "--capacity-blocks", "5", "--set",
                                                  "hardware.gpus_per_node=2"],
                                                 names=("--set hardware.gpus_per_node", "--capacity-blocks"),
                                                 files={"t.csv": AZURE_OK}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


needs_bundle = pytest.mark.skipif(not BUNDLED_4090.is_dir(), reason="the RTX 4090 bundle is in ../shared/data")


@needs_bundle
@pytest.mark.parametrize("argv, named", [
    # Llama 3.1 70B timed by Llama 3.1 8B's operators x 80 layers: TTFT 66 ms, exit 0
    (["--set", "model=llama-3.1-70b"], "of hidden_size 4096, but model llama-3.1-70b has 8192"),
    # bf16 operators' times at fp32: the same TTFT and TPOT as bf16, exit 0
    (["--set", "serving.dtype=fp32"], "measured in bf16 (meta.yaml variant), but serving.dtype is fp32"),
], ids=["70b", "fp32"])
def test_the_bundled_overlay_refuses_another_model_or_precision(run_cli, tmp_path, argv, named):
    (tmp_path / "t.csv").write_text(AZURE_OK)
    status, _, err = run_cli("--calibration-profile", OVERLAY_4090, "--workload-trace", tmp_path / "t.csv", *argv,
                             "--quiet", "--no-plot")
    assert status == 2 and named in err, err


@needs_bundle
@pytest.mark.parametrize("argv", [["--set", "model=llama-3-8b", "--set", "serving.max_model_len=8192"],
                                  ["--set", "serving.dtype=fp16"]], ids=["same-layers", "same-width"])
def test_a_model_of_the_same_layers_or_a_precision_of_the_same_width_is_taken(run_cli, tmp_path, argv):
    """Llama 3 8B's layers are Llama 3.1 8B's (its context is shorter); fp16 is bf16's two bytes."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    report = tmp_path / "r.json"
    status, _, err = run_cli("--calibration-profile", OVERLAY_4090, "--workload-trace", tmp_path / "t.csv", *argv,
                             "--quiet", "--no-plot", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["runs"][0]["metrics"]["requests_completed"] == 3


def test_max_model_len_bounds_a_synthetic_conversation_in_trace_stats(run_cli):
    """Where it is read (a synthetic conversation keeps its latest tokens within it), it is taken."""
    status, _, err = run_cli(*TRACE_STATS, "--preset", "smoke", "--workload-limit", "50", "--set",
                             "serving.max_model_len=300")
    assert status == 0, err


# Qwen2.5-7B-Instruct's config.json (huggingface.co/Qwen/Qwen2.5-7B-Instruct) with the rope_scaling its model card
# tells users to add for texts beyond 32,768 tokens
QWEN25_7B_YARN = {
    "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": False,
    "vocab_size": 152064, "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}}


@pytest.mark.parametrize("scaling, context", [
    # vLLM config/model.py _get_and_verify_max_len: yarn serves original_max_position_embeddings x factor
    ({"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}, 131_072),
    ({"rope_type": "linear", "factor": 2.0}, 65_536),  # any other type: max_position_embeddings x factor
    ({"rope_type": "dynamic", "factor": 2.0}, 65_536),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, 32_768),  # llama3 (and su/longrope) are not scaled
    (None, 32_768),
], ids=["yarn", "linear", "dynamic", "llama3", "none"])
def test_a_config_json_context_is_the_one_vllm_serves(tmp_path, scaling, context):
    """A request above max_position_embeddings but within the scaled context was skipped as exceeds_max_model_len, and
    serving.max_model_len=131072 refused as beyond the model's context (exit 2): rope_scaling was read for the rotary
    caches alone."""
    from sim.serving.memory_profile import rope_cache_bytes
    from sim.specs import model_spec

    (tmp_path / "config.json").write_text(json.dumps({**QWEN25_7B_YARN, "rope_scaling": scaling}))
    spec = model_spec(str(tmp_path))
    assert spec.max_position_embeddings == context
    # the caches vLLM builds keep their own rows: yarn's original x factor, linear's x factor, the rest the config's
    rows = {"yarn": 131_072, "linear": 65_536}.get((scaling or {}).get("type", (scaling or {}).get("rope_type")), 32_768)
    assert rope_cache_bytes(spec, "bf16") == rows * 128 * 2


def test_a_gemma3_context_is_not_scaled_again_without_its_text_model_type(tmp_path):
    """Gemma 3's max_position_embeddings is scaled already (vLLM _get_and_verify_max_len skips the factor for a
    model_type holding "gemma3"; its hf_text_config is a Gemma3TextConfig, model_type gemma3_text, whether or not the
    file's text_config says so): a text_config without model_type was served at 8 x 131,072 = 1,048,576 tokens."""
    from sim.specs import model_spec
    from tests.hybrid_configs import GEMMA_3_27B

    text = {k: v for k, v in GEMMA_3_27B["text_config"].items() if k != "model_type"}
    (tmp_path / "config.json").write_text(json.dumps({**GEMMA_3_27B, "text_config": text}))
    # Gemma3TextConfig's max_position_embeddings default (the 27B's text_config leaves it out), unscaled
    assert model_spec(str(tmp_path)).max_position_embeddings == 131_072


def test_a_request_within_a_yarn_context_is_served(run_cli, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(QWEN25_7B_YARN))
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:10,40000,10\n"
                                    "2023-11-16 18:15:11,200,10\n")
    report = tmp_path / "r.json"
    status, _, err = run_cli("--workload-trace", tmp_path / "t.csv", "--set", f"model={tmp_path / 'm'}", "--set",
                             "serving.max_model_len=131072", "--quiet", "--no-plot", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["trace"]["rows_used"] == 2
