"""Trace loaders: one registry of formats, vectorised chunked reading, counted skips.

Each format reader yields validated columns in chunks; ``load_trace`` normalises time
to seconds from the first request, applies the limit, builds the block model and
records provenance. Input is checked at this boundary: the file must be UTF-8 text carrying
the format's columns (else exit 2), JSON lines are parsed strictly (RFC 8259), and a row
whose prompt + output exceeds ``workload.max_request_tokens`` is skipped before any array is
sized by it. Formats and their native time units:

| format        | file  | columns / keys                                                     | time unit |
|---------------|-------|--------------------------------------------------------------------|-----------|
| azure         | CSV   | TIMESTAMP (datetime), ContextTokens, GeneratedTokens               | datetime  |
| burstgpt      | CSV   | Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type [, session id] | s |
| mooncake      | JSONL | timestamp, input_length, output_length, hash_ids (512-token blocks) | ms        |
| splitwise     | CSV   | request_id, ..., arrival_timestamp, prompt_size, token_size        | s         |
| llmservingsim | JSONL | input_toks, output_toks, arrival_time_ns [, input_tok_ids]         | ns        |
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson
import pandas as pd

from sim.config import WorkloadConfig, request_token_bound
from sim.errors import QUOTE_LIMIT, ConfigError, TraceError, quote
from trace import blocks as bm
from trace.request import Trace, TraceProvenance
from trace.validation import CODE, SkipLedger, combine, no_usable_requests, numeric_column

CHUNK_ROWS = 500_000
SNIFF_BYTES = 64 * 1024  # checked to be UTF-8 text before any parsing
MAX_LINE_BYTES = 16 * 1024 * 1024  # a header or first record longer than this is not a trace's
BOM = "\ufeff"
BOM_BYTES = BOM.encode()
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
INT64_MAX = 2**63 - 1  # block and token ids are interned as int64
MOONCAKE_BLOCK_TOKENS = 512  # Mooncake FAST'25 traces: hash_ids cover 512-token blocks (trace README)
# A CSV row with too many fields is kept in its chunk as a row of this placeholder (the tolerant
# reader's), so it keeps its row number and is charged in file order like any other bad row.
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
    optional: tuple[str, ...] = ()  # JSONL keys read when present


# ---------------------------------------------------------------- reading helpers


@dataclass(slots=True)
class RawChunk:
    """One chunk of rows as read, before validation."""

    frame: pd.DataFrame  # CSV: strings; JSONL: parsed JSON values (only the format's keys)
    first_row: int  # 1-based number of its first row (record) in the file
    malformed: np.ndarray | None = None  # rows that are not records (CSV: too many fields; JSONL: not an object)
    lines: np.ndarray | None = None  # the file line of each row, where the reader knows it (JSONL)


def check_text(path: Path, head: bytes) -> None:
    """A trace is UTF-8 text: reject an empty, binary or otherwise encoded file by its first bytes."""
    if not head:
        raise TraceError(f"{path}: the file is empty")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise TraceError(f"{path}: binary data (a NUL byte at offset {nul}), not a text trace")
    try:  # an incomplete multi-byte character at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start})") from None


def first_line(path: Path) -> str:
    """The first non-blank line of a text trace (BOM removed), read with a bound on its length."""
    try:
        with path.open("rb") as fh:
            check_text(path, fh.read(SNIFF_BYTES))
            fh.seek(0)
            while True:
                line = fh.readline(MAX_LINE_BYTES)
                if not line:
                    return ""
                if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise TraceError(f"{path}: the first line is longer than {MAX_LINE_BYTES >> 20} MiB, so it is not "
                                     f"a trace header or record; it starts {quote(line.decode('utf-8', 'replace'))}")
                if line.strip():
                    return line.decode("utf-8", "replace").strip().lstrip(BOM)
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None


def _numbered(reader) -> Iterator[RawChunk]:
    """Attach each chunk's first 1-based row number and its malformed rows (the tolerant reader's MALFORMED)."""
    first = 1
    for frame in reader:
        frame.columns = [str(c).strip() for c in frame.columns]
        malformed = (frame.iloc[:, 0] == MALFORMED).to_numpy(dtype=bool) if len(frame.columns) else None
        yield RawChunk(frame, first, malformed)
        first += len(frame)


def _no_implicit_index(reader) -> Iterator[pd.DataFrame]:
    """The C engine takes the first column as the index when the first data row has one field more
    than the header (shifting every column); treat that as a malformed row instead."""
    for frame in reader:
        if not isinstance(frame.index, pd.RangeIndex):
            raise pd.errors.ParserError("the first data row has more fields than the header")
        yield frame


def _csv_chunks(path: Path, tolerant: bool) -> Iterator[RawChunk]:
    """CSV chunks as strings. Tolerant: rows with too many fields become MALFORMED rows in place
    (pandas' python engine, slower: used only after the fast C engine met such a row)."""
    kwargs = dict(chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")
    if not tolerant:
        with pd.read_csv(path, **kwargs) as reader:
            yield from _numbered(_no_implicit_index(reader))
        return
    # Explicit names: a long first data row is then a bad line too, not an implicit index.
    names = [str(c) for c in pd.read_csv(path, nrows=0, dtype=str, skipinitialspace=True, encoding="utf-8").columns]

    def bad_line(_fields: list[str]) -> list[str]:
        return [MALFORMED] * len(names)

    with pd.read_csv(path, engine="python", names=names, header=0, on_bad_lines=bad_line, **kwargs) as reader:
        yield from _numbered(reader)


def _json_object(raw: bytes) -> dict | None:
    """One JSONL line as an object, or None when it is not exactly one JSON object.

    orjson implements RFC 8259 strictly: trailing commas, NaN/Infinity, comments, single quotes
    and invalid UTF-8 are errors (pandas' reader accepts several of them)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _jsonl_chunks(path: Path, fmt: TraceFormat) -> Iterator[RawChunk]:
    """JSONL chunks of the format's keys. Blank lines are not records (but keep the line numbers
    right); a line that is not one JSON object is a malformed row in place."""
    keys = fmt.signature + fmt.optional
    first = 1
    with path.open("rb") as fh:
        numbered = enumerate(fh, start=1)
        while True:
            objects: list[dict | None] = []
            lines: list[int] = []
            for lineno, raw in itertools.islice(numbered, CHUNK_ROWS):
                if lineno == 1 and raw.startswith(BOM_BYTES):
                    raw = raw[len(BOM_BYTES):]
                if raw.strip():
                    objects.append(_json_object(raw))
                    lines.append(lineno)
            if not lines:
                return
            malformed = np.fromiter((o is None for o in objects), dtype=bool, count=len(objects))
            present = [o if o is not None else {} for o in objects]
            frame = pd.DataFrame({key: [o.get(key) for o in present] for key in keys})
            frame.attrs["keys_seen"] = {key for key in keys if any(key in o for o in present)}
            yield RawChunk(frame, first, malformed, np.asarray(lines, dtype=np.int64))
            first += len(lines)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _require_columns(path: Path, fmt: TraceFormat, columns, header: str | None = None) -> None:
    missing = [c for c in fmt.signature if c not in columns]
    if missing:
        seen = f"; header: {quote(header)}" if header is not None else ""
        raise TraceError(f"{path}: not a trace in {fmt.name} format: missing column(s) {', '.join(missing)}{seen}")


def _require_keys(path: Path, fmt: TraceFormat, chunk: RawChunk) -> None:
    """A JSONL format's keys must each appear in some record of the first chunk (else it is another format)."""
    if chunk.malformed is not None and chunk.malformed.all():
        with path.open("rb") as fh:
            sample = fh.readline(4 * QUOTE_LIMIT).decode("utf-8", "replace").strip()
        raise TraceError(f"{path}: not a trace in {fmt.name} format (JSON lines): no line is a JSON object; line 1: {quote(sample)}")
    missing = [k for k in fmt.signature if k not in chunk.frame.attrs.get("keys_seen", ())]
    if missing:
        raise TraceError(f"{path}: not a trace in {fmt.name} format: no record has key(s) {', '.join(missing)}")


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


def _id_list_reason(ids: list) -> int:
    """0 for a list of ids that fit numpy's int64; else why not."""
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ids):
        return CODE["bad_hash_ids"]
    return CODE["id_out_of_range"] if max(ids) > INT64_MAX else 0


