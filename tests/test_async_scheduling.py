"""vLLM's asynchronous scheduling (``serving.async_scheduling``): the engine plans step k+1 while step k runs, so a
request read during step k joins step k+2, where a synchronous loop puts it in step k+1. Times by hand from the
compute model's step prices."""

from __future__ import annotations

import math
import signal

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sim.config import load_config
from sim.serving.admission import admit
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.run import run_serving
from tests.test_serving import make_trace

PROMPT = 16  # one block


def _config(asynchronous: bool):
    return load_config(None, sets=["serving.num_instances=1", "serving.enable_prefix_caching=false",
                                   f"serving.async_scheduling={str(asynchronous).lower()}"])


def _price(config, prefill: int = 0, decode_kv: tuple[int, ...] = ()) -> float:
    shape = StepShape()
    if prefill:
        shape.add_prefill(prefill, 0)
    for kv in decode_kv:
        shape.add_decode(kv)
    return compute_model(config).step_time(shape)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_request_read_during_a_step_joins_the_step_after_next(asynchronous):
    """A (16-token prompt, 40 tokens out) runs alone: step 1 its prefill, step j >= 2 one decode over 15 + j KV
    tokens. B (16 tokens, 2 out) arrives in the middle of step 5. The engine reads it when step 5 ends (t5; its
    ``queued``). A synchronous loop plans step 6 then, with B's prefill beside A's decode; an asynchronous one had
    planned step 6 while step 5 ran (A alone), so B's prefill is in step 7, from t6."""
    config = _config(asynchronous)
    ends = [_price(config, prefill=PROMPT)]
    for step in range(2, 8):
        ends.append(ends[-1] + _price(config, decode_kv=(15 + step,)))
    t4, t5, t6 = ends[3], ends[4], ends[5]
    _, requests = run_serving(make_trace([0.0, (t4 + t5) / 2], [PROMPT, PROMPT], [40, 2]), config, "single")
    assert requests.queued[0] == requests.scheduled[0] == 0.0  # an idle engine reads and plans at once
    assert requests.queued[1] == pytest.approx(t5, rel=1e-12)
    start, a_kv = (t6, 22) if asynchronous else (t5, 21)
    assert requests.scheduled[1] == pytest.approx(start, rel=1e-12)
    assert requests.first_token[1] == pytest.approx(start + _price(config, prefill=PROMPT, decode_kv=(a_kv,)),
                                                    rel=1e-12)


