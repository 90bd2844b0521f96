"""Which format a trace file is, from its header line or first record, and the checks that need that before any
load: a CSV header no row follows, a time unit the format's own timestamps fix, a file given as the wrong format."""

from __future__ import annotations

from pathlib import Path

from sim.errors import ConfigError, TraceError, quote
from trace.csv_reader import DELIMITERS, csv_fields, header_names, read_header
from trace.formats import FORMATS
from trace.jsonl_reader import JSONL_EXPECTED, json_line_problem, json_object
from trace.readers import BOM_BYTES, first_line
from trace.validation import no_usable_requests


def sniff_format(path: Path) -> str:
    """Recognise a trace's format from its header line (CSV) or first object's keys (JSONL)."""
    first = first_line(path)
    if first.startswith("{"):
        obj = json_object(first.encode())
        if obj is None:
            raise TraceError(f"{path}: line 1 is {json_line_problem(first)}, so the format cannot be detected "
                             f"({JSONL_EXPECTED}): {quote(first)}")
        keys = set(obj)
        for fmt in (f for f in FORMATS.values() if f.kind == "jsonl"):
            if set(fmt.signature) <= keys or any(key in keys for key, _ in fmt.refused):
                return fmt.name  # (a record it refuses is its own: the loader names the record and why)
    else:
        for fmt in (f for f in FORMATS.values() if f.kind == "csv"):
            if set(fmt.signature) <= set(read_header(first, fmt.signature, fmt.optional)[1]):
                return fmt.name
    if first.startswith("["):  # no CSV header starts so: JSON, an array (of records) rather than JSON Lines
        raise TraceError(f"{path}: line 1 is {json_line_problem(first)}, not a CSV header; a JSON trace must be "
                         f"JSON Lines, one object per line: {quote(first)}")
    raise TraceError(f"{path}: unrecognised trace header {quote(first)}{_nearest_format(first)}; pass "
                     f"--workload-format ({', '.join(FORMATS)}; their columns are listed in README.md)")


def check_rows_after_header(path: Path) -> None:
    """A CSV trace whose header no row follows (blank lines aside) holds no request: refused as its load refuses it
    (``no valid requests in PATH: 0 rows read``), without loading it, so a sweep's or a plan's point finds it before
    the first point runs (``experiments.execute.check_point``). A JSON Lines trace's first line is a record; a header
    with a quoted line end inside it is left to the load. Reads up to the first row (a header-only file whole)."""
    if first_line(path).startswith("{"):
        return
    state = "before"  # -> "header" (its first non-blank byte seen) -> "after" (its line ended)
    try:
        with path.open("rb") as fh:
            chunk = fh.read(1 << 20).removeprefix(BOM_BYTES)
            while chunk:
                if state == "before":
                    chunk = chunk.lstrip()
                    state = "header" if chunk else state
                if state == "header":  # (a lone carriage return ends a line too, as first_line reads one)
                    ends = [at for at in (chunk.find(b"\n"), chunk.find(b"\r")) if at >= 0]
                    if ends:
                        chunk, state = chunk[min(ends):], "after"
                if state == "after" and chunk.strip():
                    return
                chunk = fh.read(1 << 20)
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    raise no_usable_requests(str(path), 0, {})


def _nearest_format(first: str) -> str:
    """'; nearest: azure (missing ContextTokens)' for the formats of the file's kind whose required columns
    (keys) the header names the most of, at least one: a misspelt column is then named, not only the formats."""
    if first.startswith("{"):
        keys = set(json_object(first.encode()) or {})
        named = {f.name: keys for f in FORMATS.values() if f.kind == "jsonl"}
    else:
        named = {f.name: max((set(header_names(csv_fields(first, d), (*f.signature, *f.optional))) for d in DELIMITERS),
                             key=lambda names, f=f: len(names & set(f.signature)))
                 for f in FORMATS.values() if f.kind == "csv"}
    shared = {name: len(set(FORMATS[name].signature) & names) for name, names in named.items()}
    best = max(shared.values(), default=0)
    if best == 0:
        return ""
    near = [f"{name} (missing {', '.join(c for c in FORMATS[name].signature if c not in named[name])})"
            for name, count in shared.items() if count == best]
    return "; nearest: " + " or ".join(near)


def other_format_hint(path: Path, given: str) -> str:
    """'; the file looks like mooncake: ...' when a file refused as format ``given`` (it lacks that format's columns
    or keys) has another format's header or first record (``sniff_format``); else ''."""
    try:
        found = sniff_format(path)
    except (TraceError, OSError, UnicodeDecodeError):
        return ""
    if found == given:
        return ""
    # (not "--workload-format": the format given may be a config file's workload.format)
    return f"; the file looks like {found}: give format auto (detects it) or {found}"


def carries_hash_ids(path: Path, given: str) -> bool | None:
    """Whether a trace's format has block ids of its own size (hash_ids, Mooncake's): the ones
    ``workload.block_mismatch`` reconciles with the cache's blocks. None when the file cannot tell."""
    name = trace_format_name(path, given)
    return None if name is None else "hash_ids" in FORMATS[name].id_lists


def trace_format_name(path: Path, given: str) -> str | None:
    """The format a trace is read in (``given``, or sniffed when ``auto``); None when the file cannot tell (missing,
    unreadable, unrecognised: the loader says why)."""
    if given != "auto":
        return given
    try:
        return sniff_format(path)
    except (TraceError, OSError):
        return None


def check_time_unit(trace: str | None, given_format: str, time_unit: str | None,
                    said: str = "workload.time_unit") -> None:
    """Refuse, before any work, a ``time_unit`` (given as ``said``: a flag, a ``--set``, a sweep's key) for a trace
    whose timestamps fix their own unit: datetimes, or a key that names its unit (``arrival_time_ns``: ms read 29 s
    as 337 days). A file that cannot tell its format is left to the loader."""
    if trace is None or time_unit is None:
        return
    name = trace_format_name(Path(trace), given_format)
    fmt = None if name is None else FORMATS[name]
    if fmt is None or fmt.time_unit == time_unit or (fmt.time_unit is not None and fmt.time_key is None):
        return
    why = "datetimes, which fix their own unit" if fmt.time_unit is None else \
        f"'{fmt.time_key}', in {fmt.time_unit} by their name"
    value = f"workload.time_unit={time_unit}"
    named = value if said == "workload.time_unit" else f"--set {value}" if said.startswith("--set ") \
        else f"{said} ({value})"
    raise ConfigError(f"{named}: {trace}: {name} timestamps are {why}; drop it")
