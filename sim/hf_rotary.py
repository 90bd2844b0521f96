"""How much of each attention head a config.json's rotary embedding turns (``ModelSpec.rotary_dim``), as vLLM 0.33
computes it: the rotary cos/sin cache it loads with the weights is max positions × that width
(``sim.serving.memory_profile.rope_cache_bytes``).

vLLM (model_executor/layers/rotary_embedding/__init__.py ``get_rope``) turns int(head_size × partial_rotary_factor)
values of each head, the factor from the config's rope_parameters, where transformers 5 (``standardize_rope_params``)
puts the config's partial_rotary_factor (vLLM's ``patch_rope_parameters`` also takes it as rotary_pct or
rotary_emb_fraction, in that order) and its config classes their defaults (Qwen3NextConfig and Qwen3_5TextConfig 0.25,
Glm4MoeConfig and PhiConfig 0.5: ``Family.partial_rotary_factor``); a factor outside (0, 1] is vLLM's ValueError.
MiniMax-M2 gives rotary_dim instead (minimax_m2.py: factor rotary_dim / head_dim unless rope_parameters has one:
``Family.rotary_dim_key``). A model whose layers build several caches (Gemma 3's two kinds of layers, a sparse-attention
indexer's) or one of another length or dtype lists them in ``ModelSpec.rope_caches`` (``sim.rope_caches``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.errors import ConfigError, quote

if TYPE_CHECKING:
    from sim.hf_config import _Keys
    from sim.model_families import Family

FACTOR_KEYS = ("partial_rotary_factor", "rotary_pct", "rotary_emb_fraction")  # vLLM getattr_iter's order


def rotary_dim(keys: _Keys, family: Family, head_dim: int) -> int | None:
    """The rotated width of each head, None where it is all of ``head_dim`` (every value turns)."""
    config = keys.config
    named = next((k for k in FACTOR_KEYS if config.get(k) is not None), None)
    rope = config.get("rope_parameters")
    if named is not None:
        key, factor = keys.prefix + named, config[named]
    elif isinstance(rope, dict) and rope.get("partial_rotary_factor") is not None:
        key, factor = keys.prefix + "rope_parameters.partial_rotary_factor", rope["partial_rotary_factor"]
    elif family.rotary_dim_key is not None and config.get(family.rotary_dim_key) is not None:
        key, width = keys.prefix + family.rotary_dim_key, config[family.rotary_dim_key]
        if isinstance(width, bool) or not isinstance(width, int) or not 0 < width <= head_dim:
            raise ConfigError(f"model config {keys.path}: key {key!r} must be an integer from 1 to head_dim "
                              f"{head_dim}, got {quote(width)}")
        factor = width / head_dim
    else:  # the family's own factor: the width follows from head_dim alone
        key, factor = keys.prefix + family.head_dim_key, family.partial_rotary_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ConfigError(f"model config {keys.path}: key {key!r} must be a number above 0 and at most 1 (the share "
                          f"of each head the rotary embedding turns), got {quote(factor)}")
    width = int(head_dim * factor)
    if width < 2 or width % 2:
        raise ConfigError(f"model config {keys.path}: key {key!r} turns {width} of the {head_dim} values of each head "
                          f"(int({head_dim} x {factor})): a rotary embedding turns pairs of values, an even number")
    return None if width == head_dim else width
