"""A trained next-use model: LightGBM booster + JSON sidecar, and batch prediction for a trace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learned.features import FEATURES, access_features
from sim.errors import InputError
from trace.request import Trace


def sidecar_path(model_path: str | Path) -> Path:
    return Path(str(model_path) + ".json")


@dataclass
class LearnedModel:
    """A LightGBM regressor of log next-use distance, with what it was trained on."""

    booster: Any
    meta: dict[str, Any]
    path: str

    @classmethod
    def load(cls, path: str | Path) -> "LearnedModel":
        import lightgbm as lgb

        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file() or not side.is_file():
            raise InputError(f"learned model {path} (and its sidecar {side.name}) not found; train one with "
                             "python -m learned.train --workload-trace TRAIN --out model.txt")
        meta = json.loads(side.read_text())
        if tuple(meta.get("features", ())) != FEATURES:
            raise InputError(f"learned model {path} was trained on other features {meta.get('features')}; retrain it")
        return cls(lgb.Booster(model_file=str(path)), meta, str(path))

    def check_no_overlap(self, trace: Trace, allow: bool) -> None:
        """Refuse to evaluate on the requests the model was trained on (same file, overlapping range)."""
        train = self.meta["train"]
        if allow or train["sha256"] != trace.provenance.sha256:
            return
        a, b = train["request_range"]
        c, d = trace.provenance.request_range or (0, trace.provenance.rows_used)
        if max(a, c) < min(b, d):
            raise InputError(
                f"learned model {self.path} was trained on requests [{a}, {b}) of this trace and the run uses "
                f"[{c}, {d}): evaluate on a disjoint range (e.g. --set workload.range_start=0.5) or another trace, "
                "or pass --allow-train-test-overlap")

    def predicted_next_use(self, trace: Trace) -> np.ndarray:
        """For each access position t: t + predicted accesses until that block is used again."""
        features = access_features(trace)
        distance = np.expm1(self.booster.predict(features, num_threads=self.meta["params"].get("num_threads", 0)))
        return np.arange(len(features), dtype=np.float64) + np.maximum(distance, 1.0)

    def describe(self) -> dict[str, Any]:
        train = self.meta["train"]
        return {"path": self.path, "train_sha256": train["sha256"], "train_request_range": train["request_range"],
                "objective": self.meta["params"]["objective"]}
