"""``load_workload``: the request stream of a resolved config, used by every entry point."""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np

from sim.config import Config, replace
from sim.config_fields import MAX_TRACE_SPAN_S
from sim.config_rules import request_token_bound
from sim.errors import TraceError
from sim.serving.engine_limits import block_size
from trace.arrivals import apply_arrivals
from trace.cache import load_trace_cached
from trace.request import Trace


def load_workload(config: Config) -> Trace:
    """The request stream: the trace file if given (through the workload cache when one is set),
    else the synthetic generator; then the configured request range, arrival process and load
    scale, and prompt cap. At least one request is left, else a TraceError (the loader already
    refuses a file with none)."""
    if config.workload.trace is not None:
        trace = load_trace_file(config)
        warn_if_rate_implausible(trace, config.workload.time_unit)
        warn_if_datetimes_coarse(trace)
    else:
        from trace.synthetic import generate  # the block model (pyarrow): only for a synthetic workload

        rng = np.random.default_rng(config.seed)
        trace = generate(config.workload.synthetic, block_size(config), rng, limit=config.workload.limit,
                         context_tokens=context_tokens(config))
        trace.drop(trace.input_tokens + trace.output_tokens > request_token_bound(config.workload), "too_many_tokens")
        require_requests(trace, "")
        check_time_span(trace, _synthetic_span_cause(config.workload.synthetic, config.workload.limit))
    start, end = config.workload.range_start, config.workload.range_end
    trace.select_range(start, end)
    require_requests(trace, f" between workload.range_start={start} and range_end={end}")
    trace.arrival_s = apply_arrivals(trace.arrival_s, config.workload, config.seed)
    check_time_span(trace, _arrivals_cause(config))
    check_rate_finite(trace, _arrivals_fast_cause(config))
    if config.workload.max_input_tokens is not None:
        trace.truncate_inputs(config.workload.max_input_tokens)
    return trace


def load_trace_file(config: Config) -> Trace:
    """The trace file's requests as read (``workload.trace``: its rows, limit and block size), before the request
    range, the arrival process and the load scale: what every config reading that file with those loader settings
    shares (a sweep's points: ``experiments.execute.check_trace_files``)."""
    trace = load_trace_cached(config.workload, block_size(config))
    check_time_span(trace, _span_cause(trace, config.workload.time_unit))
    return trace


def context_tokens(config: Config) -> int:
    """The longest context a synthetic conversation keeps: vLLM's ``max_model_len`` (``serving.max_model_len``,
    by default the model's context length or narrower sliding window), and never more than a request may hold."""
    from sim.specs import model_spec

    model_len = config.serving.max_model_len or model_spec(config.model).longest_request
    return min(model_len, request_token_bound(config.workload))


# A mean arrival rate this high suggests timestamps read in a unit 1,000x too coarse: the public traces run at
# a few requests a second (bundled Azure conversation trace 5.5/s over its hour, Mooncake's conversation
# trace 3.4/s), so such a mistake lands them at thousands; ~200x beyond them, no real trace should be
# here. Over too few requests a mean rate says little.
IMPLAUSIBLE_RATE_RPS = 1_000.0
MIN_REQUESTS_FOR_RATE = 100
LOG = logging.getLogger("kvsim.workload")


def _arrival_span_s(trace: Trace) -> float:
    return float(trace.arrival_s[-1] - trace.arrival_s[0]) if len(trace) else 0.0


def _read_unit(trace: Trace, time_unit: str | None) -> str | None:
    """The unit a trace's numeric timestamps were read in (the flag's, else the format's or its variant's own);
    None for datetimes."""
    from trace.formats import FORMATS

    if trace.provenance.time_unit is not None:
        return trace.provenance.time_unit
    fmt = FORMATS.get(trace.provenance.format)
    return None if fmt is None or fmt.time_unit is None else time_unit or fmt.time_unit


