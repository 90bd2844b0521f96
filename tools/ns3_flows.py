"""The ns-3 side of tools/ns3_kv_timing.py: TCP flows over point-to-point links, one link or N senders into
one receiver through a store-and-forward switch, timed from the first byte sent to the last byte received.

ns-3 is imported only when a simulation runs (``load_ns3``): the first import compiles headers for ~10-20 s; without
the ``ns3`` package it is an InputError. The scenarios, TCP settings and their sources: tools/ns3_kv_timing.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run itself (by mistake: it says so): the repository's packages, as the scripts find them
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim.script_start  # noqa: E402, F401 (first: run by mistake, a stop while it loads is answered as it says so)

# isort: split

import importlib.metadata
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

from sim.config import MAX_LATENCY_US, MIN_GBPS
from sim.errors import InputError

IP_TCP_HEADER_BYTES = 20 + 20 + 12  # IPv4 + TCP + timestamp option (RFC 7323; on in ns-3 and Linux by default)
LINUX_MIN_RTO_MS = 200.0  # Linux TCP_RTO_MIN = HZ/5 (include/net/tcp.h); ns-3's own default is RFC 6298's 1 s
# Linux TCP_DELACK_MIN = HZ/25 (include/net/tcp.h). ns-3's default delayed-ACK timeout, 200 ms, equals the
# minimum RTO above: a lone segment's delayed ACK then loses the race with the sender's timer, every time.
LINUX_DELAYED_ACK_MS = 40.0
# Link bandwidth, Gb/s: kvsim's floor (sim.config.MIN_GBPS) up to 1 Pb/s, 1,000x the fastest NIC; ns-3's DataRate
# holds bits per second in a uint64 (past ~1.8e10 Gb/s it wraps), and buffers sized from it stay finite.
MAX_BANDWIDTH_GBPS = 1e6
MAX_BUFFER_BYTES = 2**32 - 1  # ns-3's TCP socket buffers and queue sizes are uint32 bytes


@dataclass(frozen=True)
class LinkParams:
    """Every link of the scenario: bandwidth (Gb/s), one-way propagation delay (µs), MTU (bytes)."""

    bandwidth_gbps: float = 100.0
    latency_us: float = 1.0
    mtu: int = 9000


@dataclass(frozen=True)
class TcpParams:
    """The TCP settings of every flow."""

    segment_bytes: int
    socket_buffer_bytes: int
    congestion_control: str = "TcpCubic"  # ns-3 3.44's default, as Linux's
    min_rto_ms: float = LINUX_MIN_RTO_MS
    delayed_ack_ms: float = LINUX_DELAYED_ACK_MS


@dataclass(frozen=True)
class FlowResult:
    time_s: float  # first byte sent on the open connection → last byte received
    handshake_s: float  # application start → first byte sent (connection set-up)


def check_link(link: LinkParams) -> None:
    """InputError (naming the flag) for a bandwidth or latency outside the domain the scenario can simulate."""
    if not MIN_GBPS <= link.bandwidth_gbps <= MAX_BANDWIDTH_GBPS:  # nan fails both
        raise InputError(f"--bandwidth-gbps must be within {MIN_GBPS:g}..{MAX_BANDWIDTH_GBPS:g}, "
                         f"got {link.bandwidth_gbps}")
    if not 0 <= link.latency_us <= MAX_LATENCY_US:
        raise InputError(f"--latency-us must be within 0..{MAX_LATENCY_US:g} (an hour), got {link.latency_us}")


def default_tcp(link: LinkParams, hops: int, congestion_control: str = "TcpCubic",
                min_rto_ms: float = LINUX_MIN_RTO_MS, delayed_ack_ms: float = LINUX_DELAYED_ACK_MS,
                segment_bytes: int | None = None, socket_buffer_bytes: int | None = None) -> TcpParams:
    """Segment = one full MTU packet; buffers = 2 × bandwidth-delay product, at least 64 segments."""
    check_link(link)
    segment = segment_bytes or link.mtu - IP_TCP_HEADER_BYTES
    rate = link.bandwidth_gbps * 1e9 / 8
    rtt = 2 * hops * (link.latency_us * 1e-6 + link.mtu / rate)
    buffer = socket_buffer_bytes or min(MAX_BUFFER_BYTES, max(64 * segment, math.ceil(2 * rate * rtt)))
    return TcpParams(segment, buffer, congestion_control, min_rto_ms, delayed_ack_ms)


# --- ns-3 ---------------------------------------------------------------------------------

_CLOCK_CPP = r"""
#include "ns3/core-module.h"
#include "ns3/network-module.h"
#include "ns3/traffic-control-module.h"
namespace kvtiming {
int remaining = 0;  // flows not finished yet; the simulation stops when it reaches 0
struct FlowClock {
  uint64_t target = 0;
  uint64_t received = 0;
  int64_t first_tx_ns = -1;
  int64_t last_rx_ns = -1;
  void Tx(ns3::Ptr<const ns3::Packet>) {
    if (first_tx_ns < 0) first_tx_ns = ns3::Simulator::Now().GetNanoSeconds();
  }
  void Rx(ns3::Ptr<const ns3::Packet> packet, const ns3::Address&) {
    received += packet->GetSize();
    if (last_rx_ns < 0 && received >= target) {
      last_rx_ns = ns3::Simulator::Now().GetNanoSeconds();
      if (--remaining == 0) ns3::Simulator::Stop();
    }
  }
};
struct DropCounter {
  uint64_t packets = 0;
  void Drop(ns3::Ptr<const ns3::Packet>) { ++packets; }
};
// a switch port's buffer overflows in its traffic-control layer (the device queue stops, the layer drops)
// each returns whether every trace source was found (a wrong name is otherwise silently ignored)
bool CountDrops(DropCounter* counter, ns3::Ptr<ns3::Node> node) {
  return node->GetObject<ns3::TrafficControlLayer>()->TraceConnectWithoutContext(
      "TcDrop", ns3::MakeCallback(&DropCounter::Drop, counter));
}
bool Attach(FlowClock* clock, ns3::Ptr<ns3::Application> sender, ns3::Ptr<ns3::Application> sink) {
  return sender->TraceConnectWithoutContext("Tx", ns3::MakeCallback(&FlowClock::Tx, clock))
      && sink->TraceConnectWithoutContext("Rx", ns3::MakeCallback(&FlowClock::Rx, clock));
}
}
"""

_NS3: Any = None


def ns3_version() -> str | None:
    """The installed ``ns3`` package's version, or None when it is not installed."""
    if importlib.util.find_spec("ns3") is None:
        return None
    return importlib.metadata.version("ns3")


