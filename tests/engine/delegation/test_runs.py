from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.context_files import SecretFile
from engine.delegation.metrics import read_log
from engine.errors import InvalidArgument, UserError
from engine.executor.backends.base import ChatMessage, GenerateResult
from engine.executor.backends.ollama import OllamaBackend
from engine.executor.tokens import estimate_prompt
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from states import SESSION_ID
from tests.markers import needs_embedded


def _events(engine: Engine, run_id: str) -> list[str]:
    return [e.event for e in engine.store.events(run_id)]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_run_without_verify_is_done_after_an_atomic_journaled_write(engine: Engine, project_dir: Path) -> None:
    backend = ScriptedBackend().reply(files_answer({"src/hello.py": "print('hi')\n"}))
    use_backend(engine, backend)
    with anyio.fail_after(10):
        result = await engine.delegate(task="Write hello", output_files=[{"path": "src/hello.py",
                                                                           "description": "prints hi"}])
    assert result["state"] == "done" and result["attempts"] == 1 and result["error"] is None
    assert (project_dir / "src" / "hello.py").read_text() == "print('hi')\n"
    assert _events(engine, result["run_id"]) == ["create", "start", "packed", "generated", "written"]
    assert result["files"] == [{"path": "src/hello.py", "status": "written", "existed": False, "bytes": 12,
                               "added": 1, "removed": 0, "changed": ["(top level)"]}]
    request = backend.requests[0]
    assert request.schema is not None and "src/hello.py: prints hi" in request.messages[1].content
    line = read_log(engine.project.delegation_log).records[-1]
    assert {k: line[k] for k in ("event", "run_id", "task_type", "decision", "verification_passed", "attempts")} == {
        "event": "run", "run_id": result["run_id"], "task_type": "generate", "decision": "delegate",
        "verification_passed": None, "attempts": 1}
    for key in ("timestamp", "task", "score", "tokens_generated", "time_seconds", "model", "prompt_tokens", "files"):
        assert key in line


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fields", "error", "field"),
    [
        ({"output_files": [{"path": "../escape.py"}]}, InvalidArgument, "output_files[0].path"),
        ({"output_files": [{"path": "/tmp/abs.py"}]}, InvalidArgument, "output_files[0].path"),
        ({"output_files": []}, InvalidArgument, "output_files"),
        ({"task_type": "poetry"}, InvalidArgument, "task_type"),
        ({"max_attempts": 0}, InvalidArgument, "max_attempts"),
        ({"context_files": ["missing.py"]}, InvalidArgument, "context_files[0]"),
    ],
)
async def test_bad_arguments_are_refused_before_a_run_exists(
    engine: Engine, fields: dict[str, object], error: type[Exception], field: str
) -> None:
    use_backend(engine, ScriptedBackend())
    args: dict[str, object] = {"task": "x", "output_files": [{"path": "ok.py"}], **fields}
    with pytest.raises(error) as caught:
        await engine.delegate(**args)
    assert caught.value.field == field  # type: ignore[attr-defined]
    assert engine.list_runs() == []


@pytest.mark.anyio
async def test_cancelling_during_generation_rolls_back_and_ends_cancelled(engine: Engine, project_dir: Path) -> None:
    (project_dir / "a.txt").write_bytes(b"original")
    backend = ScriptedBackend()
    backend.block = anyio.Event()
    started = anyio.Event()
    backend.started.append(started)
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            first = await engine.delegate(task="x", output_files=["a.txt"], wait=0)
            await started.wait()
            assert engine.store.get(first["run_id"]).state == "delegating"
            cancelled = await engine.cancel(first["run_id"])
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"]
    assert (project_dir / "a.txt").read_bytes() == b"original"
    assert _events(engine, first["run_id"])[-3:] == ["cancel_requested", "cancel", "rolled_back"]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_cancelling_during_verify_kills_the_command_and_restores_the_files(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / "a.txt").write_bytes(b"before\n")
    use_backend(engine, ScriptedBackend().reply(files_answer({"a.txt": "after\n"})))
    with anyio.fail_after(15):
        async with engine.background():
            run = await engine.delegate(task="x", output_files=["a.txt"], verify="echo $$ > verify.pid; sleep 30",
                                        wait=0)
            while not (project_dir / "verify.pid").exists() or not (project_dir / "verify.pid").read_text():
                await anyio.sleep(0.02)
            result = await engine.cancel(run["run_id"])
    assert result["state"] == "cancelled"
    assert (project_dir / "a.txt").read_bytes() == b"before\n"
    with pytest.raises(ProcessLookupError):
        os.kill(int((project_dir / "verify.pid").read_text()), 0)