def _likely_unit(trace: Trace, time_unit: str | None, fits: Callable[[float], bool], finer: bool) -> str | None:
    """The unit nearest the one the timestamps were read in, finer or coarser, under which the trace becomes
    plausible (``fits``: its arrival span in seconds under that unit); None if none does or they are datetimes.
    The publishers' units are each format's default (``trace.formats``); a file of the same columns in another
    unit is told only by such implausibility."""
    from trace.formats import TIME_UNITS

    used = _read_unit(trace, time_unit)
    if used is None:
        return None
    span = _arrival_span_s(trace)
    others = sorted((u for u in TIME_UNITS if (TIME_UNITS[u] < TIME_UNITS[used]) == finer and u != used),
                    key=lambda u: abs(math.log(TIME_UNITS[u] / TIME_UNITS[used])))
    return next((u for u in others if fits(span * TIME_UNITS[u] / TIME_UNITS[used])), None)


def _span_cause(trace: Trace, time_unit: str | None) -> str:
    """The likely cause of an absurd arrival span: a finer unit read as seconds (ms as s: 1,000x too long), named
    with its flag when one makes the span plausible; else a corrupt timestamp."""
    outlier = _lone_outlier(trace.arrival_s)
    if outlier:
        return outlier
    unit = _likely_unit(trace, time_unit, lambda span: span <= MAX_TRACE_SPAN_S, finer=True)
    if unit is None:
        return "a corrupt timestamp? (no --workload-time-unit makes the span plausible)"
    return (f"timestamps in {unit} read as {_read_unit(trace, time_unit)}? then pass --workload-time-unit {unit} "
            "(workload.time_unit); else a timestamp is corrupt")


def _lone_outlier(arrival_s: np.ndarray) -> str | None:
    """Where one timestamp alone makes the span absurd (the others span a plausible time, over 1,000 times shorter
    than the gap to it), which one: a corrupt row, not a unit mistake, which stretches every gap alike."""
    if len(arrival_s) < 3:
        return None
    span = float(arrival_s[-1] - arrival_s[0])
    without = {"latest": float(arrival_s[-2] - arrival_s[0]), "earliest": float(arrival_s[-1] - arrival_s[1])}
    for which, rest in without.items():
        if 0 < rest <= MAX_TRACE_SPAN_S and rest * 1_000 < span:
            return (f"the {which} timestamp alone is {span - rest:.3g} s from the others, which span {rest:.3g} s: "
                    "a corrupt row?")
    return None


def _synthetic_span_cause(syn, limit: int | None) -> str:
    """The key that spread a synthetic workload's arrivals too far. Requests arrive at ``rate_rps`` on average (a
    multi-turn workload's conversations start at ``rate_rps`` over the turns they are drawn with), so the requests
    drawn (``num_requests``, at most ``limit``) over ``rate_rps`` near or past the bound is the rate's doing (past it
    is refused before drawing: ``sim.synthetic_rules.arrivals_within_horizon``); else a conversation's think times
    spread its turns."""
    rate, n = syn.rate_rps, syn.num_requests if limit is None else min(syn.num_requests, limit)
    if syn.kind != "multi-turn" or n / rate > MAX_TRACE_SPAN_S:
        return f"config key 'workload.synthetic.rate_rps'={rate:g} is too low for num_requests={n}"
    return (f"config keys 'workload.synthetic.think_time_median_s'={syn.think_time_median_s:g} and "
            f"'think_time_sigma'={syn.think_time_sigma:g} spread a conversation's turns too far apart")


