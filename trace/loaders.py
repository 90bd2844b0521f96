"""Trace loaders: one registry of formats, chunked C-speed reading, vectorised validation, counted skips.

The file is read in chunks of whole lines. Each chunk goes through pyarrow's CSV or JSON reader
into flat arrays (ids as values + offsets, never a Python list per row), and is validated over
those arrays. A chunk the fast reader cannot decide exactly — anything odd: a parse or type
error, a quote, a NUL byte, non-ASCII text, leading blanks, a JSON null, a nested value — is
read again by the reference readers (pandas for CSV, orjson line by line for JSON lines), so
both give the same rows, values and skip reasons; the fast reader is only a shortcut.
``load_trace`` then normalises time to seconds from the first request, applies the limit,
builds the block model and records provenance.

Input is checked at this boundary: the file must be UTF-8 text carrying the format's columns
(else exit 2), JSON lines are parsed strictly (RFC 8259), and a row whose prompt + output exceeds
``workload.max_request_tokens`` is skipped before any array is sized by it. Formats and their
native time units:

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
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from sim.config import WorkloadConfig
from sim.config_rules import request_token_bound
from sim.errors import QUOTE_LIMIT, ConfigError, TraceError, quote
from trace import blocks as bm
from trace.arrow import from_numpy, numpy_view, text_buffers, valid, with_nulls
from trace.request import Trace, TraceProvenance, file_sha256
from trace.validation import CODE, SkipLedger, combine, no_usable_requests, numeric_column

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 500_000  # lines a chunk holds at most
CHUNK_BYTES = 16 * 1024 * 1024  # bytes a chunk holds at most (unless one line is longer)
JSON_BLOCK_BYTES = 4 * 1024 * 1024  # pyarrow's JSON reader parses blocks of this size in parallel
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
PANDAS_CSV = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")


@dataclass(slots=True)
class IdLists:
    """One list of integer ids per row, flat: row i holds ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray  # int64
    offsets: np.ndarray  # int64, rows + 1, from 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, lists: list) -> IdLists:
        lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
        offsets = bm.offsets_from_counts(lengths)
        values = np.fromiter((x for v in lists for x in v), dtype=np.int64, count=int(offsets[-1]))
        return cls(values, offsets)

    @classmethod
    def concat(cls, parts: list[IdLists]) -> IdLists:
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.values for p in parts]),
                   bm.offsets_from_counts(np.concatenate([p.lengths for p in parts])))

    def take(self, rows: np.ndarray) -> IdLists:
        """The lists of ``rows``, in that order."""
        lengths = self.lengths[rows]
        offsets = bm.offsets_from_counts(lengths)
        gather = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return IdLists(self.values[gather], offsets)


@dataclass(slots=True)
class Chunk:
    """Parsed rows of one chunk, as flat arrays (validation decides which rows are kept)."""

    arrival: np.ndarray  # float64 in the format's unit (datetime formats: seconds since epoch)
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    session: pa.Array | None = None  # text labels, null where a row has none
    hash_ids: IdLists | None = None
    token_ids: IdLists | None = None

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
        )


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: how to recognise it and how to read it."""

    name: str
    kind: str  # "csv" or "jsonl"
    signature: tuple[str, ...]  # columns/keys that identify it
    time_unit: str | None  # None: timestamps are datetimes
    optional: tuple[str, ...] = ()  # columns read when present; JSONL keys read when the first record has them
    id_lists: tuple[str, ...] = ()  # JSONL keys whose values are lists of ids


# ---------------------------------------------------------------- reading helpers


@dataclass(slots=True)
class RawChunk:
    """One chunk of rows as read, before validation."""

    frame: pd.DataFrame | dict[str, Any]  # pandas: strings (CSV) or JSON values; fast: name -> array
    first_row: int  # 1-based number of its first row (record) in the file
    rows: int
    malformed: np.ndarray | None = None  # rows that are not records (CSV: too many fields; JSONL: not an object)
    lines: np.ndarray | None = None  # the file line of each row, where the reader knows it (JSONL)
    keys_seen: frozenset[str] | None = None  # JSONL: the format's keys that some record of the chunk has


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


def _line_chunks(fh: BinaryIO) -> Iterator[bytes]:
    """The rest of ``fh`` in chunks of whole lines: at most ``CHUNK_ROWS`` lines and, unless one
    line is longer, ``CHUNK_BYTES`` bytes; the last chunk may lack its final newline."""
    rest = b""
    while True:
        block = fh.read(CHUNK_BYTES)
        data = rest + block if rest else block
        if not block:
            if data:
                yield data
            return
        begin = 0
        if data.count(b"\n") > CHUNK_ROWS:  # short lines (or a tiny CHUNK_ROWS): cut at every CHUNK_ROWS-th
            newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            for cut in (newlines[CHUNK_ROWS - 1::CHUNK_ROWS] + 1).tolist():
                yield data[begin:cut]
                begin = cut
        cut = data.rfind(b"\n") + 1
        if cut > begin:
            yield data[begin:cut]
            begin = cut
        rest = data[begin:]


def _lines(data: bytes) -> int:
    """Lines in a chunk (a last line without its newline counts)."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


