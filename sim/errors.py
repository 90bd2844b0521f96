"""Errors that map to the Contract's exit statuses, and the one way messages quote user input."""

from __future__ import annotations

import atexit
import datetime
import os
import select
import signal
import sys
import threading
import traceback
from typing import Callable, NoReturn

QUOTE_LIMIT = 100  # characters of user input a message may echo (Contract: at most ~100)


class InputError(Exception):
    """Bad usage or bad input: a file, row or key the user can fix. Exit status 2."""


class ConfigError(InputError):
    """A config key, value or overlay is invalid; the message names the dotted path."""


class UnreadSetting(ConfigError):
    """A setting the loaded workload leaves unread (the run would be the same with ``neutral``), found as the run
    loads it. A lone run refuses it; a sweep's point runs with ``neutral`` instead once another point is known to read
    it, and the sweep refuses one no point reads (``experiments.sweep.run_reading_points``), as a key some points read
    and others do not is kept before the points run (``experiments.execute.refuse_unread``); a plan's candidate runs
    with ``neutral`` (``experiments.runner.run_task``)."""

    def __init__(self, message: str, key: str, neutral: object):
        super().__init__(message)
        self.key, self.neutral = key, neutral


class TraceError(InputError):
    """A trace file cannot be read or a row is invalid in strict mode; names file and row."""


class ReaderGone(Exception):
    """The reader of an output written in place (``--report-json /dev/stdout | head -c 100``, a FIFO) went away
    mid-write: not bad input, but the end of a process that SIGPIPE ended (status 141, no message)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``, ``timeout``): an interruption like Ctrl-C, so every path
    that cleans up after one (atomic writes, a sweep's worker pool) cleans up after it; exit status 143."""


