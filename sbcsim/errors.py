"""The one exception tree of sbcsim.

::

    SbcsimError
    ├── ProtocolError                 a SIP rule was broken
    │   ├── LocalProtocolError        ... by us (a bug or a misuse of the API)
    │   └── RemoteProtocolError       ... by the peer (bytes from the wire)
    ├── TransportError                a socket, connection or TLS failure
    ├── TransactionTimeout            Timer B / F / H fired
    ├── ConfigError                   a YAML file or an option is wrong (with file:line:col)
    └── PeerMissingError              a real peer program (sipp, kamailio ...) is not installed

``status_hint`` on a protocol error tells a UAS which final response to send (400, 505, 416 ...);
``None`` means the message must be discarded without an answer (a malformed response, or a
request whose transaction cannot even be identified).  ``close_connection`` asks a stream
transport to drop the connection (framing errors that cannot be recovered, RFC 3261 §18.3).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LocalProtocolError",
    "PeerMissingError",
    "ProtocolError",
    "RemoteProtocolError",
    "SbcsimError",
    "TransactionTimeout",
    "TransportError",
]


class SbcsimError(Exception):
    """Base of every error sbcsim raises on purpose."""


class ProtocolError(SbcsimError):
    """A SIP rule was broken; ``status_hint`` is the response a UAS should answer with."""

    def __init__(
        self,
        msg: str,
        status_hint: int | None = 400,
        *,
        close_connection: bool = False,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status_hint = status_hint
        self.close_connection = close_connection
        self.extra_headers = extra_headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.msg!r}, status_hint={self.status_hint!r})"


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids.

    ``status_hint=None`` means: discard silently (and log it).
    """


class TransportError(SbcsimError):
    """A transport failed: connection refused or reset, TLS handshake failure, unreachable."""

    def __init__(self, msg: str, *, address: tuple[str, int] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.address = address


class TransactionTimeout(SbcsimError):
    """A transaction timer (B, F or H) fired before a final response or an ACK arrived."""


class ConfigError(SbcsimError):
    """A configuration file or option is invalid; ``location`` is ``file:line:col`` when known."""

    def __init__(self, msg: str, *, location: str | None = None) -> None:
        super().__init__(f"{location}: {msg}" if location else msg)
        self.msg = msg
        self.location = location


class PeerMissingError(SbcsimError):
    """A real peer program needed for an interop run is not installed."""
