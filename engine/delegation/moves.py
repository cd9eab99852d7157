"""The transition plumbing of a run, shared by the driver and the steps: fire an event from the state a step acted
on, end a run (its delegation-log line in the same transaction), abort, and mark the write journal."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from engine.context import EngineContext
from engine.delegation import metrics
from engine.delegation.views import elapsed, log_line
from engine.store.db import MachineRecord, StaleVersion, Transaction
from engine.store.machines import AfterMove, InvalidEvent
from states import DELEGATION, RunData

__all__ = ["RunMoves", "StateMoved", "mark_writes"]

log = structlog.get_logger(__name__)


class StateMoved(Exception):
    """Someone else (a cancel from another process) moved the run; re-read it."""


def mark_writes(run_id: str, status: str, *, paths: Sequence[str] | None = None) -> AfterMove:
    """An `after=` hook: the run's journaled writes (or those of `paths`) take `status` in the same transaction as
    the move."""
    def mark(tx: Transaction, moved: MachineRecord) -> None:
        tx.mark_file_writes(run_id, status, paths=paths)
    return mark


class RunMoves:
    def __init__(self, ctx: EngineContext, *, resumed: Callable[[str], bool]) -> None:
        self.ctx = ctx
        self._resumed = resumed
        """Whether this process took the run over from one that died: its end may already be in the log."""

    def fire(
        self, record: MachineRecord, event: str, *, data: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None, after: AfterMove | None = None,
    ) -> MachineRecord:
        """Fire from the state we acted on; if someone moved the run meanwhile, say so (StateMoved) instead of
        failing."""
        try:
            return self.ctx.runs.fire(record.id, event, data=data, payload=payload, after=self.ended(after))
        except (InvalidEvent, StaleVersion):
            current = self.ctx.store.get(record.id)
            if current.state != record.state or RunData.from_json(current.data).cancel_requested:
                raise StateMoved() from None
            raise

    def ended(self, after: AfterMove | None = None) -> AfterMove:
        """An `after` for a transition that may end the run: the delegation-log line is appended inside the
        transition's transaction. Appended after the commit instead, a crash between the two lost the line for good
        (the run was finished, so no resume came back to it); appended before the commit, a crash leaves the run
        unfinished, and its resumed drive skips a line that is already there."""
        def both(tx: Transaction, moved: MachineRecord) -> None:
            if after is not None:
                after(tx, moved)
            if moved.state in DELEGATION.terminal:
                self._finish(moved, dedupe=self._resumed(moved.id))

        return both

    def abort(self, run_id: str, reason: str) -> MachineRecord:
        record = self.ctx.store.get(run_id)
        if record.state in DELEGATION.terminal or record.state == "rolling_back":
            return record
        log.warning("delegation aborted", run_id=run_id, state=record.state, reason=reason)
        return self.ctx.runs.fire(run_id, "abort", data={"error": reason}, payload={"reason": reason[:500]})

    def request_cancel(self, run_id: str) -> MachineRecord:
        return self.ctx.runs.note(run_id, "cancel_requested", data={"cancel_requested": True})

    def _finish(self, record: MachineRecord, *, dedupe: bool) -> None:
        """Append the ended run to the delegation log, unless `dedupe` finds the same end there already (a crash
        came between the append and the commit)."""
        path = self.ctx.project.delegation_log
        attempts = RunData.from_json(record.data).attempt
        if dedupe and any(
            r.get("event") == "run" and r.get("run_id") == record.id and r.get("state") == record.state
            and r.get("attempts") == attempts for r in metrics.read_log(path).records
        ):
            log.info("delegation end already logged", run_id=record.id, state=record.state)
            return
        try:
            metrics.append_record(path, log_line(record))
        except Exception:  # the log is derived from the journal: nothing in it (a full disk) may keep a run from ending
            log.exception("could not append to the delegation log", run_id=record.id)
        log.info("delegation finished", run_id=record.id, state=record.state, seconds=elapsed(record))
