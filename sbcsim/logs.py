"""Logging set-up: structured logs (structlog) on stderr, filtered by level.

Library code only gets loggers (``structlog.get_logger("sbcsim.<area>")``) and binds context
(``node``, ``call_id``, ``branch``, ``tenant``); the command line, benchmarks and tests decide
where logs go and how much of them.
"""

from __future__ import annotations

import sys

__all__ = ["configure_logging"]


def configure_logging(level: str) -> None:
    """Structured logs go to stderr (stdout is for results); ``level`` filters them."""
    import logging

    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
