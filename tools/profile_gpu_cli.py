"""profile_gpu.py's command line: its flags, their defaults and the bounds of the work they ask for, checked before
any profiling starts (exit 2, one line)."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run itself (as profile_gpu.py): the repository's packages, as the scripts find them
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim.script_start  # noqa: E402, F401 (run as profile_gpu.py: a stop while it loads waits for its command)

# isort: split

import argparse

from gpu_timing import TORCH_DTYPES  # a sibling: tools/ is on the path

from sim.cli import OneLineParser  # (profile_gpu.py puts the repository on the path first)

DESCRIPTION = "Operator profiler: Vidur-format compute tables for a model of profiles/models.yaml, with random weights."

PROFILE_EXAMPLES = """examples:

    python tools/profile_gpu.py --tiny --device cpu --out /tmp/tiny_profile     # the whole pipeline in seconds
    python tools/profile_gpu.py --model llama-3.1-8b --out profiles/measured/h100_llama31_8b
    python main.py --set compute.backend=profiled --set compute.profile=profiles/measured/h100_llama31_8b
"""


class _Parser(OneLineParser):
    """A flag of one value given twice is refused (OneLineParser; argparse kept the last: --model a --model b
    profiled b)."""

    def error(self, message: str) -> None:  # exit 2, as argparse does, in one line as every other error of the tool
        self.exit(2, f"profile_gpu: error: {message[:200]} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The tool's flags (each says what it sets, its unit where it has one, and its default)."""
    p = _Parser(prog="profile_gpu.py", description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PROFILE_EXAMPLES)
    p.add_argument("--model", default="llama-3.1-8b", metavar="NAME",
                   help="a model of profiles/models.yaml (default llama-3.1-8b)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (a Vidur profile kvsim loads as compute.profile)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--dtype", default="bf16", choices=sorted(TORCH_DTYPES),
                   help="weights and activations (default bf16)")
    p.add_argument("--tp", type=int, default=1, metavar="N",
                   help="tensor-parallel degree to emulate (per-rank shapes; default 1)")
    p.add_argument("--tiny", action="store_true", help="tiny model width and grids: the whole pipeline in seconds")
    p.add_argument("--max-tokens", type=int, default=None, metavar="TOKENS",
                   help=f"largest token count of mlp.csv and prefill chunk (default {GRID_DEFAULTS['max_tokens']}; "
                        f"at most {MAX_TOKENS:,}; not with --tiny)")
    p.add_argument("--max-context", type=int, default=None, metavar="TOKENS",
                   help=f"largest cached history of attention rows (default {GRID_DEFAULTS['max_context']}; at most "
                        f"{MAX_CONTEXT:,}; not with --tiny)")
    p.add_argument("--max-batch", type=int, default=None, metavar="SEQS",
                   help=f"largest decode batch (default {GRID_DEFAULTS['max_batch']}; at most {MAX_BATCH}; "
                        f"not with --tiny)")
    p.add_argument("--max-kv-tokens", type=int, default=None, metavar="TOKENS",
                   help=f"cap on a decode row's batch x (context + 1) (default {GRID_DEFAULTS['max_kv_tokens']}; "
                        f"at most {MAX_KV_TOKENS:,}; not with --tiny)")
    p.add_argument("--block-size", type=int, default=16, metavar="TOKENS",
                   help=f"KV block size of the paged cache written and recorded in attention.csv (default 16; at most "
                        f"{MAX_BLOCK_SIZE:,})")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="untimed runs per shot (default 3; 1 with --tiny)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="timed runs per shot (default 10; 3 with --tiny)")
    p.add_argument("--all-reduce-ranks", type=int, default=None, metavar="N",
                   help="profile all-reduce over 2, 4, ... up to N processes (default: every GPU when there are 2+)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.tp < 1 or args.block_size < 1:
        p.error("--tp and --block-size must be positive")
    if args.tiny:  # the tiny grid is fixed: these flags would do nothing
        for flag in ("max_tokens", "max_context", "max_batch", "max_kv_tokens"):
            if getattr(args, flag) is not None:
                p.error(f"--{flag.replace('_', '-')} does nothing with --tiny (its grid is fixed); "
                        f"leave one of them out")
    else:
        for flag, value in GRID_DEFAULTS.items():
            if getattr(args, flag) is None:
                setattr(args, flag, value)
    # Below the least, a grid has no point (the smallest prefill chunk and decode context are 16 tokens, a decode row
    # of one sequence over 16 cached tokens holds 17: the tables came out empty, a traceback). Above the most, the
    # work asked for is unbounded, found before it starts: --max-tokens adds a row every 512 tokens past 2,560
    # (131,072 tokens: 252 rows, each a shot of every operator), every shot runs warmup + iterations times, and the
    # context, batch, KV and block sizes bound the tensors allocated (a 10^11-token block asked 12.8 TB).
    for flag, value, least, most in (("--max-tokens", args.max_tokens, 16, MAX_TOKENS),
                                     ("--max-context", args.max_context, 16, MAX_CONTEXT),
                                     ("--max-batch", args.max_batch, 1, MAX_BATCH),
                                     ("--max-kv-tokens", args.max_kv_tokens, 17, MAX_KV_TOKENS),
                                     ("--warmup", args.warmup, 0, MAX_RUNS),
                                     ("--iterations", args.iterations, 1, MAX_RUNS),
                                     ("--all-reduce-ranks", args.all_reduce_ranks, 0, None),
                                     ("--block-size", args.block_size, 1, MAX_BLOCK_SIZE),
                                     ("--tp", args.tp, 1, MAX_TP)):
        if value is not None and value < least:
            p.error(f"{flag} must be at least {least}, got {value}")
        if value is not None and most is not None and value > most:
            p.error(f"{flag} must be at most {most:,}, got {value:,}")
    return args


GRID_DEFAULTS = {"max_tokens": 8192, "max_context": 16384, "max_batch": 256, "max_kv_tokens": 1 << 18}
MAX_TOKENS = 1 << 17
MAX_CONTEXT = 1 << 20  # a million-token history: the longest context windows of current models
MAX_BATCH = 512  # the decode grid's largest batch (full_grid): a larger cap adds no row
MAX_KV_TOKENS = 1 << 24  # a decode row's keys and values: 16M tokens (64 GiB for an 8-head, 128-dim bf16 layer rank)
MAX_BLOCK_SIZE = 1 << 16  # 65,536 tokens: far above any engine's block (vLLM: 1..256);
                          # the cache holds 2 blocks at least
MAX_TP = 1024  # kvsim's MAX_INSTANCES: far more ranks than any model has heads
MAX_RUNS = 1000


if __name__ == "__main__":  # (this module holds profile_gpu.py's flags; run as a script it is that tool)
    from profile_gpu import main

    from sim.command import end_process

    end_process(main())
