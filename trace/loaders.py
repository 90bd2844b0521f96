"""Loading a trace file: ``load_trace``, from a path to a validated, time-normalised ``Trace`` with block ids.

The pipeline: recognise the file's format (``trace.formats``), read it in chunks of whole lines
(``trace.readers``: a fast pyarrow reader, the reference readers where it cannot decide), parse
each chunk with its format's parser and validate it over flat arrays, keeping valid rows in file
order and counting the others by reason (``trace.scan``). ``load_trace`` then normalises time to
seconds from the first request, applies the limit, builds the block model and records
provenance.

Input is checked at this boundary: the file must be UTF-8 text carrying the format's columns
(else exit 2), JSON lines are parsed strictly (RFC 8259), and a row whose prompt + output exceeds
``workload.max_request_tokens`` is skipped before any array is sized by it. The formats, their
columns and time units are listed in ``trace.formats``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from sim.config_fields import INT64_MAX, MAX_TRACE_SPAN_S  # datetimes: int64 nanoseconds (trace.formats.Chunk)
from sim.config_rules import request_token_bound
from sim.config_workload import WorkloadConfig
from sim.errors import ConfigError, TraceError
from trace import blocks as bm
from trace.answers import answer_hashes, intern_with_answers
from trace.arrow import numpy_view, valid
from trace.chats import chat_sessions, children_before_parents
from trace.formats import FORMATS, TIME_UNITS, TraceFormat, variant_of
from trace.jsonl_reader import first_record_with, keys_in_records
from trace.readers import IdLists, first_line
from trace.request import Trace, TraceProvenance, file_sha256
from trace.scan import Established, collect
from trace.sniff import check_time_unit, sniff_format
from trace.validation import SkipLedger, no_usable_requests

LOG = logging.getLogger("kvsim.trace")


def refuse_records(path: Path, fmt: TraceFormat) -> None:
    """Refuse a JSONL trace with a record of a kind kvsim cannot replay (``TraceFormat.refused``), naming its first
    line, before any row is read: skipped, such a record was a row short of a key while the requests it holds
    were lost."""
    for key, why in fmt.refused:
        line = first_record_with(path, key)
        if line is not None:
            raise TraceError(f"{path}: line {line} is {why}")



def _chained_answers(path: Path, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The optional keys read of those the records have (``keys``): an answer's token ids (``output_tok_ids``)
    continue the chain of its prompt's, so without ``input_tok_ids`` they are not read, as a note on stderr says."""
    if "output_tok_ids" not in keys or "input_tok_ids" in keys:
        return keys
    LOG.warning("kvsim: note: %s: output_tok_ids are not read: no record has input_tok_ids, whose block hashes they "
                "continue", path)
    return tuple(key for key in keys if key != "output_tok_ids")


def _dense_codes(labels: pa.Array) -> np.ndarray:
    """Dense int64 codes of text labels in order of first appearance; -1 for null."""
    indices = labels.dictionary_encode().indices
    return np.where(valid(indices), numpy_view(indices), -1).astype(np.int64)


def _numbered_by_arrival(session: np.ndarray) -> np.ndarray:
    """Session codes renumbered densely in order of first appearance in ``session``'s (arrival) order, -1 kept: the
    codes were numbered in file order, and session-affinity routes by the number, so a file written out of time order
    sent the sorted file's sessions elsewhere."""
    named = session >= 0
    if not named.any():
        return session
    codes = session[named]
    labels, first = np.unique(codes, return_index=True)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(labels), dtype=np.int64)
    out = session.copy()
    out[named] = rank[np.searchsorted(labels, codes)]
    return out


def _charge_children_before_parents(path: Path, early: np.ndarray, arrival: np.ndarray, chat: np.ndarray,
                                    parent: np.ndarray, time_unit: str | None, ledger: SkipLedger) -> None:
    """Count the records that come before their parents (``children_before_parents``) as ``child_before_parent``;
    with strict validation the first in the file is an error naming its chat and its parent's. (The last record to
    arrive never is one: some request is always left.)"""
    if ledger.strict:
        r = int(np.argmax(early))
        # 15 significant digits, not :g's 6: epoch milliseconds (1.7e12) printed child and parent as one time
        raise TraceError(f"{path}: the record of chat_id {chat[r]} (timestamp {arrival[r]:.15g} {time_unit}) comes "
                         f"before its parent, chat_id {parent[r]} (timestamp {arrival[chat == parent[r]].min():.15g} "
                         f"{time_unit}): child before parent")
    ledger.add("child_before_parent", int(early.sum()))


