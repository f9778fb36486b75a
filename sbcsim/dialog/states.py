"""The life of one call (an INVITE usage, RFC 3261 §13-15) as a table.

Rule: which state a call is in after something happens is decided here and nowhere else; the
UA core only turns messages, API calls and timers into :class:`CallInput` values.  A pair that is
not in :data:`TRANSITIONS` is illegal.  What that means depends on who caused it:

* an API call (:data:`LOCAL_INPUTS`) raises :class:`~sbcsim.errors.LocalProtocolError` — the
  application asked for something SIP forbids (a BYE before the ACK, a 180 after the 200 ...);
* a message or a timer is ignored — a late retransmission, a 1xx after the 2xx, a crossing BYE.

Re-INVITEs, UPDATEs and the other requests inside a call do not move the call between these
states; they are tracked beside it (offer/answer flags, session timer, subscriptions).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from sbcsim.errors import LocalProtocolError

__all__ = [
    "LOCAL_INPUTS",
    "TRANSITIONS",
    "CallInput",
    "CallState",
    "can",
    "transition",
]


class CallState(IntEnum):
    """Where a call stands.  Caller states: CALLING, PROCEEDING; callee states: INCOMING,
    EARLY, ANSWERED; both: CONFIRMED, ENDING, ENDED."""

    CALLING = 1  # caller: INVITE sent, nothing back yet
    PROCEEDING = 2  # caller: a provisional arrived (CANCEL is now allowed, §9.1)
    INCOMING = 3  # callee: INVITE received, nothing sent by the application yet
    EARLY = 4  # callee: a provisional sent
    ANSWERED = 5  # callee: 2xx sent, waiting for the ACK (2xx retransmitted meanwhile)
    CONFIRMED = 6  # the session is up
    ENDING = 7  # we sent BYE; waiting for its final response
    ENDED = 8


class CallInput(IntEnum):
    """What can happen to a call."""

    # caller side
    RECV_PROVISIONAL = 1
    RECV_SUCCESS = 2
    RECV_FAILURE = 3  # final non-2xx, or the INVITE timed out / could not be sent
    SEND_CANCEL = 4
    # callee side
    SEND_PROVISIONAL = 5
    SEND_SUCCESS = 6
    SEND_FAILURE = 7
    RECV_CANCEL = 8
    RECV_ACK = 9
    ACK_TIMEOUT = 10  # 64*T1 without the ACK for our 2xx: we send BYE
    # both
    SEND_BYE = 11
    RECV_BYE = 12
    BYE_DONE = 13  # our BYE got its final response (or timed out)


S = CallState
I = CallInput  # noqa: E741 - short alias keeps the table readable

TRANSITIONS: Mapping[tuple[CallState, CallInput], CallState] = {
    # caller
    (S.CALLING, I.RECV_PROVISIONAL): S.PROCEEDING,
    (S.CALLING, I.RECV_SUCCESS): S.CONFIRMED,
    (S.CALLING, I.RECV_FAILURE): S.ENDED,
    (S.CALLING, I.SEND_CANCEL): S.CALLING,  # queued until a provisional arrives (§9.1)
    (S.PROCEEDING, I.RECV_PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.RECV_SUCCESS): S.CONFIRMED,
    (S.PROCEEDING, I.RECV_FAILURE): S.ENDED,
    (S.PROCEEDING, I.SEND_CANCEL): S.PROCEEDING,
    # callee
    (S.INCOMING, I.SEND_PROVISIONAL): S.EARLY,
    (S.INCOMING, I.SEND_SUCCESS): S.ANSWERED,
    (S.INCOMING, I.SEND_FAILURE): S.ENDED,
    (S.INCOMING, I.RECV_CANCEL): S.ENDED,
    (S.EARLY, I.SEND_PROVISIONAL): S.EARLY,
    (S.EARLY, I.SEND_SUCCESS): S.ANSWERED,
    (S.EARLY, I.SEND_FAILURE): S.ENDED,
    (S.EARLY, I.RECV_CANCEL): S.ENDED,
    (S.EARLY, I.RECV_BYE): S.ENDED,  # the caller may end an early dialog with BYE (§15)
    (S.ANSWERED, I.RECV_ACK): S.CONFIRMED,
    (S.ANSWERED, I.ACK_TIMEOUT): S.ENDING,
    (S.ANSWERED, I.RECV_BYE): S.ENDED,  # the ACK was lost and the BYE overtook it
    (S.ANSWERED, I.RECV_CANCEL): S.ANSWERED,  # too late: 200 to the CANCEL, nothing else
    # both
    (S.CONFIRMED, I.RECV_SUCCESS): S.CONFIRMED,  # a retransmitted 2xx: ACK it again
    (S.CONFIRMED, I.RECV_ACK): S.CONFIRMED,  # a retransmitted ACK, or a re-INVITE's
    (S.CONFIRMED, I.SEND_BYE): S.ENDING,
    (S.CONFIRMED, I.RECV_BYE): S.ENDED,
    (S.ENDING, I.RECV_SUCCESS): S.ENDING,
    (S.ENDING, I.RECV_ACK): S.ENDING,
    (S.ENDING, I.RECV_BYE): S.ENDING,  # BYEs crossed: answer 200, keep waiting for ours
    (S.ENDING, I.BYE_DONE): S.ENDED,
}

#: Inputs caused by the application through the API; an illegal one raises.
LOCAL_INPUTS: frozenset[CallInput] = frozenset(
    {I.SEND_CANCEL, I.SEND_PROVISIONAL, I.SEND_SUCCESS, I.SEND_FAILURE, I.SEND_BYE}
)


def can(state: CallState, event: CallInput) -> bool:
    """Whether ``event`` is legal in ``state``."""
    return (state, event) in TRANSITIONS


def transition(state: CallState, event: CallInput) -> CallState:
    """The next state; raises :class:`LocalProtocolError` for an illegal pair.

    Callers check :func:`can` first for inputs from the network or the clock, which are
    ignored rather than raised when illegal.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"cannot {event.name.lower().replace('_', ' ')} in call state {state.name}",
            None,
        ) from None
