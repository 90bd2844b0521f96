"""Models without a rotary embedding (``ModelSpec.position_encoding``): BLOOM's ALiBi and OPT's learned table.

vLLM 0.33 builds no ``RotaryEmbedding`` for either (model_executor/models/bloom.py passes per-head ``alibi_slopes`` to
``Attention``; opt.py adds ``OPTLearnedPositionalEmbedding``, an ``nn.Embedding`` of max_position_embeddings + 2 rows,
"replicated (not sharded)"), so no cos/sin cache is loaded with their weights, and OPT's table is whole on every TP
rank. A rope model's cache is max positions x head_dim x 2 B in bf16 (Llama-2-70B: 4,096 x 128 x 2 B = 1 MiB).
"""

from __future__ import annotations

import dataclasses

import pytest

from sim.config import load_config
from sim.errors import ConfigError
from sim.model_shape import ModelSpec
from sim.rope_caches import RopeCache
from sim.serving.memory_profile import memory_budget, rope_cache_bytes
from sim.specs import model_spec

LLAMA_2_70B = model_spec("llama-2-70b")
LLAMA_PARAMETERS = 68_976_648_192  # profiles/models.yaml (the Hub's safetensors total)


def _as(encoding: str, **change) -> ModelSpec:
    return dataclasses.replace(LLAMA_2_70B, name=f"llama-2-70b-{encoding}", position_encoding=encoding, **change)


def test_rope_is_the_default_and_its_cache_is_unchanged():
    assert LLAMA_2_70B.position_encoding == "rope"
    assert rope_cache_bytes(LLAMA_2_70B, "bf16") == 4096 * 128 * 2 == 1024**2


@pytest.mark.parametrize("encoding", ["alibi", "learned"])
def test_no_rotary_cache_without_a_rotary_embedding(encoding):
    assert rope_cache_bytes(_as(encoding), "bf16") == 0
    assert rope_cache_bytes(_as(encoding), "fp32") == 0


def test_a_learned_table_is_whole_on_every_rank():
    # OPT's nn.Embedding of (positions + 2) x hidden on every rank; the rest split over TP (bf16: 2 B a weight)
    learned, table = _as("learned"), (4096 + 2) * 8192
    assert learned.position_embedding_parameters == table
    for tp in (1, 2, 8):
        assert learned.weight_bytes_per_gpu(2, tp) == pytest.approx(((LLAMA_PARAMETERS - table) / tp + table) * 2,
                                                                   rel=1e-15)
    # ALiBi has no position parameters (the slopes are a list of floats handed to the attention backend)
    assert _as("alibi").position_embedding_parameters == 0 == LLAMA_2_70B.position_embedding_parameters
    assert _as("alibi").weight_bytes_per_gpu(2, 8) == LLAMA_PARAMETERS * 2 / 8 == LLAMA_2_70B.weight_bytes_per_gpu(2, 8)


def test_memory_budget_weights_drop_only_the_cache(monkeypatch):
    """At TP 8 on an A100-80GB the weights term is the weights per GPU plus the rotary cache: 1 MiB for the rope
    model, nothing for an ALiBi one (patched in under the same name, so every other term is the same)."""
    import sim.serving.memory_profile as profile

    config = load_config(None, sets=["model=llama-2-70b", "hardware.gpu=a100-80gb", "serving.tensor_parallel_size=8"])
    rope = memory_budget(config)
    assert rope.weights == LLAMA_PARAMETERS * 2 // 8 + 1024**2
    alibi = _as("alibi")
    monkeypatch.setattr(profile, "model_spec", lambda name: alibi if name == "llama-2-70b" else model_spec(name))
    budget = memory_budget(config)
    assert budget.weights == LLAMA_PARAMETERS * 2 // 8
    assert budget.kv_bytes - rope.kv_bytes == 1024**2


@pytest.mark.parametrize("change, words", [
    ({"position_encoding": "sinusoidal"}, "position_encoding must be rope, alibi or learned"),
    ({"position_encoding": True}, "position_encoding must be rope, alibi or learned"),
    ({"position_encoding": "alibi", "rotary_dim": 64}, "rotary_dim and rope_caches need position_encoding rope"),
    ({"position_encoding": "learned", "rope_caches": [RopeCache(4096, 128)]},
     "rotary_dim and rope_caches need position_encoding rope"),
])
def test_nonsense_is_refused_in_one_line(change, words):
    with pytest.raises(ConfigError, match=words) as refused:
        dataclasses.replace(LLAMA_2_70B, **change)
    assert "\n" not in str(refused.value) and "'llama-2-70b'" in str(refused.value)


