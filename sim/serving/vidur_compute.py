"""Vidur-profiled compute: per-layer operator times measured by Vidur's profiler.

``ProfiledCompute`` interpolates Vidur's ``mlp.csv`` (every operator but the attention kernel,
over token counts) and, when given, ``attention.csv`` (the attention kernel over prefill chunk or
decode batch and KV history); the roofline prices attention otherwise, and always the LM head
and the TP collectives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.errors import ConfigError, quote
from sim.model_shape import ModelSpec
from sim.serving.compute import RooflineCompute
from sim.serving.moe import DataParallelShare
from sim.serving.profile_files import read_profile_csv, require_points, unused_rows
from sim.serving.profile_grid import GridNode, interpolate
from sim.serving.step_shape import StepShape, window_kv_tokens

if TYPE_CHECKING:
    import pandas as pd


def vidur_op_columns(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """The per-operator median-time columns (``time_stats.<op>.median``) of a Vidur table, less ``exclude`` ops."""
    return [c for c in frame.columns if c.startswith("time_stats.") and c.endswith(".median")
            and c.split(".")[1] not in exclude]



# Operators every model's decoder layer has, so every Vidur mlp.csv times them (github.com/microsoft/vidur
# vidur/profiling/mlp: the gated MLP's fused gate/up and a plain MLP's fc1 are both ``mlp_up_proj``).
VIDUR_LAYER_OPS = ("input_layernorm", "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_act", "mlp_down_proj")


def vidur_layer_ms(frame: pd.DataFrame, path: Path) -> pd.Series:
    """Each mlp.csv row's per-layer time (ms): the sum of the operators it times, less the embedding (a row lacking
    one of their times, which a partial sum would price without it, is set aside by ``read_vidur_table``)."""
    ops = vidur_op_columns(frame, exclude=("emb",))
    missing = [op for op in VIDUR_LAYER_OPS if f"time_stats.{op}.median" not in ops]
    if missing:
        raise ConfigError(f"{path}: no time_stats.<op>.median column of operator(s) {', '.join(missing)}")
    return took_time(frame[ops].sum(axis=1, min_count=len(ops)), path, "its layer's operators")


def took_time(ms: pd.Series, path: Path, what: str) -> pd.Series:
    """``ms`` (a row's summed operator medians, by the file's row positions), refused where it is 0: no layer or
    attention call is free (an all-zero table ran to exit 0 with a memory bandwidth use of 236%)."""
    zero = (ms == 0).to_numpy()
    if zero.any():
        raise ConfigError(f"{path}: row {int(ms.index[zero.argmax()]) + 1}: {what} add up to 0 ms (every GPU "
                          "kernel takes time)")
    return ms


def read_vidur_table(path: Path, table: str, keys: set[str], shapes: tuple[tuple[str, int | bool], ...] = ()) -> pd.DataFrame:
    """A Vidur table with its numbers checked: operator times (``time_stats.*``, ms) finite, not negative, at most
    an hour; its sweep ``keys`` and numeric model ``shapes`` whole numbers in every row, the TP degree at least 1.
    Rows that price nothing are set aside and counted (``unused_rows``): in mlp.csv a row lacking one of the layer's
    operator times (its layer is their sum), in attention.csv a row with no time at all (a row times its own kind's
    operators, prefill or decode, and leaves the other kind's blank)."""
    shape_keys = {column for column, value in shapes if not isinstance(value, bool)}
    sweep = keys | {"num_tensor_parallel_workers"}  # (the model's shape columns are checked where a table has them)
    keys = sweep | shape_keys
    frame = read_profile_csv(path, numeric=("time_stats.*", *sorted(keys - {"is_prefill"})), what=f"Vidur {table}",
                             keys=keys, positive=("num_tensor_parallel_workers",), times={"time_stats.*": 1e-3})
    if not sweep <= set(frame.columns):  # (e.g. a Git LFS pointer left where a clone without git-lfs put the table)
        raise ConfigError(f"{path}: not a Vidur {table} (needs columns {sorted(sweep)})")
    if "is_prefill" in frame.columns:
        frame["is_prefill"] = _booleans(frame["is_prefill"], path, table)
    mlp = table == "mlp.csv"
    ops = vidur_op_columns(frame, exclude=("emb",) if mlp else ())
    return frame.drop(index=frame.index[unused_rows(frame, ops, path, every=not mlp)]) if ops else frame


def _booleans(column: pd.Series, path: Path, table: str) -> pd.Series:
    """attention.csv's ``is_prefill``, which Vidur writes as True/False (pandas' booleans), as booleans. Another
    spelling was not read: 1/0 made every row a decode row (the prefill rows' times among them) and the run failed at
    its first prefill step; yes/no was "not a number"."""
    words = column.astype(str).str.strip().str.lower()
    wrong = ~words.isin(("true", "false"))
    if wrong.any():
        row = int(wrong.to_numpy().argmax())
        raise ConfigError(f"{path} (Vidur {table}): row {row + 1} column is_prefill must be True or False (as Vidur "
                          f"writes it), got {quote(str(column.iloc[row]), 40)}")
    return words == "true"


def _vidur_rows(path: Path, table: str, needed: set[str], shapes: tuple[tuple[str, int | bool], ...], model: ModelSpec,
                tensor_parallel_size: int, rows: np.ndarray | None = None) -> pd.DataFrame:
    """The rows of Vidur's ``table`` profiled at ``tensor_parallel_size`` (of the file's ``rows``, by position, if
    given), after checking its columns and that each profiled shape column (``shapes``: column, the model's value)
    matches the model."""
    frame = read_vidur_table(path, table, needed, shapes)
    if rows is not None:
        frame = frame[frame.index.isin(rows)]  # (the index is the file's row positions, rows set aside left out)
    needed = needed | {"num_tensor_parallel_workers"}
    if not needed <= set(frame.columns):
        raise ConfigError(f"{path}: not a Vidur {table} (needs columns {sorted(needed)})")
    for column, expected in shapes:
        if column not in frame.columns:
            continue
        values, wanted = frame[column], expected
        if isinstance(expected, bool):  # True/False however pandas parsed the column
            values, wanted = values.astype(str).str.lower(), str(expected).lower()
        if not (values == wanted).all():
            raise ConfigError(f"{path}: profiled {column}={frame[column].iloc[0]} does not match model {model.name} ({expected})")
    frame = frame[frame["num_tensor_parallel_workers"] == tensor_parallel_size]
    if frame.empty:
        raise ConfigError(f"{path}: no rows for tensor parallel size {tensor_parallel_size}")
    return frame

@dataclass
class VidurProfile:
    """Per-layer time of everything but the attention kernel, from Vidur's ``mlp.csv`` (ms, medians): the sum of
    every operator the table times (less the embedding, once per step), whichever the model has: a gated MLP's
    fused gate/up ``mlp_up_proj`` or a plain MLP's fc1 (``use_gated_mlp`` False, checked against the model), a
    second norm or none (Phi's parallel block has no ``post_attention_layernorm``)."""

    tokens: np.ndarray
    seconds: np.ndarray
    source: str

    @classmethod
    def load(cls, path: Path, model: ModelSpec, tensor_parallel_size: int, rows: np.ndarray | None = None) -> "VidurProfile":
        frame = _vidur_rows(path, "mlp.csv", {"num_tokens"}, (("n_embd", model.hidden_size),
                            ("n_head", model.num_attention_heads), ("n_kv_head", model.num_kv_heads),
                            ("n_expanded_embd", model.intermediate_size), ("use_gated_mlp", model.gated_mlp)),
                            model, tensor_parallel_size, rows)
        frame = frame.assign(total_ms=vidur_layer_ms(frame, path))  # (rows lacking a time: set aside when read)
        if frame.empty:
            raise ConfigError(f"{path}: no row at tensor parallel size {tensor_parallel_size} times every operator")
        frame = frame.groupby("num_tokens", as_index=False)["total_ms"].mean()
        require_points(frame, ["num_tokens"], path, "mlp.csv", f"at tensor parallel size {tensor_parallel_size}")
        return cls(frame["num_tokens"].to_numpy(float), frame["total_ms"].to_numpy(float) / 1e3, str(path))

    def layer_time(self, tokens: float) -> float:
        """Interpolated linearly between profiled token counts; linear extrapolation beyond the largest."""
        return interpolate(self.tokens, self.seconds, tokens)


@dataclass
class VidurAttention:
    """One layer's attention from Vidur's ``attention.csv`` (ms, medians of every ``time_stats`` operator in a row).

    Prefill rows (batch 1) over (prefill_chunk_size, kv_cache_size); decode rows over (batch_size,
    kv_cache_size). Several prefills in a step are one lookup at Vidur's aggregate: KV history
    Σ kv, chunk sqrt(Σ chunk²) (its ``_get_attention_prefill_execution_time``); decodes at their mean KV history.
    """

    prefill: GridNode | None
    decode: GridNode | None
    source: str

    @classmethod
    def load(cls, path: Path, model: ModelSpec, tensor_parallel_size: int, block_size: int) -> "VidurAttention":
        frame = _vidur_rows(path, "attention.csv", {"batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill"},
                            (("n_embd", model.hidden_size), ("n_q_head", model.num_attention_heads),
                             ("n_kv_head", model.num_kv_heads)), model, tensor_parallel_size)
        if "block_size" in frame.columns:  # the profiled block size nearest the served one
            sizes = frame["block_size"].unique()
            frame = frame[frame["block_size"] == min(sizes, key=lambda b: (abs(b - block_size), b))]
        frame = frame.assign(time_s=took_time(frame[vidur_op_columns(frame)].sum(axis=1, min_count=1), path,
                                              "its attention operators") * 1e-3)
        prefill = frame[frame["is_prefill"].astype(str).str.lower() == "true"]
        decode = frame[frame["is_prefill"].astype(str).str.lower() != "true"]
        for rows, axes, kind in ((prefill, ["prefill_chunk_size", "kv_cache_size"], "prefill"),
                                 (decode, ["batch_size", "kv_cache_size"], "decode")):
            if len(rows):
                require_points(rows, axes, path, "attention.csv",
                               f"of {kind} at tensor parallel size {tensor_parallel_size}")
        return cls(GridNode(prefill, ["prefill_chunk_size", "kv_cache_size"], "time_s") if len(prefill) else None,
                   GridNode(decode, ["batch_size", "kv_cache_size"], "time_s") if len(decode) else None, str(path))

    def _missing(self, kind: str) -> ConfigError:
        return ConfigError(f"{self.source}: no {kind} rows, but the step has {kind} sequences")

    def layer_time(self, shape: StepShape) -> float:
        total = 0.0
        if shape.prefill_seqs:
            if self.prefill is None:
                raise self._missing("prefill")
            total += self.prefill.lookup((math.sqrt(shape.prefill_chunk_sq), shape.prefill_context))
        if shape.decode_seqs:
            total += self.decode_time(shape.decode_seqs, shape.decode_kv_tokens / shape.decode_seqs)
        return total

    def decode_time(self, seqs: int, kv_mean: float) -> float:
        """``kv_mean``: keys each new token attends to (its own included); Vidur's axis is the cached history."""
        if self.decode is None:
            raise self._missing("decode")
        return self.decode.lookup((seqs, kv_mean - 1))

    def window_decode_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        """``decode_time`` of each step of a decode window (``kv_tokens``: each step's Σ KV length), at once."""
        if self.decode is None:
            raise self._missing("decode")
        return self.decode.lookup_last((seqs,), kv_tokens / seqs - 1)


@dataclass
class ProfiledCompute:
    """Vidur's measured per-layer operator times (``mlp.csv``; ``attention.csv`` when given, else the roofline's
    attention); the roofline's LM head."""

    profile: VidurProfile
    roofline: RooflineCompute
    attention: VidurAttention | None = None
    name: str = "profiled"
    sliding_window: int = 0  # profiles time full-attention layers: hybrid models are refused (profile_misfit)

    def _attention_time(self, shape: StepShape) -> float:
        return self.roofline.attention_layer_time(shape) if self.attention is None else self.attention.layer_time(shape)

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        """``share``: the tokens the layers run, padded to the step's CUDA graph (a Vidur profile serves dense
        models: no data-parallel groups)."""
        if shape.tokens == 0:
            return 0.0
        tokens = shape.tokens if share is None else share.tokens
        r, rows = self.roofline, shape.logit_rows
        per_layer = self.profile.layer_time(tokens) + self._attention_time(shape)
        return r.model.num_layers * per_layer + r.lm_head_time(rows) + r.comm_time(tokens, rows)

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        r, seqs = self.roofline, first.decode_seqs
        kv_tokens = window_kv_tokens(first, steps)
        if self.attention is None:
            attention = r.decode_attention_times(seqs, kv_tokens)
        else:
            attention = self.attention.window_decode_times(seqs, kv_tokens)
        tokens = seqs if share is None else share.tokens
        once = r.lm_head_time(seqs) + r.comm_time(tokens, seqs)
        return r.model.num_layers * (self.profile.layer_time(tokens) + attention) + once
