"""The modes an experiment can run, as one small importable API over the command line's run functions
(``sim.mode_runs``).

``run_mode(mode, config)`` runs one mode exactly as the command line does (same
function, same results), minus printing and plots, and returns the trace provenance
and the runs. Adding a mode is one registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.config import Config
from sim.errors import ConfigError
from sim.mode_runs import run_quietly
from sim.report.document import RunResult

# mode name -> the main.py flag that selects it (None: the default single-node mode)
MODES: dict[str, str | None] = {
    "cache-only": "--cache-only",
    "single": None,
    "pd": "--pd",
    "cluster": "--cluster",
}
SERVING_MODES = ("single", "pd", "cluster")


@dataclass
class ModeOutput:
    """What one mode invocation produced: the trace provenance and its runs."""

    trace: dict[str, Any]
    runs: list[RunResult]


def check_mode(mode: str, where: str = "mode") -> None:
    """Exit-2 error for an unknown mode, naming the key."""
    if mode not in MODES:
        raise ConfigError(f"{where}: unknown mode {mode!r}; valid: {', '.join(MODES)}")


def run_mode(mode: str, config: Config, policies: list[str] | None = None, cluster_pd: bool = False,
             routers: list[str] | None = None) -> ModeOutput:
    """Run ``mode`` on ``config`` through the command line's own run function (several ``policies`` or ``routers``: one run
    each, their product; ``cluster_pd``: the cluster mode with prefill/decode pools, ``--cluster --pd``)."""
    check_mode(mode)
    trace, runs = run_quietly(mode, config, list(policies or []), cluster_pd=cluster_pd, routers=list(routers or []))
    return ModeOutput(trace, runs)
