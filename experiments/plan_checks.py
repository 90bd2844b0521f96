"""What a plan is refused for before any candidate runs: settings its runs would not read or that it replaces (a
searched key also set by hand, a fixed cache beside searched tiers), and a target rate no run can replay. Exit 2 naming
the key or the plan's field, so a plan that would run for minutes cannot end in a table of failures."""

from __future__ import annotations

import argparse
import math

from experiments.plan_candidates import Candidate
from experiments.plan_file import plan_error
from experiments.spec import keys_overlap
from sim.cli_config import command_line_settings
from sim.config import Config


def candidate_modes(plan) -> list[str]:
    """The modes the plan's candidates run in (``experiments.plan_candidates``): a fleet's cluster runs, a hit-ratio
    target's cache-only replays, else single-node runs (aggregated) and PD runs (a prefill:decode split)."""
    if plan.fleet:
        return ["cluster"]
    if plan.hit_ratio is not None:
        return ["cache-only"]
    return [m for m in ("single", "pd") if any((s == "aggregated") == (m == "single") for s in plan.pd_split)]


def check_target_scale(plan, duration: float, base_rate: float, target_rate: float) -> None:
    """Refuse, before any candidate runs, a target rate no run can replay: one that stretches the workload's arrivals
    past ``MAX_TRACE_SPAN_S`` (each candidate failed at its first run: a plan of failures, exit 0), or one from which
    the max-rate search's doublings (``maxrate.MAX_EXPANSIONS``) pass the largest rate scale a config holds (each
    candidate that met the target failed at its last doubling)."""
    from experiments.maxrate import MAX_EXPANSIONS
    from sim.config_fields import MAX_CONFIG_FLOAT, MAX_TRACE_SPAN_S

    target_scale = target_rate / base_rate
    said = (f"'target.rate_rps' {target_rate:.4g} req/s ({target_scale:.3g}x the workload's {base_rate:.4g} req/s)"
            if plan.rate_rps is not None else f"the target rate {target_rate:.4g} req/s (workload.rate_scale="
            f"{target_scale:g} x the workload's {base_rate:.4g} req/s)")
    # (a rate so small its scale underflows to 0, 5e-324 req/s, spreads them over no finite span: it divided by zero,
    # an internal error)
    span = duration / target_scale if target_scale > 0 else math.inf
    if span > MAX_TRACE_SPAN_S:
        raise plan_error(plan.path, f"{said} spreads its arrivals over {span:.3g} s, more than "
                                    f"{MAX_TRACE_SPAN_S:.3g} s (34 years): give a higher rate")
    if target_scale * 2.0 ** MAX_EXPANSIONS >= MAX_CONFIG_FLOAT:
        raise plan_error(plan.path, f"{said} leaves the max-rate search no room: its {MAX_EXPANSIONS} doublings pass "
                                    f"the largest rate scale, {MAX_CONFIG_FLOAT:.0e}; give a lower rate")


