"""Kamailio (with rtpengine) as a live SBC under test: start it, run a plan at it, stop it.

``docker/kamailio/`` holds a Kamailio configuration that acts as a multi-tenant Direct Routing
SBC (``kamailio.cfg``, ``tls.cfg``, ``dispatcher.list``), the target file that points
``sbcsim run`` at it, and the verdicts it is expected to get.  This module runs the whole live
path against that real software, the way a CI pipeline validating an SBC configuration would:

1. ``sbcsim certs`` writes the lab CA and certificates (Kamailio presents the wildcard one and
   trusts the CA; the emulated proxies present theirs);
2. rtpengine and Kamailio start as ordinary processes on loopback, in the foreground, with their
   runtime files in a directory of their own (never as system services);
3. ``sbcsim run PLAN --target TARGET --junit ... --json ...`` runs the plan;
4. both processes are stopped, and the verdicts are compared with the expected ones.

With the default :class:`LabAddresses` the files of ``docker/kamailio/`` are used in place
(``make kamailio-check``: the same commands the README and the containers use); any other
addresses (a free block of 127.A.B.x, as the interop test takes) get a copy of the files in the
work directory, the addresses handed to Kamailio as ``-A`` defines and written into a copy of
the target.  Every wait has a bound; a peer that does not start is a :class:`LabStartError`
naming its address and the end of its log.
"""

from __future__ import annotations

import glob
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

from sbcsim.errors import PeerMissingError, SbcsimError
from sbcsim.testing.peers import DEBIAN_PACKAGES, find_peer

__all__ = [
    "DEFAULT_ADDRESSES",
    "KAMAILIO_DIR",
    "LAB_KEEPALIVE_INTERVAL",
    "ExpectedVerdicts",
    "KamailioLab",
    "LabAddresses",
    "LabProcess",
    "LabStartError",
    "PlanRun",
    "RunningSbc",
    "ScenarioVerdict",
    "compare_verdicts",
    "free_loopback_block",
    "load_expected",
    "main",
    "prepare_lab",
    "read_verdicts",
    "rtpengine_answers",
    "run_plan",
    "running_sbc",
    "start_kamailio",
    "start_rtpengine",
    "verdict_table",
]

REPO = Path(__file__).resolve().parents[2]
#: The Kamailio example: configuration, target, expected verdicts.
KAMAILIO_DIR = REPO / "docker" / "kamailio"
PLAN = REPO / "testplans" / "direct-routing-sbc.yaml"
EXPECTED_FILE = "expected-verdicts.yaml"
#: Seconds between Kamailio's keepalive OPTIONS in the lab.  A live scenario opens the
#: Microsoft side afresh and expects the SBC's OPTIONS within its first 5 seconds
#: (options-keepalive), so the lab pings every 2 s; kamailio.cfg's own default is Direct
#: Routing's one a minute.
LAB_KEEPALIVE_INTERVAL = 2
#: Bounds, in seconds.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CERTS_TIMEOUT = 60.0
PLAN_TIMEOUT = 900.0
#: How much of a peer's log an error quotes.
LOG_TAIL_LINES = 15


class LabStartError(SbcsimError):
    """rtpengine or Kamailio did not start (or the certificates could not be written)."""


# ------------------------------------------------------------------------------ addresses


@dataclass(frozen=True, slots=True)
class LabAddresses:
    """Where everything listens: the SBC (Kamailio and rtpengine), the proxies, the carrier."""

    sbc: str = "127.0.0.2"
    proxies: tuple[str, str, str] = ("127.0.1.1", "127.0.1.2", "127.0.1.3")
    pstn: str = "127.0.2.1"
    #: rtpengine's control (ng) port, on the SBC address
    rtpengine_port: int = 22222
    #: rtpengine's media ports, on the SBC address
    media_ports: tuple[int, int] = (30000, 30999)

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_ADDRESSES

    def listeners(self) -> list[tuple[str, int, int]]:
        """(address, port, socket type) of every socket the lab opens."""
        return [
            (self.sbc, 5061, socket.SOCK_STREAM),
            (self.sbc, 5060, socket.SOCK_DGRAM),
            (self.sbc, self.rtpengine_port, socket.SOCK_DGRAM),
            *((proxy, 5061, socket.SOCK_STREAM) for proxy in self.proxies),
            (self.pstn, 5060, socket.SOCK_DGRAM),
        ]


