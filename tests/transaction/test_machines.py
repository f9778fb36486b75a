"""The four transaction machines: every row, every illegal (state, input) pair, random walks.

Three levels: the tables themselves (``Machine.step``), the same rows and pairs driven through a
real :class:`TransactionLayer` (so each row's actions are seen to happen), and hypothesis walks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sbcsim.errors import LocalProtocolError, TransportError
from sbcsim.net.base import PeerInfo
from sbcsim.sip import Request, Response, make_response
from sbcsim.transaction import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    AckReceived,
    Action,
    Input,
    Machine,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    Transition,
    TransportFailed,
)
from sbcsim.transaction.machines import MACHINES, TIMER_INPUTS, TU_INPUTS

ALL_MACHINES = [INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER, NON_INVITE_SERVER]
S = State
I = Input  # noqa: E741

# The RFC's arrows, as (state, input) -> next state.  The tables must say exactly this.
EXPECTED_NEXT: dict[str, dict[tuple[State, Input], State]] = {
    "INVITE client": {
        (S.INITIAL, I.SEND_REQUEST): S.CALLING,
        (S.CALLING, I.TIMER_A): S.CALLING,
        (S.CALLING, I.TIMER_B): S.TERMINATED,
        (S.CALLING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.CALLING, I.RECV_1XX): S.PROCEEDING,
        (S.CALLING, I.RECV_2XX): S.ACCEPTED,
        (S.CALLING, I.RECV_300_699): S.COMPLETED,
        (S.PROCEEDING, I.RECV_1XX): S.PROCEEDING,
        (S.PROCEEDING, I.RECV_2XX): S.ACCEPTED,
        (S.PROCEEDING, I.RECV_300_699): S.COMPLETED,
        (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, I.RECV_300_699): S.COMPLETED,
        (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, I.TIMER_D): S.TERMINATED,
        (S.ACCEPTED, I.RECV_2XX): S.ACCEPTED,
        (S.ACCEPTED, I.TIMER_M): S.TERMINATED,
    },
    "non-INVITE client": {
        (S.INITIAL, I.SEND_REQUEST): S.TRYING,
        (S.TRYING, I.TIMER_E): S.TRYING,
        (S.TRYING, I.TIMER_F): S.TERMINATED,
        (S.TRYING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.TRYING, I.RECV_1XX): S.PROCEEDING,
        (S.TRYING, I.RECV_2XX): S.COMPLETED,
        (S.TRYING, I.RECV_300_699): S.COMPLETED,
        (S.PROCEEDING, I.TIMER_E): S.PROCEEDING,
        (S.PROCEEDING, I.TIMER_F): S.TERMINATED,
        (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, I.RECV_1XX): S.PROCEEDING,
        (S.PROCEEDING, I.RECV_2XX): S.COMPLETED,
        (S.PROCEEDING, I.RECV_300_699): S.COMPLETED,
        (S.COMPLETED, I.TIMER_K): S.TERMINATED,
    },
    "INVITE server": {
        (S.INITIAL, I.RECV_REQUEST): S.PROCEEDING,
        (S.PROCEEDING, I.TIMER_TRYING): S.PROCEEDING,
        (S.PROCEEDING, I.RECV_REQUEST_RETRANS): S.PROCEEDING,
        (S.PROCEEDING, I.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, I.TU_2XX): S.ACCEPTED,
        (S.PROCEEDING, I.TU_300_699): S.COMPLETED,
        (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, I.RECV_REQUEST_RETRANS): S.COMPLETED,
        (S.COMPLETED, I.TIMER_G): S.COMPLETED,
        (S.COMPLETED, I.RECV_ACK): S.CONFIRMED,
        (S.COMPLETED, I.TIMER_H): S.TERMINATED,
        (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.CONFIRMED, I.TIMER_I): S.TERMINATED,
        (S.ACCEPTED, I.TU_2XX): S.ACCEPTED,
        (S.ACCEPTED, I.RECV_ACK): S.ACCEPTED,
        (S.ACCEPTED, I.TIMER_L): S.TERMINATED,
    },
    "non-INVITE server": {
        (S.INITIAL, I.RECV_REQUEST): S.TRYING,
        (S.TRYING, I.TU_1XX): S.PROCEEDING,
        (S.TRYING, I.TU_2XX): S.COMPLETED,
        (S.TRYING, I.TU_300_699): S.COMPLETED,
        (S.PROCEEDING, I.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, I.TU_2XX): S.COMPLETED,
        (S.PROCEEDING, I.TU_300_699): S.COMPLETED,
        (S.PROCEEDING, I.RECV_REQUEST_RETRANS): S.PROCEEDING,
        (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, I.RECV_REQUEST_RETRANS): S.COMPLETED,
        (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, I.TIMER_J): S.TERMINATED,
    },
}


def _pairs(machine: Machine) -> list[tuple[State, Input]]:
    return [(s, i) for s in machine.states for i in machine.inputs]


def _ids(pairs: list[tuple[Machine, State, Input]]) -> list[str]:
    return [f"{m.name}:{s.name}:{i.name}" for m, s, i in pairs]


ALL_PAIRS = [(m, s, i) for m in ALL_MACHINES for s, i in _pairs(m)]


# ------------------------------------------------------------------------------------------------
# the tables
# ------------------------------------------------------------------------------------------------
def test_machines_are_registered_by_name() -> None:
    assert {m.name: m for m in ALL_MACHINES} == MACHINES


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=lambda m: m.name)
def test_table_has_exactly_the_rfc_arrows(machine: Machine) -> None:
    got = {pair: t.next_state for pair, t in machine.table.items()}
    assert got == EXPECTED_NEXT[machine.name]


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=lambda m: m.name)
def test_rfc6026_accepted_state_only_in_invite_machines(machine: Machine) -> None:
    assert (S.ACCEPTED in machine.states) == machine.name.startswith("INVITE")


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=lambda m: m.name)
def test_rows_entering_terminated_terminate_and_no_others(machine: Machine) -> None:
    for transition in machine.table.values():
        assert (transition.next_state is S.TERMINATED) == (Action.TERMINATE in transition.actions)
        assert len(set(transition.actions)) == len(transition.actions)


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=lambda m: m.name)
def test_terminated_is_a_sink(machine: Machine) -> None:
    assert not [pair for pair in machine.table if pair[0] is S.TERMINATED]


@pytest.mark.parametrize(("machine", "state", "inp"), ALL_PAIRS, ids=_ids(ALL_PAIRS))
def test_every_state_input_pair(machine: Machine, state: State, inp: Input) -> None:
    row = machine.table.get((state, inp))
    if row is not None:
        assert machine.step(state, inp) is row
    elif inp in TU_INPUTS:
        with pytest.raises(LocalProtocolError):
            machine.step(state, inp)
    else:
        assert machine.step(state, inp) is None  # absorbed


def test_a_malformed_machine_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        Machine(
            "bad", (S.INITIAL,), (I.SEND_REQUEST,), {(S.INITIAL, I.TIMER_A): Transition(S.INITIAL)}
        )
    with pytest.raises(ValueError, match="TERMINATE"):
        Machine(
            "bad",
            (S.INITIAL, S.TERMINATED),
            (I.SEND_REQUEST,),
            {(S.INITIAL, I.SEND_REQUEST): Transition(S.TERMINATED)},
        )


def test_timer_names() -> None:
    assert I.TIMER_A.timer_name == "A" and I.TIMER_TRYING.timer_name == "Trying"
    assert {i.timer_name for i in TIMER_INPUTS} == set("ABDEFGHIJKLM") | {"Trying"}
    with pytest.raises(ValueError):
        _ = I.RECV_ACK.timer_name


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=lambda m: m.name)
@given(data=st.data())
def test_random_input_sequences_raise_only_local_errors_for_tu_inputs(
    machine: Machine, data: st.DataObject
) -> None:
    inputs = data.draw(st.lists(st.sampled_from(machine.inputs), max_size=40))
    state = S.INITIAL
    for inp in inputs:
        try:
            transition = machine.step(state, inp)
        except LocalProtocolError:
            assert inp in TU_INPUTS
            continue
        if transition is not None:
            assert transition.next_state in machine.states
            state = transition.next_state
    if state is S.TERMINATED:
        assert all(machine.step(state, i) is None for i in machine.inputs if i not in TU_INPUTS)


# ------------------------------------------------------------------------------------------------
# the same rows and pairs, through a real TransactionLayer
# ------------------------------------------------------------------------------------------------
UAS_ADDR = ("192.0.2.20", 5060)
UAC_ADDR = ("192.0.2.10", 5060)
FROM_UAS = PeerInfo("udp", local=UAC_ADDR, remote=UAS_ADDR)
FROM_UAC = PeerInfo("udp", local=UAS_ADDR, remote=UAC_ADDR)
BRANCH = "z9hG4bKrow1"


def make_request(method: str, branch: str = BRANCH) -> Request:
    return Request(
        method,
        "sip:bob@example.com",
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=from1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "row-call@192.0.2.10"),
            ("CSeq", f"1 {method}"),
        ],
    )


@dataclass
class Driven:
    """A layer holding one live transaction in a chosen state, and how to feed it each input."""

    layer: TransactionLayer
    key: TransactionKey
    request: Request
    apply: dict[Input, Callable[[float], None]] = field(default_factory=dict)


def _inject(d: Driven, inp: Input, now: float) -> None:
    """Timers (and a creating RECV_REQUEST) cannot be provoked on demand through the public API;
    feed them to the transaction's runner directly."""
    d.layer._input(d.layer._txs[d.key], inp, now, None, None, None)


