"""First-principles bounds on serving reports over the bundled real traces: whatever the calibration, no request's
first token can come sooner than its prefill's FLOPs at the GPUs' peak or its weights at their memory bandwidth, no
decode step sooner than its weights and its sequence's KV read once, and no instance can run more steps or tokens than
the roofline allows. The floors are derived here from datasheet and model-card numbers (sources beside each), not
from the simulator's own specs, so a pricing or accounting slip that makes a result faster than physics fails.

Floors (SI units; t = the instance's GPUs, its tensor-parallel size; every one a lower bound, never tight):

- Weights. P = the model card's total parameter count, less half a unit of its last printed digit (8.03B -> 8.025e9):
  at least the true count. A token touches every parameter but the input embedding (a gather of one row, V x H: not
  read whole) and the routed experts it does not pick (per MoE layer (E - k) x 3 x H x I_moe: gate, up, down). The
  body B = P - 2 V H - inactive experts (the embedding, and the LM head, which prefill runs for the last token only;
  a tied model's one V x H matrix is subtracted twice: a smaller, still valid floor). A step reads at least
  W = (B + V H) x dtype bytes (body and LM head) across its t GPUs, so it lasts >= W / (t x HBM bandwidth): the
  ranks' shares sum to W, and the step ends when its slowest rank does, no sooner than the average.
- Prefill FLOPs: each uncached prompt token multiplies through the body: >= 2 B FLOPs (a multiply-add per parameter;
  attention only adds), so a prefill of n uncached tokens lasts >= 2 n B / (t x peak) (the same averaging).
- TTFT_i >= kv_load_i + max(2 n_i B / (t peak), W / (t BW)): the scheduler loads a request's lower-tier hits before
  the step that prefills it (sim/serving/scheduler.py: loads serialised ahead of the step), and the prefill is at
  least one step. --pd adds the KV transfer: >= link latency + bytes_i / (links x link bandwidth) (each prefill rank
  sends its shard over its own link: links = the larger role TP), then the decode instance's first step (>= W /
  (t_d BW)); with layerwise transfer, the transfer overlaps the prefill, so max(prefill, transfer) instead of their sum.
  The bytes sent are whole KV blocks (block_size x the KV bytes a token), no more than the prompt's, and sum to the
  run's kv_transfer_bytes.
- TPOT_i >= (W + KV_i) / (t BW): each decode step of request i reads the weights and at least request i's own KV
  (its prompt's tokens at every attention layer: kv_heads x head_dim x 2 (K and V) x dtype bytes a layer and token;
  MLA: (kv_lora_rank + rope dim) x dtype bytes a layer, one latent; a sliding layer min(prompt, window) tokens;
  a Gated DeltaNet layer none counted), split over the t ranks at best.
- Roofline, per instance: every step reads W and each decode step of a request its own KV (as for TPOT), so
  (steps x W + its decodes' KV) / (t BW) <= its busy time (busy_fraction x makespan): decode steps/s <= t BW / W;
  and every token it computes (the uncached prompt tokens it prefilled, one a decode step) costs >= 2 B FLOPs, so
  their sum x 2 B / (t peak) <= its busy time: throughput <= t peak / 2B tokens/s (a step lasts at least each).
- Lower tiers: a request's loads are serialised on its instance (one lane per rank) and charged bytes / read
  bandwidth, so, without preemptions (a reload is not a first admission's kv_load), for each tier
  bytes_read / (lanes x read bandwidth) <= sum of the requests' kv_load_s; and in exclusive mode a lower tier is
  read only by moving out a block written into it (initial content 0), so blocks read <= blocks written.
- Every report also passes ``check_report`` (kv_usage, busy, MFU, MBU in [0, 1]; completed + skipped = rows;
  goodput <= completed / makespan; makespan >= arrival span; cluster network bytes = blocks x block bytes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from report_invariants import check_report

from sim.specs import model_spec
from tests.conftest import ROOT

# Datasheet peaks (dense BF16 tensor FLOP/s; HBM bytes/s):
GPUS = {
    # NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: BF16 1,979 TFLOPS with sparsity (989.4 dense); 3.35 TB/s
    "h100-sxm": (989.4e12, 3.35e12),
    # NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity (989.4 dense); 4.8 TB/s
    "h200": (989.4e12, 4.8e12),
    # NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: BF16 312 TFLOPS dense; 2,039 GB/s
    "a100-80gb": (312e12, 2.039e12),
    # NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: FP16 tensor 330.3 TFLOPS dense with FP16
    # accumulate (165.2 with FP32 accumulate, as BF16 GEMMs run: the larger is the safe peak); 1,008 GB/s
    "rtx4090": (330.3e12, 1.008e12),
}
# NVIDIA H100 datasheet: NVLink 900 GB/s (both directions together): 450e9 B/s one way, the fastest KV path inside
# a node (--cluster --pd sends over NVLink within a node)
NVLINK_ONE_WAY = 450e9


@dataclass(frozen=True)
class Published:
    params: float  # the model card's total, lowered by half a unit of its last printed digit
    source: str


MODELS = {
    "llama-3.1-8b": Published(8.025e9, "huggingface.co/meta-llama/Llama-3.1-8B model card: 8.03B"),
    "llama-3-8b": Published(8.025e9, "huggingface.co/meta-llama/Meta-Llama-3-8B: 8.03B params (safetensors)"),
    "qwen3-30b-a3b": Published(30.45e9, "huggingface.co/Qwen/Qwen3-30B-A3B model card: 30.5B in total"),
    "deepseek-v2-lite": Published(15.65e9, "huggingface.co/deepseek-ai/DeepSeek-V2-Lite model card: 15.7B total"),
    "gemma-2-9b": Published(9.235e9, "Gemma 2 technical report (arXiv:2408.00118) Table: 9.24B (tied embeddings)"),
    # model card: "80B in total and 3B activated" (the MTP layer, loaded only for speculative decoding, is beside it)
    "qwen3-next-80b-a3b": Published(79.5e9, "huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct model card: 80B"),
}
DTYPE_BYTES = 2  # bf16 weights and KV (config.yaml serving.dtype, kv_cache_dtype auto)


@dataclass(frozen=True)
class Floors:
    body: float  # parameters every token multiplies through (no embedding, no LM head)
    step_bytes: float  # bytes every step reads (body + LM head)
    kv_full: float  # KV bytes a token, summed over the full-attention layers
    kv_sliding: float  # KV bytes a token, summed over the sliding-window layers
    window: int


def floors(model: str) -> Floors:
    """The module docstring's B, W and per-token KV bytes, from the model card's count and the shape (profiles/)."""
    m = model_spec(model)
    vh = m.vocab_size * m.hidden_size
    inactive = 0.0
    if m.num_experts:
        inactive = m.num_moe_layers * (m.num_experts - m.num_experts_per_tok) * 3 * m.hidden_size * \
            m.moe_intermediate_size
    body = MODELS[model].params - 2 * vh - inactive
    if m.is_mla:
        per_layer = (m.kv_lora_rank + m.qk_rope_head_dim) * DTYPE_BYTES  # one latent and its rope key
    else:
        per_layer = 2 * m.num_kv_heads * m.head_dim * DTYPE_BYTES
    linear = m.linear_attention.layers if m.linear_attention is not None else 0
    sliding = getattr(m, "num_sliding_layers", 0) or 0
    full = m.num_layers - linear - sliding
    return Floors(body, (body + vh) * DTYPE_BYTES, full * per_layer, sliding * per_layer,
                  getattr(m, "sliding_window", 0) or 0)


def kv_bytes(f: Floors, tokens: np.ndarray) -> np.ndarray:
    return f.kv_full * tokens + f.kv_sliding * np.minimum(tokens, f.window)


SLACK = 1 - 1e-9  # float sums only: every floor above already lies below the true bound


def check_bounds(report: dict, requests: pd.DataFrame) -> list[str]:
    """Each violation of the module docstring's floors and ceilings in one run's report and requests."""
    config, metrics = report["config"], report["runs"][0]["metrics"]
    peak, bw = GPUS[config["hardware"]["gpu"]]
    f = floors(config["model"])
    pd_mode = any(e.get("role") in ("prefill", "decode") for e in metrics["instances"]["each"])
    tp = config["serving"]["tensor_parallel_size"]
    tp_p = (config["pd"].get("prefill_tensor_parallel_size") or tp) if pd_mode else tp
    tp_d = (config["pd"].get("decode_tensor_parallel_size") or tp) if pd_mode else tp
    bad: list[str] = []
    r = requests
    uncached = (r.input_tokens - r.cached_tokens).to_numpy(float)
    prefill = np.maximum(2 * uncached * f.body / (tp_p * peak), f.step_bytes / (tp_p * bw))
    floor = r.kv_load_s.to_numpy(float)
    if pd_mode:
        if report["mode"] == "cluster":
            link, latency = max(config["network"]["bandwidth_gbps"] / 8 * 1e9, NVLINK_ONE_WAY), 0.0
        else:
            link, latency = config["network"]["bandwidth_gbps"] / 8 * 1e9, config["network"]["latency_us"] * 1e-6
        moved = r.kv_transfer_bytes.to_numpy(float)
        transfer = np.where(moved > 0, latency + moved / (max(tp_p, tp_d) * link), 0.0)
        first_decode = f.step_bytes / (tp_d * bw)
        if config["pd"]["transfer"] == "layerwise":
            floor = floor + np.maximum(prefill, transfer) + first_decode
        else:
            floor = floor + prefill + transfer + first_decode
        # the KV sent is whole blocks of the prompt (block_size x KV bytes a token, every rank's shard once where each
        # KV head lives on one rank of each role), at most all of them (the decode side's own hits are not sent)
        m = model_spec(config["model"])
        if not m.is_mla and m.num_kv_heads >= max(tp_p, tp_d):
            block = metrics["instances"]["block_size"] * f.kv_full
            prompt_blocks = -(-r.input_tokens.to_numpy() // metrics["instances"]["block_size"])
            if (moved % block).any() or (moved > prompt_blocks * block).any():
                bad.append(f"kv_transfer_bytes not whole blocks of {block} B within the prompt's")
        if moved.sum() != metrics["kv_transfer_bytes"]:
            bad.append(f"requests' kv_transfer_bytes sum {moved.sum():.0f} != the run's {metrics['kv_transfer_bytes']}")
        tx = r.kv_transfer_s.to_numpy(float)
        if config["pd"]["transfer"] != "layerwise" and (low := tx < transfer * SLACK).any():
            i = int(np.argmax(low))
            bad.append(f"request {r.request_id[i]}: kv_transfer_s {tx[i]:.3e} < {moved[i]:.0f} B over the link "
                       f"{transfer[i]:.3e}")
    else:
        floor = floor + prefill
    ttft = r.ttft_s.to_numpy(float)
    if (low := ttft < floor * SLACK).any():
        i = int(np.argmax(low))
        bad.append(f"{int(low.sum())} requests' TTFT under the floor, e.g. request {r.request_id[i]}: "
                   f"{ttft[i]:.4e} s < {floor[i]:.4e} s ({uncached[i]:.0f} uncached tokens)")
    # TPOT: weights and the request's own KV every step
    two = r.output_tokens.to_numpy() >= 2
    tpot = r.tpot_s.to_numpy(float)[two]
    kv = kv_bytes(f, r.input_tokens.to_numpy(float)[two])
    tpot_floor = (f.step_bytes + kv) / (tp_d * bw)
    if (low := tpot < tpot_floor * SLACK).any():
        i = int(np.argmax(low))
        bad.append(f"{int(low.sum())} requests' TPOT under the floor, e.g. {tpot[i]:.4e} s < {tpot_floor[i]:.4e} s")
    makespan = metrics["makespan_s"]
    # each instance's busy time holds its steps' weight reads and its decodes' own KV reads at the bandwidth, and the
    # FLOPs of the tokens it computes (uncached prompt tokens where it prefilled, one a decode step where it decoded)
    # at the peak: a step lasts at least each, so their sums at least each sum
    decoder = np.where(r.decode_instance.to_numpy() >= 0, r.decode_instance.to_numpy(), r.instance.to_numpy())
    decode_kv = np.maximum(r.output_tokens.to_numpy() - 1, 0) * kv_bytes(f, r.input_tokens.to_numpy(float))
    decodes = np.maximum(r.output_tokens.to_numpy() - 1, 0)
    for e in metrics["instances"]["each"]:
        t = {"prefill": tp_p, "decode": tp_d}.get(e["role"], tp)
        mine = decoder == e["index"]
        read = (e["steps"] * f.step_bytes + decode_kv[mine].sum()) / (t * bw)
        flops = 2 * f.body * (uncached[r.instance.to_numpy() == e["index"]].sum() + decodes[mine].sum()) / (t * peak)
        if max(read, flops) > e["busy_fraction"] * makespan / SLACK:
            bad.append(f"instance {e['index']}: its work needs >= {read:.4e} s of reads and {flops:.4e} s of FLOPs, "
                       f"busy only {e['busy_fraction'] * makespan:.4e} s")
    # lower tiers: serialised loads at read bandwidth; exclusive tiers read only what was written in
    tiers = metrics.get("tiers") or {}
    if metrics.get("preemptions", 0) == 0 and report["mode"] != "cluster":
        for name, t in tiers.items():
            need = t["bytes_read"] / (tp_p * config["cache"]["tiers"][name]["read_gbps"] * 1e9)
            if need > r.kv_load_s.sum() / SLACK:
                bad.append(f"tiers.{name}: {t['bytes_read']} B read need >= {need:.4e} s, the loads took "
                           f"{r.kv_load_s.sum():.4e} s")
    if config["cache"]["inclusion"] == "exclusive" and not model_spec(config["model"]).is_mla:
        for name, t in tiers.items():  # (MLA's latent is read once per rank: bytes read > bytes moved)
            if t["bytes_read"] > t["bytes_written"]:
                bad.append(f"tiers.{name}: read {t['bytes_read']} B, more than written into it {t['bytes_written']}")
    return bad


TRACES = {
    "azure": ("azure_conv_2023.csv", 400),
    "mooncake": ("mooncake_conversation.jsonl", 300),
    "sharegpt": ("llmservingsim_sharegpt_llama31_8b_300.jsonl", 300),
}
# name: (trace, mode flags, --set overrides)
RUNS = {
    "single-4": ("azure", [], []),
    "single-1-small-hbm": ("mooncake", [], ["serving.num_instances=1", "serving.num_gpu_blocks=400"]),
    "single-1-tp2-h200": ("sharegpt", [], ["serving.num_instances=1", "serving.tensor_parallel_size=2",
                                           "hardware.gpu=h200"]),
    "pd-1p3d-push": ("mooncake", ["--pd"], ["pd.num_prefill=1", "pd.num_decode=3"]),
    "pd-2p1d-layerwise-tp": ("sharegpt", ["--pd"], ["pd.num_prefill=2", "pd.num_decode=1", "pd.transfer=layerwise",
                                                    "pd.prefill_tensor_parallel_size=2",
                                                    "pd.decode_tensor_parallel_size=4"]),
    "pd-pull-a100": ("azure", ["--pd"], ["pd.transfer=pull", "hardware.gpu=a100-80gb"]),
    "cluster": ("mooncake", ["--cluster"], ["serving.num_gpu_blocks=400"]),
    "cluster-pd": ("sharegpt", ["--cluster", "--pd"], ["cluster.num_racks=2", "serving.tensor_parallel_size=2"]),
    "moe-qwen3-30b": ("sharegpt", [], ["model=qwen3-30b-a3b", "serving.num_instances=2",
                                       "serving.tensor_parallel_size=2"]),
    "mla-deepseek-v2-lite": ("mooncake", [], ["model=deepseek-v2-lite", "serving.num_instances=1",
                                              "serving.tensor_parallel_size=2", "serving.num_gpu_blocks=300"]),
    "sliding-gemma-2-9b": ("sharegpt", [], ["model=gemma-2-9b", "serving.num_instances=2"]),
    "gdn-qwen3-next": ("mooncake", [], ["model=qwen3-next-80b-a3b", "serving.num_instances=1",
                                        "serving.tensor_parallel_size=4", "hardware.gpu=h200"]),
    # measured operator tables (a profiled backend): interpolated and extrapolated times must stay above physics too
    "profiled-vidur-a100-tp2": ("sharegpt", ["--calibration-profile", str(ROOT / "profiles" / "vidur_a100_llama3_8b.yaml")],
                                []),
    "profiled-rtx4090-overload": ("azure", ["--calibration-profile",
                                            str(ROOT / "profiles" / "rtx4090_llama31_8b_vllm.yaml"), "--rate-scale", "8"],
                                  []),
}


@pytest.mark.parametrize("name", RUNS)
def test_serving_results_respect_physical_bounds(shared_data, run_cli, tmp_path, name):
    """Every mode over a real trace: each request's TTFT and TPOT at or above its floors, each instance within its
    roofline, lower tiers within their bandwidth (module docstring), and the report's own invariants."""
    trace, flags, sets = RUNS[name]
    path, limit = TRACES[trace]
    out, rows = tmp_path / "r.json", tmp_path / "q.csv"
    argv = [*flags, "--workload-trace", str(shared_data / "traces" / path), "--workload-limit", str(limit),
            "--quiet", "--no-plot", "--report-json", str(out), "--requests-csv", str(rows)]
    for s in sets:
        argv += ["--set", s]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    report = json.loads(out.read_text())
    requests = pd.read_csv(rows)
    span = float(requests.arrival.max() - requests.arrival.min())
    assert check_report(report, arrival_span_s=span,
                        output_tokens=int(requests.output_tokens.clip(lower=1).sum()),
                        input_tokens=int(requests.input_tokens.sum())) == []
    assert len(requests) == report["runs"][0]["metrics"]["requests_completed"] > 0
    assert check_bounds(report, requests) == []
    # no run hits more than an infinite cache of the same requests (prompts and the answers later prompts hold),
    # --trace-stats' serving ceiling: a second derivation, from the trace alone, without the simulator's tiers
    model = next((s.split("=", 1)[1] for s in sets if s.startswith("model=")), "llama-3.1-8b")
    ceiling = _stats(run_cli, tmp_path, shared_data / "traces" / path, limit, model)["infinite_cache_hit_ratio_serving"]
    metrics = report["runs"][0]["metrics"]
    assert metrics["hits"] <= ceiling * metrics["accesses"] * (1 + 1e-12)


