"""Network models: how long bytes take between two endpoints, alone or sharing a link.

``NetworkModel.isolated_time(nbytes)`` is the time of one transfer with the link to
itself: ``AnalyticNetwork`` is latency + bytes / bandwidth; ``LookupNetwork`` reads a
bytes → seconds table (e.g. NS-3 packet-level results) and interpolates linearly
between measured sizes, extending the last segment past the largest one.

``Link`` adds contention: concurrent transfers share it max-min fairly (on one link,
equal shares), re-timed whenever a transfer starts or ends. Each transfer needs its
serialization (``isolated_time(nbytes)`` less the model's fixed latency) of the whole
link (a processor-sharing server), then its latency, a delay no other transfer shares:
two equal transfers started together both finish after twice the serialization plus
one latency (as ``sim.serving.paths``' paths do). A lookup table's times are all
serialization (its latency is not separable from them).
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from sim.config import MIN_GBPS, NetworkConfig
from sim.errors import ConfigError
from sim.json_input import unique_keys
from sim.serving.engine import Engine
from sim.serving.profile_files import MAX_PROFILED_TIME_S

MIB = 1 << 20


class NetworkModel(Protocol):
    name: str

    def isolated_time(self, nbytes: float) -> float: ...


@dataclass(frozen=True)
class AnalyticNetwork:
    """latency + bytes / bandwidth."""

    bandwidth: float  # bytes/s
    latency: float = 0.0  # s
    name: str = "analytic"

    def isolated_time(self, nbytes: float) -> float:
        return self.latency + nbytes / self.bandwidth if nbytes > 0 else 0.0


@dataclass(frozen=True)
class LookupNetwork:
    """Measured transfer times, interpolated (and extrapolated linearly) over size."""

    sizes: np.ndarray  # bytes, increasing
    times: np.ndarray  # seconds
    source: str
    name: str = "lookup"

    def isolated_time(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        s, t = self.sizes, self.times
        if nbytes >= s[-1]:
            slope = (t[-1] - t[-2]) / (s[-1] - s[-2])
            return float(t[-1] + (nbytes - s[-1]) * slope)
        if nbytes <= s[0]:
            # below the smallest size: the line through the two smallest rows, as above the largest the two largest
            # rows' (a link's latency + bytes / bandwidth keeps its latency), never below the origin's line
            through_origin = t[0] * nbytes / s[0]
            if len(s) < 2:
                return float(through_origin)
            slope = (t[1] - t[0]) / (s[1] - s[0])
            return float(max(through_origin, t[0] - (s[0] - nbytes) * slope))
        return float(np.interp(nbytes, s, t))

    @classmethod
    def from_json(cls, path: str | Path) -> "LookupNetwork":
        """A table in the NS-3 overlay format: ``{"rows": [{"size_mib": x, "ns3_ms": y}, ...]}``.

        Also accepted per row: ``size_bytes`` instead of ``size_mib``, ``time_s`` or ``time_ms`` instead of ``ns3_ms``,
        or several of them when they agree (``UNITS``).
        """
        path = Path(path)
        try:
            # (utf-8-sig: a byte-order mark, as Windows editors write, passes as it does in a trace, a YAML file or
            # a config.json; JSON's RFC 8259 section 8.1 lets a parser ignore it. It was refused 'Unexpected UTF-8 BOM
            # (decode using utf-8-sig)')
            data = json.loads(path.read_text(encoding="utf-8-sig"),
                              object_pairs_hook=unique_keys(f"network lookup table {path}", ConfigError))
        except RecursionError:
            raise ConfigError(f"network lookup table {path}: cannot read it as JSON: nested too deep") from None
        except (OSError, ValueError) as exc:
            raise _not_a_table(path, f"cannot read it as JSON: {str(exc)[:100]}") from None
        rows = data.get("rows") if isinstance(data, dict) else None
        if not rows or not isinstance(rows, list):
            raise _not_a_table(path, "expected a 'rows' list", data)
        _check_metadata(path, data)
        sizes, times = [], []
        for i, row in enumerate(rows):
            given = [[k for k in keys if isinstance(row, dict) and k in row] for keys in (SIZE_KEYS, TIME_KEYS)]
            if not isinstance(row, dict) or not all(given):
                raise ConfigError(f"network lookup table {path}: row {i} needs size_mib|size_bytes and ns3_ms|time_ms|time_s")
            _check_row_notes(path, i, row)
            size_key, time_key = given[0][0], given[1][0]
            sizes.append(_row_value(path, i, row, given[0], "size"))
            times.append(_row_value(path, i, row, given[1], "time"))
            if not 1 <= sizes[-1] < math.inf:  # (less than a byte is no transfer: 1e-300 bytes stalled the clock)
                raise ConfigError(f"network lookup table {path}: row {i} {size_key} must be a byte or more (and "
                                  f"finite), got {row[size_key]!r}")
            if times[-1] > MAX_PROFILED_TIME_S:  # a measured transfer beyond an hour is not one
                raise ConfigError(f"network lookup table {path}: row {i} {time_key} {row[time_key]!r} is longer than an hour")
        _check_line_rate(path, data, sizes, times)
        order = np.argsort(sizes, kind="stable")
        sizes_arr, times_arr = np.array(sizes)[order], np.array(times)[order]
        _check_order(path, order, sizes_arr, times_arr)
        # beyond the largest size the last two rows' slope goes on: it must be a network's, as network.bandwidth_gbps
        # must (1 byte and 2 bytes an hour apart priced a KV transfer at 200,000 years)
        extrapolated = (sizes_arr[-1] - sizes_arr[-2]) / max(times_arr[-1] - times_arr[-2], 1e-300)
        if extrapolated * 8 / 1e9 < MIN_GBPS:
            raise ConfigError(f"network lookup table {path}: its two largest sizes ({sizes_arr[-2]:.6g} and "
                              f"{sizes_arr[-1]:.6g} bytes) imply {extrapolated * 8 / 1e6:.3g} Mb/s for larger "
                              f"transfers, below the {MIN_GBPS * 1e3:g} Mb/s of the slowest network kvsim models")
        return cls(sizes_arr, times_arr, source=str(path))


# What a table may say beside its rows, none of it read: the notes tools/ns3_kv_timing.py writes (its link's
# parameters, the ns-3 run) and the bundled SimAI table's (_source, bandwidth_gbps). A key of another name is a typo or
# another file's, refused rather than ignored; the numbers a reader would take as the link's are checked.
TABLE_TEXT_KEYS = ("_source", "scenario", "ns3_version", "created", "command")
TABLE_KEYS = ("rows", *TABLE_TEXT_KEYS, "bandwidth_gbps", "parameters", "setup_wall_s", "total_wall_s", "incast")
# a row's notes beside its size and time: the SimAI table's size / bandwidth (simple_ms), the tool's TCP handshake
# and the wall time it took (handshake_s, wall_s)
ROW_NOTE_KEYS = ("simple_ms", "handshake_s", "wall_s")


def _check_metadata(path: Path, data: dict) -> None:
    """The keys beside ``rows``: known ones only (``TABLE_KEYS``), text as text, a bandwidth (the table's, or its link
    parameters') a network's (``network.bandwidth_gbps``' domain), wall times finite numbers >= 0, the numbers of
    its parameters and incast rows too (``_check_note_numbers``)."""
    where = f"network lookup table {path}"
    unknown = [key for key in data if key not in TABLE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {str(unknown[0])[:40]!r} (a table has rows and, as notes, "
                          f"{', '.join(TABLE_KEYS[1:])})")
    for key in TABLE_TEXT_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: key {key!r} must be text, got {str(data[key])[:40]!r}")
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ConfigError(f"{where}: key 'parameters' must be an object of the link's settings")
    if not isinstance(data.get("incast", []), list):
        raise ConfigError(f"{where}: key 'incast' must be a list of rows")
    for key, value in _stated_bandwidths(data):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and MIN_GBPS <= value < math.inf):
            raise ConfigError(f"{where}: key {key!r} must be a bandwidth of {MIN_GBPS:g} Gb/s or more, got "
                              f"{str(value)[:40]!r}")
    for key in ("setup_wall_s", "total_wall_s"):
        if key in data:
            _table_number(path, None, key, data[key])
    for i, row in enumerate(data.get("incast", [])):
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: incast row {i} must be an object (senders, size_mib, flow_times_s, ...), "
                              f"got {str(row)[:40]!r}")
        _check_note_numbers(path, f"incast[{i}]", row, POSITIVE_INCAST_NOTES)
    _check_note_numbers(path, "parameters", parameters, POSITIVE_PARAMETERS)


# The notes tools/ns3_kv_timing.py writes that are sizes, times or counts it refuses at zero (its _validate: an MTU, a
# segment, a buffer, a timer; an incast point's senders and transfer): where a table gives one, a number above zero.
POSITIVE_PARAMETERS = ("mtu", "segment_bytes", "socket_buffer_bytes", "min_rto_ms", "delayed_ack_ms",
                       "switch_buffer_bytes")
POSITIVE_INCAST_NOTES = ("senders", "size_mib", "size_bytes", "isolated_s")


def _check_note_numbers(path: Path, name: str, value: object, positive: tuple[str, ...] = ()) -> None:
    """Every number in a table's notes (its link ``parameters``, its ``incast`` rows; in nested objects and lists too)
    a finite number >= 0 (``_table_number``), and those of ``positive`` (keys of ``value``) numbers above zero: each is
    a size, a time, a count or a ratio of them (tools/ns3_kv_timing.py writes no other), so a negative, NaN or text one
    is a hand edit or another file's, though kvsim reads none of them. Text, true/false and null (an unfinished flow's
    time) pass elsewhere."""
    if isinstance(value, dict):
        for key in positive:
            item = value.get(key, 1)
            if not (isinstance(item, (int, float)) and not isinstance(item, bool) and item > 0):
                raise ConfigError(f"network lookup table {path}: {name}.{key} must be a number above zero, got "
                                  f"{str(item)[:40]!r}")
        for key, item in value.items():
            _check_note_numbers(path, f"{name}.{str(key)[:40]}", item)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _check_note_numbers(path, f"{name}[{k}]", item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _table_number(path, None, name[:80], value)


# A packet-level simulation moves a transfer's bytes no faster than its link's line rate (headers and the TCP
# handshake only slow it): a row past the bandwidth its table states is a unit slip (seconds as milliseconds) or a
# bandwidth note of another link. Past it by the rounding a table prints: SimAI's gives 1 MiB at 100 Gb/s (0.0839 ms
# at the line rate) as simple_ms 0.08, 4.9% over; 10% leaves that and more.
LINE_RATE_SLACK = 1.10


def _check_line_rate(path: Path, data: dict, sizes: list[float], times: list[float]) -> None:
    """Each row's bytes / time at most the table's ``bandwidth_gbps`` (or its ``parameters.bandwidth_gbps``, the link
    tools/ns3_kv_timing.py simulated) x ``LINE_RATE_SLACK``, where the table states one."""
    for key, gbps in _stated_bandwidths(data):
        for i, (size, seconds) in enumerate(zip(sizes, times)):
            if size * 8 > gbps * 1e9 * seconds * LINE_RATE_SLACK:
                rate = f"{size * 8 / seconds / 1e9:.4g} Gb/s" if seconds > 0 else "no time"
                raise ConfigError(f"network lookup table {path}: row {i} moves {size:.10g} bytes in {seconds:.6g} s "
                                  f"({rate}), faster than its {key} {gbps:g} Gb/s: a time in another unit, or "
                                  "another link's bandwidth")


def _stated_bandwidths(data: dict) -> list[tuple[str, object]]:
    """The bandwidths a table states, by key: its own ``bandwidth_gbps`` and its link parameters' (the link
    tools/ns3_kv_timing.py simulated), where given (``parameters`` checked to be a mapping first)."""
    stated = (("bandwidth_gbps", data.get("bandwidth_gbps")),
              ("parameters.bandwidth_gbps", data.get("parameters", {}).get("bandwidth_gbps")))
    return [(key, value) for key, value in stated if value is not None]


def _check_row_notes(path: Path, index: int, row: dict) -> None:
    """A row's keys: its size and time (``UNITS``) and the notes of ``ROW_NOTE_KEYS``, each a finite number >= 0."""
    for key, value in row.items():
        if key in ROW_NOTE_KEYS:
            _table_number(path, index, key, value)
        elif key not in UNITS:
            raise ConfigError(f"network lookup table {path}: row {index} has unknown key {str(key)[:40]!r} (a row "
                              f"gives {'|'.join(SIZE_KEYS)} and {'|'.join(TIME_KEYS)}; notes: "
                              f"{', '.join(ROW_NOTE_KEYS)})")


