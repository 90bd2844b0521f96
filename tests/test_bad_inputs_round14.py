"""Bad-input round 14: the planner's price file (profiles/prices.yaml), read as every other YAML file of kvsim's.

A user who edits the bundled prices (README: costs come from profiles/prices.yaml; prices move fast) writes numbers
as in any config file: ``1e-1`` is a number there (plain ``yaml.safe_load``, YAML 1.1, read it as the string '1e-1'
and the plan was blamed for it); a syntax error in it is one line naming the file, not a traceback."""

from __future__ import annotations

import pytest

import experiments.prices as prices_module
import main
from tests.conftest import ROOT

PLAN = """workload: {{trace: {trace}}}
target:
  slo: {{ttft_s: 0.3, attainment: 0.99}}
  rate_rps: 40
search:
  gpu: [h100-sxm]
  gpus: [1]
"""


@pytest.fixture
def price_file(tmp_path, monkeypatch):
    """A copy of the bundled price file in tmp_path/profiles, read in its place; returns a function that rewrites
    one line of it."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    bundled = (ROOT / "profiles" / "prices.yaml").read_text(encoding="utf-8")
    monkeypatch.setattr(prices_module, "PROFILES_DIR", folder)

    def write(old: str, new: str) -> None:
        assert old in bundled
        (folder / "prices.yaml").write_text(bundled.replace(old, new), encoding="utf-8")

    return write


def test_a_price_in_exponent_form_is_a_number(price_file):
    """DRAM at 1e1 USD/GiB (YAML 1.2 and kvsim's loader: the number 10.0) is 10 over 5 years of 8,766 h:
    10 / 43,830 USD per GiB-hour (hand computation)."""
    price_file("usd_per_gib: 6.25", "usd_per_gib: 1e1")
    prices = prices_module.load_prices({}, source="plan p.yaml")
    assert prices.gib_hour("dram") == pytest.approx(10 / (5 * 8766))


@pytest.mark.parametrize("old, new, names", [
    ("usd_per_gib: 6.25", "usd_per_gib: -1", ("prices.yaml", "tiers.dram.usd_per_gib", "-1")),
    ("usd_per_gib: 6.25", "usd_per_gib: [", ("prices.yaml", "line")),
    ("amortization_years: 5", "amortization_years: 5\namortization_years: 6", ("prices.yaml", "amortization_years")),
])
def test_a_bad_price_file_is_one_line_naming_it_not_the_plan(price_file, tmp_path, capsys, old, new, names):
    """The error is in the price file: the message names it (the plan was named, or a YAML error escaped as a
    traceback, exit 1), exit 2 before any run."""
    price_file(old, new)
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN.format(trace=ROOT / "trace" / "data" / "azure_conv_2023.csv"), encoding="utf-8")
    status = main.main(["--plan", str(plan), "--workload-limit", "20", "--jobs", "1", "--quiet", "--no-plot",
                        "--report-json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert status == 2, err[-2000:]
    assert "\n" not in err and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)
    assert "plan " + str(plan) not in err, err
    assert not (tmp_path / "r.json").exists()
