"""A benchmark given a bad flag is exit 2 with argparse's message naming it, before any timed work
(each was a traceback, exit 1, or a long run: bench_mrc --sizes 0 timed a 5 M-access stream)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

CASES = [
    ("bench_cache.py", ["--requests", "0"], "--requests must be at least 1, got 0"),  # ConfigError traceback
    ("bench_cache.py", ["--repeat", "0"], "--repeat must be at least 1, got 0"),  # IndexError after the runs
    ("bench_cluster.py", ["--requests", "-1"], "--requests must be at least 1, got -1"),
    ("bench_cluster.py", ["--router", "nope", "--requests", "10"], "--router: config key 'cluster.router'"),
    ("bench_kernel_floor.py", ["--repeat", "0"], "--repeat must be at least 1, got 0"),  # UnboundLocalError
    ("bench_common_runs.py", ["--repeat", "0"], "--repeat must be at least 1, got 0"),
    ("bench_common_runs.py", ["--runs", "readme,nope"], "--runs: unknown run(s) nope"),
    ("bench_mrc.py", ["--sizes", "x"], "--sizes: expected comma-separated positive integers"),  # ValueError
    ("bench_mrc.py", ["--sizes", "0"], "--sizes: every length must be at least 1"),
    # a missing trace, an unknown workload or probe: exit 1 (sys.exit with a message), bench_mrc after its timed runs,
    # bench_learned after the workloads named before it
    ("bench_mrc.py", ["--sizes", "10", "--trace", "/nonexistent.jsonl"], "trace not found: /nonexistent.jsonl"),
    ("bench_cache.py", ["--trace", "/nonexistent.jsonl"], "trace not found: /nonexistent.jsonl"),
    ("bench_learned.py", ["--workloads", "mooncake,nope", "--peers", ""], "unknown workloads ['nope']"),
    ("probe_learned.py", ["nope"], "unknown probes ['nope']"),
    # bench_learned_heldout: a workload or seed named twice ran twice (minutes each); a negative seed failed only after
    # the wrong models were trained
    # a comma list of none ran nothing and printed an empty table (bench_cache) or nothing (bench_learned), exit 0
    ("bench_cache.py", ["--policies", ",", "--no-e2e", "--no-cold"], "--policies: none given; choose from lru"),
    ("bench_learned.py", ["--workloads", ""], "--workloads: none given, and no --trace; choose from mooncake"),
    ("bench_learned_heldout.py", ["--workloads", "rag,rag"], "--workloads names 'rag' twice"),
    ("bench_learned_heldout.py", ["--workloads", "rag", "--seeds", "2,2"], "--seeds names 2 twice"),
    ("bench_learned_heldout.py", ["--workloads", "rag", "--seeds=-1"], "--seeds: a seed is an integer 0 or more"),
    # a seed past int64 (the config key's domain) failed the same way, the first judged run refusing it
    ("bench_learned_heldout.py", ["--workloads", "rag", "--seeds", "2,9223372036854775808"],
     "--seeds: a seed fits in a 64-bit integer (config key 'seed'), got 9223372036854775808"),
    ("aiconfigurator_all_reduce.py", ["/nonexistent"], "/nonexistent: not a folder"),
    # an empty path was read as '.', the working folder (type=Path): a folder is no trace, checkout or run
    ("bench_cache.py", ["--trace", ""], "argument --trace: empty path"),
    ("bench_serving.py", ["--compare", ""], "argument --compare: empty path"),
    ("replay_vllm.py", ["--run", ""], "argument --run: empty path"),
    ("aiconfigurator_all_reduce.py", [""], "argument data: empty path"),
]


@pytest.mark.parametrize("script, argv, named", CASES, ids=[f"{s}{' '.join(a)}" for s, a, _ in CASES])
def test_a_bad_benchmark_flag_is_exit_2(script, argv, named):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert f"{script}: error: {named}" in done.stderr, done.stderr
