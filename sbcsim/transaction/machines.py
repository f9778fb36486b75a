"""The four transaction state machines of RFC 3261 §17, with RFC 6026's Accepted state, as data.

Rule: everything that decides *which state comes next and what to do on the way* lives in the
tables below; :mod:`sbcsim.transaction.layer` only matches messages to transactions, turns them
into :class:`Input` values and executes the :class:`Action` values a row lists, in order.

A table maps ``(State, Input)`` to a :class:`Transition`.  A pair that is not in the table is
*illegal*.  What happens then depends on who caused the input:

* inputs from the network (received messages, transport errors) and from the clock (timers) are
  absorbed: the transaction ignores them, as the RFC's "absorb" wording and the figures' missing
  arrows say (a late retransmission, a stale timer, a 1xx after the final response ...);
* inputs from the TU (:data:`TU_INPUTS`: sending the request, sending a response) raise
  :class:`~sbcsim.errors.LocalProtocolError`, because the TU broke the protocol.

Every machine starts in :attr:`State.INITIAL` (the RFC's unnamed point before the first arrow) and
ends in :attr:`State.TERMINATED`; a row entering Terminated always carries
:attr:`Action.TERMINATE`.  Zero-length timers (D, I, J, K over a reliable transport) are fired by
the layer at once, through the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from sbcsim.errors import LocalProtocolError

__all__ = [
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "MACHINES",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "TIMER_INPUTS",
    "TU_INPUTS",
    "Action",
    "Input",
    "Machine",
    "State",
    "Transition",
]


class State(IntEnum):
    """Transaction states (RFC 3261 Figures 5-8, RFC 6026 Figures 3 and 5)."""

    INITIAL = 0
    CALLING = 1
    TRYING = 2
    PROCEEDING = 3
    COMPLETED = 4
    CONFIRMED = 5
    ACCEPTED = 6
    TERMINATED = 7


class Input(IntEnum):
    """What can happen to a transaction."""

    # from the TU
    SEND_REQUEST = 0
    TU_1XX = 1
    TU_2XX = 2
    TU_300_699 = 3
    # from the network
    RECV_REQUEST = 4  # the request that creates a server transaction
    RECV_REQUEST_RETRANS = 5
    RECV_ACK = 6
    RECV_1XX = 7
    RECV_2XX = 8
    RECV_300_699 = 9
    TRANSPORT_ERROR = 10
    # from the clock
    TIMER_A = 11
    TIMER_B = 12
    TIMER_D = 13
    TIMER_E = 14
    TIMER_F = 15
    TIMER_G = 16
    TIMER_H = 17
    TIMER_I = 18
    TIMER_J = 19
    TIMER_K = 20
    TIMER_L = 21
    TIMER_M = 22
    TIMER_TRYING = 23  # §17.2.1: 100 Trying unless the TU answers within 200 ms

    @property
    def timer_name(self) -> str:
        """``"A"`` for TIMER_A ..., ``"Trying"`` for TIMER_TRYING (raises for non-timers)."""
        if not self.name.startswith("TIMER_"):
            raise ValueError(f"{self.name} is not a timer")
        return "Trying" if self is Input.TIMER_TRYING else self.name[6:]


#: Inputs caused by the TU: an illegal one raises LocalProtocolError.
TU_INPUTS: frozenset[Input] = frozenset(
    {Input.SEND_REQUEST, Input.TU_1XX, Input.TU_2XX, Input.TU_300_699}
)
#: Inputs caused by a timer firing.
TIMER_INPUTS: frozenset[Input] = frozenset(i for i in Input if i.name.startswith("TIMER_"))


class Action(IntEnum):
    """What the layer does when a row is taken, in the order listed."""

    SEND_REQUEST = 0  # put the request on the wire
    RETRANSMIT_REQUEST = 1  # ... again (Timer A / E)
    SEND_ACK = 2  # INVITE client: ACK a non-2xx final (§17.1.1.3; re-sent for each retransmission)
    SEND_PENDING_CANCEL = 3  # INVITE client: a CANCEL asked for before any 1xx goes out now (§9.1)
    SEND_RESPONSE = 4  # send the TU's response and remember it as the last one
    RESEND_RESPONSE = 5  # send the last response again (nothing when there is none yet)
    SEND_TRYING = 6  # INVITE server: 100 Trying on the TU's behalf (§17.2.1)
    PASS_REQUEST = 7  # RequestReceived
    PASS_RESPONSE = 8  # ResponseReceived
    PASS_ACK = 9  # AckReceived (an ACK for a 2xx matched in Accepted, RFC 6026 §8.7)
    REPORT_TIMEOUT = 10  # TransactionTimedOut
    REPORT_TRANSPORT_ERROR = 11  # TransportFailed
    START_A = 12
    BACKOFF_A = 13  # interval doubled, no cap (§17.1.1.2)
    STOP_A = 14
    START_B = 15
    STOP_B = 16
    START_D = 17
    START_E = 18
    BACKOFF_E = 19  # interval doubled, capped at T2 (§17.1.2.2, Trying)
    RESET_E_T2 = 20  # interval T2 (§17.1.2.2, Proceeding)
    STOP_E = 21
    START_F = 22
    STOP_F = 23
    START_G = 24
    BACKOFF_G = 25  # interval doubled, capped at T2 (§17.2.1)
    STOP_G = 26
    START_H = 27
    STOP_H = 28
    START_I = 29
    START_J = 30
    START_K = 31
    START_L = 32
    START_M = 33
    START_TRYING = 34
    STOP_TRYING = 35
    TERMINATE = 36  # forget the transaction; TransactionTerminated


@dataclass(frozen=True, slots=True)
class Transition:
    """One table row's right-hand side."""

    next_state: State
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class Machine:
    """One state machine: its states, the inputs it understands and its table."""

    name: str
    states: tuple[State, ...]
    inputs: tuple[Input, ...]
    table: Mapping[tuple[State, Input], Transition]
    #: ``rows[state][input]``: the same table, indexed without building a tuple per look-up.
    rows: Mapping[State, Mapping[Input, Transition]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows: dict[State, dict[Input, Transition]] = {s: {} for s in self.states}
        for (state, inp), transition in self.table.items():
            if state not in rows or inp not in self.inputs or transition.next_state not in rows:
                raise ValueError(f"{self.name}: row {state.name}/{inp.name} is outside the machine")
            if (transition.next_state is State.TERMINATED) != (
                Action.TERMINATE in transition.actions
            ):
                raise ValueError(f"{self.name}: row {state.name}/{inp.name}: TERMINATE mismatch")
            rows[state][inp] = transition
        object.__setattr__(self, "rows", rows)

    def step(self, state: State, inp: Input) -> Transition | None:
        """The row for ``(state, inp)``; ``None`` for an absorbed network or timer input.

        Raises :class:`LocalProtocolError` for an illegal TU input."""
        transition = self.rows[state].get(inp)
        if transition is None and inp in TU_INPUTS:
            raise LocalProtocolError(
                f"{self.name} transaction cannot take {inp.name} in state {state.name}"
            )
        return transition


def _t(next_state: State, *actions: Action) -> Transition:
    return Transition(next_state, actions)


_S = State
_I = Input
_A = Action

#: RFC 3261 Figure 5 as amended by RFC 6026 Figure 5.
#:
#: Absorbed: 1xx and 2xx in Completed; 1xx and 300-699 in Accepted (a 2xx there is a forked or
#: retransmitted answer and goes up); a transport error in Accepted (only the dialog layer sends
#: in that state); timers that were stopped.  Deliberate extension: a transport error in
#: Proceeding fails the transaction too — the connection the INVITE went out on is gone and the
#: RFC gives this state no timeout, so the TU would otherwise wait forever.
INVITE_CLIENT = Machine(
    "INVITE client",
    (_S.INITIAL, _S.CALLING, _S.PROCEEDING, _S.COMPLETED, _S.ACCEPTED, _S.TERMINATED),
    (
        _I.SEND_REQUEST,
        _I.RECV_1XX,
        _I.RECV_2XX,
        _I.RECV_300_699,
        _I.TRANSPORT_ERROR,
        _I.TIMER_A,
        _I.TIMER_B,
        _I.TIMER_D,
        _I.TIMER_M,
    ),
    {
        (_S.INITIAL, _I.SEND_REQUEST): _t(_S.CALLING, _A.SEND_REQUEST, _A.START_A, _A.START_B),
        (_S.CALLING, _I.TIMER_A): _t(_S.CALLING, _A.RETRANSMIT_REQUEST, _A.BACKOFF_A),
        (_S.CALLING, _I.TIMER_B): _t(_S.TERMINATED, _A.REPORT_TIMEOUT, _A.TERMINATE),
        (_S.CALLING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.CALLING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.STOP_A, _A.STOP_B, _A.PASS_RESPONSE, _A.SEND_PENDING_CANCEL),
        (_S.CALLING, _I.RECV_2XX): _t(_S.ACCEPTED, _A.STOP_A, _A.STOP_B, _A.PASS_RESPONSE, _A.START_M),
        (_S.CALLING, _I.RECV_300_699): _t(_S.COMPLETED, _A.STOP_A, _A.STOP_B, _A.SEND_ACK, _A.PASS_RESPONSE, _A.START_D),
        (_S.PROCEEDING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_RESPONSE),
        (_S.PROCEEDING, _I.RECV_2XX): _t(_S.ACCEPTED, _A.PASS_RESPONSE, _A.START_M),
        (_S.PROCEEDING, _I.RECV_300_699): _t(_S.COMPLETED, _A.SEND_ACK, _A.PASS_RESPONSE, _A.START_D),
        (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.COMPLETED, _I.RECV_300_699): _t(_S.COMPLETED, _A.SEND_ACK),
        (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.COMPLETED, _I.TIMER_D): _t(_S.TERMINATED, _A.TERMINATE),
        (_S.ACCEPTED, _I.RECV_2XX): _t(_S.ACCEPTED, _A.PASS_RESPONSE),
        (_S.ACCEPTED, _I.TIMER_M): _t(_S.TERMINATED, _A.TERMINATE),
    },
)  # fmt: skip

#: RFC 3261 Figure 6.
#:
#: Absorbed: every response in Completed (retransmissions of the final); timers that were
#: stopped.  Timer E keeps running across Trying -> Proceeding and is reset to T2 when it next
#: fires (§17.1.2.2).
NON_INVITE_CLIENT = Machine(
    "non-INVITE client",
    (_S.INITIAL, _S.TRYING, _S.PROCEEDING, _S.COMPLETED, _S.TERMINATED),
    (
        _I.SEND_REQUEST,
        _I.RECV_1XX,
        _I.RECV_2XX,
        _I.RECV_300_699,
        _I.TRANSPORT_ERROR,
        _I.TIMER_E,
        _I.TIMER_F,
        _I.TIMER_K,
    ),
    {
        (_S.INITIAL, _I.SEND_REQUEST): _t(_S.TRYING, _A.SEND_REQUEST, _A.START_E, _A.START_F),
        (_S.TRYING, _I.TIMER_E): _t(_S.TRYING, _A.RETRANSMIT_REQUEST, _A.BACKOFF_E),
        (_S.TRYING, _I.TIMER_F): _t(_S.TERMINATED, _A.REPORT_TIMEOUT, _A.TERMINATE),
        (_S.TRYING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.TRYING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_RESPONSE),
        (_S.TRYING, _I.RECV_2XX): _t(_S.COMPLETED, _A.STOP_E, _A.STOP_F, _A.PASS_RESPONSE, _A.START_K),
        (_S.TRYING, _I.RECV_300_699): _t(_S.COMPLETED, _A.STOP_E, _A.STOP_F, _A.PASS_RESPONSE, _A.START_K),
        (_S.PROCEEDING, _I.TIMER_E): _t(_S.PROCEEDING, _A.RETRANSMIT_REQUEST, _A.RESET_E_T2),
        (_S.PROCEEDING, _I.TIMER_F): _t(_S.TERMINATED, _A.REPORT_TIMEOUT, _A.TERMINATE),
        (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.PROCEEDING, _I.RECV_1XX): _t(_S.PROCEEDING, _A.PASS_RESPONSE),
        (_S.PROCEEDING, _I.RECV_2XX): _t(_S.COMPLETED, _A.STOP_E, _A.STOP_F, _A.PASS_RESPONSE, _A.START_K),
        (_S.PROCEEDING, _I.RECV_300_699): _t(_S.COMPLETED, _A.STOP_E, _A.STOP_F, _A.PASS_RESPONSE, _A.START_K),
        (_S.COMPLETED, _I.TIMER_K): _t(_S.TERMINATED, _A.TERMINATE),
    },
)  # fmt: skip

#: RFC 3261 Figure 7 as amended by RFC 6026 Figure 3.
#:
#: Absorbed: an ACK in Proceeding (nothing to acknowledge yet) and in Confirmed (a retransmitted
#: ACK); INVITE retransmissions in Confirmed and Accepted (RFC 6026 §8.7: never to the TU, and
#: 2xx retransmission is the TU's job); a transport error in Confirmed and Accepted; timers that
#: were stopped.  In Accepted the TU's 2xx retransmissions are sent and ACKs go up.
INVITE_SERVER = Machine(
    "INVITE server",
    (_S.INITIAL, _S.PROCEEDING, _S.COMPLETED, _S.CONFIRMED, _S.ACCEPTED, _S.TERMINATED),
    (
        _I.RECV_REQUEST,
        _I.RECV_REQUEST_RETRANS,
        _I.RECV_ACK,
        _I.TU_1XX,
        _I.TU_2XX,
        _I.TU_300_699,
        _I.TRANSPORT_ERROR,
        _I.TIMER_G,
        _I.TIMER_H,
        _I.TIMER_I,
        _I.TIMER_L,
        _I.TIMER_TRYING,
    ),
    {
        (_S.INITIAL, _I.RECV_REQUEST): _t(_S.PROCEEDING, _A.PASS_REQUEST, _A.START_TRYING),
        (_S.PROCEEDING, _I.TIMER_TRYING): _t(_S.PROCEEDING, _A.SEND_TRYING),
        (_S.PROCEEDING, _I.RECV_REQUEST_RETRANS): _t(_S.PROCEEDING, _A.RESEND_RESPONSE),
        (_S.PROCEEDING, _I.TU_1XX): _t(_S.PROCEEDING, _A.STOP_TRYING, _A.SEND_RESPONSE),
        (_S.PROCEEDING, _I.TU_2XX): _t(_S.ACCEPTED, _A.STOP_TRYING, _A.SEND_RESPONSE, _A.START_L),
        (_S.PROCEEDING, _I.TU_300_699): _t(_S.COMPLETED, _A.STOP_TRYING, _A.SEND_RESPONSE, _A.START_G, _A.START_H),
        (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.COMPLETED, _I.RECV_REQUEST_RETRANS): _t(_S.COMPLETED, _A.RESEND_RESPONSE),
        (_S.COMPLETED, _I.TIMER_G): _t(_S.COMPLETED, _A.RESEND_RESPONSE, _A.BACKOFF_G),
        (_S.COMPLETED, _I.RECV_ACK): _t(_S.CONFIRMED, _A.STOP_G, _A.STOP_H, _A.START_I),
        (_S.COMPLETED, _I.TIMER_H): _t(_S.TERMINATED, _A.REPORT_TIMEOUT, _A.TERMINATE),
        (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.CONFIRMED, _I.TIMER_I): _t(_S.TERMINATED, _A.TERMINATE),
        (_S.ACCEPTED, _I.TU_2XX): _t(_S.ACCEPTED, _A.SEND_RESPONSE),
        (_S.ACCEPTED, _I.RECV_ACK): _t(_S.ACCEPTED, _A.PASS_ACK),
        (_S.ACCEPTED, _I.TIMER_L): _t(_S.TERMINATED, _A.TERMINATE),
    },
)  # fmt: skip

#: RFC 3261 Figure 8.
#:
#: Absorbed: request retransmissions in Trying (nothing to answer with yet, §17.2.2); a transport
#: error in Trying (nothing was sent); timers that were stopped.
NON_INVITE_SERVER = Machine(
    "non-INVITE server",
    (_S.INITIAL, _S.TRYING, _S.PROCEEDING, _S.COMPLETED, _S.TERMINATED),
    (
        _I.RECV_REQUEST,
        _I.RECV_REQUEST_RETRANS,
        _I.TU_1XX,
        _I.TU_2XX,
        _I.TU_300_699,
        _I.TRANSPORT_ERROR,
        _I.TIMER_J,
    ),
    {
        (_S.INITIAL, _I.RECV_REQUEST): _t(_S.TRYING, _A.PASS_REQUEST),
        (_S.TRYING, _I.TU_1XX): _t(_S.PROCEEDING, _A.SEND_RESPONSE),
        (_S.TRYING, _I.TU_2XX): _t(_S.COMPLETED, _A.SEND_RESPONSE, _A.START_J),
        (_S.TRYING, _I.TU_300_699): _t(_S.COMPLETED, _A.SEND_RESPONSE, _A.START_J),
        (_S.PROCEEDING, _I.TU_1XX): _t(_S.PROCEEDING, _A.SEND_RESPONSE),
        (_S.PROCEEDING, _I.TU_2XX): _t(_S.COMPLETED, _A.SEND_RESPONSE, _A.START_J),
        (_S.PROCEEDING, _I.TU_300_699): _t(_S.COMPLETED, _A.SEND_RESPONSE, _A.START_J),
        (_S.PROCEEDING, _I.RECV_REQUEST_RETRANS): _t(_S.PROCEEDING, _A.RESEND_RESPONSE),
        (_S.PROCEEDING, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.COMPLETED, _I.RECV_REQUEST_RETRANS): _t(_S.COMPLETED, _A.RESEND_RESPONSE),
        (_S.COMPLETED, _I.TRANSPORT_ERROR): _t(_S.TERMINATED, _A.REPORT_TRANSPORT_ERROR, _A.TERMINATE),
        (_S.COMPLETED, _I.TIMER_J): _t(_S.TERMINATED, _A.TERMINATE),
    },
)  # fmt: skip

#: All four, by name.
MACHINES: dict[str, Machine] = {
    m.name: m for m in (INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER, NON_INVITE_SERVER)
}
