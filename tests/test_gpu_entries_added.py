"""The GPUs of Chinese deployments and clouds added to profiles/gpus.yaml (H800, A800, H20, L40, A10, GB200): found
by the names nvidia-smi and torch.cuda.get_device_name() print, their links as NCCL models them, their compute
capability as NVIDIA lists it, and a smoke run on each. (Their datasheet figures: test_specs.DATASHEETS.)"""

from __future__ import annotations

import json

import pytest

from sim.config import load_config
from sim.serving.attention_backend import capability_of
from sim.serving.engine_limits import default_batch_limits
from sim.serving.memory_profile import capture_sizes
from sim.specs import gpu_spec

# nvidia-smi / torch.cuda.get_device_name() names: "NVIDIA H20" (torch-performance-test-data issue #77; Chutes'
# " H20$" check), "NVIDIA GB200" (SGLang issue #11208's environment dump), "NVIDIA L40" and "NVIDIA A10" (Chutes'
# name checks); "NVIDIA H800" and "NVIDIA A800-SXM4-80GB" as the H200's and A100's names are written (not seen in a log)
DEVICE_NAMES = {"NVIDIA H800": "h800", "NVIDIA A800-SXM4-80GB": "a800-80gb", "NVIDIA H20": "h20",
                "NVIDIA L40": "l40", "NVIDIA A10": "a10", "NVIDIA GB200": "gb200"}

# NCCL src/graph/topo.h ncclTopoNVLinkBw: GB/s a link per direction, by compute capability
SM80_NVLINK_BW, SM90_NVLINK_BW, SM100_NVLINK_BW = 20.0, 20.6, 40.1
PCIE_GEN4_X16 = 16 * 120 / 80  # NCCL src/graph/topo.cc kvDictPciGen: Gen4 is 120, x16 lanes, / 80 -> 24 GB/s
# GPU -> (link kind, GB/s per direction as NCCL models it, its Simple ring step latency, us: tuning.cc hwLatencies)
LINKS = {
    "h800": ("nvlink4", 8 * SM90_NVLINK_BW, 3.4),  # 400 GB/s bidirectional = 8 links of 50
    "a800-80gb": ("nvlink3", 8 * SM80_NVLINK_BW, 3.4),  # 400 GB/s bidirectional = 8 links of 50
    "h20": ("nvlink4", 18 * SM90_NVLINK_BW, 3.4),  # 900 GB/s bidirectional = 18 links of 50
    "gb200": ("nvlink5", 18 * SM100_NVLINK_BW, 3.4),  # 1.8 TB/s bidirectional = 18 links of 100
    "l40": ("pcie4-x16", PCIE_GEN4_X16, 5.7),
    "a10": ("pcie4-x16", PCIE_GEN4_X16, 5.7),
}
# NVIDIA's CUDA GPU list (developer.nvidia.com/cuda-gpus); H800 and H20 are GH100 parts, A800 a GA100
CAPABILITIES = {"h800": (9, 0), "h20": (9, 0), "a800-80gb": (8, 0), "a10": (8, 6), "l40": (8, 9), "gb200": (10, 0)}


@pytest.mark.parametrize("device_name", sorted(DEVICE_NAMES))
def test_device_names_resolve_to_the_entry(device_name):
    config = load_config(None, sets=[f"hardware.gpu={device_name}"])
    assert config.hardware.gpu == DEVICE_NAMES[device_name]
    assert gpu_spec(config.hardware.gpu).source


@pytest.mark.parametrize("gpu", sorted(LINKS))
def test_link_is_nccls_model_of_it(gpu):
    kind, gbps, step_us = LINKS[gpu]
    link = gpu_spec(gpu).link
    assert link.kind == kind and link.peer_access
    assert link.bandwidth == pytest.approx(gbps * 1e9) and link.step_latency == pytest.approx(step_us * 1e-6)


def test_reduced_nvlink_parts_are_below_their_full_parts():
    """H800 and A800 keep their H100's / A100's compute and memory and lose NVLink links (8 of 18, 8 of 12); H20
    keeps the NVLink and loses compute."""
    h800, h100 = gpu_spec("h800"), gpu_spec("h100-sxm")
    assert (h800.peak_flops, h800.memory_bandwidth) == (h100.peak_flops, h100.memory_bandwidth)
    assert h800.link.bandwidth == pytest.approx(h100.link.bandwidth * 8 / 18)
    a800, a100 = gpu_spec("a800-80gb"), gpu_spec("a100-80gb")
    assert (a800.peak_flops, a800.memory_bandwidth) == (a100.peak_flops, a100.memory_bandwidth)
    assert a800.link.bandwidth == pytest.approx(a100.link.bandwidth * 8 / 12)
    assert gpu_spec("h20").link.bandwidth == h100.link.bandwidth


@pytest.mark.parametrize("gpu", sorted(CAPABILITIES))
def test_compute_capability(gpu):
    assert capability_of(gpu) == CAPABILITIES[gpu]


def test_vllm_batch_defaults_and_capture_ceiling():
    """vLLM 0.33 get_batch_defaults: its A100 exception matches "a100" in the device name, which "NVIDIA
    A800-SXM4-80GB" lacks, so an A800 (80 GB) takes the 70 GiB tier (1,024 / 8,192) as an H100 does; GB200's 186 GB is
    past 160 GiB (1,024 / 16,384); L40 and A10 are under 70 GiB (256 / 2,048). Its CUDA-graph capture ceiling is
    1,024 on capability family 10.0 (GB200 too), else 512."""
    assert default_batch_limits("a800-80gb") == (1024, 8192)
    assert default_batch_limits("gb200") == (1024, 16384)
    assert default_batch_limits("l40") == default_batch_limits("a10") == (256, 2048)
    assert max(capture_sizes(1024, 16384, "gb200")) == 1024
    assert max(capture_sizes(1024, 8192, "h800")) == 512


@pytest.mark.parametrize("gpu", sorted(DEVICE_NAMES.values()))
def test_smoke_run_on_each_added_gpu(gpu, run_cli, tmp_path):
    report = tmp_path / "report.json"
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--report-json", report,
                             "--set", f"hardware.gpu={gpu}", "--set", "workload.synthetic.num_requests=40")
    assert status == 0, err
    instances = json.loads(report.read_text())["runs"][0]["metrics"]["instances"]
    assert instances["kv_blocks_each"] > 0
    if gpu == "a10":
        # By hand: vLLM's budget is the reported total x 0.92 = 24 GiB x 0.988 x 0.92 = 21.82 GiB; Llama-3.1-8B's
        # 8,030,261,248 bf16 parameters (its model card) take 14.96 GiB; a 16-token block holds 16 x 2 x 32 layers
        # x 8 KV heads x 128 x 2 B = 2 MiB. The KV blocks fit in what is left, less the profile run's activations
        # and CUDA graphs (under 1.5 GiB at 2,048 tokens a step): 6.86 GiB -> at most 3,512 blocks, at least 2,744.
        left = 24 * 0.988 * 0.92 * 2**30 - 8_030_261_248 * 2
        block = 16 * 2 * 32 * 8 * 128 * 2
        assert (left - 1.5 * 2**30) / block < instances["kv_blocks_each"] < left / block
