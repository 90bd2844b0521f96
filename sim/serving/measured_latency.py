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
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sim.errors import InputError, quote
from sim.json_input import unique_keys
from sim.serving.compute_model import ComputeModel
from sim.serving.profile_files import MAX_PROFILED_TIME_S
from sim.serving.step_shape import StepShape

MS = 1e-3
SPLITWISE_COLUMNS = ("model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time", "token_time",
                     "tensor_parallel")
# DistServe's curves are evaluated at these points (its models' contexts are at most 2,048 tokens: OPT's positions)
DISTSERVE_PREFILL_LENGTHS = (128, 256, 512, 1024, 2048)
DISTSERVE_PREFILL_BATCHES = (1, 4)
DISTSERVE_DECODE_BATCHES = (1, 4, 16, 64, 128, 256)
DISTSERVE_DECODE_CONTEXTS = (256, 1024)
# simdistserve adds pp_const = 1 ms x pp to every prefill ("TODO: Modulate the PP overhead"; none to a decode step):
# LLMServe/DistServe 82831f1, simdistserve/estimators/time_estimator.py get_prefill_time. Its curves are read at pp 1.
DISTSERVE_PREFILL_PP_MS = 1.0
DISTSERVE_KEYS = ("prefill", "decoding_smallbs", "decoding_largebs", "decoding_large_small_bs_threshold")


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
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: {'a directory' if path.is_dir() else 'not a regular file'}, not a table")
    if path.suffix.lower() == ".json":
        return read_distserve(path)
    return read_splitwise(path)


