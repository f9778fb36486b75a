"""``sbcsim serve``: the emulated Microsoft side, Teams users and PSTN phones on real sockets.

The same endpoints as the embedded lab (:mod:`sbcsim.lab`), wrapped around an external SBC: the
three proxies listen on TLS at their topology addresses with the certificates ``sbcsim certs``
wrote (``<fqdn>.pem``/``.key`` and the lab CA ``ca.pem``), require the SBC's client certificate
(Part 7.3 [DOC]; ``--client-certs optional`` relaxes it for test clients that cannot present
one, and then a message without a certificate skips the Contact/certificate check), speak
TLS 1.2 (Part 7.1 [DOC]) and otherwise behave exactly as in simulation.  The PSTN carrier listens
on its topology address and sends to the SBC's PSTN side.

It prints what listens where, then runs until SIGINT/SIGTERM (or ``--duration`` seconds) and
closes every socket within a bounded time.  Exit 2, with a clear message, when the topology is
invalid, a certificate file is missing or an address is already in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sbcsim.clock import LoopClock
from sbcsim.dialog import SessionTimerConfig
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.pstn import PstnCarrier
from sbcsim.endpoints.teams_proxy import DirectRoutingService, TeamsProxy
from sbcsim.errors import ConfigError, TransportError
from sbcsim.ids import IdGenerator
from sbcsim.lab import add_presence_users
from sbcsim.net.base import Address, TransportLayer
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.presence.model import PresenceService
from sbcsim.stack import UaOptions, live_node
from sbcsim.topology import Topology, load_topology

__all__ = [
    "LiveLab",
    "ProxyCertificates",
    "ServeError",
    "TrafficTap",
    "serve",
    "start_live_lab",
]

EXIT_OK = 0
EXIT_USAGE = 2
#: How long closing the sockets may take before ``serve`` gives up waiting.
CLOSE_TIMEOUT = 5.0


class ServeError(Exception):
    """Why the live lab cannot start (a missing file, an address in use ...)."""


#: Interposes on one endpoint's traffic (a capture for a trace).  It is called with the
#: endpoint's name (a proxy FQDN, or ``pstn``) and its transport before any message can flow,
#: and returns the layer the endpoint sends through; it may also replace
#: ``transport.receiver`` to see what arrives.
TrafficTap = Callable[[str, LiveTransport], TransportLayer]


@dataclass(frozen=True, slots=True)
class ProxyCertificates:
    """What the proxies present (one certificate and key per FQDN) and the CA they trust to
    have signed the SBC's certificate (both ways of mutual TLS, Part 7.3 [DOC])."""

    trust_ca: Path
    proxies: Mapping[str, tuple[Path, Path]]

    @classmethod
    def in_directory(cls, certs: Path, topology: Topology) -> ProxyCertificates:
        """The files ``sbcsim certs --out DIR`` writes: ``ca.pem`` and ``<fqdn>.pem/.key``."""
        ca_file = certs / "ca.pem"
        if not ca_file.is_file():
            raise ServeError(
                f"CA certificate {ca_file} is missing (run `sbcsim certs --out {certs}`)"
            )
        files = {p.fqdn: _cert_files(certs, p.fqdn) for p in topology.microsoft.proxies}
        return cls(ca_file, files)


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


