"""Reading trace files: text checks, chunks of whole lines, and the CSV and JSON lines readers.

The file is read in chunks of whole lines. Each chunk goes through pyarrow's CSV or JSON reader
into flat arrays (ids as values + offsets, never a Python list per row). A chunk the fast reader
cannot decide exactly — anything odd: a parse or type error, a quote, a NUL byte, non-ASCII text,
leading blanks, a JSON null, a nested value — is read again by the reference readers (pandas for
CSV, orjson line by line for JSON lines), so both give the same rows, values and skip reasons; the
fast reader is only a shortcut.

The readers know columns and keys, not formats: they hand each chunk on as a ``RawChunk`` of
text (CSV) or JSON values, numbered by row; what a row means is ``trace.formats``' parsers', which
rows are kept is ``trace.loaders``'. JSON lines are parsed strictly (RFC 8259).
"""

from __future__ import annotations

import codecs
import csv
import io
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from sim.errors import TraceError, quote
from trace import blocks as bm
from trace.arrow import numpy_view, text_buffers

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 500_000  # lines a chunk holds at most
CHUNK_BYTES = 16 * 1024 * 1024  # bytes a chunk holds at most (unless one line is longer)
JSON_BLOCK_BYTES = 4 * 1024 * 1024  # pyarrow's JSON reader parses blocks of this size in parallel
SNIFF_BYTES = 64 * 1024  # checked to be UTF-8 text before any parsing
MAX_LINE_BYTES = 16 * 1024 * 1024  # a header or first record longer than this is not a trace's
BOM = "\ufeff"
BOM_BYTES = BOM.encode()
# A CSV row with too many fields is kept in its chunk as a row of this placeholder (the tolerant
# reader's), so it keeps its row number and is charged in file order like any other bad row.
MALFORMED = "\x00malformed row"
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
class RawChunk:
    """One chunk of rows as read, before validation."""

    frame: pd.DataFrame | dict[str, Any]  # pandas: strings (CSV) or JSON values; fast: name -> array
    first_row: int  # 1-based number of its first row (record) in the file
    rows: int
    malformed: np.ndarray | None = None  # rows that are not records (CSV: too many fields; JSONL: not an object)
    lines: np.ndarray | None = None  # the file line of each row, where the reader knows it (JSONL)
    keys_seen: frozenset[str] | None = None  # JSONL: the keys read that some record of the chunk has


# ---------------------------------------------------------------- text checks and chunks


# Compressed files by their magic bytes (RFC 1952 gzip, bzip2, xz, Zstandard, zip): named, so a user who
# downloaded ``trace.csv.gz`` learns to decompress it instead of reading "binary data".
COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip"), (b"BZh", "bzip2", "bunzip2"), (b"\xfd7zXZ\x00", "xz", "unxz"),
              (b"\x28\xb5\x2f\xfd", "Zstandard", "unzstd"), (b"PK\x03\x04", "zip", "unzip"))


def check_text(path: Path, head: bytes) -> None:
    """A trace is UTF-8 text: reject an empty, compressed, binary or otherwise encoded file by its first bytes."""
    if not head:
        raise TraceError(f"{path}: the file is empty")
    for magic, kind, tool in COMPRESSED:
        if head.startswith(magic) and (kind != "bzip2" or head[3:4].isdigit()):
            raise TraceError(f"{path}: {kind}-compressed, not a text trace: decompress it first ({tool} {path.name})")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise TraceError(f"{path}: binary data (a NUL byte at offset {nul}), not a text trace")
    try:  # an incomplete multi-byte character at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start})") from None


def first_line(path: Path) -> str:
    """The first non-blank line of a text trace (BOM removed), read with a bound on its length.
    Outside a JSON record a lone carriage return ends a line too, as the CSV readers (pandas, csv)
    take it: a file with old Mac line ends is sniffed by its header, not as one long line."""
    try:
        with path.open("rb") as fh:
            check_text(path, fh.read(SNIFF_BYTES))
            fh.seek(0)
            while True:
                line = fh.readline(MAX_LINE_BYTES)
                if not line:
                    return ""
                if not line.removeprefix(BOM_BYTES).lstrip().startswith(b"{"):  # in JSON a carriage return is a blank
                    line = next((part + b"\r" for part in line.split(b"\r")[:-1] if part.strip()), line)
                if len(line) == MAX_LINE_BYTES and not line.endswith((b"\n", b"\r")):
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


