"""Any OpenAI-compatible server (llama.cpp's server, llama-cpp-python's server, vLLM, LM Studio, Ollama's `/v1`):
`/v1/models` and streamed `/v1/chat/completions`.

These servers load their model at start, so load/unload only check that the model is served; the OpenAI API has no
`num_ctx` or `keep_alive` (the server's own context size applies). What the server says about itself (which server,
its slots, the context one request may use) is read once per backend (openai_server.py). JSON schemas go as
`response_format: {"type": "json_schema", ...}` first, except to llama-cpp-python's server, which only takes
`{"type": "json_object", "schema": ...}`; a server that refuses the form it got (an old llama.cpp refuses
`json_schema`, LM Studio refuses `json_object`) gets the other one on the retry, and keeps getting it.

`parallelism` is the session's `slots` setting (engine/session/), never read from this process's environment: the
engine's environment need not be the server's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
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
from engine.executor.backends.openai_server import ServerFacts, model_info, probe_server, response_format
from engine.executor.thinking import split_thinking
from engine.executor.tokens import estimate_prompt, estimate_tokens
from engine.progress import Progress

__all__ = ["DEFAULT_OPENAI_URL", "OPENAI_URL_ENV", "ROUTE_HEADER", "OpenAIBackend", "openai_base_url", "route_headers"]

log = structlog.get_logger(__name__)

OPENAI_URL_ENV = "LOCAL_LLM_OPENAI_URL"
DEFAULT_OPENAI_URL = "http://127.0.0.1:8080"


def openai_base_url(explicit: str | None = None) -> str:
    """The server root (without `/v1`): explicit, else $LOCAL_LLM_OPENAI_URL, else OPENAI_BASE_URL, else llama.cpp's
    default port on localhost."""
    url = explicit or os.environ.get(OPENAI_URL_ENV) or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_URL
    url = url.rstrip("/")
    return url.removesuffix("/v1")


ROUTE_HEADER = "X-Local-LLM-Session-Id"
"""Carries a run's route key. LiteLLM takes any `x-<vendor>-session-id` header as the request's session id
(litellm/proxy/litellm_pre_call_utils.py, 1.106.12), which its `session_affinity` pre-call check pins to one
deployment; vLLM's router takes the header named by `--session-key`."""


def route_headers(route_key: str | None) -> dict[str, str]:
    return {ROUTE_HEADER: route_key} if route_key else {}


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body.get("detail") or body)[:300] if isinstance(body, dict) else str(body)[:300]


