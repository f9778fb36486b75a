"""The reference contact center (Connect model): its topology section, the in-process Graph API,
the SBC's routing toward and from it, escalation to SMEs by presence, and every mutant at the
exact point where its fault happens.

Every test runs the whole lab (Microsoft side, Teams users, PSTN, reference SBC, platform) on the
virtual clock; times are exact virtual seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from click.testing import CliRunner
from rich.console import Console

from sbcsim.clock import VirtualClock
from sbcsim.config.yamlload import load_model_text
from sbcsim.endpoints.ccaas import (
    AGENT_SCOPES,
    CCAAS_MUTANTS,
    CcaasSettings,
    CustomerCall,
    GraphExchange,
    ReferenceCcaas,
    build_lab_graph,
    ccaas_mutants_table,
    get_ccaas_mutant,
    json_path,
    json_subset,
    judge_exchanges,
    judge_retry_after,
    lab_token_authority,
    start_presence_api,
)
from sbcsim.endpoints.mutants import MUTANTS
from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.endpoints.sbc_live import mutants as mutants_command
from sbcsim.endpoints.teams_users import tenant_guid
from sbcsim.errors import ConfigError
from sbcsim.lab import Lab, add_presence_users
from sbcsim.presence.api import WebhookResponse
from sbcsim.presence.model import PresenceService
from sbcsim.scenario.matchers import parse_entry
from sbcsim.sip.message import Request
from sbcsim.testplan.mutation import family_mutants
from sbcsim.topology import Topology, default_topology_text, load_topology

TOPOLOGY = load_topology(None)
CUSTOMER = "+13125550101"
CUSTOMER_B = "+13125550102"
IVR_A = "+18005550110"
IVR_TECH = "+18005550111"
IVR_B = "+18005550120"
ALICE = "alice.archer@contoso.example"
BRUNO = "bruno.baptiste@contoso.example"
CHLOE = "chloe.chen@contoso.example"
DMITRI = "dmitri.dvorak@contoso.example"
ELENA = "elena.estrada@contoso.example"
FARID = "farid.farah@contoso.example"
HANA = "hana.haddad@contoso.example"
JULIA = "julia.jensen@fabrikam.example"
KENJI = "kenji.kato@fabrikam.example"
LENA = "lena.larsen@fabrikam.example"
TENANT_A = tenant_guid(TOPOLOGY.tenant("tenant-a"))
TENANT_B = tenant_guid(TOPOLOGY.tenant("tenant-b"))
READ_PATH = "/v1.0/communications/getPresencesByUserId"


def gid(upn: str) -> str:
    user = TOPOLOGY.user_by_upn(upn)
    assert user is not None
    return user.graph_id


def number(upn: str) -> str:
    user = TOPOLOGY.user_by_upn(upn)
    assert user is not None and user.number is not None
    return user.number


def make_lab(
    mutant: str | None = None,
    *,
    api: dict[str, Any] | None = None,
    topology: Topology | None = None,
    **settings: Any,
) -> Lab:
    return Lab.build(
        topology or TOPOLOGY,
        sbc_factory=ReferenceSbc.factory(),
        ccaas_factory=ReferenceCcaas.factory(mutant=mutant, **settings),
        api_settings=api,
    )


@pytest.fixture
def labs() -> Iterator[list[Lab]]:
    """Labs a test builds; their presence API loops are closed afterwards."""
    built: list[Lab] = []
    yield built
    for lab in built:
        lab.close()


def platform(lab: Lab) -> ReferenceCcaas:
    assert isinstance(lab.ccaas, ReferenceCcaas)
    return lab.ccaas


def set_presence(lab: Lab, upn: str, availability: str) -> None:
    lab.presence.set_client_presence(gid(upn), lab.now(), availability, availability)


def with_agent(lab: Lab, phone: str = CUSTOMER, entry: str = IVR_A) -> CustomerCall:
    """Warm up, call the entry number, and run until an agent talks to the caller."""
    if lab.now() < 5:
        lab.run_for(5)
    lab.phone(phone).call(entry)
    cc = platform(lab)
    assert lab.run_until(
        lambda: (c := cc.latest_call_of(phone)) is not None and c.state == "with-agent", 30
    )
    call = cc.latest_call_of(phone)
    assert call is not None
    return call


def reads(lab: Lab, since: float = 0.0) -> list[GraphExchange]:
    assert lab.graph is not None
    return [
        e
        for e in lab.graph.exchanges
        if e.client == "ccaas" and e.path == READ_PATH and e.time >= since
    ]


def microsoft_invites(lab: Lab, to: str) -> list[Any]:
    """Microsoft's records of the SBC's INVITEs to ``to``'s number."""
    return [r for r in lab.service.records if r.direction == "inbound" and r.number == number(to)]


