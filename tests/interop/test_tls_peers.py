"""A live sbcsim node over TLS against real, independent TLS stacks: sipsak and baresip.

Debian's SIPp is built without TLS, so these two carry the TLS interop: sipsak (GnuTLS) sends
OPTIONS and checks our certificate; baresip (libre + OpenSSL) places whole calls and presents
its certificate to a node that requires one.  Everything runs on 127.0.0.1 with a lab CA minted
per test; every wait is on a process, a socket or a future, and bounded.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sbcsim.certs import CertFiles, LabCA
from sbcsim.dialog import CallEnded, CallEstablished, IncomingCall, IncomingRequest
from sbcsim.endpoints.basic import AnsweringUas, CallStats
from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TlsIdentity, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.node import Node
from sbcsim.stack import live_node
from sbcsim.testing.baresip import (
    BaresipConfig,
    BaresipEvent,
    BaresipProcess,
    NetstringDecoder,
    encode_netstring,
    free_tcp_port,
    render_accounts,
    render_config,
    write_config,
)
from sbcsim.testing.sipsak import (
    options_command,
    parse_output,
    presents_client_certificate,
    run_sipsak,
)

WAIT = 10.0
HOST = "127.0.0.1"
SERVER_NAMES = ("sbc.lab.example", HOST)
SIPSAK_NAMES = ("sipsak.lab.example",)
BARESIP_NAMES = ("baresip.lab.example", HOST)
CALLS = 20


@dataclass(frozen=True)
class Pki:
    """One lab CA, the sbcsim node's certificate, a peer's certificate (PEM: cert + key, as
    sipsak and baresip want it) and a CA nobody trusts."""

    ca_file: Path
    server: CertFiles
    peer_pem: Path
    rogue_ca_file: Path


def make_pki(directory: Path, peer_names: tuple[str, ...]) -> Pki:
    ca = LabCA.create()
    peer = ca.issue(list(peer_names))
    peer_pem = directory / "peer-combined.pem"
    peer_pem.write_bytes(peer.cert_pem + peer.key_pem)
    return Pki(
        ca_file=ca.write(directory, "ca").cert_file,
        server=ca.issue(list(SERVER_NAMES)).write(directory, "sbc"),
        peer_pem=peer_pem,
        rogue_ca_file=LabCA.create("rogue CA").write(directory, "rogue").cert_file,
    )


class Tap:
    """Records what a live node's stack reported and the transport errors it was told about,
    and lets a test wait for a condition on them."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[Any] = []
        self.errors: list[tuple[Address, TransportName, TransportError]] = []
        self._changed = asyncio.Event()
        inner_event = node.on_event
        inner_error = node.transport_error

        def on_event(event: object) -> None:
            self.events.append(event)
            self._changed.set()
            if inner_event is not None:
                inner_event(event)

        def transport_error(remote: Address, transport: TransportName, exc: TransportError) -> None:
            self.errors.append((remote, transport, exc))
            self._changed.set()
            inner_error(remote, transport, exc)

        node.on_event = on_event
        # The live transport's receiver looks the method up on every call.
        monkeypatch.setattr(node, "transport_error", transport_error)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until_count(self, kind: type[Any], count: int, what: str) -> None:
        await self.until(lambda: len(self.of(kind)) >= count, what)

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            kinds = [type(e).__name__ for e in self.events]
            raise AssertionError(
                f"timed out waiting for {what}; events {kinds}, errors {self.errors}"
            ) from None


@pytest.fixture
async def closing() -> AsyncIterator[list[LiveTransport]]:
    """Live transports to close at the end of a test, whatever happened."""
    transports: list[LiveTransport] = []
    yield transports
    for live in transports:
        await live.aclose()


