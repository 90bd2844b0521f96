"""A test helper (not a product feature): random valid command lines across every mode, shared by
tests/test_random_combinations.py (a few seeded draws, the CI budget) and tools/random_runs.py (a seeded hunt of many
draws). A draw's choices come from a numpy Generator seeded with (seed, index), so a finding of either is one command
line that ``python tools/random_runs.py --seed S --only I`` draws again.

``draw_argv(chooser, hunt=...)`` returns the argv of one tiny run (``--preset smoke``, at most 60 requests), which
tests/run_outcome.py's ``judge`` judges (and tests/random_corners.py's ``corners`` labels, for ``--stats``). Settings
that are refused by key are drawn rarely (a refusal is cheap and says little). ``hunt=True`` adds what costs too much
for CI: per-tier policies (each new combination compiles its kernels once, ~40 s, README Policy study), the learned
policy (a model trained once per machine), and more draws of ``--max-rate`` and ``--seeds``. The names drawn among are
tests/random_catalog.py's; the hunt's aims at settings that run, tests/random_aims.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import Protocol, Sequence, TypeVar

from tests.random_aims import aim_gdn, aim_sliding, aim_span, get_set, holding, holds, put_set
from tests.random_catalog import (
    CALIBRATION,
    GDN,
    GDN_GPUS,
    GPUS,
    HEAVY,
    HUGE,
    LIGHT,
    MODES,
    MOE,
    MOONCAKE,
    NEW_GPUS,
    POLICIES,
    PROFILE_NODES,
    ROOT,
    ROUTERS,
    SLIDING,
    TIER_POLICIES,
    TRACES,
    WORK,
    hf_model,
)

T = TypeVar("T")


class Chooser(Protocol):
    """The choices a draw makes (deterministic given its seed)."""

    def pick(self, options: Sequence[T]) -> T: ...

    def maybe(self, p: float) -> bool: ...

    def integer(self, lo: int, hi: int) -> int: ...

    def subset(self, options: Sequence[T], lo: int, hi: int) -> list[T]: ...


class RngChooser:
    """Choices from a seeded numpy Generator."""

    def __init__(self, rng) -> None:
        self.rng = rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def maybe(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def subset(self, options, lo: int, hi: int):
        n = self.integer(lo, min(hi, len(options)))
        return [options[i] for i in self.rng.permutation(len(options))[:n]]




def _written(name: str, text: str, suffix: str) -> str:
    """A file under WORK named by its text: a draw is reproducible from its argv, and an edited file never reuses a
    path a cache keyed by path holds."""
    WORK.mkdir(exist_ok=True)
    path = WORK / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


LINK_GBPS = {"nvlink4": ["24", "370.8", "0.001", "450"], "pcie4-x16": ["24", "32", "0.001", "16"]}  # to its line rate


def gpu_spec_file(c: Chooser) -> str:
    """A GPU spec file in gpus.yaml's entry fields with drawn numbers."""
    # README: every number from 0.001 to 10^6 of its unit is accepted (the bounds drawn too, 10^6 as 1e6), but a link
    # past its kind's line rate (pcie4-x16: 32 GB/s a direction, nvlink4: 450) and an FP8 peak below the BF16 one
    bf16 = c.pick(['30', '121', '989.4', '2250', '0.001', '1e6'])
    lines = [f"dense_bf16_tflops: {bf16}",
             f"memory_gib: {c.pick(['16', '24', '80', '192', '1e6'])}",
             f"memory_bandwidth_gbps: {c.pick(['300', '3350', '8000', '0.001', '1e6'])}",
             "link:", f"  kind: {(kind := c.pick(['pcie4-x16', 'nvlink4']))}",
             f"  bandwidth_gbps: {c.pick(LINK_GBPS[kind])}",
             f"  step_latency_us: {c.pick(['3.4', '5.7', '0.001', '1e6'])}"]
    if c.maybe(0.5):  # (FP8 twice BF16, as every datasheet has it; at most 10^6)
        lines.insert(1, f"dense_fp8_tflops: {min(float(bf16) * c.pick([2.0, 2.0246]), 1e6):g}")
    return _written("gpu", "\n".join(lines) + "\n", ".yaml")


