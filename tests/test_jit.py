"""sim.jit: cached kernels load without numba's whole target, the target starts without importing
scipy, and what the same process does next (compiling, scipy, numba's BLAS users) still works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run in fresh processes (the test process has its target started, maybe scipy imported).
START_TARGET = textwrap.dedent("""
    import sys
    from sim.jit import start_target
    start_target()
    assert "numba.np.arraymath" in sys.modules, "the CPU target was not started"
    assert "scipy.linalg" not in sys.modules, "starting the target imported scipy.linalg"
    assert "scipy.linalg.cython_blas" not in sys.modules, "the hidden probe was left in sys.modules"
""")
BLAS_AFTERWARDS = textwrap.dedent("""
    import numpy as np
    import scipy.linalg
    from numba import njit

    @njit
    def product(a, b):
        return np.dot(a, b) + np.zeros(1)  # numba calls scipy's BLAS for this, and allocates

    a = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(product(a, a.T), a @ a.T)  # small integers: exact in any summation order
    assert np.array_equal(scipy.linalg.inv(np.diag([2.0, 4.0])), np.diag([0.5, 0.25]))
    print("ok")
""")
# LRU stack distances (the smallest LRU cache that hits) of a b a c b a: -, -, 2, -, 3, 3; by a cached
# kernel that allocates (it needs numba's runtime).
LOAD_CACHED = textwrap.dedent("""
    import sys
    import numpy as np
    from sim.cache.mrc import stack_distances
    d = stack_distances(np.array([0, 1, 0, 2, 1, 0]))
    assert d.tolist()[2] == 2 and d.tolist()[4:] == [3, 3], d
    lean = "numba.np.arraymath" not in sys.modules
""")


def _run(code: str, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)


def test_target_starts_without_scipy_and_scipy_blas_still_works_afterwards(tmp_path):
    pytest.importorskip("scipy")
    proc = _run(START_TARGET + BLAS_AFTERWARDS, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_a_cached_kernel_loads_without_the_whole_target_and_compiling_works_after_it(tmp_path):
    pytest.importorskip("scipy")
    cold = _run(LOAD_CACHED + "assert not lean, 'compiled without the target'\nprint('ok')", tmp_path)
    assert cold.returncode == 0 and cold.stdout.strip() == "ok", cold.stderr[-2000:]
    warm = _run(LOAD_CACHED + "assert lean, 'loading started the whole target'\n" + BLAS_AFTERWARDS, tmp_path)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert warm.stdout.strip() == "ok"


PROGRESS_ON = "from sim.progress import show_progress\nshow_progress(True)\n"
# a second signature of the same kernel: compiled again on a cold cache
SECOND_COMPILE = "stack_distances(np.array([0, 1, 0], dtype=np.int32))\n"


def test_a_cold_cache_says_once_that_it_compiles_where_progress_is_shown(tmp_path):
    """A newcomer's first run compiles for seconds to a minute: said once on standard error where progress is shown
    (a terminal, not --quiet), never on a warm cache or where progress is off (a pipe, a report, a test)."""
    from sim.jit import COMPILING_NOTE

    silent = _run(LOAD_CACHED + SECOND_COMPILE, tmp_path / "off")
    assert silent.returncode == 0 and COMPILING_NOTE not in silent.stderr, silent.stderr[-2000:]
    cold = _run(PROGRESS_ON + LOAD_CACHED + SECOND_COMPILE, tmp_path / "on")
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert cold.stderr.count(COMPILING_NOTE) == 1, cold.stderr[-2000:]
    warm = _run(PROGRESS_ON + LOAD_CACHED + SECOND_COMPILE, tmp_path / "on")
    assert warm.returncode == 0 and COMPILING_NOTE not in warm.stderr, warm.stderr[-2000:]


BROKEN_INTERNALS = textwrap.dedent("""
    import sim.jit

    class Broken:  # stands for a numba whose internals differ from what sim.jit expects
        def initialize(self, context):
            raise AttributeError("no such internal")

    sim.jit.rtsys = Broken()
