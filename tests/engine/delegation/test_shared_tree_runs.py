"""Runs in a tree that others edit while they work: whole delegations through the engine, with a concurrent editor
(the test) changing output files at known points of the run. Nothing the editor wrote is ever overwritten."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.metrics import read_log
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend


def _at_message(suffix: str) -> tuple[anyio.Event, object]:
    reached = anyio.Event()

    async def progress(done: float, total: float | None, message: str) -> None:
        if message.endswith(suffix):
            reached.set()

    return reached, progress


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_an_output_edited_while_the_model_generates_ends_the_run_in_conflict_untouched(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / "a.py").write_text("seen by the model\n")
    backend = ScriptedBackend().reply(files_answer({"a.py": "the model's version\n", "b.py": "new b\n"}))
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            started = await engine.delegate(task="rewrite", output_files=["a.py", "b.py"], max_attempts=3, wait=0)
            await backend.wait_active(1)  # the prompt is packed and the bases journaled: the model is writing
            (project_dir / "a.py").write_text("the person's edit\n")
            backend.block.set()
            result = await engine.result(started["run_id"], wait=10)
    assert result["state"] == "failed"
    assert result["conflicts"] == [{"path": "a.py", "found": "changed", "during": "writing",
                                    "kept_at": f".claude/workflow/conflicts/{result['run_id']}/a.py"}]
    assert (project_dir / "a.py").read_text() == "the person's edit\n"
    assert not (project_dir / "b.py").exists()  # nothing of the attempt was written
    assert (project_dir / result["conflicts"][0]["kept_at"]).read_text() == "the model's version\n"
    assert len(backend.requests) == 1  # a conflict makes no further attempt
    assert "conflict: a.py was changed by someone else" in result["error"]
    line = read_log(engine.project.delegation_log).records[-1]
    assert line["conflicts"] == result["conflicts"]
    stats = engine.stats()
    assert (stats["conflicts"], stats["runs_with_conflicts"]) == (1, 1)
    assert engine.run_view(result["run_id"])["conflicts"] == 1


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_an_output_edited_while_verify_runs_is_left_alone_by_the_rollback(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / "a.py").write_text("base a\n")
    (project_dir / "b.py").write_text("base b\n")
    use_backend(engine, ScriptedBackend().reply(files_answer({"a.py": "run a\n", "b.py": "run b\n"})))
    verifying, progress = _at_message("verifying")
    verify = "while [ ! -f go ]; do sleep 0.02; done; exit 1"  # fails once the test has edited a.py
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.delegate(task="t", output_files=["a.py", "b.py"], verify=verify, max_attempts=1,
                                            wait=0, progress=progress)  # type: ignore[arg-type]
            await verifying.wait()
            assert (project_dir / "a.py").read_text() == "run a\n"
            (project_dir / "a.py").write_text("edited while verify ran\n")
            (project_dir / "go").touch()
            result = await engine.result(started["run_id"], wait=20)
    assert result["state"] == "failed"
    assert [(c["path"], c["found"], c["during"]) for c in result["conflicts"]] == [("a.py", "changed", "rolling_back")]
    assert (project_dir / "a.py").read_text() == "edited while verify ran\n"
    assert (project_dir / "b.py").read_text() == "base b\n"  # the run's other file is rolled back
    assert result["verification"]["passed"] is False


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_aliased_spellings_of_one_file_take_one_lock(engine: Engine, project_dir: Path) -> None:
    (project_dir / "shared.txt").write_text("base\n")
    (project_dir / "link.txt").symlink_to("shared.txt")
    backend = ScriptedBackend(parallelism=4)
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            runs = [await engine.delegate(task=t, output_files=[p], wait=0)
                    for t, p in (("a", "shared.txt"), ("b", "./shared.txt"), ("c", "link.txt"))]
            await backend.wait_active(1)
            states = sorted(engine.store.get(r["run_id"]).state for r in runs)
            backend.block.set()
            results = [await engine.result(r["run_id"], wait=10) for r in runs]
    assert states == ["delegating", "pending", "pending"]
    assert backend.max_active == 1
    # One after the other: each run packs (and journals its base) only once it holds the lock, so each starts from
    # the previous run's output and none of them is in conflict.
    assert [(r["state"], r["conflicts"]) for r in results] == [("done", [])] * 3


@pytest.mark.anyio
async def test_a_rollback_removes_the_directories_its_run_created(engine: Engine, project_dir: Path) -> None:
    (project_dir / "src").mkdir()
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(10):
        result = await engine.delegate(task="t", output_files=["src/new/deep/x.py", "top/y.py"], verify="exit 1",
                                       max_attempts=1)
    assert result["state"] == "failed" and result["conflicts"] == []
    assert sorted(p.name for p in project_dir.iterdir() if p.name != ".claude") == ["src"]
    assert list((project_dir / "src").iterdir()) == []


@pytest.mark.anyio
async def test_a_file_created_at_an_output_path_after_a_kill_survives_the_resume(
    engine: Engine, project_dir: Path
) -> None:
    # The run was killed in `writing`: contents journaled, nothing renamed into place yet.
    engine.ctx.runs.create("run-killed", {"task": "t", "task_type": "generate", "max_attempts": 2,
                                          "output_files": [{"path": "new.py", "description": ""},
                                                           {"path": "other.py", "description": ""}]})
    engine.ctx.runs.fire("run-killed", "start", data={"attempt": 1})
    with engine.store.transaction() as tx:
        for path in ("new.py", "other.py"):
            tx.journal_base("run-killed", path, previous=None)
            tx.journal_content("run-killed", path, content=b"the run's\n", attempt=1)
    engine.ctx.runs.fire("run-killed", "generated")
    (project_dir / "new.py").write_text("the user's new file\n")  # between the kill and the resume
    with anyio.fail_after(10):
        report = await engine.resume()
    [run] = report["runs"]
    assert run["state"] == "failed"
    view = await engine.result("run-killed")
    assert [(c["path"], c["found"]) for c in view["conflicts"]] == [("new.py", "created")]
    assert (project_dir / "new.py").read_text() == "the user's new file\n"
    assert not (project_dir / "other.py").exists()  # nothing of the attempt was written

