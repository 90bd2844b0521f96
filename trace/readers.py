"""Reading trace files: text checks, chunks of whole lines, and the records both readers hand on.

The file is read in chunks of whole lines. Each chunk goes through pyarrow's CSV or JSON reader
into flat arrays (ids as values + offsets, never a Python list per row). A chunk the fast reader
cannot decide exactly — anything odd: a parse or type error, a quote, a NUL byte, non-ASCII text,
leading blanks, a JSON null, a nested value — is read again by the reference readers (pandas for
CSV, orjson line by line for JSON lines), so both give the same rows, values and skip reasons; the
fast reader is only a shortcut.

The readers know columns and keys, not formats: they hand each chunk on as a ``RawChunk`` of
text (CSV) or JSON values, numbered by row; what a row means is ``trace.formats``' parsers', which
rows are kept is ``trace.loaders``'. The readers: ``trace.csv_reader`` and ``trace.jsonl_reader``
(JSON lines parsed strictly, RFC 8259).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

import numpy as np

from sim.config_fields import INT64_MAX
from sim.errors import TraceError, quote
from trace import blocks as bm

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 500_000  # lines a chunk holds at most
CHUNK_BYTES = 16 * 1024 * 1024  # bytes a chunk holds at most (unless one line is longer)
SNIFF_BYTES = 64 * 1024  # checked to be UTF-8 text before any parsing
MAX_LINE_BYTES = 16 * 1024 * 1024  # a header or first record longer than this is not a trace's
BOM = "\ufeff"
BOM_BYTES = BOM.encode()


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
        # (an id past int64, an unsigned 64-bit hash's, is kept as the int64 of the same 64 bits)
        values = np.fromiter((x - (1 << 64) if x > INT64_MAX else x for v in lists for x in v), dtype=np.int64,
                             count=int(offsets[-1]))
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
# Each with its tool and the suffix that tool needs to decompress a file in place ("gunzip t.csv" refuses a name
# without .gz: "unknown suffix -- ignored"; unzip takes any name).
COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip", ".gz"), (b"BZh", "bzip2", "bunzip2", ".bz2"),
              (b"\xfd7zXZ\x00", "xz", "unxz", ".xz"), (b"\x28\xb5\x2f\xfd", "Zstandard", "unzstd", ".zst"),
              (b"PK\x03\x04", "zip", "unzip", ""))


# UTF-16/32 text (Windows PowerShell 5's ">" and Out-File, Excel's "Unicode Text") by its byte order mark: named, so
# it is not called binary data for its NUL bytes.
WIDE_TEXT = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
             (b"\xfe\xff", "UTF-16"))


def wide_text(head: bytes) -> str | None:
    """The encoding of UTF-16/32 text: told by its byte order mark or, without one, by ASCII characters each
    followed (little-endian) or preceded (big-endian) by a NUL byte in the first line."""
    for bom, kind in WIDE_TEXT:
        if head.startswith(bom):
            return kind
    sample = head[:128] if len(head) % 2 == 0 else head[:min(128, len(head) - 1)]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if (not odd.strip(b"\x00") and even.isascii() and b"\x00" not in even) or \
                (not even.strip(b"\x00") and odd.isascii() and b"\x00" not in odd):
            return "UTF-16"
    return None


# Tables in binary formats, by their magic bytes (an Office Open XML workbook is a zip whose first member is
# [Content_Types].xml; an Excel 97-2003 workbook an OLE2 file): named, with the way to a text trace; told before the
# compressed files, so a workbook is not sent to unzip.
TABLES = ((b"PAR1", "an Apache Parquet file", "write it as CSV or JSON Lines (pandas: read_parquet, then to_csv)"),
          (b"ARROW1", "an Apache Arrow file", "write it as CSV or JSON Lines"),
          (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook", "save it as CSV UTF-8"))


def binary_table(head: bytes) -> tuple[str, str] | None:
    """What binary table a file's first bytes hold, and the way to a text trace; None for none of ``TABLES``."""
    if head.startswith(b"PK\x03\x04") and (b"[Content_Types].xml" in head[:256] or b"xl/" in head[:256]):
        return "an Excel workbook (.xlsx)", "save it as CSV UTF-8"
    return next(((kind, way) for magic, kind, way in TABLES if head.startswith(magic)), None)


def check_text(path: Path, head: bytes) -> None:
    """A trace is UTF-8 text: reject an empty, compressed, binary or otherwise encoded file by its first bytes."""
    if not head:
        raise TraceError(f"{path}: the file is empty")
    table = binary_table(head)
    if table is not None:
        raise TraceError(f"{path}: {table[0]}, not a text trace: {table[1]}")
    for magic, kind, tool, suffix in COMPRESSED:
        if head.startswith(magic) and (kind != "bzip2" or head[3:4].isdigit()):
            how = (f"{tool} {path.name}" if path.name.endswith(suffix) else
                   f"{tool} -c {path.name} > {path.stem}.decompressed{path.suffix}")  # (a .csv name: in place refused)
            raise TraceError(f"{path}: {kind}-compressed, not a text trace: decompress it first ({how})")
    wide = wide_text(head)
    if wide is not None:
        raise TraceError(f"{path}: {wide} text, not UTF-8: convert it first (iconv -f {wide} -t UTF-8)")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise TraceError(f"{path}: binary data (a NUL byte at offset {nul}), not a text trace")
    try:  # an incomplete multi-byte character at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start})") from None


def first_line(path: Path) -> str:
    """The first non-blank line of a text trace (BOM removed), read with a bound on its length; a file of blank
    lines only is refused.
    Outside a JSON record a lone carriage return ends a line too, as the CSV readers (pandas, csv)
    take it: a file with old Mac line ends is sniffed by its header, not as one long line."""
    try:
        with path.open("rb") as fh:
            check_text(path, fh.read(SNIFF_BYTES))
            fh.seek(0)
            while True:
                line = fh.readline(MAX_LINE_BYTES)
                if not line:  # (an empty file was refused above)
                    raise TraceError(f"{path}: no header or record: the file holds only blank lines")
                if not line.removeprefix(BOM_BYTES).lstrip().startswith(b"{"):  # in JSON a carriage return is a blank
                    line = next((part + b"\r" for part in line.split(b"\r")[:-1] if part.strip()), line)
                if len(line) == MAX_LINE_BYTES and not line.endswith((b"\n", b"\r")):
                    raise TraceError(f"{path}: the first line is longer than {MAX_LINE_BYTES >> 20} MiB, so it is not "
                                     f"a trace header or record; it starts {quote(line.decode('utf-8', 'replace'))}")
                if line.removeprefix(BOM_BYTES).strip():
                    return line.decode("utf-8", "replace").strip().lstrip(BOM)
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None


def line_chunks(fh: BinaryIO) -> Iterator[bytes]:
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


def count_lines(data: bytes) -> int:
    """Lines in a chunk (a last line without its newline counts)."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
