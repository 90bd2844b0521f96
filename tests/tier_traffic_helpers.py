"""The serving workload and run that the lower-tier traffic tests share (tests/test_tier_traffic.py,
test_tier_tp_pages.py, test_tier_reads.py)."""

from __future__ import annotations

import json

# Llama-3.1-8B's KV per token: 32 layers x 8 KV heads x 128 head dim x (K, V) x 2 bytes (bf16)
# (meta-llama/Llama-3.1-8B config.json: num_hidden_layers, num_key_value_heads, hidden_size / num_attention_heads)
KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2
BLOCK_TOKENS = 16

# an empty start (as tests/test_golden.py MULTI_TURN): the stationary one at 10 turns is dominated by truncated chats


WORKLOAD = ["workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=300",
            "workload.synthetic.turns_mean=10", "workload.synthetic.think_time_median_s=8",
            "workload.synthetic.rate_rps=8", "workload.synthetic.input_tokens_mean=400",
            "model=llama-3.1-8b", f"serving.block_size={BLOCK_TOKENS}", "serving.num_gpu_blocks=1500",
            "cache.tiers.dram.capacity_gib=1", "cache.tiers.ssd.capacity_gib=4"]


def run_metrics(run_cli, tmp_path, *flags: str, sets: tuple[str, ...] = ()) -> dict:
    """A smoke-preset run of ``WORKLOAD`` (``sets`` after it) with ``flags``: its first run's metrics."""
    out = tmp_path / "r.json"
    argv = [*flags, "--preset", "smoke", "--quiet", "--no-plot", "--report-json", out]
    for assignment in [*WORKLOAD, *sets]:
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    return json.loads(out.read_text())["runs"][0]["metrics"]
