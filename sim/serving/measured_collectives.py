"""Measured collective times behind ``CollectiveModel``: ``MeasuredCollectives`` interpolates them over size and
prices what was not measured (a collective, a group size) with the analytic ring (``sim.serving.collectives``).

Three sources, read as their tools write them: a Vidur network profile (``all_reduce.csv``, ``send_recv.csv``), the
NCCL samples of an LLMServingSim ``hardware.yaml`` (``bundle_hardware_yaml`` finds one above a bundle), and NVIDIA
AIConfigurator's tables (``sim.serving.aic_collectives``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.errors import ConfigError
from sim.serving.aic_collectives import aiconfigurator_rows
from sim.serving.collectives import COLLECTIVES, RingCollectives
from sim.serving.profile_files import (
    MAX_PROFILED_TIME_S,
    read_profile_csv,
    read_profile_yaml,
    too_few_rows,
    unused_rows,
)
from sim.serving.profile_grid import interpolate

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class MeasuredCollectives:
    """Measured collective times, interpolated over size; the ring model for collectives or group sizes not measured.

    ``tables[(collective, ranks)] = (sizes, seconds)``; ``ranks`` None means "measured on the TP
    group in use" (samples that do not record their group size). Sizes are the collective's input on one
    rank, as LLMServingSim's profiler records them (profiler/core/hardware.py: "AllReduce input, AllGather
    local input, or ReduceScatter local output"): an all-gather or a reduce-scatter of ``nbytes`` in all is
    looked up at ``nbytes / ranks``. Below the smallest measured size the smallest's time is used (a
    collective's latency floor), above the largest the last segment is extended.
    """

    tables: dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]]
    fallback: RingCollectives
    source: str
    name: str = "measured"
    ring_all_reduce: bool = True  # the all-reduces were NCCL's ring (half of one prices an all-gather of its size)

    def covers(self, collective: str, ranks: int) -> bool:
        return (collective, ranks) in self.tables or (collective, None) in self.tables

    def _measured(self, collective: str, ranks: int, nbytes: float) -> float | None:
        table = self.tables.get((collective, ranks)) or self.tables.get((collective, None))
        return None if table is None else interpolate(table[0], table[1], nbytes)

    def all_reduce(self, nbytes: float, ranks: int) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        measured = self._measured("all_reduce", ranks, nbytes)
        return self.fallback.all_reduce(nbytes, ranks) if measured is None else measured

    def all_gather(self, nbytes: float, ranks: int) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        measured = self._measured("all_gather", ranks, nbytes / ranks)  # (each rank's share in)
        if measured is None and self.ring_all_reduce:  # a ring all-reduce: a reduce-scatter and an all-gather
            reduce = self._measured("all_reduce", ranks, nbytes)
            measured = None if reduce is None else reduce / 2
        return self.fallback.all_gather(nbytes, ranks) if measured is None else measured

    def reduce_scatter(self, nbytes: float, ranks: int) -> float:
        """Measured at one rank's output (``nbytes / ranks``, as the profiler records it); not measured, as the
        all-gather of the same size (a ring's same steps)."""
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        measured = self._measured("reduce_scatter", ranks, nbytes / ranks)
        return self.all_gather(nbytes, ranks) if measured is None else measured

    def send_recv(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        measured = self._measured("send_recv", 2, nbytes)
        return self.fallback.send_recv(nbytes) if measured is None else measured

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, fallback: RingCollectives, used_ranks: frozenset[int] | None = None,
             ) -> "MeasuredCollectives":
        """A Vidur network profile directory (``all_reduce.csv``, ``send_recv.csv``), an LLMServingSim
        ``hardware.yaml`` or an AIConfigurator ``custom_allreduce_perf`` or ``nccl_perf`` table; ``used_ranks``: the group sizes a run
        reads (the others' tables are left unread, and unchecked), None: every group (``--check-calibration`` judges
        them all)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_vidur(path, fallback, used_ranks)
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            return cls.from_hardware_yaml(path, fallback, used_ranks)
        if path.is_file() and path.suffix in (".txt", ".csv", ".parquet"):
            return cls.from_aiconfigurator(path, fallback, used_ranks)
        raise ConfigError(f"compute.collectives {path}: neither a Vidur network profile directory "
                          "(all_reduce.csv, send_recv.csv), an LLMServingSim hardware.yaml nor an AIConfigurator "
                          "custom_allreduce_perf or nccl_perf table (.parquet, or its collector's .txt)")

    @classmethod
    def from_vidur(cls, directory: Path, fallback: RingCollectives, used_ranks: frozenset[int] | None = None,
                   ) -> "MeasuredCollectives":
        """Vidur's collective profiles: ``time_stats.<collective>.median`` (ms) over ``size`` (bytes) per ``num_workers``.

        Only rows with all workers on one node (``devices_per_node == num_workers``, as Vidur's own
        predictor selects for TP all-reduces and intra-node sends) are used: a TP group is one node's GPUs.
        """
        tables: dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]] = {}
        found = 0  # groups in the files (a run reads those of its own group sizes)
        for collective in ("all_reduce", "send_recv"):
            path = directory / f"{collective}.csv"
            if not path.is_file():
                continue
            for ranks, frame in vidur_collective_rows(path, collective).groupby("num_workers"):
                found += 1
                if used_ranks is None or int(ranks) in used_ranks:
                    tables[(collective, int(ranks))] = _size_curve(frame, path, collective, int(ranks))
        if not found:
            raise ConfigError(f"compute.collectives {directory}: no all_reduce.csv or send_recv.csv rows with "
                              "all workers on one node")
        return cls(tables, fallback, str(directory))

    @classmethod
    def from_hardware_yaml(cls, path: Path, fallback: RingCollectives, used_ranks: frozenset[int] | None = None,
                           ) -> "MeasuredCollectives":
        """NCCL samples of an LLMServingSim ``hardware.yaml``: ``measured.interconnect.samples`` of
        ``{collective, bytes, us[, ranks]}``; samples without ``ranks`` were measured on the TP group in use."""
        import pandas as pd  # here only: a run that reads no table never loads pandas
        data = read_profile_yaml(path, "compute.collectives file")
        samples = ((data.get("measured") or {}).get("interconnect") or {}).get("samples") or []
        rows: dict[tuple[str, int | None], list[tuple[float, float]]] = {}
        for i, sample in enumerate(samples):
            try:
                key = (str(sample["collective"]), int(sample["ranks"]) if sample.get("ranks") is not None else None)
                rows.setdefault(key, []).append((float(sample["bytes"]), float(sample["us"]) * 1e-6))
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"{path}: interconnect sample {i} needs collective, bytes and us") from None
            size, seconds = rows[key][-1]  # (as a table's: read_profile_csv; a NaN ran NaN steps, exit 1)
            if not (0 <= size < np.inf and 0 <= seconds <= MAX_PROFILED_TIME_S):
                raise ConfigError(f"{path}: interconnect sample {i}: bytes {sample['bytes']!r} and us {sample['us']!r} "
                                  f"must be numbers from 0, us at most an hour ({MAX_PROFILED_TIME_S:g} s)")
        tables = {}
        known = [key for key in rows if key[0] in COLLECTIVES]
        for key in known:
            if key[1] is None or used_ranks is None or key[1] in used_ranks:
                tables[key] = _size_curve(pd.DataFrame(rows[key], columns=["size", "seconds"]), path, *key)
        if not known:
            raise ConfigError(f"{path}: no measured.interconnect.samples of {', '.join(COLLECTIVES)}")
        return cls(tables, fallback, str(path))

    @classmethod
    def from_aiconfigurator(cls, path: Path, fallback: RingCollectives, used_ranks: frozenset[int] | None = None,
                            ) -> "MeasuredCollectives":
        """NVIDIA AIConfigurator's measured collectives (``sim.serving.aic_collectives``): the serving engine's own
        all-reduce as it dispatches it (``custom_allreduce_perf``), or NCCL's all-reduce, all-gather and
        reduce-scatter (``nccl_perf``), ``latency`` (ms) over ``message_size`` (elements) per ``num_gpus``."""
        rows, engine = aiconfigurator_rows(path)
        tables = {(c, int(ranks)): _size_curve(group, path, c, int(ranks))
                  for (c, ranks), group in rows.groupby(["collective", "ranks"])
                  if used_ranks is None or int(ranks) in used_ranks}
        return cls(tables, fallback, str(path), ring_all_reduce=not engine)  # (an engine's kernels: not a ring)


def _size_curve(rows: pd.DataFrame, path: Path, collective: str, ranks: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A collective's mean time (``seconds``) per measured ``size``, which a run interpolates: one size would price
    every collective of any size at its time, so at least two are needed (a compute table of one point is refused
    alike, ``profile_files.require_points``)."""
    curve = rows.groupby("size")["seconds"].mean()
    if len(curve) < 2:
        group = f" for {ranks} workers" if ranks is not None else ""
        raise too_few_rows(path, collective, f"{len(curve)} size{group}; a run interpolates between at least 2")
    return curve.index.to_numpy(float), curve.to_numpy(float)


def vidur_collective_rows(path: Path, collective: str) -> pd.DataFrame:
    """Vidur collective rows with all workers on one node: ``num_workers``, ``size`` (bytes), ``seconds`` (median)."""
    import pandas as pd  # here only: a run that reads no table never loads pandas
    frame = read_profile_csv(path, numeric=("time_stats.*", "num_workers", "size", "devices_per_node"),
                             keys=("num_workers", "size", "devices_per_node"),
                             positive=("num_workers", "devices_per_node"),
                             times={"time_stats.*": 1e-3})  # Vidur's collective times are ms
    column = f"time_stats.{collective}.median"
    needed = {column, "num_workers", "size", "devices_per_node"}
    if not needed <= set(frame.columns):
        raise ConfigError(f"{path}: not a Vidur {collective} profile (needs columns {sorted(needed)})")
    frame = frame.drop(index=frame.index[unused_rows(frame, [column], path)])  # (counted in a note, as mlp.csv's)
    frame = frame[frame["devices_per_node"] == frame["num_workers"]]
    return pd.DataFrame({"num_workers": frame["num_workers"].astype(int), "size": frame["size"].astype(float),
                         "seconds": frame[column].astype(float) * 1e-3})


def bundle_hardware_yaml(directory: Path) -> Path | None:
    """The ``hardware.yaml`` LLMServingSim's profiler writes above a bundle (up to four folders up), if any."""
    for folder in [directory, *list(directory.parents)[:4]]:
        if (folder / "hardware.yaml").is_file():
            return folder / "hardware.yaml"
    return None
