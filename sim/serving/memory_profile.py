"""One GPU's KV-cache budget as vLLM 0.33 computes it at start-up.

vLLM (``Worker.determine_available_memory``, vllm/v1/worker/gpu_worker.py) gives the KV cache

    requested_memory − non_kv_cache_memory − cudagraph_memory_estimate

- ``requested_memory`` = ceil(total × gpu_memory_utilization), ``total`` the device's *reported* memory
  (``request_memory``, vllm/v1/worker/utils.py; ``MemorySnapshot`` reads ``torch.accelerator.get_memory_info``):
  ``GPUSpec.reported_memory``, below the marketed size.
- ``non_kv_cache_memory`` = ``total_consumed + transient_peak_headroom`` (``memory_profiling``,
  vllm/utils/mem_utils.py): the free memory the process used up from the worker's snapshot to the end of the profile
  run (the weights, ``model_memory_usage``; buffers kept, such as the Triton top-k/top-p buffer; memory allocated
  outside torch in that span) plus the torch peak above what stays allocated (the profile run's activations). The
  snapshot is taken after the CUDA context, NCCL and the cuBLAS handles exist (``Worker.init_device``), so these sit
  in the (1 − utilization) headroom and are not subtracted.
- ``cudagraph_memory_estimate`` (``GPUModelRunner.profile_cudagraph_memory``), applied by default since v0.21
  (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``=1, vllm/envs.py): per graph mode, the memory the largest capture
  took (``first_capture``) and the second's × (graphs − 1) (``per_graph``, at least 1 MiB); FULL and PIECEWISE share
  one pool, so the larger first capture counts once.

The profile run (``GPUModelRunner.profile_run``) is one forward pass of ``max_num_batched_tokens`` tokens
(``_dummy_run``) spread over min(max_num_seqs, tokens) requests, then the sampler on one row of logits a request
(``_dummy_sampler_run``); a multimodal model's (``ModelSpec.vision_tower``) first runs its vision encoder on the
largest dummy images the encoder budget holds and keeps their pixels and outputs through both (none under
``serving.language_model_only``, vLLM's --language-model-only, which loads no tower either). kvsim derives each term
from the model's shapes (``activation_peak``) and the run's settings; what vLLM measures on the device and kvsim
cannot derive (memory allocated outside torch, a graph's own memory) are constants from public vLLM logs, named below.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sim.config import Config
from sim.errors import ConfigError
from sim.model_shape import DTYPE_BYTES, GIB, ModelSpec
from sim.rope_caches import RopeCache
from sim.serving.moe import expert_width_split
from sim.specs import canonical_gpu, gpu_spec, model_spec
from sim.vision_towers import without_vision_tower

LOG = logging.getLogger("kvsim.memory")

FP32 = 4
# Memory allocated outside torch from the worker's snapshot to the end of the profile run (kernel modules loaded by
# the first forward pass, library workspaces): vLLM logs it as non_torch_memory; 0.16 GiB on an H100 at TP 1 (vLLM PR
# #12126, github.com/vllm-project/vllm/pull/12126: "non_torch_memory takes 0.16GiB"), 0.20 GiB on 24 GB GPUs at TP 4
# (vLLM PR #14447's log: "non_torch_memory takes 0.20GiB"). The band's low end, the TP-1 figure: NCCL's buffers were
# counted in the TP-4 one, and vLLM 0.33 creates them before its snapshot.
NON_TORCH_BYTES = int(0.16 * GIB)
# One CUDA graph's own memory per decoder layer (a graph's kernel nodes grow with the layers: one FULL graph holds
# them all, PIECEWISE captures one piece a layer), from vLLM 0.21's log of Qwen3-8B (36 layers, hidden 4096,
# intermediate 12288) on an RTX A5000 (LMCache issue #3430, github.com/LMCache/LMCache/issues/3430): "Profiling CUDA
# graph memory: PIECEWISE=51 (largest=512), FULL=35 (largest=256)", "Estimated CUDA graph memory: 0.52 GiB total".
# There first_capture = the 512-token forward's peak, 512 × (4096 + 3 × 12288) × 2 B = 41,943,040 B
# (``forward_peak``), and the 50 + 34 later graphs took (0.52 GiB − that) / 84 = 6,147,651 B each, / 36 layers:
CUDAGRAPH_BYTES_PER_GRAPH_LAYER = 170_768
CUDAGRAPH_MIN_PER_GRAPH = 1 << 20  # vLLM's floor: "Use at least 1 MiB per graph for driver overhead"
# vLLM's default max_cudagraph_capture_size ceiling: 1,024 on data-centre Blackwell (device capability family 100),
# else 512 (VllmConfig._set_cudagraph_sizes, vllm/config/vllm.py): B200 and GB200's B200, both 10.0
CAPTURE_CEILING_SM100 = ("b200", "gb200")
# The Triton top-k/top-p kernel's buffer (apply_top_k_top_p_triton, v1/sample/ops/topk_topp_triton.py): one fp32 row
# of the vocabulary per program, min(next power of 2 of min(SMs, rows), SMs) rows, kept once made (``num_sm`` =
# ``num_compute_units``: the GPU's SM count, profiles/gpus.yaml ``sm_count``). A GPU whose SM count is not known
# takes 128 programs, an RTX 4090's (128 SMs), the figure kvsim used on every GPU before it read the count
TOPK_TOPP_PROGRAMS_UNKNOWN_SMS = 128


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """The terms of one GPU's KV budget, bytes (vLLM's names beside each)."""

    requested: int  # requested_memory: ceil(reported total × gpu_memory_utilization)
    weights: int  # model_memory_usage ("Model loading took X GiB")
    activation: int  # transient_peak_headroom (the profile run's torch peak) and the sampler's kept buffer
    non_torch: int  # memory allocated outside torch after the snapshot
    cudagraph: int  # cudagraph_memory_estimate

    @property
    def kv_bytes(self) -> int:
        """"Available KV cache memory": what is left for KV blocks."""
        return self.requested - self.weights - self.activation - self.non_torch - self.cudagraph


def activation_bytes(dtype: str) -> int:
    """Bytes of one activation value: the model dtype's, bf16 for an FP8 checkpoint (its activations stay bf16)."""
    return DTYPE_BYTES[dtype] if dtype != "fp8" else 2


