"""Published tables of measured step latencies, and what a compute model predicts for each of their points.

Two public formats, read as their publishers' simulators read them:

- **Splitwise** (``perf_model.csv`` of Mutinifni/splitwise-sim: ``model, hardware, prompt_size, batch_size,
  token_size, prompt_time, token_time, tensor_parallel``, times in ms): ``prompt_time`` is one step prefilling
  ``batch_size`` prompts of ``prompt_size`` tokens; ``token_time`` the mean of the ``token_size - 1`` decode steps that
  follow (``e2e_time = prompt_time + (token_size - 1) x token_time`` in every row). Repeated runs of a point are
  reduced to their median, as splitwise-sim's ``DatabasePerformanceModel`` does.
- **DistServe** (``simdistserve/estimators/profile_data/profiler-*.json``: ``{model: {tp: {prefill: [a, b, c],
  decoding_smallbs, decoding_largebs, decoding_large_small_bs_threshold}}}``, ms): curves fitted to its measurements,
  evaluated as ``simdistserve/estimators/time_estimator.py`` does at a grid of batches (prefill: a + b Σlen + c Σ(len²), each prompt's square;
  decode: a + b Σ(context + 1) + c x batch, the large-batch curve from the threshold on).

A point names its model and GPU as the table does; ``resolve`` maps them to kvsim's names (aliases in profiles/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sim.errors import InputError
from sim.serving.compute import ComputeModel
from sim.serving.step_shape import StepShape

MS = 1e-3
SPLITWISE_COLUMNS = ("model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time", "token_time",
                     "tensor_parallel")
# DistServe's curves are evaluated at these points (its models' contexts are at most 2,048 tokens: OPT's positions)
DISTSERVE_PREFILL_LENGTHS = (128, 256, 512, 1024, 2048)
DISTSERVE_PREFILL_BATCHES = (1, 4)
DISTSERVE_DECODE_BATCHES = (1, 4, 16, 64, 128, 256)
DISTSERVE_DECODE_CONTEXTS = (256, 1024)


@dataclass(frozen=True)
class MeasuredStep:
    """One measured point: a step prefilling ``batch`` prompts of ``tokens`` tokens (``phase`` prefill), or the mean
    of ``steps`` decode steps of ``batch`` sequences whose first step's new token follows ``tokens`` tokens."""

    model: str
    gpu: str
    tensor_parallel_size: int
    phase: Literal["prefill", "decode"]
    batch: int
    tokens: int
    steps: int
    seconds: float
    source: str  # file and row, or the curve it was evaluated from

    @property
    def group(self) -> tuple[str, str, int, str]:
        return self.model, self.gpu, self.tensor_parallel_size, self.phase


def predict(step: MeasuredStep, compute: ComputeModel) -> float:
    """Seconds ``compute`` takes for the measured point ``step``."""
    if step.phase == "prefill":
        shape = StepShape()
        for _ in range(step.batch):
            shape.add_prefill(step.tokens, 0)
        return compute.step_time(shape)
    kv = step.tokens + 1  # the first decode step's token attends to the prompt and itself
    first = StepShape(decode_seqs=step.batch, decode_kv_tokens=step.batch * kv, decode_kv_max=kv, decode_kv_min=kv)
    return float(np.mean(compute.decode_times(first, step.steps)))


