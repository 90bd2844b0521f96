"""Timing for tools/profile_gpu.py: a callable timed by CUDA events or the wall clock, and all-reduce timed over
2, 4, ... spawned processes (NCCL on GPUs, gloo on CPU) in Vidur's collective format. Its own module so the spawned
workers import it without the profiler's command line."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run itself (by mistake: it says so): the repository's packages, as the scripts find them
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim.script_start  # noqa: E402, F401 (first: run by mistake, a stop while it loads is answered as it says so)

# isort: split

import csv
import math
import os
import socket
import time
from typing import Callable

STATS = ("min", "max", "mean", "median", "std")
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class Timer:
    """Times a callable: CUDA events on a GPU (the kernel time between two recorded events), wall clock on a CPU."""

    def __init__(self, torch, device: str, warmup: int, iterations: int):
        self.torch, self.device, self.warmup, self.iterations = torch, device, warmup, iterations
        self.method = "cuda events" if device.startswith("cuda") else "wall clock (time.perf_counter)"

    def __call__(self, fn: Callable[[], object]) -> dict[str, float]:
        torch = self.torch
        for _ in range(self.warmup):
            fn()
        times = []
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            for _ in range(self.iterations):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))  # ms
        else:
            for _ in range(self.iterations):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
        return summary(times)


def summary(times_ms: list[float]) -> dict[str, float]:
    n = len(times_ms)
    ordered = sorted(times_ms)
    mean = sum(times_ms) / n
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    std = math.sqrt(sum((t - mean) ** 2 for t in times_ms) / n)
    return {"min": ordered[0], "max": ordered[-1], "mean": mean, "median": median, "std": std}


# ---------------------------------------------------------------------------------------- all-reduce


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_worker(rank: int, world: int, port: int, device: str, dtype_name: str, sizes: tuple[int, ...],
                       warmup: int, iterations: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    dev = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    dtype = getattr(torch, TORCH_DTYPES[dtype_name])
    timer = Timer(torch, dev, warmup, iterations)
    rows = []
    for size in sizes:
        tensor = torch.ones(max(1, size // torch.finfo(dtype).bits * 8), device=dev, dtype=dtype)

        def reduce():
            dist.all_reduce(tensor)
            if not cuda:
                dist.barrier()

        stats = timer(reduce)
        rows.append({**{f"time_stats.all_reduce.{s}": stats[s] for s in STATS}, "rank": rank, "num_workers": world,
                     "size": tensor.numel() * tensor.element_size(), "collective": "all_reduce",
                     "devices_per_node": world, "max_devices_per_node": world})
    dist.destroy_process_group()
    if rank == 0:
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def profile_all_reduce(ranks: int, device: str, dtype_name: str, sizes: tuple[int, ...], warmup: int, iterations: int,
                       workdir: Path) -> list[dict]:
    """Vidur's all_reduce.csv rows (rank 0's timings) for groups of 2, 4, ... up to ``ranks`` processes."""
    import torch.multiprocessing as mp

    rows = []
    world = 2
    while world <= ranks:
        part = workdir / f".all_reduce_{world}.csv"
        mp.spawn(_all_reduce_worker, args=(world, _free_port(), device, dtype_name, sizes, warmup,
                                           iterations, str(part)), nprocs=world, join=True)
        with part.open() as fh:
            rows.extend(csv.DictReader(fh))
        part.unlink()
        world *= 2
    return rows


if __name__ == "__main__":  # a module of tools/profile_gpu.py, not a command: say so (exit 2) rather than do nothing
    from sim.command import command_status, end_process
    from sim.errors import InputError

    def _refuse() -> int:
        raise InputError("a module of tools/profile_gpu.py, the command to run (python tools/profile_gpu.py --help)")

    end_process(command_status("gpu_timing.py", _refuse))  # (as a command: a stop held while it loaded is answered)
