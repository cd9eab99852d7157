"""The engine's public face: one `Engine` per project, used alike by the CLI and the MCP adapter.

Every action becomes events on the session machine (driven by engine/session/) or on delegation-run machines (driven
by engine/delegation/). Results are plain dicts, so the CLI prints them (`--json`) and the MCP adapter returns them as
structured content. Nothing inside engine/ imports this module: the parts get what they share from `EngineContext`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from engine.context import EngineContext
from engine.delegation.answer_forms import status_form
from engine.delegation.recovery import DEFAULT_MAX_RECOVERIES, recover
from engine.delegation.retention import RetentionPolicy, apply_policy
from engine.delegation.service import Delegations
from engine.delegation.verify import DEFAULT_TIMEOUT_S
from engine.delegation.views import list_row, run_view
from engine.errors import InvalidArgument
from engine.logs import default_to_stderr
from engine.progress import Progress, no_progress
from engine.project import Project
from engine.session.lifecycle import Session
from engine.store import repair
from engine.store.db import MachineRecord, Store
from engine.store.health import DamagedRow, DatabaseUnavailable
from states import BATCH, DELEGATION, MACHINES, BatchData, OutputFile, RunData

__all__ = ["Engine"]


def _damaged_row(row: DamagedRow) -> dict[str, Any]:
    """A run whose row cannot be read, in the columns of `runs` (views.list_row), its problem and fix in `error`."""
    return {"run_id": row.machine_id, "state": row.state, "task": None, "task_type": None, "attempts": None,
            "max_attempts": None, "files": [], "error": str(row), "created_at": row.created_at,
            "updated_at": row.updated_at, "compacted_at": None, "damaged": True}


class Engine:
    def __init__(self, project: Project, *, store: Store | None = None) -> None:
        default_to_stderr()  # library use before any configure_logging: never print logs to stdout
        self.project = project
        # Opened at the first call, not here: a damaged database fails that call with what to do, and the MCP
        # server still starts to say so (engine/store/health.py).
        self.ctx = EngineContext(project=project, store=store or Store(project.state_db, open_now=False))
        self.session = Session(self.ctx)
        self.delegations = Delegations(self.ctx, self.session)

    @classmethod
    def open(cls, project_dir: str | os.PathLike[str] | None = None) -> Engine:
        return cls(Project.resolve(project_dir))

    @property
    def store(self) -> Store:
        return self.ctx.store

    def close(self) -> None:
        self.ctx.store.close()

    @asynccontextmanager
    async def background(self) -> AsyncIterator[Engine]:
        """Run delegations in the background of this context (the MCP server's lifetime, or one CLI command)."""
        async with self.ctx.background.scope():
            yield self

    def cancel_background(self) -> None:
        """Stop background work (server shutdown); runs keep their persisted state and resume on the next start."""
        self.ctx.background.cancel()

    # -- the session ------------------------------------------------------------------------------------------------

    async def capability(self) -> dict[str, Any]:
        return await self.session.capability()

    async def enable(
        self, *, llm: str | bool | None = True, backend: str | None = None, slots: int | None = None,
        answer_form: str | None = None, progress: Progress = no_progress,
    ) -> dict[str, Any]:
        """Load the model for delegations. `slots`: how many generations run at once on the backend (an int >= 1;
        None: what the server says, llama.cpp's /props, else 1). `answer_form`: the session's default for delegations
        (`edits`, `whole` or `json`; None keeps the rule's, engine.executor.forms)."""
        return self._with_form(await self.session.enable(llm=llm, backend=backend, slots=slots,
                                                         answer_form=answer_form, progress=progress))

    async def disable(self, *, stop_server: bool = False, progress: Progress = no_progress) -> dict[str, Any]:
        return await self.session.disable(stop_server=stop_server, progress=progress)

    async def status(self) -> dict[str, Any]:
        """The session's status; `{"state": "unavailable", "problem", "fix"}` while the database (or the session's
        row) cannot be read, so a client polling status learns what to do instead of getting an error."""
        try:
            # Status is where a user asks whether all is well: rows it does not read (finished runs) are checked too.
            await anyio.to_thread.run_sync(self.store.check_machines)
            return self._with_form(await self.session.status())
        except DatabaseUnavailable as exc:
            return exc.as_status()
        except DamagedRow as exc:
            return {"state": "unavailable", "database": str(self.store.path), "problem": str(exc), "fix": exc.fix}

    def _with_form(self, status: dict[str, Any]) -> dict[str, Any]:
        """The answer form a delegation with none of its own gets now, and the rule that chose it."""
        return {**status, **status_form(self.project.delegation_log, status)}

    async def claim_session(self) -> dict[str, Any] | None:
        """A long-lived owner (the MCP server) starts: it owns the sessions it enables from now on, and a session
        left loaded by an owner that was killed is unloaded. Returns the new status when something was cleaned up."""
        return await self.session.claim()

    async def end_session(self) -> dict[str, Any]:
        """The owner ends cleanly: unload unless persist (Ollama keeps running)."""
        return await self.session.end()

    # -- delegation runs -----------------------------------------------------------------------------------------

    def analyze(
        self, *, task: str, files: Sequence[str] | None = None, output_files: Sequence[str | OutputFile] | None = None,
        task_type: str | None = None,
    ) -> dict[str, Any]:
        return self.delegations.analyze(task=task, files=files, output_files=output_files, task_type=task_type)

    async def delegate(
        self, *, task: str, output_files: Sequence[str | OutputFile], task_type: str | None = None,
        context_files: Sequence[str] | None = None, verify: str | None = None, max_attempts: int | None = None,
        model: str | None = None, allow_secrets: bool = False, allow_config_writes: bool = False,
        verify_timeout: float | None = DEFAULT_TIMEOUT_S, wait: float | None = None, progress: Progress = no_progress,
        think: bool | str | None = False, answer_form: str | None = None,
    ) -> dict[str, Any]:
        """Run a delegation. `answer_form`: `edits`, `json` or None/`auto` (the session's, else the backend's).
        `think`: False (the default: mechanical work), True or a level, for models that can. `wait=None` waits for
        its end; a number of seconds answers after that long with the run's current view (the run goes on in
        `background()`; collect it with `result`)."""
        await self._check_before_new_work()
        return await self.delegations.delegate(
            task=task, output_files=output_files, task_type=task_type, context_files=context_files, verify=verify,
            max_attempts=max_attempts, model=model, allow_secrets=allow_secrets,
            allow_config_writes=allow_config_writes, verify_timeout=verify_timeout, wait=wait, progress=progress,
            think=think, answer_form=answer_form,
        )

    async def batch(self, spec: object, *, wait: float | None = None, progress: Progress = no_progress
                    ) -> dict[str, Any]:
        """Run a batch: `spec` is a list of delegate requests, or an object with `runs` (that list) or `template` +
        `glob` (one request per matching file), and the options `max_parallel` (default: the backend's slots),
        `max_failures`, `max_attempts` (per child) and `parallel_verify` (default false: one verify at a time).
        Answers like `delegate` after `wait`: the counts while it runs, one line per child once it ended."""
        await self._check_before_new_work()
        return await self.delegations.batch(spec, wait=wait, progress=progress)

    async def _check_before_new_work(self) -> None:
        """New runs never go into a damaged file: the user would have to move it aside with them (their records then
        out of sight); ~24 ms on a year of runs (engine/store/health.py), next to a generation's seconds."""
        await anyio.to_thread.run_sync(self.store.check_machines)

    async def result(self, run_id: str, *, wait: float = 0.0, diff: bool = False) -> dict[str, Any]:
        """A run's compact result (a batch's counts, or its summary once ended), after waiting up to `wait` seconds
        for its end; `diff` adds each file's unified diff against the file as the run found it."""
        return await self.delegations.result(run_id, wait=wait, diff=diff)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        return await self.delegations.cancel(run_id)

    def run_status(self, run_id: str) -> dict[str, Any] | None:
        """Where a run or a batch stands, read from the store alone (any process on the project can answer it; nothing
        is driven here): None when no run or batch has this id. `kind` (delegation or batch), `state`, `ended`,
        `created_at` and `updated_at` (epoch seconds; a batch's latest child move counts), and for a run `attempt` and
        `max_attempts`, for a batch `total`, `children_ended` and `paused` (why it waits, or None)."""
        record = self.ctx.store.find(run_id)
        if record is None or record.kind not in (DELEGATION.kind, BATCH.kind):
            return None
        status: dict[str, Any] = {"run_id": record.id, "kind": record.kind, "state": record.state,
                                  "created_at": record.created_at, "updated_at": record.updated_at}
        if record.kind == BATCH.kind:
            children = self.delegations.batches.children(record)
            status.update(ended=record.state in BATCH.terminal, total=len(children),
                          children_ended=sum(c.state in DELEGATION.terminal for c in children),
                          paused=BatchData.from_json(record.data).paused,
                          updated_at=max([record.updated_at, *(c.updated_at for c in children)]))
        else:
            data = RunData.from_json(record.data)
            status.update(ended=record.state in DELEGATION.terminal, attempt=data.attempt,
                          max_attempts=data.max_attempts)
        return status

    def stats(self) -> dict[str, Any]:
        return self.delegations.stats()

    def list_runs(self, *, limit: int = 50, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Runs, newest first; a row that cannot be read is listed with its problem in `error` (`damaged: true`)."""
        records, damaged = self.ctx.store.scan(kind=DELEGATION.kind, states=states, limit=limit)
        rows = [(r.created_at, r.id, list_row(r)) for r in records]
        rows += [(d.created_at, d.machine_id, _damaged_row(d)) for d in damaged]
        return [row for *_, row in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)]

    def _in_live_batch(self, record: MachineRecord) -> bool:
        """A child whose batch has not ended: the batch resumes it (a child not started never runs on its own)."""
        batch_id = RunData.from_json(record.data).batch_id
        batch = self.ctx.store.find(batch_id) if batch_id else None
        return batch is not None and batch.state not in BATCH.terminal

    def _row(self, run_id: str) -> dict[str, Any]:
        try:
            return list_row(self.ctx.store.get(run_id))
        except DamagedRow as exc:
            return _damaged_row(exc)

    def run_view(self, run_id: str) -> dict[str, Any]:
        """A run's row, data and journal; for a batch id, its summary and journal (its children: `<id>.<n>`)."""
        if self.delegations.is_batch(run_id):
            view = self.delegations.batch_view(run_id)
            return {"run_id": run_id, "task_type": "batch", "task": f"{view['total']} children", **view,
                    "events": [{"version": e.version, "event": e.event, "from": e.src, "to": e.dst,
                                "payload": e.payload, "at": e.at} for e in self.ctx.store.events(run_id)]}
        record = self.delegations.record(run_id)
        return run_view(record, self.ctx.store.events(run_id))

    async def resume(
        self, *, max_recoveries: int = DEFAULT_MAX_RECOVERIES, progress: Progress = no_progress
    ) -> dict[str, Any]:
        """Resume every run whose process died; `progress` counts the runs."""
        report = await recover(self.delegations.driver.moves, self.delegations.resume_run,
                               max_recoveries=max_recoveries, progress=progress, skip=self._in_live_batch)
        batches = await recover(self.delegations.batches, self.delegations.resume_batch,
                                max_recoveries=max_recoveries, progress=progress)
        return {
            "batches": batches.resumed + batches.skipped,
            "resumed": report.resumed,
            "aborted": report.aborted,
            "skipped": report.skipped,
            "errors": report.errors,
            "runs": [self._row(i) for i in [*report.resumed, *report.aborted, *report.errors]],
        }

    # -- the database (engine/store/repair.py) -----------------------------------------------------------------

    def db_check(self) -> dict[str, Any]:
        """Read every page (PRAGMA quick_check) and every row: what is damaged and what to do."""
        return repair.check(self.ctx.store)

    def db_move_aside(self, *, force: bool = False) -> dict[str, Any]:
        """Rename a damaged state.db (+ -wal, -shm) to state.db.damaged-<UTC time>; the next call starts afresh.
        A database that is not damaged is moved only with `force`."""
        return repair.move_aside(self.ctx.store, force=force)

    def db_forget(self, machine_id: str) -> dict[str, Any]:
        """Remove one row that cannot be read (and its journal), after keeping a copy of the database."""
        return repair.forget(self.ctx.store, machine_id)

    def db_compact(self, *, keep_days: float | None = None, keep_mb: float | None = None,
                   everything: bool = False) -> dict[str, Any]:
        """Apply the retention policy now (`keep_days`/`keep_mb` override $LOCAL_LLM_KEEP_DAYS/$LOCAL_LLM_KEEP_MB;
        `everything`: drop the bodies of every finished run), then rewrite the file without its free pages."""
        policy = RetentionPolicy.from_env(keep_days=keep_days, keep_mb=keep_mb)
        return apply_policy(self.ctx.store, policy, everything=everything, vacuum=True)

    async def apply_retention(self) -> dict[str, Any]:
        """The retention policy at a cheap moment (`serve`'s start, once interrupted runs resumed): in a worker
        thread, a batch of runs per transaction, stopping between two when the caller is cancelled."""
        policy = RetentionPolicy.from_env()
        return await anyio.to_thread.run_sync(partial(
            apply_policy, self.ctx.store, policy, check_cancelled=anyio.from_thread.check_cancelled))

    # -- diagrams -----------------------------------------------------------------------------------------------

    def diagram(self, kind: str, *, run_id: str | None = None, fmt: str = "mermaid") -> str:
        from engine import diagrams  # only `diagram` needs it: kept out of every server's start-up (B6)

        if kind not in MACHINES:
            raise InvalidArgument("machine", f"one of {', '.join(MACHINES)}", kind)
        if fmt not in diagrams.FORMATS:
            raise InvalidArgument("format", f"one of {', '.join(diagrams.FORMATS)}", fmt)
        spec = MACHINES[kind]
        if run_id is None:
            return diagrams.render(diagrams.extract(spec), fmt)
        record = self.ctx.store.get(run_id)
        if record.kind != kind:
            raise InvalidArgument("run", f"the id of a {kind} machine; {run_id} is a {record.kind}", run_id)
        path = diagrams.path_from_journal(self.ctx.store.events(run_id))
        title = f"{kind} {run_id}: {record.state}"
        return diagrams.render(diagrams.extract(spec, current=record.state, path=path, title=title), fmt)
