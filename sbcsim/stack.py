"""Building SIP nodes: one UserAgent on one transport, in simulation or live.

The two builders differ only in what they inject — the simulator's clock, timers and memory
network, or the asyncio loop's clock, timers and real sockets — which is the whole point of the
sans-I/O design: the node code is the same.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sbcsim.clock import LoopClock
from sbcsim.dialog import SessionTimerConfig, UserAgent
from sbcsim.ids import IdGenerator
from sbcsim.net.base import TlsIdentity, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.memory import MemoryNetwork
from sbcsim.node import Node
from sbcsim.sim import Simulator
from sbcsim.sip.uri import SipUri
from sbcsim.transaction.timers import TimerConfig

__all__ = ["UaOptions", "live_node", "make_ua", "sim_node"]

DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class UaOptions:
    """What distinguishes one UA from another besides its address."""

    user: str | None = None
    user_agent: str = "sbcsim"
    session_timer: SessionTimerConfig = field(
        default_factory=lambda: SessionTimerConfig(enabled=False)
    )
    timers: TimerConfig = field(default_factory=TimerConfig)
    contact_host: str | None = None  # an FQDN for Contact instead of the IP
    app_answers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def make_ua(
    name: str,
    host: str,
    port: int,
    transport: TransportName,
    *,
    ids: IdGenerator,
    rand: Callable[[], float],
    options: UaOptions = UaOptions(),
) -> UserAgent:
    contact_host = options.contact_host or (f"[{host}]" if ":" in host else host)
    params: tuple[tuple[str, str | None], ...] = (
        () if transport == "udp" else (("transport", transport),)
    )
    contact = SipUri(user_raw=options.user, host=contact_host, port=port, params=params)
    via_host = f"[{host}]" if ":" in host else host
    return UserAgent(
        ids=ids,
        random=rand,
        contact=contact,
        sent_by=f"{options.contact_host or via_host}:{port}",
        transport=transport,
        timers=options.timers,
        session_timer=options.session_timer,
        user_agent=options.user_agent,
        name=name,
        app_answers=options.app_answers,
        **options.extra,
    )


def sim_node(
    sim: Simulator,
    network: MemoryNetwork,
    name: str,
    host: str,
    *,
    transport: TransportName = "udp",
    port: int | None = None,
    tls_identity: TlsIdentity | None = None,
    require_client_cert: bool = False,
    trusted: Callable[[TlsIdentity], bool] | None = None,
    on_event: Callable[[Any], None] | None = None,
    options: UaOptions = UaOptions(),
) -> Node:
    """A node on the memory network, driven by the simulator's clock and timers."""
    port = port or DEFAULT_PORTS[transport]
    ua = make_ua(
        name,
        host,
        port,
        transport,
        ids=IdGenerator(sim.derive_rng(f"ids:{name}")),
        rand=sim.derive_rng(f"rand:{name}").random,
        options=options,
    )
    node = Node(name, ua, sim.clock, sim.call_at, on_event=on_event)
    ports: dict[str, Sequence[int]] = {"udp_ports": (), "tcp_ports": (), "tls_ports": ()}
    ports[f"{transport}_ports"] = (port,)
    node.attach(
        network.attach(
            host,
            node,
            tls_identity=tls_identity,
            require_client_cert=require_client_cert,
            trusted=trusted,
            **ports,
        )
    )
    return node


async def live_node(
    name: str,
    host: str,
    *,
    transport: TransportName = "udp",
    port: int = 0,
    server_ssl: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
    on_event: Callable[[Any], None] | None = None,
    options: UaOptions = UaOptions(),
    seed: int | None = None,
) -> tuple[Node, LiveTransport]:
    """A node on real sockets, driven by the running asyncio loop.  ``port=0`` binds any port;
    the Contact and Via carry the port actually bound."""
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    rng = random.Random(seed)
    holder: list[Node] = []

    class _Receiver:
        # The transport needs a receiver before the node exists (the node needs the bound port).
        def message_received(self, data: bytes, peer: Any) -> None:
            holder[0].message_received(data, peer)

        def transport_error(self, remote: Any, transport: Any, exc: Any) -> None:
            holder[0].transport_error(remote, transport, exc)

    live = LiveTransport(_Receiver(), loop, client_ssl_context=client_ssl)
    if transport == "udp":
        bound = await live.listen_udp(host, port)
    elif transport == "tcp":
        bound = await live.listen_tcp(host, port)
    else:
        if server_ssl is None:
            raise ValueError("a TLS node needs a server SSL context")
        bound = await live.listen_tls(host, port, server_ssl)
    ua = make_ua(
        name, host, bound[1], transport, ids=IdGenerator(rng), rand=rng.random, options=options
    )

    def call_at(when: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return loop.call_at(when, fn)

    node = Node(name, ua, clock, call_at, on_event=on_event)
    node.attach(live)
    holder.append(node)
    return node, live