# ------------------------------------------------------------------------- CSV readers


class CsvParserError(Exception):
    """pandas' C reader met a row it cannot hold (too many fields): the tolerant reader must decide."""


def _csv_layout(path: Path) -> tuple[bytes, list[str]] | None:
    """The header line (as bytes) and the column names, when the fast reader may read this file:
    the header is line 1, ASCII, without quotes, and names each column once (pandas would rename
    a repeated name). Otherwise None: pandas reads the whole file."""
    with path.open("rb") as fh:
        line = fh.readline(MAX_LINE_BYTES)
    text = line[len(BOM_BYTES):] if line.startswith(BOM_BYTES) else line
    if not text.strip() or not text.isascii() or b'"' in text or not line.endswith(b"\n"):
        return None
    names = _csv_fields(text.decode())
    return (line, names) if len(set(names)) == len(names) else None


class _HeaderThen(io.RawIOBase):
    """The header line, then a file from a record boundary on: one CSV for pandas to read."""

    def __init__(self, header: bytes, rest: BinaryIO):
        self._header, self._rest = header, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._header:
            n = min(len(buffer), len(self._header))
            buffer[:n] = self._header[:n]
            self._header = self._header[n:]
            return n
        return self._rest.readinto(buffer)


def _plain_csv(data: bytes) -> bool:
    """A chunk that pyarrow's CSV reader splits into the same rows and fields as pandas' reader:
    ASCII (so valid UTF-8), no quote (no quoted newline or delimiter), no NUL, no lone carriage return."""
    return (data.isascii() and b'"' not in data and b"\x00" not in data
            and (b"\r" not in data or data.count(b"\r") == data.count(b"\r\n")))


def _fast_csv(data: bytes, names: list[str], columns: list[str]) -> dict[str, pa.Array] | None:
    """``columns`` of a chunk as text through pyarrow's CSV reader, or None where it cannot decide
    (then pandas reads the chunk). A field read that starts with a blank is such a case: pandas
    drops blanks before a field (skipinitialspace), pyarrow keeps them."""
    if not _plain_csv(data):
        return None
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                                  null_values=[], strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False))
    except pa.ArrowException:  # e.g. a row with another number of fields, a whitespace-only line
        return None
    frame = {name: table.column(name).combine_chunks() for name in columns}
    for text in frame.values():
        offsets, data = text_buffers(text)
        first = data[offsets[:-1][np.diff(offsets) > 0]]  # each non-empty field's first byte
        if ((first == ord(" ")) | (first == ord("\t"))).any():
            return None
    return frame


def _numbered(frames, first_row: int) -> Iterator[RawChunk]:
    """Attach each frame's first 1-based row number and its malformed rows (the tolerant reader's MALFORMED)."""
    for frame in frames:
        frame.columns = [str(c).strip() for c in frame.columns]
        malformed = (frame.iloc[:, 0] == MALFORMED).to_numpy(dtype=bool) if len(frame.columns) else None
        yield RawChunk(frame, first_row, len(frame), malformed)
        first_row += len(frame)


