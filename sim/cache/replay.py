"""Cache-only mode: replay a trace's block accesses through the tiers, no timing (the policy study)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.cache.access import (
    CacheStream,
    block_id_space,
    learned_predictions,
    next_use_index,
    policies_in_use,
    run_semantics,
    uses_learned_policy,
)
from sim.cache.arena import TierArena
from sim.cache.multitier import CachePlugins, MultiTierCache, build_cache
from sim.cache.policies import POLICIES, policy_class
from sim.cache.tiers import TIER_NAMES, build_tiers, read_copies, stored_block_bytes
from sim.config import Config
from sim.errors import ConfigError, UnreadSetting
from sim.report.document import RunResult
from trace.continuations import check_outputs_in_next_turn_read, generated_blocks
from trace.request import Trace

CHUNK = 1 << 18  # accesses (plain) a compiled replay runs between returns (progress, signals)


def cache_metrics(trace: Trace, cache: MultiTierCache, hit_tier: np.ndarray, semantics: str) -> dict[str, Any]:
    """Hit ratios (block and token) overall and per tier, and each tier's counters.

    One pass over ``hit_tier`` and one look per request: the token counts come from the request
    lengths, not from an array of the tokens of every access (an 80 MB array at 10 M accesses)."""
    accesses = len(hit_tier)
    hit_tiers = hit_tier[hit_tier >= 0]
    hits = len(hit_tiers)
    tier_hits = np.bincount(hit_tiers, minlength=len(cache.tiers))
    hit_tokens, total_tokens = _token_counts(trace, hit_tier, hits)
    by_tier = {t.name: t for t in cache.tiers}
    tier_hit_ratio = {}
    for name in TIER_NAMES:
        idx = next((i for i, t in enumerate(cache.tiers) if t.name == name), None)
        tier_hit_ratio[name] = float(tier_hits[idx]) / accesses if idx is not None and accesses else 0.0
    # Lookups that reached tier i and did not find the block there (tiers are searched top down):
    # every access but those served by tiers 0..i.
    misses = accesses - np.cumsum(tier_hits[:len(cache.tiers)])
    return {
        "access_semantics": semantics,
        "requests_completed": len(trace),
        "accesses": accesses,
        "hits": hits,
        "hit_ratio": hits / accesses if accesses else 0.0,
        "token_hit_ratio": hit_tokens / total_tokens if total_tokens else 0.0,
        "tier_hit_ratio": tier_hit_ratio,
        "capacity_blocks": {name: t.capacity for name, t in by_tier.items()},
        "block_bytes": cache.block_bytes,
        "tiers": {t.name: {**t.stats.to_dict(), "misses": int(misses[i])} for i, t in enumerate(cache.tiers)},
    }


def _token_counts(trace: Trace, hit_tier: np.ndarray, hits: int) -> tuple[int, int]:
    """(prompt tokens of the hit accesses, prompt tokens of all accesses). Every block covers
    ``block_tokens`` but a prompt's last one, which covers what is left of the prompt
    (``tokens_per_access``): each request's last block counts its shortfall against a full block."""
    bs = trace.provenance.block_tokens
    counts = np.diff(trace.block_offsets)
    has_blocks = counts > 0
    shortfall = bs * counts[has_blocks] - trace.input_tokens[has_blocks]
    last_hit = hit_tier[trace.block_offsets[1:][has_blocks] - 1] >= 0
    return bs * hits - int(shortfall[last_hit].sum()), bs * len(hit_tier) - int(shortfall.sum())


def cache_plugins(config: Config) -> CachePlugins:
    """The admission/prefetch plug-ins that ``cache.admission`` and ``cache.prefetch`` select."""
    depth = None
    if config.cache.admission == "selective_write":
        if config.cache.selective_write_depth <= 0:
            raise ConfigError(f"config key 'cache.selective_write_depth' must be positive, got {config.cache.selective_write_depth}")
        depth = config.cache.selective_write_depth
    return CachePlugins(selective_write_depth=depth, session_prefetch=config.cache.prefetch == "session")


