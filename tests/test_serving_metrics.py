"""Vidur-style serving metrics by hand and by theorem: batch sizes, scheduling delay, KV-cache
occupancy, MFU / memory-bandwidth utilisation, and the bounded time series (Little's law)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import StepShape
from sim.serving.run import run_serving
from sim.serving.utilization import WorkCounter, WorkTotals, time_share, work_counter
from sim.specs import model_spec
from tests.test_serving import make_trace

ONE = ["serving.num_instances=1", "serving.num_gpu_blocks=1000"]


def test_batch_sizes_and_scheduling_delay_by_hand():
    # two requests at t=0 on one instance with one sequence slot: the second waits for the first
    trace = make_trace([0.0, 0.0], [100, 50], [3, 3])
    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=1"])
    result, requests = run_serving(trace, config, "single")
    m = result.metrics
    # steps: prefill 100 (first token), 2 decodes of 1 token; then the same for the 50-token prompt
    tokens = np.array([100, 1, 1, 50, 1, 1])
    batch = m["batch"]["unified"]
    assert batch["tokens_per_step"] == pytest.approx({"mean": tokens.mean(), "p50": 1.0, "p90": 75.0,
                                                      "p99": np.percentile(tokens, 99), "max": 100.0})
    assert batch["seqs_per_step"] == {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0}
    assert requests.scheduled[1] == requests.last_token[0]  # admitted when the first one leaves
    assert m["scheduling_delay_s"]["mean"] == pytest.approx(requests.last_token[0] / 2)
    assert m["scheduling_delay_s"]["p50"] == pytest.approx(requests.last_token[0] / 2)


def test_kv_occupancy_of_a_lone_prefill_by_hand():
    # one 1000-token prompt, one output token: ceil(1000 / 16) = 63 blocks held for the whole run, of the 999 that
    # requests can use (vLLM's BlockPool.get_usage: over num_gpu_blocks - 1, the null block)
    trace = make_trace([0.0], [1000], [1])
    result, _ = run_serving(trace, load_config(None, sets=ONE), "single")
    inst = result.metrics["instances"]["each"][0]
    assert inst["kv_usage_peak"] == 63 / 999
    assert inst["kv_usage_mean"] == pytest.approx(63 / 999, rel=1e-12)
    assert inst["busy_fraction"] == pytest.approx(1.0)


def test_flops_count_the_model_parameters():
    """Linear layers do 2 FLOPs per parameter per token: a prompt's FLOPs, attention and LM head aside,
    are 2 × (parameters − embedding and LM head) × tokens (norm weights are < 0.01% of the total)."""
    config = load_config(None)
    counter, spec = work_counter(config), model_spec(config.model)
    work = WorkTotals()
    shape = StepShape()
    shape.add_prefill(1024, 0)
    work.add_step(shape, 1.0)
    attention = counter.layers * counter.attn_flops_per_pair * shape.prefill_pairs
    head = 2 * spec.vocab_size * spec.hidden_size
    body = 2 * (spec.num_parameters - 2 * spec.vocab_size * spec.hidden_size) * 1024
    assert counter.flops(work) - attention - head == pytest.approx(body, rel=1e-3)


def test_decode_window_totals_equal_its_steps():
    window, steps = WorkTotals(), WorkTotals()
    window.add_decode_window(StepShape(decode_seqs=3, decode_kv_tokens=30), steps=5, duration=0.5)
    for k in range(5):
        steps.add_step(StepShape(decode_seqs=3, decode_kv_tokens=30 + 3 * k, decode_kv_max=12 + k, decode_kv_min=8 + k), 0.1)
    assert window.busy_s == pytest.approx(steps.busy_s)
    window.busy_s = steps.busy_s
    assert window == steps


@pytest.mark.parametrize("mode", ["single", "pd"])
def test_utilisation_never_exceeds_the_roofline_efficiencies(mode):
    """The roofline prices each operator group at >= its compute time and >= its memory time, so the
    FLOPs and bytes it charges can never run faster than peak × efficiency."""
    trace = make_trace(np.arange(300) * 0.02, np.full(300, 2000), np.full(300, 200))
    config = load_config(None, sets=["serving.num_instances=2", "compute.flops_efficiency=0.5",
                                     "compute.bandwidth_efficiency=0.7"])
    result, _ = run_serving(trace, config, mode)
    each = result.metrics["instances"]["each"]
    for inst in each:
        assert 0 < inst["mfu_busy"] <= 0.5 and 0 < inst["mbu_busy"] <= 0.7, inst
        assert inst["mfu"] == pytest.approx(inst["mfu_busy"] * inst["busy_fraction"])
    assert result.metrics["instances"]["mfu_mean"] == pytest.approx(np.mean([i["mfu"] for i in each]))


def test_time_series_obey_littles_law_and_stay_bounded():
    """L = λW: the time-average of requests in the system (queued + running, sampled on the grid) equals
    the arrival rate times the mean time in system; the grid stays within 1,000 points."""
    rng = np.random.default_rng(5)
    n = 4000
    arrival = np.cumsum(rng.exponential(0.05, n))
    trace = make_trace(arrival, rng.integers(100, 2000, n), rng.integers(10, 300, n))
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=3000"])
    result, requests = run_serving(trace, config, "single")
    ts = result.metrics["timeseries"]
    t = np.asarray(ts["t_s"])
    assert len(t) <= 1000 and np.allclose(np.diff(t), ts["interval_s"])
    assert ts["arrivals"].sum() == ts["completions"].sum() == n
    in_system = (ts["queued"] + ts["running"]).mean()
    makespan = requests.last_token.max() - requests.arrival.min()
    little = n / makespan * requests.e2e.mean()
    assert in_system == pytest.approx(little, rel=0.05)
    # the sampled KV occupancy averages to the pool's exact time integral
    assert ts["kv_usage"].mean() == pytest.approx(result.metrics["instances"]["kv_usage_mean"], rel=0.05)
    assert ts["work"]["unified"]["steps"].sum() == result.metrics["instances"]["steps"]


def test_a_run_far_longer_than_its_arrivals_keeps_a_bounded_regular_grid():
    # 100 requests within 0.1 s served one at a time for minutes: the grid's interval doubles many times
    trace = make_trace(np.linspace(0, 0.1, 100), np.full(100, 500), np.full(100, 400))
    result, requests = run_serving(trace, load_config(None, sets=[*ONE, "serving.max_num_seqs=1"]), "single")
    ts = result.metrics["timeseries"]
    assert 500 <= len(ts["t_s"]) <= 1000 and ts["interval_s"] >= 0.1 / 500 * 2**10
    assert np.allclose(np.diff(ts["t_s"]), ts["interval_s"])
    assert abs(ts["t_s"][-1] - requests.last_token.max()) < ts["interval_s"]  # sampled until the run ends
    assert ts["completions"].sum() == 100 and ts["queued"].max() == 99  # all but the running one wait


def test_an_overloaded_run_says_so_and_a_steady_one_does_not():
    """Forty requests arriving 1 ms apart on one sequence slot: each waits for all before it, so when the last arrives
    (at 39 ms) nearly all are still queued or running, and queueing is most of the mean TTFT; the caveat's count is
    a lower bound of that backlog (it counts to the end of the time-series interval of the last arrival). The same
    requests a minute apart never queue: no caveat."""
    from sim.report.document import overload_caveat

    n = 40
    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=1"])
    for gap, overloaded in ((1e-3, True), (60.0, False)):
        trace = make_trace([i * gap for i in range(n)], [200] * n, [20] * n)
        result, requests = run_serving(trace, config, "single")
        caveat = overload_caveat(result.metrics)
        if not overloaded:
            assert caveat is None
            continue
        exact = int(np.sum(requests.last_token > requests.arrival.max()))  # still in the system at the last arrival
        assert exact >= 0.9 * n
        counted = int(caveat.split("at least ")[1].split(" of ")[0].replace(",", ""))
        assert 0.1 * n <= counted <= exact and f" of {n} requests" in caveat


def test_a_pd_run_whose_kv_link_is_saturated_says_it_is_overloaded():
    """By hand: 40 prompts of 1,000 tokens, 50 ms apart, 1P:1D over a 1 Gb/s link. Each carries 1,000 x 131,072 B of
    Llama-3.1-8B KV, 1.05 s of the link alone, so the link is offered 21x what it can carry: queueing theory says
    the transfers pile up without bound. Each prefill (~25 ms) ends before the next arrives, so nothing waits in the
    breakdown's queue: the wait is the shared link's, in kv_transfer, and the caveat (judged by the queue's share of
    the mean TTFT) stayed silent on a run whose TTFT grows with its length. The same requests a minute apart: none."""
    from sim.report.document import overload_caveat

    n = 40
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=20000",
                                     "network.bandwidth_gbps=1"])
    for gap, overloaded in ((0.05, True), (60.0, False)):
        trace = make_trace([i * gap for i in range(n)], [1000] * n, [20] * n)
        result, requests = run_serving(trace, config, "pd")
        caveat = overload_caveat(result.metrics)
        if not overloaded:
            assert caveat is None
            continue
        breakdown = result.metrics["ttft_breakdown_s"]
        assert breakdown["queue"] < 0.1 * breakdown["kv_transfer"]  # the wait is the link's, not the queue's
        in_transfer = int(np.sum((requests.kv_sent <= requests.arrival.max())
                                 & (requests.kv_ready > requests.arrival.max())))
        assert in_transfer >= 0.9 * n
        assert caveat is not None and "KV in transfer" in caveat, caveat


def test_a_short_steady_pd_run_over_a_slow_link_is_not_called_overloaded():
    """The other side of the saturated link: the same 1,000-token prompts 0.5 s apart over 10 Gb/s, each transfer
    0.105 s of the link alone, a fifth of its time, and each decoding 2,000 tokens (E2E > 10 s). By Little's law ~2/s
    x E2E of them are in the system at once, so at the last arrival well over a tenth of the 40 still are, more than
    over the first half of the arrivals (a run short beside its requests' lifetimes), and the transfer is most of
    each TTFT; but they are decoding, not waiting: a batch that a longer run at this rate would hold steady, not an
    overload."""
    from sim.report.document import arrival_backlog, held_early, overload_caveat

    n = 40
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=20000",
                                     "network.bandwidth_gbps=10"])
    trace = make_trace([i * 0.5 for i in range(n)], [1000] * n, [2000] * n)
    result, requests = run_serving(trace, config, "pd")
    assert requests.e2e.mean() > 10
    breakdown = result.metrics["ttft_breakdown_s"]
    assert breakdown["kv_transfer"] > 0.5 * result.metrics["ttft_s"]["mean"]
    backlog, total = arrival_backlog(result.metrics)
    assert backlog >= 0.1 * total and backlog > held_early(result.metrics)  # past both backlog gates, old and new
    assert overload_caveat(result.metrics) is None


def test_a_short_steady_run_queued_a_step_or_two_is_not_called_overloaded():
    """40 requests of 200 tokens 0.5 s apart on one instance, each decoding 2,000 tokens (E2E ~16 s): by Little's law
    ~2/s x 16 s = 32 are in the system at once, so at the last arrival most of the 40 still are (the run is barely
    longer than one lifetime), and a new prompt waits only for the decode step under way (~8 ms) before its ~9 ms
    prefill: queueing is most of a ~20 ms TTFT. But nothing waits and the wait does not grow: 160 such requests
    (four times the trace) keep the mean TTFT within 20%. The old rule (a tenth in the system and queueing over half
    the TTFT) flagged it; the same requests 20 ms apart all arrive within one lifetime, a batch that grows with every
    arrival (160 of them: mean E2E 18 -> 33 s), and stay flagged."""
    from sim.report.document import arrival_backlog, overload_caveat

    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=20000"])
    ttft = {}
    for n in (40, 160):
        trace = make_trace([i * 0.5 for i in range(n)], [200] * n, [2000] * n)
        result, requests = run_serving(trace, config, "single")
        m, ttft[n] = result.metrics, result.metrics["ttft_s"]["mean"]
        if n == 40:
            backlog, total = arrival_backlog(m)
            queue = m["ttft_breakdown_s"]["queue"]
            assert backlog >= 0.5 * total and queue > 0.5 * ttft[n]  # what the old rule judged by
            assert queue < 2 * mean_step_s(m)  # a step or two, not a growing wait
            assert overload_caveat(m) is None
    assert ttft[160] < 1.2 * ttft[40]  # steady: a longer trace at this rate waits no longer
    burst = make_trace([i * 0.02 for i in range(40)], [200] * 40, [2000] * 40)
    caveat = overload_caveat(run_serving(burst, config, "single")[0].metrics)
    assert caveat is not None and "within one mean E2E" in caveat, caveat


def test_a_light_run_shorter_than_one_lifetime_is_not_called_overloaded():
    """5 requests 1 s apart, 1,000 tokens in and out, over the default four instances (1,024 sequences and ~28,000
    KV blocks each): every request is still running when the last arrives (E2E ~6.7 s, longer than the 4 s of
    arrivals), but a steady state at this rate holds ~8 requests at once (Little's law: 1.25/s x 6.7 s), each
    ~125 blocks, a sliver of what the instances run at once: nothing waits, and 20 such requests (four times the
    trace) keep the mean E2E within 2%. So it is not overloaded, only short; the 40-request burst above, whose
    steady state would hold ~900 requests of ~138 blocks in 20,000 blocks, stays flagged."""
    from sim.report.document import overload_caveat

    config = load_config(None)
    e2e = {}
    for n in (5, 20):
        trace = make_trace([float(i) for i in range(n)], [1000] * n, [1000] * n)
        result, _ = run_serving(trace, config, "single")
        e2e[n] = result.metrics["e2e_s"]["mean"]
        if n == 5:
            m = result.metrics
            assert result.metrics["e2e_s"]["mean"] > 4.0  # all arrive within one lifetime
            assert overload_caveat(m) is None, overload_caveat(m)
    assert e2e[20] < 1.02 * e2e[5]  # a longer trace at this rate takes no longer


@pytest.mark.parametrize("mode", ["single", "pd"])
def test_a_lone_request_is_not_called_overloaded(mode):
    """One request of 1,024 tokens in, 4 out, alone: nothing else arrived, so nothing came faster than it was served.
    The Little's-law branch took the arrival span's bound, one time-series interval (its E2E / ~670), as the span of
    arrivals and told it "~671 at once" would not fit: a rate from one arrival. A burst (two or more requests 20 ms
    apart, test above) is still judged by it."""
    from sim.report.document import arrival_backlog, overload_caveat

    sets = ["serving.num_instances=1"] if mode == "single" else ["pd.num_prefill=1", "pd.num_decode=1"]
    result, _ = run_serving(make_trace([0.0], [1024], [4]), load_config(None, sets=sets), mode)
    assert arrival_backlog(result.metrics) == (1, 1)  # in the system at its own arrival, past the backlog gate
    assert overload_caveat(result.metrics) is None, overload_caveat(result.metrics)


@pytest.mark.parametrize("mode", ["single", "pd"])
def test_requests_arriving_at_once_are_overloaded_only_beyond_what_runs_at_once(mode):
    """Requests arriving at one instant have no rate to exceed: five of 1,024 tokens in, 4 out, on one instance of
    1,024 sequence slots and ~28,000 blocks all run at once (5 x 65 blocks), so no caveat (before: "a steady state at
    this rate holds ~3,000 at once", the rate taken from one time-series interval). With 4 sequence slots in all
    (PD: 2 on each instance) the fifth waits for one: a burst beyond the instances, flagged as one; four, one a
    slot, are not."""
    from sim.report.document import overload_caveat

    sets = ["serving.num_instances=1"] if mode == "single" else ["pd.num_prefill=1", "pd.num_decode=1"]
    trace = make_trace([0.0] * 5, [1024] * 5, [4] * 5)
    assert overload_caveat(run_serving(trace, load_config(None, sets=sets), mode)[0].metrics) is None
    slots = load_config(None, sets=[*sets, f"serving.max_num_seqs={4 if mode == 'single' else 2}"])
    assert overload_caveat(run_serving(make_trace([0.0] * 4, [1024] * 4, [4] * 4), slots, mode)[0].metrics) is None
    caveat = overload_caveat(run_serving(make_trace([0.0] * 5, [1024] * 5, [4] * 5), slots, mode)[0].metrics)
    assert caveat is not None and "all 5 requests arrived at once" in caveat, caveat


def _report_metrics(run_cli, tmp_path, *argv: str) -> dict:
    """One CLI run's metrics (its only run), through the report JSON as a user gets them."""
    import json

    out = tmp_path / "report.json"
    status, _, err = run_cli(*argv, "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    return json.loads(out.read_text())["runs"][0]["metrics"]


def test_a_queue_that_drained_before_the_last_arrival_is_not_called_overloaded(run_cli, tmp_path):
    """The default synthetic workload (multi-turn, steady start, 5 req/s over four instances) with 1,000-token
    outputs, 80 requests: a few long prompts late in the arrivals queue those behind them (queueing 53% of the mean
    TTFT, 33 mean steps: the old rule flagged it), and over half the requests are still decoding when the last
    arrives. But nothing waited any more by then (a burst that drained, not a queue that grows), and the caveat's own
    claim fails: the same workload four times longer (320 requests) has a lower mean TTFT (0.58 -> 0.31 s)."""
    from sim.report.document import OVERLOAD_BACKLOG, arrival_backlog, overload_caveat, waiting_trend

    argv = ["--set", "workload.synthetic.output_tokens_mean=1000", "--workload-limit"]
    m = _report_metrics(run_cli, tmp_path, *argv, "80")
    longer = _report_metrics(run_cli, tmp_path, *argv, "320")
    assert longer["ttft_s"]["mean"] < m["ttft_s"]["mean"]  # latencies do not grow with the trace's length
    backlog, total = arrival_backlog(m)
    queue, ttft = m["ttft_breakdown_s"]["queue"], m["ttft_s"]["mean"]
    assert backlog >= OVERLOAD_BACKLOG * total and queue > 0.5 * ttft and queue > 4 * mean_step_s(m)  # old rule's
    ts = m["timeseries"]
    assert ts["queued"][int(np.flatnonzero(ts["arrivals"])[-1]) + 1] == 0  # drained at the last arrival
    head, tail = waiting_trend(m)
    assert tail > head  # (it queued late: the trend alone is close; README: Overload)
    assert overload_caveat(m) is None, overload_caveat(m)


def test_a_queue_that_grows_with_most_of_the_ttft_elsewhere_is_called_overloaded(run_cli, tmp_path):
    """The bundled Azure conversation trace's first 300 requests at Poisson 160 req/s over the default four H100
    instances: 94% are still in the system at the last arrival and the waiting line grows across the arrivals
    (~3 waiting over their first half, ~13 over their last quarter), but each waits a few steps of a short prefill,
    under half the mean TTFT, and the old rule stayed silent. The caveat's claim holds: four times the requests at
    that rate double the mean TTFT (and 16x grows it ~70-fold: a queue without bound)."""
    from sim.report.document import overload_caveat
    from tests.conftest import BUNDLED_AZURE

    argv = ["--workload-trace", str(BUNDLED_AZURE), "--set", "workload.arrivals.process=poisson",
            "--set", "workload.arrivals.rate_rps=160", "--workload-limit"]
    m = _report_metrics(run_cli, tmp_path, *argv, "300")
    longer = _report_metrics(run_cli, tmp_path, *argv, "1200")
    assert longer["ttft_s"]["mean"] > 1.25 * m["ttft_s"]["mean"]  # latencies grow with the trace's length
    assert m["ttft_breakdown_s"]["queue"] < 0.5 * m["ttft_s"]["mean"]  # (what the old rule judged by)
    caveat = overload_caveat(m)
    assert caveat is not None and "grew across the arrivals" in caveat, caveat


def test_a_mildly_overloaded_queue_is_called_overloaded_however_small_its_backlog():
    """A D/D/1 queue, by hand: one sequence slot, identical requests (200 tokens in, 50 out), each served in S (a lone
    request's E2E), arriving every g = S / 1.05: 5% faster than served. Lindley's recursion gives request k a wait of
    k (S - g), a mean of (n - 1)(S - g) / 2, growing with the trace's length; at the last arrival, (n - 1) g, about
    (n - 1) g / S have left, so ~n (1 - 1 / 1.05) = 4.8% of the requests are in the system: under the tenth the old
    rule asked for (README's sweep example, 25 Gb/s 1P:3D, was missed so: 3.6%, TTFT p99 14 s). The waiting line
    grows at 1/g - 1/S: over the arrival window T = (n - 1) g it averages (1/g - 1/S) T / 4 over the first half and
    7/8 of (1/g - 1/S) T over the last quarter, and the system (the line and the one in service) held 1 + (1/g -
    1/S) T / 4 over the first half, a fraction of what it holds at the end. The same requests 5% slower than served
    (g = S / 0.95) never wait: no caveat."""
    from sim.report.document import OVERLOAD_BACKLOG, arrival_backlog, held_early, overload_caveat, waiting_trend

    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=1"])
    _, lone = run_serving(make_trace([0.0], [200], [50]), config, "single")
    service = float(lone.e2e[0])
    queue = {}
    for ratio in (1.05, 0.95):
        gap = service / ratio
        for n in (400, 1600):
            result, _ = run_serving(make_trace([i * gap for i in range(n)], [200] * n, [50] * n), config, "single")
            m = result.metrics
            caveat = overload_caveat(m)
            if ratio < 1:
                assert m["ttft_breakdown_s"]["queue"] == pytest.approx(0.0, abs=1e-9) and caveat is None, caveat
                continue
            queue[n] = m["ttft_breakdown_s"]["queue"]
            assert queue[n] == pytest.approx((n - 1) * (service - gap) / 2, rel=0.01)  # Lindley
            backlog, total = arrival_backlog(m)
            assert abs(backlog - n * (1 - 1 / ratio)) <= 2 and backlog < OVERLOAD_BACKLOG * total
            growth = (1 / gap - 1 / service) * (n - 1) * gap  # requests the line gains over the arrivals
            head, tail = waiting_trend(m)
            assert head == pytest.approx(growth / 4, abs=1.0) and tail == pytest.approx(7 * growth / 8, abs=1.0)
            assert held_early(m) == pytest.approx(1 + growth / 4, abs=1.0) and held_early(m) < backlog / 3
            assert caveat is not None and f"at least {backlog:,} of {n:,} requests" in caveat, caveat
            assert "grew across the arrivals" in caveat
    assert queue[1600] > 3.9 * queue[400]  # the caveat's claim: the wait grows with the trace's length


def test_a_stable_single_slot_poisson_queue_is_not_called_overloaded():
    """An M/D/1 queue, by hand: one sequence slot, identical requests (200 tokens in, 50 out) each served in S (a lone
    request's E2E), Poisson arrivals at 0.7 / S: load rho = 0.7 < 1, a stable queue, 200 requests, six seeds. Its
    waiting line holds someone only while one is served and another waits: P(N >= 2) = rho - (1 - rho)(e^rho - 1)
    = 0.40 (M/D/1's queue-length distribution), so it empties most of the time; its mean wait in a steady state is
    rho S / (2 (1 - rho)) = 1.17 S (Pollaczek-Khinchine), which a run started empty approaches from below (Lindley's
    waits rise stochastically from W_0 = 0), whatever the trace's length. Seeds 10 and 16 (a reviewer's stable
    controls) hold more at the last arrival than over the first half and a line a request or more longer over the
    last quarter than the first half -- the line's own swing -- and the rise test alone called them overloaded."""
    from sim.report.document import arrival_backlog, held_early, overload_caveat, waiting_trend

    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=1"])
    _, lone = run_serving(make_trace([0.0], [200], [50]), config, "single")
    service, rho, n = float(lone.e2e[0]), 0.7, 200
    waits, busy = [], []
    for seed in (10, 16, 0, 1, 2, 3):
        arrivals = np.cumsum(np.random.default_rng(seed).exponential(service / rho, n))
        m = run_serving(make_trace(arrivals.tolist(), [200] * n, [50] * n), config, "single")[0].metrics
        if seed in (10, 16):  # past the backlog gate, and the line rose: what the rule alone flagged
            head, tail = waiting_trend(m)
            assert arrival_backlog(m)[0] > held_early(m) and tail - head >= 1
        assert overload_caveat(m) is None, (seed, overload_caveat(m))
        waits.append(m["ttft_breakdown_s"]["queue"])
        ts = m["timeseries"]
        at = np.flatnonzero(ts["arrivals"])
        busy.append(np.mean(np.asarray(ts["queued"])[at[0]: at[-1] + 2] > 0))
    assert np.mean(busy) == pytest.approx(rho - (1 - rho) * np.expm1(rho), abs=0.1)  # M/D/1: P(N >= 2)
    assert np.mean(waits) <= 1.2 * rho * service / (2 * (1 - rho))  # P-K, from below


def test_a_burst_is_judged_by_all_its_requests_not_those_left_at_its_interval_end():
    """A burst is judged, and named, by how many arrived at once, not by how many were still in the system at the end
    of its time-series interval: five at t = 0 on 4 sequence slots, four of 16 tokens in and 1 out (done within the
    first interval) and one of 3,000 out (the run ~1,000 intervals long). At the interval's end 1 is left, which fits;
    but 5 arrived at once and the fifth waited for a slot."""
    from sim.report.document import arrival_backlog, overload_caveat

    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=4"])
    m = run_serving(make_trace([0.0] * 5, [16] * 5, [1, 1, 1, 1, 3000]), config, "single")[0].metrics
    assert arrival_backlog(m) == (1, 5)  # (the premise: the short ones were done by the interval's end)
    caveat = overload_caveat(m)
    assert caveat is not None and "all 5 requests arrived at once" in caveat, caveat

def test_a_burst_within_one_time_series_interval_is_called_overloaded():
    """By hand: n identical requests (200 tokens in, 50 out) all at t = 0 on one instance of 4 sequence slots. At the
    last arrival (t = 0) all n are in the system and none was before it, so the backlog is n against 0 held over the
    first half of the arrival window; the line then drains 4 at a time, so request k waits ~floor(k / 4) services and
    the mean wait ~(n / 4 - 1) / 2 services: 4x the requests wait ~4x as long, the caveat's claim. The window is one
    time-series interval: sampled at interval ends alone, the first half's one sample was the whole backlog, and the
    run was never flagged (it was before the backlog gate compared the two). A burst has no rate: it is judged by
    whether it runs at once (it does not: n > 4 slots)."""
    from sim.report.document import arrival_backlog, held_early, overload_caveat

    config = load_config(None, sets=[*ONE, "serving.max_num_seqs=4"])
    queue = {}
    for n in (400, 1600):
        result, _ = run_serving(make_trace([0.0] * n, [200] * n, [50] * n), config, "single")
        m = result.metrics
        assert arrival_backlog(m) == (n, n) and held_early(m) == 0.0
        caveat = overload_caveat(m)
        assert caveat is not None and f"all {n:,} requests arrived at once" in caveat, caveat
        queue[n] = m["ttft_breakdown_s"]["queue"]
    assert queue[1600] > 3.5 * queue[400]  # (1600 / 4 - 1) / (400 / 4 - 1) = 4.03


def test_pd_time_series_count_a_request_whose_kv_is_in_transfer():
    """L = λW in PD, over a slow link (2 Gb/s: a 1,000-token prompt's 128 MiB of KV takes ~0.5 s): a request whose KV
    is on its way to the decode instance is in the system, queued (vLLM counts one waiting for remote KV among its
    waiting requests). Counted as neither queued nor running, the time average fell short of λW by the transfers'
    share of the time in system (here more than a tenth); counted, it matches within the grid's sampling error."""
    rng = np.random.default_rng(7)
    n = 1500
    arrival = np.cumsum(rng.exponential(0.4, n))
    trace = make_trace(arrival, rng.integers(200, 1500, n), rng.integers(10, 100, n))
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.num_gpu_blocks=20000",
                                     "network.bandwidth_gbps=2"])
    result, requests = run_serving(trace, config, "pd")
    ts = result.metrics["timeseries"]
    in_system = (ts["queued"] + ts["running"]).mean()
    makespan = requests.last_token.max() - requests.arrival.min()
    little = n / makespan * requests.e2e.mean()
    transfer_share = np.mean(requests.kv_ready - requests.kv_sent) / requests.e2e.mean()
    assert transfer_share > 0.1  # (the case tells the two counts apart)
    assert in_system == pytest.approx(little, rel=0.03)


def test_bandwidth_use_counts_the_elementwise_kernels_bytes():
    """The work counter's bytes are the roofline's: a 4,096-token prefill of Llama-3.1-8B (TP 1, BF16) also moves each
    layer's elementwise traffic, by hand 4,096 x 2 B x (2 x 4 x 4,096 + 3 x 14,336 + 2 x (32 + 8) x 128) = 4,096 x
    172,032 B a layer (two fused add + RMSNorms, SiluAndMul, the rotary embedding), 32 layers."""
    from sim.serving.elementwise import ElementwiseCost

    config = load_config(None, sets=["model=llama-3.1-8b", "serving.tensor_parallel_size=1"])
    work = WorkTotals()
    shape = StepShape()
    shape.add_prefill(4096, 0)
    work.add_step(shape, 0.1)
    counter = work_counter(config)
    bare = dataclasses.replace(counter.roofline)  # the same roofline without the elementwise kernels
    bare.elementwise = ElementwiseCost(0, 0.0)
    without = WorkCounter(bare)
    assert counter.bytes(work) - without.bytes(work) == pytest.approx(32 * 4096 * 172_032, rel=1e-12)


def test_a_time_share_past_the_whole_by_rounding_is_one():
    """Busy seconds are a sum of step durations: 0.1 + 0.2 s of steps in a 0.3 s run is 1.0000000000000002 of it in
    floating point, a fraction above 1 (a --seeds interval then could not be held to 1: hseeds' finding 4). By
    definition the share is 1; a real excess (0.33 s in 0.3 s) is no rounding and stays for the checker to see."""
    assert 0.1 + 0.2 > 0.3  # the rounding itself
    assert time_share(0.1 + 0.2, 0.3) == 1.0
    assert time_share(0.33, 0.3) == pytest.approx(1.1)
    assert time_share(0.15, 0.3) == 0.5
    assert np.isnan(time_share(0.0, 0.0))


def mean_step_s(metrics: dict) -> float | None:
    """The run's mean step duration (its instances' busy seconds over their steps), None without them."""
    inst = metrics.get("instances") or {}
    each, makespan = inst.get("each") or [], metrics.get("makespan_s")
    steps = sum(e.get("steps") or 0 for e in each)
    busy = [e.get("busy_fraction") for e in each]
    if not steps or not isinstance(makespan, (int, float)) or not all(isinstance(b, (int, float)) for b in busy):
        return None
    step = sum(busy) * makespan / steps
    return step if np.isfinite(step) and step > 0 else None
