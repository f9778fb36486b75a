"""The topology model: the shipped default, its lookups, and every cross-field rule's message."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from sbcsim import __version__
from sbcsim.config import ConfigValidationError, load_model_text
from sbcsim.topology import (
    MICROSOFT_PROXY_FQDNS,
    Topology,
    TrunkSettings,
    default_topology_text,
    load_topology,
)

# A small valid topology; tests append to it or replace lines to break one rule at a time.
BASE = """\
carrier:
  base_domain: customers.example.com
  trunk_fqdn: sbc.customers.example.com
tenants:
  - id: a
    name: A
    domains: [a.example]
    trunk_fqdn: a.customers.example.com
    number_ranges: [{first: +14255550100, last: +14255550199}]
    users:
      - {upn: ann@a.example, name: Ann, number: +14255550101}
      - {upn: bob@a.example, name: Bob, number: +14255550102}
"""


def _load(text: str) -> Topology:
    return load_model_text(text, Topology, "t.yaml")


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigValidationError) as info:
        _load(text)
    return str(info.value).splitlines()


@pytest.fixture(scope="module")
def default() -> Topology:
    return load_topology()


# ---------------------------------------------------------------------- the default topology


def test_default_topology_shape(default: Topology) -> None:
    assert default.carrier.base_domain == "customers.example.com"
    assert default.carrier.trunk_fqdn == "sbc.customers.example.com"
    assert [t.id for t in default.tenants] == ["tenant-a", "tenant-b"]
    assert [t.trunk_fqdn for t in default.tenants] == [
        "tenant-a.customers.example.com",
        "tenant-b.customers.example.com",
    ]
    assert len(list(default.users())) == 12
    assert [q.id for q in default.tenants[0].call_queues] == ["support"]
    assert [p.number for p in default.pstn.phones] == [
        "+13125550101",
        "+13125550102",
        "+13125550103",
        "+442079460000",
    ]
    assert default.contact_center is not None
    assert default.contact_center.smes == (
        "chloe.chen@contoso.example",
        "dmitri.dvorak@contoso.example",
        "elena.estrada@contoso.example",
        "farid.farah@contoso.example",
        "hana.haddad@contoso.example",
    )
    presences = [
        (u.presence.availability, u.presence.activity)
        for u in map(default.user_by_upn, default.contact_center.smes)
        if u is not None
    ]
    assert presences == [
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("DoNotDisturb", "Presenting"),
        ("Away", "Away"),
        ("AvailableIdle", "Inactive"),
    ]


def test_default_addresses_are_loopback(default: Topology) -> None:
    assert [(p.fqdn, p.address, p.port) for p in default.microsoft.proxies] == [
        ("sip.pstnhub.microsoft.com", "127.0.1.1", 5061),
        ("sip2.pstnhub.microsoft.com", "127.0.1.2", 5061),
        ("sip3.pstnhub.microsoft.com", "127.0.1.3", 5061),
    ]
    assert (default.sbc.microsoft_side.address, default.sbc.microsoft_side.port) == (
        "127.0.0.2",
        5061,
    )
    assert default.sbc.microsoft_side.transport == "tls"
    assert (default.sbc.pstn_side.address, default.sbc.pstn_side.port) == ("127.0.0.2", 5060)
    assert (default.pstn.address, default.pstn.port, default.pstn.transport) == (
        "127.0.2.1",
        5060,
        "udp",
    )
    assert default.sbc.x_ms_sbc == f"sbcsim/reference-sbc/{__version__}"


def test_default_helpers(default: Topology) -> None:
    assert default.all_fqdns() == (
        "sbc.customers.example.com",
        "tenant-a.customers.example.com",
        "tenant-b.customers.example.com",
        *MICROSOFT_PROXY_FQDNS,
    )
    assert default.sbc_fqdns() == default.all_fqdns()[:3]
    tenant = default.tenant_for_number("+14255550150")
    assert tenant is not None and tenant.id == "tenant-a"
    tenant = default.tenant_for_number("+12065550199")
    assert tenant is not None and tenant.id == "tenant-b"
    assert default.tenant_for_number("+12065550200") is None
    assert default.tenant_for_number("+1206555010") is None  # one digit short of the range
    assert default.tenant_for_number("+13125550101") is None
    user = default.user_by_number("+14255550103")
    assert user is not None and user.upn == "chloe.chen@contoso.example"
    assert default.user_by_number("+14255550150") is None  # the call queue, not a user
    assert default.user_by_upn("Chloe.Chen@Contoso.Example") == user
    assert default.user_by_upn("nobody@contoso.example") is None
    owner = default.tenant_of_user("julia.jensen@fabrikam.example")
    assert owner is not None and owner.id == "tenant-b"
    phone = default.phone_by_number("+13125550103")
    assert phone is not None and (phone.name, phone.answer.mode) == ("Busy line", "busy")
    assert default.phone_by_number("+14255550101") is None
    assert default.tenant("tenant-b").name == "Fabrikam"
    with pytest.raises(KeyError):
        default.tenant("tenant-z")


def test_tenant_for_fqdn_default(default: Topology) -> None:
    def tenant_id(fqdn: str) -> str | None:
        found = default.tenant_for_fqdn(fqdn)
        return found.id if found else None

    assert tenant_id("tenant-a.customers.example.com") == "tenant-a"
    assert tenant_id("TENANT-B.customers.example.com.") == "tenant-b"
    assert tenant_id("sbc1.contoso.example") == "tenant-a"  # parent domain
    assert tenant_id("fabrikam.example") == "tenant-b"
    # The carrier's own names belong to the carrier tenant, which has no users.
    assert tenant_id("sbc.customers.example.com") is None
    assert tenant_id("customers.example.com") is None
    assert tenant_id("x.y.contoso.example") is None  # only the host label is removed
    assert tenant_id("sip.pstnhub.microsoft.com") is None
    assert default.is_carrier_fqdn("SBC.customers.example.com")
    assert not default.is_carrier_fqdn("tenant-a.customers.example.com")


def test_trunk_settings_inherit_from_the_carrier(default: Topology) -> None:
    carrier = default.carrier.settings
    assert carrier == TrunkSettings(forward_pai=True, forward_call_history=True)
    assert carrier.failover_response_codes == (408, 503, 504)
    assert carrier.failover_time_seconds == 10
    assert default.trunk_settings("tenant-a") == carrier
    assert default.trunk_settings(default.tenants[1]) == carrier.model_copy(
        update={"refer_supported": False}
    )


def test_resolve(default: Topology) -> None:
    assert default.resolve("sip2.pstnhub.microsoft.com") == ("127.0.1.2", 5061)
    assert default.resolve("tenant-b.customers.example.com.") == ("127.0.0.2", 5061)
    assert default.resolve("sbc.customers.example.com") == ("127.0.0.2", 5061)
    assert default.resolve("unknown.example.com") is None


def test_user_details(default: Topology) -> None:
    farid = default.user_by_upn("farid.farah@contoso.example")
    assert farid is not None
    assert (farid.answer.mode, farid.voicemail) == ("no-answer", True)
    assert (farid.forwarding.unanswered, farid.forwarding.unanswered_after_seconds) == (
        "voicemail",
        20,
    )
    grace = default.user_by_upn("grace.gallagher@contoso.example")
    assert grace is not None and grace.simultaneous_ring == ("+13125550102",)
    group = default.tenant("tenant-b").call_groups[0]
    assert (group.owner, group.ring, group.members) == (
        "julia.jensen@fabrikam.example",
        "serial",
        ("kenji.kato@fabrikam.example", "lena.larsen@fabrikam.example"),
    )


def test_graph_id_is_stable_and_overridable() -> None:
    topology = _load(
        BASE.replace("name: Bob,", "name: Bob, object_id: 0f0e0d0c-0b0a-4908-8706-050403020100,")
    )
    ann, bob = topology.tenants[0].users
    namespace = uuid.UUID("6f1d3c1e-5b8a-4c53-9a43-0d6f7e2b1a90")
    assert ann.graph_id == str(uuid.uuid5(namespace, "ann@a.example"))
    assert bob.graph_id == "0f0e0d0c-0b0a-4908-8706-050403020100"


def test_load_topology_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text(BASE, encoding="utf-8")
    topology = load_topology(path)
    assert topology.sbc_fqdns() == ("sbc.customers.example.com", "a.customers.example.com")
    # Sections left out take the loopback defaults.
    assert [p.address for p in topology.microsoft.proxies] == [
        "127.0.1.1",
        "127.0.1.2",
        "127.0.1.3",
    ]
    assert topology.contact_center is None


def test_default_text_round_trips(default: Topology) -> None:
    assert _load(default_topology_text()) == default


def test_models_are_frozen(default: Topology) -> None:
    with pytest.raises(ValidationError):
        default.carrier.base_domain = "other.example"


def test_names_are_lower_cased() -> None:
    topology = _load(
        BASE.replace("trunk_fqdn: a.customers", "trunk_fqdn: A.Customers").replace(
            "ann@a.example", "Ann@A.Example"
        )
    )
    assert topology.tenants[0].trunk_fqdn == "a.customers.example.com"
    assert topology.tenants[0].users[0].upn == "ann@a.example"


def test_tenant_lookup_full_fqdn_before_parent_domain() -> None:
    text = (
        BASE
        + """\
  - id: b
    name: B
    domains: [lab.a.example]
    trunk_fqdn: b.customers.example.com