def rate_key(config: Config) -> str | None:
    """The config key that sets the workload's request rate before ``workload.rate_scale``, as 'key'=value: a drawn
    arrival process's rate_rps where one is given, else a synthetic workload's generator's (a process drawn at the
    workload's own rate draws at it); None where a trace's timestamps set it, replayed or drawn at their mean rate.
    What the rate's messages blame (``_arrivals_fast_cause``; --max-rate's
    ``experiments.execute._check_search_range``)."""
    arrivals, workload = config.workload.arrivals, config.workload
    if arrivals.process != "trace" and arrivals.rate_rps is not None:
        return f"'workload.arrivals.rate_rps'={arrivals.rate_rps:g}"
    if workload.trace is None:
        return f"'workload.synthetic.rate_rps'={workload.synthetic.rate_rps:g}"
    return None


def _arrivals_cause(config: Config) -> str:
    """What stretched arrivals that were within bounds before the arrival process and rate scale: a drawn process's
    rate where one is set (a rate of 1e-12 was blamed on the rate scale), else the rate scale (a synthetic workload's
    own rate spread them within bounds before they were drawn: ``_synthetic_span_cause``, so ``rate_key``'s is not
    blamed here)."""
    arrivals, scale = config.workload.arrivals, config.workload.rate_scale
    if arrivals.process != "trace" and arrivals.rate_rps is not None:
        return (f"config key 'workload.arrivals.rate_rps'={arrivals.rate_rps:g} (at workload.rate_scale={scale:g}) "
                "is too low")
    return f"config key 'workload.rate_scale'={scale:g} stretches them too far"


def _arrivals_fast_cause(config: Config) -> str:
    """What packed the arrivals so close that their rate passes a float: the rate scale where one is set, else the key
    that set the rate (``rate_key``), else the trace's own timestamps: replayed, or their mean rate, at which a
    process drew the arrivals (its draws, not the timestamps, are that close)."""
    arrivals, scale = config.workload.arrivals, config.workload.rate_scale
    if scale > 1.0:  # (a scale below 1 spreads them: what packed them is what set them)
        return f"config key 'workload.rate_scale'={scale:g} packs them too close"
    key = rate_key(config)
    if key is not None:
        return f"config key {key} is too high"
    if arrivals.process != "trace":
        return (f"config key 'workload.arrivals.process'={arrivals.process} drew them at the trace's own mean rate, "
                "too high: give workload.arrivals.rate_rps")
    return "its timestamps are closer than any rate a float holds"


def check_rate_finite(trace: Trace, likely_cause: str) -> None:
    """Refuse arrivals so close that their mean rate, requests / span, passes the largest float (a rate scale of
    1e306 over a trace of 800 requests/s): --trace-stats wrote the rates as null after numpy's overflow warning on
    stderr, and a sweep's offered_rps was infinite, which the JSON report could not hold (a traceback after every
    point had run)."""
    span, n = _arrival_span_s(trace), len(trace)
    if span > 0 and not math.isfinite(n / span):
        prov = trace.provenance
        raise TraceError(f"{prov.path or prov.format}: {n:,} requests arrive within {span:.3g} s, a rate past the "
                         f"largest float: {likely_cause}")


def check_time_span(trace: Trace, likely_cause: str) -> None:
    """Refuse arrival times spread over more than ``MAX_TRACE_SPAN_S`` (exit 2, naming the source)."""
    span = _arrival_span_s(trace)
    if not span <= MAX_TRACE_SPAN_S:
        prov = trace.provenance
        raise TraceError(f"{prov.path or prov.format}: arrivals span {span:.3g} s, more than {MAX_TRACE_SPAN_S:.3g} s "
                         f"(34 years): {likely_cause}")


def warn_if_rate_implausible(trace: Trace, time_unit: str | None = None) -> None:
    """Warn when a trace's requests arrive implausibly fast on average: the sign of timestamps read in a
    unit 1,000x too fine (a Mooncake trace in seconds read as its milliseconds), which the data
    cannot otherwise reveal; the warning names the coarser unit that makes the rate plausible. A warning,
    not an error: such a rate may be meant."""
    span, n = _arrival_span_s(trace), len(trace)
    if n >= MIN_REQUESTS_FOR_RATE and span > 0 and n / span > IMPLAUSIBLE_RATE_RPS:
        prov = trace.provenance
        unit = _likely_unit(trace, time_unit, lambda s: s > 0 and n / s <= IMPLAUSIBLE_RATE_RPS, finer=False)
        fix = f"--workload-time-unit {unit}, if they are in {unit}" if unit else "--workload-time-unit"
        LOG.warning("kvsim: warning: %s: %s requests arrive within %.3g s (%.3g requests/s on average): are its "
                    "timestamps in another unit? (%s)", prov.path or prov.format, f"{n:,}", span, n / span, fix)


