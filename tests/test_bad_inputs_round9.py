"""Bad input, round 9 (helper hfuzz8): round 8's leftovers and the deeper file formats (learned models and sidecars,
calibration tables, NS-3 tables, sweep and plan specs, the CSV writers, workload caches). Each case was a traceback
(exit 1), a message that said something untrue or unreadable, or a run that went ahead where one line and exit 2
belonged before the work."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.bad_input_helpers import AZURE_OK, MOONCAKE_OK, Case, check_bad_input, setting
from tests.conftest import ROOT

SERVE = ("--quiet", "--no-plot")
CACHE_ONLY = ("--cache-only", "--no-plot", "--quiet")
TRACE_STATS = ("--trace-stats", "--no-plot", "--quiet", "--workload-trace", "{tmp}/t.csv")
SWEEP = ["--sweep", "{tmp}/s.yaml", "--quiet", "--no-plot", "--jobs", "1"]
# A GPU spec file's fields (profiles/gpus.yaml's), with its link's kind left to the case
GPU_FILE = ("dense_bf16_tflops: 100\nmemory_gib: 24\nmemory_bandwidth_gbps: 1000\nsource: a datasheet\n"
            "link: {{kind: {kind}, bandwidth_gbps: 24, step_latency_us: 5}}\n")


def sweep(body: str) -> Case:
    """A cache-only sweep spec over the three-request Azure trace, the rest of it as given."""
    return Case(SWEEP, names=("s.yaml",), files={"s.yaml": f"mode: cache-only\nworkload: {{trace: t.csv}}\n{body}",
                                                  "t.csv": AZURE_OK})


def _with(case: Case, *names: str) -> Case:
    return Case(case.argv, names=(*case.names, *names), files=case.files)


# YAML 1.1 reads an unquoted 2024-01-01 as a date (and 2024-01-01T10:00:00Z as a timestamp): the messages showed
# Python's datetime.date(2024, 1, 1), never the text written nor that YAML had made it a date
DATE = ("a date", "YAML", "quote it")
CASES: dict[str, Case] = {
    "set_date_as_a_number": setting("workload.rate_scale=2024-01-01", "got 2024-01-01, a date", *DATE),
    "set_timestamp_as_written": setting("workload.time_unit=2024-01-01T10:00:00Z", "got 2024-01-01T10:00:00Z, a date",
                                        *DATE),
    "set_date_in_a_list": setting("cache.policy=[2024-01-01]", "[2024-01-01]", "YAML read 2024-01-01 as a date",
                                  mode=CACHE_ONLY),
    "config_file_date": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "'model'", "2024-01-01",
                                                                                  *DATE),
                             files={"c.yaml": "model: 2024-01-01\n", "t.csv": AZURE_OK}),
    "plan_slo_date": Case(["--plan", "{tmp}/p.yaml", "--workload-trace", "{tmp}/t.csv", *SERVE, "--jobs", "1"],
                          names=("p.yaml", "'target.slo.ttft_s'", "got 2024-01-01, a date", *DATE),
                          files={"p.yaml": "target: {slo: {ttft_s: 2024-01-01}}\nsearch: {gpu: [h100-sxm], gpus: [1]}\n",
                                 "t.csv": AZURE_OK}),
    # a date in a sweep spec's fixed key or axis was an internal error: its values travel as JSON, which has no date
    "sweep_fixed_date_was_a_traceback": _with(sweep("set: {cache.admission: 2024-01-01}\naxes: {cache.policy: [lru]}\n"),
                                              "'cache.admission'", "2024-01-01, a date", "no config key takes a date"),
    "sweep_axis_date_was_a_traceback": _with(sweep("axes: {cache.policy: [lru, 2024-01-01]}\n"), "axis 'cache.policy'",
                                             "YAML read 2024-01-01 as a date", "no config key takes a date"),
    "gpu_spec_source_a_date": Case([*SERVE, "--workload-trace", "{tmp}/t.csv", "--set", "hardware.gpu={tmp}/g.yaml"],
                                   names=("g.yaml", "source must be text", "got 2024-01-01, a date", *DATE),
                                   files={"g.yaml": GPU_FILE.format(kind="pcie4").replace("a datasheet", "2024-01-01"),
                                          "t.csv": AZURE_OK}),
    # round 8 named YAML's booleans in config keys; a GPU spec file's link.kind: yes still said "must be text"
    "gpu_spec_link_kind_yes": Case([*SERVE, "--workload-trace", "{tmp}/t.csv", "--set", "hardware.gpu={tmp}/g.yaml"],
                                   names=("g.yaml", "link.kind must be text", "got true, a boolean",
                                          "YAML reads an unquoted yes/no/on/off", "'yes'"),
                                   files={"g.yaml": GPU_FILE.format(kind="yes"), "t.csv": AZURE_OK}),
}

# Files of one kind given where another belongs. --check-calibration with an NS-3 table said "unknown config key
# '_source'", with a trace "the top level must be a mapping, got str"; a config overlay given as the trace was an
# "unrecognised trace header", an NS-3 table as a GPU spec "unknown key '_source'", a trace as the NS-3 table "cannot
# read it as JSON", a learned model's sidecar as the model "sidecar model.txt.json.json not found"
NS3 = (ROOT / "profiles" / "ns3_kv_transfer_100gbps.json").read_text()
SIDECAR = '{"kvsim_learned_model": 1, "features": ["age"]}'
CHECK = ["--check-calibration", "{tmp}/f", *SERVE]
OTHER_KINDS: dict[str, Case] = {
    "check_calibration_ns3_table": Case(CHECK, names=("this is an NS-3 network lookup table", "network.lookup"),
                                        files={"f": NS3}),
    "check_calibration_trace": Case(CHECK, names=("this is a trace (azure format)", "--workload-trace"),
                                    files={"f": AZURE_OK}),
    "check_calibration_gpu_spec": Case(CHECK, names=("this is a GPU spec", "hardware.gpu"),
                                       files={"f": GPU_FILE.format(kind="pcie4")}),
    "check_calibration_sidecar": Case(["--check-calibration", "{tmp}/m.txt.json", *SERVE],
                                      names=("this is a learned model's sidecar", "(m.txt)", "cache.learned_model"),
                                      files={"m.txt.json": SIDECAR}),
    "overlay_lightgbm_model": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/m.txt"],
                                   names=("this is a LightGBM model", "cache.learned_model"),
                                   files={"m.txt": "tree\nversion=v4\nnum_class=1\n", "t.csv": AZURE_OK}),
    "config_a_mooncake_trace": Case([*TRACE_STATS, "--config", "{tmp}/m.jsonl"],
                                    names=("config file", "this is a trace (mooncake format)", "--workload-trace"),
                                    files={"m.jsonl": MOONCAKE_OK, "t.csv": AZURE_OK}),
    "trace_an_overlay": Case(["--trace-stats", "--no-plot", "--quiet", "--workload-trace", "{tmp}/o.yaml"],
                             names=("trace", "o.yaml", "this is a YAML file of config keys", "--calibration-profile"),
                             files={"o.yaml": "# an overlay\nserving: {block_size: 32}\n"}),
    "trace_a_sweep_spec": Case(["--trace-stats", "--no-plot", "--quiet", "--workload-trace", "{tmp}/s.yaml"],
                               names=("this is a sweep spec", "--sweep"),
                               files={"s.yaml": "mode: cache-only\naxes: {cache.policy: [lru]}\n"}),
    "gpu_spec_an_ns3_table": Case([*SERVE, "--workload-trace", "{tmp}/t.csv", "--set", "hardware.gpu={tmp}/n.json"],
                                  names=("GPU spec", "this is an NS-3 network lookup table, not a GPU spec"),
                                  files={"n.json": NS3, "t.csv": AZURE_OK}),
    "ns3_table_a_trace": Case(["--pd", *SERVE, "--workload-trace", "{tmp}/t.csv", "--set", "network.lookup={tmp}/t.csv"],
                              names=("network lookup table", "this is a trace (azure format), not an NS-3 table"),
                              files={"t.csv": AZURE_OK}),
    "learned_model_its_sidecar": Case([*CACHE_ONLY, "--workload-trace", "{tmp}/t.csv", "--policy", "learned", "--set",
                                       "cache.learned_model={tmp}/m.txt.json"],
                                      names=("this is a learned model's sidecar", "the model beside it (m.txt)"),
                                      files={"m.txt.json": SIDECAR, "t.csv": AZURE_OK}),
}
CASES.update(OTHER_KINDS)

# A fixed `{}` (and --set KEY={}) is refused as setting nothing; an axis value `{}` ran as an unnamed point of the base
# config, its row's axis cell '{}' saying nothing of the value it ran with. Refused alike (README: axes are "dotted
# config keys to lists of values"; the CSV names a point's value under each axis key)
CASES.update({
    "sweep_axis_value_empty_mapping": _with(sweep("axes: {cache.tiers.hbm: [{}, {capacity_gib: 1}]}\n"),
                                            "axis 'cache.tiers.hbm'", "value 1", "empty mapping", "sets nothing"),
    "sweep_zip_value_nested_empty": _with(sweep("zip:\n  - {cache: [{policy: arc}, {tiers: {}}], seed: [1, 2]}\n"),
                                          "zip group 1 key 'cache'", "value 2", "sets nothing"),
})


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_yaml_date_keeps_its_text_through_copies():
    """A config layer is deep-copied and sent to worker processes (pickle): the date's text must survive both, or a
    sweep point's message falls back to Python's spelling."""
    import copy
    import pickle

    from sim.config_yaml import load_yaml
    from sim.errors import quote

    data = load_yaml("a: 2024-1-1 1:00:00\nb: 2024-01-01")
    for copied in (copy.deepcopy(data), pickle.loads(pickle.dumps(data))):
        assert quote(copied["a"]).startswith("2024-1-1 1:00:00, a date")
        assert repr(copied["b"]) == "2024-01-01"


# A LightGBM model edited by hand (its sidecar's hash updated to match). An edit that keeps each tree's length got
# past the size check: a child index outside the tree crashed the process (SIGSEGV, exit 139), a split on feature 99
# of 19, a NaN threshold or an unknown decision_type ran silently. One that changed a tree's length named the tree
# after it "incomplete".
def _same_length(text: str, key: str, new: str) -> str:
    """``text`` with the first value of a ``key=`` line that is as long as ``new`` replaced by it (the tree's length
    kept; a one-leaf tree's split lines are empty)."""
    found = next(m for m in re.finditer(rf"^{key}=(\S+)", text, re.M) if len(m.group(1)) == len(new))
    return text[:found.start(1)] + new + text[found.end(1):]


def _resave(model, tmp_path, text: str):
    import hashlib
    import json

    from learned.model import sidecar_path

    meta = json.loads(sidecar_path(model).read_text())
    meta["model_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    target = tmp_path / "model.txt"
    target.write_text(text)
    sidecar_path(target).write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize("key, value, said", [
    ("split_feature", "99", "splits on a feature outside the model's 19"),  # (max_feature_idx=18)
    ("threshold", "nan", "NaN split threshold"),  # (padded to the value's length: a float's repr, ~19 characters)
    ("decision_type", "9", "decision_type LightGBM does not write"),  # (categorical, in a model with none)
    ("left_child", "0", "child index (0)"),  # the root its own child: a cycle
    ("right_child", "-1", "is not a tree"),  # leaf 0 reached twice (it is always a left child), another never
])
def test_an_edited_tree_is_refused_naming_it(key, value, said, small_learned_model, tmp_path):
    from learned.model import LearnedModel
    from sim.errors import InputError

    text = small_learned_model.read_text()
    threshold_length = len(re.search(r"^threshold=(\S+)", text, re.M).group(1))
    value = value if key != "threshold" else value.rjust(threshold_length)
    edited = _same_length(text, key, value)
    assert len(edited) == len(text) and edited != text
    with pytest.raises(InputError) as refused:
        LearnedModel.load(_resave(small_learned_model, tmp_path, edited))
    assert said in str(refused.value) and "model.txt" in str(refused.value), refused.value


def test_an_infinite_threshold_lightgbm_writes_is_read():
    """LightGBM splits a feature's values from its missing ones at ``threshold=inf`` (decision_type 8: missing NaN,
    not default-left) where the values span zero (its zero bin): a model it wrote so was refused as "non-finite"."""
    import lightgbm as lgb

    from learned.sidecar import model_text_defect

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4000, 2))
    y = (rng.random(4000) < 0.5).astype(int)
    x[y == 1, 0] = np.nan  # missing exactly where the label is 1: the first split separates them
    text = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 3}, lgb.Dataset(x, y),
                     num_boost_round=1).model_to_string()
    assert re.search(r"^threshold=inf ", text, re.M), "LightGBM no longer writes the infinite threshold"
    assert model_text_defect(text) is None