#: The shipped topology's addresses, which ``docker/kamailio/`` is written for.
DEFAULT_ADDRESSES = LabAddresses()


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_loopback_block(rng: random.Random | None = None, attempts: int = 50) -> LabAddresses:
    """Addresses in a block 127.A.B.x whose sockets are all free: the SBC on .2, the proxies on
    .11-.13, the carrier on .21 (the ports stay those of the target: the scenarios check the
    SBC's Contact port)."""
    rng = rng or random.Random()
    for _ in range(attempts):
        prefix = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        candidate = LabAddresses(
            sbc=f"{prefix}.2",
            proxies=(f"{prefix}.11", f"{prefix}.12", f"{prefix}.13"),
            pstn=f"{prefix}.21",
        )
        if all(_bindable(*listener) for listener in candidate.listeners()):
            return candidate
    raise LabStartError(f"no free block of loopback addresses in {attempts} attempts")


# ------------------------------------------------------------------------------ the lab files


@dataclass(frozen=True, slots=True)
class KamailioLab:
    """The files and settings of one run: Kamailio's configuration, the target, the certificates,
    the defines that move the addresses, and the work directory for logs and runtime files."""

    addresses: LabAddresses
    config: Path
    target: Path
    certs: Path
    workdir: Path
    defines: tuple[str, ...]
    topology: Path | None = None

    @property
    def kamailio_log(self) -> Path:
        return self.workdir / "kamailio.log"

    @property
    def rtpengine_log(self) -> Path:
        return self.workdir / "rtpengine.log"


def _modules_dir() -> str | None:
    """Where Kamailio's modules are (the multiarch directory differs between machines)."""
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules/tls.so"))
    found += sorted(glob.glob("/usr/lib/kamailio/modules/tls.so"))
    return str(Path(found[0]).parent) + "/" if found else None


def _defines(addresses: LabAddresses, keepalive_interval: int) -> tuple[str, ...]:
    defines = [f"KEEPALIVE_INTERVAL={keepalive_interval}"]
    modules = _modules_dir()
    if modules is not None and modules != "/usr/lib/x86_64-linux-gnu/kamailio/modules/":
        defines.append(f'MODULES_DIR="{modules}"')
    if not addresses.is_default:
        sbc = addresses.sbc
        defines += [
            f"SBC_IP={sbc}",
            f'SBC_HOST="{sbc}"',
            *(f'PROXY{i}_IP="{ip}"' for i, ip in enumerate(addresses.proxies, start=1)),
            f'PSTN_URI="sip:{addresses.pstn}:5060"',
            f'RTPENGINE_SOCK="udp:{sbc}:{addresses.rtpengine_port}"',
        ]
    return tuple(defines)


def _write_certs(certs: Path, topology: Path | None, workdir: Path) -> None:
    """``sbcsim certs --out CERTS`` (an existing CA is kept, so a rerun changes nothing)."""
    args = [sys.executable, "-m", "sbcsim", "certs", "--out", str(certs)]
    if topology is not None:
        args += ["--topology", str(topology)]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=CERTS_TIMEOUT, cwd=workdir
        )
    except subprocess.TimeoutExpired:
        raise LabStartError(f"`sbcsim certs --out {certs}` took over {CERTS_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise LabStartError(
            f"`sbcsim certs --out {certs}` failed ({done.returncode}): {done.stdout}{done.stderr}"
        )


