"""The Direct Routing world around the SBC: carrier, tenants, Teams users, PSTN, proxies.

One YAML file describes the lab (``sbcsim/data/default-topology.yaml`` is the shipped one).
The terms are those of Microsoft's Direct Routing documentation (direct-routing-sip.md):

- the **carrier** owns one *base domain* (``customers.example.com``) and registers the *carrier
  trunk* (``sbc.customers.example.com``); it sends OPTIONS and holds the trunk settings (Part 4);
- each customer **tenant** has a *derived trunk*: a single label in front of the base domain
  (``tenant-a.customers.example.com``) that the SBC puts in its Contact toward Microsoft, and
  that the wildcard certificate ``*.customers.example.com`` covers (Parts 4.1, 4.3);
- Microsoft identifies the tenant from that FQDN, then from its parent domain (Part 2.2),
  and the user from the E.164 number in the Request-URI;
- the three proxies ``sip``/``sip2``/``sip3.pstnhub.microsoft.com`` listen on TLS port 5061
  (Parts 6.1, 7.2), here on loopback addresses.

Derived trunks inherit every setting of the carrier trunk (S7).  A tenant's ``settings`` may
override some of them: a lab liberty so one run can cover tenants with, say, and without
``forward_pai``; a real carrier would need a second carrier trunk for that.

Rules that span fields (unique numbers, references, numbers inside their tenant's ranges) are
checked when the model is built; each error points at the offending value's line.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from sbcsim import __version__
from sbcsim.config.kinds import register_kind
from sbcsim.config.yamlload import (
    Issue,
    PathItem,
    format_path,
    issues_error,
    load_model,
    load_model_text,
)

__all__ = [
    "DEFAULT_CCAAS_APP_ID",
    "DEFAULT_TOPOLOGY_RESOURCE",
    "E164",
    "MICROSOFT_PROXY_FQDNS",
    "Activity",
    "AnswerBehaviour",
    "AnswerMode",
    "Availability",
    "CallGroup",
    "CallQueue",
    "CallTarget",
    "Carrier",
    "CcApp",
    "CcQueue",
    "ContactCenter",
    "ContactCenterCustomer",
    "EscalationMode",
    "Forwarding",
    "Fqdn",
    "Microsoft",
    "MicrosoftProxy",
    "NumberRange",
    "Presence",
    "Pstn",
    "PstnPhone",
    "RingMode",
    "Sbc",
    "SbcListener",
    "SmeFallback",
    "TeamsUser",
    "Tenant",
    "Topology",
    "TrunkOverrides",
    "TrunkSettings",
    "Upn",
    "default_topology_text",
    "load_topology",
]

#: The shipped default topology, inside the package.
DEFAULT_TOPOLOGY_RESOURCE = "data/default-topology.yaml"

#: Global, secondary and tertiary proxy FQDNs, in the order an SBC must try them (Part 6.1).
MICROSOFT_PROXY_FQDNS = (
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
)

# Fixed namespace so a user without an explicit object id gets the same Graph id every run.
_GRAPH_ID_NAMESPACE = uuid.UUID("6f1d3c1e-5b8a-4c53-9a43-0d6f7e2b1a90")

# ------------------------------------------------------------------------------ scalar types

_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_UPN_LOCAL_RE = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")


def _e164(value: str) -> str:
    if not _E164_RE.fullmatch(value):
        raise ValueError(
            f"expected an E.164 number: '+' then 7 to 15 digits, the first not 0 (got {value!r})"
        )
    return value


def _digits_as_text(value: object) -> object:
    # An unquoted number without '+' arrives as an int; say what an E.164 number looks like.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _non_empty(value: object) -> object:
    # A tuple's min_length is checked after its items, so a bad item also reported "too few".
    if isinstance(value, list | tuple) and not value:
        raise ValueError("needs at least one entry")
    return value


_NON_EMPTY = Field(json_schema_extra={"minItems": 1})


def _fqdn(value: str) -> str:
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(_LABEL_RE.fullmatch(x) for x in labels):
        raise ValueError(
            "expected a fully qualified domain name: two or more labels of letters, digits "
            f"and '-' (got {value!r})"
        )
    return name


def _upn(value: str) -> str:
    local, at, domain = value.lower().rpartition("@")
    if not at or not _UPN_LOCAL_RE.fullmatch(local):
        raise ValueError(
            f"expected a user principal name such as alice@contoso.com (got {value!r})"
        )
    try:
        return f"{local}@{_fqdn(domain)}"
    except ValueError:
        raise ValueError(
            f"expected a user principal name such as alice@contoso.com (got {value!r})"
        ) from None


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address (got {value!r})") from None


def _identifier(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"expected an id of lowercase letters, digits and '-' (got {value!r})")
    return value


def _x_ms_sbc_part(value: str) -> str:
    if not value or "/" in value or not value.isprintable():
        raise ValueError(
            f"expected printable text without '/' (X-MS-SBC is Vendor/Model/Firmware), got {value!r}"
        )
    return value


def _call_target(value: str) -> str:
    if value == "voicemail":
        return value
    if value.startswith("+"):
        return _e164(value)
    if "@" in value:
        return _upn(value)
    raise ValueError(f"expected a user's UPN, an E.164 number or 'voicemail' (got {value!r})")


E164 = Annotated[
    str,
    BeforeValidator(_digits_as_text),
    AfterValidator(_e164),
    WithJsonSchema({"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$"}),
]
"""A phone number in E.164 form: ``+`` and 7 to 15 digits."""

Fqdn = Annotated[
    str, AfterValidator(_fqdn), WithJsonSchema({"type": "string", "format": "hostname"})
]
"""A fully qualified domain name, kept in lower case."""

Upn = Annotated[str, AfterValidator(_upn), WithJsonSchema({"type": "string", "format": "email"})]
"""A user principal name (``alice@contoso.example``), kept in lower case."""

IpAddress = Annotated[
    str,
    AfterValidator(_ip),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
    ),
]

Identifier = Annotated[
    str,
    AfterValidator(_identifier),
    WithJsonSchema({"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"}),
]

XMsSbcPart = Annotated[
    str,
    AfterValidator(_x_ms_sbc_part),
    WithJsonSchema({"type": "string", "pattern": "^[^/]+$"}),
]

CallTarget = Annotated[
    str,
    AfterValidator(_call_target),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A user's UPN, an E.164 number, or 'voicemail'.",
        }
    ),
]
"""Where a call is sent on: a user (UPN), a number (E.164) or ``voicemail``."""

Port = Annotated[int, Field(ge=1, le=65535)]
SipFailureCode = Annotated[int, Field(ge=300, le=699)]

Availability = Literal[
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
]
"""Microsoft Graph ``presence.availability`` values (Part 11.1)."""

Activity = Literal[
    "Available",
    "Away",
    "BeRightBack",
    "Busy",
    "DoNotDisturb",
    "InACall",
    "InAConferenceCall",
    "Inactive",
    "InAMeeting",
    "Offline",
    "OffWork",
    "OutOfOffice",
    "PresenceUnknown",
    "Presenting",
    "UrgentInterruptionsOnly",
]
"""Microsoft Graph ``presence.activity`` values (Part 11.1)."""

AnswerMode = Literal["answer", "decline", "busy", "no-answer", "dnd"]
"""What an endpoint does with a call that rings it."""

RingMode = Literal["simultaneous", "serial"]
"""Ring every member at once, or one after the other."""


class _Model(BaseModel):
    # Unknown keys are mistakes; attribute docstrings become the schema's descriptions.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# ------------------------------------------------------------------------------ trunk settings


class TrunkSettings(_Model):
    """Settings of the carrier trunk (``New-CsOnlinePSTNGateway``), inherited by derived trunks."""

    enabled: bool = True
    """False drains the trunk: existing calls continue, new ones go elsewhere (S17)."""
    forward_pai: bool = False
    """Microsoft sends P-Asserted-Identity (and Privacy) toward the SBC (ForwardPai)."""
    forward_call_history: bool = False
    """Microsoft sends History-Info and Referred-By toward the SBC (ForwardCallHistory)."""
    media_bypass: bool = False
    """Media flows between Teams clients and the SBC directly (MediaBypass)."""
    refer_supported: bool = True
    """The SBC lists REFER in Allow, so Microsoft transfers with REFER (Part 5.1)."""
    send_sip_options: bool = True
    """The SBC sends OPTIONS keep-alives (SendSipOptions)."""
    failover_response_codes: tuple[SipFailureCode, ...] = (408, 503, 504)
    """Responses that make Microsoft try the next SBC (FailoverResponseCodes)."""
    failover_time_seconds: int = Field(default=10, ge=1, le=600)
    """Seconds without a final response before Microsoft tries the next SBC (FailoverTimeSeconds)."""
    max_concurrent_sessions: int | None = Field(default=None, ge=1)
    """Call capacity of the trunk; None is unlimited (MaxConcurrentSessions)."""


class TrunkOverrides(_Model):
    """Per-tenant changes to the carrier trunk's settings (unset or null keys are inherited)."""

    enabled: bool | None = None
    forward_pai: bool | None = None
    forward_call_history: bool | None = None
    media_bypass: bool | None = None
    refer_supported: bool | None = None
    send_sip_options: bool | None = None
    failover_response_codes: tuple[SipFailureCode, ...] | None = None
    failover_time_seconds: int | None = Field(default=None, ge=1, le=600)
    max_concurrent_sessions: int | None = Field(default=None, ge=1)

    def apply(self, base: TrunkSettings) -> TrunkSettings:
        """``base`` with every key set here replaced."""
        changes = self.model_dump(exclude_unset=True, exclude_none=True)
        return base.model_copy(update=changes) if changes else base


