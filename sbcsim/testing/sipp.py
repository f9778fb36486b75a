"""Run SIPp as a peer and read its verdict from its statistics, not only its exit code.

SIPp's exit code can say success when fewer calls ran than asked for, so :class:`SippResult`
carries the call counters of the statistics file (``-trace_stat``); callers assert on those.
"""

from __future__ import annotations

import asyncio
import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sbcsim.errors import PeerMissingError
from sbcsim.testing.peers import find_peer

__all__ = ["SippResult", "run_sipp"]


@dataclass(frozen=True, slots=True)
class SippResult:
    exit_code: int
    successful: int
    failed: int
    created: int
    stats: dict[str, str] = field(repr=False)
    output: str = field(repr=False)
    elapsed: float = 0.0

    @property
    def calls_per_second(self) -> float:
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0


def _elapsed_seconds(text: str) -> float:
    # "00:00:20:012000" or "00:00:20:012" (h:m:s:us) in SIPp's statistics
    parts = text.strip().split(":")
    if len(parts) != 4:
        return 0.0
    h, m, s, frac = parts
    return int(h) * 3600 + int(m) * 60 + int(s) + float("0." + frac)


async def run_sipp(args: list[str], *, timeout: float, workdir: Path | None = None) -> SippResult:
    """Run ``sipp`` with ``args`` (plus statistics options) and wait at most ``timeout`` seconds.

    Raises :class:`PeerMissingError` when SIPp is not installed and :class:`TimeoutError` when it
    did not finish in time (after killing it).
    """
    sipp = find_peer("sipp")
    if sipp is None:
        raise PeerMissingError("sipp is not installed (Debian package 'sip-tester')")
    with tempfile.TemporaryDirectory(prefix="sbcsim-sipp-", dir=workdir) as tmp:
        stat_file = Path(tmp) / "stats.csv"
        cmd = [sipp, *args, "-nostdin", "-trace_stat", "-stf", str(stat_file), "-fd", "1"]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp,
            env={**os.environ, "TERM": "dumb"},
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TimeoutError(f"sipp {' '.join(args)} did not finish within {timeout} s") from None
        rows: list[dict[str, str]] = []
        if stat_file.exists():
            with stat_file.open(newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter=";"))
        last = rows[-1] if rows else {}

        def counter(name: str) -> int:
            value = last.get(name, "0") or "0"
            return int(value) if value.strip().isdigit() else 0

        return SippResult(
            exit_code=proc.returncode if proc.returncode is not None else -1,
            successful=counter("SuccessfulCall(C)"),
            failed=counter("FailedCall(C)"),
            created=counter("TotalCallCreated"),
            stats=last,
            output=out.decode("utf-8", "replace"),
            elapsed=_elapsed_seconds(last.get("ElapsedTime(C)", "")),
        )
