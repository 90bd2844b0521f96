"""Bad input, round 12 (helper hedges): every config key at its domain's edges (tools/edge_runs.py walks the Config
dataclasses and runs each numeric key at its smallest and largest accepted values and just past them, each choice of
an enum, in the smoke preset of each mode that reads it). Each case here was a finding of that driver: a refusal that
named no key given, a traceback, or a run that did not end."""

from __future__ import annotations

import pytest

SMOKE = ["--preset", "smoke", "--no-plot", "--quiet"]


def _one_line(status: int, out: str, err: str) -> str:
    assert status == 2 and "Traceback" not in out + err, err[-2000:]
    message = err.strip()
    assert "\n" not in message and message.startswith("kvsim: error:"), message
    return message


def test_a_block_too_large_for_memory_names_the_block_size(run_cli):
    """serving.block_size=1000000 on one H100 was refused as "less than one KV block (131,072,000,000 bytes); raise
    serving.tensor_parallel_size or the utilization": the key that made the block too large went unnamed. Llama 3.1
    8B's KV is 2 (K, V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 131,072 bytes a token (its config.json), so a
    block of 10^6 tokens is 131,072,000,000 bytes, more than the H100's 80 GB."""
    message = _one_line(*run_cli(*SMOKE, "--set", "serving.block_size=1000000"))
    assert "'serving.block_size'=1000000" in message and "131,072,000,000 bytes" in message, message
    assert "lower the block size" in message, message


@pytest.mark.parametrize("mode", [[], ["--pd"], ["--cluster"], ["--cache-only"]], ids=["single", "pd", "cluster",
                                                                                       "cache-only"])
@pytest.mark.parametrize("tier", ["dram", "ssd"])
def test_a_lower_tier_holding_no_block_is_refused_before_the_workload_loads(tier, mode, run_cli, monkeypatch):
    """cache.tiers.<dram|ssd>.capacity_gib=1e-9 (its domain's >= 0 accepts it) holds no block: a block of Llama 3.1
    8B is 16 tokens x 131,072 bytes (2 x 32 layers x 8 KV heads x 128 x 2 bytes) = 2,097,152 bytes, and 1e-9 GiB is
    about one byte. It was refused only after the workload had been generated (10-14 s at the smoke preset, minutes
    for a large trace); the config alone says it, so it is found before the workload loads (here: loading it fails
    the test)."""
    import trace.workload

    def loaded(*_args, **_kwargs):
        raise AssertionError("the workload loaded before the tier's capacity was checked")

    monkeypatch.setattr(trace.workload, "load_workload", loaded)
    message = _one_line(*run_cli(*mode, *SMOKE, "--set", f"cache.tiers.{tier}.capacity_gib=1e-9"))
    assert f"'cache.tiers.{tier}.capacity_gib'=1e-09 holds no KV block" in message, message
    assert "2,097,152 bytes" in message, message


def test_documents_past_the_request_bound_name_the_documents_per_request(run_cli):
    """workload.synthetic.documents_per_request=1000000 was refused as "config key 'workload.synthetic.document_tokens'
    gives 2048000000 tokens per request", naming the key left at its default and not the one given. A RAG request
    holds documents_per_request documents of document_tokens each: 10^6 x 2,048 = 2,048,000,000 tokens, past the
    request bound of 262,144 (the longest context in profiles/models.yaml: README, workload.max_request_tokens)."""
    message = _one_line(*run_cli(*SMOKE, "--set", "workload.synthetic.kind=rag",
                                 "--set", "workload.synthetic.documents_per_request=1000000"))
    assert "'workload.synthetic.documents_per_request'=1000000" in message, message
    assert "'workload.synthetic.document_tokens'=2048" in message and "2,048,000,000 tokens" in message, message
    assert "262,144" in message, message


def test_a_fleet_past_the_instance_bound_is_refused_before_its_arrays_are_allocated(run_cli):
    """cluster.num_racks=100000 (<= 100,000), nodes_per_rack=1024 and hardware.gpus_per_node=1024 (<= 1,024 each) are
    each within their domains, but together make 100,000 x 1,024 x 1,024 / TP 1 = 104,857,600,000 instances, and the
    cluster's first per-instance int64 array (8 bytes x that = 781 GiB) was a MemoryError traceback (exit 1)."""
    message = _one_line(*run_cli("--cluster", *SMOKE, "--set", "cluster.num_racks=100000",
                                 "--set", "cluster.nodes_per_rack=1024", "--set", "hardware.gpus_per_node=1024"))
    for key in ("'cluster.num_racks'=100000", "'cluster.nodes_per_rack'=1024", "'hardware.gpus_per_node'=1024",
                "104,857,600,000 instances"):
        assert key in message, message
