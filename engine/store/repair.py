"""What `local-llm db check | move-aside | forget` do, on a project's store (engine/store/health.py has the pieces).

Nothing here runs on its own: a damaged database or row is reported by the command that meets it, with the fix, and
only these commands, asked by the user, change it. Nothing is deleted without a copy: `move-aside` renames the files
and keeps them, `forget` copies the database before it removes the one row.
"""

from __future__ import annotations

from typing import Any

from engine.errors import UserError
from engine.store.db import Store
from engine.store.health import (
    DamagedRow,
    DatabaseDamaged,
    DatabaseUnavailable,
    backup_copy,
    delete_machine,
    quick_check,
)
from engine.store.health import move_aside as rename_aside

__all__ = ["check", "forget", "move_aside"]


def _row(bad: DamagedRow) -> dict[str, Any]:
    return {"id": bad.machine_id, "kind": bad.kind, "state": bad.state, "problem": bad.problem, "fix": bad.fix}


def check(store: Store) -> dict[str, Any]:
    """`ok` when every page and every row reads; else the problems, each with its fix."""
    report: dict[str, Any] = {"database": str(store.path), "ok": True, "problem": None, "fix": None,
                              "pages": [], "damaged_rows": []}
    try:
        if not store.path.exists():
            store.settings()  # a project without a database yet: create it, as every command would
        report["pages"] = quick_check(store.path)
        records, damaged = store.scan()
    except DatabaseUnavailable as exc:
        return {**report, "ok": False, "problem": f"{exc.path} {exc.problem}", "fix": exc.fix}
    report["runs"] = sum(1 for r in records if r.kind == "delegation")
    report["damaged_rows"] = [_row(d) for d in damaged]
    if report["pages"]:
        damage = DatabaseDamaged(store.path, f"PRAGMA quick_check: {report['pages'][0]}")
        report.update(ok=False, problem=f"{damage.path} {damage.problem}", fix=damage.fix)
    elif damaged:
        report.update(ok=False, problem=f"{len(damaged)} row(s) cannot be read",
                      fix="`local-llm db forget ID` for each (a copy of the database is kept first)")
    return report


def move_aside(store: Store, *, force: bool = False) -> dict[str, Any]:
    """Rename a damaged database out of the way (kept); refused for a sound one unless `force`."""
    if not force:
        try:
            pages = quick_check(store.path) if store.path.exists() else []
            store.settings()  # opening reads the header and the schema
        except DatabaseDamaged:
            pass
        except DatabaseUnavailable as exc:  # newer than this code, or not ours to write: moving it is no fix
            raise UserError(f"{exc}. Not moved without --force") from exc
        else:
            if not pages:
                raise UserError(
                    f"{store.path} is not damaged (PRAGMA quick_check: ok), so it is not moved: a fresh database "
                    "would forget every run, interrupted ones included. A row that cannot be read is removed with "
                    "`local-llm db forget ID`; pass --force to move the whole database aside anyway"
                )
    store.close()  # this process's connection; the next call opens a fresh database at the same path
    moved = rename_aside(store.path)
    if not moved.moved:
        raise UserError(f"{store.path} does not exist: there is nothing to move aside")
    return {**moved.as_dict(), "database": str(store.path),
            "next": "the next command starts a fresh database; the moved files are kept as they were"}


def forget(store: Store, machine_id: str) -> dict[str, Any]:
    """Remove one row that cannot be read, with its journal; refused for a row that reads."""
    try:
        record = store.get(machine_id)
    except DamagedRow as bad:
        backup = backup_copy(store.path)
        deleted = delete_machine(store.path, machine_id)
        return {**_row(bad), "forgotten": deleted > 0, "backup": str(backup)}
    raise UserError(
        f"{record.kind} {machine_id} reads fine (state {record.state!r}); `db forget` only removes rows that cannot "
        "be read. A run in flight is stopped with `local-llm cancel ID`"
    )
