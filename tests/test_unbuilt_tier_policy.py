"""A lower tier's ``policy: learned`` where the tier has capacity 0 (never built: ``sim.cache.tiers``): refused the
same way whether a config file or ``--set`` gave it (``sim.mode_settings_rules.learned_tier_policies``), kept in a
sweep some of whose points build the tier, and never asking for a model nothing would use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.cache.access import policies_in_use, uses_learned_policy
from sim.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TIER_0 = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.dram.policy=learned"]
WHY = ("cache.tiers.dram.capacity_gib is 0: there is no dram tier to read it (give the tier a capacity, or drop the "
       "setting)")


def _config_file(tmp_path: Path, **cache: object) -> Path:
    """The bundled config.yaml with these ``cache`` keys (dotted below ``cache``) changed."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for dotted, value in cache.items():
        *path, leaf = dotted.split(".")
        node = config["cache"]
        for part in path:
            node = node[part]
        node[leaf] = value
    out = tmp_path / "config.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def test_an_unbuilt_tiers_policy_is_not_in_use():
    config = load_config(None, sets=TIER_0)
    assert policies_in_use(config, "lru") == ["lru"]  # (it listed learned: the run asked for a model)
    assert not uses_learned_policy(config, ["lru"])
    built = load_config(None, sets=["cache.tiers.dram.capacity_gib=1", "cache.tiers.dram.policy=learned"])
    assert policies_in_use(built, "lru") == ["lru", "learned"]


@pytest.mark.parametrize("mode", [[], ["--cache-only"]], ids=["single", "cache-only"])
def test_a_files_learned_policy_on_a_0_gib_tier_is_refused_as_set_refuses_it(mode, tmp_path, run_cli):
    # the file's run asked for cache.learned_model ("policy 'learned' needs ..."), a model nothing would read
    path = _config_file(tmp_path, **{"tiers.dram.capacity_gib": 0, "tiers.dram.policy": "learned"})
    common = [*mode, "--preset", "smoke", "--no-plot", "--quiet"]
    status_file, _, err_file = run_cli(*common, "--config", path)
    argv = [a for s in TIER_0 for a in ("--set", s)]
    status_set, _, err_set = run_cli(*common, *argv)
    assert (status_file, status_set) == (2, 2), (err_file, err_set)
    assert err_file.strip() == f"kvsim: error: config key 'cache.tiers.dram.policy'=learned: {WHY}"
    assert err_set.strip() == f"kvsim: error: --set cache.tiers.dram.policy: {WHY}"


def _sweep(run_cli, tmp_path: Path, config: Path, axes: dict) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "cache-only", "config": str(config), "axes": axes}))
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-json", tmp_path / "out.json", "--no-plot",
                             "--quiet", "--set", "workload.synthetic.num_requests=300",
                             "--set", "serving.block_size=512")
    return status, err


def test_a_sweep_keeps_a_files_learned_tier_some_point_builds_and_refuses_one_none_does(small_learned_model,
                                                                                      tmp_path, run_cli):
    cache = {"tiers.dram.policy": "learned", "learned_model": str(small_learned_model),
             "allow_train_test_overlap": True, "tiers.hbm.capacity_gib": 1}
    # dram 0 or 1 GiB: the second point's dram tier reads the learned policy, so the sweep runs both
    status, err = _sweep(run_cli, tmp_path, _config_file(tmp_path, **cache),
                         {"cache.tiers.dram.capacity_gib": [0, 1]})
    assert status == 0, err
    # dram 0 at every point: no point builds it, refused before any point runs, naming the first point
    cache["tiers.dram.capacity_gib"] = 0
    status, err = _sweep(run_cli, tmp_path, _config_file(tmp_path, **cache), {"cache.policy": ["lru", "arc"]})
    assert status == 2 and f"point 'lru': config key 'cache.tiers.dram.policy'=learned: {WHY}" in err, err