def _check_order(path: Path, order: np.ndarray, sizes: np.ndarray, times: np.ndarray) -> None:
    """Two or more distinct sizes, times non-decreasing with size; a break names its two rows (file order)."""
    if len(sizes) < 2:
        raise ConfigError(f"network lookup table {path}: needs two or more distinct sizes, got {len(sizes)} row")
    for k in range(1, len(sizes)):
        a, b = sorted((int(order[k - 1]), int(order[k])))
        if sizes[k] == sizes[k - 1]:
            raise ConfigError(f"network lookup table {path}: rows {a} and {b} both give the size {sizes[k]:.10g} bytes "
                              f"({sizes[k] / MIB:.6g} MiB): give each size once")
        if times[k] < times[k - 1]:
            small, large = int(order[k - 1]), int(order[k])
            raise ConfigError(f"network lookup table {path}: row {large} ({sizes[k]:.10g} bytes) takes less time than "
                              f"row {small} ({sizes[k - 1]:.10g} bytes): times must not decrease as sizes grow")


def _not_a_table(path: Path, why: str, data: object = None) -> ConfigError:
    """A file that is not an NS-3 table: named as the kvsim input it is, when it is one (a trace, a config overlay:
    ``sim.file_kinds``), else ``why``."""
    from sim.file_kinds import other_kind

    return ConfigError(f"network lookup table {path}: {other_kind(path, 'ns3', data) or why}")


