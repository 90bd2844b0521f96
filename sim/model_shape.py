"""A model's shape: the dimensions, parameter counts and per-token KV bytes the compute and cache models read.

``ModelSpec`` comes from ``profiles/models.yaml`` or a Hugging Face config.json (``sim.specs.model_spec``,
``sim.hf_config``); ``sim.kv_dtype`` resolves the KV cache's dtype from the serving settings and the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import ConfigError
from sim.linear_attention import GatedDeltaNet, as_gated_delta_net
from sim.model_weights import FP8_SCALE_BYTES, WeightBytes
from sim.rope_caches import RopeCache, as_rope_caches, check_position_encoding, learned_position_rows
from sim.vision_towers import VisionTower, as_vision_tower

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
GIB = 1024**3
# DeepSeek sparse attention's caches (vLLM): the indexer's keys in FP8 with one fp32 scale per 128 values
# (deepseek_v2.py Indexer: quant_block_size 128, DeepseekV32IndexerCache head_dim = index_head_dim +
# index_head_dim // 128 * 4, uint8); the latent in fp8_ds_mla: kv_lora_rank FP8 values, one fp32 scale per 128 of
# them, the rope part in bf16 (512 + 16 + 128 = 656 bytes for DeepSeek-V3.2; FlashMLA's sparse format)
SPARSE_QUANT_BLOCK = 128


@dataclass(frozen=True, slots=True)
class ModelSpec(WeightBytes):
    """A decoder-only transformer's shape.

    A mixture-of-experts model (Qwen3-MoE, Mixtral) sets the four MoE fields: in each of its
    ``num_moe_layers`` MoE layers a router (hidden × experts) sends every token to
    ``num_experts_per_tok`` of ``num_experts`` gated-MLP experts of width ``moe_intermediate_size``;
    the other layers have a dense gated MLP of width ``intermediate_size``. Dense models leave them None.
    ``num_parameters`` counts every parameter (the weights held in memory); ``active_parameters`` those a
    token computes with. ``intermediate_size`` is the MLP's hidden width (each of gate and up's outputs);
    ``gated_mlp`` False for a plain MLP (up, activation, down: Phi's fc1 -> gelu -> fc2) of two matrices, not three.

    Shared experts (Qwen2-MoE, DeepSeek): every MoE layer also runs a gated MLP of width
    ``shared_expert_intermediate_size`` on every token (DeepSeek's ``n_shared_experts`` experts are one MLP
    n × ``moe_intermediate_size`` wide, as vLLM builds them), sharded over TP like the dense MLP; Qwen2-MoE
    scales it by a sigmoid gate (hidden × 1, replicated) when ``shared_expert_gate``.

    Multi-head latent attention (DeepSeek-V2/V3: ``kv_lora_rank`` set) replaces q/k/v/o with q_a/q_b (or q_proj
    when ``q_lora_rank`` is None), kv_a_proj_with_mqa, kv_b_proj and o_proj; the KV cache holds one latent of
    ``kv_lora_rank + qk_rope_head_dim`` values per token and layer. Such a spec gives ``num_kv_heads`` 1 and
    ``head_dim`` that latent width, as vLLM's MLA backends see the cache (``MLAAttentionSpec``: one vector, not
    K and V, on every TP rank).
    """

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # the dense MLP's width (layers without experts)
    vocab_size: int
    num_parameters: int
    max_position_embeddings: int
    source: str
    gated_mlp: bool = True  # gate, up and down matrices (SwiGLU); False: up and down only
    # Tokens each query attends to (itself included) where narrower than the context; None: full attention
    sliding_window: int | None = None
    # Layers attending within ``sliding_window`` when only some do (gpt-oss, Gemma 2/3: sliding and full-attention
    # layers interleaved); None: every layer, when there is a window
    num_sliding_layers: int | None = None
    # Of such a model, whether its last layer slides (Gemma 3 at 34 or 62 layers: layer i is full where (i + 1) % 6
    # == 0) rather than attends fully (gpt-oss, Gemma 2: layers i % 2 == 0 slide, an even count): what a layerwise PD
    # transfer sends after the prefill's last layer (``sim.serving.pd_transfers``); true only with num_sliding_layers
    last_layer_slides: bool = False
    num_experts: int | None = None  # routed experts per MoE layer
    num_experts_per_tok: int | None = None  # experts each token is routed to (top-k)
    moe_intermediate_size: int | None = None  # one expert's gated-MLP width
    num_moe_layers: int | None = None  # layers whose MLP is the experts (the rest are dense)
    shared_expert_intermediate_size: int | None = None  # the always-on shared experts' total width (None: none)
    shared_expert_gate: bool = False  # a sigmoid gate (hidden x 1) scales the shared experts (Qwen2-MoE)
    # Multi-head latent attention (None: q/k/v/o attention)
    q_lora_rank: int | None = None  # q_a_proj's width (None with MLA: one q_proj, as DeepSeek-V2-Lite)
    kv_lora_rank: int | None = None  # the cached latent's compressed K/V part
    qk_nope_head_dim: int | None = None  # per-head query/key width without rotary embedding
    qk_rope_head_dim: int | None = None  # the rotary part (one shared key part, cached beside the latent)
    v_head_dim: int | None = None  # per-head value width
    # An FP8 checkpoint (config.json quantization_config quant_method "fp8"): the linear layers' weight matrices
    # are one byte each plus an fp32 scale per weight_block_size block (None: one scale per tensor); everything
    # else (embeddings, LM head, norms, routers, biases) takes the model dtype (``linear_parameters``).
    # "mxfp4" (gpt-oss): the routed experts' weight matrices only, at MXFP4_BYTES_PER_WEIGHT; every other weight
    # (attention, routers, embeddings, LM head) in the model dtype (``expert_weight_bytes``)
    weight_quantization: str | None = None
    weight_block_size: tuple[int, int] | None = None
    # DeepSeek sparse attention (DeepSeek-V3.2, GLM-5; with MLA): a lightning indexer of index_n_heads heads of
    # index_head_dim scores every cached token for each query, and the attention reads the index_topk best
    # (None: every layer attends to its whole context)
    index_topk: int | None = None
    index_n_heads: int | None = None
    index_head_dim: int | None = None
    # Parameters vLLM holds in fp32 whatever serving.dtype, counted in num_parameters like the rest: GLM-4.5's and
    # MiniMax-M2's MoE routers and their e_score_correction_bias (GateLinear built with params_dtype=torch.float32:
    # vllm/model_executor/models/glm4_moe.py Glm4MoE, minimax_m2.py MiniMaxM2MoE); 0 for the other models, whose
    # routers take the model dtype
    fp32_parameters: int = 0
    # Gated DeltaNet linear-attention layers beside the full-attention ones (Qwen3-Next, Qwen3.5: a constant state
    # per sequence, no KV; sim.linear_attention); None: every layer attends
    linear_attention: GatedDeltaNet | None = None
    attention_output_gate: bool = False  # q_proj also gives a gate on each head's output (Qwen3NextAttention)
    # A multimodal model's vision tower and projector (Gemma 3, Qwen3.5), counted in num_parameters: weights only to
    # the text compute model, and the encoder's pass in vLLM's profile run (sim.vision_towers); None: text only
    vision_tower: VisionTower | None = None
    # The values of each head the rotary embedding turns, where only part of it turns (config.json
    # partial_rotary_factor or rotary_dim: Qwen3-Next, Qwen3.5, GLM-4.5, MiniMax-M2, Phi-2); it sizes the rotary
    # cos/sin cache (sim.serving.memory_profile.rope_cache_bytes). None: all head_dim values (MLA: qk_rope_head_dim)
    rotary_dim: int | None = None
    # The rotary cos/sin caches where vLLM builds other than one of max_position_embeddings x that width in the model
    # dtype (sim.rope_caches: Gemma 3's two, DeepSeek-V3.2's indexer's, gpt-oss's in fp32); None: that one
    rope_caches: tuple[RopeCache, ...] | None = None
    # rope (the caches above), alibi (BLOOM) or learned (OPT: a table of weights): sim.rope_caches.POSITION_ENCODINGS
    position_encoding: str = "rope"
    # The norms of a decoder layer beside its attention and MLP, as vLLM's model file runs them (counted in
    # sim.serving.elementwise; their weights are in num_parameters): 2, an RMSNorm before the attention and one before
    # the MLP, each fused with the residual add (Llama and most); 4, Gemma 2/3's sandwich, those two and a plain
    # RMSNorm on the attention's and on the MLP's output (gemma2.py / gemma3.py post_attention_layernorm,
    # post_feedforward_layernorm); 1, a parallel block's one LayerNorm feeding attention and MLP, whose outputs a sum
    # adds to the residual (phi.py PhiLayer)
    norms_per_layer: int = 2
    # An RMSNorm on q and one on k between qkv_proj and the rotary embedding: over each head (Qwen3, Gemma 3,
    # Qwen3-Next, GLM-4.5 with use_qk_norm: q_norm, k_norm) or over all heads (MiniMax-M2); two kernels a layer
    qk_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rope_caches", as_rope_caches(self.rope_caches, self.name))
        check_position_encoding(self)
        object.__setattr__(self, "linear_attention", as_gated_delta_net(self.linear_attention, self.name))
        object.__setattr__(self, "vision_tower", as_vision_tower(self.vision_tower, self.name))
        if self.vision_tower is not None and self.vision_tower.parameters > self.num_parameters:
            raise ConfigError(f"model {self.name!r}: vision_tower.parameters must not exceed num_parameters")
        linear = self.linear_attention
        if linear is not None and (linear.layers >= self.num_layers or self.sliding_window is not None
                                   or self.kv_lora_rank is not None):
            raise ConfigError(f"model {self.name!r}: linear_attention.layers must be below num_layers "
                              f"{self.num_layers}, beside q/k/v/o attention without a sliding window")
        if not isinstance(self.attention_output_gate, bool):
            raise ConfigError(f"model {self.name!r}: attention_output_gate must be true or false")
        if isinstance(self.norms_per_layer, bool) or self.norms_per_layer not in (1, 2, 4):
            raise ConfigError(f"model {self.name!r}: norms_per_layer must be 1 (a parallel block), 2 or 4 (Gemma's "
                              f"sandwich) (got {self.norms_per_layer!r})")
        if not isinstance(self.qk_norm, bool) or (self.qk_norm and self.kv_lora_rank is not None):
            raise ConfigError(f"model {self.name!r}: qk_norm must be true or false, and false with multi-head latent "
                              f"attention (got {self.qk_norm!r})")
        if not isinstance(self.gated_mlp, bool):
            raise ConfigError(f"model {self.name!r}: gated_mlp must be true or false (got {self.gated_mlp!r})")
        window = self.sliding_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            raise ConfigError(f"model {self.name!r}: sliding_window must be a positive integer (got {window!r})")
        sliding = self.num_sliding_layers
        if sliding is not None and (window is None or isinstance(sliding, bool) or not isinstance(sliding, int)
                                    or not 1 <= sliding < self.num_layers):
            raise ConfigError(f"model {self.name!r}: num_sliding_layers needs a sliding_window and must be an integer "
                              f"from 1 to num_layers - 1 = {self.num_layers - 1} (got {sliding!r}; leave it out when "
                              "every layer slides)")
        if not isinstance(self.last_layer_slides, bool) or (self.last_layer_slides and sliding is None):
            raise ConfigError(f"model {self.name!r}: last_layer_slides must be true or false, and true only with "
                              f"num_sliding_layers (got {self.last_layer_slides!r})")
        fp32 = self.fp32_parameters
        if isinstance(fp32, bool) or not isinstance(fp32, int) or not 0 <= fp32 <= self.num_parameters:
            raise ConfigError(f"model {self.name!r}: fp32_parameters must be an integer from 0 to num_parameters "
                              f"(got {fp32!r})")
        rotary = self.rotary_dim
        if rotary is not None and (isinstance(rotary, bool) or not isinstance(rotary, int) or rotary % 2
                                   or not 0 < rotary <= self.head_dim or self.kv_lora_rank is not None):
            raise ConfigError(f"model {self.name!r}: rotary_dim must be an even integer from 2 to head_dim "
                              f"{self.head_dim} (got {rotary!r}); with MLA the rotary part is qk_rope_head_dim")
        self._check_mla()
        self._check_quantization()
        self._check_sparse_attention()
        shared = self.shared_expert_intermediate_size
        if shared is not None and (isinstance(shared, bool) or not isinstance(shared, int) or shared <= 0):
            raise ConfigError(f"model {self.name!r}: shared_expert_intermediate_size must be a positive integer "
                              f"(got {shared!r})")
        if not isinstance(self.shared_expert_gate, bool):
            raise ConfigError(f"model {self.name!r}: shared_expert_gate must be true or false "
                              f"(got {self.shared_expert_gate!r})")
        moe = (self.num_experts, self.num_experts_per_tok, self.moe_intermediate_size, self.num_moe_layers)
        if all(v is None for v in moe):
            if shared is not None or self.shared_expert_gate:
                raise ConfigError(f"model {self.name!r}: shared experts need a mixture of experts (num_experts ...)")
            return
        if any(v is None or isinstance(v, bool) or not isinstance(v, int) for v in moe):
            raise ConfigError(f"model {self.name!r}: a mixture of experts needs integer num_experts, "
                              f"num_experts_per_tok, moe_intermediate_size and num_moe_layers (got {moe})")
        if not (1 <= self.num_experts_per_tok <= self.num_experts and self.moe_intermediate_size > 0
                and 1 <= self.num_moe_layers <= self.num_layers):
            raise ConfigError(f"model {self.name!r}: needs 1 <= num_experts_per_tok <= num_experts, "
                              f"moe_intermediate_size > 0 and 1 <= num_moe_layers <= num_layers (got {moe})")

    def _check_quantization(self) -> None:
        if self.weight_quantization not in (None, "fp8", "mxfp4"):
            raise ConfigError(f"model {self.name!r}: weight_quantization must be fp8, mxfp4 or absent "
                              f"(got {self.weight_quantization!r})")
        if self.weight_quantization == "mxfp4" and self.num_experts is None:
            raise ConfigError(f"model {self.name!r}: weight_quantization mxfp4 quantizes a mixture of experts' routed "
                              "experts only (vLLM Mxfp4Config), and this model has none (num_experts ...)")
        block = self.weight_block_size
        if block is None:
            return
        if self.weight_quantization != "fp8":
            raise ConfigError(f"model {self.name!r}: weight_block_size needs weight_quantization fp8")
        if (not isinstance(block, (list, tuple)) or len(block) != 2
                or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in block)):
            raise ConfigError(f"model {self.name!r}: weight_block_size must be two positive integers (got {block!r})")
        object.__setattr__(self, "weight_block_size", tuple(block))

    def _check_sparse_attention(self) -> None:
        dims = {"index_topk": self.index_topk, "index_n_heads": self.index_n_heads,
                "index_head_dim": self.index_head_dim}
        if all(v is None for v in dims.values()):
            return
        for key, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model {self.name!r}: DeepSeek sparse attention needs a positive integer {key} "
                                  f"(got {value!r})")
        if self.kv_lora_rank is None or self.q_lora_rank is None:
            raise ConfigError(f"model {self.name!r}: DeepSeek sparse attention (index_topk) needs multi-head latent "
                              "attention with a q_lora_rank (the indexer's queries come from the q_a projection)")
        if self.index_head_dim % SPARSE_QUANT_BLOCK or self.kv_lora_rank % SPARSE_QUANT_BLOCK:
            raise ConfigError(f"model {self.name!r}: DeepSeek sparse attention quantizes index_head_dim and "
                              f"kv_lora_rank in groups of {SPARSE_QUANT_BLOCK} (got {self.index_head_dim}, "
                              f"{self.kv_lora_rank})")

    def _check_mla(self) -> None:
        dims = {"kv_lora_rank": self.kv_lora_rank, "qk_nope_head_dim": self.qk_nope_head_dim,
                "qk_rope_head_dim": self.qk_rope_head_dim, "v_head_dim": self.v_head_dim}
        if all(v is None for v in dims.values()) and self.q_lora_rank is None:
            return
        if self.q_lora_rank is not None:
            dims["q_lora_rank"] = self.q_lora_rank
        for key, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model {self.name!r}: multi-head latent attention needs a positive integer {key} "
                                  f"(got {value!r})")
        latent = self.kv_lora_rank + self.qk_rope_head_dim
        if (self.num_kv_heads, self.head_dim) != (1, latent):
            raise ConfigError(f"model {self.name!r}: with multi-head latent attention num_kv_heads is 1 and head_dim "
                              f"the latent, kv_lora_rank + qk_rope_head_dim = {latent} (got {self.num_kv_heads}, "
                              f"{self.head_dim})")

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3)."""
        return self.kv_lora_rank is not None

    @property
    def is_sparse_attention(self) -> bool:
        """DeepSeek sparse attention (DeepSeek-V3.2, GLM-5): an indexer picks index_topk cached tokens per query."""
        return self.index_topk is not None

    @property
    def indexer_cache_bytes(self) -> int:
        """One token's indexer key in one layer's cache: index_head_dim FP8 values and an fp32 scale per 128 (vLLM
        ``DeepseekV32IndexerCache``: 128 + 4 = 132 bytes for DeepSeek-V3.2), whatever kv_cache_dtype; 0 without."""
        if not self.is_sparse_attention:
            return 0
        return self.index_head_dim + self.index_head_dim // SPARSE_QUANT_BLOCK * FP8_SCALE_BYTES

    @property
    def indexer_bf16_parameters(self) -> int:
        """One layer's indexer projections vLLM keeps in the model dtype even in an FP8 checkpoint: wk (hidden ×
        index_head_dim) and weights_proj (hidden × index_n_heads), one fused ``wk_weights_proj`` built with
        ``quant_config=None`` (deepseek_v2.py ``Indexer``: "FP8 wk weights are upcasted to BF16 during loading");
        0 without sparse attention."""
        if not self.is_sparse_attention:
            return 0
        return self.hidden_size * (self.index_head_dim + self.index_n_heads)

    @property
    def attention_parameters(self) -> int:
        """One layer's attention projection weights (norms and biases aside). q/k/v/o: hidden × (2 q_dim + 2 kv_dim).
        MLA: q_a (hidden × q_lora_rank) and q_b (q_lora_rank × heads × qk head) or one q_proj (hidden × heads × qk
        head), kv_a_proj_with_mqa (hidden × latent), kv_b_proj (kv_lora_rank × heads × (nope + v)), o_proj (heads ×
        v × hidden); source: vLLM ``DeepseekV2MLAAttention``. Sparse attention adds the indexer's wq_b (q_lora_rank
        × index_n_heads × index_head_dim), wk and weights_proj (``indexer_bf16_parameters``): deepseek_v2.py
        ``Indexer``."""
        h, heads = self.hidden_size, self.num_attention_heads
        if not self.is_mla:
            gate = heads * self.head_dim if self.attention_output_gate else 0  # (Qwen3-Next: q and gate, one q_proj)
            return h * (2 * heads * self.head_dim + 2 * self.num_kv_heads * self.head_dim + gate)
        qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
        q = h * heads * qk_head if self.q_lora_rank is None else self.q_lora_rank * (h + heads * qk_head)
        return (q + h * self.head_dim + self.kv_b_parameters + heads * self.v_head_dim * h
                + self._indexer_projection_parameters)

    @property
    def _indexer_projection_parameters(self) -> int:
        if not self.is_sparse_attention:
            return 0
        return self.q_lora_rank * self.index_n_heads * self.index_head_dim + self.indexer_bf16_parameters

    @property
    def kv_b_parameters(self) -> int:
        """MLA's kv_b_proj (kv_lora_rank × heads × (qk_nope + v)): the latent's up-projection (0 without MLA)."""
        if not self.is_mla:
            return 0
        return self.kv_lora_rank * self.num_attention_heads * (self.qk_nope_head_dim + self.v_head_dim)

    @property
    def replicated_attention_parameters(self) -> int:
        """Attention weights every TP rank holds whole: MLA's q_a_proj and kv_a_proj_with_mqa (vLLM builds them as
        ``ReplicatedLinear`` / a ``MergedColumnParallelLinear`` with ``disable_tp``: deepseek_v2.py
        ``DeepseekV2MLAAttention``) and the sparse-attention indexer's projections ("no tensor parallel, just
        replicated": ``Indexer``); 0 for q/k/v/o attention, whose projections are all split over TP."""
        if not self.is_mla:
            return 0
        return self.hidden_size * ((self.q_lora_rank or 0) + self.head_dim) + self._indexer_projection_parameters

    @property
    def router_parameters(self) -> int:
        """The MoE routers (hidden × num_experts a MoE layer) and shared-expert gates (hidden × 1), over all MoE
        layers: vLLM builds both as ``ReplicatedLinear`` (the router a ``GateLinear``, fused_moe/router/gate_linear.py;
        qwen2_moe.py / qwen3_next.py ``shared_expert_gate``), whole on every TP rank. A router's bias (gpt-oss) and
        DeepSeek's e_score_correction_bias (num_experts values a layer) are not counted here. 0 for a dense model."""
        if not self.is_moe:
            return 0
        return self.moe_layers * self.hidden_size * (self.num_experts + (1 if self.shared_expert_gate else 0))

    @property
    def whole_router_parameters(self) -> int:
        """The routers as every TP rank holds them: ``router_parameters``, or where larger ``fp32_parameters`` (GLM-4.5's
        and MiniMax-M2's routers with their e_score_correction_bias, the bias a parameter of the gate too)."""
        return max(self.router_parameters, self.fp32_parameters)

    @property
    def replicated_parameters(self) -> int:
        """Weights every TP rank holds whole, over all layers: ``replicated_attention_parameters``, the routers
        (``whole_router_parameters``), the vision tower's (``VisionTower.replicated_parameters``) and a learned position
        table (``position_embedding_parameters``)."""
        vision = self.vision_tower.replicated_parameters if self.vision_tower is not None else 0
        return (self.num_layers * self.replicated_attention_parameters + self.whole_router_parameters + vision
                + self.position_embedding_parameters)

    @property
    def position_embedding_parameters(self) -> int:
        """A learned position table's weights (OPT's (max positions + 2) x hidden, in num_parameters); 0 otherwise."""
        return learned_position_rows(self.position_encoding, self.max_position_embeddings) * self.hidden_size

    @property
    def shared_expert_parameters(self) -> int:
        """One MoE layer's shared experts (gate, up, down) and their gate, if any (0 without shared experts)."""
        width = self.shared_expert_intermediate_size or 0
        return 3 * self.hidden_size * width + (self.hidden_size if self.shared_expert_gate else 0)

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts (0 for a dense model)."""
        return self.num_moe_layers or 0

    @property
    def sliding_layers(self) -> int:
        """Layers whose queries attend to the last ``sliding_window`` tokens only (0: none)."""
        if self.sliding_window is None:
            return 0
        return self.num_layers if self.num_sliding_layers is None else self.num_sliding_layers

    @property
    def attention_layers(self) -> int:
        """Layers that attend and keep KV: all but the Gated DeltaNet ones."""
        return self.num_layers - (self.linear_attention.layers if self.linear_attention is not None else 0)

    @property
    def is_hybrid_attention(self) -> bool:
        """Sliding-window and full-attention layers side by side (gpt-oss, Gemma 2/3)."""
        return 0 < self.sliding_layers < self.num_layers

    @property
    def longest_request(self) -> int:
        """The most tokens (prompt and output) kvsim serves a request of this model: its context, or, when every
        layer slides, its window where narrower. Up to the window such a model attends to every token, as kvsim's KV
        size and attention cost assume; beyond it vLLM drops the oldest blocks, which kvsim does not model. A hybrid
        model is served to its context: its full-attention layers keep every token, and kvsim keeps the sliding
        layers' too (vLLM with the hybrid KV-cache manager off: ``serving.hybrid_kv_cache_manager``)."""
        if self.sliding_window is None or self.is_hybrid_attention:
            return self.max_position_embeddings
        return min(self.max_position_embeddings, self.sliding_window)

    @property
    def dense_mlp_parameters(self) -> int:
        """One dense MLP's weight matrices: gate, up and down (a plain MLP: up and down), biases aside."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def expert_parameters(self) -> int:
        """One expert's parameters: gate, up and down matrices (no biases in either family)."""
        return 3 * self.hidden_size * (self.moe_intermediate_size or 0)

    @property
    def routed_expert_parameters(self) -> int:
        """Every routed expert's parameters, over all MoE layers (0 for a dense model)."""
        return self.moe_layers * (self.num_experts or 0) * self.expert_parameters

    @property
    def linear_parameters(self) -> int:
        """The linear layers' weight matrices, over all layers: the attention projections, the dense MLPs, the
        routed and the shared experts. What an FP8 checkpoint stores in one byte a weight: vLLM's ``Fp8Config``
        (model_executor/layers/quantization/fp8.py ``get_quant_method``) gives every ``LinearBase`` layer
        ``Fp8LinearMethod`` and every ``FusedMoE`` ``Fp8MoEMethod``; the embedding and the LM head
        (``VocabParallelEmbedding`` / ``ParallelLMHead``, not ``LinearBase``), the norms, the biases (kept in the
        model dtype by ``Fp8LinearMethod``), the MoE routers (vLLM's ``GateLinear`` is a ``ReplicatedLinear`` built
        with ``quant_config=None``: fused_moe/router/gate_linear.py) and Qwen2-MoE's shared-expert gate are not."""
        shared = 3 * self.hidden_size * (self.shared_expert_intermediate_size or 0)
        linear = self.linear_attention
        mixers = 0 if linear is None else linear.layers * linear.projection_parameters(self.hidden_size)
        return (self.attention_layers * (self.attention_parameters - self.indexer_bf16_parameters) + mixers
                + (self.num_layers - self.moe_layers) * self.dense_mlp_parameters
                + self.routed_expert_parameters + self.moe_layers * shared)

    @property
    def active_parameters(self) -> int:
        """Parameters one token computes with: all but the experts it is not routed to (the router counts)."""
        if not self.is_moe:
            return self.num_parameters
        idle = self.num_experts - self.num_experts_per_tok
        return self.num_parameters - self.moe_layers * idle * self.expert_parameters

    def kv_bytes_per_token(self, dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """K and V for every attending layer (``attention_layers``: a Gated DeltaNet layer keeps a state instead):
        2 × layers × kv_heads × head_dim × dtype bytes, per TP rank.

        KV heads are split across TP ranks (replicated when TP exceeds the KV-head count,
        as vLLM does), so one rank holds ``max(1, kv_heads // tp)`` heads.
        With MLA the cache holds one latent (not K and V) of ``head_dim`` = kv_lora_rank + qk_rope_head_dim
        values per layer, whole on every TP rank: layers × latent × dtype bytes (vLLM ``MLAAttentionSpec``
        page size: block × num_kv_heads 1 × head_size, no factor 2; v1/kv_cache_interface.py). Sparse attention
        adds the indexer's keys (``indexer_cache_bytes``, a second ``MLAAttentionSpec`` per layer) and an FP8
        latent is fp8_ds_mla (``latent_cache_bytes``).
        """
        if self.is_sparse_attention:
            return self.num_layers * (self.latent_cache_bytes(dtype_bytes) + self.indexer_cache_bytes)
        heads_per_rank = max(1, self.num_kv_heads // tensor_parallel_size)
        copies = 1 if self.is_mla else 2
        return copies * self.attention_layers * heads_per_rank * self.head_dim * dtype_bytes

    def latent_cache_bytes(self, dtype_bytes: int) -> int:
        """One token's MLA latent in one layer's cache. An FP8 cache of a sparse-attention model is vLLM's
        fp8_ds_mla (kv_lora_rank FP8 values, an fp32 scale per 128 of them, the rope part in bf16: 656 bytes for
        DeepSeek-V3.2); otherwise latent × dtype bytes."""
        if self.is_sparse_attention and dtype_bytes == 1:
            return (self.kv_lora_rank + self.kv_lora_rank // SPARSE_QUANT_BLOCK * FP8_SCALE_BYTES
                    + self.qk_rope_head_dim * DTYPE_BYTES["bf16"])
        return self.head_dim * dtype_bytes

