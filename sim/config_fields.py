"""Declaring and checking config fields: value domains and the schema walker.

A config dataclass declares each field's type and, beside it, the values it accepts
(``block_size: int = domain(16, ge=1)``). ``build_dataclass`` walks a dataclass's type hints
and builds it from a (possibly partial) mapping, checking every value's type and domain, so a
layer from any source (file, overlay, preset, ``--set``) fails with one message naming the
dotted key. The schema itself is ``sim.config``; the dotted-key helpers read and write it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Literal, Mapping

from sim.config_yaml import PATH_KEYS, is_path_value, names_a_path, reads_as_number
from sim.errors import ConfigError, quote, quote_yaml

if TYPE_CHECKING:
    from sim.config import Config


# ------------------------------------------------------------------------ value domains

INT64_MAX = 2**63 - 1
# Arrivals spanning more than this are a unit mistake or a corrupt timestamp, not a workload: past it,
# one ulp of simulated time (2^-22 s at 2^30 s) starts to swallow sub-microsecond compute steps. (Here, not in
# trace.formats, so the config's rules read it without importing the loaders: sim.synthetic_rules.)
MAX_TRACE_SPAN_S = float(2**30)  # about 34 years
# A config number this large or larger is read as infinite: within a factor of 1.8 of the largest float, the first
# product (a rate x 2, GiB x 2^30) overflows to inf, so such a value is refused with the infinite ones.
MAX_CONFIG_FLOAT = 1e308


@dataclass(frozen=True)
class Domain:
    """The values a config field accepts beyond its type (``None``, "unset", is always accepted).

    Declared next to the field (``block_size: int = domain(16, ge=1)``) and checked by the
    one schema walker (``build_dataclass``) for every layer, so a new key is validated by declaring it.
    ``names`` is a registry given as ``"module:attribute"`` (a mapping, or a function returning
    the names), imported only when checked; ``or_path`` (a hint for the message) accepts besides
    them any value written as a path (``sim.config_yaml.names_a_path``), found and read later;
    ``canonical`` (``"module:function"``) maps another spelling of a name to the name itself, which the
    config then holds.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    names: str | None = None
    or_path: str | None = None
    canonical: str | None = None

    def describe(self) -> str:
        parts = [f"{op} {bound:,}" for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if bound is not None]
        return " and ".join(parts)

    def registry(self) -> list[str]:
        found = _imported(self.names)
        return sorted(found() if callable(found) else found)

    def canonical_form(self, value: Any) -> Any:
        """``value`` as the registry names it (the value itself when it is not another spelling of a name)."""
        return (_imported(self.canonical)(value) or value) if self.canonical is not None else value

    def violation(self, value: Any) -> str | None:
        """Why ``value`` is outside the domain, or None."""
        if value is None:
            return None
        if self.names is not None:
            valid = self.registry()
            if value in valid or (self.or_path is not None and isinstance(value, str) and names_a_path(value)):
                return None
            close = difflib.get_close_matches(value, valid, n=1) if isinstance(value, str) else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"must be one of {_listed(valid)}" + (f", {self.or_path}" if self.or_path else "") + hint
        below = (self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
        above = (self.lt is not None and not value < self.lt) or (self.le is not None and not value <= self.le)
        return f"must be {self.describe()}" if below or above else None


def _imported(reference: str) -> Any:
    """The attribute a ``"module:attribute"`` reference names."""
    module, _, attr = reference.partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)


def domain(default: Any, **bounds: Any) -> Any:
    """A dataclass field with its value domain (see ``Domain``)."""
    return field(default=default, metadata={"domain": Domain(**bounds)})


POSITIVE = {"gt": 0}
FRACTION = {"gt": 0, "le": 1}  # (0, 1]

# ------------------------------------------------------------------------ building and type checking


