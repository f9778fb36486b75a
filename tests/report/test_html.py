from __future__ import annotations

import copy
import html
import json
import os
import re
import signal
import struct
import subprocess
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sbcsim.report.html import html_text, write_html
from sbcsim.testplan.results import PlanResult, ScenarioResult, TraceEntry

WINDOW = (1280, 2200)
FAIL_RED = (0xD0, 0x02, 0x1B)


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text = tag, attrs, ""

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class Collector(HTMLParser):
    """Every start tag with its attributes, and the text of ``pre`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.doctype = ""
        self._open_pre: Element | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag == "pre":
            self._open_pre = element

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._open_pre = None

    def handle_data(self, data: str) -> None:
        if self._open_pre is not None:
            self._open_pre.text += data

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.elements
            if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
        ]

    def by_id(self, ident: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == ident]
        return element


def collect(text: str) -> Collector:
    parser = Collector()
    parser.feed(text)
    parser.close()
    return parser


def test_self_contained_document(plan: PlanResult) -> None:
    text = html_text(plan)
    doc = collect(text)
    assert doc.doctype == "DOCTYPE html"
    assert [e.tag for e in doc.find("style")] == ["style"]
    assert [e.attrs for e in doc.find("script")] == [{}]  # inline, no src
    assert doc.find("link") == [] and doc.find("img") == [] and doc.find("iframe") == []
    assert [e for e in doc.elements if "src" in e.attrs] == []
    assert {e.attrs["href"][0] for e in doc.elements if "href" in e.attrs} == {"#"}
    (csp,) = [e for e in doc.find("meta") if e.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp.attrs["content"].startswith("default-src 'none';")
    assert "url(" not in text and "@import" not in text


def test_summary_sections_and_filters(plan: PlanResult) -> None:
    doc = collect(html_text(plan))
    sections = doc.find("section", "scenario")
    assert [
        (s.attrs["id"], s.attrs["data-verdict"], s.attrs["data-scenario"]) for s in sections
    ] == [
        ("s0", "pass", "dr-inbound-basic"),
        ("s1", "fail", "dr-contact-fqdn"),
        ("s2", "skip", "cc-sme-escalation"),
        ("s3", "error", "dr-refer"),
    ]
    rows = [e for e in doc.find("tr") if "data-verdict" in e.attrs]
    assert [r.attrs["data-verdict"] for r in rows] == ["pass", "fail", "skip", "error"]
    boxes = [e for e in doc.find("input") if e.attrs.get("type") == "checkbox"]
    assert [(b.attrs["value"], "checked" in b.attrs) for b in boxes] == [
        ("pass", True),
        ("fail", True),
        ("skip", True),
        ("error", True),
    ]
    body = doc.find("body")[0]
    assert body.attrs == {"data-exit-code": "3"}


def test_ladder_arrows_failing_mark_and_full_message_text(plan: PlanResult) -> None:
    doc = collect(html_text(plan))
    ladders = doc.find("svg", "ladder")
    assert [s.attrs["data-scenario"] for s in ladders] == ["dr-inbound-basic", "dr-contact-fqdn"]
    arrows = doc.find("g", "arrow")
    assert [a.attrs["id"] for a in arrows] == [f"as{s}-{i}" for s in (0, 1) for i in range(6)]
    failing = doc.find("g", "failing")
    assert [(a.attrs["id"], a.attrs["data-index"]) for a in failing] == [("as1-1", "1")]
    # Every arrow points at a hidden <pre> holding the message, byte for byte.
    for arrow in arrows:
        scenario = plan.scenarios[int(arrow.attrs["id"][2])]
        position = int(arrow.attrs["id"].split("-")[1])
        pre = doc.by_id(arrow.attrs["data-msg"])
        assert pre.text == scenario.trace[position].data.decode()
    head = doc.by_id("ms1-1").attrs["data-head"]
    assert head == (
        "#1 at 0.020 s, TLS sbc (192.0.2.20:40001) → sip.pstnhub.microsoft.com (52.114.148.0:5061)"
    )
    # The failed check links to its arrow.
    (goto,) = doc.find("a", "goto")[1:]
    assert goto.attrs == {"class": "goto", "href": "#as1-1", "data-arrow": "as1-1"}


def test_message_text_is_escaped() -> None:
    hostile = b'MESSAGE sip:x SIP/2.0\r\nSubject: </pre><script>alert("x")</script>\x00\r\n\r\n'
    result = PlanResult(
        "p",
        "t",
        1,
        [
            ScenarioResult(
                'a"<b>',
                "<i>t</i>",
                "pass",
                0.0,
                0.0,
                1,
                trace=[
                    TraceEntry(0, 0.0, ("::1", 5060), ("::1", 5062), "udp", hostile, "x<y>", "z&w")
                ],
            )
        ],
    )
    text = html_text(result)
    doc = collect(text)
    assert len(doc.find("script")) == 1
    assert doc.by_id("ms0-0").text == hostile.decode().replace("\x00", "\ufffd")
    assert doc.find("section")[0].attrs["data-scenario"] == 'a"<b>'
    assert "<i>" not in text
    assert (
        doc.by_id("ms0-0").attrs["data-head"]
        == "#0 at 0.000 s, UDP x<y> ([::1]:5060) → z&w ([::1]:5062)"
    )


def test_same_result_same_bytes(plan: PlanResult, tmp_path: Path) -> None:
    assert html_text(plan) == html_text(copy.deepcopy(plan))
    write_html(tmp_path / "r.html", plan)
    assert (tmp_path / "r.html").read_bytes() == html_text(plan).encode("utf-8")


# --- a real headless Chromium ---------------------------------------------------------------


def run_chromium(binary: str, profile: Path, *args: str) -> str:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(profile), "LC_ALL": "C"}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the browser and its helpers, nothing else
        process.communicate()
        raise
    assert process.returncode == 0, err[-2000:]
    return out


def dom_attribute(dom: str, tag: str, name: str) -> str:
    match = re.search(rf"<{tag}\b[^>]*\s{name}=\"([^\"]*)\"", dom)
    assert match is not None, f"no {tag}[{name}] in the rendered DOM"
    return html.unescape(match.group(1))


@pytest.mark.interop
def test_chromium_lays_out_the_ladder_and_marks_the_failing_arrow(
    plan: PlanResult, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    chromium = require_peer("chromium")
    page = tmp_path / "report.html"
    write_html(page, plan)
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    summary = json.loads(dom_attribute(dom, "body", "data-ladder-summary"))
    (failing,) = summary.pop("failing")
    assert summary == {"ladders": 2, "arrows": 12, "drawn": 12}
    shaft = failing.pop("shaft")
    assert failing == {"scenario": "dr-contact-fqdn", "index": 1, "drawn": True}
    left, top, width, height = shaft
    # A horizontal SVG line has a zero-height geometry box; its stroke is painted around it.
    assert width > 100 and height >= 0 and 0 < top < WINDOW[1] and left > 0
    assert dom_attribute(dom, "body", "data-ready") == "1"
    # The page opened the failing message in the viewer: the click handler's path ran.
    assert dom_attribute(dom, "section", "data-shown") == "1"
    viewer = re.search(r'<pre class="viewer-text">(.*?)</pre>', dom[dom.index('id="s1"') :], re.S)
    assert viewer is not None
    # (HTML parsing normalises CRLF to LF in text.)
    expected = plan.scenarios[1].trace[1].data.decode().replace("\r\n", "\n")
    assert html.unescape(viewer.group(1)) == expected

    # The same layout, painted: the failing arrow's shaft is drawn in the failing red.
    png = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={png}", page.as_uri())
    width_px, height_px, pixel = decode_png(png.read_bytes(), limit=top + height + 3)
    assert (width_px, height_px) == WINDOW
    reds = max(
        sum(1 for x in range(left + 2, left + width - 2) if pixel(x, y) == FAIL_RED)
        for y in range(top + height // 2 - 1, top + height // 2 + 2)
    )
    assert reds >= (width - 4) * 0.9
    # The arrow one row up (#0, pstn -> sbc, left of the failing one) is drawn, and not red.
    row = top + height // 2 - 30
    span = range(left - 180, left - 20)
    assert not any(pixel(x, y) == FAIL_RED for x in span for y in (row - 1, row, row + 1))
    assert any(pixel(x, y) != pixel(left - 180, 0) for x in span for y in (row - 1, row, row + 1))
    # And the page is not blank.
    samples = {pixel(x, y) for x in range(0, width_px, 7) for y in range(0, top, 7)}
    assert len(samples) > 20


@pytest.mark.interop
def test_chromium_applies_the_verdict_filter_from_the_address(
    plan: PlanResult, tmp_path: Path, require_peer: Callable[[str], str]
) -> None:
    chromium = require_peer("chromium")
    page = tmp_path / "report.html"
    write_html(page, plan)
    dom = run_chromium(
        chromium, tmp_path / "profile", "--dump-dom", page.as_uri() + "#verdict=fail,error"
    )
    sections = re.findall(r"<section ([^>]*)>", dom)
    visible = {
        re.search(r'data-verdict="(\w+)"', attrs).group(1): "hidden" not in attrs  # type: ignore[union-attr]
        for attrs in sections
    }
    assert visible == {"pass": False, "fail": True, "skip": False, "error": True}
    rows = re.findall(r"<tr ([^>]*data-verdict[^>]*)>", dom)
    assert ["hidden" in attrs for attrs in rows] == [True, False, True, False]
    boxes = re.findall(r'<input type="checkbox" value="(\w+)"', dom)
    assert boxes == ["pass", "fail", "skip", "error"]


def decode_png(
    data: bytes, limit: int
) -> tuple[int, int, Callable[[int, int], tuple[int, int, int]]]:
    """A minimal PNG reader (8-bit RGB/RGBA, not interlaced) of the first ``limit`` rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack("!I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack("!IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(min(limit, height)):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        previous = line

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        row = rows[y]
        return row[x * bpp], row[x * bpp + 1], row[x * bpp + 2]

    return width, height, pixel
