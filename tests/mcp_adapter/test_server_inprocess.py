"""The `local_llm` tool through the SDK's in-process client: `Client(build_server(engine))`.

The calls go through the SDK's argument validation and the adapter as they do for a client over stdio, without a
process: delegations are answered by a ScriptedBackend (engine.testing.scripted), enable/disable by the Ollama
double. What needs a real `local-llm serve` process (stdout, signals, the session ending with the client, a restart)
is in test_server_stdio.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from engine import Engine, Project
from engine.testing.ollama_double import FakeModel, OllamaDouble
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.server import ACTIONS, build_server

__all__: list[str] = []

pytestmark = pytest.mark.anyio

DEADLINE_S = 30.0
"""Every test is in-process and scripted: anything slower than this is a hang."""

Progress = list[tuple[float, float | None, str | None]]


@asynccontextmanager
async def _client(engine: Engine) -> AsyncIterator[Client]:
    # engine.background() as `serve` has it: a delegate that returns early keeps running there.
    async with engine.background(), Client(build_server(engine)) as client:
        yield client


async def _call(client: Client, progress: Progress | None = None, **arguments: Any) -> dict[str, Any]:
    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append((done, total, message))

    result = await client.call_tool("local_llm", arguments,
                                    progress_callback=on_progress if progress is not None else None)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def _error(client: Client, **arguments: Any) -> str:
    result = await client.call_tool("local_llm", arguments)
    assert result.is_error, result.structured_content
    return result.content[0].text  # type: ignore[union-attr]


def _scripted(engine: Engine, *replies: Any) -> ScriptedBackend:
    backend = ScriptedBackend().reply(*replies)
    use_backend(engine, backend)
    return backend


async def test_the_server_lists_exactly_one_tool_with_every_action_in_its_schema(engine: Engine) -> None:
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["local_llm"]
    schema = tools[0].input_schema
    assert schema["type"] == "object" and schema["required"] == ["action"]
    assert schema["properties"]["action"]["enum"] == list(ACTIONS)
    assert {"task", "output_files", "context_files", "verify", "run_id", "wait", "llm"} <= set(schema["properties"])


async def test_bad_arguments_get_errors_that_name_the_field_and_change_nothing(
    engine: Engine, project_dir: Path
) -> None:
    backend = _scripted(engine)
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            unknown = await _error(client, action="explode")
            wrong_type = await _error(client, action="delegate", task="x", output_files=[{"path": "a.py"}],
                                      max_attempts="many")
            missing = await _error(client, action="delegate", task="write it")
            no_run = await _error(client, action="result")
            outside = await _error(client, action="delegate", task="x", output_files=[{"path": "../escape.py"}])
            absolute = await _error(client, action="analyze", task="x", files=["/etc/passwd"], output_files=["a.py"])
            unknown_run = await _error(client, action="result", run_id="run-nope", wait=0)
            bad_machine = await _error(client, action="diagram", machine="toaster")
            status = await _call(client, action="status")
    assert "action" in unknown and "'capability'" in unknown
    assert "max_attempts" in wrong_type and "integer" in wrong_type
    assert "output_files: required for action 'delegate'" in missing
    assert "run_id: required for action 'result'" in no_run
    assert "output_files[0].path" in outside
    assert "files[0]" in absolute
    assert "run-nope" in unknown_run
    assert "machine" in bad_machine
    assert status["state"] == "idle"
    assert backend.requests == [] and engine.list_runs() == []
    assert not (project_dir.parent / "escape.py").exists()


async def test_capability_enable_status_and_disable_drive_the_session_on_ollama(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            capability = await _call(client, action="capability")
            enabled = await _call(client, action="enable", llm="deepseek-coder:6.7b", backend="ollama")
            status = await _call(client, action="status")
            loaded = dict(ollama_double.loaded)
            disabled = await _call(client, action="disable")
    assert capability["can_enable"] is True and capability["ollama"]["running"] is True
    assert (enabled["state"], enabled["backend"], enabled["model"]) == ("loaded", "ollama", "deepseek-coder:6.7b")
    assert status["state"] == "loaded" and "deepseek-coder:6.7b" in loaded
    assert disabled["state"] == "idle" and ollama_double.loaded == {}


async def test_capability_lists_candidates_and_enable_of_an_embedding_model_is_a_tool_error_that_says_why(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.add_model(FakeModel("nomic-embed-text", capabilities=("embedding",)))
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            capability = await _call(client, action="capability")
            refused = await _error(client, action="enable", llm="nomic-embed-text", backend="ollama")
    assert capability["candidates"] and all("num_ctx" in c and "pulled" in c for c in capability["candidates"])
    assert {m["name"]: m.get("capabilities") for m in capability["models"]}["nomic-embed-text:latest"] == ["embedding"]
    assert "cannot generate text" in refused and "--llm " in refused
    assert ollama_double.loads == []


async def test_enable_reports_pull_and_load_progress(engine: Engine, ollama_double: OllamaDouble) -> None:
    progress: Progress = []
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            enabled = await _call(client, progress, action="enable", llm="deepseek-coder:33b", backend="ollama")
    messages = [m or "" for _, _, m in progress]
    assert enabled["state"] == "loaded"
    assert any("pull" in m.lower() for m in messages), messages
    assert any("load" in m.lower() for m in messages), messages


async def test_analyze_recommends_delegating_mechanical_work(engine: Engine) -> None:
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            analysis = await _call(client, action="analyze", task="Generate Express CRUD routes for User model",
                                   files=[], output_files=["routes/user.js"])
    assert analysis["recommendation"] == "delegate"


@pytest.mark.answer_form_json
async def test_delegate_writes_verifies_and_reports_progress_per_attempt(engine: Engine, project_dir: Path) -> None:
    backend = _scripted(engine, files_answer({"greeting.txt": "hello\n"}))
    progress: Progress = []
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            run = await _call(client, progress, action="delegate", task="Write a greeting", task_type="docs",
                              output_files=[{"path": "greeting.txt", "description": "one friendly sentence"}],
                              verify="test -s greeting.txt")
    assert run["state"] == "done" and run["verification"]["passed"] is True, run
    assert (project_dir / "greeting.txt").read_text() == "hello\n"
    assert "greeting.txt: one friendly sentence" in backend.requests[0].messages[1].content
    messages = [m or "" for _, _, m in progress]
    assert "attempt 1: generating" in messages and "attempt 1: verifying" in messages
    assert [done for done, _, _ in progress] == sorted(done for done, _, _ in progress)


@pytest.mark.answer_form_json
async def test_a_long_run_returns_its_id_and_is_collected_with_result(engine: Engine, project_dir: Path) -> None:
    backend = _scripted(engine, files_answer({"config.json": "{}\n"}))
    backend.block = anyio.Event()
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            started = await _call(client, action="delegate", task="Write the config", wait=0,
                                  output_files=[{"path": "config.json", "description": "a JSON object"}])
            still = await _call(client, action="result", run_id=started["run_id"], wait=0)
            backend.block.set()
            finished = await _call(client, action="result", run_id=started["run_id"], wait=DEADLINE_S)
    assert started["state"] not in ("done", "failed", "cancelled")
    assert still["state"] not in ("done", "failed", "cancelled")
    assert finished["state"] == "done" and finished["run_id"] == started["run_id"]
    assert (project_dir / "config.json").read_text() == "{}\n"


async def test_cancel_stops_a_run_in_flight_and_a_finished_run_cannot_be_cancelled(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / "a.txt").write_text("original\n")
    backend = _scripted(engine)
    backend.block = anyio.Event()
    generating = anyio.Event()
    backend.started.append(generating)
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            run = await _call(client, action="delegate", task="x", output_files=["a.txt"], wait=0)
            await generating.wait()
            cancelled = await _call(client, action="cancel", run_id=run["run_id"])
            again = await _error(client, action="cancel", run_id=run["run_id"])
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"] is True
    assert "finished" in again
    assert (project_dir / "a.txt").read_text() == "original\n"


async def test_runs_lists_the_runs_newest_first_and_stats_counts_them(engine: Engine) -> None:
    _scripted(engine)
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            first = await _call(client, action="delegate", task="one", output_files=["one.txt"])
            second = await _call(client, action="delegate", task="two", output_files=["two.txt"])
            runs = await _call(client, action="runs")
            newest = await _call(client, action="runs", limit=1)
            stats = await _call(client, action="stats")
    assert [r["run_id"] for r in runs["runs"]] == [second["run_id"], first["run_id"]]
    assert [r["run_id"] for r in newest["runs"]] == [second["run_id"]]
    assert stats["total"] >= 2


@pytest.mark.answer_form_json
async def test_diagram_draws_the_path_a_run_took_and_the_session_machine(engine: Engine) -> None:
    _scripted(engine)
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            run = await _call(client, action="delegate", task="x", output_files=["x.txt"])
            of_run = await _call(client, action="diagram", run_id=run["run_id"])
            session = await _call(client, action="diagram", format="dot")
    assert (of_run["machine"], of_run["run_id"], of_run["format"]) == ("delegation", run["run_id"], "mermaid")
    assert "class done current" in of_run["diagram"]
    assert session["machine"] == "session" and session["diagram"].lstrip().startswith("digraph")


async def test_with_a_damaged_database_status_answers_the_problem_and_other_actions_are_tool_errors(
    project_dir: Path,
) -> None:
    project = Project.resolve(project_dir)
    project.state_db.parent.mkdir(parents=True)
    project.state_db.write_bytes(b"this is no database\n" * 200)
    engine = Engine(project)
    try:
        with anyio.fail_after(DEADLINE_S):
            async with _client(engine) as client:
                status = await _call(client, action="status")
                runs = await _error(client, action="runs")
                delegate = await _error(client, action="delegate", task="x", output_files=["a.txt"])
                analysis = await _call(client, action="analyze", task="write docstrings", output_files=["a.py"])
                again = await _call(client, action="status")
    finally:
        engine.close()
    assert status == again and status["state"] == "unavailable"
    assert "damaged" in status["problem"] and "local-llm db move-aside" in status["fix"]
    for error in (runs, delegate):
        assert str(project.state_db) in error and "local-llm db move-aside" in error
    assert analysis["recommendation"] in ("delegate", "keep")  # what needs no database still works

STRICT = [
    ({"max_attempts": True}, "max_attempts", "valid integer"),
    ({"max_attempts": "3"}, "max_attempts", "valid integer"),
    ({"max_attempts": 2.0}, "max_attempts", "valid integer"),
    ({"allow_secrets": "true"}, "allow_secrets", "valid boolean"),
    ({"allow_secrets": 1}, "allow_secrets", "valid boolean"),
    ({"allow_config_writes": "yes"}, "allow_config_writes", "valid boolean"),
    ({"wait": "5"}, "wait", "valid number"),
    ({"wait": True}, "wait", "valid number"),
    ({"output_files": [{"path": "a.txt", "mode": "0777"}]}, "output_files.0.OutputFile.mode", "Extra inputs"),
    ({"verify": 3}, "verify", "valid string"),
]


async def test_numbers_flags_and_texts_are_strict_over_mcp(engine: Engine) -> None:
    # The SDK's lax mode took `true` for 1 attempt, "3" for 3, and "true" or 1 for a flag that sends secrets.
    backend = _scripted(engine)
    errors = []
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            for changes, _, _ in STRICT:
                errors.append(await _error(client, **{"action": "delegate", "task": "x", "output_files": ["a.txt"],
                                                      **changes}))
            limit = await _error(client, action="runs", limit=True)
            stop = await _error(client, action="disable", stop_server="yes")
            llm = await _error(client, action="enable", llm=1)
    for (_, field, says), text in zip(STRICT, errors, strict=True):
        assert f"\n{field}\n" in text and says in text, text
    assert "limit" in limit and "stop_server" in stop and "llm" in llm
    assert backend.requests == [] and engine.list_runs() == []


@pytest.mark.answer_form_json
async def test_a_task_that_reads_as_json_reaches_the_engine_as_text(engine: Engine) -> None:
    # The SDK json-parses a string sent for any field not declared `str`: "[1, 2]" became a list, "null" nothing.
    backend = _scripted(engine, files_answer({"a.txt": "1\n"}), files_answer({"b.txt": "2\n"}))
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            listed = await _call(client, action="delegate", task="[1, 2]", output_files=["a.txt"], verify="null",
                                 max_attempts=1)
            nothing = await _call(client, action="delegate", task="null", output_files=["b.txt"], model=None)
    assert (engine.list_runs()[1]["task"], engine.list_runs()[0]["task"]) == ("[1, 2]", "null")
    assert "[1, 2]" in backend.requests[0].messages[1].content
    # `verify: "null"` ran as the command `null` (not found), not as "no verify command".
    assert listed["state"] == "failed" and listed["verification"]["exit_code"] == 127
    assert nothing["state"] == "done"


@pytest.mark.answer_form_json
async def test_protected_outputs_are_refused_before_a_run_and_configuration_needs_the_opt_in(
    engine: Engine, project_dir: Path
) -> None:
    backend = _scripted(engine, files_answer({".mcp.json": "{}\n"}))
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            schema = (await client.list_tools()).tools[0].input_schema["properties"]["allow_config_writes"]
            hook = await _error(client, action="delegate", task="x", output_files=[".git/hooks/pre-commit"],
                                allow_config_writes=True)
            config = await _error(client, action="delegate", task="x", output_files=["./.mcp.json"])
            refused_runs = engine.list_runs()
            allowed = await _call(client, action="delegate", task="x", output_files=["./.mcp.json"],
                                  allow_config_writes=True)
    assert schema["type"] == "boolean" and schema["default"] is False
    assert "output_files[0].path: '.git/hooks/pre-commit' is protected by the rule `.git/**" in hook
    assert "never an output" in hook
    assert "rule `.mcp.json`" in config and "allow_config_writes=true" in config
    assert refused_runs == [] and len(backend.requests) == 1
    assert allowed["state"] == "done" and allowed["files"][0]["path"] == ".mcp.json"
    assert (project_dir / ".mcp.json").read_text() == "{}\n" and not (project_dir / ".git").exists()


async def test_enable_takes_a_slots_setting_and_refuses_one_that_is_not_a_positive_integer(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            zero = await _error(client, action="enable", llm="deepseek-coder:6.7b", slots=0)
            text = await _error(client, action="enable", llm="deepseek-coder:6.7b", slots="2")
            idle = await _call(client, action="status")
            enabled = await _call(client, action="enable", llm="deepseek-coder:6.7b", slots=2)
            status = await _call(client, action="status")
    assert "slots" in zero and "greater than or equal to 1" in zero
    assert "slots" in text and "integer" in text
    assert idle["state"] == "idle"
    assert (enabled["slots"], enabled["slots_from"]) == (2, "setting") and status["slots"] == 2


@pytest.mark.answer_form_json
async def test_a_conflict_reaches_the_client_as_a_structured_field_of_a_compact_result(
    engine: Engine, project_dir: Path
) -> None:
    # Claude Code shows the model only a result's structured content: what the orchestrator must act on (here a
    # conflict) is a field there, as the engine's view has it, and neither the prompt nor the answer comes along.
    (project_dir / "a.py").write_text("seen by the model\n")
    (project_dir / "context.py").write_text("CONTEXT_MARKER = 1\n" * 50)
    backend = _scripted(engine, files_answer({"a.py": "ANSWER_MARKER = 2\n" * 50}))
    backend.block = anyio.Event()
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            started = await client.call_tool("local_llm", {
                "action": "delegate", "task": "rewrite a.py", "output_files": [{"path": "a.py"}],
                "context_files": ["context.py"], "verify": "true", "wait": 0})
            await backend.wait_active(1)
            (project_dir / "a.py").write_text("the person's edit\n")
            backend.block.set()
            finished = await client.call_tool("local_llm", {"action": "result", "run_id":
                                                            started.structured_content["run_id"], "wait": DEADLINE_S})
            view = await engine.result(started.structured_content["run_id"])
    assert not started.is_error and started.structured_content["conflicts"] == []
    result = finished.structured_content
    assert result is not None and not finished.is_error
    assert result["state"] == "failed"
    assert result["conflicts"] == [{"path": "a.py", "found": "changed", "during": "writing",
                                    "kept_at": f".claude/workflow/conflicts/{result['run_id']}/a.py"}]
    assert result == view  # the engine's view, unchanged
    assert {"verification", "error", "thinking_tokens", "prompt_overflow", "files_skipped"} <= set(result)
    encoded = json.dumps(result)
    assert "CONTEXT_MARKER" not in encoded and "ANSWER_MARKER" not in encoded
    assert len(encoded) < 2048, encoded
    assert (project_dir / "a.py").read_text() == "the person's edit\n"


@pytest.mark.answer_form_json
async def test_the_batch_action_answers_with_one_line_per_child_and_result_takes_the_batch_id(
    engine: Engine, project_dir: Path
) -> None:
    use_backend(engine, ScriptedBackend(parallelism=2))
    runs = [{"task": f"write {n}", "output_files": [{"path": f"{n}.txt"}]} for n in ("a", "b")]
    with anyio.fail_after(DEADLINE_S):
        async with _client(engine) as client:
            progress: Progress = []
            summary = await _call(client, progress, action="batch", runs=runs, max_parallel=2)
            again = await _call(client, action="result", run_id=summary["batch_id"])
            diagram = await _call(client, action="diagram", machine="batch")
            refused = await _error(client, action="batch")
    assert summary["state"] == "finished" and summary["children"] == ["a.txt done 1", "b.txt done 1"]
    assert again == summary
    assert any(m and m.startswith("2 of 2 done") for *_, m in progress)
    assert "children_ended" in diagram["diagram"]
    assert "runs: required for action 'batch'" in refused
