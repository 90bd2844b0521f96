"""--help of the side commands teaches as main.py's does: every flag says what it sets, a flag with a default
states it, and the page ends with examples that run."""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import ROOT


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Flags with no help, or with a default their help does not state."""
    missing = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        stated = action.default in (None, False, [], argparse.SUPPRESS) or "default" in text
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
