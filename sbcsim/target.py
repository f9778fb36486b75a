"""A live target (``sbcsim run --target TARGET.yaml``): an external SBC, and how to reach it.

Embedded runs put the reference SBC inside the simulation.  A target file instead describes an
SBC that runs on its own — a vendor box on a lab network, Kamailio, or ``sbcsim sbc`` on
loopback — and what sbcsim needs to play every party around it on real sockets:

* ``sbc``: where the SBC listens toward Microsoft (TLS only, Part 7.2) and toward the carrier
  (UDP or TCP), and the FQDNs it uses toward Microsoft: the carrier trunk it sends OPTIONS from
  (Part 1.3) and the derived trunk of each tenant it puts in Contact (Part 4.3);
* ``bind``: the addresses sbcsim listens on as ``sip``/``sip2``/``sip3.pstnhub.microsoft.com``
  and as the PSTN carrier (default: the topology's, loopback in the shipped one);
* ``certificates``: the certificate and key each proxy presents, the lab CA that signed them
  (the SBC must trust it), and the CA the SBC's own certificate chains to (the proxies trust it:
  Part 7.3, mutual TLS).  ``directory`` stands for the files ``sbcsim certs --out DIR`` writes;
* ``topology`` (tenants, users, numbers; default the shipped one) and ``tenants``: changes to a
  tenant's number ranges and users' numbers, so the lab matches the numbers the SBC routes;
* ``warmup``: how many seconds a scenario waits for the SBC's first OPTIONS before its first
  step.  There is no time scale: scenarios that need the virtual clock are tagged ``sim-only``
  and skipped against a live SBC, as are those whose waits could add up to more than
  ``max_scenario_seconds`` (10 minutes by default).

Relative paths are relative to the target file.  :func:`load_target` checks what the model alone
cannot (names that must exist in the topology, files that must exist) and reports each problem
at its line in the target file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sbcsim.config.kinds import register_kind
from sbcsim.config.yamlload import (
    ISSUES_ERROR_TYPE,
    ConfigValidationError,
    Document,
    Issue,
    LocatedError,
    PathItem,
    format_path,
    load_document,
    validate_document,
)
from sbcsim.topology import (
    E164,
    Fqdn,
    Identifier,
    IpAddress,
    NumberRange,
    Port,
    Topology,
    Upn,
    load_topology,
)

__all__ = [
    "Bind",
    "ListenAddress",
    "LiveTarget",
    "ProxyCertificate",
    "SbcMicrosoftSide",
    "SbcPstnSide",
    "Target",
    "TargetCertificates",
    "TargetSbc",
    "TenantNumbers",
    "is_target_path",
    "load_target",
]

#: The SBC's first OPTIONS is awaited this long (seconds) when the file does not say.
DEFAULT_WARMUP = 5.0
#: A scenario that could take longer than this (seconds of real time) is skipped by default.
DEFAULT_MAX_SCENARIO_SECONDS = 600.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SbcMicrosoftSide(_Model):
    """Where the SBC listens for Microsoft's proxies: TLS only (Part 7.2)."""

    address: IpAddress
    port: Port = 5061
    transport: Literal["tls"] = "tls"


class SbcPstnSide(_Model):
    """Where the SBC listens for the PSTN carrier."""

    address: IpAddress
    port: Port = 5060
    transport: Literal["udp", "tcp"] = "udp"


class TargetSbc(_Model):
    """The SBC under test."""

    microsoft_side: SbcMicrosoftSide
    pstn_side: SbcPstnSide
    carrier_trunk_fqdn: Fqdn | None = None
    """The FQDN the SBC sends OPTIONS from (Part 1.3); default: the topology's carrier trunk.
    The carrier's base domain is this name without its first label."""
    tenant_trunk_fqdns: dict[Identifier, Fqdn] = Field(default_factory=dict)
    """Tenant id -> the derived trunk FQDN the SBC puts in Contact for that tenant (Part 4.3);
    default: the topology's."""


class ListenAddress(_Model):
    """An address and port sbcsim listens on."""

    address: IpAddress
    port: Port


class Bind(_Model):
    """Where sbcsim's own endpoints listen; unset ones keep the topology's addresses."""

    proxies: dict[Fqdn, ListenAddress] = Field(default_factory=dict)
    """Proxy FQDN -> its TLS listener (sip/sip2/sip3.pstnhub.microsoft.com)."""
    pstn: ListenAddress | None = None
    """The PSTN carrier's listener; its transport is the SBC's PSTN-side transport."""


class ProxyCertificate(_Model):
    """The certificate (PEM, with any intermediates) and key one proxy presents."""

    cert: str = Field(min_length=1)
    key: str = Field(min_length=1)


