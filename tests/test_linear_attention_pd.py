"""A Gated DeltaNet hybrid (Qwen3-Next) served prefill/decode-disaggregated as vLLM 0.33's NixlConnector serves it
(``sim.serving.state_transfer``): what crosses, what the decode side holds and computes, each worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.job import Job
from sim.serving.run import ServingRun, run_serving
from tests.conftest import identical_reruns
from tests.test_serving import make_trace
from trace.request import Trace

STATE = 8192 * 3 * 2 + 32 * 128 * 128 * 2  # one Qwen3-Next GDN layer's state per sequence in bf16: 1,097,728 B
RUN = ("model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=2", "pd.num_prefill=1",
       "pd.num_decode=1", "serving.max_num_batched_tokens=2048", "network.latency_us=0")
PLAIN = (*RUN, "serving.enable_prefix_caching=false", "serving.block_size=544")  # mamba_cache_mode "none"
ALIGN = (*RUN, "serving.enable_prefix_caching=true", "serving.block_size=576")  # "align": lcm with FlashInfer's 64
# TP 2: one of the 2 KV heads (256 wide, bf16) a rank, 12 attention layers a block (the group size)
BLOCK_544 = 12 * 544 * 256 * 2 * 2  # 6,684,672 B
BLOCK_576 = 12 * 576 * 256 * 2 * 2  # 7,077,888 B
# each state group's running state block: a state of each of its 12 layers, half of each on a rank, unpadded
STATES = 3 * 12 * STATE // 2  # 19,759,104 B


def _trace(inputs, outputs, block_size, block_lists=None, arrival=None) -> Trace:
    """Requests arriving together (or at ``arrival``), as tests/test_serving.py builds them."""
    arrival = np.zeros(len(inputs)) if arrival is None else arrival
    return make_trace(arrival, inputs, outputs, block_size, block_lists)


@pytest.mark.parametrize("transfer", ["push", "pull"])
def test_one_requests_bytes_and_ttft_by_hand(transfer):
    """A 1,000-token prompt: the prefill side computes 999 tokens (nixl _prefill_backoff), sends their
    cdiv(999, 544) = 2 attention blocks and the 3 state groups' running states, 66,256,896 B over the two ranks; the
    decode side computes token 1,000 alone (a one-token query over 1,000 keys) and samples the first token."""
    config = load_config(None, sets=[*PLAIN, f"pd.transfer={transfer}"])
    _, requests = run_serving(_trace([1000], [2], 544), config, "pd")
    per_rank = 2 * BLOCK_544 + STATES
    assert per_rank == 33_128_448
    assert requests.kv_transfer_bytes[0] == 2 * per_rank
    compute = compute_model(config)
    prefill, first = StepShape(), StepShape()
    prefill.add_prefill(999, 0)
    first.add_decode(1000)
    breakdown = {name: float(values[0]) for name, values in requests.breakdown().items()}
    assert breakdown["queue"] == 0 and breakdown["kv_load"] == 0
    assert breakdown["prefill"] == pytest.approx(compute.step_time(prefill), rel=1e-12)
    assert breakdown["kv_transfer"] == pytest.approx(per_rank * 8 / (config.network.bandwidth_gbps * 1e9), rel=1e-12)
    assert breakdown["first_decode"] == pytest.approx(compute.step_time(first), rel=1e-12)
    assert float(requests.ttft[0]) == pytest.approx(sum(breakdown.values()), rel=1e-12)


def test_a_one_token_prompt_sends_nothing_and_is_computed_on_the_decode_side():
    """A 1-token prompt is no longer than the backoff: the prefill side computes it whole (``_truncate_request_for_
    prefill`` keeps a prompt of at most the backoff), and the decode side asks for N - 1 = 0 remote tokens
    (``_get_remote_prefill_token_count``): nothing crosses (no attention block, no state), and the decode side
    computes the token from the initial state, a one-token query over 1 key, and samples the first output."""
    config = load_config(None, sets=list(PLAIN))
    _, requests = run_serving(_trace([1], [2], 544), config, "pd")
    assert requests.kv_transfer_bytes[0] == 0
    first = StepShape()
    first.add_decode(1)
    assert requests.first_token[0] - requests.kv_ready[0] == pytest.approx(compute_model(config).step_time(first),
                                                                           rel=1e-12)


def _decode_side(sets, trace):
    run = ServingRun(trace, load_config(None, sets=list(sets)), "pd")
    return run.decode[0]


@pytest.mark.parametrize(("prompt", "held", "after_first_step"), [
    (1000, 2 + 3, 2 + 3),  # 999 tokens: 2 attention blocks and 1 block in each of the 3 state groups
    (1089, 2 + 3, 3 + 3),  # 1,088 tokens fill 2 blocks; token 1,089 opens a third
])
def test_the_decode_side_holds_the_sent_tokens_blocks_and_one_state_block_a_group(prompt, held, after_first_step):
    """vLLM (mamba_cache_mode "none"): allocate_slots for the N - 1 external tokens takes their attention blocks
    and one block a state group (its block is max_model_len tokens); the step computing token N takes its own."""
    decode = _decode_side(PLAIN, _trace([prompt], [4], 544))
    job = Job(0, prompt, 4, range(-(-prompt // 544)), 0, target=prompt, admitted_once=True)
    assert decode.reserve(job, 1) == held - 3  # (no prefix caching: every attention block crosses)
    assert (decode.pool.used, job.computed, job.target) == (held, prompt - 1, prompt - 1)
    decode.kv.allocate(job, prompt)
    assert decode.pool.used == after_first_step
    decode.kv.free(job)
    assert decode.pool.used == 0


def test_align_mode_decode_side_state_blocks_by_hand():
    """Prefix caching (align): 1,153 tokens, 1,152 sent (2 blocks of 576): 2 attention blocks and the running state
    block (index 1) in each state group; the step computing token 1,153 opens attention block 3 and state block 2
    beside block 1 (MambaManager frees the block before a step later, remove_skipped_blocks), which goes then."""
    decode = _decode_side(ALIGN, _trace([1153], [4], 576, block_lists=[[0, 1, 2]]))
    job = Job(0, 1153, 4, [0, 1, 2], 0, target=1153, admitted_once=True, chain=np.array([0, 1, 2]))
    assert decode.reserve(job, 1) == 2
    assert decode.pool.used == 2 + 3 and job.state_idx == ((1, True),)  # (its state is kept: the replay boundary)
    job.computed = 1152
    decode.kv.allocate(job, 1153)
    assert decode.pool.used == 3 + 3 + 3
    job.computed = 1153
    decode.kv.allocate(job, 1154)
    assert decode.pool.used == 3 + 3 and job.state_idx == ((2, False),)


def test_only_the_blocks_of_the_tokens_sent_are_landing():
    """1,729 tokens (blocks 10-13 of 576, the 4th holding token 1,729 alone): 1,728 tokens cross, filling blocks
    10-12, which the decode side holds and waits for (``landing``); block 13 is neither sent nor held (the step
    computing token 1,729 takes it). Before, it was counted landing too, a block no transfer brings."""
    ids = [10, 11, 12, 13]
    decode = _decode_side(ALIGN, _trace([1729], [4], 576, block_lists=[ids]))
    job = Job(0, 1729, 4, list(ids), 0, target=1729, admitted_once=True, chain=np.array(ids))
    assert decode.reserve(job, 1) == 3 and job.held == 3
    assert decode.kv.landing == {10: 1, 11: 1, 12: 1}
    decode.landed(job)
    assert not decode.kv.landing


def test_the_decode_sides_own_prefix_is_not_sent_again():
    """The same 1,200-token prompt twice, far apart, prefix caching on: the first time 3 attention blocks of the 1,199
    tokens cross; the second, the decode side holds the first 2 (its full-attention hit, whole blocks short of the
    last token), so 1 crosses, the states whatever it holds (get_computed_blocks_for_connector)."""
    ids = [10, 11, 12]
    config = load_config(None, sets=list(ALIGN))
    _, requests = run_serving(_trace([1200, 1200], [4, 4], 576, [ids, ids], [0.0, 100.0]), config, "pd")
    assert requests.kv_transfer_bytes.tolist() == [2 * (3 * BLOCK_576 + STATES), 2 * (BLOCK_576 + STATES)]


def test_a_decode_side_holding_all_it_would_be_sent_computes_locally():
    """1,153 tokens twice: the second time the decode side holds both blocks of the 1,152 tokens sent and the state
    after them (kept at the replay boundary), so nothing crosses (the connector finds no token to load) and it
    computes token 1,153 from its own hit."""
    ids = [10, 11, 12]
    config = load_config(None, sets=list(ALIGN))
    _, requests = run_serving(_trace([1153, 1153], [4, 4], 576, [ids, ids], [0.0, 100.0]), config, "pd")
    assert requests.kv_transfer_bytes.tolist() == [2 * (2 * BLOCK_576 + STATES), 0]
    assert requests.breakdown()["kv_transfer"][1] == 0
    first = StepShape()
    first.add_prefill(1, 1152)
    assert requests.breakdown()["first_decode"][1] == pytest.approx(compute_model(config).step_time(first), rel=1e-12)


def test_a_pd_run_is_byte_identical_on_a_rerun(run_cli, tmp_path):
    report = identical_reruns(run_cli, tmp_path, "--preset", "smoke", "--no-plot", "--quiet", "--pd", "--set",
                              "workload.synthetic.kind=multi-turn", *[a for s in ALIGN for a in ("--set", s)])
    metrics = report["runs"][0]["metrics"]
    assert metrics["requests_completed"] > 0 and metrics["hits"] > 0 and metrics["ttft_breakdown_s"]["kv_transfer"] > 0


def test_a_local_hit_on_a_decode_instance_without_room_is_not_carried_to_the_next():
    """Two decode instances: the first holds the 1,152 tokens' blocks and the state after block 0 only (a local hit
    of 1 block, junction 2) but no free block, so the job goes to the second, which holds nothing: there it takes 2
    attention blocks and 1 state block a group, 5, as a fresh job does; not the 8 the first's hit would make it."""
    ids = [10, 11, 12]
    sets = [*(s for s in ALIGN if s != "pd.num_decode=1"), "pd.num_decode=2"]
    run = ServingRun(_trace([1153, 1153], [4, 4], 576, [ids, ids], [0.0, 100.0]), load_config(None, sets=sets), "pd")
    first, second = run.decode
    job = Job(0, 1153, 4, list(ids), 0, target=1153, admitted_once=True, chain=np.array(ids))
    state_keys = first.kv._state_keys(job, 0)
    first.kv.cache.touch_chain(np.array([10, 11, *state_keys]), np.zeros(2 + len(state_keys), dtype=np.int64))
    first.pool.allocate(first.pool.free)
    assert first.reserve(job, 1) is None
    second.pool.allocate(second.pool.free - 5)
    assert second.reserve(job, 1) == 2
    assert second.pool.used - (second.pool.total - 5) == 5 and job.state_idx == ((1, True),)


