"""A real MCP client (the SDK's stdio client) talking to `local-llm serve` started as a subprocess.

Only what needs a real process is here: stdout carries nothing but protocol, the session ends (the model unloaded)
when the client closes stdin or a signal arrives, the next start cleans up after a killed server, a run in flight
survives a restart, and one end-to-end delegation on the embedded model. Every action's behaviour (schema, errors,
progress, result/runs/cancel/diagram) is tested in-process, faster, in test_server_inprocess.py.

Ollama cannot be installed here: the Ollama cases run against engine/testing/ollama_double/, a test double of Ollama's
HTTP API built from its documented fields. The embedded case uses the real llama.cpp model.
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
from tests.markers import needs_embedded

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:9"  # discard port: nothing answers, so no Ollama is found


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {"LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": UNREACHABLE, "PATH": os.environ.get("PATH", "")}
    if form := os.environ.get("LOCAL_LLM_ANSWER_FORM"):  # the double answers whole files (tests/conftest.py)
        env["LOCAL_LLM_ANSWER_FORM"] = form
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


@needs_embedded
@pytest.mark.anyio
async def test_a_real_server_process_delegates_on_the_embedded_model_with_progress(project_dir: Path) -> None:
    # The whole product path once, end to end: `local-llm serve` over stdio, the real model, progress notifications
    # crossing the pipe. Each action's behaviour is checked in-process (test_server_inprocess.py).
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(240):
        async with _client(project_dir, LOCAL_LLM_BACKEND="embedded") as client:
            enabled = await _call(client, action="enable", llm=True)
            result = await client.call_tool(
                "local_llm",
                {"action": "delegate", "task": "Write a short greeting for the README", "task_type": "docs",
                 "output_files": [{"path": "greeting.txt", "description": "one friendly sentence"}],
                 "verify": "test -s greeting.txt", "wait": 120},
                progress_callback=on_progress,
            )
            assert not result.is_error, result.content
            run = result.structured_content
            disabled = await _call(client, action="disable")

    assert enabled["state"] == "loaded" and enabled["backend"] == "embedded"
    assert run["state"] == "done", run
    assert run["verification"]["passed"] is True
    assert run["tokens_generated"] > 0
    assert (project_dir / "greeting.txt").read_text().strip()
    assert disabled["state"] == "idle"
    assert any("attempt" in (m or "") for _, _, m in progress), progress


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
    from engine.store.ownership import current_token

    token = current_token().rsplit(":", 2)[0] + f":{owner_pid}:?"
    engine = Engine.open(project)
    try:
        engine.ctx.sessions.note("session", "test_owner", data={"owner": token})
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


@pytest.mark.answer_form_json
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


@pytest.mark.anyio
async def test_serve_stays_up_on_a_damaged_database_and_recovers_once_it_is_moved_aside(
    project_dir: Path, cli_command: list[str], tmp_path: Path
) -> None:
    from mcp.client.stdio import stdio_client

    state_db = project_dir / ".claude" / "workflow" / "state.db"
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)  # a header that lies
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_adapter", "serve"],
                                   env=_env(project_dir), cwd=str(REPO))
    with (tmp_path / "stderr.txt").open("w+") as errlog:
        with anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=30) as client:
                status = await _call(client, action="status")
                runs = await client.call_tool("local_llm", {"action": "runs"})
                moved = subprocess.run([*cli_command, "db", "move-aside", "--json"], capture_output=True, text=True,
                                       env={**os.environ, **_env(project_dir)}, timeout=60, check=False)
                after = await _call(client, action="status")
        errlog.seek(0)
        stderr = errlog.read()
    assert status["state"] == "unavailable" and "damaged" in status["problem"]
    assert runs.is_error and "local-llm db move-aside" in runs.content[0].text  # type: ignore[union-attr]
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["moved"][0]["to"].startswith(str(state_db) + ".damaged-")
    assert after["state"] == "idle"  # the server opened a fresh database without a restart
    assert "Traceback" not in stderr and "could not claim the session" in stderr