def csv_fields(line: str) -> list[str]:
    """The fields of one CSV line (a header), blanks around each removed."""
    try:
        fields = next(csv.reader([line], skipinitialspace=True), [])
    except csv.Error:  # e.g. a field above the csv module's size limit: no real header has one
        fields = line.split(",")
    return [f.strip() for f in fields]


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
    names = csv_fields(text.decode())
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


def _pandas_csv(source: Path | BinaryIO, first_row: int = 1) -> Iterator[RawChunk]:
    """CSV chunks as strings through pandas' C engine, the reference reader; ``source`` starts with
    the header line, its rows are numbered from ``first_row``."""
    import pandas as pd

    try:
        with pd.read_csv(source, chunksize=CHUNK_ROWS, **PANDAS_CSV) as reader:
            yield from _numbered(_no_implicit_index(reader), first_row)
    except pd.errors.ParserError as exc:
        raise CsvParserError(str(exc).strip()) from None


def _blank(fields: list[str]) -> bool:
    """A line that is not a row: empty or blanks only (pandas skips it with skipinitialspace)."""
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _tolerant_csv(path: Path) -> Iterator[RawChunk]:
    """The whole CSV through Python's csv module, used only after pandas' C engine met a row it
    cannot hold. A row with more fields than the header becomes a MALFORMED row in place, whatever
    its position (pandas' readers take a long first row's extra fields as an index and shift every
    column); a short row is padded with missing values, as pandas pads it. Strict: an unclosed
    quote or a field above the csv module's size limit is an error naming its line, never the rest
    of the file read as one field."""
    import pandas as pd

    names = [str(c) for c in pd.read_csv(path, nrows=0, dtype=str, skipinitialspace=True, encoding="utf-8").columns]
    first_row, rows = 1, []

    def chunk() -> Iterator[RawChunk]:
        yield from _numbered([pd.DataFrame(rows, columns=names, dtype=str)], first_row)

    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True, strict=True)
        start = 1  # the line the record being read begins on
        try:
            next(reader, None)  # the header
            start = reader.line_num + 1
            for fields in reader:
                start = reader.line_num + 1
                if _blank(fields):
                    continue
                rows.append([MALFORMED] * len(names) if len(fields) > len(names)
                            else fields + [None] * (len(names) - len(fields)))
                if len(rows) == CHUNK_ROWS:
                    yield from chunk()
                    first_row, rows = first_row + len(rows), []
        except csv.Error as exc:
            raise CsvParserError(f"the record from line {start}: {exc}") from None
    if rows:
        yield from chunk()


def csv_chunks(path: Path, required: tuple[str, ...], optional: tuple[str, ...], tolerant: bool) -> Iterator[RawChunk]:
    """The CSV's rows in chunks: pyarrow where it can decide, pandas' C engine where not (under the
    file's header, so it parses exactly as it would the whole file). A chunk with a quote hands
    the rest of the file to pandas, which alone knows where quoted records end. Tolerant: the
    whole file through the csv module (pandas met a row it cannot hold). pyarrow
    reads the ``required`` columns and those of ``optional`` the header has; pandas reads all."""
    if tolerant:
        yield from _tolerant_csv(path)
        return
    layout = _csv_layout(path)
    if layout is None:
        yield from _pandas_csv(path)
        return
    header, names = layout
    columns = [*required, *(c for c in optional if c in names)]
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


