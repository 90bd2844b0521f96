"""Trace formats: what each file holds, how its rows become request arrays, how a file's format is recognised.

A format is a ``TraceFormat`` in the ``FORMATS`` registry: the columns (CSV) or keys (JSONL)
that identify it, its native time unit and its parser. A parser turns one chunk of rows as read
(``trace.readers``: text, or JSON values) into a ``Chunk`` of flat arrays with a skip reason per
row for each column it checks (an ISO 8601 time's: ``trace.datetimes``); ``trace.loaders`` keeps the rows
without one. Formats and their native time units:

| format        | file  | columns / keys                                                     | time unit |
|---------------|-------|--------------------------------------------------------------------|-----------|
| azure         | CSV   | TIMESTAMP (datetime), ContextTokens, GeneratedTokens               | datetime  |
| burstgpt      | CSV   | Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type [, session id] | s |
| mooncake      | JSONL | timestamp, input_length, output_length, hash_ids (512-token blocks) | ms        |
|  (bailian)    | JSONL | the same + chat_id, parent_chat_id, type, turn (16-token blocks)   | s         |
| splitwise     | CSV   | request_id, ..., arrival_timestamp, prompt_size, token_size        | s         |
| llmservingsim | JSONL | input_toks, output_toks, arrival_time_ns [, input_tok_ids [, output_tok_ids]] | ns |

Each numeric unit is the one its publisher documents, so it is the default: BurstGPT's ``Timestamp`` is
seconds (NVIDIA Dynamo's benchmarks/burstgpt_loadgen/README.md on BurstGPT release v1.1: "Request timestamp
in seconds", multiplied by 1,000 into Mooncake's ms); Mooncake's ``timestamp`` is milliseconds since the first
request (kvcache-ai/Mooncake FAST25-release/traces README); splitwise-sim's ``arrival_timestamp`` is seconds
(Mutinifni/splitwise-sim generate_trace.py: exponential gaps of scale 1/request_rate up to end_time=600);
LLMServingSim's key names its unit; Alibaba's Bailian traces, a variant of Mooncake's keys told by ``chat_id`` and
``parent_chat_id`` (``Variant``), are seconds (their README). A ``hash_ids`` trace's block size is inferred
(``infer_block_tokens``): Mooncake's 512 whenever it fits as many records as any other size. Splitwise's public traces (Azure/AzurePublicDataset
AzureLLMInferenceTrace_*.csv) are the ``azure`` format, with datetimes, so no unit applies to them. A file
with these columns in another unit is told only by an implausible span or rate (``trace.workload``), whose
messages name the likely ``--workload-time-unit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from sim.config_fields import INT64_MAX  # block and token ids are interned as int64
from trace.arrow import from_numpy, with_nulls
from trace.datetimes import parse_datetimes
from trace.readers import IdLists
from trace.validation import CODE, exact_integers, numeric_column

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
UINT64_MAX = 2**64 - 1  # an unsigned 64-bit hash's largest value
MOONCAKE_BLOCK_TOKENS = 512  # Mooncake FAST'25 traces: hash_ids cover 512-token blocks (trace README)
BURSTGPT_SESSION_COLUMNS = ("Session ID", "Conversation ID", "session_id", "conversation_id", "Session", "Conversation")
# "Request tokens length plus response tokens length" (HPMLL/BurstGPT README, Schema): a row whose total is another
# number holds a wrong count, and which one cannot be told
BURSTGPT_TOTAL = "Total tokens"


@dataclass(slots=True)
class Chunk:
    """Parsed rows of one chunk, as flat arrays (validation decides which rows are kept)."""

    arrival: np.ndarray  # float64 in the format's unit (int64 where its integers reach 2^53, which float64 rounds:
    # epoch nanoseconds, to 256 ns; trace.validation.exact_integers); datetime formats: int64 nanoseconds since the
    # epoch (exact: as float seconds since the epoch, ~1.7e9, one ulp is 238 ns, so 100 ns Azure times and the gaps
    # between them were rounded; load_trace subtracts the first in integers before it divides)
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    session: pa.Array | None = None  # text labels, null where a row has none
    hash_ids: IdLists | None = None
    token_ids: IdLists | None = None
    output_token_ids: IdLists | None = None  # LLMServingSim's output_tok_ids: the answer recorded for each prompt
    chat_id: np.ndarray | None = None  # Bailian: each record's chat id and its parent's (-1: a first turn)
    parent_id: np.ndarray | None = None
    zoned: np.ndarray | None = None  # datetime formats: whether each row's time states a zone offset (bool)

    def take(self, rows: np.ndarray) -> Chunk:
        """The rows ``rows`` (increasing): validation keeps rows in file order."""
        if len(rows) == len(self.arrival):
            return self  # every row, in order
        return Chunk(
            arrival=self.arrival[rows],
            input_tokens=self.input_tokens[rows],
            output_tokens=self.output_tokens[rows],
            session=None if self.session is None else self.session.take(from_numpy(rows)),
            hash_ids=None if self.hash_ids is None else self.hash_ids.take(rows),
            token_ids=None if self.token_ids is None else self.token_ids.take(rows),
            output_token_ids=None if self.output_token_ids is None else self.output_token_ids.take(rows),
            chat_id=None if self.chat_id is None else self.chat_id[rows],
            parent_id=None if self.parent_id is None else self.parent_id[rows],
            zoned=None if self.zoned is None else self.zoned[rows],
        )


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: how to recognise it and how to read it."""

    name: str
    kind: str  # "csv" or "jsonl"
    signature: tuple[str, ...]  # columns/keys that identify it
    time_unit: str | None  # None: timestamps are datetimes
    parse: Callable[[Any], tuple[Chunk, list, list]]  # a chunk's columns -> (Chunk of all rows, columns, column reasons)
    optional: tuple[str, ...] = ()  # columns read when present; JSONL keys read when any record has them
    id_lists: tuple[str, ...] = ()  # JSONL keys whose values are lists of ids
    block_tokens: int | None = None  # the documented block size of its hash_ids (the size inferred when they tie)
    variants: tuple[Variant, ...] = ()  # published variants with the same keys, told apart by more keys
    refused: tuple[tuple[str, str], ...] = ()  # JSONL keys of the format's records kvsim cannot replay, each with why
    time_key: str | None = None  # the timestamp's key where its name states the unit (arrival_time_ns): no other applies
    one_of: tuple[str, ...] = ()  # optional columns naming one field (BurstGPT's session id): at most one may be given


