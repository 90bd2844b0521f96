"""The request stream: a columnar ``Trace`` with its provenance."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import TraceError

BLOCK_ID_KINDS = ("hash_ids", "chained", "synthetic-sessions", "unique")


# Block ids are held as int32 (a fleet's trace holds 140 M of them) and are below KEY_LIMIT: the cache's tier arena
# keeps them in int32 slots too (``sim.cache.arena_layout``, which takes the bound from here); a position with no next
# use is stored as KEY_LIMIT itself there.
BLOCK_ID_DTYPE = np.int32
KEY_LIMIT = (1 << 31) - 1


def check_block_id_space(needed: int, what: str) -> None:
    """Refuse (``TraceError``: exit 2) a block-id space of ``needed`` ids that int32 ids cannot number below
    ``KEY_LIMIT``; ``what``: what needs them, said first. The one check of that bound: a trace's ids at load
    (``Trace``), its generated blocks' (``trace.continuations``), the tier arena's (a hybrid model's copies)."""
    if needed > KEY_LIMIT:
        raise TraceError(f"{what} needs {needed:,} block ids but kvsim numbers them below {KEY_LIMIT:,} (int32 ids)")


_HASHED: dict[tuple, str] = {}  # file_sha256's, by the file's identity and state (this process, and its forks)
RACY_S = 2  # a file changed this recently may change again unseen within its times' granularity (git's racy files)


def file_sha256(path: Path) -> str:
    """A file's sha256 (hex), as a trace's provenance records it, read in 8 MiB blocks. A file is read once per
    process while it stays as it was (same inode, size, modification and change times): a sweep fingerprints its
    trace before its points run, and each point, in this process or a forked worker, records the same hash
    (about a second a gigabyte each). A file changed in the last ``RACY_S`` seconds is read every time: a
    filesystem's times may not tell two writes that close apart."""
    started = time.time_ns()
    stat = Path(path).stat()
    state = (str(Path(path).resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if state in _HASHED:
        return _HASHED[state]
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if max(stat.st_mtime_ns, stat.st_ctime_ns) < started - RACY_S * 10**9:
        _HASHED[state] = hexdigest
    return hexdigest


@dataclass(slots=True)
class TraceProvenance:
    """Where a trace came from and what validation did to it (goes into every report)."""

    path: str | None
    format: str
    sha256: str | None
    rows_read: int
    rows_used: int
    rows_skipped: int
    skip_reasons: dict[str, int]
    block_ids: str
    block_tokens: int
    block_conversion: str | None = None
    inputs_truncated: int = 0  # prompts cut to workload.max_input_tokens
    rows_reordered: int = 0  # rows earlier in time than a row above them in the file: the requests are sorted by arrival
    request_range: tuple[int, int] | None = None  # [first, last) requests used, when a range was selected
    time_unit: str | None = None  # the unit numeric timestamps were read in (None: datetimes)
    variant: str | None = None  # a published variant of the format (trace.formats.Variant), told by its keys
    # requests a range setting left out, by the setting ("workload.range_start=0.5": 9683): rows_used excludes them;
    # only a message that no request is left names them (not in the report, whose request_range says it)
    range_dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_skipped": self.rows_skipped,
            "skip_reasons": dict(sorted(self.skip_reasons.items())),
            "block_ids": self.block_ids,
            "block_tokens": self.block_tokens,
        }
        if self.block_conversion:
            out["block_conversion"] = self.block_conversion
        if self.inputs_truncated:
            out["inputs_truncated"] = self.inputs_truncated
        if self.rows_reordered:
            out["rows_reordered"] = self.rows_reordered
        if self.request_range is not None:
            out["request_range"] = list(self.request_range)
        if self.variant is not None:
            out["variant"] = self.variant
        return out


@dataclass(slots=True)
class Trace:
    """Columnar requests sorted by arrival; prompt blocks in CSR form.

    ``block_ids`` is None for the ``unique`` kind: block j of the stream then has id j,
    so a 10-million-request token-count trace never materialises its block ids. Ids are int32
    (``BLOCK_ID_DTYPE``): a trace whose id space reaches ``KEY_LIMIT`` is refused when it is built.
    """

    arrival_s: np.ndarray  # float64, seconds from the first request
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    session_id: np.ndarray  # int64, -1 where the trace has no session
    block_offsets: np.ndarray  # int64, length n + 1
    block_ids: np.ndarray | None  # int32 dense ids, or None (unique kind)
    num_unique_blocks: int
    provenance: TraceProvenance

    def __post_init__(self) -> None:
        """Refuse an id space int32 ids cannot hold (its ids would have wrapped), and hold the ids as int32 (the
        loaders make them so; ids given in another dtype, by a test or a tool, are converted once, here)."""
        source = self.provenance.path or f"the {self.provenance.format} workload"
        check_block_id_space(self.num_unique_blocks, source)
        ids = None if self.block_ids is None else np.asarray(self.block_ids)
        if ids is not None and ids.dtype != BLOCK_ID_DTYPE:
            if len(ids) and (ids.min() < 0 or ids.max() >= KEY_LIMIT):
                raise TraceError(f"{source}: block ids must be in [0, {KEY_LIMIT:,})")
            self.block_ids = ids.astype(BLOCK_ID_DTYPE)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def num_accesses(self) -> int:
        """Block lookups if every prompt block of every request is looked up once."""
        return int(self.block_offsets[-1])

    def blocks(self, i: int) -> np.ndarray:
        """Dense block ids of request ``i``'s prompt."""
        lo, hi = int(self.block_offsets[i]), int(self.block_offsets[i + 1])
        if self.block_ids is None:
            return np.arange(lo, hi, dtype=BLOCK_ID_DTYPE)
        return self.block_ids[lo:hi]

    def access_stream(self) -> np.ndarray:
        """Every prompt block of every request in arrival order (the plain access stream)."""
        if self.block_ids is None:
            return np.arange(self.num_accesses, dtype=BLOCK_ID_DTYPE)
        return self.block_ids

    def select_range(self, start: float, end: float) -> None:
        """Keep the requests between fractions ``start`` and ``end`` of the trace (arrival order).

        Block ids keep their values (so they still match across ranges); time restarts at 0.
        """
        n = len(self)
        first, last = int(round(start * n)), int(round(end * n))
        if (first, last) == (0, n):
            return
        lo, hi = int(self.block_offsets[first]), int(self.block_offsets[last])
        self.arrival_s = self.arrival_s[first:last] - (self.arrival_s[first] if last > first else 0.0)
        self.input_tokens, self.output_tokens = self.input_tokens[first:last], self.output_tokens[first:last]
        self.session_id = self.session_id[first:last]
        self.block_offsets = self.block_offsets[first:last + 1] - lo
        if self.block_ids is not None:
            self.block_ids = self.block_ids[lo:hi]
            self.num_unique_blocks = int(np.unique(self.block_ids).size)
        else:
            self.block_ids = np.arange(lo, hi, dtype=BLOCK_ID_DTYPE)  # keep the global ids of the unique kind
            self.num_unique_blocks = hi - lo
        self.provenance.request_range = (first, last)
        dropped = {f"workload.range_start={start}": first, f"workload.range_end={end}": n - last}
        self.provenance.range_dropped = {setting: count for setting, count in dropped.items() if count}
        self.provenance.rows_used = last - first

    def longer_than(self, max_tokens: int) -> np.ndarray:
        """Where a request's prompt + output tokens exceed ``max_tokens`` (its output counted as at least one token:
        every request decodes one), as a serving run's ``max_model_len`` refuses it (``sim.serving.admission``)."""
        return self.input_tokens + np.maximum(self.output_tokens, 1) > max_tokens

    def drop(self, mask: np.ndarray, reason: str) -> int:
        """Remove the requests where ``mask`` is true and count them under ``reason`` in the
        provenance's skip reasons (requests a run can never serve are skipped, not simulated).
        Arrival times and block ids of the others are unchanged. Returns how many were removed."""
        mask = np.asarray(mask, dtype=bool)
        removed = int(mask.sum())
        if removed == 0:
            return 0
        keep = ~mask
        counts = np.diff(self.block_offsets)
        if self.block_ids is not None:
            self.block_ids = self.block_ids[np.repeat(keep, counts)]
            self.num_unique_blocks = int(np.unique(self.block_ids).size)
        self.block_offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        if self.block_ids is None:
            self.num_unique_blocks = int(self.block_offsets[-1])
        self.arrival_s, self.input_tokens = self.arrival_s[keep], self.input_tokens[keep]
        self.output_tokens, self.session_id = self.output_tokens[keep], self.session_id[keep]
        prov = self.provenance
        prov.rows_used -= removed
        prov.rows_skipped += removed
        prov.skip_reasons[reason] = prov.skip_reasons.get(reason, 0) + removed
        return removed

    def truncate_inputs(self, max_tokens: int) -> None:
        """Cut prompts longer than ``max_tokens`` (and their block lists); count them in the provenance."""
        long = self.input_tokens > max_tokens
        if not long.any():
            return
        bs = self.provenance.block_tokens
        counts = np.diff(self.block_offsets)
        kept = np.minimum(counts, -(-max_tokens // bs))
        if self.block_ids is not None:
            owner = np.repeat(np.arange(len(counts)), counts)
            depth = np.arange(len(owner)) - self.block_offsets[owner]
            self.block_ids = self.block_ids[depth < kept[owner]]
            self.num_unique_blocks = int(np.unique(self.block_ids).size)
        self.block_offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        if self.block_ids is None:
            self.num_unique_blocks = int(self.block_offsets[-1])
        self.input_tokens = np.minimum(self.input_tokens, max_tokens)
        self.provenance.inputs_truncated = int(long.sum())
