"""Standard output and error as a command's end finds them (``sim.command``): what is printed is flushed before an
``os._exit``; a reader of standard output gone (``kvsim ... | head -1``) is the shell's SIGPIPE status, not a
traceback; a write standard output refused (a full disk under ``> FILE``) is the user's environment, not a bug."""

from __future__ import annotations

import os
import select
import sys


def flush_printed() -> None:
    """Flush standard output and error as far as they can be before an ``os._exit`` (which skips it): closed, gone or
    broken streams are passed over, and so is a stop that came inside a write (RuntimeError: a reentrant call)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError, RuntimeError):
            pass


def reader_gone() -> bool:
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


def stdout_unwritable(exc: OSError) -> bool:
    """Whether ``exc`` is standard output refusing a write (a full disk: ``> /dev/full``), not a bug."""
    return isinstance(sys.stdout, WatchedStdout) and sys.stdout.failed is exc


class WatchedStdout:
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
