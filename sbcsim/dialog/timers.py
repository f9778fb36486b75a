"""Session timers (RFC 4028): configuration, negotiation and the two deadlines.

A session timer keeps a call from outliving a crashed peer: one side (the *refresher*) sends a
re-INVITE or UPDATE every half interval, and the other ends the call with BYE when no refresh
arrived ``interval - min(32, interval / 3)`` seconds after the last one (§10).  Who refreshes is
negotiated on every INVITE/UPDATE transaction in terms of that transaction's roles (``uac`` /
``uas``); :class:`SessionTimer` stores the outcome in terms of this UA (local / remote).

The functions here are pure: they read a request or response and a configuration and return
numbers and header fields.  The UA core owns the clock and the scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sbcsim.errors import ConfigError
from sbcsim.sip.message import Request, Response

__all__ = [
    "RFC4028_MIN_SE",
    "SessionTimer",
    "SessionTimerConfig",
    "expiry_delay",
    "negotiate_as_uas",
    "refresh_delay",
    "result_as_uac",
    "session_headers",
    "too_small",
]

#: The smallest Min-SE RFC 4028 allows (§4).
RFC4028_MIN_SE = 90

Role = Literal["uac", "uas"]


@dataclass(frozen=True, slots=True)
class SessionTimerConfig:
    """What this UA asks for and accepts.

    ``refresher`` is the side this UA prefers as refresher when it gets to choose (as caller it
    is sent in the INVITE's ``refresher`` parameter; as callee it applies when the INVITE left
    the choice open).  ``method`` is the request the refresher sends.
    """

    enabled: bool = True
    session_expires: int = 1800
    min_se: int = RFC4028_MIN_SE
    refresher: Role = "uac"
    method: Literal["INVITE", "UPDATE"] = "INVITE"

    def __post_init__(self) -> None:
        if self.min_se < RFC4028_MIN_SE:
            raise ConfigError(f"Min-SE must be at least {RFC4028_MIN_SE} s, got {self.min_se}")
        if self.session_expires < self.min_se:
            raise ConfigError(
                f"Session-Expires {self.session_expires} is below Min-SE {self.min_se}"
            )


@dataclass(slots=True)
class SessionTimer:
    """The negotiated timer of one call."""

    interval: int
    local_refresher: bool
    min_se: int

    def refresher_param(self, our_role: Role) -> Role:
        """The ``refresher`` value naming the current refresher in a transaction where this UA
        plays ``our_role``."""
        other: Role = "uas" if our_role == "uac" else "uac"
        return our_role if self.local_refresher else other


def refresh_delay(interval: int) -> float:
    """When the refresher sends its refresh, after the last one (§7.2 / §9: half the interval)."""
    return interval / 2


def expiry_delay(interval: int) -> float:
    """When the other side gives up and sends BYE, after the last refresh (§10)."""
    return interval - min(32.0, interval / 3)


def session_headers(interval: int, refresher: Role | None, min_se: int) -> list[tuple[str, str]]:
    """``Session-Expires`` and ``Min-SE`` for a request (§7.1)."""
    se = str(interval) if refresher is None else f"{interval};refresher={refresher}"
    return [("Session-Expires", se), ("Min-SE", str(min_se))]


def too_small(request: Request, config: SessionTimerConfig) -> bool:
    """Whether the request's Session-Expires is below our Min-SE: answer 422 (§8.1)."""
    se = request.session_expires
    return config.enabled and se is not None and se.delta < config.min_se


def negotiate_as_uas(
    request: Request,
    config: SessionTimerConfig,
    current: SessionTimer | None = None,
) -> tuple[int, Role, int] | None:
    """The interval, refresher and Min-SE our 2xx states (§9), or ``None`` for no timer.

    ``current`` is the timer already running in the dialog (for a refresh); when the request
    carries no Session-Expires it is kept as it is rather than dropped.
    """
    if not config.enabled:
        return None
    se = request.session_expires
    uac_supports = request.supports("timer")
    floor = max(request.min_se or RFC4028_MIN_SE, config.min_se)
    if se is None:
        if current is not None:
            kept = current.refresher_param("uas")
            if kept == "uac" and not uac_supports:
                kept = "uas"
            return current.interval, kept, max(current.min_se, floor)
        interval = max(config.session_expires, floor)
        chosen: Role = config.refresher if uac_supports else "uas"
        return interval, chosen, floor
    interval = (
        se.delta if config.session_expires >= se.delta else max(config.session_expires, floor)
    )
    interval = min(interval, se.delta)
    if se.refresher is not None:
        refresher: Role = "uac" if se.refresher == "uac" else "uas"
    else:
        refresher = config.refresher if uac_supports else "uas"
    return interval, refresher, floor


def result_as_uac(response: Response, min_se: int) -> SessionTimer | None:
    """The timer a 2xx to our INVITE/UPDATE sets (§7.2); ``None`` when it has none."""
    se = response.session_expires
    if se is None:
        return None
    refresher = se.refresher or "uac"
    return SessionTimer(se.delta, refresher == "uac", max(min_se, response.min_se or 0))
