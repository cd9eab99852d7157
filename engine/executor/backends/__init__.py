"""Executor backends and the choice between them.

Selection: explicit (`--backend`, an `llm` spec that names one, $LOCAL_LLM_BACKEND) > Ollama reachable or installed >
the embedded default installed > a UserError that says how to get one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from engine.errors import InvalidArgument, UserError
from engine.executor.backends.base import Backend, BackendError, BackendUnavailable, GenerateRequest, GenerateResult
from engine.executor.backends.embedded import EmbeddedBackend, embedded_installed, install_hint
from engine.executor.backends.ollama import OllamaBackend, ollama_base_url
from engine.executor.backends.openai import OpenAIBackend, openai_base_url

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "GenerateRequest",
    "GenerateResult",
    "NoBackend",
    "Selection",
    "make_backend",
    "ollama_installed",
    "select_backend",
]

BACKENDS = ("ollama", "openai", "embedded")
BACKEND_ENV = "LOCAL_LLM_BACKEND"


class NoBackend(UserError):
    pass


@dataclass(frozen=True)
class Selection:
    name: str
    reason: str


def ollama_installed() -> str | None:
    """The `ollama` executable on PATH, if any."""
    return shutil.which("ollama")


def make_backend(name: str, *, base_url: str | None = None, slots: int = 1) -> Backend:
    """The backend `name`, running `slots` generations at once (the embedded model runs one at a time)."""
    if name == "ollama":
        return OllamaBackend(base_url or ollama_base_url(), parallelism=slots)
    if name == "openai":
        return OpenAIBackend(base_url or openai_base_url(), slots=slots)
    if name == "embedded":
        return EmbeddedBackend()
    raise InvalidArgument("backend", f"one of {', '.join(BACKENDS)}", name)


async def select_backend(explicit: str | None = None, *, ollama_running: bool | None = None) -> Selection:
    """Which backend a session uses. `ollama_running` skips the probe when the caller already knows."""
    if explicit:
        if explicit not in BACKENDS:
            raise InvalidArgument("backend", f"one of {', '.join(BACKENDS)}", explicit)
        return Selection(explicit, "chosen explicitly")
    if env := os.environ.get(BACKEND_ENV):
        if env not in BACKENDS:
            raise InvalidArgument(BACKEND_ENV, f"one of {', '.join(BACKENDS)}", env)
        return Selection(env, f"${BACKEND_ENV}={env}")
    if ollama_running is None:
        probe = OllamaBackend()
        try:
            ollama_running = await probe.version() is not None
        finally:
            await probe.aclose()
    if ollama_running:
        return Selection("ollama", f"Ollama answers at {ollama_base_url()}")
    if ollama_installed():
        return Selection("ollama", "Ollama is installed (it will be started)")
    if embedded_installed():
        return Selection("embedded", "no Ollama reachable or installed; the embedded default is installed")
    raise NoBackend(
        f"no backend available: Ollama does not answer at {ollama_base_url()} and is not installed "
        "(https://ollama.com/download), no OpenAI-compatible server was chosen (--backend openai with "
        f"$LOCAL_LLM_OPENAI_URL), and the embedded default is missing: {install_hint()}"
    )