# Arrival times are float64 in the trace's unit until made relative to the first: past 2^52 ms (142,000 years) one
# step of a float64 is more than a millisecond, and the times of a trace offset that far (a corrupt offset, a unit
# mistake) would be rounded silently (1e17 ms: to 16 ms). Integers past 2^53 are read as int64 (exact, not checked:
# trace.validation.exact_integers); times written as decimals are still float64: refused where its step passes a
# millisecond, else rounded (epoch nanoseconds to 256 ns).
TIMESTAMP_STEP_LIMIT_S = 1e-3


def check_timestamp_precision(path: Path, arrival: np.ndarray, time_unit: str) -> None:
    """Refuse numeric timestamps so large that float64 rounds them coarser than ``TIMESTAMP_STEP_LIMIT_S``; a trace
    whose span is absurd too is left to the span's check, which names the likely time unit
    (``trace.workload.check_time_span``)."""
    largest = float(np.abs(arrival).max())
    if (float(arrival.max()) - float(arrival.min())) * TIME_UNITS[time_unit] > MAX_TRACE_SPAN_S:
        return
    step_s = float(np.spacing(largest)) * TIME_UNITS[time_unit]
    if step_s > TIMESTAMP_STEP_LIMIT_S:
        raise TraceError(f"{path}: a timestamp of {largest:.6g} {time_unit} is too large to keep to the millisecond "
                         f"(times there are rounded to {step_s:g} s): a corrupt timestamp or offset?")


