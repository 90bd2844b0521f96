"""``serving.block_size`` null is vLLM 0.33's block size for the model and GPU, as its attention backend picks it
(platforms/interface.py ``_preferred_block_size_for_backends``, platforms/cuda.py ``_get_backend_priorities``); a set
one is kept, and one no backend takes is refused as vLLM refuses it. Expectations from vLLM's code, file by file."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sim.config import load_config
from sim.specs import model_spec


def resolved(*sets: str) -> int:
    from sim.serving.engine_limits import block_size

    return block_size(load_config(None, sets=list(sets)))


def sparse_v32():
    """DeepSeek-V3.2's shape: DeepSeek-V3's with the indexer (config.json index_topk 2048, index_n_heads 64,
    index_head_dim 128)."""
    return dataclasses.replace(model_spec("deepseek-v3"), name="deepseek-v3.2", index_topk=2048, index_n_heads=64,
                               index_head_dim=128)


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200", "a100-80gb", "l40s", "rtx4090", "b200", "rtx5090", "rtxpro6000"])
@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen3-32b", "gpt-oss-120b", "gemma-3-12b", "glm-4.5"])
def test_qkv_attention_takes_16_on_every_gpu(model, gpu):
    # FlashAttention MultipleOf(16) first on 8.x / 9.0 / 12.x; FlashInfer [16, 32, 64] first on 10.x (B200), which
    # takes 16 (get_preferred_block_size: the default when supported); gpt-oss's sinks and Gemma's sliding layers
    # share the one backend, and Gemma-3-12B's head_dim 256 is in FlashInfer's sizes on B200
    assert resolved(f"model={model}", f"hardware.gpu={gpu}") == 16


@pytest.mark.parametrize(("gpu", "expected"), [
    ("b200", 32),  # FLASHINFER_MLA first on 10.x, kernel sizes [32, 64]: 16 unsupported -> the smallest, 32
    ("h100-sxm", 16),  # FLASH_ATTN_MLA (FA3, 9.x only) MultipleOf(16)
    ("h200", 16),
    ("a100-80gb", 16),  # TRITON_MLA MultipleOf(16): FlashMLA needs 9.x/10.x, FlashInfer-MLA 10.x
    ("l40s", 16),
    ("rtx5090", 16),  # 12.x: TRITON_MLA first
])
@pytest.mark.parametrize("model", ["deepseek-v3", "kimi-k2", "deepseek-v2-lite"])
def test_latent_attention_takes_32_on_b200_and_16_elsewhere(model, gpu, expected):
    assert resolved(f"model={model}", f"hardware.gpu={gpu}") == expected


def test_cutlass_mla_when_flashinfer_mla_refuses_the_head():
    from sim.serving.attention_backend import default_block_size

    # FlashInfer-MLA's supports_combination: qk_nope_head_dim in [64, 128, 192]; else CUTLASS_MLA, [128]
    odd = dataclasses.replace(model_spec("deepseek-v2-lite"), qk_nope_head_dim=96)
    assert default_block_size(odd, "b200") == 128
    assert default_block_size(odd, "h100-sxm") == 16


@pytest.mark.parametrize("gpu", ["h100-sxm", "b200", "rtxpro6000"])
def test_sparse_attention_takes_64(gpu):
    from sim.serving.attention_backend import default_block_size, unsupported_block_size

    # every sparse MLA backend MultipleOf(64) (FlashInfer's TRTLLM one on 10.x: MultipleOf(32)) and the indexer's
    # kernel block [64]: lcm 64
    assert default_block_size(sparse_v32(), gpu) == 64
    assert unsupported_block_size(sparse_v32(), gpu, 128) is None
    assert "64" in unsupported_block_size(sparse_v32(), gpu, 32)  # the indexer takes no 32 (select_common_block_size)


def test_sparse_attention_has_no_backend_on_ampere():
    from sim.serving.attention_backend import unsupported_block_size

    # the sparse backends run on 9.x (FlashAttention/FlashInfer SM90), 9.x/10.x (FlashMLA), 10.x, 12.x only
    assert "no attention backend" in unsupported_block_size(sparse_v32(), "a100-80gb", None)
    assert unsupported_block_size(sparse_v32(), "h100-sxm", None) is None


@pytest.mark.parametrize(("tp", "expected"), [(2, 544), (4, 272)])
def test_a_gated_deltanet_hybrid_resolves_to_vllms_raised_size(tp, expected):
    from sim.serving.state_groups import state_groups

    # FlashAttention's 16 raised until a page holds a state (_align_hybrid_block_size): tests/test_linear_attention_serving.py
    run = ["model=qwen3-next-80b-a3b", "hardware.gpu=h200", f"serving.tensor_parallel_size={tp}",
           "serving.enable_prefix_caching=false"]
    assert resolved(*run) == expected
    assert state_groups(load_config(None, sets=run)).block_size == expected


def test_a_set_block_size_is_kept():
    assert resolved("model=deepseek-v3", "hardware.gpu=b200", "serving.block_size=16") == 16  # TRITON_MLA takes it
    assert resolved("model=llama-3.1-8b", "serving.block_size=512") == 512


@pytest.mark.parametrize(("sets", "words"), [
    (("model=llama-3.1-8b", "serving.block_size=8"), "takes 8-token blocks"),
    (("model=deepseek-v3", "hardware.gpu=b200", "serving.block_size=24"), "takes 24-token blocks"),
])
def test_a_block_size_vllm_refuses_is_refused_in_one_line(sets, words, run_cli):
    args = ["--preset", "smoke", "--no-plot", "--quiet"]
    for item in sets:
        args += ["--set", item]
    status, _, err = run_cli(*args)
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert words in err and "serving.block_size" in err


def test_the_report_names_the_block_size_that_ran(run_cli, tmp_path):
    report = tmp_path / "r.json"
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", "model=deepseek-v2-lite",
                             "--set", "hardware.gpu=b200", "--set", "serving.num_instances=1",
                             "--set", "workload.synthetic.num_requests=20", "--report-json", report)
    assert status == 0, err
    doc = json.loads(report.read_text())
    assert doc["config"]["serving"]["block_size"] is None  # the config as given
    assert doc["runs"][0]["metrics"]["instances"]["block_size"] == 32  # what ran: FlashInfer-MLA's
    assert doc["trace"]["block_tokens"] == 32  # the synthetic chains are cut at it
