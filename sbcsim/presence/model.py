"""Teams presence of users, as Microsoft Graph reports it (direct-routing-sip.md Part 11).

A user's visible presence is an *aggregate* of several presence sources, and this module keeps
each source apart so the aggregation rules can be applied as the doc states them:

* the user's own Teams client (scripted with :meth:`PresenceService.set_client_presence`), which a
  call in progress turns into ``Busy``/``InACall`` until the call ends
  (:meth:`~PresenceService.call_started`, :meth:`~PresenceService.call_ended`);
* one presence *session* per application, created by ``setPresence`` and removed by
  ``clearPresence`` or by its expiration (11.3: ``PT5M``..``PT4H``, default 5 min), fading
  ``Available`` -> ``Available/AvailableInactive`` -> ``Away/Away`` after two 5-minute timeouts;
* the user-preferred presence (``setUserPreferredPresence``), which beats every session
  ("User-configured > app-configured").

Among sessions the doc orders ``DoNotDisturb > Busy > Available > Away``; the rest of the order
(where ``BusyIdle``, ``AvailableIdle``, ``BeRightBack`` ... fall) is an inference and lives in
:class:`PresenceSettings` like every other rule the doc leaves open.

The service is pure: every method takes ``now`` (seconds on the lab's clock) and nothing here
reads a clock or sleeps.  :meth:`PresenceService.advance` applies timeouts and expirations that
fell due, in time order, and :meth:`PresenceService.next_deadline` tells a driver when the next
one is, so a simulator can jump straight to it.  Listeners registered with
:meth:`PresenceService.add_listener` are called with ``(user, old, new)`` on every change of the
effective availability/activity pair; the Graph API layer turns those calls into change
notifications.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from heapq import heappop, heappush

from sbcsim.errors import SbcsimError

__all__ = [
    "ACTIVITY_VALUES",
    "AVAILABILITY_PRECEDENCE",
    "AVAILABILITY_VALUES",
    "DEFAULT_EPOCH",
    "OFFLINE",
    "PREFERRED_PAIRS",
    "SETTABLE_PAIRS",
    "Activity",
    "Availability",
    "InvalidPresenceRequest",
    "JsonObject",
    "PresenceError",
    "PresenceListener",
    "PresenceService",
    "PresenceSessionInfo",
    "PresenceSettings",
    "PresenceState",
    "PresenceUser",
    "UnknownUserError",
    "format_graph_datetime",
    "parse_graph_datetime",
    "parse_iso_duration",
]

JsonObject = dict[str, object]

#: Wall-clock seconds (Unix time) that the lab clock's 0.0 stands for, unless told otherwise:
#: 2025-01-01T00:00:00Z.  Graph shows date-times; a virtual clock only has seconds since start.
DEFAULT_EPOCH = 1_735_689_600.0


class Availability(StrEnum):
    """Graph ``presence.availability`` values (11.1)."""

    AVAILABLE = "Available"
    AVAILABLE_IDLE = "AvailableIdle"
    AWAY = "Away"
    BE_RIGHT_BACK = "BeRightBack"
    BUSY = "Busy"
    BUSY_IDLE = "BusyIdle"
    DO_NOT_DISTURB = "DoNotDisturb"
    OFFLINE = "Offline"
    PRESENCE_UNKNOWN = "PresenceUnknown"


class Activity(StrEnum):
    """Graph ``presence.activity`` values (11.1)."""

    AVAILABLE = "Available"
    AWAY = "Away"
    BE_RIGHT_BACK = "BeRightBack"
    BUSY = "Busy"
    DO_NOT_DISTURB = "DoNotDisturb"
    IN_A_CALL = "InACall"
    IN_A_CONFERENCE_CALL = "InAConferenceCall"
    INACTIVE = "Inactive"
    IN_A_MEETING = "InAMeeting"
    OFFLINE = "Offline"
    OFF_WORK = "OffWork"
    OUT_OF_OFFICE = "OutOfOffice"
    PRESENCE_UNKNOWN = "PresenceUnknown"
    PRESENTING = "Presenting"
    URGENT_INTERRUPTIONS_ONLY = "UrgentInterruptionsOnly"


AVAILABILITY_VALUES: frozenset[str] = frozenset(a.value for a in Availability)
ACTIVITY_VALUES: frozenset[str] = frozenset(a.value for a in Activity)

#: setPresence's supported (availability, activity) pairs (11.3) [DOC].
SETTABLE_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("Busy", "InAConferenceCall"),
        ("Away", "Away"),
    }
)

#: setUserPreferredPresence's pairs.  The doc names the method only; these are Graph's published
#: combinations [INF].
PREFERRED_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Available", "Available"),
        ("Busy", "Busy"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("BeRightBack", "BeRightBack"),
        ("Away", "Away"),
        ("Offline", "OffWork"),
    }
)

#: Which availability wins when several sources disagree, strongest first.  The doc gives
#: ``DoNotDisturb > Busy > Available > Away`` [DOC]; the places of the other values are [INF].
AVAILABILITY_PRECEDENCE: tuple[str, ...] = (
    "DoNotDisturb",
    "Busy",
    "BusyIdle",
    "Available",
    "AvailableIdle",
    "BeRightBack",
    "Away",
    "Offline",
    "PresenceUnknown",
)


class PresenceError(SbcsimError):
    """A presence operation was refused."""


class UnknownUserError(PresenceError, LookupError):
    """No user has this id (or UPN)."""


class InvalidPresenceRequest(PresenceError, ValueError):
    """A value outside the documented sets, an unsupported pair, or a duration out of range."""


@dataclass(frozen=True, slots=True)
class PresenceState:
    """An (availability, activity) pair, the part of presence that listeners are told about.

    The fields are plain strings rather than the enums because the doc's own fade state
    ``Available/AvailableInactive`` uses an activity outside the documented set.
    """

    availability: str
    activity: str

    def __str__(self) -> str:
        return f"{self.availability}/{self.activity}"


OFFLINE = PresenceState("Offline", "Offline")


@dataclass(frozen=True, slots=True)
class PresenceUser:
    """A Teams user whose presence is modelled: object id (GUID-like), UPN and tenant id."""

    id: str
    upn: str
    tenant_id: str


@dataclass(frozen=True, slots=True)
class PresenceSessionInfo:
    """One application presence session as seen at a moment (for tests and diagnostics)."""

    session_id: str
    declared: PresenceState
    current: PresenceState
    set_at: float
    expires_at: float


PresenceListener = Callable[[PresenceUser, PresenceState, PresenceState], None]


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """Every presence rule, with the doc's value (or its suggestion) as the default.

    Durations are seconds.  ``epoch`` maps the lab clock to Unix time for the date-times Graph
    shows (``statusMessage.publishedDateTime`` ...).
    """

    #: setPresence ``expirationDuration``: "valid duration range is 5-240 minutes", default 5 min.
    min_session_expiration: float = 300.0
    max_session_expiration: float = 14_400.0
    default_session_expiration: float = 300.0
    settable_pairs: frozenset[tuple[str, str]] = SETTABLE_PAIRS
    availability_precedence: tuple[str, ...] = AVAILABILITY_PRECEDENCE
    #: Sessions whose declared availability is in this set time out in two stages [DOC: only
    #: ``Available`` is described].
    fading_availabilities: frozenset[str] = frozenset({"Available"})
    first_timeout: float = 300.0
    #: The doc's wording: "change to Available/AvailableInactive in 5 minutes".
    first_timeout_state: PresenceState = PresenceState("Available", "AvailableInactive")
    second_timeout: float = 300.0
    second_timeout_state: PresenceState = PresenceState("Away", "Away")
    preferred_pairs: frozenset[tuple[str, str]] = PREFERRED_PAIRS
    #: Graph's default preferred-presence expiry: 1 day for Busy/DoNotDisturb, else 7 days [INF].
    preferred_expiration_by_availability: tuple[tuple[str, float], ...] = (
        ("DoNotDisturb", 86_400.0),
        ("Busy", 86_400.0),
    )
    preferred_default_expiration: float = 604_800.0
    #: Preferred presence shows only while some presence session exists, else Offline [INF].
    preferred_needs_session: bool = True
    call_state: PresenceState = PresenceState("Busy", "InACall")
    conference_call_state: PresenceState = PresenceState("Busy", "InAConferenceCall")
    #: Add the newer properties (statusMessage, outOfOfficeSettings, sequenceNumber) to
    #: snapshots; the older stored resource has only id/availability/activity.
    extended_snapshot: bool = True
    epoch: float = DEFAULT_EPOCH

    def __post_init__(self) -> None:
        positive = {
            "min_session_expiration": self.min_session_expiration,
            "first_timeout": self.first_timeout,
            "second_timeout": self.second_timeout,
            "preferred_default_expiration": self.preferred_default_expiration,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not (
            self.min_session_expiration
            <= self.default_session_expiration
            <= self.max_session_expiration
        ):
            raise ValueError("need min_session_expiration <= default <= max_session_expiration")

    def rank(self, availability: str) -> int:
        """Position in the precedence order; unknown values rank below every listed one."""
        try:
            return self.availability_precedence.index(availability)
        except ValueError:
            return len(self.availability_precedence)

    def preferred_expiration(self, availability: str) -> float:
        """The default lifetime of a preferred presence with this availability."""
        for name, seconds in self.preferred_expiration_by_availability:
            if name == availability:
                return seconds
        return self.preferred_default_expiration


@dataclass(slots=True)
class _Session:
    session_id: str
    state: PresenceState
    set_at: float
    expires_at: float
    seq: int


@dataclass(slots=True)
class _Preferred:
    state: PresenceState
    expires_at: float


@dataclass(slots=True)
class _StatusMessage:
    content: str
    content_type: str
    published_at: float
    expires_at: float | None


@dataclass(slots=True)
class _Record:
    user: PresenceUser
    client: PresenceState
    client_seq: int
    calls: list[bool]  # one entry per call in progress: True for a conference call
    sessions: dict[str, _Session]
    preferred: _Preferred | None
    status: _StatusMessage | None
    out_of_office: bool
    out_of_office_message: str | None
    effective: PresenceState
    version: int


class PresenceService:
    """The presence of every modelled user, its sources, and its changes over (virtual) time."""

    def __init__(self, settings: PresenceSettings | None = None) -> None:
        self.settings = settings or PresenceSettings()
        self._records: dict[str, _Record] = {}
        self._by_upn: dict[str, str] = {}
        self._listeners: list[PresenceListener] = []
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._now = -math.inf

    # -- users -------------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        upn: str,
        tenant_id: str,
        *,
        availability: str = "Available",
        activity: str = "Available",
    ) -> PresenceUser:
        """Register a user whose Teams client starts in ``availability``/``activity``.

        ``Offline`` means the client is signed out, so the user has no presence session of its
        own; no listener is told about the initial state.
        """
        if not user_id or not upn or not tenant_id:
            raise ValueError("user id, UPN and tenant id must be non-empty")
        if user_id in self._records:
            raise ValueError(f"user {user_id!r} already exists")
        if upn.casefold() in self._by_upn:
            raise ValueError(f"UPN {upn!r} already exists")
        state = self._documented(availability, activity)
        user = PresenceUser(user_id, upn, tenant_id)
        record = _Record(
            user=user,
            client=state,
            client_seq=self._next_seq(),
            calls=[],
            sessions={},
            preferred=None,
            status=None,
            out_of_office=False,
            out_of_office_message=None,
            effective=OFFLINE,
            version=1,
        )
        record.effective = self._aggregate(record, self._now)
        self._records[user_id] = record
        self._by_upn[upn.casefold()] = user_id
        return user

    def find_user(self, id_or_upn: str) -> PresenceUser | None:
        """The user with this object id, or this UPN (case-insensitive), or ``None``."""
        record = self._records.get(id_or_upn)
        if record is None:
            user_id = self._by_upn.get(id_or_upn.casefold())
            record = self._records.get(user_id) if user_id is not None else None
        return record.user if record is not None else None

    def user(self, id_or_upn: str) -> PresenceUser:
        """Like :meth:`find_user` but raises :class:`UnknownUserError`."""
        user = self.find_user(id_or_upn)
        if user is None:
            raise UnknownUserError(f"no user {id_or_upn!r}")
        return user

    def users(self) -> tuple[PresenceUser, ...]:
        """Every user, in the order they were added."""
        return tuple(r.user for r in self._records.values())

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: PresenceListener) -> Callable[[], None]:
        """Call ``listener(user, old, new)`` on every effective change; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            self.remove_listener(listener)

        return remove

    def remove_listener(self, listener: PresenceListener) -> None:
        """Stop calling ``listener`` (harmless if it is not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- reading -----------------------------------------------------------------------------

    def presence(self, user: str, now: float | None = None) -> PresenceState:
        """The effective presence, after applying what fell due by ``now`` (when given)."""
        if now is not None:
            self.advance(now)
        return self._record(user).effective

    def snapshot(self, user: str, now: float | None = None) -> JsonObject:
        """The Graph JSON of the user's presence resource (11.1)."""
        if now is not None:
            self.advance(now)
        record = self._record(user)
        body: JsonObject = {
            "id": record.user.id,
            "availability": record.effective.availability,
            "activity": record.effective.activity,
        }
        if self.settings.extended_snapshot:
            body["statusMessage"] = self._status_json(record.status)
            body["outOfOfficeSettings"] = {
                "message": record.out_of_office_message,
                "isOutOfOffice": record.out_of_office,
            }
            body["sequenceNumber"] = f"{record.version:016X}"
        return body

    def sessions(self, user: str, now: float | None = None) -> tuple[PresenceSessionInfo, ...]:
        """The live application sessions of ``user``, oldest first."""
        if now is not None:
            self.advance(now)
        at = self._now
        return tuple(
            PresenceSessionInfo(
                s.session_id, s.state, self._session_state(s, at), s.set_at, s.expires_at
            )
            for s in sorted(self._record(user).sessions.values(), key=lambda s: s.seq)
        )

    def calls_in_progress(self, user: str) -> int:
        """How many calls the user's client is in."""
        return len(self._record(user).calls)

    # -- the Teams client --------------------------------------------------------------------

    def set_client_presence(
        self, user: str, now: float, availability: str, activity: str
    ) -> PresenceState:
        """What the user's own Teams client shows (``Offline`` = signed out); returns the result."""
        self.advance(now)
        record = self._record(user)
        record.client = self._documented(availability, activity)
        record.client_seq = self._next_seq()
        return self._refresh(record, now)

    def call_started(self, user: str, now: float, conference: bool = False) -> PresenceState:
        """A call started on the user's client: ``Busy/InACall`` (``InAConferenceCall``)."""
        self.advance(now)
        record = self._record(user)
        record.calls.append(conference)
        record.client_seq = self._next_seq()
        return self._refresh(record, now)

    def call_ended(self, user: str, now: float, conference: bool | None = None) -> PresenceState:
        """A call ended: the latest call of that kind (any kind when ``None``) is removed.

        With no call left, the client shows its own state again — the state it would have shown
        had there been no call, including changes scripted during the call.
        """
        self.advance(now)
        record = self._record(user)
        for index in range(len(record.calls) - 1, -1, -1):
            if conference is None or record.calls[index] == conference:
                del record.calls[index]
                break
        else:
            raise PresenceError(f"user {record.user.id!r} has no call in progress to end")
        record.client_seq = self._next_seq()
        return self._refresh(record, now)

    # -- application sessions (setPresence / clearPresence) ----------------------------------

    def set_presence(
        self,
        user: str,
        now: float,
        *,
        session_id: str,
        availability: str,
        activity: str,
        expiration: float | None = None,
    ) -> PresenceState:
        """Create or refresh the presence session of application ``session_id``.

        Calling again before the timeout or expiration keeps the session alive (11.3), so both
        restart from ``now``.
        """
        settings = self.settings
        if not session_id:
            raise InvalidPresenceRequest("sessionId is required")
        state = self._documented(availability, activity)
        if (state.availability, state.activity) not in settings.settable_pairs:
            raise InvalidPresenceRequest(
                f"the pair {state} is not supported by setPresence; supported: "
                + ", ".join(f"{a}/{b}" for a, b in sorted(settings.settable_pairs))
            )
        if expiration is None:
            expiration = settings.default_session_expiration
        if not (settings.min_session_expiration <= expiration <= settings.max_session_expiration):
            raise InvalidPresenceRequest(
                f"expirationDuration {expiration:g}s is outside "
                f"{settings.min_session_expiration:g}..{settings.max_session_expiration:g}s"
            )
        self.advance(now)
        record = self._record(user)
        session = _Session(session_id, state, now, now + expiration, self._next_seq())
        record.sessions[session_id] = session
        for deadline in self._session_deadlines(session):
            self._schedule(deadline, record)
        return self._refresh(record, now)

    def clear_presence(self, user: str, now: float, session_id: str) -> bool:
        """Remove the session of application ``session_id``; ``False`` if there was none."""
        self.advance(now)
        record = self._record(user)
        removed = record.sessions.pop(session_id, None) is not None
        self._refresh(record, now)
        return removed

    # -- user-preferred presence -------------------------------------------------------------

    def set_user_preferred_presence(
        self,
        user: str,
        now: float,
        availability: str,
        activity: str,
        expiration: float | None = None,
    ) -> PresenceState:
        """What the user picked in Teams; it beats every session until it expires or is cleared."""
        state = self._documented(availability, activity)
        if (state.availability, state.activity) not in self.settings.preferred_pairs:
            raise InvalidPresenceRequest(
                f"the pair {state} is not supported by setUserPreferredPresence"
            )
        if expiration is None:
            expiration = self.settings.preferred_expiration(state.availability)
        if not (math.isfinite(expiration) and expiration > 0):
            raise InvalidPresenceRequest("expirationDuration must be positive")
        self.advance(now)
        record = self._record(user)
        record.preferred = _Preferred(state, now + expiration)
        self._schedule(now + expiration, record)
        return self._refresh(record, now)

    def clear_user_preferred_presence(self, user: str, now: float) -> PresenceState:
        """Forget the user-preferred presence."""
        self.advance(now)
        record = self._record(user)
        record.preferred = None
        return self._refresh(record, now)

    # -- status message and out-of-office ----------------------------------------------------

    def set_status_message(
        self,
        user: str,
        now: float,
        content: str,
        *,
        content_type: str = "text",
        expires_at: float | None = None,
    ) -> None:
        """Publish a status message (empty ``content`` clears it), optionally expiring."""
        if content_type not in ("text", "html"):
            raise InvalidPresenceRequest(f"contentType must be text or html, not {content_type!r}")
        if expires_at is not None and not expires_at > now:
            raise InvalidPresenceRequest("the status message expiry is not in the future")
        self.advance(now)
        record = self._record(user)
        if content:
            record.status = _StatusMessage(content, content_type, now, expires_at)
            if expires_at is not None:
                self._schedule(expires_at, record)
        else:
            record.status = None
        self._refresh(record, now, touched=True)

    def set_out_of_office(
        self, user: str, now: float, is_out_of_office: bool, message: str | None = None
    ) -> None:
        """Set ``outOfOfficeSettings`` (it does not change availability or activity)."""
        self.advance(now)
        record = self._record(user)
        record.out_of_office = is_out_of_office
        record.out_of_office_message = message
        self._refresh(record, now, touched=True)

    # -- time --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the next timeout or expiration falls due, or ``None``."""
        heap = self._heap
        while heap:
            when, _, user_id = heap[0]
            record = self._records.get(user_id)
            if record is not None and when > self._now and when in self._deadlines(record):
                return when
            heappop(heap)
        return None

    def advance(self, now: float) -> None:
        """Apply every timeout and expiration due at or before ``now``, in time order."""
        if math.isnan(now) or now < self._now:
            raise ValueError(f"presence time cannot go backwards from {self._now!r} to {now!r}")
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                break
            _, _, user_id = heappop(self._heap)
            self._now = deadline
            record = self._records[user_id]
            self._expire(record, deadline)
            self._refresh(record, deadline)
        self._now = now

    # -- internals ---------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _record(self, user: str) -> _Record:
        record = self._records.get(user)
        if record is None:
            found = self.find_user(user)
            if found is None:
                raise UnknownUserError(f"no user {user!r}")
            record = self._records[found.id]
        return record

    @staticmethod
    def _documented(availability: str, activity: str) -> PresenceState:
        if availability not in AVAILABILITY_VALUES:
            raise InvalidPresenceRequest(f"unknown availability {availability!r}")
        if activity not in ACTIVITY_VALUES:
            raise InvalidPresenceRequest(f"unknown activity {activity!r}")
        return PresenceState(str(availability), str(activity))

    def _schedule(self, when: float, record: _Record) -> None:
        heappush(self._heap, (when, self._next_seq(), record.user.id))

    def _session_deadlines(self, session: _Session) -> list[float]:
        settings = self.settings
        deadlines = [session.expires_at]
        if session.state.availability in settings.fading_availabilities:
            first = session.set_at + settings.first_timeout
            second = first + settings.second_timeout
            deadlines += [t for t in (first, second) if t < session.expires_at]
        return deadlines

    def _deadlines(self, record: _Record) -> set[float]:
        found: set[float] = set()
        for session in record.sessions.values():
            found.update(self._session_deadlines(session))
        if record.preferred is not None:
            found.add(record.preferred.expires_at)
        if record.status is not None and record.status.expires_at is not None:
            found.add(record.status.expires_at)
        return found

    def _session_state(self, session: _Session, at: float) -> PresenceState:
        settings = self.settings
        if session.state.availability in settings.fading_availabilities:
            elapsed = at - session.set_at
            if elapsed >= settings.first_timeout + settings.second_timeout:
                return settings.second_timeout_state
            if elapsed >= settings.first_timeout:
                return settings.first_timeout_state
        return session.state

    def _expire(self, record: _Record, at: float) -> None:
        for session_id in [s.session_id for s in record.sessions.values() if s.expires_at <= at]:
            del record.sessions[session_id]
        if record.preferred is not None and record.preferred.expires_at <= at:
            record.preferred = None
        status = record.status
        if status is not None and status.expires_at is not None and status.expires_at <= at:
            record.status = None
            record.version += 1

    def _aggregate(self, record: _Record, at: float) -> PresenceState:
        settings = self.settings
        candidates: list[tuple[PresenceState, int]] = []
        if record.calls:
            call_state = (
                settings.conference_call_state if any(record.calls) else settings.call_state
            )
            candidates.append((call_state, record.client_seq))
        elif record.client.availability != "Offline":
            candidates.append((record.client, record.client_seq))
        for session in record.sessions.values():
            if session.expires_at > at:
                candidates.append((self._session_state(session, at), session.seq))
        preferred = record.preferred
        if preferred is not None and preferred.expires_at > at:
            if candidates or not settings.preferred_needs_session:
                return preferred.state
        if not candidates:
            return OFFLINE
        # Strongest availability wins; between equals, the most recently set source.
        state, _ = min(candidates, key=lambda c: (settings.rank(c[0].availability), -c[1]))
        return state

    def _refresh(self, record: _Record, at: float, *, touched: bool = False) -> PresenceState:
        old = record.effective
        new = self._aggregate(record, at)
        if new != old or touched:
            record.version += 1
        record.effective = new
        if new != old:
            for listener in list(self._listeners):
                listener(record.user, old, new)
        return new

    def _status_json(self, status: _StatusMessage | None) -> JsonObject | None:
        if status is None:
            return None
        epoch = self.settings.epoch
        expiry: JsonObject | None = None
        if status.expires_at is not None:
            expiry = {
                "dateTime": format_graph_datetime(epoch + status.expires_at, zone=False),
                "timeZone": "UTC",
            }
        return {
            "message": {"content": status.content, "contentType": status.content_type},
            "publishedDateTime": format_graph_datetime(epoch + status.published_at),
            "expiryDateTime": expiry,
        }


