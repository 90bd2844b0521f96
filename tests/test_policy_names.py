"""A policy is named in any letter case wherever one is named (``--policy``, ``cache.policy``, a tier's ``policy``,
sweep axes), as GPU and model names are; reports hold the registered, lower-case name."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE


def test_policy_flag_takes_any_case_and_gives_the_registered_names():
    from sim.cli import parse_policies

    assert parse_policies("LRU, Arc,s3FIFO,BELADY") == ["lru", "arc", "s3fifo", "belady"]


def test_one_policy_in_two_cases_is_still_given_twice():
    from sim.cli import parse_policies
    from sim.errors import InputError

    with pytest.raises(InputError, match="'lru' given twice"):
        parse_policies("LRU,lru")


def test_an_unknown_policy_is_still_refused_with_the_valid_names():
    from sim.cli import parse_policies
    from sim.errors import InputError

    with pytest.raises(InputError, match="unknown policy 'LRUU'; valid policies: arc, belady"):
        parse_policies("LRUU")


def test_config_keys_take_any_case_and_hold_the_registered_name():
    from sim.config import load_config

    config = load_config(None, sets=["cache.policy=LRU", "cache.tiers.dram.policy=S3Fifo"])
    assert config.cache.policy == "lru" and config.cache.tiers.dram.policy == "s3fifo"


def test_max_rate_and_seeds_runs_read_the_policy_flag_as_main_does():
    from experiments.sweep import run_options

    args = argparse.Namespace(policy="ARC,Lru", max_rate=True, seeds=None)
    assert run_options(args).policies == ("arc", "lru")


def test_a_sweep_axis_in_capitals_names_its_points_by_the_registered_names(tmp_path):
    from experiments.spec import expand, load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"mode": "cache-only", "workload": {"trace": str(BUNDLED_AZURE)},
                                    "axes": {"cache.policy": ["LRU", "Arc"], "cache.tiers.dram.policy": ["FIFO"]}}))
    points = expand(load_spec(path))
    assert [p.name for p in points] == ["lru/fifo", "arc/fifo"]
    assert points[0].overrides == {"cache.policy": "lru", "cache.tiers.dram.policy": "fifo"}


def test_policy_in_capitals_runs_the_same_replay_under_the_lower_case_name(run_cli, tmp_path):
    reports = []
    for name in ("LRU", "lru"):
        out = tmp_path / f"{name}.json"
        status, _, err = run_cli("--cache-only", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "200",
                                 "--policy", name, "--capacity-blocks", "100", "--report-json", out, "--no-plot",
                                 "--quiet")
        assert status == 0, err
        report = json.loads(out.read_text())
        reports.append((report["runs"], report["config"]["cache"]["policy"]))
    assert reports[0] == reports[1] and reports[0][0][0]["name"] == "lru"
