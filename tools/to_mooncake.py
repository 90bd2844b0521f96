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

import sys
from pathlib import Path  # (often loaded as Python starts, by site: the hold below comes at once)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import sim.script_start  # noqa: E402, F401 (first: a stop while the modules below load waits for the command)

# isort: split

if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]  # the stdlib's ``trace``, not kvsim's package
import argparse  # noqa: E402
import json  # noqa: E402

from sim.cli import OneLineParser, path_argument  # noqa: E402
from sim.command import command_status, end_process  # noqa: E402
from sim.errors import InputError  # noqa: E402
from sim.report.output import atomic_write_text, check_distinct, check_writable  # noqa: E402

DEFAULT_BLOCK_SIZE = 16
# kvsim reads a Mooncake trace's block size back from the hash ids' count per prompt, among the powers of two
# trace.formats.BLOCK_TOKEN_CANDIDATES (1 .. 2**20 tokens): any other size would read back as another one.
MAX_BLOCK_SIZE = 2**20


def mooncake_lines(trace) -> list[str]:
    """One Mooncake JSON line per request of a loaded ``Trace`` (block ids required)."""
    if not trace.has_block_ids:
        raise InputError("the trace names no blocks (lengths only): there are no prefixes to write")
    lines = []
    for i in range(len(trace)):
        record = {"timestamp": round(float(trace.arrival_s[i]) * 1e3, 3), "input_length": int(trace.input_tokens[i]),
                  "output_length": int(trace.output_tokens[i]), "hash_ids": trace.blocks(i).tolist()}
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


def _skipped(provenance) -> str:
    """``; N rows skipped (reason: count, ...)`` when the loader skipped any, else nothing."""
    if not provenance.rows_skipped:
        return ""
    reasons = ", ".join(f"{name.replace('_', ' ')}: {count:,}"
                        for name, count in sorted(provenance.skip_reasons.items()))
    row = "row" if provenance.rows_skipped == 1 else "rows"
    return f"; {provenance.rows_skipped:,} {row} of {provenance.rows_read:,} skipped ({reasons})"


def _check_reads_back(lines_tokens, lengths, block_size: int) -> None:
    """Refuse hash ids kvsim would read back with another block size (every prompt one block: sizes tie)."""
    import numpy as np

    from trace.formats import FORMATS, infer_block_tokens

    read_as, ties = infer_block_tokens(np.asarray(lines_tokens), np.asarray(lengths), FORMATS["mooncake"].block_tokens)
    if read_as != block_size or len(ties) > 1:
        found = ("could not tell their block size" if len(ties) > 1
                 else f"would read them back as {read_as}-token blocks")
        raise InputError(f"--block-size {block_size}: kvsim {found} (too few prompts are longer than one block); "
                         f"use a smaller --block-size")


EXAMPLE = """example:
  python tools/to_mooncake.py --workload-trace ../shared/data/traces/llmservingsim_sharegpt_llama31_8b_300.jsonl \\
      --block-size 16 --out workload.hash16.jsonl"""


def main() -> int:
    from sim.config import load_config
    from trace.formats import FORMATS
    from trace.sniff import sniff_format
    from trace.workload import load_workload

    parser = OneLineParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=EXAMPLE)
    parser.add_argument("--workload-trace", type=path_argument, required=True, help="the trace to convert (any format kvsim reads)")
    parser.add_argument("--workload-format", choices=["auto", *FORMATS], default="auto",
                        help="the trace's format (default auto: told by its header or first record)")
    parser.add_argument("--block-size", type=int, default=None,
                        help=f"tokens a hash id covers: a power of two up to {MAX_BLOCK_SIZE:,} "
                             f"(default {DEFAULT_BLOCK_SIZE}, vLLM's block size); refused for a trace of hash ids, "
                             "which keeps its own")
    parser.add_argument("--out", type=path_argument, required=True, help="the Mooncake-format JSONL to write")
    args = parser.parse_args()
    given = args.block_size
    if given is not None and not (1 <= given <= MAX_BLOCK_SIZE and given & (given - 1) == 0):
        parser.error(f"--block-size must be a power of two from 1 to {MAX_BLOCK_SIZE:,} (the block sizes kvsim reads "
                     f"back from hash ids), got {given}")
    check_distinct([("--workload-trace", args.workload_trace)], [("--out", args.out)])  # it would replace the trace
    check_writable(args.out, "--out")  # before the trace is read
    load_config(None, sets=[f"workload.trace={args.workload_trace.resolve()}"])  # it exists and is a file (a folder or
    # a FIFO was "no such file"), as every trace path is checked
    fmt = FORMATS[sniff_format(args.workload_trace) if args.workload_format == "auto" else args.workload_format]
    if given is not None and fmt.block_tokens is not None:
        raise InputError(f"--block-size: {args.workload_trace} is a {fmt.name} trace of hash ids, which keep their own "
                         f"block size (written as read); leave --block-size out")
    block_size = DEFAULT_BLOCK_SIZE if given is None else given
    config = load_config(None, sets=[f"workload.trace={args.workload_trace.resolve()}",
                                     f"workload.format={fmt.name}", f"serving.block_size={block_size}"])
    trace = load_workload(config)
    lines = mooncake_lines(trace)
    written = trace.provenance.block_tokens  # a trace of hash ids: its own block size
    if fmt.block_tokens is None:
        _check_reads_back(trace.input_tokens, trace.block_offsets[1:] - trace.block_offsets[:-1], written)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"{args.out}: {len(lines):,} requests, {written}-token blocks{_skipped(trace.provenance)}")
    return 0


if __name__ == "__main__":
    end_process(command_status("to_mooncake.py", main))
