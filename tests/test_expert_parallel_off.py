"""A data-parallel group without expert parallelism (``serving.enable_expert_parallel`` false, vLLM's CLI default).

vLLM (fused_moe/config.py ``FusedMoEParallelConfig.make``): without ``enable_expert_parallel``,
``flatten_tp_across_dp`` splits every expert by width over the group's D × TP GPUs, each holding all E experts'
1/(D × TP) slices (``num_local_experts`` E: BM 16 while the rank's rows M <= E); ``maybe_make_prepare_finalize``
falls back to the all-gather/reduce-scatter prepare and finalize, whose ``AgRsAll2AllManager._get_comm_group`` is the
DP group (the D ranks of one TP index; no sequence parallelism: ``use_sequence_parallel_moe`` needs expert
parallelism), every TP rank carrying all of its instance's T tokens; and ``MoERunner._maybe_reduce_final_output``
keeps the TP all-reduce (``tensor_model_parallel_all_reduce``). Figures by hand from the model shapes
(profiles/models.yaml: Qwen3-30B-A3B, 48 layers, hidden 2,048, 32 query and 4 KV heads of 128, 128 experts of width
768, 8 a token, vocabulary 151,936)."""

from __future__ import annotations

import math

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.collectives import RingCollectives, TensorParallelComm
from sim.serving.compute_backend import gpu_compute_model
from sim.serving.memory_profile import forward_peak, memory_budget
from sim.serving.moe import DataParallelShare, FusedExperts
from sim.serving.run import run_serving
from sim.serving.utilization import work_counter
from sim.specs import model_spec
from tests.test_moe import _bundle
from tests.test_serving import make_trace

