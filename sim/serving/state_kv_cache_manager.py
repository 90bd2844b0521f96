"""vLLM's hybrid KV-cache manager for a Gated DeltaNet hybrid without prefix caching (``sim.serving.state_groups``):
the attention group's blocks grow with the tokens as ``KVCacheManager``'s, and a request holds one block in each
state group from its first allocation to its end (vLLM ``MambaManager`` with mamba_cache_mode "none": its block is
max_model_len tokens, so cdiv(tokens, max_model_len) = 1, none ever skipped). Admission (``allocate_slots``'s
``get_num_blocks_to_allocate``, summed over the groups) counts them with the attention blocks; a preempted request
frees them and takes them again when it is admitted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sim.serving.block_pool import BlockPool
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager, TieredCache
from sim.serving.state_transfer import RemoteStates


class StateKVCacheManager(RemoteStates, KVCacheManager):
    """One attention group and ``state_blocks`` state groups over one block pool."""

    def __init__(self, pool: BlockPool, cache: TieredCache, block_size: int, prefix_caching: bool,
                 clock: Callable[[], float], state_blocks: int):
        super().__init__(pool, cache, block_size, prefix_caching, clock)
        self.state_blocks = state_blocks  # one per state group

    def blocks_alone(self, tokens: int) -> int:
        """Blocks a request of ``tokens`` tokens holds on an idle instance: its attention blocks and its states."""
        return super().blocks_alone(tokens) + self.state_blocks

    def new_blocks(self, job: Job, tokens: int) -> int:
        """The attention blocks growing ``job`` to ``tokens`` tokens takes, and its states when it holds none yet."""
        return super().new_blocks(job, tokens) + (0 if job.state_held else self.state_blocks)

    def holds(self, job: Job, tokens: int) -> bool:
        """``KVCacheManager.holds``, once the job holds its states (else its next allocation takes them)."""
        return job.state_held and super().holds(job, tokens)

    def allocate(self, job: Job, tokens: int) -> None:
        """Grow ``job``'s attention blocks to ``tokens`` tokens, taking its state blocks first if it has none."""
        if not job.state_held:
            self.pool.hold((), self.state_blocks)
            job.state_held = True
        super().allocate(job, tokens)

    def free(self, job: Job) -> None:
        """Free a job's attention blocks and its states."""
        super().free(job)
        job.state_held = False

    def _held_blocks(self, job: Job) -> tuple[Sequence[int], int]:
        keys, private = super()._held_blocks(job)
        return keys, private + (self.state_blocks if job.state_held else 0)