# ------------------------------------------------------------------------------ parties


class Presence(_Model):
    """A user's presence as Microsoft Graph reports it at the start of a run."""

    availability: Availability = "Available"
    activity: Activity = "Available"


class AnswerBehaviour(_Model):
    """What an endpoint does when a call rings it, and after how long."""

    mode: AnswerMode = "answer"
    """answer (200), decline (603), busy (486), no-answer (rings on) or dnd (does not ring)."""
    delay_seconds: float = Field(default=1.0, ge=0, le=600)
    """Seconds of ringing before answering, declining or rejecting as busy."""


class Forwarding(_Model):
    """Teams call forwarding: "Forward my calls" and "If unanswered"."""

    immediate: CallTarget | None = None
    """Send every call here at once."""
    unanswered: CallTarget | None = None
    """Send a call here when it is not answered in time."""
    unanswered_after_seconds: int = Field(default=20, ge=1, le=600)
    """Seconds of ringing before an unanswered call is forwarded."""


class TeamsUser(_Model):
    """A Teams user with an Enterprise Voice number, presence and a behaviour."""

    upn: Upn
    """User principal name; its domain is one of the tenant's domains."""
    name: str = Field(min_length=1)
    """Display name."""
    number: E164 | None = None
    """The user's phone number (LineURI); inside one of the tenant's number ranges."""
    object_id: uuid.UUID | None = None
    """Entra object id used by the Graph presence API; derived from the UPN when unset."""
    presence: Presence = Presence()
    answer: AnswerBehaviour = AnswerBehaviour()
    forwarding: Forwarding = Forwarding()
    simultaneous_ring: tuple[CallTarget, ...] = ()
    """Also ring these users or numbers ("Also ring")."""
    voicemail: bool = False
    """The user has voicemail, so 'voicemail' is a valid forwarding target."""

    @property
    def graph_id(self) -> str:
        """The user's id in the Graph presence API."""
        return str(self.object_id or uuid.uuid5(_GRAPH_ID_NAMESPACE, self.upn))


