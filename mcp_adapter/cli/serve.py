"""`local-llm serve`: the MCP server on stdio, for Claude Code and other MCP clients.

Imported without typer, click or rich (mcp_adapter/entry.py routes `serve` here with stdlib argparse): they would
add start-up time to every MCP session, and stdout belongs to the protocol.
"""

from __future__ import annotations

import sys

import anyio

from engine import Engine, Project, UserError
from engine.logs import configure_logging
from mcp_adapter.cli.exit_codes import INTERRUPTED, OK, REFUSED

__all__ = ["run_serve"]


async def _serve(project: Project) -> None:
    from mcp_adapter.server import serve

    engine = Engine(project)
    try:
        await serve(engine)
    finally:
        engine.close()


def run_serve(*, project: str | None, verbose: bool) -> int:
    """Serve until the client closes stdin (or SIGTERM); the exit code, as the other commands give it."""
    try:
        root = Project.resolve(project)
        configure_logging(log_file=root.engine_log, verbose=verbose)
        anyio.run(_serve, root)
    except UserError as exc:
        sys.stderr.write(f"local-llm serve: {exc}\n")
        return REFUSED
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return INTERRUPTED
    return OK
