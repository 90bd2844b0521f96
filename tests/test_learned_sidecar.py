"""A corrupt or hand-edited learned-model sidecar (or model text) is one InputError naming the file and the field,
never a crash, a traceback or a silently wrong run; training writes the model and its sidecar as one pair."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from learned.model import LearnedModel, sidecar_path
from learned.train import main as train_main
from sim.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")




def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        node = meta
        for p in parents:
            node = node[p]
        if value is _DEL:
            del node[last]
        else:
            node[last] = value(node[last]) if callable(value) else value
    return edit


_DEL = object()
CASES = {  # corruption: (edit, field the message names)
    "table cut to 10 rows": (_set("classes.table", lambda t: t[:10]), "classes.table"),
    "table one row": (_set("classes.table", lambda t: t[:1]), "classes.table"),
    "table NaN": (_set("classes.table", lambda t: [[NAN] * len(r) for r in t]), "classes.table"),
    "table negative": (_set("classes.table", lambda t: [[-1.0] * len(r) for r in t]), "classes.table"),
    "threads huge": (_set("params.num_threads", 100000), "params.num_threads"),
    "threads text": (_set("params.num_threads", "x"), "params.num_threads"),
    "params missing": (_set("params", _DEL), "params"),
    "cuts beyond buckets": (_set("classes.cuts", [100, 101, 102]), "classes.cuts"),
    "cuts negative": (_set("classes.cuts", [-3, -2, -1]), "classes.cuts"),
    "cuts two": (_set("classes.cuts", lambda c: c[1:]), "classes.thresholds"),
    "features a number": (_set("features", 5), "features"),
    "features reversed": (_set("features", lambda f: f[::-1]), "features"),
    "features all one name": (_set("features", lambda f: [f[0]] * len(f)), "features"),
    "source missing": (_set("train.source", _DEL), "train.source"),
    "request range text": (_set("train.request_range", "x"), "train.request_range"),
    # reversed, no range overlaps it: the train/test overlap refusal would pass every run (hmut3 mutant SC1)
    "request range reversed": (_set("train.request_range", [200, 100]), "train.request_range"),
    "request range negative": (_set("train.request_range", [-1, 100]), "train.request_range"),
    "train text": (_set("train", "x"), "train"),
    "thresholds NaN": (_set("classes.thresholds", lambda t: [[NAN] * len(r) for r in t]), "classes.thresholds"),
    "thresholds shortened": (_set("classes.thresholds", lambda t: t[:-1]), "classes.thresholds"),
    "edges descending": (_set("label.edges", lambda e: e[::-1]), "label.edges"),
    "edges NaN": (_set("label.edges", lambda e: [NAN] * len(e)), "label.edges"),
    "edges all 0": (_set("label.edges", lambda e: [0] * len(e)), "label.edges"),
    "block tokens text": (_set("block_tokens", "512"), "block_tokens"),
    "block tokens null": (_set("block_tokens", None), "block_tokens"),
    # past int64, as serving.block_size is: the run's refusal told to --set a block size itself refused (hfuzz11)
    "block tokens 2^70": (_set("block_tokens", 2**70), "block_tokens"),
    "fingerprint text": (_set("train.fingerprint", "x"), "train.fingerprint"),
    "fingerprint of another definition": (_set("train.fingerprint.definition", "v0"), "train.fingerprint.definition"),
    "fingerprint gram 0": (_set("train.fingerprint.gram", 0), "train.fingerprint.gram"),
    "fingerprint modulus 3": (_set("train.fingerprint.modulus", 3), "train.fingerprint.modulus"),
    "fingerprint modulus missing": (_set("train.fingerprint.modulus", _DEL), "train.fingerprint.modulus"),
    "fingerprint hashes reversed": (_set("train.fingerprint.hashes", lambda h: h[::-1]), "train.fingerprint.hashes"),
    "fingerprint hashes as numbers": (_set("train.fingerprint.hashes", lambda h: [int(x, 16) for x in h]),
                                      "train.fingerprint.hashes"),
    "fingerprint hash not hex": (_set("train.fingerprint.hashes", ["zz"]), "train.fingerprint.hashes"),
    "fingerprint hashes off the sample": (_set("train.fingerprint.modulus", 1 << 62), "train.fingerprint.hashes"),
}


def _copy(model: Path, directory: Path, edit=None, text: str | None = None) -> Path:
    target = directory / "model.txt"
    meta = copy.deepcopy(json.loads(sidecar_path(model).read_text()))
    if edit:
        edit(meta)
    if text is not None:
        meta["model_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    target.write_text(model.read_text() if text is None else text)
    sidecar_path(target).write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_corrupt_sidecar_field_is_refused_naming_it(case, small_learned_model, tmp_path):
    edit, field = CASES[case]
    with pytest.raises(InputError) as refused:
        LearnedModel.load(_copy(small_learned_model, tmp_path, edit))
    message = str(refused.value)
    assert str(sidecar_path(tmp_path / "model.txt")) in message and f"'{field}'" in message, message
    assert "\n" not in message and len(message) < 300


def test_the_untouched_model_loads(small_learned_model, tmp_path):
    """The trainer's own pair passes every check, and loads as its sidecar says: the booster's features in the
    sidecar's order, one LightGBM class per label bucket, a class table row per combination of cut levels."""
    model = LearnedModel.load(_copy(small_learned_model, tmp_path))
    meta = json.loads(sidecar_path(small_learned_model).read_text())
    assert model.booster.feature_name() == meta["features"]
    assert model.booster.num_model_per_iteration() == len(meta["label"]["edges"])
    levels = len(meta["classes"]["thresholds"][0]) + 1
    assert model._table.shape == (levels ** len(meta["classes"]["cuts"]), len(meta["label"]["edges"]))


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_a_truncated_model_with_a_matching_hash_is_one_line_exit_2(cut, small_learned_model, tmp_path):
    text = small_learned_model.read_text()
    model = _copy(small_learned_model, tmp_path, text=text[: len(text) // 2] if cut == "half" else "")
    proc = subprocess.run([sys.executable, "main.py", "--cache-only", "--policy", "learned", "--set",
                           f"cache.learned_model={model}", "--set", "serving.block_size=512", "--seed", "1",
                           "--capacity-blocks", "100", "--no-plot", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0] and "LightGBM] [Fatal]" not in proc.stderr, proc.stderr[-500:]


@pytest.mark.parametrize("setting", ["serving.max_num_seqs=5", "hardware.gpus_per_node=4", "hardware.pcie_gbps=10"])
def test_training_refuses_a_key_it_never_reads(tmp_path, capsys, setting):
    assert train_main(["--out", str(tmp_path / "m.txt"), "--set", setting]) == 2
    assert f"--set {setting.partition('=')[0]}: training does not read it" in capsys.readouterr().err
    assert not (tmp_path / "m.txt").exists()


def test_ctrl_c_between_the_two_renames_leaves_a_consistent_pair(small_learned_model, tmp_path, monkeypatch):
    """A Ctrl-C right after the model was renamed into place left it beside the previous sidecar."""
    import learned.train as train_module

    model = _copy(small_learned_model, tmp_path)
    real = train_module.atomic_write

    def interrupting(path, *args, **kwargs):
        from contextlib import contextmanager

        @contextmanager
        def wrapped():
            with real(path, *args, **kwargs) as fh:
                yield fh
            if Path(path) == model:  # the model is in place, its sidecar not yet
                os.kill(os.getpid(), signal.SIGINT)
        return wrapped()

    monkeypatch.setattr(train_module, "atomic_write", interrupting)
    assert train_main(["--out", str(model), "--range", "0:1", "--rounds", "4", "--set", "serving.block_size=512",
                       "--set", "workload.synthetic.num_requests=400"]) == 130
    LearnedModel.load(model)  # model and sidecar match: the new pair, both in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt", "model.txt.json"]


def test_training_twice_writes_the_same_model_and_sidecar(small_learned_model, tmp_path):
    """Before: the sidecar kept the training's wall time (train_seconds), so the same config and seed gave two
    sidecars that differed; the time is printed, not stored."""
    again = tmp_path / "model.txt"
    assert train_main(["--out", str(again), "--range", "0:1", "--rounds", "3", "--set", "serving.block_size=512",
                       "--set", "workload.synthetic.num_requests=400"]) == 0
    assert again.read_bytes() == small_learned_model.read_bytes()
    assert sidecar_path(again).read_bytes() == sidecar_path(small_learned_model).read_bytes()
