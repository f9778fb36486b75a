"""``sbcsim uas`` and ``sbcsim uac``: a live answering UAS and a live call generator.

They put the engine on real sockets with nothing else around it, which is what a person needs
to smoke-test an SBC trunk or a SIPp set-up before running a certification plan, and what the
interop tests and the calls-per-second benchmark drive against SIPp's built-in ``uac``/``uas``
scenarios.  The behaviour is :class:`~sbcsim.endpoints.basic.AnsweringUas` and
:class:`~sbcsim.endpoints.basic.CallGenerator`, the same classes the simulated fault runs use.

Both print the address they bound on start-up (``listening on udp:127.0.0.1:40312``, port 0
allowed) so that a script can start them on a free port and read where they are, and a summary
table at the end.  Exit codes: 0 every call completed, 1 some call failed or did not finish in
time, 2 bad usage (an unknown option value, an address already in use, an unreadable
certificate), each with a message that names the culprit.  Every wait is bounded: ``uac`` gives
up ``--timeout`` seconds after its last call was placed, ``uas --calls N`` after ``--timeout``
seconds in all; only a ``uas`` started with neither ``--calls`` nor ``--duration`` runs until it
is interrupted (Ctrl-C or SIGTERM), as a server does.

Logs go to stderr through structlog: ``sbcsim --log-level`` sets the level, the commands' own
``--log-level`` overrides it (``warning`` when a command runs on its own); at ``debug`` every SIP
message received and sent is logged with ``node``, ``call_id`` and ``branch`` bound, and call
failures are logged at ``info`` with ``node`` and ``call_id``.

Both run on uvloop when it is installed, with the garbage collector's older generations nearly
switched off for the run (see ``_GC_THRESHOLDS``): that and a large UDP receive buffer are what
let one process answer a few thousand calls a second without stalls (``benchmarks/uas_cps.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import random
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table

from sbcsim.clock import LoopClock
from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallFailed,
    RequestCompleted,
    UserAgent,
)
from sbcsim.endpoints.basic import AnsweringUas, CallGenerator
from sbcsim.errors import ConfigError, RemoteProtocolError, TransportError
from sbcsim.ids import IdGenerator
from sbcsim.logs import configure_logging
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context, server_context
from sbcsim.net.udp import canonical_host, format_address
from sbcsim.node import Node
from sbcsim.sip.uri import parse_uri
from sbcsim.stack import UaOptions, live_node, make_ua

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ListenSpec",
    "UacReport",
    "UasListenerCounts",
    "UasReport",
    "local_address_towards",
    "parse_hostport",
    "parse_listen",
    "run_event_loop",
    "uac",
    "uas",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_TRANSPORTS: tuple[TransportName, ...] = ("udp", "tcp", "tls")
_LOG_LEVELS = ("debug", "info", "warning", "error")
# A loaded node keeps every transaction alive for Timer J/L (32 s over UDP): at 2,000 calls/s
# that is millions of objects, and a full collection of them stalls the loop for a second (SIPp
# then retransmits).  The engine's per-call objects form no reference cycles (tests/test_tools.py
# checks it), so reference counting frees them and the young generation is collected in small
# steps; the older generations almost never.
_GC_THRESHOLDS = (20_000, 1_000, 1_000)


# -- addresses ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One ``--listen`` value: ``udp:127.0.0.1:5060``, ``tcp:[::1]:0``, ``tls:0.0.0.0:5061``."""

    transport: TransportName
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{format_address((self.host, self.port))}"


def parse_hostport(text: str, default_port: int | None = None) -> Address:
    """``host:port`` (``[v6]:port``; the port may be omitted when ``default_port`` is given)
    -> a canonical ``(host, port)``.  Raises :class:`ValueError` with the reason."""
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':PORT' after ']' in {text!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"an IPv6 address needs brackets: [{text}]:PORT")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"missing host in {text!r}")
    if not port_text:
        if default_port is None:
            raise ValueError(f"missing port in {text!r} (HOST:PORT)")
        return canonical_host(host), default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid port {port_text!r} in {text!r}")
    return canonical_host(host), int(port_text)


