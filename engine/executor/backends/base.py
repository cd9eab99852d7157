"""The one interface every executor backend implements (Ollama, OpenAI-compatible servers, embedded llama.cpp)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from engine.errors import UserError
from engine.progress import Progress

__all__ = [
    "THINK_LEVELS",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "ChatMessage",
    "GenerateRequest",
    "GenerateResult",
    "ModelInfo",
    "ModelMissing",
    "PromptCount",
    "PromptTooLong",
    "Think",
    "TokenCallback",
]

TokenCallback = Callable[[str], None]
"""Called with each piece of generated text as it streams (thinking included: it is progress too)."""

THINK_LEVELS = ("low", "medium", "high", "max")
"""Ollama's thinking levels (api/types.go ThinkValue); `max` is the highest."""

Think = bool | str
"""What a run asks of a model that can think: False (mechanical work, the default), True, or a level."""


class BackendError(UserError):
    """The backend failed; the message says what to do. `retryable` errors are worth another attempt.
    `infrastructure` errors are the server's or the way to it (a connection refused or cut mid-stream, a 5xx, 429):
    nothing the model did, so the generation is sent again without using one of the run's attempts. Only the openai
    backend (the way to a gateway, where another server takes the request) marks them; Ollama and the embedded model
    are one server each, whose faults the batch's pause handles."""

    retryable: bool = False
    infrastructure: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None, infrastructure: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        if infrastructure is not None:
            self.infrastructure = infrastructure


class BackendUnavailable(BackendError):
    retryable = True


class ModelMissing(BackendError):
    pass


class PromptTooLong(BackendError):
    """The prompt does not fit the context. Never retried: the same prompt would not fit again."""

    retryable = False

    def __init__(
        self, message: str, *, prompt_tokens: int | None, num_ctx: int, exact: bool, refused_by: str,
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.num_ctx = num_ctx
        self.exact = exact
        self.refused_by = refused_by
        """`server` (it answered that the prompt is too long), `tokenizer` (an exact count before sending) or
        `estimate` (a conservative count before sending, where the server would have cut the prompt silently)."""


@dataclass(frozen=True)
class PromptCount:
    """A prompt's size before it is sent."""

    tokens: int
    exact: bool
    """Counted with the model's own tokenizer; else a conservative (high) estimate."""
    unguarded: str | None = None
    """Why the server would cut an overlong prompt silently (Ollama before 0.12.6, Ollama's /v1), or None where it
    answers one with an error (so an estimate over the limit need not stop the run: the server has the real count)."""

    @property
    def server_refuses_overflow(self) -> bool:
        return self.unguarded is None


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerateRequest:
    model: str
    messages: Sequence[ChatMessage]
    schema: dict[str, Any] | None = None
    """JSON schema the answer must follow (Ollama `format`, llama.cpp `response_format`); None for free text."""
    num_ctx: int = 4096
    max_tokens: int = 1024
    temperature: float = 0.1
    seed: int | None = None
    keep_alive: str | int | None = None
    think: Think = False
    """Mechanical work asks models that can think not to (or for the lowest level where they cannot stop)."""
    route_key: str | None = None
    """Stable for all of one run's attempts: a gateway that routes by it sends them to one backend, whose prompt
    cache the retries reuse (docs/gateways.md)."""


@dataclass(frozen=True)
class GenerateResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    done_reason: str
    """`stop` when the model finished, `length` when it hit max_tokens or the context."""
    total_seconds: float
    prompt_seconds: float | None = None
    """Prompt-processing time, when the backend reports it (Ollama, llama.cpp)."""
    eval_seconds: float | None = None
    model: str = ""
    cached_prompt_tokens: int | None = None
    thinking_tokens: int = 0
    """Of `completion_tokens`, those the model spent thinking (never part of `text`)."""

    @classmethod
    def from_stream(
        cls, *, text: str, prompt_tokens: int, completion_tokens: int, finish: str | None, started: float,
        first_token_at: float | None, ended: float, model: str, thinking_tokens: int = 0,
    ) -> GenerateResult:
        """A result timed on the client's clock: the prompt took until the first token, the rest was generation."""
        return cls(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            done_reason="length" if finish == "length" else "stop",
            total_seconds=ended - started,
            prompt_seconds=(first_token_at - started) if first_token_at is not None else None,
            eval_seconds=(ended - first_token_at) if first_token_at is not None else None,
            model=model,
            thinking_tokens=thinking_tokens,
        )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    size_bytes: int | None = None
    context_length: int | None = None
    size_vram: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: str
    """`ollama`, `openai` or `embedded`."""
    parallelism: int
    """How many generations the engine runs at once on it: the session's `slots` setting (default 1)."""

    async def version(self) -> str | None:
        """The server's version, or None when nothing answers."""

    async def models(self) -> list[ModelInfo]:
        """Models available without a download."""

    async def loaded(self) -> list[ModelInfo]:
        """Models loaded in memory now."""

    async def context_length(self, model: str) -> int | None:
        """The model's trained context length, when known."""

    async def pull(self, model: str, *, progress: Progress) -> None:
        """Download `model` if the backend can; raises ModelMissing when it cannot."""

    async def load(self, model: str, *, num_ctx: int, keep_alive: str | int | None) -> None: ...

    async def unload(self, model: str) -> None: ...

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        """One streamed generation; raises BackendError (retryable or not) on failure."""

    def count_tokens(self, text: str) -> int:
        """Exact where the backend has a tokenizer here, else a conservative estimate."""

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        """The request's prompt size before sending it, with the server's tokenizer where it has one."""

    async def aclose(self) -> None: ...