@dataclass(frozen=True)
class Variant:
    """A published variant of a format: the format's keys plus ``keys`` (optional keys of the format, each in some
    record), whose publisher documents another time unit."""

    name: str
    keys: tuple[str, ...]
    time_unit: str


# Alibaba's Qwen Bailian traces (alibaba-edu/qwen-bailian-usagetraces-anon README, qwen_*_blksz_16.jsonl): Mooncake's
# keys plus chat_id, parent_chat_id (-1: first turn), type and turn; "timestamp": "Seconds since request arrive"
# (61.114); hash_ids over 16-token blocks (told by infer_block_tokens, not by this record).
BAILIAN = Variant("bailian", ("chat_id", "parent_chat_id"), "s")


def variant_of(fmt: TraceFormat, present: tuple[str, ...]) -> Variant | None:
    """The published variant whose keys the file's records carry (``present``: the keys some record has), if any."""
    return next((v for v in fmt.variants if all(key in present for key in v.keys)), None)


# ------------------------------------------------------------------- format parsers
# Each parser validates one chunk: returns (Chunk of all rows, columns, column reasons).


def _column(frame, name: str):
    """A column of the chunk; all missing (None) where the chunk lacks it."""
    if name in frame:
        return frame[name]
    if isinstance(frame, dict):  # the fast readers' arrays: no value is a missing one
        return np.full(len(next(iter(frame.values()))), np.nan)
    import pandas as pd

    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _parse_tokens(frame, ts: str, inp: str, out: str, ts_numeric: bool):
    zoned = None
    if ts_numeric:
        column = _column(frame, ts)
        arrival, r_ts = numeric_column(column, integer=False)
        arrival = exact_integers(column, arrival, r_ts == 0)  # (int64 where float64 would round them: epoch ns)
    else:
        arrival, r_ts, zoned = parse_datetimes(_column(frame, ts))
    input_tokens, r_in = numeric_column(_column(frame, inp))
    output_tokens, r_out = numeric_column(_column(frame, out))
    r_zero = np.where((r_in == 0) & (input_tokens == 0), CODE["zero_input_tokens"], 0).astype(np.int8)
    chunk = Chunk(arrival=arrival, input_tokens=input_tokens, output_tokens=output_tokens, zoned=zoned)
    return chunk, [ts, inp, out, inp], [r_ts, r_in, r_out, r_zero]


