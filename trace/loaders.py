"""Trace loaders: one registry of formats, vectorised chunked reading, counted skips.

Each format reader yields validated columns in chunks; ``load_trace`` normalises time
to seconds from the first request, applies the limit, builds the block model and
records provenance. Formats and their native time units:

| format        | file  | columns / keys                                                     | time unit |
|---------------|-------|--------------------------------------------------------------------|-----------|
| azure         | CSV   | TIMESTAMP (datetime), ContextTokens, GeneratedTokens               | datetime  |
| burstgpt      | CSV   | Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type [, session id] | s |
| mooncake      | JSONL | timestamp, input_length, output_length, hash_ids (512-token blocks) | ms        |
| splitwise     | CSV   | request_id, ..., arrival_timestamp, prompt_size, token_size        | s         |
| llmservingsim | JSONL | input_toks, output_toks, arrival_time_ns [, input_tok_ids]         | ns        |
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from sim.config import WorkloadConfig
from sim.errors import ConfigError, TraceError
from trace import blocks as bm
from trace.request import Trace, TraceProvenance
from trace.validation import CODE, SkipLedger, combine, numeric_column

CHUNK_ROWS = 500_000
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MOONCAKE_BLOCK_TOKENS = 512  # Mooncake FAST'25 traces: hash_ids cover 512-token blocks (trace README)
# A malformed row (CSV: too many fields; JSONL: not a JSON object) is kept in its chunk as a row of
# this placeholder, so it keeps its row number and is charged in file order like any other bad row.
MALFORMED = "\x00malformed row"
BURSTGPT_SESSION_COLUMNS = ("Session ID", "Conversation ID", "session_id", "conversation_id", "Session", "Conversation")


@dataclass(slots=True)
class Chunk:
    """Validated rows of one chunk (only rows that passed)."""

    arrival: np.ndarray  # float64 in the format's unit (datetime formats: seconds since epoch)
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    session: np.ndarray | None = None  # object/str or int labels
    hash_ids: list | None = None  # per-row lists
    token_ids: list | None = None


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: how to recognise it and how to read it."""

    name: str
    kind: str  # "csv" or "jsonl"
    signature: tuple[str, ...]  # columns/keys that identify it
    time_unit: str | None  # None: timestamps are datetimes


# ---------------------------------------------------------------- reading helpers


def _numbered(reader) -> Iterator[tuple[pd.DataFrame, int]]:
    """Attach each chunk's first 1-based row number."""
    first = 1
    for frame in reader:
        frame.columns = [str(c).strip() for c in frame.columns]
        yield frame, first
        first += len(frame)


def _no_implicit_index(reader) -> Iterator[pd.DataFrame]:
    """The C engine takes the first column as the index when the first data row has one field more
    than the header (shifting every column); treat that as a malformed row instead."""
    for frame in reader:
        if not isinstance(frame.index, pd.RangeIndex):
            raise pd.errors.ParserError("the first data row has more fields than the header")
        yield frame


def _csv_chunks(path: Path, tolerant: bool) -> Iterator[tuple[pd.DataFrame, int]]:
    """CSV chunks as strings. Tolerant: rows with too many fields become MALFORMED rows in place
    (pandas' python engine, slower: used only after the fast C engine met such a row)."""
    kwargs = dict(chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False, skipinitialspace=True)
    if not tolerant:
        return _numbered(_no_implicit_index(pd.read_csv(path, **kwargs)))
    # Explicit names: a long first data row is then a bad line too, not an implicit index.
    names = [str(c) for c in pd.read_csv(path, nrows=0, dtype=str, skipinitialspace=True).columns]

    def bad_line(_fields: list[str]) -> list[str]:
        return [MALFORMED] * len(names)

    return _numbered(pd.read_csv(path, engine="python", names=names, header=0, on_bad_lines=bad_line, **kwargs))


def _jsonl_chunks(path: Path, fmt: TraceFormat) -> Iterator[tuple[pd.DataFrame, int]]:
    """JSONL chunks; if any line is not valid JSON, a line-by-line parse keeps it as a MALFORMED row."""
    try:
        yield from list(_numbered(pd.read_json(path, lines=True, chunksize=CHUNK_ROWS, dtype=False, convert_dates=False)))
        return
    except ValueError:
        pass
    rows = []
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError:
                obj = {key: MALFORMED for key in fmt.signature}
            rows.append(obj)
    yield pd.DataFrame(rows), 1


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _require_columns(path: Path, fmt: TraceFormat, columns) -> None:
    missing = [c for c in fmt.signature if c not in columns]
    if missing:
        raise TraceError(f"{path}: not a {fmt.name} trace: missing column(s) {', '.join(missing)}")


# ------------------------------------------------------------------- format parsers
# Each parser validates one chunk: returns (reason per row, Chunk of all rows, columns, column reasons).


