"""A session's `status`, read live: what its backend has loaded and whether its server answers (5 s at most), the
GPUs (an answer a second old is reused: `status` is polled), the server process, and whether the model still answers
(`views.liveness`), put together by `views.status_view`. It only reads: the session machine is moved by
engine/session/lifecycle.py alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from engine.errors import UserError
from engine.executor.backends.base import Backend
from engine.session.gpu import GpuReport
from engine.session.machine import session_report
from engine.session.processes import alive
from engine.session.views import liveness, model_dict, status_view
from states import SessionData

__all__ = ["LOADED_TIMEOUT_S", "STATUS_GPU_MAX_AGE_S", "StatusReader"]

STATUS_GPU_MAX_AGE_S = 1.0
"""`status` reuses an answer about the memory this young (for the same backend and server): it is polled, and each
probe costs a worker thread and an NVML init."""
LOADED_TIMEOUT_S = 5.0
"""How long `status` waits for the session's server to say what it has loaded."""


class StatusReader:
    """One per Session: `read` answers `status` for the session's state and data, through the session's backend."""

    def __init__(self, *, backend_for: Callable[[SessionData], Backend], runs_active: Callable[[], int]) -> None:
        self._backend_for = backend_for
        self._runs_active = runs_active
        self._gpus: tuple[float, tuple[str | None, str | None], GpuReport] | None = None

    async def recent_gpus(self, data: SessionData) -> GpuReport:
        """The memory of the backend in use (engine/session/machine.py `session_report`)."""
        now, used = time.monotonic(), (data.backend, data.base_url)
        if self._gpus is None or self._gpus[1] != used or now - self._gpus[0] > STATUS_GPU_MAX_AGE_S:
            self._gpus = (now, used, await session_report(*used))
        return self._gpus[2]

    async def _loaded(self, state: str, data: SessionData) -> tuple[list[dict[str, Any]], str | None]:
        """The models the backend has loaded, and whether its server answers (None: no server was asked)."""
        loaded: list[dict[str, Any]] = []
        server: str | None = None
        if data.backend and state != "idle":
            try:
                backend = self._backend_for(data)
                if data.backend == "embedded":
                    loaded = [model_dict(m) for m in await backend.loaded()] or (
                        [{"name": data.model, "where": "in-process, loaded on first use"}]
                        if state in ("loaded", "delegating") else [])
                else:
                    with anyio.fail_after(LOADED_TIMEOUT_S):
                        loaded = [model_dict(m) for m in await backend.loaded()]
                    server = "answering"
            except (UserError, TimeoutError) as exc:
                server = f"not answering: {exc}"
        return loaded, server

    async def read(self, state: str, data: SessionData) -> dict[str, Any]:
        loaded, server = await self._loaded(state, data)
        return status_view(
            state, data, loaded=loaded, runs_active=self._runs_active(), gpus=await self.recent_gpus(data),
            server=server, server_pid_alive=bool(data.server_pid and alive(data.server_pid)),
        ) | await liveness(state, data, loaded=loaded, server=server,
                           backend=(lambda: self._backend_for(data)) if data.backend else None)