@pytest.mark.parametrize("free, sent", [(9, 0), (8, None)])
def test_a_decode_side_computing_from_its_own_hit_holds_a_block_for_the_token_it_computes(free, sent):
    """The decode side holds both blocks of the 1,152 tokens sent and the state after them, so nothing is sent and it
    computes token 1,153 itself, whose KV and state need blocks of their own. By hand (blocks of 576): 3 attention
    blocks (2 found, 1 for token 1,153) and in each of the 3 state groups the state found and the one after token
    1,153: 9 blocks, 5 of them found (cached, so among the free ones). With 9 free it is reserved, nothing to send;
    with 8 it must wait (holding the computed tokens alone, 5 blocks, it was reserved and its step overran)."""
    ids = [10, 11, 12]
    run = ServingRun(_trace([1153, 1153], [4, 4], 576, [ids, ids], [0.0, 100.0]), load_config(None, sets=list(ALIGN)),
                     "pd")
    (decode,) = run.decode
    job = Job(0, 1153, 4, list(ids), 0, target=1153, admitted_once=True, chain=np.array(ids))
    state_keys = decode.kv._state_keys(job, 1)  # (the states after block 1: a hit of both blocks)
    decode.kv.cache.touch_chain(np.array([10, 11, *state_keys]), np.zeros(2 + len(state_keys), dtype=np.int64))
    decode.pool.allocate(decode.pool.free - free)
    assert decode.reserve(job, 1) == sent
    assert decode.pool.free == (0 if sent == 0 else free)


