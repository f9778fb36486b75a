"""Teams users as the Direct Routing service sees them: endpoints that ring, answer, hang up.

Teams clients do not speak SIP to the proxy: each endpoint signals over REST and the proxy turns
that into SIP toward the SBC (Part 2.3 [DOC]: "Call progress - converted by the SIP proxy to the
SIP message 180 ... Call accepted - converted ... to SIP message 200 with SDP").  So a user here
is plain Python driven by the lab's clock: the service *alerts* a user's endpoints, and the user
answers, declines or lets it ring, either by the behaviour the topology gives it (with its delay
on the virtual clock) or when a scenario calls a verb (:meth:`TeamsUserAgent.answer` ...).

Presence follows the calls by itself: the service reports every connected call to the lab's
:class:`~sbcsim.presence.model.PresenceService` (``Busy``/``InACall``, ``InAConferenceCall`` after
an escalation) and the end of each call, so a contact center reading Graph sees what a real
tenant would show.  Do Not Disturb blocks ringing (the user is skipped) unless the user is set to
let calls break through.

The service side (:class:`CallControl`) is implemented by
:class:`sbcsim.endpoints.teams_proxy.DirectRoutingService`; this module only needs its verbs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sbcsim.node import Cancellable
from sbcsim.topology import AnswerBehaviour, AnswerMode, Forwarding, TeamsUser, Tenant

__all__ = [
    "Alert",
    "AlertState",
    "CallControl",
    "TeamsUserAgent",
    "mri_of",
    "tenant_guid",
]

# Fixed namespace so a tenant's GUID (x-t, Part 5.2) is the same in every run.
_TENANT_NAMESPACE = uuid.UUID("0b6c5c3e-2f3a-4a62-9d0e-7d3f1f0c6a11")

AlertState = Literal["ringing", "answered", "declined", "busy", "cancelled"]


def tenant_guid(tenant: Tenant) -> str:
    """The tenant id carried in ``x-t`` (Part 5.2 [DOC]) and the Graph ``tenantId``."""
    return str(uuid.uuid5(_TENANT_NAMESPACE, tenant.id))


def mri_of(user: TeamsUser) -> str:
    """The user's MRI, ``8:orgid:<object id>`` (Part 5.2 [INF] from the S29 trace)."""
    return f"8:orgid:{user.graph_id}"


class CallControl(Protocol):
    """What a user can ask of the Direct Routing service (the verbs behind the user API)."""

    def now(self) -> float: ...

    def schedule(self, delay: float, fn: Callable[[], None]) -> Cancellable: ...

    def answer_alert(self, alert: Alert) -> None: ...

    def reject_alert(self, alert: Alert, status: int) -> None: ...

    def hang_up(self, user: TeamsUserAgent, call: Any) -> None: ...

    def hold(self, user: TeamsUserAgent, call: Any, on_hold: bool) -> None: ...

    def transfer(self, user: TeamsUserAgent, call: Any, target: str) -> Any: ...

    def consult_transfer(self, user: TeamsUserAgent, call: Any, consult: Any) -> Any: ...

    def add_participant(self, user: TeamsUserAgent, call: Any, number: str) -> Any: ...

    def escalate(self, user: TeamsUserAgent, call: Any) -> Any: ...

    def place_call(self, user: TeamsUserAgent, number: str, *, anonymous: bool = False) -> Any: ...


