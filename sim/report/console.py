"""The run summary printed on the terminal (the JSON report holds everything; this is what a person reads first)."""

from __future__ import annotations

PROSE_CHARS = 40  # a text metric longer than this is printed on a line of its own
SHAPE_LINES = ("cluster",)  # metrics of nested counters whose plain numbers still get a line (the fleet's shape)


def console_summary(report: dict) -> str:
    """The report as the terminal shows it: the trace line, each run's metrics a line each, and its caveats."""
    from sim.errors import one_line
    from sim.report.document import answer_caveats

    lines = []
    trace = report.get("trace")
    if trace:
        # (--seeds: the counts are means over the seeds, experiments/confidence.aggregate_trace)
        seeded = " (means over the seeds)" if any("metrics_ci95" in run for run in report["runs"]) else ""
        skipped = ", ".join(f"{k}: {fmt(v)}" for k, v in trace["skip_reasons"].items()) or "none"
        named = one_line(trace["path"] or trace["format"])  # (a path's newline or escape: one line, as errors)
        lines.append(f"trace {named} ({trace['format']}): {fmt(trace['rows_used'])} requests "
                     f"used, {fmt(trace['rows_skipped'])} skipped ({skipped}){seeded}"
                     + (f", {fmt(trace['rows_reordered'])} out of time order (sorted by arrival)"
                        if trace.get("rows_reordered") else "")
                     + f"; block ids: {trace['block_ids']}, {trace['block_tokens']} tokens a block")
    for run in report["runs"]:
        lines.append(f"[{one_line(run['name'])}]")
        for key, value in run["metrics"].items():
            if key == "notes" and isinstance(value, list):
                continue  # said after the metrics, each a caveat line (``answer_caveats``)
            if key == "mrc":
                lines.append(f"  {key:<30} {value['method']} over {value['sampled_accesses']:,} accesses, "
                             f"{len(value['capacity_blocks'])} capacities (see the JSON report / plot)")
            elif isinstance(value, dict):
                if any(isinstance(v, dict) for v in value.values()):
                    if key in SHAPE_LINES:  # the fleet's shape and what the run built (``instances`` counts only those)
                        lines.append(f"  {key:<30} " + "  ".join(f"{k}={fmt(v)}" for k, v in value.items()
                                                                   if not isinstance(v, (dict, list))))
                    continue  # per-tier counters: JSON report only
                # numbers on the line; a sentence (instances.utilization_basis) on its own line after them, so
                # it does not push the numbers behind it (mfu_mean, mbu_mean) off a terminal's width
                prose = {k: v for k, v in value.items() if isinstance(v, str) and len(v) > PROSE_CHARS}
                inner = "  ".join(f"{k}={fmt(v) if not isinstance(v, list) else f'[{len(v)} entries]'}"
                                  for k, v in value.items() if k not in prose)
                lines.append(f"  {key:<30} {inner}")
                lines += [f"  {'':<30} {k}: {v}" for k, v in prose.items()]
            else:
                lines.append(f"  {key:<30} {fmt(value)}")
        lines += oversubscribed_tiers(run, report["config"]["cache"]["tiers"])
        lines += [f"  ! {caveat}" for caveat in answer_caveats(run["metrics"])]
    return "\n".join(lines)


def oversubscribed_tiers(run: dict, tiers_config: dict) -> list[str]:
    """A line for each lower tier whose traffic exceeded a bandwidth the run did not queue for (a copy
    without a shared device: loads of different readers, and writes, are not queued): its load times are
    optimistic; and for a shared device whose writes exceeded its write bandwidth: its write-back, served in the
    time its reads left, fell behind for good (``sim.cache.tiers.Tier.charge_writes``)."""
    lines = []
    for tier, traffic in run["metrics"].get("tiers", {}).items():
        key = f"cache.tiers.{tier}.shared_read_gbps"
        if "read_utilization_max" not in traffic:
            continue  # a cache-only run's counters: no time
        if run.get("overrides", {}).get(key, tiers_config[tier]["shared_read_gbps"]) is not None:
            share = traffic["write_utilization_max"]  # (its reads queued: their share stays within the device's)
            if share is not None and share > 1:
                lines.append(f"  ! {tier} writes needed {share:.2f}x its write bandwidth (cache.tiers.{tier}.write_gbps)"
                             f" over the run; its write-back, served after its reads, could not keep up (the backlog"
                             f" grew; no demotion was dropped or delayed), so load times are optimistic")
            continue
        for way, who, what in (("read", "readers", "loads of different readers were not queued"),
                               ("write", "writers", "writes took no time")):
            share = traffic[f"{way}_utilization_max"]  # (of its sharers' links together: sim.cache.tiers.tier_traffic)
            if share is not None and share > 1:  # (null: not known, as a NaN step time made it; nothing to flag)
                lines.append(f"  ! {tier} {way}s needed {share:.2f}x its {who}' links (cache.tiers.{tier}.{way}_gbps a "
                             f"link) over the run; {what} ({key} queues both), so load times are optimistic")
    return lines


def fmt(value) -> str:
    """A metric's value on the terminal: thousands separated, floats to 4 decimals (1 when large, 4 significant
    digits past 1e16); a null one (the JSON's null: not known) as the HTML report shows it, a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if abs(value) >= 1e16:  # past a double's 16 significant digits, ',.1f' printed digits it does not hold
            return f"{value:.4g}"
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
