"""Sweeps: every point of a spec run on a process pool or Ray, journaled, resumable.

``python main.py --sweep SPEC.yaml`` (or ``python -m experiments.sweep SPEC.yaml``, same
flags). The base config is resolved as the command line resolves one (config file →
overlays → preset → the spec's ``workload:``/``set:`` → ``--set`` → dedicated flags);
each point adds its axis values. All points are validated before the first runs. Each
finished point is appended to ``<report>.journal.jsonl``; ``--resume`` runs only the
points missing there (and those that failed). The report lists one run per point in
point order, whatever the backend and the completion order.
"""

from __future__ import annotations

if __name__ == "__main__":  # ``python -m experiments.sweep``: a stop before its command starts waits for it (one line)
    import sim.script_start  # noqa: F401

# isort: split

import argparse
import sys
import time
from typing import TYPE_CHECKING, Callable

from tqdm import tqdm

from experiments.execute import RunOptions, check_learned_points, check_point, check_trace_files, refuse_unread
from experiments.journal import Journal, fingerprint, inputs_fingerprint, journal_path
from experiments.outputs import write_csv, write_json
from experiments.runner import Task, default_jobs, run_tasks, runs_on
from experiments.spec import (
    Point,
    SweepSpec,
    check_inputs_spared,
    check_points_differ,
    expand,
    keys_overlap,
    load_spec,
    note_points_alike,
    point_config,
    resolve_layers,
)
from sim.cli_config import command_line_settings, given_on_command_line
from sim.errors import ConfigError, one_line, quote
from sim.report.document import build_report, flatten, sweep_point_notes

if TYPE_CHECKING:  # the command line's checked output paths
    from sim.cli_outputs import Outputs
    from sim.config import Config

CHECK_BAR_POINTS = 200  # a sweep of more points shows a progress bar while they are checked


def run_options(args: argparse.Namespace) -> RunOptions:
    from sim.cli import parse_policies

    policies = tuple(parse_policies(getattr(args, "policy", None)))  # (checked, in canonical case, as main.py's)
    return RunOptions(policies=policies, max_rate=bool(args.max_rate), seeds=args.seeds or 1)


def check_settings_read(spec: SweepSpec, sets: list[str]) -> None:
    """Every key the spec varies or fixes, and every ``--set``, is read by the spec's mode (``sim.mode_settings.SETTING_MODES``,
    as the command line checks its ``--set``): an axis of keys the mode ignores ran every point alike (pd.num_prefill
    in a single-node sweep; a sweep's cluster mode has no PD pools), a fixed one was silently dropped."""
    from sim.config_yaml import set_keys
    from sim.mode_settings import setting_users

    where = f"sweep spec {spec.path}"
    keyed = [*((leaf, f"{where}: axis '{leaf}'", "its points would all run alike")
               for key in spec.axis_keys for leaf in spec.axis_leaves(key)),
             *((key, f"{where}: fixed key '{key}'", "it would do nothing") for key in spec.layers.sets),
             *((key, f"--set {key}", "it would do nothing") for s in sets for key in set_keys(s))]
    for key, what, effect in keyed:
        users = setting_users(key, spec.mode)
        if users is not None:
            pools = "; a sweep's mode 'cluster' runs no prefill/decode pools (--cluster --pd is not a sweep mode)" if \
                spec.mode == "cluster" and key.startswith("pd.") else ""
            raise ConfigError(f"{what} is not used by the sweep's mode '{spec.mode}' (it applies to {users}): "
                              f"{effect}{pools}")


def check_block_size_varies(spec: SweepSpec, configs: list[Config]) -> None:
    """A serving.block_size axis over a trace of hash_ids replayed as its own blocks (workload.block_mismatch=trace,
    the Contract's default) runs every point at the trace's block size: refused, naming the setting that cuts them."""
    from pathlib import Path

    from trace.sniff import carries_hash_ids

    if "serving.block_size" not in spec.axis_keys:
        return
    for config in configs:
        workload = config.workload
        if workload.trace is None or workload.block_mismatch != "trace" or \
                not carries_hash_ids(Path(workload.trace), workload.format):
            return
    raise ConfigError(f"sweep spec {spec.path}: axis 'serving.block_size' is not used: the trace's hash_ids are its "
                      "blocks (workload.block_mismatch=trace), so every point would run alike; set "
                      "workload.block_mismatch=split to cut them into each point's blocks")


