"""A content fingerprint of a model's training requests, so that a run on a copy, a slice or a re-timed
version of them is refused as the same file's overlapping range is (``LearnedModel.check``).

A run's trace re-interns its block ids on every load and a copy has another file hash, so neither says
whether two traces hold the same requests. What survives copying, slicing and shifting timestamps is
the request sequence itself: each run of ``gram`` consecutive requests (arrival order) is hashed from
their prompt and response token counts into 64 bits (a *gram*). Two independent workloads share a gram
only if eight requests in a row have the same lengths (with lengths in the hundreds to thousands of
tokens, practically never: measured below); a copy or slice shares all of its grams but
those that cross its ends. The sidecar keeps a content-defined sample of the training grams (those
whose hash is 0 modulo ``modulus``, a power of two chosen so that at most ``MAX_HASHES`` are kept): a
run samples its own grams the same way, so the share of its sampled grams found in the sidecar
estimates the share of its requests that were trained on, whatever part of the training range it is.
Grams that occur more than once in their own trace are left out on both sides: a workload of repeated
request shapes (all requests alike) carries no identity to compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trace.request import Trace

# Consecutive requests a gram covers: the first of these at which the training range's own grams are at least
# DISTINCT_SHARE distinct. Measured (benchmarks/probe_overlap.py): between the halves of the Azure conversation
# trace, 10% of single requests' (input, output) pairs recur by chance; of pairs of requests, none (nor on
# Mooncake or the synthetic workloads); eight leaves a wide margin there, and a copy that lost one request in ten
# at random still shares about half of its grams (0.9^7 = 0.48; measured 0.46). A workload of few distinct
# lengths (five prompt sizes, one response size: 77% of 8-request grams distinct) needs longer grams: an
# independent run of the same process meets a training gram by chance about as often as the training range
# meets its own (each gram against as many others), so a range whose grams are 99% distinct bounds the chance
# share near 1%, far below REFUSE_SHARE (measured on that workload: 0.18 at 8 requests, 0.0007 at 12).
GRAMS = (8, 12, 16, 24, 32, 48, 64)
GRAM = GRAMS[0]
DISTINCT_SHARE = 0.99
MAX_HASHES = 4096  # sampled training grams kept (about: the sample is content-defined; ~80 kB of sidecar)
DEFINITION = "request-lengths-v1"  # what a gram hashes: consecutive requests' (input_tokens, output_tokens)
# A run is refused when at least this share of its sampled grams are training grams, i.e. about a tenth of its
# requests lie in runs of a gram's consecutive training requests. Measured (benchmarks/probe_overlap.py): a run on
# other requests shares none (0 of 143-5,028 sampled grams: the Mooncake, Azure and ShareGPT later halves, the
# four synthetic kinds on another seed, Mooncake against the multi-turn workload and back); a copy, a slice or
# a re-timed copy of training requests shares all (1.000), the whole Mooncake file half (0.509), a copy of the
# training half with one request in ten dropped 0.464. Any share well above 0 separates them. A tenth: a run of
# which a tenth or more was trained on is refused, and a legitimate one would need a tenth of its grams (eight
# equal lengths in a row each) to recur by chance, not one stray match; from S sampled grams the share's
# standard error is at most 0.5 / sqrt(S) (0.05 at 100 grams), so a short run of training requests (share 1)
# and one of others (share 0) stay far from it.
REFUSE_SHARE = 0.1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 (wrapping). Its own copy, not ``trace.blocks``': the sidecar's hashes
    must stay what they were if the block model's hashing ever changes (DEFINITION names this one)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def request_grams(trace: Trace, gram: int = GRAM) -> np.ndarray:
    """One uint64 hash per run of ``gram`` consecutive requests (none when the trace has fewer)."""
    n = len(trace)
    if n < gram:
        return np.zeros(0, dtype=np.uint64)
    grams = np.zeros(n - gram + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        inputs, outputs = (np.asarray(a, dtype=np.int64).astype(np.uint64) for a in (trace.input_tokens,
                                                                                   trace.output_tokens))
        per_request = _splitmix64(_splitmix64(inputs) ^ outputs)
        for j in range(gram):
            grams = _splitmix64(grams ^ per_request[j:n - gram + 1 + j])
    return grams


def distinct_once(grams: np.ndarray) -> np.ndarray:
    """The grams that occur exactly once, sorted (a repeated one identifies no particular requests)."""
    values, counts = np.unique(grams, return_counts=True)
    return values[counts == 1]


def sampled(grams: np.ndarray, modulus: int) -> np.ndarray:
    """The content-defined sample: grams whose hash is 0 modulo ``modulus`` (a power of two)."""
    return grams[(grams & np.uint64(modulus - 1)) == 0]


def fingerprint(trace: Trace) -> dict[str, Any]:
    """The sidecar's ``train.fingerprint`` of the training requests, at the shortest gram of ``GRAMS`` whose
    grams are ``DISTINCT_SHARE`` distinct."""
    for gram in GRAMS:
        every = request_grams(trace, gram)
        grams = distinct_once(every)
        if len(grams) >= DISTINCT_SHARE * len(every):
            break
    modulus = 1
    while len(grams) > MAX_HASHES * modulus:
        modulus *= 2
    return {"definition": DEFINITION, "gram": gram, "modulus": modulus,
            "hashes": [f"{int(h):016x}" for h in sampled(grams, modulus)]}


def overlap(hashes: np.ndarray, modulus: int, trace: Trace, gram: int = GRAM) -> tuple[int, int]:
    """(found in ``hashes``, sampled): of ``trace``'s once-occurring grams sampled modulo ``modulus``."""
    mine = sampled(distinct_once(request_grams(trace, gram)), modulus)
    return int(np.isin(mine, hashes, assume_unique=True).sum()), len(mine)