def _stats(run_cli, tmp_path, trace, limit: int, model: str = "llama-3.1-8b") -> dict:
    out = tmp_path / "stats.json"
    status, _, err = run_cli("--trace-stats", "--workload-trace", str(trace), "--workload-limit", str(limit),
                             "--set", f"model={model}", "--quiet", "--no-plot", "--report-json", str(out))
    assert status == 0, err[-2000:]
    return json.loads(out.read_text())["runs"][0]["metrics"]


def _prefix_blocks(trace) -> tuple[int, int]:
    """(accesses, distinct blocks) of a trace's prompts, read from the file alone: Mooncake's ``hash_ids`` as given;
    LLMServingSim's token ids in blocks of 16 (vLLM's default block size, config.yaml serving.block_size), a block
    named by the whole prefix it ends (DESIGN: equal hashes mean equal prefixes), its partial last block too."""
    rows = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    if "hash_ids" in rows[0]:
        ids = [h for r in rows[:CACHE_ROWS] for h in r["hash_ids"]]
        return len(ids), len(set(ids))
    keys = [tuple(r["input_tok_ids"][:end]) for r in rows[:CACHE_ROWS]
            for end in range(16, len(r["input_tok_ids"]) + 16, 16)]
    return len(keys), len(set(keys))


CACHE_ROWS = 2000
POLICIES = "lru,fifo,lfu,arc,s3fifo,sieve,belady"


