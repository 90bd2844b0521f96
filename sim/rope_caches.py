"""The rotary cos/sin caches vLLM 0.33 builds for a model (``ModelSpec.rope_caches``), each loaded with the weights.

``get_rope`` (model_executor/layers/rotary_embedding/__init__.py) builds one ``RotaryEmbedding`` per distinct key
(head size, rotary dim, max position, is_neox_style, rope parameters, dtype: ``_ROPE_DICT``), so a model whose layers
ask for different ones holds several caches:
- Gemma 3 (gemma3.py): ``config.rope_parameters[layer_type]``, the sliding layers' (rope_local_base_freq, no
  scaling) and the full-attention layers' (rope_theta and rope_scaling: linear factor 8 on 4B/12B/27B);
- DeepSeek sparse attention (deepseek_v2.py ``DeepseekV2Model``): the indexer's ``indexer_rope_emb``,
  is_neox_style = not indexer_rope_interleave, beside the MLA's is_neox_style=False one (a second cache unless the
  config sets indexer_rope_interleave, as GLM-5's does);
- gpt-oss (gpt_oss.py): one cache built with dtype=torch.float32, whatever the model dtype.
A cache's rows follow its rope type: linear (linear_scaling_rope.py) max position × factor; yarn, deepseek_yarn
(yarn_scaling_rope.py, deepseek_scaling_rope.py; get_rope passes original_max_position_embeddings) original × factor;
longrope (phi3_long_rope_scaled_rope.py: the short and the long table concatenated) original + max position; the
others (default, llama3, dynamic, ntk, an mrope without yarn at positions_factor 1) max position. Each row holds
cos and sin of rotary_dim / 2 frequencies: rotary_dim values (base.py ``_compute_cos_sin_cache``).

A model without a rotary embedding (``ModelSpec.position_encoding``, ``check_position_encoding``) builds none: BLOOM's
ALiBi (bloom.py hands ``Attention`` per-head ``alibi_slopes``, a list of floats) and OPT's learned absolute positions
(opt.py ``OPTLearnedPositionalEmbedding``: an ``nn.Embedding`` of max_position_embeddings + 2 rows x hidden, a weight
counted in num_parameters and "replicated (not sharded)" on every TP rank: ``learned_position_rows``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.errors import ConfigError, quote
from sim.hf_quantization import MAX_DIMENSION

if TYPE_CHECKING:
    from sim.hf_config import _Keys
    from sim.model_families import Family
    from sim.model_shape import ModelSpec

FP32_BYTES = 4
# transformers' Gemma3TextConfig defaults: rope_theta 1,000,000 (full attention), rope_local_base_freq 10,000
GEMMA3_THETAS = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}
LEGACY_TYPES = {"su": "longrope", "mrope": "default"}  # vLLM patch_legacy_rope_type
# The rope types vLLM 0.33's get_rope builds (model_executor/layers/rotary_embedding/__init__.py; any other is its
# "Unknown RoPE scaling type" ValueError at startup)
VLLM_ROPE_TYPES = frozenset({"default", "linear", "ntk", "dynamic", "yarn", "deepseek_yarn", "deepseek_llama_scaling",
                             "longrope", "llama3", "mllama4", "proportional", "bailing_mrope", "openpangu"})


@dataclass(frozen=True, slots=True, order=True)
class RopeCache:
    """One cos/sin cache: ``positions`` rows of ``width`` values (the rotary dim), in fp32 when ``fp32`` (gpt-oss),
    else in the model dtype."""

    positions: int
    width: int
    fp32: bool = False

    def nbytes(self, model_dtype_bytes: int) -> int:
        """The cache's bytes when the model dtype takes ``model_dtype_bytes`` a value."""
        return self.positions * self.width * (FP32_BYTES if self.fp32 else model_dtype_bytes)


# How a model tells positions apart: "rope" a rotary embedding (its cos/sin caches: the others in this module), "alibi"
# per-head linear biases on the attention scores (BLOOM), "learned" a learned absolute position table (OPT)
POSITION_ENCODINGS = ("rope", "alibi", "learned")
OPT_POSITION_OFFSET = 2  # opt.py OPTLearnedPositionalEmbedding: num_embeddings + 2 rows, positions looked up at + 2


def learned_position_rows(encoding: str, max_position: int) -> int:
    """Rows of a learned position table (OPT's max positions + 2); 0 for the other encodings, which hold none."""
    return max_position + OPT_POSITION_OFFSET if encoding == "learned" else 0


