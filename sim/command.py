"""A command's life: how its body ends mapped to the Contract's exit statuses (``command_status``), the stop
signals that end it (Ctrl-C 130, SIGTERM 143: handled, held in native work, retried when a library loses them), and
the process's end once it has answered (``end_process``). Bad input's errors themselves: ``sim.errors``."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, NoReturn

from sim.errors import InputError, ReaderGone, notes_one_line, one_line
from sim.std_streams import WatchedStdout, flush_printed, reader_gone, stdout_unwritable


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``, ``timeout``): an interruption like Ctrl-C, so every path
    that cleans up after one (atomic writes, a sweep's worker pool) cleans up after it; exit status 143."""


# The stop signal (SIGINT or SIGTERM) this command has been sent, kept after its exception is raised: a library can
# lose that exception (an optional import's ``except ImportError`` around a C extension whose import a Ctrl-C broke;
# Python 3.11's "Error calling __set_name__" RuntimeError around one), and the command must still stop
# (``raise_if_stopped``) and say it was stopped, not report an internal error or train on for minutes.
_stop_signal: int | None = None
# Depth of ``stops_held`` regions the main thread is in: a stop signal that comes there is noted, and raised as the
# region ends, not inside it.
_held = 0
# how long after a stop lost in a destructor it is raised again (``_lost_stop``): past the destructor's return
LOST_STOP_RETRY_S = 0.001
# A lost stop's pending retry (``_lost_stop``): its SIGALRM handler, and the handler and ITIMER_REAL timer (seconds
# left, interval) from before it, and when it was set (``time.monotonic``): a timeout the user's code or a library set
# is put back as the retry goes; None while no retry is pending
_retry_previous: tuple[Callable, object, tuple[float, float], float] | None = None
_commands_running = 0  # command_status calls under way: tools/random_runs.py runs main.main's inside its own
# True while ``command_status`` answers how its command ended (says so, puts the handlers back): a Ctrl-C or SIGTERM
# landing there asks for what is already under way; raised, it left ``command_status`` as a traceback. It is noted
# (a command run inside another leaves it to the outer one, which stops too), not raised
_answering = False
# The stop signals a script blocked as it started (``hold_stops_until_command``), unblocked as its command starts
_blocked_until_command: set[int] = set()
# Whether this process is a program that made ready for stops before its command (a script sim.script_start holds the
# stops of; main.py and learned.train calling ``watch_stop_signals``): its outermost command's end is the process's end
# (``end_process`` follows), so that command hands over to the handlers that end the process as it returns
# (``_end_on_stop``), not to the ones from before it (SIG_DFL: a SIGTERM there killed the process, -15 and no line;
# main.py's own: a traceback)
_program = False
# Whether ``_terminate`` set SIGTERM ignored (a second one, while the command stops) and no command has answered since
_second_sigterm_ignored = False
# The status a stop ends the process with once its command has answered (``_end_now``)
_ending_status = 0


def _noted(signum: int) -> bool:
    """Note a stop that came (``raise_if_stopped``); whether to raise it now: not while a command answers how it ended
    (``_answering``: the stop is that answer's, or the next one's)."""
    global _stop_signal
    if _answering:
        _stop_signal = _stop_signal or signum
        return False
    _stop_signal = signum
    _stopped_midway()
    return True


# Python functions that native code calls back and whose exception it mishandles, as (file's path ending, function):
# a stop raised inside one is raised again a millisecond later instead (``_raise_again_soon``). At a compiled
# function's first call numba's wrapper unpickles the class of each array it returns (``numba_unpickle`` ->
# ``_numba_unpickle``: a Python memo, ``cloudpickle.loads`` on a miss; later calls reuse the object); a stop raised
# there left that array NULL in a returned tuple (numba 0.68's ``box_tuple`` sets its elements unchecked), and the next
# element's memo miss (a KeyError caught) cleared the pending stop: the caller met the NULL and the process died of
# SIGSEGV (trace.id_runs ``to_runs``' first call, ~3% of stops while a trace loaded under load;
# tests/test_stop_signals.py reproduces it every time)
UNSAFE_CALLBACKS = (("numba/core/serialize.py", "_numba_unpickle"),)


