"""The fused-MoE kernel's padded rows (``sim.serving.moe.expected_padded_rows``): each expert's routed pairs padded
to a multiple of ``BLOCK_SIZE_M`` as vLLM's ``moe_align_block_size`` pads them, by enumeration and by its limits."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from sim.model_shape import ModelSpec
from sim.serving.moe import (
    block_expert_rows,
    expected_padded_rows,
    fused_moe_block_m,
    rank_expert_rows,
    routed_activation_bytes,
)


def _enumerated(tokens: int, k: int, experts: int, block_m: int) -> float:
    """Mean over every equally likely routing (each token a k-subset of the experts) of Σ_e ceil(n_e / BM) × BM."""
    subsets = list(itertools.combinations(range(experts), k))
    total = 0
    routings = list(itertools.product(subsets, repeat=tokens))
    for routing in routings:
        counts = [0] * experts
        for chosen in routing:
            for e in chosen:
                counts[e] += 1
        total += sum(math.ceil(n / block_m) * block_m for n in counts)
    return total / len(routings)


@pytest.mark.parametrize("tokens, k, experts, block_m", [(3, 2, 4, 2), (2, 1, 3, 4), (4, 2, 5, 3), (3, 3, 4, 2),
                                                         (3, 1, 2, 1)])
def test_expected_padded_rows_equals_enumeration(tokens, k, experts, block_m):
    assert expected_padded_rows(tokens, k, experts, block_m) == pytest.approx(
        _enumerated(tokens, k, experts, block_m), rel=1e-12)


def test_expected_padded_rows_by_hand():
    # 2 tokens, 1 of 2 experts each, blocks of 4: both on one expert (1/2) pads to 4 rows, one each (1/2) to 8
    assert expected_padded_rows(2, 1, 2, 4) == pytest.approx(6)
    # one token, k of E: its k experts each pad one row to a block
    assert expected_padded_rows(1, 8, 128, 16) == pytest.approx(8 * 16)
    assert expected_padded_rows(0, 8, 128, 16) == 0


@pytest.mark.parametrize("tokens", [1, 7, 100, 4096])
def test_a_block_of_one_row_is_the_routed_pairs(tokens):
    assert expected_padded_rows(tokens, 8, 128, 1) == pytest.approx(tokens * 8)


def test_padding_is_at_least_the_pairs_at_most_a_block_an_expert_and_vanishes_relatively():
    k, experts, block_m = 8, 128, 64
    previous = 0.0
    for tokens in (1, 2, 16, 64, 256, 1024, 8192, 65536):
        rows = expected_padded_rows(tokens, k, experts, block_m)
        pairs = tokens * k
        assert pairs <= rows < pairs + experts * block_m  # each expert pads fewer than a block
        assert rows > previous  # more tokens, more rows
        previous = rows
    # G -> infinity: at most E x BM padding rows over G x k pairs, a share that goes to 0
    assert expected_padded_rows(65536, k, experts, block_m) / (65536 * k) < 1 + experts * block_m / (65536 * k)
    assert expected_padded_rows(65536, k, experts, block_m) / (65536 * k) < 1.02


def test_a_fractional_token_count_interpolates_between_its_neighbours():
    low, high = expected_padded_rows(10, 2, 8, 16), expected_padded_rows(11, 2, 8, 16)
    assert expected_padded_rows(10.25, 2, 8, 16) == pytest.approx(low + 0.25 * (high - low))


def test_block_m_follows_vllms_default_config():
    # fused_moe.py get_default_config: BLOCK_SIZE_M 16 while M <= E, else 64
    assert fused_moe_block_m(128, 128) == 16 and fused_moe_block_m(129, 128) == 64


def test_block_wise_fp8_experts_pad_to_64_rows_at_any_batch():
    """get_default_config's first branch: dtype fp8_w8a8 with a block_shape takes BLOCK_SIZE_M 64 whatever M (its
    M <= E rule of 16 is the unquantized and per-tensor path's). MiniMax-M2 (block-wise FP8, 8 of 256 experts): one
    token's 8 pairs, each alone on its expert, are 8 x 64 = 512 rows (8 x 16 = 128 taken before)."""
    from sim.specs import model_spec

    assert fused_moe_block_m(1, 256, block_fp8=True) == 64
    minimax = model_spec("minimax-m2")
    assert rank_expert_rows(1, minimax) == pytest.approx(8 * 64)
    assert block_expert_rows(1, minimax, 8) == pytest.approx(8 * 64)
    plain = dataclasses.replace(minimax, weight_quantization=None, weight_block_size=None)
    assert rank_expert_rows(1, plain) == pytest.approx(8 * 16)


def test_rank_rows_take_the_groups_tokens_and_local_experts():
    m = ModelSpec(name="tiny-moe", num_layers=2, hidden_size=8, num_attention_heads=2, num_kv_heads=1, head_dim=4,
                  intermediate_size=10, vocab_size=16, num_parameters=0, max_position_embeddings=1024, source="test",
                  num_experts=8, num_experts_per_tok=2, moe_intermediate_size=6, num_moe_layers=2)
    # D = 1: all 8 experts are local (split by width over TP); 8 tokens <= 8: blocks of 16
    assert rank_expert_rows(8, m) == pytest.approx(expected_padded_rows(8, 2, 8, 16))
    # D = 2, TP 2: 8 / 4 = 2 local experts, 8 tokens > 2: blocks of 64; this rank's half of the group's rows
    assert rank_expert_rows(8, m, 2, 2) == pytest.approx(expected_padded_rows(8, 2, 8, 64) / 2)


