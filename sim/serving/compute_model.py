"""What a compute model is to the serving loop: step times of shapes (``ComputeModel``), and a wrapper that changes
another model's times while showing its other attributes (``WrappedCompute``: host costs, CUDA-graph padding)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.serving.moe import DataParallelShare
from sim.serving.step_shape import StepShape


class ComputeModel(Protocol):
    name: str
    # a hybrid model's sliding window, which the steps' shapes are built with (``StepShape.window``); 0: none
    sliding_window: int

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        """Seconds of one step; ``share``: this rank's part in a data-parallel group's lockstep step."""
        ...

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        """Times of ``steps`` consecutive decode-only steps, the first of shape ``first`` and each next one with
        one more KV token in every sequence; equals ``step_time`` of each such step (with the same ``share``)."""
        ...


class WrappedCompute:
    """A compute model that changes another's step times (host costs, CUDA-graph padding); every other attribute is
    the wrapped model's (``comm``, its specs)."""

    def __init__(self, gpu: ComputeModel):
        self.gpu = gpu
        self.name = gpu.name
        self.sliding_window = gpu.sliding_window

    def __getattr__(self, attribute: str):
        if attribute == "gpu":  # not set yet (an unpickled copy): no recursion
            raise AttributeError(attribute)
        return getattr(self.gpu, attribute)
