"""Sliding-window models' config.json (sim.hf_config): which layers of a hybrid model slide as vLLM picks them,
Gemma's and gpt-oss's parameters counted by hand against their published totals, gpt-oss's MXFP4 weights on a GPU,
and a window on every layer bounding the requests served."""

from __future__ import annotations

import dataclasses

import pytest

from sim.errors import ConfigError
from sim.model_shape import ModelSpec
from sim.specs import model_spec
from tests.conftest import ROOFLINE_EFFICIENCIES
from tests.hybrid_configs import GEMMA_2_9B, GEMMA_3_1B, GEMMA_3_27B, GPT_OSS_20B, GPT_OSS_120B
from tests.test_model_config import LLAMA_3_8B, QWEN2_7B, write_config


def test_sliding_layers_are_those_vllm_slides(tmp_path):
    # gpt-oss-20b: layers 0, 2, ..., 22 slide (vLLM gpt_oss.py: layer_idx % 2 == 0) -> 12 of 24
    oss = model_spec(str(write_config(tmp_path / "o", GPT_OSS_20B)))
    assert (oss.sliding_layers, oss.num_layers, oss.sliding_window) == (12, 24, 128) and oss.is_hybrid_attention
    # Gemma-3-27b: full where (i + 1) % 6 == 0, layers 5, 11, ..., 59: 10 of 62 -> 52 slide
    gemma3 = model_spec(str(write_config(tmp_path / "g3", GEMMA_3_27B)))
    assert (gemma3.sliding_layers, gemma3.sliding_window) == (62 - len(range(5, 62, 6)), 1024) == (52, 1024)
    # Gemma-2-9b (no layer_types): layer 0 slides, then every other: 21 of 42, window 4096 < 8192 positions
    gemma2 = model_spec(str(write_config(tmp_path / "g2", GEMMA_2_9B)))
    assert (gemma2.sliding_layers, gemma2.sliding_window, gemma2.longest_request) == (21, 4096, 8192)
    # Gemma-3-1b: 26 layers, full at 5, 11, 17, 23 -> 22 slide (window 512)
    assert model_spec(str(write_config(tmp_path / "g1", GEMMA_3_1B))).sliding_layers == 22
    # layer_types, when given, decide for Gemma (vLLM gemma2.py: layer_types[i] == "sliding_attention")
    given = {**GEMMA_2_9B, "layer_types": ["full_attention"] * 30 + ["sliding_attention"] * 12}
    assert model_spec(str(write_config(tmp_path / "t", given))).sliding_layers == 12
    # another sliding_window_pattern: full at 3, 7, ..., 59 (15 of 62)
    pattern = {**GEMMA_3_27B, "text_config": {**GEMMA_3_27B["text_config"], "sliding_window_pattern": 4}}
    assert model_spec(str(write_config(tmp_path / "p", pattern))).sliding_layers == 62 - 15
    # every layer full, or a window covering the context: no sliding layers (full attention)
    full = model_spec(str(write_config(tmp_path / "f", {**GEMMA_2_9B, "layer_types": ["full_attention"] * 42})))
    wide = model_spec(str(write_config(tmp_path / "w", {**GEMMA_2_9B, "sliding_window": 8192})))
    assert full.sliding_window is wide.sliding_window is None and full.sliding_layers == wide.sliding_layers == 0
    # every layer sliding: num_sliding_layers None, served up to the window (ModelSpec.longest_request)
    every = model_spec(str(write_config(tmp_path / "e", {**GEMMA_2_9B, "layer_types": ["sliding_attention"] * 42})))
    assert (every.num_sliding_layers, every.sliding_layers, every.longest_request) == (None, 42, 4096)


