"""Reading config layers as text: YAML files with unique keys, ``--set`` values, relative paths.

Every config layer that arrives as text goes through one strict YAML loader, and each problem is a
one-line ConfigError naming the file or ``--set`` it came from. The keys holding paths are declared
here because a path in a YAML file is relative to that file (``resolve_paths``).
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable

import yaml

from sim.errors import ConfigError, quote

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it: ~10x faster
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# An unquoted, untagged YAML 1.2 octal (``0o17``) resolves to this tag (``_numbers_as_people_write_them``), whose
# constructor refuses it: only the resolver sees whether a scalar was written plain and untagged; ``!!str 0o17`` is
# text in both YAML versions and reads as written.
_YAML12_OCTAL_TAG = "tag:kvsim,2026:yaml12-octal"
# An integer with a leading 0 and more digits (``010``): YAML 1.1, which PyYAML implements, reads it as octal (8), so
# ``seed: 010`` or ``--set serving.num_instances=010`` ran with 8, unsaid; YAML 1.2 reads 10. Refused where they differ.
_LEADING_ZERO = re.compile(r"[-+]?0[0-7_]+")
_YAML12_OCTAL = re.compile(r"[-+]?0o[0-7]+")  # YAML 1.2's octal, which YAML 1.1 (PyYAML) resolves as text


class UniqueKeyLoader(_SAFE_LOADER):
    """PyYAML's safe loader, except that a mapping with the same key twice is an error.

    YAML requires unique keys, but PyYAML silently keeps the last one, so a config with the
    same section twice would run with half of it ignored. Merge keys (``<<``) may still be
    overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {quote(key)} (first at line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A scalar that its resolver recognises but Python cannot hold (a 5,000-digit integer, the date
        2023-02-30) is a YAML error at its line, like any other, not a ValueError from deep inside PyYAML; so is an
        integer written with a leading zero (``_LEADING_ZERO``), an unquoted YAML 1.2 octal (``0o7``, text to YAML
        1.1) and a float written beyond a float's range (``1e400``, which would read as infinite)."""
        if isinstance(node, yaml.ScalarNode):
            self._check_number_text(node)
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            problem = str(exc).split(";")[0]  # Python's advice after ';' is for programmers
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {quote(node.value)}: {problem}", node.start_mark) from None

    @staticmethod
    def _check_number_text(node: yaml.ScalarNode) -> None:
        """Refuse a plain scalar that YAML 1.1 and 1.2 read as different values (an error at its line)."""
        text = node.value

        def refuse(problem: str) -> typing.NoReturn:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {quote(text)}: {problem}",
                                                    node.start_mark)

        if node.tag == _INT_TAG and _LEADING_ZERO.fullmatch(text):
            octal, decimal = (int(text.replace("_", ""), base) for base in (8, 10))
            if octal != decimal:
                refuse(f"YAML 1.1 reads a leading 0 as octal ({octal}), YAML 1.2 as decimal ({decimal}); write "
                       f"{decimal} (or {octal}) without it")
        elif node.tag == _YAML12_OCTAL_TAG:
            value = int(text.replace("0o", "0", 1), 8)
            refuse(f"YAML 1.2 reads it as octal ({value}), YAML 1.1 (kvsim's loader) as text; write {value}")
        elif node.tag == _FLOAT_TAG and "inf" not in text.lower():
            try:
                value = float(text.replace("_", ""))
            except ValueError:  # (a YAML 1.1 float Python does not read, e.g. sexagesimal 1:30.5: the constructor's)
                return
            if math.isinf(value):
                refuse("beyond a float's range (it would read as infinite); write a smaller number")
            if value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
                refuse("below a float's smallest (it would read as 0); write 0 if 0 is meant")


class WrittenDate(datetime.date):
    """A date YAML read from an unquoted ``2024-01-01``, remembering the text (``written``), so a message quotes it as
    the user wrote it rather than as Python's ``datetime.date(2024, 1, 1)`` (``sim.errors.quote``)."""

    written: str

    def __repr__(self) -> str:  # (a message's {value!r}, a list's repr)
        return self.written

    def __reduce_ex__(self, protocol: object) -> tuple:  # (copy and pickle keep the text: date's drops it)
        return _written, (datetime.date(self.year, self.month, self.day), self.written)


class WrittenDatetime(datetime.datetime):
    """As ``WrittenDate``, for a timestamp (``2024-01-01 10:00:00``, ``2024-01-01T10:00:00Z``)."""

    written: str

    def __repr__(self) -> str:
        return self.written

    def __reduce_ex__(self, protocol: object) -> tuple:
        plain = datetime.datetime(self.year, self.month, self.day, self.hour, self.minute, self.second,
                                  self.microsecond, self.tzinfo)
        return _written, (plain, self.written)


def _written(value: datetime.date, written: str) -> datetime.date:
    """``value`` as a ``WrittenDate`` or ``WrittenDatetime`` holding ``written``."""
    if isinstance(value, datetime.datetime):
        out: datetime.date = WrittenDatetime(value.year, value.month, value.day, value.hour, value.minute,
                                             value.second, value.microsecond, value.tzinfo)
    else:
        out = WrittenDate(value.year, value.month, value.day)
    out.written = written
    return out


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> datetime.date:
    return _written(yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node), node.value)


UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _numbers_as_people_write_them() -> None:
    """YAML 1.1's numbers, which PyYAML implements, less two traps: ``1e-9`` (an exponent without a dot, or without
    a sign: YAML 1.2 and Python read a number) was a string, and ``1:3`` (base-60, as in a PD split or a time) the
    integer 63. Everything else reads as before (``1_000``, ``0x1f``, ``.inf``, ``1.5e-3``)."""
    int_tag, float_tag = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
    resolvers = {first: [(tag, regexp) for tag, regexp in entries if tag not in (int_tag, float_tag)]
                 for first, entries in _SAFE_LOADER.yaml_implicit_resolvers.items()}
    UniqueKeyLoader.yaml_implicit_resolvers = resolvers
    UniqueKeyLoader.add_implicit_resolver(float_tag, re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))
    UniqueKeyLoader.add_implicit_resolver(int_tag, re.compile(r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""", re.X), list("-+0123456789"))
    UniqueKeyLoader.add_implicit_resolver(_YAML12_OCTAL_TAG, re.compile(f"^{_YAML12_OCTAL.pattern}$"), list("-+0"))


_numbers_as_people_write_them()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error: line, column and problem (PyYAML's own text spans lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


MAX_YAML_DEPTH = 32  # nested mappings/sequences; kvsim's deepest file (a plan's search.tiers.dram) has 4
MAX_YAML_BYTES = 16 << 20  # a config, overlay, sweep spec or plan: kvsim's own are a few KB
MAX_YAML_VALUES = 1_000_000  # scalars and collections once aliases are expanded; kvsim's files hold hundreds


def _check_shape(text: str) -> None:
    """Refuse YAML nested deeper than ``MAX_YAML_DEPTH`` or holding more than ``MAX_YAML_VALUES`` values with its
    aliases expanded, from the parser's flat event stream, before anything recursive sees it: PyYAML builds
    nodes recursively (libyaml's binding overflowed the C stack and crashed the process at 100,000 nested
    brackets; the Python one raises RecursionError), and a few lines of aliases of aliases ("billion laughs")
    stand for 10^9 values, which printing or walking the config never finishes."""
    sizes: dict[str, int] = {}  # an anchor's expanded size
    open_counts: list[tuple[int, str | None]] = []  # per open collection: values before it, its anchor
    total = 0
    for event in yaml.parse(text, Loader=UniqueKeyLoader):
        if isinstance(event, yaml.AliasEvent):
            total += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            open_counts.append((total, event.anchor))
            total += 1
            if len(open_counts) > MAX_YAML_DEPTH:
                raise yaml.parser.ParserError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                              event.start_mark)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            before, anchor = open_counts.pop()
            if anchor is not None:
                sizes[anchor] = total - before
        if total > MAX_YAML_VALUES:
            raise yaml.parser.ParserError(None, None, f"more than {MAX_YAML_VALUES:,} values once its aliases are "
                                          "expanded", event.start_mark)


def load_yaml(text: str) -> Any:
    """Parse YAML text with ``UniqueKeyLoader``."""
    _check_shape(text)
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def reads_as_number(text: str) -> bool:
    """Whether ``text`` written unquoted reads as an int or a float (``2``, ``1e9``, ``0x1f``; not ``inf``, which
    YAML spells ``.inf``, nor ``true``)."""
    if len(text) > MAX_NUMBER_TEXT:  # (a number's text is short; this is asked of a wrong value, for its message)
        return False
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        return False
    return isinstance(value, (int, float)) and not isinstance(value, bool)


MAX_NUMBER_TEXT = 400  # characters: a float's longest useful text is ~25; an int's within 64 bits, 20


def parse_set(assignment: str) -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is read as a YAML scalar (``null``, ``true``, ``3``, ``0.5``)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects dotted.key=value, got {quote(assignment)}")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {quote(key)}: cannot parse value {quote(raw)}: {_yaml_problem(exc)}") from None
    return key, value


def leaf_keys(key: str, value: Any) -> list[str]:
    """The dotted keys a setting of ``key`` to ``value`` sets: a mapping value sets its leaves (``pd={num_prefill:
    2}`` is ``pd.num_prefill``), so the checks of which mode reads a key see what it really sets."""
    if isinstance(value, dict) and value:
        return [leaf for sub, inner in value.items() for leaf in leaf_keys(f"{key}.{sub}", inner)]
    return [key]


def set_keys(assignment: str) -> list[str]:
    """The dotted keys a ``--set KEY=VALUE`` sets (``leaf_keys``); only ``KEY`` when its value does not parse (the
    config's own check says why)."""
    try:
        return leaf_keys(*parse_set(assignment))
    except ConfigError:
        return [assignment.partition("=")[0].strip()]


def read_config_file(path: Path, what: str = "config file") -> dict[str, Any]:
    """The top-level mapping of a YAML file of kvsim's (``{}`` when empty): a config file or overlay,
    a sweep spec, a plan (``what`` says which); any problem names the file."""
    try:
        if path.exists() and not path.is_file():  # a device or FIFO (/dev/zero) would be read forever
            raise ConfigError(f"{what} {path}: not a file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {path}: over {MAX_YAML_BYTES:,} bytes, not one of kvsim's YAML files")
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # a path holding a NUL byte (a YAML file's "\0"): pathlib's "embedded null byte"
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


# Keys holding file or directory paths; in a YAML file they are relative to that file.
PATH_KEYS = ("model", "hardware.gpu", "workload.trace", "network.lookup", "compute.profile", "compute.collectives",
             "cache.learned_model")
# May name a directory (a profile bundle; a Vidur network profile; a Hugging Face model folder); the others name files.
DIRECTORY_KEYS = ("model", "compute.profile", "compute.collectives")
# Path keys that also take a name (``model``: an entry of profiles/models.yaml; ``hardware.gpu``: of
# profiles/gpus.yaml): only a value written as a path (``names_a_path``) is one.
NAME_OR_PATH_KEYS = ("model", "hardware.gpu")
MODEL_PATH_HINT = "or ./PATH to a Hugging Face config.json"  # (or its folder); short: messages stay one line
GPU_PATH_HINT = "or ./PATH to a GPU spec YAML (an entry's fields in profiles/gpus.yaml)"
# Paths kvsim writes as well as reads (relative to a YAML file like PATH_KEYS, but need not exist yet).
CACHE_KEYS = ("workload.cache",)


def names_a_path(value: str) -> bool:
    """Whether a name-or-path value is written as a path: it has a folder separator or ends in .json, .yaml or
    .yml (the names in profiles/ have neither)."""
    return "/" in value or os.sep in value or value.endswith((".json", ".yaml", ".yml"))


def is_path_value(dotted: str, value: Any) -> bool:
    """Whether ``value`` of config key ``dotted`` is a path kvsim reads or writes (relative ones are
    relative to the YAML file that gives them)."""
    if not isinstance(value, str) or dotted not in PATH_KEYS + CACHE_KEYS:
        return False
    return dotted not in NAME_OR_PATH_KEYS or names_a_path(value)


def resolve_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    """Rewrite relative path values of ``layer`` (read from a file in ``base``) relative to the cwd."""
    return map_path_settings(layer, lambda dotted, value: rebase_setting(base, dotted, value))


def expand_home_paths(layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` with a path value that starts with ``~`` (``--set workload.trace=~/t.csv``, which no shell expands)
    in the home folder, as a shell would have put it."""
    return map_path_settings(layer, lambda dotted, value: expand_home(value) if is_path_value(dotted, value) else value)


def map_path_settings(layer: dict[str, Any], rewrite: Callable[[str, Any], Any]) -> dict[str, Any]:
    """A copy of ``layer`` with the value of each path key it sets (``PATH_KEYS``, ``CACHE_KEYS``) rewritten."""
    out = copy.deepcopy(layer)
    for dotted in PATH_KEYS + CACHE_KEYS:
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = rewrite(dotted, node[leaf])
    return out


def expand_home(value: str) -> str:
    """A path written from the home folder (``~/traces/t.csv``, ``~user/t.csv``) expanded as a shell expands it;
    any other unchanged. A config file or ``--set`` is read by no shell, so ``~`` was a folder named ``~``."""
    return os.path.expanduser(value) if value.startswith("~") else value


def rebase_path(base: Path, value: str) -> str:
    """A path written in a file in folder ``base``, re-rooted to the working directory (absolute: unchanged; from the
    home folder, ``~/...``: expanded, as a config key's path is, e.g. a sweep or plan file's ``config:``). Spelled
    as the file was named: relative under a relative ``base``, absolute under an absolute one. (Made relative to the
    working directory, a file named by its absolute path gave reports that differed with the directory a command
    ran in: ``../../x`` here, ``../../../x`` one folder down.)"""
    value = expand_home(value)
    return value if Path(value).is_absolute() else os.path.normpath(os.path.join(base, value))


def rebase_setting(base: Path, dotted: str, value: Any) -> Any:
    """The value of config key ``dotted`` written in a file in folder ``base``: re-rooted when it is a path,
    and still written as one (``./NAME``, not ``NAME``) for a name-or-path key."""
    if not is_path_value(dotted, value) or not value.strip():
        return value  # not a path, or an empty one (kept empty, to be refused as such, not read as the file's folder)
    value = expand_home(value)
    rebased = rebase_path(base, value)
    if dotted in NAME_OR_PATH_KEYS and not os.path.exists(rebased) and _names_an_entry(value):
        return value  # a model's Hugging Face id (meta-llama/Llama-3.1-8B) with no such folder: the name
    return rebased if dotted not in NAME_OR_PATH_KEYS or names_a_path(rebased) else os.path.join(os.curdir, rebased)


def _names_an_entry(value: str) -> bool:
    from sim.specs import canonical_model  # specs reads paths with this module's helpers

    return canonical_model(value) is not None
