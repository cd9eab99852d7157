"""SQLite persistence: one row per machine and an append-only journal of events.

Every change to a machine row happens inside `Store.transaction()` (BEGIN IMMEDIATE), together with its journal entry,
so the row and the journal commit together or not at all. The write lock that BEGIN IMMEDIATE takes serialises
writers across processes; the `version` column is checked as well, so a caller holding a stale copy is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

import structlog

from engine.errors import UserError
from engine.store import journal, retention
from engine.store.connect import open_database
from engine.store.health import DamagedRow, machines_check, payload_data, row_data, unusable
from engine.store.journal import FileWrite
from states import FileSummary

__all__ = [
    "EventRecord",
    "FileWrite",
    "MachineNotFound",
    "MachineRecord",
    "StaleVersion",
    "Store",
    "StoreError",
    "Transaction",
]

log = structlog.get_logger(__name__)


class StoreError(UserError):
    """Base class of the store's errors."""


class MachineNotFound(StoreError):
    def __init__(self, machine_id: str) -> None:
        super().__init__(f"no machine with id {machine_id!r}; `local-llm runs` lists the known runs")
        self.machine_id = machine_id


class StaleVersion(StoreError):
    def __init__(self, machine_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"machine {machine_id!r} changed underneath: expected version {expected}, found {actual}; reload and retry"
        )
        self.machine_id, self.expected, self.actual = machine_id, expected, actual


@dataclass(frozen=True)
class MachineRecord:
    id: str
    kind: str
    state: str
    data: dict[str, Any]
    owner: str | None
    created_at: float
    updated_at: float
    version: int
    compacted_at: float | None = None
    """When the retention policy dropped this finished run's bodies (engine/delegation/retention.py); None: kept."""


@dataclass(frozen=True)
class EventRecord:
    seq: int
    machine_id: str
    version: int
    event: str
    src: str | None
    dst: str
    payload: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


