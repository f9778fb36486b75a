"""The reference SBC in the simulated world (``Lab``): the emulated Microsoft proxies, Teams
users and PSTN phones judge it, and catch its mutants."""

from __future__ import annotations

import pytest

from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.lab import Lab

CHICAGO = "+13125550101"
MOBILE = "+13125550102"
BRUNO = "+14255550102"  # answers after 1 s
TENANT_A = "tenant-a.customers.example.com"


def lab_with(mutant: str | None = None) -> Lab:
    lab = Lab.build(sbc_factory=ReferenceSbc.factory(mutant))
    lab.run_for(1.0)
    return lab


def connected_call(lab: Lab) -> object:
    call = lab.phone(CHICAGO).call(BRUNO)
    assert lab.run_until(lambda: call.state == "connected", 30.0)
    return call


def test_pstn_to_teams_and_back_with_no_rule_broken() -> None:
    lab = lab_with()
    call = lab.phone(CHICAGO).call(BRUNO)
    assert lab.run_until(lambda: call.state == "connected", 30.0)
    (record,) = lab.service.records
    assert (record.direction, record.proxy, record.tenant, record.tenant_matched_by) == (
        "inbound",
        "sip.pstnhub.microsoft.com",
        "tenant-a",
        "fqdn",
    )
    assert record.contact_fqdn == TENANT_A
    assert record.failed_rules == [] and record.refer_allowed is True
    # the ringback bot's early media and the ringing both reached the caller, once each
    assert [status for _, status, _ in call.responses] == [183, 180, 200]
    lab.phone(CHICAGO).hang_up()
    lab.run_for(2.0)
    assert record.end_reason == "remote-bye"
    # and the other way: a Teams user calls a PSTN phone
    lab.teams_user("alice.archer@contoso.example").place_call(MOBILE)
    phone = lab.phone(MOBILE)
    assert lab.run_until(lambda: bool(phone.calls) and phone.calls[-1].state == "connected", 30)
    outbound = lab.service.records[-1]
    assert outbound.direction == "outbound" and outbound.failed_rules == []
    assert lab.sbc.active_calls == 1


def test_options_keep_the_trunk_healthy_and_microsofts_pings_get_200() -> None:
    lab = lab_with()
    lab.run_for(240.0)
    health = lab.service.trunk_health(TENANT_A)
    assert health.healthy and not health.demoted and health.state == "Active"
    assert set(health.regions) == set(lab.proxies)
    inbound = [o for o in lab.service.options if o.direction == "inbound"]
    assert {(o.fqdn, o.status) for o in inbound} == {("sbc.customers.example.com", 200)}
    assert len(inbound) == 3 * 5  # every proxy, at 0, 60, 120, 180 and 240 s
    outbound = [o for o in lab.service.options if o.direction == "outbound"]
    assert outbound and {o.status for o in outbound} == {200}


def test_refer_to_a_teams_user_and_to_a_pstn_number_completes() -> None:
    lab = lab_with()
    call = connected_call(lab)
    first = lab.teams_user("bruno.baptiste@contoso.example").transfer_to(
        "alice.archer@contoso.example"
    )
    lab.run_for(10.0)
    assert (first.method, first.refer_status, first.referred_by_ok, first.outcome) == (
        "refer",
        202,
        True,
        "completed",
    )
    assert [status for _, status, _ in first.notifies] == [100, 180, 183, 200]
    assert call.state == "connected"  # type: ignore[attr-defined]
    # alice sends the caller on to a PSTN number: Microsoft hairpins it back through the SBC
    second = lab.teams_user("alice.archer@contoso.example").transfer_to(MOBILE)
    lab.run_for(10.0)
    assert second.outcome == "completed" and second.referred_by_ok is True
    assert lab.phone(MOBILE).calls[-1].state == "connected"
    assert call.state == "connected"  # type: ignore[attr-defined]
    assert all(record.failed_rules == [] for record in lab.service.records)


def test_a_busy_datacenter_sends_the_call_to_sip2() -> None:
    lab = lab_with()
    lab.proxy("sip.pstnhub.microsoft.com").busy_mode()
    call = connected_call(lab)
    assert [(r.proxy, r.final_status) for r in lab.service.records] == [
        ("sip.pstnhub.microsoft.com", 503),
        ("sip2.pstnhub.microsoft.com", 200),
    ]
    assert call is not None


@pytest.mark.parametrize(
    ("mutant", "status", "rule"),
    [
        ("contact-ip", 403, "ip-in-contact"),
        ("contact-wrong-tenant", 404, "unknown-number"),
        ("contact-carrier-fqdn", 403, "no-trunk-config"),
        ("plain-rtp-to-teams", 488, "srtp-required"),
        ("delayed-offer", 415, "no-sdp"),
    ],
)
def test_microsoft_refuses_the_inbound_call_of_a_mutant(
    mutant: str, status: int, rule: str
) -> None:
    lab = lab_with(mutant)
    call = lab.phone(CHICAGO).call(BRUNO)
    lab.run_until(lambda: call.state not in ("calling", "ringing"), 60.0)
    assert (call.state, call.final_status) == ("failed", status)
    assert [(r.final_status, r.failed_rules) for r in lab.service.records] == [(status, [rule])]


def test_microsoft_refuses_the_certificate_without_the_tenant_fqdn() -> None:
    lab = lab_with("tls-wrong-cert")
    call = lab.phone(CHICAGO).call(BRUNO)
    lab.run_until(lambda: call.state not in ("calling", "ringing"), 60.0)
    assert call.state == "failed"
    assert {tuple(r.failed_rules) for r in lab.service.records} == {("certificate-mismatch",)}


@pytest.mark.parametrize(
    ("mutant", "expected"),
    [
        ("no-refer-in-allow", ("internal", None, None, "completed")),
        ("refer-rejected", ("refer", 603, None, "failed")),
        ("referred-by-altered", ("refer", 202, False, "failed")),
        ("referred-by-dropped", ("refer", 202, False, "failed")),
        ("no-sipfrag-notify", ("refer", 202, True, "failed")),
    ],
)
def test_microsoft_sees_the_transfer_mutants(mutant: str, expected: tuple[object, ...]) -> None:
    lab = lab_with(mutant)
    connected_call(lab)
    record = lab.teams_user("bruno.baptiste@contoso.example").transfer_to(
        "alice.archer@contoso.example"
    )
    lab.run_for(40.0)
    assert (record.method, record.refer_status, record.referred_by_ok, record.outcome) == expected


@pytest.mark.parametrize(
    ("mutant", "healthy"), [(None, True), ("no-options", False), ("options-contact-ip", False)]
)
def test_trunk_health_needs_options_from_the_carrier_fqdn(
    mutant: str | None, healthy: bool
) -> None:
    lab = lab_with(mutant)
    lab.run_for(200.0)
    assert lab.service.trunk_health(TENANT_A).healthy is healthy