QWEN = model_spec("qwen3-30b-a3b")
SETS = ["model=qwen3-30b-a3b", "serving.num_instances=2", "serving.data_parallel_size=2",
        "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]


def _padded_rows(tokens: int, k: int, experts: int, block: int) -> float:
    """An independent oracle: E × BM × E[ceil(n / BM)] over n ~ Binomial(tokens, k / E), summed over the pmf."""
    p = k / experts
    return experts * block * sum(math.comb(tokens, n) * p ** n * (1 - p) ** (tokens - n) * math.ceil(n / block)
                                 for n in range(tokens + 1))


def test_the_exchange_spans_the_dp_ranks_and_the_moe_all_reduce_stays():
    """TP 2, D 2, 2 layers (both MoE) of 16-byte states, 32-byte logits, a 1 GB/s ring without latency, 3 tokens here
    and 2 in the peer: all 5 all-reduces (2 a layer, the embedding's) of 3 x 16 B over the 2 TP ranks, 2 ring steps
    of 24 B each; the logits' all-gather, 1 step of 16 B; per MoE layer the all-gather and the reduce-scatter of the
    group's 5 tokens x 16 B over the D = 2 ranks of this TP index, 1 step of 40 B each. (Expert parallel, the same step
    is 2 x 24 x 3 + 16 + 2 x (2 x 3 x 32 + 32) = 608 ns with a 3 + 2 padded to 4 + 2 tokens: tests/test_moe.py.)"""
    ring = RingCollectives(bandwidth=1e9, step_latency=0.0)
    comm = TensorParallelComm(ring, 2, 2, 16, 32, moe_layers=2, data_parallel_size=2, expert_parallel=False)
    assert comm.step_time(3, 1, DataParallelShare(3, 5, 5, 5)) == pytest.approx((5 * 2 * 24 + 16 + 2 * 2 * 40) * 1e-9)
    # without a share the group is 2 ranks of 3 tokens: 6 x 16 B, 1 step of 48 B each
    assert comm.step_time(3, 1) == pytest.approx((5 * 2 * 24 + 16 + 2 * 2 * 48) * 1e-9)


@pytest.mark.parametrize("tp, group", [(1, 100), (2, 40)])
def test_every_gpu_pads_the_groups_pairs_over_all_experts(tp, group):
    """D = 2: expert parallel a GPU holds 128 / (2 x TP) experts, so the group's G rows (100 at TP 1 > 64, 40 at TP 2
    > 32) take vLLM's BM 64; split by width it holds slices of all 128, G <= 128: BM 16. Either way a GPU's share is
    the group's padded rows / D (kvsim counts a row at the width / TP)."""
    split = FusedExperts(QWEN, 2, tp, 2, expert_parallel=False)
    whole = FusedExperts(QWEN, 2, tp, 2)
    assert split.rows(group) == pytest.approx(_padded_rows(group, 8, 128, 16) / 2, rel=1e-9)
    assert whole.rows(group) == pytest.approx(_padded_rows(group, 8, 128, 64) / 2, rel=1e-9)


def test_the_experts_activations_are_every_pairs_at_a_slice_of_the_width():
    """D = 2, TP = 2, G = 10 tokens, bf16: split by width (I' = 768 / 4 = 192) every GPU reads each token's hidden
    state, writes each of its 8 pairs' gate and up (2 x 192), reads their product (192) and writes the pair's output
    (2,048): 2,048 + 8 x (3 x 192 + 2,048) = 23,040 values a token. Expert parallel (whole width, its quarter of the
    pairs read): 2,048 + 8 x (2 x 768 + 2,048) + 8 x 768 / 4 = 32,256."""
    assert FusedExperts(QWEN, 2, 2, 2, expert_parallel=False).activation_bytes(10) == 10 * 23_040 * 2
    assert FusedExperts(QWEN, 2, 2, 2).activation_bytes(10) == 10 * 32_256 * 2


def test_a_gpu_reads_a_slice_of_every_touched_expert_the_same_bytes():
    """D = 2, TP = 2, the group routes G = 2 tokens: 128 x (1 - (15/16)^2) = 15.5 experts touched; each GPU reads 1/4 of each
    one's 3 x 2,048 x 768 bf16 weights, as many bytes as its 15.5 / 4 whole experts expert parallel."""
    config = load_config(None, sets=SETS + ["serving.tensor_parallel_size=2", "serving.enable_expert_parallel=false"])
    roofline = gpu_compute_model(config)
    assert roofline.moe_weight_bytes(2) - roofline.moe_fixed_bytes == pytest.approx(15.5 / 4 * 3 * 2048 * 768 * 2)


def test_the_profile_runs_moe_workspace_is_a_slice_wide():
    """vLLM's fused-experts workspaces (``TritonExperts.workspace_shapes``) at D = 2, TP = 2 split by width: the
    residual, the input and the output (3 x 2,048) and top 8 x (max(2 x 192, 2,048) + 192) = 24,064 values a token,
    above the attention's 2 x 2,048 + (16 + 2 x 2) x 128 + 16 x 128 = 8,704 (expert parallel: 28,672). The weights per
    GPU are the same in both layouts (E / 4 experts' worth)."""
    assert forward_peak(QWEN, 512, 2, 2, 2, expert_parallel=False) == 512 * 24_064 * 2
    assert forward_peak(QWEN, 512, 2, 2, 2) == 512 * 28_672 * 2
    base = SETS + ["serving.tensor_parallel_size=2"]
    split = memory_budget(load_config(None, sets=base + ["serving.enable_expert_parallel=false"]))
    whole = memory_budget(load_config(None, sets=base))
    assert split.weights == whole.weights
    # the CUDA graphs' pool holds the largest capture's (512 tokens on an H100) forward peak
    assert whole.cudagraph - split.cudagraph == 512 * (28_672 - 24_064) * 2


def test_an_idle_rank_and_its_peer_count_half_the_prompts_expert_pairs_at_half_the_width():
    """D = 2, TP 1, not expert parallel: a 40-token prompt on rank 0, rank 1 idle; both run the CUDA graph of 40, so
    the MoE layers route G = 80 tokens, priced as rows padded over all 128 experts (BM 16: 80 <= 128). Model FLOPs are
    the prompt's 40 x 8 (token, expert) pairs of 2 x 3 x 2,048 x 768: every GPU computes each pair at half the width,
    half of them each; the busy rank adds its own tokens' projections and router, attention and one LM-head row."""
    config = load_config(None, sets=SETS + ["cluster.router=round-robin", "serving.enable_expert_parallel=false"])
    result, _ = run_serving(make_trace([0.0], [40], [1]), config, "single")
    busy, idle = result.metrics["instances"]["each"]
    layers, hidden, vocab = 48, 2048, 151_936
    own = 2 * (hidden * 32 * 128 + 2 * hidden * 4 * 128 + 32 * 128 * hidden + hidden * 128)  # q, k, v, o, router
    experts = 40 * 8 * 2 * 3 * hidden * 768 / 2
    attention = 4 * 32 * 128 * 40 * 41 / 2  # causal (query, key) pairs
    head = 2 * vocab * hidden
    assert busy["flops"] == pytest.approx(layers * (40 * own + experts + attention) + head, rel=1e-9)
    assert idle["flops"] == pytest.approx(layers * experts, rel=1e-9)
    assert work_counter(config).roofline.fused.expert_parallel is False


def test_the_key_is_refused_where_nothing_reads_it(tmp_path):
    """Exit 2 with one message: at D = 1 (a dense model cannot have D > 1), where an expert's width does not split
    over D x TP (768 over 5 GPUs), and with an LLMServingSim bundle (its moe.csv is timed expert parallel)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "main.py", "--preset", "smoke", "--set", "serving.enable_expert_parallel=false"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "serving.enable_expert_parallel" in run.stderr and "Traceback" not in run.stderr
    with pytest.raises(ConfigError, match="does not divide"):
        load_config(None, sets=["model=qwen3-30b-a3b", "serving.num_instances=5", "serving.data_parallel_size=5",
                                "serving.enable_expert_parallel=false"])
    load_config(None, sets=["model=qwen3-30b-a3b", "serving.num_instances=5", "serving.data_parallel_size=5"])
    bundle = _bundle(tmp_path, 1, 1)
    config = load_config(None, sets=["model=qwen3-30b-a3b", "compute.backend=profiled", f"compute.profile={bundle}",
                                     "serving.data_parallel_size=2", "serving.enable_expert_parallel=false"])
    with pytest.raises(ConfigError, match="expert parallel"):
        gpu_compute_model(config)


def test_the_experts_activation_kernel_takes_every_pair_at_a_slice_of_the_width():
    """The routed experts' SiluAndMul on each of the group's tokens' 8 pairs reads gate and up and writes their
    product: 3 x 8 x width x 2 B, the width 768 whole (expert parallel) or 768 / 4 (D = 2, TP = 2, split by width):
    27,648 B a group token less."""
    from sim.serving.elementwise import elementwise_cost

    split = elementwise_cost(QWEN, 2, 2, data_parallel_size=2, expert_parallel=False)
    whole = elementwise_cost(QWEN, 2, 2, data_parallel_size=2)
    assert whole.group.bytes_per_token - split.group.bytes_per_token == pytest.approx(3 * 8 * (768 - 192) * 2)
    assert split.bytes_per_token == whole.bytes_per_token  # the rank's own tokens' kernels do not change