def load_trace(workload: WorkloadConfig, block_size: int, sha256: str | None = None) -> Trace:
    """Load ``workload.trace`` into a validated, time-normalised ``Trace`` with block ids.

    A file with no usable request is an error (every mode needs at least one). ``sha256`` is
    the file's hash when the caller has computed it already (the workload cache's key).
    """
    if workload.trace is None:
        raise ConfigError("no trace given: pass --workload-trace PATH (or set workload.trace)")
    path = Path(workload.trace)
    if not path.exists():
        raise TraceError(f"trace file not found: {path}")
    if not path.is_file():
        raise TraceError(f"trace {path} is not a regular file")
    if workload.format == "auto":
        try:
            name = sniff_format(path)
        except TraceError:
            from sim.file_kinds import other_kind  # (a config, an NS-3 table, a GPU spec given as the trace)

            said = other_kind(path, "trace")
            if said is not None:
                raise TraceError(f"trace {path}: {said}") from None
            raise
    else:
        name = workload.format
        first_line(path)  # an empty, binary or non-UTF-8 file is refused whatever the format
    fmt = FORMATS[name]
    check_time_unit(str(path), name, workload.time_unit)
    refuse_records(path, fmt)
    if fmt.kind == "jsonl" and fmt.optional:  # the optional keys some record has, searched for once: read, and
        # they tell a variant
        fmt = dataclasses.replace(fmt, optional=_chained_answers(path, keys_in_records(path, fmt.optional)))
    variant = variant_of(fmt, fmt.optional)
    time_unit = None if fmt.time_unit is None else workload.time_unit or (variant or fmt).time_unit
    ledger = SkipLedger(str(path), workload.strict_validation)
    seen = Established()
    kept, rows_read = collect(path, fmt, ledger, workload.limit, request_token_bound(workload), seen)
    if not sum(len(c.arrival) for c in kept):
        raise no_usable_requests(str(path), rows_read, ledger.counts)

    def cat(attr: str, dtype) -> np.ndarray:  # (each part cast first: an empty float64 part upcast int64 ones)
        return np.concatenate([getattr(c, attr).astype(dtype, copy=False) for c in kept])

    # datetime formats: int64 ns since the epoch (trace.formats.Chunk), made relative in integers, then seconds;
    # numeric ones: float64 in the trace's unit, made relative in it, then seconds (below); int64 where every chunk
    # read them so (integers past 2^53, which float64 rounds: trace.validation.exact_integers)
    integers = time_unit is None or all(c.arrival.dtype == np.int64 for c in kept if len(c.arrival))
    arrival = cat("arrival", np.int64 if integers else np.float64)
    if time_unit is not None and not integers:  # (integers are exact: nothing was rounded)
        check_timestamp_precision(path, arrival, time_unit)
    input_tokens = cat("input_tokens", np.int64)
    output_tokens = cat("output_tokens", np.int64)
    rows = None  # the records kept of those read (file order), when some are dropped here
    session = np.full(len(arrival), -1, dtype=np.int64)
    if kept[0].session is not None:
        session = _dense_codes(pa.concat_arrays([c.session for c in kept]))
    elif kept[0].parent_id is not None:
        chat, parent = cat("chat_id", np.int64), cat("parent_id", np.int64)
        early = children_before_parents(arrival, chat, parent)
        if early.any():
            _charge_children_before_parents(path, early, arrival, chat, parent, time_unit, ledger)
            rows = np.flatnonzero(~early)
            arrival, input_tokens, output_tokens, chat, parent = (a[rows] for a in (arrival, input_tokens,
                                                                                   output_tokens, chat, parent))
        session = chat_sessions(path, chat, parent)
    n = len(arrival)

    # Arrival order, stable so equal timestamps keep file order; time from the first request.
    order = None if (np.diff(arrival) >= 0).all() else np.argsort(arrival, kind="stable")
    reordered = 0 if order is None else int(np.count_nonzero(arrival < np.maximum.accumulate(arrival)))
    if order is not None:
        arrival, input_tokens, output_tokens, session = arrival[order], input_tokens[order], output_tokens[order], session[order]
        session = _numbered_by_arrival(session)
    if time_unit is None and int(arrival[-1]) - int(arrival[0]) > INT64_MAX:
        # datetimes more than 2^63 ns (292 years) apart: their span overflows int64 (it wrapped negative); float is
        # exact enough for a span the workload refuses anyway (sim.config_fields.MAX_TRACE_SPAN_S)
        arrival = arrival.astype(np.float64)
    arrival = arrival - arrival[0]
    if time_unit is None:
        arrival = arrival / 1e9
    else:
        # Relative first, then seconds: epoch milliseconds (1.7e12) are integers a float64 holds exactly, and so are
        # their differences, while in seconds (1.7e9, a float64 step of 238 ns) every arrival was off by up to 0.19 us.
        # Divided by 1000, not times 0.001 (inexact): 3750 ms is 3.75 s, not 3.7500000000000004, as the same time
        # written in seconds is.
        arrival = arrival / round(1 / TIME_UNITS[time_unit])

    def ordered(lists: IdLists) -> IdLists:
        taken = lists if rows is None else lists.take(rows)
        return taken if order is None else taken.take(order)

    conversion = answer_offsets = answer_ids = None
    if kept[0].hash_ids is not None:
        lists = ordered(IdLists.concat([c.hash_ids for c in kept]))
        flat, offsets = lists.values, lists.offsets
        kind = "hash_ids"
        trace_tokens = seen.tokens
        if trace_tokens != fmt.block_tokens:
            LOG.warning("kvsim: note: %s: its hash_ids cover %d-token blocks (not %s's %d): the count that matches "
                        "input_length in %s of the first %s valid records", path, trace_tokens, fmt.name,
                        fmt.block_tokens, "all" if not ledger.counts.get("hash_ids_length_mismatch") else "most",
                        f"{seen.records:,}")
        if block_size == trace_tokens or workload.block_mismatch == "trace":
            block_size = trace_tokens  # the trace's own blocks, as given (the Contract's default)
            block_ids, num_unique = bm.intern(flat)
        elif workload.block_mismatch == "split" and trace_tokens % block_size == 0:
            offsets, block_ids, num_unique = bm.split_block_ids(flat, offsets, input_tokens, trace_tokens, block_size)
            conversion = f"split {trace_tokens}-token trace blocks into {block_size}-token blocks"
        else:
            raise ConfigError(
                f"{path}: trace blocks are {trace_tokens} tokens but serving.block_size is {block_size} "
                f"(workload.block_mismatch={workload.block_mismatch}); use workload.block_mismatch=trace to replay the "
                f"trace's blocks, or split with a block_size that divides {trace_tokens}")
    elif kept[0].token_ids is not None:
        lists = ordered(IdLists.concat([c.token_ids for c in kept]))
        offsets, keys = bm.token_content_keys(lists.values, lists.offsets, block_size)
        hashes = bm.chain(offsets, keys)
        kind = "chained"
        if kept[0].output_token_ids is None:
            block_ids, num_unique = bm.intern(hashes)
        else:
            answers = ordered(IdLists.concat([c.output_token_ids for c in kept]))
            answer_offsets, generated = answer_hashes(lists, answers, output_tokens, block_size, hashes)
            block_ids, num_unique, answer_ids = intern_with_answers(hashes, generated)
    elif (session >= 0).any():
        offsets = bm.offsets_from_counts(bm.blocks_per_request(input_tokens, block_size))
        # the ids intern(chain(offsets, session_keys(...))) gives, in one compiled pass: hashing and interning every
        # block took ~190 bytes and ~1.6 us an access (a million BurstGPT v2.0-shaped rows, 94 M accesses, ran
        # --trace-stats in 151 s and 17.8 GB; now 8 s and 2.7 GB)
        block_ids, num_unique = bm.session_block_ids(offsets, input_tokens, session, block_size)
        kind = "synthetic-sessions"
    else:
        offsets = bm.offsets_from_counts(bm.blocks_per_request(input_tokens, block_size))
        block_ids, num_unique = None, int(offsets[-1])
        kind = "unique"

    provenance = TraceProvenance(
        path=str(path),
        format=name,
        sha256=sha256 or file_sha256(path),
        rows_read=rows_read,
        rows_used=n,
        rows_skipped=ledger.total,
        skip_reasons=dict(ledger.counts),
        block_ids=kind,
        block_tokens=block_size,
        block_conversion=conversion,
        rows_reordered=reordered,
        time_unit=time_unit,
        variant=None if variant is None else variant.name,
    )
    trace = Trace(
        arrival_s=arrival,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        session_id=session,
        block_offsets=offsets,
        flat_ids=block_ids,
        num_unique_blocks=num_unique,
        provenance=provenance,
        answer_offsets=answer_offsets,
        answer_ids=answer_ids,
    )
    if kind == "hash_ids":
        _drop_repeated_hash_ids(path, trace, block_ids, flat, lists.offsets, ledger.strict)
    return trace