def _no_implicit_index(reader) -> Iterator[pd.DataFrame]:
    """The C engine takes the first column as the index when the first data row has one field more
    than the header (shifting every column); treat that as a malformed row instead."""
    import pandas as pd

    for frame in reader:
        if not isinstance(frame.index, pd.RangeIndex):
            raise CsvParserError("the first data row has more fields than the header")
        yield frame


def _pandas_csv(source: Path | BinaryIO, tolerant: bool = False, first_row: int = 1) -> Iterator[RawChunk]:
    """CSV chunks as strings through pandas, the reference reader; ``source`` starts with the
    header line, its rows are numbered from ``first_row``. Tolerant (``source`` the file's path):
    rows with too many fields become MALFORMED rows in place (pandas' python engine, slower: used
    only after the C engine met such a row)."""
    import pandas as pd

    try:
        if not tolerant:
            with pd.read_csv(source, chunksize=CHUNK_ROWS, **PANDAS_CSV) as reader:
                yield from _numbered(_no_implicit_index(reader), first_row)
            return
        # Explicit names: a long first data row is then a bad line too, not an implicit index.
        names = [str(c) for c in pd.read_csv(source, nrows=0, dtype=str, skipinitialspace=True, encoding="utf-8").columns]

        def bad_line(_fields: list[str]) -> list[str]:
            return [MALFORMED] * len(names)

        with pd.read_csv(source, engine="python", names=names, header=0, on_bad_lines=bad_line, chunksize=CHUNK_ROWS,
                         **PANDAS_CSV) as reader:
            yield from _numbered(reader, first_row)
    except pd.errors.ParserError as exc:
        raise CsvParserError(str(exc).strip()) from None


def _csv_chunks(path: Path, fmt: TraceFormat, tolerant: bool) -> Iterator[RawChunk]:
    """The CSV's rows in chunks: pyarrow where it can decide, pandas' C engine where not (under the
    file's header, so it parses exactly as it would the whole file). A chunk with a quote hands
    the rest of the file to pandas, which alone knows where quoted records end. Tolerant: the
    whole file through pandas' tolerant reader (a row with too many fields was met)."""
    layout = None if tolerant else _csv_layout(path)
    if layout is None:
        yield from _pandas_csv(path, tolerant)
        return
    header, names = layout
    columns = [*fmt.signature, *(c for c in fmt.optional if c in names)]
    first_row, start = 1, len(header)
    with path.open("rb") as fh:
        fh.seek(start)
        for data in _line_chunks(fh):
            if b'"' in data:
                fh.seek(start)
                yield from _pandas_csv(io.BufferedReader(_HeaderThen(header, fh)), first_row=first_row)
                return
            start += len(data)
            frame = _fast_csv(data, names, columns)
            raws = [RawChunk(frame, first_row, len(frame[columns[0]]))] if frame is not None else \
                list(_pandas_csv(io.BytesIO(header + data), first_row=first_row))
            for raw in raws:
                yield raw
                first_row += raw.rows


# ----------------------------------------------------------------------- JSONL readers