def load_ns3() -> tuple[Any, Any]:
    """The bindings and the compiled flow clock (slow the first time: compiles headers); InputError when absent."""
    global _NS3
    if _NS3 is None:
        if ns3_version() is None:
            raise InputError("ns-3 is not installed: pip install ns3 (or pip install -e '.[ns3]')")
        from ns import ns  # noqa: I001  (ns-3's bindings first: they set up cppyy)
        import cppyy

        cppyy.cppdef(_CLOCK_CPP)
        _NS3 = ns, cppyy.gbl.kvtiming
    return _NS3


def _configure_tcp(ns: Any, tcp: TcpParams) -> None:
    ns.Config.SetDefault("ns3::TcpL4Protocol::SocketType", ns.StringValue(f"ns3::{tcp.congestion_control}"))
    ns.Config.SetDefault("ns3::TcpSocket::SegmentSize", ns.UintegerValue(tcp.segment_bytes))
    ns.Config.SetDefault("ns3::TcpSocket::SndBufSize", ns.UintegerValue(tcp.socket_buffer_bytes))
    ns.Config.SetDefault("ns3::TcpSocket::RcvBufSize", ns.UintegerValue(tcp.socket_buffer_bytes))
    ns.Config.SetDefault("ns3::TcpSocketBase::MinRto", ns.TimeValue(ns.Seconds(tcp.min_rto_ms / 1e3)))
    ns.Config.SetDefault("ns3::TcpSocket::DelAckTimeout", ns.TimeValue(ns.Seconds(tcp.delayed_ack_ms / 1e3)))


RECORDED_ATTRIBUTES = (  # ns-3's TCP settings as each run used them (set here or ns-3's defaults), for the record
    ("ns3::TcpL4Protocol", "SocketType"), ("ns3::TcpSocket", "SegmentSize"), ("ns3::TcpSocket", "SndBufSize"),
    ("ns3::TcpSocket", "RcvBufSize"), ("ns3::TcpSocket", "InitialCwnd"), ("ns3::TcpSocket", "DelAckCount"),
    ("ns3::TcpSocket", "DelAckTimeout"), ("ns3::TcpSocketBase", "MinRto"), ("ns3::TcpSocketBase", "Sack"),
    ("ns3::TcpSocketBase", "Timestamp"), ("ns3::TcpSocketBase", "WindowScaling"), ("ns3::TcpSocketState", "EnablePacing"),
)


def ns3_attributes(ns: Any) -> dict[str, str]:
    """The current default of each recorded attribute, as ns-3 prints it."""
    values = {}
    for type_name, attribute in RECORDED_ATTRIBUTES:
        info = ns.TypeId.AttributeInformation()
        ns.TypeId.LookupByName(type_name).LookupAttributeByName(attribute, info)
        values[f"{type_name}::{attribute}"] = str(info.initialValue.SerializeToString(info.checker))
    return values