"""
    )
    topology = _load(text)

    def tenant_id(fqdn: str) -> str | None:
        found = topology.tenant_for_fqdn(fqdn)
        return found.id if found else None

    assert tenant_id("lab.a.example") == "b"  # full FQDN registered in b ...
    assert tenant_id("sbc.lab.a.example") == "b"  # ... its parent, lab.a.example, is b's
    assert tenant_id("sbc.a.example") == "a"  # parent a.example is a's
    assert tenant_id("a.example") == "a"
    assert tenant_id("b.customers.example.com") == "b"


# ---------------------------------------------------------------------- rule violations


def test_bad_e164() -> None:
    assert _errors(BASE.replace("number: +14255550102", "number: 14255550102")) == [
        "t.yaml:12:49: tenants[0].users[1].number: expected an E.164 number: '+' then 7 to 15 "
        "digits, the first not 0 (got '14255550102')"
    ]
    assert _errors(BASE.replace("number: +14255550102", "number: '+1425'")) == [
        "t.yaml:12:49: tenants[0].users[1].number: expected an E.164 number: '+' then 7 to 15 "
        "digits, the first not 0 (got '+1425')"
    ]
    assert _errors(BASE.replace("number: +14255550102", "number: +0425555010")) == [
        "t.yaml:12:49: tenants[0].users[1].number: expected an E.164 number: '+' then 7 to 15 "
        "digits, the first not 0 (got '+0425555010')"
    ]


def test_trunk_fqdn_outside_the_base_domain() -> None:
    assert _errors(
        BASE.replace("trunk_fqdn: a.customers.example.com", "trunk_fqdn: a.other.example")
    ) == [
        "t.yaml:8:17: tenants[0].trunk_fqdn: derived trunk FQDN 'a.other.example' must be one "
        "label in front of the carrier base domain 'customers.example.com' (the certificate "
        "*.customers.example.com covers only that)"
    ]
    # Two labels deep is outside what the wildcard covers, too.
    assert _errors(BASE.replace("trunk_fqdn: a.customers", "trunk_fqdn: x.a.customers")) == [
        "t.yaml:8:17: tenants[0].trunk_fqdn: derived trunk FQDN 'x.a.customers.example.com' must "
        "be one label in front of the carrier base domain 'customers.example.com' (the "
        "certificate *.customers.example.com covers only that)"
    ]


def test_carrier_trunk_outside_the_base_domain() -> None:
    assert _errors(
        BASE.replace("trunk_fqdn: sbc.customers.example.com", "trunk_fqdn: customers.example.com")
    ) == [
        "t.yaml:3:15: carrier.trunk_fqdn: carrier trunk FQDN 'customers.example.com' must be one "
        "label in front of the base domain 'customers.example.com'"
    ]


def test_dangling_references() -> None:
    text = (
        BASE.replace(
            "name: Bob, number: +14255550102}",
            "name: Bob, number: +14255550102,\n"
            "         forwarding: {immediate: carl@a.example, unanswered: +19995550000},\n"
            "         simultaneous_ring: [voicemail, bob@a.example]}",
        )
        + """\
    call_queues:
      - {id: q, name: Q, members: [ann@a.example, dan@a.example, ann@a.example]}
    call_groups:
      - {id: q, name: G, owner: eve@a.example, members: [bob@a.example]}