def _inside_unsafe_callback(frame: object) -> bool:
    """Whether the handler's ``frame`` runs inside one of ``UNSAFE_CALLBACKS`` (or code it called)."""
    while frame is not None:
        code = frame.f_code
        if any(code.co_name == name and code.co_filename.replace(os.sep, "/").endswith(path)
               for path, name in UNSAFE_CALLBACKS):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: object) -> None:
    if _noted(signum) and not _held:
        if _inside_unsafe_callback(frame):
            _raise_again_soon()
            return
        _cancel_retry()
        raise KeyboardInterrupt


def _terminate(signum: int, frame: object) -> None:
    if not _noted(signum):
        return
    # the command is stopping: a second SIGTERM (coreutils ``timeout`` signals the command, then its process group)
    # must not interrupt the stopping itself (``command_status`` puts the previous handler back when it returns)
    global _second_sigterm_ignored
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _second_sigterm_ignored = True
    if not _held:
        if _inside_unsafe_callback(frame):
            _raise_again_soon()
            return
        _cancel_retry()
        raise Terminated


def watch_stop_signals() -> None:
    """Note Ctrl-C and SIGTERM as they come (``raise_if_stopped``), raising what Python's handlers raise: called
    first thing by a program whose libraries take seconds to load (its command then ends the process: ``_program``),
    and by ``command_status`` as a command starts (``_watch``)."""
    global _program
    if threading.current_thread() is threading.main_thread():
        _program = True
        _watch()


def _watch() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    from sim.held_imports import hold_stops_in_extension_imports  # (it holds stops with this module's stops_held)

    hold_stops_in_extension_imports()  # before the handlers raise: a C extension imported from here on is safe
    # (a child told to ignore Ctrl-C keeps that; a program's command after another takes the stops back)
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _end_now):
        signal.signal(signal.SIGINT, _interrupt)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:  # (one told to ignore SIGTERM keeps that too; a stop
        signal.signal(signal.SIGTERM, _terminate)               # under way ignores a second: ``_terminate``)


def hold_stops_until_command(held: set[int] | frozenset[int] = frozenset()) -> None:
    """Block Ctrl-C and SIGTERM until ``command_status`` starts: called first thing by a script whose libraries take
    a second or two to load (numpy, numba, llvmlite). A SIGTERM there killed the script (status -15, no line); raised
    there as an exception, a stop could leave a native library half-loaded (SIGSEGV: b6455f1 reverted that). Blocked,
    it waits in the kernel and the command takes it as it starts: one line, 130 or 143. (Blocked, not handled: no
    handler tells a parent watching /proc the command has started before it has. Processes started meanwhile inherit
    the mask: imports start none that outlive them.) ``held``: those its caller blocked for it before this module
    loaded (sim.script_start)."""
    global _blocked_until_command, _program
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return
    _program = True
    stops = {signal.SIGINT, signal.SIGTERM}
    # (those blocked already, and not for this, stay blocked)
    _blocked_until_command |= set(held) | (stops - signal.pthread_sigmask(signal.SIG_BLOCK, stops))