def _drop_repeated_hash_ids(path: Path, trace: Trace, block_ids: np.ndarray, hash_ids: np.ndarray,
                            hash_offsets: np.ndarray, strict: bool) -> None:
    """Skip (``repeated_hash_ids``) a record whose hash_ids name one block twice: an id of a prefix-chained hash
    stands for its whole prefix, so it cannot recur in one prompt, and the replay counted the second as a hit of
    the prompt on itself (a [1, 1, 1, 1] record: 3 hits of 4). Judged on the run's dense block ids in one pass (a
    split trace block's first piece recurs with it): ``block_ids``, the trace's, flat (those it was built from);
    ``hash_ids``, ``hash_offsets``: the records' own, in arrival order, to name the id."""
    bad = bm.repeated_within(trace.block_offsets, block_ids, trace.num_unique_blocks) >= 0
    if not bad.any():
        return
    if strict:
        r = int(np.argmax(bad))
        own = hash_ids[hash_offsets[r]:hash_offsets[r + 1]].tolist()
        twice = next(x for i, x in enumerate(own) if x in own[:i])
        raise TraceError(f"{path}: the record arriving at {trace.arrival_s[r]:.6g} s names hash id {twice} twice in "
                         "its hash_ids (a prefix-chained id cannot recur in one prompt): repeated hash ids")
    trace.drop(bad, "repeated_hash_ids")
    if len(trace) == 0:
        raise no_usable_requests(str(path), trace.provenance.rows_read, trace.provenance.skip_reasons)
