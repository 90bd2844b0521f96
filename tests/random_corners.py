"""The corners a drawn command line reaches (``tests/random_settings.py``'s ``draw_argv``): labels by mode, model
family, GPU, workload and feature, that ``tools/random_runs.py --stats`` counts outcomes under."""

from __future__ import annotations

from pathlib import Path

from tests.random_catalog import GDN, MLA, MOE, OTHER_MOE, SLIDING


def corners(argv: list[str]) -> list[str]:
    """The corners one draw's argv reaches, for ``tools/random_runs.py --stats``: its mode, model family, GPU, workload
    and each feature drawn (a label a corner; a draw is in several)."""
    flags = set(a for a in argv if a.startswith("--"))
    mode = "-".join(m for m in ("cluster", "pd") if f"--{m}" in flags) or next(
        (m for m in ("cache-only", "mrc", "trace-stats") if f"--{m}" in flags), "single")
    sets = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv[:-1]) if a == "--set")
    model = sets.get("model", "")
    model = model.split("/")[-2].rsplit("-", 1)[0] if model.endswith("config.json") else model  # hf_model's folder
    family = ("gdn" if model in {m.removeprefix("hf:") for m in GDN} else "sliding" if model in {
        m.removeprefix("hf:") for m in SLIDING} else "mla" if model in MLA else "other-moe" if model in OTHER_MOE
        else "moe" if model in MOE else "dense" if model else
        "calibration" if "--calibration-profile" in flags else "config-default")
    gpu = sets.get("hardware.gpu", "default")
    trace = argv[argv.index("--workload-trace") + 1] if "--workload-trace" in argv else None
    out = [f"mode:{mode}", f"family:{family}", f"gpu:{'spec-file' if gpu.endswith('.yaml') else gpu}",
           f"workload:{Path(trace).stem if trace else 'synthetic-' + sets.get('workload.synthetic.kind', '?')}"]
    if family in ("gdn", "sliding"):
        out.append(f"model:{model}")
        out.append(f"{family}:mode:{mode}")
    features = {
        "--seeds": "--seeds" in flags, "--max-rate": "--max-rate" in flags, "--router": "--router" in flags,
        "--rate-scale": "--rate-scale" in flags, "learned": "learned" in " ".join(argv),
        "tier-policy": any(k.startswith("cache.tiers.") and k.endswith(".policy") for k in sets),
        "inclusive": sets.get("cache.inclusion") == "inclusive", "block_mismatch=split": "workload.block_mismatch" in sets,
        "serving.block_size": "serving.block_size" in sets, "data_parallel": "serving.data_parallel_size" in sets,
        "pd-role-tp": "pd.prefill_tensor_parallel_size" in sets, "num_gpu_blocks": "serving.num_gpu_blocks" in sets,
        "max_model_len": "serving.max_model_len" in sets, "kv_cache_dtype=fp8": "serving.kv_cache_dtype" in sets,
        "arrivals": "workload.arrivals.process" in sets, "network.lookup": "network.lookup" in sets,
        "layerwise": sets.get("pd.transfer") == "layerwise", "tp>1": sets.get("serving.tensor_parallel_size", "1") != "1",
        "span": spans(mode, argv, sets),
    }
    return out + [f"feature:{name}" for name, on in features.items() if on]


def spans(mode: str, argv: list[str], sets: dict[str, str]) -> bool:
    """Whether one policy spans the draw's tiers (``sim.cache.multitier.spannable``): a cache owning them alone
    (cache-only's without --capacity-blocks, one serving instance's), exclusive, no tier's own policy, a policy besides
    LRU (its span is its per-tier hierarchy) and a lower tier of some capacity (config.yaml: DRAM and SSD have)."""
    one = (mode == "cache-only" and "--capacity-blocks" not in argv) or mode == "single" and (
        sets.get("serving.num_instances") == "1" or "rtx4090_llama31" in " ".join(argv))
    policies = argv[argv.index("--policy") + 1].split(",") if "--policy" in argv else [sets.get("cache.policy", "lru")]
    lower = any(float(sets.get(f"cache.tiers.{t}.capacity_gib", default)) >= 0.004
                for t, default in (("dram", 256), ("ssd", 2048), ("eic", 0)))
    return (one and sets.get("cache.inclusion") != "inclusive" and lower and any(p != "lru" for p in policies)
            and not any(k.startswith("cache.tiers.") and k.endswith(".policy") for k in sets))
