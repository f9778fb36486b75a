"""The SIP transaction layer (RFC 3261 §17, RFC 6026): sans-I/O, its four state machines as tables.

:class:`TransactionLayer` takes messages, TU requests and ``now``; it gives back messages to send,
events for the TU (:mod:`sbcsim.transaction.events`) and its next deadline.  The machines are in
:mod:`sbcsim.transaction.machines`, the timer durations in :mod:`sbcsim.transaction.timers`.
"""

from sbcsim.transaction.events import (
    AckReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionEvent,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from sbcsim.transaction.layer import TransactionLayer, make_cancel, make_non2xx_ack
from sbcsim.transaction.machines import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    Action,
    Input,
    Machine,
    State,
    Transition,
)
from sbcsim.transaction.timers import TimerConfig

__all__ = [
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "AckReceived",
    "Action",
    "Input",
    "Machine",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponse",
    "TimerConfig",
    "TransactionEvent",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Transition",
    "TransportFailed",
    "make_cancel",
    "make_non2xx_ack",
]
