"""Transfers that cross several links at once: a cluster's fetch and PD paths, a single node's PD transfer.

A ``Path`` sends the same bytes on each of its links at once (cut-through: a block streams
through the GPU's PCIe, the NICs and the rack uplinks together), each link shared max-min
fairly with the other transfers on it (``sim.serving.network.Link``) for the bytes' serialization
(bytes / its bandwidth), so the path's bandwidth is its narrowest link's; its one-way latency is the
sum of its hops' (the source tier's access, the node-to-node network's ``network.latency_us`` once, the
leaf -> spine -> leaf crossing's ``cluster.uplink_latency_us``), a delay no other transfer shares. Alone, a
transfer of ``b`` bytes takes ``sum(latency) + b / min(bandwidth)``: the latency-bandwidth (Hockney) model of a
cut-through path, whose per-hop latencies add (Hennessy & Patterson, Computer Architecture: A Quantitative Approach,
5th ed., appendix F.3, cut-through switching: each hop's switch and link delays summed plus the packet's size over
the bandwidth, paid once). A
shared tier (a node's DRAM or SSD, a rack's EIC pool) is a link too: concurrent loads from it share its read
bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sim.serving.network import Link, NetworkModel, serialization_time


@dataclass(frozen=True)
class PathModel:
    """A path's isolated time: its hops' summed latency plus its slowest link's serialization (the links carry the
    bytes concurrently)."""

    links: tuple[NetworkModel, ...]
    latency: float = 0.0  # s, the hops' sum
    name: str = "path"

    def isolated_time(self, nbytes: float) -> float:
        if nbytes <= 0 or not self.links:
            return 0.0
        return self.latency + max(serialization_time(model, nbytes) for model in self.links)


class Path:
    """Several links carrying one transfer concurrently after ``latency`` seconds of hops; ``send`` as
    ``Link.send``."""

    def __init__(self, links: list[Link], scope: str, latency: float = 0.0):
        self.links = links
        self.scope = scope  # "node" (PCIe only), "rack" (NICs), "cross_rack" (uplinks)
        self.model = PathModel(tuple(link.model for link in links), latency)

    def send(self, nbytes: float, on_done: Callable[[float], None]) -> None:
        self.occupy_share(nbytes, 1.0, on_done)

    def occupy_share(self, nbytes: float, share: float, on_done: Callable[[float], None]) -> None:
        """``share`` of a transfer of ``nbytes`` (``Link.occupy_share``): that share of each link's serialization on
        every link at once, done when the slowest is, then that share of the hops' latency (unshared); its
        bytes are counted by the caller."""
        if not self.links or nbytes <= 0:
            on_done(0.0)
            return
        engine = self.links[0].engine
        start = engine.now
        remaining = [len(self.links)]
        delay = share * self.model.latency

        def one_done(_duration: float) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                if delay > 0:
                    engine.after(delay, lambda: on_done(engine.now - start))
                else:
                    on_done(engine.now - start)

        for link in self.links:
            link.occupy(share * serialization_time(link.model, nbytes), one_done)
