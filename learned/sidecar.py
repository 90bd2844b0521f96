"""Validation of a learned model's sidecar fields and of its LightGBM model text, before anything reads
them: every field the loader, the prediction (``class_codes``) and the compiled kernels index or
divide by is checked for type, shape, finiteness, order and range, so a corrupt or hand-edited
sidecar is one error naming the field, never a traceback, an out-of-bounds read or a silently
wrong run. ``check_sidecar`` returns the parsed arrays; ``model_text_defect`` finds the defects
LightGBM's own parser does not survive (a truncated model aborts the process inside it).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from learned.features import FEATURES
from learned.state_layout import CLASS_BITS
from sim.config_fields import INT64_MAX
from sim.errors import InputError, quote

MAX_BUCKETS = 256  # label buckets: the trainer writes 11
MAX_THREADS = 1024  # params.num_threads (LightGBM crashes on absurd counts; the trainer writes 2)
ROW_SUM_TOLERANCE = 1e-6  # each class's distribution sums to 1
REQUIRED = ("kvsim_learned_model", "features", "label", "classes", "block_tokens", "params", "train", "model_sha256")


def bad(path: Path, why: str) -> InputError:
    return InputError(f"learned model {path}: {why}; retrain it (python -m learned.train --help)")


def field_error(side: Path, name: str, why: str) -> InputError:
    return InputError(f"learned model sidecar {side}: field '{name}' {why}; "
                        f"retrain it (python -m learned.train --help)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(side: Path, meta: dict, name: str, kind: type) -> Any:
    """``meta`` at the dotted ``name``, which must be a ``kind``."""
    value: Any = meta
    parts = name.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict):
            raise field_error(side, ".".join(parts[:i]), f"must be an object, got {quote(value, 40)}")
        if part not in value:
            raise field_error(side, name, "is missing")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise field_error(side, name, f"must be a {'list' if kind is list else kind.__name__}, got {quote(value, 40)}")
    return value


def _numbers(side: Path, name: str, value: Any, ndim: int) -> np.ndarray:
    """``value`` as a finite float array of ``ndim`` dimensions (a ragged or non-numeric list is refused)."""
    try:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                   for x in np.ravel(np.asarray(value, object))):
            raise ValueError
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise field_error(side, name, "must be a rectangular array of numbers") from None
    if array.ndim != ndim or array.size == 0:
        raise field_error(side, name, f"must be a non-empty {ndim}-D array of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise field_error(side, name, "holds NaN or infinite values")
    return array


def check_sidecar(meta: Any, side: Path) -> dict[str, Any]:
    """Validate every field a run reads; return ``edges``, ``cuts``, ``thresholds``, ``table``, ``threads``."""
    from learned.model import SIDECAR_VERSION  # (model.py imports this module)

    if not isinstance(meta, dict) or not set(REQUIRED) <= meta.keys():
        missing = [k for k in REQUIRED if not isinstance(meta, dict) or k not in meta]
        raise bad(side, f"not a kvsim learned-model sidecar (missing keys {missing[:3]})")
    if meta["kvsim_learned_model"] != SIDECAR_VERSION:
        raise bad(side, f"sidecar version {quote(meta['kvsim_learned_model'], 40)}, this kvsim reads {SIDECAR_VERSION}")
    features = _get(side, meta, "features", list)
    unknown = [f for f in features if not isinstance(f, str) or f not in FEATURES]
    if unknown or not features:
        raise field_error(side, "features", f"names unknown features {quote(unknown[:3], 60)}")
    if len(set(features)) != len(features):
        raise field_error(side, "features", "names a feature twice")
    if not isinstance(meta["model_sha256"], str):
        raise field_error(side, "model_sha256", "must be a string")
    tokens = meta["block_tokens"]
    if not _is_int(tokens) or not 1 <= tokens <= INT64_MAX:  # (serving.block_size's domain: a run's refusal of a
        # model of 2^70 tokens a block suggested --set serving.block_size=1180591620717411303424, itself refused)
        raise field_error(side, "block_tokens", f"is not a whole number of tokens a block size can be (got "
                          f"{quote(tokens, 40)})")
    params = _get(side, meta, "params", dict)
    threads = params.get("num_threads", 2)
    if not _is_int(threads) or not 1 <= threads <= MAX_THREADS:
        raise field_error(side, "params.num_threads",
                          f"must be a whole number from 1 to {MAX_THREADS}, got {quote(threads, 40)}")
    source = _get(side, meta, "train.source", str)
    if not source:
        raise field_error(side, "train.source", "is empty")
    request_range = _get(side, meta, "train.request_range", list)
    if (len(request_range) != 2 or not all(_is_int(x) for x in request_range)
            or not 0 <= request_range[0] <= request_range[1]):
        raise field_error(side, "train.request_range",
                          f"must be [start, end) request indices, got {quote(request_range, 40)}")

    edges = _numbers(side, "label.edges", _get(side, meta, "label.edges", list), 1)
    if not 2 <= len(edges) <= MAX_BUCKETS or edges[0] <= 0 or np.any(np.diff(edges) <= 0):
        raise field_error(side, "label.edges", f"must be 2 to {MAX_BUCKETS} positive, strictly increasing distances")
    buckets = len(edges)  # LightGBM classes: a bucket per finite edge (the last: beyond the horizon)
    cuts_value = _get(side, meta, "classes.cuts", list)
    if (not cuts_value or not all(_is_int(c) and 0 <= c < buckets for c in cuts_value)
            or any(b <= a for a, b in zip(cuts_value, cuts_value[1:]))):
        raise field_error(side, "classes.cuts", f"must be strictly increasing bucket indices in [0, {buckets}), "
                                           f"got {quote(cuts_value, 40)}")
    cuts = [int(c) for c in cuts_value]
    thresholds = _numbers(side, "classes.thresholds", _get(side, meta, "classes.thresholds", list), 2)
    if thresholds.shape[0] != len(cuts):
        raise field_error(side, "classes.thresholds", f"has {thresholds.shape[0]} rows for {len(cuts)} cuts")
    if np.any(thresholds < 0) or np.any(thresholds > 1 + ROW_SUM_TOLERANCE) or np.any(np.diff(thresholds, axis=1) < 0):
        raise field_error(side, "classes.thresholds", "must be non-decreasing cumulative probabilities in [0, 1]")
    levels = thresholds.shape[1] + 1
    if levels ** len(cuts) > 1 << CLASS_BITS:
        raise field_error(side, "classes.thresholds",
                          f"makes {levels}^{len(cuts)} classes, more than {1 << CLASS_BITS:,}")
    table = _numbers(side, "classes.table", _get(side, meta, "classes.table", list), 2)
    if table.shape != (levels ** len(cuts), buckets):
        raise field_error(side, "classes.table", f"has shape {table.shape}, the cuts and thresholds need "
                                            f"({levels ** len(cuts)}, {buckets})")
    if np.any(table < 0) or np.any(np.abs(table.sum(axis=1) - 1.0) > ROW_SUM_TOLERANCE):
        raise field_error(side, "classes.table", "rows must be probability distributions (non-negative, summing to 1)")
    return {"edges": edges, "cuts": cuts, "thresholds": thresholds, "table": table, "threads": threads,
            "fingerprint": _fingerprint(side, meta["train"])}


MAX_GRAM = 1024  # requests a fingerprint's gram covers at most (the trainer writes one of learned.fingerprint.GRAMS)
_HEX64 = re.compile(r"[0-9a-f]{16}")


def _fingerprint(side: Path, train: dict) -> dict[str, Any] | None:
    """``train.fingerprint`` (``learned.fingerprint``) as ``gram``, ``modulus`` and sorted uint64 ``hashes``; None
    for a sidecar written before it (its runs are checked by source and range alone)."""
    from learned.fingerprint import DEFINITION

    if "fingerprint" not in train:
        return None
    name = "train.fingerprint"
    value = train["fingerprint"]
    if not isinstance(value, dict):
        raise field_error(side, name, f"must be an object, got {quote(value, 40)}")
    for key in ("definition", "gram", "modulus", "hashes"):
        if key not in value:
            raise field_error(side, f"{name}.{key}", "is missing")
    if value["definition"] != DEFINITION:
        raise field_error(side, f"{name}.definition", f"is {quote(value['definition'], 40)}, this kvsim reads "
                                                      f"{DEFINITION!r}")
    gram, modulus, hashes = value["gram"], value["modulus"], value["hashes"]
    if not _is_int(gram) or not 1 <= gram <= MAX_GRAM:
        raise field_error(side, f"{name}.gram", f"must be a whole number from 1 to {MAX_GRAM}, got {quote(gram, 40)}")
    if not _is_int(modulus) or not 1 <= modulus <= 1 << 63 or modulus & (modulus - 1):
        raise field_error(side, f"{name}.modulus", f"must be a power of two from 1 to 2^63, got {quote(modulus, 40)}")
    if not isinstance(hashes, list) or not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in hashes):
        raise field_error(side, f"{name}.hashes", "must be a list of 16-digit lowercase hex strings")
    array = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    if np.any(array[1:] <= array[:-1]) or np.any(array & np.uint64(modulus - 1)):
        raise field_error(side, f"{name}.hashes", "must be strictly increasing, each a multiple of the modulus")
    return {"gram": gram, "modulus": modulus, "hashes": array}


_TREE_KEYS = ("num_leaves", "leaf_value", "shrinkage")
_SPLIT_KEYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def model_text_defect(text: str) -> str | None:
    """What LightGBM's parser would fail on in ``text`` (None: none found). A truncated model aborts the
    process inside LightGBM (its trees are parsed in parallel, and an error there is std::terminate), so
    the layout is checked first: the header's ``tree_sizes`` slices, each a complete tree, then the trailer."""
    header, sep, _ = text.partition("\nTree=0\n")
    no_trees = text.startswith("tree\n") and not sep
    if no_trees:  # a model of no trees (below), its header straight followed by the end of its trees
        header, sep, _ = text.partition("\n\nend of trees\n")
    if not text.startswith("tree\n") or not sep or no_trees and "\nTree=" in header:
        return "not a LightGBM model (no header and first tree)"
    keys = dict(line.partition("=")[::2] for line in header.splitlines() if "=" in line)
    try:
        sizes = [int(s) for s in keys["tree_sizes"].split()]
        per_iteration = int(keys["num_tree_per_iteration"])
        classes = int(keys["num_class"])
    except (KeyError, ValueError):
        return "a LightGBM model header without num_class, num_tree_per_iteration or tree_sizes"
    wrong = _classes_defect(classes, per_iteration, keys.get("objective", ""))
    if wrong:
        return wrong
    if per_iteration < 1 or len(sizes) % per_iteration or min(sizes, default=1) < 1 or not sizes and not no_trees:
        return "its tree_sizes do not make whole boosting rounds"
    try:
        features = int(keys["max_feature_idx"]) + 1
    except (KeyError, ValueError):
        return "a LightGBM model header without max_feature_idx"
    if no_trees:
        # LightGBM writes a model of no trees, "tree_sizes=" then "end of trees" (src/boosting/gbdt_model_text.cpp,
        # GBDT::SaveModelToString, of an empty iteration range: Booster.model_to_string(start_iteration=) past its
        # last round), and reads it (GBDT::LoadModelFromString: zero trees, every raw score 0); refused as "not a
        # LightGBM model". Its header must say so: a tree_sizes emptied before trees is LightGBM's silent zero trees.
        return "its header's tree_sizes lists trees it does not hold" if sizes else None
    data = text.encode("utf-8")
    at = len(header.encode("utf-8")) + 1
    if at + sum(sizes) > len(data):
        return "truncated (its trees end before the sizes in its header say)"
    for i, size in enumerate(sizes):
        if not _ends_where_sized(data, at, size, i + 1 < len(sizes) and f"Tree={i + 1}\n".encode()):
            return _resized(i, size)
        tree = data[at:at + size].decode("utf-8", errors="replace")
        at += size
        lines = dict(line.partition("=")[::2] for line in tree.splitlines()[1:] if "=" in line)
        if not tree.startswith(f"Tree={i}\n") or not all(k in lines for k in _TREE_KEYS):
            return f"tree {i} is incomplete"
        try:
            leaves = int(lines["num_leaves"])
            if leaves < 1 or len(lines["leaf_value"].split()) != leaves:
                return f"tree {i} is malformed"
            if leaves > 1 and any(len(lines.get(k, "").split()) != leaves - 1 for k in _SPLIT_KEYS):
                return f"tree {i} is malformed"
            wrong = _arrays_defect(lines, leaves)
            if wrong:
                return f"tree {i} {wrong}"
            if not all(math.isfinite(float(v)) for v in lines["leaf_value"].split()):
                return f"tree {i} has non-finite leaf values"
            wrong = _split_defect(lines, leaves, features, int(lines.get("num_cat") or 0))
            if wrong:
                return f"tree {i} {wrong}"
        except ValueError:
            return f"tree {i} is malformed"
    if not re.match(r"\s*end of trees", data[at:at + 100].decode("utf-8", errors="replace")):
        return "truncated (no 'end of trees' after its trees)"
    return _parameters_defect(data[at:].decode("utf-8", errors="replace"))


