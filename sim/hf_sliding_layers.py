"""Which layers of a Hugging Face config.json slide, and over what window, as vLLM lays them out: ``layer_types`` where
given, else each family's config class's layout (Gemma 2/3, gpt-oss hybrids; Qwen's ``max_window_layers``; a window
on every layer, Mistral's). Read by ``sim.hf_config`` into ``ModelSpec.sliding_window``, ``num_sliding_layers`` and
``last_layer_slides``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.errors import ConfigError, quote
from sim.model_families import Family

if TYPE_CHECKING:
    from sim.hf_config import _Keys as Keys

LAYER_KINDS = ("full_attention", "sliding_attention")  # the layer_types kvsim models (transformers' names)


def sliding_layers(keys: Keys, family: Family, layers: int,
                    context: int) -> tuple[int | None, int | None, bool]:
    """The sliding window where narrower than the context (None: full attention) and how many layers slide (None:
    every layer; ``ModelSpec.num_sliding_layers``) and whether the last of them slides beside full-attention ones
    (``ModelSpec.last_layer_slides``). A model whose every layer slides is served up to its window
    (``ModelSpec.longest_request``). A hybrid family (``Family.hybrid_layout``: Gemma 2/3, gpt-oss) counts the
    sliding layers as vLLM picks them: from layer_types when given (gemma2.py / gemma3.py: ``layer_types[i] ==
    "sliding_attention"``), else the config class's layout (Gemma2Config: layer 0 slides, then every other;
    Gemma3TextConfig: full where (i + 1) % sliding_window_pattern == 0); gpt-oss's vLLM slides i % 2 == 0 whatever
    layer_types says, so a layer_types that disagrees is refused. Layer kinds other than full and sliding attention
    are refused, and in the other families any layer_types but full_attention."""
    config, path = keys.config, keys.path
    layer_types = config.get("layer_types")
    if layer_types is not None and (not isinstance(layer_types, list) or len(layer_types) != layers):
        raise ConfigError(f"model config {path}: key {keys.prefix + 'layer_types'!r} must be a list of one kind per "
                          f"layer ({layers}), got {quote(layer_types)}")
    kinds = layer_types or []
    other = [kind for kind in kinds if kind not in LAYER_KINDS]
    if other:
        raise ConfigError(f"model config {path}: layer_types {quote(other[0])} is not modelled (only "
                          f"{' and '.join(LAYER_KINDS)})")
    if family.hybrid_layout is None:
        if any(kind != "full_attention" for kind in kinds):
            raise ConfigError(f"model config {path}: layer_types other than full_attention are not modelled for "
                              f"model_type {quote(keys.config.get('model_type'))}")
        switch = family.sliding_window_switch
        if switch is not None and not keys.flag(switch):
            return None, None, False
        if config.get("sliding_window", family.sliding_window) is None:
            return None, None, False
        window = keys.positive("sliding_window", family.sliding_window)
        if window >= context or not _every_layer_slides(keys, family, layers, layer_types is not None):
            return None, None, False
        return window, None, False
    if family.hybrid_layout == "alternate":
        layout = [i % 2 == 0 for i in range(layers)]
    else:
        if layer_types is None:
            _not_null(keys, "sliding_window_pattern", "no layer_types", f"{family.sliding_window_pattern} (every "
                      f"{family.sliding_window_pattern}th layer full)")
        pattern = keys.positive("sliding_window_pattern", family.sliding_window_pattern)
        layout = [(i + 1) % pattern != 0 for i in range(layers)]
    sliding = layout
    if layer_types is not None:
        sliding = [kind == "sliding_attention" for kind in kinds]
        if family.layer_types_ignored and sliding != layout:
            raise ConfigError(f"model config {path}: layer_types disagree with vLLM, which slides layers i % 2 == 0 of "
                              f"model_type {quote(keys.config.get('model_type'))} whatever layer_types says")
    count = sum(sliding)
    if config.get("sliding_window", family.sliding_window) is None or count == 0:
        return None, None, False
    window = keys.positive("sliding_window", family.sliding_window)
    if window >= context:  # the sliding layers see the whole context too
        return None, None, False
    hybrid = count < layers
    return window, (count if hybrid else None), hybrid and sliding[-1]


def _not_null(keys: Keys, key: str, beside: str, choices: str) -> None:
    """Refuse ``key`` given as null where transformers' config class lays the layers out by it (a default applies only
    where the key is absent): Qwen2Config's ``i >= max_window_layers`` and Gemma3TextConfig's ``(i + 1) %
    sliding_window_pattern`` raise a TypeError on None, so vLLM, which reads config.json through them, loads no such
    model; kvsim read the class's default in its place."""
    if key in keys.config and keys.config[key] is None:
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + key!r} is null: with {beside} transformers "
                          f"lays the layers out by it, and fails on null; give {choices}, or drop it")


# transformers' Qwen2Config / Qwen3Config / Qwen2MoeConfig default max_window_layers
MAX_WINDOW_LAYERS = 28


def _every_layer_slides(keys: Keys, family: Family, layers: int, given: bool) -> bool:
    """Whether a switched-on window slides every layer (True) or none (False), as transformers lays the layers out
    (``Family.window_layers``): layer_types, when given, are all full attention here (others are refused), so none;
    else max_window_layers picks them. A mix, which vLLM refuses (qwen2.py: max_window_layers must equal
    num_hidden_layers when layer kinds mix), is refused naming the key."""
    if given:
        return False
    rule = family.window_layers
    if rule is None:
        return True
    _not_null(keys, "max_window_layers", "use_sliding_window",
              f"0 (every layer slides) or {layers} (none)" if rule == "from" else "0 (none)")
    cut = keys.count("max_window_layers", MAX_WINDOW_LAYERS)
    sliding = sum(1 for i in range(layers) if (i >= cut if rule == "from" else i % 2 == 0 and i < cut))
    if 0 < sliding < layers:
        choices = f"0 (every layer slides) or {layers} (none)" if rule == "from" else "0 (none)"
        raise ConfigError(f"model config {keys.path}: key {keys.prefix + 'max_window_layers'!r} {cut} with "
                          f"use_sliding_window slides {sliding} of {layers} layers (transformers' "
                          f"{'layers from it on' if rule == 'from' else 'even layers below it'}), a mix vLLM refuses: "
                          f"set it to {choices}, or use_sliding_window false")
    return sliding == layers
