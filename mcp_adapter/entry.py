"""The `local-llm` console script and `python -m mcp_adapter`: routes `serve` without loading the CLI library.

`serve` is started by every MCP session, and its stdout is the protocol: the CLI's libraries (typer, rich) would only
add start-up time there. So argv is scanned here with stdlib argparse; `serve` (with the global options
--project/--json/-v before or after it, and nothing else) goes straight to the server, and every other command line,
`serve --help` included, goes to the typer app, imported only then. (click still loads in `serve`: the MCP SDK's
uvicorn imports it.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["HIDDEN_FROM_SERVE", "ServeOptions", "main", "serve_options"]

HIDDEN_FROM_SERVE = ("rich",)
"""Optional imports that `serve` must not take. Three libraries on its path import rich when it is installed, each
with a fallback: structlog (at import, for pretty tracebacks), httpx (its command-line tool) and the MCP SDK's
MCPServer (a RichHandler that logging.basicConfig then drops, the engine's handlers being set already). typer and
click are not listed: nothing imports them optionally, and hiding a required import would turn a slow start into a
crash (the SDK's uvicorn does import click)."""


@dataclass(frozen=True)
class ServeOptions:
    project: str | None
    verbose: bool


class _NotServe(Exception):
    """argparse met something it does not know how to read: leave the whole command line to the typer app."""


class _Scanner(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would print a usage of this partial parser and exit; the typer app gives the real error.
        raise _NotServe(message)


def _scanner() -> argparse.ArgumentParser:
    # allow_abbrev=False: `--proj X` must not be read as --project here and refused by the typer app.
    parser = _Scanner(prog="local-llm", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--project", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("command", nargs="?")
    return parser


def serve_options(argv: Sequence[str]) -> ServeOptions | None:
    """The options of a `serve` command line, or None for any other command line (those go to the typer app)."""
    if "serve" not in argv:
        return None
    try:
        known, rest = _scanner().parse_known_args(list(argv))
    except (_NotServe, argparse.ArgumentError):
        return None
    if known.command != "serve" or rest:
        return None
    return ServeOptions(project=known.project, verbose=known.verbose)


@contextmanager
def _hidden(names: Sequence[str]) -> Iterator[None]:
    """`import NAME` raises ImportError inside the block, for the modules not imported yet; the libraries that try
    one fall back to what they do without it. Afterwards they are importable again."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = serve_options(args)
    if options is not None:
        # For the whole run, not only the imports: the SDK's MCPServer tries rich when the server is built.
        with _hidden(HIDDEN_FROM_SERVE):
            from mcp_adapter.cli.serve import run_serve

            return run_serve(project=options.project, verbose=options.verbose)
    from mcp_adapter.cli.app import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