def check_one_cache_per_trace(spec: SweepSpec, base: Config) -> None:
    """A workload cache keeps one trace: a sweep over traces with one cache for all (``base``'s, from --workload-cache,
    a fixed key, the config file or an overlay) would rebuild it at every point (and was refused as if no trace were
    given); a zip group gives each its own."""

    def varied(key: str, keys) -> bool:  # (by the leaves each sets: a workload axis of limits varies no trace)
        return any(keys_overlap(leaf, key) for k in keys for leaf in spec.axis_leaves(k))

    if not varied("workload.trace", spec.axis_keys):
        return
    # (the two vary together in one zip group, or in one axis of mappings that set both)
    dims = [*([key] for key in spec.axes), *(list(group) for group in spec.zips)]
    zipped = any(varied("workload.trace", dim) and varied("workload.cache", dim) for dim in dims)
    if (base.workload.cache is not None or varied("workload.cache", spec.axis_keys)) and not zipped:  # (crossed: every cache sees every trace)
        raise ConfigError(f"sweep spec {spec.path}: a workload cache keeps one trace, and its 'workload.trace' axis "
                          "has several: vary workload.cache with it (one zip group), or drop the cache")


def check_base_rules(base: Config, first: Point, spec: SweepSpec) -> None:
    """The rules between keys (``sim.config_rules``) are each point's, as its axes complete the base (a trace axis
    beside the config file's workload cache); a base that breaks one its first point does not mend is refused as
    the command line would refuse it, not once per point."""
    from sim.config_rules import validate

    try:
        validate(base)
    except ConfigError as exc:
        try:
            point_config(base, first, spec.path)
        except ConfigError:
            raise exc from None


def check_not_varied(spec: SweepSpec, args: argparse.Namespace) -> None:
    """A key set on the command line (``--set``, ``--workload-limit``, ``--seed``, ...) that the spec varies is refused:
    each point's axis value replaced it, so the flag did nothing (``--workload-limit 20`` with a workload.limit axis
    ran the axis' limits), as a key both fixed and varied in the spec is refused (``load_spec``). So is ``--seeds``
    beside a seed axis: both vary the seed (an axis of 1 and 2 at --seeds 3 ran seeds 1-3 and 2-4, two seeds in
    each point's interval)."""

    def varying(key: str) -> str | None:
        return next((k for k in spec.axis_keys if any(keys_overlap(leaf, key) for leaf in spec.axis_leaves(k))), None)

    for said, key in command_line_settings(args):
        if varying(key):
            named = said if said.startswith("--set") else f"{said} (config key '{key}')"
            raise ConfigError(f"{named}: sweep spec {spec.path} varies '{varying(key)}', so every point would replace the "
                              f"value given here with its own; drop one of them")
    if args.seeds and varying("seed"):  # (each point's seeds, its own and the next N-1, are other points' too)
        raise ConfigError(f"--seeds {args.seeds}: sweep spec {spec.path} varies '{varying('seed')}' too, and each point "
                          f"would repeat over its seed and the {args.seeds - 1} after it: vary the seed with one of them")


