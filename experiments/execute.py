"""One experiment point: a mode run, optionally searched for its max rate and repeated over seeds.

``execute(mode, config, options)`` is what the command line runs for ``--max-rate`` and
``--seeds`` and what every sweep point and planner candidate runs: seeds wrap the
max-rate search, which wraps the mode's own run function.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from experiments.confidence import MAX_SEEDS, aggregate, aggregate_trace
from experiments.maxrate import MAX_EXPANSIONS, TOLERANCE, check_slo, max_rate_run, search
from experiments.modes import SERVING_MODES, ModeOutput, check_mode, run_mode
from sim.config import Config, replace
from sim.config_fields import INT64_MAX
from sim.errors import ConfigError, InputError
from sim.mode_checks import check_mode_settings
from sim.mode_runs import name_run
from sim.report.document import RunResult
from trace.stats import shared_instants

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class RunOptions:
    """How to run a point: which policies and routers (one run each, their product), a max-rate search, how many
    seeds; ``cluster_pd``: a cluster mode point with prefill/decode pools (``--cluster --pd``)."""

    policies: tuple[str, ...] = ()
    routers: tuple[str, ...] = ()
    max_rate: bool = False
    seeds: int = 1
    tolerance: float = TOLERANCE
    cluster_pd: bool = False


def check_point(mode: str, config: Config, options: RunOptions, where: str = "",
                given: dict[str, str] | None = None) -> dict[str, str]:
    """What about a point can be refused before any simulation starts (exit 2), beyond what the config's
    own validation (every ``load_config``/``replace``) already checked: the mode, the search options, what
    the mode reads of the config (as the command line checks its one run: ``sim.mode_checks.check_mode_settings``; a point
    that does not fit its GPUs fails when it runs, alone) and, of the keys ``given`` (key: how it was given), those
    this point would leave unread, returned (key: the message that says why) rather than refused: a sweep's or a
    plan's key is refused when no point reads it (``refuse_unread``), as a fixed key one router of an axis reads."""
    from sim.cache.policies import POLICIES
    from sim.mode_settings import CLUSTER_PD, unread_settings
    from sim.mode_settings_rules import learned_tier_policies
    from trace.readers import first_line
    from trace.sniff import check_rows_after_header, check_time_unit, sniff_format

    prefix = f"{where}: " if where else ""
    try:
        check_mode(mode)
        for policy in options.policies:
            if policy not in POLICIES:
                raise ConfigError(f"unknown policy {policy!r}; valid: {', '.join(sorted(POLICIES))}")
        if options.max_rate:
            if mode not in SERVING_MODES:
                raise ConfigError(f"--max-rate needs a serving mode ({', '.join(SERVING_MODES)}), not {mode}")
            check_slo(config.slo)
        if not 1 <= options.seeds <= MAX_SEEDS:
            raise ConfigError(f"--seeds must be between 1 and {MAX_SEEDS:,}, got {options.seeds:,}")
        if config.seed + options.seeds - 1 > INT64_MAX:  # found now, not after the first seed's run
            raise ConfigError(f"--seeds {options.seeds} from seed {config.seed} goes past the largest seed, {INT64_MAX}")
        if options.seeds > 1 and config.workload.trace is not None and (
                mode == "cache-only" or config.workload.arrivals.process == "trace"):
            # The seed draws only the workload (trace/workload.py: the synthetic generator, the arrival process,
            # whose times a cache-only replay never reads): a trace gives every seed the same run there, and a
            # zero-width "interval".
            raise ConfigError(f"--seeds {options.seeds}: a trace " + (
                "replayed cache-only (request order only)" if mode == "cache-only" else
                "replayed at its own arrival times (workload.arrivals.process=trace)") +
                " draws nothing from the seed, so every seed gives the same run" + (
                "; use a synthetic workload" if mode == "cache-only" else
                "; set workload.arrivals.process (poisson, gamma or resample) to vary its arrivals"))
        workload = config.workload  # (a point of a trace axis over formats: refused before the first point runs)
        if workload.trace is not None:  # a file that is no trace (empty, binary, not UTF-8, an unknown header or a
            # JSON array) or a header with no row: refused now, not when its point runs after the others
            if workload.format == "auto":
                sniff_format(Path(workload.trace))
            else:
                first_line(Path(workload.trace))
            check_rows_after_header(Path(workload.trace))
        check_time_unit(workload.trace, workload.format, workload.time_unit,
                        (given or {}).get("workload.time_unit", "workload.time_unit"))
        policies = list(options.policies) or [config.cache.policy]
        # a learned tier policy however set is given (callers count it given: refuse_unread, so a capacity axis with
        # a 0 among others keeps it), and one a file set is judged only where its tier has capacity 0, never built,
        # as sim.cli_config.check_config_for_mode judges it
        learned = learned_tier_policies(config, built_too=True)
        given = {**learned, **(given or {})}
        unread = unread_settings(CLUSTER_PD if mode == "cluster" and options.cluster_pd else mode, config, policies,
                                 given, list(options.routers), options.max_rate)
        unbuilt = learned_tier_policies(config)
        unread = {key: why for key, why in unread.items() if given[key] != learned.get(key) or key in unbuilt}
        check_mode_settings(mode, config, policies, options.cluster_pd, fits=False)
    except InputError as exc:
        raise type(exc)(f"{prefix}{exc}") from None
    return {key: f"{prefix}{why}" for key, why in unread.items()}


