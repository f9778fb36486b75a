"""PresenceService: sources, aggregation, fading and expiry at exact virtual times (Part 11)."""

from __future__ import annotations

import pytest

from sbcsim.presence.model import (
    ACTIVITY_VALUES,
    AVAILABILITY_VALUES,
    DEFAULT_EPOCH,
    OFFLINE,
    InvalidPresenceRequest,
    PresenceError,
    PresenceService,
    PresenceSettings,
    PresenceState,
    PresenceUser,
    UnknownUserError,
    format_graph_datetime,
    parse_graph_datetime,
    parse_iso_duration,
)

TENANT = "aaaaaaaa-0000-4000-8000-000000000001"
ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
APP_A = "a0a0a0a0-0000-4000-8000-00000000000a"
APP_B = "b0b0b0b0-0000-4000-8000-00000000000b"

AVAILABLE = PresenceState("Available", "Available")
BUSY_CALL = PresenceState("Busy", "InACall")
BUSY_CONF = PresenceState("Busy", "InAConferenceCall")
AWAY = PresenceState("Away", "Away")
IDLE = PresenceState("Available", "AvailableInactive")

Change = tuple[str, PresenceState, PresenceState]


def make(
    *, alice: tuple[str, str] = ("Available", "Available")
) -> tuple[PresenceService, list[Change]]:
    service = PresenceService()
    service.add_user(
        ALICE, "alice@contoso.example", TENANT, availability=alice[0], activity=alice[1]
    )
    service.add_user(BOB, "bob@contoso.example", TENANT)
    changes: list[Change] = []

    def record(user: PresenceUser, old: PresenceState, new: PresenceState) -> None:
        changes.append((user.id, old, new))

    service.add_listener(record)
    return service, changes


def test_value_sets_are_the_documented_ones() -> None:
    assert sorted(AVAILABILITY_VALUES) == sorted(
        [
            "Available",
            "AvailableIdle",
            "Away",
            "BeRightBack",
            "Busy",
            "BusyIdle",
            "DoNotDisturb",
            "Offline",
            "PresenceUnknown",
        ]
    )
    assert sorted(ACTIVITY_VALUES) == sorted(
        [
            "Available",
            "Away",
            "BeRightBack",
            "Busy",
            "DoNotDisturb",
            "InACall",
            "InAConferenceCall",
            "Inactive",
            "InAMeeting",
            "Offline",
            "OffWork",
            "OutOfOffice",
            "PresenceUnknown",
            "Presenting",
            "UrgentInterruptionsOnly",
        ]
    )


def test_snapshot_has_the_graph_shape() -> None:
    service, changes = make()
    assert service.snapshot(ALICE) == {
        "id": ALICE,
        "availability": "Available",
        "activity": "Available",
        "statusMessage": None,
        "outOfOfficeSettings": {"message": None, "isOutOfOffice": False},
        "sequenceNumber": "0000000000000001",
    }
    plain = PresenceService(PresenceSettings(extended_snapshot=False))
    plain.add_user(ALICE, "alice@contoso.example", TENANT)
    assert plain.snapshot(ALICE) == {
        "id": ALICE,
        "availability": "Available",
        "activity": "Available",
    }
    assert changes == []


def test_call_makes_user_busy_in_a_call_and_back() -> None:
    service, changes = make()
    assert service.call_started(ALICE, 10.0) == BUSY_CALL
    assert service.presence(ALICE) == BUSY_CALL
    assert service.snapshot(ALICE)["sequenceNumber"] == "0000000000000002"
    assert service.call_ended(ALICE, 70.0) == AVAILABLE
    assert changes == [(ALICE, AVAILABLE, BUSY_CALL), (ALICE, BUSY_CALL, AVAILABLE)]
    assert service.presence(BOB) == AVAILABLE


