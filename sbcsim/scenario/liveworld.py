"""The live world of a scenario: sbcsim's endpoints on real sockets around an external SBC.

``sbcsim run --target TARGET.yaml`` runs each scenario against an SBC that runs on its own (it
is never started here).  For every scenario a fresh world:

* opens the three Microsoft proxies, the Teams users behind them and the PSTN carrier at the
  target's bind addresses, exactly as ``sbcsim serve`` does (:func:`sbcsim.serve.start_live_lab`),
  on an asyncio loop of its own whose clock starts at 0 when the world is made;
* captures every message those endpoints send and receive — TLS legs as the decrypted SIP,
  addresses as the sockets saw them — which is the scenario's trace;
* maps the scenario's actions, actors and probes onto those endpoints with the very code of the
  embedded world (:class:`~sbcsim.scenario.labworld.LabWorld`): only time, the trace and the
  identity of the parties differ.

Time is real: ``run_until`` turns the loop until the predicate holds, checking it every 10 ms,
and gives up at the timeout, so a scenario whose SBC never answers fails its checks instead of
hanging.  Scenarios that cannot mean anything against an external SBC are *skipped* with the
reason: those tagged ``sim-only`` (they need the virtual clock: 30-minute session timers ...)
or whose waits could add up to more than the target's ``max_scenario_seconds``, and those that
partition the in-memory network, configure the reference SBC, drive the contact center or make
the SBC send hand-written messages.  A check that looks inside the reference SBC (how many calls
it holds) is skipped alone; the rest of its scenario is judged.

Toward the SBC, the parties are named by who captured the message rather than by address: an
SBC that opens its connections from an ephemeral address (as most do) is still ``sbc``.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.pstn import PstnPhoneAgent
from sbcsim.endpoints.teams_proxy import TeamsProxy
from sbcsim.endpoints.teams_users import TeamsUserAgent
from sbcsim.errors import ConfigError, SbcsimError, TransportError
from sbcsim.lab import Lab
from sbcsim.net.base import Address, PeerInfo, Receiver, TransportLayer, TransportName
from sbcsim.net.live import LiveTransport
from sbcsim.net.tls import client_context
from sbcsim.net.udp import address_family, bind_error, bind_socket, canonical_host
from sbcsim.scenario.engine import CheckSkipped, ScenarioError, ScenarioSkipped, World
from sbcsim.scenario.labworld import PROXY_SHORT, LabWorld, _microsoft_settings
from sbcsim.scenario.models import (
    CheckWrap,
    ExpectNoneWrap,
    ExpectWrap,
    Scenario,
    SendStep,
    WaitStep,
)
from sbcsim.serve import LiveLab, ProxyCertificates, ServeError, start_live_lab
from sbcsim.target import LiveTarget, is_target_path, load_target
from sbcsim.testplan.plan import LoadedPlan
from sbcsim.testplan.results import TraceEntry

__all__ = [
    "POLL_INTERVAL",
    "SIM_ONLY_TAG",
    "LiveWorld",
    "LiveWorldError",
    "check_bind_addresses",
    "check_sbc_reachable",
    "live_factory_for",
    "live_skip_reason",
    "longest_run",
]

#: How often ``run_until`` checks its predicate (seconds of real time).
POLL_INTERVAL = 0.01
#: Scenarios with this tag need the virtual clock and are skipped against a live SBC.
SIM_ONLY_TAG = "sim-only"
#: Bound on each step of the check that the SBC is there before the first scenario (seconds).
PREFLIGHT_TIMEOUT = 3.0
#: Bounds on opening and closing the lab's sockets (seconds).
START_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: Name of the SBC in the trace (the ladder's column), whatever its address.
SBC_NAME = "sbc"

T = TypeVar("T")
WorldFactory = Callable[[Scenario, int], World]


class LiveWorldError(SbcsimError):
    """The live world cannot be built (an address taken since the run started ...)."""


class _ScenarioLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock reads 0 when it is made.

    Everything on the loop — the endpoints' :class:`~sbcsim.clock.LoopClock`, ``call_at``,
    timeouts — reads this same clock, so a scenario's times (the trace, presence changes,
    trunk health) count from the start of the world, as they do in simulation.
    """

    def __init__(self) -> None:
        self._sbcsim_epoch = time.monotonic()
        super().__init__()

    def time(self) -> float:
        return time.monotonic() - self._sbcsim_epoch


