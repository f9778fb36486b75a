"""Kamailio (docker/kamailio/, with rtpengine) as the live SBC under test of the whole plan.

The live test takes a free block of loopback addresses (127.A.B.x), moves the example's target
and Kamailio's defines there, runs ``sbcsim run testplans/direct-routing-sbc.yaml --target ...``
against Kamailio and checks every verdict against docker/kamailio/expected-verdicts.yaml: the
scenarios this proxy configuration passes, and for the others exactly the checks that fail.  A
regression in the live mode or in the configuration changes a verdict and fails it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from sbcsim.errors import PeerMissingError
from sbcsim.testing.kamailio import (
    DEFAULT_ADDRESSES,
    KAMAILIO_DIR,
    ExpectedVerdicts,
    LabAddresses,
    LabStartError,
    ScenarioVerdict,
    compare_verdicts,
    free_loopback_block,
    load_expected,
    prepare_lab,
    read_verdicts,
    run_plan,
    running_sbc,
    start_kamailio,
)
from sbcsim.testplan.plan import load_plan

PLAN = Path(__file__).resolve().parents[2] / "testplans" / "direct-routing-sbc.yaml"
#: The scenarios at the heart of the example: whatever else changes, these pass.
CORE = {
    "inbound-basic-call",
    "outbound-basic-call",
    "options-keepalive",
    "tls-mutual-auth",
    "two-tenants-contact-fqdn",
    "media-srtp-rtcp-mux",
}


def _plan_ids() -> set[str]:
    return {s.id for s in load_plan(PLAN).scenarios}


def test_the_expected_verdicts_cover_the_plan_once() -> None:
    expected = load_expected()
    groups = [expected.passing, set(expected.failing), expected.skipped]
    assert sum(len(g) for g in groups) == len(set().union(*groups))
    assert set().union(*groups) == _plan_ids()
    assert expected.passing >= CORE
    assert all(checks for checks in expected.failing.values())


def test_compare_verdicts_names_every_difference() -> None:
    expected = ExpectedVerdicts(frozenset({"a", "b"}), {"c": ("c.one", "c.two")}, frozenset({"d"}))
    actual = {
        "a": ScenarioVerdict("pass"),
        "b": ScenarioVerdict("fail", ("b.x",)),
        "c": ScenarioVerdict("fail", ("c.two", "c.one")),
        "e": ScenarioVerdict("pass"),
    }
    assert compare_verdicts(expected, actual) == [
        "b: expected pass (no failing check), got fail (b.x)",
        "d: expected skip, but the plan did not run it",
        "e: not in expected-verdicts.yaml (got pass)",
    ]


def test_the_target_and_the_config_agree_on_the_addresses() -> None:
    target = (KAMAILIO_DIR / "target.yaml").read_text()
    config = (KAMAILIO_DIR / "kamailio.cfg").read_text()
    a = DEFAULT_ADDRESSES
    assert f"#!define SBC_IP {a.sbc}\n" in config
    for i, proxy in enumerate(a.proxies, start=1):
        assert f'#!define PROXY{i}_IP "{proxy}"\n' in config
        assert f"address: {proxy}, port: 5061" in target
    assert f'#!define PSTN_URI "sip:{a.pstn}:5060"\n' in config
    assert f"pstn: {{address: {a.pstn}, port: 5060}}" in target
    assert f"address: {a.sbc}, port: 5061, transport: tls" in target
    assert f'#!define RTPENGINE_SOCK "udp:{a.sbc}:{a.rtpengine_port}"\n' in config


@pytest.mark.interop
def test_kamailio_gets_exactly_the_expected_verdicts(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("kamailio")
    require_peer("rtpengine")
    lab = prepare_lab(tmp_path / "lab", free_loopback_block())
    with running_sbc(lab) as sbc:
        run = run_plan(lab, tmp_path / "out")
        sbc.check_alive()
    assert run.report.is_file(), run.stdout + run.stderr
    actual = read_verdicts(run.report)
    expected = load_expected()
    assert compare_verdicts(expected, actual) == [], run.stdout
    passing = {s for s, v in actual.items() if v.verdict == "pass"}
    assert passing == expected.passing
    assert passing >= CORE
    # some scenarios fail (the transfers Kamailio does not run), so `sbcsim run` exits 1
    assert run.returncode == (1 if expected.failing else 0), run.stdout + run.stderr
    suites = ET.parse(run.junit).getroot()
    assert int(suites.attrib["tests"]) == len(actual)
    assert int(suites.attrib["failures"]) == len(expected.failing)
    assert suites.attrib["errors"] == "0"
    # the whole plan against a live SBC stays within a bounded wall time
    assert run.wall_seconds < 600.0


@pytest.mark.interop
def test_kamailio_on_a_taken_address_fails_at_once_naming_it(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("kamailio")
    addresses: LabAddresses = free_loopback_block()
    lab = prepare_lab(tmp_path / "lab", addresses)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((addresses.sbc, 5060))
        with pytest.raises(LabStartError) as caught:
            start_kamailio(lab, timeout=10.0)
    message = str(caught.value)
    assert message.startswith(
        f"kamailio exited with code 255 while starting on {addresses.sbc}:5061/tls and "
        f"{addresses.sbc}:5060/udp: something already listens on"
    )
    assert str(lab.kamailio_log) in message


def test_a_missing_peer_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sbcsim.testing.kamailio as kamailio

    monkeypatch.setattr(kamailio, "find_peer", lambda program: None)
    with pytest.raises(PeerMissingError) as caught:
        kamailio._require("rtpengine")
    assert str(caught.value) == (
        "rtpengine is not installed (Debian package 'rtpengine-daemon'; `make peers` installs it)"
    )


@pytest.mark.interop
def test_kamailio_with_a_foreign_certificate_stops_the_run_at_once(
    tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    require_peer("kamailio")
    require_peer("rtpengine")
    lab = prepare_lab(tmp_path / "lab", free_loopback_block())
    # Kamailio presents a certificate of another CA than the one the proxies trust
    other = tmp_path / "other"
    done = subprocess.run(
        [sys.executable, "-m", "sbcsim", "certs", "--out", str(other)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for suffix in ("pem", "key"):
        name = f"wildcard.customers.example.com.{suffix}"
        shutil.copyfile(other / name, lab.certs / name)
    with running_sbc(lab) as sbc:
        run = run_plan(lab, tmp_path / "out", select="inbound-basic-call", timeout=60)
        sbc.check_alive()
    assert run.returncode == 2, run.stdout + run.stderr
    text = " ".join(run.stdout.split())
    sbc_at = f"{lab.addresses.sbc}:5061/tls"
    assert (
        f"the SBC under test at {sbc_at} (its Microsoft side): TLS failed, its certificate "
        "does not hold (unable to get local issuer certificate): it must chain to "
        f"{lab.certs / 'ca.pem'} and cover sbc.customers.example.com (DR Part 7.3)"
    ) in text
    assert not run.report.exists()
