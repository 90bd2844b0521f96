"""Config: validation names the dotted path; layers apply in order; config.yaml documents the defaults."""

from __future__ import annotations

import pytest
import yaml

from sim.config import Config, load_config
from sim.config_yaml import parse_set
from sim.errors import ConfigError
from tests.conftest import ROOT


def test_config_yaml_equals_dataclass_defaults():
    assert load_config(ROOT / "config.yaml") == Config()


def test_every_contract_key_exists():
    c = Config()
    for dotted in [
        "model", "hardware.gpu", "serving.tensor_parallel_size", "serving.block_size", "serving.max_num_seqs",
        "serving.max_num_batched_tokens", "serving.gpu_memory_utilization", "serving.num_gpu_blocks",
        "serving.enable_prefix_caching", "serving.num_instances", "compute.backend", "compute.profile",
        "cache.policy", "cache.learned_model", "network.bandwidth_gbps", "network.latency_us", "network.lookup",
        "pd.num_prefill", "pd.num_decode", "pd.transfer", "slo.ttft_s", "slo.tpot_s", "slo.attainment",
    ] + [f"cache.tiers.{t}.{k}" for t in ("hbm", "dram", "ssd", "eic")
         for k in ("capacity_gib", "read_gbps", "write_gbps", "latency_us")]:
        node = c
        for part in dotted.split("."):
            assert hasattr(node, part), dotted
            node = getattr(node, part)


def test_unknown_key_in_file_names_dotted_path_and_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cache": {"tiers": {"dram": {"capacity_gb": 4}}}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "cache.tiers.dram.capacity_gb" in msg and str(path) in msg
    assert "capacity_gib" in msg  # the valid keys at that level


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"serving\.block_size.*expected int"):
        load_config(None, sets=["serving.block_size=sixteen"])
    with pytest.raises(ConfigError, match=r"pd\.transfer.*one of"):
        load_config(None, sets=["pd.transfer=teleport"])
    with pytest.raises(ConfigError, match=r"serving\.enable_prefix_caching.*bool"):
        load_config(None, sets=["serving.enable_prefix_caching=3"])


def test_set_values_are_yaml_scalars_and_validated():
    c = load_config(None, sets=["cache.tiers.dram.capacity_gib=64", "serving.num_gpu_blocks=2588",
                                "slo.ttft_s=null", "cache.policy=arc", "network.bandwidth_gbps=1e2"])
    assert c.cache.tiers.dram.capacity_gib == 64.0 and isinstance(c.cache.tiers.dram.capacity_gib, float)
    assert c.serving.num_gpu_blocks == 2588 and c.slo.ttft_s is None and c.cache.policy == "arc"
    assert c.network.bandwidth_gbps == 100.0
    with pytest.raises(ConfigError, match="cache.tierz"):
        load_config(None, sets=["cache.tierz.hbm.capacity_gib=1"])
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_set("no-equals-sign")


def test_layers_apply_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("serving: {block_size: 32, max_num_seqs: 8}\n")
    b.write_text("serving: {block_size: 64}\n")
    c = load_config(ROOT / "config.yaml", overlays=[a, b], sets=["serving.max_num_seqs=4"])
    assert c.serving.block_size == 64  # later overlay wins
    assert c.serving.max_num_seqs == 4  # --set after overlays
    assert c.serving.max_num_batched_tokens == Config().serving.max_num_batched_tokens  # untouched keys kept


def test_overlay_error_names_the_overlay(tmp_path):
    bad = tmp_path / "calib.yaml"
    bad.write_text("compute: {backnd: profiled}\n")
    with pytest.raises(ConfigError, match=r"calib\.yaml.*compute\.backnd"):
        load_config(None, overlays=[bad])


