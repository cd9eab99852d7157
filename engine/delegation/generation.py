"""One generation of a run: the failed turns that fit, a slot on the backend, and token progress while the model
writes (the prompt itself is packed in packing.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog

from engine.delegation.pace import Pace, PaceLimits
from engine.delegation.repetition import RepetitionLimits, find_repetition
from engine.executor.backends.base import (
    Backend,
    BackendError,
    ChatMessage,
    GenerateRequest,
    GenerateResult,
)
from engine.executor.prompting import attempt_messages
from engine.executor.tokens import MESSAGE_OVERHEAD
from engine.progress import Progress
from states import Turn

__all__ = ["REPEATING", "Slots", "fit_history", "generate", "safe_progress"]

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 0.5
REPEATING = "repeating"
"""GenerateResult.done_reason of a generation stopped because the answer fell into a loop."""


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


def fit_history(
    base: Sequence[ChatMessage], history: Sequence[Turn], count: Callable[[str], int], limit: int, *,
    form: str = "json",
) -> list[ChatMessage]:
    """The base messages plus as many of the newest failed turns as fit `limit` tokens (oldest dropped first)."""
    def size(messages: Sequence[ChatMessage]) -> int:
        return sum(count(m.content) + MESSAGE_OVERHEAD for m in messages)

    for start in range(len(history) + 1):
        messages = attempt_messages(base, history[start:], form=form)
        if size(messages) <= limit:
            return messages
    return list(base)


async def generate(
    backend: Backend, request: GenerateRequest, *, slots: Slots, progress: Progress, attempt: int, total: int,
    limits: PaceLimits | None = None, repeats: RepetitionLimits | None = None,
) -> GenerateResult:
    """One streamed generation in a slot of its backend, reporting the tokens written every PROGRESS_EVERY_S; ended
    with a retryable BackendError when the first token or the tokens after it are too slow (engine/delegation/
    pace.py; `limits` default to the environment's), and stopped with `done_reason` REPEATING when the answer has
    fallen into a loop (engine/delegation/repetition.py; `repeats` default to the environment's)."""
    limits = limits or PaceLimits.from_env()
    repeats = repeats or RepetitionLimits.from_env()
    pieces = [0]
    streamed: list[str] = []
    tail = _Tail(streamed)

    def on_token(piece: str) -> None:
        # May run in a worker thread: only count and keep here (list.append is atomic); look from the event loop.
        pieces[0] += 1
        streamed.append(piece)

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
            if tail.grew() and (loop := find_repetition(tail.text, repeats)) is not None:
                log.warning("generation stopped: the answer repeats itself", repeated=loop.describe(),
                            tokens=pieces[0])
                outcome["repeating"] = (loop, pieces[0])
                scope.cancel()
                return

    async with slots.of(backend), anyio.create_task_group() as tg:
        started = anyio.current_time()
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
    if "repeating" in outcome and "result" not in outcome:
        loop, tokens = outcome["repeating"]
        return await _stopped(backend, request, tail.text[:loop.start + loop.block_chars], tokens=tokens,
                              seconds=anyio.current_time() - started)
    result: GenerateResult = outcome["result"]
    return result


class _Tail:
    """The streamed text, joined only as far as it grew since the last look."""

    def __init__(self, pieces: list[str]) -> None:
        self._pieces = pieces
        self._joined = 0
        self.text = ""

    def grew(self) -> bool:
        count = len(self._pieces)
        if count == self._joined:
            return False
        self.text += "".join(self._pieces[self._joined:count])
        self._joined = count
        return True


async def _stopped(backend: Backend, request: GenerateRequest, text: str, *, tokens: int, seconds: float
                   ) -> GenerateResult:
    """The result of a generation stopped in a loop: the answer up to one copy of the repeated block (what the retry
    shows the model), the tokens streamed before the stop, the prompt as the backend counts it."""
    count = await backend.count_prompt(request)
    return GenerateResult(text=text, prompt_tokens=count.tokens, completion_tokens=tokens, done_reason=REPEATING,
                          total_seconds=seconds, model=request.model)
