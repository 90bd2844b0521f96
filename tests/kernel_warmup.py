"""The cache engine's kernels compiled once per test session, shared out between pytest-xdist's workers.

On a cold numba cache (a fresh clone: CI) a policy's kernels take ~25-40 s of CPU to compile for cache-only replay
and 40-60 s more for serving (2 cores, measured), and each worker compiled nearly every policy's itself, as its first
test of each kind came: the two workers compiled the same machine code side by side. Here each worker first compiles
the groups (a policy each, tiers with policies of their own, a cluster) no other worker has claimed yet, which numba
saves to its disk cache beside the sources, and loads the others as the other worker saves them. A fresh clone's
`.ci/run` on 2 cores (session 55's machine): 1,023 s before; 927 s with the policies' runs shared out by rote (worker
k the groups k, k + n, ...); 966 s with hooks, per-tier and cluster groups added by rote (one worker's share 370 s,
the other's 229 s); claimed as they come free: see the commit. On a warm cache the runs only load (~5-20 s in all).
Run in a child process: nothing of a run (its trace cache, handlers, notes) stays in the worker.
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
# Each group's cold compile, CPU seconds, one after another in a fresh clone (2 cores, session 56: the first group
# pays too for what all share, ~25 s; belady-bypass reuses belady's kernels and the cluster the policies'). The
# workers claim the costliest first, so the last claims are short and their warm-ups end together: claimed in
# name order they ended 111 s apart (per-tier, the costliest, came ninth)
COLD_CPU_S = {"per-tier": 127, "arc": 64, "s3fifo": 84, "lfu": 70, "sieve": 66, "lru": 65, "belady": 64, "fifo": 53,
              "belady-bypass": 7, "cluster": 4}
UNMEASURED_CPU_S = 60  # a policy registered since: about what each of the others takes
CHILD = """
import contextlib, io, os, sys
import numpy as np
import main
from sim.cache.access import next_use_index
from sim.cache.policies.base import make_policy

for name, hooks, argvs in {groups!r}:
    try:  # (claimed by the first worker to come: the other goes on to the next group)
        os.close(os.open(os.path.join({claims!r}, name), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        continue
    for argv in argvs:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = main.main(argv)
        if status:
            sys.exit(f"kernel warm-up: {{' '.join(argv)}} exited {{status}}")
    if hooks:  # the policy's Python hooks (one compiled entry: engine.hook)
        policy = make_policy(hooks, 2, next_use_index(np.array([1, 2, 1])))
        policy.on_insert(1, 0)
        policy.on_access(1, 1)
        policy.victim(2)
"""


def policies() -> list[str]:
    """Every registered policy a run can replay without a trained model."""
    from sim.cache.policies.base import POLICIES, policy_class

    return [name for name in sorted(POLICIES) if not policy_class(name).needs_predictions]


def groups() -> list[tuple[str, str | None, list[list[str]]]]:
    """The warm-up's groups, costliest first: a name, the policy whose hooks it compiles (or None), its runs'
    arguments."""
    smoke = ["--preset", "smoke", "--no-plot"]
    found = [(policy, policy, [[*(a.format(policy=policy) for a in run), *smoke] for run in RUNS])
             for policy in policies()]
    found += [(name, None, [[*run, *smoke] for run in runs]) for name, runs in (("per-tier", PER_TIER),
                                                                                   ("cluster", CLUSTER))]
    return sorted(found, key=lambda group: -COLD_CPU_S.get(group[0], UNMEASURED_CPU_S))  # (stable: ties by name)


def warm_share(claims: Path) -> None:
    """Compile, in a child process, each group no other worker of this session has claimed yet in the folder
    ``claims`` (one file a group): the workers take groups as they come free, so they end their warm-ups together."""
    claims.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", CHILD.format(groups=groups(), claims=str(claims))], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    if done.returncode:  # (a broken run fails its own tests; the warm-up only says why it stopped)
        print(f"kernel warm-up failed: {done.stderr[-2000:]}", file=sys.stderr)
