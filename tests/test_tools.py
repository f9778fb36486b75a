"""``sbcsim uas`` and ``sbcsim uac`` against each other on 127.0.0.1, over UDP, TCP and TLS.

The UAS runs as a subprocess (it prints the address it bound, port 0, and exits by itself
after ``--calls``); the UAC runs in-process through click's ``CliRunner`` (in a worker thread,
since it runs its own event loop).  Bad usage exits 2 with a message naming the culprit.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import click
import pytest
from click.testing import CliRunner, Result

from sbcsim.certs import LabCA
from sbcsim.tools import ListenSpec, parse_hostport, parse_listen, uac, uas

HOST = "127.0.0.1"
CALLS = 20
WAIT = 30.0
UAS_NAME = "uas.lab.example"


@click.group()
def cli() -> None:
    """The two commands as the sbcsim group carries them."""


cli.add_command(uas)
cli.add_command(uac)


@dataclass(frozen=True)
class Pki:
    ca: Path
    uas_cert: Path
    uas_key: Path
    uac_cert: Path
    uac_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = LabCA.create()
    server = ca.issue([UAS_NAME, HOST]).write(tmp_path, "uas")
    client = ca.issue(["uac.lab.example"]).write(tmp_path, "uac")
    return Pki(
        ca.write(tmp_path, "ca").cert_file,
        server.cert_file,
        server.key_file,
        client.cert_file,
        client.key_file,
    )


class UasProcess:
    """``sbcsim uas`` in a subprocess; ``listening`` holds what it printed it bound."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.listening: list[ListenSpec] = []
        self.output = ""

    async def started(self, listeners: int) -> None:
        assert self.proc.stdout is not None
        while len(self.listening) < listeners:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), WAIT)).decode()
            if not line:
                err = b""
                if self.proc.stderr is not None:
                    err = await asyncio.wait_for(self.proc.stderr.read(), WAIT)
                pytest.fail(f"sbcsim uas exited before listening: {err.decode()[-2000:]}")
            self.output += line
            m = re.match(r"sbcsim uas: listening on (\S+)", line)
            if m:
                self.listening.append(parse_listen(m.group(1)))

    async def finished(self) -> int:
        out, _ = await asyncio.wait_for(self.proc.communicate(), WAIT)
        self.output += out.decode()
        assert self.proc.returncode is not None
        return self.proc.returncode


class StartUas(Protocol):
    async def __call__(self, args: Sequence[str], listeners: int = 1) -> UasProcess: ...


@pytest.fixture
async def start_uas() -> AsyncIterator[StartUas]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(args: Sequence[str], listeners: int = 1) -> UasProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from sbcsim.tools import uas; uas(prog_name='sbcsim uas')",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        uas_proc = UasProcess(proc)
        await uas_proc.started(listeners)
        return uas_proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), WAIT)


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


async def invoke_in_thread(args: Sequence[str]) -> Result:
    return await asyncio.wait_for(asyncio.to_thread(invoke, args), WAIT)


def uac_counts(output: str) -> dict[str, int]:
    """The integer rows of the uac summary table."""
    counts = {}
    for name in ("requested", "started", "established", "completed", "failed"):
        m = re.search(rf"^\W*{name}\W+(\d+)\W*$", output, re.M)
        assert m is not None, output
        counts[name] = int(m.group(1))
    return counts


def uas_counts(output: str, listener: str) -> tuple[int, int, int, int]:
    """(started, established, completed, failed) of one listener row of the uas summary."""
    m = re.search(rf"{re.escape(listener)}\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", output)
    assert m is not None, output
    a, b, c, d = (int(g) for g in m.groups())
    return a, b, c, d


def failure_reasons(output: str) -> dict[str, int]:
    _, _, table = output.partition("failure reasons")
    return {
        m.group(1).strip(): int(m.group(2))
        for m in re.finditer(r"^\W*([A-Za-z0-9][^│|]*?)\s*[│|]\s*(\d+)\s*[│|]", table, re.M)
    }


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


ALL = {"requested": CALLS, "started": CALLS, "established": CALLS, "completed": CALLS, "failed": 0}