# ------------------------------------------------------------------------------ the capture


@dataclass(slots=True)
class _Record:
    """One captured message; a send over a connection still opening has no source port yet."""

    time: float
    src: Address
    dst: Address
    transport: TransportName
    data: bytes
    src_name: str
    dst_name: str
    connection_id: int | None
    opening: LiveTransport | None = None
    dropped: bool = False


def _route(
    live: LiveTransport, remote: Address, transport: TransportName, connection_id: int | None
) -> tuple[Address, Address, int | None] | None:
    """(local address, remote address, connection) a message for ``remote`` went out on, once
    known.  Over a connection, the remote is the connection's: a response follows its request's
    connection whatever address its Via names."""
    if transport == "udp":
        try:
            return live.address("udp"), remote, None
        except LookupError:
            return None
    if connection_id is not None:
        conn = live.connection(connection_id)
        if conn is not None and conn.state == "open" and conn.transport_name == transport:
            return conn.local, conn.remote, conn.id
    for info in live.connections():
        if info.remote == remote and info.transport == transport:
            return info.local, info.remote, info.connection_id
    return None


def _fallback_source(live: LiveTransport, transport: TransportName) -> Address:
    try:
        return live.address(transport)
    except LookupError:
        return live.local_addresses[0] if live.local_addresses else ("0.0.0.0", 0)


class _Capture:
    """Every message the world's endpoints sent and received, in order."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.records: list[_Record] = []
        self._entries: list[TraceEntry] = []
        self._stale: set[int] = set()
        self.options_from_sbc = 0

    def tap(self, name: str, live: LiveTransport) -> TransportLayer:
        """A :data:`~sbcsim.serve.TrafficTap`: interpose on one endpoint's transport."""
        live.receiver = _TappedReceiver(self, name, live.receiver)
        return _TappedLink(self, name, live)

    def sent(
        self,
        name: str,
        live: LiveTransport,
        data: bytes,
        remote: Address,
        transport: TransportName,
        connection_id: int | None,
    ) -> None:
        remote = (canonical_host(remote[0]), int(remote[1]))
        found = _route(live, remote, transport, connection_id)
        record = _Record(
            self._clock(),
            found[0] if found else _fallback_source(live, transport),
            found[1] if found else remote,
            transport,
            data,
            name,
            SBC_NAME,
            found[2] if found else connection_id,
            opening=None if found else live,
        )
        self._add(record)

    def received(self, name: str, data: bytes, peer: PeerInfo) -> None:
        if name != "pstn" and data.startswith(b"OPTIONS "):
            self.options_from_sbc += 1
        record = _Record(
            self._clock(),
            peer.remote,
            peer.local,
            peer.transport,
            data,
            SBC_NAME,
            name,
            peer.connection_id,
        )
        self._add(record)

    def failed(self, name: str, remote: Address, transport: TransportName) -> None:
        """A connection to ``remote`` could not be made: what waited for it never left."""
        if transport == "udp":
            return  # the datagram did go out; the ICMP error says nothing more
        for index, record in enumerate(self.records):
            if (
                record.opening is not None
                and record.src_name == name
                and record.dst == remote
                and record.transport == transport
            ):
                record.opening = None
                record.dropped = True
                self._stale.add(index)

    def _add(self, record: _Record) -> None:
        self.records.append(record)
        if record.opening is not None:
            self._stale.add(len(self.records) - 1)

    def entries(self) -> list[TraceEntry]:
        """The trace so far; entries whose source was unknown are completed once it is."""
        for index in sorted(self._stale):
            record = self.records[index]
            if record.opening is not None:
                found = _route(record.opening, record.dst, record.transport, None)
                if found is None:
                    if index < len(self._entries):
                        continue
                else:
                    record.src, record.dst, record.connection_id = found
                    record.opening = None
            if record.opening is None:
                self._stale.discard(index)
            if index < len(self._entries):
                self._entries[index] = self._entry(index, record)
        for index in range(len(self._entries), len(self.records)):
            self._entries.append(self._entry(index, self.records[index]))
        return self._entries

    def finish(self) -> list[TraceEntry]:
        """The final trace: sources never learnt stay at the endpoint's listening address."""
        entries = self.entries()
        self._stale.clear()
        return entries

    @staticmethod
    def _entry(index: int, record: _Record) -> TraceEntry:
        return TraceEntry(
            index=index,
            time=record.time,
            src=record.src,
            dst=record.dst,
            transport=record.transport,
            data=record.data,
            src_name=record.src_name,
            dst_name=record.dst_name,
            connection_id=record.connection_id,
            dropped=record.dropped,
        )


