"""Run baresip as a headless SIP/TLS phone and drive it over its ``ctrl_tcp`` control socket.

baresip is a real, independent SIP user agent (libre's SIP stack and OpenSSL), which makes it the
interop peer for whole calls over TLS.  It has no use for a terminal here: the ``ctrl_tcp`` module
takes commands as netstring-framed JSON on a TCP port (``{"command": "dial", "params": ...,
"token": ...}``), answers each one (``{"response": true, "ok": ..., "token": ...}``) and pushes
every user-agent event (``{"event": true, "type": "CALL_ESTABLISHED", ...}``) on the same
connection.  :class:`BaresipProcess` starts baresip from a config directory written by
:func:`write_config`, waits — on its output, never on the clock — until it is ready, and turns
that socket into awaitable commands and events, every wait bounded.

What the configuration carries, and why (Debian's baresip 1.0.0 with libre 1.1.0):

* only ``g711`` (the codecs), ``ausine`` (an audio source that needs no sound card) and the
  account, ``menu`` (where ``dial``/``hangup`` live) and ``ctrl_tcp`` modules; no player module
  is loaded, which baresip accepts (the received audio goes nowhere).  ``ausine`` produces 48 kHz
  stereo only, hence ``ausrc_srate``/``ausrc_channels`` and baresip's resampler down to G.711;
* ``net_interface 127.0.0.1`` (an interface *name* cannot be resolved in every sandbox) and SIP
  listening on loopback, so that nothing leaves the host;
* ``sip_certificate`` is one PEM file with the certificate and its key: baresip presents it both
  on its TLS listener and as the client certificate of its outgoing connections;
* ``sip_cafile`` is loaded into the TLS context, but this baresip never asks libre to verify the
  server it connects to (it calls neither ``tls_set_verify_server`` nor a host check), so it
  accepts any server certificate: with it, only the *server* side of mutual TLS is exercised;
* accounts are registrar-less (``regint=0``), and calls carry plain RTP/AVP (no ``mediaenc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import Any

from sbcsim.errors import PeerMissingError, SbcsimError
from sbcsim.net.base import Address
from sbcsim.testing.peers import find_peer

__all__ = [
    "BaresipConfig",
    "BaresipError",
    "BaresipEvent",
    "BaresipProcess",
    "BaresipResponse",
    "NetstringDecoder",
    "encode_netstring",
    "free_tcp_port",
    "render_accounts",
    "render_config",
    "write_config",
]

#: Where Debian installs baresip's modules.
DEFAULT_MODULE_PATH = Path("/usr/lib/baresip/modules")
#: What baresip prints once every module is loaded and the control socket listens.
READY_LINE = "baresip is ready."
# Netstrings longer than this are a protocol error, not a reason to buffer without end.
_MAX_NETSTRING = 1 << 20
# Output lines kept for error messages.
_OUTPUT_TAIL = 200


class BaresipError(SbcsimError):
    """baresip did not start, died, or broke the control protocol; the message carries the
    tail of its output."""


@dataclass(frozen=True, slots=True)
class BaresipConfig:
    """What goes into baresip's config directory.

    ``certificate`` is a PEM file holding the certificate *and* its private key.  ``sip_listen``
    with port 0 lets each SIP transport bind any free port.
    """

    ctrl_port: int
    sip_listen: Address = ("127.0.0.1", 0)
    certificate: Path | None = None
    ca_file: Path | None = None
    aor: str = "sip:baresip@127.0.0.1;transport=tls"
    display_name: str = ""
    account_params: tuple[str, ...] = ("regint=0", "answermode=manual")
    call_max_calls: int = 4
    sine_frequency: int = 440
    module_path: Path = DEFAULT_MODULE_PATH
    modules: tuple[str, ...] = ("g711.so", "ausine.so")
    temp_modules: tuple[str, ...] = ("account.so",)
    app_modules: tuple[str, ...] = ("menu.so", "ctrl_tcp.so")
    extra: tuple[tuple[str, str], ...] = ()


def _host_port(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(cfg: BaresipConfig) -> str:
    """The ``config`` file: one ``key value`` per line, as baresip reads it."""
    host = cfg.sip_listen[0]
    lines: list[tuple[str, str]] = [
        ("poll_method", "epoll"),
        ("sip_listen", _host_port(cfg.sip_listen)),
    ]
    if cfg.certificate is not None:
        lines.append(("sip_certificate", os.fspath(cfg.certificate)))
    if cfg.ca_file is not None:
        lines.append(("sip_cafile", os.fspath(cfg.ca_file)))
    lines += [
        ("call_local_timeout", "120"),
        ("call_max_calls", str(cfg.call_max_calls)),
        ("audio_source", f"ausine,{cfg.sine_frequency}"),
        ("ausrc_srate", "48000"),
        ("ausrc_channels", "2"),
        ("audio_level", "no"),
        ("rtp_stats", "no"),
        ("net_interface", host),
        ("module_path", os.fspath(cfg.module_path)),
        *(("module", m) for m in cfg.modules),
        *(("module_tmp", m) for m in cfg.temp_modules),
        *(("module_app", m) for m in cfg.app_modules),
        ("ctrl_tcp_listen", _host_port((host, cfg.ctrl_port))),
        *cfg.extra,
    ]
    return "".join(f"{key}\t{value}\n" for key, value in lines)


def render_accounts(cfg: BaresipConfig) -> str:
    """The ``accounts`` file: the one account, ``Name <aor>;param;param``."""
    name = f'"{cfg.display_name}" ' if cfg.display_name else ""
    params = "".join(f";{p}" for p in cfg.account_params)
    return f"{name}<{cfg.aor}>{params}\n"


def write_config(directory: str | os.PathLike[str], cfg: BaresipConfig) -> Path:
    """Write ``config`` and ``accounts`` into ``directory`` (created) and return it; pass it to
    :class:`BaresipProcess`.  baresip adds its own files (uuid, contacts) there when it runs."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config").write_text(render_config(cfg))
    (path / "accounts").write_text(render_accounts(cfg))
    # An empty contacts file stops baresip from writing its template with example addresses.
    (path / "contacts").write_text("")
    return path


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, for baresip's control socket.

    baresip does not report the port it bound, so the port is chosen here; a clash with another
    process in between shows as :class:`BaresipError` from :meth:`BaresipProcess.start`.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- netstrings -----------------------------------------------------------------------------


