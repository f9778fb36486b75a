"""The virtual clock never goes backwards; the loop clock reads the loop's time."""

from __future__ import annotations

import math

import pytest

from sbcsim.clock import Clock, LoopClock, VirtualClock


def test_virtual_clock_starts_where_told_and_moves_only_forward() -> None:
    clock = VirtualClock(12.5)
    assert clock.now() == 12.5
    clock.advance_to(12.5)  # standing still is allowed
    clock.advance_to(40.0)
    assert clock.now() == 40.0
    clock.advance(2.0)
    assert clock.now() == 42.0


def test_virtual_clock_defaults_to_zero() -> None:
    assert VirtualClock().now() == 0.0


@pytest.mark.parametrize("target", [41.999, -1.0, math.nan, math.inf])
def test_virtual_clock_refuses_to_go_backwards_or_nowhere(target: float) -> None:
    clock = VirtualClock(42.0)
    with pytest.raises(ValueError):
        clock.advance_to(target)
    assert clock.now() == 42.0


def test_virtual_clock_refuses_a_negative_step() -> None:
    clock = VirtualClock(1.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.5)


@pytest.mark.parametrize("start", [math.nan, math.inf, -math.inf])
def test_virtual_clock_needs_a_finite_start(start: float) -> None:
    with pytest.raises(ValueError):
        VirtualClock(start)


class _StubLoop:
    def __init__(self) -> None:
        self.t = 100.25

    def time(self) -> float:
        return self.t


def test_loop_clock_reads_the_loop_time() -> None:
    loop = _StubLoop()
    clock = LoopClock(loop)  # type: ignore[arg-type]
    assert clock.now() == 100.25
    loop.t = 101.0
    assert clock.now() == 101.0


async def test_loop_clock_matches_a_running_loop() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    before = loop.time()
    now = clock.now()
    after = loop.time()
    assert before <= now <= after


def test_both_clocks_satisfy_the_clock_protocol() -> None:
    clocks: list[Clock] = [VirtualClock(3.0), LoopClock(_StubLoop())]  # type: ignore[arg-type]
    assert [c.now() for c in clocks] == [3.0, 100.25]
