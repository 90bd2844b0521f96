"""A measured vLLM run's files, read and checked before anything replays them (``benchmarks/replay_vllm.py``):
vllm/meta.json, vllm/requests.jsonl, vllm/timeseries.csv and LLMServingSim's validation/summary.txt. Every error is
one line naming the file, the row and the field."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run itself (by mistake: it says so): the repository's packages, as the scripts find them
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim.script_start  # noqa: E402, F401 (first: run by mistake, a stop while it loads is answered as it says so)

# isort: split

import json
import math
import re
from collections import Counter
from typing import Any

import numpy as np

from sim.errors import InputError
from sim.json_input import unique_keys

# validation/summary.txt row names (LLMServingSim's bench/validate.py) for each metric and statistic
PEER_ROWS = {("ttft", "mean"): "TTFT Mean", ("ttft", "p50"): "TTFT Median", ("ttft", "p99"): "TTFT P99",
             ("tpot", "mean"): "TPOT Mean", ("tpot", "p50"): "TPOT Median", ("tpot", "p99"): "TPOT P99",
             ("e2e", "mean"): "Latency Mean", ("e2e", "p50"): "Latency Median", ("e2e", "p99"): "Latency P99"}

# the engine states timeseries.csv records, and kvsim's timeline names for them
STATE = {"running": "running", "waiting": "queued", "kv_cache_pct": "kv_usage"}


def read_json(path: Path, what: str) -> Any:
    """A JSON file of the run (``what`` says which), or an error naming it; a key given twice is refused."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the run's {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the run's {what} is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys(str(path)))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: the run's {what} is not JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise InputError(f"{path}: the run's {what} is nested too deeply") from None


def read_text(path: Path, what: str) -> str:
    """A text file of the run, or an error naming it (unreadable, not UTF-8)."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the run's {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the run's {what} is not UTF-8 text") from None


def is_number(value: Any) -> bool:
    """A finite JSON number (a bool is none)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole_count(mapping: dict[str, Any], key: str, where: str, default: int | None = 1) -> int | None:
    """A whole positive number of the run's meta.json (``where`` names its section); absent or null: ``default``."""
    value = mapping.get(key)
    if value is None:
        return default
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or value < 1):
        raise InputError(f"meta.json {where}.{key} must be a whole number of at least 1, got {value!r:.40}")
    return int(value)


# a timestamp's magnitude bound (s): far beyond any clock's reading (monotonic or epoch), and low enough that sums of
# latencies stay finite (a last_token_ts of 1e308 made inf and nan of every statistic)
TIMESTAMP_LIMIT = 1e12


def read_requests(requests_jsonl: Path) -> list[dict[str, Any]]:
    """The run's requests, each checked: finite timestamps (queued <= first token <= last token), a whole number of
    output tokens of at least 1, and a request_id (where given) that no other row has; else one line naming the row
    and field."""
    lines = read_text(requests_jsonl, "requests").splitlines()
    rows: list[dict[str, Any]] = []
    ids: dict[Any, int] = {}
    keys = ("queued_ts", "first_token_ts", "last_token_ts", "output_toks")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{requests_jsonl}: row {number}"
        try:
            row = json.loads(line, object_pairs_hook=unique_keys(where))
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict) or not all(is_number(row.get(k)) for k in keys):
            raise InputError(f"{where} is not a request with numbers {', '.join(keys)}")
        for key in keys[:3]:
            if abs(row[key]) >= TIMESTAMP_LIMIT:
                raise InputError(f"{where}: {key} {row[key]!r:.40} is no clock reading "
                                 f"(seconds below {TIMESTAMP_LIMIT:g})")
        if row["output_toks"] != int(row["output_toks"]) or row["output_toks"] < 1:
            raise InputError(f"{where}: output_toks must be a whole number of at least 1, "
                             f"got {row['output_toks']!r:.40}")
        if row["first_token_ts"] < row["queued_ts"]:
            raise InputError(f"{where}: first_token_ts is before queued_ts (a negative TTFT)")
        if row["last_token_ts"] < row["first_token_ts"]:
            raise InputError(f"{where}: last_token_ts is before first_token_ts")
        if "request_id" in row:
            request_id = row["request_id"]
            if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
                raise InputError(f"{where}: request_id must be a string or a whole number, got {request_id!r:.40}")
            if request_id in ids:
                raise InputError(f"{where}: request_id {request_id!r:.40} is row {ids[request_id]}'s too "
                                 "(each request once)")
            ids[request_id] = number
        rows.append(row)
    if not rows:
        raise InputError(f"{requests_jsonl}: no requests")
    return rows


