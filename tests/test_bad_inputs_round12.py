"""Bad input, round 12 (helper hedges): every config key at its domain's edges (tools/edge_runs.py walks the Config
dataclasses and runs each numeric key at its smallest and largest accepted values and just past them, each choice of
an enum, in the smoke preset of each mode that reads it). Each case here was a finding of that driver: a refusal that
named no key given, a traceback, or a run that did not end."""

from __future__ import annotations

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