def encode_netstring(payload: bytes) -> bytes:
    """``<length>:<payload>,`` (D. J. Bernstein's netstrings, as ``ctrl_tcp`` frames JSON)."""
    return str(len(payload)).encode("ascii") + b":" + payload + b","


class NetstringDecoder:
    """Splits a byte stream into netstring payloads; :meth:`feed` returns the whole ones."""

    def __init__(self, max_length: int = _MAX_NETSTRING) -> None:
        self._buffer = bytearray()
        self._max = max_length

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every payload now complete.  Raises :class:`ValueError` on a
        malformed or oversized netstring (the stream cannot be resynchronised after that)."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > len(str(self._max)):
                    raise ValueError(f"netstring length too long: {bytes(self._buffer[:20])!r}")
                return out
            digits = bytes(self._buffer[:colon])
            if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
                raise ValueError(f"bad netstring length {digits[:20]!r}")
            length = int(digits)
            if length > self._max:
                raise ValueError(f"netstring of {length} bytes exceeds {self._max}")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return out
            if self._buffer[end] != ord(","):
                raise ValueError(
                    f"netstring not terminated by ',' but {self._buffer[end : end + 1]!r}"
                )
            out.append(bytes(self._buffer[colon + 1 : end]))
            del self._buffer[: end + 1]


# -- control protocol -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaresipResponse:
    """The answer to one command (``data`` is what the command printed)."""

    ok: bool
    data: str
    token: str


@dataclass(frozen=True, slots=True)
class BaresipEvent:
    """One user-agent event: ``type`` such as ``CALL_RINGING``, ``CALL_ESTABLISHED``,
    ``CALL_CLOSED``; ``call_id`` is baresip's id of the call (not the SIP Call-ID); ``param``
    carries e.g. the reason a call closed."""

    type: str
    klass: str
    call_id: str | None
    peer_uri: str | None
    param: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BaresipEvent:
        def text(key: str) -> str | None:
            value = obj.get(key)
            return None if value is None else str(value)

        return cls(
            type=str(obj.get("type", "")),
            klass=str(obj.get("class", "")),
            call_id=text("id"),
            peer_uri=text("peeruri"),
            param=text("param"),
            raw=obj,
        )