# ==============================================================================================
# topology
# ==============================================================================================
def test_default_topology_routes_each_entry_number_to_its_customer_and_queue() -> None:
    cc = TOPOLOGY.contact_center
    assert cc is not None
    routes = {
        n: (c.tenant, q.id) for n in (IVR_A, IVR_TECH, IVR_B) if (r := cc.route(n)) for c, q in [r]
    }
    assert routes == {
        IVR_A: ("tenant-a", "billing"),
        IVR_TECH: ("tenant-a", "technical"),
        IVR_B: ("tenant-b", "general"),
    }
    assert cc.route("+14255550101") is None
    assert cc.skills_of(BRUNO) == ("billing", "technical")
    assert cc.skills_of(CHLOE) == ()
    assert [c.tenant for c in cc.customer_list()] == ["tenant-a", "tenant-b"]
    assert cc.customer("tenant-b") is cc.customers[0]
    assert (cc.emulated, cc.graph_address, cc.graph_port) == (True, "127.0.1.10", 8080)


def _errors(replace: str, by: str) -> str:
    text = default_topology_text()
    assert replace in text
    with pytest.raises(ConfigError) as info:
        load_model_text(text.replace(replace, by, 1), Topology, "t.yaml")
    return str(info.value)


def test_an_entry_number_inside_a_tenant_range_is_refused() -> None:
    message = _errors('ivr_number: "+18005550110"', 'ivr_number: "+14255550190"')
    assert (
        "contact_center.ivr_number: IVR entry number '+14255550190' is inside the number ranges "
        "of tenant 'tenant-a': the SBC would send it to Microsoft, not to the contact center"
    ) in message


def test_entry_numbers_are_unique_across_the_lab() -> None:
    message = _errors('ivr_number: "+18005550120"', 'ivr_number: "+18005550111"')
    assert (
        "contact_center.customers[0].ivr_number: number '+18005550111' is already used" in message
    )


def test_customer_tenants_must_exist_and_differ() -> None:
    assert "contact_center.customers[0].tenant: no tenant 'tenant-z'" in _errors(
        "    - tenant: tenant-b\n", "    - tenant: tenant-z\n"
    )
    assert "contact_center.customers[0].tenant: customer tenant 'tenant-a' is already used" in (
        _errors(
            "    - tenant: tenant-b\n      ivr_number", "    - tenant: tenant-a\n      ivr_number"
        )
    )


def test_skills_belong_to_agents_and_queue_ids_are_unique() -> None:
    message = _errors(
        "    alice.archer@contoso.example: [billing]",
        "    chloe.chen@contoso.example: [billing]",
    )
    assert "'chloe.chen@contoso.example' has skills but is not an agent of tenant 'tenant-a'" in (
        message
    )
    message = _errors("{id: technical,", "{id: billing,")
    assert "contact_center.queues[1].id: queue id 'billing' is already used" in message


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="ivr_seconds must be positive"):
        CcaasSettings(ivr_seconds=0)
    with pytest.raises(ConfigError, match="cannot exceed one hour"):
        CcaasSettings(subscription_lifetime=3601)
    with pytest.raises(ConfigError, match="unknown contact-center setting"):
        CcaasSettings.from_overrides({"ivr": 1})


# ==============================================================================================
# the Graph API in process
# ==============================================================================================
def _graph(clock: VirtualClock | None = None) -> Any:
    presence = PresenceService()
    add_presence_users(presence, TOPOLOGY)
    return build_lab_graph(
        TOPOLOGY, presence, clock=clock or VirtualClock(), schedule=None, rng=random.Random(5)
    )


def _sign_in(graph: Any, upn: str, password: str = "sbcsim-lab-password") -> GraphExchange:
    cc = TOPOLOGY.contact_center
    assert cc is not None
    tenant = TOPOLOGY.tenant_of_user(upn)
    assert tenant is not None
    return graph.request(  # type: ignore[no-any-return]
        "POST",
        f"/{tenant_guid(tenant)}/oauth2/v2.0/token",
        client="test",
        form={
            "grant_type": "password",
            "client_id": str(cc.app.client_id),
            "client_secret": cc.app.client_secret,
            "username": upn,
            "password": password,
            "scope": "https://graph.microsoft.com/Presence.Read.All",
        },
    )


def test_exchanges_record_status_bodies_and_the_tokens_tenant() -> None:
    graph = _graph()
    try:
        issued = _sign_in(graph, CHLOE)
        assert (issued.index, issued.status, issued.client) == (0, 200, "test")
        assert (issued.token_tenant, issued.token_user) == (TENANT_A, CHLOE)
        assert issued.request_data()["grant_type"] == "password"
        token = json_path(issued.json(), "access_token")
        read = graph.request(
            "POST", READ_PATH, client="test", bearer=token, json_body={"ids": [gid(DMITRI)]}
        )
        assert read.status == 200
        assert read.request_data() == {"ids": [gid(DMITRI)]}
        assert json_path(read.json(), "value.0.availability") == "Busy"
        assert read.header("content-type") == "application/json; charset=utf-8"
        assert (read.token_tenant, read.token_user) == (TENANT_A, CHLOE)
        assert read.summary == f"t=0s test POST {READ_PATH} as {CHLOE} -> 200"
        missing = graph.request("GET", "/v1.0/nowhere", client="test")
        assert missing.status == 404
        assert json_path(missing.json(), "error.code") == "NotFound"
        assert [e.index for e in graph.exchanges] == [0, 1, 2]
    finally:
        graph.close()


