"""Mixture-of-experts routing as the compute models see it: how many distinct experts a step touches.

A step's MoE layer reads the weights of every expert that at least one of its tokens is routed to, so
its memory traffic follows the number of *distinct* experts, not tokens × experts per token. kvsim
does not simulate a gate: it takes the expectation under uniform routing (each token picks
``experts_per_token`` distinct experts of ``experts`` uniformly at random, tokens independently),
which a gate trained with a load-balancing loss approaches. LLMServingSim's default (``BALANCED`` in
``serving/core/gate_function.py``) takes min(tokens × k, experts) instead, the most a step can touch;
the expectation is lower whenever two tokens share an expert.

Data parallelism (``serving.data_parallel_size`` D, vLLM's): the MoE layers of D instances form one group over their D × TP GPUs (expert-parallel with ``enable_expert_parallel``, else
tensor-parallel over D × TP ranks; either way each GPU computes 1/(D × TP) of the group's token-expert
pairs and reads 1/(D × TP) of the weights of the experts the group's tokens touch, in expectation).
The group's instances step in lockstep (``sim.serving.data_parallel``): a step's MoE layers see the
group's G tokens (the ranks' own, padded as vLLM pads them), touching E · (1 − (1 − k/E)^G) experts,
and exchange the group's hidden states by an all-gather and a reduce-scatter every MoE layer (vLLM's
default ``allgather_reducescatter`` all-to-all backend; ``sim.serving.collectives.TensorParallelComm``).
A step priced without its group (``DataParallelShare`` None: the planner's estimates, calibration) takes a
group of D ranks each carrying a step like its own, G = D × T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.model_shape import ModelSpec


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



@dataclass(frozen=True, slots=True)
class DataParallelShare:
    """One rank's part in a lockstep step of its data-parallel group."""

    tokens: int  # tokens this rank's layers compute (its own, padded to the group's largest when vLLM pads)
    group_tokens: int  # Σ over the group's ranks of their ``tokens``: what the MoE layers route


def group_tokens(tokens: float, data_parallel_size: int, share: DataParallelShare | None) -> float:
    """The group's tokens in a step of ``tokens`` tokens: the share's, else D ranks each with ``tokens``."""
    return data_parallel_size * tokens if share is None else share.group_tokens


def rank_experts(group_tokens: float, model: ModelSpec, data_parallel_size: int = 1) -> float:
    """Expected distinct experts per data-parallel rank: of the experts the group's ``group_tokens`` tokens
    touch, the 1/``data_parallel_size`` share one rank's GPUs hold (all of them for D = 1)."""
    touched = expected_distinct_experts(group_tokens, model.num_experts_per_tok, model.num_experts)
    return touched if data_parallel_size == 1 else touched / data_parallel_size