def _connected(ok: bool) -> None:
    if not ok:
        raise RuntimeError("an ns-3 trace source was not found: this ns-3 version renamed it")


def _link_helper(ns: Any, link: LinkParams) -> Any:
    helper = ns.PointToPointHelper()
    helper.SetDeviceAttribute("DataRate", ns.DataRateValue(ns.DataRate(int(round(link.bandwidth_gbps * 1e9)))))
    helper.SetDeviceAttribute("Mtu", ns.UintegerValue(link.mtu))
    helper.SetChannelAttribute("Delay", ns.TimeValue(ns.Seconds(link.latency_us * 1e-6)))
    return helper


def simulate(senders: int, nbytes: int, link: LinkParams, tcp: TcpParams,
             switch_buffer_bytes: int | None) -> tuple[list[FlowResult | None], int]:
    """``senders`` flows of ``nbytes`` each, started together, into one receiver.

    ``switch_buffer_bytes`` None: one sender on a direct link. Otherwise a switch between
    the senders and the receiver. Returns each flow's result (None for a flow still
    unfinished after 1000 times its fair-share time plus 60 s) and the switch's drops.
    """
    ns, clocks_ns = load_ns3()
    _configure_tcp(ns, tcp)
    hosts = ns.NodeContainer()
    hosts.Create(senders + 1)  # node `senders` is the receiver
    stack = ns.InternetStackHelper()
    stack.Install(hosts)
    addresses = ns.Ipv4AddressHelper()
    helper = _link_helper(ns, link)
    drops = clocks_ns.DropCounter()
    if switch_buffer_bytes is None:
        devices = helper.Install(hosts.Get(0), hosts.Get(1))
        addresses.SetBase(ns.Ipv4Address("10.0.0.0"), ns.Ipv4Mask("255.255.255.252"))
        receiver_ip = addresses.Assign(devices).GetAddress(1)
    else:
        switch = ns.NodeContainer()
        switch.Create(1)
        stack.Install(switch)
        for i in range(senders + 1):
            devices = helper.Install(hosts.Get(i), switch.Get(0))
            addresses.SetBase(ns.Ipv4Address(f"10.{i // 256}.{i % 256}.0"), ns.Ipv4Mask("255.255.255.252"))
            receiver_ip = addresses.Assign(devices).GetAddress(0)  # the last host is the receiver
            # Assign installed the default queue disc on the port: removed, so the port's drop-tail
            # device queue of switch_buffer_bytes is its whole buffer
            ns.TrafficControlHelper().Uninstall(devices.Get(1))
            devices.Get(1).GetQueue().SetMaxSize(ns.QueueSize(f"{switch_buffer_bytes}B"))
        _connected(clocks_ns.CountDrops(drops, switch.Get(0)))
        ns.Ipv4GlobalRoutingHelper.PopulateRoutingTables()
    receiver = hosts.Get(senders)
    clocks = []
    for i in range(senders):
        port = 5000 + i
        bulk = ns.BulkSendHelper("ns3::TcpSocketFactory", ns.InetSocketAddress(receiver_ip, port).ConvertTo())
        bulk.SetAttribute("MaxBytes", ns.UintegerValue(nbytes))
        bulk.SetAttribute("SendSize", ns.UintegerValue(tcp.segment_bytes))
        sender_app = bulk.Install(hosts.Get(i))
        sink = ns.PacketSinkHelper("ns3::TcpSocketFactory", ns.InetSocketAddress(ns.Ipv4Address.GetAny(), port).ConvertTo())
        sink_app = sink.Install(receiver)
        clock = clocks_ns.FlowClock()
        clock.target = nbytes
        _connected(clocks_ns.Attach(clock, sender_app.Get(0), sink_app.Get(0)))
        clocks.append(clock)
    clocks_ns.remaining = senders
    ns.Simulator.Stop(ns.Seconds(1000 * senders * nbytes * 8 / (link.bandwidth_gbps * 1e9) + 60))
    ns.Simulator.Run()
    results = [FlowResult((c.last_rx_ns - c.first_tx_ns) / 1e9, c.first_tx_ns / 1e9) if c.last_rx_ns >= 0 else None
               for c in clocks]
    ns.Simulator.Destroy()
    return results, int(drops.packets)


if __name__ == "__main__":  # a module of tools/ns3_kv_timing.py, not a command: say so (exit 2) rather than do nothing
    from sim.command import command_status, end_process

    def _refuse() -> int:
        raise InputError("a module of tools/ns3_kv_timing.py, the command to run "
                         "(python tools/ns3_kv_timing.py --help)")

    end_process(command_status("ns3_flows.py", _refuse))  # (as a command: a stop held while it loaded is answered)
