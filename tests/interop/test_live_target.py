"""``sbcsim run --target TARGET.yaml`` against the reference SBC run as an external process.

Each test takes a free block of loopback addresses (127.A.B.x: the SBC on .2, the proxies on .11
to .13, the carrier on .21), so the example target's ports (5061/5060) can be kept — the
scenarios check the SBC's Contact port — without clashing with anything else on the host.  The
example target file is copied with those addresses, the certificates come from ``sbcsim
certs``, and the SBC is ``python -m sbcsim sbc``; every wait has a bound.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from sbcsim.config import load_model
from sbcsim.config.commands import certs as certs_command
from sbcsim.net.base import Address, PeerInfo
from sbcsim.net.live import LiveTransport
from sbcsim.scenario.engine import CheckSkipped, ScenarioError, run_scenario
from sbcsim.scenario.liveworld import LiveWorld
from sbcsim.scenario.models import Scenario
from sbcsim.target import load_target
from sbcsim.topology import load_topology

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reference-sbc" / "target.yaml"
PLAN = REPO / "testplans" / "direct-routing-sbc.yaml"
SCENARIO = REPO / "scenarios" / "direct-routing" / "inbound-basic-call.yaml"
#: Bounds (seconds): the SBC's start-up banner, one `sbcsim run`, the SBC's shutdown.
SBC_START = 30.0
RUN_TIMEOUT = 120.0
SBC_STOP = 15.0
INBOUND_CHECKS = [
    "inbound.invite-e164-user-phone",
    "inbound.contact-is-tenant-fqdn",
    "inbound.x-ms-sbc",
    "inbound.srtp-offer",
    "inbound.ringing-reaches-pstn",
    "inbound.answered",
    "inbound.ack",
    "inbound.bye-to-microsoft",
    "inbound.bye-answered",
]


@dataclass(frozen=True)
class LiveSetup:
    directory: Path
    prefix: str  # 127.A.B
    topology: Path
    certs: Path
    target: Path

    @property
    def sbc_host(self) -> str:
        return f"{self.prefix}.2"


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _loopback_block() -> str:
    """A 127.A.B prefix whose addresses the lab needs are all free."""
    rng = random.Random()
    for _ in range(50):
        prefix = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        wanted = [
            (f"{prefix}.2", 5061, socket.SOCK_STREAM),
            (f"{prefix}.2", 5060, socket.SOCK_DGRAM),
            *((f"{prefix}.{11 + i}", 5061, socket.SOCK_STREAM) for i in range(3)),
            (f"{prefix}.21", 5060, socket.SOCK_DGRAM),
        ]
        if all(_bindable(*w) for w in wanted):
            return prefix
    raise AssertionError("no free block of loopback addresses")


def make_setup(directory: Path, *, warmup: float = 1.0) -> LiveSetup:
    """The example target, moved to a free loopback block, with its topology and certificates."""
    prefix = _loopback_block()
    data: dict[str, Any] = load_topology(None).model_dump(mode="json")
    data["sbc"]["microsoft_side"]["address"] = f"{prefix}.2"
    data["sbc"]["pstn_side"]["address"] = f"{prefix}.2"
    for i, proxy in enumerate(data["microsoft"]["proxies"]):
        proxy["address"] = f"{prefix}.{11 + i}"
    data["pstn"]["address"] = f"{prefix}.21"
    data["contact_center"]["address"] = f"{prefix}.31"
    topology = directory / "topology.yaml"
    topology.write_text(yaml.safe_dump(data, sort_keys=False))
    certs = directory / "certs"
    result = CliRunner().invoke(certs_command, ["--out", str(certs), "--topology", str(topology)])
    assert result.exit_code == 0, result.output
    target: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    target["sbc"]["microsoft_side"]["address"] = f"{prefix}.2"
    target["sbc"]["pstn_side"]["address"] = f"{prefix}.2"
    for i, bound in enumerate(target["bind"]["proxies"].values()):
        bound["address"] = f"{prefix}.{11 + i}"
    target["bind"]["pstn"]["address"] = f"{prefix}.21"
    target["topology"] = "topology.yaml"
    # the reference SBC pings every 60 s from its own start: no OPTIONS comes in either window
    target["warmup"] = warmup
    path = directory / "target.yaml"
    path.write_text(yaml.safe_dump(target, sort_keys=False))
    return LiveSetup(directory, prefix, topology, certs, path)


@contextmanager
def external_sbc(setup: LiveSetup, mutant: str | None = None) -> Iterator[list[str]]:
    """``python -m sbcsim sbc`` until the block ends; yields its output lines so far."""
    args = [sys.executable, "-m", "sbcsim", "sbc", "--topology", str(setup.topology)]
    args += ["--certs", str(setup.certs)]
    if mutant is not None:
        args += ["--mutant", mutant]
    process = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    arrived: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            arrived.put(line)
        arrived.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + SBC_START
        while not any("Ctrl-C stops it" in line for line in lines):
            try:
                line = arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the SBC did not start:\n" + "".join(lines)) from None
            if line is None:
                raise AssertionError("the SBC exited early:\n" + "".join(lines))
            lines.append(line)
        assert f"listening microsoft tls {setup.sbc_host}:5061\n" in lines
        yield lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(SBC_STOP)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(SBC_STOP)


def sbcsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sbcsim", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def run_inbound(setup: LiveSetup, name: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    junit, report = setup.directory / f"{name}.xml", setup.directory / f"{name}.json"
    done = sbcsim(
        "run", str(PLAN), "--target", str(setup.target), "-k", "inbound-basic-call",
        "--junit", str(junit), "--json", str(report),
    )  # fmt: skip
    return done, junit, report


def checks_of(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    (scenario,) = [s for s in data["scenarios"] if s["id"] == "inbound-basic-call"]
    return {c["id"]: c["verdict"] for c in scenario["checks"]}


def test_the_reference_sbc_passes_inbound_basic_call_live(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    with external_sbc(setup):
        done, junit, report = run_inbound(setup, "reference")
    assert done.returncode == 0, done.stdout + done.stderr
    suites = ET.parse(junit).getroot()
    assert suites.attrib["tests"] == "1"
    assert suites.attrib["failures"] == suites.attrib["errors"] == "0"
    (suite,) = suites.findall("testsuite")
    assert suite.attrib["name"] == "direct-routing-sbc"
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert properties["target"] == str(setup.target)
    (case,) = suite.findall("testcase")
    assert case.attrib["name"] == "inbound-basic-call"
    assert list(case) == []  # no failure, error or skipped element
    assert checks_of(report) == dict.fromkeys(INBOUND_CHECKS, "pass")
    data = json.loads(report.read_text())
    assert data["target"] == str(setup.target)
    # real time: the warm-up, Alice's 2 s of ringing, the 5 s wait
    assert 8.0 <= data["wall_seconds"] < 60.0


def test_a_mutant_without_x_ms_sbc_fails_that_check_live(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    with external_sbc(setup, mutant="no-x-ms-sbc") as lines:
        assert any("mutant: no-x-ms-sbc" in line for line in lines)
        done, junit, report = run_inbound(setup, "mutant")
    assert done.returncode == 1, done.stdout + done.stderr
    verdicts = checks_of(report)
    assert {c for c, v in verdicts.items() if v == "fail"} == {"inbound.x-ms-sbc"}
    assert len(verdicts) == len(INBOUND_CHECKS)
    (case,) = ET.parse(junit).getroot().iter("testcase")
    (failure,) = case.findall("failure")
    assert failure.attrib["message"].startswith("inbound.x-ms-sbc [DR Part 12 SBC 5 [OBS]")


def test_the_live_trace_names_parties_and_keeps_real_addresses(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    target = load_target(setup.target)
    inbound = load_model(SCENARIO, Scenario)
    with external_sbc(setup):
        result = run_scenario(inbound, lambda s, seed: LiveWorld(s, seed, target), 7)
    assert result.verdict == "pass", [c for c in result.checks if c.verdict != "pass"]
    trace = result.trace
    assert [e.index for e in trace] == list(range(len(trace)))
    assert all(a.time <= b.time for a, b in itertools.pairwise(trace))
    first = trace[0]
    assert first.summary.startswith("INVITE sip:+14255550101@")
    assert (first.src_name, first.dst_name, first.transport) == ("pstn", "sbc", "udp")
    assert first.src == (f"{setup.prefix}.21", 5060)
    assert first.dst == (setup.sbc_host, 5060)
    to_microsoft = [e for e in trace if e.dst_name == "sip.pstnhub.microsoft.com"]
    assert to_microsoft and all(e.transport == "tls" for e in to_microsoft)
    assert {e.dst for e in to_microsoft} == {(f"{setup.prefix}.11", 5061)}
    assert to_microsoft[0].data.startswith(b"INVITE sip:+14255550101@sip.pstnhub.microsoft.com")
    from_microsoft = [e for e in trace if e.src_name == "sip.pstnhub.microsoft.com"]
    # responses leave on the connection the SBC opened: back to the address it came from
    assert {e.dst for e in from_microsoft} <= {e.src for e in to_microsoft}
    assert {e.src for e in from_microsoft} == {(f"{setup.prefix}.11", 5061)}


def test_a_target_whose_sbc_is_not_running_exits_2_naming_the_address(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    started = time.monotonic()
    done = sbcsim("run", str(PLAN), "--target", str(setup.target), "-k", "inbound-basic-call")
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert (
        f"the SBC under test at {setup.sbc_host}:5061/tls (its Microsoft side): nothing is "
        "listening there; is the SBC started?" in text
    )
    assert f"{setup.target}:" in text
    assert time.monotonic() - started < 30.0


def test_a_silent_sbc_fails_its_checks_within_bounds(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, warmup=0.5)
    # something accepts connections on the SBC's address but never speaks (no TLS, no SIP)
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((setup.sbc_host, 5061))
    silent.listen(8)
    scenario = tmp_path / "no-answer.yaml"
    scenario.write_text(
        "kind: scenario\nid: live-no-sbc\ntitle: nobody home\n"
        "actors:\n  caller: {pstn: '+13125550101'}\n  callee: {teams: alice.archer@contoso.example}\n"
        "steps:\n"
        "  - call: {from: caller, to: callee, as: c1}\n"
        "  - expect: {id: x.invite, requirement: r, from: sbc, to: microsoft, request: INVITE,"
        " within: 2}\n"
        "  - expect: {id: x.ringing, requirement: r, from: sbc, to: pstn, status: 180, within: 1}\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"kind: plan\nid: p\ntitle: p\nscenarios: [{scenario.name}]\n")
    report = tmp_path / "r.json"
    started = time.monotonic()
    with silent:
        done = sbcsim("run", str(plan), "--target", str(setup.target), "--json", str(report))
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    (result,) = json.loads(report.read_text())["scenarios"]
    assert result["verdict"] == "fail"
    assert [(c["id"], c["verdict"]) for c in result["checks"]] == [
        ("x.invite", "fail"),
        ("x.ringing", "fail"),
    ]
    # the closest message is the carrier's own INVITE: nothing came out of the SBC
    assert result["checks"][0]["message"] == (
        "x.invite: sent by pstn, expected sbc; sent to sbc, expected microsoft"
    )
    assert result["checks"][1]["message"] == (
        "x.ringing: no matching message within 1 virtual seconds"
    )
    # 0.5 s warm-up + 2 s + 1 s of waiting, plus start-up: well below the run's own bound (the
    # check before the run waits at most 3 s for a handshake that never comes)
    assert 3.5 <= result["wall_seconds"] < 10.0
    assert elapsed < 35.0


def test_a_missing_certificate_exits_2_naming_the_file(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    missing = setup.certs / "sip2.pstnhub.microsoft.com.key"
    missing.unlink()
    done = sbcsim("run", str(PLAN), "--target", str(setup.target), "-k", "inbound-basic-call")
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert f"certificate file {missing} does not exist" in text
    assert f"{setup.target}:" in text


def test_an_address_in_use_exits_2_naming_it(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((f"{setup.prefix}.12", 5061))
        taken.listen(1)
        done = sbcsim("run", str(PLAN), "--target", str(setup.target), "-k", "inbound-basic-call")
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert (
        f"sbcsim cannot listen as sip2.pstnhub.microsoft.com: {setup.prefix}.12:5061/tls is "
        "already in use" in text
    )


def test_a_live_world_probes_its_own_parties_and_releases_its_addresses(tmp_path: Path) -> None:
    setup = make_setup(tmp_path)
    target = load_target(setup.target)
    inbound = load_model(SCENARIO, Scenario)
    for _ in range(2):  # the second world binds the very addresses the first one released
        world = LiveWorld(inbound, 1, target)
        try:
            assert 0.0 <= world.now() < 5.0
            with pytest.raises(CheckSkipped, match="counts the reference SBC's calls"):
                world.probe({"sbc_active_calls": 0}, {})
            ok, _, seen = world.probe(
                {"presence": {"user": "alice.archer@contoso.example", "availability": "Available"}},
                {},
            )
            assert ok, seen
            assert not world.run_until(lambda: False, 0.05)
            assert world.trace() == []
        finally:
            world.close()
    with pytest.raises(ScenarioError, match="the live world is closed"):
        world.run_for(0.01)


async def test_a_proxy_connects_from_its_own_address(tmp_path: Path) -> None:
    """An SBC sees a proxy's own connections (its OPTIONS, its calls) come from the proxy's
    address, not from whatever address the OS would pick (127.0.0.1 on loopback)."""
    prefix = _loopback_block()
    seen: list[PeerInfo] = []

    class Sink:
        def message_received(self, data: bytes, peer: PeerInfo) -> None:
            seen.append(peer)

        def transport_error(self, remote: Address, transport: str, exc: object) -> None:
            pass

    server = LiveTransport(Sink())
    client = LiveTransport(Sink(), source_host=f"{prefix}.11")
    try:
        bound = await server.listen_tcp(f"{prefix}.2", 0)
        client.send(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n", bound, "tcp")
        async with asyncio.timeout(5.0):
            while not seen:
                await asyncio.sleep(0.01)
        assert seen[0].remote[0] == f"{prefix}.11"
        assert client.connections()[0].local[0] == f"{prefix}.11"
    finally:
        await asyncio.wait_for(asyncio.gather(server.aclose(), client.aclose()), 5.0)


def test_python_dash_m_sbcsim_is_the_command_line() -> None:
    done = sbcsim("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("sbcsim, version ")
