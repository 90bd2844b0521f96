"""PD with prefill and decode instances at different tensor-parallel sizes (pd.prefill_tensor_parallel_size,
pd.decode_tensor_parallel_size): each role's capacity and compute from its own TP, the KV transfer as vLLM 0.33's
NixlConnector maps ranks (nixl/tp_mapping.py ``compute_tp_mapping``, nixl/base_worker.py ``_build_fa_remote``), and
the refusals (--cluster --pd: tests/test_cluster_pd_tensor_parallel.py).

Hand-computed sizes. Llama-3.1-8B (32 layers, 8 KV heads of 128, bf16), blocks of 16 tokens: one KV head's share of
a block is 2 (K, V) x 32 x 128 x 2 bytes x 16 tokens = 262,144 bytes (256 KiB), the whole block 8 heads = 2 MiB.
DeepSeek-V2-Lite (MLA, 27 layers, latent 512 + 64 = 576 values, bf16): a block is 27 x 576 x 2 x 16 = 497,664 bytes,
whole on every rank. A 1,024-token prompt is 64 blocks; the link is 100 Gb/s with no latency.
"""

from __future__ import annotations

import json

import pytest
from report_invariants import check_report

from sim.config import load_config
from sim.serving.run import run_serving
from sim.serving.tp_transfer import transfer_plan
from tests.bad_input_helpers import refused_in_one_line
from tests.conftest import BUNDLED_AZURE
from tests.test_serving import make_trace

KIB, MIB = 1 << 10, 1 << 20
HEAD = 256 * KIB  # Llama-3.1-8B: one KV head's share of a 16-token block
MLA_BLOCK = 27 * 576 * 2 * 16  # DeepSeek-V2-Lite: one latent block, 497,664 bytes
LINK = 100e9 / 8  # bytes/s


