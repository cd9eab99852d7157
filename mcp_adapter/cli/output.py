"""How commands print: JSON with --json, otherwise a short human rendering. Results go to stdout, logs to stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.progress import Progress, no_progress

__all__ = ["Result", "emit", "end_progress_line", "table", "terminal_progress"]


@dataclass(frozen=True)
class Result:
    data: Any
    text: str | Callable[[Any], str] | None = None
    exit_code: int = 0
    quiet: bool = False
    """Print nothing (serve: stdout belonged to the protocol)."""


def emit(result: Result, *, as_json: bool) -> None:
    if result.quiet:
        return
    if as_json or result.text is None:
        if isinstance(result.data, str) and not as_json:
            sys.stdout.write(result.data if result.data.endswith("\n") else result.data + "\n")
        else:
            sys.stdout.write(json.dumps(result.data, indent=2, sort_keys=False, default=str) + "\n")
        return
    text = result.text(result.data) if callable(result.text) else result.text
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(row.get(c, "") if row.get(c) is not None else "") for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _share(done: float, total: float | None) -> str:
    if not total:
        return f"{done:g}"
    # Byte counts (pulls) read best as a percentage, attempt counts as "1/3".
    return f"{100 * done / total:5.1f}%" if total > 100 else f"{done:g}/{total:g}"


def terminal_progress() -> Progress:
    """Progress as one rewritten line on stderr, only on a terminal: pipes, logs and --json output stay clean."""
    if not sys.stderr.isatty():
        return no_progress
    started = time.monotonic()

    async def progress(done: float, total: float | None, message: str) -> None:
        line = f"\r\x1b[2K[{time.monotonic() - started:5.1f}s] {_share(done, total)} {message}"
        sys.stderr.write(line[:200])
        sys.stderr.flush()

    return progress


def end_progress_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
