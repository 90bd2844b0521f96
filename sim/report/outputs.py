"""After the report: the per-run plots of an invocation and the HTML report that embeds every plot."""

from __future__ import annotations

from pathlib import Path

from sim.report.document import RunResult

PLOT_NOTE = "plot: "
NO_PLOT_NOTE = "no plot: "  # a plot asked for and not drawn, and why: the HTML says so where the plot would be


def render_outputs(report: dict, runs: list[RunResult], kind: str, plot_dir: Path, draw_plots: bool,
                   html_path: str | None, notes: list[str], cluster_pd: bool = False) -> list[str]:
    """Draw the run plots (``kind`` names the files) and write ``--html``; returns notes for the new files.
    ``cluster_pd``: a ``--cluster --pd`` run, which the HTML's title names.

    ``notes`` are the invocation's notes so far: the plots listed there (``plot: PATH``) go into the HTML too.
    """
    plots = [Path(n[len(PLOT_NOTE):]) for n in notes if n.startswith(PLOT_NOTE)]
    undrawn = [n[len(NO_PLOT_NOTE):] for n in notes if n.startswith(NO_PLOT_NOTE)]
    new: list[str] = []
    if draw_plots and runs:
        from sim.report.serving_plots import plot_runs

        made = plot_runs(runs, Path(plot_dir), kind)
        plots += made
        new += [f"{PLOT_NOTE}{p}" for p in made]
    if html_path:
        from sim.report.html import write_html

        new.append(f"html: {write_html(report, plots, html_path, cluster_pd, undrawn)}")
    return new