def _json_object(raw: bytes) -> dict | None:
    """One JSONL line as an object, or None when it is not exactly one JSON object.

    orjson implements RFC 8259 strictly: trailing commas, NaN/Infinity, comments, single quotes
    and invalid UTF-8 are errors (pandas' reader accepts several of them)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _slow_jsonl(data: bytes, line: int, first_row: int, keys: tuple[str, ...]) -> RawChunk:
    """A chunk line by line through orjson, the reference reader. Blank lines are not records (but
    keep the line numbers right); a line that is not one JSON object is a malformed row in place."""
    import pandas as pd

    objects: list[dict | None] = []
    lines: list[int] = []
    for i, raw in enumerate(data.split(b"\n")):
        if raw.strip():
            objects.append(_json_object(raw))
            lines.append(line + i)
    malformed = np.fromiter((o is None for o in objects), dtype=bool, count=len(objects))
    present = [o if o is not None else {} for o in objects]
    frame = pd.DataFrame({key: [o.get(key) for o in present] for key in keys})
    keys_seen = frozenset(key for key in keys if any(key in o for o in present))
    return RawChunk(frame, first_row, len(objects), malformed, np.asarray(lines, dtype=np.int64), keys_seen)


def _fast_jsonl(data: bytes, line: int, first_row: int, fmt: TraceFormat, keys: tuple[str, ...]) -> RawChunk | None:
    """A chunk through pyarrow's JSON reader, or None where the result could differ from orjson's
    line by line: one ``{`` a line (no blank line, no nested object) and one row a line; ASCII
    text without NaN/Infinity (which pyarrow accepts and RFC 8259 does not) or escapes (where
    parsers differ most; trace files have none); every key present and not null; no negative
    zero (orjson reads ``-0`` as the integer 0)."""
    body = data.rstrip(b" \t\r\n")
    lead = body.lstrip(b" \t\r\n")
    line += body[:len(body) - len(lead)].count(b"\n")  # blank lines before the first record
    body = lead
    n = _lines(body)
    if (not n or not body.isascii() or b"\\" in body or b"NaN" in body or b"Inf" in body
            or body.count(b"{") != n):
        return None
    schema = pa.schema([(k, pa.list_(pa.int64()) if k in fmt.id_lists else pa.float64()) for k in keys])
    try:
        table = pa_json.read_json(pa.BufferReader(body), read_options=pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES),
                                  parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                     unexpected_field_behavior="ignore"))
    except pa.ArrowException:  # not JSON, a value of another type, an id beyond int64, ...
        return None
    if table.num_rows != n:  # an object left open on its line took in the next line's
        return None
    frame: dict[str, Any] = {}
    for key in keys:
        column = table.column(key).combine_chunks()
        if column.null_count:
            return None
        if key in fmt.id_lists:
            if column.values.null_count:
                return None
            offsets = numpy_view(column.offsets).astype(np.int64)
            values = numpy_view(column.values)[offsets[0]:offsets[-1]]
            frame[key] = IdLists(values, offsets - offsets[0])
        else:
            values = numpy_view(column)
            if (np.signbit(values) & (values == 0)).any():
                return None
            frame[key] = values
    lines = np.arange(line, line + n, dtype=np.int64)  # one record a line: no blank line inside
    return RawChunk(frame, first_row, n, lines=lines, keys_seen=frozenset(keys))


def _jsonl_chunks(path: Path, fmt: TraceFormat) -> Iterator[RawChunk]:
    """The JSONL's records in chunks: pyarrow where it can decide, orjson line by line where not.
    The format's optional keys are read when the first record has them."""
    first = _json_object(first_line(path).encode()) or {}
    keys = fmt.signature + tuple(key for key in fmt.optional if key in first)
    line = first_row = 1
    with path.open("rb") as fh:
        if fh.read(len(BOM_BYTES)) != BOM_BYTES:
            fh.seek(0)
        for data in _line_chunks(fh):
            raw = _fast_jsonl(data, line, first_row, fmt, keys) or _slow_jsonl(data, line, first_row, keys)
            line += data.count(b"\n")
            if raw.rows:
                yield raw
                first_row += raw.rows


def _column(frame, name: str):
    if name in frame:
        return frame[name]
    import pandas as pd

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
    missing = [k for k in fmt.signature if k not in (chunk.keys_seen or ())]
    if missing:
        raise TraceError(f"{path}: not a trace in {fmt.name} format: no record has key(s) {', '.join(missing)}")


# ------------------------------------------------------------------- format parsers
# Each parser validates one chunk: returns (Chunk of all rows, columns, column reasons).

# ``YYYY-MM-DD HH:MM:SS.fffffffff`` byte by byte: the lowest and highest byte allowed at each position
# (position 10, the date/time separator, is checked on its own: a blank or "T").
_DATETIME_LOW = np.frombuffer(b"0000-00-00 00:00:00.000000000", dtype=np.uint8)
_DATETIME_HIGH = np.frombuffer(b"9999-99-99T99:99:99.999999999", dtype=np.uint8)


def _datetime_ns(text: pa.Array) -> np.ndarray | None:
    """Nanoseconds since the epoch of ``YYYY-MM-DD HH:MM:SS[.fraction]`` texts (``T`` or a blank
    between date and time, 1-9 fraction digits, no zone: UTC), through pyarrow's ISO 8601 parser;
    None if any text has another shape or is not a valid time (pyarrow refuses 02-30, 24:00, a
    60th second, years beyond nanosecond timestamps): pandas then decides, so every result is
    pandas' ISO 8601 one."""
    n = len(text)
    if n == 0 or text.null_count:
        return None
    offsets, data = text_buffers(text)
    lengths = np.diff(offsets)
    for width in ([int(lengths[0])] if lengths.min() == lengths.max() else np.unique(lengths).tolist()):
        if width != 19 and not 21 <= width <= 29:
            return None
        if lengths.min() == lengths.max():  # the usual case: the rows are the buffer's consecutive bytes
            chars = data[offsets[0]:offsets[-1]].reshape(n, width)
        else:
            starts = offsets[:-1][lengths == width]
            chars = np.stack([data[starts + c] for c in range(width)], axis=1)
        separator = chars[:, 10]
        if not (((chars >= _DATETIME_LOW[:width]) & (chars <= _DATETIME_HIGH[:width])).all()
                and ((separator == ord(" ")) | (separator == ord("T"))).all()):
            return None
    import pyarrow.compute as pc  # ~30 ms to import: only the readers that parse text need it

    try:
        return numpy_view(pc.cast(text, pa.timestamp("ns")))
    except pa.ArrowException:
        return None


def _parse_datetimes(raw) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch (UTC) of ISO 8601 texts, and a reason per row."""
    if isinstance(raw, pa.Array):
        ns = _datetime_ns(raw)
        if ns is not None:
            return ns / 1e9, np.zeros(len(ns), dtype=np.int8)
    import pandas as pd

    if isinstance(raw, pa.Array):
        raw = pd.Series(raw.to_numpy(zero_copy_only=False), dtype=str)
    raw = raw.astype(object)
    missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    parsed = pd.to_datetime(raw.where(~missing, None), format="ISO8601", errors="coerce", utc=True)
    # pandas picks the unit from the texts (a chunk of whole seconds parses in seconds), so a time
    # beyond nanosecond timestamps' range (years 1677-2262) would overflow below: it is a bad one.
    utc_min, utc_max = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    parsed = parsed.where((parsed >= utc_min) & (parsed <= utc_max)).dt.as_unit("ns")
    bad = ~missing & parsed.isna().to_numpy()
    reason = np.where(missing, CODE["missing_value"], np.where(bad, CODE["bad_timestamp"], 0)).astype(np.int8)
    arrival = np.where(parsed.isna(), np.nan, parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9)
    return arrival, reason


def _parse_tokens(frame, ts: str, inp: str, out: str, ts_numeric: bool):
    if ts_numeric:
        arrival, r_ts = numeric_column(_column(frame, ts), integer=False)
    else:
        arrival, r_ts = _parse_datetimes(_column(frame, ts))
    input_tokens, r_in = numeric_column(_column(frame, inp))
    output_tokens, r_out = numeric_column(_column(frame, out))
    r_zero = np.where((r_in == 0) & (input_tokens == 0), CODE["zero_input_tokens"], 0).astype(np.int8)
    chunk = Chunk(arrival=arrival, input_tokens=input_tokens, output_tokens=output_tokens)
    return chunk, [ts, inp, out, inp], [r_ts, r_in, r_out, r_zero]


def _parse_azure(frame):
    return _parse_tokens(frame, "TIMESTAMP", "ContextTokens", "GeneratedTokens", ts_numeric=False)


def _parse_splitwise(frame):
    return _parse_tokens(frame, "arrival_timestamp", "prompt_size", "token_size", ts_numeric=True)


_ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what Python's str.strip() removes from ASCII text


def _session_labels(raw) -> pa.Array:
    """Session labels as text, null where a row has none (blank or absent)."""
    if isinstance(raw, pa.Array):  # the fast reader's: ASCII text
        import pyarrow.compute as pc  # ~30 ms to import: only the readers that parse text need it

        offsets, _ = text_buffers(pc.ascii_trim(raw, _ASCII_WHITESPACE))
        return with_nulls(raw, np.diff(offsets) == 0)
    raw = raw.astype(object)
    labels = raw.where(raw.astype(str).str.strip() != "", None).to_numpy()
    return pa.array(labels, type=pa.string(), from_pandas=True)


def _parse_burstgpt(frame):
    chunk, cols, reasons = _parse_tokens(frame, "Timestamp", "Request tokens", "Response tokens", ts_numeric=True)
    session_col = next((c for c in BURSTGPT_SESSION_COLUMNS if c in frame), None)
    if session_col is not None:
        chunk.session = _session_labels(frame[session_col])
    return chunk, cols, reasons


def _id_list_reason(ids: list) -> int:
    """0 for a list of ids that fit numpy's int64; else why not."""
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ids):
        return CODE["bad_hash_ids"]
    return CODE["id_out_of_range"] if max(ids) > INT64_MAX else 0


