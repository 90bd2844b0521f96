"""Model and GPU specs: KV size from the architecture, sources present, unknown names rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.model_shape import DTYPE_BYTES
from sim.specs import _read_table, _spelling, gpu_spec, known_gpus, known_models, model_spec
from tests.conftest import BUNDLED_AZURE


def test_llama3_8b_kv_bytes_per_token_fp16():
    # 2 (K and V) x 32 layers x 8 KV heads x 128 head dim x 2 bytes = 131,072 B (issue's figure)
    assert model_spec("llama-3-8b").kv_bytes_per_token(DTYPE_BYTES["fp16"]) == 131_072


def test_kv_bytes_scale_with_layers_heads_and_tp():
    m70 = model_spec("llama-3-70b")
    assert m70.kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2  # 327,680
    assert m70.kv_bytes_per_token(2, tensor_parallel_size=8) == 2 * 80 * 1 * 128 * 2  # 1 KV head per rank
    # more ranks than KV heads: heads are replicated, never below one per rank
    assert m70.kv_bytes_per_token(2, tensor_parallel_size=16) == 2 * 80 * 1 * 128 * 2
    assert model_spec("qwen2-7b").kv_bytes_per_token(2) == 2 * 28 * 4 * 128 * 2


def test_required_models_and_gpus_exist_with_sources():
    assert {"llama-3-8b", "llama-3.1-8b", "llama-3-70b", "qwen2-7b"} <= set(known_models())
    assert {"h100-sxm", "h200", "a100-80gb", "rtx5090"} <= set(known_gpus())
    for name in known_models():
        m = model_spec(name)
        # (hidden_size need not be heads x head_dim: GLM-4.5's 96 heads of 128 beside a hidden size of 5120)
        assert m.source and m.head_dim > 0 and m.num_attention_heads % m.num_kv_heads == 0
    for name in known_gpus():
        assert gpu_spec(name).source


def test_gpu_units_are_si():
    h100 = gpu_spec("h100-sxm")
    assert h100.peak_flops == pytest.approx(989.4e12)
    assert h100.memory_bandwidth == pytest.approx(3.35e12)
    assert h100.memory_bytes == 80 * 1024**3


def test_parameter_count_matches_architecture():
    # Llama: embeddings + lm_head + per layer (q,k,v,o + gate/up/down + 2 norms) + final norm.
    for name in ("llama-3-8b", "llama-3-70b", "llama-3.1-70b"):
        m = model_spec(name)
        kv = m.num_kv_heads * m.head_dim
        per_layer = m.hidden_size * (2 * m.hidden_size + 2 * kv) + 3 * m.hidden_size * m.intermediate_size + 2 * m.hidden_size
        total = 2 * m.vocab_size * m.hidden_size + m.num_layers * per_layer + m.hidden_size
        assert total == m.num_parameters


def test_unknown_names_list_known_ones():
    with pytest.raises(ConfigError, match="llama-3-8b"):
        model_spec("llama-9")
    with pytest.raises(ConfigError, match="h100-sxm"):
        gpu_spec("tpu")


def test_other_tools_names_for_a_model_or_gpu_resolve_to_the_entry(tmp_path):
    """Hugging Face ids (as vLLM, Vidur and LLMServingSim write them) and nvidia-smi / profiler GPU names, in any
    case or punctuation, select the profiles/ entry; the resolved config holds the entry's own name."""
    config = load_config(None, sets=["model=meta-llama/Llama-3.1-8B", "hardware.gpu=RTXPRO6000"])
    assert (config.model, config.hardware.gpu) == ("llama-3.1-8b", "rtxpro6000")
    config = load_config(None, sets=["model=LLAMA_2_70B", "hardware.gpu=NVIDIA GeForce RTX 4090"])
    assert (config.model, config.hardware.gpu) == ("llama-2-70b", "rtx4090")
    assert load_config(None, sets=["hardware.gpu=h100-80gb"]).hardware.gpu == "h100-sxm"  # Splitwise's name
    # in a config file in another folder: a Hugging Face id is not rebased into a path there
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.yaml").write_text("model: codellama/CodeLlama-34b-Instruct-hf\nhardware: {gpu: A40}\n")
    config = load_config(folder / "run.yaml")
    assert (config.model, config.hardware.gpu) == ("codellama-34b", "a40")


