"""Where "now" comes from.

The SIP core never reads the time itself: every method that cares takes ``now`` as an argument,
and whoever drives the core asks a :class:`Clock`.  In simulation that is a :class:`VirtualClock`
that only moves when the discrete-event simulator moves it, so a 32-second Timer B costs nothing
and two runs with the same seed see the very same instants.  Live, :class:`LoopClock` reads the
asyncio loop's monotonic clock, so timer deadlines and ``loop.call_at`` agree.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = ["Clock", "LoopClock", "VirtualClock"]


class Clock(Protocol):
    """Anything that can tell the current time in seconds (monotonic, arbitrary origin)."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


class VirtualClock:
    """A clock that stands still until told to move, and never moves backwards.

    Going backwards is refused because every deadline computed from an earlier reading would
    silently become wrong; it always means a bug in whoever drives the clock.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"clock start must be finite, got {start!r}")
        self._now = float(start)

    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    def advance_to(self, t: float) -> None:
        """Jump to ``t``; staying at the same instant is allowed, going back is a ValueError."""
        if not t >= self._now:  # also rejects NaN
            raise ValueError(f"virtual clock cannot go backwards from {self._now!r} to {t!r}")
        if math.isinf(t):
            raise ValueError("virtual clock cannot advance to infinity")
        self._now = float(t)

    def advance(self, dt: float) -> None:
        """Move forward by ``dt`` seconds (``dt`` >= 0)."""
        self.advance_to(self._now + dt)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r})"


class LoopClock:
    """The clock of a running asyncio loop (``loop.time()``), for live mode."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        """The loop's monotonic time, the same scale ``loop.call_at`` uses."""
        return self._loop.time()

    def __repr__(self) -> str:
        return f"LoopClock(now={self._loop.time()!r})"
