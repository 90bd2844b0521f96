"""Max rate under SLO (``--max-rate``): bisection on ``workload.rate_scale``.

The fraction of requests meeting every configured target (``slo.ttft_s``, ``slo.tpot_s``)
falls as the load rises. From the power of two at or below the configured scale (``grid_start``) the search doubles
(or halves) the scale until it holds one run that meets ``slo.attainment`` and one that fails (or until less
load stops changing the attainment of runs that kept up with their arrivals: then no rate meets the target), then
bisects geometrically until they are within ``tolerance`` of each other. The answer is
the highest scale seen to meet; the report keeps both bracketing runs (Vidur's capacity
search; DistServe's goodput at an attainment target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from sim.config import SLOConfig
from sim.errors import ConfigError
from sim.report.document import RunResult, still_filling
from trace.stats import SharedInstants

TOLERANCE = 0.01  # relative width of the final bracket
MAX_EXPANSIONS = 24  # doublings (or halvings) before giving up: scales 2^-24 .. 2^24 of the start
# Halving stops early when this many probes in a row give the same attainment and none of them was still filling
# at its last arrival: requests no longer meet each other in the queue, so less load cannot help (the target is
# missed even unloaded). A run far above what the deployment serves is one burst at every such scale, its
# attainment the same too (its first batches'), but its backlog says it was loaded: halving goes on there.
UNLOADED_REPEATS = 3


@dataclass
class Probe:
    """One run at one rate scale."""

    scale: float
    attainment: float
    meets: bool
    run: RunResult


@dataclass
class MaxRateResult:
    """The bracket: the highest scale that met (None: none did) and the lowest that failed (None: none did)."""

    meets: Probe | None
    fails: Probe | None
    steps: list[Probe] = field(default_factory=list)


def check_slo(slo: SLOConfig) -> None:
    if slo.ttft_s is None and slo.tpot_s is None:
        raise ConfigError("--max-rate needs a latency target: set slo.ttft_s and/or slo.tpot_s")
    if not 0.0 < slo.attainment <= 1.0:
        raise ConfigError(f"config key 'slo.attainment' must be in (0, 1], got {slo.attainment}")


def grid_start(start: float) -> float:
    """The scale a search from ``start`` begins at: the power of two at or below it (the workload's own rate, scale 1,
    is one). Over a short replay the attainment need not fall steadily with the rate, so which of its crossings a
    bisection finds depends on the bracket it starts from: begun at the configured scale (the planner's target), two
    plans of one candidate, workload and seed answered 45.1 and 53.5 req/s for targets of 40 and 22.5 (hexplore7,
    300 Azure requests). Begun on this grid, doubling or halving brackets the same pair of powers of two from any
    start whose runs at the powers of two meet below and fail above that pair, and the bisection between them probes
    the same scales: one answer, whatever the start, as ``--max-rate`` from the workload's own rate gives.
    (Exact, by ``frexp``: log2 of the double just below a power of two rounds up to it, which began above.)"""
    _, exponent = math.frexp(start)  # start = m * 2**exponent, 0.5 <= m < 1
    return math.ldexp(1.0, exponent - 1)


def search(run_at: Callable[[float], RunResult], slo: SLOConfig, start: float = 1.0,
           tolerance: float = TOLERANCE) -> MaxRateResult:
    """Bracket and bisect the rate scale; ``run_at(scale)`` simulates one scale."""
    check_slo(slo)
    if not start > 0:
        raise ConfigError(f"config key 'workload.rate_scale' must be > 0, got {start}")
    result = MaxRateResult(None, None)
    start = grid_start(start)

    def probe(scale: float) -> Probe:
        run = run_at(scale)
        attainment = float(run.metrics["slo_attainment"])
        p = Probe(scale, attainment, attainment >= slo.attainment, run)
        result.steps.append(p)
        if p.meets and (result.meets is None or scale > result.meets.scale):
            result.meets = p
        if not p.meets and (result.fails is None or scale < result.fails.scale):
            result.fails = p
        return p

    first = probe(start)
    factor = 2.0 if first.meets else 0.5
    scale = start
    for _ in range(MAX_EXPANSIONS):
        if result.meets is not None and result.fails is not None:
            break
        last = result.steps[-UNLOADED_REPEATS:]
        if not first.meets and len(last) == UNLOADED_REPEATS and len({p.attainment for p in last}) == 1 \
                and not any(still_filling(p.run.metrics) for p in last):
            break  # lower load no longer changes anything: the target is missed even unloaded
        scale *= factor
        probe(scale)
    while result.meets is not None and result.fails is not None and result.meets.scale < result.fails.scale \
            and result.fails.scale / result.meets.scale - 1.0 > tolerance:
        probe(math.sqrt(result.meets.scale * result.fails.scale))
    return result


def max_rate_run(result: MaxRateResult, base_rate_rps: float | None, slo: SLOConfig,
                 tolerance: float = TOLERANCE, shared: SharedInstants | None = None) -> RunResult:
    """The reported run: the highest meeting run (else the lowest failing one) with the search's answer. ``shared``:
    the workload's arrivals at shared instants, named where no rate met (its lowest load is still their bursts)."""
    best = result.meets or result.fails
    scale = result.meets.scale if result.meets else 0.0
    metrics = dict(best.run.metrics)
    metrics["max_rate_scale"] = scale
    metrics["max_rate_rps"] = scale * base_rate_rps if base_rate_rps is not None else None

    def summary(p: Probe | None) -> dict | None:
        if p is None:
            return None
        m = p.run.metrics
        return {"rate_scale": p.scale, "rate_rps": p.scale * base_rate_rps if base_rate_rps is not None else None,
                "slo_attainment": p.attainment, "ttft_s": m["ttft_s"], "tpot_s": m["tpot_s"],
                "goodput_rps": m.get("goodput_rps")}

    note = None
    if result.meets is None:  # how far off, and where: 'missed' alone left a reader to dig the steps out of the JSON
        low = result.fails
        rate = f"{low.scale * base_rate_rps:.4g} req/s" if base_rate_rps is not None else f"rate scale {low.scale:.4g}"
        note = (f"no rate tried meets the target: SLO attainment {low.attainment:.3g} < {slo.attainment:g} even at the "
                f"lowest load tried ({rate})")
        if shared is not None and shared.requests:  # (hexplore3: a plan read "1 H100 cannot serve 0.06 req/s")
            note += (f"; {shared.requests:,} of the {shared.total:,} requests arrive at an instant they share with "
                     f"others (up to {shared.most:,} at once), which no rate scale spreads: the lowest load tried "
                     f"still serves those bursts")
    elif result.fails is None:
        note = "every rate tried meets the target: the answer is a lower bound"
    burst = _burst(result.meets, metrics["max_rate_rps"]) or _filling(result.meets, metrics["max_rate_rps"])
    if burst:
        note = f"{note}; {burst}" if note else burst
    metrics["max_rate_search"] = {
        "target_attainment": slo.attainment,
        "tolerance": tolerance,
        "meets": summary(result.meets),
        "fails": summary(result.fails),
        "steps": [[p.scale, p.attainment] for p in result.steps],
        **({"note": note} if note else {}),
        **({"steady_state": False} if burst else {}),
    }
    # the run reported is the one at the answer: its overrides say so beside the config's rate_scale of 1 (none met:
    # the lowest rate tried, as its metrics are)
    overrides = {**best.run.overrides, "workload.rate_scale": best.scale}
    return RunResult(name=best.run.name, metrics=metrics, overrides=overrides, per_request=best.run.per_request)


def contradicted(search: dict, scale: float, attainment: float) -> dict | None:
    """A run at ``scale`` outside a search (the planner's proof run at its target) whose verdict the search's bracket
    contradicts: met above the lowest scale the search saw fail, or failed below the highest it saw meet. Over a short
    replay the attainment need not fall steadily with the rate, and a bisection never probes outside its own bracket,
    so this is where a run that does shows it. ``search``: a run's ``max_rate_search``; None where the run agrees."""
    meets = attainment >= search["target_attainment"]
    bound = search["fails"] if meets else search["meets"]
    if bound is None or (scale <= bound["rate_scale"] if meets else scale >= bound["rate_scale"]):
        return None
    per_scale = (bound["rate_rps"] / bound["rate_scale"]) if bound["rate_rps"] is not None else None
    point = {"rate_scale": scale, "rate_rps": scale * per_scale if per_scale is not None else None,
             "slo_attainment": attainment}
    seen = {"rate_scale": bound["rate_scale"], "rate_rps": bound["rate_rps"], "slo_attainment": bound["slo_attainment"]}
    return {"meets": point, "fails": seen} if meets else {"meets": seen, "fails": point}


def non_monotone_note(pair: dict, target: float) -> str:
    """What ``contradicted``'s pair says, for a note: the max rate is one boundary of several, not an accuracy."""
    def at(p: dict) -> str:
        rate = f"{p['rate_rps']:.4g} req/s" if p["rate_rps"] is not None else f"rate scale {p['rate_scale']:.4g}"
        return f"{rate} (SLO attainment {p['slo_attainment']:.4g})"

    return (f"SLO attainment is not monotone in the rate here: {at(pair['meets'])} meets the target {target:g} "
            f"above {at(pair['fails'])}, which fails; the max rate is the boundary the search found, one of several, "
            f"and the tolerance is not its accuracy; replay more requests")


def _burst(meets: Probe | None, rate_rps: float | None) -> str | None:
    """Why the answer is no sustained rate, if it is not: by Little's law (L = λW) a steady state at the answered
    rate holds rate x mean E2E requests at once; a workload of no more requests than that arrives within one
    request's lifetime, as one burst, which a finite run can absorb at any rate (a short trace's artifact)."""
    if meets is None or rate_rps is None:
        return None
    m = meets.run.metrics
    e2e = (m.get("e2e_s") or {}).get("mean")
    requests = m.get("requests_completed")
    if not isinstance(e2e, (int, float)) or not isinstance(requests, (int, float)) or not math.isfinite(e2e):
        return None
    in_system = rate_rps * e2e
    if requests > in_system:
        return None
    count = f"{in_system:,.0f}" if in_system < 1e15 else f"{in_system:.3g}"  # (at 1e300 req/s: not 300 digits)
    return (f"not a sustained rate: at {rate_rps:.4g} req/s the {requests:,} requests arrive within one mean E2E "
            f"({e2e:.3g} s; Little's law: {count} in the system at once), one burst; replay more requests")


def _filling(meets: Probe | None, rate_rps: float | None) -> str | None:
    """Why the answer is no sustained rate though the run outlasts one request's lifetime: the run that met was still
    filling when its arrivals stopped. Operational analysis's flow balance (Denning & Buzen, "The Operational Analysis
    of Queueing Network Models", ACM Computing Surveys 10(3), 1978: a run is in steady state when its arrivals and
    completions match, the error its final backlog) is off by a tenth or more of the requests (``still_filling``: the
    threshold of the overload caveat, ``sim.report.document``): either the rate is above what the deployment serves,
    its backlog (a growing batch, under vLLM's scheduler, before a queue) growing with the run until its memory would
    fill, or the run spans under ~10 of its requests' lifetimes, at a steady state's backlog of rate x mean E2E
    (Little's law). Either way a longer run answers lower: the rate is the run's length's, not the deployment's."""
    filling = still_filling(meets.run.metrics) if meets is not None else None
    if filling is None:
        return None
    backlog, total = filling
    at = f"at {rate_rps:.4g} req/s " if rate_rps is not None else ""
    return (f"not a sustained rate: {at}at least {backlog:,} of the {total:,} requests ({backlog / total:.0%}) were "
            f"still queued or running when the last arrived (a steady state's arrivals and completions balance): the "
            f"run ended while it filled, and a longer one answers lower; replay more requests")