def test_an_existing_folder_named_like_a_model_id_is_the_path(tmp_path, monkeypatch):
    """A Hugging Face checkout at ./meta-llama/Llama-3.1-8B is read as a config.json folder, not as the entry."""
    folder = tmp_path / "meta-llama" / "Llama-3.1-8B"
    folder.mkdir(parents=True)
    shape = {"model_type": "llama", "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 8,
             "num_hidden_layers": 4, "num_key_value_heads": 8, "vocab_size": 1000, "max_position_embeddings": 2048}
    (folder / "config.json").write_text(json.dumps(shape))
    monkeypatch.chdir(tmp_path)
    config = load_config(None, sets=["model=meta-llama/Llama-3.1-8B"])
    assert config.model == "meta-llama/Llama-3.1-8B" and model_spec(config.model).num_layers == 4


def test_every_alias_names_one_entry():
    """No spelling of a name or alias is shared by two entries (such a spelling would be guessed at)."""
    for filename, names in (("models.yaml", known_models()), ("gpus.yaml", known_gpus())):
        owners: dict[str, set[str]] = {}
        for name in names:
            for alias in [name, *(_read_table(filename)[name].get("aliases") or [])]:
                owners.setdefault(_spelling(alias), set()).add(name)
        assert all(len(o) == 1 for o in owners.values()), {s: o for s, o in owners.items() if len(o) > 1}


def test_llama2_kv_bytes_per_token_by_hand():
    # Llama-2-7B is multi-head: 2 x 32 layers x 32 KV heads x 128 x 2 bytes = 524,288 B, 4x Llama-3-8B's GQA
    assert model_spec("llama-2-7b").kv_bytes_per_token(2) == 524_288
    assert model_spec("llama-2-70b").kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2


# ------------------------------------------------------------------ a GPU not listed: hardware.gpu as a spec file

H100_FIELDS = """dense_bf16_tflops: 989.4
dense_fp8_tflops: 1979
memory_gib: 80
memory_bandwidth_gbps: 3350
link: {kind: nvlink4, bandwidth_gbps: 370.8, step_latency_us: 3.4}
"""


def test_a_gpu_spec_file_is_read_like_an_entry(tmp_path, run_cli):
    """A file holding h100-sxm's fields (profiles/gpus.yaml) gives the same spec under its own name and source, and
    the same run: report metrics identical to the entry's."""
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "h100.yaml").write_text(H100_FIELDS + "reported_memory_gib: 79.22\nsm_count: 132\n"
                                                 "l2_mib: 50\n")
    (tmp_path / "run.yaml").write_text("hardware: {gpu: gpus/h100.yaml}\n")  # relative to the config file
    config = load_config(tmp_path / "run.yaml")
    assert Path(config.hardware.gpu).resolve() == (tmp_path / "gpus" / "h100.yaml").resolve()
    entry, spec = gpu_spec("h100-sxm"), gpu_spec(config.hardware.gpu)
    assert (spec.peak_flops, spec.fp8_peak_flops, spec.memory_bytes, spec.memory_bandwidth, spec.reported_memory) == \
        (entry.peak_flops, entry.fp8_peak_flops, entry.memory_bytes, entry.memory_bandwidth, entry.reported_memory)
    assert (spec.link.kind, spec.link.bandwidth, spec.link.step_latency) == \
        (entry.link.kind, entry.link.bandwidth, entry.link.step_latency)
    assert spec.source.startswith("GPU spec ") and spec.link.source == spec.source
    metrics = []
    for gpu, report in (("h100-sxm", "entry.json"), (str(tmp_path / "gpus" / "h100.yaml"), "file.json")):
        status, _, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "40", "--no-plot", "--quiet",
                                 "--set", f"hardware.gpu={gpu}", "--report-json", tmp_path / report)
        assert status == 0, err
        metrics.append([run["metrics"] for run in json.loads((tmp_path / report).read_text())["runs"]])
    assert metrics[0] == metrics[1] and metrics[0][0]["ttft_s"]["mean"] > 0


# (GPU, L2 plateau, DRAM plateau), GB/s: medians of the Eff. bw column of github.com/te42kyfo/gpu-benches
# gpu-l2-cache/{a100_80,h100_pcie,h200}.txt (and the fork xxrjun/gpu-benches' gb200.txt) over data sets of 4 MiB to
# half the L2 and of 8x the L2 and past
GPU_BENCHES_L2 = [("a100-80gb", 5405, 1732), ("h100-pcie", 6993, 1988), ("h200", 9981, 3888), ("b200", 19318, 7768.5)]


@pytest.mark.parametrize("gpu, l2, dram", GPU_BENCHES_L2)
def test_a_measured_l2_bandwidth_is_its_l2_dram_ratio_on_the_datasheet_scale(gpu, l2, dram):
    """The roofline applies one bandwidth_efficiency to the L2 and the DRAM, so a measured L2 enters as the run's own
    L2/DRAM ratio x the datasheet's memory bandwidth (A100 80GB: 5,405 / 1,732 x 2,039 = 6,363 GB/s, where the
    ratio of 3.48 gave 7,098)."""
    spec = gpu_spec(gpu)
    assert spec.cache_bandwidth == pytest.approx(l2 / dram * spec.memory_bandwidth, rel=2e-4)


