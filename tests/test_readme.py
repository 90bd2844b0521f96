"""The README: its first screen has exactly two set-up commands, every capacity-planning example runs, and its Reports
section names every ``--requests-csv`` column."""

from __future__ import annotations

import csv
import json
import re
import shlex

import numpy as np
import pytest

from sim.report.document import flatten
from sim.report.metrics import REQUEST_COLUMNS, RequestTable, request_columns
from tests.conftest import ROOT
from tests.test_planner import README_PLAN

README = (ROOT / "README.md").read_text()


def _commands(section: str) -> list[str]:
    """The shell commands of the section's bash blocks (continuations joined, comments dropped)."""
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        text = block.replace("\\\n", " ")
        commands += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return commands


def test_first_screen_shows_exactly_two_commands():
    first_screen = README.split("\n## ", 1)[0]
    commands = [c for block in re.findall(r"```bash\n(.*?)```", first_screen, flags=re.S)
                for c in block.splitlines() if c.strip() and not c.strip().startswith("#")]
    assert len(commands) == 2 and all(c.startswith("python -m pip install") for c in commands)


EXAMPLES = _commands("Capacity planning")


def test_the_section_shows_a_sweep_max_rate_plan_and_html():
    flags = " ".join(EXAMPLES)
    for flag in ("--sweep", "--max-rate", "--plan", "--html", "--seeds"):
        assert flag in flags, flag
    assert all(c.startswith("python main.py ") for c in EXAMPLES)


@pytest.mark.parametrize("command", EXAMPLES, ids=[shlex.split(c)[2] for c in EXAMPLES])
def test_readme_example_runs(command, run_cli, tmp_path, monkeypatch):
    argv = shlex.split(command)[2:]
    if argv[:2] == README_PLAN[:2]:  # the same command is the planner's acceptance test
        assert [a for a in argv if not a.startswith("out/") and a != "--report-json"] == README_PLAN
        pytest.skip("run and checked by tests/test_planner.py::test_azure_plan_finds_the_least_cost_gpu_count_and_split")
    monkeypatch.chdir(ROOT)
    argv = [a.replace("out/", f"{tmp_path}/") for a in argv]
    if "--plot-dir" not in argv:
        argv += ["--plot-dir", str(tmp_path / "plots")]
    status, stdout, err = run_cli(*argv)
    assert status == 0, err
    for path in (a for a in argv if a.startswith(str(tmp_path)) and "." in a.rsplit("/", 1)[-1]):
        assert (tmp_path / path.rsplit("/", 1)[-1]).stat().st_size > 0, path
    if "--max-rate" in argv:  # as its comment says: 300 requests are a quick look, flagged; 2,000 answer lower, steady
        quick = json.loads((tmp_path / "max_rate.json").read_text())["runs"][0]["metrics"]
        assert quick["max_rate_rps"] > 0 and quick["max_rate_search"]["steady_state"] is False
        assert "not a sustained rate" in quick["max_rate_search"]["note"]
        argv[argv.index("--workload-limit") + 1] = "2000"
        assert run_cli(*argv)[0] == 0
        longer = json.loads((tmp_path / "max_rate.json").read_text())["runs"][0]["metrics"]
        assert 0 < longer["max_rate_rps"] < quick["max_rate_rps"] and "steady_state" not in longer["max_rate_search"]
    if "--seeds" in argv:
        assert "hit_ratio" in stdout
    if argv[0] == "--plan":  # the fleet plan: some EIC per rack is what reaches the hit ratio
        chosen = next(line for line in stdout.splitlines() if line.startswith("chosen:"))
        assert "eic=" in chosen and "eic=0GiB" not in chosen


QUESTIONS = _commands("Four questions")


def test_the_four_questions_are_one_command_each_right_after_the_first_screen():
    assert README.split("\n## ", 2)[1].startswith("Four questions\n")
    assert len(QUESTIONS) == 4 and all(c.startswith("python main.py ") for c in QUESTIONS)
    flags = [shlex.split(c) for c in QUESTIONS]
    assert {"--cache-only", "cache.access_semantics=prefix"} <= set(flags[0]) and "belady" in flags[0][
        flags[0].index("--policy") + 1].split(",")
    assert "--plan" in flags[1] and {"--sweep", "--max-rate"} <= set(flags[2]) and "--requests-csv" in flags[3]


