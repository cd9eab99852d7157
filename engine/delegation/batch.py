"""The one driver of batch machines (states/batch.py): creates a batch and all its children in one transaction,
schedules the children (in parallel up to the backend's slots; each an ordinary run driven by
engine/delegation/driver.py), pauses while the backend does not answer, stops at the failure limit, cancels, and
resumes a batch whose process died (the batch, not recovery, resumes its children). Only this module fires batch
events; its children's events it asks of their owner (RunMoves, engine/delegation/moves.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import structlog

from engine.context import EngineContext
from engine.delegation import metrics
from engine.delegation.batch_requests import BatchRequest
from engine.delegation.batch_views import batch_log_line, counts, progress_message
from engine.delegation.driver import Driver, Live
from engine.delegation.generation import safe_progress
from engine.delegation.moves import create_run
from engine.delegation.recovery import DEFAULT_MAX_RECOVERIES, claim, recover_one
from engine.delegation.requests import as_run_data
from engine.delegation.steps import SessionLink
from engine.progress import Progress, no_progress
from engine.store.db import MachineRecord, Transaction
from engine.store.machines import InvalidEvent, PersistedMachines, new_id
from engine.store.ownership import current_token
from states import BATCH, DELEGATION, BatchData, RunData

__all__ = ["PAUSE_POLL_S", "BatchDriver", "BatchLive"]

log = structlog.get_logger(__name__)

PAUSE_POLL_S = 2.0
"""How often a paused batch asks the backend whether it answers again."""
PROBE_TIMEOUT_S = 5.0
REMOTE_POLL_S = 0.1


@dataclass
class BatchLive:
    """A batch driven by this process."""

    progress: Progress = no_progress
    done: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)
    """Set by a cancel, so a paused batch stops waiting for the backend."""
    cancel_requested: bool = False
    resumed: bool = False
    suspect: bool = True
    """Ask the backend whether it answers before the next child starts (at the start, after a child failed)."""


class BatchDriver:
    def __init__(self, ctx: EngineContext, driver: Driver, session: SessionLink) -> None:
        self.ctx = ctx
        self.driver = driver
        self.session = session
        self.live: dict[str, BatchLive] = {}

    # -- creation -----------------------------------------------------------------------------------------------

    def create(self, request: BatchRequest, *, scores: Sequence[float]) -> MachineRecord:
        """The batch and every child, created and owned in one transaction: a crash leaves all or nothing."""
        batch_id = new_id("batch")
        ids = [f"{batch_id}.{n}" for n in range(1, len(request.children) + 1)]
        data = {"children": ids, "paths": [[o.path for o in c.outputs] for c in request.children],
                "max_parallel": request.max_parallel, "max_failures": request.max_failures,
                "parallel_verify": request.parallel_verify, "template": request.template}
        BatchData.check_changes(data)
        token = current_token()
        with self.ctx.store.transaction() as tx:
            tx.create(batch_id, kind=BATCH.kind, state=BATCH.initial, data=data)
            tx.set_owner(batch_id, token)
            for child_id, child, score in zip(ids, request.children, scores, strict=True):
                create_run(tx, child_id, {**as_run_data(child, score=score), "batch_id": batch_id,
                                          "verify_alone": not request.parallel_verify}, owner=token)
            return tx.get(batch_id)

    # -- the drive ----------------------------------------------------------------------------------------------

    def children(self, record: MachineRecord) -> list[MachineRecord]:
        return [self.ctx.store.get(c) for c in BatchData.from_json(record.data).children]

    async def drive(self, batch_id: str, live: BatchLive) -> None:
        self.live[batch_id] = live
        try:
            while (record := self.ctx.store.get(batch_id)).state not in BATCH.terminal:
                if record.state == "pending":
                    if self._stop(record, live) == "cancel":
                        self._fire(record, "cancel", data={"cancel_requested": True})
                    else:
                        self._fire(record, "start", data={"started_at": time.time()})
                elif record.state == "stopping":
                    await self._stop_children(record)
                    self._end(self.ctx.store.get(batch_id), "children_stopped")
                else:
                    await self._run(record, live)
        finally:
            live.done.set()
            if self.live.get(batch_id) is live:
                del self.live[batch_id]

    async def _run(self, record: MachineRecord, live: BatchLive) -> None:
        """Start the children that have not ended, in-flight ones first (after a crash), up to the limit at once;
        then end the batch, or move it to `stopping`."""
        data = BatchData.from_json(record.data)
        children = self.children(record)
        limit = data.max_parallel or await self._slots(record.id, live)
        limiter = anyio.Semaphore(limit)
        failed = {c.id for c in children if c.state == "failed"} - set(data.children_excused)
        stop: str | None = None
        waiting = sorted((c for c in children if c.state not in DELEGATION.terminal),
                         key=lambda c: c.state == "pending")
        async with anyio.create_task_group() as tg:
            for child in waiting:
                await limiter.acquire()
                if not await self._backend_answers(record.id, live) or (stop := self._stop(
                        self.ctx.store.get(record.id), live, failed=len(failed))):
                    limiter.release()
                    break
                tg.start_soon(self._child, record.id, child.id, limiter, live, failed)
        current = self.ctx.store.get(record.id)
        if current.state in BATCH.terminal or current.state == "stopping":
            return
        stop = stop or self._stop(current, live, failed=len(failed))
        if stop == "failure_limit" and all(c.state in DELEGATION.terminal for c in self.children(current)):
            stop = None  # nothing was left to stop: the batch ran every child
        if stop is None and current.state == "running":
            self._end(current, "children_ended")
        elif stop is not None:
            reason = ("cancelled by the caller" if stop == "cancel"
                      else f"{len(failed)} children failed (max_failures {data.max_failures})")
            self._fire(current, stop, data={"stop_reason": reason, "cancel_requested": stop == "cancel"})

    async def _child(self, batch_id: str, child_id: str, limiter: anyio.Semaphore, live: BatchLive,
                     failed: set[str]) -> None:
        try:
            record = self.ctx.store.get(child_id)
            if record.state not in DELEGATION.terminal:
                await self._report(batch_id, live, record)
                await self._drive_child(record, live)
            ended = self.ctx.store.get(child_id)
            if ended.state == "failed":
                if await self._probe() is None and not RunData.from_json(ended.data).infrastructure_failure:
                    failed.add(child_id)
                else:  # the backend went away (or failed past the sends again): not the child's fault, not counted
                    live.suspect = True
                    self._note(batch_id, "child_excused", data={"children_excused": [
                        *BatchData.from_json(self.ctx.store.get(batch_id).data).children_excused, child_id]})
            await self._report(batch_id, live, ended)
        finally:
            limiter.release()

    async def _drive_child(self, record: MachineRecord, live: BatchLive) -> None:
        # A child's Live takes the batch's cancel flag, with no checkpoint between the two: a cancel of the batch
        # either finds the child in driver.live (Service.cancel_batch cancels it) or the child starts cancelled.
        if (running := self.driver.live.get(record.id)) is not None:
            await running.done.wait()  # this process drives it already: never twice
            return
        if record.owner == current_token() and not live.resumed:
            child_live = self.driver.live[record.id] = Live(cancel_requested=live.cancel_requested)
            await self.driver.drive(record.id, no_progress, child_live)
            return
        if record.state == "pending":  # created by a process that died: take it, it has not started
            if claim(self.ctx.runs, record.id) is None:
                await self._until_ended(record.id)
                return
            child_live = self.driver.live[record.id] = Live(resumed=True, cancel_requested=live.cancel_requested)
            await self.driver.drive(record.id, no_progress, child_live)
            return
        outcome = await recover_one(self.driver.moves, record, partial(self._resume_child, live),
                                    max_recoveries=DEFAULT_MAX_RECOVERIES)
        if outcome == "skipped":  # a live process drives it
            await self._until_ended(record.id)

    async def _resume_child(self, live: BatchLive, record: MachineRecord) -> None:
        if record.id in self.driver.live:
            return
        child_live = self.driver.live[record.id] = Live(resumed=True, cancel_requested=live.cancel_requested)
        await self.driver.drive(record.id, no_progress, child_live)

    async def _until_ended(self, run_id: str) -> None:
        while self.ctx.store.get(run_id).state not in DELEGATION.terminal:
            await anyio.sleep(REMOTE_POLL_S)

    async def _stop_children(self, record: MachineRecord) -> None:
        """Cancel every child that has not ended: a pending one at once, a running one rolls back."""
        for child in self.children(record):
            if child.state == "pending" and child.id not in self.driver.live:
                try:
                    self.driver.moves.fire_by_id(child.id, "cancel", data={"cancel_requested": True},
                                                 payload={"reason": "its batch stopped"})
                    continue
                except InvalidEvent:
                    pass  # it started meanwhile
            if self.ctx.store.get(child.id).state not in DELEGATION.terminal:
                await self.cancel_child(child.id)

    async def cancel_child(self, child_id: str) -> None:
        live = self.driver.live.get(child_id)
        self.driver.moves.request_cancel(child_id)
        if live is not None:
            live.cancel_requested = True
            if live.scope is not None:
                live.scope.cancel()
            await live.done.wait()
            return
        if claim(self.ctx.runs, child_id) is not None:  # nobody drives it: roll it back here
            child_live = self.driver.live.setdefault(child_id, Live(cancel_requested=True, resumed=True))
            await self.driver.drive(child_id, no_progress, child_live)
        else:
            await self._until_ended(child_id)

    # -- the backend: slots, and pausing while it does not answer ---------------------------------------------

    async def _slots(self, batch_id: str, live: BatchLive) -> int:
        while True:
            try:
                executor = await self.session.executor(progress=no_progress)
                return max(1, int(getattr(executor.backend, "parallelism", 1) or 1))
            except Exception as exc:
                self._pause(batch_id, f"{type(exc).__name__}: {exc}"[:300])
                if not await self._wait(batch_id, live):
                    return 1

    async def _probe(self) -> str | None:
        """None when the backend answers; else what is wrong."""
        try:
            executor = await self.session.executor(progress=no_progress)
            with anyio.fail_after(PROBE_TIMEOUT_S):
                version = await executor.backend.version()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return None if version is not None else f"{executor.backend.name} does not answer"

    async def _backend_answers(self, batch_id: str, live: BatchLive) -> bool:
        """True once the backend answers (unpausing a paused batch); False when the batch is cancelled meanwhile.
        The backend is asked only while the batch is paused or a child has failed since it last answered."""
        while True:
            record = self.ctx.store.get(batch_id)
            if record.state == "running" and not live.suspect:
                return True
            problem = await self._probe()
            record = self.ctx.store.get(batch_id)
            if problem is None:
                live.suspect = False
                if record.state == "paused":
                    self._fire(record, "unpause", data={"paused": None})
                return True
            self._pause(batch_id, problem)
            if not await self._wait(batch_id, live):
                return False

    def _pause(self, batch_id: str, reason: str) -> None:
        record = self.ctx.store.get(batch_id)
        if record.state == "running":
            log.warning("batch paused: the backend does not answer", batch_id=batch_id, reason=reason)
            self._fire(record, "pause", data={"paused": reason})

    async def _wait(self, batch_id: str, live: BatchLive) -> bool:
        """Wait before asking the backend again; False when the batch was cancelled."""
        with anyio.move_on_after(PAUSE_POLL_S):
            await live.wake.wait()
        return self._stop(self.ctx.store.get(batch_id), live) != "cancel"

    # -- moves --------------------------------------------------------------------------------------------------

    def _stop(self, record: MachineRecord, live: BatchLive, *, failed: int = 0) -> str | None:
        data = BatchData.from_json(record.data)
        if live.cancel_requested or data.cancel_requested:
            return "cancel"
        if data.max_failures is not None and failed >= data.max_failures:
            return "failure_limit"
        return None

    def _fire(self, record: MachineRecord, event: str, *, data: Mapping[str, Any] | None = None,
              after: Any = None) -> MachineRecord:
        return self.ctx.batches.fire(record.id, event, data=data, payload={"from": record.state}, after=after)

    def _note(self, batch_id: str, event: str, *, data: Mapping[str, Any],
              payload: Mapping[str, Any] | None = None) -> MachineRecord:
        return self.ctx.batches.note(batch_id, event, data=data, payload=payload)

    def _end(self, record: MachineRecord, event: str) -> None:
        """The batch's last move; its delegation-log line (its totals) in the same transaction."""
        children = self.children(record)
        resumed = (live := self.live.get(record.id)) is not None and live.resumed

        def log_end(tx: Transaction, moved: MachineRecord) -> None:
            path = self.ctx.project.delegation_log
            if resumed and any(r.get("event") == "batch" and r.get("batch_id") == moved.id
                               for r in metrics.read_log(path).records):
                return
            try:
                metrics.append_record(path, batch_log_line(moved, children))
            except Exception:  # the log is derived from the journal: it never keeps a batch from ending
                log.exception("could not append to the delegation log", batch_id=moved.id)

        self._fire(record, event, data={"counts": counts(children), "tokens_generated": sum(
            RunData.from_json(c.data).tokens_generated for c in children)}, after=log_end)

    async def _report(self, batch_id: str, live: BatchLive, current: MachineRecord) -> None:
        children = self.children(self.ctx.store.get(batch_id))
        ended, text = progress_message(children, current)
        await safe_progress(live.progress, ended, len(children), text)

    # -- what recovery asks (engine/delegation/recovery.py: its Owner) ----------------------------------------

    @property
    def machines(self) -> PersistedMachines:
        return self.ctx.batches

    def note_recovery(self, record: MachineRecord, count: int) -> MachineRecord:
        return self._note(record.id, "recover", data={"recoveries": count},
                          payload={"state": record.state, "recovery": count})

    def give_up(self, record: MachineRecord, count: int, max_recoveries: int) -> None:
        """A batch never gives up: its children do."""

    # -- cancel ---------------------------------------------------------------------------------------------------

    def request_cancel(self, batch_id: str) -> None:
        self._note(batch_id, "cancel_requested", data={"cancel_requested": True})
        if (live := self.live.get(batch_id)) is not None:
            live.cancel_requested = True
            live.wake.set()
