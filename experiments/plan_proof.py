"""How the planner proves its answer (``experiments.planner``'s steps 2 and 3): the cheapest candidate that meets
the target, confirmed by a run at the target, and the cheaper candidate nearest it run to show it misses; where no
timed candidate meets, the candidates the miss-ratio curve pruned run after all (``revisit_pruned``); the Pareto
front over the timed ones."""

from __future__ import annotations

import numpy as np

from experiments.execute import RunOptions
from experiments.maxrate import contradicted, non_monotone_note
from experiments.plan_candidates import Candidate
from experiments.runner import Task, run_task
from sim.config import replace
from sim.errors import InputError
from sim.report.document import still_filling


def cost_order(c: Candidate) -> tuple:
    return (c.cost, -(c.measured if c.measured is not None else -np.inf), c.name)


def pareto(timed: list[Candidate]) -> None:
    """Mark the candidates no cheaper one matches (a zero measure is never on the front)."""
    best = 0.0
    for c in sorted(timed, key=cost_order):
        if c.measured is not None and c.measured > best:
            c.pareto, best = True, c.measured


# The admission skip that depends on the candidate (its GPU memory, TP, ``serving.num_gpu_blocks``): a request whose KV
# needs more blocks than one instance holds, which vLLM refuses (``sim.serving.admission.admit``).
UNSERVED_REASON = "exceeds_kv_capacity"


def mark_unserved(c: Candidate, record: dict) -> bool:
    """Mark ``c`` infeasible when its run could not serve every request of the workload: an answer measured on the
    requests it could run (a TTFT attainment over 280 of 300 requests) is not one for the workload. Its measure
    stays in the table, its run in the report, each with the run's trace section (rows used, skips by reason)."""
    trace = record.get("trace") or {}
    skipped = (trace.get("skip_reasons") or {}).get(UNSERVED_REASON, 0)
    c.trace = trace
    if not skipped:
        return False
    c.status = "infeasible"
    c.reason = (f"cannot run {skipped:,} of the {skipped + trace.get('rows_used', 0):,} requests ({UNSERVED_REASON}: "
                f"vLLM refuses them)")
    return True


def proof_entry(c: Candidate, run: dict, measured: float, meets: bool, role: str) -> dict:
    """A proof run's record; one still filling at its last arrival (``still_filling``) is no steady state, and it
    says so: if it met the target, it met it as a burst the workload was too short to show, not at a rate the
    deployment sustains; if it failed, its queue was growing as requests arrived (a longer run misses by more, so
    the failure stands)."""
    entry = {"role": role, "name": c.name, "overrides": c.overrides, "cost_usd_per_hour": c.cost,
             "measured": measured, "meets": meets, "metrics": run["metrics"]}
    filling = still_filling(run["metrics"])
    if filling is not None:
        entry["steady_state"] = False
        held = (f"at least {filling[0]:,} of the {filling[1]:,} requests ({filling[0] / filling[1]:.0%}) were still "
                f"queued or running when the last arrived: ")
        entry["note"] = held + ("a burst absorbed, not a sustained rate; replay more requests" if meets else
                                "overloaded at this rate, its queue growing as requests arrived (a longer run misses "
                                "by more)")
    return entry


def reaches_rate(c: Candidate, target_scale: float) -> bool:
    """Whether ``c``'s searched max rate reaches an SLO target's rate (its proof run at that rate confirms it)."""
    return (c.metrics.get("max_rate_scale") or 0.0) >= target_scale


def _check_monotone(c: Candidate, scale: float, attainment: float) -> None:
    """Say, in ``c``'s search note, reason and JSON (``max_rate_search.non_monotone``), where its proof run at the
    target contradicts its search: one met above a rate the search saw fail, or failed below one it saw meet."""
    search = c.metrics.get("max_rate_search")
    pair = contradicted(search, scale, attainment) if search else None
    if pair is None:
        return
    note = non_monotone_note(pair, search["target_attainment"])
    c.metrics["max_rate_search"] = {**search, "non_monotone": pair,
                                    "note": f"{search['note']}; {note}" if search.get("note") else note}
    c.reason = f"{c.reason}; {note}" if c.reason else note


