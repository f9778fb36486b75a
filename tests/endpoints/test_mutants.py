"""One test per mutant: the same scenario against the reference SBC and against the mutant, and
the one difference the fault is about (with everything else unchanged where that is cheap to
show: the seeded identifiers make the two runs byte-identical but for the fault)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sbc_bench import (
    CHICAGO,
    PSTN_HOST,
    REFER_TO,
    REFERRED_BY,
    SBC_HOST,
    SIP,
    SIP2,
    X_MS_SBC,
    Bench,
    Wire,
    pstn_sdp,
    teams_sdp,
)

from sbcsim.dialog import (
    CallEnded,
    CallFailed,
    IncomingCall,
    IncomingRequest,
    ReferProgress,
    ReinviteReceived,
    StandaloneCompleted,
    replaces_value,
)
from sbcsim.endpoints.mutants import MUTANTS, get_mutant, mutant_names
from sbcsim.endpoints.sbc_live import mutants as mutants_command
from sbcsim.errors import ConfigError
from sbcsim.net.memory import identity_matches

REFERENCE: str | None = None


def both(
    scenario: Callable[[Bench], object], mutant: str, **settings: object
) -> tuple[object, object]:
    """What ``scenario`` observes on the reference SBC, then on the mutant."""
    return scenario(Bench(REFERENCE, **settings)), scenario(Bench(mutant, **settings))


def without(message: Wire, *names: str) -> bytes:
    """The message's bytes without the named header lines."""
    lowered = tuple(n.lower() + ":" for n in names)
    lines = message.message.to_bytes().split(b"\r\n")
    return b"\r\n".join(
        line for line in lines if not line.decode(errors="replace").lower().startswith(lowered)
    )


def inbound_invite(bench: Bench) -> Wire:
    bench.call_from_pstn()
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    return bench.to_microsoft("INVITE")[0]


def test_every_mutant_names_its_rule_and_the_registry_rejects_unknown_names() -> None:
    assert len(MUTANTS) == 22
    assert all(m.rule.startswith("Part ") and m.description for m in MUTANTS.values())
    assert mutant_names()[0] == "contact-ip"
    with pytest.raises(ConfigError, match="known mutants: contact-ip"):
        get_mutant("nope")


def test_sbcsim_mutants_lists_every_mutant_in_a_table() -> None:
    console = Console(width=200, record=True)
    result = CliRunner().invoke(mutants_command, [], obj=console)
    assert result.exit_code == 0
    text = console.export_text()
    for mutant in MUTANTS.values():
        assert mutant.name in text
        assert mutant.rule in text


# -- Contact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutant", "host"),
    [
        ("contact-ip", "127.0.0.2"),
        ("contact-wrong-tenant", "tenant-b.customers.example.com"),
        ("contact-carrier-fqdn", "sbc.customers.example.com"),
    ],
)
def test_contact_mutants_change_only_the_contact_host(mutant: str, host: str) -> None:
    good, bad = both(inbound_invite, mutant)
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert good.header("Contact") == (
        "<sip:+13125550101@tenant-a.customers.example.com:5061;transport=tls>"
    )
    assert bad.header("Contact") == f"<sip:+13125550101@{host}:5061;transport=tls>"
    assert without(good, "Contact") == without(bad, "Contact")


# -- OPTIONS ---------------------------------------------------------------------------------


def options_sent(bench: Bench) -> list[Wire]:
    bench.run(130.0)
    return bench.to_microsoft("OPTIONS")


def test_no_options_sends_none_and_still_carries_calls() -> None:
    good, bad = both(options_sent, "no-options", options_start_delay=0.0)
    assert isinstance(good, list) and isinstance(bad, list)
    assert len(good) == 9 and bad == []
    assert inbound_invite(Bench("no-options")).message.to_bytes() == (
        inbound_invite(Bench()).message.to_bytes()
    )


