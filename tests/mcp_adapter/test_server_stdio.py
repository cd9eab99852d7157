"""A real MCP client (the SDK's stdio client) talking to `local-llm serve` started as a subprocess.

Ollama cannot be installed here: the Ollama cases run against engine/testing/ollama_double.py, a test double of Ollama's
HTTP API built from its documented fields. The embedded cases use the real llama.cpp model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from engine.testing.ollama_double import OllamaDouble
from mcp_adapter.server import ACTIONS
from tests.markers import needs_embedded

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:9"  # discard port: nothing answers, so no Ollama is found


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {"LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": UNREACHABLE, "PATH": os.environ.get("PATH", "")}
    env.update(extra)
    return env


@asynccontextmanager
async def _client(project: Path, **env: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_adapter", "serve"], env=_env(project, **env), cwd=str(REPO)
    )
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


async def _call(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("local_llm", arguments)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def _error(client: Client, **arguments: Any) -> str:
    result = await client.call_tool("local_llm", arguments)
    assert result.is_error, result.structured_content
    return result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_server_lists_exactly_one_tool_with_every_action_in_its_schema(project_dir: Path) -> None:
    with anyio.fail_after(60):
        async with _client(project_dir) as client:
            tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["local_llm"]
    schema = tools[0].input_schema
    assert schema["type"] == "object" and schema["required"] == ["action"]
    assert schema["properties"]["action"]["enum"] == list(ACTIONS)
    assert {"task", "output_files", "context_files", "verify", "run_id", "wait", "llm"} <= set(schema["properties"])


@pytest.mark.anyio
async def test_bad_arguments_get_errors_that_name_the_field_and_the_server_survives(project_dir: Path) -> None:
    with anyio.fail_after(60):
        async with _client(project_dir) as client:
            unknown = await _error(client, action="explode")
            wrong_type = await _error(client, action="delegate", task="x", output_files=[{"path": "a.py"}],
                                      max_attempts="many")
            missing = await _error(client, action="delegate", task="write it")
            no_run = await _error(client, action="result")
            outside = await _error(client, action="delegate", task="x", output_files=[{"path": "../escape.py"}])
            absolute = await _error(client, action="analyze", task="x", files=["/etc/passwd"], output_files=["a.py"])
            unknown_run = await _error(client, action="result", run_id="run-nope", wait=0)
            status = await _call(client, action="status")
    assert "action" in unknown and "'capability'" in unknown
    assert "max_attempts" in wrong_type and "integer" in wrong_type
    assert "output_files: required for action 'delegate'" in missing
    assert "run_id: required for action 'result'" in no_run
    assert "output_files[0].path" in outside
    assert "files[0]" in absolute
    assert "run-nope" in unknown_run
    assert status["state"] == "idle"
    assert not (project_dir.parent / "escape.py").exists()


@needs_embedded
@pytest.mark.anyio
async def test_every_action_works_over_stdio_on_the_embedded_model(project_dir: Path) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(240):
        async with _client(project_dir, LOCAL_LLM_BACKEND="embedded") as client:
            capability = await _call(client, action="capability")
            enabled = await _call(client, action="enable", llm=True)
            status = await _call(client, action="status")
            analysis = await _call(client, action="analyze", task="Generate Express CRUD routes for User model",
                                   files=[], output_files=["routes/user.js"])
            result = await client.call_tool(
                "local_llm",
                {"action": "delegate", "task": "Write a short greeting for the README", "task_type": "docs",
                 "output_files": [{"path": "greeting.txt", "description": "one friendly sentence"}],
                 "verify": "test -s greeting.txt", "wait": 120},
                progress_callback=on_progress,
            )
            assert not result.is_error, result.content
            run = result.structured_content
            collected = await _call(client, action="result", run_id=run["run_id"], wait=5)
            runs = await _call(client, action="runs")
            stats = await _call(client, action="stats")
            diagram = await _call(client, action="diagram", run_id=run["run_id"])
            cancel_done = await _error(client, action="cancel", run_id=run["run_id"])
            disabled = await _call(client, action="disable")

    assert capability["backend"] == "embedded" and capability["can_enable"] is True
    assert enabled["state"] == "loaded" and status["state"] == "loaded" and status["backend"] == "embedded"
    assert analysis["recommendation"] == "delegate"
    assert run["state"] == "done", run
    assert run["verification"]["passed"] is True
    assert run["tokens_generated"] > 0
    assert (project_dir / "greeting.txt").read_text().strip()
    assert collected["state"] == "done" and collected["run_id"] == run["run_id"]
    assert [r["run_id"] for r in runs["runs"]] == [run["run_id"]]
    assert stats["total"] >= 1
    assert "class done current" in diagram["diagram"]
    assert "finished" in cancel_done
    assert disabled["state"] == "idle"
    assert progress, "no progress notifications during delegate"
    assert any("attempt" in (m or "") for _, _, m in progress)
    assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)


@pytest.mark.anyio
async def test_a_long_run_returns_its_id_and_is_collected_with_result(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    with anyio.fail_after(90):
        async with _client(project_dir, OLLAMA_HOST=ollama_double.host, LOCAL_LLM_BACKEND="ollama") as client:
            await _call(client, action="enable", llm="deepseek-coder:6.7b")
            started = await _call(
                client, action="delegate", task="Write the config", wait=0.5,
                output_files=[{"path": "config.json", "description": "a JSON object"}],
                verify=f"while [ ! -e {gate} ]; do sleep 0.05; done",
            )
            assert started["state"] not in ("done", "failed", "cancelled")
            still = await _call(client, action="result", run_id=started["run_id"], wait=0)
            gate.touch()
            finished = await _call(client, action="result", run_id=started["run_id"], wait=60)
    assert still["state"] not in ("done", "failed", "cancelled")
    assert finished["state"] == "done", finished
    assert finished["run_id"] == started["run_id"]
    assert (project_dir / "config.json").exists()


@pytest.mark.anyio
async def test_closing_stdin_unloads_the_model_and_leaves_the_server_running(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(60):
        async with _client(project_dir, OLLAMA_HOST=ollama_double.host, LOCAL_LLM_BACKEND="ollama") as client:
            enabled = await _call(client, action="enable", llm="deepseek-coder:6.7b")
            assert enabled["state"] == "loaded"
            assert "deepseek-coder:6.7b" in ollama_double.loaded
    assert ollama_double.loaded == {}
    unloads = [b for b in ollama_double.bodies("/api/generate") + ollama_double.bodies("/api/chat")
               if b.get("keep_alive") in (0, "0", "0s", "0m")]
    assert unloads, "no keep_alive:0 request reached Ollama"
    assert ollama_double.bodies("/api/version")  # Ollama itself was only asked, never stopped


@pytest.mark.anyio
async def test_a_persist_session_keeps_its_model_after_the_client_leaves(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(60):
        async with _client(project_dir, OLLAMA_HOST=ollama_double.host, LOCAL_LLM_BACKEND="ollama") as client:
            await _call(client, action="enable", llm="deepseek-coder:6.7b:persist")
    assert "deepseek-coder:6.7b" in ollama_double.loaded


def _start_raw_server(project: Path, double: OllamaDouble, *, wait_ready: bool = True) -> subprocess.Popen[bytes]:
    """`serve` with raw pipes; with `wait_ready`, returns once it has answered a ping (its signal handlers are set)."""
    env = {**os.environ, **_env(project, OLLAMA_HOST=double.host, LOCAL_LLM_BACKEND="ollama")}
    server = subprocess.Popen([sys.executable, "-m", "mcp_adapter", "serve"], cwd=REPO, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait_ready:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(b'{"jsonrpc": "2.0", "id": 0, "method": "ping"}\n')
        server.stdin.flush()
        assert json.loads(server.stdout.readline())["id"] == 0
    return server


def _enable_from_another_process(project: Path, double: OllamaDouble, owner_pid: int) -> None:
    """Mark the session loaded and owned by `owner_pid`, as a server that enabled it would."""
    env = {**os.environ, **_env(project, OLLAMA_HOST=double.host, LOCAL_LLM_BACKEND="ollama")}
    done = subprocess.run([sys.executable, "-m", "mcp_adapter", "enable", "--llm", "deepseek-coder:6.7b", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    from engine import Engine
    from engine.ownership import current_token

    token = current_token().rsplit(":", 2)[0] + f":{owner_pid}:?"
    engine = Engine.open(project)
    try:
        engine.sessions.note("session", "test_owner", data={"owner": token})
    finally:
        engine.close()


@pytest.mark.anyio
async def test_sigterm_ends_the_session_and_unloads_the_model(project_dir: Path, ollama_double: OllamaDouble) -> None:
    server = _start_raw_server(project_dir, ollama_double)
    try:
        _enable_from_another_process(project_dir, ollama_double, server.pid)
        assert "deepseek-coder:6.7b" in ollama_double.loaded
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert ollama_double.loaded == {}, err.decode()


@pytest.mark.anyio
async def test_the_next_start_after_a_sigkill_unloads_the_leftover_model(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    _enable_from_another_process(project_dir, ollama_double, victim.pid)
    victim.kill()
    victim.wait(timeout=10)
    assert "deepseek-coder:6.7b" in ollama_double.loaded

    with anyio.fail_after(60):
        async with _client(project_dir, OLLAMA_HOST=ollama_double.host, LOCAL_LLM_BACKEND="ollama") as client:
            status = await _call(client, action="status")
    assert status["state"] == "idle"
    assert ollama_double.loaded == {}


def test_serve_writes_nothing_but_protocol_messages_to_stdout(project_dir: Path, ollama_double: OllamaDouble) -> None:
    server = _start_raw_server(project_dir, ollama_double, wait_ready=False)
    request = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    out, err = server.communicate(input=(json.dumps(request) + "\n").encode(), timeout=30)
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert lines, err.decode()
    for line in lines:
        assert json.loads(line)["jsonrpc"] == "2.0"


def test_install_command_writes_the_slash_command(project_dir: Path, cli_command: list[str],
                                                   cli_env: dict[str, str]) -> None:
    result = subprocess.run([*cli_command, "install-command", "--json"], env=cli_env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    target = project_dir / ".claude" / "commands" / "workflow" / "implement.md"
    assert json.loads(result.stdout)["installed"] == str(target)
    text = target.read_text()
    assert "llm=MODEL:persist" in text and '"action": "enable"' in text and '"action": "analyze"' in text


@pytest.mark.anyio
async def test_enable_reports_pull_and_load_progress(project_dir: Path, ollama_double: OllamaDouble) -> None:
    messages: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    with anyio.fail_after(60):
        async with _client(project_dir, OLLAMA_HOST=ollama_double.host, LOCAL_LLM_BACKEND="ollama") as client:
            result = await client.call_tool("local_llm", {"action": "enable", "llm": "deepseek-coder:33b"},
                                            progress_callback=on_progress)
    assert not result.is_error, result.content
    assert result.structured_content["state"] == "loaded"
    assert any("pull" in m.lower() for m in messages), messages
    assert any("load" in m.lower() for m in messages), messages


@pytest.mark.anyio
async def test_a_run_in_flight_when_the_server_stops_finishes_after_the_next_start(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    env = {"OLLAMA_HOST": ollama_double.host, "LOCAL_LLM_BACKEND": "ollama"}
    with anyio.fail_after(120):
        async with _client(project_dir, **env) as client:
            await _call(client, action="enable", llm="deepseek-coder:6.7b:persist")
            started = await _call(
                client, action="delegate", task="Write the config", wait=0.5,
                output_files=[{"path": "config.json", "description": "a JSON object"}],
                verify=f"while [ ! -e {gate} ]; do sleep 0.05; done",
            )
            assert started["state"] == "verifying", started
        # The server is gone with the run still verifying; the next server resumes it.
        gate.touch()
        async with _client(project_dir, **env) as client:
            finished = await _call(client, action="result", run_id=started["run_id"], wait=60)
    assert finished["state"] == "done", finished
    assert (project_dir / "config.json").exists()
