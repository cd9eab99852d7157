"""The `whole` answer form end to end through the engine (a scripted backend), the form rule as a run records it
and as the delegation log feeds it, and answer reading off the event loop (issue 22; issue 19 point 4)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation import reading
from engine.executor.forms import UNAPPLIED_LIMIT
from engine.executor.prompting import example_messages
from engine.testing.scripted import ScriptedBackend, use_backend

pytestmark = pytest.mark.anyio


async def test_a_whole_form_run_rewrites_an_existing_file_and_creates_a_new_one(engine: Engine, project_dir: Path
                                                                                ) -> None:
    (project_dir / "a.py").write_text("X = 1\n")
    answer = "a.py\n```python\nX = 2\n```\n\nb.py\n```python\nY = 3\n```\n"
    backend = ScriptedBackend().reply(answer)
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Set X to 2, add b.py with Y = 3", output_files=["a.py", "b.py"],
                                       answer_form="whole", verify="python3 -c 'import a, b'")
    assert result["state"] == "done", result["error"]
    assert (project_dir / "a.py").read_text() == "X = 2\n" and (project_dir / "b.py").read_text() == "Y = 3\n"
    request = backend.requests[0]
    assert request.schema is None and "X = 1" in request.messages[-1].content  # no grammar; the file to rewrite shown


async def test_a_whole_form_run_sends_the_shown_exchanges_between_the_system_and_the_task_on_every_attempt(
    engine: Engine, project_dir: Path,
) -> None:
    backend = ScriptedBackend().reply("a.py\n```\nX = (\n```\n", "a.py\n```\nX = 1\n```\n")
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write a.py with X = 1", output_files=["a.py"], answer_form="whole",
                                       verify="python3 -c 'import a'")
    assert result["state"] == "done" and result["attempts"] == 2
    first, second = (r.messages for r in backend.requests)
    shown = example_messages("whole")
    assert [m.role for m in first] == ["system", *(m.role for m in shown), "user"]
    assert tuple(first[1:-1]) == shown and "Write a.py with X = 1" in first[-1].content
    assert second[: len(first)] == first  # the retry repeats them byte for byte, then adds the failed turn


async def test_an_edit_form_run_sends_no_shown_exchanges(engine: Engine, project_dir: Path) -> None:
    backend = ScriptedBackend().reply("a.py\n```\nX = 1\n```\n")
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write a.py", output_files=["a.py"], answer_form="edits")
    assert result["state"] == "done", result["error"]
    assert [m.role for m in backend.requests[0].messages] == ["system", "user"]


async def test_a_whole_form_answer_that_names_another_file_is_retried_with_the_reason(
    engine: Engine, project_dir: Path,
) -> None:
    backend = ScriptedBackend().reply("c.py\n```\nX = 1\n```\n", "a.py\n```\nX = 1\n```\n")
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write a.py", output_files=["a.py"], answer_form="whole")
    assert result["state"] == "done" and result["attempts"] == 2
    retry = backend.requests[1].messages[-1].content
    assert "c.py, which is not a file you may write" in retry and "one fenced block" in retry


async def test_k_unapplied_edit_answers_in_the_log_make_the_next_small_run_whole(engine: Engine, project_dir: Path
                                                                              ) -> None:
    log = engine.project.delegation_log
    log.parent.mkdir(parents=True, exist_ok=True)
    line = {"event": "run", "backend": "fake", "model": "fake-model", "edit_answers": [False] * UNAPPLIED_LIMIT}
    log.write_text(json.dumps(line) + "\n")
    backend = ScriptedBackend().reply("a.py\n```\nX = 1\n```\n")
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write a.py", output_files=["a.py"])
    data = engine.run_view(result["run_id"])["data"]
    assert result["state"] == "done" and data["answer_form"] == "whole"
    assert "were not applied" in data["answer_form_rule"]


async def test_an_edit_run_records_which_of_its_answers_applied_in_the_log(engine: Engine, project_dir: Path) -> None:
    (project_dir / "a.py").write_text("x = 1\n")
    good = "a.py\n```\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n"
    use_backend(engine, ScriptedBackend().reply("no blocks here", good))
    with anyio.fail_after(20):
        await engine.delegate(task="x", output_files=["a.py"], answer_form="edits")
    [record] = [json.loads(line) for line in engine.project.delegation_log.read_text().splitlines()
                if json.loads(line).get("event") == "run"]
    assert record["edit_answers"] == [False, True] and record["backend"] == "fake"


async def test_the_answer_is_read_in_a_worker_thread_while_status_keeps_answering(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow read (here 1.5 s) holds no event loop: status answers meanwhile in well under a second."""
    threads: list[threading.Thread] = []
    started = anyio.Event()
    real = reading.read_answer

    def slow_read(form: str, text: str, *, outputs: Sequence[str], bases: Mapping[str, bytes | None],
                  ended: bool = True) -> dict[str, bytes]:
        threads.append(threading.current_thread())
        anyio.from_thread.run_sync(started.set)
        time.sleep(1.5)
        return real(form, text, outputs=outputs, bases=bases, ended=ended)

    monkeypatch.setattr(reading, "read_answer", slow_read)
    use_backend(engine, ScriptedBackend().reply("a.py\n```\nX = 1\n```\n"))
    waits: list[float] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            async def run() -> None:
                await engine.delegate(task="Write a.py", output_files=["a.py"], answer_form="whole")
            tg.start_soon(run)
            await started.wait()
            for _ in range(3):
                t = time.perf_counter()
                await engine.status()
                waits.append(time.perf_counter() - t)
    assert threads and threads[0] is not threading.main_thread()
    assert max(waits) < 1.0, waits
