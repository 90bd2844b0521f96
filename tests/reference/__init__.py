"""Pure-Python reference implementations of the classic policies: the test oracle the compiled
kernels (sim/cache/policies) are compared with, access by access (tests/test_cache_properties.py).

Each is a direct transcription of its paper (or of libCacheSim's variant, for S3-FIFO) with
OrderedDicts and heaps; run through the generic Python engine (``sim.cache.hooked``).
"""

from tests.reference import arc, belady, fifo, lfu, lru, s3fifo, sieve  # noqa: F401  (register themselves)
from tests.reference.base import REFERENCE

__all__ = ["REFERENCE"]