def _parse_tokens(frame: pd.DataFrame, ts: str, inp: str, out: str, ts_numeric: bool):
    reasons, cols = [], []
    if ts_numeric:
        arrival, r_ts = numeric_column(_column(frame, ts), integer=False)
    else:
        raw = _column(frame, ts).astype(object)
        missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
        parsed = pd.to_datetime(raw.where(~missing, None), format="ISO8601", errors="coerce", utc=True)
        bad = ~missing & parsed.isna().to_numpy()
        r_ts = np.where(missing, CODE["missing_value"], np.where(bad, CODE["bad_timestamp"], 0)).astype(np.int8)
        arrival = np.where(parsed.isna(), np.nan, parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9)
    input_tokens, r_in = numeric_column(_column(frame, inp))
    output_tokens, r_out = numeric_column(_column(frame, out))
    r_zero = np.where((r_in == 0) & (input_tokens == 0), CODE["zero_input_tokens"], 0).astype(np.int8)
    for name, r in ((ts, r_ts), (inp, r_in), (out, r_out), (inp, r_zero)):
        cols.append(name)
        reasons.append(r)
    chunk = Chunk(arrival=arrival, input_tokens=input_tokens, output_tokens=output_tokens)
    return chunk, cols, reasons


def _parse_azure(frame: pd.DataFrame):
    return _parse_tokens(frame, "TIMESTAMP", "ContextTokens", "GeneratedTokens", ts_numeric=False)


def _parse_splitwise(frame: pd.DataFrame):
    return _parse_tokens(frame, "arrival_timestamp", "prompt_size", "token_size", ts_numeric=True)


def _parse_burstgpt(frame: pd.DataFrame):
    chunk, cols, reasons = _parse_tokens(frame, "Timestamp", "Request tokens", "Response tokens", ts_numeric=True)
    session_col = next((c for c in BURSTGPT_SESSION_COLUMNS if c in frame.columns), None)
    if session_col is not None:
        raw = frame[session_col].astype(object)
        chunk.session = raw.where(raw.astype(str).str.strip() != "", None).to_numpy()
    return chunk, cols, reasons


def _list_reasons(values: pd.Series, empty_reason: str) -> np.ndarray:
    is_list = values.map(lambda v: isinstance(v, list)).to_numpy()
    missing = values.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))).to_numpy()
    lengths = values.map(lambda v: len(v) if isinstance(v, list) else -1).to_numpy()
    reason = np.zeros(len(values), dtype=np.int8)
    reason[missing] = CODE["missing_value"]
    reason[(reason == 0) & ~is_list] = CODE["bad_hash_ids"]
    reason[(reason == 0) & (lengths == 0)] = CODE[empty_reason]
    ok_lists = (reason == 0)
    if ok_lists.any():
        all_int = values[ok_lists].map(lambda v: all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v))
        bad = np.zeros(len(values), dtype=bool)
        bad[np.flatnonzero(ok_lists)] = ~all_int.to_numpy()
        reason[bad] = CODE["bad_hash_ids"]
    return reason


def _parse_mooncake(frame: pd.DataFrame):
    chunk, cols, reasons = _parse_tokens(frame, "timestamp", "input_length", "output_length", ts_numeric=True)
    hash_ids = _column(frame, "hash_ids")
    r_hash = _list_reasons(hash_ids, "empty_hash_ids")
    lengths = hash_ids.map(lambda v: len(v) if isinstance(v, list) else -1).to_numpy()
    expected = np.ceil(np.nan_to_num(chunk.input_tokens) / MOONCAKE_BLOCK_TOKENS)
    r_len = np.where((r_hash == 0) & (lengths != expected), CODE["hash_ids_length_mismatch"], 0).astype(np.int8)
    cols += ["hash_ids", "hash_ids"]
    reasons += [r_hash, r_len]
    chunk.hash_ids = hash_ids.tolist()
    return chunk, cols, reasons


def _parse_llmservingsim(frame: pd.DataFrame):
    chunk, cols, reasons = _parse_tokens(frame, "arrival_time_ns", "input_toks", "output_toks", ts_numeric=True)
    if "input_tok_ids" in frame.columns:
        ids = frame["input_tok_ids"]
        r_ids = _list_reasons(ids, "missing_value")
        r_ids[r_ids == CODE["bad_hash_ids"]] = CODE["non_numeric"]
        lengths = ids.map(lambda v: len(v) if isinstance(v, list) else -1).to_numpy()
        r_len = np.where((r_ids == 0) & (lengths != chunk.input_tokens), CODE["token_ids_length_mismatch"], 0).astype(np.int8)
        cols += ["input_tok_ids", "input_tok_ids"]
        reasons += [r_ids, r_len]
        chunk.token_ids = ids.tolist()
    return chunk, cols, reasons


