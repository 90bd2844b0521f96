"""Probes of the learned policy on Mooncake (issue 14, rounds 3-5): what limits the predictor.

Each probe trains on the first half of the bundled Mooncake conversation trace (or ``--trace``; 512-token
blocks, all usable rows, no sampling) and replays the learned kernel alone over the second half at 1k-20k
blocks, printing hit ratios and the share of the best-classic→Belady gap closed (best classic and
Belady replayed on the judged half, as in ``bench_learned.py``). Figures are recorded
in learned/README.md ("What was tried"); run-to-run spread from the tree and sampling seeds is about
±0.015 of mean gap.

    python benchmarks/probe_learned.py [law,classes,seeds,online,online-judged,drift,pool,features,continues,oracle,
                                        recalibrate] [--trace OTHER.jsonl]

- ``law``: (the synthetic multi-turn workload, not Mooncake) its generator's exact laws as the predictor;

- ``classes``: class resolution (cuts × quantile levels) of the predicted distributions;
- ``seeds``: the spread across tree seeds (bagging 0.8) and kernel sampling seeds, at 4×4 and 3×16 classes;
- ``online``: LRB-style retraining every 20,000 judged accesses on the latest 120,000 accesses of the
  past (training half, then the judged stream so far): only fully labelled rows ("lag"), censored rows
  labelled "beyond" (LRB), or dropped;
- ``online-judged``: the same with only the judged stream's own past (what a judged run has), every 10,000
  accesses on the latest 100,000;
- ``drift``: the static model's AUC on its own half and the judged half, and the reuse chance by tenth;
- ``pool``: one distribution per request for its private full blocks (they share their next turn);
- ``features``: recent access rate (accesses in the last 60 s and 300 s, the turn gap in accesses)
  and larger or slower-learning ensembles;
- ``continues``: a request-level classifier of "does the conversation continue" (AUC on the later half), with
  the request features and with five more (new user tokens, input tokens, input / first turn's, partial-block
  tokens, share of new sessions in the last minute);
- ``oracle``: the true "reused within the horizon?" with the model's timing, and the model's
  "whether" with the true timing: which half of the prediction limits the policy;
- ``recalibrate``: each class's distribution measured instead of averaged from the model's predictions: on
  the training half's labels, or online on the judged stream's own past (a life table, shrunk to the model's).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402

from learned import kernel  # noqa: E402
from learned import train as T  # noqa: E402
from learned.features import FEATURES, access_features, next_use_distance  # noqa: E402
from learned.model import BEYOND_SPAN, class_codes  # noqa: E402
from sim.cache.access import NEVER, next_use_index  # noqa: E402
from sim.cache.replay import replay as cache_replay  # noqa: E402
from sim.command import command_status, end_process  # noqa: E402
from sim.config import load_config  # noqa: E402
from trace.blocks import block_positions  # noqa: E402
from trace.workload import load_workload  # noqa: E402

TRACE = REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
CAPACITIES = [1000, 2000, 5000, 10000, 20000]


def load(trace: Path, start: float, end: float):
    sets = [f"workload.trace={trace}", "serving.block_size=512", f"workload.range_start={start}",
            f"workload.range_end={end}"]
    return load_workload(load_config(None, sets=sets))


class Setup:
    """Both halves, their features, the training labels and bucket edges (as ``learned.train``), and
    the judged half's best classic and Belady hit ratios at each capacity."""

    def __init__(self, trace: Path = TRACE) -> None:
        self.train, self.judged = load(trace, 0, 0.5), load(trace, 0.5, 1)
        self.f_train, self.f_judged = access_features(self.train), access_features(self.judged)
        self.s_train, self.s_judged = self.train.access_stream(), self.judged.access_stream()
        n = len(self.s_train)
        self.horizon = n // 4
        self.edges = T.bucket_edges(self.horizon)
        self.label = self.bucket(next_use_distance(self.s_train))
        usable = n - self.horizon
        self.rows = np.arange(usable - int(usable * T.HELD_OUT))
        self.edges_full = np.r_[self.edges, self.edges[-1] * BEYOND_SPAN]
        config = load_config(None, sets=["serving.block_size=512"])
        next_use = next_use_index(self.s_judged)
        hit_ratio = {p: np.array([(cache_replay(self.judged, config, p, "plain", c, next_use)[1] >= 0).mean()
                                  for c in CAPACITIES]) for p in ("lru", "arc", "s3fifo", "sieve", "belady")}
        self.belady = hit_ratio.pop("belady")
        self.best = np.max(list(hit_ratio.values()), axis=0)

    def bucket(self, distance: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, np.minimum(distance, self.horizon + 1), side="left") - 1

    def fit(self, features, label, rows, params=None, rounds=40):
        p = {**T.DEFAULT_PARAMS, "num_class": len(self.edges), "seed": 0, **(params or {})}
        return lgb.train(p, lgb.Dataset(features[rows], label[rows]), num_boost_round=rounds)

    def cuts(self) -> list[int]:
        k = len(self.edges)
        return list(range(k - 1 - T.CLASS_CUTS, k - 1))


