"""Two live sbcsim nodes over mutual TLS, as the Microsoft proxy and an SBC talk.

Both sides present a certificate from the lab CA and both require and validate the other's; the
caller reaches the SBC by IP address and names it in SNI, and the SBC's certificate carries only
that DNS name, so the host check is made against the SNI name.  Real sockets on 127.0.0.1, every
wait bounded, the seeds fixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sbcsim.certs import CertFiles, LabCA
from sbcsim.dialog import CallFailed, IncomingCall
from sbcsim.endpoints.basic import AnsweringUas, CallGenerator, CallStats
from sbcsim.errors import TransportError
from sbcsim.net.base import Address, TlsIdentity, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.node import Node
from sbcsim.stack import live_node

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
SBC_NAME = "sbc1.contoso.example"
PROXY_NAME = "sip.pstnhub.microsoft.com"
CALLS = 100
RATE = 200.0
WAIT = 30.0


@dataclass(frozen=True)
class Lab:
    ca_file: Path
    sbc: CertFiles
    proxy: CertFiles


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    ca = LabCA.create()
    return Lab(
        ca_file=ca.write(tmp_path, "ca").cert_file,
        sbc=ca.issue([SBC_NAME]).write(tmp_path, "sbc"),
        proxy=ca.issue([PROXY_NAME]).write(tmp_path, "proxy"),
    )


@pytest.fixture
async def closing() -> AsyncIterator[list[LiveTransport]]:
    transports: list[LiveTransport] = []
    yield transports
    for live in transports:
        await live.aclose()


async def mtls_node(
    name: str, cert: CertFiles, lab: Lab, closing: list[LiveTransport]
) -> tuple[Node, LiveTransport]:
    """A TLS node that requires a client certificate from the lab CA and presents ``cert`` on
    both its listener and its outgoing connections (validating servers by name)."""
    node, live = await live_node(
        name,
        HOST,
        transport="tls",
        server_ssl=server_context(
            cert.cert_file, cert.key_file, lab.ca_file, require_client_cert=True
        ),
        client_ssl=client_context(lab.ca_file, cert.cert_file, cert.key_file),
        seed=11,
    )
    closing.append(live)
    return node, live


def resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    """``on_done`` for a generator: resolve ``fut`` (once)."""

    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve


def record(node: Node) -> list[Any]:
    """Keep every event the node's endpoint sees (the endpoint still handles them)."""
    seen: list[Any] = []
    inner = node.on_event
    assert inner is not None

    def on_event(event: object) -> None:
        seen.append(event)
        inner(event)

    node.on_event = on_event
    return seen


async def test_hundred_calls_between_two_nodes_over_mutual_tls(
    lab: Lab, closing: list[LiveTransport]
) -> None:
    sbc, sbc_live = await mtls_node("sbc", lab.sbc, lab, closing)
    proxy, proxy_live = await mtls_node("proxy", lab.proxy, lab, closing)
    uas = AnsweringUas(sbc)
    sbc_events = record(sbc)
    sbc_port = sbc_live.address("tls")[1]
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gen = CallGenerator(
        proxy,
        f"sip:+15550100@{SBC_NAME}:{sbc_port};transport=tls",
        (HOST, sbc_port),
        transport="tls",
        calls=CALLS,
        rate=RATE,
        server_name=SBC_NAME,
        on_done=resolver(done),
    )

    gen.start()
    await asyncio.wait_for(done, WAIT)

    assert gen.stats == CallStats(started=CALLS, established=CALLS, completed=CALLS, failed=0)
    assert uas.stats == CallStats(started=CALLS, established=CALLS, completed=CALLS, failed=0)
    # The SBC saw the proxy's certificate and the name the proxy asked for, on every call.
    incoming = [e for e in sbc_events if isinstance(e, IncomingCall)]
    assert len(incoming) == CALLS
    assert {(e.peer.peer_identity, e.peer.server_name) for e in incoming} == {
        (TlsIdentity(names=(PROXY_NAME,)), SBC_NAME)
    }
    # One connection carried everything; each side holds the other's validated names.
    [at_proxy] = proxy_live.connections()
    assert at_proxy.remote == (HOST, sbc_port)
    assert at_proxy.peer_identity == TlsIdentity(names=(SBC_NAME,))
    assert at_proxy.server_name == SBC_NAME
    [at_sbc] = sbc_live.connections()
    assert at_sbc.remote == at_proxy.local
    assert at_sbc.peer_identity == TlsIdentity(names=(PROXY_NAME,))
    assert at_sbc.server_name == SBC_NAME
    assert at_sbc.extra["tls_version"] == at_proxy.extra["tls_version"] == "TLSv1.3"


async def test_a_wrong_sni_name_fails_the_call_at_the_handshake(
    lab: Lab, closing: list[LiveTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name check is real: asking for a name the SBC's certificate does not carry fails
    the handshake on the caller's side, and the INVITE fails with 503 without reaching the SBC."""
    sbc, sbc_live = await mtls_node("sbc", lab.sbc, lab, closing)
    proxy, proxy_live = await mtls_node("proxy", lab.proxy, lab, closing)
    uas = AnsweringUas(sbc)
    sbc_events = record(sbc)
    sbc_port = sbc_live.address("tls")[1]
    errors: list[tuple[Address, TransportName, TransportError]] = []
    inner_error = proxy.transport_error

    def transport_error(remote: Address, transport: TransportName, exc: TransportError) -> None:
        errors.append((remote, transport, exc))
        inner_error(remote, transport, exc)

    monkeypatch.setattr(proxy, "transport_error", transport_error)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gen = CallGenerator(
        proxy,
        f"sip:+15550100@{SBC_NAME}:{sbc_port};transport=tls",
        (HOST, sbc_port),
        transport="tls",
        calls=1,
        rate=1.0,
        server_name="sbc2.contoso.example",
        on_done=resolver(done),
    )
    proxy_events = record(proxy)

    gen.start()
    await asyncio.wait_for(done, WAIT)

    assert gen.stats.failed == 1 and gen.stats.established == 0
    [failed] = [e for e in proxy_events if isinstance(e, CallFailed)]
    assert failed.status == 503
    [(remote, transport, exc)] = errors
    assert (remote, transport) == ((HOST, sbc_port), "tls")
    assert exc.msg == (
        f"TLS handshake with {HOST}:{sbc_port}/tls (SNI sbc2.contoso.example) failed: "
        "Hostname mismatch, certificate is not valid for 'sbc2.contoso.example'.: "
        "the certificate does not carry the expected host name"
    )
    assert uas.stats.started == 0
    assert [e for e in sbc_events if isinstance(e, IncomingCall)] == []
    assert proxy_live.connections() == []
