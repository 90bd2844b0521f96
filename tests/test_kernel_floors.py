"""The roofline's kernel floors and attention efficiency (sim.serving.kernel_floors, sim.serving.compute), their fit to
measured operators (sim.serving.operator_fit, tools/fit_kernel_floors.py), and the defaults against NVIDIA
AIConfigurator's measurements of six GPUs (tests/fixtures/aiconfigurator)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from sim.config import load_config
from sim.serving.attention_waves import FLASH_ATTENTION_2, FLASH_ATTENTION_3, KERNEL_ATTENTION_EFFICIENCY
from sim.serving.compute import RooflineCompute
from sim.serving.kernel_floors import KernelFloors
from sim.serving.operator_fit import (
    FIT_KEYS,
    GPU_FOLDERS,
    Decomposed,
    LayerPoint,
    fit,
    kernel_values,
    layer_step,
    read_layers,
)
from sim.serving.step_shape import StepShape
from sim.specs import gpu_spec, model_spec
from tests.conftest import ROOFLINE_EFFICIENCIES, ROOT, script_module

AIC = ROOT / "tests" / "fixtures" / "aiconfigurator"
US = 1e-6


def _roofline(model: str, tp: int = 1, gemm_us: float = 0.0, attention_us: float = 0.0, **efficiencies):
    """The roofline with these floors, at a default config's efficiencies but those ``efficiencies`` give."""
    return RooflineCompute(model_spec(model), gpu_spec("h100-sxm"), 2, 2, tp, floors=KernelFloors.from_us(
        gemm_us, attention_us), **{**ROOFLINE_EFFICIENCIES, **efficiencies})


def _decode(seqs: int = 8, kv: int = 1000) -> StepShape:
    return StepShape.decode_batch(np.full(seqs, kv))


@pytest.mark.parametrize("model, per_layer_gemms, elementwise", [
    # qkv, o, gate_up, down: 32 dense layers; two fused add + RMSNorms, the rotary embedding, SiluAndMul
    ("llama-3.1-8b", [4] * 32, [4] * 32),
    # qkv, o; router and the fused experts' two: 48 MoE layers, no shared experts; elementwise: Llama's 4, q_norm and
    # k_norm, and fused_moe's top-k, moe_align_block_size's two and moe_sum
    ("qwen3-30b-a3b", [2 + 3] * 48, [4 + 2 + 4] * 48),
    # MLA's fused_qkv_a, q_b, kv_b (or the absorbed pair) and o: 5; its first layer dense (2 more), then 26 MoE
    # layers with shared experts (router, experts' two, shared gate_up and down: 5 more); its kv_a_layernorm one more
    # elementwise kernel (no q_lora_rank: no q_a_layernorm), and in the MoE layers the routing's 4, the shared
    # experts' own SiluAndMul and their add
    ("deepseek-v2-lite", [5 + 2] + [5 + 5] * 26, [5] + [5 + 6] * 26),
])
def test_each_layer_pays_its_gemms_and_attention_floors_on_top_of_the_roofline(model, per_layer_gemms, elementwise):
    """Floors add to a step exactly Σ over layers of ((GEMM + elementwise kernels) × the kernel floor + the attention
    floor) and the LM head's GEMM floor, whatever the batch: hand-counted kernels of vLLM's layers."""
    plain, floored = _roofline(model), _roofline(model, gemm_us=3.0, attention_us=10.0)
    layers = len(per_layer_gemms)
    expected = ((sum(per_layer_gemms) + sum(elementwise)) * 3.0 + layers * 10.0 + 3.0) * US
    prefill = StepShape()
    prefill.add_prefill(700, 0)
    for shape in (_decode(1, 10), _decode(64, 3000), prefill):
        assert floored.step_time(shape) - plain.step_time(shape) == pytest.approx(expected, rel=1e-9)


def test_a_decode_window_carries_the_floors_as_each_step_alone():
    """The compiled decode window prices each step as ``step_time`` does, floors included."""
    r = _roofline("llama-3.1-8b", gemm_us=3.3, attention_us=12.6)
    lengths = [5, 900, 4096]
    times = r.decode_times(StepShape.decode_batch(lengths), 50)
    for step in (0, 17, 49):
        assert times[step] == pytest.approx(r.step_time(StepShape.decode_batch([n + step for n in lengths])),
                                            rel=1e-12)


