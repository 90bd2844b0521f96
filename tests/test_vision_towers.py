"""Qwen3.5's published (multimodal) config.json files: the vision tower vLLM 0.33 loads beside the language model, its
weights counted by hand from vllm/model_executor/models/qwen3_vl.py (``Qwen3_VisionTransformer``, built by
qwen3_5.py's ``Qwen3_5MoeForConditionalGeneration``), the encoder's pass in the profile run
(v1/worker/gpu_model_runner.py ``profile_run``), and the KV capacity they leave, against the text_config alone.

tests/fixtures/hf_configs/Qwen3.5-35B-A3B.json: the config.json of Qwen/Qwen3.5-35B-A3B (transformers_version 4.57.1)
as a fine-tune of it keeps it unchanged (Don-oz/Tess-4-35B-A3B's snapshot, read whole in a public auto-round
quantization log, whose job record gives the checkpoint's Hub count, 35.95B parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.config import load_config
from sim.serving.memory_profile import memory_budget
from sim.specs import model_spec
from tests.linear_attention_configs import QWEN3_5_9B_TEXT
from tests.test_model_config import refused, write_config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "hf_configs" / "Qwen3.5-35B-A3B.json"
PUBLISHED = json.loads(FIXTURE.read_text())
VISION = PUBLISHED["vision_config"]

# Qwen3_VisionTransformer by hand (vision_config: depth 27, hidden 1152, intermediate 4304, 16 heads, 3 channels,
# 16 x 16 patches of 2 frames, spatial_merge_size 2, 2304 positions, out_hidden_size 2048, no deepstack)
H, I, OUT = 1152, 4304, 2048
PATCH_EMBED = 3 * 2 * 16 * 16 * H + H  # Conv3d with bias
POS_EMBED = 2304 * H
BLOCK = (2 * 2 * H  # norm1, norm2: LayerNorm weight and bias
         + 3 * H * H + 3 * H  # attn.qkv with bias
         + H * H + H  # attn.proj with bias
         + H * I + I  # mlp.linear_fc1 with bias
         + I * H + H)  # mlp.linear_fc2 with bias
MERGER = 2 * H + (4 * H) * (4 * H) + 4 * H + 4 * H * OUT + OUT  # LayerNorm(1152), fc1 4608 x 4608, fc2 4608 x 2048
TOWER = PATCH_EMBED + POS_EMBED + 27 * BLOCK + MERGER
# whole on every TP rank (plain Conv3d / nn.Embedding / LayerNorm; RowParallelLinear's bias is not split)
REPLICATED = PATCH_EMBED + POS_EMBED + 27 * (4 * H + H + H) + 2 * H + OUT


def text_alone(tmp_path: Path, config: dict, architecture: str) -> Path:
    """The multimodal file's text_config as a config.json of its own (vLLM's hf_text_config)."""
    return write_config(tmp_path / "text", {**config["text_config"], "architectures": [architecture]})


def test_the_vision_tower_is_counted_as_vllm_loads_it(tmp_path):
    assert TOWER == 446_571_248 and REPLICATED == 4_615_808
    spec = model_spec(str(FIXTURE))
    text = model_spec(str(text_alone(tmp_path, PUBLISHED, "Qwen3_5MoeForCausalLM")))
    assert spec.vision_tower.parameters == TOWER and spec.vision_tower.replicated_parameters == REPLICATED
    assert spec.num_parameters == text.num_parameters + TOWER == 35_107_181_936
    # the Hub's 35.95B counts the checkpoint's MTP layer too (mtp.*: one attention + MoE layer, fc 2h -> h, three
    # norms), which vLLM maps to nothing unless MTP speculative decoding serves it
    h = 2048
    attention = h * 16 * 256 * 2 + 2 * h * 2 * 256 + 16 * 256 * h + 2 * 256
    moe = h * 256 + 256 * 3 * h * 512 + 3 * h * 512 + h
    assert spec.num_parameters + attention + moe + 2 * h + 2 * h * h + 3 * h == pytest.approx(35.95e9, abs=0.005e9)
    # the language model is the text_config's: the same layers, KV and Gated DeltaNet state
    assert (spec.num_layers, spec.attention_layers, spec.kv_bytes_per_token(2), spec.linear_attention) == \
        (text.num_layers, text.attention_layers, text.kv_bytes_per_token(2), text.linear_attention)
    # weights on each of 2 TP ranks, bf16: all split but the routers and shared-expert gates (ReplicatedLinear) and
    # the tower's replicated part
    routers = 40 * h * (256 + 1)
    whole = routers + REPLICATED
    assert spec.weight_bytes_per_gpu(2, 2) == (spec.num_parameters - whole) * 2 / 2 + whole * 2


def test_deepstack_mergers_and_the_dense_model(tmp_path):
    # Qwen3-VL's deepstack: one more merger per index, its LayerNorm over the 4 merged patches (use_postshuffle_norm)
    deep = {**PUBLISHED, "vision_config": {**VISION, "deepstack_visual_indexes": [8, 16, 24]}}
    spec = model_spec(str(write_config(tmp_path / "d", deep)))
    assert spec.vision_tower.parameters == TOWER + 3 * (MERGER - 2 * H + 2 * 4 * H)
    assert spec.vision_tower.output_width == 4 * OUT  # the merger's and three deepstack features a token
    # the dense family (qwen3_5, Qwen3_5ForConditionalGeneration): Qwen3.5-9B's language model under text_config and
    # this tower, merging to its 4096-wide hidden size
    text = {k: v for k, v in QWEN3_5_9B_TEXT.items() if k != "architectures"}
    dense = {"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5", "text_config": text,
             "vision_config": {**VISION, "model_type": "qwen3_5", "out_hidden_size": 4096}}
    mm = model_spec(str(write_config(tmp_path / "mm", dense)))
    alone = model_spec(str(text_alone(tmp_path, dense, "Qwen3_5ForCausalLM")))
    assert mm.num_parameters - alone.num_parameters == TOWER - 4 * H * OUT - OUT + 4 * H * 4096 + 4096


def budget(model: str, *sets: str):
    return memory_budget(load_config(None, sets=[f"model={model}", "hardware.gpu=h200", *sets]))


def test_kv_capacity_is_the_text_models_less_the_towers_weights_and_profile(tmp_path):
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes

    text = str(text_alone(tmp_path, PUBLISHED, "Qwen3_5MoeForCausalLM"))
    mm, alone = budget(str(FIXTURE)), budget(text)
    # weights: the tower in bf16 and its rotary cos/sin cache (8192 positions x 36 = head_dim 72 x 0.5), one GPU
    assert mm.weights - alone.weights == TOWER * 2 + 8192 * 36 * 2
    # the profile: one 4096 x 4096 image (the encoder budget, max(8192, 16384) tokens, holds 16,384 tokens = 65,536
    # patches of 3 x 2 x 16 x 16 values); its pixels and its 16,384 x 2048 outputs stay held through the language
    # model's pass, whose peak (the sampler's, 1,024 rows of logits) exceeds the encoder's own
    held = 65536 * 1536 * 2 + 16384 * 2048 * 2
    encoder = 65536 * (1536 + H + 72 + 2 * H + 2 * I) * 2  # pixels, positions and rotary, the MLP stage
    assert encoder < alone.activation and mm.activation - alone.activation == held
    config = load_config(None, sets=[f"model={FIXTURE}", "hardware.gpu=h200"])
    block = kv_block_bytes(config)
    assert block == kv_block_bytes(load_config(None, sets=[f"model={text}", "hardware.gpu=h200"]))
    blocks = hbm_capacity_blocks(config)
    # 2,800 and 2,852 blocks while the language model's rotary cache was counted at head_dim 256 wide: at the width
    # vLLM turns, int(256 x partial_rotary_factor 0.25) = 64, it is 262,144 x 192 x 2 B = 100,663,296 B smaller, and
    # the KV budgets were 62,394,009,597 and 63,556,177,373 B: (62,394,009,597 + 100,663,296) // 22,282,240 = 2,804,
    # (63,556,177,373 + 100,663,296) // 22,282,240 = 2,856
    assert block == 22_282_240
    assert blocks == (alone.kv_bytes - TOWER * 2 - 8192 * 36 * 2 - held) // block == 2804
    assert hbm_capacity_blocks(load_config(None, sets=[f"model={text}", "hardware.gpu=h200"])) == 2856
    # vLLM's --language-model-only: no tower built, no encoder pass: the text model's budget exactly
    assert budget(str(FIXTURE), "serving.language_model_only=true") == alone
    assert budget(text, "serving.language_model_only=true") == alone  # no effect on a text-only model


def test_the_encoder_pass_sets_the_peak_when_the_sampler_is_small():
    # 4 sequences, 16,384 tokens a step: still one image (16,384 // 16,384); the language model's forward (its MoE
    # stage, 3 x 2048 + 8 x (max(2 x 512, 2048) + 512) a token) with the image's pixels and outputs held, and the
    # sampler's 4 rows, stay below the encoder's MLP stage
    b = budget(str(FIXTURE), "serving.max_num_seqs=4", "serving.max_num_batched_tokens=16384")
    forward = 16384 * (3 * 2048 + 8 * (2048 + 512)) * 2
    assert forward + 65536 * 1536 * 2 + 16384 * 2048 * 2 < b.activation == 65536 * (1536 + H + 72 + 2 * H + 2 * I) * 2
    # 32,768 tokens a step: two images; at TP 2 each rank holds half the heads and half fc1's width
    b = budget(str(FIXTURE), "serving.max_num_seqs=4", "serving.max_num_batched_tokens=32768",
               "serving.tensor_parallel_size=2")
    assert b.activation == 2 * 65536 * (1536 + H + 72 + 2 * H + I) * 2


def test_a_run_of_the_published_file_serves_the_text_model(run_cli, tmp_path):
    """The Hub's file runs end to end (it was refused: "its vision tower is not modelled"); served as text only it
    behaves as its text_config alone, metric for metric."""
    text = text_alone(tmp_path, PUBLISHED, "Qwen3_5MoeForCausalLM")
    reports = {}
    for name, sets in (("mm", [f"model={FIXTURE}"]), ("lmo", [f"model={FIXTURE}", "serving.language_model_only=true"]),
                       ("text", [f"model={text}"])):
        report = tmp_path / f"{name}.json"
        args = ["--preset", "smoke", "--no-plot", "--quiet", "--workload-limit", "20", "--report-json", report]
        status, _, err = run_cli(*args, *(x for s in [*sets, "hardware.gpu=h200"] for x in ("--set", s)))
        assert status == 0, err
        reports[name] = json.loads(report.read_text())["runs"][0]["metrics"]
    # (the blocks by hand: test_kv_capacity_is_the_text_models_less_the_towers_weights_and_profile)
    assert reports["mm"]["requests_completed"] == 20 and reports["mm"]["instances"]["kv_blocks_each"] == 2804
    assert reports["lmo"] == reports["text"] and reports["text"]["instances"]["kv_blocks_each"] == 2856


@pytest.mark.parametrize(("change", "words"), [
    ({"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}, "quantized multimodal"),
    ({"vision_config": {**VISION, "out_hidden_size": 4096}}, "vision_config.out_hidden_size 4096 must equal"),
    ({"vision_config": {**VISION, "deepstack_visual_indexes": [27]}}, "'vision_config.deepstack_visual_indexes'"),
    ({"vision_config": {**VISION, "model_type": "siglip_vision_model"}}, "'vision_config.model_type'"),
    ({"vision_config": {k: v for k, v in VISION.items() if k != "depth"}}, "missing key 'vision_config.depth'"),
    ({"vision_config": {**VISION, "num_heads": 5}}, "not a multiple of vision_config.num_heads 5"),
    ({"vision_config": None}, "key 'vision_config' must be an object"),
])
def test_what_is_not_modelled_is_refused_by_name(change, words, tmp_path, run_cli):
    assert words in refused(run_cli, str(write_config(tmp_path, {**PUBLISHED, **change})))


def test_tp_must_divide_the_vision_towers_heads_unless_it_is_not_loaded(tmp_path):
    """vLLM splits the tower's heads over TP as the language model's (Qwen2_5_VisionAttention: ``divide(num_heads,
    tp_size)`` asserts): a tower of 12 heads beside 16 text heads fits TP 4, not TP 8, unless no tower is loaded."""
    from sim.errors import ConfigError

    model = write_config(tmp_path, {**PUBLISHED, "vision_config": {**VISION, "num_heads": 12}})
    assert load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=4"])
    with pytest.raises(ConfigError, match="vision tower \\(12 attention heads\\)"):
        load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=8"])
    assert load_config(None, sets=[f"model={model}", "serving.tensor_parallel_size=8",
                                   "serving.language_model_only=true"])


@pytest.mark.parametrize(("argv", "words"), [
    # llama-3.1-8b has no vision tower: there is nothing to leave unloaded (the run was exit 0, the flag unread)
    (["--workload-limit", "5"], "llama-3.1-8b has no vision tower"),
    # --trace-stats and --check-calibration never size a GPU's memory, the only thing the setting changes
    (["--trace-stats", "--workload-limit", "5", "--set", "model=gemma-3-4b"], "--trace-stats"),
    (["--check-calibration", "profiles/vidur_a100_llama3_8b.yaml"], "--check-calibration"),
])
def test_language_model_only_where_no_tower_is_read_is_refused(argv, words, run_cli):
    """serving.language_model_only only drops a vision tower from a GPU's memory: asked for where the model has no
    tower, or in a mode that never sizes memory, it would change nothing, and is refused naming the key (exit 2)."""
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", *argv, "--set",
                             "serving.language_model_only=true")
    assert status == 2 and "serving.language_model_only" in err and words in err, err
    assert len(err.strip().splitlines()) == 1


def test_language_model_only_is_read_in_every_simulating_mode(run_cli, tmp_path):
    """Where a tower exists, the setting frees its memory in every mode that sizes HBM, --cache-only included
    (HBM's blocks come from the memory left beside the weights): gemma-3-4b's HBM holds more blocks with it."""
    blocks = []
    for sets in ([], ["--set", "serving.language_model_only=true"]):
        report = tmp_path / f"r{len(blocks)}.json"
        status, _, err = run_cli("--cache-only", "--preset", "smoke", "--no-plot", "--quiet", "--workload-limit", "5",
                                 "--set", "model=gemma-3-4b", "--set", "serving.disable_hybrid_kv_cache_manager=true",
                                 *sets, "--report-json", report)
        assert status == 0, err
        blocks.append(json.loads(report.read_text())["runs"][0]["metrics"]["capacity_blocks"]["hbm"])
    assert blocks[1] > blocks[0]
