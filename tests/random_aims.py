"""A random draw's aims (``tests/random_settings.py``, hunt draws): settings aimed at what a drawn model or cache
runs with (a policy spanning one cache's tiers, a Gated DeltaNet hybrid's block size and tiers, a sliding-window
hybrid's policies, a GPU and TP that hold the weights), and the draw's ``--set`` list helpers (``get_set``, ``put_set``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.random_catalog import GDN, OWN_BLOCK_IDS, POLICIES, ROOT, TRACES, hf_model

if TYPE_CHECKING:
    from tests.random_settings import Chooser


def aim_span(c: Chooser, mode: str, argv: list[str], sets: list[str]) -> None:
    """A draw whose cache owns its tiers alone (cache-only's, one serving instance's) aimed at one policy spanning them
    (``sim.cache.span``: exclusive tiers of one policy other than LRU, which runs per tier) with traffic below the top
    tier: lower tiers of a few blocks to a few hundred, and a small top tier (HBM sized by GPU memory holds every block
    of a smoke run); the rest kept as drawn."""
    put_set(sets, "cache.inclusion", None)
    for tier in ("dram", "ssd", "eic"):
        put_set(sets, f"cache.tiers.{tier}.policy", None)
    i = argv.index("--policy") + 1
    if argv[i] == "lru" and c.maybe(0.8):
        argv[i] = c.pick([p for p in POLICIES if p != "lru"])
    if c.maybe(0.7):  # (2 MiB a block of Llama-3.1-8B at 16 tokens: 0.0625 GiB is 32 of them)
        put_set(sets, "cache.tiers.dram.capacity_gib", c.pick([0.0625, 0.25, 1]))
        put_set(sets, "cache.tiers.ssd.capacity_gib", c.pick([0, 0.25, 1, 4]))
        if get_set(sets, "cache.tiers.ssd.capacity_gib") == "0":  # (refused beside no SSD: nothing reads it)
            put_set(sets, "cache.tiers.ssd.shared_read_gbps", None)
        if c.maybe(0.3):
            put_set(sets, "cache.tiers.eic.capacity_gib", c.pick([0.0625, 1]))
    if c.maybe(0.7):
        if mode == "cache-only":
            put_set(sets, "cache.tiers.hbm.capacity_gib", c.pick([0.0625, 0.25, 1]))
        else:
            put_set(sets, "serving.num_gpu_blocks", c.pick([100, 300, 1000]))


def get_set(sets: list[str], key: str) -> str | None:
    """The value a draw's ``--set``s give ``key`` last (None: not set)."""
    return next((s.split("=", 1)[1] for s in reversed(sets) if s.split("=", 1)[0] == key), None)


def put_set(sets: list[str], key: str, value: object | None) -> None:
    """Set ``key`` to ``value`` in a draw's ``--set``s (None: drop it)."""
    sets[:] = [s for s in sets if s.split("=", 1)[0] != key] + ([f"{key}={value}"] if value is not None else [])


def _without_policies(c: Chooser, argv: list[str], sets: list[str], dropped: set[str]) -> None:
    """The draw's ``--policy`` list less ``dropped`` (an emptied one becomes one of the rest)."""
    if "--policy" not in argv:
        return
    i = argv.index("--policy") + 1
    kept = [p for p in argv[i].split(",") if p not in dropped]
    argv[i] = ",".join(kept or [c.pick([p for p in POLICIES if p not in dropped])])
    if "learned" in dropped:
        put_set(sets, "cache.learned_model", None)


def holds(model: str, gpu: str | None, tp: int, fp8: bool) -> bool:
    """Whether TP ``tp`` divides ``model``'s heads as TP must and a GPU's share of its weights (bf16, or ``fp8``) leaves
    room for KV blocks: at most 80% of the GPU's memory (None: config.yaml's h100-sxm), data parallelism aside."""
    from sim.specs import gpu_spec, model_spec

    spec = model_spec(hf_model(model[3:]) if model.startswith("hf:") else model)
    if spec.num_attention_heads % tp or (spec.num_kv_heads % tp and tp % spec.num_kv_heads):
        return False
    return spec.weight_bytes_per_gpu(1 if fp8 else 2, tp) <= 0.8 * gpu_spec(gpu or "h100-sxm").memory_bytes