@pytest.mark.anyio
async def test_a_pending_run_is_cancelled_without_generating(engine: Engine) -> None:
    backend = ScriptedBackend()
    use_backend(engine, backend)
    engine.ctx.runs.create("run-p", {"task": "x", "task_type": "generate", "output_files": [{"path": "p.txt"}],
                                 "max_attempts": 1, "verify": ""})
    with anyio.fail_after(10):
        result = await engine.cancel("run-p")
    assert result["state"] == "cancelled" and backend.requests == []


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_runs_that_share_an_output_file_never_generate_at_the_same_time(engine: Engine) -> None:
    backend = ScriptedBackend(parallelism=4)
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            a = await engine.delegate(task="a", output_files=["shared.txt"], wait=0)
            b = await engine.delegate(task="b", output_files=["shared.txt"], wait=0)
            c = await engine.delegate(task="c", output_files=["other.txt"], wait=0)
            await backend.wait_active(2)
            states = {r["run_id"]: engine.store.get(r["run_id"]).state for r in (a, b, c)}
            backend.block.set()
            results = [await engine.result(r["run_id"], wait=10) for r in (a, b, c)]
    assert sorted(states.values()) == ["delegating", "delegating", "pending"]
    assert backend.max_active == 2
    assert [r["state"] for r in results] == ["done", "done", "done"]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_generations_in_flight_follow_the_backends_parallelism(engine: Engine) -> None:
    backend = ScriptedBackend(parallelism=1)
    backend.block = anyio.Event()
    use_backend(engine, backend)
    at_the_slot: list[str | None] = []
    all_at_the_slot = anyio.Event()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        # A run reports "generating" after packing its prompt, just before it asks for the generation slot.
        if message is not None and message.endswith("generating"):
            at_the_slot.append(message)
            if len(at_the_slot) == 3:
                all_at_the_slot.set()

    with anyio.fail_after(10):
        async with engine.background():
            runs = [await engine.delegate(task=f"t{i}", output_files=[f"f{i}.txt"], wait=0, progress=progress)
                    for i in range(3)]
            await all_at_the_slot.wait()
            await backend.wait_active(1)
            assert all("prompt" in engine.store.get(r["run_id"]).data for r in runs)
            assert backend.active == 1 and len(backend.requests) == 1
            backend.block.set()
            results = [await engine.result(r["run_id"], wait=10) for r in runs]
    assert backend.max_active == 1 and all(r["state"] == "done" for r in results)


@pytest.mark.anyio
async def test_an_answer_cut_at_the_token_limit_is_retried_and_then_fails(engine: Engine, project_dir: Path) -> None:
    cut = GenerateResult(text='{"files": [{"path": "a.txt", "content": "tru', prompt_tokens=10,
                         completion_tokens=512, done_reason="length", total_seconds=0.1)
    use_backend(engine, ScriptedBackend().reply(cut, cut))
    with anyio.fail_after(10):
        result = await engine.delegate(task="x", output_files=["a.txt"], max_attempts=2)
    assert result["state"] == "failed" and "token limit" in result["error"]
    assert not (project_dir / "a.txt").exists()
    assert _events(engine, result["run_id"]).count("generation_failed") == 2


@pytest.mark.anyio
async def test_the_session_shows_delegating_while_runs_are_in_flight(engine: Engine) -> None:
    engine.ctx.sessions.ensure(SESSION_ID)
    engine.ctx.sessions.fire(SESSION_ID, "enable")
    engine.ctx.sessions.fire(SESSION_ID, "ready")
    backend = ScriptedBackend()
    backend.block = anyio.Event()
    started = anyio.Event()
    backend.started.append(started)
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            run = await engine.delegate(task="x", output_files=["s.txt"], wait=0)
            await started.wait()
            during = engine.session.record().state
            backend.block.set()
            await engine.result(run["run_id"], wait=10)
    assert (during, engine.session.record().state) == ("delegating", "loaded")


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_session_that_is_not_loaded_does_not_fail_the_run(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend().reply(files_answer({"x.txt": "x"})))
    with anyio.fail_after(10):
        result = await engine.delegate(task="x", output_files=["x.txt"])
    assert result["state"] == "done" and engine.session.record().state == "idle"


