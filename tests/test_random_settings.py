"""The hunt's generator (tests/random_settings.py, tools/random_runs.py) aims its heavier draws at settings that run:
a Gated DeltaNet hybrid's block size, GPU and trace, weights that fit, and ``--stats``' corners. No draw is run here
(each helper is checked against hand arithmetic; tests/test_random_combinations.py runs the light form's draws)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import random_aims, random_catalog
from tests import random_settings as rs
from tests.random_corners import corners


def test_raised_block_size_is_vllms_for_qwen3_next_on_an_h100():
    # by hand (README Configuration, vLLM _align_hybrid_block_size): a state of 1,097,728 B, a token's K and V in one
    # layer 2 x 2 KV heads x 256 x 2 B = 2,048 B; with prefix caching the kernel is lcm(16, 64) = 64 tokens:
    # 64 x ceil(1,097,728 / (64 x 2,048)) = 64 x 9 = 576; without, 16 x ceil(1,097,728 / (16 x 2,048)) = 16 x 34 = 544
    base = ["model=qwen3-next-80b-a3b", "hardware.gpu=h100-sxm", "serving.tensor_parallel_size=1"]
    assert random_aims.raised_block_size(base) == 576
    assert random_aims.raised_block_size([*base, "serving.enable_prefix_caching=false"]) == 544


def test_holds_weights_by_hand():
    # Llama-3.3-70B: 70.6e9 parameters x 2 B = 141 GB; an H100's 80 GiB x 0.8 = 68.7 GB holds not half (70.6 GB) but
    # a quarter (35.3 GB); an H200's 141 GiB x 0.8 = 121 GB holds half
    assert not random_aims.holds("llama-3.3-70b", "h100-sxm", 2, False)
    assert random_aims.holds("llama-3.3-70b", "h100-sxm", 4, False)
    assert random_aims.holds("llama-3.3-70b", "h200", 2, False)
    assert not random_aims.holds("qwen2-7b", "h100-sxm", 8, False)  # 28 heads: TP 8 does not divide them
    # raised TP first, then a larger GPU
    assert random_aims.holding("llama-3.3-70b", None, 1, 8, False) == (None, 4, False)
    assert random_aims.holding("llama-3.3-70b", "l4", 1, 2, False) == ("h200", 2, False)


def test_corners_name_mode_family_gpu_workload_and_features():
    argv = ["--cluster", "--pd", "--preset", "smoke", "--workload-trace", "/x/burstgpt_3.csv", "--max-rate",
            "--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h20", "--set",
            "pd.prefill_tensor_parallel_size=2", "--set", "serving.tensor_parallel_size=2"]
    assert corners(argv) == ["mode:cluster-pd", "family:gdn", "gpu:h20", "workload:burstgpt_3",
                                "model:qwen3-next-80b-a3b", "gdn:mode:cluster-pd", "feature:--max-rate",
                                "feature:pd-role-tp", "feature:tp>1"]
    assert corners(["--mrc", "--set", "workload.synthetic.kind=rag"])[:4] == [
        "mode:mrc", "family:config-default", "gpu:default", "workload:synthetic-rag"]


@pytest.fixture
def no_training(monkeypatch):
    """Draws that pick the learned policy name a model path without training one (nothing runs here)."""
    monkeypatch.setattr(rs, "learned_model", lambda: "learned-model.txt")


def test_hunt_draws_of_gated_deltanet_hybrids_mostly_aim_at_settings_they_run_with(no_training):
    gdn = [argv for argv in (rs.draw_argv(rs.RngChooser(np.random.default_rng([99, i])), hunt=True)
                             for i in range(1500)) if "family:gdn" in corners(argv)]
    serving = [a for a in gdn if not {"--cache-only", "--mrc", "--trace-stats"} & set(a)]
    assert len(serving) >= 30
    aligned = [a for a in serving if not any(name in " ".join(a) for name in random_catalog.OWN_BLOCK_IDS)
               and not any(f"hardware.gpu={g}" in a for g in ("b200", "gb200", "rtx5090", "rtxpro6000"))
               and "belady" not in a[a.index("--policy") + 1]
               and not any(s.startswith("serving.block_size=") and s not in ("serving.block_size=2048",)
                           and int(s.split("=")[1]) < 144 for s in a)]  # 144: the least raised size (TP 8, Ampere)
    assert len(aligned) >= 0.8 * len(serving)


def test_a_draw_past_its_timeout_is_reported_as_a_hang_not_an_internal_error(monkeypatch):
    """The hunt's alarm raised an Exception inside main.main's command_status, which reported it as an internal error
    (exit 1): a hang read as a traceback."""
    import sys
    import time

    import main
    from sim.command import command_status
    from tests.conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import random_runs

    monkeypatch.setattr(main, "main", lambda argv: command_status("kvsim", lambda: time.sleep(30) or 0))
    status, err, report, seconds = random_runs.run_draw(["--preset", "smoke"], timeout_s=1)
    assert (status, report) == (None, None) and seconds < 10, err
    assert "internal error" not in err
    sys.modules.pop("random_runs", None)


def test_hunt_draws_reach_one_policy_spanning_one_instances_tiers(no_training):
    # one serving instance owns its tiers: one policy spans them (sim.cache.span), a path with takes, frees, resizes
    # and preemptions of its own; 14 of these 600 hunt draws reached it before (31 cache-only's span), 3 of all 45
    # with a top tier small enough for blocks to reach a lower tier
    draws = [rs.draw_argv(rs.RngChooser(np.random.default_rng([4001, i])), hunt=True) for i in range(600)]
    spans = [a for a in draws if "feature:span" in corners(a)]
    single = [a for a in spans if "mode:single" in corners(a)]
    small = [a for a in spans if any(s.startswith(("serving.num_gpu_blocks=", "cache.tiers.hbm.capacity_gib="))
                                     for s in a)]
    assert len(single) >= 30 and len(spans) - len(single) >= 30 and len(small) >= 40, (len(single), len(spans), len(small))
    assert corners(["--preset", "smoke", "--policy", "arc", "--set", "serving.num_instances=1"])[-1] == "feature:span"
    assert "feature:span" not in corners(["--policy", "lru", "--set", "serving.num_instances=1"])  # LRU: per tier
    assert "feature:span" not in corners(["--policy", "arc", "--set", "serving.num_instances=1",
                                          "--set", "cache.inclusion=inclusive"])