def test_latent_attention_rotates():
    # DeepSeek's MLA caches a rotary part (qk_rope_head_dim) beside the latent: it is a rope model
    with pytest.raises(ConfigError, match="multi-head latent attention"):
        dataclasses.replace(model_spec("deepseek-v3"), position_encoding="alibi")


# ------------------------------------------------------------------ the models of the published latency tables

def bloom_parameters(hidden: int, layers: int, vocab: int = 250_880) -> int:
    """BLOOM's weights by hand (vLLM bloom.py, transformers BloomModel): word embeddings and their LayerNorm; per
    layer query_key_value (hidden x 3 hidden + bias), dense (hidden x hidden + bias), dense_h_to_4h (+ 4 hidden bias),
    dense_4h_to_h (+ hidden bias), two LayerNorms (weight and bias); ln_f; the LM head tied to the embeddings."""
    h = hidden
    layer = (3 * h * h + 3 * h) + (h * h + h) + (4 * h * h + 4 * h) + (4 * h * h + h) + 2 * 2 * h
    return vocab * h + 2 * h + layers * layer + 2 * h


def opt_parameters(hidden: int, layers: int, ffn: int, position_rows: int, vocab: int = 50_272) -> int:
    """OPT's weights by hand (vLLM opt.py, transformers OPTModel): token embeddings, the learned position table
    (``position_rows`` x hidden); per layer q, k, v, out_proj (hidden x hidden + bias each), fc1 (+ ffn bias), fc2
    (+ hidden bias), two LayerNorms; the final LayerNorm; the LM head tied to the token embeddings."""
    h = hidden
    layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h
    return vocab * h + position_rows * h + layers * layer + 2 * h


def test_the_counting_rules_reproduce_published_totals():
    # The Hub's safetensors totals (github.com/huggingface/huggingface.js packages/hub/src/lib/
    # parse-safetensors-metadata.spec.ts): bigscience/bloom BF16 176,247,271,424 (as its model card), and
    # bigscience/bloom-560m F16 559,214,592 (the same repository's docs)
    assert bloom_parameters(14_336, 70) == 176_247_271_424
    assert bloom_parameters(1024, 24) == 559_214_592
    # KerasNLP's OPT presets (github.com/keras-team/keras-hub keras_nlp/models/opt/opt_presets.py "params"), whose
    # port keeps 2,048 position rows: opt-125m 125,237,760, opt-1.3b 1,315,753,984
    assert opt_parameters(768, 12, 3072, 2048) == 125_237_760
    assert opt_parameters(2048, 24, 8192, 2048) == 1_315_753_984


@pytest.mark.parametrize("name, expected, nominal", [
    ("bloom-176b", bloom_parameters(14_336, 70), 176e9),
    # vLLM and the Hugging Face checkpoints hold 2,048 + 2 position rows (OPTLearnedPositionalEmbedding's offset)
    ("opt-13b", opt_parameters(5120, 40, 20_480, 2050), 13e9),
    ("opt-30b", opt_parameters(7168, 48, 28_672, 2050), 30e9),
    ("opt-66b", opt_parameters(9216, 64, 36_864, 2050), 66e9),
])
def test_parameter_counts(name, expected, nominal):
    spec = model_spec(name)
    assert spec.num_parameters == expected
    # the nominal sizes (OPT paper, arXiv 2205.01068 Table 1; BLOOM's name): within half a unit of the last figure
    assert abs(spec.num_parameters - nominal) <= 0.5e9
    assert spec.active_parameters == spec.num_parameters and not spec.gated_mlp
    assert spec.dense_mlp_parameters == 2 * spec.hidden_size * spec.intermediate_size == 8 * spec.hidden_size**2


@pytest.mark.parametrize("name, tp, nbytes", [
    ("bloom-176b", 1, 2 * 70 * 14_336 * 2),  # K and V, 70 layers, 112 heads x 128, bf16
    ("bloom-176b", 8, 2 * 70 * 14 * 128 * 2),  # 14 of the 112 heads a rank
    ("opt-13b", 1, 2 * 40 * 5120 * 2),
    ("opt-30b", 2, 2 * 48 * 28 * 128 * 2),
    ("opt-66b", 4, 2 * 64 * 18 * 128 * 2),
])
def test_kv_bytes_per_token_by_hand(name, tp, nbytes):
    assert model_spec(name).kv_bytes_per_token(2, tp) == nbytes


