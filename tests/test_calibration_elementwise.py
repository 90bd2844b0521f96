"""``--check-calibration``'s roofline reference for a table of a layer's operators but attention prices what the table
times, as the roofline's step does: LLMServingSim's dense.csv and Vidur's mlp.csv time the norms, the rotary embedding
and the activation as operators of their own, which a step now adds beside the GEMMs (``sim.serving.elementwise``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.config import load_config
from sim.serving.calibration import _bundle_tables

US = 1e-6
H100_BANDWIDTH = 0.8 * 3.35e12  # profiles/gpus.yaml h100-sxm's 3.35 TB/s at compute.bandwidth_efficiency 0.8
FLOOR = 4 * US  # compute.gemm_floor_us=4
# the L2's, where the bytes the kernel before wrote fit (these tables' 1 to 101 tokens: all of them): sim.specs
# L2_BANDWIDTH_RATIO, 3,133 / 900, of the memory bandwidth
H100_L2_BANDWIDTH = H100_BANDWIDTH * 3133 / 900


def _bundle(root: Path, ops: list[str]) -> Path:
    """A TP-1 bundle whose operators each take 1 us (the measured side is not what is checked here)."""
    folder = root / "tp1"
    folder.mkdir(parents=True)
    (root / "meta.yaml").write_text("tp_degrees: [1]\n")
    (folder / "dense.csv").write_text("layer,tokens,time_us\n" + "".join(f"{op},1,1\n{op},100,1\n" for op in ops))
    (folder / "per_sequence.csv").write_text("layer,sequences,time_us\nlm_head,1,0\nlm_head,9,0\nsampler,1,0\n"
                                             "sampler,9,0\n")
    (folder / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                                          "0,0,1,16,5\n0,0,1,32,5\n0,0,8,16,5\n0,0,8,32,5\n")
    return root


def _dense_fit(bundle: Path, model: str):
    config = load_config(None, sets=[f"model={model}", "compute.backend=profiled", f"compute.profile={bundle}",
                                     "compute.flops_efficiency=0.6", "compute.bandwidth_efficiency=0.8",
                                     "compute.gemm_floor_us=4"])
    fits = {fit.table: fit for fit in _bundle_tables(bundle, config)}
    return fits["tp1/dense.csv (one layer's operators)"], config


def test_dense_bundle_reference_carries_the_norms_rotary_and_activation(tmp_path):
    """Llama-3.1-8B's dense.csv (two layernorms, qkv, rotary_emb, o, gate_up, act_fn, down): its reference is the
    roofline's linear layer plus, by hand, 4 kernels (two fused add + RMSNorms, rotary, SiluAndMul) of 4 us each and
    per token 2 B x (2 x 4 x 4,096 + 3 x 14,336 + 2 x (32 + 8) x 128) = 172,032 B: the norms' residual reads,
    2 B x 2 x 4,096 = 16,384, at 0.8 x 3.35 TB/s, the other 155,648 (the GEMMs' outputs, and the writes) in L2."""
    from sim.serving.calibration import _roofline

    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
           "down_proj"]
    dense, config = _dense_fit(_bundle(tmp_path, ops), "llama-3.1-8b")
    roofline = _roofline(config, 1)
    for row, tokens in enumerate(dense.keys["tokens"]):
        elementwise = 4 * FLOOR + tokens * (16_384 / H100_BANDWIDTH + 155_648 / H100_L2_BANDWIDTH)
        assert dense.reference[row] == pytest.approx(roofline.linear_layer_time(int(tokens)) + elementwise, rel=1e-12)


def test_moe_bundle_dense_reference_carries_the_norms_and_rotary_not_the_activation(tmp_path):
    """Qwen3-30B-A3B's dense.csv has no MLP (moe.csv times it): the attention projections plus, by hand, 5 kernels
    (two fused add + RMSNorms, q_norm and k_norm, rotary) of 4 us each and per token 2 B x (2 x 4 x 2,048 + 2 x
    (2 x (32 + 4) x 128)) = 69,632 B, the residual reads' 2 B x 2 x 2,048 = 8,192 at 0.8 x 3.35 TB/s and the other
    61,440 in L2; no activation nor routing (the experts' are moe.csv's)."""
    from sim.serving.calibration import _roofline

    ops = ["embedding", "final_layernorm", "layernorm", "qkv_proj", "qk_norm", "rotary_emb", "o_proj"]
    bundle = _bundle(tmp_path, ops)
    (bundle / "tp1" / "moe.csv").write_text("tokens,activated_experts,time_us\n1,8,50\n2,8,56\n4,8,57\n2,16,135\n")
    dense, config = _dense_fit(bundle, "qwen3-30b-a3b")
    roofline = _roofline(config, 1)
    for row, tokens in enumerate(dense.keys["tokens"]):
        elementwise = 5 * FLOOR + tokens * (8_192 / H100_BANDWIDTH + 61_440 / H100_L2_BANDWIDTH)
        assert dense.reference[row] == pytest.approx(roofline.projections_time(int(tokens)) + elementwise, rel=1e-12)


def test_vidur_mlp_reference_carries_the_norms_rotary_and_activation(tmp_path):
    """Vidur's mlp.csv (input_layernorm, attn_rope, mlp_act, add beside the GEMMs) of phi-2: its reference is the
    roofline's linear layer plus, by hand, 4 kernels of 4 us each and per token 2 B x (phi's parallel block: one
    LayerNorm 2 x 2,560 and the sum of attention, MLP and residual 4 x 2,560; the plain MLP's gelu 2 x 10,240; the
    rotary embedding's 32-wide part of 32 query and 32 KV heads 2 x 64 x 32) = 79,872 B: the sum's attention-output
    and residual reads' 2 B x 2 x 2,560 = 10,240 at 0.8 x 3.35 TB/s, the other 69,632 in L2."""
    from sim.serving.calibration import _roofline, _vidur_mlp
    from tests.test_profile_tables import PHI_2_SHAPE, _write_vidur_mlp

    one = [5.0, 0.01, 0.05, 0.01, 0.02, 0.03, 0.01, 0.03, 0.01]
    _write_vidur_mlp(tmp_path / "p", PHI_2_SHAPE, {1: one, 51: one, 101: [2 * v for v in one]})
    config = load_config(None, sets=["model=microsoft/phi-2", "compute.backend=profiled",
                                     f"compute.profile={tmp_path / 'p'}", "compute.bandwidth_efficiency=0.8",
                                     "compute.gemm_floor_us=4"])
    fit = _vidur_mlp(tmp_path / "p" / "mlp.csv", config)
    roofline = _roofline(config, 1)
    for row, tokens in enumerate(fit.keys["num_tokens"]):
        elementwise = 4 * FLOOR + tokens * (10_240 / H100_BANDWIDTH + 69_632 / H100_L2_BANDWIDTH)
        assert fit.reference[row] == pytest.approx(roofline.linear_layer_time(int(tokens)) + elementwise, rel=1e-12)