contact_center:
  tenant: a
  smes: [ann@a.example, zed@a.example]
"""
    )
    assert _errors(text) == [
        "t.yaml:13:34: tenants[0].users[1].forwarding.immediate: no user 'carl@a.example' in "
        "tenant 'a'",
        "t.yaml:13:62: tenants[0].users[1].forwarding.unanswered: no user, call queue or PSTN "
        "phone has the number '+19995550000'",
        "t.yaml:14:30: tenants[0].users[1].simultaneous_ring[0]: voicemail cannot ring "
        "simultaneously",
        "t.yaml:14:41: tenants[0].users[1].simultaneous_ring[1]: a user cannot forward to "
        "themselves",
        "t.yaml:16:51: tenants[0].call_queues[0].members[1]: no user 'dan@a.example' in tenant 'a'",
        "t.yaml:16:66: tenants[0].call_queues[0].members[2]: 'ann@a.example' is listed twice",
        "t.yaml:18:14: tenants[0].call_groups[0].id: group id 'q' is already used at "
        "tenants[0].call_queues[0].id",
        "t.yaml:18:33: tenants[0].call_groups[0].owner: no user 'eve@a.example' in tenant 'a'",
        "t.yaml:21:25: contact_center.smes[1]: no user 'zed@a.example' in tenant 'a'",
    ]


def test_voicemail_target_needs_voicemail() -> None:
    text = BASE.replace("name: Ann,", "name: Ann, forwarding: {unanswered: voicemail},")
    assert _errors(text) == [
        "t.yaml:11:66: tenants[0].users[0].forwarding.unanswered: target 'voicemail' needs "
        "'voicemail: true' on this user"
    ]
    assert (
        _load(text.replace("name: Ann,", "name: Ann, voicemail: true,"))
        .tenants[0]
        .users[0]
        .forwarding.unanswered
        == "voicemail"
    )


def test_forwarding_to_a_pstn_phone_is_a_known_number() -> None:
    text = BASE.replace("name: Ann,", "name: Ann, forwarding: {immediate: +13125550101},")
    text += "pstn:\n  phones: [{number: +13125550101}]\n"
    assert _load(text).tenants[0].users[0].forwarding.immediate == "+13125550101"


def test_numbers_unique_and_inside_ranges() -> None:
    text = BASE.replace("number: +14255550102", "number: +14255550101") + (
        "      - {upn: cat@a.example, name: Cat, number: +14255550200}\n"
        "pstn:\n  phones: [{number: +14255550150}, {number: +13125550101}, {number: +13125550101}]\n"
    )
    assert _errors(text) == [
        "t.yaml:12:49: tenants[0].users[1].number: number '+14255550101' is already used at "
        "tenants[0].users[0].number",
        "t.yaml:13:49: tenants[0].users[2].number: number '+14255550200' is outside the number "
        "ranges of tenant 'a'",
        "t.yaml:15:21: pstn.phones[0].number: PSTN number '+14255550150' is inside the number "
        "ranges of tenant 'a'",
        "t.yaml:15:69: pstn.phones[2].number: number '+13125550101' is already used at "
        "pstn.phones[1].number",
    ]


def test_upns_unique_and_in_tenant_domains() -> None:
    text = BASE.replace("bob@a.example", "ann@A.example") + (
        "      - {upn: cat@b.example, name: Cat}\n"
    )
    assert _errors(text) == [
        "t.yaml:12:15: tenants[0].users[1].upn: UPN 'ann@a.example' is already used at "
        "tenants[0].users[0].upn",
        "t.yaml:13:15: tenants[0].users[2].upn: UPN domain 'b.example' is not registered in "
        "tenant 'a' (its domains: a.example, a.customers.example.com)",
    ]


def test_ranges_and_tenant_names() -> None:
    text = (
        BASE
        + """\
  - id: a
    name: B
    domains: [a.example, x.onmicrosoft.com]
    trunk_fqdn: a.customers.example.com
    number_ranges:
      - {first: +14255550199, last: +14255550299}
      - {first: +12065550100, last: +1206555099}
