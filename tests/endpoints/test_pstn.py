"""The PSTN carrier and its phones against a raw-UA SBC PSTN side (UDP 5060) on the memory
network: what a plain carrier sends (RTP/AVP G.711 with telephone-event, sendonly hold) and how
phones answer per their behaviour."""

from __future__ import annotations

from typing import Any

import pytest

from sbcsim.dialog import (
    CallEstablished,
    CallFailed,
    IncomingCall,
    ReinviteReceived,
    SessionTimerConfig,
    UserAgent,
)
from sbcsim.endpoints.basic import g711_sdp
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab
from sbcsim.node import Node
from sbcsim.stack import UaOptions, sim_node

CHICAGO = "+13125550101"  # answers after 1 s
BUSY_LINE = "+13125550103"  # rejects 486 at once
LONDON = "+442079460000"  # never answers


class PstnSideSbc:
    """A bare UA at the SBC's PSTN-side address."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.events: list[Any] = []
        self.node: Node = sim_node(
            lab.sim,
            lab.net,
            "sbc-pstn",
            "127.0.0.2",
            transport="udp",
            port=5060,
            on_event=self.events.append,
            options=UaOptions(session_timer=SessionTimerConfig(enabled=False)),
        )

    @property
    def ua(self) -> UserAgent:
        stack: Any = self.node.stack
        return stack  # type: ignore[no-any-return]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def call(self, number: str) -> Any:
        ref = self.ua.invite(
            f"sip:{number}@127.0.2.1:5060;user=phone",
            from_="<sip:+14255550101@127.0.0.2;user=phone>",
            to=f"<sip:{number}@127.0.2.1;user=phone>",
            remote=("127.0.2.1", 5060),
            sdp=g711_sdp("127.0.0.2", 30000),
            now=self.lab.now(),
        )
        self.node.poke()
        return ref


@pytest.fixture
def lab() -> Lab:
    return Lab.build(settings=MicrosoftSettings(send_options=False))


@pytest.fixture
def sbc(lab: Lab) -> PstnSideSbc:
    return PstnSideSbc(lab)


def test_phone_call_reaches_sbc_pstn_side_with_g711_and_telephone_event(
    lab: Lab, sbc: PstnSideSbc
) -> None:
    lab.phone(CHICAGO).call("+14255550101")
    lab.run_for(1)
    (incoming,) = sbc.of(IncomingCall)
    request = incoming.request
    assert str(request.uri) == "sip:+14255550101@127.0.0.2:5060;user=phone"
    assert request.headers.get("From", "").startswith("<sip:+13125550101@127.0.2.1;user=phone>")
    assert b"m=audio 50002 RTP/AVP 0 8 101" in request.body
    assert b"a=rtpmap:101 telephone-event/8000" in request.body
    assert incoming.peer.remote == ("127.0.2.1", 5060)


def test_phone_call_is_answered_and_hung_up(lab: Lab, sbc: PstnSideSbc) -> None:
    call = lab.phone(CHICAGO).call("+14255550101")
    lab.run_for(0.5)
    (incoming,) = sbc.of(IncomingCall)
    sbc.ua.respond(incoming.call, 180, now=lab.now())
    sbc.ua.respond(incoming.call, 200, sdp=g711_sdp("127.0.0.2", 30000), now=lab.now())
    sbc.node.poke()
    lab.run_for(0.5)
    assert call.state == "connected" and call.ringing_seen
    lab.phone(CHICAGO).hang_up()
    lab.run_for(0.5)
    assert (call.state, call.end_reason) == ("ended", "local-bye")


def test_phone_answers_per_its_behaviour_after_its_delay(lab: Lab, sbc: PstnSideSbc) -> None:
    ref = sbc.call(CHICAGO)
    lab.run_for(0.5)
    assert sbc.of(CallEstablished) == []
    lab.run_for(1)
    (established,) = sbc.of(CallEstablished)
    assert established.call == ref
    call = lab.phone(CHICAGO).calls[0]
    assert call.established_at is not None and round(call.established_at, 6) == 1.003


def test_busy_phone_rejects_486(lab: Lab, sbc: PstnSideSbc) -> None:
    sbc.call(BUSY_LINE)
    lab.run_for(1)
    (failed,) = sbc.of(CallFailed)
    assert failed.status == 486


def test_unknown_number_gets_404(lab: Lab, sbc: PstnSideSbc) -> None:
    sbc.call("+19995550000")
    lab.run_for(1)
    assert sbc.of(CallFailed)[0].status == 404
    assert len(lab.pstn.unknown) == 1


def test_scripted_answer_and_reject(lab: Lab, sbc: PstnSideSbc) -> None:
    sbc.call(LONDON)
    lab.run_for(1)
    lab.phone(LONDON).answer()
    lab.run_for(1)
    assert len(sbc.of(CallEstablished)) == 1
    sbc.call(LONDON)
    lab.run_for(1)
    lab.phone(LONDON).reject(603)
    lab.run_for(1)
    assert sbc.of(CallFailed)[0].status == 603


def test_pstn_hold_is_sendonly(lab: Lab, sbc: PstnSideSbc) -> None:
    sbc.call(CHICAGO)
    lab.run_for(2)
    phone = lab.phone(CHICAGO)
    phone.hold()
    lab.run_for(1)
    phone.resume()
    lab.run_for(1)
    reinvites = sbc.of(ReinviteReceived)
    assert [r.hold for r in reinvites] == [True, False]
    assert b"a=sendonly" in (reinvites[0].sdp or b"")


def test_pstn_hold_and_resume_offers_carry_a_new_sdp_version(lab: Lab, sbc: PstnSideSbc) -> None:
    # RFC 3264 §8: each changed offer has the o= version of the previous SDP plus one, so the
    # SBC does not take the hold for a session refresh.
    sbc.call(CHICAGO)
    lab.run_for(2)
    session = lab.phone(CHICAGO).current().session
    phone = lab.phone(CHICAGO)
    phone.hold()
    lab.run_for(1)
    phone.resume()
    lab.run_for(1)
    origins = [
        next(line for line in (r.sdp or b"").split(b"\r\n") if line.startswith(b"o="))
        for r in sbc.of(ReinviteReceived)
    ]
    assert origins == [
        f"o=sbcsim {session} 2 IN IP4 127.0.2.1".encode(),
        f"o=sbcsim {session} 3 IN IP4 127.0.2.1".encode(),
    ]