# A lookup table row's size and time, each under one or more of these keys (unit: a multiplier and a divisor to bytes
# or seconds). tools/ns3_kv_timing.py writes each in two units; those must agree, else which one the table means is
# not the reader's to guess (the first was read, unsaid: 1 ms a row read as 5 s).
UNITS = {"size_mib": (MIB, 1), "size_bytes": (1, 1), "ns3_ms": (1, 1e3), "time_ms": (1, 1e3), "time_s": (1, 1)}
SIZE_KEYS = ("size_bytes", "size_mib")  # in this order of preference (the value read when several agree)
TIME_KEYS = ("time_s", "time_ms", "ns3_ms")
AGREEMENT = 1e-6  # relative: a size in bytes rounds its MiB to a whole byte (tools/ns3_kv_timing.py), a time is exact


def _row_value(path: Path, row_index: int, row: dict, keys: list[str], what: str) -> float:
    """A row's size (bytes) or time (s) from its ``keys`` (each checked by ``_table_number``), which must agree."""
    values = [_table_number(path, row_index, key, row[key]) * UNITS[key][0] / UNITS[key][1] for key in keys]
    first = values[0]
    for key, value in zip(keys[1:], values[1:]):
        if abs(value - first) > AGREEMENT * max(abs(first), abs(value)):
            raise ConfigError(f"network lookup table {path}: row {row_index} {keys[0]} {row[keys[0]]!r} and {key} "
                              f"{row[key]!r} disagree: give one {what} a row, or both in agreement")
    return first


