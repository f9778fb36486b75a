"""The HTML report: one self-contained file a person opens after a failed run.

Everything is inline (CSS, script, SVG) and a Content-Security-Policy forbids any fetch, so the
file can be mailed, attached to a CI job or opened offline, and message text from a misbehaving
SBC can never pull anything in.  Per scenario it draws the ladder as SVG from the same
:class:`~sbcsim.report.ladder.Ladder` model as the terminal, marks the arrow a failed check
points at (class ``failing``), and shows a message's full text when its arrow is clicked.  A
verdict filter hides passing scenarios; ``#verdict=fail,error`` in the address presets it.

On load the page writes a summary of what it actually laid out (arrows with a non-zero box, and
the failing ones) into ``body[data-ladder-summary]``, so a headless browser test can tell that
the ladder was rendered rather than merely present in the markup.

The output depends only on the result (no generation time, ids derived from positions), so the
same result gives the same bytes.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from sbcsim.report.ladder import Arrow, Ladder
from sbcsim.report.terminal import summary_line
from sbcsim.testplan.results import PlanResult, ScenarioResult, Verdict

__all__ = ["html_text", "write_html"]

# SVG geometry (pixels).
_GUTTER = 120
_COLUMN = 200
_TOP = 58
_ROW = 30
_CHAR = 7.2  # width of one 12px monospace character
_VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "skip", "error")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _e(text: object) -> str:
    return escape(_CONTROL.sub("\ufffd", str(text)), quote=True)


def _clip(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    return text[: max(1, chars - 1)] + "…"


_CSS = """
:root { --fg:#1d2330; --muted:#667085; --bg:#ffffff; --panel:#f5f7fa; --line:#c9d1dc;
  --pass:#12805c; --fail:#d0021b; --skip:#a06a00; --error:#8e24aa; --arrow:#2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; color: var(--fg);
  background: var(--bg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0; display: flex; gap: 10px; align-items: baseline; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.meta { color: var(--muted); margin: 4px 0 12px; }
.verdict { display: inline-block; min-width: 48px; padding: 1px 8px; border-radius: 10px;
  color: #fff; font-size: 12px; font-weight: 600; text-align: center; text-transform: uppercase; }
.verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); }
.verdict.skip { background: var(--skip); } .verdict.error { background: var(--error); }
#filters { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 12px 0; }
#filters label { margin-right: 16px; cursor: pointer; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
section.scenario { border: 1px solid var(--line); border-radius: 8px; margin: 18px 0;
  padding: 12px 16px; }
section.scenario.fail { border-left: 6px solid var(--fail); }
section.scenario.error { border-left: 6px solid var(--error); }
.error-text { white-space: pre-wrap; color: var(--error); background: var(--panel);
  padding: 8px; border-radius: 4px; }
table.checks { margin: 8px 0 12px; font-size: 13px; }
tr.check.fail td:first-child, tr.check.error td:first-child { color: var(--fail); font-weight: 600; }
.ladder-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
svg.ladder { display: block; font: 12px ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
svg.ladder .actor-box { fill: var(--panel); stroke: var(--line); }
svg.ladder .actor { font-weight: 600; fill: var(--fg); }
svg.ladder .lifeline { stroke: var(--line); stroke-width: 2; stroke-dasharray: 4 3; }
svg.ladder .arrow { cursor: pointer; }
svg.ladder .arrow .hit { fill: transparent; }
svg.ladder .arrow:hover .hit, svg.ladder .arrow:focus .hit { fill: #e8eefb; }
svg.ladder .arrow .shaft { stroke: var(--arrow); stroke-width: 1.6; fill: none; }
svg.ladder .arrow .head { fill: var(--arrow); }
svg.ladder .arrow .label { fill: var(--fg); }
svg.ladder .arrow .when { fill: var(--muted); }
svg.ladder .arrow.dropped .shaft { stroke-dasharray: 5 4; stroke: var(--muted); }
svg.ladder .arrow.dropped .head { fill: var(--muted); }
svg.ladder .arrow.failing .shaft { stroke: var(--fail); stroke-width: 3.5; }
svg.ladder .arrow.failing .head { fill: var(--fail); }
svg.ladder .arrow.failing .label, svg.ladder .arrow.failing .when { fill: var(--fail);
  font-weight: 700; }
svg.ladder .arrow.failing .hit { fill: #fde8ea; }
svg.ladder .arrow.selected .hit { fill: #dbe6fb; }
.viewer { margin-top: 10px; border: 1px solid var(--line); border-radius: 6px; }
.viewer-head { background: var(--panel); padding: 4px 10px; font-size: 13px;
  color: var(--muted); }
.viewer-text { margin: 0; padding: 10px; max-height: 480px; overflow: auto;
  white-space: pre-wrap; word-break: break-all; font-size: 12px; }
.viewer-text:empty { display: none; }
.empty { color: var(--muted); font-style: italic; }
"""

_SCRIPT = """
(function () {
  "use strict";
  function show(arrow) {
    var section = arrow.closest("section.scenario");
    var source = document.getElementById(arrow.getAttribute("data-msg"));
    var viewer = section.querySelector(".viewer");
    section.querySelectorAll("g.arrow.selected").forEach(function (g) {
      g.classList.remove("selected");
    });
    arrow.classList.add("selected");
    viewer.querySelector(".viewer-head").textContent = source.getAttribute("data-head");
    viewer.querySelector(".viewer-text").textContent = source.textContent;
    section.setAttribute("data-shown", arrow.getAttribute("data-index"));
  }
  document.querySelectorAll("g.arrow").forEach(function (g) {
    g.addEventListener("click", function () { show(g); });
    g.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); show(g); }
    });
  });
  document.querySelectorAll("a.goto").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      var g = document.getElementById(a.getAttribute("data-arrow"));
      if (g) { ev.preventDefault(); show(g); g.scrollIntoView({block: "center"}); }
    });
  });

  function applyFilter() {
    var wanted = {};
    document.querySelectorAll("#filters input").forEach(function (box) {
      wanted[box.value] = box.checked;
    });
    document.querySelectorAll("[data-verdict]").forEach(function (el) {
      el.hidden = !wanted[el.getAttribute("data-verdict")];
    });
  }
  document.querySelectorAll("#filters input").forEach(function (box) {
    box.addEventListener("change", applyFilter);
  });

  // What was really laid out: arrows with a non-empty box, and the failing ones.
  var summary = {ladders: 0, arrows: 0, drawn: 0, failing: []};
  document.querySelectorAll("svg.ladder").forEach(function (svg) {
    summary.ladders += 1;
    svg.querySelectorAll("g.arrow").forEach(function (g) {
      var box = g.querySelector(".shaft").getBoundingClientRect();
      var whole = g.getBoundingClientRect();
      var drawn = whole.width > 0 && whole.height > 0 && (box.width > 0 || box.height > 0);
      summary.arrows += 1;
      if (drawn) { summary.drawn += 1; }
      if (g.classList.contains("failing")) {
        summary.failing.push({scenario: svg.getAttribute("data-scenario"),
          index: Number(g.getAttribute("data-index")), drawn: drawn,
          shaft: [Math.round(box.left + window.scrollX), Math.round(box.top + window.scrollY),
            Math.round(box.width), Math.round(box.height)]});
      }
    });
  });
  document.body.setAttribute("data-ladder-summary", JSON.stringify(summary));

  var preset = /(?:^#|&)verdict=([a-z,]*)/.exec(window.location.hash);
  if (preset) {
    var keep = preset[1].split(",");
    document.querySelectorAll("#filters input").forEach(function (box) {
      box.checked = keep.indexOf(box.value) >= 0;
    });
  }
  applyFilter();
  var first = document.querySelector("g.arrow.failing");
  if (first) { show(first); }
  document.body.setAttribute("data-ready", "1");
})();
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def html_text(result: PlanResult) -> str:
    """The whole report as one HTML document."""
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sbcsim report: {_e(result.plan)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        f'<body data-exit-code="{result.exit_code}">',
        f"<h1>sbcsim report: {_e(result.plan)}</h1>",
        f'<p class="meta">{_e(summary_line(result))}; simulated {result.sim_seconds:.3f} s, '
        f"wall {result.wall_seconds:.3f} s</p>",
    ]
    out += _filters(result)
    out += _summary_table(result)
    for position, scenario in enumerate(result.scenarios):
        out += _scenario(position, scenario)
    out += [f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)


