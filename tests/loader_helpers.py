"""Shared fixtures of the loader tests: small files written to tmp_path, bad-row fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import main  # noqa: F401  (puts the project root first: kvsim's ``trace`` package, not the stdlib one)
from sim.config_workload import WorkloadConfig
from trace.loaders import load_trace
from trace.request import Trace

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_AZURE = ROOT / "trace" / "data" / "azure_conv_2023.csv"

def load(path, block_size: int = 16, **workload) -> Trace:
    return load_trace(WorkloadConfig(trace=str(path), **workload), block_size=block_size)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def request_blocks(trace) -> list[list[int]]:
    return [trace.blocks(i).tolist() for i in range(len(trace))]


def first_appearance_ids(keys) -> list[int]:
    """Dense ids in order of first appearance, computed with a plain dict."""
    seen: dict = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def assert_bijection(keys, ids) -> None:
    """Equal key <=> equal id, over all positions."""
    assert len(keys) == len(ids)
    key_to_id: dict = {}
    id_to_key: dict = {}
    for k, i in zip(keys, ids, strict=True):
        assert key_to_id.setdefault(k, i) == i, f"key {k!r} got two ids"
        assert id_to_key.setdefault(i, k) == k, f"id {i} given to two different keys"



AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"  # (no newline)
AZURE_BAD = AZURE_HEADER + (
    "2023-11-16 18:15:46.0000000,100,10\n"  # row 1: good
    "2023-11-16 18:15:47.0000000,,20\n"  # row 2: missing_value
    "2023-11-16 18:15:48.0000000,abc,20\n"  # row 3: non_numeric
    "2023-11-16 18:15:49.0000000,NaN,20\n"  # row 4: nan_value
    "2023-11-16 18:15:50.0000000,200,-5\n"  # row 5: negative_value
    "2023-11-16 18:15:51.0000000,12.5,20\n"  # row 6: non_integer
    "not-a-time,300,30\n"  # row 7: bad_timestamp
    "2023-11-16 18:15:52.5000000,200,20\n"  # row 8: good
    "2023-11-16 18:15:53.0000000,0,20\n"  # row 9: zero_input_tokens
    "2023-11-16 18:15:54.0000000,300,30,99\n"  # row 10: malformed_row (4 fields)
    "2023-11-16 18:15:56.2500000,300,30\n"  # row 11: good
)
AZURE_BAD_REASONS = {
    "missing_value": 1,
    "non_numeric": 1,
    "nan_value": 1,
    "negative_value": 1,
    "non_integer": 1,
    "bad_timestamp": 1,
    "zero_input_tokens": 1,
    "malformed_row": 1,
}



def _mooncake_line(ts, inp, out, hashes) -> str:
    return json.dumps({"timestamp": ts, "input_length": inp, "output_length": out, "hash_ids": hashes}) + "\n"


MOONCAKE_BAD = (
    _mooncake_line(0, 1000, 5, [1, 2])  # record 1: good (ceil(1000/512) = 2)
    + _mooncake_line(10, 100, 5, [])  # record 2: empty_hash_ids
    + _mooncake_line(20, 600, 5, [1])  # record 3: hash_ids_length_mismatch (needs 2)
    + '{"timestamp": 30, "input_length": 700, "output_length"\n'  # record 4: malformed_row
    + _mooncake_line(40, 1100, 7, [1, 2, 3])  # record 5: good
    + _mooncake_line(50, 512, 9, [1])  # record 6: good
)
