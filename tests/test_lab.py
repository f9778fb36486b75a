"""The simulated lab: what Lab.build puts on the network, its DNS, names and trace, and the
contract the reference SBC builds against (sbc_factory)."""

from __future__ import annotations

from typing import Any

from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab
from sbcsim.topology import MICROSOFT_PROXY_FQDNS


def test_build_default_has_three_proxies_users_and_pstn() -> None:
    lab = Lab.build()
    assert list(lab.proxies) == list(MICROSOFT_PROXY_FQDNS)
    assert [(p.address, p.port) for p in lab.proxies.values()] == [
        ("127.0.1.1", 5061),
        ("127.0.1.2", 5061),
        ("127.0.1.3", 5061),
    ]
    assert lab.teams_user("Alice.Archer@contoso.example").number == "+14255550101"
    assert lab.phone("+13125550101").number == "+13125550101"
    assert lab.pstn.sbc_address == ("127.0.0.2", 5060)
    assert lab.sbc is None
    assert isinstance(lab.settings, MicrosoftSettings)


def test_presence_starts_from_the_topology() -> None:
    lab = Lab.build()
    dmitri = lab.topology.user_by_upn("dmitri.dvorak@contoso.example")
    assert dmitri is not None
    assert str(lab.presence.presence(dmitri.graph_id)) == "Busy/InACall"


def test_resolve_is_the_labs_dns() -> None:
    lab = Lab.build()
    assert lab.resolve("sip2.pstnhub.microsoft.com") == ("127.0.1.2", 5061)
    assert lab.resolve("tenant-b.customers.example.com") == ("127.0.0.2", 5061)
    assert lab.resolve("SBC.customers.example.com.") == ("127.0.0.2", 5061)
    assert lab.resolve("nowhere.example") is None


def test_actor_names() -> None:
    lab = Lab.build()
    assert lab.actor_name(("127.0.1.3", 5061)) == "sip3.pstnhub.microsoft.com"
    assert lab.actor_name(("127.0.0.2", 49152)) == "sbc"
    assert lab.actor_name(("127.0.2.1", 5060)) == "pstn"
    assert lab.actor_name(("127.0.3.1", 5061)) == "ccaas"
    assert lab.actor_name(("10.9.9.9", 1)) == "10.9.9.9"


def test_sbc_factory_is_called_with_the_built_lab() -> None:
    seen: list[Any] = []

    def factory(lab: Lab) -> str:
        seen.append((lab.proxies.keys(), lab.pstn is not None))
        return "the-sbc"

    lab = Lab.build(sbc_factory=factory)
    assert lab.sbc == "the-sbc"
    assert len(seen) == 1 and seen[0][1] is True


def _pstn_to_nowhere(seed: int) -> list[tuple[float, str, str, str]]:
    lab = Lab.build(seed=seed)
    lab.phone("+13125550101").call("+14255550101")
    lab.run_until(lambda: False, 2.0)
    return [(t.time, t.src_name, t.dst_name, t.summary) for t in lab.trace()]


def test_trace_has_actor_names_and_times() -> None:
    trace = _pstn_to_nowhere(0)
    assert trace[0] == (
        0.0,
        "pstn",
        "sbc",
        "INVITE sip:+14255550101@127.0.0.2:5060;user=phone SIP/2.0",
    )


def test_same_seed_same_trace() -> None:
    assert _pstn_to_nowhere(7) == _pstn_to_nowhere(7)


def test_run_until_and_run_for_move_virtual_time() -> None:
    lab = Lab.build()
    assert lab.run_until(lambda: lab.now() >= 0, 5) is True
    lab.run_for(2.5)
    assert lab.now() == 2.5