@dataclass(eq=False)
class Alert:
    """One endpoint of one user ringing for one call (a fork, with its own To-tag when the
    call came from the SBC)."""

    call: Any
    user: TeamsUserAgent
    endpoint: int
    started_at: float
    to_tag: str | None = None
    state: AlertState = "ringing"
    timer: Cancellable | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop ringing (another endpoint answered, or the caller gave up)."""
        if self.state == "ringing":
            self.state = "cancelled"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class TeamsUserAgent:
    """One Teams user of the lab, with the verbs a scenario drives it by.

    ``behaviour`` starts as the topology's and may be changed by a scenario; ``endpoints`` is
    how many clients the user is signed in on (each rings as its own fork);
    ``dnd_breakthrough`` lets calls ring through Do Not Disturb.
    """

    def __init__(
        self,
        user: TeamsUser,
        tenant: Tenant,
        control: CallControl,
        *,
        endpoints: int = 1,
        presence_of: Callable[[str], str] | None = None,
    ) -> None:
        if endpoints < 1:
            raise ValueError("a signed-in user has at least one endpoint")
        self.user = user
        self.tenant = tenant
        self.control = control
        self.behaviour: AnswerBehaviour = user.answer
        self.endpoints = endpoints
        self.dnd_breakthrough = False
        self.alerts: list[Alert] = []
        self.calls: list[Any] = []
        self.history: list[tuple[float, str]] = []
        self._presence_of = presence_of

    # -- identity --------------------------------------------------------------------------
    @property
    def upn(self) -> str:
        return self.user.upn

    @property
    def number(self) -> str | None:
        return self.user.number

    @property
    def mri(self) -> str:
        return mri_of(self.user)

    @property
    def tenant_id(self) -> str:
        return tenant_guid(self.tenant)

    @property
    def availability(self) -> str:
        """The user's current Graph availability (``Available`` when presence is not wired)."""
        return self._presence_of(self.user.graph_id) if self._presence_of else "Available"

    def set_behaviour(self, mode: AnswerMode, delay_seconds: float = 0.0) -> None:
        """Change what the user does with the next calls."""
        self.behaviour = AnswerBehaviour(mode=mode, delay_seconds=delay_seconds)

    # -- ringing -----------------------------------------------------------------------------
    def can_ring(self) -> bool:
        """Whether an alert reaches this user: not when set to DND (by behaviour or presence)
        unless calls may break through."""
        if self.dnd_breakthrough:
            return True
        return self.behaviour.mode != "dnd" and self.availability != "DoNotDisturb"

    def alerted(self, alert: Alert) -> None:
        """The service made one of this user's endpoints ring; act on the behaviour."""
        self.alerts.append(alert)
        self._log(f"ringing endpoint {alert.endpoint}")
        if alert.endpoint != 0:
            return  # the behaviour is the user's, acted on from the first endpoint only
        mode = self.behaviour.mode
        delay = self.behaviour.delay_seconds
        if mode == "answer":
            alert.timer = self.control.schedule(delay, lambda: self._act(alert, "answer"))
        elif mode == "decline":
            alert.timer = self.control.schedule(delay, lambda: self._act(alert, "decline"))
        elif mode == "busy":
            alert.timer = self.control.schedule(delay, lambda: self._act(alert, "busy"))

    def _act(self, alert: Alert, what: str) -> None:
        alert.timer = None
        if alert.state != "ringing":
            return
        if what == "answer":
            self.control.answer_alert(alert)
        elif what == "decline":
            self.control.reject_alert(alert, 603)
        else:
            self.control.reject_alert(alert, 486)

    def ringing(self) -> list[Alert]:
        """Alerts still ringing, oldest first."""
        return [a for a in self.alerts if a.state == "ringing"]

    # -- verbs ---------------------------------------------------------------------------------
    def answer(self, endpoint: int | None = None) -> None:
        """Answer the oldest ringing call (on ``endpoint`` when given)."""
        self.control.answer_alert(self._alert(endpoint))

    def decline(self) -> None:
        """Decline the oldest ringing call: 603 toward the caller (Part 2.3 [DOC])."""
        self.control.reject_alert(self._alert(None), 603)

    def reject_busy(self) -> None:
        """Reject the oldest ringing call as busy: 486."""
        self.control.reject_alert(self._alert(None), 486)

    def hang_up(self) -> None:
        """End the current call."""
        self.control.hang_up(self, self.current_call())

    def hold(self) -> None:
        """Put the current call on hold (a=inactive toward the SBC, Part 8.4 [DOC])."""
        self.control.hold(self, self.current_call(), True)

    def resume(self) -> None:
        """Take the current call off hold."""
        self.control.hold(self, self.current_call(), False)

    def transfer_to(self, target: str) -> Any:
        """Blind-transfer the current call to a user (UPN) or a number (E.164)."""
        return self.control.transfer(self, self.current_call(), target)

    def consult_transfer(self) -> Any:
        """Transfer the first (held) call to the party of the latest (consultation) call."""
        if len(self.calls) < 2:
            raise RuntimeError(f"{self.upn} needs a held call and a consultation call")
        return self.control.consult_transfer(self, self.calls[0], self.calls[-1])

    def add_participant(self, number: str) -> Any:
        """Escalate the current call to a group call and dial ``number`` into it."""
        return self.control.add_participant(self, self.current_call(), number)

    def escalate(self) -> Any:
        """Turn the current 1:1 call into a group call (the media moves to a conference Media
        Processor, Part 8.5 [DOC]) without adding anybody yet."""
        return self.control.escalate(self, self.current_call())

    def set_forwarding(self, forwarding: Forwarding) -> None:
        """Change the user's call forwarding ("Forward my calls", "If unanswered") for the
        next calls, as the user would in the Teams client."""
        self.user = self.user.model_copy(update={"forwarding": forwarding})

    def place_call(self, number: str, *, anonymous: bool = False) -> Any:
        """Call a number (PSTN, through the SBC) or another user's number."""
        return self.control.place_call(self, number, anonymous=anonymous)

    def current_call(self) -> Any:
        """The latest connected call; RuntimeError when there is none."""
        if not self.calls:
            raise RuntimeError(f"{self.upn} is not in a call")
        return self.calls[-1]

    def _alert(self, endpoint: int | None) -> Alert:
        for alert in self.alerts:
            if alert.state == "ringing" and (endpoint is None or alert.endpoint == endpoint):
                return alert
        raise RuntimeError(f"no call is ringing for {self.upn}")

    def _log(self, what: str) -> None:
        self.history.append((self.control.now(), what))

    def __repr__(self) -> str:
        return f"<TeamsUserAgent {self.upn} {self.behaviour.mode} calls={len(self.calls)}>"