def learned_model() -> str:
    """A learned-policy model trained once (per code and trace) on the later half of the Mooncake trace, at its
    512-token blocks: draws judge it on the trace's first requests (learned/README.md: no train/test overlap)."""
    from learned.train import main as train_main

    path = WORK / f"learned-later-half-{hashlib.sha1((ROOT / 'learned' / 'train.py').read_bytes()).hexdigest()[:10]}.txt"
    if not path.exists() or not Path(f"{path}.json").exists():
        WORK.mkdir(exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = train_main(["--workload-trace", str(MOONCAKE), "--out", str(path), "--set", "serving.block_size=512",
                           "--range", "0.5:1", "--rounds", "10", "--max-rows", "20000"])
        assert status == 0, status
    return str(path)


def draw_argv(c: Chooser, *, hunt: bool = False) -> list[str]:
    """argv of one run: a mode, a workload (a bundled trace or a synthetic kind) and settings from config.yaml."""
    mode = c.pick(sorted(MODES))
    argv = [*MODES[mode], "--preset", "smoke", "--workload-limit", str(c.integer(1, 60))]
    sets: list[str] = []
    serving = mode not in ("cache-only", "mrc", "trace-stats")
    learned = hunt and mode in ("cache-only", "single", "pd") and c.maybe(0.08)
    trace = str(MOONCAKE) if learned else c.pick([*TRACES, None])
    if trace:
        argv += ["--workload-trace", trace]
        if "mooncake" in trace and not learned and c.maybe(0.3):
            sets += ["workload.block_mismatch=split", f"serving.block_size={c.pick([16, 64, 256])}"]
    else:
        sets += [f"workload.synthetic.kind={c.pick(['multi-turn', 'system-prompt', 'rag', 'agentic'])}",
                 f"workload.synthetic.input_tokens_mean={c.pick([16, 200, 1024])}",
                 f"workload.synthetic.output_tokens_mean={c.pick([1, 8, 100])}",
                 f"workload.synthetic.rate_rps={c.pick([0.5, 5, 500])}"]
        if c.maybe(0.2) and (not hunt or get_set(sets, "workload.synthetic.kind") in ("multi-turn", "agentic")
                             or c.maybe(0.1)):
            # (refused beside another kind: it starts sessions)
            sets.append(f"workload.synthetic.start={c.pick(['steady', 'empty'])}")
    if mode in ("single", "pd", "cluster", "cluster-pd", "cache-only"):
        policies = c.subset(POLICIES, 1, 2)
        if learned:  # judged on the trace's first requests, the model trained on its later half
            policies = [*policies[:1], "learned"]
            sets.append(f"cache.learned_model={learned_model()}")
        argv += ["--policy", ",".join(policies)]
    one_tier = mode == "cache-only" and c.maybe(0.3)  # --capacity-blocks: one tier of that many blocks
    # the tiers' settings, read by every mode but --trace-stats and --mrc without --policy (refused there: drawn rarely)
    tiers = not one_tier and (mode not in ("trace-stats", "mrc") or c.maybe(0.1))
    for tier in ("dram", "ssd", "eic"):
        size = None
        if tiers and c.maybe(0.5):
            # tiny: a few blocks (4 MiB: 2 of Llama-3.1-8B's 16-token blocks, none of larger ones: refused by key;
            # 1e-6 GiB holds no block of any model), then room for the workload
            size = c.pick([0, 0.0625, 0.25, 1, 4, 0.004, 0.01, 0.02, 64] + [1e-6] * c.maybe(0.1))
            sets.append(f"cache.tiers.{tier}.capacity_gib={size}")
        if hunt and tiers and size != 0 and (size or tier != "eic") and c.maybe(0.15):  # 0 GiB reads no policy
            sets.append(f"cache.tiers.{tier}.policy={c.pick(TIER_POLICIES)}")
        if hunt and tier == "eic" and size and c.maybe(0.3):  # a Mooncake store's distinct pages (0 GiB: unread)
            sets.append("cache.tiers.eic.layout=distinct")
    if tiers and c.maybe(0.4):
        sets.append("cache.inclusion=inclusive")
    if c.maybe(0.25) and not any(s.startswith("serving.block_size") for s in sets) and not learned:
        # (the hunt's serving modes: 1 rarely, no vLLM attention backend takes it: sim.serving.attention_backend)
        sizes = [16, 64, 512, *[1] * c.maybe(0.1)] if hunt and serving else [1, 16, 64, 512]
        sets.append(f"serving.block_size={c.pick(sizes)}")
    if c.maybe(0.25) and not learned:
        sets += [f"workload.range_start={c.pick([0, 0.25, 0.5])}", f"workload.range_end={c.pick([0.75, 1])}"]
    clock = mode not in ("cache-only", "mrc") or learned  # the cache-only replay has no clock (refused; rarely drawn)
    if c.maybe(0.3 if clock else 0.03):
        argv += ["--rate-scale", str(c.pick([0.1, 2, 1000]))]
    if c.maybe(0.2 if clock else 0.02):
        sets.append(f"workload.arrivals.process={c.pick(['poisson', 'gamma', 'resample'])}")
    if c.maybe(0.15):
        sets.append(f"workload.max_input_tokens={c.pick([1, 100, 600])}")
    if mode == "cache-only":
        if one_tier:
            argv += ["--capacity-blocks", str(c.pick([1, 10, 100]))]
        if c.maybe(0.2):
            sets.append(f"cache.access_semantics={c.pick(['plain', 'prefix'])}")
        if c.maybe(0.2):
            sets += ["cache.admission=selective_write", f"cache.selective_write_depth={c.pick([1, 3])}"]
        if c.maybe(0.2):
            sets.append("cache.prefetch=session")
        if c.maybe(0.2):
            sets.append(f"model={c.pick([*LIGHT, *HEAVY])}")  # the model sizes a block's bytes
    if mode == "mrc" and c.maybe(0.3):
        argv += ["--mrc-sample-rate", str(c.pick([0.1, 0.5]))]
    model = get_set(sets, "model")
    if hunt and mode == "cache-only" and model and c.maybe(0.9):  # hybrids replay blocks with every layer's KV only
        if model in GDN:
            put_set(sets, "model", c.pick([*LIGHT, *SLIDING]))
        if get_set(sets, "model") in SLIDING:
            sets.append("serving.disable_hybrid_kv_cache_manager=true")
    if serving:
        model = _serving(c, mode, argv, sets, hunt=hunt)
    owned = (mode == "cache-only" and not one_tier) or (mode == "single" and (
        get_set(sets, "serving.num_instances") == "1" or "rtx4090_llama31" in " ".join(argv)))  # (its node: one GPU)
    if hunt and owned and c.maybe(0.8):
        aim_span(c, mode, argv, sets)
    if serving:
        if hunt and model in GDN and c.maybe(0.9):
            trace = aim_gdn(c, argv, sets, trace)
        if hunt and model in SLIDING and c.maybe(0.9):
            aim_sliding(c, argv, sets)
    # --seeds: refused where the seed draws nothing (a trace at its own arrival times)
    seeded = not trace or any(s.startswith("workload.arrivals.process") for s in sets)
    if mode in ("single", "pd", "cluster", "cluster-pd") and c.maybe((0.25 if hunt else 0.08) if seeded else 0.02):
        argv += ["--seeds", str(c.pick([2, 3]))]
    if mode in ("single", "pd", "cluster", "cluster-pd") and c.maybe(0.15 if hunt else 0.05):
        argv.append("--max-rate")
        if hunt and "--rate-scale" in argv and c.maybe(0.9):  # refused beside it: the search sets the rate
            i = argv.index("--rate-scale")
            del argv[i:i + 2]
        if not any(s.startswith("slo.") for s in sets):
            sets += [f"slo.ttft_s={c.pick([0.05, 0.5, 5])}", f"slo.tpot_s={c.pick([0.02, 0.1])}"]
    for s in sets:
        argv += ["--set", s]
    return [a if not a.startswith("model=hf:") else f"model={hf_model(a[len('model=hf:'):])}" for a in argv]


def _serving(c: Chooser, mode: str, argv: list[str], sets: list[str], hunt: bool = False) -> str | None:
    """The serving settings of one draw: a calibration profile, or a model on a GPU with its parallelism, the GPU
    counts drawn to fit one node (a layout that does not is refused by key, so it is drawn rarely); returns the model
    drawn (None: the config's or the profile's). ``hunt``: GPUs and TPs drawn to hold the model's weights, the later
    GPUs of profiles/gpus.yaml, a Gated DeltaNet hybrid on a GPU its block size is modelled on, PD counts that fit a
    node (a rack in cluster mode), each most of the time (the rest still reach the refusals)."""
    profile = c.pick(CALIBRATION) if c.maybe(0.12) else None
    if profile:
        argv += ["--calibration-profile", str(ROOT / profile)]
    heavy = not profile and c.maybe(0.5)
    model = None if profile else c.pick(HEAVY if heavy else LIGHT)
    if model:
        sets.append(f"model={model}")
    gpu = None
    if not profile and c.maybe(0.4):
        gpu = c.pick(GPUS + NEW_GPUS if hunt else GPUS)
        if model in HUGE and c.maybe(0.7):
            gpu = c.pick(["h200", "b200", "gb200"] if hunt else ["h200", "b200"])
        if hunt and model in GDN and gpu not in GDN_GPUS and c.maybe(0.9):
            gpu = c.pick(GDN_GPUS)
        sets.append(f"hardware.gpu={gpu_spec_file(c) if gpu == 'spec' else gpu}")
    node = 8  # hardware.gpus_per_node (config.yaml; a profile's own where it sets one)
    if hunt and profile:
        node = PROFILE_NODES.get(Path(profile).name, node)
        if mode == "pd" and node < 2 and c.maybe(0.9):  # a prefill and a decode instance need two GPUs
            node = 2
            sets.append(f"hardware.gpus_per_node={node}")
    rack = None  # GPUs of a rack (cluster mode)
    if mode.startswith("cluster"):
        node = c.pick([4, 8])
        racks = c.pick([1, 2, 3])
        nodes = c.pick([1, 2])
        rack = nodes * node
        sets += [f"cluster.num_racks={racks}", f"cluster.nodes_per_rack={nodes}",
                 f"hardware.gpus_per_node={node}"]
        if racks > 1 and c.maybe(0.3):  # refused with one rack: no traffic crosses an uplink
            sets.append(f"cluster.oversubscription={c.pick([1, 16])}")
    fits = lambda n: n <= node or c.maybe(0.02 if hunt else 0.05)  # noqa: E731
    if c.maybe(0.15):
        sets.append(f"serving.dtype={c.pick(['fp8', 'fp16'])}")
    if c.maybe(0.3):
        # (the hunt's: more room, 4 and 20 blocks hold no request of most traces: refused, "no valid requests")
        sets.append(f"serving.num_gpu_blocks={c.pick([4, 20, 100, 1000, 1000, 5000] if hunt else [4, 20, 100, 1000])}")
    if c.maybe(0.2):
        sets.append(f"serving.max_model_len={c.pick([256, 600, 2000, 8192, 32768] + [8192, 32768] * hunt)}")
    if c.maybe(0.3):
        sets += [f"serving.max_num_batched_tokens={c.pick([256, 2048])}",
                 f"serving.max_num_seqs={c.pick([1, 4, 256])}"]
    tp, dp = 1, 1
    if not profile:
        tp = c.pick([8, 8, 4, 2]) if model in HUGE and c.maybe(0.7) else c.pick([1, 1, 2, 4, 8])
        tp = tp if fits(tp) else 1
        # a prefill and a decode instance on one node (on one rack in cluster mode)
        pair = {"pd": node, "cluster-pd": rack}.get(mode)
        if hunt and pair and 2 * tp > pair and c.maybe(0.9):
            tp = pair // 2
        if hunt and model and not (gpu == "spec") and c.maybe(0.9):
            limit = min(node, pair // 2) if pair else node
            held = holding(model, gpu, tp, limit, get_set(sets, "serving.dtype") == "fp8")
            if held[0] != gpu:
                put_set(sets, "hardware.gpu", held[0])
            if held[2]:
                put_set(sets, "serving.dtype", "fp8")
            gpu, tp = held[:2]
        sets.append(f"serving.tensor_parallel_size={tp}")
        if tp > 1 and c.maybe(0.2):
            sets.append(f"hardware.gpu_link_gbps={c.pick([24, 247.2, 900])}")
            if c.maybe(0.5):
                sets.append(f"hardware.gpu_link_latency_us={c.pick([0.5, 5.7])}")
        dps = [d for d in (2, 4) if fits(d * tp * (2 if hunt and mode == "pd" else 1))]  # (PD: a group a role)
        if dps and (model in MOE or c.maybe(0.03)) and c.maybe(0.5):  # refused on a dense model
            dp = c.pick(dps)
            sets.append(f"serving.data_parallel_size={dp}")
            if c.maybe(0.4):
                sets.append("serving.enable_expert_parallel=false")
    if heavy:
        if model in SLIDING and c.maybe(0.3):
            sets.append("serving.disable_hybrid_kv_cache_manager=true")
        if model in ("gemma-3-4b", "gemma-3-12b", "gemma-3-27b") and c.maybe(0.3):
            sets.append("serving.language_model_only=true")
        if c.maybe(0.15):
            sets.append("serving.kv_cache_dtype=fp8")
    if c.maybe(0.15):
        sets.append(c.pick(["serving.enforce_eager=true", "serving.async_scheduling=false", "serving.all_reduce=nccl",
                            "workload.outputs_in_next_turn=false", "serving.scheduler_reserve_full_isl=false"]))
    instances = 1 if profile and "rtx4090" in profile else None  # that profile's node is one GPU
    if mode == "single" and instances is None:  # instances form data-parallel groups of D
        instances = c.pick([n * dp for n in (1, 2, 4) if fits(n * tp * dp)] or [dp])
        if hunt and dp == 1 and c.maybe(0.5):  # one instance: one policy spans its tiers (``aim_span``)
            instances = 1
        sets.append(f"serving.num_instances={instances}")
    one = mode == "single" and instances == 1
    if mode in ("single", "cluster") and c.maybe(0.5 if not one else 0.05):  # one instance: refused
        argv += ["--router", ",".join(c.subset(ROUTERS, 1, 2))]
    if "pd" in mode:
        ptp = dtp = tp
        # a Gated DeltaNet hybrid's roles take serving.tensor_parallel_size (its block size follows it) and send
        # after the prefill (NIXL): other settings are refused by key, drawn rarely
        gdn = model in GDN
        if not profile and c.maybe(0.4 if heavy else 0.15) and (not gdn or c.maybe(0.1)):
            roles = [1, 2, 4, 8]
            if hunt and model and gpu != "spec" and c.maybe(0.9):  # TPs that hold the weights
                roles = [t for t in roles if holds(model, gpu, t, get_set(sets, "serving.dtype") == "fp8")] or roles
            ptp, dtp = c.pick(roles), c.pick(roles)
            if fits(max(ptp, dtp) * dp):
                sets += [f"pd.prefill_tensor_parallel_size={ptp}", f"pd.decode_tensor_parallel_size={dtp}"]
                if c.maybe(0.9):  # refused beside both roles' TPs: it sets neither
                    sets.remove(f"serving.tensor_parallel_size={tp}")
            else:
                ptp = dtp = tp
        counts = [1, 2, 3]
        # single node: prefill x its TP + decode x its TP GPUs of one node (per rack in cluster mode: any count)
        per_node = mode == "pd"
        # each role's instances form data-parallel groups of D
        if hunt and not per_node and rack and c.maybe(0.9):  # a rack's pools, each from a whole group (topology)
            fits = lambda n: n <= rack  # noqa: E731
            per_node = True
        prefill = dp * c.pick([n for n in counts if not per_node or fits(n * ptp * dp + dtp * dp)] or [1])
        decode = dp * c.pick([n for n in counts if not per_node or fits(
            (-(-prefill * ptp // (dp * dtp)) * dp * dtp if hunt else prefill * ptp) + n * dtp * dp)] or [1])
        sets += [f"pd.num_prefill={prefill}", f"pd.num_decode={decode}",
                 f"pd.transfer={c.pick(['push', 'pull'] if gdn and c.maybe(0.9) else ['push', 'pull', 'layerwise'])}"]
        if decode > 1 and c.maybe(0.3):  # (one decode instance: refused as unread)
            sets.append("pd.decode_router=prefix-aware")
        if c.maybe(0.3):
            sets.append(f"network.bandwidth_gbps={c.pick([1, 100, 1e6])}")
        if c.maybe(0.1):
            sets.append("network.lookup=" + str(ROOT / "profiles" / "ns3_tcp_p2p_100gbps_mtu9000.json"))
    if c.maybe(0.3):
        sets += [f"slo.ttft_s={c.pick([0.01, 0.5])}", f"slo.tpot_s={c.pick([0.01, 0.1])}"]
    if c.maybe(0.15):
        sets.append(f"cache.tiers.ssd.shared_read_gbps={c.pick([0.1, 7])}")
    if c.maybe(0.03):  # refused beside any cache setting: nothing is cached
        sets.append("serving.enable_prefix_caching=false")
    return model
