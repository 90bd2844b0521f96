"""The roofline cost of a hybrid model's Gated DeltaNet layers (``ModelSpec.linear_attention``): a layer kind with
its own projections and its own token mixer, priced beside the attention layers by ``RooflineCompute``.

A GDN layer's linear group is the attention layer's with in_proj_qkvz, in_proj_ba and out_proj in place of q/k/v/o
(``projection_delta``: the difference in weights, on one TP rank); its MLP or MoE is the same. Its token mixer reads
no KV: each scheduled sequence's state (conv and recurrent, ``GatedDeltaNet.state_bytes``) is read once and written
once a step, a decode's by the recurrent kernel and a prefill chunk's at its start and end (vLLM's
fused_recurrent_gated_delta_rule / chunk_gated_delta_rule take the initial state and return the final one), so the
bytes are 2 × state × (prefill chunks + decodes), whatever their lengths; its FLOPs are linear in the tokens
(``GatedDeltaNet.core_flops_per_token``: the chunked form for prefill tokens, the recurrent form for decodes).
The heads and the state divide over the TP ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.model_shape import ModelSpec


@dataclass(frozen=True, slots=True)
class GatedDeltaNetCost:
    """One GDN layer's work on one TP rank."""

    layers: int
    projection_delta: float  # weights: GDN projections less the attention's (q/k/v/o), per rank
    prefill_flops_per_token: float
    decode_flops_per_token: float
    state_bytes: int  # one sequence's state in one layer, per rank

    def mixer_flops(self, prefill_tokens: float, decode_seqs: float) -> float:
        """The delta rule's (and conv1d's) FLOPs of one layer over these tokens."""
        return prefill_tokens * self.prefill_flops_per_token + decode_seqs * self.decode_flops_per_token

    def state_traffic(self, sequences: float) -> float:
        """Bytes one layer moves for ``sequences`` scheduled sequences: each state read and written once."""
        return 2.0 * self.state_bytes * sequences

    def mixer_time(self, prefill_tokens: float, prefill_seqs: float, decode_seqs: float, peak: float,
                   bandwidth: float) -> float:
        """One layer's token mixer for a step: its FLOPs and its states' traffic, combined as the roofline does."""
        if prefill_seqs + decode_seqs == 0:
            return 0.0
        compute = self.mixer_flops(prefill_tokens, decode_seqs) / peak
        return math.hypot(compute, self.state_traffic(prefill_seqs + decode_seqs) / bandwidth)


def gated_delta_net_cost(model: ModelSpec, dtype_bytes: int, tensor_parallel_size: int) -> GatedDeltaNetCost | None:
    """The GDN layers' costs of ``model`` on one of ``tensor_parallel_size`` ranks (None: it has none)."""
    gdn = model.linear_attention
    if gdn is None:
        return None
    tp = tensor_parallel_size
    delta = (gdn.projection_parameters(model.hidden_size) - model.attention_parameters) / tp
    return GatedDeltaNetCost(gdn.layers, delta, gdn.core_flops_per_token(prefill=True) / tp,
                             gdn.core_flops_per_token(prefill=False) / tp, gdn.state_bytes(dtype_bytes, tp))
