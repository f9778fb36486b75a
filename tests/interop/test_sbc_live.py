"""The reference SBC on real loopback sockets: mutual TLS toward a live "Microsoft proxy" UA
with lab certificates, UDP toward a live carrier UA; calls both ways; and ``sbcsim sbc`` as a
process (listening lines, SIGINT, exit codes).  Every wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from sbcsim.certs import LabCA
from sbcsim.dialog import (
    CallEnded,
    CallEstablished,
    IncomingCall,
    IncomingRequest,
    UserAgent,
)
from sbcsim.endpoints.sbc import SbcSettings
from sbcsim.endpoints.sbc_live import LiveSbc, SbcCertificates, sbc, start_live_sbc
from sbcsim.net.base import Address
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.node import Node
from sbcsim.sip.uri import SipUri
from sbcsim.stack import UaOptions, live_node
from sbcsim.topology import default_topology_text, load_topology

pytestmark = pytest.mark.interop

WAIT = 5.0
SBC_HOST = "127.0.0.2"
SIP = "sip.pstnhub.microsoft.com"
TEAMS_ANSWER = (
    b"v=0\r\no=- 5 1 IN IP4 127.0.1.100\r\ns=session\r\nc=IN IP4 127.0.1.100\r\nt=0 0\r\n"
    b"m=audio 52000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Ws4/t3ROcbSNcO8xXuv6AaGypVWuJ+0OlUhvqr1L|2^31\r\n"
    b"a=rtcp-mux\r\na=sendrecv\r\n"
)
TEAMS_OFFER = TEAMS_ANSWER.replace(b"0 101", b"0 8 101").replace(
    b"a=rtpmap:0 PCMU/8000\r\n", b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
PSTN_SDP = (
    b"v=0\r\no=carrier 7 1 IN IP4 127.0.2.1\r\ns=call\r\nc=IN IP4 127.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=sendrecv\r\n"
)


def write_certs(directory: Path) -> tuple[Path, Path, Path]:
    """The lab CA, the SBC's carrier wildcard and the proxy's certificate: (ca, cert, key)."""
    ca = LabCA.create()
    ca.write(directory)
    ca.issue(["*.customers.example.com"]).write(directory, "wildcard.customers.example.com")
    files = ca.issue([SIP]).write(directory, SIP)
    return directory / "ca.pem", files.cert_file, files.key_file


@dataclass
class Party:
    """A live UA and what happened to it, with bounded waits."""

    node: Node
    transport: LiveTransport
    events: list[Any] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ua(self) -> UserAgent:
        stack = self.node.stack
        assert isinstance(stack, UserAgent)
        return stack

    def record(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()
        if isinstance(event, IncomingCall):
            self.on_call(event)

    def on_call(self, event: IncomingCall) -> None:
        """Answer at once: 180, then 200 with this party's SDP."""
        now = self.node.now()
        self.ua.respond(event.call, 180, now=now)
        self.ua.respond(event.call, 200, sdp=self.answer, now=now)

    answer: bytes = b""

    async def wait(self, kind: type, count: int = 1) -> list[Any]:
        async def until() -> list[Any]:
            while True:
                found = [e for e in self.events if isinstance(e, kind)]
                if len(found) >= count:
                    return found
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(until(), WAIT)


@dataclass
class World:
    sbc: LiveSbc
    proxy: Party
    pstn: Party
    ms_port: int
    pstn_port: int


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ca_file, cert, key = write_certs(tmp_path)
    holder: dict[str, Address] = {}

    def proxy_resolve(uri: SipUri, transport: str) -> Address | None:
        if uri.host.endswith(".customers.example.com"):
            return holder["sbc"]
        return None

    proxy_node, proxy_tp = await live_node(
        SIP,
        "127.0.1.1",
        transport="tls",
        server_ssl=server_context(cert, key, ca_file=ca_file, require_client_cert=True),
        client_ssl=client_context(ca_file, cert, key),
        options=UaOptions(contact_host=SIP, extra={"resolve": proxy_resolve}),
    )
    proxy = Party(proxy_node, proxy_tp, answer=TEAMS_ANSWER)
    proxy_node.on_event = proxy.record
    pstn_node, pstn_tp = await live_node("pstn", "127.0.2.1", transport="udp")
    pstn = Party(pstn_node, pstn_tp, answer=PSTN_SDP)
    pstn_node.on_event = pstn.record
    proxy_address = proxy_tp.address("tls")
    pstn_port = pstn_tp.address("udp")[1]
    default = load_topology(None)
    topology = default.model_copy(
        update={"pstn": default.pstn.model_copy(update={"port": pstn_port})}
    )

    def sbc_resolve(fqdn: str) -> Address | None:
        return proxy_address if fqdn == SIP else None

    live = await start_live_sbc(
        topology,
        SbcCertificates.in_directory(tmp_path, topology),
        resolve=sbc_resolve,
        microsoft_listen=(SBC_HOST, 0),
        pstn_listen=(SBC_HOST, 0),
        settings=SbcSettings(options_start_delay=0.0),
    )
    ms_port = live.listening[0][2][1]
    holder["sbc"] = (SBC_HOST, ms_port)
    try:
        yield World(live, proxy, pstn, ms_port, live.listening[1][2][1])
    finally:
        await live.aclose()
        await asyncio.wait_for(asyncio.gather(proxy_tp.aclose(), pstn_tp.aclose()), WAIT)


async def test_the_sbc_pings_the_proxy_over_mutual_tls(world: World) -> None:
    (options,) = await world.proxy.wait(IncomingRequest)
    assert options.request.method == "OPTIONS"
    assert options.request.headers.get("Contact") == (
        f"<sip:sbc.customers.example.com:{world.ms_port};transport=tls>"
    )
    assert options.peer.peer_identity.names == ("*.customers.example.com",)
    assert options.peer.server_name == SIP


