"""The SQL of the retention policy (engine/delegation/retention.py decides what to drop and when): finding finished
runs that still hold their bodies, dropping them, and giving the freed pages back.

Every statement that drops something checks again, in SQL, that the run is in one of the terminal states the caller
names and has not been compacted yet, inside the transaction that drops it: a run that is not finished is never
touched, whatever the caller read before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from states import FileSummary

__all__ = ["Space", "WithBodies", "compact_run", "give_back_pages", "runs_with_bodies", "space", "vacuum"]


@dataclass(frozen=True)
class WithBodies:
    """A finished run that still holds its bodies, as the policy needs it: when it ended and its data."""

    id: str
    updated_at: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Space:
    """The database's size: `used` bytes hold data, `free` bytes are pages a new row can take (or a vacuum give
    back to the file system)."""

    used: int
    free: int

    @property
    def file(self) -> int:
        return self.used + self.free


def space(conn: sqlite3.Connection) -> Space:
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    count = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return Space(used=(count - free) * page, free=free * page)


def runs_with_bodies(
    conn: sqlite3.Connection, *, kind: str, states: Sequence[str], ended_before: float,
    after: tuple[float, str] | None = None, limit: int = 50,
) -> list[WithBodies]:
    """Finished runs (`states`) of `kind` that still hold their bodies and ended before `ended_before`, oldest first,
    from just after `after` (updated_at, id): a cursor, so runs the caller passes over are not read again. The
    partial index `machines_with_bodies` holds only such rows (and the few runs in flight), so this reads no
    compacted run however many there are."""
    where = f"compacted_at IS NULL AND kind = ? AND updated_at < ? AND state IN ({','.join('?' * len(states))})"
    args: list[Any] = [kind, ended_before, *states]
    if after is not None:
        where += " AND (updated_at, id) > (?, ?)"
        args += list(after)
    rows = conn.execute(f"SELECT id, updated_at, data FROM machines WHERE {where} ORDER BY updated_at, id LIMIT ?",
                        (*args, limit)).fetchall()
    found = []
    for run_id, updated_at, data in rows:
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):  # a row that cannot be read is `db check`'s to report, not this policy's
            found.append(WithBodies(str(run_id), float(updated_at), parsed))
    return found


def compact_run(
    conn: sqlite3.Connection, run_id: str, *, states: Sequence[str], data: Mapping[str, Any],
    summaries: Mapping[str, FileSummary], now: float,
) -> bool:
    """Replace a finished run's data by `data` (its bodies dropped) and its journaled file contents by
    `summaries`, in the caller's transaction; False (and nothing changed) if the run is not in `states` any more
    or was compacted already."""
    cur = conn.execute(
        f"UPDATE machines SET data = ?, compacted_at = ? WHERE id = ? AND compacted_at IS NULL"
        f" AND state IN ({','.join('?' * len(states))})",
        (json.dumps(dict(data), sort_keys=True, separators=(",", ":")), now, run_id, *states),
    )
    if cur.rowcount != 1:
        return False
    conn.execute("UPDATE file_writes SET previous = NULL, content = NULL WHERE run_id = ?", (run_id,))
    conn.executemany("UPDATE file_writes SET summary = ? WHERE run_id = ? AND path = ?",
                     [(json.dumps(s, separators=(",", ":")), run_id, path) for path, s in summaries.items()])
    return True


def give_back_pages(conn: sqlite3.Connection) -> None:
    """Return free pages to the file system where the database allows it cheaply (auto_vacuum=incremental: every
    database made since schema 4, and any that `vacuum` rewrote); otherwise new rows reuse them."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
        # executescript steps the pragma to its end (execute frees one page per call).
        conn.executescript("BEGIN IMMEDIATE; PRAGMA incremental_vacuum; COMMIT;")


def vacuum(conn: sqlite3.Connection) -> None:
    """Rewrite the database without its free pages, as auto_vacuum=incremental from now on; outside a transaction.
    It takes the write lock for as long as it copies (a fraction of a second for tens of MB)."""
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
