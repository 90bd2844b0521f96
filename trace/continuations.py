"""The block ids of what each request generates: recorded, or read from the later prompt that holds its answer.

vLLM's prefix cache hashes every full block of a request's KV, generated tokens included
(``KVCacheManager.cache_blocks`` runs as the sequence grows), and keeps them when the request
finishes; the next turn of a conversation, whose prompt is the conversation so far, then finds
the previous answer cached. A trace that records each answer's tokens (LLMServingSim's
``output_tok_ids``) names its generated blocks itself (``trace.answers``: the prompt's chain
continued over the answer; a block no prompt holds gets an id of its own, past the trace's). A trace
that names its prompts' blocks only (Mooncake's hash_ids, token ids without the answers', synthetic
sessions) has the ids of a request's generated blocks inferred from the prompt that continues it:

- request *s* continues request *r* when *r* is the latest earlier request whose prompt's full
  blocks end at a block of *s*'s prompt (*s* holds every full block of *r*'s prompt), that block
  is followed by one and the same full block wherever it occurs in the trace (a conversation's
  own block; a shared system prompt or document branches into many), the block after it first
  occurs after *r*, and *s*'s full blocks cover all of *r*'s (its prompt holds the whole answer);
- *r*'s generated blocks are then *s*'s blocks at the same depths: the prompt's partial last block
  completed by the answer, and the answer's full blocks after it;
- otherwise (the last turn, a regenerated answer, a prompt that only shares a system prompt) they
  get ids of their own, past the trace's: vLLM caches them all the same, and they take cache space.

Only the KV of ``input + output - 1`` tokens is ever computed (the last sampled token is never fed
back), so a request has ``(input + output - 1) // block_size - input // block_size`` generated blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim.jit import njit
from trace.request import BLOCK_ID_DTYPE, Trace, check_block_id_space

if TYPE_CHECKING:
    from sim.config_workload import WorkloadConfig


@dataclass(slots=True)
class GeneratedBlocks:
    """Per request, the ids of its generated full blocks (CSR, in the trace's order)."""

    offsets: np.ndarray  # int64 [requests + 1]
    ids: np.ndarray  # int32, as the trace's: request r's are ids[offsets[r]:offsets[r + 1]], shallowest first
    continued: int  # requests whose generated blocks a prompt holds (a later one; for recorded answers, any)
    num_ids: int  # every id, the trace's and the new ones, is below this
    # int64 [requests]: the request whose prompt holds each one's answer (-1: none; None: recorded answers, or none
    # inferred)
    successor: np.ndarray | None = None

    def of(self, request: int) -> np.ndarray:
        return self.ids[self.offsets[request]:self.offsets[request + 1]]


def generated_blocks(trace: Trace, block_size: int, id_space: int, continued: bool = True,
                     prompt_ids: np.ndarray | None = None) -> GeneratedBlocks:
    """The ids of every request's generated full blocks (``block_size``: the trace's block tokens; ``id_space``:
    one more than its largest block id, where new ids start); ``continued=False``: no later prompt holds them (a
    replay of recorded prompts, whose answers the server does not reproduce), all new. ``prompt_ids``: the trace's
    ``access_stream()``, where the caller holds it already (else it is built here, for this pass only)."""
    n = len(trace)
    full = np.asarray(trace.input_tokens, dtype=np.int64) // block_size
    kv = np.asarray(trace.input_tokens, dtype=np.int64) + np.maximum(np.asarray(trace.output_tokens, np.int64), 1) - 1
    counts = np.maximum(kv // block_size - full, 0)
    # (the full blocks a request's ids cover: a trace whose rows list fewer ids than their tokens fill is read as far
    # as its ids go)
    full = np.minimum(full, np.diff(np.asarray(trace.block_offsets, dtype=np.int64)))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    what = "the workload with its generated blocks"
    if not trace.has_block_ids or not continued:  # (no block repeats: nothing continues another request)
        check_block_id_space(id_space + int(offsets[-1]), what)
        ids = np.arange(id_space, id_space + int(offsets[-1]), dtype=BLOCK_ID_DTYPE)
        return GeneratedBlocks(offsets, ids, 0, id_space + int(offsets[-1]))
    # the trace's int32 ids (an int64 copy was a fleet's 1 GiB more at start); new ids counted in int64
    if prompt_ids is None:
        prompt_ids = trace.access_stream()
    if trace.answer_offsets is not None:  # the answers' own blocks, as recorded
        ids, continued, fresh = _recorded_ids(np.asarray(trace.block_offsets, np.int64),
                                              np.asarray(prompt_ids, dtype=BLOCK_ID_DTYPE), trace.answer_offsets,
                                              trace.answer_ids, id_space)
        check_block_id_space(int(fresh), what)
        return GeneratedBlocks(trace.answer_offsets, ids, int(continued), int(fresh))
    ids, continued, fresh, successor = _generated_ids(np.asarray(trace.block_offsets, np.int64),
                                                      np.asarray(prompt_ids, dtype=BLOCK_ID_DTYPE), full, counts,
                                                      offsets, id_space)
    check_block_id_space(int(fresh), what)  # (past it, ids wrapped: refused before anything reads them)
    return GeneratedBlocks(offsets, ids, int(continued), int(fresh), successor)


@njit(cache=True)
def _generated_ids(block_offsets, block_ids, full, counts, offsets, id_space):
    n = len(full)
    child = np.full(id_space, -1, dtype=np.int32)  # the full block after each block, where one follows it
    branches = np.zeros(id_space, dtype=np.bool_)  # followed by more than one full block somewhere
    first_request = np.full(id_space, -1, dtype=np.int64)
    for r in range(n):
        lo = block_offsets[r]
        for d in range(block_offsets[r + 1] - lo):
            block = block_ids[lo + d]
            if first_request[block] < 0:
                first_request[block] = r
            if 0 < d < full[r]:
                parent = block_ids[lo + d - 1]
                if child[parent] < 0:
                    child[parent] = block
                elif child[parent] != block:
                    branches[parent] = True
    ids = np.empty(offsets[n], dtype=np.int32)  # (BLOCK_ID_DTYPE)
    successor = np.full(n, -1, dtype=np.int64)
    holder = np.full(id_space, -1, dtype=np.int64)  # the latest request whose full blocks end at this block
    continued = 0
    for s in range(n):
        lo = block_offsets[s]
        for d in range(full[s] - 1):  # a block of s followed by one of s's full blocks
            block = block_ids[lo + d]
            r = holder[block]
            # (r's full blocks end at this block: at this depth, as chained ids always are)
            if r < 0 or successor[r] >= 0 or branches[block] or counts[r] == 0 or full[r] != d + 1:
                continue
            end = full[r] + counts[r]  # r's full KV blocks
            if end > full[s] or first_request[block_ids[lo + full[r]]] <= r:
                continue
            if not _same_prefix(block_ids, block_offsets[r], lo, full[r]):  # (implied where ids are chained)
                continue
            successor[r] = s
            continued += 1
            for j in range(counts[r]):
                ids[offsets[r] + j] = block_ids[lo + full[r] + j]
        if full[s] > 0:
            holder[block_ids[lo + full[s] - 1]] = s
    fresh = id_space
    for r in range(n):
        if successor[r] < 0:
            for j in range(counts[r]):
                ids[offsets[r] + j] = fresh
                fresh += 1
    return ids, continued, fresh, successor


@njit(cache=True)
def _recorded_ids(block_offsets, block_ids, answer_offsets, answer_ids, id_space):
    """The recorded answers' ids (``Trace.answer_ids``) as a run numbers them: an id in ``id_space`` kept, -1 (no
    prompt holds the block) or one past it (its prompts were dropped) new; and how many requests' answers a prompt
    holds (a later or an earlier one: either way ``outputs_in_next_turn=false``, all new ids, changes them)."""
    n = len(answer_offsets) - 1
    in_prompt = np.zeros(id_space, dtype=np.bool_)  # whether some prompt holds each block (an earlier one or a later)
    for r in range(n):
        for k in range(block_offsets[r], block_offsets[r + 1]):
            in_prompt[block_ids[k]] = True
    ids = np.empty(answer_offsets[n], dtype=np.int32)  # (BLOCK_ID_DTYPE)
    continued = 0
    fresh = id_space
    for r in range(n):
        held = False
        for k in range(answer_offsets[r], answer_offsets[r + 1]):
            block = answer_ids[k]
            if 0 <= block < id_space:
                ids[k] = block
                held = held or in_prompt[block]
            else:
                ids[k] = fresh
                fresh += 1
        if held:
            continued += 1
    return ids, continued, fresh


def check_outputs_in_next_turn_read(trace: Trace, workload: WorkloadConfig) -> None:
    """``workload.outputs_in_next_turn=false`` gives each answer blocks of its own instead of the next turn's: where
    no prompt continues an earlier request (no sessions, every prompt new) every answer has its own either way, and
    the run is the same one: refused, naming the workload (its trace, or the synthetic kind)."""
    from sim.errors import UnreadSetting

    if workload.outputs_in_next_turn or len(trace) == 0:
        return
    source = workload.trace or f"the synthetic {workload.synthetic.kind} workload"
    if not trace.has_block_ids or not trace.num_accesses or generated_blocks(
            trace, trace.provenance.block_tokens, trace.block_id_bound()).continued == 0:
        raise UnreadSetting(f"config key 'workload.outputs_in_next_turn'=false changes nothing: no prompt of {source} "
                            "holds another request's answer, so every answer has blocks of its own either "
                            "way", "workload.outputs_in_next_turn", True)


def interleaved(prompt_values: np.ndarray, prompt_offsets: np.ndarray, generated_values: np.ndarray,
                generated_offsets: np.ndarray) -> np.ndarray:
    """Per request, its prompt blocks' values then its generated blocks': the serving modes' stream, in which a
    generated block's position follows its request's prompt (``serving_offsets`` gives where each request starts)."""
    out = np.empty(len(prompt_values) + len(generated_values), dtype=np.result_type(prompt_values, generated_values))
    in_prompt = prompt_positions(prompt_offsets, generated_offsets)
    out[in_prompt] = prompt_values
    out[~in_prompt] = generated_values
    return out


def prompt_positions(prompt_offsets: np.ndarray, generated_offsets: np.ndarray) -> np.ndarray:
    """Which positions of the serving stream (``interleaved``) are prompt blocks (True) rather than generated ones."""
    prompt_offsets = np.asarray(prompt_offsets, np.int64)
    generated_offsets = np.asarray(generated_offsets, np.int64)
    starts = serving_offsets(prompt_offsets, generated_offsets)
    prompt_counts = np.diff(prompt_offsets)
    in_prompt = np.ones(int(prompt_offsets[-1] + generated_offsets[-1]), dtype=np.bool_)
    owner = np.repeat(np.arange(len(prompt_counts)), np.diff(generated_offsets))
    depth = np.arange(int(generated_offsets[-1])) - generated_offsets[owner]  # of each generated block in its request's
    in_prompt[starts[owner] + prompt_counts[owner] + depth] = False
    return in_prompt


def serving_offsets(prompt_offsets: np.ndarray, generated_offsets: np.ndarray) -> np.ndarray:
    """Where each request's blocks start in the serving stream (its prompt's, then its generated ones)."""
    return np.asarray(prompt_offsets, np.int64) + np.asarray(generated_offsets, np.int64)


@njit(cache=True)
def _same_prefix(block_ids, a, b, length):
    for i in range(length):
        if block_ids[a + i] != block_ids[b + i]:
            return False
    return True
