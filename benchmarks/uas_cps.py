"""Calls per second of the live sbcsim UAS, loaded by SIPp's built-in ``uac``, and of SIPp's own
``uas`` under the same load in the same run (the reference).

Each server runs in its own process, as SIPp's does: the sbcsim side is the real ``sbcsim uas``
command (uvloop, ``--listen udp:127.0.0.1:0``), started afresh for every step so that no step
inherits another's transactions.  Calls are SIPp's ``-sn uac`` over UDP on 127.0.0.1: INVITE,
100/180/200, ACK, BYE, 200, with ``-d 0`` (hang up at once), ``-r RATE -rp 1000`` for
``--duration`` seconds (``-m RATE*DURATION``).

For each server the benchmark searches the highest rate that is *sustained*: every call
successful, none failed, and SIPp kept the offered rate (calls / elapsed >= 95 % of it).  The
search starts at ``--start`` and takes at most ``--steps`` runs per server (up by 1.5x while it
passes, then bisecting, 50 calls/s resolution).  Every SIPp run and every server has a time
limit.  The table shows, per run, SIPp's counters, the mean INVITE->200 time and the server's
CPU time per call (from /proc, so it does not depend on how busy the other core was).

``--profile`` adds one run of the sbcsim UAS under cProfile at half the best rate found (cProfile
about doubles the cost of a call) and prints
where its time goes (top functions, share of the profiled time).

    .venv/bin/python benchmarks/uas_cps.py [--duration 20] [--start 2000] [--steps 5]
        [--target 2000] [--no-reference] [--profile] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"
#: a run passes when SIPp sustained at least this share of the offered rate
SUSTAINED_SHARE = 0.95
RATE_STEP = 50
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

UAS_CODE = "import sys; from sbcsim.tools import uas; uas(sys.argv[1:], prog_name='sbcsim uas')"
PROFILED_UAS_CODE = """
import cProfile, sys
from sbcsim.tools import uas
profile = cProfile.Profile()
profile.enable()
try:
    uas(sys.argv[2:], prog_name="sbcsim uas")
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""


@dataclass(frozen=True)
class Step:
    """One SIPp run against one server."""

    server: str
    offered: int
    calls: int
    successful: int
    failed: int
    created: int
    retransmissions: int
    elapsed: float
    created_in: float
    response_ms: float | None
    server_cpu: float | None
    server_completed: int | None

    @property
    def sustained(self) -> float:
        """Calls per second SIPp managed to start (all of them completed when it passed)."""
        return self.created / self.created_in if self.created_in > 0 else 0.0

    @property
    def why_not(self) -> str:
        """Why the run does not count as sustained ("" when it does)."""
        if self.failed or self.successful != self.calls or self.created != self.calls:
            return f"{self.failed} failed, {self.calls - self.successful} not successful"
        if self.sustained < SUSTAINED_SHARE * self.offered:
            return f"SIPp started only {self.sustained:.0f} calls/s"
        if self.server_completed is not None and self.server_completed != self.calls:
            return f"the server counted {self.server_completed} completed calls"
        return ""

    @property
    def passed(self) -> bool:
        return (
            self.failed == 0
            and self.successful == self.calls
            and self.created == self.calls
            and self.sustained >= SUSTAINED_SHARE * self.offered
            and (self.server_completed is None or self.server_completed == self.calls)
        )

    @property
    def cpu_us_per_call(self) -> float | None:
        if self.server_cpu is None or not self.successful:
            return None
        return self.server_cpu / self.successful * 1e6


# -- processes ----------------------------------------------------------------------------------
def free_port() -> int:
    """A UDP port free on 127.0.0.1 that is also free for TCP (SIPp binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def udp_bound(port: int) -> bool:
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as fh:
        return any(line.split()[1] == wanted for line in fh.readlines()[1:])


def pin(pid: int, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


async def stop(proc: asyncio.subprocess.Process, timeout: float = STOP_TIMEOUT) -> bytes:
    """SIGTERM, then the output; SIGKILL if it does not exit in time."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return out or b""


