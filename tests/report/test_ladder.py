from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console
from rich.style import Style

from sbcsim.report.ladder import Arrow, Ladder, LadderView, actor_name, message_label
from sbcsim.testplan.results import TraceEntry

FULL = (
    "                     pstn                   sbc          sip.pstnhub.microso…\n"
    "   #0 0.000            |- INVITE ----------->|                     |\n"
    ">> #1 0.020            |                     |- INVITE ----------->|\n"
    "   #2 0.050            |                     |<- 100 Trying (INV… -|\n"
    "   #3 1.250            |                     |<- 200 OK (INVITE) --|\n"
    "   #4 1.270            |<- 200 OK (INVITE) --|                     |\n"
    "   #5 1.300            |- ACK -------------->|                     |\n"
)


def test_columns_are_actors_in_order_of_first_appearance(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    assert ladder.actors == ("pstn", "sbc", "sip.pstnhub.microsoft.com")
    assert [(a.index, a.src, a.dst) for a in ladder.arrows] == [
        (0, 0, 1),
        (1, 1, 2),
        (2, 2, 1),
        (3, 2, 1),
        (4, 1, 0),
        (5, 0, 1),
    ]
    assert ladder.arrows[2] == Arrow(
        index=2,
        time=0.05,
        src=2,
        dst=1,
        label="100 Trying (INVITE)",
        summary="SIP/2.0 100 Trying",
        transport="tls",
    )


def test_unnamed_addresses_become_ip_port_columns(sip: SimpleNamespace) -> None:
    request, response, SBC_UDP = sip.request, sip.response, sip.SBC_UDP
    trace = [
        TraceEntry(0, 0.0, ("2001:db8::1", 5060), SBC_UDP, "udp", request("OPTIONS", "sip:sbc")),
        TraceEntry(1, 0.1, SBC_UDP, ("2001:db8::1", 5060), "udp", response(200, "OK", "OPTIONS")),
    ]
    assert Ladder.from_trace(trace).actors == ("[2001:db8::1]:5060", "192.0.2.20:5060")
    assert actor_name("", ("10.0.0.1", 5061)) == "10.0.0.1:5061"
    assert actor_name("sbc", ("10.0.0.1", 5061)) == "sbc"


def test_message_labels(sip: SimpleNamespace) -> None:
    request, response = sip.request, sip.response
    assert message_label(request("INVITE", "sip:x@y")) == "INVITE"
    assert message_label(response(486, "Busy Here", "INVITE")) == "486 Busy Here (INVITE)"
    assert message_label(b"SIP/2.0 200 OK\r\ncseq: 5 OPTIONS\r\n\r\n") == "200 OK (OPTIONS)"
    assert message_label(b"SIP/2.0 200 OK\r\n\r\n") == "200 OK"
    assert message_label(b"\r\n\r\n") == "(keep-alive)"
    assert message_label(b"garbage here\r\n") == "garbage here"


def test_full_text_rendering_marks_the_failing_arrow(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    assert ladder.render_text(failing=1, width=80) == FULL


def test_window_around_a_message(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    assert ladder.render_text(around=4, window=1, failing=4, width=80) == (
        "                     pstn                   sbc          sip.pstnhub.microso…\n"
        "            … 3 earlier messages\n"
        "   #3 1.250            |                     |<- 200 OK (INVITE) --|\n"
        ">> #4 1.270            |<- 200 OK (INVITE) --|                     |\n"
        "   #5 1.300            |- ACK -------------->|                     |\n"
    )
    assert ladder.render_text(around=0, window=1, width=80).splitlines()[-1] == (
        "            … 4 later messages"
    )
    # An index that is not in the trace shows the whole ladder.
    assert ladder.render_text(around=99, failing=1, width=80) == FULL


def test_column_width_is_bounded_and_can_be_fixed(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    wide = ladder.render_text(width=400).splitlines()[1]
    assert wide == (
        "   #0 0.000               |- INVITE ----------------->|                           |"
    )
    narrow = ladder.render_text(column_width=12).splitlines()
    assert narrow[1] == "   #0 0.000       |- INVITE ->|           |"
    assert narrow[3] == "   #2 0.050       |           |<- 100 T… -|"


def test_lost_message_and_message_to_itself(sip: SimpleNamespace) -> None:
    request, response = sip.request, sip.response
    PSTN, SBC_UDP, MS = sip.PSTN, sip.SBC_UDP, sip.MS
    trace = [
        TraceEntry(
            0, 0.0, PSTN, SBC_UDP, "udp", request("BYE", "sip:x"), "pstn", "sbc", dropped=True
        ),
        TraceEntry(1, 0.5, PSTN, MS, "udp", request("BYE", "sip:x"), "pstn", "pstn"),
        TraceEntry(
            2, 0.5, SBC_UDP, PSTN, "udp", response(200, "OK", "BYE"), "sbc", "pstn", dropped=True
        ),
    ]
    assert Ladder.from_trace(trace).render_text(column_width=20) == (
        "                    pstn                 sbc\n"
        "   #0 0.000           |- BYE (lost) -----x|\n"
        "   #1 0.500           |<-' BYE            |\n"
        "   #2 0.500           |x- 200 OK (BYE) … -|\n"
    )


def test_empty_trace() -> None:
    ladder = Ladder.from_trace([])
    assert ladder.actors == ()
    assert ladder.arrows == ()
    assert ladder.render_text() == "\n"


def test_rich_view_styles_the_failing_line_red(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    console = Console(file=io.StringIO(), width=80, color_system="truecolor", _environ={})
    segments = list(console.render(LadderView(ladder, failing=1)))
    failing = [s for s in segments if s.text.startswith(">> #1")]
    assert len(failing) == 1
    assert failing[0].style == Style.parse("bold red")
    plain = Console(file=io.StringIO(), width=80, color_system=None, _environ={})
    plain.print(LadderView(ladder, failing=1))
    assert plain.file.getvalue() == FULL  # type: ignore[attr-defined]


def test_rich_view_crops_instead_of_wrapping(trace: list[TraceEntry]) -> None:
    ladder = Ladder.from_trace(trace)
    console = Console(file=io.StringIO(), width=40, color_system=None, _environ={})
    console.print(LadderView(ladder, around=1, window=0, failing=1))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 4
    assert all(len(line) <= 40 for line in lines)
    assert lines[2].startswith(">> #1 0.020")
