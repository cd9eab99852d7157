"""Recovery on start: every non-terminal run whose owner is gone is claimed and handed to a resume hook.

Each recovery is journaled as a `recover` note; a run recovered more than `max_recoveries` times is aborted with a
reason instead of being tried again, so a run that crashes the process every time cannot crash-loop it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from engine.errors import UserError
from engine.progress import Progress, no_progress
from engine.store.db import MachineRecord
from engine.store.health import DamagedRow
from engine.store.machines import PersistedMachines
from engine.store.ownership import current_token, token_alive
from states import RunData

__all__ = [
    "DEFAULT_MAX_RECOVERIES", "RecoveryReport", "ResumeHook", "claim", "interrupted", "interrupted_runs", "recover",
    "recover_one",
]

ResumeHook = Callable[[MachineRecord], Awaitable[None]]

DEFAULT_MAX_RECOVERIES = 3

log = structlog.get_logger(__name__)


@dataclass
class RecoveryReport:
    resumed: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def interrupted_runs(runs: PersistedMachines) -> list[MachineRecord]:
    """Non-terminal runs, oldest first; finished runs are never returned (nor rows that cannot be read)."""
    return interrupted(runs)[0]


def interrupted(runs: PersistedMachines) -> tuple[list[MachineRecord], list[DamagedRow]]:
    """Non-terminal runs, oldest first, and the rows that are not finished but cannot be read (bad data, or a state
    the machine does not declare: the query asks for every state but the terminal ones, so those are found too)."""
    records, damaged = runs.store.scan(kind=runs.spec.kind, not_states=sorted(runs.spec.terminal))
    return sorted(records, key=lambda r: (r.created_at, r.id)), damaged


def claim(runs: PersistedMachines, run_id: str, *, token: str | None = None) -> MachineRecord | None:
    """Take ownership of a run unless a live process owns it; None when someone else has it."""
    token = token or current_token()
    with runs.store.transaction() as tx:
        record = tx.get(run_id)
        if record.owner and record.owner != token and token_alive(record.owner):
            return None
        tx.set_owner(run_id, token)
        return tx.get(run_id)


def _give_up(runs: PersistedMachines, record: MachineRecord, count: int, max_recoveries: int) -> MachineRecord:
    """A run interrupted too often ends: rolled back when it got as far as writing, or failed where it stands when
    even its rollback keeps failing (rolling_back counts toward the limit too: a rollback that cannot finish must
    not be retried at every start)."""
    data = RunData.from_json(record.data)
    if record.state == "rolling_back":
        reason = (
            f"could not finish rolling back after {count} tries ({data.last_error or 'interrupted'}); the run's "
            "files were left as they are: check them with `local-llm run ID`"
        )
        return runs.fire(record.id, "rollback_failed", data={"error": reason}, payload={"reason": reason[:500]})
    reason = (
        f"interrupted {count} times (last in state {record.state!r}); gave up after {max_recoveries} recoveries. "
        "Check engine.log for the crash, then delegate again"
    )
    return runs.fire(record.id, "abort", data={"error": reason}, payload={"reason": reason[:500]})


async def recover(
    runs: PersistedMachines,
    resume: ResumeHook,
    *,
    max_recoveries: int = DEFAULT_MAX_RECOVERIES,
    token: str | None = None,
    progress: Progress = no_progress,
    skip: Callable[[MachineRecord], bool] = lambda record: False,
) -> RecoveryReport:
    """Resume every interrupted machine of `runs`' kind but those `skip` names (a batch's children: their batch
    resumes them)."""
    report = RecoveryReport()
    pending, damaged = interrupted(runs)
    pending = [r for r in pending if not skip(r)]
    for bad in damaged:
        log.warning("a run's row cannot be read; it is not resumed", run_id=bad.machine_id, problem=bad.problem)
        report.errors[bad.machine_id] = str(bad)
    for n, record in enumerate(pending):
        await progress(n, len(pending), f"run {record.id} ({record.state})")
        try:  # one broken run must not stop the others from recovering
            outcome = await recover_one(runs, record, resume, max_recoveries=max_recoveries, token=token)
        except UserError as exc:  # the row or the database: its message says what to do
            log.error("resume failed", run_id=record.id, error=str(exc))
            report.errors[record.id] = str(exc)
        except Exception as exc:
            log.exception("resume failed", run_id=record.id)
            report.errors[record.id] = f"{type(exc).__name__}: {exc}"
        else:
            getattr(report, outcome).append(record.id)
    if pending:
        await progress(len(pending), len(pending), f"{len(report.resumed)} resumed, {len(report.aborted)} aborted")
    return report


async def recover_one(
    runs: PersistedMachines, record: MachineRecord, resume: ResumeHook, *, max_recoveries: int,
    token: str | None = None,
) -> str:
    """Claim, journal the recovery, resume; which list of the report the run belongs to."""
    claimed = claim(runs, record.id, token=token)
    if claimed is None:
        return "skipped"
    count = int(getattr(runs.spec.data_type.from_json(claimed.data), "recoveries", 0)) + 1
    noted = runs.note(
        record.id, "recover", data={"recoveries": count}, payload={"state": claimed.state, "recovery": count}
    )
    outcome = "resumed"
    if count > max_recoveries and "abort" in runs.spec.triggers:  # a batch never gives up: its children do
        noted = _give_up(runs, noted, count, max_recoveries)
        outcome = "aborted"
    log.info("recovering run", run_id=record.id, state=noted.state, recovery=count)
    await resume(noted)
    return outcome
