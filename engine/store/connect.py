"""Opening a project's database: the connection settings the store relies on, and the schema brought up to date.

Kept apart from the Store (engine/store/db.py) so the store is about rows; what a failure here means to the user
(damaged, too new, not writable) is decided in engine/store/health.py.
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from pathlib import Path

from engine.store.health import DatabaseDamaged, DatabaseTooNew, DatabaseUnavailable
from engine.store.schema import SchemaTooNew, migrate

__all__ = ["open_database"]


def open_database(path: Path, *, memory: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (the store opens its own transactions), WAL, synchronous=FULL, foreign keys
    on, rows by name, the schema migrated; raises DatabaseUnavailable for a file it cannot use, sqlite3 errors as
    they are otherwise (the store classifies them)."""
    if not memory:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(path, f"cannot be created ({exc})",
                                      f"check that {path.parent} can be a directory of yours") from exc
    conn = sqlite3.connect(":memory:" if memory else str(path), isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout_s)
    try:
        conn.row_factory = sqlite3.Row
        # Takes effect only in a database without tables (a new one; `db compact` converts others): pages that the
        # retention policy frees can then go back to the file system without rewriting the file.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed transition survives power loss too (NORMAL in WAL mode may lose the last commits).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if (version := int(conn.execute("PRAGMA user_version").fetchone()[0])) < 0:
                raise DatabaseDamaged(path, f"its schema version is {version}")  # no version of the tool wrote that
            migrate(conn)
        except BaseException as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, SchemaTooNew):  # with the file's path and both fixes (a newer tool, or damage)
                raise DatabaseTooNew(path, int(conn.execute("PRAGMA user_version").fetchone()[0])) from exc
            raise
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn
