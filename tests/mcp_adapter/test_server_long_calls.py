"""Long calls against the real server over stdio, on protocol 2026-07-28 (the SDK's client probes `server/discover`
and sends clientInfo in each request's `_meta`, as Claude Code 2.1.332 does): when `delegate`, `batch` and `result`
answer (mcp_adapter/answer_policy.py), the progress sent while they wait, and what a `notifications/cancelled` or a
dropped connection does to the run.

Ollama cannot be installed here: the runs generate against engine/testing/ollama_double/, whose `Fault.hold` keeps a
generation open until the test sets an event, so no test waits on a clock to see a run in flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult, Implementation, TextContent

from engine import Engine, Project
from engine.testing.ollama_double import Fault, OllamaDouble

pytestmark = pytest.mark.answer_form_json  # the double scripts whole-file JSON answers

REPO = Path(__file__).resolve().parents[2]
CLAUDE_CODE = Implementation(name="claude-code", version="2.1.332")
OLD_CLAUDE_CODE = Implementation(name="claude-code", version="2.1.197")
MODEL = "deepseek-coder:6.7b"
HEARTBEATS = 5
BOUNDED_S = 1.5
SERVE_WITH_BOUNDED_WAIT = (
    "import sys; import mcp_adapter.answer_policy as policy; policy.BOUNDED_WAIT_S = float(sys.argv[1]); "
    "from mcp_adapter.entry import main; raise SystemExit(main(['serve']))"
)
"""`local-llm serve` with the other clients' 40 s bound shortened, so that the bounded answer is seen in seconds."""

Notes = list[tuple[float, float | None, str | None]]


def _env(project: Path, double: OllamaDouble, **extra: str) -> dict[str, str]:
    env = {"LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": double.host, "LOCAL_LLM_BACKEND": "ollama",
           "PATH": os.environ.get("PATH", ""), "LOCAL_LLM_MCP_PROGRESS_S": "0.05"}
    if form := os.environ.get("LOCAL_LLM_ANSWER_FORM"):  # the double answers whole files (tests/conftest.py)
        env["LOCAL_LLM_ANSWER_FORM"] = form
    env.update(extra)
    return env


@asynccontextmanager
async def _client(project: Path, double: OllamaDouble, *, info: Implementation | None = CLAUDE_CODE,
                  bounded_s: float | None = None, **env: str) -> AsyncIterator[Client]:
    args = ["-m", "mcp_adapter", "serve"] if bounded_s is None else ["-c", SERVE_WITH_BOUNDED_WAIT, str(bounded_s)]
    params = StdioServerParameters(command=sys.executable, args=args, env=_env(project, double, **env),
                                   cwd=str(REPO))
    async with Client(params, read_timeout_seconds=120, client_info=info) as client:
        assert client.protocol_version == "2026-07-28"
        await _call(client, action="enable", llm=f"{MODEL}:persist")
        yield client


async def _call(client: Client, notes: Notes | None = None, **arguments: Any) -> dict[str, Any]:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        assert notes is not None
        notes.append((progress, total, message))

    result = await client.call_tool("local_llm", arguments,
                                    progress_callback=on_progress if notes is not None else None)
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def _text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


async def _reached(event: threading.Event) -> None:
    while not await anyio.to_thread.run_sync(event.wait, 0.5):
        pass


def _hold(double: OllamaDouble) -> tuple[threading.Event, threading.Event]:
    """The next generation is held until the first event is set; the second is set when it arrives."""
    gate, reached = threading.Event(), threading.Event()
    double.fault(Fault.hold(gate, reached=reached, paths=["/api/chat"]))
    return gate, reached


def _delegate(path: str, **extra: Any) -> dict[str, Any]:
    return {"action": "delegate", "task": f"Write {path}", "output_files": [{"path": path, "description": "text"}],
            "verify": f"test -e {path}", **extra}


def _runs(project: Path) -> list[dict[str, Any]]:
    engine = Engine(Project.resolve(project))
    try:
        return engine.list_runs(limit=10)
    finally:
        engine.close()


