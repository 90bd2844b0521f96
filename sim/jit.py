"""numba for kvsim's compiled code, with its CPU target started without importing scipy.

Every module with compiled code takes ``njit`` from here. Importing this module initialises
numba's CPU target (what numba otherwise does on the first compiled call, even one loaded from
its on-disk cache): it imports numba's implementation modules, one of which
(``numba.np.arraymath``) probes for a BLAS by importing ``scipy.linalg.cython_blas``. With
scipy installed that import costs a short run about 0.2 s (scipy.linalg pulls in numpy.f2py and
more), for nothing: kvsim's kernels use no BLAS. So the probe's module is hidden while the
target starts, and only then.

What that changes, in this process only: numba's ``np.correlate``/``np.convolve`` of float
arrays use numba's own loop instead of BLAS (the only users of the probe's answer). Everything
else is as before: the hidden entry is removed at once, so ``import scipy.linalg`` later works,
and numba's linear algebra (``np.dot``, ``np.linalg``) checks for scipy's BLAS itself when a
function using it compiles. When scipy's BLAS is already imported, nothing is hidden.
"""

from __future__ import annotations

import sys

from numba import njit
from numba.core.registry import cpu_target

__all__ = ["njit"]

BLAS_PROBE = "scipy.linalg.cython_blas"  # what numba.np.arraymath imports to decide whether a BLAS exists


def start_target() -> None:
    """Initialise numba's CPU target now, hiding scipy's BLAS from numba's probe (see above)."""
    hide = BLAS_PROBE not in sys.modules and "numba.np.arraymath" not in sys.modules
    if hide:
        sys.modules[BLAS_PROBE] = None  # an import of it fails at once, without importing scipy.linalg
    try:
        cpu_target.target_context.refresh()
    finally:
        if hide and BLAS_PROBE in sys.modules and sys.modules[BLAS_PROBE] is None:
            del sys.modules[BLAS_PROBE]


start_target()
