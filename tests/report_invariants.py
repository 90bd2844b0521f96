"""A test helper (not a product feature): the invariants an independent reader expects of any report.

``check_report(report)`` returns a list of violations (empty = the report is consistent); each is derived
from a definition in ../shared/DESIGN.md (Contract: report JSON) or README.md, cited beside its check:

- request conservation: ``rows_read = rows_used + rows_skipped``, ``rows_skipped = sum(skip_reasons)``
  (DESIGN: "rows used/skipped"; README: skips "counted per reason"), and every run completes every used
  request (README Serving: a request a configuration can never run is skipped and counted *before* the run);
- no NaN or inf anywhere in the metrics (they become JSON null: DESIGN's report has numbers; an empty
  distribution is the only null allowed: ``tpot_s`` and ``itl_s`` when no request has two output tokens (the
  run's, and then its ``--max-rate`` brackets')
  (then generated tokens = requests), an instance's MFU/MBU while busy when it never ran a step, README Reports,
  and a ``--max-rate`` search's missing bracket (its note says why) or rates in req/s of a workload with no own rate);
- hits <= accesses, ``hit_ratio = hits / accesses``, per-tier (and per-location) hit ratios sum to it
  (DESIGN: "hits those served from any tier"), every ratio, fraction and utilisation in [0, 1]
  (tier read/write utilisation excepted: README Serving says a share above 1 is reported, by design);
- an instance's MFU and MBU while busy under the roofline backend: bytes are counted as the roofline prices each step
  and FLOPs are model FLOPs, at most the priced ones (README Reports: padding is priced, not counted), and a step lasts
  at least its priced FLOPs at the peak and its bytes at the bandwidth, so
  ``mbu_busy <= 1`` and ``mfu_busy <= 1`` (an FP8 checkpoint's GEMMs run at the GPU's FP8 peak where it has one, while
  MFU is against the BF16 peak: there the bound is their ratio). A profiled backend's times are measured or
  interpolated, so nothing bounds its counted FLOPs per second (``roofline_mfu_bound`` None);
- distributions: ``0 <= p50 <= p90 <= p99 (<= p95 ordering too) <= max`` and ``mean <= max``;
- TTFT breakdown parts >= 0 and summing to ``ttft_s.mean`` (DESIGN: "means; they sum to ttft_s.mean");
- goodput <= completed requests / makespan, ``slo_attainment = goodput * makespan / completed``;
- makespan >= every request's e2e (makespan = last token - first arrival);
- a lower tier's read of a block (README Serving, tier traffic): every TP rank of the reading (front) instance loads
  its own page, so a load reads ``block_bytes x read_copies``, where ``block_bytes`` is the block as the tier stores
  (and writes) it and ``read_copies`` is the TP for MLA's latent (stored once, loaded by every rank: vLLM's
  replicated_layout), else 1 (the stored block is every rank's page already); ``check_report`` derives it from the
  config's model and front TP;
- serving per-tier traffic (single node, PD): a lower tier is read only by the loads of the blocks it serves requests
  at admission (README Serving: loads from a lower tier; ``KVCacheManager.load``), so without preemptions (a
  preempted request loads again) its ``bytes_read = hits x block_bytes x read_copies``, one block's bytes the same for
  every tier (``block_bytes=`` checks that size too); with them, at least that; a Gated DeltaNet hybrid's tier also
  reads the states at its hits' ends, each a state group's unpadded state (``state_bytes``, from the model's shape):
  whole states past the hits' blocks; in the cluster ``fetched_bytes = fetched_blocks x block_bytes x read_copies``;
- cache-only per-tier traffic: a lower tier's ``bytes_read = (hits + prefetches) x block_bytes x read_copies`` (README
  Policy study: bytes moved per tier; a session prefetch reads its blocks out ahead of their use), with either access
  semantics: ``plain`` reads each block where its lookup finds it; ``prefix`` (vLLM) reads each hit of a request's
  cached prefix out of the tier its lookup found it in, once, and nothing past the first miss (recomputed), whatever
  the request's own touches move afterwards; ``tier_hit_ratio.<t> = tiers.<t>.hits / accesses``;
- timeseries: arrivals and completions each sum to the completed requests;
- TTFT <= E2E for each request, so for their means, percentiles and maxima;
- ``--max-rate`` (README Max rate): the answer and its brackets are the highest meeting and lowest failing steps of
  the search, within its tolerance of each other, at one base rate;
- ``--seeds`` intervals (``metrics_ci95``, README Confidence): each holds its metric's mean, none reaches below 0,
  and a fraction of a whole's (hit ratios, ``slo_attainment``, busy and KV-usage fractions) none above 1.
Optional arguments add what the report alone cannot know (the workload's arrival span and token totals).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

REL = 1e-9  # float sums of ~1e3 terms; far below any real inconsistency
RATIO_KEYS = ("hit_ratio", "token_hit_ratio", "slo_attainment", "busy_fraction", "busy_fraction_mean", "mfu",
              "mfu_mean", "mbu", "mbu_mean", "kv_usage_mean", "kv_usage_peak", "kv_usage_max", "kv_usage",
              "busy_fraction_while_busy")
ADMISSION_SKIPS = ("exceeds_max_model_len", "exceeds_kv_capacity")  # sim/serving/run.py admit()
BREAKDOWN = ("queue", "kv_load", "prefill", "kv_transfer", "first_decode")


def _close(a: float, b: float, rel: float = REL, abs_: float = 1e-12) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _walk(value: Any, path: str):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def _distributions(metrics: dict, path: str = ""):
    for key, value in metrics.items():
        if isinstance(value, dict):
            name = f"{path}.{key}" if path else key
            if "p50" in value and "p90" in value:
                yield name, value
            else:
                yield from _distributions(value, name)


def check_run(metrics: dict[str, Any], trace: dict[str, Any] | None, mode: str, *,
              arrival_span_s: float | None = None, output_tokens: int | None = None,
              input_tokens: int | None = None, means: bool = False, kv_copies: Fraction | int = 1,
              read_copies: int = 1,
              block_bytes: int | None = None, states: bool = False, state_bytes: int | None = None,
              sliding: bool = False,
              roofline_mfu_bound: float | None = None) -> list[str]:
    bad: list[str] = []
    serving = mode != "cache-only"
    # no NaN / inf (null in JSON)
    for path, value in _walk(metrics, ""):
        idle = (path.startswith("instances.each[") and path.endswith(("mfu_busy", "mbu_busy"))
                and metrics["instances"]["each"][int(path[len("instances.each["):].split("]")[0])]["steps"] == 0)
        # --max-rate (README Max rate; experiments/maxrate.max_rate_run): a search in which every rate tried meets
        # (or none does) has no failing (meeting) bracket, and says so in its note; a workload arriving all at once
        # has no own rate, so no rate in req/s anywhere in the search
        search = metrics.get("max_rate_search") or {}
        unbracketed = path in ("max_rate_search.meets", "max_rate_search.fails") and "note" in search
        no_rate = ((path == "max_rate_rps" or (path.startswith("max_rate_search.") and path.endswith(".rate_rps")))
                   and metrics.get("max_rate_rps") is None)
        # a --max-rate bracket's token gaps: the same requests at another rate, undefined where the run's are
        bracket_gaps = (path.startswith(("max_rate_search.meets.", "max_rate_search.fails."))
                        and path.split(".")[2] in ("tpot_s", "itl_s") and metrics.get("tpot_s", {}).get("mean") is None)
        if (value is None and not path.startswith(("tpot_s.", "itl_s.")) and not idle  # idle: no busy time, undefined
                and not unbracketed and not no_rate and not bracket_gaps):
            bad.append(f"{path} is null (NaN or inf)")
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{path} = {value}")
    if trace is not None and "requests_completed" in metrics:  # (--seeds: both are means over the seeds)
        if not (_close(metrics["requests_completed"], trace["rows_used"]) if means
                else metrics["requests_completed"] == trace["rows_used"]):
            bad.append(f"requests_completed {metrics['requests_completed']} != trace.rows_used {trace['rows_used']}")
    # hits
    acc, hits = metrics.get("accesses"), metrics.get("hits")
    if acc is not None and hits is not None:
        if not 0 <= hits <= acc:
            bad.append(f"hits {hits} not in [0, accesses {acc}]")
        if acc and not means and not _close(metrics["hit_ratio"], hits / acc):
            bad.append(f"hit_ratio {metrics['hit_ratio']} != hits/accesses {hits / acc}")
        for group in ("tier_hit_ratio", "location_hit_ratio"):
            if group in metrics and acc:
                total = sum(v for v in metrics[group].values() if v is not None)
                if not _close(total, metrics["hit_ratio"], abs_=1e-12):
                    bad.append(f"sum of {group} {total} != hit_ratio {metrics['hit_ratio']}")
    cl = metrics.get("cluster")
    if cl and hits is not None and not means:
        total = sum(n for per in cl["hit_blocks"].values() for n in per.values())
        if total != hits:
            bad.append(f"cluster.hit_blocks sum {total} != hits {hits}")
        # README Cluster: blocks and bytes fetched and KV-transferred by scope, of the same blocks
        # (block_bytes: a block as a lower tier stores it, every rank's page, MLA's latent once.) A KV transfer sends
        # every decode rank's page: with MLA each rank holds the whole latent and receives its own copy
        # (sim/serving/run.py), a KV head replicated on several ranks (TP above the KV-head count) is received by
        # each, so kv_transfer_bytes = blocks x block_bytes x kv_copies (check_report: the decode role's pages over
        # the front role's). A Gated DeltaNet hybrid's (``states``; README Cluster) fetch counts each state group's
        # state it moves as a fetched block. vLLM raises the attention block size until one rank's attention page
        # holds one rank's state (``Platform._align_hybrid_block_size``), and the state is split over the ranks: a
        # state (every rank's) is at most a block as stored (every rank's page). So 0 < bytes <= blocks x block_bytes
        # (none of either alike); its PD transfer sends the states beside the blocks it counts: bytes >= blocks x
        # block_bytes x copies
        bb = cl["block_bytes"]
        for kind in ("fetched", "kv_transfer"):
            for scope, n in cl[f"{kind}_blocks"].items():
                sent, exact = cl[f"{kind}_bytes"][scope], n * bb * (kv_copies if kind == "kv_transfer" else read_copies)
                if states:
                    if not ((n == 0) == (sent == 0) and sent <= exact if kind == "fetched"
                            else sent >= exact):
                        bad.append(f"cluster.{kind}_bytes.{scope} {sent} outside what {n} blocks and their states "
                                   f"can take")
                elif sent != exact:
                    copies = kv_copies if kind == "kv_transfer" else read_copies
                    bad.append(f"cluster.{kind}_bytes.{scope} != {kind}_blocks x block_bytes"
                               + (f" x {copies} copies" if copies != 1 else ""))
        if sum(cl["kv_transfer_bytes"].values()) != metrics.get("kv_transfer_bytes", 0):
            bad.append(f"cluster.kv_transfer_bytes sum {sum(cl['kv_transfer_bytes'].values())} != kv_transfer_bytes "
                       f"{metrics.get('kv_transfer_bytes', 0)}")
        # every hit block in a lower tier is read out of it at least once (preemptions read again)
        for tier, per in cl["hit_blocks"].items():
            least = sum(per.values()) * bb * read_copies
            if tier in metrics.get("tiers", {}) and metrics["tiers"][tier]["bytes_read"] < least:
                bad.append(f"tiers.{tier}.bytes_read {metrics['tiers'][tier]['bytes_read']} < its hit blocks x "
                           f"block_bytes x read_copies {least}")
    # serving, not cluster (whose fetches also read): bytes read out of a lower tier are the blocks it served
    # (``sliding``: vLLM's hybrid manager, README Configuration: a sliding copy loaded from a lower tier counts in its
    # bytes_read, while tier_hit_ratio counts the full-attention group's blocks; ``states``: a Gated DeltaNet hybrid's
    # states loaded beside the hit's blocks count there too, each its own unpadded bytes (``state_bytes``, a state
    # group's layers' states, every rank's: vLLM's offloading connector copies a MambaSpec page without its padding),
    # so without preemptions a tier's bytes past its hits' blocks are whole states; a tier serving hits is still read)
    if block_bytes is not None:
        block_bytes *= read_copies  # what one load of a block reads (every rank's page; MLA's latent once per rank)
    if (sliding or states) and serving and not cl and not means and acc and "tiers" in metrics \
            and "tier_hit_ratio" in metrics:
        for name, t in metrics["tiers"].items():
            served = round(metrics["tier_hit_ratio"].get(name, 0.0) * acc)
            if served and not t["bytes_read"]:
                bad.append(f"tiers.{name} served hits but read no byte")
            beside = t["bytes_read"] - served * block_bytes if states and block_bytes is not None else 0
            if beside < 0 or (state_bytes and not metrics.get("preemptions", 0) and beside % state_bytes):
                bad.append(f"tiers.{name}.bytes_read {t['bytes_read']} is not its {served} hits x {block_bytes} "
                           f"plus whole states of {state_bytes}")
    elif serving and not cl and not means and acc and "tiers" in metrics and "tier_hit_ratio" in metrics:
        preempted = metrics.get("preemptions", 0) > 0
        per_hit: dict[int, str] = {}
        for name, t in metrics["tiers"].items():
            served = round(metrics["tier_hit_ratio"].get(name, 0.0) * acc)
            read = t["bytes_read"]
            if block_bytes is not None and (read < served * block_bytes or (not preempted and read != served * block_bytes)):
                bad.append(f"tiers.{name}.bytes_read {read} {'<' if preempted else '!='} its hits {served} x block_bytes "
                           f"{block_bytes}")
            elif not preempted and (read % served if served else read):
                bad.append(f"tiers.{name}.bytes_read {read} is not a whole number of blocks per hit ({served} hits)")
            elif not preempted and served:
                per_hit.setdefault(read // served, name)
        if len(per_hit) > 1:
            bad.append(f"tiers' bytes_read per hit differ: {per_hit} (one block's bytes each)")
    # ratios in [0, 1]
    for path, value in _walk(metrics, ""):
        leaf = path.rsplit(".", 1)[-1].split("[")[0]
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        is_ratio = (leaf in RATIO_KEYS or parent.split(".")[-1] in ("tier_hit_ratio", "location_hit_ratio",
                    "rack_hit_ratio") or (parent.endswith("eic_occupancy") and leaf in ("mean", "max"))
                    or path.startswith("timeseries.kv_usage"))
        if is_ratio and isinstance(value, (int, float)) and not 0 <= value <= 1 + 1e-12:
            bad.append(f"{path} = {value} not in [0, 1]")
        if leaf.endswith("_utilization_max") and isinstance(value, (int, float)) and value < 0:
            bad.append(f"{path} = {value} < 0")
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0
                and not path.startswith(("config",)) and leaf not in ("index",)):
            bad.append(f"{path} = {value} < 0")
    if roofline_mfu_bound is not None:  # the roofline's step times bound its own counts (module docstring)
        for e in (metrics.get("instances") or {}).get("each", []):
            for key, bound in (("mfu_busy", roofline_mfu_bound), ("mbu_busy", 1.0)):
                if e.get(key) is not None and e[key] > bound * (1 + 1e-12):
                    bad.append(f"instances.each[{e['index']}].{key} = {e[key]} > {bound} (roofline backend)")
    # distributions
    for name, d in _distributions(metrics):
        keys = [k for k in ("p50", "p90", "p95", "p99", "max") if d.get(k) is not None]
        values = [d[k] for k in keys]
        if any(a > b * (1 + 1e-12) + 1e-15 for a, b in zip(values, values[1:])):
            bad.append(f"{name} percentiles out of order: {dict(zip(keys, values))}")
        if d.get("max") is not None and d.get("mean") is not None and d["mean"] > d["max"] * (1 + 1e-12):
            bad.append(f"{name}.mean {d['mean']} > max {d['max']}")
    # each request's first token comes no later than its last (TTFT <= E2E), so every order statistic, and so every
    # percentile interpolated between the same ranks, and the mean and max keep that order (a mean over seeds too)
    ttft, e2e = metrics.get("ttft_s") or {}, metrics.get("e2e_s") or {}
    for k in ("mean", "p50", "p90", "p95", "p99", "max"):
        if ttft.get(k) is not None and e2e.get(k) is not None and ttft[k] > e2e[k] * (1 + 1e-12) + 1e-15:
            bad.append(f"ttft_s.{k} {ttft[k]} > e2e_s.{k} {e2e[k]}")
    search = metrics.get("max_rate_search")
    if search and not means:
        bad.extend(_check_search(metrics, search))
    if serving and "ttft_breakdown_s" in metrics and metrics.get("ttft_s", {}).get("mean") is not None:
        parts = metrics["ttft_breakdown_s"]
        for k in BREAKDOWN:
            if parts[k] is None or parts[k] < -1e-12:
                bad.append(f"ttft_breakdown_s.{k} = {parts[k]} < 0")
        total = sum(parts[k] or 0.0 for k in BREAKDOWN)
        if not _close(total, metrics["ttft_s"]["mean"], rel=1e-9):
            bad.append(f"ttft_breakdown_s sums to {total}, ttft_s.mean is {metrics['ttft_s']['mean']}")
    makespan = metrics.get("makespan_s")
    if serving and makespan is not None:
        done = metrics["requests_completed"]
        if metrics.get("e2e_s", {}).get("p99") is not None and metrics["e2e_s"]["p99"] > makespan * (1 + 1e-12):
            bad.append(f"e2e_s.p99 {metrics['e2e_s']['p99']} > makespan {makespan}")
        if arrival_span_s is not None and makespan < arrival_span_s * (1 - 1e-12):
            bad.append(f"makespan {makespan} < arrival span {arrival_span_s}")
        if "goodput_rps" in metrics and makespan > 0 and not means:
            if metrics["goodput_rps"] > done / makespan * (1 + 1e-12):
                bad.append(f"goodput_rps {metrics['goodput_rps']} > completed/makespan {done / makespan}")
            if not _close(metrics["goodput_rps"] * makespan, metrics["slo_attainment"] * done, rel=1e-9):
                bad.append("goodput_rps x makespan != slo_attainment x requests_completed")
        if output_tokens is not None and makespan > 0:
            if not _close(metrics["throughput_tokens_per_s"] * makespan, output_tokens, rel=1e-9):
                bad.append(f"throughput x makespan {metrics['throughput_tokens_per_s'] * makespan} != output tokens "
                           f"{output_tokens}")
            if input_tokens is not None and not _close(metrics["total_throughput_tokens_per_s"] * makespan,
                                                       output_tokens + input_tokens, rel=1e-9):
                bad.append("total_throughput x makespan != input + output tokens")
        if (metrics.get("tpot_s", {}).get("mean") is None and makespan > 0 and not means
                and not _close(metrics["throughput_tokens_per_s"] * makespan, done, rel=1e-9)):
            bad.append("tpot_s is null but some request generated two tokens or more")
        if ("kv_transfer_s" in metrics) != (metrics.get("kv_transfer_bytes", 0) > 0):
            bad.append("kv_transfer_s present iff kv_transfer_bytes > 0 does not hold")
        ts = metrics.get("timeseries")
        if ts:
            for key in ("arrivals", "completions"):
                if sum(ts[key]) != done and not means:
                    bad.append(f"timeseries.{key} sums to {sum(ts[key])}, requests_completed is {done}")
    if not serving and acc and "tiers" in metrics:
        bb = metrics.get("block_bytes")
        for name, t in metrics["tiers"].items():
            # --seeds: a mean ratio is not the ratio of the means (as for hit_ratio above)
            if not means and not _close(metrics["tier_hit_ratio"][name], t["hits"] / acc, abs_=1e-12):
                bad.append(f"tier_hit_ratio.{name} != tiers.{name}.hits / accesses")
            # a lower tier is read for each block it serves (a hit; with prefix semantics only the hits of the cached
            # prefix, where the lookup found them) and each it sends up ahead of its use (cache.prefetch: session)
            moved = t["hits"] + t.get("prefetches", 0)
            if name != "hbm" and bb is not None and t["bytes_read"] != moved * bb * read_copies:
                bad.append(f"tiers.{name}.bytes_read {t['bytes_read']} != (hits + prefetches) x block_bytes x "
                           f"read_copies {moved * bb * read_copies} ({metrics.get('access_semantics', 'plain')} "
                           "semantics)")
    return bad


def _check_search(metrics: dict[str, Any], search: dict[str, Any]) -> list[str]:
    """A --max-rate search (README Max rate): the answer is the highest rate scale tried whose share of requests
    meeting the SLO is at least the target, bracketed by the lowest failing one above it within the tolerance
    (doubling, then bisecting); re-derived from the search's own steps, [scale, attainment] each."""
    bad = []
    target, steps = search["target_attainment"], search["steps"]
    met = [scale for scale, share in steps if share >= target]
    failed = [scale for scale, share in steps if share < target]
    meets, fails = search.get("meets"), search.get("fails")
    if (meets is None) != (not met) or (meets is not None and meets["rate_scale"] != max(met)):
        bad.append(f"max_rate_search.meets {meets and meets['rate_scale']} is not the highest meeting step {met}")
    if (fails is None) != (not failed) or (fails is not None and fails["rate_scale"] != min(failed)):
        bad.append(f"max_rate_search.fails {fails and fails['rate_scale']} is not the lowest failing step {failed}")
    if meets is not None:
        if meets["slo_attainment"] < target:
            bad.append(f"max_rate_search.meets.slo_attainment {meets['slo_attainment']} < target {target}")
        if metrics["max_rate_scale"] != meets["rate_scale"] or metrics["slo_attainment"] != meets["slo_attainment"]:
            bad.append("the reported run is not the meeting bracket's (max_rate_scale, slo_attainment)")
    if fails is not None and fails["slo_attainment"] >= target:
        bad.append(f"max_rate_search.fails.slo_attainment {fails['slo_attainment']} >= target {target}")
    if meets is not None and fails is not None and meets["rate_scale"] < fails["rate_scale"] and \
            fails["rate_scale"] / meets["rate_scale"] - 1 > search["tolerance"] * (1 + 1e-9):
        bad.append(f"max_rate_search brackets {meets['rate_scale']}, {fails['rate_scale']} wider than the tolerance")
    rates = [(b["rate_rps"], b["rate_scale"]) for b in (meets, fails) if b and b.get("rate_rps") is not None]
    if metrics.get("max_rate_rps") is not None and metrics["max_rate_scale"]:
        rates.append((metrics["max_rate_rps"], metrics["max_rate_scale"]))
    bases = [rps / scale for rps, scale in rates if scale]
    if any(not _close(b, bases[0]) for b in bases):
        bad.append(f"max_rate_search: rate_rps / rate_scale differ between the brackets and the answer: {rates}")
    return bad