class _TappedLink:
    """What an endpoint sends through: the live transport, recording each message."""

    def __init__(self, capture: _Capture, name: str, live: LiveTransport) -> None:
        self._capture = capture
        self._name = name
        self._live = live

    def send(
        self,
        data: bytes,
        remote: Address,
        transport: TransportName,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
    ) -> None:
        # send first: a new connection then exists, and a reused one is found by its peer
        self._live.send(
            data, remote, transport, server_name=server_name, connection_id=connection_id
        )
        self._capture.sent(self._name, self._live, data, remote, transport, connection_id)

    def close_connection(self, connection_id: int) -> bool:
        return self._live.close_connection(connection_id)

    def close(self) -> None:
        self._live.close()


class _TappedReceiver:
    """What the live transport delivers to: records, then hands over to the endpoint."""

    def __init__(self, capture: _Capture, name: str, inner: Receiver) -> None:
        self._capture = capture
        self._name = name
        self._inner = inner

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        self._capture.received(self._name, data, peer)
        self._inner.message_received(data, peer)

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        self._capture.failed(self._name, remote, transport)
        self._inner.transport_error(remote, transport, exc)


# ------------------------------------------------------------------------------ the parties


class _NoNetwork:
    """The live world has no network of its own to partition."""

    def partition(self, a: str, b: str) -> None:
        raise ScenarioError("a live world cannot partition the network (it is a real one)")

    def heal(self, a: str, b: str) -> None:
        raise ScenarioError("a live world cannot partition the network (it is a real one)")


class _LiveParties:
    """The parties of the live lab, offered under the names the scenario mapping uses on a
    :class:`~sbcsim.lab.Lab` (phone, teams_user, proxy, presence, service)."""

    def __init__(self, live: LiveLab, now: Callable[[], float]) -> None:
        self.topology = live.topology
        self.service = live.service
        self.presence = live.service.presence
        self.pstn = live.pstn
        self.proxies = live.proxies
        self.net = _NoNetwork()
        self.sbc = None
        self._now = now

    def now(self) -> float:
        return self._now()

    def phone(self, number: str) -> PstnPhoneAgent:
        return self.pstn.phone(number)

    def teams_user(self, upn: str) -> TeamsUserAgent:
        return self.service.user(upn)

    def proxy(self, fqdn: str) -> TeamsProxy:
        return self.proxies[fqdn]

    def __getattr__(self, name: str) -> Any:
        raise _SimulationOnly(f"the live world has no {name!r}: it exists only in simulation")


class _SimulationOnly(ScenarioError, AttributeError):
    """A part of the simulated lab the live one does not have (``getattr(lab, name, None)``
    still gives None)."""


# ------------------------------------------------------------------------------ the world


