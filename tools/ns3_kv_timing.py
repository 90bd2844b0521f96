"""KV-transfer timings from packet-level ns-3: a lookup table for kvsim's NetworkModel.

Two scenarios, both TCP (ns-3's BulkSend → PacketSink) over full-duplex point-to-point links:

* ``point-to-point``: one sender, one receiver, one link of the given bandwidth, latency
  and MTU. Its rows are the isolated transfer time per size: the table
  ``--set network.lookup=FILE`` reads.
* ``incast``: N senders into one receiver through a switch, every sender sending the same
  size at the same moment. ns-3's plain bindings have no Ethernet switch, so the switch is
  a router node (IPv4 forwarding, global routing) with a point-to-point link per port and
  a drop-tail egress queue of ``--switch-buffer-kib`` on each port (the router's traffic-control
  queue disc is removed, so that buffer is the only one). A router forwards each packet
  as soon as it has arrived (store and forward), exactly as an Ethernet switch would; the
  alternative, the bridge module over CSMA links, was not used because ns-3's CSMA
  channel is half duplex (data and ACKs of one host share one medium) and so would
  charge a contention no switched full-duplex network has. The file records each flow's
  completion time for N = 1 (its ``rows``: a lookup table of the two-hop path) and for
  every N asked, next to what kvsim's max-min ``Link`` predicts for the same flows from
  the N = 1 times.

A transfer's time runs from its first byte handed to an open TCP connection to its last
byte delivered to the receiving application (a KV transfer reuses an established
connection, so the handshake is left out; it is recorded apart). The TCP segment fills
one MTU-sized packet (MTU − 20 IP − 20 TCP − 12 timestamp option bytes), and socket
buffers default to twice the path's bandwidth-delay product, at least 64 segments, so a
single flow is never window-limited.

ns-3 is imported only when a simulation runs (the first import compiles headers for
~10-20 s and prints harmless "Failed to materialize symbols" lines), so ``--help`` works
without it; without the ``ns3`` package the tool exits 2.

Wall time: ~20 s to import ns-3, then proportional to the packets simulated, 40-65 µs of
one core per data packet on one link (about twice through the switch): at MTU 9000
(8,948-byte segments) 5-7 s per GiB sent, at MTU 1500 ~7x that. The default
point-to-point table (1-512 MiB, 1 GiB in all) takes ~25 s, ~70 s at MTU 1500; the
default incast (16/64/128 MiB × N = 1, 2, 4, 8) ~60 s. Results are deterministic.
Measurements and the comparison tables: tools/README.md.

Examples::

    python tools/ns3_kv_timing.py point-to-point --out ns3_100g.json
    python tools/ns3_kv_timing.py point-to-point --bandwidth-gbps 25 --mtu 1500 --sizes-mib 1,4,16,64 --out t.json
    python tools/ns3_kv_timing.py incast --senders 2,4,8 --sizes-mib 16,64,128 --out incast.json
    python main.py --pd --set network.lookup=ns3_100g.json
"""

from __future__ import annotations

import sys
from pathlib import Path  # (often loaded as Python starts, by site: the hold below comes at once)

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, Path(__file__).resolve().parent):  # kvsim, and this tool's ns-3 half beside it
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import sim.script_start  # noqa: E402, F401 (first: a stop while the libraries below load waits for the command)

# isort: split

import argparse
import datetime
import json
import math
import shlex
import time
from dataclasses import asdict
from typing import Any

from ns3_flows import (
    IP_TCP_HEADER_BYTES,
    LINUX_DELAYED_ACK_MS,
    LINUX_MIN_RTO_MS,
    MAX_BUFFER_BYTES,
    FlowResult,
    LinkParams,
    check_link,
    default_tcp,
    load_ns3,
    ns3_attributes,
    ns3_version,
    simulate,
)

from sim.cli import OneLineParser
from sim.command import command_status, end_process
from sim.config import MAX_LATENCY_US
from sim.errors import InputError
from sim.report.output import atomic_write_text, check_writable
from sim.serving.engine import Engine
from sim.serving.network import MIB, Link