def test_a_gpu_without_a_measured_l2_keeps_the_ratio():
    """H100 SXM has no measurement cited: 3,133 / 900 x 3,350 GB/s."""
    assert gpu_spec("h100-sxm").l2_bandwidth is None
    assert gpu_spec("h100-sxm").cache_bandwidth == pytest.approx(3350e9 * 3133 / 900)


def test_a_gpu_spec_files_l2_bandwidth_is_read_else_the_ratio(tmp_path):
    """l2_bandwidth_gbps: 9,000 GB/s is the L2's bandwidth; without it 3.48 (3,133 / 900) x the memory bandwidth's
    3,350 GB/s (sim.specs.L2_BANDWIDTH_RATIO)."""
    (tmp_path / "with.yaml").write_text(H100_FIELDS + "l2_mib: 50\nl2_bandwidth_gbps: 9000\n")
    (tmp_path / "without.yaml").write_text(H100_FIELDS + "l2_mib: 50\n")
    assert gpu_spec(str(tmp_path / "with.yaml")).cache_bandwidth == 9000e9
    assert gpu_spec(str(tmp_path / "without.yaml")).cache_bandwidth == pytest.approx(3350e9 * 3133 / 900)
    # the refusal is of an L2 below the DRAM's 3,350 GB/s: one of 3,350 itself is read (hmut9: '<=' refused it)
    (tmp_path / "equal.yaml").write_text(H100_FIELDS + "l2_mib: 50\nl2_bandwidth_gbps: 3350\n")
    assert gpu_spec(str(tmp_path / "equal.yaml")).cache_bandwidth == 3350e9


def test_a_gpu_spec_files_memory_sets_the_kv_capacity(tmp_path):
    """vLLM 0.33's arithmetic by hand (sim.serving.memory_profile): Llama-3.1-8B in BF16 on a 48 GB GPU reporting
    47.5 GiB, at 0.9, vLLM's defaults for it (256 sequences, 2,048 tokens a step).
    requested = ceil(47.5 x 2^30 x 0.9) = ceil(51,002,736,640 x 0.9) = 45,902,462,976 B;
    weights = 8,030,261,248 x 2 + the rope cache 131,072 x 128 x 2 = 16,060,522,496 + 33,554,432 = 16,094,076,928;
    activation = the sampler's peak (above the forward's 2,048 x (4,096 + 3 x 14,336) x 2 = 192,937,984):
      2,048 x 4,096 x 2 (hidden states) + 256 x 128,256 x (2 + 3 x 4) (logits, fp32 logits, probs, noise)
      + 128 x 128,256 x 4 (Triton top-k/top-p buffer) = 16,777,216 + 459,669,504 + 65,667,072 = 542,113,792;
    non-torch = int(0.16 x 2^30) = 171,798,691;
    CUDA graphs: 51 sizes (1, 2, 4, 8..248 by 8, 256..512 by 16), 35 of them <= 256 (FULL): the first capture
      512 x 47,104 x 2 = 48,234,496, then (50 + 34) x 170,768 x 32 layers = 459,024,384: 507,258,880;
    KV = 45,902,462,976 - 16,094,076,928 - 542,113,792 - 171,798,691 - 507,258,880 = 28,587,214,685 B
      // 2,097,152 (a 16-token block) = 13,631 blocks."""
    from sim.cache.tiers import hbm_capacity_blocks
    from sim.serving.memory_profile import memory_budget

    spec = tmp_path / "gpu48.yaml"
    spec.write_text(H100_FIELDS.replace("memory_gib: 80", "memory_gib: 48\nreported_memory_gib: 47.5"))
    config = load_config(None, sets=[f"hardware.gpu={spec}", "serving.gpu_memory_utilization=0.9"])
    assert model_spec("llama-3.1-8b").weight_bytes_per_gpu(2, 1, 1) == 16_060_522_496
    budget = memory_budget(config)
    assert (budget.requested, budget.weights, budget.activation, budget.non_torch, budget.cudagraph) == \
        (45_902_462_976, 16_094_076_928, 542_113_792, 171_798_691, 507_258_880)
    assert hbm_capacity_blocks(config) == 13_631


