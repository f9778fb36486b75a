"""Memory per established dialog: sbcsim's caller and callee UAs against SIPp's uas, same run.

sbcsim side (simulation): a caller UA places ``--calls`` calls over the memory network to a
callee UA (an :class:`~sbcsim.endpoints.basic.AnsweringUas`); nobody hangs up.  Once every call
is established on both sides and every transaction, ACK cache entry and timer is gone (64*T1
after the last call), what is left is the dialogs.  Two figures:

* **tracemalloc** — traced bytes with N dialogs minus traced bytes with the same two idle UAs,
  divided by N.  Split by side by tearing the callee down (its transport closed, every reference
  dropped, ``gc.collect()``) and then the caller: what each teardown frees, less what an idle UA
  of that side costs, divided by N.  (A buffer both sides share counts for the side torn down
  last, the caller.)
* **RSS** — VmRSS from ``/proc/self/status`` of a fresh interpreter (no tracemalloc overhead)
  before and after, divided by N.  Both UAs share that process, so this figure is for both
  sides together; it also keeps what the transient transactions of call set-up left in the
  allocator.

The network's packet capture is switched off for the run (it would otherwise keep every
message ever sent); the simulator's heap is empty at the measurement.

Peer (same run, loopback only): SIPp's built-in ``uas`` answering SIPp's built-in ``uac``, which
pauses ``--sipp-pause`` seconds before its BYE: VmRSS of the ``sipp`` uas process once its
statistics show N current calls, minus its VmRSS before the first call, divided by N.  Bounded by
``--sipp-timeout``; both SIPp processes are killed afterwards.

    .venv/bin/python benchmarks/dialog_memory.py [--calls 10000] [--rate 200] [--no-sipp]

Target: <= 20 KB per established call on each side.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sbcsim.dialog import CallEstablished, UserAgent
from sbcsim.endpoints.basic import AnsweringUas, g711_sdp
from sbcsim.net.memory import CapturedPacket, MemoryNetwork
from sbcsim.node import Node
from sbcsim.sim import Simulator
from sbcsim.stack import sim_node

TARGET_BYTES = 20 * 1024
CALLER_HOST = "10.0.0.1"
CALLEE_HOST = "10.0.0.2"


class _NoCapture(list[CapturedPacket]):
    """A capture that keeps nothing: the memory measured must be the UAs', not the wire log's."""

    def append(self, entry: CapturedPacket) -> None:
        pass


def rss_bytes(pid: int | str = "self") -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@dataclass
class Lab:
    sim: Simulator
    net: MemoryNetwork
    caller: Node | None
    callee: Node | None
    answer: AnsweringUas | None
    established: int = 0


def build_caller(lab: Lab) -> None:
    caller = sim_node(lab.sim, lab.net, "caller", CALLER_HOST)

    def on_event(event: object) -> None:
        if isinstance(event, CallEstablished):
            lab.established += 1

    caller.on_event = on_event
    lab.caller = caller


def build_callee(lab: Lab) -> None:
    lab.callee = sim_node(lab.sim, lab.net, "callee", CALLEE_HOST)
    lab.answer = AnsweringUas(lab.callee)


def new_lab() -> Lab:
    sim = Simulator(1)
    net = MemoryNetwork(sim)
    net.capture = _NoCapture()
    return Lab(sim, net, None, None, None)


def user_agent(node: Node | None) -> UserAgent:
    assert node is not None and isinstance(node.stack, UserAgent)
    return node.stack


def hold_calls(lab: Lab, calls: int, rate: float) -> None:
    """Place ``calls`` more calls at ``rate`` per (virtual) second and wait until each is up on
    both sides and nothing but the dialogs is left (every transaction and timer over)."""
    caller = lab.caller
    assert caller is not None and lab.answer is not None
    ua = user_agent(caller)
    total = lab.established + calls
    sdp = g711_sdp(CALLER_HOST, 30000)
    placed = 0

    def place() -> None:
        nonlocal placed
        ua.invite(
            f"sip:bob@{CALLEE_HOST}",
            from_=f"<sip:alice@{CALLER_HOST}>",
            to=f"<sip:bob@{CALLEE_HOST}>",
            remote=(CALLEE_HOST, 5060),
            transport="udp",
            sdp=sdp,
            now=lab.sim.now(),
        )
        caller.poke()
        placed += 1
        if placed < calls:
            lab.sim.call_later(1.0 / rate, place)

    lab.sim.call_soon(place)
    answer = lab.answer
    done = lab.sim.run_until(
        lambda: lab.established == total and answer.stats.established == total,
        calls / rate + 60.0,
    )
    if not done:
        raise RuntimeError(f"only {lab.established} of {total} calls came up")
    lab.sim.run_until_idle(120.0)
    for node in (lab.caller, lab.callee):
        stack = user_agent(node)
        if stack.active_calls != total or len(stack._tl) or stack.get_timer() is not None:
            raise RuntimeError(f"{node.name if node else '?'}: not only dialogs are left")
    if lab.sim.next_deadline() is not None:
        raise RuntimeError("the simulator still has work queued")


def tear_down(lab: Lab, side: str) -> None:
    """Drop every reference to one side's node (its transport is closed: the network forgets
    it), so that what it held can be freed."""
    node = lab.callee if side == "callee" else lab.caller
    assert node is not None and node.transport is not None
    node.transport.close()
    node.transport = None
    node.on_event = None
    if side == "callee":
        lab.callee = None
        lab.answer = None
    else:
        lab.caller = None
    del node


@dataclass
class TracedFigures:
    calls: int
    total: float  # bytes per call, both UAs
    caller: float
    callee: float
    idle_caller: int
    idle_callee: int
    seconds: float


def measure_traced(calls: int, rate: float) -> TracedFigures:
    started = time.perf_counter()
    tracemalloc.start()
    lab = new_lab()
    t0 = traced()
    build_caller(lab)
    t1 = traced()
    build_callee(lab)
    t2 = traced()
    hold_calls(lab, calls, rate)
    t3 = traced()
    tear_down(lab, "callee")
    t4 = traced()
    tear_down(lab, "caller")
    t5 = traced()
    tracemalloc.stop()
    idle_caller, idle_callee = t1 - t0, t2 - t1
    return TracedFigures(
        calls=calls,
        total=(t3 - t2) / calls,
        caller=(t4 - t5 - idle_caller) / calls,
        callee=(t3 - t4 - idle_callee) / calls,
        idle_caller=idle_caller,
        idle_callee=idle_callee,
        seconds=time.perf_counter() - started,
    )


def rss_child(calls: int, rate: float) -> None:
    """Run in a fresh interpreter: N calls, then N more; print VmRSS at each step as JSON."""
    lab = new_lab()
    build_caller(lab)
    build_callee(lab)
    gc.collect()
    steps = [rss_bytes()]
    for _ in range(2):
        hold_calls(lab, calls, rate)
        gc.collect()
        steps.append(rss_bytes())
    print(json.dumps(steps))


@dataclass
class RssFigures:
    first: float  # bytes per call for the first N calls (set-up high-water included)
    next: float  # bytes per call for N more calls (the allocator reuses the set-up memory)


def measure_rss(calls: int, rate: float, timeout: float) -> RssFigures:
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", "--calls", str(calls), "--rate", str(rate)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    idle, first, second = json.loads(done.stdout.strip().splitlines()[-1])
    return RssFigures((first - idle) / calls, (second - first) / calls)


@dataclass
class SippFigures:
    calls: int
    held: int
    per_call: float
    seconds: float


def _free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nobody is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _current_calls(stat_file: Path) -> int:
    if not stat_file.exists():
        return 0
    with stat_file.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    value = (rows[-1].get("CurrentCall") or "0").strip() if rows else "0"
    return int(value) if value.isdigit() else 0


def measure_sipp(calls: int, rate: float, pause: float, timeout: float) -> SippFigures | str:
    """SIPp uas holding ``calls`` calls from SIPp uac; a reason string when it cannot run."""
    sipp = shutil.which("sipp") or shutil.which("sipp", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if sipp is None:
        return "sipp not installed (Debian package sip-tester)"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sbcsim-dialog-memory-") as tmp:
        stat_file = Path(tmp) / "uas.csv"
        common = ["-nostdin", "-i", "127.0.0.1"]
        uas_port, uac_port = _free_udp_port(), _free_udp_port()
        uas = subprocess.Popen(
            [sipp, "-sn", "uas", "-p", str(uas_port), *common, "-trace_stat", "-stf",
             str(stat_file), "-fd", "1"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        uac: subprocess.Popen[bytes] | None = None
        try:
            deadline = time.monotonic() + timeout
            time.sleep(0.5)  # let it bind and settle before the baseline
            if uas.poll() is not None:
                return f"sipp uas exited with {uas.returncode}"
            before = rss_bytes(uas.pid)
            uac = subprocess.Popen(
                [sipp, "-sn", "uac", f"127.0.0.1:{uas_port}", "-p", str(uac_port),
                 *common, "-m", str(calls), "-r", str(int(rate)), "-d", str(int(pause * 1000))],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            held = 0
            while time.monotonic() < deadline:
                time.sleep(0.5)
                held = _current_calls(stat_file)
                if held >= calls or uac.poll() is not None:
                    break
            time.sleep(1.0)  # one more statistics period: every call has had its ACK
            after = rss_bytes(uas.pid)
            held = _current_calls(stat_file)
            if held < calls:
                return f"sipp uas held only {held} of {calls} calls within {timeout:.0f} s"
            return SippFigures(calls, held, (after - before) / calls, time.perf_counter() - started)
        finally:
            for proc in (uac, uas):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)


def kb(value: float) -> str:
    return f"{value / 1024:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=50.0, help="virtual calls per second")
    ap.add_argument("--no-sipp", action="store_true", help="skip the SIPp reference")
    ap.add_argument("--sipp-rate", type=float, default=500.0, help="SIPp uac calls per second")
    ap.add_argument("--sipp-pause", type=float, default=600.0, help="SIPp uac hold, seconds")
    ap.add_argument("--sipp-timeout", type=float, default=180.0)
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.calls, args.rate)
        return 0
    console = Console()
    calls = args.calls
    traced_figures = measure_traced(calls, args.rate)
    rss = measure_rss(calls, args.rate, timeout=600.0)
    peer = None
    if not args.no_sipp:
        peer = measure_sipp(calls, args.sipp_rate, args.sipp_pause, args.sipp_timeout)
    table = Table(title=f"Memory per established dialog, {calls:,} concurrent calls (KB)")
    for col in ("stack", "side", "traced", "RSS", "target"):
        table.add_column(col, justify="left" if col in ("stack", "side") else "right")
    t = traced_figures
    target = f"<= {kb(TARGET_BYTES)}"
    table.add_row("sbcsim", "caller UA", kb(t.caller), "-", target)
    table.add_row("sbcsim", "callee UA", kb(t.callee), "-", target)
    table.add_row("sbcsim", "both UAs", kb(t.total), kb(rss.next), "")
    if isinstance(peer, SippFigures):
        table.add_row("SIPp uas", "callee", "-", kb(peer.per_call), "")
    console.print(table)
    console.print(
        f"idle UAs: caller {t.idle_caller:,} B, callee {t.idle_callee:,} B (subtracted); "
        f"traced run {t.seconds:.1f} s wall"
    )
    console.print(
        f"sbcsim RSS: {kb(rss.next)} KB/call for {calls:,} calls on top of {calls:,} "
        f"established ones; {kb(rss.first)} KB/call for the first {calls:,} (with the "
        "allocator's high-water from call set-up)"
    )
    if isinstance(peer, str):
        console.print(f"SIPp reference not measured: {peer}")
    elif peer is not None:
        console.print(f"SIPp uas held {peer.held:,} calls; run {peer.seconds:.1f} s wall")
    worst = max(t.caller, t.callee)
    console.print(
        f"worst side {kb(worst)} KB per call (target <= {kb(TARGET_BYTES)} KB): "
        + ("met" if worst <= TARGET_BYTES else "MISSED")
    )
    return 0 if worst <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
