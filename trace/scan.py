"""Reading a trace file's rows: ``collect``, chunk by chunk, each chunk parsed by its format and validated over flat
arrays, valid rows kept in file order and the others charged to a skip reason (``trace.validation.SkipLedger``).

The file must carry the format's columns (CSV) or keys (JSONL), else it is another format (exit 2). What a trace's
first valid rows fix for all later rows, across chunks, is ``Established``: the block size of its hash_ids and
whether its datetimes state a zone offset. A row whose prompt + output exceeds ``workload.max_request_tokens`` is
skipped before any array is sized by it. ``trace.loaders.load_trace`` builds a ``Trace`` from the rows kept.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from sim.errors import QUOTE_LIMIT, TraceError, quote
from trace.csv_reader import CsvParserError, csv_chunks, read_header
from trace.formats import (
    REASON_NOTES,
    Chunk,
    TraceFormat,
    block_token_counts,
    hash_ids_mismatch,
    pick_block_tokens,
)
from trace.jsonl_reader import jsonl_chunks, jsonl_line, malformed_record
from trace.readers import RawChunk, first_line
from trace.sniff import other_format_hint
from trace.validation import CODE, SkipLedger, combine


def _require_columns(path: Path, fmt: TraceFormat, columns, header: str | None = None) -> None:
    """A CSV format's identifying columns must all be in the header (else it is another format), and no
    column it reads may be named twice (which one is meant cannot be told)."""
    missing = [c for c in fmt.signature if c not in columns]
    if missing:
        seen = f"; header: {quote(header)}" if header is not None else ""
        raise TraceError(f"{path}: not a trace in {fmt.name} format: missing column(s) {', '.join(missing)}{seen}"
                         + other_format_hint(path, fmt.name))
    columns = list(columns)
    twice = [c for c in (*fmt.signature, *fmt.optional) if columns.count(c) > 1]
    if twice:
        raise TraceError(f"{path}: the header names column {quote(twice[0])} {columns.count(twice[0])} times, so which "
                         "one to read cannot be told")
    named = [c for c in fmt.one_of if c in columns]
    if len(named) > 1:  # (the first was read and the others dropped without a word)
        raise TraceError(f"{path}: columns {' and '.join(map(quote, named))} both name the {fmt.name} session, so which "
                         "one to read cannot be told; keep one")


def _require_keys(path: Path, fmt: TraceFormat, chunk: RawChunk) -> None:
    """A JSONL format's keys must each appear in some record of the first chunk (else it is another format)."""
    if chunk.malformed is not None and chunk.malformed.all():
        with path.open("rb") as fh:
            sample = fh.readline(4 * QUOTE_LIMIT).decode("utf-8", "replace").strip()
        raise TraceError(f"{path}: not a trace in {fmt.name} format, JSON Lines: no line is a record; line 1 is "
                         f"{malformed_record(sample.encode())}: {quote(sample)}" + other_format_hint(path, fmt.name))
    missing = [k for k in fmt.signature if k not in (chunk.keys_seen or ())]
    if missing:
        raise TraceError(f"{path}: not a trace in {fmt.name} format: no record has key(s) {', '.join(missing)}"
                         + other_format_hint(path, fmt.name))


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
          max_tokens: int, seen: Established) -> tuple[list[Chunk], int]:
    """Validate chunks and keep valid rows (file order) until ``limit`` of them."""
    kept: list[Chunk] = []
    n_kept = rows_read = 0
    ahead: deque[tuple[RawChunk, tuple]] = deque()  # chunks read (and parsed) by the block size's look-ahead

    def look_ahead() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for raw in chunks:  # consumed here first, then validated in turn below
            parsed = _parse(path, fmt, raw)
            ahead.append((raw, parsed))
            chunk, _, col_reasons = parsed
            ok = combine(*col_reasons) == 0
            yield chunk.input_tokens[ok], chunk.hash_ids.lengths[ok]

    def in_order() -> Iterator[tuple[RawChunk, tuple | None]]:
        while True:
            if ahead:
                yield ahead.popleft()
                continue
            raw = next(chunks, None)
            if raw is None:
                return
            yield raw, None

    seen.later = look_ahead
    with contextlib.closing(chunks):  # a limit stops early: the reader's file is closed now, not at exit
        for raw, parsed in in_order():
            reason, col_reasons, cols, chunk = _validate(path, fmt, raw, max_tokens, seen, parsed)
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


# Chunks the block size's look-ahead reads past a first chunk of one-block records, at most (each up to
# readers.CHUNK_ROWS records and CHUNK_BYTES bytes): they are held, read once, until validated in turn.
LOOK_AHEAD_CHUNKS = 8


@dataclass(slots=True)
class Established:
    """What a trace's first valid rows fix for every row after them, across chunks. The block size of its hash_ids
    (``tokens``): inferred from its first chunk (``infer_block_tokens``), or, when every valid record there is one
    block long (which fits every size from its length up), from the chunks up to the first that holds a longer
    record, ``LOOK_AHEAD_CHUNKS`` more at most (``later``: the valid records' input lengths and hash id counts of the
    chunks after the first); then every record is checked against it. Whether its datetimes state a zone offset
    (``zoned``): the first valid row's kind, which every later row must share (``_zone_check``)."""

    tokens: int | None = None
    records: int = 0  # valid records it was inferred from
    later: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]] | None = None
    zoned: bool | None = None


