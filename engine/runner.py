"""Delegation runs: analyze, delegate, result, cancel, stats (placeholder until issue #4 lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import NotAvailable
from engine.progress import Progress, no_progress

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = ["Delegations"]


class Delegations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def analyze(self, task: str, **fields: Any) -> dict[str, Any]:
        raise NotAvailable("analyze is not available yet (delegation pipeline, issue #4)")

    async def delegate(self, *, progress: Progress = no_progress, **fields: Any) -> dict[str, Any]:
        raise NotAvailable("delegate is not available yet (delegation pipeline, issue #4)")

    async def result(self, run_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        raise NotAvailable("result is not available yet (delegation pipeline, issue #4)")

    async def cancel(self, run_id: str) -> dict[str, Any]:
        raise NotAvailable("cancel is not available yet (delegation pipeline, issue #4)")

    def stats(self) -> dict[str, Any]:
        raise NotAvailable("stats is not available yet (delegation pipeline, issue #4)")
