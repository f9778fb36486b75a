"""Fixtures for the UA tests; the pump itself lives in ``uapump.py`` beside this file.

The suite runs with ``--import-mode=importlib``, which puts no test directory on ``sys.path``;
this directory is added so the test modules can share the pump as a plain module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from uapump import Net  # noqa: E402


@pytest.fixture
def net() -> Net:
    """A fresh zero-latency network at t=0."""
    return Net()
