"""Target files (``--target TARGET.yaml``): the model, what ``load_target`` checks against the
topology and the file system, the effective topology, and how ``sbcsim run`` treats a live
target before any socket is opened (skips, exit 2)."""

from __future__ import annotations

import shutil
import socket
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from sbcsim.certs import LabCA
from sbcsim.cli import main
from sbcsim.config import load_any, load_model_text
from sbcsim.errors import ConfigError
from sbcsim.scenario.engine import CheckSkipped, run_scenario
from sbcsim.scenario.labworld import factory_for
from sbcsim.scenario.liveworld import check_bind_addresses, live_skip_reason, longest_run
from sbcsim.scenario.models import Scenario
from sbcsim.target import DEFAULT_WARMUP, Target, is_target_path, load_target
from sbcsim.testplan.plan import load_plan
from sbcsim.testplan.results import TraceEntry
from sbcsim.topology import MICROSOFT_PROXY_FQDNS

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reference-sbc" / "target.yaml"

MINIMAL = """\
kind: target
sbc:
  microsoft_side: {address: 127.0.0.2}
  pstn_side: {address: 127.0.0.2}
"""


def write_certs(directory: Path) -> None:
    """What `sbcsim certs` writes for the proxies (the SBC's own files are not needed here)."""
    ca = LabCA.create()
    ca.write(directory)
    for fqdn in MICROSOFT_PROXY_FQDNS:
        ca.issue([fqdn]).write(directory, fqdn)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    write_certs(tmp_path / "certs")
    return tmp_path


