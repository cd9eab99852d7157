"""Session lifecycle: capability, enable, disable, status, and the live executor for delegations.

`enable` walks the session machine idle -> starting -> loaded: pick a backend, start `ollama serve` detached when it is
installed but not running (it outlives this process), pull the model if missing, choose one `num_ctx` for the session
and load the model with it. `disable` walks loaded -> stopping -> idle: unload unless the session was enabled with
`:persist`, and stop the server only when asked. Any failure moves the session to `failed` with a reason that says what
to do; `enable` again retries.

Everything a later process needs is in the session's data (backend, base URL, model, num_ctx, keep_alive), so a
`local-llm delegate` in a fresh process rebuilds the same executor that `local-llm enable` prepared.

Session ownership: a session enabled by a long-lived owner (the MCP server, which sets `owns_sessions`) records the
owner's process token; `end_session()` unloads at a clean exit, and `unload_leftover()` at the next start cleans up
after an owner that was killed. A session enabled from the CLI has no owner: it stays until `disable`
(bounded by Ollama's keep_alive when not persisted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog

from engine.backends import NoBackend, make_backend, ollama_installed, select_backend
from engine.backends.base import Backend, BackendError, ModelInfo, ModelMissing
from engine.backends.embedded import EMBEDDED_MODEL, embedded_installed
from engine.backends.ollama import OllamaBackend, canonical_model, context_length_from_show, ollama_base_url
from engine.backends.openai import OpenAIBackend
from engine.errors import UserError
from engine.gpu import GB, GpuReport, choose_num_ctx, probe_gpus, recommend_model, vram_summary
from engine.llm_spec import LlmSpec, parse_llm_spec
from engine.machines import InvalidEvent
from engine.ownership import current_token, token_alive
from engine.progress import Progress, no_progress
from engine.store import MachineRecord

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = [
    "EnableFailed",
    "Executor",
    "Lifecycle",
    "SessionBusy",
    "SessionFailed",
    "keep_alive_for",
]

log = structlog.get_logger(__name__)

SERVER_TIMEOUT_ENV = "LOCAL_LLM_SERVER_TIMEOUT"
EXECUTOR_POLL_S = 0.1
STATUS_GPU_MAX_AGE_S = 1.0
"""How often a run waiting for a session being started or stopped elsewhere looks again."""
SESSION_KEEP_ALIVE = "60m"
"""A non-persisted session's keep_alive: refreshed by every request, and bounded so that a session whose owner died
does not hold the VRAM forever."""


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


@dataclass(frozen=True)
class Executor:
    """What a delegation needs: the live backend of the loaded session, its model, and the session's num_ctx."""

    backend: Backend
    model: str
    num_ctx: int
    keep_alive: str | int | None = None


def keep_alive_for(persist: bool) -> str | int:
    """Persisted sessions keep the model loaded forever (any negative value); others for SESSION_KEEP_ALIVE."""
    return -1 if persist else SESSION_KEEP_ALIVE


def _session_id() -> str:
    from engine.api import SESSION_ID

    return SESSION_ID


def _model_dict(m: ModelInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name}
    if m.size_bytes is not None:
        out["size_bytes"] = m.size_bytes
    if m.size_vram is not None:
        out["size_vram_bytes"] = m.size_vram
        if m.size_bytes:
            out["on_gpu"] = round(m.size_vram / m.size_bytes, 2)
    if m.context_length is not None:
        out["context_length"] = m.context_length
    if "expires_at" in m.details:
        out["expires_at"] = m.details["expires_at"]
    return out


