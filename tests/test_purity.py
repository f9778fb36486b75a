"""The protocol core imports no I/O, clock or randomness (DESIGN.md, habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "sbcsim"
FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "time",
    "random",
    "uuid",
    "selectors",
    "threading",
    "datetime",
}
PURE_PACKAGES = ["sip", "transaction", "dialog"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
            if node.module.startswith("sbcsim."):
                names.add(node.module)
    return names


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_core_packages_import_no_io_clock_or_randomness(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"sbcsim/{package} has no modules"
    for path in files:
        imported = _imports(path)
        bad = imported & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT.parent)} imports {sorted(bad)}"
        layered = {m for m in imported if m.startswith("sbcsim.")}
        allowed = (
            "sbcsim.errors",
            "sbcsim.sip",
            "sbcsim.net.base",
            "sbcsim.transaction",
            "sbcsim.dialog",
        )
        assert all(m.startswith(allowed) for m in layered), f"{path.name} imports {sorted(layered)}"


def test_sip_does_not_import_upper_layers() -> None:
    for path in (ROOT / "sip").rglob("*.py"):
        layered = {m for m in _imports(path) if m.startswith("sbcsim.")}
        assert all(m.startswith(("sbcsim.errors", "sbcsim.sip")) for m in layered), path.name
