"""Notes a serving run prints about its workload that its report alone would not show (``kvsim: note:`` lines)."""

from __future__ import annotations

import logging

import numpy as np

from sim.config import Config
from sim.report.metrics import RequestTable
from trace.continuations import GeneratedBlocks
from trace.request import Trace

LOG = logging.getLogger("kvsim.serving")


def note_sessionless_affinity(trace: Trace, config: Config, routing: str) -> None:
    """A session-affinity run on a workload without session ids routes every request as least-loaded does: say so
    (hexplore's F5; the session prefetch is refused there, but a router list may compare several on one trace)."""
    if routing == "session-affinity" and not (trace.session_id >= 0).any():
        source = config.workload.trace or f"the synthetic {config.workload.synthetic.kind} workload"
        LOG.warning("kvsim: note: router session-affinity: %s has no session ids: every request goes to the least "
                    "loaded instance, as least-loaded routes it", source)


def note_early_turns(generated: GeneratedBlocks | None, table: RequestTable) -> None:
    """Say how many turns looked their prompt up before the request whose answer it holds had finished (hexplore2's
    S1: at --rate-scale 50, 13 of 18 follow-up turns arrived before it, and hits fell from 1,780 to 1,375 with no
    word): such a turn is served as recorded, its prompt's copy of that answer computed as prompt tokens, since the
    answer is not yet generated. A rate scale compresses think times so; a deployment slower than the trace's server
    does too. The lookup is at the turn's first admission (``scheduled``), or before the fetch a cluster's connector
    made for it (``fetch``): a turn that arrived early but waited for a slot until the answer was cached found it."""
    if generated is None or generated.successor is None:
        return
    asked = np.flatnonzero(generated.successor >= 0)
    turns = generated.successor[asked]
    early = int(np.count_nonzero(table.scheduled[turns] - table.fetch[turns] < table.last_token[asked]))
    if early:
        LOG.warning("kvsim: note: %s of %s turns that continue an earlier request were looked up before it finished "
                    "(their prompt holds its answer, not yet generated: computed as prompt tokens, not found cached); "
                    "a rate scale above 1, or a deployment slower than the trace's, shortens the think time between "
                    "turns", f"{early:,}", f"{len(asked):,}")