def test_a_gpu_without_a_reported_size_takes_the_rule(tmp_path):
    """A GPU spec without reported_memory_gib reports its marketed GiB x 0.988 (sim.specs.REPORTED_MEMORY_FRACTION):
    80 GiB -> int(85,899,345,920 x 0.988) = 84,868,553,768 B; profiles/gpus.yaml's H100 SXM cites 79.22 GiB."""
    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS)
    assert gpu_spec(str(spec)).reported_memory == 84_868_553_768
    assert gpu_spec("h100-sxm").reported_memory == round(79.22 * 1024**3)
    assert gpu_spec("rtx4090").reported_memory == 25_250_627_584  # the measured run's device_total_memory_bytes




def test_an_fp8_peak_4x_the_bf16_one_loads(tmp_path):
    # a GeForce's datasheet pair (RTX 4090: FP8 with FP16 accumulation 660.6, BF16 with FP32 accumulation 165.2 dense
    # TFLOPS, NVIDIA's Ada Lovelace whitepaper) is 3.999x: a spec of those numbers loads, its FP8 peak as given
    from sim.specs import gpu_spec

    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("989.4", "165.2").replace("1979", "660.6"))
    assert gpu_spec(str(spec)).fp8_peak_flops == 660.6e12


@pytest.mark.parametrize("text, named", [
    ("", "needs dense_bf16_tflops"),
    (H100_FIELDS.replace("link: {kind: nvlink4, bandwidth_gbps: 370.8, step_latency_us: 3.4}\n", ""), "link: missing"),
    (H100_FIELDS.replace("memory_gib: 80", "memory_gb: 80"), "unknown key 'memory_gb'"),
    # aliases are other tools' names that find a profiles/gpus.yaml entry; a file is found by its path: they mean nothing
    (H100_FIELDS + "aliases: [my-gpu]\n", "unknown key 'aliases'; a GPU spec has dense_bf16_tflops, dense_fp8_tflops, "
                                          "memory_gib, reported_memory_gib, memory_bandwidth_gbps, l2_mib, "
                                          "l2_bandwidth_gbps, sm_count, "
                                          "link, compute_capability, source"),
    (H100_FIELDS + "l2_mib: 0\n", "l2_mib must be a number at least"),
    (H100_FIELDS + "l2_bandwidth_gbps: 0\n", "l2_bandwidth_gbps must be a number at least"),
    (H100_FIELDS + "compute_capability: 9\n", "compute_capability must be a number major.minor as NVIDIA lists it"),
    (H100_FIELDS + "compute_capability: 7.0\n", "from 8.0 (Ampere) to 12.x (8.9, 12.0), got 7.0"),  # no bf16 kernels
    (H100_FIELDS + "compute_capability: '8.9'\n", "compute_capability must be a number"),  # as every number
    (H100_FIELDS.replace("kind: nvlink4", "kind: nvlnk4"), "link.kind must be one of nvlink3, nvlink3-bridge"),
    # a PCIe generation PCI-SIG never published, or a width no GPU has, passed the pattern pcie<digit>[-x<1-2 digits>]
    (H100_FIELDS.replace("kind: nvlink4", "kind: pcie9"), "generation 3/4/5/6/7 and lanes 1/2/4/8/16 (pcie4-x16), "
                                                          "got 'pcie9'"),
    (H100_FIELDS.replace("kind: nvlink4", "kind: pcie5-x12"), "got 'pcie5-x12'"),
    # the L2 carries every DRAM byte: H100 SXM's 3,350 GB/s of DRAM beside a 3,000 GB/s L2 is no GPU's
    (H100_FIELDS + "l2_bandwidth_gbps: 3000\n", "l2_bandwidth_gbps 3000 is below memory_bandwidth_gbps 3350"),
    # FP8 tensor cores start at compute capability 8.9 (Ada): an Ampere GPU's FP8 peak priced an FP8 checkpoint's
    # GEMMs at it (Qwen3-32B FP8, 20 requests: mean TTFT 0.708 s against the 1.075 s of vLLM's Marlin path at BF16)
    (H100_FIELDS + "compute_capability: 8.0\n", "dense_fp8_tflops with compute_capability 8.0: FP8 tensor cores start "
                                                "at 8.9"),
    (H100_FIELDS + "compute_capability: 8.6\n", "dense_fp8_tflops with compute_capability 8.6"),
    # an L2 as large as the memory it caches: 200,000 MiB on an 80 GiB card ran at exit 0, every elementwise kernel's
    # bytes in its L2 (20 requests: mean TTFT 0.2307 s against the 50 MiB L2's 0.2406 s)
    (H100_FIELDS + "l2_mib: 200000\n", "l2_mib 200000 is not below memory_gib 80 (81920 MiB)"),
    (H100_FIELDS + "l2_mib: 81920\n", "l2_mib 81920 is not below memory_gib 80"),
    # the L2's bandwidth prices the bytes an L2 of l2_mib holds: without l2_mib it was read by nothing (20 requests'
    # TTFT and TPOT identical with l2_bandwidth_gbps 20000 and without it)
    (H100_FIELDS + "l2_bandwidth_gbps: 20000\n", "l2_bandwidth_gbps without l2_mib is read by nothing"),
    # FP8 below BF16 (swapped?): Qwen3-32B FP8's GEMMs ran at 500 TFLOP/s beside a 989.4 BF16 peak, exit 0 (20
    # requests: mean TTFT 1.901 s, 0.633 s at H100's FP8 1,979)
    (H100_FIELDS.replace("1979", "500"), "dense_fp8_tflops 500 is below dense_bf16_tflops 989.4"),
    # FP8 past 4x BF16, no datasheet's pair (4x at most: RTX 4090's FP16-accumulate FP8 660.6 beside its BF16 165.2):
    # H100's FP8 1,979 beside a BF16 of 0.001 ran at exit 0; H100's 3,958 (its FP8 with sparsity) beside 989.4 is 4.0x,
    # still a datasheet's ratio, and loads (test_an_fp8_peak_4x_the_bf16_one_loads)
    (H100_FIELDS.replace("989.4", "0.001"), "dense_fp8_tflops 1979 is over 4.05x dense_bf16_tflops 0.001"),
    (H100_FIELDS.replace("1979", "4008"), "dense_fp8_tflops 4008 is over 4.05x dense_bf16_tflops 989.4"),
    # a link past its kind's line rate (H100 SXM's NCCL NVLink figure under a PCIe 4.0 x16 kind: 370.8 GB/s where the
    # slot carries 32 a direction) ran at exit 0, TP 2's all-reduces priced on it (20 requests: mean TTFT 0.447 s
    # against 1.525 s at the 24 GB/s NCCL plans for that slot)
    (H100_FIELDS.replace("kind: nvlink4", "kind: pcie4-x16"), "bandwidth_gbps 370.8 is above the 32 GB/s a pcie4-x16"),
    (H100_FIELDS.replace("kind: nvlink4", "kind: pcie5-x8"), "above the 32 GB/s a pcie5-x8 link carries"),
    (H100_FIELDS.replace("kind: nvlink4", "kind: nvlink4-bridge"), "above the 300 GB/s a nvlink4-bridge link"),
    (H100_FIELDS + "sm_count: 0\n", "sm_count must be a number at least 1 and at most"),
    (H100_FIELDS + "sm_count: 131.5\n", "sm_count must be a whole number of streaming multiprocessors, got 131.5"),
    (H100_FIELDS.replace("989.4", "-1"), "dense_bf16_tflops must be a number at least 0.001"),
    (H100_FIELDS.replace("989.4", "'989.4'"), "dense_bf16_tflops must be a number"),
    (H100_FIELDS.replace("memory_gib: 80", "memory_gib: .nan"), "memory_gib must be a number"),
    (H100_FIELDS.replace("memory_gib: 80", "memory_gib: 1e300"), "memory_gib must be a number at least 0.001 and at most"),
    # the device reports less than its marketed size (the driver's reservation), never more: 200 GiB on an 80 GiB
    # card would size a KV cache 2.5 times the memory there is
    (H100_FIELDS + "reported_memory_gib: 200\n", "reported_memory_gib 200 is above memory_gib 80"),
    (H100_FIELDS.replace("bandwidth_gbps: 370.8", "bandwidth_gbps: 0"), "link: bandwidth_gbps must be a number"),
    (H100_FIELDS.replace("kind: nvlink4", "kind: 4"), "link.kind must be text"),
    ("x:\n" + "".join("  " + line + "\n" for line in H100_FIELDS.splitlines()), "without the entry's name"),
    ("- 1\n", "the top level must be a mapping"),
    (H100_FIELDS.replace("step_latency_us: 3.4}", "step_latency_us: 3.4, nccl: {x: 1}}"),
     "link: unknown key 'nccl'; a GPU spec's link has kind, bandwidth_gbps"),
])
def test_a_bad_gpu_spec_file_is_refused_naming_file_and_field(tmp_path, run_cli, text, named):
    spec = tmp_path / "gpu.yaml"
    spec.write_text(text)
    status, _, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--no-plot",
                             "--set", f"hardware.gpu={spec}")
    assert status == 2 and named in err and "gpu.yaml" in err and len(err.strip().splitlines()) == 1, err
    assert "without the entry's name" not in err or "x:" in text  # that hint only for a named entry at the top


