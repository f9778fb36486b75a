"""What every transport offers the layer above, live (asyncio) or simulated (memory network).

A node never sees sockets.  It hands whole SIP messages to :class:`TransportLayer.send` and gets
whole, framed SIP messages back through :class:`Receiver.message_received`, each with a
:class:`PeerInfo` that says where it came from, over which connection and — for TLS — which names
the peer's certificate carries.  Stream framing (Content-Length) and RFC 5626 CRLF keep-alives
are handled inside the transport with :class:`sbcsim.sip.parser.StreamFramer`; framing errors
close the connection and are reported through :meth:`Receiver.transport_error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from sbcsim.errors import TransportError

__all__ = [
    "Address",
    "PeerInfo",
    "Receiver",
    "TlsIdentity",
    "TransportLayer",
    "TransportName",
]

Address = tuple[str, int]
TransportName = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """The names a certificate carries (subjectAltName DNS entries, then the CN).

    In simulation this *is* the certificate; live, it is read from the peer's certificate.
    ``valid`` is False for a certificate that failed chain validation (expired, unknown CA),
    which the memory network uses to emulate a handshake failure.
    """

    names: tuple[str, ...]
    valid: bool = True


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Where a message came from (or a connection goes to)."""

    transport: TransportName
    local: Address
    remote: Address
    connection_id: int | None = None
    peer_identity: TlsIdentity | None = None
    server_name: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


class Receiver(Protocol):
    """The layer above a transport (a node)."""

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        """One whole SIP message (a UDP datagram, or one framed message from a stream)."""

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        """A send failed, a connection could not be made or was lost with an error."""


class TransportLayer(Protocol):
    """Sends SIP messages; connects on demand and reuses connections keyed by peer."""

    def send(
        self,
        data: bytes,
        remote: Address,
        transport: TransportName,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
    ) -> None:
        """Queue ``data`` for ``remote``.

        Over TCP/TLS, ``connection_id`` (from a received message's :class:`PeerInfo`) sends on that
        very connection (a response goes back where its request came from); otherwise an open
        connection to ``remote`` is reused, or a new one is made (TLS with SNI ``server_name``).
        Failures are reported to the receiver's :meth:`Receiver.transport_error`, never raised.
        """

    def close(self) -> None:
        """Close every socket and connection."""
