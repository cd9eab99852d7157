"""Ways a project's state.db gets damaged, done to a copy with plain file writes and sqlite3 (used by R7 and the
tests of engine/store/health.py): a truncated file, random bytes over the header or over pages, a file that is not a
database at all, and rows the engine cannot read (bad JSON, an undeclared state).

Every function takes the database path and a `random.Random`, so a seed reproduces the same damage.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

__all__ = ["DAMAGES", "FILE_DAMAGES", "HEADER_FIELDS", "ROW_DAMAGES", "checkpoint", "table_pages"]

PAGE = 4096


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file and remove it, so damage to the file is damage to everything committed."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)


def table_pages(path: Path, table: str) -> list[int]:
    """The page numbers (1-based) of `table`'s b-tree, from SQLite's dbstat table when it has one, else every page
    after the schema page."""
    conn = sqlite3.connect(path)
    try:
        try:
            rows = conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,)).fetchall()
            return sorted(int(r[0]) for r in rows)
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            count = int(conn.execute("PRAGMA page_count").fetchone()[0])
            return list(range(2, count + 1))
    finally:
        conn.close()


def _overwrite(path: Path, offset: int, size: int, rng: random.Random) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes(rng.randrange(256) for _ in range(size)))


def truncated(path: Path, rng: random.Random) -> str:
    checkpoint(path)
    size = path.stat().st_size
    keep = rng.randrange(PAGE, max(PAGE + 1, size // 2))
    with path.open("r+b") as f:
        f.truncate(keep)
    return f"cut to {keep} of {size} bytes"


HEADER_FIELDS = (("magic string", 0, 16), ("page size", 16, 18), ("file format", 18, 20),
                 ("schema version", 60, 64), ("whole header", 0, 100))
"""Fields of SQLite's 100-byte header (https://www.sqlite.org/fileformat.html) whose damage SQLite notices."""


def header(path: Path, rng: random.Random) -> str:
    checkpoint(path)
    name, start, end = rng.choice(HEADER_FIELDS)
    _overwrite(path, start, end - start, rng)
    return f"random bytes over the header's {name}"


def machine_pages(path: Path, rng: random.Random) -> str:
    """Random bytes inside pages of the machines table: opening works, reading the runs does not."""
    checkpoint(path)
    pages = table_pages(path, "machines")
    page = rng.choice(pages[1:] or pages)
    _overwrite(path, (page - 1) * PAGE + 8, PAGE - 8, rng)
    return f"random bytes over page {page} (machines)"


def not_a_database(path: Path, rng: random.Random) -> str:
    checkpoint(path)
    path.write_bytes(b"# notes\n" + bytes(rng.randrange(32, 127) for _ in range(3000)))
    return "replaced by a text file"


def _update(path: Path, sql: str, rng: random.Random) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM machines WHERE kind = 'delegation' ORDER BY id")]
        victim = rng.choice(ids)
        conn.execute(sql, (victim,))
    finally:
        conn.close()
    return victim


def bad_json(path: Path, rng: random.Random) -> str:
    victim = _update(path, "UPDATE machines SET data = '{\"task\": \"cut here' WHERE id = ?", rng)
    return f"run {victim}: data is not JSON"


def unknown_state(path: Path, rng: random.Random) -> str:
    victim = _update(path, "UPDATE machines SET state = 'teleporting' WHERE id = ?", rng)
    return f"run {victim}: state 'teleporting'"


def session_json(path: Path, rng: random.Random) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE machines SET data = '[1, 2' WHERE id = 'session'")
    finally:
        conn.close()
    return "the session's data is not JSON"


Damage = Callable[[Path, random.Random], str]

FILE_DAMAGES: dict[str, Damage] = {
    "truncated": truncated,
    "header": header,
    "pages": machine_pages,
    "not a database": not_a_database,
}
ROW_DAMAGES: dict[str, Damage] = {
    "bad JSON in a run": bad_json,
    "unknown state in a run": unknown_state,
    "bad JSON in the session": session_json,
}
DAMAGES: dict[str, Damage] = {**FILE_DAMAGES, **ROW_DAMAGES}
