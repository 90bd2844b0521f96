"""Reading the files of a calibration profile (Vidur tables, LLMServingSim bundles, NCCL samples).

A profile is a user's directory of CSV and YAML files, so each file is read at this one boundary:
a file that cannot be read, parsed or lacks the columns its reader needs is one exit-2 line naming
it, never a pandas or PyYAML traceback from deep inside a compute model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from sim.config_yaml import read_config_file
from sim.errors import ConfigError, quote


def read_profile_csv(path: Path, needed: Iterable[str] = (), numeric: Iterable[str] = (), what: str = "") -> pd.DataFrame:
    """A profile's CSV table: it must parse, have the ``needed`` columns, and numbers in the ``numeric`` ones
    (blank cells allowed: readers drop or interpolate them). ``what`` names the table in errors."""
    kind = f" ({what})" if what else ""
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}{kind}: cannot read it as CSV: {quote(problem)}") from None
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}{kind}: missing column(s) {', '.join(missing)}")
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ConfigError(f"{path}{kind}: row {row + 1} column {column}: not a number: {quote(str(frame[column].iloc[row]))}")
        frame[column] = values
    return frame


# The columns kvsim reads from each table of an LLMServingSim bundle's tpN/ folder (LLMServingSim
# docs/docs/profiler/output-bundle.md); all but ``layer`` hold numbers.
BUNDLE_COLUMNS = {
    "dense.csv": ("layer", "tokens", "time_us"),
    "per_sequence.csv": ("layer", "sequences", "time_us"),
    "attention.csv": ("prefill_chunk", "n_decode", "kv_decode", "time_us"),
    "moe.csv": ("tokens", "activated_experts", "time_us"),
    "skew.csv": ("n", "pc", "kp", "kvs", "kv_big", "kv_mean", "t_mean_us", "t_max_us", "t_skew_us", "alpha"),
}


def read_bundle_table(tp_dir: Path, name: str) -> pd.DataFrame:
    """One table of an LLMServingSim bundle's ``tpN/`` folder, with the columns kvsim reads."""
    path = tp_dir / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the LLMServingSim bundle")
    columns = BUNDLE_COLUMNS[name]
    return read_profile_csv(path, columns, [c for c in columns if c != "layer"], "LLMServingSim bundle")


def read_profile_yaml(path: Path, what: str) -> dict[str, Any]:
    """A profile's YAML file (a mapping; ``{}`` when empty), read as strictly as a config file."""
    return read_config_file(path, what)
