"""Which TP ranks move a KV block from a prefill instance to a decode instance, and how many bytes each moves.

vLLM 0.33's NixlConnector (vllm/distributed/kv_transfer/kv_connector/v1/nixl/) pairs the ranks of a decode
instance at TP D with those of a prefill instance at TP P (``compute_tp_mapping``, nixl/tp_mapping.py, called by
each decode rank at its handshake: "local" is the decode side, "remote" the prefill side):

- D >= P: decode rank r reads from the one prefill rank ``r * P // D``; D / P decode ranks read different head
  chunks of that rank's block (``compute_head_offset``), each its own shard of the block;
- P > D: decode rank r reads from the P / D prefill ranks ``r * P/D ...``, one head chunk from each, keeping only
  the first rank of each distinct KV head (GQA dedup: "np.unique keeps only the first rank per unique head so we
  don't issue redundant reads");
- MLA: one source rank, ``r * P // D``, whatever the ratio: the latent is whole on every rank.

Each decode rank reads its own block shard whole, split evenly over its sources (``_build_fa_remote``, nixl/
base_worker.py: ``local_block_len // num_reads`` a read; a replicated MLA region is one read of the whole block).
So every decode rank receives its shard (``kv_block_bytes`` at TP D), heads it holds as a replica included (TP D
above the KV-head count: each rank reads its copy, so those bytes cross more than once), and a prefill rank sends
what the decode ranks that read from it ask for, which at D > P can be more than the shard it holds.

kvsim gives each TP rank its own NIC (ranks transfer side by side), so a transfer takes as long as its busiest
rank's bytes (a prefill rank sending to several readers, or a decode rank receiving its shard) need; the bytes
moved are every decode rank's. At P = D this is today's rule: each rank sends its shard to its peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


def source_ranks(decode_rank: int, decode_tp: int, prefill_tp: int, kv_heads: int, mla: bool) -> list[int]:
    """The prefill ranks decode rank ``decode_rank`` reads its shard from (vLLM ``compute_tp_mapping``'s attention
    source ranks, the decode side local)."""
    if mla or decode_tp >= prefill_tp:
        return [decode_rank * prefill_tp // decode_tp]
    ratio = prefill_tp // decode_tp
    start = decode_rank * ratio
    first: dict[int, int] = {}  # each distinct head's first rank (np.unique(..., return_index=True))
    for i in range(ratio):
        first.setdefault((start + i) * kv_heads // prefill_tp, i)
    return [start + i for i in sorted(first.values())]


@dataclass(frozen=True)
class TransferPlan:
    """Bytes of one KV block each rank sends (prefill) and receives (decode)."""

    sent: tuple[int, ...]  # per prefill rank
    received: tuple[int, ...]  # per decode rank

    @cached_property  # (read at every transfer)
    def busiest_bytes(self) -> int:
        """A block's bytes on the busiest rank's link: what times a transfer."""
        return max(max(self.sent), max(self.received))

    @cached_property
    def moved_bytes(self) -> int:
        """A block's bytes over all ranks (each decode rank's shard; a replicated head once per rank holding it)."""
        return sum(self.received)


def transfer_plan(prefill_tp: int, decode_tp: int, kv_heads: int, mla: bool, decode_shard_bytes: int) -> TransferPlan:
    """The ranks' bytes of one block whose shard on a decode rank is ``decode_shard_bytes`` (``kv_block_bytes`` at
    the decode side's TP). The larger TP must be a multiple of the smaller (``TransferTopology.tp_ratio``)."""
    if max(prefill_tp, decode_tp) % min(prefill_tp, decode_tp):
        raise ValueError(f"TP {prefill_tp} -> {decode_tp}: the larger is not a multiple of the smaller")
    sent = [0] * prefill_tp
    for rank in range(decode_tp):
        sources = source_ranks(rank, decode_tp, prefill_tp, kv_heads, mla)
        read, rest = divmod(decode_shard_bytes, len(sources))
        if rest:
            raise ValueError(f"a {decode_shard_bytes}-byte shard does not split over {len(sources)} source ranks")
        for source in sources:
            sent[source] += read
    return TransferPlan(tuple(sent), (decode_shard_bytes,) * decode_tp)
