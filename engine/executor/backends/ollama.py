"""Ollama's native API over httpx: version, tags, ps, show, pull (streamed progress), chat (streamed, `format` schema,
`options.num_ctx`, `keep_alive`, `think`, `truncate: false`, `shift: false`) and the load/unload requests (a generate
with only `model`, plus `keep_alive:0`).

No silent truncation: every chat says `truncate: false` (an overlong prompt is a 400, not a prompt cut from the front)
and `shift: false` (generation stops at the context's end instead of dropping the prompt's start). Which server honours
those, and `think`, is in ollama_features.py."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import structlog

from engine.executor.backends.base import (
    BackendError,
    BackendUnavailable,
    GenerateRequest,
    GenerateResult,
    ModelInfo,
    ModelMissing,
    PromptCount,
    PromptTooLong,
    TokenCallback,
)
from engine.executor.backends.ollama_features import (
    OMIT,
    ModelTraits,
    ServerFeatures,
    is_context_overflow,
    think_value,
)
from engine.executor.thinking import split_thinking
from engine.executor.tokens import estimate_prompt, estimate_tokens
from engine.progress import Progress

__all__ = [
    "DEFAULT_HOST",
    "REQUEST_TIMEOUT_ENV",
    "OllamaBackend",
    "canonical_model",
    "chat_body",
    "context_length_from_show",
    "ollama_base_url",
    "result_from_final",
]

log = structlog.get_logger(__name__)

DEFAULT_HOST = "127.0.0.1:11434"
REQUEST_TIMEOUT_ENV = "LOCAL_LLM_REQUEST_TIMEOUT"
"""Seconds to wait for the next byte of an answer (the first one included) before the request fails as retryable;
default: the load timeout (5 minutes, as a model load may take that long). The reliability harness sets it short to
test a backend that never answers."""


def ollama_base_url(host: str | None = None) -> str:
    """The base URL for OLLAMA_HOST's forms: `host`, `host:port`, `:port`, `http(s)://host[:port]`; 0.0.0.0 (a bind
    address) is reached through 127.0.0.1."""
    value = (host if host is not None else os.environ.get("OLLAMA_HOST", "")).strip() or DEFAULT_HOST
    scheme = "http"
    if "://" in value:
        scheme, value = value.split("://", 1)
    value = value.rstrip("/")
    hostpart, _, port = value.rpartition(":") if ":" in value.split("/", 1)[0] else (value, "", "")
    if not hostpart and port:
        hostpart = "127.0.0.1"
    if not port:
        port = "443" if scheme == "https" else "11434"
    if hostpart in ("", "0.0.0.0"):
        hostpart = "127.0.0.1"
    return f"{scheme}://{hostpart}:{port}"


def canonical_model(name: str) -> str:
    """Ollama treats a name without a tag as `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _model_info(entry: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(
        name=str(entry.get("name") or entry.get("model") or ""),
        size_bytes=entry.get("size"),
        context_length=entry.get("context_length"),
        size_vram=entry.get("size_vram"),
        details={k: entry[k] for k in ("details", "expires_at", "digest", "modified_at") if k in entry},
    )


def context_length_from_show(shown: Mapping[str, Any]) -> int | None:
    """`model_info` holds `<arch>.context_length`; the arch is `general.architecture`."""
    info = shown.get("model_info") or {}
    arch = info.get("general.architecture")
    if arch and isinstance(info.get(f"{arch}.context_length"), int):
        return int(info[f"{arch}.context_length"])
    for key, value in info.items():
        if key.endswith(".context_length") and isinstance(value, int):
            return value
    return None


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)
    except (ValueError, AttributeError):
        return response.text[:300]


class OllamaBackend:
    name = "ollama"

    def __init__(
        self, base_url: str | None = None, *, keep_alive: str | int | None = None, load_timeout_s: float = 300.0,
        client: httpx.AsyncClient | None = None, parallelism: int = 1,
    ) -> None:
        self.base_url = (base_url or ollama_base_url()).rstrip("/")
        self.default_keep_alive = keep_alive
        """Sent with every generation that names none, so the session's model stays loaded between delegations."""
        # The session's `slots` setting: OLLAMA_NUM_PARALLEL belongs to the server's environment, not this process's.
        self.parallelism = max(1, parallelism)
        # Reads wait as long as a model load may take (OLLAMA_LOAD_TIMEOUT defaults to 5m); connects fail fast.
        read_timeout = float(os.environ.get(REQUEST_TIMEOUT_ENV) or load_timeout_s)
        self._client = client or httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(read_timeout, connect=3.0), trust_env=False
        )
        self._features: ServerFeatures | None = None
        self._traits: dict[str, ModelTraits] = {}

    def __repr__(self) -> str:
        return f"OllamaBackend({self.base_url!r})"

    # -- plain requests ---------------------------------------------------------------------------------------------

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"Ollama does not answer at {self.base_url} ({type(exc).__name__}: {exc}); start it with `ollama serve` "
            "or set OLLAMA_HOST to where it runs"
        )

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        try:
            response = await self._client.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unavailable(exc) from exc
        except httpx.TransportError as exc:  # it answered the connection, then the request failed (reset, timeout)
            raise BackendUnavailable(
                f"the connection to Ollama at {self.base_url} failed during {path} ({type(exc).__name__}: {exc}); "
                "check that `ollama serve` is still running, then retry"
            ) from exc
        if response.status_code == 404:
            raise ModelMissing(f"Ollama: {_error_text(response)}; pull it with `ollama pull MODEL` or "
                               "`local-llm enable --llm MODEL`")
        if response.status_code >= 400:
            raise BackendError(
                f"Ollama answered {response.status_code} to {path}: {_error_text(response)}",
                retryable=response.status_code >= 500,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"Ollama sent malformed JSON from {path}: {response.text[:200]!r}",
                               retryable=True) from exc

    async def version(self) -> str | None:
        try:
            response = await self._client.get("/api/version", timeout=3.0)
            return str(response.json()["version"]) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def models(self) -> list[ModelInfo]:
        return [_model_info(m) for m in (await self._request("GET", "/api/tags")).get("models", [])]

    async def loaded(self) -> list[ModelInfo]:
        return [_model_info(m) for m in (await self._request("GET", "/api/ps")).get("models", [])]

    async def show(self, model: str) -> dict[str, Any]:
        return dict(await self._request("POST", "/api/show", {"model": model}))

    async def context_length(self, model: str) -> int | None:
        return context_length_from_show(await self.show(model))

    async def features(self) -> ServerFeatures:
        """What this server honours, from its version (asked once per backend: a server is not upgraded under a
        running session without a restart, which the next session sees)."""
        if self._features is None or self._features.version is None:
            self._features = ServerFeatures(await self.version())
        return self._features

    async def traits(self, model: str) -> ModelTraits:
        """What `/api/show` says of `model`; nothing known for a model it does not have (the chat that follows
        answers that with its own 404, which says how to pull it)."""
        if model not in self._traits:
            try:
                self._traits[model] = ModelTraits.from_show(await self.show(model))
            except ModelMissing:
                return ModelTraits(capabilities=None)
        return self._traits[model]

    async def has_model(self, model: str) -> bool:
        wanted = canonical_model(model)
        return any(canonical_model(m.name) == wanted for m in await self.models())

    # -- streaming --------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _ndjson(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    text = _error_text(response)
                    if response.status_code == 404:
                        raise ModelMissing(
                            f"Ollama: {text}; pull it with `ollama pull {body.get('model')}` or "
                            f"`local-llm enable --llm {body.get('model')}`"
                        )
                    if response.status_code == 503:
                        raise BackendUnavailable(
                            f"Ollama is busy ({text}); retry later, or raise OLLAMA_MAX_QUEUE / OLLAMA_NUM_PARALLEL"
                        )
                    raise BackendError(
                        f"Ollama answered {response.status_code} to {path}: {text}",
                        retryable=response.status_code >= 500,
                    )
                yield _lines(response, path)
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"the connection to Ollama at {self.base_url} failed during {path} ({type(exc).__name__}: {exc}); "
                "check that `ollama serve` is still running, then retry"
            ) from exc

    async def pull(self, model: str, *, progress: Progress) -> None:
        await progress(0, None, f"pulling {model}")
        async with self._ndjson("/api/pull", {"model": model, "stream": True}) as lines:
            async for event in lines:
                if "error" in event:
                    raise ModelMissing(
                        f"Ollama could not pull {model!r}: {event['error']}; check the name on "
                        "https://ollama.com/library (and the network), or choose a model from `ollama list`"
                    )
                status = str(event.get("status", ""))
                total, completed = event.get("total"), event.get("completed")
                if total:
                    await progress(float(completed or 0), float(total), f"{model}: {status}")
                else:
                    await progress(0, None, f"{model}: {status}")
                if status == "success":
                    return
        raise BackendError(f"Ollama's pull of {model!r} ended without `success`; run enable again to resume it",
                           retryable=True)

    async def load(self, model: str, *, num_ctx: int, keep_alive: str | int | None) -> None:
        # A generate with only `model` loads it; num_ctx must match later requests or Ollama reloads the runner.
        body: dict[str, Any] = {"model": model, "options": {"num_ctx": num_ctx}, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        answer = await self._request("POST", "/api/generate", body)
        if answer.get("done_reason") not in ("load", None):
            log.warning("unexpected load answer", model=model, answer=answer)

    async def unload(self, model: str) -> None:
        await self._request("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        think = think_value(request.think, await self.traits(request.model), model=request.model)
        body = chat_body(request, default_keep_alive=self.default_keep_alive, think=think)
        pieces: list[str] = []
        thinking_pieces = 0
        final: dict[str, Any] | None = None
        try:
            async with self._ndjson("/api/chat", body) as lines:
                async for event in lines:
                    if "error" in event:
                        raise BackendError(f"Ollama failed while generating: {event['error']}", retryable=True)
                    message = event.get("message") or {}
                    if thought := message.get("thinking") or "":
                        thinking_pieces += 1  # Ollama streams a token a line
                        if on_token is not None:
                            on_token(thought)
                    if piece := message.get("content") or "":
                        pieces.append(piece)
                        if on_token is not None:
                            on_token(piece)
                    if event.get("done"):
                        final = event
                        break
        except BackendError as exc:
            if not exc.retryable and is_context_overflow(str(exc)):
                raise self._too_long(request, str(exc)) from exc
            raise
        if final is None:
            raise BackendError("Ollama's answer stream ended before its final object; retry", retryable=True)
        inline, content = split_thinking("".join(pieces))
        result = result_from_final(final, content, request.model)
        thinking = thinking_pieces + (estimate_tokens(inline) if inline else 0)
        # eval_count counts the thinking too (it spends num_predict): the part thinking can never exceed the whole.
        return replace(result, thinking_tokens=min(thinking, result.completion_tokens or thinking))

    def _too_long(self, request: GenerateRequest, answer: str) -> PromptTooLong:
        estimate = estimate_prompt(request.messages)
        return PromptTooLong(
            f"the prompt does not fit num_ctx {request.num_ctx}: Ollama refused it ({answer}); the engine estimated "
            f"it at {estimate} tokens (Ollama has no tokenizer endpoint, so this is a conservative estimate); pass "
            "fewer or smaller context files, or enable a model with a larger context",
            prompt_tokens=estimate, num_ctx=request.num_ctx, exact=False, refused_by="server",
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        features = await self.features()
        return PromptCount(estimate_prompt(request.messages), exact=False, unguarded=features.truncation_note())

    async def aclose(self) -> None:
        await self._client.aclose()


async def _lines(response: httpx.Response, path: str) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise BackendError(f"Ollama sent a malformed line from {path}: {line[:200]!r}; retry",
                               retryable=True) from exc
        if not isinstance(event, dict):
            raise BackendError(f"Ollama sent a non-object line from {path}: {line[:200]!r}", retryable=True)
        yield event


def chat_body(
    request: GenerateRequest, *, default_keep_alive: str | int | None = None, think: Any = OMIT,
) -> dict[str, Any]:
    """The /api/chat request for one generation; the same num_ctx every time, so Ollama never reloads mid-session.
    `think` is the field's value (ollama_features.think_value), OMIT to leave it out."""
    options: dict[str, Any] = {
        "num_ctx": request.num_ctx,
        "num_predict": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        options["seed"] = request.seed
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
        "options": options,
        # Both default to true (api/types.go ChatRequest): an overlong prompt would be cut without a word.
        "truncate": False,
        "shift": False,
    }
    if think is not OMIT:
        body["think"] = think
    if request.schema is not None:
        body["format"] = request.schema
    keep_alive = request.keep_alive if request.keep_alive is not None else default_keep_alive
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    return body


def result_from_final(final: Mapping[str, Any], text: str, model: str) -> GenerateResult:
    """Ollama's final object: counts and nanosecond durations."""
    def seconds(key: str) -> float | None:
        value = final.get(key)
        return None if value is None else float(value) / 1e9

    return GenerateResult(
        text=text,
        prompt_tokens=int(final.get("prompt_eval_count") or 0),
        completion_tokens=int(final.get("eval_count") or 0),
        done_reason=str(final.get("done_reason") or "stop"),
        total_seconds=seconds("total_duration") or 0.0,
        prompt_seconds=seconds("prompt_eval_duration"),
        eval_seconds=seconds("eval_duration"),
        model=str(final.get("model") or model),
    )
