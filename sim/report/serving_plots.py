"""Plots of one invocation's runs: latency CDFs, the TTFT breakdown, per-tier hit ratios and the
queue / batch / KV-cache timelines.

Each figure overlays every run of the invocation (one per policy, say) and is named by
the run kind (``pd_latency_cdf.png``, ``cache-only_tier_hits.png``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.report.document import RunResult
from sim.report.metrics import BREAKDOWN
from sim.report.plots import plt, save

TIERS = ("hbm", "dram", "ssd", "eic")
TIER_COLOURS = {"hbm": "tab:green", "dram": "tab:blue", "ssd": "tab:orange", "eic": "tab:purple"}
BREAKDOWN_COLOURS = ("tab:gray", "tab:purple", "tab:blue", "tab:orange", "tab:green")


def _cdf(ax, values: np.ndarray, label: str) -> None:
    v = np.sort(values[np.isfinite(values)])
    if len(v):
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=label)


def plot_latency_cdfs(runs: list[RunResult], path: Path, kind: str) -> Path | None:
    """TTFT, TPOT and E2E empirical CDFs, one line per run (needs per-request values)."""
    runs = [r for r in runs if r.per_request is not None]
    if not runs:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("ttft_s", "tpot_s", "e2e_s"),
                              ("time to first token", "time per output token", "end-to-end latency"), strict=True):
        for run in runs:
            _cdf(ax, run.per_request[key], run.name)
        values = np.concatenate([run.per_request[key] for run in runs])
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and values.max() > 10 * values.min():  # a log axis only where it has decades to show
            ax.set(xlabel="seconds (log scale)", xscale="log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels on a short log range overlap
        else:
            ax.set(xlabel="seconds")
        ax.set(title=title, ylabel="fraction of requests", ylim=(0, 1.01))
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{kind}: latency CDFs")
    return save(fig, path)


def _stacked_bars(runs: list[RunResult], segments: list[tuple[str, str, np.ndarray]]):
    """A bar per run stacked from ``segments`` (label, colour, value per run): (fig, ax, x, stacked top)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(runs) + 3), 4.5))
    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    for label, colour, values in segments:
        ax.bar(x, values, bottom=bottom, label=label, color=colour)
        bottom += values
    ax.set_xticks(x, [r.name for r in runs], rotation=20 if len(runs) > 3 else 0, ha="right" if len(runs) > 3 else "center")
    return fig, ax, x, bottom


def plot_ttft_breakdown(runs: list[RunResult], path: Path, kind: str) -> Path | None:
    """Mean TTFT split into queue, KV load, prefill, KV transfer and first decode, a stacked bar per run."""
    runs = [r for r in runs if "ttft_breakdown_s" in r.metrics]
    if not runs:
        return None
    parts = {part: np.array([r.metrics["ttft_breakdown_s"][part] or 0.0 for r in runs]) for part in BREAKDOWN}
    # milliseconds, or seconds once a bar reaches one (an axis of 17,500 ms reads worse than 17.5 s)
    scale, unit = (1.0, "s") if sum(parts.values()).max() >= 1.0 else (1e3, "ms")
    # a part that is zero in every run (no KV transfer outside PD) is named in the title, not drawn or listed
    zero = [part.replace("_", " ") for part in BREAKDOWN if not parts[part].any()]
    fig, ax, x, top = _stacked_bars(runs, [(part.replace("_", " "), colour, parts[part] * scale)
                                           for part, colour in zip(BREAKDOWN, BREAKDOWN_COLOURS, strict=True)
                                           if parts[part].any()])
    for xi, total in zip(x, top, strict=True):  # the parts' sum, which is the report's ttft_s.mean
        ax.annotate(f"{total:.4g} {unit}", (xi, total), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8)
    ax.set(ylabel=f"mean TTFT ({unit})", title=f"{kind}: TTFT breakdown (mean per request)"
           + (f"\n(zero in every run: {', '.join(zero)})" if zero else ""))
    ax.set_ylim(0, 1.1 * max(top.max(), 1e-9))  # headroom for the totals
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over one
    ax.grid(alpha=0.3, axis="y")
    return save(fig, path)


