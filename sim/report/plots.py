"""PNG plots (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
import os
from pathlib import Path

# kvsim draws its PNGs headless with Agg, whatever MPLBACKEND says: matplotlib reads that variable when first imported
# and refuses a name it does not know (MPLBACKEND=foo was an internal error once the run was done, its plots not
# drawn), so it is hidden from that import (this module imports matplotlib first: serving_plots, sweep_plots import
# it from here) and left as it was for any other program.
_user_backend = os.environ.pop("MPLBACKEND", None)
try:
    import matplotlib
finally:
    if _user_backend is not None:
        os.environ["MPLBACKEND"] = _user_backend

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sim.report.output import atomic_write  # noqa: E402
from trace.request import Trace  # noqa: E402
from trace.stats import RATE_BIN_S, arrival_rate_bins  # noqa: E402

POINT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def save(fig, path: Path, source: str | None = None) -> Path:
    """Lay out and write a figure as PNG (no software stamp, so reruns give the same bytes), atomically
    (see ``sim.report.output``), then close it. ``source``: what the plot is of, kept in the PNG's ``Source`` text
    (``plot_source`` reads it back)."""
    try:
        # tight_layout leaves a placeholder layout engine on the figure, and savefig draws a figure that has an
        # engine once more (unrendered, for the engine) before the draw it writes: the layout is done, so the figure
        # goes without one (None, whatever a matplotlibrc's figure.autolayout says). The same bytes, ~25% less time.
        # Without one before tight_layout too: a figure made under a matplotlibrc's figure.constrained_layout.use has
        # a constrained engine (never run), which tight_layout replaced with a UserWarning on stderr for every plot.
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
            fig.tight_layout()
            fig.set_layout_engine(None)
        with atomic_write(path, binary=True) as fh:
            fig.savefig(fh, format="png", dpi=100, metadata={"Software": None, **({"Source": source} if source else {})})
    finally:
        plt.close(fig)
    return path


def plot_source(path: Path) -> str | None:
    """The ``Source`` a kvsim plot at ``path`` was saved with (``save``); None where there is no file, or none is
    given, or the file is no PNG."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.text.get("Source") if hasattr(image, "text") else None
    except (OSError, ValueError, SyntaxError):  # (no file; not an image PIL reads)
        return None


PLOT_RATE_BINS = 10_000  # at most this many arrival-rate bins drawn (a figure 1,500 pixels wide shows fewer)
# the highest arrival rate drawn: matplotlib's tick locator scales an axis's range by its steps (up to 10x, twice),
# which overflows a double near its largest value, 1.8e308 (a trace 2 requests 1e-308 s apart was an internal error
# after its trace-stats were printed); no physical rate comes near it
DRAWN_RATE_MAX = 1e300


def plot_trace_stats(trace: Trace, path: Path) -> Path:
    """Arrival rate over time and prompt/output length distributions of one trace."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    # the bins of rate_peak_rps (the last to the last arrival), coarser by a whole factor where a long span would
    # draw more than PLOT_RATE_BINS of them (a trace over 3e8 s drew 3e7 bins for over ten minutes)
    span = float(trace.arrival_s[-1] - trace.arrival_s[0]) if len(trace) else 0.0
    bin_s = RATE_BIN_S * max(1, math.ceil(span / RATE_BIN_S / PLOT_RATE_BINS))
    rates, edges = arrival_rate_bins(trace.arrival_s, bin_s)
    # each bin drawn over its whole width: a step plot ends at its last point, so the last bin needs its right edge
    if len(rates) and rates.max() <= DRAWN_RATE_MAX:
        axes[0].stairs(rates, edges, baseline=None)
    elif len(rates):  # (rate_mean_rps and rate_peak_rps give it)
        axes[0].text(0.5, 0.5, f"a rate of {rates.max():.4g} requests/s: beyond what the plot draws",
                     ha="center", va="center", wrap=True, transform=axes[0].transAxes)
    elif len(trace):  # no span, so no bins (rate_mean_rps and rate_peak_rps are 0): said, not an empty panel
        said = "one request: no rate over time" if len(trace) == 1 else \
            f"all {len(trace):,} requests arrive at one instant: no rate over time"
        axes[0].text(0.5, 0.5, said, ha="center", va="center", wrap=True, transform=axes[0].transAxes)
    axes[0].set(title=f"Arrival rate ({bin_s:.0f} s bins)", xlabel="time (s)", ylabel="requests/s",
                ylim=(0, None))  # from zero: a rate axis cut at its minimum makes a small dip look like a stop
    for ax, values, label in ((axes[1], trace.input_tokens, "input"), (axes[2], trace.output_tokens, "output")):
        ax.hist(values, bins=60, color="tab:blue" if label == "input" else "tab:orange")
        ax.set(title=f"{label} tokens per request", xlabel="tokens", ylabel="requests")
    name = Path(trace.provenance.path).name if trace.provenance.path else trace.provenance.format
    fig.suptitle(f"{name}: {len(trace):,} requests")
    return save(fig, path)


def plot_mrc(runs: list[dict], path: Path, title: str, block_bytes: int | None = None) -> Path:
    """The LRU miss-ratio curve (hit ratio vs capacity) with each policy's point at its capacity; with ``block_bytes``
    (a block's bytes in the cache, the run's model and config: ``stored_block_bytes``) a top axis in GiB, what a
    capacity costs in memory."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = 0
    for run in runs:
        metrics = run["metrics"]
        if "mrc" in metrics:
            curve = metrics["mrc"]
            label = "LRU (exact MRC)" if curve["method"] == "exact" else f"LRU (SHARDS, rate {curve['sample_rate']:g})"
            ax.plot(curve["capacity_blocks"], curve["hit_ratio"], label=label, color="black", lw=1)
        elif "capacity_blocks" in metrics and metrics["capacity_blocks"]:
            # hollow markers of a shape each: policies with equal hit ratios (LRU and ARC often) sit on one spot
            # and must all stay visible, not the last one drawn hiding the others
            marker = POINT_MARKERS[points % len(POINT_MARKERS)]
            ax.scatter([sum(metrics["capacity_blocks"].values())], [metrics["hit_ratio"]], label=run["name"],
                       marker=marker, s=90 - 12 * (points % 5), facecolors="none", linewidths=1.6,
                       edgecolors=f"C{points % 10}", zorder=3)
            points += 1
    ax.set(xscale="log", xlabel="cache capacity (blocks, log scale)", ylabel="block hit ratio",
           title=f"LRU miss-ratio curve and each policy's point: {title}")
    if block_bytes:
        gib = block_bytes / 2**30
        top = ax.secondary_xaxis("top", functions=(lambda x: x * gib, lambda x: x / gib))
        top.set_xlabel(f"cache capacity (GiB at {block_bytes / 2**20:,.4g} MiB a block)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