"""
    )
    assert _errors(text) == [
        "t.yaml:13:9: tenants[1].id: tenant id 'a' is already used at tenants[0].id",
        "t.yaml:15:15: tenants[1].domains[0]: DNS name 'a.example' is already used at "
        "tenants[0].domains[0]",
        "t.yaml:15:26: tenants[1].domains[1]: domain 'x.onmicrosoft.com': *.onmicrosoft.com "
        "cannot be used (S4)",
        "t.yaml:16:17: tenants[1].trunk_fqdn: FQDN 'a.customers.example.com' is already used at "
        "tenants[0].trunk_fqdn",
        "t.yaml:18:9: tenants[1].number_ranges[0]: range overlaps tenants[0].number_ranges[0]",
        "t.yaml:19:37: tenants[1].number_ranges[1].last: '+1206555099' must have as many digits "
        "as '+12065550100' and not be below it",
    ]


def test_addresses_must_be_distinct() -> None:
    text = BASE + (
        "microsoft:\n  proxies:\n"
        "    - {fqdn: sip.pstnhub.microsoft.com, address: 127.0.0.2}\n"
        "    - {fqdn: sip.pstnhub.microsoft.com, address: 127.0.1.2}\n"
        "pstn: {address: '::1'}\n"
        "contact_center: {tenant: a, address: '::1', port: 5060}\n"
    )
    assert _errors(text) == [
        # The SBC keeps its default address, so the clash is reported at the proxy the file set.
        "t.yaml:15:50: microsoft.proxies[0].address: address '127.0.0.2:5061' is already used at "
        "sbc.microsoft_side.address",
        "t.yaml:16:14: microsoft.proxies[1].fqdn: FQDN 'sip.pstnhub.microsoft.com' is already "
        "used at microsoft.proxies[0].fqdn",
        "t.yaml:18:38: contact_center.address: address '[::1]:5060' is already used at "
        "pstn.address",
    ]


def test_field_rules() -> None:
    text = (
        BASE.replace("name: Ann,", "name: Ann, presence: {availability: Sleepy},").replace(
            "domains: [a.example]", "domains: []"
        )
        + "sbc: {vendor: a/b, microsoft_side: {address: localhost, port: 70000}}\n"
    )
    assert _errors(text) == [
        "t.yaml:7:14: tenants[0].domains: needs at least one entry",
        "t.yaml:11:66: tenants[0].users[0].presence.availability: Input should be 'Available', "
        "'AvailableIdle', 'Away', 'BeRightBack', 'Busy', 'BusyIdle', 'DoNotDisturb', 'Offline' "
        "or 'PresenceUnknown' (got 'Sleepy')",
        "t.yaml:13:15: sbc.vendor: expected printable text without '/' (X-MS-SBC is "
        "Vendor/Model/Firmware), got 'a/b'",
        "t.yaml:13:46: sbc.microsoft_side.address: expected an IPv4 or IPv6 address (got "
        "'localhost')",
        "t.yaml:13:63: sbc.microsoft_side.port: Input should be less than or equal to 65535 "
        "(got 70000)",
    ]


def test_missing_and_unknown_fields() -> None:
    text = BASE.replace("    name: A\n", "    nmae: A\n").replace(
        "  trunk_fqdn: sbc.customers.example.com\n", ""
    )
    assert _errors(text) == [
        "t.yaml:1:1: carrier.trunk_fqdn: required field missing",
        "t.yaml:4:5: tenants[0].name: required field missing",
        "t.yaml:5:5: tenants[0].nmae: unknown key (expected one of: id, name, domains, "
        "trunk_fqdn, number_ranges, settings, users, call_groups, call_queues)",
    ]


def test_rules_apply_to_python_construction_too() -> None:
    with pytest.raises(ValidationError) as info:
        Topology.model_validate(
            {
                "carrier": {"base_domain": "customers.example.com", "trunk_fqdn": "x.example"},
                "tenants": [
                    {"id": "a", "name": "A", "domains": ["a.example"], "trunk_fqdn": "a.example"}
                ],
            }
        )
    assert info.value.errors()[0]["msg"] == (
        "carrier.trunk_fqdn: carrier trunk FQDN 'x.example' must be one label in front of the "
        "base domain 'customers.example.com'\n"
        "tenants[0].trunk_fqdn: derived trunk FQDN 'a.example' must be one label in front of the "
        "carrier base domain 'customers.example.com' (the certificate *.customers.example.com "
        "covers only that)\n"
        "tenants[0].domains[0]: DNS name 'a.example' is already used at tenants[0].trunk_fqdn"
    )
