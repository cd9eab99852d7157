"""The write journal of delegation runs (table `file_writes`): per output file, its base (the bytes it had when the
run packed its prompt, or its absence), the newest content the run generated for it, and every content the run put
on disk. The shared-tree rule compares the file on disk with these, by hash, before every write and rollback."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from states import FileSummary

__all__ = ["ABSENT", "FileWrite", "content_hash"]

ABSENT = "absent"
"""The hash of a file that does not exist."""


def content_hash(data: bytes | None) -> str:
    return ABSENT if data is None else "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileWrite:
    """One output file of a run. `status`: `base` (journaled at packing, nothing generated yet), `pending` (the
    newest content is journaled, not yet on disk), `written`, `rolled_back`, or `conflict` (someone else changed it:
    left alone)."""

    path: str
    existed: bool
    previous: bytes | None
    """The base: what the file held when the prompt was packed (None when it did not exist)."""
    content: bytes | None
    attempt: int
    status: str
    base_hash: str
    applied: tuple[str, ...] = ()
    """Hashes of the contents this run put on disk, oldest first."""
    created_dirs: tuple[str, ...] = ()
    """Directories (relative to the root) that writing this file created; a rollback removes them when empty."""
    summary: FileSummary | None = None
    """Once the retention policy dropped `previous` and `content` of a finished run: what its result said of them."""

    @property
    def content_hash(self) -> str | None:
        return None if self.content is None else content_hash(self.content)

    @property
    def last_applied(self) -> str | None:
        return self.applied[-1] if self.applied else None


_COLUMNS = "path, existed, previous, content, attempt, status, base_hash, applied, created_dirs, summary"


def _row(r: sqlite3.Row | tuple[object, ...]) -> FileWrite:
    path, existed, previous, content, attempt, status, base, applied, dirs, summary = tuple(r)
    return FileWrite(
        path=str(path), existed=bool(existed), previous=previous, content=content,
        attempt=int(attempt), status=str(status),
        base_hash=str(base) if base else content_hash(previous if existed else None),
        applied=tuple(json.loads(str(applied or "[]"))), created_dirs=tuple(json.loads(str(dirs or "[]"))),
        summary=json.loads(str(summary)) if summary else None,
    )


def file_writes(conn: sqlite3.Connection, run_id: str) -> list[FileWrite]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM file_writes WHERE run_id = ? ORDER BY path", (run_id,)).fetchall()
    return [_row(r) for r in rows]


def add_base(conn: sqlite3.Connection, run_id: str, path: str, *, previous: bytes | None) -> None:
    """Journal `path`'s base, once per run (a second packing after a crash keeps the first base)."""
    conn.execute(
        "INSERT OR IGNORE INTO file_writes (run_id, path, existed, previous, content, attempt, status, base_hash)"
        " VALUES (?, ?, ?, ?, NULL, 0, 'base', ?)",
        (run_id, path, int(previous is not None), previous, content_hash(previous)),
    )


def set_content(conn: sqlite3.Connection, run_id: str, path: str, *, content: bytes, attempt: int) -> None:
    conn.execute(
        "UPDATE file_writes SET content = ?, attempt = ?, status = 'pending' WHERE run_id = ? AND path = ?",
        (content, attempt, run_id, path),
    )


def record_applied(
    conn: sqlite3.Connection, run_id: str, path: str, *, applied_hash: str, created_dirs: Iterable[str] = ()
) -> None:
    """`path` now holds `applied_hash`, put there by the run; `created_dirs` are directories the write created."""
    row = conn.execute("SELECT applied, created_dirs FROM file_writes WHERE run_id = ? AND path = ?",
                       (run_id, path)).fetchone()
    if row is None:
        return
    applied = json.loads(row[0] or "[]")
    if not applied or applied[-1] != applied_hash:
        applied.append(applied_hash)
    dirs = list(dict.fromkeys([*json.loads(row[1] or "[]"), *created_dirs]))
    conn.execute(
        "UPDATE file_writes SET applied = ?, created_dirs = ?, status = 'written' WHERE run_id = ? AND path = ?",
        (json.dumps(applied), json.dumps(dirs), run_id, path),
    )


def set_status(conn: sqlite3.Connection, run_id: str, status: str, *, paths: Iterable[str] | None = None) -> None:
    if paths is None:
        conn.execute("UPDATE file_writes SET status = ? WHERE run_id = ?", (status, run_id))
        return
    conn.executemany("UPDATE file_writes SET status = ? WHERE run_id = ? AND path = ?",
                     [(status, run_id, p) for p in paths])
