from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

from sbcsim.report.junit import junit_text, write_junit
from sbcsim.testplan.results import CheckResult, PlanResult, ScenarioResult

CONTACT_LINE = (
    "dr.contact.fqdn [Direct Routing: SIP signaling — Contact header]: "
    "Contact host is an IP address, Microsoft answers 403"
)
BYE_LINE = "dr.bye.sent [RFC 3261 §15.1.1]: no BYE within 32 s"


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def test_structure_and_exact_content(plan: PlanResult, tmp_path: Path) -> None:
    write_junit(tmp_path / "junit.xml", plan)
    text = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')
    root = parse(text)
    assert root.tag == "testsuites"
    assert root.attrib == {
        "name": "sbcsim",
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
        "time": "0.250",
    }
    (suite,) = root
    assert suite.tag == "testsuite"
    assert suite.attrib == {
        "name": "direct-routing-sbc",
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
        "time": "0.250",
    }
    properties = suite.find("properties")
    assert properties is not None
    assert [p.attrib for p in properties] == [
        {"name": "seed", "value": "42"},
        {"name": "target", "value": "embedded"},
    ]
    cases = suite.findall("testcase")
    assert [c.attrib for c in cases] == [
        {"classname": "direct-routing-sbc", "name": "dr-inbound-basic", "time": "0.013"},
        {"classname": "direct-routing-sbc", "name": "dr-contact-fqdn", "time": "0.020"},
        {"classname": "direct-routing-sbc", "name": "cc-sme-escalation", "time": "0.000"},
        {"classname": "direct-routing-sbc", "name": "dr-refer", "time": "0.001"},
    ]
    passing, failing, skipped, errored = cases
    assert list(passing) == []

    assert [child.tag for child in failing] == ["failure", "system-out"]
    failure = failing[0]
    assert failure.attrib == {"message": f"{CONTACT_LINE}; {BYE_LINE}", "type": "check"}
    assert failure.text == (
        f"{CONTACT_LINE}\n"
        "  expected: sbc.example.com\n"
        "  seen: 192.0.2.20\n"
        "  message: #1\n"
        f"{BYE_LINE}\n"
        "  expected: BYE\n"
        "  seen: nothing"
    )
    out = failing[1].text
    assert out is not None
    assert out.splitlines()[0] == "dr.contact.fqdn at message #1:"
    assert out.splitlines()[3] == (
        ">> #1 0.020               |                           |- INVITE ----------------->|"
    )

    assert [(c.tag, c.attrib, c.text) for c in skipped] == [
        ("skipped", {"message": "target has no contact-center"}, None)
    ]
    assert [(c.tag, c.attrib, c.text) for c in errored] == [
        (
            "error",
            {"message": "KeyError: 'Refer-To'", "type": "error"},
            "KeyError: 'Refer-To'\nTraceback saved to out/dr-refer.traceback",
        )
    ]


def test_one_testsuite_per_plan() -> None:
    first = PlanResult(
        "plan-a",
        "embedded",
        1,
        [ScenarioResult("a1", "A one", "pass", 1.0, 0.5, 1)],
        wall_seconds=0.5,
    )
    second = PlanResult(
        "plan-b",
        "mutant:no-failover",
        2,
        [
            ScenarioResult("b1", "B one", "fail", 1.0, 0.25, 2, error="timed out"),
            ScenarioResult(
                "b2",
                "B two",
                "error",
                0.0,
                0.125,
                3,
                checks=[CheckResult("c", "RFC 3261 §8", "fail", "bad")],
            ),
            ScenarioResult("b3", "B three", "skip", 0.0, 0.0, 4),
        ],
        wall_seconds=0.375,
    )
    root = parse(junit_text([first, second]))
    assert root.attrib == {
        "name": "sbcsim",
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
        "time": "0.875",
    }
    assert [s.attrib["name"] for s in root] == ["plan-a", "plan-b"]
    b_cases = root[1].findall("testcase")
    assert [c.attrib["classname"] for c in b_cases] == ["plan-b"] * 3
    # A failed scenario without failed checks says why it failed.
    assert [(c.tag, c.attrib, c.text) for c in b_cases[0]] == [
        ("failure", {"message": "timed out", "type": "check"}, "timed out")
    ]
    # An error scenario without an error text still says it errored, and lists its failed checks.
    assert [(c.tag, c.attrib, c.text) for c in b_cases[1]] == [
        (
            "error",
            {"message": "internal error", "type": "error"},
            "internal error\nc [RFC 3261 §8]: bad",
        )
    ]
    assert [(c.tag, c.attrib) for c in b_cases[2]] == [("skipped", {"message": "skipped"})]
    properties = root[1].find("properties")
    assert properties is not None
    assert properties[1].attrib == {"name": "target", "value": "mutant:no-failover"}


def test_text_that_xml_cannot_carry_is_replaced() -> None:
    result = PlanResult(
        "p<&>\"'",
        "t",
        0,
        [
            ScenarioResult(
                "s\x00",
                "t",
                "fail",
                0.0,
                0.0,
                0,
                checks=[CheckResult("c", "r", "fail", "line1\nbell\x07 <b>&amp;")],
            )
        ],
    )
    root = parse(junit_text(result))
    case = root[0].find("testcase")
    assert case is not None
    assert case.attrib["classname"] == "p<&>\"'"
    assert case.attrib["name"] == "s\ufffd"
    assert case[0].attrib["message"] == "c [r]: line1\nbell\ufffd <b>&amp;"


def test_same_result_same_bytes(plan: PlanResult) -> None:
    assert junit_text(plan) == junit_text(copy.deepcopy(plan))
    assert junit_text(plan) == junit_text([plan])
