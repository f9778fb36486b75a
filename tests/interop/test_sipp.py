"""The live SIP engine against SIPp, the reference load tool, on 127.0.0.1.

* SIPp's built-in ``uac`` scenario places 500 calls into an sbcsim answering UAS, over UDP and
  over TCP; SIPp's own statistics must count 500 successful calls and no failure, and the UAS
  500 completed calls.
* The sbcsim call generator places 500 calls into SIPp's built-in ``uas`` scenario, likewise.
* Two scenarios of ours (``scenarios/``) hold back an answer so the retransmissions the engine
  owes show on the real wire: the caller's INVITE under Timer A, and the callee's 2xx until the
  ACK.  Their arrival times come from SIPp's message trace.

Every sbcsim node runs in the test's event loop; SIPp runs as a subprocess with a time limit
(``run_sipp``).  Waiting for SIPp's socket to appear polls ``/proc/net`` (no traffic), bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from sbcsim.endpoints.basic import AnsweringUas, CallGenerator
from sbcsim.net.base import TransportName
from sbcsim.sip.message import Request, Response
from sbcsim.sip.parser import parse_message
from sbcsim.stack import live_node
from sbcsim.testing.sipp import SippResult, run_sipp

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CALLS = 500
SIPP_TIMEOUT = 60.0
LISTEN_TIMEOUT = 10.0
SCENARIOS = Path(__file__).parent / "scenarios"
SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}
# RFC 3261 T1, the engine's default.
T1 = 0.5
# Real sockets and two processes, so the schedule is checked with a tolerance (only here: the
# exact virtual-time schedule is tested on the memory network).  A timer never fires early, but
# SIPp stamps each copy when it reads it, and a copy read late makes the next gap look short:
# 20 ms early is allowed.  Late is scheduling jitter on a busy machine: up to 250 ms.
EARLY = 0.020
LATE = 0.250


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIPp binds both for some transports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def _bound(transport: TransportName, port: int) -> bool:
    table = "/proc/net/udp" if transport == "udp" else "/proc/net/tcp"
    wanted = f"0100007F:{port:04X}"
    # UDP sockets show state 07 (unconnected); a TCP listener 0A.
    state = "07" if transport == "udp" else "0A"
    with open(table) as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == state:
                return True
    return False


async def wait_listening(
    transport: TransportName, port: int, peer: asyncio.Task[SippResult]
) -> None:
    """Until a socket is bound on 127.0.0.1:``port`` (at most ``LISTEN_TIMEOUT`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LISTEN_TIMEOUT
    while not _bound(transport, port):
        if peer.done():
            result = peer.result()
            pytest.fail(
                f"SIPp exited ({result.exit_code}) before listening:\n{result.output[-2000:]}"
            )
        if loop.time() > deadline:
            pytest.fail(f"SIPp did not bind {transport} {HOST}:{port} within {LISTEN_TIMEOUT} s")
        await asyncio.sleep(0.02)


@dataclass(frozen=True)
class Traced:
    """One message in SIPp's ``-trace_msg`` file: when SIPp sent or read it, and the message."""

    at: float
    direction: str
    data: bytes
    message: Request | Response


_TRACE_SEPARATOR = re.compile(
    rb"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(?:UDP|TCP) message (sent|received)[^\n]*\n\n",
    re.M,
)


def read_message_trace(path: Path) -> list[Traced]:
    raw = path.read_bytes()
    marks = list(_TRACE_SEPARATOR.finditer(raw))
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(raw)
        data = raw[mark.end() : end].removesuffix(b"\n")
        at = datetime.strptime(mark.group(1).decode(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(at, mark.group(2).decode(), data, parse_message(data)))
    return out


def sipp_counters(result: SippResult) -> str:
    """What to show when SIPp's verdict is not the expected one."""
    keys = [k for k in result.stats if k.endswith("(C)") and result.stats[k] not in ("0", "")]
    return ", ".join(f"{k}={result.stats[k]}" for k in keys) + "\n" + result.output[-3000:]


@pytest.fixture
def sipp(require_peer: Callable[[str], str]) -> str:
    return require_peer("sipp")


# -- SIPp uac -> sbcsim UAS --------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_calls_into_sbcsim_uas(
    sipp: str, transport: TransportName, tmp_path: Path
) -> None:
    node, live = await live_node("uas", HOST, transport=transport, port=0, seed=1)
    uas = AnsweringUas(node)
    port = live.address(transport)[1]
    try:
        result = await run_sipp(
            [
                "-sn", "uac", f"{HOST}:{port}",
                "-t", SIPP_TRANSPORT[transport],
                "-i", HOST, "-p", str(free_port()), "-mp", str(free_port()),
                "-r", "250", "-rp", "1000", "-l", "200", "-m", str(CALLS), "-d", "0",
                "-timeout", "40",
            ],
            timeout=SIPP_TIMEOUT,
            workdir=tmp_path,
        )  # fmt: skip
    finally:
        await live.aclose()
    assert (result.successful, result.failed, result.created) == (CALLS, 0, CALLS), sipp_counters(
        result
    )
    assert result.exit_code == 0
    stats = uas.stats
    assert (stats.started, stats.established, stats.completed, stats.failed) == (
        CALLS,
        CALLS,
        CALLS,
        0,
    )
    assert node.stack.active_calls == 0  # type: ignore[attr-defined]


# -- sbcsim UAC -> SIPp uas --------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sbcsim_uac_calls_into_sipp_uas(
    sipp: str, transport: TransportName, tmp_path: Path
) -> None:
    port = free_port()
    peer = asyncio.ensure_future(
        run_sipp(
            [
                "-sn", "uas", "-i", HOST, "-p", str(port), "-mp", str(free_port()),
                "-t", SIPP_TRANSPORT[transport], "-m", str(CALLS), "-timeout", "40",
            ],
            timeout=SIPP_TIMEOUT,
            workdir=tmp_path,
        )
    )  # fmt: skip
    node, live = await live_node("uac", HOST, transport=transport, port=0, seed=2)
    try:
        await wait_listening(transport, port, peer)
        finished = asyncio.Event()
        generator = CallGenerator(
            node,
            f"sip:service@{HOST}:{port}",
            (HOST, port),
            transport=transport,
            calls=CALLS,
            rate=250,
            on_done=finished.set,
        )
        generator.start()
        await asyncio.wait_for(finished.wait(), SIPP_TIMEOUT)
        # SIPp's uas scenario ends each call with a 4 s time-wait and fails the calls still in it
        # when their TCP connection closes: keep ours open until SIPp is done.
        result = await asyncio.wait_for(peer, SIPP_TIMEOUT)
    finally:
        await live.aclose()
        if not peer.done():
            peer.cancel()
    stats = generator.stats
    assert (stats.started, stats.established, stats.completed, stats.failed) == (
        CALLS,
        CALLS,
        CALLS,
        0,
    ), stats.failures
    assert (result.successful, result.failed, result.created) == (CALLS, 0, CALLS), sipp_counters(
        result
    )
    assert result.exit_code == 0
    assert node.stack.active_calls == 0  # type: ignore[attr-defined]


# -- retransmissions on the real wire ------------------------------------------------------------
def _intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _on_schedule(intervals: list[float], expected: list[float]) -> bool:
    return len(intervals) == len(expected) and all(
        e - EARLY <= got <= e + LATE for got, e in zip(intervals, expected, strict=True)
    )


async def test_invite_retransmitted_under_timer_a(sipp: str, tmp_path: Path) -> None:
    """SIPp holds our INVITE for 2 s: the copies arrive at +T1 and +3*T1 (Timer A doubles),
    are byte-for-byte the first one, and stop once the 180 arrives."""
    port = free_port()
    trace = tmp_path / "messages.log"
    peer = asyncio.ensure_future(
        run_sipp(
            [
                "-sf", str(SCENARIOS / "uas_hold_invite.xml"),
                "-i", HOST, "-p", str(port), "-mp", str(free_port()), "-t", "u1",
                "-m", "1", "-timeout", "20", "-trace_msg", "-message_file", str(trace),
            ],
            timeout=SIPP_TIMEOUT,
            workdir=tmp_path,
        )
    )  # fmt: skip
    node, live = await live_node("uac", HOST, transport="udp", port=0, seed=3)
    try:
        await wait_listening("udp", port, peer)
        generator = CallGenerator(
            node, f"sip:service@{HOST}:{port}", (HOST, port), transport="udp", calls=1, rate=1
        )
        generator.start()
        result = await asyncio.wait_for(peer, SIPP_TIMEOUT)
    finally:
        await live.aclose()
        if not peer.done():
            peer.cancel()
    assert (result.successful, result.failed) == (1, 0), sipp_counters(result)
    assert generator.stats.completed == 1, generator.stats.failures

    messages = read_message_trace(trace)
    invites = [
        m for m in messages if isinstance(m.message, Request) and m.message.method == "INVITE"
    ]
    assert len(invites) == 3, [m.data[:60] for m in messages]
    assert all(m.direction == "received" for m in invites)
    assert {m.data for m in invites} == {invites[0].data}  # retransmissions, not new requests
    gaps = _intervals([m.at for m in invites])
    assert _on_schedule(gaps, [T1, 2 * T1]), gaps
    answered = next(
        m.at
        for m in messages
        if isinstance(m.message, Response) and m.message.status == 180 and m.direction == "sent"
    )
    assert answered - invites[0].at >= 2.0 - EARLY
    assert all(m.at < answered for m in invites)


async def test_2xx_retransmitted_until_ack(sipp: str, tmp_path: Path) -> None:
    """SIPp holds back the ACK for 1.75 s: our 200 OK arrives again at +T1 and +3*T1, the
    same bytes each time, and no more once the ACK is in."""
    node, live = await live_node("uas", HOST, transport="udp", port=0, seed=4)
    uas = AnsweringUas(node)
    port = live.address("udp")[1]
    trace = tmp_path / "messages.log"
    try:
        result = await run_sipp(
            [
                "-sf", str(SCENARIOS / "uac_hold_ack.xml"), f"{HOST}:{port}",
                "-i", HOST, "-p", str(free_port()), "-mp", str(free_port()), "-t", "u1",
                "-m", "1", "-timeout", "20", "-trace_msg", "-message_file", str(trace),
            ],
            timeout=SIPP_TIMEOUT,
            workdir=tmp_path,
        )  # fmt: skip
    finally:
        await live.aclose()
    assert (result.successful, result.failed) == (1, 0), sipp_counters(result)
    assert (uas.stats.established, uas.stats.completed, uas.stats.failed) == (1, 1, 0)

    messages = read_message_trace(trace)
    oks = [
        m
        for m in messages
        if isinstance(m.message, Response)
        and m.message.status == 200
        and m.message.cseq.method == "INVITE"
    ]
    assert len(oks) == 3, [m.data[:60] for m in messages]
    assert all(m.direction == "received" for m in oks)
    assert {m.data for m in oks} == {oks[0].data}
    gaps = _intervals([m.at for m in oks])
    assert _on_schedule(gaps, [T1, 2 * T1]), gaps
    ack = next(m for m in messages if isinstance(m.message, Request) and m.message.method == "ACK")
    assert ack.at - oks[0].at >= 1.75 - EARLY
    assert all(m.at < ack.at for m in oks)
