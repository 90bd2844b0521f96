"""Bad input, round 18 (helper hfuzz12): the leftovers of round 17 (GPU specs and link overrides, plans and sweeps'
empty sections, hand-edited journals) and the surfaces least fuzzed (trace encodings, output paths, odd flag pairs).
Each case ran at exit 0 on a value no real part or tool has, or crashed, where one line and exit 2 belonged."""

from __future__ import annotations

import pytest

from sim.errors import ConfigError


def test_a_link_override_past_the_gpus_memory_bandwidth_is_refused(run_cli):
    # hardware.gpu_link_gbps had no upper bound: 10^30 GB/s beside an H100 (3,350 GB/s of HBM3) ran its collectives
    # free at exit 0. An RTX 4090's GDDR6X gives 1,008 GB/s (profiles/gpus.yaml, NVIDIA's Ada whitepaper): a link at
    # that rate is the what-if's limit and still runs; a GB/s past it is refused, naming the key and both rates
    from sim.config import load_config
    from sim.serving.compute_backend import compute_model

    base = ["hardware.gpu=rtx4090", "serving.tensor_parallel_size=2"]
    compute_model(load_config(None, sets=[*base, "hardware.gpu_link_gbps=1008"]))
    with pytest.raises(ConfigError, match=r"hardware.gpu_link_gbps 1009 is above rtx4090's memory bandwidth \(1008 "):
        compute_model(load_config(None, sets=[*base, "hardware.gpu_link_gbps=1009"]))
    status, _, err = run_cli("--cluster", "--pd", "--preset", "smoke", "--quiet", "--no-plot",
                             "--set", "hardware.gpu_link_gbps=1e30")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "hardware.gpu_link_gbps 1e+30" in err and "(3350 GB/s)" in err, err


def test_a_pcie_rate_past_the_gpus_memory_bandwidth_is_refused_never_the_default(run_cli, tmp_path):
    # hardware.pcie_gbps had no upper bound: 10^30 GB/s ran a cluster's host traffic free at exit 0. A host link's bytes
    # are written into the GPU's memory: an RTX 4090's 1,008 GB/s (profiles/gpus.yaml) is the limit, 1,009 refused.
    # The default (config.yaml's 63 GB/s, PCIe 5.0 x16) is never refused: not beside any bundled GPU, nor beside a
    # GPU spec file whose memory is slower than it (10 GB/s: the bound is the larger of the two)
    from sim.config import load_config
    from sim.serving.compute_backend import pcie_bandwidth
    from sim.specs import known_gpus

    assert pcie_bandwidth(load_config(None, sets=["hardware.gpu=rtx4090", "hardware.pcie_gbps=1008"])) == 1008e9
    with pytest.raises(ConfigError, match=r"hardware.pcie_gbps 1009 is above rtx4090's memory bandwidth \(1008 "):
        pcie_bandwidth(load_config(None, sets=["hardware.gpu=rtx4090", "hardware.pcie_gbps=1009"]))
    for gpu in known_gpus():
        assert pcie_bandwidth(load_config(None, sets=[f"hardware.gpu={gpu}"])) == 63e9, gpu
    slow = tmp_path / "slow.yaml"
    slow.write_text("dense_bf16_tflops: 100\nmemory_gib: 24\nmemory_bandwidth_gbps: 10\nsource: a what-if\n"
                    "link: {kind: pcie5-x16, bandwidth_gbps: 24, step_latency_us: 5}\n")
    assert pcie_bandwidth(load_config(None, sets=[f"hardware.gpu={slow}"])) == 63e9
    with pytest.raises(ConfigError, match=r"hardware.pcie_gbps 64 is above .*slow.yaml's memory bandwidth \(10 "):
        pcie_bandwidth(load_config(None, sets=[f"hardware.gpu={slow}", "hardware.pcie_gbps=64"]))
    status, _, err = run_cli("--cluster", "--preset", "smoke", "--quiet", "--no-plot", "--set", "hardware.pcie_gbps=1e30")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "hardware.pcie_gbps 1e+30" in err and "(3350 GB/s)" in err, err


