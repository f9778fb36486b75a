"""An established call must stay cheap: a load run keeps thousands of them."""

from __future__ import annotations

import gc
import tracemalloc

from uapump import Net, call_between

from sbcsim.dialog.states import CallState

CALLS = 200
BUDGET = 20_000  # bytes per established call, both user agents together


def _clear_events(net: Net) -> None:
    for events in net.events.values():
        events.clear()


def test_established_calls_cost_well_under_20_kb() -> None:
    net = Net(record=False)
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call_between(net, a, b)  # warm the parser's and the URI caches
    net.run_until(40.0)
    _clear_events(net)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        calls = [call_between(net, a, b) for _ in range(CALLS)]
        # past 64*T1: the transactions are gone and the stored ACKs forgotten
        net.run_until(80.0)
        _clear_events(net)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_call = grown / CALLS
    assert all(a.call_state(c) is CallState.CONFIRMED for c, _ in calls)
    assert a.active_calls == b.active_calls == CALLS + 1
    assert per_call < BUDGET, f"{per_call:.0f} bytes per call"


def test_nothing_is_left_after_the_calls_end() -> None:
    net = Net(record=False)
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    calls = [call_between(net, a, b) for _ in range(20)]
    net.run_until(1.0)
    for call, _ in calls:
        a.bye(call, 1.0)
    net.run_until(100.0)
    assert a.active_calls == b.active_calls == 0
    assert net.next_deadline() is None  # no timer left behind either
    for ua in (a, b):
        assert not ua._client and not ua._server and not ua._acks and not ua._by_dialog
        assert not ua._uas_by_key and not ua._merging and not ua._handles


def test_cancelled_timers_do_not_pile_up() -> None:
    net = Net(record=False)
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    for _ in range(600):
        call_between(net, a, b)  # B: 2xx retransmission and no-ACK timers, cancelled by the ACK
    net.run_until(1.0)
    for ua in (a, b):
        assert len(ua._heap) <= max(1024, 2 * ua._live_timers)
        assert all(timer.call is None for *_, timer in ua._heap if timer.cancelled)
    assert b._live_timers == 600  # one session-expiry timer per call
