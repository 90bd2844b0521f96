"""Seeded synthetic workloads with prefix structure: multi-turn chat, shared system prompts, RAG, agentic loops.

Every random draw comes from the ``numpy.random.Generator`` passed in. Lengths are
exponential with the configured means (at least one token); popularity of shared
prefixes and documents is Zipf(alpha) over a finite set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.config_workload import MAX_TURNS, SyntheticConfig
from sim.jit import njit
from trace import blocks as bm
from trace.request import Trace, TraceProvenance

# Mean seconds from one agent step's arrival to the next's (its generation and the tool's run): assumed, not measured,
# a fast tool loop. The one published agent trace found, TraceLab's coding agents (Claude Code and Codex; Zhu et al.,
# arXiv 2606.30560, tab:timing_distribution), averages 11.5 s of generation and 16.8 s of tools a step, heavy-tailed
# (medians 4.9 s and 0.1 s, p90 20.2 s and 10.0 s, p99 1.3 min and 3.2 min); it gives the two apart, not the law of
# their sum (the gap), and no published per-step gap law was found, so none is adopted here.
AGENT_STEP_GAP_MEAN_S = 2.0
# a conversation's turns are capped at MAX_TURNS (a bound on memory; the beta-geometric tail is long), which bounds
# workload.synthetic.turns_mean


@dataclass
class Drawn:
    """What a generator drew, per request in arrival order: either sessions (block keys follow from
    each session's growing context; ``context_start``: tokens of it dropped at the front) or explicit
    CSR block keys."""

    arrival: np.ndarray
    prompt: np.ndarray
    out: np.ndarray
    session: np.ndarray | None = None
    context_start: np.ndarray | None = None
    block_offsets: np.ndarray | None = None
    block_keys: np.ndarray | None = None


def _lengths(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return np.maximum(1, np.rint(rng.exponential(mean, n))).astype(np.int64)


def _zipf_choice(rng: np.random.Generator, k: int, alpha: float, size) -> np.ndarray:
    with np.errstate(over="ignore"):  # a steep alpha: rank ** alpha overflows to inf, its weight 1 / inf = 0, as meant
        weights = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** alpha
    return rng.choice(k, size=size, p=weights / weights.sum())


def _poisson_arrivals(rng: np.random.Generator, rate: float, n: int) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate, n))


@njit(cache=True, _nrt=False)
def _kahan_running_sums(values: np.ndarray, group: np.ndarray, total: np.ndarray, carry: np.ndarray,
                        out: np.ndarray) -> None:
    """``out[i]``: the sum of ``values`` of ``group[i]`` up to row ``i``, Kahan-compensated per group as pandas'
    ``groupby(...).cumsum()`` adds floats (its ``group_cumsum``); a NaN value gives NaN and is skipped.
    ``total`` and ``carry`` (zeros, one slot a group) hold each group's sum and compensation."""
    for i in range(values.size):
        g, value = group[i], values[i]
        if value != value:
            out[i] = np.nan
            continue
        y = value - carry[g]
        t = total[g] + y
        carry[g] = t - total[g] - y
        total[g] = t
        out[i] = t


def _running_sums(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sums of ``values`` within each group (``group``: non-negative ids), each from 0: the same numbers
    as ``pd.Series(values).groupby(group).cumsum()`` (compensated float sums; integers exact), without pandas."""
    if values.dtype.kind in "iu":
        return _integer_running_sums(values, group)
    values = np.ascontiguousarray(values, dtype=np.float64)
    group = np.ascontiguousarray(group, dtype=np.int64)
    slots = int(group.max()) + 1 if group.size else 0
    out = np.empty_like(values)
    _kahan_running_sums(values, group, np.zeros(slots), np.zeros(slots), out)
    return out


def _integer_running_sums(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Integer running sums per group: each row's sum so far among the rows of its group (integer sums are
    exact, so a stable sort by group and one cumulative sum give them, whatever the order of the groups)."""
    order = np.argsort(group, kind="stable")
    sums = np.cumsum(values[order])
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]]) if group.size else order
    before = np.repeat(sums[starts] - values[order][starts], np.diff(np.r_[starts, group.size]))
    out = np.empty_like(sums)
    out[order] = sums - before
    return out