def refuse_unread(points: list[tuple[Iterable[str], dict[str, str]]],
                  never_read: list[Iterable[str]] | None = None) -> None:
    """Of each point's keys given (``given``) and those it leaves unread (``check_point``'s), refuse the first key
    that no point given it reads, as the first such point says: a key some points read is kept (a fixed threshold
    beside a router axis), and one only some points are given (a leaf of some values of a mapping axis) is judged
    by those. ``never_read`` (a plan's, whose candidates run in two modes): each point's given keys its mode never
    reads, unread there too (an aggregated candidate's pd.decode_router), the message a point of the mode that
    reads it gives."""
    given_to, unread_by = Counter(), Counter()
    for (given, unread), never in zip(points, never_read or [()] * len(points), strict=True):
        given_to.update(set(given))
        unread_by.update(set(unread.keys()) | set(never))
    for _, unread in points:
        for key, why in unread.items():
            if unread_by[key] == given_to[key]:
                raise InputError(why)


def check_learned_points(points: list[tuple[str, str, Config]], options: RunOptions) -> None:
    """Refuse, before any point of a sweep or plan runs, a point ``(where, mode, config)`` whose learned model its run
    would refuse once its trace is loaded (``LearnedModel.check``: another block size, or the requests it was trained
    on, by range or by content), rather than after other points ran in full. Each distinct workload is loaded once
    (points grouped by what ``load_workload`` reads) and each model once; points of no learned policy load nothing."""
    from sim.cache.access import load_learned_model, uses_learned_policy
    from trace.workload import load_workload

    groups: dict[str, list[tuple[str, Config]]] = {}
    for where, mode, config in points:
        if (mode == "cache-only" or mode in SERVING_MODES) and uses_learned_policy(
                config, list(options.policies) or [config.cache.policy]):
            groups.setdefault(_workload_key(config), []).append((where, config))
    models: dict[str, Any] = {}  # LearnedModel by path
    for group in groups.values():  # one trace in memory at a time
        trace, checked = None, set()
        for where, config in group:
            key = (config.cache.learned_model, config.cache.allow_train_test_overlap)  # (all the check reads)
            if key in checked:
                continue
            try:
                if trace is None:
                    trace = load_workload(config)
                if config.cache.learned_model not in models:
                    models[config.cache.learned_model] = load_learned_model(config)
                models[config.cache.learned_model].check(trace, config)
            except InputError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            checked.add(key)


def check_trace_files(points: list[tuple[str, Config]]) -> None:
    """Refuse, before any point of a sweep runs, a point ``(where, config)`` whose trace file its run would refuse as it
    reads it (a malformed row under workload.strict_validation, arrivals spanning past the limit): every point reading
    that file with those loader settings fails alike, and each ran to that failure. Each distinct read is made once,
    in point order, and kept for the points (``trace.cache``'s kept traces, a forked worker's too); a synthetic
    workload reads no file."""
    from sim.serving.engine_limits import block_size
    from trace.cache import trace_read_key
    from trace.workload import load_trace_file

    seen: set[str] = set()
    for where, config in points:
        if config.workload.trace is None:
            continue
        key = trace_read_key(config.workload, block_size(config))
        if key in seen:
            continue
        seen.add(key)
        try:
            load_trace_file(config)
        except InputError as exc:
            raise type(exc)(f"{where}: {exc}") from None


def _workload_key(config: Config) -> str:
    """What ``load_workload`` reads of ``config``: the workload section, the seed (a synthetic workload's, drawn
    arrivals'), the block size and a synthetic conversation's longest context."""
    import json

    from sim.serving.engine_limits import block_size
    from trace.workload import context_tokens

    synthetic = config.workload.trace is None
    return json.dumps([config.to_dict()["workload"], config.seed, block_size(config),
                       context_tokens(config) if synthetic else None], sort_keys=True, default=str)