@pytest.mark.parametrize("name, encoding", [("bloom-176b", "alibi"), ("opt-13b", "learned"), ("opt-30b", "learned"),
                                            ("opt-66b", "learned")])
def test_no_rotary_cache_in_their_memory_profile(name, encoding):
    assert model_spec(name).position_encoding == encoding
    assert rope_cache_bytes(model_spec(name), "bf16") == 0


@pytest.mark.parametrize("name, tp, weights", [
    ("bloom-176b", 8, 176_247_271_424 * 2 // 8),
    # OPT-66B's 2,050 x 9,216 position table whole on each of the 4 ranks, the rest split
    ("opt-66b", 4, (opt_parameters(9216, 64, 36_864, 2050) - 2050 * 9216) * 2 // 4 + 2050 * 9216 * 2),
    ("opt-13b", 1, opt_parameters(5120, 40, 20_480, 2050) * 2),
])
def test_memory_budget_weights_are_the_weights_alone(name, tp, weights):
    config = load_config(None, sets=[f"model={name}", "hardware.gpu=a100-80gb", f"serving.tensor_parallel_size={tp}"])
    assert memory_budget(config).weights == weights


@pytest.mark.parametrize("alias, name", [
    ("llama2-70b", "llama-2-70b"), ("bloom-176b", "bloom-176b"),  # Splitwise's perf model (data/perf_model.csv)
    ("facebook/opt-13b", "opt-13b"), ("facebook/opt-66b", "opt-66b"),  # DistServe's profiles
    ("facebook/opt-30b", "opt-30b"), ("bigscience/bloom", "bloom-176b"),
])
def test_the_tables_names_find_the_entries(alias, name):
    from sim.specs import _read_table, canonical_model

    assert canonical_model(alias) == name
    if alias != name:  # written in the entry, not found by spelling alone
        assert alias in _read_table("models.yaml")[name]["aliases"]


def test_their_config_json_is_refused_not_misread(tmp_path, run_cli):
    """kvsim reads no bloom or opt config.json (sim.model_families): the named entries are the way in."""
    from tests.test_model_config import refused, write_config

    bloom = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "n_layer": 70, "n_head": 112,
             "hidden_size": 14_336, "vocab_size": 250_880}
    assert "model_type 'bloom'" in refused(run_cli, str(write_config(tmp_path / "b", bloom)))
    opt = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "num_hidden_layers": 40, "hidden_size": 5120,
           "num_attention_heads": 40, "ffn_dim": 20_480, "vocab_size": 50_272, "max_position_embeddings": 2048}
    assert "model_type 'opt'" in refused(run_cli, str(write_config(tmp_path / "o", opt)))


@pytest.mark.parametrize("name, tp, instances", [("bloom-176b", 8, 1), ("opt-13b", 1, 4)])
def test_smoke_runs_complete(name, tp, instances, tmp_path, run_cli):
    """One 8-GPU A100-80GB node: BLOOM at TP 8 (Splitwise's largest setting) in one instance, OPT-13B at TP 1."""
    import json

    report = tmp_path / "r.json"
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", f"model={name}",
                             "--set", "hardware.gpu=a100-80gb", "--set", f"serving.tensor_parallel_size={tp}",
                             "--set", f"serving.num_instances={instances}", "--report-json", report)
    assert status == 0, err
    data = json.loads(report.read_text())
    metrics = data["runs"][0]["metrics"]
    assert data["config"]["model"] == name and metrics["requests_completed"] == data["trace"]["rows_used"] > 0
    assert metrics["ttft_s"]["mean"] > 0 and metrics["tpot_s"]["mean"] > 0


def test_alibi_serves_beyond_its_default_length():
    """vLLM takes a given max_model_len as it is when the config.json has no length key (config/model.py
    _get_and_verify_max_len: "If max_model_len is specified, we use it"), as BLOOM's has none (ALiBi extrapolates;
    Splitwise measured BLOOM-176B at 8,192-token prompts); unset, 2,048. OPT's table has 2,048 rows to look up."""
    from sim.serving.engine_limits import max_model_len

    assert max_model_len(load_config(None, sets=["model=bloom-176b"])) == 2048
    assert max_model_len(load_config(None, sets=["model=bloom-176b", "serving.max_model_len=10240"])) == 10_240
    with pytest.raises(ConfigError, match="exceeds model opt-13b's context of 2048 tokens"):
        load_config(None, sets=["model=opt-13b", "serving.max_model_len=4096"])