def test_presets_scale_the_run():
    assert load_config(None, preset="smoke").workload.limit == 2000
    assert load_config(None, preset="prod-eval").workload.limit is None
    # --set after the preset wins
    assert load_config(None, preset="smoke", sets=["workload.limit=7"]).workload.limit == 7
    with pytest.raises(ConfigError, match="valid presets"):
        load_config(None, preset="huge")


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_config_is_frozen():
    c = Config()
    with pytest.raises(Exception):
        c.serving.block_size = 8  # type: ignore[misc]


def test_cli_unknown_key_exits_2_naming_path(run_cli):
    status, _, err = run_cli("--trace-stats", "--set", "workload.synthetic.kindd=rag", "--no-plot")
    assert status == 2
    assert "workload.synthetic.kindd" in err and "num_requests" in err


def test_partial_nested_section_keeps_that_fields_own_defaults():
    c = load_config(None, sets=["cache.tiers.dram.capacity_gib=8"])
    assert c.cache.tiers.dram.capacity_gib == 8.0
    assert c.cache.tiers.dram.read_gbps == Config().cache.tiers.dram.read_gbps  # not TierConfig()'s 0.0
    assert c.cache.tiers.ssd == Config().cache.tiers.ssd


def _numeric_fields(cls=Config, prefix=""):
    """(dotted key, field, base type) of every int/float field of the schema, recursively."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        default = getattr(cls(), f.name) if dataclasses.is_dataclass(cls) else None
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, key + ".")
            continue
        base = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if base[0] in (int, float) and not isinstance(default, bool):
            yield key, f, base[0]


def test_every_numeric_key_declares_its_domain():
    """A new int/float key must say which values it accepts (sim.config_fields.domain)."""
    undeclared = [key for key, f, _ in _numeric_fields() if "domain" not in f.metadata]
    assert undeclared == []


@pytest.mark.parametrize("key", [key for key, _, _ in _numeric_fields()])
def test_value_just_outside_each_domain_names_the_key(key):
    fields = {k: (f, tp) for k, f, tp in _numeric_fields()}
    f, tp = fields[key]
    domain = f.metadata["domain"]
    step = 1 if tp is int else 1e-6
    outside = []
    if domain.gt is not None:
        outside.append(domain.gt)
    if domain.ge is not None:
        outside.append(domain.ge - step)
    if domain.le is not None:
        outside.append(domain.le + step)
    if domain.lt is not None:
        outside.append(domain.lt)
    assert outside, f"{key}: a domain with no bound"
    for value in outside:
        with pytest.raises(ConfigError, match=rf"'{key}'.*must be"):
            load_config(None, sets=[f"{key}={tp(value)!r}"])


def test_duplicate_keys_rejected_at_any_depth_but_merge_keys_may_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cache:\n  tiers:\n    dram: {capacity_gib: 1, capacity_gib: 2}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 3 .*duplicate key 'capacity_gib'"):
        load_config(path)
    path.write_text("presets:\n  base: &b {workload.limit: 5}\n  mine: {<<: *b, workload.limit: 7}\n")
    assert load_config(path, preset="mine").workload.limit == 7


def test_an_overlays_presets_replace_the_bases_while_other_sections_merge(tmp_path):
    """An overlay's presets are a new set (the base's are gone), while its other sections merge key by key."""
    base, overlay = tmp_path / "base.yaml", tmp_path / "o.yaml"
    base.write_text("presets:\n  a: {workload.limit: 5}\ncache:\n  tiers:\n    dram: {capacity_gib: 1, read_gbps: 9}\n")
    overlay.write_text("presets:\n  b: {workload.limit: 7}\ncache:\n  tiers:\n    dram: {capacity_gib: 2}\n")
    config = load_config(base, overlays=[overlay], preset="b")
    assert set(config.presets) == {"b"} and config.workload.limit == 7
    assert (config.cache.tiers.dram.capacity_gib, config.cache.tiers.dram.read_gbps) == (2, 9)
    with pytest.raises(ConfigError, match="unknown preset 'a'; valid presets: b"):
        load_config(base, overlays=[overlay], preset="a")


def test_a_preset_an_overlays_presets_replaced_is_refused_naming_the_overlay(tmp_path):
    """--preset smoke beside an overlay whose presets define only another was refused as "unknown preset 'smoke';
    valid presets: " (an empty list where the overlay had PRESET@MODE parts alone, now refused as the file is read:
    test_bad_inputs' preset_part_of_no_preset), naming neither the overlay nor why config.yaml's smoke was gone
    (hfuzz9)."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text("presets:\n  mine: {seed: 1}\n  mine@cache-only: {workload.limit: 5}\n")
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "config.yaml", overlays=[overlay], preset="smoke")
    assert str(error.value) == (f"unknown preset 'smoke'; valid presets: mine (calibration profile {overlay}'s "
                                "'presets:' replaced those before it, 'smoke' among them: a file's presets are a new "
                                "set; copy it there)")
    overlay.write_text("presets: {}\n")  # (a new set of none)
    with pytest.raises(ConfigError, match=r"^unknown preset 'smoke'; valid presets: none \(calibration profile"):
        load_config(ROOT / "config.yaml", overlays=[overlay], preset="smoke")


