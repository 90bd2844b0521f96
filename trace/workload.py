"""``load_workload``: the request stream of a resolved config, used by every entry point."""

from __future__ import annotations

import numpy as np

from sim.config import Config
from sim.errors import InputError
from trace.arrivals import apply_arrivals, check_arrivals
from trace.loaders import load_trace
from trace.request import Trace
from trace.synthetic import generate


def load_workload(config: Config) -> Trace:
    """The request stream: the trace file if given, else the synthetic generator; then the
    configured request range, arrival process and load scale, and prompt cap."""
    check_arrivals(config.workload)  # before the (possibly long) load
    if config.workload.trace is not None:
        trace = load_trace(config.workload, config.serving.block_size)
    else:
        rng = np.random.default_rng(config.seed)
        trace = generate(config.workload.synthetic, config.serving.block_size, rng, limit=config.workload.limit)
    start, end = config.workload.range_start, config.workload.range_end
    if not 0.0 <= start < end <= 1.0:
        raise InputError(f"workload.range_start/range_end must satisfy 0 <= start < end <= 1, got {start}, {end}")
    trace.select_range(start, end)
    trace.arrival_s = apply_arrivals(trace.arrival_s, config.workload, config.seed)
    if config.workload.max_input_tokens is not None:
        if config.workload.max_input_tokens <= 0:
            raise InputError("config key 'workload.max_input_tokens' must be positive")
        trace.truncate_inputs(config.workload.max_input_tokens)
    return trace
