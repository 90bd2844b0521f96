"""The stream positions a request's freed prompt blocks return to the prefix cache at, where a policy reads them
(Belady's next use, the learned policy's predicted class): each freed block at its own position in the freeing
request, or its latest access among every request that held it (``KVCacheManager.latest_use``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def note_uses(latest: dict[int, int], blocks: Sequence[int], start: int, stop: int, first: int) -> None:
    """Record that a request whose first block is at stream position ``first`` now holds ``blocks[start:stop]``
    (block i at ``first + i``): each block's latest access among its holders."""
    for i in range(start, stop):
        key, at = int(blocks[i]), first + i
        if latest.get(key, -1) < at:
            latest[key] = at


def latest_positions(latest: dict[int, int], freed: Sequence[int], positions: np.ndarray) -> np.ndarray:
    """The positions ``freed`` blocks return to the cache at: each its latest access among the requests that held
    it, not the last holder's own (``freed_positions``). A prefix two requests shared is let go by whichever frees it
    last; when that is the earlier one (a longer answer), its own position's next use is the later request's access,
    already past, and Belady would keep the block as if used next, however long it stays unused. The freed
    blocks leave ``latest``: no request holds them now."""
    out = positions.copy()
    for j, key in enumerate(freed):
        out[j] = max(int(out[j]), latest.pop(int(key), -1))
    if not latest:  # a dict never shrinks as keys leave: an idle instance kept the table of its busiest moment
        latest.clear()  # (as ``BlockPool.let_go`` frees its reference counts' table)
    return out


def freed_positions(keys: Sequence[int], freed: Sequence[int], first: int, at: np.ndarray | None = None) -> np.ndarray:
    """Stream positions of the ``freed`` blocks of ``keys``, a job's held prompt blocks deepest first (``keys[i]`` at
    position ``first - i``, or ``at[i]`` where given: a job holding copies of its own between them,
    ``Job.prompt_copies``), of which ``freed`` are those no other request holds, in order (``BlockPool.let_go``).
    A block still held elsewhere (a shared prefix) is skipped, not its position: numbering the freed blocks
    ``first, first - 1, ...`` gave each the position, and so the next use (Belady) or predicted class (learned), of a
    block up to the number skipped shallower. A key repeated in ``keys`` is freed at its last occurrence (the count
    reaches zero there), so the match runs from the end."""
    if len(freed) == len(keys):
        return first - np.arange(len(keys), dtype=np.int64) if at is None else at
    out = np.empty(len(freed), dtype=np.int64)
    j = len(freed) - 1
    for i in range(len(keys) - 1, -1, -1):
        if j < 0:
            break
        if keys[i] == freed[j]:
            out[j] = first - i if at is None else at[i]
            j -= 1
    return out