def _conversation_turns(cfg: SyntheticConfig, rng: np.random.Generator, count: int) -> np.ndarray:
    """Turns of ``count`` conversations: geometric, each conversation with its own chance ``q`` to go on
    after a turn, ``q ~ Beta(a, b)`` (a beta-geometric law). Mean ``1 + a / (b - 1)`` = ``turns_mean``;
    ``a + b`` = ``turns_concentration``. The mixture makes the chance of another turn rise with the
    turns already taken (a long conversation is likely a chatty one), as real chat logs show."""
    if cfg.turns_mean <= 1.0:
        return np.ones(count, dtype=np.int64)
    a, b = _turns_beta(cfg)
    q = rng.beta(a, b, count)
    return np.minimum(rng.geometric(np.maximum(1.0 - q, 1e-12)), MAX_TURNS).astype(np.int64)


def _turns_beta(cfg: SyntheticConfig) -> tuple[float, float]:
    """(a, b) of the Beta of a conversation's chance to go on: mean turns ``1 + a / (b - 1)`` = ``turns_mean``,
    ``a + b`` = ``turns_concentration``."""
    b = (cfg.turns_concentration + cfg.turns_mean - 1.0) / cfg.turns_mean
    return cfg.turns_concentration - b, b


def _turns_beyond(cfg: SyntheticConfig) -> np.ndarray:
    """P(T > k) for k = 1 .. MAX_TURNS - 1: E[q^k] = prod_{j<k} (a + j) / (a + b + j) for q ~ Beta(a, b)."""
    a, b = _turns_beta(cfg)
    j = np.arange(MAX_TURNS - 1, dtype=np.float64)
    return np.cumprod((a + j) / (a + b + j))


def drawn_turns_mean(cfg: SyntheticConfig) -> float:
    """The mean turns a conversation is drawn with, its turns capped at ``MAX_TURNS``: E[min(T, K)] = sum over
    k < K of P(T > k). Below ``turns_mean`` when the beta-geometric's tail reaches past the cap (turns_mean 100 at
    concentration 4: ~19.8)."""
    if cfg.turns_mean <= 1.0:
        return 1.0
    return float(1.0 + _turns_beyond(cfg).sum())


def _length_biased_turns(cfg: SyntheticConfig, rng: np.random.Generator, count: int) -> np.ndarray:
    """Turns of ``count`` conversations drawn with chance proportional to (turns - 1) x P(turns), the capped law's
    (a conversation is under way at a given instant with chance proportional to its span, and its span is turns - 1
    think times): inverse CDF over the ``MAX_TURNS`` values, so the cap costs nothing."""
    turns = np.arange(1, MAX_TURNS + 1, dtype=np.float64)
    at_least = np.concatenate(([1.0], _turns_beyond(cfg)))  # P(T >= k)
    a, b = _turns_beta(cfg)
    law = at_least * (b / (a + b + turns - 1.0))  # P(T = k): stop after k turns with chance b / (a + b + k - 1)
    law[-1] = at_least[-1]  # every longer conversation is drawn with MAX_TURNS turns
    cdf = np.cumsum((turns - 1.0) * law)
    return 1 + np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")


def _think_time_split(cfg: SyntheticConfig, horizon: float) -> tuple[float, float]:
    """(E[G; G < H], H x P(G >= H)) for a think time G and ``horizon`` H: they sum to E[min(G, H)]. In logs, so an
    astronomical sigma (a mean that overflows) still gives the finite part below H."""
    from scipy.special import log_ndtr, ndtr  # only here: a trace-file run never loads scipy

    mu, sigma = np.log(cfg.think_time_median_s), cfg.think_time_sigma
    if sigma == 0.0:
        below = cfg.think_time_median_s < horizon
        return (cfg.think_time_median_s, 0.0) if below else (0.0, horizon)
    log_h = np.log(horizon)
    below = np.exp(mu + 0.5 * sigma * sigma + log_ndtr((log_h - mu - sigma * sigma) / sigma))
    return float(below), float(horizon * ndtr((mu - log_h) / sigma))