def check_position_encoding(spec: ModelSpec) -> None:
    """A one-line ConfigError where ``spec.position_encoding`` is none of POSITION_ENCODINGS, or a model without a
    rotary embedding gives a rotary width or caches (rotary_dim, rope_caches) or latent attention (MLA caches a rotary
    key part, qk_rope_head_dim, beside its latent)."""
    encoding, model = spec.position_encoding, spec.name
    rotated, mla = spec.rotary_dim is not None or spec.rope_caches is not None, spec.kv_lora_rank is not None
    if not isinstance(encoding, str) or encoding not in POSITION_ENCODINGS:
        raise ConfigError(f"model {model!r}: position_encoding must be {', '.join(POSITION_ENCODINGS[:-1])} or "
                          f"{POSITION_ENCODINGS[-1]} (got {quote(encoding)})")
    if encoding != "rope" and rotated:
        raise ConfigError(f"model {model!r}: rotary_dim and rope_caches need position_encoding rope (got "
                          f"{encoding}: no rotary embedding, no cos/sin cache)")
    if encoding != "rope" and mla:
        raise ConfigError(f"model {model!r}: multi-head latent attention rotates its qk_rope_head_dim part: "
                          f"position_encoding must be rope (got {encoding})")


def as_rope_caches(value: Any, model: str) -> tuple[RopeCache, ...] | None:
    """A ``ModelSpec.rope_caches`` as given (a list of mappings, from profiles/models.yaml), checked and sorted."""
    if value is None:
        return None
    fields = {f.name for f in dataclasses.fields(RopeCache)}
    caches = []
    for item in value if isinstance(value, (list, tuple)) and value else [value]:
        if isinstance(item, dict) and set(item) <= fields:
            item = RopeCache(**item)
        if not isinstance(item, RopeCache) or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0
                                                  for v in (item.positions, item.width)) \
                or item.width % 2 or not isinstance(item.fp32, bool):
            raise ConfigError(f"model {model!r}: rope_caches must be a non-empty list of mappings of positions and "
                              f"width (positive integers, width even) and fp32 (true or false), got {quote(value)}")
        caches.append(item)
    return tuple(sorted(caches))


def _parameters(config: dict[str, Any]) -> dict[str, Any]:
    """The config's rope parameters: rope_parameters (transformers 5), else rope_scaling with rope_theta."""
    given = config.get("rope_parameters")
    if isinstance(given, dict):
        return given
    scaling = config.get("rope_scaling")
    return {**(scaling if isinstance(scaling, dict) else {}), "rope_theta": config.get("rope_theta")}


