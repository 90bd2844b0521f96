"""--html: one self-contained report, loaded in a real headless browser (Debian's chromium) without console errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE

SECTIONS = ("summary", "runs", "plots", "metrics", "config", "trace")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        message = "no headless browser (apt-get install -y chromium) to load the HTML report"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — .ci/run installs it")
        pytest.skip(message)
    return found


def load_headless(browser: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after loading, and every console message it logged."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_catches_errors(browser, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("boom"); notDefined();</script></body></html>')
    _, console = load_headless(browser, page, tmp_path / "profile")
    assert any("boom" in line for line in console) and any("notDefined" in line for line in console)


def _assert_report_page(browser, tmp_path, page: Path, plots: int) -> str:
    html = page.read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources  # nothing to fetch: opens offline
    assert "http://" not in html and "https://" not in html
    dom, console = load_headless(browser, page, tmp_path / "profile")
    assert console == [], console
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    assert dom.count("<img ") == plots
    return dom


def test_serving_run_html_has_every_section_and_its_plots(browser, run_cli, tmp_path):
    page = tmp_path / "pd.html"
    status, stdout, err = run_cli("--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "200",
                                  "--set", "slo.ttft_s=0.5", "--policy", "lru,sieve", "--plot-dir", tmp_path / "plots",
                                  "--html", page, "--report-json", tmp_path / "pd.json")
    assert status == 0, err
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["pd_latency_cdf.png", "pd_tier_hits.png", "pd_timelines.png", "pd_ttft_breakdown.png"]  # by run kind
    dom = _assert_report_page(browser, tmp_path, page, plots=4)
    report = json.loads((tmp_path / "pd.json").read_text())
    assert "lru" in dom and "sieve" in dom and report["trace"]["sha256"] in dom  # runs and provenance
    assert "tensor_parallel_size" in dom  # the resolved config


def test_sweep_html_embeds_the_sweep_plots(browser, run_cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "mode": "single", "workload": {"trace": str(BUNDLED_AZURE), "limit": 60},
        "axes": {"cache.policy": ["lru", "fifo"], "workload.rate_scale": [1, 4]}}))
    page = tmp_path / "sweep.html"
    status, _, err = run_cli("--sweep", spec, "--jobs", "2", "--plot-dir", tmp_path / "plots", "--html", page, "--quiet")
    assert status == 0, err
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["sweep_latency_vs_rate.png"]  # no capacity axis, no P:D axis, no --max-rate here
    dom = _assert_report_page(browser, tmp_path, page, plots=1)
    assert '<section id="sweep">' in dom and "lru/4" in dom
    assert (tmp_path / "sweep.journal.jsonl").is_file()  # beside the page, not in the working directory
