"""The call state table: every legal row, and every illegal (state, input) pair."""

from __future__ import annotations

import itertools

import pytest

from sbcsim.dialog.states import LOCAL_INPUTS, TRANSITIONS, CallInput, CallState, can, transition
from sbcsim.errors import LocalProtocolError

S = CallState
I = CallInput  # noqa: E741

# Written out independently of the module's table, row by row from RFC 3261 §13-15.
EXPECTED: dict[tuple[CallState, CallInput], CallState] = {
    (S.CALLING, I.RECV_PROVISIONAL): S.PROCEEDING,
    (S.CALLING, I.RECV_SUCCESS): S.CONFIRMED,
    (S.CALLING, I.RECV_FAILURE): S.ENDED,
    (S.CALLING, I.SEND_CANCEL): S.CALLING,
    (S.PROCEEDING, I.RECV_PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.RECV_SUCCESS): S.CONFIRMED,
    (S.PROCEEDING, I.RECV_FAILURE): S.ENDED,
    (S.PROCEEDING, I.SEND_CANCEL): S.PROCEEDING,
    (S.INCOMING, I.SEND_PROVISIONAL): S.EARLY,
    (S.INCOMING, I.SEND_SUCCESS): S.ANSWERED,
    (S.INCOMING, I.SEND_FAILURE): S.ENDED,
    (S.INCOMING, I.RECV_CANCEL): S.ENDED,
    (S.EARLY, I.SEND_PROVISIONAL): S.EARLY,
    (S.EARLY, I.SEND_SUCCESS): S.ANSWERED,
    (S.EARLY, I.SEND_FAILURE): S.ENDED,
    (S.EARLY, I.RECV_CANCEL): S.ENDED,
    (S.EARLY, I.RECV_BYE): S.ENDED,
    (S.ANSWERED, I.RECV_ACK): S.CONFIRMED,
    (S.ANSWERED, I.ACK_TIMEOUT): S.ENDING,
    (S.ANSWERED, I.RECV_BYE): S.ENDED,
    (S.ANSWERED, I.RECV_CANCEL): S.ANSWERED,
    (S.CONFIRMED, I.RECV_SUCCESS): S.CONFIRMED,
    (S.CONFIRMED, I.RECV_ACK): S.CONFIRMED,
    (S.CONFIRMED, I.SEND_BYE): S.ENDING,
    (S.CONFIRMED, I.RECV_BYE): S.ENDED,
    (S.ENDING, I.RECV_SUCCESS): S.ENDING,
    (S.ENDING, I.RECV_ACK): S.ENDING,
    (S.ENDING, I.RECV_BYE): S.ENDING,
    (S.ENDING, I.BYE_DONE): S.ENDED,
}


def test_table_is_exactly_the_expected_rows() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("pair", "target"), sorted(EXPECTED.items()))
def test_every_legal_row(pair: tuple[CallState, CallInput], target: CallState) -> None:
    state, event = pair
    assert can(state, event)
    assert transition(state, event) is target


ILLEGAL = [p for p in itertools.product(CallState, CallInput) if p not in EXPECTED]


@pytest.mark.parametrize("pair", ILLEGAL)
def test_every_illegal_pair_raises(pair: tuple[CallState, CallInput]) -> None:
    state, event = pair
    assert not can(state, event)
    with pytest.raises(LocalProtocolError) as info:
        transition(state, event)
    assert state.name in info.value.msg
    assert info.value.status_hint is None


def test_ended_is_final_and_every_state_is_reachable() -> None:
    assert not any(state is S.ENDED for state, _ in EXPECTED)
    reached = {S.CALLING, S.INCOMING} | set(EXPECTED.values())
    assert reached == set(CallState)


def test_local_inputs_are_the_api_calls() -> None:
    assert {I.SEND_CANCEL, I.SEND_PROVISIONAL, I.SEND_SUCCESS, I.SEND_FAILURE, I.SEND_BYE} == set(
        LOCAL_INPUTS
    )
    assert len(ILLEGAL) + len(EXPECTED) == len(CallState) * len(CallInput)