def _is_pd(report: dict[str, Any]) -> bool:
    """Whether ``report`` is of a PD run: ``--pd``, or ``--cluster --pd`` (mode ``cluster``, its instances in roles)."""
    if report.get("mode") == "pd":
        return True
    return any(each.get("role") in ("prefill", "decode") for run in report.get("runs", [])
               for each in ((run.get("metrics") or {}).get("instances") or {}).get("each", []))


def _role_tp(report: dict[str, Any], role: str) -> int:
    """The TP of a PD run's ``role`` instances: ``pd.<role>_tensor_parallel_size`` where set, else, as in every other
    mode (which reads no pd key, though a config file or overlay may carry them), the run's
    ``serving.tensor_parallel_size``."""
    config = report.get("config") or {}
    serving_tp = (config.get("serving") or {}).get("tensor_parallel_size", 1)
    if not _is_pd(report):
        return serving_tp
    return (config.get("pd") or {}).get(f"{role}_tensor_parallel_size") or serving_tp


def check_report(report: dict[str, Any], **expect: Any) -> list[str]:
    """Every violation in ``report`` (a loaded ``--report-json``), each prefixed with its run's name."""
    bad: list[str] = []
    trace = report.get("trace")
    config = report.get("config") or {}
    # the decode ranks receive the KV (README: kv_transfer_bytes counts every decode rank's shard): their TP is
    # pd.decode_tensor_parallel_size where given (--pd, --cluster --pd), else serving.tensor_parallel_size
    decode_tp = _role_tp(report, "decode")
    if config.get("model") and decode_tp > 1:
        from sim.specs import model_spec  # the model's shape (profiles/models.yaml), not a simulated result

        # block_bytes is a block as the front (prefill) instances store it in a lower tier: every rank's page, a KV
        # head replicated past the head count once per rank holding it (vLLM QKVParallelLinear: num_kv_head_replicas
        # = divide(tp_size, total_num_kv_heads)), so max(heads, tp) head pages; MLA's latent once. The decode ranks
        # receive max(heads, decode tp) head pages, MLA's latent each
        model = model_spec(config["model"])
        front_tp = _role_tp(report, "prefill")
        if model.is_mla and not model.is_sparse_attention:
            copies = Fraction(decode_tp)
        elif model.is_mla:
            copies = Fraction(decode_tp, front_tp)
        else:
            copies = Fraction(max(model.num_kv_heads, decode_tp), max(model.num_kv_heads, front_tp))
        if copies != 1:
            expect = {**expect, "kv_copies": copies}
    if config.get("model"):
        from sim.specs import model_spec

        # a lower tier's block is loaded by every rank of the front (prefill) instances: MLA's latent, stored once, is
        # read once per rank (README Serving, tier traffic; vLLM CanonicalPageMapping: every rank loads the page)
        model = model_spec(config["model"])
        front_tp = _role_tp(report, "prefill")
        if model.is_mla and not model.is_sparse_attention and front_tp > 1:
            expect = {**expect, "read_copies": front_tp}

        if model_spec(config["model"]).linear_attention is not None:  # Gated DeltaNet states travel with blocks
            expect = {**expect, "states": True, "state_bytes": _stored_state_bytes(config)}
        if model_spec(config["model"]).is_hybrid_attention and \
                not config.get("serving", {}).get("disable_hybrid_kv_cache_manager", False):
            expect = {**expect, "sliding": True}  # sliding copies read beside the hits' blocks
        if (config.get("compute") or {}).get("backend", "roofline") == "roofline":
            from sim.specs import gpu_spec

            gpu = gpu_spec(config.get("hardware", {}).get("gpu", "h100-sxm"))
            fp8 = model_spec(config["model"]).weight_quantization == "fp8" and gpu.fp8_peak_flops
            expect = {**expect, "roofline_mfu_bound": gpu.fp8_peak_flops / gpu.peak_flops if fp8 else 1.0}
    # --seeds N: the trace's counts are means over the seeds too (README Confidence), sums of float means
    seeded = any("metrics_ci95" in run for run in report["runs"])
    same = (lambda a, b: _close(a, b)) if seeded else (lambda a, b: a == b)
    if trace and trace.get("request_range"):
        # workload.range_start/end keep requests [lo, hi) of the valid ones (trace.request_range); the rest are
        # neither used nor skipped. Of [lo, hi), only the serving admission skips (README Serving) leave.
        lo, hi = trace["request_range"]
        admitted_out = sum(n for r, n in trace["skip_reasons"].items() if r in ADMISSION_SKIPS)
        if not same(trace["rows_used"] + admitted_out, hi - lo):
            bad.append(f"trace: rows_used {trace['rows_used']} + admission skips {admitted_out} != request_range "
                       f"size {hi - lo}")
        valid = trace["rows_read"] - trace["rows_skipped"] + admitted_out
        if hi > valid and not same(hi, valid):
            bad.append(f"trace: request_range ends at {hi}, past the valid rows")
    elif trace:
        if not same(trace["rows_read"], trace["rows_used"] + trace["rows_skipped"]):
            bad.append(f"trace: rows_read {trace['rows_read']} != used {trace['rows_used']} + skipped "
                       f"{trace['rows_skipped']}")
        if not same(sum(trace["skip_reasons"].values()), trace["rows_skipped"]):
            bad.append(f"trace: skip_reasons sum {sum(trace['skip_reasons'].values())} != rows_skipped "
                       f"{trace['rows_skipped']}")
    for run in report["runs"]:
        if "mrc" in run["metrics"]:
            bad.extend(f"{run['name']}: {v}" for v in check_mrc(run["metrics"]))
            continue
        if "metrics_ci95" in run:
            # --seeds N: metrics are per-seed means (README Confidence), so ratios of means (hits / accesses,
            # completed / makespan) need not equal the mean ratios; ranges, orderings and finiteness still hold
            expect = {**expect, "means": True}
        bad.extend(f"{run['name']}: {v}" for v in check_run(run["metrics"], trace, report["mode"], **expect))
        if "metrics_ci95" in run:
            bad.extend(f"{run['name']}: {v}" for v in check_intervals(run["metrics"], run["metrics_ci95"]))
    return bad


