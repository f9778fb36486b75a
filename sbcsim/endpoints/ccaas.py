"""The reference contact-center platform (Connect model) behind the SBC, and its mutants.

A Connected Contact Center "uses Microsoft certified SBCs and Direct Routing to connect contact
center solutions to Teams phone system infrastructure" (direct-routing-sip.md 10.2 [DOC]).  Its
focus areas are what this module plays:

* **calls through the SBC** — the SBC routes each customer tenant's IVR entry number to the
  platform (a SIP node of its own at the topology's contact-center address, on the SBC's
  PSTN-side transport); the platform answers (IVR), queues the call, and rings a free agent with
  the queue's skills through the SBC, naming the customer tenant's derived trunk FQDN in the
  Request-URI so the SBC puts that FQDN in its Contact toward Microsoft (Parts 4.3, 2.1 [DOC]);
  media stays anchored on the platform, which bridges the legs itself;
* **Office 365 authN for agents** — each agent signs in to their own Microsoft tenant with the
  OAuth2 user sign-in (password) grant of :mod:`sbcsim.presence.oauth`, and the platform reads
  presence through the Graph-shaped API of :mod:`sbcsim.presence.api` with that delegated token
  (Part 11.2), subscribing to the SMEs' presence changes (Part 11.4);
* **presence-driven SME escalation** — the first SME (in the customer's order) whose
  availability is ``Available`` or ``AvailableIdle`` (11.4 [INF]); ``Busy``, ``DoNotDisturb``,
  ``Away``, ``Offline`` ... are skipped; with none free the escalation waits in the SME queue
  until a presence change notification shows one (or goes to voicemail);
* **transfers and group calls** — blind transfer (the agent is released at once, RFC 5589 §6),
  consult then transfer (the caller waits on the platform's hold while agent and SME talk,
  RFC 5589 §7), or a group call of caller, agent and SME that the agent then leaves.

The Graph API is reached in-process (:class:`InProcessGraph`): requests go through the aiohttp
application's own routes and middleware without a socket, on the lab's virtual clock, and every
exchange — token requests, presence reads, subscriptions, and the API's own webhook calls to the
platform — is recorded as a :class:`GraphExchange` for checks.

The named faults (:data:`CCAAS_MUTANTS`) are switches consulted at the exact point where each
behaviour happens (:meth:`ReferenceCcaas._faulty`), as for the reference SBC's mutants.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import functools
import json
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from aiohttp import StreamReader, web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import make_mocked_request
from rich.table import Table

from sbcsim.clock import Clock
from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    CallState,
    IncomingCall,
    UserAgent,
)
from sbcsim.endpoints.basic import g711_sdp
from sbcsim.endpoints.teams_users import tenant_guid
from sbcsim.errors import ConfigError, LocalProtocolError
from sbcsim.node import Cancellable, Node
from sbcsim.presence.api import PRESENCE_API_KEY, ApiSettings, WebhookResponse, create_app
from sbcsim.presence.model import PresenceService, format_graph_datetime
from sbcsim.presence.oauth import GRAPH_AUDIENCE, TokenAuthority
from sbcsim.sip.uri import SipUri
from sbcsim.stack import UaOptions, sim_node
from sbcsim.topology import (
    CcQueue,
    ContactCenter,
    ContactCenterCustomer,
    EscalationMode,
    SmeFallback,
    TeamsUser,
    Tenant,
    Topology,
)

if TYPE_CHECKING:
    from sbcsim.lab import Lab

__all__ = [
    "AGENT_SCOPES",
    "CCAAS_MUTANTS",
    "ROUTABLE_AVAILABILITY",
    "CcaasEvent",
    "CcaasMutant",
    "CcaasSettings",
    "CustomerCall",
    "Escalation",
    "GraphExchange",
    "InProcessGraph",
    "ReferenceCcaas",
    "build_lab_graph",
    "ccaas_mutants_table",
    "get_ccaas_mutant",
    "json_path",
    "json_subset",
    "judge_exchanges",
    "judge_retry_after",
    "lab_token_authority",
    "start_presence_api",
]

log = structlog.get_logger("sbcsim.ccaas")

#: The availabilities an SME can take an escalation in (direct-routing-sip.md 11.4 [INF]).
ROUTABLE_AVAILABILITY: frozenset[str] = frozenset({"Available", "AvailableIdle"})

#: The delegated permissions the platform's agents consent to (Part 11.2 [DOC]: Presence.Read,
#: Presence.Read.All; User.Read is what every sign-in carries).
AGENT_SCOPES: tuple[str, ...] = ("Presence.Read", "Presence.Read.All", "User.Read")

_T = TypeVar("_T")


# ==============================================================================================
# mutants
# ==============================================================================================
@dataclass(frozen=True, slots=True)
class CcaasMutant:
    """One named fault of the reference contact center and the rule it breaks."""

    name: str
    rule: str
    """The rule broken: a part of direct-routing-sip.md (with its grade) or an RFC clause."""
    description: str
    """One line: what the mutant platform does differently."""


_ALL = (
    CcaasMutant(
        "ignores-presence",
        "Part 11.4 [INF], Part 10.2 [DOC]",
        "escalates to the first SME of the list without reading anybody's presence",
    ),
    CcaasMutant(
        "escalates-to-dnd",
        "Part 11.4 [INF]",
        "treats an SME in DoNotDisturb as free",
    ),
    CcaasMutant(
        "escalates-to-busy",
        "Part 11.4 [INF]",
        "treats an SME who is Busy as free",
    ),
    CcaasMutant(
        "skips-available-idle",
        "Part 11.4 [INF]",
        "takes only Available as free: an AvailableIdle SME is passed over",
    ),
    CcaasMutant(
        "other-tenant-token",
        "Part 10.2 [DOC], Part 11.2 [DOC]",
        "reads a customer's presence with a token of another customer tenant",
    ),
    CcaasMutant(
        "other-tenant-smes",
        "Part 4 [DOC], Part 10.2 [DOC]",
        "asks for the presence of every customer's SMEs, not only those of the call's tenant",
    ),
    CcaasMutant(
        "no-agent-sign-in",
        "Part 10.2 [DOC]",
        "never signs agents in: uses an application token (client credentials) for everything",
    ),
    CcaasMutant(
        "wrong-tenant-contact",
        "Part 4.3 [DOC], Part 2.2 [DOC]",
        "sends its calls to the SBC naming another customer tenant's trunk FQDN",
    ),
    CcaasMutant(
        "no-fallback",
        "Part 11.4 [INF]",
        "ends the caller's call when no SME is free instead of queueing or voicemail",
    ),
    CcaasMutant(
        "ignores-retry-after",
        "Part 11.2 [DOC]",
        "retries a throttled presence read after 1 s, whatever Retry-After says",
    ),
    CcaasMutant(
        "ignores-notifications",
        "Part 11.4 [DOC]",
        "ignores presence change notifications: a waiting escalation only times out",
    ),
    CcaasMutant(
        "bad-webhook-validation",
        "Part 11.4 [INF]",
        "answers the subscription validation request with 202 and no validationToken",
    ),
    CcaasMutant(
        "blind-keeps-agent",
        "RFC 5589 §6, Part 10.2 [DOC]",
        "a blind transfer keeps the agent on the line until the SME answers",
    ),
    CcaasMutant(
        "consult-skips-consultation",
        "RFC 5589 §7, Part 10.2 [DOC]",
        "completes a consult transfer the moment the SME answers, with no consultation",
    ),
    CcaasMutant(
        "conference-ends-with-agent",
        "Part 10.2 [DOC] group calls",
        "ends the whole group call when the agent drops out",
    ),
)

#: Every contact-center mutant by name, in listing order.
CCAAS_MUTANTS: Mapping[str, CcaasMutant] = MappingProxyType({m.name: m for m in _ALL})


def get_ccaas_mutant(name: str) -> CcaasMutant:
    """The contact-center mutant ``name``; :class:`~sbcsim.errors.ConfigError` otherwise."""
    try:
        return CCAAS_MUTANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown contact-center mutant {name!r}; known: {', '.join(CCAAS_MUTANTS)}"
        ) from None


def ccaas_mutants_table() -> Table:
    """The contact-center mutants as a table: name, the rule each breaks, what it does."""
    table = Table(title="Reference contact-center mutants")
    table.add_column("mutant", no_wrap=True)
    table.add_column("breaks", no_wrap=True)
    table.add_column("what it does")
    for mutant in CCAAS_MUTANTS.values():
        table.add_row(mutant.name, mutant.rule, mutant.description)
    return table


# ==============================================================================================
# the Graph API, in process
# ==============================================================================================
@dataclass(frozen=True, slots=True)
class GraphExchange:
    """One HTTP exchange with (or from) the Graph-shaped API, as a check sees it.

    ``client`` says who sent the request: ``ccaas`` (the platform), ``scenario`` (an ``api``
    step) or ``graph`` (the API calling a subscriber's webhook).  ``token_tenant`` and
    ``token_user`` are the ``tid``/``upn`` claims of the bearer token sent — for a token request,
    of the token issued.
    """

    index: int
    time: float
    client: str
    method: str
    path: str
    request_headers: tuple[tuple[str, str], ...]
    request_body: bytes
    status: int
    response_headers: tuple[tuple[str, str], ...]
    response_body: bytes
    token_tenant: str | None = None
    token_user: str | None = None
    name: str | None = None

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == wanted), None)

    def json(self) -> Any:
        """The response body as JSON, or None when it is not JSON."""
        return _loads(self.response_body)

    def request_data(self) -> Any:
        """The request body: JSON, or the fields of a form, or None."""
        content_type = next((v for k, v in self.request_headers if k.lower() == "content-type"), "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.request_body.decode("utf-8", "replace")))
        return _loads(self.request_body)

    @property
    def summary(self) -> str:
        """One line for reports: time, client, request line and status."""
        who = f" as {self.token_user}" if self.token_user else ""
        return f"t={self.time:g}s {self.client} {self.method} {self.path}{who} -> {self.status}"


def _loads(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _token_claims(token: str | None) -> dict[str, Any]:
    """The claims of a JWT without verifying it (for the record only)."""
    if not token:
        return {}
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


WebhookHandler = Callable[[str, bytes, str], WebhookResponse]
"""A subscriber's endpoint in process: (url, body, content type) -> the answer."""


class InProcessGraph:
    """The lab's Graph-shaped presence API, reached without sockets, every exchange recorded.

    Requests run through the aiohttp application's routes and middleware on a private event
    loop that runs only for the duration of one request, so nothing happens behind the
    virtual clock's back.  The API's own background tasks are not started: change
    notifications are delivered by :meth:`deliver_pending`, which the lab schedules on its clock
    ``notification_delay`` seconds after each presence change (Graph's delivery latency is not
    documented [GAP]).  Subscribers register their notification URLs with
    :meth:`register_webhook`; a URL nobody registered is unreachable.
    """

    def __init__(
        self,
        presence: PresenceService,
        authority: TokenAuthority,
        *,
        clock: Clock,
        settings: ApiSettings | None = None,
        schedule: Callable[[float, Callable[[], None]], object] | None = None,
        notification_delay: float = 1.0,
    ) -> None:
        self.presence = presence
        self.authority = authority
        self.clock = clock
        self.notification_delay = notification_delay
        self.exchanges: list[GraphExchange] = []
        self.app = create_app(
            presence, authority, clock=clock, settings=settings, sender=self._send_webhook
        )
        self.api = self.app[PRESENCE_API_KEY]
        self._webhooks: list[tuple[str, WebhookHandler]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = False
        self._schedule = schedule
        self._delivery_due = False
        if schedule is not None:
            # Registered after the API's own listener, so its outbox is filled first.
            self._remove_listener: Callable[[], None] | None = presence.add_listener(
                self._presence_changed
            )
        else:
            self._remove_listener = None

    # -- webhooks ----------------------------------------------------------------------------
    def register_webhook(self, url_prefix: str, handler: WebhookHandler) -> None:
        """Route API calls to URLs starting with ``url_prefix`` to ``handler``."""
        self._webhooks.append((url_prefix, handler))

    async def _send_webhook(
        self, url: str, body: bytes, content_type: str, timeout: float
    ) -> WebhookResponse:
        handler = next((h for prefix, h in self._webhooks if url.startswith(prefix)), None)
        if handler is None:
            raise OSError(f"connection refused: nothing listens at {url}")
        answer = handler(url, body, content_type)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._record(
            "graph",
            "POST",
            path,
            (("Content-Type", content_type),),
            body,
            answer.status,
            (("Content-Type", answer.content_type),),
            answer.body,
            None,
        )
        return answer

    def _presence_changed(self, *_: object) -> None:
        if self._schedule is None or self._delivery_due or not self.api.pending:
            return
        self._delivery_due = True
        self._schedule(self.notification_delay, self.deliver_pending)

    def deliver_pending(self) -> None:
        """Send every queued change notification now (through the registered webhooks)."""
        self._delivery_due = False
        if self.api.pending:
            self._run(self.api.deliver_pending())

    # -- requests ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        client: str,
        bearer: str | None = None,
        json_body: object = None,
        form: Mapping[str, str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        name: str | None = None,
    ) -> GraphExchange:
        """Send one request and return the recorded exchange."""
        sent: list[tuple[str, str]] = list(headers)
        body = b""
        if bearer is not None:
            sent.append(("Authorization", f"Bearer {bearer}"))
        if form is not None:
            body = urlencode(dict(form)).encode("ascii")
            sent.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            sent.append(("Content-Type", "application/json"))
        if self._busy:
            raise RuntimeError("a Graph request was made while another one was in progress")
        self._busy = True
        try:
            response = self._run(self._dispatch(method.upper(), path, tuple(sent), body))
        finally:
            self._busy = False
        raw = response.body if isinstance(response, web.Response) else None
        out_body = raw if isinstance(raw, bytes) else b""
        out_headers = tuple((k, v) for k, v in response.headers.items())
        token: str | None = bearer
        if bearer is None and response.status == 200 and "/oauth2/" in path:
            issued = _loads(out_body)
            if isinstance(issued, dict) and isinstance(issued.get("access_token"), str):
                token = issued["access_token"]
        return self._record(
            client,
            method.upper(),
            path,
            tuple(sent),
            body,
            response.status,
            out_headers,
            out_body,
            token,
            name,
        )

    def _record(
        self,
        client: str,
        method: str,
        path: str,
        request_headers: tuple[tuple[str, str], ...],
        request_body: bytes,
        status: int,
        response_headers: tuple[tuple[str, str], ...],
        response_body: bytes,
        token: str | None,
        name: str | None = None,
    ) -> GraphExchange:
        claims = _token_claims(token)
        tid = claims.get("tid")
        upn = claims.get("upn")
        exchange = GraphExchange(
            index=len(self.exchanges),
            time=self.clock.now(),
            client=client,
            method=method,
            path=path,
            request_headers=request_headers,
            request_body=request_body,
            status=status,
            response_headers=response_headers,
            response_body=response_body,
            token_tenant=tid if isinstance(tid, str) else None,
            token_user=upn if isinstance(upn, str) else None,
            name=name,
        )
        self.exchanges.append(exchange)
        return exchange

    async def _dispatch(
        self, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        payload = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
        if body:
            payload.feed_data(body)
        payload.feed_eof()
        probe = make_mocked_request(method, path, headers=headers, app=self.app, loop=loop)
        match = await self.app.router.resolve(probe)
        request = make_mocked_request(
            method,
            path,
            headers=headers,
            app=self.app,
            payload=payload,
            match_info=dict(match),
            loop=loop,
        )
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = match.handler
        # The application's middleware, outermost first, as aiohttp chains it.
        for middleware in reversed(self.app.middlewares):
            handler = functools.partial(middleware, handler=handler)
        return await handler(request)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop = self._loop
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return loop.run_until_complete(coro)
        # Called from inside a running loop (an async caller): run the private loop on a
        # helper thread while this one waits; still one request at a time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(loop.run_until_complete, coro).result(timeout=30.0)

    def close(self) -> None:
        """Stop listening to presence changes and close the private event loop."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def lab_token_authority(topology: Topology, rng: random.Random | None = None) -> TokenAuthority:
    """The identity platform of the lab: every tenant, and in every contact-center customer
    tenant the platform's application and an account for each user.

    The application gets ``Presence.Read.All`` as an application role (11.2 [INF]: later Graph
    versions allow it) and the delegated scopes :data:`AGENT_SCOPES`; accounts sign in with the
    topology's ``contact_center.agent_password``.
    """
    authority = TokenAuthority(rng=rng)
    for tenant in topology.tenants:
        authority.add_tenant(tenant_guid(tenant), *tenant.domains)
    cc = topology.contact_center
    if cc is None:
        return authority
    for customer in cc.customer_list():
        tenant = topology.tenant(customer.tenant)
        guid = tenant_guid(tenant)
        authority.add_app(
            guid,
            str(cc.app.client_id),
            cc.app.client_secret,
            roles=("Presence.Read.All",),
            delegated_scopes=AGENT_SCOPES,
            display_name=cc.app.name,
        )
        for user in tenant.users:
            authority.add_user_account(guid, user.upn, cc.agent_password, user.graph_id)
    return authority


def build_lab_graph(
    topology: Topology,
    presence: PresenceService,
    *,
    clock: Clock,
    schedule: Callable[[float, Callable[[], None]], object] | None,
    rng: random.Random,
    settings: Mapping[str, Any] | None = None,
    notification_delay: float = 1.0,
) -> InProcessGraph:
    """The in-process Graph API of a simulated lab; ``settings`` override :class:`ApiSettings`."""
    overrides = dict(settings or {})
    known = {f.name for f in fields(ApiSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown presence API setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    overrides.setdefault("seed", rng.getrandbits(32))
    authority = lab_token_authority(topology, random.Random(rng.getrandbits(64)))
    return InProcessGraph(
        presence,
        authority,
        clock=clock,
        settings=ApiSettings(**overrides),
        schedule=schedule,
        notification_delay=notification_delay,
    )


# ==============================================================================================
# the platform
# ==============================================================================================
@dataclass(frozen=True, slots=True)
class CcaasSettings:
    """The reference platform's timings and limits (none is documented: lab choices [GAP])."""

    #: Agents sign in this long after the platform starts.
    sign_in_delay: float = 1.0
    #: The IVR greeting: a call joins its queue this long after it is answered.
    ivr_seconds: float = 3.0
    #: A queued call with no free agent is offered again this often.
    queue_retry_seconds: float = 5.0
    #: An agent or SME who has not answered by then is given up (CANCEL).
    alert_seconds: float = 30.0
    #: The longest voicemail message; then the platform hangs up.
    voicemail_seconds: float = 60.0
    #: A presence read answered 429 is retried after Retry-After, at most this many times.
    max_throttle_retries: int = 5
    #: Subscriptions are asked for this long (Graph allows at most an hour, 11.4 [DOC]) and
    #: renewed this long before they expire.
    subscription_lifetime: float = 3540.0
    subscription_renew_before: float = 300.0
    #: A token is renewed when it has less than this left.
    token_refresh_margin: float = 60.0
    #: Where the platform receives change notifications (in the lab: in process).
    webhook_port: int = 8080

    def __post_init__(self) -> None:
        for name in (
            "ivr_seconds",
            "queue_retry_seconds",
            "alert_seconds",
            "voicemail_seconds",
            "subscription_lifetime",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"contact-center setting {name} must be positive")
        if self.subscription_lifetime > 3600:
            raise ConfigError("subscription_lifetime cannot exceed one hour (Part 11.4 [DOC])")
        if self.max_throttle_retries < 0 or self.sign_in_delay < 0:
            raise ConfigError("max_throttle_retries and sign_in_delay must be >= 0")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> CcaasSettings:
        """Settings from keyword overrides; an unknown key is a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown contact-center setting(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(known))
            )
        return cls(**overrides)


@dataclass(frozen=True, slots=True)
class CcaasEvent:
    """Something the platform did, for reports and tests (``kind`` is snake_case)."""

    time: float
    kind: str
    detail: str = ""


LegRole = Literal["customer", "agent", "sme"]
EscalationState = Literal[
    "reading",
    "throttled",
    "ringing",
    "consulting",
    "conference",
    "completed",
    "waiting",
    "voicemail",
    "dropped",
]


@dataclass(eq=False)
class Escalation:
    """One SME escalation of a customer call."""

    mode: EscalationMode
    fallback: SmeFallback
    requested_at: float
    requested_by: str
    state: EscalationState = "reading"
    sme: str | None = None
    tried: list[str] = field(default_factory=list)
    reads: int = 0
    throttled: int = 0
    timer: Cancellable | None = field(default=None, repr=False)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(eq=False)
class _Leg:
    role: LegRole
    ref: CallRef
    number: str
    upn: str | None
    call: CustomerCall
    connected: bool = False
    timer: Cancellable | None = field(default=None, repr=False)


@dataclass(eq=False)
class CustomerCall:
    """A caller's call through the platform, with the agent and SME legs it grew."""

    id: int
    customer: ContactCenterCustomer
    queue: CcQueue
    caller: str
    entry_number: str
    started_at: float
    state: Literal["ivr", "queued", "offered", "with-agent", "with-sme", "voicemail", "ended"] = (
        "ivr"
    )
    customer_leg: _Leg | None = None
    agent_leg: _Leg | None = None
    sme_leg: _Leg | None = None
    agent: str | None = None
    escalation: Escalation | None = None
    held: bool = False
    tried_agents: list[str] = field(default_factory=list)
    history: list[tuple[float, str]] = field(default_factory=list)
    timer: Cancellable | None = field(default=None, repr=False)

    @property
    def parties(self) -> tuple[str, ...]:
        """The numbers of the connected legs: caller, agent, SME (in that order)."""
        legs = (self.customer_leg, self.agent_leg, self.sme_leg)
        return tuple(leg.number for leg in legs if leg is not None and leg.connected)


@dataclass(eq=False)
class _Agent:
    user: TeamsUser
    customer: ContactCenterCustomer
    tenant: Tenant
    signed_in: bool = False
    token: str | None = None
    token_expires: float = 0.0
    call: CustomerCall | None = None

    @property
    def upn(self) -> str:
        return self.user.upn


@dataclass(eq=False)
class _Customer:
    config: ContactCenterCustomer
    tenant: Tenant
    smes: list[TeamsUser]
    client_state: str
    subscription: str | None = None
    renew: Cancellable | None = field(default=None, repr=False)


class ReferenceCcaas:
    """The reference contact-center platform (see the module docstring).

    Build it with :meth:`factory` for ``Lab.build``; scenarios drive it with
    :meth:`escalate`, :meth:`complete_transfer`, :meth:`sign_in` and :meth:`sign_out`, and
    checks read :attr:`calls`, :attr:`events` and the graph's exchanges.
    """

    def __init__(
        self,
        topology: Topology,
        node: Node,
        graph: InProcessGraph,
        *,
        sbc_address: tuple[str, int],
        transport: Literal["udp", "tcp", "tls"],
        settings: CcaasSettings | None = None,
        mutant: CcaasMutant | str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        cc = topology.contact_center
        if cc is None:
            raise ConfigError("the topology has no contact_center section")
        self.topology = topology
        self.config: ContactCenter = cc
        self.node = node
        stack = node.stack
        if not isinstance(stack, UserAgent):
            raise TypeError("the contact-center node must run a UserAgent")
        self.ua: UserAgent = stack
        self.graph = graph
        self.sbc_address = sbc_address
        self.transport: Literal["udp", "tcp", "tls"] = transport
        self.settings = settings or CcaasSettings()
        self.mutant: CcaasMutant | None = (
            get_ccaas_mutant(mutant) if isinstance(mutant, str) else mutant
        )
        self._rng = rng or random.Random(0)
        self.events: list[CcaasEvent] = []
        self.calls: list[CustomerCall] = []
        self.agents: dict[str, _Agent] = {}
        self.customers: dict[str, _Customer] = {}
        self._legs: dict[int, _Leg] = {}
        self._session = 7000
        self._started = False
        self.webhook_base = f"http://{cc.address}:{self.settings.webhook_port}/ccaas/notifications"
        self.log = log.bind(node="ccaas")
        for customer in cc.customer_list():
            tenant = topology.tenant(customer.tenant)
            smes = [u for u in map(topology.user_by_upn, customer.smes) if u is not None]
            state = f"sbcsim-{customer.tenant}-{self._rng.getrandbits(48):012x}"
            self.customers[customer.tenant] = _Customer(customer, tenant, smes, state)
            for upn in customer.agents:
                user = topology.user_by_upn(upn)
                if user is not None:
                    self.agents[user.upn] = _Agent(user, customer, tenant)
        graph.register_webhook(self.webhook_base, self._webhook)
        node.on_event = self._on_event

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def factory(cls, mutant: str | None = None, **settings: Any) -> Callable[[Lab], ReferenceCcaas]:
        """A ``ccaas_factory`` for ``Lab.build``: the platform on ``lab.net`` at the topology's
        contact-center address, talking to the SBC's PSTN side and to ``lab.graph``."""
        found = get_ccaas_mutant(mutant) if mutant is not None else None
        parsed = CcaasSettings.from_overrides(settings)

        def build(lab: Lab) -> ReferenceCcaas:
            topology = lab.topology
            cc = topology.contact_center
            if cc is None or lab.graph is None:
                raise ConfigError("the lab has no contact center (topology contact_center)")
            side = topology.sbc.pstn_side
            node = sim_node(
                lab.sim,
                lab.net,
                "ccaas",
                cc.address,
                transport=side.transport,
                port=cc.port,
                options=UaOptions(user_agent="sbcsim-ccaas"),
            )
            platform = cls(
                topology,
                node,
                lab.graph,
                sbc_address=(side.address, side.port),
                transport=side.transport,
                settings=parsed,
                mutant=found,
                rng=lab.sim.derive_rng("ccaas"),
            )
            platform.start()
            return platform

        return build

    def start(self) -> None:
        """Sign every agent in, ``sign_in_delay`` seconds from now (once)."""
        if self._started:
            return
        self._started = True
        self._later(self.settings.sign_in_delay, self._sign_in_everyone)

    def _sign_in_everyone(self) -> None:
        for agent in self.agents.values():
            self.sign_in(agent.upn)

    # -- helpers -----------------------------------------------------------------------------
    def _faulty(self, name: str) -> bool:
        """Whether the mutant ``name`` is switched on (a typo in a name is a bug, not a no)."""
        if name not in CCAAS_MUTANTS:
            raise KeyError(name)
        return self.mutant is not None and self.mutant.name == name

    def now(self) -> float:
        return self.node.now()

    def _later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        return self.node.call_later(delay, fn)

    def _event(self, kind: str, detail: str = "", call: CustomerCall | None = None) -> None:
        self.events.append(CcaasEvent(self.now(), kind, detail))
        if call is not None:
            call.history.append((self.now(), f"{kind} {detail}".strip()))
        self.log.info(kind, detail=detail)

    def _sdp(self) -> bytes:
        self._session += 1
        return g711_sdp(self.config.address, 20000 + 2 * (self._session % 10000), self._session)

    def _agent(self, who: str) -> _Agent:
        user = self.topology.user_by_upn(who) or self.topology.user_by_number(who)
        agent = self.agents.get(user.upn) if user is not None else None
        if agent is None:
            raise LookupError(f"{who!r} is not an agent of the contact center")
        return agent

    # -- Graph: sign-in, tokens, presence ----------------------------------------------------
    def sign_in(self, who: str) -> bool:
        """Sign an agent in to their Microsoft tenant (10.2 [DOC] "Office 365 authN for agents"):
        the password grant, then the agent's own presence, then the SME subscription."""
        agent = self._agent(who)
        if not self._get_token(agent):
            self._event("sign_in_failed", agent.upn)
            return False
        agent.signed_in = True
        self._event("agent_signed_in", agent.upn)
        self.graph.request("GET", "/v1.0/me/presence", client="ccaas", bearer=agent.token)
        customer = self.customers[agent.customer.tenant]
        if customer.subscription is None:
            self._subscribe(customer, agent)
        self._offer_queued()
        return True

    def sign_out(self, who: str) -> None:
        """The agent leaves: no new calls are offered to them."""
        agent = self._agent(who)
        agent.signed_in = False
        agent.token = None
        self._event("agent_signed_out", agent.upn)

    def _get_token(self, agent: _Agent) -> bool:
        guid = tenant_guid(agent.tenant)
        app = self.config.app
        if self._faulty("no-agent-sign-in"):
            form = {
                "grant_type": "client_credentials",
                "client_id": str(app.client_id),
                "client_secret": app.client_secret,
                "scope": f"{GRAPH_AUDIENCE}/.default",
            }
        else:
            # Part 10.2 [DOC]: agents authenticate to their own Microsoft tenant
            form = {
                "grant_type": "password",
                "client_id": str(app.client_id),
                "client_secret": app.client_secret,
                "username": agent.upn,
                "password": self.config.agent_password,
                "scope": " ".join(
                    [f"{GRAPH_AUDIENCE}/Presence.Read.All", "openid", "profile", "offline_access"]
                ),
            }
        exchange = self.graph.request(
            "POST", f"/{guid}/oauth2/v2.0/token", client="ccaas", form=form
        )
        body = exchange.json()
        if exchange.status != 200 or not isinstance(body, dict):
            return False
        token = body.get("access_token")
        expires = body.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires, int):
            return False
        agent.token = token
        agent.token_expires = self.now() + expires
        return True

    def _token_of(self, agent: _Agent) -> str | None:
        """A valid token of ``agent`` (renewed when it is about to expire)."""
        if agent.token is None or agent.token_expires - self.now() < (
            self.settings.token_refresh_margin
        ):
            self._get_token(agent)
        return agent.token

    def _reading_token(self, agent: _Agent) -> str | None:
        """The token an escalation reads presence with: the escalating agent's own."""
        if self._faulty("other-tenant-token"):
            other = next(
                (a for a in self.agents.values() if a.tenant.id != agent.tenant.id),
                None,
            )
            if other is not None:
                return self._token_of(other)
        # Part 11.2 [DOC]: presence is read per tenant; the agent's token is of their tenant
        return self._token_of(agent)

    def _subscribe(self, customer: _Customer, agent: _Agent) -> None:
        """Subscribe to the customer's SMEs' presence (11.4 [DOC]) with the agent's token."""
        if not customer.smes:
            return
        ids = ", ".join(f"'{u.graph_id}'" for u in customer.smes)
        expires = self.now() + self.settings.subscription_lifetime
        exchange = self.graph.request(
            "POST",
            "/v1.0/subscriptions",
            client="ccaas",
            bearer=self._token_of(agent),
            json_body={
                "changeType": "updated",
                "notificationUrl": f"{self.webhook_base}/{customer.config.tenant}",
                "resource": f"/communications/presences?$filter=id in ({ids})",
                "expirationDateTime": format_graph_datetime(self._epoch() + expires),
                "clientState": customer.client_state,
            },
        )
        body = exchange.json()
        if exchange.status == 201 and isinstance(body, dict) and isinstance(body.get("id"), str):
            customer.subscription = body["id"]
            self._event("subscribed", f"{customer.config.tenant} {customer.subscription}")
            lifetime = self.settings.subscription_lifetime
            renew_in = max(1.0, lifetime - self.settings.subscription_renew_before)
            customer.renew = self._later(renew_in, lambda: self._renew(customer, agent))
        else:
            self._event("subscription_failed", f"{customer.config.tenant} {exchange.status}")

    def _renew(self, customer: _Customer, agent: _Agent) -> None:
        if customer.subscription is None:
            return
        expires = self.now() + self.settings.subscription_lifetime
        exchange = self.graph.request(
            "PATCH",
            f"/v1.0/subscriptions/{customer.subscription}",
            client="ccaas",
            bearer=self._token_of(agent),
            json_body={"expirationDateTime": format_graph_datetime(self._epoch() + expires)},
        )
        customer.subscription = None if exchange.status != 200 else customer.subscription
        if customer.subscription is None:
            self._subscribe(customer, agent)
            return
        renew_in = max(
            1.0, self.settings.subscription_lifetime - self.settings.subscription_renew_before
        )
        customer.renew = self._later(renew_in, lambda: self._renew(customer, agent))

    def _epoch(self) -> float:
        return self.graph.presence.settings.epoch

    def _webhook(self, url: str, body: bytes, content_type: str) -> WebhookResponse:
        """The notification endpoint: the validation handshake and change notifications."""
        query = dict(parse_qsl(urlsplit(url).query))
        token = query.get("validationToken")
        if token is not None:
            if self._faulty("bad-webhook-validation"):
                return WebhookResponse(202, b"", "text/plain")
            # Graph's webhook handshake: echo the token as text/plain (11.4 [INF])
            return WebhookResponse(200, token.encode("utf-8"), "text/plain")
        tenant_id = urlsplit(url).path.rstrip("/").rpartition("/")[2]
        customer = self.customers.get(tenant_id)
        data = _loads(body)
        items = data.get("value") if isinstance(data, dict) else None
        if customer is None or not isinstance(items, list):
            return WebhookResponse(400, b"", "text/plain")
        users: list[str] = []
        for item in items:
            if not isinstance(item, dict) or item.get("clientState") != customer.client_state:
                continue  # not ours: Graph's clientState is how a subscriber tells
            resource = item.get("resourceData")
            if isinstance(resource, dict) and isinstance(resource.get("id"), str):
                users.append(resource["id"])
        if users:
            # Answer at once (Graph expects a quick 202) and act on the lab's clock.
            self._later(0.0, lambda: self._presence_changed(customer, users))
        return WebhookResponse(202, b"", "text/plain")

    def _presence_changed(self, customer: _Customer, users: list[str]) -> None:
        self._event("presence_notification", f"{customer.config.tenant} {','.join(users)}")
        if self._faulty("ignores-notifications"):
            return
        # Part 11.4 [DOC]: a change notification; the waiting escalations look again
        for call in list(self.calls):
            esc = call.escalation
            if call.customer is customer.config and esc is not None and esc.state == "waiting":
                esc.state = "reading"
                self._select_sme(call, esc)

    # -- SIP events --------------------------------------------------------------------------
    def _on_event(self, ev: object) -> None:
        match ev:
            case IncomingCall(call=ref, request=request):
                self._incoming(ref, request)
            case CallProgress():
                pass
            case CallEstablished(call=ref):
                leg = self._legs.get(ref.id)
                if leg is not None and leg.role != "customer" and not leg.connected:
                    self._answered(leg)
            case CallFailed(call=ref, status=status):
                leg = self._legs.pop(ref.id, None)
                if leg is not None:
                    self._failed(leg, status)
            case CallCancelled(call=ref):
                leg = self._legs.pop(ref.id, None)
                if leg is not None:
                    self._gone(leg)
            case CallEnded(call=ref):
                leg = self._legs.pop(ref.id, None)
                if leg is not None:
                    self._gone(leg)
            case _:
                pass
        self.node.poke()

    def _incoming(self, ref: CallRef, request: Any) -> None:
        now = self.now()
        uri = request.uri
        number = uri.user.split(";", 1)[0] if isinstance(uri, SipUri) and uri.user else ""
        route = self.config.route(number)
        if route is None:
            self.ua.respond(ref, 404, now=now)
            self._event("call_rejected", f"404 no entry number {number}")
            return
        customer, queue = route
        caller_uri = request.from_.uri
        caller = (
            caller_uri.user.split(";", 1)[0]
            if isinstance(caller_uri, SipUri) and caller_uri.user
            else ""
        )
        call = CustomerCall(
            len(self.calls) + 1, customer, queue, caller or "anonymous", number, now
        )
        self.calls.append(call)
        leg = _Leg("customer", ref, call.caller, None, call, connected=True)
        call.customer_leg = leg
        self._legs[ref.id] = leg
        # The IVR answers at once and plays its greeting before the call joins the queue.
        self.ua.respond(ref, 200, sdp=self._sdp(), now=now)
        self._event(
            "ivr_answered", f"{call.caller} -> {number} ({customer.tenant}/{queue.id})", call
        )
        call.timer = self._later(self.settings.ivr_seconds, lambda: self._enqueue(call))

    # -- queues and agents -------------------------------------------------------------------
    def _enqueue(self, call: CustomerCall) -> None:
        call.timer = None
        if call.state != "ivr":
            return
        call.state = "queued"
        self._event("queued", call.queue.id, call)
        self._offer(call)

    def _offer_queued(self) -> None:
        for call in self.calls:
            if call.state == "queued":
                self._offer(call)

    def _offer(self, call: CustomerCall) -> None:
        """Ring the first free signed-in agent with every skill of the call's queue."""
        if call.state != "queued":
            return
        wanted = set(call.queue.skills)
        for upn in call.customer.agents:
            agent = self.agents.get(upn)
            if agent is None or not agent.signed_in or agent.call is not None:
                continue
            if upn in call.tried_agents or not wanted <= set(call.customer.skills_of(upn)):
                continue
            if agent.user.number is None:
                continue
            agent.call = call
            call.agent = upn
            call.state = "offered"
            call.tried_agents.append(upn)
            call.agent_leg = self._dial(call, "agent", agent.user)
            self._event("agent_offered", upn, call)
            return
        if call.timer is None:
            call.tried_agents.clear()
            call.timer = self._later(self.settings.queue_retry_seconds, lambda: self._retry(call))

    def _retry(self, call: CustomerCall) -> None:
        call.timer = None
        self._offer(call)

    def _release_agent(self, call: CustomerCall) -> None:
        agent = self.agents.get(call.agent or "")
        if agent is not None and agent.call is call:
            agent.call = None
            self._later(0.0, self._offer_queued)

    def _dial(self, call: CustomerCall, role: LegRole, user: TeamsUser) -> _Leg:
        """Call a Teams user through the SBC on the customer tenant's derived trunk."""
        assert user.number is not None
        tenant = self.topology.tenant(call.customer.tenant)
        host = tenant.trunk_fqdn
        if self._faulty("wrong-tenant-contact"):
            others = [t for t in self.topology.tenants if t.id != tenant.id]
            host = others[0].trunk_fqdn if others else self.topology.carrier.trunk_fqdn
        # Part 4.3 [DOC]: the SBC names the tenant's derived trunk toward Microsoft; the
        # platform tells it which tenant with the Request-URI host.
        sbc_host, sbc_port = self.sbc_address
        ref = self.ua.invite(
            f"sip:{user.number}@{host};user=phone",
            from_=f"<sip:{call.caller}@{self.config.address};user=phone>",
            to=f"<sip:{user.number}@{host};user=phone>",
            remote=(sbc_host, sbc_port),
            transport=self.transport,
            sdp=self._sdp(),
            now=self.now(),
        )
        leg = _Leg(role, ref, user.number, user.upn, call)
        self._legs[ref.id] = leg
        leg.timer = self._later(self.settings.alert_seconds, lambda: self._unanswered(leg))
        return leg

    def _unanswered(self, leg: _Leg) -> None:
        leg.timer = None
        if leg.connected or self._legs.get(leg.ref.id) is not leg:
            return
        self._event("no_answer", leg.upn or leg.number, leg.call)
        self._drop(leg)
        self._failed(leg, 408)

    def _drop(self, leg: _Leg) -> None:
        """End one leg from the platform's side (BYE, CANCEL or a final response)."""
        self._legs.pop(leg.ref.id, None)
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        leg.connected = False
        now = self.now()
        state = self.ua.call_state(leg.ref)
        try:
            if state == CallState.CONFIRMED:
                self.ua.bye(leg.ref, now)
            elif state in (CallState.CALLING, CallState.PROCEEDING):
                self.ua.cancel(leg.ref, now)
            elif state in (CallState.INCOMING, CallState.EARLY):
                self.ua.respond(leg.ref, 480, now=now)
        except LocalProtocolError as exc:
            self.log.info("drop_refused", role=leg.role, error=exc.msg)

    def _answered(self, leg: _Leg) -> None:
        call = leg.call
        leg.connected = True
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        if leg.role == "agent":
            call.state = "with-agent"
            self._event("agent_connected", leg.upn or "", call)
            return
        esc = call.escalation
        if esc is None:
            return
        self._event("sme_connected", leg.upn or "", call)
        if esc.mode == "blind":
            if call.agent_leg is not None:  # only with the blind-keeps-agent fault
                self._drop_agent(call)
            self._with_sme(call, esc)
        elif esc.mode == "consult":
            # RFC 5589 §7: agent and SME talk while the caller waits on hold
            esc.state = "consulting"
            if self._faulty("consult-skips-consultation"):
                self._complete(call, esc)
        else:
            # a group call: caller, agent and SME all hear each other
            esc.state = "conference"
            call.held = False
            self._event("group_call", ",".join(call.parties), call)
            if call.agent_leg is None:
                self._with_sme(call, esc)

    def _with_sme(self, call: CustomerCall, esc: Escalation) -> None:
        esc.state = "completed"
        call.state = "with-sme"
        call.held = False
        self._event("escalation_completed", esc.sme or "", call)

    def _failed(self, leg: _Leg, status: int) -> None:
        call = leg.call
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        if call.state == "ended":
            return
        if leg.role == "agent":
            call.agent_leg = None
            self._event("agent_failed", f"{leg.upn} {status}", call)
            self._release_agent(call)
            call.agent = None
            call.state = "queued"
            self._offer(call)
        elif leg.role == "sme":
            call.sme_leg = None
            esc = call.escalation
            self._event("sme_failed", f"{leg.upn} {status}", call)
            if esc is not None and esc.state == "ringing":
                esc.state = "reading"
                self._select_sme(call, esc)

    def _gone(self, leg: _Leg) -> None:
        """A leg ended from the far side (BYE or CANCEL)."""
        call = leg.call
        leg.connected = False
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        if call.state == "ended":
            return
        esc = call.escalation
        if leg.role == "customer":
            self._event("caller_left", call.caller, call)
            self._end(call)
        elif leg.role == "agent":
            call.agent_leg = None
            self._release_agent(call)
            self._event("agent_left", leg.upn or "", call)
            if esc is not None and esc.state == "conference":
                if self._faulty("conference-ends-with-agent"):
                    self._end(call)
                    return
                # the agent drops out of the group call: caller and SME go on
                self._with_sme(call, esc)
            elif esc is not None and esc.state == "consulting":
                self._complete(call, esc)  # hanging up completes the transfer
            elif esc is not None and esc.state in ("reading", "throttled", "ringing", "waiting"):
                pass  # the escalation goes on without the agent
            elif call.state != "with-sme" and call.state != "voicemail":
                self._end(call)
        else:
            call.sme_leg = None
            self._event("sme_left", leg.upn or "", call)
            if esc is not None and esc.state == "consulting":
                esc.state = "dropped"
                call.held = False  # back to the agent
            elif esc is not None and esc.state == "conference" and call.agent_leg is not None:
                esc.state = "dropped"
            else:
                self._end(call)

    def _end(self, call: CustomerCall) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if call.escalation is not None:
            call.escalation.cancel_timer()
        for leg in (call.customer_leg, call.agent_leg, call.sme_leg):
            if leg is not None and self._legs.get(leg.ref.id) is leg:
                self._drop(leg)
        self._release_agent(call)
        self._event("call_ended", call.caller, call)

    def _drop_agent(self, call: CustomerCall) -> None:
        leg = call.agent_leg
        if leg is not None:
            call.agent_leg = None
            self._drop(leg)
            self._event("agent_released", leg.upn or "", call)
        self._release_agent(call)

    # -- escalation --------------------------------------------------------------------------
    def customer_call(self, who: str) -> CustomerCall:
        """The live call an agent (UPN or number) or a caller (number) is in."""
        user = self.topology.user_by_upn(who) or self.topology.user_by_number(who)
        for call in reversed(self.calls):
            if call.state == "ended":
                continue
            sme = call.escalation.sme if call.escalation is not None else None
            if user is not None and user.upn in (call.agent, sme):
                return call
            if call.caller == who:
                return call
        raise LookupError(f"{who} is in no contact-center call")

    def escalate(
        self,
        agent: str,
        mode: EscalationMode | None = None,
        fallback: SmeFallback | None = None,
    ) -> Escalation:
        """The agent asks for an SME: read the SMEs' presence and connect the first free one."""
        call = self.customer_call(agent)
        if call.state != "with-agent" or call.agent_leg is None:
            raise RuntimeError(f"{agent} is not talking to a caller")
        if call.escalation is not None and call.escalation.state not in ("completed", "dropped"):
            raise RuntimeError(f"the call of {call.caller} is already being escalated")
        esc = Escalation(
            mode or call.customer.escalation_mode,
            fallback or call.customer.sme_fallback,
            self.now(),
            call.agent or "",
        )
        call.escalation = esc
        self._event("escalation_requested", f"{esc.mode} fallback={esc.fallback}", call)
        if esc.mode == "blind" and not self._faulty("blind-keeps-agent"):
            # RFC 5589 §6: the transferor is released at once
            self._drop_agent(call)
        elif esc.mode == "consult":
            call.held = True  # RFC 5589 §7: the caller waits on the platform's hold
        self._select_sme(call, esc)
        self.node.poke()
        return esc

    def _sme_pool(self, call: CustomerCall) -> list[TeamsUser]:
        if self._faulty("other-tenant-smes"):
            return [u for c in self.customers.values() for u in c.smes]
        # Part 4 [DOC]: each customer tenant escalates to its own SMEs only
        return list(self.customers[call.customer.tenant].smes)

    def _routable(self, availability: str) -> bool:
        free = set(ROUTABLE_AVAILABILITY)
        if self._faulty("escalates-to-dnd"):
            free.add("DoNotDisturb")
        if self._faulty("escalates-to-busy"):
            free.add("Busy")
        if self._faulty("skips-available-idle"):
            free.discard("AvailableIdle")
        return availability in free

    def _select_sme(self, call: CustomerCall, esc: Escalation) -> None:
        """Read the SMEs' presence and ring the first free one; else the fallback."""
        esc.timer = None
        if call.state == "ended" or esc.state not in ("reading", "throttled"):
            return
        pool = [u for u in self._sme_pool(call) if u.upn not in esc.tried]
        if self._faulty("ignores-presence"):
            pool = pool[:1]  # the first SME of the list, whatever their presence
            if pool:
                self._ring_sme(call, esc, pool[0])
                return
        if not pool:
            self._fallback(call, esc)
            return
        agent = self.agents.get(esc.requested_by) or next(
            (a for a in self.agents.values() if a.customer is call.customer), None
        )
        token = self._reading_token(agent) if agent is not None else None
        esc.reads += 1
        # Part 11.2 [DOC]: getPresencesByUserId, at most 650 ids per request
        exchange = self.graph.request(
            "POST",
            "/v1.0/communications/getPresencesByUserId",
            client="ccaas",
            bearer=token,
            json_body={"ids": [u.graph_id for u in pool]},
        )
        if exchange.status == 429:
            self._throttled(call, esc, exchange)
            return
        body = exchange.json()
        values = body.get("value") if isinstance(body, dict) else None
        if exchange.status != 200 or not isinstance(values, list):
            self._event("presence_read_failed", str(exchange.status), call)
            self._fallback(call, esc)
            return
        seen = {v.get("id"): v.get("availability") for v in values if isinstance(v, dict)}
        for user in pool:  # the customer's order: the first free SME wins
            availability = seen.get(user.graph_id)
            if isinstance(availability, str) and self._routable(availability):
                self._ring_sme(call, esc, user)
                return
        self._fallback(call, esc)

    def _throttled(self, call: CustomerCall, esc: Escalation, exchange: GraphExchange) -> None:
        esc.throttled += 1
        if esc.throttled > self.settings.max_throttle_retries:
            self._event("presence_throttled_out", str(esc.throttled), call)
            self._fallback(call, esc)
            return
        header = exchange.header("Retry-After") or ""
        wait = float(header) if header.strip().isdigit() else 1.0
        if self._faulty("ignores-retry-after"):
            wait = 1.0
        # Part 11.2 [DOC]: 429 means over the rate; Retry-After says when to come back
        esc.state = "throttled"
        self._event("presence_throttled", f"retry in {wait:g}s", call)
        esc.timer = self._later(wait, lambda: self._select_sme(call, esc))

    def _ring_sme(self, call: CustomerCall, esc: Escalation, sme: TeamsUser) -> None:
        esc.state = "ringing"
        esc.sme = sme.upn
        esc.tried.append(sme.upn)
        self._event("sme_selected", sme.upn, call)
        call.sme_leg = self._dial(call, "sme", sme)

    def _fallback(self, call: CustomerCall, esc: Escalation) -> None:
        """No SME can take the call now."""
        esc.sme = None
        if self._faulty("no-fallback"):
            esc.state = "dropped"
            self._event("escalation_dropped", "", call)
            self._end(call)
            return
        if esc.fallback == "voicemail":
            self._voicemail(call, esc)
            return
        # 11.4 [INF]: wait for a presence change (the subscription's notifications)
        esc.state = "waiting"
        self._event("escalation_waiting", f"{call.customer.sme_wait_seconds}s", call)
        esc.timer = self._later(
            float(call.customer.sme_wait_seconds), lambda: self._wait_over(call, esc)
        )

    def _wait_over(self, call: CustomerCall, esc: Escalation) -> None:
        esc.timer = None
        if esc.state == "waiting" and call.state != "ended":
            self._voicemail(call, esc)

    def _voicemail(self, call: CustomerCall, esc: Escalation) -> None:
        esc.state = "voicemail"
        self._drop_agent(call)
        call.state = "voicemail"
        call.held = False
        self._event("voicemail", call.caller, call)
        call.timer = self._later(self.settings.voicemail_seconds, lambda: self._end(call))

    def complete_transfer(self, agent: str) -> None:
        """The agent completes a consult transfer: the caller goes to the SME, the agent leaves."""
        call = self.customer_call(agent)
        esc = call.escalation
        if esc is None or esc.state != "consulting":
            raise RuntimeError(f"{agent} has no consultation to complete")
        self._complete(call, esc)
        self.node.poke()

    def _complete(self, call: CustomerCall, esc: Escalation) -> None:
        """The consult transfer completes: the agent leaves, the caller is off hold with the SME."""
        self._drop_agent(call)
        self._with_sme(call, esc)

    # -- probes ------------------------------------------------------------------------------
    def latest_call_of(self, caller: str) -> CustomerCall | None:
        """The latest call from ``caller`` (a number), ended or not."""
        return next((c for c in reversed(self.calls) if c.caller == caller), None)

    def is_signed_in(self, who: str) -> bool:
        """Whether the agent (UPN or number) is signed in to the platform."""
        return self._agent(who).signed_in


# ==============================================================================================
# judging recorded exchanges (the scenario probes ``api`` and ``api_retry_after``)
# ==============================================================================================
_SELECTORS = ("client", "name", "method", "path", "after", "since")
_PREDICATES = ("status", "token_tenant", "token_user", "body", "response", "headers")


def json_path(value: Any, dotted: str) -> Any:
    """``value`` followed along ``a.b.0.c`` (list indexes as numbers); None when missing."""
    current = value
    for part in dotted.split(".") if dotted else ():
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
    return current


def json_subset(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` holds ``expected``: objects by their given keys (recursively), lists
    item by item with the same length, anything else by equality."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and json_subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(json_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _selected(
    exchanges: Iterable[GraphExchange], spec: Mapping[str, Any], start: int, since: float
) -> list[GraphExchange]:
    out: list[GraphExchange] = []
    for ex in exchanges:
        if ex.index < start or ex.time < since:
            continue
        if "client" in spec and ex.client != spec["client"]:
            continue
        if "name" in spec and ex.name != spec["name"]:
            continue
        if "method" in spec and ex.method != str(spec["method"]).upper():
            continue
        if "path" in spec and re.search(str(spec["path"]), ex.path) is None:
            continue
        out.append(ex)
    return out


def _failures(ex: GraphExchange, spec: Mapping[str, Any]) -> list[str]:
    fails: list[str] = []
    if "status" in spec:
        wanted = spec["status"] if isinstance(spec["status"], list) else [spec["status"]]
        if ex.status not in [int(s) for s in wanted]:
            fails.append(f"status {ex.status}, expected {spec['status']}")
    if "token_tenant" in spec and ex.token_tenant != spec["token_tenant"]:
        fails.append(f"token of tenant {ex.token_tenant}, expected {spec['token_tenant']}")
    if "token_user" in spec and (ex.token_user or "").lower() != str(spec["token_user"]).lower():
        fails.append(f"token of {ex.token_user}, expected {spec['token_user']}")
    if "body" in spec and not json_subset(spec["body"], ex.request_data()):
        fails.append(f"request body {ex.request_body.decode('utf-8', 'replace')[:300]}")
    if "response" in spec and not json_subset(spec["response"], ex.json()):
        fails.append(f"response {ex.response_body.decode('utf-8', 'replace')[:300]}")
    for header, pattern in dict(spec.get("headers") or {}).items():
        value = ex.header(str(header))
        if value is None or re.search(str(pattern), value) is None:
            fails.append(f"response header {header}: {value!r}, expected /{pattern}/")
    return fails


def judge_exchanges(
    exchanges: list[GraphExchange], spec: Mapping[str, Any]
) -> tuple[bool, str, str]:
    """Judge the recorded exchanges against ``spec`` (placeholders already resolved).

    ``client``/``name``/``method``/``path`` (a regex)/``after`` (an exchange name: only later
    ones)/``since`` (a virtual instant) select exchanges; ``status``, ``token_tenant``,
    ``token_user``, ``body``/``response`` (JSON subsets), ``headers`` (regexes on response
    headers) judge them.  By default at least one selected exchange must pass; ``count: N``
    asks for exactly N passing ones; ``every: true`` for every selected one to pass (and at
    least one to exist).
    """
    unknown = sorted(set(spec) - {*_SELECTORS, *_PREDICATES, "count", "every"})
    if unknown:
        raise ValueError(f"api: unknown field(s) {', '.join(unknown)}")
    start = 0
    if "after" in spec:
        named = [ex for ex in exchanges if ex.name == spec["after"]]
        if not named:
            return False, f"an exchange named {spec['after']}", "no such exchange was made"
        start = named[-1].index + 1
    since = float(spec.get("since", float("-inf")))
    selected = _selected(exchanges, spec, start, since)
    judged = [(ex, _failures(ex, spec)) for ex in selected]
    passing = [ex for ex, fails in judged if not fails]
    described = ", ".join(
        f"{k}={spec[k]!r}" for k in (*_SELECTORS, *_PREDICATES) if k in spec and k != "since"
    )
    if "count" in spec:
        wanted = int(spec["count"])
        ok = len(passing) == wanted
        expected = f"exactly {wanted} exchange(s) with {described}"
    elif spec.get("every"):
        ok = bool(selected) and len(passing) == len(selected)
        expected = f"every exchange with {described} (at least one)"
    else:
        ok = bool(passing)
        expected = f"an exchange with {described}"
    if not selected:
        return ok, expected, "no exchange matched the request line"
    shown = "; ".join(
        ex.summary + (f" — {'; '.join(fails)}" if fails else " — passes")
        for ex, fails in judged[:4]
    )
    more = f" (+{len(judged) - 4} more)" if len(judged) > 4 else ""
    return ok, expected, f"{len(passing)} of {len(selected)} pass: {shown}{more}"


def judge_retry_after(
    exchanges: list[GraphExchange], spec: Mapping[str, Any]
) -> tuple[bool, str, str]:
    """Every 429 among the selected exchanges is followed by a retry of the same request line,
    no sooner than its ``Retry-After`` seconds (Part 11.2 [DOC]).  At least one 429 and its
    retry must be seen, else the check has nothing to judge and fails."""
    selected = _selected(exchanges, spec, 0, float(spec.get("since", float("-inf"))))
    expected = "each 429 retried no sooner than its Retry-After"
    seen: list[str] = []
    ok = True
    throttled = 0
    for i, ex in enumerate(selected):
        if ex.status != 429:
            continue
        throttled += 1
        header = ex.header("Retry-After") or ""
        wait = float(header) if header.strip().isdigit() else 0.0
        retry = next(
            (r for r in selected[i + 1 :] if (r.method, r.path) == (ex.method, ex.path)), None
        )
        if retry is None:
            ok = False
            seen.append(f"429 at t={ex.time:g}s (Retry-After {header}) never retried")
            continue
        gap = retry.time - ex.time
        if gap + 1e-6 < wait:
            ok = False
        seen.append(
            f"429 at t={ex.time:g}s (Retry-After {header}), retried {gap:g}s later -> {retry.status}"
        )
    if throttled == 0:
        return False, expected, "no request was answered 429"
    return ok, expected, "; ".join(seen[:4])


# ==============================================================================================
# live mode
# ==============================================================================================
async def start_presence_api(
    topology: Topology,
    presence: PresenceService,
    *,
    clock: Clock,
    host: str | None = None,
    port: int | None = None,
    seed: int | None = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve the lab's presence API and token endpoint on a real socket (``sbcsim serve``).

    The identity platform is :func:`lab_token_authority` of ``topology``; presence timeouts run
    on ``clock`` by themselves and change notifications go out with aiohttp's client, so a
    partner's own contact center can sign its agents in, read presence and subscribe exactly as
    with Graph.  ``host``/``port`` default to the topology's ``contact_center.graph_address``
    and ``graph_port``.  Returns the runner (``await runner.cleanup()`` to stop) and the base
    URL, without the ``/v1.0`` suffix.
    """
    cc = topology.contact_center
    host = host or (cc.graph_address if cc is not None else "127.0.0.1")
    port = port if port is not None else (cc.graph_port if cc is not None else 0)
    options = {"drive_timers": True, **dict(settings or {})}
    authority = lab_token_authority(topology, random.Random(seed) if seed is not None else None)
    app = create_app(presence, authority, clock=clock, settings=ApiSettings(**options))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    return runner, f"http://{shown}:{bound_port}"