MIN_IPV4_MTU = 576  # RFC 791: every IPv4 host must accept datagrams of 576 bytes
MAX_P2P_MTU = 65535  # ns-3 PointToPointNetDevice's largest MTU
# A 32 × 100GbE switch on Broadcom Tomahawk (e.g. Arista 7060CX-32S datasheet) shares a 16 MB packet buffer among
# its ports; under the usual dynamic threshold (Choudhury & Hahne 1998) with alpha = 1, one congested port can take
# alpha / (1 + alpha) of it: 8 MB.
SWITCH_BUFFER_KIB = 8 * 1024
DEFAULT_SIZES_MIB = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DEFAULT_INCAST_SIZES_MIB = (16, 64, 128)
MAX_SIZE_MIB = 64 * 1024  # 64 GiB, 128x the largest default size; nan, inf or 1e300 MiB passed the checks
MAX_SENDERS = 1024  # incast senders, each an ns-3 node: 10^8 built nodes until memory ran out
MAX_RTO_MS = MAX_LATENCY_US / 1e3  # an hour, kvsim's bound on every latency
CONGESTION_CONTROLS = ("TcpCubic", "TcpNewReno", "TcpLinuxReno", "TcpBic", "TcpHighSpeed", "TcpVegas")


# --- kvsim's contention model -----------------------------------------------------------------


class _FixedTime:
    """A NetworkModel whose isolated time is the measured one (N = 1 through the switch)."""

    name = "ns3-isolated"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def isolated_time(self, nbytes: float) -> float:
        return self.seconds


def kvsim_max_min(senders: int, isolated_s: float) -> list[float]:
    """Completion times kvsim's shared ``Link`` gives ``senders`` equal flows started together."""
    engine, finished = Engine(), []
    link = Link(engine, _FixedTime(isolated_s))
    for _ in range(senders):
        link.send(1, lambda duration: finished.append(duration))
    engine.run()
    return finished


# --- command line ---------------------------------------------------------------------------


