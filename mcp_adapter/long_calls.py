"""Long calls (`delegate`, `batch`, `result`): the thin IO shell around `answer_policy.plan_answer`.

- Who asks: the clientInfo of a 2026-07-28 request's `_meta`, else of `initialize`; whether the request declares the
  tasks extension; `$LOCAL_LLM_MCP_WAIT_S`, read at each call.
- While a call waits, a progress notification at least every `$LOCAL_LLM_MCP_PROGRESS_S` seconds (default 5) when the
  request carries a progressToken: the engine's own (attempt, tokens generated, `k of N done`) as they happen, and a
  heartbeat from the run's stored state between them. `progress` counts the notifications, so it always increases.
- The run is always driven in the server's background task group, never in the waiting call's task: cancelling the
  call (a `notifications/cancelled`, or the server shutting down) never interrupts a step half-way.
- A `notifications/cancelled` for a waiting call cancels its run or batch (rolled back, as `cancel` does). The SDK
  cancels the call's scope first and hands the notification to the middleware after (mcp 2.3
  `JSONRPCDispatcher._dispatch_notification`), so the call keeps its entry when it is cancelled and the middleware
  does the cancel. A dropped connection (stdin closed) cancels the call with no notification: the server ends its
  session, its runs stop in their persisted state and the next server resumes them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import Context
from mcp.types import CLIENT_INFO_META_KEY

from engine import Engine, InvalidArgument, UserError
from engine.progress import Progress
from mcp_adapter.answer_policy import WAIT_ENV, AnswerPlan, ClientId, plan_answer
from mcp_adapter.tasks import TASK_AFTER_S, task_offered
from states import BATCH, DELEGATION

__all__ = ["PROGRESS_ENV", "PROGRESS_PERIOD_S", "LongCalls", "client_of", "plan_for", "progress_period"]

log = structlog.get_logger(__name__)

PROGRESS_ENV = "LOCAL_LLM_MCP_PROGRESS_S"
PROGRESS_PERIOD_S = 5.0
"""Half the 10 s the issue asks for, so a loaded machine still keeps within it; Claude Code's idle limit for a stdio
call (30 minutes) is reset by each notification."""
ENDED = DELEGATION.terminal | BATCH.terminal

Start = Callable[[Progress], Awaitable[dict[str, Any]]]
"""Starts the work (or looks the run up) and answers at once with its view: `delegate`/`batch` with `wait=0`."""


def progress_period(environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get(PROGRESS_ENV, "").strip()
    if not raw:
        return PROGRESS_PERIOD_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:
        raise InvalidArgument(f"${PROGRESS_ENV}", "seconds between progress notifications, above 0 and at most "
                              "3600; unset it for the default", raw)
    return value


def client_of(ctx: Context) -> ClientId | None:
    """The clientInfo of this request (2026-07-28 `_meta`), else of the connection's `initialize`."""
    meta: Mapping[str, Any] = ctx.request_context.meta or {}
    if (client := ClientId.from_info(meta.get(CLIENT_INFO_META_KEY))) is not None:
        return client
    params = ctx.request_context.session.client_params
    return None if params is None else ClientId.from_info(params.client_info.model_dump())


def plan_for(ctx: Context, explicit_wait: float | None, *, may_be_task: bool) -> AnswerPlan:
    """`may_be_task`: the action starts a run or batch (`delegate`, `batch`), which a request that declares the
    tasks extension gets as a task (the interceptor in mcp_adapter/tasks.py decides whether it declared it)."""
    return plan_answer(declares_tasks=may_be_task and task_offered(), explicit_wait=explicit_wait,
                       env_wait=os.environ.get(WAIT_ENV), client=client_of(ctx))


def _target(view: Mapping[str, Any]) -> str:
    return str(view["batch_id"] if "batch_id" in view else view["run_id"])


def _ended(view: Mapping[str, Any]) -> bool:
    return view.get("state") in ENDED