@contextlib.asynccontextmanager
async def sbcsim_uas(
    duration: float, profile_file: Path | None, cpu: int | None
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """``sbcsim uas`` on a free port; yields (port, process)."""
    args = ["--listen", f"udp:{HOST}:0", "--duration", str(duration + 120)]
    code = UAS_CODE if profile_file is None else PROFILED_UAS_CODE
    extra = [] if profile_file is None else [str(profile_file)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *extra,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        pin(proc.pid, cpu)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        m = re.match(rb"sbcsim uas: listening on udp:[\d.]+:(\d+)", line)
        if m is None:
            rest = await stop(proc)
            raise RuntimeError(f"sbcsim uas did not start: {(line + rest).decode()[-2000:]}")
        yield int(m.group(1)), proc
    finally:
        if proc.returncode is None:
            await stop(proc)


@contextlib.asynccontextmanager
async def sipp_uas(
    sipp: str, calls: int, duration: float, workdir: Path, cpu: int | None
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    """SIPp's built-in ``uas`` on a free port; yields (port, process)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sipp,
        "-sn", "uas", "-i", HOST, "-p", str(port), "-mp", str(free_port()), "-t", "u1",
        "-m", str(calls), "-timeout", str(int(duration + 120)), "-nostdin",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
        env={**os.environ, "TERM": "dumb"},
    )  # fmt: skip
    try:
        pin(proc.pid, cpu)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not udp_bound(port):
            if proc.returncode is not None or loop.time() > deadline:
                raise RuntimeError("SIPp uas did not start")
            await asyncio.sleep(0.02)
        yield port, proc
    finally:
        if proc.returncode is None:
            await stop(proc)


def _epoch(field: str) -> float:
    # "2026-11-21\t06:11:44.816144\t1795241504.816144"
    return float(field.split("\t")[-1])


def _duration_ms(field: str) -> float | None:
    # "00:00:00:000780" (h:m:s:us)
    parts = field.strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    h, m, s, us = (int(p) for p in parts)
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


async def sipp_uac(
    sipp: str, port: int, rate: int, calls: int, duration: float, workdir: Path, cpu: int | None
) -> list[dict[str, str]]:
    """SIPp's built-in ``uac`` at ``rate`` for ``calls`` calls; its statistics rows (one a
    second, and one at the end)."""
    stats = workdir / f"uac-{rate}.csv"
    proc = await asyncio.create_subprocess_exec(
        sipp,
        "-sn", "uac", f"{HOST}:{port}", "-i", HOST, "-p", str(free_port()),
        "-mp", str(free_port()), "-t", "u1", "-r", str(rate), "-rp", "1000",
        "-m", str(calls), "-d", "0", "-l", str(max(1000, rate)),
        "-timeout", str(int(duration + 60)), "-nostdin",
        "-trace_stat", "-stf", str(stats), "-fd", "1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
        env={**os.environ, "TERM": "dumb"},
    )  # fmt: skip
    pin(proc.pid, cpu)
    try:
        await asyncio.wait_for(proc.wait(), duration + 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if not stats.exists():
        return []
    with stats.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def creation_window(rows: list[dict[str, str]], calls: int) -> float:
    """Seconds from SIPp's start until it had created all ``calls`` calls, interpolated between
    the once-a-second rows (what the offered rate is measured on: the time the last calls
    took to complete, retransmissions included, is not the server's throughput)."""
    if not rows:
        return 0.0
    start = _epoch(rows[0]["StartTime"])
    prev_t, prev_n = start, 0
    for row in rows:
        t, n = _epoch(row["CurrentTime"]), _count(row, "TotalCallCreated")
        if n >= calls:
            if n == prev_n:
                return t - start
            return prev_t + (calls - prev_n) / (n - prev_n) * (t - prev_t) - start
        prev_t, prev_n = t, n
    return _epoch(rows[-1]["CurrentTime"]) - start


def _count(row: dict[str, str], name: str) -> int:
    value = (row.get(name) or "0").strip()
    return int(value) if value.isdigit() else 0


async def run_step(
    server: str, sipp: str, rate: int, duration: float, args: argparse.Namespace
) -> Step:
    calls = int(rate * duration)
    server_cpu_id = 1 if args.pin else None
    load_cpu_id = 0 if args.pin else None
    with tempfile.TemporaryDirectory(prefix="sbcsim-cps-") as tmp:
        workdir = Path(tmp)
        completed: int | None = None
        if server == "sbcsim":
            async with sbcsim_uas(duration, None, server_cpu_id) as (port, proc):
                before = cpu_seconds(proc.pid)
                rows = await sipp_uac(sipp, port, rate, calls, duration, workdir, load_cpu_id)
                after = cpu_seconds(proc.pid)
                out = (await stop(proc)).decode()
            m = re.search(r"udp:\S+\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", out)
            completed = int(m.group(3)) if m else -1
        else:
            async with sipp_uas(sipp, calls, duration, workdir, server_cpu_id) as (port, proc):
                before = cpu_seconds(proc.pid)
                rows = await sipp_uac(sipp, port, rate, calls, duration, workdir, load_cpu_id)
                after = cpu_seconds(proc.pid)
    row = rows[-1] if rows else {}
    elapsed = 0.0
    if row.get("StartTime") and row.get("CurrentTime"):
        elapsed = _epoch(row["CurrentTime"]) - _epoch(row["StartTime"])
    return Step(
        server=server,
        offered=rate,
        calls=calls,
        successful=_count(row, "SuccessfulCall(C)"),
        failed=_count(row, "FailedCall(C)"),
        created=_count(row, "TotalCallCreated"),
        retransmissions=_count(row, "Retransmissions(C)"),
        elapsed=elapsed,
        created_in=creation_window(rows, calls),
        response_ms=_duration_ms(row.get("ResponseTime1(C)", "")),
        server_cpu=None if before is None or after is None else after - before,
        server_completed=completed,
    )


async def search(
    server: str, sipp: str, args: argparse.Namespace, console: Console
) -> tuple[list[Step], int | None]:
    """At most ``args.steps`` runs; returns them and the highest sustained rate."""
    steps: list[Step] = []
    best: int | None = None
    worst_fail: int | None = None
    rate = args.start
    for _ in range(args.steps):
        console.print(f"[dim]{server}: {rate} calls/s for {args.duration:g} s ...[/]")
        step = await run_step(server, sipp, rate, args.duration, args)
        steps.append(step)
        if step.passed:
            best = rate
            nxt = int(rate * 1.5) if worst_fail is None else (rate + worst_fail) // 2
        else:
            worst_fail = rate
            nxt = int(rate / 1.5) if best is None else (best + rate) // 2
        nxt = max(RATE_STEP, round(nxt / RATE_STEP) * RATE_STEP)
        if (
            nxt in {s.offered for s in steps}
            or nxt > args.max_rate
            or (best is not None and worst_fail is not None and worst_fail - best <= RATE_STEP)
        ):
            break
        rate = nxt
    return steps, best


# -- profile ------------------------------------------------------------------------------------
async def profile_run(
    sipp: str, rate: int, args: argparse.Namespace, console: Console
) -> pstats.Stats | None:
    with tempfile.TemporaryDirectory(prefix="sbcsim-cps-prof-") as tmp:
        workdir = Path(tmp)
        prof = workdir / "uas.prof"
        calls = int(rate * args.duration)
        console.print(f"[dim]sbcsim under cProfile: {rate} calls/s for {args.duration:g} s ...[/]")
        async with sbcsim_uas(args.duration, prof, 1 if args.pin else None) as (port, proc):
            await sipp_uac(sipp, port, rate, calls, args.duration, workdir, 0 if args.pin else None)
            # cProfile slows the summary and the final collection down: give it time to write.
            await stop(proc, 4 * STOP_TIMEOUT)
        if not prof.exists():
            console.print("[red]the profiled UAS wrote no profile[/]")
            return None
        return pstats.Stats(str(prof))


def profile_table(stats: pstats.Stats, top: int = 25) -> Table:
    """The functions with the most own time.  cProfile's clock is the wall clock, and uvloop's
    C code (waiting in epoll, reading and writing sockets) shows up as the own time of the
    asyncio runner that started it: that row is left out and the shares are of the rest, the
    time spent in Python code and the C functions it calls."""
    entries = stats.stats  # type: ignore[attr-defined]
    loop_own = sum(
        tt
        for (filename, _, name), (_, _, tt, _, _) in entries.items()
        if name == "run" and filename.endswith(("asyncio/runners.py", "uvloop/__init__.py"))
    )
    wall = sum(tt for (_, _, tt, _, _) in entries.values()) or 1.0
    busy = (wall - loop_own) or 1.0
    rows = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)
    table = Table(
        title=f"where the sbcsim UAS spends its time (cProfile, top {top} by own time)",
        caption=(
            f"the event loop's own C code and idle waiting ({100 * loop_own / wall:.0f} % of the "
            "profiled wall time) are left out; shares are of the rest"
        ),
    )
    for col in ("function", "calls", "own %", "incl. %"):
        table.add_column(col, justify="left" if col == "function" else "right")
    shown = 0
    for (filename, line, name), (_, ncalls, tt, ct, _) in rows:
        if name == "run" and filename.endswith(("asyncio/runners.py", "uvloop/__init__.py")):
            continue
        where = filename
        for marker in ("/sbcsim/", "/site-packages/", "/lib/python3.11/", "/lib/python"):
            if marker in filename:
                where = filename.split(marker, 1)[1]
                break
        label = f"{name} ({where}:{line})" if line else name
        table.add_row(
            label, str(ncalls), f"{100 * tt / busy:.1f}", f"{100 * min(ct, busy) / busy:.1f}"
        )
        shown += 1
        if shown == top:
            break
    return table


# -- report -------------------------------------------------------------------------------------
def steps_table(steps: list[Step]) -> Table:
    table = Table(title="SIPp uac -> UAS over UDP on 127.0.0.1 (one row per run)")
    for col in (
        "server",
        "offered/s",
        "calls",
        "successful",
        "failed",
        "SIPp retrans",
        "elapsed s",
        "started/s",
        "INVITE->200 ms",
        "server CPU µs/call",
        "verdict",
    ):
        table.add_column(col, justify="left" if col in ("server", "verdict") else "right")
    for s in steps:
        table.add_row(
            s.server,
            str(s.offered),
            str(s.calls),
            str(s.successful),
            str(s.failed),
            str(s.retransmissions),
            f"{s.elapsed:.2f}",
            f"{s.sustained:.0f}",
            "-" if s.response_ms is None else f"{s.response_ms:.2f}",
            "-" if s.cpu_us_per_call is None else f"{s.cpu_us_per_call:.0f}",
            "[green]sustained[/]" if s.passed else f"[red]not sustained[/]: {s.why_not}",
        )
    return table


async def main_async(args: argparse.Namespace, console: Console) -> int:
    sipp = shutil.which("sipp") or shutil.which("sipp", path="/usr/bin:/usr/sbin")
    if sipp is None:
        console.print("SIPp is not installed (Debian package 'sip-tester')")
        return 2
    load_before = os.getloadavg()
    servers = ["sbcsim"] + ([] if args.no_reference else ["sipp-uas"])
    all_steps: list[Step] = []
    best: dict[str, int | None] = {}
    for server in servers:
        steps, best[server] = await search(server, sipp, args, console)
        all_steps += steps
    load_after = os.getloadavg()

    console.print(steps_table(all_steps))
    summary = Table(title="highest sustained rate (0 failed calls)")
    for col in ("server", "calls/s", "target", "meets target"):
        summary.add_column(col, justify="left" if col == "server" else "right")
    for server in servers:
        rate = best[server]
        summary.add_row(
            server,
            "none" if rate is None else str(rate),
            str(args.target) if server == "sbcsim" else "-",
            ("yes" if rate is not None and rate >= args.target else "[red]no[/]")
            if server == "sbcsim"
            else "-",
        )
    console.print(summary)
    console.print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f} before / {load_after[0]:.2f} after, "
        f"{args.duration:g} s per run, at most {args.steps} runs per server"
        + (", load and server pinned to CPUs 0 and 1" if args.pin else "")
    )
    if load_before[0] > 0.5 or load_after[0] > 1.5:
        console.print(
            "[yellow]other processes were running: wall-clock rates are lower than on an idle "
            "machine; the CPU µs/call column is not affected by that[/]"
        )
    sbcsim_best = best.get("sbcsim")
    if args.profile or sbcsim_best is None or sbcsim_best < args.target:
        # cProfile about doubles the cost of every call: profile at half the sustained rate, so
        # that the profile shows the steady state rather than an overloaded server's backlog.
        rate = max(RATE_STEP, (sbcsim_best or args.start) // 2)
        stats = await profile_run(sipp, rate, args, console)
        if stats is not None:
            console.print(profile_table(stats))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--start", type=int, default=2000, help="first rate tried (calls/s)")
    parser.add_argument("--steps", type=int, default=5, help="most runs per server")
    parser.add_argument("--max-rate", type=int, default=20000)
    parser.add_argument("--target", type=int, default=2000)
    parser.add_argument("--no-reference", action="store_true", help="skip SIPp's own uas")
    parser.add_argument("--profile", action="store_true", help="profile the sbcsim UAS too")
    parser.add_argument("--pin", action="store_true", help="pin load to CPU 0, server to CPU 1")
    args = parser.parse_args()
    if not (1 <= args.steps <= 20 and 1 <= args.duration <= 600 and args.start > 0):
        parser.error("--steps 1..20, --duration 1..600 s, --start > 0")
    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    return asyncio.run(main_async(args, console))


if __name__ == "__main__":
    sys.exit(main())