def given_settings(plan, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(how it was given, dotted key) of each key the command line or the plan's own 'set'/'workload' sets."""
    return [*command_line_settings(args), *((f"'{k}' under 'set'/'workload'", k) for k in plan.layers.sets)]


def check_not_searched(plan, candidates: list[Candidate], args: argparse.Namespace) -> None:
    """A key the plan sets on every run it makes (a candidate's searched layout, GPU, tiers; the target's SLO and
    rate) is refused when the command line or the plan's own 'set'/'workload' sets it too: the candidate's value
    replaced it, so the setting did nothing (``--set hardware.gpu=a100-80gb`` ran search.gpu's GPUs)."""
    planned = {key: "each candidate's value from 'search'" for c in candidates for key in c.overrides}
    if plan.hit_ratio is None:
        planned |= {f"slo.{k}": f"'target.slo.{k}'" for k, v in plan.slo.items() if v is not None}
        if plan.rate_rps is not None:
            planned["workload.rate_scale"] = "the scale of 'target.rate_rps'"
    for said, key in given_settings(plan, args):
        hit = next((k for k in planned if keys_overlap(k, key)), None)
        if hit is not None:
            named = said if said.startswith(("--set", "'")) else f"{said} (config key '{key}')"
            raise plan_error(plan.path, f"{named}: the plan sets '{hit}' on every run, to {planned[hit]}, replacing the "
                                        f"value given here; drop one of them")


def check_prices_read(plan, candidates: list[Candidate]) -> None:
    """A plan's ``prices.gpus`` entry for a GPU no candidate runs on prices nothing: refused, naming the GPUs
    searched (a misspelt ``h100-sx`` left every candidate at the bundled price); so does a ``prices.tiers`` entry for
    a tier every candidate runs without."""
    gpus = plan.prices.get("gpus") if isinstance(plan.prices, dict) else None
    searched = sorted({c.gpu for c in candidates})
    for gpu in gpus if isinstance(gpus, dict) else ():
        if gpu not in searched:
            raise plan_error(plan.path, f"'prices.gpus.{gpu}': no candidate runs on it (search.gpu: "
                                        f"{', '.join(searched)}), so it prices nothing; drop it or fix its name")
    tiers = plan.prices.get("tiers") if isinstance(plan.prices, dict) else None
    for tier in tiers if isinstance(tiers, dict) else ():  # (an EIC price in a plan of no EIC: unread, exit 0)
        if not any(c.run_tier_gib.get(tier, 0.0) > 0 for c in candidates):
            raise plan_error(plan.path, f"'prices.tiers.{tier}': no candidate runs with the {tier} tier (its capacity "
                                        f"is 0 in each), so it prices nothing; drop it, or search the tier's size "
                                        f"(search.tiers.{tier})")


# settings a plan refuses wherever they are set, and why
PLAN_REFUSES = {
    # its miss-ratio curve, which prunes the candidates, is of prompt blocks
    "cache.insert_outputs": ("a plan replays prompt blocks alone (the miss-ratio curve that prunes its candidates is "
                             "theirs), so generated blocks are not inserted"),
    # one tier of that many blocks: the searched tiers' sizes unread
    "cache.capacity_blocks": ("a plan sizes the tiers it searches (search.*_gib and the GPUs' HBM); one cache of "
                              "fixed blocks would ignore them"),
}


def check_settings_read(plan, args: argparse.Namespace, base: Config) -> None:
    """Every key the command line or the plan's own 'set'/'workload' sets is read by at least one of the modes its
    candidates run in (``sim.mode_settings.SETTING_MODES``, as a sweep checks its keys): pd.transfer in a plan of aggregated
    splits only did nothing, exit 0. ``base``: the resolved base config, whose cache.capacity_blocks and
    cache.insert_outputs a plan refuses wherever they were set (a config file, an overlay, a preset too: they are
    read, and one replaces the tiers searched, the other puts blocks in the cache its curve does not have)."""
    from sim.mode_settings import setting_users

    modes = candidate_modes(plan)
    given = given_settings(plan, args)
    for key, value in (("cache.capacity_blocks", base.cache.capacity_blocks),
                       ("cache.insert_outputs", base.cache.insert_outputs or None)):
        if value is not None and all(k != key for _, k in given):
            given.insert(0, (f"config key '{key}'={value} (the base config: --config, the plan's 'config', an overlay "
                             "or a preset)", key))
    for said, key in given:
        if key in PLAN_REFUSES:
            raise plan_error(plan.path, f"{said}: {PLAN_REFUSES[key]}")
        users = [setting_users(key, mode) for mode in modes]
        if modes and all(u is not None for u in users):
            raise plan_error(plan.path, f"{said}: not read by this plan's runs (mode {' and '.join(modes)}; it applies "
                                        f"to {users[0]}): it would do nothing")
