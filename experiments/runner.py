"""Running independent points: a local process pool (default) or Ray.

A point's result depends only on its config (seeded from it), so every backend and
every ``--jobs`` gives the same records; they arrive in completion order and the
caller orders them. A point that raises is returned as an error record and the rest
go on; a worker process that dies (killed, out of memory) breaks the pool, and the
points it held are re-run one at a time, each in its own process, so only the one
that kills its process is recorded as failed.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from experiments.execute import RunOptions
from sim.command import Terminated
from sim.config import Config
from sim.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Task:
    """One point to run: where it sits in the sweep and what to run."""

    key: str
    index: int
    name: str
    mode: str
    config: Config
    options: RunOptions = RunOptions()
    overrides: dict[str, Any] = field(default_factory=dict)
    # keys given to the point (a sweep's command line, fixed keys and axes) that it refuses to leave unread rather
    # than run at their neutral values: a sweep runs a point at a key's neutral value only once another point is known
    # to read that key (``experiments.sweep``)
    refused: tuple[str, ...] = ()


def _ensure_root_first() -> None:
    """kvsim's ``trace`` package must shadow the standard library's ``trace`` module (as main.py does)."""
    root = str(ROOT)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
        del sys.modules["trace"]


def error_record(task: Task, message: str, kind: str, wall_s: float = 0.0) -> dict:
    return {"key": task.key, "index": task.index, "name": task.name, "overrides": task.overrides, "trace": None,
            "runs": [], "error": message, "error_kind": kind, "wall_s": wall_s}


def _execute_reading(task: Task) -> tuple[Any, dict]:
    """``execute`` of the task's point, with each setting its workload leaves unread (``UnreadSetting``: a fixed key
    of a sweep that another point reads, such as outputs_in_next_turn=false beside a kind axis of multi-turn and rag)
    at the value that leaves the run the same, not refused, unless the task refuses its key (``Task.refused``). Returns
    the output and each key so replaced (``sim.mode_settings.run_reading``)."""
    from experiments.execute import execute
    from sim.mode_settings import run_reading

    return run_reading(lambda config: execute(task.mode, config, task.options), task.config, task.refused)


def run_task(task: Task) -> dict:
    """Run one point; its JSON-ready record (runs and the keys it left unread, ``left_unread``, or the error that
    stopped it: a refused key it leaves unread is error kind "unread", the key in ``unread``)."""
    _ensure_root_first()
    from sim.command import interruption_behind, raise_if_stopped
    from sim.errors import UnreadSetting
    from sim.report.document import run_entry

    start = time.perf_counter()
    try:
        try:
            raise_if_stopped()  # a Ctrl-C a library swallowed in an earlier point (--jobs 1): no point runs after it
            out, left = _execute_reading(task)
        except Exception as exc:  # a Ctrl-C a library wrapped (or swallowed): the sweep stops, as main.py's run does
            interrupt = interruption_behind(exc)
            if interrupt is None:
                raise
            raise interrupt from None
    except UnreadSetting as exc:  # (a key of task.refused, or one at its neutral value already: run_reading's)
        refused = exc.key in task.refused
        record = error_record(task, str(exc), "unread" if refused else "input", time.perf_counter() - start)
        return {**record, "unread": exc.key} if refused else record
    except InputError as exc:
        return error_record(task, str(exc), "input", time.perf_counter() - start)
    except Exception as exc:  # a bug at this point: keep its traceback, let the other points go on
        tail = "".join(traceback.format_exception(exc)[-6:])
        return error_record(task, f"internal error: {type(exc).__name__}: {exc}\n{tail}", "internal",
                            time.perf_counter() - start)
    return {"key": task.key, "index": task.index, "name": task.name, "overrides": task.overrides,
            "trace": out.trace, "runs": [run_entry(r) for r in out.runs], "error": None, "left_unread": list(left),
            "wall_s": time.perf_counter() - start}


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    """Fork on Linux (workers start at once with everything imported and compiled; kvsim runs no threads that
    a fork could catch mid-lock), spawn elsewhere, and spawn too once LightGBM is loaded here: a learned point's model
    was loaded and checked before the sweep (``experiments.execute.check_learned_points``), which starts GNU
    OpenMP's thread pool, and a forked child's first OpenMP call then waits for ever on those threads (libgomp is not
    fork-safe: every worker of a learned sweep at --jobs 2 hung, the sweep with them)."""
    forked = sys.platform == "linux" and "lightgbm" not in sys.modules
    return multiprocessing.get_context("fork" if forked else "spawn")


PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal this process gets when its parent dies


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def stops_held_while_forking():
    """SIGINT and SIGTERM wait while workers are forked. A worker starts with them blocked, so one that arrives
    before the worker has its own handlers waits for them (``worker_start``) instead of running the parent's,
    inherited by the fork (a traceback, or a second "kvsim: terminated", from the worker). The parent only notes
    one meanwhile and raises it once the forks are done: its handler, run by Python wherever the main thread is,
    could run inside a fork hook, which ignores the exception (the sweep then waited for its points)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "pthread_sigmask") or not main_thread:
        yield
        return
    noted: list[int] = []
    handlers = {signum: signal.signal(signum, lambda signum, _frame: noted.append(signum)) for signum in STOP_SIGNALS}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # (one pending here is taken now: noted, or raised)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)