class CallGroup(_Model):
    """A Teams call group: calls to its owner also ring the members."""

    id: Identifier
    name: str = Field(min_length=1)
    owner: Upn
    members: Annotated[tuple[Upn, ...], BeforeValidator(_non_empty), _NON_EMPTY]
    ring: RingMode = "simultaneous"
    member_alert_seconds: int = Field(default=20, ge=1, le=600)
    """Seconds each member rings in serial mode."""


class CallQueue(_Model):
    """A Teams call queue behind a resource account; its members are the agents."""

    id: Identifier
    name: str = Field(min_length=1)
    number: E164 | None = None
    """The resource account's number; inside one of the tenant's number ranges."""
    members: Annotated[tuple[Upn, ...], BeforeValidator(_non_empty), _NON_EMPTY]
    ring: RingMode = "simultaneous"
    agent_alert_seconds: int = Field(default=30, ge=1, le=600)
    """Seconds an agent rings before the queue moves on."""
    timeout_seconds: int = Field(default=1200, ge=0, le=2700)
    """Seconds a call may wait in the queue."""
    presence_based_routing: bool = True
    """Skip agents whose presence is not Available."""


class NumberRange(_Model):
    """A contiguous block of E.164 numbers of one length, ``first`` to ``last`` inclusive."""

    first: E164
    last: E164

    def __contains__(self, number: object) -> bool:
        return (
            isinstance(number, str)
            and len(number) == len(self.first)
            and self.first <= number <= self.last
        )

    def overlaps(self, other: NumberRange) -> bool:
        return (
            len(self.first) == len(other.first)
            and self.first <= other.last
            and other.first <= self.last
        )


class Tenant(_Model):
    """A customer tenant served through the carrier's SBC by a derived trunk."""

    id: Identifier
    """Short id used in scenarios and logs (tenant-a)."""
    name: str = Field(min_length=1)
    """Display name of the organization."""
    domains: Annotated[tuple[Fqdn, ...], BeforeValidator(_non_empty), _NON_EMPTY]
    """DNS names registered in the tenant (UPN domains)."""
    trunk_fqdn: Fqdn
    """Derived trunk FQDN: one label in front of the carrier's base domain."""
    number_ranges: tuple[NumberRange, ...] = ()
    """Numbers routed to this tenant."""
    settings: TrunkOverrides = TrunkOverrides()
    """Changes to the carrier trunk's settings for this tenant."""
    users: tuple[TeamsUser, ...] = ()
    call_groups: tuple[CallGroup, ...] = ()
    call_queues: tuple[CallQueue, ...] = ()

    @property
    def registered_names(self) -> tuple[str, ...]:
        """Every DNS name registered in the tenant: its domains and its derived trunk FQDN."""
        return (*self.domains, self.trunk_fqdn)

    def owns_number(self, number: str) -> bool:
        """Whether ``number`` falls in one of the tenant's ranges."""
        return any(number in r for r in self.number_ranges)


class Carrier(_Model):
    """The carrier that hosts the SBC for its customer tenants."""

    name: str = Field(default="Lab carrier", min_length=1)
    base_domain: Fqdn
    """The carrier's base domain (customers.example.com); the SBC certificate is *.base_domain."""
    trunk_fqdn: Fqdn
    """The carrier trunk FQDN: OPTIONS come from it; one label in front of the base domain."""
    settings: TrunkSettings = TrunkSettings()
    """Carrier trunk settings, inherited by every derived trunk."""


