"""Every choice the emulated Microsoft side makes where the documentation is silent or unsure.

direct-routing-sip.md grades each statement: [DOC] Microsoft documentation, [SUP] a support
article, [OBS] a third-party trace, [INF] an inference, [GAP] nothing public.  Behaviour graded
[DOC] is simply implemented; every [GAP] and [INF] (and the [OBS] wire details) is a field of
:class:`MicrosoftSettings`, whose default is the doc's own suggestion, so a lab can be switched to
another reading without touching the proxies.  Each field names its part and grade.

:data:`NICC_Q850_CAUSES` is the SIP-to-Q.850 table the proxies put in ``Reason`` headers
(Part 2.3 [SUP]: Direct Routing maps with NICC ND1017, "486 to Q.850 cause code 34").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from sbcsim.errors import ConfigError

__all__ = [
    "DEFAULT_REGIONS",
    "MICROSOFT_ALLOW",
    "NICC_Q850_CAUSES",
    "MicrosoftSettings",
    "q850_cause",
]

#: Part 1.2 [OBS]: ``ALLOW: INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY`` (no REFER, PRACK, UPDATE, INFO).
MICROSOFT_ALLOW = "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY"

#: Region labels of the three proxies in the ``Server``/``User-Agent`` string
#: (Part 1.2 [OBS] ``i.USWE2.3``, ``i.ASEA.5``; Part 6.1 [DOC] NOAM primary -> EU -> ASIA).
DEFAULT_REGIONS: tuple[str, ...] = ("USWE2", "EUWE", "ASEA")

#: SIP status -> Q.850 cause after NICC ND1017 (Part 2.3 [SUP] names the standard and gives
#: 486 -> 34; the other rows are the ND1017 table as the lab applies it [INF]).
NICC_Q850_CAUSES: Mapping[int, int] = MappingProxyType(
    {
        400: 41,
        401: 21,
        402: 21,
        403: 21,
        404: 1,
        405: 63,
        406: 79,
        407: 21,
        408: 102,
        410: 22,
        413: 127,
        414: 127,
        415: 79,
        416: 127,
        420: 127,
        421: 127,
        423: 127,
        480: 18,
        481: 127,
        482: 127,
        483: 127,
        484: 28,
        485: 1,
        486: 34,
        487: 127,
        488: 65,
        500: 41,
        501: 79,
        502: 38,
        503: 41,
        504: 102,
        505: 127,
        513: 127,
        600: 17,
        603: 21,
        604: 1,
        606: 58,
    }
)


def q850_cause(status: int, table: Mapping[int, int] = NICC_Q850_CAUSES) -> int:
    """The Q.850 cause for a SIP failure status; unlisted codes map to 127 (interworking)."""
    return table.get(status, 127)


@dataclass(frozen=True, slots=True)
class MicrosoftSettings:
    """The emulated Microsoft side's behaviour where the doc leaves a choice (see module doc).

    Durations are seconds on the lab clock.
    """

    # -- OPTIONS and health (Part 1) -----------------------------------------------------------
    #: Part 1.1 [DOC]/[SUP] conflict, [INF] default: the next hop of Microsoft's own OPTIONS is
    #: the Contact FQDN; "record-route-first" follows the support article instead.
    options_next_hop: Literal["contact", "record-route-first"] = "contact"
    #: Part 12 Microsoft 2 [INF]: an OPTIONS from an FQDN no tenant or carrier registered gets
    #: 403, or is dropped silently ("no 200" is all S22 says).
    unknown_fqdn_options: Literal["403", "drop"] = "403"
    #: Part 1.3 [GAP]/[INF]: how often a proxy sends its own OPTIONS to an SBC (60 s).
    options_interval: float = 60.0
    #: Part 1.1 [DOC]: Microsoft answers an SBC's OPTIONS by pinging back; off for unit tests.
    send_options: bool = True
    #: Part 1.3 [DOC] (S8): healthy when an OPTIONS arrived in the last three minutes.
    healthy_window: float = 180.0
    #: Part 1.3 [DOC] (S10): demoted after five minutes without OPTIONS to any region.
    demote_after: float = 300.0

    # -- wire style (Part 1.2 [OBS]) ----------------------------------------------------------
    #: Part 1.2 [OBS]: Microsoft writes header names in upper case.
    uppercase_headers: bool = True
    #: Part 1.2 [OBS]: the OPTIONS 200 carries no To-tag.
    options_200_to_tag: bool = False
    #: Part 1.2 [OBS]: ``Microsoft.PSTNHub.SIPProxy v.<yyyy.m.d.n> i.<REGION>.<n>``.
    server_version: str = "2024.11.4.2"
    #: Region label per proxy, in topology order (Part 1.2 [OBS], Part 6.1 [DOC]).
    regions: tuple[str, ...] = DEFAULT_REGIONS

    # -- inbound calls (Part 2) ----------------------------------------------------------------
    #: Part 2.1 [GAP]: the status for a request from the SBC carrying Replaces; [INF] 403.
    replaces_rejection_status: int = 403
    #: Part 2.3 [DOC] (S35): the Ringback bot (GenerateRingingWhileLocatingUser, default on)
    #: sends one 183 with Media Processor SDP before any 180 ([INF] on the form).
    ringback_bot: bool = True
    #: Part 2.3 [DOC]: without the bot, one 183 (Media Processor SDP) follows the first 180.
    early_media_183: bool = True
    #: Part 2.3 [SUP]/[INF]: the callee answered but the SBC never ACKed the 200: ``None`` keeps
    #: RFC 3261 Timer H (64*T1 = 32 s); a number ends the call that many seconds after the 200
    #: (the user-visible drop the support article puts at about 4 s).
    ack_timeout: float | None = None
    #: Part 2.4 [SUP]/[INF]: send in-dialog requests from another proxy's address (a new TLS
    #: connection) rather than the proxy that set the call up.
    in_dialog_from_other_proxy: bool = False
    #: Part 8.4 [DOC]: the proxy does not understand sendonly/recvonly hold; the status it
    #: answers such a re-INVITE with ([INF] 488), or ``None`` to accept it.
    one_way_hold_status: int | None = 488

    # -- media (Parts 2.1, 8) --------------------------------------------------------------------
    #: Where the emulated Media Processor "listens" in its SDP (no RTP is sent in the lab).
    media_processor_address: str = "127.0.1.100"
    #: Part 8.6 [DOC]: Media Processor ports 49152-53247.
    media_processor_port: int = 49152
    #: Part 8.5 [DOC] "Media Processors are always inserted for escalation from 1:1 to a group
    #: call"; [INF] the conference (AVMCU mixer, Part 8.4 S12) instance has an address of its
    #: own, so an escalation re-INVITE visibly moves the media.
    conference_processor_address: str = "127.0.1.101"

    # -- session timers and UPDATE (Part 6.4) ----------------------------------------------------
    #: Part 6.4 [GAP]: Microsoft's Session-Expires; [SUP] illustration 1800.
    session_expires: int = 1800
    #: Part 6.4 [SUP]/[GAP]: Min-SE below which a request gets 422; [INF] 90 (RFC 4028 minimum).
    min_se: int = 90
    #: Part 6.4 [OBS]/[INF]: UPDATE is not in Microsoft's Allow; the status it gets (405), or
    #: ``None`` to accept it.
    update_rejection_status: int | None = 405

    # -- busy datacenter (Part 6.2 [DOC]) ------------------------------------------------------
    #: ``Retry-After`` on the busy-mode 503 ("a one-second interval").
    busy_retry_after: int = 1

    # -- outbound calls (Parts 3, 6.3) ------------------------------------------------------------
    #: Part 3.1 [GAP]: what stops the FailoverTimeSeconds timer: any provisional (field
    #: experience, [INF]) or only a final response.
    failover_timer_stops_on: Literal["provisional", "final"] = "provisional"
    #: Part 5.7 [GAP]/[INF]: a 3xx from the SBC ends the call ("final") or is treated like a
    #: failover code ("failover").
    redirect_handling: Literal["final", "failover"] = "final"
    #: Part 3.1 [INF] on S17's wording: with ForwardPai the From becomes anonymous.
    forward_pai_anonymous_from: bool = False
    #: Part 6.3 [DOC]: shuffle equally healthy trunks (Fisher-Yates); off for fixed order.
    shuffle_trunks: bool = True
    #: Voice routes per tenant id: the trunk FQDNs its users' calls hunt over (Part 6.3 [DOC]).
    #: A tenant without an entry uses its derived trunk only.
    voice_routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    # -- transfers (Part 5) ------------------------------------------------------------------------
    #: Part 5.2 [OBS] (S29): the status for a transfer INVITE whose Referred-By is missing or
    #: differs from the REFER's.
    referred_by_mismatch_status: int = 400
    #: Part 5.3 [SUP]: how long the proxy waits for 202 and the final NOTIFY before giving up
    #: ([GAP] value; 32 s = 64*T1).
    transfer_timeout: float = 32.0
    #: Part 5.2 [INF]: put the transferee on hold (a=inactive) before sending REFER.
    hold_before_refer: bool = False
    #: Part 5.5 [DOC]: History-Info escaped as in the ACS text (``Reason=SIP%3Bcause%3D302``).
    history_info_escaped: bool = True
    #: Part 5.5 [INF] (ACS): a forwarded call from a PSTN caller gets ``181`` first.
    send_181_on_forward: bool = True

    # -- Reason header (Part 2.3 [SUP]) -------------------------------------------------------
    q850_causes: Mapping[int, int] = field(default_factory=lambda: NICC_Q850_CAUSES)

    def __post_init__(self) -> None:
        for name in ("options_interval", "healthy_window", "demote_after", "transfer_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"MicrosoftSettings.{name} must be positive, got {value!r}")
        if self.ack_timeout is not None and not self.ack_timeout > 0:
            raise ConfigError(
                f"MicrosoftSettings.ack_timeout must be positive, got {self.ack_timeout!r}"
            )
        if self.min_se < 90 or self.session_expires < self.min_se:
            raise ConfigError("MicrosoftSettings needs 90 <= min_se <= session_expires (RFC 4028)")
        for name in ("replaces_rejection_status", "referred_by_mismatch_status"):
            value = getattr(self, name)
            if not 400 <= value <= 699:
                raise ConfigError(
                    f"MicrosoftSettings.{name} must be a 4xx-6xx status, got {value!r}"
                )
        if not self.regions:
            raise ConfigError("MicrosoftSettings.regions needs at least one region label")

    def server_header(self, index: int) -> str:
        """The ``SERVER``/``USER-AGENT`` value of the proxy at topology position ``index``."""
        region = self.regions[index % len(self.regions)]
        return f"Microsoft.PSTNHub.SIPProxy v.{self.server_version} i.{region}.{index + 1}"

    def cause(self, status: int) -> int:
        """The Q.850 cause this lab's table gives ``status``."""
        return q850_cause(status, self.q850_causes)
