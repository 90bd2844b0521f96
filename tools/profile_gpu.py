"""Operator profiler: Vidur-format compute tables for a model of ``profiles/models.yaml``, with random weights.

Times one decoder layer's operators on this machine's GPU (CUDA events) or CPU (wall clock) and writes,
under ``--out``, the tables kvsim's profiled compute model reads (``compute.backend: profiled``,
``compute.profile: DIR``):

- ``mlp.csv`` — Vidur's format (``vidur/profiling/mlp``): ``time_stats.<op>.{min,max,mean,median,std}``
  in ms for emb, input_layernorm, attn_pre_proj, attn_rope, attn_post_proj, post_attention_layernorm,
  mlp_up_proj, mlp_act, mlp_down_proj, add; then n_head, n_kv_head, n_embd, n_expanded_embd, vocab_size,
  use_gated_mlp, num_tokens, num_tensor_parallel_workers.
- ``attention.csv`` — Vidur's format (``vidur/profiling/attention``): ``time_stats.{attn_kv_cache_save,
  attn_prefill, attn_decode}.*`` in ms (empty where an operator does not run), then n_embd, n_q_head,
  n_kv_head, block_size, num_tensor_parallel_workers, max_model_len, batch_size, prefill_chunk_size,
  kv_cache_size, is_prefill, attention_backend. Prefill rows: one sequence, a chunk over a cached
  history (causal, aligned to the last key); decode rows: a batch of one-token queries over equal histories.
- ``all_reduce.csv`` — Vidur's collective format, when ``--all-reduce-ranks N`` (default: every GPU when
  there are two or more): NCCL on GPUs, gloo on CPU.
- ``meta.yaml`` — provenance: device, driver, torch and CUDA versions, dtype, date, grids, model shape.

Tensor parallelism is emulated on one device as Vidur does: each operator at its per-rank shape
(heads, MLP width and vocabulary divided by ``--tp``). Attention uses PyTorch's fused
``scaled_dot_product_attention`` on dense tensors, not vLLM's paged kernels; for vLLM's own kernels
use LLMServingSim's profiler (its bundles load directly). Nothing is downloaded: weights are random.

    python tools/profile_gpu.py --model llama-3.1-8b --out profiles/measured/h100_llama31_8b
    python tools/profile_gpu.py --model llama-3.1-8b --device cpu --tiny --out /tmp/tiny   # seconds, for tests

``--tiny`` keeps the model's proportions at a tiny width (hidden 64, 4 query heads) and tiny grids; its
``meta.yaml`` records the profiled shape (``model_shape``) so the tables can be loaded against it.
"""

from __future__ import annotations

import sys
from pathlib import Path  # (often loaded as Python starts, by site: the hold below comes at once)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sim.script_start  # noqa: E402, F401 (first: a stop while the libraries below load waits for the command)

# isort: split

import argparse
import csv
import datetime
import math
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace

from gpu_timing import STATS, TORCH_DTYPES, Timer, profile_all_reduce  # a sibling: tools/ is on the path
from profile_gpu_cli import build_parser, parse_args  # noqa: F401 (build_parser: the --help test reads it)

MLP_OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
ATTENTION_OPS = ("attn_kv_cache_save", "attn_prefill", "attn_decode")


@dataclass(frozen=True)
class Shape:
    """The profiled model's shape (a ``ModelSpec``'s fields that the operators need)."""

    name: str
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int


@dataclass(frozen=True)
class Grid:
    """What to sweep."""

    num_tokens: tuple[int, ...]
    prefill_chunks: tuple[int, ...]
    prefill_contexts: tuple[int, ...]
    decode_batches: tuple[int, ...]
    decode_contexts: tuple[int, ...]
    max_kv_tokens: int  # a decode row's batch × (context + 1) stays within this (memory)
    all_reduce_sizes: tuple[int, ...]


