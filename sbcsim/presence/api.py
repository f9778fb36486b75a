"""A Microsoft-Graph-shaped presence API over HTTP, with its OAuth2 token endpoint.

The contact-center platform under test talks to this exactly as it talks to Graph
(direct-routing-sip.md Part 11): it gets a token from ``/{tenant}/oauth2/v2.0/token``, reads
presence with ``GET /v1.0/users/{id}/presence``, ``GET /v1.0/communications/presences/{id}`` or
``POST /v1.0/communications/getPresencesByUserId`` (at most 650 ids; 1500 requests per 30 s per
application per tenant, else 429 with ``Retry-After``), scripts states with ``setPresence`` /
``clearPresence`` (and the user-preferred and status-message methods), and subscribes to
changes with ``POST /v1.0/subscriptions`` (at most 60 minutes; the notification URL must echo a
``validationToken`` within 10 s).  Change notifications are POSTed to the subscriber whenever
:class:`~sbcsim.presence.model.PresenceService` reports a change, for example when a call starts.

Everything that involves time reads the injected clock, so a virtual clock makes expiry and
throttling exact in tests; every outgoing HTTP request goes through an injected
:class:`WebhookSender`, so tests can capture notifications without running a web server, and
live mode uses :class:`AiohttpWebhookSender`.  Request ids come from a seeded generator when
``ApiSettings.seed`` is set.  Behaviour the doc leaves open is an :class:`ApiSettings` field.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote, unquote_plus, urlsplit

import aiohttp
import structlog
from aiohttp import web

from sbcsim.clock import Clock
from sbcsim.ids import IdGenerator
from sbcsim.presence.model import (
    InvalidPresenceRequest,
    JsonObject,
    PresenceService,
    PresenceState,
    PresenceUser,
    format_graph_datetime,
    parse_graph_datetime,
    parse_iso_duration,
)
from sbcsim.presence.oauth import AccessClaims, OAuthError, TokenAuthority, TokenError

__all__ = [
    "PRESENCE_API_KEY",
    "AiohttpWebhookSender",
    "ApiSettings",
    "Delivery",
    "GraphHttpError",
    "GraphPresenceApi",
    "RateLimiter",
    "Subscription",
    "WebhookResponse",
    "WebhookSender",
    "create_app",
    "parse_presence_resource",
]

log = structlog.get_logger("sbcsim.presence")

Operation = Literal["read", "write", "subscribe"]

# Permission sets per operation.  Application roles (11.2/11.3): Presence.Read.All to read,
# Presence.ReadWrite.All to write; the stored read page lists no application permission but
# later Graph versions added it, so both kinds are accepted [INF].  Delegated scopes without
# ".All" reach only the signed-in user's own presence [INF].
_APP_ROLES: dict[Operation, frozenset[str]] = {
    "read": frozenset({"Presence.Read.All", "Presence.ReadWrite.All"}),
    "write": frozenset({"Presence.ReadWrite.All"}),
    "subscribe": frozenset({"Presence.Read.All", "Presence.ReadWrite.All"}),
}
_DELEGATED_ANY_USER: dict[Operation, frozenset[str]] = {
    "read": frozenset({"Presence.Read.All", "Presence.ReadWrite.All"}),
    "write": frozenset({"Presence.ReadWrite.All"}),
    "subscribe": frozenset({"Presence.Read.All", "Presence.ReadWrite.All"}),
}
_DELEGATED_SELF: dict[Operation, frozenset[str]] = {
    "read": frozenset({"Presence.Read", "Presence.ReadWrite"}),
    "write": frozenset({"Presence.ReadWrite"}),
    "subscribe": frozenset(),
}

_VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK "
    "to validation request."
)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The API's limits and the choices the doc leaves open, with the doc's values as defaults."""

    #: "1500 API requests in a 30 second period, per application per tenant" (11.2) [DOC].
    rate_limit_requests: int = 1500
    rate_limit_window: float = 30.0
    #: "Maximum of 650 user IDs are supported per API request" (11.2, 11.4) [DOC].
    max_ids: int = 650
    #: "Subscriptions have a maximum expiration time of an hour" (11.4) [DOC].
    subscription_max_lifetime: float = 3600.0
    #: The validation token must come back as text/plain within 10 s (11.4) [INF].
    validation_timeout: float = 10.0
    require_text_plain_validation: bool = True
    #: How long a notification POST may take before it counts as failed [GAP].
    notification_timeout: float = 10.0
    #: Graph itself only accepts https webhooks; a lab usually runs plain http [GAP].
    require_https_notification_url: bool = False
    #: The stored example answers ``GET /communications/presences/{id}`` with a collection.
    presences_by_id_as_collection: bool = True
    #: What getPresencesByUserId does with an id that names no user [GAP]: list it as
    #: PresenceUnknown, leave it out, or fail the request with 404.
    unknown_ids_in_bulk: Literal["unknown", "omit", "error"] = "unknown"
    #: "A single user can create one presence subscription per unique application" (11.4).
    one_subscription_per_user_app: bool = True
    #: Accept application tokens for reads and subscriptions (the stored pages say delegated
    #: only; later Graph versions accept both) [INF].
    allow_app_tokens: bool = True
    #: setPresence's ``sessionId`` is the caller's application id (11.3 example) [INF].
    session_id_must_match_app: bool = True
    max_client_state_length: int = 128
    #: Seed for request ids, subscription ids and validation tokens; None = unpredictable.
    seed: int | None = None
    #: Apply presence timeouts on the clock by themselves (live mode); in simulation the
    #: driver calls ``PresenceService.advance`` instead.
    drive_timers: bool = False
    timer_poll_interval: float = 1.0
    base_url: str = "https://graph.microsoft.com/v1.0"

    def __post_init__(self) -> None:
        if self.rate_limit_requests < 1 or not self.rate_limit_window > 0:
            raise ValueError("the rate limit needs at least one request in a positive window")
        if self.max_ids < 1 or not self.subscription_max_lifetime > 0:
            raise ValueError("max_ids and subscription_max_lifetime must be positive")
        if not (
            self.validation_timeout > 0
            and self.notification_timeout > 0
            and self.timer_poll_interval > 0
        ):
            raise ValueError("timeouts must be positive")


