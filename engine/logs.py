"""structlog, configured once per process: readable lines on a terminal's stderr, JSON lines to `engine.log`.

Nothing is ever logged to stdout: in `serve`, stdout carries the MCP protocol.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TextIO

import structlog
from structlog.typing import ExcInfo

__all__ = ["configure_logging", "default_to_stderr"]


def default_to_stderr() -> None:
    """Before `configure_logging` runs (library use, tests), structlog would print to stdout; send it to stderr."""
    if not structlog.is_configured():
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

_configured: Path | None | bool = False


def _one_line_exception(sio: TextIO, exc_info: ExcInfo) -> None:
    """On a terminal, an exception is one line; its traceback goes to engine.log (and to stderr with -v): users
    read stderr, and a page of frames there hides the line that says what to do."""
    sio.write(f"\n{exc_info[0].__name__}: {exc_info[1]} (traceback in engine.log; -v shows it here)")


def configure_logging(*, log_file: Path | None, verbose: bool = False, console: bool | None = None) -> None:
    """Route every structlog and stdlib record to stderr (human form) and to `log_file` (JSON lines).

    `console=None` shows warnings on stderr, or everything with `verbose`.
    """
    global _configured
    if _configured is not False and _configured == log_file:
        return
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_local_llm", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG)

    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(
                    colors=sys.stderr.isatty(),
                    exception_formatter=structlog.dev.plain_traceback if verbose else _one_line_exception,
                ),
            ],
        )
    )
    stderr._local_llm = True  # type: ignore[attr-defined]
    handlers: list[logging.Handler] = [stderr] if console is not False else []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(log_file, maxBytes=5_000_000, backupCount=2, encoding="utf-8")
        to_file.setLevel(logging.DEBUG if verbose else logging.INFO)
        to_file.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        to_file._local_llm = True  # type: ignore[attr-defined]
        handlers.append(to_file)
    if not handlers:
        # Without any handler, logging's last-resort handler would print warnings to stderr as raw event dicts.
        silent = logging.NullHandler()
        silent._local_llm = True  # type: ignore[attr-defined]
        handlers.append(silent)
    for handler in handlers:
        root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = log_file