def test_attention_efficiency_prices_the_attention_flops_alone():
    """A long prefill's attention FLOPs run at attention_efficiency, its GEMMs at flops_efficiency: halving the
    former adds exactly layers × (hypot(2C, M) − hypot(C, M)) of the attention's FLOP time C and byte time M
    (Llama-3.1-8B: 4 × 32 heads × 128 FLOPs a pair, 8,192 × 8,193 / 2 causal pairs; 8 KV heads × 128 × 2 × 2 bytes
    a token and layer at 0.8 of 3.35 TB/s)."""
    shape = StepShape()
    shape.add_prefill(8192, 0)
    fast = _roofline("llama-3.1-8b", flops_efficiency=0.6, bandwidth_efficiency=0.8, attention_efficiency=0.6)
    slow = _roofline("llama-3.1-8b", flops_efficiency=0.6, bandwidth_efficiency=0.8, attention_efficiency=0.3)
    pairs = 8192 * 8193 / 2
    c = 4 * 32 * 128 * pairs / (989.4e12 * 0.6)
    m = 8 * 128 * 2 * 2 * 8192 / (3350e9 * 0.8)
    assert slow.step_time(shape) - fast.step_time(shape) == pytest.approx(
        32 * (math.hypot(2 * c, m) - math.hypot(c, m)), rel=1e-9)
    assert fast.linear_layer_time(8192) == slow.linear_layer_time(8192)


def _points(gpu: str = "h100-sxm") -> list[LayerPoint]:
    """Layer points of several setups and phases, their times to be filled in."""
    points = []
    for model, tp in (("llama-3.1-8b", 1), ("qwen3-32b", 2), ("llama-3.1-70b", 8)):
        points += [LayerPoint(gpu, model, tp, "decode", b, kv, 0.0, 0.0) for b in (1, 32, 256) for kv in (512, 8192)]
        points += [LayerPoint(gpu, model, tp, "prefill", b, n, 0.0, 0.0) for b, n in ((1, 512), (1, 8192), (4, 256))]
    return points


def _priced(points: list[LayerPoint], values: dict[str, float]) -> list[LayerPoint]:
    """The points as kvsim's roofline at ``values`` prices their linear part and attention."""
    priced = []
    for p in points:
        r = RooflineCompute(model_spec(p.model), gpu_spec(p.gpu), 2, 2, p.tensor_parallel_size,
                            flops_efficiency=values["flops_efficiency"],
                            bandwidth_efficiency=values["bandwidth_efficiency"],
                            floors=KernelFloors.from_us(values["gemm_floor_us"], values["attention_floor_us"],
                                                        values["attention_tile_us"]),
                            attention_efficiency=values["attention_efficiency"])
        shape, tokens = layer_step(p)
        priced.append(replace(p, linear_s=r.linear_layer_time(tokens), attention_s=r.attention_layer_time(shape)))
    return priced


TRUTH = {"flops_efficiency": 0.7, "bandwidth_efficiency": 0.85, "attention_efficiency": 0.5, "gemm_floor_us": 4.0,
         "attention_floor_us": 9.0, "attention_tile_us": 3.0}


def test_the_decomposed_roofline_is_the_roofline():
    """The fit's array arithmetic gives the roofline's own linear and attention times at any values."""
    points = _priced(_points(), TRUTH)
    linear, attention = Decomposed(points).predict(TRUTH)
    np.testing.assert_allclose(linear, [p.linear_s for p in points], rtol=1e-9)
    np.testing.assert_allclose(attention, [p.attention_s for p in points], rtol=1e-9)


