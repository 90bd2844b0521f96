"""The report's config echo (Contract: "the full resolved config"): every key, and each key a run derives where it
is null at the value the run used, as the run read it.

Derived here: the KV block size (vLLM's for the model and GPU, or the trace's own blocks), the engine's limits
(``max_model_len``, ``max_num_seqs``, ``max_num_batched_tokens``: vLLM's defaults for the GPU), the longest request a
workload may hold, each PD role's tensor-parallel size (serving's) and a rack's uplink (from the oversubscription).
Each only where the run's mode reads it (``sim.mode_settings.setting_users``: the cache-only replay has no
scheduler, so its ``max_num_seqs`` stays null). Left null: a null that means none (``cache.learned_model``,
``compute.profile``, ``network.lookup``, ``slo.ttft_s``, a tier's ``shared_read_gbps``, ...), and one whose value
is not one for the whole run: a tier's ``policy`` (each run's policy), ``serving.num_gpu_blocks`` (each instance's
from its GPU memory: ``instances`` in the metrics), ``compute.attention_efficiency`` (each kernel shape's),
``hardware.gpu_link_*`` (the GPU's link, or a bundle's measured one), ``workload.time_unit`` and
``workload.arrivals.rate_rps`` (the trace's own: its provenance). A sweep's or a plan's echo is its base config as
given: each point derives its own.
"""

from __future__ import annotations

from typing import Any, Callable

from sim.config import Config
from sim.config_fields import setting
from sim.mode_settings import CLUSTER_PD, setting_users

RUN_MODES = ("trace-stats", "cache-only", "single", "pd", "cluster", CLUSTER_PD, "check-calibration")


def _derivations() -> dict[str, Callable[[Config], Any]]:
    """Each derived key's value for a config (None where the run derives none)."""
    from sim.cluster.topology import uplink_gbps
    from sim.config_rules import pd_tensor_parallel, request_token_bound
    from sim.serving.engine_limits import batch_limits, block_size, max_model_len

    return {
        "serving.block_size": block_size,
        "serving.max_model_len": max_model_len,
        "serving.max_num_seqs": lambda c: batch_limits(c)[0],
        "serving.max_num_batched_tokens": lambda c: batch_limits(c)[1],
        "workload.max_request_tokens": lambda c: request_token_bound(c.workload),
        "pd.prefill_tensor_parallel_size": lambda c: pd_tensor_parallel(c)["prefill"][1],
        "pd.decode_tensor_parallel_size": lambda c: pd_tensor_parallel(c)["decode"][1],
        "cluster.uplink_gbps": lambda c: uplink_gbps(c) if c.cluster.num_racks > 1 else None,  # (one rack: none)
    }


def echoed_config(config: Config, mode: str) -> dict[str, Any]:
    """``config`` as a plain dict, each derived key that is null and that a run of ``mode`` (``RUN_MODES``; any other
    mode, a sweep's or a plan's, echoes its config as given) reads at the value the run used."""
    echo = config.to_dict()
    if mode not in RUN_MODES:
        return echo
    for key, derive in _derivations().items():
        if setting(config, key) is not None or setting_users(key, mode) is not None:
            continue
        value = derive(config)
        if value is not None:
            *parents, leaf = key.split(".")
            node = echo
            for part in parents:
                node = node[part]
            node[leaf] = value
    return echo