@pytest.mark.parametrize("kind, gbps, both", [("nvlink4", 900, True), ("nvlink5", 1800, True), ("pcie5", 128, True),
                                              ("nvlink4", 450.5, True), ("pcie4-x16", 370.8, False),
                                              ("nvlink4", 900.5, False)])
def test_a_link_figure_of_both_directions_is_said_to_be_one(tmp_path, kind, gbps, both):
    """NVIDIA publishes NVLink as both directions together (H100 SXM 900 GB/s, B200 1.8 TB/s), PCI-SIG its x16 rates
    too (PCIe 5.0: 128 GB/s): such a figure copied into bandwidth_gbps, one direction's, is refused as above the line
    rate (450, 900, 64), and the message says a figure up to twice it is both directions'. One past twice it (H100's
    NCCL 370.8 under PCIe 4.0 x16's 32) is no such total: not said."""
    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("kind: nvlink4, bandwidth_gbps: 370.8", f"kind: {kind}, bandwidth_gbps: {gbps}"))
    with pytest.raises(ConfigError, match=f"bandwidth_gbps {gbps:g} is above") as refused:
        gpu_spec(str(spec))
    assert ("both directions'" in str(refused.value)) is both, str(refused.value)


@pytest.mark.parametrize("capability, fp8", [("8.9", True), ("9.0", True), ("8.0", False), ("8.6", False)])
def test_an_fp8_peak_is_read_from_compute_capability_8_9(tmp_path, capability, fp8):
    """The first GPUs with FP8 tensor cores are Ada's (8.9: L40S, RTX 4090) and Hopper (9.0); an Ampere spec (8.0,
    8.6) without dense_fp8_tflops is read, its FP8 checkpoints at the BF16 peak (vLLM's Marlin)."""
    spec = tmp_path / "gpu.yaml"
    text = H100_FIELDS if fp8 else H100_FIELDS.replace("dense_fp8_tflops: 1979\n", "")
    spec.write_text(text + f"compute_capability: {capability}\n")
    read = gpu_spec(str(spec))
    assert read.compute_capability == tuple(map(int, capability.split(".")))
    assert read.fp8_peak_flops == (1979e12 if fp8 else None)