def test_a_preset_for_one_mode_alone_applies_in_that_mode(tmp_path):
    """PRESET: {} beside a PRESET@MODE part is a preset for that mode alone (the file check refuses a preset that sets
    nothing only where no part of it is given): its part applies in its mode; in another, --preset is refused."""
    path = tmp_path / "c.yaml"
    path.write_text("presets:\n  mine: {}\n  mine@cache-only: {seed: 7}\n")
    assert load_config(path, preset="mine", mode="cache-only").seed == 7
    # in another mode it sets nothing, and ran as none, unsaid: refused, naming the part and its mode
    with pytest.raises(ConfigError, match=r"^--preset mine sets nothing in single runs: 'mine' sets no key, and its "
                                          r"part mine@cache-only applies in that mode alone$"):
        load_config(path, preset="mine", mode="single")


def test_whole_config_rules_see_every_layer_together(tmp_path):
    """A rule relating two keys judges the resolved config, not each layer: an overlay that sets TP=2
    with a model whose heads it divides passes, though TP=2 alone is fine and the model alone too."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text("model: qwen2-7b\n")  # 28 attention heads, 4 KV heads
    assert load_config(None, overlays=[overlay], sets=["serving.tensor_parallel_size=4",
                                                                 "serving.num_instances=2"]).serving.tensor_parallel_size == 4
    with pytest.raises(ConfigError, match="tensor_parallel_size'=8 does not fit model qwen2-7b"):
        load_config(None, overlays=[overlay], sets=["serving.tensor_parallel_size=8",
                                                                 "serving.num_instances=1"])


def test_request_bound_judges_only_the_parts_the_kind_generates():
    """rag's documents (2 x 2,048 tokens by default) do not count against a multi-turn workload's bound."""
    config = load_config(None, sets=["workload.max_request_tokens=1500"])
    assert config.workload.synthetic.kind == "multi-turn"
    with pytest.raises(ConfigError, match="document_tokens"):
        load_config(None, sets=["workload.max_request_tokens=1500", "workload.synthetic.kind=rag"])


def test_yaml_numbers_read_as_written():
    """The strict YAML loader reads ``1e-9`` as the number it is (YAML 1.1, which PyYAML implements, made it a string:
    a plan's ``rate_tolerance: 1e-3`` was "not a number") and ``1:3`` as text (YAML 1.1's base 60 made it 63: a PD
    split written unquoted); the other number forms read as YAML 1.1 reads them."""
    from sim.config_yaml import load_yaml

    assert load_yaml("a: 1e-9\nb: 3E5\nc: -2e+3\nd: 1.5e3\ne: 1.0e-9\nf: .5") == {
        "a": 1e-9, "b": 3e5, "c": -2e3, "d": 1500.0, "e": 1e-9, "f": 0.5}
    assert load_yaml("s: [1:3, 1:30, 2:1]") == {"s": ["1:3", "1:30", "2:1"]}
    assert load_yaml("i: 10\nj: 1_000\nk: 0x1f\nl: -3\nm: .inf") == {"i": 10, "j": 1000, "k": 31, "l": -3,
                                                                      "m": float("inf")}
    assert load_config(None, sets=["workload.rate_scale=2e0"]).workload.rate_scale == 2.0


@pytest.mark.parametrize("text, said", [
    ("seed: 0o17", "octal (15)"), ("seed: -0o10", "octal (-8)"),
    ("workload:\n  rate_scale: 1e400", "beyond a float's range"), ("slo:\n  ttft_s: -2.5e308", "beyond a float's range"),
    ("slo:\n  ttft_s: 1e-400", "below a float's smallest")])
def test_a_number_yaml_versions_read_apart_is_refused_at_its_line(run_cli, tmp_path, text, said):
    """YAML 1.2's octal ``0o17`` is text to YAML 1.1 (the message said "expected int, got '0o17'" as if a word had been
    written), and ``1e400`` is past a float (read as infinite: "must be a finite number, got inf", not what was
    written), and ``1e-400`` is below the smallest float (read as 0: a positive setting silently zero): each is refused
    where it is read, quoting the text and naming the file's line. Quoted, 0o17 is the string it says it is."""
    config = tmp_path / "c.yaml"
    config.write_text(text + "\n")
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet")
    written = text.rpartition(" ")[2]
    assert status == 2 and said in err and f"'{written}'" in err and "line" in err and "c.yaml" in err, err
    assert len(err.strip().splitlines()) == 1, err
    from sim.config_yaml import load_yaml

    assert load_yaml("name: '0o17'") == {"name": "0o17"}
    # the smallest floats still read (a subnormal is not 0), and a zero however written is 0
    assert load_yaml("a: 5e-324\nb: 0.0e-400\nc: -0.0\nd: 0e5") == {"a": 5e-324, "b": 0.0, "c": 0.0, "d": 0.0}