def full_grid(max_tokens: int, max_context: int, max_batch: int, max_kv_tokens: int) -> Grid:
    tokens = sorted({1, 2, 4, 8, *range(16, 257, 16), *range(384, 2049, 128), *range(2560, max_tokens + 1, 512)})
    doubling = [2**i for i in range(4, 30)]
    return Grid(
        num_tokens=tuple(t for t in tokens if t <= max_tokens),
        prefill_chunks=tuple(c for c in doubling if c <= max_tokens),
        prefill_contexts=(0, *[c for c in doubling[5:] if c <= max_context]),
        decode_batches=tuple(b for b in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] if b <= max_batch),
        decode_contexts=tuple(c for c in doubling if c <= max_context),
        max_kv_tokens=max_kv_tokens,
        all_reduce_sizes=tuple(2**i for i in range(11, 30)),  # 2 KiB .. 512 MiB, as Vidur's collectives sweep
    )


TINY_GRID = Grid(num_tokens=(1, 2, 4, 8, 16, 32), prefill_chunks=(4, 8, 16), prefill_contexts=(0, 16, 32),
                 decode_batches=(1, 2, 4), decode_contexts=(8, 16, 32), max_kv_tokens=1 << 12,
                 all_reduce_sizes=(1 << 10, 1 << 12, 1 << 14))


def model_shape(name: str) -> Shape:
    from sim.errors import InputError
    from sim.specs import model_spec

    m = model_spec(name)
    if m.is_moe:  # the tables written here are Vidur's dense mlp.csv, which serving refuses for such a model
        raise InputError(f"{name} is a mixture of experts: this profiler times a dense MLP; profile it with "
                         "LLMServingSim's profiler (a bundle with moe.csv) or use compute.backend 'roofline'")
    if m.is_mla:  # the attention timed here is q/k/v/o over K and V heads
        raise InputError(f"{name} has multi-head latent attention: this profiler times q/k/v/o attention; use "
                         "compute.backend 'roofline'")
    # serving refuses any profile for these (sim.serving.compute_backend.profile_misfit): their sliding-window or
    # Gated DeltaNet layers are no point timed here: the whole profile would be timed, written, then refused
    if m.is_hybrid_attention or m.linear_attention is not None:
        kind = "sliding-window and full-attention layers" if m.is_hybrid_attention else "Gated DeltaNet layers"
        raise InputError(f"{name} has {kind}: kvsim refuses any profile for it (a profile times full attention "
                         "only); use compute.backend 'roofline'")
    if not m.gated_mlp:  # the operators timed here are a gated (SwiGLU) MLP's; serving checks use_gated_mlp
        raise InputError(f"{name} has a plain (non-gated) MLP: this profiler times a gated one; use Vidur's profiler "
                         "(use_gated_mlp false) or compute.backend 'roofline'")
    return Shape(name, m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.head_dim, m.intermediate_size, m.vocab_size)


