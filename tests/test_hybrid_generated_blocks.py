"""Generated blocks under vLLM 0.33's hybrid KV-cache manager (gpt-oss, Gemma 2/3), worked by hand from its code with
its default ``prefix_cache_retention_interval`` 0:

- the full-attention group hashes every full block of the sequence (``FullAttentionManager``: no block mask), so a
  request leaves its generated blocks cached (``BlockPool.free_blocks`` keeps hashed blocks);
- a sliding group hashes only the blocks ``SlidingWindowManager.reachable_block_mask`` keeps: the
  ``cdiv(W - 1, B)`` blocks ending at the replay boundary (``replay_boundaries``: the prompt's last token) and at
  the request's ``shared_prefix_boundary`` (``KVCacheManager.get_computed_blocks``: where the full group's own
  hit ended, past the reconciled one). A generated block is past the replay boundary, so a sliding group frees it
  unhashed, unless it ends a junction;
- a hit is the full group's prefix cut back to the last run of ``cdiv(W - 1, B)`` blocks every sliding group holds
  (``HybridKVCacheCoordinator.find_longest_cache_hit``), over the request's block hashes, which cover what it
  generated (a resumed request).

So the next turn of a conversation is served up to the previous turn's prompt, not its answer (no sliding copy of
the answer was kept); but the full group now finds the answer, so the next turn's junction is the answer's end and
it keeps the sliding blocks ending there: a request sharing the conversation up to that answer (a regenerated
turn) is served all of it. A resumed request's junction is in what it generated: a second resumption, and a next
turn, are served up to it.

gpt-oss-20b at 16-token blocks: one full and one sliding group, window 128, so a sliding hit needs cdiv(127, 16) = 8
blocks.
"""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.job import Job
from sim.serving.run import run_serving
from tests.test_hybrid_kv_cache_manager import admit, hybrid_manager
from tests.test_serving import make_trace

NO_LOWER_TIERS = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]
T1_PROMPT = list(range(20)) + [500]  # 328 tokens: 20 full blocks and a partial one
T2_PROMPT = list(range(36)) + [501]  # 581 tokens: T1's 20, the 7 blocks T1 generated (20 … 26), 9 new, a partial
T3_PROMPT = list(range(27)) + list(range(40, 49)) + [502]  # 581 tokens: T2 regenerated (T1's exchange, then others)


@pytest.mark.parametrize("disable,outputs_in_next_turn,served", [
    ("false", "true", [0, 20, 27]), ("false", "false", [0, 20, 20]), ("true", "true", [0, 27, 27])])
def test_a_next_turn_marks_the_previous_answers_end_so_a_regenerated_turn_is_served_through_it(
        disable, outputs_in_next_turn, served):
    """Requests far apart, one instance, HBM only. By hand, vLLM 0.33 under its hybrid manager:

    - T1 (328 tokens, 105 generated: KV of 432 tokens, 27 full blocks) hashes all 27 in the full group (blocks 20 …
      26 are its answer, the completed partial block first) and, in the sliding group, only the 8 blocks ending at
      its replay boundary, floor(327 / 16) = 20: blocks 12 … 19. Freed: all of these cached.
    - T2 (581 tokens, its prompt T1's 27 blocks and 9 more): the full group finds 27 blocks; the sliding group, scanned
      right to left below them, misses 26 … 20 and runs 19 … 12: served 20 blocks (320 tokens), not T1's answer. Its
      junction is 27 × 16 = 432 (the full group's own hit), so it hashes sliding blocks 19 … 26 (and its tail,
      28 … 35).
    - T3 (T1's exchange, then 9 blocks of its own): the full group finds 27, the sliding group's run 19 … 26: served
      27 blocks, 432 tokens. (Caching prompt blocks only, as before, gave 320.)

    Replayed prompts (``workload.outputs_in_next_turn=false``): T1's answer has ids of its own, T2's full group stops
    at 20, no junction, and T3 is served 320 tokens as T2 was. With the manager off (every layer's KV whole, one
    group hashing every full block) T2 is served T1's answer: 27 blocks, and T3 too."""
    trace = make_trace([0.0, 100.0, 200.0], [328, 581, 581], [105, 1, 1],
                       block_lists=[T1_PROMPT, T2_PROMPT, T3_PROMPT])
    config = load_config(None, sets=["model=gpt-oss-20b", "serving.num_instances=1", "serving.block_size=16",
                                     f"serving.disable_hybrid_kv_cache_manager={disable}", *NO_LOWER_TIERS,
                                     f"workload.outputs_in_next_turn={outputs_in_next_turn}"])
    result, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [16 * blocks for blocks in served]
    assert (result.metrics["accesses"], result.metrics["hits"]) == (21 + 37 + 37, sum(served))


