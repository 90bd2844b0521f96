"""Output files: checked writable before a run starts, written atomically when it ends.

``atomic_write`` is the one way kvsim writes a file (reports, CSVs, per-request CSVs, plots, HTML):
the content goes to a temporary file in the target's directory, is flushed and fsynced, and
then renamed over the target (``os.replace``, atomic on POSIX). A run killed at any moment
leaves the previous file or none, never a truncated one, and no temporary file behind.
``append_line`` is the one exception, for journals that grow a line at a time (sweeps): each
line is one ``write`` on an ``O_APPEND`` descriptor, fsynced, so a killed process leaves whole
lines plus at most one torn tail, which the reader drops.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from sim.command import raise_if_stopped
from sim.errors import InputError, ReaderGone, quote

TEMP_PREFIX = ".kvsim-"
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_device_or_pipe(path: Path) -> bool:
    """An existing target that is not a regular file or a directory: a device (``/dev/null``) or a FIFO."""
    try:
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        return False


def _write_target(path: Path) -> tuple[Path, bool]:
    """Where a write to ``path`` lands, and whether in place: the path itself when it reaches a device,
    FIFO or pipe (through links too: ``/dev/stdout`` is a link to ``/proc/self/fd/1``, whose target has
    no name when it is a pipe), else a symbolic link's target (replaced, the link stays), else the path."""
    if is_device_or_pipe(path):
        return path, True
    if not path.is_symlink():
        return path, False
    try:
        return path.resolve(), False
    except RuntimeError:  # a loop of links: pathlib (Python < 3.13) raises RuntimeError, not the OSError callers name
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None


def _open_mode(binary: bool) -> tuple[str, dict]:
    """``open``'s mode and text options for an output (text: UTF-8, newlines as written)."""
    return ("wb", {}) if binary else ("w", {"newline": "", "encoding": "utf-8"})


@contextlib.contextmanager
def _write_in_place(path: Path, binary: bool) -> Iterator[IO]:
    """A device or FIFO is written as it is: renaming a file over it would replace the device node
    itself (as root: ``--report-json /dev/null`` turned /dev/null into a regular file)."""
    try:
        mode, options = _open_mode(binary)
        fh = open(path, mode, **options)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with fh:
            yield fh
    except BrokenPipeError:  # a pipe or FIFO whose reader left: not bad input (as a closed standard output)
        raise ReaderGone(str(path)) from None
    except OSError as exc:  # a full device (/dev/full)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``. A symbolic
    link's target is what is replaced (the link stays); a device or FIFO is written in place."""
    path, in_place = _write_target(Path(path))
    if in_place:
        with _write_in_place(path, binary) as fh:
            yield fh
        return
    try:
        # the folder a link on the way points to (mkdir of the link itself, a link to a folder not yet made, raised
        # 'File exists' once the run was done)
        Path(os.path.realpath(path.parent)).mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; an output gets the usual mode
        mode, options = _open_mode(binary)
        with os.fdopen(fd, mode, **options) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        raise_if_stopped()  # a Ctrl-C a library swallowed: the previous file stays
        os.replace(temp, path)
    except BaseException as exc:  # also KeyboardInterrupt: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` atomically (``atomic_write``)."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


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


def _folder_made(folder: Path) -> Path:
    """Where making ``folder`` lands, as ``atomic_write`` makes it: a link on the way to a folder not yet made
    (o/plots -> elsewhere) is followed, so its nearest existing folder is the target's, not the link's; a loop of
    links raises OSError (ELOOP). Both were found by the write once the run was done ('File exists'). With no link
    on the way, ``folder`` as given (the caller's message names it as the user wrote it)."""
    for step in (folder, *folder.parents):
        try:
            os.stat(step)
            break
        except (FileNotFoundError, NotADirectoryError):  # (a file on the way: the caller names it; ELOOP, EACCES:
            continue  # raised, for the caller to name)
    real = Path(os.path.realpath(folder))
    return folder if real == Path(os.path.abspath(folder)) else real


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_directory(directory: Path, flag: str, target: Path) -> None:
    """Create and remove a file in ``directory``: the only test of writability that also holds for
    root, read-only mounts and ACLs."""
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{flag} {quote(str(target))}: cannot write in {directory}: {exc.strerror or exc}") from None