def test_options_to_ip_uses_the_pinned_address_without_sni() -> None:
    def first(bench: Bench) -> tuple[str, str | None, str | None]:
        sent = options_sent(bench)
        seen = bench.proxy(SIP).seen(IncomingRequest)[0]
        return str(sent[0].message.uri), sent[0].header("To"), seen.peer.server_name

    good, bad = both(first, "options-to-ip", options_start_delay=0.0)
    assert good == (
        "sip:sip.pstnhub.microsoft.com:5061",
        "<sip:sip.pstnhub.microsoft.com:5061>",
        SIP,
    )
    assert bad == ("sip:127.0.1.1:5061", "<sip:127.0.1.1:5061>", None)


def test_options_contact_ip_puts_the_address_in_the_options_contact() -> None:
    good, bad = both(lambda b: options_sent(b)[0], "options-contact-ip", options_start_delay=0.0)
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert good.header("Contact") == "<sip:sbc.customers.example.com:5061;transport=tls>"
    assert bad.header("Contact") == "<sip:127.0.0.2:5061;transport=tls>"
    assert without(good, "Contact") == without(bad, "Contact")


# -- headers and capabilities ----------------------------------------------------------------


def test_no_x_ms_sbc_leaves_the_header_out_of_everything_toward_microsoft() -> None:
    def headers(bench: Bench) -> list[str | None]:
        pstn_call, _ = bench.established_inbound()
        bench.pstn.act(lambda ua, now: ua.bye(pstn_call, now))
        bench.run(1.0)
        return [w.header("X-MS-SBC") for w in bench.to_microsoft()]

    good, bad = both(headers, "no-x-ms-sbc")
    assert good == [X_MS_SBC] * 3  # INVITE, ACK, BYE
    assert bad == [None] * 3


def test_no_refer_in_allow_drops_refer_from_invite_and_options_answers() -> None:
    def allows(bench: Bench) -> tuple[list[str], list[str]]:
        invite = inbound_invite(bench)
        proxy = bench.proxy(SIP2)
        proxy.act(
            lambda ua, now: ua.send_request(
                "OPTIONS",
                "sip:sbc.customers.example.com:5061",
                from_="<sip:sip2.pstnhub.microsoft.com>",
                to="<sip:sbc.customers.example.com>",
                remote=(SBC_HOST, 5061),
                transport="tls",
                now=now,
            )
        )
        bench.run(1.0)
        return invite.message.allow, proxy.last(StandaloneCompleted).response.allow

    good, bad = both(allows, "no-refer-in-allow")
    assert (
        good
        == (
            [
                "INVITE",
                "ACK",
                "CANCEL",
                "BYE",
                "OPTIONS",
                "INFO",
                "UPDATE",
                "PRACK",
                "REFER",
                "NOTIFY",
            ],
        )
        * 2
    )  # type: ignore[comparison-overlap]
    assert (
        bad
        == (["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK", "NOTIFY"],) * 2
    )  # type: ignore[comparison-overlap]


# -- transfers -------------------------------------------------------------------------------


def transfer(bench: Bench) -> list[Wire]:
    """Microsoft REFERs the call and answers the new INVITE; what the SBC sent back."""
    _, teams_call = bench.established_inbound()
    proxy = bench.proxy()
    proxy.act(lambda ua, now: ua.refer(teams_call, REFER_TO, referred_by=REFERRED_BY, now=now))
    bench.run(1.0)
    if len(proxy.seen(IncomingCall)) == 2:
        bench.answer(proxy, proxy.last(IncomingCall).call, teams_sdp(offer=False))
        bench.run(1.0)
    return bench.to_microsoft()


def test_refer_rejected_answers_603_and_starts_nothing() -> None:
    good, bad = both(transfer, "refer-rejected")
    assert isinstance(good, list) and isinstance(bad, list)
    assert "202 (REFER)" in [w.method for w in good]
    assert len([w for w in good if w.method == "INVITE"]) == 2
    assert [w.method for w in bad][-1] == "603 (REFER)"
    assert [w.method for w in bad if w.is_request] == ["INVITE", "ACK"]  # no new call