def _resume(kv, job: Job, computed: int) -> int:
    """A preempted ``job`` that had ``computed`` tokens' KV resumes (vLLM's request: prompt + output tokens, the hit
    at most all but the last): admitted again and all of it recomputed in one chunk; returns the tokens served."""
    job.target, job.computed = computed + 1, 0
    served = admit(kv, job, job.target - kv.lookup(job).tokens)
    job.computed = job.target
    return served


def _decode(kv, job: Job, upto: int) -> None:
    """Single decode steps (synchronous) until ``job`` has ``upto`` tokens' KV."""
    for c in range(job.computed, upto):
        job.computed = c
        kv.allocate(job, c + 1)
    job.computed = upto


def test_a_resumed_request_marks_a_junction_in_what_it_generated_and_is_served_up_to_it_next_time():
    """One request, prompt 328 tokens (blocks 0 … 19 and a partial one), its generated blocks 20 … (ids 20 …), on the
    hand-built manager (synchronous scheduling). By hand, vLLM 0.33:

    - computed to 480 tokens (30 full blocks) and preempted: the full group hashed blocks 0 … 29 and frees them
      cached; the sliding group hashed only its replay tail 12 … 19 (freed cached as they left the window); it
      frees 20 … 29 unhashed.
    - resumed (481 tokens, a hit of at most 480): the full group finds 30 blocks, the sliding group's run is 12 … 19:
      served 320 tokens (as with prompt blocks alone). Its junction is the full group's 480 tokens: it hashes sliding
      blocks 22 … 29 as it recomputes them.
    - computed to 600 tokens (37 full blocks) and preempted again: sliding 22 … 29 freed cached (they left the
      window: processed 599 - 127 = 472 tokens are skipped, 29 blocks), full 0 … 36 cached.
    - resumed again (601 tokens, a hit of at most 600: 37 blocks): the full group finds 37, the sliding group misses
      36 … 30 and runs 29 … 22: served 30 blocks, 480 tokens, 10 of them its generated blocks taken from the cache.
      It holds the full group's 38 blocks and the sliding group's 22 … 37 (16); its junction is 37 blocks, so
      sliding 29 … 36 are hashed as they fill.
    - it ends at 601 tokens; a next turn (its prompt blocks 0 … 43) finds the full group's 37 and the sliding run
      29 … 36: served 37 blocks, 592 tokens, its whole answer."""
    kv, pool = hybrid_manager()
    job = Job(0, 328, 400, list(T1_PROMPT), 0, target=328, generated_ids=list(range(20, 60)))
    assert admit(kv, job, 328) == 0
    job.computed = 328
    _decode(kv, job, 480)
    kv.free(job)
    assert _resume(kv, job, 480) == 320
    _decode(kv, job, 600)
    kv.free(job)
    assert _resume(kv, job, 600) == 480
    assert pool.used == 38 + (38 - 22)
    cached = [kv.cache.lookup_prefix([k]).tolist() for k in range(20, 37)]
    assert cached == [[]] * 10 + [[0]] * 7  # the hit's 20 … 29 are its own again; 30 … 36 are recomputed beside them
    kv.free(job)
    assert pool.used == 0 and not pool.refs
    turn = Job(1, 700, 1, list(range(44)), 0, target=700)
    assert kv.lookup(turn).tokens == 37 * 16
