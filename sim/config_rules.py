"""Cross-field rules over a whole resolved config, and the request bound they share.

A field's own type and domain are checked as it is built (``sim.config_fields``); a rule here relates
several keys (TP and the model's heads, a range's start and end, input paths that must exist) and
raises a ConfigError naming them. ``validate`` applies every rule; ``single_node_fits`` and ``pd_node_fits``
(one ``node_fits``) are the single-node and PD modes' own; ``request_token_bound`` also caps the requests
the trace loaders keep.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from sim.config_fields import path_settings
from sim.config_yaml import DIRECTORY_KEYS
from sim.errors import ConfigError, quote
from sim.synthetic_rules import arrivals_within_horizon, think_times_within_horizon

if TYPE_CHECKING:
    from sim.config import Config
    from sim.config_workload import WorkloadConfig


# Each rule sees the whole resolved config and raises ConfigError naming the keys it relates.


SERVING_TP = "serving.tensor_parallel_size"
PD_TP_KEYS = {"prefill": "pd.prefill_tensor_parallel_size", "decode": "pd.decode_tensor_parallel_size"}


def pd_tensor_parallel(c: Config) -> dict[str, tuple[str, int]]:
    """Each PD role's (prefill, decode) tensor-parallel size and the key it comes from:
    ``pd.<role>_tensor_parallel_size``, or where that is null ``serving.tensor_parallel_size``."""
    out = {}
    for role, key in PD_TP_KEYS.items():
        tp = getattr(c.pd, key.split(".")[1])
        out[role] = (SERVING_TP, c.serving.tensor_parallel_size) if tp is None else (key, tp)
    return out


def _tp_fits_model(c: Config, key: str, tp: int) -> None:
    """vLLM's rule: attention heads divide evenly over TP ranks; KV heads are split (kv_heads % tp == 0)
    or replicated (tp % kv_heads == 0); a Gated DeltaNet layer's key heads divide evenly (its value heads and conv
    channels, whole multiples of the key heads, then do too).
    Source: vLLM ``ModelConfig.verify_with_parallel_config``
    ("Total number of attention heads must be divisible by tensor parallel size") and the
    assertion in ``QKVParallelLinear.__init__``."""
    from sim.specs import model_spec

    spec = model_spec(c.model)
    kv = spec.num_kv_heads
    if spec.num_attention_heads % tp or (kv % tp and tp % kv):
        raise ConfigError(
            f"config key '{key}'={tp} does not fit model {c.model} "
            f"({spec.num_attention_heads} attention heads, {kv} KV heads): TP must divide the attention heads "
            f"and divide or be a multiple of the KV heads")
    gdn = spec.linear_attention
    if gdn is not None and gdn.num_key_heads % tp:
        # vLLM 0.33 splits a Gated DeltaNet layer over TP in whole key-head groups (a key head and its value heads):
        # model_executor/layers/mamba/gdn/qwen_gdn_linear_attn.py QwenGatedDeltaNetAttention views Qwen3-Next's
        # interleaved projection as num_k_heads // tp_size groups (fix_query_key_value_ordering) and Qwen3.5's
        # key_dim // tp_size query and key channels as head_k_dim-wide heads (rearrange_mixed_qkv): either fails on a
        # split key head; mamba_utils.py gated_delta_net_state_shape then sizes a rank's state as divide(conv_dim, tp),
        # divide(num_v_heads, tp). (An uneven, padded split, gdn/head_partition.py make_gdn_head_partition, is
        # vllm-project/vllm PR #47759, not merged in the vLLM kvsim follows.) Floored instead, a rank's state would be
        # undercounted and a lower tier's one slot per state overflow (tests/test_linear_attention_slots.py).
        raise ConfigError(
            f"config key '{key}'={tp} does not fit model {c.model}'s Gated DeltaNet layers ({gdn.num_key_heads} key "
            f"heads, {gdn.num_value_heads} value heads): vLLM splits them over TP in whole key-head groups, so TP must "
            f"divide the key heads (qwen_gdn_linear_attn.py QwenGatedDeltaNetAttention)")
    tower = spec.vision_tower
    if tower is not None and not c.serving.language_model_only and tower.num_heads % tp:
        # vLLM splits the vision tower's heads over TP too (mm_encoder_tp_mode "weights": Qwen2_5_VisionAttention,
        # SiglipAttention: dist_utils.divide(num_heads, tp_size) asserts)
        raise ConfigError(f"config key '{key}'={tp} does not fit model {c.model}'s vision tower ({tower.num_heads} "
                          f"attention heads): TP must divide them, or serve the language model alone "
                          f"(serving.language_model_only=true)")


def _tensor_parallel_fits_model(c: Config) -> None:
    _tp_fits_model(c, SERVING_TP, c.serving.tensor_parallel_size)


def _instances_fit_node(c: Config) -> None:
    """An instance is tensor_parallel_size GPUs of one node (the single-node mode's workers share one
    node: ``single_node_fits``, checked by that mode only, since a cluster ignores serving.num_instances)."""
    tp, gpus = c.serving.tensor_parallel_size, c.hardware.gpus_per_node
    if tp > gpus:
        raise ConfigError(f"config key 'serving.tensor_parallel_size'={tp} exceeds 'hardware.gpus_per_node'={gpus}")


def _pd_tensor_parallel_fits(c: Config) -> None:
    """A PD role's own TP (``pd.prefill_tensor_parallel_size``, ``pd.decode_tensor_parallel_size``) meets the rules
    serving.tensor_parallel_size does (the model's heads, one node, a data-parallel group on one node), and the larger
    of the two roles' TPs is a multiple of the smaller: vLLM's NixlConnector pairs ranks only then
    (``TransferTopology.tp_ratio``, vllm/distributed/kv_transfer/kv_connector/utils.py, vLLM 0.33.0: "Local tensor
    parallel size {tp} is not divisible by remote tensor parallel size {remote}", and the converse)."""
    roles = pd_tensor_parallel(c)
    gpus, dp = c.hardware.gpus_per_node, c.serving.data_parallel_size
    for key, tp in roles.values():
        if key == SERVING_TP:
            continue  # (its own rules)
        _tp_fits_model(c, key, tp)
        if tp > gpus:
            raise ConfigError(f"config key '{key}'={tp} exceeds 'hardware.gpus_per_node'={gpus}")
        if dp > 1 and dp * tp > gpus:
            raise ConfigError(f"config keys 'serving.data_parallel_size'={dp} x '{key}'={tp} need {dp * tp} GPUs of "
                              f"one node; one node has 'hardware.gpus_per_node'={gpus}")
        _expert_width_fits(c, key, tp)
    (p_key, p), (d_key, d) = roles["prefill"], roles["decode"]
    if max(p, d) % min(p, d):
        raise ConfigError(f"config keys '{p_key}'={p} (prefill) and '{d_key}'={d} (decode): the larger TP must be a "
                          "multiple of the smaller (vLLM's NixlConnector pairs prefill and decode ranks only then)")


def node_fits(c: Config, pools: dict[str, int], tp_keys: dict[str, tuple[str, int]] | None = None) -> None:
    """Instances of tensor_parallel_size GPUs that share one node (``pools``: the dotted key sizing each pool, and
    its count; ``tp_keys``: a pool's own TP and the key it comes from, by default serving.tensor_parallel_size's):
    together they fit the node's GPUs, and each pool splits into whole data-parallel groups (a group's members are
    instances, so they are counted in the GPUs already)."""
    tp, gpus = c.serving.tensor_parallel_size, c.hardware.gpus_per_node
    tps = {key: (tp_keys or {}).get(key, (SERVING_TP, tp)) for key in pools}
    needed = sum(count * tps[key][1] for key, count in pools.items())
    if needed > gpus:
        verb = "need" if len(pools) > 1 else "needs"
        if all(t == (SERVING_TP, tp) for t in tps.values()):  # (one size: the message as it always was)
            keys = " + ".join(f"'{key}'={count}" for key, count in pools.items())
            sizes = f"x tensor_parallel_size {tp}"
        else:
            keys = " + ".join(f"'{key}'={count} x '{tps[key][0]}'={tps[key][1]}" for key, count in pools.items())
            sizes = ""
        raise ConfigError(f"config key{'s' if len(pools) > 1 else ''} {keys} {sizes}{' ' if sizes else ''}{verb} "
                          f"{needed} GPUs; one node has 'hardware.gpus_per_node'={gpus}")
    data_parallel_groups_fit(c, {f"config key '{key}'": count for key, count in pools.items()})


def single_node_fits(c: Config) -> None:
    """The single-node mode's serving.num_instances workers of tensor_parallel_size GPUs share one node."""
    node_fits(c, {"serving.num_instances": c.serving.num_instances})


def _data_parallel_fits(c: Config) -> None:
    """Data-parallel groups shard a mixture of experts' MoE layers over their GPUs, all on one node (vLLM
    ``data_parallel_size``; a dense model's replicas are ``serving.num_instances``)."""
    from sim.specs import model_spec

    dp, tp, gpus = c.serving.data_parallel_size, c.serving.tensor_parallel_size, c.hardware.gpus_per_node
    if dp == 1:
        return
    if not model_spec(c.model).is_moe:
        raise ConfigError(f"config key 'serving.data_parallel_size'={dp} applies to mixture-of-experts models only; "
                          f"{c.model} is dense (its replicas are serving.num_instances)")
    if dp * tp > gpus:
        raise ConfigError(f"config key 'serving.data_parallel_size'={dp} x tensor_parallel_size {tp} needs {dp * tp} "
                          f"GPUs of one node; one node has 'hardware.gpus_per_node'={gpus}")
    _expert_width_fits(c, SERVING_TP, tp)


def _expert_width_fits(c: Config, key: str, tp: int) -> None:
    """Without expert parallelism a data-parallel group splits every expert's width over its D × TP GPUs, which vLLM
    requires to divide it (fused_moe/config.py ``FusedMoEConfig.__post_init__``: ``intermediate_size % tp_size``)."""
    from sim.specs import model_spec

    dp = c.serving.data_parallel_size
    if dp == 1 or c.serving.enable_expert_parallel:
        return
    width = model_spec(c.model).moe_intermediate_size
    if width % (dp * tp):
        raise ConfigError(f"config key 'serving.enable_expert_parallel' false splits each expert's width {width} of "
                          f"{c.model} over 'serving.data_parallel_size'={dp} x '{key}'={tp} GPUs, which does not "
                          "divide it (vLLM asserts it does); enable expert parallelism or change the sizes")


def pd_node_fits(c: Config) -> None:
    """Single-node PD: the prefill and decode instances, each role at its own TP, share one node, as the single-node
    mode's workers do; each pool splits into whole data-parallel groups."""
    roles = pd_tensor_parallel(c)
    node_fits(c, {"pd.num_prefill": c.pd.num_prefill, "pd.num_decode": c.pd.num_decode},
              {"pd.num_prefill": roles["prefill"], "pd.num_decode": roles["decode"]})


def data_parallel_groups_fit(c: Config, instances: dict[str, int]) -> None:
    """Each pool of instances (named by the keys that size it) splits into whole data-parallel groups."""
    dp = c.serving.data_parallel_size
    for what, count in instances.items():
        if count % dp:
            raise ConfigError(f"{what}={count} is not a multiple of 'serving.data_parallel_size'={dp}: instances form "
                              "data-parallel groups of that many")


def _batch_holds_its_sequences(c: Config) -> None:
    """vLLM ``SchedulerConfig``: max_num_batched_tokens must be >= max_num_seqs (a decode takes one token); either
    may be vLLM's default for the GPU (``sim.serving.engine_limits``)."""
    from sim.serving.engine_limits import batch_limits

    seqs, tokens = batch_limits(c)
    if tokens < seqs:
        def named(key: str, value: int) -> str:
            unset = getattr(c.serving, key) is None
            return f"'serving.{key}'={value}" + (f" (vLLM's default on {c.hardware.gpu})" if unset else "")

        raise ConfigError(f"config key {named('max_num_batched_tokens', tokens)} must be >= "
                          f"{named('max_num_seqs', seqs)}")


def _model_len_within_context(c: Config) -> None:
    from sim.specs import model_spec

    spec = model_spec(c.model)
    limit = spec.longest_request
    tokens = f"{limit} token" + ("s" if limit != 1 else "")
    what = (f"context of {tokens}" if limit == spec.max_position_embeddings else
            f"sliding window of {tokens} (kvsim serves requests up to it, where it equals full attention)")
    if limit < 2:  # serving.max_model_len's own bound, for the default it takes from the model
        raise ConfigError(f"model {c.model}'s {what} is below 2: a request has a prompt token and decodes one")
    # ALiBi (BLOOM) has no positions to run out of and its config.json no length key: vLLM takes a given max_model_len
    # as it is (config/model.py _get_and_verify_max_len), its 2,048 (max_position_embeddings here) only the default
    unbounded = spec.position_encoding == "alibi"
    if c.serving.max_model_len is not None and c.serving.max_model_len > limit and not unbounded:
        raise ConfigError(f"config key 'serving.max_model_len'={c.serving.max_model_len} exceeds model {c.model}'s "
                          + what)


def _request_range(c: Config) -> None:
    start, end = c.workload.range_start, c.workload.range_end
    if not start < end:
        raise ConfigError(f"config keys 'workload.range_start'={start} and 'workload.range_end'={end}: start must be below end")


def request_token_bound(workload: WorkloadConfig) -> int:
    """Most tokens (prompt + output) one request may have: ``workload.max_request_tokens``, by default
    the longest context any model in ``profiles/models.yaml`` supports (no model could serve more)."""
    if workload.max_request_tokens is not None:
        return workload.max_request_tokens
    from sim.specs import known_models, model_spec

    return max(model_spec(name).max_position_embeddings for name in known_models())


def _synthetic_sizes(c: Config) -> None:
    """Synthetic shared parts must fit in one request, so generation never allocates beyond the bound."""
    if c.workload.trace is not None:
        return  # the synthetic generator is not used
    syn, bound = c.workload.synthetic, request_token_bound(c.workload)
    for key, tokens in (("prefix_tokens", syn.prefix_tokens), ("input_tokens_mean", syn.input_tokens_mean),
                        ("output_tokens_mean", syn.output_tokens_mean),
                        ("document_tokens", syn.document_tokens * syn.documents_per_request)):
        if syn.kind not in SYNTHETIC_KIND_KEYS.get(key, (syn.kind,)):
            continue  # another kind's part: this workload never generates it
        if tokens > bound:
            # a RAG request's documents are document_tokens x documents_per_request: both keys are named (the message
            # named document_tokens alone when documents_per_request=1000000 was the one given)
            keys = (f"keys 'workload.synthetic.document_tokens'={syn.document_tokens} x "
                    f"'workload.synthetic.documents_per_request'={syn.documents_per_request}" if key == "document_tokens"
                    else f"key 'workload.synthetic.{key}'")
            raise ConfigError(f"config {keys} give{'s' if key != 'document_tokens' else ''} {tokens:,} tokens per "
                              f"request, more than the request bound of {bound:,} (workload.max_request_tokens)")


def _input_paths_exist(c: Config) -> None:
    """Every input path that is set names something readable (found now, not after minutes of work)."""
    for dotted, value in path_settings(c):  # set, and not a name (model)
        if not value.strip():  # Path("") is the working directory: "'.' is not a file", or read as a profile
            raise ConfigError(f"config key '{dotted}': empty path")
        path = Path(value)
        try:  # exists() raises what it cannot answer: a name too long, a loop of links, no permission
            exists, is_file = path.exists(), path.is_file()
        except OSError as exc:
            raise ConfigError(f"config key '{dotted}': {quote(str(path))}: {exc.strerror or exc}") from None
        if not exists:
            why = "is a symbolic link to nothing that exists (or a loop of links)" if path.is_symlink() else "does not exist"
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} {why}")
        if dotted not in DIRECTORY_KEYS and not is_file:
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} is not a file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} is not readable")


