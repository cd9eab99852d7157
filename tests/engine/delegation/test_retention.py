"""The retention policy (engine/delegation/retention.py): finished runs lose their prompt, answers and file contents
after `keep_days` or past `keep_mb`, keep everything `run`, `result`, `stats`, the diagrams and recovery read, and a
run that has not finished is never touched. Real SQLite, real runs through the engine with a scripted backend."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.retention import DAY_S, RetentionPolicy, apply_policy
from engine.errors import UserError
from engine.executor.edits import blocks_for
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.server import _start_up

pytestmark = pytest.mark.anyio


def _module(functions: int) -> str:
    return "".join(f"def f_{i}(value):\n    result = value * {i}\n    return result + {i}\n\n\n"
                   for i in range(functions))


async def _docstring_run(engine: Engine, project_dir: Path, name: str = "big.py") -> dict[str, object]:
    """A finished edit-block run on a 1,500-line file: ten functions get a docstring."""
    base = _module(300)
    target = base
    for i in range(0, 300, 30):
        target = target.replace(f"def f_{i}(value):\n", f'def f_{i}(value):\n    """Scale by {i}."""\n', 1)
    (project_dir / name).write_text(base)
    use_backend(engine, ScriptedBackend().reply(blocks_for(base, target, path=name)), num_ctx=32768)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Add docstrings", task_type="docs", output_files=[name],
                                       answer_form="edits")
    assert result["state"] == "done", result["error"]
    return result


async def test_compacting_drops_a_finished_runs_bodies_and_keeps_what_run_result_stats_and_diagrams_show(
    engine: Engine, project_dir: Path
) -> None:
    result = await _docstring_run(engine, project_dir)
    run_id = str(result["run_id"])
    before = {"result": await engine.result(run_id), "stats": engine.stats(),
              "diagram": engine.diagram("delegation", run_id=run_id), "view": engine.run_view(run_id)}
    stored = engine.store.space().used
    assert engine.store.get(run_id).data["prompt"] is not None

    report = engine.db_compact(everything=True)

    assert report["runs_compacted"] == 1 and report["bytes_after"] < report["bytes_before"]
    assert engine.store.space().used < stored - 2 * len((project_dir / "big.py").read_bytes())
    record = engine.store.get(run_id)
    assert record.compacted_at is not None and record.data["prompt"] is None and record.data["last_answer"] == ""
    assert all(w.previous is None and w.content is None for w in engine.store.file_writes(run_id))
    assert await engine.result(run_id) == before["result"]  # lines added, removed, the functions touched
    assert engine.stats() == before["stats"]
    assert engine.diagram("delegation", run_id=run_id) == before["diagram"]
    view = engine.run_view(run_id)
    assert view["events"] == before["view"]["events"] and view["compacted_at"] == record.compacted_at
    assert {k: v for k, v in view["data"].items() if k not in ("prompt", "last_answer")} == {
        k: v for k, v in before["view"]["data"].items() if k not in ("prompt", "last_answer")}
    [file] = (await engine.result(run_id, diff=True))["files"]
    assert file["diff"] is None and "retention" in file["diff_dropped"]
    assert engine.db_compact(everything=True)["runs_compacted"] == 0  # nothing twice


@pytest.mark.answer_form_json
async def test_a_run_that_has_not_finished_is_never_compacted_and_finishes_afterwards(
    engine: Engine, project_dir: Path
) -> None:
    backend = ScriptedBackend(block=anyio.Event()).reply(files_answer({"out.py": "x = 1\n"}))
    use_backend(engine, backend)
    async with engine.background():
        started = await engine.delegate(task="write out.py", output_files=["out.py"], wait=0)
        with anyio.fail_after(10):
            while not backend.requests:  # generating: packed, its prompt stored
                await anyio.sleep(0.01)
        run_id = started["run_id"]
        report = engine.db_compact(everything=True, keep_mb=0)
        assert report["runs_compacted"] == 0
        record = engine.store.get(run_id)
        assert record.state == "delegating" and record.compacted_at is None and record.data["prompt"] is not None
        assert backend.block is not None
        backend.block.set()
        with anyio.fail_after(10):
            done = await engine.result(run_id, wait=10)
    assert done["state"] == "done" and (project_dir / "out.py").read_text() == "x = 1\n"


async def test_a_finished_child_of_a_batch_that_has_not_ended_keeps_its_bodies(engine: Engine) -> None:
    engine.ctx.batches.create("batch-live", {})
    runs = engine.ctx.runs
    for run_id, batch in (("run-child", "batch-live"), ("run-alone", None)):
        runs.create(run_id, {"task": "t", "output_files": [{"path": f"{run_id}.txt", "description": ""}],
                             "batch_id": batch})
        runs.fire(run_id, "start", data={"attempt": 1})
        runs.note(run_id, "packed", data={"prompt": {"system": "s", "user": "u" * 1000}})
        runs.fire(run_id, "generated", data={"last_answer": "a" * 1000})
        runs.fire(run_id, "written")  # no verify: done
    report = engine.db_compact(everything=True)
    assert (report["runs_compacted"], report["runs_in_live_batches"]) == (1, 1)
    assert engine.store.get("run-child").data["prompt"] is not None
    assert engine.store.get("run-alone").data["prompt"] is None


def _finished(engine: Engine, run_id: str, *, ended: float, body: int) -> None:
    runs = engine.ctx.runs
    runs.create(run_id, {"task": "t", "output_files": [{"path": f"{run_id}.txt", "description": ""}]})
    runs.fire(run_id, "start", data={"attempt": 1})
    runs.note(run_id, "packed", data={"prompt": {"system": "s", "user": "u" * body}},
              after=lambda tx, m: tx.journal_base(m.id, f"{run_id}.txt", previous=b"p" * body))
    runs.fire(run_id, "generated", data={"last_answer": "a"},
              after=lambda tx, m: tx.journal_content(m.id, f"{run_id}.txt", content=b"c" * body, attempt=1))
    runs.fire(run_id, "written")
    with sqlite3.connect(engine.store.path) as conn:  # when it ended
        conn.execute("UPDATE machines SET updated_at = ? WHERE id = ?", (ended, run_id))


def _kept(engine: Engine) -> list[str]:
    return sorted(r.id for r in engine.store.machines(kind="delegation") if r.compacted_at is None)


async def test_bodies_go_after_keep_days(engine: Engine) -> None:
    now = time.time()
    for n, age_days in enumerate((40, 31, 29, 1)):
        _finished(engine, f"run-{n}", ended=now - age_days * DAY_S, body=2000)
    report = apply_policy(engine.store, RetentionPolicy(keep_days=30, keep_mb=0), now=now)
    assert report["runs_compacted"] == 2 and _kept(engine) == ["run-2", "run-3"]


async def test_past_keep_mb_the_oldest_bodies_go_first_until_the_database_fits(engine: Engine) -> None:
    now = time.time()
    for n in range(6):
        _finished(engine, f"run-{n}", ended=now - (10 - n) * 60, body=100_000)  # ~300 kB each
    used = engine.store.space().used
    cap_mb = (used - 650_000) / 1e6  # room for all but about two runs' bodies
    report = apply_policy(engine.store, RetentionPolicy(keep_days=0, keep_mb=cap_mb), now=now)
    assert report["used_after"] <= cap_mb * 1e6
    assert _kept(engine) == [f"run-{n}" for n in range(report["runs_compacted"], 6)]
    assert 2 <= report["runs_compacted"] <= 3


def test_the_bounds_come_from_the_environment_and_a_bad_value_names_the_variable() -> None:
    assert RetentionPolicy.from_env({}) == RetentionPolicy(keep_days=30, keep_mb=100)
    env = {"LOCAL_LLM_KEEP_DAYS": "7", "LOCAL_LLM_KEEP_MB": "0"}
    assert RetentionPolicy.from_env(env) == RetentionPolicy(keep_days=7, keep_mb=0)
    assert RetentionPolicy.from_env(env, keep_days=1) == RetentionPolicy(keep_days=1, keep_mb=0)
    with pytest.raises(UserError, match=r"\$LOCAL_LLM_KEEP_DAYS.*a number >= 0"):
        RetentionPolicy.from_env({"LOCAL_LLM_KEEP_DAYS": "a month"})


async def test_serve_applies_the_policy_at_start_once_interrupted_runs_resumed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEEP_DAYS", "30")
    _finished(engine, "run-old", ended=time.time() - 45 * DAY_S, body=5000)
    _finished(engine, "run-new", ended=time.time() - DAY_S, body=5000)
    with anyio.fail_after(20):
        await _start_up(engine)
    assert _kept(engine) == ["run-new"]
