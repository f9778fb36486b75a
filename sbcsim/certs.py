"""A throw-away certificate authority for the lab: one CA, and leaf certificates it signs.

Direct Routing runs over mutual TLS only, so even a lab on one laptop needs a CA that both the
emulated Microsoft proxies and the SBC under test trust, plus a certificate for every party:
the SBC's trunk FQDN, ``sip.pstnhub.microsoft.com`` and friends, and the wildcard names a
carrier-hosted SBC uses for its customer tenants (``*.customers.example.com``).  Everything here
is generated in memory with :mod:`cryptography`; :meth:`LabCA.write` and
:meth:`IssuedCert.write` put PEM files on disk for :mod:`ssl` and for the SBC's own configuration.

Keys are EC P-256 by default: generating one takes microseconds, so a test can mint a fresh CA
per run.  Pass ``now`` to pin the validity window (an already expired certificate for a negative
test, or byte-stable dates); without it certificates start an hour in the past so that a peer
whose clock lags a little still accepts them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sbcsim.errors import ConfigError

__all__ = ["CertFiles", "IssuedCert", "KeyType", "LabCA"]

#: The key algorithms the lab can issue.  EC P-256 is the default; RSA exists for SBCs that
#: still insist on it.
KeyType = Literal["ec-p256", "ec-p384", "rsa-2048"]

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# One DNS label (RFC 1123: letters, digits, hyphens; not starting or ending with a hyphen).
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
# X.520 upper bound for a commonName.
_CN_MAX = 64
# Clock-skew allowance when the caller does not pin ``now``.
_BACKDATE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where a certificate and its key were written."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A leaf certificate and its private key, both PEM, and the names it was issued for."""

    cert_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate (for assertions on its fields)."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, directory: str | os.PathLike[str], stem: str) -> CertFiles:
        """Write ``<stem>.pem`` (certificate) and ``<stem>.key`` (private key, mode 0600)."""
        return _write_pair(Path(directory), stem, self.cert_pem, self.key_pem)


class LabCA:
    """A self-signed root that signs every certificate of one lab.

    The CA is a root with ``pathLenConstraint=0``: it signs leaves only, which is all a lab needs
    and keeps chain validation trivial to reason about.
    """

    __slots__ = ("_cert", "_key")

    def __init__(self, certificate: x509.Certificate, private_key: _PrivateKey) -> None:
        self._cert = certificate
        self._key = private_key

    @classmethod
    def create(
        cls,
        common_name: str = "sbcsim lab CA",
        *,
        now: datetime | None = None,
        key_type: KeyType = "ec-p256",
        valid_days: int = 3650,
    ) -> LabCA:
        """Generate a new key and a self-signed CA certificate valid from ``now``."""
        if not common_name or len(common_name) > _CN_MAX:
            raise ConfigError(f"CA common name must be 1 to {_CN_MAX} characters: {common_name!r}")
        key = _generate_key(key_type)
        start = _start_time(now)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sbcsim lab"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, _hash_for(key))
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> LabCA:
        """Read a CA written by :meth:`write` (to keep one CA across runs)."""
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the lab CA from {cert_file} and {key_file}: {exc}"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigError(f"{key_file}: only EC and RSA CA keys are supported")
        return cls(cert, key)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM: what every party puts in its trust store."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def issue(
        self,
        names: Sequence[str],
        *,
        client: bool = True,
        server: bool = True,
        valid_days: int = 397,
        now: datetime | None = None,
        key_type: KeyType = "ec-p256",
    ) -> IssuedCert:
        """Sign a new leaf certificate for ``names``.

        Each name becomes a subjectAltName: a DNS name (a whole left-most ``*`` label is allowed)
        or, for an IPv4/IPv6 literal, an IP address.  The first name is also the subject CN
        when it fits in 64 characters.  ``client``/``server`` choose the extended key usages:
        Direct Routing peers present the same certificate in both roles, hence both by default.
        """
        if isinstance(names, str):
            raise ConfigError(f"names must be a sequence of names, not the string {names!r}")
        if not names:
            raise ConfigError("a certificate needs at least one name")
        if not (client or server):
            raise ConfigError("a certificate must allow client or server use (or both)")
        if valid_days < 1:
            raise ConfigError(f"valid_days must be at least 1, got {valid_days}")
        sans = [_general_name(name) for name in names]
        key = _generate_key(key_type)
        start = _start_time(now)
        first = names[0]
        subject = (
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)])
            if len(first) <= _CN_MAX
            else x509.Name([])
        )
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        issuer_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA key exchange needs keyEncipherment; EC keys must not assert it.
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            # RFC 5280 §4.2.1.6: the SAN is critical when the subject is empty.
            .add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
                critical=False,
            )
            .sign(self._key, _hash_for(self._key))
        )
        return IssuedCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key),
            names=tuple(names),
        )

    def write(self, directory: str | os.PathLike[str], stem: str = "ca") -> CertFiles:
        """Write ``<stem>.pem`` (the CA certificate) and ``<stem>.key`` (mode 0600)."""
        return _write_pair(Path(directory), stem, self.cert_pem, self.key_pem)

    def __repr__(self) -> str:
        return f"<LabCA {self._cert.subject.rfc4514_string()}>"


def _generate_key(key_type: KeyType) -> _PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ConfigError(f"unknown key type {key_type!r} (ec-p256, ec-p384 or rsa-2048)")


def _hash_for(key: _PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    # Match the digest to the curve strength (RFC 5480 §4); SHA-256 everywhere else.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _start_time(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0) - _BACKDATE
    if now.tzinfo is None:
        # A naive datetime is taken as UTC, which is what X.509 times are.
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.rstrip(".").split(".")
    if not name.isascii():
        raise ConfigError(f"not an ASCII DNS name (use the xn-- form for IDNs): {name!r}")
    for i, label in enumerate(labels):
        if i == 0 and label == "*":
            if len(labels) < 3:
                raise ConfigError(f"a wildcard needs at least two labels after it: {name!r}")
            continue
        if not _LABEL_RE.match(label):
            raise ConfigError(f"invalid DNS name {name!r} (label {label!r})")
    return x509.DNSName(name.rstrip("."))


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(directory: Path, stem: str, cert_pem: bytes, key_pem: bytes) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{stem}.pem"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(cert_pem)
    # Create the key file private from the start rather than chmod-ing it after writing.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_file, 0o600)  # O_CREAT's mode does not apply to an existing file
    return CertFiles(cert_file=cert_file, key_file=key_file)
