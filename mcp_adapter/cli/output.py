"""How commands print: JSON with --json, otherwise a short human rendering (text, or a rich table).

Results go to stdout; progress bars and logs go to stderr, and progress only when stderr is a terminal, so pipes,
log files and --json output stay clean.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import Progress, no_progress

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = ["Result", "emit", "progress_bar", "table"]

PIPE_WIDTH = 10_000
"""Console width when stdout is not a terminal: a table keeps its natural width, so a script never gets a long
task cut or wrapped at 80 columns."""


@dataclass(frozen=True)
class Result:
    data: Any
    text: str | Callable[[Any], str | RenderableType] | None = None
    exit_code: int = 0


def _stdout_console() -> Console:
    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, highlight=False, width=PIPE_WIDTH)
    return console


def _write(text: str) -> None:
    # Plain text is written as is, not through rich: it can hold brackets (paths, model output) that rich would
    # read as markup.
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def emit(result: Result, *, as_json: bool) -> None:
    if as_json or result.text is None:
        if isinstance(result.data, str) and not as_json:
            _write(result.data)
        else:
            _write(json.dumps(result.data, indent=2, sort_keys=False, default=str))
        return
    rendered = result.text(result.data) if callable(result.text) else result.text
    if isinstance(rendered, str):
        _write(rendered)
    else:
        _stdout_console().print(rendered)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str | Table:
    if not rows:
        return "(none)"
    from rich import box
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        # Text(), not str: a task's text is the user's and must not be parsed as rich markup.
        grid.add_row(*(Text("" if row.get(c) is None else str(row[c])) for c in columns))
    return grid


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A `Progress` callback drawing a rich progress bar on stderr while the block runs; a no-op off a terminal."""
    if not sys.stderr.isatty():
        yield no_progress
        return
    # rich.progress is imported only here: most commands never draw a bar, and none does in a pipe.
    from mcp_adapter.cli.progress import terminal_bar

    with terminal_bar() as progress:
        yield progress
