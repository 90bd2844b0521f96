"""Serving model: queueing theory, TTFT breakdown, decode windows, preemption, KV transfer accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim.serving.decode_windows
from sim.config import load_config
from sim.errors import InputError
from sim.report.metrics import BREAKDOWN
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.engine_limits import block_size
from sim.serving.run import run_serving
from trace import blocks as bm
from trace.request import Trace, TraceProvenance


def make_trace(arrival, inputs, outputs, block_size=16, block_lists=None) -> Trace:
    n = len(arrival)
    inputs = np.asarray(inputs, dtype=np.int64)
    if block_lists is None:
        offsets = bm.offsets_from_counts(bm.blocks_per_request(inputs, block_size))
        ids, unique, kind = None, int(offsets[-1]), "unique"
    else:
        offsets = bm.offsets_from_counts(np.array([len(b) for b in block_lists]))
        ids = np.array([k for b in block_lists for k in b], dtype=np.int64)
        unique, kind = len(np.unique(ids)), "chained"
    prov = TraceProvenance(None, "test", None, n, n, 0, {}, kind, block_size)
    return Trace(np.asarray(arrival, float), inputs, np.asarray(outputs, dtype=np.int64), np.full(n, -1),
                 offsets, ids, unique, prov)


@pytest.mark.parametrize("load", [0.5, 0.8])
def test_prefill_only_instance_is_an_md1_queue(load):
    prompt, n = 1024, 40_000
    config = load_config(None, sets=["serving.num_instances=1", "serving.max_num_seqs=1",
                                     "serving.max_num_batched_tokens=2048"])
    shape = StepShape()
    shape.add_prefill(prompt, 0)
    service = compute_model(config).step_time(shape)  # D: deterministic service time
    rate = load / service
    arrival = np.cumsum(np.random.default_rng(11).exponential(1 / rate, n))
    result, _ = run_serving(make_trace(arrival, [prompt] * n, [1] * n), config, "single")
    expected = service + rate * service**2 / (2 * (1 - rate * service))  # M/D/1 mean response time
    assert result.metrics["ttft_s"]["mean"] == pytest.approx(expected, rel=0.03)


def _multi_turn_config(*extra):
    # an empty start: the small HBM is sized for conversations that begin in the window, not long ones under way
    return load_config(None, sets=["workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty",
                                   "workload.synthetic.num_requests=300",
                                   "workload.synthetic.turns_mean=25", "workload.synthetic.think_time_median_s=0.5",
                                   "workload.synthetic.rate_rps=20",
                                   "workload.synthetic.input_tokens_mean=150", "workload.synthetic.output_tokens_mean=40",
                                   "serving.num_gpu_blocks=1500", "cache.tiers.dram.capacity_gib=8",
                                   "serving.max_num_batched_tokens=2048", *extra])


def _synthetic(config):
    from trace.synthetic import generate

    return generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))


@pytest.mark.parametrize("mode,transfer", [("single", "push"), ("pd", "push"), ("pd", "pull"), ("pd", "layerwise")])
def test_ttft_breakdown_sums_to_ttft_per_request(mode, transfer):
    config = _multi_turn_config(f"pd.transfer={transfer}", "pd.num_prefill=2", "pd.num_decode=2")
    result, requests = run_serving(_synthetic(config), config, mode)
    parts = requests.breakdown()
    assert all((v >= -1e-12).all() for v in parts.values()), parts
    np.testing.assert_allclose(sum(parts.values()), requests.ttft, rtol=0, atol=1e-9)
    means = result.metrics["ttft_breakdown_s"]
    assert sum(means[k] for k in BREAKDOWN) == pytest.approx(result.metrics["ttft_s"]["mean"], rel=1e-9)
    assert result.metrics["hits"] > 0 and result.metrics["prefix_cache"] == "on"
    if mode == "pd":
        assert means["kv_transfer"] > 0 and means["first_decode"] > 0
    else:
        assert means["kv_transfer"] == 0 and means["first_decode"] == 0


@pytest.mark.parametrize("transfer", ["push", "pull"])
def test_waiting_for_decode_memory_is_queueing_not_kv_transfer(transfer):
    # By hand: two 96-token prompts (6 blocks of 16 tokens) with 4 output tokens each arrive together on two
    # prefill instances; the one decode instance has 10 usable blocks (11 less vLLM's null block), so the second
    # request's KV is sent only when the first request's blocks are freed. Each transfer crosses its prefill
    # instance's own link alone: 5 us + 6 x 16 x 131,072 B x 8 / 100 Gb/s, whatever the wait before it. The wait
    # for decode memory is queueing: quadrupling the bandwidth must not shorten it, and it was reported as KV
    # transfer (1.48 s mean "kv_transfer" on 1,000 Azure requests at 3P:1D, 11 ms of it on the wire).
    wire = 5e-6 + 6 * 16 * 131072 * 8 / 100e9
    config = load_config(None, sets=["pd.num_prefill=2", "pd.num_decode=1", "serving.num_gpu_blocks=11",
                                     f"pd.transfer={transfer}", "network.bandwidth_gbps=100", "network.latency_us=5"])
    result, requests = run_serving(make_trace([0.0, 0.0], [96, 96], [4, 4]), config, "pd")
    parts = requests.breakdown()
    np.testing.assert_allclose(parts["kv_transfer"], [wire, wire], rtol=1e-9)
    first, second = np.argsort(requests.kv_sent)
    assert requests.kv_sent[second] >= requests.last_token[first]  # its blocks freed only when the first finished
    waited = requests.kv_sent[second] - requests.prefill_done[second]
    assert waited > 10 * wire
    alone = requests.scheduled[second] - requests.arrival[second]
    assert parts["queue"][second] == pytest.approx(alone + waited, rel=1e-9)
    np.testing.assert_allclose(sum(parts.values()), requests.ttft, rtol=0, atol=1e-12)
    assert result.metrics["kv_transfer_s"]["mean"] == pytest.approx(wire, rel=1e-9)


def test_lower_tier_hits_are_loaded_not_recomputed():
    # HBM far too small to keep sessions, DRAM large: reuse is served from DRAM, with load time
    config = _multi_turn_config("serving.num_gpu_blocks=600", "serving.num_instances=1")
    result, requests = run_serving(_synthetic(config), config, "single")
    assert result.metrics["tier_hit_ratio"]["dram"] > 0
    assert result.metrics["ttft_breakdown_s"]["kv_load"] > 0
    assert ((requests.kv_load > 0) & (requests.cached_tokens > 0)).any()


# roomy: the prefix cache keeps every block; tight: windows' blocks push cached prefixes down to the SSD (a shared
# device, whose writes delay the prefill instance's loads), and PD's transfers wait for decode memory
@pytest.mark.parametrize("extra", [["serving.num_gpu_blocks=1500"],
                                   ["serving.num_gpu_blocks=520", "cache.tiers.dram.capacity_gib=0"]],
                         ids=["roomy", "tight"])
def test_decode_windows_equal_single_steps(monkeypatch, extra):
    # two decode instances: PD picks one by its KV in use and reserves blocks there while its window runs
    config = _multi_turn_config("pd.num_prefill=1", "pd.num_decode=2", *extra)
    assert_windows_equal_single_steps(monkeypatch, _synthetic(config), config)


def test_a_transfer_takes_the_block_a_window_reserved_for_the_step_after_the_one_in_progress(monkeypatch):
    """PD, 39 usable blocks of 16 tokens on the decode instance (40 less vLLM's null block). A (100 in, 300 out) at 0
    decodes alone there, in one window; B (449 in: 29 blocks) arrives at 0.397 s and its prefill ends while A's step
    writing A's 160th token runs (A's 10th block full; 0.394-0.400 s do so with the compute model's prices). Single
    steps plan a step as the one before it ends, so B's reserve then finds 39 - 10 = 29 blocks free: its KV is sent at
    once, and A's next step finds no block for its 161st token and A is preempted. A window must end with the step in
    progress too: running on through the next one (as it does for an arrival, which the next plan cannot see under
    async scheduling) kept that step's block, so B waited 1.59 s, until A finished."""
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=40"])
    assert config.serving.async_scheduling and block_size(config) == 16  # (the premise)
    trace = make_trace([0.0, 0.397], [100, 449], [300, 5])
    for steps in (sim.serving.decode_windows.MAX_WINDOW_STEPS, 1):
        monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", steps)
        result, requests = run_serving(trace, config, "pd")
        assert requests.kv_sent[1] == requests.prefill_done[1], steps
        assert result.metrics["preemptions"] == 1, steps
    monkeypatch.undo()
    assert_windows_equal_single_steps(monkeypatch, trace, config)


def test_kv_landing_under_a_window_joins_the_running_list_as_the_step_in_progress_ends(monkeypatch):
    """PD, asynchronous scheduling: A (100 in, 300 out) decodes alone on the decode instance, in one window; B's KV
    (48 in, 5 out), sent at 0.257 s, lands there during one of A's steps. Single steps read B as that step ends, just
    after planning the next one (``Instance.after_plan``): B, its blocks held, joins the running list then and is sampled
    running (not queued) until its first decode step. The window runs on through that next step and read B only
    as it ended: the time series counted B queued, one sample (66, 0.264 s) running 1 and queued 1 against single
    steps' 2 and 0. Every sample of the queued and running series must be single steps'."""
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1"])
    assert config.serving.async_scheduling  # (the premise)
    trace = make_trace([0.0, 0.25], [100, 48], [300, 5])
    series = []
    for steps in (sim.serving.decode_windows.MAX_WINDOW_STEPS, 1):
        monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", steps)
        result, requests = run_serving(trace, config, "pd")
        ts = result.metrics["timeseries"]
        series.append((np.asarray(ts["queued"]).tolist(), np.asarray(ts["running"]).tolist()))
        # (the premise: B's KV is sent at once, as its prefill ends, and lands while A decodes)
        assert requests.prefill_done[1] == requests.kv_sent[1] and requests.last_token[0] > requests.first_token[1]
        assert result.metrics["preemptions"] == 0
    windowed, stepped = series
    assert windowed == stepped


def assert_windows_equal_single_steps(monkeypatch, trace, config) -> None:
    """In both modes, a run's decode windows give what single steps give: timings (to 1e-9), hits, preemptions,
    completions, steps, every instance's KV occupancy and the time series' work, interval by interval."""
    for mode in ("single", "pd"):
        windowed, _ = run_serving(trace, config, mode)
        monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", 1)
        stepped, _ = run_serving(trace, config, mode)
        monkeypatch.undo()
        for key in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
            for stat, value in stepped.metrics[key].items():
                assert windowed.metrics[key][stat] == pytest.approx(value, rel=1e-9), (mode, key, stat)
        for key in ("hits", "preemptions", "requests_completed"):
            assert windowed.metrics[key] == stepped.metrics[key], (mode, key)
        assert windowed.metrics["instances"]["steps"] == stepped.metrics["instances"]["steps"]
        for role, work in stepped.metrics["timeseries"]["work"].items():
            for key, per_interval in work.items():
                windowed_work = windowed.metrics["timeseries"]["work"][role][key]
                assert windowed_work.tolist() == per_interval.tolist(), (mode, role, key)
        for w, o in zip(windowed.metrics["instances"]["each"], stepped.metrics["instances"]["each"], strict=True):
            assert (w["kv_usage_mean"], w["kv_usage_peak"]) == pytest.approx((o["kv_usage_mean"], o["kv_usage_peak"]), rel=1e-9)


def test_small_kv_memory_preempts_and_still_finishes():
    n = 60
    trace = make_trace(np.zeros(n), [500] * n, [400] * n)
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=200"])
    result, requests = run_serving(trace, config, "single")
    assert result.metrics["preemptions"] > 0 and result.metrics["requests_completed"] == n
    assert (requests.last_token >= requests.first_token).all()


def test_decode_preemption_with_one_sequence_slot_still_finishes():
    # PD, one sequence slot and 10 usable KV blocks of 16 tokens per instance (11 less vLLM's null block), three
    # 64 + 90-token requests
    # (each fits alone): the decode instance preempts its running request while the next one's KV
    # holds blocks in the ready queue; that one must take the freed slot, not leave the instance idle
    n = 3
    trace = make_trace(np.arange(n) * 1e-3, [64] * n, [90] * n)
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=11",
                                     "serving.max_num_seqs=1"])
    result, requests = run_serving(trace, config, "pd")
    assert result.metrics["requests_completed"] == n and result.metrics["preemptions"] > 0
    assert np.isfinite(requests.last_token).all() and (requests.last_token > requests.first_token).all()


