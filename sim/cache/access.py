"""Access-stream helpers shared by cache-only replay and serving: access semantics, the future
(next-use index) for clairvoyant policies, a learned model's predicted next uses, tokens per block."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from sim.config import Config
from sim.errors import ConfigError
from sim.jit import njit
from trace.continuations import GeneratedBlocks, interleaved, prompt_positions, serving_offsets
from trace.request import BLOCK_ID_DTYPE, KEY_LIMIT, Trace

NEVER = np.iinfo(np.int64).max  # "never used again" (libCacheSim's INT64_MAX convention)


def next_use_index(stream: np.ndarray) -> np.ndarray:
    """For each position t, the position of the next access to ``stream[t]``, or ``NEVER``.

    One backward pass over the stream, compiled, remembering each key's latest position in an
    array indexed by key: the stream's values where they are dense ids (as block ids are), else
    their ranks. (A stable argsort does the same in O(n log n): 4x slower at 10 M accesses.)
    """
    stream, high = _dense(stream)
    nxt = np.empty(len(stream), dtype=np.int64)
    if len(stream):
        _next_uses(stream, np.full(high + 1, NEVER, dtype=np.int64), nxt)
    return nxt


def previous_use_index(stream: np.ndarray) -> np.ndarray:
    """For each position t, the position of the previous access to ``stream[t]``, or -1: the position whose next use
    is t (``next_use_index``'s inverse). One forward pass, as ``next_use_index`` makes its backward one."""
    stream, high = _dense(stream)
    prev = np.empty(len(stream), dtype=np.int64)
    if len(stream):
        _previous_uses(stream, np.full(high + 1, -1, dtype=np.int64), prev)
    return prev


def _dense(stream: np.ndarray) -> tuple[np.ndarray, int]:
    """``stream`` as int32 keys to index an array by (a block stream's own ids, as the trace holds them: no copy),
    and the largest: its values where they are dense ids (as block ids are), else their ranks."""
    stream = np.asarray(stream)
    if not len(stream):
        return np.zeros(0, BLOCK_ID_DTYPE), -1
    low, high = int(stream.min()), int(stream.max())
    if low < 0 or high >= 2 * len(stream) + 1024:  # sparse ids: their ranks instead
        stream = np.unique(stream, return_inverse=True)[1].reshape(-1)
        high = int(stream.max())
    # (ids are below KEY_LIMIT, ranks below the stream's length: int32 but for a stream of 2**31 distinct keys)
    return np.ascontiguousarray(stream, dtype=BLOCK_ID_DTYPE if high < KEY_LIMIT else np.int64), high


@njit(cache=True, _nrt=False)
def _next_uses(stream, latest, out):
    for t in range(len(stream) - 1, -1, -1):
        key = stream[t]
        out[t] = latest[key]
        latest[key] = t


@njit(cache=True, _nrt=False)
def _previous_uses(stream, latest, out):
    for t in range(len(stream)):
        key = stream[t]
        out[t] = latest[key]
        latest[key] = t


@dataclass(eq=False)
class CacheStream:
    """Every block a run's caches take, in order: each request's prompt blocks, then (where they are cached, as vLLM
    caches every full block of a sequence) the blocks it generates. Clairvoyant and learned policies see positions
    in it; hit ratios count its prompt positions only."""

    trace: Trace
    generated: GeneratedBlocks | None = None

    @property
    def num_ids(self) -> int:
        """Every block id of the stream is below this (the trace's, and generated blocks' ids of their own)."""
        return self.generated.num_ids if self.generated is not None else block_id_space(self.trace)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Where each request's blocks start."""
        if self.generated is None:
            return self.trace.block_offsets
        return serving_offsets(self.trace.block_offsets, self.generated.offsets)

    @cached_property
    def blocks(self) -> np.ndarray:
        stream = self.trace.access_stream()
        if self.generated is None:
            return stream
        return interleaved(stream, self.trace.block_offsets, self.generated.ids, self.generated.offsets)

    @cached_property
    def prompt(self) -> np.ndarray | None:
        """Which positions are prompt blocks (None: all of them)."""
        if self.generated is None:
            return None
        return prompt_positions(self.trace.block_offsets, self.generated.offsets)

    def chain_next(self) -> np.ndarray:
        """Each position's child in the chain a later lookup follows (-1: none): the next position of its request, but
        a prompt's partial last block is no parent of the blocks its request generates. The first of them completes
        it (``KVCacheManager._sequence_ids``): a next turn reads the prompt's full blocks, then those; the partial
        block, never read again (its id holds the prompt's tokens alone), stays a leaf of the last full one."""
        from learned.predictions import request_chains  # (the learned policy's: imported only where it runs)

        offsets = self.offsets
        nexts = request_chains(offsets)[1]
        generated, trace = self.generated, self.trace
        if generated is None:
            return nexts
        listed = np.diff(trace.block_offsets)
        full = np.minimum(trace.input_tokens // trace.provenance.block_tokens, listed)
        bridged = np.flatnonzero((listed > full) & (full > 0) & (np.diff(generated.offsets) > 0))
        partial = offsets[bridged] + full[bridged]  # (the generated blocks follow it: ``interleaved``)
        nexts[partial - 1] = partial + listed[bridged] - full[bridged]
        nexts[partial] = -1
        return nexts

    def classes(self, predicted):
        """The learned policy's class of every position (``predicted``: the prompt accesses'): a generated block
        takes its request's deepest full prompt block's (both are used again when the conversation goes on), or
        its last block's."""
        generated, trace = self.generated, self.trace
        if generated is None:
            return predicted
        listed = np.diff(trace.block_offsets)  # (a row may list fewer ids than its tokens fill: its own last one)
        full = np.minimum(trace.input_tokens // trace.provenance.block_tokens, listed)
        deepest = trace.block_offsets[:-1] + np.maximum(full, 1) - 1
        inherited = np.repeat(predicted.klass[deepest], np.diff(generated.offsets))
        klass = interleaved(predicted.klass, trace.block_offsets, inherited.astype(predicted.klass.dtype),
                            generated.offsets)
        return dataclasses.replace(predicted, klass=klass, num_ids=max(predicted.num_ids, self.num_ids))


def policies_in_use(config: Config, policy: str) -> list[str]:
    """The eviction policies of a run whose tiers default to ``policy``: it and each built tier's own
    (``cache.tiers.<tier>.policy``), so the data a clairvoyant or learned tier needs is prepared. A lower tier of
    capacity 0 is never built (``sim.cache.tiers``): its policy is not in use (a learned one asked for a model)."""
    return [policy, *(tier_policy for _, tier_policy in _tier_policies(config))]


def _tier_policies(config: Config) -> list[tuple[str, str]]:
    """(tier, its own policy) of each built tier that names one (``cache.tiers.<tier>.policy``)."""
    tiers = config.cache.tiers
    return [(name, tier.policy) for name, tier in ((f.name, getattr(tiers, f.name)) for f in fields(tiers))
            if tier.policy and (name == "hbm" or tier.capacity_gib > 0)]


def uses_learned_policy(config: Config, policies: list[str]) -> bool:
    """Whether any of the runs of ``policies`` (each with the tiers' own policies) needs a learned model."""
    return learned_policy_asker(config, policies) is not None


def learned_policy_asker(config: Config, policies: list[str]) -> str | None:
    """What asks the runs of ``policies`` for a learned model, said as a user set it: "policy 'learned'" (the run's
    policy) or "cache.tiers.<tier>.policy=learned" (a built tier's own); None where nothing does."""
    from sim.cache.policies import POLICIES

    for policy in policies:
        if POLICIES[policy].needs_predictions:
            return f"policy '{policy}'"
    for tier, policy in _tier_policies(config):
        if POLICIES[policy].needs_predictions:
            return f"cache.tiers.{tier}.policy={policy}"
    return None


def block_id_space(trace: Trace) -> int:
    """One more than the largest block id of the trace: what arrays indexed by block id need.

    Ids are dense from 0 (``trace.blocks.intern``), except that a request range of the
    ``unique`` kind keeps the global ids of its blocks.
    """
    return trace.block_id_bound()


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


def run_semantics(config: Config, mode: str) -> str:
    """How a run of ``mode`` looks blocks up: the cache-only replay (and ``--mrc``) as ``cache.access_semantics``
    says, ``auto`` being plain (libCacheSim's model); a serving mode (single, pd, cluster) by prefix, as vLLM's prefix
    cache does (``auto`` is prefix there, and plain is refused: ``check_serving_settings``)."""
    return access_semantics(config, "plain" if mode == "cache-only" else "prefix")


def learned_predictions(trace: Trace, config: Config):
    """Load ``cache.learned_model``, refuse another block size or a train/test overlap, and classify
    every access's predicted next-use distribution (``learned.predictions.Predictions``)."""
    model = load_learned_model(config)
    model.check(trace, config)
    return model, model.predict(trace)


def load_learned_model(config: Config, asker: str = "policy 'learned'"):
    """``cache.learned_model`` and its sidecar, read and checked (what needs no trace: a run calls it before
    the trace loads, so a missing or damaged model is refused first); ``asker``: what needs it, for the refusal
    of a run that names none (``learned_policy_asker``)."""
    from learned.model import LearnedModel

    if not config.cache.learned_model:
        raise ConfigError(f"{asker} needs cache.learned_model (train one: python -m learned.train --help)")
    return LearnedModel.load(config.cache.learned_model)