def _parameters_defect(tail: str) -> str | None:
    """What is wrong with the ``parameters:`` section after the trees (None: nothing, or no section): LightGBM reads
    each of its lines as ``[name: value]`` by splitting it at ':' (empty pieces dropped) and taking the second piece
    unchecked, so a line of fewer than two pieces (a model cut inside the section, "[boos"; a line "x") crashed the
    process (SIGSEGV, exit 139) as the Python package read the loaded parameters back."""
    lines = tail.split("\n")
    if "parameters:" not in lines:
        return None
    for line in lines[lines.index("parameters:") + 1:]:
        if line == "end of parameters":
            break
        if line and len([piece for piece in line.split(":") if piece]) < 2:
            return f"its parameters section has a line LightGBM cannot read ({line[:30]!r}: truncated?)"
    return None


# The numbers of a tree as LightGBM parses them (src/io/tree.cpp, Tree::Tree(const char*)): integers, and doubles as
# it writes them (digits, an exponent, inf or nan); Python's float() also takes "1_0" and "infinity", LightGBM not
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.IGNORECASE)
# a tree's arrays past its leaf values, read only where it has two leaves or more: one number a node (leaves - 1) or
# a leaf. Each is read by count, so a number edited into another token or a count off by one (a hand edit keeping the
# tree's length) aborted the process in LightGBM's parallel tree parse ("Check failed: (strs.size()) == (n)",
# "Unknown token"), exit 134
_NODE_ARRAYS = {"split_feature": _INT, "split_gain": _FLOAT, "threshold": _FLOAT, "decision_type": _INT,
                "left_child": _INT, "right_child": _INT, "internal_value": _FLOAT, "internal_weight": _FLOAT,
                "internal_count": _INT}
