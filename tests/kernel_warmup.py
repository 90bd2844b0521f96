"""The cache engine's kernels compiled for every policy once per test session, split between pytest-xdist's workers.

On a cold numba cache (a fresh clone: CI) each policy's kernels take ~25-60 s of CPU to compile for cache-only
replay and as much again for serving (measured on 2 cores), and every worker compiled nearly all of them itself, as
its first test of each kind came: both workers compiled the same machine code side by side, ~800 s of CPU each. Here
worker k of n compiles the policies k, k + n, ... first thing (numba saves each to its disk cache, beside the sources),
so each compiles its share and loads the rest as the other saves it. On a warm cache the runs only load (~2 s a
policy). Run in a child process: nothing of a run (its trace cache, handlers, notes) stays in the worker.
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
CHILD = """
import contextlib, io, sys
import main
for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main.main(argv)
    if status:
        sys.exit(f"kernel warm-up: {{' '.join(argv)}} exited {{status}}")
"""


def policies() -> list[str]:
    """Every registered policy a run can replay without a trained model."""
    from sim.cache.policies.base import POLICIES, policy_class

    return [name for name in sorted(POLICIES) if not policy_class(name).needs_predictions]


def warm_share(worker: int, workers: int) -> None:
    """Compile worker ``worker``'s share of the policies' kernels (of ``workers``), in a child process."""
    argvs = [[*(a.format(policy=policy) for a in run), "--preset", "smoke", "--no-plot"]
             for policy in policies()[worker::workers] for run in RUNS]
    if not argvs:
        return
    done = subprocess.run([sys.executable, "-c", CHILD.format(argvs=argvs)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    if done.returncode:  # (a broken run fails its own tests; the warm-up only says why it stopped)
        print(f"kernel warm-up failed: {done.stderr[-2000:]}", file=sys.stderr)
