"""The planner (``--plan PLAN.yaml``): the least-cost configuration that meets a target.

A plan names a workload, a search space (GPU types, GPU counts, tensor parallelism,
prefill:decode splits, tier capacities; or, for a fleet, racks and nodes per rack) and one
target: a hit ratio, or latency SLOs
(``slo.ttft_s``/``slo.tpot_s`` at ``slo.attainment``, e.g. 0.99 for a p99 target) at a
request rate. Every candidate gets a cost from ``profiles/prices.yaml`` (overridable in
the plan). Then:

1. The one-pass LRU miss-ratio curve of the workload's block stream (``lru_mrc``), looked up
   as the candidates' runs look blocks up (serving runs by prefix; cache-only replays as
   ``cache.access_semantics`` says: ``run_semantics``), prunes
   tier capacities before any timing run: a pricier tier mix is dropped when, at every
   tier level (HBM, +DRAM, +SSD, +EIC), its curve hit ratio is no more than ``mrc_epsilon``
   above a cheaper mix's. For a hit-ratio target with exclusive LRU tiers the curve is
   exact under either semantics (an exclusive LRU hierarchy holds the most recent blocks of one LRU stack:
   ``mrc_is_exact``), so candidates whose curve misses the target are dropped too. A fleet's candidates (``search.racks``
   / ``search.nodes_per_rack``: cluster mode, racks x nodes x ``hardware.gpus_per_node`` GPUs,
   DRAM/SSD per node, EIC per rack) are pruned the same way on their fleet-wide capacities,
   never against the target: routing splits the stream over many caches, so the curve is a guide.
2. The rest are run (in parallel, on the sweep runner): a max-rate search each for an
   SLO target, a cache-only replay each for a hit-ratio target. When none meets the target and the curve is not
   exact (any SLO target; a hit-ratio target of serving or fleet runs), the pruned ones run the same way, cheapest
   first, until one meets, at most ``MAX_REVISITS`` of them (``revisit_pruned``); one that runs is timed.
3. The Pareto front (cost vs max rate, or vs hit ratio), the cheapest candidate that
   meets the target, and the runs that prove the boundary: that candidate run at the
   target (meets) and the cheaper timed candidate nearest the target (highest max rate) run at it (fails). A fleet's
   hit ratio comes from its serving run (cluster mode has no cache-only replay). A candidate whose runs could not
   run every request (``exceeds_kv_capacity``: its instances hold fewer KV blocks than a request needs) is no answer.

``experiments.plan_file`` reads and validates the plan, ``experiments.plan_candidates`` enumerates
and prunes the candidates (step 1); this module runs them and reports (2, 3), ``experiments.plan_proof`` proves the
choice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import TYPE_CHECKING

from experiments.execute import RunOptions, check_learned_points, check_point, refuse_unread
from experiments.outputs import write_csv, write_json
from experiments.plan_candidates import (
    Candidate,
    curve_groups,
    enumerate_candidates,
    mrc_is_exact,
    mrc_levels,
    prune_with_mrc,
)
from experiments.plan_checks import (
    candidate_modes,
    check_not_searched,
    check_prices_read,
    check_settings_read,
    check_target_scale,
    given_settings,
)
from experiments.plan_file import load_plan, plan_error
from experiments.plan_proof import (
    UNSERVED_REASON,
    cost_order,
    pareto,
    prove_hit,
    prove_slo,
    reaches_rate,
    revisit_pruned,
    take_record,
)
from experiments.prices import load_prices
from experiments.runner import Task, default_jobs, run_task, run_tasks, runs_on
from experiments.spec import check_inputs_spared, resolve_layers
from sim.config import Config, replace
from sim.errors import ConfigError, lines_escaped, one_line
from sim.mode_settings_rules import learned_tier_policies
from sim.report.document import build_report

if TYPE_CHECKING:  # the command line's checked output paths
    from sim.cli_outputs import Outputs


def _run(tasks: list[Task], givens: dict[str, dict[str, str]], path, args: argparse.Namespace) -> dict[str, dict]:
    """Each candidate's record; a setting given to the plan that no candidate reads once the workload is loaded is
    refused, as a lone run and a sweep refuse it (``experiments.sweep.run_reading_points``)."""
    from experiments.sweep import run_reading_points

    records: dict[str, dict] = {}
    run_reading_points(tasks, givens, records, lambda r: records.__setitem__(r["key"], r), f"plan {path}",
                       lambda todo, done: run_tasks(todo, done, backend=args.backend or "local",
                                                    jobs=args.jobs or default_jobs(), ray_address=args.ray_address),
                       points_named="candidate of the plan")
    return records


def run_plan(args: argparse.Namespace, outputs: Outputs) -> int:
    """The ``--plan`` command."""
    from sim.report.outputs import NO_PLOT_NOTE, render_outputs
    from sim.serving.engine_limits import block_size
    from trace.workload import load_workload

    start = time.perf_counter()
    plan = load_plan(args.plan)
    modes = candidate_modes(plan)
    base = resolve_layers(plan.layers, args, modes[0])  # --preset P: P@<the candidates' mode> too
    per_mode = [f"{args.preset}@{m}" for m in modes if f"{args.preset}@{m}" in base.presets] if args.preset else []
    if len(modes) > 1 and per_mode:
        raise plan_error(plan.path, f"--preset {args.preset}: its part {per_mode[0]} applies to {per_mode[0].split('@')[1]} "
                                    f"runs only, and this plan's candidates run in modes {' and '.join(modes)} (search.pd_split): "
                                    f"plan the aggregated and the disaggregated splits apart")
    hit_target = plan.hit_ratio
    if hit_target is None:
        slo = {k: v for k, v in plan.slo.items() if v is not None}
        base = replace(base, **{f"slo.{k}": v for k, v in slo.items()})
    prices = load_prices(plan.prices, source=f"plan {plan.path}")
    candidates = enumerate_candidates(plan, base, prices)
    check_not_searched(plan, candidates, args)
    check_prices_read(plan, candidates)
    check_settings_read(plan, args, base)
    options = RunOptions(max_rate=hit_target is None, tolerance=plan.rate_tolerance)
    given = {key: said for said, key in given_settings(plan, args)}
    givens = {c.name: {**learned_tier_policies(c.config, built_too=True), **given}  # (check_point's: a file's too)
              for c in candidates if c.status != "infeasible"}
    from sim.mode_settings import setting_users

    checked = [c for c in candidates if c.status != "infeasible"]
    refuse_unread([(givens[c.name],
                    check_point(c.mode, c.config, options, where=f"plan {plan.path}: candidate {c.name}", given=given))
                   for c in checked],  # (a key one mode alone reads, unread by that mode's candidates: refused too)
                  [[key for key in given if setting_users(key, c.mode) is not None] for c in checked])
    check_inputs_spared(plan.layers, [base, *(c.config for c in candidates if c.config is not None)], outputs,
                        ("--plan", plan.path))
    check_learned_points([(f"plan {plan.path}: candidate {c.name}", c.mode, c.config) for c in candidates
                          if c.status != "infeasible"], options)  # (may load the workload: writes its cache)

    trace = load_workload(replace(base, **{"workload.rate_scale": 1.0}))
    if base.slo.tpot_s is not None and hit_target is None and not (trace.output_tokens > 1).any():
        # (a run's own check, sim.report.metrics.check_tpot_target_read, leaves it unread at each candidate: dropped)
        named = "'target.slo.tpot_s'" if plan.slo.get("tpot_s") is not None else given.get("slo.tpot_s")
        if named is None:  # a config file's: left unread, as a run leaves a file's keys (and not said as a target)
            base = replace(base, **{"slo.tpot_s": None})
        else:
            raise plan_error(plan.path, f"{named} {base.slo.tpot_s:g} judges nothing: no request of "
                                        f"{base.workload.trace or 'the synthetic workload'} generates more than one "
                                        "token, so none has a TPOT")
    duration = float(trace.arrival_s[-1] - trace.arrival_s[0]) if len(trace) else 0.0
    base_rate = len(trace) / duration if duration > 0 else None
    target_rate = target_scale = None
    if hit_target is None:
        if base_rate is None:
            raise plan_error(plan.path, "the workload's requests all arrive at once: its rate, and so a target rate, is undefined")
        target_rate = plan.rate_rps or base_rate * base.workload.rate_scale
        target_scale = target_rate / base_rate
        check_target_scale(plan, duration, base_rate, target_rate)
    traces = {block_size(base): trace}
    for (size, _), group in curve_groups(candidates).items():  # each curve in blocks of the size its candidates run
        if size not in traces:  # with, of the lookups they make
            traces[size] = load_workload(replace(group[0].config, **{"workload.rate_scale": 1.0}))
        try:
            mrc_levels(group, traces[size])
        except ConfigError as exc:  # a tier that holds no block of a candidate: the plan's, before any run
            raise plan_error(plan.path, str(exc)) from None
    prune_with_mrc(candidates, plan.mrc_epsilon, hit_target, mrc_is_exact(base, modes[0]))
    pending = [c for c in candidates if c.status == "pending"]
    if not args.quiet:
        pruned, infeasible = (sum(c.status == status for c in candidates) for status in ("pruned", "infeasible"))
        print(one_line(f"plan {plan.path}: {len(candidates)} candidates, {pruned} pruned by the miss-ratio curve, "
                       f"{infeasible} infeasible; running {len(pending)} on "
                       f"{runs_on(args.backend, args.jobs, args.ray_address)}"), file=sys.stderr)

    def task_for(c: Candidate, index: int = 0, refused: tuple[str, ...] = ()) -> Task:
        """A candidate's timing run (a max-rate search, or a replay); one run after the others (``revisit_pruned``)
        refuses no given key: those were read by a candidate of the first runs, or refused there."""
        cfg = c.config if hit_target is not None else replace(c.config, **{"workload.rate_scale": target_scale})
        return Task(c.name, index, c.name, c.mode, cfg, options, c.overrides, refused=refused)

    records = _run([task_for(c, i, tuple(given)) for i, c in enumerate(pending)], givens, plan.path, args)
    measure = "hit_ratio" if hit_target is not None else "max_rate_rps"
    for c in pending:
        take_record(c, records[c.name], measure)

    proven: dict[str, dict] = {}  # an SLO target's proof runs at the target rate, by candidate

    def prove(timed: list[Candidate]) -> tuple[Candidate | None, dict]:
        if hit_target is None:
            return prove_slo(timed, target_scale, base.slo.attainment, proven)
        return prove_hit(candidates, timed, hit_target)

    chosen, proof = prove([c for c in candidates if c.status == "timed"])
    if chosen is None and (hit_target is None or not mrc_is_exact(base, modes[0])):
        reaches = ((lambda c: c.measured is not None and c.measured >= hit_target) if hit_target is not None else
                   (lambda c: reaches_rate(c, target_scale)))
        chosen, proof = revisit_pruned(candidates, lambda c: run_task(task_for(c)), measure, reaches, prove)
    if chosen is not None:
        chosen.chosen = True
    timed = [c for c in candidates if c.status == "timed"]  # (with any the curve pruned that ran after all)
    pareto(timed)

    report = build_report("plan", base, trace.provenance.to_dict(), [], wall_s=time.perf_counter() - start)
    report["runs"] = _runs(candidates, proof, report["trace"])
    target = ({"hit_ratio": hit_target, "access_semantics": _hit_access(plan, base)} if hit_target is not None else
              # (the runs' resolved SLO: a slo.tpot_s under 'set' or from a config file is judged beside the target's)
              {"slo": {k: v for k in ("ttft_s", "tpot_s") if (v := getattr(base.slo, k)) is not None}
                      | {"attainment": base.slo.attainment},
               "rate_rps": target_rate, "rate_scale": target_scale, "workload_rate_rps": base_rate})
    report["plan"] = {
        "plan": str(plan.path), "target": target, "measure": measure, "prices": prices.to_dict(),
        "candidates": [_candidate_entry(c, measure) for c in sorted(candidates, key=cost_order)],
        "pareto": [c.name for c in sorted(timed, key=cost_order) if c.pareto],
        "chosen": _candidate_entry(chosen, measure) if chosen else None,
        "proof": proof,
    }
    notes = []
    if outputs.report_json:
        notes.append(f"report: {write_json(report, outputs.report_json)}")
    if outputs.report_csv:
        layout = (["cluster.num_racks", "cluster.nodes_per_rack"] if plan.fleet else
                  ["serving.num_instances", "pd.num_prefill", "pd.num_decode"])
        leading = ["hardware.gpu", "serving.tensor_parallel_size", *layout,
                   *(f"cache.tiers.{t}.capacity_gib" for t in plan.tiers)]
        notes.append(f"csv: {write_csv(report, outputs.report_csv, leading)}")
    plots = []
    if outputs.plot_dir is not None:
        from sim.report.sweep_plots import plot_pareto  # (matplotlib, ~0.5 s to import: only when plots are drawn)

        y_label = "block hit ratio" if hit_target is not None else "max request rate meeting the SLO (req/s)"
        from sim.report.plots import plot_source

        # the plot's name is the kind's, as every mode's: a second plan into one folder replaced the first's
        # silently (hexplore7); the PNG keeps which plan and report it is of, and a plot of another is said replaced
        pareto_png = outputs.plot_dir / "plan_pareto.png"
        # (the plan (its target, prices and the candidates its search makes) and its resolved config, not the output
        # paths: the same plan and config draw the same bytes; a plan file edited to search or price other GPUs is
        # another plan, and its plot replacing the first's is said)
        searched = [[c["name"], c["overrides"]] for c in report["plan"]["candidates"]]
        digest = hashlib.sha256(json.dumps([report["config"], report["plan"]["target"], report["plan"]["prices"],
                                            searched], sort_keys=True, default=str).encode()).hexdigest()[:12]
        source = f"kvsim --plan {plan.path} ({DIGEST_SAID}{digest})"
        before = plot_source(pareto_png)
        drawn = plot_pareto(report["plan"]["candidates"], hit_target if hit_target is not None else target_rate,
                            pareto_png, measure, y_label, source)
        # (by the digest: the plan's path as given, relative or absolute, is no other plan)
        if drawn is not None and before is not None and before.rpartition(DIGEST_SAID)[2] != f"{digest})":
            notes.append(f"! {pareto_png} held the Pareto plot of another plan or config ({before}): replaced; give "
                         f"each plan its own --plot-dir to keep both")
        plots += [drawn] if drawn is not None else []
        notes += [f"plot: {p}" for p in plots]
        if drawn is None:
            notes.append(f"{NO_PLOT_NOTE}plan_pareto.png: no candidate ran to a {measure} (each pruned, infeasible "
                         f"or failed: the table says why), so there is no point to draw")
    notes += render_outputs(report, [], "plan", outputs.plot_dir, draw_plots=False, html_path=outputs.html, notes=notes)
    if not args.quiet:
        # (a candidate's GPU spec file, a failed run's reason, a report's path: one line each, as errors name them)
        print(lines_escaped(_summary(report["plan"], candidates, chosen)))
        for note in notes:
            print(one_line(note))
    return 0


DIGEST_SAID = "config sha256 "  # in a Pareto plot's Source, before the digest of its plan and config


def _count(n: int, noun: str) -> str:
    """``n`` ``noun``s, one without the s ("1 GPU", not "1 GPUs")."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _candidate_entry(c: Candidate, measure: str) -> dict:
    search = c.metrics.get("max_rate_search") or {}
    # a max rate no rate tried failed: the search's cap, not the candidate's rate (the plot draws it so)
    lower_bound = measure == "max_rate_rps" and search.get("meets") is not None and search.get("fails", 0) is None
    return {"name": c.name, "overrides": c.overrides, "mode": c.mode, "cost_usd_per_hour": c.cost,
            "status": c.status, **({"reason": c.reason} if c.reason else {}),
            "mrc_hit_ratio": list(c.mrc_levels) if c.mrc_levels else None, measure: c.measured,
            **({"lower_bound": True} if lower_bound else {}), "pareto": c.pareto, "chosen": c.chosen}