_LEAF_ARRAYS = {"leaf_weight": _FLOAT, "leaf_count": _INT}
_REQUIRED_ARRAYS = ("cat_threshold", "leaf_const", "leaf_features", "leaf_coeff")  # (where read; others optional)


def _arrays_defect(lines: dict[str, str], leaves: int) -> str | None:
    """What in a tree's fields LightGBM's parser would abort on (None: nothing): a missing or non-integer num_cat
    ("Tree model should contain num_cat field"), an is_linear other than 0 or 1, or an array whose numbers are not
    LightGBM's or not as many as the tree's nodes, leaves, categories or (a linear tree) its leaves' terms."""
    if not _INT.fullmatch(lines.get("num_cat", "").strip()) or int(lines["num_cat"]) < 0:
        return "has no num_cat (the count of its categorical splits)"
    linear = lines.get("is_linear", "0").strip()
    if linear not in ("0", "1"):
        return "has an is_linear other than 0 or 1"
    if not all(_FLOAT.fullmatch(v) for v in lines["leaf_value"].split()):
        return "has a leaf value that is not a number"
    wanted = []
    if linear == "1":  # a linear tree's leaves (read whatever their count): a constant, and coefficients of features
        features = lines.get("num_features", "").split()
        if len(features) != leaves or not all(_INT.fullmatch(f) and int(f) >= 0 for f in features):
            return f"has num_features other than {leaves} counts LightGBM reads"
        terms = sum(int(f) for f in features)
        wanted += [("leaf_const", _FLOAT, leaves), ("leaf_features", _INT, terms), ("leaf_coeff", _FLOAT, terms)]
    elif leaves < 2:
        return None
    if leaves > 1:
        wanted += [(key, pattern, leaves - 1) for key, pattern in _NODE_ARRAYS.items()]
        wanted += [(key, pattern, leaves) for key, pattern in _LEAF_ARRAYS.items()]
    categorical = int(lines["num_cat"])
    if categorical:
        bounds = lines.get("cat_boundaries", "").split()
        if len(bounds) != categorical + 1 or not all(_INT.fullmatch(b) for b in bounds):
            return "has cat_boundaries not one more than its num_cat"
        wanted.append(("cat_threshold", _INT, int(bounds[-1])))
    for key, pattern, count in wanted:
        values = lines.get(key, "").split() if key in lines or key in _REQUIRED_ARRAYS else None
        if values is not None and (len(values) != count or not all(pattern.fullmatch(v) for v in values)):
            return f"has {key} other than {count} numbers LightGBM reads"
    return None