def tiny(shape: Shape) -> Shape:
    """The same proportions at hidden 64, 4 query heads of 16 (KV heads and MLP width scaled alike)."""
    kv = max(1, 4 * shape.num_kv_heads // shape.num_attention_heads)
    inter = max(16, round(64 * shape.intermediate_size / shape.hidden_size / 16) * 16)
    return replace(shape, name=f"{shape.name}-tiny", hidden_size=64, num_attention_heads=4, num_kv_heads=kv,
                   head_dim=16, intermediate_size=inter, vocab_size=1024)


def _stat_columns(ops: tuple[str, ...]) -> list[str]:
    return [f"time_stats.{op}.{stat}" for op in ops for stat in STATS]


# ------------------------------------------------------------------------------------------ operators


def profile_mlp(torch, shape: Shape, tp: int, dtype, device: str, grid: Grid, timer: Timer) -> list[dict]:
    """One decoder layer's non-attention operators at each token count, per TP rank (Vidur's mlp.csv rows)."""
    F = torch.nn.functional
    gen = torch.Generator(device="cpu").manual_seed(0)

    def weight(rows: int, cols: int):
        return (torch.randn(rows, cols, generator=gen) / math.sqrt(rows)).to(device=device, dtype=dtype)

    heads, kv_heads, hd = shape.num_attention_heads // tp, max(1, shape.num_kv_heads // tp), shape.head_dim
    q_dim, kv_dim, inter = heads * hd, kv_heads * hd, shape.intermediate_size // tp
    embedding = weight(shape.vocab_size // tp, shape.hidden_size)
    norm = torch.ones(shape.hidden_size, device=device, dtype=dtype)
    w_qkv, w_o = weight(shape.hidden_size, q_dim + 2 * kv_dim), weight(q_dim, shape.hidden_size)
    w_up, w_down = weight(shape.hidden_size, 2 * inter), weight(inter, shape.hidden_size)
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))

    def rms_norm(x):
        return F.rms_norm(x, (shape.hidden_size,), norm, 1e-5)

    def rope(q, k, positions):
        angles = positions[:, None].float() * inv_freq[None, :]
        cos, sin = angles.cos().to(dtype)[:, None, :], angles.sin().to(dtype)[:, None, :]

        def rotate(x):
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

        return rotate(q), rotate(k)

    rows = []
    for tokens in grid.num_tokens:
        ids = torch.randint(0, shape.vocab_size // tp, (tokens,), generator=gen).to(device)
        positions = torch.arange(tokens, device=device)
        x = torch.randn(tokens, shape.hidden_size, generator=gen).to(device=device, dtype=dtype)
        qkv = x @ w_qkv
        q = qkv[:, :q_dim].reshape(tokens, heads, hd)
        k = qkv[:, q_dim:q_dim + kv_dim].reshape(tokens, kv_heads, hd)
        attn_out = torch.randn(tokens, q_dim, generator=gen).to(device=device, dtype=dtype)
        gate_up = x @ w_up
        act = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
        timings = {
            "emb": timer(lambda: F.embedding(ids, embedding)),
            "input_layernorm": timer(lambda: rms_norm(x)),
            "attn_pre_proj": timer(lambda: x @ w_qkv),
            "attn_rope": timer(lambda: rope(q, k, positions)),
            "attn_post_proj": timer(lambda: attn_out @ w_o),
            "post_attention_layernorm": timer(lambda: rms_norm(x)),
            "mlp_up_proj": timer(lambda: x @ w_up),
            "mlp_act": timer(lambda: F.silu(gate_up[:, :inter]) * gate_up[:, inter:]),
            "mlp_down_proj": timer(lambda: act @ w_down),
            "add": timer(lambda: x + x),
        }
        row = {f"time_stats.{op}.{stat}": timings[op][stat] for op in MLP_OPS for stat in STATS}
        row.update(n_head=shape.num_attention_heads, n_kv_head=shape.num_kv_heads, n_embd=shape.hidden_size,
                   n_expanded_embd=shape.intermediate_size, vocab_size=shape.vocab_size, use_gated_mlp=True,
                   num_tokens=tokens, num_tensor_parallel_workers=tp)
        rows.append(row)
    return rows


def profile_attention(torch, shape: Shape, tp: int, dtype, device: str, grid: Grid, timer: Timer,
                      block_size: int, max_model_len: int) -> list[dict]:
    """The attention kernel and the KV-cache write: prefill rows over (chunk, cached history), decode rows over
    (batch, cached history), per TP rank (Vidur's attention.csv rows)."""
    from torch.nn.attention.bias import causal_lower_right

    F = torch.nn.functional
    gen = torch.Generator(device="cpu").manual_seed(1)
    heads, kv_heads, hd = shape.num_attention_heads // tp, max(1, shape.num_kv_heads // tp), shape.head_dim

    def rand(*dims):
        return torch.randn(*dims, generator=gen).to(device=device, dtype=dtype)

    def kv_write(cache, slots, k, v):
        """Write new keys and values into a paged cache at their slots (vLLM's reshape_and_cache)."""
        def run():
            cache[0].index_copy_(0, slots, k)
            cache[1].index_copy_(0, slots, v)
        return run

    def paged_cache(tokens: int):
        slots_total = max(block_size, -(-tokens // block_size) * block_size) * 2
        cache = torch.empty(2, slots_total, kv_heads, hd, device=device, dtype=dtype)
        slots = torch.randperm(slots_total, generator=gen)[:tokens].to(device)
        return cache, slots

    meta = dict(n_embd=shape.hidden_size, n_q_head=shape.num_attention_heads, n_kv_head=shape.num_kv_heads,
                block_size=block_size, num_tensor_parallel_workers=tp, max_model_len=max_model_len)
    backend = f"torch.sdpa ({device})"
    rows = []
    for chunk in grid.prefill_chunks:
        for context in grid.prefill_contexts:
            if chunk + context > max_model_len:
                continue
            q = rand(1, heads, chunk, hd)
            k, v = rand(1, kv_heads, context + chunk, hd), rand(1, kv_heads, context + chunk, hd)
            mask = causal_lower_right(chunk, context + chunk)  # the chunk's queries end at the last key
            cache, slots = paged_cache(chunk)
            new_k, new_v = rand(chunk, kv_heads, hd), rand(chunk, kv_heads, hd)
            timings = {"attn_prefill": timer(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)),
                       "attn_kv_cache_save": timer(kv_write(cache, slots, new_k, new_v))}
            rows.append(_attention_row(timings, meta, 1, chunk, context, True, backend))
    for batch in grid.decode_batches:
        for context in grid.decode_contexts:
            if batch * (context + 1) > grid.max_kv_tokens or context + 1 > max_model_len:
                continue
            q = rand(batch, heads, 1, hd)
            k, v = rand(batch, kv_heads, context + 1, hd), rand(batch, kv_heads, context + 1, hd)
            cache, slots = paged_cache(batch)
            new_k, new_v = rand(batch, kv_heads, hd), rand(batch, kv_heads, hd)
            timings = {"attn_decode": timer(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),
                       "attn_kv_cache_save": timer(kv_write(cache, slots, new_k, new_v))}
            rows.append(_attention_row(timings, meta, batch, 0, context, False, backend))
    return rows


def _attention_row(timings: dict, meta: dict, batch: int, chunk: int, context: int, prefill: bool, backend: str) -> dict:
    row = {f"time_stats.{op}.{stat}": (timings[op][stat] if op in timings else "") for op in ATTENTION_OPS for stat in STATS}
    row.update(meta, batch_size=batch, prefill_chunk_size=chunk, kv_cache_size=context, is_prefill=prefill,
               attention_backend=backend)
    return row


# --------------------------------------------------------------------------------------------- output


def write_csv(path: Path, rows: list[dict], columns: list[str], index: bool = False) -> None:
    """Atomically (temp file + rename); ``index`` adds Vidur's unnamed leading index column."""
    from sim.report.output import atomic_write

    with atomic_write(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(([""] if index else []) + columns)
        for i, row in enumerate(rows):
            writer.writerow(([i] if index else []) + [row[c] for c in columns])


def device_info(torch, device: str) -> dict:
    info = {"device": device, "torch_version": str(torch.__version__), "cuda_version": torch.version.cuda}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["gpu_count"] = torch.cuda.device_count()
        smi = shutil.which("nvidia-smi")
        if smi:
            query = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True, check=False)
            info["driver"] = query.stdout.strip().splitlines()[0] if query.stdout.strip() else None
        else:
            info["driver"] = None
    else:
        info["gpu"] = None
        info["driver"] = None
        info["cpu"] = platform.processor() or platform.machine()
        info["cpu_threads"] = torch.get_num_threads()
    return info


def _check_device(torch, device: str) -> None:
    """``cuda``, ``cuda:N`` of a GPU here, or ``cpu``; anything else is one line, not torch's traceback."""
    from sim.errors import InputError

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device[:100]!r}: expected cuda, cuda:N or cpu") from None
    if parsed.type not in ("cuda", "cpu"):
        raise InputError(f"--device {device[:100]!r}: expected cuda, cuda:N or cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("no CUDA device here; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sim.command import command_status

    return command_status("profile_gpu", lambda: profile(args))


def profile(args: argparse.Namespace) -> int:
    """Check the request (exit 2 before any timing), time the operators, write the tables and meta.yaml."""
    from sim.errors import InputError

    try:
        import torch
    except ImportError:
        raise InputError("PyTorch is not installed (pip install 'kvsim[torch]')") from None
    device = args.device
    _check_device(torch, device)
    from sim.report.output import check_writable

    check_writable(args.out, "--out", directory=True)  # a file there was FileExistsError after the model loaded
    if args.all_reduce_ranks is not None and args.all_reduce_ranks >= 2:
        # one process per rank: on GPUs one a device, on a CPU at most one a core (or two, the least a group has)
        most = torch.cuda.device_count() if device.startswith("cuda") else max(2, os.cpu_count() or 1)
        if args.all_reduce_ranks > most:
            raise InputError(f"--all-reduce-ranks {args.all_reduce_ranks:,}: at most {most} here "
                             f"({'CUDA devices' if device.startswith('cuda') else 'CPU cores'})")
    shape = model_shape(args.model)
    if shape.num_attention_heads % args.tp or shape.intermediate_size % args.tp:
        raise InputError(f"--tp {args.tp} does not divide {args.model}'s heads and MLP width")
    if args.tiny:
        shape, grid = tiny(shape), TINY_GRID
        if shape.num_attention_heads % args.tp:
            raise InputError("--tiny profiles 4 query heads; use --tp 1, 2 or 4")
    else:
        grid = full_grid(args.max_tokens, args.max_context, args.max_batch, args.max_kv_tokens)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    iterations = args.iterations if args.iterations is not None else (3 if args.tiny else 10)
    ranks = args.all_reduce_ranks
    if ranks is None:
        ranks = torch.cuda.device_count() if device.startswith("cuda") else 0
    target = Path(args.out)
    # Every file is written into a temporary folder beside --out and moved into place once all are written: an
    # interrupted or failed run leaves nothing new (and a previous complete profile there stays whole).
    base = target.parent
    while not base.exists():
        base = base.parent
    out = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        mask = os.umask(0)
        os.umask(mask)
        out.chmod(0o777 & ~mask)  # as a folder made by mkdir (mkdtemp's is private)
        summary = _profile_into(torch, args, out, shape, grid, warmup, iterations, ranks)
        _move_into_place(out, target)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(summary.replace(str(out), str(target)))
    return 0


def _move_into_place(tmp: Path, target: Path) -> None:
    """The files written in ``tmp`` become ``target``'s: the folder renamed when ``target`` does not exist, else each
    file replaced in it (other files there are kept)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, target)
        return
    for path in sorted(tmp.iterdir()):
        if path.name.startswith("."):  # the all-reduce workers' own parts
            continue
        os.replace(path, target / path.name)


def _profile_into(torch, args: argparse.Namespace, out: Path, shape: Shape, grid: Grid, warmup: int, iterations: int,
                  ranks: int) -> str:
    """Time the operators and write the tables and meta.yaml into ``out``; the line to print."""
    device = args.device
    dtype = getattr(torch, TORCH_DTYPES[args.dtype])
    timer = Timer(torch, device, warmup, iterations)
    max_model_len = max(max(grid.prefill_chunks) + max(grid.prefill_contexts), max(grid.decode_contexts) + 1)

    with torch.inference_mode():
        mlp = profile_mlp(torch, shape, args.tp, dtype, device, grid, timer)
        attention = profile_attention(torch, shape, args.tp, dtype, device, grid, timer, args.block_size, max_model_len)
    write_csv(out / "mlp.csv", mlp, list(mlp[0]))
    write_csv(out / "attention.csv", attention, list(attention[0]))
    written = ["mlp.csv", "attention.csv"]
    if ranks >= 2:
        reduce_rows = profile_all_reduce(ranks, device, args.dtype, grid.all_reduce_sizes, warmup, iterations, out)
        write_csv(out / "all_reduce.csv", reduce_rows, list(reduce_rows[0]), index=True)
        written.append("all_reduce.csv")

    import yaml

    meta = {
        "tool": "kvsim tools/profile_gpu.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "model_shape": {k: v for k, v in asdict(shape).items() if k != "name"},
        "tiny": args.tiny,
        "dtype": args.dtype,
        "tensor_parallel_size": args.tp,
        **device_info(torch, device),
        "timing": {"method": timer.method, "warmup": warmup, "iterations": iterations, "unit": "ms"},
        "attention_kernel": "torch.nn.functional.scaled_dot_product_attention (dense, enable_gqa); "
                            "KV write: index_copy_ into a paged cache",
        "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(grid).items()},
        "all_reduce_ranks": ranks if ranks >= 2 else 0,
        "files": written,
    }
    from sim.report.output import atomic_write_text

    atomic_write_text(out / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
    return (f"profile_gpu: {', '.join(written)} and meta.yaml in {out} "
            f"({len(mlp)} mlp rows, {len(attention)} attention rows)")


if __name__ == "__main__":
    from sim.command import end_process

    end_process(main())