@pytest.mark.parametrize("p,d,kv_heads,mla,sent,received", [
    # P = D: each rank sends its shard (4 heads) to its peer, as kvsim did before
    (2, 2, 8, False, [4, 4], [4, 4]),
    # D > P: decode ranks 0 and 1 both read from prefill rank 0 (0 * 1 // 2 = 1 * 1 // 2 = 0), 4 heads each
    (1, 2, 8, False, [8], [4, 4]),
    # P > D: decode rank r reads from prefill ranks 2r, 2r + 1 (heads 4r, 4r + 2: distinct), half its shard each
    (4, 2, 8, False, [2, 2, 2, 2], [4, 4]),
    # D = 16 > 8 KV heads: every decode rank holds one head (as a replica, each head on two ranks) and reads it from
    # prefill rank r // 4, which sends 4 heads: twice the 2 it holds
    (4, 16, 8, False, [4] * 4, [1] * 16),
    # P = 16 > 8 KV heads: prefill ranks 2h and 2h + 1 both hold head h; decode rank r (heads 2r, 2r + 1) reads from
    # ranks 4r .. 4r + 3, whose heads are 2r, 2r, 2r + 1, 2r + 1: GQA dedup keeps ranks 4r and 4r + 2, one head each
    (16, 4, 8, False, [1, 0, 1, 0] * 4, [2] * 4),
    # MLA: one source rank, r * P // D, the whole latent
    (1, 2, 1, True, [2], [1, 1]),
    (2, 1, 1, True, [1, 0], [1]),
    (2, 4, 1, True, [2, 2], [1] * 4),
])
def test_rank_mapping_by_hand(p, d, kv_heads, mla, sent, received):
    """Bytes of a block (in units of one head's share; the decode shard is its heads) each rank sends and receives."""
    shard = 1 if mla else max(1, kv_heads // d)
    plan = transfer_plan(p, d, kv_heads, mla, shard)
    assert list(plan.sent) == sent and list(plan.received) == received
    assert plan.busiest_bytes == max(sent + received) and plan.moved_bytes == sum(received)


@pytest.mark.parametrize("model,p,d,extra,link_bytes,moved_bytes", [
    # P 1 -> D 2: prefill rank 0 sends both decode ranks their 4 heads: 64 x 8 heads on its link, 64 x 8 moved
    ("llama-3.1-8b", 1, 2, [], 64 * 8 * HEAD, 64 * 8 * HEAD),
    # P 4 -> D 2: each decode rank receives its 4 heads from two prefill ranks: 64 x 4 heads on the busiest link
    ("llama-3.1-8b", 4, 2, [], 64 * 4 * HEAD, 64 * 8 * HEAD),
    # P 4 -> D 16 (replicated): each prefill rank sends 4 single-head shards; 16 ranks x 1 head moved (each head twice)
    ("llama-3.1-8b", 4, 16, ["hardware.gpus_per_node=32"], 64 * 4 * HEAD, 64 * 16 * HEAD),
    # P 16 -> D 4: each decode rank receives its 2 heads (from two deduplicated sources); no head crosses twice
    ("llama-3.1-8b", 16, 4, ["hardware.gpus_per_node=32"], 64 * 2 * HEAD, 64 * 8 * HEAD),
    # MLA P 1 -> D 2: both decode ranks read the whole latent from prefill rank 0
    ("deepseek-v2-lite", 1, 2, [], 64 * 2 * MLA_BLOCK, 64 * 2 * MLA_BLOCK),
    # MLA P 2 -> D 1: the one decode rank reads it from prefill rank 0
    ("deepseek-v2-lite", 2, 1, [], 64 * MLA_BLOCK, 64 * MLA_BLOCK),
])
def test_kv_transfer_bytes_and_time_by_hand(model, p, d, extra, link_bytes, moved_bytes):
    """One 1,024-token request alone: the request table records the bytes every rank moved, and TTFT's kv_transfer
    part is the busiest rank's bytes over the 100 Gb/s link."""
    config = load_config(None, sets=[f"model={model}", "serving.num_gpu_blocks=3000", "network.latency_us=0",
                                     f"pd.prefill_tensor_parallel_size={p}", f"pd.decode_tensor_parallel_size={d}",
                                     *extra])
    _, requests = run_serving(make_trace([0.0], [1024], [4]), config, "pd")
    assert requests.kv_transfer_bytes.tolist() == [moved_bytes]
    assert requests.breakdown()["kv_transfer"][0] == pytest.approx(link_bytes / LINK, rel=1e-12)


def test_the_transfer_figures_quoted_in_the_report():
    """The hand cases' figures in seconds (the branch report quotes them): 128 MiB at 100 Gb/s is 10.737 ms."""
    assert 64 * 8 * HEAD / LINK == pytest.approx(10.737418e-3, rel=1e-6)
    assert 64 * 4 * HEAD / LINK == pytest.approx(5.368709e-3, rel=1e-6)
    assert 64 * 2 * HEAD / LINK == pytest.approx(2.684355e-3, rel=1e-6)
    assert 64 * 2 * MLA_BLOCK / LINK == pytest.approx(5.096079e-3, rel=1e-6)


def _report(run_cli, tmp_path, name: str, *argv: str) -> dict:
    out = tmp_path / f"{name}.json"
    status, _, err = run_cli(*argv, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "20", "--quiet", "--no-plot",
                             "--report-json", out)
    assert status == 0, err
    report = json.loads(out.read_text())
    assert check_report(report) == []  # a consistent report (each tier reads what it serves, ...)
    return report


def test_each_role_holds_the_capacity_a_single_node_run_at_its_tp_reports(run_cli, tmp_path):
    """KV capacity from GPU memory (weights and KV per rank follow TP): a decode instance at TP 2 beside prefill
    instances at TP 1 holds what the single-node mode's worker at TP 2 reports, the prefill instance what one at
    TP 1 does."""
    single = {tp: _report(run_cli, tmp_path, f"single{tp}", "--set", f"serving.tensor_parallel_size={tp}",
                          "--set", "serving.num_instances=1")["runs"][0]["metrics"]["instances"]["kv_blocks_each"]
              for tp in (1, 2)}
    assert single[2] > 2 * single[1]  # (half the KV per rank and half the weights: more than twice the blocks)
    pd = _report(run_cli, tmp_path, "pd", "--pd", "--set", "pd.decode_tensor_parallel_size=2")
    instances = pd["runs"][0]["metrics"]["instances"]
    assert instances["kv_blocks_each"] == {"prefill": single[1], "decode": single[2]}
    assert instances["tensor_parallel_size"] == {"prefill": 1, "decode": 2}


def test_each_role_steps_at_its_own_tp():
    """A prefill instance at TP 1 and a decode instance at TP 2 compute as the homogeneous runs at those TPs do: the
    prefill part of TTFT is TP 1's, the token gaps TP 2's (the same request alone in each run)."""
    trace = make_trace([0.0], [2048], [64])
    common = ["serving.num_gpu_blocks=3000"]
    mixed = run_serving(trace, load_config(None, sets=[*common, "pd.decode_tensor_parallel_size=2"]), "pd")[1]
    tp1 = run_serving(trace, load_config(None, sets=common), "pd")[1]
    tp2 = run_serving(trace, load_config(None, sets=[*common, "serving.tensor_parallel_size=2"]), "pd")[1]
    assert mixed.breakdown()["prefill"][0] == tp1.breakdown()["prefill"][0] != tp2.breakdown()["prefill"][0]
    gaps = lambda r: (r.last_token - r.first_token)[0]  # noqa: E731
    assert gaps(mixed) == pytest.approx(gaps(tp2), rel=1e-12) and gaps(tp2) != pytest.approx(gaps(tp1), rel=1e-3)


def test_a_gpu_link_read_by_one_role_is_not_refused_for_the_other(run_cli, tmp_path):
    """hardware.gpu_link_gbps prices TP collectives: a TP-1 prefill instance has none, a TP-2 decode instance does. Set
    beside them it is read (the decode steps slow down over a 10 GB/s link), not refused as unread at TP 1; with
    every role at TP 1 nothing reads it, and it is refused naming the key that put the role there."""
    base = ["--pd", "--set", "pd.decode_tensor_parallel_size=2"]
    nvlink = _report(run_cli, tmp_path, "nvlink", *base)["runs"][0]["metrics"]
    slow = _report(run_cli, tmp_path, "slow", *base, "--set", "hardware.gpu_link_gbps=10")["runs"][0]["metrics"]
    assert slow["tpot_s"]["mean"] > nvlink["tpot_s"]["mean"]
    assert slow["ttft_breakdown_s"]["prefill"] == nvlink["ttft_breakdown_s"]["prefill"]
    overlay = tmp_path / "tp2.yaml"  # (serving TP from a file: a --set of it beside both roles' is refused as unread)
    overlay.write_text("serving: {tensor_parallel_size: 2}\n")
    status, _, err = run_cli("--pd", "--workload-limit", "5", "--quiet", "--no-plot", "--calibration-profile", overlay,
                             "--set", "hardware.gpu_link_gbps=10",
                             "--set", "pd.prefill_tensor_parallel_size=1", "--set", "pd.decode_tensor_parallel_size=1")
    assert status == 2 and "hardware.gpu_link_gbps" in err and "pd.prefill_tensor_parallel_size" in err, err


def test_keys_equal_to_the_serving_tp_change_nothing(run_cli, tmp_path):
    """Setting both keys to serving.tensor_parallel_size is the default (null): the same metrics, byte for byte."""
    base = ["--pd", "--set", "serving.tensor_parallel_size=2", "--set", "pd.num_prefill=2"]
    null = _report(run_cli, tmp_path, "null", *base)
    same = _report(run_cli, tmp_path, "same", *base, "--set", "pd.prefill_tensor_parallel_size=2",
                   "--set", "pd.decode_tensor_parallel_size=2")
    assert json.dumps(null["runs"], sort_keys=True) == json.dumps(same["runs"], sort_keys=True)
    assert null["trace"] == same["trace"]
    assert "tensor_parallel_size" not in null["runs"][0]["metrics"]["instances"]


def test_node_fit_counts_each_roles_gpus(run_cli, tmp_path):
    """Single-node PD: num_prefill x prefill TP + num_decode x decode TP <= gpus_per_node (8): 1 x 4 + 2 x 2 fits."""
    report = _report(run_cli, tmp_path, "fits", "--pd", "--set", "pd.prefill_tensor_parallel_size=4",
                     "--set", "pd.num_decode=2", "--set", "pd.decode_tensor_parallel_size=2")
    assert report["runs"][0]["metrics"]["instances"]["count"] == 3


@pytest.mark.parametrize("sets,mode,names", [
    # the node: 2 x 4 + 1 x 2 = 10 GPUs > 8
    (["pd.num_prefill=2", "pd.prefill_tensor_parallel_size=4", "pd.decode_tensor_parallel_size=2"], ["--pd"],
     ["'pd.num_prefill'=2", "'pd.prefill_tensor_parallel_size'=4", "'pd.decode_tensor_parallel_size'=2", "10 GPUs"]),
    # one instance beyond the node
    (["pd.decode_tensor_parallel_size=16"], ["--pd"], ["'pd.decode_tensor_parallel_size'=16", "gpus_per_node"]),
    # not a multiple: Llama-2-13B (40 heads, 40 KV heads) fits TP 2 and TP 5, but vLLM pairs them only if one divides
    # the other
    (["model=llama-2-13b", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=5"], ["--pd"],
     ["'pd.prefill_tensor_parallel_size'=2", "'pd.decode_tensor_parallel_size'=5", "multiple"]),
    # the other side is serving.tensor_parallel_size's
    (["model=llama-2-13b", "serving.tensor_parallel_size=2", "pd.decode_tensor_parallel_size=5"], ["--pd"],
     ["'pd.decode_tensor_parallel_size'=5", "'serving.tensor_parallel_size'=2", "multiple"]),
    # the model's heads: 32 attention heads over 3 ranks
    (["pd.prefill_tensor_parallel_size=3"], ["--pd"], ["'pd.prefill_tensor_parallel_size'=3", "heads"]),
    (["pd.decode_tensor_parallel_size=0"], ["--pd"], ["'pd.decode_tensor_parallel_size'", "must be"]),
    # a Gated DeltaNet hybrid's conv states are sliced across TP degrees in vLLM; kvsim does not model it
    (["model=qwen3-next-80b-a3b", "hardware.gpu=b200", "serving.tensor_parallel_size=2",
      "pd.decode_tensor_parallel_size=4"], ["--pd"], ["'pd.decode_tensor_parallel_size'=4", "Gated DeltaNet"]),
    # both roles at one TP other than serving's: a Gated DeltaNet hybrid's block size and states (and the trace's
    # blocks) follow serving.tensor_parallel_size, so the states crossed at TP 1's size on each of 2 ranks (exit 0,
    # kv_transfer_bytes 1.5x) and at 4/4 the blocks mismatched the trace's (exit 1)
    (["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "pd.prefill_tensor_parallel_size=2",
      "pd.decode_tensor_parallel_size=2"], ["--pd"], ["'pd.prefill_tensor_parallel_size'=2", "Gated DeltaNet",
                                                       "serving.tensor_parallel_size"]),
    (["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "pd.prefill_tensor_parallel_size=4",
      "pd.decode_tensor_parallel_size=4"], ["--cluster", "--pd"], ["'pd.prefill_tensor_parallel_size'=4",
                                                                    "Gated DeltaNet"]),
    # both roles at their own TP, neither serving's: nothing reads serving.tensor_parallel_size (serving TP 1 and 4
    # under roles 2/2 gave byte-identical runs, exit 0), so a --set of it is refused as any unread setting is
    (["serving.tensor_parallel_size=4", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=2"],
     ["--pd"], ["--set serving.tensor_parallel_size", "pd.prefill_tensor_parallel_size", "pd.decode_tensor_parallel_size"]),
    (["serving.tensor_parallel_size=4", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=1"],
     ["--cluster", "--pd"], ["--set serving.tensor_parallel_size", "pd.decode_tensor_parallel_size"]),
    # outside PD nothing reads them
    (["pd.decode_tensor_parallel_size=2"], [], ["pd.decode_tensor_parallel_size"]),
    (["pd.prefill_tensor_parallel_size=2"], ["--cache-only"], ["pd.prefill_tensor_parallel_size"]),
    (["pd.prefill_tensor_parallel_size=2"], ["--cluster"], ["pd.prefill_tensor_parallel_size"]),
])
def test_refusals_name_the_key_in_one_line(run_cli, sets, mode, names):
    argv = [*mode, "--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--quiet", "--no-plot"]
    err = refused_in_one_line(run_cli, [*argv, *(a for s in sets for a in ("--set", s))])
    assert all(name in err for name in names), err


def test_a_cluster_config_file_with_a_role_tp_runs_it(run_cli, tmp_path):
    """--cluster --pd with a role's TP set in a config file (not --set) builds that role at it (it was refused while
    the cluster's nodes held instances of one size): its decode instances hold what a TP-2 instance holds."""
    path = tmp_path / "c.yaml"
    path.write_text("pd:\n  decode_tensor_parallel_size: 2\n")
    report = _report(run_cli, tmp_path, "cluster", "--cluster", "--pd", "--config", path)
    instances = report["runs"][0]["metrics"]["instances"]
    assert instances["tensor_parallel_size"] == {"prefill": 1, "decode": 2}
    single = _report(run_cli, tmp_path, "single", "--pd", "--set", "pd.decode_tensor_parallel_size=2")
    assert instances["kv_blocks_each"] == single["runs"][0]["metrics"]["instances"]["kv_blocks_each"]


def test_a_lower_tier_is_read_over_the_readers_own_lanes():
    """A block in DRAM crosses each rank's PCIe link side by side: a reader at TP 2 (two distinct shards of
    Llama's 8 heads) reads it in half the time one at TP 1 does, from the same tier."""
    from sim.serving.run import ServingRun

    config = load_config(None, sets=["serving.num_gpu_blocks=3000", "cache.tiers.dram.capacity_gib=1",
                                     "pd.decode_tensor_parallel_size=2"])
    run = ServingRun(make_trace([0.0], [64], [2]), config, "pd")
    prefill, decode = run.prefill[0].kv, run.decode[0].kv
    dram = run.shared_tiers[0]
    assert (prefill.read_lanes, decode.read_lanes) == (1, 2)
    block = 2 * MIB
    assert dram.reserve_read(block, 0.0, lanes=2) - dram.latency_s == pytest.approx(
        (dram.reserve_read(block, 0.0, lanes=1) - dram.latency_s) / 2)


def test_a_request_is_skipped_only_when_a_role_could_never_hold_its_part():
    """HBM of 64 MiB a GPU holds 32 Llama blocks at TP 1 (2 MiB each; 31 usable beside vLLM's null block) and 64 at
    TP 2 (1 MiB a rank; 63 usable). Prefill at TP 1 holds a prompt (at most 496 tokens: its one sampled token is
    never fed, so has no KV), decode at TP 2 the whole sequence (at most 1,008): 400 + 400 and 496 + 10 run (the
    latter's prefill in exactly its 31 blocks; refused while the prefill side was asked for the first token's slot
    too), 600 + 10 and 497 + 10 have no prefill instance to hold them, 100 + 1,000 no decode instance."""
    from sim.serving.admission import admit

    config = load_config(None, sets=["cache.tiers.hbm.capacity_gib=0.0625", "pd.decode_tensor_parallel_size=2"])
    trace = make_trace([0.0, 1.0, 2.0, 3.0, 4.0], [400, 600, 100, 496, 497], [400, 10, 1000, 10, 10])
    assert admit(trace, config, "pd") == {"exceeds_kv_capacity": 3}
    assert trace.input_tokens.tolist() == [400, 496]
    result, _ = run_serving(trace, config, "pd")
    assert result.metrics["requests_completed"] == 2
    prefill = next(e for e in result.metrics["instances"]["each"] if e["role"] == "prefill")
    assert prefill["kv_usage_peak"] == pytest.approx(31 / 31)  # the 496-token prompt alone: every usable block
    # at one TP (1) the decode side holds 496 tokens too: the 800-token request could never finish
    homogeneous = make_trace([0.0, 1.0], [400, 100], [400, 10])
    assert admit(homogeneous, load_config(None, sets=["cache.tiers.hbm.capacity_gib=0.0625"]), "pd") == {
        "exceeds_kv_capacity": 1}
    assert homogeneous.input_tokens.tolist() == [100]


def test_a_plan_refuses_a_roles_own_tp(tmp_path):
    """The planner prices a candidate by its searched TP x instances: a role's own TP would run other GPUs than it
    priced, so it is refused, naming the key."""
    import yaml

    from experiments.plan_candidates import enumerate_candidates
    from experiments.plan_file import load_plan
    from experiments.prices import load_prices
    from sim.errors import ConfigError

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE)}, "target": {
        "slo": {"ttft_s": 0.3, "attainment": 0.99}, "rate_rps": 40}, "search": {
        "gpu": ["h100-sxm"], "gpus": [2, 4], "tensor_parallel_size": [1, 2], "pd_split": ["all"]}}))
    base = load_config(None, sets=["pd.decode_tensor_parallel_size=2"])
    with pytest.raises(ConfigError, match="pd.decode_tensor_parallel_size"):
        enumerate_candidates(load_plan(str(path)), base, load_prices({}))


