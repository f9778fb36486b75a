"""LiveTransport over UDP: real sockets on 127.0.0.1 and ::1, on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.udp import canonical_host, format_address

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
WAIT = 5.0

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """Run a test coroutine on a fresh loop of each kind, bounded as a whole."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=LOOP_FACTORIES[request.param]) as r:
            return r.run(asyncio.wait_for(coro, 4 * WAIT))

    return runner


class Recorder:
    """A Receiver that queues what it is told, so a test can await it."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[bytes, PeerInfo]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Address, TransportName, TransportError]] = asyncio.Queue()

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        self.messages.put_nowait((data, peer))

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        self.errors.put_nowait((remote, transport, exc))

    async def message(self) -> tuple[bytes, PeerInfo]:
        return await asyncio.wait_for(self.messages.get(), WAIT)

    async def error(self) -> tuple[Address, TransportName, TransportError]:
        return await asyncio.wait_for(self.errors.get(), WAIT)


def options(n: int) -> bytes:
    return (
        f"OPTIONS sip:sbc.example.com SIP/2.0\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_round_trip_source_port_is_the_listening_port(run: Run[None]) -> None:
    async def scenario() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = LiveTransport(ra), LiveTransport(rb)
        try:
            addr_a = await a.listen_udp("127.0.0.1", 0)
            addr_b = await b.listen_udp("127.0.0.1", 0)
            assert addr_a[0] == "127.0.0.1" and addr_a[1] != 0
            assert a.local_addresses == (addr_a,)
            assert a.address("udp") == addr_a

            a.send(options(1), addr_b, "udp")
            data, peer = await rb.message()
            assert data == options(1)
            assert peer == PeerInfo(transport="udp", local=addr_b, remote=addr_a)

            b.send(options(2), peer.remote, "udp")
            data, peer = await ra.message()
            assert (data, peer.remote, peer.local) == (options(2), addr_b, addr_a)
            assert ra.errors.empty() and rb.errors.empty()
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_ipv6_loopback_round_trip(run: Run[None]) -> None:
    async def scenario() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = LiveTransport(ra), LiveTransport(rb)
        try:
            # a listens on both families: a datagram to ::1 must leave from its IPv6 socket.
            await a.listen_udp("127.0.0.1", 0)
            addr_a6 = await a.listen_udp("::1", 0)
            addr_b = await b.listen_udp("::1", 0)
            assert addr_a6[0] == "::1"
            a.send(options(1), ("::1", addr_b[1]), "udp")
            data, peer = await rb.message()
            assert (data, peer.remote, peer.local) == (options(1), addr_a6, addr_b)
            b.send(options(2), peer.remote, "udp")
            assert (await ra.message())[1].remote == addr_b
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_crlf_keepalive_datagrams_are_not_messages(run: Run[None]) -> None:
    async def scenario() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = LiveTransport(ra), LiveTransport(rb)
        try:
            await a.listen_udp("127.0.0.1", 0)
            addr_b = await b.listen_udp("127.0.0.1", 0)
            a.send(b"\r\n\r\n", addr_b, "udp")
            a.send(options(7), addr_b, "udp")
            # Loopback UDP keeps order: the first thing delivered is the real message.
            assert (await rb.message())[0] == options(7)
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_without_a_listener_an_ephemeral_socket_is_used(run: Run[None]) -> None:
    async def scenario() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = LiveTransport(ra), LiveTransport(rb)
        try:
            addr_b = await b.listen_udp("127.0.0.1", 0)
            a.send(options(1), addr_b, "udp")
            a.send(options(2), addr_b, "udp")
            (d1, p1), (d2, p2) = await rb.message(), await rb.message()
            assert (d1, d2) == (options(1), options(2))
            assert p1.remote == p2.remote and p1.remote[1] != 0
            # The answer comes back to that socket.
            b.send(options(3), p1.remote, "udp")
            data, peer = await ra.message()
            assert (data, peer.remote) == (options(3), addr_b)
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_send_to_a_host_name(run: Run[None]) -> None:
    async def scenario() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = LiveTransport(ra), LiveTransport(rb)
        try:
            addr_a = await a.listen_udp("127.0.0.1", 0)
            _, port_b = await b.listen_udp("127.0.0.1", 0)
            # "localhost" is resolved without blocking; the IPv4 answer is taken because that
            # is the family a listens on, so the datagram still leaves from a's port.
            a.send(options(1), ("localhost", port_b), "udp")
            data, peer = await rb.message()
            assert (data, peer.remote) == (options(1), addr_a)
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_unknown_transport_is_reported(run: Run[None]) -> None:
    async def scenario() -> None:
        ra = Recorder()
        a = LiveTransport(ra)
        try:
            a.send(options(1), ("127.0.0.1", 5060), "sctp")  # type: ignore[arg-type]
            remote, transport, exc = await ra.error()
            assert (remote, transport) == (("127.0.0.1", 5060), "sctp")
            assert exc.msg == "unknown transport 'sctp' for 127.0.0.1:5060"
        finally:
            await a.aclose()

    run(scenario())


def test_port_in_use(run: Run[None]) -> None:
    async def scenario() -> None:
        a, b = LiveTransport(Recorder()), LiveTransport(Recorder())
        try:
            _, port = await a.listen_udp("127.0.0.1", 0)
            with pytest.raises(TransportError) as info:
                await b.listen_udp("127.0.0.1", port)
            assert info.value.msg == f"127.0.0.1:{port}/udp is already in use"
            assert info.value.address == ("127.0.0.1", port)
            _, port6 = await a.listen_udp("::1", 0)
            with pytest.raises(TransportError, match=rf"^\[::1\]:{port6}/udp is already in use$"):
                await b.listen_udp("::1", port6)
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


def test_address_not_on_this_host(run: Run[None]) -> None:
    async def scenario() -> None:
        a = LiveTransport(Recorder())
        try:
            with pytest.raises(TransportError) as info:
                await a.listen_udp("192.0.2.1", 0)  # TEST-NET-1, never assigned locally
            assert info.value.msg == (
                "cannot listen on 192.0.2.1:0/udp: the address does not belong to this host"
            )
        finally:
            await a.aclose()

    run(scenario())


def test_send_after_close_is_reported_not_raised(run: Run[None]) -> None:
    async def scenario() -> None:
        ra = Recorder()
        a = LiveTransport(ra)
        await a.listen_udp("127.0.0.1", 0)
        await a.aclose()
        a.send(options(1), ("127.0.0.1", 9), "udp")
        assert ra.errors.empty()  # never from inside send()
        remote, transport, exc = await ra.error()
        assert (remote, transport) == (("127.0.0.1", 9), "udp")
        assert exc.msg == "cannot send to 127.0.0.1:9/udp: the transport is closed"
        with pytest.raises(TransportError, match="the transport is closed"):
            await a.listen_udp("127.0.0.1", 0)

    run(scenario())


def test_receiver_exception_does_not_kill_the_socket(run: Run[None]) -> None:
    class Exploding(Recorder):
        def message_received(self, data: bytes, peer: PeerInfo) -> None:
            if data == options(1):
                raise RuntimeError("bug in the layer above")
            super().message_received(data, peer)

    async def scenario() -> None:
        import structlog

        rb = Exploding()
        a, b = LiveTransport(Recorder()), LiveTransport(rb)
        try:
            await a.listen_udp("127.0.0.1", 0)
            addr_b = await b.listen_udp("127.0.0.1", 0)
            with structlog.testing.capture_logs() as logs:
                a.send(options(1), addr_b, "udp")
                a.send(options(2), addr_b, "udp")
                assert (await rb.message())[0] == options(2)
            failed = [e for e in logs if e["event"] == "receiver_failed"]
            assert len(failed) == 1
            assert failed[0]["transport"] == "udp"
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("SBC.Example.COM.", "sbc.example.com"),
    ],
)
def test_canonical_host(host: str, expected: str) -> None:
    assert canonical_host(host) == expected


def test_format_address() -> None:
    assert format_address(("127.0.0.1", 5060)) == "127.0.0.1:5060"
    assert format_address(("::1", 5061)) == "[::1]:5061"


def test_ipv6_socket_is_v6_only(run: Run[None]) -> None:
    async def scenario() -> None:
        # A wildcard IPv6 listener must leave the same IPv4 port free for an IPv4 listener.
        a = LiveTransport(Recorder())
        try:
            _, port = await a.listen_udp("::", 0)
            assert await a.listen_udp("0.0.0.0", port) == ("0.0.0.0", port)
            assert [addr for _, addr in a.listeners] == [("::", port), ("0.0.0.0", port)]
        finally:
            await a.aclose()

    run(scenario())