def target_file(directory: Path, text: str, name: str = "target.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def problem(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value)


# ------------------------------------------------------------------------------ the model


def test_the_minimal_target_takes_its_defaults() -> None:
    target = load_model_text(MINIMAL, Target)
    assert target.sbc.microsoft_side.port == 5061
    assert target.sbc.microsoft_side.transport == "tls"
    assert (target.sbc.pstn_side.port, target.sbc.pstn_side.transport) == (5060, "udp")
    assert target.certificates.directory == "certs"
    assert target.certificates.client_certificates == "required"
    assert target.warmup == DEFAULT_WARMUP == 5.0
    assert target.max_scenario_seconds == 600.0
    assert target.topology is None and target.tenants == {} and target.bind.proxies == {}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            MINIMAL.replace(
                "{address: 127.0.0.2}\n  pstn", "{address: 127.0.0.2, transport: udp}\n  pstn"
            ),
            "t.yaml:3:51: sbc.microsoft_side.transport: Input should be 'tls' (got 'udp')",
        ),
        (
            MINIMAL.replace(
                "pstn_side: {address: 127.0.0.2}", "pstn_side: {address: 127.0.0.2, transport: tls}"
            ),
            "t.yaml:4:46: sbc.pstn_side.transport: Input should be 'udp' or 'tcp' (got 'tls')",
        ),
        (
            MINIMAL + "warmup: -1\n",
            "t.yaml:5:9: warmup: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            MINIMAL + "bind: {pstn: {address: nowhere, port: 5060}}\n",
            "t.yaml:5:24: bind.pstn.address: expected an IPv4 or IPv6 address (got 'nowhere')",
        ),
        (
            MINIMAL + "tenants: {tenant-a: {users: {alice.archer@contoso.example: '555'}}}\n",
            "t.yaml:5:60: tenants.tenant-a.users.alice.archer@contoso.example: expected an E.164",
        ),
        (
            MINIMAL + "sbx: {}\n",
            "t.yaml:5:1: sbx: unknown key (expected one of: kind, name, description, sbc, topology, "
            "tenants, bind, certificates, warmup, max_scenario_seconds)",
        ),
        ("kind: target\n", "t.yaml:1:1: sbc: required field missing"),
    ],
)
def test_model_errors_point_at_the_line(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_model_text(text, Target, "t.yaml")
    assert error in problem(exc)


def test_is_target_path() -> None:
    assert is_target_path("lab/target.yaml") and is_target_path("x.yml")
    assert not is_target_path("embedded") and not is_target_path("mutant:no-x-ms-sbc")


def test_sbcsim_validate_knows_a_target_file(lab: Path) -> None:
    path = target_file(lab, MINIMAL.replace("kind: target\n", ""))
    kind, model = load_any(path)
    assert kind.name == "target" and isinstance(model, Target)
    console = Console(width=200, record=True)
    result = CliRunner().invoke(
        main, ["--log-level", "debug", "validate", str(EXAMPLE), str(path)], obj=console
    )
    assert result.exit_code == 0, console.export_text()
    text = console.export_text()
    assert f"{EXAMPLE}: ok (target)" in text and f"{path}: ok (target)" in text


# ------------------------------------------------------------------------------ load_target


def test_the_example_target_describes_the_loopback_lab(tmp_path: Path) -> None:
    copy = tmp_path / "target.yaml"
    shutil.copy(EXAMPLE, copy)
    write_certs(tmp_path / "certs")
    target = load_target(copy)
    topo = target.topology
    assert [(p.fqdn, p.address, p.port) for p in topo.microsoft.proxies] == [
        ("sip.pstnhub.microsoft.com", "127.0.1.1", 5061),
        ("sip2.pstnhub.microsoft.com", "127.0.1.2", 5061),
        ("sip3.pstnhub.microsoft.com", "127.0.1.3", 5061),
    ]
    assert (topo.pstn.address, topo.pstn.port, topo.pstn.transport) == ("127.0.2.1", 5060, "udp")
    ms, pstn = topo.sbc.microsoft_side, topo.sbc.pstn_side
    assert (ms.address, ms.port, ms.transport) == ("127.0.0.2", 5061, "tls")
    assert (pstn.address, pstn.port, pstn.transport) == ("127.0.0.2", 5060, "udp")
    assert topo.carrier.trunk_fqdn == "sbc.customers.example.com"
    assert [t.trunk_fqdn for t in topo.tenants] == [
        "tenant-a.customers.example.com",
        "tenant-b.customers.example.com",
    ]
    assert target.lab_ca == target.trust_ca == tmp_path / "certs" / "ca.pem"
    assert target.proxy_files["sip2.pstnhub.microsoft.com"] == (
        tmp_path / "certs" / "sip2.pstnhub.microsoft.com.pem",
        tmp_path / "certs" / "sip2.pstnhub.microsoft.com.key",
    )
    assert target.warmup == 5.0
    assert target.client_certificates == "required"
    assert target.label == "reference SBC on loopback"
    assert [(who, host, port, tp) for who, host, port, tp, _ in target.listeners()] == [
        ("sip.pstnhub.microsoft.com", "127.0.1.1", 5061, "tls"),
        ("sip2.pstnhub.microsoft.com", "127.0.1.2", 5061, "tls"),
        ("sip3.pstnhub.microsoft.com", "127.0.1.3", 5061, "tls"),
        ("the PSTN carrier", "127.0.2.1", 5060, "udp"),
    ]


def test_overrides_reach_the_effective_topology(lab: Path) -> None:
    path = target_file(
        lab,
        """\
        kind: target
        sbc:
          microsoft_side: {address: 10.1.2.3, port: 5067}
          pstn_side: {address: 10.1.2.3, port: 5070, transport: tcp}
          carrier_trunk_fqdn: sbc.voice.example.net
          tenant_trunk_fqdns:
            tenant-a: contoso.voice.example.net
            tenant-b: fabrikam.voice.example.net
        tenants:
          tenant-a:
            number_ranges: [{first: "+14255550100", last: "+14255550199"}, {first: "+14255551000", last: "+14255551009"}]
            users: {alice.archer@contoso.example: "+14255551001"}
        bind:
          proxies:
            sip2.pstnhub.microsoft.com: {address: 10.1.2.12, port: 15061}
          pstn: {address: 10.1.2.21, port: 15060}
        certificates:
          directory: certs
          sbc_ca: certs/sip.pstnhub.microsoft.com.pem
          client_certificates: optional
        warmup: 0.5
        """,
    )
    target = load_target(path)
    topo = target.topology
    assert topo.carrier.trunk_fqdn == "sbc.voice.example.net"
    assert topo.carrier.base_domain == "voice.example.net"
    assert topo.tenant_for_fqdn("contoso.voice.example.net") is topo.tenants[0]
    assert topo.resolve("fabrikam.voice.example.net") == ("10.1.2.3", 5067)
    assert topo.sbc.pstn_side.transport == topo.pstn.transport == "tcp"
    assert (topo.pstn.address, topo.pstn.port) == ("10.1.2.21", 15060)
    assert [(p.address, p.port) for p in topo.microsoft.proxies] == [
        ("127.0.1.1", 5061),
        ("10.1.2.12", 15061),
        ("127.0.1.3", 5061),
    ]
    alice = topo.user_by_upn("alice.archer@contoso.example")
    assert alice is not None and alice.number == "+14255551001"
    assert topo.user_by_number("+14255550101") is None
    assert target.trust_ca == lab / "certs" / "sip.pstnhub.microsoft.com.pem"
    assert target.lab_ca == lab / "certs" / "ca.pem"
    assert target.client_certificates == "optional"
    assert target.warmup == 0.5


def test_names_the_topology_lacks_are_reported_at_their_keys(lab: Path) -> None:
    path = target_file(
        lab,
        MINIMAL
        + "  tenant_trunk_fqdns: {tenant-z: z.customers.example.com}\n"
        + "tenants:\n  tenant-b:\n    users: {nobody@fabrikam.example: '+12065550199'}\n"
        + "bind:\n  proxies:\n    sip4.pstnhub.microsoft.com: {address: 127.0.1.4, port: 5061}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    assert problem(exc).splitlines() == [
        f"{path}:5:24: sbc.tenant_trunk_fqdns.tenant-z: no tenant 'tenant-z' in the topology "
        "(tenants: tenant-a, tenant-b)",
        f"{path}:8:13: tenants.tenant-b.users.nobody@fabrikam.example: no user "
        "'nobody@fabrikam.example' in tenant 'tenant-b'",
        f"{path}:11:5: bind.proxies.sip4.pstnhub.microsoft.com: no proxy "
        "'sip4.pstnhub.microsoft.com' in the topology (proxies: sip.pstnhub.microsoft.com, "
        "sip2.pstnhub.microsoft.com, sip3.pstnhub.microsoft.com)",
    ]


def test_an_override_that_breaks_the_topology_points_at_the_override(lab: Path) -> None:
    path = target_file(
        lab,
        MINIMAL
        + "  carrier_trunk_fqdn: sbc.voice.example.org\n"
        + "  tenant_trunk_fqdns: {tenant-b: fabrikam.voice.example.org}\n"
        + "tenants:\n"
        + "  tenant-a:\n"
        + "    number_ranges: [{first: '+14255550100', last: '+14255550109'}]\n"
        + "    users: {alice.archer@contoso.example: '+13125550101'}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    invalid = "with the target's changes the topology is invalid"
    assert problem(exc).splitlines() == [
        # tenant-a's trunk stays under the old base domain: the carrier trunk moved it
        f"{path}:5:23: sbc.carrier_trunk_fqdn: {invalid}: tenants[0].trunk_fqdn: derived trunk "
        "FQDN 'tenant-a.customers.example.com' must be one label in front of the carrier base "
        "domain 'voice.example.org' (the certificate *.voice.example.org covers only that)",
        # the queue's number is now outside the shorter range
        f"{path}:9:20: tenants.tenant-a.number_ranges: {invalid}: "
        "tenants[0].call_queues[0].number: number '+14255550150' is outside the number ranges "
        "of tenant 'tenant-a'",
        f"{path}:10:43: tenants.tenant-a.users.alice.archer@contoso.example: {invalid}: "
        "tenants[0].users[0].number: number '+13125550101' is outside the number ranges of "
        "tenant 'tenant-a'",
        # a PSTN phone has that number: the clash names the overridden user
        f"{path}:10:43: tenants.tenant-a.users.alice.archer@contoso.example: {invalid}: "
        "pstn.phones[0].number: number '+13125550101' is already used at "
        "tenants[0].users[0].number",
    ]


def test_the_sbc_address_may_not_be_one_sbcsim_listens_on(lab: Path) -> None:
    path = target_file(
        lab,
        MINIMAL.replace(
            "microsoft_side: {address: 127.0.0.2}", "microsoft_side: {address: 127.0.1.1}"
        ),
    )
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    assert f"{path}:3:" in problem(exc)
    assert "address '127.0.1.1:5061' is already used" in problem(exc)


def test_missing_certificates_are_named(tmp_path: Path) -> None:
    path = target_file(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    certs = tmp_path / "certs"
    assert problem(exc) == (
        f"{path}:1:1: certificates.directory: certificate directory {certs} does not exist "
        f"(create it with `sbcsim certs --out {certs}`)"
    )
    write_certs(certs)
    (certs / "sip3.pstnhub.microsoft.com.key").unlink()
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    assert problem(exc) == (
        f"{path}:1:1: certificates.directory: certificate file "
        f"{certs / 'sip3.pstnhub.microsoft.com.key'} does not exist "
        f"(create it with `sbcsim certs --out {certs}`)"
    )


def test_explicit_certificate_files_are_checked_at_their_lines(lab: Path) -> None:
    path = target_file(
        lab,
        MINIMAL
        + "certificates:\n"
        + "  directory: certs\n"
        + "  sbc_ca: elsewhere/sbc-ca.pem\n"
        + "  proxies:\n"
        + "    sip.pstnhub.microsoft.com: {cert: mine.pem, key: certs/sip.pstnhub.microsoft.com.key}\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    assert problem(exc).splitlines() == [
        f"{path}:7:11: certificates.sbc_ca: certificate file {lab / 'elsewhere/sbc-ca.pem'} "
        "does not exist (create it with `sbcsim certs --out "
        f"{lab / 'certs'}`)",
        f"{path}:9:39: certificates.proxies.sip.pstnhub.microsoft.com.cert: certificate file "
        f"{lab / 'mine.pem'} does not exist (create it with `sbcsim certs --out "
        f"{lab / 'certs'}`)",
    ]


def test_without_a_directory_every_file_must_be_given(lab: Path) -> None:
    path = target_file(lab, MINIMAL + "certificates: {lab_ca: certs/ca.pem}\n")
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    lines = problem(exc).splitlines()
    assert len(lines) == 6
    assert lines[0] == (
        f"{path}:5:1: certificates: certificates.proxies.sip.pstnhub.microsoft.com.cert: "
        "no file given, and no certificates.directory"
    )


def test_a_missing_topology_file_is_named(lab: Path) -> None:
    path = target_file(lab, MINIMAL + "topology: lab.yaml\n")
    with pytest.raises(ConfigError) as exc:
        load_target(path)
    assert problem(exc) == (
        f"{path}:5:11: topology: topology file {lab / 'lab.yaml'} does not exist"
    )


# ------------------------------------------------------------------------------ before any socket


def test_an_address_in_use_is_named_before_the_run(lab: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = target_file(
            lab,
            MINIMAL
            + f"bind:\n  proxies:\n    sip3.pstnhub.microsoft.com: {{address: 127.0.0.1, port: {port}}}\n",
        )
        with pytest.raises(ConfigError) as exc:
            check_bind_addresses(load_target(path))
    assert problem(exc) == (
        f"{path}:7:33: sbcsim cannot listen as sip3.pstnhub.microsoft.com: "
        f"127.0.0.1:{port}/tls is already in use"
    )


def scenario(extra: str = "", steps: str = "") -> Scenario:
    text = (
        "kind: scenario\nid: s\ntitle: t\n"
        + extra
        + "actors:\n  caller: {pstn: '+13125550101'}\nsteps:\n"
        + (steps or "  - expect: {id: a.b, requirement: r, request: INVITE}\n")
    )
    return load_model_text(text, Scenario)


@pytest.mark.parametrize(
    ("extra", "steps", "reason"),
    [
        ("", "", None),
        (
            "tags: [timers, sim-only]\n",
            "",
            "tagged sim-only: it needs the virtual clock (long timers), so it runs only against "
            "the embedded SBC",
        ),
        (
            "sbc_settings: {session_expires: 90}\n",
            "",
            "it configures the reference SBC (session_expires), which a live target does not run",
        ),
        (
            "",
            "  - wait: 1\n  - partition: {a: sbc, b: sip}\n",
            "step 2 (partition) partitions the network, which only the in-memory network can do",
        ),
        (
            "",
            "  - send: {from: sbc, to: sip, data: 'OPTIONS sip:x SIP/2.0'}\n",
            "step 1 makes the SBC send a hand-written message: only ours can",
        ),
        # only that check is skipped (by the live world's probe), not its scenario
        ("", "  - check: {id: c.d, requirement: r, condition: {sbc_active_calls: 0}}\n", None),
        (
            "",
            "  - check: {id: c.e, requirement: r, condition: {ccaas_agent: {agent: x}}}\n",
            "check c.e drives the emulated contact center, which the live lab does not run",
        ),
        (
            "",
            "  - sign_in: {agent: alice.archer@contoso.example}\n",
            "step 1 (sign_in) drives the emulated contact center, which the live lab does not run",
        ),
    ],
)
def test_live_skip_reasons(extra: str, steps: str, reason: str | None) -> None:
    assert live_skip_reason(scenario(extra, steps)) == reason


def test_a_scenario_that_may_run_too_long_is_skipped() -> None:
    long = scenario(
        "warmup: 65\n",
        "  - wait: 30\n"
        "  - expect: {id: a.b, requirement: r, request: UPDATE, within: 890}\n"
        "  - expect_none: {id: a.c, requirement: r, request: BYE, within: 20}\n",
    )
    assert longest_run(long, 5.0) == 5 + 30 + 890 + 20
    assert live_skip_reason(long, warmup=5.0, max_seconds=945.0) is None
    assert live_skip_reason(long, warmup=5.0, max_seconds=600.0) == (
        "it may take 945 s of real time, more than the target's max_scenario_seconds (600 s); "
        "long timers need the virtual clock"
    )
    assert longest_run(scenario("warmup: 0\n"), 5.0) == 5.0  # the expect's default 5 s


class ProbeOnlyWorld:
    """Just enough of a world for checks: its probe skips one kind of condition."""

    def now(self) -> float:
        return 0.0

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return predicate()

    def run_for(self, seconds: float) -> None:
        pass

    def warm_up(self, seconds: float) -> None:
        pass

    def trace(self) -> list[TraceEntry]:
        return []

    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool:
        return False

    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        pass

    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        if "sbc_active_calls" in condition:
            raise CheckSkipped("skipped against a live SBC: it counts the SBC's calls")
        return bool(condition["ok"]), "ok", "seen"

    def close(self) -> None:
        pass


def checks_only(*conditions: str) -> Scenario:
    steps = "".join(
        f"  - check: {{id: c.{i}, requirement: r, condition: {c}}}\n"
        for i, c in enumerate(conditions)
    )
    return load_model_text(f"kind: scenario\nid: s\ntitle: t\nsteps:\n{steps}", Scenario)


def test_a_skipped_check_leaves_the_rest_of_its_scenario_judged() -> None:
    result = run_scenario(
        checks_only("{ok: true}", "{sbc_active_calls: 0}"), lambda s, n: ProbeOnlyWorld(), 1
    )
    assert result.verdict == "pass"
    assert [(c.id, c.verdict, c.message) for c in result.checks] == [
        ("c.0", "pass", "c.0: seen"),
        ("c.1", "skip", "c.1: skipped against a live SBC: it counts the SBC's calls"),
    ]
    failed = run_scenario(
        checks_only("{sbc_active_calls: 0}", "{ok: false}"), lambda s, n: ProbeOnlyWorld(), 1
    )
    assert failed.verdict == "fail"
    assert [c.verdict for c in failed.checks] == ["skip", "fail"]
    skipped = run_scenario(checks_only("{sbc_active_calls: 0}"), lambda s, n: ProbeOnlyWorld(), 1)
    assert (skipped.verdict, skipped.error) == ("skip", "every check was skipped")


def free_port(host: str, kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def test_a_sim_only_scenario_is_skipped_with_its_reason(lab: Path) -> None:
    ports = [free_port(f"127.0.1.{i}", socket.SOCK_STREAM) for i in (1, 2, 3)]
    bind = "".join(
        f"    {fqdn}: {{address: 127.0.1.{i}, port: {port}}}\n"
        for i, (fqdn, port) in enumerate(zip(MICROSOFT_PROXY_FQDNS, ports, strict=True), start=1)
    )
    pstn = free_port("127.0.2.1", socket.SOCK_DGRAM)
    path = target_file(
        lab, MINIMAL + f"bind:\n  pstn: {{address: 127.0.2.1, port: {pstn}}}\n  proxies:\n{bind}"
    )
    plan_file = lab / "plan.yaml"
    (lab / "s.yaml").write_text(
        "kind: scenario\nid: long-timer\ntitle: t\ntags: [sim-only]\nsteps:\n"
        "  - expect: {id: a.one, requirement: r1, request: INVITE}\n"
        "  - expect: {id: a.two, requirement: r2, request: BYE}\n"
    )
    plan_file.write_text("kind: plan\nid: p\ntitle: p\nscenarios: [s.yaml]\n")
    loaded = load_plan(plan_file)
    # what factory_for hands each scenario: the skip comes before any socket is opened
    factory = factory_for(loaded, str(path))()
    result = run_scenario(loaded.scenarios[0], factory, 1)
    reason = (
        "skipped against a live SBC: tagged sim-only: it needs the virtual clock (long timers), "
        "so it runs only against the embedded SBC"
    )
    assert result.verdict == "skip"
    assert result.error == reason
    assert [(c.id, c.verdict, c.message) for c in result.checks] == [
        ("a.one", "skip", f"skipped: {reason}"),
        ("a.two", "skip", f"skipped: {reason}"),
    ]
    assert result.trace == []


def test_unknown_targets_exit_2_with_a_message(lab: Path) -> None:
    plan_file = lab / "plan.yaml"
    (lab / "s.yaml").write_text(
        "kind: scenario\nid: s\ntitle: t\nsteps:\n  - expect: {id: a.b, requirement: r}\n"
    )
    plan_file.write_text("kind: plan\nid: p\ntitle: p\nscenarios: [s.yaml]\n")
    loaded = load_plan(plan_file)
    with pytest.raises(ConfigError, match="unknown target 'somewhere'"):
        factory_for(loaded, "somewhere")
    with pytest.raises(ConfigError) as exc:
        factory_for(loaded, str(lab / "absent.yaml"))
    assert problem(exc) == f"{lab / 'absent.yaml'}: no such file"
    console = Console(width=300, record=True)
    result = CliRunner().invoke(
        main,
        ["--log-level", "debug", "run", str(plan_file), "--target", str(lab / "absent.yaml")],
        obj=console,
    )
    assert result.exit_code == 2
    assert f"invalid input: {lab / 'absent.yaml'}: no such file" in console.export_text()