def _runs(candidates: list[Candidate], proof: dict, trace: dict) -> list[dict]:
    """Report runs: every candidate that ran (its max-rate or replay run), then the proof runs; a run whose trace
    section is not the report's (its candidate could not run some requests) carries its own, as a sweep's point does."""
    runs = []
    for c in sorted(candidates, key=cost_order):
        if c.status == "timed" or (c.status == "infeasible" and c.metrics):
            runs.append({"name": c.name, "overrides": c.overrides,
                         "metrics": {"cost_usd_per_hour": c.cost, **c.metrics},
                         **({"trace": c.trace} if c.trace and c.trace != trace else {})})
    for role in ("meets", "fails"):
        p = proof.get(role)
        if p:
            runs.append({"name": f"proof-{role}: {p['name']}", "overrides": p["overrides"],
                         "metrics": {"cost_usd_per_hour": p["cost_usd_per_hour"], **p["metrics"]}})
    return runs


NOTE_WIDTH = 90  # a candidate's reason longer than this goes whole on a line of its own, under its row


def _candidate_rows(entries: list[dict], measure: str, width: int) -> list[str]:
    """The candidates table's rows (``plan.candidates``, names ``width`` wide). A reason is never cut: a short one
    follows the status on the row; a longer one (the "not a sustained rate" notes run to ~260 characters, and a cut
    one lost its figures and its "replay more requests") follows on its own line, whole, under the status column."""
    lines = []
    for entry in entries:
        value = entry[measure]
        cell = f"{value:>13.4g}" if value is not None else f"{'–':>13}"
        flag = (" (Pareto)" if entry["pareto"] else "") + (" <- chosen" if entry["chosen"] else "")
        reason = entry.get("reason") or ""
        inline = f": {reason}" if reason and len(reason) <= NOTE_WIDTH else ""
        row = f"  {entry['name']:<{width}}  {entry['cost_usd_per_hour']:>8.3f}  {cell}  "
        lines.append(f"{row}{entry['status']}{inline}{flag}")
        if reason and not inline:
            lines.append(f"{'':<{len(row)}}↳ {reason}")
    return lines


