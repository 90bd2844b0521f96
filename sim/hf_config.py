"""A model's shape from its Hugging Face ``config.json`` (``model: PATH``), for the families kvsim models.

The roofline compute model (``sim.serving.compute``) and the KV size assume a decoder-only transformer
whose every layer has full attention (q, k, v, o projections; or DeepSeek's multi-head latent attention,
deepseek_v2 and deepseek_v3, whose cache holds one latent per token; with DeepSeek sparse attention, deepseek_v32
and glm_moe_dsa, an indexer picks the index_topk cached tokens each query attends to, its own key cached beside
the latent) and either an MLP (gate, up and down
matrices; or a plain up, down MLP as Phi's) or a mixture of gated MLPs behind a router (Qwen3-MoE,
Mixtral, Phi-MoE: routed experts only; Qwen2-MoE and DeepSeek: routed experts beside shared experts that
every token runs; DeepSeek's first layers dense). The families (``sim.model_families``) are built that way
by transformers or by the model's own code (``trust_remote_code``: Qwen 1, InternLM, DeepSeek); any other
``model_type`` is refused rather than run as something it is not, and so are layers of different attention kinds and
quantized checkpoints other than FP8, which those models do not describe. An FP8 checkpoint (quantization_config
quant_method "fp8": DeepSeek-V3/V3.2's published config.json, Qwen3-*-FP8) has the same shapes with its linear
layers' weights in one byte plus fp32 block scales (``_quantization``, ``ModelSpec.linear_parameters``); its KV
cache stays in the model dtype (DeepSeek sparse attention's fp8_ds_mla aside: ``sim.model_shape.kv_cache_dtype``).
DeepSeek's MTP module (num_nextn_predict_layers) is not counted: vLLM loads it only for MTP speculative decoding,
which kvsim does not model. A
sliding window narrower than the context bounds the requests served (``ModelSpec.longest_request``).
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
from sim.model_families import FAMILIES, Experts, Family
from sim.model_shape import SPARSE_QUANT_BLOCK, ModelSpec

CONFIG_NAME = "config.json"  # the file a Hugging Face model folder holds its architecture in
MAX_CONFIG_BYTES = 1 << 20  # published config.json files are a few KB; a larger file is not one
MAX_DIMENSION = 2**31 - 1  # any shape or context length (int32, as the engines index them); keeps sizes in int64

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
        config = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
        raise ConfigError(f"model config {path}: not JSON: {quote(str(exc))}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model config {path}: the top level must be a JSON object, got {type(config).__name__}")
    return config, hashlib.sha256(data).hexdigest()


def hf_model_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` of the config.json at ``name`` (a file or its folder); ``source`` names the file and its sha256."""
    path = config_file(Path(name))
    config, digest = read_hf_config(path)
    family, keys = _family(config, path), _Keys(config, path)
    layers, hidden, heads, intermediate, vocab, context = (keys.positive(k) for k in REQUIRED)
    if family.mla:
        return _mla_model_spec(name, keys, family, digest)
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
    if heads % kv_heads:
        raise ConfigError(f"model config {path}: num_attention_heads {heads} is not a multiple of "
                          f"num_key_value_heads {kv_heads}")
    window = _sliding_window(keys, family, context)
    quantization = _quantization(keys)
    moe = _experts(keys, family, layers)
    return ModelSpec(
        name=name, num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=intermediate, vocab_size=vocab,
        num_parameters=_parameter_count(keys, family, layers, hidden, heads * head_dim, kv_heads * head_dim,
                                        head_dim, intermediate, vocab, moe),
        max_position_embeddings=context, source=f"{path} (sha256 {digest})", gated_mlp=family.gated_mlp,
        sliding_window=window, **quantization,
        **(moe.fields() if moe is not None else {}),
    )


# Modules an FP8 config.json may list as left unquantized (quantization_config ignored_layers, or
# modules_to_not_convert as transformers writes it) that kvsim keeps in the model dtype anyway: the LM head, the
# embedding, an MoE router ("...mlp.gate"). Any other name would change which weights are one byte: refused.
UNQUANTIZED_ANYWAY = ("lm_head", "embed_tokens", "gate")


