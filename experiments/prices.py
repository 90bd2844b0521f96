"""Prices and the cost of a configuration (USD per hour), from ``profiles/prices.yaml`` with plan overrides.

cost = GPUs × usd_per_gpu_hour(gpu) + Σ tiers GiB × usd_per_gib / (amortization_years × 8766 h),
with DRAM and SSD per node and EIC per rack (``profiles/prices.yaml`` says what is and is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sim.config_fields import deep_merge
from sim.config_yaml import read_config_file
from sim.errors import ConfigError
from sim.specs import PROFILES_DIR

HOURS_PER_YEAR = 8766.0  # 365.25 days
TIERS = ("dram", "ssd", "eic")
# bounds on a price file's numbers (NaN and 1e308 passed a ">= 0" check: a 300-digit cost and matplotlib's overflow)
MAX_PRICE_USD = 1e6  # a GPU-hour, or a GiB of a tier bought: far beyond any hardware's price
MAX_AMORTIZATION_YEARS = 100
# and at least an hour: a denormal period (1e-310 years) passed "> 0" and priced a GiB-hour at inf (the report's JSON
# writer refused it); shorter than the hour a price is per, amortising means nothing
MIN_AMORTIZATION_YEARS = 1 / HOURS_PER_YEAR


@dataclass(frozen=True)
class Prices:
    """Resolved prices: per GPU-hour by GPU name, per GiB by tier, and the amortisation period."""

    gpus: dict[str, dict[str, Any]]
    tiers: dict[str, dict[str, Any]]
    amortization_years: float

    def gpu_hour(self, gpu: str) -> float:
        self.check_priced([gpu])
        return float(self.gpus[gpu]["usd_per_gpu_hour"])

    def check_priced(self, gpus: list[str]) -> None:
        """Refuse the GPUs of ``gpus`` without a price, every one in one message (naming the first alone, a plan of
        two unpriced GPUs took two runs to learn of both: hexplore7)."""
        unpriced = [g for g in dict.fromkeys(gpus) if g not in self.gpus or "usd_per_gpu_hour" not in self.gpus[g]]
        if not unpriced:
            return
        entries = ", ".join(f"{g}: {{usd_per_gpu_hour: X, source: ...}}" for g in unpriced)
        which = f"GPU {unpriced[0]!r}" if len(unpriced) == 1 else "GPUs " + ", ".join(map(repr, unpriced))
        raise ConfigError(f"no price for {which}: add prices: {{gpus: {{{entries}}}}} to the plan "
                          f"(priced: {', '.join(sorted(self.gpus))})")

    def gib_hour(self, tier: str) -> float:
        return float(self.tiers[tier]["usd_per_gib"]) / (self.amortization_years * HOURS_PER_YEAR)

    def cost(self, gpu: str, gpus: int, tier_gib: dict[str, float], nodes: int = 1, racks: int = 1) -> float:
        """USD per hour of ``gpus`` GPUs with ``tier_gib`` GiB of DRAM and SSD per node and EIC per rack."""
        per_unit = {"dram": nodes, "ssd": nodes, "eic": racks}
        return gpus * self.gpu_hour(gpu) + sum(tier_gib.get(t, 0.0) * per_unit[t] * self.gib_hour(t) for t in TIERS)

    def to_dict(self) -> dict[str, Any]:
        return {"amortization_years": self.amortization_years, "gpus": self.gpus, "tiers": self.tiers}


def load_prices(overrides: dict | None = None, source: str | None = None) -> Prices:
    """``profiles/prices.yaml`` merged with a plan's ``prices:``, validated (positive numbers, known keys). ``source``
    (``plan PATH``) begins each error; the keys it names are the plan's, from ``prices``."""

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}" if source else message)

    # the loader of every other YAML file of kvsim's (a user's edit `usd_per_gib: 1e-1` is a number, not the string
    # plain yaml.safe_load reads; a syntax error is one line naming the file), and the file's own values checked
    # before a plan's are merged in, so an error in it names it, not the plan
    path = PROFILES_DIR / "prices.yaml"
    bundled = f"price file {path}"
    data = read_config_file(path, "price file")
    _validated(data, lambda message: ConfigError(f"{bundled}: {message}"), "")
    if overrides is not None and not isinstance(overrides, dict):  # ([] and 0 were read as "no overrides")
        raise fail(f"'prices' must be a mapping, got {overrides!r}"[:200])
    if overrides:
        unknown = [k for k in overrides if k not in ("amortization_years", "gpus", "tiers")]
        if unknown:
            raise fail(f"unknown key 'prices.{unknown[0]}'; valid keys: amortization_years, gpus, tiers")
        for key, price in (("gpus", "usd_per_gpu_hour"), ("tiers", "usd_per_gib")):
            if key not in overrides:
                continue
            if not isinstance(overrides[key], dict):  # merged below into the bundled mappings, read as mappings
                raise fail(f"'prices.{key}' must be a mapping, got {overrides[key]!r}"[:200])
            if not overrides[key]:
                raise fail(f"'prices.{key}' is an empty mapping, which sets nothing: give its entries or drop it")
            # an entry merges over the bundled one: {} or {source: ...} alone left the bundled price standing,
            # silently (hfuzz8); an entry the bundle lacks is refused below for want of its price
            for name, entry in overrides[key].items():
                if isinstance(entry, dict) and set(entry) <= {"source"}:  # (a misspelt key is named below)
                    raise fail(f"'prices.{key}.{name}' gives no '{price}': give it and its source")
        data = deep_merge(data, overrides)
    return _validated(data, fail)