@pytest.mark.anyio
async def test_without_an_executor_the_run_fails_with_the_reason_and_touches_nothing(
    engine: Engine, project_dir: Path
) -> None:
    async def no_executor(*, progress: object = None) -> object:
        raise UserError("no backend: install Ollama or the embedded extra")

    engine.session.executor = no_executor  # type: ignore[attr-defined]
    with anyio.fail_after(10):
        result = await engine.delegate(task="x", output_files=["x.txt"])
    assert result["state"] == "failed" and "install Ollama" in result["error"]
    assert not (project_dir / "x.txt").exists()


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_progress_is_reported_per_attempt_and_at_verify(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend().reply(files_answer({"p.txt": "p"})))
    seen: list[str] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append(message)

    with anyio.fail_after(10):
        await engine.delegate(progress=progress, task="x", output_files=["p.txt"], verify="true")
    assert seen[0] == "attempt 1: generating" and "attempt 1: verifying" in seen


# -- against the Ollama test double (real HTTP) -------------------------------------------------------------------


def _ollama(engine: Engine, double: OllamaDouble, *, num_ctx: int = 4096) -> OllamaBackend:
    backend = OllamaBackend(double.url)
    use_backend(engine, backend, model="deepseek-coder:6.7b", num_ctx=num_ctx)
    return backend


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_failing_verify_retries_with_the_error_and_the_same_prompt_prefix(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble
) -> None:
    backend = _ollama(engine, ollama_double)
    (project_dir / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    ollama_double.reply(files_answer({"test_calc.py": "assert False, 'wrong sum 41'\n"}))
    ollama_double.reply(files_answer({"test_calc.py": "assert 1 + 1 == 2\n"}))
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write tests for calc.py", task_type="test", context_files=["calc.py"],
                                       output_files=[{"path": "test_calc.py"}], verify="python3 test_calc.py")
    await backend.aclose()
    assert result["state"] == "done" and result["attempts"] == 2 and result["verification"]["passed"]
    first, second = ollama_double.bodies("/api/chat")[-2:]
    assert second["messages"][:2] == first["messages"]  # byte-identical prefix: the prompt cache is reused
    assert second["messages"][2] == {"role": "assistant", "content": files_answer(
        {"test_calc.py": "assert False, 'wrong sum 41'\n"})}
    assert second["messages"][3]["role"] == "user" and "wrong sum 41" in second["messages"][3]["content"]
    assert first["format"]["properties"]["files"]["items"]["properties"]["path"]["enum"] == ["test_calc.py"]
    assert "def add(a, b)" in first["messages"][1]["content"]
    assert (project_dir / "test_calc.py").read_text() == "assert 1 + 1 == 2\n"


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_the_last_failed_attempt_rolls_every_file_back_byte_for_byte(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble
) -> None:
    backend = _ollama(engine, ollama_double)
    original = b"\xef\xbb\xbfkeep me\r\n\x00\xff no trailing newline"
    (project_dir / "existing.cfg").write_bytes(original)
    for n in range(2):
        ollama_double.reply(files_answer({"existing.cfg": f"attempt {n}", "brand/new.txt": f"new {n}"}))
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["existing.cfg", "brand/new.txt"],
                                       verify="echo 'still broken' >&2; exit 1", max_attempts=2)
    await backend.aclose()
    assert result["state"] == "failed" and result["attempts"] == 2
    # The output once (in verification), not again in the error.
    assert "still broken" in result["verification"]["output_tail"] and "still broken" not in result["error"]
    assert "exit code 1" in result["error"] and "rolled back" in result["error"]
    assert (project_dir / "existing.cfg").read_bytes() == original
    assert not (project_dir / "brand" / "new.txt").exists()
    assert {f["path"]: f["status"] for f in result["files"]} == {"existing.cfg": "rolled_back",
                                                                  "brand/new.txt": "rolled_back"}


