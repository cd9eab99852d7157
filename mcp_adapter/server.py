"""`local-llm serve`: the MCP server (stdio) with one tool, `local_llm`, whose `action` picks what to do.

The adapter only translates: it checks that the fields an action needs are present, calls the engine, and turns
the engine's `UserError`s into `ToolError`s (whose text the client sees; any other exception would reach the client
only as "Error executing tool local_llm").

Every field is strict: no `true` for an integer, no `"3"` for a number, no `1` or `"yes"` for a flag, no NaN or
infinity. The SDK's own validation refuses them, naming the field, before the engine sees the call.

Every action returns the engine's dict as it is, which the SDK sends as the result's structured content. Claude Code
(2.1.197) shows the model only that structured content, as JSON, and drops the text beside it: whatever the
orchestrator must act on (conflicts, verification, thinking, a prompt that did not fit) has to be a field of the
engine's view, and nothing big (prompts, answers) belongs there. tests/mcp_adapter/test_server_inprocess.py checks both.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import anyio.abc
import structlog
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)

from engine import BACKENDS, TASK_TYPES, THINK_LEVELS, Engine, UserError
from engine.logs import configure_logging
from engine.progress import Progress
from mcp_adapter.long_calls import LongCalls, plan_for
from mcp_adapter.tasks import TasksExtension, answer_as_task

__all__ = ["ACTIONS", "build_server", "serve"]

log = structlog.get_logger(__name__)

Action = Literal[
    "capability", "enable", "disable", "status", "analyze", "delegate", "batch", "stats", "result", "runs", "cancel",
    "diagram",
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]

TaskType = Literal[TASK_TYPES]  # type: ignore[valid-type]  # the engine's list, so the schema never drifts from it
Backend = Literal[BACKENDS]  # type: ignore[valid-type]
ThinkLevel = Literal[THINK_LEVELS]  # type: ignore[valid-type]
AnswerFormChoice = Literal["edits", "whole", "json", "auto"]

INSTRUCTIONS = """\
Delegate mechanical coding work (boilerplate, CRUD, unit tests, docstrings, mechanical refactors, translation between
languages) to a local model, so your own context stays free for reasoning. Flow: action=enable (once per session);
action=analyze (task, output_files) -> delegate only when recommendation is "delegate"; action=delegate (task,
output_files [{path, description}], context_files, verify): one call per piece, answered when the run ends (Claude
Code moves a long call to the background; a client that declares MCP tasks gets a task). One job over many files: one
action=batch (runs: [delegate requests], or template {task, output: "tests/test_{stem}.py", ...} with glob). Call
action=result (run_id) only for a run or batch id that an answer returned without a final state (done, failed,
cancelled); diff=true adds each file's unified diff. action=disable at the end unloads the model."""


def _none_or_text(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    return None if value is None else handler(value)


if TYPE_CHECKING:
    Text = str | None  # what a handler receives (the annotation below is for the SDK only)
else:
    Text = Annotated[
        str, WrapValidator(_none_or_text), WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})
    ]
"""Free text, or null. Declared as `str` (not `str | None`) because the SDK json-parses the string value of any
field not declared `str` (its workaround for clients that send lists as JSON text): a task reading `[1, 2]` would
reach the engine as a list, and one reading `null` as nothing."""