class SbcListener(_Model):
    """An address and port the SBC listens on."""

    address: IpAddress
    port: Port
    transport: Literal["udp", "tcp", "tls"] = "tls"


class Sbc(_Model):
    """The Session Border Controller under test (or the built-in reference SBC)."""

    vendor: XMsSbcPart = "sbcsim"
    model: XMsSbcPart = "reference-sbc"
    version: XMsSbcPart = __version__
    microsoft_side: SbcListener = SbcListener(address="127.0.0.2", port=5061, transport="tls")
    """Where the SBC listens for Microsoft's proxies (TLS only, Part 7.2)."""
    pstn_side: SbcListener = SbcListener(address="127.0.0.2", port=5060, transport="udp")
    """Where the SBC listens for the PSTN carrier."""

    @property
    def x_ms_sbc(self) -> str:
        """The X-MS-SBC header value: ``Vendor/Model/Firmware``."""
        return f"{self.vendor}/{self.model}/{self.version}"


class MicrosoftProxy(_Model):
    """One of Microsoft's Direct Routing SIP proxies."""

    fqdn: Fqdn
    address: IpAddress
    port: Port = 5061


def _default_proxies() -> tuple[MicrosoftProxy, ...]:
    return tuple(
        MicrosoftProxy(fqdn=fqdn, address=f"127.0.1.{i}", port=5061)
        for i, fqdn in enumerate(MICROSOFT_PROXY_FQDNS, start=1)
    )


class Microsoft(_Model):
    """The emulated Microsoft side."""

    proxies: tuple[MicrosoftProxy, ...] = Field(
        default_factory=_default_proxies, min_length=1, max_length=3
    )
    """sip, sip2 and sip3.pstnhub.microsoft.com, in the order an SBC tries them."""


class PstnPhone(_Model):
    """A phone on the PSTN side."""

    number: E164
    name: str = ""
    answer: AnswerBehaviour = AnswerBehaviour()


class Pstn(_Model):
    """The PSTN carrier the SBC talks to on its other side."""

    address: IpAddress = "127.0.2.1"
    port: Port = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"
    phones: tuple[PstnPhone, ...] = ()


#: The contact-center application's id when the topology names none (fixed, so tokens and
#: partner set-ups are the same every run).
DEFAULT_CCAAS_APP_ID = uuid.UUID("c0c0c0c0-5b8a-4c53-9a43-0d6f7e2b1a0c")

SmeFallback = Literal["queue", "voicemail"]
"""What an SME escalation does when no SME is free: wait for one, or send the caller to voicemail."""

EscalationMode = Literal["blind", "consult", "conference"]
"""How a call reaches the SME: blind transfer, consult then transfer, or a group call."""


class CcQueue(_Model):
    """A contact-center queue: its calls go to a free agent who has every skill it names."""

    id: Identifier
    name: str = ""
    number: E164 | None = None
    """An IVR entry number routed straight to this queue (a routing rule)."""
    skills: tuple[Identifier, ...] = ()
    """Skills an agent needs to take this queue's calls; none: any agent."""


class CcApp(_Model):
    """The contact-center application, registered (consented) in every customer tenant."""

    client_id: uuid.UUID = DEFAULT_CCAAS_APP_ID
    client_secret: str = Field(default="sbcsim-ccaas-secret", min_length=1)
    name: str = Field(default="sbcsim contact center", min_length=1)


class ContactCenterCustomer(_Model):
    """A customer tenant served by the contact-center platform (Connect model)."""

    tenant: Identifier
    """The tenant whose users are agents and SMEs."""
    ivr_number: E164 | None = None
    """The IVR entry number of this customer: the SBC routes it to the platform; its calls go
    to the first queue."""
    agents: tuple[Upn, ...] = ()
    agent_skills: dict[Upn, tuple[Identifier, ...]] = Field(default_factory=dict)
    """Skills of each agent (an agent not listed has none)."""
    smes: tuple[Upn, ...] = ()
    """Subject-matter experts a call can be escalated to, chosen by presence in this order."""
    queues: tuple[CcQueue, ...] = ()
    """The queues; none: one queue ``general`` that every agent serves."""
    escalation_mode: EscalationMode = "blind"
    """How an SME escalation connects the SME when the agent does not say."""
    sme_fallback: SmeFallback = "queue"
    """No SME free: wait in the SME queue for a presence change, or go to voicemail."""
    sme_wait_seconds: int = Field(default=120, ge=1, le=3600)
    """How long an escalation waits in the SME queue before going to voicemail."""

    def queue_list(self) -> tuple[CcQueue, ...]:
        """The queues, or the implicit ``general`` queue."""
        return self.queues or (CcQueue(id="general", name="General"),)

    def skills_of(self, agent: str) -> tuple[str, ...]:
        """The skills of ``agent`` (a UPN)."""
        return self.agent_skills.get(agent.lower(), ())

    def entry_numbers(self) -> dict[str, CcQueue]:
        """IVR entry number -> the queue its calls go to (the routing rules)."""
        queues = self.queue_list()
        routes = {q.number: q for q in queues if q.number is not None}
        if self.ivr_number is not None:
            routes.setdefault(self.ivr_number, queues[0])
        return routes


