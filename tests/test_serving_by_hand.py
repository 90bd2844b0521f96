"""Serving behaviours a hand-made mutation of the scheduler, the admission and the prefix-hit accounting showed no
test checking (hmut's audit): times and counts worked out by hand from the compute model's step prices."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.admission import admit
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.run import run_serving
from tests.test_serving import make_trace


def _price(config, prefills: tuple[tuple[int, int], ...] = (), decode_kv: tuple[int, ...] = ()) -> float:
    """One step's time: ``prefills`` (chunk, cached context) and decodes over ``decode_kv`` KV tokens."""
    shape = StepShape()
    for chunk, context in prefills:
        shape.add_prefill(chunk, context)
    for kv in decode_kv:
        shape.add_decode(kv)
    return compute_model(config).step_time(shape)


def test_a_request_preempted_in_its_decode_recomputes_its_prompt_and_generated_tokens():
    """vLLM's ``_preempt_request`` sets num_computed_tokens to 0: readmitted, a request prefills its prompt and the
    tokens it generated. By hand: 3 usable blocks of 16 (4 less the null block), no prefix caching, A (16 tokens, 2
    out) and B (16, 3 out) together. Step 1 prefills both (a block each). Step 2: A's decode (token 17) takes the
    third block; B's needs a fourth and preempts B (the last admitted) after 1 token. A ends there. Step 3 prefills
    B's 16 + 1 tokens (its 2nd token), step 4 decodes over 18 KV tokens (its 3rd)."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=4", "serving.block_size=16",
                                     "serving.enable_prefix_caching=false"])
    assert _price(config, prefills=((17, 0),)) != _price(config, prefills=((16, 0),))  # (the premise: 1 token shows)
    t1 = _price(config, prefills=((16, 0), (16, 0)))
    t2 = t1 + _price(config, decode_kv=(17,))
    t3 = t2 + _price(config, prefills=((17, 0),))
    t4 = t3 + _price(config, decode_kv=(18,))
    _, requests = run_serving(make_trace([0.0, 0.0], [16, 16], [2, 3]), config, "single")
    assert list(requests.preemptions) == [0, 1]
    assert requests.first_token.tolist() == pytest.approx([t1, t1], rel=1e-12)
    assert requests.last_token.tolist() == pytest.approx([t2, t4], rel=1e-12)


def test_a_prefix_hit_is_priced_as_a_chunk_over_its_cached_context():
    """A request whose prompt starts with cached blocks prefills only the rest, attending over the cached tokens: B
    (48 tokens, blocks 0 1 2) after A (32 tokens, blocks 0 1) has left hits 2 blocks and prefills 16 tokens over a
    context of 32, so its first token comes one such step after it is scheduled."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16"])
    assert _price(config, prefills=((16, 32),)) != _price(config, prefills=((16, 0),))  # (the premise)
    trace = make_trace([0.0, 50.0], [32, 48], [2, 2], block_lists=[[0, 1], [0, 1, 2]])
    _, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 32]
    assert requests.kv_load[1] == 0.0  # (HBM holds them: nothing to load)
    assert requests.first_token[1] - requests.scheduled[1] == pytest.approx(_price(config, prefills=((16, 32),)),
                                                                            rel=1e-12)


def test_a_decode_instance_runs_no_more_sequences_than_max_num_seqs():
    """PD, one sequence slot: a decode instance whose KV has arrived for two requests decodes one at a time (vLLM's
    max_num_seqs caps the running batch whatever the requests hold), so the second one's 19 decode steps all come
    after the first one's last token, each at least as long as the shortest decode step."""
    config = load_config(None, sets=["serving.num_instances=2", "serving.block_size=16", "serving.max_num_seqs=1"])
    _, requests = run_serving(make_trace([0.0, 0.0], [16, 16], [20, 20]), config, "pd")
    first, second = np.sort(requests.last_token)
    assert second - first >= 19 * _price(config, decode_kv=(17,)) * (1 - 1e-12)