_PARSERS = {
    "azure": _parse_azure,
    "burstgpt": _parse_burstgpt,
    "mooncake": _parse_mooncake,
    "splitwise": _parse_splitwise,
    "llmservingsim": _parse_llmservingsim,
}

FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat("azure", "csv", ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), None),
    "burstgpt": TraceFormat("burstgpt", "csv", ("Timestamp", "Request tokens", "Response tokens"), "s"),
    "mooncake": TraceFormat("mooncake", "jsonl", ("timestamp", "input_length", "output_length", "hash_ids"), "ms"),
    "splitwise": TraceFormat("splitwise", "csv", ("arrival_timestamp", "prompt_size", "token_size"), "s"),
    "llmservingsim": TraceFormat("llmservingsim", "jsonl", ("input_toks", "output_toks", "arrival_time_ns"), "ns"),
}


# ------------------------------------------------------------------------- sniffing


def sniff_format(path: Path) -> str:
    """Recognise a trace's format from its header line (CSV) or first object's keys (JSONL)."""
    try:
        with path.open() as fh:
            first = next((line for line in fh if line.strip()), "")
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text trace file (cannot decode as UTF-8)") from None
    first = first.strip().lstrip("\ufeff")
    if first.startswith("{"):
        try:
            keys = set(json.loads(first))
        except ValueError:
            raise TraceError(f"{path}: line 1 is not valid JSON; cannot detect the format (pass --workload-format)") from None
        candidates = [f for f in FORMATS.values() if f.kind == "jsonl"]
    else:
        keys = {c.strip() for c in first.split(",")}
        candidates = [f for f in FORMATS.values() if f.kind == "csv"]
    for fmt in candidates:
        if set(fmt.signature) <= keys:
            return fmt.name
    known = "; ".join(f"{f.name}: {', '.join(f.signature)}" for f in FORMATS.values())
    raise TraceError(f"{path}: unrecognised trace header {sorted(keys)}; known formats need these columns: {known}")


# --------------------------------------------------------------------------- loading


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scan(path: Path, fmt: TraceFormat, ledger: SkipLedger, limit: int | None, frames, malformed_rows: bool = True) -> tuple[list[Chunk], int]:
    """Validate chunks and keep valid rows (file order) until ``limit`` of them."""
    parser = _PARSERS[fmt.name]
    line_offset = 1 if fmt.kind == "csv" else 0
    kept: list[Chunk] = []
    n_kept = rows_read = 0
    for frame, first in frames:
        _require_columns(path, fmt, frame.columns)
        chunk, cols, col_reasons = parser(frame)
        first_col = frame[fmt.signature[0]]
        if malformed_rows and not pd.api.types.is_numeric_dtype(first_col.dtype):  # charged that reason first
            malformed = (first_col.astype(object) == MALFORMED).to_numpy(dtype=bool)
            cols = [None] + cols
            col_reasons = [np.where(malformed, CODE["malformed_row"], 0).astype(np.int8)] + col_reasons
        reason = combine(*col_reasons)
        ok = reason == 0
        stop = len(frame)
        if limit is not None and n_kept + int(ok.sum()) >= limit:
            stop = int(np.flatnonzero(ok)[limit - n_kept - 1]) + 1  # rows up to the limit-th valid one
            reason, ok, col_reasons = reason[:stop], ok[:stop], [r[:stop] for r in col_reasons]
        ledger.charge(reason, first, cols, col_reasons, line_offset)
        rows_read += stop
        idx = np.flatnonzero(ok)
        kept.append(
            Chunk(
                arrival=chunk.arrival[idx],
                input_tokens=chunk.input_tokens[idx].astype(np.int64),
                output_tokens=chunk.output_tokens[idx].astype(np.int64),
                session=None if chunk.session is None else chunk.session[idx],
                hash_ids=None if chunk.hash_ids is None else [chunk.hash_ids[i] for i in idx],
                token_ids=None if chunk.token_ids is None else [chunk.token_ids[i] for i in idx],
            )
        )
        n_kept += len(idx)
        if limit is not None and n_kept >= limit:
            break
    return kept, rows_read


def _collect(path: Path, fmt: TraceFormat, ledger: SkipLedger, limit: int | None) -> tuple[list[Chunk], int]:
    ledger.row_label = "row" if fmt.kind == "csv" else "record"
    if fmt.kind == "jsonl":
        return _scan(path, fmt, ledger, limit, _jsonl_chunks(path, fmt))
    try:
        return _scan(path, fmt, ledger, limit, _csv_chunks(path, tolerant=False), malformed_rows=False)
    except pd.errors.ParserError:
        pass
    ledger.counts.clear()  # rescan from the start, charging rows with too many fields in place
    try:
        return _scan(path, fmt, ledger, limit, _csv_chunks(path, tolerant=True))
    except pd.errors.ParserError as exc:
        raise TraceError(f"{path}: malformed CSV: {exc}") from None


