"""Dialogs and the UA core (RFC 3261 §12-15, RFC 3262, 3311, 3515, 3891, 3892, 4028, 6026).

Sans-I/O like the layers below it: :class:`UserAgent` owns a transaction layer, takes messages,
API calls and ``now``, and gives back messages to send, the events of
:mod:`sbcsim.dialog.events` and its next deadline.  No clock, randomness or identifiers of its
own: all of them are injected (a test enforces the imports).
"""

from sbcsim.dialog.dialog import Dialog
from sbcsim.dialog.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    DialogId,
    EndReason,
    ForkDiscarded,
    GlareBackoff,
    IncomingCall,
    IncomingRequest,
    ProvisionalAcknowledged,
    ReferProgress,
    ReferReceived,
    ReinviteReceived,
    RequestCompleted,
    RequestHandle,
    RequestRef,
    SessionRefreshed,
    StandaloneCompleted,
    UaEvent,
    UpdateReceived,
)
from sbcsim.dialog.refer import (
    SIPFRAG_TYPE,
    Sipfrag,
    parse_sipfrag,
    refer_target,
    refer_to_with_replaces,
    replaces_in,
    replaces_value,
    sipfrag,
)
from sbcsim.dialog.states import CallInput, CallState
from sbcsim.dialog.timers import SessionTimer, SessionTimerConfig
from sbcsim.dialog.useragent import (
    DEFAULT_ALLOW,
    DEFAULT_SUPPORTED,
    IdSource,
    Resolver,
    UserAgent,
)

__all__ = [
    "DEFAULT_ALLOW",
    "DEFAULT_SUPPORTED",
    "SIPFRAG_TYPE",
    "CallCancelled",
    "CallEnded",
    "CallEstablished",
    "CallFailed",
    "CallInput",
    "CallProgress",
    "CallRef",
    "CallState",
    "Dialog",
    "DialogId",
    "EndReason",
    "ForkDiscarded",
    "GlareBackoff",
    "IdSource",
    "IncomingCall",
    "IncomingRequest",
    "ProvisionalAcknowledged",
    "ReferProgress",
    "ReferReceived",
    "ReinviteReceived",
    "RequestCompleted",
    "RequestHandle",
    "RequestRef",
    "Resolver",
    "SessionRefreshed",
    "SessionTimer",
    "SessionTimerConfig",
    "Sipfrag",
    "StandaloneCompleted",
    "UaEvent",
    "UpdateReceived",
    "UserAgent",
    "parse_sipfrag",
    "refer_target",
    "refer_to_with_replaces",
    "replaces_in",
    "replaces_value",
    "sipfrag",
]