def _parse_azure(frame):
    return _parse_tokens(frame, "TIMESTAMP", "ContextTokens", "GeneratedTokens", ts_numeric=False)


def _stated(frame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """An optional count column checked where the header has it: its values (NaN where blank) and a reason per row
    (a blank claims nothing: no reason)."""
    values, reason = numeric_column(frame[column])
    reason[reason == CODE["missing_value"]] = 0
    return values, reason


# splitwise-sim (Mutinifni/splitwise-sim request.py) replays only request_type 2, GENERATIVE_LLM (Request.from_dict
# raises on 0, compute, and 1, DNN: "Not implemented"), and a request's batch_size multiplies its KV cache
# (estimate_kv_cache_size: 2 x batch_size x tokens x hidden x layers x dtype): a row of batch_size N stands for N
# sequences, which a replay of one sequence per row would size as one. generate_trace.py writes 2 and 1 always.
SPLITWISE_CHECKED = (("request_type", 2, "unsupported_request_type"), ("batch_size", 1, "batch_size_not_one"))
# what a strict error adds to the name of these formats' own reasons
REASON_NOTES = {"total_tokens_mismatch": "not Request tokens + Response tokens, as BurstGPT's is",
                "failed_request": "BurstGPT marks a failed request by Response tokens 0",
                "unsupported_request_type": "splitwise-sim replays request_type 2 (generative LLM) alone",
                "batch_size_not_one": "a row of batch_size N stands for N sequences; kvsim replays one a row"}


def _parse_splitwise(frame):
    chunk, cols, reasons = _parse_tokens(frame, "arrival_timestamp", "prompt_size", "token_size", ts_numeric=True)
    for column, replayed, skipped in SPLITWISE_CHECKED:
        if column in frame:
            value, r_value = _stated(frame, column)
            other = np.where((r_value == 0) & np.isfinite(value) & (value != replayed), CODE[skipped], 0)
            cols, reasons = cols + [column] * 2, reasons + [r_value, other.astype(np.int8)]
    return chunk, cols, reasons


_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what Python's str.strip() removes from ASCII text


# How writers spell a missing value in a text column (pandas' to_csv of .astype(str) "nan", R's "NA", SQL "NULL",
# Python's "None", Excel's "#N/A"; compared without case). As a session label each would join every row lacking a
# session into one conversation, whose turns then share prefixes that never existed (BurstGPT: API-log rows).
MISSING_LABELS = ("", "na", "n/a", "nan", "-nan", "<na>", "null", "none", "#n/a", "#na")


def _session_labels(raw) -> pa.Array:
    """Session labels as text, null where a row has none (blank, absent, or a missing value's spelling:
    ``MISSING_LABELS``)."""
    if isinstance(raw, pa.Array):  # the fast reader's: ASCII text
        import pyarrow.compute as pc  # ~30 ms to import: only the readers that parse text need it

        trimmed = pc.ascii_lower(pc.ascii_trim(raw, _ASCII_WHITESPACE))
        return with_nulls(raw, pc.is_in(trimmed, value_set=pa.array(MISSING_LABELS)).to_numpy(zero_copy_only=False))
    raw = raw.astype(object)
    missing = raw.isna() | raw.astype(str).str.strip().str.lower().isin(MISSING_LABELS)
    return pa.array(raw.where(~missing, None).to_numpy(), type=pa.string(), from_pandas=True)


def _parse_burstgpt(frame):
    chunk, cols, reasons = _parse_tokens(frame, "Timestamp", "Request tokens", "Response tokens", ts_numeric=True)
    r_out, r_zero = reasons[2], reasons.pop()  # (Response tokens' reasons; zero_input_tokens', charged last here)
    zero_col = cols.pop()
    if BURSTGPT_TOTAL in frame:  # checked where given, like the counts (a blank one claims nothing)
        total, r_total = _stated(frame, BURSTGPT_TOTAL)
        claimed = np.isfinite(total) & (r_total == 0)
        r_sum = np.where(claimed & (total != chunk.input_tokens + chunk.output_tokens), CODE["total_tokens_mismatch"], 0)
        cols, reasons = cols + [BURSTGPT_TOTAL] * 2, reasons + [r_total, r_sum.astype(np.int8)]
    # "some failure that Response tokens are 0s" (HPMLL/BurstGPT README, Data): its BurstGPT_without_fails_N.csv are
    # BurstGPT_N.csv less exactly these rows (1,429.7k - 1,404.3k lines for N = 1). Charged before zero_input_tokens:
    # a failure's Request tokens may be 0 too (BurstGPT_1.csv's row 21: 0, 0, 0).
    r_failed = np.where((r_out == 0) & (chunk.output_tokens == 0), CODE["failed_request"], 0).astype(np.int8)
    cols, reasons = cols + ["Response tokens", zero_col], reasons + [r_failed, r_zero]
    session_col = next((c for c in BURSTGPT_SESSION_COLUMNS if c in frame), None)
    if session_col is not None:
        chunk.session = _session_labels(frame[session_col])
    return chunk, cols, reasons


def _id_list_reason(ids: list, signed: bool) -> int:
    """0 for a list of ids that fit 64 bits (token ids: non-negative int64, a negative one a negative value; hash
    ids, ``signed``: any 64-bit pattern, written signed or unsigned — xxHash64 and other unsigned hashes go up to
    2^64 - 1, kept as the int64 of the same bits by ``IdLists.from_lists``); else why not."""
    top = UINT64_MAX if signed else INT64_MAX
    others = [x for x in ids if not isinstance(x, int) or isinstance(x, bool)]
    if others:
        # an integer past 64 bits reaches here as the float orjson reads it as (2^64: 1.8e19), every float that large
        # a whole number: beyond the range (it was "not a list of integers", as 2.5 is), as 2^63 is for a token id
        # (-2^63 - 1 rounds to the float -2^63, which orjson gives only for an integer past int64: any within is an int);
        # one past a double's range too, read as the infinity Python's parser gives it (trace.jsonl_reader._number: a
        # 400-digit id was "not a list of integers", non_numeric for token ids, where 2^64 was out of range)
        if not all(type(x) is float and not math.isnan(x) and not -INT64_MAX - 1 < x <= top for x in others):
            return CODE["bad_hash_ids"]
        return CODE["negative_value"] if not signed and min(ids) < 0 else CODE["id_out_of_range"]
    if not signed and min(ids) < 0:
        return CODE["negative_value"]
    return CODE["id_out_of_range"] if max(ids) > top or min(ids) < -INT64_MAX - 1 else 0


def _list_column(values, empty_reason: str, signed: bool = False) -> tuple[IdLists, np.ndarray, np.ndarray]:
    """A column of id lists as flat ids, a reason per row (missing, not a list of integers, non-negative unless
    ``signed``, empty, an id beyond int64) and each row's length as written (-1: not a list). Block hash ids are
    signed: a hash is a label, and signed 64-bit hashes (Python's hash(), vLLM's block hashes) are half negative;
    token ids are not. The reference reader's rows that are not a valid list hold no ids."""
    if isinstance(values, IdLists):  # the fast reader's: lists of int64, none null
        lengths = values.lengths
        reason = np.where(lengths == 0, CODE[empty_reason], 0).astype(np.int8)
        if not signed:
            negative = np.zeros(len(values), dtype=bool)
            negative[np.searchsorted(values.offsets, np.flatnonzero(values.values < 0), side="right") - 1] = True
            reason[(reason == 0) & negative] = CODE["negative_value"]
        return values, reason, lengths
    is_list = values.map(lambda v: isinstance(v, list)).to_numpy()
    missing = values.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))).to_numpy()
    lengths = values.map(lambda v: len(v) if isinstance(v, list) else -1).to_numpy()
    reason = np.zeros(len(values), dtype=np.int8)
    reason[missing] = CODE["missing_value"]
    reason[(reason == 0) & ~is_list] = CODE["bad_hash_ids"]
    reason[(reason == 0) & (lengths == 0)] = CODE[empty_reason]
    ok_lists = np.flatnonzero(reason == 0)
    if len(ok_lists):
        reason[ok_lists] = values.iloc[ok_lists].map(lambda ids: _id_list_reason(ids, signed)).to_numpy(dtype=np.int8)
    lists = IdLists.from_lists([v if r == 0 else () for v, r in zip(values.tolist(), reason, strict=True)])
    return lists, reason, lengths


