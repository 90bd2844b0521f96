"""Block model: prompts as chains of KV blocks with prefix-chained hashes, interned to dense ids.

Every source of block identity (Mooncake hash ids, real token ids, session structure,
synthetic shared prefixes) is reduced to one 64-bit *content key* per block. Block i's
chained hash covers its content key and block i-1's chained hash, as vLLM's prefix
cache does, so equal chained hashes mean equal prefixes. Chained hashes are then
interned to dense integer ids in order of first appearance (deterministic), int32
(``trace.request.BLOCK_ID_DTYPE``; ``Trace`` refuses a space of ids that would not fit).

All work is vectorised over requests; the only Python loop runs over block depth.
"""

from __future__ import annotations

import numpy as np

from sim.jit import njit
from trace.arrow import from_numpy, numpy_view
from trace.request import BLOCK_ID_DTYPE

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)

# Tags that keep the key spaces of different content sources apart.
TAG_UNIQUE = 0x5EED_0001
TAG_SESSION = 0x5EED_0002
TAG_PREFIX = 0x5EED_0003
TAG_DOCUMENT = 0x5EED_0004
TAG_TOKENS = 0x5EED_0006


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=_U64) + _GOLDEN
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def mix(*parts: np.ndarray | int) -> np.ndarray:
    """Hash a tuple of integer arrays (broadcast) into one uint64 key array."""
    with np.errstate(over="ignore"):
        h = np.zeros(1, dtype=_U64)
        for part in parts:
            h = splitmix64(h ^ splitmix64(np.asarray(part).astype(_U64)))
    return h


def blocks_per_request(input_tokens: np.ndarray, block_size: int) -> np.ndarray:
    """Blocks a prompt occupies: ceil(tokens / block_size); a partial last block counts."""
    return (np.asarray(input_tokens, dtype=np.int64) + block_size - 1) // block_size


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    """CSR offsets (length n+1) from per-request block counts."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def block_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every block in CSR order: (owning request index, depth within its prompt)."""
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    depth = np.arange(offsets[-1], dtype=np.int64) - offsets[owner]
    return owner, depth


def unique_keys(num_blocks: int, salt: int = 0) -> np.ndarray:
    """Content keys that never repeat: one per block position in the stream."""
    return mix(TAG_UNIQUE, salt, np.arange(num_blocks, dtype=np.int64))


def session_keys(offsets: np.ndarray, input_tokens: np.ndarray, session: np.ndarray, block_size: int) -> np.ndarray:
    """Content keys for conversations whose turns extend the previous context.

    A full block at depth i of a session's prompt has the same content in every turn
    (each turn's prompt is the earlier context plus new tokens), so its key is
    (session, i). A partial last block, and every block of a request without a
    session (session < 0), is unique.
    """
    owner, depth = block_positions(offsets)
    full = (depth + 1) * block_size <= np.asarray(input_tokens, dtype=np.int64)[owner]
    sess = np.asarray(session, dtype=np.int64)[owner]
    shared = full & (sess >= 0)
    keys = unique_keys(len(owner), salt=TAG_SESSION)
    keys[shared] = mix(TAG_SESSION, sess[shared], depth[shared])
    return keys


