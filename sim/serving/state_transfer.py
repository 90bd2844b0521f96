"""Prefill/decode disaggregation of a Gated DeltaNet hybrid (``sim.serving.state_groups``) as vLLM 0.33's
NixlConnector serves it (distributed/kv_transfer/kv_connector/v1/nixl/).

- The prefill side stops one token short: a GDN state cannot be rewound, so the decoder must be sent h(N-1) and derive
  h(N) itself (base_scheduler.py ``_prefill_backoff``: 1 with Mamba layers; ``_truncate_request_for_prefill`` drops
  the prompt's last token on the prefill side when the prompt is longer than that, ``_get_remote_prefill_token_count``
  asks for N - 1 tokens on the decode side).
- What crosses, per TP rank (both sides at the same TP): the attention group's blocks of those N - 1 tokens that the
  decode side does not hold (its own full-attention hit, ``KVCacheManager.get_computed_blocks_for_connector``: whole
  blocks, short of the last token; base_worker.py ``_apply_prefix_caching`` end-trims the prefill side's list to the
  decode side's), each a page of every KV-cache tensor (``_compute_desc_ids``: an attention block is read from all
  ``group_size`` regions), and, in each state group, only the running state's block (``get_exchange_clipped_blocks`` /
  utils.py ``clip_ssm_state_blocks``: the last slot), whatever the decode side holds: of each region its conv state
  (conv_dim / TP × (kernel - 1) values, three reads of Q, K and V, ssm_conv_transfer_utils.py
  ``derive_mamba_conv_split``) and its recurrent state, unpadded (``_build_mamba_local``: conv and SSM sub-regions, not
  the page the state is padded to). Per request: attention blocks × ``block_bytes`` + state groups × ``group_size``
  × ``state_bytes``.
- The decode side holds the attention blocks of the N - 1 tokens and one running state block per state group while
  the state arrives (``MambaManager``: the states before the last are skipped), then computes token N alone (a
  one-token query over N - 1 cached tokens: the decode kernels' shape) and samples the first output token from it.
- A decode side whose own full-attention hit covers all N - 1 tokens loads nothing (the connector returns 0 tokens,
  nothing crosses) and computes from the hit every group agrees on (scheduler.py: ``hit_diverged`` and no external
  tokens → ``get_computed_blocks``), as a request served locally would.

The connector sends after the prefill ends (nixl/connector.py ``save_kv_layer`` is a no-op): no layerwise overlap.
"""

from __future__ import annotations

from sim.serving.job import Job
from sim.serving.state_groups import StateGroups

# trailing prompt tokens the prefill side leaves to the decode side (nixl/base_scheduler.py _prefill_backoff: Mamba)
PREFILL_BACKOFF = 1


def prefill_tokens(prompt: int) -> int:
    """The prompt tokens the prefill side computes and sends (``_truncate_request_for_prefill``: all of them when the
    prompt is no longer than the backoff)."""
    return prompt - PREFILL_BACKOFF if prompt > PREFILL_BACKOFF else prompt


def state_transfer_bytes(groups: StateGroups) -> int:
    """One TP rank's bytes of a request's states: the running state block of each state group, a state of each of
    its ``group_size`` layers (base_worker.py ``_compute_desc_ids``: every SSM region of the block), unpadded."""
    return groups.state_groups * groups.group_size * groups.state_bytes


class RemoteStates:
    """The decode side of a GDN hybrid's KV-cache manager (mixed in before ``KVCacheManager``)."""

    block_size: int

    def sent_blocks(self, job: Job, present: int) -> int:
        """Attention blocks the connector sends to ``job`` (``Instance.reserve`` set its computed tokens to those the
        prefill side sent; ``present`` of their blocks are held here): the rest of those tokens' blocks."""
        return max(0, -(-job.computed // self.block_size) - present)