@pytest.mark.parametrize("trace", ["mooncake_conversation.jsonl", "llmservingsim_sharegpt_llama31_8b_300.jsonl"])
@pytest.mark.parametrize("capacity", [64, 1024])
def test_no_policy_beats_belady_or_an_infinite_cache(shared_data, run_cli, tmp_path, trace, capacity):
    """One tier of ``capacity`` blocks, every policy over a real trace's prompts: each hit ratio <= Belady's (it evicts
    the block used farthest ahead: optimal for one cache, Belady 1966) <= an infinite cache's, which misses each
    distinct block once: 1 - distinct / accesses, counted here from the file, and --trace-stats' ceiling too."""
    path = shared_data / "traces" / trace
    accesses, distinct = _prefix_blocks(path)
    infinite = 1 - distinct / accesses
    assert math.isclose(_stats(run_cli, tmp_path, path, CACHE_ROWS)["infinite_cache_hit_ratio"], infinite,
                        rel_tol=1e-12)
    out = tmp_path / "c.json"
    status, _, err = run_cli("--cache-only", "--workload-trace", str(path), "--workload-limit", str(CACHE_ROWS),
                             "--capacity-blocks", str(capacity), "--policy", POLICIES, "--quiet", "--no-plot",
                             "--report-json", str(out))
    assert status == 0, err[-2000:]
    runs = {r["name"]: r["metrics"] for r in json.loads(out.read_text())["runs"]}
    assert {m["accesses"] for m in runs.values()} == {accesses}
    belady = runs["belady"]["hits"]
    assert belady <= accesses - distinct
    for name, m in runs.items():
        assert m["hits"] <= belady, f"{name} {m['hits']} hits > Belady's {belady}"