def test_a_model_of_no_trees_lightgbm_writes_is_read():
    """LightGBM writes a model of no trees ("tree_sizes=", then "end of trees": the rounds from past its last one) and
    reads it back as zero trees; it was refused as "not a LightGBM model". Emptying a model's tree_sizes before its
    trees, which LightGBM reads as zero trees too (every tree silently dropped), is still refused."""
    import lightgbm as lgb

    from learned.sidecar import model_text_defect

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
                        lgb.Dataset(x, y), num_boost_round=2)
    empty = booster.model_to_string(start_iteration=2)
    assert "\ntree_sizes=\n\nend of trees\n" in empty
    assert lgb.Booster(model_str=empty).num_trees() == 0  # LightGBM's own reading of it
    assert model_text_defect(empty) is None
    full = booster.model_to_string()
    emptied = re.sub(r"^tree_sizes=.*$", "tree_sizes=", full, count=1, flags=re.M)
    assert lgb.Booster(model_str=emptied).num_trees() == 0  # (the trees it holds are ignored)
    assert "tree_sizes do not make whole boosting rounds" in model_text_defect(emptied)
    assert "does not hold" in model_text_defect(empty.replace("tree_sizes=\n", "tree_sizes=9 9 9\n"))
    assert "num_tree_per_iteration (3)" in model_text_defect(empty.replace("num_class=3\n", "num_class=2\n"))


