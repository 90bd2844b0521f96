"""Collective communication between the GPUs of a tensor-parallel group, behind one interface.

``CollectiveModel`` prices the three collectives a serving step can need:

- ``all_reduce(nbytes, ranks)``: every rank holds ``nbytes`` and ends with their sum;
- ``all_gather(nbytes, ranks)``: every rank holds ``nbytes / ranks`` and ends with all ``nbytes``;
- ``reduce_scatter(nbytes, ranks)``: every rank holds ``nbytes`` and ends with its ``nbytes / ranks`` of their sum;
- ``send_recv(nbytes)``: one rank sends ``nbytes`` to another (pipeline-parallel stages).

``RingCollectives`` is NCCL's ring algorithm over the GPU's own link: an all-reduce is
2(N−1) steps (reduce-scatter, then all-gather), an all-gather or a reduce-scatter N−1 steps and a send one
step; each step moves ``nbytes / N`` bytes (a send: all of them) at the link's per-direction
bandwidth plus the link's per-step latency, in the fastest of NCCL's protocols (``sim.serving.nccl_protocols``:
each its own fixed and per-step latency and share of the bandwidth). Where the group's GPUs are all joined by NVLink
(an NVSwitch board, or the two GPUs of a bridge), or are two PCIe cards with peer access, vLLM's TP group
all-reduces with its own one-kernel all-reduces over peer memory instead, where they are faster
(``RingCollectives.kernel_all_reduce``), and past their limits, on Hopper's and Blackwell's switches, over NVLink
multicast (``multicast_all_reduce``), where NCCL too has its NVLS algorithm beside the ring (``nccl_all_reduce``);
``serving.all_reduce=nccl`` leaves NCCL alone.
``MeasuredCollectives`` (``sim.serving.measured_collectives``) interpolates measured timings (Vidur's
``all_reduce.csv``/``send_recv.csv``, or the NCCL samples in an LLMServingSim ``hardware.yaml``) and uses the analytic
model for what was not measured.

``TensorParallelComm`` counts the collectives vLLM runs in one forward step of a TP group:
one all-reduce of the hidden states after each attention block and each MLP
(``RowParallelLinear(reduce_results=True)`` for ``o_proj`` and ``down_proj``), one after the
vocab-parallel embedding (``VocabParallelEmbedding.forward``), and an all-gather of the
logits (``LogitsProcessor._gather_logits``: all-gather under vLLM v1). With data parallelism over a
mixture of experts (``serving.data_parallel_size`` D > 1), each MoE layer's all-reduce becomes the
exchange of vLLM's default ``allgather_reducescatter`` all-to-all backend over the group's D × TP
GPUs (its expert-parallel group; ``AgRsAll2AllManager._get_comm_group``, distributed/device_communicators/all2all.py):
an all-gather of the group's hidden states (an FP8 checkpoint's in FP8 with their scales, quantized before the
gather) with their top-k weights and ids, then a reduce-scatter of the experts' outputs in the model dtype, each TP
rank sending ceil(T / TP) of its instance's T tokens (MoE sequence parallelism, D > 1 and TP > 1:
``sequence_parallel_chunk``, forward_context.py ``DPMetadata.sp_local_sizes``), and after it an all-gather of the
MoE output over the TP ranks (``tensor_model_parallel_all_gather`` in the models' MoE blocks, qwen3_moe.py and
deepseek_v2.py alike); see ``sim.serving.moe``. That is the expert-parallel group (``serving.enable_expert_parallel``);
without it the same all-gather and reduce-scatter run over the D ranks of each TP index, each carrying all T tokens,
and the MoE layer's TP all-reduce stays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from sim.serving.moe import DataParallelShare, sequence_parallel_rows, sequence_parallel_size
from sim.serving.nccl_protocols import NcclProtocol
from sim.specs import LinkSpec

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "send_recv")
# vLLM's all-reduces per decoder layer: after attention (o_proj) and after the MLP (down_proj), both
# RowParallelLinear(reduce_results=True) in vllm/model_executor/models/llama.py (and qwen3.py)
ALL_REDUCES_PER_LAYER = 2


class CollectiveModel(Protocol):
    name: str

    def all_reduce(self, nbytes: float, ranks: int) -> float: ...

    def all_gather(self, nbytes: float, ranks: int) -> float: ...

    def reduce_scatter(self, nbytes: float, ranks: int) -> float: ...

    def send_recv(self, nbytes: float) -> float: ...


# vLLM's one-kernel all-reduces over peer memory, as vLLM 0.33 dispatches a TP group's all-reduce
# (vllm/distributed/device_communicators/cuda_communicator.py: FlashInfer's TensorRT-LLM/MNNVL kernels, then its
# custom all-reduce, then torch symmetric memory, then NCCL): each is one kernel that reads the peers' buffers over
# NVLink. One-shot: every rank reads all N−1 peers' whole inputs and sums them; two-shot: a reduce-scatter and an
# all-gather through peer memory, 2(N−1)/N of the input read, behind one more barrier. They run on GPUs all
# joined by NVLink (custom_all_reduce.py: world size 2, or fully connected) in groups of 2, 4, 6 or 8
# (CustomAllreduce._SUPPORTED_WORLD_SIZES, one node) and are chosen where they beat NCCL (the size limits in
# all_reduce_utils.py come from such benchmarks), so kvsim takes the faster of the kernel and NCCL. Constants are in
# units of the link's NCCL hop latency and bandwidth, so a link's own figures carry over.


@dataclass(frozen=True)
class PeerKernel:
    """The one-kernel all-reduce vLLM runs first over a link's peer memory: its cost, and the groups it serves."""

    latency_hops: float  # launch and the barrier on flags in peer memory
    barrier_hops: float  # the two-shot kernel's barrier between its halves
    bandwidth_share: float  # peer reads a second, as a share of the link's bandwidth
    group_sizes: tuple[int, ...]


