"""Vectorised row validation: every bad row gets one named reason, counted, never dropped silently.

Columns arrive in one of three forms: numbers already parsed (numpy arrays, from pyarrow's JSON
reader), text (pyarrow string arrays, from pyarrow's CSV reader) or pandas Series (the exact
reference reader, used where the fast readers cannot decide). Text that is not plain digits
or a plain decimal goes through pandas, so every form gives the same values and reasons.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from sim.errors import TraceError, quote
from trace.arrow import numpy_view

if TYPE_CHECKING:
    import pandas as pd

# Reason codes in the order they are checked; a row is charged its first failing reason.
REASONS = (
    "ok",
    "missing_value",
    "non_numeric",
    "nan_value",
    "infinite_value",  # infinite, or too large for a float ("1e400")
    "negative_value",
    "non_integer",
    "bad_timestamp",
    "zero_input_tokens",
    "empty_hash_ids",
    "bad_hash_ids",
    "hash_ids_length_mismatch",
    "token_ids_length_mismatch",
    "malformed_row",
    "id_out_of_range",  # a hash or token id beyond int64
    "too_many_tokens",  # prompt + output above workload.max_request_tokens
    "time_zone_mismatch",  # a datetime with a zone offset where the first row's has none, or the reverse
    "total_tokens_mismatch",  # BurstGPT: Total tokens is not Request tokens + Response tokens
    "unsupported_request_type",  # Splitwise: a request_type other than generative LLM inference (2)
    "batch_size_not_one",  # Splitwise: a row standing for batch_size sequences, not one
    "failed_request",  # BurstGPT: Response tokens 0, its publisher's mark of a request that failed
)
CODE = {name: i for i, name in enumerate(REASONS)}
# Reasons that name a row its publisher documents as not a served request (BurstGPT's failures): skipped and counted,
# but not bad input, so never --strict-workload-validation's error (BurstGPT_1.csv's 21st row is one)
RECORDED = frozenset({CODE["failed_request"]})

_NAN_WORDS = ("nan", "+nan", "-nan")
_INF_WORDS = ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")


def _plain_digits(raw: pd.Series) -> np.ndarray | None:
    """The values, if every entry of a text column is 1-15 ASCII digits (the common case), else None."""
    if raw.dtype == object or len(raw) == 0:
        return None
    try:
        text = np.asarray(raw.to_numpy(), dtype="S")
    except (UnicodeEncodeError, ValueError, TypeError):
        return None
    width = text.dtype.itemsize
    if width == 0 or width > 15:
        return None
    chars = text.view(np.uint8).reshape(len(text), width)
    digit, pad = (chars >= 48) & (chars <= 57), chars == 0
    if not ((digit | pad).all() and digit[:, 0].all() and not (pad[:, :-1] & digit[:, 1:]).any()):
        return None
    return text.astype(np.int64).astype(np.float64)


def numeric_values(values: np.ndarray, integer: bool = True, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reasons for numbers already parsed (NaN or ``missing`` = absent): float64 values and a reason per row."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if missing is None:
        missing = np.isnan(values)
    finite = np.isfinite(values)
    reason = np.zeros(n, dtype=np.int8)
    for name, mask in (
        ("missing_value", missing),
        ("nan_value", ~missing & np.isnan(values)),
        ("infinite_value", np.isinf(values)),  # infinite, or too large for a float ("1e400")
        ("negative_value", finite & (values < 0)),
        ("non_integer", finite & (values != np.floor(values)) if integer else None),
    ):
        if mask is not None:
            reason[(reason == 0) & mask] = CODE[name]
    return values, reason


_DECIMAL = r"^[0-9]+(\.[0-9]+)?$"


def _numeric_text(text: pa.Array, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """A text column (pyarrow, no nulls): plain digits and plain decimals are converted by pyarrow
    (exact; the same doubles as pandas' parser); anything else goes through pandas, as the
    reference reader would parse it."""
    import pyarrow.compute as pc  # ~30 ms to import: only text columns need it

    if len(text) == 0 or pc.all(pc.ascii_is_decimal(text)).as_py():
        try:
            return numeric_values(numpy_view(pc.cast(text, pa.int64())).astype(np.float64), integer)
        except pa.ArrowException:  # beyond int64: a decimal below
            pass
    if pc.all(pc.match_substring_regex(text, _DECIMAL)).as_py():
        return numeric_values(numpy_view(pc.cast(text, pa.float64())), integer)
    import pandas as pd

    return numeric_column(pd.Series(text.to_numpy(zero_copy_only=False), dtype=str), integer)


def numeric_column(raw: Any, integer: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column that must hold non-negative (integer) numbers: a pandas Series (text or JSON
    values), a pyarrow text array or a numpy array of numbers.

    Returns float64 values (NaN where bad) and a reason code per row (0 = ok).
    """
    if isinstance(raw, np.ndarray):
        return numeric_values(raw, integer)
    if isinstance(raw, pa.Array):
        return _numeric_text(raw, integer)
    import pandas as pd

    n = len(raw)
    digits = None if pd.api.types.is_numeric_dtype(raw.dtype) else _plain_digits(raw)
    if digits is not None:  # fast path: nothing to flag
        return digits, np.zeros(n, dtype=np.int8)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return numeric_values(raw.to_numpy(dtype=np.float64, na_value=np.nan), integer, missing=raw.isna().to_numpy())
    reason = np.zeros(n, dtype=np.int8)
    obj = raw.astype(object)
    absent = obj.isna().to_numpy()
    text = obj.where(~absent, "").astype(str).str.strip()
    missing = absent | (text == "").to_numpy()
    words = text.str.lower()
    nan_word, inf_word = words.isin(_NAN_WORDS).to_numpy(), words.isin(_INF_WORDS).to_numpy()
    # Only JSON columns (object dtype) can hold booleans; CSV text columns never do.
    is_bool = obj.map(lambda v: isinstance(v, bool)).to_numpy(dtype=bool) if raw.dtype == object else np.zeros(n, bool)
    named = nan_word | inf_word
    values = pd.to_numeric(text.where(~(missing | named), None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    non_numeric = (~missing & ~named & np.isnan(values)) | is_bool
    values[non_numeric] = np.nan
    finite = np.isfinite(values)
    infinite = (inf_word | np.isinf(values)) & ~is_bool  # "inf", or a number too large for a float ("1e400")
    nan_value = (nan_word | (~missing & ~non_numeric & ~inf_word & np.isnan(values))) & ~is_bool
    negative = finite & (values < 0)
    non_integer = finite & (values != np.floor(values)) if integer else np.zeros(n, dtype=bool)
    for name, mask in (
        ("missing_value", missing),
        ("non_numeric", non_numeric),
        ("nan_value", nan_value),
        ("infinite_value", infinite),
        ("negative_value", negative),
        ("non_integer", non_integer),
    ):
        reason[(reason == 0) & mask] = CODE[name]
    return values, reason


FLOAT64_EXACT_INTEGERS = 2**53  # every integer below it is a float64; above, a float64 step is 2 or more


def exact_integers(raw: Any, values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """A numeric column as int64 where float64 cannot hold its integers (``values``, ``numeric_column``'s, reach
    2^53: epoch nanoseconds, ~1.7e18, are rounded to 256 ns), so a caller can subtract in integers before it divides;
    else ``values`` as they are. The rows ``ok`` (valid) hold the parsed integers, the others 0; a valid value that is
    no plain integer within int64 (``1.7e18``, a float in JSON) keeps the whole column as ``values``. Each reader's
    form gives the same answer: text through pyarrow where plain digits, else through pandas, as ``numeric_column``;
    numbers already parsed only if integers (the fast JSON reader passes such a chunk to orjson, which keeps them)."""
    finite = values[ok]
    if not len(finite) or float(np.abs(finite).max()) < FLOAT64_EXACT_INTEGERS:
        return values
    out = np.zeros(len(values), dtype=np.int64)
    if isinstance(raw, np.ndarray):
        if not np.issubdtype(raw.dtype, np.signedinteger):  # uint64: a value past int64 would wrap negative
            return values
        out[ok] = raw[ok]
        return out
    if isinstance(raw, pa.Array):
        import pyarrow.compute as pc

        text = pc.filter(raw, pa.array(ok))
        if pc.all(pc.ascii_is_decimal(text)).as_py():
            try:
                out[ok] = numpy_view(pc.cast(text, pa.int64()))
                return out
            except pa.ArrowException:  # beyond int64
                return values
        import pandas as pd

        raw = pd.Series(raw.to_numpy(zero_copy_only=False), dtype=str)
    import pandas as pd

    kept = raw[ok]
    if pd.api.types.is_signed_integer_dtype(kept.dtype):  # not uint64 (2^63 wrapped to -2^63: a negative span)
        out[ok] = kept.to_numpy(dtype=np.int64)
        return out
    if pd.api.types.is_float_dtype(kept.dtype):
        return values
    # text, or JSON values (Python ints and floats): integers only if every one reads as an int64
    parsed = pd.to_numeric(kept.astype(str).str.strip(), errors="coerce")
    if not pd.api.types.is_signed_integer_dtype(parsed.dtype):
        return values
    out[ok] = parsed.to_numpy(dtype=np.int64)
    return out


def combine(*reasons: np.ndarray) -> np.ndarray:
    """First non-zero reason per row, in argument (column) order."""
    out = np.zeros(len(reasons[0]), dtype=np.int8)
    for r in reasons:
        out = np.where(out == 0, r, out)
    return out


class SkipLedger:
    """Counts skipped rows per reason; in strict mode the first bad row is an error.

    ``line_of_row`` maps a row number to the file line it starts on, for readers that do not
    track lines themselves (CSV: blank lines and quoted newlines make them differ). ``explain`` maps a
    reason to a function of the file line that says more about it in strict mode's error (JSONL: what
    a malformed line is instead of one JSON object).
    """

    def __init__(self, path: str, strict: bool, row_label: str = "row",
                 line_of_row: Callable[[int], int | None] | None = None):
        self.path = path
        self.strict = strict
        self.row_label = row_label
        self.line_of_row = line_of_row
        self.explain: dict[str, Callable[[int | None], str | None]] = {}
        self.counts: Counter[str] = Counter()

    def charge(self, reason: np.ndarray, first_row: int, columns: list[str | None], column_reasons: list[np.ndarray],
               lines: np.ndarray | None = None) -> None:
        """Record reasons of a chunk whose first row has 1-based number ``first_row``; ``lines`` holds
        each row's file line when the reader knows it."""
        bad = np.flatnonzero(reason)
        if len(bad) == 0:
            return
        errors = bad[~np.isin(reason[bad], list(RECORDED))] if self.strict else bad
        if self.strict and len(errors):
            i = int(errors[0])
            name = REASONS[int(reason[i])]
            column = next((c for c, r in zip(columns, column_reasons, strict=True) if r[i] == reason[i]), None)
            where = f" column {quote(column)}" if column else ""
            row = first_row + i
            line = int(lines[i]) if lines is not None else self.line_of_row(row) if self.line_of_row else None
            at = f" (line {line})" if line is not None else ""
            detail = self.explain[name](line) if name in self.explain else None
            raise TraceError(f"{self.path}: {self.row_label} {row}{at}{where}: {name.replace('_', ' ')}"
                             + (f": {detail}" if detail else ""))
        codes, counts = np.unique(reason[bad], return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            self.counts[REASONS[int(code)]] += int(count)

    def add(self, name: str, count: int = 1) -> None:
        self.counts[name] += count

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def no_usable_requests(source: str, rows_read: int, skip_reasons: Mapping[str, int], after: str = "",
                       range_dropped: Mapping[str, int] | None = None) -> TraceError:
    """The error for a workload left with no request: every mode needs at least one. ``range_dropped``: the
    requests each range setting left out (``TraceProvenance.range_dropped``), named so they are not a mystery."""
    top = sorted(skip_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{name}: {count:,}" for name, count in top[:3]) + (", ..." if len(top) > 3 else "")
    skipped = sum(skip_reasons.values())
    ranged = "".join(f", {count:,} dropped by {setting}" for setting, count in (range_dropped or {}).items())
    why = f", {skipped:,} skipped ({listed})" if skipped else ""
    return TraceError(f"no valid requests in {source}{after}: {rows_read:,} rows read{ranged}{why}")