def test_a_wrong_password_is_refused() -> None:
    graph = _graph()
    try:
        refused = _sign_in(graph, CHLOE, password="nope")
        assert refused.status == 400
        assert refused.token_tenant is None
        assert json_path(refused.json(), "error") == "invalid_grant"
    finally:
        graph.close()


def test_every_customer_tenant_has_the_app_and_an_account_per_user() -> None:
    authority = lab_token_authority(TOPOLOGY)
    assert set(authority.tenants()) == {TENANT_A, TENANT_B}
    cc = TOPOLOGY.contact_center
    assert cc is not None
    for tenant in (TENANT_A, TENANT_B):
        response = authority.token_request(
            tenant,
            {
                "grant_type": "client_credentials",
                "client_id": str(cc.app.client_id),
                "client_secret": cc.app.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            },
            0.0,
        )
        claims = authority.verify(response.access_token, 1.0)
        assert (claims.tenant_id, claims.roles) == (tenant, frozenset({"Presence.Read.All"}))
    assert AGENT_SCOPES == ("Presence.Read", "Presence.Read.All", "User.Read")


def test_unknown_api_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown presence API setting"):
        build_lab_graph(
            TOPOLOGY,
            PresenceService(),
            clock=VirtualClock(),
            schedule=None,
            rng=random.Random(1),
            settings={"rate": 1},
        )


def test_a_request_from_inside_a_webhook_is_refused() -> None:
    graph = _graph()
    try:
        token = json_path(_sign_in(graph, ALICE).json(), "access_token")

        def reentrant(url: str, body: bytes, content_type: str) -> WebhookResponse:
            graph.request("GET", "/v1.0/me/presence", client="test", bearer=token)
            return WebhookResponse(200, b"", "text/plain")

        graph.register_webhook("http://hook.example/", reentrant)
        with pytest.raises(RuntimeError, match="while another one was in progress"):
            graph.request(
                "POST",
                "/v1.0/subscriptions",
                client="test",
                bearer=token,
                json_body={
                    "changeType": "updated",
                    "notificationUrl": "http://hook.example/x",
                    "resource": f"communications/presences/{gid(CHLOE)}",
                    "expirationDateTime": "2025-01-01T00:30:00Z",
                },
            )
        # the guard is released: the next request goes through
        assert graph.request("GET", "/v1.0/me/presence", client="test", bearer=token).status == 200
    finally:
        graph.close()


async def test_requests_from_inside_a_running_loop_use_a_helper_thread() -> None:
    graph = _graph()
    try:
        assert _sign_in(graph, ALICE).status == 200
    finally:
        graph.close()


