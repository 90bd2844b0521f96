"""NCCL's ring protocols (sim.serving.nccl_protocols) and vLLM's all-reduce between two PCIe GPUs with peer access
(sim.serving.collectives.PCIE_PAIR_ALL_REDUCE), against NVIDIA AIConfigurator's measurements of vLLM on L40S and RTX
PRO 6000 servers."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.collectives import RingCollectives
from sim.serving.compute_backend import compute_model
from sim.serving.nccl_protocols import nccl_protocols
from sim.specs import gpu_spec

KIB, MIB = 1 << 10, 1 << 20
# AIConfigurator's measurement of vLLM's TP all-reduce (tensor_model_parallel_all_reduce, CUDA graphs;
# github.com/ai-dynamo/aiconfigurator, systems/data/<gpu>/comm/vllm/<version>/custom_allreduce_perf.parquet, bf16
# elements x 2 bytes), microseconds by TP group at 256 B x 2^i, i = 0..15 (to 8 MiB). RTX PRO 6000 Blackwell Server
# Edition, vLLM 0.24; L40S, vLLM 0.14 (the rows of its 0.22 folder).
SIZES = [256 << i for i in range(16)]
RTXPRO_US = {2: [4.3, 4.1, 4.1, 4.2, 4.5, 4.5, 5.1, 5.4, 6.2, 8.2, 11.1, 17.6, 30.1, 55.7, 106.0, 244.5],
             4: [12.6, 12.7, 12.8, 12.8, 12.7, 13.7, 14.9, 15.8, 16.9, 25.0, 57.3, 76.5, 87.7, 145.8, 246.9, 462.0],
             8: [23.6, 24.8, 25.0, 25.5, 26.0, 26.6, 27.5, 29.8, 31.2, 49.4, 84.3, 156.3, 133.5, 222.6, 346.9, 674.6]}
L40S_US = {2: [5.4, 5.2, 5.3, 5.3, 5.6, 5.7, 6.2, 7.4, 9.9, 11.0, 18.1, 32.1, 60.2, 116.8, 229.4, 449.9],
           4: [13.3, 13.5, 13.5, 13.7, 14.1, 14.3, 17.5, 26.0, 36.9, 59.6, 115.6, 219.0, 360.6, 840.8, 1648.7, 3321.8],
           8: [25.0, 25.6, 25.5, 26.1, 26.7, 27.6, 27.4, 48.4, 72.9, 108.3, 207.1, 444.5, 582.6, 2079.9, 4014.5,
               8167.5]}


def _collectives(gpu: str, tp: int, *sets: str):
    config = load_config(None, sets=[f"hardware.gpu={gpu}", f"serving.tensor_parallel_size={tp}", *sets])
    return compute_model(config).comm.collectives


def test_nccl_takes_its_fastest_protocol_by_hand():
    """NCCL's tuner (tuning.cc) on one node's ring: LL for small all-reduces (6.6 us + a step of 1.0 us over PCIe,
    half the bandwidth), Simple for large ones (8.4 us + the link's own 5.7 us a step, all of it); over NVLink LL128
    (14 us + 1.9 us a step at 0.92 of the bandwidth) between them."""
    pcie = RingCollectives(24e9, 5.7e-6, protocols=nccl_protocols(nvlink=False, compute_major=8))
    small, large = 4 * KIB, 64 * MIB
    assert pcie.all_reduce(small, 4) == pytest.approx(6.6e-6 + 6 * (1.0e-6 + small / 4 / 12e9), rel=1e-12)
    assert pcie.all_reduce(large, 4) == pytest.approx(8.4e-6 + 6 * (5.7e-6 + large / 4 / 24e9), rel=1e-12)
    assert pcie.all_gather(small, 4) == pytest.approx(6.6e-6 + 3 * (1.0e-6 + small / 4 / 12e9), rel=1e-12)
    nvlink = RingCollectives(370.8e9, 3.4e-6, protocols=nccl_protocols(nvlink=True, compute_major=9))
    mid = 4 * MIB  # LL's bandwidth is capped at Hopper's 141 GB/s (llMaxBws)
    ll = 6.6e-6 + 14 * (0.6e-6 + mid / 8 / 141e9)
    ll128 = 14e-6 + 14 * (1.9e-6 + mid / 8 / (0.92 * 370.8e9))
    simple = 8.4e-6 + 14 * (3.4e-6 + mid / 8 / 370.8e9)
    assert ll128 < min(ll, simple) and nvlink.all_reduce(mid, 8) == pytest.approx(ll128, rel=1e-12)
    assert nccl_protocols(nvlink=False, compute_major=9)[0].bandwidth_cap == 141e9
    assert [p.name for p in nccl_protocols(nvlink=False, compute_major=12)] == ["LL", "Simple"]  # no LL128 on PCIe


@pytest.mark.parametrize("gpu, measured", [("rtxpro6000", RTXPRO_US), ("l40s", L40S_US)])
def test_small_nccl_all_reduces_over_pcie_are_priced_as_measured(gpu, measured):
    """Past a pair, PCIe groups all-reduce with NCCL: 256 B - 16 KiB at TP 4 and 8 within -22% / +10% of the
    measurement (LL's 12.6 and 20.6 us against 13-15 and 24-28), where the Simple ring alone (34 and 80 us) was
    2.0-3.4x slow. Larger sizes depend on the server's PCIe tree (L40S's TP 8 reaches 2 GB/s): not modelled."""
    for tp in (4, 8):
        collectives = _collectives(gpu, tp)
        for size, us in zip(SIZES[:7], measured[tp][:7], strict=False):
            ratio = collectives.all_reduce(size, tp) * 1e6 / us
            assert 0.78 < ratio < 1.1, (tp, size, ratio)
            bare = RingCollectives(collectives.bandwidth, collectives.step_latency).all_reduce(size, tp)
            assert bare * 1e6 / us > 2


def test_two_pcie_gpus_with_peer_access_run_vllms_custom_all_reduce():
    """Fitted to the RTX PRO 6000 pair (4.3 us + peer reads at 0.831 of the link: median error 3.2%, -7% / +6%,
    256 B - 4 MiB, below vLLM's 8 MiB limit); held out, the L40S pair over PCIe Gen 4 (median 16%, -23% / -1%). NCCL
    alone (its LL protocol, 8.6 us) is 1.6-2x slow on the smallest."""
    for gpu, measured, median, low, high in (("rtxpro6000", RTXPRO_US, 0.04, 0.92, 1.07),
                                             ("l40s", L40S_US, 0.17, 0.76, 1.0)):
        pair = _collectives(gpu, 2)
        ratios = np.array([pair.all_reduce(size, 2) * 1e6 / us
                           for size, us in zip(SIZES[:-1], measured[2][:-1], strict=True)])
        assert np.median(np.abs(ratios - 1)) < median and low < ratios.min() and ratios.max() < high, gpu
        nccl = _collectives(gpu, 2, "serving.all_reduce=nccl")
        assert nccl.all_reduce(SIZES[0], 2) * 1e6 / measured[2][0] > 1.5


def test_geforce_cards_have_no_peer_access(tmp_path):
    """GeForce drivers disable peer-to-peer: their pairs all-reduce with NCCL (gpus.yaml peer_access: false); a GPU
    spec file may say either, and nothing else."""
    assert not gpu_spec("rtx4090").link.peer_access and gpu_spec("rtxpro6000").link.peer_access
    assert _collectives("rtx4090", 2).kernel is None and _collectives("l40s", 2).kernel is not None
    spec = ("dense_bf16_tflops: 100\nmemory_gib: 24\nmemory_bandwidth_gbps: 1000\nlink:\n  kind: pcie4-x16\n"
            "  bandwidth_gbps: 24\n  step_latency_us: 5.7\n  peer_access: {value}\n")
    (tmp_path / "card.yaml").write_text(spec.format(value="false"))
    assert not gpu_spec(str(tmp_path / "card.yaml")).link.peer_access
    (tmp_path / "bad.yaml").write_text(spec.format(value="yes please"))
    with pytest.raises(ConfigError, match="peer_access must be true or false"):
        gpu_spec(str(tmp_path / "bad.yaml"))
