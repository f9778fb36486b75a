"""The SIP wire format: URIs, headers, messages, the parser and SDP.  Pure: no I/O, clock or
randomness (a test enforces it)."""

from sbcsim.sip.headers import (
    CSeq,
    Event,
    Headers,
    HistoryInfoEntry,
    MediaType,
    NameAddr,
    RAck,
    Reason,
    Replaces,
    SessionExpires,
    SubscriptionState,
    Via,
    parse_name_addr,
    parse_via,
)
from sbcsim.sip.message import (
    REASON_PHRASES,
    Message,
    Request,
    Response,
    build_request,
    make_response,
)
from sbcsim.sip.parser import KeepAlive, ParserLimits, StreamFramer, StreamParser, parse_message
from sbcsim.sip.policy import Rejection, UasPolicy, inspect_request
from sbcsim.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "REASON_PHRASES",
    "AbsoluteUri",
    "CSeq",
    "Event",
    "Headers",
    "HistoryInfoEntry",
    "KeepAlive",
    "MediaType",
    "Message",
    "NameAddr",
    "ParserLimits",
    "RAck",
    "Reason",
    "Rejection",
    "Replaces",
    "Request",
    "Response",
    "SessionExpires",
    "SipUri",
    "StreamFramer",
    "StreamParser",
    "SubscriptionState",
    "TelUri",
    "UasPolicy",
    "Uri",
    "Via",
    "build_request",
    "inspect_request",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]