class TargetCertificates(_Model):
    """The TLS material of the proxies (Part 7.3 [DOC]: mutual TLS)."""

    directory: str | None = None
    """A directory written by ``sbcsim certs --out DIR``: ``ca.pem`` and ``<fqdn>.pem/.key``;
    the defaults of the keys below."""
    lab_ca: str | None = None
    """The CA that signed the proxies' certificates: the SBC must trust it (default DIR/ca.pem)."""
    proxies: dict[Fqdn, ProxyCertificate] = Field(default_factory=dict)
    """Proxy FQDN -> its certificate and key (default DIR/<fqdn>.pem and .key)."""
    sbc_ca: str | None = None
    """The CA the SBC's certificate chains to: the proxies trust it (default: lab_ca)."""
    client_certificates: Literal["required", "optional"] = "required"
    """Require the SBC's client certificate on connections it opens (Direct Routing does)."""


class TenantNumbers(_Model):
    """Numbers of one tenant, replacing the topology's."""

    number_ranges: tuple[NumberRange, ...] | None = None
    """The tenant's number ranges (the numbers the SBC routes to Microsoft for it)."""
    users: dict[Upn, E164] = Field(default_factory=dict)
    """User UPN -> that user's number."""


class Target(_Model):
    """A live SBC under test and the lab around it (see the module docstring)."""

    kind: Literal["target"] = "target"
    name: str | None = None
    """A label for reports."""
    description: str | None = None
    sbc: TargetSbc
    topology: str | None = None
    """Topology file (tenants, users, numbers), relative to this file; default: the shipped one."""
    tenants: dict[Identifier, TenantNumbers] = Field(default_factory=dict)
    """Tenant id -> its numbers, replacing the topology's."""
    bind: Bind = Bind()
    certificates: TargetCertificates = TargetCertificates(directory="certs")
    warmup: float = Field(DEFAULT_WARMUP, ge=0, le=600)
    """Seconds a scenario waits for the SBC's first OPTIONS before its first step."""
    max_scenario_seconds: float = Field(DEFAULT_MAX_SCENARIO_SECONDS, gt=0)
    """Scenarios whose waits could add up to more real seconds are skipped (long timers belong
    to the virtual clock)."""


def _looks_like_target(data: object) -> bool:
    # a topology also has an ``sbc`` section, but always a ``carrier``
    return isinstance(data, dict) and "sbc" in data and "carrier" not in data


register_kind("target", Target, _looks_like_target)


def is_target_path(target: str) -> bool:
    """Whether a ``--target`` value names a target file (rather than embedded or mutant:NAME)."""
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


# ------------------------------------------------------------------------------ the loaded target


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """A target file with every name checked and every path resolved.

    ``topology`` is the effective one: the topology file with the target's SBC addresses and
    FQDNs, bind addresses and numbers.  ``proxy_files`` maps each proxy FQDN to its
    (certificate, key); ``trust_ca`` is the CA the proxies check the SBC's certificate against.
    """

    path: Path
    spec: Target
    topology: Topology
    lab_ca: Path
    trust_ca: Path
    proxy_files: Mapping[str, tuple[Path, Path]]
    document: Document

    @property
    def warmup(self) -> float:
        return self.spec.warmup

    @property
    def client_certificates(self) -> str:
        return self.spec.certificates.client_certificates

    @property
    def label(self) -> str:
        return self.spec.name or str(self.path)

    def listeners(self) -> list[tuple[str, str, int, str, tuple[PathItem, ...]]]:
        """(who, address, port, transport, key in the file) of everything sbcsim listens on."""
        out: list[tuple[str, str, int, str, tuple[PathItem, ...]]] = []
        for proxy in self.topology.microsoft.proxies:
            where: tuple[PathItem, ...] = (
                ("bind", "proxies", proxy.fqdn) if proxy.fqdn in self.spec.bind.proxies else ()
            )
            out.append((proxy.fqdn, proxy.address, proxy.port, "tls", where))
        pstn = self.topology.pstn
        where = ("bind", "pstn") if self.spec.bind.pstn is not None else ()
        out.append(("the PSTN carrier", pstn.address, pstn.port, pstn.transport, where))
        return out

    def locate(self, path: tuple[PathItem, ...]) -> str:
        """``file:line:col`` of a key of the target file (the file itself when not found)."""
        if not path:
            return str(self.path)
        return self.document.error_at(path, "").location


