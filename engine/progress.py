"""Progress reporting shared by the CLI (a terminal line) and the MCP adapter (progress notifications)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Progress", "no_progress"]

Progress = Callable[[float, "float | None", str], Awaitable[None]]
"""`await progress(done, total_or_None, message)`; same arguments as MCP's `report_progress`."""


async def no_progress(done: float, total: float | None, message: str) -> None:
    return None