@pytest.mark.parametrize(
    ("mutant", "expected"),
    [
        ("referred-by-altered", "<sip:sip.pstnhub.microsoft.com:5061>"),
        ("referred-by-dropped", None),
    ],
)
def test_referred_by_mutants(mutant: str, expected: str | None) -> None:
    good, bad = both(transfer, mutant)
    assert isinstance(good, list) and isinstance(bad, list)
    good_invite = [w for w in good if w.method == "INVITE"][1]
    bad_invite = [w for w in bad if w.method == "INVITE"][1]
    assert good_invite.header("Referred-By") == REFERRED_BY
    assert bad_invite.header("Referred-By") == expected
    assert without(good_invite, "Referred-By") == without(bad_invite, "Referred-By")


def test_no_sipfrag_notify_sends_no_notify_but_still_transfers() -> None:
    def notifies(bench: Bench) -> tuple[int, str, int]:
        sent = transfer(bench)
        progress = bench.proxy().seen(ReferProgress)
        return (
            len([w for w in sent if w.method == "NOTIFY"]),
            str([w for w in sent if w.method == "INVITE"][1].message.uri),
            len(progress),
        )

    good, bad = both(notifies, "no-sipfrag-notify")
    assert good == (3, REFER_TO[1:-1], 3)
    assert bad == (0, REFER_TO[1:-1], 0)


def test_replaces_to_teams_forwards_the_replacement_to_microsoft() -> None:
    def replaces(bench: Bench) -> list[str | None]:
        pstn_call, _ = bench.established_inbound()
        dialog = bench.pstn.ua.dialog_id(pstn_call)
        assert dialog is not None
        bench.pstn.act(
            lambda ua, now: ua.invite(
                f"sip:{CHICAGO}@{SBC_HOST}",
                from_=f"<sip:+13125550102@{PSTN_HOST}>",
                to=f"<sip:{CHICAGO}@{SBC_HOST}>",
                remote=(SBC_HOST, 5060),
                sdp=pstn_sdp(port=20010),
                headers=(("Replaces", replaces_value(dialog)),),
                now=now,
            )
        )
        bench.run(1.0)
        return [w.header("Replaces") for w in bench.to_microsoft("INVITE")]

    good, bad = both(replaces, "replaces-to-teams")
    assert good == [None]
    assert isinstance(bad, list) and len(bad) == 2 and bad[0] is None
    # the second INVITE names the Microsoft-side dialog of the first call
    assert bad[1] is not None and ";to-tag=" in bad[1] and ";from-tag=" in bad[1]


# -- failover --------------------------------------------------------------------------------


