"""Sweep specs (``--sweep SPEC.yaml``): parse, validate and expand into points.

The Contract's format::

    mode: cache-only | single | pd | cluster
    config: config.yaml            # optional; overlays: [a.yaml, ...] optional
    workload: {trace: PATH}        # or --workload-trace; any workload.* key
    set: {serving.block_size: 512} # fixed overrides, dotted keys
    axes:                          # cartesian product of dotted keys
      cache.policy: [lru, arc]
      cache.capacity_blocks: [1000, 5000]
    zip:                           # optional: groups of keys that vary together
      - {pd.num_prefill: [1, 2, 3], pd.num_decode: [3, 2, 1]}

Points are the product of the axes (in the order written) and of the zip groups (each
group one axis whose values are taken together). Paths in the spec are relative to the
spec file. Everything is checked before any point runs: an unknown or mistyped key
goes through the same validation as ``--set`` and names the key.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.modes import check_mode
from sim.cli_config import command_line_settings, resolve_config
from sim.config import Config, replace, set_layer
from sim.config_yaml import leaf_keys, read_config_file, rebase_path, rebase_setting
from sim.errors import ConfigError, date_inside, quote
from sim.hf_config import CONFIG_NAME

SPEC_KEYS = ("mode", "config", "overlays", "workload", "set", "axes", "zip")
# The most points a sweep expands to. Every point is validated (~14 ms: its whole config built and checked) and kept
# before the first one runs, so 10,000 points are already ~2.5 minutes of checks (a progress bar shows them:
# experiments/sweep.py), and a product of long axes (1,000 x 1,000) was hours of it; a study that needs more is split
# into several specs.
MAX_POINTS = 10_000


@dataclass(frozen=True)
class ConfigLayers:
    """A spec's config layers: base file, overlays, and fixed dotted keys (``workload:`` then ``set:``)."""

    source: str  # "sweep spec PATH" / "plan PATH": errors in the fixed keys name it
    config: str | None = None
    overlays: tuple[str, ...] = ()
    sets: dict[str, Any] = field(default_factory=dict)

    def assignments(self) -> list[str]:
        """The fixed keys as ``--set`` assignments (values as JSON, which is valid YAML)."""
        return [f"{k}={json.dumps(v)}" for k, v in self.sets.items()]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec; paths already resolved against the spec's folder."""

    path: Path
    mode: str
    layers: ConfigLayers
    axes: dict[str, list]  # dotted key -> values
    zips: tuple[dict[str, list], ...] = ()

    @property
    def axis_keys(self) -> list[str]:
        """Every varied key, in spec order (axes, then zip groups)."""
        return [*self.axes, *(k for group in self.zips for k in group)]

    def axis_leaves(self, key: str) -> list[str]:
        """The dotted keys varied key ``key`` sets over its values (a mapping value sets its leaves: ``pd:
        [{num_prefill: 1}, ...]`` varies ``pd.num_prefill``), in order."""
        return values_leaves(key, self.axes[key] if key in self.axes else next(g[key] for g in self.zips if key in g))


def values_leaves(key: str, values: list) -> list[str]:
    """The dotted keys ``key`` set to each of ``values`` sets, in order (``leaf_keys``)."""
    return list(dict.fromkeys(leaf for value in values for leaf in leaf_keys(key, value)))


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its overrides (axis order), a name and a stable key for the journal."""

    index: int
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return json.dumps(self.overrides, sort_keys=True, separators=(",", ":"))


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"sweep spec {path}: {message}")


def _flatten(tree: dict, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def refuse_dates(source: str, key: str, value: Any) -> None:
    """A value holding a date YAML read from unquoted text (``2024-01-01``) is refused naming ``key``: no config key
    takes one, and a spec's values travel as JSON (``ConfigLayers.assignments``, ``Point.key``), which has no date."""
    if date_inside(value) is not None:
        raise ConfigError(f"{source}'{key}' is {quote(value)}: no config key takes a date")