def test_a_gpu_spec_number_in_exponent_form_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads 3.35e3 and 2e2 as text (its floats need a dot and a signed exponent); kvsim's YAML
    loader reads them as numbers (sim.config_yaml), a GPU spec file too: the same spec as h100-sxm's."""
    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("3350", "3.35e3").replace("1979", "1979e0").replace("370.8", "3.708e+2")
                    .replace("memory_gib: 80", "memory_gib: 8E1").replace("989.4", "9.894e2"))
    entry, read = gpu_spec("h100-sxm"), gpu_spec(str(spec))
    assert (read.peak_flops, read.fp8_peak_flops, read.memory_bytes, read.memory_bandwidth, read.link.bandwidth) == \
        (entry.peak_flops, entry.fp8_peak_flops, entry.memory_bytes, entry.memory_bandwidth, entry.link.bandwidth)
    huge = tmp_path / "huge.yaml"  # (gpu_spec keeps what it read of a path)
    huge.write_text(H100_FIELDS.replace("memory_gib: 80", "memory_gib: 8e7"))
    with pytest.raises(ConfigError, match=r"memory_gib must be a number .* at most 1e\+06, got 8e\+07$"):
        gpu_spec(str(huge))  # (as %g writes it, not 80000000.0)


@pytest.mark.parametrize("field, value", [("dense_bf16_tflops", "989.4"), ("memory_bandwidth_gbps", "3350"),
                                          ("memory_gib", "80")])
def test_a_gpu_far_slower_or_smaller_than_any_is_refused(tmp_path, run_cli, field, value):
    """Below 10^-3 of a GPU spec's unit (1 GFLOP/s, 1 MiB, 1 MB/s; a link's MIN_GBPS too) is a typo, not a GPU: at
    1e-300 TFLOP/s a run reported a TTFT of 1.8e303 s, and at 5e-324 the engine stalled (internal error, exit 1)."""
    spec = tmp_path / "gpu.yaml"
    for tiny in ("1.0e-300", "0.000999"):
        spec.write_text(H100_FIELDS.replace(f"{field}: {value}", f"{field}: {tiny}"))
        status, _, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--no-plot",
                                 "--set", f"hardware.gpu={spec}")
        assert status == 2 and f"{field} must be a number at least 0.001" in err, err
        assert len(err.strip().splitlines()) == 1, err
    # the bound itself is a GPU (a slow one; without FP8 tensor cores where its BF16 peak is the bound: an FP8 peak of
    # 1,979 beside it is no datasheet's pair, refused by test_a_bad_gpu_spec_file_is_refused_naming_file_and_field)
    fields = H100_FIELDS.replace("dense_fp8_tflops: 1979\n", "") if field == "dense_bf16_tflops" else H100_FIELDS
    spec.write_text(fields.replace(f"{field}: {value}", f"{field}: 0.001"))
    assert gpu_spec(str(spec)) is not None