class LiveWorld(LabWorld):
    """A :class:`~sbcsim.scenario.engine.World` on real sockets around an external SBC."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        target: LiveTarget,
        settings: MicrosoftSettings | None = None,
    ) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ScenarioError(
                "a live world turns its own event loop: run it from a thread without a running one"
            )
        self.target = target
        self._closed = False
        self._live: LiveLab | None = None
        self._loop = _ScenarioLoop()
        self._capture = _Capture(self._loop.time)
        try:
            self._live = self._run(
                asyncio.wait_for(
                    start_live_lab(
                        target.topology,
                        ProxyCertificates(target.trust_ca, target.proxy_files),
                        settings=settings,
                        client_certs=target.client_certificates,
                        seed=seed,
                        tap=self._capture.tap,
                    ),
                    START_TIMEOUT,
                )
            )
            # the shared mapping reads parties off a Lab; the live ones stand in for it
            parties = cast(Lab, _LiveParties(self._live, self.now))
            self._bind(scenario, target.topology, parties)
        except ServeError as exc:
            self.close()
            raise LiveWorldError(f"target {target.label}: cannot open the lab: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _run(self, awaitable: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            awaitable.close()
            raise ScenarioError("the live world is closed")
        return self._loop.run_until_complete(awaitable)

    # -- World: time and trace ----------------------------------------------------------------
    def now(self) -> float:
        return self._loop.time()

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        if predicate():
            return True
        if timeout <= 0:
            return False
        return self._run(self._until(predicate, timeout))

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._loop.time() + timeout
        while True:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return predicate()
            await asyncio.sleep(min(POLL_INTERVAL, remaining))
            if predicate():
                return True

    def run_for(self, seconds: float) -> None:
        if seconds > 0:
            self._run(asyncio.sleep(seconds))

    def warm_up(self, seconds: float) -> None:
        """Wait for the SBC's first OPTIONS, at most the target's ``warmup`` (and never longer
        than the scenario asks): the SBC keeps its own OPTIONS cycle, a minute by default."""
        limit = min(seconds, self.target.warmup)
        self.run_until(lambda: self._capture.options_from_sbc > 0, limit)

    def trace(self) -> list[TraceEntry]:
        if self._closed:
            return self._capture.finish()
        return self._capture.entries()

    def close(self) -> None:
        """Close every socket (bounded), then the loop.  The SBC is left running."""
        if self._closed:
            return
        try:
            self._capture.finish()
            if self._live is not None:
                self._loop.run_until_complete(self._live.aclose(CLOSE_TIMEOUT))
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.wait(tasks, timeout=CLOSE_TIMEOUT))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._closed = True
            self._loop.close()

    # -- actors: the side of the capture, not the address -------------------------------------
    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool:
        sending = address == entry.src
        side = entry.src_name if sending else entry.dst_name
        other = entry.dst_name if sending else entry.src_name
        proxies = {p.fqdn for p in self.topology.microsoft.proxies}
        lname = name.lower()
        if lname == SBC_NAME:
            return side == SBC_NAME
        if lname in ("sbc.microsoft", "sbc.ms"):
            return side == SBC_NAME and other in proxies
        if lname == "sbc.pstn":
            return side == SBC_NAME and other == "pstn"
        if lname == "microsoft":
            return side in proxies
        if lname == "pstn":
            return side == "pstn"
        fqdn = PROXY_SHORT.get(lname, lname)
        if fqdn in proxies:
            return side == fqdn
        actor = self.scenario.actors.get(name)
        if actor is not None:
            if actor.pstn is not None:
                return side == "pstn"
            if actor.teams is not None:
                return side in proxies
            if actor.proxy is not None:
                return side == PROXY_SHORT.get(actor.proxy, actor.proxy)
        raise ScenarioError(
            f"unknown actor {name!r} (use an actor of the scenario, sbc, microsoft, pstn, sip, sip2, sip3)"
        )

    # -- actions and probes ---------------------------------------------------------------------
    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        async def perform() -> None:
            # inside the loop: a send may open a connection, which needs the running loop
            LabWorld.act(self, kind, args, variables)

        self._run(perform())

    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        for name in condition:
            if name in _SBC_INTERNAL_PROBES:
                raise CheckSkipped(f"skipped against a live SBC: it {_SBC_INTERNAL_PROBES[name]}")
            if name in _SIM_ONLY_PROBES:
                raise ScenarioSkipped(f"the check {_SIM_ONLY_PROBES[name]}")
        return super().probe(condition, variables)


_NO_SBC_INTERNALS = "counts the reference SBC's calls, which an external SBC does not expose"
_NO_PARTITION = "partitions the network, which only the in-memory network can do"
_NO_CONTACT_CENTER = "drives the emulated contact center, which the live lab does not run"
#: Steps (by their key) that need what only the embedded lab has.
_SIM_ONLY_STEPS = {
    "partition": _NO_PARTITION,
    "heal": _NO_PARTITION,
    "api": _NO_CONTACT_CENTER,
    "escalate_to_sme": _NO_CONTACT_CENTER,
    "complete_transfer": _NO_CONTACT_CENTER,
    "sign_in": _NO_CONTACT_CENTER,
    "sign_out": _NO_CONTACT_CENTER,
}
#: Check conditions that look inside the reference SBC: only those checks are skipped.
_SBC_INTERNAL_PROBES = {"sbc_active_calls": _NO_SBC_INTERNALS}
#: Check conditions that need what only the embedded lab has: the scenario is skipped.
_SIM_ONLY_PROBES = {
    "api": _NO_CONTACT_CENTER,
    "api_retry_after": _NO_CONTACT_CENTER,
    "ccaas_call": _NO_CONTACT_CENTER,
    "ccaas_agent": _NO_CONTACT_CENTER,
}


def longest_run(scenario: Scenario, warmup: float) -> float:
    """The most real seconds ``scenario`` can take: its warm-up (at most ``warmup``), its waits
    and the windows of its judgements (each may run to its end)."""
    total = min(scenario.warmup, warmup)
    for step in scenario.steps:
        if isinstance(step, WaitStep):
            total += step.wait
        elif isinstance(step, ExpectWrap):
            total += step.expect.within
        elif isinstance(step, ExpectNoneWrap):
            total += step.expect_none.within
    return total


def live_skip_reason(
    scenario: Scenario, *, warmup: float = 0.0, max_seconds: float | None = None
) -> str | None:
    """Why ``scenario`` cannot be judged against a live SBC, or None when it can.

    ``max_seconds`` bounds the real time a scenario may take (see :func:`longest_run`)."""
    if SIM_ONLY_TAG in scenario.tags:
        return (
            f"tagged {SIM_ONLY_TAG}: it needs the virtual clock (long timers), "
            "so it runs only against the embedded SBC"
        )
    if max_seconds is not None:
        longest = longest_run(scenario, warmup)
        if longest > max_seconds:
            return (
                f"it may take {longest:g} s of real time, more than the target's "
                f"max_scenario_seconds ({max_seconds:g} s); long timers need the virtual clock"
            )
    if scenario.sbc_settings:
        names = ", ".join(sorted(scenario.sbc_settings))
        return f"it configures the reference SBC ({names}), which a live target does not run"
    if scenario.ccaas_settings or scenario.presence_api:
        return f"it {_NO_CONTACT_CENTER}"
    for number, step in enumerate(scenario.steps, start=1):
        kind = next(iter(type(step).model_fields))
        if kind in _SIM_ONLY_STEPS:
            return f"step {number} ({kind}) {_SIM_ONLY_STEPS[kind]}"
        if isinstance(step, SendStep) and step.send.from_.lower().startswith("sbc"):
            return f"step {number} makes the SBC send a hand-written message: only ours can"
        if isinstance(step, CheckWrap):
            for condition in step.check.condition:
                if condition in _SIM_ONLY_PROBES:
                    return f"check {step.check.id} {_SIM_ONLY_PROBES[condition]}"
    return None


def check_bind_addresses(target: LiveTarget) -> None:
    """Fail early, naming the address and the line of the target file, when something already
    listens where sbcsim must (each scenario opens the addresses afresh)."""
    for who, host, port, transport, where in target.listeners():
        family = address_family(host)
        if family is None:
            continue
        try:
            bind_socket(family, (host, port), "udp" if transport == "udp" else "tcp").close()
        except OSError as exc:
            reason = bind_error(exc, (host, port), transport).msg
            raise ConfigError(
                f"sbcsim cannot listen as {who}: {reason}", location=target.locate(where)
            ) from None


def check_sbc_reachable(target: LiveTarget, timeout: float = PREFLIGHT_TIMEOUT) -> None:
    """Fail early (exit 2), naming the address and the likely cause, when the SBC under test is
    not there: nothing listens on its Microsoft side, or TLS with it cannot hold (its certificate
    does not chain to ``sbc_ca`` or does not cover the carrier trunk FQDN, or it refuses the
    proxies' certificate).  Connecting, then the handshake, each wait at most ``timeout``; a
    handshake that only times out is left to the scenarios, which fail within their own bounds.
    """
    side = target.topology.sbc.microsoft_side
    where = f"{side.address}:{side.port}/tls"
    location = target.locate(("sbc", "microsoft_side"))

    def problem(text: str) -> ConfigError:
        return ConfigError(
            f"the SBC under test at {where} (its Microsoft side): {text}", location=location
        )

    try:
        raw = socket.create_connection((side.address, side.port), timeout=timeout)
    except ConnectionRefusedError:
        raise problem("nothing is listening there; is the SBC started?") from None
    except TimeoutError:
        raise problem(
            f"no answer to a connection within {timeout:g} s; is the SBC started, and is the "
            "address right?"
        ) from None
    except OSError as exc:
        raise problem(f"cannot connect: {exc.strerror or exc}") from None
    fqdn = target.topology.carrier.trunk_fqdn
    cert, key = next(iter(target.proxy_files.values()))
    context = client_context(target.trust_ca, cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # what the proxies speak (Part 7.1)
    with raw:
        raw.settimeout(timeout)
        try:
            with context.wrap_socket(raw, server_hostname=fqdn):
                pass
        except ssl.SSLCertVerificationError as exc:
            raise problem(
                f"TLS failed, its certificate does not hold ({exc.verify_message}): it must chain "
                f"to {target.trust_ca} and cover {fqdn} (DR Part 7.3)"
            ) from None
        except ssl.SSLError as exc:
            raise problem(
                f"TLS failed ({exc.reason or exc}): the SBC must speak TLS 1.2 and accept the "
                f"proxies' certificates, signed by {target.lab_ca} (install it as a trusted CA)"
            ) from None
        except OSError:
            return  # no handshake within the bound, or a reset: left to the scenarios


def _live_factory(
    target_path: str, default_topology: str | None, plan_settings: dict[str, Any]
) -> WorldFactory:
    target = load_target(target_path, default_topology)

    def make(scenario: Scenario, seed: int) -> World:
        reason = live_skip_reason(
            scenario, warmup=target.warmup, max_seconds=target.spec.max_scenario_seconds
        )
        if reason is not None:
            raise ScenarioSkipped(f"skipped against a live SBC: {reason}")
        settings = _microsoft_settings(plan_settings, scenario.settings)
        return LiveWorld(scenario, seed, target, settings)

    return make


def live_factory_for(loaded: LoadedPlan, target: str) -> Callable[[], WorldFactory]:
    """A picklable maker of live world factories for the target file ``target``.

    The target is loaded and checked here, its bind addresses tried and the SBC reached, so that
    a bad file, a missing certificate, an address in use, an SBC that is not started or whose
    TLS does not hold stops the run before any scenario (exit 2).
    """
    if not is_target_path(target):
        raise ConfigError(
            f"unknown target {target!r}: use embedded, mutant:NAME or a target file (TARGET.yaml)"
        )
    topology = loaded.topology_path()
    live = load_target(target, topology)
    _microsoft_settings(loaded.plan.settings)
    check_bind_addresses(live)
    max_seconds = live.spec.max_scenario_seconds
    if any(
        live_skip_reason(s, warmup=live.warmup, max_seconds=max_seconds) is None
        for s in loaded.scenarios
    ):
        check_sbc_reachable(live)  # only a plan that will talk to the SBC needs it there
    return functools.partial(
        _live_factory,
        str(Path(target).resolve()),
        str(topology) if topology else None,
        dict(loaded.plan.settings),
    )
