"""When the store cannot be used: a damaged or unreadable state.db, or one row that cannot be read; and the repairs a
user can ask for (`local-llm db check | move-aside | forget`).

Every command meets a damaged database the same way: one `DatabaseUnavailable` (a UserError) whose message names the
file, what is wrong and what to do, so the CLI prints one line and exits 2, and the MCP server answers `status` with
the problem and every other action with a tool error, without going down.

Damage is found when it is met, not looked for at every start: opening reads the header and the schema (a file that
is not a database, a damaged header, a truncated file, a damaged schema page fail there), and a query that reaches a
damaged page fails with SQLITE_CORRUPT. A full `PRAGMA quick_check` reads every page: ~85 ms on a year of runs (B11's
7,300 runs, 54.6 MB) against ~0.7 ms for the open, so only `local-llm db check` runs it. The machines table alone
(`machines_check`, ~24 ms on that year) is checked by `status` and before a delegation or batch starts: those read
only the session's row and the runs in flight, so a damaged page of finished runs would pass them unnoticed, `status`
would say all is well, and new runs would go into a file the user must later move aside.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.store.schema import SCHEMA_VERSION, SchemaTooNew

__all__ = [
    "SIDE_FILES",
    "DamagedRow",
    "DatabaseDamaged",
    "DatabaseTooNew",
    "DatabaseUnavailable",
    "MovedAside",
    "backup_copy",
    "delete_machine",
    "machines_check",
    "move_aside",
    "payload_data",
    "quick_check",
    "row_data",
    "unusable",
    "utc_stamp",
]

SIDE_FILES = ("", "-wal", "-shm")
"""The files of one SQLite database in WAL mode: they move together or the database is not what it was."""

_ERROR, _CORRUPT, _NOTADB, _CANTOPEN, _PERM, _READONLY, _FULL, _IOERR = 1, 11, 26, 14, 3, 8, 13, 10

MOVE_ASIDE = "`local-llm db move-aside`"


class DatabaseUnavailable(UserError):
    """The project's database cannot be used; `problem` says why, `fix` what to do."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(f"the project's database {path} {problem}; {fix}")
        self.path, self.problem, self.fix = path, problem, fix

    def as_status(self) -> dict[str, Any]:
        """What `status` answers instead of the session while the database cannot be used."""
        return {"state": "unavailable", "database": str(self.path), "problem": f"{self.path} {self.problem}",
                "fix": self.fix}


class DatabaseDamaged(DatabaseUnavailable):
    """SQLite says the file is not a database or is malformed."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            path, f"is damaged ({detail})",
            f"move it aside to start afresh: {MOVE_ASIDE} (run for this project) renames it (with its -wal and -shm "
            f"files) to "
            f"{path.name}.damaged-<UTC time> and keeps it; runs it held are not resumed",
        )


class DatabaseTooNew(DatabaseUnavailable, SchemaTooNew):
    """Its schema version is newer than this code's: written by a newer local-llm, or a damaged header (the version
    is one of the header's bytes)."""

    def __init__(self, path: Path, version: int) -> None:
        super().__init__(
            path, f"has schema version {version}, newer than this local-llm understands ({SCHEMA_VERSION})",
            "upgrade workflow-local-llm; if no newer version wrote it (a damaged header), "
            f"{MOVE_ASIDE[:-1]} --force` sets it aside (kept) and starts afresh",
        )


class DamagedRow(UserError):
    """One machine row cannot be read: its data is not a JSON object, or its state is not one its machine declares.
    The row is reported and left alone; every other row is read as usual."""

    def __init__(self, *, machine_id: str, kind: str, state: str, problem: str, created_at: float = 0.0,
                 updated_at: float = 0.0) -> None:
        self.fix = (f"`local-llm db forget {machine_id}` removes it (after keeping a copy of the database); "
                    "nothing else is affected")
        super().__init__(f"{kind} {machine_id}: its stored row cannot be read ({problem}); {self.fix}")
        self.machine_id, self.kind, self.state, self.problem = machine_id, kind, state, problem
        self.created_at, self.updated_at = created_at, updated_at


