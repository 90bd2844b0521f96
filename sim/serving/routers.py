"""Routers: which instance gets a request. Registered by name; unknown names list the valid ones."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from sim.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the config's check of router names imports this module, not the serving model
    from sim.config import ClusterConfig
    from sim.serving.instance import Instance

# (instances, the prompt's block ids, request id, session id or -1) -> the instance that serves it
Router = Callable[[Sequence["Instance"], Sequence[int], int, int], "Instance"]


def round_robin(instances: Sequence[Instance], blocks: Sequence[int], request_id: int, session: int = -1) -> Instance:
    return instances[request_id % len(instances)]


def least_loaded(instances: Sequence[Instance], blocks: Sequence[int], request_id: int, session: int = -1) -> Instance:
    """Fewest requests queued or running; ties go to the lowest index."""
    return min(instances, key=lambda inst: (inst.load, inst.index))


@dataclass(frozen=True)
class CacheAwareThresholds:
    """SGLang's cache-aware router's thresholds (sgl-router ``CacheAwarePolicy``; ``cluster.*`` keys): go to the
    worker holding the longest prefix if it covers more than ``cache`` of the prompt, else the least loaded, and to
    the least loaded whenever loads are imbalanced (max - min > ``balance_abs`` and max > ``balance_rel`` x min)."""

    cache: float
    balance_abs: int
    balance_rel: float

    def imbalanced(self, most: int, least: int) -> bool:
        return most - least > self.balance_abs and most > self.balance_rel * least

    def choose(self, candidates: Sequence[Instance], prompt_blocks: int, matched: Callable[[Instance], int],
               then: Callable[[Instance], tuple], least_loaded: Callable[[], Instance],
               load: Callable[[Instance], int] = lambda inst: inst.load) -> Instance:
        """The rule over ``candidates``' true holdings (``matched``: an instance's prefix of the prompt's
        ``prompt_blocks``; ``then``: ties after it): the best match where loads (``load``) are balanced and it covers
        more than the cache threshold of the prompt, else ``least_loaded()``."""
        loads = [load(inst) for inst in candidates]
        if prompt_blocks and not self.imbalanced(max(loads), min(loads)):
            most, best = min(((matched(inst), inst) for inst in candidates), key=lambda m: (-m[0], *then(m[1])))
            if most / prompt_blocks > self.cache:
                return best
        return least_loaded()

    @classmethod
    def of(cls, cluster: ClusterConfig) -> CacheAwareThresholds:
        return cls(cluster.cache_threshold, cluster.balance_abs_threshold, cluster.balance_rel_threshold)


def prefix_aware(instances: Sequence[Instance], blocks: Sequence[int], request_id: int, session: int = -1, *,
                 thresholds: CacheAwareThresholds) -> Instance:
    """SGLang's cache-aware rule over each worker's own HBM: the worker with the longest prefix there (ties: the
    least loaded) where it covers more than the cache threshold of the prompt and loads are balanced; else the least
    loaded. Without the threshold a prefix most prompts share (a system prompt: block 0 of every Mooncake prompt)
    held every request on the workers that cached it first, the others idle; without the balance check, at any
    load."""
    return thresholds.choose(instances, len(blocks), lambda inst: inst.cached_prefix_blocks(blocks),
                             lambda inst: (inst.load, inst.index), lambda: least_loaded(instances, blocks, request_id))


def session_affinity(instances: Sequence[Instance], blocks: Sequence[int], request_id: int, session: int = -1) -> Instance:
    """Every turn of a session on one instance (the session id hashed); a request without a session
    id (the trace has none) goes to the least-loaded instance: with no affinity to keep, balance."""
    if session < 0:
        return least_loaded(instances, blocks, request_id)
    return instances[affinity_hash(session) % len(instances)]


def precise_prefix(instances: Sequence[Instance], blocks: Sequence[int], request_id: int, session: int = -1, *,
                   thresholds: CacheAwareThresholds) -> Instance:
    """The longest prefix held in any tier of an instance's cache, then the longest in its HBM, then the least
    loaded, under the prefix-aware router's thresholds (the match: the prefix in any tier): the cluster's version
    weighs each instance's queued prompt tokens in its TTFT estimate, which this one does not keep. (In one node the
    lower tiers are shared; the cluster's version also weighs where each block is.)"""
    return thresholds.choose(instances, len(blocks), lambda inst: inst.kv.cached_prefix_blocks(blocks, every_tier=True),
                             lambda inst: (-inst.cached_prefix_blocks(blocks), inst.load, inst.index),
                             lambda: least_loaded(instances, blocks, request_id))


def affinity_hash(key: int) -> int:
    """A well-mixed non-negative hash of an id: splitmix64's finaliser, so consecutive ids spread over instances."""
    z = (key + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


# One registry of router names for every mode; the cluster runs the same names hierarchically
# (rack, node, instance: ``sim.cluster.routers``).
ROUTERS: dict[str, Router] = {
    "round-robin": round_robin,
    "least-loaded": least_loaded,
    "session-affinity": session_affinity,
    "prefix-aware": prefix_aware,
    "precise-prefix": precise_prefix,
}


def router(name: str, key: str, cluster: ClusterConfig) -> Router:
    """The router ``name`` (config key ``key``), with ``cluster``'s cache-aware thresholds where it reads them."""
    if name not in ROUTERS:
        raise ConfigError(f"config key '{key}': unknown router {name!r}; valid routers: {', '.join(ROUTERS)}")
    if ROUTERS[name] in (prefix_aware, precise_prefix):
        return functools.partial(ROUTERS[name], thresholds=CacheAwareThresholds.of(cluster))
    return ROUTERS[name]
