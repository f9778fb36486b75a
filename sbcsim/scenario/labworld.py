"""The embedded world of a scenario: a fresh :class:`~sbcsim.lab.Lab` with the reference SBC
(or one of its mutants), and the mapping of scenario actions, actors and probes onto it."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sbcsim.endpoints.ccaas import (
    CCAAS_MUTANTS,
    ReferenceCcaas,
    json_path,
    judge_exchanges,
    judge_retry_after,
)
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.mutants import MUTANTS
from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.endpoints.teams_users import tenant_guid
from sbcsim.errors import ConfigError, LocalProtocolError, ProtocolError
from sbcsim.lab import Lab
from sbcsim.net.base import Address, TransportLayer, TransportName
from sbcsim.net.names import name_matches
from sbcsim.scenario.engine import ScenarioError, StepImpossible, World
from sbcsim.scenario.matchers import match_entry, parse_entry, substitute
from sbcsim.scenario.models import MessagePattern, Scenario
from sbcsim.sip.message import Request, Response
from sbcsim.sip.uri import SipUri, parse_uri
from sbcsim.testplan.plan import LoadedPlan
from sbcsim.testplan.results import TraceEntry
from sbcsim.topology import Forwarding, Topology, load_topology

__all__ = ["LabWorld", "factory_for", "raw_message"]

PROXY_SHORT = {
    "sip": "sip.pstnhub.microsoft.com",
    "sip2": "sip2.pstnhub.microsoft.com",
    "sip3": "sip3.pstnhub.microsoft.com",
}


def _microsoft_settings(*layers: Mapping[str, Any]) -> MicrosoftSettings:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    known = {f.name for f in dataclasses.fields(MicrosoftSettings)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(
            f"unknown Microsoft setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return MicrosoftSettings(**merged)


class LabWorld:
    """A :class:`~sbcsim.scenario.engine.World` over a simulated Lab."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        topology: Topology,
        plan_settings: Mapping[str, Any],
        plan_sbc_settings: Mapping[str, Any],
        mutant: str | None,
    ) -> None:
        settings = _microsoft_settings(plan_settings, scenario.settings)
        sbc_settings = {**plan_sbc_settings, **scenario.sbc_settings}
        # a mutant name is either the SBC's or the contact center's (the names do not overlap)
        cc_mutant = mutant if mutant in CCAAS_MUTANTS else None
        sbc_mutant = None if cc_mutant is not None else mutant
        cc = topology.contact_center
        lab = Lab.build(
            topology,
            seed=seed,
            settings=settings,
            sbc_factory=ReferenceSbc.factory(mutant=sbc_mutant, **sbc_settings),
            ccaas_factory=(
                ReferenceCcaas.factory(mutant=cc_mutant, **scenario.ccaas_settings)
                if cc is not None and cc.emulated
                else None
            ),
            api_settings=dict(scenario.presence_api),
        )
        self._bind(scenario, topology, lab)

    def _bind(self, scenario: Scenario, topology: Topology, lab: Lab) -> None:
        """Set up the scenario's mapping onto ``lab`` (shared with the live world, whose ``lab``
        offers the same parties: phone, teams_user, proxy, presence, service)."""
        self.scenario = scenario
        self.lab = lab
        self.topology = topology
        self.calls: dict[str, Any] = {}
        self._trace: list[TraceEntry] = []
        sbc = topology.sbc
        self._sbc_hosts = {sbc.microsoft_side.address, sbc.pstn_side.address}
        self._proxy_hosts = {p.fqdn: p.address for p in topology.microsoft.proxies}
        for name, actor in scenario.actors.items():
            if actor.pstn is not None and topology.phone_by_number(actor.pstn) is None:
                raise ScenarioError(f"actor {name}: no PSTN phone {actor.pstn} in the topology")
            if actor.teams is not None and self._teams_user(actor.teams) is None:
                raise ScenarioError(f"actor {name}: no Teams user {actor.teams} in the topology")

    # -- World: time and trace ----------------------------------------------------------------
    def now(self) -> float:
        return self.lab.now()

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return self.lab.run_until(predicate, timeout)

    def run_for(self, seconds: float) -> None:
        self.lab.run_for(seconds)

    def warm_up(self, seconds: float) -> None:
        self.lab.run_for(seconds)

    def trace(self) -> list[TraceEntry]:
        capture = self.lab.net.capture
        trace = self._trace
        # The capture only grows, but a packet in flight may be marked dropped after later
        # ones were captured: refresh those entries, and build entries for new packets only.
        for i, entry in enumerate(trace):
            if entry.dropped != capture[i].dropped:
                trace[i] = self.lab.trace_entry(i)
        trace.extend(self.lab.trace_entry(i) for i in range(len(trace), len(capture)))
        return trace

    def close(self) -> None:
        sbc = self.lab.sbc
        if sbc is not None and hasattr(sbc, "stop"):
            sbc.stop()
        if isinstance(self.lab, Lab):
            self.lab.close()

    # -- actors ---------------------------------------------------------------------------------
    def _teams_user(self, who: str) -> Any:
        user = self.topology.user_by_upn(who) or self.topology.user_by_number(who)
        return user

    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool:
        host = address[0]
        lname = name.lower()
        if lname == "sbc":
            return host in self._sbc_hosts
        if lname in ("sbc.microsoft", "sbc.ms"):
            return host == self.topology.sbc.microsoft_side.address
        if lname == "sbc.pstn":
            return host == self.topology.sbc.pstn_side.address
        if lname == "microsoft":
            return host in self._proxy_hosts.values()
        if lname == "pstn":
            return host == self.topology.pstn.address
        if lname == "ccaas":
            cc = self.topology.contact_center
            return cc is not None and host == cc.address
        fqdn = PROXY_SHORT.get(lname, lname)
        if fqdn in self._proxy_hosts:
            return host == self._proxy_hosts[fqdn]
        actor = self.scenario.actors.get(name)
        if actor is not None:
            if actor.pstn is not None:
                return host == self.topology.pstn.address
            if actor.teams is not None:
                return host in self._proxy_hosts.values()
            if actor.proxy is not None:
                return host == self._proxy_hosts.get(PROXY_SHORT.get(actor.proxy, actor.proxy))
        raise ScenarioError(
            f"unknown actor {name!r} (use an actor of the scenario, sbc, microsoft, pstn, sip, sip2, sip3)"
        )

    def _number_of(self, who: str) -> str:
        actor = self.scenario.actors.get(who)
        if actor is not None:
            if actor.pstn is not None:
                return actor.pstn
            if actor.teams is not None:
                user = self._teams_user(actor.teams)
                if user is None or user.number is None:
                    raise ScenarioError(f"Teams user {actor.teams} has no number")
                return str(user.number)
        if who.startswith("+"):
            return who
        raise ScenarioError(f"{who!r} is neither an actor nor an E.164 number")

    def _side(self, who: str) -> tuple[str, Any]:
        actor = self.scenario.actors.get(who)
        if actor is None:
            raise ScenarioError(f"unknown actor {who!r}")
        if actor.pstn is not None:
            return "pstn", self.lab.phone(actor.pstn)
        if actor.teams is not None:
            user = self._teams_user(actor.teams)
            return "teams", self.lab.teams_user(user.upn)
        raise ScenarioError(f"actor {who!r} cannot act (it is a proxy)")

    def _host_of(self, who: str) -> str:
        lname = who.lower()
        if lname in ("sbc", "sbc.microsoft", "sbc.ms"):
            return self.topology.sbc.microsoft_side.address
        if lname == "sbc.pstn":
            return self.topology.sbc.pstn_side.address
        if lname == "pstn":
            return self.topology.pstn.address
        fqdn = PROXY_SHORT.get(lname, lname)
        if fqdn in self._proxy_hosts:
            return self._proxy_hosts[fqdn]
        actor = self.scenario.actors.get(who)
        if actor is not None and actor.proxy is not None:
            return self._proxy_hosts[PROXY_SHORT.get(actor.proxy, actor.proxy)]
        raise ScenarioError(f"{who!r} is not a network host of the lab")

    # -- actions ----------------------------------------------------------------------------------
    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        handler = getattr(self, f"_act_{kind}", None)
        if handler is None:
            raise ScenarioError(f"the embedded lab cannot perform {kind!r}")
        try:
            handler(args, variables)
        except (RuntimeError, LocalProtocolError) as exc:
            # a party refused the verb in its current state (no call to hang up, nothing
            # ringing to answer): what the SBC did made the step impossible
            raise StepImpossible(f"{kind}: {exc}") from exc

    def _act_call(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["from"])
        number = self._number_of(args["to"])
        call = party.call(number) if side == "pstn" else party.place_call(number)
        if "as" in args:
            self.calls[args["as"]] = call

    def _act_answer(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self._side(args["who"])[1].answer()

    def _act_decline(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["who"])
        if side == "teams":
            party.decline()
        else:
            party.reject(603)

    def _act_reject(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["who"])
        status = int(args.get("status", 486))
        if side == "pstn":
            party.reject(status)
        elif status == 486:
            party.reject_busy()
        elif status == 603:
            party.decline()
        else:
            raise ScenarioError(
                f"a Teams user rejects with 486 (busy) or 603 (decline), not {status}"
            )

    def _act_hold(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self._side(args["who"])[1].hold()

    def _act_resume(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self._side(args["who"])[1].resume()

    def _act_hang_up(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self._side(args["who"])[1].hang_up()

    def _act_transfer(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["who"])
        if side == "pstn":
            # the carrier completes an attended transfer of its own: the target phone sends
            # INVITE with Replaces for the caller's dialog (RFC 3891)
            if args.get("mode", "blind") != "consult":
                raise ScenarioError("a PSTN phone transfers consultatively (mode: consult)")
            target_side, target = self._side(args["to"])
            if target_side != "pstn":
                raise ScenarioError("a PSTN phone's call is taken over by another PSTN phone")
            target.take_over(party)
            return
        if side != "teams":
            raise ScenarioError("transfers are started by a Teams user or a PSTN phone")
        if args.get("mode", "blind") == "consult":
            party.consult_transfer()
        else:
            target = args["to"]
            actor = self.scenario.actors.get(target)
            if actor is not None and actor.teams is not None:
                party.transfer_to(self._teams_user(actor.teams).upn)
            else:
                party.transfer_to(self._number_of(target))

    def _act_add_participant(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["who"])
        if side != "teams":
            raise ScenarioError("participants are added by a Teams user")
        party.add_participant(self._number_of(args["to"]))

    def _act_escalate(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        side, party = self._side(args["who"])
        if side != "teams":
            raise ScenarioError("a call is escalated to a group call by a Teams user")
        party.escalate()

    def _act_forwarding(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        actor = self.scenario.actors.get(args["user"])
        user = self._teams_user(actor.teams if actor and actor.teams else args["user"])
        if user is None:
            raise ScenarioError(f"no Teams user {args['user']!r}")

        def target(name: str | None) -> str | None:
            if name is None or name == "voicemail":
                return name
            who = self.scenario.actors.get(name)
            if who is not None and who.teams is not None:
                return str(self._teams_user(who.teams).upn)
            if who is not None and who.pstn is not None:
                return who.pstn
            return name

        try:
            forwarding = Forwarding(
                immediate=target(args.get("immediate")),
                unanswered=target(args.get("unanswered")),
                unanswered_after_seconds=int(args.get("unanswered_after_seconds", 20)),
            )
        except ValueError as exc:
            raise ScenarioError(f"forwarding of {args['user']}: {exc}") from exc
        self.lab.teams_user(user.upn).set_forwarding(forwarding)

    def _act_presence(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        user = self._teams_user(args["user"])
        if user is None:
            actor = self.scenario.actors.get(args["user"])
            user = self._teams_user(actor.teams) if actor and actor.teams else None
        if user is None:
            raise ScenarioError(f"no Teams user {args['user']!r}")
        availability = args["availability"]
        self.lab.presence.set_client_presence(
            user.graph_id, self.now(), availability, args.get("activity") or availability
        )

    def _act_partition(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self.lab.net.partition(self._host_of(args["a"]), self._host_of(args["b"]))

    def _act_heal(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self.lab.net.heal(self._host_of(args["a"]), self._host_of(args["b"]))

    def _act_proxy_mode(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        fqdn = PROXY_SHORT.get(args["proxy"], args["proxy"])
        proxy = self.lab.proxy(fqdn)
        mode = args["mode"]
        if mode == "busy":
            proxy.force_response(503, retry_after=args.get("retry_after"))
        elif mode == "silent":
            proxy.go_silent()
        else:
            proxy.recover()

    def _act_send(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        """Raw bytes from a lab host (:func:`raw_message` builds them), over that host's own
        transport: a TLS connection to the target is reused or opened with SNI = the
        Request-URI's host name (else the target's name).  Whatever the target answers goes back
        to the sending host's stack, which drops responses it did not ask for."""
        transport: TransportName = args.get("transport", "tls")
        if transport not in ("udp", "tcp", "tls"):
            raise ScenarioError(f"send: unknown transport {transport!r}")
        data = raw_message(substitute(str(args["data"]), variables))
        layer = self._sending_layer(str(args["from"]), transport)
        remote, default_name = self._listener(str(args["to"]), transport)
        server_name = None
        if transport == "tls":
            server_name = _request_uri_host(data) or default_name
        layer.send(data, remote, transport, server_name=server_name)

    def _sending_layer(self, who: str, transport: str) -> TransportLayer:
        """The transport of the lab host ``who`` (sbc, sbc.pstn, pstn, sip, sip2, sip3)."""
        lname = who.lower()
        layer: TransportLayer | None = None
        if lname in ("sbc", "sbc.microsoft", "sbc.ms", "sbc.pstn"):
            # "sbc" is the side that speaks the transport: TLS toward Microsoft, else the PSTN
            pstn_side = lname == "sbc.pstn" or (lname == "sbc" and transport != "tls")
            node = getattr(self.lab.sbc, "pstn_node" if pstn_side else "ms_node", None)
            layer = getattr(node, "transport", None)
        elif lname == "pstn":
            layer = self.lab.pstn.node.transport
        else:
            fqdn = PROXY_SHORT.get(lname, lname)
            if fqdn in self.lab.proxies:
                layer = self.lab.proxy(fqdn).wire.inner
        if layer is None:
            raise ScenarioError(f"send: {who!r} is not a lab host that can send")
        return layer

    def _listener(self, who: str, transport: str) -> tuple[Address, str | None]:
        """Where ``who`` listens for ``transport``, and the name its certificate answers to."""
        lname = who.lower()
        sbc = self.topology.sbc
        if lname in ("sbc", "sbc.microsoft", "sbc.ms", "sbc.pstn"):
            sides = {
                "sbc": (sbc.microsoft_side, sbc.pstn_side),
                "sbc.pstn": (sbc.pstn_side,),
            }.get(lname, (sbc.microsoft_side,))
            for side in sides:
                if side.transport == transport:
                    return (side.address, side.port), self.topology.carrier.trunk_fqdn
        elif lname == "pstn":
            pstn = self.topology.pstn
            if pstn.transport == transport:
                return (pstn.address, pstn.port), None
        else:
            fqdn = PROXY_SHORT.get(lname, lname)
            for proxy in self.topology.microsoft.proxies:
                if proxy.fqdn == fqdn and transport == "tls":
                    return (proxy.address, proxy.port), proxy.fqdn
        raise ScenarioError(f"send: {who!r} does not listen on {transport}")

    # -- probes ---------------------------------------------------------------------------------
    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        if len(condition) != 1:
            raise ScenarioError(f"a check has exactly one condition, got {sorted(condition)}")
        name, arg = next(iter(condition.items()))
        if name in ("trunk_healthy", "trunk_demoted"):
            trunk = substitute(str(arg), variables)
            health = self.lab.service.trunk_health(trunk)
            if name == "trunk_healthy":
                return (
                    health.healthy,
                    f"trunk {trunk} healthy",
                    f"trunk {trunk}: {health.state}, last OPTIONS at {health.last_options}",
                )
            return (
                health.demoted,
                f"trunk {trunk} demoted",
                f"trunk {trunk}: demoted={health.demoted}, last OPTIONS at {health.last_options}",
            )
        if name == "presence":
            user = self._teams_user(arg["user"])
            if user is None:
                raise ScenarioError(f"no Teams user {arg['user']!r}")
            state = self.lab.presence.presence(user.graph_id, self.now())
            seen = str(state)
            want = arg["availability"]
            ok = seen.split("/")[0] == want
            return ok, f"{user.upn} is {want}", f"{user.upn} is {seen}"
        if name == "teams_user":
            return self._probe_teams_user(arg)
        if name == "sbc_active_calls":
            n = self.lab.sbc.active_calls
            return (
                n == int(arg),
                f"{arg} active call(s) on the SBC",
                f"{n} active call(s) on the SBC",
            )
        if name in (
            "microsoft_call",
            "trace_count",
            "microsoft_options",
            "microsoft_closed_connections",
        ):
            probe: Callable[[Any, Mapping[str, str]], tuple[bool, str, str]] = getattr(
                self, f"_probe_{name}"
            )
            return probe(arg, variables)
        if name in ("api", "api_retry_after", "ccaas_call", "ccaas_agent"):
            return self._probe_contact_center(name, arg, variables)
        raise ScenarioError(f"unknown check condition {name!r}")

    def _probe_teams_user(self, arg: Any) -> tuple[bool, str, str]:
        """``teams_user: {user, in_call: bool, alert: ringing|answered|cancelled|...}``: whether
        the user is in a call, and the state of the user's latest alert (ringing endpoint)."""
        if not isinstance(arg, Mapping) or "user" not in arg:
            raise ScenarioError("teams_user needs {user: ..., in_call: ..., alert: ...}")
        actor = self.scenario.actors.get(arg["user"])
        found = self._teams_user(actor.teams if actor and actor.teams else arg["user"])
        if found is None:
            raise ScenarioError(f"no Teams user {arg['user']!r}")
        agent = self.lab.teams_user(found.upn)
        wanted: list[str] = []
        seen: list[str] = []
        ok = True
        if "in_call" in arg:
            in_call = bool(agent.calls)
            wanted.append(f"in a call: {bool(arg['in_call'])}")
            seen.append(f"in a call: {in_call}")
            ok = ok and in_call == bool(arg["in_call"])
        if "alert" in arg:
            state = agent.alerts[-1].state if agent.alerts else "never alerted"
            wanted.append(f"latest alert {arg['alert']}")
            seen.append(f"latest alert {state}")
            ok = ok and state == arg["alert"]
        if not wanted:
            raise ScenarioError("teams_user needs in_call and/or alert")
        return ok, f"{found.upn}: " + ", ".join(wanted), f"{found.upn}: " + ", ".join(seen)

    # -- probes on Microsoft's records and on the whole trace -----------------------------------
    def _probe_microsoft_call(
        self, arg: Any, variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        """``microsoft_call: {call: <Call-ID variable>, tenant, matched_by, target, final_status,
        failed_rules: [...], contact_fqdn, certificate_covers_contact: bool}``: what the emulated
        Microsoft side recorded about the SBC's INVITE with that Call-ID — the tenant it found
        from the Contact FQDN (Part 2.2 [DOC]) and the certificate names the SBC presented on the
        connection (Part 7.3 [DOC])."""
        if not isinstance(arg, Mapping) or "call" not in arg:
            raise ScenarioError("microsoft_call needs {call: <captured Call-ID>, ...}")
        known = {
            "call",
            "tenant",
            "matched_by",
            "target",
            "final_status",
            "failed_rules",
            "contact_fqdn",
            "certificate_covers_contact",
        }
        unknown = sorted(set(arg) - known)
        if unknown or len(arg) < 2:
            raise ScenarioError(
                f"microsoft_call: unknown field(s) {unknown}"
                if unknown
                else "microsoft_call needs at least one field to judge"
            )
        call_id = variables.get(str(arg["call"]))
        if call_id is None:
            return (
                False,
                f"a call named {arg['call']}",
                f"no call named {arg['call']!r} was captured",
            )
        record = next(
            (
                r
                for r in self.lab.service.records
                if r.call_id == call_id and r.direction == "inbound"
            ),
            None,
        )
        if record is None:
            return (
                False,
                f"Microsoft's record of {call_id}",
                f"Microsoft has no record of {call_id}",
            )
        names = record.certificate_names
        covered = record.contact_fqdn is not None and any(
            name_matches(name, record.contact_fqdn) for name in names
        )
        actual: dict[str, Any] = {
            "tenant": record.tenant,
            "matched_by": record.tenant_matched_by,
            "target": record.target,
            "final_status": record.final_status,
            "failed_rules": list(record.failed_rules),
            "contact_fqdn": record.contact_fqdn,
            "certificate_covers_contact": covered,
        }
        wanted = {k: v for k, v in arg.items() if k != "call"}
        ok = all(
            actual[k] == (list(v) if isinstance(v, list | tuple) else v) for k, v in wanted.items()
        )
        expected = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
        seen = ", ".join(f"{k}={actual[k]!r}" for k in wanted) + (
            f" (record {record.id} on {record.proxy}; certificate {list(names)})"
        )
        return ok, f"{call_id}: {expected}", f"{call_id}: {seen}"

    def _probe_trace_count(self, arg: Any, variables: Mapping[str, str]) -> tuple[bool, str, str]:
        """``trace_count: {messages: N, min_bytes: B, <pattern>}``: exactly N messages of the whole
        trace match the pattern (the fields of an ``expect``: from, to, request, status, cseq,
        uri, headers, call, sdp ...) and, with ``min_bytes``, are at least B bytes long on the
        wire — for rules that fix how often something happens, or how big it may be."""
        if not isinstance(arg, Mapping) or "messages" not in arg:
            raise ScenarioError("trace_count needs {messages: N, <message pattern>}")
        min_bytes = int(arg.get("min_bytes", 0))
        fields = {k: v for k, v in arg.items() if k not in ("messages", "min_bytes")}
        try:
            pattern = MessagePattern.model_validate(fields)
        except ValidationError as exc:
            raise ScenarioError(f"trace_count: bad message pattern: {exc}") from exc
        wanted = int(arg["messages"])
        matched = [
            e
            for e in self.trace()
            if len(e.data) >= min_bytes and match_entry(e, pattern, variables, self.is_actor).ok
        ]
        shown = "; ".join(
            f"[{e.index}] {e.time:.3f} {e.summary} ({len(e.data)} bytes)" for e in matched[:8]
        )
        more = f" (+{len(matched) - 8} more)" if len(matched) > 8 else ""
        size = f" of at least {min_bytes} bytes" if min_bytes else ""
        return (
            len(matched) == wanted,
            f"exactly {wanted} matching message(s){size}",
            f"{len(matched)} matching message(s)" + (f": {shown}{more}" if matched else ""),
        )

    def _probe_microsoft_options(
        self, arg: Any, variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        """``microsoft_options: {proxy: sip}``: the proxy's own OPTIONS reached the SBC on a TLS
        connection the proxy opened (not the one the SBC's OPTIONS came on), and the SBC answered
        200 on that connection (Part 1.1 [SUP] steps 5-6, [DOC] S6)."""
        if not isinstance(arg, Mapping) or "proxy" not in arg:
            raise ScenarioError("microsoft_options needs {proxy: sip|sip2|sip3}")
        fqdn = PROXY_SHORT.get(str(arg["proxy"]), str(arg["proxy"]))
        spec = next((p for p in self.topology.microsoft.proxies if p.fqdn == fqdn), None)
        if spec is None:
            raise ScenarioError(f"microsoft_options: no proxy {arg['proxy']!r}")
        sbc_host = self.topology.sbc.microsoft_side.address
        trace = self.trace()

        def options_request(e: TraceEntry) -> Request | None:
            msg = parse_entry(e)
            return msg if isinstance(msg, Request) and msg.method == "OPTIONS" else None

        sbc_connections = {
            e.connection_id
            for e in trace
            if e.src[0] == sbc_host and e.dst[0] == spec.address and options_request(e)
        }
        seen: list[str] = []
        ok = False
        for e in trace:
            request = options_request(e)
            if request is None or e.src[0] != spec.address or e.dst[0] != sbc_host:
                continue
            own = e.connection_id not in sbc_connections and e.src[1] != spec.port
            answer: int | None = None
            for r in trace[e.index + 1 :]:
                msg = parse_entry(r)
                if (
                    isinstance(msg, Response)
                    and r.src[0] == sbc_host
                    and r.connection_id == e.connection_id
                    and msg.call_id == request.call_id
                    and msg.cseq.seq == request.cseq.seq
                    and msg.cseq.method == "OPTIONS"
                ):
                    answer = msg.status
                    break
            where = "a connection it opened" if own else "the SBC's connection"
            status = "no answer" if answer is None else f"answered {answer}"
            seen.append(f"at {e.time:.3f} on {where} (c{e.connection_id}): {status}")
            ok = ok or (own and answer == 200)
        return (
            ok,
            f"{fqdn}'s OPTIONS to the SBC on a connection {fqdn} opened, answered 200",
            f"{fqdn}'s OPTIONS: " + ("; ".join(seen[:4]) if seen else "none sent"),
        )

    def _probe_microsoft_closed_connections(
        self, arg: Any, variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        """``microsoft_closed_connections: N``: how many TLS connections the proxies closed on
        the SBC because what it presented did not hold (Part 12 Microsoft 1 [SUP])."""
        closed = [
            f"{fqdn} closed c{conn} at {t:.3f}: {why}"
            for fqdn, proxy in self.lab.proxies.items()
            for t, conn, why in proxy.closed_connections
        ]
        return (
            len(closed) == int(arg),
            f"{int(arg)} connection(s) closed by Microsoft",
            f"{len(closed)} connection(s) closed by Microsoft"
            + (": " + "; ".join(closed) if closed else ""),
        )

    # -- the contact center (Connect model) ------------------------------------------------------
    def _ccaas(self) -> ReferenceCcaas:
        platform = getattr(self.lab, "ccaas", None)
        if not isinstance(platform, ReferenceCcaas):
            raise ScenarioError("the lab runs no contact center (topology contact_center)")
        return platform

    def _graph_exchanges(self) -> list[Any]:
        graph = getattr(self.lab, "graph", None)
        if graph is None:
            raise ScenarioError("the lab has no presence API (topology contact_center)")
        return list(graph.exchanges)

    def _agent_upn(self, who: str) -> str:
        actor = self.scenario.actors.get(who)
        user = self._teams_user(actor.teams if actor is not None and actor.teams else who)
        if user is None:
            raise ScenarioError(f"no Teams user {who!r}")
        return str(user.upn)

    def _expand(self, value: Any, variables: Mapping[str, str]) -> Any:
        """``{user:X}`` -> X's Graph id, ``{tenant:X}`` -> the tenant's GUID, ``{var}`` -> a
        captured variable, in strings, lists and objects."""
        if isinstance(value, str):

            def placeholder(match: re.Match[str]) -> str:
                kind, ref = match.group(1), match.group(2)
                if kind == "user":
                    found = self.topology.user_by_upn(self._agent_upn(ref))
                    assert found is not None
                    return found.graph_id
                try:
                    return tenant_guid(self.topology.tenant(ref))
                except KeyError:
                    raise ScenarioError(f"no tenant {ref!r}") from None

            return substitute(_PLACEHOLDER.sub(placeholder, value), variables)
        if isinstance(value, list):
            return [self._expand(v, variables) for v in value]
        if isinstance(value, dict):
            return {k: self._expand(v, variables) for k, v in value.items()}
        return value

    def _act_api(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        """One request to the presence API as the scenario (an agent's desktop, a script)."""
        graph = getattr(self.lab, "graph", None)
        cc = self.topology.contact_center
        if graph is None or cc is None:
            raise ScenarioError("the lab has no presence API (topology contact_center)")
        auth = args.get("auth") or {}
        token: str | None = None
        app = {"client_id": str(cc.app.client_id), "client_secret": cc.app.client_secret}
        if "agent" in auth:
            upn = self._agent_upn(str(auth["agent"]))
            tenant = self.topology.tenant_of_user(upn)
            assert tenant is not None
            form = {
                **app,
                "grant_type": "password",
                "username": upn,
                "password": cc.agent_password,
                "scope": "https://graph.microsoft.com/Presence.Read.All",
            }
            issued = graph.request(
                "POST", f"/{tenant_guid(tenant)}/oauth2/v2.0/token", client="scenario", form=form
            )
            token = json_path(issued.json(), "access_token")
        elif "app" in auth:
            guid = self._expand(f"{{tenant:{auth['app']}}}", variables)
            form = {
                **app,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            }
            issued = graph.request(
                "POST", f"/{guid}/oauth2/v2.0/token", client="scenario", form=form
            )
            token = json_path(issued.json(), "access_token")
        elif "token" in auth:
            token = substitute(str(auth["token"]), variables)
        if auth and not isinstance(token, str):
            raise StepImpossible(f"api: no token could be obtained for {dict(auth)}")
        exchange = graph.request(
            str(args.get("method", "GET")),
            self._expand(str(args["path"]), variables),
            client="scenario",
            bearer=token,
            json_body=self._expand(args.get("json"), variables),
            form=self._expand(args.get("form"), variables),
            name=args.get("as"),
        )
        for var, dotted in dict(args.get("capture") or {}).items():
            value = json_path(exchange.json(), str(dotted))
            if value is not None:
                variables[str(var)] = value if isinstance(value, str) else json.dumps(value)

    def _act_escalate_to_sme(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        if "as" in args:
            variables[str(args["as"])] = repr(self.now())
        try:
            self._ccaas().escalate(
                self._agent_upn(str(args["agent"])), args.get("mode"), args.get("fallback")
            )
        except LookupError as exc:
            raise StepImpossible(f"escalate_to_sme: {exc}") from exc

    def _act_complete_transfer(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        try:
            self._ccaas().complete_transfer(self._agent_upn(str(args["agent"])))
        except LookupError as exc:
            raise StepImpossible(f"complete_transfer: {exc}") from exc

    def _act_sign_in(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        if not self._ccaas().sign_in(self._agent_upn(str(args["agent"]))):
            raise StepImpossible(f"sign_in: {args['agent']} could not sign in")

    def _act_sign_out(self, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self._ccaas().sign_out(self._agent_upn(str(args["agent"])))

    def _probe_contact_center(
        self, name: str, arg: Any, variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        """``api``/``api_retry_after``: the recorded presence API exchanges (see
        :func:`~sbcsim.endpoints.ccaas.judge_exchanges`); ``ccaas_call``: the platform's record
        of a caller's call; ``ccaas_agent``: an agent's sign-in."""
        if not isinstance(arg, Mapping):
            raise ScenarioError(f"{name} needs a mapping of fields")
        if name in ("api", "api_retry_after"):
            spec = {k: self._expand(v, variables) for k, v in arg.items()}
            if "token_tenant" in spec:
                spec["token_tenant"] = self._expand(f"{{tenant:{spec['token_tenant']}}}", {})
            if "token_user" in spec:
                spec["token_user"] = self._agent_upn(str(spec["token_user"]))
            if "since" in spec:
                spec["since"] = float(variables.get(str(spec["since"]), spec["since"]))
            try:
                judge = judge_exchanges if name == "api" else judge_retry_after
                return judge(self._graph_exchanges(), spec)
            except ValueError as exc:
                raise ScenarioError(str(exc)) from exc
        if name == "ccaas_agent":
            upn = self._agent_upn(str(arg["agent"]))
            signed_in = self._ccaas().is_signed_in(upn)
            want = bool(arg.get("signed_in", True))
            return (
                signed_in == want,
                f"{upn} signed in: {want}",
                f"{upn} signed in: {signed_in}",
            )
        who = str(arg.get("customer", ""))
        number = self._number_of(who) if who else ""
        call = self._ccaas().latest_call_of(number)
        if call is None:
            return False, f"a contact-center call from {who}", f"no call from {number}"
        esc = call.escalation
        actual: dict[str, Any] = {
            "state": call.state,
            "queue": call.queue.id,
            "agent": call.agent,
            "escalation": esc.state if esc is not None else None,
            "mode": esc.mode if esc is not None else None,
            "sme": esc.sme if esc is not None else None,
            "parties": list(call.parties),
            "held": call.held,
        }
        wanted: dict[str, Any] = {}
        for key, value in arg.items():
            if key == "customer":
                continue
            if key not in actual:
                raise ScenarioError(f"ccaas_call: unknown field {key!r}")
            if key in ("agent", "sme") and value is not None:
                value = self._agent_upn(str(value))
            elif key == "parties":
                value = [self._number_of(str(v)) for v in value]
            wanted[key] = value
        ok = all(actual[k] == v for k, v in wanted.items())
        expected = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
        seen = ", ".join(f"{k}={actual[k]!r}" for k in wanted)
        history = "; ".join(f"{t:g} {what}" for t, what in call.history[-6:])
        return ok, f"call from {number}: {expected}", f"call from {number}: {seen} ({history})"


def raw_message(text: str) -> bytes:
    """The bytes of a message written out in a scenario's ``send`` step.

    Line ends (LF or CRLF) become CRLF, the head ends with one empty line, and Content-Length
    is set to the body's length in bytes (replacing any Content-Length or compact ``l``
    header), so a readable YAML block frames correctly on a stream (RFC 3261 §18.3).
    """
    unified = text.replace("\r\n", "\n").lstrip("\n")
    head, blank, body = unified.partition("\n\n")
    if not blank:
        head, body = head.rstrip("\n"), ""
    lines = [
        line
        for line in head.split("\n")
        if line.split(":", 1)[0].strip().lower() not in ("content-length", "l")
    ]
    payload = body.replace("\n", "\r\n").encode("utf-8")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


def _request_uri_host(data: bytes) -> str | None:
    """The host name of a raw request's Request-URI (None for a response or an IP host)."""
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace").split(" ")
    if len(first) != 3 or first[0].startswith("SIP/"):
        return None
    try:
        uri = parse_uri(first[1])
    except ProtocolError:
        return None
    return uri.host if isinstance(uri, SipUri) and not uri.host_is_ip else None


_PLACEHOLDER = re.compile(r"\{(user|tenant):([^{}]+)\}")


def _embedded_factory(
    topology_path: str | None,
    plan_settings: dict[str, Any],
    plan_sbc_settings: dict[str, Any],
    mutant: str | None,
) -> Callable[[Scenario, int], World]:
    topology = load_topology(Path(topology_path) if topology_path else None)

    def make(scenario: Scenario, seed: int) -> World:
        return LabWorld(scenario, seed, topology, plan_settings, plan_sbc_settings, mutant)

    return make


def factory_for(loaded: LoadedPlan, target: str) -> Callable[[], Callable[[Scenario, int], World]]:
    """A picklable maker of world factories for ``target`` (embedded, mutant:NAME, TARGET.yaml)."""
    topo = loaded.topology_path()
    mutant: str | None = None
    if target.startswith("mutant:"):
        mutant = target.split(":", 1)[1]
        if mutant not in MUTANTS and mutant not in CCAAS_MUTANTS:
            raise ConfigError(f"unknown mutant {mutant!r}; `sbcsim mutants` lists them")
    elif target != "embedded":
        from sbcsim.scenario.liveworld import live_factory_for

        return live_factory_for(loaded, target)
    return functools.partial(
        _embedded_factory,
        str(topo) if topo else None,
        dict(loaded.plan.settings),
        dict(loaded.plan.sbc_settings),
        mutant,
    )
