"""``--cluster --pd`` with prefill and decode instances at their own tensor-parallel sizes
(pd.prefill_tensor_parallel_size, pd.decode_tensor_parallel_size): where the topology places each role's instances,
that each is built from its role's shape, that a transfer is timed and counted as single-node PD's, and the refusals.

Placement rule (``sim.cluster.topology``): in each rack the prefill instances take GPUs first, each its TP's
consecutive GPUs, then the decode instances, the first starting at the next multiple of its own TP (an instance never
straddles two nodes); with equal TPs this is the layout of one instance size as before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_invariants import check_report

from sim.cluster.run import run_cluster
from sim.cluster.topology import Topology
from sim.config import load_config
from sim.errors import ConfigError
from sim.serving.run import run_serving
from tests.bad_input_helpers import refused_in_one_line
from tests.conftest import BUNDLED_AZURE
from tests.test_serving import make_trace

NO_LOWER_TIERS = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0",
                  "cache.tiers.eic.capacity_gib=0"]


def _topo(**sets) -> Topology:
    config = load_config(None, sets=[f"{k.replace('__', '.')}={v}" for k, v in sets.items()])
    return Topology.from_config(config, pd=True)


def test_placement_by_hand_decode_aligned_to_its_tp():
    """2 racks x 2 nodes x 8 GPUs; per rack 3 prefill instances at TP 2 (GPUs 0-5 of node 0) and 1 decode instance
    at TP 4: its GPUs start at the next multiple of 4 after GPU 6, 8: node 1's GPUs 0-3. Ids rack-major: rack 0's
    are 0, 1, 2 (prefill) and 3 (decode), rack 1's 4..7."""
    topo = _topo(cluster__num_racks=2, cluster__nodes_per_rack=2, hardware__gpus_per_node=8, pd__num_prefill=3,
                 pd__prefill_tensor_parallel_size=2, pd__num_decode=1, pd__decode_tensor_parallel_size=4)
    assert topo.num_instances == 8 and topo.num_gpus == 32
    assert [topo.node_of(i) for i in range(8)] == [0, 0, 0, 1, 2, 2, 2, 3]
    assert [topo.rack_of(i) for i in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert topo.front_slots().tolist() == [0, 1, 2] and topo.decode_slots().tolist() == [3]
    for i in range(topo.num_instances):
        assert topo.instance_id(*topo.locate(i)) == i
    assert [topo.locate(i) for i in (2, 3, 7)] == [(0, 0, 2), (0, 1, 0), (1, 1, 0)]


def test_placement_by_hand_roles_share_a_node():
    """1 rack x 2 nodes x 8 GPUs: 2 prefill at TP 2 (GPUs 0-3) and 1 decode at TP 4 (GPUs 4-7) all on node 0; then
    1 prefill at TP 4 (node 0's GPUs 0-3) and 4 decode at TP 2 (GPUs 4-11: two on node 0, two on node 1)."""
    topo = _topo(cluster__nodes_per_rack=2, pd__num_prefill=2, pd__prefill_tensor_parallel_size=2,
                 pd__decode_tensor_parallel_size=4)
    assert [topo.node_of(i) for i in range(topo.num_instances)] == [0, 0, 0]
    topo = _topo(cluster__nodes_per_rack=2, pd__prefill_tensor_parallel_size=4, pd__num_decode=4,
                 pd__decode_tensor_parallel_size=2)
    assert [topo.node_of(i) for i in range(topo.num_instances)] == [0, 0, 0, 1, 1]


def test_equal_tps_keep_the_one_size_layout():
    """Both roles at TP 2 set through their own keys: the same topology as serving.tensor_parallel_size=2 (the idle
    slots after the decode pool included)."""
    one = _topo(cluster__nodes_per_rack=2, serving__tensor_parallel_size=2, pd__num_prefill=3)
    both = _topo(cluster__nodes_per_rack=2, pd__num_prefill=3, pd__prefill_tensor_parallel_size=2,
                 pd__decode_tensor_parallel_size=2)
    assert one.num_instances == both.num_instances == 8
    assert [one.node_of(i) for i in range(8)] == [both.node_of(i) for i in range(8)] == [0] * 4 + [1] * 4


@pytest.mark.parametrize("prefill_tp,decode_tp,expected", [(1, 1, 10), (2, 1, 10), (2, 2, 10)])
def test_the_report_counts_the_instances_in_the_pools(run_cli, tmp_path, prefill_tp, decode_tp, expected):
    """2 racks x 2 nodes x 8 GPUs, per rack 2 prefill + 3 decode: 2 x (2 + 3) = 10 instances whatever the TPs (one
    size: 16 / TP slots a rack, the rest idle; they are ids, not instances: 32 were reported at TP 1, 16 at TP 2)."""
    out = tmp_path / "r.json"
    status, _, err = run_cli("--cluster", "--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "20",
                             "--quiet", "--no-plot", "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=2",
                             "--set", "hardware.gpus_per_node=8", "--set", "pd.num_prefill=2", "--set", "pd.num_decode=3",
                             "--set", f"pd.prefill_tensor_parallel_size={prefill_tp}",
                             "--set", f"pd.decode_tensor_parallel_size={decode_tp}", "--report-json", out)
    assert status == 0, err
    cluster = json.loads(out.read_text())["runs"][0]["metrics"]["cluster"]
    assert cluster["instances"] == expected and cluster["instances_used"] <= expected


@pytest.mark.parametrize("sets,idle", [
    # a rack of 2 nodes x 8 GPUs; per rack 2 prefill + 3 decode instances: at TP 1 GPUs 0-4 (11 idle); prefill TP 2
    # GPUs 0-3, decode TP 1 4-6 (9 idle); both TP 2: 0-3 and 4-9 (6 idle)
    (["pd.num_prefill=2", "pd.num_decode=3"], 11),
    (["pd.num_prefill=2", "pd.num_decode=3", "pd.prefill_tensor_parallel_size=2"], 9),
    (["pd.num_prefill=2", "pd.num_decode=3", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=2"],
     6),
    (["pd.num_prefill=8", "pd.num_decode=8"], 0),  # every GPU an instance: no note
])
def test_gpus_left_without_an_instance_are_said(run_cli, tmp_path, sets, idle):
    """--cluster --pd places pd.num_prefill + pd.num_decode instances per rack whatever its size: the GPUs left
    over are said (more nodes a rack changed nothing, with no word why), on the terminal under the run and in its
    JSON's ``notes`` (hexplore7: the terminal alone said it), so in the HTML too."""
    import html

    from sim.report.html import render_html

    out_json = tmp_path / "r.json"
    argv = ["--cluster", "--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "20", "--no-plot", "--set",
            "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=8", "--report-json", out_json]
    status, out, err = run_cli(*argv, *[a for s in sets for a in ("--set", s)])
    assert status == 0, err
    said = [line for line in out.splitlines() if "GPUs run no instance" in line]
    note = (f"{idle} of each rack's 16 GPUs run no instance: --cluster --pd places "
            f"{sets[0]} prefill and {sets[1]} decode instances in each rack (raise them to use its GPUs)")
    assert said == ([f"  ! {note}"] if idle else []), said
    report = json.loads(out_json.read_text())
    assert report["runs"][0]["metrics"].get("notes") == ([note] if idle else None)
    said_html = f"<li><b>{report['runs'][0]['name']}</b>: {html.escape(note)}</li>"
    assert (said_html in render_html(report, [])) == bool(idle)


@pytest.mark.parametrize("sets,names", [
    # TP 8 does not divide 12 GPUs (vLLM's heads allow it: 32 heads, 8 KV heads)
    (["hardware.gpus_per_node=12", "pd.prefill_tensor_parallel_size=8", "pd.decode_tensor_parallel_size=4"],
     ["'pd.prefill_tensor_parallel_size'=8", "'hardware.gpus_per_node'=12"]),
    # per rack 2 x 2 + 2 x 4 = 12 GPUs > one node's 8
    (["cluster.nodes_per_rack=1", "pd.num_prefill=2", "pd.prefill_tensor_parallel_size=2", "pd.num_decode=2",
      "pd.decode_tensor_parallel_size=4"],
     ["'pd.num_prefill'=2", "'pd.num_decode'=2", "'pd.decode_tensor_parallel_size'=4", "cluster.nodes_per_rack"]),
    # 1 x 4 then 1 x 8 must start at GPU 8: 24 GPUs of a rack of 1 x 16
    (["cluster.nodes_per_rack=1", "hardware.gpus_per_node=16", "pd.prefill_tensor_parallel_size=4",
      "pd.decode_tensor_parallel_size=8", "pd.num_decode=2"],
     ["'pd.decode_tensor_parallel_size'=8", "24 GPUs"]),
    # each pool splits into data-parallel groups on one node: 12 / TP 4 = 3 decode instances a node, groups of 2
    (["model=deepseek-v2-lite", "hardware.gpus_per_node=12", "serving.data_parallel_size=2", "pd.num_prefill=2",
      "pd.num_decode=2", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=4"],
     ["(hardware.gpus_per_node / pd.decode_tensor_parallel_size)=3", "'serving.data_parallel_size'=2"]),
])
def test_refusals_name_the_keys(run_cli, sets, names):
    argv = ["--cluster", "--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--quiet", "--no-plot"]
    err = refused_in_one_line(run_cli, [*argv, *(a for s in sets for a in ("--set", s))])
    assert all(name in err for name in names), err
    with pytest.raises(ConfigError):
        Topology.from_config(load_config(None, sets=sets), pd=True)


def test_a_gated_deltanet_hybrid_keeps_one_tp(run_cli):
    """Its states cross between TPs by slicing (vLLM ssm_conv_transfer_utils.py), which kvsim does not model: refused
    in --cluster --pd as in --pd."""
    status, _, err = run_cli("--cluster", "--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "5", "--quiet",
                             "--no-plot", "--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=b200",
                             "--set", "serving.tensor_parallel_size=2", "--set", "pd.decode_tensor_parallel_size=4")
    assert status == 2 and "'pd.decode_tensor_parallel_size'=4" in err and "Gated DeltaNet" in err, err


def _config(prefill_tp: int = 1, decode_tp: int = 2, *sets: str):
    # one node holding both roles and no lower tier; its GPUs' NVLink (an H100 board's: a transfer within the node
    # goes GPU to GPU) at the network link's 100 Gb/s (12.5 GB/s) with no latency, so a transfer within the node
    # takes what single-node PD's link takes
    return load_config(None, sets=[f"pd.prefill_tensor_parallel_size={prefill_tp}",
                                   f"pd.decode_tensor_parallel_size={decode_tp}", "cluster.nodes_per_rack=1",
                                   "hardware.gpu_link_gbps=12.5", "hardware.gpu_link_latency_us=0",
                                   "network.latency_us=0", *NO_LOWER_TIERS, *sets])


@pytest.mark.parametrize("prefill_tp, decode_tp", [(1, 2), (2, 2), (2, 1)])
def test_one_node_cluster_equals_single_node_pd(prefill_tp, decode_tp):
    """The independent path is single-node --pd with the same roles: a 1-rack, 1-node cluster (no DRAM/SSD/EIC) gives
    the same per-request times and transfer bytes. Single-node PD gives each rank a link of its own and times a
    transfer by its busiest rank's bytes; the cluster sends every rank's bytes over the instances' PCIe paths (one
    lane per rank), the same time when each rank moves its share (at TP 2 -> 2 the ranks' shards side by side were
    counted as one rank's bytes over both lanes: half the time)."""
    trace = make_trace([0.0, 0.001, 0.002, 0.3, 0.31], [1024, 2048, 512, 3000, 700], [16, 8, 40, 4, 30])
    config = _config(prefill_tp, decode_tp)
    single, s_table = run_serving(trace, config, "pd")
    cluster, c_table = run_cluster(trace, config, pd=True)
    for column in ("scheduled", "prefill_done", "kv_ready", "first_token", "last_token", "kv_transfer_bytes"):
        assert getattr(c_table, column).tolist() == getattr(s_table, column).tolist(), column
    # (Llama-3.1-8B: 2 MiB blocks, every decode rank's shard moved: the whole block)
    assert c_table.kv_transfer_bytes.tolist() == [-(-n // 16) * 2 * (1 << 20) for n in trace.input_tokens.tolist()]
    s_inst, c_inst = single.metrics["instances"], cluster.metrics["instances"]
    assert c_inst["kv_blocks_each"] == s_inst["kv_blocks_each"]
    if prefill_tp != decode_tp:
        assert c_inst["tensor_parallel_size"] == {"prefill": prefill_tp, "decode": decode_tp}
    assert cluster.metrics["cluster"]["kv_transfer_bytes"]["node"] == int(c_table.kv_transfer_bytes.sum())


@pytest.mark.parametrize("prefill_tp, decode_tp", [(1, 2), (2, 2), (2, 4)])
def test_one_node_cluster_equals_single_node_pd_with_mla(prefill_tp, decode_tp):
    """MLA (DeepSeek-V2-Lite): each decode rank receives its own copy of the whole latent, over its own PCIe lane, as
    single-node PD times it (the busiest rank's bytes on its own link). The cluster's PCIe paths had one lane for
    MLA (the latent being stored once in a lower tier), so at TP 2 -> 2 and 2 -> 4 the decode ranks' copies crossed
    one lane: twice single-node PD's time."""
    trace = make_trace([0.0, 0.001, 0.002, 0.3, 0.31], [1024, 2048, 512, 3000, 700], [16, 8, 40, 4, 30])
    config = _config(prefill_tp, decode_tp, "model=deepseek-v2-lite")
    _, s_table = run_serving(trace, config, "pd")
    _, c_table = run_cluster(trace, config, pd=True)
    for column in ("scheduled", "prefill_done", "kv_ready", "first_token", "last_token", "kv_transfer_bytes"):
        assert getattr(c_table, column).tolist() == getattr(s_table, column).tolist(), column


def test_transfers_cross_the_links_the_placement_says():
    """2 prefill at TP 2 and 1 decode at TP 4 on one node: every transfer stays in the node; 3 prefill at TP 2 put
    the decode instance on node 1: every transfer crosses the rack's NICs."""
    trace = make_trace([0.0, 0.01, 0.02], [512, 512, 512], [4, 4, 4])
    base = ["cluster.nodes_per_rack=2", "pd.prefill_tensor_parallel_size=2", "pd.decode_tensor_parallel_size=4"]
    for prefill, scope in ((2, "node"), (3, "rack")):
        result, table = run_cluster(trace, load_config(None, sets=[*base, f"pd.num_prefill={prefill}"]), pd=True)
        sent = result.metrics["cluster"]["kv_transfer_bytes"]
        assert sent[scope] == int(table.kv_transfer_bytes.sum()) > 0
        assert sum(sent.values()) == sent[scope]
        assert result.metrics["instances"]["tensor_parallel_size"] == {"prefill": 2, "decode": 4}


def test_rerun_is_byte_identical(run_cli, tmp_path):
    argv = ["--cluster", "--pd", "--workload-trace", BUNDLED_AZURE, "--workload-limit", "20", "--quiet", "--no-plot",
            "--set", "cluster.nodes_per_rack=2", "--set", "pd.num_prefill=2", "--set", "pd.decode_tensor_parallel_size=2",
            "--set", "cache.tiers.dram.capacity_gib=1"]
    reports = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        status, _, err = run_cli(*argv, "--report-json", out)
        assert status == 0, err
        reports.append(json.loads(out.read_text()))
    assert check_report(reports[0]) == []
    assert json.dumps(reports[0]["runs"], sort_keys=True) == json.dumps(reports[1]["runs"], sort_keys=True)
    instances = reports[0]["runs"][0]["metrics"]["instances"]
    assert instances["tensor_parallel_size"] == {"prefill": 1, "decode": 2}
    assert np.all(np.array(list(instances["kv_blocks_each"].values())) > 0)


@pytest.mark.parametrize("decode_tp,serving_tp", [(2, 1), (1, 2)])
def test_admission_holds_each_role_to_its_own_capacity(run_cli, tmp_path, decode_tp, serving_tp):
    """--cluster --pd skips a request exactly where single-node --pd does: a prefill instance must hold the prompt and
    its first token, a decode instance the whole sequence, each at its own TP. 128 MiB of HBM per GPU holds 64
    Llama-3.1-8B blocks of 2 MiB at TP 1 (63 usable; 128 at TP 2, 127 usable): a 900 + 300-token request (57 blocks to
    prefill, 75 to decode) runs with decode at TP 2 and can never run with decode at TP 1 (admission was checked at
    serving.tensor_parallel_size alone: skipped at serving TP 1 though TP 2 decodes it, admitted at serving TP 2 though
    its TP-1 decode instance never holds it)."""
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0,100,10\n"
                     "2023-11-16 18:15:47.0,900,300\n")
    sets = ["cache.tiers.hbm.capacity_gib=0.125", f"serving.tensor_parallel_size={serving_tp}",
            f"pd.prefill_tensor_parallel_size={serving_tp}", f"pd.decode_tensor_parallel_size={decode_tp}",
            "hardware.gpus_per_node=4", "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]
    cluster = ["cluster.num_racks=1", "cluster.nodes_per_rack=1"]
    completed = {}
    for mode in (["--pd"], ["--cluster", "--pd"]):
        out = tmp_path / "r.json"
        argv = [*mode, "--workload-trace", trace, "--quiet", "--no-plot", "--report-json", out]
        for s in sets + (cluster if "--cluster" in mode else []):
            argv += ["--set", s]
        status, _, err = run_cli(*argv)
        assert status == 0, err
        report = json.loads(out.read_text())
        completed[mode[0]] = (report["runs"][0]["metrics"]["requests_completed"],
                              report["trace"]["skip_reasons"].get("exceeds_kv_capacity", 0))
    expected = (2, 0) if decode_tp == 2 else (1, 1)
    assert completed == {"--pd": expected, "--cluster": expected}


# profiles/gpus.yaml's links (NCCL's planned rate per direction, one hop's latency): H100 SXM's NVLink-4 through
# NVSwitch 18 x 20.6 GB/s, 3.4 us; an L40S's PCIe Gen 4 x16 board has no NVLink: config.yaml's hardware.pcie_gbps
# (63 GB/s, PCIe 5.0 x16) a GPU, both GPUs' links crossed side by side, no latency
NVLINK4_BYTES_PER_S, NVLINK4_HOP_S = 18 * 20.6e9, 3.4e-6


@pytest.mark.parametrize("gpu, sets, rate, latency", [
    ("h100-sxm", [], NVLINK4_BYTES_PER_S, NVLINK4_HOP_S),
    ("h100-sxm", ["hardware.gpu_link_gbps=100", "hardware.gpu_link_latency_us=2"], 100e9, 2e-6),  # read at TP 1
    ("l40s", [], 63e9, 0.0)])
def test_a_transfer_within_a_node_goes_gpu_to_gpu_over_nvlink_where_the_board_has_it(gpu, sets, rate, latency):
    """vLLM's NixlConnector moves a node's KV GPU to GPU (UCX cuda_ipc): over NVLink on an NVSwitch board; the
    cluster sent it through both GPUs' PCIe links (63 GB/s) on every board. One request alone, TP 1 -> 1 on one
    node: its transfer takes bytes / the link's rate + its latency (``hardware.gpu_link_*`` set it there even at
    TP 1, where no collective reads them)."""
    trace = make_trace([0.0], [4096], [4])
    config = load_config(None, sets=[f"hardware.gpu={gpu}", "cluster.nodes_per_rack=1", "pd.num_prefill=1",
                                     "pd.num_decode=1", "model=llama-3.1-8b", *NO_LOWER_TIERS, *sets])
    result, table = run_cluster(trace, config, pd=True)
    assert result.metrics["cluster"]["kv_transfer_bytes"]["node"] == int(table.kv_transfer_bytes[0]) > 0
    took = float(table.kv_ready[0] - table.kv_sent[0])
    assert took == pytest.approx(int(table.kv_transfer_bytes[0]) / rate + latency, rel=1e-9)


def test_the_gpu_link_at_tp_1_is_refused_where_no_kv_crosses_it(run_cli):
    """On a PCIe board (L40S) a node's KV crosses PCIe, so at TP 1 nothing reads hardware.gpu_link_gbps: refused."""
    for argv in (["--cluster", "--pd", "--set", "hardware.gpu=l40s"], ["--pd"]):
        status, _, err = run_cli(*argv, "--preset", "smoke", "--set", "hardware.gpu_link_gbps=100", "--no-plot")
        assert status == 2 and "hardware.gpu_link_gbps" in err and len(err.strip().splitlines()) == 1, err