def test_serving_tp_beside_one_role_tp_is_still_read(run_cli, tmp_path):
    """With one role's TP null, serving.tensor_parallel_size is that role's TP: a --set of it stays accepted."""
    report = _report(run_cli, tmp_path, "one", "--pd", "--set", "serving.tensor_parallel_size=2",
                     "--set", "pd.decode_tensor_parallel_size=1")
    assert report["runs"][0]["metrics"]["requests_completed"] == 20


@pytest.mark.parametrize("decode, extra, shared_by", [
    (1, [], 2),  # both transfers enter the one decode instance's link at once: each at half its bandwidth
    (2, [], 1),  # one each: every link carries one transfer
    (1, ["network.contention=false"], 1),  # links not shared: each transfer alone
])
def test_a_decode_instance_fed_by_two_prefill_instances_shares_its_link(decode, extra, shared_by):
    """Two 1,024-token requests at t = 0 prefill side by side on two prefill instances and send their 128 MiB at
    once: into one decode instance they share its link (incast), so each takes twice as long as alone; before,
    only the sending side's link was modelled and a decode instance took any number of transfers at full rate."""
    config = load_config(None, sets=["serving.num_gpu_blocks=3000", "network.latency_us=0", "pd.num_prefill=2",
                                     f"pd.num_decode={decode}", *extra])
    _, requests = run_serving(make_trace([0.0, 0.0], [1024, 1024], [4, 4]), config, "pd")
    assert sorted(requests.instance.tolist())[:2] == [0, 1]  # (one request on each prefill instance)
    assert requests.breakdown()["kv_transfer"].tolist() == pytest.approx([shared_by * 64 * 8 * HEAD / LINK] * 2,
                                                                         rel=1e-12)