""")


def test_a_numba_with_other_internals_still_loads_cached_kernels_its_own_way(tmp_path):
    assert _run(LOAD_CACHED + "print('ok')", tmp_path).stdout.strip() == "ok"  # fill the cache
    proc = _run(BROKEN_INTERNALS + LOAD_CACHED + "assert not lean, 'numba\\'s own path starts the target'\n"
                + "print('ok')", tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


ARRAY_METHOD_KERNEL = textwrap.dedent("""
    from sim.jit import njit

    @njit(cache=True)
    def largest(a):
        return a.max()  # numba's implementation lives in numba.np.arraymath, whose import probes for a BLAS
""")
LOAD_ARRAY_METHOD = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from array_method_kernel import largest
    assert largest(np.array([3, 9, 4])) == 9
    assert "scipy.linalg" not in sys.modules, "loading the cached kernel imported scipy.linalg"
""")


def test_loading_a_cached_kernel_that_calls_numpy_methods_does_not_import_scipy(tmp_path):
    # Loading rebuilds the environments of the numba functions the kernel calls, importing their modules.
    pytest.importorskip("scipy")
    (tmp_path / "array_method_kernel.py").write_text(ARRAY_METHOD_KERNEL)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for code in (LOAD_ARRAY_METHOD, LOAD_ARRAY_METHOD + BLAS_AFTERWARDS):  # compile, then load from the cache
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                              env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


STALE_KERNEL = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path
    from sim.jit import flush_when_sources_change, njit
    from stalepkg import consts
    from stalepkg.consts import LIMIT

    @njit(cache=True)
    def limit():
        return LIMIT

    if os.environ.get("FLUSH") == "1":
        flush_when_sources_change(sys.modules[__name__], [Path(consts.__file__)])
""")


def _read_limit(package: Path, cache_dir: Path, flush: bool) -> str:
    env = {**os.environ, "PYTHONPATH": f"{package}{os.pathsep}{ROOT}", "NUMBA_CACHE_DIR": str(cache_dir),
           "FLUSH": "1" if flush else "0"}
    proc = subprocess.run([sys.executable, "-c", "from stalepkg.kernel import limit; print(limit())"], cwd=package,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("flush", [False, True])
def test_a_constant_edited_in_another_module_reaches_cached_code_only_with_the_flush(tmp_path, flush):
    """numba keys a cached function on its own file: a constant it inlines from another module, once
    edited, stays stale in the cached machine code unless ``flush_when_sources_change`` sees the edit
    (what the engine and the learned kernel rely on)."""
    package = tmp_path / "src"
    (package / "stalepkg").mkdir(parents=True)
    (package / "stalepkg" / "__init__.py").write_text("")
    (package / "stalepkg" / "kernel.py").write_text(STALE_KERNEL)
    consts = package / "stalepkg" / "consts.py"
    consts.write_text("LIMIT = 1\n")
    assert _read_limit(package, tmp_path / "cache", flush) == "1"
    consts.write_text("LIMIT = 2\n")
    assert _read_limit(package, tmp_path / "cache", flush) == ("2" if flush else "1")  # False: numba's staleness


@pytest.mark.parametrize("argv", [["main.py", "--trace-stats", "--no-plot", "--preset", "smoke"],
                                  ["-m", "learned.train", "--out", "{tmp}/m.txt"]])
def test_numba_disable_jit_is_one_line_exit_2(argv, tmp_path):
    """The kernels call numba intrinsics with no Python fallback: NUMBA_DISABLE_JIT=1 was a traceback, exit 1."""
    done = subprocess.run([sys.executable, *[a.format(tmp=tmp_path) for a in argv]], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().endswith("error: NUMBA_DISABLE_JIT is set: kvsim's cache and serving kernels run "
                                        "only compiled; unset it"), done.stderr
