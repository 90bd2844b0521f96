"""Errors that map to the Contract's exit statuses, and the one way messages quote user input."""

from __future__ import annotations

import atexit
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
    else:
        text = repr(value)
        size, unit = len(text), "characters"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({size:,} {unit})"


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