def test_decode_side_preemption_keeps_the_prefill_admission():
    # PD, six 32-block prompts at once, 100 KV blocks per instance: the decode instance preempts and
    # recomputes; each request's admission (scheduled time, instance, breakdown) stays its prefill's
    n = 6
    blocks = [list(range(i * 100, i * 100 + 32)) for i in range(n)]
    trace = make_trace(np.zeros(n), [512] * n, [300] * n, block_lists=blocks)
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=100"])
    result, requests = run_serving(trace, config, "pd")
    assert result.metrics["preemptions"] > 0 and result.metrics["requests_completed"] == n
    assert requests.instance.tolist() == [0] * n and requests.decode_instance.tolist() == [1] * n
    assert (requests.scheduled <= requests.prefill_done).all()
    assert all((v >= 0).all() for v in requests.breakdown().values())
    assert (requests.cached_tokens < requests.input_tokens).all()


def test_request_larger_than_memory_fails_loudly():
    trace = make_trace([0.0], [5000], [10])
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=100"])
    with pytest.raises(InputError, match=r"needs 313 KV blocks, more than instance 0 has \(99 blocks"):
        run_serving(trace, config, "single")


def test_kv_transfer_skips_blocks_the_decode_instance_already_holds():
    # the same 64-block prompt twice, far apart: the second time the decode instance has it cached
    blocks = list(range(64))
    trace = make_trace([0.0, 100.0], [1024, 1024], [4, 4], block_lists=[blocks, blocks])
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1"])
    result, requests = run_serving(trace, config, "pd")
    block_bytes = 16 * 131072
    # vLLM: the decode side's own hit is whole blocks short of the last token (get_computed_blocks: 1023 tokens
    # -> 63 blocks), and the connector brings the rest of the prompt (NixlConnector.get_num_new_matched_tokens:
    # 1024 - 1008 tokens), so the 64th block crosses again
    assert requests.kv_transfer_bytes.tolist() == [64 * block_bytes, block_bytes]
    assert requests.cached_tokens[1] == 1008  # the prefill side hit 63 blocks: the last one is recomputed


