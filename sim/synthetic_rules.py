"""Rules over the synthetic workload's keys that relate several of them (``sim.config_rules.validate`` applies them).

Each raises a ConfigError naming the keys, before any request is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sim.config_fields import MAX_TRACE_SPAN_S
from sim.errors import ConfigError

if TYPE_CHECKING:
    from sim.config import Config

KEY = "workload.synthetic."


def think_time_log_mean(median_s: float, sigma: float) -> float:
    """ln of the mean of a log-normal think time of this median and sigma: ln(median) + sigma^2 / 2 (inf when
    sigma^2 overflows)."""
    return math.log(median_s) + 0.5 * sigma * sigma


def think_times_within_horizon(c: Config) -> None:
    """A multi-turn workload's mean think time, median x exp(sigma^2 / 2), is at most the longest span a workload may
    have (``MAX_TRACE_SPAN_S``, 34 years). Past it the log-normal is meaningless here: a
    conversation's later turns lie, on average, beyond any run's horizon, so requests no longer arrive at
    ``rate_rps`` (the generator's promise), and from sigma ~37.7 (median 93 s) the mean itself overflows float64
    and half the draws are inf (sigma 1e300 made every gap 0 or inf, and was accepted)."""
    syn = c.workload.synthetic
    if c.workload.trace is not None or syn.kind != "multi-turn":
        return  # the think times are never drawn (another kind's keys keep their defaults: _synthetic_settings_apply)
    median, sigma = syn.think_time_median_s, syn.think_time_sigma
    horizon = math.log(MAX_TRACE_SPAN_S)
    if math.log(median) > horizon:
        raise ConfigError(f"config key '{KEY}think_time_median_s'={median:g} is beyond {MAX_TRACE_SPAN_S:.3g} s "
                          "(34 years), the longest span a workload may have")
    if think_time_log_mean(median, sigma) > horizon:
        most = math.sqrt(2.0 * (horizon - math.log(median)))
        raise ConfigError(f"config key '{KEY}think_time_sigma'={sigma:g} makes the mean think time, "
                          f"think_time_median_s x exp(sigma^2 / 2), exceed {MAX_TRACE_SPAN_S:.3g} s (34 years), the "
                          f"longest span a workload may have: at most {math.floor(most * 1000) / 1000:g} at "
                          f"think_time_median_s={median:g}")


def arrivals_within_horizon(c: Config) -> None:
    """A synthetic workload's requests are expected to span at most ``MAX_TRACE_SPAN_S`` (34 years), checked before
    any is drawn (the span was refused only once all of them had been: 1e8 requests drawn to be told the rate was too
    low). Its requests arrive at ``rate_rps`` on average, so the n drawn (``num_requests``, at most ``workload.limit``)
    span ~(n - 1) / rate_rps; the share ``range_start``..``range_end`` of them kept, at the arrival process's rate
    (``workload.arrivals.rate_rps`` where one is set) times ``workload.rate_scale``, ~(kept - 1) / (rate x scale). The
    drawn span is still checked once drawn (``trace.workload.check_time_span``): a span near the bound may pass or not
    by chance, and a multi-turn workload's think times may spread it further."""
    w = c.workload
    if w.trace is not None:
        return
    syn = w.synthetic
    n = syn.num_requests if w.limit is None else min(syn.num_requests, w.limit)
    count = f"{n:,} requests ({KEY}num_requests" + (", workload.limit)" if w.limit is not None else ")")
    if (n - 1) / syn.rate_rps > MAX_TRACE_SPAN_S:
        raise ConfigError(f"config key '{KEY}rate_rps'={syn.rate_rps:g} is too low for {count}: they would span "
                          f"~{(n - 1) / syn.rate_rps:.3g} s, more than {MAX_TRACE_SPAN_S:.3g} s (34 years)")
    kept = n * (w.range_end - w.range_start)
    drawn = w.arrivals.process != "trace" and w.arrivals.rate_rps is not None
    rate_key, rate = ("workload.arrivals.rate_rps", w.arrivals.rate_rps) if drawn else (f"{KEY}rate_rps", syn.rate_rps)
    span = (kept - 1) / rate / w.rate_scale  # (one at a time: rate x scale underflows to 0 at 1e-200 x 1e-200)
    if span > MAX_TRACE_SPAN_S:
        raise ConfigError(f"config keys '{rate_key}'={rate:g} and 'workload.rate_scale'={w.rate_scale:g} spread "
                          f"~{max(1, round(kept)):,} requests over ~{span:.3g} s, more than {MAX_TRACE_SPAN_S:.3g} s "
                          "(34 years)")
