"""kvsim's routed-expert time against NVIDIA AIConfigurator's measured vLLM fused-MoE kernels.

Reads AIConfigurator ``moe_perf`` tables (one GPU each), keeps the bf16 rows of the Triton fused-MoE kernel with
balanced routing, and prints each GPU's median |error| of kvsim's prediction, by token range: as before, with the
experts' padded rows, and with the GEMMs' activation traffic too (``sim.serving.moe``). Nothing is fitted: the
roofline's constants are config.yaml's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repository's packages

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import argparse  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

EPILOG = """\
Each TABLE=GPU is an AIConfigurator moe_perf table (github.com/ai-dynamo/aiconfigurator,
aic-core/src/aiconfigurator_core/systems/data/<gpu>/moe/vllm/<version>/moe_perf.parquet, or the collector's CSV)
and kvsim's GPU (a profiles/gpus.yaml name, in any spelling hardware.gpu takes, or a GPU spec YAML).
AIConfigurator's collector (collector/vllm/collect_moe.py) times vLLM's FusedMoE on given router logits: the
top-k, moe_align_block_size, the two grouped GEMMs, the activation and moe_sum, one rank of moe_tp_size x
moe_ep_size; kvsim's reference is the same: the experts' GEMMs (two kernels, their FLOPs over the padded rows, the
touched experts' weights, the activations) and the block's elementwise kernels
(sim.serving.elementwise.moe_block_cost), without the router's GEMM.

example:
  python tools/check_moe_kernels.py $AIC/systems/data/h200_sxm/moe/vllm/0.19.0/moe_perf.parquet=h200
"""

KERNELS = ("vllm_fused_moe", "vllm_unquantizedfusedmoe_triton_tritonexperts")  # the Triton fused-MoE kernel's rows
TOKEN_BINS = [0, 8, 64, 512, 2048, math.inf]


def read_table(path: Path) -> pd.DataFrame:
    """The bf16, balanced, Triton rows of one moe_perf table, latency in seconds."""
    from sim.errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: no such moe_perf table")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as e:  # (pyarrow's and pandas' errors on a file that is not a table)
        raise InputError(f"{path}: not a readable moe_perf table ({type(e).__name__})") from None
    needed = {"kernel_source", "moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
              "moe_tp_size", "moe_ep_size", "distribution", "latency"}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    kept = frame[frame["moe_dtype"].eq("bfloat16") & frame["distribution"].eq("balanced")
                 & frame["kernel_source"].isin(KERNELS)]
    return kept.assign(seconds=kept["latency"] * 1e-3).reset_index(drop=True)  # (AIConfigurator's ms)


def _model(hidden: int, inter: int, topk: int, experts: int):
    from sim.model_shape import ModelSpec

    return ModelSpec(name=f"moe-{hidden}-{inter}-{topk}-{experts}", num_layers=1, hidden_size=hidden,
                     num_attention_heads=8, num_kv_heads=8, head_dim=128, intermediate_size=inter, vocab_size=1,
                     num_parameters=0, max_position_embeddings=1 << 20, source="AIConfigurator moe_perf row",
                     num_experts=experts, num_experts_per_tok=topk, moe_intermediate_size=inter, num_moe_layers=1)


def predict(frame: pd.DataFrame, gpu: str, padded: bool = True, traffic: bool = True) -> np.ndarray:
    """kvsim's seconds for each row: one rank of moe_tp_size (experts split by width) x moe_ep_size (kvsim's
    data-parallel group: the rank sees the group's tokens, holds 1/ep of the experts), config.yaml's roofline.
    ``padded``: the experts' padded rows, else the routed pairs; ``traffic``: the GEMMs' activation bytes as vLLM's
    kernels move them (``sim.serving.moe.routed_activation_bytes``), else kvsim's earlier 2 (H + k I) per routed
    token."""
    from sim.config import load_config
    from sim.serving import moe
    from sim.serving.compute import RooflineCompute
    from sim.serving.elementwise import moe_block_cost
    from sim.serving.kernel_floors import KernelFloors
    from sim.specs import gpu_spec

    c = load_config(None).compute
    spec = gpu_spec(gpu)
    floors = KernelFloors.from_us(c.gemm_floor_us, c.attention_floor_us, c.attention_tile_us)
    out = np.empty(len(frame))
    for i, row in enumerate(frame.itertuples()):
        m = _model(int(row.hidden_size), int(row.inter_size), int(row.topk), int(row.num_experts))
        tp, ep, tokens = int(row.moe_tp_size), int(row.moe_ep_size), int(row.num_tokens)
        r = RooflineCompute(m, spec, 2, 2, tp, flops_efficiency=c.flops_efficiency,
                            bandwidth_efficiency=c.bandwidth_efficiency, data_parallel_size=ep,
                            floors=floors)
        rows = r.fused.rows(tokens) if padded else tokens * m.num_experts_per_tok / ep
        flops = r.expert_flops_per_row * rows
        act = r.fused.activation_bytes(tokens) if traffic else \
            tokens / ep * 2 * (m.hidden_size + m.num_experts_per_tok * m.moe_intermediate_size) * 2 / tp
        moved = r.expert_bytes * moe.rank_experts(tokens, m, ep) + act
        gemms = 2 * floors.gemm_s + math.hypot(flops / r.linear_peak, moved / r.bandwidth)
        block = moe_block_cost(m, 2, tp)
        out[i] = gemms + block.layer_time(tokens, floors.gemm_s, r.bandwidth, spec.l2_bytes,
                                          spec.cache_bandwidth * c.bandwidth_efficiency)
    return out


def errors(frame: pd.DataFrame, gpu: str, padded: bool = True, traffic: bool = True) -> np.ndarray:
    """Each row's prediction / measurement - 1."""
    return predict(frame, gpu, padded, traffic) / frame["seconds"].to_numpy() - 1


VARIANTS = {"before": (False, False), "padded rows": (True, False), "padded rows + GEMM traffic": (True, True)}


def summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per GPU and token range: median |error| and median error of each variant (``VARIANTS``)."""
    rows = []
    for gpu, frame in tables.items():
        for name, (padded, traffic) in VARIANTS.items():
            err = errors(frame, gpu, padded, traffic)
            bins = pd.cut(frame["num_tokens"], TOKEN_BINS)
            by = pd.Series(np.abs(err)).groupby(bins.to_numpy(), observed=True).median()
            rows.append({"gpu": gpu, "kvsim": name, "rows": len(frame), "median_abs": float(np.median(np.abs(err))),
                         "median": float(np.median(err)), **{f"|e| {k}": v for k, v in by.items()}})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    from sim.command import command_status

    p = argparse.ArgumentParser(prog="check_moe_kernels.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("tables", nargs="+", metavar="TABLE=GPU",
                   help="a moe_perf table (parquet or the collector's CSV) and the kvsim GPU it was measured on; below")
    p.add_argument("--tp1-ep1", action="store_true", help="only rows of one GPU's whole layer (tp 1, ep 1)")
    args = p.parse_args(argv)
    return command_status("check_moe_kernels.py", lambda: compare(args.tables, args.tp1_ep1))


def compare(items: list[str], tp1_ep1: bool) -> int:
    """Read every TABLE=GPU (each GPU named as hardware.gpu takes it, once) and print the summary."""
    from sim.errors import InputError
    from sim.specs import resolve_gpu

    tables, paths = {}, {}
    for item in items:  # every GPU first, as hardware.gpu names one (any spelling, or a spec file)
        path, sep, gpu = item.rpartition("=")
        if not sep:
            raise InputError(f"{item}: write TABLE=GPU")
        gpu = resolve_gpu(gpu)
        if gpu in paths:  # (the later table replaced the earlier in the summary, unsaid)
            raise InputError(f"{item}: GPU {gpu!r} is given a table twice; compare one table per GPU at a time")
        paths[gpu] = path
    for gpu, path in paths.items():
        frame = read_table(Path(path))
        if tp1_ep1:
            frame = frame[(frame["moe_tp_size"] == 1) & (frame["moe_ep_size"] == 1)]
        if frame.empty:
            raise InputError(f"{path}: no bf16 balanced Triton fused-MoE rows")
        tables[gpu] = frame
    with pd.option_context("display.width", 200):
        print(summary(tables).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    from sim.command import end_process

    end_process(main())