def _moved_topology(addresses: LabAddresses) -> dict[str, Any]:
    from sbcsim.topology import load_topology

    data: dict[str, Any] = load_topology(None).model_dump(mode="json")
    data["sbc"]["microsoft_side"]["address"] = addresses.sbc
    data["sbc"]["pstn_side"]["address"] = addresses.sbc
    for proxy, address in zip(data["microsoft"]["proxies"], addresses.proxies, strict=True):
        proxy["address"] = address
    data["pstn"]["address"] = addresses.pstn
    # nothing of the contact center runs here; only keep it off the SBC's addresses
    sbc_prefix = addresses.sbc.rsplit(".", 1)[0]
    data["contact_center"]["address"] = f"{sbc_prefix}.31"
    return data


def prepare_lab(
    workdir: Path,
    addresses: LabAddresses = DEFAULT_ADDRESSES,
    *,
    config_dir: Path = KAMAILIO_DIR,
    warmup: float | None = None,
    keepalive_interval: int = LAB_KEEPALIVE_INTERVAL,
) -> KamailioLab:
    """Make the certificates and, for other than the default addresses, copies of the
    configuration and target moved to ``addresses``.  ``warmup`` replaces the target's."""
    workdir.mkdir(parents=True, exist_ok=True)
    if addresses.is_default and warmup is None:
        certs = config_dir / "certs"
        _write_certs(certs, None, workdir)
        return KamailioLab(
            addresses,
            config_dir / "kamailio.cfg",
            config_dir / "target.yaml",
            certs,
            workdir,
            _defines(addresses, keepalive_interval),
        )
    for name in ("kamailio.cfg", "tls.cfg", "dispatcher.list"):
        shutil.copyfile(config_dir / name, workdir / name)
    topology: Path | None = None
    target: dict[str, Any] = yaml.safe_load((config_dir / "target.yaml").read_text())
    if not addresses.is_default:
        topology = workdir / "topology.yaml"
        topology.write_text(yaml.safe_dump(_moved_topology(addresses), sort_keys=False))
        target["topology"] = topology.name
        target["sbc"]["microsoft_side"]["address"] = addresses.sbc
        target["sbc"]["pstn_side"]["address"] = addresses.sbc
        for bound, address in zip(
            target["bind"]["proxies"].values(), addresses.proxies, strict=True
        ):
            bound["address"] = address
        target["bind"]["pstn"]["address"] = addresses.pstn
    if warmup is not None:
        target["warmup"] = warmup
    target_file = workdir / "target.yaml"
    target_file.write_text(yaml.safe_dump(target, sort_keys=False))
    certs = workdir / "certs"
    _write_certs(certs, topology, workdir)
    return KamailioLab(
        addresses,
        workdir / "kamailio.cfg",
        target_file,
        certs,
        workdir,
        _defines(addresses, keepalive_interval),
        topology,
    )


# ------------------------------------------------------------------------------ the processes


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) or "(empty log)"


def _likely_cause(log: str, where: str) -> str:
    lowered = log.lower()
    if "address already in use" in lowered or "cannot bind" in lowered:
        return f"something already listens on {where} (another SBC, or `sbcsim sbc`?)"
    if "cannot assign requested address" in lowered:
        return f"{where} is not an address of this machine"
    if "permission denied" in lowered:
        return "a file or port it needs is not accessible to this user"
    if "tls" in lowered and ("certificate" in lowered or "private key" in lowered):
        return "a TLS file in tls.cfg is missing or unreadable (run `sbcsim certs` first)"
    return "see its log"