def _under_way(cfg: SyntheticConfig, rng: np.random.Generator, horizon: float):
    """The conversations a stationary process (starts at rate lambda = ``rate_rps`` / E[T]) has under way at 0 whose
    next turn comes before ``horizon``: (their turns, the turns taken before 0, that next turn's time).

    Such a conversation has its k-th gap straddle 0 for some k; summing the starts s < 0 over which that happens,
    next turns at t come at rate lambda E[T - 1] P(G > t). So on [0, H) they are Poisson with mean
    lambda E[T - 1] E[min(G, H)]; each has turns drawn length-biased (prop. to T - 1), the straddled gap uniform
    among its T - 1 (turns taken: 1 .. T - 1), and t uniform below min(G*, H), G* the straddling gap: log-normal
    size-biased, (mu + sigma^2, sigma), below H with weight E[G; G < H], else (weight H P(G >= H)) H itself. Exact,
    and at most ~``rate_rps`` x H conversations however long the think times, not days of warm-up."""
    if cfg.turns_mean <= 1.0:  # one-turn conversations: none is ever under way
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    from scipy.special import ndtr, ndtri  # only here: a trace-file run never loads scipy

    turns_mean = drawn_turns_mean(cfg)
    below, beyond = _think_time_split(cfg, horizon)
    count = rng.poisson(cfg.rate_rps / turns_mean * (turns_mean - 1.0) * (below + beyond))
    turns = _length_biased_turns(cfg, rng, count)
    taken = rng.integers(1, turns)
    straddle = np.full(count, horizon)
    short = rng.random(count) * (below + beyond) < below
    mu, sigma = np.log(cfg.think_time_median_s) + cfg.think_time_sigma ** 2, cfg.think_time_sigma
    if sigma == 0.0:
        straddle[short] = cfg.think_time_median_s
    else:  # inverse CDF of the size-biased log-normal cut at H
        cut = ndtr((np.log(horizon) - mu) / sigma)
        straddle[short] = np.exp(mu + sigma * ndtri((1.0 - rng.random(int(short.sum()))) * cut))
    return turns, taken, rng.random(count) * straddle


def _keep_latest(prompt: np.ndarray, out: np.ndarray, context_tokens: int | None):
    """A session's requests fitted to ``context_tokens`` as a chat front-end or an agent loop keeps its context in the
    model's window: the output is cut to leave one prompt token, and a prompt whose prompt + output would pass the
    limit keeps its latest tokens (the oldest are dropped). Returns (prompt, out, tokens dropped at the front)."""
    if context_tokens is None:
        return prompt, out, np.zeros_like(prompt)
    out = np.minimum(out, max(1, context_tokens - 1))
    dropped = np.maximum(prompt - (context_tokens - out), 0)
    return prompt - dropped, out, dropped


def _multi_turn(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int, context_tokens: int | None = None,
                keep: int | None = None):
    """Conversations start as a Poisson process (``rate_rps / drawn_turns_mean`` a second, so requests arrive at
    ``rate_rps`` on average: the turns drawn are capped, and a heavy-tailed law's capped mean falls short of
    ``turns_mean``, 8.9 at 10); each has a beta-geometric number of turns, a log-normal think time
    between turns, and each turn's prompt is the conversation so far (earlier turns' new tokens and
    responses) plus its own new tokens. A conversation longer than ``context_tokens`` keeps its most
    recent tokens (the oldest are dropped, as chat front-ends do), so its prefix changes from then on.
    ``start`` steady also draws the conversations under way at 0 (``_under_way``: their turns before 0 count in
    their context, and are not requests), so requests arrive at ``rate_rps`` from the start; empty draws none.
    The first ``num_requests`` turns in arrival order (from 0) are the workload; the first ``keep`` of them are drawn
    (nothing else depends on ``num_requests``)."""
    n = cfg.num_requests if keep is None else keep
    turns_mean = drawn_turns_mean(cfg)
    conversations = int(n / turns_mean * 1.1) + 64
    while True:  # enough conversations that no later one could arrive before the n-th request
        turns = _conversation_turns(cfg, rng, conversations)
        starts = _poisson_arrivals(rng, cfg.rate_rps / turns_mean, conversations)
        horizon = starts[-1]  # later conversations (not drawn) start after it
        taken = np.zeros(conversations, dtype=np.int64)  # turns before the window opens
        if cfg.start == "steady":  # conversations under way come first, their first turn in the window at `starts`
            under_way = _under_way(cfg, rng, horizon)
            turns, taken, starts = (np.concatenate(pair) for pair in zip(under_way, (turns, taken, starts)))
        total = int(turns.sum())
        first = np.zeros(len(turns), dtype=np.int64)
        np.cumsum(turns[:-1], out=first[1:])
        session = np.repeat(np.arange(len(turns), dtype=np.int64), turns)
        think = rng.lognormal(np.log(cfg.think_time_median_s), cfg.think_time_sigma, total)
        turn = np.arange(total, dtype=np.int64) - first[session]
        think[turn <= taken[session]] = 0.0  # a conversation's first turn in the window comes at its `starts`
        # Each conversation's own running sum: a sum over all conversations minus its value at the
        # conversation's start loses every digit below that sum's ulp, and one overflowing think
        # time (a wide think_time_sigma) made every later start inf - inf = NaN, so no request was
        # ever complete and this loop never ended.
        arrival = starts[session] + _running_sums(think, session)
        arrival[turn < taken[session]] = np.inf  # taken before the window: never in it
        complete = arrival < horizon
        if complete.sum() >= n:
            break
        conversations *= 2
    new = _lengths(rng, cfg.input_tokens_mean, total)
    out = _lengths(rng, cfg.output_tokens_mean, total)
    step = new + out
    history = np.cumsum(step) - step  # tokens of the conversation before this turn ...
    history -= history[first][session]  # ... counted from the conversation's start
    prompt, out, dropped = _keep_latest(history + new, out, context_tokens)
    order = np.argsort(arrival, kind="stable")[:n]
    return Drawn(arrival[order], prompt[order], out[order], session[order], context_start=dropped[order])


