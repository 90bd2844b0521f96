"""A data-parallel group's MoE exchange at TP > 1, as vLLM runs it with expert parallelism: MoE sequence parallelism.

vLLM (all2all.py ``AgRsAll2AllManager._get_comm_group``; config/parallel.py ``use_sequence_parallel_moe``: expert
parallel, TP > 1, D > 1): each TP rank keeps ceil(T / TP) of its instance's T tokens (``sequence_parallel_chunk``
pads T with zero rows to a multiple of TP), the all-gather and reduce-scatter run over the expert-parallel group of
all D × TP GPUs with those shares (forward_context.py ``DPMetadata.sp_local_sizes``: [ceil(T_d / TP)] × TP for each
rank d), and the model all-gathers the MoE output over its TP ranks afterwards (``tensor_model_parallel_all_gather``
in qwen3_moe.py's and deepseek_v2.py's MoE blocks) in place of the all-reduce. Figures by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.collectives import RingCollectives, TensorParallelComm
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model, gpu_compute_model
from sim.serving.cudagraph import CudagraphSizes, PaddedCompute
from sim.serving.data_parallel import LockstepGroup
from sim.serving.engine import Engine
from sim.serving.moe import DataParallelShare, sequence_parallel_rows
from sim.serving.run import run_serving
from tests.test_serving import make_trace


def test_a_ranks_tokens_are_padded_to_a_multiple_of_tp():
    assert [sequence_parallel_rows(t, 2) for t in (1, 3, 4)] == [2, 4, 4]
    assert [sequence_parallel_rows(t, 8) for t in (1, 8, 9)] == [8, 8, 16]
    assert sequence_parallel_rows(5, 1) == 5  # TP 1: no sequence parallelism


def test_the_exchange_carries_each_ranks_padded_share():
    """TP 4, D 2, one MoE layer of 16-byte states, a 1 GB/s ring without latency; this rank 5 tokens, its peer 1:
    each TP rank sends ceil(5 / 4) = 2 and ceil(1 / 4) = 1 rows, so every GPU gathers 4 x 2 + 4 x 1 = 12 rows."""
    group = LockstepGroup(Engine(), 2, CudagraphSizes(), sequence_parallel=4)
    assert group.shares([5, 1]) == [DataParallelShare(5, 6, 12, 6), DataParallelShare(1, 6, 12, 6)]
    # a dummy step's one token (None: nothing of its own) is exchanged and routed as padding, no token of the model's
    assert group.shares([5, None]) == [DataParallelShare(5, 6, 12, 5), DataParallelShare(1, 6, 12, 5)]
    # a member not built yet takes a 1-token dummy step: 4 rows too, and padding (5 unpadded tokens in the group)
    dummies = LockstepGroup(Engine(), 3, CudagraphSizes(), 4).shares([5])
    assert dummies == [DataParallelShare(5, 7, 16, 5), DataParallelShare(1, 7, 16, 5), DataParallelShare(1, 7, 16, 5)]
    assert LockstepGroup(Engine(), 2, CudagraphSizes(), 1).shares([5, 1])[0] == DataParallelShare(5, 6, 6, 6)

    ring = RingCollectives(bandwidth=1e9, step_latency=0.0)
    comm = TensorParallelComm(ring, 4, 1, 16, 32, moe_layers=1, data_parallel_size=2)
    share = DataParallelShare(5, 6, 12, 6)
    # the attention's and the embedding's all-reduces of 5 x 16 B over 4 GPUs: 6 steps of 20 B each; the logits'
    # all-gather of 32 B: 3 steps of 8 B; the exchange over 8 GPUs: an all-gather and a reduce-scatter of 12 x 16 B,
    # 7 steps of 24 B each; the TP ranks' all-gather of 8 x 16 B: 3 steps of 32 B
    assert comm.step_time(5, 1, share) == pytest.approx((2 * 6 * 20 + 3 * 8 + 2 * 7 * 24 + 3 * 32) * 1e-9)


def test_a_padded_graph_step_exchanges_its_tp_padded_share():
    """A share-less step of 3 tokens runs the graph of 4; at TP 8 each TP rank sends ceil(4 / 8) = 1 row: with D 2,
    16 rows exchanged (8 routed)."""
    seen = []

    class Recorder:
        name, sliding_window = "recorder", 0

        def step_time(self, shape, share=None):
            seen.append(share)
            return 0.0

    PaddedCompute(Recorder(), CudagraphSizes((1, 2, 4, 8)), 2, 8).step_time(StepShape.decode_batch(np.array([9] * 3)))
    assert seen == [DataParallelShare(4, 8, 16, 6)]


@pytest.mark.parametrize("expert_parallel, exchanged, other", [(True, 104, 102), (False, 102, 104)])
def test_a_runs_group_exchanges_its_tokens(expert_parallel, exchanged, other):
    """Two instances of TP 2 in one group, eager: one prompt of 101 tokens at instance 0, a 1-token dummy at 1; its
    TTFT is its one step with G = 102 tokens routed, exchanged as 102 + 2 (sequence-parallel padding to a multiple of
    TP) when expert parallel, as 102 over the DP ranks when not (tests/test_expert_parallel_off.py)."""
    config = load_config(None, sets=["model=qwen3-30b-a3b", "serving.num_instances=2", "serving.data_parallel_size=2",
                                     "serving.tensor_parallel_size=2", "serving.enforce_eager=true",
                                     "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0",
                                     f"serving.enable_expert_parallel={str(expert_parallel).lower()}"])
    assert gpu_compute_model(config).comm.expert_parallel is expert_parallel
    shape = StepShape()
    shape.add_prefill(101, 0)
    expected = compute_model(config).step_time(shape, DataParallelShare(101, 102, exchanged, 101))
    assert expected != compute_model(config).step_time(shape, DataParallelShare(101, 102, other, 101))
    _, requests = run_serving(make_trace([0.0], [101], [1]), config, "single")
    assert requests.ttft == pytest.approx([expected], rel=1e-12)