class LabProcess:
    """One peer program run in the foreground, its output in a log file; stopped with SIGTERM,
    then SIGKILL, each wait bounded."""

    def __init__(self, name: str, args: Sequence[str], log: Path, where: str) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self.where = where
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            start_new_session=True,
        )

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until it holds; :class:`LabStartError` if the process exits first or
        ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                log = _tail(self.log)
                raise LabStartError(
                    f"{self.name} exited with code {code} while starting on {self.where}: "
                    f"{_likely_cause(log, self.where)}\n--- {self.log} ---\n{log}"
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                log = _tail(self.log)
                self.stop()
                raise LabStartError(
                    f"{self.name} did not get ready on {self.where} within {timeout:g} s: "
                    f"{_likely_cause(log, self.where)}\n--- {self.log} ---\n{log}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL); its exit code, None if it would not die."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    try:
                        self.process.wait(timeout)
                    except subprocess.TimeoutExpired:
                        return None
            return self.process.returncode
        finally:
            self._log_file.close()


def _bencode(value: Mapping[str, str]) -> bytes:
    out = b"d"
    for key in sorted(value):
        for item in (key, value[key]):
            raw = item.encode()
            out += str(len(raw)).encode() + b":" + raw
    return out + b"e"


def rtpengine_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether rtpengine answers a ``ping`` on its control (ng) socket."""
    cookie = uuid.uuid4().hex[:12].encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(cookie + b" " + _bencode({"command": "ping"}), (host, port))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return False
    return data.startswith(cookie + b" ") and b"pong" in data


def _tcp_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _require(program: str) -> str:
    path = find_peer(program)
    if path is None:
        package = DEBIAN_PACKAGES.get(program, program)
        raise PeerMissingError(
            f"{program} is not installed (Debian package {package!r}; `make peers` installs it)"
        )
    return path


def start_rtpengine(lab: KamailioLab, timeout: float = START_TIMEOUT) -> LabProcess:
    """rtpengine in user space (no kernel module), its control socket on the SBC address."""
    a = lab.addresses
    args = [
        _require("rtpengine"),
        "--config-file=none",
        "--table=-1",
        "--foreground",
        "--log-stderr",
        "--no-redis-required",
        f"--interface={a.sbc}",
        f"--listen-ng={a.sbc}:{a.rtpengine_port}",
        f"--port-min={a.media_ports[0]}",
        f"--port-max={a.media_ports[1]}",
        f"--pidfile={lab.workdir / 'rtpengine.pid'}",
    ]
    where = f"{a.sbc}:{a.rtpengine_port}/udp (control)"
    process = LabProcess("rtpengine", args, lab.rtpengine_log, where)
    process.wait_ready(lambda: rtpengine_answers(a.sbc, a.rtpengine_port), timeout)
    return process


def start_kamailio(lab: KamailioLab, timeout: float = START_TIMEOUT) -> LabProcess:
    """Kamailio in the foreground (``-DD -E``), its runtime files in the work directory; ready
    once it listens on TLS and has put the three proxy FQDNs in its DNS cache."""
    runtime = lab.workdir / "run"
    runtime.mkdir(exist_ok=True)
    # the working directory (-w) is the configuration's: dispatcher.list, tls.cfg and certs/
    # are named relative to it
    args = [_require("kamailio"), "-f", str(lab.config), "-DD", "-E"]
    args += ["-w", str(lab.config.parent), "-Y", str(runtime)]
    for define in lab.defines:
        args += ["-A", define]
    sbc = lab.addresses.sbc
    where = f"{sbc}:5061/tls and {sbc}:5060/udp"
    process = LabProcess("kamailio", args, lab.kamailio_log, where)

    def ready() -> bool:
        log = lab.kamailio_log.read_text(errors="replace")
        return "sip3.pstnhub.microsoft.com resolves to" in log and _tcp_listening(sbc, 5061)

    process.wait_ready(ready, timeout)
    return process


@dataclass(frozen=True, slots=True)
class RunningSbc:
    """rtpengine and Kamailio while they run."""

    lab: KamailioLab
    rtpengine: LabProcess
    kamailio: LabProcess

    def check_alive(self) -> None:
        """:class:`LabStartError` naming the process and the end of its log when one of them
        has exited (a run against a dead SBC judges nothing)."""
        for process in (self.kamailio, self.rtpengine):
            code = process.process.poll()
            if code is not None:
                raise LabStartError(
                    f"{process.name} exited with code {code} during the run on "
                    f"{process.where}\n--- {process.log} ---\n{_tail(process.log)}"
                )


@contextmanager
def running_sbc(lab: KamailioLab, timeout: float = START_TIMEOUT) -> Iterator[RunningSbc]:
    """rtpengine and Kamailio, from before the block to after it."""
    rtpengine = start_rtpengine(lab, timeout)
    try:
        kamailio = start_kamailio(lab, timeout)
        try:
            yield RunningSbc(lab, rtpengine, kamailio)
        finally:
            kamailio.stop()
    finally:
        rtpengine.stop()


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class PlanRun:
    """One ``sbcsim run``: its exit code, output and reports."""

    returncode: int
    stdout: str
    stderr: str
    junit: Path
    report: Path
    wall_seconds: float


def run_plan(
    lab: KamailioLab,
    out: Path,
    *,
    plan: Path = PLAN,
    select: str | None = None,
    timeout: float = PLAN_TIMEOUT,
    traces: bool = False,
) -> PlanRun:
    """``sbcsim run PLAN --target TARGET --junit OUT/junit.xml --json OUT/report.json``."""
    out.mkdir(parents=True, exist_ok=True)
    junit, report = out / "junit.xml", out / "report.json"
    args = [sys.executable, "-m", "sbcsim", "run", str(plan), "--target", str(lab.target)]
    args += ["--junit", str(junit), "--json", str(report)]
    if select is not None:
        args += ["-k", select]
    if traces:
        args += ["--out", str(out / "traces")]
    started = time.monotonic()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        raise LabStartError(f"`sbcsim run` did not finish within {timeout:g} s") from exc
    return PlanRun(
        done.returncode, done.stdout, done.stderr, junit, report, time.monotonic() - started
    )


@dataclass(frozen=True, slots=True)
class ScenarioVerdict:
    """A scenario's verdict and the ids of its checks that did not pass."""

    verdict: str
    failed: tuple[str, ...] = ()
    messages: Mapping[str, str] = field(default_factory=dict, compare=False)


def read_verdicts(report: Path) -> dict[str, ScenarioVerdict]:
    """Scenario id -> verdict, from ``sbcsim run --json``."""
    data = json.loads(report.read_text())
    out: dict[str, ScenarioVerdict] = {}
    for scenario in data["scenarios"]:
        # a skipped check (one that looks inside the reference SBC) is no failure
        failed = [c for c in scenario.get("checks", []) if c["verdict"] in ("fail", "error")]
        out[scenario["id"]] = ScenarioVerdict(
            scenario["verdict"],
            tuple(c["id"] for c in failed),
            {c["id"]: c.get("message") or "" for c in failed},
        )
    return out


@dataclass(frozen=True, slots=True)
class ExpectedVerdicts:
    """What the configuration is expected to get: scenarios that pass, scenarios that fail with
    exactly these checks failing, scenarios skipped against a live SBC."""

    passing: frozenset[str]
    failing: Mapping[str, tuple[str, ...]]
    skipped: frozenset[str]

    def verdict(self, scenario: str) -> ScenarioVerdict | None:
        if scenario in self.passing:
            return ScenarioVerdict("pass")
        if scenario in self.failing:
            return ScenarioVerdict("fail", self.failing[scenario])
        if scenario in self.skipped:
            return ScenarioVerdict("skip")
        return None


def load_expected(path: Path = KAMAILIO_DIR / EXPECTED_FILE) -> ExpectedVerdicts:
    data = yaml.safe_load(path.read_text())
    failing = {str(k): tuple(str(c) for c in v) for k, v in (data.get("fail") or {}).items()}
    return ExpectedVerdicts(
        frozenset(data.get("pass") or ()), failing, frozenset(data.get("skip") or ())
    )


def compare_verdicts(
    expected: ExpectedVerdicts, actual: Mapping[str, ScenarioVerdict]
) -> list[str]:
    """Every difference between the expected and the actual verdicts, one line each."""
    problems: list[str] = []
    for scenario in sorted(
        set(actual) | expected.passing | set(expected.failing) | expected.skipped
    ):
        want = expected.verdict(scenario)
        got = actual.get(scenario)
        if want is None:
            problems.append(
                f"{scenario}: not in {EXPECTED_FILE} (got {got.verdict if got else '-'})"
            )
        elif got is None:
            problems.append(f"{scenario}: expected {want.verdict}, but the plan did not run it")
        elif (got.verdict, sorted(got.failed)) != (want.verdict, sorted(want.failed)):
            detail = ", ".join(got.failed) or "no failing check"
            wanted = ", ".join(want.failed) or "no failing check"
            problems.append(
                f"{scenario}: expected {want.verdict} ({wanted}), got {got.verdict} ({detail})"
            )
    return problems


def verdict_table(
    actual: Mapping[str, ScenarioVerdict], expected: ExpectedVerdicts | None = None
) -> Table:
    """The verdicts, with the failing checks and whether each is the expected one."""
    table = Table(title="Kamailio against the Direct Routing plan")
    table.add_column("scenario")
    table.add_column("verdict")
    table.add_column("failing checks", overflow="fold")
    if expected is not None:
        table.add_column("as expected")
    for scenario in sorted(actual):
        got = actual[scenario]
        row = [scenario, got.verdict.upper(), "\n".join(got.failed)]
        if expected is not None:
            want = expected.verdict(scenario)
            same = want is not None and (want.verdict, sorted(want.failed)) == (
                got.verdict,
                sorted(got.failed),
            )
            row.append("yes" if same else "NO")
        table.add_row(*row)
    return table


# ------------------------------------------------------------------------------ command line


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/kamailio"),
    show_default=True,
    help="Directory for the logs, the JUnit file and the JSON report.",
)
@click.option(
    "--free-block",
    is_flag=True,
    help="Use a free block of loopback addresses (127.A.B.x) instead of the target's own.",
)
@click.option("-k", "select", default=None, help="Only the scenarios matching this expression.")
@click.option("--traces", is_flag=True, help="Also write each scenario's trace (--out DIR/traces).")
def main(out: Path, free_block: bool, select: str | None, traces: bool) -> None:
    """Start Kamailio and rtpengine with docker/kamailio/, run the Direct Routing plan at them,
    stop them and print the verdicts.  Exit 0 when every verdict is the expected one
    (docker/kamailio/expected-verdicts.yaml), 1 when one differs, 2 on a set-up problem."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        addresses = free_loopback_block() if free_block else DEFAULT_ADDRESSES
        lab = prepare_lab(out.resolve() / "lab", addresses)
        with running_sbc(lab) as sbc:
            run = run_plan(lab, out.resolve(), select=select, traces=traces)
            sbc.check_alive()
    except (LabStartError, PeerMissingError) as exc:
        console.print(f"kamailio-check: {exc}", markup=False)
        sys.exit(2)
    if not run.report.is_file():
        console.print(run.stdout + run.stderr, markup=False)
        console.print(f"kamailio-check: `sbcsim run` exited {run.returncode} without a report")
        sys.exit(2)
    actual = read_verdicts(run.report)
    expected = load_expected()
    if select is not None:
        expected = replace(
            expected,
            passing=expected.passing & set(actual),
            failing={k: v for k, v in expected.failing.items() if k in actual},
            skipped=expected.skipped & set(actual),
        )
    console.print(verdict_table(actual, expected))
    problems = compare_verdicts(expected, actual)
    console.print(
        f"target {lab.target}: {len(actual)} scenarios in {run.wall_seconds:.0f} s; "
        f"JUnit {run.junit}; logs in {lab.workdir}",
        markup=False,
    )
    if problems:
        console.print("verdicts that differ from expected-verdicts.yaml:", markup=False)
        for line in problems:
            console.print(f"  {line}", markup=False)
        sys.exit(1)
    console.print("every verdict is the expected one", markup=False)


if __name__ == "__main__":
    main()