def _gpu_spec_valid(c: Config) -> None:
    """``hardware.gpu`` is valid in every mode, whether the mode reads it or not: a name must be a known GPU (checked
    as the field is built) and a path must exist (``_input_paths_exist``), so a GPU spec file's fields are checked
    too, as a model's file is (``_tensor_parallel_fits_model``). --trace-stats, cache-only with
    cache.capacity_blocks and ``learned.train`` took a bad file without a word, while a missing one was refused."""
    from sim.specs import gpu_spec

    gpu_spec(c.hardware.gpu)


def _workload_cache_usable(c: Config) -> None:
    """``workload.cache`` keeps a loaded trace file: it needs one, and may not be it or a directory."""
    cache = c.workload.cache
    if cache is None:
        return
    if c.workload.trace is None:
        raise ConfigError("config key 'workload.cache' (--workload-cache) keeps a loaded trace file; no workload.trace "
                          "is given (synthetic workload)")
    if not cache.strip():
        raise ConfigError("config key 'workload.cache': empty path")
    path = Path(cache)
    try:
        is_dir, special = path.is_dir(), path.exists() and not path.is_file()
        same = path.resolve() == Path(c.workload.trace).resolve()
    except OSError as exc:  # a name too long, a loop of links, no permission
        raise ConfigError(f"config key 'workload.cache': {quote(cache)}: {exc.strerror or exc}") from None
    except RuntimeError:  # a loop of links, as pathlib's resolve (Python < 3.13) says it
        raise ConfigError(f"config key 'workload.cache': {quote(cache)}: {os.strerror(errno.ELOOP)}") from None
    except ValueError as exc:  # a NUL byte in it (a YAML file's "\0"): "embedded null byte"
        raise ConfigError(f"config key 'workload.cache': {quote(cache)}: {exc}") from None
    if same:
        raise ConfigError(f"config key 'workload.cache': {quote(cache)} is the trace file itself")
    if is_dir:
        raise ConfigError(f"config key 'workload.cache': {quote(cache)} is a directory, not a file")
    if special:  # it is read back and replaced: a FIFO blocks the read, a device loses the write
        raise ConfigError(f"config key 'workload.cache': {quote(cache)} is a device or FIFO, not a file")


