"""Arrival processes and load scaling, laid over a workload's requests (their order is kept).

``workload.arrivals.process`` replaces the arrival times: ``poisson`` (exponential gaps),
``gamma`` (gamma gaps with coefficient of variation ``cv``: 1 is Poisson, above 1 burstier;
shape k = 1/cv², scale = 1/(rate·k), so the mean gap is 1/rate), or ``resample`` (the
workload's own gaps drawn with replacement, rescaled to the rate: its burstiness at
another load). ``trace`` keeps the workload's own times. Then ``workload.rate_scale``
divides every inter-arrival time (2 = twice the rate), for traces and synthetic
workloads alike. Draws come from their own seeded stream, so switching the process
changes nothing else (lengths, sessions, block ids stay the same).
"""

from __future__ import annotations

import sys

import numpy as np

from sim.config_workload import WorkloadConfig
from sim.errors import ConfigError, UnreadSetting

ARRIVALS_STREAM = 0x41525256  # "ARRV": the arrival draws' seed stream, apart from the generator's


def mean_rate(arrival_s: np.ndarray) -> float | None:
    """Requests per second implied by the mean gap, (n − 1) / duration; None if all arrive at once."""
    n = len(arrival_s)
    duration = float(arrival_s[-1] - arrival_s[0]) if n else 0.0
    return (n - 1) / duration if n > 1 and duration > 0 else None


def draw_arrivals(arrival_s: np.ndarray, workload: WorkloadConfig, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (from 0) of ``workload.arrivals.process`` for these requests, before rate scaling."""
    arrivals = workload.arrivals
    n = len(arrival_s)
    if arrivals.process == "trace" or n < 2:
        return arrival_s
    rate = arrivals.rate_rps if arrivals.rate_rps is not None else mean_rate(arrival_s)
    if rate is None:
        raise ConfigError(f"config key 'workload.arrivals.process'={arrivals.process} draws at the workload's own rate, "
                          "but every request arrives at the same time: set workload.arrivals.rate_rps")
    if arrivals.process == "poisson":
        gaps = rng.exponential(1.0 / rate, n - 1)
    elif arrivals.process == "gamma":
        shape = 1.0 / arrivals.cv**2  # (cv's domain keeps cv² and 1/cv² finite)
        if not rate * shape > 1.0 / sys.float_info.max:  # (its scale 1 / (rate x shape) must be a finite float64)
            raise ConfigError(f"config key 'workload.arrivals.cv'={arrivals.cv:g} at a rate of {rate:g} requests/s: the "
                              "gamma's scale cv²/rate overflows a float64; lower the cv or raise the rate")
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n - 1)
    else:  # resample: the workload's own gap distribution, its mean moved to 1/rate
        own = np.diff(arrival_s)
        if not own.mean() > 0:  # (0 / 0: NaN times, then "arrivals span nan s" blamed on the rate)
            raise ConfigError(f"config key 'workload.arrivals.process'=resample draws the workload's own gaps, but "
                              f"its {n:,} requests all arrive at the same time: every gap is 0, at any rate; draw "
                              "them with poisson or gamma")
        gaps = rng.choice(own / (own.mean() * rate), n - 1, replace=True)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def apply_arrivals(arrival_s: np.ndarray, workload: WorkloadConfig, seed: int) -> np.ndarray:
    """The configured arrival process, then ``rate_scale`` (inter-arrival times divided by it). Domains and
    which settings apply to which process are checked with the config (``sim.config``, ``sim.config_rules``)."""
    arrivals = workload.arrivals
    if arrivals.process != "trace" and len(arrival_s) < 2:  # (as rate_scale below: a run alike)
        # the keys that go with the process first, so that each left unread (a sweep's point) leaves a valid config
        for key, value, neutral in (("cv", arrivals.cv, 1.0), ("rate_rps", arrivals.rate_rps, None),
                                    ("process", arrivals.process, "trace")):
            if value != neutral:
                shown = value if key == "process" else f"{value:g}"
                raise UnreadSetting(f"config key 'workload.arrivals.{key}'={shown} changes nothing: the workload "
                                    "holds one request, which has no gap to draw; drop it", f"workload.arrivals.{key}",
                                    neutral)
    out = draw_arrivals(arrival_s, workload, np.random.default_rng([seed, ARRIVALS_STREAM]))
    if workload.rate_scale != 1.0 and not (len(out) > 1 and out[-1] > out[0]):  # no gap to divide: a run alike
        which = ("holds one request; drop it" if len(out) < 2 else f"has {len(out):,} requests that all arrive at "
                 "once; drop it, or draw arrivals at a rate (workload.arrivals.process, rate_rps)")
        raise UnreadSetting(f"config key 'workload.rate_scale'={workload.rate_scale:g} changes nothing: the workload "
                            f"{which}", "workload.rate_scale", 1.0)
    if workload.rate_scale != 1.0:
        out = (out - out[0]) / workload.rate_scale if len(out) else out
    return np.asarray(out, dtype=np.float64)
