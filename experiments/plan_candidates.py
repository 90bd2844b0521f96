"""The planner's search space: every candidate configuration with its cost, pruned by the miss-ratio curve.

``enumerate_candidates`` expands a ``Plan`` into ``Candidate`` configurations (GPU, count, tensor
parallelism, prefill:decode split or fleet shape, tier mix), each priced and checked for
feasibility; ``mrc_levels`` and ``prune_with_mrc`` drop, before any timing run, the tier mixes that
the one-pass LRU miss-ratio curve shows cannot help.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.plan_file import Plan, pd_ratio, plan_error
from experiments.prices import TIERS, Prices
from sim.config import Config, replace
from sim.errors import ConfigError

if TYPE_CHECKING:
    from trace.request import Trace


@dataclass
class Candidate:
    """One configuration of the search space and what the planner learned about it."""

    gpu: str
    gpus: int
    tp: int
    split: tuple[int, int] | None  # (prefill, decode) instances; None = aggregated
    tier_gib: dict[str, float]  # the searched tiers (the label and overrides)
    racks: int | None = None  # a fleet candidate: racks x nodes per rack (cluster mode)
    nodes: int | None = None
    name: str = ""
    mode: str = "single"
    config: Config | None = None
    cost: float = 0.0
    status: str = "pending"  # pending | infeasible | pruned | timed | failed
    reason: str = ""
    mrc_levels: tuple[float, ...] = ()
    measured: float | None = None
    metrics: dict = field(default_factory=dict)
    pareto: bool = False
    chosen: bool = False
    run_tier_gib: dict[str, float] = field(default_factory=dict)  # every lower tier as it runs: searched or the config's
    trace: dict = field(default_factory=dict)  # its run's trace section (rows used, skips by reason), once it ran

    @property
    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hardware.gpu": self.gpu, "serving.tensor_parallel_size": self.tp}
        instances = self.gpus // self.tp
        if self.racks is not None:
            out["cluster.num_racks"], out["cluster.nodes_per_rack"] = self.racks, self.nodes
        elif self.split is None:
            out["serving.num_instances"] = instances
        else:
            out["pd.num_prefill"], out["pd.num_decode"] = self.split
        for tier, gib in self.tier_gib.items():
            out[f"cache.tiers.{tier}.capacity_gib"] = gib
        return out


def _splits(plan: Plan, instances: int) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for split in plan.pd_split:
        if split == "aggregated":
            out.append(None)
        elif split == "all":
            out += [(p, instances - p) for p in range(1, instances)]
        else:
            p, d = pd_ratio(split)
            if instances % (p + d) == 0:
                k = instances // (p + d)
                out.append((p * k, d * k))
    return list(dict.fromkeys(out))


def _label(c: Candidate, varied_tiers: list[str]) -> str:
    tiers = "".join(f" {t}={c.tier_gib[t]:g}GiB" for t in varied_tiers)
    if c.racks is not None:
        return f"{c.racks}x{c.nodes}x{c.gpus // (c.racks * c.nodes)}x{c.gpu} tp{c.tp}{tiers}"
    split = "aggregated" if c.split is None else f"{c.split[0]}P:{c.split[1]}D"
    return f"{c.gpus}x{c.gpu} tp{c.tp} {split}{tiers}"


def _shapes(plan: Plan, base: Config, tp: int) -> list[tuple[int | None, int | None, int]]:
    """(racks, nodes per rack, GPUs) of each GPU count searched: a fleet plan's racks x nodes, or one node's counts."""
    if plan.fleet:
        gpn = base.hardware.gpus_per_node
        return [(r, n, r * n * gpn) for r in plan.racks or [base.cluster.num_racks]
                for n in plan.nodes_per_rack or [base.cluster.nodes_per_rack]]
    if plan.hit_ratio is not None:
        return [(None, None, tp)]
    return [(None, None, n) for n in plan.gpus if n % tp == 0]


def enumerate_candidates(plan: Plan, base: Config, prices: Prices) -> list[Candidate]:
    """Every (GPU, count, TP, split, tier mix) of the search space with its config and cost; refusals name the key."""
    from sim.cache.tiers import hbm_capacity_blocks
    from sim.cluster.topology import Topology
    from sim.config_rules import SERVING_TP, pd_node_fits, pd_tensor_parallel, single_node_fits
    from sim.specs import gpu_spec

    for key, tp in pd_tensor_parallel(base).values():
        if key != SERVING_TP:  # (a candidate's instances and its price both follow its searched TP)
            raise plan_error(plan.path, f"config key '{key}'={tp}: a plan gives every instance its candidate's "
                                        "search.tensor_parallel_size GPUs (and prices that many); set it to null")
    hit_target = plan.hit_ratio is not None
    tier_names = [t for t in TIERS if t in plan.tiers]
    varied = [t for t in tier_names if len(plan.tiers[t]) > 1]
    tier_mixes = [dict(zip(tier_names, combo, strict=True))
                  for combo in itertools.product(*(plan.tiers[t] for t in tier_names))]
    for count in [] if plan.fleet else plan.gpus:
        if count > base.hardware.gpus_per_node:
            raise plan_error(plan.path, f"'search.gpus': {count} GPUs exceed hardware.gpus_per_node="
                                   f"{base.hardware.gpus_per_node} (one node); plan a fleet with search.racks / search.nodes_per_rack")
    searched = [("search.racks", "cluster.num_racks", plan.racks),
                ("search.nodes_per_rack", "cluster.nodes_per_rack", plan.nodes_per_rack),
                *((f"search.tiers.{t}", f"cache.tiers.{t}.capacity_gib", plan.tiers[t]) for t in tier_names)]
    for name, key, values in searched:
        for value in values or ():  # a value outside the key's domain is the plan's error, not every candidate's
            try:
                replace(base, **{key: value})
            except ConfigError as exc:
                raise plan_error(plan.path, f"{name}: {str(exc).removeprefix('override: ')}") from None
    try:
        for gpu in plan.gpu:
            gpu_spec(gpu)
        prices.check_priced(plan.gpu)  # (every unpriced GPU in one message)
    except ConfigError as exc:
        raise plan_error(plan.path, f"search.gpu: {exc}") from None
    out = []
    for gpu in plan.gpu:
        for tp in plan.tensor_parallel_size:
            for racks, nodes, count in _shapes(plan, base, tp):
                splits = [None] if hit_target or plan.fleet else _splits(plan, count // tp)
                for split in splits:
                    for mix in tier_mixes:
                        c = Candidate(gpu, count, tp, split, mix, racks, nodes)
                        c.name = _label(c, varied)
                        c.mode = ("cluster" if plan.fleet else "cache-only" if hit_target else
                                  "single" if split is None else "pd")
                        # as it runs (priced and on the curve): the searched tiers, the config's capacity of the others
                        c.run_tier_gib = {t: getattr(base.cache.tiers, t).capacity_gib for t in TIERS} | mix
                        c.cost = prices.cost(gpu, count, c.run_tier_gib, nodes=(racks or 1) * (nodes or 1), racks=racks or 1)
                        try:  # a candidate the config rules refuse (TP x data-parallel size beyond a node, ...)
                            c.config = replace(base, **c.overrides)
                            hbm_capacity_blocks(c.config)
                            if plan.fleet:
                                Topology.from_config(c.config)
                            elif c.mode == "single":
                                single_node_fits(c.config)
                            elif c.mode == "pd":
                                pd_node_fits(c.config)  # the node's GPUs, a mixture of experts' data-parallel groups
                        except ConfigError as exc:
                            c.status, c.reason = "infeasible", str(exc).removeprefix("override: ")
                        out.append(c)
    if not out:
        divisible = any(n % tp == 0 for n in plan.gpus for tp in plan.tensor_parallel_size)
        why = ("no 'search.pd_split' fits the instances of its GPU counts (a ratio p:d needs a multiple of p+d "
               "instances of tensor_parallel_size GPUs, 'all' at least 2)") if divisible else \
            "no GPU count of 'search.gpus' is a multiple of a 'search.tensor_parallel_size'"
        raise plan_error(plan.path, f"the search space is empty: {why}")
    return out


# ------------------------------------------------------------------------------ MRC pruning


def curve_semantics(c: Candidate) -> str:
    """How ``c``'s runs look blocks up (``run_semantics`` of its mode): the curve that is theirs is of that semantics."""
    from sim.cache.access import run_semantics

    return run_semantics(c.config, c.mode)


