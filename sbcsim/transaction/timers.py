"""Transaction timer durations (RFC 3261 §17 and Table 4, RFC 6026 §8.4/§8.11).

Every timer derives from three constants: T1 (the round-trip estimate), T2 (the cap on
retransmission intervals for non-INVITE requests and INVITE responses) and T4 (how long a message
may linger in the network).  Timers that only exist to drive retransmission or to absorb
retransmissions (A, E, G and D, I, J, K) depend on whether the transport is reliable: a stream
transport retransmits on its own, so A/E/G are not used and D/I/J/K collapse to zero.

A duration of ``None`` means "do not start this timer"; ``0.0`` means "fire at once" (the state it
guards is left immediately, §17.1.1.2, §17.2.1, §17.2.2, §17.1.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIMER_NAMES", "TimerConfig"]

#: Every timer a :class:`TimerConfig` knows, plus ``"Trying"`` (the 200 ms 100-Trying delay).
TIMER_NAMES: tuple[str, ...] = (
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "I",
    "J",
    "K",
    "L",
    "M",
    "Trying",
)


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2 and T4, and the durations derived from them.

    ``trying`` is how long an INVITE server transaction waits for the TU's first response before
    sending 100 Trying itself (RFC 3261 §17.2.1: "unless it knows that the TU will generate a
    provisional or final response within 200 ms"); ``None`` never sends it, ``0.0`` sends it at
    once.  A TU that answers within the delay suppresses it.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying: float | None = 0.2

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0):
            raise ValueError(f"need 0 < T1 <= T2 and T4 > 0, got {self.t1}, {self.t2}, {self.t4}")
        if self.trying is not None and self.trying < 0:
            raise ValueError(f"the 100 Trying delay cannot be negative, got {self.trying}")

    # -- INVITE client (§17.1.1.2, RFC 6026 §8.4) ------------------------------------------------
    def timer_a(self, reliable: bool) -> float | None:
        """First INVITE retransmission interval; doubles after each firing, without a cap."""
        return None if reliable else self.t1

    def timer_b(self, reliable: bool = False) -> float:
        """INVITE transaction timeout (Calling state only)."""
        return 64 * self.t1

    def timer_c(self, reliable: bool = False) -> float:
        """Proxy INVITE transaction timeout (§16.6 step 11: "larger than 3 minutes").

        Not used by this layer (it is no proxy); given for completeness of Table 4."""
        return max(181.0, 64 * self.t1)

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmissions after a non-2xx final.

        "At least 32 seconds" over UDP; it must also outlive the server's Timer H (64*T1), the
        span during which the server may still retransmit its final response."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def timer_m(self, reliable: bool = False) -> float:
        """RFC 6026: how long the INVITE client stays in Accepted to catch forked 2xx."""
        return 64 * self.t1

    # -- non-INVITE client (§17.1.2.2) ----------------------------------------------------------
    def timer_e(self, reliable: bool) -> float | None:
        """First non-INVITE retransmission interval; doubles up to T2 (T2 once Proceeding)."""
        return None if reliable else self.t1

    def timer_f(self, reliable: bool = False) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait time for response retransmissions in Completed."""
        return 0.0 if reliable else self.t4

    # -- INVITE server (§17.2.1, RFC 6026 §8.7) -------------------------------------------------
    def timer_g(self, reliable: bool) -> float | None:
        """First retransmission interval of a non-2xx final; doubles up to T2."""
        return None if reliable else self.t1

    def timer_h(self, reliable: bool = False) -> float:
        """Wait time for the ACK of a non-2xx final."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Wait time for ACK retransmissions in Confirmed."""
        return 0.0 if reliable else self.t4

    def timer_l(self, reliable: bool = False) -> float:
        """RFC 6026: how long the INVITE server stays in Accepted (absorbing INVITE
        retransmissions, passing ACKs and the TU's 2xx retransmissions)."""
        return 64 * self.t1

    # -- non-INVITE server (§17.2.2) ------------------------------------------------------------
    def timer_j(self, reliable: bool) -> float:
        """Wait time for request retransmissions in Completed."""
        return 0.0 if reliable else 64 * self.t1

    # -- generic ----------------------------------------------------------------------------------
    def duration(self, name: str, reliable: bool) -> float | None:
        """The duration of timer ``name`` (``"A"`` .. ``"M"``, ``"Trying"``) on this transport."""
        if name == "Trying":
            return self.trying
        method = getattr(self, "timer_" + name.lower(), None)
        if name not in TIMER_NAMES or method is None:
            raise ValueError(f"unknown transaction timer {name!r}")
        value: float | None = method(reliable)
        return value

    def backoff(self, interval: float, *, capped: bool) -> float:
        """The next retransmission interval: doubled, and capped at T2 unless ``capped`` is False
        (only INVITE requests, Timer A, double without a cap)."""
        doubled = 2 * interval
        return min(doubled, self.t2) if capped else doubled
