"""LiveTransport over TCP: framing, reuse, keep-alives, errors, back-pressure, idle close.

Real sockets on 127.0.0.1 and ::1, each test on the default loop and on uvloop.  A "raw" peer is
a plain asyncio stream, so the bytes on the wire are exactly what the test wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import structlog
import uvloop

from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TransportLayer, TransportName
from sbcsim.net.live import LiveTransport

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


def invite(n: int, body: bytes = b"") -> bytes:
    return (
        f"INVITE sip:+12065550100@sbc.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-{n}\r\n"
        f"CSeq: {n} INVITE\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


async def server() -> tuple[LiveTransport, Recorder, Address]:
    rec = Recorder()
    transport = LiveTransport(rec)
    addr = await transport.listen_tcp("127.0.0.1", 0)
    return transport, rec, addr


async def free_port() -> int:
    """A port that was free a moment ago (bound and released), for "connection refused"."""
    probe = LiveTransport(Recorder())
    _, port = await probe.listen_tcp("127.0.0.1", 0)
    await probe.aclose()
    return port


def test_message_split_in_many_chunks(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec, addr = await server()
        _reader, writer = await asyncio.open_connection(*addr)
        try:
            message = invite(1, SDP)
            for i in range(0, len(message), 7):
                writer.write(message[i : i + 7])
                await writer.drain()
            data, peer = await rec.message()
            assert data == message
            assert peer.transport == "tcp"
            assert peer.local == addr
            assert peer.remote == writer.get_extra_info("sockname")[:2]
            assert isinstance(peer.connection_id, int)
            assert peer.peer_identity is None
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_two_messages_in_one_write(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec, addr = await server()
        _reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(invite(1, SDP) + invite(2))
            (d1, p1), (d2, p2) = await rec.message(), await rec.message()
            assert (d1, d2) == (invite(1, SDP), invite(2))
            assert p1.connection_id == p2.connection_id
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_connection_reuse_both_ways(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await server()
        rec_a = Recorder()
        a = LiveTransport(rec_a)
        try:
            a.send(invite(1), addr_b, "tcp")
            a.send(invite(2), addr_b, "tcp")
            (d1, p1), (d2, p2) = await rec_b.message(), await rec_b.message()
            assert (d1, d2) == (invite(1), invite(2))
            assert p1.connection_id == p2.connection_id
            [a_conn] = a.connections()
            [b_conn] = srv.connections()
            assert b_conn.connection_id == p1.connection_id
            assert a_conn.connection_id != b_conn.connection_id  # unique in the process
            assert a_conn.remote == addr_b and a_conn.local == p1.remote

            # A response goes back over the connection its request came in on ...
            srv.send(
                b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n",
                p1.remote,
                "tcp",
                connection_id=p1.connection_id,
            )
            data, peer = await rec_a.message()
            assert data.startswith(b"SIP/2.0 100 Trying")
            assert peer.connection_id == a_conn.connection_id
            # ... and a new request to that peer reuses the inbound connection too.
            srv.send(invite(3), p1.remote, "tcp")
            data, peer = await rec_a.message()
            assert (data, peer.connection_id) == (invite(3), a_conn.connection_id)
            assert len(a.connections()) == 1 and len(srv.connections()) == 1
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_unknown_connection_id_falls_back_to_the_address(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await server()
        a = LiveTransport(Recorder())
        try:
            a.send(invite(1), addr_b, "tcp", connection_id=10**9)
            data, _ = await rec_b.message()
            assert data == invite(1)
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_crlfcrlf_ping_gets_crlf_pong(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec, addr = await server()
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
            # A pong from the peer (lone CRLF) is absorbed; the stream stays in sync.
            writer.write(b"\r\n" + invite(1))
            assert (await rec.message())[0] == invite(1)
            assert rec.errors.empty()
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_framing_error_closes_the_connection_and_reports(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec, addr = await server()
        reader, writer = await asyncio.open_connection(*addr)
        try:
            with structlog.testing.capture_logs() as logs:
                writer.write(invite(1) + b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
                assert (await rec.message())[0] == invite(1)  # what came before is delivered
                remote, transport, exc = await rec.error()
                assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the server
            local = writer.get_extra_info("sockname")[:2]
            assert (remote, transport) == (local, "tcp")
            assert exc.address == local
            assert exc.msg == (
                f"framing error on 127.0.0.1:{local[1]}/tcp: Content-Length is mandatory on a "
                "stream transport; connection closed"
            )
            [event] = [e for e in logs if e["event"] == "framing_error"]
            assert event["transport"] == "tcp"
            assert event["remote"] == f"127.0.0.1:{local[1]}"
            assert srv.connections() == []
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_connect_refused_names_the_address(run: Run[None]) -> None:
    async def scenario() -> None:
        port = await free_port()
        rec = Recorder()
        a = LiveTransport(rec)
        try:
            a.send(invite(1), ("127.0.0.1", port), "tcp")
            assert rec.errors.empty()
            remote, transport, exc = await rec.error()
            assert (remote, transport) == (("127.0.0.1", port), "tcp")
            assert exc.address == ("127.0.0.1", port)
            assert exc.msg == (
                f"cannot connect to 127.0.0.1:{port}/tcp: connection refused: "
                "nothing is listening there"
            )
            assert a.connections() == []
            # The next send tries again (no stale connection is kept).
            a.send(invite(2), ("127.0.0.1", port), "tcp")
            assert (await rec.error())[2].msg == exc.msg
        finally:
            await a.aclose()

    run(scenario())


def test_peer_close_is_clean_and_next_send_reconnects(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await server()
        rec_a = Recorder()
        a = LiveTransport(rec_a)
        try:
            a.send(invite(1), addr_b, "tcp")
            _, first = await rec_b.message()
            [a_info] = a.connections()
            a_conn = a.connection(a_info.connection_id)  # type: ignore[arg-type]
            assert a_conn is not None
            srv.connection(first.connection_id).close()  # type: ignore[arg-type, union-attr]
            await asyncio.wait_for(a_conn.wait_closed(), WAIT)
            assert a.connections() == [] and a.connection(a_conn.id) is None
            a.send(invite(2), addr_b, "tcp")
            data, second = await rec_b.message()
            assert data == invite(2)
            assert second.connection_id != first.connection_id
            assert rec_a.errors.empty() and rec_b.errors.empty()  # a clean close is no error
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_idle_connection_is_closed(run: Run[None]) -> None:
    async def scenario() -> None:
        rec = Recorder()
        srv = LiveTransport(rec, idle_timeout=0.05)
        addr = await srv.listen_tcp("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*addr)
        try:
            with structlog.testing.capture_logs() as logs:
                writer.write(invite(1))
                await rec.message()
                assert await asyncio.wait_for(reader.read(), WAIT) == b""
            assert [e["event"] for e in logs if e["event"] == "idle_timeout"] == ["idle_timeout"]
            assert rec.errors.empty()
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_slow_reader_fills_the_send_buffer(run: Run[None]) -> None:
    async def scenario() -> None:
        opened: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(invite(0))  # so that the client knows the connection is up
            opened.set_result(writer)

        peer = await asyncio.start_server(never_reads, "127.0.0.1", 0)
        addr = peer.sockets[0].getsockname()[:2]
        rec = Recorder()
        a = LiveTransport(rec, max_send_buffer=256 * 1024)
        try:
            a.send(b"", addr, "tcp")  # connect only
            await rec.message()
            big = invite(1, b"x" * 60000)
            for _ in range(1000):  # far more than socket buffers plus 256 KiB
                a.send(big, addr, "tcp")
                if a.connections() == []:
                    break
            remote, transport, exc = await rec.error()
            assert (remote, transport) == (addr, "tcp")
            assert exc.msg.startswith(f"send buffer for 127.0.0.1:{addr[1]}/tcp is full (")
            assert exc.msg.endswith(" bytes queued): the peer is not reading")
        finally:
            await a.aclose()
            if opened.done():
                opened.result().close()
            peer.close()

    run(scenario())


def test_connect_to_a_host_name(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await server()
        a = LiveTransport(Recorder())
        try:
            a.send(invite(1), ("LocalHost", addr_b[1]), "tcp")
            data, peer = await rec_b.message()
            assert data == invite(1)
            [info] = a.connections()
            assert info.remote == ("localhost", addr_b[1])  # the key it was asked for
            assert info.local == peer.remote
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_live_transport_is_a_transport_layer() -> None:
    layer: TransportLayer = LiveTransport(Recorder())  # checked by mypy, too
    assert callable(layer.send) and callable(layer.close)


def test_ipv6_loopback(run: Run[None]) -> None:
    async def scenario() -> None:
        rec_b = Recorder()
        srv = LiveTransport(rec_b)
        addr_b = await srv.listen_tcp("::1", 0)
        a = LiveTransport(Recorder())
        try:
            assert addr_b[0] == "::1"
            a.send(invite(1), ("::1", addr_b[1]), "tcp")
            data, peer = await rec_b.message()
            assert data == invite(1)
            assert peer.remote[0] == "::1" and peer.local == addr_b
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_port_in_use(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, _, (host, port) = await server()
        other = LiveTransport(Recorder())
        try:
            with pytest.raises(TransportError) as info:
                await other.listen_tcp(host, port)
            assert info.value.msg == f"127.0.0.1:{port}/tcp is already in use"
        finally:
            await other.aclose()
            await srv.aclose()

    run(scenario())


def test_receiver_exception_keeps_the_connection(run: Run[None]) -> None:
    class Exploding(Recorder):
        def message_received(self, data: bytes, peer: PeerInfo) -> None:
            if data == invite(1):
                raise RuntimeError("bug in the layer above")
            super().message_received(data, peer)

    async def scenario() -> None:
        rec = Exploding()
        srv = LiveTransport(rec)
        addr = await srv.listen_tcp("127.0.0.1", 0)
        _reader, writer = await asyncio.open_connection(*addr)
        try:
            with structlog.testing.capture_logs() as logs:
                writer.write(invite(1) + invite(2))
                assert (await rec.message())[0] == invite(2)
            [event] = [e for e in logs if e["event"] == "receiver_failed"]
            assert event["transport"] == "tcp"
            assert len(srv.connections()) == 1
        finally:
            writer.close()
            await srv.aclose()

    run(scenario())


def test_close_closes_connections_quietly(run: Run[None]) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await server()
        rec_a = Recorder()
        a = LiveTransport(rec_a)
        try:
            a.send(invite(1), addr_b, "tcp")
            await rec_b.message()
            [a_info] = a.connections()
            a_conn = a.connection(a_info.connection_id)  # type: ignore[arg-type]
            assert a_conn is not None
            await srv.aclose()
            assert srv.closed and srv.connections() == []
            await asyncio.wait_for(a_conn.wait_closed(), WAIT)
            # Nothing is listening any more: the next send reconnects and is refused.
            a.send(invite(2), addr_b, "tcp")
            remote, transport, exc = await rec_a.error()
            assert (remote, transport) == (addr_b, "tcp")
            assert "connection refused" in exc.msg
            assert rec_a.errors.empty() and rec_b.errors.empty()
        finally:
            await a.aclose()

    run(scenario())