def _take_held_stops() -> None:
    """Unblock what ``hold_stops_until_command`` blocked: a stop that came meanwhile is handled now (raised)."""
    global _blocked_until_command
    if _blocked_until_command and threading.current_thread() is threading.main_thread():
        blocked, _blocked_until_command = _blocked_until_command, set()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def raise_if_stopped() -> None:
    """Raise the interruption a stop signal already raised once, in case a library swallowed it: checked where work
    can stop cleanly (before an output replaces the previous one, between training rounds, as a command ends)."""
    if _stop_signal is not None:
        _cancel_retry()
        raise Terminated if _stop_signal == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def stops_held() -> Iterator[None]:
    """Inside, a Ctrl-C or SIGTERM is noted but raised only as the region ends (``raise_if_stopped``).

    For native work that an exception raised halfway leaves half-built: numba loading a cached function or compiling
    one. A SIGTERM raised there (at the first call of a kernel, while a trace loaded) made the process die of SIGSEGV
    (exit -11) about one time in thirty in ``tests/test_benchmark_stops.py``, instead of exit 143 and one line. A stop
    waits for that function's load (milliseconds) or compile (seconds, on a cold cache), not for the whole command."""
    global _held
    if threading.current_thread() is not threading.main_thread():  # (signal handlers run in the main thread only)
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if not _held:
        raise_if_stopped()


def command_status(program: str, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and map how it ends to the Contract's exit status: its own status (or the one
    ``sys.exit`` gives: argparse's --help 0, its usage error 2), 2 for bad input (one line naming what to fix), 130
    for Ctrl-C, 143 for SIGTERM, 1 for an internal error (the only case that prints a traceback)."""
    global _stop_signal, _commands_running, _answering, _second_sigterm_ignored
    notes_one_line()  # (its notes one line each, as its errors and its standard output are)
    previous, stdout, unraisable_hook = None, sys.stdout, sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        _watch()
        if stdout is not None and not isinstance(stdout, WatchedStdout):
            sys.stdout = WatchedStdout(stdout)
    _commands_running += 1
    status = None
    try:
        status = _status(program, body)
        return status
    finally:
        _answering = True  # (the end is decided, however it came: a stop from here on is noted, not raised)
        _commands_running -= 1
        if previous is not None:
            if not _commands_running:
                _cancel_retry()
            if not _commands_running and _program and status is not None:
                _end_on_stop(status, previous)  # (the process ends with this status: end_process comes next)
            else:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            sys.stdout = stdout
        if not _commands_running:  # (answered: a command run again in this process starts unstopped; one run inside
            _stop_signal = None    # another leaves the signal to it, which stops too: not a hunt going on past Ctrl-C)
            _second_sigterm_ignored = False
            # the stop's quiet hook (``_stopped_midway``) goes too: left, it hid every later "Exception ignored" of a
            # process that goes on (a test session's next tests) for good
            sys.unraisablehook = unraisable_hook
        _answering = False  # (last: a command run inside another hands the outer one's handlers back meanwhile)


def end_process(status: int | None) -> NoReturn:
    """End a command's process with ``status`` (None: 0, as ``sys.exit``) once its work is done: ``atexit`` handlers
    run (a Ray sweep's shutdown), standard output and error are flushed, then the process exits at once.

    The interpreter's own teardown is skipped on purpose. It runs native libraries' static destructors, and
    pyarrow's thread pools there now and then abort a run that has written every output (SIGABRT, "terminate
    called without an active exception": apache/arrow#34314; here about one trace-reading process in 200 on a busy
    machine); and it frees every object left (numba's type records: ~70 ms of a short run)."""
    code = 0 if status is None else status
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        _stopped_midway()  # a stopped run's half-built objects freed from here on fail quietly, as in the command
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # under a profiler or debugger (python -m cProfile, pdb), which reports after the script ends
    if threading.current_thread() is threading.main_thread():
        # A stop from here on finds the work done: it ends the process at once with the status decided. The handlers
        # command_status put back raised it inside an exit function (a traceback, "Exception ignored in atexit
        # callback") or let it kill the process (-15); an exit function (a Ray sweep's shutdown) can take seconds,
        # which a second Ctrl-C is meant to cut short.
        _cancel_retry()
        _end_on_stop(code, {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)})
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


def _end_on_stop(status: int, handlers: dict[int, object]) -> None:
    """From here on a Ctrl-C or SIGTERM ends the process at once with ``status`` (``_end_now``): its command has
    answered. A stop ``handlers`` ignore (a child told to ignore Ctrl-C) stays ignored."""
    global _ending_status
    _ending_status = status
    for signum, handler in handlers.items():
        signal.signal(signum, signal.SIG_IGN if handler is signal.SIG_IGN else _end_now)


def _end_now(signum: int, frame: object) -> NoReturn:
    """A stop once the command has answered (``end_process``'s exit functions, or on the way there): what is printed
    is flushed and the process ends with the status it was ending with."""
    flush_printed()
    os._exit(_ending_status)


def _say(text: str) -> None:
    """One line on standard error; a closed or broken stderr (``2>&-``, a reader gone) must not turn the
    status the line explains into an internal error."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # EBADF, EPIPE; a closed file object; sys.stderr None
        pass


def _stopped_midway() -> None:
    """The run was stopped wherever it was, perhaps inside a native library's object under construction (numba's
    compiler: llvmlite's ``ObjectRef``), whose destructor then fails as the unwound frames are freed, or inside a C
    library's call back into Python (llvmlite's object-cache notification), which cannot pass the KeyboardInterrupt
    on; Python prints either as "Exception ignored in ..." with a traceback. From the stop signal on, the process
    ends with one line saying it was stopped (``raise_if_stopped`` raises a lost interruption again), not that noise
    (``_lost_stop``)."""
    sys.unraisablehook = _lost_stop


def _lost_stop(unraisable: object) -> None:
    """``sys.unraisablehook`` once a stop came: quiet, and a stop's own exception lost there (raised while Python ran a
    destructor or a weakref callback, which cannot pass it on) is raised again a millisecond later in the main thread,
    where the run goes on (a one-shot SIGALRM; a handler tripped at once would run inside this hook and be lost too):
    else the run went on, the Ctrl-C or SIGTERM waiting for the next ``raise_if_stopped``, perhaps a long run's end.
    Lost again (the alarm came inside another destructor), it is raised again the same way."""
    if _stop_signal is not None and isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt):
        _raise_again_soon()


def _raise_again_soon() -> None:
    """Raise the stop a millisecond from now in the main thread (a one-shot SIGALRM), where it was lost or could not
    be raised safely (``_lost_stop``, ``UNSAFE_CALLBACKS``); the alarm landing in such a place again defers it
    again."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return
    global _retry_previous
    previous_handler = signal.getsignal(signal.SIGALRM)

    def again(_signum: int, frame: object) -> None:
        if _inside_unsafe_callback(frame):
            _raise_again_soon()
            return
        _cancel_retry()
        if not _held and not _answering:  # (a held region raises it as it ends; an answer has it already)
            raise_if_stopped()

    signal.signal(signal.SIGALRM, again)
    timer = signal.setitimer(signal.ITIMER_REAL, LOST_STOP_RETRY_S)
    if _retry_previous is None:
        _retry_previous = (again, previous_handler, timer, time.monotonic())
    else:  # lost again: what was set before is still the first retry's to put back
        _retry_previous = (again, *_retry_previous[1:])


