"""The JSON lines reader: pyarrow's JSON reader where it decides exactly, orjson line by line (the reference,
RFC 8259 strict) where not (``trace.readers`` for the shared parts)."""

from __future__ import annotations

import mmap
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from trace.arrow import numpy_view
from trace.readers import BOM_BYTES, IdLists, RawChunk, count_lines, first_line, line_chunks
from trace.validation import FLOAT64_EXACT_INTEGERS

JSON_BLOCK_BYTES = 4 * 1024 * 1024  # pyarrow's JSON reader parses blocks of this size in parallel

def json_object(raw: bytes) -> dict | None:
    """One JSONL line as an object, or None when it is not exactly one JSON object.

    orjson implements RFC 8259 strictly: trailing commas, NaN/Infinity, comments, single quotes
    and invalid UTF-8 are errors (pandas' reader accepts several of them)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "infinity" not in str(error):
            return None
        obj = _beyond_double(raw)  # a number past a double's range (1e400): valid JSON, read as the float it gives
    return obj if isinstance(obj, dict) else None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # (NaN, Infinity: RFC 8259 has no such literal, and orjson refuses them)


def _number(text: str) -> int | float:
    """A JSON integer as orjson reads it: within 64 bits an int, beyond them the float it rounds to (inf past 1e308)."""
    value = int(text)
    return value if -2**63 <= value < 2**64 else float(text)


def _beyond_double(raw: bytes) -> Any:
    """A line orjson refuses only for a number too large for a double ("1e400", which JSON's grammar allows and
    RFC 8259 leaves to the parser's limits): read as the infinity Python's parser gives it, so the record is charged
    ``infinite_value`` there, as every other loader charges such a number, not ``malformed_row``."""
    import json

    try:
        obj = json.loads(raw, parse_constant=_refuse_constant, parse_int=_number)
        orjson.dumps(obj)  # (what else orjson refuses and Python's parser reads: a lone surrogate, "\ud800")
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        return None
    return obj


def repeated_key(raw: bytes | str, keys: tuple[str, ...] | None = None) -> str | None:
    """A key (of ``keys``, or any) that a JSONL line's object names twice at its top level, else None.

    orjson keeps a repeated key's last value and says nothing, so which value the writer meant cannot be told; the
    standard library's parser hands over every pair. Callers ask only where a key's quoted name occurs twice or an
    escape could spell one: the check costs a second parse."""
    import json

    objects: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict:
        objects.append(pairs)  # inner objects first: the line's own object is the last
        return {}

    try:
        json.loads(raw, object_pairs_hook=keep)
    except (ValueError, RecursionError):  # (nested deeper than the interpreter's recursion limit: orjson read it)
        return None
    seen: set[str] = set()
    for key, _ in objects[-1] if objects else ():
        if key in seen and (keys is None or key in keys):
            return key
        seen.add(key)
    return None


def _names_a_key_twice(raw: bytes, needles: list[bytes], keys: tuple[str, ...]) -> bool:
    """Whether a line's object names one of ``keys`` (quoted: ``needles``) twice (``repeated_key``)."""
    return (b"\\" in raw or any(raw.count(needle) > 1 for needle in needles)) and repeated_key(raw, keys) is not None


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


def malformed_record(raw: bytes) -> str:
    """Why a JSONL line is a malformed record: a key it names twice, or what it is instead of one JSON object."""
    key = repeated_key(raw) if json_object(raw) is not None else None
    if key is not None:
        return f"a JSON object naming {key!r} twice (which value is meant cannot be told)"
    return f"{json_line_problem(raw)}, {JSONL_EXPECTED}"


def jsonl_line(path: Path, line: int) -> bytes | None:
    """Line ``line`` (1-based) of a file, to word an error (it may rescan the file); None past its end."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == line:
                return raw.removeprefix(BOM_BYTES) if number == 1 else raw
    return None


def _slow_jsonl(data: bytes, line: int, first_row: int, keys: tuple[str, ...]) -> RawChunk:
    """A chunk line by line through orjson, the reference reader. Blank lines are not records (but
    keep the line numbers right); a line that is not one JSON object, or names a key read twice, is a malformed
    row in place."""
    import pandas as pd

    objects: list[dict | None] = []
    lines: list[int] = []
    needles = [f'"{key}"'.encode() for key in keys]
    for i, raw in enumerate(data.split(b"\n")):
        if raw.strip():
            obj = json_object(raw)
            objects.append(None if obj is not None and _names_a_key_twice(raw, needles, keys) else obj)
            lines.append(line + i)
    malformed = np.fromiter((o is None for o in objects), dtype=bool, count=len(objects))
    present = [o if o is not None else {} for o in objects]
    columns = {key: [_not_text(o.get(key)) for o in present] for key in keys}
    frame = pd.DataFrame(columns)
    for key in keys:  # (pandas takes integers among a null, a missing key or a malformed line as float64: epoch
        # nanoseconds rounded to 256 ns; as Python objects trace.validation.exact_integers keeps them)
        if frame[key].dtype == np.float64 and (np.abs(frame[key].to_numpy()) >= FLOAT64_EXACT_INTEGERS).any() and \
                any(type(v) is int and abs(v) >= FLOAT64_EXACT_INTEGERS for v in columns[key]):
            frame[key] = pd.Series(columns[key], dtype=object)
    keys_seen = frozenset(key for key in keys if any(key in o for o in present))
    return RawChunk(frame, first_row, len(objects), malformed, np.asarray(lines, dtype=np.int64), keys_seen)


def _not_text(value):
    """Every key a JSONL format reads holds numbers (or lists of them): a JSON string, even "512", is not
    one, so it is kept as its JSON spelling (with its quotes), which no number parser reads."""
    return orjson.dumps(value).decode() if isinstance(value, str) else value


HASH_ID_KEYS = ("hash_ids",)  # id lists that are 64-bit hash labels, signed or unsigned (trace.formats' hash ids)


def _fast_jsonl(data: bytes, line: int, first_row: int, keys: tuple[str, ...], id_lists: tuple[str, ...]) -> RawChunk | None:
    """A chunk through pyarrow's JSON reader, or None where the result could differ from orjson's
    line by line: one ``{`` a line (no blank line, no nested object) and one row a line; ASCII
    text without NaN/Infinity (which pyarrow accepts and RFC 8259 does not) or escapes (where
    parsers differ most; trace files have none); every key present and not null, its name no more
    often than lines (a repeated key is a malformed row); no negative zero (orjson reads ``-0`` as the integer 0)."""
    body = data.rstrip(b" \t\r\n")
    lead = body.lstrip(b" \t\r\n")
    line += body[:len(body) - len(lead)].count(b"\n")  # blank lines before the first record
    body = lead
    n = count_lines(body)
    if (not n or not body.isascii() or b"\\" in body or b"NaN" in body or b"Inf" in body
            or body.count(b"{") != n or any(body.count(f'"{key}"'.encode()) > n for key in keys)):
        return None  # (a key's name more often than lines: maybe a repeated key, which the slow path tells)
    table = None
    # unsigned 64-bit hashes read as their bits in int64, as the reference keeps them; token ids past int64 are out of
    # range there, which the fast path leaves to it
    unsigned = (pa.uint64(),) if all(k in HASH_ID_KEYS for k in id_lists if k in keys) else ()
    for ids in (pa.int64(), *unsigned):
        schema = pa.schema([(k, pa.list_(ids) if k in id_lists else pa.float64()) for k in keys])
        try:
            table = pa_json.read_json(pa.BufferReader(body), read_options=pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES),
                                      parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                         unexpected_field_behavior="ignore"))
            break
        except pa.ArrowException:  # not JSON, a value of another type, an id beyond 64 bits, ...
            continue
    if table is None:
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
            values = numpy_view(column.values)[offsets[0]:offsets[-1]].view(np.int64)
            frame[key] = IdLists(values, offsets - offsets[0])
        else:
            values = numpy_view(column)
            if (np.signbit(values) & (values == 0)).any():
                return None
            if len(values) and np.abs(values).max() >= FLOAT64_EXACT_INTEGERS:  # read as float64, integers from 2^53
                return None  # are rounded (epoch ns: to 256 ns); orjson keeps them (trace.validation.exact_integers)
            frame[key] = values
    lines = np.arange(line, line + n, dtype=np.int64)  # one record a line: no blank line inside
    return RawChunk(frame, first_row, n, lines=lines, keys_seen=frozenset(keys))


def some_record_has(path: Path, key: str) -> bool:
    """Whether any record of a JSONL file has ``key`` (``first_record_with``)."""
    with _mapped(path) as data:
        return data is not None and _first_offset_with(data, key) is not None


def first_record_with(path: Path, key: str) -> int | None:
    """The line (1-based) of the first record of a JSONL file that has ``key``; None when none has."""
    with _mapped(path) as data:
        at = None if data is None else _first_offset_with(data, key)
        return None if at is None else _newlines_before(data, at) + 1


def _newlines_before(data: mmap.mmap, at: int, chunk: int = 8 << 20) -> int:
    """Line breaks in ``data[:at]``, counted a chunk at a time (a match near the end of a file of gigabytes would
    otherwise copy all of it)."""
    return sum(data[i:min(i + chunk, at)].count(b"\n") for i in range(0, at, chunk))


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | None]:
    """A file's bytes, memory-mapped read-only; None for an empty file (which cannot be mapped)."""
    with path.open("rb") as fh:
        if not os.fstat(fh.fileno()).st_size:
            yield None
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def _first_offset_with(data: mmap.mmap, key: str) -> int | None:
    """Where the first line whose record has ``key`` starts: a search of the bytes in which only the lines holding
    the key's quoted name, or an escape (which could spell it), are parsed."""
    found: int | None = None
    for needle in (f'"{key}"'.encode(), b"\\"):
        limit = len(data) if found is None else found
        at = data.find(needle, 0, limit)
        while at >= 0:
            start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
            end = len(data) if end < 0 else end
            if key in (json_object(data[start:end].removeprefix(BOM_BYTES)) or {}):
                found = start
                break
            at = data.find(needle, end, limit)
    return found


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
        for data in line_chunks(fh):
            raw = _fast_jsonl(data, line, first_row, keys, id_lists) or _slow_jsonl(data, line, first_row, keys)
            line += data.count(b"\n")
            if raw.rows:
                yield raw
                first_row += raw.rows