def test_a_last_block_served_from_a_lower_tier_hits_all_but_the_last_token():
    """vLLM's offloading connector serves whole blocks up to the prompt's end and the scheduler recomputes the last
    token (``_update_waiting_for_remote_kv``: num_computed_tokens -= 1): a 32-token prompt whose two blocks are in
    DRAM is served 31 tokens (2 blocks), where in HBM it would be 16. By hand: 5 usable HBM blocks; C's 64-token
    prompt (4 blocks, a 5th for its decode) pushes A's 2 cached blocks down to DRAM before B asks for them."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16", "serving.num_gpu_blocks=6",
                                     "cache.tiers.dram.capacity_gib=1"])
    trace = make_trace([0.0, 50.0, 100.0], [32, 64, 32], [2, 2, 2], block_lists=[[0, 1], [5, 6, 7, 8], [0, 1]])
    result, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 0, 31]
    assert requests.kv_load[2] > 0  # (read from DRAM)
    assert result.metrics["token_hit_ratio"] == pytest.approx(31 / (32 + 64 + 32), rel=1e-12)  # the report's count


def test_a_request_of_no_output_still_needs_the_kv_of_its_whole_prompt():
    """Every request decodes at least one token, so one of 0 output tokens feeds its whole prompt: with 3 usable
    blocks of 16 (4 less the null block), a 49-token prompt (4 blocks) can never run, a 48-token one can."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=4", "serving.block_size=16"])
    trace = make_trace([0.0, 1.0], [49, 48], [0, 0])
    assert admit(trace, config) == {"exceeds_kv_capacity": 1}
    assert trace.input_tokens.tolist() == [48]


def test_a_pd_decode_instance_holds_the_kv_of_every_token_fed_there():
    """vLLM's decode side counts a received prompt one token short (``Scheduler._update_waiting_for_remote_kv``:
    num_computed_tokens -= 1) and its first step feeds the prompt's last token again to sample the first output, so it
    holds prompt + output - 1 tokens of KV, as a unified instance does. With 3 usable blocks of 16 (4 less the null
    block): 40 + 10 tokens (49: 4 blocks) can never run there, 40 + 9 (48: 3 blocks) can, alone and unpreempted; its
    9 decode steps attend to 40, 41, ..., 48 keys (the first over the prompt alone)."""
    config = load_config(None, sets=["serving.num_instances=2", "serving.num_gpu_blocks=4", "serving.block_size=16"])
    trace = make_trace([0.0, 1.0], [40, 40], [10, 9])
    assert admit(trace, config, "pd") == {"exceeds_kv_capacity": 1}
    assert trace.output_tokens.tolist() == [9]
    _, requests = run_serving(make_trace([0.0], [40], [9]), config, "pd")
    assert list(requests.preemptions) == [0]
    ready = requests.kv_ready[0]
    assert requests.first_token[0] - ready == pytest.approx(_price(config, decode_kv=(40,)), rel=1e-9)
    assert requests.last_token[0] - ready == pytest.approx(sum(_price(config, decode_kv=(kv,)) for kv in range(40, 49)),
                                                           rel=1e-9)



def test_a_pd_decode_instance_holds_a_prompt_filling_its_blocks_in_them_alone():
    """The decode side's first step writes no new slot (it feeds the prompt's last token again over the KV sent), so
    a prompt that fills its blocks exactly needs no block more there. By hand, 3 usable blocks of 16: 48 + 1 tokens
    (48 held: 3 blocks) is admitted and runs, its one decode step over the 48 keys sent, right after they land (a
    slot held for a token beyond the prompt needs a 4th block: the request waited for it forever, a stall)."""
    config = load_config(None, sets=["serving.num_instances=2", "serving.num_gpu_blocks=4", "serving.block_size=16"])
    trace = make_trace([0.0], [48], [1])
    assert admit(trace, config, "pd") == {}
    _, requests = run_serving(trace, config, "pd")
    assert list(requests.preemptions) == [0]
    assert requests.first_token[0] - requests.kv_ready[0] == pytest.approx(_price(config, decode_kv=(48,)), rel=1e-9)

def test_a_pd_decode_instance_finds_no_block_whose_kv_is_still_on_its_way():
    """vLLM's decode side caches a received block's hash only once its KV has landed (``_update_waiting_for_remote_kv``
    -> ``cache_blocks``): a request arriving while another's transfer of the same prefix is under way finds none of it
    and is sent its own copy. Two prefill instances, one decode, a 1 Gb/s link: A and B (blocks 1-4, 64 tokens each)
    1 ms apart are each sent all 4 blocks (B's first token after its own 4 blocks land: before, it was sent 1 and
    decoded over A's blocks 50 ms before they arrived); B arriving after A's KV landed finds 3 (all but the block
    holding its last token) and is sent 1."""
    config = load_config(None, sets=["pd.num_prefill=2", "pd.num_decode=1", "serving.block_size=16",
                                     "network.bandwidth_gbps=1"])
    _, together = run_serving(make_trace([0.0, 0.001], [64, 64], [4, 4], block_lists=[[1, 2, 3, 4]] * 2), config, "pd")
    block = together.kv_transfer_bytes[0] // 4
    assert together.kv_transfer_bytes.tolist() == [4 * block, 4 * block]
    assert together.first_token[1] > together.kv_ready[1] >= together.kv_ready[0]
    _, apart = run_serving(make_trace([0.0, 5.0], [64, 64], [4, 4], block_lists=[[1, 2, 3, 4]] * 2), config, "pd")
    assert apart.kv_transfer_bytes.tolist() == [4 * block, block]


