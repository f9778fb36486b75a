"""Named faults of the reference SBC: each one breaks exactly one Direct Routing rule.

A test plan is only as good as the faults it catches.  Each :class:`Mutant` here is the
reference SBC (:class:`~sbcsim.endpoints.sbc.ReferenceSbc`) with one switch turned, and names
the part of direct-routing-sip.md (with its grade) that the fault breaks, so that
``sbcsim run --target mutant:NAME`` can show a plan failing for the right reason.  The switches
are consulted by the SBC at the exact point where the behaviour happens; there is no second copy
of the SBC per fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rich.table import Table

from sbcsim.errors import ConfigError

__all__ = ["MUTANTS", "Mutant", "get_mutant", "mutant_names", "mutants_table"]


@dataclass(frozen=True, slots=True)
class Mutant:
    """One named fault: what the SBC does wrong and the rule that forbids it."""

    name: str
    rule: str
    """The part of direct-routing-sip.md (and its grade) the fault breaks."""
    description: str
    """One line: what the mutant SBC does differently."""


_ALL = (
    Mutant(
        "contact-ip",
        "Part 2.1 [DOC], Part 2.4 [DOC]",
        "Contact toward Microsoft carries the SBC's IP address instead of the tenant's trunk FQDN",
    ),
    Mutant(
        "contact-wrong-tenant",
        "Part 4.1 [DOC], Part 4.3 [DOC]",
        "Contact toward Microsoft names another customer tenant's trunk FQDN",
    ),
    Mutant(
        "contact-carrier-fqdn",
        "Part 4.3 [DOC]",
        "Contact toward Microsoft names the carrier trunk FQDN instead of the derived trunk",
    ),
    Mutant("no-options", "Part 1.1 [DOC], Part 1.3 [DOC]", "never sends OPTIONS to Microsoft"),
    Mutant(
        "options-to-ip",
        "Part 1.2 [SUP]",
        "sends OPTIONS to IP addresses pinned at start-up instead of the proxy FQDNs",
    ),
    Mutant(
        "options-contact-ip",
        "Part 1.2 [DOC]",
        "the Contact of its OPTIONS carries an IP address instead of the carrier FQDN",
    ),
    Mutant("no-x-ms-sbc", "Part 12 SBC 5 [OBS/INF]", "sends no X-MS-SBC header toward Microsoft"),
    Mutant(
        "no-refer-in-allow",
        "Part 5.1 [DOC]",
        "leaves REFER out of Allow, so Microsoft never hands it a transfer",
    ),
    Mutant("refer-rejected", "Part 5.3 [SUP]", "answers Microsoft's REFER with 603 Decline"),
    Mutant(
        "referred-by-altered",
        "Part 5.3 [SUP]",
        "the transfer INVITE carries a Referred-By rebuilt without its x-* parameters",
    ),
    Mutant("referred-by-dropped", "Part 5.3 [SUP]", "the transfer INVITE carries no Referred-By"),
    Mutant(
        "no-sipfrag-notify",
        "Part 5.3 [SUP]",
        "accepts REFER with 202 but sends no sipfrag NOTIFY about the new call",
    ),
    Mutant(
        "no-failover",
        "Part 6.1 [DOC], Part 6.2 [DOC]",
        "stays on sip.pstnhub.microsoft.com: a 503 or a timeout fails the call, sip2/sip3 unused",
    ),
    Mutant(
        "retry-after-603",
        "Part 2.3 [DOC]",
        "tries the next proxy after a 603 Decline (the callee sees several missed calls)",
    ),
    Mutant(
        "replaces-to-teams",
        "Part 2.1 [DOC], Part 5.4 [DOC]",
        "forwards a Replaces header toward Microsoft instead of handling the replacement itself",
    ),
    Mutant(
        "hold-sendonly",
        "Part 8.4 [DOC]",
        "passes the carrier's a=sendonly hold to Microsoft instead of a=inactive",
    ),
    Mutant(
        "plain-rtp-to-teams",
        "Part 8.1 [DOC]",
        "offers and answers plain RTP/AVP toward Microsoft (no SDES crypto)",
    ),
    Mutant("no-rtcp-mux", "Part 8.3 [DOC]", "leaves a=rtcp-mux out of its SDP toward Microsoft"),
    Mutant(
        "delayed-offer",
        "Part 2.1 [DOC]",
        "sends its INVITE to Microsoft without SDP (delayed offer)",
    ),
    Mutant(
        "drops-history-info",
        "Part 5.5 [DOC]",
        "drops Microsoft's History-Info when forwarding a call toward the PSTN",
    ),
    Mutant(
        "no-ack",
        "Part 2.3 [SUP]",
        "never ACKs Microsoft's 200 OK (Microsoft drops the call: 408, code 1106)",
    ),
    Mutant(
        "tls-wrong-cert",
        "Part 4.1 [DOC], Part 7.3 [DOC]",
        "presents a certificate for the carrier trunk FQDN only, without the tenants' FQDNs",
    ),
)

#: Every mutant by name, in the order ``sbcsim mutants`` lists them.
MUTANTS: Mapping[str, Mutant] = MappingProxyType({m.name: m for m in _ALL})


def mutant_names() -> tuple[str, ...]:
    """The names of every mutant, in listing order."""
    return tuple(MUTANTS)


def get_mutant(name: str) -> Mutant:
    """The mutant called ``name``; :class:`~sbcsim.errors.ConfigError` naming the known ones."""
    try:
        return MUTANTS[name]
    except KeyError:
        raise ConfigError(f"unknown mutant {name!r}; known mutants: {', '.join(MUTANTS)}") from None


def mutants_table() -> Table:
    """The mutants as a table: name, the rule each breaks, and what it does."""
    table = Table(title="Reference SBC mutants")
    table.add_column("mutant", no_wrap=True)
    table.add_column("breaks", no_wrap=True)
    table.add_column("what it does")
    for mutant in MUTANTS.values():
        table.add_row(mutant.name, mutant.rule, mutant.description)
    return table
