"""The cache engine's kernels compiled once per test session, split between pytest-xdist's workers.

On a cold numba cache (a fresh clone: CI) a policy's kernels take ~25-40 s of CPU to compile for cache-only replay
and 40-60 s more for serving (2 cores, measured), and each worker compiled nearly every policy's itself, as its first
test of each kind came: the two workers compiled the same machine code side by side. Here worker k of n first
compiles groups k, k + n, ... (a policy each, and tiers with policies of their own), which numba saves to its disk
cache beside the sources, and loads the other groups as the other worker saves them: a fresh clone's `.ci/run` took
1,023 s before, 927 s with the policies' runs alone (session 55, this machine). On a warm cache the runs only load
(~5-15 s a worker). Run in a child process: nothing of a run (its trace cache, handlers, notes) stays in the worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the runs that compile a policy's kernels: cache-only replay over the tiers (a prompt's blocks each looked up, or its
# longest cached prefix), over HBM alone, and serving (the admission's lookups, holds and releases)
RUNS = (["--cache-only", "--policy", "{policy}"],
        ["--cache-only", "--policy", "{policy}", "--set", "cache.access_semantics=prefix"],
        ["--cache-only", "--policy", "{policy}", "--set", "cache.tiers.dram.capacity_gib=0", "--set",
         "cache.tiers.ssd.capacity_gib=0", "--set", "cache.tiers.eic.capacity_gib=0"],
        ["--set", "cache.policy={policy}"])
# tiers each with a policy of its own share one arena type whatever the policies (its kernels: one group more)
PER_TIER = (["--cache-only", "--policy", "lru", "--set", "cache.tiers.dram.policy=fifo"],
            ["--set", "cache.tiers.dram.policy=fifo"])
CLUSTER = (["--cluster"],)  # (the racks' fetches and routers: test_cluster's first test compiled them, 50 s in CI)
CHILD = """
import contextlib, io, sys
import numpy as np
import main
from sim.cache.access import next_use_index
from sim.cache.policies.base import make_policy

for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main.main(argv)
    if status:
        sys.exit(f"kernel warm-up: {{' '.join(argv)}} exited {{status}}")
for name in {policies!r}:  # a policy's Python hooks (one compiled entry: engine.hook)
    policy = make_policy(name, 2, next_use_index(np.array([1, 2, 1])))
    policy.on_insert(1, 0)
    policy.on_access(1, 1)
    policy.victim(2)
"""


def policies() -> list[str]:
    """Every registered policy a run can replay without a trained model."""
    from sim.cache.policies.base import POLICIES, policy_class

    return [name for name in sorted(POLICIES) if not policy_class(name).needs_predictions]


def warm_share(worker: int, workers: int) -> None:
    """Compile worker ``worker``'s share of the kernels (of ``workers``: groups k, k + n, ...), in a child process."""
    groups = [(policy, [[a.format(policy=policy) for a in run] for run in RUNS]) for policy in policies()]
    groups += [(None, [list(run) for run in runs]) for runs in (PER_TIER, CLUSTER)]
    share = groups[worker::workers]
    argvs = [[*run, "--preset", "smoke", "--no-plot"] for _, runs in share for run in runs]
    hooks = [policy for policy, _ in share if policy is not None]
    if not argvs:
        return
    done = subprocess.run([sys.executable, "-c", CHILD.format(argvs=argvs, policies=hooks)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    if done.returncode:  # (a broken run fails its own tests; the warm-up only says why it stopped)
        print(f"kernel warm-up failed: {done.stderr[-2000:]}", file=sys.stderr)
