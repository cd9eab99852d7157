"""The session: the one driver of the session machine. enable, disable, status, the executor for delegation runs,
and the ends of a session.

`enable` walks idle -> starting -> loaded: pick a backend, prepare it (engine/session/prepare.py: start `ollama serve`
detached when installed but not running, pull the model if missing, choose one num_ctx, load). `disable` walks
loaded -> stopping -> idle: unload unless the session was enabled with `:persist`, and stop the server only when
asked. Any failure moves the session to `failed` with a reason that says what to do; `enable` again retries.
Delegation runs never fire the session's events: they call `run_started()` / `runs_finished()`.

Everything a later process needs is in the session's data (states.SessionData), so a `local-llm delegate` in a fresh
process rebuilds the same executor that `local-llm enable` prepared.

Ownership: a session enabled by a long-lived owner (the MCP server, which calls `claim()`) records the owner's
process token; `end()` unloads at a clean exit, and `claim()` at the next start cleans up after an owner that was
killed. A session enabled from the CLI has no owner: it stays until `disable` (bounded by Ollama's keep_alive when
not persisted).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread
import structlog

from engine.context import EngineContext
from engine.errors import UserError
from engine.executor import Executor
from engine.executor.backends import make_backend, select_backend
from engine.executor.backends.base import Backend
from engine.executor.backends.ollama import OllamaBackend, canonical_model, ollama_base_url
from engine.executor.forms import check_answer_form
from engine.progress import Progress, no_progress
from engine.session.choices import check_slots, cleared, resume_choice, unprepared
from engine.session.llm_spec import MODEL_ENV, LlmSpec, parse_llm_spec
from engine.session.prepare import SERVER_TIMEOUT_ENV, Timeouts, keep_alive_for, prepare
from engine.session.processes import stop_ollama_server
from engine.session.status import StatusReader
from engine.session.views import capability
from engine.store.db import MachineRecord
from engine.store.machines import InvalidEvent
from engine.store.ownership import current_token, token_alive
from states import SESSION_ID, SessionData

__all__ = ["EnableFailed", "Session", "SessionBusy", "SessionFailed"]

log = structlog.get_logger(__name__)

EXECUTOR_POLL_S = 0.1
"""How often a run waiting for a session being started or stopped by another process looks again."""


class EnableFailed(UserError):
    """enable failed; the session is now `failed` with this reason (`status` is the session's status)."""

    def __init__(self, reason: str, status: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = dict(status or {})


class SessionFailed(UserError):
    pass


class SessionBusy(UserError):
    pass


class Session:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.owns_sessions = False
        """Set by `claim()` in a long-lived process (the MCP server): sessions it enables are unloaded when it ends
        or dies."""
        self.timeouts = Timeouts(server_s=float(os.environ.get(SERVER_TIMEOUT_ENV) or 30.0))
        self._backend: Backend | None = None
        self._backend_key: tuple[str, str | None, Any, int | None] | None = None
        self._retired: list[Backend] = []
        self._busy = 0
        """enable/disable calls in flight in this process (the MCP server may get two at once)."""
        self._executor_enable = anyio.Lock()
        """Runs that find the session idle enable it one at a time (the others then find it loaded)."""
        self._status = StatusReader(backend_for=self._backend_for, runs_active=ctx.runs_active)

    # -- the machine ------------------------------------------------------------------------------------------------

    def record(self) -> MachineRecord:
        return self.ctx.sessions.ensure(SESSION_ID)

    def _state(self) -> tuple[str, SessionData]:
        record = self.record()
        return record.state, SessionData.from_json(record.data)

    def _fire(self, event: str, *, data: Mapping[str, Any] | None = None,
              payload: Mapping[str, Any] | None = None) -> MachineRecord:
        return self.ctx.sessions.fire(SESSION_ID, event, data=data, payload=payload)

    def run_started(self) -> None:
        """A delegation run got its executor: a loaded session is now delegating."""
        self._move_if("run_started", only_from="loaded")

    def runs_finished(self) -> None:
        """No run of this process is in flight any more: a delegating session is loaded again."""
        self._move_if("runs_finished", only_from="delegating")

    def _move_if(self, event: str, *, only_from: str) -> None:
        try:
            if self.record().state == only_from:
                self._fire(event)
        except UserError as exc:  # another process moved it meanwhile: the session is not the run's business
            log.debug("session event skipped", session_event=event, reason=str(exc))

    # -- backends ---------------------------------------------------------------------------------------------------

    def _backend_for(self, data: SessionData) -> Backend:
        """The session's backend, built once per Session from the persisted data."""
        key = (str(data.backend), data.base_url, data.keep_alive, data.slots)
        if self._backend is None or self._backend_key != key:
            if self._backend is not None:
                self._retired.append(self._backend)
            backend = make_backend(key[0], base_url=key[1], slots=data.slots or 1)
            if isinstance(backend, OllamaBackend):
                backend.default_keep_alive = data.keep_alive
            self._backend, self._backend_key = backend, key
        return self._backend

    async def drop_backend(self) -> None:
        for backend in [*self._retired, *([self._backend] if self._backend is not None else [])]:
            await backend.aclose()
        self._retired.clear()
        self._backend = self._backend_key = None

    # -- capability and status -------------------------------------------------------------------------------------

    async def capability(self) -> dict[str, Any]:
        return await capability()

    async def status(self) -> dict[str, Any]:
        """What the session is and whether it still answers (engine/session/status.py reads it)."""
        state, data = self._state()
        return await self._status.read(state, data)

    async def _status_with(self, server_stop: str | None) -> dict[str, Any]:
        status = await self.status()
        if server_stop is not None:
            status["server_stop"] = server_stop
        return status

    # -- enable -----------------------------------------------------------------------------------------------------

    async def enable(
        self, *, llm: str | bool | None = True, backend: str | None = None, slots: int | None = None,
        answer_form: str | None = None, progress: Progress = no_progress,
    ) -> dict[str, Any]:
        """idle/failed -> starting -> loaded; raises EnableFailed (the session is then `failed`) with what to do.
        `slots`: how many generations run at once (None: what the server says, else 1). `answer_form`: the session's
        default for delegations (None: keep it, else the backend's)."""
        spec = parse_llm_spec(llm, default_model=os.environ.get(MODEL_ENV))
        slots, form = check_slots(slots, backend=backend or spec.backend), check_answer_form(answer_form, auto=False)
        self._busy += 1
        try:
            status = await self._enable(spec, llm, backend, slots, progress)
        finally:
            self._busy -= 1
        if form is not None:
            self.ctx.sessions.note(SESSION_ID, "answer_form", data={"answer_form": form})
            status["answer_form"] = form
        return status

    async def _enable(
        self, spec: LlmSpec, llm: str | bool | None, backend: str | None, slots: int | None, progress: Progress
    ) -> dict[str, Any]:
        record = self.record()
        if record.state in ("loaded", "delegating"):
            return await self._already_enabled(SessionData.from_json(record.data), spec, backend, slots)
        if record.state in ("starting", "stopping"):
            self._take_over_stale(record)
        try:
            chosen = await select_backend(backend or spec.backend)
            check_slots(slots, backend=chosen.name)
        except UserError as exc:
            # Nothing started yet, but the session still records why enable could not proceed.
            self._fire("enable", data=self._enable_data(None, spec), payload={"llm": str(llm)})
            raise await self._failed(str(exc)) from exc
        self._fire("enable", data=self._enable_data(chosen.name, spec),
                   payload={"llm": str(llm), "backend": chosen.name, "why": chosen.reason})
        log.info("enabling", backend=chosen.name, model=spec.model, persist=spec.persist)
        try:
            ready = await prepare(chosen.name, spec, slots=slots, progress=progress, timeouts=self.timeouts,
                                  server_log=self.ctx.project.workflow_dir / "ollama-serve.log")
        except TimeoutError as exc:
            raise await self._failed(
                f"timed out while enabling ({exc or 'no answer in time'}); check the server log "
                f"{self.ctx.project.workflow_dir / 'ollama-serve.log'} and run enable again") from exc
        except UserError as exc:
            raise await self._failed(str(exc)) from exc
        except Exception as exc:  # a bug or an unexpected library error: still a failed session, not a stuck one
            log.exception("enable crashed")
            raise await self._failed(f"enable failed unexpectedly ({type(exc).__name__}: {exc}); see "
                                     f"{self.ctx.project.engine_log} and run enable again") from exc
        self._fire("ready", data={**ready, "busy_by": None, "reason": None, "ready_at": time.time()},
                   payload={"loaded_model": ready["model"], "num_ctx": ready["num_ctx"]})
        await progress(1, 1, f"{ready['model']} loaded ({chosen.name}, num_ctx {ready['num_ctx']})")
        return await self.status()

    def _enable_data(self, backend: str | None, spec: LlmSpec) -> dict[str, Any]:
        return {
            **unprepared(), "backend": backend, "model": spec.model, "persist": spec.persist,
            "keep_alive": keep_alive_for(spec.persist), "owner": current_token() if self.owns_sessions else None,
            "busy_by": current_token(), "reason": None, "capabilities": None,
        }

    async def _already_enabled(
        self, data: SessionData, spec: LlmSpec, backend: str | None, slots: int | None
    ) -> dict[str, Any]:
        same_model = spec.model is None or canonical_model(spec.model) == canonical_model(str(data.model))
        same_backend = (backend or spec.backend) in (None, data.backend)
        if not (same_model and same_backend):
            raise SessionBusy(
                f"the session is already enabled with {data.model} on {data.backend}; run disable first "
                "to switch models"
            )
        if spec.persist and not data.persist:
            # Turning persist on needs the new keep_alive on the server too.
            keep_alive = keep_alive_for(True)
            self.ctx.sessions.note(SESSION_ID, "persist", data={"persist": True, "keep_alive": keep_alive})
            persisted = SessionData.from_json({**data.to_json(), "keep_alive": keep_alive})
            await self._backend_for(persisted).load(str(data.model), num_ctx=int(data.num_ctx or 0),
                                                    keep_alive=keep_alive)
        check_slots(slots, backend=data.backend)
        if slots is not None and (slots, "setting") != (data.slots, data.slots_from):
            # The engine's own limit: nothing to reload; this process's next executor gets a backend with the new one.
            self.ctx.sessions.note(SESSION_ID, "slots", data={"slots": slots, "slots_from": "setting"})
        return await self.status()

    def _take_over_stale(self, record: MachineRecord) -> MachineRecord:
        """A session left in starting/stopping by a process that died can be failed and retried; a live one cannot."""
        owner = SessionData.from_json(record.data).busy_by
        if owner == current_token() and self._busy:
            raise SessionBusy(f"the session is {record.state} (another enable/disable of this process is running)")
        if owner and owner != current_token() and token_alive(owner):
            raise SessionBusy(f"the session is {record.state} in another process ({owner}); wait for it to finish")
        reason = f"interrupted while {record.state}"
        return self._fire("fail", data={"reason": reason}, payload={"reason": reason})

    async def _failed(self, reason: str) -> EnableFailed:
        try:
            self._fire("fail", data={"reason": reason}, payload={"reason": reason})
        except InvalidEvent:
            log.warning("could not mark the session failed", reason=reason)
        await self.drop_backend()
        # info: the caller gets the reason in EnableFailed and says it; a warning would repeat it on stderr.
        log.info("enable failed", reason=reason)
        return EnableFailed(reason, await self.status())

    # -- disable ----------------------------------------------------------------------------------------------------

    async def disable(self, *, stop_server: bool = False, progress: Progress = no_progress) -> dict[str, Any]:
        """Unload (unless persist) and return to idle; `stop_server` also stops `ollama serve`. The status carries
        `server_stop` (what happened to the server) when it was asked for."""
        self._busy += 1
        try:
            return await self._disable(stop_server, progress)
        finally:
            self._busy -= 1

    async def _disable(self, stop_server: bool, progress: Progress) -> dict[str, Any]:
        record = self.record()
        if record.state in ("starting", "stopping"):
            # Only a process that died mid-way leaves these; a live one is refused (SessionBusy).
            record = self._take_over_stale(record)
        data = SessionData.from_json(record.data)
        if record.state in ("idle", "failed"):
            if record.state == "failed":
                await self._unload_quietly(data)
                self._fire("reset", data=cleared(data), payload={"stop_server": stop_server})
            await self.drop_backend()
            return await self._status_with(await self._stop_server(data, progress) if stop_server else None)
        if runs := self.ctx.runs_active():
            log.warning("disabling with runs in flight", runs_active=runs)
        self._fire("disable", data={"busy_by": current_token()}, payload={"stop_server": stop_server})
        try:
            if not data.persist and data.model and data.backend:
                await progress(0, None, f"unloading {data.model}")
                await self._backend_for(data).unload(data.model)
        except UserError as exc:
            reason = f"disable could not unload {data.model}: {exc}; run disable again (or enable to retry)"
            self._fire("fail", data={"reason": reason, "busy_by": None}, payload={"reason": reason})
            await self.drop_backend()
            raise SessionFailed(reason) from exc
        await self.drop_backend()
        self._fire("stopped", data=cleared(data), payload={"unloaded": not data.persist})
        note = await self._stop_server(data, progress) if stop_server else None
        await progress(1, 1, "disabled")
        return await self._status_with(note)

    async def _unload_quietly(self, data: SessionData) -> None:
        if data.persist or not data.model or not data.backend:
            return
        try:
            await self._backend_for(data).unload(data.model)
        except UserError as exc:
            log.info("nothing to unload", reason=str(exc))

    async def _stop_server(self, data: SessionData, progress: Progress) -> str:
        if (data.backend or data.last_backend or "ollama") != "ollama":
            return "not stopped: the session's backend is not Ollama"
        note = await stop_ollama_server(base_url=ollama_base_url(), recorded_pid=data.server_pid, progress=progress)
        log.info("stop ollama serve", result=note)
        return note

    # -- the executor for runs ------------------------------------------------------------------------------------

    async def executor(self, *, progress: Progress = no_progress) -> Executor:
        """The loaded session's backend for a delegation. An idle session is enabled first with the defaults
        (`llm=true`: the backend selection and recommended model); a failed one raises its reason (enable again
        retries). A session that this or another live process is starting or stopping is waited for (as long as a
        start may take, then SessionBusy): runs resumed together, or a server restarted beside another, all ask for
        it at the same moment, and failing them over a start in progress lost them."""
        deadline = anyio.current_time() + self.timeouts.server_s + self.timeouts.load_s
        while True:
            record = self.record()
            if record.state == "idle":
                async with self._executor_enable:
                    idle = self.record()
                    if idle.state == "idle":
                        try:
                            choice = resume_choice(SessionData.from_json(idle.data))
                            await self.enable(llm=choice.llm, backend=choice.backend, slots=choice.slots,
                                              progress=progress)
                        except SessionBusy:
                            pass  # another process began to start it first: wait for it below
                continue
            if record.state in ("starting", "stopping"):
                try:
                    self._take_over_stale(record)  # a dead process's leftover becomes `failed`, reported below
                except SessionBusy:
                    if anyio.current_time() > deadline:
                        raise
                    await anyio.sleep(EXECUTOR_POLL_S)  # another process's start: only the store shows its end
                continue
            break
        data = SessionData.from_json(record.data)
        if record.state == "failed":
            raise SessionFailed(f"the session failed: {data.reason}; fix that and run `local-llm enable` again")
        if record.state not in ("loaded", "delegating") or not data.model or not data.num_ctx:
            raise SessionBusy(f"the session is {record.state} in another process; retry when it is loaded")
        backend = self._backend_for(data)
        if data.backend == "embedded":
            # In-process model: load it here (cached per process) so token counts are exact from the first prompt.
            await backend.load(data.model, num_ctx=data.num_ctx, keep_alive=None)
        return Executor(backend=backend, model=data.model, num_ctx=data.num_ctx, keep_alive=data.keep_alive,
                        answer_form=data.answer_form, parameters=data.parameters)

    # -- the ends of a session --------------------------------------------------------------------------------------

    async def end(self) -> dict[str, Any]:
        """At a clean exit of the owner (the MCP server): unload unless persist, leave Ollama running, back to idle."""
        state, data = self._state()
        if state in ("loaded", "delegating", "starting"):
            if data.persist:
                log.info("session ends; the model stays loaded (persist)", model=data.model)
                self.ctx.sessions.note(SESSION_ID, "owner_left", data={"owner": None})
            else:
                try:
                    await self.disable(stop_server=False)
                except (SessionBusy, InvalidEvent) as exc:
                    # Another server on the project is ending or restarting it at the same moment: its business now.
                    log.info("the session is being changed by another process", reason=str(exc))
        await self.drop_backend()
        return await self.status()

    async def claim(self) -> dict[str, Any] | None:
        """At the start of a long-lived owner: this process now owns the sessions it enables, and a non-persist
        session left loaded by an owner that died (SIGKILL) is unloaded and moved to idle. Returns the new status
        when something was cleaned up."""
        self.owns_sessions = True
        record = self.record()
        owner = SessionData.from_json(record.data).owner
        if not owner or owner == current_token() or token_alive(owner) or record.state == "idle":
            return None
        if record.state in ("starting", "stopping"):
            record = self._take_over_stale(record)
        data = SessionData.from_json(record.data)
        if record.state in ("loaded", "delegating") and data.persist:
            self.ctx.sessions.note(SESSION_ID, "owner_left", data={"owner": None})
            return None
        log.info("cleaning up a session whose owner died", owner=owner, state=record.state)
        if record.state in ("loaded", "delegating"):
            try:
                await self.disable()
            except SessionFailed:
                self._fire("reset", data=cleared(SessionData.from_json(self.record().data)))
        elif record.state == "failed":
            await self._unload_quietly(data)
            self._fire("reset", data=cleared(data))
        return await self.status()