def _list_column(values, empty_reason: str) -> tuple[IdLists, np.ndarray, np.ndarray]:
    """A column of id lists as flat ids, a reason per row (missing, not a list of non-negative
    integers, empty, an id beyond int64) and each row's length as written (-1: not a list).
    The reference reader's rows that are not a valid list hold no ids."""
    if isinstance(values, IdLists):  # the fast reader's: lists of int64, none null
        lengths = values.lengths
        reason = np.where(lengths == 0, CODE[empty_reason], 0).astype(np.int8)
        negative = np.zeros(len(values), dtype=bool)
        negative[np.searchsorted(values.offsets, np.flatnonzero(values.values < 0), side="right") - 1] = True
        reason[(reason == 0) & negative] = CODE["bad_hash_ids"]
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
        reason[ok_lists] = values.iloc[ok_lists].map(_id_list_reason).to_numpy(dtype=np.int8)
    lists = IdLists.from_lists([v if r == 0 else () for v, r in zip(values.tolist(), reason)])
    return lists, reason, lengths


def _parse_mooncake(frame):
    chunk, cols, reasons = _parse_tokens(frame, "timestamp", "input_length", "output_length", ts_numeric=True)
    hash_ids, r_hash, lengths = _list_column(_column(frame, "hash_ids"), "empty_hash_ids")
    expected = np.ceil(np.nan_to_num(chunk.input_tokens) / MOONCAKE_BLOCK_TOKENS)
    r_len = np.where((r_hash == 0) & (lengths != expected), CODE["hash_ids_length_mismatch"], 0).astype(np.int8)
    chunk.hash_ids = hash_ids
    return chunk, cols + ["hash_ids", "hash_ids"], reasons + [r_hash, r_len]