EventPredicate = Callable[[BaresipEvent], bool]


class BaresipProcess:
    """One baresip process and its control connection.

    Use as ``async with BaresipProcess(config_dir) as phone:`` (start, then quit or kill on
    exit).  ``events`` holds every event received so far, in order; :meth:`wait_event` waits for
    one matching a predicate at or after an index, so a caller takes ``len(phone.events)`` as a
    mark before an action and waits for its consequence after the mark.
    """

    def __init__(
        self,
        config_dir: str | os.PathLike[str],
        *,
        ctrl_address: Address | None = None,
        executable: str | None = None,
        sip_trace: bool = False,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.ctrl_address = ctrl_address or _ctrl_address_from(self.config_dir / "config")
        self.executable = executable
        self.sip_trace = sip_trace
        self.events: list[BaresipEvent] = []
        self.output: deque[str] = deque(maxlen=_OUTPUT_TAIL)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ctrl_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready: asyncio.Event = asyncio.Event()
        self._changed: asyncio.Event = asyncio.Event()
        self._pending: dict[str, asyncio.Future[BaresipResponse]] = {}
        self._tokens = count(1)
        self._ctrl_error: BaseException | None = None
        self._partial = ""

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def start(self, timeout: float = 10.0) -> None:
        """Start baresip, wait until it prints that it is ready, and connect to ``ctrl_tcp``.

        Raises :class:`PeerMissingError` when baresip is not installed and
        :class:`BaresipError` when it exits or is not ready within ``timeout`` seconds.
        """
        exe = self.executable or find_peer("baresip")
        if exe is None:
            raise PeerMissingError("baresip is not installed (Debian package 'baresip')")
        args = [exe, "-f", os.fspath(self.config_dir)]
        if self.sip_trace:
            args.append("-s")
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.config_dir,
            env={**os.environ, "LC_ALL": "C", "TERM": "dumb"},
        )
        self._reader_task = asyncio.create_task(self._read_output(self._proc))
        exited = asyncio.create_task(self._proc.wait())
        ready = asyncio.create_task(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
            ready.cancel()
        if ready not in done:
            state = (
                f"exited with {self._proc.returncode}"
                if self._proc.returncode is not None
                else f"was not ready within {timeout} s"
            )
            await self.aclose()
            raise BaresipError(f"baresip {state}:\n{self.output_tail()}")
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(*self.ctrl_address), timeout
            )
        except (OSError, TimeoutError) as exc:
            await self.aclose()
            raise BaresipError(
                f"cannot connect to baresip's ctrl_tcp at {_host_port(self.ctrl_address)}: "
                f"{exc}\n{self.output_tail()}"
            ) from exc
        self._ctrl_task = asyncio.create_task(self._read_control(reader))

    async def quit(self, timeout: float = 5.0) -> int:
        """Ask baresip to quit and wait for it to exit (killed after ``timeout``); returns its
        exit code."""
        proc = self._proc
        if proc is None:
            raise BaresipError("baresip was not started")
        if proc.returncode is None and self._writer is not None and self._ctrl_error is None:
            # The answer may never come (it exits while answering); the exit is what counts.
            self._send("quit", "", next(self._tokens))
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await self.aclose()
        return proc.returncode if proc.returncode is not None else -1

    async def aclose(self) -> None:
        """Kill baresip if it still runs and release everything (bounded waits only)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
            self._writer = None
        for task in (self._ctrl_task, self._reader_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 2.0)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BaresipError("baresip is gone"))
        self._pending.clear()

    async def __aenter__(self) -> BaresipProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.returncode is None:
            await self.quit()
        else:
            await self.aclose()

    def output_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines baresip printed (for assertion messages)."""
        return "\n".join(list(self.output)[-lines:])

    # -- commands and events ------------------------------------------------------------------

    async def command(
        self, command: str, params: str = "", *, timeout: float = 5.0
    ) -> BaresipResponse:
        """Run one ``ctrl_tcp`` command (a ``menu`` command name) and return its answer."""
        if self._writer is None:
            raise BaresipError("baresip is not running")
        self._check_control()
        token = str(next(self._tokens))
        fut: asyncio.Future[BaresipResponse] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        self._send(command, params, token)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BaresipError(
                f"no answer to {command!r} within {timeout} s:\n{self.output_tail()}"
            ) from None
        finally:
            self._pending.pop(token, None)

    async def dial(self, uri: str, *, timeout: float = 5.0) -> BaresipResponse:
        """Place a call from the account (``dial`` adds the account's ``transport`` itself)."""
        return await self._checked("dial", uri, timeout)

    async def hangup(self, *, timeout: float = 5.0) -> BaresipResponse:
        """Hang up the current call."""
        return await self._checked("hangup", "", timeout)

    async def wait_event(
        self, predicate: EventPredicate, *, after: int = 0, timeout: float
    ) -> BaresipEvent:
        """The first event at index ``after`` or later that matches ``predicate``.

        Raises :class:`BaresipError` when none arrives within ``timeout`` seconds or the control
        connection ends first.
        """
        index = after
        try:
            async with asyncio.timeout(timeout):
                while True:
                    while index < len(self.events):
                        event = self.events[index]
                        index += 1
                        if predicate(event):
                            return event
                    self._check_control()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = ", ".join(e.type for e in self.events[after:]) or "none"
            raise BaresipError(
                f"no matching baresip event within {timeout} s (events since: {seen}):\n"
                f"{self.output_tail()}"
            ) from None

    async def wait_event_type(self, *types: str, after: int = 0, timeout: float) -> BaresipEvent:
        """The first event of one of ``types`` at index ``after`` or later."""
        return await self.wait_event(lambda e: e.type in types, after=after, timeout=timeout)

    # -- internals ----------------------------------------------------------------------------

    async def _checked(self, command: str, params: str, timeout: float) -> BaresipResponse:
        response = await self.command(command, params, timeout=timeout)
        if not response.ok:
            raise BaresipError(f"{command} {params} failed: {response.data.strip()}")
        return response

    def _send(self, command: str, params: str, token: object) -> None:
        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": str(token)})
        self._writer.write(encode_netstring(body.encode("utf-8")))

    def _check_control(self) -> None:
        if self._ctrl_error is not None:
            raise BaresipError(
                f"baresip's control connection ended: {self._ctrl_error}\n{self.output_tail()}"
            )

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        # Read in chunks, not lines: the call status line is rewritten with bare CRs and would
        # otherwise grow without a newline for as long as a call lasts.
        assert proc.stdout is not None
        while True:
            chunk = await proc.stdout.read(4096)
            if not chunk:
                return
            text = self._partial + chunk.decode("utf-8", "replace")
            *lines, self._partial = text.replace("\r", "\n").split("\n")
            for line in lines:
                if line.strip():
                    self.output.append(line)
                    if line.strip() == READY_LINE:
                        self._ready.set()

    async def _read_control(self, reader: asyncio.StreamReader) -> None:
        decoder = NetstringDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise BaresipError("baresip closed the control connection")
                for payload in decoder.feed(data):
                    self._dispatch(json.loads(payload))
        except asyncio.CancelledError:
            raise
        except (BaresipError, OSError, ValueError) as exc:
            self._ctrl_error = exc
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BaresipError(f"control connection ended: {exc}"))
        finally:
            self._changed.set()

    def _dispatch(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise ValueError(f"ctrl_tcp sent a JSON {type(obj).__name__}, not an object")
        if obj.get("event"):
            self.events.append(BaresipEvent.from_json(obj))
            self._changed.set()
        elif obj.get("response"):
            token = str(obj.get("token", ""))
            fut = self._pending.get(token)
            if fut is not None and not fut.done():
                fut.set_result(
                    BaresipResponse(
                        ok=bool(obj.get("ok")), data=str(obj.get("data", "")), token=token
                    )
                )


def _ctrl_address_from(config_file: Path) -> Address:
    """``ctrl_tcp_listen`` from a written config file."""
    for line in config_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "ctrl_tcp_listen":
            host, _, port = parts[1].rpartition(":")
            return (host.strip("[]"), int(port))
    raise BaresipError(f"{config_file} has no ctrl_tcp_listen line")