@dataclass(eq=False)
class LiveLab:
    """The running live lab: its service, proxies, carrier and transports."""

    topology: Topology
    service: DirectRoutingService
    proxies: dict[str, TeamsProxy]
    pstn: PstnCarrier
    transports: list[LiveTransport] = field(default_factory=list)
    listening: list[tuple[str, str, Address]] = field(default_factory=list)
    #: the Graph-shaped presence API (``presence_api=True``): its runner and base URL
    api_runner: Any = None
    api_url: str | None = None

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close every socket, waiting at most ``timeout`` seconds."""
        if self.api_runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.api_runner.cleanup(), timeout)
            self.api_runner = None
        for proxy in self.proxies.values():
            for handle in proxy.pingers.values():
                if handle is not None:
                    handle.cancel()
        closing = [asyncio.ensure_future(t.aclose()) for t in self.transports]
        if closing:
            _, pending = await asyncio.wait(closing, timeout=timeout)
            for fut in pending:
                fut.cancel()


def _cert_files(certs: Path, stem: str) -> tuple[Path, Path]:
    cert, key = certs / f"{stem}.pem", certs / f"{stem}.key"
    for path in (cert, key):
        if not path.is_file():
            raise ServeError(
                f"certificate file {path} is missing (run `sbcsim certs --out {certs}` first)"
            )
    return cert, key


def _tls12(ctx: ssl.SSLContext) -> ssl.SSLContext:
    # Part 7.1 [DOC]: TLS 1.2 (the four ECDHE-RSA suites are all in OpenSSL's default list);
    # [GAP] TLS 1.3, so it is not offered.  The suites are not narrowed further: lab
    # certificates carry EC keys, which the ECDHE-RSA suites cannot use.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def start_live_lab(
    topology: Topology,
    certs: Path | ProxyCertificates,
    *,
    settings: MicrosoftSettings | None = None,
    client_certs: str = "required",
    seed: int | None = None,
    tap: TrafficTap | None = None,
    presence_api: bool = False,
) -> LiveLab:
    """Open every listener of the live lab; raises :class:`ServeError` on a setup problem.

    ``certs`` is a directory written by ``sbcsim certs`` or the files themselves; ``tap`` sees
    every message each endpoint sends and receives (see :data:`TrafficTap`).
    """
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    config = settings or MicrosoftSettings()
    found = (
        certs
        if isinstance(certs, ProxyCertificates)
        else ProxyCertificates.in_directory(certs, topology)
    )
    ca_file = found.trust_ca
    missing = [p.fqdn for p in topology.microsoft.proxies if p.fqdn not in found.proxies]
    if missing:
        raise ServeError(f"no certificate for the proxies {', '.join(missing)}")
    files = found.proxies
    presence = PresenceService()
    add_presence_users(presence, topology)
    base = random.Random(seed)

    def rng(name: str) -> random.Random:
        return random.Random(f"{base.random()}:{name}")

    service = DirectRoutingService(
        topology,
        config,
        presence,
        now=clock.now,
        schedule=lambda delay, fn: loop.call_later(delay, fn),
        resolve=topology.resolve,
        rng_seed=rng,
    )
    service.require_certificate = client_certs == "required"
    transports: list[LiveTransport] = []
    listening: list[tuple[str, str, Address]] = []
    proxies: dict[str, TeamsProxy] = {}

    def call_at(when: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return loop.call_at(when, fn)

    try:
        for index, spec in enumerate(topology.microsoft.proxies):
            cert, key = files[spec.fqdn]
            proxy = TeamsProxy(
                service,
                index,
                spec.fqdn,
                spec.address,
                spec.port,
                clock_now=clock.now,
                call_at=call_at,
                ids=IdGenerator(rng(f"ids:{spec.fqdn}")),
                rand=rng(f"rand:{spec.fqdn}").random,
            )
            server = _tls12(
                server_context(cert, key, ca_file, require_client_cert=client_certs == "required")
            )
            server.num_tickets = 0
            client = _tls12(client_context(ca_file, cert, key))
            # the proxy's own connections come from its address, as Microsoft's do
            live = LiveTransport(
                proxy.node, loop, client_ssl_context=client, source_host=spec.address
            )
            transports.append(live)
            proxy.attach_transport(tap(spec.fqdn, live) if tap is not None else live)
            bound = await live.listen_tls(spec.address, spec.port, server)
            service.proxies.append(proxy)
            proxies[spec.fqdn] = proxy
            listening.append((spec.fqdn, "tls", bound))
        pstn = topology.pstn
        node, pstn_transport = await live_node(
            "pstn",
            pstn.address,
            transport=pstn.transport if pstn.transport != "tls" else "tcp",
            port=pstn.port,
            options=UaOptions(
                user_agent="sbcsim-pstn-carrier", session_timer=SessionTimerConfig(enabled=False)
            ),
            seed=seed,
        )
        transports.append(pstn_transport)
        pstn_transport.source_host = pstn.address
        if tap is not None:  # nothing has been read yet: no await since the bind
            node.attach(tap("pstn", pstn_transport))
        listening.append(("pstn carrier", pstn.transport, (pstn.address, pstn.port)))
        side = topology.sbc.pstn_side
        carrier = PstnCarrier(topology, node, (side.address, side.port), transport=side.transport)
        api_runner: Any = None
        api_url: str | None = None
        if presence_api and topology.contact_center is not None:
            from sbcsim.endpoints.ccaas import start_presence_api

            cc = topology.contact_center
            try:
                api_runner, api_url = await start_presence_api(
                    topology, presence, clock=clock, seed=seed
                )
            except OSError as exc:
                raise ServeError(
                    f"cannot serve the presence API on {cc.graph_address}:{cc.graph_port}: "
                    f"{exc.strerror or exc} (is another sbcsim serve running?)"
                ) from exc
            host_port = api_url.rsplit("/", 1)[-1]
            api_host, _, api_port = host_port.rpartition(":")
            listening.append(
                ("presence API (Graph) + OAuth2", "http", (api_host.strip("[]"), int(api_port)))
            )
    except ServeError:
        for transport in transports:
            await transport.aclose()
        raise
    except (TransportError, ConfigError) as exc:
        for transport in transports:
            await transport.aclose()
        raise ServeError(getattr(exc, "msg", str(exc))) from exc
    return LiveLab(topology, service, proxies, carrier, transports, listening, api_runner, api_url)


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _run(lab: LiveLab, stop: asyncio.Event, duration: float | None) -> None:
    loop = asyncio.get_running_loop()
    try:
        if duration is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await lab.aclose()


def _table(lab: LiveLab) -> Table:
    table = Table(title="sbcsim serve: the emulated Microsoft side is listening")
    table.add_column("who")
    table.add_column("transport")
    table.add_column("address")
    for who, transport, (host, port) in lab.listening:
        table.add_row(who, transport, f"{host}:{port}")
    sbc = lab.topology.sbc
    table.add_row(
        "SBC (expected)",
        sbc.microsoft_side.transport,
        f"{sbc.microsoft_side.address}:{sbc.microsoft_side.port}",
    )
    table.add_row(
        "SBC PSTN side (expected)",
        sbc.pstn_side.transport,
        f"{sbc.pstn_side.address}:{sbc.pstn_side.port}",
    )
    return table


@click.command("serve")
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Topology YAML (default: the shipped topology).",
)
@click.option(
    "--certs",
    "certs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Directory written by `sbcsim certs` (ca.pem and one <fqdn>.pem/.key per proxy).",
)
@click.option(
    "--client-certs",
    type=click.Choice(["required", "optional"]),
    default="required",
    show_default=True,
    help="Require the SBC's TLS client certificate (Direct Routing does), or accept clients "
    "without one (for test tools that cannot present a certificate).",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Stop after this many seconds (default: run until SIGINT/SIGTERM).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    topology_file: Path | None,
    certs_dir: Path,
    client_certs: str,
    duration: float | None,
) -> None:
    """Run Microsoft's three proxies, the Teams users and the PSTN phones on real sockets."""
    console = _console(ctx)
    try:
        topology = load_topology(topology_file)
    except ConfigError as exc:
        console.print(f"sbcsim serve: invalid topology:\n{exc}", markup=False)
        ctx.exit(EXIT_USAGE)

    async def main() -> int:
        stop = asyncio.Event()
        # Signals are caught from the start, so a stop request during start-up is not lost.
        _install_stop(asyncio.get_running_loop(), stop)
        try:
            lab = await start_live_lab(
                topology, certs_dir, client_certs=client_certs, presence_api=True
            )
        except ServeError as exc:
            console.print(f"sbcsim serve: {exc}", markup=False)
            return EXIT_USAGE
        console.print(_table(lab))
        console.print("ready: press Ctrl-C to stop", markup=False)
        await _run(lab, stop, duration)
        console.print("stopped", markup=False)
        return EXIT_OK

    ctx.exit(asyncio.run(main()))


if __name__ == "__main__":  # pragma: no cover - `python -m sbcsim.serve` for tests and tools
    serve()
