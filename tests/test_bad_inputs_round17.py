"""Bad input, round 17 (helper hfuzz11): around round 16's fixes (GPU specs, NS-3 tables, hybrid config.json keys) and
the surfaces least fuzzed (learned models). Each case crashed the process or ran at exit 0 on a file no tool writes,
where one line and exit 2 belonged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


# A LightGBM model whose parameters section (after its trees) holds a line without a "name: value" pair, its sidecar's
# hash updated to match: LightGBM's Python package reads the loaded parameters back, splitting each line at ':' and
# taking the second piece unchecked; a model cut inside the section ("[objective:") or a line "x" there crashed the
# process with SIGSEGV (exit -11 here, 139 from a shell) before kvsim said anything.
@pytest.mark.parametrize("cut", ["inside", "line"])
def test_a_model_cut_inside_its_parameters_is_refused(cut, small_learned_model, tmp_path):
    from tests.test_bad_inputs_round9 import _resave

    text = small_learned_model.read_text()
    start = text.index("\nparameters:\n[boosting: gbdt]\n[objective: multiclass]\n") + 1
    bad = text[:start + len("parameters:\n[boosting: gbdt]\n[objective:")] if cut == "inside" else \
        text.replace("[objective: multiclass]\n", "x\n", 1)
    model = _resave(small_learned_model, tmp_path, bad)
    done = subprocess.run([sys.executable, "main.py", "--cache-only", "--quiet", "--no-plot", "--policy", "learned",
                           "--set", f"cache.learned_model={model}", "--set", "workload.synthetic.num_requests=20"],
                          cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300)
    said = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in said and "Traceback" not in said, (done.returncode, said[-1000:])
    assert "model.txt" in said and "parameters section has a line LightGBM cannot read" in said, said
    assert ("'[objective:'" if cut == "inside" else "'x'") in said, said


def test_a_model_whose_parameters_end_at_a_whole_line_still_loads(small_learned_model, tmp_path):
    """A model cut after a whole "[name: value]" line of its parameters (no "end of parameters") is read by LightGBM
    as it is, and so by kvsim: the check refuses only the lines LightGBM cannot split."""
    from learned.model import LearnedModel
    from tests.test_bad_inputs_round9 import _resave

    text = small_learned_model.read_text()
    cut = text[:text.index("[objective: multiclass]\n") + len("[objective: multiclass]\n")]
    model = LearnedModel.load(_resave(small_learned_model, tmp_path, cut))
    assert model.booster.num_model_per_iteration() == 11


def _first_split_tree(text: str) -> tuple[int, int]:
    """Where the first tree of two leaves or more starts and ends in ``text``."""
    start = text.index("\nnum_leaves=", text.index("\nTree=0\n"))
    while text.startswith("\nnum_leaves=1\n", start):
        start = text.index("\nnum_leaves=", start + 1)
    return start, text.index("\nshrinkage=", start)


def _edit_line(text: str, key: str, edit) -> str:
    """``text`` with the first split tree's ``key`` line edited by ``edit`` (its length kept: the tree keeps the size
    its header gives it, and passes that check)."""
    start, end = _first_split_tree(text)
    at = text.index(f"\n{key}=", start, end) + 1
    line_end = text.index("\n", at)
    new = edit(text[at:line_end])
    assert len(new) == line_end - at and new != text[at:line_end]
    return text[:at] + new + text[line_end:]


# A tree's fields past its splits and leaf values, edited in place (the tree's length, and so its header's tree_sizes,
# kept; the sidecar's hash updated): LightGBM parses the trees in parallel, and an error there is std::terminate, so
# the first three aborted the process (SIGABRT, exit 134 from a shell: "Tree model should contain num_cat field",
# "Unknown token x...", "Check failed: (strs.size()) == (n)"); a leaf_count ending "673]" LightGBM's fast integer
# parse let through, and the run went on at exit 0. Found by 480 one-character edits of a trained model's trees (7
# aborts; none in 1,020 after the fix).
@pytest.mark.parametrize("key, edit, said", [
    ("num_cat", lambda line: line.replace("num_cat=", "num=cat="), "has no num_cat"),
    ("internal_weight", lambda line: line[:16] + "x" + line[17:], "internal_weight other than"),
    ("leaf_weight", lambda line: line.replace(" ", ",", 1), "leaf_weight other than"),
    ("leaf_count", lambda line: line[:-1] + "]", "leaf_count other than"),
], ids=["num-cat-renamed", "weight-not-a-number", "weights-one-short", "count-not-an-integer"])
def test_a_tree_field_lightgbm_would_abort_on_is_refused(key, edit, said, small_learned_model, tmp_path):
    from tests.test_bad_inputs_round9 import _resave

    model = _resave(small_learned_model, tmp_path, _edit_line(small_learned_model.read_text(), key, edit))
    done = subprocess.run([sys.executable, "main.py", "--cache-only", "--quiet", "--no-plot", "--policy", "learned",
                           "--set", f"cache.learned_model={model}", "--set", "workload.synthetic.num_requests=20",
                           "--set", "serving.block_size=512"],  # (the model's: the run gets past its block size)
                          cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300)
    message = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in message and "Traceback" not in message, (done.returncode,
                                                                                        message[-999:])
    assert "model.txt" in message and said in message, message