def _one_request(pd_mode: bool = False, **change) -> tuple[dict, pd.DataFrame]:
    """A hand-made one-instance Llama-3.1-8B run on an H100 within every bound: a 1,000-token prefill (floor 2 x 1,000
    x 6.97e9 / 989.4e12 = 14.1 ms) after a 30 ms load of 1 GB from DRAM (20 ms at 50 GB/s), 9 decode steps of 6 ms
    (floor (15.0e9 + 131,072 x 1,000) / 3.35e12 = 4.52 ms), 10 steps (44.8 ms of weight reads) in 104 ms busy.
    ``pd_mode``: --pd, one prefill and one decode instance; the prompt's 63 blocks of 16 x 131,072 B (132 MB) sent
    over 100 Gb/s in >= 10.6 ms, then a decode step (>= 4.48 ms): TTFT >= 59.2 ms, 70 ms here."""
    row = {"request_id": 0, "instance": 0, "decode_instance": 1 if pd_mode else -1, "arrival": 0.0,
           "input_tokens": 1000, "cached_tokens": 0, "output_tokens": 10, "kv_load_s": 0.03,
           "ttft_s": 0.07 if pd_mode else 0.05, "tpot_s": 0.006, "kv_transfer_bytes": 63 * 16 * 131072 if pd_mode else 0,
           "kv_transfer_s": 0.011 if pd_mode else 0.0}
    tier = {"bytes_read": 1e9, "bytes_written": 2e9}
    each = {"index": 0, "role": "prefill" if pd_mode else "unified", "steps": 10, "busy_fraction": 1.0}
    metrics = {"makespan_s": 0.124 if pd_mode else 0.104, "preemptions": 0, "tiers": {"dram": tier},
               "kv_transfer_bytes": row["kv_transfer_bytes"],
               "instances": {"block_size": 16, "each": [each] + ([{"index": 1, "role": "decode", "steps": 9,
                                                                   "busy_fraction": 0.5}] if pd_mode else [])}}
    for key, value in change.items():
        (row if key in row else tier if key in tier else each)[key] = value
    report = {"mode": "pd" if pd_mode else "single",
              "config": {"hardware": {"gpu": "h100-sxm"}, "model": "llama-3.1-8b",
                         "serving": {"tensor_parallel_size": 1}, "network": {"bandwidth_gbps": 100, "latency_us": 5},
                         "pd": {"transfer": "push"},
                         "cache": {"inclusion": "exclusive", "tiers": {"dram": {"read_gbps": 50}}}},
              "runs": [{"metrics": metrics}]}
    return report, pd.DataFrame([row])