def test_requests_that_never_overlap_are_timed_alike_either_way():
    """Each request arrives after the one before has finished: the engine is idle at every arrival, reads and plans
    at once, and nothing finishes while another runs, so planning ahead changes no time."""
    arrival = np.arange(6) * 10.0
    trace = make_trace(arrival, [40, 300, 16, 1000, 64, 5], [3, 50, 1, 20, 7, 2])
    sync = run_serving(trace, _config(False), "single")[1]
    both = [sync, run_serving(trace, _config(True), "single")[1]]
    assert np.all(sync.last_token < np.append(arrival[1:], np.inf))  # (the premise: none overlaps the next)
    for column in ("queued", "scheduled", "first_token", "last_token"):
        assert np.array_equal(getattr(both[0], column), getattr(both[1], column)), column
    assert np.array_equal(sync.queued, arrival)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_request_finishing_in_the_step_in_flight_is_the_one_preempted_when_admitted_last(asynchronous):
    """vLLM's scheduler plans step k+1 with the requests whose last token step k computes still in ``running`` (the
    async check ``num_computed_tokens + 2 - num_output_placeholders >= num_prompt_tokens + max_tokens`` skips them,
    vllm/v1/core/sched/scheduler.py ``schedule``), so one admitted after the request that needs a block is the
    victim of ``self.running.pop()``: its blocks are freed then, and its output still finishes it
    (``update_from_output``: ``stopped_preempted_reqs``). By hand: 4 usable blocks of 16 tokens (5 less the null
    block), A (31-token prompt, 2 blocks) then B (16 tokens, 1 block, 2 out) arrive together. Step 1 prefills both;
    step 2 decodes A (token 32, still 2 blocks) and B (token 17, its 2nd block): all 4 in use. Step 3's plan: A's
    token 33 needs a 3rd block. Synchronous: B left after step 2, A takes one of its blocks. Asynchronous: B's finish
    is not processed yet, B (admitted after A) is preempted instead of A, and finishes at t2 all the same. Either way
    A decodes on alone from step 3 and is never recomputed."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.enable_prefix_caching=false",
                                     "serving.num_gpu_blocks=5", "serving.block_size=16",
                                     f"serving.async_scheduling={str(asynchronous).lower()}"])
    out = 6
    shape = StepShape()
    shape.add_prefill(31, 0)
    shape.add_prefill(16, 0)
    t1 = compute_model(config).step_time(shape)
    t2 = t1 + _price(config, decode_kv=(32, 17))
    end = t2 + sum(_price(config, decode_kv=(30 + step,)) for step in range(3, out + 1))  # A alone, token 33 on
    _, requests = run_serving(make_trace([0.0, 0.0], [31, 16], [out, 2]), config, "single")
    assert list(requests.preemptions) == ([0, 1] if asynchronous else [0, 0])
    assert requests.first_token[0] == requests.first_token[1] == pytest.approx(t1, rel=1e-12)
    assert requests.last_token[1] == pytest.approx(t2, rel=1e-12)
    assert requests.last_token[0] == pytest.approx(end, rel=1e-12)


# --------------------------------------------------------------------------- liveness under memory pressure

HANG_S = 20  # a draw runs in well under a second; a scheduler that never gives up the CPU fails instead of hanging


@st.composite
def memory_pressure(draw) -> dict:
    """A handful of requests on an instance (or a PD pair of pools) with KV memory for about one of them: block sizes
    16/64, prompts sharing a prefix or not, equal and close arrival times, 1-4 sequence slots, small token budgets
    (chunked prefill), admission of the whole sequence or of the chunk (preemptions), and sometimes one request that
    could not fit even alone (``exceeds_kv_capacity``: refused before the run, counted)."""
    bs = draw(st.sampled_from([16, 64]))  # (sizes a vLLM attention backend takes on an H100: multiples of 16)
    n = draw(st.integers(3, 8))
    prompts = draw(st.lists(st.integers(1, 3 * bs), min_size=n, max_size=n))
    outputs = draw(st.lists(st.sampled_from([1, 2, 3, 17, 40, 60, 150]), min_size=n, max_size=n))
    need = max(-(-(p + o) // bs) for p, o in zip(prompts, outputs))  # blocks of the largest request
    usable = need + draw(st.sampled_from([0, 0, 1, 2, need]))  # vLLM's num_gpu_blocks less its null block
    refused = 0
    if draw(st.booleans()):  # one block too many for an empty instance
        at = draw(st.integers(0, n))
        total = usable * bs + 2  # KV of prompt + output - 1 tokens (+ 1 on a PD decode instance): usable x bs + 1
        prompt = draw(st.integers(max(1, total - 150), total - 1))
        prompts.insert(at, prompt)
        outputs.insert(at, total - prompt)
        refused = 1
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.003, 0.02, 0.1, 0.4]), min_size=len(prompts) - 1,
                         max_size=len(prompts) - 1))
    shared = draw(st.lists(st.integers(0, 3), min_size=len(prompts), max_size=len(prompts)))  # prefix blocks shared
    blocks, fresh = [], 1000
    for prompt, k in zip(prompts, shared):
        count = -(-prompt // bs)
        blocks.append(list(range(min(k, count))) + list(range(fresh, fresh + count - min(k, count))))
        fresh += count
    sets = [f"serving.block_size={bs}", f"serving.num_gpu_blocks={usable + 1}",
            f"serving.max_num_seqs={draw(st.integers(1, 4))}",
            f"serving.max_num_batched_tokens={draw(st.sampled_from([8, 32, 2048]))}",
            f"serving.enable_prefix_caching={str(draw(st.booleans())).lower()}",
            f"serving.scheduler_reserve_full_isl={str(draw(st.booleans())).lower()}"]
    mode = draw(st.sampled_from(["single", "pd"]))
    if mode == "single":
        sets.append(f"serving.num_instances={draw(st.integers(1, 2))}")
    else:
        sets += [f"pd.num_prefill={draw(st.integers(1, 2))}", f"pd.num_decode={draw(st.integers(1, 2))}",
                 f"pd.transfer={draw(st.sampled_from(['push', 'pull', 'layerwise']))}"]
    return {"arrival": np.cumsum([0.0, *gaps]), "prompts": prompts, "outputs": outputs, "blocks": blocks, "bs": bs,
            "sets": sets, "mode": mode, "refused": refused}


def test_a_request_needs_the_kv_of_the_tokens_fed_not_its_last():
    """By hand: 3 usable blocks of 512 tokens (num_gpu_blocks 4 less vLLM's null block) hold 1,536 tokens. A prompt
    of 1,024 tokens with 513 out feeds the model 1,024 + 512 tokens (the last one is sampled, never fed: vLLM
    schedules no step past max_tokens), so it runs alone in exactly its 3 blocks, without preemption; it was refused
    as exceeds_kv_capacity (prompt + output = 1,537 tokens counted, 4 blocks). 514 out needs a 4th block: refused."""
    config = load_config(None, sets=["serving.block_size=512", "serving.num_gpu_blocks=4", "serving.num_instances=1"])
    fits = make_trace([0.0], [1024], [513], 512)
    assert admit(fits, config) == {}
    result, requests = run_serving(fits, config, "single")
    assert result.metrics["requests_completed"] == 1 and result.metrics["preemptions"] == 0
    assert result.metrics["instances"]["each"][0]["kv_usage_peak"] == pytest.approx(1.0)
    assert admit(make_trace([0.0, 1.0], [1024, 1024], [513, 514], 512), config) == {"exceeds_kv_capacity": 1}


def test_a_request_at_exactly_an_instances_blocks_waits_for_them_instead_of_ending_the_run():
    """The admission lets in a request whose KV fills an instance exactly (above: a prompt of 3 blocks of 512 with one
    token out; on a PD prefill instance of 31 blocks of 16 a 496-token prompt). Arriving while another request holds
    blocks, it must wait for them and run; the scheduler's could-it-ever-fit check asked for one token more (its next
    slot, which such a request never feeds) and ended the run with exit 2 ("needs 4 KV blocks, more than instance 0
    has (3 ...)"). By hand: each runs after the first request, both complete, nothing preempted."""
    for asynchronous in ("true", "false"):
        config = load_config(None, sets=["serving.block_size=512", "serving.num_gpu_blocks=4",
                                         "serving.num_instances=1", f"serving.async_scheduling={asynchronous}"])
        trace = make_trace([0.0, 0.001], [100, 1536], [50, 1], 512)
        assert admit(trace, config) == {}
        result, _ = run_serving(trace, config, "single")
        assert (result.metrics["requests_completed"], result.metrics["preemptions"]) == (2, 0)
    config = load_config(None, sets=["cache.tiers.hbm.capacity_gib=0.0625", "pd.decode_tensor_parallel_size=2"])
    trace = make_trace([0.0, 0.0001], [300, 496], [10, 10])
    assert admit(trace, config, "pd") == {}
    result, _ = run_serving(trace, config, "pd")
    assert result.metrics["requests_completed"] == 2


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


def _case(arrival, prompts, outputs, blocks, sets, mode="single") -> dict:
    return {"arrival": np.asarray(arrival, float), "prompts": prompts, "outputs": outputs, "blocks": blocks, "bs": 16,
            "sets": ["serving.block_size=16", *sets], "mode": mode, "refused": 0}


@settings(max_examples=20, derandomize=True, deadline=None, database=None)
@given(case=memory_pressure())
# 1 prefill + 1 decode instance, 6 usable blocks each: KV for one 16-token prompt with 60 tokens out (5 blocks) at a
# time; three prompts (60, 2, 60 out), the third 0.1 s later. An earlier change of the decode-side queue order
# deadlocked here.
@example(case=_case([0.0, 0.0, 0.1], [16, 16, 16], [60, 2, 60], [[0], [1], [2]],
                    ["serving.num_gpu_blocks=7", "serving.enable_prefix_caching=false", "pd.num_prefill=1",
                     "pd.num_decode=1"], mode="pd"))
# A victim that frees nothing: A, B, C arrive together (2 usable blocks; C's prompt is A's block 0), B and C finish in
# step 1. Asynchronously step 2 is planned with them still there; A's 17th token needs a block: C (joined last) gives
# up block 0, which A still holds, so B must go next. Choosing C again (it still looks like the last to join) would
# loop for ever.
@example(case=_case([0.0, 0.0, 0.0], [16, 16, 16], [16, 1, 1], [[0], [1], [0]],
                    ["serving.num_gpu_blocks=3", "serving.max_num_seqs=3", "serving.enable_prefix_caching=true",
                     "serving.num_instances=1"]))
def test_every_request_completes_or_is_refused_under_memory_pressure_either_way(case):
    """Liveness: whatever the memory pressure, every request that fits an empty instance completes (its last token
    after its first, after its arrival), synchronously and asynchronously, and the one that cannot is refused and
    counted before the run (README Serving); none is lost and the run ends. The expectation is by hand: a request
    needs ceil((prompt + output - 1) / block_size) blocks (its last token is never fed; a PD decode instance one
    token more, its first step's slot), an instance has num_gpu_blocks - 1 of them."""
    for asynchronous in (False, True):
        config = load_config(None, sets=[*case["sets"], f"serving.async_scheduling={str(asynchronous).lower()}"])
        trace = make_trace(case["arrival"], case["prompts"], case["outputs"], case["bs"], case["blocks"])
        skipped = admit(trace, config)
        assert skipped == ({"exceeds_kv_capacity": 1} if case["refused"] else {})
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_S)
        try:
            result, requests = run_serving(trace, config, case["mode"])
        except _Hang:
            pytest.fail(f"no answer in {HANG_S} s (async={asynchronous}): {case}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert result.metrics["requests_completed"] == len(case["prompts"]) - case["refused"]
        assert all(math.isfinite(t) for t in requests.last_token)
        assert np.all(requests.arrival <= requests.first_token) and np.all(requests.first_token <= requests.last_token)