def test_two_requests_sharing_a_prefix_on_one_decode_instance_by_hand():
    """Three 1,200-token prompts of blocks 10, 11, 12 (576 tokens each) reserved on one decode instance, with vLLM's
    decode-side rule (get_computed_blocks_for_connector reports the full-attention hit, whole blocks short of the last
    token; allocate_slots' add_local_computed_blocks touches those blocks, shared, and skips the state group's hit,
    get_num_skipped_tokens = computed - 1; allocate_external_computed_blocks takes new blocks for the rest, which the
    connector fills). Each request sends cdiv(1,199, 576) = 3 blocks' tokens less its hit, and takes new blocks for
    them and 1 running state block in each of the 3 state groups (index 2).

    A (nothing here): hit 0, sent 3, takes 3 + 3 = 6. B while A's KV is in flight: its lookup stops at A's block 10
    (not cached until it lands), hit 0, sent 3, takes 3 copies + 3 = 6 (12 in all). C after A landed: its hit is A's
    blocks 10 and 11 (block 12 holds its last token), shared: sent 1, takes 1 copy (block 12, A's) + 3 = 4 (16 in all;
    kvsim took 6, copying 10 and 11 too, which the transfer counted as held)."""
    ids = [10, 11, 12]
    decode = _decode_side(ALIGN, _trace([1200] * 3, [4] * 3, 576, [ids] * 3))

    def job(rid):
        return Job(rid, 1200, 4, list(ids), 0, target=1200, admitted_once=True, chain=np.array(ids))

    a, b, c = job(0), job(1), job(2)
    assert decode.reserve(a, 1) == 3 and decode.pool.used == 6
    assert decode.reserve(b, 1) == 3 and decode.pool.used == 12 and b.prompt_copies == (0, 1, 2)
    decode.landed(a)
    assert decode.reserve(c, 1) == 1
    assert decode.pool.used == 16
    assert c.prompt_copies == (2,) and decode.pool.refs == {10: 2, 11: 2, 12: 1}
    assert c.state_idx == ((2, False),) and (c.computed, c.target) == (1199, 1199)
    decode.kv.free(c)
    assert decode.pool.used == 12 and decode.pool.refs == {10: 1, 11: 1, 12: 1}