def test_conference_and_overlapping_calls() -> None:
    service, changes = make()
    service.call_started(ALICE, 1.0)
    service.call_started(ALICE, 2.0, conference=True)
    assert service.presence(ALICE) == BUSY_CONF
    assert service.calls_in_progress(ALICE) == 2
    service.call_ended(ALICE, 3.0, conference=True)
    assert service.presence(ALICE) == BUSY_CALL
    service.call_ended(ALICE, 4.0)
    assert service.presence(ALICE) == AVAILABLE
    assert changes == [
        (ALICE, AVAILABLE, BUSY_CALL),
        (ALICE, BUSY_CALL, BUSY_CONF),
        (ALICE, BUSY_CONF, BUSY_CALL),
        (ALICE, BUSY_CALL, AVAILABLE),
    ]
    with pytest.raises(PresenceError, match="no call in progress"):
        service.call_ended(ALICE, 5.0)


def test_after_a_call_the_client_state_set_during_it_shows() -> None:
    service, changes = make()
    service.call_started(ALICE, 0.0)
    service.set_client_presence(ALICE, 5.0, "DoNotDisturb", "Presenting")
    assert service.presence(ALICE) == BUSY_CALL
    service.call_ended(ALICE, 9.0)
    assert service.presence(ALICE) == PresenceState("DoNotDisturb", "Presenting")
    assert len(changes) == 2


def test_set_presence_fades_then_expires_to_offline() -> None:
    # A signed-out user (no Teams client session) with one app session: 11.3's fade and expiry.
    service, changes = make(alice=("Offline", "Offline"))
    assert service.presence(ALICE) == OFFLINE
    service.set_presence(
        ALICE,
        0.0,
        session_id=APP_A,
        availability="Available",
        activity="Available",
        expiration=parse_iso_duration("PT1H"),
    )
    assert service.presence(ALICE) == AVAILABLE
    assert service.next_deadline() == 300.0
    service.advance(299.999)
    assert service.presence(ALICE) == AVAILABLE
    service.advance(300.0)
    assert service.presence(ALICE) == IDLE
    assert service.next_deadline() == 600.0
    service.advance(3000.0)  # passes 600 (Away) on the way
    assert service.presence(ALICE) == AWAY
    assert service.next_deadline() == 3600.0
    service.advance(3600.0)
    assert service.presence(ALICE) == OFFLINE
    assert service.next_deadline() is None
    assert changes == [
        (ALICE, OFFLINE, AVAILABLE),
        (ALICE, AVAILABLE, IDLE),
        (ALICE, IDLE, AWAY),
        (ALICE, AWAY, OFFLINE),
    ]


def test_setting_again_keeps_the_session_alive() -> None:
    service, _ = make(alice=("Offline", "Offline"))
    kwargs = {"session_id": APP_A, "availability": "Available", "activity": "Available"}
    service.set_presence(ALICE, 0.0, **kwargs)
    service.set_presence(ALICE, 240.0, **kwargs)
    assert service.next_deadline() == 540.0  # both timeout and default 5-min expiry restart
    service.advance(539.0)
    assert service.presence(ALICE) == AVAILABLE
    service.advance(540.0)
    assert service.presence(ALICE) == OFFLINE  # expiry (5 min) and first timeout coincide
    assert service.sessions(ALICE) == ()


def test_busy_sessions_do_not_fade() -> None:
    service, _ = make(alice=("Offline", "Offline"))
    service.set_presence(
        ALICE, 0.0, session_id=APP_A, availability="Busy", activity="InACall", expiration=1200.0
    )
    assert service.next_deadline() == 1200.0
    service.advance(1199.0)
    assert service.presence(ALICE) == BUSY_CALL
    (info,) = service.sessions(ALICE)
    assert (info.session_id, info.declared, info.current, info.set_at, info.expires_at) == (
        APP_A,
        BUSY_CALL,
        BUSY_CALL,
        0.0,
        1200.0,
    )


