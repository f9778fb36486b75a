"""A tiny network for UA tests: moves ``messages_to_send()`` between user agents.

Every message is serialized with ``to_bytes()`` and parsed again with ``parse_message`` on the
way, so the wire format is exercised.  Delivery is instant (zero latency), so every time in a test
is a time some timer chose; ``run_until`` jumps ``now`` from deadline to deadline.  ``drop`` rules
lose chosen messages; ``forks`` deliver what is sent to one address to several user agents (a
forking proxy that adds no Via of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sbcsim.dialog.events import UaEvent
from sbcsim.dialog.timers import SessionTimerConfig
from sbcsim.dialog.useragent import UserAgent
from sbcsim.ids import SequentialIds
from sbcsim.net.base import Address, PeerInfo
from sbcsim.sip import Request, Response, parse_message
from sbcsim.sip.uri import SipUri

E = TypeVar("E")

SDP_A = (
    b"v=0\r\no=alice 1000 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 2000 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 3456 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_C = (
    b"v=0\r\no=carol 3000 1 IN IP4 10.0.0.3\r\ns=-\r\nc=IN IP4 10.0.0.3\r\nt=0 0\r\n"
    b"m=audio 5004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def label(message: Request | Response) -> str:
    """``INVITE`` / ``180 Ringing`` / ``200 OK (BYE)``: what a ladder diagram shows."""
    if isinstance(message, Request):
        return message.method
    return f"{message.status} {message.reason_phrase} ({message.cseq.method})"


@dataclass
class Wire:
    """One message as it crossed the network."""

    time: float
    src: str
    dst: str
    message: Request | Response
    dropped: bool = False

    @property
    def label(self) -> str:
        return label(self.message)


@dataclass
class Net:
    """The user agents of one test and the messages between them."""

    now: float = 0.0
    record: bool = True
    agents: dict[Address, UserAgent] = field(default_factory=dict)
    names: dict[Address, str] = field(default_factory=dict)
    forks: dict[Address, list[Address]] = field(default_factory=dict)
    wire: list[Wire] = field(default_factory=list)
    events: dict[str, list[tuple[float, UaEvent]]] = field(default_factory=dict)
    drop: Callable[[str, str, Request | Response], bool] | None = None

    def add(
        self,
        name: str,
        host: str,
        *,
        port: int = 5060,
        random: Callable[[], float] = lambda: 0.5,
        session_timer: SessionTimerConfig | None = None,
        **kwargs: Any,
    ) -> UserAgent:
        ua = UserAgent(
            ids=SequentialIds(prefix=name.lower()),
            random=random,
            contact=SipUri(user_raw=name.lower(), host=host, port=port),
            sent_by=f"{host}:{port}",
            session_timer=session_timer,
            name=name,
            **kwargs,
        )
        self.agents[(host, port)] = ua
        self.names[(host, port)] = name
        self.events[name] = []
        return ua

    def name_of(self, ua: UserAgent) -> str:
        return ua.name

    def address_of(self, ua: UserAgent) -> Address:
        return next(a for a, u in self.agents.items() if u is ua)

    # -- moving messages -------------------------------------------------------------------------
    def flush(self) -> None:
        """Deliver everything queued, and what that causes, at the current instant."""
        busy = True
        while busy:
            busy = False
            for address, ua in list(self.agents.items()):
                for out in ua.messages_to_send():
                    busy = True
                    self._deliver(address, out.remote, out.message)
                self._collect(ua)

    def _deliver(self, src: Address, dst: Address, message: Request | Response) -> None:
        data = message.to_bytes()
        targets = self.forks.get(dst, [dst])
        for target in targets:
            src_name = self.names[src]
            # a named relay address ("P") shows as itself; a forking address as its targets
            shown = dst if dst in self.names else target
            dst_name = self.names.get(shown, f"{shown[0]}:{shown[1]}")
            parsed = parse_message(data)
            dropped = self.drop is not None and self.drop(src_name, dst_name, parsed)
            if self.record:
                self.wire.append(Wire(self.now, src_name, dst_name, parsed, dropped))
            ua = self.agents.get(target)
            if dropped or ua is None:
                continue
            ua.receive(parse_message(data), PeerInfo("udp", target, src), self.now)

    def inject(self, src: Address, dst: Address, data: bytes) -> None:
        """Hand raw bytes from ``src`` (not a user agent) to the user agent at ``dst``."""
        self.names.setdefault(src, f"{src[0]}:{src[1]}")
        self.agents[dst].receive(parse_message(data), PeerInfo("udp", dst, src), self.now)
        self.flush()

    def _collect(self, ua: UserAgent) -> None:
        events = ua.next_events()
        if events:
            self.events[ua.name].extend((self.now, ev) for ev in events)

    # -- time --------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        deadlines = [t for ua in self.agents.values() if (t := ua.get_timer()) is not None]
        return min(deadlines) if deadlines else None

    def run_until(self, until: float) -> None:
        """Advance time to ``until``, firing every timer on the way at its exact deadline."""
        self.flush()
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            for ua in list(self.agents.values()):
                timer = ua.get_timer()
                if timer is not None and timer <= self.now:
                    ua.handle_timer(self.now)
            self.flush()
        self.now = until
        self.flush()

    # -- looking at what happened ----------------------------------------------------------------
    def all_events(self, name: str, kind: type[E]) -> list[tuple[float, E]]:
        return [(t, ev) for t, ev in self.events[name] if isinstance(ev, kind)]

    def event(self, name: str, kind: type[E]) -> E:
        """The one event of ``kind`` the agent ``name`` emitted (fails on zero or several)."""
        found = self.all_events(name, kind)
        assert len(found) == 1, f"{name}: expected one {kind.__name__}, got {found}"
        return found[0][1]

    def last(self, name: str, kind: type[E]) -> E:
        found = self.all_events(name, kind)
        assert found, f"{name}: no {kind.__name__}"
        return found[-1][1]

    def ladder(self, *, dropped: bool = True) -> list[tuple[float, str, str]]:
        """``(time, "A>B", label)`` for every message, in order."""
        return [
            (w.time, f"{w.src}>{w.dst}", w.label + (" [lost]" if w.dropped else ""))
            for w in self.wire
            if dropped or not w.dropped
        ]

    def sent(self, src: str, what: str) -> list[Wire]:
        """Messages from ``src`` whose ladder label starts with ``what``."""
        return [w for w in self.wire if w.src == src and w.label.startswith(what)]


def call_between(
    net: Net,
    a: UserAgent,
    b: UserAgent,
    *,
    sdp: bytes | None = SDP_A,
    answer: bytes | None = SDP_B,
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[Any, Any]:
    """``a`` calls ``b``, ``b`` answers at once; returns both sides' CallRefs."""
    from sbcsim.dialog.events import IncomingCall

    host, port = net.address_of(b)
    call = a.invite(
        f"sip:{b.name.lower()}@{host}:{port}",
        from_=f"<sip:{a.name.lower()}@example.com>",
        to=f"<sip:{b.name.lower()}@example.com>",
        remote=(host, port),
        sdp=sdp,
        headers=headers,
        now=net.now,
    )
    net.flush()
    incoming = net.last(b.name, IncomingCall)
    b.respond(incoming.call, 200, sdp=answer, now=net.now)
    net.flush()
    return call, incoming.call