class Lifecycle:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.owns_sessions = False
        """Set by a long-lived process (the MCP server): sessions it enables are unloaded when it ends or dies."""
        self.server_timeout_s = float(os.environ.get(SERVER_TIMEOUT_ENV) or 30.0)
        self.load_timeout_s = 300.0
        self._backend: Backend | None = None
        self._backend_key: tuple[str, str | None, Any] | None = None
        self._retired: list[Backend] = []
        self._busy = 0
        """enable/disable calls in flight in this process (the MCP server may get two at once)."""
        self._executor_enable = anyio.Lock()
        """Runs that find the session idle enable it one at a time (the others then find it loaded)."""
        self._gpus: tuple[float, GpuReport] | None = None

    # -- helpers ----------------------------------------------------------------------------------------------------

    def _record(self) -> MachineRecord:
        return self.engine.session()

    def _fire(self, event: str, *, data: Mapping[str, Any] | None = None,
              payload: Mapping[str, Any] | None = None) -> MachineRecord:
        return self.engine.sessions.fire(_session_id(), event, data=data, payload=payload)

    def _runs_active(self) -> int:
        from states import DELEGATION

        return self.engine.store.count(
            kind=DELEGATION.kind, states=[s for s in DELEGATION.states if s not in DELEGATION.terminal]
        )

    def _backend_for(self, data: Mapping[str, Any]) -> Backend:
        """The session's backend, built once per Lifecycle from the persisted data."""
        key = (str(data["backend"]), data.get("base_url"), data.get("keep_alive"))
        if self._backend is None or self._backend_key != key:
            if self._backend is not None:
                self._retired.append(self._backend)
            backend = make_backend(key[0], base_url=key[1])
            if isinstance(backend, OllamaBackend):
                backend.default_keep_alive = data.get("keep_alive")
            self._backend, self._backend_key = backend, key
        return self._backend

    async def _drop_backend(self) -> None:
        for backend in [*self._retired, *([self._backend] if self._backend is not None else [])]:
            await backend.aclose()
        self._retired.clear()
        self._backend = self._backend_key = None

    def _server_log(self) -> Path:
        return self.engine.project.workflow_dir / "ollama-serve.log"

    # -- capability -------------------------------------------------------------------------------------------------

    async def capability(self) -> dict[str, Any]:
        gpus: GpuReport = await anyio.to_thread.run_sync(probe_gpus)
        reasons: list[str] = []
        if gpus.reason:
            reasons.append(gpus.reason)
        probe = OllamaBackend(ollama_base_url())
        try:
            version = await probe.version()
            models = [_model_dict(m) for m in await probe.models()] if version else []
        except BackendError as exc:
            version, models = None, []
            reasons.append(str(exc))
        finally:
            await probe.aclose()
        installed = ollama_installed()
        recommendation = recommend_model(gpus.largest_total)
        pulled = {canonical_model(m["name"]) for m in models}
        recommended_pulled = bool(recommendation.model and canonical_model(recommendation.model) in pulled)
        reasons.append(recommendation.reason + (" (already pulled)" if recommended_pulled else
                                                " (not pulled yet: enable pulls it)" if recommendation.model else ""))
        embedded = embedded_installed()
        if embedded:
            models.append({"name": EMBEDDED_MODEL, "backend": "embedded"})
        try:
            selection = await select_backend(None, ollama_running=version is not None)
            backend: str | None = selection.name
            reasons.append(f"backend {selection.name}: {selection.reason}")
        except NoBackend as exc:
            backend = None
            reasons.append(str(exc))
        except UserError as exc:  # a bad $LOCAL_LLM_BACKEND
            backend = None
            reasons.append(str(exc))
        return {
            "can_enable": backend is not None,
            "gpus": gpus.as_list(),
            "backend": backend,
            "ollama": {"installed": installed is not None, "running": version is not None, "version": version,
                       "url": ollama_base_url(), "path": installed},
            "embedded": {"installed": embedded, "model": EMBEDDED_MODEL if embedded else None},
            "models": models,
            "recommended_model": recommendation.model,
            "recommended_pulled": recommended_pulled,
            "reasons": reasons,
        }

    # -- enable -----------------------------------------------------------------------------------------------------

    async def enable(
        self, llm: str | bool | None = True, *, backend: str | None = None, progress: Progress = no_progress
    ) -> dict[str, Any]:
        """idle/failed -> starting -> loaded; raises EnableFailed (the session is then `failed`) with what to do."""
        spec = parse_llm_spec(llm)
        self._busy += 1
        try:
            return await self._enable(spec, llm, backend, progress)
        finally:
            self._busy -= 1

    async def _enable(
        self, spec: LlmSpec, llm: str | bool | None, backend: str | None, progress: Progress
    ) -> dict[str, Any]:
        record = self._record()
        if record.state in ("loaded", "delegating"):
            return await self._already_enabled(record, spec, backend)
        if record.state in ("starting", "stopping"):
            record = self._take_over_stale(record)
        try:
            chosen = await select_backend(backend or spec.backend)
        except UserError as exc:
            # Nothing started yet, but the session still records why enable could not proceed.
            self._fire("enable", data=self._enable_data(None, spec), payload={"llm": str(llm)})
            raise await self._failed(str(exc)) from exc
        self._fire("enable", data=self._enable_data(chosen.name, spec),
                   payload={"llm": str(llm), "backend": chosen.name, "why": chosen.reason})
        log.info("enabling", backend=chosen.name, model=spec.model, persist=spec.persist)
        try:
            if chosen.name == "ollama":
                ready = await self._enable_ollama(spec, progress)
            elif chosen.name == "embedded":
                ready = await self._enable_embedded(spec, progress)
            else:
                ready = await self._enable_openai(spec, progress)
        except TimeoutError as exc:
            raise await self._failed(f"timed out while enabling ({exc or 'no answer in time'}); check the server "
                                     f"log {self._server_log()} and run enable again") from exc
        except UserError as exc:
            raise await self._failed(str(exc)) from exc
        except Exception as exc:  # a bug or an unexpected library error: still a failed session, not a stuck one
            log.exception("enable crashed")
            raise await self._failed(f"enable failed unexpectedly ({type(exc).__name__}: {exc}); see "
                                     f"{self.engine.project.engine_log} and run enable again") from exc
        self._fire("ready", data={**ready, "reason": None, "ready_at": time.time()},
                   payload={"loaded_model": ready["model"], "num_ctx": ready["num_ctx"]})
        await progress(1, 1, f"{ready['model']} loaded ({chosen.name}, num_ctx {ready['num_ctx']})")
        return await self.status()

    def _enable_data(self, backend: str | None, spec: LlmSpec) -> dict[str, Any]:
        return {
            "backend": backend,
            "model": spec.model,
            "persist": spec.persist,
            "keep_alive": keep_alive_for(spec.persist),
            "owner": current_token() if self.owns_sessions else None,
            "busy_by": current_token(),
            "reason": None,
            "num_ctx": None,
            "base_url": None,
        }

    async def _already_enabled(self, record: MachineRecord, spec: LlmSpec, backend: str | None) -> dict[str, Any]:
        data = record.data
        same_model = spec.model is None or canonical_model(spec.model) == canonical_model(str(data.get("model")))
        same_backend = (backend or spec.backend) in (None, data.get("backend"))
        if not (same_model and same_backend):
            raise SessionBusy(
                f"the session is already enabled with {data.get('model')} on {data.get('backend')}; run disable first "
                "to switch models"
            )
        if spec.persist and not data.get("persist"):
            # Turning persist on needs the new keep_alive on the server too.
            keep_alive = keep_alive_for(True)
            self.engine.sessions.note(_session_id(), "persist", data={"persist": True, "keep_alive": keep_alive})
            executor_backend = self._backend_for({**data, "keep_alive": keep_alive})
            await executor_backend.load(str(data["model"]), num_ctx=int(data["num_ctx"]), keep_alive=keep_alive)
        return await self.status()

    def _take_over_stale(self, record: MachineRecord) -> MachineRecord:
        """A session left in starting/stopping by a process that died can be failed and retried; a live one cannot."""
        owner = record.data.get("busy_by")
        if owner == current_token() and self._busy:
            raise SessionBusy(f"the session is {record.state} (another enable/disable of this process is running)")
        if owner and owner != current_token() and token_alive(owner):
            raise SessionBusy(f"the session is {record.state} in another process ({owner}); wait for it to finish")
        return self._fire("fail", data={"reason": f"interrupted while {record.state}"},
                          payload={"reason": f"interrupted while {record.state}"})

    async def _failed(self, reason: str) -> EnableFailed:
        try:
            self._fire("fail", data={"reason": reason}, payload={"reason": reason})
        except InvalidEvent:
            log.warning("could not mark the session failed", reason=reason)
        await self._drop_backend()
        log.warning("enable failed", reason=reason)
        return EnableFailed(reason, await self.status())

    async def _enable_ollama(self, spec: LlmSpec, progress: Progress) -> dict[str, Any]:
        base_url = ollama_base_url()
        backend = OllamaBackend(base_url)
        try:
            await progress(0, None, f"checking Ollama at {base_url}")
            version = await backend.version()
            server: dict[str, Any] = {}
            if version is None:
                server = await self._start_ollama(backend, progress)
                version = server["server_version"]
            gpus: GpuReport = await anyio.to_thread.run_sync(probe_gpus)
            model = spec.model or await self._default_ollama_model(backend, gpus)
            if not await backend.has_model(model):
                try:
                    await backend.pull(model, progress=progress)
                except ModelMissing as exc:
                    raise ModelMissing(
                        f"model {model!r} is not pulled and the pull failed ({exc}); pass --llm with a model from "
                        "`ollama list`, or check the name and the network and run enable again"
                    ) from exc
            shown = await backend.show(model)
            context_length = context_length_from_show(shown)
            size = next((m.size_bytes for m in await backend.models()
                         if canonical_model(m.name) == canonical_model(model)), None)
            self._check_vram(model, size, gpus)
            num_ctx = choose_num_ctx(model_context=context_length, free_vram_bytes=gpus.largest_free,
                                     model_size_bytes=size)
            keep_alive = keep_alive_for(spec.persist)
            await progress(0, None, f"loading {model} (num_ctx {num_ctx})")
            with anyio.fail_after(self.load_timeout_s):
                await backend.load(model, num_ctx=num_ctx, keep_alive=keep_alive)
            return {"backend": "ollama", "base_url": base_url, "model": model, "num_ctx": num_ctx,
                    "context_length": context_length, "size_bytes": size, "server_version": version,
                    "keep_alive": keep_alive, "busy_by": None, **server}
        finally:
            await backend.aclose()

    async def _default_ollama_model(self, backend: OllamaBackend, gpus: GpuReport) -> str:
        recommendation = recommend_model(gpus.largest_total)
        if recommendation.model:
            return recommendation.model
        pulled = [m.name for m in await backend.models()]
        if pulled:
            return pulled[0]
        raise UserError(
            f"{recommendation.reason}, and Ollama has no model pulled; pass --llm MODEL (e.g. a small coder model "
            "such as qwen2.5-coder:1.5b) or use --backend embedded"
        )

    def _check_vram(self, model: str, size: int | None, gpus: GpuReport) -> None:
        total = sum(g.total_bytes for g in gpus.gpus)
        if gpus.gpus and size and size > total:
            recommendation = recommend_model(gpus.largest_total)
            better = f" (for this GPU: {recommendation.model})" if recommendation.model else ""
            raise UserError(
                f"VRAM too small: {model} needs {size / GB:.1f} GB and the GPU(s) have {total / GB:.1f} GB; choose a "
                f"smaller model with --llm{better}, or use --backend embedded"
            )

    async def _start_ollama(self, backend: OllamaBackend, progress: Progress) -> dict[str, Any]:
        exe = ollama_installed()
        if exe is None:
            raise UserError(
                f"Ollama does not answer at {backend.base_url} and is not installed; install it from "
                "https://ollama.com/download (or set OLLAMA_HOST to a running server), or use --backend embedded"
            )
        log_path = self._server_log()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        await progress(0, None, f"starting `ollama serve` ({exe})")
        pid = spawn_detached([exe, "serve"], log_path)
        log.info("started ollama serve", pid=pid, exe=exe, log=str(log_path))
        started = time.monotonic()
        try:
            with anyio.fail_after(self.server_timeout_s):
                while True:
                    version = await backend.version()
                    if version is not None:
                        break
                    if not _alive(pid):
                        raise UserError(
                            f"`ollama serve` exited right after it started; see {log_path} (a port in use? set "
                            "OLLAMA_HOST) and run enable again"
                        )
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise UserError(
                f"`ollama serve` (pid {pid}) did not answer at {backend.base_url} within {self.server_timeout_s:.0f} s;"
                f" see {log_path}, then run enable again (${SERVER_TIMEOUT_ENV} sets a longer wait)"
            ) from None
        await progress(0, None, f"Ollama {version} answers after {time.monotonic() - started:.1f} s")
        return {"server_pid": pid, "server_started": True, "server_log": str(log_path), "server_version": version}

    async def _enable_embedded(self, spec: LlmSpec, progress: Progress) -> dict[str, Any]:
        backend = make_backend("embedded")
        model = spec.model or EMBEDDED_MODEL
        await backend.pull(model, progress=progress)
        context_length = await backend.context_length(model)
        # CPU inference: a larger context only costs prompt time; 8k holds the mechanical tasks it gets.
        num_ctx = choose_num_ctx(model_context=context_length, free_vram_bytes=None, work_tokens=8192)
        await progress(0, None, f"loading {model} in-process (num_ctx {num_ctx})")
        await backend.load(model, num_ctx=num_ctx, keep_alive=None)
        return {"backend": "embedded", "base_url": None, "model": model, "num_ctx": num_ctx,
                "context_length": context_length, "busy_by": None}

    async def _enable_openai(self, spec: LlmSpec, progress: Progress) -> dict[str, Any]:
        backend = OpenAIBackend()
        try:
            await progress(0, None, f"checking the OpenAI-compatible server at {backend.base_url}")
            if await backend.version() is None:
                raise UserError(
                    f"no OpenAI-compatible server answers at {backend.base_url}/v1/models; start it (e.g. "
                    "`python -m llama_cpp.server --model FILE.gguf --port 8080`) or set $LOCAL_LLM_OPENAI_URL"
                )
            served = await backend.models()
            model = spec.model or (served[0].name if served else "")
            if not model:
                raise UserError(f"the server at {backend.base_url} lists no model; start it with one")
            await backend.pull(model, progress=progress)
            context_length = await backend.context_length(model)
            num_ctx = choose_num_ctx(model_context=context_length, free_vram_bytes=None)
            await backend.load(model, num_ctx=num_ctx, keep_alive=None)
            return {"backend": "openai", "base_url": backend.base_url, "model": model,
                    "num_ctx": num_ctx, "context_length": context_length, "busy_by": None}
        finally:
            await backend.aclose()

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
        record = self._record()
        data = record.data
        if record.state in ("starting", "stopping"):
            # Only a process that died mid-way leaves these; a live one is refused (SessionBusy).
            record = self._take_over_stale(record)
            data = record.data
        if record.state in ("idle", "failed"):
            if record.state == "failed":
                await self._unload_quietly(data, progress)
                self._fire("reset", data=_cleared(data), payload={"stop_server": stop_server})
            await self._drop_backend()
            note = await self._stop_ollama(data, progress) if stop_server else None
            return await self._status_with(note)
        if runs := self._runs_active():
            log.warning("disabling with runs in flight", runs_active=runs)
        self._fire("disable", data={"busy_by": current_token()}, payload={"stop_server": stop_server})
        try:
            if not data.get("persist") and data.get("model") and data.get("backend"):
                await progress(0, None, f"unloading {data['model']}")
                await self._backend_for(data).unload(str(data["model"]))
        except UserError as exc:
            reason = f"disable could not unload {data.get('model')}: {exc}; run disable again (or enable to retry)"
            self._fire("fail", data={"reason": reason, "busy_by": None}, payload={"reason": reason})
            await self._drop_backend()
            raise SessionFailed(reason) from exc
        await self._drop_backend()
        self._fire("stopped", data=_cleared(data), payload={"unloaded": not data.get("persist")})
        note = await self._stop_ollama(data, progress) if stop_server else None
        await progress(1, 1, "disabled")
        return await self._status_with(note)

    async def _status_with(self, server_stop: str | None) -> dict[str, Any]:
        status = await self.status()
        if server_stop is not None:
            status["server_stop"] = server_stop
        return status

    async def _unload_quietly(self, data: Mapping[str, Any], progress: Progress) -> None:
        if data.get("persist") or not data.get("model") or not data.get("backend"):
            return
        try:
            await self._backend_for(data).unload(str(data["model"]))
        except UserError as exc:
            log.info("nothing to unload", reason=str(exc))

    async def _stop_ollama(self, data: Mapping[str, Any], progress: Progress) -> str:
        """Stop `ollama serve` (the one enable started, else this user's); says what happened. Not finding one is
        not a failure of the session: the model is already unloaded."""
        if (data.get("backend") or data.get("last_backend") or "ollama") != "ollama":
            return "not stopped: the session's backend is not Ollama"
        base_url = ollama_base_url()
        recorded = int(data["server_pid"]) if data.get("server_pid") else None
        pids = [recorded] if recorded and _alive(recorded) else _ollama_serve_pids()
        if not pids:
            log.warning("no ollama serve process to stop", base_url=base_url)
            return (f"not stopped: no `ollama serve` process of this user found (Ollama at {base_url} may run as a "
                    "service: stop it with `systemctl stop ollama`)")
        await progress(0, None, f"stopping ollama serve (pid {', '.join(map(str, pids))})")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        probe = OllamaBackend(base_url)
        try:
            with anyio.move_on_after(10):
                while await probe.version() is not None or any(_alive(p) for p in pids):
                    await anyio.sleep(0.05)
        finally:
            await probe.aclose()
        still = [p for p in pids if _alive(p)]
        if still:
            return f"asked to stop (SIGTERM) but still running after 10 s: pid {', '.join(map(str, still))}"
        return f"stopped (pid {', '.join(map(str, pids))})"

    # -- status -----------------------------------------------------------------------------------------------------

    async def _recent_gpus(self) -> GpuReport:
        """NVML's answer, at most STATUS_GPU_MAX_AGE_S old: `status` is polled, and each probe costs a worker thread
        and an NVML init (BENCHMARKS.md B2). enable and capability always probe afresh."""
        now = time.monotonic()
        if self._gpus is None or now - self._gpus[0] > STATUS_GPU_MAX_AGE_S:
            self._gpus = (now, await anyio.to_thread.run_sync(probe_gpus))
        return self._gpus[1]

    async def status(self) -> dict[str, Any]:
        record = self._record()
        data = record.data
        loaded: list[dict[str, Any]] = []
        server: str | None = None
        if data.get("backend") and record.state != "idle":
            try:
                backend = self._backend_for(data)
                if data["backend"] == "embedded":
                    here = await backend.loaded()
                    loaded = [_model_dict(m) for m in here] or (
                        [{"name": data.get("model"), "where": "in-process, loaded on first use"}]
                        if record.state in ("loaded", "delegating") else [])
                else:
                    with anyio.fail_after(5):
                        loaded = [_model_dict(m) for m in await backend.loaded()]
                    server = "answering"
            except (UserError, TimeoutError) as exc:
                server = f"not answering: {exc}"
        gpus = await self._recent_gpus()
        status: dict[str, Any] = {
            "state": record.state,
            "backend": data.get("backend"),
            "model": data.get("model"),
            "persist": bool(data.get("persist", False)),
            "loaded": loaded,
            "runs_active": self._runs_active(),
            "num_ctx": data.get("num_ctx"),
            "vram": vram_summary(gpus, [_Sized(m.get("size_vram_bytes")) for m in loaded]),
            "reason": data.get("reason"),
            "base_url": data.get("base_url"),
            "context_length": data.get("context_length"),
            "keep_alive": data.get("keep_alive"),
        }
        if server is not None:
            status["server"] = server
        if data.get("server_pid") and _alive(int(data["server_pid"])):
            status["server_pid"] = data["server_pid"]
        return status

    # -- executor and session ends --------------------------------------------------------------------------------

    async def executor(self, *, progress: Progress = no_progress) -> Executor:
        """The loaded session's backend for a delegation. An idle session is enabled first with the defaults
        (`llm=true`: the backend selection and recommended model); a failed one raises its reason (enable again
        retries). A session that this or another live process is starting or stopping is waited for (as long as a
        start may take, then SessionBusy): runs resumed together, or a server restarted beside another, all ask for
        it at the same moment, and failing them over a start in progress lost them."""
        deadline = anyio.current_time() + self.server_timeout_s + self.load_timeout_s
        while True:
            record = self._record()
            if record.state == "idle":
                async with self._executor_enable:
                    idle = self._record()
                    if idle.state == "idle":
                        try:
                            llm, backend = _resume_choice(idle.data)
                            await self.enable(llm, backend=backend, progress=progress)
                        except SessionBusy:
                            pass  # another process began to start it first: wait for it below
                continue
            if record.state in ("starting", "stopping"):
                try:
                    self._take_over_stale(record)  # a dead process's leftover becomes `failed`, reported below
                except SessionBusy:
                    if anyio.current_time() > deadline:
                        raise
                    await anyio.sleep(EXECUTOR_POLL_S)
                continue
            break
        if record.state == "failed":
            raise SessionFailed(
                f"the session failed: {record.data.get('reason')}; fix that and run `local-llm enable` again"
            )
        if record.state not in ("loaded", "delegating"):
            raise SessionBusy(f"the session is {record.state} in another process; retry when it is loaded")
        data = record.data
        backend = self._backend_for(data)
        if data["backend"] == "embedded":
            # In-process model: load it here (cached per process) so token counts are exact from the first prompt.
            await backend.load(str(data["model"]), num_ctx=int(data["num_ctx"]), keep_alive=None)
        return Executor(backend=backend, model=str(data["model"]), num_ctx=int(data["num_ctx"]),
                        keep_alive=data.get("keep_alive"))

    async def end_session(self) -> dict[str, Any]:
        """At a clean exit of the owner (the MCP server): unload unless persist, leave Ollama running, back to idle."""
        record = self._record()
        if record.state in ("loaded", "delegating", "starting"):
            if record.data.get("persist"):
                log.info("session ends; the model stays loaded (persist)", model=record.data.get("model"))
                self.engine.sessions.note(_session_id(), "owner_left", data={"owner": None})
            else:
                try:
                    await self.disable(stop_server=False)
                except (SessionBusy, InvalidEvent) as exc:
                    # Another server on the project is ending or restarting it at the same moment: its business now.
                    log.info("the session is being changed by another process", reason=str(exc))
        await self._drop_backend()
        return await self.status()

    async def unload_leftover(self, *, claim: bool = True) -> dict[str, Any] | None:
        """At the start of a long-lived owner: a non-persist session left loaded by an owner that died (SIGKILL)
        is unloaded and moved to idle. `claim` marks this process as the owner of the sessions it enables.
        Returns the new status when something was cleaned up."""
        if claim:
            self.owns_sessions = True
        record = self._record()
        owner = record.data.get("owner")
        if not owner or owner == current_token() or token_alive(owner):
            return None
        if record.state == "idle":
            return None
        if record.state in ("starting", "stopping"):
            record = self._take_over_stale(record)
        if record.state in ("loaded", "delegating") and record.data.get("persist"):
            self.engine.sessions.note(_session_id(), "owner_left", data={"owner": None})
            return None
        log.info("cleaning up a session whose owner died", owner=owner, state=record.state)
        if record.state in ("loaded", "delegating"):
            try:
                await self.disable()
            except SessionFailed:
                self._fire("reset", data=_cleared(self._record().data))
        elif record.state == "failed":
            await self._unload_quietly(record.data, no_progress)
            self._fire("reset", data=_cleared(record.data))
        return await self.status()


