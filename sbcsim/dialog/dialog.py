"""One dialog's state (RFC 3261 §12) and the requests built inside it.

A :class:`Dialog` is small on purpose: the identifiers, the two URIs, the CSeq counters, the
remote target and the route set.  No message is kept here, so a confirmed dialog costs a few
hundred bytes however long the call lasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sbcsim.dialog.events import DialogId
from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.headers import NameAddr
from sbcsim.sip.message import Request, Response, build_request
from sbcsim.sip.uri import SipUri, Uri

__all__ = [
    "Dialog",
    "DialogState",
    "dialog_as_uac",
    "dialog_as_uas",
    "route_set_uac",
    "route_set_uas",
]

DialogState = Literal["early", "confirmed"]

# URI parameters that may not appear in a Request-URI (RFC 3261 §19.1.1, table 1).
_NOT_IN_REQUEST_URI = ("method", "ttl")


@dataclass(slots=True, eq=False)
class Dialog:
    """The state §12.1 lists, from this UA's point of view.

    ``local_uri``/``remote_uri`` are the From/To values of requests we send, tags included.
    ``remote_seq`` is ``None`` until the peer sends its first request in the dialog.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: tuple[NameAddr, ...]
    local_seq: int
    remote_seq: int | None
    secure: bool
    state: DialogState = "early"
    #: highest RSeq accepted on this early dialog (caller side, RFC 3262 §4)
    last_rseq: int | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def key(self) -> tuple[str, str, str]:
        """The look-up key a UA indexes its dialogs by."""
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_seq(self) -> int:
        """Take the next local CSeq number (§12.2.1.1: one more than the last)."""
        self.local_seq += 1
        return self.local_seq

    def refresh_target(self, message: Request | Response) -> None:
        """A target refresh (§12.2: re-INVITE, UPDATE and their 2xx) replaces the remote target
        with the message's Contact, when it has one."""
        contacts = message.contact
        if contacts and contacts[0].uri is not None and not contacts[0].star:
            self.remote_target = contacts[0].uri

    def next_hop_uri(self) -> Uri:
        """Where a request in this dialog goes first: the top route, else the remote target."""
        if self.route_set and self.route_set[0].uri is not None:
            return self.route_set[0].uri
        return self.remote_target

    def request(
        self,
        method: str,
        *,
        via: str,
        cseq: int,
        contact: NameAddr | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A request within the dialog (§12.2.1.1), loose or strict routing alike."""
        uri: Uri = self.remote_target
        route: list[NameAddr] = list(self.route_set)
        if route and isinstance(route[0].uri, SipUri) and not route[0].uri.has_param("lr"):
            # Strict routing: the first route becomes the Request-URI and the remote target
            # goes to the end of the Route header.
            first = route.pop(0).uri
            assert isinstance(first, SipUri)
            uri = first.without_params(*_NOT_IN_REQUEST_URI).replace(headers=())
            route.append(NameAddr(self.remote_target))
        return build_request(
            method,
            uri,
            from_=self.local_uri,
            to=self.remote_uri,
            call_id=self.call_id,
            cseq=cseq,
            via=via,
            contact=contact,
            route=route,
            headers=headers,
            body=body,
            content_type=content_type,
        )


def route_set_uac(response: Response) -> tuple[NameAddr, ...]:
    """The caller's route set: the response's Record-Route in reverse order (§12.1.2)."""
    return tuple(reversed(response.record_route))


def route_set_uas(request: Request) -> tuple[NameAddr, ...]:
    """The callee's route set: the request's Record-Route in order (§12.1.1)."""
    return tuple(request.record_route)


def _remote_target(message: Request | Response, fallback: Uri | None = None) -> Uri:
    contacts = message.contact
    if not contacts or contacts[0].uri is None or contacts[0].star:
        if fallback is not None:
            return fallback
        raise RemoteProtocolError("a dialog-creating message needs a Contact", 400)
    return contacts[0].uri


def _secure(request: Request) -> bool:
    return isinstance(request.uri, SipUri) and request.uri.secure


def dialog_as_uac(request: Request, response: Response, state: DialogState) -> Dialog:
    """The dialog a 1xx-with-tag or 2xx to our ``request`` creates (§12.1.2)."""
    remote_tag = response.to.tag or ""
    local_tag = request.from_.tag or ""
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_uri=request.from_,
        remote_uri=response.to,
        # A 1xx without Contact (seen in the wild) still makes an early dialog; its target is
        # the Request-URI until a later response names one.
        remote_target=_remote_target(response, request.uri if state == "early" else None),
        route_set=route_set_uac(response),
        local_seq=request.cseq.seq,
        remote_seq=None,
        secure=_secure(request),
        state=state,
    )


def dialog_as_uas(request: Request, local_tag: str, state: DialogState) -> Dialog:
    """The dialog our response with ``local_tag`` to ``request`` creates (§12.1.1)."""
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_.tag or "",
        local_uri=request.to.with_tag(local_tag),
        remote_uri=request.from_,
        remote_target=_remote_target(request),
        route_set=route_set_uas(request),
        local_seq=0,
        remote_seq=request.cseq.seq,
        secure=_secure(request),
        state=state,
    )
