"""MCP tasks (SEP-2663) as `local-llm serve` answers them: a raw client speaking protocol 2026-07-28 over stdio to the
real server process, with and without the `io.modelcontextprotocol/tasks` extension in each request's capabilities.

Raw JSON-RPC lines, not the SDK's client: the tests check the wire form itself (`resultType`, the Task's fields, the
error codes), and declare the extension per request as Claude Code does. The model is the Ollama test double
(engine/testing/ollama_double/, Ollama cannot be installed here); a run is held in `verifying` by a verify command
that waits for a file the test creates, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from engine import Engine
from engine.testing.ollama_double import OllamaDouble
from mcp_adapter.tasks import POLL_INTERVAL_MS, TASKS_EXTENSION, declares_tasks_extension, task_fields

pytestmark = pytest.mark.answer_form_json  # the double scripts whole-file JSON answers

REPO = Path(__file__).resolve().parents[2]
VERSION = "2026-07-28"
TASK_ID = re.compile(r"(run|batch)-[0-9a-f]{32}")


def _meta(*, tasks: bool, version: str = VERSION) -> dict[str, Any]:
    extensions: dict[str, Any] = {TASKS_EXTENSION: {}} if tasks else {}
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {"extensions": extensions},
            "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"}}


class RawClient:
    """One request at a time; notifications in between are skipped."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._next_id = 0

    async def request(self, method: str, params: dict[str, Any] | None = None, *, tasks: bool = True
                      ) -> dict[str, Any]:
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method,
                   "params": {**(params or {}), "_meta": _meta(tasks=tasks)}}
        await self._stdin.send((json.dumps(message) + "\n").encode())
        while True:
            answer: dict[str, Any] = json.loads(await self._stdout.receive_until(b"\n", 10_000_000))
            if answer.get("id") == self._next_id:
                return answer

    async def result(self, method: str, params: dict[str, Any] | None = None, *, tasks: bool = True
                     ) -> dict[str, Any]:
        answer = await self.request(method, params, tasks=tasks)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def tool(self, *, tasks: bool = True, **arguments: Any) -> dict[str, Any]:
        return await self.result("tools/call", {"name": "local_llm", "arguments": arguments}, tasks=tasks)

    async def until(self, task_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll `tasks/get` as a client does (its own bound comes from the caller's fail_after)."""
        while not done(task := await self.result("tasks/get", {"taskId": task_id})):
            await anyio.sleep(0.05)
        return task


@asynccontextmanager
async def _server(project: Path, double: OllamaDouble, **env: str) -> AsyncIterator[RawClient]:
    environ = {**os.environ, "LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": double.host,
               "LOCAL_LLM_BACKEND": "ollama", **env}
    process = await anyio.open_process([sys.executable, "-m", "mcp_adapter", "serve"], cwd=REPO, env=environ,
                                       stderr=None)
    try:
        yield RawClient(process)
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            await process.stdin.aclose()  # the server ends its session when stdin closes
            with anyio.move_on_after(30):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


def _gated(gate: Path, path: str = "config.json") -> dict[str, Any]:
    """A delegate whose verify command waits until `gate` exists: the run stays `verifying` until the test says."""
    return {"action": "delegate", "task": "Write the config", "max_attempts": 1,
            "output_files": [{"path": path, "description": "a JSON object"}],
            "verify": f"while [ ! -e {gate} ]; do sleep 0.05; done"}


def _wire_call_result(result: dict[str, Any]) -> dict[str, Any]:
    """A tools/call result without the serverInfo stamp the server puts on every 2026-07-28 answer."""
    return {k: v for k, v in result.items() if k != "_meta"}


def _is_iso(text: str) -> bool:
    return datetime.fromisoformat(text).tzinfo is not None


# -- the pure parts ----------------------------------------------------------------------------------------------


def test_the_extension_counts_only_when_the_request_declares_it_on_2026_07_28() -> None:
    assert declares_tasks_extension(_meta(tasks=True))
    assert not declares_tasks_extension(_meta(tasks=False))
    assert not declares_tasks_extension(_meta(tasks=True, version="2025-11-25"))  # SEP-2663: not under 2025-11-25
    assert not declares_tasks_extension(None)
    assert not declares_tasks_extension({"io.modelcontextprotocol/protocolVersion": VERSION,
                                         "io.modelcontextprotocol/clientCapabilities": {"extensions": ["x"]}})


def test_a_task_says_working_with_the_attempt_until_the_run_ends_and_cancelled_only_when_cancelled() -> None:
    run = {"run_id": "run-1", "kind": "delegation", "created_at": 0.0, "updated_at": 1.5, "attempt": 2,
           "max_attempts": 3}
    working = task_fields({**run, "state": "verifying", "ended": False})
    assert working == {"taskId": "run-1", "status": "working", "statusMessage": "verifying, attempt 2 of 3",
                       "createdAt": "1970-01-01T00:00:00.000Z", "lastUpdatedAt": "1970-01-01T00:00:01.500Z",
                       "ttlMs": None, "pollIntervalMs": POLL_INTERVAL_MS}
    assert task_fields({**run, "state": "failed", "ended": True})["status"] == "completed"
    assert task_fields({**run, "state": "done", "ended": True})["status"] == "completed"
    assert task_fields({**run, "state": "cancelled", "ended": True})["status"] == "cancelled"
    batch = {"run_id": "batch-1", "kind": "batch", "created_at": 0.0, "updated_at": 0.0, "total": 4,
             "children_ended": 1, "paused": "the backend does not answer"}
    assert task_fields({**batch, "state": "paused", "ended": False})["statusMessage"] == (
        "paused: 1 of 4 children ended; paused: the backend does not answer")
    assert task_fields({**batch, "state": "stopped", "ended": True})["status"] == "completed"


# -- over stdio, against the real server -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_delegate_that_declares_tasks_becomes_a_task_whose_get_inlines_the_waiting_calls_result(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    with anyio.fail_after(120):
        async with _server(project_dir, ollama_double, LOCAL_LLM_MCP_TASK_AFTER_S="0") as client:
            discovered = await client.result("server/discover")
            await client.tool(action="enable", llm="deepseek-coder:6.7b")
            created = await client.tool(**_gated(gate))
            polled = await client.until(created["taskId"], lambda t: t["statusMessage"].startswith("verifying"))
            gate.touch()
            completed = await client.until(created["taskId"], lambda t: t["status"] != "working")
            plain = await client.tool(tasks=False, action="result", run_id=created["taskId"])

    assert discovered["capabilities"]["extensions"] == {TASKS_EXTENSION: {}}
    assert created["resultType"] == "task" and TASK_ID.fullmatch(created["taskId"]), created
    assert created["status"] == "working" and created["ttlMs"] is None
    assert created["pollIntervalMs"] == POLL_INTERVAL_MS and _is_iso(created["createdAt"])
    assert "content" not in created  # a CreateTaskResult, not a tool result
    assert polled["resultType"] == "complete" and polled["statusMessage"] == "verifying, attempt 1 of 1"
    assert completed["status"] == "completed", completed
    assert completed["result"]["structuredContent"]["state"] == "done"
    assert completed["result"] == _wire_call_result(plain)  # exactly what the waiting call answers
    assert completed["createdAt"] == created["createdAt"]
    assert completed["lastUpdatedAt"] >= polled["lastUpdatedAt"]
    assert (project_dir / "config.json").exists()


@pytest.mark.anyio
async def test_a_failed_verification_is_a_completed_task_with_the_failed_run_as_its_result(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(120):
        async with _server(project_dir, ollama_double, LOCAL_LLM_MCP_TASK_AFTER_S="0") as client:
            await client.tool(action="enable", llm="deepseek-coder:6.7b")
            created = await client.tool(action="delegate", task="Write the config", max_attempts=1,
                                        output_files=[{"path": "config.json"}], verify="echo broken; exit 3")
            ended = await client.until(created["taskId"], lambda t: t["status"] != "working")

    assert created["resultType"] == "task"
    assert ended["status"] == "completed" and "error" not in ended
    assert ended["result"]["isError"] is False
    assert ended["result"]["structuredContent"]["state"] == "failed"
    assert ended["result"]["structuredContent"]["verification"]["passed"] is False


@pytest.mark.anyio
async def test_without_the_extension_or_for_actions_that_end_at_once_the_answer_is_never_a_task(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    with anyio.fail_after(120):
        async with _server(project_dir, ollama_double, LOCAL_LLM_MCP_TASK_AFTER_S="60") as client:
            status = await client.tool(action="status")
            await client.tool(action="enable", llm="deepseek-coder:6.7b")
            bad = await client.tool(action="delegate", task="no outputs")
            quick = await client.tool(action="delegate", task="Write the notes", output_files=[{"path": "notes.md"}])
            undeclared = await client.tool(tasks=False, wait=0.2, **_gated(gate))
            get_undeclared = await client.request("tasks/get", {"taskId": undeclared["structuredContent"]["run_id"]},
                                                  tasks=False)
            unknown = await client.request("tasks/get", {"taskId": "run-" + "0" * 32})
            cancel_unknown = await client.request("tasks/cancel", {"taskId": "run-" + "0" * 32})
            gate.touch()
            finished = await client.tool(tasks=False, action="result", run_id=undeclared["structuredContent"]["run_id"],
                                         wait=60)

    for plain in (status, bad, quick, undeclared, finished):
        assert plain["resultType"] == "complete" and "content" in plain and "taskId" not in plain, plain
    assert bad["isError"] is True and "output_files: required" in bad["content"][0]["text"]
    assert quick["structuredContent"]["state"] == "done"  # ended within the window: answered plainly
    assert undeclared["structuredContent"]["state"] == "verifying"  # still running, yet no task: not declared
    assert get_undeclared["error"]["code"] == -32021
    assert get_undeclared["error"]["data"] == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    assert unknown["error"]["code"] == -32602 and cancel_unknown["error"]["code"] == -32602
    assert finished["structuredContent"]["state"] == "done"


@pytest.mark.anyio
async def test_tasks_cancel_cancels_a_run_and_a_batch_as_cancel_does(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    with anyio.fail_after(120):
        async with _server(project_dir, ollama_double, LOCAL_LLM_MCP_TASK_AFTER_S="0") as client:
            await client.tool(action="enable", llm="deepseek-coder:6.7b")
            run = await client.tool(**_gated(gate))
            await client.until(run["taskId"], lambda t: t["statusMessage"].startswith("verifying"))
            assert (project_dir / "config.json").exists()
            ack = await client.result("tasks/cancel", {"taskId": run["taskId"]})
            cancelled = await client.until(run["taskId"], lambda t: t["status"] != "working")
            batch = await client.tool(action="batch", runs=[
                {k: v for k, v in _gated(gate, "a.json").items() if k != "action"}])
            # Cancelled once its child runs: a cancel in the instant between the batch starting a child and the child
            # being driven misses it (an engine race noted for the lead, not a tasks matter).
            await client.until(f"{batch['taskId']}.1", lambda t: t["statusMessage"].startswith("verifying"))
            batch_ack = await client.result("tasks/cancel", {"taskId": batch["taskId"]})
            batch_cancelled = await client.until(batch["taskId"], lambda t: t["status"] != "working")

    assert ack == {"resultType": "complete", "_meta": ack["_meta"]}  # an empty acknowledgement
    assert cancelled["status"] == "cancelled" and "result" not in cancelled
    assert not (project_dir / "config.json").exists()  # rolled back, as `cancel` does
    assert batch["resultType"] == "task" and batch["taskId"].startswith("batch-")
    assert batch_ack["resultType"] == "complete"
    assert batch_cancelled["status"] == "cancelled"
    assert not (project_dir / "a.json").exists()


@pytest.mark.anyio
async def test_a_task_outlives_a_killed_server_and_any_server_on_the_project_answers_for_it(
    project_dir: Path, ollama_double: OllamaDouble
) -> None:
    gate = project_dir / "release"
    env = {"LOCAL_LLM_MCP_TASK_AFTER_S": "0"}
    with anyio.fail_after(180):
        async with _server(project_dir, ollama_double, **env) as owner:
            await owner.tool(action="enable", llm="deepseek-coder:6.7b")
            created = await owner.tool(**_gated(gate))
            await owner.until(created["taskId"], lambda t: t["statusMessage"].startswith("verifying"))
            async with _server(project_dir, ollama_double, **env) as other:  # the owner is alive: it only reads
                seen_by_other = await other.result("tasks/get", {"taskId": created["taskId"]})
            owner.process.kill()  # SIGKILL: no shutdown, the run left verifying
            await owner.process.wait()
        async with _server(project_dir, ollama_double, **env) as successor:
            resumed = await successor.result("tasks/get", {"taskId": created["taskId"]})
            gate.touch()
            completed = await successor.until(created["taskId"], lambda t: t["status"] != "working")

    assert created["resultType"] == "task"
    assert seen_by_other["status"] == "working" and seen_by_other["taskId"] == created["taskId"]
    assert resumed["status"] == "working" and resumed["createdAt"] == created["createdAt"]
    assert completed["status"] == "completed", completed
    assert completed["result"]["structuredContent"]["state"] == "done"
    assert (project_dir / "config.json").exists()
    engine = Engine.open(project_dir)
    try:
        events = [e["event"] for e in engine.run_view(created["taskId"])["events"]]
    finally:
        engine.close()
    assert events.count("recover") == 1  # resumed once, by the successor: the reader never took it over