def read_table(path: Path) -> list[MeasuredStep]:
    """The points of a Splitwise CSV or DistServe JSON table (told by its suffix)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        return read_distserve(path)
    return read_splitwise(path)


def read_splitwise(path: Path) -> list[MeasuredStep]:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV ({str(error).splitlines()[0][:120]})") from None
    missing = [c for c in SPLITWISE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a Splitwise perf_model table (missing columns {', '.join(missing)})")
    for column in SPLITWISE_COLUMNS[2:]:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~(values > 0) | (values.isna())
        if column in ("prompt_size", "batch_size", "token_size", "tensor_parallel"):
            bad |= values != values.round()
        if column == "token_size":
            bad |= values < 2  # one decode step at least after the prefill's token
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: row {row + 2}: {column} {frame[column].iloc[row]!r} is not a positive "
                             f"{'number' if column.endswith('_time') else 'integer'}"
                             f"{' of at least 2' if column == 'token_size' else ''}")
        frame[column] = values
    keys = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size"]
    steps: list[MeasuredStep] = []
    # a prefill is measured once per token_size (the same step each time): one point, their median
    for row in frame.groupby(keys, sort=True)["prompt_time"].median().reset_index().itertuples(index=False):
        steps.append(MeasuredStep(phase="prefill", steps=1, seconds=row.prompt_time * MS,
                                  source=_splitwise_point(path, row), **_splitwise_common(row)))
    for row in frame.groupby(keys + ["token_size"], sort=True)["token_time"].median().reset_index().itertuples(
            index=False):
        steps.append(MeasuredStep(phase="decode", steps=int(row.token_size) - 1, seconds=row.token_time * MS,
                                  source=f"{_splitwise_point(path, row)}, {int(row.token_size)} tokens",
                                  **_splitwise_common(row)))
    return steps


def _splitwise_common(row) -> dict:
    return dict(model=str(row.model), gpu=str(row.hardware), tensor_parallel_size=int(row.tensor_parallel),
                batch=int(row.batch_size), tokens=int(row.prompt_size))


def _splitwise_point(path: Path, row) -> str:
    return (f"{path.name}: {row.model} {row.hardware} TP {int(row.tensor_parallel)}, {int(row.batch_size)} x "
            f"{int(row.prompt_size)}-token prompts")


def read_distserve(path: Path) -> list[MeasuredStep]:
    try:
        table = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not readable JSON ({error})") from None
    steps: list[MeasuredStep] = []
    gpu = _distserve_gpu(path)
    if not isinstance(table, dict) or not table:
        raise InputError(f"{path}: not a DistServe profile ({{model: {{tp: {{prefill: [a, b, c], ...}}}}}})")
    for model, by_tp in table.items():
        if not isinstance(by_tp, dict) or not by_tp:
            raise InputError(f"{path}: {model}: not a mapping of tensor-parallel sizes to curves")
        for tp, curves in by_tp.items():
            where = f"{path.name}: {model} TP {tp}"
            try:
                prefill = [float(v) for v in curves["prefill"]]
                small = [float(v) for v in curves["decoding_smallbs"]]
                large = [float(v) for v in curves["decoding_largebs"]]
                threshold = int(curves["decoding_large_small_bs_threshold"])
                tensor_parallel = int(tp)
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{where}: needs prefill, decoding_smallbs, decoding_largebs (three numbers each) "
                                 "and decoding_large_small_bs_threshold") from None
            if len(prefill) != 3 or len(small) != 3 or len(large) != 3:
                raise InputError(f"{where}: each curve has three coefficients [a, b, c]")
            for batch in DISTSERVE_PREFILL_BATCHES:
                for length in DISTSERVE_PREFILL_LENGTHS:
                    # Σ of each prompt's length and Σ of each one's square (time_estimator.py get_prefill_time:
                    # num_total_tokens, sum_num_tokens_sqr): attention is quadratic in each prompt, not in the batch
                    ms = prefill[0] + prefill[1] * batch * length + prefill[2] * batch * length * length
                    steps.append(MeasuredStep(model, gpu, tensor_parallel, "prefill", batch, length, 1, ms * MS,
                                              f"{where} prefill curve"))
            for batch in DISTSERVE_DECODE_BATCHES:
                a, b, c = small if batch < threshold else large
                for context in DISTSERVE_DECODE_CONTEXTS:
                    ms = a + b * batch * (context + 1) + c * batch
                    steps.append(MeasuredStep(model, gpu, tensor_parallel, "decode", batch, context, 1, ms * MS,
                                              f"{where} decode curve"))
    return steps


def _distserve_gpu(path: Path) -> str:
    """DistServe names the GPU in the file name only (``profiler-a100-80g.vllm.json``)."""
    stem = path.name.split(".")[0]
    return stem.removeprefix("profiler-") if stem.startswith("profiler-") else stem