def _client(machine: Machine, state: State) -> Driven:
    method = "INVITE" if machine is INVITE_CLIENT else "OPTIONS"
    layer = TransactionLayer()
    req = make_request(method)
    key = layer.send_request(req, UAS_ADDR, "udp", 0.0)
    setup = {
        S.CALLING: None,
        S.TRYING: None,
        S.PROCEEDING: 180,
        S.COMPLETED: 486,
        S.ACCEPTED: 200,
    }[state]
    if setup is not None:
        layer.receive(make_response(req, setup, to_tag="uas1"), FROM_UAS, 0.1)
    d = Driven(layer, key, req)
    d.apply = {
        I.SEND_REQUEST: lambda now: _resend(layer, req, now),
        I.RECV_1XX: lambda now: layer.receive(
            make_response(req, 183, to_tag="uas1"), FROM_UAS, now
        ),
        I.RECV_2XX: lambda now: layer.receive(
            make_response(req, 200, to_tag="uas2"), FROM_UAS, now
        ),
        I.RECV_300_699: lambda now: layer.receive(
            make_response(req, 486, to_tag="uas1"), FROM_UAS, now
        ),
        I.TRANSPORT_ERROR: lambda now: layer.transport_error(
            UAS_ADDR, "udp", TransportError("unreachable", address=UAS_ADDR), now
        ),
    }
    return d


