"""The learned policy's model expert past its label horizon: there every class's remaining law is the same (the model
only says "not within the horizon"), so blocks differ only in age and the least recent has the lowest hit density;
the expert's victim is that block exactly, not a sample's oldest (near the knee, where the expert's eviction age
passes the label horizon, LRU, which evicts exactly it, did better: learned/README.md "Serving near the knee")."""

from __future__ import annotations

import numpy as np
import pytest

from learned import kernel
from learned.hit_density import age_bucket, density
from learned.predictions import Predictions
from learned.state_layout import B_MODEL
from sim.cache.policies.learned import Learned

# a label horizon of 16 accesses; "beyond" spread log-uniformly to 16 * 1024 (learned.model.BEYOND_SPAN)
EDGES = np.array([0.5, 1, 2, 4, 8, 16, 16 * 1024.0])
NO_REQUESTS = np.zeros(0, dtype=np.int64)


def _step(policy: Learned, key: int, at: int) -> None:
    s = policy.state
    kernel._experts_step(s["blocks"], s["last"], s["model_slots"], s["ints"], s["floats"], s["table"], s["dist"],
                         s["edges"], key, int(policy.klass[at]), at, NO_REQUESTS, NO_REQUESTS, NO_REQUESTS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_past_the_label_horizon_the_model_expert_evicts_its_least_recent_block(seed, monkeypatch):
    """200 blocks, each used once at positions 0-199 and predicted (two classes, different masses within the
    horizon) not to come back within it; a newcomer at position 1,000 needs room. Every block is idle 801-1,000
    accesses, far past the horizon, where the hit density falls with age alone (checked below from the table): the
    lowest is block 0's, the least recent (with the 104 others of its age bucket, 4 per octave). A sample of 32 of
    200 draws block 0 in 15% of evictions; the expert evicts it at every seed."""
    new_state = kernel.new_state
    monkeypatch.setattr(kernel, "new_state", lambda *a: new_state(*a, seed=seed))
    dist = np.array([[0.2, 0.0, 0.0, 0.0, 0.0, 0.8], [0.0, 0.0, 0.0, 0.0, 0.5, 0.5]])
    klass = np.r_[np.arange(200) % 2, 0].astype(np.int32)
    keys = np.r_[np.arange(200), 200]
    positions = np.r_[np.arange(200), 1000]
    policy = Learned(200, Predictions(np.zeros(1001, dtype=np.int32), dist, EDGES, num_ids=201))
    policy.klass = np.zeros(1001, dtype=np.int32)
    policy.klass[positions] = klass
    for key, at in zip(keys[:200], positions[:200], strict=True):
        _step(policy, int(key), int(at))
    s = policy.state
    hd = [density(s["table"], s["dist"], s["edges"], s["floats"], int(klass[k]), age_bucket(1000 - k))
          for k in range(200)]
    # past the horizon the classes are alike (to rounding) and the density falls with age: block 0's is the lowest
    assert np.allclose(hd[0::2], hd[1::2], rtol=1e-9) and hd[0] == min(hd) and hd[0] < hd[199]
    _step(policy, 200, 1000)
    held = s["blocks"][:201, B_MODEL] >= 0
    assert not held[0] and held[1:].all()

