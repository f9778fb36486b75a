"""The whole Direct Routing plan, embedded: wall seconds, simulated seconds and their ratio.

Targets: the plan in <= 10 s wall on a 2-core machine, simulated/wall >= 50.  Also runs the plan
with ``--jobs 2`` (one process per core) to show the parallel figure.

    .venv/bin/python benchmarks/plan.py [PLAN] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sbcsim.logs import configure_logging
from sbcsim.scenario.labworld import factory_for
from sbcsim.testplan.plan import load_plan
from sbcsim.testplan.runner import RunOptions, run_plan

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "testplans" / "direct-routing-sbc.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    configure_logging("warning")
    loaded = load_plan(Path(args.plan))
    table = Table(
        title=f"{loaded.plan.id}: {len(loaded.scenarios)} scenarios, embedded reference SBC"
    )
    for col in ("jobs", "verdict", "wall s (best)", "simulated s", "sim/wall"):
        table.add_column(col, justify="right")
    ok = True
    for jobs in (1, 2):
        best = float("inf")
        sim = 0.0
        verdict = ""
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run_plan(
                loaded,
                list(loaded.scenarios),
                factory_for(loaded, "embedded"),
                RunOptions(jobs=jobs),
            )
            wall = time.perf_counter() - t0
            best = min(best, wall)
            sim = result.sim_seconds
            verdict = f"{result.count('pass')}/{len(result.scenarios)} pass"
            ok = ok and result.exit_code == 0
        table.add_row(str(jobs), verdict, f"{best:.2f}", f"{sim:.0f}", f"{sim / best:.0f}")
    Console().print(table)
    Console().print("targets: whole plan <= 10 s wall, simulated/wall >= 50")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
