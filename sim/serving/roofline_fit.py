"""Fit the roofline's free constants to measured step latencies, and judge the fit on points it did not see.

The roofline (``sim.serving.compute``) has two efficiencies and the host model (``sim.serving.host_time``) three
costs; every other number comes from the model's and GPU's specs. Given a table of measured steps
(``sim.serving.measured_latency``) this finds the values that minimise the relative error over its points (least
squares on log(predicted / measured), with a soft-L1 loss so a few broken rows do not drag the rest), and reports
the errors before and after: per group of points, and with each group (a tensor-parallel degree, a model, a GPU)
left out of the fit and predicted from the others, which is what a user calibrating on one setup and predicting
another gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from sim.config import MIN_EFFICIENCY, Config
from sim.config_rules import validate
from sim.errors import ConfigError, InputError
from sim.serving.compute_backend import compute_model
from sim.serving.engine_limits import block_size
from sim.serving.measured_latency import MeasuredStep, predict
from sim.serving.roles import role_config, usable_kv_blocks
from sim.specs import canonical_gpu, canonical_model, gpu_spec, model_spec

FIT_KEYS = ("flops_efficiency", "bandwidth_efficiency", "host_step_us", "host_sequence_us", "launch_layer_us")
EFFICIENCY_KEYS = ("flops_efficiency", "bandwidth_efficiency")
MAX_HOST_US = 1e6  # a second of host time a step or a layer: far beyond any engine's
SOFT_L1_SCALE = 0.05  # residuals (log ratios) beyond ~5% count linearly, not squared
# the fastest the model allows: every efficiency at 1, no kernel floors, no host time
IDEAL = {"flops_efficiency": 1.0, "bandwidth_efficiency": 1.0, "attention_efficiency": 1.0, "gemm_floor_us": 0.0,
         "attention_floor_us": 0.0, "attention_tile_us": 0.0, "host_step_us": 0.0, "host_sequence_us": 0.0,
         "launch_layer_us": 0.0}
HOLDOUT_AXES = {"tp": lambda s: f"TP {s.tensor_parallel_size}", "model": lambda s: s.model, "gpu": lambda s: s.gpu}


@dataclass(frozen=True)
class Fit:
    """Fitted values of ``keys`` (config units: efficiencies, microseconds) and the fit's relative errors."""

    values: dict[str, float]
    errors: np.ndarray  # predicted / measured - 1, per point


def point_configs(steps: Sequence[MeasuredStep], base: Config, aliases: dict[str, str] | None = None) -> list[Config]:
    """Each point's config: ``base`` with the point's model, GPU and tensor-parallel size; ``aliases`` maps a name
    the table uses to a kvsim model or GPU (a profiles/ name, or the path of a config.json or GPU spec YAML)."""
    cache: dict[tuple[str, str, int], Config] = {}
    configs = []
    largest = max((step.tensor_parallel_size for step in steps), default=1)
    for step in steps:
        key = (step.model, step.gpu, step.tensor_parallel_size)
        if key not in cache:
            cache[key] = _point_config(step, base, aliases or {}, largest)
        configs.append(cache[key])
    return configs


def _point_config(step: MeasuredStep, base: Config, aliases: dict[str, str], largest: int) -> Config:
    """(Settings of the GPU link and the collectives apply to the table's TP groups, not its TP-1 points: they are
    dropped there as from a TP-1 role beside a larger one.)"""
    model = _resolve(step.model, aliases, canonical_model, model_spec, step, "model", "models.yaml")
    gpu = _resolve(step.gpu, aliases, canonical_gpu, gpu_spec, step, "GPU", "gpus.yaml")
    config = role_config(dataclasses.replace(base, model=model, hardware=dataclasses.replace(base.hardware, gpu=gpu)),
                         step.tensor_parallel_size, largest)
    try:  # the config's own rules, which replace() bypassed: TP dividing the heads (vLLM's KV-head split), an
        # instance within one node, ...
        validate(config)
    except ConfigError as error:
        raise InputError(f"{step.source}: {error}") from None
    return config


def _resolve(table_name: str, aliases: dict[str, str], canonical: Callable[[str], str | None], load: Callable,
             step: MeasuredStep, what: str, listing: str) -> str:
    """The table's name (or what ``aliases`` maps it to): a profiles/ entry by any of its spellings, or an existing
    file's path (loaded now, so a bad one is named)."""
    name = aliases.get(table_name, table_name)
    entry = canonical(name)
    if entry is not None:
        return entry
    if table_name in aliases and not Path(name).exists():  # (the way out named the alias's right side: --alias nope=)
        raise InputError(f"--alias {table_name}={name}: {what} {name!r} is neither in profiles/{listing} nor a file "
                         f"(give --alias {table_name}=NAME_OR_PATH: a profiles/{listing} entry or a file's path)")
    if not Path(name).exists():
        raise InputError(f"{step.source}: {what} {name!r} is not in profiles/{listing} (add it or an alias there, "
                         f"or map it: --alias {name}=NAME_OR_PATH)")
    try:
        load(name)
    except ConfigError as error:
        raise InputError(f"{step.source}: {what} {name}: {error}") from None
    return name


def with_values(config: Config, values: dict[str, float]) -> Config:
    return dataclasses.replace(config, compute=dataclasses.replace(config.compute, **values))


def relative_errors(steps: Sequence[MeasuredStep], configs: Sequence[Config], values: dict[str, float]) -> np.ndarray:
    """predicted / measured - 1 for every point, the config's compute keys set to ``values``."""
    models: dict[int, object] = {}
    errors = np.empty(len(steps))
    for i, (step, config) in enumerate(zip(steps, configs)):
        if id(config) not in models:
            models[id(config)] = compute_model(with_values(config, values))
        errors[i] = predict(step, models[id(config)]) / step.seconds - 1
    return errors