def test_the_floors_are_near_the_published_counts():
    """A loose floor tests little: Llama-3.1-8B's step reads >= 14.9 GB (8.03B bf16 parameters less its 0.53B-parameter
    embedding; the true 16.06 GB less the embedding is 15.01 GB), one H100 step >= 4.5 ms."""
    f = floors("llama-3.1-8b")
    assert 14.9e9 < f.step_bytes < 15.02e9
    assert f.kv_full == 131072  # 32 layers x 8 KV heads x 128 x K,V x 2 B
    assert math.isclose(f.step_bytes / 3.35e12, 4.5e-3, rel_tol=0.05)
    g = floors("gemma-2-9b")  # 21 full and 21 sliding layers of 8 KV heads x 256 x K,V x 2 B; window 4,096
    assert (g.kv_full, g.kv_sliding, g.window) == (21 * 8192, 21 * 8192, 4096)
    assert kv_bytes(g, np.array([10_000]))[0] == 21 * 8192 * (10_000 + 4096)


@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"ttft_s": 0.04}, "TTFT under the floor"),  # the load, then a prefill of 10 ms: under 14.1 ms
    ({"tpot_s": 0.004}, "TPOT under the floor"),
    ({"steps": 30}, "work needs"),  # 30 x 4.48 ms of weight reads
    ({"busy_fraction": 0.4}, "work needs"),  # 41.6 ms busy: under 10 x 4.48 ms
    ({"output_tokens": 10_000}, "work needs"),  # 11,000 x 2 x 6.97e9 FLOPs > 989.4e12 x 0.104 s
    ({"bytes_read": 1e10, "bytes_written": 1e11}, "B read need"),  # 0.2 s at 50 GB/s, loads took 0.03 s
    ({"bytes_written": 5e8}, "more than written"),
])
def test_each_bound_catches_a_result_faster_than_physics(change, message):
    """Each bound fails a hand-made report that breaks it, alone, and a report within them all passes."""
    bad = check_bounds(*_one_request(**change))
    assert bad == [] if message is None else (len(bad) == 1 and message in bad[0]), bad


@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"ttft_s": 0.055}, "TTFT under the floor"),  # the transfer and the first decode step left out
    ({"kv_transfer_s": 0.005}, "kv_transfer_s"),  # 132 MB at 100 Gb/s take 10.6 ms
    ({"kv_transfer_bytes": 62.5 * 16 * 131072}, "not whole blocks"),
])
def test_each_pd_bound_catches_a_result_faster_than_physics(change, message):
    """--pd's transfer floors and byte counts (module docstring), one broken at a time."""
    report, requests = _one_request(pd_mode=True, **change)
    report["runs"][0]["metrics"]["kv_transfer_bytes"] = float(requests.kv_transfer_bytes.sum())
    bad = check_bounds(report, requests)
    assert bad == [] if message is None else (len(bad) == 1 and message in bad[0]), bad