def prove_slo(timed: list[Candidate], target_scale: float, attainment: float,
               cache: dict[str, dict] | None = None) -> tuple[Candidate | None, dict]:
    """Cheapest candidate whose max rate reaches the target, confirmed by runs at the target rate (kept in ``cache``
    by name: a proof tried again after ``revisit_pruned`` timed more candidates does not rerun them)."""
    order = sorted(timed, key=cost_order)
    cache = {} if cache is None else cache

    def at_target(c: Candidate) -> tuple[dict, float, bool]:
        if c.name not in cache:
            cfg = replace(c.config, **{"workload.rate_scale": target_scale})
            record = run_task(Task(c.name, 0, c.name, c.mode, cfg, RunOptions(), c.overrides))
            if record["error"]:
                raise InputError(f"proof run of {c.name} failed: {record['error']}")
            cache[c.name] = record["runs"][0]
            _check_monotone(c, target_scale, cache[c.name]["metrics"]["slo_attainment"])
        run = cache[c.name]
        value = run["metrics"]["slo_attainment"]
        return run, value, value >= attainment

    reaching = [c for c in order if reaches_rate(c, target_scale)]
    for chosen in reaching:
        run, value, ok = at_target(chosen)
        if not ok:
            continue  # its search bracket was off by noise: the next one up
        proof = {"meets": proof_entry(chosen, run, value, ok, "meets"), "fails": None}
        cheaper = [c for c in order if c.cost < chosen.cost - 1e-9]
        while cheaper:
            # the cheaper candidate nearest the target (highest searched max rate; the dearer on a tie): the one
            # whose bracket noise could hide a pass, not whichever sorts last (an equal-cost weaker split)
            below = max(cheaper, key=lambda c: (c.metrics.get("max_rate_scale") or 0.0, c.cost))
            run_b, value_b, ok_b = at_target(below)
            if not ok_b:
                proof["fails"] = proof_entry(below, run_b, value_b, ok_b, "fails")
                break
            chosen, proof["meets"] = below, proof_entry(below, run_b, value_b, ok_b, "meets")  # cheaper and meets
            cheaper = [c for c in order if c.cost < chosen.cost - 1e-9]
        return chosen, proof
    return None, {}


def prove_hit(candidates: list[Candidate], timed: list[Candidate], target: float) -> tuple[Candidate | None, dict]:
    """Cheapest replayed candidate at the target hit ratio; the cheaper candidate nearest the target (highest hit
    ratio, replayed if the curve pruned it) rerun to show it misses; if it meets, it is the cheaper answer, timed
    (``ran_after_all``)."""
    meeting = [c for c in sorted(timed, key=cost_order) if c.measured is not None and c.measured >= target]
    if not meeting:
        return None, {}

    def entry(c: Candidate, role: str) -> dict:
        return {"role": role, "name": c.name, "overrides": c.overrides, "cost_usd_per_hour": c.cost,
                "measured": c.measured, "meets": c.measured >= target, "metrics": c.metrics}

    chosen = meeting[0]
    proof = {"meets": entry(chosen, "meets"), "fails": None}
    while True:
        cheaper = [c for c in candidates if c.status in ("timed", "pruned") and c.cost < chosen.cost - 1e-9]
        if not cheaper:
            break
        # nearest the target: its replayed hit ratio, else the curve's (a guide where the curve is not exact)
        below = max(cheaper, key=lambda c: (c.measured if c.measured is not None else
                                            (c.mrc_levels[-1] if c.mrc_levels else 0.0), c.cost))
        if below.status == "pruned" and below.measured is None:  # pruned by the curve: replay it to prove the boundary
            if not replay_pruned(below):  # (a fleet's serving run) no answer: the next cheaper one proves the boundary
                continue
        if below.measured is None:
            break
        if below.measured < target:
            proof["fails"] = entry(below, "fails")
            break
        if below.status == "pruned":  # the answer, run: it is timed, as a candidate run to its measure is
            ran_after_all(below, below.reason, "its proof replay met the target")
        chosen, proof["meets"] = below, entry(below, "meets")  # cheaper and meets: the answer moves down
    return chosen, proof


