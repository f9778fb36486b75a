"""The scenario file format (``scenarios/*.yaml``), as pydantic models.

A scenario names its actors, then runs steps in order on the virtual clock.  Steps are either
*actions* (a PSTN phone calls a Teams user, a user answers, holds, transfers; presence changes;
a link is partitioned; a proxy answers 503; raw bytes are sent) or *judgements*:

* ``expect`` — a message matching a pattern must cross the network within ``within`` virtual
  seconds; it is a check with a stable ``id`` and a ``requirement`` (doc part or RFC clause).
  A message that never arrives fails the check: silence is not a pass.
* ``expect_none`` — no message matching the pattern may cross the network during ``within``.
* ``check`` — a condition on the emulated world (trunk health, presence, a call's state).

Regexes in a pattern use Python syntax and ``re.search``.  Two forms compare *strings*
instead, for rules that say a value must reach the peer unchanged (Part 5.3 [SUP]: "Make sure
that the strings ... are not changed"):

* a ``headers`` value or a ``uri`` that starts with ``=`` is a literal: after ``{var}``
  substitution the rest must equal one of the header's values (or the Request-URI exactly as
  written on the wire), character for character — no escaping of regex metacharacters needed
  for captured values such as ``Referred-By: '={rb}'``;
* ``capture`` takes a header's value, the Request-URI, a tag or the Call-ID, and also
  ``uri:<Header>`` (the URI inside the header's first value, without ``<>``, its parameters or
  ``?headers``) and ``time`` (the virtual instant the message was sent, for ``elapsed``).

Each step is a mapping with exactly one key naming it (``wait: 5``, ``call: {...}``,
``expect: {...}``), which keeps files short and makes every error point at the step's line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

__all__ = [
    "Actor",
    "CheckStep",
    "ExpectNoneStep",
    "ExpectStep",
    "MessagePattern",
    "Scenario",
    "SdpPattern",
    "Step",
    "TimingPattern",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Actor(_Model):
    """Someone the scenario talks about: a PSTN phone, a Teams user, a proxy, the SBC."""

    pstn: str | None = Field(None, description="a PSTN phone's E.164 number from the topology")
    teams: str | None = Field(None, description="a Teams user's UPN (or number) from the topology")
    proxy: str | None = Field(
        None, description="a Microsoft proxy FQDN, e.g. sip2.pstnhub.microsoft.com"
    )


class SdpPattern(_Model):
    """Predicates on the SDP body of a message (all must hold)."""

    proto: str | None = Field(
        None, description="regex on every audio m= line's proto, e.g. RTP/SAVP"
    )
    attributes: list[str] = Field(
        default_factory=list,
        description="attributes every audio section (or the session) must have, e.g. [crypto, rtcp-mux]",
    )
    no_attributes: list[str] = Field(
        default_factory=list, description="attributes no audio section may have"
    )
    direction: str | None = Field(
        None,
        description="effective direction of the audio stream: sendrecv|sendonly|recvonly|inactive",
    )
    crypto_suite: str | None = Field(
        None, description="a crypto line with this suite must be present"
    )
    codecs: list[str] = Field(
        default_factory=list,
        description="encoding names that must be offered, e.g. [PCMU, telephone-event]",
    )
    connection_not: str | None = Field(
        None, description="the connection address must not be this, e.g. 0.0.0.0"
    )
    present: bool = Field(True, description="false: the message must have no SDP body")


class TimingPattern(_Model):
    """When a message must be sent, counted from an instant captured earlier with
    ``capture: {t0: time}``; compared at microsecond resolution, bounds included."""

    since: str = Field(description="a variable captured as 'time'")
    min: float = Field(0.0, description="at least this many virtual seconds after it")
    max: float | None = Field(None, description="at most this many virtual seconds after it")


class MessagePattern(_Model):
    """What a message must look like.  Regexes use Python syntax and ``re.search``; a ``uri``
    or ``headers`` value starting with ``=`` is a literal string instead (see the module
    docstring)."""

    from_: str | None = Field(
        None,
        alias="from",
        description="sending actor (actor name, sbc, pstn, microsoft, sip, sip2, sip3)",
    )
    to: str | None = Field(None, description="receiving actor")
    request: str | None = Field(None, description="request method, e.g. INVITE")
    status: int | list[int] | None = Field(None, description="response status code(s)")
    cseq: str | None = Field(None, description="regex on the CSeq method (for responses)")
    uri: str | None = Field(
        None, description="regex on the Request-URI ('=text': exactly this URI)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="header name -> regex one of its values must match "
        "('=text': one value must be exactly this text)",
    )
    absent: list[str] = Field(default_factory=list, description="headers that must not be present")
    count: dict[str, int] = Field(
        default_factory=dict, description="header name -> exact number of values"
    )
    call: str | None = Field(
        None, description="only messages of this captured Call-ID variable (e.g. c1)"
    )
    sdp: SdpPattern | None = None
    body: str | None = Field(
        None, description="regex on the body as text, e.g. '^SIP/2\\.0 200 ' for a sipfrag"
    )
    elapsed: TimingPattern | None = Field(
        None, description="when the message must be sent, relative to a captured 'time'"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("request")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.upper() if v else v


class _Judgement(MessagePattern):
    id: str = Field(description="stable check id, e.g. inbound.contact-is-tenant-fqdn")
    requirement: str = Field(
        description="the rule judged, e.g. 'DR Part 2.1 [DOC]' or 'RFC 3261 §8.2.6'"
    )
    title: str | None = None
    within: float = Field(5.0, gt=0, description="virtual seconds to wait")
    since: str | None = Field(None, description="search from this mark (default: the last action)")


class ExpectStep(_Judgement):
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="variable -> header name (or 'Call-ID', 'To-tag', 'From-tag', "
        "'Request-URI', 'uri:<Header>', 'time') to remember",
    )


class ExpectNoneStep(_Judgement):
    pass


class CheckStep(_Model):
    id: str
    requirement: str
    title: str | None = None
    condition: dict[str, Any] = Field(
        description="one probe: trunk_healthy, trunk_demoted, presence, calls_active, call_state ..."
    )


class CallAction(_Model):
    from_: str = Field(alias="from", description="calling actor")
    to: str = Field(description="called actor or E.164 number")
    as_: str | None = Field(None, alias="as", description="name of the call for later steps")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WhoAction(_Model):
    who: str
    call: str | None = None


class RejectAction(WhoAction):
    status: int = 486


class TransferAction(WhoAction):
    to: str
    mode: Literal["blind", "consult"] = "blind"


class ForwardingAction(_Model):
    """A Teams user's call forwarding, as set in the client (replaces the topology's)."""

    user: str = Field(description="a Teams actor (or UPN)")
    immediate: str | None = Field(
        None, description="forward every call at once: an actor, UPN, E.164 number or voicemail"
    )
    unanswered: str | None = Field(None, description="forward when unanswered: same forms")
    unanswered_after_seconds: int = Field(20, ge=1, le=600)


class PresenceAction(_Model):
    user: str
    availability: str
    activity: str | None = None


class LinkAction(_Model):
    a: str
    b: str


class ProxyAction(_Model):
    proxy: str
    mode: Literal["normal", "busy", "silent"]
    retry_after: int | None = 1


class SendAction(_Model):
    from_: str = Field(alias="from")
    to: str
    transport: Literal["udp", "tcp", "tls"] = "tls"
    data: str = Field(
        description="the message; {var} is replaced by captured variables; LF becomes CRLF"
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WaitStep(_Model):
    wait: float = Field(gt=0, description="virtual seconds")


class MarkStep(_Model):
    mark: str


class CallStep(_Model):
    call: CallAction


class AnswerStep(_Model):
    answer: WhoAction


class DeclineStep(_Model):
    decline: WhoAction


class RejectStep(_Model):
    reject: RejectAction


class HoldStep(_Model):
    hold: WhoAction


class ResumeStep(_Model):
    resume: WhoAction


class HangUpStep(_Model):
    hang_up: WhoAction


class TransferStep(_Model):
    transfer: TransferAction


class AddParticipantStep(_Model):
    add_participant: TransferAction


class EscalateStep(_Model):
    escalate: WhoAction


class SetPresenceStep(_Model):
    presence: PresenceAction


class ForwardingStep(_Model):
    forwarding: ForwardingAction


class ApiAuth(_Model):
    """Whose bearer token an ``api`` step sends (one of the keys, or none: no token)."""

    agent: str | None = Field(
        None,
        description="sign this user (actor or UPN) in with the contact center's application "
        "(OAuth2 password grant) and use the delegated token",
    )
    app: str | None = Field(
        None,
        description="a tenant id of the topology: the contact center application's own token "
        "in it (client credentials)",
    )
    token: str | None = Field(None, description="this token ({var} substituted)")


class ApiAction(_Model):
    """One HTTP request to the Graph-shaped presence API, in process, recorded as an exchange.

    In ``path`` and in the bodies, ``{user:UPN}`` (or ``{user:actor}``) is the user's Graph id,
    ``{tenant:id}`` a tenant's GUID, and ``{var}`` a captured variable.  The exchange is judged
    afterwards with ``check: {condition: {api: {name: ...}}}``.
    """

    method: Literal["GET", "POST", "PATCH", "DELETE"] = "GET"
    path: str = Field(description="e.g. /v1.0/users/{user:alice}/presence")
    as_: str | None = Field(None, alias="as", description="name of the exchange for checks")
    auth: ApiAuth | None = None
    json_body: Any = Field(None, alias="json", description="a JSON request body")
    form: dict[str, str] | None = Field(None, description="a form request body")
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="variable -> dotted path into the response JSON (e.g. access_token, "
        "value.0.availability)",
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EscalateToSmeAction(_Model):
    """An agent asks the contact center for a subject-matter expert (presence-driven)."""

    agent: str = Field(description="the agent (actor or UPN) whose caller is escalated")
    mode: Literal["blind", "consult", "conference"] | None = Field(
        None, description="default: the customer's escalation_mode"
    )
    fallback: Literal["queue", "voicemail"] | None = Field(
        None, description="no SME free: default the customer's sme_fallback"
    )
    as_: str | None = Field(
        None,
        alias="as",
        description="remember the instant of the request in this variable (for since/elapsed)",
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AgentAction(_Model):
    agent: str = Field(description="an agent of the contact center (actor or UPN)")


class ApiStep(_Model):
    api: ApiAction


class EscalateToSmeStep(_Model):
    escalate_to_sme: EscalateToSmeAction


class CompleteTransferStep(_Model):
    complete_transfer: AgentAction


class SignInStep(_Model):
    sign_in: AgentAction


class SignOutStep(_Model):
    sign_out: AgentAction


class PartitionStep(_Model):
    partition: LinkAction


class HealStep(_Model):
    heal: LinkAction


class ProxyModeStep(_Model):
    proxy_mode: ProxyAction


class SendStep(_Model):
    send: SendAction


class ExpectWrap(_Model):
    expect: ExpectStep


class ExpectNoneWrap(_Model):
    expect_none: ExpectNoneStep


class CheckWrap(_Model):
    check: CheckStep


_STEP_MODELS: dict[str, type[_Model]] = {
    "wait": WaitStep,
    "mark": MarkStep,
    "call": CallStep,
    "answer": AnswerStep,
    "decline": DeclineStep,
    "reject": RejectStep,
    "hold": HoldStep,
    "resume": ResumeStep,
    "hang_up": HangUpStep,
    "transfer": TransferStep,
    "add_participant": AddParticipantStep,
    "escalate": EscalateStep,
    "presence": SetPresenceStep,
    "forwarding": ForwardingStep,
    "api": ApiStep,
    "escalate_to_sme": EscalateToSmeStep,
    "complete_transfer": CompleteTransferStep,
    "sign_in": SignInStep,
    "sign_out": SignOutStep,
    "partition": PartitionStep,
    "heal": HealStep,
    "proxy_mode": ProxyModeStep,
    "send": SendStep,
    "expect": ExpectWrap,
    "expect_none": ExpectNoneWrap,
    "check": CheckWrap,
}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in _STEP_MODELS else None
    if isinstance(value, BaseModel):
        for name, model in _STEP_MODELS.items():
            if type(value) is model:
                return name
    return None


Step = Annotated[
    Annotated[WaitStep, Tag("wait")]
    | Annotated[MarkStep, Tag("mark")]
    | Annotated[CallStep, Tag("call")]
    | Annotated[AnswerStep, Tag("answer")]
    | Annotated[DeclineStep, Tag("decline")]
    | Annotated[RejectStep, Tag("reject")]
    | Annotated[HoldStep, Tag("hold")]
    | Annotated[ResumeStep, Tag("resume")]
    | Annotated[HangUpStep, Tag("hang_up")]
    | Annotated[TransferStep, Tag("transfer")]
    | Annotated[AddParticipantStep, Tag("add_participant")]
    | Annotated[EscalateStep, Tag("escalate")]
    | Annotated[SetPresenceStep, Tag("presence")]
    | Annotated[ForwardingStep, Tag("forwarding")]
    | Annotated[ApiStep, Tag("api")]
    | Annotated[EscalateToSmeStep, Tag("escalate_to_sme")]
    | Annotated[CompleteTransferStep, Tag("complete_transfer")]
    | Annotated[SignInStep, Tag("sign_in")]
    | Annotated[SignOutStep, Tag("sign_out")]
    | Annotated[PartitionStep, Tag("partition")]
    | Annotated[HealStep, Tag("heal")]
    | Annotated[ProxyModeStep, Tag("proxy_mode")]
    | Annotated[SendStep, Tag("send")]
    | Annotated[ExpectWrap, Tag("expect")]
    | Annotated[ExpectNoneWrap, Tag("expect_none")]
    | Annotated[CheckWrap, Tag("check")],
    Discriminator(
        _step_kind,
        custom_error_type="unknown_step",
        custom_error_message="a step is a mapping with exactly one key, one of: "
        + ", ".join(_STEP_MODELS),
    ),
]


class Scenario(_Model):
    """One scenario file."""

    kind: Literal["scenario"] = "scenario"
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    requirements: list[str] = Field(
        default_factory=list, description="the rules this scenario covers"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Microsoft-side settings for this scenario"
    )
    sbc_settings: dict[str, Any] = Field(
        default_factory=dict, description="reference-SBC settings for this scenario"
    )
    ccaas_settings: dict[str, Any] = Field(
        default_factory=dict, description="reference contact-center settings for this scenario"
    )
    presence_api: dict[str, Any] = Field(
        default_factory=dict,
        description="presence API settings for this scenario (rate_limit_requests ...)",
    )
    warmup: float = Field(
        65.0, ge=0, description="virtual seconds before the first step (OPTIONS exchange)"
    )
    actors: dict[str, Actor] = Field(default_factory=dict)
    steps: list[Step]

    def checks(self) -> list[tuple[str, str]]:
        """(id, requirement) of every judgement, in order."""
        out: list[tuple[str, str]] = []
        for step in self.steps:
            if isinstance(step, ExpectWrap):
                out.append((step.expect.id, step.expect.requirement))
            elif isinstance(step, ExpectNoneWrap):
                out.append((step.expect_none.id, step.expect_none.requirement))
            elif isinstance(step, CheckWrap):
                out.append((step.check.id, step.check.requirement))
        return out
