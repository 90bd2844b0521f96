"""The model families kvsim reads from a Hugging Face ``config.json`` (``sim.hf_config``): per ``model_type``,
how transformers (or the model's own code) builds its decoder layers and which config keys shape them, with the
config classes' defaults for keys a config.json may leave out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Experts:
    """How a mixture-of-experts family gives its experts (transformers' config class defaults; ``num_experts`` and
    ``num_local_experts`` are one key there, aliased by the classes' ``attribute_map``)."""

    num_experts: int | None  # default number of routed experts (None: a required key)
    experts_per_token: int | None  # default num_experts_per_tok (None: a required key)
    width_key: str  # the key giving one expert's MLP width
    width_default: int | None = None  # its default (None: a required key)
    sparse_layout: bool = False  # decoder_sparse_step and mlp_only_layers pick the MoE layers (Qwen3MoeConfig)
    # DeepSeek: n_routed_experts names the routed experts (null: every layer dense), layer i is MoE when
    # i >= first_k_dense_replace and i % moe_layer_freq == 0 (vLLM DeepseekV2DecoderLayer)
    deepseek_layout: bool = False
    shared_width_key: str | None = None  # Qwen2-MoE: shared_expert_intermediate_size (0: none)
    shared_width_default: int | None = None
    shared_expert_gate: bool = False  # Qwen2-MoE: a sigmoid gate Linear(hidden, 1) on the shared expert
    router_bias: bool = False  # gpt-oss: the router Linear(hidden, experts) has a bias
    expert_biases: bool = False  # gpt-oss: each expert's gate_up (2 × width) and down (hidden) projections are biased
    per_token_alias: str | None = None  # a second key for num_experts_per_tok (gpt-oss: experts_per_token)
    router_bias_key: str | None = None  # the boolean adding the router's e_score_correction_bias (MiniMax-M2)
    # vLLM holds the router's weight (and its bias) in fp32 whatever the model dtype (GateLinear built with
    # params_dtype=torch.float32: glm4_moe.py Glm4MoE, minimax_m2.py MiniMaxM2MoE): ModelSpec.fp32_parameters
    router_fp32: bool = False
    # DeepSeek layout only: the key thinning the MoE layers to every n-th (None: not read, every layer from
    # first_k_dense_replace on is MoE, as vLLM's Glm4MoeDecoderLayer), and the config class's defaults for
    # first_k_dense_replace and n_shared_experts
    layer_freq_key: str | None = "moe_layer_freq"
    first_dense_default: int = 0
    shared_experts_default: int = 0


@dataclass(frozen=True)
class BiasSwitch:
    """A config key that puts biases on some projections: ``parts`` of "qkv" (q, k, v), "o", "mlp"."""

    key: str
    parts: tuple[str, ...]
    default: bool = False  # the config class's default when the key is absent
    inverted: bool = False  # the key turns the biases off (Qwen 1's no_bias)


@dataclass(frozen=True)
class Family:
    """Where one ``model_type``'s decoder layers differ, as transformers (or the model's own code) builds them
    (source: its ``configuration_<type>.py`` defaults and ``modeling_<type>.py`` layers)."""

    biases: tuple[str, ...] = ()  # parts always biased: "qkv", "o", "mlp", "lm_head"
    bias_switches: tuple[BiasSwitch, ...] = ()  # config keys adding biases
    qk_norm: bool = False  # a norm over head_dim on q and on k (Qwen3Attention.q_norm, k_norm)
    qk_norm_switch: str | None = None  # the boolean that adds them (Phi's qk_layernorm)
    # a norm over all heads' q (heads × head_dim) and over all heads' k (kv_heads × head_dim), not per head
    # (MiniMax-M2: vLLM minimax_m2.py MiniMaxText01RMSNormTP q_norm, k_norm, built whatever use_qk_norm says)
    qk_norm_full: bool = False
    gated_mlp: bool = True  # gate, up and down matrices; False: up and down (PhiMLP fc1, fc2)
    norm_vectors: int = 1  # vectors per norm: RMSNorm 1 (weight), LayerNorm 2 (weight and bias)
    norms_per_layer: int = 2  # before attention and before the MLP; 1 in a parallel block (Phi)
    # the config class's defaults for keys a config.json may leave out; None: derived (KV heads = attention
    # heads, head_dim = hidden_size // num_attention_heads)
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    head_dim_key: str = "head_dim"  # the key giving head_dim (Qwen 1: kv_channels)
    multi_head_only: bool = False  # no KV-head key: as many KV heads as query heads (Qwen 1)
    fused_mlp_width: bool = False  # intermediate_size is gate + up together: each is half (QWenMLP w1, w2)
    context_caps: tuple[str, ...] = ()  # keys also bounding the context (vLLM's max_model_len: the least of them)
    sliding_window: int | None = None
    sliding_window_switch: str | None = None  # the boolean that turns the window on (None: on whenever set)
    # Which layers the switched-on window slides, from max_window_layers (the config class's default 28) when the config
    # has no layer_types (transformers' __post_init__): "from", layers i >= max_window_layers (Qwen2Config,
    # Qwen3Config); "even_below", even layers i < max_window_layers (Qwen2MoeConfig); None: every layer (Qwen3MoeConfig
    # has no max_window_layers). vLLM slides every layer or none (qwen2.py asserts max_window_layers ==
    # num_hidden_layers where layer_types mix: "Sliding window for some but all layers is not supported"): a mix is
    # refused
    window_layers: str | None = None
    experts: Experts | None = None  # a mixture of experts in place of the MLP (None: dense)
    mla: bool = False  # multi-head latent attention (DeepSeek-V2/V3) in place of q/k/v/o
    sparse_attention: bool = False  # DeepSeek sparse attention (an indexer beside MLA): index_* keys required
    tie_word_embeddings: bool = False  # the config class's default for tie_word_embeddings (Gemma: true)
    # vLLM's LM head whatever tie_word_embeddings says: "tied" (Gemma 2: gemma2.py computes the logits from
    # embed_tokens), "own" (gpt-oss, GLM-4.5, MiniMax-M2: a ParallelLMHead never tied); None: as the key says
    lm_head: Literal["tied", "own"] | None = None
    attention_sinks: bool = False  # a learned sink logit per attention head and layer (gpt-oss; a parameter, not KV)
    # Sliding-window and full-attention layers side by side (``sim.hf_sliding_layers``): which layers slide
    # when the config has no layer_types. "alternate": layer i slides when i % 2 == 0 (Gemma 2, gpt-oss);
    # "pattern": layer i is full when (i + 1) % sliding_window_pattern == 0 (Gemma 3). None: every layer slides when
    # there is a window, and layer_types other than full_attention are refused.
    hybrid_layout: str | None = None
    sliding_window_pattern: int | None = None  # the "pattern" layout's default period
    layer_types_ignored: bool = False  # vLLM follows the layout whatever layer_types says (gpt-oss): must agree
    # Keys of REQUIRED (sim.hf_config) the config class defaults and the published files leave out: (key, default)
    required_defaults: tuple[tuple[str, int], ...] = ()
    # a multimodal config: the decoder's keys under "text_config", beside them this vision tower (its reader in
    # sim.vision_towers.VISION_TOWERS: "siglip", Gemma 3's; "qwen3_vl", Qwen3.5's), counted in the weights
    vision_tower: str | None = None
    # a key listing each layer's attention kind, 1 for full (softmax) attention; any other kind is refused
    # (MiniMax-M2's attn_type_list: 0 is MiniMax-Text-01's lightning attention, which vLLM's minimax_m2.py never builds)
    attention_kinds_key: str | None = None
    # Gated DeltaNet layers beside full-attention ones, picked by layer_types or full_attention_interval
    # (``sim.linear_attention.gated_delta_net``), and q_proj's output gate on the attention layers (Qwen3NextAttention)
    linear_attention: bool = False
    attention_output_gate: bool = False
    # The share of each head the rotary embedding turns when the config.json gives none (the config class's
    # partial_rotary_factor default; sim.hf_rotary), and a key giving the rotated width itself (MiniMax-M2's rotary_dim)
    partial_rotary_factor: float = 1.0
    rotary_dim_key: str | None = None
    # The rotary caches vLLM builds (sim.rope_caches): one per layer type's rope_parameters (Gemma 3), in fp32 (gpt-oss)
    rope_per_layer_type: bool = False
    rope_fp32: bool = False


LLAMA_BIASES = (BiasSwitch("attention_bias", ("qkv", "o")), BiasSwitch("mlp_bias", ("mlp",)))

# Gemma 2 and 3 (transformers configuration_gemma2.py / configuration_gemma3.py, modeling_gemma2.py /
# modeling_gemma3.py; vLLM gemma2.py / gemma3.py): a gated MLP (gelu_pytorch_tanh), four RMSNorms a layer
# (input_layernorm, post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm), head_dim given
# (not hidden / heads), no biases unless attention_bias (false; q, k, v and o), tied embeddings by default.
GEMMA = dict(bias_switches=LLAMA_BIASES[:1], norms_per_layer=4, tie_word_embeddings=True, head_dim=256)
# Gemma3TextConfig (transformers 4.50+): num_key_value_heads 4, head_dim 256, sliding_window 4096,
# sliding_window_pattern 6 (layer_types: "sliding_attention" if (i + 1) % 6 else "full_attention"), q_norm and k_norm
# (Gemma3RMSNorm over head_dim) in every layer.
GEMMA3 = dict(GEMMA, qk_norm=True, num_key_value_heads=4, sliding_window=4096, hybrid_layout="pattern",
              sliding_window_pattern=6, rope_per_layer_type=True)

# Qwen3.5's language models, dense and MoE (transformers Qwen3_5TextConfig / Qwen3_5MoeTextConfig defaults;
# partial_rotary_factor 0.25, its interleaved mrope sections 32 = 64 / 2 frequencies)
QWEN3_5 = dict(qk_norm=True, num_key_value_heads=4, head_dim=256, linear_attention=True, attention_output_gate=True,
               partial_rotary_factor=0.25)
QWEN3_5_MOE = dict(QWEN3_5, num_key_value_heads=2, required_defaults=(("intermediate_size", 1),),
                   experts=Experts(256, 8, "moe_intermediate_size", 512,
                                   shared_width_key="shared_expert_intermediate_size", shared_width_default=512,
                                   shared_expert_gate=True))

FAMILIES: dict[str, Family] = {
    # LlamaConfig: num_key_value_heads, head_dim None (derived); attention_bias, mlp_bias false; no window of its
    # own (in any family, a sliding_window narrower than the context is refused).
    "llama": Family(bias_switches=LLAMA_BIASES),
    # MistralConfig: num_key_value_heads 8, head_dim None, sliding_window 4096 (Mistral-7B-v0.1; later
    # versions set it null); no biases.
    "mistral": Family(num_key_value_heads=8, sliding_window=4096),
    # Qwen2Config: num_key_value_heads 32, sliding_window 4096 only with use_sliding_window (false); q/k/v biases.
    "qwen2": Family(biases=("qkv",), num_key_value_heads=32, sliding_window=4096,
                    sliding_window_switch="use_sliding_window", window_layers="from"),
    # Qwen3Config: num_key_value_heads 32, head_dim 128, attention_bias false, q/k norms; window as Qwen2.
    "qwen3": Family(bias_switches=LLAMA_BIASES[:1], qk_norm=True, num_key_value_heads=32, head_dim=128,
                    sliding_window=4096, sliding_window_switch="use_sliding_window", window_layers="from"),
    # Qwen3MoeConfig: Qwen3 attention (q/k norms, attention_bias), num_key_value_heads 4, no head_dim default
    # (derived); 128 experts, 8 per token, moe_intermediate_size 768, decoder_sparse_step 1, mlp_only_layers [];
    # window as Qwen2. No shared expert (Qwen3MoeSparseMoeBlock: gate + experts).
    "qwen3_moe": Family(bias_switches=LLAMA_BIASES[:1], qk_norm=True, num_key_value_heads=4, sliding_window=4096,
                        sliding_window_switch="use_sliding_window",
                        experts=Experts(128, 8, "moe_intermediate_size", 768, sparse_layout=True)),
    # MixtralConfig: num_key_value_heads 8, head_dim None, sliding_window None, no biases; num_local_experts 8,
    # num_experts_per_tok 2, each expert intermediate_size wide (MixtralSparseMoeBlock: every layer).
    "mixtral": Family(num_key_value_heads=8, experts=Experts(8, 2, "intermediate_size")),
    # PhiConfig (phi-1, phi-1.5, phi-2): num_key_value_heads None (= heads), head_dim derived; PhiDecoderLayer is a
    # parallel block (one input_layernorm, a LayerNorm with bias, feeds attention and MLP); PhiAttention's q, k, v
    # and dense carry biases, and with qk_layernorm (false) LayerNorms on q and k; PhiMLP is fc1 -> gelu_new ->
    # fc2, both biased; PhiForCausalLM's lm_head has a bias; final_layernorm a LayerNorm. partial_rotary_factor
    # (PhiConfig's default 0.5; phi-2 0.4) turns part of each head: no weight, KV or time, the rotary cache's width
    # (ModelSpec.rotary_dim). (vLLM 0.33 serves PhiForCausalLM through its Transformers backend, registry.py
    # _TRANSFORMERS_SUPPORTED_MODELS, whose rotary embedding computes cos/sin each step: the 128 KiB cache counted for
    # phi-2 is not held there.)
    "phi": Family(biases=("qkv", "o", "mlp", "lm_head"), qk_norm_switch="qk_layernorm", gated_mlp=False,
                  norm_vectors=2, norms_per_layer=1, partial_rotary_factor=0.5),
    # QWenConfig (Qwen 1, model code huggingface.co/Qwen/Qwen-7B configuration_qwen.py, modeling_qwen.py): no KV-head
    # key (multi-head attention), kv_channels 128 per head; c_attn (q, k, v fused) always biased, c_proj and the
    # MLP only without no_bias (default true); QWenMLP's w1 and w2 are intermediate_size // 2 wide each (gate and up
    # of a SwiGLU: c_proj(w1(x) * silu(w2(x)))); RMSNorms as Llama; seq_length, when given, also bounds the context.
    "qwen": Family(biases=("qkv",), bias_switches=(BiasSwitch("no_bias", ("o", "mlp"), default=True, inverted=True),),
                   head_dim=128, head_dim_key="kv_channels", multi_head_only=True, fused_mlp_width=True,
                   context_caps=("seq_length",)),
    # InternLMConfig (InternLM 1, model code huggingface.co/internlm/internlm-7b configuration_internlm.py): Llama's
    # layers; bias (default true) puts biases on q, k, v and o (InternLMAttention; vLLM reads it as Llama's
    # attention_bias); the MLP has none. num_key_value_heads as Llama (absent: = heads).
    "internlm": Family(bias_switches=(BiasSwitch("bias", ("qkv", "o"), default=True),)),
    # PhimoeConfig (Phi-3.5-MoE, Phi-mini-MoE; transformers configuration_phimoe.py, vLLM phimoe.py):
    # num_key_value_heads 8, head_dim derived, sliding_window None; attention_bias (false) puts biases on q, k, v
    # and o, lm_head_bias (false) on the LM head; LayerNorms with bias (PhiMoEDecoderLayer's two, the final norm);
    # num_local_experts 16, num_experts_per_tok 2, each expert a gated MLP intermediate_size wide (w1, w3, w2; no
    # biases) behind a router without bias, in every layer.
    "phimoe": Family(bias_switches=(BiasSwitch("attention_bias", ("qkv", "o")), BiasSwitch("lm_head_bias", ("lm_head",))),
                     norm_vectors=2, num_key_value_heads=8, experts=Experts(16, 2, "intermediate_size")),
    # Qwen2MoeConfig (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B; transformers configuration_qwen2_moe.py, vLLM qwen2_moe.py):
    # Qwen2 attention (q/k/v biases), num_key_value_heads 16, window as Qwen2; 60 experts, 4 per token,
    # moe_intermediate_size 1408, decoder_sparse_step 1, mlp_only_layers []; every MoE layer adds a shared expert
    # (a gated MLP shared_expert_intermediate_size 5632 wide, MergedColumnParallel + RowParallel in vLLM: split
    # over TP) scaled by sigmoid(shared_expert_gate), a Linear(hidden, 1) without bias held whole on every rank.
    "qwen2_moe": Family(biases=("qkv",), num_key_value_heads=16, sliding_window=4096,
                        sliding_window_switch="use_sliding_window", window_layers="even_below",
                        experts=Experts(60, 4, "moe_intermediate_size", 1408, sparse_layout=True,
                                        shared_width_key="shared_expert_intermediate_size", shared_width_default=5632,
                                        shared_expert_gate=True)),
    # DeepseekV2Config / DeepseekV3Config (DeepSeek-V2, V2-Lite, V3, R1; Kimi K2 is deepseek_v3 too): multi-head
    # latent attention (vLLM deepseek_v2.py DeepseekV2MLAAttention; no biases) and, from layer
    # first_k_dense_replace on every moe_layer_freq-th layer, n_routed_experts experts moe_intermediate_size wide
    # (num_experts_per_tok per token) beside n_shared_experts shared ones (vLLM: one DeepseekV2MLP
    # n_shared_experts × moe_intermediate_size wide, split over TP); the first layers a dense MLP of
    # intermediate_size. Every shape key is required (the two classes' defaults differ; none is taken).
    "deepseek_v2": Family(mla=True, experts=Experts(None, None, "moe_intermediate_size", deepseek_layout=True)),
    "deepseek_v3": Family(mla=True, experts=Experts(None, None, "moe_intermediate_size", deepseek_layout=True)),
    # DeepSeek-V3.2 (deepseek_v32) and GLM-5 (glm_moe_dsa, built by vLLM's deepseek_v2.py too: GlmMoeDsa
    # configs carry the same keys): DeepSeek-V3's layers plus DeepSeek sparse attention, whose indexer vLLM builds
    # whenever the config has index_topk (vllm-project/vllm vllm/model_executor/models/deepseek_v2.py,
    # DeepseekV2Model and DeepseekV2MLAAttention: ``self.is_v32 = hasattr(config, "index_topk")``, whatever the
    # model_type and the key's value); here index_topk, index_n_heads and index_head_dim are required, for these
    # families and for a deepseek_v2/deepseek_v3 config that has index_topk (``_mla_model_spec``).
    "deepseek_v32": Family(mla=True, sparse_attention=True,
                           experts=Experts(None, None, "moe_intermediate_size", deepseek_layout=True)),
    "glm_moe_dsa": Family(mla=True, sparse_attention=True,
                          experts=Experts(None, None, "moe_intermediate_size", deepseek_layout=True)),
    # Glm4MoeConfig (GLM-4.5, GLM-4.5-Air, GLM-4.6; transformers configuration_glm4_moe.py, vLLM 0.33 glm4_moe.py):
    # q/k/v/o attention with num_key_value_heads 8 and head_dim given (5120 / 96 heads is no integer); attention_bias
    # biases q, k and v only (QKVParallelLinear bias=attention_bias, o_proj bias=False); use_qk_norm (false) adds an
    # RMSNorm over head_dim on q and on k; partial_rotary_factor (default 0.5, vLLM's too) turns half of each head:
    # no weight or KV, the rotary cache's width (ModelSpec.rotary_dim).
    # Layer i is MoE when n_routed_experts is not null (default 128) and i >= first_k_dense_replace (default 1; no
    # moe_layer_freq: Glm4MoeDecoderLayer), the first layers a dense MLP intermediate_size wide; an MoE layer has a
    # router with an e_score_correction_bias always (Glm4MoE: no topk_method key), both held in fp32,
    # n_routed_experts experts moe_intermediate_size (default 1408) wide, num_experts_per_tok (default 8) a token, and
    # n_shared_experts (default 1) shared ones as one MLP. vLLM builds its own
    # lm_head (ParallelLMHead). The MTP layer (num_nextn_predict_layers, layer num_hidden_layers) is not counted:
    # vLLM's Glm4MoeModel.load_weights skips it (skip_spec_layers) unless glm4_moe_mtp.py serves MTP speculative
    # decoding, which kvsim does not model (as DeepSeek's).
    "glm4_moe": Family(lm_head="own", bias_switches=(BiasSwitch("attention_bias", ("qkv",)),),
                       qk_norm_switch="use_qk_norm", num_key_value_heads=8,
                       experts=Experts(128, 8, "moe_intermediate_size", 1408, deepseek_layout=True, router_bias=True,
                                       router_fp32=True, layer_freq_key=None, first_dense_default=1,
                                       shared_experts_default=1), partial_rotary_factor=0.5),
    # MiniMaxM2Config (MiniMax-M2; transformers configuration_minimax_m2.py, vLLM 0.33 minimax_m2.py): q/k/v/o
    # attention, num_key_value_heads 8, head_dim 128, attention_bias (false) on q, k and v only, a q_norm and a k_norm
    # over all heads (per_layer: MiniMaxText01RMSNormTP, 48 x 128 and 8 x 128 wide) whatever use_qk_norm says;
    # rotary_dim (64) turns part of each head: no weight or KV, the rotary cache's width (ModelSpec.rotary_dim; vLLM
    # reads the key, the config class has no default); every layer MoE: num_local_experts 256,
    # num_experts_per_tok 8, each expert intermediate_size (1536) wide, a router in fp32 with an fp32
    # e_score_correction_bias when use_routing_bias; no shared expert (vLLM reads neither shared_intermediate_size
    # nor mlp_intermediate_size); its own lm_head. Every layer is full attention (attn_type_list 1; vLLM passes no
    # window). The MTP modules (num_mtp_modules, layers num_hidden_layers on) are not counted: vLLM maps their
    # weights to nothing (MiniMaxM2Model hf_to_vllm_mapper), and the published checkpoint holds none.
    "minimax_m2": Family(lm_head="own", bias_switches=(BiasSwitch("attention_bias", ("qkv",)),), qk_norm_full=True,
                         num_key_value_heads=8, head_dim=128, attention_kinds_key="attn_type_list",
                         rotary_dim_key="rotary_dim",
                         experts=Experts(256, 8, "intermediate_size", 1536, router_bias_key="use_routing_bias",
                                         router_fp32=True)),
    # Gemma2Config: num_key_value_heads 4, head_dim 256, sliding_window 4096, layer_types "sliding_attention" if
    # (i + 1) % 2 else "full_attention" (layer 0 slides; the published config.json files have no layer_types).
    "gemma2": Family(**GEMMA, num_key_value_heads=4, sliding_window=4096, hybrid_layout="alternate", lm_head="tied"),
    # Gemma 3 text-only (gemma-3-1b: Gemma3ForCausalLM) and multimodal (gemma-3-4b/12b/27b:
    # Gemma3ForConditionalGeneration, the decoder's keys under text_config, vLLM's hf_text_config). Those
    # text_config objects leave out vocab_size and max_position_embeddings: Gemma3TextConfig's 262208 and 131072.
    # The multimodal model's SigLIP vision tower and projector are counted in its weights (sim.vision_towers).
    "gemma3_text": Family(**GEMMA3),
    "gemma3": Family(**GEMMA3, vision_tower="siglip",
                     required_defaults=(("vocab_size", 262208), ("max_position_embeddings", 131072))),
    # GptOssConfig (transformers configuration_gpt_oss.py; vLLM gpt_oss.py): num_key_value_heads 8, head_dim 64,
    # sliding_window 128 on layers i % 2 == 0 (vLLM OAIAttention, whatever layer_types says; transformers' default
    # layer_types agree), attention_bias true (q, k, v and o biased), a sink logit per head (``sinks``), no tied
    # embeddings; every layer MoE: num_local_experts 128, num_experts_per_tok 4 (the config.json also writes
    # experts_per_token), each expert a gated MLP intermediate_size wide with biases (gate_up_proj_bias,
    # down_proj_bias) behind a router with a bias (GptOssTopKRouter).
    "gpt_oss": Family(lm_head="own", bias_switches=(BiasSwitch("attention_bias", ("qkv", "o"), default=True),),
                      num_key_value_heads=8, head_dim=64, sliding_window=128, hybrid_layout="alternate",
                      layer_types_ignored=True, attention_sinks=True, rope_fp32=True,
                      experts=Experts(128, 4, "intermediate_size", router_bias=True, expert_biases=True,
                                      per_token_alias="experts_per_token")),
    # Qwen3NextConfig (Qwen3-Next-80B-A3B; transformers configuration_qwen3_next.py, vLLM 0.33 qwen3_next.py):
    # 48 layers, every 4th full attention (Qwen3NextAttention: 16 query heads of 256 whose q_proj also gives a gate,
    # 2 KV heads, q/k RMSNorms over head_dim, no biases), the others Gated DeltaNet (sim.linear_attention); every
    # layer MoE (decoder_sparse_step 1, mlp_only_layers []): 512 experts 512 wide, 10 a token, a shared expert 512
    # wide behind a sigmoid gate (Qwen3NextSparseMoeBlock); its own lm_head (ParallelLMHead, never tied);
    # partial_rotary_factor (default 0.25) turns a quarter of each head (ModelSpec.rotary_dim). The MTP layer
    # (mtp.*) is not counted: vLLM maps its weights to nothing (hf_to_vllm_mapper) unless MTP serves it.
    # intermediate_size (a dense MLP's width, used only by mlp_only_layers) defaults to 5632 in Qwen3NextConfig, and
    # files made from a Qwen3.5/3.6 MoE text config leave it out (LLMServingSim configs/model/Qwen/Qwen3.6-35B-A3B.json).
    "qwen3_next": Family(qk_norm=True, num_key_value_heads=2, head_dim=256, lm_head="own", linear_attention=True,
                         attention_output_gate=True, partial_rotary_factor=0.25,
                         required_defaults=(("intermediate_size", 5632),),
                         experts=Experts(512, 10, "moe_intermediate_size", 512, sparse_layout=True,
                                         shared_width_key="shared_expert_intermediate_size", shared_width_default=512,
                                         shared_expert_gate=True)),
    # Qwen3.5's language models (transformers Qwen3_5TextConfig / Qwen3_5MoeTextConfig; vLLM 0.33 qwen3_5.py
    # Qwen3_5DecoderLayer): Qwen3-Next's layers, every layer a dense MLP (qwen3_5_text) or Qwen3-Next's MoE block
    # (qwen3_5_moe_text: 256 experts, 8 a token, a gated shared expert 512 wide; no intermediate_size key), the LM
    # head tied as tie_word_embeddings says; mamba_ssm_dtype (float32 in the published files) is the recurrent state's
    # dtype. The published files are multimodal (qwen3_5, qwen3_5_moe: Qwen3_5ForConditionalGeneration and its MoE
    # sibling): the same language model under text_config (vLLM's hf_text_config) and Qwen3-VL's vision transformer
    # beside it (sim.vision_towers.qwen3_vl_tower); the MTP layer (mtp.*) is not counted, as Qwen3-Next's.
    "qwen3_5_text": Family(**QWEN3_5),
    "qwen3_5_moe_text": Family(**QWEN3_5_MOE),
    "qwen3_5": Family(**QWEN3_5, vision_tower="qwen3_vl"),
    "qwen3_5_moe": Family(**QWEN3_5_MOE, vision_tower="qwen3_vl"),
}


# vLLM picks a model's implementation by its config.json "architectures" (vllm/model_executor/models/registry.py,
# vLLM 0.33.0), transformers its config class by "model_type". A checkpoint that reuses an architecture under a
# model_type of its own (Kimi-K2: "kimi_k2", DeepseekV3ForCausalLM, its configuration_deepseek.py DeepseekV3Config)
# is served as that architecture: these are the registry's architectures whose implementation is a family above,
# read with that family's keys and defaults when the model_type is not one kvsim knows.
ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe", "MixtralForCausalLM": "mixtral",
    "PhiForCausalLM": "phi", "PhiMoEForCausalLM": "phimoe", "Qwen2MoeForCausalLM": "qwen2_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2", "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV32ForCausalLM": "deepseek_v32", "GlmMoeDsaForCausalLM": "glm_moe_dsa", "Glm4MoeForCausalLM": "glm4_moe",
    "MiniMaxM2ForCausalLM": "minimax_m2", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3", "GptOssForCausalLM": "gpt_oss", "Qwen3NextForCausalLM": "qwen3_next",
    "Qwen3_5ForCausalLM": "qwen3_5_text", "Qwen3_5MoeForCausalLM": "qwen3_5_moe_text",
    "Qwen3_5ForConditionalGeneration": "qwen3_5", "Qwen3_5MoeForConditionalGeneration": "qwen3_5_moe",
}