@pytest.mark.anyio
async def test_claude_code_gets_one_answer_when_the_run_ends_with_progress_meanwhile(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    notes: Notes = []
    answers: list[dict[str, Any]] = []
    heartbeats = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))
        if sum(1 for *_, m in notes if m and m.startswith("delegating, attempt 1 of 3")) >= HEARTBEATS:
            heartbeats.set()

    async def delegate(client: Client) -> None:
        result = await client.call_tool("local_llm", _delegate("out.txt"), progress_callback=on_progress)
        assert result.structured_content is not None
        answers.append(result.structured_content)

    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double) as client:
            gate, reached = _hold(ollama_double)
            async with anyio.create_task_group() as tg:
                tg.start_soon(delegate, client)
                await _reached(reached)
                await heartbeats.wait()  # the call still waits, and says so every 0.05 s
                assert answers == []
                gate.set()
            # An explicit `wait` wins over the client's default: the run's id after half a second.
            gate, reached = _hold(ollama_double)
            early = await _call(client, **_delegate("early.txt", wait=0.5))
            gate.set()
            later = await _call(client, action="result", run_id=early["run_id"])

    [answer] = answers
    assert answer["state"] == "done" and answer["verification"]["passed"] is True, json.dumps(answer)
    assert (project_dir / "out.txt").exists()
    assert [n for n, *_ in notes] == sorted({n for n, *_ in notes})  # strictly increasing
    beats = [m for *_, m in notes if m and m.startswith("delegating, attempt 1 of 3")]
    assert len(beats) >= HEARTBEATS and all(m.endswith("tokens generated") for m in beats)
    assert any("attempt 1: verifying" in (m or "") for *_, m in notes)  # the engine's own steps come through too
    assert early["state"] == "delegating" and early["run_id"]
    assert later["state"] == "done"  # `result` too waits for the end for Claude Code


@pytest.mark.anyio
async def test_other_clients_get_the_run_id_after_the_bounded_wait_and_collect_it_with_result(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double, info=None, bounded_s=BOUNDED_S) as client:
            gate, reached = _hold(ollama_double)
            started = anyio.current_time()
            first = await _call(client, **_delegate("out.txt"))
            waited = anyio.current_time() - started
            assert reached.is_set()
            still = await _call(client, action="result", run_id=first["run_id"])
            gate.set()
            final = await _call(client, action="result", run_id=first["run_id"])
    assert first["state"] == "delegating" and first["run_id"].startswith("run")
    assert waited >= BOUNDED_S
    assert still["state"] == "delegating"
    assert final["state"] == "done"


@pytest.mark.anyio
async def test_claude_code_older_than_2_1_212_keeps_the_bounded_wait(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double, info=OLD_CLAUDE_CODE, bounded_s=BOUNDED_S) as client:
            gate, _ = _hold(ollama_double)
            first = await _call(client, **_delegate("out.txt"))
            gate.set()
    assert first["state"] == "delegating"


@pytest.mark.anyio
async def test_the_variable_wins_over_the_client_table(project_dir: Path, ollama_double: OllamaDouble) -> None:
    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double, LOCAL_LLM_MCP_WAIT_S="0.5") as client:
            gate, _ = _hold(ollama_double)
            first = await _call(client, **_delegate("out.txt"))
            gate.set()
            final = await _call(client, action="result", run_id=first["run_id"], wait=60)
    assert first["state"] == "delegating"
    assert final["state"] == "done"


@pytest.mark.anyio
async def test_a_bad_wait_variable_is_a_tool_error_that_names_it(project_dir: Path, ollama_double: OllamaDouble
                                                                 ) -> None:
    with anyio.fail_after(60):
        async with _client(project_dir, ollama_double, LOCAL_LLM_MCP_WAIT_S="soon") as client:
            result = await client.call_tool("local_llm", _delegate("out.txt"))
    assert result.is_error
    assert "$LOCAL_LLM_MCP_WAIT_S" in _text(result)
    assert _runs(project_dir) == []  # refused before any run exists