def status_line(view: Mapping[str, Any]) -> str:
    """A heartbeat's message: state, attempt and tokens of a run; `k of N done` of a batch."""
    if "batch_id" in view:
        counts: Mapping[str, int] = view.get("counts") or {}
        ended = sum(n for state, n in counts.items() if state in DELEGATION.terminal)
        return f"{ended} of {view.get('total', 0)} done; batch {view['state']}, " \
               f"{view.get('tokens_generated', 0)} tokens generated"
    return f"{view['state']}, attempt {view.get('attempts', 0)} of {view.get('max_attempts', 0)}, " \
           f"{view.get('tokens_generated', 0)} tokens generated"


class Reporter:
    """Progress notifications of one call: numbered, so `progress` increases with each; silent once it answered."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._sent = 0
        self._lock = anyio.Lock()
        self._live = True

    async def engine(self, done: float, total: float | None, message: str) -> None:
        await self.send(message)

    async def send(self, message: str) -> None:
        if not self._live:
            return
        async with self._lock:  # numbered and written in one order, whichever task sends
            self._sent += 1
            try:
                await self._ctx.report_progress(self._sent, None, message)
            except Exception:  # the client went away; progress is best effort
                log.debug("progress notification failed", exc_info=True)

    def stop(self) -> None:
        self._live = False


@dataclass
class _Waiting:
    target: str | None = None
    cancelled: bool = False


class LongCalls:
    """The long calls now waiting, by request id, and the middleware that cancels their runs on request."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: dict[str, _Waiting] = {}

    async def answer(self, ctx: Context, plan: AnswerPlan, start: Start, *, diff: bool = False) -> dict[str, Any]:
        """Start the work (`start` answers at once), then wait as `plan` says. A `task` plan waits `TASK_AFTER_S`:
        the caller offers what is still running then as the call's task (`tasks.answer_as_task`)."""
        request = ctx.request_id
        waiting = self._waiting[request] = _Waiting()
        reporter = Reporter(ctx)
        try:
            view = await start(reporter.engine)
            # No checkpoint between the run's creation and this line (`wait=0` answers without one): a cancel
            # that arrives from here on finds the target.
            waiting.target = target = _target(view)
            if waiting.cancelled:  # the notification came while the run was being created
                with anyio.CancelScope(shield=True):
                    await self._cancel(target)
                return view
            log.info("long call waits", target=target, plan=plan.kind, wait_s=plan.wait_s, reason=plan.reason)
            wait_s = {"bounded": plan.wait_s, "task": TASK_AFTER_S}.get(plan.kind)
            view = await self._wait(target, view, wait_s, reporter)
            if diff:
                view = await self.engine.result(target, wait=0, diff=True)
        except anyio.get_cancelled_exc_class():
            raise  # the entry stays: a notifications/cancelled handled after this needs the target
        except BaseException:
            self._end(request, waiting)
            raise
        finally:
            reporter.stop()
        self._end(request, waiting)
        return view

    async def _wait(self, target: str, view: dict[str, Any], wait_s: float | None, reporter: Reporter
                    ) -> dict[str, Any]:
        period = progress_period()
        deadline = math.inf if wait_s is None else anyio.current_time() + wait_s
        while not _ended(view) and (remaining := deadline - anyio.current_time()) > 0:
            view = await self.engine.result(target, wait=min(period, remaining))
            if not _ended(view):
                await reporter.send(status_line(view))
        return view

    def _end(self, request: str, waiting: _Waiting) -> None:
        if self._waiting.get(request) is waiting:
            del self._waiting[request]

    async def _cancel(self, target: str) -> None:
        try:
            await self.engine.cancel(target)
            log.info("run cancelled by notifications/cancelled", target=target)
        except UserError as exc:  # it ended meanwhile: nothing to roll back
            log.info("notifications/cancelled for a run that ended", target=target, problem=str(exc))

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Sees every inbound message; acts on `notifications/cancelled` for a waiting long call."""
        result = await call_next(ctx)
        if ctx.method == "notifications/cancelled" and ctx.request_id is None:
            request = (ctx.params or {}).get("requestId")
            waiting = self._waiting.pop(str(request), None) if request is not None else None
            if waiting is not None:
                waiting.cancelled = True
                if waiting.target is not None:
                    await self._cancel(waiting.target)
        return result