def row_data(row: sqlite3.Row | Mapping[str, Any], declared: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """A machine row's data; DamagedRow when it is not a JSON object or the row's state is not one its kind declares
    (`declared`: kind -> states, filled by PersistedMachines; a kind not declared there is not checked)."""
    problem = None
    try:
        data = json.loads(row["data"])
    except (TypeError, ValueError) as exc:
        data, problem = {}, f"its data is not valid JSON: {exc}"
    if problem is None and not isinstance(data, dict):
        problem = f"its data is a JSON {type(data).__name__}, not an object"
    states = declared.get(row["kind"])
    if problem is None and states is not None and row["state"] not in states:
        problem = (f"state {row['state']!r} is not a state of {row['kind']} machines (a newer local-llm wrote it, "
                   "or the row was damaged)")
    if problem is not None:
        raise DamagedRow(machine_id=row["id"], kind=row["kind"], state=str(row["state"]), problem=problem,
                         created_at=row["created_at"], updated_at=row["updated_at"])
    return data  # type: ignore[no-any-return]


def payload_data(raw: str) -> dict[str, Any]:
    """A journal entry's payload. An entry is history: one that cannot be read is shown as such rather than hiding the
    rest of the run's journal."""
    try:
        payload = json.loads(raw)
    except (TypeError, ValueError) as exc:
        return {"unreadable": f"the stored payload is not valid JSON: {exc}"}
    return payload if isinstance(payload, dict) else {"unreadable": "the stored payload is not a JSON object"}


def unusable(path: Path, exc: sqlite3.Error) -> DatabaseUnavailable | None:
    """The user's error for a SQLite error about the database file itself; None for any other (a lock held too long,
    a constraint, a bug), which callers raise as it is."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF  # extended codes (SQLITE_CORRUPT_INDEX, SQLITE_IOERR_SHORT_READ, ...) keep it in the low byte
    if primary in (_CORRUPT, _NOTADB) or (primary == _ERROR and str(exc) == "unsupported file format"):
        # The last: a header whose file-format bytes (18, 19) are not SQLite's, a plain SQLITE_ERROR by its code.
        return DatabaseDamaged(path, str(exc))
    if primary in (_CANTOPEN, _PERM, _READONLY):
        return DatabaseUnavailable(path, f"cannot be opened for writing ({exc})",
                                   f"check that {path.parent} and the files in it are yours and writable")
    if primary == _FULL:
        return DatabaseUnavailable(path, f"cannot grow: the disk is full ({exc})", "free some space and retry")
    if primary == _IOERR:
        return DatabaseUnavailable(path, f"could not be read or written ({exc})",
                                   f"check the disk that holds it, then retry; if it stays, {MOVE_ASIDE}")
    return None


def utc_stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


@dataclass(frozen=True)
class MovedAside:
    moved: list[tuple[str, str]]
    """(from, to) for each file that existed."""

    def as_dict(self) -> dict[str, Any]:
        return {"moved": [{"from": a, "to": b} for a, b in self.moved]}


def move_aside(path: Path, *, suffix: str = "damaged", now: float | None = None) -> MovedAside:
    """Rename `path` and its -wal/-shm files to `<name>.<suffix>-<UTC time>` beside it (kept, never deleted); the
    next open starts a fresh database. The -wal and -shm go first: a fresh database created in between must never
    meet the old one's WAL (SQLite would replay it into the new file)."""
    stamp = utc_stamp(now)
    target = path.with_name(f"{path.name}.{suffix}-{stamp}")
    n = 1
    while any(Path(f"{target}{side}").exists() for side in SIDE_FILES):  # two moves in one second
        n += 1
        target = path.with_name(f"{path.name}.{suffix}-{stamp}-{n}")
    moved = []
    for side in ("-wal", "-shm", ""):
        source = Path(f"{path}{side}")
        if source.exists():
            os.replace(source, f"{target}{side}")
            moved.append((str(source), f"{target}{side}"))
    return MovedAside(moved=moved[::-1])


@contextmanager
def _connection(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection of its own, for the repairs (never creates a database that is not there)."""
    if not path.exists():
        raise DatabaseUnavailable(path, "does not exist", "nothing to repair: the next command creates it")
    uri = f"file:{path}?mode={'ro' if read_only else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
    except sqlite3.Error as exc:
        raise unusable(path, exc) or exc from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise unusable(path, exc) or exc from exc
    finally:
        conn.close()


def quick_check(path: Path) -> list[str]:
    """What SQLite's quick_check finds wrong with every page of the database; [] when it is sound."""
    with _connection(path, read_only=True) as conn:
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
    return [] if found == ["ok"] else found


def machines_check(path: Path) -> None:
    """DatabaseDamaged when SQLite's quick_check finds a page of the machines table (or its indexes) damaged; nothing
    when it is sound or there is no database yet (the next open creates it)."""
    if not path.exists():
        return
    with _connection(path, read_only=True) as conn:
        if conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'machines'").fetchone() is None:
            return  # made but not migrated yet: no rows to damage
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(machines)").fetchall()]
    if found != ["ok"]:
        raise DatabaseDamaged(path, f"PRAGMA quick_check(machines): {found[0]}")


def backup_copy(path: Path, *, now: float | None = None) -> Path:
    """A consistent copy of the database (its WAL included) beside it, `<name>.backup-<UTC time>`."""
    target = path.with_name(f"{path.name}.backup-{utc_stamp(now)}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.backup-{utc_stamp(now)}-{n}")
    with _connection(path) as conn:
        copy = sqlite3.connect(str(target))
        try:
            conn.backup(copy)
        finally:
            copy.close()
    return target


def delete_machine(path: Path, machine_id: str) -> int:
    """Delete one machine row with its journal and write journal in one transaction; the rows deleted."""
    with _connection(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = sum(conn.execute(sql, (machine_id,)).rowcount for sql in (
                "DELETE FROM file_writes WHERE run_id = ?",
                "DELETE FROM events WHERE machine_id = ?",
                "DELETE FROM machines WHERE id = ?",
            ))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return deleted
