"""The engine's public face: one `Engine` per project, used alike by the CLI and the MCP adapter.

Every action becomes events on the session machine or on delegation-run machines; results are plain dicts shaped as
DESIGN.md says, so the CLI prints them (`--json`) and the MCP adapter returns them as structured content.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from engine.errors import InvalidArgument
from engine.lifecycle import Lifecycle
from engine.logs import default_to_stderr
from engine.machines import PersistedMachines
from engine.progress import Progress, no_progress
from engine.project import Project
from engine.runner import Delegations
from engine.recovery import RecoveryReport, recover
from engine.store import MachineRecord, Store
from states import DELEGATION, MACHINES, SESSION

__all__ = ["SESSION_ID", "Engine"]

SESSION_ID = "session"
"""One session machine per project database; the process that enabled it is recorded in its data."""


def run_summary(record: MachineRecord) -> dict[str, Any]:
    data = record.data
    return {
        "run_id": record.id,
        "state": record.state,
        "task": data.get("task", ""),
        "task_type": data.get("task_type", ""),
        "attempts": data.get("attempt", 0),
        "max_attempts": data.get("max_attempts"),
        "files": [f.get("path") for f in data.get("output_files", [])],
        "error": data.get("error"),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


class Engine:
    def __init__(self, project: Project, *, store: Store | None = None) -> None:
        default_to_stderr()  # library use before any configure_logging: never print logs to stdout
        self.project = project
        self.store = store or Store(project.state_db)
        self.sessions = PersistedMachines(self.store, SESSION)
        self.runs = PersistedMachines(self.store, DELEGATION)
        self._task_group: anyio.abc.TaskGroup | None = None
        self.lifecycle = Lifecycle(self)
        self.delegations = Delegations(self)

    @classmethod
    def open(cls, project_dir: str | os.PathLike[str] | None = None) -> Engine:
        return cls(Project.resolve(project_dir))

    def close(self) -> None:
        self.store.close()

    @asynccontextmanager
    async def background(self) -> AsyncIterator[Engine]:
        """Run delegations in the background of this context (the MCP server's lifetime, or one CLI command)."""
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                try:
                    yield self
                finally:
                    self._task_group = None
        except BaseExceptionGroup as group:
            # One failure is the common case: raise it as itself so callers catch UserError, not a group.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    def spawn(self, fn: Any, *args: Any) -> bool:
        """Start `fn(*args)` in the background task group; False when no `background()` context is active."""
        if self._task_group is None:
            return False
        self._task_group.start_soon(fn, *args)
        return True

    def cancel_background(self) -> None:
        """Stop background work (server shutdown); runs keep their persisted state and resume on the next start."""
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    # -- runs and the journal -------------------------------------------------------------------------------------

    def session(self) -> MachineRecord:
        return self.sessions.ensure(SESSION_ID)

    def list_runs(self, *, limit: int = 50, states: list[str] | None = None) -> list[dict[str, Any]]:
        return [run_summary(r) for r in self.store.machines(kind=DELEGATION.kind, states=states, limit=limit)]

    def run_view(self, run_id: str) -> dict[str, Any]:
        record = self.store.get(run_id)
        if record.kind != DELEGATION.kind:
            raise InvalidArgument("run_id", "the id of a delegation run (see `local-llm runs`)", run_id)
        view = run_summary(record)
        view["data"] = record.data
        view["events"] = [
            {"version": e.version, "event": e.event, "from": e.src, "to": e.dst, "payload": e.payload, "at": e.at}
            for e in self.store.events(run_id)
        ]
        return view

    def diagram(self, kind: str, *, run_id: str | None = None, fmt: str = "mermaid") -> str:
        from engine import diagrams  # only `diagram` needs it: kept out of every server's start-up (B6)

        if kind not in MACHINES:
            raise InvalidArgument("machine", f"one of {', '.join(MACHINES)}", kind)
        if fmt not in diagrams.FORMATS:
            raise InvalidArgument("format", f"one of {', '.join(diagrams.FORMATS)}", fmt)
        spec = MACHINES[kind]
        if run_id is None:
            return diagrams.render(diagrams.extract(spec), fmt)
        record = self.store.get(run_id)
        if record.kind != kind:
            raise InvalidArgument("run", f"the id of a {kind} machine; {run_id} is a {record.kind}", run_id)
        path = diagrams.path_from_journal(self.store.events(run_id))
        title = f"{kind} {run_id}: {record.state}"
        return diagrams.render(diagrams.extract(spec, current=record.state, path=path, title=title), fmt)

    async def resume(self, *, max_recoveries: int | None = None) -> dict[str, Any]:
        hook = self.delegations.resume_run
        kwargs = {"max_recoveries": max_recoveries} if max_recoveries is not None else {}
        report: RecoveryReport = await recover(self.runs, hook, **kwargs)
        return {
            "resumed": report.resumed,
            "aborted": report.aborted,
            "skipped": report.skipped,
            "errors": report.errors,
            "runs": [run_summary(self.store.get(i)) for i in [*report.resumed, *report.aborted, *report.errors]],
        }

    # -- session lifecycle (engine/lifecycle.py) -------------------------------------------------------------------

    async def capability(self) -> dict[str, Any]:
        return await self.lifecycle.capability()

    async def enable(
        self, llm: str | bool | None = True, *, backend: str | None = None, progress: Progress = no_progress
    ) -> dict[str, Any]:
        return await self.lifecycle.enable(llm, backend=backend, progress=progress)

    async def disable(self, *, stop_server: bool = False, progress: Progress = no_progress) -> dict[str, Any]:
        return await self.lifecycle.disable(stop_server=stop_server, progress=progress)

    async def status(self) -> dict[str, Any]:
        return await self.lifecycle.status()

    # -- delegation (engine/runner.py) --------------------------------------------------------------------------

    def analyze(self, task: str, **fields: Any) -> dict[str, Any]:
        return self.delegations.analyze(task, **fields)

    async def delegate(self, progress: Progress = no_progress, **fields: Any) -> dict[str, Any]:
        return await self.delegations.delegate(progress=progress, **fields)

    async def result(self, run_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        return await self.delegations.result(run_id, wait=wait)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        return await self.delegations.cancel(run_id)

    def stats(self) -> dict[str, Any]:
        return self.delegations.stats()
