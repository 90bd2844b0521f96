"""Plots across sweep points and planner candidates.

Which plots a sweep gets follows from its axes: hit ratio vs capacity per policy (a
``cache.policy`` axis and a capacity axis), latency percentiles vs rate per
configuration (a rate axis), goodput vs P:D split (a ``pd.num_prefill`` axis in PD
mode), and max rate per point (``--max-rate``). Each line is one combination of the
other axes. File names start with the run kind (``sweep_``, ``plan_``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.report.plots import plt, save

CAPACITY_SUFFIXES = ("capacity_blocks", "capacity_gib", "num_gpu_blocks")
RATE_AXES = {
    "workload.rate_scale": "load (× the workload's own request rate)",
    "workload.arrivals.rate_rps": "request rate (req/s)",
    "workload.synthetic.rate_rps": "request rate (req/s)",
}


def _series(runs: list[dict], axes: list[str], x_key: str, exclude: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """Runs grouped by the values of the axes other than ``x_key`` (and ``exclude``), sorted by x."""
    others = [k for k in axes if k != x_key and k not in exclude]
    groups: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("error") or x_key not in run["overrides"]:
            continue
        label = ", ".join(f"{k.split('.')[-1]}={run['overrides'].get(k)}" for k in others) or "all points"
        groups.setdefault(label, []).append(run)
    for members in groups.values():
        members.sort(key=lambda r: r["overrides"][x_key])
    return groups


def _get(metrics: dict, dotted: str) -> float:
    node: Any = metrics
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else np.nan


def _ticks_at_points(ax, values: list) -> None:
    """A log x axis labelled at the swept values themselves (500, 2,000, 8,000), not at matplotlib's
    ``2×10^2, 3×10^2, 4×10^2`` minor ticks that crowd a short range."""
    if not values or len(values) > 12:
        return
    ax.set_xticks(values, [f"{v:,g}" if isinstance(v, (int, float)) else str(v) for v in values])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def plot_hit_ratio_vs_capacity(runs: list[dict], axes: list[str], path: Path) -> Path | None:
    capacity = next((k for k in axes if k.endswith(CAPACITY_SUFFIXES)), None)
    if "cache.policy" not in axes or capacity is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for policy in dict.fromkeys(r["overrides"].get("cache.policy") for r in runs if not r.get("error")):
        mine = [r for r in runs if r["overrides"].get("cache.policy") == policy]
        for label, members in _series(mine, axes, capacity, exclude=("cache.policy",)).items():
            xs = [m["overrides"][capacity] for m in members]
            ax.plot(xs, [_get(m["metrics"], "hit_ratio") for m in members], marker="o",
                    label=policy if label == "all points" else f"{policy} ({label})")
    unit = "GiB" if capacity.endswith("_gib") else "blocks"
    ax.set(xscale="log", xlabel=f"{capacity} ({unit}, log scale)", ylabel="block hit ratio",
           title="hit ratio vs capacity, per policy")
    _ticks_at_points(ax, sorted({r["overrides"][capacity] for r in runs if capacity in r["overrides"]}))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_latency_vs_rate(runs: list[dict], axes: list[str], path: Path) -> Path | None:
    rate = next((k for k in axes if k in RATE_AXES), None)
    if rate is None or not any("ttft_s" in r["metrics"] for r in runs if not r.get("error")):
        return None
    fig, (ax_ttft, ax_tpot) = plt.subplots(1, 2, figsize=(13, 4.8))
    for label, members in _series(runs, axes, rate).items():
        xs = [m["overrides"][rate] for m in members]
        for ax, metric in ((ax_ttft, "ttft_s"), (ax_tpot, "tpot_s")):
            line, = ax.plot(xs, [_get(m["metrics"], f"{metric}.p50") for m in members], marker="o", label=f"{label} p50")
            ax.plot(xs, [_get(m["metrics"], f"{metric}.p99") for m in members], marker="s", linestyle="--",
                    color=line.get_color(), label=f"{label} p99")
    base = _base_rate(runs) if rate == "workload.rate_scale" else None
    for ax, title in ((ax_ttft, "time to first token"), (ax_tpot, "time per output token")):
        ax.set(xlabel=RATE_AXES[rate], ylabel="seconds (log scale)", yscale="log", title=f"{title}: p50 and p99")
        ax.grid(alpha=0.3, which="both")
        if base is not None:  # the scale's requests/s on top (the title moves above it)
            top = ax.secondary_xaxis("top", functions=(lambda x, b=base: x * b, lambda x, b=base: x / b))
            top.set_xlabel("offered load (requests/s)")
    ax_ttft.legend(fontsize=7)
    return save(fig, path)


def _base_rate(runs: list[dict]) -> float | None:
    """The workload's own request rate (requests/s at rate_scale 1) shared by every run of a rate-scale sweep (their
    ``offered_rps`` over their scale, ``experiments.sweep.offered_rates``), or None where runs lack it or differ (a
    trace axis: one secondary axis cannot label them all)."""
    ratios = []
    for run in runs:
        if run.get("error"):
            continue
        offered, scale = run["metrics"].get("offered_rps"), run["overrides"].get("workload.rate_scale")
        if not isinstance(offered, (int, float)) or not isinstance(scale, (int, float)) or scale <= 0:
            return None
        ratios.append(offered / scale)
    if not ratios or max(ratios) > min(ratios) * (1 + 1e-9):
        return None
    return ratios[0]


def plot_goodput_vs_split(runs: list[dict], axes: list[str], base_config: dict, path: Path) -> Path | None:
    if "pd.num_prefill" not in axes:
        return None
    ok = [r for r in runs if not r.get("error")]
    metric = "goodput_rps" if any("goodput_rps" in r["metrics"] for r in ok) else "throughput_tokens_per_s"
    if not any(metric in r["metrics"] for r in ok):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    default_decode = base_config["pd"]["num_decode"]
    for label, members in _series(ok, axes, "pd.num_prefill", exclude=("pd.num_decode",)).items():
        names = [f"{m['overrides']['pd.num_prefill']}:{m['overrides'].get('pd.num_decode', default_decode)}"
                 for m in members]
        ax.plot(names, [_get(m["metrics"], metric) for m in members], marker="o", label=label)
    ylabel = "goodput (requests/s meeting the SLO)" if metric == "goodput_rps" else "throughput (output tokens/s)"
    ax.set(xlabel="prefill : decode instances", ylabel=ylabel, title=f"{metric.split('_')[0]} vs P:D split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_max_rate(runs: list[dict], axes: list[str], path: Path) -> Path | None:
    ok = [r for r in runs if not r.get("error") and r["metrics"].get("max_rate_rps") is not None]
    if not ok:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(ok) + 3), 4.8))
    # a rate the search marked as no steady state (the workload arrived as one burst) is hatched and named in
    # the legend: its bar is not a rate the configuration sustains
    burst = [(r["metrics"].get("max_rate_search") or {}).get("steady_state") is False for r in ok]
    bars = ax.bar(range(len(ok)), [r["metrics"]["max_rate_rps"] for r in ok], color="tab:blue",
                  label="max rate")
    for bar, flagged in zip(bars, burst, strict=True):
        if flagged:
            bar.set(hatch="//", facecolor="white", edgecolor="tab:blue")
    if any(burst):
        from matplotlib.patches import Patch

        handles = [Patch(facecolor="tab:blue", label="sustained")] if not all(burst) else []
        handles.append(Patch(facecolor="white", edgecolor="tab:blue", hatch="//",
                             label="not sustained: the run is one burst (replay more requests)"))
        ax.set_ylim(0, 1.35 * max(r["metrics"]["max_rate_rps"] for r in ok))  # headroom: the legend above the bars
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.set_xticks(range(len(ok)), [r["name"] for r in ok], rotation=30, ha="right")
    ax.set(xlabel=f"point ({' / '.join(axes)})", ylabel="max request rate meeting the SLO (req/s)",
           title="max rate under SLO, per point")
    ax.grid(alpha=0.3, axis="y")
    return save(fig, path)


def plot_sweep(report: dict, axes: list[str], plot_dir: Path) -> list[Path]:
    """Every sweep plot its axes allow; the paths written."""
    runs = report["runs"]
    made = [
        plot_hit_ratio_vs_capacity(runs, axes, plot_dir / "sweep_hit_ratio_vs_capacity.png"),
        None if (report.get("sweep") or {}).get("max_rate") else  # --max-rate sets each point's rate itself
        plot_latency_vs_rate(runs, axes, plot_dir / "sweep_latency_vs_rate.png"),
        plot_goodput_vs_split(runs, axes, report["config"], plot_dir / "sweep_goodput_vs_pd_split.png"),
        plot_max_rate(runs, axes, plot_dir / "sweep_max_rate.png"),
    ]
    return [p for p in made if p is not None]


def plot_pareto(candidates: list[dict], target: float | None, path: Path, y_key: str, y_label: str,
                source: str | None = None) -> Path | None:
    """Planner: cost vs the target metric of every timed candidate, the Pareto front and the chosen point. None (no
    file) where no candidate has the metric (every one pruned, infeasible or failed): an empty frame around no point,
    on an autoscaled cost axis from -0.04 USD/h, said nothing. A max rate that is a lower bound (``lower_bound``: its
    search met at every rate it tried, up to 2^24 times its start, 6.7e8 req/s) is drawn as a triangle pointing up:
    at its value where that lies within the axis the others and the target set (to 1.15x their highest), else at
    that axis's top, labelled with its value (drawn at its value it pressed every other point onto 0). ``source``:
    the plan's run it is of (``plots.save``)."""
    timed = [c for c in candidates if c.get(y_key) is not None]
    if not timed:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.8))  # taller: the legend sits below the axes
    bounded = [c for c in timed if not c.get("lower_bound")]
    # the axis the exact values (and the target) set; a lower bound above it sits at its top, clipped
    top = max([c[y_key] for c in bounded] + ([target] if target is not None else []), default=None)
    top = top * 1.15 if top else None
    clipped = {c["name"] for c in timed if c.get("lower_bound") and top is not None and c[y_key] > top}

    def y(c: dict) -> float:
        return top if c["name"] in clipped else c[y_key]

    ax.scatter([c["cost_usd_per_hour"] for c in bounded], [c[y_key] for c in bounded], color="lightgray",
               edgecolor="gray", label="candidates", zorder=2)
    lower = [c for c in timed if c.get("lower_bound")]
    if lower:
        ax.scatter([c["cost_usd_per_hour"] for c in lower], [y(c) for c in lower], marker="^", s=80, color="lightgray",
                   edgecolor="black", zorder=2, clip_on=False,
                   label="lower bound: every rate tried met" + (" (clipped to the top, value beside it)" if clipped else ""))
        for c in lower:
            if c["name"] in clipped:
                ax.annotate(f"≥ {c[y_key]:.3g}", (c["cost_usd_per_hour"], top), fontsize=7, xytext=(0, -12),
                            textcoords="offset points", ha="center")
    front = sorted((c for c in timed if c.get("pareto")), key=lambda c: c["cost_usd_per_hour"])
    if front:
        ax.plot([c["cost_usd_per_hour"] for c in front], [y(c) for c in front], marker="o", color="tab:blue",
                drawstyle="steps-post", label="Pareto front", zorder=3, clip_on=False)
        costs = [c["cost_usd_per_hour"] for c in timed]
        middle = (min(costs) + max(costs)) / 2
        for c in front:  # a label runs away from the nearer side, so none leaves the axes
            right = c["cost_usd_per_hour"] > middle
            ax.annotate(c["name"], (c["cost_usd_per_hour"], y(c)), fontsize=7, xytext=(-4 if right else 4, 4),
                        textcoords="offset points", ha="right" if right else "left")
    chosen = [c for c in timed if c.get("chosen")]
    if chosen:
        ax.scatter([chosen[0]["cost_usd_per_hour"]], [y(chosen[0])], marker="*", s=250, color="tab:red",
                   label=f"chosen: {chosen[0]['name']}", zorder=4, clip_on=False)
    if target is not None:
        ax.axhline(target, color="tab:red", linestyle=":", label=f"target {target:g}")
    ax.margins(x=0.1)
    if clipped:
        ax.set_ylim(0.0, top)
    ax.set(xlabel="cost (USD per hour)", ylabel=y_label, title="planner: cost vs capability")
    ax.grid(alpha=0.3)
    # below the axes: never over a point or a label
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return save(fig, path, source)
