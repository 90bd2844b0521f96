"""Reading the files of a calibration profile (Vidur tables, LLMServingSim bundles, NCCL samples).

A profile is a user's directory of CSV and YAML files, so each file is read at this one boundary:
a file that cannot be read, parsed or lacks the columns its reader needs is one exit-2 line naming
it, never a pandas or PyYAML traceback from deep inside a compute model.
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from sim.config_yaml import read_config_file
from sim.errors import ConfigError, quote

if TYPE_CHECKING:
    import pandas as pd

# The longest time a profile may give one measured operator or collective: an hour. A profile times one
# decoder layer's operator (or one collective) at a time; the longest in the public profiles is 35 ms
# (Vidur's A100 Llama-3-8B mlp.csv, 32,768 tokens: max of its time_stats columns), and even a whole 405B-parameter
# model's prefill of 128k tokens is ~2e17 FLOP (2 x parameters x tokens, plus attention's 4 x layers x hidden x
# tokens^2), a few minutes on one 1-PFLOP/s GPU. A time beyond an hour is a unit or data error, and a finite
# 1e30 would otherwise silently dominate every step.
MAX_PROFILED_TIME_S = 3600.0

# Notes about a profile's files go through the "kvsim" logger, as the trace loaders' do (errors only with --quiet).
LOG = logging.getLogger("kvsim.profile")
# The notes already said in this process: a table is read more than once a run (the check before the trace loads,
# then each run's compute model; --check-calibration's fits), its note is one line.
_TOLD: set[tuple[str, str]] = set()


def too_few_rows(source: object, table: str, why: str) -> ConfigError:
    """The one wording for a profile table too thin to use: a run's table with a single point (it would price
    every step at that point) and ``--check-calibration``'s table with no point it can check."""
    return ConfigError(f"{source}: too few rows in {table}: {why}")


def require_points(frame: pd.DataFrame, axes: list[str], source: object, table: str, where: str,
                   per: str | None = None) -> None:
    """A table a run interpolates needs at least two distinct points over its ``axes`` (``where``: at the served
    TP degree); with one, every step would be priced at that single measurement, whatever its shape. ``per``:
    the column naming the operators a table times separately (a bundle's ``layer``), each interpolated alone,
    so each needs its two points."""
    groups = frame.groupby(per, sort=True) if per is not None and len(frame) else [(None, frame)]
    for name, rows in groups:
        points = len(rows[axes].drop_duplicates())
        if points < 2:
            whose = f" for {per} {quote(str(name))}" if per is not None else ""
            raise too_few_rows(source, table, f"{points} point{'' if points == 1 else 's'} ({', '.join(axes)}){whose} "
                                              f"{where}; a run interpolates between at least 2")