FRACTIONS = ("hit_ratio", "token_hit_ratio", "slo_attainment", "busy_fraction", "busy_fraction_mean",
             "busy_fraction_while_busy", "kv_usage", "kv_usage_mean", "kv_usage_peak", "kv_usage_max")


def check_intervals(metrics: dict[str, Any], ci: dict[str, list[float]]) -> list[str]:
    """``--seeds N`` intervals (README Confidence): each holds its metric's mean (the mean of the seeds), is not below
    0 (no metric kvsim reports can be negative) and, for a fraction of a whole (hit ratios, ``slo_attainment``, busy
    and KV-usage fractions, wherever in the report they are: a ``--max-rate`` bracket's too; a rack's EIC occupancy),
    not above 1."""
    bad = []
    for name, (lo, hi) in ci.items():
        value: Any = metrics
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            bad.append(f"metrics_ci95.{name} has no number in metrics ({value!r})")
            continue
        if not lo - 1e-12 * abs(lo) <= value <= hi + 1e-12 * abs(hi):
            bad.append(f"metrics_ci95.{name} [{lo}, {hi}] does not hold its mean {value}")
        if lo < 0:
            bad.append(f"metrics_ci95.{name} [{lo}, {hi}] reaches below 0")
        parts = name.split(".")
        fraction = parts[-1] in FRACTIONS or (len(parts) > 1 and (
            parts[-2] in ("tier_hit_ratio", "location_hit_ratio", "rack_hit_ratio")
            or (parts[-2] == "eic_occupancy" and parts[-1] in ("mean", "max"))))
        if fraction and hi > 1 + 1e-12:
            bad.append(f"metrics_ci95.{name} [{lo}, {hi}] reaches above 1 (a fraction of a whole)")
    return bad


