"""The transaction layer: matching, timers and the transport rules around the four machines.

:class:`TransactionLayer` is sans-I/O.  The node pushes in what happened — a message from the
wire (:meth:`~TransactionLayer.receive`), a request or response from the TU, a transport failure,
the time (:meth:`~TransactionLayer.handle_timer`) — and pulls out what to put on the wire
(:meth:`~TransactionLayer.messages_to_send`), what the TU must act on
(:meth:`~TransactionLayer.next_events`) and when to call again
(:meth:`~TransactionLayer.get_timer`).  Which state follows which is decided by the tables in
:mod:`sbcsim.transaction.machines`; this module matches messages to transactions and carries out
the actions the rows name.

What lives here rather than in the tables, and why:

* **Matching** (RFC 3261 §17.1.3, §17.2.3).  A response belongs to the client transaction with the
  same top-Via branch and CSeq method.  A request belongs to the server transaction with the same
  branch, sent-by and method (ACK counts as INVITE); a request whose branch lacks the ``z9hG4bK``
  cookie — or is the bare cookie, RFC 4475 §3.2.1 — is matched the RFC 2543 way, by Request-URI,
  From tag, Call-ID, CSeq number and top Via (plus the To tag: the request's for non-INVITE
  methods, the response's for an ACK).
* **CANCEL** (§9.2) gets a server transaction of its own.  When it matches an INVITE server
  transaction still in Proceeding, the TU gets ``RequestReceived(cancels=<INVITE key>)`` and
  answers both (200 to the CANCEL, 487 to the INVITE).  When the INVITE already has a final
  response, the layer answers the CANCEL 200 itself and leaves the INVITE alone; when nothing
  matches it answers 481.  In both cases the TU hears nothing of that CANCEL.  Only INVITE
  transactions can be cancelled this way (§9.1 discourages cancelling anything else).
* **Via stamping** (§18.2.1, RFC 3581 §4): a received request's top Via gets ``received=`` when
  its sent-by host is not the source address (always, when ``rport`` is asked for), and an empty
  ``rport`` is filled with the source port.
* **Response routing** (§18.2.2, RFC 3581 §4): over TCP/TLS a response goes back on the
  connection its request came in on, with the source address and the sent-by port (default 5060,
  5061 for TLS) as the fallback should that connection be gone; over UDP it goes to the source
  address, on the source port when ``rport`` was asked for, else the sent-by port.  ``maddr`` is
  not honoured (deprecated by RFC 3261 itself).
* **Timers**: one heap for the whole layer with entries ``(deadline, seq, key, timer)``;
  stopping a timer only forgets its ``seq``, and an entry whose ``seq`` is no longer current is
  dropped when it reaches the top (lazy cancellation).  The heap is compacted when stale entries
  outnumber live ones.  A zero-length timer (D, I, J, K over a reliable transport) fires at once.
* **2xx for INVITE** are never retransmitted here (RFC 6026): the dialog layer does it through
  :meth:`TransactionLayer.send_response` while the server transaction sits in Accepted.  An ACK
  for a 2xx normally matches no transaction (its branch is new) and reaches the TU as
  :class:`AckReceived`, as does one matched in Accepted.
* An ACK the TU sends (for a 2xx) has no transaction: :meth:`TransactionLayer.send_request` puts
  it on the wire once and forgets it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from heapq import heapify, heappop, heappush
from typing import cast

from sbcsim.errors import LocalProtocolError, RemoteProtocolError, TransportError
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.sip.headers import Via, split_commas
from sbcsim.sip.message import Request, Response, make_response
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
from sbcsim.transaction.machines import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    TU_INPUTS,
    Action,
    Input,
    Machine,
    State,
)
from sbcsim.transaction.timers import TimerConfig

__all__ = ["DEFAULT_TIMERS", "TransactionLayer", "make_cancel", "make_non2xx_ack"]

DEFAULT_TIMERS = TimerConfig()

MAGIC_COOKIE = "z9hG4bK"
#: Branch-field prefix of keys built the RFC 2543 way; ``;`` cannot occur in a real branch.
_RFC2543_PREFIX = "rfc2543;"
#: Heaps smaller than this are never compacted (not worth the pass).
_COMPACT_MIN = 1024

_Msg = Request | Response | None
_Handler = Callable[["_Transaction"], None]


def _sent_by(via: Via) -> str:
    host = via.host.lower()
    return host if via.port is None else f"{host}:{via.port}"


def _default_port(via_transport: str) -> int:
    return 5061 if via_transport.upper() == "TLS" else 5060


def _first_via_value(request: Request) -> str:
    value = request.headers.get("via")
    if value is None:
        raise LocalProtocolError(f"{request.method} has no Via header")
    return split_commas(value)[0]


def _required(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if value is None:
        raise LocalProtocolError(f"{request.method} has no {name} header")
    return value


def make_cancel(invite: Request, *, headers: Sequence[tuple[str, str]] = ()) -> Request:
    """The CANCEL for ``invite`` (RFC 3261 §9.1).

    Same Request-URI, Call-ID, To, From and CSeq number (method CANCEL), a single Via equal to the
    INVITE's top Via (so it reaches the same server transaction's neighbour, branch included), and
    the INVITE's Route header fields.  ``headers`` are appended (e.g. a ``Reason``).
    """
    if invite.method != "INVITE":
        raise LocalProtocolError(f"only an INVITE is cancelled, not a {invite.method}")
    fields: list[tuple[str, str]] = [("Via", _first_via_value(invite))]
    fields += [(f.name, f.value) for f in invite.headers if f.key == "route"]
    fields += [
        ("Max-Forwards", "70"),
        ("From", _required(invite, "from")),
        ("To", _required(invite, "to")),
        ("Call-ID", _required(invite, "call-id")),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    fields += list(headers)
    return Request("CANCEL", invite.uri, fields)


def make_non2xx_ack(invite: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 final (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From and CSeq number of the INVITE (method ACK), the To of the response
    (its tag names the server's answer), a single Via equal to the INVITE's top Via (same branch:
    the server transaction must match it) and the INVITE's Route header fields.
    """
    to = response.headers.get("to")
    if to is None:
        raise LocalProtocolError("the response to acknowledge has no To header")
    fields: list[tuple[str, str]] = [("Via", _first_via_value(invite))]
    fields += [(f.name, f.value) for f in invite.headers if f.key == "route"]
    fields += [
        ("Max-Forwards", "70"),
        ("From", _required(invite, "from")),
        ("To", to),
        ("Call-ID", _required(invite, "call-id")),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return Request("ACK", invite.uri, fields)


def _local_tag(request: Request, key: TransactionKey) -> str:
    """A To tag for a response the layer makes on its own (481 / 200 to a CANCEL).

    Derived from the request, so the same CANCEL always gets the same tag and the core stays
    free of randomness."""
    seed = f"{request.call_id};{key.branch};{key.sent_by}".encode("utf-8", "surrogateescape")
    return "t" + hashlib.blake2s(seed, digest_size=6).hexdigest()


class _Transaction:
    """One live transaction: the machine's state plus what its actions need."""

    __slots__ = (
        "ack_out",
        "cancel_key",
        "cancels",
        "connection_id",
        "error_remotes",
        "fire_now",
        "interval",
        "key",
        "last_out",
        "machine",
        "out",
        "peer",
        "pending_cancel",
        "quiet",
        "reliable",
        "remote",
        "request",
        "sent",
        "server_name",
        "state",
        "timers",
        "transport",
    )

    def __init__(
        self,
        key: TransactionKey,
        machine: Machine,
        request: Request,
        remote: Address,
        transport: TransportName,
        connection_id: int | None,
    ) -> None:
        self.key = key
        self.machine = machine
        self.state = State.INITIAL
        self.request = request
        self.remote = remote  # where our messages go
        self.transport: TransportName = transport
        self.connection_id = connection_id
        self.reliable = transport != "udp"
        self.server_name: str | None = None
        self.peer: PeerInfo | None = None  # server: where the request came from
        self.error_remotes: tuple[Address, ...] = (remote,)
        self.sent = False  # something went on the wire (transport errors concern us)
        self.timers: dict[Input, int] = {}  # running timer -> seq of its current heap entry
        self.interval = 0.0  # current retransmission interval (A, E or G)
        self.fire_now: Input | None = None  # a zero-length timer started by the current row
        self.out: Outgoing | None = None  # client: the request, ready to (re)send
        self.ack_out: Outgoing | None = None  # INVITE client: the ACK for a non-2xx final
        self.last_out: Outgoing | None = None  # server: the last response sent
        self.quiet = False  # the TU never hears of it (a CANCEL the layer answered itself)
        self.cancels: TransactionKey | None = None  # CANCEL server: the INVITE it targets
        self.pending_cancel: tuple[tuple[str, str], ...] | None = None  # INVITE client, §9.1
        self.cancel_key: TransactionKey | None = None  # INVITE client: its CANCEL, once asked


class TransactionLayer:
    """Every client and server transaction of one SIP stack (RFC 3261 §17, RFC 6026).

    All methods take ``now`` (seconds, from the node's clock) and never block; outputs are drained
    with :meth:`messages_to_send` and :meth:`next_events`.  TU misuse raises
    :class:`~sbcsim.errors.LocalProtocolError`; a received message too broken to match raises
    :class:`~sbcsim.errors.RemoteProtocolError` (``status_hint`` None for a response).
    """

    __slots__ = (
        "_client_index",
        "_error",
        "_events",
        "_handlers",
        "_heap",
        "_inp",
        "_live_timers",
        "_msg",
        "_now",
        "_outgoing",
        "_peer",
        "_seq",
        "_txs",
        "timers",
    )

    def __init__(self, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._txs: dict[TransactionKey, _Transaction] = {}
        self._client_index: dict[tuple[str, str], _Transaction] = {}  # (branch, method)
        self._heap: list[tuple[float, int, TransactionKey, Input]] = []
        self._seq = 0
        self._live_timers = 0
        self._outgoing: list[Outgoing] = []
        self._events: list[TransactionEvent] = []
        self._handlers: list[_Handler] = [getattr(self, "_do_" + a.name.lower()) for a in Action]
        # the context of the input being run (see _input)
        self._now = 0.0
        self._inp = Input.SEND_REQUEST
        self._msg: _Msg = None
        self._peer: PeerInfo | None = None
        self._error: TransportError | None = None

    # ------------------------------------------------------------------------------------------
    # outputs
    # ------------------------------------------------------------------------------------------
    def messages_to_send(self) -> list[Outgoing]:
        """Everything to put on the wire since the last call, in order."""
        out = self._outgoing
        self._outgoing = []
        return out

    def next_events(self) -> list[TransactionEvent]:
        """Everything the TU must hear of since the last call, in order."""
        events = self._events
        self._events = []
        return events

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` has work, or ``None``."""
        heap = self._heap
        txs = self._txs
        while heap:
            _, seq, key, timer = heap[0]
            tx = txs.get(key)
            if tx is not None and tx.timers.get(timer) == seq:
                return heap[0][0]
            heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (in deadline order, ties in the order started)."""
        heap = self._heap
        txs = self._txs
        while heap and heap[0][0] <= now:
            _, seq, key, timer = heappop(heap)
            tx = txs.get(key)
            if tx is None or tx.timers.get(timer) != seq:
                continue
            del tx.timers[timer]
            self._live_timers -= 1
            if timer is Input.TIMER_B and tx.state is State.PROCEEDING:
                self._cancel_expired(tx)  # the deadline _arm_cancel_timeout set
                continue
            self._input(tx, timer, now, None, None, None)

    def state_of(self, key: TransactionKey) -> State | None:
        """The state of a live transaction; ``None`` once it is terminated and forgotten."""
        tx = self._txs.get(key)
        return None if tx is None else tx.state

    def __len__(self) -> int:
        return len(self._txs)

    # ------------------------------------------------------------------------------------------
    # inputs from the TU
    # ------------------------------------------------------------------------------------------
    def send_request(
        self,
        request: Request,
        remote: Address,
        transport: TransportName,
        now: float,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
    ) -> TransactionKey:
        """Start a client transaction for ``request`` (whose top Via already has its branch).

        An ACK starts none: it is sent once and forgotten (an ACK for a 2xx is the TU's own,
        §17.1.1.3); its would-be key is still returned."""
        method = request.method
        try:
            via = request.top_via
            cseq_method = request.cseq.method
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot send this {method}: {exc.msg}") from None
        branch = via.branch
        if not branch:
            raise LocalProtocolError(f"the top Via of the {method} has no branch")
        if cseq_method != method:
            raise LocalProtocolError(f"CSeq method {cseq_method} does not match {method}")
        key = TransactionKey(branch, _sent_by(via), method, True)
        out = Outgoing(request, remote, transport, connection_id, server_name)
        if method == "ACK":
            self._outgoing.append(out)
            return key
        index_key = (branch, method)
        if index_key in self._client_index:
            raise LocalProtocolError(f"a {method} client transaction with branch {branch} exists")
        machine = INVITE_CLIENT if method == "INVITE" else NON_INVITE_CLIENT
        tx = _Transaction(key, machine, request, remote, transport, connection_id)
        tx.server_name = server_name
        tx.out = out
        self._txs[key] = tx
        self._client_index[index_key] = tx
        self._input(tx, Input.SEND_REQUEST, now, None, None, None)
        if method == "CANCEL":
            self._arm_cancel_timeout(branch, key)
        return key

    def send_response(self, key: TransactionKey, response: Response, now: float) -> None:
        """Send ``response`` through the server transaction ``key``.

        Raises :class:`LocalProtocolError` when the transaction is unknown (never existed, or
        terminated) or its state forbids this response (a 1xx after the final, a second final
        ...).  In Accepted, a 2xx is the dialog layer's retransmission and is sent as is."""
        tx = self._txs.get(key)
        if tx is None or key.client:
            raise LocalProtocolError(f"no live server transaction {key}")
        status = response.status
        if status < 100 or status > 699:
            raise LocalProtocolError(f"status {status} is not a SIP status code")
        inp = Input.TU_1XX if status < 200 else Input.TU_2XX if status < 300 else Input.TU_300_699
        self._input(tx, inp, now, response, None, None)

    def cancel(
        self, key: TransactionKey, now: float, *, headers: Sequence[tuple[str, str]] = ()
    ) -> TransactionKey | None:
        """Cancel our INVITE ``key`` (RFC 3261 §9.1); returns the CANCEL's transaction key.

        Before any provisional response the CANCEL waits and goes out with the first 1xx (§9.1:
        it "MUST NOT be sent" earlier); it is dropped if a final response comes first.  Returns
        ``None`` — and sends nothing — when the INVITE already has a final response or its
        transaction is over.  Asking twice returns the same key and sends one CANCEL."""
        tx = self._txs.get(key)
        if tx is None:
            return None
        if tx.machine is not INVITE_CLIENT:
            raise LocalProtocolError(f"only an INVITE client transaction is cancelled, not {key}")
        if tx.cancel_key is not None:
            return tx.cancel_key
        if tx.state is State.CALLING:
            tx.pending_cancel = tuple(headers)
        elif tx.state is State.PROCEEDING:
            self._send_cancel(tx, tuple(headers), now)
        else:
            return None
        tx.cancel_key = TransactionKey(key.branch, key.sent_by, "CANCEL", True)
        return tx.cancel_key

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError, now: float
    ) -> None:
        """The transport could not reach ``remote``: every transaction whose messages went there
        over ``transport`` gets a transport error (§17.1.4, §17.2.4)."""
        hit = [
            tx
            for tx in self._txs.values()
            if tx.sent and tx.transport == transport and remote in tx.error_remotes
        ]
        for tx in hit:
            self._input(tx, Input.TRANSPORT_ERROR, now, None, None, exc)

    # ------------------------------------------------------------------------------------------
    # inputs from the network
    # ------------------------------------------------------------------------------------------
    def receive(self, message: Request | Response, peer: PeerInfo, now: float) -> None:
        """A message from the wire."""
        if isinstance(message, Response):
            self._receive_response(message, peer, now)
        else:
            self._receive_request(message, peer, now)

    def _receive_response(self, response: Response, peer: PeerInfo, now: float) -> None:
        try:
            branch = response.top_via.branch
            method = response.cseq.method
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(exc.msg, None) from None
        tx = self._client_index.get((branch, method)) if branch else None
        if tx is None:
            self._events.append(StrayResponse(response, peer))
            return
        status = response.status
        if status < 200:
            inp = Input.RECV_1XX
        elif status < 300:
            inp = Input.RECV_2XX
        else:
            inp = Input.RECV_300_699
        self._input(tx, inp, now, response, peer, None)

    def _receive_request(self, request: Request, peer: PeerInfo, now: float) -> None:
        method = request.method
        try:
            via = request.top_via
            branch = via.branch
            rfc3261 = branch is not None and len(branch) > 7 and branch.startswith(MAGIC_COOKIE)
            key_method = "INVITE" if method == "ACK" else method
            if rfc3261:
                key = TransactionKey(cast(str, branch), _sent_by(via), key_method, False)
            else:
                key = self._rfc2543_key(request, via, key_method)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"cannot match the {method}: {exc.msg}") from None
        tx = self._txs.get(key)
        if method == "ACK":
            if tx is not None and (rfc3261 or self._ack_matches_response(tx, request)):
                self._input(tx, Input.RECV_ACK, now, request, peer, None)
            else:
                self._stamp_via(request, via, peer)
                self._events.append(AckReceived(request, peer))
            return
        if tx is not None:
            self._input(tx, Input.RECV_REQUEST_RETRANS, now, request, peer, None)
            return
        self._new_server_transaction(request, via, key, peer, now)

    def _new_server_transaction(
        self, request: Request, via: Via, key: TransactionKey, peer: PeerInfo, now: float
    ) -> None:
        transport = peer.transport
        source_host, source_port = peer.remote
        if transport == "udp":
            port = source_port if via.has_rport else (via.port or _default_port(via.transport))
        else:
            port = via.port or _default_port(via.transport)
        dest = (source_host, port)
        method = request.method
        machine = INVITE_SERVER if method == "INVITE" else NON_INVITE_SERVER
        tx = _Transaction(key, machine, request, dest, transport, peer.connection_id)
        tx.peer = peer
        tx.error_remotes = (dest, peer.remote) if dest != peer.remote else (dest,)
        self._stamp_via(request, via, peer)
        auto: Response | None = None
        if method == "CANCEL":
            target_key = TransactionKey(key.branch, key.sent_by, "INVITE", False)
            target = self._txs.get(target_key)
            if target is None:
                auto = make_response(request, 481, to_tag=_local_tag(request, key))
            elif target.state is State.PROCEEDING:
                tx.cancels = target_key
            else:
                last = target.last_out.message if target.last_out is not None else None
                tag = last.to.tag if last is not None else None
                auto = make_response(request, 200, to_tag=tag or _local_tag(request, key))
            tx.quiet = auto is not None
        self._txs[key] = tx
        self._input(tx, Input.RECV_REQUEST, now, request, peer, None)
        if auto is not None:
            inp = Input.TU_2XX if auto.status < 300 else Input.TU_300_699
            self._input(tx, inp, now, auto, None, None)

    @staticmethod
    def _rfc2543_key(request: Request, via: Via, key_method: str) -> TransactionKey:
        """§17.2.3's matching for requests without a usable branch.

        The INVITE's key leaves the To tag out so that its ACK (To tag of our response) and its
        CANCEL find it; the ACK's To tag is checked separately."""
        to_tag = ""
        if key_method not in ("INVITE", "CANCEL"):
            to_tag = request.to.tag or ""
        ident = (
            f"{_RFC2543_PREFIX}{request.uri};{request.from_.tag or ''};{request.call_id};"
            f"{request.cseq.seq};{via};{to_tag}"
        )
        return TransactionKey(ident, _sent_by(via), key_method, False)

    @staticmethod
    def _ack_matches_response(tx: _Transaction, ack: Request) -> bool:
        """RFC 2543 ACK matching: the To tag must be that of the response we sent."""
        if tx.last_out is None:
            return False
        return ack.to.tag == tx.last_out.message.to.tag

    @staticmethod
    def _stamp_via(request: Request, via: Via, peer: PeerInfo) -> None:
        """§18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via of a received request."""
        source_host, source_port = peer.remote
        host = via.host[1:-1] if via.host.startswith("[") else via.host
        # RFC 3581 §4: with rport, received is added even when it equals the sent-by host
        if not via.has_rport and host.lower() == source_host.lower():
            return
        params: list[tuple[str, str | None]] = []
        placed = False
        for name, value in via.params:
            low = name.lower()
            if low == "received":
                if not placed:
                    params.append((name, source_host))
                    placed = True
                continue
            if low == "rport" and value is None:
                value = str(source_port)
            params.append((name, value))
        if not placed:
            params.append(("received", source_host))
        stamped = Via(via.transport, via.host, via.port, tuple(params), via.protocol)
        headers = request.headers
        name = next((f.name for f in headers if f.key == "via"), "Via")
        headers.remove_first_value("via")
        headers.prepend(name, str(stamped))

    # ------------------------------------------------------------------------------------------
    # the machine runner
    # ------------------------------------------------------------------------------------------
    def _input(
        self,
        tx: _Transaction,
        inp: Input,
        now: float,
        msg: _Msg,
        peer: PeerInfo | None,
        error: TransportError | None,
    ) -> None:
        """Take the row for ``(tx.state, inp)`` and run its actions, then the row of any
        zero-length timer one of them started.

        The actions read the input's context from ``self._now`` ... ``self._error`` (set here,
        rather than passed, to keep the handlers' signatures to ``(tx)``)."""
        transition = tx.machine.rows[tx.state].get(inp)
        if transition is None:
            if inp in TU_INPUTS:
                tx.machine.step(tx.state, inp)  # raises LocalProtocolError
            return
        handlers = self._handlers
        self._now = now
        while True:
            self._inp = inp
            self._msg = msg
            self._peer = peer
            self._error = error
            tx.state = transition.next_state
            for action in transition.actions:
                handlers[action](tx)
            fire = tx.fire_now
            if fire is None:
                return
            tx.fire_now = None
            inp, msg, peer, error = fire, None, None, None
            found = tx.machine.rows[tx.state].get(inp)
            if found is None:
                return
            transition = found

    # -- timers ----------------------------------------------------------------------------------
    def _start(self, tx: _Transaction, timer: Input, delay: float | None) -> None:
        if delay is None:
            return
        if delay <= 0:
            tx.fire_now = timer
            return
        seq = self._seq
        self._seq = seq + 1
        timers = tx.timers
        if timer not in timers:
            self._live_timers += 1
        timers[timer] = seq
        heap = self._heap
        heappush(heap, (self._now + delay, seq, tx.key, timer))
        if len(heap) > _COMPACT_MIN and len(heap) > 2 * self._live_timers:
            self._compact()

    def _stop(self, tx: _Transaction, timer: Input) -> None:
        if tx.timers.pop(timer, None) is not None:
            self._live_timers -= 1

    def _compact(self) -> None:
        """Drop stopped timers' entries (lazy cancellation leaves them in the heap)."""
        txs = self._txs
        live = []
        for entry in self._heap:
            tx = txs.get(entry[2])
            if tx is not None and tx.timers.get(entry[3]) == entry[1]:
                live.append(entry)
        heapify(live)
        self._heap = live

    def _arm_cancel_timeout(self, branch: str, cancel_key: TransactionKey) -> None:
        """§9.1: once a CANCEL for our INVITE is out — through :meth:`cancel`, or built by the TU
        and sent with :meth:`send_request` — an INVITE left without a final response for 64*T1
        is given up, else its transaction would sit in Proceeding for ever.  Timer B is idle in
        Proceeding, so it carries that deadline; :meth:`handle_timer` knows it by the state."""
        invite = self._client_index.get((branch, "INVITE"))
        if invite is None or invite.state is not State.PROCEEDING:
            return
        if Input.TIMER_B in invite.timers:
            return  # a second CANCEL: the first one's deadline stands
        if invite.cancel_key is None:
            invite.cancel_key = cancel_key
        self._start(invite, Input.TIMER_B, self.timers.timer_b(invite.reliable))

    def _cancel_expired(self, tx: _Transaction) -> None:
        """No final response 64*T1 after our CANCEL: the INVITE transaction ends (§9.1), and the
        TU hears it as a timeout (timer ``"cancel"``)."""
        self._events.append(TransactionTimedOut(tx.key, "cancel", tx.request))
        self._do_terminate(tx)

    def _send_cancel(
        self, tx: _Transaction, headers: tuple[tuple[str, str], ...], now: float
    ) -> None:
        cancel = make_cancel(tx.request, headers=headers)
        # send_request runs another transaction's rows: keep this input's context intact.
        saved = (self._now, self._inp, self._msg, self._peer, self._error)
        try:
            self.send_request(
                cancel,
                tx.remote,
                tx.transport,
                now,
                server_name=tx.server_name,
                connection_id=tx.connection_id,
            )
        finally:
            self._now, self._inp, self._msg, self._peer, self._error = saved

    # ------------------------------------------------------------------------------------------
    # actions: one method per Action member, found by name (``_do_<action>``)
    # ------------------------------------------------------------------------------------------
    def _do_send_request(self, tx: _Transaction) -> None:
        tx.sent = True
        self._outgoing.append(cast(Outgoing, tx.out))

    _do_retransmit_request = _do_send_request

    def _do_send_ack(self, tx: _Transaction) -> None:
        if tx.ack_out is None:
            ack = make_non2xx_ack(tx.request, cast(Response, self._msg))
            tx.ack_out = Outgoing(ack, tx.remote, tx.transport, tx.connection_id, tx.server_name)
        self._outgoing.append(tx.ack_out)

    def _do_send_pending_cancel(self, tx: _Transaction) -> None:
        headers = tx.pending_cancel
        if headers is not None:
            tx.pending_cancel = None
            self._send_cancel(tx, headers, self._now)

    def _send(self, tx: _Transaction, response: Response) -> None:
        out = Outgoing(response, tx.remote, tx.transport, tx.connection_id)
        tx.last_out = out
        tx.sent = True
        self._outgoing.append(out)

    def _do_send_response(self, tx: _Transaction) -> None:
        self._send(tx, cast(Response, self._msg))

    def _do_resend_response(self, tx: _Transaction) -> None:
        if tx.last_out is not None:
            self._outgoing.append(tx.last_out)

    def _do_send_trying(self, tx: _Transaction) -> None:
        self._send(tx, make_response(tx.request, 100))

    def _do_pass_request(self, tx: _Transaction) -> None:
        if not tx.quiet:
            peer = cast(PeerInfo, tx.peer)
            self._events.append(RequestReceived(tx.key, tx.request, peer, tx.cancels))

    def _do_pass_response(self, tx: _Transaction) -> None:
        response = cast(Response, self._msg)
        self._events.append(ResponseReceived(tx.key, response, cast(PeerInfo, self._peer)))

    def _do_pass_ack(self, tx: _Transaction) -> None:
        ack = cast(Request, self._msg)
        peer = cast(PeerInfo, self._peer)
        self._stamp_via(ack, ack.top_via, peer)
        self._events.append(AckReceived(ack, peer))

    def _do_report_timeout(self, tx: _Transaction) -> None:
        if not tx.quiet:
            self._events.append(TransactionTimedOut(tx.key, self._inp.timer_name, tx.request))

    def _do_report_transport_error(self, tx: _Transaction) -> None:
        if not tx.quiet:
            error = self._error or TransportError("transport error", address=tx.remote)
            self._events.append(TransportFailed(tx.key, error, tx.request))

    def _do_terminate(self, tx: _Transaction) -> None:
        key = tx.key
        if self._txs.get(key) is tx:
            del self._txs[key]
        if key.client:
            index_key = (key.branch, key.method)
            if self._client_index.get(index_key) is tx:
                del self._client_index[index_key]
        self._live_timers -= len(tx.timers)
        tx.timers.clear()
        tx.fire_now = None
        tx.pending_cancel = None
        if not tx.quiet:
            self._events.append(TransactionTerminated(key))

    # -- timer actions -----------------------------------------------------------------------------
    def _do_start_a(self, tx: _Transaction) -> None:
        self._start_retransmit(tx, Input.TIMER_A, self.timers.timer_a(tx.reliable))

    def _do_backoff_a(self, tx: _Transaction) -> None:
        tx.interval = self.timers.backoff(tx.interval, capped=False)
        self._start(tx, Input.TIMER_A, tx.interval)

    def _do_stop_a(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_A)

    def _do_start_b(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_B, self.timers.timer_b(tx.reliable))

    def _do_stop_b(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_B)

    def _do_start_d(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_D, self.timers.timer_d(tx.reliable))

    def _do_start_e(self, tx: _Transaction) -> None:
        self._start_retransmit(tx, Input.TIMER_E, self.timers.timer_e(tx.reliable))

    def _do_backoff_e(self, tx: _Transaction) -> None:
        tx.interval = self.timers.backoff(tx.interval, capped=True)
        self._start(tx, Input.TIMER_E, tx.interval)

    def _do_reset_e_t2(self, tx: _Transaction) -> None:
        tx.interval = self.timers.t2
        self._start(tx, Input.TIMER_E, tx.interval)

    def _do_stop_e(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_E)

    def _do_start_f(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_F, self.timers.timer_f(tx.reliable))

    def _do_stop_f(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_F)

    def _do_start_g(self, tx: _Transaction) -> None:
        self._start_retransmit(tx, Input.TIMER_G, self.timers.timer_g(tx.reliable))

    def _do_backoff_g(self, tx: _Transaction) -> None:
        tx.interval = self.timers.backoff(tx.interval, capped=True)
        self._start(tx, Input.TIMER_G, tx.interval)

    def _do_stop_g(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_G)

    def _do_start_h(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_H, self.timers.timer_h(tx.reliable))

    def _do_stop_h(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_H)

    def _do_start_i(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_I, self.timers.timer_i(tx.reliable))

    def _do_start_j(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_J, self.timers.timer_j(tx.reliable))

    def _do_start_k(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_K, self.timers.timer_k(tx.reliable))

    def _do_start_l(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_L, self.timers.timer_l(tx.reliable))

    def _do_start_m(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_M, self.timers.timer_m(tx.reliable))

    def _do_start_trying(self, tx: _Transaction) -> None:
        self._start(tx, Input.TIMER_TRYING, self.timers.trying)

    def _do_stop_trying(self, tx: _Transaction) -> None:
        self._stop(tx, Input.TIMER_TRYING)

    def _start_retransmit(self, tx: _Transaction, timer: Input, first: float | None) -> None:
        """A, E or G: remember the interval the next backoff doubles (not over TCP/TLS)."""
        if first is not None:
            tx.interval = first
            self._start(tx, timer, first)
