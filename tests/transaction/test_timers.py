"""Timer durations: RFC 3261 Table 4 and RFC 6026, for the default T1/T2/T4 and scaled ones."""

from __future__ import annotations

import dataclasses

import pytest

from sbcsim.transaction.timers import TIMER_NAMES, TimerConfig

# name -> (unreliable, reliable) for T1=0.5, T2=4, T4=5
DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "A": (0.5, None),
    "B": (32.0, 32.0),
    "C": (181.0, 181.0),
    "D": (32.0, 0.0),
    "E": (0.5, None),
    "F": (32.0, 32.0),
    "G": (0.5, None),
    "H": (32.0, 32.0),
    "I": (5.0, 0.0),
    "J": (32.0, 0.0),
    "K": (5.0, 0.0),
    "L": (32.0, 32.0),
    "M": (32.0, 32.0),
    "Trying": (0.2, 0.2),
}


def test_defaults_are_rfc3261_values() -> None:
    timers = TimerConfig()
    assert (timers.t1, timers.t2, timers.t4, timers.trying) == (0.5, 4.0, 5.0, 0.2)


@pytest.mark.parametrize("name", TIMER_NAMES)
def test_every_timer_for_both_transport_kinds(name: str) -> None:
    timers = TimerConfig()
    unreliable, reliable = DEFAULTS[name]
    assert timers.duration(name, reliable=False) == unreliable
    assert timers.duration(name, reliable=True) == reliable


def test_named_methods_agree_with_duration() -> None:
    timers = TimerConfig()
    assert timers.timer_a(False) == 0.5 and timers.timer_a(True) is None
    assert timers.timer_b() == 32.0
    assert timers.timer_d(False) == 32.0 and timers.timer_d(True) == 0.0
    assert timers.timer_e(False) == 0.5 and timers.timer_e(True) is None
    assert timers.timer_f() == 32.0
    assert timers.timer_g(False) == 0.5 and timers.timer_g(True) is None
    assert timers.timer_h() == 32.0
    assert timers.timer_i(False) == 5.0 and timers.timer_i(True) == 0.0
    assert timers.timer_j(False) == 32.0 and timers.timer_j(True) == 0.0
    assert timers.timer_k(False) == 5.0 and timers.timer_k(True) == 0.0
    assert timers.timer_l() == 32.0 and timers.timer_m() == 32.0


def test_scaled_t1_scales_64_t1_timers_and_keeps_d_at_least_32s() -> None:
    fast = TimerConfig(t1=0.1, t2=0.8, t4=1.0)
    assert fast.timer_b() == pytest.approx(6.4)
    assert fast.timer_d(False) == 32.0  # "at least 32 seconds" (§17.1.1.2)
    assert fast.timer_k(False) == 1.0
    slow = TimerConfig(t1=1.0, t2=8.0, t4=10.0)
    assert slow.timer_b() == 64.0
    assert slow.timer_d(False) == 64.0  # outlives the server's Timer H
    assert slow.timer_j(False) == 64.0


def test_backoff_doubles_capped_at_t2_or_uncapped() -> None:
    timers = TimerConfig()
    assert [timers.backoff(i, capped=True) for i in (0.5, 1.0, 2.0, 4.0)] == [1.0, 2.0, 4.0, 4.0]
    assert [timers.backoff(i, capped=False) for i in (0.5, 4.0, 16.0)] == [1.0, 8.0, 32.0]


def test_trying_delay_can_be_disabled_or_immediate() -> None:
    assert TimerConfig(trying=None).duration("Trying", False) is None
    assert TimerConfig(trying=0.0).duration("Trying", True) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"t1": 0.0}, {"t1": -1.0}, {"t1": 5.0, "t2": 4.0}, {"t4": 0.0}, {"trying": -0.1}],
)
def test_invalid_configs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


def test_unknown_timer_name_is_refused() -> None:
    with pytest.raises(ValueError):
        TimerConfig().duration("Z", False)
    with pytest.raises(ValueError):
        TimerConfig().duration("backoff", False)


def test_config_is_frozen() -> None:
    timers = TimerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        timers.t1 = 1.0  # type: ignore[misc]