KERNEL_GROUP_SIZES = (2, 4, 6, 8)
# Hopper and Blackwell: vLLM's own all-reduce as NVIDIA's AIConfigurator measured it (github.com/ai-dynamo/
# aiconfigurator, systems/data/<gpu>/comm/vllm/0.24.0/custom_allreduce_perf.parquet: tensor_model_parallel_all_reduce
# replayed in CUDA graphs, TP 2/4/8, 256 B - 4 MiB), the newest engine measured. vLLM 0.33 runs FlashInfer's MNNVL
# kernel first on NVSwitch boards (flashinfer_all_reduce.py: "MNNVL decodes faster than TRTLLM on single-node NVSwitch
# systems", its TensorRT-LLM kernel elsewhere), chosen over the custom all-reduce where faster, so these are its
# upper bound. H100 (45 points, median error 3.9%, -16% / +10%): 4.5 us + peer reads at 285 GB/s; held out, the H200
# rows: median 3.0%, -8% / +20%. (The TensorRT-LLM kernel's H100 table of Jan 2025, SGLang PR #2904, which kvsim
# took before, is 2.4x slower at 1 MiB, TP 2.)
HOPPER_ALL_REDUCE = PeerKernel(1.337, 1.09, 0.770, KERNEL_GROUP_SIZES)
# B200 (45 points, median 5.7%, -42% / +67%: its dispatch changes kernel near 256 KiB - 1 MiB): 7.1 us + peer reads at
# 237 GB/s; held out, the B300 rows (the same NVLink 5 switch): median 5.3%, -43% / +67%
BLACKWELL_ALL_REDUCE = PeerKernel(2.10, 1.707, 0.329, KERNEL_GROUP_SIZES)
# Ampere: no FlashInfer kernel (FI_ALLREDUCE_FUSION_MAX_SIZE_MB has no sm 8.x), so vLLM's custom all-reduce, below
# its 8 MiB; fitted to vLLM 0.20's all-reduce measured on A100s at TP 2/4/8 and 256 B - 4 MiB, CUDA graphs, by
# NVIDIA's AIConfigurator (github.com/ai-dynamo/aiconfigurator, campaign_checkpoints/a100_sxm/
# custom_allreduce_perf.txt; median error 6%, -15% to +12%): 5.3 us + peer reads at 198 GB/s on an A100 (held out:
# the same file's H100 rows run 13% slower than this fit on H100 figures, on average).
CUSTOM_ALL_REDUCE = PeerKernel(1.57, 2.04, 0.826, KERNEL_GROUP_SIZES)
# Two PCIe GPUs with peer access: vLLM's custom all-reduce (custom_all_reduce.py runs on PCIe for a pair only, "not
# supported on more than two PCIe-only GPUs", below its 8 MiB), fitted to AIConfigurator's vLLM 0.24 measurement on
# RTX PRO 6000 Blackwell Server Edition GPUs (TP 2, 256 B - 4 MiB, CUDA graphs: median error 3.2%, -7% / +6%): 4.3 us
# + peer reads at 40 GB/s over PCIe Gen 5; held out, its L40S rows (vLLM 0.14) over Gen 4: median 16%, -23% / -1%
PCIE_PAIR_ALL_REDUCE = PeerKernel(0.762, 1.0, 0.831, (2,))
PEER_KERNELS = {
    "nvlink3": CUSTOM_ALL_REDUCE, "nvlink3-bridge": replace(CUSTOM_ALL_REDUCE, group_sizes=(2,)),
    "nvlink4": HOPPER_ALL_REDUCE, "nvlink4-bridge": replace(HOPPER_ALL_REDUCE, group_sizes=(2,)),
    "nvlink5": BLACKWELL_ALL_REDUCE,
}  # NVLink kinds: nvlink3/4/5 join all of an NVSwitch board's GPUs, a *-bridge two


