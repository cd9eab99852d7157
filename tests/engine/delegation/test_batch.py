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
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
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


@pytest.mark.answer_form_json
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


@pytest.mark.answer_form_json
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


@pytest.mark.answer_form_json
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


@pytest.mark.answer_form_json
async def test_children_verify_one_at_a_time_unless_told_otherwise(engine: Engine, project_dir: Path) -> None:
    # mkdir is atomic: a second verify running at the same time finds the directory and fails its child.
    verify = "mkdir verifying.lock && sleep 0.2 && rmdir verifying.lock"
    use_backend(engine, ScriptedBackend(parallelism=4))
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"], "verify": verify} for i in range(4)]
    with anyio.fail_after(30):
        summary = await engine.batch({"runs": runs, "max_attempts": 1})
    assert summary["counts"] == {"done": 4}


def _logging_verify(name: str, *, meet: str | None = None) -> str:
    """A verify command that appends `start NAME` and `end NAME` to verify.log; with `meet`, it waits in between
    (bounded: 10 s, then it fails) until the verify of child `meet` has started too."""
    wait = (f"for i in $(seq 500); do grep -q 'start {meet}' verify.log && break; sleep 0.02; done; "
            f"grep -q 'start {meet}' verify.log && ") if meet else ""
    return f"echo 'start {name}' >> verify.log && {wait}echo 'end {name}' >> verify.log"


@pytest.mark.answer_form_json
async def test_parallel_verify_lets_two_childrens_verify_commands_overlap(engine: Engine, project_dir: Path) -> None:
    # Each verify waits until the other one has started: both pass only if they run at the same time.
    use_backend(engine, ScriptedBackend(parallelism=2))
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"], "verify": _logging_verify(str(i), meet=str(1 - i))}
            for i in range(2)]
    with anyio.fail_after(30):
        summary = await engine.batch({"runs": runs, "max_attempts": 1, "parallel_verify": True})
    assert summary["counts"] == {"done": 2}, summary
    log = (project_dir / "verify.log").read_text().split("\n")
    assert [line.split()[0] for line in log if line] == ["start", "start", "end", "end"]  # overlapping
    assert all(engine.store.get(c).data["verify_alone"] is False for c in
               engine.store.get(summary["batch_id"]).data["children"])


@pytest.mark.answer_form_json
async def test_by_default_childrens_verify_commands_never_overlap(engine: Engine, project_dir: Path) -> None:
    use_backend(engine, ScriptedBackend(parallelism=3))
    runs = [{"task": f"t{i}", "output_files": [f"o{i}.txt"], "verify": _logging_verify(str(i)) + " && sleep 0.05"}
            for i in range(3)]
    with anyio.fail_after(30):
        summary = await engine.batch({"runs": runs, "max_attempts": 1})
    assert summary["counts"] == {"done": 3}
    log = [line.split() for line in (project_dir / "verify.log").read_text().splitlines()]
    # Every start is followed by the end of the same verify before the next one starts.
    assert [kind for kind, _ in log] == ["start", "end"] * 3
    assert all(log[i][1] == log[i + 1][1] for i in range(0, 6, 2))


class _HoldTheRun(ScriptedBackend):
    """Holds the generation of the task `held` until `release` is set; answers every other one at once."""

    def __init__(self, held: str) -> None:
        super().__init__(parallelism=3)
        self.held = held
        self.release = anyio.Event()
        self.holding = anyio.Event()

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        if any(self.held in m.content for m in request.messages):
            self.holding.set()
            await self.release.wait()
            self.reply(files_answer({"shared.txt": "from the run\n"}))
        return await super().generate(request, on_token=on_token)


@pytest.mark.answer_form_json
async def test_a_batch_child_whose_output_another_run_holds_waits_for_that_runs_lock_and_then_proceeds(
    engine: Engine, project_dir: Path
) -> None:
    backend = _HoldTheRun("the lone run")
    use_backend(engine, backend)
    with anyio.fail_after(30):
        async with engine.background():
            lone = await engine.delegate(task="the lone run", output_files=["shared.txt"], wait=0)
            await backend.holding.wait()
            started = await engine.batch([{"task": "child on shared", "output_files": ["shared.txt"]},
                                          {"task": "child on its own", "output_files": ["own.txt"]}], wait=0)
            waiting, own = (f"{started['batch_id']}.{n}" for n in (1, 2))
            assert (await engine.result(own, wait=20))["state"] == "done"  # the batch runs its other child
            assert engine.store.get(waiting).state == "pending"  # not started: it waits for the lone run's lock
            assert not any("child on shared" in m.content for r in backend.requests for m in r.messages)
            backend.release.set()
            summary = await engine.result(started["batch_id"], wait=20)
    assert (await engine.result(lone["run_id"]))["state"] == "done"
    assert summary["state"] == "finished" and summary["counts"] == {"done": 2}, summary
    # The child started from the lone run's output (its base), with no conflict, and its answer is on disk.
    [write] = engine.store.file_writes(waiting)
    assert write.previous == b"from the run\n" and not engine.store.get(waiting).data.get("conflicts")
    assert (project_dir / "shared.txt").read_text() == "content of shared.txt\n"


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


@pytest.mark.answer_form_json
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


class _HoldAll(ScriptedBackend):
    """Holds every generation until the test ends: a child that starts never ends by itself."""

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        await anyio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_child_about_to_start_when_its_batch_is_cancelled_starts_cancelled(
    engine: Engine, project_dir: Path
) -> None:
    # The cancel lands between the batch starting a child's task and the child registering as live (the batch's
    # progress report sits between the two): before the fix, that child ran on, held, and the cancel never returned.
    use_backend(engine, _HoldAll())
    runs = [{"task": f"write {n}", "output_files": [f"{n}.txt"]} for n in ("a", "b")]
    ids: list[str] = []
    cancelled: dict[str, object] = {}
    asked = anyio.Event()

    async with anyio.create_task_group() as tg:

        async def cancel() -> None:
            cancelled.update(await engine.cancel(ids[0]))

        async def report(done: float, total: float | None, message: str) -> None:
            if ids and not asked.is_set():  # the first child's report, before it starts
                asked.set()
                tg.start_soon(cancel)
                while not engine.store.get(ids[0]).data.get("cancel_requested"):
                    await anyio.sleep(0.01)

        with anyio.fail_after(20):
            async with engine.background():
                started = await engine.batch(runs, wait=0, progress=report)
                ids.append(started["batch_id"])
                while not cancelled:
                    await anyio.sleep(0.01)
    assert asked.is_set() and cancelled["state"] == "cancelled"
    assert set(cancelled["counts"]) == {"cancelled"}  # type: ignore[call-overload]
    assert not (project_dir / "a.txt").exists() and not (project_dir / "b.txt").exists()