class ContactCenter(ContactCenterCustomer):
    """A contact-center platform (Connect model) behind the SBC, and the customers it serves.

    The top-level ``tenant``/``agents``/``smes``/... describe the first customer tenant;
    ``customers`` adds more, each on its own derived trunk of the same SBC.
    """

    address: IpAddress = "127.0.3.1"
    """Where the platform takes SIP from the SBC (over the SBC's PSTN-side transport)."""
    port: Port = 5061
    emulated: bool = True
    """False: the lab runs no contact center of its own; a partner's platform listens at
    ``address``:``port`` and drives the calls (the SBC still routes the entry numbers there)."""
    graph_address: IpAddress = "127.0.1.10"
    """Where ``sbcsim serve`` serves the Graph-shaped presence API and the token endpoint (HTTP)."""
    graph_port: Port = 8080
    app: CcApp = CcApp()
    agent_password: str = Field(default="sbcsim-lab-password", min_length=1)
    """The password of every user account of a customer tenant (agents sign in with it)."""
    customers: tuple[ContactCenterCustomer, ...] = ()
    """Further customer tenants served by the same platform."""

    def customer_list(self) -> tuple[ContactCenterCustomer, ...]:
        """Every customer, the top-level one first."""
        return (self, *self.customers)

    def customer(self, tenant_id: str) -> ContactCenterCustomer | None:
        """The customer whose tenant is ``tenant_id``."""
        return next((c for c in self.customer_list() if c.tenant == tenant_id), None)

    def route(self, number: str) -> tuple[ContactCenterCustomer, CcQueue] | None:
        """The customer and queue an IVR entry number leads to, or None."""
        for customer in self.customer_list():
            queue = customer.entry_numbers().get(number)
            if queue is not None:
                return customer, queue
        return None


# ------------------------------------------------------------------------------ topology


def _looks_like_topology(data: object) -> bool:
    return isinstance(data, dict) and "carrier" in data and "tenants" in data


def _single_label_under(fqdn: str, base: str) -> bool:
    head, dot, tail = fqdn.partition(".")
    return bool(head) and dot == "." and tail == base


class Topology(_Model):
    """The whole lab: carrier, tenants and their users, SBC, Microsoft proxies, PSTN."""

    kind: Literal["topology"] = "topology"
    carrier: Carrier
    tenants: Annotated[tuple[Tenant, ...], BeforeValidator(_non_empty), _NON_EMPTY]
    sbc: Sbc = Sbc()
    microsoft: Microsoft = Microsoft()
    pstn: Pstn = Pstn()
    contact_center: ContactCenter | None = None

    _tenant_by_name: dict[str, Tenant] = PrivateAttr(default_factory=dict)
    _users: dict[str, tuple[Tenant, TeamsUser]] = PrivateAttr(default_factory=dict)
    _user_numbers: dict[str, TeamsUser] = PrivateAttr(default_factory=dict)
    _phones: dict[str, PstnPhone] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        issues = list(_TopologyRules(self).run())
        if issues:
            raise issues_error(issues)
        for tenant in self.tenants:
            for name in tenant.registered_names:
                self._tenant_by_name[name] = tenant
            for user in tenant.users:
                self._users[user.upn] = (tenant, user)
                if user.number:
                    self._user_numbers[user.number] = user
        self._phones.update((phone.number, phone) for phone in self.pstn.phones)
        return self

    # ---------------------------------------------------------------- lookups

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant with this id; KeyError when there is none."""
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise KeyError(tenant_id)

    def tenant_for_fqdn(self, fqdn: str) -> Tenant | None:
        """The tenant Microsoft finds for a Contact FQDN (Part 2.2).

        First the tenant that registered the full FQDN, else the one that registered its parent
        domain (the FQDN without its host label).  None when neither is registered by a customer
        tenant, including the carrier's own names (its tenant has no users).
        """
        name = fqdn.lower().removesuffix(".")
        found = self._tenant_by_name.get(name)
        if found is None:
            _, _, parent = name.partition(".")
            found = self._tenant_by_name.get(parent)
        return found

    def is_carrier_fqdn(self, fqdn: str) -> bool:
        """Whether ``fqdn`` is the carrier trunk FQDN (the one OPTIONS must come from)."""
        return fqdn.lower().removesuffix(".") == self.carrier.trunk_fqdn

    def tenant_for_number(self, number: str) -> Tenant | None:
        """The tenant whose number ranges hold ``number``."""
        for tenant in self.tenants:
            if tenant.owns_number(number):
                return tenant
        return None

    def user_by_number(self, number: str) -> TeamsUser | None:
        """The Teams user with this number."""
        return self._user_numbers.get(number)

    def user_by_upn(self, upn: str) -> TeamsUser | None:
        """The Teams user with this UPN (case-insensitive)."""
        entry = self._users.get(upn.lower())
        return entry[1] if entry else None

    def tenant_of_user(self, upn: str) -> Tenant | None:
        """The tenant a Teams user belongs to."""
        entry = self._users.get(upn.lower())
        return entry[0] if entry else None

    def phone_by_number(self, number: str) -> PstnPhone | None:
        """The PSTN phone with this number."""
        return self._phones.get(number)

    def users(self) -> Iterator[TeamsUser]:
        """Every Teams user of every tenant, in file order."""
        for tenant in self.tenants:
            yield from tenant.users

    def trunk_settings(self, tenant: Tenant | str) -> TrunkSettings:
        """The effective trunk settings of a tenant's derived trunk."""
        found = self.tenant(tenant) if isinstance(tenant, str) else tenant
        return found.settings.apply(self.carrier.settings)

    def sbc_fqdns(self) -> tuple[str, ...]:
        """The SBC's FQDNs: the carrier trunk, then every derived trunk."""
        return (self.carrier.trunk_fqdn, *(t.trunk_fqdn for t in self.tenants))

    def all_fqdns(self) -> tuple[str, ...]:
        """Every host FQDN of the lab: the SBC's, then the Microsoft proxies'."""
        return (*self.sbc_fqdns(), *(p.fqdn for p in self.microsoft.proxies))

    def resolve(self, fqdn: str) -> tuple[str, int] | None:
        """The lab's DNS: the (address, port) a FQDN points at, or None."""
        name = fqdn.lower().removesuffix(".")
        for proxy in self.microsoft.proxies:
            if proxy.fqdn == name:
                return proxy.address, proxy.port
        if name in self.sbc_fqdns():
            return self.sbc.microsoft_side.address, self.sbc.microsoft_side.port
        return None