@pytest.mark.parametrize("extra, shared_by", [
    ([], 2),  # both transfers leave the one prefill instance's link at once: each at half its bandwidth
    (["network.contention=false"], 1),  # links not shared: each transfer alone
])
def test_a_prefill_instance_feeding_two_decode_instances_shares_its_own_link(extra, shared_by):
    """Two 1,024-token requests at t = 0 prefill together on the one prefill instance and send their 128 MiB at once,
    bound one to each decode instance: each decode instance's link carries one transfer, the prefill instance's both,
    so each takes twice as long as alone (the sending side's link, as a cluster's source NIC)."""
    config = load_config(None, sets=["serving.num_gpu_blocks=3000", "network.latency_us=0", "pd.num_prefill=1",
                                     "pd.num_decode=2", *extra])
    _, requests = run_serving(make_trace([0.0, 0.0], [1024, 1024], [4, 4]), config, "pd")
    assert requests.instance.tolist() == [0, 0] and sorted(requests.decode_instance.tolist()) == [1, 2]
    assert requests.breakdown()["kv_transfer"].tolist() == pytest.approx([shared_by * 64 * 8 * HEAD / LINK] * 2,
                                                                         rel=1e-12)


def test_a_single_node_pd_transfer_pays_the_links_latency_once():
    """One 1,024-token request, 1 prefill + 1 decode instance, a 100 Gb/s link of 7 us: its 128 MiB cross the prefill
    instance's link and the decode instance's together (64 blocks x 8 heads x 256 KiB / 12.5 GB/s), then the 7 us
    once (a path's hops: ``sim.serving.paths``), not once a link."""
    config = load_config(None, sets=["serving.num_gpu_blocks=3000", "network.latency_us=7"])
    _, requests = run_serving(make_trace([0.0], [1024], [4]), config, "pd")
    assert requests.breakdown()["kv_transfer"].tolist() == pytest.approx([64 * 8 * HEAD / LINK + 7e-6], rel=1e-12)