# The workload.synthetic keys only some kinds read (trace.synthetic's generators); every kind reads the others.
SYNTHETIC_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "turns_mean": ("multi-turn",), "turns_concentration": ("multi-turn",),
    "think_time_median_s": ("multi-turn",), "think_time_sigma": ("multi-turn",), "start": ("multi-turn", "agentic"),
    "num_sessions": ("agentic",),
    "num_prefixes": ("system-prompt",), "prefix_tokens": ("system-prompt",),
    "num_documents": ("rag",), "document_tokens": ("rag",), "documents_per_request": ("rag",),
    "zipf_alpha": ("system-prompt", "rag"),
}


def _synthetic_settings_apply(c: Config) -> None:
    """A synthetic key that only other kinds read must keep its default (set, it would be silently ignored)."""
    synthetic = c.workload.synthetic
    for f in dataclasses.fields(synthetic):
        kinds = SYNTHETIC_KIND_KEYS.get(f.name)
        if kinds and synthetic.kind not in kinds and getattr(synthetic, f.name) != f.default:
            raise ConfigError(f"config key 'workload.synthetic.{f.name}' applies to kind {' or '.join(kinds)}, "
                              f"not {synthetic.kind!r}")


def _arrival_settings_apply(c: Config) -> None:
    """``workload.arrivals.rate_rps`` and ``cv`` only mean something for the processes that draw with them."""
    a = c.workload.arrivals
    if a.process == "trace" and a.rate_rps is not None:
        raise ConfigError("config key 'workload.arrivals.rate_rps' applies to process poisson, gamma or resample; "
                          "scale the workload's own arrivals with workload.rate_scale (--rate-scale)")
    if a.process != "gamma" and a.cv != 1.0:
        raise ConfigError(f"config key 'workload.arrivals.cv' applies to process gamma, not {a.process!r}")


