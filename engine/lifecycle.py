"""Session lifecycle: capability, enable, disable, status (placeholder until issue #3 lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import NotAvailable
from engine.progress import Progress, no_progress

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = ["Lifecycle"]


class Lifecycle:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def capability(self) -> dict[str, Any]:
        raise NotAvailable("capability is not available yet (backends and lifecycle, issue #3)")

    async def enable(
        self, llm: str | bool | None = True, *, backend: str | None = None, progress: Progress = no_progress
    ) -> dict[str, Any]:
        raise NotAvailable("enable is not available yet (backends and lifecycle, issue #3)")

    async def disable(self, *, stop_server: bool = False, progress: Progress = no_progress) -> dict[str, Any]:
        raise NotAvailable("disable is not available yet (backends and lifecycle, issue #3)")

    async def status(self) -> dict[str, Any]:
        from states import DELEGATION

        record = self.engine.session()
        return {
            "state": record.state,
            "backend": record.data.get("backend"),
            "model": record.data.get("model"),
            "persist": bool(record.data.get("persist", False)),
            "loaded": [],
            "runs_active": self.engine.store.count(
                kind=DELEGATION.kind, states=[s for s in DELEGATION.states if s not in DELEGATION.terminal]
            ),
        }