# Shapes of model LightGBM writes (src/io/tree.cpp, Tree::ToString) that the model-text check must let through, each
# with the mark it leaves in the text: categorical splits (num_cat, decision_type 1: kCategoricalMask), linear trees
# (is_linear=1 and leaf_coeff), zero as missing (decision_type 4 or 6: missing type Zero), missing values not used (a
# split at kZeroThreshold, 1e-35f), random forests (the header's average_output), trees of one leaf only, a class no
# training row has (a one-leaf tree in each round among trees that split)
@pytest.mark.parametrize("params, mark", [
    ({"categorical": True}, r"^num_cat=[1-9]\n(?:.*\n){3}decision_type=(?:.* )?1\b"),
    ({"linear_tree": True}, r"^is_linear=1\nleaf_const="),
    ({"zero_as_missing": True}, r"^decision_type=.*\b[46]\b"),
    ({"use_missing": False}, r"^threshold=.*\b1.0000000180025095e-35\b"),
    ({"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, r"^average_output$"),
    ({"min_data_in_leaf": 5000}, r"^num_leaves=1$"),
    ({"absent_class": True}, r"^num_leaves=1$(?s:.*)^num_leaves=[2-9]$"),
])
def test_shapes_of_model_lightgbm_writes_are_read(params, mark):
    import lightgbm as lgb

    from learned.sidecar import model_text_defect

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2000, 4)), rng.integers(0, 3, 2000)
    x[:, 0] += y
    x[y == 2, 1] = 0.0  # (zero as missing splits here)
    kwargs = {}
    if params.pop("categorical", False):
        x[:, 2] = np.where(y == 1, 3, rng.integers(0, 10, 2000))
        kwargs["categorical_feature"] = [2]
    if params.pop("absent_class", False):
        y[y == 2] = 1  # class 2 of 4: none
    params = {"objective": "multiclass", "num_class": 4, "verbose": -1, "num_leaves": 5, "num_threads": 1, **params}
    text = lgb.train(params, lgb.Dataset(x, y, **kwargs), num_boost_round=3).model_to_string()
    assert re.search(mark, text, re.M), f"LightGBM no longer writes {mark}"
    lgb.Booster(model_str=text).predict(x[:3])  # LightGBM reads and runs it
    assert model_text_defect(text) is None


