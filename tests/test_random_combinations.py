"""Random combinations of valid settings across every mode (hypothesis): each draw must exit 0 with a report that
passes the invariant checker (tests/report_invariants.py), or exit 2 with one line naming a key, flag or file
(README: exit status). An exit 1, a traceback, a hang or a violated invariant is a finding.

Each draw is a tiny run (``--preset smoke``, at most 60 requests) of main.main in-process (as ``run_cli`` does;
a subprocess costs ~5 s of imports a draw). While hunting, several hundred draws of the same generator ran
(reported in the fuzz4 notes); the committed test keeps a small deterministic budget for CI. Per-tier policies
are left out here: each new combination compiles its kernels once (~40 s, README Policy study).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BUNDLED_AZURE, ROOT, SHARED_DATA
from report_invariants import check_report

TRACES = [str(BUNDLED_AZURE)] + [str(SHARED_DATA / "traces" / name) for name in (
    "mooncake_conversation.jsonl", "splitwise_test_trace.csv", "llmservingsim_sharegpt_llama31_8b_300.jsonl")] + [
    str(ROOT / "tests" / "samples" / name) for name in (  # published variants: sessions, chat chains, 2024 Azure
        "azure_llm_2024_1week.csv", "bailian_qwen_blksz_16.jsonl", "burstgpt_3.csv", "mooncake_arxiv.jsonl")]
POLICIES = ["lru", "fifo", "lfu", "arc", "s3fifo", "sieve", "belady"]
ROUTERS = ["round-robin", "least-loaded", "session-affinity", "prefix-aware", "precise-prefix"]
MODES = {"single": [], "pd": ["--pd"], "cluster": ["--cluster"], "cluster-pd": ["--cluster", "--pd"],
         "cache-only": ["--cache-only"], "mrc": ["--mrc"], "trace-stats": ["--trace-stats"]}
MOE = ("qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v2-lite")
MODELS = ["llama-3.1-8b"] * 3 + ["qwen2-7b", "llama-2-7b", "llama-3.3-70b", "llama-3.2-3b", "qwen2.5-7b", *MOE]
GPUS = ["h100-sxm", "h200", "a100-80gb", "rtx4090", "a40", "h100-pcie", "h100-nvl", "a100-40gb", "l40s", "l4", "b200",
        "spec"]  # spec: a GPU spec file (README Configuration: hardware.gpu), drawn by _gpu_spec_file
SPEC_DIR = Path(tempfile.gettempdir()) / "kvsim-random-gpu-specs"
HANG_S = 120  # far above any draw once its kernels are compiled (the hunt's slowest warm draw: ~12 s, --max-rate)


def _gpu_spec_file(draw) -> str:
    """A GPU spec file in gpus.yaml's entry fields with drawn numbers, named by its text (a draw is reproducible
    from its argv, and an edited file never reuses a path gpu_spec cached)."""
    # README: every number from 0.001 to 10^6 of its unit is accepted (the bounds drawn too, 10^6 as 1e6)
    lines = [f"dense_bf16_tflops: {draw(st.sampled_from(['30', '121', '989.4', '2250', '0.001', '1e6']))}",
             f"memory_gib: {draw(st.sampled_from(['16', '24', '80', '192', '1e6']))}",
             f"memory_bandwidth_gbps: {draw(st.sampled_from(['300', '3350', '8000', '0.001', '1e6']))}",
             "link:", f"  kind: {draw(st.sampled_from(['pcie4-x16', 'nvlink4']))}",
             f"  bandwidth_gbps: {draw(st.sampled_from(['24', '370.8', '0.001', '1e6']))}",
             f"  step_latency_us: {draw(st.sampled_from(['3.4', '5.7', '0.001', '1e6']))}"]
    if draw(st.booleans()):
        lines.insert(1, f"dense_fp8_tflops: {draw(st.sampled_from([242.5, 1979]))}")
    text = "\n".join(lines) + "\n"
    SPEC_DIR.mkdir(exist_ok=True)
    path = SPEC_DIR / f"gpu-{hashlib.sha1(text.encode()).hexdigest()[:10]}.yaml"
    if not path.exists():
        path.write_text(text)
    return str(path)


@st.composite
def combinations(draw) -> list[str]:
    """argv of one run: a mode, a workload (a bundled trace or a synthetic kind) and settings from config.yaml."""
    maybe = lambda p: draw(st.floats(0, 1)) < p  # noqa: E731
    mode = draw(st.sampled_from(sorted(MODES)))
    argv = [*MODES[mode], "--preset", "smoke", "--workload-limit", str(draw(st.integers(1, 60)))]
    sets: list[str] = []
    serving = mode not in ("cache-only", "mrc", "trace-stats")
    trace = draw(st.sampled_from([*TRACES, None]))
    if trace:
        argv += ["--workload-trace", trace]
        if "mooncake" in trace and maybe(0.3):
            sets += ["workload.block_mismatch=split", f"serving.block_size={draw(st.sampled_from([16, 64, 256]))}"]
    else:
        sets += [f"workload.synthetic.kind={draw(st.sampled_from(['multi-turn', 'system-prompt', 'rag', 'agentic']))}",
                 f"workload.synthetic.input_tokens_mean={draw(st.sampled_from([16, 200, 1024]))}",
                 f"workload.synthetic.output_tokens_mean={draw(st.sampled_from([1, 8, 100]))}",
                 f"workload.synthetic.rate_rps={draw(st.sampled_from([0.5, 5, 500]))}"]
    if mode in ("single", "pd", "cluster", "cluster-pd", "cache-only"):
        argv += ["--policy", ",".join(draw(st.lists(st.sampled_from(POLICIES), min_size=1, max_size=2, unique=True)))]
    for tier in ("dram", "ssd", "eic"):
        if maybe(0.5):
            sets.append(f"cache.tiers.{tier}.capacity_gib={draw(st.sampled_from([0, 0.0625, 0.25, 1, 4]))}")
    if maybe(0.4):
        sets.append("cache.inclusion=inclusive")
    if maybe(0.25) and "workload.block_mismatch=split" not in sets:
        sets.append(f"serving.block_size={draw(st.sampled_from([1, 16, 64, 512]))}")
    if maybe(0.25):
        sets += [f"workload.range_start={draw(st.sampled_from([0, 0.25, 0.5]))}",
                 f"workload.range_end={draw(st.sampled_from([0.75, 1]))}"]
    if maybe(0.3):
        argv += ["--rate-scale", str(draw(st.sampled_from([0.1, 2, 1000])))]
    if maybe(0.2):
        sets.append(f"workload.arrivals.process={draw(st.sampled_from(['poisson', 'gamma', 'resample']))}")
    if maybe(0.15):
        sets.append(f"workload.max_input_tokens={draw(st.sampled_from([1, 100, 600]))}")
    if mode == "cache-only":
        if maybe(0.3):
            argv += ["--capacity-blocks", str(draw(st.sampled_from([1, 10, 100])))]
        if maybe(0.2):
            sets.append(f"cache.access_semantics={draw(st.sampled_from(['plain', 'prefix']))}")
        if maybe(0.2):
            sets += ["cache.admission=selective_write", f"cache.selective_write_depth={draw(st.sampled_from([1, 3]))}"]
        if maybe(0.2):
            sets.append("cache.prefetch=session")
    if mode == "mrc" and maybe(0.3):
        argv += ["--mrc-sample-rate", str(draw(st.sampled_from([0.1, 0.5])))]
    if serving:
        model = draw(st.sampled_from(MODELS))
        sets.append(f"model={model}")
        if maybe(0.4):
            gpu = draw(st.sampled_from(GPUS))
            sets.append(f"hardware.gpu={_gpu_spec_file(draw) if gpu == 'spec' else gpu}")
        if maybe(0.15):
            sets.append(f"serving.dtype={draw(st.sampled_from(['fp8', 'fp16']))}")
        if maybe(0.3):
            sets.append(f"serving.num_gpu_blocks={draw(st.sampled_from([4, 20, 100, 1000]))}")
        if maybe(0.2):
            sets.append(f"serving.max_model_len={draw(st.sampled_from([256, 2000, 8192]))}")
        if maybe(0.3):
            sets += [f"serving.max_num_batched_tokens={draw(st.sampled_from([256, 2048]))}",
                     f"serving.max_num_seqs={draw(st.sampled_from([1, 4, 256]))}"]
        tp = draw(st.sampled_from([1, 1, 2, 4, 8]))
        sets.append(f"serving.tensor_parallel_size={tp}")
        if tp > 1 and maybe(0.2):
            sets.append(f"hardware.gpu_link_gbps={draw(st.sampled_from([24, 247.2, 900]))}")
            if maybe(0.5):
                sets.append(f"hardware.gpu_link_latency_us={draw(st.sampled_from([0.5, 5.7]))}")
        if model in MOE and maybe(0.5):
            sets.append(f"serving.data_parallel_size={draw(st.sampled_from([2, 4]))}")
        if mode == "single":
            sets.append(f"serving.num_instances={draw(st.sampled_from([1, 2, 4]))}")
        if mode in ("single", "cluster") and maybe(0.5):
            argv += ["--router", ",".join(draw(st.lists(st.sampled_from(ROUTERS), min_size=1, max_size=2, unique=True)))]
        if "pd" in mode:
            sets += [f"pd.num_prefill={draw(st.sampled_from([1, 2]))}", f"pd.num_decode={draw(st.sampled_from([1, 2]))}",
                     f"pd.transfer={draw(st.sampled_from(['push', 'pull', 'layerwise']))}"]
            if maybe(0.3):
                sets.append(f"network.bandwidth_gbps={draw(st.sampled_from([1, 100, 1e6]))}")
        if mode.startswith("cluster"):
            sets += [f"cluster.num_racks={draw(st.sampled_from([1, 2, 3]))}",
                     f"cluster.nodes_per_rack={draw(st.sampled_from([1, 2]))}",
                     f"hardware.gpus_per_node={draw(st.sampled_from([4, 8]))}"]
            if maybe(0.3):
                sets.append(f"cluster.oversubscription={draw(st.sampled_from([1, 16]))}")
        if maybe(0.3):
            sets += [f"slo.ttft_s={draw(st.sampled_from([0.01, 0.5]))}", f"slo.tpot_s={draw(st.sampled_from([0.01, 0.1]))}"]
        if maybe(0.15):
            sets.append(f"cache.tiers.ssd.shared_read_gbps={draw(st.sampled_from([0.1, 7]))}")
        if maybe(0.1):
            sets.append("serving.enable_prefix_caching=false")
    for s in sets:
        argv += ["--set", s]
    return argv


def _names(argv: list[str]) -> list[str]:
    """What a one-line error may name: the flags and files given, each --set key and its last part."""
    names = [a for a in argv if a.startswith("--")] + [a for a in argv if "/" in a]
    for a in argv:
        if "=" in a and not a.startswith("--"):
            key = a.split("=", 1)[0]
            names += [key, key.rsplit(".", 1)[-1]]
    return names


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="draws use the public traces in ../shared/data")
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=combinations())
def test_every_combination_gives_a_consistent_report_or_a_one_line_error(run_cli, tmp_path, argv):
    out = tmp_path / "r.json"
    out.unlink(missing_ok=True)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        status, _, err = run_cli(*argv, "--quiet", "--no-plot", "--report-json", out)
    except _Hang:
        pytest.fail(f"no answer in {HANG_S} s: {' '.join(argv)}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "Traceback" not in err, err[-3000:]
    assert status in (0, 2), (status, err[-3000:], argv)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kvsim: error:"), (err, argv)
        assert (any(name in lines[0] for name in _names(argv)) or re.search(r"'[a-z_]+\.[a-z_.]+'", lines[0])), \
            (lines[0], argv)
        return
    report = json.loads(out.read_text())
    assert check_report(report) == [], argv