def _resend(layer: TransactionLayer, request: Request, now: float) -> None:
    layer.send_request(request, UAS_ADDR, "udp", now)


def _server(machine: Machine, state: State) -> Driven:
    method = "INVITE" if machine is INVITE_SERVER else "OPTIONS"
    layer = TransactionLayer()
    layer.receive(make_request(method), FROM_UAC, 0.0)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived)
    key, req = event.key, event.request
    d = Driven(layer, key, req)

    def respond(status: int, tag: str = "uas1") -> Callable[[float], None]:
        return lambda now: layer.send_response(key, make_response(req, status, to_tag=tag), now)

    if machine is INVITE_SERVER:
        respond(180)(0.05)  # so that Proceeding has a response to re-send
        if state is S.COMPLETED or state is S.CONFIRMED:
            respond(486)(0.1)
        if state is S.CONFIRMED:
            layer.receive(_ack_for(req, "uas1"), FROM_UAC, 0.2)
        if state is S.ACCEPTED:
            respond(200)(0.1)
    else:
        if state is S.PROCEEDING:
            respond(100)(0.05)
        if state is S.COMPLETED:
            respond(200)(0.1)
    d.apply = {
        I.RECV_REQUEST_RETRANS: lambda now: layer.receive(make_request(method), FROM_UAC, now),
        I.RECV_ACK: lambda now: layer.receive(_ack_for(req, "uas1"), FROM_UAC, now),
        I.TU_1XX: respond(181),
        I.TU_2XX: respond(200),
        I.TU_300_699: respond(486),
        I.TRANSPORT_ERROR: lambda now: layer.transport_error(
            UAC_ADDR, "udp", TransportError("unreachable", address=UAC_ADDR), now
        ),
    }
    return d


def _ack_for(invite: Request, to_tag: str) -> Request:
    ack = make_request("ACK")
    ack.headers.set("To", f"<sip:bob@example.com>;tag={to_tag}")
    ack.headers.set("CSeq", f"{invite.cseq.seq} ACK")
    return ack


def _drive(machine: Machine, state: State) -> Driven:
    d = (
        _client(machine, state)
        if machine in (INVITE_CLIENT, NON_INVITE_CLIENT)
        else _server(machine, state)
    )
    assert d.layer.state_of(d.key) is state
    d.layer.messages_to_send()
    d.layer.next_events()
    return d