def _sets_nothing(value: Any) -> bool:
    """Whether a value merged over a key sets no config key: ``{}``, or mappings of ``{}`` (``{tiers: {}}``)."""
    return isinstance(value, dict) and all(_sets_nothing(inner) for inner in value.values())


def refuse_empty_section(source: str, key: str, value: Any) -> None:
    """A section given as an empty mapping or list (``set: {}``, ``zip: []``) sets nothing: refused naming ``key``, as
    a plan's ``prices: {}`` is (it was read as the key not given, unsaid); null stays none given."""
    if value == {} or value == []:
        kind = "mapping" if isinstance(value, dict) else "list"
        raise ConfigError(f"{source}: '{key}' is an empty {kind}, which sets nothing: give its entries or drop it")


def _value_list(path: Path, where: str, key: str, values: Any) -> list:
    if not isinstance(values, list):
        raise _fail(path, f"{where} '{key}' must be a list of values, got {quote(values)}")
    if not values:
        raise _fail(path, f"{where} '{key}' is empty")
    refuse_dates(f"sweep spec {path}: {where} ", key, values)
    empty = next((i for i, value in enumerate(values, start=1) if _sets_nothing(value)), None)
    if empty is not None:  # (as a fixed key's {} and --set KEY={} are: the point ran as the base, named '{}')
        raise _fail(path, f"{where} '{key}': value {empty} is an empty mapping, which sets nothing: give the keys "
                          f"under it (their base values, for the base as a point)")
    return [rebase_setting(path.parent, key, v) for v in values]


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file whose top level is a mapping, read as strictly as a config file (unique keys,
    UTF-8, one-line errors naming the file); an empty file is refused."""
    data = read_config_file(path, what)
    if not data:
        raise ConfigError(f"{what} {path} is empty: its top level must be a mapping")
    return data


def parse_layers(data: dict, path: Path, what: str) -> ConfigLayers:
    """The ``config``, ``overlays``, ``workload`` and ``set`` keys of a spec or plan file."""
    for key in ("workload", "set"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f"{what} {path}: '{key}' must be a mapping")
        refuse_empty_section(f"{what} {path}", key, data.get(key))
    overlays = data.get("overlays")  # (null: none; {}, 0 or false were read as none too)
    overlays = [] if overlays is None else overlays
    if not isinstance(overlays, list) or not all(isinstance(o, str) and o.strip() for o in overlays):
        raise ConfigError(f"{what} {path}: 'overlays' must be a list of file paths")
    refuse_empty_section(f"{what} {path}", "overlays", data.get("overlays"))
    if data.get("config") is not None and (not isinstance(data["config"], str) or not data["config"].strip()):
        raise ConfigError(f"{what} {path}: 'config' must be a file path")  # '' read as "not given": the default config
    sets = {**_flatten(data.get("workload") or {}, "workload"), **_flatten(data.get("set") or {}, "")}
    for key, value in sets.items():
        refuse_dates(f"{what} {path}: ", key, value)
    layers = ConfigLayers(f"{what} {path}", rebase_path(path.parent, data.get("config")) if data.get("config") else None,
                        tuple(rebase_path(path.parent, o) for o in overlays),
                        {k: rebase_setting(path.parent, k, v) for k, v in sets.items()})
    # each fixed key checked on its own like --set, named here (the rules between keys are the resolved config's:
    # a fixed workload.cache was judged without the trace beside it, "no workload.trace is given")
    for key, assignment in zip(layers.sets, layers.assignments(), strict=True):
        if layers.sets[key] == {}:  # (flattened away, it set nothing and the points ran as without it)
            raise ConfigError(f"{what} {path}: '{key}' is an empty mapping, which sets nothing: set the keys under it")
        try:
            set_layer(assignment)
        except ConfigError as exc:
            message = re.sub(r"^--set( [^:]*)?: ", "", str(exc))  # (the key is named in the message itself)
            raise ConfigError(f"{what} {path}: {message}") from None
    return layers


def check_inputs_spared(layers: ConfigLayers, configs: list[Config], outputs, spec: tuple[str, Path]) -> None:
    """No output of a sweep or a plan (``outputs``: ``sim.cli_outputs.Outputs``) is a file its runs read: the spec's config file, its
    overlays, or a path a run's config names (a trace, an axis of traces, a profile). main.py checks the command
    line's inputs before the spec is read; these are known once its points are built (--report-json of the trace
    overwrote it, exit 0). The workload cache a run's config names (``workload.cache``, the spec's own, unlike
    ``--workload-cache`` checked by main.py) is written too: it is neither another output nor a file read (as the
    report it was replaced by the report, exit 0, and the next run refused it; as the spec, the journal, each point
    failed). ``spec``: the flag that names the spec or plan, and its path."""
    from sim.config_fields import files_read
    from sim.report.output import check_distinct

    inputs = [spec, (f"{layers.source}'s 'config'", layers.config),
              *((f"{layers.source}'s overlay", o) for o in layers.overlays),
              *(read for config in configs for read in files_read(config))]
    given = {Path(path).resolve() for flag, path in outputs.files if flag == "--workload-cache"}
    caches = {Path(c.workload.cache).resolve(): c.workload.cache for c in configs if c.workload.cache is not None}
    written = [("config key 'workload.cache'", path) for key, path in caches.items() if key not in given]
    check_distinct(inputs, [*outputs.files, *written])


def keys_overlap(a: str, b: str) -> bool:
    """Whether setting dotted key ``a`` and setting ``b`` touch the same value (one is the other or contains it)."""
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


def resolve_layers(layers: ConfigLayers, args, mode: str | None, rules: bool = True) -> Config:
    """The base config through the command line's own resolution: config file → overlays (the file's, then
    ``--calibration-profile``) → preset (and ``PRESET@mode``: ``mode`` is the runs' mode, a sweep spec's
    ``mode:``) → the file's fixed keys → ``--set`` → dedicated flags; ``rules``: as ``sim.cli_config.resolve_config``'s."""
    import argparse

    for said, key in command_line_settings(args):  # (a flag and a fixed key: named as the file's, not '--set')
        fixed = next((k for k in layers.sets if keys_overlap(k, key)), None)
        if fixed is not None and not said.startswith("--set"):
            raise ConfigError(f"{said} and {layers.source}'s '{fixed}' both set config key '{key}': give one of them")
    if args.config and layers.config:  # (--config replaced the file's own, silently)
        raise ConfigError(f"--config {args.config} and {layers.source}'s 'config: {layers.config}' both name the base "
                          "config: give one of them")
    layered = argparse.Namespace(**vars(args))
    layered.config = args.config or layers.config
    layered.calibration_profile = [*layers.overlays, *args.calibration_profile]
    layered.sets = [*layers.assignments(), *args.sets]
    return resolve_config(layered, mode=mode, rules=rules,
                          config_said="--config" if args.config else f"{layers.source}'s 'config'")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and structurally validate a sweep spec (keys, types, empty axes, zip lengths, mode)."""
    path = Path(path)
    data = read_yaml_mapping(path, "sweep spec")
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise _fail(path, f"unknown key '{unknown[0]}'; valid keys: {', '.join(SPEC_KEYS)}")
    if "mode" not in data:
        raise _fail(path, "missing key 'mode'")
    check_mode(str(data["mode"]), where=f"sweep spec {path}: mode")
    layers = parse_layers(data, path, "sweep spec")
    if data.get("axes") is not None and not isinstance(data["axes"], dict):
        raise _fail(path, "'axes' must be a mapping of dotted keys to lists of values")
    refuse_empty_section(f"sweep spec {path}", "axes", data.get("axes"))  # (beside a zip: ran as without it)
    axes = {str(k): _value_list(path, "axis", str(k), v) for k, v in (data.get("axes") or {}).items()}
    if data.get("zip") is not None and not isinstance(data["zip"], list):
        raise _fail(path, "'zip' must be a list of groups")
    refuse_empty_section(f"sweep spec {path}", "zip", data.get("zip"))
    zips = []
    for i, group in enumerate(data.get("zip") or [], start=1):
        if not isinstance(group, dict) or not group:
            raise _fail(path, f"zip group {i} must be a mapping of keys to equally long lists")
        lists = {str(k): _value_list(path, f"zip group {i} key", str(k), v) for k, v in group.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) > 1:
            raise _fail(path, f"zip group {i}: lists of different lengths ({', '.join(f'{k}: {len(v)}' for k, v in lists.items())})")
        zips.append(lists)
    varied = [*axes, *(k for g in zips for k in g)]
    # What each varied key sets: a mapping value its leaves (merged into the config, beside the section's other keys)
    leaves = {k: values_leaves(k, values)
              for k, values in [*axes.items(), *(item for g in zips for item in g.items())]}

    def overlap(a: str, b: str) -> bool:  # (a key and one inside it touch the same value: the later one's won)
        return any(keys_overlap(x, y) for x in leaves.get(a, {a}) for y in leaves.get(b, {b}))

    twice = next(((a, b) for i, a in enumerate(varied) for b in varied[i + 1:] if overlap(a, b)), None)
    if twice:
        said = f"key '{twice[0]}' is varied twice" if twice[0] == twice[1] else \
            f"keys '{twice[0]}' and '{twice[1]}' are both varied, one inside the other"
        raise _fail(path, f"{said} (axes and zip groups must not overlap)")
    if not varied:
        raise _fail(path, "no axes: give at least one key under 'axes' or 'zip'")
    fixed = next(((k, f) for k in varied for f in layers.sets if overlap(k, f)), None)
    if fixed:
        varied_key, fixed_key = fixed
        named = f"'{fixed_key}'" if fixed_key == varied_key else f"'{fixed_key}' (inside '{varied_key}')" \
            if fixed_key.startswith(varied_key) else f"'{fixed_key}' (around '{varied_key}')"
        raise _fail(path, f"key {named} is both fixed (under 'set' or 'workload') and varied: keep one")
    sizes = [len(v) for v in axes.values()] + [len(next(iter(group.values()))) for group in zips]
    if math.prod(sizes) > MAX_POINTS:
        product = " x ".join(f"{n:,}" for n in sizes)
        raise _fail(path, f"{math.prod(sizes):,} points ({product}), more than {MAX_POINTS:,}: every point is checked "
                          f"before the first runs; split the sweep into smaller specs")
    return SweepSpec(path, str(data["mode"]), layers, axes, tuple(zips))


