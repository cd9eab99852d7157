"""Delegation runs as the engine offers them: analyze, delegate, result, cancel, stats, and the resume hook that
recovery hands interrupted runs to. Runs are driven by engine/delegation/driver.py."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import structlog

from engine.context import EngineContext
from engine.delegation import metrics
from engine.delegation.batch import BatchDriver, BatchLive
from engine.delegation.batch_requests import check_batch, check_batch_files
from engine.delegation.batch_views import batch_view
from engine.delegation.driver import Driver, Live
from engine.delegation.moves import create_run
from engine.delegation.recovery import claim
from engine.delegation.requests import as_run_data, check_analyze, check_delegate, check_files, check_wait
from engine.delegation.scoring import score_task
from engine.delegation.steps import SessionLink
from engine.delegation.verify import DEFAULT_TIMEOUT_S
from engine.delegation.views import result_view
from engine.errors import InvalidArgument, UserError
from engine.progress import Progress, no_progress
from engine.store.db import MachineRecord, StaleVersion
from engine.store.machines import InvalidEvent, new_id
from engine.store.ownership import current_token, token_alive
from states import BATCH, DELEGATION

__all__ = ["Delegations"]

log = structlog.get_logger(__name__)

REMOTE_POLL_S = 0.1
"""How often `result` and `cancel` look at a run that another process drives (only the store shows its progress)."""
REMOTE_CANCEL_WAIT_S = 30.0


class Delegations:
    def __init__(self, ctx: EngineContext, session: SessionLink) -> None:
        self.ctx = ctx
        self.driver = Driver(ctx, session)
        self.batches = BatchDriver(ctx, self.driver, session)

    # -- analyze --------------------------------------------------------------------------------------------------

    def _history(self) -> list[dict[str, Any]]:
        """The delegation log's records, for the score's history term (parsed incrementally: BENCHMARKS.md B2)."""
        return metrics.read_log(self.ctx.project.delegation_log).records

    def analyze(
        self, *, task: str, files: Sequence[str] | None = None, output_files: Sequence[Any] | None = None,
        task_type: str | None = None, log_decision: bool = True,
    ) -> dict[str, Any]:
        request = check_analyze(self.ctx.project.root, task=task, files=files, output_files=output_files,
                                task_type=task_type)
        analysis = score_task(request.task, files=request.files, output_files=request.output_files,
                              task_type=request.task_type, history=self._history())
        if log_decision:
            metrics.append_record(self.ctx.project.delegation_log, {
                "event": "analyze", "timestamp": metrics.now_iso(), "task": request.task,
                "task_type": request.task_type, "score": analysis.score, "decision": analysis.recommendation,
                "verification_passed": None, "tokens_generated": 0, "time_seconds": 0.0, "files": request.files,
                "output_files": request.output_files,
            })
        return analysis.as_dict()

    # -- delegate -------------------------------------------------------------------------------------------------

    async def delegate(
        self, *, task: str, output_files: Sequence[Any], task_type: str | None = None,
        context_files: Sequence[str] | None = None, verify: str | None = None, max_attempts: int | None = None,
        model: str | None = None, allow_secrets: bool = False, allow_config_writes: bool = False,
        verify_timeout: float | None = DEFAULT_TIMEOUT_S, wait: float | None = None, progress: Progress = no_progress,
        think: bool | str | None = False, answer_form: str | None = None,
    ) -> dict[str, Any]:
        """Check, create the run, drive it. `wait=None` waits for the end; a number of seconds returns the run's
        current view after that long (the run goes on in the engine's background task group)."""
        wait = check_wait(wait)
        request = check_delegate(
            task=task, task_type=task_type, context_files=context_files, output_files=output_files, verify=verify,
            max_attempts=max_attempts, model=model, allow_secrets=allow_secrets,
            allow_config_writes=allow_config_writes, verify_timeout=verify_timeout, think=think,
            answer_form=answer_form,
        )
        # stat, realpath and reading the context files: off the event loop that serves every other call.
        request = await anyio.to_thread.run_sync(partial(check_files, self.ctx.project.root, request))
        # The score stored with the run is the one `analyze` gives the same call: the history term included.
        analysis = score_task(request.task, files=request.context_files,
                              output_files=[o.path for o in request.outputs], task_type=request.task_type,
                              history=self._history())
        run_id = new_id("run")
        with self.ctx.store.transaction() as tx:  # created and owned in one commit: no resume can take it
            create_run(tx, run_id, as_run_data(request, score=analysis.score), owner=current_token())
        live = self.driver.live[run_id] = Live()
        log.info("delegation created", run_id=run_id, task_type=request.task_type,
                 outputs=[o.path for o in request.outputs])
        if wait is None or not self.ctx.background.spawn(self._drive_in_background, run_id, progress, live):
            await self.driver.drive(run_id, progress, live)
            return self.view(run_id)
        if wait:  # `wait=0` answers with no checkpoint after the commit: a caller cancelled now still gets the id
            with anyio.move_on_after(wait):
                await live.done.wait()
        return self.view(run_id)

    async def _drive_in_background(self, run_id: str, progress: Progress, live: Live) -> None:
        # An error here would cancel the whole task group (the MCP server's lifetime): log it, keep the others going.
        try:
            await self.driver.drive(run_id, progress, live)
        except UserError as exc:  # the database or the run's row: the message says what to do, no traceback
            log.error("background delegation stopped", run_id=run_id, error=str(exc))
        except Exception:
            log.exception("background delegation stopped", run_id=run_id)

    async def resume_run(self, record: MachineRecord) -> None:
        """The resume hook: recovery has claimed `record`; drive it to its end from its persisted state."""
        if record.id in self.driver.live:
            return  # this process drives it already (resume called while it runs): never drive a run twice
        live = self.driver.live[record.id] = Live(resumed=True)
        await self.driver.drive(record.id, no_progress, live)

    # -- batches ----------------------------------------------------------------------------------------------------

    async def batch(self, spec: object, *, wait: float | None = None, progress: Progress = no_progress
                    ) -> dict[str, Any]:
        """Check every child, create the batch and its children in one transaction, drive it (its children in
        parallel up to the backend's slots). `wait` as for `delegate`."""
        wait = check_wait(wait)
        root = self.ctx.project.root
        # A template's glob lists directories and the children's files are read: off the event loop.
        request = await anyio.to_thread.run_sync(partial(check_batch, root, spec))
        request = await anyio.to_thread.run_sync(partial(check_batch_files, root, request))
        history = self._history()
        scores = [score_task(c.task, files=c.context_files, output_files=[o.path for o in c.outputs],
                             task_type=c.task_type, history=history).score for c in request.children]
        record = self.batches.create(request, scores=scores)
        live = BatchLive(progress=progress)
        self.batches.live[record.id] = live
        log.info("batch created", batch_id=record.id, children=len(request.children))
        if wait is None or not self.ctx.background.spawn(self._batch_in_background, record.id, live):
            await self.batches.drive(record.id, live)
            return self.batch_view(record.id)
        if wait:  # as for `delegate`
            with anyio.move_on_after(wait):
                await live.done.wait()
        return self.batch_view(record.id)

    async def _batch_in_background(self, batch_id: str, live: BatchLive) -> None:
        try:
            await self.batches.drive(batch_id, live)
        except UserError as exc:
            log.error("background batch stopped", batch_id=batch_id, error=str(exc))
        except Exception:
            log.exception("background batch stopped", batch_id=batch_id)

    async def resume_batch(self, record: MachineRecord) -> None:
        """The resume hook of batches: drive it from its persisted state; it resumes its own children."""
        if record.id in self.batches.live:
            return
        await self.batches.drive(record.id, BatchLive(resumed=True))

    def is_batch(self, machine_id: object) -> bool:
        return isinstance(machine_id, str) and (found := self.ctx.store.find(machine_id)) is not None \
            and found.kind == BATCH.kind

    def batch_view(self, batch_id: str) -> dict[str, Any]:
        record = self.ctx.store.get(batch_id)
        return batch_view(record, self.batches.children(record))

    async def batch_result(self, batch_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        if wait and self.ctx.store.get(batch_id).state not in BATCH.terminal:
            with anyio.move_on_after(wait):
                live = self.batches.live.get(batch_id)
                if live is not None:
                    await live.done.wait()
                else:
                    while self.ctx.store.get(batch_id).state not in BATCH.terminal:
                        await anyio.sleep(REMOTE_POLL_S)
        return self.batch_view(batch_id)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel the children that have not ended (rolled back); finished children stay."""
        record = self.ctx.store.get(batch_id)
        if record.state in BATCH.terminal:
            raise UserError(f"batch {batch_id} has finished in state {record.state!r}; there is nothing to cancel")
        self.batches.request_cancel(batch_id)
        live = self.batches.live.get(batch_id)
        if live is None and claim(self.ctx.batches, batch_id) is not None:  # nobody drives it: stop it here
            live = BatchLive(cancel_requested=True, resumed=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.batches.drive, batch_id, live)
                await self._cancel_children(record)
            return self.batch_view(batch_id)
        await self._cancel_children(record)
        if live is not None:
            await live.done.wait()
        else:  # driven by another live process: it sees the request in the store
            await self.batch_result(batch_id, wait=REMOTE_CANCEL_WAIT_S)
        return self.batch_view(batch_id)

    async def _cancel_children(self, record: MachineRecord) -> None:
        for child in self.batches.children(record):
            if child.id in self.driver.live and child.state not in DELEGATION.terminal:
                await self.batches.cancel_child(child.id)

    # -- result / cancel / stats ----------------------------------------------------------------------------------

    def record(self, run_id: object) -> MachineRecord:
        expected = "the id of a delegation run (see `local-llm runs`)"
        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgument("run_id", expected, run_id)
        record = self.ctx.store.get(run_id)
        if record.kind != DELEGATION.kind:
            raise InvalidArgument("run_id", expected, run_id)
        return record

    def view(self, run_id: str, *, diff: bool = False) -> dict[str, Any]:
        return result_view(self.record(run_id), self.ctx.store.file_writes(run_id), diff=diff)

    async def _until_ended(self, run_id: str) -> None:
        while self.ctx.store.get(run_id).state not in DELEGATION.terminal:
            await anyio.sleep(REMOTE_POLL_S)

    async def result(self, run_id: str, *, wait: float = 0.0, diff: bool = False) -> dict[str, Any]:
        if self.is_batch(run_id):
            return await self.batch_result(run_id, wait=wait)
        record = self.record(run_id)
        if wait and record.state not in DELEGATION.terminal:
            with anyio.move_on_after(wait):
                live = self.driver.live.get(run_id)
                if live is not None:
                    await live.done.wait()
                else:  # driven by another process
                    await self._until_ended(run_id)
        return self.view(run_id, diff=diff)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        if self.is_batch(run_id):
            return await self.cancel_batch(run_id)
        record = self.record(run_id)
        if record.state in DELEGATION.terminal:
            raise UserError(
                f"run {run_id} has finished in state {record.state!r}; there is nothing to cancel "
                "(a finished run's files stay as they are)"
            )
        moves = self.driver.moves
        live = self.driver.live.get(run_id)
        if live is not None:
            live.cancel_requested = True
            moves.request_cancel(run_id)
            if live.scope is not None:
                live.scope.cancel()
            await live.done.wait()
            return self.view(run_id)
        if record.owner and record.owner != current_token() and token_alive(record.owner):
            if record.state == "pending":
                try:
                    moves.fire_by_id(run_id, "cancel", data={"cancel_requested": True})
                    return self.view(run_id)
                except (InvalidEvent, StaleVersion):
                    pass  # it started meanwhile: ask its process instead
            # Another live process drives it: it sees the flag within CANCEL_POLL_S and rolls back.
            moves.request_cancel(run_id)
            with anyio.move_on_after(REMOTE_CANCEL_WAIT_S):
                await self._until_ended(run_id)
            return self.view(run_id)
        # Nobody drives it (its process died): cancel and roll back here.
        if claim(self.ctx.runs, run_id) is None:
            return self.view(run_id)
        moves.request_cancel(run_id)
        live = self.driver.live.setdefault(run_id, Live(cancel_requested=True, resumed=True))
        await self.driver.drive(run_id, no_progress, live)
        return self.view(run_id)

    def stats(self) -> dict[str, Any]:
        return metrics.aggregate(metrics.read_log(self.ctx.project.delegation_log))
