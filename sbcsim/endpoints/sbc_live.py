"""The reference SBC on real sockets (``sbcsim sbc``) and the list of its faults (``sbcsim mutants``).

Live mode runs exactly the :class:`~sbcsim.endpoints.sbc.ReferenceSbc` of the simulation; only
the injected pieces differ: the asyncio loop's clock and timers, :class:`LiveTransport` sockets,
TLS contexts built from the lab certificates (``sbcsim certs --out DIR`` writes them), and fresh
randomness for identifiers and SRTP keys.

Toward Microsoft the SBC listens on TLS with the carrier wildcard certificate and requires the
proxies' certificates, signed by the lab CA (Part 7.3 [DOC]: mutual TLS); it reaches the proxies
at the addresses the topology gives their FQDNs.  Toward the carrier it listens on the topology's
PSTN-side transport (UDP or TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from sbcsim.clock import LoopClock
from sbcsim.endpoints.mutants import Mutant, get_mutant, mutants_table
from sbcsim.endpoints.sbc import (
    MicrosoftSideStack,
    ReferenceSbc,
    Resolve,
    SbcSettings,
    microsoft_side_options,
    pstn_side_options,
)
from sbcsim.errors import ConfigError, TransportError
from sbcsim.ids import IdGenerator
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.node import Node
from sbcsim.stack import make_ua
from sbcsim.topology import Topology, load_topology

__all__ = ["LiveSbc", "SbcCertificates", "mutants", "sbc", "start_live_sbc"]

EXIT_OK = 0
EXIT_USAGE = 2
#: How long a shutdown may take before sockets are abandoned.
SHUTDOWN_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class SbcCertificates:
    """The SBC's certificate (the carrier wildcard), its key, and the CA it trusts."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def in_directory(cls, directory: Path, topology: Topology) -> SbcCertificates:
        """The files ``sbcsim certs --out DIR`` writes for this topology's SBC."""
        stem = f"wildcard.{topology.carrier.base_domain}"  # Part 4.1 [DOC]: *.base_domain
        found = cls(directory / f"{stem}.pem", directory / f"{stem}.key", directory / "ca.pem")
        missing = [p for p in (found.cert_file, found.key_file, found.ca_file) if not p.is_file()]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise ConfigError(
                f"missing certificate file(s): {names}; "
                f"create them with `sbcsim certs --out {directory}`"
            )
        return found


@dataclass(eq=False)
class LiveSbc:
    """A running live SBC: the SBC, its two transports and where they listen."""

    sbc: ReferenceSbc
    microsoft: LiveTransport
    pstn: LiveTransport
    listening: tuple[tuple[str, TransportName, Address], ...]

    async def aclose(self, timeout: float = SHUTDOWN_GRACE) -> None:
        """Stop the OPTIONS cycle and close every socket, waiting at most ``timeout`` seconds."""
        self.sbc.stop()
        closing = asyncio.gather(self.microsoft.aclose(), self.pstn.aclose())
        with contextlib.suppress(TimeoutError):  # a bounded shutdown: give up on stuck sockets
            await asyncio.wait_for(closing, timeout)


class _Late:
    """A receiver standing in for a node that exists only once its port is bound."""

    def __init__(self) -> None:
        self.node: Node | None = None

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        if self.node is not None:
            self.node.message_received(data, peer)

    def transport_error(self, remote: Address, transport: TransportName, exc: Any) -> None:
        if self.node is not None:
            self.node.transport_error(remote, transport, exc)


