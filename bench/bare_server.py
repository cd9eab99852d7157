"""The baseline for B2 and B6: a bare MCPServer on the same SDK with one echo tool, served on stdio.

`python -m bench.bare_server` (or `python bench/bare_server.py`). It imports only the SDK, so the difference to
`local-llm serve` is what the engine and the adapter add.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server import MCPServer

__all__ = ["build", "main"]


def build() -> MCPServer:
    server = MCPServer(name="bare-echo")

    @server.tool(name="echo", description="returns its arguments")
    async def echo(action: str, task: str | None = None) -> dict[str, Any]:
        return {"action": action, "task": task}

    return server


def main() -> None:
    anyio.run(build().run_stdio_async)


if __name__ == "__main__":
    main()