CONSTRAINTS: tuple[typing.Callable[[Config], None], ...] = (
    _input_paths_exist,  # first: the rules after it read the model's file
    _gpu_spec_valid,
    _tensor_parallel_fits_model,
    _instances_fit_node,
    _data_parallel_fits,
    _pd_tensor_parallel_fits,
    _batch_holds_its_sequences,
    _model_len_within_context,
    _request_range,
    _synthetic_sizes,
    _synthetic_settings_apply,
    think_times_within_horizon,
    _arrival_settings_apply,
    arrivals_within_horizon,  # after the arrival settings: it reads the rate of the process they apply to
    _workload_cache_usable,
)


def validate(config: Config) -> None:
    """The cross-field rules over a whole resolved config (each field's own domain is checked as it is built)."""
    for rule in CONSTRAINTS:
        rule(config)


# An SLO above these is legal but unusual, and is what a target in milliseconds written as seconds looks like
# (slo.ttft_s=300 meant 300 ms): told in a warning, never refused. TTFT targets in the literature are 0.1-15 s
# (DistServe, OSDI'24, Table 1: chatbot 0.25 s, summarisation 15 s at its longest), so past a minute is a ms value
# of 61 or more; a TPOT past 1 s is slower than anyone reads (~0.2 s a token), so a ms value of 2 or more.
SLO_UNUSUAL_S = {"ttft_s": 60.0, "tpot_s": 1.0}


