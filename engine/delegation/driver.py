"""The driver: takes a run from whatever state the store holds to a terminal state, one step (engine/delegation/
steps.py) at a time, holding the run's output locks, honouring cancel requests from this process or another, and
turning any failure into a rollback with a reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial

import anyio
import structlog

from engine.context import EngineContext
from engine.delegation.generation import Slots, safe_progress
from engine.delegation.locks import PathLocks
from engine.delegation.moves import RunMoves, StateMoved
from engine.delegation.paths import canonical_relative, output_identity
from engine.delegation.steps import STEPS, Attempt, SessionLink, Step, StepTools, test_pause
from engine.errors import InvalidArgument, UserError
from engine.progress import Progress
from engine.store.db import MachineRecord
from states import DELEGATION, RunData

__all__ = ["CANCEL_POLL_S", "Driver", "Live"]

log = structlog.get_logger(__name__)

CANCEL_POLL_S = 0.2
"""How often a running step looks for a cancel request made by another process."""


@dataclass
class Live:
    """A run driven by this process."""

    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    cancel_requested: bool = False
    resumed: bool = False
    """Taken over from a process that died: its end may already be in the delegation log."""


class Driver:
    def __init__(self, ctx: EngineContext, session: SessionLink) -> None:
        self.ctx = ctx
        self.session = session
        self.live: dict[str, Live] = {}
        self.moves = RunMoves(ctx, resumed=lambda run_id: (live := self.live.get(run_id)) is not None and live.resumed)
        self._tools = StepTools(ctx=ctx, moves=self.moves, session=session, slots=Slots())
        self._locks = PathLocks(ctx.project.workflow_dir / "locks")
        self._in_flight = 0
        self._verify_locks: dict[str, anyio.Lock] = {}
        """One per batch whose children verify one at a time (RunData.verify_alone): a suite-wide verify never
        sees another child's unverified files."""

    async def drive(self, run_id: str, progress: Progress, live: Live) -> None:
        self._in_flight += 1
        try:
            async with AsyncExitStack() as stack:
                await self._loop(run_id, progress, live, stack)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self.session.runs_finished()
            live.done.set()
            if self.live.get(run_id) is live:
                del self.live[run_id]

    async def _loop(self, run_id: str, progress: Progress, live: Live, stack: AsyncExitStack) -> None:
        attempt = Attempt(progress=progress)
        locked = False
        while True:
            record = self.ctx.store.get(run_id)
            data = RunData.from_json(record.data)
            if record.state in DELEGATION.terminal:
                total = float(data.max_attempts)
                await safe_progress(progress, total, total, f"{record.state} after {data.attempt} attempt(s)")
                return
            if (data.cancel_requested or live.cancel_requested) and record.state != "rolling_back":
                try:
                    self.moves.fire(record, "cancel", data={"cancel_requested": True},
                                    payload={"reason": "cancelled by the caller"})
                except StateMoved:
                    pass
                continue
            if record.state != "rolling_back" and (problem := data.incomplete()):
                self.moves.abort(run_id, problem)
                continue
            try:
                if record.state == "rolling_back":
                    # Rolling back is how a cancel ends: it is not itself cancellable.
                    if not locked:
                        await self._lock(stack, data)
                        locked = True
                    await STEPS["rolling_back"](self._tools, record, attempt)  # pauses after its first file
                else:
                    if not locked:
                        if await self._cancellable(run_id, live, partial(self._lock, stack, data)):
                            continue
                        locked = True
                    if record.state != "writing":  # writing pauses after its first file
                        await test_pause(record.state)
                    step = STEPS[record.state]
                    if record.state == "verifying" and data.verify_alone and data.batch_id:
                        lock = self._verify_locks.setdefault(data.batch_id, anyio.Lock())

                        async def alone(step: Step = step, record: MachineRecord = record,
                                        lock: anyio.Lock = lock) -> None:
                            async with lock:
                                await step(self._tools, record, attempt)

                        work: Callable[[], Awaitable[None]] = alone
                    else:
                        work = partial(step, self._tools, record, attempt)
                    if await self._cancellable(run_id, live, work):
                        continue
            except StateMoved:
                continue
            except Exception as exc:
                if record.state == "rolling_back":
                    # Never spin on a rollback that cannot finish: the run stays in rolling_back for `resume`, which
                    # counts it toward the recovery limit and ends it there (delegation/recovery.py).
                    log.exception("rollback failed", run_id=run_id)
                    self.moves.note(run_id, "rollback_error", data={"last_error": f"{type(exc).__name__}: {exc}"},
                                    payload={"error": f"{type(exc).__name__}: {exc}"[:500]})
                    return
                if isinstance(exc, UserError):
                    reason = str(exc)
                else:  # a bug must not leave files half-done: roll back and say what happened
                    log.exception("delegation step failed", run_id=run_id, state=record.state)
                    reason = f"internal error in state {record.state!r}: {exc!r}"
                self.moves.abort(run_id, reason)

    async def _lock(self, stack: AsyncExitStack, data: RunData) -> None:
        # Keyed on the file's identity (its real path, case-folded where the file system ignores case), so `out.py`,
        # `./out.py`, `OUT.py` there and a symlink to it take one lock. Data that is not a delegate's (see
        # RunData.incomplete) names no paths to lock.
        paths = data.output_paths if data.incomplete() is None else []
        keys = [self._lock_key(p) for p in paths]
        await stack.enter_async_context(self._locks.hold(keys))

    def _lock_key(self, path: str) -> str:
        try:
            return output_identity(self.ctx.project.root, path, field="output_files.path").key
        except InvalidArgument:
            # A symlink put on its way now leads out of the project: every write refuses it (shared_tree.locate), and
            # the run must still reach its rollback, so it is locked under its own spelling.
            return "unresolved:" + canonical_relative(path)

    async def _cancellable(self, run_id: str, live: Live, work: Callable[[], Awaitable[None]]) -> bool:
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
            # A cancel from another process is only visible in the store.
            await anyio.sleep(CANCEL_POLL_S)
            record = self.ctx.store.find(run_id)
            if record is None or RunData.from_json(record.data).cancel_requested:
                scope.cancel()
                return
