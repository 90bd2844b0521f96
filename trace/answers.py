"""The block ids of each request's recorded answer, where a trace gives its output tokens (LLMServingSim's
``output_tok_ids``).

vLLM hashes every full block of a sequence, generated tokens included, chained from the prompt's blocks
(``hash_block_tokens`` over the block's tokens and its parent's hash, vllm/v1/core/kv_cache_utils.py;
``KVCacheManager.cache_blocks`` as the sequence grows). Only the KV of ``input + output - 1`` tokens is ever
computed (the last sampled token is never fed back), so a request's generated full blocks are those at depths
``input // block_size`` to ``(input + output - 1) // block_size - 1`` of the chain over its prompt and the first
``max(output, 1) - 1`` tokens of its answer: the first completes the prompt's partial last block. Their ids are
the prompts' where a prompt holds the same chained hash (a next turn that repeats prompt and answer token for token
finds them), else -1: no prompt holds it (``trace.continuations`` gives it an id of its own).
"""

from __future__ import annotations

import numpy as np

from sim.jit import njit
from trace import blocks as bm
from trace.readers import IdLists
from trace.request import BLOCK_ID_DTYPE


def answer_hashes(prompts: IdLists, answers: IdLists, output_tokens: np.ndarray, block_size: int,
                  prompt_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request (CSR: offsets int64, chained hashes uint64), its generated full blocks: ``prompts`` and
    ``answers`` are its token ids, ``output_tokens`` its output's length (``answers`` holds that many),
    ``prompt_hashes`` the prompts' chained block hashes (``blocks.chain``)."""
    prompt_tokens = prompts.lengths
    full = prompt_tokens // block_size
    fed = np.minimum(np.maximum(np.asarray(output_tokens, np.int64), 1) - 1, answers.lengths)  # answer tokens in KV
    # each request's tail: its prompt's partial last block's tokens, then the answer's fed back
    tail_offsets = bm.offsets_from_counts(prompt_tokens - full * block_size + fed)
    tail = np.empty(int(tail_offsets[-1]), dtype=np.int64)
    _tails(prompts.values, prompts.offsets, full * block_size, answers.values, answers.offsets, fed, tail_offsets, tail)
    block_offsets, keys = bm.token_content_keys(tail, tail_offsets, block_size)
    prompt_offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt_tokens, block_size))
    # (tokens keep their positions within a block: the tail starts on a block boundary, so its keys are the chain's)
    parents = np.where(full > 0, np.asarray(prompt_hashes)[np.maximum(prompt_offsets[:-1] + full - 1, 0)], 0)
    hashes = bm.chain(block_offsets, keys, parents.astype(np.uint64))
    counts = np.diff(tail_offsets) // block_size  # the tail's full blocks (its last may be partial)
    owner, depth = bm.block_positions(block_offsets)
    return bm.offsets_from_counts(counts), hashes[depth < counts[owner]]


def intern_with_answers(prompt_hashes: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """The prompts' dense ids and how many (as ``blocks.intern`` of the prompts' hashes alone gives them), and the
    generated blocks' ids in that space (-1: no prompt holds the block), from one interning of both."""
    ids, _ = bm.intern(np.concatenate([np.asarray(prompt_hashes), generated]))
    # (the prompts' hashes come first: their ids are 0 .. distinct - 1 in order of first appearance, a new hash's past)
    prompt_ids, answer_ids = ids[:len(prompt_hashes)], ids[len(prompt_hashes):]
    num_unique = int(prompt_ids.max()) + 1 if len(prompt_ids) else 0
    return prompt_ids, num_unique, np.where(answer_ids < num_unique, answer_ids, -1).astype(BLOCK_ID_DTYPE)


@njit(cache=True, _nrt=False)
def _tails(prompt_values, prompt_offsets, skip, answer_values, answer_offsets, fed, tail_offsets, tail):
    """Per request, its prompt's tokens past ``skip`` and then its answer's first ``fed``, into ``tail``."""
    for r in range(len(fed)):
        k = tail_offsets[r]
        for i in range(prompt_offsets[r] + skip[r], prompt_offsets[r + 1]):
            tail[k] = prompt_values[i]
            k += 1
        for i in range(answer_offsets[r], answer_offsets[r] + fed[r]):
            tail[k] = answer_values[i]
            k += 1