def test_a_bad_gpu_spec_file_stops_a_cache_only_run_and_sweep_before_they_start(tmp_path, run_cli, monkeypatch):
    """--cache-only sizes HBM from the GPU: a bad spec file is refused before the trace loads (it was read after, once
    the trace had loaded), and in a cache-only sweep before the first point runs (the good points ran, the bad one
    was recorded as a failed point)."""
    import trace.workload

    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("memory_gib: 80\n", ""))

    def no_trace(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the trace loaded before the GPU spec was checked")

    with monkeypatch.context() as patched:
        patched.setattr(trace.workload, "load_workload", no_trace)
        status, _, err = run_cli("--cache-only", "--workload-trace", BUNDLED_AZURE, "--no-plot",
                                 "--set", f"hardware.gpu={spec}")
    assert status == 2 and "gpu.yaml: needs memory_gib" in err and len(err.strip().splitlines()) == 1, err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("mode: cache-only\nworkload: {synthetic: {kind: multi-turn, num_requests: 50}}\n"
                     "axes: {hardware.gpu: [h100-sxm, gpu.yaml]}\n")
    status, _, err = run_cli("--sweep", sweep, "--report-csv", tmp_path / "out.csv", "--no-plot")
    assert status == 2 and "gpu.yaml: needs memory_gib" in err and str(sweep) in err, err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", ["--trace-stats", "--cache-only --capacity-blocks 100", "learned.train"])
def test_a_bad_gpu_spec_file_is_refused_by_a_mode_that_does_not_use_the_gpu(tmp_path, run_cli, capsys, command):
    """hardware.gpu is checked in every mode (an unknown name is refused, a missing file too), used or not: so is a
    bad spec file's content. --trace-stats, a cache-only run of --capacity-blocks and learned.train read no GPU and
    took a bad file without a word (exit 0)."""
    from learned.train import main as train_main

    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("memory_gib: 80\n", ""))
    if command == "learned.train":  # a workload it trains on in about a second (tests/test_learned_inputs.py)
        status = train_main(["--set", f"hardware.gpu={spec}", "--set", "serving.block_size=512", "--set",
                             "workload.synthetic.num_requests=400", "--range", "0:1", "--rounds", "1",
                             "--out", str(tmp_path / "model.txt")])
        err = capsys.readouterr().err
    else:
        status, _, err = run_cli(*command.split(), "--workload-trace", BUNDLED_AZURE, "--workload-limit", "5",
                                 "--set", f"hardware.gpu={spec}", "--no-plot", "--quiet")
    assert status == 2 and "gpu.yaml: needs memory_gib" in err and len(err.strip().splitlines()) == 1, err