def test_the_last_layers_kind_is_read_as_vllm_lays_out_the_layers(tmp_path):
    """Whether the last layer slides (what a layerwise PD transfer sends last): gpt-oss-20b's layer 23 and Gemma-2's
    41 are odd (i % 2 == 0 slide): full; Gemma-3-27b's 61 ((61 + 1) % 6 = 2) and Gemma-3-1b's 25 slide; layer_types
    decide when given. The bundled entries agree with their config.json."""
    for i, (config, name, slides) in enumerate([(GPT_OSS_20B, "gpt-oss-20b", False), (GEMMA_2_9B, "gemma-2-9b", False),
                                                (GEMMA_3_27B, "gemma-3-27b", True), (GEMMA_3_1B, None, True)]):
        spec = model_spec(str(write_config(tmp_path / str(i), config)))
        assert spec.last_layer_slides is slides
        assert name is None or model_spec(name).last_layer_slides is slides
    # Gemma-3-4b's 34 layers end on a sliding one (33), the 12b's 48 on a full one (47)
    assert (model_spec("gemma-3-4b").last_layer_slides, model_spec("gemma-3-12b").last_layer_slides) == (True, False)
    given = {**GEMMA_2_9B, "layer_types": ["full_attention"] * 30 + ["sliding_attention"] * 12}
    assert model_spec(str(write_config(tmp_path / "t", given))).last_layer_slides is True
    with pytest.raises(ConfigError, match="last_layer_slides"):  # a model without sliding layers has none
        dataclasses.replace(model_spec("llama-3.1-8b"), last_layer_slides=True)


def test_gemma_counts_by_hand(tmp_path):
    # Gemma-2-9b: tied embeddings, per layer q/k/v/o (16 x 256 query, 8 x 256 KV), a gated MLP, four RMSNorms
    layer = 2 * 3584 * 4096 + 2 * 3584 * 2048 + 3 * 3584 * 14336 + 4 * 3584
    assert model_spec(str(write_config(tmp_path / "g2", GEMMA_2_9B))).num_parameters == \
        256000 * 3584 + 42 * layer + 3584
    # ... and vLLM's Gemma 2 computes its logits from the embedding whatever tie_word_embeddings says (gemma2.py
    # compute_logits: embed_tokens), so an untied flag adds no LM head; Gemma 3 reads the flag (gemma3.py)
    untied = model_spec(str(write_config(tmp_path / "u", {**GEMMA_2_9B, "tie_word_embeddings": False})))
    assert untied.num_parameters == model_spec("gemma-2-9b").num_parameters
    untied3 = model_spec(str(write_config(tmp_path / "u3", {**GEMMA_3_1B, "tie_word_embeddings": False})))
    assert untied3.num_parameters - model_spec(str(write_config(tmp_path / "t3", GEMMA_3_1B))).num_parameters == \
        GEMMA_3_1B["vocab_size"] * GEMMA_3_1B["hidden_size"]
    # Gemma 3 adds q and k RMSNorms over head_dim: the 1B per layer 2 x 256 more than Gemma 2's layout
    gemma3 = model_spec(str(write_config(tmp_path / "g3", GEMMA_3_1B)))
    as_gemma2 = model_spec(str(write_config(tmp_path / "as2", {**GEMMA_3_1B, "model_type": "gemma2"})))
    assert gemma3.num_parameters - as_gemma2.num_parameters == 26 * 2 * 256
    # the multimodal 27B: the text model (as gemma3_text, with Gemma3TextConfig's vocab_size and context) plus
    # SigLIP: patch embedding (3 x 14 x 14 x 1152 + bias), 64 x 64 positions, 27 layers of 2 LayerNorms, q/k/v/out
    # and fc1/fc2 with biases, a final LayerNorm; the projector 1152 x 5376 and an RMSNorm over 1152
    text = {**GEMMA_3_27B["text_config"], "vocab_size": 262208, "max_position_embeddings": 131072}
    text_only = model_spec(str(write_config(tmp_path / "t", text)))
    siglip_layer = 2 * 2 * 1152 + 4 * (1152 * 1152 + 1152) + (1152 * 4304 + 4304) + (4304 * 1152 + 1152)
    vision = (3 * 14 * 14 * 1152 + 1152) + 64 * 64 * 1152 + 27 * siglip_layer + 2 * 1152
    assert vision == 416_866_032  # the technical report's 417M vision encoder
    assert model_spec("gemma-3-27b").num_parameters == text_only.num_parameters + vision + 1152 * 5376 + 1152
    # the text model's layers alone: the report's 25,600M non-embedding parameters
    assert text_only.num_parameters - 262208 * 5376 == pytest.approx(25_600e6, rel=5e-4)
    assert dataclasses.replace(text_only, name="x", source="x", num_parameters=0) == dataclasses.replace(
        model_spec("gemma-3-27b"), name="x", source="x", num_parameters=0, vision_tower=None)  # the same language model


