"""vLLM's CUDA graphs as a step sees them: the token counts it captured, and the count a step runs at.

vLLM captures a graph per size of ``cudagraph_capture_sizes`` (``memory_profile.capture_sizes``: 1, 2, 4, then
every 8 ... up to ``max_cudagraph_capture_size``) and runs a step of N tokens, N no larger than the largest, as the
graph of the smallest captured size ≥ N: ``CudagraphDispatcher._bs_to_padded_graph_size`` (v1/cudagraph_dispatcher.py),
applied in ``GPUModelRunner._determine_batch_execution_and_padding``. The padded tokens go through every layer: the
linear layers, the collectives and a mixture of experts' router and experts (a decode of 9 tokens padded to 16 touches
the experts 16 tokens route to: vLLM PR #12920 measured DeepSeek-R1 on 8 H200s at 9 concurrent requests at 55 ms a
token with the default sizes, 44 ms with a graph of 9); attention and the LM head run on the real requests. A larger
step, or any step under ``serving.enforce_eager``, runs eagerly at its own size. Data-parallel ranks pad to the
group's largest padded count (``sim.serving.data_parallel``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from sim.config import Config, ServingConfig
from sim.serving.compute_model import ComputeModel, WrappedCompute
from sim.serving.moe import DataParallelShare, sequence_parallel_rows
from sim.serving.step_shape import StepShape


@dataclass(frozen=True)
class CudagraphSizes:
    """The token counts vLLM captured as CUDA graphs, ascending (none under ``enforce_eager``)."""

    sizes: tuple[int, ...] = ()

    @property
    def largest(self) -> int:
        """The largest step that replays a graph (0: none does)."""
        return self.sizes[-1] if self.sizes else 0

    def padded(self, tokens: int) -> int:
        """The tokens a step of ``tokens`` runs at: its graph's size, or its own when it runs eagerly."""
        if tokens > self.largest or tokens <= 0:
            return tokens
        return self.sizes[bisect.bisect_left(self.sizes, tokens)]


def cudagraph_sizes(serving: ServingConfig, gpu: str) -> CudagraphSizes:
    """The sizes vLLM captures for an engine with these (resolved) limits on ``gpu``."""
    from sim.serving.memory_profile import capture_sizes

    if serving.enforce_eager:
        return CudagraphSizes()
    return CudagraphSizes(tuple(capture_sizes(serving.max_num_seqs, serving.max_num_batched_tokens, gpu)))


def config_cudagraph_sizes(config: Config) -> CudagraphSizes:
    """``cudagraph_sizes`` of a run's config (its engine limits resolved as vLLM resolves them)."""
    from sim.serving.engine_limits import resolved_serving

    return cudagraph_sizes(resolved_serving(config), config.hardware.gpu)


class PaddedCompute(WrappedCompute):
    """A compute model whose steps run at their CUDA graph's size (a step priced with a data-parallel ``share`` is
    padded by its group already)."""

    def __init__(self, gpu: ComputeModel, graphs: CudagraphSizes, data_parallel_size: int = 1,
                 sequence_parallel: int = 1):
        super().__init__(gpu)
        self.graphs = graphs
        self.data_parallel_size = data_parallel_size  # a share-less step stands for D ranks like it
        # each step size's share, looked up (a step is priced per step): None where it is a graph's size already
        self._largest = graphs.largest
        self._shares: list[DataParallelShare | None] = [None] * (self._largest + 1)
        for tokens in range(1, graphs.largest + 1):
            padded = graphs.padded(tokens)
            if padded != tokens:
                exchanged = sequence_parallel_rows(padded, sequence_parallel) * data_parallel_size
                self._shares[tokens] = DataParallelShare(padded, padded * data_parallel_size, exchanged,
                                                         tokens * data_parallel_size)

    def _share(self, tokens: int) -> DataParallelShare | None:
        return self._shares[tokens] if 0 < tokens <= self._largest else None

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        return self.gpu.step_time(shape, self._share(shape.tokens) if share is None else share)

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        return self.gpu.decode_times(first, steps, self._share(first.tokens) if share is None else share)
