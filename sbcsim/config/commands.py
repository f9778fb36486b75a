"""``sbcsim certs`` and ``sbcsim validate``: the commands that work on configuration files.

Both print through the rich Console the root command keeps in ``ctx.obj`` (tests inject one),
and both exit 2 for bad input, as the command-line contract in PRODUCT.md requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sbcsim.certs import LabCA
from sbcsim.config.kinds import load_any
from sbcsim.errors import ConfigError
from sbcsim.topology import Topology, load_topology

__all__ = ["CertPlanEntry", "cert_plan", "certs", "validate"]

EXIT_OK = 0
EXIT_USAGE = 2

CA_STEM = "ca"


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


@dataclass(frozen=True, slots=True)
class CertPlanEntry:
    """One certificate ``sbcsim certs`` issues: file stem, names, and who presents it."""

    stem: str
    names: tuple[str, ...]
    used_by: str


def cert_plan(topology: Topology) -> list[CertPlanEntry]:
    """Every certificate of the lab, in the order they are written.

    The SBC gets the carrier-hosting wildcard ``*.<base domain>`` (Part 4.1), and, for SBCs
    configured per name, one certificate per trunk FQDN.  The proxies get one each plus the
    ``*.<their domain>`` wildcard.  Wildcard files are named ``wildcard.<domain>``.
    """
    base = topology.carrier.base_domain
    plan = [CertPlanEntry(f"wildcard.{base}", (f"*.{base}",), "SBC (carrier hosting, all tenants)")]
    plan.append(
        CertPlanEntry(
            topology.carrier.trunk_fqdn, (topology.carrier.trunk_fqdn,), "SBC carrier trunk"
        )
    )
    plan.extend(
        CertPlanEntry(t.trunk_fqdn, (t.trunk_fqdn,), f"SBC derived trunk of {t.id}")
        for t in topology.tenants
    )
    proxy_domains: list[str] = []
    for proxy in topology.microsoft.proxies:
        plan.append(CertPlanEntry(proxy.fqdn, (proxy.fqdn,), "Microsoft SIP proxy"))
        domain = proxy.fqdn.partition(".")[2]
        if domain.count(".") >= 1 and domain not in proxy_domains:
            proxy_domains.append(domain)
    plan.extend(
        CertPlanEntry(f"wildcard.{d}", (f"*.{d}",), "Microsoft SIP proxies (wildcard)")
        for d in proxy_domains
    )
    return plan


@click.command("certs")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the PEM files (created if needed).",
)
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Topology YAML (default: the shipped topology).",
)
@click.pass_context
def certs(ctx: click.Context, out: Path, topology_file: Path | None) -> None:
    """Write a lab CA and certificates for every FQDN in the topology.

    An existing ca.pem/ca.key pair in DIR is kept, so peers that already trust it keep working.
    Exit 2 when the topology is invalid or DIR cannot be written.
    """
    console = _console(ctx)
    try:
        topology = load_topology(topology_file)
    except ConfigError as exc:
        console.print(f"sbcsim certs: invalid topology:\n{exc}", markup=False)
        ctx.exit(EXIT_USAGE)
    ca_cert, ca_key = out / f"{CA_STEM}.pem", out / f"{CA_STEM}.key"
    table = Table(title=f"Certificates in {out}")
    table.add_column("certificate")
    table.add_column("key")
    table.add_column("names")
    table.add_column("used by")
    try:
        if ca_cert.is_file() and ca_key.is_file():
            ca = LabCA.load(ca_cert, ca_key)
            table.add_row(ca_cert.name, ca_key.name, "-", "lab CA (kept)")
        else:
            ca = LabCA.create()
            files = ca.write(out, CA_STEM)
            table.add_row(files.cert_file.name, files.key_file.name, "-", "lab CA (trust this)")
        for entry in cert_plan(topology):
            files = ca.issue(entry.names).write(out, entry.stem)
            table.add_row(
                files.cert_file.name, files.key_file.name, ", ".join(entry.names), entry.used_by
            )
    except OSError as exc:
        where = exc.filename or out
        console.print(
            f"sbcsim certs: cannot write to {out}: {exc.strerror or exc} ({where})", markup=False
        )
        ctx.exit(EXIT_USAGE)
    except ConfigError as exc:
        console.print(f"sbcsim certs: {exc}", markup=False)
        ctx.exit(EXIT_USAGE)
    console.print(table)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check topology, scenario, plan and target YAML files.

    Prints "FILE: ok (KIND)" for a valid file, else every error as FILE:LINE:COL.
    Exit 0 when every file is valid, 2 otherwise.
    """
    console = _console(ctx)
    failed = False
    for path in files:
        try:
            kind, _ = load_any(path)
        except ConfigError as exc:
            failed = True
            console.print(str(exc), markup=False, highlight=False)
            continue
        console.print(f"{path}: ok ({kind.name})", markup=False, highlight=False)
    ctx.exit(EXIT_USAGE if failed else EXIT_OK)