def write_html(path: str | Path, result: PlanResult) -> None:
    """Write the HTML report of ``result`` to ``path`` (UTF-8)."""
    Path(path).write_text(html_text(result), encoding="utf-8", newline="\n")


def _filters(result: PlanResult) -> list[str]:
    out = ['<fieldset id="filters"><legend>Show verdicts</legend>']
    for verdict in _VERDICTS:
        out.append(
            f'<label><input type="checkbox" value="{verdict}" checked> '
            f'<span class="verdict {verdict}">{verdict}</span> ({result.count(verdict)})</label>'
        )
    out.append("</fieldset>")
    return out


def _summary_table(result: PlanResult) -> list[str]:
    out = [
        '<table id="summary">',
        "<thead><tr><th>Scenario</th><th>Title</th><th>Verdict</th><th>Checks</th>"
        "<th>Sim s</th><th>Wall s</th></tr></thead>",
        "<tbody>",
    ]
    for position, s in enumerate(result.scenarios):
        passed = sum(1 for c in s.checks if c.verdict == "pass")
        out.append(
            f'<tr data-verdict="{_e(s.verdict)}"><td><a href="#s{position}">{_e(s.id)}</a></td>'
            f"<td>{_e(s.title)}</td>"
            f'<td><span class="verdict {_e(s.verdict)}">{_e(s.verdict)}</span></td>'
            f'<td class="num">{passed}/{len(s.checks)}</td>'
            f'<td class="num">{s.sim_seconds:.3f}</td><td class="num">{s.wall_seconds:.3f}</td></tr>'
        )
    out += ["</tbody>", "</table>"]
    return out


