"""Bad input, round 7 (helper hfuzz6): what the earlier rounds (tests/test_bad_inputs*.py, test_bad_trace_inputs.py,
test_bad_calibration_inputs.py) left. Each case ran into a traceback (exit 1) or a silently wrong or absurd answer;
each is now one line and exit 2 before the work starts."""

from __future__ import annotations

import json

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input

# meta-llama/Llama-3.2-1B's config.json (huggingface.co/meta-llama/Llama-3.2-1B), its rope_scaling replaced per case
LLAMA_32_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "vocab_size": 128256, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                           "original_max_position_embeddings": 8192, "rope_type": "llama3"}}


def llama_with(**keys) -> str:
    """Llama-3.2-1B's config.json with ``keys`` replaced, as Python's json writes it (Infinity for an infinite float,
    which json.loads, and so transformers, reads back)."""
    return json.dumps({**LLAMA_32_1B, **keys})


SERVE = ["--workload-trace", "{tmp}/t.csv", "--quiet", "--no-plot", "--set", "model={tmp}/config.json"]

CASES: dict[str, Case] = {
    # an infinite rope factor passed the "positive number" check: int(131072 * inf) raised OverflowError (exit 1)
    "rope_factor_infinite": Case(SERVE, names=("{tmp}/config.json", "'rope_scaling.factor'", "finite", "inf"),
                                 files={"t.csv": AZURE_OK, "config.json": llama_with(
                                     rope_scaling={"rope_type": "linear", "factor": float("inf")})}),
    "rope_theta_infinite": Case(SERVE, names=("{tmp}/config.json", "'rope_theta'", "finite"),
                                files={"t.csv": AZURE_OK, "config.json": llama_with(rope_theta=float("inf"))}),
    # a factor of 1e6 served 1.3e11 positions, its cos/sin cache counted with the weights: "model (15627.3 GiB of
    # weights per GPU) does not fit ...; raise serving.tensor_parallel_size" (the cache is on every rank); at 1e300 the
    # message printed a 300-digit number of GiB
    "rope_factor_beyond_positions": Case(SERVE, names=("{tmp}/config.json", "'rope_scaling.factor'", "1.311e+11",
                                                       "2,147,483,647"),
                                         files={"t.csv": AZURE_OK, "config.json": llama_with(
                                             rope_scaling={"rope_type": "linear", "factor": 1e6})}),
    "yarn_original_positions_beyond_bound": Case(SERVE, names=("{tmp}/config.json", "'rope_scaling.factor'", "4e+300"),
                                                 files={"t.csv": AZURE_OK, "config.json": llama_with(rope_scaling={
                                                     "rope_type": "yarn", "factor": 4.0,
                                                     "original_max_position_embeddings": 1e300})}),
    # activations of a 1M-token profile run (87.7 GiB) beside Llama-3.1-8B on one H100: "h100-sxm leaves -30.6 GiB beside
    # model llama-3.1-8b's weights (15 GiB), activations and CUDA graphs ...; raise serving.tensor_parallel_size or the
    # utilization", naming neither the activations' size nor the setting that made them
    "activations_beyond_memory": Case(["--workload-trace", "{tmp}/t.csv", "--quiet", "--no-plot", "--set",
                                       "serving.max_num_batched_tokens=1000000"],
                                      names=("beside model llama-3.1-8b's weights", "profile run's activations",
                                             "serving.max_num_batched_tokens=1,000,000", "lower them"),
                                      files={"t.csv": AZURE_OK}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
