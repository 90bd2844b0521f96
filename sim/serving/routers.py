"""Routers: which instance gets a request. Registered by name; unknown names list the valid ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from sim.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the config's check of router names imports this module, not the serving model
    from sim.serving.instance import Instance

Router = Callable[[Sequence["Instance"], Sequence[int], int], "Instance"]


def round_robin(instances: Sequence[Instance], blocks: Sequence[int], request_id: int) -> Instance:
    return instances[request_id % len(instances)]


def least_loaded(instances: Sequence[Instance], blocks: Sequence[int], request_id: int) -> Instance:
    """Fewest requests queued or running; ties go to the lowest index."""
    return min(instances, key=lambda inst: (inst.load, inst.index))


def prefix_aware(instances: Sequence[Instance], blocks: Sequence[int], request_id: int) -> Instance:
    """Longest prefix already in an instance's HBM; ties (and no hit anywhere) go to the least loaded."""
    return min(instances, key=lambda inst: (-inst.cached_prefix_blocks(blocks), inst.load, inst.index))


ROUTERS: dict[str, Router] = {
    "round-robin": round_robin,
    "least-loaded": least_loaded,
    "prefix-aware": prefix_aware,
}


def router(name: str, key: str) -> Router:
    if name not in ROUTERS:
        raise ConfigError(f"config key '{key}': unknown router {name!r}; valid routers: {', '.join(ROUTERS)}")
    return ROUTERS[name]
