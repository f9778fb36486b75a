"""`sbcsim run` end to end: exit codes, the report contract and the artefacts a partner keeps."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from sbcsim.cli import main
from sbcsim.report import validate_report

ROOT = Path(__file__).resolve().parent.parent.parent
PLAN = ROOT / "testplans" / "direct-routing-sbc.yaml"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_reference_sbc_passes_and_reports_follow_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, text = _run(
        str(PLAN),
        "-k",
        "inbound-basic-call",
        "--json",
        str(tmp_path / "r.json"),
        "--junit",
        str(tmp_path / "j.xml"),
        "--out",
        str(out),
    )
    assert code == 0, text
    report = json.loads((tmp_path / "r.json").read_text())
    assert validate_report(report) == []
    assert report["schema"] == "sbcsim.report/1"
    assert (
        report["plan"] == "direct-routing-sbc"
        and report["target"] == "embedded"
        and report["seed"] == 1
    )
    assert report["summary"]["passed"] == 1 and report["summary"]["failed"] == 0
    (scenario,) = report["scenarios"]
    assert scenario["id"] == "inbound-basic-call" and scenario["verdict"] == "pass"
    assert {c["id"] for c in scenario["checks"]} >= {
        "inbound.contact-is-tenant-fqdn",
        "inbound.x-ms-sbc",
        "inbound.ack",
    }
    assert all(c["verdict"] == "pass" for c in scenario["checks"])
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    (case,) = suite.findall("testcase")
    assert case.get("name") == "inbound-basic-call" and case.find("failure") is None
    assert (out / "inbound-basic-call.pcap").stat().st_size > 1000
    lines = (out / "inbound-basic-call.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["index"] == 0


def test_a_mutant_fails_with_exit_1_and_names_the_check(tmp_path: Path) -> None:
    code, text = _run(
        str(PLAN),
        "-k",
        "inbound-basic-call",
        "--target",
        "mutant:no-x-ms-sbc",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    failed = [c for s in report["scenarios"] for c in s["checks"] if c["verdict"] == "fail"]
    assert [c["id"] for c in failed] == ["inbound.x-ms-sbc"]
    assert "no X-MS-SBC header" in failed[0]["message"]
    assert "replay inbound-basic-call: sbcsim run" in text and "--seed 1" in text


def test_same_seed_same_report_and_pcap(tmp_path: Path) -> None:
    for run in ("a", "b"):
        code, _ = _run(
            str(PLAN),
            "-k",
            "inbound-basic-call",
            "--out",
            str(tmp_path / run),
            "--json",
            str(tmp_path / f"{run}.json"),
        )
        assert code == 0
    assert (tmp_path / "a" / "inbound-basic-call.pcap").read_bytes() == (
        tmp_path / "b" / "inbound-basic-call.pcap"
    ).read_bytes()
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != "wall_seconds"}  # noqa: E731
    a, b = strip(tmp_path / "a.json"), strip(tmp_path / "b.json")
    for s in (*a["scenarios"], *b["scenarios"]):
        s.pop("wall_seconds")
    assert a == b


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "mutant:no-such-mutant"], "unknown mutant 'no-such-mutant'"),
        (["-k", "nothing-matches-this"], "no scenario of direct-routing-sbc matches"),
        (["-k", "(inbound"], "unbalanced parentheses"),
    ],
)
def test_bad_usage_exits_2_with_a_message(args: list[str], message: str) -> None:
    code, text = _run(str(PLAN), *args)
    assert code == 2
    assert message in text


def test_an_invalid_plan_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "plan.yaml"
    bad.write_text("kind: plan\nid: x\ntitle: t\nscenarios: []\nseed: minus one\n")
    code, text = _run(str(bad))
    assert code == 2
    assert f"{bad}:4:12: scenarios:" in text.replace("\n", "")
    assert f"{bad}:5:7: seed:" in text.replace("\n", "")


def test_list_shows_ids_titles_tags_and_requirements() -> None:
    result = CliRunner(env={"COLUMNS": "300"}).invoke(
        main, ["list", str(PLAN)], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "inbound-basic-call" in result.output and "DR Part 2.1" in result.output


@pytest.mark.interop
def test_pcap_from_run_decodes_as_sip_in_tshark(tmp_path: Path, require_peer) -> None:  # type: ignore[no-untyped-def]
    tshark = require_peer("tshark")
    code, _ = _run(str(PLAN), "-k", "inbound-basic-call", "--out", str(tmp_path))
    assert code == 0
    fields = subprocess.run(
        [
            tshark,
            "-r",
            str(tmp_path / "inbound-basic-call.pcap"),
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    methods = [line.split("\t")[0] for line in fields if line.strip()]
    assert {"OPTIONS", "INVITE", "ACK", "BYE"} <= set(methods)
    statuses = {line.split("\t")[1] for line in fields if "\t" in line and line.split("\t")[1]}
    assert {"100", "180", "200"} <= statuses


@pytest.mark.interop
def test_html_report_from_run_renders_the_ladder_in_chromium(tmp_path: Path, require_peer) -> None:  # type: ignore[no-untyped-def]
    chromium = require_peer("chromium")
    html = tmp_path / "report.html"
    code, _ = _run(
        str(PLAN), "-k", "inbound-basic-call", "--target", "mutant:no-x-ms-sbc", "--html", str(html)
    )
    assert code == 1
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    marker = 'data-ladder-summary="'
    assert marker in dom
    summary = json.loads(dom.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    assert summary["ladders"] == 1
    assert summary["arrows"] > 20 and summary["drawn"] == summary["arrows"]
    assert len(summary["failing"]) == 1


def test_reports_go_into_directories_that_do_not_exist_yet(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    code, text = _run(
        str(PLAN),
        "-k",
        "inbound-basic-call",
        "--junit",
        str(deep / "j.xml"),
        "--json",
        str(deep / "r.json"),
        "--html",
        str(deep / "r.html"),
    )
    assert code == 0, text
    assert {p.name for p in deep.iterdir()} == {"j.xml", "r.json", "r.html"}