def test_aggregation_order_between_sessions_and_client() -> None:
    service, _ = make()
    # Client Available + app Busy -> Busy wins (DoNotDisturb > Busy > Available > Away).
    service.set_presence(
        ALICE, 0.0, session_id=APP_A, availability="Busy", activity="InACall", expiration=3600
    )
    assert service.presence(ALICE) == BUSY_CALL
    # Another app says Away: still Busy.
    service.set_presence(
        ALICE, 1.0, session_id=APP_B, availability="Away", activity="Away", expiration=3600
    )
    assert service.presence(ALICE) == BUSY_CALL
    # The client goes DoNotDisturb: that beats Busy.
    service.set_client_presence(ALICE, 2.0, "DoNotDisturb", "Presenting")
    assert service.presence(ALICE) == PresenceState("DoNotDisturb", "Presenting")
    service.set_client_presence(ALICE, 3.0, "Offline", "Offline")
    # Equal availability: the most recently set source gives the activity.
    service.set_presence(
        ALICE,
        4.0,
        session_id=APP_B,
        availability="Busy",
        activity="InAConferenceCall",
        expiration=3600,
    )
    assert service.presence(ALICE) == BUSY_CONF
    assert service.clear_presence(ALICE, 5.0, APP_B) is True
    assert service.presence(ALICE) == BUSY_CALL
    assert service.clear_presence(ALICE, 6.0, APP_B) is False
    assert service.clear_presence(ALICE, 7.0, APP_A) is True
    assert service.presence(ALICE) == OFFLINE


def test_expired_session_falls_back_to_the_other_one_exactly() -> None:
    service, changes = make(alice=("Offline", "Offline"))
    service.set_presence(ALICE, 0.0, session_id=APP_A, availability="Busy", activity="InACall")
    service.set_presence(
        ALICE,
        0.0,
        session_id=APP_B,
        availability="Available",
        activity="Available",
        expiration=3600,
    )
    service.advance(300.0)  # A expires at 300; B's first timeout is also at 300
    assert service.presence(ALICE) == IDLE
    assert changes[-1] == (ALICE, BUSY_CALL, IDLE)


def test_user_preferred_presence_beats_sessions() -> None:
    service, changes = make()
    service.set_presence(
        ALICE, 0.0, session_id=APP_A, availability="Busy", activity="InACall", expiration=3600
    )
    service.set_user_preferred_presence(ALICE, 1.0, "Away", "Away")
    assert service.presence(ALICE) == AWAY
    service.clear_user_preferred_presence(ALICE, 2.0)
    assert service.presence(ALICE) == BUSY_CALL
    # Default expiry: 1 day for DoNotDisturb/Busy, 7 days otherwise.
    service.set_user_preferred_presence(ALICE, 10.0, "DoNotDisturb", "DoNotDisturb")
    assert service.call_started(ALICE, 11.0) == PresenceState("DoNotDisturb", "DoNotDisturb")
    service.call_ended(ALICE, 12.0)
    service.clear_presence(ALICE, 13.0, APP_A)
    service.set_client_presence(ALICE, 14.0, "Offline", "Offline")
    # No session left at all: preferred presence does not show, the user is Offline.
    assert service.presence(ALICE) == OFFLINE
    service.set_client_presence(ALICE, 15.0, "Available", "Available")
    assert service.presence(ALICE) == PresenceState("DoNotDisturb", "DoNotDisturb")
    assert service.next_deadline() == 86_410.0
    service.advance(86_410.0)
    assert service.presence(ALICE) == AVAILABLE
    service.set_user_preferred_presence(ALICE, 86_411.0, "BeRightBack", "BeRightBack")
    assert service.next_deadline() == 86_411.0 + 604_800.0
    with pytest.raises(InvalidPresenceRequest):
        service.set_user_preferred_presence(ALICE, 86_412.0, "Busy", "InACall")
    assert changes[0] == (ALICE, AVAILABLE, BUSY_CALL)


@pytest.mark.parametrize(
    ("availability", "activity", "expiration", "message"),
    [
        ("Sleepy", "Available", None, "unknown availability"),
        ("Available", "Napping", None, "unknown activity"),
        ("DoNotDisturb", "DoNotDisturb", None, "not supported by setPresence"),
        ("Busy", "Busy", None, "not supported by setPresence"),
        ("Available", "Available", 299.0, "outside 300..14400s"),
        ("Available", "Available", 14_401.0, "outside 300..14400s"),
    ],
)
def test_set_presence_rejects_bad_values(
    availability: str, activity: str, expiration: float | None, message: str
) -> None:
    service, changes = make()
    with pytest.raises(InvalidPresenceRequest, match=message):
        service.set_presence(
            ALICE,
            0.0,
            session_id=APP_A,
            availability=availability,
            activity=activity,
            expiration=expiration,
        )
    assert service.sessions(ALICE) == ()
    assert changes == []