def parse_listen(text: str) -> ListenSpec:
    """``TRANSPORT:HOST:PORT`` -> :class:`ListenSpec` (raises :class:`ValueError`)."""
    transport, sep, rest = text.partition(":")
    transport = transport.lower()
    if not sep or transport not in _TRANSPORTS:
        raise ValueError(f"{text!r} is not TRANSPORT:HOST:PORT with TRANSPORT one of udp, tcp, tls")
    host, port = parse_hostport(rest)
    return ListenSpec(_TRANSPORTS[_TRANSPORTS.index(transport)], host, port)


def _listen_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[ListenSpec, ...]:
    try:
        return tuple(parse_listen(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _hostport_option(default_port: int | None) -> Callable[..., Address | None]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> Address | None:
        if value is None:
            return None
        try:
            return parse_hostport(value, default_port)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return convert


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> str:
    """The first address ``host`` resolves to (an IP literal is returned as it is)."""
    if _is_ip(host):
        return host
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise TransportError(f"{host} does not resolve: {exc.strerror or exc}") from exc
    return canonical_host(str(infos[0][4][0]))


def local_address_towards(remote_ip: str) -> str:
    """The address this host sends from to reach ``remote_ip`` (a connected UDP socket tells;
    no packet is sent).  Loopback peers get the loopback address of their family."""
    ip = ipaddress.ip_address(remote_ip)
    if ip.is_loopback:
        return "::1" if ip.version == 6 else "127.0.0.1"
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((remote_ip, 9))
            return canonical_host(str(sock.getsockname()[0]))
    except OSError as exc:
        raise TransportError(
            f"no route to {remote_ip}: {exc.strerror or exc}", address=(remote_ip, 9)
        ) from exc


# -- process set-up -------------------------------------------------------------------------------
def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed (it roughly halves the cost of each
    datagram), else on the standard loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(main)
    return uvloop.run(main)


@contextlib.contextmanager
def _logging_for(ctx: click.Context, level: str | None) -> Iterator[bool]:
    """Apply ``--log-level`` for the duration of one command and say whether debug logs are on.

    Under the ``sbcsim`` group the group's ``--log-level`` already configured logging and an
    explicit option here overrides it; a command invoked on its own (scripts, tests) logs at
    ``warning`` by default.  The previous configuration comes back afterwards, as tests run
    commands in-process.
    """
    if level is None and ctx.parent is None:
        level = "warning"
    previous = structlog.get_config()
    if level is not None:
        configure_logging(level)
    probe = structlog.get_logger("sbcsim.tools")
    try:
        yield bool(probe.is_enabled_for(logging.DEBUG))
    finally:
        if level is not None:
            structlog.configure(**previous)


@contextlib.contextmanager
def _tuned_gc() -> Iterator[None]:
    previous = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    gc.freeze()  # start-up objects never need scanning again
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run with a summary (only possible in the main thread)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _tls_contexts(
    transport: TransportName,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    require_client_cert: bool,
    role: str,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server context, client context) for a node of ``transport``; raises ConfigError."""
    if (cert is None) != (key is None):
        raise ConfigError("--cert and --key go together")
    if transport != "tls":
        return None, None
    server = None
    if cert is not None and key is not None:
        server = server_context(cert, key, ca, require_client_cert)
    elif role == "uas":
        raise ConfigError("a tls listener needs --cert and --key")
    client = client_context(ca, cert, key)
    return server, client


# -- reports --------------------------------------------------------------------------------------
def _reasons_table(failures: dict[str, int]) -> Table:
    table = Table(title="failure reasons", title_justify="left")
    table.add_column("reason")
    table.add_column("calls", justify="right")
    for reason, count in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(reason, str(count))
    return table


@dataclass(frozen=True, slots=True)
class UasListenerCounts:
    """What one listener of ``sbcsim uas`` saw."""

    listener: str
    started: int
    established: int
    completed: int
    failed: int
    failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UasReport:
    """The end-of-run summary of ``sbcsim uas``."""

    listeners: tuple[UasListenerCounts, ...]
    elapsed: float
    expected_calls: int | None = None
    timed_out: bool = False

    @property
    def started(self) -> int:
        return sum(c.started for c in self.listeners)

    @property
    def established(self) -> int:
        return sum(c.established for c in self.listeners)

    @property
    def completed(self) -> int:
        return sum(c.completed for c in self.listeners)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.listeners)

    @property
    def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for counts in self.listeners:
            for reason, n in counts.failures.items():
                out[reason] = out.get(reason, 0) + n
        return out

    @property
    def ok(self) -> bool:
        if self.failed or self.timed_out:
            return False
        return self.expected_calls is None or self.completed >= self.expected_calls

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = Table(title="sbcsim uas", title_justify="left")
        for name in ("listener", "started", "established", "completed", "failed"):
            table.add_column(name, justify="left" if name == "listener" else "right")
        rows = list(self.listeners)
        for c in rows:
            table.add_row(
                c.listener, str(c.started), str(c.established), str(c.completed), str(c.failed)
            )
        if len(rows) > 1:
            table.add_row(
                "total",
                str(self.started),
                str(self.established),
                str(self.completed),
                str(self.failed),
            )
        yield table
        rate = self.completed / self.elapsed if self.elapsed > 0 else 0.0
        yield f"elapsed {self.elapsed:.2f} s, {rate:.1f} calls/s completed"
        if self.timed_out and self.expected_calls is not None:
            yield (
                f"timed out: {self.completed + self.failed} of {self.expected_calls} calls ended "
                "before --timeout"
            )
        if self.failures:
            yield _reasons_table(self.failures)


@dataclass(frozen=True, slots=True)
class UacReport:
    """The end-of-run summary of ``sbcsim uac``."""

    target: str
    remote: str
    transport: TransportName
    requested: int
    rate: float
    started: int
    established: int
    completed: int
    failed: int
    elapsed: float
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.completed == self.requested and self.failed == 0

    @property
    def calls_per_second(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = Table(title="sbcsim uac", title_justify="left", show_header=False)
        table.add_column("what")
        table.add_column("value", justify="right")
        for what, value in (
            ("target", self.target),
            ("remote", f"{self.remote} ({self.transport})"),
            ("requested", str(self.requested)),
            ("offered rate", f"{self.rate:g} calls/s"),
            ("started", str(self.started)),
            ("established", str(self.established)),
            ("completed", str(self.completed)),
            ("failed", str(self.failed)),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("calls/s", f"{self.calls_per_second:.1f}"),
        ):
            table.add_row(what, value)
        yield table
        if self.failures:
            yield _reasons_table(self.failures)


# -- uas ------------------------------------------------------------------------------------------
class _UasWatch:
    """Follows one answering UAS: logs call outcomes with ``node`` and ``call_id`` bound, counts
    cancelled calls (which :class:`AnsweringUas` leaves alone) and says when enough calls ended."""

    def __init__(self, node: Node, uas: AnsweringUas, on_ended: Callable[[], None]) -> None:
        self.node = node
        self.uas = uas
        self.cancelled = 0
        self._inner = node.on_event
        self._on_ended = on_ended
        node.on_event = self

    @property
    def ended(self) -> int:
        return self.uas.stats.completed + self.uas.stats.failed + self.cancelled

    def __call__(self, event: object) -> None:
        if self._inner is not None:
            self._inner(event)
        match event:
            case CallEnded(call=call, reason=reason):
                if reason not in ("remote-bye", "local-bye"):
                    self.node.log.info("call_failed", call_id=call.call_id, reason=reason)
                self._on_ended()
            case CallCancelled(call=call):
                self.cancelled += 1
                self.node.log.info("call_cancelled", call_id=call.call_id)
                self._on_ended()
            case _:
                pass

    def counts(self, listener: str) -> UasListenerCounts:
        stats = self.uas.stats
        failures = dict(stats.failures)
        if self.cancelled:
            failures["cancelled"] = failures.get("cancelled", 0) + self.cancelled
        return UasListenerCounts(
            listener,
            stats.started,
            stats.established,
            stats.completed,
            stats.failed + self.cancelled,
            failures,
        )


async def _serve(
    console: Console,
    specs: tuple[ListenSpec, ...],
    *,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    require_client_cert: bool,
    ring_delay: float,
    answer_delay: float,
    duration: float | None,
    calls: int | None,
    timeout: float,
    advertise: str | None,
    log_messages: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    opened: list[tuple[ListenSpec, Node, LiveTransport]] = []
    watches: list[_UasWatch] = []

    def on_ended() -> None:
        if calls is not None and sum(w.ended for w in watches) >= calls:
            stop.set()

    try:
        for spec in specs:
            server_ssl, client_ssl = _tls_contexts(
                spec.transport, cert, key, ca, require_client_cert, "uas"
            )
            name = "uas" if len(specs) == 1 else f"uas-{spec.transport}"
            unspecified = _is_ip(spec.host) and ipaddress.ip_address(spec.host).is_unspecified
            contact_host = advertise or (socket.gethostname() if unspecified else None)
            node, live = await live_node(
                name,
                spec.host,
                transport=spec.transport,
                port=spec.port,
                server_ssl=server_ssl,
                client_ssl=client_ssl,
                options=UaOptions(contact_host=contact_host),
            )
            node.log_messages = log_messages
            bound = ListenSpec(spec.transport, *live.address(spec.transport))
            opened.append((bound, node, live))
            media_host = advertise or ("127.0.0.1" if unspecified else spec.host)
            uas = AnsweringUas(
                node, ring_delay=ring_delay, answer_delay=answer_delay, media_host=media_host
            )
            watches.append(_UasWatch(node, uas, on_ended))
            console.print(f"sbcsim uas: listening on {bound}", markup=False)
    except (TransportError, ConfigError) as exc:
        console.print(f"sbcsim uas: {exc}", markup=False)
        for _, _, live in opened:
            await live.aclose()
        return EXIT_USAGE

    started = loop.time()
    timed_out = False
    with _stop_on_signals(stop):
        try:
            if duration is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            elif calls is not None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout)
                except TimeoutError:
                    timed_out = True
            else:
                await stop.wait()
        finally:
            elapsed = loop.time() - started
            for _, _, live in opened:
                await live.aclose()
    report = UasReport(
        tuple(w.counts(str(spec)) for (spec, _, _), w in zip(opened, watches, strict=True)),
        elapsed,
        calls,
        timed_out,
    )
    console.print(report)
    return EXIT_OK if report.ok else EXIT_FAILED


_path = click.Path(dir_okay=False, path_type=Path)


@click.command("uas")
@click.option(
    "--listen",
    "listens",
    metavar="TRANSPORT:HOST:PORT",
    callback=_listen_option,
    multiple=True,
    required=True,
    help="Where to accept calls, e.g. udp:127.0.0.1:5060 (port 0 = any free port). Repeatable.",
)
@click.option("--cert", type=_path, help="Certificate (PEM) presented by tls listeners.")
@click.option("--key", type=_path, help="Private key (PEM) of --cert.")
@click.option("--ca", type=_path, help="CA (PEM) that client certificates must chain to.")
@click.option(
    "--require-client-cert", is_flag=True, help="Refuse TLS clients without a certificate (mTLS)."
)
@click.option(
    "--ring-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds from the INVITE to 180 Ringing.",
)
@click.option(
    "--answer-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds from 180 Ringing to 200 OK.",
)
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Run this many seconds."
)
@click.option("--calls", type=click.IntRange(min=1), help="Stop once this many calls have ended.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="With --calls: give up after this many seconds.",
)
@click.option(
    "--advertise",
    metavar="HOST",
    help="Host put in Via, Contact and SDP (default: the listen address).",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    help="Override sbcsim --log-level (logs go to stderr; debug logs every SIP message).",
)
@click.pass_context
def uas(
    ctx: click.Context,
    listens: tuple[ListenSpec, ...],
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    require_client_cert: bool,
    ring_delay: float,
    answer_delay: float,
    duration: float | None,
    calls: int | None,
    timeout: float,
    advertise: str | None,
    log_level: str | None,
) -> None:
    """Answer every call: 100 Trying, 180 Ringing, 200 OK with SDP; then wait for the ACK and
    the caller's BYE.

    Runs for --duration seconds, until --calls calls have ended (at most --timeout seconds), or,
    with neither, until interrupted.  Exit 0 when no call failed (and, with --calls, that many
    completed), 1 otherwise, 2 for bad usage.
    """
    console = _console(ctx)
    if duration is not None and calls is not None:
        console.print("sbcsim uas: --duration and --calls exclude each other", markup=False)
        ctx.exit(EXIT_USAGE)
    with _logging_for(ctx, log_level) as debug, _tuned_gc():
        code = run_event_loop(
            _serve(
                console,
                listens,
                cert=cert,
                key=key,
                ca=ca,
                require_client_cert=require_client_cert,
                ring_delay=ring_delay,
                answer_delay=answer_delay,
                duration=duration,
                calls=calls,
                timeout=timeout,
                advertise=advertise,
                log_messages=debug,
            )
        )
    ctx.exit(code)


# -- uac ------------------------------------------------------------------------------------------
class _UacWatch:
    """Follows the call generator: a call counts as completed only once its BYE got a 2xx, so
    the run ends when every BYE has been answered (or the time is up)."""

    def __init__(
        self, node: Node, generator: CallGenerator, on_finished: Callable[[], None]
    ) -> None:
        self.node = node
        self.generator = generator
        self.pending_byes = 0
        self.bye_failures: dict[str, int] = {}
        self.finished_at: float | None = None
        self._inner = node.on_event
        self._on_finished = on_finished
        node.on_event = self

    @property
    def finished(self) -> bool:
        return self.generator.done and self.pending_byes == 0

    def __call__(self, event: object) -> None:
        if self._inner is not None:
            self._inner(event)
        log = self.node.log
        match event:
            case CallEnded(call=call, reason=reason):
                if reason == "local-bye":
                    self.pending_byes += 1
                else:
                    log.info("call_failed", call_id=call.call_id, reason=reason)
            case CallFailed(call=call, status=status, reason=reason):
                log.info("call_failed", call_id=call.call_id, status=status, reason=reason)
            case RequestCompleted(call=call, ref=ref, status=status, reason=reason):
                if ref.method == "BYE":
                    self.pending_byes -= 1
                    if status >= 300:
                        why = f"BYE {status} {reason}"
                        self.bye_failures[why] = self.bye_failures.get(why, 0) + 1
                        log.info("bye_failed", call_id=call.call_id, status=status, reason=reason)
            case _:
                pass
        if self.finished and self.finished_at is None:
            self.finished_at = self.node.now()
            self._on_finished()


async def _connect_only_node(
    name: str, host: str, client_ssl: ssl.SSLContext, seed: int | None = None
) -> tuple[Node, LiveTransport]:
    """A TLS node without a listener (no certificate to present): requests go out over the
    connections it opens and everything comes back over them.  Its Contact carries the default
    port 5061, where nothing listens; peers answer over the open connection."""
    loop = asyncio.get_running_loop()
    holder: list[Node] = []

    class _Receiver:
        def message_received(self, data: bytes, peer: PeerInfo) -> None:
            holder[0].message_received(data, peer)

        def transport_error(
            self, remote: Address, transport: TransportName, exc: TransportError
        ) -> None:
            holder[0].transport_error(remote, transport, exc)

    live = LiveTransport(_Receiver(), loop, client_ssl_context=client_ssl)
    rng = random.Random(seed)
    ua: UserAgent = make_ua(name, host, 5061, "tls", ids=IdGenerator(rng), rand=rng.random)
    node = Node(name, ua, LoopClock(loop), loop.call_at)
    node.attach(live)
    holder.append(node)
    return node, live


async def _place_calls(
    console: Console,
    target: str,
    remote: Address,
    *,
    transport: TransportName,
    calls: int,
    rate: float,
    hold: float,
    bind: Address | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    server_name: str | None,
    timeout: float,
    log_messages: bool,
) -> int:
    loop = asyncio.get_running_loop()
    try:
        server_ssl, client_ssl = _tls_contexts(transport, cert, key, ca, False, "uac")
        remote_ip = await _resolve(remote[0], remote[1])
        if server_name is None and not _is_ip(remote[0]):
            server_name = remote[0]
        host, port = bind if bind is not None else (local_address_towards(remote_ip), 0)
        if transport == "tls" and server_ssl is None:
            assert client_ssl is not None
            node, live = await _connect_only_node("uac", host, client_ssl)
            console.print(
                f"sbcsim uac: no tls listener (no --cert): calling from {host}", markup=False
            )
        else:
            node, live = await live_node(
                "uac",
                host,
                transport=transport,
                port=port,
                server_ssl=server_ssl,
                client_ssl=client_ssl,
            )
            console.print(
                f"sbcsim uac: listening on {ListenSpec(transport, *live.address(transport))}",
                markup=False,
            )
    except (TransportError, ConfigError) as exc:
        console.print(f"sbcsim uac: {exc}", markup=False)
        return EXIT_USAGE
    node.log_messages = log_messages
    finished = asyncio.Event()
    generator = CallGenerator(
        node,
        target,
        (remote_ip, remote[1]),
        transport=transport,
        calls=calls,
        rate=rate,
        hold=hold,
        media_host=host,
        server_name=server_name,
    )
    watch = _UacWatch(node, generator, finished.set)
    started = loop.time()
    generator.start()
    bound = (calls - 1) / rate + hold + timeout
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        try:
            waits = [asyncio.ensure_future(finished.wait()), asyncio.ensure_future(stop.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=bound, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in pending:
                fut.cancel()
        finally:
            end = watch.finished_at if watch.finished_at is not None else loop.time()
            await live.aclose()
    stats = generator.stats
    failures = dict(stats.failures)
    for why, n in watch.bye_failures.items():
        failures[why] = failures.get(why, 0) + n
    bye_failed = sum(watch.bye_failures.values())
    unanswered_byes = max(watch.pending_byes, 0)
    if unanswered_byes:
        failures["BYE unanswered"] = unanswered_byes
    unfinished = calls - stats.completed - stats.failed
    if unfinished:
        failures["unfinished at timeout"] = unfinished
    report = UacReport(
        target=target,
        remote=format_address(remote),
        transport=transport,
        requested=calls,
        rate=rate,
        started=stats.started,
        established=stats.established,
        completed=stats.completed - bye_failed - unanswered_byes,
        failed=stats.failed + bye_failed + unanswered_byes + unfinished,
        elapsed=end - started,
        failures=failures,
    )
    console.print(report)
    return EXIT_OK if report.ok else EXIT_FAILED


@click.command("uac")
@click.argument("target")
@click.option(
    "--remote",
    metavar="HOST:PORT",
    callback=_hostport_option(None),
    required=True,
    help="Where to send the INVITEs (the first hop), HOST:PORT.",
)
@click.option(
    "--transport",
    type=click.Choice(list(_TRANSPORTS)),
    default="udp",
    show_default=True,
)
@click.option("--calls", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="New calls per second.",
)
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds from the answer to our BYE.",
)
@click.option(
    "--bind",
    metavar="HOST[:PORT]",
    callback=_hostport_option(0),
    help="Local HOST[:PORT] (default: the address that routes to --remote, any port).",
)
@click.option("--ca", type=_path, help="CA (PEM) the server certificate must chain to.")
@click.option("--cert", type=_path, help="Client certificate (PEM) for mutual TLS.")
@click.option("--key", type=_path, help="Private key (PEM) of --cert.")
@click.option("--server-name", help="TLS SNI and expected certificate name.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the calls to finish after the last one was placed.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    help="Override sbcsim --log-level (logs go to stderr; debug logs every SIP message).",
)
@click.pass_context
def uac(
    ctx: click.Context,
    target: str,
    remote: Address,
    transport: TransportName,
    calls: int,
    rate: float,
    hold: float,
    bind: Address | None,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_name: str | None,
    timeout: float,
    log_level: str | None,
) -> None:
    """Place --calls calls to TARGET (a SIP URI) at --rate calls per second, hang each up after
    --hold seconds, and print what happened.

    Exit 0 when every call completed (answered, ACKed, BYE answered with 2xx), 1 otherwise,
    2 for bad usage.
    """
    console = _console(ctx)
    try:
        parse_uri(target)
    except RemoteProtocolError as exc:
        console.print(f"sbcsim uac: TARGET {target!r} is not a SIP URI: {exc.msg}", markup=False)
        ctx.exit(EXIT_USAGE)
    with _logging_for(ctx, log_level) as debug, _tuned_gc():
        code = run_event_loop(
            _place_calls(
                console,
                target,
                remote,
                transport=transport,
                calls=calls,
                rate=rate,
                hold=hold,
                bind=bind,
                cert=cert,
                key=key,
                ca=ca,
                server_name=server_name,
                timeout=timeout,
                log_messages=debug,
            )
        )
    ctx.exit(code)