@pytest.mark.parametrize("levels,tokens,prompt,expected", [
    ([0, 0], 32, 32, (1, 16)),  # all in HBM, block-aligned: get_computed_blocks stops at 31 tokens -> 1 block
    ([0, 0, 0], 40, 40, (2, 32)),  # a partial last block never hits
    ([0, 1], 32, 32, (2, 31)),  # the last block in a lower tier: loaded whole (OffloadingConnector loads
    ([1, 1], 32, 32, (2, 31)),  # tokens // block_size blocks), its last token recomputed (num_computed -= 1)
    ([0, 0, 0, 1], 64, 64, (4, 63)),
    ([1, 1, 1, 0], 64, 64, (3, 48)),  # the last block only in HBM: the local rule recomputes it whole
    ([0, 0, 1], 60, 40, (2, 32)),  # preempted (40 prompt + 20 generated): the partial prompt block is no hit
    ([0, 0], 37, 32, (2, 32)),  # preempted (32 + 5): both full prompt blocks; the 5 generated are recomputed
    ([1], 16, 16, (1, 15)),
    ([], 10, 10, (0, 0)),
])
def test_prefix_hit_by_hand(levels, tokens, prompt, expected):
    from sim.serving.prefix_match import prefix_hit

    assert prefix_hit(levels, tokens, prompt, 16) == expected


