"""NCCL's ring protocols as its tuner prices them: what a ring collective of a given size costs.

NCCL runs each collective with the algorithm and protocol its tuner predicts fastest (src/graph/tuning.cc,
``ncclTopoTuneModel`` and ``ncclTopoGetAlgoTime``, github.com/NVIDIA/nccl, master of 2026). On one node's ring a
protocol costs a fixed latency, a latency per ring step over the link and the bytes at its share of the ring's bus
bandwidth:
- LL (8-byte stores with a flag: the lowest latency, half the bandwidth, at most ``llMaxBws``);
- LL128 (128-byte lines: 0.92 of the bandwidth; only where NVLink joins the GPUs, ``typeIntra <= PATH_NVB``);
- Simple (the full bandwidth, the highest latency): its per-step latency is the link's own ``step_latency``
  (profiles/gpus.yaml, which ``hardware.gpu_link_latency_us`` overrides).
Small all-reduces run LL: over PCIe at TP 4, 6.6 + 6 x 1.0 us against 34 us of Simple steps; NVIDIA AIConfigurator's
measurement of vLLM's all-reduce on L40S and RTX PRO 6000 servers (TP 4 and 8, 1 - 16 KiB: 13-15 and 25-28 us) is
within 20% of the LL figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

US = 1e-6
GB = 1e9


@dataclass(frozen=True)
class NcclProtocol:
    """One protocol of NCCL's ring on one node."""

    name: str
    base_latency: float  # s, baseLatencies[Ring][protocol]
    step_latency: float | None  # s per ring step, hwLatencies[NVLINK or PCI][Ring][protocol]; None: the link's own
    bandwidth_share: float  # of the ring's bus bandwidth (the link's)
    bandwidth_cap: float = math.inf  # B/s

    def time(self, steps: int, share: float, link_bandwidth: float, link_step_latency: float) -> float:
        """``steps`` ring steps each moving ``share`` bytes."""
        step = link_step_latency if self.step_latency is None else self.step_latency
        bandwidth = min(self.bandwidth_cap, self.bandwidth_share * link_bandwidth)
        return self.base_latency + steps * (step + share / bandwidth)


# llMaxBws[compCapIndex][0], one node: Volta, Ampere (8.x), Hopper (9.x), Blackwell (10.x and up) in GB/s
LL_MAX_BANDWIDTH = {7: 39.0, 8: 87.7, 9: 141.0, 10: 282.0}


def nccl_protocols(nvlink: bool, compute_major: int) -> tuple[NcclProtocol, ...]:
    """NCCL's ring protocols on one node whose GPUs ``nvlink`` joins (else PCIe), of compute capability
    ``compute_major``.x: tuning.cc's baseLatencies (Ring: LL 6.6, LL128 14.0, Simple 8.4 us) and hwLatencies (NVLink
    ring LL 0.6, LL128 1.9 us; PCI ring LL 1.0 us), LL's bandwidth 0.5 of the ring's up to llMaxBws, LL128's 0.92."""
    cap = LL_MAX_BANDWIDTH[min(max(compute_major, 7), 10)] * GB
    ll = NcclProtocol("LL", 6.6 * US, (0.6 if nvlink else 1.0) * US, 0.5, cap)
    simple = NcclProtocol("Simple", 8.4 * US, None, 1.0)
    if not nvlink:
        return (ll, simple)
    return (ll, NcclProtocol("LL128", 14.0 * US, 1.9 * US, 0.92), simple)
