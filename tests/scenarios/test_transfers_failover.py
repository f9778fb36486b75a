"""The transfer, forwarding, group-call, failover and in-dialog scenarios of the Direct Routing
plan: each passes against the reference SBC and fails, for the named reason, against the mutants
it is there to catch; plus the matcher forms they rely on (``=literal``, ``body``, ``elapsed``,
``uri:``/``time`` captures) and the lab verbs added for them (escalation, forwarding, a carrier's
attended transfer)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from sbcsim.config import load_model, load_model_text
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.endpoints.teams_proxy import MsCall
from sbcsim.lab import Lab
from sbcsim.scenario.engine import ScenarioError, run_scenario
from sbcsim.scenario.labworld import LabWorld
from sbcsim.scenario.matchers import addr_spec, match_entry, raw_request_uri
from sbcsim.scenario.models import MessagePattern, Scenario
from sbcsim.sip.message import Request
from sbcsim.sip.parser import parse_message
from sbcsim.testplan.plan import Plan, derive_seed
from sbcsim.testplan.results import ScenarioResult, TraceEntry
from sbcsim.topology import Forwarding, load_topology

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "testplans" / "direct-routing-sbc.yaml"
SCENARIOS = REPO / "scenarios" / "direct-routing"
MINE = (
    "transfer-blind-to-teams",
    "transfer-blind-to-pstn",
    "transfer-consultative-replaces",
    "transfer-target-busy",
    "transfer-refer-in-allow",
    "forward-to-pstn-history-info",
    "forward-simultaneous-ring-pstn",
    "group-call-queue-ring",
    "group-escalate-to-conference",
    "group-add-pstn-participant",
    "failover-503-retry-after",
    "failover-timeout",
    "in-dialog-from-other-proxy",
)


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    # the lab logs every call step; the verdicts are what these tests judge
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@functools.cache
def _scenario(name: str) -> Scenario:
    return load_model(SCENARIOS / f"{name}.yaml", Scenario)


@functools.cache
def _plan() -> Plan:
    return load_model(PLAN, Plan)


@functools.cache
def run(name: str, mutant: str | None = None) -> ScenarioResult:
    """The scenario as the plan runs it: the plan's settings and the scenario's derived seed."""
    scenario = _scenario(name)
    plan = _plan()
    topology = load_topology(None)

    def world(s: Scenario, seed: int) -> LabWorld:
        return LabWorld(s, seed, topology, plan.settings, plan.sbc_settings, mutant)

    return run_scenario(scenario, world, derive_seed(plan.seed, scenario.id))


def verdicts(result: ScenarioResult) -> dict[str, str]:
    return {c.id: c.verdict for c in result.checks}


def entries(result: ScenarioResult, what: Callable[[TraceEntry, Any], bool]) -> list[TraceEntry]:
    """Trace entries whose parsed message satisfies ``what(entry, message)``."""
    out = []
    for e in result.trace:
        msg = parse_message(e.data, transport="tcp")
        if what(e, msg):
            out.append(e)
    return out


def invites_to(result: ScenarioResult, host: str, number: str) -> list[float]:
    return [
        round(e.time, 6)
        for e in entries(
            result,
            lambda e, m: (
                isinstance(m, Request)
                and m.method == "INVITE"
                and e.dst_name == host
                and str(m.uri).startswith(f"sip:{number}@")
            ),
        )
    ]


# ------------------------------------------------------------------------------ the files


def test_every_scenario_is_in_the_plan_and_every_check_has_a_requirement() -> None:
    globbed = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert set(MINE) <= globbed
    assert _plan().scenarios == ["../scenarios/direct-routing/*.yaml"]
    ids: list[str] = []
    for name in MINE:
        scenario = _scenario(name)
        assert scenario.id == name
        for check_id, requirement in scenario.checks():
            assert requirement.startswith(("DR Part ", "RFC ")), (check_id, requirement)
            ids.append(check_id)
    assert len(ids) == len(set(ids)), "check ids are unique across these scenarios"


@pytest.mark.parametrize("name", MINE)
def test_scenario_passes_against_the_reference_sbc(name: str) -> None:
    result = run(name)
    failed = {c.id: c.message for c in result.checks if c.verdict != "pass"}
    assert result.verdict == "pass", (failed, result.error)
    assert len(result.checks) == len(_scenario(name).checks())


# ------------------------------------------------------------------------------ the kills

#: (scenario, mutant, checks that must fail, checks that must still pass): the second set shows
#: the failure is for the mutant's own reason, not a cascade from an earlier step.
KILLS: list[tuple[str, str, set[str], set[str]]] = [
    (
        "transfer-blind-to-teams",
        "refer-rejected",
        {"transfer.refer-accepted-202", "transfer.invite-to-refer-to-uri"},
        {"transfer.refer-received"},
    ),
    (
        "transfer-blind-to-teams",
        "referred-by-altered",
        {"transfer.referred-by-unchanged", "transfer.old-leg-released"},
        {"transfer.refer-accepted-202", "transfer.invite-to-refer-to-uri"},
    ),
    (
        "transfer-blind-to-teams",
        "referred-by-dropped",
        {"transfer.referred-by-unchanged"},
        {"transfer.invite-to-refer-to-uri", "transfer.new-leg-sendrecv-srtp"},
    ),
    (
        "transfer-blind-to-teams",
        "no-sipfrag-notify",
        {
            "transfer.notify-100-sipfrag",
            "transfer.notify-180-sipfrag",
            "transfer.notify-200-terminated",
        },
        {"transfer.refer-accepted-202", "transfer.referred-by-unchanged"},
    ),
    (
        "transfer-blind-to-teams",
        "no-refer-in-allow",
        {"transfer.refer-received"},
        {"transfer.original-answered"},
    ),
    (
        "transfer-blind-to-pstn",
        "referred-by-altered",
        {"transfer-pstn.referred-by-unchanged", "transfer-pstn.hairpin-invite"},
        {"transfer-pstn.invite-back-to-microsoft"},
    ),
    (
        "transfer-blind-to-pstn",
        "referred-by-dropped",
        {"transfer-pstn.referred-by-unchanged"},
        {"transfer-pstn.invite-back-to-microsoft"},
    ),
    (
        "transfer-blind-to-pstn",
        "no-sipfrag-notify",
        {"transfer-pstn.notify-100-sipfrag", "transfer-pstn.notify-200-terminated"},
        {"transfer-pstn.hairpin-invite", "transfer-pstn.target-called"},
    ),
    (
        "transfer-blind-to-pstn",
        "refer-rejected",
        {"transfer-pstn.refer-accepted-202"},
        {"transfer-pstn.refer-e164"},
    ),
    (
        "transfer-consultative-replaces",
        "replaces-to-teams",
        {"transfer-consult.never-replaces-to-microsoft"},
        {
            "transfer-consult.invite-with-replaces",
            "transfer-consult.replaces-accepted",
            "transfer-consult.replaced-dialog-ended",
            "transfer-consult.pstn-legs-kept",
        },
    ),
    (
        "transfer-target-busy",
        "no-sipfrag-notify",
        {"transfer-busy.notify-486-terminated"},
        {"transfer-busy.target-busy-486", "transfer-busy.no-bye-on-original"},
    ),
    (
        "transfer-refer-in-allow",
        "no-refer-in-allow",
        {
            "allow.invite-lists-refer",
            "allow.200-lists-refer",
            "allow.transfer-arrives-as-refer",
            "allow.no-internal-transfer-reinvite",
        },
        {"allow.invite-lists-notify", "allow.200-lists-notify", "allow.inbound-answered"},
    ),
    (
        "transfer-refer-in-allow",
        "refer-rejected",
        {"allow.refer-accepted"},
        {"allow.transfer-arrives-as-refer"},
    ),
    (
        "forward-to-pstn-history-info",
        "drops-history-info",
        {"forward.history-info-to-pstn"},
        {"forward.invite-with-history-info", "forward.original-caller-to-pstn"},
    ),
    (
        "forward-simultaneous-ring-pstn",
        "drops-history-info",
        {"simring.history-info-to-pstn"},
        {"simring.fork-invite-with-history-info", "simring.fork-cancelled"},
    ),
    (
        "failover-503-retry-after",
        "no-failover",
        {"failover.sip2-at-once", "failover.sip3-at-once"},
        {"failover.first-try-sip", "failover.sip-busy", "failover.sip-503-acked"},
    ),
    (
        "failover-timeout",
        "no-failover",
        {"failover-timeout.sip2-after-timer-b", "failover-timeout.answered-on-sip2"},
        {"failover-timeout.first-try-sip", "failover-timeout.no-retransmission-over-tls"},
    ),
    (
        "group-escalate-to-conference",
        "no-rtcp-mux",
        {"escalate.reinvite-accepted"},
        {"escalate.reinvite-to-conference-mp", "escalate.call-survives"},
    ),
    (
        "group-call-queue-ring",
        "no-ack",
        {"queue.ack"},
        {"queue.answered-directly", "queue.caller-connected"},
    ),
]


@pytest.mark.parametrize(
    ("name", "mutant", "failing", "passing"),
    KILLS,
    ids=[f"{name}-{mutant}" for name, mutant, _, _ in KILLS],
)
def test_scenario_kills_mutant_for_its_reason(
    name: str, mutant: str, failing: set[str], passing: set[str]
) -> None:
    result = run(name, mutant)
    seen = verdicts(result)
    assert result.verdict == "fail", result.error
    assert {c for c in failing if seen[c] != "fail"} == set()
    assert {c for c in passing if seen[c] != "pass"} == set()


def test_history_info_mutants_fail_exactly_the_history_info_checks() -> None:
    for name, check in (
        ("forward-to-pstn-history-info", "forward.history-info-to-pstn"),
        ("forward-simultaneous-ring-pstn", "simring.history-info-to-pstn"),
    ):
        failed = [c.id for c in run(name, "drops-history-info").checks if c.verdict != "pass"]
        assert failed == [check]


def test_the_required_mutants_are_all_killed_by_these_scenarios() -> None:
    required = {
        "refer-rejected",
        "referred-by-altered",
        "referred-by-dropped",
        "no-sipfrag-notify",
        "no-failover",
        "replaces-to-teams",
        "no-refer-in-allow",
        "drops-history-info",
    }
    assert required <= {mutant for _, mutant, _, _ in KILLS}


# ------------------------------------------------------------------------------ exact wire facts


def test_failover_503_order_and_virtual_times() -> None:
    result = run("failover-503-retry-after")
    # warm-up ends at 65 s; one network hop is 1 ms: 503 from sip at .002, sip2 at .003 ...
    assert invites_to(result, "sip.pstnhub.microsoft.com", "+14255550101") == [65.001]
    assert invites_to(result, "sip2.pstnhub.microsoft.com", "+14255550101") == [65.003]
    assert invites_to(result, "sip3.pstnhub.microsoft.com", "+14255550101") == [65.005]
    # the second call (within Retry-After) goes to sip3 only
    assert invites_to(result, "sip.pstnhub.microsoft.com", "+14255550102") == []
    assert invites_to(result, "sip2.pstnhub.microsoft.com", "+14255550102") == []
    assert len(invites_to(result, "sip3.pstnhub.microsoft.com", "+14255550102")) == 1
    # the third call, after recovery and Retry-After, is on sip again and nowhere else
    assert len(invites_to(result, "sip.pstnhub.microsoft.com", "+14255550103")) == 1
    assert invites_to(result, "sip3.pstnhub.microsoft.com", "+14255550103") == []


def test_failover_timeout_is_timer_b_exactly() -> None:
    result = run("failover-timeout")
    (first,) = invites_to(result, "sip.pstnhub.microsoft.com", "+14255550101")
    (second,) = invites_to(result, "sip2.pstnhub.microsoft.com", "+14255550101")
    assert (first, second) == (65.001, 97.001)
    assert round(second - first, 6) == 32.0  # 64 * T1, T1 = 0.5 s


def test_blind_transfer_notifies_in_order_and_microsoft_byes_after_the_200() -> None:
    result = run("transfer-blind-to-teams")
    notifies = entries(
        result, lambda e, m: isinstance(m, Request) and m.method == "NOTIFY" and e.src_name == "sbc"
    )
    bodies = [e.data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[0] for e in notifies]
    assert bodies == [
        b"SIP/2.0 100 Trying",
        b"SIP/2.0 180 Ringing",
        b"SIP/2.0 183 Session Progress",
        b"SIP/2.0 200 OK",
    ]
    byes = entries(
        result,
        lambda e, m: (
            isinstance(m, Request)
            and m.method == "BYE"
            and e.src_name == "sip.pstnhub.microsoft.com"
        ),
    )
    assert byes[0].time > notifies[-1].time


# ------------------------------------------------------------------------------ matcher forms

REFER_BY = "<sip:sip.pstnhub.microsoft.com:5061;x-m=8:orgid:abc;x-t=t+1;x-ti=(1)?;x-tt=ahr0%3d%3d>"


def _request(method: str, extra: str = "") -> bytes:
    return (
        f"{method} sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:abc SIP/2.0\r\n"
        "Via: SIP/2.0/TLS sbc.example.com:5061;branch=z9hG4bK1\r\n"
        "From: <sip:+13125550101@tenant-a.example.com>;tag=a\r\n"
        "To: <sip:sip.pstnhub.microsoft.com:5061;x-m=8:orgid:abc>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\n{extra}"
        f"Referred-By: {REFER_BY}\r\n"
        "Content-Type: message/sipfrag;version=2.0\r\nContent-Length: 21\r\n\r\n"
        "SIP/2.0 180 Ringing\r\n"
    ).encode()


INVITE = _request("INVITE")


def _entry(data: bytes = INVITE, time: float = 10.5) -> TraceEntry:
    return TraceEntry(0, time, ("10.0.0.1", 5061), ("10.0.1.1", 5061), "tls", data)


def _match(variables: Mapping[str, str], **pattern: Any) -> list[str]:
    result = match_entry(
        _entry(), MessagePattern.model_validate(pattern), variables, lambda *a: True
    )
    return result.failures


def test_literal_header_needs_no_escaping_and_any_change_fails() -> None:
    assert _match({"rb": REFER_BY}, headers={"Referred-By": "={rb}"}) == []
    altered = REFER_BY.replace(";x-ti=(1)?", "")
    (failure,) = _match({"rb": altered}, headers={"Referred-By": "={rb}"})
    assert failure.startswith("Referred-By: ") and "is not exactly" in failure
    # as a regex the same text would not even match itself ("?", "(", "+")
    assert _match({"rb": REFER_BY}, headers={"Referred-By": "{rb}"}) != []
    assert _match({}, headers={"Referrer": "=x"}) == ["no Referrer header (expected exactly 'x')"]


def test_literal_request_uri_compares_the_wire_text() -> None:
    uri = "sip:sip.pstnhub.microsoft.com:5061;transport=tls;x-m=8:orgid:abc"
    assert _match({"rt": uri}, uri="={rt}") == []
    (failure,) = _match({"rt": uri + ";x-t=1"}, uri="={rt}")
    assert failure == f"Request-URI {uri} is not exactly {uri};x-t=1"
    assert raw_request_uri(INVITE) == uri
    assert raw_request_uri(b"SIP/2.0 200 OK\r\n\r\n") is None


def test_body_regex() -> None:
    assert _match({}, body=r"^SIP/2\.0 180 ") == []
    (failure,) = _match({}, body=r"^SIP/2\.0 200 ")
    assert failure.startswith("body 'SIP/2.0 180 Ringing") and "/^SIP/2\\.0 200 /" in failure


def test_elapsed_bounds_are_inclusive_at_microsecond_resolution() -> None:
    t0 = repr(10.5 - 0.1 - 0.2)  # 10.2 with a float error
    assert _match({"t0": t0}, elapsed={"since": "t0", "min": 0.3, "max": 0.3}) == []
    assert _match({"t0": t0}, elapsed={"since": "t0", "min": 0.3}) == []
    assert _match({"t0": t0}, elapsed={"since": "t0", "min": 0.31}) == [
        "sent 0.3 s after t0, expected between 0.31"
    ]
    assert _match({"t0": t0}, elapsed={"since": "t0", "max": 0.29}) == [
        "sent 0.3 s after t0, expected between 0 and 0.29"
    ]
    assert _match({}, elapsed={"since": "t0"}) == ["no instant named 't0' was captured"]
    assert _match({"t0": "c1"}, elapsed={"since": "t0"}) == [
        "t0 = 'c1' is not an instant (capture it as 'time')"
    ]


@pytest.mark.parametrize(
    ("value", "uri"),
    [
        ("<sip:a@b.example;x=1?Replaces=c%3Bto-tag%3D1>;p=2", "sip:a@b.example;x=1"),
        (
            "Transferor <sip:sip.pstnhub.microsoft.com:5061;x-m=8:orgid:abc>",
            "sip:sip.pstnhub.microsoft.com:5061;x-m=8:orgid:abc",
        ),
        ("sip:a@b.example;tag=1", "sip:a@b.example"),
    ],
)
def test_addr_spec(value: str, uri: str) -> None:
    assert addr_spec(value) == uri


class _OneShotWorld:
    """No actions; the message shows up at 7.25 s the first time the engine waits."""

    def __init__(self) -> None:
        self.t = 0.0
        self.entries: list[TraceEntry] = []

    def now(self) -> float:
        return self.t

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        if not self.entries:
            self.t = 7.25
            self.entries.append(_entry(_refer(), 7.25))
        return predicate()

    def run_for(self, seconds: float) -> None:
        self.t += seconds

    def warm_up(self, seconds: float) -> None:
        pass

    def trace(self) -> list[TraceEntry]:
        return self.entries

    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool:
        return True

    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        pass

    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        wanted = dict(condition["vars"])
        return wanted == {k: variables.get(k) for k in wanted}, str(wanted), str(variables)

    def close(self) -> None:
        pass


def _refer() -> bytes:
    return _request("REFER", "Refer-To: <sip:+1312@sip.pstnhub.microsoft.com;user=phone>\r\n")


def test_capture_of_a_header_uri_and_of_the_sending_time() -> None:
    text = (
        "kind: scenario\nid: s\ntitle: t\nwarmup: 0\nsteps:\n"
        "  - expect: {id: e, requirement: r, request: REFER,"
        " capture: {rt: 'uri:Refer-To', t: time, rb: Referred-By}}\n"
        "  - check: {id: c, requirement: r, condition: {vars: {rt: 'sip:+1312@sip.pstnhub.microsoft.com;user=phone', t: '7.25'}}}\n"
        "  - expect: {id: e2, requirement: r, request: REFER,"
        " headers: {Referred-By: '={rb}'}, elapsed: {since: t, min: 0, max: 0}}\n"
    )
    scenario = load_model_text(text, Scenario, "s.yaml")
    result = run_scenario(scenario, lambda s, seed: _OneShotWorld(), seed=1)
    assert [(c.id, c.verdict) for c in result.checks] == [
        ("e", "pass"),
        ("c", "pass"),
        ("e2", "pass"),
    ]


# ------------------------------------------------------------------------------ lab verbs


def _lab(**settings: Any) -> Lab:
    lab = Lab.build(
        load_topology(None),
        seed=3,
        settings=MicrosoftSettings(**settings),
        sbc_factory=ReferenceSbc.factory(),
    )
    lab.run_for(65)
    return lab


def _connected_call(lab: Lab) -> MsCall:
    lab.phone("+13125550101").call("+14255550101")
    lab.run_for(5)
    call = lab.teams_user("alice.archer@contoso.example").current_call()
    assert isinstance(call, MsCall) and call.state == "connected"
    return call


def _sdp_of_last_reinvite(lab: Lab, call: MsCall) -> bytes:
    leg = call.legs[0]
    sent = [
        p.data
        for p in lab.net.capture
        if p.data.startswith(b"INVITE sip:+13125550101@") and leg.ref.call_id.encode() in p.data
    ]
    return sent[-1].split(b"\r\n\r\n", 1)[1]


def test_escalation_moves_the_leg_to_the_conference_processor_once() -> None:
    lab = _lab()
    call = _connected_call(lab)
    alice = lab.teams_user("alice.archer@contoso.example")
    alice.escalate()
    lab.run_for(1)
    assert call.conference and call.legs[0].media_address == "127.0.1.101"
    assert b"c=IN IP4 127.0.1.101\r\n" in _sdp_of_last_reinvite(lab, call)
    assert str(lab.presence.presence(alice.user.graph_id)) == "Busy/InAConferenceCall"
    count = len(lab.net.capture)
    alice.escalate()  # no de-escalation, and no second escalation
    lab.run_for(1)
    assert not [p for p in lab.net.capture[count:] if p.data.startswith(b"INVITE")]
    alice.hold()  # later re-INVITEs keep the conference address
    lab.run_for(1)
    sdp = _sdp_of_last_reinvite(lab, call)
    assert b"c=IN IP4 127.0.1.101\r\n" in sdp and b"a=inactive" in sdp


def test_a_group_call_goes_on_when_an_added_party_leaves() -> None:
    lab = _lab()
    call = _connected_call(lab)
    lab.teams_user("alice.archer@contoso.example").add_participant("+13125550102")
    lab.run_for(5)
    assert len(call.live_legs()) == 2
    lab.phone("+13125550102").hang_up()
    lab.run_for(2)
    assert call.state == "connected" and len(call.live_legs()) == 1
    assert lab.phone("+13125550101").current().state == "connected"
    assert "+13125550102 left the group call" in call.history


def test_set_forwarding_changes_where_the_next_call_goes() -> None:
    lab = _lab()
    alice = lab.teams_user("alice.archer@contoso.example")
    alice.set_forwarding(Forwarding(immediate="+13125550102"))
    assert alice.user.forwarding.immediate == "+13125550102"
    assert alice.user.upn == "alice.archer@contoso.example"
    lab.phone("+13125550101").call("+14255550101")
    lab.run_for(5)
    mobile = lab.phone("+13125550102").current()
    assert mobile.state == "connected" and mobile.request is not None
    assert mobile.request.headers.get("History-Info") is not None


def test_take_over_sends_replaces_for_the_other_phones_dialog() -> None:
    lab = _lab()
    _connected_call(lab)
    caller, third = lab.phone("+13125550101"), lab.phone("+13125550103")
    dialog = lab.pstn.ua.dialog_id(caller.current().ref)
    assert dialog is not None
    new = third.take_over(caller)
    lab.run_for(2)
    invite = next(p.data for p in lab.net.capture if new.ref.call_id.encode() in p.data)
    assert (
        f"Replaces: {dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}\r\n"
    ).encode() in invite
    assert new.state == "connected"
    assert caller.calls[0].state == "ended"
    with pytest.raises(RuntimeError, match="no call in progress"):
        third.take_over(caller)


def _world(steps: str, actors: str = "") -> LabWorld:
    text = f"kind: scenario\nid: s\ntitle: t\nactors:\n{actors}steps:\n{steps}"
    scenario = load_model_text(text, Scenario, "s.yaml")
    return LabWorld(scenario, 1, load_topology(None), {}, {}, None)


def test_lab_world_forwarding_and_probe_errors() -> None:
    world = _world(
        "  - wait: 1\n",
        "  a: {teams: alice.archer@contoso.example}\n  p: {pstn: '+13125550101'}\n"
        "  q: {pstn: '+13125550102'}\n",
    )
    world.act("forwarding", {"user": "a", "unanswered": "p", "unanswered_after_seconds": 5}, {})
    forwarding = world.lab.teams_user("alice.archer@contoso.example").user.forwarding
    assert (forwarding.immediate, forwarding.unanswered) == (None, "+13125550101")
    assert forwarding.unanswered_after_seconds == 5
    with pytest.raises(ScenarioError, match="no Teams user"):
        world.act("forwarding", {"user": "nobody@contoso.example"}, {})
    with pytest.raises(ScenarioError, match="forwarding of a"):
        world.act("forwarding", {"user": "a", "immediate": "not a target"}, {})
    with pytest.raises(ScenarioError, match="mode: consult"):
        world.act("transfer", {"who": "p", "to": "q"}, {})
    with pytest.raises(ScenarioError, match="in_call and/or alert"):
        world.probe({"teams_user": {"user": "a"}}, {})
    ok, _, seen = world.probe({"teams_user": {"user": "a", "in_call": False}}, {})
    assert ok and seen == "alice.archer@contoso.example: in a call: False"
    ok, _, seen = world.probe({"teams_user": {"user": "a", "alert": "cancelled"}}, {})
    assert not ok and seen == "alice.archer@contoso.example: latest alert never alerted"
    world.close()