def test_gpt_oss_counts_and_active_parameters(tmp_path):
    # per layer: q/k/v/o with biases, a sink per head, two RMSNorms, a router with bias, 32 experts (gate_up
    # 2880 x 5760 and down 2880 x 2880, with biases); embeddings and an untied LM head; the final norm
    attention = 2 * 2880 * 4096 + 2 * 2880 * 512 + (4096 + 2 * 512 + 2880) + 64 + 2 * 2880
    expert = 3 * 2880 * 2880 + (5760 + 2880)
    spec = model_spec(str(write_config(tmp_path / "o", GPT_OSS_20B)))
    assert spec.num_parameters == 2 * 201088 * 2880 + 24 * (attention + 2880 * 32 + 32 + 32 * expert) + 2880
    # the checkpoint's safetensors headers (openai/gpt-oss-20b at bbf09307, as the @huggingface/hub safetensors
    # parser's test counts them): 1,804,459,584 BF16 values and 19,110,297,600 MXFP4 expert weights
    assert spec.routed_expert_parameters == 19_110_297_600
    assert spec.num_parameters - spec.routed_expert_parameters == 1_804_459_584
    # vLLM's gpt-oss (as GLM-4.5's and MiniMax-M2's) builds its own ParallelLMHead, never tied (gpt_oss.py): a
    # config saying tie_word_embeddings true still has one
    tied = model_spec(str(write_config(tmp_path / "t", {**GPT_OSS_20B, "tie_word_embeddings": True})))
    assert tied.num_parameters == spec.num_parameters
    # the model card's active parameters leave out the input embedding (not the LM head) and count the 4 routed
    # experts' biases only; ModelSpec.active_parameters keeps every expert bias (24 x 28 x 8640 = 5.8M more here)
    for name, layers, experts, card in (("gpt-oss-20b", 24, 32, 3.61e9), ("gpt-oss-120b", 36, 128, 5.13e9)):
        active = model_spec(name).active_parameters - 201088 * 2880 - layers * (experts - 4) * (5760 + 2880)
        assert active == pytest.approx(card, rel=0.005), name


def test_gpt_oss_weights_on_one_gpu_by_hand(tmp_path):
    # MXFP4 experts: 4-bit values and one 8-bit scale per 32 (4.25 bits); the rest BF16 (vLLM Mxfp4Config)
    for name, layers, experts in (("gpt-oss-20b", 24, 32), ("gpt-oss-120b", 36, 128)):
        spec = model_spec(name)
        routed = layers * experts * 3 * 2880 * 2880
        by_hand = routed // 2 + routed // 32 + (spec.num_parameters - routed) * 2
        assert spec.weight_bytes_per_gpu(2, 1) == by_hand, name
        # over 2 TP ranks half each but the routers (hidden x experts a layer, BF16: GateLinear, a ReplicatedLinear,
        # whole on every rank); experts over DP 2 x TP 2 = 4 GPUs, the rest over the 2 TP ranks
        router = layers * 2880 * experts
        assert spec.weight_bytes_per_gpu(2, 2) == (by_hand - router * 2) / 2 + router * 2
        assert spec.weight_bytes_per_gpu(2, 2, 2) == (routed * 4.25 / 8 / 4 + (spec.num_parameters - routed - router)
                                                      * 2 / 2 + router * 2)
    # gpt-oss-20b: exactly the checkpoint's model.safetensors.index.json total_size (its *_blocks and *_scales
    # tensors are the MXFP4 values and scales); the model card's 12.8 GiB
    assert model_spec("gpt-oss-20b").weight_bytes_per_gpu(2, 1) == 13_761_264_768
    # gpt-oss-120b: 65,248,815,744 bytes = 60.77 GiB, the model card's 60.8 GiB checkpoint ("fits on a single 80 GB
    # GPU"); as BF16 it would take 217.6 GiB
    big = model_spec("gpt-oss-120b")
    assert big.weight_bytes_per_gpu(2, 1) == 65_248_815_744
    assert big.weight_bytes_per_gpu(2, 1) / 2**30 == pytest.approx(60.8, abs=0.05)
    assert big.num_parameters * 2 / 2**30 == pytest.approx(217.6, abs=0.05)
    # the config.json path gives the same bytes as the models.yaml entry
    assert model_spec(str(write_config(tmp_path / "b", GPT_OSS_120B))).weight_bytes_per_gpu(2, 1) == 65_248_815_744