def worker_start(parent: int, forker: int | None = None) -> None:
    """A worker dies with its sweep, never outlives it computing and appending to the journal: SIGTERM is back to
    its default (the parent's handler, inherited by the fork, would raise an exception the pool reports and the
    worker survives), and on Linux the kernel sends it SIGTERM when the parent dies, even by SIGKILL. Ctrl-C, which
    a terminal sends the whole process group, is left to the parent, which stops its workers itself.

    ``forker`` is the thread that makes the pool (``threading.get_ident()``; None: every worker is started by it).
    The kernel's parent-death signal comes when the THREAD that forked the worker ends (prctl(2)), not the process:
    a ``multiprocessing.Pool`` forks the workers it starts in place of dead ones from its maintenance thread, which
    ends at the pool's close, so such a worker got SIGTERM as the pool closed, perhaps inside the task queue's read
    (it holds the queue's lock while it waits), and died holding it: the other workers waited for ever, the pool's
    join with them (the overload grid's hang). A worker another thread forked watches for its parent instead."""
    from sim.errors import notes_one_line

    notes_one_line()  # (a spawned worker's notes: one line each, as the sweep's own are; a forked one has it already)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # (forked with them held: ``stops_held_while_forking``)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if forker is not None and threading.get_ident() != forker:  # (a fork keeps the forking thread's ident)
        threading.Thread(target=_end_with, args=(parent,), daemon=True, name="kvsim-parent-watch").start()
    elif sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


PARENT_WATCH_S = 0.5  # how often a worker that no parent-death signal covers looks for its parent


def _end_with(parent: int) -> None:
    """End this worker once its parent is gone (its parent-death signal would come at the wrong thread's end)."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_S)
    os._exit(1)


# A spawn pool's semaphores are registered with multiprocessing's resource tracker, a process of its own that outlives
# this one and, when an interrupted sweep ends without releasing them, frees them and warns of each ("There appear to
# be 5 leaked semaphore objects to clean up at shutdown") under "kvsim: interrupted". It takes its warning filters
# from this interpreter's -W options (``util._args_from_interpreter_flags``) when it starts, at the first pool.
QUIET_RESOURCE_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


def _pool(workers: int) -> ProcessPoolExecutor:
    context = _context()
    if context.get_start_method() != "fork" and QUIET_RESOURCE_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_RESOURCE_TRACKER)
    forker = threading.get_ident() if context.get_start_method() == "fork" else None  # (a spawned child is new)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_start,
                               initargs=(os.getpid(), forker))


def _submit_all(pool: ProcessPoolExecutor, tasks: list[Task]) -> dict[Future, Task]:
    """Each task submitted; the pool forks its workers at the first (a fork pool starts them all at once)."""
    with stops_held_while_forking():
        return {pool.submit(run_task, task): task for task in tasks}


def _stop(pool: ProcessPoolExecutor) -> None:
    """An interrupted sweep (Ctrl-C, SIGTERM) stops its workers now, mid-point: shutting the pool down alone
    would wait at exit for the points they run. SIGKILL, which no mask holds: a spawned worker still unpickling its
    start-up state has SIGTERM blocked (``stops_held_while_forking``), went on once this process had exited and its
    semaphores were gone, and printed a traceback under "kvsim: interrupted" (a learned sweep, ``_context``).
    The pool's own threads may then fail on the pipes of the workers killed under them (about one SIGTERM in 40 on a
    busy machine printed "Exception in thread Thread-1" under "kvsim: terminated"): the process is ending on the
    interruption, so what its other threads raise from now on is not reported (``_quiet_other_threads``)."""
    _quiet_other_threads()
    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.kill()


def _quiet_other_threads() -> None:
    """Report no exception of a thread other than the main one from now on (an interrupted sweep is ending)."""
    report = threading.excepthook

    def quiet(args: threading.ExceptHookArgs) -> None:
        if args.thread is threading.main_thread():
            report(args)

    threading.excepthook = quiet


# How often the main thread wakes while it waits for workers' points. A stop signal the kernel delivers to another of
# its threads (tqdm's monitor: the pool's own threads start with stop signals held, ``_submit_all``) runs its Python
# handler only once the main thread next executes bytecode; blocked on a lock with no timeout it never did, and a
# sweep sent SIGTERM once waited on for good (CI: its threads' stacks showed the main one in ``as_completed``).
WAKE_S = 0.2


def _completed(futures: dict[Future, Task]):
    """``futures`` as they complete (those completing together in task order), the main thread waking every
    ``WAKE_S`` to run the handler of a signal another thread received."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=WAKE_S, return_when=FIRST_COMPLETED)
        yield from sorted(done, key=lambda f: futures[f].index)


