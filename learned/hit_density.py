"""Hit density (LHD, Beckmann et al., NSDI 2018): a block's expected hits per unit of cache space it
will occupy, P(next use within the horizon | idle so far) / E[space-time until then], from its class's
predicted distribution of the distance to its next use. The horizon is a few of the model expert's own
mean eviction ages (``learned.kernel``), so predictions far beyond what the cache can hold do not matter
(LRB's "Belady boundary"). Idle times are bucketed (four per octave) and each (class, age bucket) entry
of the table is computed on first use after the horizon changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from learned.state_layout import X_HORIZON
from sim.jit import flush_when_sources_change, njit

AGES_PER_OCTAVE = 4  # age_bucket's bit arithmetic assumes 4
AGE_BUCKETS = AGES_PER_OCTAVE * 36  # ages up to 2^36 accesses


@njit(cache=True)
def cdf(dist, edges, x):
    """P(distance <= x): buckets (edges[j], edges[j+1]], log-linear inside; the last bucket
    (beyond the model's horizon) never arrives."""
    k = len(edges) - 1
    if x <= edges[0]:
        return 0.0
    acc = 0.0
    for j in range(k):
        lo = edges[j]
        hi = edges[j + 1]
        if x >= hi:
            acc += dist[j]
        else:
            return acc + dist[j] * (np.log(x / lo) / np.log(hi / lo))
    return acc


@njit(cache=True)
def hit_density(dist, edges, idle, horizon):
    alive = 1.0 - cdf(dist, edges, idle)
    if alive <= 1e-12:
        return 0.0
    hit = cdf(dist, edges, idle + horizon) - (1.0 - alive)
    occupancy = 0.0  # integral of the survival function over (idle, idle + horizon]
    x0, s0 = idle, alive
    points = 8
    for i in range(1, points + 1):
        x1 = idle + horizon * (i / points) ** 2
        s1 = 1.0 - cdf(dist, edges, x1)
        occupancy += 0.5 * (s0 + s1) * (x1 - x0)
        x0, s0 = x1, s1
    return hit / max(occupancy, 1e-9)


@njit(cache=True)
def age_bucket(age):
    """Bucket of an idle time in accesses: four steps per power of two of age + 1 (integer ops only)."""
    if age < 1:  # (a lower tier may see a demoted block's older position: no negative ages)
        return 0
    x = age + 1
    y, e = x, 0  # e = floor(log2(x)), by halving the shift
    for shift in (32, 16, 8, 4, 2, 1):
        if y >> shift:
            y >>= shift
            e += shift
    b = e * AGES_PER_OCTAVE + (((x << 2) >> e) & 3)  # the two bits after the leading one
    return b if b < AGE_BUCKETS else AGE_BUCKETS - 1


@njit(cache=True)
def bucket_age(b):
    """A representative idle time of age bucket ``b`` (its midpoint)."""
    octave, step = b // AGES_PER_OCTAVE, b % AGES_PER_OCTAVE
    return 2.0 ** octave * (1.0 + (step + 0.5) / AGES_PER_OCTAVE) - 1.0 if b > 0 else 0.0


@njit(cache=True)
def density(table, dist, edges, floats, c, a):
    """``table[c, a]``, computed on first use after the horizon changed (NaN: not yet)."""
    hd = table[c, a]
    if hd != hd:
        hd = hit_density(dist[c], edges, bucket_age(a), floats[X_HORIZON])
        table[c, a] = hd
    return hd


flush_when_sources_change(sys.modules[__name__], [Path(__file__).with_name("state_layout.py")])