def measured_latencies(requests_jsonl: Path, rows: list[dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
    """Seconds per request: TTFT = first − queued; TPOT over the tokens after the first; E2E = last − queued."""
    rows = read_requests(requests_jsonl) if rows is None else rows
    return {
        "ttft": np.array([r["first_token_ts"] - r["queued_ts"] for r in rows], dtype=float),
        "tpot": np.array([(r["last_token_ts"] - r["first_token_ts"]) / (r["output_toks"] - 1)
                          for r in rows if r["output_toks"] > 1], dtype=float),
        "e2e": np.array([r["last_token_ts"] - r["queued_ts"] for r in rows], dtype=float),
    }


def peer_prediction(summary: Path) -> dict[tuple[str, str], float]:
    """LLMServingSim's own prediction (ms) from its ``summary.txt`` table (``Metric vLLM Sim Diff%``), if present."""
    if not summary.is_file():
        return {}
    rows = {}
    for line in read_text(summary, "LLMServingSim summary (validation/summary.txt)").splitlines():
        match = re.match(r"^(\w+ \w+)\s+([\d.]+)\s+([\d.]+)\s+[-+]?[\d.]+%", line.strip())
        if match:
            try:
                rows[match.group(1)] = float(match.group(3))
            except ValueError:  # ("1.2.3")
                raise InputError(f"{summary}: {match.group(1)}: {match.group(3)!r} is not a number") from None
    return {key: rows[name] for key, name in PEER_ROWS.items() if name in rows}


def check_run(run: Path) -> tuple[dict[str, np.ndarray], list[tuple[int | None, int]], dict[tuple[str, str], float],
                                   dict | None]:
    """The run's files read and checked at once, before anything runs: its measured latencies (vllm/requests.jsonl),
    the requests it served ((input_toks or None, output_toks) each: as many rows as meta.json's num_requests states,
    each request once), LLMServingSim's prediction (validation/summary.txt, if any) and the engine state over time
    (vllm/timeseries.csv, if any)."""
    if not run.is_dir():
        raise InputError(f"{run}: no such run folder (--run)")
    meta_path, requests_path = run / "vllm" / "meta.json", run / "vllm" / "requests.jsonl"
    meta = read_json(meta_path, "engine description (vllm/meta.json)")
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: not a run's meta.json (an object)")
    stated = meta.get("num_requests")
    if stated is not None and (not is_number(stated) or stated != int(stated) or stated < 1):
        raise InputError(f"{meta_path}: num_requests must be a whole number of at least 1, got {stated!r:.40}")
    rows = read_requests(requests_path)
    if stated is not None and len(rows) != stated:
        raise InputError(f"{requests_path}: {len(rows):,} requests, but {meta_path} num_requests says the run served "
                         f"{int(stated):,}")
    peer = peer_prediction(run / "validation" / "summary.txt")
    timeseries_path = run / "vllm" / "timeseries.csv"
    timeseries = read_timeseries(timeseries_path) if timeseries_path.exists() else None
    served = [(int(r["input_toks"]) if is_number(r.get("input_toks")) else None, int(r["output_toks"])) for r in rows]
    return measured_latencies(requests_path, rows), served, peer, timeseries


def read_timeseries(timeseries_csv: Path) -> dict[str, np.ndarray]:
    """The columns ``t`` and those of ``STATE`` of a run's timeseries.csv, checked: a header naming them, then rows of
    as many finite numbers (``t`` rising, the others at least 0); else one line naming the file, row and column."""
    lines = [(number, line) for number, line in enumerate(
        read_text(timeseries_csv, "engine state (vllm/timeseries.csv)").splitlines(), 1) if line.strip()]
    if not lines:
        raise InputError(f"{timeseries_csv}: empty (no header)")
    header = [name.strip() for name in lines[0][1].split(",")]
    missing = [name for name in ("t", *STATE) if name not in header]
    if missing:
        raise InputError(f"{timeseries_csv}: the header lacks column {', '.join(missing)}")
    if len(lines) == 1:
        raise InputError(f"{timeseries_csv}: no ticks after the header")
    table: dict[str, list[float]] = {name: [] for name in ("t", *STATE)}
    for number, line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(header):
            raise InputError(f"{timeseries_csv}: row {number} has {len(cells)} fields, the header {len(header)}")
        for name in table:
            text = cells[header.index(name)].strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0 or abs(value) >= TIMESTAMP_LIMIT:
                raise InputError(f"{timeseries_csv}: row {number} {name} {text!r:.40} is not a number of at least 0")
            if name == "t" and table["t"] and value <= table["t"][-1]:
                raise InputError(f"{timeseries_csv}: row {number} t {text} is not after the row before's")
            table[name].append(value)
    return {name: np.array(values) for name, values in table.items()}


if __name__ == "__main__":  # a module of benchmarks/replay_vllm.py, not a command: say so (exit 2) rather than do nothing
    from sim.command import command_status, end_process

    def _refuse() -> int:
        raise InputError("a module of benchmarks/replay_vllm.py, the command to run "
                         "(python benchmarks/replay_vllm.py --help)")

    end_process(command_status("vllm_run_files.py", _refuse))  # (as a command: a stop held while it loaded is answered)


def check_served(workload, served: list[tuple[int | None, int]], trace: Path, requests_jsonl: Path) -> None:
    """Refuse a workload that is not the one the server was fed (its latencies would be judged against another's):
    another request count, or most requests' (input, output) tokens not among the run's (``input_toks``, where the run
    records it, and ``output_toks``: a multiset, the rows' order being the server's); a minority that differs (an
    answer cut short by an end-of-sequence token) gets a note on stderr."""
    if len(workload) != len(served):
        raise InputError(f"{trace}: {len(workload):,} requests, but the run served {len(served):,} "
                         f"({requests_jsonl}): give the workload the server was fed")
    measured = Counter(served)
    if None in (key for key, _ in measured):  # (a run that does not record its prompts' lengths: outputs only)
        fed = Counter((None, int(o)) for o in workload.output_tokens.tolist())
        measured = Counter((None, o) for _, o in served)
    else:
        fed = Counter(zip(workload.input_tokens.tolist(), workload.output_tokens.tolist()))
    differ = len(served) - sum((measured & fed).values())
    if not differ:
        return
    said = f"{differ:,} of the {len(served):,} requests' token counts (input, output) are not among the run's"
    if 2 * differ > len(served):
        raise InputError(f"{trace}: {said} ({requests_jsonl}): give the workload the server was fed")
    print(f"replay_vllm.py: note: {trace}: {said} ({requests_jsonl}): their latencies are judged against "
          "another request's", file=sys.stderr)