@pytest.mark.parametrize("key, text, number", [
    ("workload.rate_scale", "'2'", 2.0), ("workload.rate_scale", '"1e9"', 1e9), ("slo.ttft_s", "'0.5'", 0.5),
    ("seed", "'5'", 5)])
def test_a_quoted_number_is_refused_for_a_number_key(run_cli, tmp_path, key, text, number):
    """A number key takes a number, not a string: the loader reads every number form unquoted (``1e9`` included,
    test_yaml_numbers_read_as_written), so a string there was quoted. ``seed: '5'`` was refused while
    ``rate_scale: '2'`` (a float key) ran at 2; both are exit 2 now, one line naming the key and saying it was quoted.
    Unquoted, and on --set (the shell has taken its quotes), the same number is read."""
    section, _, leaf = key.rpartition(".")
    config = tmp_path / "c.yaml"
    config.write_text(f"{section}:\n  {leaf}: {text}\n" if section else f"{leaf}: {text}\n")
    status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet")
    assert status == 2 and f"'{key}'" in err and "a quoted string" in err and len(err.strip().splitlines()) == 1, err

    def read(config):
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        return node

    plain = text.strip("'\"")
    config.write_text(config.read_text().replace(text, plain))
    assert read(load_config(config)) == number
    assert read(load_config(None, sets=[f"{key}={plain}"])) == number


@pytest.mark.parametrize("flag, named", [("--config", "config file"), ("--calibration-profile", "calibration profile")])
@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_config_file_or_overlay_is_refused(run_cli, tmp_path, flag, named, text):
    """An empty file (a wrong path's, a truncated one) would run the defaults without a word; sweep specs and plans
    are refused alike."""
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    status, _, err = run_cli(flag, empty, "--workload-limit", "5", "--no-plot")
    assert status == 2 and f"{named} {empty} is empty" in err and len(err.strip().splitlines()) == 1, err