# -- calls ------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_uac_calls_uas(transport: str, start_uas: StartUas) -> None:
    server = await start_uas(
        ["--listen", f"{transport}:{HOST}:0", "--calls", str(CALLS), "--timeout", str(WAIT)]
    )
    spec = server.listening[0]
    assert (spec.transport, spec.host) == (transport, HOST) and spec.port > 0
    result = await invoke_in_thread(
        [
            "uac", f"sip:alice@{HOST}:{spec.port}", "--remote", f"{HOST}:{spec.port}",
            "--transport", transport, "--calls", str(CALLS), "--rate", "200",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"^sbcsim uac: listening on {transport}:127\.0\.0\.1:\d+$", result.output, re.M
    )
    assert uac_counts(result.output) == ALL
    assert "failure reasons" not in result.output
    assert await server.finished() == 0, server.output
    assert uas_counts(server.output, str(spec)) == (CALLS, CALLS, CALLS, 0)


async def test_uac_calls_uas_over_mutual_tls(pki: Pki, start_uas: StartUas) -> None:
    server = await start_uas(
        [
            "--listen", f"tls:{HOST}:0", "--cert", str(pki.uas_cert), "--key", str(pki.uas_key),
            "--ca", str(pki.ca), "--require-client-cert", "--calls", str(CALLS),
            "--timeout", str(WAIT),
        ]
    )  # fmt: skip
    port = server.listening[0].port
    result = await invoke_in_thread(
        [
            "uac", f"sips:alice@{UAS_NAME}", "--remote", f"{HOST}:{port}", "--transport", "tls",
            "--ca", str(pki.ca), "--cert", str(pki.uac_cert), "--key", str(pki.uac_key),
            "--server-name", UAS_NAME, "--calls", str(CALLS), "--rate", "200",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert uac_counts(result.output) == ALL
    assert await server.finished() == 0, server.output
    assert uas_counts(server.output, f"tls:{HOST}:{port}") == (CALLS, CALLS, CALLS, 0)


async def test_uac_without_certificate_calls_tls_uas(pki: Pki, start_uas: StartUas) -> None:
    """No --cert: the UAC has no TLS listener and calls over the connection it opens."""
    server = await start_uas(
        [
            "--listen", f"tls:{HOST}:0", "--cert", str(pki.uas_cert), "--key", str(pki.uas_key),
            "--calls", "3", "--timeout", str(WAIT),
        ]
    )  # fmt: skip
    port = server.listening[0].port
    result = await invoke_in_thread(
        [
            "uac", f"sips:alice@{UAS_NAME}", "--remote", f"{HOST}:{port}", "--transport", "tls",
            "--ca", str(pki.ca), "--server-name", UAS_NAME, "--calls", "3", "--rate", "50",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sbcsim uac: no tls listener (no --cert): calling from 127.0.0.1" in result.output
    assert uac_counts(result.output) == {
        "requested": 3,
        "started": 3,
        "established": 3,
        "completed": 3,
        "failed": 0,
    }
    assert await server.finished() == 0, server.output


async def test_uas_requiring_client_certificate_refuses_uac_without_one(
    pki: Pki,
    start_uas: StartUas,
) -> None:
    server = await start_uas(
        [
            "--listen", f"tls:{HOST}:0", "--cert", str(pki.uas_cert), "--key", str(pki.uas_key),
            "--ca", str(pki.ca), "--require-client-cert", "--duration", "20",
        ]
    )  # fmt: skip
    port = server.listening[0].port
    result = await invoke_in_thread(
        [
            "uac", f"sips:alice@{UAS_NAME}", "--remote", f"{HOST}:{port}", "--transport", "tls",
            "--ca", str(pki.ca), "--server-name", UAS_NAME, "--calls", "2", "--rate", "50",
        ]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    counts = uac_counts(result.output)
    assert (counts["started"], counts["established"], counts["completed"], counts["failed"]) == (
        2,
        0,
        0,
        2,
    )
    assert failure_reasons(result.output) == {"503 Service Unavailable": 2}


async def test_uas_on_two_transports_counts_each(start_uas: StartUas) -> None:
    server = await start_uas(
        [
            "--listen", f"udp:{HOST}:0", "--listen", f"tcp:{HOST}:0",
            "--calls", "10", "--timeout", str(WAIT),
        ],
        listeners=2,
    )  # fmt: skip
    udp, tcp = server.listening
    for spec in (udp, tcp):
        result = await invoke_in_thread(
            [
                "uac", f"sip:bob@{HOST}", "--remote", f"{HOST}:{spec.port}",
                "--transport", spec.transport, "--calls", "5", "--rate", "100",
            ]
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert await server.finished() == 0, server.output
    assert uas_counts(server.output, str(udp)) == (5, 5, 5, 0)
    assert uas_counts(server.output, str(tcp)) == (5, 5, 5, 0)
    assert uas_counts(server.output, "total") == (10, 10, 10, 0)


async def test_uas_rings_and_answers_after_the_delays(start_uas: StartUas) -> None:
    server = await start_uas(
        [
            "--listen", f"udp:{HOST}:0", "--ring-delay", "0.05", "--answer-delay", "0.05",
            "--calls", "3", "--timeout", str(WAIT),
        ]
    )  # fmt: skip
    port = server.listening[0].port
    result = await invoke_in_thread(
        [
            "uac", f"sip:bob@{HOST}", "--remote", f"{HOST}:{port}", "--calls", "3",
            "--rate", "100", "--log-level", "debug",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert uac_counts(result.output)["completed"] == 3
    # 180 then 200 for each INVITE, each arriving as its own message
    received = [line for line in result.stderr.splitlines() if "sip_received" in line]
    assert sum("message='180 INVITE'" in line for line in received) == 3
    assert sum("message='200 INVITE'" in line for line in received) == 3
    assert await server.finished() == 0, server.output


async def test_debug_logs_bind_node_call_id_and_branch(start_uas: StartUas) -> None:
    server = await start_uas(["--listen", f"udp:{HOST}:0", "--calls", "1", "--timeout", str(WAIT)])
    port = server.listening[0].port
    result = await invoke_in_thread(
        [
            "uac", f"sip:bob@{HOST}", "--remote", f"{HOST}:{port}", "--calls", "1",
            "--log-level", "debug",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = [line for line in result.stderr.splitlines() if "sip_sent" in line]
    received = [line for line in result.stderr.splitlines() if "sip_received" in line]
    # INVITE, ACK, BYE out; 180, 200 (INVITE), 200 (BYE) in.
    assert len(sent) == 3 and len(received) == 3, result.stderr
    for line in sent + received:
        assert "node=uac" in line
        assert re.search(r"call_id=\S+@127\.0\.0\.1", line), line
        assert re.search(r"branch=z9hG4bK\w+", line), line
    assert "message=INVITE" in sent[0] and "message='180 INVITE'" in received[0]
    assert await server.finished() == 0


# -- failures and timeouts ----------------------------------------------------------------------
def test_uac_counts_refused_calls_as_failed() -> None:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there any more
    result = invoke(
        [
            "uac", f"sip:bob@{HOST}", "--remote", f"{HOST}:{port}", "--transport", "tcp",
            "--calls", "3", "--rate", "100", "--timeout", "10",
        ]
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert uac_counts(result.output) == {
        "requested": 3,
        "started": 3,
        "established": 0,
        "completed": 0,
        "failed": 3,
    }
    assert failure_reasons(result.output) == {"503 Service Unavailable": 3}


def test_uas_with_calls_gives_up_at_timeout() -> None:
    result = invoke(["uas", "--listen", f"udp:{HOST}:0", "--calls", "1", "--timeout", "0.2"])
    assert result.exit_code == 1, result.output
    assert "timed out: 0 of 1 calls ended before --timeout" in result.output
    m = re.search(r"^sbcsim uas: listening on (\S+)$", result.output, re.M)
    assert m is not None
    assert uas_counts(result.output, m.group(1)) == (0, 0, 0, 0)


def test_uas_for_a_duration_without_calls_succeeds() -> None:
    result = invoke(["uas", "--listen", f"udp:{HOST}:0", "--duration", "0.2"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^sbcsim uas: listening on udp:127\.0\.0\.1:\d+$", result.output, re.M)


# -- bad usage ------------------------------------------------------------------------------------
def test_uas_port_in_use_is_bad_usage() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        result = invoke(["uas", "--listen", f"udp:{HOST}:{port}", "--duration", "1"])
    assert result.exit_code == 2
    assert f"sbcsim uas: {HOST}:{port}/udp is already in use" in result.output


def test_uas_tcp_port_in_use_is_bad_usage() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(["uas", "--listen", f"tcp:{HOST}:{port}", "--duration", "1"])
    assert result.exit_code == 2
    assert f"sbcsim uas: {HOST}:{port}/tcp is already in use" in result.output


def test_uac_bind_port_in_use_is_bad_usage() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        result = invoke(
            ["uac", f"sip:bob@{HOST}", "--remote", f"{HOST}:5060", "--bind", f"{HOST}:{port}"]
        )
    assert result.exit_code == 2
    assert f"sbcsim uac: {HOST}:{port}/udp is already in use" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["uas"], "Missing option '--listen'"),
        (["uas", "--listen", "sctp:127.0.0.1:5060"], "is not TRANSPORT:HOST:PORT"),
        (["uas", "--listen", "udp:127.0.0.1"], "missing port in '127.0.0.1' (HOST:PORT)"),
        (["uas", "--listen", "udp:::1:5060"], "an IPv6 address needs brackets"),
        (["uas", "--listen", "udp:127.0.0.1:70000"], "invalid port '70000'"),
        (
            ["uas", "--listen", "udp:127.0.0.1:0", "--duration", "1", "--calls", "1"],
            "sbcsim uas: --duration and --calls exclude each other",
        ),
        (
            ["uas", "--listen", "tls:127.0.0.1:0", "--duration", "1"],
            "sbcsim uas: a tls listener needs --cert and --key",
        ),
        (["uac", "sip:bob@127.0.0.1"], "Missing option '--remote'"),
        (["uac", "sip:bob@127.0.0.1", "--remote", "127.0.0.1"], "missing port in '127.0.0.1'"),
        (
            ["uac", "sip:bob@127.0.0.1", "--remote", "127.0.0.1:5060", "--rate", "0"],
            "Invalid value for '--rate'",
        ),
        (
            ["uac", "sip:bob@127.0.0.1", "--remote", "127.0.0.1:5060", "--calls", "0"],
            "Invalid value for '--calls'",
        ),
        (
            ["uac", "bob", "--remote", "127.0.0.1:5060"],
            "sbcsim uac: TARGET 'bob' is not a SIP URI",
        ),
        (
            ["uac", "sip:bob@127.0.0.1", "--remote", "127.0.0.1:5061", "--transport", "tls",
             "--cert", "/nonexistent/cert.pem", "--key", "/nonexistent/key.pem"],
            "sbcsim uac: cannot load certificate /nonexistent/cert.pem",
        ),
        (
            ["uac", "sip:bob@127.0.0.1", "--remote", "127.0.0.1:5061", "--cert", "c.pem"],
            "sbcsim uac: --cert and --key go together",
        ),
    ],
)  # fmt: skip
def test_bad_usage_exits_2_with_a_message(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert message in result.output


# -- address parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:127.0.0.1:5060", ListenSpec("udp", "127.0.0.1", 5060)),
        ("TCP:[::1]:0", ListenSpec("tcp", "::1", 0)),
        ("tls:sbc.Example.COM:5061", ListenSpec("tls", "sbc.example.com", 5061)),
    ],
)
def test_parse_listen(text: str, expected: ListenSpec) -> None:
    assert parse_listen(text) == expected


def test_listen_spec_prints_as_it_parses() -> None:
    assert str(ListenSpec("udp", "::1", 5060)) == "udp:[::1]:5060"
    assert parse_listen(str(ListenSpec("tcp", "::1", 5062))) == ListenSpec("tcp", "::1", 5062)


def test_parse_hostport_default_port() -> None:
    assert parse_hostport("127.0.0.1", 0) == ("127.0.0.1", 0)
    assert parse_hostport("[::1]", 5060) == ("::1", 5060)
    with pytest.raises(ValueError, match="missing port"):
        parse_hostport("127.0.0.1")


# -- the premise of the tools' garbage-collector settings -----------------------------------------
def test_finished_calls_leave_no_reference_cycles() -> None:
    """``sbcsim uas``/``uac`` collect the older GC generations almost never (a full collection
    of a loaded node's live transactions stalls it for a second): that is safe only because
    every object of a finished call is freed by reference counting alone."""
    import gc

    from sbcsim.endpoints.basic import AnsweringUas, CallGenerator
    from sbcsim.net.memory import MemoryNetwork
    from sbcsim.sim import Simulator
    from sbcsim.stack import sim_node

    sim = Simulator(7)
    network = MemoryNetwork(sim)
    callee = sim_node(sim, network, "uas", "10.0.0.1")
    caller = sim_node(sim, network, "uac", "10.0.0.2")
    uas_end = AnsweringUas(callee)
    generator = CallGenerator(
        caller, "sip:bob@10.0.0.1", ("10.0.0.1", 5060), transport="udp", calls=200, rate=100
    )
    gc.collect()
    gc.disable()
    try:
        generator.start()
        assert sim.run_until(lambda: generator.done, timeout=60)
        sim.run_for(64)  # every transaction timer (J, L, ...) has fired
        assert generator.stats.completed == uas_end.stats.completed == 200
        assert callee.stack.active_calls == caller.stack.active_calls == 0  # type: ignore[attr-defined]
        assert gc.collect() == 0, "finished calls left garbage in reference cycles"
    finally:
        gc.enable()
