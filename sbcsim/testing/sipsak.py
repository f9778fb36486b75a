"""Run sipsak as a TLS peer: one OPTIONS request, and its verdict read from what it printed.

sipsak is the smallest real SIP client that speaks TLS (Debian's SIPp is built without it), so
the interop tests use it to check that a live sbcsim node answers a foreign TLS stack.  Its
behaviour has sharp edges that this module encodes once, so that no test has to rediscover them:

* Debian's build (0.9.8.1, GnuTLS) checks the server certificate — chain *and* name — only at
  verbosity 3; below that it accepts any certificate.  :func:`options_command` always passes
  ``-vvv``, which is also what makes it print the response and its own Via.
* The name it checks is the Request-URI host, and a URI with a port in it is both mangled (a
  five-digit port loses its last digit) and compared with the port attached, so the port goes in
  ``-r`` and the host stays a bare IP literal (a DNS name would also make sipsak query DNS).
* ``--tls-client-cert`` is parsed and then never used: that build never loads a certificate or
  key into its GnuTLS credentials, so it cannot take part in mutual TLS.
  :func:`presents_client_certificate` tells from the binary whether the installed sipsak can.
* It reads the response with a single ``gnutls_record_recv`` after the first readable event, so
  a TLS 1.3 NewSessionTicket arriving first is taken as a failed read: the server must not send
  tickets (``ssl.SSLContext.num_tickets = 0``) or must stop at TLS 1.2.
* Its requests carry ``Accept: text/plain``; a UAS that only answers OPTIONS with SDP rejects
  that with 406, so :func:`options_command` adds ``Accept: application/sdp`` by default.

Exit codes (sipsak's own): 0 a 200 was received, 1 another final response, 2 a local error (a
failed read included), 3 a remote error (timeout, TLS handshake or certificate check).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sbcsim.errors import PeerMissingError
from sbcsim.testing.peers import find_peer

__all__ = [
    "SipsakResult",
    "options_command",
    "parse_output",
    "presents_client_certificate",
    "run_sipsak",
    "send_options",
]

SipsakTransport = Literal["udp", "tcp", "tls"]

# A final or provisional status line, as sipsak prints received messages (indented in summaries).
_STATUS_RE = re.compile(r"^\s*SIP/2\.0 (\d{3}) ?([^\r\n]*)$", re.MULTILINE)
# "our Via-Line: Via: SIP/2.0/TLS 127.0.0.1:52269;branch=..." (printed from -vv on)
_VIA_RE = re.compile(r"^our Via-Line: Via: SIP/2\.0/\w+ (\S+?):(\d+)[;\s]", re.MULTILINE)

# Symbols a sipsak binary must import to put a client certificate into its TLS credentials.
_CLIENT_CERT_SYMBOLS = (
    b"gnutls_certificate_set_x509_key",  # _file, _mem, _file2, _mem2 all share the prefix
    b"gnutls_certificate_set_retrieve_function",
    b"SSL_CTX_use_certificate",
    b"SSL_use_certificate",
)


@dataclass(frozen=True, slots=True)
class SipsakResult:
    """What one sipsak run did.

    ``status``/``reason`` are those of the last final response it printed (``None`` when none
    arrived); ``local_port`` is the source port of its connection, from its Via line, which is
    how the server side can name this very client in its logs and errors.
    """

    exit_code: int
    status: int | None
    reason: str | None
    local_port: int | None
    output: str = field(repr=False)
    command: tuple[str, ...] = field(repr=False, default=())

    @property
    def ok(self) -> bool:
        """sipsak says success and the final response was a 200."""
        return self.exit_code == 0 and self.status == 200


def parse_output(exit_code: int, output: str, command: Sequence[str] = ()) -> SipsakResult:
    """Read the final status and sipsak's own source port out of its ``-vvv`` output."""
    status: int | None = None
    reason: str | None = None
    for match in _STATUS_RE.finditer(output):
        code = int(match.group(1))
        if code >= 200:
            status, reason = code, match.group(2).strip()
    via = _VIA_RE.search(output)
    return SipsakResult(
        exit_code=exit_code,
        status=status,
        reason=reason,
        local_port=int(via.group(2)) if via else None,
        output=output,
        command=tuple(command),
    )


