"""Ladder (sequence) diagrams of a scenario's trace: the model, a text rendering, a rich view.

A ladder is the picture SIP engineers think in: one vertical line per party, one arrow per
message.  The model here is shared by every report — the terminal shows a text excerpt around
the failing message, JUnit carries the same text, and the HTML report draws it as SVG — so the
column order and labels are the same wherever a person looks.

Columns are the actors in order of first appearance (source before destination), named by the
trace's actor names, or ``ip:port`` where a trace has no name for an address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from sbcsim.testplan.results import TraceEntry

__all__ = [
    "FAIL_MARK",
    "Arrow",
    "Ladder",
    "LadderLine",
    "LadderView",
    "actor_name",
    "message_label",
]

#: Printed in front of the failing arrow in text ladders.
FAIL_MARK = ">>"
_ELLIPSIS = "…"
_MIN_COLUMN = 12
_MAX_COLUMN = 28


def actor_name(name: str, address: tuple[str, int]) -> str:
    """The column title for one end of a message: its actor name, else ``ip:port``."""
    if name:
        return name
    host, port = address
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def message_label(data: bytes) -> str:
    """The short arrow label: ``INVITE`` for a request, ``200 OK (INVITE)`` for a response.

    The CSeq method tells which request a response answers, which a ladder otherwise loses;
    anything that is not SIP (a keep-alive, garbage) is shown by its first line.
    """
    head, _, rest = data.partition(b"\r\n")
    first = head.decode("utf-8", "replace").strip()
    if not first:
        return "(keep-alive)" if not data.strip() else "(no start line)"
    if first.startswith("SIP/"):
        parts = first.split(" ", 1)
        status = parts[1] if len(parts) > 1 else first
        method = _cseq_method(rest)
        return f"{status} ({method})" if method else status
    if first.endswith("SIP/2.0") and " " in first:
        return first.split(" ", 1)[0]
    return first


def _cseq_method(headers: bytes) -> str:
    for raw in headers.split(b"\r\n"):
        if not raw:
            break
        name, sep, value = raw.partition(b":")
        if sep and name.strip().lower() == b"cseq":
            fields = value.decode("utf-8", "replace").split()
            return fields[1] if len(fields) > 1 else ""
    return ""


@dataclass(frozen=True, slots=True)
class Arrow:
    """One message: from column ``src`` to column ``dst`` (equal for a message to itself)."""

    index: int
    time: float
    src: int
    dst: int
    label: str
    summary: str
    transport: str
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class LadderLine:
    """One line of a text ladder; ``kind`` is header, arrow or gap (``… n earlier``)."""

    text: str
    kind: Literal["header", "arrow", "gap"]
    failing: bool = False
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class Ladder:
    """Actors (columns) and arrows (trace entries, in trace order)."""

    actors: tuple[str, ...]
    arrows: tuple[Arrow, ...]

    @classmethod
    def from_trace(cls, trace: Iterable[TraceEntry]) -> Ladder:
        columns: dict[str, int] = {}
        arrows: list[Arrow] = []
        for entry in trace:
            ends = []
            for name, address in ((entry.src_name, entry.src), (entry.dst_name, entry.dst)):
                actor = actor_name(name, address)
                ends.append(columns.setdefault(actor, len(columns)))
            arrows.append(
                Arrow(
                    index=entry.index,
                    time=entry.time,
                    src=ends[0],
                    dst=ends[1],
                    label=message_label(entry.data),
                    summary=entry.summary,
                    transport=entry.transport,
                    dropped=entry.dropped,
                )
            )
        return cls(tuple(columns), tuple(arrows))

    def position(self, trace_index: int | None) -> int | None:
        """Where the arrow for trace entry ``trace_index`` is in :attr:`arrows`, if anywhere."""
        if trace_index is None:
            return None
        for position, arrow in enumerate(self.arrows):
            if arrow.index == trace_index:
                return position
        return None

    def lines(
        self,
        *,
        around: int | None = None,
        window: int = 4,
        failing: int | None = None,
        width: int = 100,
        column_width: int | None = None,
    ) -> list[LadderLine]:
        """The text ladder as lines (see :meth:`render_text`)."""
        return list(
            _layout(
                self,
                around=around,
                window=window,
                failing=failing,
                width=width,
                column=column_width,
            )
        )

    def render_text(
        self,
        *,
        around: int | None = None,
        window: int = 4,
        failing: int | None = None,
        width: int = 100,
        column_width: int | None = None,
    ) -> str:
        """The ladder as plain text, one arrow per line.

        ``around`` (a trace index) limits the output to ``window`` arrows either side of that
        message, with a line saying how many were left out; ``failing`` (a trace index) puts
        :data:`FAIL_MARK` in front of that arrow.  Columns share ``width`` (between 12 and 28
        characters each) unless ``column_width`` fixes them.
        """
        lines = self.lines(
            around=around, window=window, failing=failing, width=width, column_width=column_width
        )
        return "\n".join(line.text for line in lines) + "\n"


def _layout(
    ladder: Ladder,
    *,
    around: int | None,
    window: int,
    failing: int | None,
    width: int,
    column: int | None,
) -> Iterator[LadderLine]:
    arrows = ladder.arrows
    start, stop = 0, len(arrows)
    centre = ladder.position(around)
    if centre is not None:
        start, stop = max(0, centre - window), min(len(arrows), centre + window + 1)
    shown = arrows[start:stop]
    index_width = max([len(f"#{a.index}") for a in shown] + [1])
    time_width = max([len(f"{a.time:.3f}") for a in shown] + [1])
    gutter = len(FAIL_MARK) + 1 + index_width + 1 + time_width + 1
    count = max(1, len(ladder.actors))
    if column is None:
        column = min(_MAX_COLUMN, max(_MIN_COLUMN, (width - gutter) // count))
    total = gutter + count * column
    centres = [gutter + k * column + column // 2 for k in range(count)]

    header = [" "] * total
    for k, actor in enumerate(ladder.actors):
        name = _clip(actor, column - 2)
        left = max(gutter + k * column, centres[k] - len(name) // 2)
        header[left : left + len(name)] = name
    yield LadderLine("".join(header).rstrip(), "header")

    if start:
        yield LadderLine(f"{'':{gutter}}{_ELLIPSIS} {start} earlier message{_s(start)}", "gap")
    for arrow in shown:
        row = [" "] * total
        for x in centres:
            row[x] = "|"
        _draw(row, arrow, centres, column)
        is_failing = failing is not None and arrow.index == failing
        mark = FAIL_MARK if is_failing else " " * len(FAIL_MARK)
        prefix = f"{mark} {f'#{arrow.index}':>{index_width}} {f'{arrow.time:.3f}':>{time_width}} "
        text = prefix + "".join(row[gutter:])
        yield LadderLine(text.rstrip(), "arrow", failing=is_failing, dropped=arrow.dropped)
    later = len(arrows) - stop
    if later:
        yield LadderLine(f"{'':{gutter}}{_ELLIPSIS} {later} later message{_s(later)}", "gap")


def _draw(row: list[str], arrow: Arrow, centres: list[int], column: int) -> None:
    label = arrow.label + (" (lost)" if arrow.dropped else "")
    if arrow.src == arrow.dst:
        # A message to itself: a short hook to the right of the lifeline.
        x = centres[arrow.src]
        text = _clip("<-' " + label, max(1, len(row) - x - 1))
        row[x + 1 : x + 1 + len(text)] = text
        return
    lo, hi = sorted((centres[arrow.src], centres[arrow.dst]))
    inner = ["-"] * (hi - lo - 1)
    head = "x" if arrow.dropped else None
    if arrow.src < arrow.dst:
        inner[-1] = head or ">"
        start = 1
    else:
        inner[0] = head or "<"
        start = 2
    # Keep at least one dash before the head so the direction stays readable.
    room = len(inner) - 3
    if room > 2:
        text = " " + _clip(label, room - 2) + " "
        inner[start : start + len(text)] = text
    row[lo + 1 : hi] = inner


def _clip(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    if room <= 1:
        return text[:room]
    return text[: room - 1] + _ELLIPSIS


def _s(count: int) -> str:
    return "" if count == 1 else "s"


class LadderView:
    """A rich renderable of a (windowed) ladder, sized to the console, failing arrow in red."""

    def __init__(
        self,
        ladder: Ladder,
        *,
        around: int | None = None,
        window: int = 4,
        failing: int | None = None,
    ) -> None:
        self.ladder = ladder
        self.around = around
        self.window = window
        self.failing = failing

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self.ladder.lines(
            around=self.around, window=self.window, failing=self.failing, width=options.max_width
        )
        for line in lines:
            if line.kind == "header":
                style = "bold"
            elif line.failing:
                style = "bold red"
            elif line.kind == "gap" or line.dropped:
                style = "dim"
            else:
                style = ""
            yield Text(line.text, style=style, no_wrap=True, overflow="crop")
