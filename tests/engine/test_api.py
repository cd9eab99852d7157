"""The facade with a damaged database or row: it is built without touching the database, `status` answers with the
problem and the fix, every other call raises one error naming them, and a bad row is listed, not hidden."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import anyio
import pytest

from bench.reliability.damage import PAGE, checkpoint
from engine import DamagedRow, DatabaseDamaged, Engine, Project
from engine.testing.scripted import ScriptedBackend, use_backend


def _damaged(project_dir: Path) -> Project:
    project = Project.resolve(project_dir)
    project.state_db.parent.mkdir(parents=True)
    project.state_db.write_bytes(b"SQLite format 2\x00" + b"\x07" * 5000)
    return project


@pytest.mark.anyio
async def test_a_damaged_database_leaves_status_answering_with_the_problem_and_the_fix(project_dir: Path) -> None:
    engine = Engine(_damaged(project_dir))  # never fails: the database is opened at the first call
    try:
        status = await engine.status()
        assert status["state"] == "unavailable"
        assert str(engine.project.state_db) in status["problem"] and "damaged" in status["problem"]
        assert "local-llm db move-aside" in status["fix"]
        for call in (lambda: engine.list_runs(), lambda: engine.run_view("run-1")):
            with pytest.raises(DatabaseDamaged, match="move-aside"):
                call()
        with anyio.fail_after(10), pytest.raises(DatabaseDamaged):
            await engine.resume()
        assert engine.stats()["delegated"] == 0  # the delegation log is not the database
        assert engine.db_check()["ok"] is False
        moved = engine.db_move_aside()
        assert moved["moved"][0]["to"].startswith(str(engine.project.state_db) + ".damaged-")
        assert (await engine.status())["state"] == "idle"  # the same engine, a fresh database
    finally:
        engine.close()


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_run_row_that_cannot_be_read_is_listed_with_its_problem_among_the_others(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(10):
        ids = [(await engine.delegate(task=f"t{i}", output_files=[f"f{i}.txt"]))["run_id"] for i in range(3)]
    with sqlite3.connect(engine.project.state_db) as conn:
        conn.execute("UPDATE machines SET data = 'not json' WHERE id = ?", (ids[1],))
    rows = engine.list_runs()
    assert [r["run_id"] for r in rows] == ids[::-1]
    bad = rows[1]
    assert bad["damaged"] and bad["state"] == "done" and "not valid JSON" in bad["error"]
    assert all(r["state"] == "done" and not r.get("damaged") for r in (rows[0], rows[2]))
    with pytest.raises(DamagedRow, match=ids[1]):
        engine.run_view(ids[1])
    with anyio.fail_after(10):
        assert (await engine.status())["runs_active"] == 0
        report = await engine.resume()  # finished: nothing to resume, and nothing crashes
    assert report["errors"] == {}


@pytest.mark.anyio
async def test_a_session_row_that_cannot_be_read_makes_status_say_how_to_forget_it(engine: Engine) -> None:
    with anyio.fail_after(10):
        assert (await engine.status())["state"] == "idle"
    with sqlite3.connect(engine.project.state_db) as conn:
        conn.execute("UPDATE machines SET state = 'warp' WHERE id = 'session'")
    with anyio.fail_after(10):
        status = await engine.status()
    assert status["state"] == "unavailable" and "'warp'" in status["problem"]
    assert status["fix"].startswith("`local-llm db forget session`")
    forgotten = engine.db_forget("session")
    assert forgotten["id"] == "session" and Path(forgotten["backup"]).exists()
    with anyio.fail_after(10):
        assert (await engine.status())["state"] == "idle"


def _leaf_pages(db: Path, table: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
                            (table,)).fetchall()
    conn.close()
    return [int(r[0]) for r in rows]


@pytest.mark.anyio
async def test_damage_to_finished_runs_only_is_reported_by_status_and_refuses_new_runs(engine: Engine) -> None:
    # Status reads the session's row and the runs in flight, a delegation adds rows at the end: a damaged page of
    # finished runs in between is reached by neither, so without the machines check both went on as if all was well.
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(30):
        assert (await engine.status())["state"] == "idle"
        for i in range(30):
            await engine.delegate(task=f"t{i} " + "x" * 400, output_files=[f"f{i}.txt"])
    db = engine.project.state_db
    engine.close()
    checkpoint(db)
    leaves = _leaf_pages(db, "machines")
    assert len(leaves) >= 3
    with db.open("r+b") as f:  # the middle leaf: neither the session's (first) nor the newest runs' (last)
        f.seek((leaves[len(leaves) // 2] - 1) * PAGE + 8)
        f.write(bytes(random.Random(7).randrange(256) for _ in range(PAGE - 8)))
    engine = Engine(engine.project)
    use_backend(engine, ScriptedBackend())
    try:
        with anyio.fail_after(30):
            status = await engine.status()
            assert status["state"] == "unavailable" and str(db) in status["problem"], status
            assert "local-llm db move-aside" in status["fix"]
            with pytest.raises(DatabaseDamaged, match="quick_check"):
                await engine.delegate(task="one more", output_files=["g.txt"])
    finally:
        engine.close()
    assert not (engine.project.root / "g.txt").exists()
