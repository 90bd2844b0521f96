"""JSON input read strictly: a key given twice in one object is refused, where ``json`` would keep the last value
silently (a hand-edited config.json or lookup table with a pasted-over key would run on the wrong number)."""

from __future__ import annotations

from collections.abc import Callable

from sim.errors import InputError, quote


def unique_keys(where: str, error: type[InputError] = InputError) -> Callable[[list[tuple[str, object]]], dict]:
    """A ``json.loads`` ``object_pairs_hook`` that raises ``error`` naming ``where`` and the key given twice."""
    def pairs_to_dict(pairs: list[tuple[str, object]]) -> dict:
        result = dict(pairs)
        if len(result) < len(pairs):
            seen: set[str] = set()
            twice = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise error(f"{where}: key {quote(twice)} more than once in one object")
        return result
    return pairs_to_dict