@dataclass(frozen=True)
class _Sized:
    size_vram: int | None


def _resume_choice(data: Mapping[str, Any]) -> tuple[str | bool, str | None]:
    """What an idle session is enabled with for a delegation: the model it had last (so runs resumed after a server
    died keep the model they started with, whatever the VRAM would recommend now), else the defaults."""
    model, backend = data.get("last_model"), data.get("last_backend")
    if model and backend in ("ollama", "openai"):
        return str(model), str(backend)
    return True, None


def _cleared(data: Mapping[str, Any]) -> dict[str, Any]:
    """Session data after it returns to idle: nothing loaded, the last model kept for reference."""
    return {"backend": None, "model": None, "persist": False, "num_ctx": None, "owner": None, "busy_by": None,
            "reason": None, "base_url": None, "context_length": None, "keep_alive": None, "size_bytes": None,
            "last_model": data.get("model"), "last_backend": data.get("backend")}


def spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start a server that outlives this process: its own session (no SIGHUP/SIGINT from our terminal), no stdin,
    stdout discarded, stderr appended to `log_path`."""
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
            start_new_session=True, close_fds=True,
        )
    # Not ours to wait for: it must outlive us. Keep a reference so Popen's destructor does not warn while we run.
    _spawned.append(proc)
    return proc.pid


_spawned: list[subprocess.Popen[bytes]] = []


def _alive(pid: int) -> bool:
    for proc in _spawned:
        if proc.pid == pid:
            return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A zombie (exited, not yet reaped by its new parent) is not alive.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _ollama_serve_pids() -> list[int]:
    """`ollama serve` processes of this user (for --stop-server when this tool did not start the server)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [Path(a.decode(errors="replace")).name for a in argv[:3]]
        if "serve" in names and any(n == "ollama" for n in names):
            pids.append(int(entry.name))
    return pids