@pytest.mark.anyio
async def test_a_batch_for_claude_code_answers_once_with_k_of_n_progress(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    notes: Notes = []
    runs = [{"task": f"Write {p}", "output_files": [{"path": p, "description": "text"}], "verify": f"test -e {p}"}
            for p in ("a.txt", "b.txt")]
    summary: dict[str, Any] = {}
    beats = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))
        if sum(1 for *_, m in notes if m and m.startswith("0 of 2 done; batch")) >= 2:
            beats.set()

    async def batch(client: Client) -> None:
        result = await client.call_tool("local_llm", {"action": "batch", "runs": runs}, progress_callback=on_progress)
        assert result.structured_content is not None
        summary.update(result.structured_content)

    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double) as client:
            gate, reached = _hold(ollama_double)
            async with anyio.create_task_group() as tg:
                tg.start_soon(batch, client)
                await _reached(reached)
                await beats.wait()
                gate.set()
    assert summary["state"] == "finished" and len(summary["children"]) == 2
    messages = [m or "" for *_, m in notes]
    assert any(m.startswith("1 of 2 done") for m in messages) and any(m.startswith("2 of 2 done") for m in messages)
    assert [n for n, *_ in notes] == sorted({n for n, *_ in notes})


@pytest.mark.anyio
async def test_notifications_cancelled_for_a_waiting_call_cancels_and_rolls_back_its_run(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    (project_dir / "out.txt").write_text("the person's text\n")
    gate = project_dir / "gate"
    os.mkfifo(gate)  # verify blocks reading it until the test opens it: an event, not a clock
    verifying = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and "verifying" in message:
            verifying.set()

    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double) as client:
            async with anyio.create_task_group() as tg:
                # The SDK's client sends `notifications/cancelled` for a call its caller abandons.
                tg.start_soon(lambda: client.call_tool("local_llm", _delegate("out.txt", verify=f"cat {gate}"),
                                                       progress_callback=on_progress))
                await verifying.wait()
                assert (project_dir / "out.txt").read_text() != "the person's text\n"  # the run wrote it
                tg.cancel_scope.cancel()
            [run] = (await _call(client, action="runs"))["runs"]
            ended = await _call(client, action="result", run_id=run["run_id"])
    assert ended["state"] == "cancelled", ended
    assert (project_dir / "out.txt").read_text() == "the person's text\n"  # rolled back, as `cancel` does


def _start_raw_server(project: Path, double: OllamaDouble) -> subprocess.Popen[bytes]:
    env = {**os.environ, **_env(project, double)}
    return subprocess.Popen([sys.executable, "-m", "mcp_adapter", "serve"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _raw_call(server: subprocess.Popen[bytes], request_id: int, arguments: dict[str, Any]) -> None:
    """A 2026-07-28 `tools/call` written by hand, as Claude Code sends it (clientInfo in `_meta`)."""
    assert server.stdin is not None
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": CLAUDE_CODE.model_dump(mode="json", exclude_none=True),
            "io.modelcontextprotocol/clientCapabilities": {}, "progressToken": f"p{request_id}"}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
               "params": {"name": "local_llm", "arguments": arguments, "_meta": meta}}
    server.stdin.write(json.dumps(message).encode() + b"\n")
    server.stdin.flush()


def _answer(server: subprocess.Popen[bytes], request_id: int) -> dict[str, Any]:
    assert server.stdout is not None
    while True:
        line = server.stdout.readline()
        assert line, "the server closed stdout"
        message = json.loads(line)
        if message.get("id") == request_id:
            return dict(message)


@pytest.mark.anyio
async def test_a_dropped_connection_leaves_the_run_to_resume_and_nothing_writes_meanwhile(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    server = _start_raw_server(project_dir, ollama_double)
    try:
        _raw_call(server, 1, {"action": "enable", "llm": f"{MODEL}:persist"})
        assert "error" not in _answer(server, 1)
        gate, reached = _hold(ollama_double)
        _raw_call(server, 2, _delegate("out.txt"))
        with anyio.fail_after(60):
            await _reached(reached)
        assert server.stdin is not None
        server.stdin.close()  # the connection drops: no answer was sent, no notifications/cancelled either
        assert await anyio.to_thread.run_sync(lambda: server.wait(timeout=60)) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    gate.set()  # the held generation may now answer: nobody is there to write it
    [run] = _runs(project_dir)
    assert run["state"] == "delegating"
    assert not (project_dir / "out.txt").exists()
    with anyio.fail_after(90):
        async with _client(project_dir, ollama_double) as client:
            finished = await _call(client, action="result", run_id=run["run_id"])
    assert finished["state"] == "done", finished
    assert (project_dir / "out.txt").exists()
