"""A damaged state.db or row (engine/store/health.py, engine/store/repair.py): one clear error naming the file, the
problem and the fix; a bad row isolated from the others; the repairs keep a copy of everything they move or remove."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from bench.reliability.damage import (
    FILE_DAMAGES,
    HEADER_FIELDS,
    bad_json,
    checkpoint,
    header,
    machine_pages,
    unknown_state,
)
from engine.errors import UserError
from engine.store import repair
from engine.store.db import MachineRecord, Store
from engine.store.health import (
    DamagedRow,
    DatabaseDamaged,
    DatabaseTooNew,
    DatabaseUnavailable,
    machines_check,
    move_aside,
)
from engine.store.machines import PersistedMachines
from states import DELEGATION, SESSION


def _filled(path: Path, runs: int = 60) -> None:
    with Store(path) as store:
        machines = PersistedMachines(store, DELEGATION)
        for i in range(runs):
            machines.create(f"run-{i:03d}", {"task": f"task {i} " + "x" * 200})
            machines.fire(f"run-{i:03d}", "start")


def _store(path: Path, **options: bool) -> Store:
    store = Store(path, **options)
    PersistedMachines(store, DELEGATION)
    PersistedMachines(store, SESSION)
    return store


@pytest.mark.parametrize("damage", ["truncated", "header", "not a database"])
def test_a_damaged_file_fails_the_open_with_the_path_the_problem_and_the_fix(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "state.db"
    _filled(db)
    FILE_DAMAGES[damage](db, random.Random(3))
    with pytest.raises(DatabaseDamaged) as caught:
        Store(db)
    message = str(caught.value)
    assert str(db) in message and "damaged" in message and "local-llm db move-aside" in message
    assert isinstance(caught.value, UserError)


def test_a_damaged_page_fails_the_query_that_reaches_it_not_the_open(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=200)
    machine_pages(db, random.Random(5))
    store = _store(db)  # the header and the schema read fine
    with pytest.raises(DatabaseDamaged) as caught:
        store.machines(kind="delegation")
    assert "malformed" in str(caught.value)
    store.close()


def test_a_deferred_open_fails_the_first_call_and_opens_afresh_once_the_file_is_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"not a database\n" * 300)
    store = _store(db, open_now=False)  # what the engine does: constructing never fails
    with pytest.raises(DatabaseDamaged):
        store.find("session")
    with pytest.raises(DatabaseDamaged):  # every call, not only the first
        store.count(kind="delegation", states=["pending"])
    moved = move_aside(db, now=0)
    assert [Path(b).name for _, b in moved.moved] == ["state.db.damaged-19700101T000000Z"]
    assert store.find("session") is None  # the same Store object: a fresh database at the same path
    assert (tmp_path / "state.db.damaged-19700101T000000Z").read_bytes().startswith(b"not a database")
    store.close()


def test_a_busy_database_is_not_reported_as_damaged(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=1)
    store = Store(db, busy_timeout_s=0.05)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"), store.transaction():
            pass
        assert store.find("run-000") is not None  # the connection was kept
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_directory_where_the_database_belongs_is_an_error_that_names_it(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(DatabaseUnavailable) as caught:
        Store(tmp_path / "state.db")
    assert str(tmp_path / "state.db") in str(caught.value)


@pytest.mark.parametrize(("damage", "problem"), [(bad_json, "not valid JSON"), (unknown_state, "'teleporting'")])
def test_a_row_that_cannot_be_read_is_reported_and_the_others_are_read(tmp_path: Path, damage: object,
                                                                        problem: str) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=5)
    described = damage(db, random.Random(1))  # type: ignore[operator]
    victim = described.split()[1].rstrip(":")
    with _store(db) as store:
        records, damaged = store.scan(kind="delegation")
        assert [d.machine_id for d in damaged] == [victim]
        assert len(records) == 4 and all(isinstance(r, MachineRecord) for r in records)
        assert problem in damaged[0].problem
        with pytest.raises(DamagedRow) as caught:
            store.get(victim)
        assert victim in str(caught.value) and f"local-llm db forget {victim}" in str(caught.value)
        with pytest.raises(DamagedRow):
            store.machines(kind="delegation")  # the plain list refuses to hide it


def test_a_journal_entry_that_cannot_be_read_is_shown_as_unreadable(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=1)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET payload = '{oops' WHERE machine_id = 'run-000' AND version = 2")
    with Store(db) as store:
        events = store.events("run-000")
    assert [e.event for e in events] == ["create", "start"]
    assert "not valid JSON" in events[1].payload["unreadable"]


def test_move_aside_refuses_a_sound_database_unless_forced_and_keeps_every_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=2)
    store = _store(db)
    with pytest.raises(UserError, match="not damaged"):
        repair.move_aside(store)
    assert db.exists()
    other = sqlite3.connect(db)  # another process holds it open: its -wal and -shm stay beside it
    try:
        other.execute("SELECT 1 FROM machines").fetchone()
        assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
        moved = repair.move_aside(store, force=True)
    finally:
        other.close()
    names = sorted(Path(m["to"]).name for m in moved["moved"])
    assert len(names) == 3 and names[0].startswith("state.db.damaged-") and names[1].endswith("-shm")
    assert not db.exists() and store.find("run-000") is None
    store.close()


def test_move_aside_moves_a_damaged_database_without_asking(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=200)
    machine_pages(db, random.Random(5))
    store = _store(db)
    report = repair.check(store)
    assert not report["ok"] and report["pages"] and "move-aside" in report["fix"]
    moved = repair.move_aside(store)
    assert len(moved["moved"]) == 1 and repair.check(store)["ok"]
    store.close()


def test_forget_removes_only_a_row_that_cannot_be_read_after_a_backup(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=3)
    victim = unknown_state(db, random.Random(2)).split()[1].rstrip(":")
    with _store(db) as store:
        report = repair.check(store)
        assert not report["ok"] and [r["id"] for r in report["damaged_rows"]] == [victim]
        healthy = next(r.id for r in store.scan(kind="delegation")[0])
        with pytest.raises(UserError, match="reads fine"):
            repair.forget(store, healthy)
        forgotten = repair.forget(store, victim)
        assert forgotten["forgotten"] and forgotten["id"] == victim
        assert store.find(victim) is None and len(store.machines(kind="delegation")) == 2
        assert repair.check(store)["ok"]
    with sqlite3.connect(forgotten["backup"]) as backup:
        assert backup.execute("SELECT state FROM machines WHERE id = ?", (victim,)).fetchone() == ("teleporting",)


def test_checkpoint_helper_leaves_one_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=1)
    checkpoint(db)
    assert not Path(f"{db}-wal").exists()


@pytest.mark.parametrize(("version", "error", "says"), [
    (-3, DatabaseDamaged, "schema version is -3"),
    (123456, DatabaseTooNew, "--force"),
])
def test_a_schema_version_no_version_of_the_tool_wrote_is_reported_with_the_file(
    tmp_path: Path, version: int, error: type[Exception], says: str
) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=1)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    with pytest.raises(error) as caught:
        Store(db)
    assert str(db) in str(caught.value) and says in str(caught.value)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version  # nothing migrated over it


@pytest.mark.parametrize("field", [name for name, _, _ in HEADER_FIELDS])
def test_random_bytes_over_any_field_of_the_header_read_as_one_clear_error(tmp_path: Path, field: str) -> None:
    db = tmp_path / "state.db"
    _filled(db, runs=3)
    for seed in range(200):  # the seed that damages this field
        rng = random.Random(seed)
        if rng.choice(HEADER_FIELDS)[0] == field:
            break
    header(db, random.Random(seed))
    with pytest.raises(DatabaseUnavailable) as caught:
        _store(db).scan()
    assert str(db) in str(caught.value) and "local-llm db move-aside" in str(caught.value)


def test_the_machines_check_finds_a_damaged_page_no_query_reached_and_passes_a_sound_or_missing_file(
        tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    machines_check(db)  # no database yet: nothing to check, nothing created
    assert not db.exists()
    _filled(db, runs=200)
    machines_check(db)
    machine_pages(db, random.Random(5))
    with pytest.raises(DatabaseDamaged) as caught:
        machines_check(db)
    assert str(db) in str(caught.value) and "local-llm db move-aside" in str(caught.value)
