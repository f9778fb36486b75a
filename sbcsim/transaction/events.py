"""What the transaction layer emits, and the key that names a transaction.

The layer is sans-I/O (push in, pull out):

* inputs  — ``TransactionLayer.receive(message, peer, now)``, ``send_request(...)``,
  ``send_response(...)``, ``cancel(...)``, ``transport_error(...)``, ``handle_timer(now)``;
* outputs — :class:`Outgoing` items drained with ``messages_to_send()`` (what to put on the wire
  and where) and TU events drained with ``next_events()`` (what the layer above must act on);
  ``get_timer()`` gives the next deadline.

A transaction is named by :class:`TransactionKey` (RFC 3261 §17.1.3 / §17.2.3): the top Via
branch, the sent-by, and the method (ACK matches its INVITE's key; CANCEL has its own).  For a
branch without the ``z9hG4bK`` cookie (RFC 2543 peers) the key is built from the Request-URI,
From tag, Call-ID, CSeq and the top Via (§17.2.3's fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.sip.message import Request, Response

__all__ = [
    "AckReceived",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "TransactionEvent",
    "TransactionKey",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
]


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """Identifies one transaction.  ``client`` distinguishes our transactions from the peer's."""

    branch: str
    sent_by: str
    method: str
    client: bool


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to put on the wire.

    ``connection_id`` pins a stream connection (a response goes back on the connection its request
    came in on, RFC 3261 §18.2.2); ``server_name`` is the TLS SNI for a new connection.
    """

    message: Request | Response
    remote: Address
    transport: TransportName
    connection_id: int | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU (the first copy only; retransmissions are absorbed).

    ``key`` names the new server transaction; answer through ``send_response(key, ...)``.  A
    CANCEL that matches a pending INVITE server transaction arrives here with ``cancels`` naming
    it; the TU answers the CANCEL and ends the INVITE (487).  A CANCEL that matches nothing is
    answered 481 by the layer itself, and one that arrives after the INVITE's final response is
    answered 200; neither reaches the TU.
    """

    key: TransactionKey
    request: Request
    peer: PeerInfo
    cancels: TransactionKey | None = None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (it has no transaction: RFC 3261 §17.2.1 / §13.3.1.4).  ACKs for non-2xx
    finals are absorbed by their INVITE server transaction and never reach the TU."""

    request: Request
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response matched to one of our client transactions (1xx, each 2xx — retransmissions and
    forked 2xx included, RFC 6026 — and the first non-2xx final)."""

    key: TransactionKey
    response: Response
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (e.g. a 2xx retransmitted after our INVITE
    transaction ended); the dialog layer re-sends the ACK for a 2xx it knows."""

    response: Response
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B (INVITE client), F (non-INVITE client) or H (INVITE server, no ACK) fired.

    For a client transaction the TU treats this as a 408 (RFC 3261 §8.1.3.1)."""

    key: TransactionKey
    timer: str
    request: Request


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver a message of this transaction (RFC 3261 §17.1.4):
    for a client transaction the TU treats it as a 503."""

    key: TransactionKey
    error: TransportError
    request: Request


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated and was forgotten."""

    key: TransactionKey


TransactionEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
)
