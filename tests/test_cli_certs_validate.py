"""``sbcsim certs`` and ``sbcsim validate`` through click's CliRunner, with an injected Console."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from rich.console import Console

from sbcsim.config.commands import cert_plan, certs, validate
from sbcsim.config.kinds import registered_kinds as _registered_kinds
from sbcsim.topology import default_topology_text, load_topology

KINDS = ", ".join(k.name for k in _registered_kinds())


@click.group()
def cli() -> None:
    """A stand-in root group, as ``sbcsim.cli.main`` registers the commands."""


cli.add_command(certs)
cli.add_command(validate)

DEFAULT_FILES = [
    "ca.key",
    "ca.pem",
    "sbc.customers.example.com.key",
    "sbc.customers.example.com.pem",
    "sip.pstnhub.microsoft.com.key",
    "sip.pstnhub.microsoft.com.pem",
    "sip2.pstnhub.microsoft.com.key",
    "sip2.pstnhub.microsoft.com.pem",
    "sip3.pstnhub.microsoft.com.key",
    "sip3.pstnhub.microsoft.com.pem",
    "tenant-a.customers.example.com.key",
    "tenant-a.customers.example.com.pem",
    "tenant-b.customers.example.com.key",
    "tenant-b.customers.example.com.pem",
    "wildcard.customers.example.com.key",
    "wildcard.customers.example.com.pem",
    "wildcard.pstnhub.microsoft.com.key",
    "wildcard.pstnhub.microsoft.com.pem",
]


def _run(args: list[str]) -> tuple[Result, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False, soft_wrap=True, color_system=None)
    result = CliRunner().invoke(cli, args, obj=console)
    return result, out.getvalue()


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def _verifies(ca: x509.Certificate, leaf: x509.Certificate, name: str) -> bool:
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(name))
    try:
        verifier.verify(leaf, [])
    except VerificationError:
        return False
    return True


# ---------------------------------------------------------------------- certs


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, str]:
    out = tmp_path_factory.mktemp("certs") / "lab"
    result, text = _run(["certs", "--out", str(out)])
    return out, result, text


def test_certs_writes_every_file(cert_dir: tuple[Path, Result, str]) -> None:
    out, result, text = cert_dir
    assert result.exit_code == 0, text
    assert sorted(p.name for p in out.iterdir()) == DEFAULT_FILES
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600
    assert f"Certificates in {out}" in text
    for line in (
        "ca.pem",
        "wildcard.customers.example.com.pem",
        "*.customers.example.com",
        "SBC (carrier hosting, all tenants)",
        "SBC derived trunk of tenant-b",
        "Microsoft SIP proxies (wildcard)",
    ):
        assert line in text


def test_certs_names_and_chain(cert_dir: tuple[Path, Result, str]) -> None:
    out, _, _ = cert_dir
    ca = _load(out / "ca.pem")
    expected = {
        "wildcard.customers.example.com": ["*.customers.example.com"],
        "sbc.customers.example.com": ["sbc.customers.example.com"],
        "tenant-a.customers.example.com": ["tenant-a.customers.example.com"],
        "tenant-b.customers.example.com": ["tenant-b.customers.example.com"],
        "sip.pstnhub.microsoft.com": ["sip.pstnhub.microsoft.com"],
        "sip2.pstnhub.microsoft.com": ["sip2.pstnhub.microsoft.com"],
        "sip3.pstnhub.microsoft.com": ["sip3.pstnhub.microsoft.com"],
        "wildcard.pstnhub.microsoft.com": ["*.pstnhub.microsoft.com"],
    }
    for stem, names in expected.items():
        leaf = _load(out / f"{stem}.pem")
        assert _dns_names(leaf) == names, stem
        leaf.verify_directly_issued_by(ca)
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_wildcards_cover_one_label(cert_dir: tuple[Path, Result, str]) -> None:
    out, _, _ = cert_dir
    ca = _load(out / "ca.pem")
    sbc = _load(out / "wildcard.customers.example.com.pem")
    for name in (
        "sbc.customers.example.com",
        "tenant-a.customers.example.com",
        "tenant-b.customers.example.com",
    ):
        assert _verifies(ca, sbc, name)
    assert not _verifies(ca, sbc, "customers.example.com")
    assert not _verifies(ca, sbc, "x.tenant-a.customers.example.com")
    proxies = _load(out / "wildcard.pstnhub.microsoft.com.pem")
    assert _verifies(ca, proxies, "sip2.pstnhub.microsoft.com")
    trunk = _load(out / "tenant-a.customers.example.com.pem")
    assert _verifies(ca, trunk, "tenant-a.customers.example.com")
    assert not _verifies(ca, trunk, "tenant-b.customers.example.com")


def test_certs_keeps_an_existing_ca(tmp_path: Path) -> None:
    result, _ = _run(["certs", "--out", str(tmp_path)])
    assert result.exit_code == 0
    first_ca = (tmp_path / "ca.pem").read_bytes()
    first_leaf = (tmp_path / "sip.pstnhub.microsoft.com.pem").read_bytes()
    result, text = _run(["certs", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert "lab CA (kept)" in text
    assert (tmp_path / "ca.pem").read_bytes() == first_ca
    assert (tmp_path / "sip.pstnhub.microsoft.com.pem").read_bytes() != first_leaf
    _load(tmp_path / "sip.pstnhub.microsoft.com.pem").verify_directly_issued_by(
        _load(tmp_path / "ca.pem")
    )


def test_certs_for_a_topology_file(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(
        default_topology_text()
        .replace("customers.example.com", "hosted.example.net")
        .replace("tenant-b.", "fabrikam."),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result, text = _run(["certs", "--out", str(out), "--topology", str(topo)])
    assert result.exit_code == 0, text
    assert _dns_names(_load(out / "wildcard.hosted.example.net.pem")) == ["*.hosted.example.net"]
    assert _dns_names(_load(out / "fabrikam.hosted.example.net.pem")) == [
        "fabrikam.hosted.example.net"
    ]


def test_cert_plan_order() -> None:
    plan = cert_plan(load_topology())
    assert [(e.stem, e.names) for e in plan] == [
        ("wildcard.customers.example.com", ("*.customers.example.com",)),
        ("sbc.customers.example.com", ("sbc.customers.example.com",)),
        ("tenant-a.customers.example.com", ("tenant-a.customers.example.com",)),
        ("tenant-b.customers.example.com", ("tenant-b.customers.example.com",)),
        ("sip.pstnhub.microsoft.com", ("sip.pstnhub.microsoft.com",)),
        ("sip2.pstnhub.microsoft.com", ("sip2.pstnhub.microsoft.com",)),
        ("sip3.pstnhub.microsoft.com", ("sip3.pstnhub.microsoft.com",)),
        ("wildcard.pstnhub.microsoft.com", ("*.pstnhub.microsoft.com",)),
    ]


def test_certs_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    result, text = _run(["certs", "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert (
        text
        == f"sbcsim certs: cannot write to {blocker / 'sub'}: Not a directory ({blocker / 'sub'})\n"
    )


def test_certs_bad_topology(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(
        "carrier: {base_domain: customers.example.com}\ntenants: []\n", encoding="utf-8"
    )
    result, text = _run(["certs", "--out", str(tmp_path / "out"), "--topology", str(topo)])
    assert result.exit_code == 2
    assert text == (
        "sbcsim certs: invalid topology:\n"
        f"{topo}:1:1: carrier.trunk_fqdn: required field missing\n"
        f"{topo}:2:10: tenants: needs at least one entry\n"
    )
    assert not (tmp_path / "out").exists()


def test_certs_missing_topology(tmp_path: Path) -> None:
    topo = tmp_path / "nope.yaml"
    result, text = _run(["certs", "--out", str(tmp_path / "out"), "--topology", str(topo)])
    assert result.exit_code == 2
    assert text == f"sbcsim certs: invalid topology:\n{topo}: no such file\n"


def test_certs_requires_out() -> None:
    result, _ = _run(["certs"])
    assert result.exit_code == 2
    assert "Missing option '--out'" in result.output


# ---------------------------------------------------------------------- validate


def test_validate_ok(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(default_topology_text(), encoding="utf-8")
    result, text = _run(["validate", str(topo)])
    assert result.exit_code == 0
    assert text == f"{topo}: ok (topology)\n"


def test_validate_detects_a_topology_without_kind(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(default_topology_text().replace("kind: topology\n", ""), encoding="utf-8")
    result, text = _run(["validate", str(topo)])
    assert (result.exit_code, text) == (0, f"{topo}: ok (topology)\n")


def test_validate_lists_every_error_of_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(default_topology_text(), encoding="utf-8")
    bad_field = tmp_path / "bad-field.yaml"
    bad_field.write_text(
        default_topology_text().replace('number: "+14255550102"', 'number: "4255550102"'),
        encoding="utf-8",
    )
    # Rules across fields are checked once every field is valid on its own.
    bad_rules = tmp_path / "bad-rules.yaml"
    bad_rules.write_text(
        default_topology_text()
        .replace("trunk_fqdn: tenant-b.customers.example.com", "trunk_fqdn: tenant-b.example.org")
        .replace("members: [kenji.kato@", "members: [kenji.kat@"),
        encoding="utf-8",
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: topology\ncarrier: [\n", encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    result, text = _run(
        ["validate", str(good), str(bad_field), str(bad_rules), str(broken), str(missing)]
    )
    assert result.exit_code == 2
    assert text.splitlines() == [
        f"{good}: ok (topology)",
        f"{bad_field}:36:17: tenants[0].users[1].number: expected an E.164 number: '+' then 7 "
        "to 15 digits, the first not 0 (got '4255550102')",
        f"{bad_rules}:86:17: tenants[1].trunk_fqdn: derived trunk FQDN 'tenant-b.example.org' "
        "must be one label in front of the carrier base domain 'customers.example.com' (the "
        "certificate *.customers.example.com covers only that)",
        f"{bad_rules}:111:19: tenants[1].call_groups[0].members[0]: no user "
        "'kenji.kat@fabrikam.example' in tenant 'tenant-b'",
        f"{broken}:3:1: YAML syntax error: while parsing a flow node (line 3, column 1): "
        "expected the node content, but found '<stream end>'",
        f"{missing}: no such file",
    ]


def test_validate_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("something: else\n", encoding="utf-8")
    result, text = _run(["validate", str(path)])
    assert result.exit_code == 2
    assert text == (
        f"{path}:1:1: cannot tell what kind of file this is; add a 'kind:' key (one of: topology, plan, scenario, target)\n"
    )


def test_validate_requires_a_file() -> None:
    result, _ = _run(["validate"])
    assert result.exit_code == 2
    assert "Missing argument 'FILES...'" in result.output


def test_commands_create_a_console_when_none_is_injected(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(default_topology_text(), encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(topo)])
    assert result.exit_code == 0
    assert result.output == f"{topo}: ok (topology)\n"
