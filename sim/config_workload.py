"""The ``workload`` section of the config: where requests come from (a trace file, or a seeded synthetic generator
when none is given) and the arrival process laid over them. Part of the schema of ``sim.config``, whose ``Config``
holds it as ``workload``; the trace loaders and generators (``trace/``) read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sim.config_fields import POSITIVE, domain

MAX_SYNTHETIC_REQUESTS, MAX_TURNS = 100_000_000, 4096  # ten times the largest trace the loader is benchmarked on
# (10M rows); a synthetic conversation's turns (trace.synthetic caps them: a bound on memory)


@dataclass(frozen=True)
class SyntheticConfig:
    """Seeded synthetic workload, used when no trace file is given."""

    kind: Literal["multi-turn", "system-prompt", "rag", "agentic"] = "multi-turn"
    num_requests: int = domain(2000, ge=1, le=MAX_SYNTHETIC_REQUESTS)
    rate_rps: float = domain(5.0, **POSITIVE)
    input_tokens_mean: int = domain(1024, ge=1)
    output_tokens_mean: int = domain(200, ge=1)
    # agentic: about this many agent sessions begin in the window, each of ceil(num_requests / num_sessions) steps
    # (~rate_rps x 2 s are under way at once, whatever this; multi-turn conversations follow from the rate)
    # (start empty draws every session's start and steps at once, arrays of num_sessions: bounded as the requests are;
    # 10^11 ran out of memory and 9e18 was a numpy traceback, internal errors)
    num_sessions: int = domain(200, ge=1, le=MAX_SYNTHETIC_REQUESTS)
    # multi-turn: conversations start as a Poisson process at rate_rps / the mean turns drawn. Turns per
    # conversation: beta-geometric with this mean (LMSYS-Chat-1M, Zheng et al., ICLR 2024, Table 1:
    # 2.0 turns per conversation; ShareGPT 3.5) ...
    turns_mean: float = domain(2.0, ge=1, le=MAX_TURNS)  # (above the cap, the mean could not be drawn)
    # ... and this concentration (a + b of the Beta of each conversation's chance to go on; lower: the
    # chance rises faster with the turns taken; assumed, not measured).
    turns_concentration: float = domain(4.0, gt=1)
    # Seconds from one turn's arrival to the next's (response + the user's think time): log-normal.
    # Measured on the bundled Mooncake conversation trace (FAST'25) between turns found by prefix
    # containment (learned.features.previous_turn): quartiles 39 / 93 / 225 s, so median 93 s and
    # sigma (ln 225 - ln 39) / 1.349 = 1.3.
    think_time_median_s: float = domain(93.0, **POSITIVE)
    think_time_sigma: float = domain(1.3, ge=0)
    # What the window opens on (multi-turn, agentic). steady: the conversations (agent sessions) a long-running
    # service has under way at t = 0 (each with the chance a stationary process gives it, its earlier turns' tokens in
    # its first prompt in the window), so requests arrive at rate_rps from the start, as in a trace cut from live
    # traffic. empty: none, so later turns fill in slowly (the defaults' first 2,000 multi-turn requests came at 3.7 a
    # second, not 5).
    start: Literal["steady", "empty"] = "steady"
    # The pools' Zipf weights are an array of the pool's size (trace.synthetic._zipf_choice): bounded as the requests
    # are (a pool of 1e8 is 2.5 GB and 12 s to draw from; 1e9 ran out of memory, 2^63 - 1 was a numpy traceback)
    num_prefixes: int = domain(20, ge=1, le=MAX_SYNTHETIC_REQUESTS)  # system-prompt: distinct system prompts
    prefix_tokens: int = domain(1024, ge=0)  # system-prompt: tokens of each system prompt
    num_documents: int = domain(500, ge=1, le=MAX_SYNTHETIC_REQUESTS)  # rag: document pool size
    document_tokens: int = domain(2048, ge=1)  # rag: tokens per document
    documents_per_request: int = domain(2, ge=1)  # rag
    zipf_alpha: float = domain(1.0, ge=0)  # popularity skew of prefixes / documents (0: uniform)


@dataclass(frozen=True)
class ArrivalsConfig:
    """The arrival process laid over the workload's requests (kept in their order).

    ``trace`` keeps the trace's (or the synthetic generator's) own arrival times; ``poisson`` and ``gamma`` draw
    fresh inter-arrival times; ``resample`` re-draws the workload's own (with replacement) at the rate."""

    process: Literal["trace", "poisson", "gamma", "resample"] = "trace"
    rate_rps: float | None = domain(None, **POSITIVE)  # mean rate of the drawn process; None: the workload's own
    # gamma: coefficient of variation of the gaps (1 = Poisson, > 1 bursty); its shape 1/cv² needs cv² finite, not 0
    cv: float = domain(1.0, ge=1e-100, lt=1e100)


@dataclass(frozen=True)
class WorkloadConfig:
    """Where requests come from and how rows are validated."""

    trace: str | None = None
    format: Literal["auto", "azure", "burstgpt", "mooncake", "splitwise", "llmservingsim"] = "auto"
    cache: str | None = None  # --workload-cache: the loaded trace kept here (trace/cache.py), rebuilt when stale
    limit: int | None = domain(None, ge=1)
    time_unit: Literal["s", "ms", "us", "ns"] | None = None  # None: the format's own unit
    strict_validation: bool = False
    # Traces with their own block ids (Mooncake: 512 tokens a block): "trace" replays them at the
    # trace's block size (the run's serving.block_size becomes it); "split" cuts each into
    # serving.block_size pieces; "error" refuses a serving.block_size that differs.
    block_mismatch: Literal["trace", "split", "error"] = "trace"
    max_input_tokens: int | None = domain(None, ge=1)  # truncate longer prompts to this many tokens (counted in the report)
    # A request whose prompt + output exceeds this is skipped and counted (too_many_tokens), so a
    # corrupt row never drives a huge allocation. None: the longest context of any model in
    # profiles/models.yaml (see request_token_bound).
    max_request_tokens: int | None = domain(None, ge=1)
    range_start: float = domain(0.0, ge=0, lt=1)  # use requests from this fraction of the trace (arrival order) ...
    range_end: float = domain(1.0, gt=0, le=1)  # ... up to this one: e.g. train on 0-0.5, evaluate on 0.5-1
    rate_scale: float = domain(1.0, **POSITIVE)  # divides every inter-arrival time (2 = twice the request rate)
    # A conversation's next prompt holds what the server generated for the turn before (a production trace; a client
    # that sends the answers back): the serving modes' caches find those blocks (trace/continuations.py). False: the
    # prompts are replayed as recorded and the server's answers differ (a benchmark of fixed prompts); generated
    # blocks are cached all the same, never found.
    outputs_in_next_turn: bool = True
    arrivals: ArrivalsConfig = ArrivalsConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