def _flatten(lists: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
    offsets = bm.offsets_from_counts(lengths)
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets


def load_trace(workload: WorkloadConfig, block_size: int) -> Trace:
    """Load ``workload.trace`` into a validated, time-normalised ``Trace`` with block ids."""
    if workload.trace is None:
        raise ConfigError("no trace given: pass --workload-trace PATH (or set workload.trace)")
    path = Path(workload.trace)
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    if block_size <= 0:
        raise ConfigError(f"config key 'serving.block_size' must be positive, got {block_size}")
    name = sniff_format(path) if workload.format == "auto" else workload.format
    fmt = FORMATS[name]
    if workload.limit is not None and workload.limit <= 0:
        raise ConfigError(f"config key 'workload.limit' must be positive, got {workload.limit}")
    if workload.time_unit is not None and fmt.time_unit is None:
        raise ConfigError(f"{path}: {name} timestamps are datetimes; workload.time_unit does not apply to them")
    ledger = SkipLedger(str(path), workload.strict_validation)
    kept, rows_read = _collect(path, fmt, ledger, workload.limit)

    def cat(attr: str, dtype) -> np.ndarray:
        parts = [getattr(c, attr) for c in kept]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    arrival = cat("arrival", np.float64)
    if fmt.time_unit is not None:
        arrival = arrival * TIME_UNITS[workload.time_unit or fmt.time_unit]
    input_tokens = cat("input_tokens", np.int64)
    output_tokens = cat("output_tokens", np.int64)
    n = len(arrival)
    session = np.full(n, -1, dtype=np.int64)
    if kept and kept[0].session is not None:
        labels = np.concatenate([c.session for c in kept])
        codes, _ = pd.factorize(pd.Series(labels, dtype=object).astype("string"), use_na_sentinel=True)
        session = codes.astype(np.int64)

    # Arrival order, stable so equal timestamps keep file order; time from the first request.
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order] - (arrival[order[0]] if n else 0.0)
    input_tokens, output_tokens, session = input_tokens[order], output_tokens[order], session[order]

    conversion = None
    if fmt.name == "mooncake":
        lists = [lst for c in kept for lst in c.hash_ids]
        lists = [lists[i] for i in order]
        flat, offsets = _flatten(lists)
        kind = "hash_ids"
        if block_size == MOONCAKE_BLOCK_TOKENS:
            block_ids, num_unique = bm.intern(flat)
        elif workload.block_mismatch == "split" and MOONCAKE_BLOCK_TOKENS % block_size == 0:
            offsets, keys = bm.split_hash_blocks(flat, offsets, input_tokens, MOONCAKE_BLOCK_TOKENS, block_size)
            block_ids, num_unique = bm.intern(keys)
            conversion = f"split {MOONCAKE_BLOCK_TOKENS}-token trace blocks into {block_size}-token blocks"
        else:
            raise ConfigError(
                f"{path}: trace blocks are {MOONCAKE_BLOCK_TOKENS} tokens but serving.block_size is {block_size}; "
                f"set serving.block_size={MOONCAKE_BLOCK_TOKENS}, or workload.block_mismatch=split with a block_size "
                f"that divides {MOONCAKE_BLOCK_TOKENS}"
            )
    elif kept and kept[0].token_ids is not None:
        lists = [lst for c in kept for lst in c.token_ids]
        lists = [lists[i] for i in order]
        flat, tok_offsets = _flatten(lists)
        offsets, keys = bm.token_content_keys(flat, tok_offsets, block_size)
        block_ids, num_unique = bm.intern(bm.chain(offsets, keys))
        kind = "chained"
    elif (session >= 0).any():
        offsets = bm.offsets_from_counts(bm.blocks_per_request(input_tokens, block_size))
        keys = bm.session_keys(offsets, input_tokens, session, block_size)
        block_ids, num_unique = bm.intern(bm.chain(offsets, keys))
        kind = "synthetic-sessions"
    else:
        offsets = bm.offsets_from_counts(bm.blocks_per_request(input_tokens, block_size))
        block_ids, num_unique = None, int(offsets[-1])
        kind = "unique"

    provenance = TraceProvenance(
        path=str(path),
        format=name,
        sha256=file_sha256(path),
        rows_read=rows_read,
        rows_used=n,
        rows_skipped=ledger.total,
        skip_reasons=dict(ledger.counts),
        block_ids=kind,
        block_tokens=block_size,
        block_conversion=conversion,
    )
    return Trace(
        arrival_s=arrival,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        session_id=session,
        block_offsets=offsets,
        block_ids=block_ids,
        num_unique_blocks=num_unique,
        provenance=provenance,
    )
