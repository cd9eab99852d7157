"""One generation of a run: the prompt packed once per run, the failed turns that fit, a slot on the backend, and
token progress while the model writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from engine.delegation.context_files import read_text_file
from engine.delegation.pace import Pace, PaceLimits
from engine.errors import UserError
from engine.executor.backends.base import Backend, BackendError, ChatMessage, GenerateRequest, GenerateResult
from engine.executor.prompting import ContextFile, OutputSpec, attempt_messages, base_messages, pack_context
from engine.progress import Progress
from states import RunData, Turn

__all__ = ["FEEDBACK_TOKENS", "Slots", "answer_room", "fit_history", "generate", "pack", "safe_progress"]

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 0.5
FEEDBACK_TOKENS = 256
"""Room kept for the failing output that a retry adds to the prompt."""


def answer_room(num_ctx: int) -> int:
    """Tokens kept free for the answer."""
    return max(256, min(4096, num_ctx // 4))


async def safe_progress(progress: Progress, done: float, total: float | None, message: str) -> None:
    try:
        await progress(done, total, message)
    except Exception:  # a client that went away must not fail the run
        log.debug("progress callback failed", exc_info=True)


class Slots:
    """How many generations run at once on each backend (its `parallelism`); the rest wait in line."""

    def __init__(self) -> None:
        # Keyed by identity (backends need not be hashable); the backend is kept so its id is never reused.
        self._limiters: dict[int, tuple[Backend, anyio.CapacityLimiter]] = {}

    def of(self, backend: Backend) -> anyio.CapacityLimiter:
        key = id(backend)
        if key not in self._limiters:
            limiter = anyio.CapacityLimiter(max(1, int(getattr(backend, "parallelism", 1) or 1)))
            self._limiters[key] = (backend, limiter)
        return self._limiters[key][1]


def pack(root: Path, data: RunData, backend: Backend, num_ctx: int) -> tuple[dict[str, Any], list[Any], int]:
    """The run's first messages with as much context as fits (packed once per run and kept in its data, so every
    attempt, and a resumed run, sends the same first messages byte for byte): (data changes, skipped, tokens)."""
    outputs = [OutputSpec(o["path"], o["description"]) for o in data.output_files]
    files = [
        ContextFile(p, read_text_file(root, p, field=f"context_files[{i}]", allow_secrets=data.allow_secrets))
        for i, p in enumerate(data.context_files)
    ]
    count = backend.count_tokens
    system, user = base_messages(data.task, data.task_type, outputs, [])
    fixed = count(system.content) + count(user.content) + 16
    reserve = answer_room(num_ctx) + (min(answer_room(num_ctx), 512) + FEEDBACK_TOKENS if data.max_attempts > 1 else 0)
    budget = num_ctx - fixed - reserve
    if budget < 0:
        raise UserError(
            f"num_ctx {num_ctx} leaves no room for the task and the answer; enable a larger context or shorten "
            "the task"
        )
    packed = pack_context(files, budget=budget, count=count, task=data.task, outputs=outputs)
    system, user = base_messages(data.task, data.task_type, outputs, packed.included)
    changes = {"prompt": {"system": system.content, "user": user.content}, "files_skipped": list(packed.skipped),
               "num_ctx": num_ctx}
    return changes, list(packed.skipped), packed.tokens


def fit_history(
    base: Sequence[ChatMessage], history: Sequence[Turn], backend: Backend, limit: int
) -> list[ChatMessage]:
    """The base messages plus as many of the newest failed turns as fit `limit` tokens (oldest dropped first)."""
    def size(messages: Sequence[ChatMessage]) -> int:
        return sum(backend.count_tokens(m.content) + 4 for m in messages)

    for start in range(len(history) + 1):
        messages = attempt_messages(base, history[start:])
        if size(messages) <= limit:
            return messages
    return list(base)


async def generate(
    backend: Backend, request: GenerateRequest, *, slots: Slots, progress: Progress, attempt: int, total: int,
    limits: PaceLimits | None = None,
) -> GenerateResult:
    """One streamed generation in a slot of its backend, reporting the tokens written every PROGRESS_EVERY_S; ended
    with a retryable BackendError when the first token or the tokens after it are too slow (engine/delegation/
    pace.py; `limits` default to the environment's)."""
    limits = limits or PaceLimits.from_env()
    pieces = [0]

    def on_token(_piece: str) -> None:
        pieces[0] += 1  # may run in a worker thread: only count here, report from the event loop

    async def report() -> None:
        shown = 0
        while True:
            await anyio.sleep(PROGRESS_EVERY_S)
            if pieces[0] != shown:
                shown = pieces[0]
                await safe_progress(progress, attempt - 1, total, f"attempt {attempt}: {shown} tokens generated")

    # The backend's error is kept out of the task group: raised inside it, it would leave wrapped in an
    # ExceptionGroup, which `except BackendError` misses (a retryable fault would abort the run).
    outcome: dict[str, Any] = {}

    async def watch(scope: anyio.CancelScope) -> None:
        pace = Pace(limits, anyio.current_time())
        while True:
            await anyio.sleep(limits.tick_s)
            if (problem := pace.observe(anyio.current_time(), pieces[0])) is not None:
                log.warning("generation ended by its time limits", problem=problem, tokens=pieces[0])
                outcome["error"] = BackendError(f"{backend.name}: {problem}", retryable=True)
                scope.cancel()
                return

    async with slots.of(backend):
        async with anyio.create_task_group() as tg:
            tg.start_soon(report)
            tg.start_soon(watch, tg.cancel_scope)
            try:
                outcome["result"] = await backend.generate(request, on_token=on_token)
            except Exception as exc:
                outcome["error"] = exc
            finally:
                tg.cancel_scope.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