def json_object(raw: bytes) -> dict | None:
    """One JSONL line as an object, or None when it is not exactly one JSON object.

    orjson implements RFC 8259 strictly: trailing commas, NaN/Infinity, comments, single quotes
    and invalid UTF-8 are errors (pandas' reader accepts several of them)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


_JSON_KINDS = ((list, "a JSON array"), (str, "a JSON string"), (bool, "a JSON boolean"), ((int, float), "a JSON number"),
               (type(None), "a JSON null"))


def json_line_problem(raw: bytes | str) -> str:
    """What a JSONL line that is not one JSON object is instead (for an error message): a JSON array
    (a whole-file array on one line, or a record written as a list), another JSON value, a line of an
    array or object spread over several lines, or text that is not JSON."""
    text = raw.encode() if isinstance(raw, str) else raw
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        stripped = text.strip()
        if stripped.startswith(b"[") or stripped.endswith((b"]", b"],")):
            return "part of a JSON array spread over several lines"
        if stripped.startswith(b"{") or stripped.endswith((b"}", b"},")):
            return "not one complete JSON object (RFC 8259: no trailing comma, NaN or comment)"
        return "not JSON"
    if isinstance(value, dict):
        return "a JSON object"
    return next(name for kind, name in _JSON_KINDS if isinstance(value, kind))


JSONL_EXPECTED = "expected JSON Lines, one JSON object per line"


def jsonl_line(path: Path, line: int) -> bytes | None:
    """Line ``line`` (1-based) of a file, to word an error (it may rescan the file); None past its end."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == line:
                return raw.removeprefix(BOM_BYTES) if number == 1 else raw
    return None


def _slow_jsonl(data: bytes, line: int, first_row: int, keys: tuple[str, ...]) -> RawChunk:
    """A chunk line by line through orjson, the reference reader. Blank lines are not records (but
    keep the line numbers right); a line that is not one JSON object is a malformed row in place."""
    import pandas as pd

    objects: list[dict | None] = []
    lines: list[int] = []
    for i, raw in enumerate(data.split(b"\n")):
        if raw.strip():
            objects.append(json_object(raw))
            lines.append(line + i)
    malformed = np.fromiter((o is None for o in objects), dtype=bool, count=len(objects))
    present = [o if o is not None else {} for o in objects]
    frame = pd.DataFrame({key: [_not_text(o.get(key)) for o in present] for key in keys})
    keys_seen = frozenset(key for key in keys if any(key in o for o in present))
    return RawChunk(frame, first_row, len(objects), malformed, np.asarray(lines, dtype=np.int64), keys_seen)


def _not_text(value):
    """Every key a JSONL format reads holds numbers (or lists of them): a JSON string, even "512", is not
    one, so it is kept as its JSON spelling (with its quotes), which no number parser reads."""
    return orjson.dumps(value).decode() if isinstance(value, str) else value


def _fast_jsonl(data: bytes, line: int, first_row: int, keys: tuple[str, ...], id_lists: tuple[str, ...]) -> RawChunk | None:
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
    schema = pa.schema([(k, pa.list_(pa.int64()) if k in id_lists else pa.float64()) for k in keys])
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
        if key in id_lists:
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


def some_record_has(path: Path, key: str) -> bool:
    """Whether any record of a JSONL file has ``key``: a search of the file's bytes (memory-mapped)
    in which only the lines holding the key's quoted name, or an escape (which could spell it), are parsed."""
    with path.open("rb") as fh:
        if not os.fstat(fh.fileno()).st_size:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for needle in (f'"{key}"'.encode(), b"\\"):
                at = data.find(needle)
                while at >= 0:
                    start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
                    end = len(data) if end < 0 else end
                    if key in (json_object(data[start:end].removeprefix(BOM_BYTES)) or {}):
                        return True
                    at = data.find(needle, end)
    return False


def keys_in_records(path: Path, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``keys`` that some record of a JSONL file has: in its first record, else found by a search of the
    file (``some_record_has``, a pass over its bytes for each key no record has)."""
    first = json_object(first_line(path).encode()) or {}
    return tuple(key for key in keys if key in first or some_record_has(path, key))


def jsonl_chunks(path: Path, required: tuple[str, ...], optional: tuple[str, ...],
                 id_lists: tuple[str, ...]) -> Iterator[RawChunk]:
    """The JSONL's records in chunks: pyarrow where it can decide, orjson line by line where not.
    The ``required`` keys are read, and those of ``optional`` that any record has (so a record
    without one is missing a value wherever it lies in the file); the values of the ``id_lists``
    keys are lists of integer ids."""
    keys = required + keys_in_records(path, optional)
    line = first_row = 1
    with path.open("rb") as fh:
        if fh.read(len(BOM_BYTES)) != BOM_BYTES:
            fh.seek(0)
        for data in _line_chunks(fh):
            raw = _fast_jsonl(data, line, first_row, keys, id_lists) or _slow_jsonl(data, line, first_row, keys)
            line += data.count(b"\n")
            if raw.rows:
                yield raw
                first_row += raw.rows