def test_expiration_bounds_are_inclusive() -> None:
    service, _ = make()
    for expiration in (300.0, 14_400.0):
        service.set_presence(
            ALICE,
            0.0,
            session_id=APP_A,
            availability="Away",
            activity="Away",
            expiration=expiration,
        )
        assert service.sessions(ALICE)[0].expires_at == expiration


def test_status_message_and_out_of_office() -> None:
    service, changes = make()
    service.set_status_message(ALICE, 60.0, "On a customer call", expires_at=120.0)
    service.set_out_of_office(ALICE, 61.0, True, "Back Monday")
    snapshot = service.snapshot(ALICE)
    assert snapshot["statusMessage"] == {
        "message": {"content": "On a customer call", "contentType": "text"},
        "publishedDateTime": "2025-01-01T00:01:00.0000000Z",
        "expiryDateTime": {"dateTime": "2025-01-01T00:02:00.0000000", "timeZone": "UTC"},
    }
    assert snapshot["outOfOfficeSettings"] == {"message": "Back Monday", "isOutOfOffice": True}
    assert snapshot["sequenceNumber"] == "0000000000000003"
    assert service.next_deadline() == 120.0
    assert service.snapshot(ALICE, 120.0)["statusMessage"] is None
    assert service.snapshot(ALICE)["sequenceNumber"] == "0000000000000004"
    assert changes == []  # availability/activity never changed


def test_users_are_found_by_id_or_upn() -> None:
    service, _ = make()
    assert service.user("ALICE@contoso.example").id == ALICE
    assert service.presence("alice@CONTOSO.example") == AVAILABLE
    assert service.find_user("nobody") is None
    with pytest.raises(UnknownUserError):
        service.snapshot("nobody")
    with pytest.raises(ValueError, match="already exists"):
        service.add_user(ALICE, "x@contoso.example", TENANT)
    with pytest.raises(InvalidPresenceRequest):
        service.add_user("x", "x@contoso.example", TENANT, availability="Gone")
    assert [u.id for u in service.users()] == [ALICE, BOB]


def test_listeners_can_be_removed_and_time_cannot_go_back() -> None:
    service = PresenceService()
    service.add_user(ALICE, "alice@contoso.example", TENANT)
    seen: list[PresenceState] = []
    remove = service.add_listener(lambda user, old, new: seen.append(new))
    service.call_started(ALICE, 5.0)
    remove()
    service.call_ended(ALICE, 6.0)
    assert seen == [BUSY_CALL]
    with pytest.raises(ValueError, match="backwards"):
        service.advance(5.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300.0),
        ("PT4H", 14_400.0),
        ("PT1H30M", 5_400.0),
        ("P1D", 86_400.0),
        ("PT0.5S", 0.5),
        ("P1W", 604_800.0),
        ("P1DT1S", 86_401.0),
    ],
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_iso_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "P1Y", "P1M", "PT1H5", "P1DT", "pt5m"])
def test_bad_iso_durations(text: str) -> None:
    with pytest.raises(InvalidPresenceRequest):
        parse_iso_duration(text)


def test_graph_datetimes() -> None:
    assert format_graph_datetime(DEFAULT_EPOCH) == "2025-01-01T00:00:00.0000000Z"
    assert format_graph_datetime(DEFAULT_EPOCH + 0.25, zone=False) == "2025-01-01T00:00:00.2500000"
    assert parse_graph_datetime("2025-01-01T01:00:00.0000000Z") == DEFAULT_EPOCH + 3600
    assert parse_graph_datetime("2025-01-01T02:00:00+01:00") == DEFAULT_EPOCH + 3600
    assert parse_graph_datetime("2025-01-01T00:00:30") == DEFAULT_EPOCH + 30
    with pytest.raises(InvalidPresenceRequest):
        parse_graph_datetime("tomorrow")
    with pytest.raises(InvalidPresenceRequest):
        parse_graph_datetime("2025-13-01T00:00:00Z")