def _parse_mooncake(frame):
    """Mooncake's keys; whether each row's ``hash_ids`` cover its prompt in blocks of the trace's size is
    checked by the loader (``hash_ids_mismatch``), once that size is known (``infer_block_tokens``)."""
    chunk, cols, reasons = _parse_tokens(frame, "timestamp", "input_length", "output_length", ts_numeric=True)
    hash_ids, r_hash, _ = _list_column(_column(frame, "hash_ids"), "empty_hash_ids", signed=True)
    chunk.hash_ids = hash_ids
    if "parent_chat_id" in frame:  # Alibaba Bailian's variant: chats chained by their parents
        chunk.chat_id, r_chat = numeric_column(_column(frame, "chat_id"))
        raw = _column(frame, "parent_chat_id")
        if isinstance(raw, np.ndarray):  # the fast reader's numbers
            first = raw == -1
        else:  # JSON values: -1 the number, not a string or a boolean
            first = raw.map(lambda v: type(v) in (int, float) and v == -1).to_numpy(dtype=bool)
        parent, r_parent = numeric_column(raw.where(~first, 0) if not isinstance(raw, np.ndarray) else np.where(first, 0, raw))
        chunk.parent_id = np.where(first, -1.0, parent)  # -1: a chat's first turn (any other negative id is bad)
        for ids, r in ((chunk.chat_id, r_chat), (chunk.parent_id, r_parent)):  # read as float64: exact below 2^53
            r[(r == 0) & (ids >= MAX_CHAT_ID)] = CODE["id_out_of_range"]
        cols, reasons = cols + ["chat_id", "parent_chat_id"], reasons + [r_chat, r_parent]
    return chunk, cols + ["hash_ids"], reasons + [r_hash]


