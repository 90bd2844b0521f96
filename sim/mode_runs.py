"""The run of each mode (``RUNNERS``): load the workload, simulate, and return the trace's provenance and the runs.

``main.py`` runs the command line's one invocation (``Run``, resolved and checked before any work) through them;
the experiments (sweeps, max-rate probes, seeds) through ``run_quietly``, the same functions without printing,
plots or files, so a point's results are the command line's. numpy, pyarrow and the simulator load inside the
runners, when a mode runs: ``--help`` and usage errors stay quick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sim.cli_outputs import Outputs
from sim.config import Config
from sim.mode_settings import run_reading

if TYPE_CHECKING:
    from sim.report.document import RunResult


@dataclass
class Run:
    """What one invocation does, resolved and checked before any work."""

    mode: str
    config: Config
    policies: list[str]
    outputs: Outputs
    progress: bool
    mrc: bool
    overlay: Path | None = None  # --check-calibration
    overlay_tables: dict[str, bool] = field(default_factory=dict)  # the tables it provides (calibration.overlay_tables)
    routers: list[str] = field(default_factory=list)  # --router
    cluster_pd: bool = False  # --cluster --pd
    notes: list[str] = field(default_factory=list)
    summary: str | None = None  # printed instead of the generic metrics summary


PLOT_STEM_BYTES = 200  # a trace's stem in a plot's name, cut so that '<kind>_<stem>.png' stays within 255 bytes


def _stem(trace) -> str:
    prov = trace.provenance
    stem = Path(prov.path).stem if prov.path else prov.format.replace(":", "-")
    return stem.encode()[:PLOT_STEM_BYTES].decode(errors="ignore")  # (a 240-byte name: the plot's was too long)


def run_trace_stats(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.report.document import RunResult
    from sim.serving.engine_limits import max_model_len
    from trace.continuations import check_outputs_in_next_turn_read
    from trace.stats import trace_stats
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = with_trace_block_size(run.config, trace)
    check_outputs_in_next_turn_read(trace, run.config.workload)
    # the serving ceiling is over the requests a serving run admits by length (trace.stats.served_by_length)
    limit = max_model_len(run.config)
    metrics = trace_stats(trace, run.config.workload.outputs_in_next_turn, limit)
    longer = int(trace.longer_than(limit).sum())
    if longer:
        run.notes.append(f"infinite_cache_hit_ratio_serving is over the {len(trace) - longer:,} requests within "
                         f"{limit:,} tokens (prompt + output: {run.config.model}'s max_model_len); the serving modes "
                         f"skip the other {longer:,} (exceeds_max_model_len); the cache-only replay takes them")
    if run.outputs.plot_dir is not None:
        from sim.report.plots import plot_trace_stats

        png = plot_trace_stats(trace, run.outputs.plot_dir / f"trace_stats_{_stem(trace)}.png")
        run.notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), [RunResult(name="trace-stats", metrics=metrics)]


def run_cache_only(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.cache.replay import run_cache_only as replay_policies
    from sim.cache.replay import run_mrc
    from sim.report.document import no_repeat_note
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = config = with_trace_block_size(run.config, trace)
    policies = run.policies or ([] if run.mrc else [config.cache.policy])
    runs = replay_policies(trace, config, policies, progress=run.progress)
    if trace.num_unique_blocks >= trace.num_accesses:  # every policy's 0 hits says nothing of the policies
        run.notes.append(f"! {no_repeat_note(trace.provenance.block_ids)}")
    if run.mrc:
        runs.append(run_mrc(trace, config))
        if run.outputs.plot_dir is not None:
            from sim.cache.tiers import stored_block_bytes
            from sim.report.plots import plot_mrc

            rate = config.cache.mrc_sample_rate
            kind = "exact" if rate >= 1.0 else f"shards-{rate:g}"  # a sampled curve never overwrites the exact one
            png = plot_mrc([{"name": r.name, "metrics": r.metrics} for r in runs],
                           run.outputs.plot_dir / f"mrc_{kind}_{_stem(trace)}.png", _stem(trace),
                           block_bytes=stored_block_bytes(config))
            run.notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), runs


def run_serving_mode(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.config import replace
    from sim.report.metrics import check_tpot_target_read, write_requests_csv
    from sim.serving.admission import admit
    from sim.serving.run import run_serving
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = config = with_trace_block_size(run.config, trace)
    admit(trace, config, "pd" if run.cluster_pd else run.mode)  # (--cluster --pd: each role holds its part)
    check_tpot_target_read(trace.output_tokens, config.slo, config.workload.trace or "the synthetic workload")
    policies = run.policies or [config.cache.policy]
    routers = run.routers or [config.cluster.router]
    said: list[str] = []  # notes that qualify every run's results: in each run's metrics (``answer_caveats``)
    if run.mode == "cluster" and run.cluster_pd:
        idle_gpus_note(config, said)
    runs = []
    for policy in policies:  # one run per policy (and router) over the same trace
        for router in routers:
            overrides = {"cache.policy": policy, "cluster.router": router}
            if run.mode == "cluster":
                from sim.cluster.run import run_cluster

                result, requests = run_cluster(trace, replace(config, **overrides), pd=run.cluster_pd,
                                               progress=run.progress)
            else:
                result, requests = run_serving(trace, replace(config, **overrides), run.mode, progress=run.progress)
            name_run(result, run.mode, policy, router, len(policies), len(routers))
            # (the JSON's, so the HTML's, and each --seeds or --max-rate run's: a sweep runs no --cluster --pd; the
            # terminal says them as a run's caveats)
            if said:
                result.metrics["notes"] = [*result.metrics.get("notes", []), *said]
            runs.append(result)
            key = (f"{policy}/{router}" if len(policies) > 1 else router) if len(routers) > 1 else policy
            path = run.outputs.requests_csv.get(key)
            if path is not None:
                write_requests_csv(requests, path)
                run.notes.append(f"requests: {path}")
    return trace.provenance.to_dict(), runs


def idle_gpus_note(config, notes: list[str]) -> None:
    """Say where ``--cluster --pd`` leaves GPUs of each rack without an instance: its pools are ``pd.num_prefill`` and
    ``pd.num_decode`` instances per rack, whatever the rack's size, so more nodes alone changed nothing (the same
    results at 1, 2 and 4 nodes a rack, with no word why)."""
    from sim.cluster.topology import Topology

    topo = Topology.from_config(config, pd=True)
    rack = topo.nodes_per_rack * topo.gpus_per_node
    if topo.rack_gpus_used < rack:
        notes.append(f"{rack - topo.rack_gpus_used:,} of each rack's {rack:,} GPUs run no instance: --cluster --pd "
                     f"places pd.num_prefill={config.pd.num_prefill} prefill and pd.num_decode={config.pd.num_decode} "
                     "decode instances in each rack (raise them to use its GPUs)")


def name_run(result: RunResult, mode: str, policy: str, router: str, num_policies: int, num_routers: int) -> None:
    """A serving run's name and overrides among ``num_policies`` x ``num_routers`` runs (``--policy a,b --router
    c,d``): named by what varies, in flag order; a cluster run always by its router. The command line's runs and
    ``--max-rate``'s searched ones (experiments.execute) are named alike."""
    if mode == "cluster":
        result.name = f"{policy}/{router}" if num_policies > 1 else router
    elif num_policies > 1 or num_routers > 1:
        result.name = "/".join(([policy] if num_policies > 1 else []) + ([router] if num_routers > 1 else []))
    if num_policies > 1 or num_routers > 1:
        result.overrides = {**({"cache.policy": policy} if num_policies > 1 else {}),
                            **({"cluster.router": router} if num_routers > 1 or mode == "cluster" else {})}