def rope_cache_bytes(model: ModelSpec, dtype: str) -> int:
    """The rotary embedding's cos/sin caches (vLLM's ``RotaryEmbedding.cos_sin_cache``, one per distinct
    ``get_rope`` key in ``_ROPE_DICT``), loaded with the weights: Llama-3.1-8B's one, 131,072 × 128 × 2 B = 32 MiB, is
    the gap between "Model loading took 14.99 GiB" and its 14.96 GiB of parameters. ``ModelSpec.rope_caches`` lists
    them where a model has others (``sim.rope_caches``: Gemma 3's sliding and full-attention ones, the latter 8 × max
    positions long under linear scaling; DeepSeek-V3.2's indexer's; gpt-oss's in fp32); else one of max positions ×
    the rotary dim in the model dtype, the rotary dim what ``get_rope`` turns, int(head_dim × partial_rotary_factor)
    (``ModelSpec.rotary_dim``: Qwen3-Next's 262,144 × 64 × 2 B = 32 MiB, not 128 MiB), MLA's qk_rope_head_dim; Qwen3.5's
    ``MRotaryEmbedding`` caches max positions × ``positions_factor`` rows, 1 unless video pruning is on
    (qwen3_vl.py ``mrope_positions_factor``), as here. None for a model without a rotary embedding
    (``ModelSpec.position_encoding``: BLOOM's ALiBi, OPT's learned table, a weight counted in num_parameters). A vision
    tower's own cache beside them (``VisionTower.rope_cache_values``)."""
    act = activation_bytes(dtype)
    rotary = model.qk_rope_head_dim if model.is_mla else model.rotary_dim or model.head_dim
    caches = model.rope_caches or (RopeCache(model.max_position_embeddings, rotary),)
    if model.position_encoding != "rope":
        caches = ()
    vision = model.vision_tower.rope_cache_values if model.vision_tower is not None else 0
    return sum(cache.nbytes(act) for cache in caches) + vision * act