def test_a_second_request_shares_the_prefix_a_running_request_holds_on_the_decode_side():
    """A run: A (1,200 tokens, blocks 10-12, 200 output tokens) still decoding when B (the same prompt) is sent 0.3 s
    later: B's decode-side hit is A's blocks 10 and 11, so 1 attention block crosses (with the states) and B's
    reservation takes 1 new attention block (its block 12) and 1 state block in each of the 3 groups: 4 (kvsim took 6,
    copying the 2 blocks it did not send)."""
    ids = [10, 11, 12]
    run = ServingRun(_trace([1200, 1200], [200, 4], 576, [ids, ids], [0.0, 0.3]), load_config(None, sets=list(ALIGN)),
                     "pd")
    decode = run.decode[0]
    taken = {}
    reserve = decode.reserve

    def watched(job, backoff=0):
        before = decode.pool.used
        blocks = reserve(job, backoff)
        taken[job.rid] = decode.pool.used - before
        return blocks

    decode.reserve = watched
    run.run()
    table = run.table
    assert table.kv_sent[1] < table.last_token[0]  # (A still holds its blocks when B is reserved)
    assert table.kv_transfer_bytes.tolist() == [2 * (3 * BLOCK_576 + STATES), 2 * (BLOCK_576 + STATES)]
    assert taken == {0: 3 + 3, 1: 1 + 3}
