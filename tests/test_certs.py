"""The lab CA: exact fields of the certificates it issues, files it writes, names it refuses."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sbcsim.certs import IssuedCert, LabCA
from sbcsim.errors import ConfigError

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA.create(now=NOW)


def _cn(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def test_ca_certificate_fields(ca: LabCA) -> None:
    cert = ca.certificate
    assert _cn(cert) == ["sbcsim lab CA"]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (bc.critical, bc.value.ca, bc.value.path_length) == (True, True, 0)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ku.key_cert_sign, ku.crl_sign) == (True, True)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert ca.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_issued_certificate_names_and_usages(ca: LabCA) -> None:
    names = ["sbc.example.com", "*.customers.example.com", "192.0.2.10", "2001:db8::5"]
    issued = ca.issue(names, now=NOW, valid_days=90)
    assert issued.names == tuple(names)
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert _cn(cert) == ["sbc.example.com"]
    assert cert.issuer == ca.certificate.subject
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is False
    assert san.value.get_values_for_type(x509.DNSName) == [
        "sbc.example.com",
        "*.customers.example.com",
    ]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("2001:db8::5"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ku.digital_signature, ku.key_encipherment, ku.key_cert_sign) == (True, False, False)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        (True, False, [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (False, True, [ExtendedKeyUsageOID.SERVER_AUTH]),
    ],
)
def test_usage_can_be_restricted(
    ca: LabCA, client: bool, server: bool, expected: list[x509.ObjectIdentifier]
) -> None:
    cert = ca.issue(["a.example.com"], client=client, server=server, now=NOW).certificate
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == expected


def test_expired_certificate_for_negative_tests(ca: LabCA) -> None:
    past = datetime(2020, 1, 1, tzinfo=UTC)
    cert = ca.issue(["old.example.com"], now=past, valid_days=1).certificate
    assert cert.not_valid_after_utc == datetime(2020, 1, 2, tzinfo=UTC)


def test_naive_now_is_utc() -> None:
    ca = LabCA.create(now=datetime(2025, 3, 1, 12, 0, 0))
    assert ca.certificate.not_valid_before_utc == NOW


def test_default_validity_starts_an_hour_back(ca: LabCA) -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    cert = ca.issue(["x.example.com"]).certificate
    after = datetime.now(UTC) - timedelta(hours=1)
    assert before <= cert.not_valid_before_utc <= after
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=397)


def test_long_first_name_leaves_subject_empty_and_san_critical(ca: LabCA) -> None:
    name = ("a" * 60) + ".example.com"
    cert = ca.issue([name], now=NOW).certificate
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is True
    assert san.value.get_values_for_type(x509.DNSName) == [name]


@pytest.mark.parametrize(
    ("key_type", "key_class", "key_encipherment"),
    [("ec-p384", ec.EllipticCurvePrivateKey, False), ("rsa-2048", rsa.RSAPrivateKey, True)],
)
def test_other_key_types(ca: LabCA, key_type: str, key_class: type, key_encipherment: bool) -> None:
    issued = ca.issue(["k.example.com"], now=NOW, key_type=key_type)  # type: ignore[arg-type]
    assert isinstance(load_pem_private_key(issued.key_pem, None), key_class)
    ku = issued.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_encipherment is key_encipherment


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        ([], "at least one name"),
        ("sbc.example.com", "not the string"),
        (["bad name.example.com"], "invalid DNS name 'bad name.example.com'"),
        (["a.*.example.com"], "invalid DNS name 'a.*.example.com' (label '*')"),
        (["a*.example.com"], "invalid DNS name 'a*.example.com' (label 'a*')"),
        (["*.com"], "a wildcard needs at least two labels after it: '*.com'"),
        (["-sbc.example.com"], "invalid DNS name '-sbc.example.com'"),
        (["a..example.com"], "invalid DNS name 'a..example.com' (label '')"),
        (["bücher.example.com"], "use the xn-- form"),
    ],
)
def test_invalid_names_are_refused(ca: LabCA, names: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ca.issue(names, now=NOW)
    assert fragment in str(info.value)


def test_no_usage_is_refused(ca: LabCA) -> None:
    with pytest.raises(ConfigError, match="client or server"):
        ca.issue(["a.example.com"], client=False, server=False)


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown key type 'dsa'"):
        LabCA.create(key_type="dsa")  # type: ignore[arg-type]


def test_files_are_written_and_loadable(ca: LabCA, tmp_path: Path) -> None:
    ca_files = ca.write(tmp_path / "pki")
    assert ca_files.cert_file == tmp_path / "pki" / "ca.pem"
    assert ca_files.key_file == tmp_path / "pki" / "ca.key"
    assert ca_files.cert_file.read_bytes() == ca.cert_pem
    assert stat.S_IMODE(ca_files.key_file.stat().st_mode) == 0o600

    issued = ca.issue(["sbc.example.com"])
    files = issued.write(tmp_path / "pki", "sbc")
    assert (files.cert_file.name, files.key_file.name) == ("sbc.pem", "sbc.key")
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    assert files.key_file.read_bytes() == issued.key_pem

    # The standard library accepts them as a server identity and a trust anchor.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert_file, files.key_file)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(ca_files.cert_file)
    assert [c["subject"] for c in client.get_ca_certs()] == [
        ((("commonName", "sbcsim lab CA"),), (("organizationName", "sbcsim lab"),))
    ]


def test_existing_key_file_is_made_private(ca: LabCA, tmp_path: Path) -> None:
    key = tmp_path / "ca.key"
    key.write_bytes(b"old")
    key.chmod(0o644)
    ca.write(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes() == ca.key_pem


def test_load_round_trip(ca: LabCA, tmp_path: Path) -> None:
    files = ca.write(tmp_path)
    again = LabCA.load(files.cert_file, files.key_file)
    assert again.cert_pem == ca.cert_pem
    issued = again.issue(["b.example.com"], now=NOW)
    issued.certificate.verify_directly_issued_by(ca.certificate)


def test_load_missing_files_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the lab CA from"):
        LabCA.load(tmp_path / "nope.pem", tmp_path / "nope.key")


def test_issued_cert_is_a_frozen_value(ca: LabCA) -> None:
    issued = ca.issue(["c.example.com"], now=NOW)
    assert isinstance(issued, IssuedCert)
    with pytest.raises(AttributeError):
        issued.names = ()  # type: ignore[misc]