def unscaled_arrivals(config: Config) -> np.ndarray:
    """The workload's arrival times at ``rate_scale`` 1."""
    from trace.workload import load_workload

    return load_workload(replace(config, **{"workload.rate_scale": 1.0})).arrival_s


def base_rate_rps(config: Config, arrival: np.ndarray) -> float:
    """Mean request rate of the workload whose arrivals at ``rate_scale`` 1 are ``arrival`` (``unscaled_arrivals``;
    requests / duration, as ``--trace-stats``). Requests that all arrive at once have none, and no rate scale changes
    their run: ``--max-rate`` is refused for them (it doubled the scale 24 times over runs alike and answered a scale
    of 2^24 with no rate)."""
    duration = float(arrival[-1] - arrival[0]) if len(arrival) else 0.0
    if not duration > 0:
        source = config.workload.trace or f"the synthetic workload ({config.workload.synthetic.kind})"
        which = "holds one request" if len(arrival) == 1 else f"has {len(arrival):,} requests that all arrive at once"
        raise InputError(f"--max-rate: {source} {which}: no rate to scale, so no maximum rate; replay more of it, "
                         f"or draw arrivals (workload.arrivals.process)")
    return len(arrival) / duration


def _check_search_range(config: Config, base: float) -> None:
    """The search doubles the rate scale up to 2^MAX_EXPANSIONS times: a workload whose rate that many doublings
    carry past a float's range (a drawn rate of 1e307 req/s) answered an infinite rate, written as null, and 'at inf
    req/s ... inf in the system at once' in its note. Refused before the first run, naming the key that set the rate."""
    start = config.workload.rate_scale
    if math.isfinite(base * start * 2.0**MAX_EXPANSIONS):
        return
    from trace.workload import rate_key

    room = sys.float_info.max / 2.0**MAX_EXPANSIONS  # the highest start rate the search can double from
    key, fix = rate_key(config), f"give a rate below {room / start:.3g} req/s"
    if key is None:  # (the trace's timestamps set it)
        key, fix = f"the workload's own rate, {base:.3g} req/s", f"give a workload.rate_scale below {room / base:.3g}"
    scaled = f", x workload.rate_scale={start:g}," if start != 1.0 else ""
    raise InputError(f"--max-rate: {key}{scaled} doubled up to 2^{MAX_EXPANSIONS} times by the search passes the "
                     f"largest float ({sys.float_info.max:.3g}): no rate to answer; {fix}")


def _max_rate(mode: str, config: Config, options: RunOptions) -> ModeOutput:
    """A search per policy and router (their product, in flag order), each named as the command line names that run."""

    policies = options.policies or (config.cache.policy,)
    routers = options.routers or (config.cluster.router,)
    runs, trace = [], {}
    arrival = unscaled_arrivals(config)  # (loaded once: the rate and the shared instants are both of it)
    base = base_rate_rps(config, arrival)
    _check_search_range(config, base)
    shared = shared_instants(arrival)
    for policy in policies:
        for router in routers:
            cfg = replace(config, **{"cache.policy": policy, "cluster.router": router})
            outputs: list[ModeOutput] = []

            def run_at(scale: float, cfg=cfg, outputs=outputs) -> RunResult:
                out = run_mode(mode, replace(cfg, **{"workload.rate_scale": scale}), cluster_pd=options.cluster_pd)
                outputs.append(out)
                return out.runs[0]

            result = search(run_at, cfg.slo, start=cfg.workload.rate_scale, tolerance=options.tolerance)
            run = max_rate_run(result, base, cfg.slo, options.tolerance, shared)
            name_run(run, mode, policy, router, len(policies), len(routers))
            runs.append(run)
            trace = outputs[0].trace
    return ModeOutput(trace, runs)


def _once(mode: str, config: Config, options: RunOptions) -> ModeOutput:
    if options.max_rate:
        return _max_rate(mode, config, options)
    return run_mode(mode, config, list(options.policies) or None, cluster_pd=options.cluster_pd,
                    routers=list(options.routers) or None)


def execute(mode: str, config: Config, options: RunOptions = RunOptions()) -> ModeOutput:
    """Run one point: seeds seed..seed+N−1 (mean and 95% intervals) around the max-rate search or plain run."""
    if options.seeds <= 1:
        return _once(mode, config, options)
    seeds = [config.seed + i for i in range(options.seeds)]
    outs = [_once(mode, replace(config, seed=seed), options) for seed in seeds]
    runs = [aggregate([out.runs[j] for out in outs], seeds) for j in range(len(outs[0].runs))]
    return ModeOutput(aggregate_trace([out.trace for out in outs]), runs)
