"""Delegation runs: analyze, delegate, result, cancel, stats, and the resume hook recovery hands interrupted runs to.

A run is driven by its persisted state, one step per state, each step ending in one journaled transition:

    pending      take the output-file locks, `start`
    delegating   pack the context (once, kept in the run's data), generate, parse; `generated` journals the writes
    writing      apply the journaled contents atomically, `written`
    verifying    run the verify command, `passed` or `verify_failed` (with the output for the next prompt)
    retrying     `regenerate` with attempt + 1
    rolling_back restore the journaled originals, `rolled_back`

Because every step starts from what the store says, resuming after a crash is the same loop: a run interrupted while
`delegating` generates again, `writing` re-applies (idempotent), `verifying` verifies again, `rolling_back` finishes.

Test-only hook: with LOCAL_LLM_TEST_PAUSE_IN=<state> and LOCAL_LLM_TEST_PAUSE_FILE=<path>, a run waits until the file
exists when it reaches that state (in `writing` and `rolling_back`: after the first file), so tests can SIGKILL the
process at a known point. Never set them outside tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from engine import metrics
from engine.backends.base import Backend, BackendError, ChatMessage, GenerateRequest, GenerateResult
from engine.errors import InvalidArgument, UserError
from engine.files import (
    JournaledWrite,
    apply_journal,
    journal_writes,
    journaled,
    read_text_file,
    resolve_inside,
    rollback_journal,
    writable_target,
)
from engine.machines import InvalidEvent, new_id
from engine.ownership import current_token
from engine.progress import Progress, no_progress
from engine.prompting import (
    AnswerError,
    ContextFile,
    OutputSpec,
    answer_schema,
    attempt_messages,
    base_messages,
    pack_context,
    parse_answer,
)
from engine.scoring import score_task
from engine.store import MachineRecord, StaleVersion
from engine.verify import DEFAULT_TIMEOUT_S, run_verify
from states import DELEGATION

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = ["TASK_TYPES", "Delegations"]

log = structlog.get_logger(__name__)

TASK_TYPES = ("generate", "test", "docs", "refactor", "translate")
MAX_ATTEMPTS_LIMIT = 10
PAUSE_ENV, PAUSE_FILE_ENV = "LOCAL_LLM_TEST_PAUSE_IN", "LOCAL_LLM_TEST_PAUSE_FILE"
CANCEL_POLL_S = 0.2
"""How often a running step looks for a cancel request made by another process."""
PROGRESS_EVERY_S = 0.5
FEEDBACK_TOKENS = 256
"""Room kept for the failing output that a retry adds to the prompt."""


def answer_room(num_ctx: int) -> int:
    """Tokens kept free for the answer."""
    return max(256, min(4096, num_ctx // 4))


@dataclass
class _Live:
    """A run driven by this process."""

    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    cancel_requested: bool = False
    resumed: bool = False
    """Taken over from a process that died: its end may already be in the delegation log (see _ended)."""


_After = Callable[[Any, MachineRecord], None]
"""What `PersistedMachines.fire` calls inside the transition's transaction, with the moved record."""


class _StateMoved(Exception):
    """Someone else (a cancel from another process) moved the run; re-read it."""


async def _safe_progress(progress: Progress, done: float, total: float | None, message: str) -> None:
    try:
        await progress(done, total, message)
    except Exception:  # a client that went away must not fail the run
        log.debug("progress callback failed", exc_info=True)


async def _test_pause(state: str) -> None:
    """Test-only (see the module docstring): wait here until the pause file exists."""
    if os.environ.get(PAUSE_ENV) != state or not os.environ.get(PAUSE_FILE_ENV):
        return
    release = Path(os.environ[PAUSE_FILE_ENV])
    log.warning("test pause", state=state, release=str(release))
    while not release.exists():
        await anyio.sleep(0.02)


