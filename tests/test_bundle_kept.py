"""A process builds an LLMServingSim bundle's compute model once while the bundle is unchanged
(``LLMServingSimCompute.load_kept``): a max-rate search's probes and a plan's points each build one, and reading and
checking the tables was ~35 ms of each probe. Each caller gets its own copy; a changed file is read again."""

from __future__ import annotations

import pytest

from sim.serving import llmservingsim_compute
from sim.serving.compute import StepShape
from sim.serving.llmservingsim_compute import LLMServingSimCompute
from tests.test_moe import TINY, _bundle


def test_a_bundle_is_read_once_while_its_files_are_unchanged(tmp_path, monkeypatch):
    root = _bundle(tmp_path, 1, 1)
    reads: list[str] = []
    read = llmservingsim_compute.read_bundle_table
    monkeypatch.setattr(llmservingsim_compute, "read_bundle_table",
                        lambda tp_dir, name: reads.append(name) or read(tp_dir, name))
    shape = StepShape.decode_batch([16, 16])
    first = LLMServingSimCompute.load_kept(root, TINY, 1)
    tables = len(reads)
    assert tables >= 3  # dense.csv, per_sequence.csv, attention.csv (and moe.csv)
    second = LLMServingSimCompute.load_kept(root, TINY, 1)
    assert len(reads) == tables  # nothing read again
    # the same prices as the hand case of tests/test_moe.py: 2 layers x (4 operators of 1 us + attention 5 us + the
    # MoE block 42.5 us) + embedding and final norm 2 us
    assert second.step_time(shape) == pytest.approx((2 * (4 + 5 + 42.5) + 2) * 1e-6)
    # each caller's copy: what one sets (compute_backend sets its collectives) the other does not see
    assert second is not first
    first.comm = object()
    assert second.comm is None and LLMServingSimCompute.load_kept(root, TINY, 1).comm is None
    # other arguments are another model: TP 1's tables read at another skew setting
    LLMServingSimCompute.load_kept(root, TINY, 1, skew_correction="never")
    assert len(reads) == 2 * tables


def test_a_changed_bundle_file_is_read_again(tmp_path):
    root = _bundle(tmp_path, 1, 1)
    shape = StepShape.decode_batch([16, 16])
    assert LLMServingSimCompute.load_kept(root, TINY, 1).step_time(shape) == pytest.approx((2 * 51.5 + 2) * 1e-6)
    # attention 5 us -> 7 us a layer (same size on disk: the content tells them apart)
    table = root / "tp1" / "attention.csv"
    table.write_text(table.read_text().replace(",5\n", ",7\n"))
    assert LLMServingSimCompute.load_kept(root, TINY, 1).step_time(shape) == pytest.approx((2 * 53.5 + 2) * 1e-6)
    # a file the model does not read yet (a new TP degree's folder) is part of the bundle too
    (root / "tp2").mkdir()
    (root / "tp2" / "dense.csv").write_text("layer,tokens,time_us\n")
    assert LLMServingSimCompute.load_kept(root, TINY, 1).step_time(shape) == pytest.approx((2 * 53.5 + 2) * 1e-6)
