"""LiveTransport over TLS with certificates from the lab CA: SNI, mutual TLS, and what fails how.

Real handshakes on 127.0.0.1, each test on the default loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
import uvloop

from sbcsim.certs import CertFiles, LabCA
from sbcsim.errors import ConfigError, TransportError
from sbcsim.net.base import Address, PeerInfo, TlsIdentity, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import (
    certificate_names,
    client_context,
    name_matches,
    server_context,
    ssl_failure_hint,
)

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
        f"OPTIONS sip:sbc.example.com:5061;transport=tls SIP/2.0\r\n"
        f"CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Pki:
    ca: CertFiles
    rogue_ca: CertFiles
    sbc: CertFiles  # sbc.example.com
    wildcard: CertFiles  # *.customers.example.com
    by_ip: CertFiles  # 127.0.0.1 and ::1
    proxy: CertFiles  # sip.pstnhub.microsoft.com, the client side of mutual TLS
    rogue_proxy: CertFiles  # same name, signed by the rogue CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = LabCA.create(), LabCA.create("rogue CA")
    return Pki(
        ca=ca.write(d, "ca"),
        rogue_ca=rogue.write(d, "rogue-ca"),
        sbc=ca.issue(["sbc.example.com"]).write(d, "sbc"),
        wildcard=ca.issue(["*.customers.example.com"]).write(d, "wildcard"),
        by_ip=ca.issue(["127.0.0.1", "::1"]).write(d, "by-ip"),
        proxy=ca.issue(["sip.pstnhub.microsoft.com", "sip2.pstnhub.microsoft.com"]).write(
            d, "proxy"
        ),
        rogue_proxy=rogue.issue(["sip.pstnhub.microsoft.com"]).write(d, "rogue-proxy"),
    )


def server_ctx(pki: Pki, cert: CertFiles | None = None, *, require: bool = True) -> ssl.SSLContext:
    cert = cert or pki.sbc
    return server_context(
        cert.cert_file, cert.key_file, pki.ca.cert_file, require_client_cert=require
    )


def client_ctx(
    pki: Pki, cert: CertFiles | None = None, ca: CertFiles | None = None
) -> ssl.SSLContext:
    ca_file = (ca or pki.ca).cert_file
    if cert is None:
        return client_context(ca_file)
    return client_context(ca_file, cert.cert_file, cert.key_file)


async def tls_server(
    ctx: ssl.SSLContext, host: str = "127.0.0.1"
) -> tuple[LiveTransport, Recorder, Address]:
    rec = Recorder()
    transport = LiveTransport(rec)
    addr = await transport.listen_tls(host, 0, ctx)
    return transport, rec, addr


def test_mutual_tls_with_sni(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki))
        rec_a = Recorder()
        a = LiveTransport(rec_a, client_ssl_context=client_ctx(pki, pki.proxy))
        try:
            with structlog.testing.capture_logs() as logs:
                a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
                data, peer = await rec_b.message()
            assert data == options(1)
            assert peer.transport == "tls" and peer.local == addr_b
            assert peer.peer_identity == TlsIdentity(
                names=("sip.pstnhub.microsoft.com", "sip2.pstnhub.microsoft.com")
            )
            assert peer.server_name == "sbc.example.com"  # the SNI the client sent
            assert peer.extra["tls_version"] == "TLSv1.3"

            srv.send(
                b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                peer.remote,
                "tls",
                connection_id=peer.connection_id,
            )
            data, back = await rec_a.message()
            assert data.startswith(b"SIP/2.0 200 OK")
            assert back.peer_identity == TlsIdentity(names=("sbc.example.com",))
            assert back.server_name == "sbc.example.com"
            assert back.remote == addr_b
            assert rec_a.errors.empty() and rec_b.errors.empty()
            opened = [e for e in logs if e["event"] == "connection_opened"]
            assert {e["direction"] for e in opened} == {"inbound", "outbound"}
            assert all(e["transport"] == "tls" for e in opened)
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_tls_1_2_client_is_accepted(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki))
        ctx = client_ctx(pki, pki.proxy)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        a = LiveTransport(Recorder(), client_ssl_context=ctx)
        try:
            a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
            _, peer = await rec_b.message()
            assert peer.extra["tls_version"] == "TLSv1.2"
            assert peer.peer_identity is not None
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_optional_client_certificate(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=False))
        a = LiveTransport(Recorder(), client_ssl_context=client_ctx(pki))
        try:
            a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
            _, peer = await rec_b.message()
            assert peer.peer_identity is None
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_client_certificate_missing_when_required(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=True))
        rec_a = Recorder()
        a = LiveTransport(rec_a, client_ssl_context=client_ctx(pki))  # no client certificate
        try:
            with structlog.testing.capture_logs() as logs:
                a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
                remote, transport, exc = await rec_b.error()
                # TLS 1.3: the client's side of the handshake is over before the server
                # checks; the server then drops the connection without a word.
                a_remote, a_transport, a_exc = await rec_a.error()
            assert transport == "tls" and remote[0] == "127.0.0.1"
            assert exc.msg == (
                f"TLS handshake with 127.0.0.1:{remote[1]}/tls failed: peer did not return a "
                "certificate: the client sent no certificate but one is required"
            )
            assert (a_remote, a_transport) == (addr_b, "tls")
            assert a_exc.msg == (
                f"connection to 127.0.0.1:{addr_b[1]}/tls (SNI sbc.example.com) closed by the "
                "server before it sent anything: it probably rejected our client certificate, "
                "or requires one"
            )
            assert rec_b.messages.empty()
            [failed] = [e for e in logs if e["event"] == "tls_handshake_failed"]
            assert failed["transport"] == "tls"
            assert failed["remote"] == f"127.0.0.1:{remote[1]}"
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_client_certificate_from_an_unknown_ca(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=True))
        a = LiveTransport(Recorder(), client_ssl_context=client_ctx(pki, pki.rogue_proxy))
        try:
            a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
            _, _, exc = await rec_b.error()
            assert exc.msg.endswith(
                "failed: unable to get local issuer certificate: "
                "the certificate is not signed by a trusted CA"
            )
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_server_certificate_from_an_unknown_ca(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=False))
        rec_a = Recorder()
        a = LiveTransport(rec_a, client_ssl_context=client_ctx(pki, ca=pki.rogue_ca))
        try:
            with structlog.testing.capture_logs() as logs:
                a.send(options(1), addr_b, "tls", server_name="sbc.example.com")
                remote, transport, exc = await rec_a.error()
                _, _, server_exc = await rec_b.error()
            assert (remote, transport) == (addr_b, "tls")
            assert exc.address == addr_b
            # The server sends its CA along (OpenSSL completes the chain from its trust store),
            # so the client sees a chain ending in a self-signed root it does not trust.
            assert exc.msg == (
                f"TLS handshake with 127.0.0.1:{addr_b[1]}/tls (SNI sbc.example.com) failed: "
                "self-signed certificate in certificate chain: the chain ends in a CA that is "
                "not trusted"
            )
            # Whether the client's "unknown CA" alert makes it out before it drops the
            # connection is up to the loop; the server explains either case.
            assert server_exc.msg.split(" failed: ", 1)[1] in {
                "tlsv1 alert unknown ca: the peer does not trust the CA that signed our certificate",
                "the client dropped the connection during the handshake: it probably does not "
                "trust our certificate",
            }
            events = [e for e in logs if e["event"] == "tls_handshake_failed"]
            assert len(events) == 2
            assert a.connections() == []
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("sni", "ok"),
    [
        ("tenant1.customers.example.com", True),
        ("TENANT2.Customers.Example.com", True),
        ("customers.example.com", False),
        ("a.b.customers.example.com", False),
    ],
)
def test_wildcard_certificate_against_sni(run: Run[None], pki: Pki, sni: str, ok: bool) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, pki.wildcard, require=False))
        rec_a = Recorder()
        a = LiveTransport(rec_a, client_ssl_context=client_ctx(pki))
        try:
            a.send(options(1), addr_b, "tls", server_name=sni)
            if ok:
                _, peer = await rec_b.message()
                assert peer.server_name == sni
            else:
                _, _, exc = await rec_a.error()
                assert exc.msg.endswith(
                    "failed: Hostname mismatch, certificate is not valid for "
                    f"'{sni}'.: the certificate does not carry the expected host name"
                )
            assert name_matches("*.customers.example.com", sni) is ok  # same verdict as OpenSSL
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_without_server_name_the_address_is_checked(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, pki.by_ip, require=False), "::1")
        a = LiveTransport(Recorder(), client_ssl_context=client_ctx(pki))
        try:
            a.send(options(1), ("::1", addr_b[1]), "tls")
            data, peer = await rec_b.message()
            assert data == options(1)
            assert peer.server_name is None  # an IP address is never sent as SNI
            assert peer.remote[0] == "::1"
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_per_call_client_context(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=True))
        # The construction-time context has no client certificate; the per-call one has.
        a = LiveTransport(Recorder(), client_ssl_context=client_ctx(pki))
        try:
            a.send(
                options(1),
                addr_b,
                "tls",
                server_name="sbc.example.com",
                ssl_context=client_ctx(pki, pki.proxy),
            )
            _, peer = await rec_b.message()
            assert peer.peer_identity is not None
            assert peer.peer_identity.names[0] == "sip.pstnhub.microsoft.com"
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_handshake_timeout(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        # A plain TCP listener never answers the ClientHello.
        tcp = LiveTransport(Recorder())
        addr = await tcp.listen_tcp("127.0.0.1", 0)
        rec_a = Recorder()
        a = LiveTransport(rec_a, client_ssl_context=client_ctx(pki), connect_timeout=0.2)
        try:
            a.send(options(1), addr, "tls", server_name="sbc.example.com")
            remote, transport, exc = await rec_a.error()
            assert (remote, transport) == (addr, "tls")
            assert exc.msg == (
                f"connect or TLS handshake to 127.0.0.1:{addr[1]}/tls (SNI sbc.example.com) "
                "timed out after 0.2 s: the host is down, unreachable or filtered"
            )
        finally:
            await a.aclose()
            await tcp.aclose()

    run(scenario())


def test_plain_sip_sent_to_a_tls_port(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, rec_b, addr_b = await tls_server(server_ctx(pki, require=False))
        a = LiveTransport(Recorder())
        try:
            a.send(options(1), addr_b, "tcp")
            remote, transport, exc = await rec_b.error()
            assert transport == "tls"
            assert exc.msg.startswith(f"TLS handshake with 127.0.0.1:{remote[1]}/tls failed: ")
            assert rec_b.messages.empty()
        finally:
            await a.aclose()
            await srv.aclose()

    run(scenario())


def test_port_in_use(run: Run[None], pki: Pki) -> None:
    async def scenario() -> None:
        srv, _, (host, port) = await tls_server(server_ctx(pki))
        other = LiveTransport(Recorder())
        try:
            with pytest.raises(TransportError) as info:
                await other.listen_tls(host, port, server_ctx(pki))
            assert info.value.msg == f"127.0.0.1:{port}/tls is already in use"
        finally:
            await other.aclose()
            await srv.aclose()

    run(scenario())


# -- contexts ---------------------------------------------------------------------------------


def test_context_policy(pki: Pki) -> None:
    srv = server_ctx(pki, require=True)
    assert srv.minimum_version == ssl.TLSVersion.TLSv1_2
    assert srv.verify_mode == ssl.CERT_REQUIRED
    assert server_ctx(pki, require=False).verify_mode == ssl.CERT_OPTIONAL
    assert server_context(pki.sbc.cert_file, pki.sbc.key_file).verify_mode == ssl.CERT_NONE
    cli = client_ctx(pki, pki.proxy)
    assert cli.minimum_version == ssl.TLSVersion.TLSv1_2
    assert (cli.verify_mode, cli.check_hostname) == (ssl.CERT_REQUIRED, True)
    loose = client_context(pki.ca.cert_file, check_hostname=False)
    assert (loose.verify_mode, loose.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_context_configuration_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="require_client_cert needs a ca_file"):
        server_context(pki.sbc.cert_file, pki.sbc.key_file, require_client_cert=True)
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as info:
        server_context(missing, pki.sbc.key_file)
    assert info.value.msg == (
        f"cannot load certificate {missing} with key {pki.sbc.key_file}: No such file or directory"
    )
    with pytest.raises(ConfigError) as info:
        server_context(pki.sbc.cert_file, pki.proxy.key_file)
    assert info.value.msg.startswith(f"cannot load certificate {pki.sbc.cert_file} with key ")
    assert "key values mismatch" in info.value.msg
    with pytest.raises(ConfigError, match=f"cannot load CA file {missing}"):
        client_context(missing)
    with pytest.raises(ConfigError, match="needs both cert_file and key_file"):
        client_context(pki.ca.cert_file, cert_file=pki.proxy.cert_file)


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "fqdn", "expected"),
    [
        ("sbc.example.com", "sbc.example.com", True),
        ("SBC.Example.com", "sbc.EXAMPLE.com", True),
        ("sbc.example.com.", "sbc.example.com", True),
        ("sbc.example.com", "sbc2.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "A.EXAMPLE.COM", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.customers.example.com", "tenant1.customers.example.com", True),
        ("*.customers.example.com", "customers.example.com", False),
        ("a*.example.com", "ab.example.com", False),
        ("*a.example.com", "ba.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("*", "localhost", False),
        ("*.example.com", "*.example.com", False),
        ("", "example.com", False),
        ("example.com", "", False),
    ],
)
def test_name_matches(pattern: str, fqdn: str, expected: bool) -> None:
    assert name_matches(pattern, fqdn) is expected


def test_certificate_names_from_der_and_dict(pki: Pki) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pem = pki.proxy.cert_file.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert certificate_names(der) == ("sip.pstnhub.microsoft.com", "sip2.pstnhub.microsoft.com")
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    decoded = {
        "subject": ((("commonName", "cn.example.com"),),),
        "subjectAltName": (
            ("DNS", "a.example.com"),
            ("IP Address", "192.0.2.1"),
            ("DNS", "*.b.example.com"),
        ),
    }
    assert certificate_names(decoded) == ("a.example.com", "*.b.example.com", "cn.example.com")
    assert certificate_names({"subject": ((("commonName", "only.example.com"),),)}) == (
        "only.example.com",
    )
    ip_only = ssl.PEM_cert_to_DER_cert(pki.by_ip.cert_file.read_text())
    assert certificate_names(ip_only) == ("127.0.0.1",)  # the CN; IP SANs are not names


def test_ssl_failure_hint_for_unknown_reasons() -> None:
    exc = ssl.SSLError(1, "[SSL: SOMETHING_NEW] something new")
    exc.reason = "SOMETHING_NEW"
    assert ssl_failure_hint(exc) == "something new"
    assert ssl_failure_hint(ConnectionResetError()) == "ConnectionResetError"
