"""Bad-input round 15: this session's surfaces (the YAML number checks, the requests CSV written without pandas, the
LLMServingSim bundle kept per process, the plots' save, the cluster scheduler's admissions)."""

from __future__ import annotations

import json

from tests.conftest import BUNDLED_AZURE


def test_an_explicitly_tagged_string_that_looks_like_a_yaml12_octal_reads_as_written(run_cli, tmp_path):
    """``!!str 0o17`` is the string '0o17' in YAML 1.1 and 1.2 alike (the spec's explicit tag: no resolution), so the
    check that refuses an unquoted 0o17 (the versions read it apart) has nothing to refuse: a trace file named 0o17,
    given so, is read. The check looked at the resolved tag, which an explicit !!str shares, and refused it."""
    (tmp_path / "0o17").write_text(BUNDLED_AZURE.read_text())
    config = tmp_path / "c.yaml"
    config.write_text("workload:\n  trace: !!str 0o17\n")
    report = tmp_path / "r.json"
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet", "--report-json", report)
    assert status == 0, err
    assert json.loads(report.read_text())["trace"]["path"].endswith("0o17")
    config.write_text("workload:\n  trace: 0o17\n")  # unquoted, untagged: still refused at its line
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet")
    assert status == 2 and "'0o17'" in err and "line 2" in err and len(err.strip().splitlines()) == 1, err
