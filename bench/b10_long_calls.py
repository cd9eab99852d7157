"""B10: what a long delegation costs the orchestrator: model-visible tool calls and the tokens of their results, for
one delegation whose generation takes 3 minutes (issue 18, point 5; target: one call and one result).

The real MCP server in-process (`mcp.Client(build_server(engine))`, protocol 2026-07-28 with clientInfo in each
request's `_meta`), a scripted backend whose generation takes `GENERATION_S`, and the orchestrator's side played by
a loop that calls as the model would:

- **today's client behaviour** (any client not in the table, e.g. an older Claude Code): `delegate` answers after the
  bounded wait (40 s) with the run's id, then `result` (same bounded wait) until the run has ended;
- **Claude Code** (clientInfo `claude-code` 2.1.332): its default, one `delegate` answered when the run ends;
- **a tasks client** (`tasks_client`): the SDK's `Client` with a client extension declaring
  `io.modelcontextprotocol/tasks` whose claim on `resultType: "task"` polls `tasks/get` until the task ends, as Claude
  Code does outside the model's context: model-visible, one call and its final result.

Time is scaled: the generation takes `GENERATION_S * scale` and the bounded wait `BOUNDED_WAIT_S * scale`, so the
number of polls is the one a real 3-minute generation needs (180 / 40: the fifth answer is the first after the end),
whatever the scale; `--quick` uses 0.02 (3.6 s), the full run 0.1 (18 s). Tokens as in B8: `ceil(characters / 4)`
of each result's compact JSON.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict, Field

from bench.b8_result_size import json_tokens
from bench.common import Figure, scratch_dir

__all__ = ["GENERATION_S", "Scenario", "run", "scenario", "tasks_client"]

GENERATION_S = 180.0
QUICK_SCALE = 0.02
FULL_SCALE = 0.1
TASK = "Write unit tests for the refund helpers in src/refunds.py"
OUTPUT = {"path": "tests/test_refunds.py", "description": "tests for the partial-refund and zero-amount cases"}
ENDED = ("done", "failed", "cancelled")


@dataclass
class Scenario:
    """What the model saw: one entry per tool call it made, the result's tokens."""

    name: str
    results: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def tokens(self) -> int:
        return sum(json_tokens(r) for r in self.results)

    @property
    def final_state(self) -> str:
        return str(self.results[-1]["state"]) if self.results else "none"


@contextmanager
def _bounded_wait(seconds: float) -> Iterator[None]:
    """The other clients' bounded wait, scaled with the generation (set and restored around one scenario)."""
    from mcp_adapter import answer_policy

    before, env = answer_policy.BOUNDED_WAIT_S, os.environ.pop(answer_policy.WAIT_ENV, None)
    answer_policy.BOUNDED_WAIT_S = seconds
    try:
        yield
    finally:
        answer_policy.BOUNDED_WAIT_S = before
        if env is not None:
            os.environ[answer_policy.WAIT_ENV] = env


async def scenario(project: Path, *, name: str, client_name: str, client_version: str, scale: float) -> Scenario:
    """One delegation as a client named `client_name` makes it, the model calling `result` until the run ended."""
    from mcp import Client
    from mcp.types import Implementation

    from engine import Engine, Project
    from engine.testing.scripted import ScriptedBackend, use_backend
    from mcp_adapter.answer_policy import BOUNDED_WAIT_S
    from mcp_adapter.server import build_server

    project.mkdir()
    engine = Engine(Project.resolve(project))
    use_backend(engine, ScriptedBackend(latency=GENERATION_S * scale))
    seen = Scenario(name)
    started = anyio.current_time()
    with _bounded_wait(BOUNDED_WAIT_S * scale):
        info = Implementation(name=client_name, version=client_version)
        async with engine.background(), Client(build_server(engine), client_info=info) as client:
            call: dict[str, Any] = {"action": "delegate", "task": TASK, "output_files": [OUTPUT], "verify": "true",
                                    "answer_form": "json"}
            while True:
                answer = await client.call_tool("local_llm", call)
                assert answer.structured_content is not None, answer.content
                seen.results.append(answer.structured_content)
                if answer.structured_content["state"] in ENDED:
                    break
                call = {"action": "result", "run_id": answer.structured_content["run_id"]}
    engine.close()
    seen.wall_s = anyio.current_time() - started
    return seen