def _table_number(path: Path, row: int | None, key: str, value: object) -> float:
    """A lookup table's size or time (or another number of it: ``row`` None, a key beside the rows): a finite number
    >= 0 (JSON allows NaN and Infinity, Python any integer)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e308 else math.inf
        if math.isfinite(number) and number >= 0:
            return number
    where = f"row {row} {key}" if row is not None else f"key {key!r}"
    raise ConfigError(f"network lookup table {path}: {where} must be a finite number >= 0, got {str(value)[:40]!r}")


def network_model(config: NetworkConfig) -> NetworkModel:
    """The lookup table when ``network.lookup`` is set, else the analytic model."""
    if config.lookup:
        return LookupNetwork.from_json(config.lookup)
    return AnalyticNetwork(bandwidth=config.bandwidth_gbps * 1e9 / 8, latency=config.latency_us * 1e-6)


def latency_of(model: NetworkModel) -> float:
    """A link model's fixed one-way latency, seconds: an analytic link's; a lookup table's measured times are taken
    whole as its serialization (their latency is not separable from them)."""
    return float(getattr(model, "latency", 0.0))


def serialization_time(model: NetworkModel, nbytes: float) -> float:
    """Seconds ``nbytes`` occupy a link alone, its latency aside."""
    return max(0.0, model.isolated_time(nbytes) - latency_of(model)) if nbytes > 0 else 0.0


def write_back_done(elapsed: float, chunk: float, backlog: float) -> float:
    """Seconds of a device's write-back of ``backlog`` seconds done once the write in service ``elapsed`` seconds into
    it ends: whole writes of ``chunk`` seconds (0: none uninterruptible, ``elapsed``), at most the backlog. A read or
    a transfer waits for that much (``Tier.reserve_read``, ``Link.occupy``)."""
    done = math.ceil(elapsed / chunk) * chunk if chunk > 0 else elapsed
    return min(done, backlog)


class Link:
    """One link shared max-min fairly by concurrent transfers (processor sharing).

    Kept in *virtual time*: ``_virtual`` is the service each active transfer has received,
    growing at 1/n per second while n transfers share the link. A transfer's finish tag
    (virtual time at start + its isolated time) is fixed when it starts, so no remaining
    work is ever re-subtracted and rounding cannot accumulate. The completion event sets
    virtual time to the head tag itself, so at least one transfer finishes each time,
    whatever the magnitude of simulated time (an absolute epsilon is below one ulp of
    ``now`` past 2^14 s and made the completion event reschedule itself forever).
    """

    def __init__(self, engine: Engine, model: NetworkModel, shared: bool = True):
        self.engine = engine
        self.model = model
        self.shared = shared
        self._tags: list[tuple[float, int]] = []  # heap of (finish tag, transfer id)
        self._done: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self._virtual = 0.0
        self._last = 0.0
        self._version = 0
        # a device's write-back (``write_back``): one stream served while no transfer is active; ``_backlog``
        # seconds of it left at ``_backlog_from`` (its chunks' origin) while ``_draining``, else paused
        self.write_chunk = 0.0  # seconds of one write a transfer waits for if it is in service (0: none)
        self._backlog = 0.0
        self._backlog_from = 0.0
        self._draining = True
        self._held: list[tuple[float, Callable[[float], None], float]] = []  # transfers waiting for a write chunk

    @property
    def active(self) -> int:
        return len(self._tags)

    def send(self, nbytes: float, on_done: Callable[[float], None]) -> None:
        """Start a transfer now; ``on_done(duration)`` runs when its last byte arrives."""
        self.occupy_share(nbytes, 1.0, on_done)

    def occupy_share(self, nbytes: float, share: float, on_done: Callable[[float], None]) -> None:
        """The last ``share`` of a transfer of ``nbytes`` (the part a layerwise transfer's compute did not hide):
        that share of its serialization sharing the link from now, then that share of the latency, unshared; its
        bytes are counted by the caller."""
        delay = share * latency_of(self.model)
        if delay <= 0 or nbytes <= 0:
            self.occupy(share * serialization_time(self.model, nbytes), on_done)
            return
        start = self.engine.now

        def serialized(_duration: float) -> None:
            self.engine.after(delay, lambda: on_done(self.engine.now - start))

        self.occupy(share * serialization_time(self.model, nbytes), serialized)

    def write_back(self, service: float) -> None:
        """A device's writes of ``service`` seconds join its write-back: one stream, whatever the number of writes,
        served only while no transfer is active (reads first, as ``Tier.charge_writes`` says why); a transfer that
        starts while a write is in service waits for it (``write_chunk`` at most), never for the backlog. Nobody
        waits for the writes themselves. On a link without contention (``shared`` off) they take no transfer's time."""
        if not self.shared or service <= 0:
            return
        now = self.engine.now
        if self._draining and self._backlog_from + self._backlog <= now:  # drained before: a new backlog starts
            self._backlog_from, self._backlog = now, service
        else:
            self._backlog += service

    def occupy(self, service: float, on_done: Callable[[float], None]) -> None:
        """Start work that would take ``service`` seconds alone (a transfer) now: at once, or, where a device's
        write is in service (``write_back``), when it ends."""
        start = self.engine.now
        if not self.shared:
            self.engine.after(service, on_done, service)
            return
        if self._held:
            self._held.append((service, on_done, start))
            return
        if self._draining:  # idle: the write-back pauses for this transfer, once its write in service is done
            self._draining = False
            elapsed = start - self._backlog_from
            chunk = self.write_chunk
            if 0.0 < elapsed < self._backlog and chunk > 0:
                done = write_back_done(elapsed, chunk, self._backlog)
                self._backlog -= done
                self._held.append((service, on_done, start))
                self.engine.after(done - elapsed, self._release)
                return
            self._backlog = max(0.0, self._backlog - max(0.0, elapsed))
        self._start(service, on_done, start)

    def _release(self) -> None:
        """The write in service is done: the transfers that waited for it start."""
        held, self._held = self._held, []
        for service, on_done, start in held:
            self._start(service, on_done, start)

    def _start(self, service: float, on_done: Callable[[float], None], start: float) -> None:
        self._advance()
        tid = self._next_id
        self._next_id += 1
        heapq.heappush(self._tags, (self._virtual + service, tid))
        self._done[tid] = lambda: on_done(self.engine.now - start)
        self._reschedule()

    def _advance(self) -> None:
        """Virtual time gained since the last change: elapsed time over the active transfers."""
        now = self.engine.now
        if self._tags:
            self._virtual += (now - self._last) / len(self._tags)
        else:
            self._virtual = 0.0  # idle: restart virtual time (keeps its magnitude small)
        self._last = now

    def _reschedule(self) -> None:
        self._version += 1
        if self._tags:
            head = self._tags[0][0]
            self.engine.after(max(0.0, head - self._virtual) * len(self._tags), self._complete, self._version)

    def _complete(self, version: int) -> None:
        if version != self._version:
            return  # superseded by a later start
        self._advance()
        tags = self._tags
        self._virtual = max(self._virtual, tags[0][0])  # this event is the head's finish: never short of it
        finished = []
        while tags and tags[0][0] <= self._virtual:
            finished.append(heapq.heappop(tags)[1])
        finished.sort()
        callbacks = [self._done.pop(tid) for tid in finished]
        self._reschedule()
        if not tags:  # idle: the write-back drains from now
            self._draining, self._backlog_from = True, self.engine.now
        for callback in callbacks:
            callback()