# chat ids are read as JSON numbers (float64): exact below this (Bailian's count from 0); 2^53 + 1 reads as 2^53, so
# an id read as 2^53 or more may be another one rounded
MAX_CHAT_ID = 2**53

# Block sizes a trace's hash_ids may cover: powers of two, as in every published trace (Mooncake: 512
# tokens; Alibaba Bailian: 16) and every serving engine's block (page) size.
BLOCK_TOKEN_CANDIDATES = 2 ** np.arange(0, 21)


def block_token_counts(input_tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each of ``BLOCK_TOKEN_CANDIDATES``, how many records' ``len(hash_ids)`` is ``ceil(input_length / size)``."""
    tokens, n = input_tokens.astype(np.float64), lengths.astype(np.float64)
    return np.array([np.count_nonzero(((n - 1) * size < tokens) & (tokens <= n * size))
                     for size in BLOCK_TOKEN_CANDIDATES.tolist()])  # one pass per size: no rows x sizes matrix


def pick_block_tokens(counts: np.ndarray, default: int) -> tuple[int, list[int]]:
    """The size of ``block_token_counts`` matching the most records, ``default`` when it matches as many; and every
    size that ties with it (more than one: the records cannot tell them apart)."""
    best = int(counts.max()) if len(counts) else 0
    winners = BLOCK_TOKEN_CANDIDATES[counts == best].tolist()
    if best == 0 or default in winners:
        return default, [default]
    return int(winners[0]), winners


def infer_block_tokens(input_tokens: np.ndarray, lengths: np.ndarray, default: int) -> tuple[int, list[int]]:
    """The block size (tokens) whose count, ``ceil(input_length / size)``, matches the most records'
    ``len(hash_ids)`` (valid records only), the format's documented ``default`` when it matches as many;
    and every size that ties with it (more than one: the records cannot tell them apart)."""
    if not len(lengths):
        return default, [default]
    return pick_block_tokens(block_token_counts(input_tokens, lengths), default)


def hash_ids_mismatch(input_tokens: np.ndarray, lengths: np.ndarray, block_tokens: int) -> np.ndarray:
    """Rows whose ``hash_ids`` do not number ``ceil(input_length / block_tokens)``."""
    return lengths != np.ceil(np.nan_to_num(input_tokens) / block_tokens)


def _parse_llmservingsim(frame):
    """LLMServingSim's keys; with ``input_tok_ids``, each row's ids must number its ``input_toks``, and with
    ``output_tok_ids`` (read only beside ``input_tok_ids``: ``trace.loaders``) its ``output_toks`` (an empty list
    where it generated none)."""
    chunk, cols, reasons = _parse_tokens(frame, "arrival_time_ns", "input_toks", "output_toks", ts_numeric=True)
    if "input_tok_ids" in frame:
        chunk.token_ids, cols, reasons = _token_ids(frame, "input_tok_ids", chunk.input_tokens, cols, reasons)
        if "output_tok_ids" in frame:
            chunk.output_token_ids, cols, reasons = _token_ids(frame, "output_tok_ids", chunk.output_tokens, cols,
                                                               reasons, empty=True)
    return chunk, cols, reasons


def _token_ids(frame, key: str, counts: np.ndarray, cols: list, reasons: list,
               empty: bool = False) -> tuple[IdLists, list, list]:
    """A column of token id lists, checked (a reason per row) and each list's length against ``counts``
    (``token_ids_length_mismatch``); ``empty``: an empty list is a list of no ids, not a missing value."""
    token_ids, r_ids, lengths = _list_column(frame[key], "missing_value")
    if empty:
        r_ids[(r_ids == CODE["missing_value"]) & (lengths == 0)] = 0
    r_ids[r_ids == CODE["bad_hash_ids"]] = CODE["non_numeric"]
    r_len = np.where((r_ids == 0) & (lengths != counts), CODE["token_ids_length_mismatch"], 0).astype(np.int8)
    return token_ids, cols + [key, key], reasons + [r_ids, r_len]


# ----------------------------------------------------------------- registry and sniffing

# LLMServingSim's agentic format (casys-kaist/LLMServingSim docs/docs/workloads/jsonl-format.md), which may share a file
# with its flat records: {"session_id", "arrival_time_ns", "sub_requests": [{"input_toks", "output_toks",
# "tool_duration_ns"}, ...]}, each call released when the one before it completes plus its tool_duration_ns. Those
# arrivals depend on the simulated completions; read as flat records, each session was one row "missing" input_toks
# and its calls were lost. Refused by name instead (trace.loaders.refuse_records).
LLMSERVINGSIM_SESSION = ("an LLMServingSim agentic session ('sub_requests'): its calls arrive as earlier ones complete, "
                         "which a replay at fixed arrival times cannot model; write each call as a flat record to replay it")


FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat("azure", "csv", ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), None, _parse_azure),
    "burstgpt": TraceFormat("burstgpt", "csv", ("Timestamp", "Request tokens", "Response tokens"), "s", _parse_burstgpt,
                            optional=(*BURSTGPT_SESSION_COLUMNS, BURSTGPT_TOTAL), one_of=BURSTGPT_SESSION_COLUMNS),
    "mooncake": TraceFormat("mooncake", "jsonl", ("timestamp", "input_length", "output_length", "hash_ids"), "ms",
                            _parse_mooncake, optional=("chat_id", "parent_chat_id"), id_lists=("hash_ids",),
                            block_tokens=MOONCAKE_BLOCK_TOKENS, variants=(BAILIAN,)),
    "splitwise": TraceFormat("splitwise", "csv", ("arrival_timestamp", "prompt_size", "token_size"), "s", _parse_splitwise,
                             optional=tuple(column for column, _, _ in SPLITWISE_CHECKED)),
    "llmservingsim": TraceFormat("llmservingsim", "jsonl", ("input_toks", "output_toks", "arrival_time_ns"), "ns",
                                 _parse_llmservingsim, optional=("input_tok_ids", "output_tok_ids"),
                                 id_lists=("input_tok_ids", "output_tok_ids"),
                                 refused=(("sub_requests", LLMSERVINGSIM_SESSION),), time_key="arrival_time_ns"),
}