# Whole units a trace's datetimes may all fall on, coarsest first. The publishers' datetime traces are finer than a
# second (Azure 2023/2024: 100 ns to 1 us; Azure's 2025 multimodal trace: ms), so times that all fall on whole
# seconds or minutes, with several requests at each, were cut by a tool (a spreadsheet saved with a "yyyy-mm-dd
# hh:mm" cell format keeps the minutes only), and each group of requests is replayed as one burst.
COARSE_DATETIME_UNITS = ((86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second"))


def warn_if_datetimes_coarse(trace: Trace) -> None:
    """Warn when every datetime of a trace is a whole second (minute, hour, day) from the first, at three distinct
    times or more, and on average at least two requests share each: arrivals quantised by whoever wrote the file,
    which the run replays as bursts. Numeric timestamps are left alone: their resolution is their publisher's
    (BurstGPT's whole seconds)."""
    if trace.provenance.time_unit is not None or trace.provenance.format not in _datetime_formats():
        return
    arrival = trace.arrival_s
    second = COARSE_DATETIME_UNITS[-1][0]
    if np.any(np.fmod(arrival[:4096], second)) or np.any(np.fmod(arrival, second)):  # the usual case: told early
        return
    steps = np.diff(arrival)
    distinct = 1 + int(np.count_nonzero(steps)) if (steps >= 0).all() else len(np.unique(arrival))
    if len(arrival) < 2 * distinct or distinct < 3:  # (relative times: two distinct ones may be a whole unit apart)
        return
    unit, name = next(((u, n) for u, n in COARSE_DATETIME_UNITS if not np.any(np.fmod(arrival, u))), (None, None))
    if unit is not None:
        prov = trace.provenance
        LOG.warning("kvsim: warning: %s: every timestamp is a whole %s (%s requests at %s distinct times), so each "
                    "group arrives at once: were its finer digits cut (a spreadsheet's date format)?",
                    prov.path or prov.format, name, f"{len(arrival):,}", f"{distinct:,}")


def _datetime_formats() -> tuple[str, ...]:
    from trace.formats import FORMATS

    return tuple(name for name, fmt in FORMATS.items() if fmt.time_unit is None)


def require_requests(trace: Trace, after: str) -> None:
    """Every mode needs at least one request: a workload left empty is bad input (exit 2)."""
    if len(trace) == 0:
        from trace.validation import no_usable_requests  # (pyarrow: imported when needed)

        prov = trace.provenance
        raise no_usable_requests(prov.path or prov.format, prov.rows_read, prov.skip_reasons, after, prov.range_dropped)


def with_trace_block_size(config: Config, trace: Trace) -> Config:
    """The run's config at the trace's effective block size: a trace replayed with its own blocks
    (Mooncake, ``workload.block_mismatch: trace``) sizes the cache and the block pool alike."""
    tokens = trace.provenance.block_tokens
    if tokens == block_size(config):
        return config
    if config.serving.block_size is not None:  # (given: the default, null, is the attention backend's)
        LOG.warning("kvsim: note: serving.block_size %d is given, but the trace's block ids are %d-token blocks: the "
                    "run replays them at %d (workload.block_mismatch=trace; 'split' cuts each into %d-token pieces)",
                    config.serving.block_size, tokens, tokens, config.serving.block_size)
    return replace(config, **{"serving.block_size": tokens})