class _Problems:
    """Collects located errors of the target file."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.errors: list[LocatedError] = []

    def add(self, path: tuple[PathItem, ...], message: str, *, at_key: bool = False) -> None:
        self.errors.append(self.document.error_at(path, message, at_key=at_key, full_path=True))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigValidationError(self.errors)


def load_target(path: str | Path, default_topology: str | Path | None = None) -> LiveTarget:
    """Read a target file, check it against its topology and the files it names.

    The topology is the target's ``topology``, else ``default_topology`` (a plan's), else the
    shipped one.

    Raises :class:`~sbcsim.errors.ConfigError` with ``file:line:col`` for every problem: a
    field of the wrong shape, a tenant, user or proxy the topology does not have, overrides that
    make the topology invalid, or a certificate file that does not exist.
    """
    target_path = Path(path)
    document = load_document(target_path)
    spec = validate_document(document, Target)
    base = target_path.parent
    problems = _Problems(document)
    if spec.topology is not None:
        topology_path = base / spec.topology
        if not topology_path.is_file():
            problems.add(("topology",), f"topology file {topology_path} does not exist")
            problems.raise_if_any()
        original = load_topology(topology_path)
    else:
        original = load_topology(default_topology)
    _check_names(spec, original, problems)
    problems.raise_if_any()
    topology = _effective_topology(spec, original, problems)
    problems.raise_if_any()
    assert topology is not None
    lab_ca, trust_ca, files = _certificates(spec, topology, base, problems)
    problems.raise_if_any()
    return LiveTarget(target_path, spec, topology, lab_ca, trust_ca, files, document)


def _check_names(spec: Target, topology: Topology, problems: _Problems) -> None:
    tenant_ids = [t.id for t in topology.tenants]
    proxies = [p.fqdn for p in topology.microsoft.proxies]
    for tenant_id in spec.sbc.tenant_trunk_fqdns:
        if tenant_id not in tenant_ids:
            problems.add(
                ("sbc", "tenant_trunk_fqdns", tenant_id),
                f"no tenant {tenant_id!r} in the topology (tenants: {', '.join(tenant_ids)})",
                at_key=True,
            )
    for tenant_id, numbers in spec.tenants.items():
        if tenant_id not in tenant_ids:
            problems.add(
                ("tenants", tenant_id),
                f"no tenant {tenant_id!r} in the topology (tenants: {', '.join(tenant_ids)})",
                at_key=True,
            )
            continue
        members = {u.upn for u in topology.tenant(tenant_id).users}
        for upn in numbers.users:
            if upn not in members:
                problems.add(
                    ("tenants", tenant_id, "users", upn),
                    f"no user {upn!r} in tenant {tenant_id!r}",
                    at_key=True,
                )
    for where, names in (
        (("bind", "proxies"), spec.bind.proxies),
        (("certificates", "proxies"), spec.certificates.proxies),
    ):
        for fqdn in names:
            if fqdn not in proxies:
                problems.add(
                    (*where, fqdn),
                    f"no proxy {fqdn!r} in the topology (proxies: {', '.join(proxies)})",
                    at_key=True,
                )


def _effective_topology(spec: Target, original: Topology, problems: _Problems) -> Topology | None:
    """The topology with the target's overrides, validated again (its cross-field rules)."""
    data: dict[str, Any] = original.model_dump(mode="json")
    # where each overridden topology path came from in the target file
    origin: dict[tuple[PathItem, ...], tuple[PathItem, ...]] = {}
    sbc = spec.sbc
    data["sbc"]["microsoft_side"] = sbc.microsoft_side.model_dump(mode="json")
    data["sbc"]["pstn_side"] = sbc.pstn_side.model_dump(mode="json")
    origin[("sbc", "microsoft_side")] = ("sbc", "microsoft_side")
    origin[("sbc", "pstn_side")] = ("sbc", "pstn_side")
    if sbc.carrier_trunk_fqdn is not None and sbc.carrier_trunk_fqdn != original.carrier.trunk_fqdn:
        data["carrier"]["trunk_fqdn"] = sbc.carrier_trunk_fqdn
        data["carrier"]["base_domain"] = sbc.carrier_trunk_fqdn.partition(".")[2]
        origin[("carrier",)] = ("sbc", "carrier_trunk_fqdn")
    for ti, tenant in enumerate(original.tenants):
        at: tuple[PathItem, ...] = ("tenants", ti)
        trunk = sbc.tenant_trunk_fqdns.get(tenant.id)
        if trunk is not None:
            data["tenants"][ti]["trunk_fqdn"] = trunk
            origin[(*at, "trunk_fqdn")] = ("sbc", "tenant_trunk_fqdns", tenant.id)
        elif ("carrier",) in origin:
            # a derived trunk must sit under the (new) base domain
            origin[(*at, "trunk_fqdn")] = ("sbc", "carrier_trunk_fqdn")
        numbers = spec.tenants.get(tenant.id)
        if numbers is None:
            continue
        if numbers.number_ranges is not None:
            data["tenants"][ti]["number_ranges"] = [
                r.model_dump(mode="json") for r in numbers.number_ranges
            ]
            # numbers elsewhere in the tenant may now fall outside its ranges
            origin[(*at,)] = ("tenants", tenant.id, "number_ranges")
        for ui, user in enumerate(tenant.users):
            if user.upn in numbers.users:
                data["tenants"][ti]["users"][ui]["number"] = numbers.users[user.upn]
                origin[(*at, "users", ui)] = ("tenants", tenant.id, "users", user.upn)
    for pi, proxy in enumerate(original.microsoft.proxies):
        bound = spec.bind.proxies.get(proxy.fqdn)
        if bound is not None:
            data["microsoft"]["proxies"][pi].update(bound.model_dump(mode="json"))
            origin[("microsoft", "proxies", pi)] = ("bind", "proxies", proxy.fqdn)
    if spec.bind.pstn is not None:
        data["pstn"].update(spec.bind.pstn.model_dump(mode="json"))
        origin[("pstn",)] = ("bind", "pstn")
    data["pstn"]["transport"] = sbc.pstn_side.transport
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        for loc, message in _errors_of(exc):
            problems.add(
                _origin_of(loc, message, origin),
                f"with the target's changes the topology is invalid: {format_path(loc)}: {message}",
            )
        return None