def _block_check(path: Path, fmt: TraceFormat, chunk: Chunk, prior: np.ndarray, seen: Established) -> np.ndarray:
    """``hash_ids_length_mismatch`` where a record otherwise valid holds other than ceil(input_length /
    block size) hash ids."""
    ok = prior == 0
    lengths = chunk.hash_ids.lengths
    if seen.tokens is None:
        counts = block_token_counts(chunk.input_tokens[ok], lengths[ok])
        seen.records = int(ok.sum())
        if seen.later is not None and not (lengths[ok] > 1).any():
            with contextlib.closing(seen.later()) as more:
                for tokens, n in itertools.islice(more, LOOK_AHEAD_CHUNKS):
                    counts += block_token_counts(tokens, n)
                    seen.records += len(n)
                    if (n > 1).any():
                        break
        seen.tokens, ties = pick_block_tokens(counts, fmt.block_tokens)
        if len(ties) > 1:
            sizes = f"{ties[0]} or {ties[1]}{' or more' if len(ties) > 2 else ''}"
            raise TraceError(f"{path}: cannot tell the block size of the hash_ids: blocks of {sizes} tokens fit as "
                             f"many of the first {seen.records:,} valid records (each one block long)")
    return np.where(ok & hash_ids_mismatch(chunk.input_tokens, lengths, seen.tokens),
                    CODE["hash_ids_length_mismatch"], 0).astype(np.int8)


def _zone_check(chunk: Chunk, prior: np.ndarray, seen: Established) -> np.ndarray:
    """``time_zone_mismatch`` where a row otherwise valid states a zone offset and the first valid row does not, or
    the reverse: a time without an offset is read as UTC, which, beside times that state their zone, is a guess (a
    local time, a log's other clock) that moves it by hours against them."""
    ok = prior == 0
    if chunk.zoned is None or not ok.any():
        return np.zeros(len(prior), dtype=np.int8)
    if seen.zoned is None:
        seen.zoned = bool(chunk.zoned[np.argmax(ok)])
    return np.where(ok & (chunk.zoned != seen.zoned), CODE["time_zone_mismatch"], 0).astype(np.int8)


def _parse(path: Path, fmt: TraceFormat, raw: RawChunk):
    """A chunk's parsed values, the columns checked and each one's reasons (hash_ids' block count aside)."""
    if fmt.kind == "csv":
        if not isinstance(raw.frame, dict):
            _require_columns(path, fmt, raw.frame.columns)
    elif raw.first_row == 1:
        _require_keys(path, fmt, raw)
    chunk, cols, col_reasons = fmt.parse(raw.frame)
    if raw.malformed is not None and raw.malformed.any():  # charged that reason first
        cols = [None] + cols
        col_reasons = [np.where(raw.malformed, CODE["malformed_row"], 0).astype(np.int8)] + col_reasons
    return chunk, cols, col_reasons


def _validate(path: Path, fmt: TraceFormat, raw: RawChunk, max_tokens: int, seen: Established, parsed: tuple | None = None):
    """A chunk's first failing reason per row, each column's reasons, and its parsed values (``parsed``: ``_parse``'s,
    when the look-ahead has parsed it)."""
    chunk, cols, col_reasons = _parse(path, fmt, raw) if parsed is None else parsed
    if chunk.hash_ids is not None:
        cols.append("hash_ids")
        col_reasons.append(_block_check(path, fmt, chunk, combine(*col_reasons), seen))
    # Prompt + output above the bound: skipped before any array is sized by it.
    too_big = np.nan_to_num(chunk.input_tokens) + np.nan_to_num(chunk.output_tokens) > max_tokens
    cols.append(None)
    col_reasons.append(np.where(too_big, CODE["too_many_tokens"], 0).astype(np.int8))
    if chunk.zoned is not None:
        cols.append(next(c for c in cols if c is not None))  # (the timestamp's column, its parser's first)
        col_reasons.append(_zone_check(chunk, combine(*col_reasons), seen))
    return combine(*col_reasons), col_reasons, cols, chunk


def _malformed_jsonl(path: Path, line: int | None) -> str | None:
    """Why a JSONL line is a malformed record (``malformed_record``)."""
    raw = jsonl_line(path, line) if line is not None else None
    return None if raw is None else malformed_record(raw)


def collect(path: Path, fmt: TraceFormat, ledger: SkipLedger, limit: int | None, max_tokens: int,
             seen: Established) -> tuple[list[Chunk], int]:
    ledger.row_label = "row" if fmt.kind == "csv" else "record"
    if fmt.kind == "jsonl":
        ledger.explain = {"malformed_row": lambda line: _malformed_jsonl(path, line)}
        return _scan(path, fmt, ledger, limit, jsonl_chunks(path, fmt.signature, fmt.optional, fmt.id_lists), max_tokens,
                     seen)
    ledger.line_of_row = lambda row: csv_line_of_row(path, row)
    ledger.explain = {"time_zone_mismatch": lambda _: "its time states a zone offset and the first row's does not"
                      if not seen.zoned else "its time states no zone offset and the first row's does",
                      **{reason: lambda _, note=note: note for reason, note in REASON_NOTES.items()}}
    header = first_line(path)
    delimiter, names = read_header(header, fmt.signature, fmt.optional)
    _require_columns(path, fmt, names, header)
    try:
        try:
            return _scan(path, fmt, ledger, limit, csv_chunks(path, fmt.signature, fmt.optional, tolerant=False,
                                                              delimiter=delimiter), max_tokens, seen)
        except CsvParserError:
            pass
        ledger.counts.clear()  # rescan from the start, charging rows with too many fields in place
        try:
            return _scan(path, fmt, ledger, limit, csv_chunks(path, fmt.signature, fmt.optional, tolerant=True,
                                                              delimiter=delimiter), max_tokens, seen)
        except CsvParserError as exc:
            raise TraceError(f"{path}: malformed CSV: {quote(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (an invalid byte 0x{exc.object[exc.start]:02x} in the file)") from None