def slo_unit_warning(key: str, value: float | None) -> str | None:
    """The warning for an SLO target ``key`` (``ttft_s``/``tpot_s``, named as given: ``slo.ttft_s``) whose
    ``value`` in seconds is above ``SLO_UNUSUAL_S`` (likely milliseconds written as seconds), or None."""
    limit = SLO_UNUSUAL_S.get(key.rsplit(".", 1)[-1])
    if limit is None or value is None or not value > limit:
        return None
    minutes = f" ({value / 60:.3g} min)" if value >= 60 else ""
    return (f"kvsim: warning: {key} = {value:g} s{minutes}: seconds, not ms; above {limit:g} s is unusual for a "
            f"target (for {value:g} ms give {key}={value / 1000:g})")


def warn_slo_units(configs: typing.Iterable[Config], told: Config | None = None) -> None:
    """Each distinct unusual SLO target of ``configs`` (``slo_unit_warning``) once, on stderr (the "kvsim" logger:
    silenced by --quiet); none ``told`` has (a sweep's base, told as it was resolved: a point that varies another
    target keeps it, and it was told twice)."""
    import logging

    def messages(config: Config) -> typing.Iterator[str]:
        return (message for key in SLO_UNUSUAL_S
                if (message := slo_unit_warning(f"slo.{key}", getattr(config.slo, key))) is not None)

    before = set(messages(told)) if told is not None else set()
    said = dict.fromkeys(message for config in configs for message in messages(config) if message not in before)
    for message in said:
        logging.getLogger("kvsim.config").warning("%s", message)