def test_the_fit_recovers_the_values_that_made_the_points():
    """Points priced by the roofline at known values, fitted from elsewhere, give back those values: the shared
    ones, and an attention efficiency for each kernel (an H100's FlashAttention 3, an A100's FlashAttention 2)."""
    hopper = _priced(_points("h100-sxm"), dict(TRUTH, attention_efficiency=0.65))
    ampere = _priced(_points("a100-80gb"), TRUTH)
    start = {"flops_efficiency": 0.5, "bandwidth_efficiency": 0.5, "attention_efficiency": 0.5, "gemm_floor_us": 1.0,
             "attention_floor_us": 1.0, "attention_tile_us": 1.0}
    fitted = fit([Decomposed(hopper), Decomposed(ampere)], start)
    truth = {FLASH_ATTENTION_3: 0.65, FLASH_ATTENTION_2: TRUTH["attention_efficiency"]}
    assert fitted.attention == pytest.approx(truth, rel=1e-3)
    for key in FIT_KEYS:
        assert fitted.values(FLASH_ATTENTION_2)[key] == pytest.approx(TRUTH[key], rel=1e-3), key
    # a kernel no fitted GPU runs keeps the efficiency the fit started from (a null one: the kernel's default)
    alone = fit([Decomposed(ampere)], dict(start, attention_efficiency=None))
    assert alone.values(FLASH_ATTENTION_3)["attention_efficiency"] == KERNEL_ATTENTION_EFFICIENCY[FLASH_ATTENTION_3]


GEMM_HEADER = "framework,version,device,op_name,kernel_source,gemm_dtype,m,n,k,latency\n"
ATTENTION_HEADER = ("framework,version,device,op_name,kernel_source,batch_size,isl,num_heads,num_key_value_heads,"
                    "head_dim,beam_width,attn_dtype,kv_cache_dtype,step,latency\n")


def _folder(tmp_path, gemm: str, generation: str, context: str = "", version: str = "0.24.0"):
    """An AIConfigurator systems/data/<gpu> folder with the collector's CSV tables."""
    root = tmp_path / "h100_sxm"
    for kind, stem, rows, header in (("gemm", "gemm_perf", gemm, GEMM_HEADER),
                                     ("attention", "generation_attention_perf", generation, ATTENTION_HEADER),
                                     ("attention", "context_attention_perf", context, ATTENTION_HEADER)):
        path = root / kind / "vllm" / version / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + rows)
    return root


def _gemm(m: int, n: int, k: int, ms: float) -> str:
    return f"VLLM,0.24.0,H100,gemm,x,bfloat16,{m},{n},{k},{ms}\n"


def test_a_layer_is_read_as_its_four_gemms_and_its_attention_call(tmp_path):
    """Llama-3.1-8B at one token: q/k/v (6,144 × 4,096) and o (4,096 × 4,096) as measured, gate/up (28,672 ×
    4,096) and down (4,096 × 14,336) between the grid's n and k, log-linearly: 28,672 is 0.4535... of the way
    from 16,384 to 51,200 in log n. Its decode attention at 512 KV tokens (step 511). The other 115 shapes of the
    four setups are not in the tables: counted."""
    rows = [_gemm(1, 6144, 4096, 0.010), _gemm(1, 4096, 4096, 0.008), _gemm(1, 16384, 4096, 0.020),
            _gemm(1, 51200, 4096, 0.050), _gemm(1, 4096, 12288, 0.012), _gemm(1, 4096, 16384, 0.016),
            _gemm(1, 4096, 4096, 0.008), _gemm(2, 6144, 4096, 0.011), _gemm(1, 6144, 12288, 1.0),
            _gemm(1, 6144, 16384, 1.0), _gemm(1, 16384, 12288, 1.0), _gemm(1, 51200, 12288, 1.0)]
    generation = "VLLM,0.24.0,H100,generation_attention,x,1,1,32,8,128,1,bfloat16,bfloat16,511,0.013\n"
    points, missing = read_layers(_folder(tmp_path, "".join(rows), generation), "h100-sxm")
    w_n = math.log(28672 / 16384) / math.log(51200 / 16384)
    w_k = math.log(14336 / 12288) / math.log(16384 / 12288)
    gate_up = 0.020 ** (1 - w_n) * 0.050 ** w_n
    down = 0.012 ** (1 - w_k) * 0.016 ** w_k
    assert missing == 115 and len(points) == 1
    (p,) = points
    assert (p.model, p.tensor_parallel_size, p.phase, p.sequences, p.tokens) == ("llama-3.1-8b", 1, "decode", 1, 512)
    assert p.linear_s == pytest.approx((0.010 + 0.008 + gate_up + down) * 1e-3, rel=1e-12)
    assert p.attention_s == pytest.approx(0.013e-3)