def _cancel_retry() -> None:
    """Disarm a lost stop's pending retry (``_lost_stop``) and put SIGALRM's handler back: done whenever the stop is
    raised anew (by a handler or ``raise_if_stopped``) and as the command ends. Else the retry could raise the stop a
    second time while the command was already handling it (saying it was stopped), out of ``command_status``: a
    traceback (a pytest worker running tests/test_stop_signals.py was interrupted so in CI)."""
    global _retry_previous
    if _retry_previous is None or threading.current_thread() is not threading.main_thread():
        return
    again, handler, (left, interval), armed_at = _retry_previous
    _retry_previous = None
    if signal.getsignal(signal.SIGALRM) is not again:  # code that set SIGALRM since owns it and its timer now
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)
    if left:  # the timer the retry replaced, with what is left of it (one due meanwhile fires at once)
        signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - armed_at), 1e-6), interval)


def _start_unstopped_in_child() -> None:
    """A forked child (a pool's worker, edge_runs' run) starts unstopped: its parent's stop noted but not raised yet
    (held, or lost and due again) is the parent's. Copied, it stopped the child's first command at once, and the
    copied retry put the parent's timer back in the child, which has none (fork keeps no timer), and the parent's
    SIGTERM ignored while it stops (``_terminate``) made the child deaf to its own. ``_held`` stays."""
    global _stop_signal, _retry_previous, _second_sigterm_ignored
    if _retry_previous is not None and signal.getsignal(signal.SIGALRM) is _retry_previous[0]:
        signal.signal(signal.SIGALRM, _retry_previous[1])  # (the handler from before the retry)
    if _second_sigterm_ignored and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _terminate)  # (the handler that heard the parent's)
    _stop_signal = _retry_previous = None
    _second_sigterm_ignored = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_start_unstopped_in_child)