def _scenario(position: int, scenario: ScenarioResult) -> list[str]:
    sid = f"s{position}"
    ladder = Ladder.from_trace(scenario.trace)
    failing = {
        c.trace_index
        for c in scenario.checks
        if c.verdict in ("fail", "error") and c.trace_index is not None
    }
    tags = f"; tags {', '.join(scenario.tags)}" if scenario.tags else ""
    out = [
        f'<section class="scenario {_e(scenario.verdict)}" id="{sid}" '
        f'data-verdict="{_e(scenario.verdict)}" data-scenario="{_e(scenario.id)}">',
        f'<h2><span class="verdict {_e(scenario.verdict)}">{_e(scenario.verdict)}</span>'
        f"<code>{_e(scenario.id)}</code> {_e(scenario.title)}</h2>",
        f'<p class="meta">seed {scenario.seed}; simulated {scenario.sim_seconds:.3f} s; '
        f"wall {scenario.wall_seconds:.3f} s; {len(ladder.arrows)} messages{_e(tags)}</p>",
    ]
    if scenario.error:
        out.append(f'<pre class="error-text">{_e(scenario.error)}</pre>')
    out += _checks(sid, scenario, ladder)
    if ladder.arrows:
        out += _svg(sid, scenario.id, ladder, failing)
        out += [
            '<div class="viewer">'
            '<div class="viewer-head">Click an arrow to see the whole message.</div>'
            '<pre class="viewer-text"></pre></div>',
            '<div class="messages" hidden>',
        ]
        for index, (arrow, entry) in enumerate(zip(ladder.arrows, scenario.trace, strict=True)):
            head = (
                f"#{arrow.index} at {arrow.time:.3f} s, {entry.transport.upper()} "
                f"{ladder.actors[arrow.src]} ({_address(entry.src)}) → "
                f"{ladder.actors[arrow.dst]} ({_address(entry.dst)})"
                + (", lost by the network" if arrow.dropped else "")
            )
            text = entry.data.decode("utf-8", "replace")
            out.append(f'<pre id="m{sid}-{index}" data-head="{_e(head)}">{_e(text)}</pre>')
        out.append("</div>")
    else:
        out.append('<p class="empty">No messages were exchanged.</p>')
    out.append("</section>")
    return out


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _checks(sid: str, scenario: ScenarioResult, ladder: Ladder) -> list[str]:
    if not scenario.checks:
        return ['<p class="empty">No checks.</p>']
    out = [
        '<table class="checks"><thead><tr><th>Check</th><th>Requirement</th><th>Verdict</th>'
        "<th>Message</th><th>Expected</th><th>Seen</th><th>At</th></tr></thead><tbody>"
    ]
    for check in scenario.checks:
        position = ladder.position(check.trace_index)
        at = ""
        if position is not None:
            at = (
                f'<a class="goto" href="#a{sid}-{position}" data-arrow="a{sid}-{position}">'
                f"#{check.trace_index}</a>"
            )
        out.append(
            f'<tr class="check {_e(check.verdict)}"><td><code>{_e(check.id)}</code></td>'
            f"<td>{_e(check.requirement)}</td>"
            f'<td><span class="verdict {_e(check.verdict)}">{_e(check.verdict)}</span></td>'
            f"<td>{_e(check.message)}</td><td>{_e(check.expected or '')}</td>"
            f"<td>{_e(check.seen or '')}</td><td>{at}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _svg(sid: str, scenario_id: str, ladder: Ladder, failing: set[int]) -> list[str]:
    count = len(ladder.actors)
    width = _GUTTER + count * _COLUMN + 20
    height = _TOP + len(ladder.arrows) * _ROW + 16
    centres = [_GUTTER + k * _COLUMN + _COLUMN // 2 for k in range(count)]
    out = [
        '<div class="ladder-wrap">',
        f'<svg class="ladder" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" data-scenario="{_e(scenario_id)}">',
    ]
    for k, actor in enumerate(ladder.actors):
        x = centres[k]
        out.append(
            f'<line class="lifeline" x1="{x}" y1="36" x2="{x}" y2="{height - 8}"></line>'
            f'<rect class="actor-box" x="{x - _COLUMN // 2 + 8}" y="8" width="{_COLUMN - 16}" '
            f'height="28" rx="5"></rect>'
            f'<text class="actor" x="{x}" y="27" text-anchor="middle">'
            f"<title>{_e(actor)}</title>{_e(_clip(actor, int((_COLUMN - 24) / _CHAR)))}</text>"
        )
    for position, arrow in enumerate(ladder.arrows):
        out.append(_arrow(sid, position, arrow, centres, _TOP + position * _ROW + 18, failing))
    out += ["</svg>", "</div>"]
    return out


def _arrow(
    sid: str, position: int, arrow: Arrow, centres: list[int], y: int, failing: set[int]
) -> str:
    classes = ["arrow"]
    if arrow.index in failing:
        classes.append("failing")
    if arrow.dropped:
        classes.append("dropped")
    xa, xb = centres[arrow.src], centres[arrow.dst]
    when = f"{'✗ ' if arrow.index in failing else ''}#{arrow.index} {arrow.time:.3f}"
    label = arrow.label + (" (lost)" if arrow.dropped else "")
    if xa == xb:
        # A message to itself: a hook to the right of the lifeline.
        span = _COLUMN // 2 - 10
        left, right = xa, xa + span
        shaft = f'<path class="shaft" d="M{xa} {y - 6} H{right} V{y + 6} H{xa + 8}"></path>'
        head = f'<path class="head" d="M{xa} {y + 6} l9 -4.5 v9 z"></path>'
        text_x, anchor, room = right + 6, "start", _COLUMN // 2
    else:
        step = 9 if xb > xa else -9
        left, right = min(xa, xb), max(xa, xb)
        shaft = f'<line class="shaft" x1="{xa}" y1="{y}" x2="{xb - step}" y2="{y}"></line>'
        head = f'<path class="head" d="M{xb} {y} l{-step} -4.5 v9 z"></path>'
        text_x, anchor, room = (xa + xb) // 2, "middle", right - left - 16
    return (
        f'<g class="{" ".join(classes)}" id="a{sid}-{position}" data-index="{arrow.index}" '
        f'data-msg="m{sid}-{position}" tabindex="0" role="button">'
        f"<title>{_e(arrow.summary)}</title>"
        f'<rect class="hit" x="4" y="{y - _ROW + 10}" width="{right + 24}" height="{_ROW - 2}">'
        "</rect>"
        f'<text class="when" x="10" y="{y + 4}">{_e(when)}</text>'
        f"{shaft}{head}"
        f'<text class="label" x="{text_x}" y="{y - 6}" text-anchor="{anchor}">'
        f"{_e(_clip(label, max(3, int(room / _CHAR))))}</text>"
        "</g>"
    )
