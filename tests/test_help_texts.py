"""--help of the side commands teaches as main.py's does: every flag says what it sets, a flag with a default
states it, and the page ends with examples that run."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Flags with no help, or with a default their help does not state."""
    missing = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        # (`is`: a default of 0 equals False, and --seed 0 went unstated as no default at all)
        unset = action.default is None or action.default is False or action.default == [] \
            or action.default is argparse.SUPPRESS
        stated = unset or "default" in text
        if not text or not stated:
            missing.append(action.option_strings[0])
    return missing


def test_learned_train_help_states_every_flag_and_its_default():
    # Before: --seed had no help at all, and the page had no example of training then judging a model.
    from learned.train import build_parser

    parser = build_parser()
    assert _undocumented(parser) == []
    page = parser.format_help()
    assert "examples:" in page and "--policy learned" in page and "``" not in page


def test_profile_gpu_help_states_every_flag_and_its_default(monkeypatch):
    # Before: --model, --device, --dtype, --tp, --max-tokens, --max-context, --max-batch, --max-kv-tokens and
    # --block-size had defaults the page did not state, and there was no example.
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    profile_gpu = pytest.importorskip("profile_gpu")
    parser = profile_gpu.build_parser()
    assert _undocumented(parser) == []
    page = parser.format_help()
    assert "examples:" in page and "--tiny --device cpu" in page and "``" not in page


def test_the_check_catches_an_unstated_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40, help="boosting rounds")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.add_argument("--seed", type=int, default=0)
    assert _undocumented(parser) == ["--rounds", "--seed"]


def test_fit_roofline_help_states_every_flag_and_its_default(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import fit_roofline

    parser = fit_roofline.build_parser()
    assert _undocumented(parser) == []
    page = parser.format_help()
    assert "examples:" in page and "--calibration-profile" in page and "``" not in page


class _Parsed(BaseException):
    """Raised in place of parsing, carrying the parser a script built (not an Exception: scripts catch those)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _script_parser(path, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``path``'s main builds, taken as it starts to parse (most scripts build theirs inside main)."""
    import runpy
    import sys

    def grab(self, args=None, namespace=None):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", grab)
    monkeypatch.setattr(sys, "argv", [str(path)])
    monkeypatch.syspath_prepend(str(path.parent))
    with pytest.raises(_Parsed) as caught:
        runpy.run_path(str(path), run_name="__main__")
    return caught.value.parser


SCRIPTS = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tools").glob("*.py")])
NOT_COMMANDS = {"vllm_run_files.py", "gpu_timing.py", "ns3_flows.py", "profile_gpu_cli.py"}  # modules of others


@pytest.mark.parametrize("path", [p for p in SCRIPTS if p.name not in NOT_COMMANDS], ids=lambda p: p.name)
def test_every_benchmark_and_tool_flag_says_what_it_does_and_its_default(path, monkeypatch):
    # Before: bench_cluster's --requests had no help at all, and 17 flags of bench_serving, bench_synthetic,
    # bench_mrc, bench_learned, bench_trace_load, bench_cache, bench_kernel_floor and replay_vllm had defaults their
    # help did not state (the check read a default of 0 as none: 0 == False).
    parser = _script_parser(path, monkeypatch)
    assert _undocumented(parser) == []
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in (p for a in subparsers for p in a.choices.values()):
        assert _undocumented(sub) == []
    positional = [a.metavar or a.dest for a in parser._actions if not a.option_strings and not a.help
                  and not isinstance(a, argparse._SubParsersAction)]
    assert positional == []  # check_moe_kernels' TABLE=GPU had none
    assert "``" not in parser.format_help()  # reST quoting from a docstring, read by people in a terminal


def test_the_check_counts_a_default_of_zero():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--verbose", action="store_true", help="say more")
    assert _undocumented(parser) == ["--seed"]


MAIN_FALLBACKS = ("seed", "workload_format", "workload_limit", "workload_time_unit", "policy", "router",
                  "capacity_blocks", "mrc_sample_rate", "rate_scale", "max_rate", "jobs", "backend", "config",
                  "plot_dir")


def test_main_flags_that_fall_back_to_a_value_state_it():
    # Before: --seed, --workload-limit, --workload-time-unit, --policy, --router, --capacity-blocks, --rate-scale and
    # --max-rate (its slo.attainment) said nothing of what a run takes when they are not given.
    from sim.cli import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert [dest for dest in MAIN_FALLBACKS if "default" not in actions[dest].help] == []


def test_main_help_teaches_the_four_questions():
    """The epilog shows, by example, how to answer the questions kvsim is for: which policy (beside Belady, the
    optimum), how big a tier (the miss-ratio curve), which P:D split and KV link (a sweep of both), where the TTFT
    goes (its breakdown). The examples themselves run in tests/test_examples.py."""
    from sim.cli import build_parser

    epilog = build_parser().epilog
    examples = epilog.split("modes (one at a time):")[0]
    assert "belady" in examples and "--mrc" in examples and "capacity_gib" in examples
    assert "sweep_pd_split.yaml" in examples
    assert all(part in examples for part in ("queue", "kv_load", "prefill", "kv_transfer", "first_decode"))
    spec = (ROOT / "experiments/examples/sweep_pd_split.yaml").read_text()
    assert "pd.num_prefill" in spec and "network.bandwidth_gbps" in spec


@pytest.mark.parametrize("name", sorted(NOT_COMMANDS - {"profile_gpu_cli.py"}))
def test_a_module_of_a_command_run_itself_names_the_command(name):
    """Run directly, a module another command imports says which command to run (exit 2), not nothing at all
    (benchmarks/vllm_run_files.py printed nothing and exited 0, even to --help)."""
    path = next(p for p in SCRIPTS if p.name == name)
    done = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith(f"{name}: error: a module of ") and " --help)" in done.stderr