def _isolated(task: Task) -> dict:
    pool = _pool(1)
    try:
        [future] = _submit_all(pool, [task])
        [future] = _completed({future: task})
        record = future.result()
    except BrokenProcessPool:
        record = error_record(task, "the worker process died while running this point (killed or out of memory)",
                              "internal")
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    return record


def run_local(tasks: list[Task], jobs: int, on_result: Callable[[dict], None]) -> None:
    """A process pool of ``jobs`` workers (``jobs`` 1: in this process)."""
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_result(run_task(task))
        return
    pool = _pool(min(jobs, len(tasks)))
    broken: list[Task] = []
    try:
        futures = _submit_all(pool, tasks)
        for future in _completed(futures):
            try:
                record = future.result()
            except BrokenProcessPool:
                broken.append(futures[future])
                continue
            on_result(record)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    for task in sorted(broken, key=lambda t: t.index):
        on_result(_isolated(task))


RAY_MISSING = "--backend ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')"


def check_ray_installed() -> None:
    """Refuse ``--backend ray`` where Ray is not installed, without importing it (seconds) when it is."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # (a broken ``ray`` entry in sys.modules)
        found = False
    if not found:
        raise InputError(RAY_MISSING)


def ray_address(given: str | None) -> str | None:
    """The Ray cluster a run connects to: ``given`` (``--ray-address``), else ``RAY_ADDRESS`` from the environment,
    which ray.init reads when given no address ("Starting Ray", docs.ray.io: it connects there, and refuses
    ``num_cpus`` when connecting); None (start a Ray here) when neither names one ("local" asks for a new one)."""
    address = given or os.environ.get("RAY_ADDRESS", "").strip()
    return address if address and address != "local" else None


# How long a named Ray cluster's address has to accept a connection before the run is refused: Ray's own wait for one
# (its driver logs "Failed to connect to GCS at address ... within 5 seconds" and tries again).
RAY_CONNECT_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001  # Ray Client's default port (ray start --ray-client-server-port), for ray://HOST without one
RAY_ADDRESS_FORMS = "HOST:PORT (a Ray head's GCS port, 6379 by default), ray://HOST[:PORT] (Ray Client) or auto"


def check_ray_address(address: str, named: str) -> None:
    """Refuse a Ray cluster address that cannot be what ``ray.init(address=...)`` connects to, in seconds and before
    any work: not of Ray's forms, a host that does not resolve, or nothing that accepts a connection there within
    ``RAY_CONNECT_TIMEOUT_S``. Ray itself, given a GCS address where nothing listens, tried for ~40 s twenty times
    (over 13 minutes, three lines of native warnings a try) inside one native call, where no Ctrl-C or SIGTERM
    handler of this command runs until the call returns. ``auto`` (the cluster ``ray start`` left on this machine) is
    Ray's to find: ``run_ray`` turns its "no running Ray instance" into bad input. ``named`` says where the address
    came from (``--ray-address 'X'``, ``RAY_ADDRESS='X' in the environment``)."""
    import socket

    if address == "auto":
        return
    rest = address.removeprefix("ray://")
    host, colon, port_text = rest.rpartition(":")
    if not colon and rest is not address:  # ray://HOST: Ray Client's default port
        host, port_text = rest, str(RAY_CLIENT_PORT)
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 literal, [::1]:6379
    if not host or not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535 or "/" in host:
        raise InputError(f"{named}: not a Ray cluster address; expected {RAY_ADDRESS_FORMS}")
    try:
        with socket.create_connection((host, int(port_text)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except socket.gaierror as exc:
        raise InputError(f"{named}: cannot resolve host {host!r} ({exc.strerror})") from None
    except OSError as exc:  # refused, unreachable, or no answer in time
        why = f"no answer within {RAY_CONNECT_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else exc.strerror or exc
        raise InputError(f"{named}: no Ray cluster answers there ({why}); start one with 'ray start --head', or "
                         "drop the address to start a Ray for this run") from None


def runs_on(backend: str | None, jobs: int | None, address: str | None) -> str:
    """Where the points run, for the line a sweep or plan prints before them: "local with 4 jobs", "ray with 4
    jobs" (a Ray started here), "the Ray cluster at ADDR" (whose CPUs decide: ``--jobs`` is refused there)."""
    backend = backend or "local"
    cluster = ray_address(address) if backend == "ray" else None
    if cluster:
        return f"the Ray cluster at {cluster}"
    jobs = jobs or default_jobs()
    return f"{backend} with {jobs} job{'s' if jobs != 1 else ''}"