def run_quietly(mode: str, config: Config, policies: list[str], cluster_pd: bool = False,
                routers: list[str] = ()) -> tuple[dict, list[RunResult]]:
    """One mode's runs exactly as the command line makes them, without printing, plots or files
    (the experiments' entry point: sweeps, max-rate probes, seeds; ``cluster_pd``: ``--cluster --pd``;
    ``routers``: ``--router a,b``, one run each)."""
    return RUNNERS[mode](Run(mode, config, policies, Outputs(), progress=False, mrc=False, routers=list(routers),
                             cluster_pd=cluster_pd))


def run_check_calibration(run: Run) -> tuple[None, list[RunResult]]:
    from sim.serving.calibration import calibration_runs, format_fits

    runs = calibration_runs(run.overlay, run.overlay_tables, run.config)
    run.summary = format_fits(run.overlay, run.config, runs)
    return None, runs


RUNNERS = {"trace-stats": run_trace_stats, "cache-only": run_cache_only, "single": run_serving_mode,
           "pd": run_serving_mode, "cluster": run_serving_mode, "check-calibration": run_check_calibration}


def run_reading_given(run: Run, runner: Callable[[Run], tuple], given: dict[str, str]) -> tuple:
    """``runner(run)``; a setting the loaded workload leaves unread is refused where the command line gave it
    (``given``), and otherwise (a config file's) left alone: the run takes the value that leaves it the same, and
    the report echoes the config as resolved, as it echoes a file's keys the mode never reads
    (``sim.mode_settings.run_reading``)."""
    from sim.config import replace

    def attempt(config: Config) -> tuple:
        run.config = config
        return runner(run)

    result, unread = run_reading(attempt, run.config, given)
    if unread:
        run.config = replace(run.config, **unread)
    return result
