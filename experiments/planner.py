"""The planner (``--plan PLAN.yaml``): the least-cost configuration that meets a target.

A plan names a workload, a search space (GPU types, GPU counts, tensor parallelism,
prefill:decode splits, tier capacities; or, for a fleet, racks and nodes per rack) and one
target: a hit ratio, or latency SLOs
(``slo.ttft_s``/``slo.tpot_s`` at ``slo.attainment``, e.g. 0.99 for a p99 target) at a
request rate. Every candidate gets a cost from ``profiles/prices.yaml`` (overridable in
the plan). Then:

1. The one-pass LRU miss-ratio curve of the workload's block stream (``lru_mrc``) prunes
   tier capacities before any timing run: a pricier tier mix is dropped when, at every
   tier level (HBM, +DRAM, +SSD, +EIC), its curve hit ratio is no more than ``mrc_epsilon``
   above a cheaper mix's. For a hit-ratio target with exclusive LRU tiers the curve is
   exact (an exclusive LRU hierarchy holds the most recent blocks of one LRU stack), so
   candidates whose curve misses the target are dropped too. A fleet's candidates (``search.racks``
   / ``search.nodes_per_rack``: cluster mode, racks x nodes x ``hardware.gpus_per_node`` GPUs,
   DRAM/SSD per node, EIC per rack) are pruned the same way on their fleet-wide capacities,
   never against the target: routing splits the stream over many caches, so the curve is a guide.
2. The rest are run (in parallel, on the sweep runner): a max-rate search each for an
   SLO target, a cache-only replay each for a hit-ratio target.
3. The Pareto front (cost vs max rate, or vs hit ratio), the cheapest candidate that
   meets the target, and the runs that prove the boundary: that candidate run at the
   target (meets) and the next cheaper timed candidate run at the target (fails). A fleet's
   hit ratio comes from its serving run (cluster mode has no cache-only replay).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.config import Config, replace
from sim.errors import ConfigError, InputError
from sim.report.document import build_report
from experiments.execute import RunOptions, check_point
from experiments.outputs import write_csv, write_json
from experiments.prices import TIERS, Prices, load_prices
from experiments.runner import Task, default_jobs, run_task, run_tasks
from experiments.spec import ConfigLayers, parse_layers, read_yaml_mapping, resolve_layers

if TYPE_CHECKING:  # main.py's checked output paths
    from main import Outputs

PLAN_KEYS = ("config", "overlays", "workload", "set", "target", "search", "prices")
TARGET_KEYS = ("hit_ratio", "slo", "rate_rps")
SLO_KEYS = ("ttft_s", "tpot_s", "attainment")
SEARCH_KEYS = ("gpu", "gpus", "tensor_parallel_size", "pd_split", "tiers", "racks", "nodes_per_rack", "mrc_epsilon",
               "rate_tolerance")
MRC_EPSILON = 0.001  # hit ratio a pricier tier mix must add at some tier level to be timed
RATE_TOLERANCE = 0.02  # max-rate bracket width per candidate (the proof runs settle the boundary exactly)


@dataclass(frozen=True)
class Plan:
    """A validated plan file."""

    path: Path
    layers: ConfigLayers
    hit_ratio: float | None
    slo: dict[str, float | None]
    rate_rps: float | None
    gpu: list[str]
    gpus: list[int]
    tensor_parallel_size: list[int]
    pd_split: list[str]
    tiers: dict[str, list[float]]
    racks: list[int] | None  # a fleet plan (cluster mode) when racks or nodes_per_rack is searched
    nodes_per_rack: list[int] | None
    mrc_epsilon: float
    rate_tolerance: float
    prices: dict[str, Any]

    @property
    def fleet(self) -> bool:
        return self.racks is not None or self.nodes_per_rack is not None


@dataclass
class Candidate:
    """One configuration of the search space and what the planner learned about it."""

    gpu: str
    gpus: int
    tp: int
    split: tuple[int, int] | None  # (prefill, decode) instances; None = aggregated
    tier_gib: dict[str, float]
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


# ------------------------------------------------------------------------------ plan file


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"plan {path}: {message}")


def _check_keys(path: Path, data: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise _fail(path, f"unknown key '{where}{unknown[0]}'; valid keys: {', '.join(valid)}")


def _numbers(path: Path, key: str, values: Any, kind: type, minimum: float) -> list:
    if not isinstance(values, list) or not values:
        raise _fail(path, f"'{key}' must be a non-empty list")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or (kind is int and not isinstance(v, int)) or v < minimum:
            raise _fail(path, f"'{key}': {v!r} is not {'an integer' if kind is int else 'a number'} >= {minimum}")
    return [kind(v) for v in values]


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (every key checked, the target exactly one of its kinds)."""
    path = Path(path)
    data = read_yaml_mapping(path, "plan")
    _check_keys(path, data, PLAN_KEYS, "")
    layers = parse_layers(data, path, "plan")
    target = data.get("target")
    if not isinstance(target, dict):
        raise _fail(path, "'target' must be a mapping: {hit_ratio: X} or {slo: {ttft_s: ..., attainment: ...}, rate_rps: ...}")
    _check_keys(path, target, TARGET_KEYS, "target.")
    slo = target.get("slo") or {}
    if not isinstance(slo, dict):
        raise _fail(path, "'target.slo' must be a mapping")
    _check_keys(path, slo, SLO_KEYS, "target.slo.")
    has_slo = slo.get("ttft_s") is not None or slo.get("tpot_s") is not None
    if (target.get("hit_ratio") is not None) == has_slo:
        raise _fail(path, "give exactly one target: 'target.hit_ratio', or latency targets under 'target.slo'")
    hit = target.get("hit_ratio")
    if hit is not None and not (isinstance(hit, (int, float)) and 0 < hit <= 1):
        raise _fail(path, f"'target.hit_ratio' must be in (0, 1], got {hit!r}")
    rate = target.get("rate_rps")
    if rate is not None and (hit is not None or not isinstance(rate, (int, float)) or rate <= 0):
        raise _fail(path, "'target.rate_rps' must be a positive number and goes with an SLO target")
    search = data.get("search")
    if not isinstance(search, dict):
        raise _fail(path, "'search' must be a mapping (gpu, gpus, tensor_parallel_size, pd_split, tiers)")
    _check_keys(path, search, SEARCH_KEYS, "search.")
    fleet = "racks" in search or "nodes_per_rack" in search
    if fleet:
        ignored = [k for k in ("gpus", "pd_split") if k in search]
        if ignored:
            raise _fail(path, f"'search.{ignored[0]}' does not apply to a fleet plan (search.racks / search.nodes_per_rack: "
                              f"racks x nodes x hardware.gpus_per_node GPUs, aggregated instances of "
                              f"tensor_parallel_size GPUs)")
    elif hit is not None:
        ignored = [k for k in ("gpus", "pd_split") if k in search]
        if ignored:
            raise _fail(path, f"'search.{ignored[0]}' does not apply to a hit-ratio target (a cache-only replay of one "
                              f"instance: tensor_parallel_size GPUs)")
    gpu = search.get("gpu")
    if not isinstance(gpu, list) or not gpu or not all(isinstance(g, str) for g in gpu):
        raise _fail(path, "'search.gpu' must be a non-empty list of GPU names (profiles/gpus.yaml)")
    splits = search.get("pd_split", ["aggregated"])
    if not isinstance(splits, list) or not splits:
        raise _fail(path, "'search.pd_split' must be a non-empty list")
    for split in splits:
        if split not in ("aggregated", "all") and _ratio(split) is None:
            raise _fail(path, f"'search.pd_split': {split!r} is not 'aggregated', 'all' or a ratio like '1:3'")
    tiers = search.get("tiers") or {}
    if not isinstance(tiers, dict):
        raise _fail(path, "'search.tiers' must be a mapping of dram/ssd/eic to lists of GiB")
    _check_keys(path, tiers, TIERS, "search.tiers.")
    return Plan(
        path=path, layers=layers, hit_ratio=float(hit) if hit is not None else None,
        slo={k: slo.get(k) for k in SLO_KEYS}, rate_rps=float(rate) if rate is not None else None,
        gpu=list(gpu), gpus=_numbers(path, "search.gpus", search.get("gpus", [1]), int, 1),
        tensor_parallel_size=_numbers(path, "search.tensor_parallel_size", search.get("tensor_parallel_size", [1]), int, 1),
        pd_split=[str(s) for s in splits],
        tiers={t: _numbers(path, f"search.tiers.{t}", v, float, 0) for t, v in tiers.items()},
        racks=_numbers(path, "search.racks", search["racks"], int, 1) if "racks" in search else None,
        nodes_per_rack=(_numbers(path, "search.nodes_per_rack", search["nodes_per_rack"], int, 1)
                        if "nodes_per_rack" in search else None),
        mrc_epsilon=float(search.get("mrc_epsilon", MRC_EPSILON)),
        rate_tolerance=float(search.get("rate_tolerance", RATE_TOLERANCE)),
        prices=data.get("prices") or {},
    )


