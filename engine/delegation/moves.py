"""The one owner of delegation-run transitions: every run event (its creation, each move, each note) is fired here
and nowhere else (tests/test_architecture.py keeps it so). The driver, its steps, cancel, batches and recovery ask
`RunMoves`: fire an event from the state a step acted on, end a run (its delegation-log line in the same
transaction), abort, journal a recovery or give a run up, and mark the write journal."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from engine.context import EngineContext
from engine.delegation import metrics
from engine.delegation.views import elapsed, log_line
from engine.store.db import MachineRecord, StaleVersion, Transaction
from engine.store.machines import AfterMove, InvalidEvent, PersistedMachines
from states import DELEGATION, RunData

__all__ = ["RunMoves", "StateMoved", "create_run", "mark_writes"]

log = structlog.get_logger(__name__)


class StateMoved(Exception):
    """Someone else (a cancel from another process) moved the run; re-read it."""


def mark_writes(run_id: str, status: str, *, paths: Sequence[str] | None = None) -> AfterMove:
    """An `after=` hook: the run's journaled writes (or those of `paths`) take `status` in the same transaction as
    the move."""
    def mark(tx: Transaction, moved: MachineRecord) -> None:
        tx.mark_file_writes(run_id, status, paths=paths)
    return mark


def create_run(tx: Transaction, run_id: str, data: Mapping[str, Any], *, owner: str) -> MachineRecord:
    """A new run, created and owned inside the caller's transaction (a delegate's own, or its batch's): no resume can
    take it before its driver does."""
    created = tx.create(run_id, kind=DELEGATION.kind, state=DELEGATION.initial, data=dict(data))
    tx.set_owner(run_id, owner)
    return created


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

    def fire_by_id(
        self, run_id: str, event: str, *, data: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None, after: AfterMove | None = None,
    ) -> MachineRecord:
        """Fire on the run as the store holds it (InvalidEvent and StaleVersion reach the caller); a move that ends
        the run appends its delegation-log line in the same transaction."""
        return self.ctx.runs.fire(run_id, event, data=data, payload=payload, after=self.ended(after))

    def note(
        self, run_id: str, event: str, *, data: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None, after: AfterMove | None = None,
    ) -> MachineRecord:
        """Journal an event that changes the run's data but not its state."""
        return self.ctx.runs.note(run_id, event, data=data, payload=payload, after=after)

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

    def _recovered_end(self, tx: Transaction, moved: MachineRecord) -> None:
        if moved.state in DELEGATION.terminal:
            self._finish(moved, dedupe=True)

    def request_cancel(self, run_id: str) -> MachineRecord:
        return self.ctx.runs.note(run_id, "cancel_requested", data={"cancel_requested": True})

    # -- what recovery asks (engine/delegation/recovery.py: its Owner) ----------------------------------------------

    @property
    def machines(self) -> PersistedMachines:
        return self.ctx.runs

    def note_recovery(self, record: MachineRecord, count: int) -> MachineRecord:
        return self.ctx.runs.note(
            record.id, "recover", data={"recoveries": count}, payload={"state": record.state, "recovery": count}
        )

    def give_up(self, record: MachineRecord, count: int, max_recoveries: int) -> MachineRecord:
        """A run interrupted too often ends: rolled back when it got as far as writing, or failed where it stands when
        even its rollback keeps failing (rolling_back counts toward the limit too: a rollback that cannot finish must
        not be retried at every start)."""
        data = RunData.from_json(record.data)
        if record.state == "rolling_back":
            reason = (
                f"could not finish rolling back after {count} tries ({data.last_error or 'interrupted'}); the run's "
                "files were left as they are: check them with `local-llm run ID`"
            )
            # It ends the run: its log line in the same transaction, like every end (deduplicated: a takeover).
            return self.ctx.runs.fire(record.id, "rollback_failed", data={"error": reason},
                                      payload={"reason": reason[:500]}, after=self._recovered_end)
        reason = (
            f"interrupted {count} times (last in state {record.state!r}); gave up after {max_recoveries} recoveries. "
            "Check engine.log for the crash, then delegate again"
        )
        return self.ctx.runs.fire(record.id, "abort", data={"error": reason}, payload={"reason": reason[:500]})

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
