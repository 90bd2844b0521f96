"""Bad input, round 9 (helper hfuzz8): round 8's leftovers and the deeper file formats (learned models and sidecars,
calibration tables, NS-3 tables, sweep and plan specs, the CSV writers, workload caches). Each case was a traceback
(exit 1), a message that said something untrue or unreadable, or a run that went ahead where one line and exit 2
belonged before the work."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input, setting

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