# Where nothing timed meets the target, at most this many of the candidates the curve pruned are run after all
# (``revisit_pruned``): for an SLO target each is a max-rate search of several serving runs.
MAX_REVISITS = 4


def take_record(c: Candidate, record: dict, measure: str) -> None:
    """A candidate's timing run (a max-rate search, or a replay) as the table shows it: timed, with its measure and
    its search's note; failed, with its error's first line; infeasible where it could not run every request."""
    if record["error"]:
        c.status, c.reason = "failed", record["error"].splitlines()[0]
        return
    c.status, c.metrics = "timed", record["runs"][0]["metrics"]
    c.measured = c.metrics.get(measure)
    c.reason = (c.metrics.get("max_rate_search") or {}).get("note", "")
    mark_unserved(c, record)


def ran_after_all(c: Candidate, pruned_for: str, why: str) -> None:
    """A candidate the curve pruned (``pruned_for``: the curve's reason) that ran to its measure: timed, as any
    candidate run to its measure (on the Pareto front where no cheaper one matches it); its reason keeps the curve's,
    says why it ran, then its run's own note (a max-rate search's), if any."""
    c.status = "timed"
    ran = f"pruned by the miss-ratio curve ({pruned_for.removeprefix('miss-ratio curve: ')}), run as {why}"
    c.reason = f"{ran}; {c.reason}" if c.reason and c.reason != pruned_for else ran


def revisit_pruned(candidates: list[Candidate], run, measure: str, reaches, prove,
                    limit: int = MAX_REVISITS) -> tuple[Candidate | None, dict]:
    """Where no timed candidate meets the target and the curve is not exact (``mrc_is_exact``: any SLO target, and a
    hit-ratio target of serving or fleet runs, whose instances' HBMs the curve pools), run the candidates it pruned,
    cheapest first, as the timed ones ran (``run``: a candidate's record), until one ``reaches`` the target and
    ``prove`` (over every timed candidate) chooses an answer; at most ``limit`` of them. The curve may have pruned a
    tier mix that gains in the runs (hhunt6: round-robin instances each keep their own HBM, so a rack's EIC gains
    where the pooled curve shows none). Those left unrun say so in their reason."""
    pruned = sorted((c for c in candidates if c.status == "pruned" and c.measured is None), key=cost_order)
    for c in pruned[:limit]:
        pruned_for = c.reason
        take_record(c, run(c), measure)
        if c.status != "timed":  # failed, or infeasible
            c.reason = f"{c.reason} (run after the {pruned_for}, as no timed candidate met the target)"
            continue
        ran_after_all(c, pruned_for, "no timed candidate met the target")
        if reaches(c):
            chosen, proof = prove([k for k in candidates if k.status == "timed"])
            if chosen is not None:
                return chosen, proof
    for c in pruned[limit:]:
        c.reason += f"; not run: at most {limit} pruned candidates are run, cheapest first, when none timed meets"
    return None, {}


def replay_pruned(c: Candidate) -> bool:
    """Replay a candidate the curve pruned, for its measured hit ratio; False where its run could not serve every
    request (``mark_unserved``: then it is infeasible, no answer)."""
    record = run_task(Task(c.name, 0, c.name, c.mode, c.config, RunOptions(), c.overrides))
    if record["error"]:  # as the SLO proof: not "none, it is the cheapest candidate"
        raise InputError(f"proof run of {c.name} failed: {record['error']}")
    c.metrics = record["runs"][0]["metrics"]
    c.measured = c.metrics["hit_ratio"]
    return not mark_unserved(c, record)