# -- ISO 8601 durations and date-times ---------------------------------------------------------

_DURATION_RE = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?",
    re.ASCII,
)


def parse_iso_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as ``PT1H`` or ``PT4H`` (weeks, days and time only).

    Years and months are refused: their length depends on the calendar, and Graph's presence
    durations never need them.
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise InvalidPresenceRequest(f"not an ISO 8601 duration: {text!r}")
    parts = match.groupdict()
    if all(v is None for v in parts.values()):
        raise InvalidPresenceRequest(f"not an ISO 8601 duration: {text!r}")
    seconds = float((parts["s"] or "0").replace(",", "."))
    return (
        int(parts["w"] or 0) * 604_800
        + int(parts["d"] or 0) * 86_400
        + int(parts["h"] or 0) * 3_600
        + int(parts["m"] or 0) * 60
        + seconds
    )


def format_graph_datetime(unix_seconds: float, *, zone: bool = True) -> str:
    """Graph's date-time text, ``2025-01-01T00:00:00.0000000Z`` (seven fraction digits).

    ``zone=False`` drops the ``Z``, as in a ``dateTimeTimeZone`` whose zone is a separate field.
    """
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}0"
    return text + "Z" if zone else text


_DATETIME_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})(?P<frac>\.\d+)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def parse_graph_datetime(text: str) -> float:
    """Unix seconds of an ISO 8601 date-time; no zone means UTC (Graph's convention)."""
    match = _DATETIME_RE.fullmatch(text.strip())
    if match is None:
        raise InvalidPresenceRequest(f"not an ISO 8601 date-time: {text!r}")
    zone = match["zone"] or "Z"
    offset = "+00:00" if zone == "Z" else zone
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError as exc:
        raise InvalidPresenceRequest(f"not a valid date-time: {text!r}") from exc
    fraction = float(match["frac"]) if match["frac"] else 0.0
    return moment.timestamp() + fraction
