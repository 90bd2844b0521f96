"""Published config.json files of hybrid-attention models (sliding-window layers beside full-attention ones), for
tests/test_model_config.py's table of models and tests/test_hybrid_model_configs.py."""

# Hybrid attention: sliding-window layers beside full-attention ones.
# Gemma 2: huggingface.co/google/gemma-2-9b-it/blob/main/config.json (copy: the config.json quoted in
# vllm-project/vllm issue #10548); gemma-2-27b-it's has the same keys with the 27B's shapes and
# query_pre_attn_scalar 144 (copy: NVIDIA-NeMo/Megatron-Bridge tests/unit_tests/models/gemma/test_gemma2_bridge.py,
# gemma2_27b_config_dict, re-serialized by transformers 5: rope_parameters for rope_theta)
GEMMA_2_9B = {
    "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1,
    "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16,
    "num_hidden_layers": 42, "num_key_value_heads": 8, "pad_token_id": 0, "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096, "sliding_window_size": 4096,
    "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0", "use_cache": True, "vocab_size": 256000,
}
GEMMA_2_27B = {**GEMMA_2_9B, "head_dim": 128, "hidden_size": 4608, "intermediate_size": 36864,
               "num_attention_heads": 32, "num_hidden_layers": 46, "num_key_value_heads": 16,
               "query_pre_attn_scalar": 144}
# Gemma 3 text-only: huggingface.co/google/gemma-3-1b-it/blob/main/config.json (copy: NVIDIA/TensorRT-LLM
# tests/unittest/_torch/modeling/test_modeling_gemma3.py GEMMA3_1B_CONFIG, which cuts num_hidden_layers to 6 and
# sliding_window to 4; the published 26 and 512 here)
GEMMA_3_1B = {
    "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "attn_logit_softcapping": None, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 106],
    "final_logit_softcapping": None, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
    "initializer_range": 0.02, "intermediate_size": 6912, "max_position_embeddings": 32768,
    "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
    "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
    "rope_scaling": None, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": True, "vocab_size": 262144,
}
# Gemma 3 multimodal: huggingface.co/google/gemma-3-27b-it/blob/main/config.json (copy: TensorRT-LLM's
# GEMMA3_27B_CONFIG, cut to 6 layers and a 4-token window there; the published 62 and 1024 here); the 4B's and 12B's
# have the same keys with their shapes (AI-Hypercomputer/maxtext's HF configs gemma3_4b_config, gemma3_12b_config;
# the 12B's text_config leaves head_dim and query_pre_attn_scalar to their default 256)
SIGLIP = {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
          "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}
GEMMA_3_MM = {
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
    "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
    "model_type": "gemma3", "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "vision_config": SIGLIP,
}
GEMMA_3_27B = {**GEMMA_3_MM, "text_config": {
    "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504, "model_type": "gemma3_text",
    "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16, "query_pre_attn_scalar": 168,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024, "sliding_window_pattern": 6}}
GEMMA_3_12B = {**GEMMA_3_MM, "text_config": {
    "hidden_size": 3840, "intermediate_size": 15360, "model_type": "gemma3_text", "num_attention_heads": 16,
    "num_hidden_layers": 48, "num_key_value_heads": 8, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024, "sliding_window_pattern": 6}}
GEMMA_3_4B = {**GEMMA_3_MM, "text_config": {
    "head_dim": 256, "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
    "num_attention_heads": 8, "num_hidden_layers": 34, "num_key_value_heads": 4, "query_pre_attn_scalar": 256,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024, "sliding_window_pattern": 6}}
# gpt-oss: huggingface.co/openai/gpt-oss-20b/blob/main/config.json (a public copy of the repository's text files, its
# model.safetensors.index.json among them) and huggingface.co/openai/gpt-oss-120b/raw/main/config.json (copied into a
# gpt_oss port's transformers-parity test as REAL): the same keys, 36 layers and 128 experts
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0, "eos_token_id": 200002,
    "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
    "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 12, "max_position_embeddings": 131072,
    "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": False, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                     "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088,
}
GPT_OSS_120B = {**GPT_OSS_20B, "layer_types": ["sliding_attention", "full_attention"] * 18, "num_hidden_layers": 36,
                "num_local_experts": 128}

# name -> (config.json, models.yaml entry or None, the published parameter count)
HYBRID_MODELS = {
    # Gemma 2 technical report (arXiv 2408.00118) Table 2: embedding + non-embedding parameters
    "gemma-2-9b": (GEMMA_2_9B, "gemma-2-9b", 917_504_000 + 8_324_201_984),
    "gemma-2-27b": (GEMMA_2_27B, "gemma-2-27b", 1_179_648_000 + 26_047_480_320),
    # Gemma 3 technical report (arXiv 2503.19786) Table 1: vision encoder + embedding + non-embedding parameters
    # (the multimodal models with their vision encoder, as vLLM loads them; the 1B is text-only)
    "gemma-3-1b-text": (GEMMA_3_1B, None, (302 + 698) * 1e6),
    "gemma-3-4b": (GEMMA_3_4B, "gemma-3-4b", (417 + 675 + 3209) * 1e6),
    "gemma-3-12b": (GEMMA_3_12B, "gemma-3-12b", (417 + 1012 + 10759) * 1e6),
    "gemma-3-27b": (GEMMA_3_27B, "gemma-3-27b", (417 + 1416 + 25600) * 1e6),
    # gpt-oss-120b & gpt-oss-20b model card (OpenAI, 2025-08-05) Table 1: total parameters
    "gpt-oss-20b": (GPT_OSS_20B, "gpt-oss-20b", 20.91e9),
    "gpt-oss-120b": (GPT_OSS_120B, "gpt-oss-120b", 116.83e9),
}
