"""Requests outside a dialog (OPTIONS keep-alive): outcome events for 200, timeout and failure."""

from __future__ import annotations

from sbcsim.dialog import StandaloneCompleted
from sbcsim.net.memory import MemoryNetwork
from sbcsim.sim import Simulator
from sbcsim.stack import sim_node


def test_options_outside_a_dialog_gets_the_peers_200() -> None:
    sim = Simulator(1)
    net = MemoryNetwork(sim, default_latency=0.01)
    events: list[object] = []
    a = sim_node(sim, net, "a", "10.0.0.1", on_event=events.append)
    sim_node(sim, net, "b", "10.0.0.2")
    ua = a.stack
    ref = ua.send_request(  # type: ignore[attr-defined]
        "OPTIONS",
        "sip:10.0.0.2",
        from_="<sip:a@10.0.0.1>",
        to="<sip:10.0.0.2>",
        remote=("10.0.0.2", 5060),
        headers=[("X-MS-SBC", "sbcsim/Test/1")],
        now=sim.now(),
    )
    a.poke()
    sim.run_for(1.0)
    done = [e for e in events if isinstance(e, StandaloneCompleted)]
    assert len(done) == 1 and done[0].ref == ref and done[0].status == 200
    assert done[0].response is not None and "OPTIONS" in done[0].response.headers.get("Allow", "")
    sent = net.capture[0].data
    assert (
        sent.startswith(b"OPTIONS sip:10.0.0.2 SIP/2.0\r\n")
        and b"X-MS-SBC: sbcsim/Test/1\r\n" in sent
    )


def test_options_to_nobody_times_out_at_timer_f() -> None:
    sim = Simulator(1)
    net = MemoryNetwork(sim, default_latency=0.01)
    events: list[tuple[float, object]] = []
    a = sim_node(sim, net, "a", "10.0.0.1", on_event=lambda e: events.append((sim.now(), e)))
    a.stack.send_request(  # type: ignore[attr-defined]
        "OPTIONS",
        "sip:10.0.0.9",
        from_="<sip:a@10.0.0.1>",
        to="<sip:10.0.0.9>",
        remote=("10.0.0.9", 5060),
        now=sim.now(),
    )
    a.poke()
    sim.run_for(40.0)
    done = [(t, e) for t, e in events if isinstance(e, StandaloneCompleted)]
    assert [(t, e.status) for t, e in done] == [(32.0, 408)]  # type: ignore[attr-defined]
