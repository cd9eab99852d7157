"""The session machine: one per project, it tracks whether a model is loaded and ready for delegations, and the
session's persisted data (`SessionData`).

Nothing here is terminal: a failed session is enabled again, a stopped one returns to idle.
"""

from __future__ import annotations

from dataclasses import dataclass

from states.data import MachineData
from states.spec import MachineSpec, TransitionSpec

__all__ = ["SESSION", "SESSION_ID", "SessionData"]

SESSION_ID = "session"
"""One session machine per project database; the process that enabled it is recorded in its data."""


@dataclass(frozen=True)
class SessionData(MachineData):
    """Everything a later process needs to rebuild the executor that `enable` prepared."""

    backend: str | None = None
    model: str | None = None
    persist: bool = False
    keep_alive: str | int | None = None
    num_ctx: int | None = None
    context_length: int | None = None
    size_bytes: int | None = None
    base_url: str | None = None
    capabilities: list[str] | None = None
    """What Ollama's `/api/show` says the model can do (completion, tools, thinking, ...); None when the server is too
    old to say (before v0.6.4) or the backend is not Ollama."""
    owner: str | None = None
    """Process token of the long-lived owner (the MCP server) that unloads the model when it ends or dies."""
    busy_by: str | None = None
    """Process token of the enable/disable in progress."""
    reason: str | None = None
    """Why the session failed, and what to do."""
    ready_at: float | None = None
    server_version: str | None = None
    server_pid: int | None = None
    server_started: bool = False
    server_log: str | None = None
    last_model: str | None = None
    """The model of the last loaded session, kept at idle so resumed runs get the model they started with."""
    last_backend: str | None = None


SESSION = MachineSpec(
    kind="session",
    states=("idle", "starting", "loaded", "delegating", "stopping", "failed"),
    initial="idle",
    data_type=SessionData,
    transitions=(
        TransitionSpec("enable", ("idle", "failed"), "starting"),
        TransitionSpec("ready", ("starting",), "loaded"),
        TransitionSpec("run_started", ("loaded",), "delegating"),
        TransitionSpec("runs_finished", ("delegating",), "loaded"),
        TransitionSpec("disable", ("loaded", "delegating", "starting"), "stopping"),
        TransitionSpec("stopped", ("stopping",), "idle"),
        TransitionSpec("fail", ("starting", "loaded", "delegating", "stopping"), "failed"),
        TransitionSpec("reset", ("failed",), "idle"),
    ),
    descriptions={
        "idle": "no model loaded by this project",
        "starting": "starting the server, pulling and loading the model",
        "loaded": "model loaded, ready to delegate",
        "delegating": "one or more delegation runs in flight",
        "stopping": "unloading the model",
        "failed": "enable or disable failed; the reason says what to do, enable retries",
    },
)
