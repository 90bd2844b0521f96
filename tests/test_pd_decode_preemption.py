"""PD: prefilled KV waiting for decode memory, after the decode instance preempted a request.

vLLM's decode side admits a remote-KV request in its waiting loop (``get_num_new_matched_tokens`` -> ``allocate_slots``
for the external tokens -> WAITING_FOR_REMOTE_KVS; NIXL's ``NixlConnectorScheduler``), in FCFS order behind the
requests its preemptions prepended to the queue (``_preempt_request``: ``self.waiting.prepend_request``); the loop
stops at the first that does not fit, and a step that preempted admits none (``Scheduler.schedule``: ``if not
preempted_reqs``; vllm/v1/core/sched/scheduler.py). So a preempted request gets the freed memory first, and KV waiting
for memory takes what it leaves at that same step. Cases worked by hand: blocks of 16 tokens, A and B of 64 tokens
(4 blocks each), two prefill instances, one decode instance of 8 usable blocks (num_gpu_blocks 9 less vLLM's null
block), a 1 Gb/s link (4 blocks take ~66 ms): A and B in flight together hold all 8; C, prefilled ~15 ms in, waits
for decode memory. A lands first; its 2nd output token writes KV slot 65, a 5th block, none free: the request that
joined last is preempted (synchronous scheduling: B, landed during A's first step; asynchronously the step was
planned before B was read, so A preempts itself)."""

from __future__ import annotations

import pytest

from sim.serving.run import ServingRun
from tests.test_pd_decode_memory import PREFIX, _config
from tests.test_serving import make_trace


def _run(config, inputs, block_lists, outputs):
    """A PD run of A, B, C arriving 1 ms apart; returns it with the decode instance's plan times, its (rid, time)
    preemptions and joins of the running batch, and C's (time, decode blocks in use) as its KV was sent."""
    trace = make_trace([0.0, 0.001, 0.002], inputs, outputs, block_lists=block_lists)
    run = ServingRun(trace, config, "pd")
    decode = run.decode[0]
    scheduler, engine = decode.scheduler, run.engine
    plans, preempted, joined, sent = [], [], [], []
    schedule, preempt, join, reserve = scheduler.schedule, scheduler._preempt, scheduler._join, decode.reserve

    def on_schedule(now):
        plans.append(now)
        return schedule(now)

    def on_preempt(job):
        preempted.append((job.rid, engine.now))
        preempt(job)

    def on_join(job):
        joined.append((job.rid, engine.now))
        join(job)

    def on_reserve(job, backoff=0):
        blocks = reserve(job, backoff)
        if blocks is not None and job.rid == 2:
            sent.append((engine.now, decode.pool.used))
        return blocks

    scheduler.schedule, scheduler._preempt, scheduler._join, decode.reserve = (on_schedule, on_preempt, on_join,
                                                                               on_reserve)
    run.run()
    return run, plans, preempted, joined, sent


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_kv_waiting_for_decode_memory_is_sent_at_the_step_that_readmits_the_preempted_request(async_scheduling):
    """B's blocks are copies of A's (both in flight at once). Synchronously B is preempted: its copies go, and read
    again it shares A's blocks 1-4 (it generated nothing: 64 tokens, no new block), so A's 5 blocks are all in use and
    C (32 tokens: 2 blocks) fits, 7 of 8. vLLM: the preempting step admits nothing; the next readmits the preempted
    request and then allocates C's (sent then). Before, C waited for the next release (A's end). Asynchronously A
    preempts itself: its blocks 1-4 stay cached (the first of their hash: vLLM's lookup finds them, not B's copies),
    and readmitted it needs them and a 5th, 5 of the 4 B's copies leave: it waits for B's end, and C (FCFS behind it)
    is sent at that same plan, 5 + 2 = 7 of 8."""
    run, plans, preempted, joined, sent = _run(
        _config("serving.num_gpu_blocks=9", f"serving.async_scheduling={str(async_scheduling).lower()}"),
        [64, 64, 32], [PREFIX, PREFIX, [10, 11]], [4, 4, 2])
    table = run.table
    assert len(preempted) == 1
    victim, at = preempted[0]
    assert victim == (0 if async_scheduling else 1)
    # the first plan after the preempting one; asynchronously the plan at B's end
    step_after = next(t for t in plans if t > at) if not async_scheduling else table.last_token[1]
    assert (victim, step_after) in joined
    assert sent == [(step_after, 7)]
    assert table.kv_sent[2] == step_after < min(table.last_token[victim], table.last_token[0])  # (before A's end)
    assert run.completed == 3


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_the_preempted_request_takes_the_freed_memory_before_kv_waiting_for_it(async_scheduling):
    """B of blocks 5-8 (no sharing; prefix caching off, so the pool only counts) and C of 80 tokens (5 blocks). The
    preempted request's 4 blocks go and the running one takes its 5th: 3 free, neither the preempted request (4: its
    whole sequence, ``scheduler_reserve_full_isl``) nor C (5) fits. The other one ends: 8 free. FCFS: the preempted
    request first (4), then C would need 5 of the 4 left: C is sent when the readmitted request ends. Before, C's
    transfer took 5 blocks as the other ended, ahead of it, and the preempted request waited for C's end."""
    run, plans, preempted, joined, sent = _run(
        _config("serving.num_gpu_blocks=9", "serving.enable_prefix_caching=false",
                f"serving.async_scheduling={str(async_scheduling).lower()}"),
        [64, 64, 80], [PREFIX, [5, 6, 7, 8], [10, 11, 12, 13, 14]], [4, 4, 2])
    table = run.table
    assert len(preempted) == 1
    victim, _ = preempted[0]
    other = 1 - victim
    readmitted = [t for rid, t in joined if rid == victim][-1]
    assert readmitted == table.last_token[other]  # (the plan at the other's end)
    assert table.kv_sent[2] == table.last_token[victim] > readmitted
    assert sent == [(table.last_token[victim], 5)]  # (C's 5 alone: both A and B are gone)
    assert run.completed == 3