class GraphHttpError(Exception):
    """An error answered in Graph's JSON shape (``{"error": {"code", "message", ...}}``)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _bad_request(message: str) -> GraphHttpError:
    return GraphHttpError(400, "BadRequest", message)


# -- rate limiting ---------------------------------------------------------------------------


class RateLimiter:
    """A sliding-window request counter per key, on an injected timeline.

    A request at ``t`` occupies the window until ``t + window``; a refused request is not
    counted, so a well-behaved client that waits ``Retry-After`` seconds gets through.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._log: dict[object, deque[float]] = {}

    def check(self, key: object, now: float) -> int | None:
        """Count a request; ``None`` if allowed, else the whole seconds to wait (>= 1)."""
        times = self._log.setdefault(key, deque())
        while times and times[0] + self.window <= now:
            times.popleft()
        if len(times) >= self.limit:
            return max(1, math.ceil(times[0] + self.window - now))
        times.append(now)
        return None


# -- webhooks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What a notification endpoint answered."""

    status: int
    body: bytes
    content_type: str


class WebhookSender(Protocol):
    """POSTs ``body`` to ``url`` and returns the answer; may raise on failure or timeout."""

    def __call__(
        self, url: str, body: bytes, content_type: str, timeout: float
    ) -> Awaitable[WebhookResponse]: ...


class AiohttpWebhookSender:
    """The live :class:`WebhookSender`: aiohttp's client, one session, closed by :meth:`aclose`."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owned = session is None

    async def __call__(
        self, url: str, body: bytes, content_type: str, timeout: float
    ) -> WebhookResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            url,
            data=body,
            headers={"Content-Type": content_type},
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            return WebhookResponse(response.status, payload, response.content_type)

    async def aclose(self) -> None:
        """Close the session if this sender created it."""
        if self._session is not None and self._owned:
            await self._session.close()
        self._session = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One change notification sent (or attempted), kept for tests and reports."""

    subscription_id: str
    url: str
    user_id: str
    at: float
    status: int | None
    error: str | None


# -- subscriptions ---------------------------------------------------------------------------

_FILTER_RE = re.compile(
    r"communications/presences\?\$filter=id\s+in\s*\((?P<ids>.*)\)", re.IGNORECASE | re.DOTALL
)
_SINGLE_RE = re.compile(r"communications/presences/(?P<id>[^/?()'\s]+)", re.IGNORECASE)


