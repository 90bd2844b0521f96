"""The request stream: a columnar ``Trace`` with its provenance."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.errors import TraceError

if TYPE_CHECKING:
    from trace.id_runs import IdRuns

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

    The prompts' block ids are held in one of two forms, which ``__post_init__`` picks from the ids it is given
    (``flat_ids``; every loader, synthetic kind and the workload cache builds a ``Trace`` so): flat (``flat_ids``, one
    int32 id per block) or, where that takes at most half the bytes, as runs of consecutive ids (``id_runs``; a
    fleet's 140 M ids are 1.3 M runs, 18 MB instead of 0.52 GiB); the other field is then None. Read them through
    ``blocks(i)`` (one request's), ``access_stream()`` (all of them, flat: built afresh from runs, so read it once and
    keep it no longer than the pass that needs it), ``has_block_ids``, ``block_id_bound()`` and ``id_bytes``.

    Both are None for the ``unique`` kind: block j of the stream then has id j, so a 10-million-request
    token-count trace never materialises its block ids. Ids are int32 (``BLOCK_ID_DTYPE``): a trace whose id space
    reaches ``KEY_LIMIT`` is refused when it is built.
    """

    arrival_s: np.ndarray  # float64, seconds from the first request
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    session_id: np.ndarray  # int64, -1 where the trace has no session
    block_offsets: np.ndarray  # int64, length n + 1
    flat_ids: np.ndarray | None  # int32 dense ids, flat; None when held as runs, or for the unique kind
    num_unique_blocks: int
    provenance: TraceProvenance
    id_runs: IdRuns | None = None  # the ids as runs; None when held flat, or for the unique kind
    # the recorded answers' full blocks (``trace.answers``), CSR: offsets int64 [requests + 1], ids int32 in the
    # prompts' id space, -1 where no prompt holds one; None where the trace records no answer's tokens
    answer_offsets: np.ndarray | None = None
    answer_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Refuse an id space int32 ids cannot hold (its ids would have wrapped), hold the ids as int32 (the
        loaders make them so; ids given in another dtype, by a test or a tool, are converted once, here), and hold
        given flat ids in the smaller form."""
        source = self.provenance.path or f"the {self.provenance.format} workload"
        check_block_id_space(self.num_unique_blocks, source)
        if self.answer_offsets is not None:
            self.answer_offsets = np.asarray(self.answer_offsets, dtype=np.int64)
            self.answer_ids = np.asarray(self.answer_ids, dtype=BLOCK_ID_DTYPE)
        if self.flat_ids is None:
            return
        ids = np.asarray(self.flat_ids)
        if ids.dtype != BLOCK_ID_DTYPE:
            if len(ids) and (ids.min() < 0 or ids.max() >= KEY_LIMIT):
                raise TraceError(f"{source}: block ids must be in [0, {KEY_LIMIT:,})")
            ids = ids.astype(BLOCK_ID_DTYPE)
        self._hold(ids)

    def _hold(self, ids: np.ndarray) -> None:
        """Hold ``ids`` (int32, flat, CSR by ``block_offsets``) as runs where they take at most half the bytes of
        the flat array (a trace of random ids stays flat)."""
        from trace.id_runs import IdRuns, count_runs  # (when ids are held: it loads numba)

        offsets = np.asarray(self.block_offsets, dtype=np.int64)
        runs = int(count_runs(offsets, ids))
        if 2 * IdRuns.nbytes_for(len(offsets) - 1, runs) <= ids.nbytes:
            self.flat_ids, self.id_runs = None, IdRuns.of_flat(offsets, ids, runs)
        else:
            self.flat_ids, self.id_runs = ids, None

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def num_accesses(self) -> int:
        """Block lookups if every prompt block of every request is looked up once."""
        return int(self.block_offsets[-1])

    @property
    def has_block_ids(self) -> bool:
        """Whether the trace names its blocks' ids (False: the ``unique`` kind, block j has id j)."""
        return self.flat_ids is not None or self.id_runs is not None

    @property
    def id_bytes(self) -> int:
        """The bytes the block ids take as held (0: the ``unique`` kind)."""
        if self.id_runs is not None:
            return self.id_runs.nbytes
        return self.flat_ids.nbytes if self.flat_ids is not None else 0

    def block_id_bound(self) -> int:
        """One more than the largest block id (0 without blocks): what arrays indexed by block id need."""
        if self.id_runs is not None:
            return self.id_runs.bound()
        if self.flat_ids is None:
            return self.num_accesses
        return int(self.flat_ids.max()) + 1 if len(self.flat_ids) else 0

    def blocks(self, i: int) -> np.ndarray:
        """Dense block ids of request ``i``'s prompt (int32)."""
        if self.id_runs is not None:
            return self.id_runs.of(i)
        lo, hi = int(self.block_offsets[i]), int(self.block_offsets[i + 1])
        if self.flat_ids is None:
            return np.arange(lo, hi, dtype=BLOCK_ID_DTYPE)
        return self.flat_ids[lo:hi]

    def access_stream(self) -> np.ndarray:
        """Every prompt block of every request in arrival order (the plain access stream), int32: the held array
        (flat), or one built from the runs or (``unique``) the positions, which the caller holds only as long as its
        pass needs it."""
        if self.id_runs is not None:
            return self.id_runs.expand(self.num_accesses)
        if self.flat_ids is None:
            return np.arange(self.num_accesses, dtype=BLOCK_ID_DTYPE)
        return self.flat_ids

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
        if self.answer_offsets is not None:
            a_lo, a_hi = int(self.answer_offsets[first]), int(self.answer_offsets[last])
            self.answer_ids = self.answer_ids[a_lo:a_hi]
            self.answer_offsets = self.answer_offsets[first:last + 1] - a_lo
        if self.id_runs is not None:
            ids = self.id_runs.span(first, last, hi - lo)
            self.num_unique_blocks = int(np.unique(ids).size)
        elif self.flat_ids is not None:
            ids = self.flat_ids[lo:hi]
            self.num_unique_blocks = int(np.unique(ids).size)
        else:
            ids = np.arange(lo, hi, dtype=BLOCK_ID_DTYPE)  # keep the global ids of the unique kind
            self.num_unique_blocks = hi - lo
        self.block_offsets = self.block_offsets[first:last + 1] - lo
        self._hold(ids)
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
        ids = self.access_stream()[np.repeat(keep, counts)] if self.has_block_ids else None
        self.block_offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        if ids is not None:
            self.num_unique_blocks = int(np.unique(ids).size)
            self._hold(ids)
        else:
            self.num_unique_blocks = int(self.block_offsets[-1])
        self.arrival_s, self.input_tokens = self.arrival_s[keep], self.input_tokens[keep]
        self.output_tokens, self.session_id = self.output_tokens[keep], self.session_id[keep]
        if self.answer_offsets is not None:
            answer_counts = np.diff(self.answer_offsets)
            self.answer_ids = self.answer_ids[np.repeat(keep, answer_counts)]
            self.answer_offsets = np.concatenate([[0], np.cumsum(answer_counts[keep])]).astype(np.int64)
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
        ids = None
        if self.has_block_ids:
            owner = np.repeat(np.arange(len(counts)), counts)
            depth = np.arange(len(owner)) - self.block_offsets[owner]
            ids = self.access_stream()[depth < kept[owner]]
        self.block_offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        if ids is not None:
            self.num_unique_blocks = int(np.unique(ids).size)
            self._hold(ids)
        else:
            self.num_unique_blocks = int(self.block_offsets[-1])
        self.input_tokens = np.minimum(self.input_tokens, max_tokens)
        self.provenance.inputs_truncated = int(long.sum())
        if self.answer_offsets is not None:  # (a cut prompt's recorded answer no longer follows it: blocks of its own)
            self._cut_answers(long)

    def _cut_answers(self, cut: np.ndarray) -> None:
        """The recorded answers of the requests ``cut`` (their prompts cut) become as many blocks as their new
        prompts' KV fills, none known to any prompt (-1)."""
        bs = self.provenance.block_tokens
        full = self.input_tokens // bs
        counts = np.diff(self.answer_offsets)
        counts[cut] = (self.input_tokens[cut] + np.maximum(self.output_tokens[cut], 1) - 1) // bs - full[cut]
        owner = np.repeat(np.arange(len(counts)), counts)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        depth = np.arange(int(offsets[-1])) - offsets[owner]
        ids = np.full(int(offsets[-1]), -1, dtype=BLOCK_ID_DTYPE)
        kept = ~cut[owner]
        ids[kept] = self.answer_ids[self.answer_offsets[owner[kept]] + depth[kept]]
        self.answer_offsets, self.answer_ids = offsets, ids
