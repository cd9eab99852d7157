"""Upgrades with runs in flight: a state.db written by the previous schema version, holding runs that a crash
interrupted, is migrated on open and its runs resume to a correct end.

`fixtures/state-v2.db` was made by the code at commit 556a4ca (schema version 2) with `fixtures/make_state_v2.py`: a
run killed while `writing` (contents journaled, none applied) and one killed while `delegating` (before its prompt
was packed)."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import anyio
import pytest

from engine import Engine, Project
from engine.store.db import Store
from engine.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

FIXTURE = Path(__file__).parent / "fixtures" / "state-v2.db"


def _old_project(project_dir: Path) -> Path:
    """The previous version's project: its state.db, owned by a process that is gone, and the file it changes."""
    db = project_dir / ".claude" / "workflow" / "state.db"
    db.parent.mkdir(parents=True)
    shutil.copy(FIXTURE, db)
    (project_dir / "existing.txt").write_bytes(b"before the run\n")
    with sqlite3.connect(db) as conn:  # the old process died: its token names this host and a pid not alive
        conn.execute("UPDATE machines SET owner = ?", (f"{socket.gethostname()}:2147483646:1",))
    return db


def test_the_fixture_is_a_database_of_the_previous_schema_version() -> None:
    with sqlite3.connect(FIXTURE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert SCHEMA_VERSION >= 2 and len(MIGRATIONS) == SCHEMA_VERSION


@pytest.mark.anyio
async def test_runs_interrupted_under_the_previous_version_resume_after_the_upgrade(project_dir: Path) -> None:
    db = _old_project(project_dir)
    engine = Engine(Project.resolve(project_dir))
    try:
        assert engine.store.settings()["user_version"] == SCHEMA_VERSION
        backend = ScriptedBackend().reply(files_answer({"gen.py": "VALUE = 1\n"}))
        use_backend(engine, backend)
        with anyio.fail_after(30):
            report = await engine.resume()
        assert sorted(report["resumed"]) == ["run-v2-delegating", "run-v2-writing"]
        assert {r["run_id"]: r["state"] for r in report["runs"]} == {
            "run-v2-writing": "done", "run-v2-delegating": "done"}
        assert (project_dir / "existing.txt").read_bytes() == b"after the run\n"
        assert (project_dir / "new" / "made.txt").read_bytes() == b"made\n"
        assert (project_dir / "gen.py").read_text() == "VALUE = 1\n"
        assert len(backend.requests) == 1  # only the run interrupted before generating asks the model again
        assert backend.requests[0].schema is not None  # in the form it was asked in: whole files as JSON
        view = await engine.result("run-v2-writing")
        assert view["files"] and {f["status"] for f in view["files"]} == {"written"}
    finally:
        engine.close()
    assert db.exists()


def test_a_database_from_a_newer_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade workflow-local-llm"):
        Store(db)


FIXTURE_V3 = Path(__file__).parent / "fixtures" / "state-v3.db"


def test_the_v3_fixture_is_a_database_of_schema_version_3() -> None:
    with sqlite3.connect(FIXTURE_V3) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert SCHEMA_VERSION >= 4


@pytest.mark.anyio
async def test_a_run_interrupted_under_schema_3_resumes_after_the_retention_upgrade(project_dir: Path) -> None:
    # fixtures/make_state_v3.py: a run killed while writing, and a finished run with its bodies stored.
    db = project_dir / ".claude" / "workflow" / "state.db"
    db.parent.mkdir(parents=True)
    shutil.copy(FIXTURE_V3, db)
    (project_dir / "existing.txt").write_bytes(b"before the run\n")
    with sqlite3.connect(db) as conn:  # the old process died: its token names this host and a pid not alive
        conn.execute("UPDATE machines SET owner = ? WHERE owner IS NOT NULL", (f"{socket.gethostname()}:2147483646:1",))
    engine = Engine(Project.resolve(project_dir))
    try:
        assert engine.store.settings()["user_version"] == SCHEMA_VERSION
        assert engine.store.get("run-v3-done").compacted_at is None  # kept until the policy reaches it
        use_backend(engine, ScriptedBackend())
        with anyio.fail_after(30):
            resumed = await engine.resume()
        assert resumed["resumed"] == ["run-v3-writing"]
        assert {r["run_id"]: r["state"] for r in resumed["runs"]} == {"run-v3-writing": "done"}
        assert (project_dir / "existing.txt").read_bytes() == b"after the run\n"
        assert engine.db_compact(everything=True)["runs_compacted"] == 2  # the upgraded run and the resumed one
        [file] = (await engine.result("run-v3-done"))["files"]
        assert (file["bytes"], file["added"], file["removed"]) == (12, 2, 1)  # one\ntwo\n -> one\n2\nthree\n
        assert engine.store.get("run-v3-writing").compacted_at is not None
    finally:
        engine.close()
