"""Train the learned eviction model: ``python -m learned.train --workload-trace TRAIN --out model.txt``.

The model predicts, for every block access, the *distribution* of the distance (in block
accesses) to that block's next use, as LightGBM multiclass probabilities over log-spaced
buckets up to a horizon, plus a last bucket "not used again within the horizon". The policy
turns a distribution into a hit density relative to its own eviction age (``learned.hit_density``),
so it needs more than a point estimate: whether a block is likely back soon, late or never.

Honest by construction: features use the past only (``learned.features``); labels need the
future, so only accesses at least one horizon before the end of the training range are used
(their label is fully known; no censoring); the horizon is a quarter of the training range.
The last 10% of those rows (in time) are held out for validation metrics. Rows are sampled
(``--max-rows``) so a trace of any length trains in bounded time. Deterministic: the same
trace, range, seed and parameters give the same model file.
"""

from __future__ import annotations

import sys

try:  # everything loads under this guard (numpy, LightGBM and the compiled kernels take seconds; the standard
    # library too can be mid-import): a Ctrl-C then is exit 130 too, no traceback
    from pathlib import Path  # (often loaded as Python starts, by site: the hold below comes at once)

    _ROOT = str(Path(__file__).resolve().parent.parent)
    if sys.path[:1] != [_ROOT]:
        sys.path.insert(0, _ROOT)
    # Run as the program: Ctrl-C and SIGTERM wait, blocked, until the command starts and answers them (one line, 130
    # or 143), not raised inside numpy's or a compiled kernel's native loading (a half-loaded library: SIGSEGV).
    import sim.script_start  # noqa: F401

    if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
        del sys.modules["trace"]

    import argparse
    import contextlib
    import hashlib
    import json
    import os
    import signal
    import threading
    import time

    from sim.command import (  # noqa: E402  (the standard library only: to note a Ctrl-C where it is not held)
        command_status,
        end_process,
        interruption_behind,
        raise_if_stopped,
        watch_stop_signals,
    )
    from sim.errors import InputError, quote  # noqa: E402

    if __name__ == "__main__":  # (where the stops cannot be held: raised from here on, answered below)
        watch_stop_signals()
    import numpy as np  # noqa: E402

    try:  # the compiled kernels load here: an environment that refuses them (NUMBA_DISABLE_JIT) is one line, exit 2
        from learned.features import FEATURES, access_features, next_use_distance  # noqa: E402
        from learned.model import (  # noqa: E402
            SIDECAR_VERSION,
            class_codes,
            file_sha256,
            sidecar_path,
            workload_identity,
        )
    except InputError as _refused:
        if __name__ != "__main__":
            raise
        print(f"learned.train: error: {_refused}", file=sys.stderr)
        sys.exit(2)
    from sim.config import Config, load_config  # noqa: E402
    from sim.report.output import atomic_write, check_distinct, check_writable  # noqa: E402
except BaseException as _stopped:  # numpy turns a Ctrl-C inside its C import into an ImportError
    _why = _stopped if isinstance(_stopped, KeyboardInterrupt) else (
        interruption_behind(_stopped) if "interruption_behind" in globals() else None)
    if __name__ != "__main__" or _why is None:
        raise
    _terminated = type(_why).__name__ == "Terminated"  # SIGTERM (watch_stop_signals): 143, as command_status says
    print(f"learned.train: {'terminated' if _terminated else 'interrupted'}", file=sys.stderr, flush=True)
    import os

    os._exit(143 if _terminated else 130)  # not the interpreter's teardown, with a native library stopped midway

DEFAULT_PARAMS = {
    "objective": "multiclass",
    "learning_rate": 0.1,
    "num_leaves": 7,  # small trees: the signal is weak and simple; 63 leaves overfit on Mooncake
    "min_data_in_leaf": 100,  # (so a node splits only when it holds 2 x 100 rows: MIN_FIT_ROWS)
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}
BUCKETS = 10  # log-spaced distance buckets from 1 access to the horizon (plus "beyond")
CLASS_CUTS = 3  # classes: cumulative probability at the last 3 bucket ends ...
CLASS_LEVELS = 16  # ... each in 16 quantile levels of the training predictions: 4,096 classes (small caches
# keep only the top few percent of blocks, which quartiles lumped together; measured in learned/README.md)
MIN_ACCESSES = 1000
# Rows LightGBM needs in a node to split it at all: each of the two leaves holds min_data_in_leaf (LightGBM's
# parameter docs: "minimal number of data in one leaf"); with fewer fitted rows every tree is one leaf
MIN_FIT_ROWS = 2 * DEFAULT_PARAMS["min_data_in_leaf"]
HELD_OUT = 0.1