def _agents_under_way(cfg: SyntheticConfig, rng: np.random.Generator, steps: int):
    """The agent sessions a stationary process (starts at rate lambda = ``rate_rps`` / ``steps``, each of ``steps``
    steps apart by exponential gaps of mean g = ``AGENT_STEP_GAP_MEAN_S``) has under way at 0: (the steps each took
    before 0, the time of its next step).

    A session's k-th gap (k in 1 .. steps - 1) straddles 0 for starts in an interval as long as that gap: for each k,
    Poisson with mean lambda g, so Poisson(lambda (steps - 1) g) in all, k uniform. The straddling gap is size-biased
    and 0 uniform within it, so its part after 0 has density P(G > t) / g: exponential of mean g again. Exact, with
    no warm-up run."""
    count = rng.poisson(cfg.rate_rps / steps * (steps - 1) * AGENT_STEP_GAP_MEAN_S)
    return rng.integers(1, steps, count), rng.exponential(AGENT_STEP_GAP_MEAN_S, count)


def _length_sums(rng: np.random.Generator, mean: float, counts: np.ndarray) -> np.ndarray:
    """Sums of ``counts[i]`` lengths as ``_lengths`` draws them, without drawing each: a length max(1, rint(E)), E
    exponential of mean m, is 1 when E < 1.5, else (chance q = exp(-1.5 / m)) 2 + floor(E - 1.5), the floor
    geometric (memoryless E) with chance p = 1 - exp(-1 / m) to stop at each integer. So k lengths sum to
    k + M + NegativeBinomial(M, p), M ~ Binomial(k, q) of them above 1: exact, and one draw a sum however long."""
    above = rng.binomial(counts, np.exp(-1.5 / mean))
    extra = rng.negative_binomial(np.maximum(above, 1), -np.expm1(-1.0 / mean))
    return counts + np.where(above > 0, above + extra, 0)


