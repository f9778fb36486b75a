"""Fixtures for the emulated Microsoft side's tests; the raw SBC lives in ``rawsbc.py``.

The suite runs with ``--import-mode=importlib``, so this directory is put on ``sys.path`` for
the test modules to share the helper as a plain module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from rawsbc import RawSbc, make_raw_sbc  # noqa: E402

from sbcsim.endpoints.microsoft import MicrosoftSettings  # noqa: E402
from sbcsim.lab import Lab  # noqa: E402


@pytest.fixture
def quiet_settings() -> MicrosoftSettings:
    """Settings without Microsoft's own OPTIONS pings (they are tested on their own)."""
    return MicrosoftSettings(send_options=False)


@pytest.fixture
def lab(quiet_settings: MicrosoftSettings) -> Lab:
    return Lab.build(settings=quiet_settings)


@pytest.fixture
def raw_sbc(lab: Lab) -> RawSbc:
    return make_raw_sbc(lab)


@pytest.fixture
def make_sbc() -> Callable[..., RawSbc]:
    return make_raw_sbc