def _label(value: Any) -> str:
    """A point's name for one value: a path by its file's stem, or by its folder's name when the file has a
    conventional name (a Hugging Face model's config.json), so `a/config.json` and `b/config.json` are a, b; null,
    true and false as the spec spells them (YAML), not as Python does."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if not (isinstance(value, str) and os.sep in value):
        return str(value)
    path = Path(value)
    if path.name == CONFIG_NAME and path.parent.name:
        return path.parent.name
    # a file's type suffix (.csv, .jsonl) is dropped, not a dot inside a name: meta-llama/Llama-3.1-8B and
    # meta-llama/Llama-3.3-70B were both 'Llama-3', and refused as two paths with one file name
    return path.stem if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]*", path.suffix) else path.name


def _as_named(key: str, value: Any) -> Any:
    """A policy axis value as the registry names it (``LRU`` is ``lru``: ``canonical_policy``), so the point's name
    and overrides in the report are the config's; any other value as written."""
    if key == "cache.policy" or re.fullmatch(r"cache\.tiers\.[a-z]+\.policy", key):
        from sim.cache.policies import canonical_policy

        return canonical_policy(value) or value
    return value


def expand(spec: SweepSpec) -> list[Point]:
    """The points: product of the axes and zip groups, in spec order. Two points with the same overrides
    would run twice under one journal key, and two with the same name (a value repeated on an axis, or
    two paths with one file name) would mix in the report: both are refused."""
    dims: list[list[dict[str, Any]]] = [[{k: _as_named(k, v)} for v in values] for k, values in spec.axes.items()]
    for group in spec.zips:
        keys = list(group)
        dims.append([{k: _as_named(k, v) for k, v in zip(keys, row, strict=True)}
                     for row in zip(*group.values(), strict=True)])
    points: list[Point] = []
    by_key: dict[str, Point] = {}
    by_name: dict[str, Point] = {}
    for index, combo in enumerate(itertools.product(*dims)):
        overrides = {k: v for part in combo for k, v in part.items()}
        point = Point(index, "/".join(_label(v) for v in overrides.values()), overrides)
        if point.key in by_key:
            raise _fail(spec.path, f"point {index + 1} repeats point {by_key[point.key].index + 1} "
                                   f"({point.name}): a value is repeated on an axis or a zip group")
        if point.name in by_name:
            raise _fail(spec.path, f"points {by_name[point.name].index + 1} and {index + 1} would both be named "
                                   f"'{point.name}' (two paths with one file name?): their results would mix")
        by_key[point.key] = by_name[point.name] = point
        points.append(point)
    return points