@pytest.mark.parametrize("command", QUESTIONS, ids=["policy", "tiers", "pd-split", "ttft"])
def test_each_of_the_four_questions_runs_and_says_what_its_line_reads(command, run_cli, tmp_path, monkeypatch):
    argv = [a.replace("out/", f"{tmp_path}/") for a in shlex.split(command)[2:]]
    assert not any("../shared/" in a for a in argv)  # (a newcomer's clone has no ../shared: bundled traces only)
    if argv[0] == "--plan":
        assert "../../trace/data/mooncake_conversation_3k.jsonl" in (ROOT / argv[1]).read_text()
    monkeypatch.chdir(ROOT)
    status, stdout, err = run_cli(*argv, "--report-json", tmp_path / "r.json", "--plot-dir", tmp_path / "plots")
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    if "--policy" in argv:  # every policy's hit_ratio printed, Belady's the highest
        hits = {r["name"]: r["metrics"]["hit_ratio"] for r in report["runs"]}
        assert len(re.findall(r"^  hit_ratio ", stdout, flags=re.M)) == len(hits) == 4 and max(hits, key=hits.get) == "belady"
        assert 0 < hits["lru"] < hits["belady"]
    elif argv[0] == "--plan":  # the chosen mix names its DRAM and SSD and reaches the target
        chosen = next(line for line in stdout.splitlines() if line.startswith("chosen:"))
        assert "dram=" in chosen and "ssd=" in chosen
        assert any(c["chosen"] and c["hit_ratio"] >= 0.3 for c in report["plan"]["candidates"])
    elif "--sweep" in argv:  # a max rate for each of the 9 points
        assert "max_rate_rps" in stdout.splitlines()[0] and len(report["runs"]) == 9
        assert all(r["metrics"]["max_rate_rps"] > 0 for r in report["runs"])
    else:  # the breakdown's means sum to the TTFT's mean, and each request's parts are columns of its row
        metrics = report["runs"][0]["metrics"]
        assert "ttft_breakdown_s" in stdout
        assert sum(metrics["ttft_breakdown_s"].values()) == pytest.approx(metrics["ttft_s"]["mean"], rel=1e-9)
        with (tmp_path / "requests.csv").open() as fh:
            assert {"queue_s", "prefill_s", "kv_transfer_s", "first_decode_s"} <= set(next(csv.reader(fh)))
        assert (tmp_path / "plots" / "pd_ttft_breakdown.png").stat().st_size > 0


PROSE = " ".join(README.split())  # the README's words, line breaks as spaces


def _figure(pattern: str) -> list[str]:
    found = re.search(pattern, PROSE)
    assert found, f"the README no longer says {pattern!r}"
    return [g.replace(",", "") for g in found.groups()]


def test_the_kv_capacity_figures_quoted_are_what_kvsim_sizes():
    # Before: 2,579 RTX 4090 blocks were quoted at today's default utilization 0.92 (2,820; 2,579 is the measured run's
    # 0.9), gpt-oss-20b's 161,611 and Qwen3-Next's 8,464 blocks were memory x 0.9 - weights, before vLLM 0.33's budget.
    from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes
    from sim.config import load_config

    (rtx,) = _figure(r"RTX 4090 with Llama-3\.1-8B at the measured run's `gpu_memory_utilization` 0\.9 "
                     r"\(vLLM 0\.19's default\): ([\d,]+) blocks, vLLM measured 2,588 \(([\d,]+) at 0\.92\)")[:1]
    blocks = hbm_capacity_blocks(load_config(None, sets=["hardware.gpu=rtx4090", "serving.gpu_memory_utilization=0.9"]))
    assert blocks == int(rtx) and abs(blocks / 2588 - 1) < 0.01  # vLLM 0.19's num_gpu_blocks (the run's meta.json)
    at_default = _figure(r"vLLM measured 2,588 \(([\d,]+) at 0\.92\)")[0]
    assert hbm_capacity_blocks(load_config(None, sets=["hardware.gpu=rtx4090"])) == int(at_default)

    (gpt,) = _figure(r"gpt-oss-20b: 384 KiB at 16 tokens, ([\d,]+) blocks on an H100 SXM, twice as many")
    hybrid = load_config(None, sets=["model=gpt-oss-20b"])
    whole = load_config(None, sets=["model=gpt-oss-20b", "serving.disable_hybrid_kv_cache_manager=true"])
    assert hbm_capacity_blocks(hybrid) == int(gpt) == 2 * hbm_capacity_blocks(whole)
    assert kv_block_bytes(hybrid) == 384 * 1024

    (qwen,) = _figure(r"\(([\d,]+) blocks of 6\.4 MiB per H200 at TP 2\)")
    config = load_config(None, sets=["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=2",
                                     "serving.enable_prefix_caching=false", "serving.block_size=544"])
    assert hbm_capacity_blocks(config) == int(qwen)
    # a block: 12 layers' pages of 544 tokens, 2 KV heads of 256, K and V, bf16, split over TP 2
    assert kv_block_bytes(config) == 12 * 544 * 2 * 2 * 256 * 2 // 2


