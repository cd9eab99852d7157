"""Recovery on start: every non-terminal run whose owner is gone is claimed and handed to a resume hook.

Each recovery is journaled as a `recover` note; a run recovered more than `max_recoveries` times is aborted with a
reason instead of being tried again, so a run that crashes the process every time cannot crash-loop it. Recovery fires
no event itself: it asks the machine's owner (`Owner`: RunMoves for runs, BatchDriver for batches) to journal the
recovery and to give a machine up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from engine.errors import UserError
from engine.progress import Progress, no_progress
from engine.store.db import MachineRecord
from engine.store.health import DamagedRow
from engine.store.machines import PersistedMachines
from engine.store.ownership import current_token, token_alive

__all__ = [
    "DEFAULT_MAX_RECOVERIES", "Owner", "RecoveryReport", "ResumeHook", "claim", "interrupted", "interrupted_runs",
    "recover", "recover_one",
]

ResumeHook = Callable[[MachineRecord], Awaitable[None]]

DEFAULT_MAX_RECOVERIES = 3

log = structlog.get_logger(__name__)


class Owner(Protocol):
    """The one owner of a machine kind, as recovery needs it."""

    @property
    def machines(self) -> PersistedMachines: ...

    def note_recovery(self, record: MachineRecord, count: int) -> MachineRecord:
        """Journal the `count`th recovery (a `recover` note)."""
        ...

    def give_up(self, record: MachineRecord, count: int, max_recoveries: int) -> MachineRecord | None:
        """End a machine recovered more than `max_recoveries` times; None for a kind that never gives up."""
        ...


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


async def recover(
    owner: Owner,
    resume: ResumeHook,
    *,
    max_recoveries: int = DEFAULT_MAX_RECOVERIES,
    token: str | None = None,
    progress: Progress = no_progress,
    skip: Callable[[MachineRecord], bool] = lambda record: False,
) -> RecoveryReport:
    """Resume every interrupted machine of `owner`'s kind but those `skip` names (a batch's children: their batch
    resumes them)."""
    report = RecoveryReport()
    pending, damaged = interrupted(owner.machines)
    pending = [r for r in pending if not skip(r)]
    for bad in damaged:
        log.warning("a run's row cannot be read; it is not resumed", run_id=bad.machine_id, problem=bad.problem)
        report.errors[bad.machine_id] = str(bad)
    for n, record in enumerate(pending):
        await progress(n, len(pending), f"run {record.id} ({record.state})")
        try:  # one broken run must not stop the others from recovering
            outcome = await recover_one(owner, record, resume, max_recoveries=max_recoveries, token=token)
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
    owner: Owner, record: MachineRecord, resume: ResumeHook, *, max_recoveries: int,
    token: str | None = None,
) -> str:
    """Claim, journal the recovery, resume; which list of the report the run belongs to."""
    claimed = claim(owner.machines, record.id, token=token)
    if claimed is None:
        return "skipped"
    count = int(getattr(owner.machines.spec.data_type.from_json(claimed.data), "recoveries", 0)) + 1
    noted = owner.note_recovery(claimed, count)
    outcome = "resumed"
    if count > max_recoveries and (ended := owner.give_up(noted, count, max_recoveries)) is not None:
        noted, outcome = ended, "aborted"
    log.info("recovering run", run_id=record.id, state=noted.state, recovery=count)
    await resume(noted)
    return outcome
