"""A plot is laid out once and drawn once (``sim.report.plots.save``), and its PNG is the bytes that tight_layout and
savefig wrote before: savefig drew every figure twice, once unrendered for the placeholder engine tight_layout
leaves on it."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sim.report.output import atomic_write
from sim.report.plots import plt, save


def _figure():
    """A figure with the parts the run plots have: subplots, a log axis, step lines, a legend, a title."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    x = np.sort(np.random.default_rng(3).lognormal(size=500))
    axes[0].step(x, np.arange(1, 501) / 500, where="post", label="lru")
    axes[0].set(xscale="log", xlabel="seconds (log scale)", ylabel="fraction of requests", title="TTFT")
    axes[0].legend(fontsize=8)
    axes[1].bar([0, 1], [0.4, 0.7], label="hbm")
    axes[1].set(ylabel="fraction of block lookups", title="hits by tier")
    fig.suptitle("pd: latency")
    return fig


def test_a_plot_is_drawn_once(tmp_path, monkeypatch):
    draws = []
    draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda fig, renderer: draws.append(fig) or draw(fig, renderer))
    save(_figure(), tmp_path / "a.png")
    assert len(draws) == 1  # the draw savefig writes (tight_layout measures the text without drawing)


def test_a_plot_is_the_png_tight_layout_and_savefig_wrote(tmp_path):
    """Differential: the bytes of the way every plot was written before (tight_layout, then savefig)."""
    save(_figure(), tmp_path / "new.png")
    fig = _figure()
    fig.tight_layout()
    with atomic_write(tmp_path / "before.png", binary=True) as fh:
        fig.savefig(fh, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    assert (tmp_path / "new.png").read_bytes() == (tmp_path / "before.png").read_bytes()
