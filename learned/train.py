"""Train the learned eviction model: ``python -m learned.train --workload-trace TRAIN --out model.txt``.

Regression of log(1 + accesses until the next use) on online features (``learned.features``)
with LightGBM. Regression rather than ranking: eviction needs a total order of every
resident block by expected next use, and a regressor gives that directly, while a
ranking objective needs query groups (candidate sets) that do not exist offline.
The last 10% of the training range (by time) is held out for validation metrics.
Training is deterministic: same trace, range, seed and parameters → identical model file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import numpy as np  # noqa: E402

from learned.features import FEATURES, access_features, next_use_labels  # noqa: E402
from learned.model import sidecar_path  # noqa: E402
from sim.config import Config, load_config  # noqa: E402
from sim.errors import InputError  # noqa: E402

DEFAULT_PARAMS = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 63,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}


def train(config: Config, out: Path, rounds: int = 200, max_rows: int = 2_000_000) -> dict:
    """Fit on the configured trace range; write ``out`` and its sidecar; return the sidecar."""
    import lightgbm as lgb

    from trace.workload import load_workload

    start = time.perf_counter()
    trace = load_workload(config)
    features = access_features(trace)
    labels = next_use_labels(trace.access_stream())
    n = len(labels)
    if n < 1000:
        raise InputError(f"only {n} block accesses in the training range: too few to train on")
    split = int(n * 0.9)
    rng = np.random.default_rng(config.seed)
    fit_rows = np.arange(split)
    if split > max_rows:
        fit_rows = np.sort(rng.choice(split, size=max_rows, replace=False))
    params = {**DEFAULT_PARAMS, "seed": config.seed}
    booster = lgb.train(params, lgb.Dataset(features[fit_rows], labels[fit_rows], feature_name=list(FEATURES)),
                        num_boost_round=rounds)
    valid_pred = booster.predict(features[split:], num_threads=params["num_threads"])
    valid = labels[split:]
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    meta = {
        "features": list(FEATURES),
        "label": "log1p(accesses until next use); not used again: censored at the rest of the stream",
        "params": params,
        "rounds": rounds,
        "train": {
            "path": trace.provenance.path, "format": trace.provenance.format, "sha256": trace.provenance.sha256,
            "request_range": list(trace.provenance.request_range or (0, trace.provenance.rows_used)),
            "block_tokens": trace.provenance.block_tokens, "accesses": n, "rows_fitted": len(fit_rows),
        },
        "validation": {
            "rows": int(n - split),
            "rmse_log_distance": float(np.sqrt(np.mean((valid_pred - valid) ** 2))),
            "spearman": float(np.corrcoef(ranks(valid_pred), ranks(valid))[0, 1]) if n - split > 1 else None,
        },
        "feature_importance_gain": dict(zip(FEATURES, booster.feature_importance("gain").round(3).tolist())),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out))
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learned.train", description=__doc__.splitlines()[0])
    parser.add_argument("--workload-trace", required=True, metavar="PATH", help="training trace")
    parser.add_argument("--out", required=True, metavar="PATH", help="model file to write (sidecar: PATH.json)")
    parser.add_argument("--range", default="0:0.5", metavar="START:END",
                        help="fractions of the trace to train on (default 0:0.5, the earlier half)")
    parser.add_argument("--config", metavar="PATH", help="config file (default: built-in defaults)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. serving.block_size=512")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--max-rows", type=int, default=2_000_000, help="subsample training rows above this")
    args = parser.parse_args(argv)
    try:
        start, end = (float(x) for x in args.range.split(":"))
        config = load_config(args.config, sets=[*args.sets, f"workload.trace={args.workload_trace}",
                                                f"workload.range_start={start}", f"workload.range_end={end}",
                                                f"seed={args.seed}"])
        meta = train(config, Path(args.out), args.rounds, args.max_rows)
    except (InputError, ValueError) as exc:
        print(f"learned.train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: meta[k] for k in ("train", "validation", "train_seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