def _quantization(keys: _Keys) -> dict[str, Any]:
    """The ``ModelSpec`` fields of the checkpoint's quantization_config: none for an unquantized checkpoint;
    ``weight_quantization`` "fp8" and ``weight_block_size`` for an FP8 one (quant_method "fp8", as vLLM's
    ``Fp8Config.from_config`` reads it: weight_block_size [rows, columns] of one fp32 scale each, absent for a
    per-tensor scale; activation_scheme dynamic, or static without a block size, which does not change the
    weights). Other methods (awq, gptq, compressed-tensors, bitsandbytes, ...) are refused."""
    quantization = keys.config.get("quantization_config")
    if quantization is None:
        return {}
    if not isinstance(quantization, dict):
        raise ConfigError(f"model config {keys.path}: key 'quantization_config' must be an object (quant_method, "
                          f"...), got {quote(quantization)}")
    method = quantization.get("quant_method")
    if method != "fp8":
        raise ConfigError(f"model config {keys.path}: a quantized checkpoint (quantization_config {quote(method)}) is "
                          "not modelled (FP8 checkpoints, quant_method 'fp8', are): use the unquantized model's "
                          "config.json, or this one without quantization_config")
    block = quantization.get("weight_block_size")
    if block is not None and (not isinstance(block, list) or len(block) != 2 or any(
            isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_DIMENSION for b in block)):
        raise ConfigError(f"model config {keys.path}: key 'quantization_config.weight_block_size' must be two "
                          f"positive integers, got {quote(block)}")
    # Fp8Config.__init__: activation_scheme in ACTIVATION_SCHEMES ("static", "dynamic"), and "dynamic" with a
    # weight_block_size ("The block-wise quantization only supports dynamic activation scheme"); from_config reads
    # it with get_from_keys, so a config without it fails there too (vllm/model_executor/layers/quantization/fp8.py)
    scheme = quantization.get("activation_scheme")
    if scheme not in ("static", "dynamic") or (block is not None and scheme != "dynamic"):
        allowed = "'dynamic' with a weight_block_size" if block is not None else "'dynamic' or 'static'"
        raise ConfigError(f"model config {keys.path}: key 'quantization_config.activation_scheme' must be {allowed} "
                          f"(as vLLM's Fp8Config reads it), got {quote(scheme)}")
    for key in ("ignored_layers", "modules_to_not_convert"):
        names = quantization.get(key)
        names = [] if names is None else names  # (a false, 0 or "" is no list of names either)
        if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
            raise ConfigError(f"model config {keys.path}: key 'quantization_config.{key}' must be a list of module "
                              f"names, got {quote(names)}")
        other = [n for n in names if n.rsplit(".", 1)[-1] not in UNQUANTIZED_ANYWAY]
        if other:
            raise ConfigError(f"model config {keys.path}: quantization_config.{key} leaves {quote(other[0])} "
                              "unquantized: not modelled (only the LM head, the embedding and the routers stay in "
                              "the model dtype)")
    return {"weight_quantization": "fp8", "weight_block_size": None if block is None else tuple(block)}


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
    quantization = _quantization(keys)
    moe = _experts(keys, family, layers)
    fields = dict(
        name=name, num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_kv_heads=1,
        head_dim=lora + rope, intermediate_size=intermediate, vocab_size=vocab, max_position_embeddings=context,
        source=f"{path} (sha256 {digest})", q_lora_rank=q_lora, kv_lora_rank=lora, qk_nope_head_dim=nope,
        qk_rope_head_dim=rope, v_head_dim=v_dim, **quantization, **sparse, **(moe.fields() if moe is not None else {}))
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
    router_bias: bool = False  # DeepSeek-V3's e_score_correction_bias (topk_method noaux_tc): one value per expert

    def fields(self) -> dict[str, Any]:
        return {"num_experts": self.experts, "num_experts_per_tok": self.per_token,
                "moe_intermediate_size": self.width, "num_moe_layers": self.layers,
                "shared_expert_intermediate_size": self.shared_width, "shared_expert_gate": self.shared_gate}

    def layer_parameters(self, hidden: int) -> int:
        """One MoE layer's router (and its bias), routed experts, shared experts and their gate."""
        shared = 3 * hidden * (self.shared_width or 0) + (hidden if self.shared_gate else 0)
        router = hidden * self.experts + (self.experts if self.router_bias else 0)
        return router + self.experts * 3 * hidden * self.width + shared


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
    return _MoE(experts, per_token, width, moe_layers, shared, spec.shared_expert_gate) if moe_layers else None