def test_the_defaults_are_the_fit_to_six_gpus_and_predict_each_from_the_other_five():
    """config.yaml's roofline constants are the fit to AIConfigurator's measured vLLM operators of A100, H100, H200,
    B200, L40S and RTX PRO 6000 (to the figures config.yaml gives; its null attention efficiency: each kernel's
    fitted); fitted to five, each sixth GPU's layers are predicted within 15% (median), and on average over the six
    better than the plain roofline (0.6 / 0.8, no floors) predicts them."""
    groups = {}
    for folder in sorted(p for p in AIC.iterdir() if p.is_dir()):
        points, _ = read_layers(folder, GPU_FOLDERS[folder.name])
        assert len(points) >= 70, folder.name
        groups[folder.name] = Decomposed(points)
    defaults = load_config(None).compute
    configured = {k: getattr(defaults, k) for k in FIT_KEYS}
    fitted = fit(list(groups.values()), configured)
    assert configured["attention_efficiency"] is None
    for kernel, efficiency in KERNEL_ATTENTION_EFFICIENCY.items():
        assert fitted.attention[kernel] == pytest.approx(efficiency, rel=0.01), kernel
        for key in FIT_KEYS:
            assert kernel_values(configured, kernel)[key] == pytest.approx(fitted.values(kernel)[key], rel=0.01), key
    plain = {"flops_efficiency": 0.6, "bandwidth_efficiency": 0.8, "attention_efficiency": 0.6, "gemm_floor_us": 0.0,
             "attention_floor_us": 0.0, "attention_tile_us": 0.0}
    held, before = [], []
    for name, group in groups.items():
        others = fit([g for n, g in groups.items() if n != name], configured)
        held.append(group.median_errors(others.values(group.kernel))["layer"])
        before.append(group.median_errors(plain)["layer"])
    assert max(held) < 0.15
    assert np.mean(held) < np.mean(before)


@pytest.fixture(scope="module")
def tool():
    with script_module(ROOT / "tools" / "fit_kernel_floors.py") as module:
        yield module


