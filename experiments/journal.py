"""The sweep journal: one JSON line per finished point, appended as each completes.

The first line identifies the sweep (a fingerprint of its mode, resolved base config,
options and point list); ``--resume`` refuses a journal of another sweep. A killed run
leaves whole lines and at most one torn last line, which is dropped (and cut off
before anything is appended after it). A point's last line wins, so a point that
failed and was re-run on resume counts once. Each record carries a checksum of its contents and the sweep's
fingerprint (``checksum``): a record edited by hand, or copied from another sweep's journal, is refused by its line,
as a damaged one is, rather than resumed as written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.errors import ConfigError, InputError, quote
from sim.report.output import append_line, atomic_write_text

if TYPE_CHECKING:
    from sim.config import Config

JOURNAL_KIND = "kvsim-sweep-journal"
LOG = logging.getLogger("kvsim.sweep")


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def inputs_fingerprint(configs: list[Config]) -> dict[str, str]:
    """The contents of every file the points read (``sim.config_fields.path_settings``: the trace, a learned model,
    a profile's folder, a network table ...), by path: a journal of points run on a trace since edited must not be
    resumed as if nothing had changed (the points would mix two traces in one report)."""
    from sim.config_fields import path_settings

    paths = sorted({value for config in configs for _, value in path_settings(config)})
    return {path: _contents_sha256(Path(path)) for path in paths}


def _contents_sha256(path: Path) -> str:
    """A file's sha256; a folder's over its files' relative names, sizes and modification times (a model's folder
    may hold gigabytes of weights kvsim never reads); "" for what cannot be read (the point that reads it says why)."""
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                stat = file.stat()
                digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            return digest.hexdigest()
        from trace.request import file_sha256

        return file_sha256(path)
    except OSError:
        return ""


def journal_path(report_json: str | None, report_csv: str | None, spec: Path, html: str | None = None) -> Path:
    """Beside the report (JSON, else CSV, else the HTML page; a device or a pipe is none: ``/dev/stdout`` has no
    folder to write beside): ``<report stem>.journal.jsonl``; without one, ``<spec stem>.journal.jsonl`` here."""
    from sim.report.output import is_device_or_pipe

    anchor = next((Path(p) for p in (report_json, report_csv, html) if p and not is_device_or_pipe(Path(p))), None)
    if anchor is not None:
        return anchor.with_name(anchor.stem + ".journal.jsonl")
    return Path(Path(spec).stem + ".journal.jsonl")


class Journal:
    """Finished points of one sweep, on disk."""

    def __init__(self, path: Path, sweep_fingerprint: str):
        self.path = Path(path)
        self.fingerprint = sweep_fingerprint

    def start(self, resume: bool, keys: Container[str] | None = None) -> dict[str, dict]:
        """Open for this sweep: the finished records by point key (``resume``), or a fresh journal. ``keys``: the
        sweep's point keys, where every record must name one (``_read``)."""
        # (os.path: False where the system cannot say, a name too long among them; the write below names it)
        if resume and os.path.isfile(self.path):
            return self._read(keys)
        if os.path.exists(self.path) and not _holds_a_journal(self.path):  # a user's file, the spec, a trace: never replaced
            raise ConfigError(f"{self.path} exists and is not a kvsim sweep journal, which this sweep writes there "
                              "(beside its report): move it, or name the report otherwise")
        if resume:  # (a report renamed since moves the journal: every point would run again, unsaid)
            LOG.warning(f"kvsim: note: --resume: no journal at {self.path}, so every point runs")
        try:  # (a loop of links there, or one to a folder that is not: the atomic writer's OSError)
            atomic_write_text(self.path, json.dumps({"journal": JOURNAL_KIND, "fingerprint": self.fingerprint}) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write journal {self.path}: {exc.strerror or exc}") from None
        return {}

    def _read(self, keys: Container[str] | None = None) -> dict[str, dict]:
        """The records by point key. The header's fingerprint covers the sweep's point keys, so a record naming no
        point (``keys``) was not written by this sweep: the journal was edited, or another sweep writing to the same
        report appended to it (its records of points named alike would be taken as this sweep's): refused as damage,
        as a record of the wrong shape is. It was ignored, unsaid."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read journal {self.path}: {exc.strerror or exc}") from None
        whole = raw[: raw.rfind(b"\n") + 1]
        try:
            lines = whole.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path} is not a kvsim sweep journal (not UTF-8 text); delete it or drop --resume") from None
        header = _json_line(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get("journal") != JOURNAL_KIND:
            raise ConfigError(f"{self.path} is not a kvsim sweep journal; delete it or drop --resume")
        if header.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"journal {self.path} was written by a different sweep (spec, config, options or a file "
                              f"it reads changed); delete it or drop --resume")
        if len(whole) != len(raw):  # a torn last line from a killed run: cut it before appending (only in this
            with self.path.open("r+b") as fh:  # sweep's own journal: another file is refused above, untouched)
                fh.truncate(len(whole))
        records: dict[str, dict] = {}
        for number, line in enumerate(lines[1:], start=2):
            record = _json_line(line)
            if not _is_record(record):
                raise ConfigError(f"journal {self.path} line {number:,} is not a point's record (damaged); delete the "
                                  "journal or drop --resume")
            if keys is not None and record["key"] not in keys:
                raise ConfigError(f"journal {self.path} line {number:,} is the record of a point this sweep does not "
                                  f"have ({quote(record['key'])}): written by another sweep, or edited; delete the "
                                  "journal or drop --resume")
            given = record.pop("checksum", None)
            if given != self._checksum(record):  # (checked past the shape, so that damage is named as damage)
                raise ConfigError(f"journal {self.path} line {number:,} is not the record this sweep wrote "
                                  f"({'no checksum' if given is None else 'its checksum differs'}: edited, another "
                                  "sweep's or an older kvsim's); delete the journal or drop --resume")
            records[record["key"]] = record
        return records

    def append(self, record: dict) -> None:
        """Appends ``record`` as one line, with its checksum (``_checksum``) as its last field."""
        value = json.loads(json.dumps(record, allow_nan=False))  # (as it reads back: tuples lists, keys strings)
        line = json.dumps({**value, "checksum": self._checksum(value)}, separators=(",", ":"), allow_nan=False)
        append_line(self.path, line)

    def _checksum(self, value: dict) -> str:
        """A record's sha256 over this sweep's fingerprint and its JSON (keys sorted: as written and as read back, a
        float's shortest repr round-trips): every field the writer wrote, the metrics of each run among them (a
        hit ratio edited to "x" was resumed, and reported, as written; an index of 99 was ignored)."""
        blob = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(f"{self.fingerprint}\n{blob}".encode()).hexdigest()


def _holds_a_journal(path: Path) -> bool:
    """Whether ``path``'s first line is a kvsim sweep journal's header (a journal of any sweep). Only a regular file
    is opened: a FIFO there (no journal) blocked the sweep for ever, waiting for a writer."""
    if not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            first = fh.readline(4096)
    except OSError:
        return False
    try:
        header = _json_line(first.decode("utf-8"))
    except UnicodeDecodeError:
        return False
    return isinstance(header, dict) and header.get("journal") == JOURNAL_KIND


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Journal.append writes with allow_nan=False: a NaN is damage


def _json_line(line: str) -> object:
    """One journal line's JSON value, or None when it is not JSON (NaN and Infinity included, which the journal
    never writes and the report's writer refuses)."""
    try:
        return json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _is_record(record: object) -> bool:
    """Whether a journal line has the shape of a point's record (experiments.runner): what the sweep and the
    planner read of it (the trace's provenance a mapping or null, each run's overrides a mapping)."""
    if not isinstance(record, dict) or not isinstance(record.get("key"), str) or "trace" not in record:
        return False
    error, runs = record.get("error", False), record.get("runs")
    # an error is a non-empty message (a point with error "" and no runs vanished from the report, not counted failed)
    if not (error is None or (isinstance(error, str) and error)) or not isinstance(runs, list):
        return False
    if not (record["trace"] is None or isinstance(record["trace"], dict)):
        return False
    left = record.get("left_unread", [])  # (a number here was a TypeError when the report listed the keys left unread)
    if not (isinstance(left, list) and all(isinstance(key, str) for key in left)):
        return False
    return error is not None or (bool(runs) and all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                                    and isinstance(r.get("metrics"), dict)
                                                    and isinstance(r.get("overrides", {}), dict)
                                                    and _is_intervals(r.get("metrics_ci95", {})) for r in runs))


def _is_intervals(ci: object) -> bool:
    """Whether a run's ``metrics_ci95`` has its shape (``experiments.confidence``: dotted metric -> [low, high]), as
    the HTML page reads it."""
    return isinstance(ci, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in ci.values())