def peer_kernel(link: LinkSpec) -> PeerKernel | None:
    """vLLM's one-kernel all-reduce over ``link`` where its GPUs reach each other's memory: NVLink's, or a PCIe
    pair's."""
    if not link.peer_access:
        return None
    return PCIE_PAIR_ALL_REDUCE if link.kind.startswith("pcie") else PEER_KERNELS.get(link.kind)

# Past those kernels' size limits, vLLM 0.33 all-reduces over NVLink multicast on the NVSwitch boards that have it
# (NVLink SHARP: Hopper's and Blackwell's switches reduce and broadcast in the fabric): torch symmetric memory's
# multimem all-reduce (device_communicators/symm_mem.py, _WORLD_SIZES_MULTIMEM), and at TP 8 on Blackwell
# FlashInfer's MNNVL kernel (its single-node default, to 128 MiB), a multicast kernel too, priced alike (vLLM PR
# #37756 measured it at least as fast as multimem on B300s: 36 against 43 us at 8 MiB). Each GPU sends and receives
# its whole input once, whatever the group's size, so a size costs latency + S / rate; as with the kernels above,
# vLLM's limits keep them where they beat NCCL, so kvsim takes the faster of the two; NCCL takes what is larger still.
# The rate is the switch generation's, not a fixed share of the link's (Blackwell's links are twice Hopper's, its
# multicast all-reduce 1.25 times as fast), so each generation has its own fit, in units of its link's figures.
MIB = 1 << 20


@dataclass(frozen=True)
class Multicast:
    """An NVSwitch generation's multicast all-reduces: torch's multimem kernel (its cost, and the sizes vLLM gives
    it) and NCCL's NVLS algorithm, which NCCL takes over its ring where its tuner predicts it faster."""

    latency_hops: float  # launch and the switch's round trip, in the link's hop latencies
    bandwidth_share: float  # input bytes a second, as a share of the link's bandwidth
    # (TP group, above, up to): the all-reduces vLLM runs over multicast, as cuda_communicator.all_reduce tries its
    # kernels (FlashInfer, custom all-reduce, symmetric memory, NCCL) with the limits of all_reduce_utils.py
    # (CUSTOM_ALL_REDUCE_MAX_SIZES, capped at CustomAllreduce's 8 MiB; SYMM_MEM_ALL_REDUCE_MAX_SIZES;
    # FI_MNNVL_ALLREDUCE_MAX_SIZE_MB) and allreduce_rms_fusion.py's FI_ALLREDUCE_FUSION_MAX_SIZE_MB
    ranges: tuple[tuple[int, int, int], ...]
    nvls_latency_hops: float  # NCCL's NVLS all-reduce: its pipeline's fill, in hop latencies
    nvls_bandwidth_share: float  # and its input bytes a second, whatever the group (the switch reduces)


