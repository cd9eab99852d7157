"""A run can never get stuck: whatever fails while it finishes, it reaches a terminal state, and `resume` and
`cancel` answer instead of raising."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation import shared_tree, steps
from engine.delegation.metrics import read_log
from engine.testing.scripted import ScriptedBackend, use_backend


def _interrupted_run(engine: Engine, run_id: str, task: str, *, state_events: list[str]) -> None:
    engine.ctx.runs.create(run_id, {"task": task, "task_type": "generate", "max_attempts": 1, "attempt": 1,
                                    "output_files": [{"path": "out.txt", "description": ""}]})
    for event in state_events:
        engine.ctx.runs.fire(run_id, event)


@pytest.mark.anyio
async def test_a_task_that_is_not_valid_utf8_still_ends_and_is_logged(engine: Engine) -> None:
    # Written by an older version that let a lone surrogate through: its log line used to fail inside the final
    # transition, which rolled the transition back and left the run in rolling_back for good.
    _interrupted_run(engine, "run-bad-text", "fix \ud800 this", state_events=["start"])
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(10):
        view = await engine.cancel("run-bad-text")
    assert view["state"] == "cancelled"
    [line] = [r for r in read_log(engine.project.delegation_log).records if r.get("run_id") == "run-bad-text"]
    assert line["task"] == "fix \ud800 this"


@pytest.mark.anyio
async def test_a_rollback_that_keeps_failing_ends_the_run_after_the_recovery_limit(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> shared_tree.Step:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(steps, "rollback_file", broken)
    _interrupted_run(engine, "run-stuck", "t", state_events=["start", "abort"])
    with engine.store.transaction() as tx:
        tx.journal_base("run-stuck", "out.txt", previous=None)
    with anyio.fail_after(10):
        view = await engine.cancel("run-stuck")  # answers, and says what went wrong, instead of raising
        assert view["state"] == "rolling_back"
        assert "read-only file system" in engine.run_view("run-stuck")["data"]["last_error"]
        for _ in range(3):
            with engine.store.transaction() as tx:
                tx.set_owner("run-stuck", None)  # the process that tried died
            report = await engine.resume(max_recoveries=2)
    assert report["aborted"] == ["run-stuck"]
    record = engine.store.get("run-stuck")
    assert record.state == "failed"
    assert ("could not finish rolling back after 3 tries (PermissionError: read-only file system)"
            in record.data["error"])
