"""The report's config echo (Contract: "the full resolved config"): a key the run derives where it is null is echoed
at the value the run used (``sim.report.config_echo``), where the mode reads it; fed back as ``--config``, the echo
gives the same runs and the same echo. It echoed ~30 nulls: a block size, engine limits, a rack's uplink as asked."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE

AZURE = ["--workload-trace", BUNDLED_AZURE, "--workload-limit", "60"]
CLUSTER = ["--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=2",
           "--set", "network.bandwidth_gbps=100", "--set", "cluster.oversubscription=4"]


def _report(run_cli, path, *argv) -> dict:
    status, _, err = run_cli(*argv, "--report-json", path, "--no-plot", "--quiet")
    assert status == 0, err
    return json.loads(path.read_text())


def test_a_serving_run_echoes_the_limits_and_block_size_it_ran_with(run_cli, tmp_path):
    # Llama-3.1-8B on an A100: vLLM's 16-token blocks, its small tier's 256 sequences and 2,048 tokens a step
    # (vllm/engine/arg_utils.py get_batch_defaults, A100s kept small), the model's 131,072-token context
    report = _report(run_cli, tmp_path / "r.json", *AZURE, "--set", "hardware.gpu=a100-80gb")
    serving, instances = report["config"]["serving"], report["runs"][0]["metrics"]["instances"]
    assert (serving["block_size"], serving["max_num_seqs"], serving["max_num_batched_tokens"],
            serving["max_model_len"]) == (16, 256, 2048, 131072)
    assert (instances["block_size"], instances["max_num_seqs"], instances["max_num_batched_tokens"]) == (16, 256, 2048)
    assert report["trace"]["block_tokens"] == 16
    assert report["config"]["pd"]["prefill_tensor_parallel_size"] is None  # (no PD pools: not read)


def test_a_cache_only_run_echoes_what_it_reads_only(run_cli, tmp_path):
    report = _report(run_cli, tmp_path / "r.json", "--cache-only", *AZURE)
    serving = report["config"]["serving"]
    assert serving["block_size"] == report["trace"]["block_tokens"] == 16
    assert serving["max_num_seqs"] is None and serving["max_num_batched_tokens"] is None  # no scheduler to read them
    assert report["config"]["cache"]["learned_model"] is None  # a null that means none stays null


def test_a_cluster_of_pd_pools_echoes_its_roles_tp_and_uplink(run_cli, tmp_path):
    # the uplink by hand: 2 nodes x 100 Gb/s / oversubscription 4 = 50 Gb/s; each role at serving's TP, 1
    report = _report(run_cli, tmp_path / "r.json", "--cluster", "--pd", *AZURE, *CLUSTER)
    config = report["config"]
    assert config["cluster"]["uplink_gbps"] == 50.0
    assert (config["pd"]["prefill_tensor_parallel_size"], config["pd"]["decode_tensor_parallel_size"]) == (1, 1)


@pytest.mark.parametrize("mode", [[], ["--pd"], ["--cluster", *CLUSTER], ["--cache-only"], ["--trace-stats"]],
                         ids=["single", "pd", "cluster", "cache-only", "trace-stats"])
def test_the_echo_fed_back_gives_the_same_runs(run_cli, tmp_path, mode):
    first = _report(run_cli, tmp_path / "a.json", *mode, *AZURE)
    echo = tmp_path / "echo.yaml"
    echo.write_text(yaml.safe_dump(first["config"]))
    again = _report(run_cli, tmp_path / "b.json", *mode[:1], "--config", echo)
    assert again["runs"] == first["runs"] and again["config"] == first["config"]
