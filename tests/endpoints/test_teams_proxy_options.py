"""OPTIONS, mutual TLS and trunk health on the emulated proxies (direct-routing-sip.md Part 1,
2.2, 7.3), one test per rule, against a raw-UA SBC on the memory network."""

from __future__ import annotations

from collections.abc import Callable

from rawsbc import CARRIER, PROXY1, SIP1, TENANT_A, RawSbc

from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab
from sbcsim.sip.parser import parse_message


def _responses_from_proxy(lab: Lab, status: int) -> list[bytes]:
    return [
        t.data
        for t in lab.trace()
        if t.src_name == SIP1 and t.data.startswith(f"SIP/2.0 {status} ".encode())
    ]


def test_options_with_ip_in_contact_gets_403(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.options("<sip:127.0.0.2:5061;transport=tls>")
    lab.run_for(1)
    done = raw_sbc.completed(ref)
    assert done is not None and done.status == 403
    assert lab.service.options[0].failed_rule == "ip-in-contact"


def test_options_200_has_uppercase_headers_and_allow(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.options()
    lab.run_for(1)
    done = raw_sbc.completed(ref)
    assert done is not None and done.status == 200
    wire = _responses_from_proxy(lab, 200)[0]
    head = wire.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    names = [line.split(b":")[0] for line in head]
    assert all(name == name.upper() for name in names)
    assert b"ALLOW: INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY" in head
    assert b"SERVER: Microsoft.PSTNHub.SIPProxy v.2024.11.4.2 i.USWE2.1" in head
    # Part 1.2 [OBS]: no To-tag on the OPTIONS 200
    assert parse_message(wire).to.tag is None


def test_options_200_goes_back_on_the_same_connection(lab: Lab, raw_sbc: RawSbc) -> None:
    raw_sbc.options()
    lab.run_for(1)
    trace = lab.trace()
    request = next(t for t in trace if t.summary.startswith("OPTIONS") and t.src_name == "sbc")
    answer = next(t for t in trace if t.summary.startswith("SIP/2.0 200") and t.src_name == SIP1)
    assert answer.connection_id == request.connection_id


def test_options_from_unknown_fqdn_gets_403(lab: Lab, make_sbc: Callable[..., RawSbc]) -> None:
    sbc = make_sbc(lab, names=("*.elsewhere.example.net",))
    ref = sbc.options("<sip:sbc.elsewhere.example.net:5061;transport=tls>")
    lab.run_for(1)
    done = sbc.completed(ref)
    assert done is not None and done.status == 403
    assert lab.service.options[0].failed_rule == "unknown-fqdn"


def test_options_from_unknown_fqdn_dropped_when_set(make_sbc: Callable[..., RawSbc]) -> None:
    lab = Lab.build(settings=MicrosoftSettings(send_options=False, unknown_fqdn_options="drop"))
    sbc = make_sbc(lab, names=("*.elsewhere.example.net",))
    ref = sbc.options("<sip:sbc.elsewhere.example.net:5061;transport=tls>")
    lab.run_for(40)
    done = sbc.completed(ref)
    assert done is not None and done.status == 408  # Timer F: nothing came back
    assert lab.service.options[0].status is None


def test_proxy_sends_options_back_on_a_new_connection(raw_sbc: RawSbc) -> None:
    lab = raw_sbc.lab
    lab.service.settings = MicrosoftSettings()  # pings on
    raw_sbc.options()
    lab.run_for(1)
    trace = lab.trace()
    inbound = next(t for t in trace if t.summary.startswith("OPTIONS") and t.src_name == "sbc")
    back = next(t for t in trace if t.summary.startswith("OPTIONS") and t.src_name == SIP1)
    assert back.summary == f"OPTIONS sip:{CARRIER}:5061;transport=tls SIP/2.0"
    assert back.dst == ("127.0.0.2", 5061)
    assert back.connection_id != inbound.connection_id


def test_proxy_options_repeat_every_60_seconds(raw_sbc: RawSbc) -> None:
    lab = raw_sbc.lab
    lab.service.settings = MicrosoftSettings()
    raw_sbc.options()
    lab.run_for(130)
    sent = [
        round(t.time, 3)
        for t in lab.trace()
        if t.summary.startswith("OPTIONS") and t.src_name == SIP1
    ]
    # The first waits for its new connection's TLS handshake (two round trips); the next ones
    # leave exactly 60 s after the ping was started, 0.005 s after the SBC's OPTIONS arrived.
    assert sent == [0.009, 60.005, 120.005]


def test_options_next_hop_is_contact_not_record_route(raw_sbc: RawSbc) -> None:
    lab = raw_sbc.lab
    lab.service.settings = MicrosoftSettings()
    raw_sbc.options(headers=(("Record-Route", f"<sip:{TENANT_A}:5061;transport=tls;lr>"),))
    lab.run_for(1)
    back = next(t for t in lab.trace() if t.summary.startswith("OPTIONS") and t.src_name == SIP1)
    # Record-Route names the tenant trunk; the certificate check uses it (Part 1.1 [SUP]) ...
    assert lab.service.options[0].fqdn == TENANT_A
    # ... but the ping goes to the Contact by default (Part 1.1 [INF])
    assert back.summary.startswith(f"OPTIONS sip:{CARRIER}:5061")


def test_options_next_hop_record_route_first_when_set(raw_sbc: RawSbc) -> None:
    lab = raw_sbc.lab
    lab.service.settings = MicrosoftSettings(options_next_hop="record-route-first")
    raw_sbc.options(headers=(("Record-Route", f"<sip:{TENANT_A}:5061;transport=tls;lr>"),))
    lab.run_for(1)
    back = next(t for t in lab.trace() if t.summary.startswith("OPTIONS") and t.src_name == SIP1)
    assert back.summary.startswith(f"OPTIONS sip:{TENANT_A}:5061")


def test_certificate_not_matching_contact_closes_connection(
    lab: Lab, make_sbc: Callable[..., RawSbc]
) -> None:
    sbc = make_sbc(lab, names=("sbc.other.example.net",))
    ref = sbc.options()
    lab.run_for(1)
    proxy = lab.proxy(SIP1)
    assert [why for _, _, why in proxy.closed_connections] == ["certificate-mismatch"]
    assert _responses_from_proxy(lab, 200) == []
    done = sbc.completed(ref)
    assert done is not None and done.status == 503  # the SBC saw its connection closed


def test_wildcard_certificate_covers_one_label_only(lab: Lab, raw_sbc: RawSbc) -> None:
    raw_sbc.options("<sip:a.sbc.customers.example.com:5061;transport=tls>")
    lab.run_for(1)
    assert lab.service.options[0].failed_rule == "certificate-mismatch"


def test_proxy_requires_a_client_certificate(lab: Lab, make_sbc: Callable[..., RawSbc]) -> None:
    # The memory network refuses the handshake itself (require_client_cert=True).
    sbc = make_sbc(lab, names=())
    sbc.node.transport.identity = None  # type: ignore[union-attr]
    ref = sbc.options()
    lab.run_for(1)
    done = sbc.completed(ref)
    assert done is not None and done.status == 503
    assert lab.service.options == []


def test_trunk_health_healthy_within_3_minutes(lab: Lab, raw_sbc: RawSbc) -> None:
    assert lab.service.trunk_health(CARRIER).healthy is False
    raw_sbc.options()
    lab.run_for(1)
    seen = lab.service.options[0].time
    assert lab.service.trunk_health(CARRIER, seen + 180).healthy is True
    assert lab.service.trunk_health(CARRIER, seen + 180.5).healthy is False


def test_trunk_health_demoted_after_5_minutes(lab: Lab, raw_sbc: RawSbc) -> None:
    raw_sbc.options()
    lab.run_for(1)
    seen = lab.service.options[0].time
    health = lab.service.trunk_health(CARRIER, seen + 240)
    assert (health.healthy, health.demoted) == (False, False)
    assert lab.service.trunk_health(CARRIER, seen + 300).demoted is False
    assert lab.service.trunk_health(CARRIER, seen + 300.5).demoted is True


def test_trunk_never_pinged_is_demoted_after_5_minutes(lab: Lab) -> None:
    assert lab.service.trunk_health(CARRIER, 300).demoted is False
    assert lab.service.trunk_health(CARRIER, 301).demoted is True
    assert lab.service.trunk_health(CARRIER, 301).state == "Warning, no SIP options"


def test_derived_trunk_inherits_carrier_trunk_health(lab: Lab, raw_sbc: RawSbc) -> None:
    raw_sbc.options()
    lab.run_for(1)
    health = lab.service.trunk_health(TENANT_A)
    assert health.health_of == CARRIER
    assert health.healthy is True
    assert health.state == "Active"
    assert health.regions == (SIP1,)


def test_busy_mode_503_retry_after_1_for_options_when_forced(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.proxy(SIP1).force_response(503, retry_after=1, methods=("OPTIONS",))
    ref = raw_sbc.options()
    lab.run_for(1)
    done = raw_sbc.completed(ref)
    assert done is not None and done.status == 503
    assert done.response is not None and done.response.headers.get("Retry-After") == "1"


def test_silent_proxy_lets_options_time_out(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.proxy(SIP1).go_silent()
    ref = raw_sbc.options(remote=PROXY1)
    lab.run_for(40)
    done = raw_sbc.completed(ref)
    assert done is not None and done.status == 408
    lab.proxy(SIP1).recover()
    ref = raw_sbc.options()
    lab.run_for(1)
    again = raw_sbc.completed(ref)
    assert again is not None and again.status == 200
