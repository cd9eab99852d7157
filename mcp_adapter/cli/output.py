"""How commands print: JSON with --json, otherwise a short human rendering. Results go to stdout, logs to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Result", "emit", "table"]


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
