"""Transports: the interface every transport offers, and the in-memory network for simulation."""

from sbcsim.net.base import Address, PeerInfo, Receiver, TlsIdentity, TransportLayer, TransportName
from sbcsim.net.memory import (
    CapturedPacket,
    Fault,
    FaultRule,
    LinkProfile,
    MemoryNetwork,
    MemoryTransport,
    Packet,
    RuleAction,
    identity_matches,
    request_method,
    response_status,
)

__all__ = [
    "Address",
    "CapturedPacket",
    "Fault",
    "FaultRule",
    "LinkProfile",
    "MemoryNetwork",
    "MemoryTransport",
    "Packet",
    "PeerInfo",
    "Receiver",
    "RuleAction",
    "TlsIdentity",
    "TransportLayer",
    "TransportName",
    "identity_matches",
    "request_method",
    "response_status",
]