def test_the_roofline_reads_mxfp4_experts_at_their_size():
    from sim.serving.compute import RooflineCompute
    from sim.specs import gpu_spec

    compute = RooflineCompute(model_spec("gpt-oss-120b"), gpu_spec("h200"), dtype_bytes=2, kv_dtype_bytes=2,
                              **ROOFLINE_EFFICIENCIES)
    assert compute.expert_bytes == 3 * 2880 * 2880 * 4.25 / 8  # one expert's weights read per step
    assert compute.linear_bytes == 2  # attention projections stay BF16


@pytest.mark.parametrize("sliding, window", [(0, 1024), (62, 1024), (30, None), (True, 1024)],
                         ids=["none", "all", "no-window", "bool"])
def test_num_sliding_layers_out_of_range_is_refused(sliding, window):
    # 1 .. num_layers - 1 layers slide, with a window; every layer sliding is num_sliding_layers None
    fields = {f.name: getattr(model_spec("gemma-3-27b"), f.name) for f in dataclasses.fields(model_spec("gemma-3-27b"))}
    with pytest.raises(ConfigError, match="num_sliding_layers"):
        ModelSpec(**{**fields, "num_sliding_layers": sliding, "sliding_window": window})


@pytest.mark.parametrize("config", [
    {**LLAMA_3_8B, "model_type": "mistral", "sliding_window": 4096},  # Mistral-7B-v0.1
    {**LLAMA_3_8B, "model_type": "mistral"},  # MistralConfig's default window
    {**QWEN2_7B, "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 0},  # from layer 0 on
], ids=["mistral-v0.1", "mistral-default", "qwen2-window-on"])
def test_a_narrower_sliding_window_bounds_the_requests(config, tmp_path):
    spec = model_spec(str(write_config(tmp_path, config)))
    assert spec.sliding_window == 4096 and spec.max_position_embeddings == config["max_position_embeddings"]
    assert spec.longest_request == 4096  # up to its window a sliding-window model attends to every token


def test_a_sliding_window_beside_layer_types_of_full_attention_slides_no_layer(tmp_path):
    """layer_types name each layer's kind, and a window applies to the layers they mark sliding_attention (vLLM's
    llama.py, which serves Mistral, takes a layer's window from them when given): a Mistral config with a 4,096-token
    window and every layer full_attention is full attention, served to its context (it slid every layer before
    62b3ef0; hrev24 asked for the case)."""
    config = {**LLAMA_3_8B, "model_type": "mistral", "sliding_window": 4096,
              "layer_types": ["full_attention"] * LLAMA_3_8B["num_hidden_layers"]}
    spec = model_spec(str(write_config(tmp_path, config)))
    assert (spec.sliding_window, spec.sliding_layers) == (None, 0)
    assert spec.longest_request == config["max_position_embeddings"]


@pytest.mark.parametrize("extra, sliding", [({"max_window_layers": 0}, True), ({"max_window_layers": 28}, False),
                                            ({"max_window_layers": 40}, False), ({}, False),
                                            ({"max_window_layers": 20}, None), ({"num_hidden_layers": 40}, None),
                                            ({"max_window_layers": 1}, None), ({"max_window_layers": 27}, None),
                                            ({"layer_types": ["full_attention"] * 28}, False)],
                         ids=["0", "28-of-28", "40-of-28", "default-28-of-28", "20-of-28", "default-28-of-40", "1-of-28",
                              "27-of-28", "types"])
def test_qwen2_windows_slide_the_layers_from_max_window_layers_on(extra, sliding, tmp_path):
    """transformers' Qwen2Config (configuration_qwen2.py): with use_sliding_window, layer i slides when i >=
    max_window_layers (default 28), unless layer_types are given. Qwen2-7B has 28 layers: from 0 every layer slides,
    from 28 or later none (full attention: served to its context); from 20, layers 20..27 slide beside full ones, and
    so do the default 28 with 40 layers and the mixes' two ends, from 1 (27 of 28 slide) and from 27 (1 of 28): a mix vLLM's qwen2.py refuses ("Sliding window for some but all layers is
    not supported"), refused here naming the key (it slid every layer)."""
    config = {**QWEN2_7B, "use_sliding_window": True, "sliding_window": 4096, **extra}
    if "max_window_layers" not in extra:
        del config["max_window_layers"]
    path = write_config(tmp_path, config)
    if sliding is None:
        with pytest.raises(ConfigError, match="max_window_layers.*a mix vLLM refuses"):
            model_spec(str(path))
        return
    spec = model_spec(str(path))
    assert (spec.sliding_window, spec.sliding_layers) == ((4096, 28) if sliding else (None, 0))
    assert spec.longest_request == (4096 if sliding else config["max_position_embeddings"])


@pytest.mark.parametrize("config, key", [
    ({**QWEN2_7B, "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": None}, "max_window_layers"),
    ({**GEMMA_3_1B, "sliding_window_pattern": None}, "sliding_window_pattern"),
], ids=["qwen2-max-window-layers", "gemma3-pattern"])
def test_a_null_layout_key_is_refused_where_transformers_lays_the_layers_out_by_it(config, key, tmp_path):
    """Qwen2Config lays layer i out as sliding when ``i >= max_window_layers`` (with use_sliding_window) and
    Gemma3TextConfig when ``(i + 1) % sliding_window_pattern`` (without layer_types): a null there is a TypeError in
    transformers, so vLLM loads no such config. kvsim read the default in its place (28: Qwen2-7B's 28 layers all
    full; 6: Gemma 3 1B's 22 of 26 sliding), at exit 0."""
    with pytest.raises(ConfigError, match=f"key '{key}' is null: with .* transformers lays the layers out by it"):
        model_spec(str(write_config(tmp_path, config)))
    # the null is read by nothing where layer_types lay the layers out (transformers' Gemma3TextConfig too)
    if key == "sliding_window_pattern":
        spec = model_spec(str(write_config(tmp_path / "typed", {**config, "layer_types": ["sliding_attention"] * 26})))
        assert (spec.sliding_window, spec.num_sliding_layers) == (512, None)  # every layer slides: no hybrid


def test_qwen2_moe_windows_slide_the_even_layers_below_max_window_layers(tmp_path):
    # transformers' Qwen2MoeConfig: layer i slides when i is even and below max_window_layers (default 28): 0 slides
    # none; Qwen1.5-MoE's 21 slides 0, 2, ..., 20 of its 24 layers, a mix refused as Qwen2's
    from tests.test_shared_experts_mla import published  # Qwen1.5-MoE-A2.7B: 24 layers, max_window_layers 21

    on = {**published("Qwen1.5-MoE-A2.7B-Chat"), "use_sliding_window": True, "sliding_window": 4096}
    assert model_spec(str(write_config(tmp_path / "n", {**on, "max_window_layers": 0}))).sliding_window is None
    with pytest.raises(ConfigError, match="max_window_layers.* 21 .*slides 11 of 24 layers"):
        model_spec(str(write_config(tmp_path / "m", on)))


def test_requests_beyond_the_window_are_skipped_and_a_longer_max_model_len_refused(tmp_path, run_cli):
    from sim.config import load_config
    from sim.serving.admission import admit
    from tests.test_serving import make_trace

    path = write_config(tmp_path, {**LLAMA_3_8B, "model_type": "mistral", "sliding_window": 4096})
    trace = make_trace([0.0, 1.0, 2.0], [4000, 4095, 4100], [96, 2, 1])  # 4,096, 4,097 and 4,101 tokens
    assert admit(trace, load_config(None, sets=[f"model={path}"])) == {"exceeds_max_model_len": 2}
    assert trace.provenance.skip_reasons == {"exceeds_max_model_len": 2} and len(trace) == 1
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--quiet", "--set", f"model={path}",
                             "--set", "serving.max_model_len=8192")
    assert status == 2 and "sliding window of 4096 tokens" in err


def test_windows_covering_the_context_are_full_attention(tmp_path):
    # Mistral-7B-v0.3 sets sliding_window null; Qwen2-7B's 131072 window with use_sliding_window false is off.
    mistral = model_spec(str(write_config(tmp_path / "m", {**LLAMA_3_8B, "model_type": "mistral", "sliding_window": None})))
    assert mistral.num_parameters == model_spec("llama-3-8b").num_parameters  # same shapes, no biases
    assert model_spec(str(write_config(tmp_path / "q", {**QWEN2_7B, "use_sliding_window": True}))).num_layers == 28