def _ratio(text: Any) -> tuple[int, int] | None:
    parts = str(text).split(":")
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    return None


# ------------------------------------------------------------------------------ candidates


def _splits(plan: Plan, instances: int) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for split in plan.pd_split:
        if split == "aggregated":
            out.append(None)
        elif split == "all":
            out += [(p, instances - p) for p in range(1, instances)]
        else:
            p, d = _ratio(split)
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
    from sim.specs import gpu_spec

    hit_target = plan.hit_ratio is not None
    tier_names = [t for t in TIERS if t in plan.tiers]
    varied = [t for t in tier_names if len(plan.tiers[t]) > 1]
    tier_mixes = [dict(zip(tier_names, combo)) for combo in itertools.product(*(plan.tiers[t] for t in tier_names))]
    for count in [] if plan.fleet else plan.gpus:
        if count > base.hardware.gpus_per_node:
            raise _fail(plan.path, f"'search.gpus': {count} GPUs exceed hardware.gpus_per_node="
                                   f"{base.hardware.gpus_per_node} (one node); plan a fleet with search.racks / search.nodes_per_rack")
    out = []
    for gpu in plan.gpu:
        try:
            gpu_spec(gpu)
            prices.gpu_hour(gpu)
        except ConfigError as exc:
            raise _fail(plan.path, f"search.gpu: {exc}") from None
        for tp in plan.tensor_parallel_size:
            for racks, nodes, count in _shapes(plan, base, tp):
                splits = [None] if hit_target or plan.fleet else _splits(plan, count // tp)
                for split in splits:
                    for mix in tier_mixes:
                        c = Candidate(gpu, count, tp, split, mix, racks, nodes)
                        c.name = _label(c, varied)
                        c.mode = ("cluster" if plan.fleet else "cache-only" if hit_target else
                                  "single" if split is None else "pd")
                        try:
                            c.config = replace(base, **c.overrides)
                        except ConfigError as exc:
                            raise _fail(plan.path, f"candidate {c.name}: {str(exc).removeprefix('override: ')}") from None
                        c.cost = prices.cost(gpu, count, mix, nodes=(racks or 1) * (nodes or 1), racks=racks or 1)
                        try:
                            hbm_capacity_blocks(c.config)
                            if plan.fleet:
                                Topology.from_config(c.config)
                        except ConfigError as exc:
                            c.status, c.reason = "infeasible", str(exc)
                        out.append(c)
    if not out:
        raise _fail(plan.path, "the search space is empty (no GPU count divisible by a tensor-parallel size?)")
    return out


# ------------------------------------------------------------------------------ MRC pruning


def _mrc_levels(candidates: list[Candidate], stream: np.ndarray, unique: int) -> None:
    """Each feasible candidate's LRU hit ratio at its cumulative tier capacities (HBM, +DRAM, +SSD, +EIC)."""
    from sim.cache.mrc import lru_mrc
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes
    from sim.specs import GIB

    feasible = [c for c in candidates if c.status != "infeasible"]
    levels = {}
    for c in feasible:
        block = kv_block_bytes(c.config)
        front = c.split[0] if c.split else c.gpus // c.tp  # instances whose HBM holds prefixes (PD: prefill)
        if c.mode == "cache-only":
            front = 1  # cache-only replays one instance's HBM over the shared tiers
        # copies of each tier: one per node (DRAM, SSD) and per rack (EIC) in a fleet, one in a node
        copies = {"dram": 1, "ssd": 1, "eic": 1} if c.racks is None else \
            {"dram": c.racks * c.nodes, "ssd": c.racks * c.nodes, "eic": c.racks}
        caps = [front * hbm_capacity_blocks(c.config)]
        for tier in TIERS:
            caps.append(caps[-1] + copies[tier] * int(c.tier_gib.get(tier, 0.0) * GIB // block))
        levels[id(c)] = caps
    if unique >= len(stream):  # no block repeats: every capacity hits nothing
        for c in feasible:
            c.mrc_levels = (0.0,) * (len(TIERS) + 1)
        return
    grid = np.unique(np.array([v for caps in levels.values() for v in caps], dtype=np.int64).clip(min=1))
    curve = lru_mrc(stream, capacities=grid)
    for c in feasible:
        c.mrc_levels = tuple(curve.hit_ratio_at(v) if v > 0 else 0.0 for v in levels[id(c)])


def prune_with_mrc(candidates: list[Candidate], epsilon: float, hit_target: float | None, exact: bool) -> None:
    """Mark tier mixes that the miss-ratio curve shows cannot help (and, when exact, misses of a hit target)."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in candidates:
        if c.status != "infeasible":
            groups.setdefault((c.gpu, c.gpus, c.tp, c.split, c.racks, c.nodes), []).append(c)
    for members in groups.values():
        kept: list[Candidate] = []
        for c in sorted(members, key=lambda m: m.cost):
            better = next((k for k in kept if all(a <= b + epsilon for a, b in zip(c.mrc_levels, k.mrc_levels))), None)
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


def _mrc_is_exact(config: Config) -> bool:
    """The LRU curve gives the cache-only hit ratio exactly: exclusive LRU tiers, plain lookups, no plug-ins."""
    tiers = config.cache.tiers
    policies = {config.cache.policy, *(getattr(tiers, t).policy or config.cache.policy for t in ("hbm", *TIERS))}
    return (policies == {"lru"} and config.cache.inclusion == "exclusive" and config.cache.access_semantics in ("auto", "plain")
            and config.cache.admission == "none" and config.cache.prefetch == "none")


# ------------------------------------------------------------------------------ the search


def _order(c: Candidate) -> tuple:
    return (c.cost, -(c.measured if c.measured is not None else -np.inf), c.name)


def _pareto(timed: list[Candidate]) -> None:
    """Mark the candidates no cheaper one matches (a zero measure is never on the front)."""
    best = 0.0
    for c in sorted(timed, key=_order):
        if c.measured is not None and c.measured > best:
            c.pareto, best = True, c.measured


def _run(tasks: list[Task], args: argparse.Namespace) -> dict[str, dict]:
    records: dict[str, dict] = {}
    run_tasks(tasks, lambda r: records.__setitem__(r["key"], r), backend=args.backend or "local",
              jobs=args.jobs or default_jobs(), ray_address=args.ray_address)
    return records


def _proof_entry(c: Candidate, run: dict, measured: float, meets: bool, role: str) -> dict:
    return {"role": role, "name": c.name, "overrides": c.overrides, "cost_usd_per_hour": c.cost,
            "measured": measured, "meets": meets, "metrics": run["metrics"]}


def _prove_slo(timed: list[Candidate], target_scale: float, attainment: float) -> tuple[Candidate | None, dict]:
    """Cheapest candidate whose max rate reaches the target, confirmed by runs at the target rate."""
    order = sorted(timed, key=_order)
    cache: dict[str, dict] = {}

    def at_target(c: Candidate) -> tuple[dict, float, bool]:
        if c.name not in cache:
            cfg = replace(c.config, **{"workload.rate_scale": target_scale})
            record = run_task(Task(c.name, 0, c.name, c.mode, cfg, RunOptions(), c.overrides))
            if record["error"]:
                raise InputError(f"proof run of {c.name} failed: {record['error']}")
            cache[c.name] = record["runs"][0]
        run = cache[c.name]
        value = run["metrics"]["slo_attainment"]
        return run, value, value >= attainment

    reaching = [c for c in order if (c.metrics.get("max_rate_scale") or 0.0) >= target_scale]
    for chosen in reaching:
        run, value, ok = at_target(chosen)
        if not ok:
            continue  # its search bracket was off by noise: the next one up
        proof = {"meets": _proof_entry(chosen, run, value, ok, "meets"), "fails": None}
        cheaper = [c for c in order if c.cost < chosen.cost - 1e-9]
        while cheaper:
            below = cheaper[-1]
            run_b, value_b, ok_b = at_target(below)
            if not ok_b:
                proof["fails"] = _proof_entry(below, run_b, value_b, ok_b, "fails")
                break
            chosen, proof["meets"] = below, _proof_entry(below, run_b, value_b, ok_b, "meets")  # cheaper and meets
            cheaper = [c for c in order if c.cost < chosen.cost - 1e-9]
        return chosen, proof
    return None, {}


def run_plan(args: argparse.Namespace, outputs: Outputs) -> int:
    """The ``--plan`` command."""
    from sim.report.outputs import render_outputs
    from sim.report.sweep_plots import plot_pareto
    from trace.workload import load_workload

    start = time.perf_counter()
    plan = load_plan(args.plan)
    base = resolve_layers(plan.layers, args)
    hit_target = plan.hit_ratio
    if hit_target is None:
        slo = {k: v for k, v in plan.slo.items() if v is not None}
        base = replace(base, **{f"slo.{k}": v for k, v in slo.items()})
    prices = load_prices(plan.prices, where=f"plan {plan.path}: prices")
    candidates = enumerate_candidates(plan, base, prices)
    options = RunOptions(max_rate=hit_target is None, tolerance=plan.rate_tolerance)
    for c in candidates:
        if c.status != "infeasible":
            check_point(c.mode, c.config, options, where=f"plan {plan.path}: candidate {c.name}")

    trace = load_workload(replace(base, **{"workload.rate_scale": 1.0}))
    duration = float(trace.arrival_s[-1] - trace.arrival_s[0]) if len(trace) else 0.0
    base_rate = len(trace) / duration if duration > 0 else None
    target_rate = target_scale = None
    if hit_target is None:
        if base_rate is None:
            raise _fail(plan.path, "the workload's requests all arrive at once: its rate, and so a target rate, is undefined")
        target_rate = plan.rate_rps or base_rate * base.workload.rate_scale
        target_scale = target_rate / base_rate
    _mrc_levels(candidates, trace.access_stream(), trace.num_unique_blocks)
    prune_with_mrc(candidates, plan.mrc_epsilon, hit_target, _mrc_is_exact(base) and not plan.fleet)
    pending = [c for c in candidates if c.status == "pending"]
    if not args.quiet:
        print(f"plan {plan.path}: {len(candidates)} candidates, {sum(c.status == 'pruned' for c in candidates)} pruned by "
              f"the miss-ratio curve, {sum(c.status == 'infeasible' for c in candidates)} infeasible; running {len(pending)}"
              f" on {args.backend or 'local'} with {args.jobs or default_jobs()} jobs", file=sys.stderr)

    tasks = []
    for c in pending:
        cfg = c.config if hit_target is not None else replace(c.config, **{"workload.rate_scale": target_scale})
        tasks.append(Task(c.name, len(tasks), c.name, c.mode, cfg, options, c.overrides))
    records = _run(tasks, args)
    measure = "hit_ratio" if hit_target is not None else "max_rate_rps"
    for c in pending:
        record = records[c.name]
        if record["error"]:
            c.status, c.reason = "failed", record["error"].splitlines()[0]
            continue
        c.status, c.metrics = "timed", record["runs"][0]["metrics"]
        c.measured = c.metrics.get(measure)
        c.reason = (c.metrics.get("max_rate_search") or {}).get("note", "")
    timed = [c for c in candidates if c.status == "timed"]
    _pareto(timed)

    if hit_target is None:
        chosen, proof = _prove_slo(timed, target_scale, base.slo.attainment)
    else:
        chosen, proof = _prove_hit(candidates, timed, hit_target)
    if chosen is not None:
        chosen.chosen = True

    report = build_report("plan", base, trace.provenance.to_dict(), [], wall_s=time.perf_counter() - start)
    report["runs"] = _runs(candidates, proof)
    target = ({"hit_ratio": hit_target} if hit_target is not None else
              {"slo": {k: v for k, v in plan.slo.items() if v is not None} | {"attainment": base.slo.attainment},
               "rate_rps": target_rate, "rate_scale": target_scale, "workload_rate_rps": base_rate})
    report["plan"] = {
        "plan": str(plan.path), "target": target, "measure": measure, "prices": prices.to_dict(),
        "candidates": [_candidate_entry(c, measure) for c in sorted(candidates, key=_order)],
        "pareto": [c.name for c in sorted(timed, key=_order) if c.pareto],
        "chosen": _candidate_entry(chosen, measure) if chosen else None,
        "proof": proof,
    }
    notes = []
    if outputs.report_json:
        notes.append(f"report: {write_json(report, outputs.report_json)}")
    if outputs.report_csv:
        layout = (["cluster.num_racks", "cluster.nodes_per_rack"] if plan.fleet else
                  ["serving.num_instances", "pd.num_prefill", "pd.num_decode"])
        leading = ["hardware.gpu", "serving.tensor_parallel_size", *layout,
                   *(f"cache.tiers.{t}.capacity_gib" for t in plan.tiers)]
        notes.append(f"csv: {write_csv(report, outputs.report_csv, leading)}")
    plots = []
    if outputs.plot_dir is not None:
        y_label = "block hit ratio" if hit_target is not None else "max request rate meeting the SLO (req/s)"
        plots.append(plot_pareto(report["plan"]["candidates"], hit_target if hit_target is not None else target_rate,
                                 outputs.plot_dir / "plan_pareto.png", measure, y_label))
        notes += [f"plot: {p}" for p in plots]
    notes += render_outputs(report, [], "plan", outputs.plot_dir, draw_plots=False, html_path=outputs.html, notes=notes)
    if not args.quiet:
        print(_summary(report["plan"], candidates, chosen))
        for note in notes:
            print(note)
    return 0


def _prove_hit(candidates: list[Candidate], timed: list[Candidate], target: float) -> tuple[Candidate | None, dict]:
    """Cheapest replayed candidate at the target hit ratio; the next cheaper candidate replayed to show it misses."""
    meeting = [c for c in sorted(timed, key=_order) if c.measured is not None and c.measured >= target]
    if not meeting:
        return None, {}
    chosen = meeting[0]
    proof = {"meets": {"role": "meets", "name": chosen.name, "overrides": chosen.overrides,
                       "cost_usd_per_hour": chosen.cost, "measured": chosen.measured, "meets": True,
                       "metrics": chosen.metrics},
             "fails": None}
    cheaper = [c for c in sorted(candidates, key=_order) if c.status in ("timed", "pruned") and c.cost < chosen.cost - 1e-9]
    if cheaper:
        below = cheaper[-1]
        if below.status == "pruned":  # pruned by the curve: replay it to prove the boundary with a run
            record = run_task(Task(below.name, 0, below.name, below.mode, below.config, RunOptions(), below.overrides))
            if not record["error"]:
                below.metrics = record["runs"][0]["metrics"]
                below.measured = below.metrics["hit_ratio"]
        if below.measured is not None:
            proof["fails"] = {"role": "fails", "name": below.name, "overrides": below.overrides,
                              "cost_usd_per_hour": below.cost, "measured": below.measured,
                              "meets": below.measured >= target, "metrics": below.metrics}
    return chosen, proof


def _candidate_entry(c: Candidate, measure: str) -> dict:
    return {"name": c.name, "overrides": c.overrides, "mode": c.mode, "cost_usd_per_hour": c.cost,
            "status": c.status, **({"reason": c.reason} if c.reason else {}),
            "mrc_hit_ratio": list(c.mrc_levels) if c.mrc_levels else None, measure: c.measured,
            "pareto": c.pareto, "chosen": c.chosen}


def _runs(candidates: list[Candidate], proof: dict) -> list[dict]:
    """Report runs: every timed candidate (its max-rate or replay run), then the proof runs."""
    runs = []
    for c in sorted(candidates, key=_order):
        if c.status == "timed":
            runs.append({"name": c.name, "overrides": c.overrides,
                         "metrics": {"cost_usd_per_hour": c.cost, **c.metrics}})
    for role in ("meets", "fails"):
        p = proof.get(role)
        if p:
            runs.append({"name": f"proof-{role}: {p['name']}", "overrides": p["overrides"],
                         "metrics": {"cost_usd_per_hour": p["cost_usd_per_hour"], **p["metrics"]}})
    return runs


def _summary(plan: dict, candidates: list[Candidate], chosen: Candidate | None) -> str:
    measure = plan["measure"]
    target = plan["target"]
    unit = "req/s" if measure == "max_rate_rps" else ""
    lines = []
    if measure == "max_rate_rps":
        slo = ", ".join(f"{k}={v:g}" for k, v in target["slo"].items())
        lines.append(f"target: {slo} at {target['rate_rps']:.3f} req/s ({target['rate_scale']:.3g}x the workload's "
                     f"{target['workload_rate_rps']:.3f} req/s)")
    else:
        lines.append(f"target: hit ratio >= {target['hit_ratio']:g}")
    width = max(len(c.name) for c in candidates)
    lines.append(f"  {'candidate':<{width}}  {'USD/h':>8}  {measure:>13}  status")
    for entry in plan["candidates"]:
        value = entry[measure]
        cell = f"{value:>13.4g}" if value is not None else f"{'–':>13}"
        flag = (" (Pareto)" if entry["pareto"] else "") + (" <- chosen" if entry["chosen"] else "")
        why = f": {entry['reason'][:90]}" if entry.get("reason") else ""
        lines.append(f"  {entry['name']:<{width}}  {entry['cost_usd_per_hour']:>8.3f}  {cell}  {entry['status']}{why}{flag}")
    lines.append("Pareto front (cost vs " + ("max rate" if unit else "hit ratio") + "): " +
                 "; ".join(f"{c['name']} {c['cost_usd_per_hour']:.2f} USD/h -> {c[measure]:.4g} {unit}".rstrip()
                           for c in plan["candidates"] if c["pareto"]))
    if chosen is None:
        lines.append("chosen: none — no candidate meets the target")
        return "\n".join(lines)
    layout = ("aggregated" if chosen.split is None else f"P:D = {chosen.split[0]}:{chosen.split[1]}")
    if chosen.racks is not None:
        layout = f"{chosen.racks} racks x {chosen.nodes} nodes"
    lines.append(f"chosen: {chosen.name}: {chosen.gpus} GPUs ({chosen.gpu}), tensor parallel {chosen.tp}, "
                 f"{layout}, {chosen.cost:.2f} USD/h")
    quantity = "SLO attainment" if measure == "max_rate_rps" else "hit ratio"
    for role in ("meets", "fails"):
        p = plan["proof"].get(role)
        if p is None:
            lines.append(f"proof ({role}): none" + (" — it is the cheapest candidate" if role == "fails" else ""))
            continue
        extra = ""
        if measure == "max_rate_rps":
            extra = f", TTFT p99 {p['metrics']['ttft_s']['p99']:.4g} s, TPOT p99 {p['metrics']['tpot_s']['p99']:.4g} s"
        lines.append(f"proof ({role}): {p['name']} at {p['cost_usd_per_hour']:.2f} USD/h: {quantity} "
                     f"{p['measured']:.4f}{extra}")
    return "\n".join(lines)