def _deepseek_experts(keys: _Keys, spec: Experts, layers: int) -> _MoE | None:
    """DeepSeek's MoE block (vLLM DeepseekV2MoE): routed experts from layer first_k_dense_replace on, every
    moe_layer_freq-th layer; n_shared_experts shared experts as one MLP n × moe_intermediate_size wide."""
    config, path = keys.config, keys.path
    if config.get("n_routed_experts") is None:  # vLLM: no MoE layer
        return None
    experts = keys.positive("n_routed_experts")
    per_token = keys.positive("num_experts_per_tok")
    if per_token > experts:
        raise ConfigError(f"model config {path}: num_experts_per_tok {per_token} exceeds the {experts} experts")
    width = keys.positive(spec.width_key)
    first_dense = keys.count("first_k_dense_replace", 0)
    freq = keys.positive("moe_layer_freq", 1)
    moe_layers = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
    shared = keys.count("n_shared_experts", 0) * width or None
    if not moe_layers:
        return None
    return _MoE(experts, per_token, width, moe_layers, shared, router_bias=config.get("topk_method") == "noaux_tc")


def _family(config: dict[str, Any], path: Path) -> Family:
    model_type = config.get("model_type")
    if model_type is None:
        raise ConfigError(f"model config {path}: no model_type (not a Hugging Face model config.json?)")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ConfigError(f"model config {path}: model_type {quote(model_type)} is not modelled: the compute model is a "
                          f"decoder with an MLP or experts ({', '.join(FAMILIES)})")
    return FAMILIES[model_type]


class _Keys:
    """Typed reads of one config.json's keys, each problem naming the file and the key."""

    def __init__(self, config: dict[str, Any], path: Path) -> None:
        self.config, self.path = config, path

    def positive(self, key: str, default: int | None = None) -> int:
        """A positive integer; ``default`` when the key is absent or null (required keys have none)."""
        value = self.config.get(key)
        if value is None:
            if key in REQUIRED or default is None:
                raise ConfigError(f"model config {self.path}: missing key {key!r}")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIMENSION:
            raise ConfigError(f"model config {self.path}: key {key!r} must be a positive integer up to "
                              f"{MAX_DIMENSION:,}, got {quote(value)}")
        return value

    def count(self, key: str, default: int) -> int:
        """A non-negative integer (0 allowed: none of something); ``default`` when absent or null."""
        value = self.config.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DIMENSION:
            raise ConfigError(f"model config {self.path}: key {key!r} must be a non-negative integer up to "
                              f"{MAX_DIMENSION:,}, got {quote(value)}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """A boolean; ``default`` (the family's config class default) when absent."""
        value = self.config.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"model config {self.path}: key {key!r} must be true or false, got {quote(value)}")
        return value


def _sliding_window(keys: _Keys, family: Family, context: int) -> int | None:
    """Every layer's sliding window where narrower than the context (None: full attention). kvsim serves such a
    model's requests up to the window only (``ModelSpec.longest_request``), where it attends to every token; layers
    of different kinds (Gemma's alternating local and global layers) are refused."""
    config, path = keys.config, keys.path
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and any(kind != "full_attention" for kind in layer_types):
        raise ConfigError(f"model config {path}: layer_types other than full_attention are not modelled")
    switch = family.sliding_window_switch
    if switch is not None and not keys.flag(switch):
        return None
    if config.get("sliding_window", family.sliding_window) is None:
        return None
    window = keys.positive("sliding_window", family.sliding_window)
    return window if window < context else None


def _biased_parts(keys: _Keys, family: Family) -> set[str]:
    """The parts carrying biases: the family's own and those its config's switches turn on."""
    parts = set(family.biases)
    for switch in family.bias_switches:
        if keys.flag(switch.key, switch.default) != switch.inverted:
            parts.update(switch.parts)
    return parts


def _parameter_count(keys: _Keys, family: Family, layers: int, hidden: int, q_dim: int, kv_dim: int,
                     head_dim: int, intermediate: int, vocab: int, moe: _MoE | None = None,
                     attention: int | None = None) -> int:
    """Parameters from the shapes: embeddings, the LM head unless tied to them, per layer the q/k/v/o
    projections (``attention``: MLA's projections and norms instead), the MLP's matrices (gate, up, down; a plain
    MLP up, down; in an MoE layer: the router and every expert's, the shared experts and their gate), the norms
    (RMSNorm: a weight; LayerNorm: weight and bias) and the family's biases and q/k norms, and the final norm."""
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
    head = 0 if keys.flag("tie_word_embeddings") else vocab * hidden
    head += vocab if "lm_head" in biased else 0
    return vocab * hidden + head + layers * per_layer + mlps + family.norm_vectors * hidden
