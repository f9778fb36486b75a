"""The presence API served on a real 127.0.0.1 port, driven by aiohttp's real HTTP client.

The webhook receiver is a real server too, so the live sender (aiohttp's client) carries the
validation handshake and the change notification.  Time is still a virtual clock: expiry and
throttling are stepped, never slept.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from sbcsim.clock import VirtualClock
from sbcsim.presence.api import PRESENCE_API_KEY, ApiSettings, create_app
from sbcsim.presence.model import PresenceService
from sbcsim.presence.oauth import TokenAuthority

TENANT_A = "aaaaaaaa-0000-4000-8000-000000000001"
TENANT_B = "bbbbbbbb-0000-4000-8000-000000000002"
CCAAS = "c0c0c0c0-0000-4000-8000-00000000000c"
OTHER = "b1b1b1b1-0000-4000-8000-0000000000b1"
ALICE = "11111111-1111-4111-8111-111111111111"
SME = "55555555-5555-4555-8555-555555555555"
WAIT = 5.0


@dataclass
class Live:
    clock: VirtualClock
    service: PresenceService
    app: web.Application
    base: str
    hook: str
    validations: list[str]
    notifications: asyncio.Queue[dict[str, object]]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    clock = VirtualClock()
    service = PresenceService()
    service.add_user(ALICE, "alice@contoso.example", TENANT_A)
    service.add_user(
        SME, "sme@contoso.example", TENANT_A, availability="Offline", activity="Offline"
    )
    auth = TokenAuthority(rng=random.Random(3))
    auth.add_tenant(TENANT_A)
    auth.add_tenant(TENANT_B)
    auth.add_app(
        TENANT_A, CCAAS, "ccaas-secret", roles=["Presence.Read.All", "Presence.ReadWrite.All"]
    )
    auth.add_app(TENANT_B, OTHER, "other-secret", roles=["Presence.Read.All"])
    settings = ApiSettings(seed=11, rate_limit_requests=20, rate_limit_window=30.0)
    app = create_app(service, auth, clock=clock, settings=settings)  # live aiohttp sender

    validations: list[str] = []
    notifications: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            validations.append(token)
            return web.Response(text=token, content_type="text/plain")
        notifications.put_nowait(await request.json())
        return web.Response(status=202)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    api_runner, base = await serve(app)
    hook_runner, hook_base = await serve(receiver)
    try:
        yield Live(clock, service, app, base, f"{hook_base}/hook", validations, notifications)
    finally:
        await api_runner.cleanup()
        await hook_runner.cleanup()


async def get_token(
    http: aiohttp.ClientSession, base: str, tenant: str, app_id: str, secret: str
) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": app_id,
        "client_secret": secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    async with http.post(f"{base}/{tenant}/oauth2/v2.0/token", data=form) as response:
        assert response.status == 200
        token = (await response.json())["access_token"]
        assert isinstance(token, str)
        return token


async def test_live_contact_center_flow(live: Live) -> None:
    timeout = aiohttp.ClientTimeout(total=WAIT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        token = await get_token(http, live.base, TENANT_A, CCAAS, "ccaas-secret")
        auth = {"Authorization": f"Bearer {token}"}

        # token -> read presence
        async with http.get(f"{live.base}/v1.0/users/{ALICE}/presence", headers=auth) as r:
            assert r.status == 200
            body = await r.json()
            assert (body["id"], body["availability"], body["activity"]) == (
                ALICE,
                "Available",
                "Available",
            )
            assert len(r.headers["request-id"]) == 36

        # another tenant's token -> 403
        other = await get_token(http, live.base, TENANT_B, OTHER, "other-secret")
        async with http.get(
            f"{live.base}/v1.0/users/{ALICE}/presence", headers={"Authorization": f"Bearer {other}"}
        ) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "Authorization_RequestDenied"

        # missing token -> 401
        async with http.get(f"{live.base}/v1.0/users/{ALICE}/presence") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "InvalidAuthenticationToken"

        # 651 ids -> 400
        ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(651)]
        async with http.post(
            f"{live.base}/v1.0/communications/getPresencesByUserId", json={"ids": ids}, headers=auth
        ) as r:
            assert r.status == 400

        # setPresence, then expiry on the virtual clock
        async with http.post(
            f"{live.base}/v1.0/users/{SME}/presence/setPresence",
            json={
                "sessionId": CCAAS,
                "availability": "Available",
                "activity": "Available",
                "expirationDuration": "PT5M",
            },
            headers=auth,
        ) as r:
            assert r.status == 200
        live.clock.advance(299.0)
        async with http.get(f"{live.base}/v1.0/users/{SME}/presence", headers=auth) as r:
            assert (await r.json())["availability"] == "Available"
        live.clock.advance(1.0)
        async with http.get(f"{live.base}/v1.0/users/{SME}/presence", headers=auth) as r:
            body = await r.json()
            assert (body["availability"], body["activity"]) == ("Offline", "Offline")

        # subscription: validation handshake over real HTTP, then a notification on a call
        subscription = {
            "changeType": "updated",
            "notificationUrl": live.hook,
            "resource": f"/communications/presences?$filter=id in ('{ALICE}')",
            "expirationDateTime": "2025-01-01T01:00:00Z",
            "clientState": "ccaas-state",
        }
        async with http.post(
            f"{live.base}/v1.0/subscriptions", json=subscription, headers=auth
        ) as r:
            assert r.status == 201, await r.text()
            sub_id = (await r.json())["id"]
        assert len(live.validations) == 1
        assert live.validations[0].startswith("Validation: Testing client application reachability")

        live.service.call_started(ALICE, live.clock.now())
        notification = await asyncio.wait_for(live.notifications.get(), WAIT)
        (item,) = notification["value"]  # type: ignore[misc]
        assert item["subscriptionId"] == sub_id
        assert item["clientState"] == "ccaas-state"
        assert item["resource"] == f"communications/presences/{ALICE}"
        async with http.get(f"{live.base}/v1.0/users/{ALICE}/presence", headers=auth) as r:
            body = await r.json()
            assert (body["availability"], body["activity"]) == ("Busy", "InACall")

        # throttling: 20 reads per 30 s per app; the reads at t=0 have left the window, the one
        # at t=299 and the two at t=300 have not, so 17 more pass and the next one is refused,
        # with Retry-After counted from the oldest read still in the window (299 + 30 - 300).
        statuses = []
        for _ in range(18):
            async with http.get(f"{live.base}/v1.0/users/{ALICE}/presence", headers=auth) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        assert statuses == [200] * 17 + [429]
        assert retry_after == "29"

    deliveries = live.app[PRESENCE_API_KEY].deliveries
    assert [(d.user_id, d.status, d.error) for d in deliveries] == [(ALICE, 202, None)]
