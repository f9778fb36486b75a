"""The Graph-shaped presence API over HTTP, on a virtual clock, through aiohttp's test client.

Notifications go through a capturing sender (no webhook server); ``test_presence_live.py`` does
the same with real sockets on both sides.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sbcsim.clock import VirtualClock
from sbcsim.presence.api import (
    PRESENCE_API_KEY,
    ApiSettings,
    GraphPresenceApi,
    RateLimiter,
    WebhookResponse,
    create_app,
    parse_presence_resource,
)
from sbcsim.presence.model import PresenceService
from sbcsim.presence.oauth import AuthoritySettings, TokenAuthority

TENANT_A = "aaaaaaaa-0000-4000-8000-000000000001"
TENANT_B = "bbbbbbbb-0000-4000-8000-000000000002"
CCAAS = "c0c0c0c0-0000-4000-8000-00000000000c"  # tenant A, reads and writes presence
READER = "e0e0e0e0-0000-4000-8000-00000000000e"  # tenant A, read only
NOROLE = "f0f0f0f0-0000-4000-8000-00000000000f"  # tenant A, no role granted
OTHER = "b1b1b1b1-0000-4000-8000-0000000000b1"  # tenant B, reads presence
AGENTS = "d0d0d0d0-0000-4000-8000-00000000000d"  # tenant A, public client for agent sign-in
ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
DAVE = "44444444-4444-4444-8444-444444444444"  # tenant A, Teams client signed out
CAROL = "33333333-3333-4333-8333-333333333333"  # tenant B
WAIT = 5.0
HOOK = "http://127.0.0.1:9/hook"


class CaptureSender:
    """A WebhookSender that answers validations and records notifications, with no server.

    ``validation_delay`` moves the virtual clock during a validation request to play a slow
    endpoint; ``echo`` decides what the validation answer contains.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.validations: list[tuple[str, str, bytes]] = []
        self.notifications: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.validation_delay = 0.0
        self.echo: str | None = None  # None: echo the token back
        self.content_type = "text/plain"

    async def __call__(
        self, url: str, body: bytes, content_type: str, timeout: float
    ) -> WebhookResponse:
        query = parse_qs(urlsplit(url).query)
        if "validationToken" in query:
            self.validations.append((url, content_type, body))
            self.clock.advance(self.validation_delay)
            token = query["validationToken"][0] if self.echo is None else self.echo
            return WebhookResponse(200, token.encode(), self.content_type)
        self.notifications.put_nowait(json.loads(body))
        return WebhookResponse(202, b"", "")


@dataclass
class World:
    clock: VirtualClock
    service: PresenceService
    auth: TokenAuthority
    sender: CaptureSender
    settings: ApiSettings
    tokens: dict[str, str] = field(default_factory=dict)


def build_world(settings: ApiSettings | None = None) -> World:
    clock = VirtualClock()
    service = PresenceService()
    service.add_user(ALICE, "alice@contoso.example", TENANT_A)
    service.add_user(BOB, "bob@contoso.example", TENANT_A)
    service.add_user(
        DAVE, "dave@contoso.example", TENANT_A, availability="Offline", activity="Offline"
    )
    service.add_user(CAROL, "carol@fabrikam.example", TENANT_B)
    auth = TokenAuthority(AuthoritySettings(), rng=random.Random(5))
    auth.add_tenant(TENANT_A, "contoso.onmicrosoft.com")
    auth.add_tenant(TENANT_B, "fabrikam.onmicrosoft.com")
    auth.add_app(
        TENANT_A, CCAAS, "ccaas-secret", roles=["Presence.Read.All", "Presence.ReadWrite.All"]
    )
    auth.add_app(TENANT_A, READER, "reader-secret", roles=["Presence.Read.All"])
    auth.add_app(TENANT_A, NOROLE, "norole-secret")
    auth.add_app(TENANT_B, OTHER, "other-secret", roles=["Presence.Read.All"])
    auth.add_app(
        TENANT_A,
        AGENTS,
        public_client=True,
        delegated_scopes=["Presence.Read", "Presence.Read.All"],
    )
    auth.add_user_account(TENANT_A, "alice@contoso.example", "alice-pw", ALICE)
    return World(clock, service, auth, CaptureSender(clock), settings or ApiSettings(seed=42))


