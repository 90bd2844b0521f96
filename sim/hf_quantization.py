"""A Hugging Face config.json's ``quantization_config``: the ``ModelSpec`` fields of the checkpoints kvsim models
(FP8, as vLLM's ``Fp8Config`` reads it; gpt-oss's MXFP4 experts, as ``Mxfp4Config`` quantizes them); any other
method, or modules left unquantized that would change which weights take fewer bytes, is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.errors import ConfigError, quote

# any shape, context length or block size in a config.json (int32, as the engines index them); keeps sizes in int64
MAX_DIMENSION = 2**31 - 1


# Modules an FP8 config.json may list as left unquantized (quantization_config ignored_layers, or
# modules_to_not_convert as transformers writes it) that kvsim keeps in the model dtype anyway: the LM head, the
# embedding, an MoE router ("...mlp.gate") and its e_score_correction_bias (MiniMax-M2's list: "gate",
# "e_score_correction_bias", "lm_head"). Any other name would change which weights are one byte: refused.
UNQUANTIZED_ANYWAY = ("lm_head", "embed_tokens", "gate", "e_score_correction_bias")


def quantization_fields(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``ModelSpec`` fields of the checkpoint's quantization_config: none for an unquantized checkpoint;
    ``weight_quantization`` "fp8" and ``weight_block_size`` for an FP8 one (quant_method "fp8", as vLLM's
    ``Fp8Config.from_config`` reads it: weight_block_size [rows, columns] of one fp32 scale each, absent for a
    per-tensor scale; activation_scheme dynamic, or static without a block size, which does not change the
    weights). Other methods (awq, gptq, compressed-tensors, bitsandbytes, ...) are refused."""
    quantization = config.get("quantization_config")
    if quantization is None:
        return {}
    if not isinstance(quantization, dict):
        raise ConfigError(f"model config {path}: key 'quantization_config' must be an object (quant_method, "
                          f"...), got {quote(quantization)}")
    method = quantization.get("quant_method")
    if method is None:  # (vLLM reads the method from this key: without it the checkpoint names no quantization)
        raise ConfigError(f"model config {path}: key 'quantization_config' has no 'quant_method'")
    if method == "mxfp4":
        return _mxfp4(path, quantization)
    if method != "fp8":
        raise ConfigError(f"model config {path}: a quantized checkpoint (quantization_config {quote(method)}) is "
                          "not modelled (FP8 checkpoints, quant_method 'fp8', and gpt-oss's MXFP4 experts, 'mxfp4', "
                          "are): use the unquantized model's config.json, or this one without quantization_config")
    block = quantization.get("weight_block_size")
    if block is not None and (not isinstance(block, list) or len(block) != 2 or any(
            isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_DIMENSION for b in block)):
        raise ConfigError(f"model config {path}: key 'quantization_config.weight_block_size' must be two "
                          f"positive integers, got {quote(block)}")
    # Fp8Config.__init__: activation_scheme in ACTIVATION_SCHEMES ("static", "dynamic"), and "dynamic" with a
    # weight_block_size ("The block-wise quantization only supports dynamic activation scheme"); from_config reads
    # it with get_from_keys, so a config without it fails there too (vllm/model_executor/layers/quantization/fp8.py)
    scheme = quantization.get("activation_scheme")
    if scheme not in ("static", "dynamic") or (block is not None and scheme != "dynamic"):
        allowed = "'dynamic' with a weight_block_size" if block is not None else "'dynamic' or 'static'"
        raise ConfigError(f"model config {path}: key 'quantization_config.activation_scheme' must be {allowed} "
                          f"(as vLLM's Fp8Config reads it), got {quote(scheme)}")
    for key in ("ignored_layers", "modules_to_not_convert"):
        other = [n for n in _module_names(path, quantization, key) if n.rsplit(".", 1)[-1] not in UNQUANTIZED_ANYWAY]
        if other:
            raise ConfigError(f"model config {path}: quantization_config.{key} leaves {quote(other[0])} "
                              "unquantized: not modelled (only the LM head, the embedding and the routers stay in "
                              "the model dtype)")
    return {"weight_quantization": "fp8", "weight_block_size": None if block is None else tuple(block)}


def _module_names(path: Path, quantization: dict[str, Any], key: str) -> list[str]:
    """``quantization_config.<key>``: a list of module names (null: none; a false, 0 or "" is no list either)."""
    names = quantization.get(key)
    names = [] if names is None else names
    if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
        raise ConfigError(f"model config {path}: key 'quantization_config.{key}' must be a list of module "
                          f"names, got {quote(names)}")
    return names


# The modules gpt-oss's MXFP4 config.json lists as not converted (modules_to_not_convert: "model.layers.*.self_attn",
# "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"): what vLLM's Mxfp4Config keeps in the model dtype
# anyway (every LinearBase layer, the embedding and the LM head); only the FusedMoE experts are MXFP4.
MXFP4_UNCONVERTED = ("self_attn", "router", "embed_tokens", "lm_head")


def _mxfp4(path: Path, quantization: dict[str, Any]) -> dict[str, Any]:
    """``weight_quantization`` "mxfp4" (gpt-oss): vLLM's Mxfp4Config (quantization/mxfp4.py) quantizes the
    ``FusedMoE`` experts only, 4-bit values with an 8-bit scale per 32 (``ModelSpec.expert_weight_bytes``); the
    attention, the routers, the embedding and the LM head stay in the model dtype. A modules_to_not_convert naming
    anything else (the experts) would change that: refused."""
    names = _module_names(path, quantization, "modules_to_not_convert")
    other = [n for n in names if n.rsplit(".", 1)[-1] not in MXFP4_UNCONVERTED]
    if other:
        raise ConfigError(f"model config {path}: quantization_config.modules_to_not_convert leaves "
                          f"{quote(other[0])} unconverted: not modelled (MXFP4 quantizes the routed experts only; the "
                          "attention, routers, embedding and LM head stay in the model dtype)")
    return {"weight_quantization": "mxfp4"}
