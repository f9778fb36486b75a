"""Identifiers for SIP: Via branches, From/To tags, Call-IDs.

The SIP, transaction and dialog layers never draw random numbers themselves; an :class:`IdSource`
is handed to them.  In simulation it is an :class:`IdGenerator` over a seeded ``random.Random``,
so the same seed yields the same identifiers and therefore the same bytes on the wire.  Tests that
want to read identifiers at a glance use :class:`SequentialIds` instead.
"""

from __future__ import annotations

import random
import re
from typing import Protocol

__all__ = ["BRANCH_MAGIC_COOKIE", "IdGenerator", "IdSource", "SequentialIds"]

#: RFC 3261 §8.1.1.7: a branch starting with this marks a transaction id built the RFC 3261 way.
BRANCH_MAGIC_COOKIE = "z9hG4bK"

# RFC 3261 `token` characters: safe inside a branch, a tag and a Call-ID.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]*")


class IdSource(Protocol):
    """What the SIP core needs to mint identifiers."""

    def branch(self) -> str:
        """A new Via branch, always starting with the magic cookie ``z9hG4bK``."""
        ...

    def tag(self) -> str:
        """A new From/To tag."""
        ...

    def call_id(self, host: str) -> str:
        """A new Call-ID, ``<unique>@<host>`` (just ``<unique>`` when ``host`` is empty)."""
        ...

    def hex(self, n: int) -> str:
        """``n`` lowercase hex digits (for anything else that must be unique: cnonce, ...)."""
        ...


class IdGenerator:
    """Random identifiers drawn from an injected ``random.Random``.

    Sizes follow RFC 3261: tags carry well over the required 32 bits of randomness (§19.3), and
    branches and Call-IDs are long enough to be unique across a whole simulation run.
    """

    __slots__ = ("_rng",)

    BRANCH_DIGITS = 16
    TAG_DIGITS = 12
    CALL_ID_DIGITS = 24

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def hex(self, n: int) -> str:
        """``n`` random lowercase hex digits."""
        if n < 1:
            raise ValueError(f"need at least one hex digit, got {n}")
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def branch(self) -> str:
        """``z9hG4bK`` followed by 64 random bits."""
        return BRANCH_MAGIC_COOKIE + self.hex(self.BRANCH_DIGITS)

    def tag(self) -> str:
        """48 random bits as hex."""
        return self.hex(self.TAG_DIGITS)

    def call_id(self, host: str) -> str:
        """96 random bits as hex, then ``@host``."""
        unique = self.hex(self.CALL_ID_DIGITS)
        return f"{unique}@{host}" if host else unique


class SequentialIds:
    """Readable, predictable identifiers for tests: ``z9hG4bK-b1``, ``t1``, ``c1@host`` ...

    Each kind has its own counter, so adding a Call-ID to a test does not renumber its tags.
    ``prefix`` (RFC 3261 token characters only) lets several nodes in one test mint disjoint ids.
    """

    __slots__ = ("_branches", "_call_ids", "_hexes", "_tags", "prefix")

    def __init__(self, prefix: str = "") -> None:
        if not _TOKEN_RE.fullmatch(prefix):
            raise ValueError(f"id prefix must be RFC 3261 token characters, got {prefix!r}")
        self.prefix = prefix
        self._branches = 0
        self._tags = 0
        self._call_ids = 0
        self._hexes = 0

    def branch(self) -> str:
        """``z9hG4bK-<prefix>b<n>``."""
        self._branches += 1
        return f"{BRANCH_MAGIC_COOKIE}-{self.prefix}b{self._branches}"

    def tag(self) -> str:
        """``<prefix>t<n>``."""
        self._tags += 1
        return f"{self.prefix}t{self._tags}"

    def call_id(self, host: str) -> str:
        """``<prefix>c<n>@host``."""
        self._call_ids += 1
        unique = f"{self.prefix}c{self._call_ids}"
        return f"{unique}@{host}" if host else unique

    def hex(self, n: int) -> str:
        """The next counter value as hex, zero-padded to ``n`` digits (longer if it overflows)."""
        if n < 1:
            raise ValueError(f"need at least one hex digit, got {n}")
        self._hexes += 1
        return f"{self._hexes:0{n}x}"