def replay(stream: np.ndarray, klass: np.ndarray, table: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Hit ratio of the learned kernel at each capacity."""
    out = []
    for capacity in CAPACITIES:
        s = kernel.new_state(capacity, int(stream.max()) + 1, table, edges)
        hit = np.zeros(len(stream), dtype=np.bool_)
        kernel.replay_plain(s["blocks"], s["last"], s["real_ids"], s["model_slots"], s["ints"], s["floats"],
                            s["table"], s["dist"], s["edges"], stream.astype(np.int64), klass.astype(np.int32), 0,
                            capacity, hit)
        out.append(hit.mean())
    return np.array(out)


def judge(setup: Setup, name: str, fitted: np.ndarray, judged: np.ndarray) -> None:
    """Classes from ``fitted`` (training predictions), applied to ``judged``; replay and print."""
    thresholds, table = T._class_table(fitted, setup.cuts())
    klass = class_codes(judged, setup.cuts(), thresholds)
    report(setup, name, replay(setup.s_judged, klass, table, setup.edges_full))


def report(setup: Setup, name: str, hits: np.ndarray) -> None:
    gap = (hits - setup.best) / (setup.belady - setup.best)
    print(f"{name:44s} " + " ".join(f"{v:.4f}" for v in hits) + " | gap " + " ".join(f"{g:+.3f}" for g in gap)
          + f" | mean {gap.mean():+.3f}", flush=True)


def probe_classes(setup: Setup) -> None:
    booster = setup.fit(setup.f_train, setup.label, setup.rows)
    fitted = booster.predict(setup.f_train[setup.rows], num_threads=2)
    judged = booster.predict(setup.f_judged, num_threads=2)
    chosen = T.CLASS_CUTS, T.CLASS_LEVELS
    for cuts, levels in [(4, 4), (6, 4), (4, 8), (5, 8), (4, 12), (3, 16), (3, 32), (2, 64), (1, 256)]:
        T.CLASS_CUTS, T.CLASS_LEVELS = cuts, levels
        judge(setup, f"classes: {cuts} cuts x {levels} levels", fitted, judged)
    T.CLASS_CUTS, T.CLASS_LEVELS = chosen


def probe_online(setup: Setup, segment: int = 20_000, window: int = 120_000, judged_only: bool = False) -> None:
    """Retrain every ``segment`` judged accesses on the latest ``window`` accesses of the past: the training
    half and the judged stream so far, or (``judged_only``, what a judged run has) the judged stream so far,
    with the static model until it has 5,000 usable rows."""
    static = setup.fit(setup.f_train, setup.label, setup.rows)
    static_thresholds, static_table = T._class_table(static.predict(setup.f_train[setup.rows], num_threads=2), setup.cuts())
    if judged_only:
        features, stream, n = setup.f_judged, setup.s_judged, 0
    else:  # one id space: both halves keep the trace's hash ids
        features, stream, n = np.vstack([setup.f_train, setup.f_judged]), np.r_[setup.s_train, setup.s_judged], len(setup.s_train)
    for mode in ("lag", "lrb", "drop"):
        tables, klass, offset = [static_table], np.empty(len(setup.s_judged), np.int64), len(static_table)
        for lo in range(0, len(setup.s_judged), segment):
            t = n + lo  # the judged stream's past: accesses before t
            nxt = next_use_index(stream[:t])
            distance = np.where(nxt == NEVER, np.inf, nxt - np.arange(t))
            label = setup.bucket(distance)
            censored = np.isinf(distance) & (t - np.arange(t) < setup.horizon)
            usable = {"lag": np.arange(t) < t - setup.horizon, "lrb": np.ones(t, bool), "drop": ~censored}[mode]
            rows = np.flatnonzero(usable)
            rows = rows[rows >= t - window]
            part = slice(lo, lo + segment)
            if len(rows) < 5000:
                klass[part] = class_codes(static.predict(setup.f_judged[part], num_threads=2), setup.cuts(),
                                          static_thresholds)
                continue
            booster = setup.fit(features, label, rows)
            thresholds, table = T._class_table(booster.predict(features[rows], num_threads=2), setup.cuts())
            klass[part] = class_codes(booster.predict(setup.f_judged[part], num_threads=2), setup.cuts(),
                                      thresholds) + offset
            tables.append(table)
            offset += len(table)
        past = "judged stream's past" if judged_only else "both halves' past"
        report(setup, f"online {mode}, every {segment:,}, window {window:,}, {past}",
               replay(setup.s_judged, klass, np.vstack(tables), setup.edges_full))


def probe_online_judged(setup: Setup) -> None:
    probe_online(setup, segment=10_000, window=100_000, judged_only=True)


def probe_drift(setup: Setup, within: int = 3000) -> None:
    """Is the trace stationary? The static model's AUC for "back within ``within`` accesses" on its own half
    and on the judged half, and that chance in each tenth of the whole trace."""
    booster = setup.fit(setup.f_train, setup.label, setup.rows)
    cut = int(np.searchsorted(setup.edges, within)) - 1
    for name, features, stream in [("training half", setup.f_train, setup.s_train),
                                   ("judged half", setup.f_judged, setup.s_judged)]:
        back = next_use_distance(stream) <= within
        soon = np.cumsum(booster.predict(features, num_threads=2), axis=1)[:, cut]
        print(f"drift, {name}: P(back within {within:,}) {back.mean():.3f}, model AUC {T._auc(back, soon):.3f}")
    whole = np.r_[setup.s_train, setup.s_judged]
    back = next_use_distance(whole) <= within
    print("drift, P(back) by tenth of the trace: " + " ".join(f"{part.mean():.3f}" for part in np.array_split(back, 10)))


def probe_pool(setup: Setup) -> None:
    booster = setup.fit(setup.f_train, setup.label, setup.rows)
    fill = FEATURES.index("block_fill")

    def pooled(trace, features):
        p = booster.predict(features, num_threads=2)
        owner, depth = block_positions(trace.block_offsets)
        private = (depth >= 1) & (features[:, fill] >= 1)
        counts = np.maximum(np.bincount(owner[private], minlength=len(trace)), 1)
        for j in range(p.shape[1]):
            sums = np.bincount(owner[private], weights=p[private, j], minlength=len(trace))
            p[private, j] = (sums / counts)[owner[private]]
        return p

    judge(setup, "pooled per request", pooled(setup.train, setup.f_train)[setup.rows],
          pooled(setup.judged, setup.f_judged))


def rate_features(trace, features: np.ndarray) -> np.ndarray:
    arrival, offsets = trace.arrival_s, trace.block_offsets
    owner, _ = block_positions(offsets)
    columns = [features]
    for window in (60.0, 300.0):
        earliest = np.searchsorted(arrival, arrival - window, side="right")
        columns.append(np.log1p(offsets[1:] - offsets[earliest])[owner, None])
    rate = (offsets[1:] - offsets[np.searchsorted(arrival, arrival - 300.0, side="right")]) / 300.0
    turn_gap = features[:, FEATURES.index("turn_gap_s")]
    columns.append(np.log1p(rate[owner] * turn_gap)[:, None])  # NaN stays NaN (a first turn)
    return np.hstack(columns).astype(np.float32)


def probe_features(setup: Setup) -> None:
    variants = [("rate features", rate_features(setup.train, setup.f_train), rate_features(setup.judged, setup.f_judged),
                 {}, 40),
                ("15 leaves, 80 rounds, rate 0.05", setup.f_train, setup.f_judged,
                 {"num_leaves": 15, "learning_rate": 0.05}, 80),
                ("7 leaves, 150 rounds, rate 0.03", setup.f_train, setup.f_judged, {"learning_rate": 0.03}, 150)]
    for name, train_features, judged_features, params, rounds in variants:
        booster = setup.fit(train_features, setup.label, setup.rows, params, rounds)
        judge(setup, name, booster.predict(train_features[setup.rows], num_threads=2),
              booster.predict(judged_features, num_threads=2))


def probe_seeds(setup: Setup) -> None:
    chosen = T.CLASS_CUTS, T.CLASS_LEVELS
    new_state = kernel.new_state
    for cuts, levels in [(4, 4), (3, 16)]:
        T.CLASS_CUTS, T.CLASS_LEVELS = cuts, levels
        for seed in range(3):
            booster = setup.fit(setup.f_train, setup.label, setup.rows,
                                {"bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed})
            kernel.new_state = lambda *args, seed=seed: new_state(*args, seed=seed)
            judge(setup, f"classes {cuts} x {levels}, seed {seed}", booster.predict(setup.f_train[setup.rows]),
                  booster.predict(setup.f_judged))
    kernel.new_state = new_state
    T.CLASS_CUTS, T.CLASS_LEVELS = chosen


def probe_continues(setup: Setup) -> None:
    from learned.features import _chain_sessions, previous_turn
    from sim.cache.access import previous_use_index

    trace = load(0, 1)
    stream = trace.access_stream()
    owner, _ = block_positions(trace.block_offsets)
    parent = previous_turn(trace, previous_use_index(stream), owner)
    turn, root = _chain_sessions(parent)
    n = len(trace)
    continues = np.zeros(n, bool)
    continues[parent[parent >= 0]] = True
    names = ["log_prompt_blocks", "turn", "turn_gap_s", "prev_turn_gap_s", "session_age_s", "seen_fraction",
             "log_new_blocks", "log_output_tokens"]
    base = access_features(trace)[trace.block_offsets[:-1]][:, [FEATURES.index(c) for c in names]]
    p = np.maximum(parent, 0)
    new_tokens = np.where(parent >= 0, trace.input_tokens - trace.input_tokens[p] - trace.output_tokens[p], np.nan)
    arrival = trace.arrival_s
    earliest = np.searchsorted(arrival, arrival - 60.0, side="right")
    firsts = np.r_[0, np.cumsum(turn == 0)]
    new_share = (firsts[1:] - firsts[earliest]) / np.maximum(np.arange(1, n + 1) - earliest, 1)
    more = np.column_stack([base, np.sign(new_tokens) * np.log1p(np.abs(new_tokens)), np.log1p(trace.input_tokens),
                            np.log(trace.input_tokens / trace.input_tokens[root]),
                            np.log1p(trace.input_tokens % trace.provenance.block_tokens), new_share])
    half = n // 2
    params = {"objective": "binary", "num_leaves": 7, "learning_rate": 0.05, "min_data_in_leaf": 50, "verbosity": -1,
              "num_threads": 2}
    for name, x in [("request features", base), ("+ five more", more)]:
        booster = lgb.train(params, lgb.Dataset(x[:half], continues[:half]), 200)
        print(f"continues, {name}: AUC on the later half {T._auc(continues[half:], booster.predict(x[half:])):.4f}")


def probe_oracle(setup: Setup) -> None:
    booster = setup.fit(setup.f_train, setup.label, setup.rows)
    model = booster.predict(setup.f_judged, num_threads=2)
    truth = setup.bucket(next_use_distance(setup.s_judged))
    beyond = len(setup.edges) - 1
    reused = truth < beyond
    onehot = np.eye(beyond + 1)[truth]
    whether = model.copy()  # the true "reused within the horizon?", the model's timing
    whether[:, -1] = 0.0
    whether /= whether.sum(axis=1, keepdims=True)
    whether[~reused] = onehot[~reused]
    when = model.copy()  # the model's "whether", the true timing
    when[reused, :-1] = 0.0
    when[reused, truth[reused]] = 1.0 - model[reused, -1]
    for name, p in [("model", model), ("oracle whether, model's timing", whether),
                    ("model's whether, oracle timing", when), ("oracle bucket", onehot)]:
        judge(setup, name, p, p)


def probe_law(setup: Setup) -> None:
    """The synthetic multi-turn workload's own law as the predictor: a ceiling for any past-only policy.

    The judged stream of bench_learned's multi-turn case (seed 2, 10,000 requests, 16-token blocks) is replayed
    with every access's exact next-use distribution under the generator's laws, which no learned model can beat
    in expectation: a conversation at turn k goes on with probability E[q | k - 1 continuations] =
    (a + k - 1) / (a + b + k - 1) (q ~ Beta(a, b), trace/synthetic.py), after a log-normal think time (the
    config's median and sigma) turned into accesses at the stream's mean rate; a partly filled last block
    is never used again (the next turn's prompt extends it). The kernel's idle-time conditioning does
    the rest. Best classic and Belady are bench_learned's multi-turn figures."""
    from math import erf, log, sqrt

    best = np.array([0.0019, 0.0120, 0.0333, 0.0629, 0.1263])  # bench_learned.py --workloads multi-turn
    belady = np.array([0.0717, 0.1174, 0.2070, 0.2954, 0.3884])
    config = load_config(None, sets=["seed=2", "workload.synthetic.num_requests=10000",
                                     "workload.synthetic.start=empty"])
    trace = load_workload(config)
    stream = trace.access_stream()
    syn = config.workload.synthetic
    extra = syn.turns_mean - 1.0
    b = (syn.turns_concentration + extra) / syn.turns_mean  # as trace/synthetic.py's _conversation_turns
    a = syn.turns_concentration - b
    session = trace.session_id
    order = np.argsort(session, kind="stable")  # requests are in arrival order: a session's turns in order
    turn = np.empty(len(trace), np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(session[order])) + 1]
    turn[order] = np.arange(len(trace)) - np.repeat(starts, np.diff(np.r_[starts, len(trace)]))  # 0-based
    owner, depth = block_positions(trace.block_offsets)
    block_tokens = trace.provenance.block_tokens
    partial = (depth == np.diff(trace.block_offsets)[owner] - 1) & (trace.input_tokens[owner] % block_tokens > 0)
    rate = len(stream) / float(trace.arrival_s[-1] - trace.arrival_s[0])  # accesses a second
    edges = T.bucket_edges(len(stream) // 4)
    cdf = np.array([0.5 * (1 + erf((log(e / rate) - log(syn.think_time_median_s)) / (syn.think_time_sigma * sqrt(2))))
                    for e in edges])
    timing = np.r_[np.diff(cdf), 1.0 - cdf[-1]]  # P(think in bucket j), then beyond the last edge
    max_turn = 256
    k = np.arange(max_turn) + 1  # turns taken so far
    go_on = (a + k - 1) / (a + b + k - 1)
    table = np.vstack([np.r_[np.zeros(len(edges) - 1), 1.0],  # class 0: never again
                       go_on[:, None] * timing[None, :] + np.r_[np.zeros(len(edges) - 1), 1.0][None, :] * (1 - go_on[:, None])])
    klass = np.where(partial, 0, 1 + np.minimum(turn[owner], max_turn - 1))
    hits = replay(stream, klass, table, np.r_[edges, edges[-1] * BEYOND_SPAN])
    gap = (hits - best) / (belady - best)
    print("law oracle (synthetic multi-turn)            " + " ".join(f"{v:.4f}" for v in hits) + " | gap "
          + " ".join(f"{g:+.3f}" for g in gap) + f" | mean {gap.mean():+.3f}", flush=True)


def class_survival(prior: np.ndarray, klass: np.ndarray, stream: np.ndarray, edges: np.ndarray, k: float) -> np.ndarray:
    """Each class's next-use distribution measured on ``stream`` (the past: uses after its end are censored
    there), as an actuarial life table by bucket, with each bucket's hazard shrunk to the prior's by ``k``
    pseudo-trials."""
    classes, buckets = prior.shape
    t = len(stream)
    nxt = next_use_index(stream)
    seen = nxt != NEVER
    observed = np.where(seen, nxt, t) - np.arange(t)
    b = np.clip(np.searchsorted(edges, observed, side="left") - 1, 0, buckets - 1)
    c = klass[:t].astype(np.int64) * buckets
    events = np.bincount(c[seen] + b[seen], minlength=classes * buckets).reshape(classes, buckets)
    censored = np.bincount(c[~seen] + b[~seen], minlength=classes * buckets).reshape(classes, buckets)
    at_risk = np.cumsum((events + censored)[:, ::-1], axis=1)[:, ::-1] - 0.5 * censored
    prior_alive = np.cumsum(prior[:, ::-1], axis=1)[:, ::-1]
    hazard = (events + k * prior / np.maximum(prior_alive, 1e-12)) / (at_risk + k)
    hazard[:, -1] = 1.0
    hazard = np.clip(hazard, 0.0, 1.0)
    return np.cumprod(np.c_[np.ones(classes), 1.0 - hazard[:, :-1]], axis=1) * hazard


def probe_recalibrate(setup: Setup, segment: int = 10_000) -> None:
    """The class table measured rather than averaged: (a) each class's label frequencies on the training half,
    shrunk to its mean predicted distribution by m rows; (b) every ``segment`` judged accesses, each class's
    distribution re-measured on the judged stream's own past (``class_survival``, k pseudo-trials)."""
    booster = setup.fit(setup.f_train, setup.label, setup.rows)
    thresholds, table = T._class_table(booster.predict(setup.f_train[setup.rows], num_threads=2), setup.cuts())
    klass = class_codes(booster.predict(setup.f_judged, num_threads=2), setup.cuts(), thresholds).astype(np.int32)
    stream = setup.s_judged.astype(np.int64)
    report(setup, "class table: mean predicted (the policy's)", replay(stream, klass, table, setup.edges_full))
    code = class_codes(booster.predict(setup.f_train[setup.rows], num_threads=2), setup.cuts(), thresholds)
    counts = np.zeros_like(table)
    np.add.at(counts, (code, setup.label[setup.rows]), 1.0)
    for m in (1.0, 10.0, 100.0):
        measured = (counts + m * table) / (counts.sum(axis=1, keepdims=True) + m)
        report(setup, f"class table: training labels, m={m:g}", replay(stream, klass, measured, setup.edges_full))
    for k in (10.0, 100.0, 1000.0, 10_000.0):
        out = []
        for capacity in CAPACITIES:
            s = kernel.new_state(capacity, int(stream.max()) + 1, table.copy(), setup.edges_full)  # its own copy
            hit = np.zeros(len(stream), dtype=np.bool_)
            for lo in range(0, len(stream), segment):
                if lo:
                    s["dist"][:] = class_survival(table, klass, stream[:lo], setup.edges_full, k)
                    s["table"][:] = np.nan
                kernel.replay_plain(s["blocks"], s["last"], s["real_ids"], s["model_slots"], s["ints"], s["floats"],
                                    s["table"], s["dist"], s["edges"], stream[lo:lo + segment], klass, lo, capacity,
                                    hit[lo:lo + segment])
            out.append(hit.mean())
        report(setup, f"judged past, every {segment:,}, k={k:g}", np.array(out))


PROBES = {"law": probe_law, "classes": probe_classes, "seeds": probe_seeds, "online": probe_online,
          "online-judged": probe_online_judged, "drift": probe_drift, "pool": probe_pool,
          "features": probe_features, "continues": probe_continues, "oracle": probe_oracle,
          "recalibrate": probe_recalibrate}


def main() -> None:
    # a flag of one value given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("probes", nargs="?", default=",".join(PROBES), help=f"comma list of {', '.join(PROBES)}")
    parser.add_argument("--trace", type=path_argument, default=TRACE, help="a Mooncake-format trace (default: the bundled one)")
    args = parser.parse_args()
    names = parser.distinct("probes", args.probes.split(","))
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        parser.error(f"unknown probes {unknown}; choose from {', '.join(PROBES)}")
    if not args.trace.is_file():  # was a ConfigError traceback
        parser.error(f"--trace: not a file: {args.trace}")
    setup = Setup(args.trace)
    for name in names:
        PROBES[name](setup)


if __name__ == "__main__":
    # bad input: one line, exit 2; end_process: without the interpreter's teardown (see sim.command)
    end_process(command_status("probe_learned.py", main))