def _stored_state_bytes(config: dict[str, Any]) -> int:
    """One state group's state as a lower tier stores it, from the model's shape: each of the group's Gated DeltaNet
    layers' conv and recurrent states, unpadded, every TP rank's share (README: 13,172,736 B for Qwen3-Next). A
    group's layers: vLLM's _get_kv_cache_groups_uniform_page_size splits both kinds into groups of the smaller
    layer count, or of the larger when it is under 1.5 times the smaller."""
    from sim.model_shape import DTYPE_BYTES
    from sim.specs import model_spec

    spec = model_spec(config["model"])
    gdn = spec.linear_attention
    small, large = sorted((spec.attention_layers, gdn.layers))
    layers = large if large < 1.5 * small else small
    return layers * gdn.state_bytes(DTYPE_BYTES[config.get("serving", {}).get("dtype", "bf16")])


def check_mrc(metrics: dict[str, Any]) -> list[str]:
    """An LRU miss-ratio curve (README: hit ratio at every capacity): capacities increasing, hit ratios in
    [0, 1] and non-decreasing (LRU's inclusion property)."""
    curve = metrics["mrc"]
    caps, ratios = curve["capacity_blocks"], curve["hit_ratio"]
    bad = []
    if len(caps) != len(ratios):
        bad.append("mrc: capacity_blocks and hit_ratio differ in length")
    if any(b <= a for a, b in zip(caps, caps[1:])):
        bad.append("mrc: capacities not increasing")
    if any(r is None or not 0 <= r <= 1 for r in ratios):
        bad.append("mrc: a hit ratio outside [0, 1] or null")
    if any(b is not None and a is not None and b < a - 1e-12 for a, b in zip(ratios, ratios[1:])):
        bad.append("mrc: hit ratio decreases with capacity")
    return bad
