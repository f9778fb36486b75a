"""Discrete-event simulation: one virtual clock, one event heap, seeded randomness.

Everything that happens in a simulated lab — a datagram arriving, a transaction timer firing, a
scripted user hanging up — is a callback on this heap, keyed by ``(deadline, seq)``.  ``seq`` is a
counter taken when the event is scheduled, so two events due at the same instant run in the order
they were scheduled.  That tie-break is the whole reason for owning a heap instead of borrowing
asyncio's (whose timer heap compares deadlines only): with it, the same seed gives the same events
in the same order and therefore the same bytes on the wire, run after run.

Time only moves when an event runs (or a bounded wait expires), so a 30-minute call flow takes as
long as its callbacks take to execute.  An exception raised by a callback propagates out of
:meth:`Simulator.step` / :meth:`Simulator.run_until` unchanged, so a failing test shows the real
traceback.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from heapq import heappop, heappush
from typing import TypeVarTuple

from sbcsim.clock import VirtualClock
from sbcsim.ids import IdGenerator

__all__ = ["Simulator", "TimerHandle"]

_Ts = TypeVarTuple("_Ts")


class TimerHandle:
    """A scheduled callback; :meth:`cancel` it to make the simulator skip it.

    Cancelled handles stay in the heap and are discarded when they reach its top, which keeps
    cancellation O(1) — transaction timers are cancelled far more often than they fire.
    """

    __slots__ = ("_args", "_callback", "_cancelled", "when")

    def __init__(
        self, when: float, callback: Callable[..., object], args: tuple[object, ...]
    ) -> None:
        self.when = when
        self._callback: Callable[..., object] | None = callback
        self._args = args
        self._cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (harmless if it already ran or was cancelled)."""
        self._cancelled = True
        self._callback = None  # drop references early: cancelled timers may linger in the heap
        self._args = ()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<TimerHandle when={self.when!r}{state}>"


class Simulator:
    """The event loop of a simulated lab.

    ``sim.clock`` is the virtual clock every component reads, ``sim.ids`` mints SIP identifiers,
    ``sim.rng`` is ``random.Random(seed)`` and :meth:`derive_rng` gives each consumer (the network,
    each scripted user ...) its own stream, so adding randomness in one place does not shift the
    numbers drawn anywhere else.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.clock = VirtualClock()
        self.rng = random.Random(seed)
        self.ids = IdGenerator(self.derive_rng("ids"))
        self.events_run = 0
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._running = False

    def derive_rng(self, name: str) -> random.Random:
        """A fresh ``random.Random`` for ``name``, the same for the same (seed, name) everywhere.

        The seed material is a SHA-256 of the seed and the name, never Python's ``hash()``
        (which is salted per process for strings).  Each call returns a new generator at the start
        of that stream, so ask once per consumer and keep it.
        """
        digest = hashlib.sha256(f"sbcsim\0{self.seed}\0{name}".encode()).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def now(self) -> float:
        """The current virtual time (so a simulator can be passed wherever a Clock is expected)."""
        return self.clock.now()

    # -- scheduling ---------------------------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[*_Ts], object], *args: *_Ts) -> TimerHandle:
        """Run ``callback(*args)`` at virtual time ``when``.

        A deadline in the past runs at the current time (after everything already due now), like
        asyncio; a NaN deadline is a ValueError.
        """
        now = self.clock.now()
        if not when >= now:
            if when != when:
                raise ValueError("cannot schedule an event at NaN")
            when = now
        seq = self._seq
        self._seq = seq + 1
        handle = TimerHandle(when, callback, args)
        heappush(self._heap, (when, seq, handle))
        return handle

    def call_later(
        self, delay: float, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> TimerHandle:
        """Run ``callback(*args)`` ``delay`` seconds from now."""
        return self.call_at(self.clock.now() + delay, callback, *args)

    def call_soon(self, callback: Callable[[*_Ts], object], *args: *_Ts) -> TimerHandle:
        """Run ``callback(*args)`` at the current time, after everything already due now."""
        return self.call_at(self.clock.now(), callback, *args)

    def next_deadline(self) -> float | None:
        """When the next live event is due, or None if nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2]._cancelled:
            heappop(heap)
        return heap[0][0] if heap else None

    def pending(self) -> int:
        """How many live (not cancelled) events are scheduled."""
        return sum(1 for entry in self._heap if not entry[2]._cancelled)

    # -- running --------------------------------------------------------------------------------

    def step(self) -> bool:
        """Run the next live event, moving the clock to its deadline; False if there is none."""
        self._enter()
        try:
            return self._run_next(math.inf)
        finally:
            self._running = False

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run events until ``predicate()`` holds or ``timeout`` virtual seconds have passed.

        The predicate is checked first and then after every event; when it becomes true the
        clock stays at that event's time.  Otherwise every event due up to and including
        ``now + timeout`` runs, the clock is set to exactly that deadline, and False is returned
        (later events stay queued).
        """
        deadline = self._deadline(timeout)
        if predicate():
            return True
        self._enter()
        try:
            while self._run_next(deadline):
                if predicate():
                    return True
        finally:
            self._running = False
        self.clock.advance_to(deadline)
        return False

    def run_for(self, duration: float) -> None:
        """Run every event due in the next ``duration`` seconds; the clock ends at now + duration."""
        deadline = self._deadline(duration)
        self._enter()
        try:
            while self._run_next(deadline):
                pass
        finally:
            self._running = False
        self.clock.advance_to(deadline)

    def run_until_idle(self, max_time: float = 3600.0) -> None:
        """Run events until none is left, but none due later than ``now + max_time``.

        The bound keeps periodic timers (keep-alives, session refresh) from turning this into an
        endless loop.  The clock is left at the last event that ran.
        """
        deadline = self._deadline(max_time)
        self._enter()
        try:
            while self._run_next(deadline):
                pass
        finally:
            self._running = False

    # -- internals ------------------------------------------------------------------------------

    def _run_next(self, deadline: float) -> bool:
        heap = self._heap
        while heap:
            if heap[0][0] > deadline:
                return False
            when, _, handle = heappop(heap)
            callback = handle._callback
            if handle._cancelled or callback is None:
                continue
            self.clock.advance_to(when)
            self.events_run += 1
            callback(*handle._args)
            return True
        return False

    def _deadline(self, duration: float) -> float:
        if not (duration >= 0 and math.isfinite(duration)):
            raise ValueError(
                f"a simulated wait needs a finite, non-negative bound, got {duration!r}"
            )
        return self.clock.now() + duration

    def _enter(self) -> None:
        if self._running:
            raise RuntimeError("the simulator is already running (called from inside an event?)")
        self._running = True

    def __repr__(self) -> str:
        return f"<Simulator seed={self.seed} now={self.clock.now()!r} queued={len(self._heap)}>"