def _list_reasons(values: pd.Series, empty_reason: str) -> np.ndarray:
    is_list = values.map(lambda v: isinstance(v, list)).to_numpy()
    missing = values.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))).to_numpy()
    lengths = values.map(lambda v: len(v) if isinstance(v, list) else -1).to_numpy()
    reason = np.zeros(len(values), dtype=np.int8)
    reason[missing] = CODE["missing_value"]
    reason[(reason == 0) & ~is_list] = CODE["bad_hash_ids"]
    reason[(reason == 0) & (lengths == 0)] = CODE[empty_reason]
    ok_lists = np.flatnonzero(reason == 0)
    if len(ok_lists):
        reason[ok_lists] = values.iloc[ok_lists].map(_id_list_reason).to_numpy(dtype=np.int8)
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
    "llmservingsim": TraceFormat("llmservingsim", "jsonl", ("input_toks", "output_toks", "arrival_time_ns"), "ns",
                                 optional=("input_tok_ids",)),
}


# ------------------------------------------------------------------------- sniffing


def sniff_format(path: Path) -> str:
    """Recognise a trace's format from its header line (CSV) or first object's keys (JSONL)."""
    first = first_line(path)
    if first.startswith("{"):
        obj = _json_object(first.encode())
        if obj is None:
            raise TraceError(f"{path}: line 1 is not a JSON object, so the format cannot be detected "
                             f"(pass --workload-format): {quote(first)}")
        keys = set(obj)
        candidates = [f for f in FORMATS.values() if f.kind == "jsonl"]
    else:
        keys = set(_csv_fields(first))
        candidates = [f for f in FORMATS.values() if f.kind == "csv"]
    for fmt in candidates:
        if set(fmt.signature) <= keys:
            return fmt.name
    raise TraceError(f"{path}: unrecognised trace header {quote(first)}; pass --workload-format "
                     f"({', '.join(FORMATS)}; their columns are listed in README.md)")


