"""Serving a Gated DeltaNet hybrid (Qwen3-Next) as vLLM 0.33 does: the raised block size
(platforms/interface.py ``_align_hybrid_block_size``), the groups and the pool's capacity (v1/core/kv_cache_planning.py),
the blocks a request holds (``MambaManager`` with mamba_cache_mode "none"), each worked by hand; and what is refused."""

from __future__ import annotations

import pytest

from sim.config import load_config

STATE = 8192 * 3 * 2 + 32 * 128 * 128 * 2  # one Qwen3-Next GDN layer's state per sequence in bf16: 1,097,728 B
TOKEN = 2 * 2 * 256 * 2  # one token's K and V in one attention layer (2 KV heads of 256, bf16): 2,048 B
RUN = ("model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=2",
       "serving.enable_prefix_caching=false", "serving.block_size=544")


def config(*sets: str):
    return load_config(None, sets=[*RUN, *sets])


def test_vllm_raises_the_block_size_until_a_page_holds_a_state():
    from sim.serving.state_groups import vllm_block_size

    assert STATE == 1_097_728
    # FlashAttention's 16-token alignment: cdiv(1,097,728, 16 × 2,048) = 34 sixteens
    assert vllm_block_size(STATE, TOKEN, 16, 16, 64, prefix_caching=False) == 34 * 16 == 544
    # prefix caching ("align"): a multiple of FlashInfer's 64-token GDN checkpoint too, cdiv(1,097,728, 64 × 2,048) = 9
    assert vllm_block_size(STATE, TOKEN, 16, 16, 64, prefix_caching=True) == 9 * 64 == 576
    assert vllm_block_size(STATE, TOKEN, 16, 16, None, prefix_caching=True) == 544  # no FlashInfer GDN (A100)
    assert vllm_block_size(STATE, TOKEN, 1024, 16, 64, prefix_caching=False) == 1024  # a larger size stays
    # TP 4: the 2 KV heads replicated (1 a rank), the state split in four: cdiv(274,432, 16 × 1,024) = 17 sixteens
    assert vllm_block_size(STATE // 4, TOKEN // 2, 16, 16, 64, prefix_caching=False) == 17 * 16


@pytest.mark.parametrize(("gpu", "tp", "caching", "expected"), [
    ("h100-sxm", 1, False, 544), ("h100-sxm", 1, True, 576), ("h200", 2, False, 544), ("h200", 4, False, 272),
    ("a100-80gb", 4, True, 272)])
def test_the_runs_block_size_is_vllms(gpu, tp, caching, expected):
    from sim.serving.state_groups import required_block_size

    run = config(f"hardware.gpu={gpu}", f"serving.tensor_parallel_size={tp}")
    assert required_block_size(run, 16, caching) == expected


def test_one_attention_and_three_state_groups_share_the_pool():
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes
    from sim.serving.state_groups import state_groups

    groups = state_groups(config())
    # 12 attention and 36 GDN layers: groups of 12, one attention group, three state groups
    assert (groups.group_size, groups.attention_groups, groups.state_groups) == (12, 1, 3)
    page = 544 * TOKEN // 2  # TP 2: one KV head a rank
    assert (groups.page_bytes, groups.state_bytes) == (page, STATE // 2)
    assert kv_block_bytes(config()) == 12 * page
    # H200 at TP 2: half the bf16 weights a GPU; the KV budget (vLLM 0.33's terms: tests/test_memory_profile.py) over 12
    # pages a block (vLLM: available memory // bytes per block)
    from sim.serving.memory_profile import memory_budget, rope_cache_bytes
    from sim.specs import model_spec

    budget = memory_budget(config())
    routers = 48 * 2048 * (512 + 1)  # the routers and shared-expert gates, bf16, whole on each rank (ReplicatedLinear)
    assert budget.weights - rope_cache_bytes(model_spec("qwen3-next-80b-a3b"), "bf16") == \
        (79_674_391_296 - routers) * 2 / 2 + routers * 2
    assert hbm_capacity_blocks(config()) == int(budget.kv_bytes // (12 * page))


class Clock:
    now = 0.0


def test_a_request_holds_its_attention_blocks_and_one_block_per_state_group():
    from sim.serving.block_pool import BlockPool
    from sim.serving.job import Job
    from sim.serving.state_kv_cache_manager import StateKVCacheManager
    from tests.cache_helpers import make_cache

    pool = BlockPool(100, Clock(), shared=False)
    kv = StateKVCacheManager(pool, make_cache("lru", [100], num_blocks=10), 544, False, lambda: 0.0, state_blocks=3)
    job = Job(0, 1000, 100, range(2), 0, target=1000)
    # vLLM's admission gate (scheduler_reserve_full_isl: the whole prompt must fit): cdiv(1,000, 544) = 2 attention
    # blocks and 1 in each state group; a first chunk of 512 tokens alone: 1 and the 3
    assert kv.admission_blocks(job, 512, full_sequence=True) == 2 + 3
    assert kv.admission_blocks(job, 512, full_sequence=False) == 1 + 3
    assert kv.blocks_alone(1100) == 3 + 3
    kv.allocate(job, 1000)
    job.computed = 1000
    assert pool.used == 2 + 3
    assert kv.new_blocks(job, 1088) == 0 and kv.new_blocks(job, 1089) == 1  # the states are held already
    kv.allocate(job, 1089)
    assert pool.used == 3 + 3
    kv.free(job)  # (a preemption frees them all; re-admitted, the states count again)
    assert pool.used == 0 and kv.admission_blocks(job, 1000, full_sequence=False) == 2 + 3


@pytest.mark.parametrize(("sets", "words"), [
    (("serving.enable_prefix_caching=false", "serving.block_size=16"),
     "block size to 544 tokens so that one page holds a Gated DeltaNet state"),
    (("serving.enable_prefix_caching=false", "serving.block_size=544", "hardware.gpu=b200"), "modelled on h100-sxm"),
    (("serving.enable_prefix_caching=false", "serving.block_size=544",
      "serving.disable_hybrid_kv_cache_manager=true"), "hybrid KV-cache manager only"),
])
def test_what_kvsim_does_not_model_is_refused_in_one_line(sets, words, run_cli):
    args = ["--preset", "smoke", "--no-plot", "--quiet", "--set", "model=qwen3-next-80b-a3b", "--set",
            "hardware.gpu=h200", "--set", "serving.tensor_parallel_size=2"]
    for item in sets:
        args += ["--set", item]
    status, _, err = run_cli(*args)
    assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
    assert words in err


@pytest.mark.parametrize(("flags", "words"), [
    (("--pd", "--set", "pd.transfer=layerwise"), "never layer by layer: set pd.transfer=push or pull"),
    (("--cluster", "--pd", "--set", "pd.transfer=layerwise"), "never layer by layer: set pd.transfer=push or pull"),
])
def test_layerwise_transfers_are_refused(flags, words, run_cli):
    args = ["--preset", "smoke", "--no-plot", "--quiet", *flags] + [a for s in RUN for a in ("--set", s)]
    status, _, err = run_cli(*args)
    assert status == 2 and "\n" not in err.strip() and words in err, err


def test_the_block_replay_is_refused():
    """``--cache-only`` replays blocks with no request to follow: a state needs one's computed tokens."""
    from sim.errors import ConfigError
    from sim.serving.state_groups import check_state_model

    for mode in ("single", "pd", "cluster"):
        check_state_model(config(), mode)
    with pytest.raises(ConfigError, match="modelled in the serving modes only, not in mode cache-only"):
        check_state_model(config(), "cache-only")




def _azure(path, requests: int, output: int):
    rows = "".join(f"2023-11-16 18:15:46.{i:03d}0000,1000,{output}\n" for i in range(requests))
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    return path


def _single_instance_run(run_cli, tmp_path, trace, gpu_blocks: int) -> dict:
    import json

    out = tmp_path / f"r{gpu_blocks}.json"
    args = ["--no-plot", "--quiet", "--workload-trace", trace, "--report-json", out, "--set", "serving.num_instances=1",
            "--set", f"serving.num_gpu_blocks={gpu_blocks}"]
    status, _, err = run_cli(*args, *[a for s in RUN for a in ("--set", s)])
    assert status == 0, err
    return json.loads(out.read_text())["runs"][0]["metrics"]


@pytest.mark.parametrize(("gpu_blocks", "together"), [(11, 2), (16, 3), (26, 4)])
def test_admission_counts_each_requests_state_blocks(gpu_blocks, together, run_cli, tmp_path):
    """Four 1,000-token prompts of 50 tokens out at once: each holds cdiv(1,050, 544) = 2 attention blocks and 3
    state blocks, so (num_gpu_blocks - 1 null block) // 5 of them run together (without the states: all four)."""
    metrics = _single_instance_run(run_cli, tmp_path, _azure(tmp_path / "t.csv", 4, 50), gpu_blocks)
    assert metrics["batch"]["unified"]["seqs_per_step"]["max"] == together
    assert metrics["preemptions"] == 0


@pytest.mark.parametrize(("gpu_blocks", "preemptions"), [(11, 1), (12, 1), (13, 0)])
def test_growing_past_a_block_preempts_as_vllm_does(gpu_blocks, preemptions, run_cli, tmp_path):
    """Two 1,000-token prompts of 100 tokens out: both admitted with 2 + 3 blocks each; at token 1,089 each needs a
    third attention block (cdiv(1,089, 544) = 3). With 10 usable blocks the first to get there preempts the other
    (the last to join), which waits (cdiv(1,087, 544) + 3 = 5 > the 4 free) until the first ends; with 11 the second
    preempts itself when its turn comes (6 + 6 > 11); with 12 both grow in place."""
    metrics = _single_instance_run(run_cli, tmp_path, _azure(tmp_path / "t.csv", 2, 100), gpu_blocks)
    assert (metrics["preemptions"], metrics["requests_completed"]) == (preemptions, 2)


def test_a_request_whose_states_leave_it_no_room_is_skipped_at_admission(run_cli, tmp_path):
    """Three 1,000-token prompts, the middle one of 200 tokens out, on 5 usable blocks (num_gpu_blocks 6, less the
    null block). 1,050 tokens hold cdiv(1,050, 544) = 2 attention blocks and 3 state blocks: 5, they run. 1,200 tokens
    need cdiv(1,200, 544) + 3 = 6 blocks, more than the instance has even alone: skipped and counted before the run
    (exceeds_kv_capacity), as a request of a model without states is, not an error once the run is under way."""
    import json

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:46.{i}000000,1000,{output}\n" for i, output in enumerate((50, 200, 50))))
    out = tmp_path / "r.json"
    args = ["--no-plot", "--quiet", "--workload-trace", trace, "--report-json", out, "--set", "serving.num_instances=1",
            "--set", "serving.num_gpu_blocks=6"]
    status, _, err = run_cli(*args, *[a for s in RUN for a in ("--set", s)])
    assert status == 0, err
    report = json.loads(out.read_text())
    assert report["trace"]["skip_reasons"] == {"exceeds_kv_capacity": 1}
    assert report["runs"][0]["metrics"]["requests_completed"] == 2

# ---------------------------------------------------------------- compute: the GDN layers' own cost
H200_PEAK, H200_BW = 989.4e12 * 0.77, 4800e9 * 0.82  # profiles/gpus.yaml, at the roofline's default efficiencies
H200_ATTENTION_PEAK = 989.4e12 * 0.66  # (compute.attention_efficiency null: FlashAttention 3 on Hopper)


def roofline():
    from sim.serving.compute_backend import compute_model

    return compute_model(config())


def decode(seqs: int, kv: int):
    from sim.serving.compute import StepShape

    return StepShape(decode_seqs=seqs, decode_kv_tokens=seqs * kv, decode_kv_max=kv, decode_kv_min=kv)


def test_only_the_twelve_attention_layers_read_kv():
    """Longer contexts cost a decode step only the attention layers' extra KV reads: 12 layers, each reading
    1,024 B a token (TP 2: one KV head of 256 in bf16) and computing 4 × 8 heads × 256 FLOPs a (query, key) pair
    (each layer's attention floor is the same at both lengths)."""
    import math

    model = roofline()

    def attention(kv_tokens: int, seqs: int) -> float:
        return math.hypot(4 * 8 * 256 * kv_tokens / H200_ATTENTION_PEAK, 1024 * (kv_tokens + seqs) / H200_BW)

    seqs = 64
    longer = model.step_time(decode(seqs, 8192)) - model.step_time(decode(seqs, 4096))
    assert longer == pytest.approx(12 * (attention(seqs * 8192, seqs) - attention(seqs * 4096, seqs)), rel=1e-9)


def test_a_gdn_layer_reads_and_writes_each_sequences_state_once_a_step():
    """The token mixer of 64 decodes in one GDN layer at TP 2: their states (548,864 B each a rank) read and
    written, and the recurrent delta rule's 6 × 128 × 128 FLOPs a value head (16 a rank) plus the conv1d's
    2 × 4 × 4,096 channels a rank, per token: memory-bound."""
    import math

    gdn = roofline().gdn
    assert (gdn.layers, gdn.state_bytes) == (36, STATE // 2)
    flops = 64 * (16 * 6 * 128 * 128 + 2 * 4 * 4096)
    traffic = 2 * 64 * STATE // 2
    assert gdn.mixer_time(0, 0, 64, H200_PEAK, H200_BW) == pytest.approx(
        math.hypot(flops / H200_PEAK, traffic / H200_BW), rel=1e-12)
    # a prefill chunk moves its state once whatever its length: a 10-token and a 2,000-token chunk the same bytes
    assert gdn.state_traffic(1) == STATE  # (2 × one rank's half)


def test_a_decode_window_prices_each_step_as_a_single_step():
    model = roofline()
    first, steps = decode(48, 3000), 5
    times = model.decode_times(first, steps)
    singles = [model.step_time(decode(48, 3000 + k)) for k in range(steps)]
    assert times.tolist() == pytest.approx(singles, rel=1e-12)


def test_a_short_serving_run(run_cli, tmp_path):
    """Qwen3-Next on two H200s: it runs, each instance has the blocks of vLLM's budget, and its figures are the
    roofline's."""
    import json

    from sim.serving.memory_profile import memory_budget

    out = tmp_path / "r.json"
    args = ["--preset", "smoke", "--no-plot", "--quiet", "--report-json", out]
    status, _, err = run_cli(*args, *[a for s in RUN for a in ("--set", s)])
    assert status == 0, err
    metrics = json.loads(out.read_text())["runs"][0]["metrics"]
    assert metrics["instances"]["kv_blocks_each"] == int(memory_budget(config()).kv_bytes // (12 * 544 * TOKEN // 2))
    assert metrics["requests_completed"] > 0 and 0 < metrics["tpot_s"]["mean"] < metrics["ttft_s"]["mean"]


def test_a_trace_whose_own_blocks_are_not_the_models_is_refused_naming_the_trace(run_cli, tmp_path):
    """A Mooncake trace's hash ids are 512-token blocks, replayed as the cache's (workload.block_mismatch=trace); vLLM
    raises 512 to 1,024 tokens for Qwen3-Next at TP 2 (a page must hold a state). Whatever serving.block_size says,
    the trace's 512 becomes the run's: the refusal must name the trace's blocks, not ask for a block size the trace
    replaces again (serving.block_size=1024 gave the same message)."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"timestamp": {i}, "input_length": 1000, "output_length": 10, "hash_ids": [{2 * i}, '
                             f'{2 * i + 1}]}}\n' for i in range(3)))
    for size in ("544", "1024", "null"):
        args = ["--no-plot", "--quiet", "--workload-trace", trace, "--set", "serving.num_instances=1",
                *[a for s in RUN for a in ("--set", s)], "--set", f"serving.block_size={size}"]
        status, _, err = run_cli(*args)
        assert status == 2 and "\n" not in err.strip() and "Traceback" not in err, err
        assert "512-token" in err and "set serving.block_size" not in err, err