def curve_groups(candidates: list[Candidate]) -> dict[tuple[int, str], list[Candidate]]:
    """The feasible candidates by the block size each runs with (``engine_limits.block_size``: where
    ``serving.block_size`` is null vLLM's for the model on the candidate's GPU, e.g. an MLA model's 32 on a B200 and 16
    elsewhere) and the access semantics of its runs (``curve_semantics``), in candidate order: each group's curve is
    of the workload in blocks of its size, looked up as its runs look them up."""
    from sim.serving.engine_limits import block_size

    groups: dict[tuple[int, str], list[Candidate]] = {}
    for c in candidates:
        if c.status != "infeasible":
            groups.setdefault((block_size(c.config), curve_semantics(c)), []).append(c)
    return groups


def mrc_levels(candidates: list[Candidate], trace: Trace) -> None:
    """Each feasible candidate's LRU hit ratio at its cumulative tier capacities (HBM, +DRAM, +SSD, +EIC), over
    ``trace``'s block stream (the workload as the candidates run it: ``curve_groups``), the capacities in its blocks
    (a trace replayed with its own blocks, e.g. Mooncake's 512 tokens, sizes the caches in them, as a run does:
    ``with_trace_block_size``). The curve is of the lookups its runs make (``curve_semantics``): plain (every block),
    or prefix (a block hits with every block before it in its prompt: ``lru_mrc`` with the prompts' offsets), each
    curve computed once."""
    from sim.cache.mrc import lru_mrc
    from sim.cache.tiers import hbm_capacity_blocks, lower_tier_blocks, tier_slot_bytes
    from trace.workload import with_trace_block_size

    stream, unique = trace.access_stream(), trace.num_unique_blocks
    feasible = [c for c in candidates if c.status != "infeasible"]
    levels = {}
    for c in feasible:
        config = with_trace_block_size(c.config, trace)
        front = c.split[0] if c.split else c.gpus // c.tp  # instances whose HBM holds prefixes (PD: prefill)
        if c.mode == "cache-only":
            front = 1  # cache-only replays one instance's HBM over the shared tiers
        # copies of each tier: one per node (DRAM, SSD) and per rack (EIC) in a fleet, one in a node
        copies = {"dram": 1, "ssd": 1, "eic": 1} if c.racks is None else \
            {"dram": c.racks * c.nodes, "ssd": c.racks * c.nodes, "eic": c.racks}
        caps = [front * hbm_capacity_blocks(config)]
        for tier in TIERS:
            gib = c.run_tier_gib.get(tier, 0.0)
            blocks = lower_tier_blocks(gib, config, tier)
            if gib > 0 and blocks < 1:  # (such a tier was pruned as adding nothing, or failed its run, exit 0)
                key = f"search.tiers.{tier}" if tier in c.tier_gib else f"config key 'cache.tiers.{tier}.capacity_gib'"
                raise ConfigError(f"{key}: {gib:g} GiB holds no KV block of candidate {c.name} (one is "
                                  f"{tier_slot_bytes(tier, config):,} bytes): give 0 for no {tier} tier")
            caps.append(caps[-1] + copies[tier] * blocks)
        levels[id(c)] = caps
    if unique >= len(stream):  # no block repeats: every capacity hits nothing (under either semantics)
        for c in feasible:
            c.mrc_levels = (0.0,) * (len(TIERS) + 1)
        return
    grid = np.unique(np.array([v for caps in levels.values() for v in caps], dtype=np.int64).clip(min=1))
    curves = {}
    for c in feasible:
        semantics = curve_semantics(c)
        if semantics not in curves:
            curves[semantics] = lru_mrc(stream, capacities=grid,
                                        offsets=trace.block_offsets if semantics == "prefix" else None)
        c.mrc_levels = tuple(curves[semantics].hit_ratio_at(v) if v > 0 else 0.0 for v in levels[id(c)])


