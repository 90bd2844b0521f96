"""A model's shape from its Hugging Face ``config.json`` (``model: PATH``), for the families kvsim models.

The roofline compute model (``sim.serving.compute``) and the KV size assume a decoder-only transformer
whose every layer has full attention (q, k, v, o projections; or DeepSeek's multi-head latent attention,
deepseek_v2 and deepseek_v3, whose cache holds one latent per token; with DeepSeek sparse attention, deepseek_v32
and glm_moe_dsa, an indexer picks the index_topk cached tokens each query attends to, its own key cached beside
the latent) and either an MLP (gate, up and down
matrices; or a plain up, down MLP as Phi's) or a mixture of gated MLPs behind a router (Qwen3-MoE,
Mixtral, Phi-MoE, MiniMax-M2: routed experts only; Qwen2-MoE, DeepSeek and GLM-4.5: routed experts beside shared
experts that every token runs; DeepSeek's and GLM-4.5's first layers dense; GLM-4.5's and MiniMax-M2's routers held
in fp32, ``ModelSpec.fp32_parameters``). The families (``sim.model_families``) are built that way
by transformers or by the model's own code (``trust_remote_code``: Qwen 1, InternLM, DeepSeek); any other
``model_type`` is refused rather than run as something it is not, and so are layer kinds other than full and
sliding-window attention and quantized checkpoints other than FP8 and gpt-oss's MXFP4, which those models do not
describe. A rotary embedding that turns part of each head (partial_rotary_factor, MiniMax-M2's rotary_dim) gives
``ModelSpec.rotary_dim`` (``sim.hf_rotary``). Hybrid models (Gemma 2, Gemma 3, gpt-oss: sliding-window layers
beside full-attention ones) give ``ModelSpec.num_sliding_layers`` as vLLM picks the sliding layers
(``sim.hf_sliding_layers``). A multimodal config.json
(Gemma 3's, Qwen3.5's: ``Family.vision_tower``) nests the language model under text_config and gives its vision
tower under vision_config, whose weights count beside the language model's and whose encoder vLLM's profile run
runs (``ModelSpec.vision_tower``: SigLIP, Qwen3-VL's vision transformer, ``sim.vision_towers``); a quantized one is
refused. gpt-oss's MXFP4 experts take 4.25 bits a weight (``sim.hf_quantization``). An FP8
checkpoint (quantization_config quant_method "fp8": DeepSeek-V3/V3.2's published config.json, Qwen3-*-FP8) has the
same shapes with its linear layers' weights in one byte plus fp32 block scales (``sim.hf_quantization``,
``ModelSpec.linear_parameters``); its KV
cache stays in the model dtype (DeepSeek sparse attention's fp8_ds_mla aside: ``sim.kv_dtype.kv_cache_dtype``).
DeepSeek's MTP module (num_nextn_predict_layers; GLM-4.5's, MiniMax-M2's num_mtp_modules, Qwen3.5's mtp.*) is not
counted: vLLM loads it only for MTP speculative decoding, which kvsim does not model. A
sliding window narrower than the context on every layer bounds the requests served (``ModelSpec.longest_request``).
Each problem is one exit-2 line naming the file, as for the calibration profiles
(``sim.serving.profile_files``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ConfigError, quote
from sim.hf_quantization import MAX_DIMENSION, quantization_fields
from sim.hf_rotary import rotary_dim
from sim.hf_sliding_layers import sliding_layers
from sim.json_input import unique_keys
from sim.linear_attention import gated_delta_net
from sim.model_families import ARCHITECTURES, FAMILIES, Experts, Family
from sim.model_shape import SPARSE_QUANT_BLOCK, ModelSpec
from sim.rope_caches import rope_caches, served_context
from sim.vision_towers import VISION_TOWERS, VisionTower

CONFIG_NAME = "config.json"  # the file a Hugging Face model folder holds its architecture in
MAX_CONFIG_BYTES = 1 << 20  # published config.json files are a few KB; a larger file is not one

INDEX_KEYS = ("index_topk", "index_n_heads", "index_head_dim")
MLA_KEYS = ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")

# Keys every config.json must give (transformers has defaults for them, but a model's shape taken from
# a library default is a mistake waiting to happen).
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings")


def config_file(path: Path) -> Path:
    """The config.json that ``path`` names: the file itself, or the one in the folder it names."""
    return path / CONFIG_NAME if path.is_dir() else path


def read_hf_config(path: Path) -> tuple[dict[str, Any], str]:
    """The JSON object of a config.json and its sha256 (hex)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"model config {path}: over {MAX_CONFIG_BYTES:,} bytes, not a Hugging Face config.json")
    try:
        config = json.loads(data, object_pairs_hook=unique_keys(f"model config {path}", ConfigError))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
        raise ConfigError(f"model config {path}: not JSON: {quote(str(exc))}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model config {path}: the top level must be a JSON object, got {type(config).__name__}")
    return config, hashlib.sha256(data).hexdigest()