class _AgentSteps:
    """The agent sessions of the window and their steps drawn so far: each session's steps in the order drawn
    (``chunks`` of (session, arrival)), its latest arrival, and the steps it has yet to take."""

    def __init__(self, rng: np.random.Generator, first: np.ndarray, left: np.ndarray):
        self.rng, self.last, self.left = rng, first, left
        self.chunks = [(np.arange(len(first)), first)]

    def add_sessions(self, first: np.ndarray, left: np.ndarray) -> None:
        """Sessions whose first step in the window comes at ``first``, with ``left`` steps after it."""
        self.chunks.append((len(self.last) + np.arange(len(first)), first))
        self.last, self.left = np.concatenate((self.last, first)), np.concatenate((self.left, left))

    def draw_until(self, horizon: float) -> None:
        """Draws each session's steps until one comes at or after ``horizon`` or it has none left, a little past the
        expected need at a time (a gap of the mean per step) so few rounds are needed and few steps drawn beyond."""
        while True:
            active = np.flatnonzero((self.last < horizon) & (self.left > 0))
            if active.size == 0:
                return
            expected = np.ceil((horizon - self.last[active]) / AGENT_STEP_GAP_MEAN_S * 1.1).astype(np.int64)
            want = np.minimum(self.left[active], expected + 4)
            owner = np.repeat(active, want)
            arrival = self.last[owner] + _running_sums(self.rng.exponential(AGENT_STEP_GAP_MEAN_S, len(owner)), owner)
            self.chunks.append((owner, arrival))
            self.last[active], self.left[active] = arrival[np.cumsum(want) - 1], self.left[active] - want

    def arrivals_before(self, horizon: float) -> int:
        return sum(int((arrival < horizon).sum()) for _, arrival in self.chunks)

    def drawn(self) -> tuple[np.ndarray, np.ndarray]:
        """(session, arrival) of every step drawn, session by session, each session's steps in order."""
        session = np.concatenate([owner for owner, _ in self.chunks])
        arrival = np.concatenate([arrival for _, arrival in self.chunks])
        order = np.argsort(session, kind="stable")
        return session[order], arrival[order]


def _draw_agent_steps(cfg: SyntheticConfig, rng: np.random.Generator, steps: int, n: int, agents: _AgentSteps,
                      sessions: int | None = None) -> None:
    """Adds to ``agents`` the sessions starting from 0 on (Poisson at ``rate_rps / steps`` a second, at most
    ``sessions`` of them; None: no end) and draws steps until ``n`` come before a time every step not drawn comes
    after. The time starts at the n-th request's expected arrival and grows while too few come before it; each draw
    goes on from the last (nothing drawn is discarded, so the draws are not selected by their own count). Memory and
    time grow with ``n``, not with the steps of the sessions the requests belong to."""
    rate = cfg.rate_rps / steps
    latest_start, horizon, started = 0.0, n / cfg.rate_rps * 1.05, 0
    while True:
        while latest_start < horizon and (sessions is None or started < sessions):  # those that start before it
            starts = latest_start + _poisson_arrivals(rng, rate, int((horizon - latest_start) * rate * 1.1) + 16)
            if sessions is not None:
                starts = starts[: sessions - started]
            agents.add_sessions(starts, np.full(len(starts), steps - 1))
            latest_start, started = starts[-1], started + len(starts)
        agents.draw_until(horizon)
        count = agents.arrivals_before(horizon)
        if count >= n:
            return
        horizon += (n - count + 1) / cfg.rate_rps * 1.1


def _steady_agent_steps(cfg: SyntheticConfig, rng: np.random.Generator, steps: int, n: int):
    """The steps of a stationary agentic process from 0 on, drawn only until ``n`` of them come before a time every
    step not drawn comes after (``_draw_agent_steps``): (session, arrival, tokens of each session before 0), the
    sessions under way at 0 (``_agents_under_way``) first, then those starting later."""
    taken, wait = _agents_under_way(cfg, rng, steps)
    agents = _AgentSteps(rng, wait, steps - taken - 1)
    _draw_agent_steps(cfg, rng, steps, n, agents)
    session, arrival = agents.drawn()
    # the tokens of the steps the sessions under way took before 0 (tool results and outputs): context, not requests
    earlier = np.zeros(len(agents.last), dtype=np.int64)
    earlier[: len(taken)] = _length_sums(rng, cfg.input_tokens_mean, taken)
    earlier[: len(taken)] += _length_sums(rng, cfg.output_tokens_mean, taken)
    return session, arrival, earlier


def _first_empty_agent_steps(cfg: SyntheticConfig, rng: np.random.Generator, steps: int, n: int):
    """As ``_empty_agent_steps``, drawn only until ``n`` steps come before a time every step not drawn comes after
    (``_draw_agent_steps``): a limited run of a large ``num_requests`` draws about what it keeps."""
    agents = _AgentSteps(rng, np.zeros(0), np.zeros(0, dtype=np.int64))
    _draw_agent_steps(cfg, rng, steps, n, agents, sessions=cfg.num_sessions)
    session, arrival = agents.drawn()
    return session, arrival, np.zeros(len(agents.last), dtype=np.int64)


