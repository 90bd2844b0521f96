"""sim.jit starts numba's CPU target without importing scipy, and leaves scipy and numba's BLAS
users working for whatever the same process does next."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A fresh process: the test process may have imported scipy already (then nothing is hidden).
AFTER_START = textwrap.dedent("""
    import sys
    import sim.jit
    from numba.core.registry import cpu_target
    assert "numba.np.arraymath" in sys.modules, "the CPU target was not started"
    assert "scipy.linalg" not in sys.modules, "starting the target imported scipy.linalg"
    assert "scipy.linalg.cython_blas" not in sys.modules, "the hidden probe was left in sys.modules"

    import numpy as np
    import scipy.linalg
    from numba import njit

    @njit
    def product(a, b):
        return np.dot(a, b)  # numba calls scipy's BLAS for this: it must find it

    a = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(product(a, a.T), a @ a.T)  # small integers: exact in any summation order
    assert np.array_equal(scipy.linalg.inv(np.diag([2.0, 4.0])), np.diag([0.5, 0.25]))
    print("ok")
""")


def test_target_starts_without_scipy_and_scipy_blas_still_works_afterwards():
    pytest.importorskip("scipy")
    proc = subprocess.run([sys.executable, "-c", AFTER_START], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