def prune_with_mrc(candidates: list[Candidate], epsilon: float, hit_target: float | None, exact: bool) -> None:
    """Mark tier mixes that the miss-ratio curve shows cannot help (and, when exact, misses of a hit target)."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in candidates:
        if c.status != "infeasible":
            groups.setdefault((c.gpu, c.gpus, c.tp, c.split, c.racks, c.nodes), []).append(c)
    for members in groups.values():
        kept: list[Candidate] = []
        for c in sorted(members, key=lambda m: m.cost):
            better = next((k for k in kept
                           if all(a <= b + epsilon for a, b in zip(c.mrc_levels, k.mrc_levels, strict=True))), None)
            if better is not None:
                c.status = "pruned"
                c.reason = f"miss-ratio curve: no tier level gains over {better.name} (cheaper)"
            else:
                kept.append(c)
    if hit_target is not None and exact:
        for c in candidates:
            if c.status == "pending" and c.mrc_levels[-1] < hit_target:
                c.status = "pruned"
                c.reason = f"miss-ratio curve: hit ratio {c.mrc_levels[-1]:.4f} < target (exact for exclusive LRU)"


def mrc_is_exact(config: Config, mode: str) -> bool:
    """Whether ``mrc_levels``' last level is the hit ratio a run of ``mode`` measures, exactly: a cache-only replay
    (one cache: a serving run splits the stream over instances and holds blocks in use) of exclusive LRU tiers with no
    plug-in (admission, prefetch) and only prompt blocks inserted. Its ``hit_ratio`` is hits / prompt-block lookups;
    a hit is, under plain lookups, a block found in any tier, and under prefix lookups a block found with every block
    before it in its prompt, at its request's lookup. Exclusive LRU tiers of c1..ck blocks hold the c1+..+ck most
    recently used blocks of one LRU stack (Wong & Wilkes' DEMOTE; ``SAME_WITHOUT_SPAN``), and a block is there iff
    its stack distance is at most that sum; prefix lookups touch a request's blocks (deepest first) whatever the
    capacity, so the stack, and LRU's inclusion, hold for them too, and the prefix curve counts a block's hit at the
    largest distance of its prefix (``sim.cache.mrc._prefix_distances``). The curve is of the semantics the run
    uses (``curve_semantics``), so either semantics is exact."""
    tiers = config.cache.tiers
    policies = {config.cache.policy, *(getattr(tiers, t).policy or config.cache.policy for t in ("hbm", *TIERS))}
    return (mode == "cache-only" and policies == {"lru"} and config.cache.inclusion == "exclusive"
            and config.cache.admission == "none" and config.cache.prefetch == "none"
            and not config.cache.insert_outputs and config.cache.capacity_blocks is None)
