"""What a random draw (``tests/random_settings.py``) picks among: the traces, policies, routers, modes, models, GPUs
and calibration profiles it names, the model families its aims and ``tests/random_corners.py``'s labels go by, and
the folder its written files live in (``hf_model``: a published config.json as a model path)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_TRACES = Path(os.environ.get("KVSIM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "traces"  # conftest's
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"
MOONCAKE = SHARED_DATA_TRACES / "mooncake_conversation.jsonl"
TRACES = [str(BUNDLED_AZURE)] + [str(SHARED_DATA_TRACES / name) for name in (
    "mooncake_conversation.jsonl", "splitwise_test_trace.csv", "llmservingsim_sharegpt_llama31_8b_300.jsonl")] + [
    str(ROOT / "tests" / "samples" / name) for name in (  # published variants: sessions, chat chains, 2024 Azure
        "azure_llm_2024_1week.csv", "bailian_qwen_blksz_16.jsonl", "burstgpt_3.csv", "mooncake_arxiv.jsonl")]
POLICIES = ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"]
# per-tier policies (hunt only): a few, so each combination's one-time compile is amortised over many draws
TIER_POLICIES = ["lru", "arc", "s3fifo", "belady"]
ROUTERS = ["round-robin", "least-loaded", "session-affinity", "prefix-aware", "precise-prefix"]
MODES = {"single": [], "pd": ["--pd"], "cluster": ["--cluster"], "cluster-pd": ["--cluster", "--pd"],
         "cache-only": ["--cache-only"], "mrc": ["--mrc"], "trace-stats": ["--trace-stats"]}
LIGHT_MOE = ("qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v2-lite")
LIGHT = ["llama-3.1-8b"] * 3 + ["qwen2-7b", "llama-2-7b", "llama-3.3-70b", "llama-3.2-3b", "qwen2.5-7b", *LIGHT_MOE]
# the heavier parts that found bugs before (profiles/models.yaml names; "hf:" a published config.json written out)
GDN = ("qwen3-next-80b-a3b", "hf:qwen3.5-9b")  # Gated DeltaNet hybrids (tests/linear_attention_configs.py)
SLIDING = ("gemma-2-9b", "gemma-2-27b", "gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "hf:gemma-3-1b",
           "gpt-oss-20b", "gpt-oss-120b")  # sliding-window hybrids (tests/hybrid_configs.py)
MLA = ("deepseek-v2-lite", "deepseek-v2", "deepseek-v3", "kimi-k2")
OTHER_MOE = ("glm-4.5-air", "glm-4.5", "minimax-m2", "qwen1.5-moe-a2.7b", "phi-mini-moe")  # glm_minimax_configs.py
HEAVY = [*GDN, *GDN, *SLIDING, *MLA, *OTHER_MOE, "qwen3-32b", "mixtral-8x7b", "qwen3-30b-a3b"]
MOE = {*LIGHT_MOE, "qwen3-next-80b-a3b", "gpt-oss-20b", "gpt-oss-120b", *MLA, *OTHER_MOE}
HUGE = {"deepseek-v3", "kimi-k2", "glm-4.5", "minimax-m2", "gpt-oss-120b", "deepseek-v2", "qwen3-next-80b-a3b"}
GPUS = ["h100-sxm", "h200", "a100-80gb", "rtx4090", "a40", "h100-pcie", "h100-nvl", "a100-40gb", "l40s", "l4", "b200",
        "spec"]  # spec: a GPU spec file (README Configuration: hardware.gpu), drawn by gpu_spec_file
NEW_GPUS = ["h800", "a800-80gb", "h20", "l40", "a10", "gb200"]  # profiles/gpus.yaml's later entries (hunt only)
# GPUs whose attention alignment a Gated DeltaNet hybrid's block size is modelled on (sim.serving.state_groups
# GPU_ALIGNMENTS: Hopper and Ampere/Ada; Blackwell's backends are not, refused by key)
GDN_GPUS = ["h100-sxm", "h100-pcie", "h100-nvl", "h200", "h800", "h20", "a100-80gb", "a100-40gb", "a800-80gb", "a40",
            "a10", "l40s", "l40", "l4", "rtx4090"]
# traces with block ids of their own (Mooncake hash_ids of 512 tokens, Bailian's of 16): a GDN hybrid's raised block
# size (144 to 1,088 tokens, none dividing 512) is neither, so they are refused beside one (state_groups)
OWN_BLOCK_IDS = ("mooncake", "bailian")
CALIBRATION = ["profiles/rtx4090_llama31_8b_vllm.yaml", "profiles/rtx5090_llama3_8b_pd_study.yaml",
               "profiles/splitwise_a100_eager.yaml", "profiles/vidur_a100_llama3_8b.yaml"]
# hardware.gpus_per_node of the calibration profiles that set one (their files)
PROFILE_NODES = {"rtx4090_llama31_8b_vllm.yaml": 1, "rtx5090_llama3_8b_pd_study.yaml": 4}
WORK = Path(tempfile.gettempdir()) / "kvsim-random"


def hf_model(name: str) -> str:
    """A published config.json (tests/*_configs.py) as a model path."""
    from tests.hybrid_configs import GEMMA_3_1B
    from tests.linear_attention_configs import QWEN3_5_9B_TEXT

    text = json.dumps({"qwen3.5-9b": QWEN3_5_9B_TEXT, "gemma-3-1b": GEMMA_3_1B}[name], indent=2)
    folder = WORK / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "config.json").exists():
        (folder / "tmp.json").write_text(text)
        (folder / "tmp.json").replace(folder / "config.json")
    return str(folder / "config.json")