def _hit_access(plan, base: Config) -> str:
    """How a hit-ratio plan's candidates look blocks up (``run_semantics`` of their mode): a fleet's serving runs by
    prefix; the cache-only replays as cache.access_semantics says, "auto" being plain there."""
    from sim.cache.access import run_semantics

    return run_semantics(base, candidate_modes(plan)[0])


def _access_note(semantics: str | None) -> str:
    """Said beside a hit-ratio target: replays of plain lookups are not what a serving run of the chosen candidate
    measures (it looks a prompt's blocks up as a prefix: LRU on Mooncake 0.1104 plain vs 0.1118 prefix)."""
    if semantics != "plain":
        return f" ({semantics} lookups, as a serving run makes them)" if semantics else ""
    return (" (cache-only replays of plain lookups, cache.access_semantics=auto; a serving run looks a prompt up as a "
            "prefix, which can differ slightly: set cache.access_semantics=prefix under 'set' to replay as serving "
            "does)")


def _summary(plan: dict, candidates: list[Candidate], chosen: Candidate | None) -> str:
    measure = plan["measure"]
    target = plan["target"]
    unit = "req/s" if measure == "max_rate_rps" else ""
    lines = []
    if measure == "max_rate_rps":
        slo = ", ".join(f"{k}={v:g}" for k, v in target["slo"].items())
        lines.append(f"target: {slo} at {target['rate_rps']:.4g} req/s ({target['rate_scale']:.3g}x the workload's "
                     f"{target['workload_rate_rps']:.4g} req/s)")
    else:
        lines.append(f"target: hit ratio >= {target['hit_ratio']:g}" + _access_note(target.get("access_semantics")))
    # a tier the search does not vary still serves (and is priced in) every candidate, but no name shows it: "dram=0GiB"
    # reached 0.34 of Mooncake on config.yaml's 2 TiB SSD, where HBM alone reaches 0.04
    fixed = sorted({(t, gib) for c in candidates for t, gib in c.run_tier_gib.items() if t not in c.tier_gib and gib > 0})
    if fixed:
        lines.append("every candidate also runs with, and pays for, " + ", ".join(f"{t}={gib:g}GiB" for t, gib in fixed)
                     + " (the config's; not searched: set it to 0 under 'set', or search it under 'search.tiers')")
    width = max(len(c.name) for c in candidates)
    lines.append(f"  {'candidate':<{width}}  {'USD/h':>8}  {measure:>13}  status")
    lines += _candidate_rows(plan["candidates"], measure, width)
    front = [f"{c['name']} {c['cost_usd_per_hour']:.2f} USD/h -> {c[measure]:.4g} {unit}".rstrip()
             for c in plan["candidates"] if c["pareto"]]
    lines.append("Pareto front (cost vs " + ("max rate" if unit else "hit ratio") + "): " +
                 ("; ".join(front) or "none (no candidate was run to a measure it could be ranked by)"))
    unserved = [c for c in candidates if c.status == "infeasible" and c.metrics]
    if chosen is None:
        lines.append("chosen: none — no candidate meets the target" +
                     (f"; {len(unserved)} cannot run every request of the workload ({UNSERVED_REASON}: give an "
                      "instance more KV blocks, or cap serving.max_model_len at what they hold, as vLLM requires)"
                      if unserved else ""))
        return "\n".join(lines)
    layout = ("aggregated" if chosen.split is None else f"P:D = {chosen.split[0]}:{chosen.split[1]}")
    if chosen.racks is not None:
        layout = f"{_count(chosen.racks, 'rack')} x {_count(chosen.nodes, 'node')}"
    met = plan["proof"].get("meets") or {}
    burst = " — met as a burst, not at a sustained rate (its proof below)" if met.get("steady_state") is False else ""
    lines.append(f"chosen: {chosen.name}: {_count(chosen.gpus, 'GPU')} ({chosen.gpu}), tensor parallel {chosen.tp}, "
                 f"{layout}, {chosen.cost:.2f} USD/h{burst}")
    quantity = "SLO attainment" if measure == "max_rate_rps" else "hit ratio"
    for role in ("meets", "fails"):
        p = plan["proof"].get(role)
        if p is None:
            below = [c for c in unserved if c.cost < chosen.cost - 1e-9]
            lines.append(f"proof ({role}): none" + ("" if role != "fails" else
                                                     " — it is the cheapest candidate" if not below else
                                                     " — it is the cheapest candidate that can run every request"))
            continue
        extra = ""
        if measure == "max_rate_rps":
            ttft, tpot = (p["metrics"][k]["p99"] for k in ("ttft_s", "tpot_s"))  # (a null TPOT: no request has one)
            extra = ", ".join(["", *(f"{name} p99 {'–' if v is None else f'{v:.4g}'} s"
                                     for name, v in (("TTFT", ttft), ("TPOT", tpot)))])
        lines.append(f"proof ({role}): {p['name']} at {p['cost_usd_per_hour']:.2f} USD/h: {quantity} "
                     f"{p['measured']:.4f}{extra}")
        if p.get("note"):
            lines.append(f"  ! {p['note']}")
    return "\n".join(lines)