def test_trace_path_from_the_home_folder(tmp_path, monkeypatch):
    """A config file and --set are read by no shell: "workload.trace: ~/traces/t.csv" was a folder named "~" (in a
    YAML file, under the file's own folder), refused as "does not exist". A path starting with ~ is in the home
    folder (HOME here: tmp_path/home), whichever layer writes it; a ~ inside a path is a name like any other."""
    home = tmp_path / "home"
    (home / "traces").mkdir(parents=True)
    (home / "traces" / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,100,10\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "c.yaml").write_text("workload: {trace: ~/traces/t.csv}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    expected = str(home / "traces" / "t.csv")
    assert load_config("cfg/c.yaml").workload.trace == expected
    assert load_config(sets=["workload.trace=~/traces/t.csv"]).workload.trace == expected
    assert load_config(flags=[("--workload-trace", "workload.trace", "~/traces/t.csv")]).workload.trace == expected
    with pytest.raises(ConfigError, match="'a~/t.csv' does not exist"):
        load_config(sets=["workload.trace=a~/t.csv"])


def test_a_report_is_the_same_from_any_working_directory(run_cli, tmp_path, monkeypatch):
    """A config file named by its absolute path, naming its trace relative to itself: the same command in two working
    directories wrote reports that differed (the trace, as every path key, was re-spelled relative to the working
    directory: '../data/t.csv' in one, '../../data/t.csv' one folder down). Byte-identical apart from timing now."""
    import json

    data = tmp_path / "data"
    data.mkdir()
    (data / "t.jsonl").write_text("".join(f'{{"timestamp": {i}, "input_length": 600, "output_length": 2, '
                                          f'"hash_ids": [1, {i + 2}]}}\n' for i in range(5)))
    config = data / "c.yaml"
    config.write_text(yaml.safe_dump({"workload": {"trace": "t.jsonl"}}))
    reports = []
    for where in (tmp_path / "a", tmp_path / "b" / "c"):
        where.mkdir(parents=True)
        monkeypatch.chdir(where)
        status, _, err = run_cli("--config", config, "--trace-stats", "--no-plot", "--quiet", "--report-json", "r.json")
        assert status == 0, err
        report = json.loads((where / "r.json").read_text())
        report.pop("timing")
        reports.append(report)
    assert reports[0] == reports[1]
    assert reports[0]["config"]["workload"]["trace"] == str(data / "t.jsonl")  # spelled as the config file was named


def test_cross_field_bounds_hold_at_their_edges():
    """serving.max_model_len may equal the model's context (opt-13b: 2,048 tokens), not exceed it (vLLM's
    _get_and_verify_max_len); a request range must hold a request: range_start equal to range_end is refused."""
    assert load_config(None, sets=["model=opt-13b", "serving.max_model_len=2048"]).serving.max_model_len == 2048
    with pytest.raises(ConfigError, match="exceeds model opt-13b's context of 2048 tokens"):
        load_config(None, sets=["model=opt-13b", "serving.max_model_len=2049"])
    with pytest.raises(ConfigError, match="'workload.range_start'=0.5 and 'workload.range_end'=0.5: start must be below"):
        load_config(None, sets=["workload.range_start=0.5", "workload.range_end=0.5"])


def test_a_data_parallel_group_must_fit_one_node_in_gpus_not_only_in_ranks():
    """A data-parallel group is data_parallel_size x tensor_parallel_size GPUs of one node: 2 x 4 = 8 fits an
    8-GPU node; 4 x 4 = 16 does not, though 4 ranks alone would."""
    moe = ["model=qwen3-30b-a3b", "hardware.gpus_per_node=8", "serving.tensor_parallel_size=4"]
    load_config(None, sets=[*moe, "serving.data_parallel_size=2", "serving.num_instances=2"])
    with pytest.raises(ConfigError, match="'serving.data_parallel_size'=4 x tensor_parallel_size 4 needs 16 GPUs"):
        load_config(None, sets=[*moe, "serving.data_parallel_size=4", "serving.num_instances=4"])