class OutputFile(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    path: str = Field(description="file to write, relative to the project root")
    description: str = Field(default="", description="what the file must contain")


def _required(action: str, **fields: Any) -> None:
    for name, value in fields.items():
        if value is None or value == "" or value == []:
            raise ToolError(f"{name}: required for action {action!r}")


def _progress(ctx: Context) -> tuple[Progress, Callable[[], None]]:
    """A progress callback for this call, and a switch that stops it once the call has answered."""
    live = True

    async def report(done: float, total: float | None, message: str) -> None:
        if not live:
            return
        try:
            await ctx.report_progress(done, total, message)
        except Exception:  # the client went away; progress is best effort
            log.debug("progress notification failed", exc_info=True)

    def stop() -> None:
        nonlocal live
        live = False

    return report, stop


def build_server(engine: Engine) -> MCPServer:
    long_calls = LongCalls(engine)  # delegate, batch, result: how long they wait (mcp_adapter/answer_policy.py)

    async def final_result(run_id: str) -> CallToolResult:
        # What the waiting call answers for an ended run or batch: the same tool's `result`, converted by the SDK.
        result = await server.call_tool("local_llm", {"action": "result", "run_id": run_id, "wait": 0})
        if not isinstance(result, CallToolResult):  # an InputRequiredResult: the tool never asks for input
            raise ToolError(f"result: run {run_id} asked for input")
        return result

    server = MCPServer(name="local-llm", instructions=INSTRUCTIONS, middleware=[long_calls.middleware],
                       extensions=[TasksExtension(engine, final_result=final_result)])

    async def dispatch(action: str, fields: dict[str, Any], ctx: Context) -> dict[str, Any]:
        progress, stop = _progress(ctx)
        try:
            match action:
                case "capability":
                    return await engine.capability()
                case "enable":
                    return await engine.enable(llm=fields["llm"] if fields["llm"] is not None else True,
                                               backend=fields["backend"], slots=fields["slots"],
                                               answer_form=fields["answer_form"], progress=progress)
                case "disable":
                    return await engine.disable(stop_server=bool(fields["stop_server"]), progress=progress)
                case "status":
                    return await engine.status()
                case "analyze":
                    _required(action, task=fields["task"])
                    outputs = [o.path if isinstance(o, OutputFile) else o for o in fields["output_files"] or []]
                    return engine.analyze(
                        task=fields["task"], files=fields["files"] or fields["context_files"] or [],
                        output_files=outputs, task_type=fields["task_type"],
                    )
                case "delegate":
                    _required(action, task=fields["task"], output_files=fields["output_files"])
                    outputs = [
                        o.model_dump() if isinstance(o, OutputFile) else {"path": o, "description": ""}
                        for o in fields["output_files"]
                    ]

                    def start_run(report: Progress) -> Awaitable[dict[str, Any]]:
                        return engine.delegate(
                            progress=report,
                            task=fields["task"],
                            task_type=fields["task_type"],
                            context_files=fields["context_files"] or fields["files"] or [],
                            output_files=outputs,
                            verify=fields["verify"],
                            max_attempts=fields["max_attempts"],
                            model=fields["model"],
                            allow_secrets=fields["allow_secrets"],
                            allow_config_writes=fields["allow_config_writes"],
                            think=fields["think"],
                            answer_form=fields["answer_form"],
                            wait=0,
                        )

                    plan = plan_for(ctx, fields["wait"], may_be_task=True)
                    return answer_as_task(await long_calls.answer(ctx, plan, start_run))
                case "batch":
                    spec: dict[str, Any] = {k: fields[k] for k in (
                        "runs", "template", "glob", "max_parallel", "max_failures", "max_attempts", "parallel_verify",
                    ) if fields[k] is not None}
                    if "runs" not in spec and "template" not in spec:
                        raise ToolError("runs: required for action 'batch' (or template with glob)")
                    return answer_as_task(await long_calls.answer(
                        ctx, plan_for(ctx, fields["wait"], may_be_task=True),
                        lambda report: engine.batch(spec, progress=report, wait=0)))
                case "result":
                    _required(action, run_id=fields["run_id"])
                    if fields["wait"] == 0:  # nothing to wait for (also how a task's final result is read, outside
                        # any request: tasks/get)
                        return await engine.result(fields["run_id"], wait=0, diff=fields["diff"])
                    return await long_calls.answer(ctx, plan_for(ctx, fields["wait"], may_be_task=False),
                                                   lambda _: engine.result(fields["run_id"], wait=0),
                                                   diff=fields["diff"])
                case "stats":
                    return engine.stats()
                case "runs":
                    return {"runs": engine.list_runs(limit=fields["limit"])}
                case "cancel":
                    _required(action, run_id=fields["run_id"])
                    return await engine.cancel(fields["run_id"])
                case "diagram":
                    machine = fields["machine"] or ("delegation" if fields["run_id"] else "session")
                    text = engine.diagram(machine, run_id=fields["run_id"], fmt=fields["format"])
                    return {"machine": machine, "run_id": fields["run_id"], "format": fields["format"], "diagram": text}
            raise ToolError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        except UserError as exc:
            raise ToolError(str(exc)) from exc
        finally:
            stop()

    @server.tool(
        name="local_llm",
        description=INSTRUCTIONS,
    )
    async def local_llm(
        action: Annotated[Action, Field(description="what to do; the other fields belong to the action")],
        ctx: Context,
        task: Annotated[Text, Field(strict=True, description="analyze, delegate: the task in plain words")] = None,
        task_type: Annotated[
            TaskType | None,
            Field(description="analyze, delegate: kind of work"),
        ] = None,
        files: Annotated[
            list[str] | None, Field(strict=True, description="analyze: context files (paths in the project)")
        ] = None,
        context_files: Annotated[
            list[str] | None, Field(strict=True, description="delegate: files the model reads (paths in the project)")
        ] = None,
        output_files: Annotated[
            list[OutputFile | StrictStr] | None,
            Field(description="analyze: paths; delegate: [{path, description}] the model must write"),
        ] = None,
        verify: Annotated[
            Text, Field(strict=True, description="delegate: shell command that checks the result")
        ] = None,
        max_attempts: Annotated[
            int | None, Field(strict=True, ge=1, le=10, description="delegate: attempts (default 3); batch: per child")
        ] = None,
        model: Annotated[
            Text, Field(strict=True, description="delegate: model to use instead of the session's")
        ] = None,
        allow_secrets: Annotated[
            bool, Field(strict=True, description="delegate: send files that look like secrets")
        ] = False,
        allow_config_writes: Annotated[bool, Field(strict=True, description=(
            "delegate: let the run write configuration that runs code or grants permissions (.claude/settings.json, "
            ".claude/{commands,skills,agents,hooks}/, .mcp.json, .gitattributes, .gitmodules, .envrc, "
            ".pre-commit-config.yaml, .github/workflows/); .git/ and the engine's state are never written"
        ))] = False,
        answer_form: Annotated[AnswerFormChoice | None, Field(description=(
            "enable: the session's answer form; delegate: this run's. edits (search/replace blocks), whole (every "
            "file complete in a fenced block: the embedded model's and small models' default) or json (whole files "
            "in a JSON schema); default: by the rule `status` shows (answer_form_rule)"
        ))] = None,
        think: Annotated[StrictBool | ThinkLevel | None, Field(description=(
            "delegate: let a model that can think do so first (true or a level); default false, as mechanical "
            "work needs no reasoning and thinking spends the answer's tokens"
        ))] = None,
        wait: Annotated[float | None, Field(
            strict=True, allow_inf_nan=False, ge=0, le=3600,
            description=("delegate, batch, result: seconds to wait, then answer with the run's id and state so far "
                         "(default: $LOCAL_LLM_MCP_WAIT_S, else until the end for Claude Code, else 40)"),
        )] = None,
        llm: Annotated[
            StrictStr | StrictBool | None,
            Field(description="enable: true, MODEL or MODEL:persist (keep it loaded after the session)"),
        ] = None,
        backend: Annotated[
            Backend | None, Field(description="enable: force a backend")
        ] = None,
        slots: Annotated[int | None, Field(strict=True, ge=1, description=(
            "enable: how many generations run at once on the backend (default: what the server says, llama.cpp's "
            "total_slots, else 1)"
        ))] = None,
        stop_server: Annotated[bool, Field(strict=True, description="disable: stop the Ollama server too")] = False,
        runs: Annotated[list[dict[str, Any]] | None, Field(description=(
            "batch: delegate requests ({task, output_files, context_files, verify, ...}), one child run each"
        ))] = None,
        template: Annotated[dict[str, Any] | None, Field(description=(
            "batch: one request expanded per file of `glob`: {task, output, description, context_files, verify, "
            "...}; {path} {name} {stem} {dir} are filled in (context_files defaults to [{path}])"
        ))] = None,
        glob: Annotated[Text, Field(strict=True, description="batch: the files a template is expanded over")] = None,
        max_parallel: Annotated[int | None, Field(strict=True, ge=1, description=(
            "batch: children in flight at once (default: the backend's slots)"))] = None,
        max_failures: Annotated[int | None, Field(strict=True, ge=1, description=(
            "batch: stop (cancel the children not started) after this many failed children"))] = None,
        parallel_verify: Annotated[bool | None, Field(strict=True, description=(
            "batch: let children's verify commands run at the same time (default: one at a time)"))] = None,
        run_id: Annotated[Text, Field(strict=True, description="result, cancel, diagram: the run (or batch)")] = None,
        diff: Annotated[bool, Field(strict=True, description="result: add each file's unified diff")] = False,
        machine: Annotated[
            Literal["session", "delegation", "batch"] | None, Field(description="diagram: which machine")
        ] = None,
        format: Annotated[Literal["mermaid", "dot"], Field(description="diagram: output format")] = "mermaid",
        limit: Annotated[int, Field(strict=True, ge=1, le=500, description="runs: how many, newest first")] = 20,
    ) -> dict[str, Any]:
        fields = {k: v for k, v in locals().items() if k not in ("action", "ctx")}
        return await dispatch(action, fields, ctx)

    return server


async def _cancel_on_signals(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()  # the transport starts only once a signal can no longer kill the session uncleanly
        # Kept until the session has ended: a second signal during the shut-down must not meet the default action
        # (the process would die before its runs' verify process groups are killed).
        async for signum in signals:
            log.info("signal received, ending the session", signal=signum)
            scope.cancel()


async def serve(engine: Engine, *, run_transport: Callable[[MCPServer], Awaitable[None]] | None = None) -> None:
    """Serve until the client closes stdin or a signal arrives, then end the session (unload unless persist).

    Runs still in flight are left in their persisted state for the next start to resume.
    """
    configure_logging(log_file=engine.project.engine_log, console=True)
    server = build_server(engine)
    transport = run_transport or (lambda s: s.run_stdio_async())
    async with anyio.create_task_group() as listening:
        serving = anyio.CancelScope()
        await listening.start(_cancel_on_signals, serving)
        try:
            await _quietly("claim the session", engine.claim_session)
            async with engine.background():
                with serving:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_start_up, engine)
                        await transport(server)
                        log.info("client closed the connection")
                        tg.cancel_scope.cancel()
                engine.cancel_background()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await _quietly("end the session", engine.end_session)
            listening.cancel_scope.cancel()


async def _start_up(engine: Engine) -> None:
    """Background work at start: resume interrupted runs, then apply the retention policy (a cheap moment: the
    runs it could touch are finished, and it works in a thread, a batch of runs per transaction)."""
    await _quietly("resume interrupted runs", engine.resume)
    await _quietly("apply the retention policy", engine.apply_retention)


async def _quietly(what: str, work: Callable[[], Awaitable[object]]) -> None:
    """Start-up and shut-down work that must not take the server down: a damaged database (or session row) is
    logged in one line here, and `status` tells the client what to do."""
    try:
        await work()
    except UserError as exc:
        log.warning(f"could not {what}", problem=str(exc))
