"""Finding the real peer programs (SIPp, sipsak, baresip, Kamailio, rtpengine, tshark, Chromium).

In CI (``CI=true``) a missing peer is a failure, never a skip: an interop test that silently
does not run proves nothing.  On a developer's machine it is a skip that names the Debian package
to install (``make peers`` installs them all when run as root).
"""

from __future__ import annotations

import os
import shutil

__all__ = ["DEBIAN_PACKAGES", "find_peer", "in_ci"]

#: program -> the Debian package that ships it
DEBIAN_PACKAGES: dict[str, str] = {
    "sipp": "sip-tester",
    "sipsak": "sipsak",
    "baresip": "baresip",
    "kamailio": "kamailio",
    "rtpengine": "rtpengine-daemon",
    "tshark": "tshark",
    "chromium": "chromium",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_peer(program: str) -> str | None:
    """Absolute path of ``program`` or ``None``."""
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
