"""Write a trace as Mooncake-format JSONL: arrival, lengths and the prompt's prefix-chained block hash ids.

Any trace kvsim reads (its token ids, hash ids or the synthetic generator) becomes one line per request,
``{"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [...]}`` (kvcache-ai/Mooncake
FAST25-release/traces format), the ids kvsim gives its blocks of ``--block-size`` tokens: two prompts share an id
exactly where they share that whole prefix. The token content is not written, so a trace of real prompts can be
kept or shared as its prefix structure alone (a 2.5 MB ShareGPT workload of token ids becomes ~0.1 MB); kvsim
reads it back with the same block sharing (it infers the block size from the ids' count per prompt).

    python tools/to_mooncake.py --workload-trace workload.jsonl --block-size 16 --out workload_hashes.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sim.cli import OneLineParser  # noqa: E402 (after the path)
from sim.errors import InputError, command_status, end_process  # noqa: E402
from sim.report.output import atomic_write_text, check_distinct, check_writable  # noqa: E402


def mooncake_lines(trace) -> list[str]:
    """One Mooncake JSON line per request of a loaded ``Trace`` (block ids required)."""
    if trace.block_ids is None:
        raise InputError("the trace names no blocks (lengths only): there are no prefixes to write")
    lines = []
    for i in range(len(trace)):
        record = {"timestamp": round(float(trace.arrival_s[i]) * 1e3, 3), "input_length": int(trace.input_tokens[i]),
                  "output_length": int(trace.output_tokens[i]), "hash_ids": trace.blocks(i).tolist()}
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


def main() -> int:
    from sim.config import load_config
    from trace.workload import load_workload

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload-trace", type=Path, required=True, help="the trace to convert (any format kvsim reads)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens a hash id covers (vLLM's block size; 16)")
    parser.add_argument("--out", type=Path, required=True, help="the Mooncake-format JSONL to write")
    args = parser.parse_args()
    if args.block_size < 1:
        parser.error(f"--block-size must be at least 1, got {args.block_size}")
    check_distinct([("--workload-trace", args.workload_trace)], [("--out", args.out)])  # it would replace the trace
    check_writable(args.out, "--out")  # before the trace is read
    config = load_config(None, sets=[f"workload.trace={args.workload_trace.resolve()}",
                                     f"serving.block_size={args.block_size}"])
    lines = mooncake_lines(load_workload(config))
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"{args.out}: {len(lines):,} requests, {args.block_size}-token blocks")
    return 0


if __name__ == "__main__":
    end_process(command_status("to_mooncake.py", main))
