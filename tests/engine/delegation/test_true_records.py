"""Every record is true (issue 19, point 1): the delegation log's run lines say what happened and what the
specification says (`decision: delegate`), verify that never ran is null, the stored score is `analyze`'s, and every
end of a run writes exactly one line."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation import shared_tree, steps
from engine.delegation.metrics import aggregate, append_record, read_log
from engine.executor.backends.base import BackendUnavailable
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

SEED_FIELDS = ("timestamp", "task", "task_type", "score", "decision", "verification_passed", "tokens_generated",
               "time_seconds")


def _lines(engine: Engine, run_id: str) -> list[dict[str, object]]:
    return [r for r in read_log(engine.project.delegation_log).records if r.get("run_id") == run_id]


@pytest.mark.anyio
async def test_a_run_whose_backend_was_down_logs_no_verification_instead_of_a_failed_one(engine: Engine) -> None:
    down = BackendUnavailable("connection refused")
    use_backend(engine, ScriptedBackend().reply(down, down))
    with anyio.fail_after(10):
        result = await engine.delegate(task="Write hello", output_files=["hello.py"], verify="true", max_attempts=2)
    assert result["state"] == "failed" and result["verification"]["passed"] is None
    [line] = _lines(engine, result["run_id"])
    assert line["verification_passed"] is None and line["decision"] == "delegate"
    assert all(key in line for key in SEED_FIELDS)


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_run_whose_verify_failed_logs_false_and_one_that_passed_true(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend().reply(files_answer({"a.py": "x = 1\n"}), files_answer({"b.py": "x = 1\n"})))
    with anyio.fail_after(10):
        failed = await engine.delegate(task="Write a", output_files=["a.py"], verify="false", max_attempts=1)
        passed = await engine.delegate(task="Write b", output_files=["b.py"], verify="true", max_attempts=1)
    assert [line["verification_passed"] for line in _lines(engine, failed["run_id"])] == [False]
    assert [line["verification_passed"] for line in _lines(engine, passed["run_id"])] == [True]


def test_stats_count_run_lines_of_both_spellings_of_the_decision(tmp_path: Path) -> None:
    log = tmp_path / "delegation-log.jsonl"
    append_record(log, {"event": "analyze", "decision": "delegate", "task": "a"})
    append_record(log, {"event": "run", "decision": "delegated", "state": "done", "task": "old line"})
    append_record(log, {"event": "run", "decision": "delegate", "state": "failed", "task": "new line"})
    stats = aggregate(read_log(log))
    assert (stats["delegated"], stats["done"], stats["failed"], stats["analyzed"], stats["recommended_delegate"]) == (
        2, 1, 1, 1, 1)


@pytest.mark.anyio
async def test_analyze_logs_one_line_with_the_seed_fields(engine: Engine) -> None:
    analysis = engine.analyze(task="Generate CRUD routes", output_files=["routes.py"])
    [line] = [r for r in read_log(engine.project.delegation_log).records if r.get("event") == "analyze"]
    assert all(key in line for key in SEED_FIELDS)
    assert line["decision"] == analysis["recommendation"] == "delegate" and line["score"] == analysis["score"]


@pytest.mark.anyio
async def test_the_score_stored_with_a_run_is_the_one_analyze_gives_history_included(engine: Engine) -> None:
    for _ in range(5):  # five failed 'generate' runs: the history term pulls the score down
        append_record(engine.project.delegation_log, {"event": "run", "task_type": "generate",
                                                     "verification_passed": False, "state": "failed"})
    analysis = engine.analyze(task="Add the parser", output_files=["parser.py"], task_type="generate")
    assert any(r["signal"] == "delegation history" for r in analysis["reasons"])
    use_backend(engine, ScriptedBackend().reply(files_answer({"parser.py": "x = 1\n"})))
    with anyio.fail_after(10):
        result = await engine.delegate(task="Add the parser", output_files=["parser.py"], task_type="generate")
    assert engine.store.get(result["run_id"]).data["score"] == analysis["score"]
    [line] = _lines(engine, result["run_id"])
    assert line["score"] == analysis["score"]


@pytest.mark.anyio
async def test_a_run_that_recovery_gives_up_while_rolling_back_writes_exactly_one_line(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> shared_tree.Step:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(steps, "rollback_file", broken)
    engine.ctx.runs.create("run-stuck", {"task": "t", "task_type": "generate", "max_attempts": 1, "attempt": 1,
                                         "output_files": [{"path": "out.txt", "description": ""}]})
    for event in ("start", "abort"):
        engine.ctx.runs.fire("run-stuck", event)
    with engine.store.transaction() as tx:
        tx.journal_base("run-stuck", "out.txt", previous=None)
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(10):
        for _ in range(4):
            with engine.store.transaction() as tx:
                tx.set_owner("run-stuck", None)  # the process that tried died
            await engine.resume(max_recoveries=2)
    assert engine.store.get("run-stuck").state == "failed"
    [line] = _lines(engine, "run-stuck")
    assert line["state"] == "failed" and "could not finish rolling back" in str(line["error"])
    assert line["verification_passed"] is None
