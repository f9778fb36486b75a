"""Reports drawn from a :class:`~sbcsim.testplan.results.PlanResult`.

Terminal (rich renderables), JSON (``sbcsim.report/1`` and its schema), JUnit XML, a
self-contained HTML file with ladder diagrams, and per-scenario pcap and JSON-lines traces.
Every writer is a pure function of the result, so the same result gives the same bytes.
"""

from __future__ import annotations

from sbcsim.report.html import html_text, write_html
from sbcsim.report.jsonreport import (
    REPORT_JSON_SCHEMA,
    json_text,
    schema_text,
    validate_report,
    write_json,
    write_schema,
)
from sbcsim.report.junit import junit_text, write_junit
from sbcsim.report.ladder import Arrow, Ladder, LadderView
from sbcsim.report.pcap import (
    jsonl_lines,
    pcap_bytes,
    write_jsonl,
    write_pcap,
    write_scenario_traces,
)
from sbcsim.report.terminal import FailureReport, PlanReport, PlanSummary, render

__all__ = [
    "REPORT_JSON_SCHEMA",
    "Arrow",
    "FailureReport",
    "Ladder",
    "LadderView",
    "PlanReport",
    "PlanSummary",
    "html_text",
    "json_text",
    "jsonl_lines",
    "junit_text",
    "pcap_bytes",
    "render",
    "schema_text",
    "validate_report",
    "write_html",
    "write_json",
    "write_jsonl",
    "write_junit",
    "write_pcap",
    "write_scenario_traces",
    "write_schema",
]