def read_splitwise(path: Path) -> list[MeasuredStep]:
    frame = _read_csv(path)
    missing = [c for c in SPLITWISE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a Splitwise perf_model table (missing columns {', '.join(missing)})")
    for column in SPLITWISE_COLUMNS[:2]:  # a blank key was a NaN the grouping dropped, with its row
        blank = frame[column].str.strip() == ""
        if blank.any():
            raise InputError(f"{path}: row {int(np.flatnonzero(blank.to_numpy())[0]) + 2}: {column} is empty")
    for column in SPLITWISE_COLUMNS[2:]:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~(values > 0) | values.isna() | ~np.isfinite(values.to_numpy(float, na_value=np.nan))
        if column in ("prompt_size", "batch_size", "token_size", "tensor_parallel"):
            bad |= values != values.round()
        if column == "token_size":
            bad |= values < 2  # one decode step at least after the prefill's token
        kind = (f"positive {'number' if column.endswith('_time') else 'integer'}"
                f"{' of at least 2' if column == 'token_size' else ''}")
        if column.endswith("_time"):  # ms; beyond an hour is a unit or data error (as a profile's times)
            too_long = ~bad & (values * MS > MAX_PROFILED_TIME_S)
            bad |= too_long
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            problem = (f"is longer than an hour ({MAX_PROFILED_TIME_S:g} s; the times are ms)" if column.endswith("_time")
                       and too_long.iloc[row] else f"is not a {kind}")
            raise InputError(f"{path}: row {row + 2}: {column} {quote(frame[column].iloc[row])} {problem}")
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


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV's cells as written (strings: a blank stays blank, 'NA' a name), refusing what pandas would read wrongly:
    a column named twice (it reads the first and renames the second) and rows with more fields than the header (it
    made the first column the index and shifted every value one column left)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except pd.errors.ParserWarning:
        raise InputError(f"{path}: rows with more fields than the header") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read it as CSV ({quote(_first_line(error))})") from None
    twice = sorted({c for c in header if header.count(c) > 1} & set(SPLITWISE_COLUMNS))
    if twice:
        raise InputError(f"{path}: column {', '.join(twice)} more than once in the header")
    return frame


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _splitwise_common(row) -> dict:
    return dict(model=str(row.model), gpu=str(row.hardware), tensor_parallel_size=int(row.tensor_parallel),
                batch=int(row.batch_size), tokens=int(row.prompt_size))


def _splitwise_point(path: Path, row) -> str:
    return (f"{path.name}: {row.model} {row.hardware} TP {int(row.tensor_parallel)}, {int(row.batch_size)} x "
            f"{int(row.prompt_size)}-token prompts")


def read_distserve(path: Path) -> list[MeasuredStep]:
    try:
        # (a byte-order mark passes, as in a network table: sim.serving.network.LookupNetwork.from_json)
        table = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=unique_keys(str(path)))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read it ({quote(_first_line(error))})") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError; an integer of over 4,300 digits; deep nesting
        raise InputError(f"{path}: not readable JSON ({quote(_first_line(error))})") from None
    steps: list[MeasuredStep] = []
    gpu = _distserve_gpu(path)
    if not isinstance(table, dict) or not table:
        raise InputError(f"{path}: not a DistServe profile ({{model: {{tp: {{prefill: [a, b, c], ...}}}}}})")
    for model, by_tp in table.items():
        if not isinstance(by_tp, dict) or not by_tp:
            raise InputError(f"{path}: {model}: not a mapping of tensor-parallel sizes to curves")
        for tp, curves in by_tp.items():
            if not re.fullmatch(r"[1-9][0-9]*", tp):  # int() also takes ' 2', '+2', '2_0' and '-2'
                raise InputError(f"{path.name}: {model}: TP {quote(tp)} is not a positive whole number")
            tensor_parallel = int(tp)
            where = f"{path.name}: {model} TP {tp}"
            if not isinstance(curves, dict) or not all(k in curves for k in DISTSERVE_KEYS):
                raise InputError(f"{where}: needs prefill, decoding_smallbs, decoding_largebs (three numbers each) "
                                 "and decoding_large_small_bs_threshold")
            unknown = [k for k in curves if k not in DISTSERVE_KEYS]
            if unknown:  # a misspelt curve would be left unread
                raise InputError(f"{where}: unknown key {quote(unknown[0])} (a DistServe profile's TP has "
                                 f"{', '.join(DISTSERVE_KEYS)})")
            prefill, small, large = (_coefficients(curves[k], where, k) for k in DISTSERVE_KEYS[:3])
            threshold = _finite(curves[DISTSERVE_KEYS[3]])
            if threshold is None or threshold < 1:
                raise InputError(f"{where}: {DISTSERVE_KEYS[3]} {quote(curves[DISTSERVE_KEYS[3]])} is not a batch "
                                 "size (a finite number, at least 1)")
            for batch in DISTSERVE_PREFILL_BATCHES:
                for length in DISTSERVE_PREFILL_LENGTHS:
                    # Σ of each prompt's length and Σ of each one's square (time_estimator.py get_prefill_time:
                    # num_total_tokens, sum_num_tokens_sqr): attention is quadratic in each prompt, not in the batch;
                    # then / pp + pp_const, simdistserve's 1 ms x pp on every prefill (pp = 1 here)
                    ms = (prefill[0] + prefill[1] * batch * length + prefill[2] * batch * length * length
                          + DISTSERVE_PREFILL_PP_MS)
                    steps.append(MeasuredStep(model, gpu, tensor_parallel, "prefill", batch, length, 1,
                                              _curve_seconds(ms, where, "prefill", batch, length),
                                              f"{where} prefill curve at {batch} x {length} tokens"))
            for batch in DISTSERVE_DECODE_BATCHES:
                a, b, c = small if batch < threshold else large
                for context in DISTSERVE_DECODE_CONTEXTS:
                    ms = a + b * batch * (context + 1) + c * batch
                    steps.append(MeasuredStep(model, gpu, tensor_parallel, "decode", batch, context, 1,
                                              _curve_seconds(ms, where, "decode", batch, context),
                                              f"{where} decode curve at {batch} x {context} tokens"))
    return steps


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite number (not a bool, a string or a list), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _coefficients(value: object, where: str, key: str) -> tuple[float, float, float]:
    numbers = [_finite(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != 3 or None in numbers:
        raise InputError(f"{where}: {key} {quote(value)} is not three finite numbers [a, b, c]")
    return numbers[0], numbers[1], numbers[2]


def _curve_seconds(ms: float, where: str, phase: str, batch: int, tokens: int) -> float:
    """A curve's value at a point, in seconds: a step's time, positive and at most an hour."""
    if not 0 < ms * MS <= MAX_PROFILED_TIME_S:
        raise InputError(f"{where}: the {phase} curve gives {ms:.4g} ms at {batch} x {tokens} tokens (a step takes "
                         f"a positive time, at most an hour)")
    return ms * MS


def _distserve_gpu(path: Path) -> str:
    """DistServe names the GPU in the file name only (``profiler-a100-80g.vllm.json``)."""
    stem = path.name.split(".")[0]
    return stem.removeprefix("profiler-") if stem.startswith("profiler-") else stem