def _csv_fields(line: str) -> list[str]:
    try:
        fields = next(csv.reader([line], skipinitialspace=True), [])
    except csv.Error:  # e.g. a field above the csv module's size limit: no real header has one
        fields = line.split(",")
    return [f.strip() for f in fields]


# --------------------------------------------------------------------------- loading


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_line_of_row(path: Path, row: int) -> int | None:
    """The file line on which data row ``row`` (1-based, as pandas counts: blank lines are not rows)
    begins; quoted fields may span lines. Used only to word an error, so it may rescan the file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            record, start = -1, 1  # the header is record 0
            for fields in reader:
                if fields and not (len(fields) == 1 and not fields[0].strip()):
                    record += 1
                    if record == row:
                        return start
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _scan(path: Path, fmt: TraceFormat, ledger: SkipLedger, limit: int | None, chunks: Iterator[RawChunk],
          max_tokens: int) -> tuple[list[Chunk], int]:
    """Validate chunks and keep valid rows (file order) until ``limit`` of them."""
    kept: list[Chunk] = []
    n_kept = rows_read = 0
    with contextlib.closing(chunks):  # a limit stops early: the reader's file is closed now, not at exit
        for raw in chunks:
            reason, col_reasons, cols, chunk = _validate(path, fmt, raw, max_tokens)
            ok = reason == 0
            stop = len(reason)
            if limit is not None and n_kept + int(ok.sum()) >= limit:
                stop = int(np.flatnonzero(ok)[limit - n_kept - 1]) + 1  # rows up to the limit-th valid one
                reason, ok, col_reasons = reason[:stop], ok[:stop], [r[:stop] for r in col_reasons]
            ledger.charge(reason, raw.first_row, cols, col_reasons, raw.lines)
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


def _validate(path: Path, fmt: TraceFormat, raw: RawChunk, max_tokens: int):
    """A chunk's first failing reason per row, each column's reasons, and its parsed values."""
    if fmt.kind == "csv":
        _require_columns(path, fmt, raw.frame.columns)
    elif raw.first_row == 1:
        _require_keys(path, fmt, raw)
    chunk, cols, col_reasons = _PARSERS[fmt.name](raw.frame)
    if raw.malformed is not None and raw.malformed.any():  # charged that reason first
        cols = [None] + cols
        col_reasons = [np.where(raw.malformed, CODE["malformed_row"], 0).astype(np.int8)] + col_reasons
    # Prompt + output above the bound: skipped before any array is sized by it.
    too_big = np.nan_to_num(chunk.input_tokens) + np.nan_to_num(chunk.output_tokens) > max_tokens
    cols.append(None)
    col_reasons.append(np.where(too_big, CODE["too_many_tokens"], 0).astype(np.int8))
    return combine(*col_reasons), col_reasons, cols, chunk


def _collect(path: Path, fmt: TraceFormat, ledger: SkipLedger, limit: int | None, max_tokens: int) -> tuple[list[Chunk], int]:
    ledger.row_label = "row" if fmt.kind == "csv" else "record"
    if fmt.kind == "jsonl":
        return _scan(path, fmt, ledger, limit, _jsonl_chunks(path, fmt), max_tokens)
    ledger.line_of_row = lambda row: csv_line_of_row(path, row)
    header = first_line(path)
    _require_columns(path, fmt, _csv_fields(header), header)
    try:
        try:
            return _scan(path, fmt, ledger, limit, _csv_chunks(path, tolerant=False), max_tokens)
        except pd.errors.ParserError:
            pass
        ledger.counts.clear()  # rescan from the start, charging rows with too many fields in place
        try:
            return _scan(path, fmt, ledger, limit, _csv_chunks(path, tolerant=True), max_tokens)
        except pd.errors.ParserError as exc:
            raise TraceError(f"{path}: malformed CSV: {quote(str(exc).strip())}") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (an invalid byte 0x{exc.object[exc.start]:02x} in the file)") from None


def _flatten(lists: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
    offsets = bm.offsets_from_counts(lengths)
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets


def load_trace(workload: WorkloadConfig, block_size: int) -> Trace:
    """Load ``workload.trace`` into a validated, time-normalised ``Trace`` with block ids.

    A file with no usable request is an error (every mode needs at least one).
    """
    if workload.trace is None:
        raise ConfigError("no trace given: pass --workload-trace PATH (or set workload.trace)")
    path = Path(workload.trace)
    if not path.exists():
        raise TraceError(f"trace file not found: {path}")
    if not path.is_file():
        raise TraceError(f"trace {path} is not a regular file")
    name = sniff_format(path) if workload.format == "auto" else workload.format
    if workload.format != "auto":
        first_line(path)  # an empty, binary or non-UTF-8 file is refused whatever the format
    fmt = FORMATS[name]
    if workload.time_unit is not None and fmt.time_unit is None:
        raise ConfigError(f"{path}: {name} timestamps are datetimes; workload.time_unit does not apply to them")
    ledger = SkipLedger(str(path), workload.strict_validation)
    kept, rows_read = _collect(path, fmt, ledger, workload.limit, request_token_bound(workload))
    if not sum(len(c.arrival) for c in kept):
        raise no_usable_requests(str(path), rows_read, ledger.counts)

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
        if block_size == MOONCAKE_BLOCK_TOKENS or workload.block_mismatch == "trace":
            block_size = MOONCAKE_BLOCK_TOKENS  # the trace's own blocks, as given (the Contract's default)
            block_ids, num_unique = bm.intern(flat)
        elif workload.block_mismatch == "split" and MOONCAKE_BLOCK_TOKENS % block_size == 0:
            offsets, keys = bm.split_hash_blocks(flat, offsets, input_tokens, MOONCAKE_BLOCK_TOKENS, block_size)
            block_ids, num_unique = bm.intern(keys)
            conversion = f"split {MOONCAKE_BLOCK_TOKENS}-token trace blocks into {block_size}-token blocks"
        else:
            raise ConfigError(
                f"{path}: trace blocks are {MOONCAKE_BLOCK_TOKENS} tokens but serving.block_size is {block_size} "
                f"(workload.block_mismatch={workload.block_mismatch}); use workload.block_mismatch=trace to replay the "
                f"trace's blocks, or split with a block_size that divides {MOONCAKE_BLOCK_TOKENS}")
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