def run_reading_points(tasks: list[Task], givens: dict[str, dict[str, str]], records: dict[str, dict],
                       finished: Callable[[dict], None], where: str,
                       run: Callable[[list[Task], Callable[[dict], None]], None],
                       points_named: str = "point of the sweep") -> None:
    """Run ``tasks`` (``run``; ``finished`` gets each record but those held) so that a key given to a point
    (``givens``: point key -> {key: how it was given}) that no point reads is refused, as a lone run refuses one given on
    its command line, not run neutral everywhere: each point first refuses its given keys (``Task.refused``), so one
    that leaves a key unread (``UnreadSetting``, found as it loads its workload, before it simulates) stops there and
    is held. A held key that no point (of ``records``, the journal's too) read is refused (exit 2, naming how it was
    given, in ``where``: the sweep or plan; ``points_named``: what its points are); the held points whose key another
    point reads run again with that key at its neutral value, until none is held. A plan's candidates share a
    workload, so there a key one leaves unread is mostly left unread by all."""
    from dataclasses import replace as replace_task

    from sim.errors import InputError

    while tasks:
        held: list[dict] = []
        run(tasks, lambda record: held.append(record) if record.get("error_kind") == "unread" else finished(record))
        read = {key for point, record in records.items() if not record["error"]
                for key in givens.get(point, {}) if key not in record.get("left_unread", ())}
        by_key = {task.key: task for task in tasks}
        tasks = []
        for record in sorted(held, key=lambda r: r["index"]):
            key = record["unread"]
            if key not in read:
                raise InputError(f"{where}: {givens[record['key']][key]} is read by no {points_named}: "
                                 f"{record['error']}")
            task = by_key[record["key"]]
            tasks.append(replace_task(task, refused=tuple(k for k in task.refused if k != key)))


def left_unread(points: list[Point], givens: dict[str, dict[str, str]], records: dict[str, dict]) -> dict[str, list[str]]:
    """Each given key that some points ran without (at its neutral value: ``run_reading_points``), with the names of
    those points, in point order."""
    left: dict[str, list[str]] = {}
    for point in points:
        record = records[point.key]
        for key in [] if record["error"] else record.get("left_unread", ()):
            if key in givens[point.key]:
                left.setdefault(key, []).append(point.name)
    return left


def offered_rates(points: list[Point], configs: list[Config], records: dict[str, dict],
                  spec: SweepSpec) -> dict[str, float]:
    """Each point's offered load in requests/s where the sweep varies ``workload.rate_scale`` (a scale axis alone
    says "x2", not how many requests a second that is): the workload's own mean arrival rate (requests / span, as
    ``--trace-stats``'s rate_mean_rps; drawn arrivals' where workload.arrivals replaces the times) x the point's scale.
    The workload is loaded here once per distinct one (points that differ only in their scale share it); a point that
    failed, or whose requests all arrive at once (no rate), has none."""
    from experiments.execute import _workload_key, base_rate_rps, unscaled_arrivals
    from sim.config import replace
    from sim.errors import InputError

    if "workload.rate_scale" not in spec.axis_keys:
        return {}
    rates: dict[str, float | None] = {}
    offered = {}
    for point, config in zip(points, configs, strict=True):
        if records[point.key]["error"]:
            continue
        unscaled = replace(config, **{"workload.rate_scale": 1.0})
        key = _workload_key(unscaled)
        if key not in rates:
            try:
                rates[key] = base_rate_rps(unscaled, unscaled_arrivals(unscaled))
            except InputError:  # (all at once: a scale changes nothing, and the point says so)
                rates[key] = None
        if rates[key] is not None:
            offered[point.key] = rates[key] * config.workload.rate_scale
    return offered


def _entries(points: list[Point], records: dict[str, dict],
             offered: dict[str, float] | None = None) -> tuple[dict | None, list[dict]]:
    """Report runs in point order (a point with several runs: ``point/run``) and the shared trace provenance; a point
    of ``offered`` (its requests/s: ``offered_rates``) has it as its runs' first metric, ``offered_rps``."""
    trace = next((records[p.key]["trace"] for p in points if not records[p.key]["error"]), None)
    entries = []
    for point in points:
        record = records[point.key]
        if record["error"]:
            entries.append({"name": point.name, "overrides": point.overrides, "metrics": {}, "error": record["error"]})
            continue
        for run in record["runs"]:
            entry = dict(run)
            if point.key in (offered or {}):
                entry["metrics"] = {"offered_rps": offered[point.key], **entry["metrics"]}
            entry["name"] = point.name if len(record["runs"]) == 1 else f"{point.name}/{run['name']}"
            entry["overrides"] = {**point.overrides, **{k: v for k, v in run["overrides"].items() if k not in point.overrides}}
            if record["trace"] != trace:
                entry["trace"] = record["trace"]
            entries.append(entry)
    return trace, entries


