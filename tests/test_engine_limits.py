"""A step's limits left unset are `vllm serve`'s defaults for the GPU (vLLM 0.33.0, vllm/engine/arg_utils.py,
``EngineArgs.get_batch_defaults`` and ``_set_default_max_num_seqs_and_batched_tokens_args``, the OpenAI API
server's usage context); set, they are kept."""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.engine_limits import batch_limits
from sim.serving.run import run_serving
from tests.test_serving import make_trace


def _limits(*sets: str) -> tuple[int, int]:
    return batch_limits(load_config(None, sets=list(sets)))


@pytest.mark.parametrize(("gpu", "expected"), [
    ("h100-sxm", (1024, 8192)),  # >= 70 GiB, not an A100
    ("h200", (1024, 8192)),  # 141 GB: under the 160 GiB tier
    ("rtxpro6000", (1024, 8192)),  # 96 GB
    ("b200", (1024, 16384)),  # >= 160 GiB
    ("a100-80gb", (256, 2048)),  # 80 GB, but vLLM keeps A100s on the small tier (PR #17885)
    ("a100-40gb", (256, 2048)),
    ("l40s", (256, 2048)),  # 48 GB
    ("rtx4090", (256, 2048)),  # 24 GB
])
def test_unset_limits_are_vllm_serve_defaults_for_the_gpu(gpu, expected):
    assert _limits(f"hardware.gpu={gpu}") == expected


def test_a_gpu_spec_file_is_judged_by_its_memory(tmp_path):
    """A spec file has no device name: an 80 GiB GPU is on the H100 tier even when its file is called a100."""
    spec = tmp_path / "a100-like.yaml"
    spec.write_text("dense_bf16_tflops: 312\nmemory_gib: 80\nmemory_bandwidth_gbps: 2039\n"
                    "source: test\nlink: {kind: pcie4, bandwidth_gbps: 24, step_latency_us: 5.7, source: test}\n")
    assert _limits(f"hardware.gpu={spec}") == (1024, 8192)
    smaller = tmp_path / "h100-like.yaml"
    smaller.write_text(spec.read_text().replace("memory_gib: 80", "memory_gib: 69"))
    assert _limits(f"hardware.gpu={smaller}") == (256, 2048)


def test_set_limits_are_kept_and_the_token_default_is_capped_by_the_model_length():
    assert _limits("serving.max_num_seqs=64") == (64, 8192)
    assert _limits("serving.max_num_batched_tokens=4096") == (1024, 4096)
    assert _limits("serving.max_num_seqs=32", "serving.max_num_batched_tokens=100") == (32, 100)
    # vLLM: min(max_num_seqs x max_model_len, default tokens), only when the tokens are its default
    assert _limits("serving.max_num_seqs=3", "serving.max_model_len=1000") == (3, 3000)
    assert _limits("serving.max_num_seqs=3", "serving.max_model_len=1000", "serving.max_num_batched_tokens=5000") \
        == (3, 5000)


def test_a_token_limit_below_the_gpus_default_sequences_lowers_them_as_vllm_does():
    """vLLM (``_set_default_max_num_seqs_and_batched_tokens_args``): an unset max_num_seqs is min(the GPU's default,
    max_num_batched_tokens), so --max-num-batched-tokens 512 on an H100 serves 512 sequences a step (kvsim refused
    it: 512 < the default 1,024); a limit both given must still hold its sequences."""
    assert _limits("serving.max_num_batched_tokens=512") == (512, 512)
    assert _limits("hardware.gpu=l40s", "serving.max_num_batched_tokens=100") == (100, 100)
    assert _limits("hardware.gpu=l40s", "serving.max_num_batched_tokens=300") == (256, 300)


def test_a_token_limit_below_the_sequences_given_is_refused_naming_both(run_cli):
    status, _, err = run_cli("--set", "serving.max_num_batched_tokens=512", "--set", "serving.max_num_seqs=1024",
                             "--workload-limit", "10")
    assert status == 2
    assert err.strip().endswith("config key 'serving.max_num_batched_tokens'=512 must be >= "
                                "'serving.max_num_seqs'=1024")


def test_an_h100_runs_more_than_256_sequences_at_once_as_vllm_serve_does():
    """400 one-block prompts arrive together, each decoding 50 tokens: on an H100 all 400 are in the first step
    (1,024 slots, 8,192 tokens), so every first token comes at the same time; with vLLM's older limit of 256
    sequences the last 144 wait for slots, which free only when the first requests finish."""
    n = 400
    trace = make_trace([0.0] * n, [16] * n, [50] * n)
    sets = ["serving.num_instances=1", "serving.enable_prefix_caching=false"]
    _, requests = run_serving(trace, load_config(None, sets=sets), "single")
    assert requests.first_token.max() == pytest.approx(requests.first_token.min(), rel=1e-12)
    _, capped = run_serving(make_trace([0.0] * n, [16] * n, [50] * n),
                            load_config(None, sets=[*sets, "serving.max_num_seqs=256"]), "single")
    order = capped.first_token.argsort(kind="stable")
    assert capped.first_token[order[255]] == pytest.approx(capped.first_token[order[0]], rel=1e-12)
    assert capped.first_token[order[256]] > capped.last_token[order[0]]  # a slot freed by a finished request


def test_the_report_names_the_limits_each_engine_ran_with(run_cli, tmp_path):
    """The config echo keeps null (what was asked); the instances' metrics say what ran: an A100's defaults here."""
    import json

    report = tmp_path / "r.json"
    status, _, err = run_cli("--set", "hardware.gpu=a100-80gb", "--workload-limit", "20", "--no-plot", "--quiet",
                             "--report-json", report)
    assert status == 0, err
    data = json.loads(report.read_text())
    assert data["config"]["serving"]["max_num_seqs"] is None
    instances = data["runs"][0]["metrics"]["instances"]
    assert (instances["max_num_seqs"], instances["max_num_batched_tokens"]) == (256, 2048)