def test_a_moe_csv_row_pads_over_its_activated_experts():
    """A bundle's moe.csv row routes its tokens to ``activated_experts`` experts: Qwen3-30B-A3B's 256 tokens on 8
    experts give each expert all 256 (k = 8), 4 blocks of 64 rows, no padding: 2,048 rows, the pairs; 1 token on 8
    experts, 8 blocks of 16 rows (1 token <= 128 experts): 128 rows."""
    from sim.specs import model_spec

    m = model_spec("qwen3-30b-a3b")
    assert block_expert_rows(256, m, 8) == 2048
    assert block_expert_rows(1, m, 8) == 128
    # 2 tokens on 16 experts: each expert has Binomial(2, 1/2) pairs, a block of 16 unless none: 16 x 16 x 3/4
    assert block_expert_rows(2, m, 16) == pytest.approx(192)


def test_the_gemms_activation_bytes_by_hand():
    """vLLM fused_experts_impl's caches: w13 reads a token's input (H) and writes each pair's gate and up (2 I'), w2
    reads each pair's activation (I') and writes its H-wide output; every pair's outputs on every rank."""
    m = ModelSpec(name="tiny-moe", num_layers=2, hidden_size=8, num_attention_heads=2, num_kv_heads=1, head_dim=4,
                  intermediate_size=10, vocab_size=16, num_parameters=0, max_position_embeddings=1024, source="test",
                  num_experts=8, num_experts_per_tok=2, moe_intermediate_size=6, num_moe_layers=2)
    # one GPU: 3 tokens x (8 + 2 x (12 + 6 + 8)) x 2 B
    assert routed_activation_bytes(3, m, 2) == 3 * 60 * 2
    # TP 3: widths a third, outputs whole: 3 x (8 + 2 x (4 + 2 + 8)) x 2 B
    assert routed_activation_bytes(3, m, 2, 1, 3) == 3 * 36 * 2
    # expert parallel over 4 ranks: all pairs' gate/up and outputs written, a quarter of them read: 3 x (8 + 2 x 20 +
    # 2 x 6 / 4) x 2 B; never below every pair's output, however many ranks
    assert routed_activation_bytes(3, m, 2, 4) == 3 * 51 * 2
    assert routed_activation_bytes(3, m, 2, 64) > 3 * 2 * 8 * 2


def test_padded_rows_and_gemm_traffic_bring_kvsim_closer_to_the_measured_fused_moe_kernel():
    """AIConfigurator's RTX PRO 6000 fused-MoE rows at Qwen3-30B-A3B's shape (tests/fixtures/aiconfigurator_moe; no
    kvsim constant was fitted to any MoE table): the median |error| of kvsim's routed-expert time, one GPU's whole
    layer (ep 1) and half of it (ep 2, the measured DP 2 run's), is lower with the padded rows, and with the GEMMs'
    activation traffic too, than before either."""
    from pathlib import Path

    import numpy as np

    from tests.conftest import script_module

    root = Path(__file__).resolve().parent.parent
    with script_module(root / "tools" / "check_moe_kernels.py") as tool:
        table = tool.read_table(root / "tests" / "fixtures" / "aiconfigurator_moe" / "rtx_pro_6000_server_moe_perf.txt")
        medians = {}
        for ep in (1, 2):
            rows = table[table["moe_ep_size"] == ep]
            assert len(rows) == 27
            for padded, traffic in ((False, False), (True, False), (True, True)):
                medians[ep, padded, traffic] = np.median(np.abs(tool.errors(rows, "rtxpro6000", padded, traffic)))
        # ep 1: 3.7% -> 2.1% padded -> 3.1% with the traffic; ep 2: 11.7% -> 10.7% -> 4.1%
        for ep in (1, 2):
            assert medians[ep, True, False] < medians[ep, False, False]
            assert medians[ep, True, True] < medians[ep, False, False]
        assert medians[2, True, True] < 0.05


def test_check_moe_kernels_prices_at_the_configs_roofline_efficiencies(monkeypatch):
    """tools/check_moe_kernels.py's roofline is config.yaml's (``compute.*``): with compute.flops_efficiency 0.5 and
    bandwidth_efficiency 0.25, each row's roofline peaks at 0.5 of the RTX PRO 6000's FLOP/s and 0.25 of its memory
    bandwidth (profiles/gpus.yaml), the one efficiency on FLOPs, the other on bytes."""
    from pathlib import Path

    import sim.config
    import sim.serving.compute
    from sim.specs import gpu_spec
    from tests.conftest import script_module

    real_load, real_roofline, built = sim.config.load_config, sim.serving.compute.RooflineCompute, []
    efficiencies = ["compute.flops_efficiency=0.5", "compute.bandwidth_efficiency=0.25"]
    monkeypatch.setattr(sim.config, "load_config", lambda path, sets=(): real_load(path, sets=[*sets, *efficiencies]))
    monkeypatch.setattr(sim.serving.compute, "RooflineCompute",
                        lambda *args, **kwargs: built.append(real_roofline(*args, **kwargs)) or built[-1])
    root = Path(__file__).resolve().parent.parent
    with script_module(root / "tools" / "check_moe_kernels.py") as tool:
        table = tool.read_table(root / "tests" / "fixtures" / "aiconfigurator_moe" / "rtx_pro_6000_server_moe_perf.txt")
        assert len(tool.predict(table.head(2), "rtxpro6000")) == 2
    spec = gpu_spec("rtxpro6000")
    assert [(r.peak, r.bandwidth) for r in built] == [(0.5 * spec.peak_flops, 0.25 * spec.memory_bandwidth)] * 2
