"""structlog setup: JSON lines when stdout is not a TTY, console rendering on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from core.config import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def check_log_level(key: str, level: str) -> str:
    """The level, lower-cased; ConfigError naming `key` unless it is one of LOG_LEVELS."""
    if level.lower() not in LOG_LEVELS:
        raise ConfigError(f"{key} must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
    return level.lower()


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """ConfigError for a level not in LOG_LEVELS (callers check their key at load with check_log_level)."""
    level = check_log_level("log level", level)
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