def test_notifications_go_out_on_the_lab_clock(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.run_for(5)
    set_presence(lab, CHLOE, "Away")  # at t=5: delivered notification_delay (1 s) later
    assert lab.graph is not None
    lab.run_for(0.999)
    assert [e for e in lab.graph.exchanges if e.client == "graph" and e.time >= 5] == []
    lab.run_for(0.002)
    delivered = [e for e in lab.graph.exchanges if e.client == "graph" and e.time >= 5]
    assert [(e.time, e.path, e.status) for e in delivered] == [
        (6.0, "/ccaas/notifications/tenant-a", 202)
    ]
    item = json_path(delivered[0].request_data(), "value.0")
    assert item["resource"] == f"communications/presences/{gid(CHLOE)}"
    assert item["tenantId"] == TENANT_A
    cc = platform(lab)
    assert [(e.time, e.kind) for e in cc.events if e.kind == "presence_notification"] == [
        (6.0, "presence_notification")
    ]


def test_a_webhook_nobody_serves_fails_the_delivery() -> None:
    clock = VirtualClock()
    graph = _graph(clock)
    try:
        token = json_path(_sign_in(graph, ALICE).json(), "access_token")
        graph.register_webhook("http://hook.example/", lambda u, b, c: _echo(u))
        created = graph.request(
            "POST",
            "/v1.0/subscriptions",
            client="test",
            bearer=token,
            json_body={
                "changeType": "updated",
                "notificationUrl": "http://hook.example/x",
                "resource": f"communications/presences/{gid(CHLOE)}",
                "expirationDateTime": "2025-01-01T00:30:00Z",
            },
        )
        assert created.status == 201
        graph._webhooks.clear()  # the subscriber went away
        graph.presence.set_client_presence(gid(CHLOE), 0.0, "Away", "Away")
        graph.deliver_pending()
        (delivery,) = graph.api.deliveries
        assert delivery.status is None
        assert delivery.error is not None and delivery.error.startswith(
            "OSError: connection refused"
        )
    finally:
        graph.close()


def _echo(url: str) -> WebhookResponse:
    token = dict(parse_qsl(urlsplit(url).query)).get("validationToken", "")
    return WebhookResponse(200, token.encode(), "text/plain")


async def test_the_presence_api_is_served_live_for_a_partners_platform() -> None:
    presence = PresenceService()
    add_presence_users(presence, TOPOLOGY)
    runner, base = await start_presence_api(
        TOPOLOGY, presence, clock=VirtualClock(), host="127.0.0.1", port=0, seed=3
    )
    cc = TOPOLOGY.contact_center
    assert cc is not None
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            form = {
                "grant_type": "password",
                "client_id": str(cc.app.client_id),
                "client_secret": cc.app.client_secret,
                "username": ALICE,
                "password": cc.agent_password,
                "scope": "https://graph.microsoft.com/Presence.Read.All",
            }
            async with http.post(f"{base}/{TENANT_A}/oauth2/v2.0/token", data=form) as r:
                assert r.status == 200
                token = (await r.json())["access_token"]
            async with http.post(
                f"{base}/v1.0/communications/getPresencesByUserId",
                json={"ids": [gid(CHLOE), gid(ELENA)]},
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 200
                body = await r.json()
        assert [(v["id"], v["availability"]) for v in body["value"]] == [
            (gid(CHLOE), "Available"),
            (gid(ELENA), "DoNotDisturb"),
        ]
    finally:
        await asyncio.wait_for(runner.cleanup(), 5)


# ==============================================================================================
# the platform: sign-in, IVR, queues, the SBC's routing
# ==============================================================================================
def test_agents_sign_in_and_subscribe_one_second_after_start(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.run_for(2)
    cc = platform(lab)
    assert [(e.time, e.kind, e.detail.split()[0]) for e in cc.events] == [
        (1.0, "agent_signed_in", ALICE),
        (1.0, "subscribed", "tenant-a"),
        (1.0, "agent_signed_in", BRUNO),
        (1.0, "agent_signed_in", JULIA),
        (1.0, "subscribed", "tenant-b"),
    ]
    assert lab.graph is not None
    subscriptions = [
        e for e in lab.graph.exchanges if e.path == "/v1.0/subscriptions" and e.status == 201
    ]
    assert [e.token_user for e in subscriptions] == [ALICE, JULIA]
    body = subscriptions[1].request_data()
    assert body["resource"] == (
        f"/communications/presences?$filter=id in ('{gid(KENJI)}', '{gid(LENA)}')"
    )
    assert body["expirationDateTime"] == "2025-01-01T00:59:01.0000000Z"  # t=1 s + 3540 s
    assert body["notificationUrl"] == "http://127.0.3.1:8080/ccaas/notifications/tenant-b"


def test_the_ivr_answers_then_queues_then_rings_an_agent_on_the_tenant_trunk(
    labs: list[Lab],
) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab)
    assert (call.customer.tenant, call.queue.id, call.agent) == ("tenant-a", "billing", ALICE)
    assert [(round(t - call.started_at, 3), what.split()[0]) for t, what in call.history] == [
        (0.0, "ivr_answered"),
        (3.0, "queued"),
        (3.0, "agent_offered"),
        (5.004, "agent_connected"),
    ]
    (record,) = microsoft_invites(lab, ALICE)
    assert (record.tenant, record.contact_fqdn, record.final_status) == (
        "tenant-a",
        "tenant-a.customers.example.com",
        200,
    )
    assert record.request is not None
    assert (
        str(record.request.from_.uri) == f"sip:{CUSTOMER}@tenant-a.customers.example.com;user=phone"
    )
    assert call.parties == (CUSTOMER, number(ALICE))
    assert lab.sbc.active_calls == 2  # the carrier <-> platform hop, the agent's bridge


def test_a_queue_with_skills_rings_only_agents_who_have_them(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab, entry=IVR_TECH)
    assert (call.queue.id, call.agent) == ("technical", BRUNO)  # alice has no 'technical'


def test_a_call_waits_until_an_agent_signs_in(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.run_for(5)
    cc = platform(lab)
    cc.sign_out(ALICE)
    cc.sign_out(BRUNO)
    lab.phone(CUSTOMER).call(IVR_A)
    lab.run_for(20)
    call = cc.latest_call_of(CUSTOMER)
    assert call is not None and call.state == "queued"
    assert cc.sign_in(BRUNO)
    lab.run_for(5)
    assert (call.state, call.agent) == ("with-agent", BRUNO)


def test_an_agent_who_declines_is_skipped_for_the_next(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.teams_user(ALICE).set_behaviour("decline", 1.0)
    call = with_agent(lab)
    assert call.agent == BRUNO
    assert call.tried_agents == [ALICE, BRUNO]


def test_tenant_b_calls_go_to_tenant_b_on_its_own_trunk(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab, CUSTOMER_B, IVR_B)
    assert (call.customer.tenant, call.agent) == ("tenant-b", JULIA)
    (record,) = microsoft_invites(lab, JULIA)
    assert (record.tenant, record.contact_fqdn) == ("tenant-b", "tenant-b.customers.example.com")


def test_the_caller_hanging_up_ends_every_leg(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab)
    lab.phone(CUSTOMER).hang_up()
    lab.run_for(2)
    assert call.state == "ended"
    assert lab.sbc.active_calls == 0
    assert lab.teams_user(ALICE).calls == []


def test_the_carriers_re_invite_crosses_the_hop(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    with_agent(lab)
    phone = lab.phone(CUSTOMER)
    start = len(lab.trace())
    phone.hold()
    lab.run_for(1)
    seen = []
    for entry in lab.trace()[start:]:
        msg = parse_entry(entry)
        what = msg.method if isinstance(msg, Request) else f"{msg.status} {msg.cseq.method}"
        seen.append((entry.src_name, entry.dst_name, what))
    # the carrier's hold goes through to the platform, whose answer comes back
    assert seen == [
        ("pstn", "sbc", "INVITE"),
        ("sbc", "ccaas", "INVITE"),
        ("ccaas", "sbc", "200 INVITE"),
        ("sbc", "ccaas", "ACK"),
        ("sbc", "pstn", "200 INVITE"),
        ("pstn", "sbc", "ACK"),
    ]
    cc = platform(lab)
    call = cc.latest_call_of(CUSTOMER)
    assert call is not None and call.customer_leg is not None
    assert b"a=sendonly" in (cc.ua.remote_sdp(call.customer_leg.ref) or b"")
    assert phone.current().state == "connected"


def test_without_a_platform_the_entry_number_times_out(labs: list[Lab]) -> None:
    lab = Lab.build(TOPOLOGY, sbc_factory=ReferenceSbc.factory())
    labs.append(lab)
    lab.run_for(5)
    pstn_call = lab.phone(CUSTOMER).call(IVR_A)
    lab.run_for(40)
    assert (pstn_call.state, pstn_call.final_status) == ("failed", 408)


def test_the_sbc_routes_a_platform_call_by_number_when_the_host_names_no_tenant(
    labs: list[Lab],
) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.run_for(5)
    cc = platform(lab)
    for host, target in (("127.0.0.2", number(ALICE)), ("nowhere.example", "+19995550100")):
        cc.ua.invite(
            f"sip:{target}@{host};user=phone",
            from_=f"<sip:{CUSTOMER}@127.0.3.1;user=phone>",
            to=f"<sip:{target}@{host}>",
            remote=(TOPOLOGY.sbc.pstn_side.address, TOPOLOGY.sbc.pstn_side.port),
            transport="udp",
            sdp=b"v=0\r\no=x 1 1 IN IP4 127.0.3.1\r\ns=x\r\nc=IN IP4 127.0.3.1\r\nt=0 0\r\n"
            b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            now=lab.now(),
        )
        cc.node.poke()
    lab.run_for(5)
    (record,) = microsoft_invites(lab, ALICE)
    assert (record.tenant, record.contact_fqdn) == ("tenant-a", "tenant-a.customers.example.com")
    rejected = [e for e in lab.sbc.events if e.kind == "call_rejected"]
    assert [e.detail for e in rejected] == ["404 no tenant for +19995550100"]


def test_with_no_contact_center_the_lab_has_no_presence_api() -> None:
    topology = TOPOLOGY.model_copy(update={"contact_center": None})
    lab = Lab.build(topology)
    assert lab.graph is None
    lab.close()


# ==============================================================================================
# escalation: the reference, then each mutant at its switch
# ==============================================================================================
def test_escalation_reads_the_tenants_smes_with_the_agents_token(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab)
    t0 = lab.now()
    esc = platform(lab).escalate(ALICE)
    (read,) = reads(lab, t0)
    assert (read.time, read.status, read.token_tenant, read.token_user) == (
        t0,
        200,
        TENANT_A,
        ALICE,
    )
    assert read.request_data() == {"ids": [gid(u) for u in (CHLOE, DMITRI, ELENA, FARID, HANA)]}
    assert (esc.mode, esc.fallback, esc.sme, esc.tried) == ("blind", "queue", CHLOE, [CHLOE])
    lab.run_for(5)
    assert (call.state, esc.state, call.parties) == (
        "with-sme",
        "completed",
        (CUSTOMER, number(CHLOE)),
    )


def _escalate_with_chloe_away(mutant: str | None, labs: list[Lab]) -> tuple[Lab, CustomerCall]:
    lab = make_lab(mutant)
    labs.append(lab)
    lab.run_for(5)
    set_presence(lab, CHLOE, "Away")
    call = with_agent(lab)
    platform(lab).escalate(ALICE, "conference")  # the choice is made at once
    return lab, call


@pytest.mark.parametrize(
    ("mutant", "sme", "reads_made"),
    [
        (None, HANA, 1),  # Busy, DoNotDisturb and Away skipped; AvailableIdle taken
        ("ignores-presence", CHLOE, 0),  # the first of the list, no read at all
        ("escalates-to-dnd", ELENA, 1),
        ("escalates-to-busy", DMITRI, 1),
        ("skips-available-idle", None, 1),  # nobody free: waiting
    ],
)
def test_which_sme_rings(
    mutant: str | None, sme: str | None, reads_made: int, labs: list[Lab]
) -> None:
    lab, call = _escalate_with_chloe_away(mutant, labs)
    esc = call.escalation
    assert esc is not None
    assert esc.tried[:1] == ([sme] if sme is not None else [])  # the first SME rung
    if sme is None:
        assert esc.state == "waiting"
    assert len(reads(lab, 5)) == reads_made


@pytest.mark.parametrize(
    ("mutant", "tenant", "status", "ids"),
    [
        (None, TENANT_A, 200, 5),
        ("other-tenant-token", TENANT_B, 403, 5),
        ("other-tenant-smes", TENANT_A, 403, 7),
    ],
)
def test_the_presence_read_stays_in_the_callers_tenant(
    mutant: str | None, tenant: str, status: int, ids: int, labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    call = with_agent(lab)
    t0 = lab.now()
    platform(lab).escalate(ALICE, "conference")
    read = reads(lab, t0)[0]
    assert (read.token_tenant, read.status, len(read.request_data()["ids"])) == (
        tenant,
        status,
        ids,
    )
    assert call.escalation is not None
    assert call.escalation.state == ("ringing" if status == 200 else "waiting")


@pytest.mark.parametrize(
    ("mutant", "grant", "reader"),
    [(None, "password", ALICE), ("no-agent-sign-in", "client_credentials", None)],
)
def test_agents_sign_in_with_their_own_account(
    mutant: str | None, grant: str, reader: str | None, labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    with_agent(lab)
    assert lab.graph is not None
    first = lab.graph.exchanges[0]
    assert first.path == f"/{TENANT_A}/oauth2/v2.0/token"
    assert first.request_data()["grant_type"] == grant
    t0 = lab.now()
    platform(lab).escalate(ALICE)
    assert reads(lab, t0)[0].token_user == reader


@pytest.mark.parametrize(
    ("mutant", "host", "tenant", "status"),
    [
        (None, "tenant-a.customers.example.com", "tenant-a", 200),
        ("wrong-tenant-contact", "tenant-b.customers.example.com", "tenant-b", 404),
    ],
)
def test_the_platform_names_the_customers_trunk(
    mutant: str | None, host: str, tenant: str, status: int, labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    lab.run_for(5)
    lab.phone(CUSTOMER).call(IVR_A)
    lab.run_for(8)
    record = microsoft_invites(lab, ALICE)[0]
    assert (record.contact_fqdn, record.tenant, record.final_status) == (host, tenant, status)


def _nobody_free(mutant: str | None, labs: list[Lab], fallback: str) -> tuple[Lab, CustomerCall]:
    lab = make_lab(mutant)
    labs.append(lab)
    lab.run_for(5)
    set_presence(lab, CHLOE, "Away")
    set_presence(lab, HANA, "Away")
    call = with_agent(lab)
    platform(lab).escalate(ALICE, "conference", fallback)  # type: ignore[arg-type]
    lab.run_for(2)
    return lab, call


@pytest.mark.parametrize(
    ("mutant", "fallback", "state", "escalation", "parties"),
    [
        (None, "queue", "with-agent", "waiting", (CUSTOMER, "+14255550101")),
        (None, "voicemail", "voicemail", "voicemail", (CUSTOMER,)),
        ("no-fallback", "queue", "ended", "dropped", ()),
        ("no-fallback", "voicemail", "ended", "dropped", ()),
    ],
)
def test_nobody_free_falls_back(
    mutant: str | None,
    fallback: str,
    state: str,
    escalation: str,
    parties: tuple[str, ...],
    labs: list[Lab],
) -> None:
    _, call = _nobody_free(mutant, labs, fallback)
    assert call.escalation is not None
    assert (call.state, call.escalation.state, call.parties) == (state, escalation, parties)


def test_a_waiting_escalation_goes_to_voicemail_after_the_wait(labs: list[Lab]) -> None:
    lab, call = _nobody_free(None, labs, "queue")
    requested = call.escalation.requested_at if call.escalation else 0.0
    lab.run_until(lambda: call.state == "voicemail", 200)
    assert lab.now() == requested + 120
    lab.run_for(61)
    assert call.state == "ended"  # the longest message is 60 s


@pytest.mark.parametrize(("mutant", "rings"), [(None, True), ("ignores-notifications", False)])
def test_a_notification_wakes_a_waiting_escalation(
    mutant: str | None, rings: bool, labs: list[Lab]
) -> None:
    lab, call = _nobody_free(mutant, labs, "queue")
    t0 = lab.now()
    set_presence(lab, HANA, "Available")
    lab.run_for(1.5)
    assert call.escalation is not None
    assert call.escalation.sme == (HANA if rings else None)
    assert [r.time for r in reads(lab, t0)] == ([t0 + 1] if rings else [])


@pytest.mark.parametrize(
    ("mutant", "subscribed"), [(None, True), ("bad-webhook-validation", False)]
)
def test_the_subscription_needs_the_validation_echo(
    mutant: str | None, subscribed: bool, labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    lab.run_for(2)
    assert lab.graph is not None
    created = [e.status for e in lab.graph.exchanges if e.path == "/v1.0/subscriptions"]
    assert created == ([201, 201] if subscribed else [400, 400, 400])
    cc = platform(lab)
    assert (cc.customers["tenant-a"].subscription is not None) == subscribed


@pytest.mark.parametrize(("mutant", "gaps"), [(None, [30.0]), ("ignores-retry-after", [1.0] * 5)])
def test_a_throttled_read_waits_retry_after(
    mutant: str | None, gaps: list[float], labs: list[Lab]
) -> None:
    lab = make_lab(mutant, api={"rate_limit_requests": 1, "rate_limit_window": 30})
    labs.append(lab)
    call = with_agent(lab)
    t0 = lab.now()
    cc = platform(lab)
    agent = cc.agents[ALICE]
    assert lab.graph is not None
    burn = lab.graph.request(
        "POST", READ_PATH, client="test", bearer=agent.token, json_body={"ids": [gid(CHLOE)]}
    )
    assert burn.status == 200
    cc.escalate(ALICE, "conference")
    lab.run_for(40)
    made = reads(lab, t0)
    assert made[0].status == 429 and made[0].header("Retry-After") == "30"
    assert [b.time - a.time for a, b in itertools.pairwise(made)] == gaps
    assert call.escalation is not None
    if mutant is None:
        assert [r.status for r in made] == [429, 200]
        assert call.escalation.sme == CHLOE
    else:
        assert [r.status for r in made] == [429] * 6
        assert call.escalation.state == "waiting"  # throttled out after 5 retries


@pytest.mark.parametrize(("mutant", "released_after"), [(None, 0.0), ("blind-keeps-agent", 3.004)])
def test_a_blind_transfer_releases_the_agent_at_once(
    mutant: str | None, released_after: float, labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    call = with_agent(lab)
    t0 = lab.now()
    platform(lab).escalate(ALICE, "blind")
    lab.run_for(6)
    released = [t for t, what in call.history if what.startswith("agent_released")]
    assert [round(t - t0, 3) for t in released] == [released_after]
    assert call.parties == (CUSTOMER, number(CHLOE))


@pytest.mark.parametrize(
    ("mutant", "state", "parties"),
    [
        (None, "consulting", (CUSTOMER, "+14255550101", "+14255550103")),
        ("consult-skips-consultation", "completed", (CUSTOMER, "+14255550103")),
    ],
)
def test_a_consult_transfer_waits_for_the_agent(
    mutant: str | None, state: str, parties: tuple[str, ...], labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    call = with_agent(lab)
    cc = platform(lab)
    cc.escalate(ALICE, "consult")
    assert call.held
    lab.run_for(6)
    assert call.escalation is not None
    assert (call.escalation.state, call.parties) == (state, parties)
    if mutant is None:
        cc.complete_transfer(ALICE)
        lab.run_for(1)
        assert (call.escalation.state, call.held, call.parties) == (
            "completed",
            False,
            (CUSTOMER, number(CHLOE)),
        )
    else:
        with pytest.raises(RuntimeError, match="no consultation to complete"):
            cc.complete_transfer(ALICE)


def test_an_agent_hanging_up_during_consultation_completes_the_transfer(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    call = with_agent(lab)
    platform(lab).escalate(ALICE, "consult")
    lab.run_for(6)
    lab.teams_user(ALICE).hang_up()
    lab.run_for(1)
    assert call.escalation is not None
    assert (call.state, call.escalation.state, call.parties) == (
        "with-sme",
        "completed",
        (CUSTOMER, number(CHLOE)),
    )


@pytest.mark.parametrize(
    ("mutant", "state", "parties"),
    [(None, "with-sme", (CUSTOMER, "+14255550103")), ("conference-ends-with-agent", "ended", ())],
)
def test_the_group_call_outlives_the_agent(
    mutant: str | None, state: str, parties: tuple[str, ...], labs: list[Lab]
) -> None:
    lab = make_lab(mutant)
    labs.append(lab)
    call = with_agent(lab)
    platform(lab).escalate(ALICE, "conference")
    lab.run_for(6)
    assert call.escalation is not None
    assert (call.escalation.state, call.parties) == (
        "conference",
        (CUSTOMER, number(ALICE), number(CHLOE)),
    )
    assert lab.presence.presence(gid(CHLOE), lab.now()).availability == "Busy"
    lab.teams_user(ALICE).hang_up()
    lab.run_for(1)
    assert (call.state, call.parties) == (state, parties)


def test_an_sme_who_fails_is_followed_by_the_next_free_one(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.teams_user(CHLOE).set_behaviour("decline", 1.0)
    call = with_agent(lab)
    platform(lab).escalate(ALICE, "conference")
    lab.run_for(8)
    assert call.escalation is not None
    assert (call.escalation.tried, call.escalation.sme, call.escalation.state) == (
        [CHLOE, HANA],
        HANA,
        "conference",
    )


def test_escalating_twice_or_without_a_caller_is_refused(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    lab.run_for(5)
    cc = platform(lab)
    with pytest.raises(LookupError, match="is in no contact-center call"):
        cc.escalate(ALICE)
    with_agent(lab)
    cc.escalate(ALICE, "conference")
    with pytest.raises(RuntimeError, match="already being escalated"):
        cc.escalate(ALICE, "conference")


# ==============================================================================================
# the mutants registry and the judging helpers
# ==============================================================================================
def test_every_mutant_has_a_unique_name_a_rule_and_a_switch() -> None:
    assert len(CCAAS_MUTANTS) == 15
    assert not set(CCAAS_MUTANTS) & set(MUTANTS)  # one namespace for `--target mutant:NAME`
    source = inspect.getsource(ReferenceCcaas)
    for name, mutant in CCAAS_MUTANTS.items():
        assert mutant.rule and mutant.description
        assert f'self._faulty("{name}")' in source, name
    assert get_ccaas_mutant("no-fallback").name == "no-fallback"
    with pytest.raises(ConfigError, match="unknown contact-center mutant 'nope'"):
        get_ccaas_mutant("nope")
    assert family_mutants("ccaas") == {n: m.rule for n, m in CCAAS_MUTANTS.items()}
    assert family_mutants("sbc") == {n: m.rule for n, m in MUTANTS.items()}


def test_a_typo_in_a_switch_name_is_a_bug(labs: list[Lab]) -> None:
    lab = make_lab()
    labs.append(lab)
    with pytest.raises(KeyError):
        platform(lab)._faulty("no-such-fault")


def test_sbcsim_mutants_lists_both_families() -> None:
    console = Console(width=220, record=True)
    result = CliRunner().invoke(mutants_command, [], obj=console)
    assert result.exit_code == 0
    text = console.export_text()
    assert "Reference contact-center mutants" in text
    for mutant in CCAAS_MUTANTS.values():
        assert mutant.name in text
    assert ccaas_mutants_table().row_count == 15


def _exchange(index: int, time: float, status: int, **kw: Any) -> GraphExchange:
    base: dict[str, Any] = {
        "client": "ccaas",
        "method": "POST",
        "path": READ_PATH,
        "request_headers": (("Content-Type", "application/json"),),
        "request_body": json.dumps({"ids": ["a", "b"]}).encode(),
        "response_headers": (),
        "response_body": b'{"value": [{"id": "a", "availability": "Away"}]}',
        "token_tenant": "T",
    }
    base.update(kw)
    return GraphExchange(index=index, time=time, status=status, **base)


def test_json_helpers() -> None:
    value = {"value": [{"id": "a", "x": [1, 2]}]}
    assert json_path(value, "value.0.x.1") == 2
    assert json_path(value, "value.-1.id") == "a"
    assert json_path(value, "value.3.id") is None
    assert json_path(value, "") == value
    assert json_subset({"value": [{"id": "a"}]}, value)
    assert not json_subset({"value": [{"id": "a"}, {"id": "b"}]}, value)  # lengths must agree
    assert not json_subset({"value": [{"id": "b"}]}, value)
    assert not json_subset({"missing": None}, value)


def test_judge_exchanges_selects_then_judges() -> None:
    log = [
        _exchange(0, 1.0, 200),
        _exchange(1, 2.0, 429, response_headers=(("Retry-After", "30"),)),
        _exchange(2, 32.0, 200, name="mine"),
        _exchange(3, 33.0, 403, token_tenant="U"),
    ]
    ok, expected, seen = judge_exchanges(log, {"path": "^/v1", "status": 200, "token_tenant": "T"})
    assert ok and expected.startswith("an exchange with path='^/v1'")
    assert seen.startswith("2 of 4 pass")
    assert judge_exchanges(log, {"status": 200, "count": 2})[0]
    assert not judge_exchanges(log, {"status": 200, "count": 1})[0]
    assert not judge_exchanges(log, {"token_tenant": "T", "every": True})[0]
    assert judge_exchanges(log, {"since": 32.5, "status": 403})[0]
    assert judge_exchanges(log, {"after": "mine", "status": 403, "count": 1})[0]
    assert judge_exchanges(log, {"headers": {"Retry-After": "^30$"}})[0]
    assert judge_exchanges(
        log, {"body": {"ids": ["a", "b"]}, "response": {"value": [{"id": "a"}]}}
    )[0]
    assert judge_exchanges(log, {"client": "graph"}) == (
        False,
        "an exchange with client='graph'",
        "no exchange matched the request line",
    )
    missing = judge_exchanges(log, {"after": "nothing"})
    assert missing == (False, "an exchange named nothing", "no such exchange was made")
    with pytest.raises(ValueError, match="unknown field"):
        judge_exchanges(log, {"stauts": 200})


def test_judge_retry_after() -> None:
    throttled = _exchange(0, 10.0, 429, response_headers=(("Retry-After", "30"),))
    assert judge_retry_after([throttled, _exchange(1, 40.0, 200)], {"client": "ccaas"}) == (
        True,
        "each 429 retried no sooner than its Retry-After",
        "429 at t=10s (Retry-After 30), retried 30s later -> 200",
    )
    early = judge_retry_after([throttled, _exchange(1, 11.0, 429)], {})
    assert not early[0] and "retried 1s later -> 429" in early[2]
    assert judge_retry_after([throttled], {}) == (
        False,
        "each 429 retried no sooner than its Retry-After",
        "429 at t=10s (Retry-After 30) never retried",
    )
    assert judge_retry_after([_exchange(0, 1.0, 200)], {})[2] == "no request was answered 429"