class OpenAIBackend:
    name = "openai"

    def __init__(
        self, base_url: str | None = None, *, api_key: str | None = None, timeout_s: float = 300.0,
        client: httpx.AsyncClient | None = None, slots: int = 1,
    ) -> None:
        self.base_url = openai_base_url(base_url)
        self.parallelism = max(1, slots)
        key = api_key or os.environ.get("LOCAL_LLM_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = client or httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=3.0), trust_env=False
        )
        self._facts: ServerFacts | None = None
        self._schema_style: str | None = None
        self._refused: set[str] = set()

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r})"

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"no OpenAI-compatible server answers at {self.base_url} ({type(exc).__name__}: {exc}); start it "
            f"(e.g. `python -m llama_cpp.server --model FILE.gguf --port 8080`) or set {OPENAI_URL_ENV}"
        )

    async def version(self) -> str | None:
        try:
            response = await self._client.get("/v1/models", timeout=3.0)
        except httpx.HTTPError:
            return None
        return "openai-compatible" if response.status_code == 200 else None

    async def models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get("/v1/models")
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.status_code >= 400:
            raise BackendError(f"{self.base_url}/v1/models answered {response.status_code}: {_error_text(response)}")
        try:
            entries = response.json().get("data", [])
        except (ValueError, AttributeError) as exc:
            raise BackendError(f"{self.base_url}/v1/models sent no model list: {response.text[:200]!r}") from exc
        return [model_info(e) for e in entries if isinstance(e, dict)]

    async def facts(self) -> ServerFacts:
        """What the server says about itself (asked once per backend: a server keeps its kind, slots and context)."""
        if self._facts is None:
            self._facts = await probe_server(self._client, await self.models())
        return self._facts

    async def loaded(self) -> list[ModelInfo]:
        # The server holds its models in memory for its whole life.
        return await self.models()

    async def context_length(self, model: str) -> int | None:
        """The model's context; one name listed by several servers (a router) holds the smallest of theirs."""
        limits = [i.context_length for i in await self.models() if i.name == model and i.context_length]
        return min(limits) if limits else None

    async def _check_served(self, model: str) -> None:
        names = [m.name for m in await self.models()]
        # A server with one model answers to any name (llama.cpp); only refuse when it lists several others.
        if model not in names and len(names) != 1:
            raise ModelMissing(
                f"the server at {self.base_url} does not serve {model!r} (it serves: {', '.join(names) or 'nothing'}); "
                "start it with that model or choose one of these with --llm"
            )

    async def pull(self, model: str, *, progress: Progress) -> None:
        await progress(0, None, f"checking that {self.base_url} serves {model}")
        await self._check_served(model)

    async def load(self, model: str, *, num_ctx: int, keep_alive: str | int | None) -> None:
        await self._check_served(model)

    async def unload(self, model: str) -> None:
        return None

    def _body(self, request: GenerateRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.route_key is not None:
            body["user"] = request.route_key  # OpenAI's end-user field: every server here takes it
        if request.schema is not None and self._schema_style is not None:
            body["response_format"] = response_format(self._schema_style, request.schema)
        return body

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        if request.schema is not None and self._schema_style is None:
            self._schema_style = (await self.facts()).schema_styles[0]
        while True:  # each pass refuses one more form, and there are two
            try:
                return await self._generate(request, on_token)
            except _SchemaStyleRefused as refused:
                self._refused.add(refused.style)
                other = next((s for s in (await self.facts()).schema_styles if s not in self._refused), None)
                if other is None:
                    raise BackendError(
                        f"the server at {self.base_url} refuses both forms of response_format (json_schema, "
                        f"json_object: {refused.text}); use a server that constrains answers to a JSON schema "
                        "(llama.cpp, vLLM) or --backend ollama"
                    ) from None
                log.info("server refused a response_format form; using the other", refused=refused.style,
                         using=other, base_url=self.base_url)
                self._schema_style = other

    async def _generate(self, request: GenerateRequest, on_token: TokenCallback | None) -> GenerateResult:
        body = self._body(request)
        # The form this request carries: another generation may switch the backend's form while it is in flight,
        # and a refusal must be charged to the form that was refused (else both read as refused).
        sent_style = self._schema_style
        started = time.perf_counter()
        first_token_at: float | None = None
        pieces: list[str] = []
        chunks = thinking_chunks = 0
        usage: dict[str, Any] | None = None
        finish = "stop"
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body,
                                           headers=route_headers(request.route_key)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    text = _error_text(response)
                    # 400/422 today; llama.cpp before PR #9527 refused json_schema with a 500.
                    if request.schema is not None and response.status_code in (400, 422, 500) and \
                            "response_format" in text and sent_style is not None:
                        raise _SchemaStyleRefused(sent_style, text)
                    if response.status_code == 404:
                        raise ModelMissing(f"{self.base_url}: {text}; check the model name with `local-llm capability`")
                    if response.status_code == 400 and _overflow(text):
                        raise PromptTooLong(
                            f"the prompt does not fit the server's context: {self.base_url} refused it ({text}); "
                            "pass fewer or smaller context files, or start the server with a larger context",
                            prompt_tokens=estimate_prompt(request.messages), num_ctx=request.num_ctx, exact=False,
                            refused_by="server",
                        )
                    busy = response.status_code >= 500 or response.status_code == 429
                    raise BackendError(f"{self.base_url} answered {response.status_code}: {text}", retryable=busy,
                                       infrastructure=busy)
                async for event in _sse(response):
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        delta = choice.get("delta") or {}
                        # llama.cpp's server and vLLM send parsed reasoning apart (`reasoning_content`; newer vLLM
                        # `reasoning`): progress, never the answer.
                        if thought := delta.get("reasoning_content") or delta.get("reasoning") or "":
                            thinking_chunks += 1
                            if on_token is not None:
                                on_token(thought)
                        piece = delta.get("content") or ""
                        if piece:
                            chunks += 1
                            if first_token_at is None:
                                first_token_at = time.perf_counter()
                            pieces.append(piece)
                            if on_token is not None:
                                on_token(piece)
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
        except httpx.TransportError as exc:  # refused, or cut mid-stream (a backend behind a gateway died)
            unavailable = self._unavailable(exc)
            unavailable.infrastructure = True
            raise unavailable from exc
        ended = time.perf_counter()
        inline, text = split_thinking("".join(pieces))
        thinking = thinking_chunks + (estimate_tokens(inline) if inline else 0)
        if usage:
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or chunks + thinking_chunks)
        else:
            # llama-cpp-python's server sends no usage in streams; it sends one chunk per token.
            completion_tokens = chunks + thinking_chunks
            prompt_tokens = await self._count_prompt(request)
        return GenerateResult.from_stream(
            text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, finish=finish,
            started=started, first_token_at=first_token_at, ended=ended, model=request.model,
            thinking_tokens=min(thinking, completion_tokens),
        )

    async def _count_prompt(self, request: GenerateRequest) -> int:
        text = "\n".join(m.content for m in request.messages)
        overhead = 4 * len(request.messages)  # role markers of the chat template
        try:
            response = await self._client.post("/extras/tokenize/count", json={"input": text}, timeout=5.0)
            if response.status_code == 200:
                return int(response.json()["count"]) + overhead
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        return estimate_tokens(text) + overhead

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def _unguarded(self) -> str | None:
        """llama.cpp's server, llama-cpp-python's and vLLM answer an overlong prompt with a 400; Ollama's /v1 cuts it
        silently, since the OpenAI API cannot carry `truncate: false`."""
        try:
            facts = await self.facts()
        except BackendError:
            return None  # the generation that follows reports the server's state
        if facts.kind == "ollama":
            return "Ollama's OpenAI-compatible /v1 cannot be told `truncate: false` and cuts an overlong prompt " \
                   "silently; use --backend ollama"
        return None

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        """llama.cpp's server and llama-cpp-python's count with the model's tokenizer; others get the estimate."""
        unguarded = await self._unguarded()
        text = "\n".join(m.content for m in request.messages)
        overhead = 4 * len(request.messages)
        for path, body, key in (("/tokenize", {"content": text}, "tokens"),
                                ("/extras/tokenize/count", {"input": text}, "count")):
            try:
                response = await self._client.post(path, json=body, timeout=5.0)
                if response.status_code == 200:
                    value = response.json()[key]
                    return PromptCount((len(value) if isinstance(value, list) else int(value)) + overhead,
                                       exact=True, unguarded=unguarded)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                continue
        return PromptCount(estimate_prompt(request.messages), exact=False, unguarded=unguarded)

    async def aclose(self) -> None:
        await self._client.aclose()


def _overflow(text: str) -> bool:
    """llama.cpp: "the request exceeds the available context size"; vLLM: "This model's maximum context length is
    N tokens. However, you requested M tokens"; llama-cpp-python: "Requested tokens (N) exceed context window"."""
    lowered = text.lower()
    return "context" in lowered and any(w in lowered for w in ("exceed", "maximum context length", "too long"))


class _SchemaStyleRefused(Exception):
    def __init__(self, style: str, text: str) -> None:
        super().__init__(style)
        self.style, self.text = style, text


async def _sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """`data: {...}` lines of a server-sent-event stream, until `data: [DONE]`."""
    async for line in response.aiter_lines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise BackendError(f"the server sent a malformed event: {data[:200]!r}; retry", retryable=True) from exc
        if isinstance(event, Mapping):
            if "error" in event and not event.get("choices"):
                raise BackendError(f"the server failed while generating: {_error_message(event)}", retryable=True,
                               infrastructure=True)
            yield dict(event)


def _error_message(event: Mapping[str, Any]) -> str:
    error = event.get("error")
    return str(error.get("message") if isinstance(error, Mapping) else error)
