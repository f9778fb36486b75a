"""The embedded world of a scenario: a fresh :class:`~sbcsim.lab.Lab` with the reference SBC
(or one of its mutants), and the mapping of scenario actions, actors and probes onto it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.mutants import MUTANTS
from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.errors import ConfigError, LocalProtocolError
from sbcsim.lab import Lab
from sbcsim.scenario.engine import ScenarioError, StepImpossible, World
from sbcsim.scenario.matchers import substitute
from sbcsim.scenario.models import Scenario
from sbcsim.testplan.plan import LoadedPlan
from sbcsim.testplan.results import TraceEntry
from sbcsim.topology import Topology, load_topology

__all__ = ["LabWorld", "factory_for"]

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
        self.scenario = scenario
        settings = _microsoft_settings(plan_settings, scenario.settings)
        sbc_settings = {**plan_sbc_settings, **scenario.sbc_settings}
        self.lab = Lab.build(
            topology,
            seed=seed,
            settings=settings,
            sbc_factory=ReferenceSbc.factory(mutant=mutant, **sbc_settings),
        )
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

    def trace(self) -> list[TraceEntry]:
        capture = self.lab.net.capture
        if len(self._trace) != len(capture) or (
            capture and self._trace and self._trace[-1].dropped != capture[-1].dropped
        ):
            # the capture only grows, but a packet may be marked dropped after the fact
            self._trace = self.lab.trace()
        return self._trace

    def close(self) -> None:
        sbc = self.lab.sbc
        if sbc is not None and hasattr(sbc, "stop"):
            sbc.stop()

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
        if side != "teams":
            raise ScenarioError("transfers are started by a Teams user")
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
        raise ScenarioError("raw 'send' steps are not available in the embedded lab yet")

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
        if name == "sbc_active_calls":
            n = self.lab.sbc.active_calls
            return (
                n == int(arg),
                f"{arg} active call(s) on the SBC",
                f"{n} active call(s) on the SBC",
            )
        raise ScenarioError(f"unknown check condition {name!r}")


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
        if mutant not in MUTANTS:
            raise ConfigError(f"unknown mutant {mutant!r}; `sbcsim mutants` lists them")
    elif target != "embedded":
        raise ConfigError(
            f"target {target!r}: live targets (TARGET.yaml) are not supported by this version; "
            "use embedded or mutant:NAME"
        )
    return functools.partial(
        _embedded_factory,
        str(topo) if topo else None,
        dict(loaded.plan.settings),
        dict(loaded.plan.sbc_settings),
        mutant,
    )
