"""The executor: the model that writes the code. Backends (Ollama, OpenAI-compatible servers, embedded llama.cpp),
the prompt a delegation sends, and the parsing of the answer.

`Executor` is what a delegation run gets from the session: the live backend, its model and the session's num_ctx.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.executor.backends.base import Backend

__all__ = ["Executor"]


@dataclass(frozen=True)
class Executor:
    backend: Backend
    model: str
    num_ctx: int
    keep_alive: str | int | None = None
    answer_form: str | None = None
    """The session's default answer form for delegations (None: the rule's, engine.executor.forms)."""
    parameters: int | None = None
    """The model's parameter count where the backend says it (Ollama's `/api/show`)."""
