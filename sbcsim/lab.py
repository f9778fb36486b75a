"""The simulated world around an SBC: Microsoft's three proxies, Teams users, presence, PSTN.

:meth:`Lab.build` puts everything of a topology on one :class:`~sbcsim.net.memory.MemoryNetwork`
driven by one seeded :class:`~sbcsim.sim.Simulator`:

* the proxies ``sip``/``sip2``/``sip3.pstnhub.microsoft.com`` listen on TLS at their topology
  addresses, present certificates for their FQDNs and require the SBC's (Part 7.3 [DOC]);
* the Teams users of every tenant, with their presence in :attr:`Lab.presence`;
* the PSTN carrier and its phones, talking to the SBC's PSTN-side address;
* the SBC, when an ``sbc_factory`` is given: it attaches its own nodes to :attr:`Lab.net` at the
  topology's SBC addresses (TLS toward Microsoft, the carrier's transport toward the PSTN) and
  may look names up with :meth:`Lab.resolve`, the lab's DNS;
* with a ``contact_center`` in the topology, the Graph-shaped presence API in process
  (:attr:`Lab.graph`: token endpoint, presence, subscriptions, change notifications on the
  virtual clock) and, when a ``ccaas_factory`` is given, the contact-center platform at the
  topology's contact-center address (:attr:`Lab.ccaas`).

Scenarios drive the lab with the users' and phones' verbs and :meth:`Lab.run_until`, then judge
the records of :attr:`Lab.service` and the packets of :meth:`Lab.trace`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sbcsim.dialog import SessionTimerConfig
from sbcsim.endpoints.ccaas import InProcessGraph, build_lab_graph
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.endpoints.pstn import PstnCarrier, PstnPhoneAgent
from sbcsim.endpoints.teams_proxy import DirectRoutingService, TeamsProxy
from sbcsim.endpoints.teams_users import TeamsUserAgent, tenant_guid
from sbcsim.ids import IdGenerator
from sbcsim.net.base import Address, TlsIdentity
from sbcsim.net.memory import MemoryNetwork
from sbcsim.presence.model import PresenceService
from sbcsim.sim import Simulator
from sbcsim.stack import UaOptions, sim_node
from sbcsim.testplan.results import TraceEntry
from sbcsim.topology import Topology, load_topology

__all__ = ["Lab", "add_presence_users"]


def add_presence_users(presence: PresenceService, topology: Topology) -> None:
    """Register every Teams user of the topology with its starting presence (Part 11)."""
    for tenant in topology.tenants:
        for user in tenant.users:
            if presence.find_user(user.graph_id) is None:
                presence.add_user(
                    user.graph_id,
                    user.upn,
                    tenant_guid(tenant),
                    availability=user.presence.availability,
                    activity=user.presence.activity,
                )


@dataclass(eq=False)
class Lab:
    """One simulated Direct Routing lab (see the module docstring)."""

    sim: Simulator
    net: MemoryNetwork
    topology: Topology
    presence: PresenceService
    settings: MicrosoftSettings
    service: DirectRoutingService
    pstn: PstnCarrier
    proxies: dict[str, TeamsProxy] = field(default_factory=dict)
    sbc: Any = None
    graph: InProcessGraph | None = None
    ccaas: Any = None

    @classmethod
    def build(
        cls,
        topology: Topology | None = None,
        *,
        seed: int = 0,
        settings: MicrosoftSettings | None = None,
        sbc_factory: Callable[[Lab], Any] | None = None,
        ccaas_factory: Callable[[Lab], Any] | None = None,
        api_settings: dict[str, Any] | None = None,
    ) -> Lab:
        """Build the lab of ``topology`` (the shipped default when None) with ``seed``.

        ``api_settings`` override the presence API's :class:`~sbcsim.presence.api.ApiSettings`
        (rate limit ...); ``ccaas_factory`` builds the contact-center platform.
        """
        topo = topology or load_topology(None)
        config = settings or MicrosoftSettings()
        sim = Simulator(seed)
        net = MemoryNetwork(sim)
        presence = PresenceService()
        add_presence_users(presence, topo)
        holder: list[Lab] = []

        def resolve(fqdn: str) -> Address | None:
            return holder[0].resolve(fqdn)

        service = DirectRoutingService(
            topo,
            config,
            presence,
            now=sim.clock.now,
            schedule=lambda delay, fn: sim.call_later(delay, fn),
            resolve=resolve,
            rng_seed=sim.derive_rng,
        )
        pstn = topo.pstn
        node = sim_node(
            sim,
            net,
            "pstn",
            pstn.address,
            transport=pstn.transport,
            port=pstn.port,
            options=UaOptions(
                user_agent="sbcsim-pstn-carrier",
                session_timer=SessionTimerConfig(enabled=False),
            ),
        )
        side = topo.sbc.pstn_side
        carrier = PstnCarrier(topo, node, (side.address, side.port), transport=side.transport)
        lab = cls(sim, net, topo, presence, config, service, carrier)
        holder.append(lab)
        for index, spec in enumerate(topo.microsoft.proxies):
            proxy = TeamsProxy(
                service,
                index,
                spec.fqdn,
                spec.address,
                spec.port,
                clock_now=sim.clock.now,
                call_at=sim.call_at,
                ids=IdGenerator(sim.derive_rng(f"ids:{spec.fqdn}")),
                rand=sim.derive_rng(f"rand:{spec.fqdn}").random,
            )
            transport = net.attach(
                spec.address,
                proxy.node,
                udp_ports=(),
                tls_ports=(spec.port,),
                tls_identity=TlsIdentity((spec.fqdn,)),
                require_client_cert=True,
            )
            proxy.attach_transport(transport)
            service.proxies.append(proxy)
            lab.proxies[spec.fqdn] = proxy
        if topo.contact_center is not None:
            lab.graph = build_lab_graph(
                topo,
                presence,
                clock=sim.clock,
                schedule=lambda delay, fn: sim.call_later(delay, fn),
                rng=sim.derive_rng("graph"),
                settings=api_settings,
            )
        if sbc_factory is not None:
            lab.sbc = sbc_factory(lab)
        if ccaas_factory is not None:
            lab.ccaas = ccaas_factory(lab)
        return lab

    def close(self) -> None:
        """Release what the lab holds outside the simulation (the presence API's event loop)."""
        if self.graph is not None:
            self.graph.close()

    # -- the lab's DNS and names --------------------------------------------------------------
    def resolve(self, fqdn: str) -> Address | None:
        """The address a topology FQDN points at (proxies, SBC trunks), or None."""
        return self.topology.resolve(fqdn)

    def actor_name(self, address: Address | str) -> str:
        """The name a ladder shows for an address: a proxy's FQDN, ``sbc``, ``pstn`` ..."""
        host = address if isinstance(address, str) else address[0]
        for proxy in self.topology.microsoft.proxies:
            if proxy.address == host:
                return proxy.fqdn
        sbc = self.topology.sbc
        if host in (sbc.microsoft_side.address, sbc.pstn_side.address):
            return "sbc"
        if host == self.topology.pstn.address:
            return "pstn"
        cc = self.topology.contact_center
        if cc is not None and host == cc.address:
            return "ccaas"
        return host

    def trace(self) -> list[TraceEntry]:
        """Every packet the network carried, in send order, with actor names."""
        return [self.trace_entry(i) for i in range(len(self.net.capture))]

    def trace_entry(self, index: int) -> TraceEntry:
        """The trace entry of the ``index``-th captured packet."""
        p = self.net.capture[index]
        return TraceEntry(
            index=index,
            time=p.time,
            src=p.src,
            dst=p.dst,
            transport=p.transport,
            data=p.data,
            src_name=self.actor_name(p.src),
            dst_name=self.actor_name(p.dst),
            connection_id=p.connection_id,
            dropped=p.dropped,
        )

    # -- parties ------------------------------------------------------------------------------------
    def proxy(self, fqdn: str) -> TeamsProxy:
        """The proxy with this FQDN."""
        return self.proxies[fqdn]

    def teams_user(self, upn: str) -> TeamsUserAgent:
        """The Teams user with this UPN, with its verbs (answer, hang_up, transfer_to ...)."""
        return self.service.user(upn)

    def phone(self, number: str) -> PstnPhoneAgent:
        """The PSTN phone with this number."""
        return self.pstn.phone(number)

    # -- time ------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.sim.clock.now()

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run the simulation until ``predicate()`` holds or ``timeout`` virtual seconds pass."""
        return self.sim.run_until(predicate, timeout)

    def run_for(self, seconds: float) -> None:
        """Run the simulation for ``seconds`` virtual seconds."""
        self.sim.run_for(seconds)