EVENT_OF = {
    Action.PASS_REQUEST: RequestReceived,
    Action.PASS_RESPONSE: ResponseReceived,
    Action.PASS_ACK: AckReceived,
    Action.REPORT_TIMEOUT: TransactionTimedOut,
    Action.REPORT_TRANSPORT_ERROR: TransportFailed,
    Action.TERMINATE: TransactionTerminated,
}


def _timer_of(action: Action) -> Input | None:
    """START_A / BACKOFF_A / STOP_A -> TIMER_A, RESET_E_T2 -> TIMER_E, ... (None otherwise)."""
    verb, _, rest = action.name.partition("_")
    if verb not in ("START", "STOP", "BACKOFF", "RESET"):
        return None
    return Input["TIMER_" + rest.split("_")[0]]


def _sent_kind(message: Request | Response, request: Request) -> str:
    if message is request:
        return "request"
    if isinstance(message, Request):
        return message.method
    return "response"


SENT_KIND = {
    Action.SEND_REQUEST: "request",
    Action.RETRANSMIT_REQUEST: "request",
    Action.SEND_ACK: "ACK",
    Action.SEND_RESPONSE: "response",
    Action.RESEND_RESPONSE: "response",
    Action.SEND_TRYING: "response",
}

LIVE_PAIRS = [
    (m, s, i)
    for m, s, i in ALL_PAIRS
    if s not in (S.INITIAL, S.TERMINATED)  # no live transaction is ever in these
]


@pytest.mark.parametrize(("machine", "state", "inp"), LIVE_PAIRS, ids=_ids(LIVE_PAIRS))
def test_every_pair_through_the_layer(machine: Machine, state: State, inp: Input) -> None:
    d = _drive(machine, state)
    layer = d.layer
    row = machine.table.get((state, inp))
    feed = d.apply.get(inp)
    now = 1.0
    if row is None:
        if inp in TU_INPUTS:
            assert feed is not None
            with pytest.raises(LocalProtocolError):
                feed(now)
        elif feed is not None:
            feed(now)
        else:
            _inject(d, inp, now)
        assert layer.state_of(d.key) is state
        assert layer.messages_to_send() == []
        assert layer.next_events() == []
        return
    tx = layer._txs[d.key]
    if feed is not None:
        feed(now)
    else:
        _inject(d, inp, now)
    expected_state = None if row.next_state is S.TERMINATED else row.next_state
    assert layer.state_of(d.key) is expected_state
    events = layer.next_events()
    assert [type(e) for e in events] == [EVENT_OF[a] for a in row.actions if a in EVENT_OF]
    sent = [_sent_kind(o.message, d.request) for o in layer.messages_to_send()]
    assert sent == [SENT_KIND[a] for a in row.actions if a in SENT_KIND]
    if row.next_state is S.TERMINATED:
        assert len(layer) == 0 and tx.timers == {}
        return
    for action in row.actions:
        timer = _timer_of(action)
        if timer is not None:
            assert (timer in tx.timers) == (not action.name.startswith("STOP")), action.name


def test_initial_rows_through_the_layer() -> None:
    """The only rows out of INITIAL are the creating ones: sending and receiving a request."""
    layer = TransactionLayer()
    key = layer.send_request(make_request("INVITE"), UAS_ADDR, "udp", 0.0)
    assert layer.state_of(key) is S.CALLING
    key = layer.send_request(make_request("OPTIONS"), UAS_ADDR, "udp", 0.0)
    assert layer.state_of(key) is S.TRYING
    layer.receive(make_request("INVITE", "z9hG4bKsrv"), FROM_UAC, 0.0)
    layer.receive(make_request("OPTIONS", "z9hG4bKsrv"), FROM_UAC, 0.0)
    inv, opt = layer.next_events()
    assert isinstance(inv, RequestReceived) and isinstance(opt, RequestReceived)
    assert layer.state_of(inv.key) is S.PROCEEDING
    assert layer.state_of(opt.key) is S.TRYING
    assert len(layer) == 4


def test_tu_inputs_after_termination_raise() -> None:
    d = _drive(NON_INVITE_SERVER, S.COMPLETED)
    _inject(d, I.TIMER_J, 40.0)
    assert d.layer.state_of(d.key) is None
    for inp in (I.TU_1XX, I.TU_2XX, I.TU_300_699):
        with pytest.raises(LocalProtocolError):
            d.apply[inp](41.0)