def _canonical(value: Any) -> Any:
    """``value`` with its numbers as floats and lists as tuples: vLLM's key compares 1000000 and 1e6 equal."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _number(keys: _Keys, params: dict[str, Any], name: str, where: str) -> float:
    value = params.get(name)  # (json reads Infinity, which scaled the context to a float no int could hold)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + where + name!r} must be a positive finite "
                          f"number (a rotary embedding parameter), got {quote(value)}")
    return value


def _positions(keys: _Keys, count: float, where: str) -> float:
    """``count`` positions that the rotary parameters at ``where`` give, within max_position_embeddings' own bound
    (a factor of 1e6 read as 1.3e11 positions, a cos/sin cache reported as 15,627 GiB of weights to shard)."""
    if count > MAX_DIMENSION:
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + where!r} gives {count:.4g} positions, beyond "
                          f"{MAX_DIMENSION:,} (max_position_embeddings' bound)")
    return count


def cache_rows(keys: _Keys, params: dict[str, Any], max_position: int, where: str) -> int:
    """The rows of the cache ``get_rope`` builds for ``params`` (``where``: their key path, for messages)."""
    kind = params.get("rope_type", params.get("type", "default"))
    kind = LEGACY_TYPES.get(kind, kind)
    if kind not in VLLM_ROPE_TYPES:
        name = "rope_type" if "rope_type" in params else "type"
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + where + name!r} is {quote(kind)}, a RoPE type "
                          f"vLLM does not build (its get_rope's: {', '.join(sorted(VLLM_ROPE_TYPES))})")
    if kind == "linear":
        return math.ceil(_positions(keys, max_position * _number(keys, params, "factor", where), where + "factor"))
    if kind in ("yarn", "deepseek_yarn", "deepseek_llama_scaling"):
        original = _number(keys, params, "original_max_position_embeddings", where)
        if "mrope_section" in params:  # MRotaryEmbedding over original positions (x positions_factor, 1 here)
            return math.ceil(_positions(keys, original, where + "original_max_position_embeddings"))
        return math.ceil(_positions(keys, original * _number(keys, params, "factor", where), where + "factor"))
    if kind == "longrope":
        original = _number(keys, params, "original_max_position_embeddings", where)
        return math.ceil(_positions(keys, math.ceil(original) + max_position, where + "original_max_position_embeddings"))
    return max_position


def served_context(keys: _Keys, max_position: int) -> int:
    """The context vLLM serves a config.json's model at (its default ``max_model_len``: config/model.py
    ``_get_and_verify_max_len``): ``max_position`` (max_position_embeddings) scaled by the rotary embedding's
    ``factor`` for every type but su/longrope/llama3 (a yarn one: its original_max_position_embeddings × factor, as
    Qwen2.5's model card extends 32,768 positions to 131,072), but Gemma 3's, whose max_position_embeddings is scaled
    already."""
    config = keys.config
    if "gemma3" in str(config.get("model_type", "")):
        return max_position
    params = _parameters(config)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind in ("su", "longrope", "llama3"):
        return max_position
    factor = 1.0 if params.get("factor") is None else _number(keys, params, "factor", "rope_scaling.")
    if kind == "yarn":
        original = _number(keys, params, "original_max_position_embeddings", "rope_scaling.")
        return int(_positions(keys, original * factor, "rope_scaling.factor"))
    return int(_positions(keys, max_position * factor, "rope_scaling.factor"))


def rope_caches(keys: _Keys, family: Family, max_position: int, width: int,
                kinds: tuple[str, ...] = ("full_attention",), served: int | None = None) -> tuple[RopeCache, ...] | None:
    """The caches vLLM builds for a config.json's decoder (``kinds``: the layer types it has; ``width``: the rotary
    dim), None where that is the one cache of ``max_position`` × ``width`` in the model dtype and the model is served
    at ``max_position`` (``served``, its ``served_context``, as ModelSpec.max_position_embeddings: else that cache is
    named, its rows the config's positions)."""
    config, calls = keys.config, []
    for name in ("rope_parameters", "rope_scaling"):  # anything else was read as no scaling at all
        if config.get(name) is not None and not isinstance(config[name], dict):
            raise ConfigError(f"model config {keys.path}: key {keys.prefix + name!r} must be a mapping of the rotary "
                              f"embedding's parameters, got {quote(config[name])}")
    # the frequencies' base (1 / base ** (2i / dim)) wherever a config gives one
    nested = config.get("rope_parameters") or {}
    for mapping, where in [(config, ""), (nested, "rope_parameters."),
                           *((v, f"rope_parameters.{k}.") for k, v in nested.items() if isinstance(v, dict))]:
        for name in ("rope_theta", "rope_local_base_freq"):
            if mapping.get(name) is not None:
                _number(keys, mapping, name, where)
    params = _parameters(config)
    if family.rope_per_layer_type:  # Gemma 3: rope_parameters[layer_type]
        nested = config.get("rope_parameters")
        for kind in kinds:
            if isinstance(nested, dict) and isinstance(nested.get(kind), dict):
                calls.append((nested[kind], True, f"rope_parameters.{kind}."))
            elif kind == "sliding_attention":
                theta = config.get("rope_local_base_freq", GEMMA3_THETAS[kind])
                calls.append(({"rope_type": "default", "rope_theta": theta}, True, ""))
            else:
                theta = config.get("rope_theta", GEMMA3_THETAS[kind])
                calls.append(({"rope_type": "default", **params, "rope_theta": theta}, True, "rope_scaling."))
    else:
        calls.append((params, False, "rope_scaling."))
        if family.mla and "index_topk" in config and not config.get("indexer_rope_interleave"):
            calls.append((params, True, "rope_scaling."))  # DeepSeek sparse attention's indexer
    seen: dict[str, RopeCache] = {}
    for call, neox, where in calls:
        key = json.dumps([_canonical(call), neox], sort_keys=True, default=str)
        seen.setdefault(key, RopeCache(cache_rows(keys, call, max_position, where), width, family.rope_fp32))
    caches = tuple(sorted(seen.values()))
    return None if caches == (RopeCache(max_position, width),) and served in (None, max_position) else caches