async def start_live_sbc(
    topology: Topology,
    certificates: SbcCertificates,
    *,
    mutant: Mutant | str | None = None,
    resolve: Resolve | None = None,
    microsoft_listen: Address | None = None,
    pstn_listen: Address | None = None,
    settings: SbcSettings | None = None,
) -> LiveSbc:
    """Start the reference SBC on real sockets.

    ``microsoft_listen``/``pstn_listen`` override the topology's SBC addresses (port 0 binds any
    free port; Contact and Via carry the port bound).  ``resolve`` is the DNS used for the proxy
    FQDNs (default: the topology's addresses).  Raises :class:`TransportError` when an address
    cannot be bound and :class:`ssl.SSLError`/:class:`ConfigError` for unusable certificates.
    """
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    found = get_mutant(mutant) if isinstance(mutant, str) else mutant
    config = settings or SbcSettings()
    resolver = resolve or topology.resolve
    rng = random.Random()
    ms = topology.sbc.microsoft_side
    ps = topology.sbc.pstn_side
    ms_host, ms_port = microsoft_listen or (ms.address, ms.port)
    ps_host, ps_port = pstn_listen or (ps.address, ps.port)
    certs = certificates
    # Part 7.3 [DOC]: mutual TLS both ways, the lab CA standing in for the public roots
    server_ssl = server_context(
        certs.cert_file, certs.key_file, ca_file=certs.ca_file, require_client_cert=True
    )
    client_ssl = client_context(certs.ca_file, certs.cert_file, certs.key_file)

    def call_at(when: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return loop.call_at(when, fn)

    ms_receiver = _Late()
    ms_transport = LiveTransport(ms_receiver, loop, client_ssl_context=client_ssl)
    pstn_receiver = _Late()
    pstn_transport = LiveTransport(pstn_receiver, loop)
    try:
        ms_bound = await ms_transport.listen_tls(ms_host, ms_port, server_ssl)
        if ps.transport == "udp":
            ps_bound = await pstn_transport.listen_udp(ps_host, ps_port)
        elif ps.transport == "tcp":
            ps_bound = await pstn_transport.listen_tcp(ps_host, ps_port)
        else:
            plain = server_context(certs.cert_file, certs.key_file)
            ps_bound = await pstn_transport.listen_tls(ps_host, ps_port, plain)
    except BaseException:
        await ms_transport.aclose()
        await pstn_transport.aclose()
        raise
    ms_ua = make_ua(
        "sbc-microsoft",
        ms_host,
        ms_bound[1],
        "tls",
        ids=IdGenerator(rng),
        rand=rng.random,
        options=microsoft_side_options(topology, config, found, resolver, ms_bound[1]),
    )
    ms_stack = MicrosoftSideStack(ms_ua)
    ms_node = Node("sbc-microsoft", ms_stack, clock, call_at)
    ms_node.attach(ms_transport)
    ms_receiver.node = ms_node
    pstn_ua = make_ua(
        "sbc-pstn",
        ps_host,
        ps_bound[1],
        ps.transport,
        ids=IdGenerator(rng),
        rand=rng.random,
        options=pstn_side_options(topology, config),
    )
    pstn_node = Node("sbc-pstn", pstn_ua, clock, call_at)
    pstn_node.attach(pstn_transport)
    pstn_receiver.node = pstn_node
    sbc = ReferenceSbc(
        topology,
        ms_node=ms_node,
        ms_stack=ms_stack,
        pstn_node=pstn_node,
        resolve=resolver,
        ms_address=(ms_host, ms_bound[1]),
        pstn_address=(ps_host, ps_bound[1]),
        settings=config,
        mutant=found,
        random_bytes=secrets.token_bytes,
    )
    sbc.start()
    return LiveSbc(
        sbc,
        ms_transport,
        pstn_transport,
        (("microsoft", "tls", ms_bound), ("pstn", ps.transport, ps_bound)),
    )


# ------------------------------------------------------------------------------ commands


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


class _StartError(Exception):
    """The SBC could not start (port in use, bad certificate): exit 2 with this text."""


async def _serve(
    console: Console,
    topology: Topology,
    certificates: SbcCertificates,
    mutant: Mutant | None,
    duration: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    # the handlers go in first: a signal sent as soon as the banner shows must stop us cleanly
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        try:
            live = await start_live_sbc(topology, certificates, mutant=mutant)
        except TransportError as exc:
            raise _StartError(f"cannot listen: {exc.msg}") from exc
        except (ssl.SSLError, ConfigError, OSError) as exc:
            raise _StartError(f"cannot start: {exc}") from exc
        try:
            _banner(console, topology, live, mutant)
            if duration is not None:
                loop.call_later(duration, stop.set)
            await stop.wait()
        finally:
            await live.aclose()
            console.print("stopped", markup=False, highlight=False)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _banner(console: Console, topology: Topology, live: LiveSbc, mutant: Mutant | None) -> None:
    names = ", ".join(t.trunk_fqdn for t in topology.tenants)
    for side, transport, (host, port) in live.listening:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        console.print(f"listening {side} {transport} {shown}", markup=False, highlight=False)
    console.print(
        f"reference SBC {live.sbc.x_ms_sbc} for {topology.carrier.trunk_fqdn} "
        f"(tenants: {names}); mutant: {mutant.name if mutant else 'none'}; Ctrl-C stops it",
        markup=False,
        highlight=False,
    )


@click.command("sbc")
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
    help="Directory written by `sbcsim certs --out DIR` (the wildcard certificate and ca.pem).",
)
@click.option("--mutant", default=None, help="Run with one named fault (see `sbcsim mutants`).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop by itself after this many seconds.",
)
@click.pass_context
def sbc(
    ctx: click.Context,
    topology_file: Path | None,
    certs_dir: Path,
    mutant: str | None,
    duration: float | None,
) -> None:
    """Run the reference SBC on real sockets until SIGINT/SIGTERM.

    TLS toward the Microsoft proxies at the topology's addresses, UDP or TCP toward the carrier.
    Exit 2 when the topology, the certificates or a listening address cannot be used.
    """
    console = _console(ctx)
    try:
        topology = load_topology(topology_file)
        certificates = SbcCertificates.in_directory(certs_dir, topology)
        found = get_mutant(mutant) if mutant is not None else None
    except ConfigError as exc:
        console.print(f"sbcsim sbc: {exc}", markup=False, highlight=False)
        ctx.exit(EXIT_USAGE)
    try:
        asyncio.run(_serve(console, topology, certificates, found, duration))
    except _StartError as exc:
        console.print(f"sbcsim sbc: {exc}", markup=False, highlight=False)
        ctx.exit(EXIT_USAGE)
    ctx.exit(EXIT_OK)


@click.command("mutants")
@click.option(
    "--score",
    "plans",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="run this plan (repeatable) against every mutant and print the mutation score",
)
@click.option(
    "--jobs", "-j", type=int, default=1, show_default=True, help="mutants run in parallel processes"
)
@click.pass_context
def mutants(ctx: click.Context, plans: tuple[Path, ...], jobs: int) -> None:
    """List the reference SBC's and contact center's mutants and the rule each one breaks.

    With --score PLAN: run the plan against the reference (it must pass every check) and
    against each mutant of the family the plan targets (``mutants: sbc`` or ``ccaas`` in the
    plan; at least one check must fail); exit 0 only at a 100 % score.
    """
    console = _console(ctx)
    if not plans:
        from sbcsim.endpoints.ccaas import ccaas_mutants_table

        console.print(mutants_table())
        console.print(ccaas_mutants_table())
        return
    from rich.table import Table

    from sbcsim.errors import ConfigError
    from sbcsim.testplan.mutation import MutantOutcome, mutation_report
    from sbcsim.testplan.plan import load_plan

    try:
        loaded = [load_plan(p) for p in plans]
    except ConfigError as exc:
        console.print(f"invalid input: {exc}", markup=False)
        ctx.exit(EXIT_USAGE)

    def show(o: MutantOutcome) -> None:
        console.print(f"  {o.mutant:<24} {'killed' if o.killed else 'SURVIVED'}", highlight=False)

    report = mutation_report(loaded, jobs=jobs, on_outcome=show)
    table = Table(title="Mutation score: " + ", ".join(lp.plan.id for lp in loaded))
    for col in ("mutant", "rule broken", "verdict", "failed checks"):
        table.add_column(col, overflow="fold")
    for o in report.outcomes:
        shown = ", ".join((*o.failed_checks[:4], *o.errors[:2]))
        more = (
            len(o.failed_checks)
            + len(o.errors)
            - min(4, len(o.failed_checks))
            - min(2, len(o.errors))
        )
        table.add_row(
            o.mutant,
            o.rule,
            "killed" if o.killed else "[red]SURVIVED[/red]",
            shown + (f" (+{more} more)" if more > 0 else ""),
        )
    console.print(table)
    ref = "passes" if report.reference_passes else "[red]FAILS[/red]"
    killed = sum(o.killed for o in report.outcomes)
    families = ", ".join(dict.fromkeys(lp.plan.mutants for lp in loaded))
    console.print(
        f"reference ({families}) {ref} every plan; mutants killed "
        f"{killed}/{len(report.outcomes)}: "
        f"mutation score {report.score:.0%}"
    )
    ctx.exit(EXIT_OK if report.reference_passes and report.score == 1.0 else 1)
