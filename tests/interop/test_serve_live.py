"""``sbcsim serve`` live on loopback: sipsak (a foreign TLS stack) pings a proxy, and sbcsim's own
live UA, acting as the SBC with the carrier's wildcard certificate, places an inbound call.

Ports come from a test topology with free ports on the topology's loopback addresses; every wait
is bounded.  Debian's sipsak cannot present a client certificate (see
:mod:`sbcsim.testing.sipsak`), so the proxies then run with ``--client-certs optional``; with a
sipsak that can, they require it, as Direct Routing does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from sbcsim.config.commands import certs as certs_command
from sbcsim.dialog import CallEstablished, CallProgress, SessionTimerConfig
from sbcsim.net.tls import client_context, server_context
from sbcsim.stack import UaOptions, live_node
from sbcsim.testing.sipsak import presents_client_certificate, run_sipsak
from sbcsim.topology import load_topology

pytestmark = pytest.mark.interop

WAIT = 20.0
SIP1 = "sip.pstnhub.microsoft.com"
TENANT_A = "tenant-a.customers.example.com"
SDES_SDP = (
    b"v=0\r\no=sbc 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/SAVP 0 8 101\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:V/Lr6Lsvhad/crSB9kCQ28jrYDxR2Yfk5bXryH5V|2^31\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=rtcp-mux\r\na=sendrecv\r\n"
)


def _free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LivePorts:
    proxy: int
    sbc_tls: int
    sbc_udp: int
    pstn: int


def _topology_file(directory: Path) -> tuple[Path, LivePorts]:
    ports = LivePorts(
        proxy=_free_port("127.0.1.1"),
        sbc_tls=_free_port("127.0.0.2"),
        sbc_udp=_free_port("127.0.0.2", socket.SOCK_DGRAM),
        pstn=_free_port("127.0.2.1", socket.SOCK_DGRAM),
    )
    data: dict[str, Any] = load_topology(None).model_dump(mode="json")
    for proxy in data["microsoft"]["proxies"]:
        proxy["port"] = ports.proxy
    data["sbc"]["microsoft_side"]["port"] = ports.sbc_tls
    data["sbc"]["pstn_side"]["port"] = ports.sbc_udp
    data["pstn"]["port"] = ports.pstn
    data["contact_center"]["port"] = _free_port("127.0.3.1")
    path = directory / "topology.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, ports


async def _run_cli(*args: str, timeout: float = WAIT) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode("utf-8", "replace")


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    topology: Path
    certs: Path
    ports: LivePorts
    output: list[str]


@pytest.fixture
async def served(tmp_path: Path, require_peer: Callable[[str], str]) -> AsyncIterator[Served]:
    sipsak = require_peer("sipsak")
    topology, ports = _topology_file(tmp_path)
    certs = tmp_path / "certs"
    written = CliRunner().invoke(
        certs_command, ["--out", str(certs), "--topology", str(topology)], obj=Console(width=200)
    )
    assert written.exit_code == 0, written.output
    mode = "required" if presents_client_certificate(sipsak) else "optional"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sbcsim.serve",
        "--topology",
        str(topology),
        "--certs",
        str(certs),
        "--client-certs",
        mode,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    assert proc.stdout is not None

    async def until_ready() -> None:
        assert proc.stdout is not None
        while True:
            line = (await proc.stdout.readline()).decode("utf-8", "replace")
            if not line:
                raise AssertionError("sbcsim serve exited early:\n" + "".join(output))
            output.append(line)
            if line.startswith("ready"):
                return

    try:
        await asyncio.wait_for(until_ready(), WAIT)
        yield Served(proc, topology, certs, ports, output)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rest, _ = await asyncio.wait_for(proc.communicate(), WAIT)
                output.append(rest.decode("utf-8", "replace"))
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _options_file(directory: Path, contact_host: str, port: int) -> Path:
    message = (
        f"OPTIONS sip:{SIP1}:{port} SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKlive1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:sbc.customers.example.com:5061>;tag=live1\r\n"
        f"To: <sip:{SIP1}:{port}>\r\n"
        f"Call-ID: live-{contact_host}@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:{contact_host}:5061;transport=tls>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    path = directory / f"options-{contact_host}.sip"
    path.write_text(message)
    return path


async def _sipsak_options(served: Served, sipsak: str, contact_host: str) -> int | None:
    pem = served.certs / "client.pem"
    wildcard = served.certs / "wildcard.customers.example.com"
    pem.write_bytes(Path(f"{wildcard}.pem").read_bytes() + Path(f"{wildcard}.key").read_bytes())
    args = [
        sipsak,
        "-vvv",
        "-f",
        str(_options_file(served.certs, contact_host, served.ports.proxy)),
        "-s",
        "sip:sbcsim@127.0.1.1",
        "-r",
        str(served.ports.proxy),
        "-E",
        "tls",
        "-k",
        "127.0.0.1",
        "-H",
        "127.0.0.1",
        "--tls-ignore-cert-failure",
        "--tls-client-cert",
        str(pem),
    ]
    result = await run_sipsak(args, timeout=WAIT)
    return result.status


async def test_sipsak_options_gets_200_with_fqdn_contact_and_403_with_ip(
    served: Served, require_peer: Callable[[str], str]
) -> None:
    sipsak = require_peer("sipsak")
    assert await _sipsak_options(served, sipsak, "sbc.customers.example.com") == 200
    assert await _sipsak_options(served, sipsak, "127.0.0.1") == 403


async def test_live_sbc_call_to_a_teams_user_rings_and_is_answered(served: Served) -> None:
    certs = served.certs
    wildcard = certs / "wildcard.customers.example.com"
    cert, key, ca = f"{wildcard}.pem", f"{wildcard}.key", certs / "ca.pem"
    events: list[Any] = []
    ringing, answered = asyncio.Event(), asyncio.Event()

    def on_event(event: Any) -> None:
        events.append(event)
        if isinstance(event, CallProgress) and event.status == 180:
            ringing.set()
        if isinstance(event, CallEstablished):
            answered.set()

    node, transport = await live_node(
        "sbc",
        "127.0.0.2",
        transport="tls",
        port=served.ports.sbc_tls,
        server_ssl=server_context(cert, key, ca),
        client_ssl=client_context(ca, cert, key),
        on_event=on_event,
        options=UaOptions(contact_host=TENANT_A, session_timer=SessionTimerConfig(enabled=False)),
    )
    try:
        ua: Any = node.stack
        ua.invite(
            f"sip:+14255550101@{SIP1}:{served.ports.proxy};user=phone",
            from_=f"<sip:+13125550101@{TENANT_A};user=phone>",
            to=f"<sip:+14255550101@{SIP1};user=phone>",
            remote=("127.0.1.1", served.ports.proxy),
            transport="tls",
            server_name=SIP1,
            sdp=SDES_SDP,
            contact=f"<sip:+13125550101@{TENANT_A}:{served.ports.sbc_tls};transport=tls>",
            now=node.now(),
        )
        node.poke()
        await asyncio.wait_for(ringing.wait(), WAIT)
        await asyncio.wait_for(answered.wait(), WAIT)
        established = next(e for e in events if isinstance(e, CallEstablished))
        assert established.message.status == 200
        assert b"RTP/SAVP" in (established.sdp or b"")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.aclose(), WAIT)


async def test_serve_exits_2_when_the_address_is_in_use(served: Served) -> None:
    code, out = await _run_cli(
        "sbcsim.serve", "--topology", str(served.topology), "--certs", str(served.certs)
    )
    assert code == 2
    assert "sbcsim serve:" in out and "in use" in out


async def test_serve_exits_2_when_a_certificate_is_missing(tmp_path: Path) -> None:
    code, out = await _run_cli("sbcsim.serve", "--certs", str(tmp_path / "none"))
    assert code == 2
    assert "is missing" in out


async def test_serve_stops_cleanly_on_sigterm(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(served.proc.communicate(), WAIT)
    assert served.proc.returncode == 0
    assert "stopped" in rest.decode()
