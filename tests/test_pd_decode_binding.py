"""PD: a request's decode instance is bound when it is dispatched, and it waits for that instance's memory in that
instance's own queue (``sim.serving.decode_queues``: vLLM's proxies, SGLang's mini_lb and llm-d's EPP pick the decode
instance with the prefill instance, at arrival; each decode instance admits remote-KV requests FCFS from its own
waiting queue).

Cases worked by hand: one prefill instance, two decode instances A (instance 1) and B (instance 2), blocks of 16
tokens. The binding rank: fewest requests bound and not finished, then the least KV in use, then the lowest index."""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.run import ServingRun
from tests.test_serving import make_trace

A, B = 1, 2


def _run(num_gpu_blocks: int, arrival, inputs, outputs) -> ServingRun:
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=2", "serving.block_size=16",
                                     f"serving.num_gpu_blocks={num_gpu_blocks}"])
    run = ServingRun(make_trace(arrival, inputs, outputs), config, "pd")
    run.run()
    assert run.completed == len(arrival)
    return run


def test_a_request_bound_to_a_free_instance_is_not_held_behind_one_bound_to_a_full_instance():
    """16 usable blocks per decode instance. R0 (200-token prompt: 13 blocks, 40 tokens out: up to 15) is bound to A
    (both idle: the lowest index), R1 (216: 14 blocks, 24 out) to B (A has one bound). At 0.1 s R2 (64 tokens: 4
    blocks) is bound to A (one request each; A's 13 or 14 blocks in use below B's 15), at 0.12 s R3 (8 tokens: 1
    block) to B (A has two). R2's prefill ends first; A has at most 3 free blocks while R0 runs, so R2 waits in A's
    queue until R0 ends, even after R1 ends and B could take it. R3 needs 1 block, which B has: it is sent as its
    prefill ends, while R0 and R1 both still run. (One FCFS queue for both instances held R3 behind R2, which fitted
    neither, until R1's end let R2 go to B.)"""
    run = _run(17, [0.0, 0.0, 0.1, 0.12], [200, 216, 64, 8], [40, 24, 1, 1])
    table = run.table
    assert table.decode_instance.tolist() == [A, B, A, B]
    assert table.kv_sent[3] == pytest.approx(table.prefill_done[3], abs=1e-12)
    assert table.kv_sent[3] < min(table.last_token[0], table.last_token[1])
    assert table.last_token[1] < table.last_token[0]  # (B emptied first ...)
    assert table.kv_sent[2] == pytest.approx(table.last_token[0], abs=1e-12)  # (... but R2 waited for A's R0)


def test_the_decode_instance_is_the_one_bound_at_arrival_though_another_is_emptier_when_the_prefill_ends():
    """100 usable blocks. R0 (160-token prompt: 10 blocks, 400 tokens out) and R1 (200: 13 blocks, 2 out) arrive at
    0 and are bound to A and B. R2 (1,000 tokens) arrives at 0.02 s, while both decode: one request bound to each, A
    holds fewer blocks (10 or 11 against 13), so R2 is bound to A. R1 ends before R2's prefill does: B is empty, A
    still runs R0. R2's KV goes to A all the same (it has room: sent as the prefill ends), where a choice made when
    the prefill ended took B, the least KV in use."""
    run = _run(101, [0.0, 0.0, 0.02], [160, 200, 1000], [400, 2, 1])
    table = run.table
    assert table.decode_instance.tolist() == [A, B, A]
    assert table.arrival[2] < table.last_token[1] < table.prefill_done[2] < table.last_token[0]
    assert table.kv_sent[2] == pytest.approx(table.prefill_done[2], abs=1e-12)