def session_block_ids(offsets: np.ndarray, input_tokens: np.ndarray, session: np.ndarray, block_size: int,
                      context_start: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Dense block ids of conversations, as ``intern(chain(offsets, session_keys(...)))`` gives them, without
    hashing: full block i of a session's context is one block in every turn; a partial last block, every
    block of a request without a session (-1) and every block of a turn whose context lost its first
    ``context_start`` tokens (a start that never repeats within a session) are new. One compiled pass in
    request order (ids in order of first appearance); memory: the ids plus one slot per session depth."""
    tokens = np.asarray(input_tokens, dtype=np.int64)
    session = np.asarray(session, dtype=np.int64)
    start = np.zeros(len(tokens), np.int64) if context_start is None else np.asarray(context_start, np.int64)
    full = tokens // block_size
    shared = (session >= 0) & (start == 0)
    depth_of = np.zeros(int(session.max()) + 1 if len(session) else 0, dtype=np.int64)
    np.maximum.at(depth_of, session[shared], full[shared])
    pool_offsets = offsets_from_counts(depth_of)
    return _session_block_ids(np.asarray(offsets, dtype=np.int64), full, session, shared, pool_offsets)


@njit(cache=True)
def _session_block_ids(offsets, full, session, shared, pool_offsets):
    ids = np.empty(offsets[-1], dtype=np.int32)  # (BLOCK_ID_DTYPE; more than KEY_LIMIT ids wrap: Trace refuses them)
    pool = np.full(pool_offsets[-1], -1, dtype=np.int32)
    fresh = 0
    for r in range(len(full)):
        base = pool_offsets[session[r]] if shared[r] else 0
        for d in range(offsets[r + 1] - offsets[r]):
            k = offsets[r] + d
            if shared[r] and d < full[r]:
                if pool[base + d] < 0:
                    pool[base + d] = fresh
                    fresh += 1
                ids[k] = pool[base + d]
            else:
                ids[k] = fresh
                fresh += 1
    return ids, fresh


def token_content_keys(token_ids: np.ndarray, token_offsets: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Block offsets and content keys from real token ids (CSR per request).

    A block's key hashes its tokens with their positions and its length, so two blocks
    match only when they hold the same tokens.
    """
    counts = blocks_per_request(np.diff(token_offsets), block_size)
    offsets = offsets_from_counts(counts)
    tok_owner, _ = block_positions(token_offsets)
    tok_pos = np.arange(len(token_ids), dtype=np.int64) - token_offsets[tok_owner]
    block_of_token = offsets[tok_owner] + tok_pos // block_size
    with np.errstate(over="ignore"):
        term = splitmix64(mix(TAG_TOKENS, np.asarray(token_ids, dtype=np.int64), tok_pos % block_size))
        keys = np.zeros(offsets[-1], dtype=_U64)
        np.add.at(keys, block_of_token, term)
        lengths = np.bincount(block_of_token, minlength=offsets[-1])
        keys = mix(keys, lengths)
    return offsets, keys


def chain(offsets: np.ndarray, content_keys: np.ndarray, parents: np.ndarray | None = None) -> np.ndarray:
    """Prefix-chained hashes: h[i] = mix(h[i-1], key[i]) within each request; ``parents``: per request, the chained
    hash its first block follows (0, as without them: none), where each request's blocks continue a chain."""
    keys = np.asarray(content_keys, dtype=_U64)
    if len(keys) == 0:
        return keys.copy()
    owner, depth = block_positions(offsets)
    order = np.argsort(depth, kind="stable")
    level_ends = np.searchsorted(depth[order], np.arange(depth.max() + 1), side="right")
    hashes = np.empty_like(keys)
    start = 0
    for level, end in enumerate(level_ends):
        idx = order[start:end]
        if level > 0:
            parent = hashes[idx - 1]
        else:
            parent = np.zeros(len(idx), dtype=_U64) if parents is None else np.asarray(parents, _U64)[owner[idx]]
        hashes[idx] = mix(parent, keys[idx])
        start = end
    return hashes


def intern(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense integer ids in order of first appearance, and how many distinct values.

    Small non-negative integers (a trace's own block ids, remapped densely as Mooncake's are) are
    looked up in a table indexed by value; any others go through pyarrow's hash-based
    dictionary encoding (one pass, first-seen order)."""
    values = np.asarray(values)
    n = len(values)
    if n and values.dtype.kind in "iu" and values.min() >= 0 and values.max() < 4 * n + 1024:
        out = np.empty(n, dtype=BLOCK_ID_DTYPE)
        seen = _intern_small(values.astype(np.int64, copy=False), np.full(int(values.max()) + 1, -1, BLOCK_ID_DTYPE),
                             out)
        return out, seen
    encoded = from_numpy(values).dictionary_encode()  # (int32 indices: a writable copy of them, as numba takes)
    return numpy_view(encoded.indices).astype(BLOCK_ID_DTYPE), len(encoded.dictionary)


# The compiled passes below take their arrays from Python: a cached function that allocates (or
# calls an array method) makes every process that loads it import numba's array modules (~50 ms)
# and start numba's runtime (~20 ms); without allocations they compile with ``_nrt=False``.


@njit(cache=True, _nrt=False)
def _intern_small(values, code, out):
    """``intern`` of values in [0, len(code)) into ``out`` (``code`` all -1): one pass, each new value
    numbered as it first appears; how many distinct values."""
    seen = 0
    for i in range(len(values)):
        c = code[values[i]]
        if c < 0:
            c = seen
            code[values[i]] = c
            seen += 1
        out[i] = c
    return seen


def split_block_ids(
    hash_ids: np.ndarray, hash_offsets: np.ndarray, input_tokens: np.ndarray, trace_block: int, block_size: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Convert trace blocks of ``trace_block`` tokens into ``block_size`` blocks, with dense ids.

    Trace block j covers tokens [j·trace_block, min((j+1)·trace_block, L)) (at least one token);
    it becomes ceil(covered / block_size) sub-blocks named (hash id, k). A trace hash id already
    names the whole prefix, so (hash id, k) names the prefix through sub-block k. Returns the new
    block offsets, the sub-blocks' ids (dense, in order of first appearance, as ``intern`` numbers
    them) and how many distinct ones. One compiled pass over the trace blocks: no array per
    sub-block but the ids themselves.
    """
    parents, num_parents = intern(hash_ids)
    hash_offsets = np.asarray(hash_offsets, dtype=np.int64)
    input_tokens = np.asarray(input_tokens, dtype=np.int64)
    per = -(-trace_block // block_size)  # sub-blocks of a whole trace block
    offsets = np.zeros(len(hash_offsets), dtype=np.int64)
    _split_offsets(hash_offsets, input_tokens, trace_block, block_size, offsets)
    ids = np.empty(offsets[-1], dtype=BLOCK_ID_DTYPE)
    # (p, k) -> id in code[p * per + k], valid for k < known[p] (never read before it is written); 32-bit, as the
    # ids are: the table is mostly fresh memory, whose first touch costs more than the pass
    code = np.empty(num_parents * per, BLOCK_ID_DTYPE)
    seen = _split_ids(parents, hash_offsets, input_tokens, trace_block, block_size, per,
                      np.zeros(num_parents, np.int64), code, ids)
    return offsets, ids, seen


@njit(_nrt=False, inline="always")
def _sub_blocks(tokens, depth, trace_block, block_size):
    """Sub-blocks of trace block ``depth`` of a prompt of ``tokens``: the tokens it covers (at least one)
    in ``block_size`` blocks."""
    covered = max(1, min(trace_block, tokens - depth * trace_block))
    return (covered + block_size - 1) // block_size


@njit(cache=True, _nrt=False)
def _split_offsets(hash_offsets, input_tokens, trace_block, block_size, offsets):
    """CSR offsets of the sub-blocks, per request."""
    for r in range(len(hash_offsets) - 1):
        subs = 0
        for depth in range(hash_offsets[r + 1] - hash_offsets[r]):
            subs += _sub_blocks(input_tokens[r], depth, trace_block, block_size)
        offsets[r + 1] = offsets[r] + subs


@njit(cache=True, _nrt=False)
def _split_ids(parents, hash_offsets, input_tokens, trace_block, block_size, per, known, code, ids):
    """The sub-blocks' dense ids into ``ids``; how many distinct."""
    seen = 0
    out = 0
    for r in range(len(hash_offsets) - 1):
        for depth in range(hash_offsets[r + 1] - hash_offsets[r]):
            p = parents[hash_offsets[r] + depth]
            for k in range(_sub_blocks(input_tokens[r], depth, trace_block, block_size)):
                if k == known[p]:  # sub-blocks of a parent appear as a prefix 0, 1, ...: k is new
                    code[p * per + k] = seen
                    known[p] = k + 1
                    seen += 1
                ids[out] = code[p * per + k]
                out += 1
    return seen


def repeated_within(offsets: np.ndarray, block_ids: np.ndarray, num_unique: int) -> np.ndarray:
    """Per request, whether its chain of dense block ids names one block twice (the first such position, -1 where
    none). A prefix-chained id covers the whole prefix up to its block, so it cannot recur within one prompt: a trace
    whose hash_ids do (ids of each block's content alone) would let a prompt hit its own blocks."""
    first = np.full(len(offsets) - 1, -1, dtype=np.int64)
    last_request = np.full(max(num_unique, 1), -1, dtype=np.int32 if len(first) < 2**31 else np.int64)
    _repeated_within(np.asarray(offsets, dtype=np.int64), np.asarray(block_ids, dtype=BLOCK_ID_DTYPE), last_request,
                     first)  # (a trace's ids: no copy)
    return first


@njit(cache=True, _nrt=False)
def _repeated_within(offsets, block_ids, last_request, first):
    """One pass: ``last_request[id]`` is the request that last named ``id``; a second naming by the same request marks
    it (``first``: the position of its first repeat)."""
    for r in range(len(offsets) - 1):
        for k in range(offsets[r], offsets[r + 1]):
            block = block_ids[k]
            if last_request[block] == r and first[r] < 0:
                first[r] = k
            last_request[block] = r
