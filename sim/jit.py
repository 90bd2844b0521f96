"""numba for kvsim's compiled code: ``njit``, with a lean start-up.

Every module with compiled code takes ``njit`` from here. Before numba runs a compiled function
the first time in a process, even one whose machine code it loads from its on-disk cache
(``cache=True``), it initialises its CPU target: it imports and registers every numba
implementation module (~0.25 s), one of which (``numba.np.arraymath``) probes for a BLAS by
importing ``scipy.linalg.cython_blas`` (~0.2 s more with scipy installed: scipy.linalg pulls in
numpy.f2py and more). A short run pays that for nothing: the registries serve the compiler, and
kvsim's kernels use no BLAS. So:

- *Loading* a cached kvsim function (``_LeanLoad``) starts only numba's runtime (the symbols
  cached code may call, such as its allocator); loading needs nothing else. (Loading imports
  the numba modules whose functions the cached code calls, ``numba.np.arraymath`` among them
  for an array method: the BLAS probe is hidden while it does.)
- When one must be *compiled* (a cold cache), the whole target is started first
  (``start_target``), with the BLAS probe's module hidden while it does.

What that changes, in this process only: numba's ``np.correlate``/``np.convolve`` of float arrays
use numba's own loop instead of BLAS if kvsim compiled or loaded first (the probe's only users); everything
else is as before. numba's compiler starts the target itself whenever anything else compiles, the
hidden entry is removed at once (``import scipy.linalg`` works later), numba's linear algebra
(``np.dot``, ``np.linalg``) checks for scipy's BLAS when a function using it compiles, and nothing
is hidden when scipy's BLAS is already imported.
"""

from __future__ import annotations

import hashlib
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import numba
from numba.core.caching import FunctionCache, NullCache
from numba.core.registry import cpu_target
from numba.core.runtime.nrt import rtsys

from sim.command import stops_held
from sim.errors import InputError
from sim.progress import note_once
from sim.report.output import atomic_write_text

__all__ = ["flush_when_sources_change", "njit", "start_target"]

# Said once, when the first function must be compiled (a cold cache: the first run after an install or an edit), so a
# newcomer's first run does not sit silent for seconds to a minute (README "Policies": 7-18 s of CPU a policy on 2 cores)
COMPILING_NOTE = ("compiling the simulator's kernels for this machine (the first run after an install or an edit: "
                  "seconds to a minute; cached for later runs)")
# module name -> the files ``flush_when_sources_change`` watches for it (tests/test_compiled_sources.py holds each
# list against what the module's compiled code refers to)
WATCHED_SOURCES: dict[str, tuple[Path, ...]] = {}
BLAS_PROBE = "scipy.linalg.cython_blas"  # what numba.np.arraymath imports to decide whether a BLAS exists


@contextmanager
def _blas_probe_hidden() -> Iterator[None]:
    """While inside, numba's BLAS probe finds no scipy BLAS (unless scipy's BLAS or numba's
    ``arraymath`` is imported already: then nothing is hidden, nothing changes)."""
    hide = BLAS_PROBE not in sys.modules and "numba.np.arraymath" not in sys.modules
    if hide:
        sys.modules[BLAS_PROBE] = None  # an import of it fails at once, without importing scipy.linalg
    try:
        yield
    finally:
        if hide and BLAS_PROBE in sys.modules and sys.modules[BLAS_PROBE] is None:
            del sys.modules[BLAS_PROBE]


def start_target() -> None:
    """Initialise numba's whole CPU target now, hiding scipy's BLAS from numba's probe (see above)."""
    with _blas_probe_hidden():
        cpu_target.target_context.refresh()


class _LeanLoad(FunctionCache):
    """numba's on-disk cache of one function, loading without the target's full initialisation.

    numba's ``Cache.load_overload`` first refreshes the whole target (its registries) and then
    loads; loading itself reads the machine code, links it and wraps it. This starts numba's
    runtime instead (its symbols, which cached code may call), and the whole target only when
    nothing was loaded, since numba compiles next."""

    uses_runtime = True  # False: compiled with ``_nrt=False`` (no allocation): its code calls no runtime symbol

    def load_overload(self, sig, target_context):
        try:
            if self.uses_runtime:
                rtsys.initialize(target_context)
            loaded = None
            # a cached function's environment imports the numba modules of what it calls (an array
            # method: numba.np.arraymath, whose import runs the BLAS probe)
            with self._guard_against_spurious_io_errors(), _blas_probe_hidden():
                loaded = self._load_overload(sig, target_context)
        except Exception:  # noqa: BLE001  a numba whose internals differ from these: its own way, target first
            start_target()
            return super().load_overload(sig, target_context)
        if loaded is None:
            note_once("compiling", COMPILING_NOTE)
            start_target()
        return loaded


def njit(function: Callable | None = None, **options: Any):
    """``numba.njit`` (no eager signatures); a function cached on disk (``cache=True``) loads through
    ``_LeanLoad``, which stands in for numba's own cache of it."""
    if numba.config.DISABLE_JIT:  # the kernels call numba intrinsics that have no Python fallback ("compiled code
        # only"): it was a traceback, "internal error", at the first compiled function's import
        raise InputError("NUMBA_DISABLE_JIT is set: kvsim's cache and serving kernels run only compiled; unset it")
    if function is None:
        return lambda f: njit(f, **options)
    cache = options.pop("cache", False)
    dispatcher = numba.njit(**options)(function)
    if cache:
        dispatcher._cache = _LeanLoad(dispatcher.py_func)  # what numba's enable_caching does, with its own class
        dispatcher._cache.uses_runtime = options.get("_nrt", True)
    dispatcher.compile = _holding_stops(dispatcher.compile)  # a load or compile, never stopped halfway: see stops_held
    return dispatcher


def _holding_stops(compile_: Callable) -> Callable:
    """``compile_`` (a dispatcher's: it loads a cached function or compiles one) with stop signals held until it ends."""

    def compile(sig: Any) -> Any:
        with stops_held():
            return compile_(sig)

    return compile


def _cached_functions(module: ModuleType) -> list:
    """The compiled functions ``module`` defines whose machine code numba caches on disk."""
    return [f for f in vars(module).values() if getattr(f, "py_func", None) is not None
            and f.py_func.__module__ == module.__name__ and not isinstance(f._cache, NullCache)]


def flush_when_sources_change(module: ModuleType, sources: Iterable[Path]) -> None:
    """numba keys a cached function on its own source file only, but compiled code inlines the compiled
    functions it calls and the constants it reads from other modules: an edit there would leave stale
    machine code. A digest of ``module``'s file and ``sources`` (every file its compiled code reads) is
    kept beside its cache; when it changes (a developer's edit, never an installed release), the cache of
    every compiled function ``module`` defines is flushed. Call it at the end of the module."""
    sources = tuple(Path(p) for p in sources)
    WATCHED_SOURCES[module.__name__] = sources
    functions = _cached_functions(module)
    if not functions:
        return
    files = [Path(module.__file__), *sources]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    stamp = Path(functions[0]._cache.cache_path) / f"{module.__name__}.sources.sha256"
    try:
        if stamp.read_text() == digest:
            return
    except OSError:
        pass
    for function in functions:
        function._cache.flush()
    try:
        atomic_write_text(stamp, digest)  # two processes starting at once never see half a stamp
    except (OSError, InputError):
        pass  # an unwritable cache directory: numba does not cache there either
