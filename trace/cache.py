"""The workload cache (``--workload-cache PATH``, ``workload.cache``): a loaded trace kept as a binary file.

What is kept is ``load_trace``'s result — the validated, block-interned ``Trace`` arrays and their
provenance — in one binary file written atomically: a JSON header (the key, the provenance, where
each array lies, its CRC-32) with a CRC-32 of its own, and then each array's raw bytes in the dtype the simulator uses, at
64-byte-aligned offsets (nothing pickled). A hit memory-maps the file (copy on write): the arrays
are the file's pages in the page cache, so a 10 M-access stream is neither read into fresh memory
nor converted (``np.load`` of an ``.npz`` copies every array, and narrowed ones twice); reading it
costs a CRC-32 pass, which checks that no byte of it changed.

It is keyed by the trace file's sha256 and by everything else that shapes that result: the loader
settings (format, time unit, limit, strict validation, block size, block mismatch, request token
bound), the source of the modules that build it and the versions of the libraries that parse it. A key that differs rebuilds the cache (and says so on stderr, logger
``kvsim``); a cache that cannot be read is rebuilt with a warning. It is never used stale.

The key hashes the file's content, every time: a size + mtime check could skip that, but an
edit that keeps both (coarse timestamps, ``touch -d``, a copy over the file) would then replay
an old trace silently. sha256 runs at about 1 GB/s here (SHA-NI); the report needs the file's
hash anyway.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import mmap
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sim.config_rules import request_token_bound
from sim.config_workload import WorkloadConfig
from sim.errors import InputError, quote
from sim.report.output import atomic_write
from trace.request import BLOCK_ID_DTYPE, Trace, TraceProvenance, file_sha256

# of the file layout below (1: an .npz; 2: no CRC-32 of the header; 3: int64 block ids; 4: block ids always flat;
# 5: no recorded answers' blocks)
FORMAT_VERSION = 6
# then the header's length (uint64, little-endian) and CRC-32 (uint32), the header, the arrays
MAGIC = b"kvsim-workload-cache\n"
PREFIX = struct.Struct("<QI")
ALIGN = 64  # each array starts at a multiple of this: aligned like any numpy array
# the block ids as the Trace holds them: flat, or as runs (offsets, first ids, lengths), or neither (unique kind)
ARRAYS = ("arrival_s", "input_tokens", "output_tokens", "session_id", "block_offsets", "flat_ids", "run_offsets",
          "run_first", "run_length", "answer_offsets", "answer_ids")
# The modules whose code decides what load_trace returns, and the libraries that parse for it.
SOURCES = ("loaders.py", "scan.py", "chats.py", "readers.py", "csv_reader.py", "jsonl_reader.py", "formats.py",
           "sniff.py", "datetimes.py", "validation.py", "blocks.py", "answers.py", "arrow.py", "request.py",
           "id_runs.py", "cache.py")
LIBRARIES = ("numpy", "pyarrow", "pandas", "orjson")
LOG = logging.getLogger("kvsim.workload_cache")


def cache_key(workload: WorkloadConfig, block_size: int, sha256: str) -> dict[str, Any]:
    """Everything the loaded trace depends on: the file's content, the settings, the code."""
    code = hashlib.sha256()
    for name in SOURCES:
        code.update((Path(__file__).parent / name).read_bytes())
    return {
        "format_version": FORMAT_VERSION,
        "trace sha256": sha256,
        **_loader_settings(workload, block_size),
        "loader code sha256": code.hexdigest(),
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def _loader_settings(workload: WorkloadConfig, block_size: int) -> dict[str, Any]:
    """The settings besides the file that shape what ``load_trace`` returns."""
    return {
        "workload.format": workload.format,
        "workload.time_unit": workload.time_unit,
        "workload.limit": workload.limit,
        "workload.strict_validation": workload.strict_validation,
        "workload.block_mismatch": workload.block_mismatch,
        "workload.max_request_tokens": request_token_bound(workload),
        "serving.block_size": block_size,
    }


def _version(library: str) -> str:
    from importlib import metadata  # only when a cache is used: it costs a short run ~10 ms

    return metadata.version(library)


def load_trace_cached(workload: WorkloadConfig, block_size: int) -> Trace:
    """``load_trace``, through the cache at ``workload.cache`` when one is set, else through the process's last
    loaded trace (``_last_loaded``)."""
    path = Path(workload.trace) if workload.trace is not None else None
    if path is None or not path.is_file():
        return load_trace(workload, block_size)  # (a missing trace is load_trace's error to word)
    if workload.cache is None:
        return _last_loaded(workload, block_size, path)
    cache = Path(workload.cache)
    key = cache_key(workload, block_size, file_sha256(path))
    trace, stale = _read(cache, key)
    if trace is not None:
        trace.provenance.path = str(path)  # the same content may have moved
        return trace
    if stale:
        LOG.warning("kvsim: workload cache %s %s; rebuilding it", cache, stale)
    trace = load_trace(workload, block_size, sha256=key["trace sha256"])
    try:
        _write(cache, key, trace)
    except InputError as exc:  # the run goes on without a cache
        LOG.warning("kvsim: workload cache not written: %s", exc)
    else:
        LOG.info("kvsim: workload cache %s written", cache)
    return trace


# The trace files this process loaded without a workload cache, by path, content and loader settings, the least
# recently used first: the last always, and those before it while their arrays fit KEPT_TRACE_BYTES together (a
# sweep's up-front check reads each of its traces once and its points then find them here, a forked worker too; a
# process that moves on to other traces lets the oldest go)
_LAST: dict[str, Trace] = {}
KEPT_TRACE_BYTES = 2**30  # what a process holds of traces beyond the one in use: a bound on memory, not a tuning


def trace_read_key(workload: WorkloadConfig, block_size: int) -> str:
    """What ``load_trace_cached`` reads of a config: the trace's path and every loader setting (configs of one key read
    the same requests)."""
    return json.dumps([workload.trace, _loader_settings(workload, block_size)], default=str)


def _last_loaded(workload: WorkloadConfig, block_size: int, path: Path) -> Trace:
    """``load_trace``, or a copy of a trace this process loaded before (``_LAST``) when its file (path and content:
    sha256) and every loader setting are the same: a max-rate search, a plan's or a sweep's points, ``--seeds`` load
    one trace again and again, each load a fresh parse (a tenth of a 300-request plan's time). The copy is a new
    ``Trace`` and provenance over the same arrays, which nothing changes in place (``Trace``'s methods replace
    them)."""
    sha256 = file_sha256(path)
    key = json.dumps([str(path), sha256, _loader_settings(workload, block_size)])
    kept = _LAST.get(key)
    if kept is None:
        trace = load_trace(workload, block_size, sha256=sha256)
        _LAST[key] = _detached(trace)
        while len(_LAST) > 1 and sum(_array_bytes(held) for held in _LAST.values()) > KEPT_TRACE_BYTES:
            del _LAST[next(iter(_LAST))]
        return trace
    _LAST[key] = _LAST.pop(key)  # (the latest used: kept longest)
    return _detached(kept)


def _array_bytes(trace: Trace) -> int:
    """The bytes of a trace's arrays (what keeping it holds in memory)."""
    return sum(array.nbytes for array in _arrays(trace).values() if array is not None)


def _detached(trace: Trace) -> Trace:
    """A ``Trace`` over the same arrays with its own provenance: what one run changes (its range, its arrivals, the
    provenance's counts) another never sees."""
    return dataclasses.replace(trace, provenance=copy.deepcopy(trace.provenance))


def load_trace(workload: WorkloadConfig, block_size: int, sha256: str | None = None) -> Trace:
    """``trace.loaders.load_trace``, imported only when a trace file is read: pyarrow and the parsers are
    ~0.1 s of imports that a cache hit does without."""
    from trace.loaders import load_trace as read

    return read(workload, block_size, sha256=sha256)


def _arrays(trace: Trace) -> dict[str, np.ndarray | None]:
    """The arrays a cache file stores for ``trace``, by their names there (``ARRAYS``)."""
    runs = trace.id_runs
    return {"arrival_s": trace.arrival_s, "input_tokens": trace.input_tokens, "output_tokens": trace.output_tokens,
            "session_id": trace.session_id, "block_offsets": trace.block_offsets, "flat_ids": trace.flat_ids,
            "run_offsets": None if runs is None else runs.offsets, "run_first": None if runs is None else runs.first,
            "run_length": None if runs is None else runs.length, "answer_offsets": trace.answer_offsets,
            "answer_ids": trace.answer_ids}


def _write(cache: Path, key: dict[str, Any], trace: Trace) -> None:
    stored, layout, offset = [], {}, 0
    for name, array in _arrays(trace).items():
        if array is None:
            continue
        data, layout[name] = _pack(array)
        layout[name]["offset"] = offset  # from the end of the header
        stored.append(data)
        offset += -(-data.nbytes // ALIGN) * ALIGN
    # the ids' bound, not their count: requests the loader drops leave gaps in the dense ids (``Trace.drop``)
    meta = {"key": key, "num_unique_blocks": trace.num_unique_blocks, "block_id_bound": trace.block_id_bound(),
            "arrays": layout, "provenance": dataclasses.asdict(trace.provenance)}
    header = json.dumps(meta).encode()
    header += b" " * (-(len(MAGIC) + PREFIX.size + len(header)) % ALIGN)  # the arrays start aligned
    with atomic_write(cache, binary=True) as fh:
        fh.write(MAGIC + PREFIX.pack(len(header), zlib.crc32(header)) + header)
        for data in stored:
            fh.write(data)
            fh.write(b"\0" * (-data.nbytes % ALIGN))


def _pack(array: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """An array as stored, and how to restore it: as it is, or an array of one repeated value (no
    session ids: all -1) as that value."""
    layout = {"dtype": array.dtype.str, "length": len(array), "repeated": False}
    if len(array) > 1 and array.dtype.kind == "i" and array.min() == array.max():
        layout["repeated"] = True
        array = array[:1]
    array = np.ascontiguousarray(array)
    layout["crc32"] = zlib.crc32(array)
    return array, layout


def _unpack(mapped: mmap.mmap, start: int, layout: dict[str, Any]) -> np.ndarray:
    """One array of the file, a view of its mapped pages (copy on write); a repeated value expanded."""
    count = 1 if layout["repeated"] else int(layout["length"])
    array = np.frombuffer(mapped, dtype=np.dtype(layout["dtype"]), count=count, offset=start + int(layout["offset"]))
    if zlib.crc32(array) != layout["crc32"]:
        raise ValueError("an array's CRC-32 does not match: the file was changed or damaged")
    if layout["repeated"]:
        return np.full(int(layout["length"]), array[0], dtype=array.dtype)
    return array


def _read(cache: Path, key: dict[str, Any]) -> tuple[Trace | None, str | None]:
    """The cached trace if ``cache`` holds one for ``key``; else None and why it is not used
    (None: there is no cache yet)."""
    if not cache.exists():
        return None, None
    _check_not_foreign(cache)
    try:
        with cache.open("rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a kvsim workload cache")
            length, crc32 = PREFIX.unpack(fh.read(PREFIX.size))
            if length > 1 << 30:
                raise ValueError("a header longer than any kvsim writes")
            header = fh.read(length)
            if zlib.crc32(header) != crc32:  # (its key, provenance and layout: a flipped digit changed a run)
                older = _older_format(cache)
                if older is not None:
                    return None, f"was built by another kvsim (workload cache format {older})"
                raise ValueError("the header's CRC-32 does not match: the file was changed or damaged")
            meta = json.loads(header)
            older = meta["key"].get("format_version")
            if older != FORMAT_VERSION:  # (format 3: int64 block ids; 4: always flat)
                return None, f"was built by another kvsim (workload cache format {older})"
            differ = [name for name in key if meta["key"].get(name) != key[name]]
            if differ:
                return None, f"was built for another {'trace file' if differ == ['trace sha256'] else 'setting'} " \
                             f"({', '.join(differ)} changed)"
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)  # arrays beyond its end fail, not fault
        start = len(MAGIC) + PREFIX.size + length
        layout = meta["arrays"]
        arrays = {name: _unpack(mapped, start, layout[name]) if name in layout else None for name in ARRAYS}
        # (format 5 files written before the bound was stored: their ids are dense, the count is the bound, unless
        # the loader dropped requests: those fail the check and are rebuilt, once)
        bound = meta["block_id_bound"] if "block_id_bound" in meta else meta["num_unique_blocks"]
        _check_consistent(arrays, int(bound), meta["provenance"]["rows_used"])
        provenance = meta["provenance"]
        if provenance["request_range"] is not None:
            provenance["request_range"] = tuple(provenance["request_range"])
        from trace.id_runs import IdRuns  # (here: it loads numba, which a short run without ids does without)

        runs = None if arrays["run_offsets"] is None else IdRuns(arrays["run_offsets"], arrays["run_first"],
                                                                 arrays["run_length"])
        trace = Trace(arrays["arrival_s"], arrays["input_tokens"], arrays["output_tokens"], arrays["session_id"],
                      arrays["block_offsets"], arrays["flat_ids"], int(meta["num_unique_blocks"]),
                      TraceProvenance(**provenance), runs, arrays["answer_offsets"], arrays["answer_ids"])
    except Exception as exc:  # whatever is wrong with the file, the trace is rebuilt from its source (and the warning says why)
        return None, f"cannot be read ({type(exc).__name__}: {str(exc)[:100]})"
    return trace, None


def _older_format(cache: Path) -> int | None:
    """The format version of a cache kvsim wrote before the header had a CRC-32 (format 2: the JSON header right
    after its length), or None."""
    try:
        with cache.open("rb") as fh:
            fh.seek(len(MAGIC))
            (length,) = struct.unpack("<Q", fh.read(8))
            meta = json.loads(fh.read(min(length, 1 << 30)))
        version = meta["key"]["format_version"]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return version if isinstance(version, int) and version != FORMAT_VERSION else None


def _check_not_foreign(cache: Path) -> None:
    """A file at the cache's path that no kvsim wrote (not even the start of one) is someone's data: a mistyped
    path must not overwrite it. An empty file, a damaged cache or one of format 1 (an .npz with a "meta" member) is
    rebuilt."""
    try:
        with cache.open("rb") as fh:
            start = fh.read(len(MAGIC))
    except OSError as exc:
        raise InputError(f"config key 'workload.cache': cannot read {quote(str(cache))}: "
                         f"{exc.strerror or exc}") from None
    if start and not MAGIC.startswith(start) and not start.startswith(MAGIC) and not _format_1(cache):
        raise InputError(f"config key 'workload.cache': {quote(str(cache))} exists and is not a kvsim workload cache "
                         "(it would be overwritten); remove it or give another path")


def _format_1(cache: Path) -> bool:
    """Whether ``cache`` is a workload cache of format 1: a zip (numpy's .npz) holding a "meta" array."""
    import zipfile

    try:
        with zipfile.ZipFile(cache) as archive:
            return "meta.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _check_consistent(arrays: dict[str, np.ndarray | None], id_bound: int, rows_used: int) -> None:
    """The arrays fit together as ``load_trace`` makes them, the block ids below ``id_bound`` (a damaged file fails
    here, not in a run)."""
    n = len(arrays["arrival_s"])
    offsets = arrays["block_offsets"]
    shapes_ok = (all(arrays[name].shape == (n,) for name in ARRAYS[:4]) and offsets.shape == (n + 1,)
                 and all(arrays[name].dtype == np.int64 for name in ARRAYS[1:5])
                 and arrays["arrival_s"].dtype == np.float64)
    if not shapes_ok or n == 0 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise ValueError("arrays of inconsistent shapes")
    ids, runs = arrays["flat_ids"], [arrays[name] for name in ARRAYS[6:9]]
    _check_answers(arrays["answer_offsets"], arrays["answer_ids"], n, id_bound)
    if ids is not None:
        if any(array is not None for array in runs) or ids.dtype != BLOCK_ID_DTYPE or ids.shape != (int(offsets[-1]),):
            raise ValueError(f"flat block ids of another shape or dtype ({ids.dtype})")
        if len(ids) and not 0 <= ids.min() <= ids.max() < id_bound:
            raise ValueError("block ids out of range")
    elif any(array is not None for array in runs):  # runs: each request's run lengths add up to its blocks
        run_offsets, first, length = runs
        if (any(array is None for array in runs) or (run_offsets.dtype, first.dtype, length.dtype) !=
                (np.int64, BLOCK_ID_DTYPE, np.int32) or run_offsets.shape != (n + 1,) or run_offsets[0] != 0
                or (np.diff(run_offsets) < 0).any() or not first.shape == length.shape == (int(run_offsets[-1]),)):
            raise ValueError("block id runs of another shape or dtype")
        if len(length) and (length.min() < 1 or first.min() < 0 or (first + length.astype(np.int64)).max() > id_bound):
            raise ValueError("block id runs out of range")
        ends = np.zeros(len(length) + 1, dtype=np.int64)
        np.cumsum(length, out=ends[1:])
        if not np.array_equal(ends[run_offsets], offsets):
            raise ValueError("block id runs do not cover the requests' blocks")
    if rows_used != n:
        raise ValueError("provenance does not match the arrays")


def _check_answers(offsets: np.ndarray | None, ids: np.ndarray | None, n: int, id_bound: int) -> None:
    """The recorded answers' blocks (both arrays or neither) fit the requests, their ids -1 or below ``id_bound``."""
    if offsets is None and ids is None:
        return
    if (offsets is None or ids is None or offsets.dtype != np.int64 or ids.dtype != BLOCK_ID_DTYPE
            or offsets.shape != (n + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any()
            or ids.shape != (int(offsets[-1]),)):
        raise ValueError("recorded answers' blocks of another shape or dtype")
    if len(ids) and not -1 <= ids.min() <= ids.max() < id_bound:
        raise ValueError("recorded answers' block ids out of range")