def test_a_path_is_never_read_as_an_entry(tmp_path, monkeypatch):
    """``./h100`` (no such file) is a missing spec file, not the entry whose spelling it shares."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, sets=["hardware.gpu=./h100"])


@pytest.mark.parametrize("mode", [[], ["--cache-only"]])
def test_an_hbm_of_no_block_is_refused_before_the_trace(tmp_path, run_cli, mode):
    """A GPU whose memory beside the weights holds less than one KV block: Llama-3.1-8B's 16,094,076,928 B of BF16
    weights (and rope cache) on a GPU reporting 15.1 GiB at utilization 1.0 leave 119 MB, less than its profile run's
    activations and CUDA graphs take, so no 16-token block (2 MiB). Cache-only mode
    dropped the HBM tier without a word and replayed the lower tiers alone; now both modes refuse, as does an HBM
    capacity_gib under one block. The trace is no trace at all: the refusal comes before it is read."""
    spec = tmp_path / "gpu.yaml"
    spec.write_text(H100_FIELDS.replace("memory_gib: 80", "memory_gib: 16\nreported_memory_gib: 15.1"))
    unread = tmp_path / "unread.csv"
    unread.write_text("not,a\ntrace\n")
    status, _, err = run_cli(*mode, "--workload-trace", unread, "--no-plot", "--set", f"hardware.gpu={spec}",
                             "--set", "serving.gpu_memory_utilization=1.0")
    # (the profile run's activations alone exceed the 119 MB: the message names them and the limits that size them)
    assert status == 2 and "less than its profile run's activations" in err and "no KV block fits" in err, err
    assert "unread" not in err, err
    status, _, err = run_cli(*mode, "--workload-trace", unread, "--no-plot", "--set", "cache.tiers.hbm.capacity_gib=0.001")
    assert status == 2 and "holds no KV block" in err, err


# Vendor datasheet figures (dense: half the "with sparsity" figure where only that is printed), each GPU's source in
# profiles/gpus.yaml: dense BF16 and FP8 tensor TFLOPS (FP32 accumulate), memory GB, bandwidth GB/s, SMs.
DATASHEETS = {
    "h100-sxm": (1979 / 2, 3958 / 2, 80, 3350, 132),  # H100 datasheet (SXM): 1,979 / 3,958 with sparsity
    "h200": (1979 / 2, 3958 / 2, 141, 4800, 132),  # H200 datasheet: the H100 SXM's tensor figures, 141 GB, 4.8 TB/s
    "h100-pcie": (1513 / 2, 3026 / 2, 80, 2000, 114),  # H100 datasheet (PCIe): 1,513 / 3,026 with sparsity
    "h100-nvl": (1671 / 2, 3341 / 2, 94, 3900, 132),  # H100 datasheet (NVL): 1,671 / 3,341 with sparsity
    "a100-80gb": (312, None, 80, 2039, 108),  # A100 datasheet (80GB SXM): 312 dense, no FP8 tensor cores
    "a100-40gb": (312, None, 40, 1555, 108),  # A100 datasheet (40GB SXM)
    "l40s": (362.05, 733, 48, 864, 142),  # L40S datasheet: "362.05 | 733" BF16, "733 | 1,466" FP8 (dense | sparse)
    "l4": (242 / 2, 485 / 2, 24, 300, 58),  # L4 datasheet: 242 / 485 with sparsity
    "a40": (299.4 / 2, None, 48, 696, 84),  # A40 product brief: 299.4 with sparsity
    "rtx4090": (165.2, 330.3, 24, 1008, 128),  # Ada whitepaper: FP32-accumulate rates (half of FP16-accumulate)
    "rtx5090": (419 / 2, 838.4 / 2, 32, 1792, 170),  # RTX Blackwell: FP32-accumulate, half of 419 / 838.4 dense
    "rtxpro6000": (4000 / 8, 4000 / 4, 96, 1792, 188),  # RTX PRO 6000 datasheet: 4,000 AI TOPS = FP4 with sparsity
    "b200": (36000 / 16, 72000 / 16, 180, 8000, 148),  # HGX B200 datasheet: 8 GPUs, 36 / 72 PFLOPS with sparsity
    "h800": (1979 / 2, 3958 / 2, 80, 3350, 132),  # H800 datasheet (SXM): the H100 SXM's 1,979 / 3,958 with sparsity
    "a800-80gb": (312, None, 80, 2039, 108),  # A800 datasheet (80GB SXM): 312 dense (624 sparse), no FP8 tensor cores
    "h20": (148, 296, 96, 4000, 78),  # H20 specifications: 148 / 296 dense, 96 GB, 4.0 TB/s; 78 SMs
    "l40": (362.1 / 2, 724 / 2, 48, 864, 18176 // 128),  # L40 datasheet: 362.1 / 724 with sparsity, 18,176 cores
    "a10": (250 / 2, None, 24, 600, 72),  # A10 datasheet: BF16 250 with sparsity, 72 RT cores (one an SM)
    # GB200 NVL72 datasheet, 72 GPUs: 360 / 720 PFLOPS with sparsity, 13.4 TB and 576 TB/s; its SMs not given
    "gb200": (360_000 / 72 / 2, 720_000 / 72 / 2, round(13_400 / 72), 576_000 / 72, None),
}


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_gpu_spec_is_its_datasheet_dense_figure(name):
    """Every listed GPU's peaks are the datasheet's dense figures (not the sparse ones), its memory and bandwidth the
    datasheet's, its SMs the whitepaper's."""
    bf16, fp8, memory_gb, bandwidth_gbps, sms = DATASHEETS[name]
    spec = gpu_spec(name)
    assert spec.peak_flops == pytest.approx(bf16 * 1e12, rel=1e-3)
    assert (spec.fp8_peak_flops is None) == (fp8 is None)
    if fp8 is not None:
        assert spec.fp8_peak_flops == pytest.approx(fp8 * 1e12, rel=1e-3)
    assert spec.memory_bytes == memory_gb * 2**30 and spec.memory_bandwidth == bandwidth_gbps * 1e9
    assert spec.sm_count == sms