async def test_a_carrier_call_reaches_the_proxy_and_completes(world: World) -> None:
    pstn = world.pstn
    now = pstn.node.now()
    call = pstn.ua.invite(
        f"sip:+14255550101@{SBC_HOST}:{world.pstn_port}",
        from_="<sip:+13125550101@127.0.2.1>",
        to=f"<sip:+14255550101@{SBC_HOST}>",
        remote=(SBC_HOST, world.pstn_port),
        sdp=PSTN_SDP,
        now=now,
    )
    pstn.node.poke()
    (incoming,) = await world.proxy.wait(IncomingCall)
    assert incoming.request.headers.get("Contact") == (
        f"<sip:+13125550101@tenant-a.customers.example.com:{world.ms_port};transport=tls>"
    )
    assert incoming.request.headers.get("X-MS-SBC") == "sbcsim/reference-sbc/0.1.0"
    assert b"RTP/SAVP" in incoming.request.body and b"a=rtcp-mux" in incoming.request.body
    (established,) = await pstn.wait(CallEstablished)
    assert established.call == call
    assert established.sdp is not None and b"RTP/AVP" in established.sdp
    await world.proxy.wait(CallEstablished)
    pstn.ua.bye(call, pstn.node.now())
    pstn.node.poke()
    (ended,) = await world.proxy.wait(CallEnded)
    assert ended.reason == "remote-bye"
    await pstn.wait(CallEnded)


async def test_a_teams_call_reaches_the_carrier_and_completes(world: World) -> None:
    proxy = world.proxy
    trunk = "tenant-a.customers.example.com"
    call = proxy.ua.invite(
        f"sip:+13125550101@{trunk}:{world.ms_port};user=phone;transport=tls",
        from_=f"<sip:+14255550101@{SIP};user=phone>",
        to=f"<sip:+13125550101@{trunk};user=phone>",
        remote=(SBC_HOST, world.ms_port),
        transport="tls",
        server_name=trunk,
        sdp=TEAMS_OFFER,
        now=proxy.node.now(),
    )
    proxy.node.poke()
    (incoming,) = await world.pstn.wait(IncomingCall)
    assert str(incoming.request.uri).startswith("sip:+13125550101@127.0.2.1:")
    assert b"RTP/AVP 0 8" in incoming.request.body
    established = [e for e in await proxy.wait(CallEstablished) if e.call == call]
    assert established and established[0].sdp is not None
    assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80" in established[0].sdp
    proxy.ua.bye(call, proxy.node.now())
    proxy.node.poke()
    (ended,) = await world.pstn.wait(CallEnded)
    assert ended.reason == "remote-bye"


# -- the command -------------------------------------------------------------------------------


def free_port(transport: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, transport) as sock:
        sock.bind((SBC_HOST, 0))
        return int(sock.getsockname()[1])


def topology_file(directory: Path, ms_port: int, pstn_port: int) -> Path:
    text = default_topology_text()
    text = text.replace(
        "microsoft_side: {address: 127.0.0.2, port: 5061, transport: tls}",
        f"microsoft_side: {{address: 127.0.0.2, port: {ms_port}, transport: tls}}",
    ).replace(
        "pstn_side: {address: 127.0.0.2, port: 5060, transport: udp}",
        f"pstn_side: {{address: 127.0.0.2, port: {pstn_port}, transport: udp}}",
    )
    path = directory / "topology.yaml"
    path.write_text(text)
    return path


async def test_sbcsim_sbc_prints_where_it_listens_and_stops_on_sigint(tmp_path: Path) -> None:
    write_certs(tmp_path)
    ms_port, pstn_port = free_port(), free_port(socket.SOCK_DGRAM)
    topo = topology_file(tmp_path, ms_port, pstn_port)
    code = "from sbcsim.endpoints.sbc_live import sbc; sbc(prog_name='sbcsim sbc')"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--topology",
        str(topo),
        "--certs",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []

    async def read_until(marker: str) -> None:
        assert process.stdout is not None
        while not any(marker in line for line in lines):
            line = await process.stdout.readline()
            if not line:
                raise AssertionError("the SBC exited early:\n" + "".join(lines))
            lines.append(line.decode())

    try:
        await asyncio.wait_for(read_until("Ctrl-C stops it"), 20.0)
        assert f"listening microsoft tls 127.0.0.2:{ms_port}\n" in lines
        assert f"listening pstn udp 127.0.0.2:{pstn_port}\n" in lines
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 20.0)
        assert process.returncode == 0, "".join(lines) + rest.decode()
        assert "stopped" in rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_sbcsim_sbc_exits_2_when_its_port_is_taken(tmp_path: Path) -> None:
    write_certs(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((SBC_HOST, 0))
        taken.listen(1)
        topo = topology_file(tmp_path, taken.getsockname()[1], free_port(socket.SOCK_DGRAM))
        console = Console(width=200, record=True)
        result = CliRunner().invoke(
            sbc, ["--topology", str(topo), "--certs", str(tmp_path)], obj=console
        )
    assert result.exit_code == 2
    assert "sbcsim sbc: cannot listen" in console.export_text()


def test_sbcsim_sbc_exits_2_without_certificates(tmp_path: Path) -> None:
    console = Console(width=300, record=True)
    result = CliRunner().invoke(sbc, ["--certs", str(tmp_path / "none")], obj=console)
    assert result.exit_code == 2
    text = console.export_text()
    assert "missing certificate file(s)" in text
    assert "sbcsim certs --out" in text
