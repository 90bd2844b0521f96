"""Trace statistics and the reuse ceiling (``--trace-stats``)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from sim.jit import njit
from trace.continuations import generated_blocks
from trace.request import BLOCK_ID_DTYPE, Trace

RATE_BIN_S = 10.0  # Contract: peak request rate over 10 s bins


def distribution(values: np.ndarray, percentiles: tuple[int, ...] = (50, 95, 99), with_max: bool = True,
                 empty: float = 0.0) -> dict[str, float]:
    """mean, the given percentiles (numpy linear) and optionally the max of the finite values;
    ``empty`` for every entry when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    keys = ["mean", *(f"p{p}" for p in percentiles), *(["max"] if with_max else [])]
    if len(v) == 0:
        return dict.fromkeys(keys, empty)
    stats = [v.mean(), *np.percentile(v, percentiles), *([v.max()] if with_max else [])]
    return {key: float(x) for key, x in zip(keys, stats, strict=True)}


def arrival_rate_bins(arrival_s: np.ndarray, bin_s: float = RATE_BIN_S) -> tuple[np.ndarray, np.ndarray]:
    """Requests per second in consecutive bins that cover the span from the first arrival to the last, and the bins'
    edges (one more than the rates; from the first arrival). Bins are ``bin_s`` wide but the last, which also takes
    the remainder under a bin (``bin_s`` to 2 ``bin_s`` wide), and a span under ``bin_s`` is one bin of its own
    length: the widths sum to the span and the counts to the requests, so the highest rate is at least the mean,
    requests / span (a mediant lies between its fractions). A partial last bin over ``bin_s`` put 2 requests 1 s
    apart at a peak of 0.2 requests/s beside a mean of 2; one of its own width would rate a request 1 ms after the
    last full bin at 1,000/s. No span (no request, or all at once): no bins, as the mean rate is then 0."""
    arrival = np.asarray(arrival_s, dtype=np.float64)
    span = float(arrival[-1] - arrival[0]) if len(arrival) else 0.0
    if not span > 0:
        return np.zeros(0), np.zeros(0)
    bins = max(1, int(span // bin_s))
    edges = np.append(arrival[0] + bin_s * np.arange(bins), arrival[-1])
    index = np.minimum((arrival - arrival[0]) // bin_s, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins) / np.diff(edges), edges


def peak_arrival_rate(arrival_s: np.ndarray, bin_s: float = RATE_BIN_S) -> float:
    """The highest rate of ``arrival_rate_bins``'s bins, counted over the bins that hold a request only, so its memory
    follows the requests, not the span (a year of 10 s bins is 3 M of them; 0 with no span)."""
    arrival = np.asarray(arrival_s, dtype=np.float64)
    span = float(arrival[-1] - arrival[0]) if len(arrival) else 0.0
    if not span > 0:
        return 0.0
    bins = max(1, int(span // bin_s))
    index = np.minimum((arrival - arrival[0]) // bin_s, bins - 1).astype(np.int64)
    occupied, counts = np.unique(index, return_counts=True)
    starts = arrival[0] + bin_s * occupied  # (each width as arrival_rate_bins's edges give it, to the last digit)
    ends = np.where(occupied == bins - 1, arrival[-1], arrival[0] + bin_s * (occupied + 1))  # the last: to the last arrival
    widths = ends - starts
    return float((counts / widths).max())


@dataclasses.dataclass(frozen=True)
class SharedInstants:
    """Requests that arrive at an instant another one shares: a rate scale divides the gaps between arrivals, so it
    never spreads those (Mooncake's traces: 12,031 requests at 1,180 instants, up to 28 at once)."""
    requests: int  # arriving at an instant another request shares
    most: int  # the most arriving at one instant
    total: int


def shared_instants(arrival: np.ndarray) -> SharedInstants:
    """How many of the requests arrive at an instant another one shares, and the most at one instant."""
    _, counts = np.unique(np.asarray(arrival), return_counts=True)
    return SharedInstants(int(counts[counts > 1].sum()), int(counts.max()) if len(counts) else 0, int(counts.sum()))


def trace_stats(trace: Trace, outputs_in_next_turn: bool = True, max_model_len: int | None = None) -> dict[str, object]:
    """The Contract's ``--trace-stats`` metrics for one trace (``outputs_in_next_turn``: as the workload setting, for
    the serving modes' ceiling; ``max_model_len``: the serving modes' bound on a request, ``served_by_length``)."""
    n = len(trace)
    duration = float(trace.arrival_s[-1] - trace.arrival_s[0]) if n else 0.0
    accesses = trace.num_accesses
    mean = n / duration if duration > 0 else 0.0
    shared = shared_instants(trace.arrival_s)
    return {
        "requests": n,
        "duration_s": duration,
        "rate_mean_rps": mean,
        # (the bins' highest rate is at least the mean in exact arithmetic: arrival_rate_bins; the max keeps it so
        # where the widths' rounding leaves the two within an ulp)
        "rate_peak_rps": max(peak_arrival_rate(trace.arrival_s), mean) if duration > 0 else 0.0,
        # bursts no rate scale spreads (--max-rate names them where no rate meets a latency target)
        "requests_at_shared_instants": shared.requests,
        "requests_at_one_instant_max": shared.most,
        "input_tokens": distribution(trace.input_tokens),
        "output_tokens": distribution(trace.output_tokens),
        "accesses": accesses,
        "unique_blocks": trace.num_unique_blocks,
        # An infinite cache misses each distinct block once (its first use) and hits every reuse.
        "infinite_cache_hit_ratio": (accesses - trace.num_unique_blocks) / accesses if accesses else 0.0,
        "infinite_cache_hit_ratio_serving": serving_reuse_ceiling(served_by_length(trace, max_model_len),
                                                                  outputs_in_next_turn),
    }


def served_by_length(trace: Trace, max_model_len: int | None) -> Trace:
    """The requests a serving run admits by length: those whose prompt + output fit ``max_model_len`` (``None``: all).
    A serving run skips the others (``exceeds_max_model_len``, ``sim.serving.admission``), so they neither look up nor
    leave blocks, and its ceiling is over the rest: over every request, a long prompt sharing an earlier one's
    prefix made the ceiling lower than a run reached (the first 600 requests of Mooncake's FAST'25 synthetic trace,
    one of 191,378 tokens: 0.1102, where a run over the 599 others hit 0.1122). The trace itself is unchanged.
    Requests a run skips for its KV capacity (``exceeds_kv_capacity``) stay in: --trace-stats sizes no instance (the
    capacity follows the GPU, weights, TP, utilization, batch limits and, in PD, the role, keys it refuses as unread),
    so where an instance holds fewer blocks than a long request needs, the ceiling counts requests a run skips."""
    if max_model_len is None:
        return trace
    longer = trace.longer_than(max_model_len)
    if not longer.any():
        return trace
    served = dataclasses.replace(trace, provenance=copy.deepcopy(trace.provenance))
    served.drop(longer, "exceeds_max_model_len")
    return served


def serving_reuse_ceiling(trace: Trace, outputs_in_next_turn: bool = True) -> float:
    """The share of prompt blocks an unbounded cache of the serving modes could serve: those an earlier prompt held
    or an earlier request generated (the serving modes cache generated blocks too, ``trace.continuations``, as the
    cache-only replay does with ``cache.insert_outputs``; without it, the prompts' own reuse), and only a prompt's
    full blocks, the first ``input_tokens // block_tokens`` of its ids: a partial last block is counted as an access
    but never hits (vLLM hashes only full blocks; ``sim.serving.prefix_match.prefix_hit``), so a prompt repeated
    with a partial last block made the ceiling count a hit no run reaches. The serving run's ``hit_ratio`` is at most
    this over the requests it serves (``served_by_length``); an unbounded cache reaches it when a block-aligned
    prompt's last block is served by a lower tier (HBM stops a token short of the prompt's end:
    ``usable_prefix_blocks``)."""
    accesses = trace.num_accesses
    if not accesses or not trace.has_block_ids:  # (no ids: every block is distinct, nothing hits)
        return (accesses - trace.num_unique_blocks) / accesses if accesses else 0.0
    prompt_offsets = np.asarray(trace.block_offsets, np.int64)
    block_tokens = trace.provenance.block_tokens
    id_space = trace.block_id_bound()
    prompt_ids = trace.access_stream()  # (for this pass: read once, for the generated blocks too)
    full = np.minimum(np.asarray(trace.input_tokens, np.int64) // block_tokens, np.diff(prompt_offsets))
    if outputs_in_next_turn:
        generated = generated_blocks(trace, block_tokens, id_space, prompt_ids=prompt_ids)
        generated_offsets, generated_ids = generated.offsets, generated.ids
        id_space = generated.num_ids
    else:  # (generated blocks are never found: none is looked up)
        generated_offsets, generated_ids = np.zeros(len(trace) + 1, np.int64), np.zeros(0, BLOCK_ID_DTYPE)
    hits = _hits_in_prompts(prompt_offsets, prompt_ids, full,
                            generated_offsets, generated_ids, id_space)
    return hits / accesses


@njit(cache=True)
def _hits_in_prompts(prompt_offsets, prompt_ids, full, generated_offsets, generated_ids, num_ids):
    """Prompt blocks an unbounded cache serves, in the serving stream's order (per request, its prompt's blocks, then
    its generated ones: ``trace.continuations.interleaved``): a full block (the first ``full[r]`` of a prompt) seen
    before. Every block is marked seen, a partial one too (never served itself; an id given to a partial block and
    to a full one elsewhere then counts the full one, so the bound stays an upper bound). One pass, a byte per id (a
    sort of the stream took ~48 bytes a block access: 13 GB for a million multi-turn requests)."""
    seen = np.zeros(num_ids, dtype=np.bool_)
    hits = 0
    for r in range(len(prompt_offsets) - 1):
        lo = prompt_offsets[r]
        for k in range(lo, prompt_offsets[r + 1]):
            if seen[prompt_ids[k]] and k - lo < full[r]:
                hits += 1
            seen[prompt_ids[k]] = True
        for k in range(generated_offsets[r], generated_offsets[r + 1]):
            seen[generated_ids[k]] = True
    return hits