def _strings(value: Any, field_name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument(field_name, "a list of relative file paths", value)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(f"{field_name}[{i}]", "a relative file path (a non-empty string)", item)
    return list(value)


def _outputs(value: Any) -> list[OutputSpec]:
    if not value or isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument("output_files", "a non-empty list of {path, description}", value)
    specs: list[OutputSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            specs.append(OutputSpec(item))
        elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
            description = item.get("description") or ""
            if not isinstance(description, str):
                raise InvalidArgument(f"output_files[{i}].description", "a string", description)
            specs.append(OutputSpec(item["path"], description))
        else:
            raise InvalidArgument(f"output_files[{i}]", "an object {path, description} or a path string", item)
    return specs


class _PathLocks:
    """Exclusive locks on output paths, across processes (flock on lock files; released by the OS on a crash)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @asynccontextmanager
    async def hold(self, paths: Sequence[str]):  # type: ignore[no-untyped-def]
        self.directory.mkdir(parents=True, exist_ok=True)
        fds: list[int] = []
        try:
            for path in sorted(set(paths)):  # one global order: two runs never wait on each other in a cycle
                name = hashlib.sha256(path.encode()).hexdigest()[:32] + ".lock"
                fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await anyio.sleep(0.05)
            yield
        finally:
            for fd in fds:
                os.close(fd)  # closing the descriptor releases its flock


class Delegations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._live: dict[str, _Live] = {}
        self._limiters: dict[int, tuple[Backend, anyio.CapacityLimiter]] = {}
        self._in_flight = 0
        self._locks = _PathLocks(engine.project.workflow_dir / "locks")

    @property
    def root(self) -> Path:
        return self.engine.project.root

    # -- analyze --------------------------------------------------------------------------------------------------

    def analyze(
        self, task: str, *, files: Sequence[str] | None = None, output_files: Sequence[Any] | None = None,
        task_type: str | None = None, log_decision: bool = True,
    ) -> dict[str, Any]:
        if not isinstance(task, str) or not task.strip():
            raise InvalidArgument("task", "a non-empty description of the task", task)
        if task_type is not None and task_type not in TASK_TYPES:
            raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
        file_list = _strings(files, "files")
        outputs = [o.path for o in _outputs(output_files)] if output_files else []
        for i, path in enumerate(file_list):
            resolve_inside(self.root, path, field=f"files[{i}]")
        for i, path in enumerate(outputs):
            resolve_inside(self.root, path, field=f"output_files[{i}]")
        history = metrics.read_log(self.engine.project.delegation_log).records
        analysis = score_task(task, files=file_list, output_files=outputs, task_type=task_type, history=history)
        result = analysis.as_dict()
        if log_decision:
            metrics.append_record(self.engine.project.delegation_log, {
                "event": "analyze", "timestamp": metrics.now_iso(), "task": task, "task_type": task_type,
                "score": analysis.score, "decision": analysis.recommendation, "verification_passed": None,
                "tokens_generated": 0, "time_seconds": 0.0, "files": file_list, "output_files": outputs,
            })
        return result

    # -- delegate -------------------------------------------------------------------------------------------------

    async def delegate(
        self,
        *,
        progress: Progress = no_progress,
        task: str,
        task_type: str | None = "generate",
        context_files: Sequence[str] | None = None,
        output_files: Sequence[Any],
        verify: str | None = None,
        max_attempts: int | None = 3,
        model: str | None = None,
        wait: float | None = None,
        allow_secrets: bool = False,
        verify_timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Validate, create the run, drive it. `wait=None` waits for the end; a number of seconds returns the run's
        current view after that long (the run goes on in the engine's background task group).
        None for task_type, max_attempts or verify_timeout means the default (callers pass omitted fields as None)."""
        task_type = task_type or "generate"
        max_attempts = 3 if max_attempts is None else max_attempts
        verify_timeout = DEFAULT_TIMEOUT_S if verify_timeout is None else verify_timeout
        if not isinstance(task, str) or not task.strip():
            raise InvalidArgument("task", "a non-empty description of the task", task)
        if task_type not in TASK_TYPES:
            raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidArgument("max_attempts", f"an integer from 1 to {MAX_ATTEMPTS_LIMIT}", max_attempts)
        if verify is not None and (not isinstance(verify, str) or not verify.strip()):
            raise InvalidArgument("verify", "a shell command (run with sh -c in the project root) or nothing", verify)
        if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0):
            raise InvalidArgument("wait", "seconds to wait (>= 0), or nothing to wait for the end", wait)
        if not isinstance(verify_timeout, (int, float)) or verify_timeout <= 0:
            raise InvalidArgument("verify_timeout", "a positive number of seconds", verify_timeout)
        outputs = _outputs(output_files)
        targets = [writable_target(self.root, o.path, field=f"output_files[{i}].path") for i, o in enumerate(outputs)]
        if len(set(targets)) != len(outputs):
            raise InvalidArgument("output_files", "distinct paths", [o.path for o in outputs])
        for i, target in enumerate(targets):
            if any(target in other.parents for other in targets):
                # `a` and `a/b` cannot both be files: the second write would fail half-way through the run.
                raise InvalidArgument(f"output_files[{i}].path", "a file, not a directory of another output",
                                      outputs[i].path)
        contexts = _strings(context_files, "context_files")
        for i, path in enumerate(contexts):
            read_text_file(self.root, path, field=f"context_files[{i}]", allow_secrets=allow_secrets)

        analysis = score_task(task, files=contexts, output_files=[o.path for o in outputs], task_type=task_type)
        run_id = new_id("run")
        with self.engine.store.transaction() as tx:  # created and owned in one commit: no resume can take it
            tx.create(run_id, kind=DELEGATION.kind, state=DELEGATION.initial, data={
                "task": task, "task_type": task_type, "context_files": contexts,
                "output_files": [{"path": o.path, "description": o.description} for o in outputs],
                "verify": verify or "", "verify_timeout": float(verify_timeout), "max_attempts": max_attempts,
                "attempt": 0, "model": model, "allow_secrets": bool(allow_secrets), "score": analysis.score,
                "history": [], "tokens_generated": 0, "prompt_tokens": 0,
            })
            tx.set_owner(run_id, current_token())
        live = self._live[run_id] = _Live()
        log.info("delegation created", run_id=run_id, task_type=task_type, outputs=[o.path for o in outputs])

        task_group = self.engine._task_group
        if wait is None or task_group is None:
            await self._drive(run_id, progress, live)
            return self.view(run_id)
        task_group.start_soon(self._drive_in_background, run_id, progress, live)
        with anyio.move_on_after(wait):
            await live.done.wait()
        return self.view(run_id)

    async def _drive_in_background(self, run_id: str, progress: Progress, live: _Live) -> None:
        # An error here would cancel the whole task group (the MCP server's lifetime): log it, keep the others going.
        try:
            await self._drive(run_id, progress, live)
        except Exception:
            log.exception("background delegation stopped", run_id=run_id)

    async def resume_run(self, record: MachineRecord) -> None:
        """The resume hook: recovery has claimed `record`; drive it to its end from its persisted state."""
        if record.id in self._live:
            return  # this process drives it already (resume called while it runs): never drive a run twice
        live = self._live[record.id] = _Live(resumed=True)
        await self._drive(record.id, no_progress, live)

    # -- result / cancel / stats ----------------------------------------------------------------------------------

    def _record(self, run_id: str) -> MachineRecord:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgument("run_id", "the id of a delegation run (see `local-llm runs`)", run_id)
        record = self.engine.store.get(run_id)
        if record.kind != DELEGATION.kind:
            raise InvalidArgument("run_id", "the id of a delegation run (see `local-llm runs`)", run_id)
        return record

    def view(self, run_id: str) -> dict[str, Any]:
        record = self._record(run_id)
        data = record.data
        with self.engine.store.transaction() as tx:
            writes = journaled(tx.connection, run_id)
        verification = data.get("verification") or {"passed": None, "output_tail": ""}
        return {
            "run_id": run_id,
            "state": record.state,
            "task": data.get("task", ""),
            "task_type": data.get("task_type", ""),
            "model": data.get("model_used") or data.get("model"),
            "files": [
                {"path": w.path, "status": w.status, "existed": w.existed,
                 "bytes": len(w.content) if w.content is not None else 0}
                for w in writes
            ],
            "files_skipped": data.get("files_skipped", []),
            "verification": verification,
            "attempts": data.get("attempt", 0),
            "max_attempts": data.get("max_attempts"),
            "tokens_generated": data.get("tokens_generated", 0),
            "prompt_tokens": data.get("prompt_tokens", 0),
            "time_seconds": _elapsed(record),
            "error": data.get("error"),
            "cancel_requested": bool(data.get("cancel_requested")),
        }

    async def result(self, run_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        record = self._record(run_id)
        if wait and record.state not in DELEGATION.terminal:
            with anyio.move_on_after(wait):
                live = self._live.get(run_id)
                if live is not None:
                    await live.done.wait()
                else:  # driven by another process: its progress is only visible in the store
                    while self.engine.store.get(run_id).state not in DELEGATION.terminal:
                        await anyio.sleep(0.1)
        return self.view(run_id)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        record = self._record(run_id)
        if record.state in DELEGATION.terminal:
            raise UserError(
                f"run {run_id} has finished in state {record.state!r}; there is nothing to cancel "
                "(a finished run's files stay as they are)"
            )
        live = self._live.get(run_id)
        if live is not None:
            live.cancel_requested = True
            self.engine.runs.note(run_id, "cancel_requested", data={"cancel_requested": True})
            if live.scope is not None:
                live.scope.cancel()
            await live.done.wait()
            return self.view(run_id)
        from engine.ownership import token_alive

        if record.owner and record.owner != current_token() and token_alive(record.owner):
            if record.state == "pending":
                try:
                    self.engine.runs.fire(run_id, "cancel", data={"cancel_requested": True}, after=self._ended())
                    return self.view(run_id)
                except (InvalidEvent, StaleVersion):
                    pass  # it started meanwhile: ask its process instead
            # Another live process drives it: it sees the flag within CANCEL_POLL_S and rolls back.
            self.engine.runs.note(run_id, "cancel_requested", data={"cancel_requested": True})
            with anyio.move_on_after(30):
                while self.engine.store.get(run_id).state not in DELEGATION.terminal:
                    await anyio.sleep(0.1)
            return self.view(run_id)
        # Nobody drives it (its process died): cancel and roll back here.
        from engine.recovery import claim

        if claim(self.engine.runs, run_id) is None:
            return self.view(run_id)
        self.engine.runs.note(run_id, "cancel_requested", data={"cancel_requested": True})
        live = self._live.setdefault(run_id, _Live(cancel_requested=True, resumed=True))
        await self._drive(run_id, no_progress, live)
        return self.view(run_id)

    def stats(self) -> dict[str, Any]:
        return metrics.aggregate(metrics.read_log(self.engine.project.delegation_log))

    # -- driving a run --------------------------------------------------------------------------------------------

    def _session_event(self, event: str, only_from: str) -> None:
        from engine.api import SESSION_ID

        try:
            record = self.engine.sessions.ensure(SESSION_ID)
            if record.state == only_from:
                self.engine.sessions.fire(SESSION_ID, event)
        except UserError as exc:  # the session is not the run's business: never fail a run over it
            log.debug("session event skipped", session_event=event, reason=str(exc))

    async def _drive(self, run_id: str, progress: Progress, live: _Live) -> None:
        self._in_flight += 1
        try:
            async with AsyncExitStack() as stack:
                await self._loop(run_id, progress, live, stack)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._session_event("runs_finished", "delegating")
            live.done.set()
            if self._live.get(run_id) is live:
                del self._live[run_id]

    def _ended(self, after: _After | None = None) -> _After:
        """An `after` for a transition that may end the run: the delegation-log line is appended inside the
        transition's transaction. Appended after the commit instead, a crash between the two lost the line for good
        (the run was finished, so no resume came back to it); appended before the commit, a crash leaves the run
        unfinished, and its resumed drive skips a line that is already there."""
        def both(tx: Any, moved: MachineRecord) -> None:
            if after is not None:
                after(tx, moved)
            if moved.state in DELEGATION.terminal:
                live = self._live.get(moved.id)
                self._finish(moved, dedupe=live is not None and live.resumed)

        return both

    def _fire(self, record: MachineRecord, event: str, **kwargs: Any) -> MachineRecord:
        """Fire from the state we acted on; if someone moved the run meanwhile, say so instead of failing."""
        kwargs["after"] = self._ended(kwargs.get("after"))
        try:
            return self.engine.runs.fire(record.id, event, **kwargs)
        except (InvalidEvent, StaleVersion):
            current = self.engine.store.get(record.id)
            if current.state != record.state or current.data.get("cancel_requested"):
                raise _StateMoved() from None
            raise

    async def _loop(self, run_id: str, progress: Progress, live: _Live, stack: AsyncExitStack) -> None:
        ctx = _RunContext(progress=progress)
        locked = False
        while True:
            record = self.engine.store.get(run_id)
            if record.state in DELEGATION.terminal:
                total = float(record.data.get("max_attempts") or 1)
                await _safe_progress(progress, total, total, f"{record.state} after {record.data.get('attempt', 0)} "
                                     "attempt(s)")
                return
            if (record.data.get("cancel_requested") or live.cancel_requested) and record.state != "rolling_back":
                try:
                    record = self._fire(record, "cancel", data={"cancel_requested": True},
                                        payload={"reason": "cancelled by the caller"})
                except _StateMoved:
                    pass
                continue
            if record.state != "rolling_back" and (problem := _incomplete(record.data)):
                self._abort(run_id, problem)
                continue
            try:
                if record.state == "rolling_back":
                    # Rolling back is how a cancel ends: it is not itself cancellable.
                    if not locked:
                        await self._lock(stack, record)
                        locked = True
                    await self._step_rolling_back(record, ctx)  # its test pause is after the first file
                else:
                    if not locked:
                        if await self._cancellable(run_id, live, lambda: self._lock(stack, record)):
                            continue
                        locked = True
                    if record.state != "writing":  # writing pauses after its first file
                        await _test_pause(record.state)
                    step = getattr(self, f"_step_{record.state}")
                    if await self._cancellable(run_id, live, lambda: step(record, ctx)):
                        continue
            except _StateMoved:
                continue
            except Exception as exc:
                if record.state == "rolling_back":
                    # Never spin on a rollback that cannot finish: the run stays in rolling_back for `resume`.
                    log.exception("rollback failed", run_id=run_id)
                    raise
                if isinstance(exc, UserError):
                    reason = str(exc)
                else:  # a bug must not leave files half-done: roll back and say what happened
                    log.exception("delegation step failed", run_id=run_id, state=record.state)
                    reason = f"internal error in state {record.state!r}: {exc!r}"
                self._abort(run_id, reason)

    async def _lock(self, stack: AsyncExitStack, record: MachineRecord) -> None:
        paths = [f.get("path", "") for f in record.data.get("output_files") or [] if isinstance(f, Mapping)]
        await stack.enter_async_context(self._locks.hold(paths))

    def _abort(self, run_id: str, reason: str) -> MachineRecord:
        record = self.engine.store.get(run_id)
        if record.state in DELEGATION.terminal or record.state == "rolling_back":
            return record
        log.warning("delegation aborted", run_id=run_id, state=record.state, reason=reason)
        return self.engine.runs.fire(run_id, "abort", data={"error": reason}, payload={"reason": reason[:500]})

    async def _cancellable(self, run_id: str, live: _Live, work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work`; True if a cancel request (this process or another) stopped it."""
        outcome: dict[str, BaseException] = {}
        with anyio.CancelScope() as scope:
            live.scope = scope
            async with anyio.create_task_group() as tg:
                async def body() -> None:
                    try:
                        await work()
                    except Exception as exc:
                        outcome["error"] = exc
                    finally:
                        tg.cancel_scope.cancel()

                tg.start_soon(self._watch_cancel, run_id, scope)
                tg.start_soon(body)
        live.scope = None
        if "error" in outcome:
            raise outcome["error"]
        return scope.cancelled_caught

    async def _watch_cancel(self, run_id: str, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(CANCEL_POLL_S)
            record = self.engine.store.find(run_id)
            if record is None or record.data.get("cancel_requested"):
                scope.cancel()
                return

    # -- the steps ------------------------------------------------------------------------------------------------

    async def _step_pending(self, record: MachineRecord, ctx: _RunContext) -> None:
        self._fire(record, "start", data={"attempt": 1, "started_at": time.time()}, payload={"attempt": 1})

    async def _step_retrying(self, record: MachineRecord, ctx: _RunContext) -> None:
        attempt = int(record.data.get("attempt", 1)) + 1
        self._fire(record, "regenerate", data={"attempt": attempt}, payload={"attempt": attempt})

    async def _executor(self, ctx: _RunContext) -> Any:
        if ctx.executor is None:
            ctx.executor = await self.engine.lifecycle.executor(progress=ctx.progress)
            self._session_event("run_started", "loaded")
        return ctx.executor

    def _limiter(self, backend: Backend) -> anyio.CapacityLimiter:
        # Keyed by identity (backends need not be hashable); the backend is kept so its id is never reused.
        key = id(backend)
        if key not in self._limiters:
            limiter = anyio.CapacityLimiter(max(1, int(getattr(backend, "parallelism", 1) or 1)))
            self._limiters[key] = (backend, limiter)
        return self._limiters[key][1]

    def _pack(self, record: MachineRecord, backend: Backend, num_ctx: int) -> MachineRecord:
        """Pack the context once per run and keep the prompt in the run's data: every attempt (and a resumed run)
        sends the same first messages, byte for byte."""
        data = record.data
        outputs = [OutputSpec(o["path"], o.get("description", "")) for o in data["output_files"]]
        files = [
            ContextFile(p, read_text_file(self.root, p, field=f"context_files[{i}]",
                                          allow_secrets=bool(data.get("allow_secrets"))))
            for i, p in enumerate(data.get("context_files", []))
        ]
        count = backend.count_tokens
        system, user = base_messages(data["task"], data["task_type"], outputs, [])
        fixed = count(system.content) + count(user.content) + 16
        reserve = answer_room(num_ctx) + (min(answer_room(num_ctx), 512) + FEEDBACK_TOKENS
                                          if int(data.get("max_attempts", 1)) > 1 else 0)
        budget = num_ctx - fixed - reserve
        if budget < 0:
            raise UserError(
                f"num_ctx {num_ctx} leaves no room for the task and the answer; enable a larger context or shorten "
                "the task"
            )
        packed = pack_context(files, budget=budget, count=count, task=data["task"], outputs=outputs)
        system, user = base_messages(data["task"], data["task_type"], outputs, packed.included)
        return self.engine.runs.note(record.id, "packed", data={
            "prompt": {"system": system.content, "user": user.content},
            "files_skipped": list(packed.skipped), "num_ctx": num_ctx,
        }, payload={"context_tokens": packed.tokens, "files_skipped": [s["path"] for s in packed.skipped]})

    async def _step_delegating(self, record: MachineRecord, ctx: _RunContext) -> None:
        executor = await self._executor(ctx)
        backend: Backend = executor.backend
        num_ctx = int(executor.num_ctx)
        if "prompt" not in record.data:
            record = self._pack(record, backend, num_ctx)
        data = record.data
        attempt = int(data.get("attempt", 1))
        paths = [o["path"] for o in data["output_files"]]
        model = data.get("model") or executor.model
        room = answer_room(num_ctx)
        base = (ChatMessage("system", data["prompt"]["system"]), ChatMessage("user", data["prompt"]["user"]))
        messages = self._fit_history(base, data.get("history", []), backend, num_ctx - room)
        await _safe_progress(ctx.progress, attempt - 1, data.get("max_attempts"), f"attempt {attempt}: generating")
        request = GenerateRequest(model=model, messages=messages, schema=answer_schema(paths), num_ctx=num_ctx,
                                  max_tokens=room, temperature=0.1, seed=attempt,
                                  keep_alive=getattr(executor, "keep_alive", None))
        try:
            result = await self._generate(backend, request, ctx, attempt, data.get("max_attempts"))
        except BackendError as exc:
            if not exc.retryable:
                raise
            self._generation_failed(record, None, f"backend error: {exc}")
            return
        counters = {
            "tokens_generated": int(data.get("tokens_generated", 0)) + int(result.completion_tokens),
            "prompt_tokens": int(data.get("prompt_tokens", 0)) + int(result.prompt_tokens),
            "model_used": result.model or model,
        }
        if result.prompt_tokens and result.prompt_tokens > num_ctx - room:
            # The backend cut the prompt silently (Ollama does): the same prompt would be cut again, so stop here.
            raise UserError(
                f"the prompt ({result.prompt_tokens} tokens) did not fit num_ctx {num_ctx} with {room} tokens left for "
                "the answer, so the backend truncated it; pass fewer or smaller context files, or enable a model "
                "with a larger context"
            )
        try:
            if result.done_reason == "length":
                raise AnswerError(
                    f"the answer was cut at the token limit ({result.completion_tokens} tokens); write shorter files"
                )
            files = parse_answer(result.text, paths)
        except AnswerError as exc:
            self._generation_failed(record, result.text, str(exc), extra=counters)
            return
        contents = [(p, files[p].encode("utf-8")) for p in paths]
        root = self.root
        self._fire(
            record, "generated",
            data={**counters, "last_answer": result.text},
            payload={"attempt": attempt, "tokens": result.completion_tokens, "prompt_tokens": result.prompt_tokens},
            after=lambda tx, moved: journal_writes(tx.connection, record.id, root, contents, attempt=attempt),
        )

    def _fit_history(
        self, base: Sequence[Any], history: list[dict[str, str]], backend: Backend, limit: int
    ) -> list[Any]:
        """The base messages plus as many of the newest failed turns as fit `limit` tokens (oldest dropped first)."""
        def size(messages: Sequence[Any]) -> int:
            return sum(backend.count_tokens(m.content) + 4 for m in messages)

        for start in range(len(history) + 1):
            messages = attempt_messages(base, history[start:])
            if size(messages) <= limit:
                return messages
        return list(base)

    async def _generate(
        self, backend: Backend, request: GenerateRequest, ctx: _RunContext, attempt: int, total: Any
    ) -> GenerateResult:
        pieces = [0]

        def on_token(_piece: str) -> None:
            pieces[0] += 1  # may run in a worker thread: only count here, report from the event loop

        async def report() -> None:
            shown = 0
            while True:
                await anyio.sleep(PROGRESS_EVERY_S)
                if pieces[0] != shown:
                    shown = pieces[0]
                    await _safe_progress(ctx.progress, attempt - 1, total,
                                         f"attempt {attempt}: {shown} tokens generated")

        # The backend's error is kept out of the task group: raised inside it, it would leave wrapped in an
        # ExceptionGroup, which `except BackendError` misses (a retryable fault would abort the run).
        outcome: dict[str, Any] = {}
        async with self._limiter(backend):
            async with anyio.create_task_group() as tg:
                tg.start_soon(report)
                try:
                    outcome["result"] = await backend.generate(request, on_token=on_token)
                except Exception as exc:
                    outcome["error"] = exc
                finally:
                    tg.cancel_scope.cancel()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _generation_failed(
        self, record: MachineRecord, answer: str | None, detail: str, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        data = record.data
        history = list(data.get("history", []))
        if answer is not None:
            history.append({"answer": answer, "kind": "answer", "detail": detail})
        last = int(data.get("attempt", 1)) >= int(data.get("max_attempts", 1))
        update: dict[str, Any] = {**(extra or {}), "history": history, "last_error": detail}
        if last:
            update["error"] = f"generation failed after {data.get('attempt')} attempt(s): {detail}"
        log.info("generation failed", run_id=record.id, attempt=data.get("attempt"), detail=detail)
        self._fire(record, "generation_failed", data=update, payload={"attempt": data.get("attempt"),
                                                                      "detail": detail[:500]})

    async def _step_writing(self, record: MachineRecord, ctx: _RunContext) -> None:
        with self.engine.store.transaction() as tx:
            writes = [w for w in journaled(tx.connection, record.id) if w.status != "rolled_back"]
        written = await self._replay(writes, apply_journal, pause_in="writing")
        self._fire(record, "written", data={"files_written": written}, payload={"files": written},
                   after=_mark_writes(record.id, "written"))

    async def _step_verifying(self, record: MachineRecord, ctx: _RunContext) -> None:
        data = record.data
        attempt = int(data.get("attempt", 1))
        await _safe_progress(ctx.progress, attempt - 1, data.get("max_attempts"), f"attempt {attempt}: verifying")
        outcome = await run_verify(data["verify"], cwd=self.root,
                                   timeout=float(data.get("verify_timeout", DEFAULT_TIMEOUT_S)))
        verification = outcome.as_dict()
        if outcome.passed:
            self._fire(record, "passed", data={"verification": verification}, payload={"attempt": attempt})
            return
        history = [*data.get("history", []),
                   {"answer": data.get("last_answer", ""), "kind": "verify", "detail": outcome.output_tail}]
        update: dict[str, Any] = {"verification": verification, "history": history}
        if attempt >= int(data.get("max_attempts", 1)):
            update["error"] = (
                f"verification failed on all {attempt} attempt(s); files rolled back. Last output:\n"
                f"{outcome.output_tail}"
            )
        self._fire(record, "verify_failed", data=update,
                   payload={"attempt": attempt, "exit_code": outcome.exit_code, "timed_out": outcome.timed_out})

    async def _step_rolling_back(self, record: MachineRecord, ctx: _RunContext) -> None:
        with self.engine.store.transaction() as tx:
            writes = journaled(tx.connection, record.id)
        restored = await self._replay(writes, rollback_journal, pause_in="rolling_back")
        self.engine.runs.fire(record.id, "rolled_back", payload={"files": restored},
                              after=self._ended(_mark_writes(record.id, "rolled_back")))

    async def _replay(
        self, writes: Sequence[JournaledWrite], step: Callable[[Sequence[JournaledWrite], Path], list[str]], *,
        pause_in: str,
    ) -> list[str]:
        """Apply `step` (write or roll back) to each journaled file; one at a time so the test-only pause can stop
        the run between two files."""
        done: list[str] = []
        for n, w in enumerate(writes):
            done += step([w], self.root)
            if n == 0:
                await _test_pause(pause_in)
        return done

    def _finish(self, record: MachineRecord, *, dedupe: bool = False) -> None:
        """The run ends in this process (inside the transition's transaction, see _ended): append it to the
        delegation log, unless `dedupe` finds the same end there already (a crash came between the append and the
        commit)."""
        data = record.data
        path = self.engine.project.delegation_log
        if dedupe and any(
            r.get("event") == "run" and r.get("run_id") == record.id and r.get("state") == record.state
            and r.get("attempts") == int(data.get("attempt", 0)) for r in metrics.read_log(path).records
        ):
            log.info("delegation end already logged", run_id=record.id, state=record.state)
            return
        elapsed = _elapsed(record)
        verification = data.get("verification")
        if verification is not None and verification.get("passed") is not None:
            passed: bool | None = bool(verification["passed"])
        elif data.get("verify") and record.state == "failed":
            passed = False
        else:
            passed = None
        line = {
            "event": "run", "timestamp": metrics.now_iso(), "task": data.get("task"),
            "task_type": data.get("task_type"), "score": data.get("score"), "decision": "delegated",
            "verification_passed": passed, "tokens_generated": int(data.get("tokens_generated", 0)),
            "time_seconds": elapsed, "run_id": record.id, "state": record.state,
            "model": data.get("model_used") or data.get("model"), "attempts": int(data.get("attempt", 0)),
            "prompt_tokens": int(data.get("prompt_tokens", 0)),
            "files": [o["path"] for o in data.get("output_files", [])],
            "files_skipped": [s.get("path") for s in data.get("files_skipped", [])],
            "error": data.get("error"),
        }
        try:
            metrics.append_record(path, line)
        except OSError:  # the log is derived from the journal: a full disk must not keep a run from ending
            log.exception("could not append to the delegation log", run_id=record.id)
        log.info("delegation finished", run_id=record.id, state=record.state, seconds=elapsed)


def _mark_writes(run_id: str, status: str) -> Callable[[Any, MachineRecord], None]:
    """An `after=` hook: the run's journaled writes take `status` in the same transaction as the move."""
    def mark(tx: Any, moved: MachineRecord) -> None:
        tx.connection.execute("UPDATE file_writes SET status = ? WHERE run_id = ?", (status, run_id))
    return mark


def _incomplete(data: Mapping[str, Any]) -> str | None:
    """Why a run's data cannot be driven (a run created by something other than `delegate`), or None."""
    outputs = data.get("output_files")
    if not isinstance(data.get("task"), str) or not outputs or not all(
        isinstance(o, Mapping) and isinstance(o.get("path"), str) for o in outputs
    ):
        return "the run's data has no task or output_files to work from; delegate it again"
    return None


def _elapsed(record: MachineRecord) -> float:
    """Wall time from the run's start to its last transition (its end, once finished); resumes included."""
    started = float(record.data.get("started_at") or record.created_at)
    return round(max(0.0, record.updated_at - started), 3)


@dataclass
class _RunContext:
    progress: Progress
    executor: Any = None