def holding(model: str, gpu: str | None, tp: int, limit: int, fp8: bool) -> tuple[str | None, int, bool]:
    """A GPU, a TP (at least the drawn ``tp``, at most ``limit``) and whether FP8 weights are needed, such that
    ``model`` fits (``holds``), from the drawn ones: TP raised first, then a larger GPU (one a Gated DeltaNet hybrid's
    block size is modelled on for one), then FP8 weights; as drawn where none does."""
    larger = ["h200", "h20", "h100-nvl"] if model in GDN else ["h200", "b200", "gb200"]
    for weights_fp8 in (fp8, True):
        for g in [gpu, *larger]:
            for t in (t for t in (1, 2, 4, 8) if tp <= t <= limit):
                if holds(model, g, t, weights_fp8):
                    return g, t, weights_fp8 and not fp8
    return gpu, tp, False


def aim_gdn(c: Chooser, argv: list[str], sets: list[str], trace: str | None) -> str | None:
    """A Gated DeltaNet hybrid's draw aimed at settings it runs with (sim.serving.state_groups): a trace without
    block ids of its own, vLLM's raised block size (null; or set to it; or a larger one, which vLLM keeps), policies
    that do not rank by next use (its states' next uses are unknown; per-tier ones too), lower tiers that hold a block
    of its (15 to 100 MB). Returns the trace."""
    if trace and any(name in trace for name in OWN_BLOCK_IDS):
        trace = c.pick([t for t in TRACES if not any(name in t for name in OWN_BLOCK_IDS)])
        argv[argv.index("--workload-trace") + 1] = trace
    put_set(sets, "workload.block_mismatch", None)
    put_set(sets, "serving.block_size", None)
    kind = c.pick(["vllm's", "vllm's", "vllm's", "set", "larger"])
    if kind == "larger":
        put_set(sets, "serving.block_size", 2048)  # above every raised size (1,088 at most: Qwen3.5 at TP 2, FP8 KV)
    elif kind == "set":
        put_set(sets, "serving.block_size", raised_block_size(sets))
    _without_policies(c, argv, sets, {"belady", "learned"})
    for tier in ("dram", "ssd", "eic"):
        if get_set(sets, f"cache.tiers.{tier}.policy") == "belady":
            put_set(sets, f"cache.tiers.{tier}.policy", c.pick(["lru", "arc", "s3fifo"]))
        size = get_set(sets, f"cache.tiers.{tier}.capacity_gib")
        if size and 0 < float(size) < 0.25:  # a block is 15 to 100 MB: a few MiB hold none (refused by key)
            put_set(sets, f"cache.tiers.{tier}.capacity_gib", c.pick([0.25, 1, 4]))
    return trace


def raised_block_size(sets: list[str]) -> int | None:
    """The block size vLLM raises a Gated DeltaNet hybrid's to under the draw's settings (state_groups'
    ``required_block_size``); None where they do not resolve."""
    from sim.config import load_config
    from sim.errors import ConfigError
    from sim.serving.state_groups import required_block_size

    keys = ("model", "hardware.", "serving.")
    resolved = [f"model={hf_model(s[len('model=hf:'):])}" if s.startswith("model=hf:") else s for s in sets
                if s.startswith(keys) and not s.startswith("serving.block_size")]
    try:
        return required_block_size(load_config(ROOT / "config.yaml", preset="smoke", sets=resolved, rules=False))
    except (ConfigError, ValueError):
        return None


def aim_sliding(c: Chooser, argv: list[str], sets: list[str]) -> None:
    """A sliding-window hybrid's draw aimed at settings it runs with: policies that rank by next use (Belady, the
    learned one) beside vLLM's hybrid KV-cache manager only with it off (its sliding copies' next uses are unknown)."""
    policies = argv[argv.index("--policy") + 1].split(",") if "--policy" in argv else []
    tiers = [tier for tier in ("dram", "ssd", "eic") if get_set(sets, f"cache.tiers.{tier}.policy") == "belady"]
    if {"belady", "learned"} & set(policies) or tiers:
        if c.maybe(0.5):
            put_set(sets, "serving.disable_hybrid_kv_cache_manager", "true")
        else:
            _without_policies(c, argv, sets, {"belady", "learned"})
            for tier in tiers:
                put_set(sets, f"cache.tiers.{tier}.policy", c.pick(["lru", "arc", "s3fifo"]))