class _TaskAnswer(Result):
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    poll_interval_ms: int | None = Field(default=None, alias="pollIntervalMs")


class _TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class _TasksGet(Request[_TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param: ClassVar[str | None] = "taskId"


class _Task(Result):
    model_config = ConfigDict(extra="allow")
    status: str
    result: dict[str, Any] | None = None


class _PollingTasks(ClientExtension):
    """The client's side of SEP-2663: a `tools/call` answered with a task is polled with `tasks/get` (scaled
    `pollIntervalMs`) until it ends; the caller gets the task's inlined CallToolResult, as if the call had waited."""

    identifier = "io.modelcontextprotocol/tasks"

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.polls = 0

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=_TaskAnswer, resolve=self._resolve)]

    async def _resolve(self, answer: _TaskAnswer, ctx: ClaimContext) -> CallToolResult:
        while True:
            task = await ctx.session.send_request(_TasksGet(params=_TaskParams(taskId=answer.task_id)), _Task)
            self.polls += 1
            if task.status != "working":
                assert task.result is not None, task
                return CallToolResult.model_validate(task.result)
            await anyio.sleep((answer.poll_interval_ms or 1000) / 1000 * self.scale)


async def tasks_client(project: Path, *, scale: float) -> Scenario:
    """One delegation by a client that declares the tasks extension: `delegate` once; its polls of `tasks/get` are
    the client's, not the model's, so what the model sees is one call and the final result."""
    from mcp import Client
    from mcp.types import Implementation

    from engine import Engine, Project
    from engine.testing.scripted import ScriptedBackend, use_backend
    from mcp_adapter.server import build_server

    project.mkdir()
    engine = Engine(Project.resolve(project))
    use_backend(engine, ScriptedBackend(latency=GENERATION_S * scale))
    seen = Scenario("tasks")
    started = anyio.current_time()
    tasks = _PollingTasks(scale)
    info = Implementation(name="tasks-client", version="1.0")
    async with engine.background(), Client(build_server(engine), client_info=info, extensions=[tasks]) as client:
        answer = await client.call_tool("local_llm", {"action": "delegate", "task": TASK, "output_files": [OUTPUT],
                                                      "verify": "true", "answer_form": "json"})
        assert answer.structured_content is not None, answer.content
        seen.results.append(answer.structured_content)
    engine.close()
    assert tasks.polls > 0, "the delegate was not answered with a task"
    seen.wall_s = anyio.current_time() - started
    return seen


async def _measure(root: Path, scale: float) -> tuple[Scenario, Scenario, Scenario]:
    today = await scenario(root / "today", name="today", client_name="some-client", client_version="1.0",
                           scale=scale)
    claude = await scenario(root / "claude", name="claude-code", client_name="claude-code", client_version="2.1.332",
                            scale=scale)
    tasks = await tasks_client(root / "tasks", scale=scale)
    return today, claude, tasks


def _figures(base: Scenario, other: Scenario, label: str, scale: float) -> list[Figure]:
    assert base.final_state == other.final_state == "done", (base.final_state, other.final_state)
    note = (f"{label}: {other.calls} call(s), {other.tokens} tokens; today: {base.calls} calls "
            f"(1 delegate + {base.calls - 1} result), {base.tokens} tokens; generation {GENERATION_S * scale:g} s "
            f"= 3 min x {scale:g}")
    return [
        Figure("B10", f"model-visible tool calls, 3-min delegation: {label} vs today", other.calls, base.calls,
               "calls", 1.0, extra_ok=other.calls == 1, target_text="one call", note=note),
        Figure("B10", f"result tokens the model reads: {label} vs today", other.tokens, base.tokens, "tokens", 1.0,
               extra_ok=len(other.results) == 1, target_text="one result, <= 1.0 x"),
    ]


def run(quick: bool) -> list[Figure]:
    scale = QUICK_SCALE if quick else FULL_SCALE
    with scratch_dir("b10") as root:
        today, claude, tasks = anyio.run(_measure, root, scale)
    figures = _figures(today, claude, "Claude Code default", scale)
    figures += _figures(today, tasks, "tasks client", scale)
    return figures
