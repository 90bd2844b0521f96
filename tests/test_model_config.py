"""``model: PATH``: a model's shape from its Hugging Face config.json (sim.hf_config).

The configs below are the published config.json files, transcribed field by field. Each equals its
profiles/models.yaml entry (transcribed separately, from the same source), and the parameter count
computed from the shapes is within 0.5% of the figure its model card publishes: the independent check
of the counting rule (embeddings, LM head unless tied, q/k/v/o, the MLP's matrices, norms, biases).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.specs import known_models, model_spec
from tests.glm_minimax_configs import GLM_MINIMAX_MODELS, GLM_MINIMAX_TOLERANCE
from tests.hybrid_configs import GEMMA_2_9B, GEMMA_3_27B, GPT_OSS_20B, HYBRID_MODELS, SIGLIP
from tests.linear_attention_configs import QWEN3_NEXT_80B

# huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
LLAMA_3_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0", "use_cache": True, "vocab_size": 128256,
}
LLAMA_31_ROPE = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192, "rope_type": "llama3"}
# huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (copy: github.com/citsjtu2020/LLM-Prof sglang/Model_Config.md)
LLAMA_31_8B = {**LLAMA_3_8B, "max_position_embeddings": 131072, "mlp_bias": False, "rope_scaling": LLAMA_31_ROPE,
               "transformers_version": "4.43.0.dev0"}
# huggingface.co/meta-llama/Meta-Llama-3-70B/blob/main/config.json
LLAMA_3_70B = {**LLAMA_3_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
               "num_hidden_layers": 80}
# huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json (shapes also in github.com/casys-kaist/LLMServingSim
# model_config/meta-llama/Llama-3.1-70B.json)
LLAMA_31_70B = {**LLAMA_31_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
                "num_hidden_layers": 80}
# huggingface.co/Qwen/Qwen2-7B/blob/main/config.json
QWEN2_7B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
    "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
    "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.37.2", "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
}
# huggingface.co/Qwen/Qwen3-32B/blob/main/config.json (copy: github.com/citsjtu2020/LLM-Prof sglang/Model_Config.md)
QWEN3_32B = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120, "initializer_range": 0.02,
    "intermediate_size": 25600, "max_position_embeddings": 40960, "max_window_layers": 64, "model_type": "qwen3",
    "num_attention_heads": 64, "num_hidden_layers": 64, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 151936,
}
# Tied embeddings (no separate LM head). huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json and
# huggingface.co/Qwen/Qwen2.5-3B/blob/main/config.json (copies: github.com/citsjtu2020/LLM-Prof sglang/Model_Config.md)
LLAMA_32_3B = {**LLAMA_31_8B, "head_dim": 128, "hidden_size": 3072, "intermediate_size": 8192,
               "num_attention_heads": 24, "num_hidden_layers": 28, "tie_word_embeddings": True,
               "rope_scaling": {**LLAMA_31_ROPE, "factor": 32.0}, "transformers_version": "4.45.0.dev0"}
# huggingface.co/meta-llama/Llama-3.3-70B-Instruct/blob/main/config.json: Llama 3.1 70B's keys and values but
# head_dim written out, three end-of-turn ids and a newer transformers
LLAMA_33_70B = {**LLAMA_31_70B, "eos_token_id": [128001, 128008, 128009], "head_dim": 128,
                "transformers_version": "4.47.0.dev0"}
# huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/config.json (copy: Lightning-AI/lightning-thunder's Qwen2 RoPE
# benchmark, hf_qwen2_rope)
QWEN25_7B = {**QWEN2_7B, "eos_token_id": 151645, "max_position_embeddings": 32768, "sliding_window": None,
             "transformers_version": "4.43.3"}
QWEN25_3B = {**QWEN2_7B, "hidden_size": 2048, "intermediate_size": 11008, "max_position_embeddings": 32768,
             "max_window_layers": 36, "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 2,
             "sliding_window": 32768, "tie_word_embeddings": True, "use_mrope": False, "vocab_size": 151936,
             "transformers_version": "4.40.1"}
# Mixtures of experts. huggingface.co/Qwen/Qwen3-30B-A3B-Instruct-2507/blob/main/config.json and
# huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json (copies: github.com/casys-kaist/LLMServingSim
# configs/model/Qwen/Qwen3-30B-A3B-Instruct-2507.json, configs/model/mistralai/Mixtral-8x7B-v0.1.json)
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 262144,
    "max_window_layers": 48, "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
    "norm_topk_prob": True, "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_key_value_heads": 4, "output_router_logits": False, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 10000000, "router_aux_loss_coef": 0.001, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151936,
}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": True,
    "vocab_size": 32000,
}
# huggingface.co/microsoft/Phi-mini-MoE-instruct config.json (copy: github.com/casys-kaist/LLMServingSim
# configs/model/microsoft/Phi-mini-MoE-instruct.json; auto_map omitted)
PHI_MINI_MOE = {
    "_name_or_path": "Phi-mini-MoE", "architectures": ["PhiMoEForCausalLM"], "attention_bias": True,
    "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 32000, "expert_dropout": 0.0, "head_dim": 128,
    "hidden_act": "silu", "hidden_dropout": 0.0, "hidden_size": 4096, "initializer_range": 0.02,
    "input_jitter_noise": 0.01, "intermediate_size": 960, "lm_head_bias": True, "max_position_embeddings": 4096,
    "model_type": "phimoe", "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 16, "output_router_logits": False, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "router_aux_loss_coef": 0.0, "router_jitter_noise": 0.01, "sliding_window": 2047,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.43.3", "use_cache": True,
    "vocab_size": 32064,
}

# huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json (the shapes also in github.com/microsoft/vidur
# vidur/config/model_config.py, Llama2_7BModelConfig; Vidur pads the vocabulary to 32768)
LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": True, "vocab_size": 32000,
}
# huggingface.co/meta-llama/Llama-2-13b-hf and Llama-2-70b-hf config.json (70B: Vidur's Llama2_70BModelConfig)
LLAMA_2_13B = {**LLAMA_2_7B, "hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40,
               "num_hidden_layers": 40, "num_key_value_heads": 40}
LLAMA_2_70B = {**LLAMA_2_7B, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
               "num_hidden_layers": 80, "num_key_value_heads": 8}
# huggingface.co/codellama/CodeLlama-34b-Instruct-hf/blob/main/config.json (Vidur's CodeLlama34BModelConfig)
CODELLAMA_34B = {**LLAMA_2_7B, "hidden_size": 8192, "intermediate_size": 22016, "max_position_embeddings": 16384,
                 "num_attention_heads": 64, "num_hidden_layers": 48, "num_key_value_heads": 8,
                 "rope_theta": 1000000, "torch_dtype": "bfloat16"}

# The other models of Vidur's public profiles (shapes also in github.com/microsoft/vidur vidur/config/model_config.py).
# huggingface.co/microsoft/phi-2/blob/main/config.json (copy: github.com/sdpython/experimental-experiment,
# get_phi2_untrained)
PHI_2 = {
    "_name_or_path": "microsoft/phi-2", "architectures": ["PhiForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 50256, "embd_pdrop": 0.0, "eos_token_id": 50256, "hidden_act": "gelu_new", "hidden_size": 2560,
    "initializer_range": 0.02, "intermediate_size": 10240, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
    "model_type": "phi", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "partial_rotary_factor": 0.4, "qk_layernorm": False, "resid_pdrop": 0.1, "rope_scaling": None,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.37.0",
    "use_cache": True, "vocab_size": 51200,
}
# huggingface.co/internlm/internlm-20b/blob/main/config.json (a copy printed in a public InternLM course write-up;
# Vidur's InternLM_20BModelConfig: no biases)
INTERNLM_20B = {
    "architectures": ["InternLMForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_internlm.InternLMConfig",
                 "AutoModel": "modeling_internlm.InternLMForCausalLM",
                 "AutoModelForCausalLM": "modeling_internlm.InternLMForCausalLM"},
    "bias": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 5120,
    "initializer_range": 0.02, "intermediate_size": 13824, "max_position_embeddings": 4096, "model_type": "internlm",
    "num_attention_heads": 40, "num_hidden_layers": 60, "num_key_value_heads": 40, "pad_token_id": 2,
    "pretraining_tp": 1, "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1", "use_cache": True, "vocab_size": 103168, "rotary": {"base": 10000, "type": "dynamic"},
}
# Qwen 1: the keys of huggingface.co/Qwen/Qwen-7B's config.json (copy: github.com/stanford-crfm/levanter
# tests/test_qwen.py) with Qwen-72B's values (huggingface.co/Qwen/Qwen-72B config.json; Vidur's Qwen72BModelConfig:
# 80 layers, 64 heads, 8192 wide, MLP 24576 = 49152 / 2, vocabulary 152064, context 32768, rope theta 1e6)
QWEN_72B = {
    "architectures": ["QWenLMHeadModel"], "attn_dropout_prob": 0.0, "bf16": False, "emb_dropout_prob": 0.0,
    "fp16": False, "fp32": False, "hidden_size": 8192, "intermediate_size": 49152, "initializer_range": 0.02,
    "kv_channels": 128, "layer_norm_epsilon": 1e-06, "max_position_embeddings": 32768, "model_type": "qwen",
    "no_bias": True, "num_attention_heads": 64, "num_hidden_layers": 80, "onnx_safe": None,
    "rotary_emb_base": 1000000, "rotary_pct": 1.0, "scale_attn_weights": True, "seq_length": 32768,
    "tie_word_embeddings": False, "tokenizer_class": "QWenTokenizer", "use_cache": True, "use_dynamic_ntk": False,
    "use_flash_attn": "auto", "use_logn_attn": False, "vocab_size": 152064,
}

# name -> (config.json, models.yaml entry or None, the model card's parameter count)
MODELS = {
    "llama-3-8b": (LLAMA_3_8B, "llama-3-8b", 8.03e9),  # Meta-Llama-3-8B model card: 8.03B (safetensors)
    "llama-3.1-8b": (LLAMA_31_8B, "llama-3.1-8b", 8.03e9),  # Llama-3.1-8B model card: 8.03B
    "llama-3-70b": (LLAMA_3_70B, "llama-3-70b", 70.6e9),  # Meta-Llama-3-70B model card: 70.6B
    "llama-3.1-70b": (LLAMA_31_70B, "llama-3.1-70b", 70.6e9),  # Llama-3.1-70B model card: 70.6B
    "qwen2-7b": (QWEN2_7B, "qwen2-7b", 7.62e9),  # Qwen2 technical report (arXiv 2407.10671) / model card: 7.62B
    "qwen3-32b": (QWEN3_32B, "qwen3-32b", 32.8e9),  # Qwen3-32B model card: 32.8B
    "llama-2-7b": (LLAMA_2_7B, "llama-2-7b", 6.74e9),  # Llama-2-7b-hf: 6.74B (safetensors)
    "llama-2-13b": (LLAMA_2_13B, "llama-2-13b", 13.0e9),  # Llama-2-13b-hf: 13.0B
    "llama-2-70b": (LLAMA_2_70B, "llama-2-70b", 69.0e9),  # Llama-2-70b-hf: 69.0B
    "codellama-34b": (CODELLAMA_34B, "codellama-34b", 33.7e9),  # CodeLlama-34b-Instruct-hf: 33.7B
    "llama-3.2-3b-tied": (LLAMA_32_3B, "llama-3.2-3b", 3.21e9),  # Llama 3.2 model card: 3.21B
    "llama-3.3-70b": (LLAMA_33_70B, "llama-3.3-70b", 70.6e9),  # Llama-3.3-70B-Instruct: 70.6B (safetensors)
    "qwen2.5-7b": (QWEN25_7B, "qwen2.5-7b", 7.61e9),  # Qwen2.5-7B-Instruct model card: 7.61B
    "qwen2.5-3b-tied": (QWEN25_3B, None, 3.09e9),  # Qwen2.5-3B model card: 3.09B
    "qwen3-30b-a3b": (QWEN3_30B_A3B, "qwen3-30b-a3b", 30.5e9),  # Qwen3-30B-A3B-Instruct-2507 model card: 30.5B
    "mixtral-8x7b": (MIXTRAL_8X7B, "mixtral-8x7b", 46.7e9),  # Mixtral-8x7B model card / blog post: 46.7B
    "phi-mini-moe": (PHI_MINI_MOE, "phi-mini-moe", 7.6e9),  # Phi-mini-MoE-instruct model card: 7.6B
    "phi-2": (PHI_2, "phi-2", 2.78e9),  # phi-2 model card: 2.7B (2.78B in safetensors)
    "internlm-20b": (INTERNLM_20B, "internlm-20b", 20.0e9),  # internlm-20b model card: 20B
    "qwen-72b": (QWEN_72B, "qwen-72b", 72.3e9),  # Qwen-72B model card: 72B (72.3B in safetensors)
}

MODELS.update(HYBRID_MODELS)  # (tests/hybrid_configs.py)
MODELS.update(GLM_MINIMAX_MODELS)  # (tests/glm_minimax_configs.py)
# Qwen3-Next: the Hub's safetensors total of Qwen/Qwen3-Coder-Next, its shapes without the MTP layer (tests/test_linear_attention.py)
MODELS["qwen3-next-80b-a3b"] = (QWEN3_NEXT_80B, "qwen3-next-80b-a3b", 79_674_391_296)

# Shared experts and MLA: the published config.json files in tests/fixtures/hf_configs (their sources and the
# active-parameter figures: tests/test_shared_experts_mla.py); DeepSeek-V3's without its FP8 quantization_config
_HF = Path(__file__).resolve().parent / "fixtures" / "hf_configs"
_V3 = {k: v for k, v in json.loads((_HF / "DeepSeek-V3.json").read_text()).items() if k != "quantization_config"}
MODELS.update({
    "deepseek-v3": (_V3, "deepseek-v3", 671e9),  # README_WEIGHTS.md: 671B main model (MTP module aside)
    "deepseek-v2": (json.loads((_HF / "DeepSeek-V2.json").read_text()), "deepseek-v2", 236e9),  # card: 236B
    "deepseek-v2-lite": (json.loads((_HF / "DeepSeek-V2-Lite.json").read_text()), "deepseek-v2-lite", 15.7e9),
    "qwen1.5-moe-a2.7b": (json.loads((_HF / "Qwen1.5-MoE-A2.7B-Chat.json").read_text()), "qwen1.5-moe-a2.7b", 14.3e9),
})
# Kimi-K2: DeepSeek-V3's file with the Kimi-K2-Instruct model card's shapes (61 layers, 1 dense; 64 heads; 384
# experts of 2048, 8 a token, 1 shared; vocabulary 160K; context 128K) under its own model_type
_KIMI_K2 = {**_V3, "model_type": "kimi_k2", "num_hidden_layers": 61, "first_k_dense_replace": 1,
            "num_attention_heads": 64, "num_key_value_heads": 64, "n_routed_experts": 384, "num_experts_per_tok": 8,
            "n_shared_experts": 1, "moe_intermediate_size": 2048, "vocab_size": 163840,
            "max_position_embeddings": 131072, "n_group": 1, "topk_group": 1,
            # Kimi-K2-Instruct's config.json: yarn factor 32 over 4,096 original positions (vLLM's cache: 131,072 rows)
            "rope_scaling": {**_V3["rope_scaling"], "factor": 32.0}}
MODELS["kimi-k2"] = (_KIMI_K2, "kimi-k2", 1.03e12)  # the Hub's count of Kimi-K2-Instruct: 1.03T

# Cards that give two figures only: within half a unit of the last one (7.6B: 7.55B to 7.65B)
CARD_TOLERANCE = {"phi-mini-moe": 0.05 / 7.6, **GLM_MINIMAX_TOLERANCE}


def write_config(folder: Path, config: dict, name: str = "config.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(config, indent=2))
    return path


SHAPE_FIELDS = [f.name for f in dataclasses.fields(model_spec("llama-3-8b")) if f.name not in ("name", "source")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_published_config_gives_the_models_yaml_spec(name, tmp_path):
    config, entry, card_parameters = MODELS[name]
    path = write_config(tmp_path / name, config)
    spec = model_spec(str(path))
    if entry is not None:
        reference = model_spec(entry)
        assert {f: getattr(spec, f) for f in SHAPE_FIELDS} == {f: getattr(reference, f) for f in SHAPE_FIELDS}
    assert spec.num_parameters == pytest.approx(card_parameters, rel=CARD_TOLERANCE.get(name, 0.005))
    assert spec.source == f"{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})"
    assert model_spec(str(path.parent)) == dataclasses.replace(spec, name=str(path.parent))  # its folder


# Entries of families kvsim reads no config.json of (sim.model_families: bloom, opt), their shapes and parameter
# counts checked by hand against published totals in tests/test_position_encoding.py instead
NO_CONFIG_READER = {"bloom-176b", "opt-13b", "opt-30b", "opt-66b"}


def test_every_models_yaml_entry_with_a_config_is_covered():
    assert set(known_models()) - NO_CONFIG_READER <= {entry for _, entry, _ in MODELS.values()}
    assert NO_CONFIG_READER <= set(known_models())  # (a stale name here would hide nothing)


def test_tied_embeddings_drop_the_lm_head(tmp_path):
    untied = model_spec(str(write_config(tmp_path / "a", {**LLAMA_32_3B, "tie_word_embeddings": False})))
    tied = model_spec(str(write_config(tmp_path / "b", LLAMA_32_3B)))
    assert untied.num_parameters - tied.num_parameters == 128256 * 3072  # vocab x hidden


def test_biases_follow_the_family(tmp_path):
    # Qwen2 always has q/k/v biases (q 3584 + k 512 + v 512 per layer); Llama only with attention_bias (then o too).
    qwen_llama_shaped = model_spec(str(write_config(tmp_path / "q", {**QWEN2_7B, "model_type": "llama"})))
    assert model_spec(str(write_config(tmp_path / "r", QWEN2_7B))).num_parameters - qwen_llama_shaped.num_parameters \
        == 28 * (3584 + 2 * 512)
    biased = model_spec(str(write_config(tmp_path / "b", {**LLAMA_3_8B, "attention_bias": True, "mlp_bias": True})))
    assert biased.num_parameters - model_spec("llama-3-8b").num_parameters == 32 * ((4096 + 2 * 1024 + 4096) +
                                                                                   (2 * 14336 + 4096))


def test_phi_is_a_parallel_block_with_a_plain_mlp_and_biases(tmp_path):
    spec = model_spec(str(write_config(tmp_path / "p", PHI_2)))
    assert not spec.gated_mlp and spec.dense_mlp_parameters == 2 * 2560 * 10240  # fc1 and fc2, no gate
    # per layer: q, k, v, dense (2560 x 2560 + bias) + fc1 (+ 10240 bias) + fc2 (+ 2560 bias) + one LayerNorm (weight
    # and bias); embeddings, lm_head with its bias, final LayerNorm: hand-added from the module printout
    layer = 4 * (2560 * 2560 + 2560) + (2560 * 10240 + 10240) + (10240 * 2560 + 2560) + 2 * 2560
    assert spec.num_parameters == 51200 * 2560 + (51200 * 2560 + 51200) + 32 * layer + 2 * 2560
    assert spec.head_dim == 80 and spec.num_kv_heads == 32
    normed = model_spec(str(write_config(tmp_path / "n", {**PHI_2, "qk_layernorm": True})))
    assert normed.num_parameters - spec.num_parameters == 32 * 2 * (2 * 80)  # LayerNorms over head_dim on q and k


def test_qwen_1_keys(tmp_path):
    spec = model_spec(str(write_config(tmp_path / "q", QWEN_72B)))
    # QWenMLP: w1 and w2 are intermediate_size // 2 wide each; kv_channels is the head size; no GQA
    assert (spec.intermediate_size, spec.head_dim, spec.num_kv_heads, spec.gated_mlp) == (24576, 128, 64, True)
    biased = model_spec(str(write_config(tmp_path / "b", {**QWEN_72B, "no_bias": False})))
    # c_attn is always biased; without no_bias also the attention's c_proj and the MLP's w1, w2, c_proj
    assert biased.num_parameters - spec.num_parameters == 80 * (8192 + 2 * 24576 + 8192)
    assert model_spec(str(write_config(tmp_path / "k", {**QWEN_72B, "num_key_value_heads": 8}))).num_kv_heads == 64
    # Qwen-7B's later config: 32768 positions, trained at seq_length 8192: vLLM takes the least
    assert model_spec(str(write_config(tmp_path / "s", {**QWEN_72B, "seq_length": 8192}))).max_position_embeddings \
        == 8192
    bare = {k: v for k, v in QWEN_72B.items() if k not in ("no_bias", "kv_channels")}
    assert model_spec(str(write_config(tmp_path / "d", bare))).num_parameters == spec.num_parameters  # defaults


def test_internlm_bias_defaults_on(tmp_path):
    spec = model_spec(str(write_config(tmp_path / "i", INTERNLM_20B)))
    assert spec.num_parameters == model_spec(str(write_config(tmp_path / "l", {**INTERNLM_20B, "model_type": "llama"}))
                                             ).num_parameters  # bias false: Llama's shapes
    default = model_spec(str(write_config(tmp_path / "d", {k: v for k, v in INTERNLM_20B.items() if k != "bias"})))
    assert default.num_parameters - spec.num_parameters == 60 * (3 * 5120 + 5120)  # InternLMConfig: bias=True


def test_defaults_of_optional_keys(tmp_path):
    bare = {k: v for k, v in LLAMA_3_8B.items() if k not in ("num_key_value_heads", "tie_word_embeddings")}
    spec = model_spec(str(write_config(tmp_path / "l", bare)))
    assert (spec.num_kv_heads, spec.head_dim) == (32, 128)  # LlamaConfig: KV heads = heads, head_dim = 4096 / 32
    qwen3 = {k: v for k, v in QWEN3_32B.items() if k != "head_dim"}
    assert model_spec(str(write_config(tmp_path / "q", qwen3))).head_dim == 128  # Qwen3Config's default, not 5120/64


# ---------------------------------------------------------------- refusals: exit 2, one line naming file and key


def refused(run_cli, model: str) -> str:
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", f"model={model}")
    assert status == 2, err
    message = err.strip()
    assert "\n" not in message and message.startswith("kvsim: error: ") and "Traceback" not in message
    return message


def test_active_parameters_match_the_model_cards():
    # Mixtral-8x7B: "12.9B active parameters" (model card, mistral.ai/news/mixtral-of-experts) to 3 figures.
    assert model_spec("mixtral-8x7b").active_parameters == pytest.approx(12.9e9, rel=0.005)
    # Qwen3-30B-A3B-Instruct-2507 model card: "3.3B activated", two figures (3.35B counted, embeddings included as
    # for Mixtral's figure and this card's 30.5B total): within the figure's last digit.
    assert 3.3e9 <= model_spec("qwen3-30b-a3b").active_parameters < 3.4e9
    # Phi-mini-MoE-instruct model card: "2.4B activated" (2.36B counted, embeddings and LM head included)
    assert 2.35e9 <= model_spec("phi-mini-moe").active_parameters < 2.45e9


def test_moe_families_take_transformers_defaults_and_layouts(tmp_path):
    bare = {k: v for k, v in QWEN3_30B_A3B.items()
            if k not in ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "decoder_sparse_step",
                         "mlp_only_layers", "head_dim")}
    spec = model_spec(str(write_config(tmp_path / "q", bare)))
    # Qwen3MoeConfig defaults: 128 experts, 8 per token, 768 wide; no head_dim default: 2048 / 32
    assert (spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size, spec.num_moe_layers,
            spec.head_dim) == (128, 8, 768, 48, 64)
    # MoE on every second layer (decoder_sparse_step 2: layers 1, 3, ...) but layer 1 (mlp_only_layers): 23 of 48;
    # each dense layer trades the router and 128 experts for one 6144-wide MLP
    sparse = model_spec(str(write_config(tmp_path / "s", {**QWEN3_30B_A3B, "decoder_sparse_step": 2,
                                                           "mlp_only_layers": [1]})))
    assert sparse.num_moe_layers == 23
    full = model_spec("qwen3-30b-a3b")
    assert full.num_parameters - sparse.num_parameters == 25 * (2048 * 128 + 128 * 3 * 2048 * 768 - 3 * 2048 * 6144)
    # num_experts and num_local_experts are one key (transformers' attribute_map)
    mixtral = {k: v for k, v in MIXTRAL_8X7B.items() if k != "num_local_experts"}
    assert model_spec(str(write_config(tmp_path / "m", {**mixtral, "num_experts": 4}))).num_experts == 4
    assert model_spec(str(write_config(tmp_path / "d", mixtral))).num_experts == 8  # MixtralConfig's default
    # every layer dense: a dense model
    dense = model_spec(str(write_config(tmp_path / "x", {**QWEN3_30B_A3B, "mlp_only_layers": list(range(48))})))
    assert not dense.is_moe and dense.active_parameters == dense.num_parameters


def _without(key: str) -> dict:
    config = copy.deepcopy(LLAMA_3_8B)
    del config[key]
    return config


@pytest.mark.parametrize("config, key", [
    (_without("hidden_size"), "'hidden_size'"), (_without("vocab_size"), "'vocab_size'"),
    (_without("model_type"), "model_type"),
    ({**LLAMA_3_8B, "num_hidden_layers": "32"}, "'num_hidden_layers'"),
    ({**LLAMA_3_8B, "intermediate_size": 14336.0}, "'intermediate_size'"),
    ({**LLAMA_3_8B, "num_key_value_heads": True}, "'num_key_value_heads'"),
    ({**LLAMA_3_8B, "num_attention_heads": 0}, "'num_attention_heads'"),
    ({**LLAMA_3_8B, "num_key_value_heads": 5}, "num_key_value_heads 5"),  # 32 heads are not groups of 5
    ({**LLAMA_3_8B, "tie_word_embeddings": "no"}, "'tie_word_embeddings'"),
    ({**LLAMA_3_8B, "hidden_size": 10**30}, "'hidden_size'"),
    ({**LLAMA_3_8B, "model_type": ["llama"]}, "model_type"),
    ({**MIXTRAL_8X7B, "num_experts_per_tok": 9}, "num_experts_per_tok 9"),
    ({**MIXTRAL_8X7B, "num_experts": 4}, "disagree"),
    ({**QWEN3_30B_A3B, "mlp_only_layers": [48]}, "'mlp_only_layers'"),
    ({**QWEN3_30B_A3B, "decoder_sparse_step": 0}, "'decoder_sparse_step'"),
], ids=["no-hidden", "no-vocab", "no-type", "string", "float", "bool", "zero", "groups", "flag", "huge", "type-list",
        "top-k", "two-counts", "dense-layer", "sparse-step"])
def test_bad_keys_are_named(config, key, tmp_path, run_cli):
    path = write_config(tmp_path, config)
    message = refused(run_cli, path)
    assert str(path) in message and key in message


@pytest.mark.parametrize("config, words", [
    ({**LLAMA_3_8B, "layer_types": ["full_attention", "sliding_attention"] * 16}, "layer_types"),
    ({**LLAMA_3_8B, "model_type": "mistral", "sliding_window": "4k"}, "'sliding_window'"),
    ({**LLAMA_3_8B, "quantization_config": {"quant_method": "awq", "bits": 4}}, "'awq'"),
    # hybrid models: a layer kind other than sliding or full attention, a list not one kind per layer, a
    # gpt-oss layout vLLM would not follow, MXFP4 that leaves the experts unconverted or a dense model's
    ({**GEMMA_2_9B, "layer_types": ["sliding_attention", "chunked_attention"] * 21}, "'chunked_attention'"),
    ({**GEMMA_2_9B, "layer_types": ["sliding_attention", "full_attention"]}, "'layer_types'"),
    ({**GPT_OSS_20B, "layer_types": ["full_attention", "sliding_attention"] * 12}, "disagree with vLLM"),
    ({**GPT_OSS_20B, "experts_per_token": 2}, "experts_per_token 2"),
    ({**GPT_OSS_20B, "quantization_config": {"modules_to_not_convert": ["model.layers.*.mlp.experts"],
                                             "quant_method": "mxfp4"}}, "'model.layers.*.mlp.experts'"),
    ({**LLAMA_3_8B, "quantization_config": {"quant_method": "mxfp4"}}, "mxfp4"),
    # Gemma 3 multimodal: a vision pooling head, another text model, a missing text key, a quantized checkpoint
    ({**GEMMA_3_27B, "vision_config": {**SIGLIP, "vision_use_head": True}}, "vision_use_head"),
    ({**GEMMA_3_27B, "text_config": {**GEMMA_3_27B["text_config"], "model_type": "gemma2"}},
     "'text_config.model_type'"),
    ({**GEMMA_3_27B, "text_config": {k: v for k, v in GEMMA_3_27B["text_config"].items() if k != "hidden_size"}},
     "'text_config.hidden_size'"),
    ({**GEMMA_3_27B, "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}},
     "quantized multimodal"),
], ids=["layer-types", "window-string", "quantized", "layer-kind", "layer-count", "gpt-oss-layout", "top-k-alias",
        "mxfp4-experts", "mxfp4-dense", "vision-head", "text-type", "text-key", "multimodal-fp8"])
def test_what_the_model_does_not_describe_is_refused(config, words, tmp_path, run_cli):
    path = write_config(tmp_path, config)
    message = refused(run_cli, path)
    assert str(path) in message and words in message


@pytest.mark.parametrize("content, words", [
    (b"{not json", "not JSON"), (b"[1, 2]", "must be a JSON object, got list"), (b"\xff\xfe", "not JSON"),
], ids=["syntax", "array", "binary"])
def test_unreadable_files_are_named(content, words, tmp_path, run_cli):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    message = refused(run_cli, path)
    assert str(path) in message and words in message


def test_missing_paths_are_named(tmp_path, run_cli):
    assert "config key 'model'" in refused(run_cli, tmp_path / "absent.json")
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty" / "config.json") in refused(run_cli, f"{tmp_path}/empty/")


def test_unknown_names_list_the_known_ones_and_the_path_form(run_cli):
    message = refused(run_cli, "mistral-7b")
    names = sorted(known_models())
    assert "'mistral-7b'" in message and names[0] in message and f"({len(names)} in all)" in message  # one line
    assert "(did you mean 'llama-2-7b'?)" in refused(run_cli, "llama-2-7")
    assert "./PATH to a Hugging Face config.json" in message
    with pytest.raises(ConfigError, match="qwen3-32b.*Hugging Face config.json"):
        model_spec("llama-9")


# ---------------------------------------------------------------- relative paths and the end-to-end run


def test_relative_paths_resolve_like_the_other_path_keys(tmp_path, monkeypatch):
    write_config(tmp_path / "cfg" / "models" / "l3", LLAMA_3_8B)
    config_file = tmp_path / "cfg" / "kvsim.yaml"
    config_file.write_text("model: models/l3/config.json\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(config_file)  # relative to the config file, as compute.profile is
    assert Path(config.model).resolve() == tmp_path / "cfg" / "models" / "l3" / "config.json"
    config_file.write_text("model: models/l3\n")  # a folder written without ./ is still a path: it has a '/'
    assert Path(load_config(config_file).model).resolve() == tmp_path / "cfg" / "models" / "l3"
    config_file.write_text("model: llama-3-8b\n")  # a name stays a name
    assert load_config(config_file).model == "llama-3-8b"
    monkeypatch.chdir(tmp_path / "cfg" / "models")  # on the command line: relative to the working directory
    assert load_config(None, sets=["model=./l3"]).model == "./l3"


def test_report_with_a_config_json_equals_the_named_models(tmp_path, run_cli):
    path = write_config(tmp_path / "Llama-3.1-8B", LLAMA_31_8B)
    reports = {}
    for model in ("llama-3.1-8b", str(path.parent)):
        out = tmp_path / f"{len(reports)}.json"
        status, _, err = run_cli("--preset", "smoke", "--set", "workload.synthetic.num_requests=120", "--set",
                                 f"model={model}", "--no-plot", "--quiet", "--report-json", out)
        assert status == 0, err
        reports[model] = json.loads(out.read_text())
    named, from_file = reports["llama-3.1-8b"], reports[str(path.parent)]
    assert from_file["config"] == {**named["config"], "model": str(path.parent)}
    assert json.dumps(from_file["runs"]) == json.dumps(named["runs"])  # the same shapes: byte-identical metrics


def test_a_sweep_over_config_files_names_points_by_their_folders(tmp_path):
    from experiments.spec import expand, load_spec

    for name in ("Llama-3-8B", "Llama-3.1-8B"):
        write_config(tmp_path / name, LLAMA_3_8B if name == "Llama-3-8B" else LLAMA_31_8B)
    spec = tmp_path / "sweep.yaml"
    spec.write_text("mode: single\naxes:\n  model: [Llama-3-8B/config.json, Llama-3.1-8B/config.json, llama-3-8b]\n")
    assert [p.name for p in expand(load_spec(spec))] == ["Llama-3-8B", "Llama-3.1-8B", "llama-3-8b"]