# What Python's float() reads as infinite or NaN (YAML reads them as words: its own are .inf and .nan)
NON_FINITE_WORDS = ("inf", "infinity", "nan")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (ints to floats, dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(members) == 1:  # X | None: X's own message (an int beyond 64 bits says so, not "expected int or null")
            try:
                return _convert(value, members[0], path)
            except ConfigError as exc:
                if str(exc).startswith(f"config key '{path}': expected "):  # the wrong type: null would do too
                    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {_got(value, tp)}") from None
                raise
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {_got(value, tp)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {_got(value, tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {quote(value)}")
        return build_dataclass(tp, value, path)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {quote(value)}")
        _, inner = typing.get_args(tp)
        return {str(k): copy.deepcopy(v) if inner is Any else _convert(v, inner, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if -INT64_MAX - 1 <= value <= INT64_MAX:
                return value
            raise ConfigError(f"config key '{path}' must fit in a 64-bit integer, got {quote(value)}")
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # (not a string: see _got)
            number = float(value) if abs(value) < MAX_CONFIG_FLOAT else math.inf
        elif isinstance(value, str) and value.strip().lower().lstrip("+-") in NON_FINITE_WORDS:
            return _infinite(path, value)  # (inf, nan: words in YAML, .inf is its number; refused as such, finite or not)
        if number is not None:
            if not math.isfinite(number):
                return _infinite(path, value)
            if 0 < abs(number) < sys.float_info.min:  # subnormal: dividing by it overflows (a rate of 1e-320 hung a run)
                raise ConfigError(f"config key '{path}' is too close to 0 (below {sys.float_info.min:.3g}), got {quote(value)}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported config annotation {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {_got(value, tp)}")


def _takes_words(tp: Any) -> bool:
    """Whether annotation ``tp`` accepts a string (``str``, a ``Literal`` of names, a union holding either)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_takes_words(a) for a in typing.get_args(tp))
    return tp is str


def _takes_numbers(tp: Any) -> bool:
    """Whether annotation ``tp`` accepts a number (``int``, ``float``, a union holding either)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_takes_numbers(a) for a in typing.get_args(tp))
    return tp in (int, float)


def _got(value: Any, tp: Any) -> str:
    """``value`` quoted for a wrong-type message of a key of type ``tp``; a boolean or a date says that YAML made it
    one (``sim.errors.quote_yaml``), the advice to quote it only where the key takes a word: a number's key takes
    none (``serving.max_num_seqs: yes``). A number's key given a string that the loader reads as a number when
    unquoted (``rate_scale: '2'``) says it was quoted: the loader reads every number form unquoted
    (``sim.config_yaml``: ``1e9`` too), so a string there was quoted, and a number key takes no string."""
    if isinstance(value, bool) and not _takes_words(tp):
        return f"{str(value).lower()}, a boolean"
    if isinstance(value, str) and _takes_numbers(tp) and reads_as_number(value):
        return f"{quote(value)}, a quoted string (write the number unquoted)"
    return quote_yaml(value)


def _infinite(path: str, value: Any) -> typing.NoReturn:
    """Refuse a config number read as infinite: inf or NaN itself, or a finite number of ``MAX_CONFIG_FLOAT`` or more
    (an integer too big for a float included), which the message says was read as infinite (so "must be finite,
    got 1e+308" is not the contradiction it reads as)."""
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an integer beyond a float
        finite = isinstance(value, int)
    if finite:
        raise ConfigError(f"config key '{path}' must be less than {MAX_CONFIG_FLOAT:.0e} in magnitude (kvsim reads "
                          f"one this large as infinite), got {quote(value)}")
    raise ConfigError(f"config key '{path}' must be a finite number, got {quote(value)}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


_SCHEMAS: dict[type, tuple[dict[str, Any], dict[str, dataclasses.Field]]] = {}


def _schema(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """``cls``'s resolved type hints and its fields by name, worked out once per class: a config is built again for
    every sweep point, plan candidate and max-rate probe, and resolving the hints' string annotations
    (``typing.get_type_hints``) was most of a build. Read-only: callers never change them."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = (typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)})
    return schema


def build_dataclass(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping; unknown keys are errors.

    A partial mapping for a nested section fills in from *that field's* default (e.g. the
    DRAM tier's own bandwidths), not from the section type's generic defaults.
    """
    hints, fields = _schema(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise ConfigError(_unknown_key(path, prefix, list(fields)))
        default = _field_default(fields[key])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = deep_merge(dataclasses.asdict(default), value)
        declared = fields[key].metadata.get("domain")
        kwargs[key] = _convert(value, hints[key], path)
        if declared is not None:
            kwargs[key] = declared.canonical_form(kwargs[key])
        _check_domain(fields[key], kwargs[key], path)
    return cls(**kwargs)


def _unknown_key(path: str, prefix: str, valid: list[str]) -> str:
    """Name the unknown key, suggest the closest valid one, and list the valid keys (cut short)."""
    leaf = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"'{prefix}'" if prefix else "the top level"
    return f"unknown config key {quote(path)}{hint}; valid keys at {where}: {_listed(valid)}"


def _listed(names: list[str]) -> str:
    """Names for a one-line message, cut short after about 50 characters (then saying how many there are)."""
    listed = ""
    for name in names:
        if len(listed) > 50:
            return f"{listed}, ... ({len(names)} in all)"
        listed += (", " if listed else "") + name
    return listed


def _check_domain(f: dataclasses.Field, value: Any, path: str) -> None:
    """The field's declared ``Domain`` (if any) accepts ``value``; else a ConfigError naming the key."""
    declared = f.metadata.get("domain")
    problem = declared.violation(value) if declared is not None else None
    if problem:
        raise ConfigError(f"config key '{path}' {problem}, got {quote(value)}")


# ------------------------------------------------------------------------ layers and dotted keys


def deep_merge(base: dict[str, Any], over: Mapping[str, Any], whole: Collection[str] = ()) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``; mappings merge, everything else replaces, and so
    does the value of a key in ``whole`` (at any depth)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key not in whole:
            out[key] = deep_merge(out[key], value, whole)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` (``"cache.tiers.dram.capacity_gib"``) in a nested mapping, creating the sections on the way.
    A key with an empty part (``cache.policy.``, ``cache..policy``) is refused as such: it was read as a key named ''
    ("expected str, got {'': 'lru'}" of cache.policy, or "unknown config key 'cache.'")."""
    parts = dotted.split(".")
    if not dotted:
        raise ConfigError("config key '' is empty: give a dotted key (cache.policy)")
    if "" in parts:
        raise ConfigError(f"config key {quote(dotted)} has an empty name between its dots (a dot at its start or end, "
                          "or two in a row)")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def setting(config: Config, dotted: str) -> Any:
    """The value of a dotted key (``"cache.tiers.dram.capacity_gib"``)."""
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def path_settings(config: Config) -> list[tuple[str, str]]:
    """The keys of ``config`` that name a file or folder it reads (set, and not a model's name), with their paths."""
    return [(key, value) for key in PATH_KEYS if is_path_value(key, value := setting(config, key))]


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON sidecar ``learned.train`` writes beside a learned model (``cache.learned_model``) and the policy reads."""
    return Path(str(model_path) + ".json")


def files_read(config: Config) -> list[tuple[str, str]]:
    """Every file or folder a run of ``config`` reads, each with what names it: the path settings and the files they
    imply (a learned model's sidecar), which no output may overwrite (``sim.report.output.check_distinct``)."""
    from sim.hf_config import config_file  # (here: the model's config reader loads the model families)

    # (a Hugging Face model folder is read for its config.json alone: outputs beside it, a run's default plots from
    # inside it, overwrite nothing read; a profile bundle's folder is read file by file, so it is protected whole)
    read = [(f"config key '{key}'", str(config_file(Path(value))) if key == "model" else value)
            for key, value in path_settings(config)]
    if is_path_value("cache.learned_model", config.cache.learned_model):
        read.append(("config key 'cache.learned_model' (its sidecar)", str(sidecar_path(config.cache.learned_model))))
    return read
