"""What the session code and the delegation runs share: the project, its store, the sets of persisted machines
(sessions, runs, batches), and the task group that background runs live in. The `Engine` facade builds one; nothing
below the facade imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from engine.project import Project
from engine.store.db import Store
from engine.store.machines import PersistedMachines
from states import BATCH, DELEGATION, SESSION

__all__ = ["Background", "EngineContext"]


class Background:
    """The task group that runs outlive a call in: the MCP server's lifetime, or one CLI command."""

    def __init__(self) -> None:
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def active(self) -> bool:
        return self._task_group is not None

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                try:
                    yield
                finally:
                    self._task_group = None
        except BaseExceptionGroup as group:
            # One failure is the common case: raise it as itself so callers catch UserError, not a group.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Start `fn(*args)` in the background; False when no `scope()` is active (the caller then runs it)."""
        if self._task_group is None:
            return False
        self._task_group.start_soon(fn, *args)
        return True

    def cancel(self) -> None:
        """Stop background work (server shutdown); runs keep their persisted state and resume on the next start."""
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()


@dataclass
class EngineContext:
    project: Project
    store: Store
    sessions: PersistedMachines = field(init=False)
    runs: PersistedMachines = field(init=False)
    batches: PersistedMachines = field(init=False)
    background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        self.sessions = PersistedMachines(self.store, SESSION)
        self.runs = PersistedMachines(self.store, DELEGATION)
        self.batches = PersistedMachines(self.store, BATCH)

    def runs_active(self) -> int:
        live = [s for s in DELEGATION.states if s not in DELEGATION.terminal]
        return self.store.count(kind=DELEGATION.kind, states=live)