def _errors_of(exc: ValidationError) -> Iterator[tuple[tuple[PathItem, ...], str]]:
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        issues = (err.get("ctx") or {}).get("issues")
        if err["type"] == ISSUES_ERROR_TYPE and isinstance(issues, tuple):
            for issue in issues:
                if isinstance(issue, Issue):
                    yield (*loc, *issue.path), issue.message
            continue
        yield loc, str(err["msg"]).removeprefix("Value error, ")


def _origin_of(
    loc: tuple[PathItem, ...],
    message: str,
    origin: Mapping[tuple[PathItem, ...], tuple[PathItem, ...]],
) -> tuple[PathItem, ...]:
    """The target key that caused a problem at ``loc`` of the topology: the override of the
    longest prefix of ``loc``, else one the message names (a clash with an overridden value),
    else of a tenant the problem lies in, else the file's top."""
    for n in range(len(loc), 0, -1):
        found = origin.get(loc[:n])
        if found is not None:
            return found
    for prefix, found in sorted(origin.items(), key=lambda item: -len(item[0])):
        if len(prefix) > 1 and format_path(prefix) in message:
            return found
    for prefix, found in origin.items():
        if prefix[:2] == loc[:2] and prefix[:1] == ("tenants",):
            return found[:2]
    return ()


def _certificates(
    spec: Target, topology: Topology, base: Path, problems: _Problems
) -> tuple[Path, Path, dict[str, tuple[Path, Path]]]:
    certs = spec.certificates
    directory = base / certs.directory if certs.directory is not None else None
    hint = f" (create it with `sbcsim certs --out {directory}`)" if directory else ""
    directory_missing = directory is not None and not directory.is_dir()
    if directory_missing:
        problems.add(
            ("certificates", "directory"), f"certificate directory {directory} does not exist{hint}"
        )

    def file(value: str | None, default: str, where: tuple[PathItem, ...]) -> Path:
        if value is not None:
            path = base / value
        elif directory is not None:
            path = directory / default
            if directory_missing:
                return path
            where = ("certificates", "directory")
        else:
            problems.add(
                ("certificates",),
                f"{format_path(where)}: no file given, and no certificates.directory",
                at_key=True,
            )
            return Path(default)
        if not path.is_file():
            problems.add(where, f"certificate file {path} does not exist{hint}")
        return path

    lab_ca = file(certs.lab_ca, "ca.pem", ("certificates", "lab_ca"))
    trust_ca = file(certs.sbc_ca, "ca.pem", ("certificates", "sbc_ca")) if certs.sbc_ca else lab_ca
    files: dict[str, tuple[Path, Path]] = {}
    for proxy in topology.microsoft.proxies:
        given = certs.proxies.get(proxy.fqdn)
        where: tuple[PathItem, ...] = ("certificates", "proxies", proxy.fqdn)
        files[proxy.fqdn] = (
            file(given.cert if given else None, f"{proxy.fqdn}.pem", (*where, "cert")),
            file(given.key if given else None, f"{proxy.fqdn}.key", (*where, "key")),
        )
    return lab_ca, trust_ca, files