def test_a_child_outside_the_tree_is_exit_2_not_a_crash(small_learned_model, tmp_path):
    """A child index past the tree's nodes: LightGBM read past its arrays (SIGSEGV, exit 139, no message)."""
    model = _resave(small_learned_model, tmp_path, _same_length(small_learned_model.read_text(), "left_child", "99"))
    done = subprocess.run([sys.executable, "main.py", "--cache-only", "--policy", "learned", "--set",
                           f"cache.learned_model={model}", "--set", "serving.block_size=512", "--seed", "1",
                           "--capacity-blocks", "100", "--no-plot", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "child index (99)" in done.stderr, (done.returncode, done.stderr[-500:])


def test_a_tree_edited_to_another_length_is_named_itself(small_learned_model, tmp_path):
    """The tree edited is named, not the next one ("tree 1 is incomplete" of an edit to tree 0)."""
    from learned.model import LearnedModel
    from sim.errors import InputError

    text = small_learned_model.read_text()
    found = re.search(r"^leaf_value=(\S+)", text, re.M)  # tree 0's
    edited = text[:found.start(1)] + "0" + text[found.end(1):]
    assert len(edited) != len(text)
    with pytest.raises(InputError) as refused:
        LearnedModel.load(_resave(small_learned_model, tmp_path, edited))
    assert "tree 0 is not the 243 bytes" in str(refused.value), refused.value
