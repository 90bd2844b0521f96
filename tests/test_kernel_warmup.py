"""The test session's kernel warm-up (tests/kernel_warmup.py) covers every policy once, in an order that wastes none."""

from __future__ import annotations

from tests.kernel_warmup import COLD_CPU_S, groups, policies


def test_every_replayable_policy_is_warmed_once_with_the_tiers_and_cluster_groups():
    names = [name for name, _, _ in groups()]
    assert sorted(names) == sorted([*policies(), "per-tier", "cluster"])
    assert "learned" not in names  # (needs a trained model: its tests compile its kernels)


def test_groups_that_reuse_anothers_kernels_come_after_it():
    # belady-bypass runs on belady's kernels and the cluster on the policies': claimed first, a worker would compile
    # them while the other worker compiled the same
    names = [name for name, _, _ in groups()]
    assert names.index("belady") < names.index("belady-bypass")
    assert names[-1] == "cluster"
    assert names[0] == max(COLD_CPU_S, key=COLD_CPU_S.get)
