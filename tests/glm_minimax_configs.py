"""Published config.json files of GLM-4.5 / GLM-4.5-Air / GLM-4.6 (model_type glm4_moe) and MiniMax-M2 (minimax_m2),
for tests/test_model_config.py's table of models and tests/test_glm_minimax_model_configs.py."""

# GLM-4.5: huggingface.co/zai-org/GLM-4.5/blob/main/config.json. The keys in the file's order; copies: FULL_CFG of a
# public GLM converter's source-boundary test (every key below but attention_dropout, pad_token_id,
# initializer_range, torch_dtype, transformers_version and use_cache, in this order, with GLM-4.6's 202752
# positions); the shapes also in NVIDIA Megatron-Bridge's GLM 4.5 page (92 layers, first 3 dense, hidden 5120, FFN
# 12288, 96 heads, 8 query groups, 160 experts top-8, expert and shared-expert FFN 1536, QK norm, 131,072 tokens,
# vocabulary 151,552) and slime's scripts/models/glm4.5-355B-A32B.sh (--add-qkv-bias, --qk-layernorm,
# --kv-channels 128, --rotary-percent 0.5).
GLM_45 = {
    "architectures": ["Glm4MoeForCausalLM"], "attention_bias": True, "attention_dropout": 0.0, "pad_token_id": 151329,
    "eos_token_id": [151329, 151336, 151338], "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120,
    "partial_rotary_factor": 0.5, "initializer_range": 0.02, "intermediate_size": 12288,
    "max_position_embeddings": 131072, "model_type": "glm4_moe", "moe_intermediate_size": 1536, "norm_topk_prob": True,
    "num_attention_heads": 96, "n_group": 1, "topk_group": 1, "n_routed_experts": 160, "n_shared_experts": 1,
    "routed_scaling_factor": 2.5, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "num_hidden_layers": 92,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 1000000,
    "num_nextn_predict_layers": 1, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.54.0", "use_cache": True, "use_qk_norm": True, "vocab_size": 151552,
}
# GLM-4.6: huggingface.co/zai-org/GLM-4.6 config.json: GLM-4.5's shapes with a 202,752-token context (copy: the
# FULL_CFG above; a GLM-4.6 write-up quoting the file under _name_or_path zai-org/GLM-4.6: max_position_embeddings
# 202752, 92 layers, 160 + 1 experts, top 8, 1536 wide, partial_rotary_factor 0.5, num_nextn_predict_layers 1). Its
# transformers_version is not checked here (no shape).
GLM_46 = {**GLM_45, "max_position_embeddings": 202752}
# GLM-4.5-Air: huggingface.co/zai-org/GLM-4.5-Air/blob/main/config.json (copy: the Glm4MoeConfig a public ms-swift
# Megatron training log prints for zai-org/GLM-4.5-Air, which writes the keys sorted and transformers 4.54.1 as
# its version; the shapes also in Megatron-Bridge's GLM 4.5 Air 106B-A12B entry: 46 layers, first dense, 4096 /
# 10944, 128 experts, 1408, no QK norm).
GLM_45_AIR = {
    "architectures": ["Glm4MoeForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
    "eos_token_id": [151329, 151336, 151338], "first_k_dense_replace": 1, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 10944, "max_position_embeddings": 131072,
    "model_type": "glm4_moe", "moe_intermediate_size": 1408, "n_group": 1, "n_routed_experts": 128,
    "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 96, "num_experts_per_tok": 8,
    "num_hidden_layers": 46, "num_key_value_heads": 8, "num_nextn_predict_layers": 1, "pad_token_id": 151329,
    "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 1000000,
    "routed_scaling_factor": 1.0, "tie_word_embeddings": False, "topk_group": 1, "torch_dtype": "bfloat16",
    "transformers_version": "4.54.1", "use_cache": True, "use_qk_norm": False, "vocab_size": 151552,
}
# MiniMax-M2: huggingface.co/MiniMaxAI/MiniMax-M2/blob/main/config.json, its FP8 checkpoint's (copy: REAL_CONFIG,
# "byte-for-byte copy of the real MiniMax-M2 config.json arch block" in a public Rust engine's loader test, which
# elides attn_type_list, 62 entries all 1, written out here, and the MTP keys, here as a public Go MiniMax-M2
# fixture config gives them: num_mtp_modules 3, mtp_transformer_layers 1, use_mtp true).
MINIMAX_M2 = {
    "architectures": ["MiniMaxM2ForCausalLM"], "attention_dropout": 0.0, "attn_type_list": [1] * 62, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 3072, "intermediate_size": 1536, "max_position_embeddings": 196608,
    "mlp_intermediate_size": 8192, "model_type": "minimax_m2", "mtp_transformer_layers": 1, "num_attention_heads": 48,
    "num_experts_per_tok": 8, "num_hidden_layers": 62, "num_key_value_heads": 8, "num_local_experts": 256,
    "num_mtp_modules": 3, "qk_norm_type": "per_layer",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "float8_e4m3fn", "quant_method": "fp8",
                            "weight_block_size": [128, 128],
                            "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"]},
    "rms_norm_eps": 1e-06, "rope_theta": 5000000, "rotary_dim": 64, "scoring_func": "sigmoid",
    "shared_intermediate_size": 0, "sliding_window": None, "tie_word_embeddings": False, "use_mtp": True,
    "use_qk_norm": True, "use_routing_bias": True, "vocab_size": 200064,
}

# name -> (config.json, models.yaml entry, the model card's total parameters)
GLM_MINIMAX_MODELS = {
    # GLM-4.5 model card (and GLM-4.6's): "355 billion total parameters"; GLM-4.5-Air: "106 billion"
    "glm-4.5": (GLM_45, "glm-4.5", 355e9),
    "glm-4.6": (GLM_46, "glm-4.6", 355e9),
    "glm-4.5-air": (GLM_45_AIR, "glm-4.5-air", 106e9),
    # MiniMax-M2 model card / transformers' model page: "230 billion total parameters"
    "minimax-m2": (MINIMAX_M2, "minimax-m2", 230e9),
}
# The cards' totals are round figures of a count other than the main model's (GLM-4.5's main model 352.80B, with
# its MTP layer 356.79B; the Air's 106.85B; MiniMax-M2's 228.69B): within 1% (the exact sums and the checkpoints'
# own totals: tests/test_glm_minimax_model_configs.py)
GLM_MINIMAX_TOLERANCE = {name: 0.01 for name in GLM_MINIMAX_MODELS}