@pytest.fixture
def world() -> World:
    return build_world()


@pytest.fixture
async def client(world: World) -> AsyncIterator[TestClient[object, object]]:
    app = create_app(
        world.service, world.auth, clock=world.clock, settings=world.settings, sender=world.sender
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def api_of(client: TestClient[object, object]) -> GraphPresenceApi:
    return client.server.app[PRESENCE_API_KEY]  # type: ignore[union-attr]


async def app_token(
    client: TestClient[object, object], tenant: str, app_id: str, secret: str
) -> str:
    response = await client.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app_id,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert response.status == 200, await response.text()
    token = (await response.json())["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ccaas(client: TestClient[object, object]) -> dict[str, str]:
    return bearer(await app_token(client, TENANT_A, CCAAS, "ccaas-secret"))


# -- token endpoint ----------------------------------------------------------------------------


async def test_token_endpoint_over_http(client: TestClient[object, object]) -> None:
    response = await client.post(
        "/contoso.onmicrosoft.com/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"},
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{CCAAS}:ccaas-secret".encode()).decode()
        },
    )
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert sorted(body) == ["access_token", "expires_in", "ext_expires_in", "token_type"]
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)

    bad = await client.post(
        f"/{TENANT_A}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CCAAS,
            "client_secret": "nope",
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert bad.status == 401
    error = await bad.json()
    assert error["error"] == "invalid_client"
    assert error["error_codes"] == [7000215]
    assert error["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert error["timestamp"] == "2025-01-01 00:00:00Z"

    not_form = await client.post(
        f"/{TENANT_A}/oauth2/v2.0/token", json={"grant_type": "client_credentials"}
    )
    assert not_form.status == 400
    assert (await not_form.json())["error_codes"] == [900144]


# -- reading -----------------------------------------------------------------------------------


async def test_read_presence_and_see_a_call(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    response = await client.get(f"/v1.0/users/{ALICE}/presence", headers=headers)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{ALICE}')/presence/$entity",
        "id": ALICE,
        "availability": "Available",
        "activity": "Available",
        "statusMessage": None,
        "outOfOfficeSettings": {"message": None, "isOutOfOffice": False},
        "sequenceNumber": "0000000000000001",
    }
    world.service.call_started(ALICE, world.clock.now())
    by_upn = await client.get("/v1.0/users/ALICE@contoso.example/presence", headers=headers)
    body = await by_upn.json()
    assert (body["id"], body["availability"], body["activity"]) == (ALICE, "Busy", "InACall")

    collection = await client.get(f"/v1.0/communications/presences/{ALICE}", headers=headers)
    value = (await collection.json())["value"]
    assert [(v["id"], v["availability"], v["activity"]) for v in value] == [
        (ALICE, "Busy", "InACall")
    ]


async def test_other_tenant_token_is_forbidden(client: TestClient[object, object]) -> None:
    token = await app_token(client, TENANT_B, OTHER, "other-secret")
    response = await client.get(
        f"/v1.0/users/{ALICE}/presence",
        headers={**bearer(token), "client-request-id": "cafe0000-0000-4000-8000-000000000001"},
    )
    assert response.status == 403
    body = await response.json()
    assert body == {
        "error": {
            "code": "Authorization_RequestDenied",
            "message": body["error"]["message"],
            "innerError": {
                "date": "2025-01-01T00:00:00",
                "request-id": response.headers["request-id"],
                "client-request-id": "cafe0000-0000-4000-8000-000000000001",
            },
        }
    }
    assert response.headers["client-request-id"] == "cafe0000-0000-4000-8000-000000000001"
    own = await client.get(f"/v1.0/users/{CAROL}/presence", headers=bearer(token))
    assert own.status == 200


async def test_missing_malformed_and_expired_tokens_are_401(
    world: World, client: TestClient[object, object]
) -> None:
    missing = await client.get(f"/v1.0/users/{ALICE}/presence")
    assert missing.status == 401
    body = await missing.json()
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert body["error"]["message"] == "Access token is empty."
    assert missing.headers["WWW-Authenticate"].startswith('Bearer realm=""')

    malformed = await client.get(f"/v1.0/users/{ALICE}/presence", headers=bearer("not-a-jwt"))
    assert malformed.status == 401
    assert (await malformed.json())["error"]["code"] == "InvalidAuthenticationToken"

    headers = await ccaas(client)
    world.clock.advance(3599.0)
    assert (await client.get(f"/v1.0/users/{ALICE}/presence", headers=headers)).status == 200
    world.clock.advance(1.0)
    expired = await client.get(f"/v1.0/users/{ALICE}/presence", headers=headers)
    assert expired.status == 401
    assert (await expired.json())["error"][
        "message"
    ] == "Lifetime validation failed, the token is expired."


async def test_missing_role_is_403_and_unknown_user_404(client: TestClient[object, object]) -> None:
    token = await app_token(client, TENANT_A, NOROLE, "norole-secret")
    response = await client.get(f"/v1.0/users/{ALICE}/presence", headers=bearer(token))
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "Forbidden"
    unknown = await client.get(
        "/v1.0/users/99999999-9999-4999-8999-999999999999/presence", headers=await ccaas(client)
    )
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "NotFound"


async def test_get_presences_by_user_id(world: World, client: TestClient[object, object]) -> None:
    headers = await ccaas(client)
    world.service.call_started(BOB, 0.0, conference=True)
    response = await client.post(
        "/v1.0/communications/getPresencesByUserId",
        json={"ids": [ALICE, BOB, ALICE]},
        headers=headers,
    )
    assert response.status == 200
    body = await response.json()
    assert (
        body["@odata.context"]
        == "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.presence)"
    )
    assert [(v["id"], v["availability"], v["activity"]) for v in body["value"]] == [
        (ALICE, "Available", "Available"),
        (BOB, "Busy", "InAConferenceCall"),
    ]

    ids = [ALICE, *[f"00000000-0000-4000-8000-{n:012d}" for n in range(649)]]
    full = await client.post(
        "/v1.0/communications/getPresencesByUserId", json={"ids": ids}, headers=headers
    )
    assert full.status == 200
    value = (await full.json())["value"]
    assert len(value) == 650
    assert value[1] == {
        "id": ids[1],
        "availability": "PresenceUnknown",
        "activity": "PresenceUnknown",
    }

    too_many = await client.post(
        "/v1.0/communications/getPresencesByUserId", json={"ids": [*ids, BOB]}, headers=headers
    )
    assert too_many.status == 400
    error = (await too_many.json())["error"]
    assert error["code"] == "BadRequest"
    assert "(651) exceeds the maximum of 650" in error["message"]

    for bad in ({"ids": "x"}, {"ids": []}, {}, [1]):
        reply = await client.post(
            "/v1.0/communications/getPresencesByUserId", json=bad, headers=headers
        )
        assert reply.status == 400
    foreign = await client.post(
        "/v1.0/communications/getPresencesByUserId", json={"ids": [ALICE, CAROL]}, headers=headers
    )
    assert foreign.status == 403


async def test_throttling_returns_429_with_retry_after() -> None:
    world = build_world(ApiSettings(seed=1, rate_limit_requests=3, rate_limit_window=30.0))
    app = create_app(
        world.service, world.auth, clock=world.clock, settings=world.settings, sender=world.sender
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        headers = await ccaas(client)
        other = bearer(await app_token(client, TENANT_A, READER, "reader-secret"))
        url = f"/v1.0/users/{ALICE}/presence"
        for _ in range(3):
            assert (await client.get(url, headers=headers)).status == 200
        refused = await client.get(url, headers=headers)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "30"
        assert (await refused.json())["error"]["code"] == "TooManyRequests"
        # Another application of the same tenant has its own budget; so does the bulk API.
        assert (await client.get(url, headers=other)).status == 200
        bulk = await client.post(
            "/v1.0/communications/getPresencesByUserId", json={"ids": [ALICE]}, headers=headers
        )
        assert bulk.status == 200
        world.clock.advance(12.5)
        again = await client.get(url, headers=headers)
        assert (again.status, again.headers["Retry-After"]) == (429, "18")
        world.clock.advance(17.5)  # t = 30: the first three requests leave the window
        assert (await client.get(url, headers=headers)).status == 200


def test_documented_limits_are_the_defaults() -> None:
    settings = ApiSettings()
    assert (settings.rate_limit_requests, settings.rate_limit_window) == (1500, 30.0)
    assert settings.max_ids == 650
    assert settings.subscription_max_lifetime == 3600.0
    assert settings.validation_timeout == 10.0
    limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_window)
    assert all(limiter.check("k", i * 0.01) is None for i in range(1500))
    assert limiter.check("k", 15.0) == 15  # the first request (t=0) frees at t=30
    assert limiter.check("k", 29.99) == 1
    assert limiter.check("k", 30.0) is None


# -- writing -----------------------------------------------------------------------------------


async def test_set_presence_then_expiry(world: World, client: TestClient[object, object]) -> None:
    headers = await ccaas(client)
    url = f"/v1.0/users/{DAVE}/presence"
    assert (await (await client.get(url, headers=headers)).json())["availability"] == "Offline"
    response = await client.post(
        f"{url}/setPresence",
        json={
            "sessionId": CCAAS,
            "availability": "Busy",
            "activity": "InACall",
            "expirationDuration": "PT5M",
        },
        headers=headers,
    )
    assert response.status == 200
    assert await response.read() == b""
    body = await (await client.get(url, headers=headers)).json()
    assert (body["availability"], body["activity"]) == ("Busy", "InACall")
    world.clock.advance(299.0)
    body = await (await client.get(url, headers=headers)).json()
    assert (body["availability"], body["activity"]) == ("Busy", "InACall")
    world.clock.advance(1.0)
    body = await (await client.get(url, headers=headers)).json()
    assert (body["availability"], body["activity"]) == ("Offline", "Offline")


async def test_available_session_fades_over_http(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    url = f"/v1.0/users/{DAVE}/presence"
    await client.post(
        f"{url}/setPresence",
        json={
            "sessionId": CCAAS,
            "availability": "Available",
            "activity": "Available",
            "expirationDuration": "PT50M",
        },
        headers=headers,
    )
    seen = []
    for t in (299.0, 300.0, 600.0, 2999.0, 3000.0):
        world.clock.advance_to(t)
        body = await (await client.get(url, headers=headers)).json()
        seen.append((t, body["availability"], body["activity"]))
    assert seen == [
        (299.0, "Available", "Available"),
        (300.0, "Available", "AvailableInactive"),
        (600.0, "Away", "Away"),
        (2999.0, "Away", "Away"),
        (3000.0, "Offline", "Offline"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"sessionId": CCAAS, "availability": "Sleepy", "activity": "Available"},
        {"sessionId": CCAAS, "availability": "DoNotDisturb", "activity": "DoNotDisturb"},
        {
            "sessionId": CCAAS,
            "availability": "Available",
            "activity": "Available",
            "expirationDuration": "PT4M",
        },
        {
            "sessionId": CCAAS,
            "availability": "Available",
            "activity": "Available",
            "expirationDuration": "PT5H",
        },
        {
            "sessionId": CCAAS,
            "availability": "Available",
            "activity": "Available",
            "expirationDuration": "soon",
        },
        {"sessionId": READER, "availability": "Available", "activity": "Available"},
        {"availability": "Available", "activity": "Available"},
        {"sessionId": CCAAS, "availability": 3, "activity": "Available"},
    ],
)
async def test_set_presence_validation(
    world: World, client: TestClient[object, object], body: dict[str, object]
) -> None:
    response = await client.post(
        f"/v1.0/users/{ALICE}/presence/setPresence", json=body, headers=await ccaas(client)
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BadRequest"
    assert world.service.sessions(ALICE) == ()


async def test_write_needs_readwrite_role_and_same_tenant(
    client: TestClient[object, object],
) -> None:
    body = {"sessionId": READER, "availability": "Away", "activity": "Away"}
    reader = bearer(await app_token(client, TENANT_A, READER, "reader-secret"))
    assert (
        await client.post(f"/v1.0/users/{ALICE}/presence/setPresence", json=body, headers=reader)
    ).status == 403
    body["sessionId"] = CCAAS
    headers = await ccaas(client)
    assert (
        await client.post(f"/v1.0/users/{CAROL}/presence/setPresence", json=body, headers=headers)
    ).status == 403


async def test_clear_preferred_and_status_message(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    base = f"/v1.0/users/{ALICE}/presence"
    await client.post(
        f"{base}/setPresence",
        json={
            "sessionId": CCAAS,
            "availability": "Busy",
            "activity": "InACall",
            "expirationDuration": "PT1H",
        },
        headers=headers,
    )
    assert world.service.presence(ALICE).activity == "InACall"
    assert (
        await client.post(f"{base}/clearPresence", json={"sessionId": CCAAS}, headers=headers)
    ).status == 200
    assert world.service.presence(ALICE).activity == "Available"

    pref = await client.post(
        f"{base}/setUserPreferredPresence",
        json={
            "availability": "DoNotDisturb",
            "activity": "DoNotDisturb",
            "expirationDuration": "PT8H",
        },
        headers=headers,
    )
    assert pref.status == 200
    assert str(world.service.presence(ALICE)) == "DoNotDisturb/DoNotDisturb"
    bad = await client.post(
        f"{base}/setUserPreferredPresence",
        json={"availability": "Busy", "activity": "InACall"},
        headers=headers,
    )
    assert bad.status == 400
    assert (await client.post(f"{base}/clearUserPreferredPresence", headers=headers)).status == 200
    assert str(world.service.presence(ALICE)) == "Available/Available"

    status = await client.post(
        f"{base}/setStatusMessage",
        json={
            "statusMessage": {
                "message": {"content": "Escalations only", "contentType": "text"},
                "expiryDateTime": {"dateTime": "2025-01-01T08:00:00.0000000", "timeZone": "UTC"},
            }
        },
        headers=headers,
    )
    assert status.status == 200
    body = await (await client.get(base, headers=headers)).json()
    assert body["statusMessage"] == {
        "message": {"content": "Escalations only", "contentType": "text"},
        "publishedDateTime": "2025-01-01T00:00:00.0000000Z",
        "expiryDateTime": {"dateTime": "2025-01-01T08:00:00.0000000", "timeZone": "UTC"},
    }


# -- delegated (agent) tokens --------------------------------------------------------------------


async def test_agent_sign_in_reads_own_presence_only(client: TestClient[object, object]) -> None:
    response = await client.post(
        f"/{TENANT_A}/oauth2/v2.0/token",
        data={
            "grant_type": "password",
            "client_id": AGENTS,
            "username": "alice@contoso.example",
            "password": "alice-pw",
            "scope": "https://graph.microsoft.com/Presence.Read offline_access",
        },
    )
    assert response.status == 200
    body = await response.json()
    assert body["scope"] == "https://graph.microsoft.com/Presence.Read"
    headers = bearer(body["access_token"])
    me = await client.get("/v1.0/me/presence", headers=headers)
    assert me.status == 200
    assert (await me.json())["id"] == ALICE
    assert (await client.get(f"/v1.0/users/{ALICE}/presence", headers=headers)).status == 200
    assert (await client.get(f"/v1.0/users/{BOB}/presence", headers=headers)).status == 403
    app_me = await client.get("/v1.0/me/presence", headers=await ccaas(client))
    assert app_me.status == 400


# -- subscriptions and notifications -------------------------------------------------------------


def subscription_body(
    resource: str, expiry: str = "2025-01-01T01:00:00.0000000Z"
) -> dict[str, object]:
    return {
        "changeType": "updated",
        "notificationUrl": HOOK,
        "resource": resource,
        "expirationDateTime": expiry,
        "clientState": "secret-state",
    }


async def test_subscription_handshake_and_notification(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    resource = f"/communications/presences?$filter=id in ('{ALICE}','{BOB}')"
    response = await client.post(
        "/v1.0/subscriptions", json=subscription_body(resource), headers=headers
    )
    assert response.status == 201, await response.text()
    sub = await response.json()
    assert (len(world.sender.validations), world.sender.validations[0][1:]) == (
        1,
        ("text/plain; charset=utf-8", b""),
    )
    token = parse_qs(urlsplit(world.sender.validations[0][0]).query)["validationToken"][0]
    assert token.startswith(
        "Validation: Testing client application reachability for subscription Request-Id: "
    )
    assert {k: v for k, v in sub.items() if k != "id"} == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
        "resource": resource,
        "applicationId": CCAAS,
        "changeType": "updated",
        "clientState": "secret-state",
        "notificationUrl": HOOK,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": None,
        "expirationDateTime": "2025-01-01T01:00:00.0000000Z",
        "creatorId": CCAAS,
        "includeResourceData": False,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": None,
        "encryptionCertificateId": None,
        "notificationUrlAppId": None,
    }

    world.clock.advance(42.0)
    world.service.call_started(ALICE, world.clock.now())
    notification = await asyncio.wait_for(world.sender.notifications.get(), WAIT)
    assert notification == {
        "value": [
            {
                "subscriptionId": sub["id"],
                "clientState": "secret-state",
                "changeType": "updated",
                "tenantId": TENANT_A,
                "resource": f"communications/presences/{ALICE}",
                "subscriptionExpirationDateTime": "2025-01-01T01:00:00.0000000Z",
                "resourceData": {
                    "@odata.id": f"users/{ALICE}/presence",
                    "@odata.type": "#microsoft.graph.presence",
                    "id": ALICE,
                },
                "organizationId": TENANT_A,
            }
        ]
    }
    api = api_of(client)
    assert [(d.subscription_id, d.user_id, d.at, d.status) for d in api.deliveries] == [
        (sub["id"], ALICE, 42.0, 202)
    ]
    # A change of a user outside the subscription is not notified.
    world.service.call_started(world.service.user("dave@contoso.example").id, world.clock.now())
    assert api.pending == 0
    # Past its expiry the subscription is gone and notifies nothing.
    world.clock.advance_to(3600.0)
    world.service.call_ended(ALICE, world.clock.now())
    assert api.pending == 0
    headers = await ccaas(client)  # the first token expired at t=3600 too
    gone = await client.get(f"/v1.0/subscriptions/{sub['id']}", headers=headers)
    assert gone.status == 404


async def test_single_user_subscription_renew_and_delete(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    created = await client.post(
        "/v1.0/subscriptions",
        json=subscription_body(f"communications/presences/{BOB}", "2025-01-01T00:30:00Z"),
        headers=headers,
    )
    assert created.status == 201
    sub_id = (await created.json())["id"]
    world.clock.advance(1200.0)
    renewed = await client.patch(
        f"/v1.0/subscriptions/{sub_id}",
        json={"expirationDateTime": "2025-01-01T01:20:00Z"},
        headers=headers,
    )
    assert renewed.status == 200
    assert (await renewed.json())["expirationDateTime"] == "2025-01-01T01:20:00.0000000Z"
    too_far = await client.patch(
        f"/v1.0/subscriptions/{sub_id}",
        json={"expirationDateTime": "2025-01-01T01:20:01Z"},
        headers=headers,
    )
    assert too_far.status == 400
    listing = await (await client.get("/v1.0/subscriptions", headers=headers)).json()
    assert [s["id"] for s in listing["value"]] == [sub_id]
    other = bearer(await app_token(client, TENANT_B, OTHER, "other-secret"))
    assert (await client.delete(f"/v1.0/subscriptions/{sub_id}", headers=other)).status == 404
    assert (await client.delete(f"/v1.0/subscriptions/{sub_id}", headers=headers)).status == 204
    assert (await client.get(f"/v1.0/subscriptions/{sub_id}", headers=headers)).status == 404
    world.service.call_started(BOB, world.clock.now())
    assert api_of(client).pending == 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"expirationDateTime": "2025-01-01T01:00:01Z"}, 400, "BadRequest"),
        ({"expirationDateTime": "2024-12-31T23:59:59Z"}, 400, "BadRequest"),
        ({"expirationDateTime": "whenever"}, 400, "BadRequest"),
        ({"changeType": "created,updated"}, 400, "BadRequest"),
        ({"notificationUrl": "ftp://127.0.0.1/hook"}, 400, "BadRequest"),
        ({"resource": "/users/x/presence"}, 400, "BadRequest"),
        ({"resource": f"communications/presences/{CAROL}"}, 403, "Authorization_RequestDenied"),
        (
            {"resource": "communications/presences/99999999-9999-4999-8999-999999999999"},
            404,
            "NotFound",
        ),
        ({"includeResourceData": True}, 400, "BadRequest"),
        ({"clientState": "x" * 129}, 400, "BadRequest"),
    ],
)
async def test_subscription_validation_errors(
    world: World,
    client: TestClient[object, object],
    change: dict[str, object],
    status: int,
    code: str,
) -> None:
    body = {**subscription_body(f"communications/presences/{ALICE}"), **change}
    response = await client.post("/v1.0/subscriptions", json=body, headers=await ccaas(client))
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code
    assert api_of(client).subscriptions == {}


async def test_subscription_bulk_limit(client: TestClient[object, object]) -> None:
    ids = ",".join(f"'00000000-0000-4000-8000-{n:012d}'" for n in range(651))
    body = subscription_body(f"/communications/presences?$filter=id in ({ids})")
    response = await client.post("/v1.0/subscriptions", json=body, headers=await ccaas(client))
    assert response.status == 400
    assert "(651) exceeds the maximum of 650" in (await response.json())["error"]["message"]


async def test_failed_or_slow_validation_refuses_the_subscription(
    world: World, client: TestClient[object, object]
) -> None:
    headers = await ccaas(client)
    body = subscription_body(f"communications/presences/{ALICE}")
    world.sender.echo = "something else"
    wrong = await client.post("/v1.0/subscriptions", json=body, headers=headers)
    assert wrong.status == 400
    assert (await wrong.json())["error"] == {
        "code": "ValidationError",
        "message": "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        "innerError": (await wrong.json())["error"]["innerError"],
    }
    world.sender.echo = None
    world.sender.content_type = "application/json"
    assert (await client.post("/v1.0/subscriptions", json=body, headers=headers)).status == 400
    world.sender.content_type = "text/plain"
    world.sender.validation_delay = 10.5
    slow = await client.post("/v1.0/subscriptions", json=body, headers=headers)
    assert slow.status == 400
    assert (await slow.json())["error"]["message"] == "Subscription validation request timed out."
    assert api_of(client).subscriptions == {}
    world.sender.validation_delay = 10.0  # exactly at the bound is still in time
    assert (
        await client.post(
            "/v1.0/subscriptions",
            json=subscription_body(f"communications/presences/{ALICE}", "2025-01-01T01:00:10Z"),
            headers=headers,
        )
    ).status == 201


async def test_one_presence_subscription_per_user_and_app(
    client: TestClient[object, object],
) -> None:
    response = await client.post(
        f"/{TENANT_A}/oauth2/v2.0/token",
        data={
            "grant_type": "password",
            "client_id": AGENTS,
            "username": "alice@contoso.example",
            "password": "alice-pw",
            "scope": "Presence.Read.All",
        },
    )
    headers = bearer((await response.json())["access_token"])
    body = subscription_body(f"communications/presences/{BOB}")
    first = await client.post("/v1.0/subscriptions", json=body, headers=headers)
    assert first.status == 201
    assert (await first.json())["creatorId"] == ALICE
    second = await client.post("/v1.0/subscriptions", json=body, headers=headers)
    assert second.status == 403


def test_presence_resource_forms() -> None:
    assert parse_presence_resource(f"communications/presences/{ALICE}") == (ALICE,)
    assert parse_presence_resource(f"/communications/presences/{ALICE}") == (ALICE,)
    assert parse_presence_resource(
        f"/communications/presences?$filter=id in ('{ALICE}', '{BOB}','{ALICE}')"
    ) == (ALICE, BOB)
    assert parse_presence_resource(f"communications/presences?$filter=id+in+(%27{ALICE}%27)") == (
        ALICE,
    )
    for bad in (
        "communications/presences",
        "communications/presences?$filter=id in ()",
        f"communications/presences?$filter=id in ({ALICE})",
        "users/x/presence",
    ):
        with pytest.raises(Exception, match="400 BadRequest"):
            parse_presence_resource(bad)


async def test_request_ids_are_reproducible_for_a_seed() -> None:
    seen = []
    for _ in range(2):
        world = build_world(ApiSettings(seed=7))
        app = create_app(
            world.service,
            world.auth,
            clock=world.clock,
            settings=world.settings,
            sender=world.sender,
        )
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.get(f"/v1.0/users/{ALICE}/presence")
            seen.append(response.headers["request-id"])
    assert seen[0] == seen[1]
    assert len(seen[0]) == 36 and seen[0][14] == "4"


async def test_unknown_route_has_graph_error_shape(client: TestClient[object, object]) -> None:
    response = await client.get("/v1.0/nothing/here")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "NotFound"
    assert "request-id" in response.headers


async def test_driven_timers_notify_an_expiry_without_a_request() -> None:
    world = build_world(ApiSettings(seed=3, drive_timers=True, timer_poll_interval=0.01))
    app = create_app(
        world.service, world.auth, clock=world.clock, settings=world.settings, sender=world.sender
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        headers = await ccaas(client)
        body = subscription_body(f"communications/presences/{DAVE}")
        assert (await client.post("/v1.0/subscriptions", json=body, headers=headers)).status == 201
        set_body = {"sessionId": CCAAS, "availability": "Busy", "activity": "InACall"}
        response = await client.post(
            f"/v1.0/users/{DAVE}/presence/setPresence", json=set_body, headers=headers
        )
        assert response.status == 200
        await asyncio.wait_for(world.sender.notifications.get(), WAIT)  # Offline -> Busy
        world.clock.advance(300.0)  # the default 5-minute session expires; nobody asks
        await asyncio.wait_for(world.sender.notifications.get(), WAIT)  # Busy -> Offline
        assert str(world.service.presence(DAVE)) == "Offline/Offline"
        assert [d.at for d in api_of(client).deliveries] == [0.0, 300.0]