def _is_set(model: BaseModel, path: tuple[PathItem, ...]) -> bool:
    """Whether every step of ``path`` was given explicitly (not left to its default)."""
    current: object = model
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, tuple):
                return False
            current = current[step]
        elif isinstance(current, BaseModel):
            if step not in current.model_fields_set:
                return False
            current = getattr(current, step)
        else:
            return False
    return True


class _TopologyRules:
    """The cross-field rules of a topology; yields one :class:`Issue` per broken rule."""

    def __init__(self, topology: Topology) -> None:
        self.t = topology
        # value -> path of its first use, per namespace
        self.numbers: dict[str, tuple[PathItem, ...]] = {}
        self.upns: dict[str, tuple[PathItem, ...]] = {}
        self.fqdns: dict[str, tuple[PathItem, ...]] = {}

    def run(self) -> Iterator[Issue]:
        yield from self._carrier()
        yield from self._tenants()
        yield from self._proxies()
        yield from self._pstn()
        yield from self._listeners()
        yield from self._references()
        yield from self._contact_center()

    def _claim(
        self,
        table: dict[str, tuple[PathItem, ...]],
        value: str,
        path: tuple[PathItem, ...],
        what: str,
    ) -> Iterator[Issue]:
        first = table.setdefault(value, path)
        if first != path:
            yield Issue(path, f"{what} {value!r} is already used at {format_path(first)}")

    def _carrier(self) -> Iterator[Issue]:
        carrier = self.t.carrier
        if not _single_label_under(carrier.trunk_fqdn, carrier.base_domain):
            yield Issue(
                ("carrier", "trunk_fqdn"),
                f"carrier trunk FQDN {carrier.trunk_fqdn!r} must be one label in front of the "
                f"base domain {carrier.base_domain!r}",
            )
        yield from self._claim(self.fqdns, carrier.trunk_fqdn, ("carrier", "trunk_fqdn"), "FQDN")

    def _tenants(self) -> Iterator[Issue]:
        base = self.t.carrier.base_domain
        ids: dict[str, tuple[PathItem, ...]] = {}
        names: dict[str, tuple[PathItem, ...]] = {base: ("carrier", "base_domain")}
        ranges: list[tuple[NumberRange, tuple[PathItem, ...]]] = []
        for ti, tenant in enumerate(self.t.tenants):
            at: tuple[PathItem, ...] = ("tenants", ti)
            yield from self._claim(ids, tenant.id, (*at, "id"), "tenant id")
            if not _single_label_under(tenant.trunk_fqdn, base):
                yield Issue(
                    (*at, "trunk_fqdn"),
                    f"derived trunk FQDN {tenant.trunk_fqdn!r} must be one label in front of the "
                    f"carrier base domain {base!r} (the certificate *.{base} covers only that)",
                )
            clash = list(self._claim(self.fqdns, tenant.trunk_fqdn, (*at, "trunk_fqdn"), "FQDN"))
            yield from clash or self._claim(
                names, tenant.trunk_fqdn, (*at, "trunk_fqdn"), "DNS name"
            )
            for di, domain in enumerate(tenant.domains):
                path = (*at, "domains", di)
                if domain == "onmicrosoft.com" or domain.endswith(".onmicrosoft.com"):
                    yield Issue(path, f"domain {domain!r}: *.onmicrosoft.com cannot be used (S4)")
                yield from self._claim(names, domain, path, "DNS name")
            for ri, rng in enumerate(tenant.number_ranges):
                path = (*at, "number_ranges", ri)
                if len(rng.first) != len(rng.last) or rng.first > rng.last:
                    yield Issue(
                        (*path, "last"),
                        f"{rng.last!r} must have as many digits as {rng.first!r} and not be below it",
                    )
                    continue
                for other, other_path in ranges:
                    if rng.overlaps(other):
                        yield Issue(path, f"range overlaps {format_path(other_path)}")
                        break
                ranges.append((rng, path))
            yield from self._tenant_parties(tenant, at)

    def _tenant_parties(self, tenant: Tenant, at: tuple[PathItem, ...]) -> Iterator[Issue]:
        for ui, user in enumerate(tenant.users):
            path = (*at, "users", ui)
            yield from self._claim(self.upns, user.upn, (*path, "upn"), "UPN")
            domain = user.upn.rpartition("@")[2]
            if domain not in tenant.registered_names:
                yield Issue(
                    (*path, "upn"),
                    f"UPN domain {domain!r} is not registered in tenant {tenant.id!r} "
                    f"(its domains: {', '.join(tenant.registered_names)})",
                )
            if user.number is not None:
                yield from self._number(tenant, user.number, (*path, "number"))
        group_ids: dict[str, tuple[PathItem, ...]] = {}
        for qi, queue in enumerate(tenant.call_queues):
            path = (*at, "call_queues", qi)
            yield from self._claim(group_ids, queue.id, (*path, "id"), "group id")
            if queue.number is not None:
                yield from self._number(tenant, queue.number, (*path, "number"))
        for gi, group in enumerate(tenant.call_groups):
            path = (*at, "call_groups", gi)
            yield from self._claim(group_ids, group.id, (*path, "id"), "group id")

    def _number(self, tenant: Tenant, number: str, path: tuple[PathItem, ...]) -> Iterator[Issue]:
        yield from self._claim(self.numbers, number, path, "number")
        if not tenant.owns_number(number):
            yield Issue(
                path, f"number {number!r} is outside the number ranges of tenant {tenant.id!r}"
            )

    def _proxies(self) -> Iterator[Issue]:
        for pi, proxy in enumerate(self.t.microsoft.proxies):
            yield from self._claim(
                self.fqdns, proxy.fqdn, ("microsoft", "proxies", pi, "fqdn"), "FQDN"
            )

    def _pstn(self) -> Iterator[Issue]:
        for pi, phone in enumerate(self.t.pstn.phones):
            path: tuple[PathItem, ...] = ("pstn", "phones", pi, "number")
            yield from self._claim(self.numbers, phone.number, path, "number")
            owner = self.t.tenant_for_number(phone.number)
            if owner is not None:
                yield Issue(
                    path,
                    f"PSTN number {phone.number!r} is inside the number ranges of tenant {owner.id!r}",
                )

    def _listeners(self) -> Iterator[Issue]:
        t = self.t
        listeners: list[tuple[str, int, tuple[PathItem, ...]]] = [
            (p.address, p.port, ("microsoft", "proxies", i, "address"))
            for i, p in enumerate(t.microsoft.proxies)
        ]
        for side in ("microsoft_side", "pstn_side"):
            listener: SbcListener = getattr(t.sbc, side)
            listeners.append((listener.address, listener.port, ("sbc", side, "address")))
        listeners.append((t.pstn.address, t.pstn.port, ("pstn", "address")))
        if t.contact_center is not None:
            cc = t.contact_center
            listeners.append((cc.address, cc.port, ("contact_center", "address")))
            listeners.append((cc.graph_address, cc.graph_port, ("contact_center", "graph_address")))
        # Claim the defaulted listeners first, so a clash is reported at the one the file set.
        listeners.sort(key=lambda entry: _is_set(t, entry[2][:-1]))
        seen: dict[str, tuple[PathItem, ...]] = {}
        for address, port, path in listeners:
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            yield from self._claim(seen, shown, path, "address")

    def _references(self) -> Iterator[Issue]:
        known_numbers = set(self.numbers)
        for ti, tenant in enumerate(self.t.tenants):
            members = {u.upn for u in tenant.users}
            at: tuple[PathItem, ...] = ("tenants", ti)
            for ui, user in enumerate(tenant.users):
                path = (*at, "users", ui)
                for key in ("immediate", "unanswered"):
                    target = getattr(user.forwarding, key)
                    if target is not None:
                        yield from self._target(
                            tenant, user, target, members, known_numbers, (*path, "forwarding", key)
                        )
                for si, target in enumerate(user.simultaneous_ring):
                    if target == "voicemail":
                        yield Issue(
                            (*path, "simultaneous_ring", si), "voicemail cannot ring simultaneously"
                        )
                        continue
                    yield from self._target(
                        tenant,
                        user,
                        target,
                        members,
                        known_numbers,
                        (*path, "simultaneous_ring", si),
                    )
            for gi, group in enumerate(tenant.call_groups):
                path = (*at, "call_groups", gi)
                if group.owner not in members:
                    yield Issue((*path, "owner"), self._no_user(group.owner, tenant))
                yield from self._members(group.members, members, tenant, (*path, "members"))
            for qi, queue in enumerate(tenant.call_queues):
                yield from self._members(
                    queue.members, members, tenant, (*at, "call_queues", qi, "members")
                )

    def _members(
        self,
        upns: tuple[str, ...],
        members: set[str],
        tenant: Tenant,
        path: tuple[PathItem, ...],
    ) -> Iterator[Issue]:
        seen: set[str] = set()
        for mi, upn in enumerate(upns):
            if upn not in members:
                yield Issue((*path, mi), self._no_user(upn, tenant))
            elif upn in seen:
                yield Issue((*path, mi), f"{upn!r} is listed twice")
            seen.add(upn)

    @staticmethod
    def _no_user(upn: str, tenant: Tenant) -> str:
        return f"no user {upn!r} in tenant {tenant.id!r}"

    def _target(
        self,
        tenant: Tenant,
        user: TeamsUser,
        target: str,
        members: set[str],
        known_numbers: set[str],
        path: tuple[PathItem, ...],
    ) -> Iterator[Issue]:
        if target == "voicemail":
            if not user.voicemail:
                yield Issue(path, "target 'voicemail' needs 'voicemail: true' on this user")
        elif target.startswith("+"):
            if target == user.number:
                yield Issue(path, "a user cannot forward to their own number")
            elif target not in known_numbers:
                yield Issue(path, f"no user, call queue or PSTN phone has the number {target!r}")
        elif target == user.upn:
            yield Issue(path, "a user cannot forward to themselves")
        elif target not in members:
            yield Issue(path, self._no_user(target, tenant))

    def _contact_center(self) -> Iterator[Issue]:
        cc = self.t.contact_center
        if cc is None:
            return
        tenant = next((t for t in self.t.tenants if t.id == cc.tenant), None)
        if tenant is None:
            ids = ", ".join(t.id for t in self.t.tenants)
            yield Issue(("contact_center", "tenant"), f"no tenant {cc.tenant!r} (tenants: {ids})")
            return
        members = {u.upn for u in tenant.users}
        yield from self._members(cc.agents, members, tenant, ("contact_center", "agents"))
        yield from self._members(cc.smes, members, tenant, ("contact_center", "smes"))
        yield from self._cc_customer(cc, tenant, ("contact_center",))
        served: dict[str, tuple[PathItem, ...]] = {cc.tenant: ("contact_center", "tenant")}
        for ci, customer in enumerate(cc.customers):
            at: tuple[PathItem, ...] = ("contact_center", "customers", ci)
            yield from self._claim(served, customer.tenant, (*at, "tenant"), "customer tenant")
            other = next((t for t in self.t.tenants if t.id == customer.tenant), None)
            if other is None:
                ids = ", ".join(t.id for t in self.t.tenants)
                yield Issue((*at, "tenant"), f"no tenant {customer.tenant!r} (tenants: {ids})")
                continue
            names = {u.upn for u in other.users}
            yield from self._members(customer.agents, names, other, (*at, "agents"))
            yield from self._members(customer.smes, names, other, (*at, "smes"))
            yield from self._cc_customer(customer, other, at)

    def _cc_customer(
        self, customer: ContactCenterCustomer, tenant: Tenant, at: tuple[PathItem, ...]
    ) -> Iterator[Issue]:
        """Entry numbers, queues and skills of one contact-center customer."""
        entries: list[tuple[str, tuple[PathItem, ...]]] = []
        if customer.ivr_number is not None:
            entries.append((customer.ivr_number, (*at, "ivr_number")))
        queue_ids: dict[str, tuple[PathItem, ...]] = {}
        for qi, queue in enumerate(customer.queues):
            path: tuple[PathItem, ...] = (*at, "queues", qi)
            yield from self._claim(queue_ids, queue.id, (*path, "id"), "queue id")
            if queue.number is not None:
                entries.append((queue.number, (*path, "number")))
        for number, path in entries:
            yield from self._claim(self.numbers, number, path, "number")
            owner = self.t.tenant_for_number(number)
            if owner is not None:
                yield Issue(
                    path,
                    f"IVR entry number {number!r} is inside the number ranges of tenant "
                    f"{owner.id!r}: the SBC would send it to Microsoft, not to the contact center",
                )
        for upn in customer.agent_skills:
            if upn not in customer.agents:
                yield Issue(
                    (*at, "agent_skills", upn),
                    f"{upn!r} has skills but is not an agent of tenant {tenant.id!r}",
                )


register_kind("topology", Topology, _looks_like_topology)


def default_topology_text() -> str:
    """The YAML text of the shipped default topology."""
    return resources.files("sbcsim").joinpath(DEFAULT_TOPOLOGY_RESOURCE).read_text("utf-8")


def load_topology(path: str | Path | None = None) -> Topology:
    """Load a topology file, or the shipped default when ``path`` is None.

    Raises :class:`~sbcsim.errors.ConfigError` with ``file:line:col`` for every problem.
    """
    if path is None:
        return load_model_text(
            default_topology_text(), Topology, f"sbcsim/{DEFAULT_TOPOLOGY_RESOURCE}"
        )
    return load_model(path, Topology)