def _terminate(signum: int, frame: object) -> None:
    # the command is stopping: a second SIGTERM (coreutils ``timeout`` signals the command, then its process group)
    # must not interrupt the stopping itself (``command_status`` puts the previous handler back when it returns)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of user input for an error message, cut to ``limit`` characters.

    Every message that echoes input (a header line, a value, a record) goes through here,
    so a 200 MB line or a binary blob never floods the terminal.
    """
    if isinstance(value, (str, bytes, bytearray)):
        size, unit = len(value), "characters" if isinstance(value, str) else "bytes"
        text = repr(value[: limit + 1])  # never repr the whole of a huge input
    elif isinstance(value, datetime.date):  # only YAML makes one: an unquoted 2024-01-01 (not datetime.date(2024, ...))
        return yaml_date(value)
    else:
        text = repr(value)
        size, unit = len(text), "characters"
    inside = date_inside(value)  # ([2024-01-01]: the list's repr shows the text, this says what YAML made of it)
    said = ""
    if inside is not None:
        written = _written(inside)
        said = f" (YAML read {written} as a date; quote it where text is meant: '{written}')"
    if len(text) <= limit:
        return text + said
    return f"{text[:limit]}... ({size:,} {unit}){said}"


def date_inside(value: object, depth: int = 0) -> datetime.date | None:
    """The first date in a list or mapping YAML read (a few levels deep), or None."""
    if isinstance(value, datetime.date):
        return value
    if depth > 4 or not isinstance(value, (list, tuple, dict)):
        return None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    return next((found for item in items[:1000] if (found := date_inside(item, depth + 1)) is not None), None)


# YAML 1.1 (PyYAML) reads an unquoted yes/no/on/off (any case) as a boolean, as it does true/false
YAML_BOOLEAN_WORDS = "yes/no/on/off"


def quote_yaml(value: object) -> str:
    """``quote(value)``, where a boolean says that YAML made it one. Where a word is meant (``cache.admission: no``, a
    sweep axis ``[none, no]``, a GPU spec's ``link.kind: yes``), YAML 1.1 has already turned it into False and the
    spelling is gone (yes, Yes, on and true all read True), so the message explains rather than guessing the word. (A
    date YAML read from unquoted text is explained by ``quote`` itself: ``yaml_date``.)"""
    if isinstance(value, bool):
        return (f"{str(value).lower()}, a boolean (YAML reads an unquoted {YAML_BOOLEAN_WORDS} or true/false as one; "
                f"quote it where a word is meant: '{'yes' if value else 'no'}')")
    return quote(value)


def _written(value: datetime.date) -> str:
    """A date or timestamp as YAML read it from unquoted text: the text itself (``sim.config_yaml.WrittenDate`` keeps
    it), else its ISO form; cut to ``QUOTE_LIMIT``."""
    written = getattr(value, "written", None) or (str(value) if isinstance(value, datetime.datetime)
                                                  else value.isoformat())
    return written[:QUOTE_LIMIT]


def yaml_date(value: datetime.date) -> str:
    """A date or timestamp YAML read from unquoted text, quoted as it was written and said to be YAML's reading,
    with the fix (not Python's ``datetime.date(2024, 1, 1)``)."""
    written = _written(value)
    return f"{written}, a date (YAML reads an unquoted date or timestamp as one; quote it where text is meant: '{written}')"


def command_status(program: str, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and map how it ends to the Contract's exit status: its own status,
    2 for bad input (one line naming what to fix), 130 for Ctrl-C, 143 for SIGTERM, 1 for an internal error
    (the only case that prints a traceback)."""
    previous, stdout = None, sys.stdout
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
        if stdout is not None and not isinstance(stdout, _WatchedStdout):
            sys.stdout = _WatchedStdout(stdout)
    try:
        return _status(program, body)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            sys.stdout = stdout


def end_process(status: int | None) -> NoReturn:
    """End a command's process with ``status`` (None: 0, as ``sys.exit``) once its work is done: ``atexit`` handlers
    run (a Ray sweep's shutdown), standard output and error are flushed, then the process exits at once.

    The interpreter's own teardown is skipped on purpose. It runs native libraries' static destructors, and
    pyarrow's thread pools there now and then abort a run that has written every output (SIGABRT, "terminate
    called without an active exception": apache/arrow#34314; here about one trace-reading process in 200 on a busy
    machine); and it frees every object left (numba's type records: ~70 ms of a short run)."""
    code = 0 if status is None else status
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # under a profiler or debugger (python -m cProfile, pdb), which reports after the script ends
    atexit._run_exitfuncs()  # what the interpreter's teardown would run first; it reports a handler's error itself
    stdout = sys.stdout
    if stdout is not None and not getattr(stdout, "closed", False):  # ``>&-`` or closed: nothing to flush, as Python
        try:
            stdout.flush()
        except BrokenPipeError:  # the reader went away before the last buffered line: as in command_status
            code = code or 128 + signal.SIGPIPE
        except (OSError, ValueError, AttributeError):  # the status Python itself gives a failed last flush
            code = code or 120
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(code)


def _say(text: str) -> None:
    """One line on standard error; a closed or broken stderr (``2>&-``, a reader gone) must not turn the
    status the line explains into an internal error."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # EBADF, EPIPE; a closed file object; sys.stderr None
        pass


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (``kvsim ... | head -1``): polled, the pipe reports
    an error. Then standard output points at /dev/null, so the interpreter's last flush does not fail again. A broken
    pipe of anything else (a worker's) is no such thing."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return True
    except (OSError, ValueError, AttributeError):  # no file descriptor; no poll() on this system
        return False


def _stopped_midway() -> None:
    """The run was stopped wherever it was, perhaps inside a native library's object under construction (numba's
    compiler: llvmlite's ``ObjectRef``), whose destructor then fails as the unwound frames are freed; Python prints
    that as "Exception ignored in ...". The process ends with one line saying it was stopped, not that noise."""
    sys.unraisablehook = lambda _unraisable: None


def _interrupt_inside(exc: SystemError) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM a compiled kernel's dispatcher returned with: numba reports a KeyboardInterrupt raised
    while its function ran as "returned a result with an exception set", a SystemError caused by it."""
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(cause, KeyboardInterrupt) else None


def _status(program: str, body: Callable[[], int]) -> int:
    try:
        try:
            return body()
        except SystemError as exc:
            interrupt = _interrupt_inside(exc)
            if interrupt is None:
                raise
            raise interrupt from None
    except InputError as exc:
        _say(f"{program}: error: {exc}")
        return 2
    except Terminated:
        _stopped_midway()
        _say(f"{program}: terminated")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _stopped_midway()
        _say(f"{program}: interrupted")
        return 130
    except ReaderGone:
        _reader_gone()  # when that reader was standard output's, the last flush must not fail again
        return 128 + signal.SIGPIPE
    except BrokenPipeError:
        if not _reader_gone():
            return _internal(program)
        # the reader of standard output went away: every file is written, only printing stopped. The status a
        # shell gives a process that SIGPIPE ended (``yes | head -1``), as Python's own docs advise, not a traceback
        return 128 + signal.SIGPIPE
    except OSError as exc:
        if not _stdout_unwritable(exc):
            return _internal(program)
        _say(f"{program}: error: cannot write to standard output: {exc.strerror or exc}")  # (a full disk: > /dev/full)
        return 2
    except Exception:  # a bug, not bad input
        return _internal(program)


def _stdout_unwritable(exc: OSError) -> bool:
    """Whether ``exc`` is standard output refusing a write (a full disk: ``> /dev/full``), not a bug."""
    return isinstance(sys.stdout, _WatchedStdout) and sys.stdout.failed is exc


class _WatchedStdout:
    """Standard output as it is, remembering the error a write or flush raised: a full disk under ``> FILE`` is the
    user's environment, not an internal error (a reader gone, BrokenPipeError, has its own status)."""

    def __init__(self, stream):
        self._stream = stream
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.failed = exc
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.failed = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _internal(program: str) -> int:
    try:
        traceback.print_exc()
    except (OSError, ValueError, AttributeError):
        pass
    _say(f"{program}: internal error (please report it with the command line above)")
    return 1