def test_an_output_through_a_link_to_a_folder_not_yet_made_is_written_there(run_cli, tmp_path):
    # out -> made/later (a link to a folder not there yet): --report-json out/r.json and --plot-dir out/p were
    # checked writable, the run went on, and the write then failed ('cannot write out/r.json: File exists': mkdir
    # of the link itself), exit 2 after the work. A dangling link to a file is written through (its target made,
    # the link kept); so is one to a folder now: the report and the plot land in made/later
    (tmp_path / "out").symlink_to(tmp_path / "made" / "later")
    status, _, err = run_cli("--cache-only", "--preset", "smoke", "--quiet", "--report-json", tmp_path / "out" / "r.json",
                             "--plot-dir", tmp_path / "out" / "p")
    assert status == 0, err
    assert (tmp_path / "made" / "later" / "r.json").is_file() and (tmp_path / "out").is_symlink()
    assert [p.suffix for p in (tmp_path / "made" / "later" / "p").iterdir()] == [".png"]


@pytest.mark.parametrize("flag", ["--report-json", "--report-csv", "--html", "--plot-dir"])
def test_an_output_in_a_loop_of_links_is_refused_before_the_run(flag, run_cli, tmp_path, monkeypatch):
    # a -> b -> a: the folder an output goes in can never be made; it was found by the write at the end (exit 2,
    # 'cannot write a/r.json: File exists'), now as the flags are read, before the workload loads
    import trace.workload

    def no_run(*_args, **_kwargs):
        raise AssertionError("the run started before its output was checked")

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    monkeypatch.setattr(trace.workload, "load_workload", no_run)
    out = tmp_path / "a" / ("p" if flag == "--plot-dir" else "r.out")
    status, _, err = run_cli("--cache-only", "--preset", "smoke", "--quiet", flag, out,
                             *(["--no-plot"] if flag != "--plot-dir" else []))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{flag} '{out}': Too many levels of symbolic links" in err, err


@pytest.mark.parametrize("flag", ["--report-json", "--plot-dir"])
def test_an_output_below_a_file_names_the_file_as_written(flag, run_cli, tmp_path, monkeypatch):
    # a file two folders up (f/x/...): the check following links (c280318) stopped at the file with ENOTDIR and said
    # only "Not a directory"; a file just above said it with the path made absolute. Both name the file as the
    # flag gave it, as before that change: "f is not a directory"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("")
    for out in ("f/x/r.json", "f/r.json"):
        status, _, err = run_cli("--cache-only", "--preset", "smoke", "--quiet", flag, out,
                                 *(["--no-plot"] if flag != "--plot-dir" else []))
        assert status == 2 and err.strip() == f"kvsim: error: {flag} '{out}': f is not a directory", err


@pytest.mark.parametrize("sessions", ["100000000000", "9000000000000000000"])
def test_agentic_sessions_past_the_request_bound_are_refused(sessions, run_cli):
    # workload.synthetic.num_sessions had no upper bound: an agentic workload starting empty draws every session's
    # start and steps at once, so 10^11 sessions ran out of memory (745 GiB for one array) and 9e18 was numpy's
    # "array is too big", each an internal error (exit 1). Bounded as the requests and the other pools are
    from sim.config import load_config

    status, _, err = run_cli("--cache-only", "--quiet", "--no-plot", "--set", "workload.synthetic.num_requests=50",
                             "--set", "workload.synthetic.kind=agentic", "--set", "workload.synthetic.start=empty",
                             "--set", f"workload.synthetic.num_sessions={sessions}")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"'workload.synthetic.num_sessions' must be >= 1 and <= 100,000,000, got {sessions}" in err, err
    bound = load_config(None, sets=["workload.synthetic.kind=agentic", "workload.synthetic.num_sessions=100000000"])
    assert bound.workload.synthetic.num_sessions == 10**8