def test_blocks_in_transfer_hide_only_themselves_and_only_until_the_last_copy_lands():
    """A decode instance's blocks still on their way (``KVCacheManager.landing``) hide only themselves, and only until
    they land: a lookup stops at the first of them it meets and nowhere else. Three prefill instances, one decode,
    1 Gb/s (a block ~16 ms). (1) A (blocks 1-4) lands; B (8 other blocks) is in transfer when C (A's blocks) is
    reserved: C finds A's 3 blocks that do not hold its last token and is sent 1 (B's blocks in flight hide nothing of
    C's). (2) A and B (1-4 then 9-12) are sent at once, 4 and 8 blocks, B's 1-4 into copies of its own (vLLM's
    ``allocate_slots`` takes new blocks past the hit); C (1-4) is reserved after A's blocks landed but while B's
    copies are still on their way: A's are cached under their hashes then (vLLM's ``cache_blocks`` as they land; a
    duplicate in flight does not hide them), so C finds 3 and is sent 1."""
    config = load_config(None, sets=["pd.num_prefill=3", "pd.num_decode=1", "serving.block_size=16",
                                     "network.bandwidth_gbps=1"])
    a, b = [1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12]
    _, other = run_serving(make_trace([0.0, 5.0, 5.002], [64, 128, 64], [4] * 3, block_lists=[a, b, a]), config, "pd")
    block = other.kv_transfer_bytes[0] // 4
    assert other.kv_ready[1] > other.kv_sent[2] > other.kv_sent[1] > other.kv_ready[0]  # (the premise: B in flight)
    assert other.kv_transfer_bytes.tolist() == [4 * block, 8 * block, block]
    b = [1, 2, 3, 4, 9, 10, 11, 12]
    # (A's 4 blocks and B's 8 share the decode instance's link: A lands after ~8 blocks' time, B after ~12)
    _, same = run_serving(make_trace([0.0, 0.0, 0.18], [64, 128, 64], [4] * 3, block_lists=[a, b, a]), config, "pd")
    assert same.kv_ready[1] > same.kv_sent[2] > same.kv_ready[0]  # (the premise: A's copy landed, B's not)
    assert same.kv_transfer_bytes.tolist() == [4 * block, 8 * block, block]


def test_a_decode_window_gives_back_exactly_the_blocks_a_transfer_needs(monkeypatch):
    """PD, 4 usable blocks of 16 on each instance (5 less the null block). A (16 in, 40 out) holds up to 55 tokens on
    the decode instance, all 4 blocks; its decode window reserves the blocks its later steps take. B (32 in, 1 out:
    2 blocks) arrives at 50 ms, when A's steps have taken 2 (it writes tokens 17-32). With single steps the other 2
    are free, and B's KV is sent as its prefill ends; the window must return its 2 reserved blocks (free 0 +
    reserved 2 = need 2) rather than hold B back until A ends (~270 ms): the same run either way."""
    import sim.serving.decode_windows

    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.block_size=16",
                                     "serving.num_gpu_blocks=5"])
    runs = []
    for steps in (None, 1):
        if steps:
            monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", steps)
        runs.append(run_serving(make_trace([0.0, 0.05], [16, 32], [40, 1]), config, "pd")[1])
    windowed, stepped = runs
    assert windowed.kv_sent[1] == windowed.prefill_done[1] and windowed.last_token[1] < windowed.last_token[0]
    for column in ("kv_sent", "first_token", "last_token"):
        assert getattr(windowed, column).tolist() == pytest.approx(getattr(stepped, column).tolist(), rel=1e-12)


@pytest.mark.parametrize("transfer", ["push", "pull"])
def test_a_pull_transfer_waits_for_a_sequence_slot_a_push_only_for_memory(transfer):
    """PD, one sequence slot an instance, two requests at t = 0 (16 in, 20 out), KV memory ample: pushed, B's KV
    goes as its prefill ends (it waits on the decode side for the slot); pulled, the decode side takes it only once it
    has a slot, so B's KV leaves when A's last token frees it."""
    config = load_config(None, sets=["serving.num_instances=2", "serving.block_size=16", "serving.max_num_seqs=1",
                                     f"pd.transfer={transfer}"])
    _, requests = run_serving(make_trace([0.0, 0.0], [16, 16], [20, 20]), config, "pd")
    assert requests.prefill_done[1] < requests.last_token[0]  # (the premise: B is ready while A decodes)
    assert requests.kv_sent[1] == (requests.prefill_done[1] if transfer == "push" else requests.last_token[0])
