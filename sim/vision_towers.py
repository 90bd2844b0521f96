"""The vision towers of multimodal config.json files, as vLLM 0.33 loads and profiles them beside the language model:
Gemma 3's SigLIP encoder and projector (``gemma3_mm.py``, ``siglip.py``) and Qwen3.5's Qwen3-VL vision transformer and
patch merger (``qwen3_5.py`` builds ``qwen3_vl.py``'s ``Qwen3_VisionTransformer``).

kvsim's compute model serves text only, but a tower costs memory twice: its weights load with the model's (in the
model dtype: vLLM builds the tower under the same default dtype; split over the TP ranks as the language model's,
``mm_encoder_tp_mode`` "weights", vLLM's default: q/k/v, fc1 and the merger's fc1 column-parallel, the output
projections row-parallel, while the patch and position embeddings, the LayerNorms, the row-parallel layers' biases and
Gemma's projector stay whole on every rank: ``VisionTower.replicated_parameters``), and vLLM's profile run
(``GPUModelRunner.profile_run``) first runs the encoder on dummy images of the largest size the processor makes, as
many as the encoder budget holds (``MultiModalBudget``: ``max(max_num_batched_tokens, tokens_per_item) //
tokens_per_item`` items, vllm/multimodal/encoder_budget.py), and keeps their pixels and outputs while the language
model's dummy forward runs (``encoder_peak``, ``held_bytes``). vLLM's ``--language-model-only``
(``serving.language_model_only``) builds no tower (``_mark_tower_model``: every modality's limit 0) and profiles none.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from sim.errors import ConfigError, quote

# Qwen3.5's published preprocessor_config.json (size.longest_edge, in pixels; the same as Qwen3-VL's): the largest
# image its processor makes, 4,096 × 4,096. kvsim reads config.json only; vLLM's profile takes this file's value
# (Qwen2VLProcessingInfo.get_image_size_with_most_features). Its video_preprocessor_config.json's longest_edge,
# 25,165,824 over temporal_patch_size 2 frames, gives 12,288 tokens a video, fewer than an image's 16,384: vLLM
# profiles with images (MultiModalBudget.get_modality_with_max_tokens).
QWEN3_5_MAX_IMAGE_PIXELS = 16_777_216
MAX_ASPECT_RATIO = 200  # Qwen2-VL's processor refuses images more oblong than this (get_image_size_with_most_features)
ENCODER_MAX_ITEMS_PER_PROMPT = 999  # vLLM's limit_mm_per_prompt default per modality (MultiModalConfig)
QWEN3_VL_ROPE_POSITIONS = 8192  # the vision rotary embedding's cache (Qwen3_VisionTransformer: get_rope max_position)
# transformers' Gemma3Config mm_tokens_per_image; Qwen3_5VisionConfig's defaults for the keys a vision_config may
# leave out (configuration_qwen3_5.py, transformers 5.25; Qwen3_5MoeVisionConfig's are the same)
GEMMA3_TOKENS_PER_IMAGE = 256
QWEN3_VL_DEFAULTS = {"in_channels": 3, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                     "num_position_embeddings": 2304}
SIGLIP_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size")
QWEN3_VL_REQUIRED = ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size")


@dataclass(frozen=True, slots=True)
class VisionTower:
    """A multimodal model's vision tower and projector: their weights, and the shapes its profile pass needs."""

    parameters: int  # the tower's and its projector's (merger's) parameters, counted in ModelSpec.num_parameters
    replicated_parameters: int  # of them, those every TP rank holds whole
    hidden_size: int
    intermediate_size: int
    num_heads: int
    patch_values: int  # pixel values one patch is fed (channels × patch² × frames a patch)
    patches_per_item: int  # patches of the largest image the processor makes
    tokens_per_item: int  # the language model's tokens (encoder outputs) for that image
    output_width: int  # values per output token (the text hidden size × (1 + Qwen3-VL's deepstack levels))
    position_values: int = 0  # values per patch kept through the encoder (Qwen3-VL: positions and rotary cos/sin)
    rope_cache_values: int = 0  # the tower's rotary cos/sin cache, a buffer loaded with the weights (Qwen3-VL)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"vision_tower.{field.name} must be a non-negative integer (got {value!r})")
        if self.replicated_parameters > self.parameters:
            raise ConfigError("vision_tower.replicated_parameters must not exceed vision_tower.parameters")

    def items_per_batch(self, max_num_batched_tokens: int, max_num_seqs: int, max_model_len: int) -> int:
        """Images of the profile pass: those the encoder budget holds (min of vLLM's encoder compute budget and cache
        size, each max(max_num_batched_tokens, tokens_per_item) by default), at most max_num_seqs requests' worth of
        max(1, min(999, max_model_len // tokens_per_item)) each, at least one (MultiModalBudget._get_max_items)."""
        per_item = self.tokens_per_item
        per_prompt = max(1, min(ENCODER_MAX_ITEMS_PER_PROMPT, max_model_len // per_item))
        return max(1, min(max(max_num_batched_tokens, per_item) // per_item, max_num_seqs * per_prompt))

    def encoder_peak(self, items: int, tp: int, act: int) -> int:
        """The most activation bytes live at once on one TP rank while the encoder runs on ``items`` images, the way
        ``sim.serving.memory_profile.forward_peak`` counts a decoder layer: the pixels and the per-patch positions
        kept for the whole pass, and the larger of a block's two stages, attention (the residual, the normed input,
        q/k/v and the output, the heads split over TP) and MLP (the residual, the normed input, fc1's output and the
        activation's, the width split over TP). Each patch's values in the model dtype (``act``)."""
        h = self.hidden_size
        heads = max(1, self.num_heads // tp)
        attention = 2 * h + 4 * heads * (h // self.num_heads)
        mlp = 2 * h + 2 * (self.intermediate_size // tp)
        per_patch = self.patch_values + self.position_values + max(attention, mlp)
        return items * self.patches_per_item * per_patch * act

    def held_bytes(self, items: int, act: int) -> int:
        """What the profile run keeps while the language model's dummy forward and the sampler run: the dummy images'
        pixels (profile_run's batched inputs) and the encoder's outputs (its encoder cache), in the model dtype."""
        return items * (self.patches_per_item * self.patch_values + self.tokens_per_item * self.output_width) * act


def as_vision_tower(value: Any, model: str) -> VisionTower | None:
    """A ``ModelSpec.vision_tower`` as given (a mapping, from profiles/models.yaml) made a ``VisionTower``."""
    if value is None or isinstance(value, VisionTower):
        return value
    fields = {f.name for f in dataclasses.fields(VisionTower)}
    if not isinstance(value, dict) or not set(value) <= fields:
        raise ConfigError(f"model {model!r}: vision_tower must be a mapping of {', '.join(sorted(fields))} "
                          f"(got {quote(value)})")
    return VisionTower(**value)


def without_vision_tower(model: Any) -> Any:
    """``model`` (a ``ModelSpec``) as vLLM's ``--language-model-only`` loads it: no tower, no tower weights."""
    tower = model.vision_tower
    if tower is None:
        return model
    return dataclasses.replace(model, vision_tower=None, num_parameters=model.num_parameters - tower.parameters)


def siglip_tower(top: Any, vision: Any, text_hidden: int) -> VisionTower:
    """Gemma 3's vision tower and projector (vLLM gemma3_mm.py ``Gemma3ForConditionalGeneration``: siglip.py
    ``SiglipVisionModel``, ``Gemma3MultiModalProjector``; ``top`` and ``vision``: ``sim.hf_config._Keys`` of the
    config and its vision_config). SigLIP (``SiglipVisionEmbeddings``, ``SiglipEncoderLayer``): a patch embedding (a
    Conv2d num_channels -> hidden over patch_size² pixels, with bias), a position embedding per patch ((image_size //
    patch_size)²), per layer two LayerNorms (weight and bias), q/k/v/out projections and fc1/fc2 with biases, a final
    LayerNorm; no pooling head (vision_use_head false, as Gemma 3's configs give it; a head is refused). The
    projector: a vision hidden × text hidden matrix (mm_input_projection_weight, an nn.Parameter whole on every rank)
    and an RMSNorm over the vision hidden (mm_soft_emb_norm). An image is one 896² crop (pan-and-scan is off by
    default), mm_tokens_per_image tokens of the text hidden size."""
    if vision.config.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise ConfigError(f"model config {vision.path}: key 'vision_config.model_type' must be 'siglip_vision_model', "
                          f"got {quote(vision.config.get('model_type'))}")
    if vision.flag("vision_use_head", True):
        raise ConfigError(f"model config {vision.path}: vision_config.vision_use_head true (SigLIP's pooling head, "
                          "absent or true by SiglipVisionConfig's default) is not modelled: Gemma 3's vision tower has "
                          "none (give vision_use_head false)")
    hidden, width, layers, image, patch = (vision.positive(k) for k in SIGLIP_REQUIRED)
    # transformers SiglipVisionConfig defaults (configuration_siglip.py): num_channels 3, num_attention_heads 12
    channels, heads = vision.positive("num_channels", 3), vision.positive("num_attention_heads", 12)
    if patch > image:
        raise ConfigError(f"model config {vision.path}: vision_config.patch_size {patch} exceeds image_size {image}")
    _check_heads(vision, hidden, heads, "num_attention_heads")
    patches = (image // patch) ** 2
    embeddings = channels * patch * patch * hidden + hidden + patches * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden * width + width + hidden + 2 * 2 * hidden
    projector = hidden * text_hidden + hidden
    # whole on every rank: the embeddings, per layer the two LayerNorms and out_proj's and fc2's biases, the final
    # LayerNorm, the projector
    replicated = embeddings + layers * 6 * hidden + 2 * hidden + projector
    return VisionTower(embeddings + layers * layer + 2 * hidden + projector, replicated, hidden, width, heads,
                       channels * patch * patch, patches, top.positive("mm_tokens_per_image", GEMMA3_TOKENS_PER_IMAGE),
                       text_hidden)


def qwen3_vl_tower(top: Any, vision: Any, text_hidden: int) -> VisionTower:
    """Qwen3.5's vision transformer (vLLM qwen3_vl.py ``Qwen3_VisionTransformer``, built by qwen3_5.py's
    ``Qwen3_5ForConditionalGeneration`` and its MoE sibling): a patch embedding (a Conv3d in_channels -> hidden over
    temporal_patch_size × patch_size² pixels, with bias), a learned position embedding (num_position_embeddings ×
    hidden, interpolated to each image), depth blocks of two LayerNorms (weight and bias), qkv and proj with biases
    (``Qwen2_5_VisionAttention``; rotary positions, no parameters) and an MLP linear_fc1/linear_fc2 with biases, then
    the patch merger: a LayerNorm over hidden, linear_fc1 (hidden × m² square, m the spatial_merge_size) and
    linear_fc2 (to out_hidden_size) with biases; one more merger (its LayerNorm over hidden × m²) per
    deepstack_visual_indexes entry (Qwen3-VL's deepstack; Qwen3.5's published files give an empty list,
    transformers' Qwen3.5 has none). An image is the processor's largest (``QWEN3_5_MAX_IMAGE_PIXELS``): patches of
    temporal_patch_size frames, m² of them a token."""
    model_type = top.config.get("model_type")
    names = (model_type, f"{model_type}_vision", None)  # published: the model's; transformers renames it *_vision
    if vision.config.get("model_type") not in names:
        raise ConfigError(f"model config {vision.path}: key 'vision_config.model_type' must be one of "
                          f"{', '.join(repr(n) for n in names[:2])}, got {quote(vision.config.get('model_type'))}")
    depth, hidden, width, heads, out = (vision.positive(k) for k in QWEN3_VL_REQUIRED)
    channels, patch, merge, frames, positions = (vision.positive(k, v) for k, v in QWEN3_VL_DEFAULTS.items())
    _check_heads(vision, hidden, heads, "num_heads")
    if out != text_hidden:
        raise ConfigError(f"model config {vision.path}: vision_config.out_hidden_size {out} must equal "
                          f"text_config.hidden_size {text_hidden} (the merger's tokens enter the language model)")
    deepstack = vision.config.get("deepstack_visual_indexes") or []
    if not isinstance(deepstack, list) or len(set(deepstack)) != len(deepstack) or any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth for i in deepstack):
        raise ConfigError(f"model config {vision.path}: key 'vision_config.deepstack_visual_indexes' must be a list of "
                          f"distinct block indices below depth {depth}, got {quote(deepstack)}")
    unit = merge * merge
    embeddings = channels * frames * patch * patch * hidden + hidden + positions * hidden
    block = 2 * 2 * hidden + (3 * hidden * hidden + 3 * hidden) + (hidden * hidden + hidden) \
        + (hidden * width + width) + (width * hidden + hidden)

    def merger(norm: int) -> int:  # Qwen3_VisionPatchMerger: its LayerNorm, linear_fc1, linear_fc2
        return 2 * norm + (hidden * unit) ** 2 + hidden * unit + hidden * unit * out + out

    mergers = merger(hidden) + len(deepstack) * merger(hidden * unit)
    # whole on every rank: the embeddings, per block the LayerNorms and proj's and linear_fc2's biases, each
    # merger's LayerNorm and linear_fc2 bias
    replicated = embeddings + depth * 6 * hidden + 2 * hidden + out + len(deepstack) * (2 * hidden * unit + out)
    tokens = _largest_image_tokens(QWEN3_5_MAX_IMAGE_PIXELS, patch * merge)
    head_dim = hidden // heads
    return VisionTower(embeddings + depth * block + mergers, replicated, hidden, width, heads,
                       channels * frames * patch * patch, tokens * unit, tokens, out * (1 + len(deepstack)),
                       position_values=hidden + head_dim, rope_cache_values=QWEN3_VL_ROPE_POSITIONS * (head_dim // 2))


def _check_heads(vision: Any, hidden: int, heads: int, key: str) -> None:
    if hidden % heads:
        raise ConfigError(f"model config {vision.path}: vision_config.hidden_size {hidden} is not a multiple of "
                          f"vision_config.{key} {heads}")


def _largest_image_tokens(max_pixels: int, unit: int) -> int:
    """Tokens of the image with the most (vLLM Qwen2VLProcessingInfo.get_image_size_with_most_features): the most
    unit × unit tiles max_pixels holds, fewer where no factor pair h × w of them has w / h ≤ ``MAX_ASPECT_RATIO``."""
    for tokens in range(max_pixels // (unit * unit), 0, -1):
        short = next(d for d in range(math.isqrt(tokens), 0, -1) if tokens % d == 0)
        if tokens // short / short <= MAX_ASPECT_RATIO:
            return tokens
    raise ConfigError(f"no image of {max_pixels} pixels holds a {unit} x {unit} tile")


VISION_TOWERS = {"siglip": siglip_tower, "qwen3_vl": qwen3_vl_tower}  # Family.vision_tower -> its reader