def _parse_llmservingsim(frame):
    chunk, cols, reasons = _parse_tokens(frame, "arrival_time_ns", "input_toks", "output_toks", ts_numeric=True)
    if "input_tok_ids" in frame:
        token_ids, r_ids, lengths = _list_column(frame["input_tok_ids"], "missing_value")
        r_ids[r_ids == CODE["bad_hash_ids"]] = CODE["non_numeric"]
        r_len = np.where((r_ids == 0) & (lengths != chunk.input_tokens), CODE["token_ids_length_mismatch"], 0).astype(np.int8)
        cols += ["input_tok_ids", "input_tok_ids"]
        reasons += [r_ids, r_len]
        chunk.token_ids = token_ids
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
    "burstgpt": TraceFormat("burstgpt", "csv", ("Timestamp", "Request tokens", "Response tokens"), "s",
                            optional=BURSTGPT_SESSION_COLUMNS),
    "mooncake": TraceFormat("mooncake", "jsonl", ("timestamp", "input_length", "output_length", "hash_ids"), "ms",
                            id_lists=("hash_ids",)),
    "splitwise": TraceFormat("splitwise", "csv", ("arrival_timestamp", "prompt_size", "token_size"), "s"),
    "llmservingsim": TraceFormat("llmservingsim", "jsonl", ("input_toks", "output_toks", "arrival_time_ns"), "ns",
                                 optional=("input_tok_ids",), id_lists=("input_tok_ids",)),
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
            kept.append(chunk.take(idx))
            n_kept += len(idx)
            if limit is not None and n_kept >= limit:
                break
    return kept, rows_read


