"""The learned policy's compiled state: what each array holds, and the indices of the per-block fields
(``B_*``) and of the scalars (``S_*`` ints, ``X_*`` floats). One layout shared by the hit-density table
(``learned.hit_density``), the shadow experts (``learned.shadow_experts``) and the policy's hooks
(``learned.kernel``), which allocates the arrays (``new_state``).

- ``blocks``: int32 [ids, BLOCK_FIELDS]: per-block fields named ``B_*`` below;
- ``last``: int64 [ids]: stream position of the block's last access;
- ``real_ids``: int64 [capacity]: the real cache's resident ids, in slots (``B_REAL`` holds a
  block's slot); ``model_slots``: int64 [2, capacity]: the model expert's resident ids (row 0) and
  their last access and class packed as ``last << CLASS_BITS | class`` (row 1: one cache line per
  sampled candidate);
- ``ints``: int64 scalars ``S_*``; ``floats``: float64 scalars ``X_*``;
- ``table``: float64 [classes, AGE_BUCKETS]: hit density by predicted class and age bucket for
  the current horizon, each entry computed on first use (NaN until then); ``dist``, ``edges``: the
  classes' distance distributions.
"""

from __future__ import annotations

MODEL, ARC, LRU, S3FIFO = 0, 1, 2, 3
EXPERTS = 4
EXPERT_NAMES = ("model", "arc", "lru", "s3fifo")
NONE_HOLDS = (1 << EXPERTS) - 1  # out-list of blocks no expert holds
OUT_LISTS = NONE_HOLDS

# Per-block fields (a row per block id).
B_REAL = 0  # slot in real_ids, -1: not in the real cache
B_MODEL = 1  # slot in model_slots, -1: not held by the model expert
B_ARC = 2  # ARC list: 0 none, 1 T1, 2 T2, 3 B1, 4 B2
B_ARC_PREV = 3
B_ARC_NEXT = 4
B_OUT_PREV = 5  # links of the block's out-list
B_OUT_NEXT = 6
B_OUT = 7  # out-list of a block in the real cache: bit e set: expert e does not hold it (0: all do)
B_CLASS = 8  # predicted class of the block's last access
B_LRU_PREV = 9  # links of the LRU expert's list (-2: not held by it)
B_LRU_NEXT = 10
B_S3 = 11  # the S3-FIFO expert's queue << 2 | its 2-bit frequency (queue 0: none)
B_S3_PREV = 12
B_S3_NEXT = 13
B_MLRU_PREV = 14  # links of the model expert's list of its blocks, least recently accessed first
B_MLRU_NEXT = 15
BLOCK_FIELDS = 16

# Integer scalars.
S_CAP = 0  # capacity of the experts (the policy's nominal capacity)
S_NREAL = 1
S_NMODEL = 2
S_CLOCK = 3  # the clock: the latest access position seen (positions may come out of order)
S_RNG = 4
S_LEADER = 5  # the expert the real cache follows
S_ARC_HEAD = 6  # + list - 1 (T1, T2, B1, B2)
S_ARC_TAIL = S_ARC_HEAD + 4
S_ARC_SIZE = S_ARC_TAIL + 4
S_OUT_HEAD = S_ARC_SIZE + 4  # + out-list - 1 (the list's bit e set: expert e does not hold the block)
S_OUT_TAIL = S_OUT_HEAD + OUT_LISTS
S_OUT_SIZE = S_OUT_TAIL + OUT_LISTS
S_SAMPLES = S_OUT_SIZE + OUT_LISTS
S_NEXT_TABLE = S_SAMPLES + 1  # clock after which the hit-density table may be recomputed
S_REMOVALS = S_SAMPLES + 2  # real-cache removals so far (seeds the victim peek's sample)
S_TABLES = S_SAMPLES + 3  # hit-density tables computed
S_SWITCHES = S_SAMPLES + 4  # leader changes
S_LRU_HEAD = S_SAMPLES + 5  # the LRU expert's least recent block
S_LRU_TAIL = S_SAMPLES + 6
S_LRU_SIZE = S_SAMPLES + 7
S_S3_HEAD = S_SAMPLES + 8  # + queue - 1 (small, main, ghost)
S_S3_TAIL = S_S3_HEAD + 3
S_S3_SIZE = S_S3_TAIL + 3
S_S3_CAPS = S_S3_SIZE + 3  # + queue - 1: the queues' capacities
S_S3_EVICTED = S_S3_CAPS + 3  # 1 after the S3-FIFO expert's first eviction
# Prefix scoring (a prefix-semantics run: the policy knows each position's request): the start position of the
# request whose touches are being scored (-1: none yet), and + expert: how many of its blocks, from its first, the
# expert held when its first touch came (its prefix hits, as a prefix cache that were that expert would serve).
S_REQ = S_S3_EVICTED + 1
S_PLEN = S_REQ + 1
S_MLRU_HEAD = S_PLEN + EXPERTS  # that list's least recent block (then its most recent, its length)
# The first expert that may lead (0: any; ARC: the classic ones only, for a copy whose stream is not the one the
# model predicts: ``Predictions.model_leads``; such a copy runs no model expert)
S_ELECT_FROM = S_MLRU_HEAD + 3
INT_SLOTS = S_ELECT_FROM + 1

# Float scalars.
X_P = 0  # ARC's target size of T1
X_SCORE = 1  # + expert: decayed hits
X_SIGMAS = X_SCORE + EXPERTS  # lead (in standard deviations of the discordant hits) needed to switch experts
X_AGE = X_SIGMAS + 1  # running mean eviction age of the model expert (accesses)
X_AGE_WEIGHT = X_SIGMAS + 2  # weight of one eviction in that mean
X_HORIZON = X_SIGMAS + 3  # horizon the current table was computed for
X_HORIZON_AGES = X_SIGMAS + 4  # horizon = this many mean eviction ages
X_DISCORD = X_SIGMAS + 5  # + a * EXPERTS + b: decayed count of accesses expert a hit and expert b missed
FLOAT_SLOTS = X_DISCORD + EXPERTS * EXPERTS

T1, T2, B1, B2 = 1, 2, 3, 4
SMALL, MAIN, GHOST = 1, 2, 3  # the S3-FIFO expert's queues
CLASS_BITS = 16  # classes < 65,536 (a table per retrained model; positions < 2^47)
CLASS_MASK = (1 << CLASS_BITS) - 1
