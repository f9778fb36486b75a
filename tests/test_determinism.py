"""One seed, one run: a lossy simulation is reproducible bit for bit.

The same seed must give the same bytes on the wire at the same virtual times in the same order
— twice in one process, and in a fresh interpreter with a different string-hash salt (so no
``hash()``-ordered set or dict, no wall clock and no unseeded randomness can sneak in).  A
different seed must give a different run.  The digest covers every captured packet: send time,
arrival time (exact, as ``float.hex``), addresses, transport, connection, fate and the bytes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from sbcsim.endpoints.basic import AnsweringUas, CallGenerator
from sbcsim.net.memory import MemoryNetwork
from sbcsim.sim import Simulator
from sbcsim.stack import sim_node

SEED = 4242
CALLS = 200


def capture_digest(seed: int) -> str:
    """SHA-256 of the capture of a 200-call run over a lossy, duplicating, reordering,
    jittery UDP link; the run must also end with every call completed."""
    sim = Simulator(seed)
    net = MemoryNetwork(sim)
    net.set_link(
        "10.0.0.1", "10.0.0.2", latency=0.005, jitter=0.004, loss=0.1, duplicate=0.05, reorder=0.05
    )
    caller = sim_node(sim, net, "caller", "10.0.0.1")
    callee = sim_node(sim, net, "callee", "10.0.0.2")
    AnsweringUas(callee, ring_delay=0.05, answer_delay=0.3)
    gen = CallGenerator(
        caller,
        "sip:bob@10.0.0.2",
        ("10.0.0.2", 5060),
        transport="udp",
        calls=CALLS,
        rate=40.0,
        hold=2.0,
    )
    gen.start()
    if not sim.run_until(lambda: gen.done, 600.0):
        raise AssertionError(f"seed {seed}: calls still running: {gen.stats}")
    sim.run_until_idle(600.0)
    digest = hashlib.sha256()
    for p in net.capture:
        arrival = "-" if p.arrival is None else p.arrival.hex()
        head = (
            f"{p.time.hex()}|{arrival}|{p.src[0]}:{p.src[1]}|{p.dst[0]}:{p.dst[1]}|"
            f"{p.transport}|{p.connection_id}|{p.dropped}|{p.fault}|{len(p.data)}|"
        )
        digest.update(head.encode())
        digest.update(p.data)
    digest.update(repr(gen.stats).encode())
    return digest.hexdigest()


def test_same_seed_same_capture_in_one_process() -> None:
    assert capture_digest(SEED) == capture_digest(SEED)


def test_same_seed_same_capture_in_a_fresh_interpreter() -> None:
    here = Path(__file__).resolve()
    program = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('determinism_run', {str(here)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['determinism_run'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"print(module.capture_digest({SEED}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "97"}  # another salt for str hashes than ours
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == capture_digest(SEED)  # (after any log lines)


def test_another_seed_gives_another_capture() -> None:
    assert capture_digest(SEED) != capture_digest(SEED + 1)