def sipsak_server_context(pki: Pki, *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = server_context(
        pki.server.cert_file,
        pki.server.key_file,
        pki.ca_file,
        require_client_cert=require_client_cert,
    )
    # sipsak takes a TLS 1.3 session ticket that arrives before the response for a failed read.
    ctx.num_tickets = 0
    return ctx


async def start_node(
    name: str,
    server_ssl: ssl.SSLContext,
    closing: list[LiveTransport],
    client_ssl: ssl.SSLContext | None = None,
) -> tuple[Node, int]:
    node, live = await live_node(
        name, HOST, transport="tls", server_ssl=server_ssl, client_ssl=client_ssl, seed=7
    )
    closing.append(live)
    return node, live.address("tls")[1]


def handshake_error(port: int) -> str:
    return (
        f"TLS handshake with {HOST}:{port}/tls failed: peer did not return a certificate: "
        "the client sent no certificate but one is required"
    )


# -- sipsak: OPTIONS over TLS -------------------------------------------------------------------


@pytest.mark.interop
async def test_sipsak_options_over_tls_gets_200(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """sipsak validates our certificate (chain and the 127.0.0.1 name) and gets the UA core's
    200; the node asks for a client certificate but does not insist."""
    sipsak = require_peer("sipsak")
    pki = make_pki(tmp_path, SIPSAK_NAMES)
    node, port = await start_node(
        "sbc", sipsak_server_context(pki, require_client_cert=False), closing
    )
    tap = Tap(node, monkeypatch)

    args = options_command(sipsak, HOST, port, ca_file=pki.ca_file, client_cert=pki.peer_pem)
    result = await run_sipsak(args, timeout=WAIT)

    assert (result.exit_code, result.status, result.reason) == (0, 200, "OK"), result.output
    assert result.ok
    await tap.until(lambda: bool(tap.of(IncomingRequest)), "the OPTIONS")
    [options] = tap.of(IncomingRequest)
    assert options.request.method == "OPTIONS"
    assert options.handle is None  # the UA core answered it
    peer: PeerInfo = options.peer
    assert (peer.transport, peer.local, peer.remote) == (
        "tls",
        (HOST, port),
        (HOST, result.local_port),
    )
    assert peer.extra["tls_version"] == "TLSv1.3"
    # Debian's sipsak accepts --tls-client-cert and never loads it, so nothing was presented.
    expected = TlsIdentity(names=SIPSAK_NAMES) if presents_client_certificate(sipsak) else None
    assert peer.peer_identity == expected
    assert tap.errors == []


@pytest.mark.interop
async def test_sipsak_with_client_certificate_under_mutual_tls(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """Mutual TLS required: sipsak with its certificate should get the 200 and the node should
    see the certificate's names.  The installed sipsak cannot send a certificate; then this
    checks that the failure is exactly that, and is marked xfail with the reason."""
    sipsak = require_peer("sipsak")
    pki = make_pki(tmp_path, SIPSAK_NAMES)
    node, port = await start_node(
        "sbc", sipsak_server_context(pki, require_client_cert=True), closing
    )
    tap = Tap(node, monkeypatch)

    args = options_command(sipsak, HOST, port, ca_file=pki.ca_file, client_cert=pki.peer_pem)
    result = await run_sipsak(args, timeout=WAIT)

    if presents_client_certificate(sipsak):
        assert result.ok, result.output
        await tap.until(lambda: bool(tap.of(IncomingRequest)), "the OPTIONS")
        [options] = tap.of(IncomingRequest)
        assert options.peer.peer_identity == TlsIdentity(names=SIPSAK_NAMES)
        assert options.peer.remote == (HOST, result.local_port)
        return
    assert result.exit_code == 2 and result.status is None, result.output
    assert result.local_port is not None
    await tap.until(lambda: bool(tap.errors), "the handshake failure")
    [(remote, transport, exc)] = tap.errors
    assert (remote, transport) == ((HOST, result.local_port), "tls")
    assert exc.msg == handshake_error(result.local_port)
    assert tap.events == []
    pytest.xfail(
        "sipsak 0.9.8.1 (Debian) parses --tls-client-cert but never loads a certificate into "
        "its GnuTLS credentials, so it cannot do mutual TLS; baresip covers a real client "
        "certificate (test_baresip_calls_over_mutual_tls)"
    )


@pytest.mark.interop
async def test_sipsak_without_client_certificate_fails_mutual_tls(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """No client certificate: the handshake fails, sipsak exits with a local error (it reads the
    server's alert where the response should be), and the node reports the handshake failure
    naming sipsak's own address."""
    sipsak = require_peer("sipsak")
    pki = make_pki(tmp_path, SIPSAK_NAMES)
    node, port = await start_node(
        "sbc", sipsak_server_context(pki, require_client_cert=True), closing
    )
    tap = Tap(node, monkeypatch)

    result = await run_sipsak(
        options_command(sipsak, HOST, port, ca_file=pki.ca_file), timeout=WAIT
    )

    assert (result.exit_code, result.status) == (2, None), result.output
    assert result.local_port is not None
    await tap.until(lambda: bool(tap.errors), "the handshake failure")
    [(remote, transport, exc)] = tap.errors
    assert (remote, transport) == ((HOST, result.local_port), "tls")
    assert exc.address == (HOST, result.local_port)
    assert exc.msg == handshake_error(result.local_port)
    assert tap.events == []  # the OPTIONS never reached the stack


@pytest.mark.interop
async def test_sipsak_rejects_a_server_certificate_from_another_ca(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """The counter-check that makes the 200 above mean something: sipsak trusting another CA
    refuses our certificate and never sends its request."""
    sipsak = require_peer("sipsak")
    pki = make_pki(tmp_path, SIPSAK_NAMES)
    node, port = await start_node(
        "sbc", sipsak_server_context(pki, require_client_cert=False), closing
    )
    tap = Tap(node, monkeypatch)

    result = await run_sipsak(
        options_command(sipsak, HOST, port, ca_file=pki.rogue_ca_file), timeout=WAIT
    )

    assert (result.exit_code, result.status) == (3, None), result.output
    assert "The certificate hasn't got a known issuer." in result.output
    assert "verification can be ignored with option --tls-ignore-cert-failure" in result.output
    assert tap.of(IncomingRequest) == []


# -- baresip: calls over mutual TLS -------------------------------------------------------------


@pytest.mark.interop
async def test_baresip_calls_over_mutual_tls(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """20 calls from baresip to an answering sbcsim node that requires and validates a client
    certificate.  Even calls are hung up by baresip, odd ones by sbcsim (its BYE goes to
    baresip's TLS listener on a connection of its own, validating baresip's certificate)."""
    require_peer("baresip")
    pki = make_pki(tmp_path, BARESIP_NAMES)
    server_ssl = server_context(
        pki.server.cert_file, pki.server.key_file, pki.ca_file, require_client_cert=True
    )
    client_ssl = client_context(pki.ca_file, pki.server.cert_file, pki.server.key_file)
    node, port = await start_node("uas", server_ssl, closing, client_ssl=client_ssl)
    uas = AnsweringUas(node)
    tap = Tap(node, monkeypatch)

    config = write_config(
        tmp_path / "baresip",
        BaresipConfig(ctrl_port=free_tcp_port(), certificate=pki.peer_pem, ca_file=pki.ca_file),
    )
    closed_params: list[str | None] = []
    async with asyncio.timeout(CALLS * 3 * WAIT), BaresipProcess(config) as phone:
        for i in range(CALLS):
            mark = len(phone.events)
            await phone.dial(f"sip:uas@{HOST}:{port}")
            await phone.wait_event_type("CALL_ESTABLISHED", after=mark, timeout=WAIT)
            await tap.until_count(CallEstablished, i + 1, f"call {i} up")
            if i % 2 == 0:
                await phone.hangup()
            else:
                call = tap.of(CallEstablished)[i].call
                node.stack.bye(call, node.now())  # type: ignore[attr-defined]
                node.poke()
            closed = await phone.wait_event_type("CALL_CLOSED", after=mark, timeout=WAIT)
            closed_params.append(closed.param)
            await tap.until_count(CallEnded, i + 1, f"call {i} ended")
        baresip_events = [e.type for e in phone.events]

    assert uas.stats == CallStats(started=CALLS, established=CALLS, completed=CALLS, failed=0)
    assert baresip_events.count("CALL_ESTABLISHED") == baresip_events.count("CALL_CLOSED") == CALLS
    reasons = [e.reason for e in tap.of(CallEnded)]
    assert reasons == ["remote-bye" if i % 2 == 0 else "local-bye" for i in range(CALLS)]
    assert closed_params == [
        "Connection reset by user" if i % 2 == 0 else "Connection reset by peer"
        for i in range(CALLS)
    ]
    # Every INVITE came over a connection whose client certificate the node validated.
    identities = {e.peer.peer_identity for e in tap.of(IncomingCall)}
    assert identities == {TlsIdentity(names=("baresip.lab.example",))}
    assert tap.errors == []


@pytest.mark.interop
async def test_baresip_does_not_check_the_server_certificate(
    tmp_path: Path,
    require_peer: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    closing: list[LiveTransport],
) -> None:
    """What the calls above do not prove: this baresip trusts only a rogue CA and still calls
    us (it never asks libre to verify the server), so baresip exercises the *server* side of
    mutual TLS only; sipsak and the two-node test cover server validation."""
    require_peer("baresip")
    pki = make_pki(tmp_path, BARESIP_NAMES)
    server_ssl = server_context(
        pki.server.cert_file, pki.server.key_file, pki.ca_file, require_client_cert=True
    )
    node, port = await start_node("uas", server_ssl, closing)
    uas = AnsweringUas(node)
    tap = Tap(node, monkeypatch)
    config = write_config(
        tmp_path / "baresip",
        BaresipConfig(
            ctrl_port=free_tcp_port(), certificate=pki.peer_pem, ca_file=pki.rogue_ca_file
        ),
    )
    async with asyncio.timeout(3 * WAIT), BaresipProcess(config) as phone:
        await phone.dial(f"sip:uas@{HOST}:{port}")
        await phone.wait_event_type("CALL_ESTABLISHED", timeout=WAIT)
        await phone.hangup()
        await phone.wait_event_type("CALL_CLOSED", timeout=WAIT)
        await tap.until_count(CallEnded, 1, "the call to end")
    assert uas.stats == CallStats(started=1, established=1, completed=1, failed=0)


# -- the harnesses themselves (no peer needed) --------------------------------------------------

SIPSAK_OUTPUT = """\
fqdnhostname: 127.0.0.1
our Via-Line: Via: SIP/2.0/TLS 127.0.0.1:52269;branch=z9hG4bK.0ea88b35;rport;alias

send to: TLS:127.0.0.1:36093

received from: TLS:127.0.0.1:36093
SIP/2.0 100 Trying
Via: SIP/2.0/TLS 127.0.0.1:52269;branch=z9hG4bK.0ea88b35;rport=52269;alias

received from: TLS:127.0.0.1:36093
SIP/2.0 200 OK
Via: SIP/2.0/TLS 127.0.0.1:52269;branch=z9hG4bK.0ea88b35;rport=52269;alias
Content-Length: 0

** reply received after 42.505 ms **
   SIP/2.0 200 OK
   final received
"""


def test_sipsak_output_gives_final_status_and_source_port() -> None:
    result = parse_output(0, SIPSAK_OUTPUT, ["sipsak"])
    assert (result.exit_code, result.status, result.reason, result.local_port) == (
        0,
        200,
        "OK",
        52269,
    )
    assert result.ok and result.command == ("sipsak",)


def test_sipsak_output_without_a_final_response() -> None:
    output = SIPSAK_OUTPUT.split("received from")[0] + "nothing received, select returned error\n"
    result = parse_output(2, output)
    assert (result.status, result.reason, result.local_port, result.ok) == (
        None,
        None,
        52269,
        False,
    )
    assert parse_output(3, "").local_port is None


def test_sipsak_options_command() -> None:
    assert options_command(
        "/usr/bin/sipsak", HOST, 5061, ca_file=Path("/x/ca.pem"), client_cert=Path("/x/c.pem")
    ) == [
        "/usr/bin/sipsak",
        "-vvv",
        "-s",
        "sip:sbcsim@127.0.0.1",
        "-r",
        "5061",
        "-E",
        "tls",
        "-k",
        "127.0.0.1",
        "-H",
        "127.0.0.1",
        "--tls-ca-cert",
        "/x/ca.pem",
        "--tls-client-cert",
        "/x/c.pem",
        "-j",
        "Accept: application/sdp",
    ]
    with pytest.raises(ValueError, match="IPv4"):
        options_command("sipsak", "::1", 5061)


def test_client_certificate_capability_is_read_from_the_binary(tmp_path: Path) -> None:
    without = tmp_path / "a"
    without.write_bytes(b"\0gnutls_certificate_set_x509_trust_file\0gnutls_handshake\0")
    with_key = tmp_path / "b"
    with_key.write_bytes(b"\0gnutls_certificate_set_x509_key_file2\0")
    assert (presents_client_certificate(without), presents_client_certificate(with_key)) == (
        False,
        True,
    )


def test_netstrings_split_across_reads_and_joined_in_one() -> None:
    wire = encode_netstring(b'{"a":1}') + encode_netstring(b"") + encode_netstring(b"xyz")
    assert wire == b'7:{"a":1},0:,3:xyz,'
    whole = NetstringDecoder()
    assert whole.feed(wire) == [b'{"a":1}', b"", b"xyz"]
    bytewise = NetstringDecoder()
    assert [p for i in range(len(wire)) for p in bytewise.feed(wire[i : i + 1])] == [
        b'{"a":1}',
        b"",
        b"xyz",
    ]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"3:abc;", "not terminated"),
        (b"x:abc,", "bad netstring length"),
        (b"03:abc,", "bad netstring length"),
        (b"99999999:", "exceeds"),
        (b"123456789", "too long"),
    ],
)
def test_malformed_netstrings(wire: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetstringDecoder().feed(wire)


def test_baresip_config_files(tmp_path: Path) -> None:
    cfg = BaresipConfig(
        ctrl_port=4444,
        certificate=Path("/pki/baresip.pem"),
        ca_file=Path("/pki/ca.pem"),
        display_name="Lab Phone",
    )
    assert render_config(cfg) == (
        "poll_method\tepoll\n"
        "sip_listen\t127.0.0.1:0\n"
        "sip_certificate\t/pki/baresip.pem\n"
        "sip_cafile\t/pki/ca.pem\n"
        "call_local_timeout\t120\n"
        "call_max_calls\t4\n"
        "audio_source\tausine,440\n"
        "ausrc_srate\t48000\n"
        "ausrc_channels\t2\n"
        "audio_level\tno\n"
        "rtp_stats\tno\n"
        "net_interface\t127.0.0.1\n"
        "module_path\t/usr/lib/baresip/modules\n"
        "module\tg711.so\n"
        "module\tausine.so\n"
        "module_tmp\taccount.so\n"
        "module_app\tmenu.so\n"
        "module_app\tctrl_tcp.so\n"
        "ctrl_tcp_listen\t127.0.0.1:4444\n"
    )
    assert render_accounts(cfg) == (
        '"Lab Phone" <sip:baresip@127.0.0.1;transport=tls>;regint=0;answermode=manual\n'
    )
    directory = write_config(tmp_path / "phone", cfg)
    assert sorted(p.name for p in directory.iterdir()) == ["accounts", "config", "contacts"]
    assert BaresipProcess(directory).ctrl_address == (HOST, 4444)
    v6 = BaresipConfig(ctrl_port=4444, sip_listen=("::1", 5070))
    assert "sip_listen\t[::1]:5070\n" in render_config(v6)
    assert "ctrl_tcp_listen\t[::1]:4444\n" in render_config(v6)


def test_baresip_event_from_ctrl_tcp_json() -> None:
    raw = {
        "event": True,
        "type": "CALL_CLOSED",
        "class": "call",
        "accountaor": "sip:baresip@127.0.0.1",
        "direction": "outgoing",
        "peeruri": "sip:uas@127.0.0.1:5061;transport=tls",
        "id": "e599914e9523affa",
        "param": "Connection reset by user",
    }
    event = BaresipEvent.from_json(raw)
    assert (event.type, event.klass, event.call_id, event.peer_uri, event.param) == (
        "CALL_CLOSED",
        "call",
        "e599914e9523affa",
        "sip:uas@127.0.0.1:5061;transport=tls",
        "Connection reset by user",
    )
    assert event.raw is raw
    bare = BaresipEvent.from_json({"event": True, "type": "EXIT", "class": "application"})
    assert (bare.call_id, bare.peer_uri, bare.param) == (None, None, None)
