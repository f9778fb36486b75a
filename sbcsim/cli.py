"""The ``sbcsim`` command line.  Names, options and exit codes are a contract (PRODUCT.md).

Everything prints through one injected :class:`rich.console.Console` (``ctx.obj``), so tests
drive the commands with click's ``CliRunner`` and read exactly what a user sees.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from sbcsim import __version__
from sbcsim.errors import RemoteProtocolError
from sbcsim.logs import configure_logging
from sbcsim.sip.message import Request
from sbcsim.sip.parser import KeepAlive, StreamFramer, parse_message
from sbcsim.sip.policy import UasPolicy, inspect_request

__all__ = ["main", "parse_verdict"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sbcsim")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    envvar="SBCSIM_LOG_LEVEL",
    help="structured logs on stderr at this level and above",
)
def main(log_level: str) -> None:
    """sbcsim: a Microsoft Teams Direct Routing certification lab in a box.

    It emulates Microsoft's three SIP proxies, Teams users, a PSTN carrier and a contact center
    around a Session Border Controller, and scores certification-style test plans against it.
    """
    configure_logging(log_level)


def parse_verdict(data: bytes, transport: str = "udp", role: str = "uas") -> dict[str, Any]:
    """The JSON verdict of ``sbcsim parse`` for one raw message (see PRODUCT.md)."""
    verdict: dict[str, Any] = {
        "valid": False,
        "kind": None,
        "method": None,
        "status": None,
        "error": None,
        "response": None,
        "transport": transport,
    }
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    verdict["kind"] = "response" if first.startswith(b"SIP/") else "request"
    if verdict["kind"] == "request":
        verdict["method"] = first.split(b" ", 1)[0].decode("utf-8", "replace") or None
    frame = data
    if transport != "udp":
        # On a stream the message must be framed first; a framing error closes the connection.
        framer = StreamFramer()
        framer.receive(data)
        try:
            item = framer.next_frame()
            while isinstance(item, KeepAlive):
                item = framer.next_frame()
        except RemoteProtocolError as exc:
            verdict["error"] = exc.msg
            verdict["response"] = exc.status_hint if verdict["kind"] == "request" else None
            verdict["action"] = "close-connection"
            return verdict
        if item is None:
            verdict["error"] = (
                f"incomplete message: {framer.buffered} octets buffered, waiting for the rest "
                "of the body (the connection is closed if it never arrives)"
            )
            verdict["action"] = "wait-then-close"
            return verdict
        frame = item
    try:
        msg = parse_message(frame, transport=transport)
    except RemoteProtocolError as exc:
        verdict["error"] = exc.msg
        verdict["response"] = exc.status_hint if verdict["kind"] == "request" else None
        verdict["action"] = (
            "close-connection"
            if (exc.close_connection and transport != "udp")
            else "respond"
            if verdict["response"]
            else "discard"
        )
        return verdict
    verdict["valid"] = True
    if isinstance(msg, Request):
        verdict["method"] = msg.method
        try:
            rejection = inspect_request(msg, UasPolicy(role="proxy" if role == "proxy" else "uas"))
        except RemoteProtocolError as exc:
            verdict["valid"] = False
            verdict["error"] = exc.msg
            verdict["response"] = 400
            return verdict
        if rejection is not None:
            verdict["response"] = rejection.status
            verdict["reason"] = rejection.reason
            verdict["response_headers"] = dict(rejection.headers)
    else:
        verdict["status"] = msg.status
    return verdict


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--transport",
    type=click.Choice(["udp", "tcp"]),
    default="udp",
    show_default=True,
    help="The transport the message is taken to have arrived on (framing rules differ).",
)
@click.option(
    "--role",
    type=click.Choice(["uas", "proxy"]),
    default="uas",
    show_default=True,
    help="Judge as a user agent server or as a proxy (Max-Forwards 0 -> 483).",
)
@click.pass_context
def parse(ctx: click.Context, file: Path, transport: str, role: str) -> None:
    """Parse one raw SIP message and print a JSON verdict.

    Exit 0 when the message parses, 1 when it is rejected, 2 when FILE cannot be read.
    """
    console = _console(ctx)
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        console.print(f"sbcsim parse: cannot read {file}: {exc.strerror or exc}", markup=False)
        ctx.exit(EXIT_USAGE)
    verdict = parse_verdict(data, transport, role)
    console.print(json.dumps(verdict, ensure_ascii=False), markup=False, highlight=False)
    ctx.exit(EXIT_OK if verdict["valid"] else EXIT_FAILED)


def _register_commands() -> None:
    from sbcsim.config.commands import certs, validate
    from sbcsim.endpoints.sbc_live import mutants, sbc
    from sbcsim.serve import serve
    from sbcsim.testplan.commands import list_cmd, run
    from sbcsim.tools import uac, uas

    for command in (run, list_cmd, validate, parse, mutants, serve, sbc, certs, uas, uac):
        main.add_command(command)


_register_commands()