def parse_presence_resource(resource: str) -> tuple[str, ...]:
    """The user ids in a presence subscription resource (11.4), in order, without repeats.

    Accepts ``communications/presences/{id}`` and
    ``/communications/presences?$filter=id in ('{id}', ...)``, with or without the leading
    slash and percent-encoded (``id+in+(%27...%27)``) as the 2024 Graph example shows.
    """
    text = unquote_plus(resource.strip()).strip().lstrip("/")
    single = _SINGLE_RE.fullmatch(text)
    if single is not None:
        return (single["id"],)
    bulk = _FILTER_RE.fullmatch(text)
    if bulk is None:
        raise _bad_request(
            f"Resource '{resource}' is not supported: use communications/presences/{{id}} or "
            "/communications/presences?$filter=id in ('{id}',...)."
        )
    ids: list[str] = []
    for item in bulk["ids"].split(","):
        quoted = item.strip()
        if len(quoted) < 3 or quoted[0] != "'" or quoted[-1] != "'" or "'" in quoted[1:-1]:
            raise _bad_request(f"Invalid filter clause in resource '{resource}'.")
        ids.append(quoted[1:-1])
    return tuple(dict.fromkeys(ids))


@dataclass(slots=True)
class Subscription:
    """A presence subscription as Graph describes it; ``expires_at`` is lab time."""

    id: str
    resource: str
    user_ids: tuple[str, ...]
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expires_at: float
    tenant_id: str
    app_id: str
    creator_id: str
    delegated: bool
    include_resource_data: bool = False
    encryption_certificate_id: str | None = None
    latest_supported_tls_version: str = "v1_2"

    def as_json(self, epoch: float) -> JsonObject:
        """The ``subscription`` resource body."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": format_graph_datetime(epoch + self.expires_at),
            "creatorId": self.creator_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": self.latest_supported_tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": self.encryption_certificate_id,
            "notificationUrlAppId": None,
        }


@dataclass(slots=True)
class _Outgoing:
    subscription_id: str
    url: str
    user_id: str
    body: bytes
    at: float


# -- the API ---------------------------------------------------------------------------------


class GraphPresenceApi:
    """The state behind the HTTP routes: subscriptions, throttling windows, the outbox."""

    def __init__(
        self,
        service: PresenceService,
        auth: TokenAuthority,
        *,
        clock: Clock,
        settings: ApiSettings | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        self.service = service
        self.auth = auth
        self.clock = clock
        self.settings = settings or ApiSettings()
        self._own_sender = sender is None
        self.sender: WebhookSender = sender if sender is not None else AiohttpWebhookSender()
        rng = (
            random.Random(self.settings.seed)
            if self.settings.seed is not None
            else random.SystemRandom()
        )
        self._ids = IdGenerator(rng)
        self._limiter = RateLimiter(
            self.settings.rate_limit_requests, self.settings.rate_limit_window
        )
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self._outbox: deque[_Outgoing] = deque()
        self._wake: asyncio.Event | None = None
        self._remove_listener = service.add_listener(self._on_presence_change)

    # -- ids and time ------------------------------------------------------------------------

    def new_guid(self) -> str:
        """A GUID-shaped id from the (seeded) generator."""
        h = self._ids.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"

    @property
    def epoch(self) -> float:
        """Unix time of lab time 0 (shared with the presence model's date-times)."""
        return self.service.settings.epoch

    def tick(self) -> float:
        """Read the clock, apply presence timeouts and drop expired subscriptions; returns now."""
        now = self.clock.now()
        self.service.advance(now)
        for sub_id in [s.id for s in self.subscriptions.values() if s.expires_at <= now]:
            del self.subscriptions[sub_id]
        return now

    # -- auth --------------------------------------------------------------------------------

    def authenticate(self, request: web.Request, now: float) -> AccessClaims:
        """The verified claims of the request's bearer token, or a 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            return self.auth.verify(token.strip() if scheme.lower() == "bearer" else None, now)
        except TokenError as exc:
            raise GraphHttpError(
                401,
                "InvalidAuthenticationToken",
                str(exc),
                headers={
                    "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.'
                    'microsoftonline.com/common/oauth2/authorize", '
                    'client_id="00000003-0000-0000-c000-000000000000"'
                },
            ) from exc

    def require(self, claims: AccessClaims, operation: Operation) -> None:
        """403 unless the token carries some permission for ``operation``."""
        if claims.delegated:
            allowed = _DELEGATED_ANY_USER[operation] | _DELEGATED_SELF[operation]
            if claims.scopes & allowed:
                return
        elif self.settings.allow_app_tokens or operation == "write":
            if claims.roles & _APP_ROLES[operation]:
                return
        raise GraphHttpError(
            403,
            "Forbidden",
            f"Missing role permissions on the request. API requires one of "
            f"'{', '.join(sorted((_DELEGATED_ANY_USER if claims.delegated else _APP_ROLES)[operation]))}'.",
        )

    def require_users(
        self, claims: AccessClaims, operation: Operation, users: Iterable[PresenceUser]
    ) -> None:
        """403 for a user outside the token's tenant, or another user with a self-only scope."""
        for user in users:
            if user.tenant_id != claims.tenant_id:
                raise GraphHttpError(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation: the user is not in the "
                    "token's tenant.",
                )
            if (
                claims.delegated
                and user.id != claims.object_id
                and not claims.scopes & _DELEGATED_ANY_USER[operation]
            ):
                raise GraphHttpError(
                    403,
                    "Forbidden",
                    "The delegated permission only covers the signed-in user's own presence.",
                )

    def throttle(self, claims: AccessClaims, bucket: str, now: float) -> None:
        """429 with ``Retry-After`` beyond the documented rate, per application per tenant."""
        wait = self._limiter.check((claims.tenant_id, claims.app_id, bucket), now)
        if wait is not None:
            raise GraphHttpError(
                429,
                "TooManyRequests",
                "Too many requests: the limit is "
                f"{self.settings.rate_limit_requests} per {self.settings.rate_limit_window:g} "
                "seconds per application per tenant.",
                headers={"Retry-After": str(wait)},
            )

    def find_user(self, user_id: str) -> PresenceUser:
        """The user, or a 404."""
        user = self.service.find_user(user_id)
        if user is None:
            raise GraphHttpError(404, "NotFound", f"Resource '{user_id}' does not exist.")
        return user

    # -- change notifications ----------------------------------------------------------------

    def _on_presence_change(
        self, user: PresenceUser, old: PresenceState, new: PresenceState
    ) -> None:
        now = self.clock.now()
        for sub in list(self.subscriptions.values()):
            if sub.expires_at <= now or user.id not in sub.user_ids:
                continue
            if sub.tenant_id != user.tenant_id:
                continue
            item: JsonObject = {
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "changeType": "updated",
                "tenantId": sub.tenant_id,
                "resource": f"communications/presences/{user.id}",
                "subscriptionExpirationDateTime": format_graph_datetime(
                    self.epoch + sub.expires_at
                ),
                "resourceData": {
                    "@odata.id": f"users/{user.id}/presence",
                    "@odata.type": "#microsoft.graph.presence",
                    "id": user.id,
                },
                "organizationId": sub.tenant_id,
            }
            body = json.dumps({"value": [item]}).encode("utf-8")
            self._outbox.append(_Outgoing(sub.id, sub.notification_url, user.id, body, now))
        if self._outbox and self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Notifications queued but not yet sent."""
        return len(self._outbox)

    async def deliver_pending(self) -> list[Delivery]:
        """Send every queued notification now, in order; returns what happened to each."""
        done: list[Delivery] = []
        while self._outbox:
            item = self._outbox.popleft()
            status: int | None = None
            error: str | None = None
            try:
                response = await asyncio.wait_for(
                    self.sender(
                        item.url, item.body, "application/json", self.settings.notification_timeout
                    ),
                    self.settings.notification_timeout,
                )
                status = response.status
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivery = Delivery(
                item.subscription_id, item.url, item.user_id, item.at, status, error
            )
            if error is None:
                log.debug(
                    "notification_delivered", subscription=item.subscription_id, user=item.user_id
                )
            else:
                log.warning("notification_failed", subscription=item.subscription_id, error=error)
            done.append(delivery)
            self.deliveries.append(delivery)
        return done

    async def _delivery_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            try:
                await self.deliver_pending()
            except Exception:  # a broken sender must not stop later notifications
                log.exception("notification_loop_error")

    async def _timer_loop(self) -> None:
        # Live mode only: wake at the next presence deadline (at most one poll interval away, so
        # new sessions are noticed) and let the model apply it.
        while True:
            deadline = self.service.next_deadline()
            poll = self.settings.timer_poll_interval
            delay = poll if deadline is None else min(poll, deadline - self.clock.now())
            await asyncio.sleep(max(0.0, delay))
            self.tick()

    async def validate_endpoint(self, url: str) -> None:
        """Graph's webhook handshake: the endpoint must echo ``validationToken`` (text/plain)."""
        token = (
            "Validation: Testing client application reachability for subscription Request-Id: "
            + self.new_guid()
        )
        separator = "&" if urlsplit(url).query else "?"
        target = f"{url}{separator}validationToken={quote(token, safe='')}"
        timeout = self.settings.validation_timeout
        started = self.clock.now()
        try:
            response = await asyncio.wait_for(
                self.sender(target, b"", "text/plain; charset=utf-8", timeout), timeout
            )
        except TimeoutError as exc:
            raise GraphHttpError(
                400, "ValidationError", "Subscription validation request timed out."
            ) from exc
        except (OSError, aiohttp.ClientError) as exc:
            log.info("subscription_validation_failed", url=url, error=str(exc))
            raise GraphHttpError(400, "ValidationError", _VALIDATION_FAILED) from exc
        if self.clock.now() - started > timeout:
            raise GraphHttpError(
                400, "ValidationError", "Subscription validation request timed out."
            )
        echoed = response.body.decode("utf-8", "replace")
        text_plain = response.content_type.split(";")[0].strip().lower() == "text/plain"
        if (
            response.status != 200
            or echoed != token
            or (self.settings.require_text_plain_validation and not text_plain)
        ):
            log.info("subscription_validation_failed", url=url, status=response.status)
            raise GraphHttpError(400, "ValidationError", _VALIDATION_FAILED)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _background(self, app: web.Application) -> AsyncIterator[None]:
        self._wake = asyncio.Event()
        if self._outbox:
            self._wake.set()
        tasks = [asyncio.create_task(self._delivery_loop())]
        if self.settings.drive_timers:
            tasks.append(asyncio.create_task(self._timer_loop()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._wake = None
            self._remove_listener()
            if self._own_sender and isinstance(self.sender, AiohttpWebhookSender):
                await self.sender.aclose()


PRESENCE_API_KEY: web.AppKey[GraphPresenceApi] = web.AppKey("presence_api", GraphPresenceApi)


# -- HTTP plumbing ---------------------------------------------------------------------------


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode("utf-8"),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


async def _read_json(request: web.Request, *, allow_empty: bool = False) -> JsonObject:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise _bad_request("Empty Payload. JSON content expected.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_request("Unable to read JSON request payload.") from exc
    if not isinstance(body, dict):
        raise _bad_request("The request payload must be a JSON object.")
    return body


def _string_field(body: JsonObject, name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad_request(f"Missing required property '{name}'.")
        return None
    if not isinstance(value, str):
        raise _bad_request(f"Property '{name}' must be a string.")
    return value


def _duration_field(body: JsonObject) -> float | None:
    text = _string_field(body, "expirationDuration", required=False)
    if text is None:
        return None
    try:
        return parse_iso_duration(text)
    except InvalidPresenceRequest as exc:
        raise _bad_request(str(exc)) from exc


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return unquote_plus(client_id), unquote_plus(secret)


def create_app(
    service: PresenceService,
    auth: TokenAuthority,
    *,
    clock: Clock,
    settings: ApiSettings | None = None,
    sender: WebhookSender | None = None,
) -> web.Application:
    """The aiohttp application: Graph presence routes plus ``/{tenant}/oauth2/v2.0/token``.

    ``app[PRESENCE_API_KEY]`` is the :class:`GraphPresenceApi` behind it (subscriptions,
    deliveries, :meth:`~GraphPresenceApi.deliver_pending`).
    """
    api = GraphPresenceApi(service, auth, clock=clock, settings=settings, sender=sender)
    cfg = api.settings

    @web.middleware
    async def graph_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Every answer carries request-id/client-request-id; errors repeat them in innerError.
        request_id = api.new_guid()
        client_request_id = request.headers.get("client-request-id") or request_id
        try:
            response = await handler(request)
        except GraphHttpError as exc:
            response = error_response(exc, request_id, client_request_id)
        except web.HTTPException as exc:
            code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status, "BadRequest")
            error = GraphHttpError(exc.status, code, exc.reason)
            response = error_response(error, request_id, client_request_id)
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
        return response

    def error_response(
        exc: GraphHttpError, request_id: str, client_request_id: str
    ) -> web.Response:
        inner = {
            "date": format_graph_datetime(api.epoch + clock.now())[:19],
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
        body = {"error": {"code": exc.code, "message": exc.message, "innerError": inner}}
        return _json(body, exc.status, dict(exc.headers))

    def presence_body(user: PresenceUser, context: str) -> JsonObject:
        return {
            "@odata.context": f"{cfg.base_url}/$metadata#{context}",
            **service.snapshot(user.id),
        }

    async def read_one(
        request: web.Request, user_id: str | None
    ) -> tuple[PresenceUser, AccessClaims]:
        now = api.tick()
        claims = api.authenticate(request, now)
        if user_id is None:  # /me
            if not claims.delegated:
                raise _bad_request("/me request is only valid with delegated authentication flow.")
            user_id = claims.object_id
        api.require(claims, "read")
        api.throttle(claims, "presence-get", now)
        user = api.find_user(user_id)
        api.require_users(claims, "read", [user])
        return user, claims

    async def get_user_presence(request: web.Request) -> web.Response:
        user, _ = await read_one(request, request.match_info["user_id"])
        return _json(presence_body(user, f"users('{user.id}')/presence/$entity"))

    async def get_my_presence(request: web.Request) -> web.Response:
        user, _ = await read_one(request, None)
        return _json(presence_body(user, "users/presence/$entity"))

    async def get_communications_presence(request: web.Request) -> web.Response:
        user, _ = await read_one(request, request.match_info["user_id"])
        if cfg.presences_by_id_as_collection:
            return _json(
                {
                    "@odata.context": f"{cfg.base_url}/$metadata#communications/presences",
                    "value": [service.snapshot(user.id)],
                }
            )
        return _json(presence_body(user, "communications/presences/$entity"))

    async def get_presences_by_user_id(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        api.require(claims, "read")
        api.throttle(claims, "getPresencesByUserId", now)
        body = await _read_json(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise _bad_request("Property 'ids' must be an array of user id strings.")
        if not ids:
            raise _bad_request("Property 'ids' must contain at least one user id.")
        if len(ids) > cfg.max_ids:
            raise _bad_request(
                f"The number of user ids ({len(ids)}) exceeds the maximum of {cfg.max_ids} "
                "per request."
            )
        value: list[JsonObject] = []
        for user_id in dict.fromkeys(ids):
            user = service.find_user(user_id)
            if user is None:
                if cfg.unknown_ids_in_bulk == "error":
                    raise GraphHttpError(404, "NotFound", f"Resource '{user_id}' does not exist.")
                if cfg.unknown_ids_in_bulk == "unknown":
                    value.append(
                        {
                            "id": user_id,
                            "availability": "PresenceUnknown",
                            "activity": "PresenceUnknown",
                        }
                    )
                continue
            api.require_users(claims, "read", [user])
            value.append(service.snapshot(user.id))
        return _json(
            {
                "@odata.context": f"{cfg.base_url}/$metadata#Collection(microsoft.graph.presence)",
                "value": value,
            }
        )

    async def write_target(
        request: web.Request,
    ) -> tuple[PresenceUser, AccessClaims, float, JsonObject]:
        now = api.tick()
        claims = api.authenticate(request, now)
        api.require(claims, "write")
        user = api.find_user(request.match_info["user_id"])
        api.require_users(claims, "write", [user])
        body = await _read_json(request, allow_empty=True)
        return user, claims, now, body

    def session_of(body: JsonObject, claims: AccessClaims) -> str:
        session_id = _string_field(body, "sessionId")
        assert session_id is not None
        if cfg.session_id_must_match_app and session_id.casefold() != claims.app_id.casefold():
            raise _bad_request(
                f"sessionId '{session_id}' must be the id of the calling application."
            )
        return session_id

    async def set_presence(request: web.Request) -> web.Response:
        user, claims, now, body = await write_target(request)
        session_id = session_of(body, claims)
        availability = _string_field(body, "availability")
        activity = _string_field(body, "activity")
        assert availability is not None and activity is not None
        expiration = _duration_field(body)
        try:
            service.set_presence(
                user.id,
                now,
                session_id=session_id,
                availability=availability,
                activity=activity,
                expiration=expiration,
            )
        except InvalidPresenceRequest as exc:
            raise _bad_request(str(exc)) from exc
        return web.Response(status=200)

    async def clear_presence(request: web.Request) -> web.Response:
        user, claims, now, body = await write_target(request)
        service.clear_presence(user.id, now, session_of(body, claims))
        return web.Response(status=200)

    async def set_preferred(request: web.Request) -> web.Response:
        user, _, now, body = await write_target(request)
        availability = _string_field(body, "availability")
        activity = _string_field(body, "activity")
        assert availability is not None and activity is not None
        expiration = _duration_field(body)
        try:
            service.set_user_preferred_presence(user.id, now, availability, activity, expiration)
        except InvalidPresenceRequest as exc:
            raise _bad_request(str(exc)) from exc
        return web.Response(status=200)

    async def clear_preferred(request: web.Request) -> web.Response:
        user, _, now, _ = await write_target(request)
        service.clear_user_preferred_presence(user.id, now)
        return web.Response(status=200)

    async def set_status_message(request: web.Request) -> web.Response:
        user, _, now, body = await write_target(request)
        status = body.get("statusMessage")
        message = status.get("message") if isinstance(status, dict) else None
        if not isinstance(status, dict) or not isinstance(message, dict):
            raise _bad_request("Property 'statusMessage.message' is required.")
        content = _string_field(message, "content")
        content_type = _string_field(message, "contentType", required=False) or "text"
        assert content is not None
        expires_at: float | None = None
        expiry = status.get("expiryDateTime")
        if expiry is not None:
            if not isinstance(expiry, dict):
                raise _bad_request("Property 'expiryDateTime' must be a dateTimeTimeZone.")
            when = _string_field(expiry, "dateTime")
            zone = _string_field(expiry, "timeZone", required=False) or "UTC"
            assert when is not None
            if zone.upper() != "UTC":
                raise _bad_request("Only the UTC time zone is supported for expiryDateTime.")
            try:
                expires_at = parse_graph_datetime(when) - api.epoch
            except InvalidPresenceRequest as exc:
                raise _bad_request(str(exc)) from exc
        try:
            service.set_status_message(
                user.id, now, content, content_type=content_type, expires_at=expires_at
            )
        except InvalidPresenceRequest as exc:
            raise _bad_request(str(exc)) from exc
        return web.Response(status=200)

    def expiry_field(body: JsonObject, now: float) -> float:
        text = _string_field(body, "expirationDateTime")
        assert text is not None
        try:
            expires_at = parse_graph_datetime(text) - api.epoch
        except InvalidPresenceRequest as exc:
            raise _bad_request(str(exc)) from exc
        if expires_at <= now:
            raise _bad_request("Subscription expiration must be in the future.")
        if expires_at - now > cfg.subscription_max_lifetime:
            raise _bad_request(
                f"Subscription expiration can only be {cfg.subscription_max_lifetime / 60:g} "
                "minutes in the future."
            )
        return expires_at

    def check_url(body: JsonObject, name: str, *, required: bool) -> str | None:
        url = _string_field(body, name, required=required)
        if url is None:
            return None
        parts = urlsplit(url)
        schemes = ("https",) if cfg.require_https_notification_url else ("http", "https")
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise _bad_request(
                f"Invalid {name} '{url}': it must be an absolute "
                + (" or ".join(schemes))
                + " URL."
            )
        return url

    async def create_subscription(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        api.require(claims, "subscribe")
        body = await _read_json(request)
        change_type = _string_field(body, "changeType")
        if change_type != "updated":
            raise _bad_request(
                f"changeType '{change_type}' is not supported for presence: only 'updated'."
            )
        notification_url = check_url(body, "notificationUrl", required=True)
        lifecycle_url = check_url(body, "lifecycleNotificationUrl", required=False)
        assert notification_url is not None
        resource = _string_field(body, "resource")
        assert resource is not None
        user_ids = parse_presence_resource(resource)
        if len(user_ids) > cfg.max_ids:
            raise _bad_request(
                f"The number of user ids ({len(user_ids)}) exceeds the maximum of {cfg.max_ids}."
            )
        users = [api.find_user(user_id) for user_id in user_ids]
        api.require_users(claims, "subscribe", users)
        expires_at = expiry_field(body, now)
        client_state = _string_field(body, "clientState", required=False)
        if client_state is not None and len(client_state) > cfg.max_client_state_length:
            raise _bad_request(
                f"clientState is longer than {cfg.max_client_state_length} characters."
            )
        if body.get("includeResourceData") not in (None, False):
            raise _bad_request(
                "includeResourceData (rich notifications with encrypted content) is not "
                "supported by this emulator; subscribe for basic notifications."
            )
        if cfg.one_subscription_per_user_app and claims.delegated:
            for other in api.subscriptions.values():
                if other.creator_id == claims.object_id and other.app_id == claims.app_id:
                    raise GraphHttpError(
                        403,
                        "Forbidden",
                        "A user can create one presence subscription per application; "
                        f"subscription '{other.id}' already exists.",
                    )
        await api.validate_endpoint(notification_url)
        if lifecycle_url is not None:
            await api.validate_endpoint(lifecycle_url)
        subscription = Subscription(
            id=api.new_guid(),
            resource=resource,
            user_ids=tuple(u.id for u in users),
            change_type="updated",
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            client_state=client_state,
            expires_at=expires_at,
            tenant_id=claims.tenant_id,
            app_id=claims.app_id,
            creator_id=claims.object_id,
            delegated=claims.delegated,
        )
        api.subscriptions[subscription.id] = subscription
        log.info(
            "subscription_created",
            subscription=subscription.id,
            users=len(subscription.user_ids),
            tenant=claims.tenant_id,
        )
        return _json(
            {
                "@odata.context": f"{cfg.base_url}/$metadata#subscriptions/$entity",
                **subscription.as_json(api.epoch),
            },
            201,
        )

    def own_subscription(request: web.Request, claims: AccessClaims) -> Subscription:
        sub = api.subscriptions.get(request.match_info["subscription_id"])
        if sub is None or sub.tenant_id != claims.tenant_id or sub.app_id != claims.app_id:
            raise GraphHttpError(
                404,
                "ResourceNotFound",
                f"The object was not found: subscription '{request.match_info['subscription_id']}'.",
            )
        return sub

    async def get_subscription(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        sub = own_subscription(request, claims)
        return _json(
            {
                "@odata.context": f"{cfg.base_url}/$metadata#subscriptions/$entity",
                **sub.as_json(api.epoch),
            }
        )

    async def list_subscriptions(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        value = [
            s.as_json(api.epoch)
            for s in api.subscriptions.values()
            if s.tenant_id == claims.tenant_id and s.app_id == claims.app_id
        ]
        return _json({"@odata.context": f"{cfg.base_url}/$metadata#subscriptions", "value": value})

    async def update_subscription(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        sub = own_subscription(request, claims)
        body = await _read_json(request)
        sub.expires_at = expiry_field(body, now)
        return _json(
            {
                "@odata.context": f"{cfg.base_url}/$metadata#subscriptions/$entity",
                **sub.as_json(api.epoch),
            }
        )

    async def delete_subscription(request: web.Request) -> web.Response:
        now = api.tick()
        claims = api.authenticate(request, now)
        sub = own_subscription(request, claims)
        del api.subscriptions[sub.id]
        return web.Response(status=204)

    async def token(request: web.Request) -> web.Response:
        now = clock.now()
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            posted = await request.post()
            for key in posted:
                value = posted.get(key)
                if isinstance(value, str):
                    form.setdefault(key, value)
        basic = _basic_auth(request.headers.get("Authorization", ""))
        try:
            issued = auth.token_request(request.match_info["tenant"], form, now, basic_auth=basic)
        except OAuthError as exc:
            trace = api.new_guid()
            return _json(
                {
                    "error": exc.error,
                    "error_description": exc.description,
                    "error_codes": [exc.code],
                    "timestamp": format_graph_datetime(auth.settings.epoch + now)[:19].replace(
                        "T", " "
                    )
                    + "Z",
                    "trace_id": trace,
                    "correlation_id": trace,
                    "error_uri": f"https://login.microsoftonline.com/error?code={exc.code}",
                },
                exc.status,
            )
        return _json(issued.as_json(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    app = web.Application(middlewares=[graph_errors])
    app[PRESENCE_API_KEY] = api
    app.cleanup_ctx.append(api._background)
    v1 = "/v1.0"
    app.router.add_get(f"{v1}/me/presence", get_my_presence)
    app.router.add_get(f"{v1}/users/{{user_id}}/presence", get_user_presence)
    app.router.add_post(f"{v1}/users/{{user_id}}/presence/setPresence", set_presence)
    app.router.add_post(f"{v1}/users/{{user_id}}/presence/clearPresence", clear_presence)
    app.router.add_post(f"{v1}/users/{{user_id}}/presence/setUserPreferredPresence", set_preferred)
    app.router.add_post(
        f"{v1}/users/{{user_id}}/presence/clearUserPreferredPresence", clear_preferred
    )
    app.router.add_post(f"{v1}/users/{{user_id}}/presence/setStatusMessage", set_status_message)
    app.router.add_get(f"{v1}/communications/presences/{{user_id}}", get_communications_presence)
    app.router.add_post(f"{v1}/communications/getPresencesByUserId", get_presences_by_user_id)
    app.router.add_post(f"{v1}/subscriptions", create_subscription)
    app.router.add_get(f"{v1}/subscriptions", list_subscriptions)
    app.router.add_get(f"{v1}/subscriptions/{{subscription_id}}", get_subscription)
    app.router.add_patch(f"{v1}/subscriptions/{{subscription_id}}", update_subscription)
    app.router.add_delete(f"{v1}/subscriptions/{{subscription_id}}", delete_subscription)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    return app
