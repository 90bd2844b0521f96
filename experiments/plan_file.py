"""The plan file of ``--plan PLAN.yaml``: its keys, their validation, and the validated ``Plan``.

Every key is checked before any work starts and a bad one is refused naming it (exit 2), so a
plan that would run for minutes cannot fail at the end on a typo.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.prices import TIERS
from experiments.spec import ConfigLayers, parse_layers, read_yaml_mapping, refuse_empty_section
from sim.config_fields import MAX_CONFIG_FLOAT
from sim.config_rules import SLO_UNUSUAL_S, slo_unit_warning
from sim.config_yaml import rebase_setting
from sim.errors import ConfigError, quote_yaml

PLAN_KEYS = ("config", "overlays", "workload", "set", "target", "search", "prices")
TARGET_KEYS = ("hit_ratio", "slo", "rate_rps")
SLO_KEYS = ("ttft_s", "tpot_s", "attainment")
SEARCH_KEYS = ("gpu", "gpus", "tensor_parallel_size", "pd_split", "tiers", "racks", "nodes_per_rack", "mrc_epsilon",
               "rate_tolerance")
MRC_EPSILON = 0.001  # hit ratio a pricier tier mix must add at some tier level to be timed
RATE_TOLERANCE = 0.02  # max-rate bracket width per candidate (the proof runs settle the boundary exactly)
# A plan's rate_tolerance: the bisection stops when the bracket's relative width is within it, so 0 (or a width below
# float64's resolution of the scale) never stops it. 1e-6 is ~24 more runs than 1% per candidate, and 1 (a bracket
# within 2x) is the doubling search's own first bracket: no bisection at all.
RATE_TOLERANCE_RANGE = (1e-6, 1.0)


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


def plan_error(path: Path, message: str) -> ConfigError:
    return ConfigError(f"plan {path}: {message}")


# What to search instead of a key a user may look for first (the capacity question asks "how much HBM").
INSTEAD = {"search.tiers.hbm": "HBM is each GPU's memory: search 'gpu' types and 'gpus' counts, or size it in "
                               "blocks with a --sweep over serving.num_gpu_blocks"}


def _check_keys(path: Path, data: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in valid]
    if unknown:
        hint = INSTEAD.get(f"{where}{unknown[0]}")
        raise plan_error(path, f"unknown key '{where}{unknown[0]}'; valid keys: {', '.join(valid)}"
                               + (f" ({hint})" if hint else ""))


def _finite(value: Any) -> bool:
    """A finite int or float (YAML's .nan and .inf are floats; a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(path: Path, key: str, values: Any, kind: type, minimum: float) -> list:
    if not isinstance(values, list) or not values:
        raise plan_error(path, f"'{key}' must be a non-empty list")
    for v in values:
        if not _finite(v) or (kind is int and not isinstance(v, int)) or v < minimum:
            raise plan_error(path, f"'{key}': {v!r} is not {'an integer' if kind is int else 'a number'} >= {minimum}")
    return _distinct(path, key, [kind(v) for v in values])


def _distinct(path: Path, key: str, values: list) -> list:
    """A searched list whose values are all different: a value given twice made two candidates of one name."""
    seen = set()
    for v in values:
        if v in seen:
            raise plan_error(path, f"'{key}' names {v!r} twice")
        seen.add(v)
    return values


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (every key checked, the target exactly one of its kinds)."""
    path = Path(path)
    data = read_yaml_mapping(path, "plan")
    _check_keys(path, data, PLAN_KEYS, "")
    layers = parse_layers(data, path, "plan")
    target = data.get("target")
    if not isinstance(target, dict):
        raise plan_error(path, "'target' must be a mapping: {hit_ratio: X} or {slo: {ttft_s: ..., attainment: ...}, rate_rps: ...}")
    _check_keys(path, target, TARGET_KEYS, "target.")
    slo = target.get("slo")  # (null: none given; [] or 0 were read as none too, beside a hit-ratio target unsaid)
    slo = {} if slo is None else slo
    if not isinstance(slo, dict):
        raise plan_error(path, "'target.slo' must be a mapping")
    refuse_empty_section(f"plan {path}", "target.slo", target.get("slo"))  # ({} beside a hit ratio: unsaid)
    _check_keys(path, slo, SLO_KEYS, "target.slo.")
    if slo and all(value is None for value in slo.values()):  # (null is none given: as {}, unsaid beside a hit ratio)
        raise plan_error(path, "'target.slo' gives only nulls (none given), which sets nothing: give its entries or "
                               "drop it")
    for key, value in slo.items():  # as the slo.* config keys take them, but named here (not as a run's override)
        if value is not None and (not _finite(value) or value <= 0 or value >= MAX_CONFIG_FLOAT
                                  or (key == "attainment" and value > 1)):
            raise plan_error(path, f"'target.slo.{key}' must be a number > 0" +
                             (" and <= 1" if key == "attainment" else f" and < {MAX_CONFIG_FLOAT:.0e}")
                             + f", got {quote_yaml(value)}")
    for key in SLO_UNUSUAL_S:  # (a ms target written as seconds: told, as the slo.* config keys are)
        if (message := slo_unit_warning(f"target.slo.{key}", slo.get(key))) is not None:
            logging.getLogger("kvsim.config").warning("%s (plan %s)", message, path)
    has_slo = slo.get("ttft_s") is not None or slo.get("tpot_s") is not None
    if (target.get("hit_ratio") is not None) == has_slo:
        raise plan_error(path, "give exactly one target: 'target.hit_ratio', or latency targets under 'target.slo'")
    hit = target.get("hit_ratio")
    if hit is not None and not (_finite(hit) and 0 < hit <= 1):
        raise plan_error(path, f"'target.hit_ratio' must be in (0, 1], got {quote_yaml(hit)}")
    if hit is not None and slo.get("attainment") is not None:  # (it was ignored: a hit-ratio plan runs no clock)
        raise plan_error(path, "'target.slo.attainment' goes with latency targets (ttft_s, tpot_s), not with "
                               "'target.hit_ratio'")
    rate = target.get("rate_rps")
    if rate is not None and (hit is not None or not _finite(rate) or rate <= 0):
        raise plan_error(path, "'target.rate_rps' must be a positive number and goes with an SLO target")
    search = data.get("search")
    if not isinstance(search, dict):
        raise plan_error(path, "'search' must be a mapping (gpu, gpus, tensor_parallel_size, pd_split, tiers)")
    _check_keys(path, search, SEARCH_KEYS, "search.")
    fleet = "racks" in search or "nodes_per_rack" in search
    if fleet:
        ignored = [k for k in ("gpus", "pd_split") if k in search]
        if ignored:
            raise plan_error(path, f"'search.{ignored[0]}' does not apply to a fleet plan (search.racks / search.nodes_per_rack: "
                              f"racks x nodes x hardware.gpus_per_node GPUs, aggregated instances of "
                              f"tensor_parallel_size GPUs)")
    elif hit is not None:
        ignored = [k for k in ("gpus", "pd_split", "rate_tolerance") if k in search]
        if ignored:
            raise plan_error(path, f"'search.{ignored[0]}' does not apply to a hit-ratio target (a cache-only replay of one "
                              f"instance: tensor_parallel_size GPUs)")
    gpu = search.get("gpu")
    if not isinstance(gpu, list) or not gpu or not all(isinstance(g, str) for g in gpu):
        raise plan_error(path, "'search.gpu' must be a non-empty list of GPU names (profiles/gpus.yaml) or GPU spec files")
    gpu = _distinct(path, "search.gpu", [_plan_gpu(g, path) for g in gpu])  # (two spellings of one GPU: twice)
    splits = search.get("pd_split", ["aggregated"])
    if not isinstance(splits, list) or not splits:
        raise plan_error(path, "'search.pd_split' must be a non-empty list")
    spelled: dict[str, str] = {}  # a split's lowest terms -> how the plan spelled it
    for split in splits:
        ratio = pd_ratio(split)
        if split not in ("aggregated", "all") and ratio is None:
            raise plan_error(path, f"'search.pd_split': {split!r} is not 'aggregated', 'all' or a ratio like '1:3'")
        # '2:2' is '1:1' (plan_candidates._splits: one candidate per instance count): run once, the second unsaid
        lowest = str(split) if ratio is None else f"{ratio[0] // math.gcd(*ratio)}:{ratio[1] // math.gcd(*ratio)}"
        if lowest in spelled and spelled[lowest] != str(split):
            raise plan_error(path, f"'search.pd_split': {spelled[lowest]!r} and {str(split)!r} are one ratio ({lowest}): "
                                   "give it once")
        spelled.setdefault(lowest, str(split))
    tiers = search.get("tiers")  # (null: none searched; [] or false were read as none too)
    tiers = {} if tiers is None else tiers
    if not isinstance(tiers, dict):
        raise plan_error(path, "'search.tiers' must be a mapping of dram/ssd/eic to lists of GiB")
    refuse_empty_section(f"plan {path}", "search.tiers", search.get("tiers"))  # (as none searched, unsaid)
    _check_keys(path, tiers, TIERS, "search.tiers.")
    return Plan(
        path=path, layers=layers, hit_ratio=float(hit) if hit is not None else None,
        slo={k: slo.get(k) for k in SLO_KEYS}, rate_rps=float(rate) if rate is not None else None,
        gpu=list(gpu), gpus=_numbers(path, "search.gpus", search.get("gpus", [1]), int, 1),
        tensor_parallel_size=_numbers(path, "search.tensor_parallel_size", search.get("tensor_parallel_size", [1]), int, 1),
        pd_split=_distinct(path, "search.pd_split", [str(s) for s in splits]),
        tiers={t: _numbers(path, f"search.tiers.{t}", v, float, 0) for t, v in tiers.items()},
        racks=_numbers(path, "search.racks", search["racks"], int, 1) if "racks" in search else None,
        nodes_per_rack=(_numbers(path, "search.nodes_per_rack", search["nodes_per_rack"], int, 1)
                        if "nodes_per_rack" in search else None),
        mrc_epsilon=_number_in(path, "search.mrc_epsilon", search.get("mrc_epsilon", MRC_EPSILON), 0.0, 1.0),
        rate_tolerance=_number_in(path, "search.rate_tolerance", search.get("rate_tolerance", RATE_TOLERANCE),
                                  *RATE_TOLERANCE_RANGE),
        prices=_rebased_gpu_prices(_plan_prices(data.get("prices"), path), path),
    )


def _plan_prices(prices: Any, path: Path) -> Any:
    """A plan's ``prices``: null is none given (as a null 'workload', 'set' or 'search.tiers' is); {} sets nothing and
    is refused as a spec's {} is; any other shape is left to ``load_prices`` to check (``[]`` was read as none)."""
    if prices is None:
        return {}
    if isinstance(prices, dict):  # ([] is refused by load_prices: no mapping)
        refuse_empty_section(f"plan {path}", "prices", prices)
    return prices


def _number_in(path: Path, key: str, value: Any, low: float, high: float) -> float:
    """A single number of the search (not a list of candidates), within [low, high]."""
    if not _finite(value) or not low <= value <= high:
        raise plan_error(path, f"'{key}' must be a number >= {low:g} and <= {high:g}, got {value!r}")
    return float(value)


def _plan_gpu(gpu: str, path: Path) -> str:
    """A GPU as a plan names it, as hardware.gpu reads it: an entry of profiles/gpus.yaml under any of its spellings
    (``H100``: h100-sxm), or a GPU spec file relative to the plan."""
    from sim.specs import canonical_gpu

    return canonical_gpu(gpu) or rebase_setting(path.parent, "hardware.gpu", gpu)


def _rebased_gpu_prices(prices: Any, path: Path) -> Any:
    """A plan's ``prices``, each GPU keyed as ``search.gpu`` holds it (an entry's own name; a spec file's path
    re-rooted from the plan's folder to the working directory), so the two still name the same GPU."""
    if not isinstance(prices, dict) or not isinstance(prices.get("gpus"), dict):
        return prices  # (its shape is checked with the prices)
    gpus: dict[Any, Any] = {}
    spelled: dict[Any, Any] = {}  # each GPU -> how prices.gpus spelled it first
    for g, entry in prices["gpus"].items():
        key = _plan_gpu(g, path) if isinstance(g, str) else g
        if key in spelled:  # (H100 beside h100-sxm: the later price replaced the earlier, unsaid)
            raise plan_error(path, f"'prices.gpus' prices {key} twice, as {quote_yaml(spelled[key])} and "
                                   f"{quote_yaml(g)}: give it once")
        spelled[key], gpus[key] = g, entry
    return prices | {"gpus": gpus}


_RATIO_PART = re.compile(r"\s*[0-9]+\s*")  # ASCII digits: str.isdigit() passes '²' (int() refuses it) and '١'


def pd_ratio(text: Any) -> tuple[int, int] | None:
    parts = str(text).split(":")
    if len(parts) == 2 and all(_RATIO_PART.fullmatch(p) and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    return None
