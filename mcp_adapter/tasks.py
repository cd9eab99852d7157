"""MCP tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663) backed by the persisted runs and batches.

A `tools/call` of `delegate` or `batch` whose request declares the extension (in its per-request
`_meta["io.modelcontextprotocol/clientCapabilities"].extensions`, protocol 2026-07-28) is answered with a task once
the run is committed to the store and has not ended within `TASK_AFTER_S`: the task's id is the run's (or the
batch's) id, so the task is exactly as durable as the run. The client polls `tasks/get`, which any server process on
the project answers from the store (it drives nothing); the run's owner drives it, and after a crash the next
server resumes it. A run that ended `done` or `failed` is a `completed` task whose `result` is the CallToolResult the
waiting call would have returned (the `result` action's, produced by the same tool); a cancelled one is `cancelled`.
`failed` (a JSON-RPC error) is only for an internal error: the database cannot be read. Tasks never expire
(`ttlMs: null`): every run's row and result stay in state.db (the retention policy drops only prompts, answers and
file contents, never what the result shows). docs/claude-code.md, "MCP tasks", is the user's side.

Built on the official SDK's `mcp.server.extension` API: `MethodBinding`s for `tasks/get`, `tasks/update` and
`tasks/cancel`, and `intercept_tool_call`, which turns the tool's answer into a `CreateTaskResult`. The tool marks
its answer with `answer_as_task`; the interceptor alone decides, so a request that did not declare the extension
never gets a task, and neither does an argument error or an action that answers at once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    PROTOCOL_VERSION_META_KEY,
    CallToolRequestParams,
    CallToolResult,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from engine import Engine, UserError

__all__ = [
    "POLL_INTERVAL_MS",
    "TASKS_EXTENSION",
    "TASK_AFTER_ENV",
    "TASK_AFTER_S",
    "TTL_MS",
    "TasksExtension",
    "answer_as_task",
    "declares_tasks_extension",
    "task_fields",
    "task_offered",
]

log = structlog.get_logger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
POLL_INTERVAL_MS = 2000
"""What `pollIntervalMs` suggests: a run moves every few seconds at most (a generation, a verify command), and a
`tasks/get` is one read of state.db; the client's polls are not the model's tool calls, so they cost no context."""
TTL_MS: int | None = None
"""`ttlMs`: null, unlimited. Nothing deletes a run's row: the retention policy (engine/delegation/retention.py)
drops only the bodies of finished runs, and `result` (what a completed task inlines) reads none of them."""
TASK_AFTER_ENV = "LOCAL_LLM_MCP_TASK_AFTER_S"


def _task_after(environ: Mapping[str, str]) -> float:
    raw = environ.get(TASK_AFTER_ENV, "").strip()
    try:
        value = float(raw) if raw else 2.0
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:  # also refuses NaN
        raise SystemExit(f"${TASK_AFTER_ENV}: expected seconds between 0 and 3600, got {raw!r}; unset it for 2")
    return value


TASK_AFTER_S = _task_after(os.environ)
"""How long a `delegate` or `batch` that may become a task waits first ($LOCAL_LLM_MCP_TASK_AFTER_S, default 2): a
run that ends by then is answered plainly, one round trip instead of three."""

_TERMINAL_TO_TASK = {"cancelled": "cancelled"}
"""A run or batch that ended in any other terminal state (done, failed; finished, stopped) is a `completed` task:
its result says how it went (a failed verification is a tool result, not a protocol error)."""


def declares_tasks_extension(meta: Mapping[str, Any] | None, *, protocol_version: str | None = None) -> bool:
    """Whether a request's `_meta` declares the tasks extension on a protocol revision that has it (2026-07-28 on;
    SEP-2663: under 2025-11-25 the capability enables nothing). `protocol_version` overrides the one in `_meta`."""
    if not isinstance(meta, Mapping):
        return False
    version = protocol_version or meta.get(PROTOCOL_VERSION_META_KEY)
    capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY)
    if version not in MODERN_PROTOCOL_VERSIONS or not isinstance(capabilities, Mapping):
        return False
    extensions = capabilities.get("extensions")
    return isinstance(extensions, Mapping) and TASKS_EXTENSION in extensions


@dataclass
class _Offer:
    """Open while a `tools/call` that declared the extension runs: the tool puts the id of the run it started here."""

    task_id: str | None = None


_OFFER: ContextVar[_Offer | None] = ContextVar("local_llm_task_offer", default=None)


def task_offered() -> bool:
    """Whether the `tools/call` being served may be answered with a task (its request declared the extension)."""
    return _OFFER.get() is not None


def answer_as_task(answer: dict[str, Any]) -> dict[str, Any]:
    """Offer the run (or batch) of a `delegate` / `batch` answer as this call's task; returns `answer` unchanged.
    Without an open offer (the request did not declare the extension) nothing happens: the answer goes out as it is.
    The interceptor makes the task only if the run has still not ended when the call returns."""
    offer = _OFFER.get()
    task_id = answer.get("run_id") or answer.get("batch_id")
    if offer is not None and isinstance(task_id, str):
        offer.task_id = task_id
    return answer


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_message(status: Mapping[str, Any]) -> str:
    state = status["state"]
    if status["kind"] == "batch":
        text = f"{state}: {status['children_ended']} of {status['total']} children ended"
        return f"{text}; paused: {status['paused']}" if status.get("paused") else text
    if status["ended"]:
        return f"the run ended {state} after {status['attempt']} of {status['max_attempts']} attempts"
    if state == "pending":
        return "pending: waiting to start"
    return f"{state}, attempt {status['attempt']} of {status['max_attempts']}"


def task_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """The Task of SEP-2663 for a run or batch as `Engine.run_status` describes it (no result: `tasks/get` adds it)."""
    task_status = _TERMINAL_TO_TASK.get(status["state"], "completed") if status["ended"] else "working"
    return {
        "taskId": status["run_id"],
        "status": task_status,
        "statusMessage": _status_message(status),
        "createdAt": _iso(status["created_at"]),
        "lastUpdatedAt": _iso(status["updated_at"]),
        "ttlMs": TTL_MS,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


class TaskRequestParams(RequestParams):
    """`tasks/get` and `tasks/cancel`: `{taskId}`."""

    task_id: str


class UpdateTaskRequestParams(TaskRequestParams):
    """`tasks/update`: `{taskId, inputResponses}`."""

    input_responses: dict[str, Any] = Field(default_factory=dict)


FinalResult = Callable[[str], Awaitable[CallToolResult]]
"""The CallToolResult the waiting call gives for a run or batch that has ended (the tool's `result` action)."""


class TasksExtension(Extension):
    identifier = TASKS_EXTENSION

    def __init__(self, engine: Engine, *, final_result: FinalResult) -> None:
        self.engine = engine
        self.final_result = final_result

    def methods(self) -> Sequence[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskRequestParams, self._get, protocol_versions=modern),
            MethodBinding("tasks/update", UpdateTaskRequestParams, self._update, protocol_versions=modern),
            MethodBinding("tasks/cancel", TaskRequestParams, self._cancel, protocol_versions=modern),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if not declares_tasks_extension(ctx.meta, protocol_version=ctx.protocol_version):
            return await call_next(ctx)
        offer = _Offer()
        token = _OFFER.set(offer)
        try:
            result = await call_next(ctx)
        finally:
            _OFFER.reset(token)
        if offer.task_id is None or (isinstance(result, CallToolResult) and result.is_error):
            return result
        return await self.create_task_result(offer.task_id)

    async def create_task_result(self, task_id: str) -> HandlerResult:
        """A started run or batch as the answer to its `tools/call`: a CreateTaskResult (`resultType: "task"`) while
        it runs; the plain CallToolResult if it has ended meanwhile. Read from the store, where the run is committed
        before the tool returns, so a `tasks/get` for the id resolves from the moment the client holds it."""
        status = self._status(task_id)
        if status["ended"]:
            return await self.final_result(task_id)
        log.info("tools/call answered with a task", task_id=task_id, state=status["state"])
        return {"resultType": "task", **task_fields(status)}

    def _status(self, task_id: str) -> dict[str, Any]:
        try:
            status = self.engine.run_status(task_id)
        except UserError as exc:  # the database (or this row) cannot be read: the message says what to do
            raise MCPError(code=INTERNAL_ERROR, message=f"Failed to retrieve task: {exc}") from exc
        if status is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Failed to retrieve task: Task not found: {task_id!r}")
        return status

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskRequestParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        task = task_fields(self._status(params.task_id))
        if task["status"] != "completed":
            return task
        try:
            result = await self.final_result(params.task_id)
        except ToolError as exc:
            return {**task, "status": "failed", "statusMessage": str(exc),
                    "error": {"code": INTERNAL_ERROR, "message": str(exc)}}
        return {**task, "result": result.model_dump(by_alias=True, mode="json", exclude_none=True)}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskRequestParams) -> HandlerResult:
        # No task of this server ever asks for input: every response names a request that is not outstanding, and
        # SEP-2663 has those ignored. The id is still checked.
        require_client_extension(ctx, TASKS_EXTENSION)
        self._status(params.task_id)
        return {}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskRequestParams) -> HandlerResult:
        """Cancel the run or batch as the `cancel` action does (its files rolled back); an ack either way: a run that
        ended first keeps its end (cancellation is cooperative in SEP-2663)."""
        require_client_extension(ctx, TASKS_EXTENSION)
        if not self._status(params.task_id)["ended"]:
            try:
                await self.engine.cancel(params.task_id)
            except UserError as exc:  # it ended meanwhile: nothing to cancel
                log.info("tasks/cancel found nothing to cancel", task_id=params.task_id, reason=str(exc))
        return {}