def hf_model_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` of the config.json at ``name`` (a file or its folder); ``source`` names the file and its sha256."""
    path = config_file(Path(name))
    config, digest = read_hf_config(path)
    family, top = _family(config, path), _Keys(config, path)
    if family.mla:
        return _mla_model_spec(name, top, family, digest)
    keys = _text_keys(top, family) if family.vision_tower else top
    required = dict(family.required_defaults)
    layers, hidden, heads, intermediate, vocab, context = (keys.positive(k, required.get(k)) for k in REQUIRED)
    kv_heads = heads if family.multi_head_only else keys.positive("num_key_value_heads",
                                                                   family.num_key_value_heads or heads)
    if family.head_dim is None and config.get(family.head_dim_key) is None and hidden % heads:
        raise ConfigError(f"model config {path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads} "
                          f"and no {family.head_dim_key} is given")
    head_dim = keys.positive(family.head_dim_key, family.head_dim or hidden // heads)
    if family.fused_mlp_width:  # the key is gate + up: each projection is half as wide
        if intermediate % 2:
            raise ConfigError(f"model config {path}: intermediate_size {intermediate} is gate and up together here "
                              "and must be even")
        intermediate //= 2
    context = min([context, *(keys.positive(k, context) for k in family.context_caps)])
    served = served_context(keys, context)
    if heads % kv_heads:
        raise ConfigError(f"model config {path}: num_attention_heads {heads} is not a multiple of "
                          f"num_key_value_heads {kv_heads}")
    gdn = gated_delta_net(keys, layers, config.get("model_type")) if family.linear_attention else None
    window, sliding, last_slides = (None, None, False) if gdn is not None else sliding_layers(keys, family, layers,
                                                                                                  served)
    _check_attention_kinds(keys, family, layers)
    quantization = quantization_fields(top.config, top.path)
    if quantization and family.vision_tower:
        raise ConfigError(f"model config {path}: a quantized multimodal checkpoint (quantization_config) is not "
                          "modelled: which of the vision tower's weights it quantizes is not known here")
    moe = _experts(keys, family, layers)
    vision = _vision_tower(top, family, hidden) if family.vision_tower else None
    gate = heads * head_dim * hidden if family.attention_output_gate else 0  # (q_proj gives q and the gate)
    count = _parameter_count(keys, family, layers, hidden, heads * head_dim, kv_heads * head_dim, head_dim,
                             intermediate, vocab, moe, heads=heads,
                             attention=2 * hidden * (heads + kv_heads) * head_dim + gate)
    if gdn is not None:  # its layers hold a Gated DeltaNet instead of the attention's projections and q/k norms
        count += gdn.layers * (gdn.parameters(hidden) - 2 * hidden * (heads + kv_heads) * head_dim - gate - 2 * head_dim)
    fp32 = moe.layers * moe.router_parameters(hidden) if moe is not None and moe.router_fp32 else 0
    count += vision.parameters if vision is not None else 0
    rotary = rotary_dim(keys, family, head_dim)
    full, slide = window is None or sliding is not None, window is not None  # the layer kinds it has
    kinds = ("full_attention",) * full + ("sliding_attention",) * slide
    return ModelSpec(
        name=name, num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=intermediate, vocab_size=vocab, num_parameters=count,
        max_position_embeddings=served, source=f"{path} (sha256 {digest})", gated_mlp=family.gated_mlp,
        sliding_window=window, num_sliding_layers=sliding, last_layer_slides=last_slides, fp32_parameters=fp32,
        **quantization,
        linear_attention=gdn, attention_output_gate=family.attention_output_gate, vision_tower=vision,
        rotary_dim=rotary, rope_caches=rope_caches(keys, family, context, rotary or head_dim, kinds, served),
        norms_per_layer=family.norms_per_layer, qk_norm=_qk_norm(keys, family),
        **(moe.fields() if moe is not None else {}),
    )


def _qk_norm(keys: _Keys, family: Family) -> bool:
    """Whether the layers norm q and k (``ModelSpec.qk_norm``): always (``Family.qk_norm``, ``qk_norm_full``) or
    as the family's switch says (Phi's qk_layernorm, GLM-4.5's use_qk_norm)."""
    switch = family.qk_norm_switch
    return family.qk_norm or family.qk_norm_full or (switch is not None and keys.flag(switch))


def _check_attention_kinds(keys: _Keys, family: Family, layers: int) -> None:
    """A family's list of per-layer attention kinds (``Family.attention_kinds_key``, MiniMax-M2's attn_type_list):
    one entry per layer, each 1 (full softmax attention); absent or null: every layer full."""
    key = family.attention_kinds_key
    kinds = keys.config.get(key) if key is not None else None
    if kinds is None:
        return
    if not isinstance(kinds, list) or len(kinds) != layers:
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + key!r} must be a list of one attention kind "
                          f"per layer ({layers}), got {quote(kinds)}")
    other = [kind for kind in kinds if isinstance(kind, bool) or kind != 1]
    if other:
        raise ConfigError(f"model config {keys.path}: {key} entry {quote(other[0])} is not modelled: only 1, full "
                          f"attention, as vLLM builds every layer of model_type {quote(keys.config.get('model_type'))}"
                          " (0 is MiniMax-Text-01's lightning attention)")


def _text_keys(keys: _Keys, family: Family) -> _Keys:
    """A multimodal config's decoder keys: its "text_config" object (vLLM's ``hf_text_config``), whose model_type is
    the text-only family's (gemma3 -> gemma3_text), as transformers' config class sets it where the file leaves it
    out (``served_context`` reads it)."""
    text = keys.config.get("text_config")
    if not isinstance(text, dict):
        raise ConfigError(f"model config {keys.path}: key 'text_config' must be an object (the language model's keys), "
                          f"got {quote(text)}")
    model_type = text.get("model_type")
    # the family's own text model_type, whatever the config's model_type (one read by its architecture)
    expected = next(f"{name}_text" for name, known in FAMILIES.items() if known is family)
    if model_type is not None and model_type != expected:
        raise ConfigError(f"model config {keys.path}: key 'text_config.model_type' must be {expected!r}, got "
                          f"{quote(model_type)}")
    return _Keys({**text, "model_type": expected}, keys.path, "text_config.")


def _vision_tower(keys: _Keys, family: Family, text_hidden: int) -> VisionTower:
    """A multimodal config's vision tower from its "vision_config" object, read as the family's tower
    (``Family.vision_tower``: its reader in ``sim.vision_towers``)."""
    vision = keys.config.get("vision_config")
    if not isinstance(vision, dict):
        raise ConfigError(f"model config {keys.path}: key 'vision_config' must be an object (the vision tower's keys), "
                          f"got {quote(vision)}")
    return VISION_TOWERS[family.vision_tower](keys, _Keys(vision, keys.path, "vision_config."), text_hidden)


def _mla_model_spec(name: str, keys: _Keys, family: Family, digest: str) -> ModelSpec:
    """DeepSeek-V2/V3/V3.2 and GLM-5: multi-head latent attention and DeepSeek's experts (``Family.mla``), with
    DeepSeek sparse attention's indexer where the config has the key index_topk, as vLLM decides it, whatever the
    model_type (``Family.sparse_attention``: required).
    The KV cache holds the latent (num_kv_heads 1, head_dim kv_lora_rank + qk_rope_head_dim, as vLLM's MLA
    backends see it); a sliding window, other layer kinds and non-FP8 quantized checkpoints are refused as for the
    other families. The MTP
    module (num_nextn_predict_layers) is not counted: vLLM's DeepseekV2ForCausalLM skips its weights
    (``get_spec_layer_idx_from_weight_name``) unless a speculative config serves it, which kvsim does not model."""
    config, path = keys.config, keys.path
    layers, hidden, heads, intermediate, vocab, context = (keys.positive(k) for k in REQUIRED)
    served = served_context(keys, context)
    lora, nope, rope, v_dim = (keys.positive(k) for k in MLA_KEYS)
    q_lora = keys.positive("q_lora_rank") if config.get("q_lora_rank") is not None else None  # null: one q_proj
    if config.get("layer_types") is not None or config.get("sliding_window") is not None:
        raise ConfigError(f"model config {path}: layer_types or sliding_window with multi-head latent attention are "
                          "not modelled")
    sparse = {}
    # DeepSeek sparse attention's indexer: vLLM builds it whenever the key is there (``hasattr``, see
    # sim.model_families), a deepseek_v3 config with index_topk included, and sizes its top-k buffer by the value
    # (null: no size to give)
    if family.sparse_attention or "index_topk" in config:
        if "index_topk" in config and config["index_topk"] is None:
            raise ConfigError(f"model config {path}: key 'index_topk' is null, but vLLM builds DeepSeek sparse "
                              "attention's indexer whenever the key is present (deepseek_v2.py: hasattr) and sizes its "
                              "top-k by it: give a positive integer, or drop the key")
        if q_lora is None:
            raise ConfigError(f"model config {path}: key 'index_topk' (DeepSeek sparse attention) needs a "
                              "q_lora_rank: the indexer's queries come from the q_a projection")
        sparse = {k: keys.positive(k) for k in INDEX_KEYS}
        for key, value in (("index_head_dim", sparse["index_head_dim"]), ("kv_lora_rank", lora)):
            if value % SPARSE_QUANT_BLOCK:
                raise ConfigError(f"model config {path}: key {key!r} must be a multiple of {SPARSE_QUANT_BLOCK} with DeepSeek "
                                  f"sparse attention (its caches quantize in groups of {SPARSE_QUANT_BLOCK}), got {value}")
    quantization = quantization_fields(keys.config, keys.path)
    moe = _experts(keys, family, layers)
    fields = dict(
        name=name, num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_kv_heads=1,
        head_dim=lora + rope, intermediate_size=intermediate, vocab_size=vocab, max_position_embeddings=served,
        source=f"{path} (sha256 {digest})", q_lora_rank=q_lora, kv_lora_rank=lora, qk_nope_head_dim=nope,
        qk_rope_head_dim=rope, v_head_dim=v_dim, rope_caches=rope_caches(keys, family, context, rope, served=served),
        **quantization,
        **sparse, **(moe.fields() if moe is not None else {}))
    shape = ModelSpec(num_parameters=0, **fields)
    # per layer: the projections, q_a_layernorm (with q_lora_rank) and kv_a_layernorm (RMSNorm weights); with
    # sparse attention the indexer's k_norm, a LayerNorm (weight and bias) over index_head_dim
    attention = shape.attention_parameters + (q_lora or 0) + lora + 2 * sparse.get("index_head_dim", 0)
    count = _parameter_count(keys, family, layers, hidden, 0, 0, 0, intermediate, vocab, moe, attention=attention)
    return dataclasses.replace(shape, num_parameters=count)


@dataclass(frozen=True)
class _MoE:
    experts: int
    per_token: int
    width: int
    layers: int
    shared_width: int | None = None  # the shared experts' total width (None: none)
    shared_gate: bool = False
    router_bias: bool = False  # DeepSeek-V3's e_score_correction_bias (topk_method noaux_tc), gpt-oss's router bias
    expert_biases: bool = False  # gpt-oss: each expert's gate_up (2 × width) and down (hidden) biases
    router_fp32: bool = False  # vLLM holds the router (and its bias) in fp32 (Experts.router_fp32)

    def router_parameters(self, hidden: int) -> int:
        """One MoE layer's router: hidden × experts, and its bias (e_score_correction_bias) where it has one."""
        return hidden * self.experts + (self.experts if self.router_bias else 0)

    def fields(self) -> dict[str, Any]:
        return {"num_experts": self.experts, "num_experts_per_tok": self.per_token,
                "moe_intermediate_size": self.width, "num_moe_layers": self.layers,
                "shared_expert_intermediate_size": self.shared_width, "shared_expert_gate": self.shared_gate}

    def layer_parameters(self, hidden: int) -> int:
        """One MoE layer's router (and its bias), routed experts (and their biases), shared experts and their gate."""
        shared = 3 * hidden * (self.shared_width or 0) + (hidden if self.shared_gate else 0)
        router = self.router_parameters(hidden)
        expert = 3 * hidden * self.width + (2 * self.width + hidden if self.expert_biases else 0)
        return router + self.experts * expert + shared


def _experts(keys: _Keys, family: Family, layers: int) -> _MoE | None:
    """The family's experts as the config.json gives them; None for a dense family (or every layer dense)."""
    spec = family.experts
    if spec is None:
        return None
    config, path = keys.config, keys.path
    if spec.deepseek_layout:
        return _deepseek_experts(keys, spec, layers)
    named = [k for k in ("num_experts", "num_local_experts") if config.get(k) is not None]
    if len(named) == 2 and config["num_experts"] != config["num_local_experts"]:
        raise ConfigError(f"model config {path}: num_experts {quote(config['num_experts'])} and num_local_experts "
                          f"{quote(config['num_local_experts'])} disagree (one key in transformers)")
    experts = keys.positive(named[0] if named else "num_experts", spec.num_experts)
    per_token = keys.positive("num_experts_per_tok", spec.experts_per_token)
    alias = spec.per_token_alias
    if alias is not None and config.get(alias) is not None and config[alias] != per_token:
        raise ConfigError(f"model config {path}: {alias} {quote(config[alias])} and num_experts_per_tok {per_token} "
                          "disagree (vLLM reads num_experts_per_tok)")
    if per_token > experts:
        raise ConfigError(f"model config {path}: num_experts_per_tok {per_token} exceeds the {experts} experts")
    width = keys.positive(spec.width_key, spec.width_default)
    moe_layers = layers
    if spec.sparse_layout:  # Qwen3MoeDecoderLayer: experts unless in mlp_only_layers or off the sparse step
        step = keys.positive("decoder_sparse_step", 1)
        dense = config.get("mlp_only_layers") or []
        if not isinstance(dense, list) or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < layers
                                              for i in dense):
            raise ConfigError(f"model config {path}: key 'mlp_only_layers' must be a list of layer indices below "
                              f"{layers}, got {quote(dense)}")
        dense_layers = set(dense)
        moe_layers = sum(1 for i in range(layers) if i not in dense_layers and (i + 1) % step == 0)
    shared = None
    if spec.shared_width_key is not None:  # Qwen2MoeSparseMoeBlock: a shared expert unless its width is 0
        shared = keys.count(spec.shared_width_key, spec.shared_width_default) or None
    router_bias = spec.router_bias or (spec.router_bias_key is not None and keys.flag(spec.router_bias_key))
    if not moe_layers:
        return None
    return _MoE(experts, per_token, width, moe_layers, shared, spec.shared_expert_gate, router_bias,
                spec.expert_biases, spec.router_fp32)


def _deepseek_experts(keys: _Keys, spec: Experts, layers: int) -> _MoE | None:
    """DeepSeek's MoE block (vLLM DeepseekV2MoE): routed experts from layer first_k_dense_replace on, every
    moe_layer_freq-th layer; n_shared_experts shared experts as one MLP n × moe_intermediate_size wide. GLM-4.5
    (glm4_moe) shares the keys, without moe_layer_freq and with a router bias always (``Experts``)."""
    config, path = keys.config, keys.path
    if "n_routed_experts" in config and config["n_routed_experts"] is None:  # vLLM: no MoE layer
        return None
    # absent: the config class's default (Glm4MoeConfig: 128, 8 a token, 1408 wide), else a required key
    experts = keys.positive("n_routed_experts", spec.num_experts)
    per_token = keys.positive("num_experts_per_tok", spec.experts_per_token)
    if per_token > experts:
        raise ConfigError(f"model config {path}: num_experts_per_tok {per_token} exceeds the {experts} experts")
    width = keys.positive(spec.width_key, spec.width_default)
    first_dense = keys.count("first_k_dense_replace", spec.first_dense_default)
    freq = keys.positive(spec.layer_freq_key, 1) if spec.layer_freq_key is not None else 1
    moe_layers = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
    # null: none (vLLM: ``config.n_shared_experts is None``); absent: the config class's default (Glm4MoeConfig: 1)
    shared_default = 0 if "n_shared_experts" in config else spec.shared_experts_default
    shared = keys.count("n_shared_experts", shared_default) * width or None
    if not moe_layers:
        return None
    return _MoE(experts, per_token, width, moe_layers, shared,
                router_bias=spec.router_bias or config.get("topk_method") == "noaux_tc", router_fp32=spec.router_fp32)


def _family(config: dict[str, Any], path: Path) -> Family:
    model_type = config.get("model_type")
    if model_type is None:
        raise ConfigError(f"model config {path}: no model_type (not a Hugging Face model config.json?)")
    if not isinstance(model_type, str):
        raise ConfigError(f"model config {path}: key 'model_type' must be a string, got {quote(model_type)}")
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    architectures = config.get("architectures")
    # vLLM's registry takes one string as a list of it (ModelRegistry._normalize_archs)
    listed = [architectures] if isinstance(architectures, str) else architectures
    known = [a for a in listed if isinstance(a, str) and a in ARCHITECTURES] if isinstance(listed, list) else []
    if known:  # a model_type of its own over an architecture vLLM serves as a family's (Kimi-K2)
        return FAMILIES[ARCHITECTURES[known[0]]]
    raise ConfigError(f"model config {path}: model_type {quote(model_type)} (architectures {quote(architectures)}) is "
                      f"not modelled: the compute model is a decoder with an MLP or experts ({', '.join(FAMILIES)}, or "
                      "another model_type over one of their architectures)")


class _Keys:
    """Typed reads of one config.json's keys, each problem naming the file and the key (``prefix``: where a nested
    object's keys are, "text_config." for a multimodal model's language model)."""

    def __init__(self, config: dict[str, Any], path: Path, prefix: str = "") -> None:
        self.config, self.path, self.prefix = config, path, prefix

    def positive(self, key: str, default: int | None = None) -> int:
        """A positive integer; ``default`` when the key is absent or null (required keys have none, but where a
        family's published files leave them out: ``Family.required_defaults``)."""
        value = self.config.get(key)
        if value is None:
            if default is None:
                raise ConfigError(f"model config {self.path}: missing key {self.prefix + key!r}")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIMENSION:
            raise ConfigError(f"model config {self.path}: key {self.prefix + key!r} must be a positive integer up to "
                              f"{MAX_DIMENSION:,}, got {quote(value)}")
        return value

    def count(self, key: str, default: int) -> int:
        """A non-negative integer (0 allowed: none of something); ``default`` when absent or null."""
        value = self.config.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DIMENSION:
            raise ConfigError(f"model config {self.path}: key {self.prefix + key!r} must be a non-negative integer "
                              f"up to {MAX_DIMENSION:,}, got {quote(value)}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """A boolean; ``default`` (the family's config class default) when absent."""
        value = self.config.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"model config {self.path}: key {self.prefix + key!r} must be true or false, "
                              f"got {quote(value)}")
        return value


def _biased_parts(keys: _Keys, family: Family) -> set[str]:
    """The parts carrying biases: the family's own and those its config's switches turn on."""
    parts = set(family.biases)
    for switch in family.bias_switches:
        if keys.flag(switch.key, switch.default) != switch.inverted:
            parts.update(switch.parts)
    return parts


def _parameter_count(keys: _Keys, family: Family, layers: int, hidden: int, q_dim: int, kv_dim: int,
                     head_dim: int, intermediate: int, vocab: int, moe: _MoE | None = None,
                     attention: int | None = None, heads: int = 0) -> int:
    """Parameters from the shapes: embeddings, the LM head unless tied to them, per layer the q/k/v/o
    projections (``attention``: MLA's projections and norms instead), the MLP's matrices (gate, up, down; a plain
    MLP up, down; in an MoE layer: the router and every expert's, the shared experts and their gate), the norms
    (RMSNorm: a weight; LayerNorm: weight and bias) and the family's biases, q/k norms and attention sinks (one per
    head of ``heads``), and the final norm."""
    moe_layers = moe.layers if moe is not None else 0
    mlp_matrices = 3 if family.gated_mlp else 2
    projections = 2 * hidden * q_dim + 2 * hidden * kv_dim if attention is None else attention
    per_layer = projections + family.norms_per_layer * family.norm_vectors * hidden
    mlps = (layers - moe_layers) * mlp_matrices * hidden * intermediate
    if moe is not None:
        mlps += moe_layers * moe.layer_parameters(hidden)
    biased = _biased_parts(keys, family)
    per_layer += (q_dim + 2 * kv_dim if "qkv" in biased else 0) + (hidden if "o" in biased else 0)
    if "mlp" in biased:
        per_layer += (mlp_matrices - 1) * intermediate + hidden
    if family.qk_norm or (family.qk_norm_switch is not None and keys.flag(family.qk_norm_switch)):
        per_layer += 2 * family.norm_vectors * head_dim
    if family.qk_norm_full:  # MiniMax-M2: one RMSNorm over all query heads, one over all key heads
        per_layer += family.norm_vectors * (q_dim + kv_dim)
    if family.attention_sinks:  # gpt-oss: ``sinks``, one logit per head (vLLM gpt_oss.py OAIAttention)
        per_layer += heads
    tied = keys.flag("tie_word_embeddings", family.tie_word_embeddings) if family.lm_head is None \
        else family.lm_head == "tied"
    head = 0 if tied else vocab * hidden
    head += vocab if "lm_head" in biased else 0
    return vocab * hidden + head + layers * per_layer + mlps + family.norm_vectors * hidden