def check_points_differ(points: list[Point], configs: list[Config], spec_path: Path) -> None:
    """Two points whose values differ as written but resolve to one config (a model's name and its Hugging Face
    id, a GPU's name in capitals, 1 and 1.0 GiB) would run the same run twice under two names: refused, as a value
    repeated on an axis is (``expand``)."""
    seen: dict[str, Point] = {}
    for point, config in zip(points, configs, strict=True):
        resolved = json.dumps(config.to_dict(), sort_keys=True, default=str)
        if resolved in seen:
            raise _fail(spec_path, f"point {point.index + 1} ({point.name}) is point {seen[resolved].index + 1} "
                                   f"({seen[resolved].name}) in other words: both resolve to one config; give it once")
        seen[resolved] = point


def note_points_alike(points: list[Point], configs: list[Config], unread: list[dict[str, str]], spec_path: Path) -> None:
    """Points whose configs differ only in keys neither reads (``unread``: each point's, as ``check_point`` gives them)
    run one run under several names: an axis of a key only some values of another axis read (``cache.learned_model``
    beside a ``cache.policy`` axis of lru and learned) crosses every value with the points that ignore it. Said once,
    with the zip that pairs such keys; they run (each point's report is whole)."""
    groups: dict[str, list[Point]] = {}
    for point, config, skipped in zip(points, configs, unread, strict=True):
        resolved = config.to_dict()
        for key in skipped:
            *parents, leaf = key.split(".")
            section = resolved
            for parent in parents:
                section = section.get(parent) if isinstance(section, dict) else None
            if isinstance(section, dict):
                section.pop(leaf, None)
        groups.setdefault(json.dumps(resolved, sort_keys=True, default=str), []).append(point)
    alike = [group for group in groups.values() if len(group) > 1]
    if alike:
        names = ", ".join(" = ".join(repr(p.name) for p in group) for group in alike[:3])
        more = f" and {len(alike) - 3:,} more group{'s' if len(alike) > 4 else ''}" if len(alike) > 3 else ""
        logging.getLogger("kvsim.sweep").warning(
            "kvsim: note: sweep spec %s: points %s%s differ only in keys they do not read, so each group runs one run "
            "under several names; a 'zip:' group pairs a key with the values that read it", spec_path, names, more)


def point_config(base: Config, point: Point, spec_path: Path) -> Config:
    """``base`` with the point's overrides, validated like ``--set`` (the error names the key and value)."""
    try:  # (a copy: a mapping value merged into the config must not change the point's own overrides)
        return replace(base, **copy.deepcopy(point.overrides))
    except ConfigError as exc:
        message = str(exc).removeprefix("override: ")
        raise _fail(spec_path, f"point {point.name!r}: {message}") from None
