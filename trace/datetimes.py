"""ISO 8601 arrival times of the CSV traces (Azure's ``TIMESTAMP``): texts to int64 nanoseconds since the epoch (UTC),
with a skip reason per row and whether each row states a zone offset.

A chunk of plain ``YYYY-MM-DD HH:MM:SS[.fraction]`` texts (no zone, or Azure 2024's ``+00:00`` on every one) goes
through pyarrow's parser after a byte-by-byte shape check (``datetime_ns``); any other through pandas' ISO 8601
parser (``parse_datetimes``), whose result the fast path's equals.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from trace.arrow import numpy_view, text_buffers
from trace.validation import CODE

# ``YYYY-MM-DD HH:MM:SS.fffffffff`` byte by byte: the lowest and highest byte allowed at each position
# (position 10, the date/time separator, is checked on its own: a blank or "T").
_DATETIME_LOW = np.frombuffer(b"0000-00-00 00:00:00.000000000", dtype=np.uint8)
_DATETIME_HIGH = np.frombuffer(b"9999-99-99T99:99:99.999999999", dtype=np.uint8)


UTC_SUFFIX = "+00:00"  # the offset every time of Azure's 2024 traces carries (AzureLLMInferenceDataset2024.ipynb)


def datetime_ns(text: pa.Array) -> np.ndarray | None:
    """Nanoseconds since the epoch of ``YYYY-MM-DD HH:MM:SS[.fraction]`` texts (``T`` or a blank
    between date and time, 1-9 fraction digits, no zone or, on every text, ``+00:00``: UTC), through pyarrow's ISO 8601 parser;
    None if any text has another shape or is not a valid time (pyarrow refuses 02-30, 24:00, a
    60th second, years beyond nanosecond timestamps): pandas then decides, so every result is
    pandas' ISO 8601 one."""
    n = len(text)
    if n == 0 or text.null_count:
        return None
    import pyarrow.compute as pc  # ~30 ms to import: only the readers that parse text need it

    if pc.all(pc.ends_with(text, UTC_SUFFIX)).as_py():  # Azure's 2024 traces: every time in UTC, "+00:00"
        text = pc.utf8_slice_codeunits(text, 0, -len(UTC_SUFFIX))
    offsets, data = text_buffers(text)
    lengths = np.diff(offsets)
    for width in ([int(lengths[0])] if lengths.min() == lengths.max() else np.unique(lengths).tolist()):
        if width != 19 and not 21 <= width <= 29:
            return None
        if lengths.min() == lengths.max():  # the usual case: the rows are the buffer's consecutive bytes
            chars = data[offsets[0]:offsets[-1]].reshape(n, width)
        else:
            starts = offsets[:-1][lengths == width]
            chars = np.stack([data[starts + c] for c in range(width)], axis=1)
        separator = chars[:, 10]
        if not (((chars >= _DATETIME_LOW[:width]) & (chars <= _DATETIME_HIGH[:width])).all()
                and ((separator == ord(" ")) | (separator == ord("T"))).all()):
            return None
    try:
        return numpy_view(pc.cast(text, pa.timestamp("ns")))
    except pa.ArrowException:
        return None


_COMMA_FRACTION = r"(?<=\d\d:\d\d:\d\d),(?=\d)"  # the comma between a time's seconds and their fraction


# A zone designator ending an ISO 8601 time (Z, +hh, +hhmm, +hh:mm), looked for past the date's 10 characters (a
# date's own "-dd" is no offset)
_ZONE = r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)\s*$"


def parse_datetimes(raw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch (UTC, int64) of ISO 8601 texts (0 where a text is bad), a reason per row, and
    whether each row's text states a zone offset (a time without one is read as UTC; the loader skips a row whose
    kind is not the first valid row's: ``time_zone_mismatch``)."""
    if isinstance(raw, pa.Array):
        ns = datetime_ns(raw)
        if ns is not None:  # (no text has a zone, or every one "+00:00")
            zoned = np.full(len(ns), raw[0].as_py().endswith(UTC_SUFFIX))
            return ns.astype(np.int64, copy=False), np.zeros(len(ns), dtype=np.int8), zoned
    import pandas as pd

    if isinstance(raw, pa.Array):
        raw = pd.Series(raw.to_numpy(zero_copy_only=False), dtype=str)
    raw = raw.astype(object)
    missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    # ISO 8601 allows a comma before the fraction of a second (as a locale with a decimal comma writes it); pandas
    # reads only the point
    text = raw.where(~missing, None).str.replace(_COMMA_FRACTION, ".", regex=True)
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    # pandas picks the unit from the texts (a chunk of whole seconds parses in seconds), so a time
    # beyond nanosecond timestamps' range (years 1677-2262) would overflow below: it is a bad one.
    utc_min, utc_max = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    parsed = parsed.where((parsed >= utc_min) & (parsed <= utc_max)).dt.as_unit("ns")
    bad = ~missing & parsed.isna().to_numpy()
    reason = np.where(missing, CODE["missing_value"], np.where(bad, CODE["bad_timestamp"], 0)).astype(np.int8)
    arrival = np.where(parsed.isna(), 0, parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    zoned = (reason == 0) & text.str[10:].str.contains(_ZONE, na=False).to_numpy(dtype=bool)
    return arrival, reason, zoned