def _positive_list(text: str, kind: type) -> list:
    """A flag's comma-separated positive numbers (argparse names the flag in front of a refusal)."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text[:100]!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):  # nan > 0 is False; inf is not a size
        raise argparse.ArgumentTypeError(f"every value must be positive and finite, got {text[:100]!r}")
    return sorted(set(values))


class _Parser(OneLineParser):
    """A flag of one value given twice is refused (OneLineParser; argparse kept the last: --out a --out b wrote b)."""

    def error(self, message: str) -> None:  # exit 2, as argparse does, in one line as every other error of the tool
        self.exit(2, f"ns3_kv_timing: error: {message[:200]} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ns3_kv_timing.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Wall time:"):].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="{point-to-point,incast}")
    for name, help_text, sizes in (
        ("point-to-point", "one sender, one receiver, one link: isolated transfer times", DEFAULT_SIZES_MIB),
        ("incast", "N senders into one receiver through a switch, all at once", DEFAULT_INCAST_SIZES_MIB),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--out", required=True, help="the JSON table to write (a network.lookup file)")
        p.add_argument("--sizes-mib", type=lambda t: _positive_list(t, float),
                       default=list(sizes), help=f"transfer sizes, MiB (default {','.join(map(str, sizes))})")
        p.add_argument("--bandwidth-gbps", type=float, default=100.0, help="every link's bandwidth, Gb/s (default 100)")
        p.add_argument("--latency-us", type=float, default=1.0, help="every link's one-way delay, µs (default 1)")
        p.add_argument("--mtu", type=int, default=9000,
                       help="bytes (default 9000; 1500 is ~3%% slower on the wire and ~10x slower to simulate)")
        p.add_argument("--segment-bytes", type=int, default=None, help="TCP segment size (default MTU − 52)")
        p.add_argument("--socket-buffer-kib", type=int, default=None,
                       help="TCP send and receive buffers (default 2 × bandwidth-delay product, at least 64 segments)")
        p.add_argument("--tcp", choices=CONGESTION_CONTROLS, default="TcpCubic", help="congestion control (default TcpCubic)")
        p.add_argument("--min-rto-ms", type=float, default=LINUX_MIN_RTO_MS,
                       help=f"TCP minimum retransmission timeout (default {LINUX_MIN_RTO_MS:g}, Linux's)")
        p.add_argument("--delayed-ack-ms", type=float, default=LINUX_DELAYED_ACK_MS,
                       help=f"receiver's delayed-ACK timeout (default {LINUX_DELAYED_ACK_MS:g}, Linux's minimum; keep "
                            "it below --min-rto-ms)")
        if name == "incast":
            p.add_argument("--senders", type=lambda t: _positive_list(t, int), default=[2, 4, 8],
                           help="numbers of concurrent senders (default 2,4,8; N = 1 is always run too)")
            p.add_argument("--switch-buffer-kib", type=int, default=SWITCH_BUFFER_KIB,
                           help=f"drop-tail buffer of each switch port, KiB (default {SWITCH_BUFFER_KIB}: what one "
                                "congested port of a 16 MB-buffer 100GbE switch can hold)")
    return parser


def _validate(args: argparse.Namespace) -> None:
    """Every flag's domain, and --out writable: all before ns-3 loads (~20 s) and the simulation runs."""
    check_link(LinkParams(args.bandwidth_gbps, args.latency_us, args.mtu))
    if not MIN_IPV4_MTU <= args.mtu <= MAX_P2P_MTU:
        raise InputError(f"--mtu must be within {MIN_IPV4_MTU}..{MAX_P2P_MTU}, got {args.mtu}")
    if args.segment_bytes is not None and not 0 < args.segment_bytes <= args.mtu - IP_TCP_HEADER_BYTES:
        raise InputError(f"--segment-bytes must be within 1..MTU − {IP_TCP_HEADER_BYTES} = {args.mtu - IP_TCP_HEADER_BYTES}, "
                         f"got {args.segment_bytes}")
    max_kib = MAX_BUFFER_BYTES // 1024
    if args.socket_buffer_kib is not None and not 0 < args.socket_buffer_kib <= max_kib:
        raise InputError(f"--socket-buffer-kib must be within 1..{max_kib:,}, got {args.socket_buffer_kib}")
    if not (0 < args.min_rto_ms <= MAX_RTO_MS):  # nan fails both
        raise InputError(f"--min-rto-ms must be positive and at most {MAX_RTO_MS:g}, got {args.min_rto_ms}")
    if not (0 < args.delayed_ack_ms < args.min_rto_ms):
        raise InputError(f"--delayed-ack-ms must be positive and below --min-rto-ms ({args.min_rto_ms:g}): a delayed "
                         f"ACK that waits as long as the retransmission timer loses the race every time; got "
                         f"{args.delayed_ack_ms}")
    if not 0 < getattr(args, "switch_buffer_kib", 1) <= max_kib:
        raise InputError(f"--switch-buffer-kib must be within 1..{max_kib:,}, got {args.switch_buffer_kib}")
    if any(s * MIB < 1 for s in args.sizes_mib):
        raise InputError("--sizes-mib: every size must be at least one byte")
    if max(args.sizes_mib) > MAX_SIZE_MIB:  # packet-level: wall time grows with the bytes (512 MiB takes seconds)
        raise InputError(f"--sizes-mib: at most {MAX_SIZE_MIB:,} MiB a transfer, got {max(args.sizes_mib):g}")
    if max(getattr(args, "senders", [1])) > MAX_SENDERS:  # a node, a link and a socket each
        raise InputError(f"--senders: at most {MAX_SENDERS:,} senders, got {max(args.senders):,}")
    if len(args.sizes_mib) < 2 and args.scenario == "point-to-point":
        raise InputError("--sizes-mib: a lookup table needs two or more sizes")
    check_writable(args.out, "--out")


def _write_json(data: dict[str, Any], path: Path) -> None:
    """Atomically (a temporary file in the same folder, then a rename; a device in place)."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as exc:  # a full disk or /dev/full: found only as it is written
        raise InputError(f"--out {path}: cannot write: {exc.strerror or exc}") from None


def _row(size_mib: float, nbytes: int, flow: FlowResult, wall_s: float) -> dict[str, Any]:
    return {"size_mib": size_mib, "size_bytes": nbytes, "time_s": flow.time_s, "ns3_ms": flow.time_s * 1e3,
            "handshake_s": flow.handshake_s, "wall_s": round(wall_s, 3)}


def _incast_row(senders: int, size_mib: float, nbytes: int, alone: FlowResult, flows: list[FlowResult | None],
                drops: int, wall_s: float) -> dict[str, Any]:
    """One incast point: every flow's time next to kvsim's max-min prediction from the lone flow's."""
    times = [f.time_s if f else None for f in flows]
    done = [t for t in times if t is not None]
    predicted = kvsim_max_min(senders, alone.time_s)
    return {
        "senders": senders, "size_mib": size_mib, "size_bytes": nbytes, "isolated_s": alone.time_s,
        "flow_times_s": times, "unfinished": senders - len(done), "switch_drops": drops,
        "slowdown_max": max(done) / alone.time_s if len(done) == senders else None,
        "slowdown_mean": sum(done) / senders / alone.time_s if len(done) == senders else None,
        "kvsim_times_s": predicted, "kvsim_slowdown": max(predicted) / alone.time_s,
        "handshakes_s": [f.handshake_s if f else None for f in flows], "wall_s": round(wall_s, 3)}


