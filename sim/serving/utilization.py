"""What an instance computed: step totals, the FLOPs and bytes they amount to, and the batch sizes.

``WorkTotals`` adds up each step's ``StepShape`` aggregates (a decode window of K steps in
O(1)); ``WorkCounter`` turns them into FLOPs and memory bytes per GPU (weights, activations, KV reads, LM head;
collectives are communication, not counted), so MFU = FLOPs / (peak FLOP/s × time) and memory-bandwidth
utilisation = bytes / (peak bandwidth × time) follow for every compute backend: with a
profiled backend the time is the profile's and the FLOPs and bytes are still the model's.
FLOPs are model FLOPs (PaLM, Chowdhery et al. 2022, appendix B: the model's work, no padding or recomputation):
each step's own tokens through the layers, k routed experts a token, attention, the LM head. Bytes are those the
roofline charges the steps, padding included: padded rows move real weights and activations.
Batch sizes (tokens and sequences per step) are kept as value → steps histograms.

A data-parallel group's step (``sim.serving.data_parallel``) is priced with the rank's ``DataParallelShare``: its
layers run its padded tokens, its MoE layers this GPU's share of the group's padded expert rows, distinct experts and
activations. Those steps are kept by share ((tokens, group tokens) → steps) and their bytes counted as priced, so a
rank whose peers idle is not credited with D ranks' expert traffic; their FLOPs are the rank's own tokens' and a 1/D
share of the expert pairs of the group's unpadded tokens, so D ranks count what D lone instances with their tokens
would. A member with nothing to run takes a dummy step (vLLM ``execute_dummy_batch``: a forward pass of its padded
dummy tokens, the experts on the group's tokens, no attention, no LM head), as long as the group's step: busy time, a
step, its share's bytes and expert FLOPs, but no batch of the histograms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.config import Config
from sim.kv_dtype import kv_dtype_bytes
from sim.model_shape import DTYPE_BYTES
from sim.report.metrics import histogram_distribution
from sim.serving.compute import RooflineCompute
from sim.serving.moe import DataParallelShare, group_tokens
from sim.serving.step_shape import StepShape, window_sliding_kv_tokens
from sim.specs import gpu_spec, model_spec

if TYPE_CHECKING:
    from sim.serving.decode_windows import DecodeWindow
    from sim.serving.instance import Instance


@dataclass(slots=True)
class ScheduledWork:
    """Running sums, over the instances whose ``WorkTotals`` add to it (``tally``), of what a timeline samples: the
    batches scheduled (dummy steps aside), their tokens and their sequences (logit rows).

    A step counts from its start, as a single step adds itself when it starts. A decode window's steps are added when
    it ends, so the samples taken while it ran (``sampled``: the time of the timeline's latest sample kept) are given
    the steps that had started before each (``book_back``, the timeline's ``Timeline.book_back``)."""

    steps: int = 0
    tokens: int = 0
    seqs: int = 0
    sampled: float = -math.inf
    book_back: Callable[[DecodeWindow, int], None] | None = None

    def add_window(self, window: DecodeWindow, seqs: int) -> None:
        """The ``window.steps`` steps of ``window``, of ``seqs`` sequences (and tokens) each."""
        steps = window.steps
        decoded = seqs * steps
        self.steps += steps
        self.tokens += decoded
        self.seqs += decoded
        if window.start < self.sampled:  # (a sample was taken while it ran)
            self.book_back(window, seqs)


@dataclass(slots=True)
class WorkTotals:
    """Sums over an instance's steps of the aggregates the roofline prices."""

    steps: int = 0  # forward passes, dummy steps included
    busy_s: float = 0.0
    dummy_steps: int = 0  # a data-parallel member's steps with nothing of its own to run
    layer_tokens: int = 0  # tokens the layers ran: a data-parallel share's padded tokens, else the step's own
    # a data-parallel group's steps (dummy ones too) by the share each was priced with: (tokens, group tokens) -> steps
    shares: dict[tuple[int, int], int] = field(default_factory=dict)
    # Σ over those steps of the group's unpadded tokens (``DataParallelShare.unpadded_group_tokens``): the tokens whose
    # routed experts are model FLOPs, a 1/D share of them this rank's
    unpadded_group_tokens: int = 0
    prefill_tokens: int = 0
    prefill_pairs: float = 0.0  # causal (query, key) pairs of prefill attention
    prefill_kv_tokens: int = 0
    decode_tokens: int = 0  # = decoding sequences summed over steps
    decode_kv_tokens: int = 0
    logit_rows: int = 0
    tokens_per_step: dict[int, int] = field(default_factory=dict)  # tokens -> steps
    seqs_per_step: dict[int, int] = field(default_factory=dict)  # sequences -> steps
    # DeepSeek sparse attention: the pairs the attention computes, each step's own bound (RooflineCompute
    # selected_pairs: min(pairs, queries x index_topk)) summed; the run's totals would bound far more loosely
    index_topk: int | None = None
    prefill_selected: float = 0.0
    decode_selected: float = 0.0
    # a hybrid model's sliding-window layers: the same sums with each query's keys cut to the window
    # (``StepShape.sliding``)
    sliding_prefill_pairs: float = 0.0
    sliding_prefill_kv_tokens: int = 0
    sliding_decode_kv_tokens: float = 0.0
    # the role's sums a timeline samples (``sim.serving.timeline``), kept as the counters change: a sample reads
    # them instead of every instance's counters (a fleet's 10,240)
    tally: ScheduledWork | None = field(default=None, compare=False, repr=False)

    def add_step(self, shape: StepShape, duration: float, share: DataParallelShare | None = None) -> None:
        """A step of ``shape`` that took ``duration`` seconds (``share``: priced as a data-parallel group's)."""
        if self.index_topk is not None:
            self.prefill_selected += min(shape.prefill_pairs, shape.prefill_tokens * self.index_topk)
            self.decode_selected += min(shape.decode_kv_tokens, shape.decode_seqs * self.index_topk)
        if shape.sliding is not None:
            self.sliding_prefill_pairs += shape.sliding.prefill_pairs
            self.sliding_prefill_kv_tokens += shape.sliding.prefill_kv_tokens
            self.sliding_decode_kv_tokens += shape.sliding.decode_kv_tokens
        self.steps += 1
        self.busy_s += duration
        self._add_layer_tokens(shape.tokens, 1, share)
        self.prefill_tokens += shape.prefill_tokens
        self.prefill_pairs += shape.prefill_pairs
        self.prefill_kv_tokens += shape.prefill_kv_tokens
        self.decode_tokens += shape.decode_seqs
        self.decode_kv_tokens += shape.decode_kv_tokens
        rows = shape.prefill_seqs + shape.decode_seqs
        self.logit_rows += rows
        tokens = shape.prefill_tokens + shape.decode_seqs
        self.tokens_per_step[tokens] = self.tokens_per_step.get(tokens, 0) + 1
        self.seqs_per_step[rows] = self.seqs_per_step.get(rows, 0) + 1
        tally = self.tally
        if tally is not None:
            tally.steps += 1
            tally.tokens += tokens
            tally.seqs += rows

    def add_decode_window(self, first: StepShape, steps: int, duration: float,
                          share: DataParallelShare | None = None, window: DecodeWindow | None = None) -> None:
        """``steps`` decode steps, the first of shape ``first`` and each next one with one more KV token in every
        sequence (``share``: each priced as a data-parallel group's with it); ``window``: the decode window they ran
        in, whose step times a timeline's samples read (``ScheduledWork.add_window``; needed where ``tally`` is set)."""
        seqs, first_kv_tokens = first.decode_seqs, first.decode_kv_tokens
        if first.sliding is not None:
            self.sliding_decode_kv_tokens += float(window_sliding_kv_tokens(first, steps).sum())
        if self.index_topk is not None:
            kv = first_kv_tokens + seqs * np.arange(steps, dtype=np.int64)
            self.decode_selected += float(np.minimum(kv, seqs * self.index_topk).sum())
        self.steps += steps
        self.busy_s += duration
        self._add_layer_tokens(seqs, steps, share)
        decoded = seqs * steps
        self.decode_tokens += decoded
        self.decode_kv_tokens += first_kv_tokens * steps + decoded * (steps - 1) // 2
        self.logit_rows += decoded
        per_step = self.tokens_per_step
        per_step[seqs] = per_step.get(seqs, 0) + steps
        per_step = self.seqs_per_step
        per_step[seqs] = per_step.get(seqs, 0) + steps
        tally = self.tally
        if tally is not None:
            tally.add_window(window, seqs)

    def add_dummy_steps(self, share: DataParallelShare, steps: int, duration: float) -> None:
        """``steps`` dummy steps of a data-parallel member with nothing to run, priced with ``share``, in the group's
        ``duration`` seconds."""
        self.steps += steps
        self.dummy_steps += steps
        self.busy_s += duration
        self._add_layer_tokens(0, steps, share)

    def _add_layer_tokens(self, tokens: int, steps: int, share: DataParallelShare | None) -> None:
        if share is None:
            self.layer_tokens += tokens * steps
            return
        self.layer_tokens += share.tokens * steps
        self.unpadded_group_tokens += share.unpadded_group_tokens * steps
        key = (share.tokens, share.group_tokens)
        self.shares[key] = self.shares.get(key, 0) + steps


class WorkCounter:
    """FLOPs and bytes per GPU of ``WorkTotals``, as ``RooflineCompute`` counts them per step."""

    def __init__(self, roofline: RooflineCompute):
        r, m = roofline, roofline.model
        tp = r.tensor_parallel_size
        self.roofline = r
        self.layers = m.num_layers
        self.linear_flops_per_token = 2 * r.layer_params / tp + 2 * r.replicated_params
        self.attn_flops_per_pair = r.attn_flops_per_pair  # decode pairs (MLA: prefill pairs differ, attention_flops)
        self.layer_weight_bytes = r.layer_weight_bytes
        self.act_bytes_per_token = r.act_bytes_per_token / tp
        self.moe_layers = m.moe_layers
        if self.moe_layers:  # per-layer means over dense and MoE layers
            dense, moe, layers = self.layers - self.moe_layers, self.moe_layers, self.layers
            # a data-parallel group's steps: per token of the rank's own the layers' work without the routed experts'
            self.own_flops_per_token = (dense * self.linear_flops_per_token + moe * r.moe_own_flops_per_token) / layers
            self.own_act_bytes_per_token = (dense * self.act_bytes_per_token
                                            + moe * r.shared_act_bytes_per_token) / layers
            self.linear_flops_per_token = (dense * self.linear_flops_per_token + moe * r.moe_flops_per_token) / layers
            self.act_bytes_per_token = (dense * self.act_bytes_per_token + moe * r.moe_act_bytes_per_token) / layers
        self.kv_bytes_per_token_layer = r.kv_bytes_per_token_layer
        # each layer's norms, rotary embedding and activation (``sim.serving.elementwise``), attention or GDN layer;
        # a data-parallel group's experts' kernels per own token of D ranks of one token each, as the GEMMs' above
        self.elementwise_bytes_per_token = r.elementwise.step_bytes(1, r.data_parallel_size)
        self.head_flops_per_row = 2 * m.vocab_size * m.hidden_size / tp
        self.head_weight_bytes = m.vocab_size * m.hidden_size * r.dtype_bytes / tp
        self.peak_flops = r.gpu.peak_flops
        self.peak_bandwidth = r.gpu.memory_bandwidth

    def _grouped(self, w: WorkTotals) -> bool:
        """``w``'s steps were priced with a data-parallel group's shares (an MoE layer's expert work then follows the
        group's tokens, not the rank's own)."""
        if not w.shares or not self.moe_layers:
            return False
        if sum(w.shares.values()) != w.steps:
            raise ValueError(f"{w.steps} steps of which {sum(w.shares.values())} in a data-parallel group: an instance "
                             "steps alone or in its group")
        return True

    def _linear_terms(self, w: WorkTotals) -> tuple[float, float]:
        """One layer's (mean over the layers) linear model FLOPs per own token, and the routed experts' over the
        steps where they follow a data-parallel group's tokens (0: counted per token): this GPU's 1/D share of the
        group's unpadded tokens' k experts each, whether it holds E/D whole experts (uniform routing's expectation)
        or 1/(D x TP) of every expert's width, so that D ranks count what D instances alone would."""
        if not self._grouped(w):
            return self.linear_flops_per_token, 0.0
        r = self.roofline
        pairs = r.expert_flops_per_token * w.unpadded_group_tokens / r.data_parallel_size
        return self.own_flops_per_token, self.moe_layers * pairs / self.layers

    def _activation_bytes(self, w: WorkTotals) -> float:
        """One layer's (mean over the layers) activation bytes over the steps, the elementwise kernels' included:
        per token the layers ran, and with a data-parallel group's steps the routed experts' GEMMs and kernels on
        the group's tokens (``RooflineCompute.moe_layer_time``, ``elementwise_time``)."""
        if not self._grouped(w):
            return (self.act_bytes_per_token + self.elementwise_bytes_per_token) * w.layer_tokens
        r = self.roofline
        group = sum(steps * tokens for (_, tokens), steps in w.shares.items())
        routed = self.moe_layers * r.fused.activation_bytes(group) / self.layers
        return self.own_act_bytes_per_token * w.layer_tokens + r.elementwise.step_bytes(w.layer_tokens, group) + routed

    def _per_step_selection(self, w: WorkTotals) -> bool:
        """The steps' sparse-attention selections were summed for this model (else the totals bound them)."""
        return self.roofline.index_topk is not None and w.index_topk == self.roofline.index_topk

    def flops(self, w: WorkTotals) -> float:
        """Model FLOPs (PaLM's MFU, Chowdhery et al. 2022, appendix B: the model's work, no padding): the layers on
        the steps' own tokens, the routed experts on each token's k experts, attention, the LM head; a CUDA graph's
        padding, a dummy step's token and the fused-MoE kernel's block padding are priced, not counted."""
        tokens = w.prefill_tokens + w.decode_tokens
        per_token, experts = self._linear_terms(w)
        context = w.prefill_kv_tokens - w.prefill_tokens
        r = self.roofline
        if self._per_step_selection(w):  # (as RooflineCompute.attention_flops of each step, summed)
            attention = (r.attn_flops_per_pair * (w.prefill_selected + w.decode_selected)
                         + r.index_flops_per_pair * (w.prefill_pairs + w.decode_kv_tokens))
        else:
            attention = r.attention_flops(w.prefill_pairs, w.decode_kv_tokens, context, w.prefill_tokens,
                                          w.decode_tokens)
        if r.sliding_layers:  # a hybrid model: its sliding-window layers' pairs are cut to the window
            sliding = r.attention_flops(w.sliding_prefill_pairs, w.sliding_decode_kv_tokens,
                                        w.sliding_prefill_kv_tokens - w.prefill_tokens)
            return (self.layers * per_token * tokens + self.layers * experts + r.full_layers * attention
                    + r.sliding_layers * sliding + self.head_flops_per_row * w.logit_rows)
        if r.gdn is not None:  # attention in the attention layers; the GDN layers' own projections and mixer
            gdn = r.gdn
            mixer = gdn.mixer_flops(w.prefill_tokens, w.decode_tokens) + 2 * gdn.projection_delta * tokens
            return (self.layers * per_token * tokens + self.layers * experts + r.full_layers * attention
                    + gdn.layers * mixer + self.head_flops_per_row * w.logit_rows)
        per_layer = per_token * tokens + attention + experts
        return self.layers * per_layer + self.head_flops_per_row * w.logit_rows

    def weight_bytes(self, w: WorkTotals) -> float:
        """One layer's weights read over the steps (mean over layers): an MoE layer reads the experts each step's
        tokens touch, so its share follows the steps' token counts (a data-parallel group's: its share of the experts
        the group's tokens touch)."""
        if not self.moe_layers:
            return self.layer_weight_bytes * w.steps
        r = self.roofline
        if self._grouped(w):
            moe = sum(steps * r.moe_weight_bytes(group) for (_, group), steps in w.shares.items())
        else:  # (steps priced without their group: D ranks each like this one, as ``moe_layer_time`` takes them)
            moe = sum(steps * r.moe_weight_bytes(group_tokens(tokens, r.data_parallel_size, None))
                      for tokens, steps in w.tokens_per_step.items())
        dense = self.layer_weight_bytes * w.steps
        return ((self.layers - self.moe_layers) * dense + self.moe_layers * moe) / self.layers

    def bytes(self, w: WorkTotals) -> float:
        """Weights read once per step and layer, activations (the elementwise kernels' too), the KV each step's
        attention reads, and the LM head's weights once per scheduled step (a dummy step computes no logits)."""
        kv = w.prefill_kv_tokens + w.decode_kv_tokens + w.decode_tokens
        kv_bytes = self.kv_bytes_per_token_layer * kv
        if self._per_step_selection(w):  # the indexer reads every key, a decode's attention its top-k latents
            r = self.roofline
            kv_bytes = (r.index_bytes_per_token_layer * kv
                        + r.latent_bytes_per_token_layer * (w.prefill_kv_tokens + w.decode_selected + w.decode_tokens))
        if self.roofline.sliding_layers:  # a hybrid model's sliding-window layers read their window's keys
            r = self.roofline
            sliding = self.kv_bytes_per_token_layer * (w.sliding_prefill_kv_tokens + w.sliding_decode_kv_tokens
                                                       + w.decode_tokens)
            kv_bytes = (r.full_layers * kv_bytes + r.sliding_layers * sliding) / self.layers
        if self.roofline.gdn is not None:  # GDN layers: every scheduled sequence's state read and written, no KV
            r, gdn = self.roofline, self.roofline.gdn
            own = gdn.state_traffic(w.logit_rows) + gdn.projection_delta * r.linear_bytes * w.steps
            kv_bytes = (r.full_layers * kv_bytes + gdn.layers * own) / self.layers
        per_layer = self.weight_bytes(w) + self._activation_bytes(w) + kv_bytes
        return self.layers * per_layer + self.head_weight_bytes * (w.steps - w.dummy_steps)


def work_counter(config: Config) -> WorkCounter:
    """The roofline's FLOP and byte counts for the configured model, GPU, dtypes and TP degree. ``WorkCounter``
    reads counts alone (and the GPU's peaks), none of the roofline's prices: no efficiency or floor changes a count.
    The run's efficiencies (``compute.*``) are passed all the same, the roofline having no default for them."""
    model, c = model_spec(config.model), config.compute
    kv = kv_dtype_bytes(model, config.serving.dtype, config.serving.kv_cache_dtype)
    roofline = RooflineCompute(model, gpu_spec(config.hardware.gpu), DTYPE_BYTES[config.serving.dtype],
                               kv, config.serving.tensor_parallel_size, flops_efficiency=c.flops_efficiency,
                               bandwidth_efficiency=c.bandwidth_efficiency,
                               data_parallel_size=config.serving.data_parallel_size,
                               expert_parallel=config.serving.enable_expert_parallel)
    return WorkCounter(roofline)


def utilization_basis(config: Config) -> str:
    """The report's one-line account of what MFU and MBU count (``WorkCounter``: model FLOPs, priced bytes)."""
    if config.compute.backend == "roofline":
        return ("roofline: model FLOPs of each step (its own tokens, no padding) and the bytes the roofline charges "
                "it (padding included), over simulated time")
    return ("profiled: step times from the profile; model FLOPs (no padding) and the bytes the roofline would "
            "charge, counted from the model shape (the profile measures time only)")


def time_share(part_s: float, whole_s: float) -> float:
    """``part_s / whole_s`` for a share of the run's time that cannot exceed it (an instance's busy seconds, its
    block-seconds over its blocks): a sum of many step durations can pass the makespan by a rounding error (0.1 + 0.2
    over 0.3 s is 1.0000000000000002), reported as 1. A larger excess stays, for the checker to see."""
    if whole_s <= 0:
        return math.nan
    share = part_s / whole_s
    return 1.0 if 1.0 < share <= 1.0 + 1e-9 else share


def instance_metrics(instances: Sequence[Instance], counters: Mapping[str, WorkCounter], makespan: float,
                     end: float) -> dict[str, Any]:
    """Per instance: busy fraction, MFU and memory-bandwidth utilisation (over the run and while busy; FLOPs and
    bytes per GPU as ``counters`` count them for its role, at its TP), time-weighted mean and peak KV-cache occupancy;
    and their means over instances."""
    each = []
    for inst in instances:
        w, pool, counter = inst.work, inst.pool, counters[inst.role]
        flops, nbytes = counter.flops(w), counter.bytes(w)
        each.append({
            "index": inst.index,
            "role": inst.role,
            "steps": w.steps,
            "busy_fraction": time_share(w.busy_s, makespan),
            "mfu": flops / (counter.peak_flops * makespan) if makespan > 0 else math.nan,
            "mfu_busy": flops / (counter.peak_flops * w.busy_s) if w.busy_s > 0 else math.nan,
            "mbu": nbytes / (counter.peak_bandwidth * makespan) if makespan > 0 else math.nan,
            "mbu_busy": nbytes / (counter.peak_bandwidth * w.busy_s) if w.busy_s > 0 else math.nan,
            "kv_usage_mean": time_share(pool.block_seconds_until(end), pool.total * makespan),
            "kv_usage_peak": pool.peak / pool.total,
            "flops": flops,
            "bytes": nbytes,
        })
    return {
        "mfu_mean": float(np.mean([e["mfu"] for e in each])),
        "mbu_mean": float(np.mean([e["mbu"] for e in each])),
        "kv_usage_mean": float(np.mean([e["kv_usage_mean"] for e in each])),
        "each": each,
    }


def batch_metrics(instances: Sequence[Instance]) -> dict[str, dict[str, dict[str, float]]]:
    """Distribution over steps of the tokens and sequences per step, per instance role."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for role in dict.fromkeys(inst.role for inst in instances):
        group = [inst.work for inst in instances if inst.role == role]
        out[role] = {key: histogram_distribution([getattr(w, key) for w in group])
                     for key in ("tokens_per_step", "seqs_per_step")}
    return out