def _validate(path: Path, fmt: TraceFormat, raw: RawChunk, max_tokens: int):
    """A chunk's first failing reason per row, each column's reasons, and its parsed values."""
    if fmt.kind == "csv":
        if not isinstance(raw.frame, dict):
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
            return _scan(path, fmt, ledger, limit, _csv_chunks(path, fmt, tolerant=False), max_tokens)
        except CsvParserError:
            pass
        ledger.counts.clear()  # rescan from the start, charging rows with too many fields in place
        try:
            return _scan(path, fmt, ledger, limit, _csv_chunks(path, fmt, tolerant=True), max_tokens)
        except CsvParserError as exc:
            raise TraceError(f"{path}: malformed CSV: {quote(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (an invalid byte 0x{exc.object[exc.start]:02x} in the file)") from None


def _dense_codes(labels: pa.Array) -> np.ndarray:
    """Dense int64 codes of text labels in order of first appearance; -1 for null."""
    indices = labels.dictionary_encode().indices
    return np.where(valid(indices), numpy_view(indices), -1).astype(np.int64)


def load_trace(workload: WorkloadConfig, block_size: int, sha256: str | None = None) -> Trace:
    """Load ``workload.trace`` into a validated, time-normalised ``Trace`` with block ids.

    A file with no usable request is an error (every mode needs at least one). ``sha256`` is
    the file's hash when the caller has computed it already (the workload cache's key).
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
        return np.concatenate([getattr(c, attr) for c in kept]).astype(dtype)

    arrival = cat("arrival", np.float64)
    if fmt.time_unit is not None:
        arrival = arrival * TIME_UNITS[workload.time_unit or fmt.time_unit]
    input_tokens = cat("input_tokens", np.int64)
    output_tokens = cat("output_tokens", np.int64)
    n = len(arrival)
    session = np.full(n, -1, dtype=np.int64)
    if kept[0].session is not None:
        session = _dense_codes(pa.concat_arrays([c.session for c in kept]))

    # Arrival order, stable so equal timestamps keep file order; time from the first request.
    order = None if (np.diff(arrival) >= 0).all() else np.argsort(arrival, kind="stable")
    if order is not None:
        arrival, input_tokens, output_tokens, session = arrival[order], input_tokens[order], output_tokens[order], session[order]
    arrival = arrival - arrival[0]

    def ordered(lists: IdLists) -> IdLists:
        return lists if order is None else lists.take(order)

    conversion = None
    if fmt.name == "mooncake":
        lists = ordered(IdLists.concat([c.hash_ids for c in kept]))
        flat, offsets = lists.values, lists.offsets
        kind = "hash_ids"
        if block_size == MOONCAKE_BLOCK_TOKENS or workload.block_mismatch == "trace":
            block_size = MOONCAKE_BLOCK_TOKENS  # the trace's own blocks, as given (the Contract's default)
            block_ids, num_unique = bm.intern(flat)
        elif workload.block_mismatch == "split" and MOONCAKE_BLOCK_TOKENS % block_size == 0:
            offsets, block_ids, num_unique = bm.split_block_ids(flat, offsets, input_tokens, MOONCAKE_BLOCK_TOKENS,
                                                                block_size)
            conversion = f"split {MOONCAKE_BLOCK_TOKENS}-token trace blocks into {block_size}-token blocks"
        else:
            raise ConfigError(
                f"{path}: trace blocks are {MOONCAKE_BLOCK_TOKENS} tokens but serving.block_size is {block_size} "
                f"(workload.block_mismatch={workload.block_mismatch}); use workload.block_mismatch=trace to replay the "
                f"trace's blocks, or split with a block_size that divides {MOONCAKE_BLOCK_TOKENS}")
    elif kept[0].token_ids is not None:
        lists = ordered(IdLists.concat([c.token_ids for c in kept]))
        offsets, keys = bm.token_content_keys(lists.values, lists.offsets, block_size)
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
        sha256=sha256 or file_sha256(path),
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
