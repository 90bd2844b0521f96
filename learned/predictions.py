"""What the learned policy is given: for every access of the stream, a class whose predicted
distribution of the distance to the block's next use is one row of a small table.

The model predicts a full distribution per access; the policy ranks blocks by hit density,
which depends on that distribution, the block's idle time and the cache's own horizon. A
table per class (a few thousand classes) lets the compiled kernel look hit densities up
instead of integrating per candidate, and keeps memory at 4 bytes per access.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


def request_chains(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a stream of requests (CSR ``offsets``): each position's request start, and its next position in the
    request (-1: the request's last)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    starts = np.repeat(offsets[:-1], np.diff(offsets))
    nexts = np.arange(1, len(starts) + 1, dtype=np.int64)
    nexts[np.r_[starts[1:] != starts[:-1], True] if len(starts) else []] = -1
    return starts, nexts


@dataclass
class Predictions:
    klass: np.ndarray  # int32 [accesses]: class of each access (stream position)
    dist: np.ndarray  # float64 [classes, buckets]: P(next-use distance in bucket) per class
    edges: np.ndarray  # float64 [buckets + 1]: bucket j is (edges[j], edges[j+1]], log-uniform inside
    num_ids: int  # block ids are below this
    # A prefix-semantics run's requests (``with_requests``; None: plain): each position's block and its request's
    # first position, so the policy scores its experts on the prefix hits each would have served
    keys: np.ndarray | None = None  # int64 [accesses]
    starts: np.ndarray | None = None  # int64 [accesses]
    # each position's child in the lookup chain: the position of the block a later lookup reads right after this one
    # (-1: none); the next position of its request but where the stream holds a block no lookup reads in between
    nexts: np.ndarray | None = None  # int64 [accesses]
    # False: the copy given these sees only part of the stream they predict (an instance's private HBM among
    # several: a block's next use may come at another instance), so its model expert never leads (``private``)
    model_leads: bool = True

    def with_requests(self, blocks: np.ndarray, offsets: np.ndarray, nexts: np.ndarray | None = None) -> "Predictions":
        """These predictions for a run that looks ``blocks`` up by prefix semantics, request by request (CSR
        ``offsets``): the policy scores each expert on the longest prefix of a request it held, and keeps its
        holdings closed along each position's child in ``nexts`` (default: the next position of its request;
        ``CacheStream.chain_next``: a prompt's partial last block is no generated block's parent)."""
        starts, in_request = request_chains(offsets)
        return dataclasses.replace(self, keys=np.asarray(blocks, dtype=np.int64), starts=starts,
                                   nexts=np.asarray(in_request if nexts is None else nexts, dtype=np.int64))

    def private(self) -> "Predictions":
        """These predictions for an instance's own HBM among several instances, whose cache sees only the requests
        routed to it: a block's predicted next use is anywhere in the stream, perhaps at another instance, and with
        exclusive tiers a block one HBM keeps is out of the tiers the others read (Belady's caveat in README). Its
        copy runs no model expert (its holdings would still order the real cache's victims, "held by fewer experts
        first") and follows the best of its classic experts; the model leads where a copy sees every lookup of its
        blocks (a lone instance's tiers, the tiers instances share, a cache-only replay)."""
        return dataclasses.replace(self, model_leads=False)

    @classmethod
    def perfect(cls, next_use: np.ndarray, num_ids: int = 1) -> "Predictions":
        """A perfect predictor from true next-use positions (tests, and Belady-like reference runs):
        each access's class is the power-of-two bucket its true distance falls in."""
        next_use = np.asarray(next_use, dtype=np.float64)
        distance = next_use - np.arange(len(next_use))
        top = max(2.0, float(len(next_use)))
        edges = np.r_[0.5, 2.0 ** np.arange(0, int(np.ceil(np.log2(top))) + 1), np.inf]
        buckets = len(edges) - 1
        klass = np.clip(np.searchsorted(edges, distance, side="left") - 1, 0, buckets - 1)
        klass[distance > top] = buckets - 1  # "never again": the bucket beyond the horizon
        return cls(klass.astype(np.int32), np.eye(buckets), edges, num_ids)
