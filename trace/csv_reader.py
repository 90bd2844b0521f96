"""The CSV reader: pyarrow's CSV reader where it decides exactly, pandas' C engine (the reference) where not,
and Python's csv module where pandas meets a row it cannot hold (``trace.readers`` for the shared parts)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from trace import readers
from trace.arrow import text_buffers
from trace.readers import BOM_BYTES, MAX_LINE_BYTES, RawChunk, line_chunks

if TYPE_CHECKING:
    import pandas as pd

# A CSV row with too many fields is kept in its chunk as a row of this placeholder (the tolerant
# reader's), so it keeps its row number and is charged in file order like any other bad row.
MALFORMED = "\x00malformed row"
PANDAS_CSV = dict(dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8")

# Field separators a CSV trace may use: the comma; the semicolon a spreadsheet writes in a locale whose decimal
# separator is the comma; the tab of tab-separated text; the pipe of database dumps. A file's is the first under
# which its header names a format's columns (``read_header``).
DELIMITERS = (",", ";", "\t", "|")


def csv_fields(line: str, delimiter: str = ",") -> list[str]:
    """The fields of one CSV line (a header), blanks around each removed."""
    try:
        fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error:  # e.g. a field above the csv module's size limit: no real header has one
        fields = line.split(delimiter)
    return [f.strip() for f in fields]


def read_header(line: str, signature: tuple[str, ...], optional: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """The separator (of ``DELIMITERS``) under which a header line names every column of ``signature``, and the
    column names under it (as ``header_names`` reads them); the comma's when none does (the header check then names
    the columns missing)."""
    wanted = (*signature, *optional)
    for delimiter in DELIMITERS:
        names = header_names(csv_fields(line, delimiter), wanted)
        if set(signature) <= set(names):
            return delimiter, names
    return ",", header_names(csv_fields(line), wanted)


def header_names(names: list[str], wanted: tuple[str, ...]) -> list[str]:
    """A header's column names with each that names a ``wanted`` column but for letter case renamed to it (a
    database export lowercases identifiers: ``timestamp,contexttokens,generatedtokens``). A column named exactly is
    left as written, and so is a name that another of the header's names folds to as well (which one is meant
    cannot be told: the column is then missing)."""
    exact = set(names)
    folds = Counter(name.casefold() for name in names)
    by_fold = {column.casefold(): column for column in wanted if column not in exact}
    return [by_fold.get(name.casefold(), name) if folds[name.casefold()] == 1 else name for name in names]


class CsvParserError(Exception):
    """pandas' C reader met a row it cannot hold (too many fields): the tolerant reader must decide."""


def _csv_layout(path: Path, delimiter: str) -> tuple[bytes, list[str]] | None:
    """The header line (as bytes) and the column names, when the fast reader may read this file:
    the header is line 1, ASCII, without quotes, and names each column once (pandas would rename
    a repeated name). Otherwise None: pandas reads the whole file."""
    with path.open("rb") as fh:
        line = fh.readline(MAX_LINE_BYTES)
    text = line[len(BOM_BYTES):] if line.startswith(BOM_BYTES) else line
    if not text.strip() or not text.isascii() or b'"' in text or not line.endswith(b"\n"):
        return None
    names = csv_fields(text.decode(), delimiter)
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


def _fast_csv(data: bytes, names: list[str], columns: list[str], delimiter: str = ",") -> dict[str, pa.Array] | None:
    """``columns`` of a chunk as text through pyarrow's CSV reader, or None where it cannot decide
    (then pandas reads the chunk). A field read that starts with a blank is such a case: pandas
    drops blanks before a field (skipinitialspace), pyarrow keeps them."""
    if not _plain_csv(data):
        return None
    table = _arrow_table(data, names, columns, delimiter)
    if table is None:  # every row ending with the delimiter (as some writers end them): an empty field past the
        past = "\x00past the header"  # header's is dropped (``_tolerant_csv``), a value there is not for this path
        table = _arrow_table(data, [*names, past], [*columns, past], delimiter)
        if table is None or not _blanks_only(table.column(past).combine_chunks()):
            return None
    frame = {name: table.column(name).combine_chunks() for name in columns}
    for text in frame.values():
        offsets, data = text_buffers(text)
        first = data[offsets[:-1][np.diff(offsets) > 0]]  # each non-empty field's first byte
        if ((first == ord(" ")) | (first == ord("\t"))).any():
            return None
    return frame


def _blanks_only(text: pa.Array) -> bool:
    """Every field of ``text`` empty or blanks."""
    offsets, data = text_buffers(text)
    used = data[offsets[0]:offsets[-1]]
    return bool(((used == ord(" ")) | (used == ord("\t"))).all())


def _arrow_table(data: bytes, names: list[str], columns: list[str], delimiter: str) -> pa.Table | None:
    """``columns`` of a chunk whose rows have exactly ``names``' fields, as text; None when pyarrow cannot read it
    so (e.g. a row with another number of fields, a whitespace-only line)."""
    try:
        return pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                                  null_values=[], strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False))
    except pa.ArrowException:
        return None