def plot_tier_hits(runs: list[RunResult], path: Path, kind: str) -> Path | None:
    """Share of block lookups served by each tier (stacked), the rest being misses."""
    runs = [r for r in runs if "tier_hit_ratio" in r.metrics]
    if not runs:
        return None
    shares = {tier: np.array([r.metrics["tier_hit_ratio"].get(tier) or 0.0 for r in runs]) for tier in TIERS}
    # a tier no run hit gets no segment and no legend entry (the title names them): a legend lists what is drawn
    idle = [tier.upper() for tier in TIERS if not shares[tier].any()]
    fig, ax, x, bottom = _stacked_bars(runs, [(tier.upper(), TIER_COLOURS[tier], shares[tier])
                                              for tier in TIERS if shares[tier].any()])
    ax.bar(x, 1.0 - bottom, bottom=bottom, label="miss", color="lightgray")
    for xi, hit in zip(x, bottom, strict=True):  # the hit ratio written on each bar: a few % is a sliver at this scale
        top = hit > 0.9  # near the top of the axes: written just below the bar's top instead of above it
        ax.annotate(f"hits {hit:.2%}", (xi, hit), xytext=(0, -3 if top else 3), textcoords="offset points",
                    ha="center", va="top" if top else "bottom", fontsize=8)
    title = f"{kind}: hits by tier" + (f"\n(no hits in {', '.join(idle)})" if idle else "")
    ax.set(ylabel="fraction of block lookups", ylim=(0, 1), title=title)
    ax.legend(fontsize=8, loc="upper right")
    return save(fig, path)


def _time_axis(runs: list[RunResult]) -> tuple[float, str]:
    """Seconds per unit and the unit's name for a time axis covering every run."""
    end = max(float(r.metrics["timeseries"]["t_s"][-1]) for r in runs if len(r.metrics["timeseries"]["t_s"]))
    return (3600.0, "h") if end > 3 * 3600 else (60.0, "min") if end > 3 * 60 else (1.0, "s")


def plot_timelines(runs: list[RunResult], path: Path, kind: str) -> Path | None:
    """Arrival and completion rates, queued and running requests, batch size (mean tokens per step in each
    interval, per instance role) and KV-cache occupancy over simulated time (the report's ``timeseries``)."""
    runs = [r for r in runs if len(r.metrics.get("timeseries", {}).get("t_s", ()))]
    if not runs:
        return None
    scale, unit = _time_axis(runs)
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        colour, ts = colours[i % len(colours)], run.metrics["timeseries"]
        t = np.asarray(ts["t_s"], dtype=float) / scale
        per_s = 1.0 / ts["interval_s"]
        axes[0].step(t, np.asarray(ts["arrivals"]) * per_s, where="post", color=colour, lw=0.9,
                     label=f"{run.name} arrivals")
        axes[0].step(t, np.asarray(ts["completions"]) * per_s, where="post", color=colour, ls="--", lw=0.9,
                     alpha=0.7, label=f"{run.name} completions")
        axes[1].plot(t, ts["running"], color=colour, lw=0.9, label=f"{run.name} running")
        axes[1].plot(t, ts["queued"], color=colour, ls="--", lw=0.9, alpha=0.7, label=f"{run.name} queued")
        # a line style per role: at most three (unified, prefill, decode), most runs have one or two
        for style, (role, work) in zip(("-", "--", ":"), ts["work"].items(), strict=False):
            steps = np.asarray(work["steps"], dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                batch = np.where(steps > 0, np.asarray(work["tokens"]) / steps, np.nan)
            axes[2].step(t, batch, where="post", color=colour, ls=style, lw=0.9, label=f"{run.name} {role}")
        axes[3].plot(t, np.asarray(ts["kv_usage"], dtype=float) * 100, color=colour, lw=0.9, label=run.name)
    axes[0].set(ylabel="requests/s", title=f"{kind}: load, queue, batch and KV cache over time "
                f"(intervals of {runs[0].metrics['timeseries']['interval_s']:.3g} s)")
    axes[1].set(ylabel="requests")
    axes[2].set(ylabel="tokens per step\n(interval mean)", yscale="log")
    axes[3].set(ylabel="KV blocks in use (%)", xlabel=f"simulated time ({unit})", ylim=(0, None))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return save(fig, path)


def plot_runs(runs: list[RunResult], plot_dir: Path, kind: str) -> list[Path]:
    """Every plot that applies to these runs; the paths written."""
    made = [
        plot_latency_cdfs(runs, plot_dir / f"{kind}_latency_cdf.png", kind),
        plot_ttft_breakdown(runs, plot_dir / f"{kind}_ttft_breakdown.png", kind),
        plot_tier_hits(runs, plot_dir / f"{kind}_tier_hits.png", kind),
        plot_timelines(runs, plot_dir / f"{kind}_timelines.png", kind),
    ]
    return [p for p in made if p is not None]