def _classes_defect(classes: int, per_iteration: int, objective: str) -> str | None:
    """A header whose class count is not its trees per round (None: they agree). LightGBM grows one tree a class a
    round (src/boosting/gbdt.cpp: num_tree_per_iteration_ is the objective's NumModelPerIteration, num_class for
    multiclass, else 1, and src/io/config.cpp refuses num_class > 1 for any other objective), and its prediction
    buffer is num_class long while each round writes num_tree_per_iteration values: 10 against 11 overran the heap
    silently, 1 or 2 against 11 aborted or crashed the process."""
    said = re.search(r"\bnum_class:(\S+)", objective)  # the objective line repeats it: "multiclass num_class:11"
    if classes != per_iteration or (said and said.group(1) != str(classes)):
        return (f"its header's num_class ({classes}), num_tree_per_iteration ({per_iteration})"
                + (f" and objective's num_class ({said.group(1)[:20]})" if said else "")
                + " disagree (LightGBM writes one tree per class a round)")
    return None


def _ends_where_sized(data: bytes, at: int, size: int, following: bytes | bool) -> bool:
    """Whether the tree at ``at`` ends ``size`` bytes on: where the next tree's header (``following``; False after
    the last tree: 'end of trees') starts, or where none is found at all (a cut file: the checks after say so)."""
    if following:
        return data.startswith(following, at + size) or b"\n" + following not in data[at:]
    end = data.find(b"\nend of trees", at)
    return end < 0 or not data[at + size:end + 1].strip() and end + 1 >= at + size