def test_the_tool_writes_an_overlay_a_run_loads(tool, tmp_path, capsys, run_cli):
    out = tmp_path / "h100.yaml"
    status = tool.main([str(AIC / "h100_sxm"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and "104 layer points as h100-sxm" in printed and "fitted: " in printed
    compute = load_config(None, overlays=[out]).compute
    assert 0 < compute.flops_efficiency <= 1 and compute.gemm_floor_us > 0
    # the H100's own attention efficiency, not null (which would be FlashAttention 3's default, not this fit)
    assert compute.attention_efficiency is not None and "attention_efficiency: " in out.read_text()
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--calibration-profile", out,
                             "--set", "workload.synthetic.num_requests=10", "--report-json", tmp_path / "r.json")
    assert status == 0, err


def test_the_tool_reads_a_gpu_name_as_the_config_does(tool, tmp_path, capsys):
    """'H100 SXM' is the H100's name to --set hardware.gpu (sim.specs.canonical_gpu); the tool refused it as unknown."""
    status = tool.main([f"{AIC / 'h100_sxm'}=H100 SXM", "--out", str(tmp_path / "h100.yaml")])
    assert status == 0 and "104 layer points as h100-sxm" in capsys.readouterr().out


@pytest.mark.parametrize("argv, named", [
    (["{tmp}/nowhere"], "nowhere: not a folder"),
    (["{tmp}/h20"], "kvsim has no GPU for AIConfigurator's 'h20': write"),
    (["{tmp}/h20=no-such-gpu"], "no-such-gpu"),
    (["{empty}"], "no vLLM gemm_perf table"),
    (["{no_latency}"], "gemm_perf.txt: no column 'latency'"),
    (["{bad_latency}"], "gemm_perf.txt: row 2: latency 'fast' is not a number of milliseconds from 1e-06 to 3.6e+06"),
    (["{huge_latency}"], "gemm_perf.txt: row 2: latency 1e+308 is not a number of milliseconds"),
    (["{unshaped}"], "hold none of the layer shapes"),
    (["{bad_shape}"], "gemm_perf.txt: row 2: m 'one' is not a whole number"),
    (["{aic}/h100_sxm", "{aic}/a100_sxm", "--out", "{tmp}/both.yaml"],
     "--out: an overlay holds one compute.attention_efficiency, and these GPUs run different attention kernels "
     "(FlashAttention 3 on h100-sxm; FlashAttention 2 / FlashInfer on a100-80gb)"),
])
def test_bad_inputs_are_refused_naming_them(tool, tmp_path, capsys, argv, named):
    (tmp_path / "h20").mkdir()
    empty = tmp_path / "empty" / "h100_sxm"
    empty.mkdir(parents=True)
    cases = {"tmp": tmp_path, "empty": empty, "aic": AIC}
    for name, gemm in (("no_latency", "framework,gemm_dtype,m,n,k\nVLLM,bfloat16,1,2,3\n"),
                       ("bad_latency", GEMM_HEADER + "VLLM,0.24.0,H100,gemm,x,bfloat16,1,6144,4096,fast\n"),
                       ("huge_latency", GEMM_HEADER + "VLLM,0.24.0,H100,gemm,x,bfloat16,1,6144,4096,1e308\n"),
                       ("unshaped", GEMM_HEADER + _gemm(3, 64, 64, 0.01)),
                       ("bad_shape", GEMM_HEADER + "VLLM,0.24.0,H100,gemm,x,bfloat16,one,6144,4096,0.01\n")):
        folder = _folder(tmp_path / name, "", "")
        (folder / "gemm" / "vllm" / "0.24.0" / "gemm_perf.txt").write_text(gemm)
        cases[name] = folder
    status = tool.main([a.format(**cases) for a in argv])
    err = capsys.readouterr().err
    assert status == 2 and named in err, err
    assert "Traceback" not in err


def test_the_fit_never_overwrites_what_it_reads_nor_counts_a_folder_twice(tool, tmp_path, capsys):
    """--out inside a folder read, or onto --config, would replace an input; a folder given twice would count its
    points twice: all refused before anything is read. Folders of one name in two places are two GPUs' points."""
    import shutil

    for where in ("a", "b"):
        shutil.copytree(AIC / "h100_sxm", tmp_path / where / "h100_sxm")
    folder = tmp_path / "a" / "h100_sxm"
    table = folder / "gemm" / "vllm" / "0.24.0" / "gemm_perf.txt"
    before = table.read_bytes()
    config = tmp_path / "c.yaml"
    config.write_text("compute: {}\n")
    for argv, named in (([str(folder), "--out", str(table)], "is inside"),
                        ([str(folder), "--config", str(config), "--out", str(config)], "also the path of --config"),
                        ([str(folder), str(tmp_path / "a" / "." / "h100_sxm")], "given twice")):
        assert tool.main(argv) == 2 and named in capsys.readouterr().err
    assert table.read_bytes() == before
    assert tool.main([str(folder), str(tmp_path / "b" / "h100_sxm")]) == 0
    printed = capsys.readouterr().out
    assert f"{folder} (h100-sxm)" in printed and f"{tmp_path / 'b' / 'h100_sxm'} (h100-sxm)" in printed


def test_a_shape_measured_twice_is_read_as_its_mean_and_said():
    """A repeated shape (the A100's context table repeats some) is the geometric mean of its rows, counted."""
    from sim.serving.operator_fit import measured_ms

    keys = pd.DataFrame({"m": [1, 1, 2], "n": [8, 8, 8]})
    ms, repeated = measured_ms(keys, pd.Series([0.01, 0.04, 0.5]))
    assert repeated == 1 and ms[(1, 8)] == pytest.approx(0.02) and ms[(2, 8)] == pytest.approx(0.5)


@pytest.mark.parametrize("gpu, efficiency", [("h100-sxm", 0.66), ("h200", 0.66), ("a100-80gb", 0.54), ("l40s", 0.54),
                                             ("b200", 0.54), ("rtxpro6000", 0.54)])
def test_a_null_attention_efficiency_is_the_gpus_kernels(gpu, efficiency):
    """FlashAttention 3 on Hopper, FlashAttention 2 or FlashInfer elsewhere; a configured value wins."""
    from sim.serving.compute_backend import roofline_compute

    assert roofline_compute(load_config(None, sets=[f"hardware.gpu={gpu}"]), 1).attention_efficiency == efficiency
    configured = load_config(None, sets=[f"hardware.gpu={gpu}", "compute.attention_efficiency=0.7"])
    assert roofline_compute(configured, 1).attention_efficiency == 0.7
