"""The policy registry: its names are the policy classes the package defines, known without importing them."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys

import pytest

from sim.cache import policies
from sim.cache.policies import POLICIES, EvictionPolicy
from sim.config import CacheConfig, TierConfig
from sim.errors import ConfigError
from tests.conftest import ROOT


def _defined_policies() -> dict[str, type[EvictionPolicy]]:
    """Every named policy class in the package's modules, found by importing them all and walking
    EvictionPolicy's subclasses (not through the registry)."""
    for module in pkgutil.iter_modules(policies.__path__):
        importlib.import_module(f"{policies.__name__}.{module.name}")
    found, todo = {}, [EvictionPolicy]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.name and cls.__module__.startswith(f"{policies.__name__}."):
            assert cls.name not in found, f"two classes named {cls.name!r}"
            found[cls.name] = cls
    return found


@pytest.mark.parametrize("config_class", [CacheConfig, TierConfig])
def test_names_validated_are_the_defined_policies(config_class):
    """cache.policy and cache.tiers.<tier>.policy accept exactly the policies the package defines,
    each looked up as its own class: no list of names can drift from the classes."""
    defined = _defined_policies()
    domain = next(f for f in dataclasses.fields(config_class) if f.name == "policy").metadata["domain"]
    assert set(domain.registry()) == set(defined) == set(POLICIES)
    assert all(POLICIES[name] is cls for name, cls in defined.items())


def test_a_policy_not_listed_is_refused_at_registration():
    class Unlisted(EvictionPolicy):
        name = "unlisted"

    with pytest.raises(RuntimeError, match="'unlisted'.*not listed"):
        policies.register(Unlisted)
    assert "unlisted" not in POLICIES


def test_validating_a_policy_name_imports_no_kernel():
    """A config naming policies (and one naming an unknown one) is validated without importing
    numba or any policy module: the names are known up front."""
    code = ("import sys, main\n"
            "from sim.config import load_config\n"
            "from sim.errors import ConfigError\n"
            "load_config(None, sets=['cache.policy=arc', 'cache.tiers.dram.policy=s3fifo'])\n"
            "try:\n"
            "    load_config(None, sets=['cache.policy=nope'])\n"
            "except ConfigError as exc:\n"
            "    assert 'must be one of arc, belady' in str(exc), exc\n"
            "loaded = sorted(m for m in sys.modules if m == 'numba' or m.startswith('sim.cache.policies.'))\n"
            "assert loaded == ['sim.cache.policies.base'], loaded\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_unknown_policy_lists_the_names():
    with pytest.raises(ConfigError, match="valid policies: arc, belady, belady-bypass, fifo, learned, lfu, lru"):
        policies.policy_class("nope")