def _numbered(frames, first_row: int, wanted: tuple[str, ...]) -> Iterator[RawChunk]:
    """Attach each frame's first 1-based row number and its malformed rows (the tolerant reader's MALFORMED); its
    columns named as ``header_names`` names them."""
    for frame in frames:
        frame.columns = header_names([str(c).strip() for c in frame.columns], wanted)
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


def _pandas_csv(source: Path | BinaryIO, wanted: tuple[str, ...], delimiter: str, first_row: int = 1) -> Iterator[RawChunk]:
    """CSV chunks as strings through pandas' C engine, the reference reader; ``source`` starts with
    the header line, its rows are numbered from ``first_row``."""
    import pandas as pd

    try:
        with pd.read_csv(source, chunksize=readers.CHUNK_ROWS, sep=delimiter, **PANDAS_CSV) as reader:
            yield from _numbered(_no_implicit_index(reader), first_row, wanted)
    except pd.errors.ParserError as exc:
        raise CsvParserError(str(exc).strip()) from None


def _blank(fields: list[str]) -> bool:
    """A line that is not a row: empty or blanks only (pandas skips it with skipinitialspace)."""
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _tolerant_csv(path: Path, wanted: tuple[str, ...], delimiter: str) -> Iterator[RawChunk]:
    """The whole CSV through Python's csv module, used only after pandas' C engine met a row it
    cannot hold. Empty fields past the header's (a delimiter ending each line, as some writers put one) are
    dropped: the named fields are as written. A row with more fields than the header, one of them past the
    header's not empty (which field is the extra one cannot be told), becomes a MALFORMED row in place, whatever
    its position (pandas' readers take a long first row's extra fields as an index and shift every
    column); a short row is padded with missing values, as pandas pads it. Strict: an unclosed
    quote or a field above the csv module's size limit is an error naming its line, never the rest
    of the file read as one field."""
    import pandas as pd

    names = [str(c) for c in pd.read_csv(path, nrows=0, sep=delimiter, dtype=str, skipinitialspace=True,
                                         encoding="utf-8").columns]
    first_row, rows = 1, []

    def chunk() -> Iterator[RawChunk]:
        yield from _numbered([pd.DataFrame(rows, columns=names, dtype=str)], first_row, wanted)

    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=True, strict=True)
        start = 1  # the line the record being read begins on
        try:
            next(reader, None)  # the header
            start = reader.line_num + 1
            for fields in reader:
                start = reader.line_num + 1
                if _blank(fields):
                    continue
                if len(fields) > len(names) and not any(f.strip() for f in fields[len(names):]):
                    del fields[len(names):]  # a delimiter at the end of the line: the named fields are intact
                rows.append([MALFORMED] * len(names) if len(fields) > len(names)
                            else fields + [None] * (len(names) - len(fields)))
                if len(rows) == readers.CHUNK_ROWS:
                    yield from chunk()
                    first_row, rows = first_row + len(rows), []
        except csv.Error as exc:
            raise CsvParserError(f"the record from line {start}: {exc}") from None
    if rows:
        yield from chunk()


def csv_chunks(path: Path, required: tuple[str, ...], optional: tuple[str, ...], tolerant: bool,
               delimiter: str = ",") -> Iterator[RawChunk]:
    """The CSV's rows in chunks: pyarrow where it can decide, pandas' C engine where not (under the
    file's header, so it parses exactly as it would the whole file). A chunk with a quote hands
    the rest of the file to pandas, which alone knows where quoted records end. Tolerant: the
    whole file through the csv module (pandas met a row it cannot hold). pyarrow
    reads the ``required`` columns and those of ``optional`` the header has; pandas reads all. Fields are
    separated by ``delimiter`` (``read_header``)."""
    wanted = (*required, *optional)
    if tolerant:
        yield from _tolerant_csv(path, wanted, delimiter)
        return
    layout = _csv_layout(path, delimiter)
    if layout is None:
        yield from _pandas_csv(path, wanted, delimiter)
        return
    header, names = layout
    names = header_names(names, wanted)
    columns = [*required, *(c for c in optional if c in names)]
    first_row, start = 1, len(header)
    with path.open("rb") as fh:
        fh.seek(start)
        for data in line_chunks(fh):
            if b'"' in data:
                fh.seek(start)
                yield from _pandas_csv(io.BufferedReader(_HeaderThen(header, fh)), wanted, delimiter, first_row=first_row)
                return
            start += len(data)
            frame = _fast_csv(data, names, columns, delimiter)
            raws = [RawChunk(frame, first_row, len(frame[columns[0]]))] if frame is not None else \
                list(_pandas_csv(io.BytesIO(header + data), wanted, delimiter, first_row=first_row))
            for raw in raws:
                yield raw
                first_row += raw.rows