def test_a_prefix_hit_is_whole_blocks_short_of_the_last_token():
    """vLLM's KVCacheManager.get_computed_blocks (vllm/v1/core/kv_cache_manager.py) looks up at most
    num_tokens - 1 tokens, in whole blocks ("This can trigger recomputation of an entire block"). Blocks of 16:
    a 32-token prompt cached whole reuses 1 block (16 tokens), not 31; a 40-token prompt whose 3 blocks (the
    last partial) are all cached reuses 2 (32 tokens), not 39; a 33-token one reuses 2 (32)."""
    a, b, c = [0, 1], [10, 11, 12], [20, 21, 22]
    trace = make_trace([0.0, 50.0, 100.0, 150.0, 200.0, 250.0], [32, 32, 40, 40, 33, 33], [2] * 6,
                       block_lists=[a, a, b, b, c, c])
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16"])
    result, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 16, 0, 32, 0, 32]
    # a block recomputed is not a hit: 1 + 2 + 2 of 16 lookups
    assert (result.metrics["accesses"], result.metrics["hits"]) == (16, 5)
    assert result.metrics["token_hit_ratio"] == pytest.approx(80 / 210)


def test_analytic_kv_transfer_time_by_hand():
    # one request, 1024 tokens = 64 blocks of 2 MiB = 128 MiB over 100 Gbps, no latency: 10.737 ms
    trace = make_trace([0.0], [1024], [2])
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "network.latency_us=0"])
    _, requests = run_serving(trace, config, "pd")
    assert requests.breakdown()["kv_transfer"][0] * 1e3 == pytest.approx(128 * 2**20 * 8 / 100e9 * 1e3)
    assert math.isclose(requests.kv_transfer_bytes[0], 128 * 2**20)


