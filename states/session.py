"""The session machine: one per project, it tracks whether a model is loaded and ready for delegations, and the
session's persisted data (`SessionData`).

Nothing here is terminal: a failed session is enabled again, a stopped one returns to idle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from states.data import MachineData
from states.spec import MachineSpec, TransitionSpec

__all__ = ["SESSION", "SESSION_ID", "SessionData", "SessionWarning"]

SESSION_ID = "session"
"""One session machine per project database; the process that enabled it is recorded in its data."""


class SessionWarning(TypedDict):
    """Something about the enabled session the user should know and can change (it did not stop enable)."""

    code: str
    message: str


@dataclass(frozen=True)
class SessionData(MachineData):
    """Everything a later process needs to rebuild the executor that `enable` prepared."""

    backend: str | None = None
    model: str | None = None
    persist: bool = False
    keep_alive: str | int | None = None
    num_ctx: int | None = None
    num_ctx_from: str | None = None
    """Where num_ctx came from, in words (an OpenAI-compatible server's figure, a gateway's, $LOCAL_LLM_NUM_CTX)."""
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
    slots: int | None = None
    """How many generations the engine runs at once on the backend (its `parallelism`)."""
    slots_from: str | None = None
    """Where `slots` came from: `setting` (enable's option), `server` (llama.cpp's /props), `gateway` (LiteLLM's
    deployments' max_parallel_requests) or `default` (1)."""
    last_slots: int | None = None
    """The `slots` setting of the last loaded session, kept at idle like `last_model`."""
    server_kind: str | None = None
    """What the OpenAI-compatible server is: llama.cpp, vllm, ollama, llama-cpp-python or unknown."""
    server_slots: int | None = None
    """How many requests the server itself runs at once (llama.cpp's total_slots)."""
    slot_context: int | None = None
    """Tokens one request may use on the server (llama.cpp: one slot's context); num_ctx never exceeds it."""
    warnings: list[SessionWarning] = field(default_factory=list)
    answer_form: str | None = None
    """The session's default answer form (`edits`, `whole` or `json`), set with enable; None: the rule's
    (engine.executor.forms)."""
    parameters: int | None = None
    """The model's parameter count, from Ollama's `/api/show`; None when not known (the answer-form rule's input)."""


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
