"""The connectivity, call and media scenarios of the Direct Routing plan, judged for real.

Each scenario file under ``scenarios/direct-routing/`` is run on a fresh simulated lab, with the
seed the plan gives it: against the reference SBC every check passes, and against each mutant it
is written to catch exactly the listed checks fail (the others pass), so a check that stops
catching its fault — or starts failing for another reason — shows up here by name.  A few tests
pin what the lab recorded (exact virtual times, the certificate names the SBC presented, the
size of a message on the wire), and the ``send`` step's message builder is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest

from sbcsim.config import load_model
from sbcsim.scenario.engine import run_scenario
from sbcsim.scenario.labworld import LabWorld, raw_message
from sbcsim.scenario.models import Scenario
from sbcsim.testplan.plan import derive_seed
from sbcsim.testplan.results import ScenarioResult
from sbcsim.topology import Topology, load_topology

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "direct-routing"
PLAN_SEED = 1  # testplans/direct-routing-sbc.yaml

#: scenario -> mutant -> the checks that must fail against it (every other check passes).
KILLS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "tls-mutual-auth": {
        "tls-wrong-cert": frozenset(
            {
                "tls.bye-on-the-tls-dialog",
                "tls.call-answered",
                "tls.certificate-covers-contact",
                "tls.no-connection-closed-by-microsoft",
                "tls.proxy-accepts-the-connection",
                "tls.tenant-found-by-contact-fqdn",
            }
        ),
        "no-options": frozenset({"tls.microsoft-connects-to-the-sbc"}),
    },
    "options-keepalive": {
        "no-options": frozenset(
            {
                "options.carrier-trunk-healthy",
                "options.contact-is-carrier-fqdn",
                "options.derived-trunk-healthy",
                "options.from-carrier-fqdn",
                "options.microsoft-ping-on-its-own-connection",
                "options.microsoft-pings-contact-fqdn",
                "options.sbc-answers-microsoft-200",
                "options.second-cycle-answered",
                "options.second-cycle-sip",
                "options.second-cycle-sip2",
                "options.second-cycle-sip3",
                "options.sent-to-sip",
                "options.sent-to-sip2",
                "options.sent-to-sip3",
                "options.sip-answers-200",
                "options.sip-by-name",
                "options.sip2-answers-200",
                "options.sip2-by-name",
                "options.sip3-answers-200",
                "options.sip3-by-name",
                "options.x-ms-sbc",
            }
        ),
        "options-to-ip": frozenset(
            {
                "options.second-cycle-sip",
                "options.second-cycle-sip2",
                "options.second-cycle-sip3",
                "options.sip-by-name",
                "options.sip2-by-name",
                "options.sip3-by-name",
            }
        ),
        "options-contact-ip": frozenset(
            {
                "options.carrier-trunk-healthy",
                "options.contact-is-carrier-fqdn",
                "options.derived-trunk-healthy",
                "options.microsoft-ping-on-its-own-connection",
                "options.microsoft-pings-contact-fqdn",
                "options.sbc-answers-microsoft-200",
                "options.second-cycle-answered",
                "options.sip-answers-200",
                "options.sip2-answers-200",
                "options.sip3-answers-200",
            }
        ),
        "no-x-ms-sbc": frozenset({"options.x-ms-sbc"}),
    },
    "bye-from-teams": {
        "no-x-ms-sbc": frozenset({"bye-teams.bye-answered-by-sbc"}),
        "contact-ip": frozenset(
            {
                "bye-teams.answered-to-pstn",
                "bye-teams.bye-answered-by-sbc",
                "bye-teams.bye-from-microsoft",
                "bye-teams.bye-relayed-to-pstn",
                "bye-teams.bye-routed-to-tenant-contact",
                "bye-teams.no-call-left",
                "bye-teams.pstn-bye-answered",
            }
        ),
    },
    "bye-from-pstn": {
        "no-x-ms-sbc": frozenset({"bye-pstn.bye-relayed-to-microsoft"}),
    },
    "busy-486": {},
    "decline-603-no-retry": {
        "retry-after-603": frozenset(
            {"decline.603-relayed-to-pstn", "decline.no-call-left", "decline.no-retry"}
        ),
    },
    "cancel-while-ringing": {
        "no-x-ms-sbc": frozenset({"cancel.cancel-to-microsoft"}),
    },
    "forked-180s": {
        "no-ack": frozenset({"forked.ack-to-answering-fork"}),
    },
    "ringback-183": {
        "plain-rtp-to-teams": frozenset(
            {
                "ringback.183-from-microsoft",
                "ringback.183-relayed-with-sdp",
                "ringback.answer-to-pstn",
                "ringback.bye-to-microsoft",
            }
        ),
    },
    "unknown-number-404": {
        "contact-wrong-tenant": frozenset({"unknown-number.contact-is-tenant-a"}),
    },
    "two-tenants-contact-fqdn": {
        mutant: frozenset(
            {
                "tenants.tenant-a-answered",
                "tenants.tenant-a-bye-to-its-fqdn",
                "tenants.tenant-a-contact",
                "tenants.tenant-a-matched",
                "tenants.tenant-b-answered",
                "tenants.tenant-b-bye-to-its-fqdn",
                "tenants.tenant-b-contact",
                "tenants.tenant-b-matched",
            }
        )
        for mutant in ("contact-wrong-tenant", "contact-carrier-fqdn", "contact-ip")
    },
    "tenant-isolation": {
        "tls-wrong-cert": frozenset(
            {
                "isolation.control-cancelled",
                "isolation.control-matched-tenant-b",
                "isolation.microsoft-matched-tenant-a-only",
                "isolation.number-not-found-in-tenant-a",
                "isolation.tenant-b-contact-rings-the-user",
            }
        ),
    },
    "outbound-basic-call": {
        "contact-ip": frozenset(
            {
                "outbound.ack-from-microsoft",
                "outbound.answer-contact-is-tenant-fqdn",
                "outbound.bye-from-microsoft",
                "outbound.ringing-contact-is-tenant-fqdn",
            }
        ),
        "no-x-ms-sbc": frozenset(
            {"outbound.answer-x-ms-sbc", "outbound.ringing-contact-is-tenant-fqdn"}
        ),
        "plain-rtp-to-teams": frozenset({"outbound.answer-srtp"}),
        "no-rtcp-mux": frozenset({"outbound.answer-srtp"}),
    },
    "outbound-pai-privacy": {},
    "hold-resume-teams": {
        "no-rtcp-mux": frozenset(
            {"hold-teams.hold-answered-inactive", "hold-teams.resume-answered-sendrecv"}
        ),
    },
    "hold-resume-pstn": {
        "hold-sendonly": frozenset(
            {
                "hold-pstn.hold-answered-to-carrier",
                "hold-pstn.inactive-toward-microsoft",
                "hold-pstn.microsoft-accepts-hold",
            }
        ),
        "no-rtcp-mux": frozenset(
            {"hold-pstn.hold-offer-keeps-srtp", "hold-pstn.resume-toward-microsoft"}
        ),
    },
    "session-timer-30-minutes": {
        "no-ack": frozenset(
            {
                "session-timer.ack",
                "session-timer.bye-to-microsoft",
                "session-timer.call-survives-30-minutes",
                "session-timer.exactly-two-refreshes",
                "session-timer.first-refresh",
                "session-timer.microsoft-never-hung-up",
                "session-timer.second-refresh",
            }
        ),
    },
    "dtmf-telephone-event": {
        "delayed-offer": frozenset(
            {
                "dtmf.inbound-answer-from-microsoft",
                "dtmf.inbound-answer-to-pstn",
                "dtmf.inbound-ended",
                "dtmf.inbound-offer-to-microsoft",
                "dtmf.outbound-answer-to-microsoft",
                "dtmf.outbound-ended",
                "dtmf.outbound-offer-from-microsoft",
                "dtmf.outbound-offer-to-pstn",
            }
        ),
    },
    "media-srtp-rtcp-mux": {
        "plain-rtp-to-teams": frozenset(
            {
                "media.inbound-answer-to-pstn-plain",
                "media.inbound-ended",
                "media.inbound-offer-accepted",
                "media.inbound-offer-srtp",
                # the inbound call never connects, so the outbound half is not reached
                "media.outbound-acked",
                "media.outbound-answer-rtcp-mux",
                "media.outbound-answer-srtp",
                "media.outbound-ended",
                "media.outbound-offer-to-pstn-plain",
                "media.outbound-teams-offer",
            }
        ),
        "no-rtcp-mux": frozenset(
            {"media.inbound-offer-rtcp-mux", "media.outbound-answer-rtcp-mux"}
        ),
        "delayed-offer": frozenset(
            {
                "media.inbound-answer-to-pstn-plain",
                "media.inbound-ended",
                "media.inbound-offer-accepted",
                "media.inbound-offer-has-sdp",
                "media.inbound-offer-rtcp-mux",
                "media.inbound-offer-srtp",
                "media.outbound-acked",
                "media.outbound-answer-rtcp-mux",
                "media.outbound-answer-srtp",
                "media.outbound-ended",
                "media.outbound-offer-to-pstn-plain",
                "media.outbound-teams-offer",
            }
        ),
    },
    "large-invite-1500": {
        "no-rtcp-mux": frozenset({"large-invite.whole-body-read"}),
        "contact-ip": frozenset({"large-invite.answer-contact"}),
    },
}

#: The faults these scenarios must catch between them (with the other engineer's transfer,
#: forwarding and failover scenarios the plan covers the rest).
MUST_KILL = (
    "tls-wrong-cert",
    "no-options",
    "options-to-ip",
    "options-contact-ip",
    "retry-after-603",
    "contact-wrong-tenant",
    "contact-carrier-fqdn",
    "hold-sendonly",
    "plain-rtp-to-teams",
    "no-rtcp-mux",
    "delayed-offer",
    "contact-ip",
    "no-x-ms-sbc",
    "no-ack",
)


@cache
def _topology() -> Topology:
    return load_topology(None)


@cache
def _scenario(name: str) -> Scenario:
    return load_model(SCENARIOS / f"{name}.yaml", Scenario)


def _run(name: str, mutant: str | None = None) -> ScenarioResult:
    scenario = _scenario(name)
    topology = _topology()

    def world(s: Scenario, seed: int) -> LabWorld:
        return LabWorld(s, seed, topology, {}, {}, mutant)

    return run_scenario(scenario, world, derive_seed(PLAN_SEED, scenario.id))


def _failed(result: ScenarioResult) -> frozenset[str]:
    return frozenset(c.id for c in result.checks if c.verdict != "pass")


def _check(result: ScenarioResult, check_id: str) -> str:
    found = next(c for c in result.checks if c.id == check_id)
    assert found.verdict == "pass", found
    return found.seen or ""


# ------------------------------------------------------------------------------ the files


def test_every_scenario_of_this_area_is_listed_and_valid() -> None:
    for name in KILLS:
        scenario = _scenario(name)
        assert scenario.id == name
        checks = scenario.checks()
        ids = [check_id for check_id, _ in checks]
        assert len(ids) == len(set(ids)), f"{name}: duplicate check ids"
        prefix = ids[0].split(".", 1)[0]
        assert all(i.startswith(prefix + ".") for i in ids), f"{name}: mixed check id prefixes"
        assert all(req.startswith(("DR Part ", "RFC ")) for _, req in checks), name


def test_the_listed_mutants_cover_every_fault_this_area_must_catch() -> None:
    caught = {mutant for kills in KILLS.values() for mutant in kills}
    assert caught >= set(MUST_KILL)


# ------------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("name", sorted(KILLS))
def test_reference_sbc_passes_every_check(name: str) -> None:
    result = _run(name)
    assert result.error is None
    assert [(c.id, c.verdict) for c in result.checks] == [
        (check_id, "pass") for check_id, _ in _scenario(name).checks()
    ]
    assert result.verdict == "pass"


@pytest.mark.parametrize(
    ("name", "mutant"),
    [(name, mutant) for name, kills in sorted(KILLS.items()) for mutant in kills],
)
def test_mutant_fails_exactly_the_checks_about_its_fault(name: str, mutant: str) -> None:
    result = _run(name, mutant)
    assert result.error is None
    assert result.verdict == "fail"
    assert _failed(result) == KILLS[name][mutant]


# ------------------------------------------------------------------------------ what the lab saw


def test_session_refreshes_come_exactly_every_900_virtual_seconds() -> None:
    result = _run("session-timer-30-minutes")
    seen = _check(result, "session-timer.exactly-two-refreshes")
    # the user answers at 67.002 (65 s warm-up + 2 s); refreshes at half of Session-Expires 1800
    assert seen == (
        "2 matching message(s): "
        "[216] 967.003 INVITE sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0 "
        "(1124 bytes); "
        "[401] 1867.005 INVITE sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0 "
        "(1124 bytes)"
    )
    assert round(result.sim_seconds, 6) == 1870.006


def test_wrong_certificate_is_recorded_and_every_datacenter_closes_the_connection() -> None:
    result = _run("tls-mutual-auth", "tls-wrong-cert")
    by_id = {c.id: c for c in result.checks}
    assert by_id["tls.certificate-covers-contact"].seen == (
        "55776c66f3cacc66487a2d4f@sbc.customers.example.com: "
        "contact_fqdn='tenant-a.customers.example.com', certificate_covers_contact=False, "
        "failed_rules=['certificate-mismatch'] "
        "(record 1 on sip.pstnhub.microsoft.com; certificate ['sbc.customers.example.com'])"
    )
    assert by_id["tls.no-connection-closed-by-microsoft"].seen == (
        "3 connection(s) closed by Microsoft: "
        "sip.pstnhub.microsoft.com closed c1 at 65.002: certificate-mismatch; "
        "sip2.pstnhub.microsoft.com closed c2 at 65.004: certificate-mismatch; "
        "sip3.pstnhub.microsoft.com closed c3 at 65.006: certificate-mismatch"
    )
    # a refused connection gets no answer at all: not even a late 100 Trying
    assert by_id["tls.proxy-accepts-the-connection"].message.endswith(
        "no matching message within 5 virtual seconds"
    )


def test_microsoft_pings_back_on_a_connection_of_its_own() -> None:
    result = _run("options-keepalive")
    assert _check(result, "options.microsoft-ping-on-its-own-connection") == (
        "sip.pstnhub.microsoft.com's OPTIONS: at 0.009 on a connection it opened (c4): answered 200"
    )
    assert round(result.sim_seconds, 6) == 60.001


def test_tenant_isolation_is_microsofts_rule_seen_in_its_record() -> None:
    result = _run("tenant-isolation")
    assert _check(result, "isolation.microsoft-matched-tenant-a-only") == (
        "tenant-isolation-1@sbc.customers.example.com: tenant='tenant-a', matched_by='fqdn', "
        "target=None, final_status=404, failed_rules=['unknown-number'] "
        "(record 1 on sip.pstnhub.microsoft.com; certificate ['*.customers.example.com'])"
    )


def test_large_invite_is_one_2129_byte_message_on_the_tls_stream() -> None:
    result = _run("large-invite-1500")
    invites = [e for e in result.trace if e.data.startswith(b"INVITE sip:+13125550101@tenant-a")]
    assert [(len(e.data), e.transport, e.src[0], e.dst) for e in invites] == [
        (2129, "tls", "127.0.1.1", ("127.0.0.2", 5061))
    ]
    head, _, body = invites[0].data.partition(b"\r\n\r\n")
    assert head.endswith(b"\r\nContent-Length: 926")
    assert len(body) == 926
    assert body.endswith(
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:JPEaIxHegfuv53ykBPZk8hV0GO8kTiiqRMfHimEE|2^31\r\n"
    )


# ------------------------------------------------------------------------------ the send step


def test_raw_message_makes_crlf_lines_and_sets_content_length() -> None:
    text = "INVITE sip:a@b SIP/2.0\nVia: x\nContent-Length: 99\nl: 7\n\nv=0\ns=-\n"
    assert raw_message(text) == (
        b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"
    )


def test_raw_message_without_body_and_with_crlf_already() -> None:
    assert raw_message("\nACK sip:a@b SIP/2.0\r\nCSeq: 1 ACK\r\n") == (
        b"ACK sip:a@b SIP/2.0\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )


def test_raw_message_counts_bytes_not_characters() -> None:
    message = raw_message("MESSAGE sip:a@b SIP/2.0\n\nh\u00e9\n")
    assert message.endswith(b"Content-Length: 5\r\n\r\nh\xc3\xa9\r\n")  # 1 + 2 + CRLF


def _one_step_scenario(step: dict[str, object], check: dict[str, object]) -> Scenario:
    return Scenario.model_validate(
        {
            "id": "probe-test",
            "title": "probe test",
            "warmup": 1,
            "steps": [step, {"check": {"id": "t.c", "requirement": "RFC 0", "condition": check}}],
        }
    )


def _run_inline(scenario: Scenario) -> ScenarioResult:
    topology = _topology()
    return run_scenario(scenario, lambda s, seed: LabWorld(s, seed, topology, {}, {}, None), seed=7)


def test_send_from_a_host_that_is_not_in_the_lab_is_a_scenario_error() -> None:
    result = _run_inline(
        _one_step_scenario(
            {"send": {"from": "ccaas", "to": "sip", "data": "OPTIONS sip:x SIP/2.0\n"}},
            {"sbc_active_calls": 0},
        )
    )
    assert result.verdict == "error"
    assert "send: 'ccaas' is not a lab host that can send" in (result.error or "")


def test_send_to_a_host_not_listening_on_the_transport_is_a_scenario_error() -> None:
    result = _run_inline(
        _one_step_scenario(
            {"send": {"from": "sbc", "to": "pstn", "data": "OPTIONS sip:x SIP/2.0\n"}},
            {"sbc_active_calls": 0},
        )
    )
    assert result.verdict == "error"
    assert "send: 'pstn' does not listen on tls" in (result.error or "")


def test_trace_count_counts_the_whole_trace_and_reports_what_it_saw() -> None:
    result = _run_inline(
        _one_step_scenario(
            {"wait": 1},
            {"trace_count": {"messages": 4, "from": "sbc", "request": "OPTIONS"}},
        )
    )
    assert result.verdict == "fail"
    assert result.checks[0].expected == "exactly 4 matching message(s)"
    assert result.checks[0].seen is not None
    assert result.checks[0].seen.startswith("3 matching message(s): [0] 0.004 OPTIONS sip:sip.")


def test_probe_arguments_are_checked() -> None:
    bad_pattern = _run_inline(
        _one_step_scenario({"wait": 1}, {"trace_count": {"messages": 1, "nonsense": 1}})
    )
    assert bad_pattern.verdict == "error"
    assert "trace_count: bad message pattern" in (bad_pattern.error or "")
    unknown_field = _run_inline(
        _one_step_scenario({"wait": 1}, {"microsoft_call": {"call": "c", "colour": "red"}})
    )
    assert unknown_field.verdict == "error"
    assert "microsoft_call: unknown field(s) ['colour']" in (unknown_field.error or "")
    not_captured = _run_inline(
        _one_step_scenario({"wait": 1}, {"microsoft_call": {"call": "c", "tenant": "tenant-a"}})
    )
    assert not_captured.verdict == "fail"
    assert not_captured.checks[0].seen == "no call named 'c' was captured"