def read_profile_csv(path: Path, needed: Iterable[str] = (), numeric: Iterable[str] = (), what: str = "",
                     keys: Iterable[str] = (), signed: Iterable[str] = (), positive: Iterable[str] = (),
                     times: dict[str, float] | None = None) -> pd.DataFrame:
    """A profile's CSV table (or Parquet, by its ``.parquet`` suffix): it must parse and have the ``needed`` columns. The columns matching a
    ``numeric`` name or pattern (``time_stats.*``) must hold finite numbers, not below 0 unless ``signed``
    (times, sizes and counts; blank cells allowed: readers drop or interpolate them). The ``keys``
    (the sweep's axes, which rows are looked up by) must be in every row, and whole numbers where numeric;
    the ``positive`` ones at least 1 (a TP degree, a worker count). ``times`` maps the names or patterns of
    the columns holding times to their unit in seconds (``{"time_us": 1e-6}``): none may exceed
    ``MAX_PROFILED_TIME_S``. Header names are read as pandas' ``skipinitialspace`` reads them, and stripped
    (``a, b, c`` is ``a,b,c``). ``what`` names the table in errors."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    kind = f" ({what})" if what else ""
    if Path(path).suffix == ".parquet":  # (AIConfigurator's systems/data tables; the same columns as its CSV)
        frame = _read_parquet(path, kind)
        written = [str(c).strip() for c in frame.columns]
    else:
        try:
            frame = pd.read_csv(path, skipinitialspace=True)
            # the header as written: pandas renames a repeated name (a second 'alpha' is 'alpha.1', the first read)
            header = pd.read_csv(path, skipinitialspace=True, header=None, nrows=1, dtype=str, keep_default_na=False)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{path}{kind}: cannot read it as CSV: {quote(problem)}") from None
        written = [str(c).strip() for c in header.iloc[0].tolist()] if len(header) else []
    names = [str(c).strip() for c in frame.columns]
    twice = sorted({n for n in written if written.count(n) > 1} | {n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}{kind}: column(s) {', '.join(quote(n) for n in twice)} more than once in the header")
    frame.columns = names
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}{kind}: missing column(s) {', '.join(missing)}")

    def refuse(column: str, rows, problem: str) -> ConfigError:
        row = int(np.asarray(rows).argmax())
        value = "" if problem == "missing" else f": {quote(str(frame[column].iloc[row]))}"
        return ConfigError(f"{path}{kind}: row {row + 1} column {column}: {problem}{value}")

    patterns, keys, signed, positive = tuple(numeric), set(keys), set(signed), set(positive)
    for column in [c for c in frame.columns if any(fnmatchcase(str(c), p) for p in patterns)]:
        values = pd.to_numeric(frame[column], errors="coerce")
        present = frame[column].notna().to_numpy()
        for bad, problem in ((values.isna().to_numpy() & present, "not a number"),
                             (present & ~np.isfinite(values.to_numpy(float, na_value=0.0)), "not finite"),
                             (present & (values < 0).to_numpy() & (column not in signed), "negative"),
                             (present & (values < 1).to_numpy() & (column in positive), "below 1"),
                             (present & (values % 1 != 0).to_numpy() & (column in keys), "not a whole number")):
            if bad.any():
                raise refuse(column, bad, problem)
        frame[column] = values
    for pattern, unit_s in (times or {}).items():
        for column in [c for c in frame.columns if fnmatchcase(str(c), pattern)]:
            too_long = (pd.to_numeric(frame[column], errors="coerce") * unit_s > MAX_PROFILED_TIME_S).to_numpy()
            if too_long.any():
                raise refuse(column, too_long,
                             f"longer than an hour ({MAX_PROFILED_TIME_S:g} s), beyond any one operator's time")
    for column in [c for c in frame.columns if c in keys]:
        if frame[column].isna().any():
            raise refuse(column, frame[column].isna().to_numpy(), "missing")
    return frame


# An LLMServingSim bundle's times are microseconds (LLMServingSim docs/docs/profiler/output-bundle.md).
BUNDLE_TIMES = {"time_us": 1e-6, "t_*_us": 1e-6}
# The columns kvsim reads from each table of an LLMServingSim bundle's tpN/ folder (LLMServingSim
# docs/docs/profiler/output-bundle.md): the axes rows are looked up by (keys), then the rest; all but
# ``layer`` hold numbers, none negative but the skew factor ``alpha``.
BUNDLE_KEYS = {
    "dense.csv": ("layer", "tokens"),
    "per_sequence.csv": ("layer", "sequences"),
    "attention.csv": ("prefill_chunk", "n_decode", "kv_decode"),
    "moe.csv": ("tokens", "activated_experts"),
    "skew.csv": ("n", "pc", "kp"),
}
# Key columns a table may have: moe.csv's ``ep``, the expert-parallel degree a grid was measured at (later bundles:
# "the engine ran E/ep local experts and k/ep assignments per token", LLMServingSim docs/docs/profiler/output-bundle.md).
BUNDLE_OPTIONAL_KEYS = {"moe.csv": ("ep",)}
# Columns that pick which rows price a step, where a table has them: attention.csv's kernel (``layer``: each runs once
# a layer) and its speculative-verification query length (``decode_q_len``: rows of 1 are used). A blank one would
# drop its row unseen.
BUNDLE_ROW_KEYS = {"attention.csv": ("layer", "decode_q_len")}
# Columns at least 1 beside the optional keys: a verification length counts the queries a sequence runs (1 without
# speculative decoding); a 0 is no step's, and its rows were set aside with the verification rows unsaid.
BUNDLE_POSITIVE = {"attention.csv": ("decode_q_len",)}
BUNDLE_COLUMNS = {
    "dense.csv": ("layer", "tokens", "time_us"),
    "per_sequence.csv": ("layer", "sequences", "time_us"),
    "attention.csv": ("prefill_chunk", "n_decode", "kv_decode", "time_us"),
    "moe.csv": ("tokens", "activated_experts", "time_us"),
    "skew.csv": ("n", "pc", "kp", "kvs", "kv_big", "kv_mean", "t_mean_us", "t_max_us", "t_skew_us", "alpha"),
}


def _read_parquet(path: Path, kind: str) -> pd.DataFrame:
    """A Parquet table (AIConfigurator stores its collector's tables so), or one exit-2 line naming it: pyarrow raises
    its own error types for a file that is not Parquet (``ArrowInvalid``, a ``ValueError``) or is cut short."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, ImportError) as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}{kind}: cannot read it as Parquet: {quote(problem)}") from None