def _print_summary(report: dict, axis_keys: list[str]) -> None:
    """The table of points, headed by the keys whose values name them, as the CSV's columns are: a point named
    '25/1/3' under 'point' said nothing of which key took which value."""
    wanted = ("offered_rps", "hit_ratio", "ttft_s.p99", "tpot_s.p99", "slo_attainment", "goodput_rps", "max_rate_rps")
    # (a point named by a path with a newline or an escape sequence: one line, as errors name it)
    report = {**report, "runs": [{**run, "name": one_line(run["name"])} for run in report["runs"]]}
    flat = [flatten(run.get("metrics") or {}) for run in report["runs"]]
    columns = [k for k in wanted if any(k in f for f in flat)]
    named = "/".join(axis_keys)
    width = max([len(r["name"]) for r in report["runs"]] + [len(named)])
    print(f"{named:<{width}}  " + "  ".join(f"{c:>14}" for c in columns))
    for run, f in zip(report["runs"], flat, strict=True):
        if run.get("error"):
            print(f"{run['name']:<{width}}  FAILED: {one_line(run['error'].splitlines()[0][:100])}")
            continue
        cells = [f"{f[c]:>14.4g}" if isinstance(f.get(c), (int, float)) else f"{'–':>14}" for c in columns]
        print(f"{run['name']:<{width}}  " + "  ".join(cells))
    for name, note in sweep_point_notes(report):  # after the table: what qualifies a point's answer or its hits
        print(f"! {name}: {note}")