def _stop_handlers() -> dict:
    """This command's Ctrl-C and SIGTERM handlers, to put back after ``ray.init`` (``_restore_stop_handlers``)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


def _restore_stop_handlers(handlers: dict) -> None:
    """Put back the handlers ``ray.init`` replaced. It installs its own for the driver (a SIGTERM runs
    ``ray.shutdown`` and exits) behind abseil's failure handler, which prints a native stack trace and arms a 3-second
    alarm that aborts the process if the shutdown takes longer (ray-project/ray#64830): a SIGTERM'd sweep printed
    60 lines of native stack and exited 1 (or 134, SIGABRT), not 143 with one line. Setting a handler again takes the signal from
    abseil's chain too (sigaction)."""
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


def run_ray(tasks: list[Task], jobs: int, address: str | None, on_result: Callable[[dict], None]) -> None:
    """Ray tasks: a local Ray started for this run (``jobs`` CPUs), or the cluster at ``address`` (or at
    ``RAY_ADDRESS``: ``ray_address``)."""
    check_ray_installed()
    address = ray_address(address)
    import logging

    try:
        import ray
    except ImportError as exc:  # installed but broken (a dependency missing)
        raise InputError(f"{RAY_MISSING}; importing it failed: {exc}") from None

    started_here = not ray.is_initialized()
    if started_here:
        held = _stop_handlers()
        try:
            if address:  # a remote cluster gets this checkout as the job's working directory
                env = {"working_dir": str(ROOT), "excludes": [".git", "out", "kvsim-plots", "*.journal.jsonl"]}
                try:
                    ray.init(address=address, runtime_env=env, logging_level=logging.ERROR, log_to_driver=False)
                except ConnectionError as exc:  # no cluster there ("auto" with none; a Ray Client that timed out)
                    raise InputError(f"cannot connect to the Ray cluster at {address}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            else:
                path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
                ray.init(num_cpus=jobs, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path}})
        except BaseException as exc:
            _restore_stop_handlers(held)
            stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))
            with suppress(Exception), _native_stderr_dropped() if stopped else nullcontext():
                ray.shutdown()  # (what it had started; a failing shutdown must not hide why it stopped)
            if isinstance(exc, SystemExit):  # Ray's SIGTERM handlers while it starts end with sys.exit (15, or 1)
                raise Terminated from None
            raise
        _restore_stop_handlers(held)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(run_task)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAKE_S)
            for ref in done:
                task = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # the worker died (Ray retried once)
                    record = error_record(task, f"the Ray worker failed: {type(exc).__name__}: {exc}", "internal")
                on_result(record)
    except KeyboardInterrupt:  # (Terminated is one) stopped: its one line, not the native lines Ray logs as it stops
        if started_here:
            started_here = False
            with _native_stderr_dropped():
                ray.shutdown()
        raise
    finally:
        if started_here:
            ray.shutdown()


@contextmanager
def _native_stderr_dropped():
    """Standard error's file descriptor on /dev/null for a while: Ray shut down as a stopped sweep's tasks are killed
    logs from its core worker's native threads the task errors it can no longer report ("task_manager.cc:
    Failed to push error to driver for task ...", seen in tests/test_sweep_ray_signals.py under load), which no
    logging level of Ray's Python side reaches, before the command's "terminated" line."""
    with suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # standard error closed (``2>&-``): nothing reaches it anyway
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_tasks(tasks: list[Task], on_result: Callable[[dict], None], backend: str = "local", jobs: int | None = None,
              ray_address: str | None = None) -> None:
    """Run every task on ``backend``; ``on_result`` gets each record as it completes."""
    jobs = jobs or default_jobs()
    if not tasks:
        return
    if backend == "ray":
        run_ray(tasks, jobs, ray_address, on_result)
    elif backend == "local":
        run_local(tasks, jobs, on_result)
    else:
        raise InputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