CATEGORICAL = 1  # LightGBM's decision_type bits (include/LightGBM/tree.h: kCategoricalMask 1, kDefaultLeftMask 2,
DECISION_TYPES = 16  # then the missing-value type, 0-2, in bits 2-3): a value of 16 or more is none of LightGBM's


def _split_defect(lines: dict[str, str], leaves: int, features: int, categorical: int) -> str | None:
    """What is wrong with a tree's splits that LightGBM's parser lets through (None: nothing): a split on a feature
    the model has not, a child index outside the tree, or a node reached twice or never, crashed the process
    (SIGSEGV) or ran a corrupted tree silently; an edit that keeps each tree's length (a digit changed) gets past
    the size check. LightGBM numbers a tree's nodes in the order they split (src/io/tree.cpp, Tree::Split: the new
    node is num_leaves - 1), so a child node's index is above its parent's; a leaf is written as ~index (-1: leaf 0)."""
    if leaves < 2:
        return None
    split = [int(v) for v in lines["split_feature"].split()]
    thresholds = [float(v) for v in lines["threshold"].split()]
    kinds = [int(v) for v in lines["decision_type"].split()]
    if any(not 0 <= f < features for f in split):
        return f"splits on a feature outside the model's {features}"
    if any(not 0 <= k < DECISION_TYPES or (k & CATEGORICAL and not categorical) for k in kinds):
        return "has a decision_type LightGBM does not write"
    # (an infinite one is LightGBM's own: a split of every value from the missing ones, as it writes where the
    # feature's values span zero: ``threshold=inf`` with decision_type 8, missing NaN; a model trained on Mooncake's
    # second half had one, and was refused)
    if any(math.isnan(t) for t, k in zip(thresholds, kinds) if not k & CATEGORICAL):
        return "has a NaN split threshold"
    reached_nodes, reached_leaves = [0] * (leaves - 1), [0] * leaves
    reached_nodes[0] = 1  # the root
    for node, side in enumerate(zip(lines["left_child"].split(), lines["right_child"].split())):
        for child in map(int, side):
            if child >= 0 and node < child < leaves - 1:
                reached_nodes[child] += 1
            elif -leaves <= child < 0:
                reached_leaves[~child] += 1
            else:
                return f"has a child index ({child}) outside its {leaves} leaves' tree"
    if any(n != 1 for n in reached_nodes) or any(n != 1 for n in reached_leaves):
        return "is not a tree (a node is reached twice, or never)"
    return None


def _resized(tree: int, size: int) -> str:
    """A tree whose text is no longer the size the header gives it: LightGBM reads each tree by its ``tree_sizes``
    entry, so a hand edit that changes a tree's length (a leaf value rewritten) breaks the trees after it; the first
    misaligned one was said to be "incomplete", naming a tree nobody touched."""
    return (f"tree {tree} is not the {size:,} bytes its header's tree_sizes gives: an edit changed its length, and "
            f"LightGBM reads each tree by its size")
