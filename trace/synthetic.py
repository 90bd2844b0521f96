"""Seeded synthetic workloads with prefix structure: multi-turn chat, shared system prompts, RAG, agentic loops.

Every random draw comes from the ``numpy.random.Generator`` passed in. Lengths are
exponential with the configured means (at least one token); popularity of shared
prefixes and documents is Zipf(alpha) over a finite set.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sim.config import SyntheticConfig
from trace import blocks as bm
from trace.request import Trace, TraceProvenance

AGENT_STEP_GAP_MEAN_S = 2.0  # mean think/tool time between an agent's steps (assumed, not measured)


def _lengths(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return np.maximum(1, np.rint(rng.exponential(mean, n))).astype(np.int64)


def _zipf_choice(rng: np.random.Generator, k: int, alpha: float, size) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** alpha
    return rng.choice(k, size=size, p=weights / weights.sum())


def _poisson_arrivals(rng: np.random.Generator, rate: float, n: int) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate, n))


def _conversation_prompts(session: np.ndarray, new_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Prompt length of each turn: the session's earlier prompts' new tokens and outputs, plus its own new tokens."""
    import pandas as pd  # only here: a trace-file run never loads pandas

    frame = pd.DataFrame({"s": session, "turn": new_tokens + output_tokens})
    earlier = frame.groupby("s", sort=False)["turn"].cumsum().to_numpy() - frame["turn"].to_numpy()
    return earlier + new_tokens


def _multi_turn(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int):
    n = cfg.num_requests
    arrival = _poisson_arrivals(rng, cfg.rate_rps, n)
    session = rng.integers(0, cfg.num_sessions, n)
    new = _lengths(rng, cfg.input_tokens_mean, n)
    out = _lengths(rng, cfg.output_tokens_mean, n)
    prompt = _conversation_prompts(session, new, out)
    return arrival, prompt, out, session, None


def _agentic(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int):
    steps = -(-cfg.num_requests // cfg.num_sessions)  # ceil: enough steps for num_requests
    starts = _poisson_arrivals(rng, cfg.rate_rps / steps, cfg.num_sessions)
    gaps = rng.exponential(AGENT_STEP_GAP_MEAN_S, (cfg.num_sessions, steps))
    gaps[:, 0] = 0.0
    arrival = (starts[:, None] + np.cumsum(gaps, axis=1)).ravel()
    session = np.repeat(np.arange(cfg.num_sessions), steps)
    n = len(arrival)
    new = _lengths(rng, cfg.input_tokens_mean, n)  # tool results appended each step
    out = _lengths(rng, cfg.output_tokens_mean, n)
    order = np.argsort(arrival, kind="stable")[: cfg.num_requests]
    arrival, session, new, out = arrival[order], session[order], new[order], out[order]
    prompt = _conversation_prompts(session, new, out)
    return arrival, prompt, out, session, None


def _system_prompt(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int):
    n = cfg.num_requests
    arrival = _poisson_arrivals(rng, cfg.rate_rps, n)
    prefix = _zipf_choice(rng, cfg.num_prefixes, cfg.zipf_alpha, n)
    prompt = cfg.prefix_tokens + _lengths(rng, cfg.input_tokens_mean, n)
    out = _lengths(rng, cfg.output_tokens_mean, n)
    offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
    owner, depth = bm.block_positions(offsets)
    keys = bm.unique_keys(len(owner), salt=bm.TAG_PREFIX)
    shared = (depth + 1) * block_size <= cfg.prefix_tokens
    keys[shared] = bm.mix(bm.TAG_PREFIX, prefix[owner[shared]], depth[shared])
    return arrival, prompt, out, None, (offsets, keys)


def _rag(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int):
    n, k, doc_len = cfg.num_requests, cfg.documents_per_request, cfg.document_tokens
    arrival = _poisson_arrivals(rng, cfg.rate_rps, n)
    docs = _zipf_choice(rng, cfg.num_documents, cfg.zipf_alpha, (n, k))
    prompt = k * doc_len + _lengths(rng, cfg.input_tokens_mean, n)
    out = _lengths(rng, cfg.output_tokens_mean, n)
    offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
    owner, depth = bm.block_positions(offsets)
    keys = bm.unique_keys(len(owner), salt=bm.TAG_DOCUMENT)
    first_tok, last_tok = depth * block_size, (depth + 1) * block_size - 1
    in_docs = last_tok < k * doc_len
    o = owner[in_docs]
    # A block's content is fixed by the documents its first and last tokens fall in and its depth.
    doc_first = docs[o, first_tok[in_docs] // doc_len]
    doc_last = docs[o, last_tok[in_docs] // doc_len]
    keys[in_docs] = bm.mix(bm.TAG_DOCUMENT, doc_first, doc_last, depth[in_docs])
    return arrival, prompt, out, None, (offsets, keys)


GENERATORS: dict[str, Callable] = {
    "multi-turn": _multi_turn,
    "agentic": _agentic,
    "system-prompt": _system_prompt,
    "rag": _rag,
}


def generate(cfg: SyntheticConfig, block_size: int, rng: np.random.Generator, limit: int | None = None) -> Trace:
    """A synthetic ``Trace`` of ``cfg.kind``; ``limit`` caps the request count. ``cfg`` is validated
    (``sim.config``: the kind is a Literal, every size has its declared domain)."""
    arrival, prompt, out, session, block_keys = GENERATORS[cfg.kind](cfg, rng, block_size)
    if limit is not None:
        arrival, prompt, out = arrival[:limit], prompt[:limit], out[:limit]
        session = None if session is None else session[:limit]
        if block_keys is not None:
            offsets, keys = block_keys
            block_keys = (offsets[: limit + 1], keys[: offsets[min(limit, len(offsets) - 1)]])
    n = len(arrival)
    arrival = arrival - arrival[0]
    if session is not None:
        offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
        keys = bm.session_keys(offsets, prompt, session, block_size)
        kind = "synthetic-sessions"
    else:
        offsets, keys = block_keys
        kind = "chained"
    block_ids, num_unique = bm.intern(bm.chain(offsets, keys))
    provenance = TraceProvenance(
        path=None, format=f"synthetic:{cfg.kind}", sha256=None, rows_read=n, rows_used=n, rows_skipped=0,
        skip_reasons={}, block_ids=kind, block_tokens=block_size,
    )
    return Trace(
        arrival_s=arrival.astype(np.float64),
        input_tokens=prompt.astype(np.int64),
        output_tokens=out.astype(np.int64),
        session_id=np.full(n, -1, dtype=np.int64) if session is None else session.astype(np.int64),
        block_offsets=offsets,
        block_ids=block_ids,
        num_unique_blocks=num_unique,
        provenance=provenance,
    )