def _empty_agent_steps(cfg: SyntheticConfig, rng: np.random.Generator, steps: int):
    """``num_sessions`` sessions starting from 0 (Poisson at ``rate_rps / steps`` a second), all their steps:
    (session, arrival, tokens of each session before 0: none)."""
    starts = _poisson_arrivals(rng, cfg.rate_rps / steps, cfg.num_sessions)
    gaps = rng.exponential(AGENT_STEP_GAP_MEAN_S, (cfg.num_sessions, steps))
    gaps[:, 0] = 0.0  # a session's first step comes at its start
    arrival = starts[:, None] + np.cumsum(gaps, axis=1)
    session = np.repeat(np.arange(cfg.num_sessions), steps)
    return session, arrival.ravel(), np.zeros(cfg.num_sessions, dtype=np.int64)


def _agentic(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int, context_tokens: int | None = None,
             keep: int | None = None):
    """Agent loops: sessions start as a Poisson process at ``rate_rps / steps`` a second, each taking ``steps`` =
    ceil(``num_requests`` / ``num_sessions``) steps (model calls) apart by exponential gaps of mean
    ``AGENT_STEP_GAP_MEAN_S`` (the call and the tool's run), so requests arrive at ``rate_rps``. Each step's prompt is
    the session so far (earlier steps' new tokens and outputs) plus its own new tokens (a tool's result); a session
    longer than ``context_tokens`` keeps its latest tokens, as multi-turn does. ``start`` steady also draws the
    sessions under way at 0 (``_agents_under_way``: their steps before 0 count in their context and are not requests)
    and the sessions and steps that come before the ``num_requests``-th request (``_steady_agent_steps``), so requests
    arrive at ``rate_rps`` throughout; empty starts ``num_sessions`` sessions from 0 and takes the first
    ``num_requests`` of their steps (fewer a second while sessions fill in, and at the end, once the last has
    started). The first ``keep`` requests are drawn: ``steps`` (and so the sessions' rate) is ``num_requests``'s."""
    steps = -(-cfg.num_requests // cfg.num_sessions)  # ceil: enough steps for num_requests
    n = cfg.num_requests if keep is None else keep
    if cfg.start == "steady" or n < cfg.num_requests:
        draw = _steady_agent_steps if cfg.start == "steady" else _first_empty_agent_steps
        session, arrival, earlier = draw(cfg, rng, steps, n)
        # a session's steps arrive in order: the first n hold every earlier step of their sessions
        first = np.sort(np.argsort(arrival, kind="stable")[:n])
        session, arrival = session[first], arrival[first]
    else:
        session, arrival, earlier = _empty_agent_steps(cfg, rng, steps)
    new = _lengths(rng, cfg.input_tokens_mean, arrival.size)
    out = _lengths(rng, cfg.output_tokens_mean, arrival.size)
    history = earlier[session] + _running_sums(new + out, session) - (new + out)  # tokens of the session before
    prompt, out, dropped = _keep_latest(history + new, out, context_tokens)
    order = np.argsort(arrival, kind="stable")[:n]
    return Drawn(arrival[order], prompt[order], out[order], session[order], context_start=dropped[order])


def _system_prompt(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int, context_tokens: int | None = None,
                   keep: int | None = None):
    """Requests at Poisson arrivals, each a Zipf-chosen shared system prompt then its own tokens, independently: the
    first ``keep`` of them (default ``num_requests``)."""
    n = cfg.num_requests if keep is None else keep
    arrival = _poisson_arrivals(rng, cfg.rate_rps, n)
    prefix = _zipf_choice(rng, cfg.num_prefixes, cfg.zipf_alpha, n)
    prompt = cfg.prefix_tokens + _lengths(rng, cfg.input_tokens_mean, n)
    out = _lengths(rng, cfg.output_tokens_mean, n)
    offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
    owner, depth = bm.block_positions(offsets)
    keys = bm.unique_keys(len(owner), salt=bm.TAG_PREFIX)
    shared = (depth + 1) * block_size <= cfg.prefix_tokens
    keys[shared] = bm.mix(bm.TAG_PREFIX, prefix[owner[shared]], depth[shared])
    return Drawn(arrival, prompt, out, block_offsets=offsets, block_keys=keys)


def _rag(cfg: SyntheticConfig, rng: np.random.Generator, block_size: int, context_tokens: int | None = None,
         keep: int | None = None):
    """Requests at Poisson arrivals, each Zipf-chosen shared documents then its own tokens, independently: the first
    ``keep`` of them (default ``num_requests``)."""
    n, k, doc_len = cfg.num_requests if keep is None else keep, cfg.documents_per_request, cfg.document_tokens
    arrival = _poisson_arrivals(rng, cfg.rate_rps, n)
    docs = _zipf_choice(rng, cfg.num_documents, cfg.zipf_alpha, (n, k))
    prompt = k * doc_len + _lengths(rng, cfg.input_tokens_mean, n)
    out = _lengths(rng, cfg.output_tokens_mean, n)
    offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
    owner, depth = bm.block_positions(offsets)
    keys = bm.unique_keys(len(owner), salt=bm.TAG_DOCUMENT)
    first_tok, last_tok = depth * block_size, (depth + 1) * block_size - 1
    in_docs = last_tok < k * doc_len
    o = owner[in_docs]
    # A block's content is fixed by the documents its first and last tokens fall in and its depth.
    doc_first = docs[o, first_tok[in_docs] // doc_len]
    doc_last = docs[o, last_tok[in_docs] // doc_len]
    keys[in_docs] = bm.mix(bm.TAG_DOCUMENT, doc_first, doc_last, depth[in_docs])
    return Drawn(arrival, prompt, out, block_offsets=offsets, block_keys=keys)


GENERATORS: dict[str, Callable] = {
    "multi-turn": _multi_turn,
    "agentic": _agentic,
    "system-prompt": _system_prompt,
    "rag": _rag,
}


def generate(cfg: SyntheticConfig, block_size: int, rng: np.random.Generator, limit: int | None = None,
             context_tokens: int | None = None) -> Trace:
    """A synthetic ``Trace`` of ``cfg.kind``; ``limit`` caps the request count; ``context_tokens`` caps the context
    of a multi-turn conversation or an agent session (its oldest tokens are dropped). ``cfg`` is validated
    (``sim.config``: the kind is a Literal, every size has its declared domain).

    A limit draws only the requests it keeps (``num_requests`` 1e8 at a smoke limit of 2,000 drew all 1e8: 1e7 took
    71 s and 1.7 GB): the first ``limit`` requests of a workload are the workload at ``num_requests`` = ``limit`` in
    law, as each generator draws them (arrivals, lengths and prefixes do not depend on ``num_requests``; an agent
    session's steps do, and are kept at ``num_requests``'s), though not the same draws."""
    keep = cfg.num_requests if limit is None else min(cfg.num_requests, limit)
    drawn = GENERATORS[cfg.kind](cfg, rng, block_size, context_tokens, keep)
    arrival, prompt, out, session = drawn.arrival, drawn.prompt, drawn.out, drawn.session
    n = len(arrival)
    arrival = arrival - arrival[0]
    if session is not None:
        offsets = bm.offsets_from_counts(bm.blocks_per_request(prompt, block_size))
        block_ids, num_unique = bm.session_block_ids(offsets, prompt, session, block_size, drawn.context_start)
        kind = "synthetic-sessions"
    else:
        offsets = drawn.block_offsets
        block_ids, num_unique = bm.intern(bm.chain(offsets, drawn.block_keys))
        kind = "chained"
    provenance = TraceProvenance(
        path=None, format=f"synthetic:{cfg.kind}", sha256=None, rows_read=n, rows_used=n, rows_skipped=0,
        skip_reasons={}, block_ids=kind, block_tokens=block_size,
    )
    return Trace(
        arrival_s=arrival.astype(np.float64),
        input_tokens=prompt.astype(np.int64),
        output_tokens=out.astype(np.int64),
        session_id=np.full(n, -1, dtype=np.int64) if session is None else session.astype(np.int64),
        block_offsets=offsets,
        flat_ids=block_ids,
        num_unique_blocks=num_unique,
        provenance=provenance,
    )