def presents_client_certificate(sipsak: str | os.PathLike[str]) -> bool:
    """Whether this sipsak binary can send a client certificate at all.

    It looks for the TLS library calls that load a certificate into the client's credentials in
    the binary's dynamic symbol names; Debian's 0.9.8.1 has none of them, whatever its
    ``--tls-client-cert`` option suggests.
    """
    data = Path(sipsak).read_bytes()
    return any(symbol in data for symbol in _CLIENT_CERT_SYMBOLS)


def options_command(
    sipsak: str,
    host: str,
    port: int,
    *,
    transport: SipsakTransport = "tls",
    user: str = "sbcsim",
    local_host: str = "127.0.0.1",
    ca_file: str | os.PathLike[str] | None = None,
    client_cert: str | os.PathLike[str] | None = None,
    ignore_cert_failure: bool = False,
    headers: Sequence[str] = ("Accept: application/sdp",),
) -> list[str]:
    """The argument vector for one OPTIONS to ``host:port`` (``host`` an IP literal).

    ``local_host`` is used both as the bound source address and as the host in Via and Contact,
    so sipsak never looks up the machine's own name.  ``client_cert`` is a PEM file with the
    certificate and its key (see :func:`presents_client_certificate`).
    """
    if ":" in host:
        # sipsak 0.9.8 only builds IPv4 sockets.
        raise ValueError(f"sipsak needs an IPv4 address, not {host!r}")
    args = [
        sipsak,
        "-vvv",
        "-s",
        f"sip:{user}@{host}",
        "-r",
        str(port),
        "-E",
        transport,
        "-k",
        local_host,
        "-H",
        local_host,
    ]
    if ca_file is not None:
        args += ["--tls-ca-cert", os.fspath(ca_file)]
    if client_cert is not None:
        args += ["--tls-client-cert", os.fspath(client_cert)]
    if ignore_cert_failure:
        args.append("--tls-ignore-cert-failure")
    if headers:
        # -j takes one string; sipsak inserts it verbatim after its own headers.
        args += ["-j", "\r\n".join(headers)]
    return args


async def run_sipsak(args: Sequence[str], *, timeout: float) -> SipsakResult:
    """Run ``args`` (from :func:`options_command`) and wait at most ``timeout`` seconds.

    Raises :class:`TimeoutError` (after killing sipsak) when it did not finish in time.
    """
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise TimeoutError(f"{' '.join(args)} did not finish within {timeout} s") from None
    exit_code = proc.returncode if proc.returncode is not None else -1
    # Its certificate dump prints a raw binary fingerprint; keep the rest readable.
    return parse_output(exit_code, out.decode("utf-8", "replace"), args)


async def send_options(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    transport: SipsakTransport = "tls",
    ca_file: str | os.PathLike[str] | None = None,
    client_cert: str | os.PathLike[str] | None = None,
    ignore_cert_failure: bool = False,
    local_host: str = "127.0.0.1",
    headers: Sequence[str] = ("Accept: application/sdp",),
) -> SipsakResult:
    """Send one OPTIONS with the installed sipsak; see :func:`options_command`.

    Raises :class:`PeerMissingError` when sipsak is not installed.
    """
    sipsak = find_peer("sipsak")
    if sipsak is None:
        raise PeerMissingError("sipsak is not installed (Debian package 'sipsak')")
    args = options_command(
        sipsak,
        host,
        port,
        transport=transport,
        local_host=local_host,
        ca_file=ca_file,
        client_cert=client_cert,
        ignore_cert_failure=ignore_cert_failure,
        headers=headers,
    )
    return await run_sipsak(args, timeout=timeout)
