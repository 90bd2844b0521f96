"""Mixture-of-experts routing as the compute models see it: how many distinct experts a step touches.

A step's MoE layer reads the weights of every expert that at least one of its tokens is routed to, so
its memory traffic follows the number of *distinct* experts, not tokens × experts per token. kvsim
does not simulate a gate: it takes the expectation under uniform routing (each token picks
``experts_per_token`` distinct experts of ``experts`` uniformly at random, tokens independently),
which a gate trained with a load-balancing loss approaches. LLMServingSim's default (``BALANCED`` in
``serving/core/gate_function.py``) takes min(tokens × k, experts) instead, the most a step can touch;
the expectation is lower whenever two tokens share an expert.
"""

from __future__ import annotations

import math


def expected_distinct_experts(tokens: float, experts_per_token: int, experts: int) -> float:
    """Expected number of distinct experts that ``tokens`` tokens touch, each choosing ``experts_per_token``
    of ``experts`` uniformly (the uniform-routing expectation): E · (1 − (1 − k/E)^T).

    One expert is missed by one token with probability 1 − k/E, by all T independent tokens with
    (1 − k/E)^T; summing over the E experts gives the expectation. T = 1 gives k; T → ∞ gives E.
    """
    if tokens <= 0:
        return 0.0
    if experts_per_token >= experts:
        return float(experts)
    # (1 - k/E)^T as exp(T log1p(-k/E)), accurate for small k/E and any T
    return -experts * math.expm1(tokens * math.log1p(-experts_per_token / experts))