def check_selective_write_read(offsets: np.ndarray, plugins: CachePlugins, config: Config) -> None:
    """``cache.admission: selective_write`` keeps a request's blocks past ``selective_write_depth`` out of the cache:
    where no request of the stream (``offsets``) has more blocks, every block is cached as without it, and the run is
    the same (depth 1,000 over the Mooncake trace's prompts of at most 241 blocks). Refused when the run finds it, as
    the other settings a workload leaves unread are (``UnreadSetting``)."""
    depth = plugins.selective_write_depth
    longest = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
    if depth is not None and depth >= longest:
        source = config.workload.trace or f"the synthetic {config.workload.synthetic.kind} workload"
        raise UnreadSetting(f"config key 'cache.admission'=selective_write changes nothing: no request of {source} has "
                            f"more than {longest:,} blocks, within cache.selective_write_depth={depth:,}, so every block "
                            "is cached either way", "cache.admission", "none")


def cache_stream(trace: Trace, config: Config) -> CacheStream:
    """The blocks the replay's caches take: the prompts', and with ``cache.insert_outputs`` each request's generated
    blocks after its prompt (their ids as ``workload.outputs_in_next_turn`` reads them: ``trace/continuations.py``)."""
    if not config.cache.insert_outputs:
        return CacheStream(trace)
    check_outputs_in_next_turn_read(trace, config.workload)
    generated = generated_blocks(trace, trace.provenance.block_tokens, block_id_space(trace),
                                 config.workload.outputs_in_next_turn)
    if not len(generated.ids):  # (every answer ends within its prompt's last block: nothing to insert)
        source = config.workload.trace or f"the synthetic {config.workload.synthetic.kind} workload"
        raise UnreadSetting(f"config key 'cache.insert_outputs'=true changes nothing: no request of {source} generates "
                            f"a full {trace.provenance.block_tokens}-token block", "cache.insert_outputs", False)
    return CacheStream(trace, generated)


def replay(trace: Trace, config: Config, policy: str, semantics: str, capacity_blocks: int | None = None,
           next_use: np.ndarray | None = None, progress: bool = False,
           predicted: np.ndarray | None = None, stream: CacheStream | None = None) -> tuple[MultiTierCache, np.ndarray]:
    """Run one policy over the trace; returns the cache and the hit tier of every prompt access (-1: miss).

    ``stream``: the blocks the caches take (default: ``cache_stream``); ``next_use`` and ``predicted`` are over its
    positions. Generated blocks are inserted as the misses they are and left out of the hit tiers returned."""
    stream = stream if stream is not None else cache_stream(trace, config)
    if semantics == "prefix" and hasattr(predicted, "with_requests"):  # (the learned policy scores prefix hits)
        predicted = predicted.with_requests(stream.blocks, stream.offsets, stream.chain_next())
    num_blocks = stream.num_ids
    arena = TierArena(future=next_use, max_keys=num_blocks, few_tiers=True)  # one cache's tiers (and its span)
    tiers = build_tiers(config, policy, next_use=next_use, capacity_blocks=capacity_blocks, predicted=predicted,
                        arena=arena)
    clairvoyant = any(POLICIES[t.policy].needs_future or POLICIES[t.policy].needs_predictions for t in tiers)
    cache = build_cache(tiers, stored_block_bytes(config), inclusive=config.cache.inclusion == "inclusive",
                        track_positions=clairvoyant and len(tiers) > 1, num_blocks=num_blocks,
                        read_copies=read_copies(config),  # (a hit is loaded by every TP rank: MLA reads it TP times)
                        span=True)  # (the replay's one cache owns its tiers: one policy spans them)
    blocks, offsets = stream.blocks, stream.offsets
    hit_tier = np.full(len(blocks), -1, dtype=np.int8)
    plugins = cache_plugins(config)
    check_selective_write_read(offsets, plugins, config)
    # in slices of CHUNK accesses, progress or not: a compiled replay does not see Ctrl-C or SIGTERM until it returns
    # (one call over 259 M accesses ran two minutes past a signal), and the same slices give the same report
    bounds = np.unique(np.clip(np.searchsorted(offsets, np.arange(0, len(blocks) + CHUNK, CHUNK)), 0,
                               len(offsets) - 1)).tolist()
    bounds = [0, len(trace)] if len(bounds) < 2 else bounds
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(blocks), desc=policy, unit="acc", unit_scale=True, leave=False)
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        cache.replay(blocks, offsets, hit_tier, first, last, prefix=semantics == "prefix", plugins=plugins,
                     sessions=trace.session_id)
        if bar is not None:
            bar.update(int(offsets[last] - offsets[first]))
    if bar is not None:
        bar.close()
    return cache, hit_tier if stream.prompt is None else hit_tier[stream.prompt]