def _machine(row: sqlite3.Row, declared: Mapping[str, frozenset[str]]) -> MachineRecord:
    """The row as a record; DamagedRow when it cannot be read (engine/store/health.py: row_data)."""
    return MachineRecord(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        data=row_data(row, declared),
        owner=row["owner"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        compacted_at=row["compacted_at"],
    )


def _event(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        seq=row["seq"],
        machine_id=row["machine_id"],
        version=row["version"],
        event=row["event"],
        src=row["src"],
        dst=row["dst"],
        payload=payload_data(row["payload"]),
        at=row["at"],
    )


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Transaction:
    """Reads and writes inside one BEGIN IMMEDIATE transaction; obtained from `Store.transaction()`."""

    def __init__(self, conn: sqlite3.Connection, declared: Mapping[str, frozenset[str]]) -> None:
        self._conn = conn
        self._declared = declared
        self.now = time.time()

    def get(self, machine_id: str) -> MachineRecord:
        if (record := self.find(machine_id)) is None:
            raise MachineNotFound(machine_id)
        return record

    def find(self, machine_id: str) -> MachineRecord | None:
        row = self._conn.execute("SELECT * FROM machines WHERE id = ?", (machine_id,)).fetchone()
        return None if row is None else _machine(row, self._declared)

    def create(
        self, machine_id: str, *, kind: str, state: str, data: dict[str, Any], event: str = "create"
    ) -> MachineRecord:
        try:
            self._conn.execute(
                "INSERT INTO machines (id, kind, state, data, created_at, updated_at, version)"
                " VALUES (?, ?, ?, ?, ?, ?, 1)",
                (machine_id, kind, state, _dumps(data), self.now, self.now),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a machine with id {machine_id!r} already exists") from exc
        self._append(machine_id, 1, event, None, state, data)
        return self.get(machine_id)

    def update(
        self,
        record: MachineRecord,
        *,
        event: str,
        dst: str,
        data: dict[str, Any],
        payload: dict[str, Any] | None = None,
    ) -> MachineRecord:
        """Move `record` to `dst` with new `data`, journaling `event`; refused if the row moved since `record`.

        `record` must come from this transaction (`get`), so its owner is current (owner changes keep the version)."""
        stored = _dumps(data)
        cur = self._conn.execute(
            "UPDATE machines SET state = ?, data = ?, updated_at = ?, version = version + 1"
            " WHERE id = ? AND version = ?",
            (dst, stored, self.now, record.id, record.version),
        )
        if cur.rowcount != 1:
            raise StaleVersion(record.id, record.version, self.get(record.id).version)
        self._append(record.id, record.version + 1, event, record.state, dst, payload or {})
        # The row is exactly what was written: build it instead of reading it back (a SELECT per move, B1).
        # `record` was read in this transaction (PersistedMachines.fire/note), whose write lock keeps its owner and
        # created_at current; `data` goes through JSON as a read would (lists, string keys).
        return MachineRecord(
            id=record.id, kind=record.kind, state=dst, data=json.loads(stored), owner=record.owner,
            created_at=record.created_at, updated_at=self.now, version=record.version + 1,
            compacted_at=record.compacted_at,
        )

    def set_owner(self, machine_id: str, owner: str | None) -> None:
        self._conn.execute("UPDATE machines SET owner = ? WHERE id = ?", (owner, machine_id))

    # -- the write journal of delegation runs (engine/store/journal.py) ---------------------------------------

    def file_writes(self, run_id: str) -> list[FileWrite]:
        return journal.file_writes(self._conn, run_id)

    def journal_base(self, run_id: str, path: str, *, previous: bytes | None) -> None:
        journal.add_base(self._conn, run_id, path, previous=previous)

    def journal_content(self, run_id: str, path: str, *, content: bytes, attempt: int) -> None:
        journal.set_content(self._conn, run_id, path, content=content, attempt=attempt)

    def journal_applied(self, run_id: str, path: str, *, applied_hash: str, created_dirs: Sequence[str] = ()) -> None:
        journal.record_applied(self._conn, run_id, path, applied_hash=applied_hash, created_dirs=created_dirs)

    def mark_file_writes(self, run_id: str, status: str, *, paths: Sequence[str] | None = None) -> None:
        journal.set_status(self._conn, run_id, status, paths=paths)

    def _append(
        self, machine_id: str, version: int, event: str, src: str | None, dst: str, payload: dict[str, Any]
    ) -> None:
        self._conn.execute(
            "INSERT INTO events (machine_id, version, event, src, dst, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (machine_id, version, event, src, dst, _dumps(payload), self.now),
        )


class Store:
    """A project's `state.db`. Safe to share between threads; several processes may open the same file.

    A SQLite error about the file itself (damaged, unreadable, disk full) leaves every method as one
    `DatabaseUnavailable` (engine/store/health.py) naming the file, the problem and the fix. After one, the
    connection is dropped and the next call opens the file again, so a process that outlives the problem (the MCP
    server, after `local-llm db move-aside`) works again without a restart. `open_now=False` defers the first open
    to the first call: a damaged database then fails that call, not the construction (the engine's choice, so the
    server can start and report the problem).
    """

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0, open_now: bool = True) -> None:
        self.path = Path(path)
        self._memory = str(path) == ":memory:"
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._declared: dict[str, frozenset[str]] = {}
        if open_now:
            with self._use():
                pass

    def declare(self, kind: str, states: Iterable[str]) -> None:
        """Rows of `kind` whose state is not one of `states` are read as DamagedRow."""
        self._declared[kind] = frozenset(states)

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """The connection (opened if needed), under the lock; SQLite errors about the file become
        DatabaseUnavailable and drop the connection."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = open_database(self.path, memory=self._memory,
                                               busy_timeout_s=self._busy_timeout_s)
                yield self._conn
            except sqlite3.Error as exc:
                problem = None if self._memory else unusable(self.path, exc)
                if problem is None:
                    raise
                # The error says it to the user; the log keeps it for later (stderr shows it with -v).
                log.info("database unavailable", path=str(self.path), problem=problem.problem)
                self._drop()
                raise problem from exc

    def _drop(self) -> None:
        if self._conn is not None:
            with suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def settings(self) -> dict[str, Any]:
        """The durability settings and schema version in force (2 for synchronous is FULL)."""
        with self._use() as conn:
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("journal_mode", "synchronous", "user_version")}

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._use() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(conn, self._declared)
            except BaseException:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already (a damaged page, a full disk)
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_machines(self) -> None:
        """DatabaseDamaged when a page of the machines table is (health.machines_check: reads the whole table, on a
        connection of its own, so call it from a worker thread)."""
        if not self._memory:
            machines_check(self.path)

    # Reads run outside explicit transactions: WAL gives each statement a consistent snapshot.

    def get(self, machine_id: str) -> MachineRecord:
        with self._use() as conn:
            row = conn.execute("SELECT * FROM machines WHERE id = ?", (machine_id,)).fetchone()
        if row is None:
            raise MachineNotFound(machine_id)
        return _machine(row, self._declared)

    def find(self, machine_id: str) -> MachineRecord | None:
        try:
            return self.get(machine_id)
        except MachineNotFound:
            return None

    def machines(
        self, *, kind: str | None = None, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[MachineRecord]:
        """Machines, newest first; raises DamagedRow at a row that cannot be read (`scan` reports it instead)."""
        records, damaged = self.scan(kind=kind, states=states, limit=limit)
        if damaged:
            raise damaged[0]
        return records

    def scan(
        self, *, kind: str | None = None, states: Sequence[str] | None = None,
        not_states: Sequence[str] | None = None, limit: int | None = None,
    ) -> tuple[list[MachineRecord], list[DamagedRow]]:
        """Machines, newest first, and apart the rows that cannot be read (so one bad row hides no other).

        `not_states` is one index range per gap between the excluded states (UNION ALL), not `NOT IN`, which reads
        the whole kind: the recovery scan at every start asks for the few unfinished runs among thousands of
        finished ones (~0.03 ms instead of ~1.2 ms for 10,000 runs)."""
        where, args = "WHERE 1 = 1", list[str | int]()
        if kind is not None:
            where += " AND kind = ?"
            args.append(kind)
        if states is not None:
            where += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        branches = [(where, args)]
        if not_states is not None:
            bounds: list[str | None] = [None, *sorted(set(not_states)), None]
            branches = [(where + (" AND state > ?" if lo is not None else "") + (" AND state < ?" if hi is not None
                         else ""), [*args, *(b for b in (lo, hi) if b is not None)])
                        for lo, hi in pairwise(bounds)]
        sql = " UNION ALL ".join(f"SELECT * FROM machines {w}" for w, _ in branches)
        args = [a for _, branch_args in branches for a in branch_args]
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._use() as conn:
            rows = conn.execute(sql, args).fetchall()
        records: list[MachineRecord] = []
        damaged: list[DamagedRow] = []
        for row in rows:
            try:
                records.append(_machine(row, self._declared))
            except DamagedRow as bad:
                damaged.append(bad)
        return records, damaged

    def count(self, *, kind: str, states: Sequence[str]) -> int:
        sql = f"SELECT COUNT(*) FROM machines WHERE kind = ? AND state IN ({','.join('?' * len(states))})"
        with self._use() as conn:
            return int(conn.execute(sql, (kind, *states)).fetchone()[0])

    def file_writes(self, run_id: str) -> list[FileWrite]:
        with self._use() as conn:
            return journal.file_writes(conn, run_id)

    # -- retention (engine/store/retention.py; the policy is engine/delegation/retention.py) -------------------

    def runs_with_bodies(self, *, kind: str, states: Sequence[str], ended_before: float,
                         after: tuple[float, str] | None = None, limit: int = 50) -> list[retention.WithBodies]:
        with self._use() as conn:
            return retention.runs_with_bodies(conn, kind=kind, states=states, ended_before=ended_before,
                                              after=after, limit=limit)

    def compact(self, runs: Sequence[tuple[str, Mapping[str, Any], Mapping[str, FileSummary]]], *,
                states: Sequence[str]) -> list[str]:
        """Drop the bodies of `runs` (id, new data, file summaries) in one transaction; the ids it compacted."""
        with self.transaction() as tx:
            return [run_id for run_id, data, summaries in runs
                    if retention.compact_run(tx._conn, run_id, states=states, data=data, summaries=summaries,
                                             now=tx.now)]

    def space(self, *, give_back: bool = False, vacuum: bool = False) -> retention.Space:
        """The database's used and free bytes, after giving free pages back (`give_back`: where cheap; `vacuum`:
        rewriting the file)."""
        with self._use() as conn:
            if vacuum:
                retention.vacuum(conn)
            elif give_back:
                retention.give_back_pages(conn)
            return retention.space(conn)

    def events(self, machine_id: str) -> list[EventRecord]:
        with self._use() as conn:
            rows = conn.execute(
                "SELECT * FROM events WHERE machine_id = ? ORDER BY version", (machine_id,)
            ).fetchall()
        return [_event(r) for r in rows]