def busy_sip(bench: Bench, status: int, headers: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """sip answers ``status``; sip2 answers the call; which proxies got an INVITE, and the
    status the carrier saw (if the call failed)."""
    sip = bench.proxy(SIP)
    sip.on_call = lambda ev: sip.act(
        lambda ua, now: ua.respond(ev.call, status, headers=headers, now=now)
    )
    sip2 = bench.proxy(SIP2)
    sip2.on_call = lambda ev: bench.answer(sip2, ev.call, teams_sdp(offer=False))
    bench.call_from_pstn()
    bench.run(5.0)
    failed = [str(ev.status) for ev in bench.pstn.seen(CallFailed)]
    return [w.dst[0] for w in bench.to_microsoft("INVITE")] + failed


def test_no_failover_stays_on_sip_after_503() -> None:
    good, bad = both(lambda b: busy_sip(b, 503, (("Retry-After", "1"),)), "no-failover")
    assert good == ["127.0.1.1", "127.0.1.2"]
    assert bad == ["127.0.1.1", "503"]


def test_retry_after_603_tries_the_next_proxy() -> None:
    good, bad = both(lambda b: busy_sip(b, 603), "retry-after-603")
    assert good == ["127.0.1.1", "603"]
    assert bad == ["127.0.1.1", "127.0.1.2"]


# -- media -------------------------------------------------------------------------------------


def test_hold_sendonly_passes_sendonly_to_microsoft() -> None:
    def hold(bench: Bench) -> bytes:
        pstn_call, _ = bench.established_inbound()
        bench.pstn.act(
            lambda ua, now: ua.reinvite(
                pstn_call, pstn_sdp(direction="sendonly", version=2), now=now
            )
        )
        bench.until(lambda: bool(bench.proxy().seen(ReinviteReceived)))
        sdp = bench.proxy().last(ReinviteReceived).sdp
        assert sdp is not None
        return bytes(sdp)

    good, bad = both(hold, "hold-sendonly")
    assert isinstance(good, bytes) and isinstance(bad, bytes)
    assert good.endswith(b"a=inactive\r\n") and bad.endswith(b"a=sendonly\r\n")
    assert good.replace(b"a=inactive", b"a=sendonly") == bad


def test_plain_rtp_to_teams_offers_rtp_avp_without_crypto() -> None:
    good, bad = both(inbound_invite, "plain-rtp-to-teams")
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert good.body_lines()[5] == "m=audio 40000 RTP/SAVP 0 8 101"
    assert bad.body_lines()[5] == "m=audio 40000 RTP/AVP 0 8 101"
    assert [line for line in good.body_lines() if not line.startswith(("m=", "a=crypto"))] == (
        bad.body_lines()[:5] + bad.body_lines()[6:]
    )


def test_no_rtcp_mux_leaves_the_attribute_out() -> None:
    good, bad = both(inbound_invite, "no-rtcp-mux")
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert "a=rtcp-mux" in good.body_lines() and "a=rtcp-mux" not in bad.body_lines()
    assert [line for line in good.body_lines() if line != "a=rtcp-mux"] == bad.body_lines()


def test_delayed_offer_sends_an_invite_without_sdp() -> None:
    good, bad = both(inbound_invite, "delayed-offer")
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert good.header("Content-Type") == "application/sdp" and good.message.body
    assert bad.header("Content-Type") is None and bad.message.body == b""


def test_drops_history_info_toward_the_carrier() -> None:
    history = "<sip:+14255550102@sip.pstnhub.microsoft.com:5061;user=phone>;index=1"

    def forwarded(bench: Bench) -> Wire:
        bench.call_from_teams(headers=(("History-Info", history),))
        bench.until(lambda: bool(bench.pstn.seen(IncomingCall)))
        return bench.to_pstn("INVITE")[0]

    good, bad = both(forwarded, "drops-history-info")
    assert isinstance(good, Wire) and isinstance(bad, Wire)
    assert good.header("History-Info") == history and bad.header("History-Info") is None
    assert without(good, "History-Info") == without(bad, "History-Info")


def test_no_ack_never_acks_and_microsoft_gives_up_after_64_t1() -> None:
    def acks(bench: Bench) -> tuple[int, str | None]:
        bench.call_from_pstn()
        bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
        call = bench.proxy().last(IncomingCall).call
        bench.answer(bench.proxy(), call, teams_sdp(offer=False))
        bench.run(40.0)
        ended = bench.proxy().seen(CallEnded)
        return len(bench.to_microsoft("ACK")), ended[0].reason if ended else None

    good, bad = both(acks, "no-ack")
    assert good == (1, None)
    assert bad == (0, "no-ack")  # the proxy's 2xx went unacknowledged: it sent BYE


def test_tls_wrong_cert_presents_a_certificate_without_the_tenant_fqdn() -> None:
    def certificate(bench: Bench) -> tuple[tuple[str, ...], bool]:
        invite = inbound_invite(bench)
        peer = bench.proxy().last(IncomingCall).peer
        contact = invite.header("Contact") or ""
        host = contact.split("@", 1)[1].split(":", 1)[0]
        return peer.peer_identity.names, identity_matches(peer.peer_identity, host)

    good, bad = both(certificate, "tls-wrong-cert")
    assert good == (("*.customers.example.com",), True)
    assert bad == (("sbc.customers.example.com",), False)


def test_every_mutant_has_a_test_here() -> None:
    text = Path(__file__).read_text()
    assert [name for name in MUTANTS if f'"{name}"' not in text] == []
