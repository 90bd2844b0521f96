"""kvsim's TP all-reduce (vLLM's dispatch: its peer kernels, multicast, NCCL in its fastest protocol) against vLLM's
own all-reduce as NVIDIA AIConfigurator measured it on each GPU it profiled.

Reads ``<DATA>/<gpu>/comm/vllm/<version>/custom_allreduce_perf.parquet`` (or the collector's ``.txt`` CSV) of an
AIConfigurator checkout (github.com/ai-dynamo/aiconfigurator, ``aic-core/src/aiconfigurator_core/systems/data``),
the newest version per GPU, its CUDA-graph rows (bf16 elements x 2 bytes), and prints per GPU the median and range of
predicted / measured - 1 in four size bands. From the repository root::

    python benchmarks/aiconfigurator_all_reduce.py $AIC/aic-core/src/aiconfigurator_core/systems/data
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sim.command import command_status, end_process  # noqa: E402
from sim.config import load_config  # noqa: E402 (after the path)
from sim.errors import InputError  # noqa: E402
from sim.serving.aic_collectives import aiconfigurator_all_reduces  # noqa: E402
from sim.serving.compute_backend import analytic_collectives  # noqa: E402
from sim.serving.operator_fit import GPU_FOLDERS, version_key  # noqa: E402

# B300 shares B200's NVLink 5 switch: priced as a B200 (kvsim lists no B300)
FOLDERS = {**GPU_FOLDERS, "b300_sxm": "b200"}
BANDS = ((0, 64 << 10, "<= 64 KiB"), (64 << 10, 4 << 20, "64 KiB - 4 MiB"), (4 << 20, 64 << 20, "4 - 64 MiB"),
         (64 << 20, 1 << 40, "> 64 MiB"))


def all_reduces(folder: Path) -> pd.DataFrame | None:
    """The newest all-reduce table under an AIConfigurator GPU folder, as ``ranks``, ``size`` (bytes) and ``seconds``
    (its CUDA-graph rows: ``aiconfigurator_all_reduces``); None: it has none."""
    files = [p for p in (folder / "comm" / "vllm").glob("*/custom_allreduce_perf.*")
             if p.suffix in (".parquet", ".txt")]
    if not files:
        return None
    path = max(files, key=lambda p: version_key(p.parent.name))
    return aiconfigurator_all_reduces(pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path), path)


def main() -> int:
    # a flag of one value given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    parser = OneLineParser(prog="aiconfigurator_all_reduce.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=path_argument, help="AIConfigurator's systems/data folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise InputError(f"{args.data}: not a folder (AIConfigurator's systems/data)")
    tables = {name: all_reduces(args.data / name) for name in FOLDERS}
    if all(rows is None for rows in tables.values()):  # printed a header alone, exit 0
        raise InputError(f"{args.data}: no <gpu>/comm/vllm/<version>/custom_allreduce_perf.parquet (or .txt) of "
                         f"any GPU kvsim knows ({', '.join(FOLDERS)}): not AIConfigurator's systems/data")
    print(f"{'GPU (as kvsim)':<32}" + "".join(f"{label:>24}" for *_, label in BANDS))
    for folder_name, gpu in FOLDERS.items():
        rows = tables[folder_name]
        if rows is None:
            continue
        errors = np.empty(len(rows))
        for ranks in sorted(set(rows["ranks"])):
            model = analytic_collectives(load_config(None, sets=[f"hardware.gpu={gpu}",
                                                                 f"serving.tensor_parallel_size={ranks}"]))
            group = (rows["ranks"] == ranks).to_numpy()
            errors[group] = [model.all_reduce(size, ranks) / seconds - 1
                             for size, seconds in zip(rows["size"][group], rows["seconds"][group])]
        cells = []
        for low, high, _ in BANDS:
            e = errors[((rows["size"] > low) & (rows["size"] <= high)).to_numpy()]
            cells.append(f"{np.median(np.abs(e)):.1%} ({e.min():+.0%}/{e.max():+.0%})" if len(e) else "-")
        print(f"{folder_name + ' (' + gpu + ')':<32}" + "".join(f"{c:>24}" for c in cells))
    return 0


if __name__ == "__main__":
    end_process(command_status("aiconfigurator_all_reduce.py", main))
