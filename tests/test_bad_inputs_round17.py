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
