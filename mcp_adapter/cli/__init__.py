"""The `local-llm` command: the same engine as the MCP server, one subcommand per action.

This package's modules import typer, except serve.py; the package itself imports nothing, so that `serve`
(mcp_adapter/entry.py) can use serve.py without the CLI library.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's former target (`mcp_adapter.cli:main`), kept for installs made before mcp_adapter.entry."""
    from mcp_adapter.entry import main as entry_main

    return entry_main(argv)