def bucket_edges(horizon: int) -> np.ndarray:
    """Finite bucket edges: bucket j holds distances in (edges[j], edges[j+1]]; beyond the last: 'later'."""
    return np.r_[0.5, np.unique(np.geomspace(1.0, horizon, BUCKETS).round())]


def _class_table(distribution: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Quantile thresholds per cut and the mean distribution of each class; an empty class takes
    the mean of the nearest non-empty one (L1 distance between level vectors; lowest code on ties)."""
    cumulative = np.cumsum(distribution, axis=1)
    thresholds = np.array([np.quantile(cumulative[:, c], np.linspace(0, 1, CLASS_LEVELS + 1)[1:-1]) for c in cuts])
    code = class_codes(distribution, cuts, thresholds)
    classes = CLASS_LEVELS ** len(cuts)
    counts = np.bincount(code, minlength=classes)
    table = np.zeros((classes, distribution.shape[1]))
    np.add.at(table, code, distribution)
    present = np.flatnonzero(counts)
    table[present] /= counts[present, None]
    levels = np.array(np.unravel_index(np.arange(classes), (CLASS_LEVELS,) * len(cuts))).T
    for empty in np.flatnonzero(counts == 0):
        nearest = present[np.argmin(np.abs(levels[present] - levels[empty]).sum(axis=1))]
        table[empty] = table[nearest]
    return thresholds, table


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    pos = int(positive.sum())
    if pos == 0 or pos == len(positive):
        return None
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * (len(positive) - pos)))


# Boosting rounds at most: each round adds a tree per label bucket, every judged access is predicted through all of
# them, and past a few hundred rounds the seven-leaf model only overfits (learned/README.md: 80 rounds lost to 40)
MAX_ROUNDS = 10_000


def train(config: Config, out: Path, rounds: int = 40, max_rows: int = 100_000) -> dict:
    """Fit on the configured trace range; write ``out`` and its sidecar atomically (the same bytes for the same
    config and seed); return the sidecar and ``train_seconds``, the wall time."""
    import lightgbm as lgb

    from learned.fingerprint import fingerprint
    from trace.workload import load_workload

    start = time.perf_counter()
    trace = load_workload(config)
    n = trace.num_accesses
    if n < MIN_ACCESSES:
        where = config.workload.trace or "the synthetic workload"
        raise InputError(f"{where}: only {n} block accesses in the training range, need at least {MIN_ACCESSES}")
    horizon = n // 4
    edges = bucket_edges(horizon)
    distance = next_use_distance(trace.access_stream())
    label = np.searchsorted(edges, np.minimum(distance, horizon + 1), side="left") - 1  # horizon + 1: 'later'
    usable = n - horizon  # accesses whose next use (or its absence) within the horizon is known
    if not np.any(label[:usable] < len(edges) - 1):
        where = config.workload.trace or "the synthetic workload"
        why = " (no block ids: every prompt block is new)" if trace.provenance.block_ids == "unique" else ""
        raise InputError(f"{where}: no block is used again within {horizon:,} accesses{why}; nothing to learn "
                         "(train on a trace with prefix reuse, e.g. Mooncake hash_ids)")
    held_out = max(1, int(usable * HELD_OUT))
    rng = np.random.default_rng(config.seed)
    fit_rows = np.arange(usable - held_out)
    if len(fit_rows) > max_rows:
        fit_rows = np.sort(rng.choice(fit_rows, size=max_rows, replace=False))
    valid_rows = np.arange(usable - held_out, usable)
    if len(valid_rows) > max_rows:
        valid_rows = np.sort(rng.choice(valid_rows, size=max_rows, replace=False))
    features = access_features(trace)
    params = {**DEFAULT_PARAMS, "num_class": len(edges), "seed": config.seed}
    raise_if_stopped()  # (the compiled feature pass cannot stop midway)
    booster = lgb.train(params, lgb.Dataset(features[fit_rows], label[fit_rows], feature_name=list(FEATURES)),
                        num_boost_round=rounds, callbacks=[_stop_between_rounds])
    if not booster.feature_importance("split").any():  # every tree one leaf: one prediction for every access
        raise InputError(f"the model made no split in any tree (it predicts one distribution for every block): "
                         f"{len(fit_rows):,} rows fitted (--max-rows {max_rows:,}, --range "
                         f"{config.workload.range_start:g}:{config.workload.range_end:g}); LightGBM's "
                         f"min_data_in_leaf={params['min_data_in_leaf']} needs more rows, or rows that differ")
    fitted = booster.predict(features[fit_rows], num_threads=params["num_threads"])
    cuts = list(range(len(edges) - 1 - CLASS_CUTS, len(edges) - 1))
    thresholds, table = _class_table(fitted, cuts)
    valid = booster.predict(features[valid_rows], num_threads=params["num_threads"])
    truth = label[valid_rows]
    model_text = booster.model_to_string()
    meta = {
        "kvsim_learned_model": SIDECAR_VERSION,
        "features": list(FEATURES),
        "label": {
            "definition": "bucket of the distance, in block accesses, from an access to the next access of the "
                          "same block: bucket j is (edges[j], edges[j+1]]; the last bucket: not used again within "
                          "the horizon (a quarter of the training range)",
            "edges": edges.tolist(), "horizon_accesses": int(horizon),
        },
        "classes": {"cuts": cuts, "thresholds": thresholds.tolist(), "table": table.tolist()},
        "block_tokens": trace.provenance.block_tokens,
        "params": params,
        "rounds": rounds,
        "train": {
            "path": trace.provenance.path, "format": trace.provenance.format,
            "source": workload_identity(trace, config),
            "range": [config.workload.range_start, config.workload.range_end],
            "request_range": list(trace.provenance.request_range or (0, trace.provenance.rows_used)),
            "accesses": n, "rows_usable": int(usable), "rows_fitted": len(fit_rows),
            "fingerprint": fingerprint(trace),  # what a run on a copy or slice of these requests is found by
        },
        "validation": {
            "rows": len(valid_rows),
            "log_loss": float(-np.mean(np.log(np.maximum(valid[np.arange(len(truth)), truth], 1e-12)))),
            "auc_used_again_within_horizon": _auc(truth < len(edges) - 1, 1.0 - valid[:, -1]),
        },
        "feature_importance_gain": dict(zip(FEATURES, booster.feature_importance("gain").round(1).tolist(), strict=True)),
        "model_sha256": _sha256_text(model_text),
    }
    # Both files are written in full first, then renamed into place one after the other with Ctrl-C and SIGTERM held
    # back (acted on once both are in place): an interruption leaves the previous pair, or the new one, never a mix.
    # (A crash between the renames leaves a model that does not match its sidecar's hash, which load refuses.)
    with _signals_deferred(), atomic_write(sidecar_path(out)) as side_fh, atomic_write(out) as model_fh:
        side_fh.write(json.dumps(meta, indent=1) + "\n")
        model_fh.write(model_text)
    assert file_sha256(out) == meta["model_sha256"]
    # (the time is said, not kept: in the sidecar it made two trainings of the same config and seed differ)
    return {**meta, "train_seconds": round(time.perf_counter() - start, 2)}


def _stop_between_rounds(_env: object) -> None:
    """A LightGBM callback: a Ctrl-C that a library swallowed (the interruption was noted) stops training here."""
    raise_if_stopped()


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back while the body runs, then act on one that came (the handler that was set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: came.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


TRAIN_EXAMPLES = """examples:

  # train on the earlier half of the Mooncake trace, then judge the model on the later half
  python -m learned.train --workload-trace ../shared/data/traces/mooncake_conversation.jsonl --out out/model.txt
  python main.py --cache-only --workload-trace ../shared/data/traces/mooncake_conversation.jsonl \\
      --policy learned,lru --capacity-blocks 2000 --set cache.learned_model=out/model.txt --set workload.range_start=0.5
"""


# Config sections training never reads: the features and labels are of the trace's prompt blocks at its block size
# (a --set of one of these would be accepted and ignored)
UNREAD_SECTIONS = ("cache.", "pd.", "network.", "slo.", "compute.", "cluster.")
# The serving keys it does read: the block size, what decides it where it is null (a Gated DeltaNet hybrid's is raised
# to fit its state: dtype, KV dtype, tensor parallelism, prefix caching), and a synthetic conversation's context length
READ_SERVING = frozenset(f"serving.{key}" for key in ("block_size", "max_model_len", "dtype", "kv_cache_dtype",
                                                      "tensor_parallel_size", "enable_prefix_caching"))
READ_HARDWARE = frozenset({"hardware.gpu"})  # the GPU decides a null block size (its attention backend's)


def _unread_by_training(key: str) -> bool:
    """Whether training ignores a --set of ``key``."""
    return key.startswith(UNREAD_SECTIONS) or any(key.startswith(section) and key not in read for section, read in
                                                  (("serving.", READ_SERVING), ("hardware.", READ_HARDWARE)))


def build_parser() -> argparse.ArgumentParser:
    """The command's flags (each says what it sets and its default)."""
    from sim.cli import OneLineParser  # (argparse's errors in one line, as main.py's)

    parser = OneLineParser(
        prog="python -m learned.train", name="learned.train", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_EXAMPLES,
        description="Train the learned eviction model (LightGBM) on the earlier part of a trace; judge it with "
                    "main.py --policy learned on the rest.")
    parser.add_argument("--workload-trace", metavar="PATH", help="training trace (default: the synthetic workload)")
    parser.add_argument("--out", required=True, metavar="PATH", help="model file to write (sidecar: PATH.json)")
    parser.add_argument("--range", default="0:0.5", metavar="START:END",
                        help="fractions of the trace to train on (default 0:0.5, the earlier half)")
    parser.add_argument("--config", metavar="PATH",
                        help="YAML config (default: the built-in defaults, equal to the bundled config.yaml); "
                             "train under the settings (block size, tiers) of the runs that will use the model")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. serving.block_size=512; repeatable")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row sampling and of LightGBM, >= 0 (default 0)")
    parser.add_argument("--rounds", type=int, default=40, metavar="N", help="boosting rounds (default 40)")
    parser.add_argument("--max-rows", type=int, default=100_000, metavar="N",
                        help="training rows sampled at most, at least 200 (default 100,000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return command_status("learned.train", lambda: _train_command(args))


def train_command(argv: list[str]) -> int:
    """The command's work, for a program that trains inside its own command (benchmarks/bench_learned.py): bad input,
    a Ctrl-C or SIGTERM ends that command, which says so in one line (``main`` would have said it as learned.train,
    and the program then a second line: "training failed", exit 1)."""
    return _train_command(build_parser().parse_args(argv))


def _check_outputs_are_not_inputs(args: argparse.Namespace, config: Config, out: Path) -> None:
    """Neither file written (the model, its sidecar) may be a file read: --out TRACE would overwrite the trace; nor
    the workload cache, which loading writes first (the model then replaced it)."""
    from sim.config_fields import path_settings

    check_distinct([("--config", args.config), *((f"config key '{key}'", path) for key, path in path_settings(config)),
                    ("config key 'workload.cache'", config.workload.cache)],
                   [("--out", out), ("--out (its sidecar)", sidecar_path(out))])


def _train_command(args: argparse.Namespace) -> int:
    """Validate the arguments (before any work), train, print the model's summary."""
    from sim.config_yaml import set_keys

    for flag, value, least in (("--rounds", args.rounds, 1), ("--max-rows", args.max_rows, MIN_FIT_ROWS),
                               ("--seed", args.seed, 0)):
        if value < least:
            why = (f" (LightGBM splits a node only into two leaves of min_data_in_leaf="
                   f"{DEFAULT_PARAMS['min_data_in_leaf']} rows)") if flag == "--max-rows" else ""
            raise InputError(f"{flag} must be at least {least}, got {value}{why}")
    if args.rounds > MAX_ROUNDS:
        raise InputError(f"--rounds {args.rounds:,}: at most {MAX_ROUNDS:,} (the default, 40, is what the bench measures)")
    try:
        start, end = (float(x) for x in args.range.split(":"))
    except ValueError:
        raise InputError(f"--range {quote(args.range)}: expected START:END fractions, e.g. 0:0.5") from None
    out = check_writable(args.out, "--out")
    check_writable(sidecar_path(out), "--out (its sidecar)")
    # The dedicated flags go in typed, as main.py's do: a path is a path (as a --set it was YAML, so a trace
    # named 'null' or '~' trained on the synthetic workload), and an error names the flag, not '--set'.
    flags = [("--range", "workload.range_start", start), ("--range", "workload.range_end", end),
             ("--seed", "seed", args.seed)]
    if args.workload_trace is not None:
        flags.append(("--workload-trace", "workload.trace", args.workload_trace))
    for key in (key for setting in args.sets for key in set_keys(setting)):
        if _unread_by_training(key):
            raise InputError(f"--set {key}: training does not read it (it reads the workload, the block size and "
                             "what decides it, and the seed); give it to the runs that use the model")
        flag = next(((flag, value) for flag, flag_key, value in flags if flag_key == key), None)
        if flag is not None:  # the flag's value (its default if not given) is applied after the --set and wins
            raise InputError(f"--set {key}: set by {flag[0]} here (to {quote(flag[1])}, after the --set); "
                             f"give it as {flag[0]}")
    config = load_config(args.config, sets=args.sets, flags=flags)
    _check_outputs_are_not_inputs(args, config, out)
    meta = train(config, out, args.rounds, args.max_rows)
    shown = dict(meta["train"])  # the fingerprint's thousands of hashes, as their count
    shown["fingerprint"] = {**shown["fingerprint"], "hashes": len(shown["fingerprint"]["hashes"])}
    print(json.dumps({"train": shown, **{k: meta[k] for k in ("validation", "train_seconds")}}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        status = main()
    except KeyboardInterrupt:  # outside main's own handler (e.g. while importing)
        print("learned.train: interrupted", file=sys.stderr)
        status = 130
    end_process(status)