MULTICAST = {
    # sm 9.0 (H100, H200): vLLM's H100 benchmark of the multimem kernel (PR #42324,
    # github.com/vllm-project/vllm/pull/42324, its last SM 9.0 table, 512 KiB - 64 MiB: median error 1%, worst 4%;
    # PR #24111's earlier H100 run at TP 4 and 6, 0.5 - 4 MiB, held out, is 7-31% slower): 8.6 us + S at 217 GB/s.
    # NCCL's NVLS, past vLLM's 64 MiB at TP 8: 64.6 us + S at 266 GB/s, fitted to the same table's NCCL column (64 and
    # 128 MiB) and to vLLM 0.20's own all-reduce measured on H100s by NVIDIA's AIConfigurator
    # (github.com/ai-dynamo/aiconfigurator, campaign_checkpoints/h100_sxm/custom_allreduce_perf.txt, TP 8, 128 MiB -
    # 1 GiB): within 2.2% of all six (the ring: 15-27% slow); NCCL's developers quote ~275 GB/s (nccl-tests issue #212)
    "nvlink4": Multicast(2.54, 0.585, ((4, 8 * MIB, 32 * MIB), (6, MIB // 2, 64 * MIB), (8, MIB // 2, 64 * MIB)),
                         19.0, 0.7175),
    # sm 10.0 (B200), measured on its sibling sm 10.3 (B300, the same NVLink 5 switch): vLLM PR #37756's first table
    # (github.com/vllm-project/vllm/pull/37756; TP 6 by its crossovers: multimem beats NCCL to 32 MiB, the PR's TP 6
    # limit, and two-shot at every size, as the PR says of TP 6), 1 - 128 MiB: median error 4%, worst 6%:
    # 13.8 us + S at 272 GB/s. NCCL's NVLS: 88 us + S at 429 GB/s, fitted to AIConfigurator's B200 measurement of vLLM
    # 0.20 (campaign_checkpoints/b200_sxm, TP 8, 256 MiB - 1 GiB; within 0.3%), where the ring is within 2.3% too
    "nvlink5": Multicast(4.07, 0.376, ((6, MIB, 128 * MIB), (8, MIB, 128 * MIB)), 25.9, 0.5944),
}


@dataclass(frozen=True)
class RingCollectives:
    """Ring collectives over one link: each step moves a 1/N share at ``bandwidth`` after ``step_latency``, with
    ``protocols`` NCCL's protocols for them (the fastest of each; none: the bare ring); all-reduces of ``kernel``'s
    groups take vLLM's peer-memory kernel where it is faster, and those in ``multicast``'s ranges the switch's multicast
    all-reduce."""

    bandwidth: float  # bytes/s per direction
    step_latency: float  # s per ring step (NCCL's Simple protocol)
    name: str = "ring"
    kernel: PeerKernel | None = None
    multicast: Multicast | None = None
    protocols: tuple[NcclProtocol, ...] = ()

    @classmethod
    def over(cls, link: LinkSpec, kernel: PeerKernel | None = None, multicast: Multicast | None = None,
             protocols: tuple[NcclProtocol, ...] = ()) -> "RingCollectives":
        return cls(link.bandwidth, link.step_latency, kernel=kernel, multicast=multicast, protocols=protocols)

    def _ring(self, steps: int, share: float) -> float:
        """``steps`` ring steps of ``share`` bytes, as NCCL's fastest protocol runs them."""
        if not self.protocols:
            return steps * (self.step_latency + share / self.bandwidth)
        return min(p.time(steps, share, self.bandwidth, self.step_latency) for p in self.protocols)

    def all_reduce(self, nbytes: float, ranks: int) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        nccl = self.nccl_all_reduce(nbytes, ranks)
        for group, above, up_to in self.multicast.ranges if self.multicast else ():
            if group == ranks and above < nbytes <= up_to:
                return min(nccl, self.multicast_all_reduce(nbytes))
        if self.kernel is None or ranks not in self.kernel.group_sizes:
            return nccl
        return min(nccl, self.kernel_all_reduce(nbytes, ranks))

    def nccl_all_reduce(self, nbytes: float, ranks: int) -> float:
        """NCCL's: its ring, or over a switch with multicast its NVLS algorithm where that is faster."""
        ring = self._ring(2 * (ranks - 1), nbytes / ranks)
        if self.multicast is None:
            return ring
        fit = self.multicast
        nvls = fit.nvls_latency_hops * self.step_latency + nbytes / (fit.nvls_bandwidth_share * self.bandwidth)
        return min(ring, nvls)

    def multicast_all_reduce(self, nbytes: float) -> float:
        """The switch's multicast all-reduce: every GPU sends and receives its input once, whatever the group."""
        if self.multicast is None:
            raise ValueError("no NVLink multicast over this link")
        fit = self.multicast
        return fit.latency_hops * self.step_latency + nbytes / (fit.bandwidth_share * self.bandwidth)

    def kernel_all_reduce(self, nbytes: float, ranks: int) -> float:
        """vLLM's one-kernel all-reduce over peer memory: the faster of its one-shot and two-shot forms."""
        if self.kernel is None:
            raise ValueError("no vLLM all-reduce kernel over this link")
        fit = self.kernel
        latency = fit.latency_hops * self.step_latency
        reads = fit.bandwidth_share * self.bandwidth
        one_shot = latency + (ranks - 1) * nbytes / reads
        two_shot = latency + fit.barrier_hops * self.step_latency + 2 * (ranks - 1) / ranks * nbytes / reads
        return min(one_shot, two_shot)

    def all_gather(self, nbytes: float, ranks: int) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        return self._ring(ranks - 1, nbytes / ranks)

    def reduce_scatter(self, nbytes: float, ranks: int) -> float:
        return self.all_gather(nbytes, ranks)  # the same N − 1 steps of 1/N each

    def send_recv(self, nbytes: float) -> float:
        """One step of the link (NCCL's point-to-point transfers are not priced by its collectives' tuner)."""
        return self.step_latency + nbytes / self.bandwidth if nbytes > 0 else 0.0


@dataclass
class TensorParallelComm:
    """The collectives of one forward step of a TP group, as vLLM runs them (and a data-parallel group's MoE
    token exchange, when there is one)."""

    collectives: CollectiveModel
    ranks: int
    layers: int
    hidden_bytes: int  # one token's hidden state: hidden_size × dtype bytes
    logit_bytes: int  # one sequence's logits: vocab_size × dtype bytes
    moe_layers: int = 0  # layers whose MLP is a mixture of experts
    data_parallel_size: int = 1  # instances sharing those layers' experts (1: none)
    # one token's bytes the group's MoE dispatch all-gathers (``sim.serving.moe.dispatch_bytes``: its hidden state,
    # an FP8 checkpoint's quantized with its scales, and its top-k weights and ids); None: hidden_bytes. The combine's reduce-scatter returns the
    # experts' output in the model dtype (naive_dp_ep.py finalize), hidden_bytes
    dispatch_bytes: float | None = None
    # the group's experts whole on each GPU (vLLM's enable_expert_parallel: sequence-parallel exchange over D x TP),
    # else split by width (exchange over the D ranks of each TP index, the MoE all-reduce kept)
    expert_parallel: bool = True

    def step_time(self, tokens: int, logit_rows: int, share: DataParallelShare | None = None) -> float:
        """Seconds of communication in a step of ``tokens`` tokens whose ``logit_rows`` sequences go through the LM
        head; ``share``: the data-parallel group's tokens in a lockstep step (None: D ranks of ``tokens`` each)."""
        dp = self.data_parallel_size if self.moe_layers else 1
        if (self.ranks <= 1 and dp <= 1) or tokens <= 0:
            return 0.0
        all_reduces = ALL_REDUCES_PER_LAYER * self.layers + 1  # + the vocab-parallel embedding's
        exchange = 0.0
        if dp > 1:  # each MoE layer exchanges the group's tokens
            own = sequence_parallel_rows(tokens, sequence_parallel_size(self.ranks, self.expert_parallel))
            gathered = dp * own if share is None else share.exchanged_tokens
            sent = self.hidden_bytes if self.dispatch_bytes is None else self.dispatch_bytes
            if self.expert_parallel:  # over the D x TP GPUs; the TP all-gather in place of the MoE all-reduce
                group = dp * self.ranks
                all_reduces -= self.moe_layers
                after = self.collectives.all_gather(own * self.hidden_bytes, self.ranks)
            else:  # over the D ranks of this TP index; the MoE all-reduce stays
                group, after = dp, 0.0
            exchange = self.moe_layers * (self.collectives.all_gather(gathered * sent, group)
                                          + self.collectives.reduce_scatter(gathered * self.hidden_bytes, group)
                                          + after)
        return (all_reduces * self.collectives.all_reduce(tokens * self.hidden_bytes, self.ranks)
                + self.collectives.all_gather(logit_rows * self.logit_bytes, self.ranks) + exchange)
