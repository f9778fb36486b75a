"""The simplest endpoints: a UAS that answers every call and a UAC that places calls.

They are the live tools of ``sbcsim uas`` / ``sbcsim uac`` and the load of the interop tests and
benchmarks (SIPp's built-in ``uac``/``uas`` scenarios are their counterparts), and they run
unchanged in simulation for the fault runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from sbcsim.dialog import (
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRef,
    CallState,
    IncomingCall,
    UserAgent,
)
from sbcsim.net.base import Address, TransportName
from sbcsim.node import Node

__all__ = ["AnsweringUas", "CallGenerator", "CallStats", "g711_sdp"]

log = structlog.get_logger("sbcsim.endpoints")


def g711_sdp(host: str, port: int, session_id: int = 1) -> bytes:
    """A plain RTP/AVP G.711 offer or answer, as a PSTN-side endpoint sends."""
    ip6 = ":" in host
    addr = f"IN IP6 {host}" if ip6 else f"IN IP4 {host}"
    return (
        f"v=0\r\no=sbcsim {session_id} 1 {addr}\r\ns=sbcsim\r\nc={addr}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


@dataclass(slots=True)
class CallStats:
    started: int = 0
    established: int = 0
    completed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1


class AnsweringUas:
    """Answers every INVITE: 180 Ringing after ``ring_delay``, 200 OK with SDP after
    ``answer_delay``; then waits for the ACK and the caller's BYE (the UA core does both)."""

    def __init__(
        self,
        node: Node,
        *,
        ring_delay: float = 0.0,
        answer_delay: float = 0.0,
        media_host: str = "127.0.0.1",
    ) -> None:
        self.node = node
        self.ua: UserAgent = node.stack  # type: ignore[assignment]
        self.ring_delay = ring_delay
        self.answer_delay = answer_delay
        self.media_host = media_host
        self.stats = CallStats()
        node.on_event = self.on_event
        self._port = 20000

    def on_event(self, event: object) -> None:
        match event:
            case IncomingCall(call=call):
                self.stats.started += 1
                if self.ring_delay or self.answer_delay:
                    self.node.call_later(self.ring_delay, lambda: self._ring(call))
                else:
                    self._ring(call)
            case CallEstablished():
                self.stats.established += 1
            case CallEnded(reason=reason):
                if reason in ("remote-bye", "local-bye"):
                    self.stats.completed += 1
                else:
                    self.stats.fail(reason)
            case CallFailed(status=status):
                self.stats.fail(str(status))
            case _:
                pass

    def _ring(self, call: CallRef) -> None:
        if self.ua.call_state(call) is CallState.ENDED:
            return  # cancelled or lost before we rang
        now = self.node.now()
        self.ua.respond(call, 180, now=now)
        if self.answer_delay:
            self.node.call_later(self.answer_delay, lambda: self._answer(call))
        else:
            self._answer(call)

    def _answer(self, call: CallRef) -> None:
        if self.ua.call_state(call) is CallState.ENDED:
            return  # cancelled or lost while ringing
        self._port = 20000 + (self._port - 19998) % 40000
        self.ua.respond(call, 200, sdp=g711_sdp(self.media_host, self._port), now=self.node.now())


class CallGenerator:
    """Places ``calls`` calls at ``rate`` per second to ``target``, holds each for ``hold``
    seconds, then hangs up.  ``done`` says when every call has completed or failed."""

    def __init__(
        self,
        node: Node,
        target: str,
        remote: Address,
        *,
        transport: TransportName,
        calls: int,
        rate: float,
        hold: float = 0.0,
        from_user: str = "sbcsim",
        media_host: str = "127.0.0.1",
        server_name: str | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        if rate <= 0 or calls < 0:
            raise ValueError("rate must be > 0 and calls >= 0")
        self.node = node
        self.ua: UserAgent = node.stack  # type: ignore[assignment]
        self.target = target
        self.remote = remote
        self.transport = transport
        self.calls = calls
        self.rate = rate
        self.hold = hold
        self.from_user = from_user
        self.media_host = media_host
        self.server_name = server_name
        self.on_done = on_done
        self.stats = CallStats()
        node.on_event = self.on_event

    @property
    def done(self) -> bool:
        return self.stats.completed + self.stats.failed >= self.calls

    def start(self) -> None:
        for i in range(self.calls):
            self.node.call_later(i / self.rate, self._place)

    def _place(self) -> None:
        self.stats.started += 1
        host = self.remote[0]
        self.ua.invite(
            self.target,
            from_=f"<sip:{self.from_user}@{self.media_host}>",
            to=f"<{self.target}>",
            remote=self.remote,
            transport=self.transport,
            sdp=g711_sdp(self.media_host, 30000 + 2 * (self.stats.started % 10000)),
            server_name=self.server_name or (None if host[0].isdigit() or ":" in host else host),
            now=self.node.now(),
        )

    def on_event(self, event: object) -> None:
        match event:
            case CallEstablished(call=call):
                self.stats.established += 1
                if self.hold:
                    self.node.call_later(self.hold, lambda: self._hangup(call))
                else:
                    self._hangup(call)
            case CallEnded(reason=reason):
                if reason == "local-bye":
                    self.stats.completed += 1
                else:
                    self.stats.fail(reason)
                self._check_done()
            case CallFailed(status=status, reason=reason):
                self.stats.fail(f"{status} {reason}")
                self._check_done()
            case _:
                pass

    def _hangup(self, call: CallRef) -> None:
        self.ua.bye(call, self.node.now())

    def _check_done(self) -> None:
        if self.done and self.on_done is not None:
            self.on_done()
