from __future__ import annotations

from collections.abc import Callable

import pytest

from sbcsim.logs import configure_logging
from sbcsim.testing.peers import DEBIAN_PACKAGES, find_peer, in_ci

# Logs to stderr (pytest captures it) at every level: tests assert on log events with
# structlog.testing.capture_logs, which only sees what the level filter lets through.
configure_logging("debug")


@pytest.fixture(autouse=True)
def _logs_at_every_level() -> None:
    """A command run through CliRunner configures logging for a user (warning and above);
    put the test set-up back so later tests see every event."""
    configure_logging("debug")


@pytest.fixture
def require_peer() -> Callable[[str], str]:
    """``require_peer("sipp")`` -> path; fails in CI, skips elsewhere, when it is missing."""

    def _require(program: str) -> str:
        path = find_peer(program)
        if path is None:
            package = DEBIAN_PACKAGES.get(program, program)
            message = f"{program} is not installed (Debian package {package!r}; `make peers` installs it as root)"
            if in_ci():
                pytest.fail(message)
            pytest.skip(message)
        return path

    return _require