def test_reference_scenario_orders_aggregated_below_disaggregated_ttft():
    """The SimAI/Vidur RTX 5090 study (profiles/rtx5090_llama3_8b_pd_study.yaml): 4 aggregated replicas
    answer faster than 2P+2D on the Azure conversation trace (146 vs 383 ms mean TTFT there)."""
    from tests.conftest import BUNDLED_AZURE, ROOT
    from trace.workload import load_workload

    config = load_config(None, overlays=[ROOT / "profiles" / "rtx5090_llama3_8b_pd_study.yaml"],
                         sets=[f"workload.trace={BUNDLED_AZURE}"])
    trace = load_workload(config)
    assert len(trace) == 500 and trace.input_tokens.max() == 4096
    aggregated, _ = run_serving(trace, config, "single")
    disaggregated, _ = run_serving(trace, config, "pd")
    assert aggregated.metrics["ttft_s"]["mean"] < disaggregated.metrics["ttft_s"]["mean"]
    assert aggregated.metrics["ttft_s"]["p99"] < disaggregated.metrics["ttft_s"]["p99"]
    assert disaggregated.metrics["ttft_breakdown_s"]["kv_transfer"] > 0


@pytest.mark.parametrize("policy", ["belady", "lfu", "s3fifo"])
def test_any_policy_serves_with_shared_lower_tiers(policy):
    # 4 instances share DRAM; small HBM forces demotions of blocks other instances placed there (at 600 blocks a
    # Belady whose freed prefixes return at their latest use keeps every reused block in HBM: no DRAM hit is left)
    config = _multi_turn_config(f"cache.policy={policy}", "serving.num_gpu_blocks=400", "serving.num_instances=4")
    result, _ = run_serving(_synthetic(config), config, "single")
    assert result.metrics["requests_completed"] == 300 and result.metrics["tier_hit_ratio"]["dram"] > 0


def test_layerwise_transfers_share_their_link(run_cli, tmp_path):
    """Two layerwise KV transfers from one prefill instance overlap on its link: the part the compute does not hide
    (full transfer - 31/32 of the prefill compute, Llama-3.1-8B's 32 layers) is shared max-min fairly while both
    cross. Hand-run processor sharing of the two from the run's own prefill times; each was charged as if alone."""
    import json

    import pandas as pd

    trace = tmp_path / "t.jsonl"  # two 51,200-token prompts (100 blocks of 512 tokens), nothing shared
    trace.write_text("".join(json.dumps({"timestamp": 0, "input_length": 51200, "output_length": 2,
                                         "hash_ids": list(range(100 * r + 1, 100 * r + 101))}) + "\n" for r in range(2)))
    csv = tmp_path / "r.csv"
    status, _, err = run_cli("--pd", "--workload-trace", trace, "--quiet", "--no-plot", "--requests-csv", csv,
                             "--set", "pd.transfer=layerwise", "--set", "network.bandwidth_gbps=10",
                             "--set", "network.latency_us=0")
    assert status == 0, err
    rows = pd.read_csv(csv)
    full = 51200 * 131072 / 1.25e9  # KV bytes (32 layers x 8 heads x 128 x 2 x bf16) over 10 Gb/s
    start = rows["prefill_done"].to_numpy()
    work = [max(full / 32, full - 31 / 32 * p) for p in rows["prefill_s"]]
    assert start[0] < start[1] < start[0] + work[0]  # they overlap
    done0 = start[1] + 2 * (work[0] - (start[1] - start[0]))  # alone, then at half rate
    done1 = done0 + work[1] - (done0 - start[1]) / 2  # half rate while both cross, then alone
    assert rows["kv_ready"].tolist() == pytest.approx([done0, done1], rel=1e-9)


# --cluster --pd: one GPU a node, so the KV crosses the two nodes' NICs (network.*), not a node's PCIe lanes
@pytest.mark.parametrize("mode", [("--pd",), ("--cluster", "--pd", "--set", "hardware.gpus_per_node=1",
                                              "--set", "cluster.nodes_per_rack=2")], ids=["pd", "cluster-pd"])
