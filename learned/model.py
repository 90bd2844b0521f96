"""A trained next-use model: a LightGBM booster and its JSON sidecar, validated on load, and the
batch prediction of a trace's accesses into ``Predictions`` (classes of predicted distributions).

The sidecar records what the model means and what it was trained on: the feature list (features
are computed by name, so the list comes from the sidecar), the label definition and its bucket
edges, the block size, the training range and source, a content fingerprint of the training requests
(``learned.fingerprint``: a copy or slice of them is found too), and a hash of the model file (a
truncated or replaced model file is refused rather than half-read).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learned.features import FEATURES, access_features
from learned.fingerprint import REFUSE_SHARE, overlap
from learned.predictions import Predictions
from learned.sidecar import bad, check_sidecar, field_error, model_text_defect
from sim.config import Config
from sim.config_fields import sidecar_path
from sim.errors import InputError
from sim.file_kinds import other_kind
from trace.request import Trace, file_sha256

SIDECAR_VERSION = 2
# "Not used again within the horizon" is spread log-uniformly over the next ten doublings: an
# uninformative prior under which a block idle longer is a little less likely back (LRU's
# assumption) where the model has nothing to say. Measured on Mooncake (learned/README.md):
# a hard "never" (inf) loses to LRU at capacities whose eviction age exceeds the horizon.
BEYOND_SPAN = 2.0 ** 10
PREDICT_CHUNK = 1 << 20  # rows per LightGBM call: bounds memory at ~100 MB for any trace


def workload_identity(trace: Trace, config: Config) -> str:
    """What a trace was drawn from: the file's hash, or the synthetic generator's config and seed."""
    if trace.provenance.sha256:
        return trace.provenance.sha256
    synthetic = json.dumps(config.to_dict()["workload"]["synthetic"], sort_keys=True)
    return "synthetic:" + hashlib.sha256(f"{synthetic}|seed={config.seed}".encode()).hexdigest()


def class_codes(distribution: np.ndarray, cuts: list[int], thresholds: np.ndarray) -> np.ndarray:
    """Class of each predicted distribution: its cumulative probabilities at the bucket ends ``cuts``,
    each binned by ``thresholds`` (levels = thresholds + 1), as one mixed-radix number."""
    cumulative = np.cumsum(distribution, axis=1)
    levels = thresholds.shape[1] + 1
    code = np.zeros(len(distribution), dtype=np.int64)
    for cut, bounds in zip(cuts, thresholds, strict=True):
        code = code * levels + np.searchsorted(bounds, cumulative[:, cut], side="right")
    return code


def _quiet_booster(path: Path, text: str) -> Any:
    """``lightgbm.Booster`` of ``text``; LightGBM's own log lines (its fatal errors are written straight to file
    descriptor 2, its warnings through Python) are kept off the terminal: a defect is one InputError."""
    import contextlib
    import io
    import warnings

    import lightgbm as lgb

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 2)
            try:
                return lgb.Booster(model_str=text)
            except Exception as exc:  # LightGBM's own parse errors
                first = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
                raise bad(path, f"cannot be read ({first})") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class LearnedModel:
    """A LightGBM multiclass model of the bucket of an access's next-use distance, with its sidecar."""

    booster: Any
    meta: dict[str, Any]
    path: str

    @classmethod
    def load(cls, path: str | Path) -> "LearnedModel":
        """Load and validate ``path`` and ``path.json``; any defect is an InputError naming the file."""
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            raise InputError(f"learned model {path} not found; train one with "
                             "python -m learned.train --workload-trace TRAIN --out model.txt")
        if not side.is_file():
            said = other_kind(path, "lightgbm")  # (its sidecar, a trace, an overlay given as the model)
            if said is not None:
                raise InputError(f"learned model {path}: {said}")
            raise InputError(f"learned model sidecar {side} not found (written beside the model by learned.train)")
        try:
            meta = json.loads(side.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(side, f"not a JSON sidecar ({str(exc)[:80]})") from None
        except RecursionError:  # json's recursive decoder, on arrays or objects nested thousands deep
            raise bad(side, "not a JSON sidecar (nested too deep)") from None
        checked = check_sidecar(meta, side)
        if file_sha256(path) != meta["model_sha256"]:
            raise bad(path, "the file does not match its sidecar's hash (truncated or replaced)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise bad(path, "cannot be read (not UTF-8 text)") from None
        defect = model_text_defect(text)
        if defect:
            said = other_kind(path, "lightgbm")
            if said is not None:
                raise InputError(f"learned model {path}: {said}")
            raise bad(path, f"cannot be read ({defect})")
        booster = _quiet_booster(path, text)
        model = cls(booster, meta, str(path))
        model._table, model._thresholds, model._cuts = checked["table"], checked["thresholds"], checked["cuts"]
        model._fingerprint = checked["fingerprint"]
        model._threads = min(checked["threads"], os.cpu_count() or 1)
        model._edges = np.r_[checked["edges"], checked["edges"][-1] * BEYOND_SPAN]
        buckets = len(checked["edges"])
        if booster.num_model_per_iteration() != buckets:
            raise field_error(side, "label.edges", f"makes {buckets} buckets and the model predicts "
                                                   f"{booster.num_model_per_iteration()}")
        if booster.feature_name() != meta["features"]:
            raise field_error(side, "features", "does not list the model's features in its order")
        return model

    def check(self, trace: Trace, config: Config) -> None:
        """Refuse a run the model cannot honestly be judged on: another block size, or the requests it
        was trained on (same source, overlapping range) unless the config allows it."""
        run_tokens, model_tokens = trace.provenance.block_tokens, self.meta["block_tokens"]
        if run_tokens != model_tokens:
            raise InputError(f"learned model {self.path} was trained on {model_tokens}-token blocks and this run "
                             f"uses {run_tokens}-token blocks: --set serving.block_size={model_tokens} or retrain")
        train = self.meta["train"]
        if config.cache.allow_train_test_overlap:
            return
        if train["source"] == workload_identity(trace, config):
            a, b = train["request_range"]
            c, d = trace.provenance.request_range or (0, trace.provenance.rows_used)
            if max(a, c) < min(b, d):
                # (a synthetic workload is its generator's draw at one seed: --seeds runs several, so say which)
                drawn = not trace.provenance.sha256
                raise InputError(
                    f"learned model {self.path} was trained on requests [{a}, {b}) of this "
                    f"{f'synthetic workload at seed {config.seed}' if drawn else 'workload'} and the run uses "
                    f"[{c}, {d}): evaluate on a disjoint range (e.g. --set workload.range_start=0.5) or another "
                    f"{'seed' if drawn else 'trace'}, or pass --allow-train-test-overlap")
        self._check_content(trace)

    def _check_content(self, trace: Trace) -> None:
        """Refuse a run a substantial share of whose requests are the training requests by content (a copy, a
        slice, a re-timed copy of the training trace: ``learned.fingerprint``); an older sidecar has no
        fingerprint, and its runs are checked by source and range alone."""
        fingerprint = self._fingerprint
        if fingerprint is None:
            return
        found, sampled = overlap(fingerprint["hashes"], fingerprint["modulus"], trace, fingerprint["gram"])
        if sampled and found / sampled >= REFUSE_SHARE:
            raise InputError(
                f"learned model {self.path} was trained on {found / sampled:.0%} of this run's sampled "
                f"{fingerprint['gram']}-request sequences ({found:,} of {sampled:,}; a copy of its training trace?): "
                "use other requests, or --allow-train-test-overlap")

    def predict(self, trace: Trace) -> Predictions:
        """Every access's class of predicted next-use distribution (features of the past only)."""
        names = list(FEATURES)
        features = access_features(trace)[:, [names.index(f) for f in self.meta["features"]]]
        klass = np.empty(len(features), dtype=np.int32)
        for lo in range(0, len(features), PREDICT_CHUNK):
            chunk = self.booster.predict(features[lo:lo + PREDICT_CHUNK], num_threads=self._threads)
            klass[lo:lo + PREDICT_CHUNK] = class_codes(chunk.reshape(len(chunk), -1), self._cuts, self._thresholds)
        stream = trace.access_stream()
        num_ids = int(stream.max()) + 1 if len(stream) else 1
        return Predictions(klass, self._table, self._edges, num_ids)

    def describe(self) -> dict[str, Any]:
        train = self.meta["train"]
        return {"path": self.path, "train_source": train["source"], "train_request_range": train["request_range"],
                "block_tokens": self.meta["block_tokens"]}
