"""``load_workload``: the request stream of a resolved config, used by every entry point."""

from __future__ import annotations

import numpy as np

from sim.config import Config, replace, request_token_bound
from trace.loaders import load_trace
from trace.request import Trace
from trace.synthetic import generate
from trace.validation import no_usable_requests


def load_workload(config: Config) -> Trace:
    """The request stream: the trace file if given, else the synthetic generator; then the
    configured request range and prompt cap. At least one request is left, else a TraceError."""
    if config.workload.trace is not None:
        trace = load_trace(config.workload, config.serving.block_size)
    else:
        rng = np.random.default_rng(config.seed)
        trace = generate(config.workload.synthetic, config.serving.block_size, rng, limit=config.workload.limit)
        trace.drop(trace.input_tokens + trace.output_tokens > request_token_bound(config.workload), "too_many_tokens")
    trace.select_range(config.workload.range_start, config.workload.range_end)
    if config.workload.max_input_tokens is not None:
        trace.truncate_inputs(config.workload.max_input_tokens)
    require_requests(trace, "")
    return trace


def require_requests(trace: Trace, after: str) -> None:
    """Every mode needs at least one request: a workload left empty is bad input (exit 2)."""
    if len(trace) == 0:
        prov = trace.provenance
        raise no_usable_requests(prov.path or prov.format, prov.rows_read, prov.skip_reasons, after)


def with_trace_block_size(config: Config, trace: Trace) -> Config:
    """The run's config at the trace's effective block size: a trace replayed with its own blocks
    (Mooncake, ``workload.block_mismatch: trace``) sizes the cache and the block pool alike."""
    if trace.provenance.block_tokens == config.serving.block_size:
        return config
    return replace(config, **{"serving.block_size": trace.provenance.block_tokens})