def _validated(data: dict[str, Any], fail: Callable[[str], ConfigError], at: str = "prices.") -> Prices:
    """The prices of ``data`` (a price file's mapping, or it merged with a plan's), checked: positive numbers,
    known keys; ``at`` begins the keys an error names (a plan's are under ``prices``, a price file's at its top)."""
    if not isinstance(data, dict):  # (a plan's overrides are checked to be a mapping before)
        raise fail("the top level must be a mapping")
    for key in ("gpus", "tiers"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise fail(f"'{at}{key}' must be a mapping, got {data[key]!r}"[:200])
    years = data.get("amortization_years")
    if not isinstance(years, (int, float)) or isinstance(years, bool) or \
            not MIN_AMORTIZATION_YEARS <= years <= MAX_AMORTIZATION_YEARS:
        raise fail(f"{at}amortization_years must be a number of at least one hour ({MIN_AMORTIZATION_YEARS:.3g}) "
                   f"and at most {MAX_AMORTIZATION_YEARS}, got {years!r}")
    for gpu, entry in (data.get("gpus") or {}).items():
        _check_price(entry, "usd_per_gpu_hour", f"{at}gpus.{gpu}", fail)
    tiers = data.get("tiers") or {}
    for tier in tiers:
        if tier not in TIERS:
            raise fail(f"unknown tier '{at}tiers.{tier}'; valid: {', '.join(TIERS)}")
    for tier in TIERS:
        _check_price(tiers.get(tier), "usd_per_gib", f"{at}tiers.{tier}", fail)
    return Prices(dict(data.get("gpus") or {}), dict(tiers), float(years))


def _check_price(entry: Any, key: str, where: str, fail: Callable[[str], ConfigError]) -> None:
    if not isinstance(entry, dict):
        raise fail(f"{where} must be a mapping with '{key}' and 'source'")
    unknown = [k for k in entry if k not in (key, "source")]
    if unknown:
        raise fail(f"unknown key '{where}.{unknown[0]}'; valid keys: {key}, source")
    value = entry.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= MAX_PRICE_USD:
        raise fail(f"{where}.{key} must be a number from 0 to {MAX_PRICE_USD:,.0f}, got {value!r}")
    # a price's source is the text the report cites beside it (profiles/prices.yaml's every one): where given, text,
    # as a GPU spec's source must be (5, [] or an empty 'source:' were cited as written)
    source = entry.get("source", "given")
    if not isinstance(source, str) or not source.strip():
        raise fail(f"{where}.source must be text (where the price is from), got {source!r}"[:200])