def run_cache_only(trace: Trace, config: Config, policies: list[str], progress: bool = False) -> list[RunResult]:
    """One run per policy over the same trace and tiers."""
    for name in policies:
        policy_class(name)  # fail fast on an unknown name
    sessions = trace.session_id[trace.session_id >= 0]
    if config.cache.prefetch == "session" and np.unique(sessions).size == sessions.size:  # (a prefetch follows a
        # session's earlier turn: none where each session id, if any, names one request)
        source = config.workload.trace or f"the synthetic {config.workload.synthetic.kind} workload"
        why = "no session ids" if not sessions.size else "no session of two requests or more"
        raise ConfigError(f"config key 'cache.prefetch'=session: {source} has {why} (no request is named a "
                          "later turn of another), so nothing would be prefetched")
    semantics = run_semantics(config, "cache-only")
    stream = cache_stream(trace, config)
    next_use = predicted = model = None
    in_use = [POLICIES[p] for name in policies for p in policies_in_use(config, name)]
    if any(kind.needs_future for kind in in_use):
        next_use = next_use_index(stream.blocks)
    if any(kind.needs_predictions for kind in in_use):
        model, predicted = learned_predictions(trace, config)
        predicted = stream.classes(predicted)
    runs = []
    for name in policies:
        cache, hit_tier = replay(trace, config, name, semantics, config.cache.capacity_blocks, next_use, progress,
                                 predicted, stream)
        metrics = cache_metrics(trace, cache, hit_tier, semantics)
        if stream.generated is not None:  # (inserted, never looked up: the accesses are the prompts')
            metrics["generated_blocks"] = int(stream.generated.offsets[-1])
        if uses_learned_policy(config, [name]):
            metrics["learned_model"] = model.describe()
            top = cache.tiers[0]
            # which expert the top tier's policy followed (safety net): the one policy over the tiers where it spans them
            spanned = getattr(cache, "spanned", None)
            hooks = spanned.policy if spanned is not None else top.hooks
            if not top.compiled and hasattr(hooks, "summary"):
                metrics["learned_policy"] = hooks.summary()
        runs.append(RunResult(name=name, metrics=metrics, overrides={"cache.policy": name}))
    return runs


def run_mrc(trace: Trace, config: Config) -> RunResult:
    """The LRU miss-ratio curve of the block stream, exact or SHARDS-sampled, under the run's access semantics
    (``plain`` by default; ``prefix``: each request's longest cached prefix, exact only)."""
    from sim.cache.mrc import capacity_grid, lru_mrc

    rate = config.cache.mrc_sample_rate
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"config key 'cache.mrc_sample_rate' must be in (0, 1], got {rate}")
    semantics = run_semantics(config, "cache-only")
    if semantics == "prefix" and rate < 1.0:
        raise ConfigError(f"config key 'cache.mrc_sample_rate' (--mrc-sample-rate) {rate:g} with "
                          "cache.access_semantics=prefix: a sample keeps some blocks, and a prefix hit needs every "
                          "block before it; use rate 1 (exact) or plain semantics")
    stream = trace.access_stream()
    extra = (config.cache.capacity_blocks,) if config.cache.capacity_blocks else ()
    offsets = trace.block_offsets if semantics == "prefix" else None
    curve = lru_mrc(stream, rate, capacities=capacity_grid(max(1, trace.num_unique_blocks), extra=extra),
                    salt=config.seed, offsets=offsets)
    if curve.sampled_accesses == 0:  # SHARDS' correction would then report a hit ratio of 1 at every capacity
        raise ConfigError(f"config key 'cache.mrc_sample_rate' (--mrc-sample-rate) {rate:g} samples none of the "
                          f"{len(stream):,} accesses ({trace.num_unique_blocks:,} distinct blocks); raise it")
    metrics: dict[str, Any] = {"access_semantics": semantics, "requests_completed": len(trace),
                               "accesses": len(stream)}
    if config.cache.capacity_blocks:
        metrics["hit_ratio"] = curve.hit_ratio_at(config.cache.capacity_blocks)
    metrics["mrc"] = curve.to_dict()
    return RunResult(name="lru-mrc", metrics=metrics, overrides={"cache.mrc_sample_rate": rate})
