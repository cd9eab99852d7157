"""Batches (states/batch.py, engine/delegation/batch.py): one call spreads a mechanical job over many child runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation import batch as batch_module
from engine.delegation.metrics import read_log
from engine.errors import InvalidArgument
from engine.executor.backends.base import GenerateRequest, GenerateResult, TokenCallback
from engine.testing.scripted import ScriptedBackend, use_backend
from states import BATCH, DELEGATION

pytestmark = pytest.mark.anyio


def _sources(root: Path, count: int) -> None:
    (root / "src").mkdir(exist_ok=True)
    for i in range(count):
        (root / "src" / f"mod{i:02d}.py").write_text(f"def f{i}() -> int:\n    return {i}\n")


def _tokens(value: object) -> int:
    return math.ceil(len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) / 4)


TEMPLATE = {"template": {"task": "Write pytest tests for {path}", "task_type": "test",
                         "output": "tests/test_{stem}.py"}, "glob": "src/*.py"}


async def test_a_twenty_child_template_batch_runs_four_at_a_time_and_ends_with_a_compact_summary(
    engine: Engine, project_dir: Path
) -> None:
    _sources(project_dir, 20)
    backend = ScriptedBackend(parallelism=4, latency=0.05)
    use_backend(engine, backend)
    progress: list[str] = []

    async def report(done: float, total: float | None, message: str) -> None:
        progress.append(message)

    with anyio.fail_after(30):
        summary = await engine.batch(TEMPLATE, progress=report)
    assert summary["state"] == "finished" and summary["total"] == 20 and summary["counts"] == {"done": 20}
    assert summary["children"][0] == "tests/test_mod00.py done 1" and len(summary["children"]) == 20
    assert backend.max_active == 4
    assert all((project_dir / "tests" / f"test_mod{i:02d}.py").exists() for i in range(20))
    assert _tokens(summary) <= 400
    assert progress[-1].startswith("20 of 20 done")
    child = engine.store.get(f"{summary['batch_id']}.7")
    assert child.kind == DELEGATION.kind and child.state == "done"
    assert child.data["batch_id"] == summary["batch_id"]
    assert any("src/mod06.py" in r.messages[1].content for r in backend.requests)  # the template's context file


async def test_the_batch_and_its_children_are_logged_once_and_stats_count_each_run_once(engine: Engine,
                                                                                        project_dir: Path) -> None:
    _sources(project_dir, 3)
    use_backend(engine, ScriptedBackend(parallelism=2))
    with anyio.fail_after(20):
        summary = await engine.batch(TEMPLATE)
    records = read_log(engine.project.delegation_log).records
    runs = [r for r in records if r["event"] == "run"]
    assert [r["batch_id"] for r in runs] == [summary["batch_id"]] * 3
    assert [r["batch_id"] for r in records if r["event"] == "batch"] == [summary["batch_id"]]
    stats = engine.stats()
    assert stats["delegated"] == 3 and stats["batches"]["count"] == 1 and stats["batches"]["child_runs"] == 3
    assert stats["batches"]["recent"][summary["batch_id"]]["counts"] == {"done": 3}


async def test_two_children_that_write_one_file_are_refused_before_anything_exists(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend())
    runs = [{"task": "a", "output_files": ["out.py"]}, {"task": "b", "output_files": [{"path": "./out.py"}]}]
    with pytest.raises(InvalidArgument) as caught:
        await engine.batch(runs)
    assert caught.value.field == "runs[1].output_files[0].path" and "runs[0]" in str(caught.value)
    assert engine.store.machines() == []


async def test_a_template_whose_files_expand_to_one_output_is_refused_with_what_it_expanded(
    engine: Engine, project_dir: Path
) -> None:
    _sources(project_dir, 3)
    with pytest.raises(InvalidArgument) as caught:
        await engine.batch({"template": {"task": "t {path}", "output": "tests/test_all.py"}, "glob": "src/*.py"})
    assert caught.value.field == "template.output" and "src/mod00.py" in str(caught.value)
    with pytest.raises(InvalidArgument) as nothing:
        await engine.batch({"template": {"task": "t", "output": "x_{stem}"}, "glob": "nowhere/*.py"})
    assert nothing.value.field == "glob"


async def test_a_bad_child_is_refused_naming_its_place_in_the_list(engine: Engine) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await engine.batch([{"task": "ok", "output_files": ["a.py"]}, {"task": "", "output_files": ["b.py"]}])
    assert caught.value.field == "runs[1].task"


class _HoldAfterFirst(ScriptedBackend):
    """Answers the first generation, holds every later one until `release` is set."""

    def __init__(self) -> None:
        super().__init__(parallelism=1)
        self.release = anyio.Event()
        self.holding = anyio.Event()

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        if self.requests:
            self.holding.set()
            await self.release.wait()
        return await super().generate(request, on_token=on_token)


async def test_cancelling_a_batch_rolls_back_unfinished_children_and_keeps_finished_ones(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / "b.txt").write_text("original b\n")
    backend = _HoldAfterFirst()
    use_backend(engine, backend)
    runs = [{"task": f"write {n}", "output_files": [f"{n}.txt"]} for n in ("a", "b", "c")]
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.batch(runs, wait=0)
            await backend.holding.wait()
            running = await engine.result(started["batch_id"])
            assert running["state"] == "running" and running["counts"] == {"delegating": 1, "done": 1, "pending": 1}
            summary = await engine.cancel(started["batch_id"])
    assert summary["state"] == "cancelled"
    assert summary["children"] == ["a.txt done 1", "b.txt cancelled 1", "c.txt cancelled 0"]
    assert (project_dir / "a.txt").exists() and (project_dir / "b.txt").read_text() == "original b\n"
    assert not (project_dir / "c.txt").exists()


async def test_children_verify_one_at_a_time_unless_told_otherwise(engine: Engine, project_dir: Path) -> None:
    # mkdir is atomic: a second verify running at the same time finds the directory and fails its child.
    verify = "mkdir verifying.lock && sleep 0.2 && rmdir verifying.lock"
    use_backend(engine, ScriptedBackend(parallelism=4))
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"], "verify": verify} for i in range(4)]
    with anyio.fail_after(30):
        summary = await engine.batch({"runs": runs, "max_attempts": 1})
    assert summary["counts"] == {"done": 4}


async def test_the_failure_limit_stops_the_batch_and_cancels_the_children_not_started(engine: Engine) -> None:
    backend = ScriptedBackend(parallelism=1).reply("not json", "not json either")
    use_backend(engine, backend)
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"]} for i in range(4)]
    with anyio.fail_after(20):
        summary = await engine.batch({"runs": runs, "max_attempts": 1, "max_failures": 2})
    assert summary["state"] == "stopped" and summary["counts"] == {"failed": 2, "cancelled": 2}
    assert "2 children failed" in summary["stop_reason"]
    assert len(backend.requests) == 2


class _GoesAway(ScriptedBackend):
    answering: bool = False

    async def version(self) -> str | None:
        return "scripted" if self.answering else None


async def test_a_backend_that_does_not_answer_pauses_the_batch_until_it_does(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "PAUSE_POLL_S", 0.02)
    backend = _GoesAway(parallelism=2)
    use_backend(engine, backend)
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"]} for i in range(2)]
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.batch(runs, wait=0)
            while engine.store.get(started["batch_id"]).state != "paused":
                await anyio.sleep(0.01)
            paused = await engine.result(started["batch_id"])
            assert paused["paused"] == "fake does not answer" and backend.requests == []
            backend.answering = True
            summary = await engine.result(started["batch_id"], wait=15)
    assert summary["state"] == "finished" and summary["counts"] == {"done": 2}
    events = [e.event for e in engine.store.events(started["batch_id"])]
    assert events == ["create", "start", "pause", "unpause", "children_ended"]


async def test_the_batch_machine_is_declared_with_terminal_states_that_stay_terminal() -> None:
    assert BATCH.terminal == {"finished", "stopped", "cancelled"}
    assert all(not set(t.source) & BATCH.terminal for t in BATCH.transitions)