def _describe(row: dict[str, Any]) -> str:
    done = [t for t in row["flow_times_s"] if t is not None]
    text = (f"{row['size_mib']:g} MiB × {row['senders']}: flows end {min(done) * 1e3:.3f}..{max(done) * 1e3:.3f} ms"
            if done else f"{row['size_mib']:g} MiB × {row['senders']}: no flow ended")
    if row["unfinished"]:
        text += f", {row['unfinished']} UNFINISHED"
    else:
        text += f", slowdown {row['slowdown_max']:.3f} (kvsim {row['kvsim_slowdown']:.3f})"
    return text + f", {row['switch_drops']} switch drops ({row['wall_s']:.2f} s wall)"


def run(args: argparse.Namespace, command: str, log=print) -> dict[str, Any]:
    """Simulate every point the arguments ask for; the JSON document to write."""
    _validate(args)
    link = LinkParams(args.bandwidth_gbps, args.latency_us, args.mtu)
    incast = args.scenario == "incast"
    tcp = default_tcp(link, hops=2 if incast else 1, congestion_control=args.tcp, min_rto_ms=args.min_rto_ms,
                      delayed_ack_ms=args.delayed_ack_ms, segment_bytes=args.segment_bytes,
                      socket_buffer_bytes=args.socket_buffer_kib * 1024 if args.socket_buffer_kib else None)
    buffer = args.switch_buffer_kib * 1024 if incast else None
    started = time.perf_counter()
    load_ns3()
    simulate(1, 64 * 1024, link, tcp, buffer)  # warm-up: cppyy compiles what a run uses (~1.5 s) outside every point
    import_s = time.perf_counter() - started
    log(f"ns-3 {ns3_version()} loaded and warmed up in {import_s:.1f} s")
    rows, incast_rows = [], []
    for size_mib in args.sizes_mib:
        nbytes = int(round(size_mib * MIB))
        t0 = time.perf_counter()
        (alone,), _ = simulate(1, nbytes, link, tcp, buffer)
        if alone is None:
            raise RuntimeError(f"a lone transfer of {nbytes} bytes did not finish: a bug in this set-up")
        rows.append(_row(size_mib, nbytes, alone, time.perf_counter() - t0))
        log(f"{size_mib:g} MiB alone: {alone.time_s * 1e3:.4f} ms ({rows[-1]['wall_s']:.2f} s wall)")
        for senders in args.senders if incast else ():
            t0 = time.perf_counter()
            flows, drops = simulate(senders, nbytes, link, tcp, buffer)
            incast_rows.append(_incast_row(senders, size_mib, nbytes, alone, flows, drops, time.perf_counter() - t0))
            log(_describe(incast_rows[-1]))
    parameters = {**asdict(link), **asdict(tcp), "ns3_attributes": ns3_attributes(load_ns3()[0])}
    if incast:
        parameters.update(switch="router node, drop-tail egress queue per port", switch_buffer_bytes=buffer,
                          senders=args.senders)
    document = {
        "_source": f"ns-3 {ns3_version()} packet-level TCP simulation by tools/ns3_kv_timing.py ({args.scenario}); "
                   "time_s runs from the first byte sent on an open connection to the last byte received.",
        "scenario": args.scenario,
        "parameters": parameters,
        "ns3_version": ns3_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "setup_wall_s": round(import_s, 3),
        "total_wall_s": round(time.perf_counter() - started, 3),
        "rows": rows,
    }
    if incast:
        document["incast"] = incast_rows
    return document


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def build_table() -> int:
        document = run(args, command=shlex.join(["tools/ns3_kv_timing.py", *argv]))
        _write_json(document, Path(args.out))
        print(f"table: {args.out}")
        return 0

    return command_status("ns3_kv_timing", build_table)


if __name__ == "__main__":
    end_process(main())
