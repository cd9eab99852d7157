"""The store's schema, versioned by SQLite's `user_version`: migration N takes a database from version N-1 to N.

Users upgrade with runs in flight, so every change to the tables or to the shape of persisted data comes as a new
migration at the end of `MIGRATIONS` (never an edit of an old one), with a test that opens a database of the previous
version holding an interrupted run and resumes it (tests/engine/store/test_schema.py). A migration is SQL, or a
function of the connection for changes that need code (rewriting JSON data, for example); it runs inside the same
transaction as the version bump.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from engine.errors import UserError
from engine.store.journal import content_hash

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "SchemaTooNew", "migrate"]

Migration = str | Callable[[sqlite3.Connection], None]


def _v3_shared_tree(conn: sqlite3.Connection) -> None:
    """Schema 3: bases journaled at packing (before, the original was read after the model answered) and the contents
    a run applied. Rows of runs in flight under schema 2 get their base from the original they journaled, and a
    `written` row counts its content as applied."""
    conn.execute("ALTER TABLE file_writes ADD COLUMN base_hash TEXT")
    conn.execute("ALTER TABLE file_writes ADD COLUMN applied TEXT NOT NULL DEFAULT '[]'")
    conn.execute("ALTER TABLE file_writes ADD COLUMN created_dirs TEXT NOT NULL DEFAULT '[]'")
    rows = conn.execute("SELECT run_id, path, existed, previous, content, status FROM file_writes").fetchall()
    for run_id, path, existed, previous, content, status in rows:
        applied = [content_hash(content)] if status == "written" and content is not None else []
        conn.execute("UPDATE file_writes SET base_hash = ?, applied = ? WHERE run_id = ? AND path = ?",
                     (content_hash(previous if existed else None), json.dumps(applied), run_id, path))

MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE machines (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}',
        owner       TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        version     INTEGER NOT NULL
    );
    CREATE INDEX machines_kind_state ON machines (kind, state);
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id  TEXT NOT NULL REFERENCES machines (id),
        version     INTEGER NOT NULL,
        event       TEXT NOT NULL,
        src         TEXT,
        dst         TEXT NOT NULL,
        payload     TEXT NOT NULL DEFAULT '{}',
        at          REAL NOT NULL,
        UNIQUE (machine_id, version)
    );
    """,
    """
    CREATE TABLE file_writes (
        run_id      TEXT NOT NULL REFERENCES machines (id),
        path        TEXT NOT NULL,
        existed     INTEGER NOT NULL,
        previous    BLOB,
        content     BLOB,
        attempt     INTEGER NOT NULL,
        status      TEXT NOT NULL,
        PRIMARY KEY (run_id, path)
    );
    """,
    _v3_shared_tree,
    # Schema 4: retention (engine/delegation/retention.py). A finished run's bodies (its prompt, answers and file
    # contents) can be dropped: `compacted_at` says when, and the partial index finds the runs that still hold them
    # without reading the thousands that do not; `summary` keeps what `result` says of each file (bytes, lines
    # added and removed, regions) once its contents are gone. Rows of earlier versions keep their bodies until the
    # policy reaches them; runs in flight are untouched (their columns read as before).
    """
    ALTER TABLE machines ADD COLUMN compacted_at REAL;
    CREATE INDEX machines_with_bodies ON machines (kind, updated_at) WHERE compacted_at IS NULL;
    ALTER TABLE file_writes ADD COLUMN summary TEXT
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(UserError):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION inside the caller's transaction; returns the version it had."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        # Migrations only go forward: an older tool could misread what a newer one wrote.
        raise SchemaTooNew(
            f"this state.db has schema version {current}, newer than this version of local-llm understands "
            f"({SCHEMA_VERSION}); upgrade workflow-local-llm (or move .claude/workflow/state.db aside to start afresh)"
        )
    for number, step in enumerate(MIGRATIONS[current:], start=current + 1):
        if callable(step):
            step(conn)
        else:
            for statement in filter(str.strip, step.split(";")):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    return current
