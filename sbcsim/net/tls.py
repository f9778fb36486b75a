"""TLS for the live transports: SSL contexts as Direct Routing wants them, and certificate names.

Direct Routing is SIP over mutual TLS 1.2 or later: the Microsoft proxies present a public
certificate, and the SBC presents one for its trunk FQDN (or a wildcard over its customer
tenants) and is identified by the names it carries.  This module builds :class:`ssl.SSLContext`
objects with that policy — so nobody has to remember ``minimum_version`` at each call site — reads
the names out of a peer certificate, and explains :mod:`ssl` failures in words a person setting
up an SBC can act on ("the server requires a client certificate").

Name matching follows RFC 6125 §6.4.3 as browsers apply it: a wildcard is only ever the whole
left-most label and stands for exactly one label, and never sits directly under a top-level
domain.  OpenSSL's host check (used by the client contexts built here) applies the same rule.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from sbcsim.errors import ConfigError
from sbcsim.net.names import name_matches

__all__ = [
    "MINIMUM_TLS_VERSION",
    "certificate_names",
    "client_context",
    "name_matches",
    "server_context",
    "ssl_failure_hint",
]

#: Direct Routing refuses anything older (TLS 1.0/1.1 were retired by Microsoft in 2022).
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2

_PathLike = str | os.PathLike[str]


def server_context(
    cert_file: _PathLike,
    key_file: _PathLike,
    ca_file: _PathLike | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A context for a TLS listener presenting ``cert_file``.

    With ``ca_file`` the server asks every client for a certificate signed by that CA:
    ``CERT_REQUIRED`` when ``require_client_cert`` (the handshake fails without one, as the
    Microsoft proxies do), ``CERT_OPTIONAL`` otherwise (a client may send none, but one it does
    send must validate).  Without ``ca_file`` no certificate is requested, so none can be seen;
    asking to require one then is a configuration error.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_TLS_VERSION
    _load_chain(ctx, cert_file, key_file)
    if ca_file is not None:
        _load_ca(ctx, ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ConfigError("require_client_cert needs a ca_file to validate client certificates")
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(
    ca_file: _PathLike | None,
    cert_file: _PathLike | None = None,
    key_file: _PathLike | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A context for outgoing TLS connections that validates the server against ``ca_file``.

    ``ca_file=None`` trusts the system store (a real Microsoft endpoint).  ``cert_file`` and
    ``key_file`` are the certificate presented when the server asks for one (mutual TLS).
    The chain is always validated; ``check_hostname=False`` only skips matching the server's
    names against the SNI name, for an SBC reached by an address its certificate does not list.
    """
    if (cert_file is None) != (key_file is None):
        raise ConfigError("a client certificate needs both cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MINIMUM_TLS_VERSION
    if ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_ca(ctx, ca_file)
    if cert_file is not None and key_file is not None:
        _load_chain(ctx, cert_file, key_file)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def certificate_names(cert: Mapping[str, Any] | bytes) -> tuple[str, ...]:
    """The DNS names of a certificate: subjectAltName DNS entries in order, then the CN.

    ``cert`` is either what :meth:`ssl.SSLSocket.getpeercert` returns (a dict, only filled in
    when the certificate was validated) or the DER bytes from ``getpeercert(binary_form=True)``.
    The CN is added only when no SAN already lists it.
    """
    names: list[str] = []
    if isinstance(cert, bytes | bytearray | memoryview):
        parsed = x509.load_der_x509_certificate(bytes(cert))
        try:
            san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            pass
        else:
            names.extend(san.value.get_values_for_type(x509.DNSName))
        for attr in parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attr.value
            names.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    else:
        for kind, value in cert.get("subjectAltName", ()):
            if kind == "DNS":
                names.append(str(value))
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    names.append(str(value))
    return tuple(dict.fromkeys(names))


# OpenSSL reason codes -> what a person should check.
_REASON_HINTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate and none was sent",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate but one is required",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust the CA that signed our certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer rejected our certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer rejected our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer says our certificate has expired",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the peer does not support TLS 1.2 or later",
    "UNSUPPORTED_PROTOCOL": "the peer does not support TLS 1.2 or later",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common (TLS 1.2 or later is required)",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS on this port (plain TCP?)",
    "HTTP_REQUEST": "the peer sent plain HTTP to a TLS port",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "no cipher suite or parameters in common",
    "NO_SHARED_CIPHER": "no cipher suite in common",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not know the name sent in SNI",
    "UNEXPECTED_EOF_WHILE_READING": "the peer closed the connection during the handshake",
}

# X509_V_ERR_* codes -> hint.
_VERIFY_HINTS = {
    2: "the certificate is not signed by a trusted CA",
    9: "the certificate is not yet valid (clock skew?)",
    10: "the certificate has expired",
    18: "the certificate is self-signed and not trusted",
    19: "the chain ends in a CA that is not trusted",
    20: "the certificate is not signed by a trusted CA",
    21: "the certificate is not signed by a trusted CA",
    62: "the certificate does not carry the expected host name",
    64: "the certificate does not carry the expected IP address",
}


def ssl_failure_hint(exc: BaseException) -> str:
    """A short explanation of an :mod:`ssl` failure, for error messages and logs."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = _VERIFY_HINTS.get(exc.verify_code)
        detail = exc.verify_message or str(exc)
        return f"{detail}: {hint}" if hint else f"certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLEOFError):
        return "the peer closed the connection during the handshake"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        hint = _REASON_HINTS.get(reason)
        label = reason.lower().replace("_", " ") if reason else str(exc)
        return f"{label}: {hint}" if hint else label
    return str(exc) or type(exc).__name__


def _load_chain(ctx: ssl.SSLContext, cert_file: _PathLike, key_file: _PathLike) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"cannot load certificate {os.fspath(cert_file)} with key {os.fspath(key_file)}: "
            f"{_describe_load_error(exc)}"
        ) from exc


def _load_ca(ctx: ssl.SSLContext, ca_file: _PathLike) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load CA file {os.fspath(ca_file)}: {_describe_load_error(exc)}"
        ) from exc


def _describe_load_error(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
