"""NVIDIA AIConfigurator's measured collectives (github.com/ai-dynamo/aiconfigurator, ``systems/data/<gpu>/comm/``).

Two tables, Parquet in its data folder or its collector's CSV (``.txt``), told apart by their columns:

- ``<engine>/<version>/custom_allreduce_perf``: the serving engine's own all-reduce as it dispatches it
  (``allreduce_dtype``; the CUDA-graph rows where the file has them, the engine's default);
- ``nccl/<version>/nccl_perf``: NCCL's all-reduce, all-gather and reduce-scatter as nccl-tests timed them
  (``nccl_dtype``; collector/network/collect_nccl.py runs ``<op>_perf -b S -e S`` and records S in elements).

Both give ``latency`` (ms) over ``message_size`` (elements) per ``num_gpus``. nccl-tests' size is the whole buffer:
an all-reduce's input on each rank, an all-gather's gathered output, a reduce-scatter's input on each rank
(AllGatherGetCollByteCount: recvcount = base x nranks; ReduceScatter's sendcount alike), so one rank's share of an
all-gather or a reduce-scatter, the size ``MeasuredCollectives`` looks those up at, is the size over ``num_gpus``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sim.errors import ConfigError
from sim.serving.profile_files import read_profile_csv, unused_rows

if TYPE_CHECKING:
    import pandas as pd

AIC_COLUMNS = ("op_name", "kernel_source", "allreduce_dtype", "num_gpus", "message_size", "latency")
AIC_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
NCCL_COLUMNS = ("op_name", "nccl_dtype", "num_gpus", "message_size", "latency")
# The collector's dtypes: half (2 bytes) for a 16-bit model's activations, int8 (1) beside it; kvsim reads the half
# rows, the width a model's all-reduces and logits all-gather move.
NCCL_DTYPE = "half"
NCCL_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter")  # (alltoall: no TP step of kvsim's runs one)


def aiconfigurator_all_reduces(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """An AIConfigurator all-reduce table's rows as ``ranks``, ``size`` (bytes) and ``seconds``: its all_reduce rows,
    the CUDA-graph ones where it has them (the engine's default), sizes from elements of ``allreduce_dtype``."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    frame = frame[frame["op_name"].astype(str) == "all_reduce"]
    graph = frame["kernel_source"].astype(str).str.endswith("_graph")
    frame = frame[graph] if graph.any() else frame
    unknown = sorted(set(frame["allreduce_dtype"].astype(str)) - set(AIC_DTYPE_BYTES))
    if unknown:
        raise ConfigError(f"{path}: allreduce_dtype {', '.join(unknown)} not one of {', '.join(AIC_DTYPE_BYTES)}")
    if frame.empty:
        raise ConfigError(f"{path}: no all_reduce rows")
    sizes = frame["message_size"].astype(float) * frame["allreduce_dtype"].astype(str).map(AIC_DTYPE_BYTES)
    return pd.DataFrame({"ranks": frame["num_gpus"].astype(int), "size": sizes,
                         "seconds": frame["latency"].astype(float) * 1e-3})


def nccl_collectives(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """An AIConfigurator ``nccl_perf`` table's half-precision rows as ``collective``, ``ranks``, ``size`` (bytes, one
    rank's share for an all-gather or reduce-scatter: nccl-tests' whole buffer over the ranks) and ``seconds``."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    frame = frame[frame["op_name"].astype(str).isin(NCCL_COLLECTIVES)]
    dtypes = sorted(set(frame["nccl_dtype"].astype(str)))
    frame = frame[frame["nccl_dtype"].astype(str) == NCCL_DTYPE]
    if frame.empty:
        raise ConfigError(f"{path}: no {NCCL_DTYPE} rows of {', '.join(NCCL_COLLECTIVES)} (nccl_dtype: "
                          f"{', '.join(dtypes) or 'none'})")
    ranks = frame["num_gpus"].astype(int)
    whole = frame["message_size"].astype(float) * 2  # (half: 2 bytes an element)
    share = frame["op_name"].astype(str) != "all_reduce"
    return pd.DataFrame({"collective": frame["op_name"].astype(str), "ranks": ranks,
                         "size": whole.where(~share, whole / ranks), "seconds": frame["latency"].astype(float) * 1e-3})


def aiconfigurator_rows(path: Path) -> tuple[pd.DataFrame, bool]:
    """An AIConfigurator collectives table (either kind) as ``collective``, ``ranks``, ``size``, ``seconds`` rows, and
    whether it is the engine's own all-reduce (True) or NCCL's (False: its all-reduce is a ring's, NVLS's)."""
    numeric = ("num_gpus", "message_size", "latency")
    common = dict(numeric=numeric, keys=("num_gpus", "message_size"), positive=("num_gpus",), times={"latency": 1e-3})
    if "nccl_dtype" in _columns(path):
        frame = read_profile_csv(path, needed=NCCL_COLUMNS, what="AIConfigurator NCCL table", **common)
        frame = frame.drop(index=frame.index[unused_rows(frame, ["latency"], path)])  # (a blank one: a NaN run)
        return nccl_collectives(frame, path), False
    frame = read_profile_csv(path, needed=AIC_COLUMNS, what="AIConfigurator all-reduce table", **common)
    frame = frame.drop(index=frame.index[unused_rows(frame, ["latency"], path)])  # (counted in a note)
    return aiconfigurator_all_reduces(frame, path).assign(collective="all_reduce"), True


def _columns(path: Path) -> list[str]:
    """The header of a table, read alone (errors left to ``read_profile_csv``, which names the file)."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # (~8 ms to import: only for a Parquet table)

            return [str(c).strip() for c in pq.read_schema(path).names]
        return [str(c).strip() for c in pd.read_csv(path, nrows=0, skipinitialspace=True).columns]
    except (OSError, ValueError):  # (pandas' and pyarrow's parse errors are ValueErrors)
        return []
