"""One generation of a run: the prompt packed once per run, the failed turns that fit, a slot on the backend, and
token progress while the model writes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from engine.delegation.context_files import read_text_file
from engine.delegation.pace import Pace, PaceLimits
from engine.executor.backends.base import (
    Backend,
    BackendError,
    ChatMessage,
    GenerateRequest,
    GenerateResult,
    PromptCount,
    PromptTooLong,
)
from engine.executor.prompting import ContextFile, OutputSpec, attempt_messages, base_messages, pack_context
from engine.executor.tokens import MESSAGE_OVERHEAD
from engine.progress import Progress
from states import PromptOverflow, RunData, Turn

__all__ = [
    "FEEDBACK_TOKENS",
    "Slots",
    "answer_room",
    "check_prompt",
    "counter",
    "fit_history",
    "generate",
    "overflow_record",
    "pack",
    "safe_progress",
]

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 0.5
UNGUARDED_MARGIN = 1.5
"""Where the server would cut an overlong prompt silently, the engine's estimate (3 characters a token) is taken 1.5
times: 2 characters a token, what dense code (minified, base64, long identifiers) costs with current tokenizers."""
FEEDBACK_TOKENS = 256
"""Room kept for the failing output that a retry adds to the prompt."""


def answer_room(num_ctx: int, *, thinking: bool = False) -> int:
    """Tokens kept free for the answer; twice as many when the model may think, since its thinking spends the same
    num_predict before the answer starts."""
    room = max(256, min(4096, num_ctx // 4))
    return 2 * room if thinking else room


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


def pack(
    root: Path, data: RunData, backend: Backend, num_ctx: int, *, guard: PromptCount,
) -> tuple[dict[str, Any], list[Any], int]:
    """The run's first messages with as much context as fits (packed once per run and kept in its data, so every
    attempt, and a resumed run, sends the same first messages byte for byte): (data changes, skipped, tokens).
    `guard` is what the backend says of its counts (an empty prompt's PromptCount): where the server would cut an
    overlong prompt silently and the count is an estimate, the estimate is taken with UNGUARDED_MARGIN."""
    outputs = [OutputSpec(o["path"], o["description"]) for o in data.output_files]
    files = [
        ContextFile(p, read_text_file(root, p, field=f"context_files[{i}]", allow_secrets=data.allow_secrets))
        for i, p in enumerate(data.context_files)
    ]
    count = counter(backend, guard)
    system, user = base_messages(data.task, data.task_type, outputs, [])
    fixed = count(system.content) + count(user.content) + 16
    room = answer_room(num_ctx, thinking=data.think is not False)
    reserve = room + (min(room, 512) + FEEDBACK_TOKENS if data.max_attempts > 1 else 0)
    budget = num_ctx - fixed - reserve
    if budget < 0:
        raise PromptTooLong(
            f"the task and the instructions alone are {fixed} tokens ({_how(guard)}), and num_ctx {num_ctx} must "
            f"also keep {reserve} for the answer{_why(guard)}; shorten the task or enable a model with a larger "
            "context", prompt_tokens=fixed, num_ctx=num_ctx, exact=guard.exact,
            refused_by="tokenizer" if guard.exact else "estimate",
        )
    packed = pack_context(files, budget=budget, count=count, task=data.task, outputs=outputs)
    system, user = base_messages(data.task, data.task_type, outputs, packed.included)
    changes = {"prompt": {"system": system.content, "user": user.content}, "files_skipped": list(packed.skipped),
               "num_ctx": num_ctx}
    return changes, list(packed.skipped), packed.tokens


def counter(backend: Backend, guard: PromptCount) -> Callable[[str], int]:
    """The backend's token count, with UNGUARDED_MARGIN where an estimate is all that stands before a silent cut."""
    margin = _margin(guard)
    if margin == 1.0:
        return backend.count_tokens
    return lambda text: math.ceil(backend.count_tokens(text) * margin)


def fit_history(
    base: Sequence[ChatMessage], history: Sequence[Turn], count: Callable[[str], int], limit: int
) -> list[ChatMessage]:
    """The base messages plus as many of the newest failed turns as fit `limit` tokens (oldest dropped first)."""
    def size(messages: Sequence[ChatMessage]) -> int:
        return sum(count(m.content) + MESSAGE_OVERHEAD for m in messages)

    for start in range(len(history) + 1):
        messages = attempt_messages(base, history[start:])
        if size(messages) <= limit:
            return messages
    return list(base)


async def check_prompt(backend: Backend, request: GenerateRequest) -> None:
    """Refuse, before sending, a prompt that leaves less than `request.max_tokens` of the context for the answer,
    when the count says so for sure (the model's tokenizer) or when nothing else would (a server that cuts an
    overlong prompt silently; there the conservative estimate decides). Where the server refuses overlong prompts
    itself, an estimate over the limit is no reason to stop: the server has the real count."""
    count = await backend.count_prompt(request)
    tokens = math.ceil(count.tokens * _margin(count))
    limit = request.num_ctx - request.max_tokens
    if tokens <= limit or not (count.exact or not count.server_refuses_overflow):
        return
    raise PromptTooLong(
        f"the prompt is {tokens} tokens ({_how(count)}) and num_ctx {request.num_ctx} holds {limit} beside the "
        f"{request.max_tokens} kept for the answer{_why(count)}; pass fewer or smaller context files, or enable a "
        "model with a larger context",
        prompt_tokens=tokens, num_ctx=request.num_ctx, exact=count.exact,
        refused_by="tokenizer" if count.exact else "estimate",
    )


def _margin(count: PromptCount) -> float:
    return 1.0 if count.exact or count.server_refuses_overflow else UNGUARDED_MARGIN


def _how(count: PromptCount) -> str:
    if count.exact:
        return "counted with the model's tokenizer"
    if count.server_refuses_overflow:
        return "a conservative estimate"
    return f"a conservative estimate, taken {UNGUARDED_MARGIN:g} times"


def _why(count: PromptCount) -> str:
    return f" ({count.unguarded})" if count.unguarded else ""


def overflow_record(exc: PromptTooLong, *, answer_room: int) -> PromptOverflow:
    return {"prompt_tokens": exc.prompt_tokens, "exact": exc.exact, "num_ctx": exc.num_ctx,
            "answer_room": answer_room, "refused_by": exc.refused_by}


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
