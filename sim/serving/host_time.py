"""The host's part of a step: the CPU work a GPU cost model leaves out.

A serving engine's step is not only GPU kernels. Before the forward pass the host schedules the batch and prepares
its inputs, after it samples and processes the outputs, at a cost per step and per scheduled sequence. During the
pass the host enqueues the kernels: asynchronously, so the GPU is only slowed when launching a layer's kernels takes
longer than running them (small decode batches at high tensor-parallel degree), and not at all when the step replays
a captured CUDA graph (vLLM captures steps up to ``sim.serving.cudagraph.CudagraphSizes.largest`` tokens; none
under ``serving.enforce_eager``). A synchronous engine waits for a step's tokens before it schedules the next one, so
its host work runs in series with the GPU:

    host_step + host_sequence x sequences + max(GPU time, launch_layer x layers)   (launches: uncaptured steps only)

With ``serving.async_scheduling`` (vLLM's default) the host schedules and prepares step k + 1 while the GPU runs step
k, so a step lasts as long as the busier side: max(GPU time, host_step + host_sequence x sequences + launches).

All three default to 0 (the GPU model alone, as the bundled calibrations were measured); ``tools/fit_roofline.py``
derives them, with the roofline's efficiencies, from a table of measured step latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.serving.compute_model import ComputeModel, WrappedCompute
from sim.serving.moe import DataParallelShare
from sim.serving.step_shape import StepShape

US = 1e-6


@dataclass(frozen=True)
class HostTime:
    """Host costs of a step (seconds), as ``compute.host_step_us``, ``host_sequence_us`` and ``launch_layer_us``."""

    step_s: float = 0.0  # serial: scheduling, input preparation, sampling and output processing of one step
    sequence_s: float = 0.0  # serial, per scheduled sequence
    launch_layer_s: float = 0.0  # enqueueing one layer's kernels of a step run without a CUDA graph (overlapped)
    num_layers: int = 0
    capture_tokens: int = 0  # steps of at most this many tokens replay a CUDA graph (0: none)
    overlapped: bool = False  # serving.async_scheduling: the next step's host work runs during this step's GPU work

    @property
    def is_zero(self) -> bool:
        return self.step_s == 0 and self.sequence_s == 0 and self.launch_layer_s == 0

    def launch_s(self, tokens: int) -> float:
        """Host time to launch a step's kernels: none for a captured graph's replay."""
        return 0.0 if tokens <= self.capture_tokens else self.launch_layer_s * self.num_layers

    def step_time(self, gpu_s, tokens: int, sequences: int, maximum=max):
        """A step of ``gpu_s`` on the GPU (or steps: an array, with ``maximum`` numpy's)."""
        serial = self.step_s + self.sequence_s * sequences
        if self.overlapped:
            return maximum(gpu_s, serial + self.launch_s(tokens))
        return serial + maximum(gpu_s, self.launch_s(tokens))


class HostBoundCompute(WrappedCompute):
    """A compute model whose steps also pay the host's costs (``HostTime``)."""

    def __init__(self, gpu: ComputeModel, host: HostTime):
        super().__init__(gpu)
        self.host = host

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        if shape.tokens == 0:
            return 0.0
        tokens = shape.tokens if share is None else share.tokens
        return self.host.step_time(self.gpu.step_time(shape, share), tokens, shape.logit_rows)

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        tokens = first.tokens if share is None else share.tokens
        return self.host.step_time(self.gpu.decode_times(first, steps, share), tokens, first.decode_seqs, np.maximum)