def forward_peak(model: ModelSpec, tokens: int, tp: int, dp: int, act: int, expert_parallel: bool = True) -> int:
    """The most activation bytes live at once in a forward pass of ``tokens`` tokens on one TP rank: the largest of
    a decoder layer's stages, each the residual stream (hidden) and the tensors that stage holds together.

    - attention (q/k/v): the residual, the normed input, the qkv projection's output and the attention output;
      MLA: the query (heads × (nope + rope)), the latent (kv_lora + rope) and the keys and values it expands to
      (heads × (nope + v)), and the output (heads × v);
    - dense MLP: the residual, gate_up's output (2 × intermediate) and the activation's (intermediate) (a plain
      MLP: up's and the activation's);
    - MoE (vLLM's fused experts, ``TritonExperts.workspace_shapes``): the residual and the input, workspace13
      (tokens × top-k × max(2 × width, hidden)), workspace2 (tokens × top-k × width) and the output, width the
      expert's intermediate per rank (``sim.serving.moe.expert_width_split``: split over TP, whole on an
      expert-parallel rank, split over D × TP without ``expert_parallel``)."""
    h = model.hidden_size
    heads = max(1, model.num_attention_heads // tp)
    if model.is_mla:
        nope, rope, v = model.qk_nope_head_dim, model.qk_rope_head_dim, model.v_head_dim
        attention = 2 * h + heads * (nope + rope) + model.kv_lora_rank + rope + heads * (nope + v) + heads * v
    else:
        kv_heads = max(1, model.num_kv_heads // tp)
        attention = 2 * h + (heads + 2 * kv_heads) * model.head_dim + heads * model.head_dim
    stages = [attention]
    if not model.is_moe or model.moe_layers < model.num_layers:
        width = model.intermediate_size // tp
        stages.append(h + (3 if model.gated_mlp else 2) * width)
    if model.is_moe:
        width = model.moe_intermediate_size // expert_width_split(tp, dp, expert_parallel)
        topk = model.num_experts_per_tok
        stages.append(3 * h + topk * (max(2 * width, h) + width))
    return tokens * max(stages) * act


def activation_peak(config: Config, model: ModelSpec, seqs: int, tokens: int, tp: int, dp: int, act: int,
                    expert_parallel: bool = True) -> int:
    """The profile run's torch peak above what stays allocated: the language model's forward or the sampler, whichever
    is larger; with a vision tower (``sim.vision_towers``) the larger of the encoder's pass and that peak on top of
    what the encoder's pass leaves held (the dummy images' pixels and outputs, freed only when profile_run returns)."""
    from sim.serving.engine_limits import max_model_len

    peak = max(forward_peak(model, tokens, tp, dp, act, expert_parallel),
               sampler_peak(model, tokens, min(seqs, tokens), act, gpu_spec(config.hardware.gpu).sm_count))
    tower = model.vision_tower
    if tower is None:
        return peak
    items = tower.items_per_batch(tokens, seqs, max_model_len(config))
    return max(tower.encoder_peak(items, tp, act), tower.held_bytes(items, act) + peak)


def sampler_peak(model: ModelSpec, tokens: int, rows: int, act: int, sm_count: int | None) -> int:
    """The sampler pass of the profile run (``_dummy_sampler_run``) at its peak: the forward's hidden states
    (tokens × hidden, held by ``profile_run``), the logits of ``rows`` requests over the whole vocabulary (gathered
    from the TP ranks) in the model dtype, their fp32 copy (``Sampler.forward``), the fp32 probabilities
    (``forward_native``: softmax) and exponential noise of the same shape (``random_sample``); plus the Triton
    top-k/top-p buffer (one row a program, ``topk_topp_programs``), which stays allocated."""
    vocab = model.vocab_size
    programs = topk_topp_programs(rows, sm_count)
    return tokens * model.hidden_size * act + rows * vocab * (act + 3 * FP32) + programs * vocab * FP32


def topk_topp_programs(rows: int, sm_count: int | None) -> int:
    """Rows of the Triton top-k/top-p kernel's kept buffer for a batch of ``rows``: min(next power of 2 of
    min(SMs, rows), SMs) (``apply_top_k_top_p_triton``)."""
    sms = sm_count if sm_count is not None else TOPK_TOPP_PROGRAMS_UNKNOWN_SMS
    return min(1 << max(0, min(sms, rows) - 1).bit_length(), sms)


def capture_sizes(max_num_seqs: int, max_num_batched_tokens: int, gpu: str) -> list[int]:
    """vLLM's default ``cudagraph_capture_sizes`` (VllmConfig._set_cudagraph_sizes, no speculative decoding):
    1, 2, 4, then every 8 below 256, every 16 from 256, up to min(2 × max_num_seqs, 512 (1,024 on data-centre
    Blackwell), max_num_batched_tokens), with max_num_batched_tokens and max_num_seqs added where they fit."""
    ceiling = 1024 if canonical_gpu(gpu) in CAPTURE_CEILING_SM100 else 512
    uncapped = min(2 * max_num_seqs, ceiling)
    largest = min(uncapped, max_num_batched_tokens)
    sizes = [n for n in (1, 2, 4) if n <= largest]
    if largest >= 8:
        sizes += range(8, min(largest + 1, 256), 8)
    if largest >= 256:
        sizes += range(256, largest + 1, 16)
    if max_num_batched_tokens <= largest:
        sizes.append(max_num_batched_tokens)
    if max_num_seqs <= uncapped and max_num_seqs <= max_num_batched_tokens:
        sizes.append(max_num_seqs)
    return sorted(set(sizes))


def cudagraph_estimate(model: ModelSpec, sizes: list[int], max_num_seqs: int, tp: int, dp: int, act: int,
                       expert_parallel: bool = True) -> int:
    """vLLM's ``profile_cudagraph_memory`` under FULL_AND_PIECEWISE (the default ``cudagraph_mode``): PIECEWISE
    graphs at every capture size, FULL graphs at the uniform-decode sizes (those ≤ max_num_seqs). The first capture
    of a mode holds the activations of its largest batch in the graph pool (``forward_peak``; the larger mode's,
    as the modes share the pool); each later graph adds its own memory, ``CUDAGRAPH_BYTES_PER_GRAPH_LAYER`` × layers
    (at least vLLM's 1 MiB)."""
    if not sizes:
        return 0
    full = [n for n in sizes if n <= max_num_seqs]
    first = forward_peak(model, max(sizes), tp, dp, act, expert_parallel)
    per_graph = max(CUDAGRAPH_MIN_PER_GRAPH, CUDAGRAPH_BYTES_PER_GRAPH_LAYER * model.num_layers)
    return first + per_graph * (len(sizes) - 1 + max(0, len(full) - 1))


def memory_budget(config: Config, estimate_cudagraphs: bool = True) -> MemoryBudget:
    """The KV budget of one GPU of an instance of ``config`` (``estimate_cudagraphs``=False: as vLLM before 0.21,
    or with VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0, leaves the graphs out; so does ``serving.enforce_eager``:
    ``profile_cudagraph_memory`` returns 0 when no graph is captured)."""
    from sim.serving.engine_limits import batch_limits

    serving = config.serving
    gpu, model = gpu_spec(config.hardware.gpu), model_spec(config.model)
    if serving.language_model_only:
        model = without_vision_tower(model)
    tp, dp = serving.tensor_parallel_size, serving.data_parallel_size
    act = activation_bytes(serving.dtype)
    seqs, tokens = batch_limits(config)
    weights = model.weight_bytes_per_gpu(DTYPE_BYTES[serving.dtype], tp, dp) + rope_cache_bytes(model, serving.dtype)
    ep = serving.enable_expert_parallel
    activation = activation_peak(config, model, seqs, tokens, tp, dp, act, ep)
    graphs = cudagraph_estimate(model, capture_sizes(seqs, tokens, config.hardware.gpu), seqs, tp, dp, act, ep) \
        if estimate_cudagraphs and not serving.enforce_eager else 0
    return MemoryBudget(requested=math.ceil(gpu.reported_memory * serving.gpu_memory_utilization),
                        weights=int(weights), activation=activation, non_torch=NON_TORCH_BYTES, cudagraph=graphs)


def check_activations_fit(config: Config, budget: MemoryBudget) -> None:
    """Exit-2 error where the profile run's activations alone exceed the memory beside the weights: the batch limits
    that size them are what to lower (the KV budget's own message, "leaves -30.6 GiB ...; raise serving.
    tensor_parallel_size or the utilization", named neither them nor their size at max_num_batched_tokens=1,000,000)."""
    from sim.serving.engine_limits import batch_limits

    beside = budget.requested - budget.weights
    if budget.activation < beside:
        return
    seqs, tokens = batch_limits(config)
    raise ConfigError(
        f"{config.hardware.gpu} at gpu_memory_utilization={config.serving.gpu_memory_utilization} leaves "
        f"{beside / GIB:.3g} GiB beside model {config.model}'s weights, less than its profile run's activations "
        f"({budget.activation / GIB:.3g} GiB at serving.max_num_batched_tokens={tokens:,}, max_num_seqs={seqs:,}): "
        "no KV block fits; lower them or raise serving.tensor_parallel_size")


def note_given_capacity(config: Config, blocks: int, block_bytes: int, key: str) -> int:
    """``blocks`` KV blocks given outright (``key``), as the Contract lets a run override the capacity: kept, with a
    note on stderr (once per message) where they could not exist on the device. vLLM allocates an override's blocks
    whatever its profile found (v1/core/kv_cache_planning.py: ``num_gpu_blocks_override`` replaces the available
    memory), so weights that do not load, or blocks that do not fit beside them, would fail at its startup: such a
    run is a what-if, not a deployment. Activations and graphs are left out (only what can never fit is noted)."""
    budget = memory_budget(config)
    device = gpu_spec(config.hardware.gpu).reported_memory
    room = device - budget.weights
    where = (f"{config.hardware.gpu}'s {device / GIB:.1f} GiB beside model {config.model}'s weights "
             f"({budget.weights / GIB:.1f} GiB per GPU)")
    if room < blocks * block_bytes:
        fits = f"at most {room // block_bytes:,}" if room > 0 else "the weights alone do not fit"
        _note_once(f"kvsim: note: {key}: {blocks:,} KV blocks ({blocks * block_bytes / GIB:.1f} GiB) do not fit in "
                   f"{where} ({fits}): simulated as given, a capacity vLLM could not allocate")
    return blocks


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        LOG.warning(message)


def check_fits(config: Config, budget: MemoryBudget) -> None:
    """Exit-2 error where the weights alone exceed the requested memory (the model does not fit)."""
    if budget.requested - budget.weights <= 0:
        model = model_spec(config.model)
        raise ConfigError(
            f"model {config.model} ({budget.weights / GIB:.1f} GiB of weights per GPU) does not fit in "
            f"{config.hardware.gpu} at gpu_memory_utilization={config.serving.gpu_memory_utilization}; raise "
            "serving.tensor_parallel_size" + (" or serving.data_parallel_size" if model.is_moe else ""))