def test_the_default_block_size_quoted_for_a_gated_deltanet_hybrid_is_the_runs():
    # Before: "544 for Qwen3-Next on one H100", the size without prefix caching; vLLM's default (caching on, its
    # align mode) makes it 576 there, as the README's own Qwen3-Next paragraph says.
    from sim.config import load_config
    from sim.serving.engine_limits import block_size

    quoted = r"Qwen3-Next on an H100: (\d+) with prefix caching, vLLM's default; (\d+) without"
    cached, plain = map(int, _figure(quoted))
    assert "576-token blocks on Hopper" in PROSE and cached == 576
    run = ["model=qwen3-next-80b-a3b", "hardware.gpu=h100-sxm"]
    assert block_size(load_config(None, sets=run)) == cached
    assert block_size(load_config(None, sets=[*run, "serving.enable_prefix_caching=false"])) == plain


def test_belady_behind_a_router_that_spreads_conversations_is_no_upper_bound(run_cli, tmp_path):
    # Before: the README quoted 0.020 against LRU's 0.049 (both 0.094 with session affinity), the figures of
    # workload.synthetic.start: empty, since replaced as the default by a steady start.
    belady, lru, affinity = map(float, _figure(r"1,500 HBM blocks, hit ratio ([\d.]+) against LRU's ([\d.]+); "
                                               r"with session affinity both ([\d.]+)"))
    assert belady < lru  # the point of the sentence: Belady ranks blocks by a next use another instance may have
    command = re.search(r"\(`python main\.py (--policy belady,lru [^`]+)`\)", PROSE).group(1)
    status, _, err = run_cli(*shlex.split(command), "--report-json", tmp_path / "r.json", "--no-plot", "--quiet")
    assert status == 0, err
    runs = {r["name"]: r["metrics"]["hit_ratio"] for r in json.loads((tmp_path / "r.json").read_text())["runs"]}
    assert [round(runs[n], 3) for n in ("belady/round-robin", "lru/round-robin")] == [belady, lru]
    assert round(runs["belady/session-affinity"], 3) == round(runs["lru/session-affinity"], 3) == affinity


def test_the_reports_section_names_every_requests_csv_column():
    """README Reports documents ``--requests-csv``: each column the file's header has, in that order."""
    reports = README.split("\n## Reports", 1)[1].split("\n## ", 1)[0]
    table = RequestTable(np.zeros(1), np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64))
    header = ["request_id", *REQUEST_COLUMNS, *request_columns(table)]
    named = re.findall(r"`([a-z0-9_]+)`", reports.split("--requests-csv PATH", 1)[1].split("Plots (PNG)", 1)[0])
    elided = ("kv_load_s", "prefill_s", "kv_transfer_s")  # (the breakdown's middle: queue_s … first_decode_s)
    listed = [name for name in dict.fromkeys(named) if name in header and name not in elided]
    assert listed == [c for c in header if c not in elided]


@pytest.mark.parametrize("mode", [(), ("--pd",)])
def test_the_reports_section_names_each_requests_csv_column_that_can_hold_nan_or_minus_one(run_cli, tmp_path, mode):
    """A spreadsheet reads the requests CSV's ``nan`` as text: the README says where it and -1 (no instance) occur.
    Before, it named neither."""
    reports = README.split("\n## Reports", 1)[1].split("\n## ", 1)[0]
    said = re.search(r"A time that does not apply is written `nan`[^;]*;[^.]*\.", reports)
    assert said, "the Reports section says where the requests CSV writes nan"
    trace = tmp_path / "t.jsonl"  # one-token answers: no TPOT (nan per request, null in the JSON)
    trace.write_text('{"timestamp": 0, "input_length": 100, "output_length": 1, "hash_ids": [1]}\n'
                     '{"timestamp": 50, "input_length": 600, "output_length": 1, "hash_ids": [1, 2]}\n')
    status, _, err = run_cli(*mode, "--workload-trace", trace, "--requests-csv", tmp_path / "q.csv", "--no-plot",
                             "--report-json", tmp_path / "r.json", "--report-csv", tmp_path / "r.csv", "--quiet")
    assert status == 0, err
    # the report CSV read back is the JSON: a null (tpot_s.*) is an empty cell, each number parses to the JSON's
    [row] = csv.DictReader((tmp_path / "r.csv").read_text().splitlines())
    metrics = flatten(json.loads((tmp_path / "r.json").read_text())["runs"][0]["metrics"])
    assert metrics["tpot_s.p99"] is None and row["tpot_s.p99"] == ""
    assert list(row) == ["name", *metrics]
    for name, value in metrics.items():
        cell = row[name]
        assert (cell == "" if value is None else cell == str(value) if isinstance(value, (bool, str))
                else type(value)(cell) == value), (name, cell, value)
    header, *rows = (line.split(",") for line in (tmp_path / "q.csv").read_text().splitlines())
    for sentinel in ("nan", "-1"):
        columns = {name for r in rows for name, cell in zip(header, r, strict=True) if cell == sentinel}
        assert columns or sentinel == "-1", sentinel  # (tpot_s's nan occurs in both; -1 outside PD only)
        named = set(re.findall(r"`([a-z_]+)`" + ("" if sentinel == "nan" else " is -1"), said.group(0)))
        assert columns <= named, (sentinel, columns - named)
