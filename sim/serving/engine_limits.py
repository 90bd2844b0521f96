"""The engine's limits on a request (``max_model_len``) and on a step (``max_num_seqs``,
``max_num_batched_tokens``), as vLLM resolves them for ``vllm serve``.

Left unset (null), vLLM picks both by the GPU (``EngineArgs.get_batch_defaults`` and
``_set_default_max_num_seqs_and_batched_tokens_args``, vllm/engine/arg_utils.py, vLLM 0.33.0, the OpenAI API
server's usage context): 1,024 sequences and 16,384 tokens on a GPU of 160 GiB or more (B200), 1,024 and 8,192
on one of 70 GiB or more but an A100 (H100, H200, RTX PRO 6000), 256 and 2,048 on the others (A100, L40S,
RTX 4090). The token default is then capped at ``max_num_seqs × max_model_len``, and the sequence default at the
step's tokens. A value set in the config is kept as it is. So a run on an H100 admits up to 1,024 sequences a
step, as vLLM there does, not 256.

``serving.block_size`` left null is vLLM's for the model and GPU (``sim.serving.attention_backend``: 16 but for
multi-head latent attention on B200, 32, and DeepSeek sparse attention, 64; a Gated DeltaNet hybrid's raised to hold
a state, ``sim.serving.state_groups``); a value set is kept.
"""

from __future__ import annotations

import dataclasses

from sim.config import Config, ServingConfig
from sim.model_shape import GIB
from sim.specs import canonical_gpu, gpu_spec, model_spec

# vLLM 0.33.0 EngineArgs.get_batch_defaults, UsageContext.OPENAI_API_SERVER: (memory floor, seqs, tokens), the
# first tier whose floor the GPU's memory reaches; vLLM's A100 exception keeps that GPU on the small tier
# ("Setting large max_num_batched_tokens for A100 reduces throughput", vLLM PR #17885)
TIERS = ((160 * GIB, 1024, 16384), (70 * GIB, 1024, 8192), (0, 256, 2048))
SMALL_TIER_NAMES = ("a100",)  # matched in the GPU's name, as vLLM matches the device's


def max_model_len(config: Config) -> int:
    """vLLM's ``max_model_len``: ``serving.max_model_len``, by default the model's context length (or its sliding
    window, where narrower: ``ModelSpec.longest_request``)."""
    return config.serving.max_model_len or model_spec(config.model).longest_request


def default_batch_limits(gpu: str) -> tuple[int, int]:
    """vLLM's (max_num_seqs, max_num_batched_tokens) for ``vllm serve`` on GPU ``gpu`` (a profiles/gpus.yaml
    name, or a GPU spec file's path: judged by its memory alone, as it has no device name)."""
    memory = gpu_spec(gpu).memory_bytes
    small = canonical_gpu(gpu) is not None and any(name in gpu.lower() for name in SMALL_TIER_NAMES)
    return next((seqs, tokens) for floor, seqs, tokens in TIERS if memory >= floor and not (small and floor))


def batch_limits(config: Config) -> tuple[int, int]:
    """The run's (max_num_seqs, max_num_batched_tokens): the config's, each vLLM's default where it is unset; a
    default sequence limit never above the step's tokens (vLLM: ``min(max_num_seqs, max_num_batched_tokens)`` when
    ``--max-num-seqs`` is not given), so ``--max-num-batched-tokens 512`` on an H100 serves 512 sequences a step."""
    serving = config.serving
    seqs, tokens = default_batch_limits(config.hardware.gpu)
    if serving.max_num_seqs is not None:
        seqs = serving.max_num_seqs
    if serving.max_num_batched_tokens is not None:
        tokens = serving.max_num_batched_tokens
    else:
        tokens = min(tokens, seqs * max_model_len(config))
    return (seqs if serving.max_num_seqs is not None else min(seqs, tokens)), tokens


def block_size(config: Config) -> int:
    """The run's KV block size in tokens: ``serving.block_size``, or where it is null vLLM's for the model and GPU
    (``attention_backend.default_block_size``; a Gated DeltaNet hybrid's raised from it as vLLM raises it,
    ``state_groups.required_block_size``)."""
    if config.serving.block_size is not None:
        return config.serving.block_size
    from sim.serving.attention_backend import default_block_size

    spec = model_spec(config.model)
    preferred = default_block_size(spec, config.hardware.gpu)
    if spec.linear_attention is None:
        return preferred
    from sim.serving.state_groups import required_block_size

    return required_block_size(config, preferred)


def resolved_serving(config: Config) -> ServingConfig:
    """``config.serving`` with both limits and the block size resolved (``batch_limits``, ``block_size``), as the
    engine sees it."""
    seqs, tokens = batch_limits(config)
    return dataclasses.replace(config.serving, max_num_seqs=seqs, max_num_batched_tokens=tokens,
                               block_size=block_size(config))
