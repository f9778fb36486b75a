"""A proxy that refuses an SBC's certificate closes the connection and answers nothing at all
(Part 1.1 [SUP] step 2): not even the automatic 100 Trying of its INVITE server transaction,
which would otherwise find its way back over another connection."""

from __future__ import annotations

from collections.abc import Callable

from rawsbc import RawSbc

from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab
from sbcsim.sip.parser import parse_message


def test_refused_invite_gets_no_answer_on_any_connection(
    make_sbc: Callable[..., RawSbc],
) -> None:
    # Microsoft's own OPTIONS on: the proxy has a connection of its own to the SBC, which the
    # late 100 Trying used to take.
    lab = Lab.build(settings=MicrosoftSettings())
    sbc = make_sbc(lab, names=("sbc.customers.example.com",))
    sbc.options()
    lab.run_for(1)
    ref = sbc.invite()  # Contact tenant-a..., certificate only for the carrier name
    lab.run_for(5)
    proxy = lab.proxy("sip.pstnhub.microsoft.com")
    assert [why for _, _, why in proxy.closed_connections] == ["certificate-mismatch"]
    from_proxy = [
        parse_message(p.data, transport="tcp")
        for p in lab.net.capture
        if p.src[0] == proxy.address and p.data.strip()
    ]
    assert [m.call_id for m in from_proxy if m.call_id == ref.call_id] == []
    assert proxy.refused(proxy.closed_connections[0][1])
    assert not proxy.refused(10_000)