@pytest.mark.anyio
async def test_path_traversal_and_secret_files_are_refused_before_anything_is_sent(
    engine: Engine, project_dir: Path, tmp_path: Path, ollama_double: OllamaDouble
) -> None:
    _ollama(engine, ollama_double)
    (project_dir / ".env").write_text("API_KEY=hunter2\n")
    (project_dir / "out").symlink_to(tmp_path)
    with pytest.raises(InvalidArgument, match=r"output_files\[0\]\.path: expected a relative path inside"):
        await engine.delegate(task="x", output_files=[{"path": "../../etc/cron.d/x"}])
    with pytest.raises(InvalidArgument, match="symlink"):
        await engine.delegate(task="x", output_files=[{"path": "out/escape.py"}])
    with pytest.raises(SecretFile, match=r"context_files\[0\]: '.env' looks like a secret"):
        await engine.delegate(task="x", context_files=[".env"], output_files=["a.py"])
    assert ollama_double.bodies("/api/chat") == [] and engine.list_runs() == []


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_secret_file_is_sent_only_when_explicitly_allowed(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble
) -> None:
    backend = _ollama(engine, ollama_double)
    (project_dir / ".env").write_text("API_KEY=hunter2\n")
    ollama_double.reply(files_answer({"config.py": "KEY = 'x'\n"}))
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", context_files=[".env"], output_files=["config.py"],
                                       allow_secrets=True)
    await backend.aclose()
    assert result["state"] == "done"
    assert "hunter2" in ollama_double.bodies("/api/chat")[-1]["messages"][1]["content"]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_context_too_large_for_num_ctx_is_reported_in_files_skipped(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble
) -> None:
    backend = _ollama(engine, ollama_double, num_ctx=2048)
    (project_dir / "model.py").write_text("class Model:\n    pass\n")
    (project_dir / "big.sql").write_text("INSERT INTO t VALUES (1);\n" * 4000)
    ollama_double.reply(files_answer({"api.py": "import model\n"}))
    with anyio.fail_after(20):
        result = await engine.delegate(task="Write api.py using model.py", context_files=["big.sql", "model.py"],
                                       output_files=["api.py"])
    await backend.aclose()
    assert result["state"] == "done"
    assert [s["path"] for s in result["files_skipped"]] == ["big.sql"]
    body = ollama_double.bodies("/api/chat")[-1]
    assert body["options"]["num_ctx"] == 2048
    assert "class Model" in json.dumps(body["messages"])
    # The answer gets what the prompt leaves, by the same count: together they fit num_ctx.
    prompt = estimate_prompt([ChatMessage(m["role"], m["content"]) for m in body["messages"]])
    assert prompt + body["options"]["num_predict"] <= 2048 and body["options"]["num_predict"] >= 256


@pytest.mark.anyio
async def test_an_answer_that_ignores_the_schema_is_read_from_fenced_code(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble
) -> None:
    backend = _ollama(engine, ollama_double)
    ollama_double.reply("Here you go:\n\n```python\ndef f():\n    return 1\n```\n")
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["f.py"],
                                       verify="python3 -c 'import f; assert f.f() == 1'")
    await backend.aclose()
    assert result["state"] == "done"
    assert (project_dir / "f.py").read_text() == "def f():\n    return 1\n"


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_wait_returns_early_and_result_waits_for_the_end(engine: Engine) -> None:
    backend = ScriptedBackend().reply(files_answer({"w.txt": "w"}))
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(10):
        async with engine.background():
            early = await engine.delegate(task="x", output_files=["w.txt"], wait=0.05)
            assert early["state"] in ("pending", "delegating")
            backend.block.set()
            final = await engine.result(early["run_id"], wait=10)
    assert final["state"] == "done" and final["run_id"] == early["run_id"]


# -- the real embedded model (llama.cpp + SmolLM2-135M) -------------------------------------------------------------


@needs_embedded
@pytest.mark.answer_form_json  # the schema path: the embedded model's default form is whole now
@pytest.mark.anyio
async def test_a_real_delegation_on_the_embedded_model_writes_through_the_schema_and_verifies(
    engine: Engine, project_dir: Path
) -> None:
    with anyio.fail_after(240):
        await engine.enable(llm=True, backend="embedded")
        result = await engine.delegate(
            task="Write a greeting for the README", task_type="docs",
            output_files=[{"path": "docs/greeting.md", "description": "one friendly sentence"}],
            verify="test -e docs/greeting.md && echo verified-by-sh", max_attempts=3,
        )
    assert result["state"] == "done", result["error"]
    assert result["verification"]["passed"] and "verified-by-sh" in result["verification"]["output_tail"]
    assert result["tokens_generated"] > 0 and result["prompt_tokens"] > 0
    record = engine.store.get(result["run_id"])
    answer = json.loads(record.data["last_answer"])  # the answer came back as schema JSON, not free text
    written = {f["path"]: f["content"] for f in answer["files"]}
    assert list(written) == ["docs/greeting.md"]
    assert (project_dir / "docs" / "greeting.md").read_text() == written["docs/greeting.md"]
    assert [e.event for e in engine.store.events(result["run_id"])][-3:] == ["generated", "written", "passed"]
    assert read_log(engine.project.delegation_log).records[-1]["verification_passed"] is True


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_cancelling_a_finished_run_is_an_error_and_changes_nothing(engine: Engine, project_dir: Path) -> None:
    use_backend(engine, ScriptedBackend().reply(files_answer({"f.txt": "kept"})))
    with anyio.fail_after(10):
        done = await engine.delegate(task="x", output_files=["f.txt"])
        before = _events(engine, done["run_id"])
        with pytest.raises(UserError, match="has finished in state 'done'"):
            await engine.cancel(done["run_id"])
    assert _events(engine, done["run_id"]) == before
    assert (project_dir / "f.txt").read_text() == "kept"