def read_bundle_table(tp_dir: Path, name: str) -> pd.DataFrame:
    """One table of an LLMServingSim bundle's ``tpN/`` folder, with the columns kvsim reads; a row with a
    blank among them is not used (a blank time would be read as NaN and carried into every step it prices), and
    counted in a note (``unused_rows``).
    A table steps are priced from holds at least two points over its axes (``require_points``; skew.csv's
    shots are fitted, not interpolated)."""
    path = tp_dir / name
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the LLMServingSim bundle")
    columns = BUNDLE_COLUMNS[name]
    optional = BUNDLE_OPTIONAL_KEYS.get(name, ())
    numeric = [c for c in columns if c != "layer"] + list(optional) + \
        (["kv_prefill", "prefill_key", "decode_q_len"] if name == "attention.csv" else [])
    frame = read_profile_csv(path, columns, numeric, "LLMServingSim bundle",
                             keys=(*BUNDLE_KEYS[name], *optional, *BUNDLE_ROW_KEYS.get(name, ())),
                             signed=("alpha",), positive=(*optional, *BUNDLE_POSITIVE.get(name, ())),
                             times=BUNDLE_TIMES)
    frame = frame.drop(index=frame.index[unused_rows(frame, columns, path)])
    if name != "skew.csv":  # (skew.csv's shots are fitted, its t_*_us compared: neither is a kernel's one time)
        _check_measured_once(frame, path)
        require_points(frame, [k for k in BUNDLE_KEYS[name] if k != "layer"], path, name, f"in {tp_dir.name}/",
                       per="layer" if "layer" in BUNDLE_KEYS[name] else None)
    return frame


LAYER_TABLES = ("dense.csv", "attention.csv", "moe.csv")  # the tables pricing a decoder layer's kernels


def _check_measured_once(frame: pd.DataFrame, path: Path) -> None:
    """Each row of a bundle's timing table is one kernel measured at one point: a table of a layer's kernels whose
    every time is 0 (every GPU kernel takes time: an all-zero bundle ran every step in 0 s, exit 0, as Vidur's zero
    layers are refused by ``took_time``; one 0 among measured times may be a rounded sub-microsecond kernel, and is
    kept; per_sequence.csv's LM head and sampler at 0 are the hand bundles' way to isolate the layers), or a second row
    of the same point (every column but the time; the run averaged the two times unsaid, exit 0) is refused, naming
    the rows as the file's other row errors do (``row 1``: the first below the header). The public bundles (the
    RTX 4090 and RTX PRO 6000 ones) hold neither: no point twice, and their least time is 1.85 us."""
    if path.name in LAYER_TABLES and len(frame) and (frame["time_us"] == 0).all():
        raise ConfigError(f"{path}: time_us is 0 in every one of its {len(frame):,} rows (every GPU kernel takes time)")
    point = [c for c in frame.columns if c != "time_us"]
    repeated = frame[frame.duplicated(point, keep=False).to_numpy()]
    seen: dict[tuple, int] = {}
    for row, key in zip(repeated.index, map(tuple, repeated[point].astype(str).to_numpy())):
        if key in seen:
            where = ", ".join(f"{c} {v}" for c, v in zip(point, key))
            raise ConfigError(f"{path}: row {int(row) + 1} measures the point of row {seen[key] + 1} again "
                              f"({where[:100]}): a table times each point once")
        seen[key] = int(row)


def unused_rows(frame: pd.DataFrame, columns: Iterable[str], path: Path, every: bool = False) -> np.ndarray:
    """The positions of ``frame``'s rows with a blank among ``columns`` (``every``: with all of them blank), which a
    reader does not use. They are counted, not dropped silently: one note on standard error per file, ``N of M rows
    not used (blank time_us: N)``, each row counted under its first blank column (in ``columns``' order). A table
    none of whose rows can be used is refused, naming the column blank in most of them (an all-blank column read
    as "no rows for tensor parallel size 1")."""
    columns = list(columns)
    blank = frame[columns].isna().to_numpy()
    rows = np.flatnonzero(blank.all(axis=1) if every else blank.any(axis=1))
    if len(frame) and len(rows) == len(frame):
        column = columns[int(blank.sum(axis=0).argmax())]
        raise ConfigError(f"{path}: no row can be used: column {column} is blank in {int(blank.sum(axis=0).max()):,} "
                          f"of {len(frame):,} rows")
    if len(rows):
        first = blank[rows].argmax(axis=1)
        why = (f"every one of {len(columns)} time columns blank: {len(rows):,}" if every else
               ", ".join(f"blank {columns[c]}: {int((first == c).sum()):,}" for c in sorted(set(first.tolist()))))
        note_once(path, f"{len(rows):,} of {len(frame):,} rows not used ({why})")
    return rows


def note_once(path: Path | str, told: str) -> None:
    """``kvsim: note: PATH: TOLD`` on standard error, once a process (the same file by another path is the same
    note): a table is read more than once a run."""
    if (str(Path(path).resolve()), told) not in _TOLD:
        _TOLD.add((str(Path(path).resolve()), told))
        LOG.warning(f"kvsim: note: {path}: {told}")


def read_profile_yaml(path: Path, what: str) -> dict[str, Any]:
    """A profile's YAML file (a mapping; ``{}`` when empty), read as strictly as a config file."""
    return read_config_file(path, what)