def interruption_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an error came from, if any: one raised inside a library that raised something else
    because of it (numba: "returned a result with an exception set", a SystemError; Python 3.11 class creation: "Error
    calling __set_name__", a RuntimeError; an import: an ImportError), or one noted and swallowed since."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    if _stop_signal is not None:
        return Terminated() if _stop_signal == signal.SIGTERM else KeyboardInterrupt()
    return None


def _status(program: str, body: Callable[[], int]) -> int:
    global _answering
    try:
        try:
            _take_held_stops()  # (this command's handlers are in place: one that came as the script loaded is raised)
            raise_if_stopped()  # stopped while the command's libraries loaded (a library swallowed the exception)
            status = body()
            raise_if_stopped()  # stopped, but a library swallowed the exception: the command says it was stopped
            return status
        except (Exception, SystemExit) as exc:
            interrupt = interruption_behind(exc)
            if interrupt is None:
                raise
            raise interrupt from None
    except SystemExit as exc:  # argparse's --help (0) or usage error (2), a sys.exit: a status like any other, so the
        _answering = True      # process ends through end_process (left to escape, a stop as it ended killed it: -15)
        return _exit_status(exc.code)
    except InputError as exc:
        _answering = True  # (first in each answer: a stop from here on is noted, not raised)
        _say(f"{program}: error: {one_line(str(exc))}")  # (every error's path or value, however spelt: one line)
        return 2
    except KeyboardInterrupt as exc:  # (Terminated is one)
        _answering = True
        _stopped_midway()
        # a library may raise its own KeyboardInterrupt for the one the handler raised (Ray's ray.wait does for any)
        if isinstance(exc, Terminated) or _stop_signal == signal.SIGTERM:
            _say(f"{program}: terminated")
            return 128 + signal.SIGTERM
        _say(f"{program}: interrupted")
        return 130
    except ReaderGone:
        _answering = True
        reader_gone()  # when that reader was standard output's, the last flush must not fail again
        return 128 + signal.SIGPIPE
    except BrokenPipeError:
        _answering = True
        if not reader_gone():
            return _internal(program)
        # the reader of standard output went away: every file is written, only printing stopped. The status a
        # shell gives a process that SIGPIPE ended (``yes | head -1``), as Python's own docs advise, not a traceback
        return 128 + signal.SIGPIPE
    except OSError as exc:
        _answering = True
        if not stdout_unwritable(exc):
            return _internal(program)
        _say(f"{program}: error: cannot write to standard output: {exc.strerror or exc}")  # (a full disk: > /dev/full)
        return 2
    except Exception:  # a bug, not bad input
        _answering = True
        return _internal(program)


def _exit_status(code: object) -> int:
    """The status Python gives a process ``sys.exit(code)`` ends: None 0, an int itself, anything else said on standard
    error and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    _say(str(code))
    return 1


def _internal(program: str) -> int:
    try:
        traceback.print_exc()
    except (OSError, ValueError, AttributeError):
        pass
    _say(f"{program}: internal error (please report it with the command line above)")
    return 1
