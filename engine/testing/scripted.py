"""In-process test helpers for the delegation pipeline: a scripted Backend and a way to hand it to an Engine.

Also a tiny driver (`python -m engine.testing.scripted delegate|resume PROJECT [FIELDS_JSON]`) that runs the real
engine in a subprocess against the Ollama test double at $OLLAMA_HOST, for recovery experiments that kill a process.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.executor import Executor
from engine.executor.backends.base import GenerateRequest, GenerateResult, ModelInfo, PromptCount, TokenCallback
from engine.progress import Progress

__all__ = ["ScriptedBackend", "files_answer", "use_backend"]


def files_answer(files: dict[str, str]) -> str:
    return json.dumps({"files": [{"path": p, "content": c} for p, c in files.items()]})


@dataclass
class ScriptedBackend:
    """Answers from a queue; records every request. An item may be a str, a GenerateResult or an exception."""

    replies: deque[Any] = field(default_factory=deque)
    requests: list[GenerateRequest] = field(default_factory=list)
    name: str = "fake"
    parallelism: int = 1
    block: anyio.Event | None = None
    """When set, generate waits for it (to test cancellation and concurrency)."""
    started: list[anyio.Event] = field(default_factory=list)
    """Set when a generation starts (every one of them, at the first generation)."""
    active: int = 0
    max_active: int = 0
    prompt_exact: bool = True
    """count_prompt's answer: the model's tokenizer (True) or an estimate."""
    refuses_overflow: bool = True
    prompt_padding: int = 0
    latency: float = 0.0
    """Seconds every generation takes (in flight, counted in `active`): a fixed model latency for benchmarks."""
    """Tokens count_prompt adds to every prompt (a tokenizer that counts more than the engine's estimate)."""
    _active_changed: anyio.Event | None = field(default=None, init=False, repr=False)

    async def wait_active(self, count: int) -> None:
        """Return once `count` generations are in flight at the same time (with `block` unset they stay there)."""
        while self.active < count:
            if self._active_changed is None:
                self._active_changed = anyio.Event()
            await self._active_changed.wait()

    def _set_active(self, delta: int) -> None:
        self.active += delta
        self.max_active = max(self.max_active, self.active)
        if self._active_changed is not None:
            self._active_changed.set()
            self._active_changed = None

    def reply(self, *items: Any) -> ScriptedBackend:
        self.replies.extend(items)
        return self

    async def version(self) -> str | None:
        return "fake"

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo("fake-model")]

    async def loaded(self) -> list[ModelInfo]:
        return []

    async def context_length(self, model: str) -> int | None:
        return 4096

    async def pull(self, model: str, *, progress: Progress) -> None:
        return None

    async def load(self, model: str, *, num_ctx: int, keep_alive: str | int | None) -> None:
        return None

    async def unload(self, model: str) -> None:
        return None

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        self.requests.append(request)
        self._set_active(+1)
        try:
            for event in self.started:
                event.set()
            if self.block is not None:
                await self.block.wait()
            if self.latency:
                await anyio.sleep(self.latency)
            item = self.replies.popleft() if self.replies else self.default_answer(request)
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, GenerateResult):
                return item
            if on_token is not None:
                for piece in item.split(" "):
                    on_token(piece)
            prompt = sum(self.count_tokens(m.content) for m in request.messages)
            return GenerateResult(text=item, prompt_tokens=prompt, completion_tokens=self.count_tokens(item),
                                  done_reason="stop", total_seconds=0.01, model=request.model)
        finally:
            self._set_active(-1)

    @staticmethod
    def default_answer(request: GenerateRequest) -> str:
        """Every requested path (the schema's enum) with a one-line content."""
        schema = request.schema or {}
        paths = schema.get("properties", {}).get("files", {}).get("items", {}).get("properties", {}).get(
            "path", {}).get("enum", [])
        return files_answer({p: f"content of {p}\n" for p in paths})

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        tokens = sum(self.count_tokens(m.content) + 4 for m in request.messages)
        return PromptCount(tokens + self.prompt_padding, exact=self.prompt_exact,
                           unguarded=None if self.refuses_overflow else "the scripted server cuts prompts silently")

    async def aclose(self) -> None:
        return None


def use_backend(engine: Any, backend: Any, *, model: str = "fake-model", num_ctx: int = 4096) -> list[int]:
    """Make `engine.session.executor` return `backend`; returns a list that counts the calls."""
    calls: list[int] = []

    async def executor(*, progress: Progress | None = None) -> Executor:
        calls.append(1)
        return Executor(backend, model, num_ctx)

    engine.session.executor = executor  # instance attribute: only this engine is affected
    return calls


def _ollama_engine(project: str, num_ctx: int) -> Any:
    from engine import Engine, Project
    from engine.executor.backends.ollama import OllamaBackend

    engine = Engine(Project.resolve(project))
    backend = OllamaBackend()
    use_backend(engine, backend, model="deepseek-coder:6.7b", num_ctx=num_ctx)
    return engine


async def _main(argv: Iterable[str]) -> int:
    args = list(argv)
    command, project = args[0], args[1]
    engine = _ollama_engine(project, 4096)
    try:
        if command == "delegate":
            fields = json.loads(args[2])
            result = await engine.delegate(**fields)
        elif command == "resume":
            async with engine.background():
                result = await engine.resume()
        else:
            raise SystemExit(f"unknown command {command}")
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return 0
    finally:
        engine.close()


if __name__ == "__main__":
    from engine.logs import configure_logging

    configure_logging(log_file=None, console=False)
    raise SystemExit(anyio.run(_main, sys.argv[1:]))
