"""Published config.json files of hybrid linear-attention models (Gated DeltaNet layers beside full-attention ones),
for tests/test_linear_attention.py."""

# huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json, transcribed (its shapes are also transformers
# 4.57's Qwen3NextConfig defaults, configuration_qwen3_next.py, but for intermediate_size and max_position_embeddings)
QWEN3_NEXT_80B = {
    "architectures": ["Qwen3NextForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "full_attention_interval": 4,
    "head_dim": 256, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5120,
    "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
    "linear_value_head_dim": 128, "max_position_embeddings": 262144, "mlp_only_layers": [], "model_type": "qwen3_next",
    "moe_intermediate_size": 512, "norm_topk_prob": True, "num_attention_heads": 16, "num_experts": 512,
    "num_experts_per_tok": 10, "num_hidden_layers": 48, "num_key_value_heads": 2, "output_router_logits": False,
    "partial_rotary_factor": 0.25, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000000,
    "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 512, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.57.0.dev0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 151936,
}
# Qwen3.5's language model as vLLM reads it (hf_text_config of huggingface.co/Qwen/Qwen3.5-9B's config.json:
# text_config, model_type qwen3_5_text; its keys as transcribed in public tests of the 9B): 32 layers, every 4th full
# attention, Gated DeltaNet heads as Qwen3-Next's, the recurrent state in float32 (mamba_ssm_dtype)
QWEN3_5_9B_TEXT = {
    "architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text", "attention_bias": False,
    "attn_output_gate": True, "full_attention_interval": 4, "head_dim": 256, "hidden_size": 4096,
    "intermediate_size": 12288, "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
    "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
    "linear_value_head_dim": 128, "num_attention_heads": 16, "num_key_value_heads": 4, "num_hidden_layers": 32,
    "rms_norm_eps": 1e-06, "vocab_size": 248320, "max_position_embeddings": 262144, "mamba_ssm_dtype": "float32",
    "tie_word_embeddings": False,
}