def screen(steps: Sequence[MeasuredStep], configs: Sequence[Config]) -> list[str]:
    """Why each point cannot be a step of its model on its GPU as kvsim runs it ('' if it can); the caller leaves
    those out and says so. Weights that leave no KV cache, or more KV than one instance holds (kvsim's capacity for the
    config): the engine would have preempted or swapped, which a table of step latencies does not describe (checked
    first: such a point is never timed, however large). Faster than the roofline at full efficiency with no host time
    allows: a broken row, no constant fits it (that roofline is the model's own, so its elementwise kernels' bytes
    move at the L2's bandwidth where they fit, as a step's do)."""
    capacity: dict[int, tuple[int, int] | str] = {}
    reasons = []
    for step, config in zip(steps, configs):
        if id(config) not in capacity:
            try:
                capacity[id(config)] = (usable_kv_blocks(config), block_size(config))
            except ConfigError as error:  # the weights alone fill the GPU (the hint after ';' names a run's key)
                capacity[id(config)] = str(error).split("; ")[0]
        room = capacity[id(config)]
        if isinstance(room, str):
            reasons.append(room)
            continue
        blocks, size = room
        needed = step.batch * -(-(step.tokens + (step.steps if step.phase == "decode" else 0)) // size)
        reasons.append(f"KV of {needed * size:,} tokens, one instance holds {blocks * size:,}" if needed > blocks
                       else "")
    fits = [i for i, r in enumerate(reasons) if not r]
    too_fast = relative_errors([steps[i] for i in fits], [configs[i] for i in fits], IDEAL) > 0
    for i, fast in zip(fits, too_fast):
        if fast:
            reasons[i] = "faster than the GPU's peak allows"
    return reasons


def fittable(steps: Sequence[MeasuredStep], configs: Sequence[Config],
             ) -> tuple[list[MeasuredStep], list[Config], list[tuple[MeasuredStep, str]]]:
    """The points (and their configs) a fit can use, and those ``screen`` leaves out, each with its reason."""
    reasons = screen(steps, configs)
    kept = [i for i, r in enumerate(reasons) if not r]
    return ([steps[i] for i in kept], [configs[i] for i in kept],
            [(s, r) for s, r in zip(steps, reasons) if r])


def check_keys(keys: Sequence[str]) -> None:
    """``keys`` name constants the fit can set (``--fit``)."""
    unknown = [k for k in keys if k not in FIT_KEYS]
    if unknown or not keys:
        raise InputError(f"--fit: {', '.join(unknown) or 'nothing'}; choose from {', '.join(FIT_KEYS)}")
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:  # two parameters of one key: the fit set it from the last, the first a free dimension
        raise InputError(f"--fit: {twice} more than once")


def fit(steps: Sequence[MeasuredStep], configs: Sequence[Config], keys: Sequence[str] = FIT_KEYS) -> Fit:
    """The values of ``keys`` that fit ``steps`` best (the others stay as each config has them)."""
    check_keys(keys)
    lower = [MIN_EFFICIENCY if k in EFFICIENCY_KEYS else 0.0 for k in keys]
    upper = [1.0 if k in EFFICIENCY_KEYS else MAX_HOST_US for k in keys]

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log1p(relative_errors(steps, configs, dict(zip(keys, x.tolist()))))

    best = None
    for start in _starts(steps, configs, keys, lower, upper):
        result = least_squares(residuals, start, bounds=(lower, upper), loss="soft_l1", f_scale=SOFT_L1_SCALE,
                               x_scale="jac")
        if best is None or result.cost < best.cost:
            best = result
    values = {k: float(v) for k, v in zip(keys, best.x)}
    return Fit(values, relative_errors(steps, configs, values))


def _starts(steps: Sequence[MeasuredStep], configs: Sequence[Config], keys: Sequence[str], lower: Sequence[float],
            upper: Sequence[float]) -> list[np.ndarray]:
    """Where the search starts (inside the bounds): the config's values, and, for the launch cost (whose gradient is
    zero while the GPU is the slower), also at the level where the fastest measured decode step would be
    launch-bound (each point's model as its config resolved it: a table's name may be an alias)."""
    start = np.clip([float(getattr(configs[0].compute, k)) for k in keys], lower, upper)
    starts = [start]
    if "launch_layer_us" in keys:
        decodes = [s.seconds / model_spec(c.model).num_layers for s, c in zip(steps, configs) if s.phase == "decode"]
        if decodes:
            launch = start.copy()
            index = list(keys).index("launch_layer_us")
            launch[index] = np.clip(min(decodes) / 1e-6, lower[index], upper[index])
            starts.append(launch)
    return starts


def holdout(steps: Sequence[MeasuredStep], configs: Sequence[Config], axis: str, keys: Sequence[str] = FIT_KEYS,
            ) -> dict[str, np.ndarray]:
    """Per group of ``axis`` (tp, model, gpu): its points' relative errors when fitted on the other groups."""
    label: Callable[[MeasuredStep], str] = HOLDOUT_AXES[axis]
    labels = [label(s) for s in steps]
    out: dict[str, np.ndarray] = {}
    for group in sorted(set(labels)):
        train = [i for i, g in enumerate(labels) if g != group]
        test = [i for i, g in enumerate(labels) if g == group]
        if not train:
            continue
        fitted = fit([steps[i] for i in train], [configs[i] for i in train], keys)
        out[group] = relative_errors([steps[i] for i in test], [configs[i] for i in test], fitted.values)
    return out


def mape(errors: np.ndarray) -> float:
    """Mean absolute percentage error of relative errors."""
    return float(np.mean(np.abs(errors)) * 100) if len(errors) else float("nan")