def run_sweep(args: argparse.Namespace, outputs: Outputs) -> int:
    """The ``--sweep`` command: exit 0, or 2 (1) when a point failed on bad input (an internal error)."""
    from sim.config_rules import warn_slo_units
    from sim.config_yaml import leaf_keys
    from sim.mode_settings_rules import learned_tier_policies
    from sim.report.outputs import render_outputs

    start = time.perf_counter()
    spec = load_spec(args.sweep)
    check_settings_read(spec, args.sets)
    check_not_varied(spec, args)
    # --preset P: P@<the spec's mode> too, as the mode's run has; the rules between keys are each point's
    base = resolve_layers(spec.layers, args, spec.mode, rules=False)
    check_one_cache_per_trace(spec, base)
    options = run_options(args)
    if options.max_rate and "workload.rate_scale" in spec.axis_keys:
        raise ConfigError(f"sweep spec {spec.path}: a workload.rate_scale axis does nothing with --max-rate "
                          f"(the search sets the rate); drop one of them")
    points = expand(spec)
    check_base_rules(base, points[0], spec)
    # everything refusable is refused before the first point runs (~15 ms a point: a bar past a few hundred)
    given = {**{k: f"fixed key '{k}'" for k in spec.layers.sets}, **given_on_command_line(args)}
    configs, unread, givens = [], [], {}
    for point in tqdm(points, desc="checking points", unit="point", leave=False,
                      disable=args.quiet or len(points) < CHECK_BAR_POINTS):
        configs.append(config := point_config(base, point, spec.path))
        point_given = {**learned_tier_policies(config, built_too=True), **given,  # (check_point's: a file's too)
                       **{leaf: f"axis '{leaf}'" for k, v in point.overrides.items() for leaf in leaf_keys(k, v)}}
        givens[point.key] = point_given
        unread.append((point_given, check_point(spec.mode, config, options,
                                                where=f"sweep spec {spec.path}: point {point.name!r}",
                                                given=point_given)))
    refuse_unread(unread)  # (a key some points read is kept: a fixed threshold beside a router axis)
    warn_slo_units(configs, told=base)  # (the base's own were told as it was resolved)
    check_inputs_spared(spec.layers, configs, outputs, ("--sweep", spec.path))
    check_points_differ(points, configs, spec.path)
    note_points_alike(points, configs, [skipped for _, skipped in unread], spec.path)
    check_block_size_varies(spec, configs)
    check_learned_points([(f"sweep spec {spec.path}: point {p.name!r}", spec.mode, c)
                          for p, c in zip(points, configs, strict=True)],
                         options)  # (a learned model judged on its training requests: each workload loaded once)
    # a trace file every point reading it would refuse (a malformed row under strict validation): refused once, not
    # at each point in turn
    check_trace_files([(f"sweep spec {spec.path}: point {p.name!r}", c) for p, c in zip(points, configs, strict=True)])

    journal = Journal(journal_path(args.report_json, args.report_csv, spec.path, args.html),
                      fingerprint(spec.mode, base.to_dict(), vars(options), [p.key for p in points],
                                  inputs_fingerprint(configs)))
    records = journal.start(resume=args.resume, keys={p.key for p in points})
    todo = [Task(p.key, p.index, p.name, spec.mode, c, options, p.overrides, refused=tuple(givens[p.key]))
            for p, c in zip(points, configs, strict=True) if p.key not in records or records[p.key]["error"]]
    backend, jobs = args.backend or "local", args.jobs or default_jobs()
    if not args.quiet:
        done = len(points) - len(todo)
        print(one_line(f"sweep {spec.path}: {len(points)} points ({spec.mode})"
                       + (f", {done} already done" if done else "")
                       + f"; running {len(todo)} on {runs_on(args.backend, args.jobs, args.ray_address)}; journal "
                       f"{journal.path}"), file=sys.stderr)
    bar = tqdm(total=len(points), initial=len(points) - len(todo), unit="point", desc="sweep",
               disable=args.quiet or not sys.stderr.isatty())

    def finished(record: dict) -> None:
        journal.append(record)
        records[record["key"]] = record
        bar.update(1)

    try:
        run_reading_points(todo, givens, records, finished, f"sweep spec {spec.path}",
                           lambda tasks, done: run_tasks(tasks, done, backend=backend, jobs=jobs,
                                                         ray_address=args.ray_address))
    finally:
        bar.close()

    trace, entries = _entries(points, records, offered_rates(points, configs, records, spec))
    report = build_report(spec.mode, base, trace, [], wall_s=time.perf_counter() - start)
    report["runs"] = entries
    failed = [e for e in entries if e.get("error")]
    left = left_unread(points, givens, records)
    report["sweep"] = {"spec": str(spec.path), "axes": spec.axis_keys, "points": len(points), "failed": len(failed),
                       **({"max_rate": True} if options.max_rate else {}), **({"seeds": options.seeds} if options.seeds > 1 else {}),
                       **({"left_unread": left} if left else {})}
    said = {key: how for given in givens.values() for key, how in given.items()}
    notes = [f"note: {said[key]} is not read by {len(names)} of {len(points)} points ({', '.join(map(repr, names[:3]))}"
             f"{', ...' if len(names) > 3 else ''}), which ran as without it" for key, names in left.items()]
    if outputs.report_json:
        notes.append(f"report: {write_json(report, outputs.report_json)}")
    if outputs.report_csv:
        notes.append(f"csv: {write_csv(report, outputs.report_csv, spec.axis_keys)}")
    plots = []
    if outputs.plot_dir is not None:
        from sim.report.sweep_plots import plot_sweep  # (matplotlib, ~0.5 s to import: only when plots are drawn)

        plots = plot_sweep(report, spec.axis_keys, outputs.plot_dir)
    notes += [f"plot: {p}" for p in plots]
    notes += render_outputs(report, [], "sweep", outputs.plot_dir, draw_plots=False, html_path=outputs.html, notes=notes)
    if not args.quiet:
        _print_summary(report, spec.axis_keys)
        for note in notes:
            print(one_line(note))  # (a report's or a plot's path: one line, as main.py prints a run's notes)
    if failed:
        kinds = {records[p.key].get("error_kind") for p in points if records[p.key]["error"]}
        first = next(p for p in points if records[p.key]["error"])
        print(f"kvsim: {len(failed)} of {len(points)} sweep points failed; the first, {first.name!r}: "
              f"{quote(records[first.key]['error'], limit=300)} (the report's 'error' entries give each)",
              file=sys.stderr)
        return 1 if "internal" in kinds else 2
    return 0


if __name__ == "__main__":  # python -m experiments.sweep SPEC.yaml [flags]: the same as main.py --sweep SPEC.yaml [flags]
    import main
    from sim.cli import build_parser
    from sim.command import end_process

    end_process(main.main(sys.argv[1:], build_parser(sweep_module=True)))