@pytest.mark.parametrize("gbps,compute_bound", [(400, True), (10, False)])
def test_layerwise_exposed_transfer_pays_the_link_latency_once(run_cli, tmp_path, gbps, compute_bound, mode):
    """By hand, one 4,096-token prompt alone (8 Mooncake blocks of 512 tokens) over a 2 ms link. Llama-3.1-8B's KV is
    2 x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B a token, so B = 536,870,912 B, B / 32 a layer. Each layer's
    KV is a message sent as soon as its layer is computed, back to back, so their latencies overlap: the last
    message arrives latency + max(one layer's serialization, all of it - the compute of layers 2..32) after the
    prefill ends. At 400 Gb/s the link keeps up (0.34 ms a layer against ~2.8 ms of compute): exposed = 2 ms +
    0.34 ms; it was 2 ms / 32 + 0.34 ms, a 32nd of the latency. At 10 Gb/s it does not: 2 ms + B / 1.25 GB/s -
    31/32 of the prefill."""
    import json

    import pandas as pd

    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 4096, "output_length": 2,
                                 "hash_ids": list(range(1, 9))}) + "\n")
    csv = tmp_path / "r.csv"
    status, _, err = run_cli(*mode, "--workload-trace", trace, "--quiet", "--no-plot", "--requests-csv", csv,
                             "--set", "pd.transfer=layerwise", "--set", f"network.bandwidth_gbps={gbps}",
                             "--set", "network.latency_us=2000")
    assert status == 0, err
    row = pd.read_csv(csv).iloc[0]
    nbytes, latency, bandwidth = 4096 * 131072, 2e-3, gbps * 1e9 / 8
    assert row["kv_transfer_bytes"] == nbytes
    per_layer = nbytes / 32 / bandwidth
    assert (per_layer < row["prefill_s"] / 32) == compute_bound
    expected = latency + max(per_layer, nbytes / bandwidth - 31 / 32 * row["prefill_s"])
    assert row["kv_transfer_s"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("mode", [("--pd",), ("--cluster", "--pd", "--set", "hardware.gpus_per_node=1",
                                              "--set", "cluster.nodes_per_rack=2")], ids=["pd", "cluster-pd"])
@pytest.mark.parametrize("model,layers,sent,last", [("gpt-oss-20b", 24, 12 * (6 + 1) * 2**20, 6 * 2**20),
                                                    ("gemma-3-4b", 34, 5 * (6 + 6 * 2) * 2 * 2**20, 2 * 2 * 2**20),
                                                    ("gemma-3-12b", 48, 8 * (6 + 5 * 2) * 4 * 2**20, 6 * 4 * 2**20)])
def test_layerwise_tail_is_the_last_layers_own_kv(run_cli, tmp_path, model, layers, sent, last, mode):
    """A sliding-window hybrid's layers send different bytes, so the message left after the last layer's compute is
    that layer's, not the mean layer's. By hand, one 3,072-token prompt (6 Mooncake blocks of 512 tokens) under
    vLLM's hybrid KV-cache manager (a block: one page of each of a group's layers, sim.serving.kv_groups):
    - gpt-oss-20b (24 layers, i % 2 == 0 slide within 128 tokens: its last, 23, is full attention): 2 x 8 KV heads x
      64 x 2 B = 2,048 B a token and layer, 1 MiB a layer's page; groups of 12 layers, one full, one sliding. The
      window (tokens 2,945..3,071) is in block 5 alone: 12 pages x (6 + 1) blocks sent; layer 23's: 6 MiB (the mean
      layer's, 84 MiB / 24 = 3.5 MiB, was charged);
    - gemma-3-4b (34 layers, full where (i + 1) % 6 == 0: its last, 33, slides within 1,024 tokens): 2 x 4 x 256 x
      2 B = 4,096 B, 2 MiB a page; groups of 5 layers (5 full, 29 sliding: one full group, six sliding). The window
      (tokens 2,049..3,071) is in blocks 4 and 5: 5 pages x (6 + 6 x 2) blocks; layer 33's: 2 pages, 4 MiB (the
      mean's 180 MiB / 34 = 5.29 MiB was charged);
    - gemma-3-12b (48 layers, full where (i + 1) % 6 == 0: its last, 47, is full attention): 2 x 8 x 256 x 2 B =
      8,192 B, 4 MiB a page; groups of 8 layers (8 full, 40 sliding: one full group, five sliding). The window is in
      blocks 4 and 5: 8 pages x (6 + 5 x 2) blocks; layer 47's: its 6 full blocks, 24 MiB (the full-attention blocks
      are the blocks sent less each of the five sliding groups' window, not less one window: 16 MiB).
    At 400 Gb/s the link keeps up with the compute: exposed = 2 ms latency + the last layer's bytes / bandwidth."""
    import json

    import pandas as pd

    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 3072, "output_length": 2,
                                 "hash_ids": list(range(1, 7))}) + "\n")
    csv = tmp_path / "r.csv"
    status, _, err = run_cli(*mode, "--workload-trace", trace, "--quiet", "--no-plot", "--requests-csv", csv,
                             "--set", f"model={model}", "--set", "pd.transfer=layerwise",
                             "--set", "network.bandwidth_gbps=400", "--set", "network.latency_us=2000")
    assert status == 0, err
    row = pd.read_csv(csv).iloc[0]
    bandwidth = 400e9 / 8
    assert row["kv_transfer_bytes"] == sent
    assert sent / bandwidth - (layers - 1) / layers * row["prefill_s"] < last / bandwidth  # the link keeps up
    assert row["kv_transfer_s"] == pytest.approx(2e-3 + last / bandwidth, rel=1e-9)


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("reserve_full_isl", [True, False])
def test_a_waiting_request_is_admitted_when_its_whole_sequence_fits(reserve_full_isl, asynchronous):
    """vLLM's scheduler_reserve_full_isl (KVCacheManager.allocate_slots(full_sequence_must_fit=True)): by hand, 10
    usable blocks of 16 tokens (11 less vLLM's null block), 48 tokens a step, two 96-token prompts (6 blocks each) and
    4 output tokens. A prefills in steps 1-2 (6 blocks) and its first decode takes a 7th block (token 97), leaving 3
    free, while B waits for budget. B's first 47-token chunk (3 blocks) would fit those 3, its whole prompt (6) would
    not: with the gate B waits until A has finished and freed its 7 blocks, without it B starts in step 3, and growing
    its prompt into blocks that A holds preempts it (vLLM: the last-admitted running request), in step 4. Readmitted
    (its first chunk fits the 3 blocks it freed) in step 5, A's last, B grows again in step 6: a synchronous loop plans
    step 6 after A has left, an asynchronous one while step 5 runs, when A still holds its blocks, so B is preempted a
    second time (and readmitted into that step with its first chunk, in the blocks it freed). With the gate, B starts
    at A's last token either way (asynchronous: the plan that finds A still holding its blocks is empty, and the one
    after A has left follows at once)."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=11", "serving.block_size=16",
                                     "serving.max_num_batched_tokens=48", "serving.max_num_seqs=2",
                                     f"serving.scheduler_reserve_full_isl={str(reserve_full_isl).lower()}",
                                     f"serving.async_scheduling={str(asynchronous).lower()}"])
    _, requests = run_serving(make_trace([0.0, 0.0], [96, 96], [4, 4]), config, "single")
    assert np.all(np.isfinite(requests.last_token))  # both complete
    if reserve_full_isl:  # B starts in the step after A's last token
        assert requests.scheduled[1] == requests.last_token[0] and list(requests.preemptions) == [0, 0]
    else:  # B starts in step 3, when A's first token is out, and is preempted
        assert requests.scheduled[1] == requests.first_token[0]
        assert list(requests.preemptions) == [0, 2 if asynchronous else 1]


@pytest.mark.parametrize("num_gpu_blocks, b_waits", [(9, False), (8, True)])
def test_the_null_block_is_not_given_to_requests(num_gpu_blocks, b_waits):
    """vLLM's BlockPool takes one of its num_gpu_blocks as the null block (vllm/v1/core/block_pool.py), so requests
    share num_gpu_blocks - 1. By hand, blocks of 16 tokens, two 64-token prompts (4 blocks each, one output token)
    arriving together, one step's budget for both: with 9 blocks (8 usable) both start in step 1; with 8 (7 usable)
    B's 4 blocks do not fit beside A's, so it waits for A to finish and free them. KV usage is over the usable
    blocks (vLLM's BlockPool.get_usage: 1 - free / (num_gpu_blocks - 1)); the report keeps vLLM's num_gpu_blocks."""
    config = load_config(None, sets=["serving.num_instances=1", f"serving.num_gpu_blocks={num_gpu_blocks}",
                                     "serving.block_size=16", "serving.max_num_batched_tokens=2048",
                                     "serving.enable_prefix_caching=false"])
    result, requests = run_serving(make_trace([0.0, 0.0], [64, 64], [1, 1]), config, "single")
    assert requests.scheduled[0] == 0.0
    if b_waits:
        assert requests.scheduled[1] == requests.last_token[0] > 0.0
    else:
        assert requests.scheduled[1] == 0.0
    instance = result.metrics["instances"]
    assert instance["kv_blocks_each"] == num_gpu_blocks
    assert instance["each"][0]["kv_usage_peak"] == pytest.approx((4 if b_waits else 8) / (num_gpu_blocks - 1))


def test_without_prefix_caching_two_running_requests_do_not_share_blocks():
    """vLLM without prefix caching (KVCacheCoordinatorNoPrefixCache) finds no block by its hash: two identical
    40-block prompts running at once hold 2 x 40 prompt blocks, not 40 (review helper-58: the pool deduplicated
    them), beside each one's 4 blocks of output (690 tokens: 44 blocks)."""
    blocks = list(range(40))
    trace = make_trace([0.0, 0.0], [640, 640], [50, 50], block_lists=[blocks, blocks])
    for caching, peak in (("true", 40 + 2 * 4), ("false", 2 * 44)):
        config = load_config(None, sets=["serving.num_instances=1", f"serving.enable_prefix_caching={caching}",
                                         "serving.max_num_batched_tokens=2048"])
        result, _ = run_serving(trace, config, "single")
        assert result.metrics["instances"]["each"][0]["kv_usage_peak"] * usable_total(config) == pytest.approx(peak)


def usable_total(config) -> int:
    from sim.serving.roles import usable_kv_blocks

    return usable_kv_blocks(config)



@pytest.mark.parametrize("lower_tiers", [False, True])
def test_a_partial_last_block_is_not_kept_as_a_cached_prefix(lower_tiers):
    """vLLM hashes only full blocks (BlockPool.cache_full_blocks; its offloading connector stores only those); a freed
    block without a hash goes to the front of the free queue, to be reused before any cached one
    (BlockPool.free_blocks: 'LIFO reuse of non-cached blocks'), vllm/v1/core/block_pool.py. By hand, blocks of 16, 5
    usable (num_gpu_blocks 6), one output token each, requests far apart. R1 [a0 a1] (32 tokens, + its output's
    block) leaves a0, a1 cached; R2 [c0 c1] (24 tokens: c1 partial) leaves c0 cached and c1's block free, first in
    the queue; R3 [d0 d1] (24 tokens, 2 new blocks) takes c1's block and the one never used, evicting nothing;
    R4 [a0 a1 e2] (48 tokens) finds a0 a1 in HBM: 32 tokens cached, and no block ever left HBM for a lower tier.
    Keeping c1 as a cached prefix made R3 evict a1 (least recently freed): R4 found 16 tokens in HBM (without lower
    tiers; with them a1 was written to DRAM and loaded back)."""
    a0, a1, c0, c1, d0, d1, e2 = range(7)
    trace = make_trace([0.0, 10.0, 20.0, 30.0], [32, 24, 24, 48], [1, 1, 1, 1],
                       block_lists=[[a0, a1], [c0, c1], [d0, d1], [a0, a1, e2]])
    tiers = [] if lower_tiers else ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=6", "serving.block_size=16",
                                     *tiers])
    result, requests = run_serving(trace, config, "single")
    assert requests.cached_tokens.tolist() == [0, 0, 0, 32]
    assert (result.metrics["accesses"], result.metrics["hits"]) == (9, 2)
    assert result.metrics["tier_hit_ratio"]["hbm"] == pytest.approx(2 / 9)
    if lower_tiers:
        assert result.metrics["tiers"]["dram"]["bytes_written"] == 0


def test_session_affinity_keeps_every_turn_of_a_session_on_one_instance():
    # a multi-turn trace's requests carry session ids: each session's turns go to one instance (where its previous
    # turns' prefix is cached), and the sessions spread over the instances
    from trace.synthetic import generate

    config = load_config(None, sets=["serving.num_instances=3", "cluster.router=session-affinity",
                                     "workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=150",
                                     # think times of seconds: sessions come back within the 15 s window
                                     "workload.synthetic.rate_rps=10", "workload.synthetic.think_time_median_s=5"])
    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    sessions, turns = np.unique(trace.session_id, return_counts=True)
    assert sessions.min() >= 0 and turns.max() > 1
    result, requests = run_serving(trace, config, "single")
    assert result.metrics["requests_completed"] == len(trace)
    for session in sessions[turns > 1]:
        assert len(np.unique(requests.instance[trace.session_id == session])) == 1, session
    assert set(np.unique(requests.instance).tolist()) == {0, 1, 2}
