"""Access-stream helpers shared by cache-only replay and serving: access semantics, the future
(next-use index) for clairvoyant policies, a learned model's predicted next uses, tokens per block."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from sim.config import Config
from sim.errors import ConfigError
from sim.jit import njit
from trace.request import Trace

NEVER = np.iinfo(np.int64).max  # "never used again" (libCacheSim's INT64_MAX convention)


def next_use_index(stream: np.ndarray) -> np.ndarray:
    """For each position t, the position of the next access to ``stream[t]``, or ``NEVER``.

    One backward pass over the stream, compiled, remembering each key's latest position in an
    array indexed by key: the stream's values where they are dense ids (as block ids are), else
    their ranks. (A stable argsort does the same in O(n log n): 4x slower at 10 M accesses.)
    """
    stream = np.ascontiguousarray(stream, dtype=np.int64)
    nxt = np.empty(len(stream), dtype=np.int64)
    if not len(stream):
        return nxt
    low, high = int(stream.min()), int(stream.max())
    if low < 0 or high >= 2 * len(stream) + 1024:  # sparse ids: their ranks instead
        stream = np.unique(stream, return_inverse=True)[1].reshape(-1).astype(np.int64)
        high = int(stream.max())
    _next_uses(stream, np.full(high + 1, NEVER, dtype=np.int64), nxt)
    return nxt


@njit(cache=True, _nrt=False)
def _next_uses(stream, latest, out):
    for t in range(len(stream) - 1, -1, -1):
        key = stream[t]
        out[t] = latest[key]
        latest[key] = t


def policies_in_use(config: Config, policy: str) -> list[str]:
    """The eviction policies of a run whose tiers default to ``policy``: it and each tier's own
    (``cache.tiers.<tier>.policy``), so the data a clairvoyant or learned tier needs is prepared."""
    tiers = config.cache.tiers
    return [policy, *(tier.policy for tier in (getattr(tiers, f.name) for f in fields(tiers)) if tier.policy)]


def uses_learned_policy(config: Config, policies: list[str]) -> bool:
    """Whether any of the runs of ``policies`` (each with the tiers' own policies) needs a learned model."""
    from sim.cache.policies import POLICIES

    return any(POLICIES[q].needs_predictions for p in policies for q in policies_in_use(config, p))


def block_id_space(trace: Trace) -> int:
    """One more than the largest block id of the trace: what arrays indexed by block id need.

    Ids are dense from 0 (``trace.blocks.intern``), except that a request range of the
    ``unique`` kind keeps the global ids of its blocks.
    """
    if trace.block_ids is None:
        return trace.num_accesses
    return int(trace.block_ids.max()) + 1 if len(trace.block_ids) else 0


def tokens_per_access(trace: Trace) -> np.ndarray:
    """Prompt tokens each block access covers: block_size, or fewer for a prompt's last block."""
    offsets = trace.block_offsets
    bs = trace.provenance.block_tokens
    tokens = np.full(int(offsets[-1]), bs, dtype=np.int64)
    counts = np.diff(offsets)
    has_blocks = counts > 0
    last = offsets[1:][has_blocks] - 1
    tokens[last] = trace.input_tokens[has_blocks] - (counts[has_blocks] - 1) * bs
    return tokens


def access_semantics(config: Config, default: str) -> str:
    """``cache.access_semantics``, with ``auto`` resolved to the mode's default."""
    chosen = config.cache.access_semantics
    return default if chosen == "auto" else chosen


def learned_predictions(trace: Trace, config: Config):
    """Load ``cache.learned_model``, refuse another block size or a train/test overlap, and classify
    every access's predicted next-use distribution (``learned.predictions.Predictions``)."""
    model = load_learned_model(config)
    model.check(trace, config)
    return model, model.predict(trace)


def load_learned_model(config: Config):
    """``cache.learned_model`` and its sidecar, read and checked (what needs no trace: a run calls it before
    the trace loads, so a missing or damaged model is refused first)."""
    from learned.model import LearnedModel

    if not config.cache.learned_model:
        raise ConfigError("policy 'learned' needs cache.learned_model (train one: python -m learned.train --help)")
    return LearnedModel.load(config.cache.learned_model)
