"""Atomic file writes (temp file in the same folder + rename) and atomic line appends.

A reader never sees a half-written report: the new content is written to a temporary
file beside the target and renamed over it (``os.replace`` is atomic on POSIX and
Windows). Journal lines are appended with one ``write`` on an ``O_APPEND`` descriptor
and flushed to disk, so a killed process leaves whole lines plus at most one torn
tail, which the reader drops.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sim.errors import InputError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; exit-2 error naming the path when it cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: str | Path, line: str) -> None:
    """Append one line (no newline inside) with a single write, flushed to disk."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"cannot append to {path}: {exc.strerror or exc}") from None