def check_distinct(inputs: list[tuple[str, str | Path | None]], outputs: list[tuple[str, Path]]) -> None:
    """No output is a file read or another output (``inputs``, ``outputs``: what names each, its path; an input
    of None is not given): ``--report-json TRACE`` would overwrite the trace. Nor is an output inside a folder read
    (a profile bundle, a Hugging Face model folder): ``--report-csv PROFILE/mlp.csv`` overwrote the measured table.
    One line naming both."""
    seen: dict[Path, str] = {_resolved(p): name for name, p in inputs if p}
    folders = [(key, name) for key, name in seen.items() if _is_dir(key)]
    for flag, path in outputs:
        key = _resolved(path)
        if key in seen:
            raise InputError(f"{flag} {quote(str(path))} is also the path of {seen[key]}")
        for folder, name in folders:
            if key.is_relative_to(folder):
                raise InputError(f"{flag} {quote(str(path))} is inside {quote(str(folder))}, the folder of {name}, "
                                 "whose files the run reads: write it elsewhere")
        seen[key] = flag


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; not where the system cannot say (a name too long: ENAMETOOLONG, which pathlib's
    is_dir raises; the input's reader names it)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _resolved(path: str | Path) -> Path:
    """``path`` resolved, or made absolute where it cannot be: pathlib raises RuntimeError on a loop of links (an
    input's reader names it: "Too many levels of symbolic links"), which is no file an output could be."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def check_plot_folder(plot_dir: Path, inputs: list[tuple[str, str | Path | None]],
                      outputs: list[tuple[str, Path]]) -> None:
    """The plot folder's .png files are kvsim's to write (their names follow the mode and the trace): a file read
    or another output there named ``*.png`` could be overwritten by a plot. One line naming it."""
    folder = _resolved(plot_dir)
    for name, path in [*inputs, *outputs]:
        if path and Path(path).suffix.lower() == ".png" and _resolved(path).parent == folder:
            raise InputError(f"{name} {quote(str(path))} is a .png file in the plot folder {quote(str(plot_dir))}, "
                             "where kvsim writes its plots: give --plot-dir another folder, or --no-plot")


def check_names_a_file(path: str | Path, flag: str) -> None:
    """A file output written as a folder (``out/``, ``out/.``) is refused: ``Path`` drops the trailing ``/``, so
    ``--html out/`` wrote a file named ``out`` (and ``--requests-csv out/`` with two policies ``out.lru.csv``...)."""
    if os.path.basename(str(path).replace(os.sep, "/")) in ("", ".", ".."):
        raise InputError(f"{flag} {quote(str(path))}: names a folder, not a file; give the file's name in it")


def check_writable(path: str | Path, flag: str, directory: bool = False) -> Path:
    """Fail now (exit 2, naming ``flag``) if ``path`` could not be written when the run ends.

    A file target must not be a directory; a directory target must not be a file; missing
    parent directories must be creatable (the nearest existing one must be a writable directory).
    A symbolic link is judged by its target, a device or FIFO by its own permission (both as
    ``atomic_write`` writes them).
    """
    if not str(path).strip():
        raise InputError(f"{flag}: empty path")
    if str(path) == "-":  # a file named '-' is never what was meant
        raise InputError(f"{flag} -: give a file path (standard output: {flag} /dev/stdout, with --quiet)")
    if not directory:
        check_names_a_file(path, flag)
    path = Path(path)
    try:  # exists() raises what it cannot answer: a name too long, a loop of links, no permission
        target, in_place = _write_target(path)
        if not directory and in_place:
            if not os.access(target, os.W_OK):
                raise InputError(f"{flag} {quote(str(path))}: not writable")
            return path
        if target.exists():
            if directory and not target.is_dir():
                raise InputError(f"{flag} {quote(str(path))}: exists and is not a directory")
            if not directory and target.is_dir():
                raise InputError(f"{flag} {quote(str(path))}: is a directory, not a file")
        base = _nearest_existing(_folder_made(target if directory else target.parent))
        if not base.is_dir():
            raise InputError(f"{flag} {quote(str(path))}: {base} is not a directory")
    except OSError as exc:
        raise InputError(f"{flag} {quote(str(path))}: {exc.strerror or exc}") from None
    _probe_directory(base, flag, path)
    return path
